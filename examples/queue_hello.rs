//! Seed 001: a child puts "Hello World" on a `Queue`; the parent gets it.
//!
//! Run: `cargo run --example queue_hello`

use procactor::{Process, Queue};

fn test(queue: Queue<String>) {
    queue.put("Hello World".to_string()).expect("put");
}

#[procactor::main]
fn main() {
    let q: Queue<String> = Queue::new().expect("queue");
    // the queue handle is passed to the child in its arguments
    let mut p = Process::new(test, q.clone()).start().expect("start");
    println!("{}", q.get().expect("get"));
    p.join().expect("join");
}
