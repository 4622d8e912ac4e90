//! Churn of every kind of pending future (issue 23): a future registered (polled once,
//! pending) and dropped, tens of thousands of times, frees what it made — the watcher's
//! table entries (futex words), the epoll registrations and their duplicated descriptors
//! (connections, pidfds) — and the object still works afterwards: the next future on it,
//! woken only through its waker, completes when its condition comes true 50 ms later.
//!
//! `Pool::apply_async`'s result awaited through `IntoFuture` is churned too, half of its
//! futures awaited to the end and half dropped pending.
//!
//! The Manager proxies' `_async` futures are churned with their requests parked at the
//! server (`get_async` of an empty queue, `acquire_async` of a held lock): each dropped
//! one must be withdrawn there too, so an item or a lock freed afterwards goes to no
//! withdrawn request.
//!
//! `Queue::get_async`, the most used, is churned 200 000 times. Each churn runs in a
//! process of its own: the test binary's other tests would change its memory, thread and
//! descriptor counts meanwhile.

procactor::test_support!();

mod common;

use common::aio::{poll_once, within, Exec};
use common::watchdog;
use procactor::{Event, JoinableQueue, Lock, Manager, Pipe, Pool, Process, Queue, Semaphore};
use std::future::Future;
use std::future::IntoFuture;
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

/// Blocks a pool worker until `gate` is set (at most 20 s: never a hang).
fn wait_for_gate(gate: Event) -> bool {
    gate.wait_timeout(Duration::from_secs(20))
}

fn triple(x: u64) -> u64 {
    3 * x
}

/// `(USS KiB, threads, open descriptors)` of this process: the unique set size (its
/// private pages, from `/proc/self/smaps_rollup`) rather than `VmRSS`, so that pages of
/// the binary and of libraries shared with the pool's workers do not count.
fn footprint_uss() -> (u64, u64, u64) {
    let rollup = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap();
    let uss = rollup
        .lines()
        .filter(|l| l.starts_with("Private_Clean:") || l.starts_with("Private_Dirty:"))
        .map(|l| l.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap())
        .sum();
    let (_, threads, fds) = footprint();
    (uss, threads, fds)
}

/// Tasks per round of [`churn_awaited_results`]: half awaited, half dropped after one
/// poll.
const RESULTS_PER_ROUND: u64 = 1_000;

/// Waits (at most [`DONE`]) until the pool named `name` has no task left: the tasks of
/// dropped results run on after the drop, and their outcome is discarded.
fn wait_idle(name: &str) {
    let t0 = std::time::Instant::now();
    loop {
        let snap = procactor::observe::snapshot();
        let pool = snap
            .pools
            .iter()
            .find(|p| p.name == name)
            .expect("the pool");
        if pool.pending == 0 {
            return;
        }
        assert!(t0.elapsed() < DONE, "{} tasks still pending", pool.pending);
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// One round: both workers are held by a gate task first, so every task after them is
/// still queued when its result's future is polled (each must be pending: nothing is
/// left to timing); the odd ones are dropped after that one poll, the even ones are
/// polled once too, then, the gate set, awaited to the end under `block_on`. The pool
/// is idle when the round starts, so the two gate tasks go one to each worker (a task
/// goes to the worker with the fewest tasks in its ring, the first on a tie).
fn awaited_results_round(pool: &Pool, gate: &Event, round: u64) {
    wait_idle(CHURN_POOL);
    gate.clear();
    let held: Vec<_> = (0..2)
        .map(|_| pool.apply_async(wait_for_gate, gate.clone()).unwrap())
        .collect();
    let mut kept = Vec::new();
    for i in 0..RESULTS_PER_ROUND {
        let x = round * RESULTS_PER_ROUND + i;
        let mut f = pool.apply_async(triple, x).unwrap().into_future();
        assert!(
            poll_once(f.as_mut()).is_pending(),
            "result {x} was ready before the gate opened: the churn would prove nothing"
        );
        if i % 2 == 0 {
            kept.push((x, f));
        } // (else dropped here, pending, its task still queued in the pool)
    }
    gate.set();
    for (x, f) in kept {
        assert_eq!(block_on_within(f), Some(Ok(3 * x)), "awaited result {x}");
    }
    for h in held {
        assert_eq!(h.get_timeout(DONE), Ok(true), "a gate task");
    }
}

const CHURN_POOL: &str = "churned";

fn churn_awaited_results((): ()) -> Outcome {
    let pool = Pool::builder()
        .processes(2)
        .name(CHURN_POOL)
        .build()
        .unwrap();
    let gate = Event::new().unwrap();
    // (the pool's threads, its tables' capacity, the codec's)
    for round in 0..2 {
        awaited_results_round(&pool, &gate, round);
    }
    let before = footprint_uss();
    for round in 2..22 {
        awaited_results_round(&pool, &gate, round);
    }
    // the dropped results' tasks were queued before the last round's gate tasks ended:
    // all done now; a handle the pool kept for a gate task's argument (the Event's
    // descriptor) is let go just after its result went out, so the count is given a few
    // seconds to come back (it must, and exactly)
    let mut after = footprint_uss();
    let t0 = std::time::Instant::now();
    while (after.1, after.2) != (before.1, before.2) && t0.elapsed() < DONE {
        std::thread::sleep(Duration::from_millis(10));
        after = footprint_uss();
    }
    // the pool still answers, blocking and awaited
    let works = pool.apply(triple, 14).ok() == Some(42)
        && block_on_within(pool.apply_async(triple, 5).unwrap().into_future()) == Some(Ok(15));
    (before, after, works)
}

/// Manager proxies' futures churned (each one's request parked at the server, then
/// withdrawn): about 2.5 s in a debug build on an idle 2-core machine.
const MANAGER_ROUNDS: u32 = 50_000;

/// [`MANAGER_ROUNDS`] `_async` futures of a manager's proxies (half `get_async` of an
/// empty queue, half `acquire_async` of a lock this thread holds), each polled once, so
/// that its request is sent and parked at the server, then dropped (withdrawn). Then:
/// an async call answers (and, the connection being served in order, every withdrawal
/// before it was applied); no withdrawn request is left parked at the server: an item
/// put stays in the queue (a parked get would have taken it), the lock released is
/// free (a parked acquire would have been granted it); a blocking call answers; a live
/// `get_async` is woken by an item put 50 ms later, and `acquire_async` takes the lock.
fn churn_manager_async((): ()) -> Outcome {
    use futures::future::{Either, FutureExt};
    let mgr = Manager::start().unwrap();
    let (q, l) = (mgr.queue::<u64>().unwrap(), mgr.lock().unwrap());
    let (q, l) = (&q, &l);
    // held through this thread's blocking connection: every acquire_async waits
    let held = l.acquire().unwrap();
    let mut n = 0u32;
    let make = move || {
        n += 1;
        if n.is_multiple_of(2) {
            Either::Left(q.get_async().map(drop))
        } else {
            Either::Right(l.acquire_async().map(drop))
        }
    };
    churn(WARM, make);
    // (and the test's timer thread, which `block_on_within` starts)
    assert!(matches!(block_on_within(q.len_async()), Some(Ok(0))));
    let before = footprint();
    let t0 = std::time::Instant::now();
    churn(MANAGER_ROUNDS, make);
    let took = t0.elapsed();
    // (after the withdrawals on the one connection: applied when this is answered)
    let answered = matches!(block_on_within(q.len_async()), Some(Ok(0)));
    let after = footprint();
    eprintln!("{MANAGER_ROUNDS} manager futures polled once and dropped in {took:?}");
    let mut works = answered;
    let mut expect = |ok: bool, what: &str| {
        if !ok {
            eprintln!("after the manager churn: {what}");
            works = false;
        }
    };
    expect(answered, "len_async did not answer 0");
    q.put(7).unwrap();
    expect(
        q.len().unwrap() == 1,
        "an item put went to a withdrawn get still parked",
    );
    drop(held);
    expect(
        !l.is_locked().unwrap(),
        "the lock released went to a withdrawn acquire still parked",
    );
    expect(
        matches!(block_on_within(q.get_async()), Some(Ok(7))),
        "get_async did not take the item",
    );
    let q2 = q.clone();
    let put = later(move || q2.put(8).unwrap());
    expect(
        matches!(block_on_within(q.get_async()), Some(Ok(8))),
        "a waiting get_async was not woken by a put",
    );
    put.join().unwrap();
    let guard = block_on_within(l.acquire_async());
    expect(
        guard.as_ref().is_some_and(|g| g.is_ok()) && l.is_locked().unwrap(),
        "acquire_async did not take the free lock",
    );
    drop(guard);
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

/// 20 000 `apply_async` results (after 2 000 to warm up) turned into futures
/// (`IntoFuture`, as `.await` does) and polled while their task is still queued: half
/// awaited to the end, half dropped pending. Memory is the USS here: a result left
/// behind (its channel, its signal, the boxed future) is several hundred bytes, 10 000
/// of them some megabytes (bound 2 MiB).
#[test]
fn awaited_pool_results_churn_frees_what_it_made() {
    run("AsyncResult::into_future", churn_awaited_results);
}

#[test]
fn process_join_async_churn_frees_what_it_made() {
    run("Process::join_async", churn_process_join_async);
}

/// See [`churn_manager_async`].
#[test]
fn manager_async_churn_withdraws_every_parked_request_and_frees_what_it_made() {
    run("Manager proxies' _async", churn_manager_async);
}
