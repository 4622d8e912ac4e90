//! [`Lock`] and [`LockGuard`], and what every lock-like acquisition of this module
//! shares (the `OwnerDied` report, the deadline-or-none result).

use super::region::{create, region_handle, MAGIC_LOCK, SMALL};
use crate::aio::WordWait;
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

fn lock_word(r: &ShmRegion) -> &AtomicU32 {
    r.atomic_u32(LOCK_WORD)
}

/// The robust lock has no waiter count (a waiter marks itself in the word's waiters bit
/// instead, which [`robust::try_lock_waiting`] does): a private count stands in for it.
fn no_count(_: &ShmRegion) -> &'static AtomicU32 {
    static UNUSED: AtomicU32 = AtomicU32::new(0);
    &UNUSED
}

/// Takes the robust lock in `r`'s `LOCK_WORD` as a future: the lock is taken only in
/// the poll that returns (so a dropped future holds nothing). While it waits, the
/// waiters bit is set (the owner's unlock wakes the watcher) and the owner's liveness is
/// checked as the blocking path does, 1 ms after the start, backing off to 200 ms.
pub(super) async fn lock_async(r: &Arc<ShmRegion>) -> Acquired {
    if let Some(a) = robust::try_lock(lock_word(r), false) {
        return a;
    }
    let mut wait = WordWait::new(r.clone(), lock_word, no_count);
    // (the liveness looks of the blocking path, `robust::lock`)
    let mut period = robust::FIRST_LIVENESS_CHECK;
    let mut next_check = Instant::now() + period;
    std::future::poll_fn(|cx| {
        let now = Instant::now();
        let mut check = now >= next_check;
        if check {
            period = (period * 2).min(robust::LAST_LIVENESS_CHECK);
            next_check = now + period;
        }
        let recheck = next_check.saturating_duration_since(now);
        wait.poll(cx, Some(recheck), || {
            robust::try_lock_waiting(lock_word(r), std::mem::take(&mut check))
        })
    })
    .await
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

    /// As [`acquire`](Lock::acquire), as a future: waits for the lock without blocking a
    /// thread, on any executor (tokio, `futures::executor::block_on`, …). For a timeout,
    /// wrap it in the runtime's own (`tokio::time::timeout(d, lock.acquire_async())`).
    ///
    /// A holder that dies is noticed as by `acquire` (its liveness is checked 1 ms into
    /// the wait, then at most every 200 ms), with the same
    /// [`Err(LockError::OwnerDied(guard))`](LockError::OwnerDied).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the lock is taken only in the poll that returns the guard, so a
    /// dropped future holds nothing. If it had been woken by an unlock it will now not
    /// use, that wake-up is passed on to the lock's other waiters.
    ///
    /// # Errors
    ///
    /// As [`acquire`](Lock::acquire): [`LockError::OwnerDied`], with the lock held.
    ///
    /// # Examples
    ///
    /// ```
    /// use procactor_core::Lock;
    /// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     use std::task::{Context, Poll, Wake, Waker};
    /// #     use std::sync::Arc;
    /// #     struct T(std::thread::Thread);
    /// #     impl Wake for T { fn wake(self: Arc<Self>) { self.0.unpark() } }
    /// #     let w = Waker::from(Arc::new(T(std::thread::current())));
    /// #     let mut f = std::pin::pin!(f);
    /// #     loop {
    /// #         if let Poll::Ready(v) = f.as_mut().poll(&mut Context::from_waker(&w)) { return v; }
    /// #         std::thread::park();
    /// #     }
    /// # }
    /// let lock = Lock::new().unwrap();
    /// let held = lock.acquire().unwrap();
    /// let other = lock.clone(); // another handle (in a child, typically)
    /// let t = std::thread::spawn(move || {
    ///     // any executor: tokio's `block_on` or `futures::executor::block_on` alike
    ///     let g = block_on(other.acquire_async()).unwrap();
    ///     drop(g);
    /// });
    /// std::thread::sleep(std::time::Duration::from_millis(20));
    /// drop(held); // the waiting future gets the lock
    /// t.join().unwrap();
    /// ```
    pub async fn acquire_async(&self) -> Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        let how = lock_async(&self.r).await;
        acquired(how, LockGuard { lock: self })
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
