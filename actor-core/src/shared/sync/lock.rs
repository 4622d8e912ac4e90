//! [`Lock`] and [`LockGuard`], and what every lock-like acquisition of this module
//! shares (the `OwnerDied` report, the deadline-or-none result).

use super::region::{create, region_handle, MAGIC_LOCK, SMALL};
use crate::error::{Error, LockError};
use procactor_transports::deadline::Deadline;
use procactor_transports::robust::{self, Acquired};
use procactor_transports::shm::ShmRegion;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(super) const LOCK_WORD: usize = 8;

/// A mutual-exclusion lock shared by processes (Python's `multiprocessing.Lock`).
///
/// [`acquire`](Lock::acquire) returns a [`LockGuard`] that releases the lock on drop.
/// Ownership is per process: two threads of one process contend for it like two
/// processes (it is not re-entrant; see [`RLock`](super::RLock)). Uncontended acquire +
/// release is one atomic compare-exchange and one atomic swap, no system call.
///
/// If the holder dies, the next acquirer gets the lock with
/// [`Err(LockError::OwnerDied(guard))`](LockError::OwnerDied) instead of hanging (the
/// waiter notices within a fraction of a second).
///
/// # Examples
///
/// ```
/// use procactor_core::Lock;
/// use std::time::Duration;
///
/// let lock = Lock::new().unwrap();
/// let g = lock.acquire().unwrap();
/// let other = lock.clone(); // another handle (in a child, typically)
/// std::thread::spawn(move || {
///     assert!(other.try_acquire().unwrap().is_none());
///     assert!(other.acquire_timeout(Duration::from_millis(10)).unwrap().is_none());
/// })
/// .join()
/// .unwrap();
/// drop(g);
/// assert!(lock.try_acquire().unwrap().is_some());
/// ```
#[derive(Clone)]
pub struct Lock {
    pub(super) r: Arc<ShmRegion>,
}

region_handle!(Lock, MAGIC_LOCK, 24);

/// A held [`Lock`]; releases it on drop.
pub struct LockGuard<'a> {
    pub(super) lock: &'a Lock,
}

impl std::fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockGuard").finish_non_exhaustive()
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        robust::unlock(self.lock.word());
    }
}

pub(super) type LockResult<G> = Result<G, LockError<G>>;

pub(super) fn acquired<G>(how: Acquired, g: G) -> LockResult<G> {
    match how {
        Acquired::Clean => Ok(g),
        Acquired::OwnerDied => Err(LockError::OwnerDied(g)),
    }
}

/// An acquisition that may have timed out: `None` stays `Ok(None)`.
pub(super) fn some<G>(r: Option<LockResult<G>>) -> TimedLockResult<G> {
    match r {
        None => Ok(None),
        Some(Ok(g)) => Ok(Some(g)),
        Some(Err(e)) => Err(e),
    }
}

/// The result of an acquisition with a deadline: `Ok(None)` when it ran out.
pub(super) type TimedLockResult<G> = Result<Option<G>, LockError<G>>;

/// Unwraps an acquisition made without a deadline (which never gives `Ok(None)`).
pub(super) fn forever<G>(mut f: impl FnMut() -> TimedLockResult<G>) -> LockResult<G> {
    loop {
        match f() {
            Ok(Some(g)) => return Ok(g),
            Ok(None) => continue,
            Err(e) => return Err(e),
        }
    }
}

impl Lock {
    /// A new, unlocked lock.
    ///
    /// # Errors
    ///
    /// The kernel refused the shared memory ([`Error::Io`]).
    pub fn new() -> Result<Self, Error> {
        Ok(Self {
            r: create("lock", SMALL, MAGIC_LOCK)?,
        })
    }

    fn word(&self) -> &AtomicU32 {
        self.r.atomic_u32(LOCK_WORD)
    }

    fn acquire_deadline(&self, deadline: Option<Instant>) -> TimedLockResult<LockGuard<'_>> {
        some(robust::lock(self.word(), deadline).map(|a| acquired(a, LockGuard { lock: self })))
    }

    /// Acquires the lock, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// [`LockError::OwnerDied`]: the previous holder died holding it; the lock is now
    /// held by the caller anyway (the guard is inside).
    pub fn acquire(&self) -> Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        forever(|| self.acquire_deadline(None))
    }

    /// Acquires the lock if it is free (or its holder is dead); `Ok(None)` if a live
    /// process holds it. A failed attempt checks the holder's liveness (a system call
    /// and a read of `/proc`, a few microseconds): poll with
    /// [`acquire_timeout`](Lock::acquire_timeout) rather than in a tight loop.
    ///
    /// # Errors
    ///
    /// As [`acquire`](Lock::acquire).
    pub fn try_acquire(&self) -> Result<Option<LockGuard<'_>>, LockError<LockGuard<'_>>> {
        some(robust::try_lock(self.word(), true).map(|a| acquired(a, LockGuard { lock: self })))
    }

    /// Acquires the lock, waiting at most `timeout`; `Ok(None)` when it ran out.
    ///
    /// # Errors
    ///
    /// As [`acquire`](Lock::acquire).
    pub fn acquire_timeout(
        &self,
        timeout: Duration,
    ) -> Result<Option<LockGuard<'_>>, LockError<LockGuard<'_>>> {
        self.acquire_deadline(Deadline::after(timeout).instant())
    }

    /// For a future waiting for the lock (`crate::aio::WordWait`): the memory holding
    /// its word, and how to pick the word out of it.
    pub(crate) fn word_host(&self) -> (Arc<ShmRegion>, fn(&ShmRegion) -> &AtomicU32) {
        (self.r.clone(), |r| r.atomic_u32(LOCK_WORD))
    }

    /// Marks the lock, if held, as waited for, so that its release wakes the word's
    /// sleepers (a future's watcher among them); `false` if it is free.
    pub(crate) fn mark_waited(&self) -> bool {
        robust::mark_waiters(self.word())
    }

    /// Whether some process holds the lock (advisory: it may change at once).
    pub fn is_locked(&self) -> bool {
        robust::owner(self.word()).is_some()
    }

    /// An identity shared by every handle to this lock (used by
    /// [`Condition`](super::Condition)).
    pub(super) fn same_as(&self, other: &Lock) -> bool {
        let id = self.r.atomic_u64(IDENT).load(Ordering::Relaxed);
        Arc::ptr_eq(&self.r, &other.r)
            || (id != 0 && id == other.r.atomic_u64(IDENT).load(Ordering::Relaxed))
    }
}

/// Where a lock keeps a random identity, written lazily by
/// [`Condition::new`](super::Condition::new).
pub(super) const IDENT: usize = 16;
