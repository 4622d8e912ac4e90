//! Seed 003, "multiprocessing.Pipe()": a producer process sends into one end of a pipe, a
//! consumer process receives from the other end. Two processes only: a pipe has two
//! ends (use a `Queue` for many producers or consumers).
//!
//! ```text
//! $ cargo run --example producer_consumer_pipe
//! producer: sent "a"
//! consumer: a
//! ```
//!
//! The consumer starts receiving one second after the producer sent: the message waits
//! in the pipe. (The seed sleeps two seconds on each side; one is enough to show it.)

use procactor::{Connection, Pipe, Process};
use std::time::Duration;

fn producer(pipe: Connection<String, ()>) {
    pipe.send(&"a".to_string()).expect("send");
    println!("producer: sent \"a\"");
    std::thread::sleep(Duration::from_secs(1));
}

fn consumer(pipe: Connection<(), String>) {
    std::thread::sleep(Duration::from_secs(1));
    println!("consumer: {}", pipe.recv().expect("recv"));
}

#[procactor::main]
fn main() {
    // Python: receive_pipe, send_pipe = Pipe()  — here one-way, so each end has one job
    let (receive_pipe, send_pipe) = Pipe::<String>::oneway().expect("pipe");
    let mut my_producer = Process::new(producer, send_pipe).start().expect("start");
    let mut my_consumer = Process::new(consumer, receive_pipe).start().expect("start");
    my_producer.join().expect("join");
    my_consumer.join().expect("join");
}
