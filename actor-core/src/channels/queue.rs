//! Queues: [`Queue`], [`SimpleQueue`] and [`JoinableQueue`] on a shared-memory ring.
//!
//! A queue is one shared-memory region (a [`Ring`]):
//! `put` serializes the item (CBOR, into a reused per-thread buffer) *before* taking the
//! writer lock, then copies the bytes into the ring; `get` copies a message out under the
//! reader lock and decodes it after releasing the lock. An uncontended `put`/`get` makes
//! no system call. There is **no feeder thread**: when `put` returns, the item is in
//! shared memory, so a process may exit right after `put` without losing it and without
//! hanging at exit (Python's "joining a process that has put items" deadlock does not
//! exist here).
//!
//! # Unbounded queues
//!
//! As in Python, a queue without `maxsize` is really unbounded: `put` never waits and
//! never fails for lack of room while memory lasts. Its memory file holds a small *hot*
//! ring (256 KiB by default), used while consumers keep up, and a large sparse *overflow
//! area* (64 GiB of address range in the same file, taking memory only for the backlog
//! actually in it, given back as consumers drain it). A producer that finds the hot ring
//! full, or an item larger than it, appends to the overflow area instead of waiting;
//! consumers follow in order. (An item larger than the hot ring put while a consumer is
//! inside `get` is streamed to it through the hot ring instead, as in a bounded queue;
//! if that consumer stops taking pieces for 1 ms, the item goes to the overflow area.) Only a backlog of 64 GiB would make `put` wait. Bounded
//! queues ([`Queue::bounded`]) keep their back-pressure: `put` waits at `maxsize` items.
//!
//! # Producers and `Disconnected`
//!
//! Every open handle — the one `new` returns, each [`Clone`], each handle a child
//! deserializes from its arguments — counts as a *producer*, until it is
//! [`close`](Queue::close)d or dropped. (A handle can both put and get, as in Python.)
//! The queue records which processes hold producer handles; when a `get` finds the queue
//! empty and no producer handle left in a live process, it returns
//! [`GetError::Disconnected`] instead of waiting for an item nobody can put — also when
//! the producers were killed with `SIGKILL`. A consumer that will never put should
//! therefore `close()` its own handle: while the caller's own handle is open, the caller
//! itself could still put, and `get` keeps waiting.
//!
//! A handle serialized into a child's arguments counts as a producer of the sending
//! process until the child has decoded it, so a queue cannot look disconnected while a
//! handle is on its way. If those bytes are never decoded (the child was killed during
//! start-up), the count stays with the sender until the sender exits. A message that
//! does not go out at all (the rest of it fails to encode, the Pipe's peer is gone, the
//! child cannot be started) takes its count back at once.
//!
//! # Killed processes
//!
//! A process killed in the middle of a `put` or `get` — even while streaming a message
//! larger than the ring — never makes another process hang or receive a torn message:
//! the next process to take the lock completes or aborts the dead one's operation and
//! the queue goes on working. The item being put by the dead process is lost, and so is
//! the item a dead consumer had started to take. Only corrupted shared memory makes the
//! queue *broken*, and every operation then says so ([`GetError::Broken`],
//! [`PutError::Broken`]).
//!
//! # Examples
//!
//! ```
//! use procactor_core::{Process, Queue};
//!
//! fn produce(q: Queue<String>) {
//!     q.put("Hello World".to_string()).unwrap();
//! }
//!
//! fn main() {
//!     procactor_core::init();
//!     let q: Queue<String> = Queue::new().unwrap();
//!     let mut p = Process::new(produce, q.clone()).start().unwrap();
//!     assert_eq!(q.get().unwrap(), "Hello World");
//!     p.join().unwrap();
//! }
//! ```

use crate::codec::{self, RecvFd, SendFd};
use crate::error::{
    joined, Error, GetError, GetTimeoutError, JoinTimeoutError, PutError, PutTimeoutError,
    TaskDoneError, TryGetError, TryPutError,
};
use crate::iter::EndsAtError;
use crate::Message;
use procactor_transports::ring::{
    Deadline, PopError, PushError, Ring, DEFAULT_MAX_MESSAGE, DEFAULT_OVERFLOW_BYTES,
};
use procactor_transports::robust;
use serde::de::Error as _;
use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::cell::RefCell;
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The byte capacity of the shared-memory ring of [`Queue::new`] and [`Queue::bounded`]:
/// 256 KiB. For an unbounded queue this is the *hot* ring, used while the backlog is
/// small; a backlog beyond it goes to the queue's overflow area (see [`Queue::new`]). In
/// a bounded queue, items larger than the ring still go through (streamed to a consumer).
pub const DEFAULT_CAPACITY_BYTES: usize = 256 * 1024;

/// Per-thread encode/decode buffers larger than this are released after use (smaller
/// ones are kept, so that repeated large messages do not fault in fresh pages each time).
const KEEP_BUFFER_BYTES: usize = 32 << 20;

thread_local! {
    static ENCODE_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static DECODE_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's reusable buffer (a fresh one if it is already in use,
/// e.g. by a `Serialize` impl that itself puts on a queue).
fn with_buf<R>(
    key: &'static std::thread::LocalKey<RefCell<Vec<u8>>>,
    f: impl FnOnce(&mut Vec<u8>) -> R,
) -> R {
    let mut f = Some(f);
    let r = key.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            buf.clear();
            let r = (f.take().expect("called once"))(&mut buf);
            if buf.capacity() > KEEP_BUFFER_BYTES {
                *buf = Vec::new();
            }
            Some(r)
        }
        Err(_) => None,
    });
    match r {
        Some(r) => r,
        None => (f.take().expect("called once"))(&mut Vec::new()),
    }
}

fn my_pid() -> u32 {
    robust::my_id()
}

/// One handle on a ring: the shared mapping and whether this handle is an open producer.
struct Handle {
    ring: Arc<Ring>,
    open: AtomicBool,
}

impl Handle {
    fn create(capacity: usize, maxsize: usize, max_message: u64) -> io::Result<Handle> {
        let ring = if maxsize == 0 {
            Ring::create_limited(capacity, 0, DEFAULT_OVERFLOW_BYTES, max_message)?
        } else {
            Ring::create_limited(capacity, maxsize as u64, 0, max_message)?
        };
        Ok(Handle::attach(Arc::new(ring), true))
    }

    fn attach(ring: Arc<Ring>, open: bool) -> Handle {
        if open {
            ring.register_producer(my_pid());
        }
        Handle {
            ring,
            open: AtomicBool::new(open),
        }
    }

    fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    fn close(&self) {
        if self.open.swap(false, Ordering::AcqRel) {
            self.ring.unregister_producer(my_pid());
        }
    }

    fn put_bytes<T: Serialize>(
        &self,
        item: T,
        deadline: Deadline,
        task: bool,
    ) -> Result<(), TryPutError<T>> {
        if !self.is_open() {
            return Err(TryPutError::Closed(item));
        }
        with_buf(&ENCODE_BUF, |buf| {
            if let Err(e) = codec::encode(&item, buf, None) {
                return Err(TryPutError::Encode(item, e));
            }
            let pushed = if task {
                self.ring.push_task(buf, deadline)
            } else {
                self.ring.push_with(buf, deadline)
            };
            match pushed {
                Ok(()) => Ok(()),
                Err(PushError::Full) => Err(TryPutError::Full(item)),
                Err(PushError::Broken) => Err(TryPutError::Broken(item)),
                Err(PushError::TooLarge) => Err(TryPutError::TooLarge(item)),
            }
        })
    }

    /// A put without a deadline: the ring reports no `Full` then; were it ever to, the
    /// put is simply tried again (nothing of the item was made visible).
    fn put_blocking<T: Serialize>(&self, mut item: T, task: bool) -> Result<(), PutError<T>> {
        loop {
            match self.put_bytes(item, Deadline::Never, task) {
                Ok(()) => return Ok(()),
                Err(e) => match e.into_blocking() {
                    Ok(e) => return Err(e),
                    Err(back) => item = back,
                },
            }
        }
    }

    /// `Empty` means the deadline passed.
    fn get<T: Message>(&self, deadline: Deadline) -> Result<T, TryGetError> {
        with_buf(&DECODE_BUF, |buf| {
            self.ring
                .pop_with(buf, deadline, true)
                .map_err(|e| match e {
                    PopError::Empty => TryGetError::Empty,
                    PopError::Disconnected => TryGetError::Disconnected,
                    PopError::Broken => TryGetError::Broken,
                })?;
            // the reader lock is released: decode outside it
            Ok(codec::decode(buf, Vec::new())?)
        })
    }

    /// A get without a deadline: the ring reports no `Empty` then; were it ever to, the
    /// get is simply tried again.
    fn get_blocking<T: Message>(&self) -> Result<T, GetError> {
        loop {
            match self.get(Deadline::Never) {
                Ok(t) => return Ok(t),
                Err(e) => {
                    if let Some(e) = e.into_blocking() {
                        return Err(e);
                    }
                }
            }
        }
    }
}

impl Clone for Handle {
    fn clone(&self) -> Self {
        Handle::attach(self.ring.clone(), self.is_open())
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.close();
    }
}

impl Serialize for Handle {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let open = self.is_open();
        let mut st = s.serialize_struct("Queue", 3)?;
        st.serialize_field("ring", &SendFd(self.ring.fd()))?;
        // the descriptor is on its way: count the travelling handle as ours until the
        // receiver takes it over (see the module docs)
        if open {
            let pid = my_pid();
            self.ring.register_producer(pid);
            // …unless the message never leaves (see `codec::on_unsent`)
            let ring = self.ring.clone();
            codec::on_unsent(move || ring.unregister_producer(pid));
        }
        st.serialize_field("open", &open)?;
        st.serialize_field("from", &my_pid())?;
        st.end()
    }
}

#[derive(Deserialize)]
#[serde(rename = "Queue")]
struct HandleWire {
    ring: RecvFd,
    open: bool,
    from: u32,
}

impl<'de> Deserialize<'de> for Handle {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = HandleWire::deserialize(d)?;
        let ring = Ring::open(w.ring.0).map_err(|e| D::Error::custom(e.to_string()))?;
        let h = Handle::attach(Arc::new(ring), w.open);
        if w.open {
            h.ring.unregister_producer(w.from);
        }
        Ok(h)
    }
}

/// A multi-producer, multi-consumer FIFO queue between processes (Python's
/// `multiprocessing.Queue`).
///
/// Every clone is another handle to the same queue; pass one to a child in its
/// arguments. Items are any [`Message`] (serde); a procactor handle *inside* an item
/// cannot travel through a queue (`put` fails with [`PutError::Encode`]; pass handles in
/// a child's arguments or through a `Pipe`). Items from one producer arrive in the order
/// it put them. See the [module docs](self) for how `Disconnected` is decided and what a
/// killed process does to a queue.
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
    h: Handle,
    _t: PhantomData<fn(T) -> T>,
}

/// Configures a [`Queue`] (or a [`JoinableQueue`], [`SimpleQueue`]) before creating it:
/// `Queue::builder().maxsize(10).max_message_size(1 << 20).build()`.
///
/// Defaults: unbounded (`maxsize` 0), a ring of [`DEFAULT_CAPACITY_BYTES`], a maximum
/// message size of 1 GiB.
pub struct QueueBuilder<T> {
    maxsize: usize,
    bytes: usize,
    max_message: u64,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> fmt::Debug for QueueBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueBuilder")
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

    /// Creates the queue.
    ///
    /// # Errors
    ///
    /// `capacity_bytes` above 1 GiB, `max_message_size` 0 or above 64 TiB, or the
    /// kernel refused the shared memory.
    pub fn build(self) -> Result<Queue<T>, Error> {
        Ok(Queue {
            h: Handle::create(self.bytes, self.maxsize, self.max_message)?,
            _t: PhantomData,
        })
    }

    /// Creates a [`JoinableQueue`] with these settings.
    ///
    /// # Errors
    ///
    /// As [`build`](QueueBuilder::build).
    pub fn build_joinable(self) -> Result<JoinableQueue<T>, Error> {
        Ok(JoinableQueue { q: self.build()? })
    }

    /// Creates a [`SimpleQueue`] with these settings (its `maxsize` should stay 0: a
    /// `SimpleQueue` is unbounded).
    ///
    /// # Errors
    ///
    /// As [`build`](QueueBuilder::build).
    pub fn build_simple(self) -> Result<SimpleQueue<T>, Error> {
        Ok(SimpleQueue { q: self.build()? })
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
        }
    }
}

/// Why [`await_reply`] came back without the reply.
pub(crate) enum NoReply<E> {
    /// The deadline passed.
    Timeout,
    /// The reply ring holds bytes that are not a reply.
    Decode(crate::DecodeError),
    /// The reply ring is broken.
    Broken,
    /// `check` said to stop waiting.
    Stopped(E),
}

/// How long [`await_reply`] waits between two looks at `check`.
const REPLY_CHECK: Duration = Duration::from_millis(20);

/// Waits for the reply numbered `n` on a ring shared by numbered calls (a pipe actor's,
/// a manager's), dropping replies to other numbers (callers that gave up or died). The
/// common case is one blocking get; every 20 ms without the reply, `check` says whether
/// to stop waiting (the server is gone, the request was lost). While no process can put
/// a reply (the replier died and its successor is not up yet) it waits a millisecond
/// before looking again.
pub(crate) fn await_reply<R: Message, E>(
    replies: &Queue<(u64, R)>,
    n: u64,
    deadline: Option<Instant>,
    mut check: impl FnMut() -> Option<E>,
) -> Result<R, NoReply<E>> {
    loop {
        let now = Instant::now();
        let slice_end = now + REPLY_CHECK;
        let until = match deadline {
            Some(d) if d <= now => return Err(NoReply::Timeout),
            Some(d) => d.min(slice_end),
            None => slice_end,
        };
        match replies.get_deadline(until) {
            Ok((k, r)) if k == n => return Ok(r),
            Ok(_) => continue,
            Err(GetTimeoutError::Timeout) => {}
            Err(GetTimeoutError::Disconnected) => std::thread::sleep(Duration::from_millis(1)),
            Err(GetTimeoutError::Decode(e)) => return Err(NoReply::Decode(e)),
            Err(GetTimeoutError::Broken) => return Err(NoReply::Broken),
        }
        if let Some(e) = check() {
            return Err(NoReply::Stopped(e));
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
    /// (see the [module docs](self)), [`GetError::Decode`] when the message is not a `T`
    /// (it is dropped; the queue stays usable), [`GetError::Broken`].
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

/// Python's `SimpleQueue`: an unbounded-by-count queue with only `put`, `get`,
/// `is_empty` and `close`. `put` waits only while the byte ring is full.
///
/// It is a [`Queue`] underneath (same ring, same rules for `Disconnected` and killed
/// processes); cloneable and passable to children.
///
/// # Examples
///
/// ```
/// use procactor_core::SimpleQueue;
///
/// let q: SimpleQueue<String> = SimpleQueue::new().unwrap();
/// q.put("x".to_string()).unwrap();
/// assert!(!q.is_empty());
/// assert_eq!(q.get().unwrap(), "x");
/// ```
pub struct SimpleQueue<T> {
    q: Queue<T>,
}

impl<T> fmt::Debug for SimpleQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SimpleQueue").field(&self.q).finish()
    }
}

impl<T> Clone for SimpleQueue<T> {
    /// Another handle to the same queue (see [`Queue`]'s `Clone`).
    fn clone(&self) -> Self {
        SimpleQueue { q: self.q.clone() }
    }
}

impl<T> Serialize for SimpleQueue<T> {
    /// As [`Queue`]'s `Serialize`.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.q.serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for SimpleQueue<T> {
    /// As [`Queue`]'s `Deserialize`.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(SimpleQueue {
            q: Queue::deserialize(d)?,
        })
    }
}

impl<T: Message> SimpleQueue<T> {
    /// A new, unbounded queue (see [`Queue::new`]): `put` never waits for room.
    ///
    /// # Errors
    ///
    /// The kernel refused the shared memory.
    pub fn new() -> Result<Self, Error> {
        Ok(SimpleQueue { q: Queue::new()? })
    }

    /// Puts `item` (never waits for room: the queue is unbounded, see [`Queue::new`]).
    ///
    /// # Errors
    ///
    /// As [`Queue::put`].
    pub fn put(&self, item: T) -> Result<(), PutError<T>> {
        self.q.put(item)
    }

    /// Takes the next item, waiting for one.
    ///
    /// # Errors
    ///
    /// As [`Queue::get`].
    pub fn get(&self) -> Result<T, GetError> {
        self.q.get()
    }

    /// Whether the queue holds no item (advisory).
    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
    }

    /// No more `put` from this handle (see [`Queue::close`]).
    pub fn close(&self) {
        self.q.close();
    }
}

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
    q: Queue<T>,
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

// ------------------------------------------------------------------ iterators

/// A blocking iterator over a queue's items, from [`Queue::iter`] (also
/// [`SimpleQueue::iter`], [`JoinableQueue::iter`] and `for x in &queue`), as
/// `std::sync::mpsc::Receiver::iter`: each `next` waits for an item.
///
/// It ends when `get` fails: normally with [`GetError::Disconnected`] (every producer
/// handle closed or dropped and the queue drained; Python has no such signal, its
/// consumers loop on a sentinel). It also ends at [`GetError::Broken`] (nothing will ever
/// come) and at [`GetError::Decode`] (an item that is not a `T`; that item is dropped,
/// as `get` drops it, and the queue stays usable): an iterator yields plain `T`s, so
/// instead of skipping a bad item silently it stops there, and [`error`](QueueIter::error)
/// tells why it stopped (call `get` in a loop to handle each error yourself). After it has
/// ended it stays ended (it is fused).
///
/// A handle that has [`close`](Queue::close)d itself still counts as no producer, so a
/// consumer that only reads ends once the queue is drained and every other producer is
/// gone. A consumer holding an open producer handle of its own (e.g. the parent that
/// created the queue and never closed it) never sees `Disconnected`: close it first.
pub struct QueueIter<'a, T> {
    q: &'a Queue<T>,
    end: EndsAtError<GetError>,
}

impl<T> fmt::Debug for QueueIter<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueIter")
            .field("queue", self.q)
            .field("error", &self.end.error())
            .finish()
    }
}

impl<T> QueueIter<'_, T> {
    /// Why the iteration ended (`None` while it has not): [`GetError::Disconnected`] for
    /// the normal end.
    pub fn error(&self) -> Option<&GetError> {
        self.end.error()
    }
}

impl<T: Message> Iterator for QueueIter<'_, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        let src = &self.q;
        self.end.step(|| src.get())
    }
}

impl<T: Message> std::iter::FusedIterator for QueueIter<'_, T> {}

/// A non-blocking iterator over the items a queue holds now, from [`Queue::try_iter`]
/// (also [`SimpleQueue::try_iter`], [`JoinableQueue::try_iter`]), as
/// `std::sync::mpsc::Receiver::try_iter`: each `next` is a [`Queue::try_get`].
///
/// It ends at the first `try_get` that fails: [`TryGetError::Empty`] (nothing there now, or
/// another consumer is taking an item right now), or any other error, as
/// [`QueueIter`] does; [`error`](QueueTryIter::error) tells which. It never waits, so on
/// an empty queue it yields nothing at once. Items put while it runs may or may not be
/// seen. It is fused: once ended, it stays ended.
pub struct QueueTryIter<'a, T> {
    q: &'a Queue<T>,
    end: EndsAtError<TryGetError>,
}

impl<T> fmt::Debug for QueueTryIter<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueTryIter")
            .field("queue", self.q)
            .field("error", &self.end.error())
            .finish()
    }
}

impl<T> QueueTryIter<'_, T> {
    /// Why the iteration ended (`None` while it has not): [`TryGetError::Empty`] for the
    /// usual end.
    pub fn error(&self) -> Option<&TryGetError> {
        self.end.error()
    }
}

impl<T: Message> Iterator for QueueTryIter<'_, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        let src = &self.q;
        self.end.step(|| src.try_get())
    }
}

impl<T: Message> std::iter::FusedIterator for QueueTryIter<'_, T> {}

impl<T: Message> Queue<T> {
    /// A blocking iterator over the items: each step is a [`get`](Queue::get); it ends at
    /// [`GetError::Disconnected`] (every producer gone, queue drained) or at any other
    /// error, see [`QueueIter`]. `for x in &q` is the same.
    ///
    /// # Examples
    ///
    /// A child produces, the parent iterates to the end:
    ///
    /// ```
    /// use procactor_core::{Process, Queue};
    ///
    /// fn produce(q: Queue<u32>) {
    ///     for i in 0..5 {
    ///         q.put(i).unwrap();
    ///     }
    /// } // the child's handle goes: its producer is gone
    ///
    /// fn main() {
    ///     procactor_core::init();
    ///     let q: Queue<u32> = Queue::new().unwrap();
    ///     let mut child = Process::new(produce, q.clone()).start().unwrap();
    ///     q.close(); // the parent only consumes
    ///     let got: Vec<u32> = q.iter().collect();
    ///     assert_eq!(got, [0, 1, 2, 3, 4]);
    ///     child.join().unwrap();
    /// }
    /// ```
    pub fn iter(&self) -> QueueIter<'_, T> {
        QueueIter {
            q: self,
            end: EndsAtError::new(),
        }
    }

    /// The items there now, without waiting: each step is a [`try_get`](Queue::try_get);
    /// it ends at the first [`TryGetError::Empty`] (or other error), see [`QueueTryIter`].
    ///
    /// # Examples
    ///
    /// ```
    /// use procactor_core::Queue;
    ///
    /// let q: Queue<u32> = Queue::new().unwrap();
    /// assert_eq!(q.try_iter().count(), 0); // empty: nothing, at once
    /// q.put(1).unwrap();
    /// q.put(2).unwrap();
    /// assert_eq!(q.try_iter().collect::<Vec<_>>(), [1, 2]);
    /// ```
    pub fn try_iter(&self) -> QueueTryIter<'_, T> {
        QueueTryIter {
            q: self,
            end: EndsAtError::new(),
        }
    }
}

impl<'a, T: Message> IntoIterator for &'a Queue<T> {
    type Item = T;
    type IntoIter = QueueIter<'a, T>;

    /// As [`Queue::iter`].
    fn into_iter(self) -> QueueIter<'a, T> {
        self.iter()
    }
}

impl<T: Message> SimpleQueue<T> {
    /// As [`Queue::iter`]: a blocking iterator that ends at
    /// [`GetError::Disconnected`] (or any other error, see [`QueueIter`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use procactor_core::SimpleQueue;
    ///
    /// let q: SimpleQueue<String> = SimpleQueue::new().unwrap();
    /// q.put("a".into()).unwrap();
    /// q.put("b".into()).unwrap();
    /// q.close(); // the only producer handle: once drained, the iteration ends
    /// assert_eq!(q.iter().collect::<Vec<_>>(), ["a", "b"]);
    /// ```
    pub fn iter(&self) -> QueueIter<'_, T> {
        self.q.iter()
    }

    /// As [`Queue::try_iter`] (a `SimpleQueue` has no `try_get` of its own, as in
    /// Python; this is the non-blocking way to drain it).
    pub fn try_iter(&self) -> QueueTryIter<'_, T> {
        self.q.try_iter()
    }
}

impl<'a, T: Message> IntoIterator for &'a SimpleQueue<T> {
    type Item = T;
    type IntoIter = QueueIter<'a, T>;

    /// As [`SimpleQueue::iter`].
    fn into_iter(self) -> QueueIter<'a, T> {
        self.iter()
    }
}

impl<T: Message> JoinableQueue<T> {
    /// As [`Queue::iter`]. Each item taken is still an unfinished task: call
    /// [`task_done`](JoinableQueue::task_done) for every item the iterator yields, or
    /// [`join`](JoinableQueue::join) never returns.
    ///
    /// # Examples
    ///
    /// ```
    /// use procactor_core::JoinableQueue;
    ///
    /// let q: JoinableQueue<u32> = JoinableQueue::new().unwrap();
    /// q.put(1).unwrap();
    /// q.put(2).unwrap();
    /// q.close();
    /// let mut sum = 0;
    /// for x in &q {
    ///     sum += x;
    ///     q.task_done().unwrap(); // still needed for every item
    /// }
    /// assert_eq!(sum, 3);
    /// q.join(); // every task is done
    /// ```
    pub fn iter(&self) -> QueueIter<'_, T> {
        self.q.iter()
    }

    /// As [`Queue::try_iter`]; each item taken still needs its
    /// [`task_done`](JoinableQueue::task_done).
    pub fn try_iter(&self) -> QueueTryIter<'_, T> {
        self.q.try_iter()
    }
}

impl<'a, T: Message> IntoIterator for &'a JoinableQueue<T> {
    type Item = T;
    type IntoIter = QueueIter<'a, T>;

    /// As [`JoinableQueue::iter`].
    fn into_iter(self) -> QueueIter<'a, T> {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::EncodeError;

    #[test]
    fn values_round_trip_in_order() {
        let q: Queue<(u64, String)> = Queue::with_capacity_bytes(128).unwrap();
        let t = {
            let q = q.clone();
            std::thread::spawn(move || {
                for i in 0..2000u64 {
                    q.put((i, "x".repeat((i % 300) as usize))).unwrap();
                }
            })
        };
        for i in 0..2000u64 {
            let (n, s) = q.get_timeout(Duration::from_secs(10)).unwrap();
            assert_eq!((n, s.len()), (i, (i % 300) as usize));
        }
        t.join().unwrap();
    }

    #[test]
    fn a_handle_inside_an_item_is_an_encode_error_and_the_item_comes_back() {
        let q: Queue<Queue<u8>> = Queue::new().unwrap();
        let inner: Queue<u8> = Queue::new().unwrap();
        match q.put(inner) {
            Err(PutError::Encode(back, EncodeError(m))) => {
                assert!(m.contains("Pipe"), "{m}");
                back.put(1).unwrap();
                assert_eq!(back.get().unwrap(), 1);
            }
            other => panic!("{other:?}"),
        }
        assert!(q.is_empty());
    }

    #[test]
    fn wrong_type_is_a_decode_error_and_the_queue_goes_on() {
        let q: Queue<String> = Queue::new().unwrap();
        q.put("text".into()).unwrap();
        q.put("more".into()).unwrap();
        let wrong: Queue<u64> = Queue {
            h: q.h.clone(),
            _t: PhantomData,
        };
        assert!(matches!(wrong.get(), Err(GetError::Decode(_))));
        assert_eq!(q.get().unwrap(), "more");
    }

    #[test]
    fn clones_count_as_producers_until_closed_or_dropped() {
        let q: Queue<u8> = Queue::new().unwrap();
        let a = q.clone();
        let closed = {
            let c = q.clone();
            c.close();
            c.clone()
        };
        assert!(closed.is_closed());
        q.close();
        assert_eq!(q.try_get(), Err(TryGetError::Empty)); // `a` is open
        a.put(9).unwrap();
        drop(a);
        assert_eq!(q.get().unwrap(), 9);
        assert_eq!(q.get(), Err(GetError::Disconnected));
        assert!(matches!(closed.put(1), Err(PutError::Closed(1))));
    }

    #[test]
    fn serialized_handles_need_a_descriptor_table_and_keep_the_count() {
        let q: Queue<u8> = Queue::new().unwrap();
        let mut buf = Vec::new();
        assert!(codec::encode(&q, &mut buf, None).is_err());
        let mut fds = Vec::new();
        codec::encode(&q, &mut buf, Some(&mut fds)).unwrap();
        q.close();
        // the travelling handle keeps the queue connected
        assert_eq!(q.try_get(), Err(TryGetError::Empty));
        let back: Queue<u8> = codec::decode(&buf, fds).unwrap();
        back.put(3).unwrap();
        assert_eq!(q.get().unwrap(), 3);
        drop(back);
        assert_eq!(q.get(), Err(GetError::Disconnected));
    }

    #[test]
    fn joinable_counts_tasks_and_undoes_failed_puts() {
        let q: JoinableQueue<u8> = JoinableQueue::bounded(1).unwrap();
        q.put(1).unwrap();
        assert!(q.try_put(2).unwrap_err().is_full());
        assert_eq!(q.unfinished_tasks(), 1);
        assert_eq!(q.get().unwrap(), 1);
        assert!(q.join_timeout(Duration::from_millis(5)).is_err());
        q.task_done().unwrap();
        assert!(q.join_timeout(Duration::from_millis(5)).is_ok());
        assert_eq!(q.task_done(), Err(TaskDoneError));
    }

    /// Fills a queue of `u8` (each item: 1 CBOR byte + 4 header bytes) with `try_put`
    /// until `Full`; returns how many went in.
    fn fill(put: impl Fn(u8) -> Result<(), TryPutError<u8>>) -> u8 {
        let mut n = 0u8;
        loop {
            match put(n) {
                Ok(()) => n += 1,
                Err(e) => {
                    assert!(e.is_full(), "{e:?}");
                    assert_eq!(e.into_inner(), n);
                    return n;
                }
            }
            assert!(n < 64, "a 64-byte ring took {n} items");
        }
    }

    #[test]
    fn a_bounded_queue_is_also_full_when_its_ring_is_out_of_bytes() {
        let q: Queue<u8> = Queue::bounded_with_capacity_bytes(1000, 1).unwrap();
        assert_eq!((q.capacity_bytes(), q.maxsize()), (64, 1000));
        assert!(!q.is_full());
        // 12 items of 5 bytes: 4 bytes left, not enough for another
        assert_eq!(fill(|x| q.try_put(x)), 12);
        assert_eq!(q.len(), 12);
        assert!(matches!(
            q.put_timeout(99, Duration::from_millis(5)),
            Err(PutTimeoutError::Timeout(99))
        ));
        // one get makes room for one more
        assert_eq!(q.try_get().unwrap(), 0);
        q.try_put(12).unwrap();
        for i in 1..=12 {
            assert_eq!(q.try_get().unwrap(), i);
        }
        assert!(q.is_empty());
    }

    #[test]
    fn an_unbounded_queue_with_a_tiny_ring_is_never_full() {
        let q: Queue<u32> = Queue::with_capacity_bytes(1).unwrap();
        assert_eq!((q.capacity_bytes(), q.maxsize()), (64, 0));
        for i in 0..10_000 {
            q.try_put(i).unwrap();
            assert!(!q.is_full());
        }
        assert!(!q.clone().is_full(), "every handle sees the same ring");
        assert_eq!(q.len(), 10_000);
        for i in 0..10_000 {
            assert_eq!(q.try_get().unwrap(), i);
        }
        assert!(q.is_empty());
    }

    #[test]
    fn an_unbounded_joinable_queue_counts_every_task_without_waiting() {
        let q: JoinableQueue<u8> = JoinableQueue::with_capacity_bytes(64).unwrap();
        for i in 0..200 {
            q.try_put(i).unwrap();
        }
        assert!(!q.is_full());
        assert_eq!(q.unfinished_tasks(), 200);
        for i in 0..200 {
            assert_eq!(q.try_get().unwrap(), i);
            q.task_done().unwrap();
        }
        assert!(q.join_timeout(Duration::from_millis(5)).is_ok());
    }

    /// Serializes as a long run of bytes, then fails.
    struct FailsAfter(usize);

    impl Serialize for FailsAfter {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::{Error as _, SerializeSeq};
            let mut seq = s.serialize_seq(None)?;
            for _ in 0..self.0 {
                seq.serialize_element(&0xEEu8)?;
            }
            Err(S::Error::custom("gave up half way"))
        }
    }

    impl<'de> Deserialize<'de> for FailsAfter {
        fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
            Err(D::Error::custom("never sent"))
        }
    }

    #[derive(Serialize, Deserialize)]
    enum Item {
        Good(String),
        Bad(FailsAfter),
    }

    #[test]
    fn an_item_that_fails_half_way_through_encoding_leaves_the_handle_usable() {
        let q: Queue<Item> = Queue::with_capacity_bytes(64).unwrap();
        for n in [0, 3, 100, 1 << 16] {
            match q.put(Item::Bad(FailsAfter(n))) {
                Err(PutError::Encode(Item::Bad(FailsAfter(m)), EncodeError(msg))) => {
                    assert_eq!(m, n);
                    assert!(msg.contains("half way"), "{msg}");
                }
                other => panic!("{other:?}"),
            }
            assert!(q.is_empty());
            // the thread's encode buffer holds nothing of the failed item
            q.put(Item::Good(format!("after {n}"))).unwrap();
            match q.try_get() {
                Ok(Item::Good(s)) => assert_eq!(s, format!("after {n}")),
                Ok(Item::Bad(_)) => panic!("a Bad item was delivered"),
                Err(e) => panic!("{e}"),
            }
        }
        assert!(!q.is_broken());
        assert_eq!(q.try_get().err(), Some(TryGetError::Empty));
    }

    #[test]
    fn the_builder_sets_a_max_message_size_that_put_enforces_with_too_large() {
        let q: Queue<Vec<u8>> = Queue::builder()
            .capacity_bytes(4096)
            .max_message_size(1000)
            .build()
            .unwrap();
        assert_eq!(q.max_message_size(), 1000);
        assert_eq!(q.capacity_bytes(), 4096);
        let e = q.put(vec![7; 5000]).unwrap_err();
        assert!(e.is_too_large(), "{e:?}");
        assert_eq!(e.into_inner(), vec![7; 5000]);
        assert!(q.is_empty());
        q.put(vec![1; 10]).unwrap();
        assert_eq!(q.try_get().unwrap(), vec![1; 10]);

        let j: JoinableQueue<Vec<u8>> = Queue::builder()
            .maxsize(2)
            .max_message_size(100)
            .build_joinable()
            .unwrap();
        assert!(j.put(vec![0; 200]).unwrap_err().is_too_large());
        j.join_timeout(Duration::from_millis(1))
            .expect("a refused put counts no task");
        let s: SimpleQueue<String> = Queue::builder().max_message_size(8).build_simple().unwrap();
        assert!(s
            .put("far more than eight bytes".into())
            .unwrap_err()
            .is_too_large());
        assert!(Queue::<u8>::builder().max_message_size(0).build().is_err());
    }
}
