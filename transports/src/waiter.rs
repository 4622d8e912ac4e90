//! The futex waiter handshake, the one place where procactor's shared-memory primitives
//! sleep until another process changes a word: how a side that must wait sleeps without
//! ever missing the other side's wake-up, and how the other side wakes it only when
//! somebody sleeps.
//!
//! The waiter adds itself to a *waiter count*, then a `SeqCst` fence, reads the word it
//! will sleep on, checks its condition once more, and sleeps on the word only if the word
//! still holds what it read; then it leaves the count. The other side first publishes (a
//! release store, or a read-modify-write, that the waiter's condition reads), then a
//! `SeqCst` fence, then reads the waiter count: only if it is non-zero does it wake the
//! sleepers. Either the waiter's re-check sees the publication, or the waker sees the
//! waiter counted, and then the word has changed before the waiter's sleep could begin
//! (the kernel compares the word and queues the sleeper atomically with respect to a
//! wake-up), so a sleep that had not begun returns at once: a wake-up is never lost, and
//! a side that nobody waits for makes no system call and no extra read-modify-write
//! (one fence and one load).
//!
//! Two kinds of word, one handshake ([`sleep`]):
//!
//! - a **sequence word**, separate from the state the condition reads (the ring's
//!   data/room words, `JoinableQueue::join`): the waker bumps it, after seeing a waiter,
//!   to make a sleep that had not begun yet return ([`wake_waiters`], waiter side
//!   [`sleep_registered`]);
//! - the **value word itself** (a semaphore's count, an event's flag, a condition's or a
//!   barrier's notification counter): the publication changes the word, the waker only
//!   wakes ([`wake`], at most `n` sleepers), and the waiter's condition is given the
//!   word's value ([`sleep`]).
//!
//! [`bump_and_wake_all`] wakes without reading the count, for rare events (a ring found
//! corrupt) where the count itself may not be trusted.
//!
//! Spinning before sleeping, liveness checks and deadline slicing stay at the call sites
//! (each has its own budget, see [`crate::spin`]): this module is the sleeping part only.
//!
//! The code is generic over [`Futex`] so that the very same functions run on the
//! operating system's futex ([`Os`]) and, in the loom tests
//! (`RUSTFLAGS="--cfg loom" cargo test -p procactor-transports --release loom`), on a
//! model checker's atomics, which explores every interleaving.
//!
//! # Examples
//!
//! ```
//! use procactor_transports::waiter::{self, Os, Slept};
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::sync::Arc;
//! use std::time::{Duration, Instant};
//!
//! // a flag (the value word) and its waiter count, as in shared memory
//! let words = Arc::new([AtomicU32::new(0), AtomicU32::new(0)]);
//! let w2 = words.clone();
//! let t = std::thread::spawn(move || {
//!     let deadline = Some(Instant::now() + Duration::from_secs(30));
//!     loop {
//!         match waiter::sleep(&Os, &w2[0], &w2[1], &mut |v| v != 0, deadline) {
//!             Slept::Ready => return true,
//!             Slept::TimedOut => return false,
//!             Slept::Woken => {} // spurious: look again
//!         }
//!     }
//! });
//! words[0].store(1, Ordering::Release); // publish...
//! waiter::wake(&Os, &words[0], &words[1], waiter::ALL); // ...then wake
//! assert!(t.join().unwrap());
//! ```

use crate::futex::WaitOutcome;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

/// A `u32` atomic word (the operating system's, or a model checker's).
pub trait Word32 {
    /// Atomic load.
    fn load(&self, order: Ordering) -> u32;
    /// Atomic add; returns the previous value.
    fn fetch_add(&self, v: u32, order: Ordering) -> u32;
    /// Atomic subtract; returns the previous value.
    fn fetch_sub(&self, v: u32, order: Ordering) -> u32;
    /// Atomic compare-and-exchange (strong).
    ///
    /// # Errors
    ///
    /// The value found, when it is not `current`.
    fn compare_exchange(
        &self,
        current: u32,
        new: u32,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u32, u32>;
    /// Atomic swap; returns the previous value.
    fn swap(&self, v: u32, order: Ordering) -> u32;
}

impl Word32 for AtomicU32 {
    #[inline]
    fn load(&self, order: Ordering) -> u32 {
        AtomicU32::load(self, order)
    }
    #[inline]
    fn fetch_add(&self, v: u32, order: Ordering) -> u32 {
        AtomicU32::fetch_add(self, v, order)
    }
    #[inline]
    fn fetch_sub(&self, v: u32, order: Ordering) -> u32 {
        AtomicU32::fetch_sub(self, v, order)
    }
    #[inline]
    fn compare_exchange(
        &self,
        current: u32,
        new: u32,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u32, u32> {
        AtomicU32::compare_exchange(self, current, new, success, failure)
    }
    #[inline]
    fn swap(&self, v: u32, order: Ordering) -> u32 {
        AtomicU32::swap(self, v, order)
    }
}

/// Sleeping on and waking a word, and fences.
pub trait Futex {
    /// The word type.
    type Word: Word32;
    /// A memory fence.
    fn fence(&self, order: Ordering);
    /// Sleeps while `*word == expected` (checked atomically with respect to
    /// [`wake`](Futex::wake)), until woken or `deadline`; may return spuriously.
    fn wait(&self, word: &Self::Word, expected: u32, deadline: Option<Instant>) -> WaitOutcome;
    /// Wakes at most `n` sleepers on `word` (every one for `n` ≥ `i32::MAX`, see
    /// [`ALL`]).
    fn wake(&self, word: &Self::Word, n: u32);
}

/// A wake count meaning "every sleeper".
pub const ALL: u32 = u32::MAX;

/// The operating system's futex ([`crate::futex`]) on shared-memory words.
#[derive(Debug, Clone, Copy, Default)]
pub struct Os;

impl Futex for Os {
    type Word = AtomicU32;
    #[inline]
    fn fence(&self, order: Ordering) {
        std::sync::atomic::fence(order);
    }
    #[inline]
    fn wait(&self, word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> WaitOutcome {
        crate::futex::wait(word, expected, deadline)
    }
    #[inline]
    fn wake(&self, word: &AtomicU32, n: u32) {
        crate::futex::wake(word, n);
    }
}

/// How a [`sleep`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slept {
    /// The condition held: at the re-check after registering (no sleep then), or after
    /// the sleep.
    Ready,
    /// The sleep ended before the deadline (a wake-up, a word that had already changed,
    /// a signal, or spuriously) and the condition does not hold: the caller looks again.
    Woken,
    /// The deadline passed and the condition does not hold.
    TimedOut,
}

impl Slept {
    /// Whether the condition held.
    #[inline]
    pub fn is_ready(self) -> bool {
        self == Slept::Ready
    }
}

/// The waiter's side, the one handshake: registers in `waiters`, reads `word` and tests
/// `ready` on that value, sleeps on `word` (until woken or `deadline`) if it still does
/// not hold, tests `ready` again on a fresh read, unregisters.
///
/// `ready` gets the value of `word` (a value-word site tests it; a sequence-word site
/// ignores it and reads its own state, with at least `Acquire` loads). Sleeps at most
/// once: the caller loops on [`Slept::Woken`] (a wake-up may be spurious, or for
/// somebody else) and checks its liveness conditions between sleeps.
#[inline]
pub fn sleep<F: Futex + ?Sized>(
    f: &F,
    word: &F::Word,
    waiters: &F::Word,
    ready: &mut dyn FnMut(u32) -> bool,
    deadline: Option<Instant>,
) -> Slept {
    waiters.fetch_add(1, Ordering::SeqCst);
    // Pairs with the publisher's fence. The count's SeqCst increment alone is not
    // enough in the language's memory model: `ready()` may read with Acquire loads,
    // which are not in the SeqCst order, so without this fence the waiter may miss the
    // publication while the publisher misses the count (found by the loom model with
    // two waiters). Only paid right before a futex sleep.
    f.fence(Ordering::SeqCst);
    let seen = word.load(Ordering::SeqCst);
    let out = if ready(seen) {
        Slept::Ready
    } else {
        let slept = f.wait(word, seen, deadline);
        if ready(word.load(Ordering::SeqCst)) {
            Slept::Ready
        } else if slept == WaitOutcome::TimedOut {
            Slept::TimedOut
        } else {
            Slept::Woken
        }
    };
    waiters.fetch_sub(1, Ordering::SeqCst);
    out
}

/// [`sleep`] on a sequence word, for a condition that reads other state: whether
/// `ready()` held as last evaluated. The caller loops (a wake-up may be spurious).
#[inline]
pub fn sleep_registered<F: Futex + ?Sized>(
    f: &F,
    seq: &F::Word,
    waiters: &F::Word,
    ready: &mut dyn FnMut() -> bool,
    deadline: Option<Instant>,
) -> bool {
    sleep(f, seq, waiters, &mut |_| ready(), deadline).is_ready()
}

/// The publisher's side for a sequence word, right after its release store of what
/// waiters wait for: if `waiters` counts any, bumps `seq` and wakes every sleeper on it
/// (one fence and one load otherwise: no read-modify-write, no system call).
#[inline]
pub fn wake_waiters<F: Futex + ?Sized>(f: &F, seq: &F::Word, waiters: &F::Word) {
    wake_waiters_then(f, seq, waiters, || {});
}

/// As [`wake_waiters`], calling `before_wake` first when (and only when) it wakes: for
/// a note to the sleepers that costs nothing on the path without them (the ring tells
/// them which CPU woke them).
#[inline]
pub fn wake_waiters_then<F: Futex + ?Sized>(
    f: &F,
    seq: &F::Word,
    waiters: &F::Word,
    before_wake: impl FnOnce(),
) {
    // pairs with the waiter's fence: either it sees our store, or we see it counted
    f.fence(Ordering::SeqCst);
    if waiters.load(Ordering::Relaxed) > 0 {
        before_wake();
        seq.fetch_add(1, Ordering::SeqCst);
        f.wake(seq, ALL);
    }
}

/// The publisher's side for a value word, right after its store (or read-modify-write)
/// of `word` itself: if `waiters` counts any, wakes at most `n` sleepers on `word`
/// ([`ALL`]: every one; `0`: none). No system call when nobody is counted.
///
/// Waking fewer than all is only sound when each woken waiter that does not consume
/// what was published leaves it for the next (a semaphore's slot stays in the count),
/// or when the caller's contract allows a missed waiter to stay asleep (a condition's
/// `notify(n)`).
#[inline]
pub fn wake<F: Futex + ?Sized>(f: &F, word: &F::Word, waiters: &F::Word, n: u32) {
    if n == 0 {
        return;
    }
    // pairs with the waiter's fence: either it reads our new value, or we see it counted
    f.fence(Ordering::SeqCst);
    if waiters.load(Ordering::Relaxed) > 0 {
        f.wake(word, n);
    }
}

/// Bumps `seq` and wakes every sleeper on it without reading a waiter count: for rare
/// events (a ring found corrupt), where a count that a faulty peer may have scribbled
/// over must not decide whether sleepers learn of it. Always one read-modify-write and
/// one system call.
#[inline]
pub fn bump_and_wake_all<F: Futex + ?Sized>(f: &F, seq: &F::Word) {
    seq.fetch_add(1, Ordering::SeqCst);
    f.wake(seq, ALL);
}
