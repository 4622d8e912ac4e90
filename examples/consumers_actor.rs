//! Seed 000's consumers as process actors: a pool of `Consumer` actors, one per CPU,
//! shares one mailbox of `Task { a, b }` messages and puts each `"a * b = c"` answer on
//! a results `Queue`. No poison pill: `stop()` is graceful — the tasks queued before it
//! are still handled, then each consumer's `stopped` runs ("Exiting") — and `join` waits
//! for the whole pool, as `tasks.join()` and the consumers' exits do in the seed.
//!
//! Compare `examples/consumers.rs`, the same program with `Process` + `JoinableQueue`.
//!
//! ```text
//! $ cargo run --example consumers_actor
//! Creating 2 consumers
//! Consumer-1: 0 * 0
//! Consumer-2: 1 * 1
//! Consumer-1: 2 * 2
//! …
//! Consumer-2: 9 * 9
//! Consumer-1: Exiting
//! Consumer-2: Exiting
//! Result: 0 * 0 = 0
//! Result: 1 * 1 = 1
//! …
//! Result: 9 * 9 = 81
//! ```
//!
//! (Which consumer takes which task, and the order of the results, vary between runs.)

use procactor::{
    cpu_count, process_actor, Actor, ActorError, ChildSpec, Context, Queue, Supervisor,
};
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

/// The consumer: one per CPU, all taking tasks from the pool's mailbox.
#[process_actor]
#[derive(Serialize, Deserialize)]
struct Consumer {
    results: Queue<String>,
    /// Its name in the pool ("Consumer-1", …), learned when it starts.
    #[serde(skip)]
    name: String,
}

impl Actor for Consumer {
    type Msg = Task;
    type Reply = ();

    fn started(&mut self, ctx: &mut Context<Self>) -> Result<(), ActorError> {
        self.name = ctx.name().to_string();
        Ok(())
    }

    fn handle(&mut self, task: Task, _ctx: &mut Context<Self>) -> Result<(), ActorError> {
        println!("{}: {task}", self.name);
        let answer = task.call();
        self.results.put(answer)?;
        Ok(())
    }

    fn stopped(&mut self) {
        println!("{}: Exiting", self.name);
    }
}

#[procactor::main]
fn main() {
    // Establish the results queue (the tasks travel in the pool's mailbox)
    let results: Queue<String> = Queue::new().expect("results queue");

    // Start consumers
    let num_consumers = cpu_count();
    println!("Creating {num_consumers} consumers");
    let sup = Supervisor::builder()
        .name("consumers")
        .build()
        .expect("start the supervisor");
    let consumers = sup
        .spawn_pool_with(ChildSpec::new().name("Consumer"), num_consumers, || {
            Consumer {
                results: results.clone(),
                name: String::new(),
            }
        })
        .expect("start consumers");

    // Enqueue jobs
    let num_jobs = 10;
    for i in 0..num_jobs {
        consumers.send(Task { a: i, b: i }).expect("send task");
    }

    // No poison pill: ask the pool to stop once the queued tasks are done…
    consumers.stop().expect("stop the pool");
    // …and wait for all of the tasks to finish
    consumers.join();

    // Start printing results
    for _ in 0..num_jobs {
        let result = results.get().expect("a result per job");
        println!("Result: {result}");
    }
    sup.shutdown(Duration::from_secs(5));
}
