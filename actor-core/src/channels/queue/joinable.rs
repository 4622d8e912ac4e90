//! [`JoinableQueue`], a [`Queue`] that also counts unfinished tasks.

use super::mpmc::{Queue, QueueBuilder};
use crate::error::{
    joined, Error, GetError, GetTimeoutError, JoinTimeoutError, PutError, PutTimeoutError,
    TaskDoneError, TryGetError, TryPutError,
};
use crate::Message;
use procactor_transports::ring::Deadline;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::time::{Duration, Instant};

/// Python's `JoinableQueue`: a [`Queue`] that also counts *unfinished tasks*.
///
/// Every successful `put` adds one; every [`task_done`](JoinableQueue::task_done) (called
/// by a consumer when it has finished with an item it took) removes one;
/// [`join`](JoinableQueue::join) waits until the count is zero. The count lives in the
/// queue's shared memory, so producers, consumers and joiners may be any processes.
///
/// A `put` counts its task in the same step that makes its item visible to consumers
/// (as Python counts it when the item enters the queue): a put still waiting for room,
/// or still streaming an item larger than the ring, is not counted yet, and a failed put
/// counts nothing. A producer killed in the middle of a `put` leaves neither the item
/// nor its task, so `join` never waits for a task that nobody can finish. (A consumer
/// killed after `get` and before `task_done` does leave its task unfinished, as in
/// Python: use [`join_timeout`](JoinableQueue::join_timeout) when consumers may die.)
///
/// # Examples
///
/// ```
/// use procactor_core::JoinableQueue;
/// use std::time::Duration;
///
/// let q: JoinableQueue<u32> = JoinableQueue::new().unwrap();
/// q.put(1).unwrap();
/// assert!(q.join_timeout(Duration::from_millis(10)).is_err()); // one unfinished task
/// let _item = q.get().unwrap();
/// q.task_done().unwrap();
/// q.join();
/// assert!(q.task_done().is_err()); // more task_done() than items
/// ```
pub struct JoinableQueue<T> {
    pub(super) q: Queue<T>,
}

impl<T> fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinableQueue")
            .field("queue", &self.q)
            .field("unfinished_tasks", &self.q.h.ring.unfinished())
            .finish()
    }
}

impl<T> Clone for JoinableQueue<T> {
    /// Another handle to the same queue (see [`Queue`]'s `Clone`).
    fn clone(&self) -> Self {
        JoinableQueue { q: self.q.clone() }
    }
}

impl<T> Serialize for JoinableQueue<T> {
    /// As [`Queue`]'s `Serialize`.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.q.serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for JoinableQueue<T> {
    /// As [`Queue`]'s `Deserialize`.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(JoinableQueue {
            q: Queue::deserialize(d)?,
        })
    }
}

impl<T: Message> JoinableQueue<T> {
    /// An unbounded joinable queue (see [`Queue::new`]): `put` never waits for room,
    /// whether or not consumers run yet.
    ///
    /// # Errors
    ///
    /// The kernel refused the shared memory.
    pub fn new() -> Result<Self, Error> {
        Ok(JoinableQueue { q: Queue::new()? })
    }

    /// A joinable queue holding at most `maxsize` items (see [`Queue::bounded`]).
    ///
    /// # Errors
    ///
    /// The kernel refused the shared memory.
    pub fn bounded(maxsize: usize) -> Result<Self, Error> {
        Ok(JoinableQueue {
            q: Queue::bounded(maxsize)?,
        })
    }

    /// An unbounded joinable queue whose hot ring holds `bytes` bytes (see
    /// [`Queue::with_capacity_bytes`]).
    ///
    /// # Errors
    ///
    /// As [`Queue::with_capacity_bytes`].
    pub fn with_capacity_bytes(bytes: usize) -> Result<Self, Error> {
        Ok(JoinableQueue {
            q: Queue::with_capacity_bytes(bytes)?,
        })
    }

    fn put_inner(&self, item: T, deadline: Deadline) -> Result<(), TryPutError<T>> {
        // the task is counted in the same step that makes the item visible (see
        // `Ring::push_task`): a consumer never takes an uncounted item, and a producer
        // killed mid-put leaves no task that nobody will ever finish
        self.q.h.put_bytes(item, deadline, true)
    }

    /// Puts `item` (one more unfinished task), waiting as long as the queue is full.
    ///
    /// # Errors
    ///
    /// As [`Queue::put`]; a failed put adds no task.
    pub fn put(&self, item: T) -> Result<(), PutError<T>> {
        // counted as in `put_inner`
        self.q.h.put_blocking(item, true)
    }

    /// As [`Queue::put_timeout`], counting a task on success.
    ///
    /// # Errors
    ///
    /// As [`Queue::put_timeout`].
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), PutTimeoutError<T>> {
        self.put_inner(item, Deadline::After(timeout))
            .map_err(TryPutError::into_timeout)
    }

    /// As [`Queue::put_deadline`], counting a task on success.
    ///
    /// # Errors
    ///
    /// As [`Queue::put_deadline`].
    pub fn put_deadline(&self, item: T, deadline: Instant) -> Result<(), PutTimeoutError<T>> {
        self.put_inner(item, Deadline::At(deadline))
            .map_err(TryPutError::into_timeout)
    }

    /// As [`Queue::try_put`], counting a task on success.
    ///
    /// # Errors
    ///
    /// As [`Queue::try_put`].
    pub fn try_put(&self, item: T) -> Result<(), TryPutError<T>> {
        self.put_inner(item, Deadline::After(Duration::ZERO))
    }

    /// As [`Queue::get`].
    ///
    /// # Errors
    ///
    /// As [`Queue::get`].
    pub fn get(&self) -> Result<T, GetError> {
        self.q.get()
    }

    /// As [`Queue::get_timeout`].
    ///
    /// # Errors
    ///
    /// As [`Queue::get_timeout`].
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetTimeoutError> {
        self.q.get_timeout(timeout)
    }

    /// As [`Queue::get_deadline`].
    ///
    /// # Errors
    ///
    /// As [`Queue::get_deadline`].
    pub fn get_deadline(&self, deadline: Instant) -> Result<T, GetTimeoutError> {
        self.q.get_deadline(deadline)
    }

    /// As [`Queue::try_get`].
    ///
    /// # Errors
    ///
    /// As [`Queue::try_get`].
    pub fn try_get(&self) -> Result<T, TryGetError> {
        self.q.try_get()
    }

    /// Says that an item taken from the queue has been dealt with (Python's
    /// `task_done`). Wakes every `join` when the last unfinished task is done.
    ///
    /// # Errors
    ///
    /// [`TaskDoneError`] when there is no unfinished task (called more times than items
    /// were put); nothing changes then.
    pub fn task_done(&self) -> Result<(), TaskDoneError> {
        if self.q.h.ring.task_done() {
            Ok(())
        } else {
            Err(TaskDoneError)
        }
    }

    /// Waits until every item put has been matched by a `task_done` (Python's `join`).
    pub fn join(&self) {
        self.q.h.ring.task_join(None);
    }

    /// As [`join`](JoinableQueue::join), at most `timeout` (`Duration::MAX`: for ever).
    ///
    /// # Errors
    ///
    /// [`JoinTimeoutError`] when tasks were still unfinished then (the crate-wide
    /// `join_timeout` convention: `Ok` with what `join` returns, see
    /// [`error`](crate::error)).
    pub fn join_timeout(&self, timeout: Duration) -> Result<(), JoinTimeoutError> {
        joined(self.q.h.ring.task_join(Deadline::after(timeout).instant()))
    }

    /// As [`join`](JoinableQueue::join), until `deadline`.
    ///
    /// # Errors
    ///
    /// As [`join_timeout`](JoinableQueue::join_timeout).
    pub fn join_deadline(&self, deadline: Instant) -> Result<(), JoinTimeoutError> {
        joined(self.q.h.ring.task_join(Some(deadline)))
    }

    /// Items put and not yet marked done (advisory).
    pub fn unfinished_tasks(&self) -> u64 {
        self.q.h.ring.unfinished()
    }

    /// As [`Queue::len`].
    pub fn len(&self) -> usize {
        self.q.len()
    }

    /// As [`Queue::is_empty`].
    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
    }

    /// As [`Queue::is_full`].
    pub fn is_full(&self) -> bool {
        self.q.is_full()
    }

    /// As [`Queue::maxsize`].
    pub fn maxsize(&self) -> usize {
        self.q.maxsize()
    }

    /// As [`Queue::close`].
    pub fn close(&self) {
        self.q.close();
    }

    /// As [`Queue::is_closed`].
    pub fn is_closed(&self) -> bool {
        self.q.is_closed()
    }
}

impl<T: Message> QueueBuilder<T> {
    /// Creates a [`JoinableQueue`] with these settings.
    ///
    /// # Errors
    ///
    /// As [`build`](QueueBuilder::build).
    pub fn build_joinable(self) -> Result<JoinableQueue<T>, Error> {
        Ok(JoinableQueue { q: self.build()? })
    }
}
