//! [`RedisQueue`] and [`RedisJoinableQueue`]: procactor's queue API on a Redis stream.

use crate::conn::RedisError;
use crate::stream::{Config, Core, Delivered, Failure};
use procactor_core::{
    codec, DecodeError, GetError, GetTimeoutError, JoinTimeoutError, Message, PutError,
    PutTimeoutError, TaskDoneError, TryGetError, TryPutError,
};
use procactor_transports::deadline::Deadline;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

/// One item as [`RedisQueue::get_delivery`] returns it: the value, its stream entry id,
/// and how many times it has been delivered (1 the first time; more when a consumer
/// holding it died, or kept it longer than the visibility timeout, and it was taken
/// over).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery<T> {
    /// The item.
    pub value: T,
    /// The stream entry id (`"<ms>-<seq>"`).
    pub id: String,
    /// Deliveries so far, this one included.
    pub deliveries: u64,
}

/// Options of a Redis queue before it connects: `maxsize`, visibility timeout, consumer
/// group and read-ahead.
///
/// # Examples
///
/// ```no_run
/// use procactor_redis::RedisQueue;
/// use std::time::Duration;
///
/// let q = RedisQueue::<u64>::builder("redis://127.0.0.1:6379/", "jobs")
///     .maxsize(1000)
///     .visibility_timeout(Duration::from_secs(10))
///     .connect()
///     .unwrap();
/// q.put(1).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct Builder<T> {
    cfg: Config,
    _t: PhantomData<fn() -> T>,
}

impl<T: Message> Builder<T> {
    fn new(url: &str, name: &str) -> Self {
        Builder {
            cfg: Config::new(url, name),
            _t: PhantomData,
        }
    }

    /// Bounds the queue: `put` waits while `maxsize` or more items are undelivered (0,
    /// the default: unbounded). The bound is checked before each `XADD` (not with
    /// `MAXLEN`, which would drop old items), so concurrent producers can overshoot it
    /// by at most one batch each.
    pub fn maxsize(mut self, n: usize) -> Self {
        self.cfg.maxsize = n;
        self
    }

    /// How long an item may stay delivered and unacknowledged before another consumer
    /// takes it over (default 30 s). Longer than the longest processing time, or items
    /// are processed twice.
    pub fn visibility_timeout(mut self, d: Duration) -> Self {
        self.cfg.visibility_ms = d.as_millis().max(1) as u64;
        self
    }

    /// The consumer group (default `"procactor"`). Each group receives every item once;
    /// two groups on one stream each get a copy.
    pub fn group(mut self, group: &str) -> Self {
        self.cfg.group = group.to_string();
        self
    }

    /// How many items one read fetches ahead (default 1). More is faster, but items read
    /// ahead by one consumer wait for it (and are taken over if it dies).
    pub fn prefetch(mut self, n: usize) -> Self {
        self.cfg.prefetch = n.max(1);
        self
    }

    /// Connects a [`RedisQueue`] (creating the stream and group if needed).
    ///
    /// # Errors
    ///
    /// The URL is invalid or the server cannot be reached.
    pub fn connect(self) -> Result<RedisQueue<T>, RedisError> {
        Ok(RedisQueue {
            core: Core::connect(self.cfg, true)?,
            _t: PhantomData,
        })
    }

    /// Connects a [`RedisJoinableQueue`] (creating the stream and group if needed).
    ///
    /// # Errors
    ///
    /// The URL is invalid or the server cannot be reached.
    pub fn connect_joinable(self) -> Result<RedisJoinableQueue<T>, RedisError> {
        Ok(RedisJoinableQueue {
            core: Core::connect(self.cfg, false)?,
            _t: PhantomData,
        })
    }
}

fn encode<T: Message>(item: &T) -> Result<Vec<u8>, procactor_core::EncodeError> {
    let mut buf = Vec::new();
    codec::encode(item, &mut buf, None)?;
    Ok(buf)
}

/// A put's failure (`Full`: its deadline passed).
fn put_failure<T>(item: T, f: Failure) -> TryPutError<T> {
    match f {
        Failure::Full => TryPutError::Full(item),
        Failure::Closed => TryPutError::Closed(item),
        Failure::Empty | Failure::Redis(_) => TryPutError::Broken(item),
    }
}

/// A put without a deadline: the stream layer reports `Full` only once a deadline
/// passed, so `Full` does not come here; were it to, it would be a broken state.
fn blocking_put<T>(e: TryPutError<T>) -> PutError<T> {
    match e {
        TryPutError::Closed(t) => PutError::Closed(t),
        TryPutError::Encode(t, e) => PutError::Encode(t, e),
        TryPutError::TooLarge(t) => PutError::TooLarge(t),
        TryPutError::Full(t) | TryPutError::Broken(t) => PutError::Broken(t),
    }
}

fn timed_put<T>(e: TryPutError<T>) -> PutTimeoutError<T> {
    match e {
        TryPutError::Full(t) => PutTimeoutError::Timeout(t),
        TryPutError::Closed(t) => PutTimeoutError::Closed(t),
        TryPutError::Encode(t, e) => PutTimeoutError::Encode(t, e),
        TryPutError::TooLarge(t) => PutTimeoutError::TooLarge(t),
        TryPutError::Broken(t) => PutTimeoutError::Broken(t),
    }
}

/// A get's failure (`Empty`: its deadline passed).
fn get_failure(f: Failure) -> TryGetError {
    match f {
        Failure::Empty => TryGetError::Empty,
        Failure::Closed => TryGetError::Disconnected,
        Failure::Full | Failure::Redis(_) => TryGetError::Broken,
    }
}

/// A get without a deadline: `Empty` does not come here (see [`blocking_put`]).
fn blocking_get(e: TryGetError) -> GetError {
    match e {
        TryGetError::Disconnected => GetError::Disconnected,
        TryGetError::Decode(d) => GetError::Decode(d),
        TryGetError::Empty | TryGetError::Broken => GetError::Broken,
    }
}

fn timed_get(e: TryGetError) -> GetTimeoutError {
    match e {
        TryGetError::Empty => GetTimeoutError::Timeout,
        TryGetError::Disconnected => GetTimeoutError::Disconnected,
        TryGetError::Decode(d) => GetTimeoutError::Decode(d),
        TryGetError::Broken => GetTimeoutError::Broken,
    }
}

/// `later`: an undecodable entry is acknowledged with the handle's next read round (the
/// async methods, which make no blocking round trip), else at once.
fn decode<T: Message>(core: &Core, d: Delivered, later: bool) -> Result<Delivery<T>, TryGetError> {
    let value = match &d.payload {
        Some(bytes) => codec::decode::<T>(bytes, Vec::new()).map_err(TryGetError::Decode),
        None => Err(TryGetError::Decode(DecodeError {
            expected: std::any::type_name::<T>(),
            message: format!(
                "stream entry {} has no `{}` field",
                d.id,
                crate::PAYLOAD_FIELD
            ),
        })),
    };
    match value {
        Ok(value) => Ok(Delivery {
            value,
            id: d.id,
            deliveries: d.deliveries,
        }),
        Err(e) => {
            // an undecodable entry is dropped, as a local queue drops it
            if later {
                core.discard_later(&d.id);
            } else {
                let _ = core.discard(&d.id);
            }
            Err(e)
        }
    }
}

macro_rules! queue_common {
    ($ty:ident, $auto_ack:expr) => {
        impl<T> fmt::Debug for $ty<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("name", &self.core.cfg.name)
                    .field("group", &self.core.cfg.group)
                    .field("consumer", &self.core.consumer)
                    .finish()
            }
        }

        /// A new handle on the same stream, with its own connection and consumer name
        /// (connected on first use).
        impl<T> Clone for $ty<T> {
            fn clone(&self) -> Self {
                $ty {
                    core: Core::lazy(self.core.cfg.clone(), $auto_ack),
                    _t: PhantomData,
                }
            }
        }

        /// A handle travels as its URL, stream name, group and options; the receiving
        /// process connects on first use, with a consumer name of its own.
        impl<T> Serialize for $ty<T> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                self.core.cfg.serialize(s)
            }
        }

        impl<'de, T> Deserialize<'de> for $ty<T> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                Ok($ty {
                    core: Core::lazy(Config::deserialize(d)?, $auto_ack),
                    _t: PhantomData,
                })
            }
        }

        impl<T: Message> $ty<T> {
            /// Connects to the stream `name` at `url` with the default options
            /// (unbounded, visibility timeout 30 s, group `"procactor"`).
            ///
            /// # Errors
            ///
            /// The URL is invalid or the server cannot be reached.
            pub fn connect(url: &str, name: &str) -> Result<Self, RedisError> {
                Ok($ty {
                    core: Core::connect(Config::new(url, name), $auto_ack)?,
                    _t: PhantomData,
                })
            }

            /// Options before connecting.
            pub fn builder(url: &str, name: &str) -> Builder<T> {
                Builder::new(url, name)
            }

            /// Puts `item` (`XADD`), waiting for room if the queue is bounded.
            ///
            /// # Errors
            ///
            /// [`PutError::Closed`] after [`close`](Self::close),
            /// [`PutError::Encode`], [`PutError::Broken`] when Redis failed (see
            /// [`last_error`](Self::last_error)); the item comes back.
            pub fn put(&self, item: T) -> Result<(), PutError<T>> {
                self.put_inner(item, None).map_err(blocking_put)
            }

            /// As [`put`](Self::put), giving up with [`PutTimeoutError::Timeout`] after
            /// `timeout`.
            ///
            /// # Errors
            ///
            /// As `put`, and `Timeout`.
            pub fn put_timeout(
                &self,
                item: T,
                timeout: Duration,
            ) -> Result<(), PutTimeoutError<T>> {
                self.put_inner(item, Deadline::after(timeout).instant())
                    .map_err(timed_put)
            }

            /// As [`put`](Self::put), with [`TryPutError::Full`] at once when there is
            /// no room.
            ///
            /// # Errors
            ///
            /// As `put`, and `Full`.
            pub fn try_put(&self, item: T) -> Result<(), TryPutError<T>> {
                self.put_inner(item, Some(Instant::now()))
            }

            fn put_inner(&self, item: T, deadline: Option<Instant>) -> Result<(), TryPutError<T>> {
                let bytes = match encode(&item) {
                    Ok(b) => b,
                    Err(e) => return Err(TryPutError::Encode(item, e)),
                };
                self.core
                    .put(std::slice::from_ref(&bytes), deadline)
                    .map_err(|f| put_failure(item, f))
            }

            /// Puts every item in one pipelined round trip (one `XADD` each), in order.
            /// A bounded queue waits until the whole batch fits (or the queue is empty).
            ///
            /// # Errors
            ///
            /// As [`put`](Self::put); the items come back (none of them was put, except
            /// after `Broken`, when an unknown prefix may have been).
            pub fn put_many(&self, items: Vec<T>) -> Result<(), PutError<Vec<T>>> {
                let mut bytes = Vec::with_capacity(items.len());
                for item in &items {
                    match encode(item) {
                        Ok(b) => bytes.push(b),
                        Err(e) => return Err(PutError::Encode(items, e)),
                    }
                }
                self.core
                    .put(&bytes, None)
                    .map_err(|f| blocking_put(put_failure(items, f)))
            }

            /// Takes the next item, waiting for one: a stale item taken over from a dead
            /// consumer first (`XAUTOCLAIM`), else a new one (`XREADGROUP`).
            ///
            /// # Errors
            ///
            /// [`GetError::Disconnected`] after [`close`](Self::close),
            /// [`GetError::Decode`] (the entry is dropped), [`GetError::Broken`] when
            /// Redis failed.
            pub fn get(&self) -> Result<T, GetError> {
                self.get_delivery_deadline(None)
                    .map(|d| d.value)
                    .map_err(blocking_get)
            }

            /// As [`get`](Self::get), giving up with [`GetTimeoutError::Timeout`] after
            /// `timeout`.
            ///
            /// # Errors
            ///
            /// As `get`, and `Timeout`.
            pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetTimeoutError> {
                self.get_delivery_deadline(Deadline::after(timeout).instant())
                    .map(|d| d.value)
                    .map_err(timed_get)
            }

            /// As [`get`](Self::get), with [`TryGetError::Empty`] at once when nothing
            /// is there.
            ///
            /// # Errors
            ///
            /// As `get`, and `Empty`.
            pub fn try_get(&self) -> Result<T, TryGetError> {
                self.get_delivery_deadline(Some(Instant::now()))
                    .map(|d| d.value)
            }

            /// As [`get_timeout`](Self::get_timeout), with the entry's id and delivery
            /// count.
            ///
            /// # Errors
            ///
            /// As `get_timeout`.
            pub fn get_delivery(&self, timeout: Duration) -> Result<Delivery<T>, GetTimeoutError> {
                self.get_delivery_deadline(Deadline::after(timeout).instant())
                    .map_err(timed_get)
            }

            /// `Empty`: the deadline passed.
            fn get_delivery_deadline(
                &self,
                deadline: Option<Instant>,
            ) -> Result<Delivery<T>, TryGetError> {
                let d = self.core.get(deadline).map_err(get_failure)?;
                decode(&self.core, d, false)
            }

            /// As [`put`](Self::put), as a future: usable on any executor (tokio's
            /// runtimes, `futures::executor::block_on`, …), with no thread of its own
            /// (see the [crate docs](crate#async)). A bounded queue's wait for room
            /// is a timed re-check, as `put`'s (200 µs, doubling up to 20 ms), one for
            /// all the `put_async` and `join_async` waiting on this handle: its answer
            /// lets in as many waiting puts as there is room for, in the order they are
            /// polled (not a queue). For a deadline, wrap the future in your runtime's
            /// timeout.
            ///
            /// # Cancel safety
            ///
            /// Not cancel safe: a dropped `put_async` may have put its item. Dropped
            /// before its `XADD` was written to the socket (waiting for its turn on the
            /// handle's write connection, or for room), it put nothing; dropped with
            /// the command partly written, it closes that connection and the server
            /// discards the incomplete command: nothing put; dropped after the
            /// command was written whole, the item is put (once; the reply is read by
            /// the handle's next async put). The caller of a dropped future cannot
            /// tell the last two apart; a reader can (the item shows up or not).
            ///
            /// # Errors
            ///
            /// As [`put`](Self::put).
            ///
            /// # Examples
            ///
            /// ```no_run
            /// # use procactor_redis::RedisQueue;
            /// let q = RedisQueue::<u32>::connect("redis://127.0.0.1:6379/", "q").unwrap();
            /// futures::executor::block_on(async {
            ///     q.put_async(1).await.unwrap();
            ///     assert_eq!(q.get_async().await.unwrap(), 1);
            /// });
            /// ```
            pub async fn put_async(&self, item: T) -> Result<(), PutError<T>> {
                let bytes = match encode(&item) {
                    Ok(b) => b,
                    Err(e) => return Err(PutError::Encode(item, e)),
                };
                // (a closed handle: the future's first poll says so)
                crate::aio::put(&self.core, vec![bytes])
                    .await
                    .map_err(|f| blocking_put(put_failure(item, f)))
            }

            /// As [`get`](Self::get), as a future: usable on any executor, with no
            /// thread of its own (see the [crate docs](crate#async)). It waits with
            /// `XREADGROUP … BLOCK` rounds of at most a second on the handle's read
            /// connection; for a deadline, wrap it in your runtime's timeout.
            ///
            /// # Cancel safety
            ///
            /// Cancel safe: a dropped `get_async` loses no item. An item is taken
            /// from the handle only in the poll that returns it; the entries of a read
            /// round still under way when the future is dropped are read all the same
            /// (by the handle's next async get) and handed to the handle's next get.
            /// Should the handle be dropped first, they stay pending in the consumer
            /// group, and another consumer takes them over after the visibility
            /// timeout, as a dead consumer's.
            ///
            /// # Errors
            ///
            /// As [`get`](Self::get). A server that is gone (connection closed, or
            /// silent for 31 s while it owes a reply) ends the future with
            /// [`GetError::Broken`] (see [`last_error`](Self::last_error)).
            pub async fn get_async(&self) -> Result<T, GetError> {
                self.get_delivery_async().await.map(|d| d.value)
            }

            /// As [`get_async`](Self::get_async), with the entry's id and delivery
            /// count.
            ///
            /// # Cancel safety
            ///
            /// As [`get_async`](Self::get_async): cancel safe.
            ///
            /// # Errors
            ///
            /// As `get_async`.
            pub async fn get_delivery_async(&self) -> Result<Delivery<T>, GetError> {
                let d = crate::aio::get(&self.core)
                    .await
                    .map_err(|f| blocking_get(get_failure(f)))?;
                decode(&self.core, d, true).map_err(blocking_get)
            }

            /// Items put and not yet delivered to any consumer (`XLEN` minus the
            /// group's pending entries); 0 when Redis cannot be reached.
            pub fn len(&self) -> usize {
                self.core.len().unwrap_or(0)
            }

            /// Whether [`len`](Self::len) is 0.
            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }

            /// Whether a bounded queue has `maxsize` or more undelivered items.
            pub fn is_full(&self) -> bool {
                self.core.cfg.maxsize > 0 && self.len() >= self.core.cfg.maxsize
            }

            /// The bound (0: unbounded).
            pub fn maxsize(&self) -> usize {
                self.core.cfg.maxsize
            }

            /// Closes this handle: its `put` says `Closed` and its `get` says
            /// `Disconnected` from now on. Other handles, here or elsewhere, are not
            /// affected, and the stream stays in Redis.
            pub fn close(&self) {
                self.core.close()
            }

            /// Whether [`close`](Self::close) was called on this handle.
            pub fn is_closed(&self) -> bool {
                self.core.is_closed()
            }

            /// The stream's key.
            pub fn name(&self) -> &str {
                &self.core.cfg.name
            }

            /// This handle's consumer name in the group (`host-pid-n`).
            pub fn consumer(&self) -> &str {
                &self.core.consumer
            }

            /// The last Redis error this handle met (behind a `Broken`).
            pub fn last_error(&self) -> Option<String> {
                self.core.last_error()
            }
        }
    };
}

/// A [`Queue`](procactor_core::Queue) on a Redis stream: several processes on several
/// hosts put and get; each item goes to one consumer.
///
/// `put` is `XADD` of the item's CBOR (as [`procactor_core::codec`] encodes it) in the
/// field [`PAYLOAD_FIELD`](crate::PAYLOAD_FIELD); `get` is `XREADGROUP` in the consumer
/// group; the item is acknowledged and deleted (`XACK` + `XDEL`) with this handle's next
/// command. A consumer that dies between reading an item and that acknowledgement has
/// it taken over by another after the visibility timeout: delivery is at-least-once.
///
/// # Examples
///
/// ```no_run
/// use procactor_redis::ConnectRedis;
/// use procactor_core::Queue;
///
/// let q = Queue::<String>::connect_redis("redis://127.0.0.1:6379/", "greetings").unwrap();
/// q.put("hello".to_string()).unwrap();
/// assert_eq!(q.get().unwrap(), "hello");
/// ```
pub struct RedisQueue<T> {
    core: Core,
    _t: PhantomData<fn() -> T>,
}

queue_common!(RedisQueue, true);

/// A [`JoinableQueue`](procactor_core::JoinableQueue) on a Redis stream: as
/// [`RedisQueue`], but an item stays pending until [`task_done`](Self::task_done)
/// acknowledges it, and [`join`](Self::join) waits until every item put was.
///
/// Precisely: `task_done` acknowledges and deletes (`XACK` + `XDEL`) the oldest entry
/// this handle got and has not acknowledged, so the stream holds exactly the items not
/// yet done (undelivered, or delivered and pending); `join` returns when its length
/// (`XLEN`) is 0. An item whose consumer died is delivered again after the visibility
/// timeout and counts until some consumer calls `task_done` for it.
///
/// # Examples
///
/// ```no_run
/// use procactor_redis::ConnectRedis;
/// use procactor_core::JoinableQueue;
/// use std::time::Duration;
///
/// let q = JoinableQueue::<u32>::connect_redis("redis://127.0.0.1:6379/", "tasks").unwrap();
/// q.put(7).unwrap();
/// let d = q.get_delivery(Duration::from_secs(1)).unwrap();
/// assert_eq!((d.value, d.deliveries), (7, 1));
/// q.task_done().unwrap();
/// q.join_timeout(Duration::from_secs(1)).unwrap();
/// ```
pub struct RedisJoinableQueue<T> {
    core: Core,
    _t: PhantomData<fn() -> T>,
}

queue_common!(RedisJoinableQueue, false);

impl<T: Message> RedisJoinableQueue<T> {
    /// Marks the oldest item this handle got and has not marked done as done
    /// (`XACK` + `XDEL`).
    ///
    /// # Errors
    ///
    /// [`TaskDoneError`] when this handle holds no such item, or Redis failed (see
    /// [`last_error`](Self::last_error); the item stays pending and is delivered again
    /// after the visibility timeout).
    pub fn task_done(&self) -> Result<(), TaskDoneError> {
        match self.core.task_done() {
            Ok(true) => Ok(()),
            Ok(false) | Err(_) => Err(TaskDoneError),
        }
    }

    /// Waits until every item put on the stream is done (see the type's docs).
    pub fn join(&self) {
        self.join_deadline(None);
    }

    /// As [`join`](Self::join), for at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`JoinTimeoutError`] when items were still unfinished then (the crate-wide
    /// `join_timeout` convention: `Ok` with what `join` returns, see
    /// [`procactor_core::error`]).
    pub fn join_timeout(&self, timeout: Duration) -> Result<(), JoinTimeoutError> {
        if self.join_deadline(Deadline::after(timeout).instant()) {
            Ok(())
        } else {
            Err(JoinTimeoutError)
        }
    }

    fn join_deadline(&self, deadline: Option<Instant>) -> bool {
        let mut nap = crate::stream::FIRST_NAP;
        loop {
            if matches!(self.core.unfinished(), Ok(0)) {
                return true;
            }
            let now = Instant::now();
            match deadline {
                Some(d) if now >= d => return false,
                Some(d) => std::thread::sleep(nap.min(d - now)),
                None => std::thread::sleep(nap),
            }
            nap = (nap * 2).min(crate::stream::LONGEST_NAP);
        }
    }

    /// As [`join`](Self::join), as a future: usable on any executor, with no thread of
    /// its own. It checks `XLEN` on the handle's write connection, pausing between
    /// checks as `join` does (200 µs, doubling up to 20 ms); the `join_async` and
    /// bounded `put_async` waiting on one handle share one check per pause (it then
    /// asks `XPENDING` too, which the puts need). Only a check sent after it was first
    /// polled counts, so it sees the puts this handle finished before.
    ///
    /// Unlike `join`, which keeps waiting through Redis errors, `join_async` ends with
    /// the error: a server that is gone ends it rather than leaving it pending.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only reads.
    ///
    /// # Errors
    ///
    /// [`RedisError`] when Redis failed (the connection is dropped; the next call
    /// reconnects).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use procactor_redis::RedisJoinableQueue;
    /// let q = RedisJoinableQueue::<u32>::connect("redis://127.0.0.1:6379/", "jobs").unwrap();
    /// futures::executor::block_on(async {
    ///     q.put_async(7).await.unwrap();
    ///     assert_eq!(q.get_async().await.unwrap(), 7);
    ///     q.task_done().unwrap();
    ///     q.join_async().await.unwrap();
    /// });
    /// ```
    pub async fn join_async(&self) -> Result<(), RedisError> {
        crate::aio::join(&self.core).await
    }

    /// Items put and not yet done (`XLEN`); 0 when Redis cannot be reached.
    pub fn unfinished_tasks(&self) -> u64 {
        self.core.unfinished().unwrap_or(0)
    }
}
