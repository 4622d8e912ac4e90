//! Seed 000's flagship: one `Consumer` process per CPU takes `Task { a, b }` items from a
//! `JoinableQueue`, puts `"a * b = c"` results on a `Queue`, and stops at its `None`
//! poison pill; the parent waits with `tasks.join()` and prints the results.
//!
//! Run: `cargo run --example consumers`

use procactor::{cpu_count, current_process, JoinableQueue, Process, Queue};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A unit of work (Python's callable `Task(a, b)`).
#[derive(Debug, Serialize, Deserialize)]
struct Task {
    a: u64,
    b: u64,
}

impl Task {
    /// Pretends to take some time, then answers.
    fn call(&self) -> String {
        std::thread::sleep(Duration::from_millis(100));
        format!("{} * {} = {}", self.a, self.b, self.a * self.b)
    }
}

impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} * {}", self.a, self.b)
    }
}

/// The consumer process: take tasks until the poison pill.
fn consumer((tasks, results): (JoinableQueue<Option<Task>>, Queue<String>)) {
    let name = current_process().name().to_string();
    loop {
        match tasks.get() {
            Ok(Some(task)) => {
                println!("{name}: {task}");
                let answer = task.call();
                tasks.task_done().expect("one task_done per task");
                results.put(answer).expect("results queue is open");
            }
            Ok(None) => {
                // Poison pill means shutdown
                println!("{name}: Exiting");
                tasks.task_done().expect("one task_done per pill");
                break;
            }
            Err(e) => {
                eprintln!("{name}: {e}");
                break;
            }
        }
    }
}

#[procactor::main]
fn main() {
    // Establish communication queues
    let tasks: JoinableQueue<Option<Task>> = JoinableQueue::new().expect("tasks queue");
    let results: Queue<String> = Queue::new().expect("results queue");

    // Start consumers
    let num_consumers = cpu_count();
    println!("Creating {num_consumers} consumers");
    let mut consumers: Vec<_> = (0..num_consumers)
        .map(|_| {
            Process::new(consumer, (tasks.clone(), results.clone()))
                .start()
                .expect("start consumer")
        })
        .collect();

    // Enqueue jobs
    let num_jobs = 10;
    for i in 0..num_jobs {
        tasks.put(Some(Task { a: i, b: i })).expect("put task");
    }
    // Add a poison pill for each consumer
    for _ in 0..num_consumers {
        tasks.put(None).expect("put pill");
    }

    // Wait for all of the tasks to finish
    tasks.join();

    // Start printing results
    for _ in 0..num_jobs {
        let result = results.get().expect("a result per job");
        println!("Result: {result}");
    }
    for c in &mut consumers {
        c.join().expect("consumer exits");
    }
}
