//! A supervision tree: a root supervisor (`OneForOne`) with a pool of three workers and
//! a child supervisor — in its own process — with two children of its own. One worker
//! is sent a bad message and panics; the root restarts it, the other workers and the
//! subtree carry on, and the messages queued behind the bad one are still handled. The
//! tree is printed before and after, then everything is shut down.
//!
//! ```text
//! $ cargo run --example supervised_tree
//! logger: hello
//! before:
//! root (supervisor, pid 2966, OneForOne)
//! ├─ worker-1  pid 2969  running  restarts 0  mailbox 0
//! ├─ worker-2  pid 2970  running  restarts 0  mailbox 0
//! ├─ worker-3  pid 2971  running  restarts 0  mailbox 0
//! └─ sub  pid 2972  running  restarts 0 (supervisor)
//!    ├─ logger  pid 2975  running  restarts 0  mailbox 0
//!    └─ cache  pid 2976  running  restarts 0  mailbox 0
//! sending 6 jobs, with a bad one in the middle
//! worker-1 started again (restart 1)
//! results: 1² = 1, 2² = 4, 3² = 9, 4² = 16, 5² = 25, 6² = 36
//! events: worker-1 exited (bad message: "boom" at examples/supervised_tree.rs:79:31)
//! events: worker-1 restarted (pid 2979, restarts 1)
//! worker-1: restarts 1
//! worker-2: restarts 0
//! worker-3: restarts 0
//! after:
//! root (supervisor, pid 2966, OneForOne)
//! ├─ worker-1  pid 2979  running  restarts 1  mailbox 0
//! ├─ worker-2  pid 2970  running  restarts 0  mailbox 0
//! ├─ worker-3  pid 2971  running  restarts 0  mailbox 0
//! └─ sub  pid 2972  running  restarts 0 (supervisor)
//!    ├─ logger  pid 2975  running  restarts 0  mailbox 0
//!    └─ cache  pid 2976  running  restarts 0  mailbox 0
//! the subtree was not touched: logger still in the same process (pid 2975), cache holds 3 keys
//! shut down: 0 children still running
//! ```
//!
//! Which worker takes the bad message varies from run to run. Its panic is also printed
//! on stderr, by the worker's own process (`thread 'main' panicked at …: bad message`).

use procactor::{
    process_actor, Actor, ActorError, ChildSpec, Context, Queue, Restart, Strategy, Supervisor,
    SupervisorEvent,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(10);

/// A worker's job.
#[derive(Debug, Serialize, Deserialize)]
enum Job {
    Square(u64),
    /// A message the worker cannot handle: it panics.
    Bad(String),
}

/// A pool member: squares numbers onto `results`.
#[process_actor]
#[derive(Serialize, Deserialize)]
struct Worker {
    results: Queue<String>,
}

impl Actor for Worker {
    type Msg = Job;
    type Reply = ();

    fn started(&mut self, ctx: &mut Context<Self>) -> Result<(), ActorError> {
        self.results
            .put(format!("started {} {}", ctx.name(), ctx.restarts()))?;
        Ok(())
    }

    fn handle(&mut self, job: Job, _ctx: &mut Context<Self>) -> Result<(), ActorError> {
        match job {
            Job::Square(x) => self.results.put(format!("{x}² = {}", x * x))?,
            Job::Bad(what) => panic!("bad message: {what:?}"),
        }
        Ok(())
    }
}

/// In the subtree: writes every line it is sent onto `log`.
#[process_actor]
#[derive(Serialize, Deserialize)]
struct Logger {
    log: Queue<String>,
}

impl Actor for Logger {
    type Msg = String;
    type Reply = ();

    fn handle(&mut self, line: String, ctx: &mut Context<Self>) -> Result<(), ActorError> {
        self.log.put(format!("{}: {line}", ctx.name()))?;
        Ok(())
    }
}

/// In the subtree: a key-value store answering calls with its size.
#[process_actor(mailbox = pipe)]
#[derive(Serialize, Deserialize)]
struct Cache {
    map: BTreeMap<String, u64>,
}

impl Actor for Cache {
    type Msg = (String, u64);
    type Reply = usize;

    fn handle(
        &mut self,
        (k, v): (String, u64),
        _ctx: &mut Context<Self>,
    ) -> Result<usize, ActorError> {
        self.map.insert(k, v);
        Ok(self.map.len())
    }
}

/// Waits (at most `WAIT`) until `ok` holds.
fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !ok() {
        assert!(t0.elapsed() < WAIT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[procactor::main]
fn main() {
    let root = Supervisor::builder()
        .name("root")
        .strategy(Strategy::OneForOne)
        .max_restarts(3, Duration::from_secs(5))
        .build()
        .expect("start the root supervisor");

    // a pool of three workers sharing one mailbox
    let results: Queue<String> = Queue::new().expect("results queue");
    let pool = root
        .spawn_pool_with(ChildSpec::new().name("worker"), 3, || Worker {
            results: results.clone(),
        })
        .expect("spawn the pool");

    // a child supervisor with its own children, in its own process
    let log: Queue<String> = Queue::new().expect("log queue");
    let mut sub = Supervisor::builder().name("sub");
    let logger = sub
        .add_with(ChildSpec::new().name("logger"), Logger { log: log.clone() })
        .expect("add logger");
    let cache = sub
        .add_with(
            ChildSpec::new().name("cache").restart(Restart::Transient),
            Cache {
                map: BTreeMap::new(),
            },
        )
        .expect("add cache");
    let sub = root.spawn_supervisor(sub).expect("spawn the subtree");

    // everyone up: each worker says so, the subtree's children answer
    for _ in 0..3 {
        let line = results.get_timeout(WAIT).expect("a worker starts");
        assert!(line.starts_with("started"), "{line}");
    }
    logger.send("hello".into()).expect("send to logger");
    println!("{}", log.get_timeout(WAIT).expect("the logger answers"));
    cache.call(("a".into(), 1)).expect("call cache");
    cache.call(("b".into(), 2)).expect("call cache");
    wait_until("the subtree to run", || sub.pid().is_some());
    let logger_pid = logger.pid();

    print!("before:\n{}", root.tree());

    println!("sending 6 jobs, with a bad one in the middle");
    for x in 1..=3 {
        pool.send(Job::Square(x)).expect("send a job");
    }
    pool.send(Job::Bad("boom".into()))
        .expect("send the bad job");
    for x in 4..=6 {
        pool.send(Job::Square(x)).expect("send a job");
    }
    // six results and one "started" line from the restarted worker, in any order
    let mut squares = Vec::new();
    let mut restarted = false;
    while squares.len() < 6 || !restarted {
        let line = results.get_timeout(WAIT).expect("a result");
        if let Some(rest) = line.strip_prefix("started ") {
            let (name, restarts) = rest.split_once(' ').unwrap_or((rest, "?"));
            println!("{name} started again (restart {restarts})");
            restarted = true;
        } else {
            squares.push(line);
        }
    }
    squares.sort_by_key(|s| s.split('²').next().and_then(|x| x.parse::<u64>().ok()));
    println!("results: {}", squares.join(", "));

    for ev in root.events() {
        match ev {
            SupervisorEvent::Exited {
                name,
                reason,
                abnormal: true,
                ..
            } => println!("events: {name} exited ({reason})"),
            SupervisorEvent::Restarted {
                name,
                pid,
                restarts,
            } => println!("events: {name} restarted (pid {pid}, restarts {restarts})"),
            _ => {}
        }
    }
    for i in 0..pool.size() {
        let m = pool.member(i).expect("a member");
        println!("{}: restarts {}", m.name(), m.restarts());
    }

    print!("after:\n{}", root.tree());
    let keys = cache.call(("c".into(), 3)).expect("call cache");
    assert_eq!(
        logger.pid(),
        logger_pid,
        "a worker's crash leaves the subtree alone"
    );
    println!(
        "the subtree was not touched: logger still in the same process (pid {}), \
         cache holds {keys} keys",
        logger.pid().unwrap_or(0)
    );
    assert_eq!(pool_restarts(&pool), 1, "one worker crashed, one restart");

    root.shutdown(WAIT);
    let running = root.children().iter().filter(|c| c.pid.is_some()).count();
    println!("shut down: {running} children still running");
}

fn pool_restarts(pool: &procactor::PoolRef<Worker>) -> u64 {
    (0..pool.size())
        .filter_map(|i| pool.member(i))
        .map(|m| m.restarts())
        .sum()
}
