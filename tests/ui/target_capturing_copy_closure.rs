// A closure capturing a Copy value is refused when the program is built.
fn main() {
    procactor::init();
    let offset = 1u32;
    let _ = procactor::Process::new(move |x: u32| x + offset, 1).start();
}
