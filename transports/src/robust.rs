//! A robust process-shared mutex on one `u32` in shared memory.
//!
//! The word holds `0` when free, or the owner's identity with a flag bit: bits 0..22 are
//! its process id, bits 22..31 a tag of its start time
//! ([`crate::os::current_lock_id_cached`]), and bit 31 says that somebody may be sleeping
//! on it. A waiter that has slept for a while without getting the lock checks whether the
//! owner is still alive ([`crate::os::incarnation_alive`]); if it is not, the waiter
//! takes the lock over and is told so ([`Acquired::OwnerDied`]), so a process killed
//! while holding a lock never leaves the others hanging (robust-mutex semantics).
//!
//! "Not alive" is decided only on the kernel's word: `kill(pid, 0)` = `ESRCH`, a zombie
//! state read from `/proc`, or a start time that differs from the owner's (its pid was
//! reused by a newer process). Whatever cannot be read counts as alive, so a frozen
//! (`SIGSTOP`ped) owner, or a contender that is out of file descriptors, never leads to a
//! takeover of a living owner's lock: the contender just keeps waiting (or times out).
//!
//! Uncontended lock and unlock are one atomic read-modify-write each, no system call.
//! Contended waiters spin briefly (a sleeping waiter on another core takes tens of
//! microseconds to wake on this class of machine), then sleep on the futex.
//!
//! Ownership is per *process*: two threads of one process contend like two processes.
//!
//! The protocol is written once, generic over an `Owners` environment (the word type,
//! the futex, this process's identity, the liveness check, whether to spin): the public
//! functions run it on the operating system ([`Os`]); the loom tests
//! (`RUSTFLAGS="--cfg loom" cargo test -p procactor-transports --release --lib loom`)
//! run the very same functions on a model checker's atomics, with one identity per
//! thread and a thread that stops while holding the lock as a dead owner.

use crate::futex::WaitOutcome;
pub use crate::waiter::Os;
use crate::waiter::{Futex, Word32};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const WAITERS: u32 = 1 << 31;

/// How long a sleeping waiter waits before its first look at the owner's liveness; the
/// period doubles up to [`LAST_LIVENESS_CHECK`]. 1 ms: a process killed while it held a
/// lock (in a queue's `put`, say, just after waking the consumer it served) holds up the
/// next holder about this long. With 10 ms, 5–20 % of the benchmark's burst restarts
/// stalled 10 ms (design notes). A look costs a `kill(pid, 0)` and, for a live owner, a
/// `/proc` read: a few more of them in a long wait behind a live owner.
pub const FIRST_LIVENESS_CHECK: Duration = Duration::from_millis(1);
/// The longest period between two looks at the owner's liveness.
pub const LAST_LIVENESS_CHECK: Duration = Duration::from_millis(200);
/// The owner's identity: pid and start tag.
const ID_MASK: u32 = !WAITERS;
const PID_MASK: u32 = (1 << crate::os::PID_BITS) - 1;

/// How an acquisition ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquired {
    /// The lock is ours.
    Clean,
    /// The lock is ours, taken over from an owner process that died holding it; the data
    /// it protects may be half-updated.
    OwnerDied,
}

/// Where the lock protocol runs: a [`Futex`] (word type, sleeping, waking) plus who the
/// caller is and whether an owner is dead. [`Os`] is the real one; a model checker
/// provides another (one identity per thread).
pub(crate) trait Owners: Futex {
    /// The caller's full identity as stored in lock words (never 0, bit 31 clear).
    fn me(&self) -> u32;
    /// Whether the owner identity `id` (never 0) is a process that no longer runs.
    fn owner_is_dead(&self, id: u32) -> bool;
    /// Whether contended waiters spin before they sleep.
    fn spin(&self) -> bool;
}

impl Owners for Os {
    #[inline]
    fn me(&self) -> u32 {
        my_word()
    }
    fn owner_is_dead(&self, id: u32) -> bool {
        owner_is_dead(id)
    }
    #[inline]
    fn spin(&self) -> bool {
        crate::spin::enabled()
    }
}

/// This process's id (the pid part of the identity stored in lock words).
#[inline]
pub fn my_id() -> u32 {
    crate::os::current_pid_cached()
}

/// This process's full identity as stored in lock words (pid and start tag).
#[inline]
fn my_word() -> u32 {
    crate::os::current_lock_id_cached()
}

/// Tries once (plus a dead-owner check when `check_owner`): `None` if another live
/// process holds the lock.
#[inline]
pub fn try_lock(word: &AtomicU32, check_owner: bool) -> Option<Acquired> {
    try_lock_in(&Os, word, check_owner)
}

/// [`try_lock`] in the environment `e`.
#[inline]
pub(crate) fn try_lock_in<E: Owners + ?Sized>(
    e: &E,
    word: &E::Word,
    check_owner: bool,
) -> Option<Acquired> {
    let me = e.me();
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
            return try_lock_in(e, word, false);
        }
        return take_over_if_dead(e, word, cur);
    }
    None
}

/// Whether the owner identity `id` (pid and start tag, never 0) is a process that no
/// longer runs.
fn owner_is_dead(id: u32) -> bool {
    let me = my_word();
    if id == me {
        return false; // this process (another of its threads) holds it
    }
    let (pid, tag) = (id & PID_MASK, id >> crate::os::PID_BITS);
    if pid == me & PID_MASK {
        // our own pid with another known start tag: an earlier process that had our pid
        // (this process's identity never changes once taken); it is gone, since the pid
        // is ours. Tag 0 (an owner that could not read its start time) names the pid
        // alone, and that pid is alive: us.
        return tag != 0;
    }
    !crate::os::incarnation_alive(pid, tag)
}

fn take_over_if_dead<E: Owners + ?Sized>(e: &E, word: &E::Word, seen: u32) -> Option<Acquired> {
    let owner = seen & ID_MASK;
    if owner != 0 && e.owner_is_dead(owner) {
        // Keep the waiters bit: others may be asleep and must be woken on unlock.
        if word
            .compare_exchange(seen, e.me() | WAITERS, Ordering::Acquire, Ordering::Relaxed)
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
    lock_contended_in(&Os, word, deadline)
}

/// [`lock_contended`] in the environment `e`.
#[inline]
pub(crate) fn lock_contended_in<E: Owners + ?Sized>(
    e: &E,
    word: &E::Word,
    deadline: Option<Instant>,
) -> Option<Acquired> {
    let me = e.me();
    // 1. spin: the owner usually releases within a few microseconds
    let spin_until = Instant::now() + Duration::from_micros(20);
    let mut n = 0u32;
    while e.spin() {
        let cur = word.load(Ordering::Relaxed);
        if cur & ID_MASK == 0
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
        if n.is_multiple_of(64) {
            let now = Instant::now();
            if now >= spin_until {
                crate::spin::note_overrun(spin_until, now);
                break;
            }
        }
        std::hint::spin_loop();
    }
    // 2. sleep, checking the owner's liveness every so often
    let mut check_every = FIRST_LIVENESS_CHECK;
    loop {
        let cur = match take_or_mark(word, me) {
            Ok(()) => return Some(Acquired::Clean),
            Err(cur) => cur,
        };
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
        if e.wait(word, cur, Some(wake_at)) == WaitOutcome::TimedOut {
            if let Some(a) = take_over_if_dead(e, word, cur) {
                return Some(a);
            }
            check_every = (check_every * 2).min(LAST_LIVENESS_CHECK);
        }
    }
}

/// One attempt of a waiter that does not sleep on the futex itself (an async future
/// whose watcher thread sleeps on the word for it): takes the lock if it is free
/// (keeping the waiters bit, as a sleeper does: others may be asleep), or, with
/// `check_owner`, over a dead owner ([`Acquired::OwnerDied`]); otherwise makes sure the
/// waiters bit is set, so that the owner's unlock wakes the word's sleepers, and
/// returns `None`: watch the word for a change.
pub fn try_lock_waiting(word: &AtomicU32, check_owner: bool) -> Option<Acquired> {
    try_lock_waiting_in(&Os, word, check_owner)
}

/// [`try_lock_waiting`] in the environment `e`.
pub(crate) fn try_lock_waiting_in<E: Owners + ?Sized>(
    e: &E,
    word: &E::Word,
    check_owner: bool,
) -> Option<Acquired> {
    match take_or_mark(word, e.me()) {
        Ok(()) => Some(Acquired::Clean),
        Err(cur) if check_owner => take_over_if_dead(e, word, cur),
        Err(_) => None,
    }
}

/// The step every waiter takes before it sleeps (or watches): takes the lock if it is
/// free, keeping the waiters bit since others may be asleep (`Ok`); otherwise makes sure
/// the waiters bit is set, so that the owner's unlock wakes the word's sleepers, and
/// gives the word's value, bit included (`Err`): sleep while the word still holds it.
#[inline]
fn take_or_mark<W: Word32 + ?Sized>(word: &W, me: u32) -> Result<(), u32> {
    loop {
        let cur = word.load(Ordering::Relaxed);
        if cur & ID_MASK == 0 {
            if word
                .compare_exchange(cur, me | WAITERS, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return Ok(());
            }
            continue;
        }
        if cur & WAITERS != 0
            || word
                .compare_exchange(cur, cur | WAITERS, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Err(cur | WAITERS);
        }
    }
}

/// Sets the waiters bit of a held lock, so that its unlock wakes the word's sleepers
/// (for a waiter that watches the word instead of sleeping in [`lock`], such as a
/// future: `procactor_transports::watch`); `false` if the lock is free now.
pub fn mark_waiters(word: &AtomicU32) -> bool {
    let mut cur = word.load(Ordering::Relaxed);
    loop {
        if cur & ID_MASK == 0 {
            return false;
        }
        if cur & WAITERS != 0 {
            return true;
        }
        match word.compare_exchange_weak(cur, cur | WAITERS, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return true,
            Err(c) => cur = c,
        }
    }
}

/// Unlocks. Only the owner may call it (the caller's guard type guarantees that).
#[inline]
pub fn unlock(word: &AtomicU32) {
    unlock_in(&Os, word);
}

/// [`unlock`] in the environment `e`.
#[inline]
pub(crate) fn unlock_in<E: Owners + ?Sized>(e: &E, word: &E::Word) {
    let prev = word.swap(0, Ordering::Release);
    if prev & WAITERS != 0 {
        e.wake(word, 1);
    }
}

/// The id of the process holding the lock, if any.
pub fn owner(word: &AtomicU32) -> Option<u32> {
    owner_in(&Os, word)
}

/// [`owner`] in the environment `e`.
#[inline]
pub(crate) fn owner_in<E: Owners + ?Sized>(_e: &E, word: &E::Word) -> Option<u32> {
    match word.load(Ordering::Relaxed) & ID_MASK {
        0 => None,
        id => Some(id & PID_MASK),
    }
}

/// Whether this process (any of its threads) holds the lock: its full identity, pid and
/// start tag, is in the word (an earlier process that had the same pid does not count).
pub fn held_by_this_process(word: &AtomicU32) -> bool {
    word.load(Ordering::Relaxed) & ID_MASK == my_word()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// An environment whose owner stays "alive" for `alive_looks` looks and whose futex
    /// times out at once, recording how far ahead each sleep's deadline was.
    struct Looks {
        alive_looks: std::cell::Cell<u32>,
        ahead: std::cell::RefCell<Vec<Duration>>,
    }

    impl Futex for Looks {
        type Word = AtomicU32;
        fn fence(&self, order: Ordering) {
            std::sync::atomic::fence(order);
        }
        fn wait(&self, _: &AtomicU32, _: u32, deadline: Option<Instant>) -> WaitOutcome {
            let d = deadline.expect("a sleeping waiter always has a look to make");
            self.ahead
                .borrow_mut()
                .push(d.saturating_duration_since(Instant::now()));
            WaitOutcome::TimedOut
        }
        fn wake(&self, _: &AtomicU32, _: u32) {}
    }

    impl Owners for Looks {
        fn me(&self) -> u32 {
            2
        }
        fn owner_is_dead(&self, _: u32) -> bool {
            let left = self.alive_looks.get();
            self.alive_looks.set(left.saturating_sub(1));
            left == 0
        }
        fn spin(&self) -> bool {
            false
        }
    }

    #[test]
    fn a_sleeping_waiter_looks_at_the_owner_after_a_millisecond_then_backs_off() {
        let e = Looks {
            alive_looks: std::cell::Cell::new(12),
            ahead: std::cell::RefCell::new(Vec::new()),
        };
        let w = AtomicU32::new(1); // held by identity 1
        assert_eq!(
            lock_contended_in(&e, &w, None),
            Some(Acquired::OwnerDied),
            "taken over once the owner is dead"
        );
        let ahead = e.ahead.into_inner();
        assert_eq!(ahead.len(), 13, "one sleep per look: {ahead:?}");
        // (upper bounds only: time passes between setting a deadline and reading it)
        // the promise: a dead holder is noticed about a millisecond into the wait
        assert!(ahead[0] <= Duration::from_millis(1), "{ahead:?}");
        for (i, a) in ahead.iter().enumerate() {
            let period = FIRST_LIVENESS_CHECK
                .saturating_mul(1 << i.min(20))
                .min(LAST_LIVENESS_CHECK);
            assert!(*a <= period, "look {i}: {a:?} ahead, period {period:?}");
        }
        // the backoff reached its cap, and stays there
        assert!(ahead[12] > LAST_LIVENESS_CHECK / 10, "{ahead:?}");
    }

    #[test]
    fn marked_waiters_are_woken_by_unlock() {
        let w = AtomicU32::new(0);
        assert!(!mark_waiters(&w)); // free: nothing to mark
        assert_eq!(w.load(Ordering::Relaxed), 0);
        lock(&w, None).unwrap();
        assert!(mark_waiters(&w));
        assert_ne!(w.load(Ordering::Relaxed) & WAITERS, 0);
        assert_eq!(owner(&w), Some(my_id()));
        unlock(&w);
        assert_eq!(w.load(Ordering::Relaxed), 0);
    }

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

    /// A sleeping child and its lock identity (pid and start tag).
    fn live_child() -> (std::process::Child, u32) {
        let c = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let tag = crate::os::start_tag_of(c.id()).unwrap();
        let id = c.id() | tag << crate::os::PID_BITS;
        (c, id)
    }

    #[test]
    fn a_live_owner_is_never_taken_over_a_reused_pid_is() {
        let (mut c, id) = live_child();
        let w = AtomicU32::new(id | WAITERS);
        assert_eq!(try_lock(&w, true), None);
        let t0 = Instant::now();
        assert_eq!(lock(&w, Some(t0 + Duration::from_millis(60))), None);
        assert_eq!(owner(&w), Some(c.id()));
        // the same pid with another start tag: the owner was an earlier process
        let other = (id >> crate::os::PID_BITS) % 511 + 1;
        let w = AtomicU32::new(c.id() | other << crate::os::PID_BITS);
        assert_eq!(try_lock(&w, true), Some(Acquired::OwnerDied));
        assert!(held_by_this_process(&w));
        unlock(&w);
        c.kill().unwrap();
        c.wait().unwrap();
    }

    #[test]
    fn a_waiting_attempt_sets_the_waiters_bit_and_keeps_it_when_it_takes() {
        let w = AtomicU32::new(0);
        lock(&w, None).unwrap();
        // held by this process: never "dead", so the attempt fails and marks a waiter
        assert_eq!(try_lock_waiting(&w, true), None);
        assert_ne!(w.load(Ordering::Relaxed) & WAITERS, 0);
        unlock(&w);
        assert_eq!(try_lock_waiting(&w, false), Some(Acquired::Clean));
        assert_eq!(w.load(Ordering::Relaxed), my_word() | WAITERS);
        unlock(&w);
        // a dead owner is taken over only when asked to look
        let mut c = std::process::Command::new("true").spawn().unwrap();
        let dead = c.id();
        c.wait().unwrap();
        let w = AtomicU32::new(dead);
        assert_eq!(try_lock_waiting(&w, false), None);
        assert_eq!(try_lock_waiting(&w, true), Some(Acquired::OwnerDied));
        assert!(held_by_this_process(&w));
    }

    #[test]
    fn an_owner_known_by_our_pid_alone_is_us_and_alive() {
        let w = AtomicU32::new(my_id());
        assert_eq!(try_lock(&w, true), None);
    }

    #[test]
    fn an_earlier_process_with_our_pid_is_dead_and_not_us() {
        let me = crate::os::current_lock_id_cached();
        let tag = me >> crate::os::PID_BITS;
        assert_ne!(tag, 0, "this process's start tag");
        let earlier = my_id() | (tag % 511 + 1) << crate::os::PID_BITS;
        let w = AtomicU32::new(earlier);
        assert!(!held_by_this_process(&w));
        assert_eq!(try_lock(&w, true), Some(Acquired::OwnerDied));
        assert!(held_by_this_process(&w));
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
