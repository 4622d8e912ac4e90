//! Ten thousand `call_async` in flight at once from one process, against a supervised
//! pool of pipe actors: every call gets its own reply, and the process stays at a
//! handful of threads (the futures wait in line; only the watcher and epoll threads
//! wake them). The same for ten thousand awaited `Pool` results (the pool's result
//! thread wakes them). Its own test binary, so that no other test's threads are
//! counted; its two tests run one at a time ([`SERIAL`]).
procactor::test_support!();

mod common;

use procactor::{process_actor, Actor, ActorError, Context, Supervisor};
use serde::{Deserialize, Serialize};
use std::future::IntoFuture;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[process_actor(mailbox = pipe)]
#[derive(Serialize, Deserialize)]
struct Triple;

impl Actor for Triple {
    type Msg = u64;
    type Reply = u64;
    fn handle(&mut self, x: u64, _: &mut Context<Self>) -> Result<u64, ActorError> {
        Ok(3 * x)
    }
}

fn threads() -> u64 {
    common::proc_status_field("self", "Threads")
}

const CALLS: usize = 10_000;

/// Held by each test that counts threads, so that they do not count each other's.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs [`CALLS`] tokio tasks (multi_thread, 2 workers) that each await `make(i)`,
/// which must give `3 * i`; samples the process's threads and the futures in flight
/// every 2 ms, and checks that most were in flight at once on fewer than 20 threads.
fn ten_thousand_in_flight<Fut, E>(what: &str, make: impl Fn(u64) -> Fut + Send + Sync + 'static)
where
    Fut: std::future::Future<Output = Result<u64, E>> + Send + 'static,
    E: std::fmt::Debug + Send + 'static,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let make = Arc::new(make);
    let started = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let (max_threads, max_in_flight) = rt.block_on(async {
        let mut tasks = Vec::with_capacity(CALLS);
        for i in 0..CALLS as u64 {
            let (make, started, done) = (make.clone(), started.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                let fut = make(i);
                started.fetch_add(1, Ordering::SeqCst);
                let r = fut.await;
                done.fetch_add(1, Ordering::SeqCst);
                (i, r)
            }));
        }
        // sample while they are in flight
        let (mut max_threads, mut max_in_flight) = (0, 0);
        while done.load(Ordering::SeqCst) < CALLS {
            let in_flight = started.load(Ordering::SeqCst) - done.load(Ordering::SeqCst).min(CALLS);
            max_in_flight = max_in_flight.max(in_flight);
            max_threads = max_threads.max(threads());
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        for t in tasks {
            let (i, r) = t.await.unwrap();
            assert_eq!(r.unwrap(), 3 * i, "{what} {i} got another one's answer");
        }
        (max_threads, max_in_flight)
    });
    let took = t0.elapsed();
    eprintln!(
        "{CALLS} {what}s in {took:?} ({:.0}/s); at most {max_in_flight} in flight at once, \
         at most {max_threads} threads",
        CALLS as f64 / took.as_secs_f64()
    );
    assert!(
        max_in_flight >= CALLS / 2,
        "only {max_in_flight} {what}s were in flight at once: the test proved little"
    );
    assert!(max_threads < 20, "{max_threads} threads");
}

#[test]
fn ten_thousand_call_async_in_flight_on_few_threads() {
    procactor::init();
    let _one_at_a_time = serial();
    common::watchdog(300, || {
        let sup = Supervisor::builder().build().unwrap();
        let pool = sup.spawn_pool(2, || Triple).unwrap();
        let p = pool.clone();
        ten_thousand_in_flight("call", move |i| {
            let p = p.clone();
            async move { p.call_async(i).await }
        });
        sup.shutdown(Duration::from_secs(20));
    });
}

fn hold(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn triple(x: u64) -> u64 {
    3 * x
}

#[test]
fn ten_thousand_awaited_pool_results_on_few_threads() {
    procactor::init();
    let _one_at_a_time = serial();
    common::watchdog(300, || {
        let pool = Arc::new(procactor::Pool::new(2).unwrap());
        // both workers busy for a while: the tasks after them wait, in flight
        let holds: Vec<_> = (0..2)
            .map(|_| pool.apply_async(hold, 600).unwrap())
            .collect();
        let p = pool.clone();
        ten_thousand_in_flight("awaited pool result", move |i| {
            p.apply_async(triple, i).unwrap().into_future()
        });
        for h in holds {
            assert_eq!(h.get_timeout(Duration::from_secs(20)).unwrap(), 600);
        }
    });
}

/// This process's CPU time so far (user + system, all threads), from `/proc/self/stat`.
fn cpu_time() -> Duration {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap();
    let rest = s.rsplit_once(") ").unwrap().1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // fields 14 and 15 of stat (utime, stime), 12 and 13 after the name
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10) // (USER_HZ is 100 on Linux)
}

/// Round-trip figures for the design notes: the blocking `call`, and `call_async` on
/// tokio's current-thread runtime, one call at a time against one pipe actor; with the
/// caller's CPU time per call. Run with `PROCACTOR_SPIN=0` for the no-spin figures.
/// Ignored: a measurement, not a check (`cargo test --release --test async_many_calls
/// -- --ignored --nocapture`).
#[test]
#[ignore]
fn call_async_round_trip_figures() {
    procactor::init();
    const N: u64 = 20_000;
    let sup = Supervisor::builder().build().unwrap();
    let one = sup.spawn(Triple).unwrap();
    for i in 0..1000 {
        assert_eq!(one.call(i).unwrap(), 3 * i);
    }
    let (t0, c0) = (Instant::now(), cpu_time());
    for i in 0..N {
        assert_eq!(one.call(i).unwrap(), 3 * i);
    }
    let (sync_wall, sync_cpu) = (t0.elapsed(), cpu_time() - c0);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (async_wall, async_cpu) = rt.block_on(async {
        for i in 0..1000 {
            assert_eq!(one.call_async(i).await.unwrap(), 3 * i);
        }
        let (t0, c0) = (Instant::now(), cpu_time());
        for i in 0..N {
            assert_eq!(one.call_async(i).await.unwrap(), 3 * i);
        }
        (t0.elapsed(), cpu_time() - c0)
    });
    let (t0, c0) = (Instant::now(), cpu_time());
    for i in 0..N {
        assert_eq!(
            futures::executor::block_on(one.call_async(i)).unwrap(),
            3 * i
        );
    }
    let (fut_wall, fut_cpu) = (t0.elapsed(), cpu_time() - c0);
    let per = |d: Duration| d.as_secs_f64() * 1e6 / N as f64;
    eprintln!(
        "call_async on futures::executor::block_on: {:.1} µs/call ({:.1} µs CPU in this \
         process)",
        per(fut_wall),
        per(fut_cpu)
    );
    eprintln!(
        "call: {:.1} µs/call ({:.1} µs CPU in this process); call_async on tokio \
         current_thread: {:.1} µs/call ({:.1} µs CPU in this process)",
        per(sync_wall),
        per(sync_cpu),
        per(async_wall),
        per(async_cpu)
    );
    sup.shutdown(Duration::from_secs(20));
}
