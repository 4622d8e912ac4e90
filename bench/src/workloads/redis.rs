//! Redis Streams workloads (`procactor::redis`, issue 12), against a Redis server at
//! `PROCACTOR_REDIS_URL` (default `redis://127.0.0.1:6379/`):
//!
//! - `redis_put_get`: a child process puts `n` `(u64, 32-byte String)` items one `put`
//!   (one round trip) each; this process gets them with `prefetch(1)` (one item per
//!   read). Items per second, from the child's start to the last item received.
//! - `redis_put_get_batched`: the same, batched: `put_many` of [`BATCH`] items, and
//!   reading ahead [`BATCH`].
//! - `redis_rtt`: this process puts a `u64` on a request stream, a child echoes it on a
//!   reply stream, this process gets it: microseconds per round trip (`prefetch(1)`).
//! - `redis_put_get_async`: as `redis_put_get`, this process getting with `get_async`
//!   on a tokio current-thread runtime.
//! - `redis_rtt_async`: as `redis_rtt`, this process's `put` and `get` being
//!   `put_async` and `get_async` on a tokio current-thread runtime.
//!
//! The Python twins (`bench/redis_bench.py`) do the same through a `BaseManager` server
//! on 127.0.0.1 serving `queue.Queue`s (Python's way to share a queue across hosts):
//! one `put`/`get` per item, and for the batched row one `put`/`get` per list of
//! [`BATCH`] items.

use procactor::redis::RedisQueue;
use procactor::Process;
use std::time::{Duration, Instant};

/// Items per `put_many` and per read-ahead.
const BATCH: usize = 256;
/// Untimed round trips first.
pub(crate) const WARM_UP: u64 = 200;
const T: Duration = Duration::from_secs(30);

fn url() -> String {
    std::env::var("PROCACTOR_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
}

fn name(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("bench:{what}:{}:{nanos}", std::process::id())
}

fn connect<T: procactor::Message>(name: &str, prefetch: usize) -> RedisQueue<T> {
    RedisQueue::builder(&url(), name)
        .prefetch(prefetch)
        .connect()
        .unwrap_or_else(|e| panic!("the redis workloads need a Redis server at {}: {e}", url()))
}

fn producer((q, n, batch): (RedisQueue<(u64, String)>, u64, usize)) {
    let payload = "x".repeat(32);
    if batch <= 1 {
        for k in 0..n {
            q.put((k, payload.clone())).expect("put");
        }
        return;
    }
    let mut i = 0;
    while i < n {
        let end = (i + batch as u64).min(n);
        q.put_many((i..end).map(|k| (k, payload.clone())).collect())
            .expect("put_many");
        i = end;
    }
}

/// Items per second from a producer process to this one, `batch` items per `put_many`
/// (and read ahead), the items received in order by `consume`.
fn put_get_with(
    what: &str,
    n: u64,
    batch: usize,
    consume: impl FnOnce(&RedisQueue<(u64, String)>, u64),
) -> f64 {
    let q = connect::<(u64, String)>(&name(what), batch);
    let t0 = Instant::now();
    let mut p = Process::new(producer, (q.clone(), n, batch))
        .start()
        .expect("start");
    consume(&q, n);
    let secs = t0.elapsed().as_secs_f64();
    p.join().expect("join");
    n as f64 / secs
}

/// `batch` items per `put_many` and per read (1: `put` and `prefetch(1)`), the consumer
/// calling `get_timeout`.
fn put_get(n: u64, batch: usize) -> f64 {
    put_get_with("put_get", n, batch, |q, n| {
        for k in 0..n {
            let (got, _) = q.get_timeout(T).expect("get");
            assert_eq!(got, k, "in order");
        }
    })
}

/// A tokio current-thread runtime with its timer (for the gets' [`T`] timeout).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
}

/// As [`put_get`] with `batch` 1, the consumer awaiting `get_async` on a tokio
/// current-thread runtime (each get under the same [`T`] timeout as the sync row's).
pub(crate) fn redis_put_get_async(n: u64) -> f64 {
    let rt = runtime();
    put_get_with("put_get_async", n, 1, |q, n| {
        rt.block_on(async {
            for k in 0..n {
                let (got, _) = tokio::time::timeout(T, q.get_async())
                    .await
                    .expect("get timed out")
                    .expect("get");
                assert_eq!(got, k, "in order");
            }
        })
    })
}

/// Items per second, one `put` per item and `prefetch(1)`.
pub(crate) fn redis_put_get(n: u64) -> f64 {
    put_get(n, 1)
}

/// Items per second, `put_many` of [`BATCH`] and `prefetch(BATCH)`.
pub(crate) fn redis_put_get_batched(n: u64) -> f64 {
    put_get(n, BATCH)
}

fn echo((requests, replies, n): (RedisQueue<u64>, RedisQueue<u64>, u64)) {
    for _ in 0..n {
        let x = requests.get_timeout(T).expect("request");
        replies.put(x).expect("reply");
    }
}

/// Microseconds per request → echo → reply round trip: a child echoes [`WARM_UP`] + `n`
/// requests; `rounds(requests, replies)` runs them (the warm-up first, untimed) and
/// returns the time the `n` others took.
fn rtt_with(
    what: &str,
    n: u64,
    rounds: impl FnOnce(&RedisQueue<u64>, &RedisQueue<u64>) -> Duration,
) -> f64 {
    let requests = connect::<u64>(&name(&format!("{what}-req")), 1);
    let replies = connect::<u64>(&name(&format!("{what}-rep")), 1);
    let mut p = Process::new(echo, (requests.clone(), replies.clone(), WARM_UP + n))
        .start()
        .expect("start");
    let took = rounds(&requests, &replies);
    p.join().expect("join");
    took.as_secs_f64() * 1e6 / n as f64
}

/// Microseconds per round trip, `put` and `get_timeout`.
pub(crate) fn redis_rtt(n: u64) -> f64 {
    rtt_with("rtt", n, |requests, replies| {
        let round = |i: u64| {
            requests.put(i).expect("put");
            assert_eq!(replies.get_timeout(T).expect("get"), i);
        };
        (0..WARM_UP).for_each(round);
        let t0 = Instant::now();
        (WARM_UP..WARM_UP + n).for_each(round);
        t0.elapsed()
    })
}

/// Microseconds per round trip, as [`redis_rtt`], this process awaiting `put_async` and
/// `get_async` on a tokio current-thread runtime (the get under the same [`T`] timeout).
pub(crate) fn redis_rtt_async(n: u64) -> f64 {
    let rt = runtime();
    rtt_with("rtt-async", n, |requests, replies| {
        rt.block_on(async {
            let round = |i: u64| async move {
                requests.put_async(i).await.expect("put");
                let got = tokio::time::timeout(T, replies.get_async())
                    .await
                    .expect("get timed out")
                    .expect("get");
                assert_eq!(got, i);
            };
            for i in 0..WARM_UP {
                round(i).await;
            }
            let t0 = Instant::now();
            for i in WARM_UP..WARM_UP + n {
                round(i).await;
            }
            t0.elapsed()
        })
    })
}
