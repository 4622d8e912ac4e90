//! Churn of every kind of pending future (issue 23): a future registered (polled once,
//! pending) and dropped, tens of thousands of times, frees what it made — the watcher's
//! table entries (futex words), the epoll registrations and their duplicated descriptors
//! (connections, pidfds) — and the object still works afterwards: the next future on it,
//! woken only through its waker, completes when its condition comes true 50 ms later.
//!
//! `Queue::get_async`, the most used, is churned 200 000 times. Each churn runs in a
//! process of its own: the test binary's other tests would change its memory, thread and
//! descriptor counts meanwhile.

procactor::test_support!();

mod common;

use common::aio::{poll_once, within, Exec};
use common::watchdog;
use procactor::{Event, JoinableQueue, Lock, Pipe, Process, Queue, Semaphore};
use std::future::Future;
use std::time::Duration;

const ROUNDS: u32 = 30_000;
const WARM: u32 = 3_000;

/// `(VmRSS KiB, threads, open descriptors)` of this process.
fn footprint() -> (u64, u64, u64) {
    let field = |name| common::proc_status_field("self", name);
    let fds = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    (field("VmRSS"), field("Threads"), fds)
}

/// Registers and drops `make()`'s future `n` times; each must be pending at its poll.
fn churn<F: Future>(n: u32, mut make: impl FnMut() -> F) {
    for i in 0..n {
        let mut f = std::pin::pin!(make());
        assert!(
            poll_once(f.as_mut()).is_pending(),
            "future {i} was ready: the churn would prove nothing"
        );
    }
}

/// What one churn left: footprint before and after, and whether the object still
/// delivered afterwards.
type Outcome = ((u64, u64, u64), (u64, u64, u64), bool);

/// Warms, measures, churns [`ROUNDS`] times, measures, then `check`s that the object
/// still works.
fn measured<F: Future>(make: impl FnMut() -> F + Clone, check: impl FnOnce() -> bool) -> Outcome {
    measured_n(WARM, ROUNDS, make, check)
}

/// [`measured`] with `warm` untimed and `rounds` measured registrations.
fn measured_n<F: Future>(
    warm: u32,
    rounds: u32,
    make: impl FnMut() -> F + Clone,
    check: impl FnOnce() -> bool,
) -> Outcome {
    churn(warm, make.clone()); // the watcher threads, the tables' capacity
    let before = footprint();
    churn(rounds, make);
    let after = footprint();
    (before, after, check())
}

/// Runs `f` to completion under `futures::executor::block_on`, woken only through its
/// waker: `None` unless it completes well within [`DONE`] (a timer at `DONE` would poll
/// it once more, which must not count: a churn that broke wake-ups is caught).
fn block_on_within<T>(f: impl Future<Output = T>) -> Option<T> {
    let t0 = std::time::Instant::now();
    let out = Exec::BlockOn.run(within(Exec::BlockOn, DONE, f));
    out.filter(|_| t0.elapsed() < DONE / 2)
}

const DONE: Duration = Duration::from_secs(10);

/// Runs `f` on a thread of its own 50 ms from now: the condition a future waits for
/// comes true after the future has registered, so it is met through a wake-up.
fn later(f: impl FnOnce() + Send + 'static) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        f();
    })
}

fn churn_get_async((): ()) -> Outcome {
    let q: Queue<u64> = Queue::new().unwrap();
    // (the most used future: 200 000 rounds)
    measured_n(
        20_000,
        200_000,
        || q.get_async(),
        || {
            let q2 = q.clone();
            let put = later(move || q2.put(7).unwrap());
            let works = block_on_within(q.get_async()).is_some_and(|r| r == Ok(7));
            put.join().unwrap();
            works
        },
    )
}

fn churn_lock((): ()) -> Outcome {
    let l = Lock::new().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (held_tx, held_rx) = std::sync::mpsc::channel::<()>();
    let l2 = l.clone();
    let holder = std::thread::spawn(move || {
        let _g = l2.acquire().unwrap();
        held_tx.send(()).unwrap();
        let _ = rx.recv_timeout(Duration::from_secs(60));
    });
    held_rx.recv_timeout(DONE).unwrap();
    measured(
        || l.acquire_async(),
        || {
            let release = later(move || tx.send(()).unwrap());
            let works = block_on_within(l.acquire_async()).is_some_and(|g| g.is_ok());
            release.join().unwrap();
            holder.join().unwrap();
            works
        },
    )
}

fn churn_semaphore((): ()) -> Outcome {
    let s = Semaphore::new(0).unwrap();
    measured(
        || s.acquire_async(),
        || {
            let s2 = s.clone();
            let release = later(move || s2.release().unwrap());
            let works = block_on_within(s.acquire_async()).is_some_and(|g| g.is_ok());
            release.join().unwrap();
            works
        },
    )
}

fn churn_event((): ()) -> Outcome {
    let e = Event::new().unwrap();
    measured(
        || e.wait_async(),
        || {
            let e2 = e.clone();
            let set = later(move || e2.set());
            let works = block_on_within(e.wait_async()).is_some();
            set.join().unwrap();
            works
        },
    )
}

fn churn_join_async((): ()) -> Outcome {
    let q: JoinableQueue<u32> = JoinableQueue::new().unwrap();
    q.put(1).unwrap();
    measured(
        || q.join_async(),
        || {
            let q2 = q.clone();
            let done = later(move || {
                q2.get().unwrap();
                q2.task_done().unwrap();
            });
            let works = block_on_within(q.join_async()).is_some();
            done.join().unwrap();
            works
        },
    )
}

fn churn_recv_async((): ()) -> Outcome {
    let (a, b) = Pipe::<u32>::new().unwrap();
    measured(
        || b.recv_async(),
        || {
            let sent = later(move || a.send(&5).unwrap());
            let works = block_on_within(b.recv_async()).is_some_and(|r| r.ok() == Some(5));
            sent.join().unwrap();
            works
        },
    )
}

fn sleep_then_exit(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

fn churn_process_join_async((): ()) -> Outcome {
    // (`join_async` borrows the process mutably: the churn is written out)
    let mut p = Process::new(sleep_then_exit, 60_000u64).start().unwrap();
    let mut churn_join = |n: u32| {
        for i in 0..n {
            let mut f = std::pin::pin!(p.join_async());
            assert!(poll_once(f.as_mut()).is_pending(), "join {i} was ready");
        }
    };
    churn_join(WARM);
    let before = footprint();
    churn_join(ROUNDS);
    let after = footprint();
    let pid = p.pid().to_string();
    let killed = later(move || {
        let st = std::process::Command::new("kill")
            .args(["-9", &pid])
            .status();
        assert!(st.unwrap().success());
    });
    let works = block_on_within(p.join_async()).is_some_and(|r| r.is_ok());
    killed.join().unwrap();
    (before, after, works)
}

/// `max_growth_kib`: a registration left behind is ~100 bytes, so 30 000 of them would
/// be ~3 MB (bound 2 MiB), 200 000 ~20 MB (bound 8 MiB).
fn check(what: &str, (before, after, works): Outcome, max_growth_kib: u64) {
    eprintln!("{what}: before {before:?}, after {after:?}, works afterwards: {works}");
    assert_eq!(after.1, before.1, "{what}: threads grew");
    assert_eq!(after.2, before.2, "{what}: descriptors grew");
    assert!(
        after.0 < before.0 + max_growth_kib,
        "{what}: memory grew from {} to {} KiB",
        before.0,
        after.0
    );
    assert!(works, "{what}: the object did not deliver after the churn");
}

fn run(what: &str, target: fn(()) -> Outcome) {
    run_bounded(what, target, 2 * 1024);
}

fn run_bounded(what: &str, target: fn(()) -> Outcome, max_growth_kib: u64) {
    procactor::init();
    let what = what.to_string();
    watchdog(120, move || {
        let mut p = Process::new(target, ()).start().unwrap();
        p.join_timeout(Duration::from_secs(100)).unwrap();
        check(&what, p.result().unwrap(), max_growth_kib);
    });
}

#[test]
fn queue_get_async_churn_of_two_hundred_thousand_frees_what_it_made() {
    run_bounded("Queue::get_async", churn_get_async, 8 * 1024);
}

#[test]
fn lock_acquire_async_churn_frees_what_it_made() {
    run("Lock::acquire_async", churn_lock);
}

#[test]
fn semaphore_acquire_async_churn_frees_what_it_made() {
    run("Semaphore::acquire_async", churn_semaphore);
}

#[test]
fn event_wait_async_churn_frees_what_it_made() {
    run("Event::wait_async", churn_event);
}

#[test]
fn joinable_queue_join_async_churn_frees_what_it_made() {
    run("JoinableQueue::join_async", churn_join_async);
}

#[test]
fn connection_recv_async_churn_frees_what_it_made() {
    run("Connection::recv_async", churn_recv_async);
}

#[test]
fn process_join_async_churn_frees_what_it_made() {
    run("Process::join_async", churn_process_join_async);
}
