//! Shared-state and synchronisation workloads (issue 4), each a plain function returning
//! one number. Python twins with the same shapes are in `bench/sync_bench.py`.
//!
//! The children are started with `procactor::Process`, so the binary running these must
//! call `procactor::init()` first in `main`.

use procactor::{Event, Lock, Process, RawValue, Semaphore, Value};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(60);

fn increment_child((v, go, n): (Value<u64>, Event, u64)) -> f64 {
    go.wait_timeout(LONG);
    let t = Instant::now();
    for _ in 0..n {
        *v.lock().unwrap_or_else(|e| e.into_inner()) += 1;
    }
    t.elapsed().as_secs_f64()
}

/// Two processes each add 1 to a shared `Value<u64>` `n` times under its lock, started
/// together; increments per second over both (total / the slower child's time).
pub(crate) fn value_locked_increments_2proc(n: u64) -> f64 {
    let v = Value::new(0u64).expect("value");
    let go = Event::new().expect("event");
    let mut ps: Vec<_> = (0..2)
        .map(|_| {
            Process::new(increment_child, (v.clone(), go.clone(), n))
                .start()
                .expect("start")
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    go.set();
    let secs = ps
        .iter_mut()
        .map(|p| p.result().expect("child result"))
        .fold(0.0f64, f64::max);
    assert_eq!(v.get().unwrap(), 2 * n, "lost increments");
    (2 * n) as f64 / secs
}

/// Takes turns with the parent: waits (on the lock) for the shared turn counter to be
/// odd, makes it even; stops after as many turns as `limit` says (the parent lowers it
/// when its time budget has passed).
fn handoff_child((lock, turn, limit): (Lock, RawValue<u64>, RawValue<u64>)) {
    let t = turn.atomic_u64().expect("u64 is atomic");
    let limit = limit.atomic_u64().expect("u64 is atomic");
    let mut done = 0;
    while done < limit.load(Ordering::SeqCst) {
        let _g = lock.acquire().unwrap_or_else(|e| e.into_inner());
        let v = t.load(Ordering::Relaxed);
        if v % 2 == 1 {
            t.store(v + 1, Ordering::Relaxed);
            done += 1;
        }
    }
}

/// Lock hand-off between two processes: they take turns incrementing a counter, each
/// turn needing the lock to pass from one process to the other. At most `rounds` turns
/// each; once `budget` has passed the parent stops after its turn under way and the
/// child after its matching one (see [`super::budget`]). Returns microseconds per
/// hand-off and the hand-offs done (twice the rounds done).
pub(crate) fn lock_handoff_latency(rounds: u64, budget: Duration) -> (f64, u64) {
    let lock = Lock::new().expect("lock");
    let turn = RawValue::new(0u64).expect("raw value");
    let limit_v = RawValue::new(rounds).expect("raw value");
    let mut p = Process::new(handoff_child, (lock.clone(), turn.clone(), limit_v.clone()))
        .start()
        .expect("start");
    let t = turn.atomic_u64().expect("u64 is atomic");
    let limit = limit_v.atomic_u64().expect("u64 is atomic");
    // let the child start and wait on the lock
    std::thread::sleep(Duration::from_millis(100));
    let start = Instant::now();
    let mut done = 0;
    while done < rounds {
        let _g = lock.acquire().unwrap_or_else(|e| e.into_inner());
        let v = t.load(Ordering::Relaxed);
        if v.is_multiple_of(2) {
            t.store(v + 1, Ordering::Relaxed);
            done += 1;
            if done < rounds && start.elapsed() >= budget {
                // under the lock, before the child can take its turn `done`: it stops
                // after that one
                limit.store(done, Ordering::SeqCst);
                break;
            }
        }
    }
    // wait for the child's last turn
    while t.load(Ordering::Relaxed) < 2 * done {
        std::hint::spin_loop();
    }
    let secs = start.elapsed().as_secs_f64();
    p.join().expect("join");
    (secs * 1e6 / (2 * done) as f64, 2 * done)
}

fn pong((ping, pong, rounds): (Event, Event, u64)) {
    for _ in 0..rounds {
        ping.wait();
        ping.clear();
        pong.set();
    }
}

/// `Event::set` in one process to the return of `wait` in another: half the round trip
/// of a ping-pong over two events. Microseconds.
pub(crate) fn event_set_wake_latency(rounds: u64) -> f64 {
    let ping = Event::new().expect("event");
    let pong_e = Event::new().expect("event");
    let mut p = Process::new(pong, (ping.clone(), pong_e.clone(), rounds))
        .start()
        .expect("start");
    std::thread::sleep(Duration::from_millis(100));
    let start = Instant::now();
    for _ in 0..rounds {
        ping.set();
        pong_e.wait();
        pong_e.clear();
    }
    let secs = start.elapsed().as_secs_f64();
    p.join().expect("join");
    secs * 1e6 / (2 * rounds) as f64
}

/// Untimed calls before the timed ones in the uncontended workloads (the Python twins
/// make as many).
pub(crate) const WARM_UP: u64 = 100_000;

/// Nanoseconds per call of `op`, after [`WARM_UP`] untimed calls.
fn ns_per_op(n: u32, mut op: impl FnMut()) -> f64 {
    for _ in 0..WARM_UP {
        op();
    }
    let start = Instant::now();
    for _ in 0..n {
        op();
    }
    start.elapsed().as_secs_f64() * 1e9 / f64::from(n)
}

/// One `Lock::acquire` plus the guard's release, no contention. Nanoseconds.
pub(crate) fn uncontended_lock_ns(n: u32) -> f64 {
    let lock = Lock::new().expect("lock");
    ns_per_op(n, || drop(std::hint::black_box(lock.acquire())))
}

/// Uncontended `Semaphore(1)` acquire + release (the guard's drop) in one process, in
/// nanoseconds.
pub(crate) fn uncontended_semaphore_ns(n: u32) -> f64 {
    let sem = Semaphore::new(1).expect("semaphore");
    ns_per_op(n, || drop(std::hint::black_box(sem.acquire())))
}
