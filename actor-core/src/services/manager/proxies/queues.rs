//! The proxies of a manager's queues and joinable queues.

use super::super::objects::{SyncReq, Wait};
use super::super::{dec, enc, unexpected, Resp};
use super::super::{Invariant, ManagerError};
use super::{wait_of, SyncHandle, NOW};
use crate::Message;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

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
            /// `timeout` and [`CALL_MARGIN`](crate::manager::CALL_MARGIN) (the item may or may not be in the queue);
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
            /// `timeout` and [`CALL_MARGIN`](crate::manager::CALL_MARGIN) (the item, if one was taken, goes back to
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
/// ([`Manager::queue`](crate::Manager::queue)) or bounded ([`Manager::queue_bounded`](crate::Manager::queue_bounded)).
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
    pub(super) h: SyncHandle,
    pub(super) _t: PhantomData<Invariant<T>>,
}
queue_ops!(SharedQueue);

/// A [`SharedQueue`] that counts unfinished items (Python's
/// `Manager().JoinableQueue()`): every `put` adds one, [`task_done`] takes one away,
/// and [`join`] waits until none is left.
///
/// [`task_done`]: SharedJoinableQueue::task_done
/// [`join`]: SharedJoinableQueue::join
pub struct SharedJoinableQueue<T> {
    pub(super) h: SyncHandle,
    pub(super) _t: PhantomData<Invariant<T>>,
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
