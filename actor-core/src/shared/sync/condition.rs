//! [`Condition`], a condition variable over a [`Lock`].

use super::lock::{Lock, LockGuard, IDENT};
use super::region::{create, fmt_region, map, passed, MAGIC_COND, SMALL};
use crate::aio::WordWait;
use crate::codec::{RecvFd, SendFd};
use crate::error::{Error, LockError};
use procactor_transports::deadline::Deadline;
use procactor_transports::shm::ShmRegion;
use procactor_transports::waiter::{self, Os, Slept};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const COND_SEQ: usize = 8;
const COND_WAITERS: usize = 12;

fn seq_word(r: &ShmRegion) -> &AtomicU32 {
    r.atomic_u32(COND_SEQ)
}
fn seq_waiters(r: &ShmRegion) -> &AtomicU32 {
    r.atomic_u32(COND_WAITERS)
}

/// A condition variable over a [`Lock`], shared by processes (Python's
/// `multiprocessing.Condition`, `std::sync::Condvar`).
///
/// Wait with the guard of the lock given to [`new`](Condition::new): the lock is
/// released while waiting and re-acquired before returning. Notify while holding that
/// lock, after changing the shared state the waiters test, and no wake-up is lost.
/// Waits may wake spuriously: test the state in a loop, or use
/// [`wait_while`](Condition::wait_while).
///
/// # Examples
///
/// ```
/// use procactor_core::{Condition, Lock, Process, Value};
/// use std::time::Duration;
///
/// fn producer((cond, ready): (Condition, Value<u8>)) {
///     let _g = cond.lock().acquire().unwrap();
///     ready.set(1).unwrap();
///     cond.notify_all();
/// }
///
/// fn main() {
///     procactor_core::init();
///     let lock = Lock::new().unwrap();
///     let cond = Condition::new(&lock).unwrap();
///     let ready = Value::new(0u8).unwrap();
///     let g = lock.acquire().unwrap();
///     let mut p = Process::new(producer, (cond.clone(), ready.clone())).start().unwrap();
///     let (g, ok) = cond
///         .wait_timeout_while(g, Duration::from_secs(30), || ready.get().unwrap() == 0)
///         .unwrap();
///     assert!(ok);
///     drop(g);
///     p.join().unwrap();
/// }
/// ```
#[derive(Clone)]
pub struct Condition {
    r: Arc<ShmRegion>,
    lock: Lock,
}

impl Serialize for Condition {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (SendFd(self.r.fd()), &self.lock).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Condition {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (RecvFd(fd), lock) = <(RecvFd, Lock)>::deserialize(d)?;
        let r = map(fd, 16, MAGIC_COND, "Condition").map_err(D::Error::custom)?;
        Ok(Self { r, lock })
    }
}

impl std::fmt::Debug for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fmt_region(f, "Condition", &self.r)
    }
}

impl Condition {
    /// A condition variable over `lock` (the condition keeps a handle to it).
    ///
    /// # Errors
    ///
    /// The kernel refused the shared memory ([`Error::Io`]).
    pub fn new(lock: &Lock) -> Result<Self, Error> {
        let ident = lock.r.atomic_u64(IDENT);
        if ident.load(Ordering::Relaxed) == 0 {
            let id = crate::runtime::random_token() | 1;
            let _ = ident.compare_exchange(0, id, Ordering::Relaxed, Ordering::Relaxed);
        }
        Ok(Self {
            r: create("condition", SMALL, MAGIC_COND)?,
            lock: lock.clone(),
        })
    }

    /// The lock this condition works with.
    pub fn lock(&self) -> &Lock {
        &self.lock
    }

    fn seq(&self) -> &AtomicU32 {
        self.r.atomic_u32(COND_SEQ)
    }

    /// Releases `guard`'s lock, sleeps until notified or `deadline`, re-acquires it.
    /// The flag says whether it was woken (or saw a notification) before the deadline.
    fn wait_deadline<'a>(
        &self,
        guard: LockGuard<'a>,
        deadline: Option<Instant>,
    ) -> (Result<LockGuard<'a>, LockError<LockGuard<'a>>>, bool) {
        let lock = guard.lock;
        if !lock.same_as(&self.lock) {
            tracing::warn!("Condition::wait with the guard of a lock other than the condition's");
        }
        let seq = self.seq();
        let waiters = self.r.atomic_u32(COND_WAITERS);
        // read under the lock: a notification after this changes the word (notifiers
        // bump it whether or not anyone is counted), so none is missed once it is read
        let s = seq.load(Ordering::SeqCst);
        drop(guard);
        let slept = waiter::sleep(&Os, seq, waiters, &mut |w| w != s, deadline);
        (lock.acquire(), slept != Slept::TimedOut)
    }

    /// Releases the lock, waits for a notification, re-acquires the lock.
    ///
    /// # Errors
    ///
    /// [`LockError::OwnerDied`] when re-acquiring found the lock's holder dead (the lock
    /// is held anyway: the guard is inside).
    pub fn wait<'a>(
        &self,
        guard: LockGuard<'a>,
    ) -> Result<LockGuard<'a>, LockError<LockGuard<'a>>> {
        self.wait_deadline(guard, None).0
    }

    /// As [`wait`](Condition::wait), as a future: releases the lock, waits for a
    /// notification without blocking a thread (on any executor), re-acquires the lock
    /// with [`Lock::acquire_async`]. Wake-ups may be spurious, as for `wait`: test the
    /// state in a loop.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe in the sense that the guard is consumed: the lock is released at
    /// the first poll (or, if the future is dropped before it, when the guard is dropped
    /// with it), and a future dropped before it completes returns no guard, so the lock
    /// is then **not** held. It holds nothing either (the re-acquisition is cancel
    /// safe), and a notification it was woken by and will not use is passed on.
    ///
    /// # Errors
    ///
    /// As [`wait`](Condition::wait): [`LockError::OwnerDied`] when re-acquiring found
    /// the lock's holder dead (the lock is held anyway: the guard is inside).
    ///
    /// # Examples
    ///
    /// ```
    /// use procactor_core::{Condition, Lock, Value};
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
    /// let cond = Condition::new(&lock).unwrap();
    /// let ready = Value::new(0u8).unwrap();
    /// let (c2, r2) = (cond.clone(), ready.clone());
    /// let t = std::thread::spawn(move || {
    ///     let _g = c2.lock().acquire().unwrap();
    ///     r2.set(1).unwrap();
    ///     c2.notify_all();
    /// });
    /// block_on(async {
    ///     let mut g = lock.acquire_async().await.unwrap();
    ///     while ready.get().unwrap() == 0 {
    ///         g = cond.wait_async(g).await.unwrap();
    ///     }
    /// });
    /// t.join().unwrap();
    /// ```
    pub async fn wait_async<'a>(
        &self,
        guard: LockGuard<'a>,
    ) -> Result<LockGuard<'a>, LockError<LockGuard<'a>>> {
        let lock = guard.lock;
        if !lock.same_as(&self.lock) {
            tracing::warn!(
                "Condition::wait_async with the guard of a lock other than the condition's"
            );
        }
        // read under the lock, as `wait` does
        let s = self.seq().load(Ordering::SeqCst);
        drop(guard);
        let mut wait = WordWait::new(self.r.clone(), seq_word, seq_waiters);
        std::future::poll_fn(|cx| {
            wait.poll(cx, None, || {
                (self.seq().load(Ordering::SeqCst) != s).then_some(())
            })
        })
        .await;
        drop(wait);
        lock.acquire_async().await
    }

    /// As [`wait`](Condition::wait), for at most `timeout`; the flag is `false` when the
    /// time ran out without a notification (Python's `wait(timeout)` result).
    ///
    /// # Errors
    ///
    /// As [`wait`](Condition::wait).
    pub fn wait_timeout<'a>(
        &self,
        guard: LockGuard<'a>,
        timeout: Duration,
    ) -> Result<(LockGuard<'a>, bool), LockError<(LockGuard<'a>, bool)>> {
        match self.wait_deadline(guard, Deadline::after(timeout).instant()) {
            (Ok(g), woken) => Ok((g, woken)),
            (Err(LockError::OwnerDied(g)), woken) => Err(LockError::OwnerDied((g, woken))),
        }
    }

    /// Waits while `condition()` is true (tested with the lock held), like
    /// `std::sync::Condvar::wait_while` (Python's `wait_for(not condition)`).
    ///
    /// # Errors
    ///
    /// As [`wait`](Condition::wait); it returns at once on that error, without testing
    /// the condition again.
    pub fn wait_while<'a>(
        &self,
        mut guard: LockGuard<'a>,
        mut condition: impl FnMut() -> bool,
    ) -> Result<LockGuard<'a>, LockError<LockGuard<'a>>> {
        while condition() {
            guard = self.wait(guard)?;
        }
        Ok(guard)
    }

    /// As [`wait_while`](Condition::wait_while), for at most `timeout`; the flag is
    /// `true` when the condition became false, `false` when the time ran out first.
    ///
    /// # Errors
    ///
    /// As [`wait_while`](Condition::wait_while).
    pub fn wait_timeout_while<'a>(
        &self,
        mut guard: LockGuard<'a>,
        timeout: Duration,
        mut condition: impl FnMut() -> bool,
    ) -> Result<(LockGuard<'a>, bool), LockError<(LockGuard<'a>, bool)>> {
        let deadline = Deadline::after(timeout).instant();
        loop {
            if !condition() {
                return Ok((guard, true));
            }
            if passed(deadline) {
                return Ok((guard, false));
            }
            match self.wait_deadline(guard, deadline) {
                (Ok(g), _) => guard = g,
                (Err(LockError::OwnerDied(g)), _) => {
                    let done = !condition();
                    return Err(LockError::OwnerDied((g, done)));
                }
            }
        }
    }

    /// Wakes at most `n` of the waiters that are asleep. A waiter that has released the
    /// lock in `wait` but not yet fallen asleep also returns (like a spurious wake-up of
    /// `std::sync::Condvar`), so more than `n` `wait`s may return: wait for a condition
    /// with [`wait_while`](Condition::wait_while), not for a number of notifications.
    pub fn notify(&self, n: usize) {
        self.seq().fetch_add(1, Ordering::SeqCst);
        // (any count above i32::MAX wakes all)
        let n = u32::try_from(n).unwrap_or(waiter::ALL);
        waiter::wake(&Os, self.seq(), self.r.atomic_u32(COND_WAITERS), n);
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        self.seq().fetch_add(1, Ordering::SeqCst);
        waiter::wake(
            &Os,
            self.seq(),
            self.r.atomic_u32(COND_WAITERS),
            waiter::ALL,
        );
    }
}
