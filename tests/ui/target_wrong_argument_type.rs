// The tuple's second element is not the second parameter's type.
fn mul(a: u64, b: u64) -> u64 {
    a * b
}

fn main() {
    procactor::init();
    let _ = procactor::Process::new(mul, (1u64, "two")).start();
}
