//! The proxies of a manager's locks, re-entrant locks, semaphores and conditions.

use super::super::objects::SyncReq;
use super::super::ManagerError;
use super::{wait_of, ManagerGuard, SyncHandle, NOW};
use procactor_transports::deadline::Deadline;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::{Duration, Instant};

// ------------------------------------------------------------------ locks

/// A lock in a manager (Python's `Manager().Lock()`): one holder at a time, across
/// processes and hosts.
///
/// Not re-entrant: a thread that acquires it twice waits for itself (use
/// [`acquire_timeout`](SharedLock::acquire_timeout) or a [`SharedRLock`]). Any thread
/// or process may [`release`](SharedLock::release) it, as Python's; the server releases
/// it itself when the connection of the thread that holds it closes (that thread's
/// process died or the thread ended: see the [module docs](crate::manager#synchronisation-objects-and-queues)).
///
/// # Examples
///
/// ```
/// use procactor::Manager;
///
/// fn main() {
///     procactor::init();
///     let mgr = Manager::start().unwrap();
///     let lock = mgr.lock().unwrap();
///     let g = lock.acquire().unwrap();
///     assert!(lock.try_acquire().unwrap().is_none());
///     drop(g);
///     assert!(lock.try_acquire().unwrap().is_some());
/// }
/// ```
#[derive(Clone, Serialize, Deserialize)]
pub struct SharedLock {
    pub(super) h: SyncHandle,
}
sync_proxy!(SharedLock);
acquire_grid!(SharedLock);

impl SharedLock {
    /// Whether anyone holds it.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Disconnected`] when the server is gone.
    pub fn is_locked(&self) -> Result<bool, ManagerError> {
        self.h.bool(SyncReq::IsSet(self.h.id))
    }
}

/// A re-entrant lock in a manager (Python's `Manager().RLock()`): the thread that
/// holds it may acquire it again, and must release it as many times.
///
/// The owner is the thread of a client process (its connection, see the
/// [module docs](crate::manager#synchronisation-objects-and-queues)); another thread's `release` is refused
/// ([`ManagerError::Refused`]). The server releases it, whatever its count, when the
/// owner's connection closes.
#[derive(Clone, Serialize, Deserialize)]
pub struct SharedRLock {
    pub(super) h: SyncHandle,
}
sync_proxy!(SharedRLock);
acquire_grid!(SharedRLock);

impl SharedRLock {
    /// Whether anyone holds it.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Disconnected`] when the server is gone.
    pub fn is_locked(&self) -> Result<bool, ManagerError> {
        self.h.bool(SyncReq::IsSet(self.h.id))
    }
}

/// A semaphore in a manager (Python's `Manager().Semaphore(n)` and
/// `BoundedSemaphore(n)`): `acquire` takes one unit, waiting while there is none.
///
/// A bounded one ([`Manager::bounded_semaphore`](crate::Manager::bounded_semaphore)) refuses a `release` that would take
/// its value above the initial one ([`ManagerError::Refused`], Python's `ValueError`).
///
/// Acquisitions are recorded per connection (thread of a client process). A `release`
/// cancels one of the releaser's own acquisitions, or, when it has none (a semaphore
/// used as a signal between clients), one of another client's; when a connection closes,
/// the server gives back the acquisitions it still has. So a client that dies holding
/// units does not take them with it.
#[derive(Clone, Serialize, Deserialize)]
pub struct SharedSemaphore {
    pub(super) h: SyncHandle,
}
sync_proxy!(SharedSemaphore);
acquire_grid!(SharedSemaphore);

impl SharedSemaphore {
    /// Its value now (units free).
    ///
    /// # Errors
    ///
    /// [`ManagerError::Disconnected`] when the server is gone.
    pub fn value(&self) -> Result<u64, ManagerError> {
        self.h.count(SyncReq::Value(self.h.id))
    }
}

/// A condition variable in a manager with its own re-entrant lock (Python's
/// `Manager().Condition()`).
///
/// [`wait`](SharedCondition::wait) must be called by the thread that holds the lock
/// (through [`acquire`](SharedCondition::acquire)); it releases the lock whatever its
/// count, waits for a [`notify`](SharedCondition::notify), and takes the lock back with
/// its count before it returns (taking it back has no deadline, as in Python). `notify`
/// too needs the lock. The lock is released by the server when its owner's connection
/// closes (see the [module docs](crate::manager#synchronisation-objects-and-queues)).
///
/// # Examples
///
/// ```
/// use procactor::Manager;
/// use std::time::Duration;
///
/// fn main() {
///     procactor::init();
///     let mgr = Manager::start().unwrap();
///     let c = mgr.condition().unwrap();
///     let g = c.acquire().unwrap();
///     // nobody notifies: the wait times out, the lock is held again
///     assert!(!c.wait_timeout(Duration::from_millis(10)).unwrap());
///     c.notify_all().unwrap();
///     drop(g);
/// }
/// ```
#[derive(Clone, Serialize, Deserialize)]
pub struct SharedCondition {
    pub(super) h: SyncHandle,
}
sync_proxy!(SharedCondition);
acquire_grid!(SharedCondition);

impl SharedCondition {
    /// Waits for a notification (see the type's docs).
    ///
    /// # Errors
    ///
    /// [`ManagerError::Refused`] when this thread does not hold the lock;
    /// [`ManagerError::Disconnected`] when the server is gone.
    pub fn wait(&self) -> Result<(), ManagerError> {
        self.h.bool(SyncReq::Wait(self.h.id, None)).map(drop)
    }
    /// Waits at most `timeout` (`Duration::MAX`: forever) for a notification; whether
    /// one came (the lock is held again either way).
    ///
    /// # Errors
    ///
    /// As [`wait`](SharedCondition::wait).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool, ManagerError> {
        self.h.bool(SyncReq::Wait(self.h.id, wait_of(timeout)))
    }
    /// Waits until `pred()` holds (Python's `wait_for` without a timeout): `pred` runs
    /// here, with the lock held, first and after every notification.
    ///
    /// # Errors
    ///
    /// As [`wait`](SharedCondition::wait).
    pub fn wait_for(&self, mut pred: impl FnMut() -> bool) -> Result<(), ManagerError> {
        while !pred() {
            self.wait()?;
        }
        Ok(())
    }
    /// As [`wait_for`](SharedCondition::wait_for), for at most `timeout` in all; the
    /// last value of `pred()` (false: the time ran out).
    ///
    /// # Errors
    ///
    /// As [`wait`](SharedCondition::wait).
    pub fn wait_for_timeout(
        &self,
        mut pred: impl FnMut() -> bool,
        timeout: Duration,
    ) -> Result<bool, ManagerError> {
        let until = Deadline::after(timeout).instant();
        loop {
            if pred() {
                return Ok(true);
            }
            let left = match until {
                None => Duration::MAX,
                Some(u) => u.saturating_duration_since(Instant::now()),
            };
            if left.is_zero() {
                return Ok(false);
            }
            self.wait_timeout(left)?;
        }
    }
    /// Wakes up to `n` waiters (the oldest first).
    ///
    /// # Errors
    ///
    /// [`ManagerError::Refused`] when this thread does not hold the lock;
    /// [`ManagerError::Disconnected`] when the server is gone.
    pub fn notify(&self, n: usize) -> Result<(), ManagerError> {
        self.h.unit(SyncReq::Notify(
            self.h.id,
            u64::try_from(n).unwrap_or(u64::MAX),
        ))
    }
    /// Wakes every waiter.
    ///
    /// # Errors
    ///
    /// As [`notify`](SharedCondition::notify).
    pub fn notify_all(&self) -> Result<(), ManagerError> {
        self.h.unit(SyncReq::Notify(self.h.id, u64::MAX))
    }
}
