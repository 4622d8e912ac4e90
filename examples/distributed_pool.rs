//! A Pool across hosts on Redis Streams (issue 12): the same binary plays every role.
//!
//! ```sh
//! redis-server --port 6379 --save '' --appendonly no            # 1. Redis, once
//! cargo run --release --example distributed_pool -- worker      # 2. on each worker host
//! cargo run --release --example distributed_pool -- submit      # 3. anywhere: submit work
//! ```
//!
//! With no argument (as CI runs it) it does all three itself: two local worker
//! processes, a `map` over 1000 numbers, a few `apply_async`, then stops the workers.
//! The Redis URL is `PROCACTOR_REDIS_URL`, else `redis://127.0.0.1:6379/`; a worker
//! host points it at the shared server.
//!
//! Prints the sum of the squares (`332833500`), which worker processes took part, and
//! the `apply_async` results.
use procactor::redis::{self, Pool, Tasks};
use std::collections::BTreeSet;
use std::time::Duration;

const POOL: &str = "example:distributed_pool";

/// The work: the square of `x`, and the pid of the process that computed it.
fn square(x: u64) -> (u64, u32) {
    (x * x, std::process::id())
}

/// A slower task, to show `apply_async`.
fn describe(x: u64) -> String {
    std::thread::sleep(Duration::from_millis(50));
    format!(
        "{x} is {}",
        if x.is_multiple_of(2) { "even" } else { "odd" }
    )
}

fn url() -> String {
    std::env::var("PROCACTOR_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
}

/// Submits the work to whatever workers serve `POOL` and prints what came back.
fn submit(pool: &Pool) {
    let out = pool
        .map_timeout(square, (0..1000).collect(), Duration::from_secs(60))
        .expect("map (are workers running?)");
    let sum: u64 = out.iter().map(|r| r.0).sum();
    let pids: BTreeSet<u32> = out.iter().map(|r| r.1).collect();
    println!("sum of squares of 0..1000 = {sum}");
    println!("computed by worker processes {pids:?}");
    let pending: Vec<_> = (1..=4)
        .map(|x| pool.apply_async(describe, x).expect("apply_async"))
        .collect();
    for r in pending {
        println!(
            "{}",
            r.get_timeout(Duration::from_secs(60)).expect("result")
        );
    }
}

fn tasks() -> Tasks {
    Tasks::new().with(square).with(describe)
}

/// Says how to start Redis, and exits with status 1, when nothing answers at `url`.
fn require_redis(url: &str) {
    let addr = url
        .split("://")
        .nth(1)
        .unwrap_or(url)
        .split(['/', '?'])
        .next()
        .unwrap_or_default();
    let addr = addr.rsplit('@').next().unwrap_or(addr);
    let addr = if addr.contains(':') {
        addr.to_string()
    } else {
        format!("{addr}:6379")
    };
    let reachable = std::net::ToSocketAddrs::to_socket_addrs(&addr)
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok());
    if !reachable {
        eprintln!(
            "distributed_pool: no Redis server answers at {url}.\n\
             Start one:  redis-server --port 6379 --save '' --appendonly no\n\
             (Debian: apt-get install redis-server), or point PROCACTOR_REDIS_URL at one."
        );
        std::process::exit(1);
    }
}

#[procactor::main]
fn main() {
    let role = std::env::args().nth(1).unwrap_or_default();
    let url = url();
    if matches!(role.as_str(), "" | "worker" | "submit") {
        require_redis(&url);
    }
    match role.as_str() {
        "worker" => {
            println!("worker {} serving {POOL} at {url}", std::process::id());
            redis::run_worker(&url, POOL, tasks(), Duration::from_secs(30)).expect("worker");
            println!("worker {}: asked to stop", std::process::id());
        }
        "submit" => {
            let pool = Pool::builder(&url, POOL)
                .task(square)
                .task(describe)
                .build()
                .expect("pool");
            submit(&pool);
            if std::env::args().nth(2).as_deref() == Some("--stop-workers") {
                pool.stop_workers().expect("stop");
            }
        }
        "" => {
            let pool = Pool::builder(&url, POOL)
                .task(square)
                .task(describe)
                .local_workers(2)
                .build()
                .unwrap_or_else(|e| panic!("is Redis running at {url}? {e}"));
            println!("local workers {:?}", pool.worker_pids());
            submit(&pool);
            pool.stop_workers().expect("stop");
        }
        other => {
            eprintln!("usage: distributed_pool [worker | submit [--stop-workers]] (got {other:?})");
            std::process::exit(2);
        }
    }
}
