//! Seed 004, "Event": one child waits for an `Event` without a timeout, another with a
//! 2 s timeout; the parent sets it after 3 s.
//!
//! Prints:
//! ```text
//! task1 is waiting...
//! task2 is waiting...
//! hello, 2, e.is_set(): false
//! main: event is set
//! hello, 1, e.is_set(): true
//! ```
use procactor::{Event, Process};
use std::time::Duration;

fn task1((e, msg): (Event, u64)) {
    println!("task1 is waiting...");
    e.wait();
    std::thread::sleep(Duration::from_secs(1));
    println!("hello, {msg}, e.is_set(): {}", e.is_set());
}

fn task2((e, msg): (Event, u64)) {
    println!("task2 is waiting...");
    e.wait_timeout(Duration::from_secs(msg)); // Python: e.wait(msg)
    println!("hello, {msg}, e.is_set(): {}", e.is_set());
}

#[procactor::main]
fn main() {
    let e = Event::new().unwrap();
    let mut p1 = Process::new(task1, (e.clone(), 1)).start().unwrap();
    std::thread::sleep(Duration::from_millis(50)); // keep the two "waiting" lines in order
    let mut p2 = Process::new(task2, (e.clone(), 2)).start().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    e.set();
    println!("main: event is set");
    p1.join().unwrap();
    p2.join().unwrap();
}
