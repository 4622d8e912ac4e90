//! procactor beyond one machine: [`Queue`],
//! [`JoinableQueue`], a [`Pool`] and supervised workers
//! whose items travel through **Redis Streams** with consumer groups, so that processes
//! on several hosts share the work with the API they use on one.
//!
//! Use it through the facade as `procactor::redis`.
//!
//! # Queues
//!
//! [`ConnectRedis`] adds `connect_redis(url, name)` to procactor's queue types:
//!
//! ```no_run
//! use procactor_redis::ConnectRedis;
//! use procactor_core::{JoinableQueue, Queue};
//!
//! let url = "redis://127.0.0.1:6379/";
//! let q = Queue::<u64>::connect_redis(url, "numbers").unwrap();       // RedisQueue<u64>
//! q.put_many(vec![1, 2, 3]).unwrap();                                 // one round trip
//! assert_eq!(q.get().unwrap(), 1);
//! let jobs = JoinableQueue::<String>::connect_redis(url, "jobs").unwrap(); // RedisJoinableQueue
//! # let _ = jobs;
//! ```
//!
//! | operation | Redis |
//! |---|---|
//! | `put`, `put_many` | `XADD name * cbor <bytes>` (pipelined for `put_many`) |
//! | `get`, `get_timeout`, `try_get`, `get_delivery` | `XAUTOCLAIM` (stale entries, at most every visibility timeout / 2) then `XREADGROUP GROUP g consumer COUNT n BLOCK ms STREAMS name >` |
//! | `task_done` (and a plain queue's `get`) | `XACK` + `XDEL` |
//! | `len` | `XLEN` − pending (`XPENDING`) |
//! | `join` | waits for `XLEN` = 0 |
//!
//! # Async
//!
//! `get_async`, `get_delivery_async`, `put_async` (and a joinable queue's `join_async`)
//! are the same operations as futures, on any executor (tokio's runtimes,
//! `futures::executor::block_on`, …): std futures and wakers, no async runtime among
//! this crate's dependencies, and no thread per pending operation. A handle opens two
//! non-blocking connections for them on first use (one for reads, one for writes, so
//! that a put never waits behind a blocked read); the futures waiting on one stand in
//! line, and the first drives the connection, woken through procactor's one epoll
//! thread (`procactor_transports::watch`). Ten thousand pending `get_async` on a handle
//! are ten thousand wakers in a map and one watched descriptor. Timeouts are the
//! runtime's (`tokio::time::timeout`): each method's `# Cancel safety` says what a
//! dropped future did. The sync methods keep their own connection; both share the
//! handle's items read ahead and acknowledgements owed, so a handle may be used both
//! ways. A host name in the URL is resolved with the system's (blocking) resolver when
//! a lane connects; TLS URLs are not supported by the async methods.
//!
//! # Wire format (for readers in other languages)
//!
//! Each item is one stream entry with one field, [`PAYLOAD_FIELD`] (`"cbor"`), whose
//! value is the CBOR encoding of the value exactly as [`procactor_core::codec::encode`]
//! writes it (serde's data model through `ciborium`: a struct is a map from field names,
//! a tuple an array, an enum variant a map from its name). A Python program reads it with
//! `cbor2.loads(fields[b"cbor"])` and writes with `XADD name * cbor cbor2.dumps(v)`.
//!
//! # Delivery
//!
//! At-least-once. An entry stays pending for the consumer that read it until it is
//! acknowledged; a pending entry idle longer than the visibility timeout (default 30 s,
//! [`Builder::visibility_timeout`]) is taken over by the next `get` of another consumer
//! (`XAUTOCLAIM`), with its delivery count ([`Delivery::deliveries`]) increased.
//!
//! # Bounded queues
//!
//! `XADD … MAXLEN n` would *trim old entries*, losing items; it is not used. A queue
//! built with [`Builder::maxsize`] instead makes `put` wait while `maxsize` or more items
//! are undelivered (checked with `XLEN` and `XPENDING` before each `XADD`).
#![forbid(unsafe_code)]

mod aio;
mod conn;
pub mod pool;
mod queue;
mod quiet;
mod stream;
pub mod worker;

pub use conn::{RedisError, PAYLOAD_FIELD};
pub use pool::{run_worker, AsyncResult, ImapUnordered, Pool, PoolBuilder, PoolError, Tasks};
pub use procactor_core::TaskError;
pub use queue::{Builder, Delivery, RedisJoinableQueue, RedisQueue};
pub use worker::{spawn_workers, Handler, RedisWorker, Turn};

use procactor_core::{JoinableQueue, Message, Queue};

/// `connect_redis(url, name)` on procactor's queue types: the same API on a Redis
/// stream (see the [crate docs](crate)).
pub trait ConnectRedis {
    /// The Redis-backed handle.
    type Redis;

    /// Connects to the stream `name` at `url` (creating it and the consumer group
    /// `"procactor"` if needed).
    ///
    /// # Errors
    ///
    /// The URL is invalid or the server cannot be reached.
    fn connect_redis(url: &str, name: &str) -> Result<Self::Redis, RedisError>;
}

impl<T: Message> ConnectRedis for Queue<T> {
    type Redis = RedisQueue<T>;
    fn connect_redis(url: &str, name: &str) -> Result<RedisQueue<T>, RedisError> {
        RedisQueue::connect(url, name)
    }
}

impl<T: Message> ConnectRedis for JoinableQueue<T> {
    type Redis = RedisJoinableQueue<T>;
    fn connect_redis(url: &str, name: &str) -> Result<RedisJoinableQueue<T>, RedisError> {
        RedisJoinableQueue::connect(url, name)
    }
}
