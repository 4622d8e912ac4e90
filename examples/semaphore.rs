//! Seed 004, "Semaphore": 8 processes pass through a `Semaphore(2)`, each holding a slot
//! for one second, so at most two run at a time and the whole takes about 4 s.
//!
//! Prints `hello, 0` … `hello, 7` (two at a time, in start order give or take), then
//! `8 processes take 4.0… seconds`.
use procactor::{Process, Semaphore};
use std::time::{Duration, Instant};

fn task((s, msg): (Semaphore, u32)) {
    let _slot = s.acquire().unwrap(); // released when `_slot` is dropped
    println!("hello, {msg}");
    std::thread::sleep(Duration::from_secs(1));
}

#[procactor::main]
fn main() {
    let s = Semaphore::new(2).unwrap();
    let start = Instant::now();
    let mut processes: Vec<_> = (0..8)
        .map(|x| Process::new(task, (s.clone(), x)).start().unwrap())
        .collect();
    for p in &mut processes {
        p.join().unwrap();
    }
    println!("8 processes take {} seconds", start.elapsed().as_secs_f64());
}
