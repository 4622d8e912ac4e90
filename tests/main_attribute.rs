//! `#[procactor::main]` inserts `procactor::init()` as the first line of `main`: this test
//! binary has its own `main` (no libtest harness) and starts children through it. Without
//! the insertion `start()` fails with `NotInitialized` (and a child would run `main`
//! again instead of its target).

use procactor::{current_process, Process};
use std::time::Duration;

fn triple(x: u64) -> (u64, String) {
    (3 * x, current_process().name().to_string())
}

#[procactor::main]
fn main() {
    // watchdog: a hang is a failure, not a stuck test run
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(60));
        eprintln!("main_attribute: exceeded its 60 s watchdog");
        std::process::exit(101);
    });
    let mut p = Process::new(triple, 14)
        .name("via-attribute")
        .start()
        .expect("start through #[procactor::main]");
    let (v, name) = p.result().expect("the child ran its target");
    assert_eq!(v, 42);
    assert_eq!(name, "via-attribute");
    assert_eq!(current_process().name(), "MainProcess");
    println!("main_attribute: ok (child returned {v})");
}
