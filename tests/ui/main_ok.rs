#[procactor::main]
fn main() {
    let _ = procactor::current_process();
}
