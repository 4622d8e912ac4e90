//! The proxies of a manager's synchronisation objects, queues, values and arrays, and
//! the [`Manager`] methods that make them.
//!
//! See the parent module's docs for how they connect and who owns a lock.

use super::calls::{open_session_until, round_trip};
use super::client::CallTimeout;
use super::objects::{SyncReq, Wait};
use super::refs::{self, Ref, Space};
use super::wire::Session;
use super::{as_bool, as_count, as_unit, unexpected, Req, Resp};
use super::{ManagerError, CALL_MARGIN};
use crate::Bytes;
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
    /// The manager's call timeout, which bounds the calls that do not wait (see
    /// [`call_deadline`]); shared with the [`Manager`](super::Manager) that made it.
    timeout: Arc<CallTimeout>,
}

impl Serialize for SyncHandle {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // the encoding holds a reference of its own (see `refs`)
        let token = self._ref.lend().map_err(serde::ser::Error::custom)?;
        // (with the call timeout in force, as a dict's proxy travels)
        let t = self.timeout.micros();
        (&self.address, &self.key, self.id, token, t).serialize(s)
    }
}

impl<'de> Deserialize<'de> for SyncHandle {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (address, key, id, token, t): (String, Bytes, u64, u64, Option<u64>) =
            Deserialize::deserialize(d)?;
        let link = refs::link(&address, &key);
        Ok(SyncHandle {
            address,
            key,
            id,
            _ref: Ref::claimed(link, (Space::Sync, id), token),
            timeout: Arc::new(CallTimeout::new(t)),
        })
    }
}

impl SyncHandle {
    /// One request over this thread's connection; heartbeats are skipped. A failure
    /// that leaves the connection out of step closes it (the server then releases what
    /// it held).
    fn call(&self, req: SyncReq) -> Result<Resp, ManagerError> {
        sync_call(&self.address, &self.key, req, self.timeout.get())
    }

    fn unit(&self, req: SyncReq) -> Result<(), ManagerError> {
        as_unit(self.call(req)?)
    }

    fn bool(&self, req: SyncReq) -> Result<bool, ManagerError> {
        as_bool(self.call(req)?)
    }

    fn count(&self, req: SyncReq) -> Result<u64, ManagerError> {
        as_count(self.call(req)?)
    }

    fn acquire(&self, w: Wait) -> Result<Option<ManagerGuard<'_>>, ManagerError> {
        let (r, gen) = sync_call_on(
            &self.address,
            &self.key,
            SyncReq::Acquire(self.id, w),
            None,
            None,
        )?
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
            self.timeout.get(),
        )? {
            None | Some((Resp::Unit, _)) => Ok(()),
            Some((r, _)) => Err(unexpected(r)),
        }
    }
}

/// One request over this thread's connection to the manager at `address`; a request
/// that does not wait gives up after `call_timeout` (see [`call_deadline`]).
fn sync_call(
    address: &str,
    key: &Bytes,
    req: SyncReq,
    call_timeout: Option<Duration>,
) -> Result<Resp, ManagerError> {
    let (r, _) =
        sync_call_on(address, key, req, None, call_timeout)?.ok_or(ManagerError::Disconnected)?;
    Ok(r)
}

/// The deadline of request `req`, from now:
///
/// - one that waits at most `w` at the server: `w` and [`CALL_MARGIN`](crate::manager::CALL_MARGIN);
/// - one that may wait without limit (`acquire`, `get`, `wait`): none, heartbeats tell
///   a waiting server from a vanished one;
/// - one that does not wait (`release`, `set`, `len`, `is_set`, …): the manager's call
///   timeout when it has one, else [`CALL_MARGIN`](crate::manager::CALL_MARGIN), so a frozen server cannot hold it
///   up for the 30 s a silent server is given;
/// - making an object: the manager's call timeout, as for a dict (none by default).
fn call_deadline(req: &SyncReq, call_timeout: Option<Duration>) -> Option<Instant> {
    let w = match (req.blocks(), req.wait()) {
        (true, None) => return None,
        (true, Some(w)) => Duration::from_micros(w).checked_add(CALL_MARGIN)?,
        _ if matches!(req, SyncReq::New(..)) => call_timeout?,
        (false, _) => call_timeout.unwrap_or(CALL_MARGIN),
    };
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
    call_timeout: Option<Duration>,
) -> Result<Option<(Resp, u64)>, ManagerError> {
    let deadline = call_deadline(&req, call_timeout);
    let mut c = match (take_conn(address, key), only_on) {
        (Some(c), Some(gen)) if c.gen != gen => {
            put_back(c);
            return Ok(None);
        }
        (None, Some(_)) => return Ok(None),
        (Some(c), _) => c,
        (None, None) => {
            let s = open_session_until(&Address::parse(address), key, deadline)?;
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
            /// [`CALL_MARGIN`](crate::manager::CALL_MARGIN) (see [Timeouts](crate::manager#timeouts)); as
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
            /// `timeout` and [`CALL_MARGIN`](crate::manager::CALL_MARGIN) (see
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

mod asynch;
mod locks;
mod make;
mod queues;
mod signals;
mod values;

pub use asynch::ManagerAsyncGuard;
pub use locks::{SharedCondition, SharedLock, SharedRLock, SharedSemaphore};
pub use queues::{SharedJoinableQueue, SharedQueue};
pub use signals::{SharedBarrier, SharedEvent};
pub use values::{SharedArray, SharedValue};
