//! The `_async` operations of the synchronisation objects and queues, and the guard of
//! an async acquisition. They go over this process's multiplexed connection to the
//! manager (see the parent module's `asynch`): no thread waits for them, here or at
//! the server.

use super::super::asynch::{self, Mux};
use super::super::objects::SyncReq;
use super::super::{as_bool, as_unit, dec, enc, resp_result, unexpected};
use super::super::{ManagerError, MuxReq, Resp};
use super::{call_deadline, SharedBarrier, SharedCondition, SharedEvent, SharedJoinableQueue};
use super::{SharedLock, SharedQueue, SharedRLock, SharedSemaphore, SyncHandle};
use crate::Message;
use std::fmt;
use std::sync::Arc;

impl SyncHandle {
    /// Request `req` on behalf of `owner` (0: nobody in particular) on the multiplexed
    /// connection `mux`. A request that waits has no deadline (the caller's runtime
    /// times it out by dropping it; the server's silence for 30 s ends it); one that
    /// does not is bounded as the blocking calls are ([`call_deadline`]).
    async fn call_on(
        &self,
        mux: &Arc<Mux>,
        owner: u64,
        req: SyncReq,
    ) -> Result<Resp, ManagerError> {
        let deadline = if req.blocks() {
            None
        } else {
            call_deadline(&req, self.timeout.get())
        };
        let put_back = match &req {
            SyncReq::Get(id, _) => Some(*id),
            _ => None,
        };
        resp_result(
            mux.call(move |_| MuxReq::Sync(owner, req), deadline, put_back, false)
                .await?,
        )
    }

    async fn call_async(&self, req: SyncReq) -> Result<Resp, ManagerError> {
        let mux = asynch::mux(&self.address, &self.key)?;
        self.call_on(&mux, 0, req).await
    }

    async fn unit_async(&self, req: SyncReq) -> Result<(), ManagerError> {
        as_unit(self.call_async(req).await?)
    }

    async fn bool_async(&self, req: SyncReq) -> Result<bool, ManagerError> {
        as_bool(self.call_async(req).await?)
    }

    /// An acquisition owned by a new owner (its request's tag), kept by the guard.
    async fn acquire_async(&self) -> Result<ManagerAsyncGuard, ManagerError> {
        let mux = asynch::mux(&self.address, &self.key)?;
        let id = self.id;
        let call = mux.call(
            move |tag| MuxReq::Sync(tag, SyncReq::Acquire(id, None)),
            None,
            None,
            true,
        );
        let (owner, mux) = (call.tag(), call.mux().clone());
        // (dropped before it completes, the call withdraws the request and ends the
        // owner itself)
        match call.await? {
            Resp::Bool(true) => Ok(ManagerAsyncGuard { mux, owner, id }),
            r => {
                let _ = mux.tell(MuxReq::End(owner));
                match resp_result(r) {
                    Ok(r) => Err(unexpected(r)),
                    Err(e) => Err(e),
                }
            }
        }
    }
}

/// An async acquisition of a manager lock, re-entrant lock, semaphore or condition
/// ([`SharedLock::acquire_async`] and its kin); dropping it releases it.
///
/// Unlike a [`ManagerGuard`](super::ManagerGuard), it is `Send` (a task may move
/// between threads) and belongs to no thread: the server ties the acquisition to the
/// guard's own **owner** number on this process's async connection to the manager, so
/// each `acquire_async` is a separate owner. A [`SharedRLock`] acquired through
/// `acquire_async` is therefore not re-entered by a second `acquire_async` (that one
/// waits for the first guard to go), and a blocking `acquire` of the same lock in
/// the same thread waits for it too.
///
/// Releasing (a drop, or [`release`](ManagerAsyncGuard::release)) sends the release and
/// does not wait for the server: it is applied before any later request of this
/// process's async calls to that manager (they share the connection, in order), and
/// within a round trip for everyone else. If the connection failed meanwhile (the
/// server was gone, or sent nothing for 30 s while a call on it waited), the server
/// released the acquisition then, and nothing is sent. Another call on the connection
/// that times out (its own deadline) does not touch the acquisition: that call alone
/// is given up.
#[must_use = "the lock is released at once when the guard is dropped"]
pub struct ManagerAsyncGuard {
    mux: Arc<Mux>,
    owner: u64,
    /// the object it holds
    id: u64,
}

impl fmt::Debug for ManagerAsyncGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagerAsyncGuard")
            .field("id", &self.id)
            .field("owner", &self.owner)
            .finish()
    }
}

impl ManagerAsyncGuard {
    /// Releases now (as dropping it does), reporting whether the release could be sent.
    /// It never waits for the socket: to a server that does not read, it is queued
    /// behind what the socket holds, in order, and written once the server reads.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Disconnected`] when the connection it was made on is gone (the
    /// server released the acquisition then).
    pub fn release(self) -> Result<(), ManagerError> {
        // (a connection given up is reported as gone whatever ended it: what matters
        // here is that the server released the acquisition)
        let r = self.mux.tell(MuxReq::End(self.owner)).map_err(|e| match e {
            ManagerError::Timeout => ManagerError::Disconnected,
            e => e,
        });
        std::mem::forget(self);
        r
    }
}

impl Drop for ManagerAsyncGuard {
    fn drop(&mut self) {
        // (a connection given up sends nothing: the server released it when it closed)
        let _ = self.mux.tell(MuxReq::End(self.owner));
    }
}

/// The async acquire, the same for every lock-like proxy.
macro_rules! acquire_async {
    ($t:ident) => {
        impl $t {
            /// As [`acquire`](Self::acquire), as a future: waits for it without
            /// blocking a thread, on any executor (tokio, `futures::executor::block_on`,
            /// …); the guard releases it when dropped. For a timeout, wrap it in the
            /// runtime's own (`tokio::time::timeout`).
            ///
            /// The request is parked at the server until it can be granted, so
            /// thousands of pending `acquire_async` futures cost no thread, here or
            /// there (see [`ManagerAsyncGuard`] for who owns the acquisition). The first
            /// async call of a process to a manager opens its async connection (a
            /// handshake of at most 3 s, in the calling thread).
            ///
            /// # Cancel safety
            ///
            /// Cancel safe: a dropped future holds nothing. If it is dropped while it
            /// waits, its request is withdrawn; if the server granted it just before,
            /// the acquisition is released as the future drops (its owner is ended).
            ///
            /// # Errors
            ///
            /// [`ManagerError::Disconnected`] when the server is gone (a pending
            /// future ends with it as soon as the connection breaks) or has not been
            /// heard from for 30 s (see [Timeouts](crate::manager#timeouts)); another
            /// call on the same connection that times out does not end it.
            pub async fn acquire_async(&self) -> Result<ManagerAsyncGuard, ManagerError> {
                self.h.acquire_async().await
            }
        }
    };
}

acquire_async!(SharedLock);
acquire_async!(SharedRLock);
acquire_async!(SharedSemaphore);
acquire_async!(SharedCondition);

macro_rules! is_locked_async {
    ($t:ident) => {
        impl $t {
            /// As [`is_locked`](Self::is_locked), as a future.
            ///
            /// # Cancel safety
            ///
            /// Cancel safe (it changes nothing).
            ///
            /// # Errors
            ///
            /// As [`is_locked`](Self::is_locked); [`ManagerError::Timeout`] as the
            /// blocking call.
            pub async fn is_locked_async(&self) -> Result<bool, ManagerError> {
                self.h.bool_async(SyncReq::IsSet(self.h.id)).await
            }
        }
    };
}

is_locked_async!(SharedLock);
is_locked_async!(SharedRLock);

impl SharedSemaphore {
    /// As [`value`](SharedSemaphore::value), as a future.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe (it changes nothing).
    ///
    /// # Errors
    ///
    /// As [`value`](SharedSemaphore::value).
    pub async fn value_async(&self) -> Result<u64, ManagerError> {
        match self.h.call_async(SyncReq::Value(self.h.id)).await? {
            Resp::Count(n) => Ok(n),
            r => Err(unexpected(r)),
        }
    }
}

impl SharedCondition {
    /// `Refused` unless `guard` is an acquisition of this condition: the same object
    /// of the same manager (another manager's objects are numbered alike).
    fn check_guard(&self, guard: &ManagerAsyncGuard) -> Result<(), ManagerError> {
        if guard.id != self.h.id || !guard.mux.serves(&self.h.address, &self.h.key) {
            return Err(ManagerError::Refused(
                "the guard is not an acquisition of this condition".into(),
            ));
        }
        Ok(())
    }

    /// As [`wait`](SharedCondition::wait), as a future, for the lock held by `guard`
    /// (from this condition's [`acquire_async`](SharedCondition::acquire_async)): the
    /// lock is released while it waits for a notification and taken back (for the
    /// same owner) before it completes; the guard comes back with it.
    ///
    /// # Cancel safety
    ///
    /// The guard moves into the future: dropping the future drops the guard, so a
    /// dropped wait never holds the lock, whichever phase it was in; a notification
    /// it had received already goes to the next waiter (as when a waiter's client
    /// leaves).
    ///
    /// # Errors
    ///
    /// [`ManagerError::Refused`] when `guard` is not an acquisition of this condition
    /// (another object, or an object of another manager: the guard must come from a
    /// handle that reaches the manager by the same address as this one); otherwise as [`acquire_async`](SharedCondition::acquire_async). The guard is
    /// dropped (released) with the error.
    pub async fn wait_async(
        &self,
        guard: ManagerAsyncGuard,
    ) -> Result<ManagerAsyncGuard, ManagerError> {
        self.check_guard(&guard)?;
        let r = self
            .h
            .call_on(&guard.mux, guard.owner, SyncReq::Wait(self.h.id, None))
            .await?;
        match r {
            Resp::Bool(true) => Ok(guard),
            Resp::Bool(false) => Err(ManagerError::Disconnected),
            r => Err(unexpected(r)),
        }
    }

    /// As [`notify`](SharedCondition::notify), as a future, by the holder of `guard`.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future may or may not have notified (the request may be on its
    /// way); it never holds anything.
    ///
    /// # Errors
    ///
    /// As [`wait_async`](SharedCondition::wait_async).
    pub async fn notify_async(
        &self,
        guard: &ManagerAsyncGuard,
        n: usize,
    ) -> Result<(), ManagerError> {
        self.check_guard(guard)?;
        let n = u64::try_from(n).unwrap_or(u64::MAX);
        match self
            .h
            .call_on(&guard.mux, guard.owner, SyncReq::Notify(self.h.id, n))
            .await?
        {
            Resp::Unit => Ok(()),
            r => Err(unexpected(r)),
        }
    }

    /// As [`notify_all`](SharedCondition::notify_all), as a future, by the holder of
    /// `guard`.
    ///
    /// # Cancel safety
    ///
    /// As [`notify_async`](SharedCondition::notify_async).
    ///
    /// # Errors
    ///
    /// As [`wait_async`](SharedCondition::wait_async).
    pub async fn notify_all_async(&self, guard: &ManagerAsyncGuard) -> Result<(), ManagerError> {
        self.notify_async(guard, usize::MAX).await
    }
}

impl SharedEvent {
    /// As [`wait`](SharedEvent::wait), as a future: completes once the flag is set,
    /// without blocking a thread (the request is parked at the server). For a timeout,
    /// wrap it in the runtime's own.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping it withdraws the wait and changes nothing.
    ///
    /// # Errors
    ///
    /// As [`SharedLock::acquire_async`].
    ///
    /// # Examples
    ///
    /// ```
    /// use procactor::Manager;
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
    ///
    /// fn main() {
    ///     procactor::init();
    ///     let mgr = Manager::start().unwrap();
    ///     let e = mgr.event().unwrap();
    ///     let e2 = e.clone();
    ///     let t = std::thread::spawn(move || e2.set().unwrap());
    ///     block_on(e.wait_async()).unwrap();
    ///     assert!(block_on(e.is_set_async()).unwrap());
    ///     t.join().unwrap();
    /// }
    /// ```
    pub async fn wait_async(&self) -> Result<(), ManagerError> {
        self.h
            .bool_async(SyncReq::Wait(self.h.id, None))
            .await
            .and_then(|set| {
                if set {
                    Ok(())
                } else {
                    Err(ManagerError::Disconnected)
                }
            })
    }
    /// As [`set`](SharedEvent::set), as a future.
    ///
    /// # Cancel safety
    ///
    /// Dropping it may or may not have set the flag.
    ///
    /// # Errors
    ///
    /// As [`set`](SharedEvent::set).
    pub async fn set_async(&self) -> Result<(), ManagerError> {
        self.h.unit_async(SyncReq::Set(self.h.id)).await
    }
    /// As [`clear`](SharedEvent::clear), as a future.
    ///
    /// # Cancel safety
    ///
    /// Dropping it may or may not have cleared the flag.
    ///
    /// # Errors
    ///
    /// As [`set`](SharedEvent::set).
    pub async fn clear_async(&self) -> Result<(), ManagerError> {
        self.h.unit_async(SyncReq::Clear(self.h.id)).await
    }
    /// As [`is_set`](SharedEvent::is_set), as a future.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe (it changes nothing).
    ///
    /// # Errors
    ///
    /// As [`set`](SharedEvent::set).
    pub async fn is_set_async(&self) -> Result<bool, ManagerError> {
        self.h.bool_async(SyncReq::IsSet(self.h.id)).await
    }
}

impl SharedBarrier {
    /// As [`wait`](SharedBarrier::wait), as a future: this client's arrival index once
    /// `parties` clients wait.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe, as Python's barrier is not: dropping the future while it waits
    /// **breaks the barrier** (as a waiter that times out or goes away does), so the
    /// other waiters get [`ManagerError::BrokenBarrier`] instead of waiting for a party
    /// that left. Dropped after the barrier opened, it changes nothing.
    ///
    /// # Errors
    ///
    /// [`ManagerError::BrokenBarrier`]; otherwise as [`SharedLock::acquire_async`].
    pub async fn wait_async(&self) -> Result<usize, ManagerError> {
        match self.h.call_async(SyncReq::Wait(self.h.id, None)).await? {
            Resp::Count(i) => Ok(usize::try_from(i).unwrap_or(usize::MAX)),
            Resp::Broken => Err(ManagerError::BrokenBarrier),
            r => Err(unexpected(r)),
        }
    }
    /// As [`abort`](SharedBarrier::abort), as a future.
    ///
    /// # Cancel safety
    ///
    /// Dropping it may or may not have broken the barrier.
    ///
    /// # Errors
    ///
    /// As [`abort`](SharedBarrier::abort).
    pub async fn abort_async(&self) -> Result<(), ManagerError> {
        self.h.unit_async(SyncReq::Set(self.h.id)).await
    }
    /// As [`reset`](SharedBarrier::reset), as a future.
    ///
    /// # Cancel safety
    ///
    /// Dropping it may or may not have reset the barrier.
    ///
    /// # Errors
    ///
    /// As [`reset`](SharedBarrier::reset).
    pub async fn reset_async(&self) -> Result<(), ManagerError> {
        self.h.unit_async(SyncReq::Clear(self.h.id)).await
    }
    async fn state_async(&self) -> Result<(u64, u64, bool), ManagerError> {
        match self.h.call_async(SyncReq::BarrierState(self.h.id)).await? {
            Resp::Barrier(p, w, b) => Ok((p, w, b)),
            r => Err(unexpected(r)),
        }
    }
    /// As [`parties`](SharedBarrier::parties), as a future.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe (it changes nothing).
    ///
    /// # Errors
    ///
    /// As [`parties`](SharedBarrier::parties).
    pub async fn parties_async(&self) -> Result<usize, ManagerError> {
        Ok(self.state_async().await?.0 as usize)
    }
    /// As [`n_waiting`](SharedBarrier::n_waiting), as a future.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe (it changes nothing).
    ///
    /// # Errors
    ///
    /// As [`n_waiting`](SharedBarrier::n_waiting).
    pub async fn n_waiting_async(&self) -> Result<usize, ManagerError> {
        Ok(self.state_async().await?.1 as usize)
    }
    /// As [`is_broken`](SharedBarrier::is_broken), as a future.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe (it changes nothing).
    ///
    /// # Errors
    ///
    /// As [`is_broken`](SharedBarrier::is_broken).
    pub async fn is_broken_async(&self) -> Result<bool, ManagerError> {
        Ok(self.state_async().await?.2)
    }
}

macro_rules! queue_async {
    ($t:ident) => {
        impl<T: Message> $t<T> {
            /// As [`put`](Self::put), as a future: waits for room (a bounded queue)
            /// without blocking a thread (the request is parked at the server).
            ///
            /// # Cancel safety
            ///
            /// Dropped before it completes, the item is put or not, never twice: it
            /// was put if the server had room for it before the withdrawal reached it
            /// (the item itself is dropped with the future either way).
            ///
            /// # Errors
            ///
            /// As [`SharedLock::acquire_async`]; an encode error (nothing sent).
            pub async fn put_async(&self, x: T) -> Result<(), ManagerError> {
                let b = enc(&x)?;
                if self.h.bool_async(SyncReq::Put(self.h.id, b, None)).await? {
                    Ok(())
                } else {
                    Err(ManagerError::Disconnected)
                }
            }
            /// As [`get`](Self::get), as a future: takes the first item, waiting while
            /// the queue is empty without blocking a thread (the request is parked at
            /// the server, so thousands of pending gets cost no thread).
            ///
            /// # Cancel safety
            ///
            /// Cancel safe: an item is never lost. A future dropped while it waits
            /// withdraws its request; if the server had taken an item for it just
            /// before, that item goes back to the **front** of the queue (as for a
            /// blocking `get` whose client vanished), so every item is got exactly once
            /// through repeated cancellations (the order may change only by that
            /// putting back). The drop does not wait for it: the item is back shortly
            /// after (once the answer reaches this process), so a `get` made at once
            /// after the drop may take the next item first.
            ///
            /// # Errors
            ///
            /// As [`SharedLock::acquire_async`]; a decode error when the item is not a
            /// `T` (the item is consumed).
            pub async fn get_async(&self) -> Result<T, ManagerError> {
                match self.h.call_async(SyncReq::Get(self.h.id, None)).await? {
                    Resp::Opt(Some(b)) => dec(&b),
                    Resp::Opt(None) => Err(ManagerError::Disconnected),
                    r => Err(unexpected(r)),
                }
            }
            /// As [`len`](Self::len), as a future.
            ///
            /// # Cancel safety
            ///
            /// Cancel safe (it changes nothing).
            ///
            /// # Errors
            ///
            /// As [`len`](Self::len).
            pub async fn len_async(&self) -> Result<usize, ManagerError> {
                match self.h.call_async(SyncReq::Len(self.h.id)).await? {
                    Resp::Count(n) => Ok(n as usize),
                    r => Err(unexpected(r)),
                }
            }
        }
    };
}

queue_async!(SharedQueue);
queue_async!(SharedJoinableQueue);

impl<T: Message> SharedJoinableQueue<T> {
    /// As [`task_done`](SharedJoinableQueue::task_done), as a future.
    ///
    /// # Cancel safety
    ///
    /// Dropping it may or may not have counted the task done.
    ///
    /// # Errors
    ///
    /// As [`task_done`](SharedJoinableQueue::task_done).
    pub async fn task_done_async(&self) -> Result<(), ManagerError> {
        self.h.unit_async(SyncReq::TaskDone(self.h.id)).await
    }
    /// As [`join`](SharedJoinableQueue::join), as a future: completes once every item
    /// put is done.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping it withdraws the wait and changes nothing.
    ///
    /// # Errors
    ///
    /// As [`SharedLock::acquire_async`].
    pub async fn join_async(&self) -> Result<(), ManagerError> {
        if self.h.bool_async(SyncReq::Wait(self.h.id, None)).await? {
            Ok(())
        } else {
            Err(ManagerError::Disconnected)
        }
    }
}
