//! Seed 004's process programs: one process, three concurrent processes in about one
//! second, the lifecycle (is_alive, terminate, exitcode), active_children and cpu_count.
//!
//! Run: `cargo run --release --example process_basics`

use procactor::{active_children, cpu_count, Process};
use std::time::{Duration, Instant};

fn task(msg: String) {
    println!("hello, {msg}");
    std::thread::sleep(Duration::from_secs(1));
}

fn task1(msg: String) {
    println!("task1: hello, {msg}");
    std::thread::sleep(Duration::from_secs(1));
}

fn task2(msg: String) {
    println!("task2: hello, {msg}");
    std::thread::sleep(Duration::from_secs(1));
}

fn task3(msg: String) {
    println!("task3: hello, {msg}");
    std::thread::sleep(Duration::from_secs(1));
}

fn forever() {
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[procactor::main]
fn main() -> Result<(), procactor::Error> {
    // 1. one process
    let mut p = Process::new(task, "world".to_string()).start()?;
    if p.is_alive() {
        println!("Process: {} is running", p.pid());
    }
    p.join()?;

    // 2. three processes at once: about one second in all, not three
    let start = Instant::now();
    let mut ps = vec![
        Process::new(task1, "one".to_string()).start()?,
        Process::new(task2, "two".to_string()).start()?,
        Process::new(task3, "three".to_string()).start()?,
    ];
    println!("The number of CPU is:{}", cpu_count());
    for c in active_children() {
        println!("child p.name: {}\tp.id: {}", c.name(), c.pid());
    }
    for p in &mut ps {
        p.join()?;
    }
    let took = start.elapsed();
    println!("3 processes take {:.3} seconds", took.as_secs_f64());
    assert!(took < Duration::from_millis(2500), "they ran concurrently");

    // 3. lifecycle: terminate a process that would run forever
    let mut p = Process::new(forever, ()).name("forever").start()?;
    println!(
        "{} alive: {}, exitcode: {:?}",
        p.name(),
        p.is_alive(),
        p.exitcode()
    );
    p.terminate()?;
    let status = p.join()?;
    println!(
        "{} alive: {}, exitcode: {} ({status})",
        p.name(),
        p.is_alive(),
        status.python_exitcode()
    );
    assert_eq!(status.python_exitcode(), -15);
    Ok(())
}
