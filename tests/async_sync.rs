//! The sync primitives' async face (`Lock`/`RLock`/`Semaphore`/`BoundedSemaphore::
//! acquire_async`, `Event::wait_async`, `Barrier::wait_async`) across processes, under
//! tokio (`current_thread`, `multi_thread`) and `futures::executor::block_on`: a child
//! holds the lock / sets the event / releases the slot / arrives at the barrier /
//! notifies the condition (`Condition::wait_async`); a holder
//! SIGKILLed while an async waiter waits; cancellation (a dropped acquisition holds
//! nothing, even when it had been woken).

procactor::test_support!();

mod common;

use common::aio::{on_each_executor, poll_once, within, Exec};
use common::{asleep_in_futex, wait_until, watchdog};
use procactor::{
    Barrier, BoundedSemaphore, BrokenBarrier, Condition, Event, ExitStatus, Lock, LockError,
    Process, RLock, Semaphore, Value,
};
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(30);

fn ok(mut p: Process<()>) {
    assert_eq!(
        p.join_timeout(LONG).unwrap(),
        ExitStatus::Code(0),
        "child failed"
    );
}

// ------------------------------------------------------------------ child targets

fn hold_lock((l, held, release): (Lock, Event, Event)) {
    let _g = l.acquire().unwrap();
    held.set();
    assert!(release.wait_timeout(LONG));
}

fn hold_lock_forever((l, held): (Lock, Event)) {
    let g = l.acquire().unwrap();
    held.set();
    std::thread::sleep(Duration::from_secs(600));
    drop(g);
}

fn hold_rlock((l, held, release): (RLock, Event, Event)) {
    let _g = l.acquire().unwrap();
    let _g2 = l.acquire().unwrap();
    held.set();
    assert!(release.wait_timeout(LONG));
}

fn hold_slot((s, held, release): (Semaphore, Event, Event)) {
    let _g = s.acquire().unwrap();
    held.set();
    assert!(release.wait_timeout(LONG));
}

fn hold_bounded_slot((s, held, release): (BoundedSemaphore, Event, Event)) {
    let _g = s.acquire().unwrap();
    held.set();
    assert!(release.wait_timeout(LONG));
}

fn hold_slot_forever((s, held): (Semaphore, Event)) {
    let g = s.acquire().unwrap();
    held.set();
    std::thread::sleep(Duration::from_secs(600));
    drop(g);
}

fn set_when_told((e, go): (Event, Event)) {
    assert!(go.wait_timeout(LONG));
    e.set();
}

fn arrive((b, go): (Barrier, Event)) {
    assert!(go.wait_timeout(LONG));
    b.wait_timeout(LONG).unwrap();
}

fn abort_when_told((b, go): (Barrier, Event)) {
    assert!(go.wait_timeout(LONG));
    b.abort();
}

/// Waits (blocking) for the lock, then says so and lets go.
fn lock_then_say((l, got): (Lock, Event)) {
    let g = l
        .acquire_timeout(LONG)
        .unwrap()
        .expect("never got the lock");
    got.set();
    drop(g);
}

fn slot_then_say((s, got): (Semaphore, Event)) {
    let g = s.acquire_timeout(LONG).unwrap().expect("never got a slot");
    got.set();
    drop(g);
}

fn start<A: procactor::Message>(f: fn(A), a: A) -> Process<()> {
    Process::new(f, a).start().unwrap()
}

// ------------------------------------------------------------------ locks

#[test]
fn lock_acquire_async_waits_for_a_child_holder() {
    procactor::init();
    watchdog(180, || {
        on_each_executor(|e| async move {
            let l = Lock::new().unwrap();
            let (held, release) = (Event::new().unwrap(), Event::new().unwrap());
            let p = start(hold_lock, (l.clone(), held.clone(), release.clone()));
            assert!(held.wait_timeout(LONG));
            {
                let mut f = std::pin::pin!(l.acquire_async());
                assert!(poll_once(f.as_mut()).is_pending(), "the child holds it");
                release.set();
                let g = within(e, LONG, f).await.expect("hung").unwrap();
                assert!(l.is_locked());
                drop(g);
            }
            assert!(!l.is_locked());
            // uncontended: at once
            let g = within(e, LONG, l.acquire_async()).await.unwrap().unwrap();
            drop(g);
            ok(p);
        });
    });
}

#[test]
fn rlock_acquire_async_waits_for_a_child_and_reenters() {
    procactor::init();
    watchdog(180, || {
        on_each_executor(|e| async move {
            let l = RLock::new().unwrap();
            let (held, release) = (Event::new().unwrap(), Event::new().unwrap());
            let p = start(hold_rlock, (l.clone(), held.clone(), release.clone()));
            assert!(held.wait_timeout(LONG));
            assert!(within(e, Duration::from_millis(50), l.acquire_async())
                .await
                .is_none());
            release.set();
            let a = within(e, LONG, l.acquire_async())
                .await
                .expect("hung")
                .unwrap();
            // this thread owns it: re-entry is immediate
            let b = within(e, LONG, l.acquire_async()).await.unwrap().unwrap();
            assert_eq!(l.count(), 2);
            drop(b);
            drop(a);
            assert_eq!(l.count(), 0);
            ok(p);
        });
    });
}

#[test]
fn lock_acquire_async_gets_owner_died_when_the_holder_is_killed() {
    procactor::init();
    watchdog(180, || {
        on_each_executor(|e| async move {
            let l = Lock::new().unwrap();
            let held = Event::new().unwrap();
            let mut p = start(hold_lock_forever, (l.clone(), held.clone()));
            assert!(held.wait_timeout(LONG));
            let mut f = std::pin::pin!(l.acquire_async());
            assert!(poll_once(f.as_mut()).is_pending());
            // past the first liveness checks: the waiter is in its backed-off schedule
            std::thread::sleep(Duration::from_millis(300));
            p.kill().unwrap();
            let t = Instant::now();
            match within(e, LONG, f).await.expect("the waiter never noticed") {
                Err(LockError::OwnerDied(g)) => drop(g),
                other => panic!("expected OwnerDied, got {other:?}"),
            }
            assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
            assert!(!l.is_locked());
            p.join_timeout(LONG).unwrap();
        });
    });
}

#[test]
fn a_woken_then_dropped_lock_acquisition_passes_the_lock_on() {
    procactor::init();
    watchdog(180, || {
        on_each_executor(|e| async move {
            let l = Lock::new().unwrap();
            let g = l.acquire().unwrap();
            // first waiter: this future, registered before the child sleeps
            let mut first = Box::pin(l.acquire_async());
            assert!(poll_once(first.as_mut()).is_pending());
            let got = Event::new().unwrap();
            let p = start(lock_then_say, (l.clone(), got.clone()));
            wait_until(LONG, "the child asleep on the lock", || {
                asleep_in_futex(p.pid())
            });
            drop(g); // wakes one sleeper: the first in line is the watcher
            std::thread::sleep(Duration::from_millis(50));
            drop(first); // woken, never polled again: holds nothing, passes the wake on
            assert!(
                got.wait_timeout(LONG),
                "the second waiter never got the lock"
            );
            ok(p);
            assert!(!l.is_locked());
            // two futures of one process: the first dropped after the release
            let g = l.acquire().unwrap();
            let mut a = Box::pin(l.acquire_async());
            let mut b = Box::pin(l.acquire_async());
            assert!(poll_once(a.as_mut()).is_pending());
            assert!(poll_once(b.as_mut()).is_pending());
            drop(g);
            std::thread::sleep(Duration::from_millis(50));
            drop(a);
            let gb = within(e, LONG, b).await.expect("b never got it").unwrap();
            drop(gb);
            assert!(l.try_acquire().unwrap().is_some());
        });
    });
}

// ------------------------------------------------------------------ semaphores

#[test]
fn semaphore_acquire_async_waits_for_a_child_to_release() {
    procactor::init();
    watchdog(180, || {
        on_each_executor(|e| async move {
            let s = Semaphore::new(1).unwrap();
            let (held, release) = (Event::new().unwrap(), Event::new().unwrap());
            let p = start(hold_slot, (s.clone(), held.clone(), release.clone()));
            assert!(held.wait_timeout(LONG));
            let mut f = std::pin::pin!(s.acquire_async());
            assert!(poll_once(f.as_mut()).is_pending(), "no slot free");
            release.set();
            let g = within(e, LONG, f).await.expect("hung").unwrap();
            assert_eq!(s.value(), 0);
            drop(g);
            assert_eq!(s.value(), 1);
            ok(p);
        });
    });
}

#[test]
fn bounded_semaphore_acquire_async_waits_for_a_child_to_release() {
    procactor::init();
    watchdog(180, || {
        on_each_executor(|e| async move {
            let s = BoundedSemaphore::new(1).unwrap();
            let (held, release) = (Event::new().unwrap(), Event::new().unwrap());
            let p = start(
                hold_bounded_slot,
                (s.clone(), held.clone(), release.clone()),
            );
            assert!(held.wait_timeout(LONG));
            assert!(within(e, Duration::from_millis(50), s.acquire_async())
                .await
                .is_none());
            release.set();
            let g = within(e, LONG, s.acquire_async())
                .await
                .expect("hung")
                .unwrap();
            drop(g);
            assert_eq!(s.value(), 1);
            ok(p);
        });
    });
}

#[test]
fn semaphore_acquire_async_reclaims_a_killed_holders_slot() {
    procactor::init();
    watchdog(180, || {
        on_each_executor(|e| async move {
            let s = Semaphore::new(1).unwrap();
            let held = Event::new().unwrap();
            let mut p = start(hold_slot_forever, (s.clone(), held.clone()));
            assert!(held.wait_timeout(LONG));
            let mut f = std::pin::pin!(s.acquire_async());
            assert!(poll_once(f.as_mut()).is_pending());
            p.kill().unwrap();
            let t = Instant::now();
            match within(e, LONG, f).await.expect("the waiter never noticed") {
                Err(LockError::OwnerDied(g)) => drop(g),
                other => panic!("expected OwnerDied, got {other:?}"),
            }
            assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
            assert_eq!(s.value(), 1);
            p.join_timeout(LONG).unwrap();
        });
    });
}

#[test]
fn a_woken_then_dropped_semaphore_acquisition_passes_the_slot_on() {
    procactor::init();
    watchdog(180, || {
        on_each_executor(|e| async move {
            let s = Semaphore::new(1).unwrap();
            let g = s.acquire().unwrap();
            let mut first = Box::pin(s.acquire_async());
            assert!(poll_once(first.as_mut()).is_pending());
            let got = Event::new().unwrap();
            let p = start(slot_then_say, (s.clone(), got.clone()));
            wait_until(LONG, "the child asleep on the semaphore", || {
                asleep_in_futex(p.pid())
            });
            drop(g); // one slot back, one sleeper woken
            std::thread::sleep(Duration::from_millis(50));
            drop(first);
            assert!(
                got.wait_timeout(LONG),
                "the second waiter never got the slot"
            );
            ok(p);
            assert_eq!(s.value(), 1, "the dropped acquisition holds nothing");
            // two futures of one process
            let g = s.acquire().unwrap();
            let mut a = Box::pin(s.acquire_async());
            let mut b = Box::pin(s.acquire_async());
            assert!(poll_once(a.as_mut()).is_pending());
            assert!(poll_once(b.as_mut()).is_pending());
            drop(g);
            std::thread::sleep(Duration::from_millis(50));
            drop(a);
            let gb = within(e, LONG, b).await.expect("b never got it").unwrap();
            assert_eq!(s.value(), 0);
            drop(gb);
            assert_eq!(s.value(), 1);
        });
    });
}

// ------------------------------------------------------------------ event

#[test]
fn event_wait_async_until_a_child_sets_it() {
    procactor::init();
    watchdog(180, || {
        on_each_executor(|e| async move {
            let ev = Event::new().unwrap();
            let go = Event::new().unwrap();
            let p = start(set_when_told, (ev.clone(), go.clone()));
            assert!(within(e, Duration::from_millis(50), ev.wait_async())
                .await
                .is_none());
            let mut f = std::pin::pin!(ev.wait_async());
            assert!(poll_once(f.as_mut()).is_pending());
            go.set();
            within(e, LONG, f).await.expect("never saw the set");
            assert!(ev.is_set());
            // set: ready at once
            within(e, LONG, ev.wait_async()).await.unwrap();
            ok(p);
        });
    });
}

#[test]
fn event_wait_async_sees_a_set_then_clear_pulse() {
    procactor::init();
    watchdog(60, || {
        on_each_executor(|e| async move {
            let ev = Event::new().unwrap();
            let mut f = std::pin::pin!(ev.wait_async());
            assert!(poll_once(f.as_mut()).is_pending());
            ev.set();
            ev.clear();
            // as `wait`: a set during the wait releases it even if cleared since
            within(e, LONG, f).await.expect("the pulse was missed");
        });
    });
}

// ------------------------------------------------------------------ barrier

#[test]
fn barrier_wait_async_with_a_child() {
    procactor::init();
    watchdog(180, || {
        on_each_executor(|e| async move {
            let b = Barrier::new(3).unwrap();
            let go = Event::new().unwrap();
            let p = start(arrive, (b.clone(), go.clone()));
            // two async parties here, the third a child told to come later
            let both = futures::future::join(b.wait_async(), async {
                std::thread::sleep(Duration::from_millis(20));
                go.set();
                b.wait_async().await
            });
            let (x, y) = within(e, LONG, both).await.expect("hung");
            let (x, y) = (x.unwrap(), y.unwrap());
            assert!(x != y && x < 3 && y < 3, "{x} {y}");
            ok(p);
            assert!(!b.is_broken());
            assert_eq!(b.n_waiting(), 0);
        });
    });
}

#[test]
fn barrier_wait_async_broken_by_a_child_abort() {
    procactor::init();
    watchdog(180, || {
        on_each_executor(|e| async move {
            let b = Barrier::new(2).unwrap();
            let go = Event::new().unwrap();
            let p = start(abort_when_told, (b.clone(), go.clone()));
            let mut f = std::pin::pin!(b.wait_async());
            assert!(poll_once(f.as_mut()).is_pending());
            go.set();
            let r = within(e, LONG, f).await.expect("hung");
            assert_eq!(r, Err(BrokenBarrier));
            ok(p);
            assert!(b.is_broken());
            b.reset();
            assert!(!b.is_broken());
        });
    });
}

#[test]
fn a_cancelled_barrier_wait_async_breaks_the_barrier_as_a_timeout_does() {
    procactor::init();
    watchdog(60, || {
        on_each_executor(|e| async move {
            let b = Barrier::new(2).unwrap();
            assert!(within(e, Duration::from_millis(30), b.wait_async())
                .await
                .is_none());
            assert!(b.is_broken());
            assert_eq!(b.n_waiting(), 0);
            assert!(b.wait_timeout(Duration::from_millis(10)).is_err());
            b.reset();
            // dropped before its first poll: nothing happened
            drop(b.wait_async());
            assert!(!b.is_broken());
        });
    });
}

#[test]
fn a_killed_barrier_party_breaks_an_async_wait() {
    procactor::init();
    watchdog(60, || {
        let b = Barrier::new(3).unwrap();
        let go = Event::new().unwrap();
        // the child arrives and waits for a third party that never comes
        let mut p = start(arrive, (b.clone(), go.clone()));
        go.set();
        wait_until(LONG, "the child waiting at the barrier", || {
            b.n_waiting() == 1
        });
        Exec::BlockOn.run(async {
            let mut f = std::pin::pin!(b.wait_async());
            assert!(poll_once(f.as_mut()).is_pending());
            p.kill().unwrap();
            let r = within(Exec::BlockOn, LONG, f).await.expect("hung");
            assert_eq!(r, Err(BrokenBarrier));
        });
        p.join_timeout(LONG).unwrap();
    });
}

// ------------------------------------------------------------------ condition

fn notify_when_told((c, flag, go): (Condition, Value<u8>, Event)) {
    assert!(go.wait_timeout(LONG));
    let _g = c.lock().acquire().unwrap();
    flag.set(1).unwrap();
    c.notify_all();
}

#[test]
fn condition_wait_async_until_a_child_notifies() {
    procactor::init();
    watchdog(180, || {
        on_each_executor(|e| async move {
            let l = Lock::new().unwrap();
            let c = Condition::new(&l).unwrap();
            let flag = Value::new(0u8).unwrap();
            let go = Event::new().unwrap();
            let p = start(notify_when_told, (c.clone(), flag.clone(), go.clone()));
            let mut g = within(e, LONG, l.acquire_async()).await.unwrap().unwrap();
            let mut first = true;
            let t = Instant::now();
            while flag.get().unwrap() == 0 {
                assert!(t.elapsed() < LONG);
                if first {
                    // the lock is released while waiting: the child can take it
                    go.set();
                    first = false;
                }
                g = within(e, LONG, c.wait_async(g))
                    .await
                    .expect("hung")
                    .unwrap();
            }
            assert!(l.is_locked());
            drop(g);
            ok(p);
        });
    });
}

#[test]
fn a_dropped_condition_wait_async_leaves_the_lock_free() {
    procactor::init();
    watchdog(60, || {
        on_each_executor(|e| async move {
            let l = Lock::new().unwrap();
            let c = Condition::new(&l).unwrap();
            let g = l.acquire().unwrap();
            assert!(within(e, Duration::from_millis(30), c.wait_async(g))
                .await
                .is_none());
            assert!(!l.is_locked());
            // dropped before its first poll: the guard goes with it
            let g = l.acquire().unwrap();
            drop(c.wait_async(g));
            assert!(!l.is_locked());
        });
    });
}

// ------------------------------------------------------------------ Send

fn assert_send<T: Send>(_: &T) {}

/// Every future here is `Send`, so that `tokio::spawn` takes it (a compile-time check;
/// the `RLock` one is not listed: its guard is not `Send`, by design).
#[test]
fn the_async_waits_are_send_futures() {
    let l = Lock::new().unwrap();
    let s = Semaphore::new(1).unwrap();
    let bs = BoundedSemaphore::new(1).unwrap();
    let e = Event::new().unwrap();
    let b = Barrier::new(1).unwrap();
    let c = Condition::new(&l).unwrap();
    assert_send(&l.acquire_async());
    assert_send(&s.acquire_async());
    assert_send(&bs.acquire_async());
    assert_send(&e.wait_async());
    assert_send(&b.wait_async());
    let g = l.acquire().unwrap();
    assert_send(&c.wait_async(g));
    let q: procactor::Queue<u8> = procactor::Queue::bounded(1).unwrap();
    let sq: procactor::SimpleQueue<u8> = procactor::SimpleQueue::new().unwrap();
    let jq: procactor::JoinableQueue<u8> = procactor::JoinableQueue::new().unwrap();
    assert_send(&q.get_async());
    assert_send(&q.put_async(1));
    assert_send(&sq.get_async());
    assert_send(&sq.put_async(1));
    assert_send(&jq.get_async());
    assert_send(&jq.put_async(1));
    assert_send(&jq.join_async());
}
