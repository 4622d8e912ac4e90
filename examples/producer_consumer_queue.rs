//! Seed 003: a producer process and a consumer process sharing a `Queue(10)`.
//!
//! Run: `cargo run --example producer_consumer_queue` (takes about 2 seconds, as in
//! the seed: both processes sleep 2 s)

use procactor::{Process, Queue};
use std::time::Duration;

fn producer(queue: Queue<String>) {
    queue.put("a".to_string()).expect("put");
    std::thread::sleep(Duration::from_secs(2));
}

fn consumer(queue: Queue<String>) {
    std::thread::sleep(Duration::from_secs(2));
    println!("{}", queue.get().expect("get"));
}

#[procactor::main]
fn main() {
    let queue: Queue<String> = Queue::bounded(10).expect("queue");
    let mut my_producer = Process::new(producer, queue.clone())
        .start()
        .expect("start");
    let mut my_consumer = Process::new(consumer, queue.clone())
        .start()
        .expect("start");
    my_producer.join().expect("join producer");
    my_consumer.join().expect("join consumer");
}
