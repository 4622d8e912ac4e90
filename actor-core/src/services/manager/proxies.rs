//! The proxies of a manager's synchronisation objects, queues, values and arrays, and
//! the [`Manager`] methods that make them.
//!
//! See the parent module's docs for how they connect and who owns a lock.

use super::objects::{SyncKind, SyncReq, Wait};
use super::refs::{self, Ref, Space};
use super::wire::Session;
use super::{
    dec, enc, open_session_by, round_trip, unexpected, Handle, Invariant, Kind, Manager,
    ManagerError, Req, Resp, CALL_MARGIN,
};
use crate::{Bytes, Message};
use procactor_transports::conn::Address;
use procactor_transports::deadline::Deadline;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

// ------------------------------------------------------------------ connections

/// One thread's connection to one manager.
struct SyncConn {
    address: String,
    key: Bytes,
    /// the process that opened it (a forked child must not use its parent's)
    pid: u32,
    /// which connection this is (process-wide count): an acquisition made on one is
    /// released by the server when that connection closes, never through a later one
    gen: u64,
    s: Session,
}

static NEXT_GEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

thread_local! {
    static CONNS: RefCell<Vec<SyncConn>> = const { RefCell::new(Vec::new()) };
}

fn take_conn(address: &str, key: &Bytes) -> Option<SyncConn> {
    let pid = std::process::id();
    CONNS
        .try_with(|c| {
            let mut c = c.borrow_mut();
            // copies inherited through a fork: closing them here leaves the parent's
            c.retain(|x| x.pid == pid);
            let i = c
                .iter()
                .position(|x| x.address == address && x.key == *key)?;
            Some(c.swap_remove(i))
        })
        .ok()
        .flatten()
}

fn put_back(c: SyncConn) {
    // (a thread that is ending closes it instead)
    let _ = CONNS.try_with(|v| v.borrow_mut().push(c));
}

/// Closes this thread's connections to every manager, as a connection failure does (the
/// server then releases what they held). For tests of connection loss.
#[doc(hidden)]
pub fn close_this_threads_connections() {
    let _ = CONNS.try_with(|c| c.borrow_mut().clear());
}

/// Where a synchronisation object lives, its number, and this process's reference to
/// it.
#[derive(Clone)]
struct SyncHandle {
    address: String,
    key: Bytes,
    id: u64,
    _ref: Arc<Ref>,
}

impl Serialize for SyncHandle {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // the encoding holds a reference of its own (see `refs`)
        let token = self._ref.lend().map_err(serde::ser::Error::custom)?;
        (&self.address, &self.key, self.id, token).serialize(s)
    }
}

impl<'de> Deserialize<'de> for SyncHandle {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (address, key, id, token): (String, Bytes, u64, u64) = Deserialize::deserialize(d)?;
        let link = refs::link(&address, &key);
        Ok(SyncHandle {
            address,
            key,
            id,
            _ref: Ref::claimed(link, (Space::Sync, id), token),
        })
    }
}

impl SyncHandle {
    /// One request over this thread's connection; heartbeats are skipped. A failure
    /// that leaves the connection out of step closes it (the server then releases what
    /// it held).
    fn call(&self, req: SyncReq) -> Result<Resp, ManagerError> {
        sync_call(&self.address, &self.key, req)
    }

    fn unit(&self, req: SyncReq) -> Result<(), ManagerError> {
        match self.call(req)? {
            Resp::Unit => Ok(()),
            r => Err(unexpected(r)),
        }
    }

    fn bool(&self, req: SyncReq) -> Result<bool, ManagerError> {
        match self.call(req)? {
            Resp::Bool(b) => Ok(b),
            r => Err(unexpected(r)),
        }
    }

    fn count(&self, req: SyncReq) -> Result<u64, ManagerError> {
        match self.call(req)? {
            Resp::Count(n) => Ok(n),
            r => Err(unexpected(r)),
        }
    }

    fn acquire(&self, w: Wait) -> Result<Option<ManagerGuard<'_>>, ManagerError> {
        let (r, gen) = sync_call_on(&self.address, &self.key, SyncReq::Acquire(self.id, w), None)?
            .ok_or(ManagerError::Disconnected)?;
        match r {
            // (`then`, not `then_some`: a guard made and dropped would release the lock)
            Resp::Bool(got) => Ok(got.then(|| ManagerGuard {
                h: self,
                gen,
                _not_send: PhantomData,
            })),
            r => Err(unexpected(r)),
        }
    }

    /// Releases the acquisition a guard made on connection `gen`. When this thread's
    /// connection is another one (that one failed and closed), the server has released
    /// it already: nothing is sent (a `Lock` may be released by anyone, so a release
    /// through a new connection would free whoever holds it now).
    fn release_on(&self, gen: u64) -> Result<(), ManagerError> {
        match sync_call_on(
            &self.address,
            &self.key,
            SyncReq::Release(self.id),
            Some(gen),
        )? {
            None | Some((Resp::Unit, _)) => Ok(()),
            Some((r, _)) => Err(unexpected(r)),
        }
    }
}

fn sync_call(address: &str, key: &Bytes, req: SyncReq) -> Result<Resp, ManagerError> {
    let (r, _) = sync_call_on(address, key, req, None)?.ok_or(ManagerError::Disconnected)?;
    Ok(r)
}

/// The deadline of a call that waits at most `w` at the server: `w` and
/// [`CALL_MARGIN`] from now (`None`: no deadline, heartbeats tell a waiting server from
/// a vanished one).
fn call_deadline(w: Wait) -> Option<Instant> {
    let w = Duration::from_micros(w?).checked_add(CALL_MARGIN)?;
    Deadline::after(w).instant()
}

/// As [`sync_call`], also saying on which connection; with `only_on: Some(gen)`, the
/// request is sent only if this thread's connection to that manager is still `gen`
/// (`Ok(None)` otherwise: nothing sent).
fn sync_call_on(
    address: &str,
    key: &Bytes,
    req: SyncReq,
    only_on: Option<u64>,
) -> Result<Option<(Resp, u64)>, ManagerError> {
    let deadline = call_deadline(req.wait());
    let mut c = match (take_conn(address, key), only_on) {
        (Some(c), Some(gen)) if c.gen != gen => {
            put_back(c);
            return Ok(None);
        }
        (None, Some(_)) => return Ok(None),
        (Some(c), _) => c,
        (None, None) => {
            let s =
                open_session_by(&Address::parse(address), key, deadline).map_err(|e| match e {
                    ManagerError::Io(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
                        ) && deadline.is_some() =>
                    {
                        ManagerError::Timeout
                    }
                    ManagerError::Io(_) => ManagerError::Disconnected,
                    e => e,
                })?;
            SyncConn {
                address: address.to_string(),
                key: key.clone(),
                pid: std::process::id(),
                gen: NEXT_GEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                s,
            }
        }
    };
    match round_trip(&mut c.s, &Req::Sync(req), deadline) {
        Ok(r) => {
            let gen = c.gen;
            put_back(c);
            Ok(Some((r, gen)))
        }
        Err((e, keep)) => {
            if keep {
                put_back(c);
            }
            Err(e)
        }
    }
}

/// A timeout as it travels: `None` (forever) when it does not fit (`Duration::MAX`).
fn wait_of(d: Duration) -> Wait {
    u64::try_from(d.as_micros()).ok()
}

/// `try_` operations: a deadline that has passed already.
const NOW: Wait = Some(0);

macro_rules! sync_proxy {
    ($t:ident) => {
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($t))
                    .field("id", &self.h.id)
                    .finish_non_exhaustive()
            }
        }
    };
}

/// The acquire grid, the same for every lock-like proxy.
macro_rules! acquire_grid {
    ($t:ident) => {
        impl $t {
            /// Acquires it, waiting as long as it takes; the guard releases it when
            /// dropped.
            ///
            /// # Errors
            ///
            /// [`ManagerError::Disconnected`] when the server is gone.
            pub fn acquire(&self) -> Result<ManagerGuard<'_>, ManagerError> {
                self.h.acquire(None)?.ok_or_else(|| {
                    ManagerError::Refused("an acquire without a deadline ended".into())
                })
            }
            /// Acquires it if that is possible at once; `None` otherwise.
            ///
            /// # Errors
            ///
            /// [`ManagerError::Timeout`] when the server does not answer within
            /// [`CALL_MARGIN`] (see [Timeouts](crate::manager#timeouts)); as
            /// [`acquire`](Self::acquire).
            pub fn try_acquire(&self) -> Result<Option<ManagerGuard<'_>>, ManagerError> {
                self.h.acquire(NOW)
            }
            /// Acquires it, waiting at most `timeout` (`Duration::MAX`: forever);
            /// `None` when the time ran out.
            ///
            /// # Errors
            ///
            /// [`ManagerError::Timeout`] when the server does not answer within
            /// `timeout` and [`CALL_MARGIN`] (see
            /// [Timeouts](crate::manager#timeouts)); as [`acquire`](Self::acquire).
            pub fn acquire_timeout(
                &self,
                timeout: Duration,
            ) -> Result<Option<ManagerGuard<'_>>, ManagerError> {
                self.h.acquire(wait_of(timeout))
            }
            /// Releases one acquisition (Python's `release()`): for an acquisition
            /// whose guard was [`forget`](ManagerGuard::forget)-ed.
            ///
            /// # Errors
            ///
            /// [`ManagerError::Refused`] when there is nothing this thread may release
            /// (see the type's docs); as [`acquire`](Self::acquire).
            pub fn release(&self) -> Result<(), ManagerError> {
                self.h.unit(SyncReq::Release(self.h.id))
            }
        }
    };
}

/// An acquisition of a manager lock, semaphore or condition; dropping it releases it
/// (errors are ignored then; [`release`](ManagerGuard::release) reports them).
///
/// The acquisition belongs to the connection it was made on: if that connection failed
/// meanwhile, the server released it then, and the guard sends nothing (a `Lock` may be
/// released by anyone, so a release through a newer connection would free whoever holds
/// it now).
///
/// It is not `Send`: an acquisition belongs to the thread that made it (see the
/// [module docs](crate::manager#synchronisation-objects-and-queues)).
#[must_use = "the lock is released at once when the guard is dropped"]
pub struct ManagerGuard<'a> {
    h: &'a SyncHandle,
    /// the connection the acquisition was made on
    gen: u64,
    _not_send: PhantomData<*const ()>,
}

impl fmt::Debug for ManagerGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagerGuard")
            .field("id", &self.h.id)
            .finish()
    }
}

impl ManagerGuard<'_> {
    /// Releases now, reporting an error (a server gone).
    ///
    /// # Errors
    ///
    /// [`ManagerError::Disconnected`] when the server is gone.
    pub fn release(self) -> Result<(), ManagerError> {
        let (h, gen) = (self.h, self.gen);
        std::mem::forget(self);
        h.release_on(gen)
    }
    /// Keeps the acquisition without a guard (release it with the proxy's `release`).
    pub fn forget(self) {
        std::mem::forget(self);
    }
}

impl Drop for ManagerGuard<'_> {
    fn drop(&mut self) {
        let _ = self.h.release_on(self.gen);
    }
}

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
    h: SyncHandle,
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
    h: SyncHandle,
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
/// A bounded one ([`Manager::bounded_semaphore`]) refuses a `release` that would take
/// its value above the initial one ([`ManagerError::Refused`], Python's `ValueError`).
///
/// Acquisitions are recorded per connection (thread of a client process). A `release`
/// cancels one of the releaser's own acquisitions, or, when it has none (a semaphore
/// used as a signal between clients), one of another client's; when a connection closes,
/// the server gives back the acquisitions it still has. So a client that dies holding
/// units does not take them with it.
#[derive(Clone, Serialize, Deserialize)]
pub struct SharedSemaphore {
    h: SyncHandle,
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
    h: SyncHandle,
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

// ------------------------------------------------------------------ event, barrier

/// An event in a manager (Python's `Manager().Event()`): a flag that waiters wait to
/// see set.
#[derive(Clone, Serialize, Deserialize)]
pub struct SharedEvent {
    h: SyncHandle,
}
sync_proxy!(SharedEvent);

impl SharedEvent {
    /// Sets the flag: every waiter wakes.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Disconnected`] when the server is gone.
    pub fn set(&self) -> Result<(), ManagerError> {
        self.h.unit(SyncReq::Set(self.h.id))
    }
    /// Clears the flag.
    ///
    /// # Errors
    ///
    /// As [`set`](SharedEvent::set).
    pub fn clear(&self) -> Result<(), ManagerError> {
        self.h.unit(SyncReq::Clear(self.h.id))
    }
    /// Whether the flag is set.
    ///
    /// # Errors
    ///
    /// As [`set`](SharedEvent::set).
    pub fn is_set(&self) -> Result<bool, ManagerError> {
        self.h.bool(SyncReq::IsSet(self.h.id))
    }
    /// Waits until the flag is set.
    ///
    /// # Errors
    ///
    /// As [`set`](SharedEvent::set).
    pub fn wait(&self) -> Result<(), ManagerError> {
        self.h.bool(SyncReq::Wait(self.h.id, None)).map(drop)
    }
    /// Waits at most `timeout` (`Duration::MAX`: forever); whether the flag is set.
    ///
    /// # Errors
    ///
    /// As [`set`](SharedEvent::set).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool, ManagerError> {
        self.h.bool(SyncReq::Wait(self.h.id, wait_of(timeout)))
    }
}

/// A barrier in a manager (Python's `Manager().Barrier(parties)`): `wait` returns when
/// `parties` clients wait, each with a different arrival index in `0..parties`.
///
/// As Python's, it **breaks** ([`ManagerError::BrokenBarrier`] for current and later
/// waiters, until [`reset`](SharedBarrier::reset)) on [`abort`](SharedBarrier::abort),
/// when a wait times out, and — here — when a waiter's connection closes (its process
/// died), so the others do not wait for it forever.
#[derive(Clone, Serialize, Deserialize)]
pub struct SharedBarrier {
    h: SyncHandle,
}
sync_proxy!(SharedBarrier);

impl SharedBarrier {
    fn wait_for(&self, w: Wait) -> Result<usize, ManagerError> {
        match self.h.call(SyncReq::Wait(self.h.id, w))? {
            Resp::Count(i) => Ok(usize::try_from(i).unwrap_or(usize::MAX)),
            Resp::Broken => Err(ManagerError::BrokenBarrier),
            r => Err(unexpected(r)),
        }
    }
    fn state(&self) -> Result<(u64, u64, bool), ManagerError> {
        match self.h.call(SyncReq::BarrierState(self.h.id))? {
            Resp::Barrier(p, w, b) => Ok((p, w, b)),
            r => Err(unexpected(r)),
        }
    }
    /// Waits for the others; this client's arrival index.
    ///
    /// # Errors
    ///
    /// [`ManagerError::BrokenBarrier`] (see the type's docs);
    /// [`ManagerError::Disconnected`] when the server is gone.
    pub fn wait(&self) -> Result<usize, ManagerError> {
        self.wait_for(None)
    }
    /// Waits at most `timeout` (`Duration::MAX`: forever); a timeout breaks the barrier
    /// and is [`ManagerError::BrokenBarrier`].
    ///
    /// # Errors
    ///
    /// As [`wait`](SharedBarrier::wait).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<usize, ManagerError> {
        self.wait_for(wait_of(timeout))
    }
    /// Breaks it: current and later waiters get [`ManagerError::BrokenBarrier`].
    ///
    /// # Errors
    ///
    /// [`ManagerError::Disconnected`] when the server is gone.
    pub fn abort(&self) -> Result<(), ManagerError> {
        self.h.unit(SyncReq::Set(self.h.id))
    }
    /// Makes it usable again; clients waiting now get [`ManagerError::BrokenBarrier`].
    ///
    /// # Errors
    ///
    /// As [`abort`](SharedBarrier::abort).
    pub fn reset(&self) -> Result<(), ManagerError> {
        self.h.unit(SyncReq::Clear(self.h.id))
    }
    /// How many clients must wait.
    ///
    /// # Errors
    ///
    /// As [`abort`](SharedBarrier::abort).
    pub fn parties(&self) -> Result<usize, ManagerError> {
        Ok(self.state()?.0 as usize)
    }
    /// How many wait now.
    ///
    /// # Errors
    ///
    /// As [`abort`](SharedBarrier::abort).
    pub fn n_waiting(&self) -> Result<usize, ManagerError> {
        Ok(self.state()?.1 as usize)
    }
    /// Whether it is broken.
    ///
    /// # Errors
    ///
    /// As [`abort`](SharedBarrier::abort).
    pub fn is_broken(&self) -> Result<bool, ManagerError> {
        Ok(self.state()?.2)
    }
}

// ------------------------------------------------------------------ queues

macro_rules! queue_ops {
    ($t:ident) => {
        impl<T> fmt::Debug for $t<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($t))
                    .field("id", &self.h.id)
                    .finish_non_exhaustive()
            }
        }
        impl<T> Clone for $t<T> {
            fn clone(&self) -> Self {
                $t {
                    h: self.h.clone(),
                    _t: PhantomData,
                }
            }
        }
        impl<T> Serialize for $t<T> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                self.h.serialize(s)
            }
        }
        impl<'de, T> Deserialize<'de> for $t<T> {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                Ok($t {
                    h: SyncHandle::deserialize(d)?,
                    _t: PhantomData,
                })
            }
        }
        impl<T: Message> $t<T> {
            fn put_for(&self, x: T, w: Wait) -> Result<Result<(), T>, ManagerError> {
                let b = enc(&x)?;
                Ok(if self.h.bool(SyncReq::Put(self.h.id, b, w))? {
                    Ok(())
                } else {
                    Err(x)
                })
            }
            fn get_for(&self, w: Wait) -> Result<Option<T>, ManagerError> {
                match self.h.call(SyncReq::Get(self.h.id, w))? {
                    Resp::Opt(None) => Ok(None),
                    Resp::Opt(Some(b)) => Ok(Some(dec(&b)?)),
                    r => Err(unexpected(r)),
                }
            }
            /// Puts `x` at the end, waiting while a bounded queue is full.
            ///
            /// # Errors
            ///
            /// [`ManagerError::Disconnected`] when the server is gone; an encode error.
            pub fn put(&self, x: T) -> Result<(), ManagerError> {
                match self.put_for(x, None)? {
                    Ok(()) => Ok(()),
                    Err(_) => Err(ManagerError::Refused(
                        "a put without a deadline ended".into(),
                    )),
                }
            }
            /// Puts `x` if there is room now; `Ok(Err(x))` gives it back when the queue
            /// is full (Python's `queue.Full`).
            ///
            /// # Errors
            ///
            /// As [`put`](Self::put).
            pub fn try_put(&self, x: T) -> Result<Result<(), T>, ManagerError> {
                self.put_for(x, NOW)
            }
            /// Puts `x`, waiting at most `timeout` (`Duration::MAX`: forever) for room;
            /// `Ok(Err(x))` gives it back when the time ran out.
            ///
            /// # Errors
            ///
            /// [`ManagerError::Timeout`] when the server does not answer within
            /// `timeout` and [`CALL_MARGIN`] (the item may or may not be in the queue);
            /// as [`put`](Self::put).
            pub fn put_timeout(
                &self,
                x: T,
                timeout: Duration,
            ) -> Result<Result<(), T>, ManagerError> {
                self.put_for(x, wait_of(timeout))
            }
            /// Takes the first item, waiting while the queue is empty.
            ///
            /// # Errors
            ///
            /// As [`put`](Self::put); a decode error when the item is not a `T`.
            pub fn get(&self) -> Result<T, ManagerError> {
                self.get_for(None)?
                    .ok_or_else(|| ManagerError::Refused("a get without a deadline ended".into()))
            }
            /// Takes the first item if there is one now (`None`: Python's `queue.Empty`).
            ///
            /// # Errors
            ///
            /// As [`get`](Self::get).
            pub fn try_get(&self) -> Result<Option<T>, ManagerError> {
                self.get_for(NOW)
            }
            /// Takes the first item, waiting at most `timeout` (`Duration::MAX`:
            /// forever); `None` when the time ran out.
            ///
            /// # Errors
            ///
            /// [`ManagerError::Timeout`] when the server does not answer within
            /// `timeout` and [`CALL_MARGIN`] (the item, if one was taken, goes back to
            /// the front of the queue: see [Timeouts](crate::manager#timeouts)); as
            /// [`get`](Self::get).
            pub fn get_timeout(&self, timeout: Duration) -> Result<Option<T>, ManagerError> {
                self.get_for(wait_of(timeout))
            }
            /// How many items it holds (Python's `qsize()`).
            ///
            /// # Errors
            ///
            /// [`ManagerError::Disconnected`] when the server is gone.
            pub fn len(&self) -> Result<usize, ManagerError> {
                Ok(self.h.count(SyncReq::Len(self.h.id))? as usize)
            }
            /// Whether it is empty.
            ///
            /// # Errors
            ///
            /// As [`len`](Self::len).
            pub fn is_empty(&self) -> Result<bool, ManagerError> {
                Ok(self.len()? == 0)
            }
        }
    };
}

/// A FIFO queue in a manager (Python's `Manager().Queue(maxsize)`), unbounded
/// ([`Manager::queue`]) or bounded ([`Manager::queue_bounded`]).
///
/// Items live in the server as their CBOR encoding, so the queue reaches other hosts
/// (unlike the shared-memory [`Queue`](crate::Queue)), at a round trip per operation.
/// A `get` that waits occupies its thread's connection only; other clients are served.
/// An item taken for a client whose answer cannot be written (it died, froze, or its
/// call timed out) is put back at the front of the queue (Python loses it); over TCP,
/// an answer the kernel accepted for a peer that vanished afterwards is still lost.
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
///     let q = mgr.queue_bounded::<String>(1).unwrap();
///     q.put("a".into()).unwrap();
///     assert_eq!(q.try_put("b".into()).unwrap(), Err("b".to_string()));
///     assert_eq!(q.get().unwrap(), "a");
///     assert_eq!(q.get_timeout(Duration::from_millis(10)).unwrap(), None);
/// }
/// ```
pub struct SharedQueue<T> {
    h: SyncHandle,
    _t: PhantomData<Invariant<T>>,
}
queue_ops!(SharedQueue);

/// A [`SharedQueue`] that counts unfinished items (Python's
/// `Manager().JoinableQueue()`): every `put` adds one, [`task_done`] takes one away,
/// and [`join`] waits until none is left.
///
/// [`task_done`]: SharedJoinableQueue::task_done
/// [`join`]: SharedJoinableQueue::join
pub struct SharedJoinableQueue<T> {
    h: SyncHandle,
    _t: PhantomData<Invariant<T>>,
}
queue_ops!(SharedJoinableQueue);

impl<T: Message> SharedJoinableQueue<T> {
    /// One item taken out is done.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Refused`] when called more times than items were put (Python's
    /// `ValueError`); [`ManagerError::Disconnected`] when the server is gone.
    pub fn task_done(&self) -> Result<(), ManagerError> {
        self.h.unit(SyncReq::TaskDone(self.h.id))
    }
    /// Waits until every item put is done.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Disconnected`] when the server is gone.
    pub fn join(&self) -> Result<(), ManagerError> {
        self.h.bool(SyncReq::Wait(self.h.id, None)).map(drop)
    }
    /// As [`join`](SharedJoinableQueue::join), at most `timeout` (`Duration::MAX`:
    /// forever).
    ///
    /// # Errors
    ///
    /// [`ManagerError::JoinTimeout`] when items were still unfinished then (the crate-wide
    /// `join_timeout` convention: `Ok` with what `join` returns, see
    /// [`error`](crate::error)); otherwise as [`join`](SharedJoinableQueue::join).
    pub fn join_timeout(&self, timeout: Duration) -> Result<(), ManagerError> {
        if self.h.bool(SyncReq::Wait(self.h.id, wait_of(timeout)))? {
            Ok(())
        } else {
            Err(crate::JoinTimeoutError.into())
        }
    }
}

// ------------------------------------------------------------------ value, array

/// One value in a manager (Python's `Manager().Value(typecode, v)`): `get` and `set`,
/// one round trip each, over the fast local path like a dict.
///
/// Like Python's manager `Value`, it has no lock: a read-modify-write from several
/// clients needs a [`SharedLock`] around it.
pub struct SharedValue<T> {
    h: Handle,
    _t: PhantomData<Invariant<T>>,
}
proxy_common!(SharedValue<T>);

impl<T: Message> SharedValue<T> {
    /// The value now.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Disconnected`] when the server is gone; a decode error.
    pub fn get(&self) -> Result<T, ManagerError> {
        match self.h.call(Req::VGet(self.h.id))? {
            Resp::One(b) => dec(&b),
            r => Err(unexpected(r)),
        }
    }
    /// Replaces the value.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Disconnected`] when the server is gone; an encode error.
    pub fn set(&self, v: T) -> Result<(), ManagerError> {
        self.h.unit(Req::VSet(self.h.id, enc(&v)?))
    }
}

/// A fixed-length array in a manager (Python's `Manager().Array(typecode, seq)`): item
/// `get`/`set`, one round trip each.
pub struct SharedArray<T> {
    h: Handle,
    _t: PhantomData<Invariant<T>>,
}
proxy_common!(SharedArray<T>);

impl<T: Message> SharedArray<T> {
    /// Item `i`, `None` out of range.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Disconnected`] when the server is gone; a decode error.
    pub fn get(&self, i: usize) -> Result<Option<T>, ManagerError> {
        self.h.opt(Req::LGet(self.h.id, i as u64))
    }
    /// Replaces item `i`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Refused`] out of range (Python's `IndexError`); as
    /// [`get`](SharedArray::get).
    pub fn set(&self, i: usize, v: T) -> Result<(), ManagerError> {
        self.h.unit(Req::LSet(self.h.id, i as u64, enc(&v)?))
    }
    /// Its length.
    ///
    /// # Errors
    ///
    /// As [`get`](SharedArray::get).
    pub fn len(&self) -> Result<usize, ManagerError> {
        self.h.count()
    }
    /// Whether its length is 0.
    ///
    /// # Errors
    ///
    /// As [`get`](SharedArray::get).
    pub fn is_empty(&self) -> Result<bool, ManagerError> {
        Ok(self.len()? == 0)
    }
    /// A snapshot as a local `Vec` (Python's `a[:]`).
    ///
    /// # Errors
    ///
    /// As [`get`](SharedArray::get).
    pub fn to_vec(&self) -> Result<Vec<T>, ManagerError> {
        self.h.many(Req::LAll(self.h.id))
    }
}

// ------------------------------------------------------------------ Manager

impl Manager {
    fn new_sync(
        &self,
        kind: SyncKind,
        name: Option<&str>,
        n: u64,
    ) -> Result<SyncHandle, ManagerError> {
        let (link, holder) = self.link()?;
        let (address, key) = self.client.target();
        let r = sync_call(
            &address,
            &key,
            SyncReq::New(kind, name.map(str::to_string), n, holder),
        )?;
        match r {
            Resp::Id(id) => Ok(SyncHandle {
                address,
                key,
                id,
                _ref: Ref::counted(link, (Space::Sync, id)),
            }),
            r => Err(unexpected(r)),
        }
    }

    fn new_with(
        &self,
        kind: Kind,
        name: Option<&str>,
        init: Vec<Bytes>,
    ) -> Result<Handle, ManagerError> {
        self.new_with_init(kind, name, Some(init))
    }

    /// A new lock ([`SharedLock`], Python's `Manager().Lock()`).
    ///
    /// # Errors
    ///
    /// [`ManagerError::Disconnected`] when the server is gone.
    pub fn lock(&self) -> Result<SharedLock, ManagerError> {
        Ok(SharedLock {
            h: self.new_sync(SyncKind::Lock, None, 0)?,
        })
    }
    /// The lock called `name`, made if it does not exist yet: how another client finds
    /// it.
    ///
    /// # Errors
    ///
    /// As [`lock`](Manager::lock).
    pub fn lock_named(&self, name: &str) -> Result<SharedLock, ManagerError> {
        Ok(SharedLock {
            h: self.new_sync(SyncKind::Lock, Some(name), 0)?,
        })
    }
    /// A new re-entrant lock ([`SharedRLock`]).
    ///
    /// # Errors
    ///
    /// As [`lock`](Manager::lock).
    pub fn rlock(&self) -> Result<SharedRLock, ManagerError> {
        Ok(SharedRLock {
            h: self.new_sync(SyncKind::RLock, None, 0)?,
        })
    }
    /// The re-entrant lock called `name` (get or make).
    ///
    /// # Errors
    ///
    /// As [`lock`](Manager::lock).
    pub fn rlock_named(&self, name: &str) -> Result<SharedRLock, ManagerError> {
        Ok(SharedRLock {
            h: self.new_sync(SyncKind::RLock, Some(name), 0)?,
        })
    }
    /// A new semaphore with value `n` ([`SharedSemaphore`]).
    ///
    /// # Errors
    ///
    /// As [`lock`](Manager::lock).
    pub fn semaphore(&self, n: u32) -> Result<SharedSemaphore, ManagerError> {
        Ok(SharedSemaphore {
            h: self.new_sync(SyncKind::Semaphore, None, n.into())?,
        })
    }
    /// The semaphore called `name` (get, or make with value `n`).
    ///
    /// # Errors
    ///
    /// As [`lock`](Manager::lock).
    pub fn semaphore_named(&self, name: &str, n: u32) -> Result<SharedSemaphore, ManagerError> {
        Ok(SharedSemaphore {
            h: self.new_sync(SyncKind::Semaphore, Some(name), n.into())?,
        })
    }
    /// A new bounded semaphore with value `n`: a release above `n` is refused.
    ///
    /// # Errors
    ///
    /// As [`lock`](Manager::lock).
    pub fn bounded_semaphore(&self, n: u32) -> Result<SharedSemaphore, ManagerError> {
        Ok(SharedSemaphore {
            h: self.new_sync(SyncKind::BoundedSemaphore, None, n.into())?,
        })
    }
    /// The bounded semaphore called `name` (get, or make with value `n`).
    ///
    /// # Errors
    ///
    /// As [`lock`](Manager::lock).
    pub fn bounded_semaphore_named(
        &self,
        name: &str,
        n: u32,
    ) -> Result<SharedSemaphore, ManagerError> {
        Ok(SharedSemaphore {
            h: self.new_sync(SyncKind::BoundedSemaphore, Some(name), n.into())?,
        })
    }
    /// A new condition with its own re-entrant lock ([`SharedCondition`]).
    ///
    /// # Errors
    ///
    /// As [`lock`](Manager::lock).
    pub fn condition(&self) -> Result<SharedCondition, ManagerError> {
        Ok(SharedCondition {
            h: self.new_sync(SyncKind::Condition, None, 0)?,
        })
    }
    /// The condition called `name` (get or make).
    ///
    /// # Errors
    ///
    /// As [`lock`](Manager::lock).
    pub fn condition_named(&self, name: &str) -> Result<SharedCondition, ManagerError> {
        Ok(SharedCondition {
            h: self.new_sync(SyncKind::Condition, Some(name), 0)?,
        })
    }
    /// A new event, not set ([`SharedEvent`]).
    ///
    /// # Errors
    ///
    /// As [`lock`](Manager::lock).
    pub fn event(&self) -> Result<SharedEvent, ManagerError> {
        Ok(SharedEvent {
            h: self.new_sync(SyncKind::Event, None, 0)?,
        })
    }
    /// The event called `name` (get or make).
    ///
    /// # Errors
    ///
    /// As [`lock`](Manager::lock).
    pub fn event_named(&self, name: &str) -> Result<SharedEvent, ManagerError> {
        Ok(SharedEvent {
            h: self.new_sync(SyncKind::Event, Some(name), 0)?,
        })
    }
    /// A new barrier for `parties` clients ([`SharedBarrier`]).
    ///
    /// # Errors
    ///
    /// [`ManagerError::Refused`] for 0 parties; as [`lock`](Manager::lock).
    pub fn barrier(&self, parties: usize) -> Result<SharedBarrier, ManagerError> {
        Ok(SharedBarrier {
            h: self.new_sync(SyncKind::Barrier, None, parties as u64)?,
        })
    }
    /// The barrier called `name` (get, or make for `parties`).
    ///
    /// # Errors
    ///
    /// As [`barrier`](Manager::barrier).
    pub fn barrier_named(&self, name: &str, parties: usize) -> Result<SharedBarrier, ManagerError> {
        Ok(SharedBarrier {
            h: self.new_sync(SyncKind::Barrier, Some(name), parties as u64)?,
        })
    }
    /// A new unbounded queue ([`SharedQueue`]).
    ///
    /// # Errors
    ///
    /// As [`lock`](Manager::lock).
    pub fn queue<T: Message>(&self) -> Result<SharedQueue<T>, ManagerError> {
        self.queue_bounded(0)
    }
    /// A new queue holding at most `maxsize` items (0: unbounded, as Python's).
    ///
    /// # Errors
    ///
    /// As [`lock`](Manager::lock).
    pub fn queue_bounded<T: Message>(
        &self,
        maxsize: usize,
    ) -> Result<SharedQueue<T>, ManagerError> {
        Ok(SharedQueue {
            h: self.new_sync(SyncKind::Queue, None, maxsize as u64)?,
            _t: PhantomData,
        })
    }
    /// The queue called `name` (get, or make with `maxsize`, 0: unbounded).
    ///
    /// # Errors
    ///
    /// As [`lock`](Manager::lock).
    pub fn queue_named<T: Message>(
        &self,
        name: &str,
        maxsize: usize,
    ) -> Result<SharedQueue<T>, ManagerError> {
        Ok(SharedQueue {
            h: self.new_sync(SyncKind::Queue, Some(name), maxsize as u64)?,
            _t: PhantomData,
        })
    }
    /// A new unbounded joinable queue ([`SharedJoinableQueue`]).
    ///
    /// # Errors
    ///
    /// As [`lock`](Manager::lock).
    pub fn joinable_queue<T: Message>(&self) -> Result<SharedJoinableQueue<T>, ManagerError> {
        Ok(SharedJoinableQueue {
            h: self.new_sync(SyncKind::JoinableQueue, None, 0)?,
            _t: PhantomData,
        })
    }
    /// The joinable queue called `name` (get, or make with `maxsize`, 0: unbounded).
    ///
    /// # Errors
    ///
    /// As [`lock`](Manager::lock).
    pub fn joinable_queue_named<T: Message>(
        &self,
        name: &str,
        maxsize: usize,
    ) -> Result<SharedJoinableQueue<T>, ManagerError> {
        Ok(SharedJoinableQueue {
            h: self.new_sync(SyncKind::JoinableQueue, Some(name), maxsize as u64)?,
            _t: PhantomData,
        })
    }
    /// A new value holding `v` ([`SharedValue`]).
    ///
    /// # Errors
    ///
    /// As [`lock`](Manager::lock); an encode error.
    pub fn value<T: Message>(&self, v: T) -> Result<SharedValue<T>, ManagerError> {
        Ok(SharedValue {
            h: self.new_with(Kind::Value, None, vec![enc(&v)?])?,
            _t: PhantomData,
        })
    }
    /// The value called `name`: made holding `v` if it does not exist yet (else `v` is
    /// not used).
    ///
    /// # Errors
    ///
    /// As [`value`](Manager::value).
    pub fn value_named<T: Message>(
        &self,
        name: &str,
        v: T,
    ) -> Result<SharedValue<T>, ManagerError> {
        Ok(SharedValue {
            h: self.new_with(Kind::Value, Some(name), vec![enc(&v)?])?,
            _t: PhantomData,
        })
    }
    /// A new array holding `items` ([`SharedArray`]); its length is fixed.
    ///
    /// # Errors
    ///
    /// As [`value`](Manager::value).
    pub fn array<T: Message>(
        &self,
        items: impl IntoIterator<Item = T>,
    ) -> Result<SharedArray<T>, ManagerError> {
        let init: Result<Vec<Bytes>, ManagerError> = items.into_iter().map(|x| enc(&x)).collect();
        Ok(SharedArray {
            h: self.new_with(Kind::Array, None, init?)?,
            _t: PhantomData,
        })
    }
    /// The array called `name`: made holding `items` if it does not exist yet (else
    /// `items` are not used).
    ///
    /// # Errors
    ///
    /// As [`value`](Manager::value).
    pub fn array_named<T: Message>(
        &self,
        name: &str,
        items: impl IntoIterator<Item = T>,
    ) -> Result<SharedArray<T>, ManagerError> {
        let init: Result<Vec<Bytes>, ManagerError> = items.into_iter().map(|x| enc(&x)).collect();
        Ok(SharedArray {
            h: self.new_with(Kind::Array, Some(name), init?)?,
            _t: PhantomData,
        })
    }
}
