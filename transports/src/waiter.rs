//! The futex waiter handshake: how a side that must wait sleeps without ever missing the
//! other side's wake-up, and how the other side wakes it only when somebody sleeps.
//!
//! The waiter adds itself to a *waiter count*, then a `SeqCst` fence, reads a *sequence
//! word*, checks its condition once more, and sleeps on the sequence word only if the word still holds
//! what it read. The other side first publishes (a release store the waiter's condition
//! reads), then a `SeqCst` fence, then reads the waiter count: if it is non-zero it bumps
//! the sequence word and wakes its sleepers. Either the waiter's re-check sees the
//! publication, or the waker sees the waiter counted (and then the bumped sequence word
//! makes a sleep that had not begun yet return at once): a wake-up is never lost, and a
//! side that nobody waits for makes no system call.
//!
//! The code is generic over [`Futex`] so that the very same functions run on the
//! operating system's futex ([`Os`]) and, in the loom tests
//! (`RUSTFLAGS="--cfg loom" cargo test -p procactor-transports --release loom`), on a
//! model checker's atomics, which explores every interleaving.

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
}

/// Sleeping on and waking a word, and fences.
pub trait Futex {
    /// The word type.
    type Word: Word32;
    /// A memory fence.
    fn fence(&self, order: Ordering);
    /// Sleeps while `*word == expected` (checked atomically with respect to
    /// [`wake_all`](Futex::wake_all)), until woken or `deadline`; may return spuriously.
    fn wait(&self, word: &Self::Word, expected: u32, deadline: Option<Instant>);
    /// Wakes every sleeper on `word`.
    fn wake_all(&self, word: &Self::Word);
}

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
    fn wait(&self, word: &AtomicU32, expected: u32, deadline: Option<Instant>) {
        crate::futex::wait(word, expected, deadline);
    }
    #[inline]
    fn wake_all(&self, word: &AtomicU32) {
        crate::futex::wake_all(word);
    }
}

/// The waiter's side: registers in `waiters`, re-checks `ready`, sleeps on `seq` (until
/// woken or `deadline`) if it still does not hold, unregisters. Returns `ready()` as
/// last evaluated. The caller loops (a wake-up may be spurious).
#[inline]
pub fn sleep_registered<F: Futex + ?Sized>(
    f: &F,
    seq: &F::Word,
    waiters: &F::Word,
    ready: &mut dyn FnMut() -> bool,
    deadline: Option<Instant>,
) -> bool {
    waiters.fetch_add(1, Ordering::SeqCst);
    // Pairs with the publisher's fence. The count's SeqCst increment alone is not
    // enough in the language's memory model: `ready()` reads with Acquire loads, which
    // are not in the SeqCst order, so without this fence the waiter may miss the
    // publication while the publisher misses the count (found by the loom model with
    // two waiters). Only paid right before a futex sleep.
    f.fence(Ordering::SeqCst);
    let s = seq.load(Ordering::SeqCst);
    let ok = if ready() {
        true
    } else {
        f.wait(seq, s, deadline);
        ready()
    };
    waiters.fetch_sub(1, Ordering::SeqCst);
    ok
}

/// The publisher's side, right after its release store of what waiters wait for: wakes
/// the sleepers on `seq` if `waiters` counts any (no system call otherwise).
#[inline]
pub fn wake_waiters<F: Futex + ?Sized>(f: &F, seq: &F::Word, waiters: &F::Word) {
    // pairs with the waiter's `SeqCst` increment: either it sees our store, or we see it
    f.fence(Ordering::SeqCst);
    if waiters.load(Ordering::Relaxed) > 0 {
        seq.fetch_add(1, Ordering::SeqCst);
        f.wake_all(seq);
    }
}
