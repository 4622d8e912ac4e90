//! [`RLock`], the re-entrant lock, and its guard.

use super::lock::{acquired, forever, some, LockResult, TimedLockResult, LOCK_WORD};
use super::region::{create, region_handle, MAGIC_RLOCK, SMALL};
use crate::error::{Error, LockError};
use procactor_transports::deadline::Deadline;
use procactor_transports::robust::{self, Acquired};
use procactor_transports::shm::ShmRegion;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const RLOCK_TID: usize = 12;
const RLOCK_COUNT: usize = 16;

static NEXT_THREAD: AtomicU32 = AtomicU32::new(1);
thread_local! {
    /// A number for this thread, unique within the process (never 0).
    static THREAD: u32 = NEXT_THREAD.fetch_add(1, Ordering::Relaxed).max(1);
}

fn thread_number() -> u32 {
    THREAD.with(|t| *t)
}

/// A re-entrant lock (Python's `multiprocessing.RLock`): the thread holding it may
/// acquire it again; it is released when every guard is dropped.
///
/// The owner is a *thread of a process*: the region stores the owner's pid, a
/// per-process thread number and the recursion count. Another thread of the same process
/// waits like another process does. A dead owner is detected as with
/// [`Lock`](super::Lock).
///
/// # Examples
///
/// ```
/// use procactor_core::RLock;
///
/// let r = RLock::new().unwrap();
/// let a = r.acquire().unwrap();
/// let b = r.acquire().unwrap(); // same thread: no deadlock
/// assert_eq!(r.count(), 2);
/// drop(b);
/// drop(a);
/// assert_eq!(r.count(), 0);
/// ```
#[derive(Clone)]
pub struct RLock {
    r: Arc<ShmRegion>,
}

region_handle!(RLock, MAGIC_RLOCK, 20);

/// One level of a held [`RLock`]; the lock is released when the last one is dropped.
/// Not `Send`: it must be dropped by the owning thread.
pub struct RLockGuard<'a> {
    lock: &'a RLock,
    _not_send: PhantomData<*const ()>,
}

impl std::fmt::Debug for RLockGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RLockGuard").finish_non_exhaustive()
    }
}

impl Drop for RLockGuard<'_> {
    fn drop(&mut self) {
        let count = self.lock.r.atomic_u32(RLOCK_COUNT);
        let left = count.load(Ordering::Relaxed).saturating_sub(1);
        count.store(left, Ordering::Relaxed);
        if left == 0 {
            self.lock
                .r
                .atomic_u32(RLOCK_TID)
                .store(0, Ordering::Relaxed);
            robust::unlock(self.lock.word());
        }
    }
}

impl RLock {
    /// A new, unlocked re-entrant lock.
    ///
    /// # Errors
    ///
    /// The kernel refused the shared memory ([`Error::Io`]).
    pub fn new() -> Result<Self, Error> {
        Ok(Self {
            r: create("rlock", SMALL, MAGIC_RLOCK)?,
        })
    }

    fn word(&self) -> &AtomicU32 {
        self.r.atomic_u32(LOCK_WORD)
    }

    fn guard(&self) -> RLockGuard<'_> {
        RLockGuard {
            lock: self,
            _not_send: PhantomData,
        }
    }

    /// Re-enters if this thread owns the lock.
    fn reenter(&self) -> Option<RLockGuard<'_>> {
        if robust::held_by_this_process(self.word())
            && self.r.atomic_u32(RLOCK_TID).load(Ordering::Relaxed) == thread_number()
        {
            let c = self.r.atomic_u32(RLOCK_COUNT);
            c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
            return Some(self.guard());
        }
        None
    }

    fn took(&self, how: Acquired) -> LockResult<RLockGuard<'_>> {
        self.r
            .atomic_u32(RLOCK_TID)
            .store(thread_number(), Ordering::Relaxed);
        self.r.atomic_u32(RLOCK_COUNT).store(1, Ordering::Relaxed);
        acquired(how, self.guard())
    }

    fn acquire_deadline(&self, deadline: Option<Instant>) -> TimedLockResult<RLockGuard<'_>> {
        if let Some(g) = self.reenter() {
            return Ok(Some(g));
        }
        some(robust::lock(self.word(), deadline).map(|a| self.took(a)))
    }

    /// Acquires the lock (again, if this thread holds it), waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// [`LockError::OwnerDied`]: the previous owner died holding it; the caller holds it
    /// now anyway.
    pub fn acquire(&self) -> Result<RLockGuard<'_>, LockError<RLockGuard<'_>>> {
        forever(|| self.acquire_deadline(None))
    }

    /// Acquires the lock if it is free, held by this thread, or held by a dead owner;
    /// `Ok(None)` otherwise.
    ///
    /// # Errors
    ///
    /// As [`acquire`](RLock::acquire).
    pub fn try_acquire(&self) -> Result<Option<RLockGuard<'_>>, LockError<RLockGuard<'_>>> {
        if let Some(g) = self.reenter() {
            return Ok(Some(g));
        }
        some(robust::try_lock(self.word(), true).map(|a| self.took(a)))
    }

    /// Acquires the lock, waiting at most `timeout`; `Ok(None)` when it ran out.
    ///
    /// # Errors
    ///
    /// As [`acquire`](RLock::acquire).
    pub fn acquire_timeout(
        &self,
        timeout: Duration,
    ) -> Result<Option<RLockGuard<'_>>, LockError<RLockGuard<'_>>> {
        self.acquire_deadline(Deadline::after(timeout).instant())
    }

    /// As [`acquire`](RLock::acquire), as a future: waits for the lock without blocking
    /// a thread, on any executor. The owner is the thread that polls the future to
    /// completion (re-entry is by thread, as for `acquire`); the guard is not `Send`, so
    /// it stays on that thread.
    ///
    /// A dead owner is noticed as by `acquire` (see [`Lock::acquire_async`](
    /// super::Lock::acquire_async)).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the lock is taken only in the poll that returns the guard; a dropped
    /// future holds nothing (a wake-up it got and will not use is passed on).
    ///
    /// # Errors
    ///
    /// As [`acquire`](RLock::acquire): [`LockError::OwnerDied`], with the lock held.
    pub async fn acquire_async(&self) -> Result<RLockGuard<'_>, LockError<RLockGuard<'_>>> {
        if let Some(g) = self.reenter() {
            return Ok(g);
        }
        let how = super::lock::lock_async(&self.r).await;
        // (in the poll that took it: this thread owns it)
        self.took(how)
    }

    /// The recursion depth of the current owner (0 when free; advisory).
    pub fn count(&self) -> u32 {
        if robust::owner(self.word()).is_none() {
            return 0;
        }
        self.r.atomic_u32(RLOCK_COUNT).load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rlock_is_exclusive_between_threads() {
        let r = RLock::new().unwrap();
        let g = r.acquire().unwrap();
        let g2 = r.try_acquire().unwrap().unwrap();
        let r2 = r.clone();
        std::thread::spawn(move || {
            assert!(r2.try_acquire().unwrap().is_none());
            assert!(r2
                .acquire_timeout(Duration::from_millis(10))
                .unwrap()
                .is_none());
        })
        .join()
        .unwrap();
        drop(g2);
        drop(g);
        let r2 = r.clone();
        std::thread::spawn(move || assert!(r2.try_acquire().unwrap().is_some()))
            .join()
            .unwrap();
    }
}
