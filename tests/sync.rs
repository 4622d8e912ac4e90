//! Cross-process synchronisation: Lock, RLock, Semaphore, BoundedSemaphore, Event,
//! Condition, Barrier.
procactor::test_support!();

mod common;

use common::{asleep_in_futex, wait_until, watchdog};
use procactor::{
    Barrier, BoundedSemaphore, BrokenBarrier, Condition, Error, Event, Lock, LockError, Process,
    RLock, RawArray, RawValue, Semaphore, Value,
};
use proptest::prelude::*;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(30);

fn start<A: procactor::Message, R: procactor::Message>(f: fn(A) -> R, a: A) -> Process<R> {
    Process::new(f, a).daemon(true).start().unwrap()
}

// ---- Lock

const N: u64 = 100_000;

/// Non-atomic read-modify-write of shared memory, protected only by the Lock.
fn locked_increments((lock, n, go): (Lock, RawValue<u64>, Event)) {
    assert!(go.wait_timeout(LONG));
    for _ in 0..N {
        let _g = lock.acquire().unwrap();
        // SAFETY: every process touches `n` only while holding `lock`.
        unsafe {
            let v = n.as_ptr().read();
            n.as_ptr().write(v + 1);
        }
    }
}

#[test]
fn lock_gives_exact_counts_under_contention() {
    watchdog(120, || {
        let lock = Lock::new().unwrap();
        let n = RawValue::new(0u64).unwrap();
        let go = Event::new().unwrap();
        let mut ps: Vec<_> = (0..3)
            .map(|_| start(locked_increments, (lock.clone(), n.clone(), go.clone())))
            .collect();
        go.set();
        for p in &mut ps {
            assert!(p.join().unwrap().success());
        }
        let _g = lock.acquire().unwrap();
        // SAFETY: the children have exited and we hold the lock.
        assert_eq!(unsafe { n.as_ptr().read() }, 3 * N);
    });
}

/// Tries to take a lock the parent holds: (got it, milliseconds waited).
fn try_for_200ms(lock: Lock) -> (bool, u64, bool) {
    let tried = lock.try_acquire().unwrap().is_some();
    let t = Instant::now();
    let got = lock
        .acquire_timeout(Duration::from_millis(200))
        .unwrap()
        .is_some();
    (got, t.elapsed().as_millis() as u64, tried)
}

#[test]
fn lock_timeouts_are_respected_across_processes() {
    watchdog(60, || {
        let lock = Lock::new().unwrap();
        let g = lock.acquire().unwrap();
        assert!(lock.is_locked());
        let mut p = start(try_for_200ms, lock.clone());
        let (got, ms, tried) = p.result().unwrap();
        assert!(!got && !tried);
        assert!((200..5000).contains(&ms), "waited {ms} ms");
        drop(g);
        let mut p = start(try_for_200ms, lock.clone());
        let (got, ms, tried) = p.result().unwrap();
        assert!(got && tried && ms < 5000);
    });
}

fn hold_lock_forever((lock, e): (Lock, Event)) {
    let _g = lock.acquire().unwrap();
    e.set();
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn lock_owner_death_gives_owner_died_and_the_lock_works_after() {
    watchdog(60, || {
        let lock = Lock::new().unwrap();
        let e = Event::new().unwrap();
        let mut p = start(hold_lock_forever, (lock.clone(), e.clone()));
        assert!(e.wait_timeout(LONG));
        assert!(lock.try_acquire().unwrap().is_none());
        p.kill().unwrap();
        p.join().unwrap();
        let t = Instant::now();
        let r = lock.acquire_timeout(Duration::from_secs(20));
        assert!(matches!(r, Err(LockError::OwnerDied(_))), "{r:?}");
        assert!(t.elapsed() < Duration::from_secs(10));
        drop(r);
        assert!(!lock.is_locked());
        assert!(lock.acquire_timeout(LONG).unwrap().is_some());
    });
}

// ---- RLock

fn reenter(r: RLock) -> (u32, u32, bool) {
    let a = r.acquire().unwrap();
    let b = r.acquire_timeout(LONG).unwrap().unwrap();
    let c = r.try_acquire().unwrap().unwrap();
    let depth = r.count();
    drop(c);
    drop(b);
    let after = r.count();
    drop(a);
    (depth, after, r.try_acquire().unwrap().is_some())
}

fn rlock_try(r: RLock) -> bool {
    r.acquire_timeout(Duration::from_millis(100))
        .unwrap()
        .is_some()
}

fn rlock_hold_forever((r, e): (RLock, Event)) {
    let _a = r.acquire().unwrap();
    let _b = r.acquire().unwrap();
    e.set();
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn rlock_is_reentrant_in_its_owner_and_exclusive_between_processes() {
    watchdog(60, || {
        let r = RLock::new().unwrap();
        assert_eq!(start(reenter, r.clone()).result().unwrap(), (3, 1, true));
        let g = r.acquire().unwrap();
        let g2 = r.acquire().unwrap();
        assert!(!start(rlock_try, r.clone()).result().unwrap());
        drop(g2);
        assert!(!start(rlock_try, r.clone()).result().unwrap());
        drop(g);
        assert!(start(rlock_try, r.clone()).result().unwrap());
        // a dead owner, two levels deep
        let e = Event::new().unwrap();
        let mut p = start(rlock_hold_forever, (r.clone(), e.clone()));
        assert!(e.wait_timeout(LONG));
        p.kill().unwrap();
        p.join().unwrap();
        match r.acquire_timeout(Duration::from_secs(20)) {
            Err(LockError::OwnerDied(g)) => {
                assert_eq!(r.count(), 1);
                drop(g);
            }
            other => panic!("expected OwnerDied, got {other:?}"),
        }
        assert_eq!(r.count(), 0);
    });
}

// ---- Semaphore

/// `[current holders, max holders seen]`, updated atomically by each holder.
fn sem_worker((s, stats): (Semaphore, RawArray<u32>)) {
    for _ in 0..20 {
        let _g = s.acquire_timeout(LONG).unwrap().unwrap();
        let cur = stats.atomic_u32(0).unwrap().fetch_add(1, Ordering::SeqCst) + 1;
        stats
            .atomic_u32(1)
            .unwrap()
            .fetch_max(cur, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(1));
        stats.atomic_u32(0).unwrap().fetch_sub(1, Ordering::SeqCst);
    }
}

#[test]
fn semaphore_never_admits_more_than_its_value() {
    watchdog(120, || {
        let s = Semaphore::new(2).unwrap();
        let stats = RawArray::<u32>::zeroed(2).unwrap();
        let mut ps: Vec<_> = (0..6)
            .map(|_| start(sem_worker, (s.clone(), stats.clone())))
            .collect();
        for p in &mut ps {
            assert!(p.join().unwrap().success());
        }
        let max = stats.atomic_u32(1).unwrap().load(Ordering::SeqCst);
        assert!((1..=2).contains(&max), "max concurrent holders {max}");
        assert_eq!(stats.atomic_u32(0).unwrap().load(Ordering::SeqCst), 0);
        assert_eq!(s.value(), 2);
    });
}

fn sem_timeout(s: Semaphore) -> (bool, u64) {
    let t = Instant::now();
    let got = s
        .acquire_timeout(Duration::from_millis(150))
        .unwrap()
        .is_some();
    (got, t.elapsed().as_millis() as u64)
}

fn sem_hold_forever((s, e): (Semaphore, Event)) {
    let _g = s.acquire().unwrap();
    e.set();
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn semaphore_timeout_and_dead_holder() {
    watchdog(60, || {
        let s = Semaphore::new(1).unwrap();
        let e = Event::new().unwrap();
        let mut holder = start(sem_hold_forever, (s.clone(), e.clone()));
        assert!(e.wait_timeout(LONG));
        assert_eq!(s.value(), 0);
        let (got, ms) = start(sem_timeout, s.clone()).result().unwrap();
        assert!(!got && (150..5000).contains(&ms), "{got} {ms}");
        holder.kill().unwrap();
        holder.join().unwrap();
        let t = Instant::now();
        let r = s.acquire_timeout(Duration::from_secs(20));
        assert!(matches!(r, Err(LockError::OwnerDied(_))), "{r:?}");
        assert!(t.elapsed() < Duration::from_secs(10));
        drop(r);
        assert_eq!(s.value(), 1);
    });
}

/// Takes and gives back slots as fast as it can, until killed.
fn sem_churn((s, go): (Semaphore, Event)) {
    go.set();
    loop {
        let g = s.acquire().unwrap_or_else(|e| e.into_inner());
        std::hint::black_box(&g);
        drop(g);
    }
}

#[test]
fn processes_killed_at_random_moments_neither_lose_nor_make_up_slots() {
    watchdog(240, || {
        let s = Semaphore::new(2).unwrap();
        let mut seed = common::test_seed("semaphore kill test") | 1;
        for round in 0..8 {
            let go = Event::new().unwrap();
            let mut ps: Vec<_> = (0..3)
                .map(|_| start(sem_churn, (s.clone(), go.clone())))
                .collect();
            assert!(go.wait_timeout(LONG));
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            std::thread::sleep(Duration::from_micros(500 + seed % 20_000));
            for p in &mut ps {
                p.kill().unwrap();
                // the kill landed: the churner (which never ends by itself) died of it
                assert_eq!(p.join().unwrap(), procactor::ExitStatus::Signal(9));
            }
            // every slot the dead held comes back, and no more than the two there are
            let took = || match s.acquire_timeout(LONG) {
                Ok(Some(g)) => g,
                Err(LockError::OwnerDied(g)) => {
                    eprintln!("round {round}: dead holder reclaimed");
                    g
                }
                Ok(None) => panic!("round {round}: a slot was lost"),
            };
            let a = took();
            let b = took();
            assert!(
                s.try_acquire().unwrap().is_none(),
                "round {round}: a slot was made up"
            );
            drop((a, b));
            assert_eq!(s.value(), 2, "round {round}");
        }
    });
}

fn bounded_release(s: BoundedSemaphore) -> (bool, bool) {
    let over = matches!(s.release(), Err(Error::OverRelease));
    s.acquire().unwrap().forget();
    (over, s.release().is_ok())
}

#[test]
fn bounded_semaphore_refuses_over_release_in_a_child() {
    watchdog(60, || {
        let s = BoundedSemaphore::new(1).unwrap();
        assert_eq!(
            start(bounded_release, s.clone()).result().unwrap(),
            (true, true)
        );
        assert_eq!(s.value(), 1);
        assert_eq!(s.bound(), 1);
    });
}

// ---- Event

fn event_waits((e, timeout_ms): (Event, u64)) -> (bool, u64) {
    let t = Instant::now();
    let set = e.wait_timeout(Duration::from_millis(timeout_ms));
    (set, t.elapsed().as_millis() as u64)
}

#[test]
fn event_wakes_waiters_in_other_processes_and_times_out() {
    watchdog(60, || {
        let e = Event::new().unwrap();
        let mut short = start(event_waits, (e.clone(), 200));
        let mut long = start(event_waits, (e.clone(), 30_000));
        let (set, ms) = short.result().unwrap();
        assert!(!set && (200..5000).contains(&ms), "{set} {ms}");
        assert!(!e.is_set());
        e.set();
        let (set, ms) = long.result().unwrap();
        assert!(set && ms < 20_000, "{set} {ms}");
        // already set: returns at once
        assert!(start(event_waits, (e.clone(), 30_000)).result().unwrap().0);
        e.clear();
        assert!(!e.is_set());
    });
}

/// Says it has started, then waits for `e` without a timeout: milliseconds from just
/// before the signal until `wait` returned.
fn event_waits_untimed((e, started): (Event, Event)) -> u64 {
    let t = Instant::now();
    started.set();
    e.wait();
    t.elapsed().as_millis() as u64
}

#[test]
fn event_untimed_wait_blocks_until_set() {
    watchdog(60, || {
        let e = Event::new().unwrap();
        let mut ps: Vec<_> = (0..2)
            .map(|_| {
                let started = Event::new().unwrap();
                let p = start(event_waits_untimed, (e.clone(), started.clone()));
                assert!(started.wait_timeout(LONG));
                p
            })
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        // an untimed wait that returned early would have let its process exit
        for p in &ps {
            assert!(p.is_alive(), "Event::wait returned before set");
        }
        assert!(!e.is_set());
        e.set();
        for p in &mut ps {
            let ms = p.result().unwrap();
            // the set came >= 200 ms after the child's clock started (CLOCK_MONOTONIC is
            // system-wide); the upper bound only says that it did wake
            assert!((150..20_000).contains(&ms), "waited {ms} ms");
        }
    });
}

// ---- Condition

fn wait_until_asleep<R: procactor::Message>(ps: &[Process<R>]) {
    for p in ps {
        wait_until(LONG, "a child asleep on the condition", || {
            asleep_in_futex(p.pid())
        });
    }
}

/// What a flag waiter gets: the condition, the flag, per-waiter test counters, its slot.
type FlagWaiterArgs = (Condition, Value<u32>, RawArray<u32>, usize);
type FlagWaiter = fn(FlagWaiterArgs) -> u32;

/// Loops on an untimed `wait` until the flag is set, counting each test of the flag in
/// `tests[i]` (the first one, made under the lock just before waiting, says "ready").
/// Returns the flag it saw.
fn cond_wait_untimed_loop((c, flag, tests, i): FlagWaiterArgs) -> u32 {
    let tested = tests.atomic_u32(i).unwrap();
    let mut g = c.lock().acquire().unwrap();
    loop {
        let f = flag.get().unwrap();
        tested.fetch_add(1, Ordering::SeqCst);
        if f != 0 {
            return f;
        }
        g = c.wait(g).unwrap();
    }
}

/// As [`cond_wait_untimed_loop`], with `wait_while`.
fn cond_wait_while_untimed((c, flag, tests, i): FlagWaiterArgs) -> u32 {
    let tested = tests.atomic_u32(i).unwrap();
    let g = c.lock().acquire().unwrap();
    let _g = c
        .wait_while(g, || {
            let f = flag.get().unwrap();
            tested.fetch_add(1, Ordering::SeqCst);
            f == 0
        })
        .unwrap();
    flag.get().unwrap()
}

#[test]
fn condition_untimed_wait_and_wait_while_are_woken_by_notify_all_across_processes() {
    watchdog(120, || {
        let lock = Lock::new().unwrap();
        let c = Condition::new(&lock).unwrap();
        let flag = Value::new(0u32).unwrap();
        let tests = RawArray::<u32>::zeroed(4).unwrap();
        let target: [FlagWaiter; 2] = [cond_wait_untimed_loop, cond_wait_while_untimed];
        let mut ps: Vec<_> = (0..4)
            .map(|i| start(target[i % 2], (c.clone(), flag.clone(), tests.clone(), i)))
            .collect();
        let tested = |i: usize| tests.atomic_u32(i).unwrap().load(Ordering::SeqCst);
        // each tested the flag once under the lock (and is waiting, or about to: it took
        // its snapshot before letting go of the lock, so no notify from now on is lost)
        wait_until(LONG, "every waiter ready", || {
            (0..4).all(|i| tested(i) == 1)
        });
        // exercise the kernel wake-up, not only the "word changed" path
        wait_until_asleep(&ps);

        // a notification with the state unchanged: every one wakes, tests the flag
        // again and goes back to waiting
        {
            let _g = lock.acquire().unwrap();
            c.notify_all();
        }
        wait_until(LONG, "every waiter retested", || {
            (0..4).all(|i| tested(i) == 2)
        });
        std::thread::sleep(Duration::from_millis(100));
        for (i, p) in ps.iter().enumerate() {
            assert!(p.is_alive(), "waiter {i} returned with the flag still 0");
            assert_eq!(tested(i), 2, "waiter {i} woke without a notification");
        }

        {
            let _g = lock.acquire().unwrap();
            flag.set(42).unwrap();
            c.notify_all();
        }
        for (i, p) in ps.iter_mut().enumerate() {
            assert_eq!(p.result().unwrap(), 42, "waiter {i}");
            // nothing woke them but the two notify_all (no signals are sent)
            assert_eq!(tested(i), 3, "waiter {i}");
        }
    });
}

#[test]
fn condition_untimed_wait_is_woken_by_notify_one_across_processes() {
    watchdog(60, || {
        let lock = Lock::new().unwrap();
        let c = Condition::new(&lock).unwrap();
        let flag = Value::new(0u32).unwrap();
        let target: [(FlagWaiter, &str); 2] = [
            (cond_wait_untimed_loop, "wait"),
            (cond_wait_while_untimed, "wait_while"),
        ];
        for (round, (f, name)) in target.into_iter().enumerate() {
            let tests = RawArray::<u32>::zeroed(1).unwrap();
            let tested = || tests.atomic_u32(0).unwrap().load(Ordering::SeqCst);
            let mut p = start(f, (c.clone(), flag.clone(), tests.clone(), 0));
            wait_until(LONG, "the waiter ready", || tested() == 1);
            wait_until_asleep(std::slice::from_ref(&p));
            let value = 7 + round as u32;
            {
                let _g = lock.acquire().unwrap();
                flag.set(value).unwrap();
                c.notify(1);
            }
            assert!(
                p.join_timeout(LONG).is_ok(),
                "the {name} waiter did not return after notify(1)"
            );
            assert_eq!(p.result().unwrap(), value, "{name}");
            assert_eq!(tested(), 2, "{name}");
            flag.set(0).unwrap();
        }
    });
}

const READY: usize = 0;
const WOKEN: usize = 1;

/// Says it is ready under the condition's lock, waits once without a timeout, and
/// counts its wake-up.
fn cond_wait_once_counted((c, counts): (Condition, RawArray<u32>)) {
    let g = c.lock().acquire().unwrap();
    counts
        .atomic_u32(READY)
        .unwrap()
        .fetch_add(1, Ordering::SeqCst);
    let _g = c.wait(g).unwrap();
    counts
        .atomic_u32(WOKEN)
        .unwrap()
        .fetch_add(1, Ordering::SeqCst);
}

/// Three processes blocked in an untimed `Condition::wait`, each in the kernel.
///
/// `Condition::wait` snapshots the notification counter under the lock, releases the
/// lock, then sleeps on the counter's futex: a waiter between the release and the sleep
/// is woken by *any* later notify (the word changed: a spurious wake-up, allowed by the
/// docs), so "wakes at most n" holds only for waiters already asleep in the kernel. A
/// ready signal given under the lock guarantees the snapshot was taken (no notify is
/// lost) but not the sleep, so the parent also waits until `/proc` shows each one
/// asleep on a futex; after its ready signal a child can sleep nowhere else. Once
/// asleep, a futex waiter only wakes on a wake-up call for that word or a signal (none
/// are sent), so each counted wake-up is one that `notify` gave.
fn three_asleep_on(c: &Condition) -> (Vec<Process<()>>, RawArray<u32>) {
    let counts = RawArray::<u32>::zeroed(2).unwrap();
    let ps: Vec<_> = (0..3)
        .map(|_| start(cond_wait_once_counted, (c.clone(), counts.clone())))
        .collect();
    wait_until(LONG, "three ready", || {
        counts.atomic_u32(READY).unwrap().load(Ordering::SeqCst) == 3
    });
    wait_until_asleep(&ps);
    (ps, counts)
}

#[test]
fn condition_notify_n_wakes_at_most_n_waiters() {
    watchdog(120, || {
        let lock = Lock::new().unwrap();
        let c = Condition::new(&lock).unwrap();
        let (mut ps, counts) = three_asleep_on(&c);
        let woken = || counts.atomic_u32(WOKEN).unwrap().load(Ordering::SeqCst);
        assert_eq!(woken(), 0);
        {
            let _g = lock.acquire().unwrap();
            c.notify(1);
        }
        wait_until(LONG, "one woken", || woken() >= 1);
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(woken(), 1, "notify(1) woke more than one");
        {
            let _g = lock.acquire().unwrap();
            c.notify(0); // wakes nobody
        }
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(woken(), 1, "notify(0) woke a waiter");
        {
            let _g = lock.acquire().unwrap();
            c.notify(2);
        }
        wait_until(LONG, "all three woken", || woken() == 3);
        for p in &mut ps {
            assert!(p.join().unwrap().success());
        }
        assert_eq!(woken(), 3);
    });
}

#[test]
fn condition_notify_with_a_huge_n_wakes_every_waiter() {
    watchdog(120, || {
        let lock = Lock::new().unwrap();
        let c = Condition::new(&lock).unwrap();
        for n in [usize::MAX, u32::MAX as usize, 1 << 31] {
            let (mut ps, counts) = three_asleep_on(&c);
            let woken = || counts.atomic_u32(WOKEN).unwrap().load(Ordering::SeqCst);
            {
                let _g = lock.acquire().unwrap();
                c.notify(n);
            }
            let t = Instant::now();
            while woken() < 3 && t.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(5));
            }
            assert_eq!(woken(), 3, "notify({n}) woke {} of 3", woken());
            for p in &mut ps {
                assert!(p.join().unwrap().success());
            }
        }
    });
}

fn cond_waiter((c, flag): (Condition, Value<u32>)) -> bool {
    let g = c.lock().acquire().unwrap();
    let (_g, ok) = c
        .wait_timeout_while(g, LONG, || flag.get().unwrap() == 0)
        .unwrap();
    ok
}

fn cond_wait_timeout(c: Condition) -> (bool, u64) {
    let g = c.lock().acquire().unwrap();
    let t = Instant::now();
    let (_g, woken) = c.wait_timeout(g, Duration::from_millis(150)).unwrap();
    (woken, t.elapsed().as_millis() as u64)
}

#[test]
fn condition_notifies_across_processes() {
    watchdog(60, || {
        let lock = Lock::new().unwrap();
        let c = Condition::new(&lock).unwrap();
        let flag = Value::new(0u32).unwrap();
        let mut ws: Vec<_> = (0..2)
            .map(|_| start(cond_waiter, (c.clone(), flag.clone())))
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        {
            let _g = lock.acquire().unwrap();
            c.notify_all(); // spurious for them: the flag is still 0
        }
        std::thread::sleep(Duration::from_millis(50));
        {
            let _g = lock.acquire().unwrap();
            flag.set(1).unwrap();
            c.notify_all();
        }
        for w in &mut ws {
            assert!(w.result().unwrap());
        }
        let (woken, ms) = start(cond_wait_timeout, c.clone()).result().unwrap();
        assert!(!woken && (150..5000).contains(&ms), "{woken} {ms}");
        // a waiter notified with notify(1)
        let mut w = start(cond_wait_timeout_long, c.clone());
        let t = Instant::now();
        while w.is_alive() && t.elapsed() < LONG {
            let _g = lock.acquire().unwrap();
            c.notify(1);
            drop(_g);
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(w.result().unwrap());
    });
}

fn cond_wait_timeout_long(c: Condition) -> bool {
    let g = c.lock().acquire().unwrap();
    c.wait_timeout(g, LONG).unwrap().1
}

// ---- Barrier

fn barrier_rounds((b, rounds): (Barrier, u32)) -> Vec<usize> {
    (0..rounds).map(|_| b.wait_timeout(LONG).unwrap()).collect()
}

#[test]
fn barrier_releases_all_parties_with_distinct_indices_round_after_round() {
    watchdog(60, || {
        let b = Barrier::new(4).unwrap();
        assert_eq!(b.parties(), 4);
        let mut ps: Vec<_> = (0..3)
            .map(|_| start(barrier_rounds, (b.clone(), 5)))
            .collect();
        let mine = barrier_rounds((b.clone(), 5));
        let mut all = vec![mine];
        for p in &mut ps {
            all.push(p.result().unwrap());
        }
        for round in 0..5 {
            let mut idx: Vec<usize> = all.iter().map(|v| v[round]).collect();
            idx.sort_unstable();
            assert_eq!(idx, vec![0, 1, 2, 3], "round {round}");
        }
        assert!(!b.is_broken());
        assert_eq!(b.n_waiting(), 0);
    });
}

/// The index (`None`: broken) and how long the wait took.
fn barrier_wait_once((b, secs): (Barrier, u64)) -> (Option<usize>, u64) {
    let t = Instant::now();
    let r = b.wait_timeout(Duration::from_secs(secs));
    (r.ok(), t.elapsed().as_millis() as u64)
}

#[test]
fn barrier_abort_and_reset_break_waiters_and_reset_makes_it_usable() {
    watchdog(60, || {
        let b = Barrier::new(3).unwrap();
        let mut ps: Vec<_> = (0..2)
            .map(|_| start(barrier_wait_once, (b.clone(), 30)))
            .collect();
        wait_until(LONG, "two waiters", || b.n_waiting() == 2);
        b.abort();
        for p in &mut ps {
            let (r, ms) = p.result().unwrap();
            assert_eq!(r, None);
            assert!(ms < 20_000);
        }
        assert!(b.is_broken());
        assert_eq!(b.wait_timeout(LONG), Err(BrokenBarrier));
        b.reset();
        assert!(!b.is_broken());
        // reset while two wait: they break, the barrier is usable afterwards
        let mut ps: Vec<_> = (0..2)
            .map(|_| start(barrier_wait_once, (b.clone(), 30)))
            .collect();
        wait_until(LONG, "two waiters again", || b.n_waiting() == 2);
        b.reset();
        for p in &mut ps {
            assert_eq!(p.result().unwrap().0, None);
        }
        assert!(!b.is_broken());
        let mut ps: Vec<_> = (0..2)
            .map(|_| start(barrier_wait_once, (b.clone(), 30)))
            .collect();
        let mine = b.wait_timeout(LONG).unwrap();
        let mut idx = vec![mine];
        for p in &mut ps {
            idx.push(p.result().unwrap().0.unwrap());
        }
        idx.sort_unstable();
        assert_eq!(idx, vec![0, 1, 2]);
    });
}

#[test]
fn barrier_timeout_breaks_it() {
    watchdog(60, || {
        let b = Barrier::new(2).unwrap();
        let (r, ms) = start(barrier_wait_once, (b.clone(), 0)).result().unwrap();
        assert_eq!(r, None);
        assert!(ms < 5000);
        let t = Instant::now();
        assert_eq!(
            b.wait_timeout(Duration::from_millis(100)),
            Err(BrokenBarrier)
        );
        assert!(t.elapsed() < Duration::from_secs(5));
        assert!(b.is_broken());
        // a timing-out waiter breaks it for everyone
        b.reset();
        let t = Instant::now();
        assert_eq!(
            b.wait_timeout(Duration::from_millis(150)),
            Err(BrokenBarrier)
        );
        assert!(t.elapsed() >= Duration::from_millis(150));
        assert!(b.is_broken());
    });
}

fn barrier_wait_forever(b: Barrier) {
    let _ = b.wait();
}

#[test]
fn barrier_breaks_when_a_waiter_dies() {
    watchdog(60, || {
        let b = Barrier::new(3).unwrap();
        let mut victim = start(barrier_wait_forever, b.clone());
        let mut other = start(barrier_wait_once, (b.clone(), 30));
        wait_until(LONG, "two waiters", || b.n_waiting() == 2);
        victim.kill().unwrap();
        victim.join().unwrap();
        let (r, ms) = other.result().unwrap();
        assert_eq!(r, None);
        assert!(ms < 20_000, "took {ms} ms");
        assert!(b.is_broken());
        b.reset();
        assert!(!b.is_broken());
        assert_eq!(b.n_waiting(), 0);
    });
}

/// `rounds` untimed waits: the index of each.
fn barrier_rounds_untimed((b, rounds): (Barrier, u32)) -> Vec<usize> {
    (0..rounds).map(|_| b.wait().unwrap()).collect()
}

#[test]
fn barrier_untimed_wait_releases_all_parties_with_distinct_indices() {
    watchdog(120, || {
        const PARTIES: usize = 4;
        const ROUNDS: usize = 3;
        let b = Barrier::new(PARTIES).unwrap();
        let mut ps: Vec<_> = (0..PARTIES - 1)
            .map(|_| start(barrier_rounds_untimed, (b.clone(), ROUNDS as u32)))
            .collect();
        // the first ones block until the last party arrives
        wait_until(LONG, "all but one waiting", || b.n_waiting() == PARTIES - 1);
        std::thread::sleep(Duration::from_millis(200));
        for p in &ps {
            assert!(
                p.is_alive(),
                "Barrier::wait returned before every party came"
            );
        }
        assert_eq!(b.n_waiting(), PARTIES - 1);
        ps.push(start(barrier_rounds_untimed, (b.clone(), ROUNDS as u32)));
        let all: Vec<Vec<usize>> = ps.iter_mut().map(|p| p.result().unwrap()).collect();
        for round in 0..ROUNDS {
            let mut idx: Vec<usize> = all.iter().map(|v| v[round]).collect();
            idx.sort_unstable();
            assert_eq!(idx, (0..PARTIES).collect::<Vec<_>>(), "round {round}");
        }
        assert!(!b.is_broken());
        assert_eq!(b.n_waiting(), 0);
    });
}

// ---- property tests (in-process schedules)

#[derive(Debug, Clone)]
enum SemOp {
    TryAcquire,
    AcquireTimeout,
    Drop(usize),
    Forget(usize),
    Release,
}

fn sem_op() -> impl Strategy<Value = SemOp> {
    prop_oneof![
        Just(SemOp::TryAcquire),
        Just(SemOp::AcquireTimeout),
        (0usize..8).prop_map(SemOp::Drop),
        (0usize..8).prop_map(SemOp::Forget),
        Just(SemOp::Release),
    ]
}

proptest! {
    #![proptest_config(common::proptest_config(48))]

    #[test]
    fn semaphore_schedules_match_a_counter(
        init in 0u32..4,
        bounded in any::<bool>(),
        ops in proptest::collection::vec(sem_op(), 0..40),
    ) {
        let plain = Semaphore::new(init).unwrap();
        let bsem = BoundedSemaphore::new(init).unwrap();
        let mut model = init;
        let mut guards = Vec::new();
        for op in ops {
            match op {
                SemOp::TryAcquire | SemOp::AcquireTimeout => {
                    let g = match (&op, bounded) {
                        (SemOp::TryAcquire, false) => plain.try_acquire().unwrap(),
                        (SemOp::TryAcquire, true) => bsem.try_acquire().unwrap(),
                        (_, false) => plain.acquire_timeout(Duration::from_millis(1)).unwrap(),
                        (_, true) => bsem.acquire_timeout(Duration::from_millis(1)).unwrap(),
                    };
                    prop_assert_eq!(g.is_some(), model > 0);
                    if let Some(g) = g {
                        model -= 1;
                        guards.push(g);
                    }
                }
                SemOp::Drop(i) if i < guards.len() => {
                    drop(guards.swap_remove(i));
                    // a bounded semaphore released by hand meanwhile stays at its bound
                    if !bounded || model < init {
                        model += 1;
                    }
                }
                SemOp::Forget(i) if i < guards.len() => guards.swap_remove(i).forget(),
                SemOp::Release => {
                    let r = if bounded { bsem.release() } else { plain.release() };
                    if bounded && model == init {
                        prop_assert!(matches!(r, Err(Error::OverRelease)));
                    } else {
                        prop_assert!(r.is_ok());
                        model += 1;
                    }
                }
                _ => {}
            }
            let value = if bounded { bsem.value() } else { plain.value() };
            prop_assert_eq!(value, model);
        }
        let n = guards.len() as u32;
        drop(guards);
        let value = if bounded { bsem.value() } else { plain.value() };
        if bounded {
            prop_assert_eq!(value, (model + n).min(init));
        } else {
            prop_assert_eq!(value, model + n);
        }
    }
}
