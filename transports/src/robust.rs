//! A robust process-shared mutex on one `u32` in shared memory.
//!
//! The word holds `0` when free, or the owner's process id with flag bits: bit 31 says
//! that somebody may be sleeping on it. A waiter that has slept for a while without
//! getting the lock checks whether the owner process is still alive
//! ([`crate::os::process_alive`]); if it is not, the waiter takes the lock over and is
//! told so ([`Acquired::OwnerDied`]), so a process killed while holding a lock never
//! leaves the others hanging (robust-mutex semantics).
//!
//! Uncontended lock and unlock are one atomic read-modify-write each, no system call.
//! Contended waiters spin briefly (a sleeping waiter on another core takes tens of
//! microseconds to wake on this class of machine), then sleep on the futex.
//!
//! Ownership is per *process*: two threads of one process contend like two processes.

use crate::futex::{self, WaitOutcome};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const WAITERS: u32 = 1 << 31;
const PID_MASK: u32 = !WAITERS;

/// How an acquisition ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquired {
    /// The lock is ours.
    Clean,
    /// The lock is ours, taken over from an owner process that died holding it; the data
    /// it protects may be half-updated.
    OwnerDied,
}

/// This process's id, as stored in lock words.
#[inline]
pub fn my_id() -> u32 {
    crate::os::current_pid_cached()
}

/// Tries once (plus a dead-owner check when `check_owner`): `None` if another live
/// process holds the lock.
#[inline]
pub fn try_lock(word: &AtomicU32, check_owner: bool) -> Option<Acquired> {
    let me = my_id();
    let cur = word.load(Ordering::Relaxed);
    if cur == 0
        && word
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    {
        return Some(Acquired::Clean);
    }
    if check_owner {
        let cur = word.load(Ordering::Relaxed);
        if cur == 0 {
            return try_lock(word, false);
        }
        return take_over_if_dead(word, cur);
    }
    None
}

fn take_over_if_dead(word: &AtomicU32, seen: u32) -> Option<Acquired> {
    let owner = seen & PID_MASK;
    if owner != 0 && owner != my_id() && !crate::os::process_alive(owner) {
        // Keep the waiters bit: others may be asleep and must be woken on unlock.
        if word
            .compare_exchange(
                seen,
                my_id() | WAITERS,
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .is_ok()
        {
            return Some(Acquired::OwnerDied);
        }
    }
    None
}

/// Locks, waiting until `deadline` (`None`: forever). `None` when the deadline passed.
#[inline]
pub fn lock(word: &AtomicU32, deadline: Option<Instant>) -> Option<Acquired> {
    if let Some(a) = try_lock(word, false) {
        return Some(a);
    }
    lock_contended(word, deadline)
}

/// As [`lock`], for a caller whose own [`try_lock`] just failed (so that it could put
/// off computing `deadline` until it is needed): goes straight to spinning and sleeping.
#[cold]
pub fn lock_contended(word: &AtomicU32, deadline: Option<Instant>) -> Option<Acquired> {
    let me = my_id();
    // 1. spin: the owner usually releases within a few microseconds
    let spin_until = Instant::now() + Duration::from_micros(20);
    let mut n = 0u32;
    while crate::spin::enabled() {
        let cur = word.load(Ordering::Relaxed);
        if cur & PID_MASK == 0
            && word
                .compare_exchange(
                    cur,
                    me | (cur & WAITERS),
                    Ordering::Acquire,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            return Some(Acquired::Clean);
        }
        n += 1;
        if n.is_multiple_of(64) && Instant::now() >= spin_until {
            break;
        }
        std::hint::spin_loop();
    }
    // 2. sleep, checking the owner's liveness every so often
    let mut check_every = Duration::from_millis(10);
    loop {
        let cur = word.load(Ordering::Relaxed);
        if cur & PID_MASK == 0 {
            // free: take it, keeping the waiters bit since we cannot know we were alone
            if word
                .compare_exchange(cur, me | WAITERS, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return Some(Acquired::Clean);
            }
            continue;
        }
        if cur & WAITERS == 0
            && word
                .compare_exchange(cur, cur | WAITERS, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            continue;
        }
        let now = Instant::now();
        if let Some(d) = deadline {
            if now >= d {
                return None;
            }
        }
        let wake_at = match deadline {
            Some(d) => d.min(now + check_every),
            None => now + check_every,
        };
        if futex::wait(word, cur | WAITERS, Some(wake_at)) == WaitOutcome::TimedOut {
            if let Some(a) = take_over_if_dead(word, cur | WAITERS) {
                return Some(a);
            }
            check_every = (check_every * 2).min(Duration::from_millis(200));
        }
    }
}

/// Unlocks. Only the owner may call it (the caller's guard type guarantees that).
#[inline]
pub fn unlock(word: &AtomicU32) {
    let prev = word.swap(0, Ordering::Release);
    if prev & WAITERS != 0 {
        futex::wake(word, 1);
    }
}

/// The process holding the lock, if any.
pub fn owner(word: &AtomicU32) -> Option<u32> {
    match word.load(Ordering::Relaxed) & PID_MASK {
        0 => None,
        p => Some(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn uncontended_lock_unlock() {
        let w = AtomicU32::new(0);
        assert_eq!(lock(&w, None), Some(Acquired::Clean));
        assert_eq!(owner(&w), Some(my_id()));
        assert_eq!(try_lock(&w, true), None); // we hold it; not "dead"
        unlock(&w);
        assert_eq!(owner(&w), None);
    }

    #[test]
    fn deadline_is_respected() {
        let w = AtomicU32::new(0);
        lock(&w, None).unwrap();
        // another thread of the same process contends like another process
        let t0 = Instant::now();
        assert_eq!(lock(&w, Some(t0 + Duration::from_millis(30))), None);
        assert!(t0.elapsed() >= Duration::from_millis(30));
    }

    #[test]
    fn dead_owner_is_taken_over() {
        // a process that has exited and been reaped: its pid is free
        let mut c = std::process::Command::new("true").spawn().unwrap();
        let dead = c.id();
        c.wait().unwrap();
        let w = AtomicU32::new(dead);
        assert_eq!(
            lock(&w, Some(Instant::now() + Duration::from_secs(10))),
            Some(Acquired::OwnerDied)
        );
        assert_eq!(owner(&w), Some(my_id()));
        unlock(&w);
    }

    #[test]
    fn threads_count_exactly_under_contention() {
        let w = Arc::new(AtomicU32::new(0));
        let counter = Arc::new(AtomicU32::new(0));
        let ts: Vec<_> = (0..4)
            .map(|_| {
                let (w, c) = (w.clone(), counter.clone());
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        lock(&w, None).unwrap();
                        // non-atomic read-modify-write protected by the lock
                        let v = c.load(Ordering::Relaxed);
                        c.store(v + 1, Ordering::Relaxed);
                        unlock(&w);
                    }
                })
            })
            .collect();
        for t in ts {
            t.join().unwrap();
        }
        assert_eq!(counter.load(Ordering::Relaxed), 80_000);
    }
}
