//! The procactor benchmark (harness in progress).
fn main() {}
