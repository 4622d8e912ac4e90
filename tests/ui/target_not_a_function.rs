// Only functions and closures are targets.
fn main() {
    procactor::init();
    let _ = procactor::Process::new(42u8, ()).start();
}
