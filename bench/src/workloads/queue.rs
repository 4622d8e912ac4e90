//! Queue workloads (issue 3): procactor's side. Each function starts its own child
//! processes (the binary must call `procactor::init()` first in `main`), runs the
//! workload once and returns the figure named in its doc. The Python twins are in
//! `bench/queue_bench.py`.

use procactor::{Bytes, JoinableQueue, Process, Queue};
use std::time::{Duration, Instant};

/// The small message of the throughput workloads: an `(u64, 32-byte String)` tuple.
pub(crate) type Small = (u64, String);

fn small(i: u64) -> Small {
    (i, "abcdefghijklmnopqrstuvwxyz012345".to_string())
}

const LONG: Duration = Duration::from_secs(120);

fn produce((go, q, n): (Queue<()>, Queue<Small>, u64)) {
    go.get_timeout(LONG).expect("go");
    for i in 0..n {
        q.put(small(i)).expect("put");
    }
}

fn consume((q, n): (Queue<Small>, u64)) -> u64 {
    q.close();
    let mut sum = 0;
    for _ in 0..n {
        sum += q.get_timeout(LONG).expect("get").0;
    }
    sum
}

/// Queue 1→1: one producer process puts `n` small messages, the parent gets them.
/// Returns messages per second.
pub(crate) fn queue_1to1(n: u64) -> f64 {
    let go: Queue<()> = Queue::new().expect("queue");
    let q: Queue<Small> = Queue::new().expect("queue");
    let mut p = Process::new(produce, (go.clone(), q.clone(), n))
        .start()
        .expect("start");
    // warm-up: let the child reach its `go.get`
    std::thread::sleep(Duration::from_millis(50));
    let t0 = Instant::now();
    go.put(()).expect("go");
    for _ in 0..n {
        q.get_timeout(LONG).expect("get");
    }
    let dt = t0.elapsed().as_secs_f64();
    p.join().expect("join");
    n as f64 / dt
}

/// Queue 1→1, the consumer async: as [`queue_1to1`], the parent taking each item with
/// `get_async().await` on a tokio current-thread runtime. Returns messages per second.
pub(crate) fn queue_1to1_async(n: u64) -> f64 {
    let go: Queue<()> = Queue::new().expect("queue");
    let q: Queue<Small> = Queue::new().expect("queue");
    let mut p = Process::new(produce, (go.clone(), q.clone(), n))
        .start()
        .expect("start");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    std::thread::sleep(Duration::from_millis(50));
    let t0 = Instant::now();
    go.put(()).expect("go");
    rt.block_on(async {
        for _ in 0..n {
            q.get_async().await.expect("get");
        }
    });
    let dt = t0.elapsed().as_secs_f64();
    p.join().expect("join");
    n as f64 / dt
}

/// Queue 2→2: two producer processes put `n / 2` small messages each, two consumer
/// processes take `n / 2` each. Returns messages per second.
pub(crate) fn queue_2to2(n: u64) -> f64 {
    let go: Queue<()> = Queue::new().expect("queue");
    let q: Queue<Small> = Queue::new().expect("queue");
    let half = n / 2;
    let mut ps: Vec<_> = (0..2)
        .map(|_| {
            Process::new(produce, (go.clone(), q.clone(), half))
                .start()
                .expect("start")
        })
        .collect();
    let mut cs: Vec<_> = (0..2)
        .map(|_| {
            Process::new(consume, (q.clone(), half))
                .start()
                .expect("start")
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    let t0 = Instant::now();
    go.put(()).expect("go");
    go.put(()).expect("go");
    for c in &mut cs {
        c.result().expect("consumer");
    }
    let dt = t0.elapsed().as_secs_f64();
    for p in &mut ps {
        p.join().expect("join");
    }
    (2 * half) as f64 / dt
}

fn echo((req, resp): (Queue<u64>, Queue<u64>)) {
    req.close();
    while let Ok(x) = req.get() {
        resp.put(x + 1).expect("put");
    }
}

/// Queue round trip: the parent puts a request on one queue, a child answers on
/// another; `n` round trips. Returns microseconds per round trip.
pub(crate) fn queue_round_trip(n: u64) -> f64 {
    let req: Queue<u64> = Queue::new().expect("queue");
    let resp: Queue<u64> = Queue::new().expect("queue");
    let mut p = Process::new(echo, (req.clone(), resp.clone()))
        .start()
        .expect("start");
    for i in 0..1000 {
        req.put(i).expect("put");
        resp.get_timeout(LONG).expect("get");
    }
    let t0 = Instant::now();
    for i in 0..n {
        req.put(i).expect("put");
        resp.get_timeout(LONG).expect("get");
    }
    let dt = t0.elapsed().as_secs_f64();
    drop(req);
    p.join().expect("join");
    dt * 1e6 / n as f64
}

fn joinable_worker(q: JoinableQueue<Small>) {
    q.close();
    while let Ok(_item) = q.get() {
        q.task_done().expect("task_done");
    }
}

/// JoinableQueue: the parent puts `n` small items, one worker process gets each and calls
/// `task_done`, the parent `join`s. Returns items per second.
pub(crate) fn joinable(n: u64) -> f64 {
    let q: JoinableQueue<Small> = JoinableQueue::new().expect("queue");
    let mut p = Process::new(joinable_worker, q.clone())
        .start()
        .expect("start");
    std::thread::sleep(Duration::from_millis(50));
    let t0 = Instant::now();
    for i in 0..n {
        q.put(small(i)).expect("put");
    }
    q.join();
    let dt = t0.elapsed().as_secs_f64();
    q.close();
    p.join().expect("join");
    n as f64 / dt
}

/// Takes exactly `n` small messages; returns the sum of their numbers.
fn drain((q, n): (Queue<Small>, u64)) -> u64 {
    q.close();
    let mut sum = 0;
    for _ in 0..n {
        sum += q.get_timeout(LONG).expect("get").0;
    }
    sum
}

/// Queue backlog: the parent puts `n` small messages before any consumer exists (they
/// pile up far past the hot ring, in the overflow area), then starts one consumer
/// process that drains them. Returns messages per second over the whole run (puts,
/// consumer start, drain).
pub(crate) fn queue_backlog(n: u64) -> f64 {
    let q: Queue<Small> = Queue::new().expect("queue");
    let t0 = Instant::now();
    for i in 0..n {
        q.put(small(i)).expect("put");
    }
    let mut p = Process::new(drain, (q.clone(), n)).start().expect("start");
    let sum = p.result().expect("consumer");
    let dt = t0.elapsed().as_secs_f64();
    assert_eq!(sum, n * (n - 1) / 2);
    n as f64 / dt
}

fn put_big((go, q, size, reps): (Queue<()>, Queue<Bytes>, usize, u32)) {
    let msg = Bytes::from(vec![7u8; size]);
    // one untimed message first: both sides' buffers grow to size (and fault their
    // pages in) outside the measurement, as in the Python twin
    q.put(msg.clone()).expect("put");
    go.get_timeout(LONG).expect("go");
    for _ in 0..reps {
        q.put(msg.clone()).expect("put");
    }
}

/// A 16 MiB message streamed through a 64 KiB ring from a child to the parent, `reps`
/// times. Returns GB/s (10^9 bytes of payload per second, encode and decode included).
pub(crate) fn big_message_16mib_through_64kib(reps: u32) -> f64 {
    const SIZE: usize = 16 << 20;
    let go: Queue<()> = Queue::new().expect("queue");
    let q: Queue<Bytes> = Queue::with_capacity_bytes(64 << 10).expect("queue");
    let mut p = Process::new(put_big, (go.clone(), q.clone(), SIZE, reps))
        .start()
        .expect("start");
    let warm = q.get_timeout(LONG).expect("warm-up get");
    assert_eq!(warm.len(), SIZE);
    drop(warm);
    let t0 = Instant::now();
    go.put(()).expect("go");
    for _ in 0..reps {
        let b = q.get_timeout(LONG).expect("get");
        assert_eq!(b.len(), SIZE);
    }
    let dt = t0.elapsed().as_secs_f64();
    p.join().expect("join");
    (SIZE as f64 * f64::from(reps)) / dt / 1e9
}
