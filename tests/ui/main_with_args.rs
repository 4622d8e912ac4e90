#[procactor::main(fast)]
fn main() {}
