//! Seed 004, "Pool": 10 one-second tasks on a pool of 4 worker processes take about 3 s
//! (three rounds of four), first with `apply_async` (results fetched with `get`), then with
//! `map`.
//!
//! Prints `hello, 0` … `hello, 9` (four at a time), `10 processes take 3.0… seconds`, the
//! results `msg: 0` … `msg: 9`, and the same again for `map`.
use procactor::Pool;
use std::time::{Duration, Instant};

fn task(msg: u32) -> String {
    println!("hello, {msg}");
    std::thread::sleep(Duration::from_secs(1));
    format!("msg: {msg}")
}

#[procactor::main]
fn main() {
    // apply_async: one task at a time, results collected later
    let pool = Pool::new(4).unwrap();
    let start = Instant::now();
    let results: Vec<_> = (0..10)
        .map(|x| pool.apply_async(task, x).unwrap())
        .collect();
    pool.close();
    pool.join().unwrap();
    println!(
        "10 processes take {:.2} seconds",
        start.elapsed().as_secs_f64()
    );
    println!("processes done, result:");
    for r in &results {
        println!("{}", r.get().unwrap());
    }

    // map: the same work in one call, results in order
    let pool = Pool::new(4).unwrap();
    let start = Instant::now();
    let results = pool.map(task, 0..10).unwrap();
    println!(
        "map over 10 tasks takes {:.2} seconds",
        start.elapsed().as_secs_f64()
    );
    pool.close();
    pool.join().unwrap();
    println!("processes done, result:");
    for r in &results {
        println!("{r}");
    }
}
