// Every accepted form of target compiles.
fn hello() {}
fn square(x: u64) -> u64 {
    x * x
}
fn pair((a, b): (u64, u64)) -> u64 {
    a + b
}
fn mul(a: u64, b: u64) -> u64 {
    a * b
}
#[allow(clippy::too_many_arguments)]
fn eight(a: u8, b: u8, c: u8, d: u8, e: u8, f: u8, g: u8, h: u8) -> u8 {
    a + b + c + d + e + f + g + h
}

fn main() {
    procactor::init();
    let _ = procactor::Process::new(hello, ());
    let _ = procactor::Process::new(square, 7);
    let _ = procactor::Process::new(pair, (1, 2));
    let _ = procactor::Process::new(mul, (1, 2));
    let _ = procactor::Process::new(eight, (1, 2, 3, 4, 5, 6, 7, 8));
    let _ = procactor::Process::new(|a: u8, b: u8| a + b, (1, 2));
    let p: fn(u64, u64) -> u64 = mul;
    let _ = procactor::Process::new(p, (1, 2));
}
