//! Two process actors under one supervisor: a *queue* actor that counts pings and
//! answers each with a pong on a results `Queue` (`send`: fire and forget), and a *pipe*
//! actor that keeps a running total and answers every request (`call`: request/reply).
//! Both are then stopped gracefully and joined.
//!
//! ```text
//! $ cargo run --example actor_ping
//! parent pid 660
//! sent 3 pings
//! got: Ponger started in pid 663
//! got: pong 1 (ping #1)
//! got: pong 2 (ping #2)
//! got: pong 3 (ping #3)
//! got: Ponger stopped after 3 pings
//! Ponger joined: exit code 0, restarts 0
//! call(Add(5)) = 5
//! call(Add(10)) = 15
//! call(Add(27)) = 42
//! call(Get) = 42
//! Totals ran in pid 664
//! Totals joined: exit code 0
//! ```

use procactor::{process_actor, Actor, ActorError, Context, Queue, Supervisor};
use serde::{Deserialize, Serialize};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// The queue actor: each `Ping(n)` is counted and answered with `"pong n"` on `results`.
#[process_actor]
#[derive(Serialize, Deserialize)]
struct Ponger {
    results: Queue<String>,
    pings: u64,
}

impl Actor for Ponger {
    type Msg = u64;
    type Reply = ();

    fn started(&mut self, ctx: &mut Context<Self>) -> Result<(), ActorError> {
        // printed by the parent, in order with the pongs
        let pid = procactor::current_process().pid();
        self.results
            .put(format!("{} started in pid {pid}", ctx.name()))?;
        Ok(())
    }

    fn handle(&mut self, n: u64, _ctx: &mut Context<Self>) -> Result<(), ActorError> {
        self.pings += 1;
        // `?` turns the queue's error into an `ActorError` (a crash)
        self.results
            .put(format!("pong {n} (ping #{})", self.pings))?;
        Ok(())
    }

    fn stopped(&mut self) {
        let _ = self
            .results
            .put(format!("Ponger stopped after {} pings", self.pings));
    }
}

/// What the pipe actor is asked.
#[derive(Debug, Serialize, Deserialize)]
enum Request {
    Add(i64),
    Get,
}

/// The pipe actor: answers each request with the running total.
#[process_actor(mailbox = pipe)]
#[derive(Serialize, Deserialize)]
struct Totals {
    total: i64,
}

impl Actor for Totals {
    type Msg = Request;
    type Reply = i64;

    fn handle(&mut self, req: Request, _ctx: &mut Context<Self>) -> Result<i64, ActorError> {
        if let Request::Add(n) = req {
            self.total += n;
        }
        Ok(self.total)
    }
}

#[procactor::main]
fn main() {
    println!("parent pid {}", std::process::id());
    let sup = Supervisor::builder()
        .name("root")
        .build()
        .expect("start the supervisor");

    // --- a queue actor: send, then read what it put on the results queue
    let results: Queue<String> = Queue::new().expect("results queue");
    let ponger = sup
        .spawn(Ponger {
            results: results.clone(),
            pings: 0,
        })
        .expect("spawn Ponger");
    for n in 1..=3 {
        ponger.send(n).expect("send a ping");
    }
    println!("sent 3 pings");
    // graceful stop: the pings queued before it are still handled, then `stopped` runs
    ponger.stop().expect("stop Ponger");
    // "started", three pongs, "stopped"
    for _ in 0..5 {
        println!("got: {}", results.get_timeout(WAIT).expect("a pong"));
    }
    assert!(ponger.join_timeout(WAIT).is_ok(), "Ponger ends after stop");
    println!(
        "Ponger joined: exit code {}, restarts {}",
        ponger
            .exitcode()
            .map_or_else(|| "-".to_string(), |s| s.python_exitcode().to_string()),
        ponger.restarts()
    );

    // --- a pipe actor: call waits for the answer
    let totals = sup.spawn(Totals { total: 0 }).expect("spawn Totals");
    for n in [5, 10, 27] {
        let total = totals.call(Request::Add(n)).expect("call");
        println!("call(Add({n})) = {total}");
    }
    println!("call(Get) = {}", totals.call(Request::Get).expect("call"));
    println!("Totals ran in pid {}", totals.pid().unwrap_or(0));
    totals.stop().expect("stop Totals");
    assert!(totals.join_timeout(WAIT).is_ok(), "Totals ends after stop");
    println!(
        "Totals joined: exit code {}",
        totals
            .exitcode()
            .map_or_else(|| "-".to_string(), |s| s.python_exitcode().to_string())
    );

    sup.shutdown(WAIT);
}
