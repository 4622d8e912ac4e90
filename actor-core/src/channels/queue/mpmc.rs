//! [`Queue`], the multi-producer multi-consumer queue, and [`QueueBuilder`].

use super::handle::Handle;
use super::named::Named;
use crate::error::{
    Error, GetError, GetTimeoutError, PutError, PutTimeoutError, TryGetError, TryPutError,
};
use crate::Message;
use procactor_transports::ring::{Deadline, DEFAULT_MAX_MESSAGE};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The byte capacity of the shared-memory ring of [`Queue::new`] and [`Queue::bounded`]:
/// 256 KiB. For an unbounded queue this is the *hot* ring, used while the backlog is
/// small; a backlog beyond it goes to the queue's overflow area (see [`Queue::new`]). In
/// a bounded queue, items larger than the ring still go through (streamed to a consumer).
pub const DEFAULT_CAPACITY_BYTES: usize = 256 * 1024;

/// A multi-producer, multi-consumer FIFO queue between processes (Python's
/// `multiprocessing.Queue`).
///
/// Every clone is another handle to the same queue; pass one to a child in its
/// arguments. Items are any [`Message`] (serde); a procactor handle *inside* an item
/// cannot travel through a queue (`put` fails with [`PutError::Encode`]; pass handles in
/// a child's arguments or through a `Pipe`). Items from one producer arrive in the order
/// it put them. See the [module docs](crate::queue) for how `Disconnected` is decided
/// and what a killed process does to a queue.
///
/// To send raw bytes efficiently, put them in a [`Bytes`](crate::Bytes): it travels as
/// one CBOR byte string, where a `Vec<u8>` is encoded as an array of integers (up to
/// two bytes on the wire per byte, each encoded and decoded one at a time).
///
/// | Python | procactor |
/// |---|---|
/// | `Queue()`, `Queue(maxsize)` | [`Queue::new`], [`Queue::bounded`] |
/// | `put(x)`, `put(x, timeout=t)`, `put_nowait(x)` | [`put`](Queue::put), [`put_timeout`](Queue::put_timeout), [`try_put`](Queue::try_put) |
/// | `get()`, `get(timeout=t)`, `get_nowait()` | [`get`](Queue::get), [`get_timeout`](Queue::get_timeout), [`try_get`](Queue::try_get) |
/// | `queue.Full`, `queue.Empty` | [`TryPutError::Full`], [`PutTimeoutError::Timeout`]; [`TryGetError::Empty`], [`GetTimeoutError::Timeout`] |
/// | `qsize()`, `empty()`, `full()` | [`len`](Queue::len), [`is_empty`](Queue::is_empty), [`is_full`](Queue::is_full) |
/// | `close()` | [`close`](Queue::close) |
/// | `join_thread()`, `cancel_join_thread()` | not needed: there is no feeder thread |
///
/// # Examples
///
/// ```
/// use procactor_core::{Queue, GetError, PutError, TryGetError};
///
/// let q: Queue<(u64, String)> = Queue::bounded(2).unwrap();
/// q.put((1, "a".into())).unwrap();
/// q.try_put((2, "b".into())).unwrap();
/// assert!(q.is_full());
/// let e = q.try_put((3, "c".into())).unwrap_err();
/// assert!(e.is_full());
/// assert_eq!(e.into_inner().0, 3);   // the item comes back
/// assert_eq!(q.len(), 2);
/// assert_eq!(q.get().unwrap(), (1, "a".into()));
/// assert_eq!(q.try_get().unwrap().0, 2);
/// assert_eq!(q.try_get(), Err(TryGetError::Empty)); // our own open handle could still put
/// q.close();
/// assert_eq!(q.get(), Err(GetError::Disconnected)); // a blocking get has no `Empty`
/// assert!(matches!(q.put((4, "d".into())), Err(PutError::Closed(_))));
/// ```
pub struct Queue<T> {
    pub(super) h: Handle,
    pub(super) _t: PhantomData<fn(T) -> T>,
    /// A named queue's place among what this process shows (shared by its clones).
    pub(super) named: Option<Arc<Named>>,
}

/// Configures a [`Queue`] (or a [`JoinableQueue`](super::JoinableQueue),
/// [`SimpleQueue`](super::SimpleQueue)) before creating it:
/// `Queue::builder().maxsize(10).max_message_size(1 << 20).build()`.
///
/// Defaults: unbounded (`maxsize` 0), a ring of [`DEFAULT_CAPACITY_BYTES`], a maximum
/// message size of 1 GiB.
pub struct QueueBuilder<T> {
    name: Option<String>,
    maxsize: usize,
    bytes: usize,
    max_message: u64,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> fmt::Debug for QueueBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueBuilder")
            .field("name", &self.name)
            .field("maxsize", &self.maxsize)
            .field("capacity_bytes", &self.bytes)
            .field("max_message_size", &self.max_message)
            .finish()
    }
}

impl<T: Message> QueueBuilder<T> {
    /// At most `maxsize` items (`0`: unbounded, as [`Queue::new`]).
    pub fn maxsize(mut self, maxsize: usize) -> Self {
        self.maxsize = maxsize;
        self
    }

    /// The ring's size in bytes (see [`Queue::with_capacity_bytes`] and
    /// [`Queue::bounded_with_capacity_bytes`]).
    pub fn capacity_bytes(mut self, bytes: usize) -> Self {
        self.bytes = bytes;
        self
    }

    /// The largest item, as its encoded size in bytes, the queue takes (default 1 GiB).
    ///
    /// A larger `put` fails at once with [`PutError::TooLarge`] (the item comes back,
    /// nothing is written, the queue stays usable); the limit is part of the queue's
    /// shared memory, so a consumer in any process also refuses (discards unread, never
    /// allocating more than the limit for it) a larger message that a misbehaving peer
    /// writes into the ring. Python's `multiprocessing` has no such limit; this one
    /// bounds what any peer can make a consumer allocate.
    pub fn max_message_size(mut self, bytes: u64) -> Self {
        self.max_message = bytes;
        self
    }

    /// Gives the queue a name: this process's snapshot
    /// ([`observe::snapshot`](crate::observe::snapshot), `procactor-top`) lists it with
    /// its depth and the items put and taken so far (by every process), for as long as a
    /// handle of it lives in this process. Counting costs nothing more (every queue keeps
    /// those counts in its shared memory).
    ///
    /// When the last handle is dropped the queue leaves the list, except from a
    /// snapshot already under way at that moment (taken by this process, or by the
    /// observe server answering another process, `procactor-top`): that snapshot holds
    /// the queue until it is done and may still list it, once. The next snapshot does
    /// not.
    ///
    /// # Examples
    ///
    /// ```
    /// use procactor::{observe, Queue};
    ///
    /// let q = Queue::<u32>::builder().name("jobs").build().unwrap();
    /// q.put(1).unwrap();
    /// let snap = observe::snapshot();
    /// let jobs = snap.queues.iter().find(|s| s.name == "jobs").unwrap();
    /// assert_eq!((jobs.depth, jobs.puts, jobs.gets), (1, 1, 0));
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Creates the queue.
    ///
    /// # Errors
    ///
    /// `capacity_bytes` above 1 GiB, `max_message_size` 0 or above 64 TiB, or the
    /// kernel refused the shared memory.
    pub fn build(self) -> Result<Queue<T>, Error> {
        let h = Handle::create(self.bytes, self.maxsize, self.max_message)?;
        let named = self.name.map(|n| Named::register(n, h.ring.clone()));
        Ok(Queue {
            h,
            _t: PhantomData,
            named,
        })
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("len", &self.h.ring.len())
            .field("maxsize", &self.h.ring.maxsize())
            .field("capacity_bytes", &self.h.ring.capacity())
            .field("open", &self.h.is_open())
            .finish()
    }
}

impl<T> Clone for Queue<T> {
    /// Another handle to the same queue (cheap: no new shared memory). The clone of an
    /// open handle is an open producer handle; the clone of a closed handle is closed.
    fn clone(&self) -> Self {
        Queue {
            h: self.h.clone(),
            _t: PhantomData,
            named: self.named.clone(),
        }
    }
}

impl<T> Queue<T> {
    /// Another handle to the same queue that is an open producer even if this one is
    /// closed (the actor runtime hands a closed mailbox handle around and opens one where
    /// a sender is really wanted).
    /// See `Ring::recover_dead_reader`: called by whoever has just seen a consumer of
    /// this queue die.
    pub(crate) fn recover_dead_consumer(&self) {
        self.h.ring.recover_dead_reader();
    }

    pub(crate) fn clone_open(&self) -> Self {
        Queue {
            h: Handle::attach(self.h.ring.clone(), true),
            _t: PhantomData,
            named: self.named.clone(),
        }
    }
}

impl<T> Serialize for Queue<T> {
    /// Encodes the handle for a child's arguments or a `Pipe` (its shared memory travels
    /// as a descriptor); through a channel that cannot carry descriptors it fails.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.h.serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for Queue<T> {
    /// Decodes a handle sent by [`Serialize`], mapping the same shared memory.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Queue {
            h: Handle::deserialize(d)?,
            _t: PhantomData,
            named: None,
        })
    }
}

impl<T: Message> Queue<T> {
    /// An unbounded queue (Python's `Queue()`): `put` never waits and never fails for
    /// lack of room while memory lasts.
    ///
    /// Items go through a hot ring of [`DEFAULT_CAPACITY_BYTES`] while consumers keep up;
    /// a larger backlog (or an item larger than the hot ring) goes to the queue's sparse
    /// 64 GiB overflow area, which takes memory only for what is in it and gives it back
    /// as consumers drain it (1 MiB at a time, and all of it once the backlog is gone).
    /// Only a backlog filling the whole overflow area would make `put` wait (as a full
    /// bounded queue does). Items keep their order across both areas.
    ///
    /// # Errors
    ///
    /// The kernel refused the shared memory.
    ///
    /// # Examples
    ///
    /// ```
    /// let q = procactor_core::Queue::<u32>::new().unwrap();
    /// assert!(q.is_empty());
    /// ```
    pub fn new() -> Result<Self, Error> {
        Self::build(0, DEFAULT_CAPACITY_BYTES)
    }

    /// A queue holding at most `maxsize` items (Python's `Queue(maxsize)`; `0` means no
    /// item limit, as `maxsize <= 0` does in Python).
    ///
    /// # Errors
    ///
    /// The kernel refused the shared memory.
    ///
    /// # Examples
    ///
    /// ```
    /// let q = procactor_core::Queue::<u32>::bounded(1).unwrap();
    /// q.put(1).unwrap();
    /// assert!(q.try_put(2).unwrap_err().is_full());
    /// ```
    pub fn bounded(maxsize: usize) -> Result<Self, Error> {
        Self::build(maxsize, DEFAULT_CAPACITY_BYTES)
    }

    /// An unbounded queue (as [`new`](Queue::new)) whose *hot* ring holds `bytes` bytes
    /// (rounded up to a power of two, at least 64). Each item takes its CBOR size plus 4
    /// bytes there; a backlog beyond the hot ring, or an item larger than it, goes to the
    /// overflow area, so `put` does not wait for room whatever `bytes` is.
    ///
    /// # Errors
    ///
    /// `bytes` above 1 GiB, or the kernel refused the shared memory.
    ///
    /// # Examples
    ///
    /// ```
    /// let q = procactor_core::Queue::<Vec<u8>>::with_capacity_bytes(4096).unwrap();
    /// assert_eq!(q.capacity_bytes(), 4096);
    /// ```
    pub fn with_capacity_bytes(bytes: usize) -> Result<Self, Error> {
        Self::build(0, bytes)
    }

    /// A queue with both an item limit and a ring of `bytes` bytes. With `maxsize == 0`
    /// it is unbounded, as [`with_capacity_bytes`](Queue::with_capacity_bytes); with a
    /// limit, `put` also waits while the ring is out of bytes, and an item larger than
    /// the ring is streamed through it (the `put` finishes as a consumer takes it).
    ///
    /// # Errors
    ///
    /// As [`with_capacity_bytes`](Queue::with_capacity_bytes).
    pub fn bounded_with_capacity_bytes(maxsize: usize, bytes: usize) -> Result<Self, Error> {
        Self::build(maxsize, bytes)
    }

    fn build(maxsize: usize, bytes: usize) -> Result<Self, Error> {
        Self::builder()
            .maxsize(maxsize)
            .capacity_bytes(bytes)
            .build()
    }

    /// A [`QueueBuilder`]: item limit, ring size and maximum message size in one place.
    ///
    /// # Examples
    ///
    /// ```
    /// use procactor_core::Queue;
    ///
    /// let q: Queue<Vec<u8>> = Queue::builder().max_message_size(1024).build().unwrap();
    /// q.put(vec![0; 100]).unwrap();
    /// let e = q.put(vec![0; 2000]).unwrap_err();
    /// assert!(e.is_too_large());
    /// assert_eq!(e.into_inner().len(), 2000); // the item comes back
    /// ```
    pub fn builder() -> QueueBuilder<T> {
        QueueBuilder {
            name: None,
            maxsize: 0,
            bytes: DEFAULT_CAPACITY_BYTES,
            max_message: DEFAULT_MAX_MESSAGE,
            _t: PhantomData,
        }
    }

    /// The largest encoded item (in bytes) this queue takes (see
    /// [`QueueBuilder::max_message_size`]).
    pub fn max_message_size(&self) -> u64 {
        self.h.ring.max_message_size()
    }

    /// Puts `item`, waiting as long as the queue is full.
    ///
    /// # Errors
    ///
    /// [`PutError::Closed`] after [`close`](Queue::close), [`PutError::Encode`] when the
    /// item cannot be serialized (nothing is written, the queue stays usable),
    /// [`PutError::Broken`]. Each gives the item back.
    pub fn put(&self, item: T) -> Result<(), PutError<T>> {
        self.h.put_blocking(item, false)
    }

    /// Puts `item`, waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// [`PutTimeoutError::Timeout`] (with the item) when no room came in time (also for an item
    /// larger than the ring that had to be sent again because a consumer gave up in the
    /// middle of it, see [`get_timeout`](Queue::get_timeout): the item was then not
    /// delivered); otherwise as [`put`](Queue::put).
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), PutTimeoutError<T>> {
        self.put_inner(item, Deadline::After(timeout))
            .map_err(TryPutError::into_timeout)
    }

    /// Puts `item`, waiting until `deadline` for room.
    ///
    /// # Errors
    ///
    /// As [`put_timeout`](Queue::put_timeout).
    pub fn put_deadline(&self, item: T, deadline: Instant) -> Result<(), PutTimeoutError<T>> {
        self.put_inner(item, Deadline::At(deadline))
            .map_err(TryPutError::into_timeout)
    }

    /// Puts `item` only if there is room now (Python's `put_nowait`).
    ///
    /// # Errors
    ///
    /// [`TryPutError::Full`] (with the item) when the queue is full; otherwise as
    /// [`put`](Queue::put).
    pub fn try_put(&self, item: T) -> Result<(), TryPutError<T>> {
        self.put_inner(item, Deadline::After(Duration::ZERO))
    }

    fn put_inner(&self, item: T, deadline: Deadline) -> Result<(), TryPutError<T>> {
        self.h.put_bytes(item, deadline, false)
    }

    /// A put until `deadline` (`None`: none, and then never `Full`) for the crate's
    /// wrappers, which give each of their operations its own error type.
    pub(crate) fn put_until(
        &self,
        item: T,
        deadline: Option<Instant>,
    ) -> Result<(), TryPutError<T>> {
        self.put_inner(item, deadline.into())
    }

    /// Takes the next item, waiting for one.
    ///
    /// # Errors
    ///
    /// [`GetError::Disconnected`] when the queue is empty and no producer handle is left
    /// (see the [module docs](crate::queue)), [`GetError::Decode`] when the message is
    /// not a `T` (it is dropped; the queue stays usable), [`GetError::Broken`].
    pub fn get(&self) -> Result<T, GetError> {
        self.h.get_blocking()
    }

    /// Takes the next item, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`GetTimeoutError::Timeout`] when nothing came in time; otherwise as
    /// [`get`](Queue::get).
    ///
    /// An item larger than the ring that is arriving in pieces when the timeout passes
    /// is still awaited while its producer keeps sending pieces; a producer frozen in
    /// the middle of it (stopped, starved) makes this return `Timeout` about 100 ms past
    /// the timeout. The item is not lost: the producer, once it runs again, sees that
    /// this consumer gave up and sends the item again from the start, and a later `get`
    /// (of this or another consumer) receives it whole; the producer's `put` returns
    /// `Ok` only then (a bounded queue's `put_timeout` may instead fail with `Timeout` if
    /// its own timeout passes before the item fits again; it then was not delivered).
    /// Only a producer frozen in the few instructions that publish the item's very last
    /// piece is waited for past the 100 ms, since its `put` is about to succeed.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetTimeoutError> {
        self.h
            .get(Deadline::After(timeout))
            .map_err(TryGetError::into_timeout)
    }

    /// Takes the next item, waiting until `deadline`.
    ///
    /// # Errors
    ///
    /// As [`get_timeout`](Queue::get_timeout).
    pub fn get_deadline(&self, deadline: Instant) -> Result<T, GetTimeoutError> {
        self.h
            .get(Deadline::At(deadline))
            .map_err(TryGetError::into_timeout)
    }

    /// Takes an item only if one is there now (Python's `get_nowait`).
    ///
    /// # Errors
    ///
    /// [`TryGetError::Empty`] when there is none (or another consumer is taking one right
    /// now); otherwise as [`get`](Queue::get).
    pub fn try_get(&self) -> Result<T, TryGetError> {
        self.h.get(Deadline::After(Duration::ZERO))
    }

    /// The number of items in the queue (Python's `qsize`). Exact at the instant of the
    /// call, advisory afterwards: other processes change it at any time. A large item
    /// being streamed counts from its first piece.
    pub fn len(&self) -> usize {
        usize::try_from(self.h.ring.len()).unwrap_or(usize::MAX)
    }

    /// Whether the queue holds no item (Python's `empty`; advisory).
    pub fn is_empty(&self) -> bool {
        self.h.ring.is_empty()
    }

    /// Whether a `put` would wait now (Python's `full`; advisory): `maxsize` items are in
    /// a bounded queue. An unbounded queue is full only when its whole overflow area is
    /// (a 64 GiB backlog), so this is `false` for it in practice, as Python's `full()`
    /// is for a queue without `maxsize`.
    pub fn is_full(&self) -> bool {
        self.h.ring.is_full()
    }

    /// The item limit given to [`bounded`](Queue::bounded) (`0`: none).
    pub fn maxsize(&self) -> usize {
        usize::try_from(self.h.ring.maxsize()).unwrap_or(usize::MAX)
    }

    /// The ring's size in bytes (for an unbounded queue: the hot ring's, the overflow
    /// area comes on top).
    pub fn capacity_bytes(&self) -> usize {
        self.h.ring.capacity()
    }

    /// Whether the queue was found corrupt (every operation then fails with `Broken`).
    pub fn is_broken(&self) -> bool {
        self.h.ring.is_broken()
    }

    /// No more `put` from this handle ([`PutError::Closed`]); `get` keeps working. When
    /// every producer handle is closed or dropped and the queue is drained, `get` returns
    /// [`GetError::Disconnected`]. Other handles (clones, children's) are not affected.
    /// Idempotent.
    pub fn close(&self) {
        self.h.close();
    }

    /// Whether [`close`](Queue::close) was called on this handle.
    pub fn is_closed(&self) -> bool {
        !self.h.is_open()
    }
}
