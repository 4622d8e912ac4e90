//! A commit journal in shared memory: a change of several words that a process killed at
//! any instruction leaves either not done or completable, never half done.
//!
//! A [`Journal`] names where, in a [`ShmRegion`], a `state` word and `N` consecutive
//! `u64` value words lie. Changing some shared state *S* goes:
//!
//! 1. the new values are written to the journal's words;
//! 2. `state` is set to 1 (release store, then a release fence);
//! 3. the caller's `apply` writes the values to *S*;
//! 4. a release fence, then `state` is set back to 0 (release store).
//!
//! A process killed before step 2 changed nothing of *S*; one killed after it left the
//! full new state in the journal. Whoever next owns *S* calls
//! [`apply_pending`](Journal::apply_pending) first: when `state` is 1 it runs `apply`
//! again on the journaled values and clears `state`. So `apply` must be idempotent
//! (plain stores of the given values), and *S* is only ever seen as its old or its new
//! committed state by the next owner.
//!
//! The journal does not serialize writers: it is used by the one holder of a lock that
//! guards *S* (a [`robust`](crate::robust) lock), and by whoever takes that lock over
//! from a dead holder. It adds no atomic operation beyond the `N + 2` stores (and two
//! fences) the protocol needs.
//!
//! The queue ring ([`crate::ring`]) journals each side's position and counters with it;
//! `procactor-core`'s semaphore journals its count together with its holder table.
//!
//! # Examples
//!
//! ```
//! use procactor_transports::journal::Journal;
//! use procactor_transports::shm::ShmRegion;
//! use std::sync::atomic::Ordering;
//!
//! // layout: state at 0, journal words at 8 and 16, the journaled state at 64 and 72
//! const J: Journal<2> = Journal::new(0, 8);
//! let r = ShmRegion::create("example", 4096).unwrap();
//! let apply = |[a, b]: [u64; 2]| {
//!     r.atomic_u64(64).store(a, Ordering::Relaxed);
//!     r.atomic_u64(72).store(b, Ordering::Release);
//! };
//! J.commit(&r, [1, 2], apply);
//! assert_eq!(r.atomic_u64(72).load(Ordering::Acquire), 2);
//! // nothing pending: a new owner has nothing to complete
//! assert!(!J.apply_pending(&r, apply));
//! ```

use crate::shm::ShmRegion;
use std::sync::atomic::Ordering;

/// The memory a [`Journal`] works on: `u64` words at byte offsets, and fences. Shared
/// memory ([`ShmRegion`]) in production; a model checker's atomics over a heap buffer in
/// the loom tests (`RUSTFLAGS="--cfg loom"`), which so check this very code.
pub trait Words {
    /// Loads the word at byte `off`.
    fn load(&self, off: usize, order: Ordering) -> u64;
    /// Stores `v` into the word at byte `off`.
    fn store(&self, off: usize, v: u64, order: Ordering);
    /// A memory fence.
    fn fence(&self, order: Ordering);
}

/// A shared handle to words is words (callers keep passing `&Arc<ShmRegion>`).
impl<T: Words + ?Sized> Words for std::sync::Arc<T> {
    #[inline]
    fn load(&self, off: usize, order: Ordering) -> u64 {
        (**self).load(off, order)
    }
    #[inline]
    fn store(&self, off: usize, v: u64, order: Ordering) {
        (**self).store(off, v, order);
    }
    #[inline]
    fn fence(&self, order: Ordering) {
        (**self).fence(order);
    }
}

impl Words for ShmRegion {
    #[inline]
    fn load(&self, off: usize, order: Ordering) -> u64 {
        self.atomic_u64(off).load(order)
    }
    #[inline]
    fn store(&self, off: usize, v: u64, order: Ordering) {
        self.atomic_u64(off).store(v, order);
    }
    #[inline]
    fn fence(&self, order: Ordering) {
        std::sync::atomic::fence(order);
    }
}

/// Where a journal of `N` `u64` words and its `state` word lie in a [`ShmRegion`] (byte
/// offsets). See the [module docs](self) for the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Journal<const N: usize> {
    state: usize,
    words: usize,
}

impl<const N: usize> Journal<N> {
    /// A journal whose `state` word is the `u64` at byte `state` and whose values are
    /// the `N` `u64`s from byte `words` on.
    ///
    /// # Panics
    ///
    /// If an offset is not 8-aligned or the state word lies among the value words (at
    /// compile time when used in a `const`). Offsets beyond the region make
    /// [`commit`](Journal::commit) panic, as every [`ShmRegion`] access does.
    pub const fn new(state: usize, words: usize) -> Self {
        assert!(
            state.is_multiple_of(8) && words.is_multiple_of(8),
            "journal offsets must be 8-aligned"
        );
        assert!(
            state + 8 <= words || words + 8 * N <= state,
            "a journal's state word must not overlap its value words"
        );
        Self { state, words }
    }

    /// Journals `values`, runs `apply(values)`, and marks the change done: a process
    /// killed anywhere in between leaves either nothing changed (killed before the
    /// journal was complete) or a pending journal that
    /// [`apply_pending`](Journal::apply_pending) completes.
    ///
    /// The caller holds the lock that guards what `apply` writes.
    #[inline]
    pub fn commit<W: Words + ?Sized>(
        &self,
        region: &W,
        values: [u64; N],
        apply: impl FnOnce([u64; N]),
    ) {
        // every word stored (the sparse form with no sparse tail)
        self.commit_sparse(region, N, values, apply);
    }

    /// As [`commit`](Journal::commit), except that the journal words from index `k` on
    /// are first loaded and stored only where they differ from `values`. For callers
    /// whose trailing values rarely change: the cache line holding those words is then
    /// only read, never written, by most commits. The journal's content (and so
    /// recovery) is exactly as after `commit`.
    #[inline]
    pub fn commit_sparse<W: Words + ?Sized>(
        &self,
        region: &W,
        k: usize,
        values: [u64; N],
        apply: impl FnOnce([u64; N]),
    ) {
        for (i, v) in values.iter().enumerate() {
            let off = self.words + 8 * i;
            if i < k || region.load(off, Ordering::Relaxed) != *v {
                region.store(off, *v, Ordering::Relaxed);
            }
        }
        region.store(self.state, 1, Ordering::Release);
        region.fence(Ordering::Release);
        apply(values);
        region.fence(Ordering::Release);
        region.store(self.state, 0, Ordering::Release);
    }

    /// Completes a change whose committer died after journaling it: if one is pending,
    /// runs `apply` on the journaled values, clears `state` and returns `true`;
    /// otherwise returns `false` and changes nothing.
    ///
    /// Call it after taking over the guarding lock from a dead owner (calling it at any
    /// other time with the lock held is harmless: nothing is pending then).
    #[inline]
    pub fn apply_pending<W: Words + ?Sized>(
        &self,
        region: &W,
        apply: impl FnOnce([u64; N]),
    ) -> bool {
        if region.load(self.state, Ordering::Acquire) != 1 {
            return false;
        }
        let values: [u64; N] =
            std::array::from_fn(|i| region.load(self.words + 8 * i, Ordering::Relaxed));
        apply(values);
        region.fence(Ordering::Release);
        region.store(self.state, 0, Ordering::Release);
        true
    }

    /// Whether a journaled change is waiting to be completed (advisory: for tests and
    /// diagnostics).
    pub fn is_pending<W: Words + ?Sized>(&self, region: &W) -> bool {
        region.load(self.state, Ordering::Acquire) == 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::panic::{catch_unwind, AssertUnwindSafe};

    /// state at 0, journal words at 8.., the journaled state at 64..
    const J: Journal<3> = Journal::new(0, 8);
    const TARGET: usize = 64;

    fn target(r: &ShmRegion) -> [u64; 3] {
        std::array::from_fn(|i| r.atomic_u64(TARGET + 8 * i).load(Ordering::Acquire))
    }

    fn apply_to(r: &ShmRegion) -> impl Fn([u64; 3]) + '_ {
        move |v| {
            for (i, x) in v.into_iter().enumerate() {
                r.atomic_u64(TARGET + 8 * i).store(x, Ordering::Release);
            }
        }
    }

    #[test]
    fn commit_applies_and_leaves_nothing_pending() {
        let r = ShmRegion::create("journal-test", 4096).unwrap();
        J.commit(&r, [1, 2, 3], apply_to(&r));
        assert_eq!(target(&r), [1, 2, 3]);
        assert!(!J.is_pending(&r));
        let mut called = false;
        assert!(!J.apply_pending(&r, |_| called = true));
        assert!(!called);
        J.commit(&r, [4, 5, 6], apply_to(&r));
        assert_eq!(target(&r), [4, 5, 6]);
    }

    #[test]
    fn killed_after_journal_written_but_before_state_set_applies_nothing() {
        let r = ShmRegion::create("journal-test", 4096).unwrap();
        J.commit(&r, [1, 2, 3], apply_to(&r));
        // a committer died after writing the journal words, before setting `state`
        for (i, v) in [7u64, 8, 9].into_iter().enumerate() {
            r.atomic_u64(8 + 8 * i).store(v, Ordering::Relaxed);
        }
        assert!(!J.is_pending(&r));
        assert!(!J.apply_pending(&r, apply_to(&r)));
        assert_eq!(target(&r), [1, 2, 3], "the old state stands");
    }

    #[test]
    fn killed_mid_apply_is_reapplied_by_the_next_owner() {
        let r = ShmRegion::create("journal-test", 4096).unwrap();
        J.commit(&r, [1, 2, 3], apply_to(&r));
        // the committer dies after applying the first word (the panic stands for the
        // kill: nothing after it runs)
        let died = catch_unwind(AssertUnwindSafe(|| {
            J.commit(&r, [10, 20, 30], |[a, _, _]| {
                r.atomic_u64(TARGET).store(a, Ordering::Release);
                panic!("killed");
            })
        }));
        assert!(died.is_err());
        assert_eq!(target(&r), [10, 2, 3], "half applied");
        assert!(J.is_pending(&r));
        // the next owner, through another mapping of the same memory (as another
        // process would see it)
        let other = ShmRegion::from_fd(r.try_clone_fd().unwrap()).unwrap();
        assert!(J.apply_pending(&other, apply_to(&other)));
        assert_eq!(target(&r), [10, 20, 30]);
        assert!(!J.is_pending(&r));
        assert!(!J.apply_pending(&other, apply_to(&other)), "applied once");
    }

    #[test]
    fn a_sparse_commit_leaves_the_same_journal_as_a_full_one() {
        let r = ShmRegion::create("journal-test", 4096).unwrap();
        J.commit_sparse(&r, 1, [1, 2, 3], apply_to(&r));
        assert_eq!(target(&r), [1, 2, 3]);
        // a committer that died before setting `state` left other values in word 2
        r.atomic_u64(24).store(99, Ordering::Relaxed);
        // killed after journaling: the journal must hold [4, 2, 3], not [4, 2, 99]
        let died = catch_unwind(AssertUnwindSafe(|| {
            J.commit_sparse(&r, 1, [4, 2, 3], |_| panic!("killed"))
        }));
        assert!(died.is_err());
        assert!(J.apply_pending(&r, apply_to(&r)));
        assert_eq!(target(&r), [4, 2, 3]);
    }

    #[test]
    fn killed_mid_recovery_is_recovered_again() {
        let r = ShmRegion::create("journal-test", 4096).unwrap();
        let _ = catch_unwind(AssertUnwindSafe(|| {
            J.commit(&r, [1, 2, 3], |_| panic!("killed before applying"))
        }));
        let _ = catch_unwind(AssertUnwindSafe(|| {
            J.apply_pending(&r, |[a, _, _]| {
                r.atomic_u64(TARGET).store(a, Ordering::Release);
                panic!("the recovering owner is killed too");
            })
        }));
        assert_eq!(target(&r), [1, 0, 0]);
        assert!(J.apply_pending(&r, apply_to(&r)));
        assert_eq!(target(&r), [1, 2, 3]);
    }

    #[test]
    #[should_panic(expected = "8-aligned")]
    fn misaligned_offsets_are_refused() {
        let _ = Journal::<1>::new(4, 8);
    }

    #[test]
    #[should_panic(expected = "overlap")]
    fn a_state_word_among_the_values_is_refused() {
        let _ = Journal::<2>::new(16, 8);
    }
}
