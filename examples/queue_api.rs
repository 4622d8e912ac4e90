//! Seed 002's tour of the Queue API: `maxsize`, blocking `put`/`get` with and without a
//! timeout, `put_nowait`/`get_nowait`, `Full`/`Empty`, `qsize`/`empty`/`full`, `close`
//! (and why `join_thread`/`cancel_join_thread` are not needed).
//!
//! Run: `cargo run --example queue_api`

use procactor::{Process, PutError, Queue, TryGetError, TryPutError};
use std::time::{Duration, Instant};

fn child_puts(q: Queue<String>) {
    for word in ["one", "two", "three"] {
        q.put(word.to_string()).expect("put");
    }
    // No feeder thread: the items are already in shared memory, so the process can
    // exit now and the parent may join it before reading (Python's join_thread /
    // cancel_join_thread are not needed).
}

#[procactor::main]
fn main() {
    // Queue([maxsize]): at most 3 items
    let q: Queue<String> = Queue::bounded(3).expect("queue");
    println!("maxsize = {}", q.maxsize());

    // put(obj) blocks while the queue is full; here it is not
    q.put("a".into()).expect("put");
    q.put("b".into()).expect("put");
    // put_nowait(obj) == put(obj, block=False)
    q.try_put("c".into()).expect("put_nowait");
    println!(
        "qsize() = {}, empty() = {}, full() = {}",
        q.len(),
        q.is_empty(),
        q.is_full()
    );

    // a full queue: put_nowait raises queue.Full at once; the item comes back
    match q.try_put("d".into()) {
        Err(TryPutError::Full(item)) => println!("put_nowait({item:?}) -> Full"),
        other => println!("unexpected: {other:?}"),
    }
    // put(obj, timeout=0.5) waits, then raises queue.Full (here: `Timeout`)
    let t0 = Instant::now();
    if let Err(e) = q.put_timeout("e".into(), Duration::from_millis(500)) {
        let waited = t0.elapsed().as_secs_f32();
        let (full, what) = (e.is_timeout(), e.to_string());
        let item = e.into_inner();
        println!("put({item:?}, timeout=0.5) -> {what} (timed out: {full}) after {waited:.1} s");
    }

    // get() / get_nowait() take in FIFO order
    println!("get() = {}", q.get().expect("get"));
    println!("get_nowait() = {}", q.try_get().expect("get_nowait"));
    println!(
        "get(timeout=1) = {}",
        q.get_timeout(Duration::from_secs(1)).expect("get")
    );
    println!(
        "qsize() = {}, empty() = {}, full() = {}",
        q.len(),
        q.is_empty(),
        q.is_full()
    );

    // an empty queue: get_nowait raises queue.Empty; get(timeout) waits first
    match q.try_get() {
        Err(TryGetError::Empty) => println!("get_nowait() -> Empty"),
        other => println!("unexpected: {other:?}"),
    }
    let t0 = Instant::now();
    if let Err(e) = q.get_timeout(Duration::from_millis(500)) {
        println!(
            "get(timeout=0.5) -> {e} after {:.1} s",
            t0.elapsed().as_secs_f32()
        );
    }

    // a child fills the queue, exits at once, and nothing is lost
    let mut p = Process::new(child_puts, q.clone()).start().expect("start");
    p.join().expect("join");
    println!(
        "child exited with {}, qsize() = {}",
        p.exitcode().expect("exited"),
        q.len()
    );

    // close(): no more put from this handle; get still works until drained, then
    // Disconnected (every producer handle is closed, dropped or dead)
    q.close();
    match q.put("x".into()) {
        Err(PutError::Closed(item)) => println!("put({item:?}) after close() -> Closed"),
        other => println!("unexpected: {other:?}"),
    }
    loop {
        match q.get() {
            Ok(s) => println!("get() = {s}"),
            Err(e) => {
                println!("get() -> {e}");
                break;
            }
        }
    }
}
