//! Seed 004, "Lock": two processes write to one file, each holding a shared `Lock` for
//! about a second, so the program takes about 2 s and the file reads `hello world!`.
//!
//! Prints:
//! ```text
//! time cost: 2.0… seconds
//! hello world!
//! ```
use procactor::{Lock, Process};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn task1((lock, path): (Lock, PathBuf)) {
    let _g = lock.acquire().unwrap(); // Python: with lock:
    let mut f = std::fs::File::create(&path).unwrap(); // 'w+'
    f.write_all(b"hello ").unwrap();
    std::thread::sleep(Duration::from_secs(1));
}

fn task2((lock, path): (Lock, PathBuf)) {
    let g = lock.acquire().unwrap(); // Python: lock.acquire() ... finally: lock.release()
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&path)
        .unwrap(); // 'a+'
    std::thread::sleep(Duration::from_secs(1));
    f.write_all(b"world!").unwrap();
    drop(g);
}

#[procactor::main]
fn main() {
    let lock = Lock::new().unwrap();
    // a file in a fresh temporary directory, not in the current one
    let dir = std::env::temp_dir().join(format!("procactor-lock-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("file.txt");

    let start = Instant::now();
    let mut p1 = Process::new(task1, (lock.clone(), path.clone()))
        .start()
        .unwrap();
    // The Python original relies on p1 being started first to win the lock; make that
    // explicit so the file always reads "hello world!".
    while !lock.is_locked() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut p2 = Process::new(task2, (lock.clone(), path.clone()))
        .start()
        .unwrap();
    p1.join().unwrap();
    p2.join().unwrap();
    println!("time cost: {} seconds", start.elapsed().as_secs_f64());

    println!("{}", std::fs::read_to_string(&path).unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
}
