// Two parameters, three arguments.
fn mul(a: u64, b: u64) -> u64 {
    a * b
}

fn main() {
    procactor::init();
    let _ = procactor::Process::new(mul, (1, 2, 3)).start();
}
