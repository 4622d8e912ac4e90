// A closure capturing variables cannot run in another process.
fn main() {
    procactor::init();
    let name = String::from("x");
    let offset = 1u32;
    let f = move |x: u32| format!("{name}{}", x + offset);
    let _ = procactor::Process::new(f, 1).start();
}
