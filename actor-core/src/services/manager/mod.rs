//! [`Manager`]: Python's `multiprocessing.Manager` — a server process that owns shared
//! dicts, lists and namespaces, reached through proxies, locally or over authenticated
//! TCP (or a local socket name).
//!
//! # How it works
//!
//! The server process keeps every object as CBOR bytes (a dict is a map from the
//! encoding of a key to the encoding of a value), so it needs no type of its own: a
//! proxy encodes on the way in and decodes on the way out. **Keys compare by their CBOR
//! encoding**: two keys are the same key when they encode the same (for the usual key
//! types — integers, strings, tuples of them — that is equality), and `keys()`/`items()`
//! come in the order of those encodings.
//!
//! A local client talks to the server over a pair of shared-memory rings (a request ring
//! and a reply ring, calls numbered and serialised by a robust cross-process lock): one
//! operation costs about a microsecond instead of a socket round trip. A remote client
//! talks over TCP or a local socket, after an HMAC-SHA-256 handshake in both directions
//! ([`procactor_transports::conn`]), every frame authenticated (see
//! [what the authkey protects](#what-the-authkey-protects)). Every operation is one round trip, and every error
//! is a `Result`: a missing key is `None`, a value of another type is a decode error
//! naming the type expected, and a server that is gone gives
//! [`ManagerError::Disconnected`] — promptly, never a hang.
//!
//! Proxies are cheap to clone and can be passed to children (`Process` arguments, an
//! actor's fields, a `Pool` initializer's arguments) and through channels that cannot
//! carry descriptors (a `Queue`, a `Pool` task's arguments): there a local proxy travels
//! as the server's local socket name and a random key made for it, and connects again by
//! name from the process it lands in. A proxy of a remote manager carries the address and
//! the key, and connects again likewise.
//!
//! # Synchronisation objects and queues
//!
//! Python's `SyncManager` objects are here too: [`Manager::lock`], [`Manager::rlock`],
//! [`Manager::semaphore`], [`Manager::bounded_semaphore`], [`Manager::condition`],
//! [`Manager::event`], [`Manager::barrier`], [`Manager::queue`] (and
//! [`Manager::queue_bounded`]), [`Manager::joinable_queue`], [`Manager::value`] and
//! [`Manager::array`], each with a `_named` form that another client uses to find the
//! same object. Values and arrays go over the rings like dicts. A synchronisation
//! proxy ([`SharedLock`], [`SharedRLock`], [`SharedSemaphore`],
//! [`SharedCondition`], [`SharedEvent`], [`SharedBarrier`], [`SharedQueue`],
//! [`SharedJoinableQueue`]) is only the server's address, a key and the object's
//! number. Each **thread** of a client process that uses one opens its own
//! authenticated connection to the server (over the server's local socket name, or over
//! TCP for a remote manager) on first use and keeps it for every proxy of that manager
//! until the thread ends; a blocking call occupies that connection and the server thread
//! behind it, and nothing else. So:
//!
//! - a lock is **owned by the thread** (of a process) that acquired it, as Python's
//!   manager locks are: an [`SharedRLock`] re-enters in that thread only, and only that
//!   thread may release it; a [`SharedLock`] may be released by anyone (as Python's);
//! - when the connection closes — the process died (even by `SIGKILL`: the kernel
//!   closes its sockets), the thread ended, or the server found the client gone or
//!   misbehaving — the server **releases every lock that connection held**: a `Lock`, an
//!   `RLock` whatever its count, a condition's lock, and the semaphore acquisitions
//!   not yet released (see [`SharedSemaphore`]). A waiter whose connection closes stops
//!   waiting (a barrier it waited at breaks);
//! - proxies serialize as plain data (address, key, number): pass them to children,
//!   `Pool` workers (initializer or task arguments, queues) or remote clients; each
//!   process connects on its own.
//!
//! A server that is gone gives [`ManagerError::Disconnected`]: the connection's end
//! shows at once on one host, and a server on another host that vanished without a
//! reset is given up on after 30 s without a frame (a waiting server sends a
//! heartbeat every 5 s).
//!
//! On the server, each connection has its own thread, so a client blocked in an
//! `acquire`, a `get` or a `wait` holds up nobody else; a blocked server thread checks
//! every 100 ms whether its client hung up (then it stops waiting, and whatever that
//! connection held is released).
//!
//! # Async calls
//!
//! Every operation that makes a round trip has an `_async` twin (`get_async`,
//! `insert_async`, `acquire_async`, `wait_async`, `put_async`, …): a future that waits
//! without blocking a thread, on any executor (tokio's runtimes,
//! `futures::executor::block_on`, …; no runtime is a dependency). There are no
//! `_async_timeout` variants: wrap a future in the runtime's own timeout
//! (`tokio::time::timeout`), which drops it; each method's **Cancel safety** section
//! says what a drop leaves (never a lost queue item, never a held lock, never an
//! answer taken for another call's).
//!
//! - Dicts, lists, namespaces, values and arrays of a local manager go over the same
//!   shared-memory rings as the blocking calls: the rings' lock is taken with
//!   [`Lock::acquire_async`](crate::Lock::acquire_async) and the numbered reply awaited
//!   on the reply ring's word.
//! - Synchronisation objects and queues (and a remote manager's dicts and lists) go
//!   over **one multiplexed connection per manager per process**, shared by every
//!   future: requests are tagged, answers come back in any order, and a request that
//!   must wait (an `acquire_async`, a `get_async` from an empty queue, a `wait_async`)
//!   is parked at the server, with no thread waiting for it there either. So
//!   thousands of pending futures cost no thread; the process's epoll thread reads
//!   the connection and wakes the futures answered.
//! - An async acquisition belongs to its [`ManagerAsyncGuard`] (not to a thread: a task
//!   may move between threads); dropping the guard releases it, and the server
//!   releases it too if the process dies (the connection closes).
//!
//! A server that dies ends every pending future with [`ManagerError::Disconnected`] as
//! soon as the connection (or, for the rings, the 20 ms liveness check) shows it. A
//! frozen server is treated as by the blocking calls: a call that does not wait fails
//! with [`ManagerError::Timeout`] by the call timeout (for a synchronisation object's,
//! by [`CALL_MARGIN`] when there is none), and that call alone is given up (withdrawn
//! as a dropped future is: the connection, the other futures on it and the async
//! guards are not touched); any call gives up after 30 s without a frame (a server
//! with parked requests sends a heartbeat every 5 s), and the connection is then
//! closed, which ends the other futures on it with [`ManagerError::Disconnected`], and
//! the next call opens a new one.
//!
//! Two costs remain in the calling thread: the first async call of a process to a
//! manager (and the first after a connection failure) opens the connection, a
//! handshake of at most 3 s; and a request is written with a blocking write, which
//! waits only when the socket's buffer is full (a request of megabytes to a server
//! that does not read), at most 5 s. What is sent without an answer — a dropped or
//! timed-out future's withdrawal, a guard's release, an item given back — never
//! waits: what the socket does not take is queued, in order, and written as soon as
//! it takes more (or before the next request).
//!
//! # Freeing
//!
//!
//! An object lives while a proxy of it lives in some process, as in Python (whose
//! proxies count references at the server): the server counts, per object, the
//! processes' references, and frees the object when the count falls to zero.
//!
//! - Clones of a proxy in one process are one reference. Dropping the last of them
//!   queues a decrement for a background thread of this process (one per manager, with
//!   its own connection to the server): a drop never waits for the server.
//! - A proxy that travels (a `Process` argument, a `Pool` task, a queue, a value
//!   stored in the manager) is one more reference: encoding it asks the server for it,
//!   decoding it takes it over. Bytes of a proxy that are never decoded keep their
//!   reference until the process that encoded them ends.
//! - When a client process ends — even by `SIGKILL`, or when its reference
//!   connection breaks — the server drops every reference it held.
//! - Objects made with a `_named` method live until [`Manager::remove_named`] (then
//!   until their last proxy goes) or the server's shutdown.
//!
//! [`Manager::object_count`] says how many objects the server holds. A process that
//! holds manager proxies has that background thread, so it cannot start children with
//! [`StartMethod::Fork`](crate::StartMethod) afterwards (the fork server and spawn
//! are fine).
//!
//! # Timeouts
//!
//! A call with a timeout (`try_acquire`, `acquire_timeout`, `get_timeout`,
//! `wait_timeout`, …) returns within its timeout and [`CALL_MARGIN`] even when the
//! server is frozen (stopped, swapped out, overloaded): it then fails with
//! [`ManagerError::Timeout`] and closes its connection, so that whatever the call may
//! have obtained at the server is given back there (a lock is released, an item taken
//! from a queue is put back at its front). Calls that wait without a timeout
//! (`acquire`, `get`, `wait`, a bounded queue's `put`) wait as long as the server says
//! it is still waiting (a heartbeat every 5 s), and give up after 30 s without any
//! frame.
//!
//! The calls of synchronisation objects and queues that do not wait (`release`,
//! `set`, `clear`, `is_set`, `is_locked`, `len`, `value`, `notify`, `task_done`, …)
//! give up by the manager's call timeout (below) or, when it has none, by
//! [`CALL_MARGIN`], with [`ManagerError::Timeout`]: a frozen server holds them up no
//! longer than that. Their connection is closed then, as for a call with a timeout
//! (whatever it held is given back at the server), and the call may or may not have
//! been applied.
//!
//! The `_async` calls follow the same deadlines, on their process's one multiplexed
//! connection to the manager: a call past its own deadline fails with
//! [`ManagerError::Timeout`] and is withdrawn alone (as a dropped future is: an item
//! it took goes back to the front of its queue, an acquisition it got is released);
//! the connection stays, so the other pending futures and the async guards
//! ([`ManagerAsyncGuard`]) are not touched. Only 30 s without any frame from the
//! server, while a call waits, closes it (every future on it fails with
//! [`ManagerError::Disconnected`], and the server releases the async guards'
//! acquisitions).
//!
//! A manager may also have a **call timeout** ([`ManagerBuilder::call_timeout`],
//! [`Manager::set_call_timeout`]; none by default, as in Python): then every operation
//! of its dicts, lists, namespaces, values and arrays, which have no timeout of their
//! own, and every call of its synchronisation objects and queues that does not wait,
//! fails with [`ManagerError::Timeout`] once that much time has passed, and the proxy
//! stays usable (a late answer is never taken for a later call's). It also bounds
//! making an object. A proxy carries the call timeout of its manager when it travels.
//!
//! The server never blocks for good on a client either: a write to a client that makes
//! no progress for 5 s (the client is frozen, or its host is gone) ends that
//! connection, which releases what it held. An item a queue's `get` took for a client
//! whose answer could not be written is put back at the front of the queue, so a
//! client that dies or freezes in a `get` loses no item.
//!
//! # What the authkey protects
//!
//! As with Python's `BaseManager`, the authkey is what lets a peer in: a connection
//! (over TCP or the local socket name) must prove it knows the key (HMAC-SHA-256
//! challenge/response in both directions) before the server reads a request, and the
//! client checks that the server knows it too. Here, unlike Python, the rest of the
//! connection is protected as well: both sides derive a key for the connection from
//! the authkey and random bytes of both, and every frame carries an HMAC-SHA-256 tag
//! under it over a sequence number, so a peer on the path cannot inject, alter,
//! reorder or replay a request or an answer — the server closes a connection whose
//! frame fails the check, and keeps serving the others. Frames are **not encrypted**:
//! anyone on the path can read the values exchanged. Whoever knows the key is fully
//! trusted (it can read and change every object and shut the server down); keep it as
//! secret as the data. The local socket name is visible to every user of the host
//! (`/proc/net/unix`) and reveals nothing of its key. At most 8 connections may be in
//! their handshake at once (each has 3 s); one more closes the oldest of them, so
//! silent peers cannot keep a client that knows the key out, and idle authenticated
//! connections are kept (TCP keepalive finds peers whose host vanished).
//!
//! ```
//! use procactor::{Manager, Process, SharedLock, Namespace};
//!
//! fn add_one((lock, ns): (SharedLock, Namespace)) {
//!     let _g = lock.acquire().unwrap(); // released when `_g` drops
//!     let n: u32 = ns.get("n").unwrap();
//!     ns.set("n", &(n + 1)).unwrap();
//! }
//!
//! fn main() {
//!     procactor::init();
//!     let mgr = Manager::start().unwrap();
//!     let (lock, ns) = (mgr.lock().unwrap(), mgr.namespace().unwrap());
//!     ns.set("n", &0u32).unwrap();
//!     let mut ps: Vec<_> = (0..3)
//!         .map(|_| Process::new(add_one, (lock.clone(), ns.clone())).start().unwrap())
//!         .collect();
//!     for p in &mut ps {
//!         p.join().unwrap();
//!     }
//!     assert_eq!(ns.get::<u32>("n").unwrap(), 3);
//! }
//! ```

use crate::codec;
use crate::error::{DecodeError, EncodeError, SpawnError};
use crate::{Bytes, Message};
use objects::SyncReq;
use refs::RefReq;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Why a manager operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    /// The server is gone (shut down, killed, or the connection broke).
    #[error("the manager's server is gone")]
    Disconnected,
    /// The server refused the operation (an index out of range, an object of another
    /// kind, a name not set in a namespace, …).
    #[error("the manager refused: {0}")]
    Refused(String),
    /// A value could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// A value read back is not of the type asked for.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// Authentication failed (a wrong key on either side).
    #[error("{0}")]
    Auth(String),
    /// Starting the server failed.
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    /// Shared memory or another resource could not be made.
    #[error(transparent)]
    Resource(#[from] crate::Error),
    /// An I/O error (connecting, binding).
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// A [`SharedBarrier`] is broken (aborted, reset while this client waited, or a
    /// waiter timed out or went away).
    #[error("the barrier is broken")]
    BrokenBarrier,
    /// A call got no answer in time: a call with a timeout within that timeout and
    /// [`CALL_MARGIN`], another call within the manager's call timeout (or, for a
    /// synchronisation object's or queue's call that does not wait, [`CALL_MARGIN`]
    /// when there is none): the server is frozen or overloaded. The call's connection
    /// was closed, so whatever the call may have obtained at the server (a lock, a
    /// queue's item) is given back there (see the [module docs](crate::manager#timeouts)).
    #[error("the manager did not answer in time")]
    Timeout,
    /// A `join_timeout` ran out of time: the server answered that tasks were still
    /// unfinished (unlike [`Timeout`](ManagerError::Timeout), the connection is fine).
    #[error(transparent)]
    JoinTimeout(#[from] crate::JoinTimeoutError),
    /// A request or an answer is larger than one frame may be (64 MiB). For an answer,
    /// nothing was taken: a queue's item stays in the queue.
    #[error("a message of {size} bytes is over the {limit}-byte frame limit")]
    TooLarge {
        /// Its size, in bytes.
        size: u64,
        /// The limit, in bytes.
        limit: usize,
    },
}

mod asynch;
mod calls;
mod client;
mod objects;
mod refs;
mod server;
mod start;
mod store;
mod wire;

pub use collections::{Namespace, SharedDict, SharedList};
#[doc(hidden)]
pub use proxies::close_this_threads_connections;
pub use proxies::{
    ManagerAsyncGuard, ManagerGuard, SharedArray, SharedBarrier, SharedCondition, SharedEvent,
    SharedJoinableQueue, SharedLock, SharedQueue, SharedRLock, SharedSemaphore, SharedValue,
};
pub use start::{Manager, ManagerBuilder};

// ------------------------------------------------------------------ protocol
// (the requests and answers between a client and the server, and their encoding)

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
enum Kind {
    Dict,
    List,
    Namespace,
    Value,
    Array,
}

#[derive(Debug, Serialize, Deserialize)]
enum Req {
    /// A new object (named: get or create); its first reference is held by the
    /// reference connection numbered last.
    New(Kind, Option<String>, u64),
    /// A value or an array with its first contents (named: get or create).
    NewWith(Kind, Option<String>, Vec<Bytes>, u64),
    /// Forgets a name (of any kind, in both stores): its objects go when their last
    /// reference does.
    RemoveNamed(String),
    /// How many objects the server holds.
    ObjectCount,
    /// A reference operation: only over a socket connection.
    Ref(RefReq),
    VGet(u64),
    VSet(u64, Bytes),
    Len(u64),
    Clear(u64),
    DInsert(u64, Bytes, Bytes),
    DGet(u64, Bytes),
    DRemove(u64, Bytes),
    DContains(u64, Bytes),
    DKeys(u64),
    DValues(u64),
    DItems(u64),
    DUpdate(u64, Vec<(Bytes, Bytes)>),
    LPush(u64, Bytes),
    LPop(u64),
    LGet(u64, u64),
    LSet(u64, u64, Bytes),
    LInsert(u64, u64, Bytes),
    LRemove(u64, u64),
    LExtend(u64, Vec<Bytes>),
    LAll(u64),
    NSet(u64, String, Bytes),
    NGet(u64, String),
    NRemove(u64, String),
    NNames(u64),
    Shutdown,
    /// A synchronisation object or a queue: only over a socket connection.
    Sync(SyncReq),
    /// A request of a multiplexed connection (the async proxies'), tagged with a number
    /// its answer ([`Resp::Tagged`]) carries back: see `asynch`.
    Mux(u64, MuxReq),
}

/// What a multiplexed connection asks (see `asynch`). Only the first two are answered.
#[derive(Debug, Serialize, Deserialize)]
enum MuxReq {
    /// A request that does not wait (a dict's, a list's, …; not a synchronisation one),
    /// answered at once.
    Do(Box<Req>),
    /// A synchronisation object's or a queue's request on behalf of owner `n` (a number
    /// the client picks on this connection; 0: the connection itself): what it
    /// acquires belongs to that owner. One that must wait is parked at the server (no
    /// thread waits for it) and answered when it is done.
    Sync(u64, SyncReq),
    /// The client gave up request `tag`: if it still waits, it stops (as if its client
    /// were gone) and is answered [`Resp::Pending`] (nothing done); otherwise its
    /// answer is on its way already. Not answered itself.
    Cancel(u64),
    /// Owner `n` is done: whatever it holds is released, as when a connection closes.
    /// Not answered.
    End(u64),
    /// An item a queue's `get` gave a client that no longer wanted it goes back to the
    /// front of queue `id`. Not answered.
    PutBack(u64, Bytes),
}

#[derive(Debug, Serialize, Deserialize)]
enum Resp {
    Unit,
    Bool(bool),
    Count(u64),
    Id(u64),
    Opt(Option<Bytes>),
    One(Bytes),
    Many(Vec<Bytes>),
    Pairs(Vec<(Bytes, Bytes)>),
    Names(Vec<String>),
    Refused(String),
    /// The server still waits on the client's blocking request (a heartbeat).
    Pending,
    /// A barrier: parties, waiting, broken.
    Barrier(u64, u64, bool),
    /// A barrier is broken.
    Broken,
    /// The answer would have been this many bytes, over the frame limit.
    TooLarge(u64),
    /// The answer to a multiplexed connection's request `tag` (see [`Req::Mux`]).
    Tagged(u64, Box<Resp>),
}

fn refused(m: impl Into<String>) -> Resp {
    Resp::Refused(m.into())
}

fn unexpected(r: Resp) -> ManagerError {
    ManagerError::Refused(format!("unexpected answer from the server: {r:?}"))
}

/// An answer that says the request failed (refused, or too large to send back) as its
/// error; any other as it is. The blocking and the async calls both pass their
/// answers through it.
fn resp_result(r: Resp) -> Result<Resp, ManagerError> {
    match r {
        Resp::Refused(m) => Err(ManagerError::Refused(m)),
        Resp::TooLarge(size) => Err(ManagerError::TooLarge {
            size,
            limit: MAX_FRAME,
        }),
        r => Ok(r),
    }
}

// the decoders of the answers, shared by the blocking and the async faces

fn as_unit(r: Resp) -> Result<(), ManagerError> {
    match r {
        Resp::Unit => Ok(()),
        r => Err(unexpected(r)),
    }
}

fn as_bool(r: Resp) -> Result<bool, ManagerError> {
    match r {
        Resp::Bool(b) => Ok(b),
        r => Err(unexpected(r)),
    }
}

fn as_count(r: Resp) -> Result<u64, ManagerError> {
    match r {
        Resp::Count(n) => Ok(n),
        r => Err(unexpected(r)),
    }
}

fn as_opt<T: Message>(r: Resp) -> Result<Option<T>, ManagerError> {
    match r {
        Resp::Opt(None) => Ok(None),
        Resp::Opt(Some(b)) => Ok(Some(dec(&b)?)),
        r => Err(unexpected(r)),
    }
}

fn as_many<T: Message>(r: Resp) -> Result<Vec<T>, ManagerError> {
    match r {
        Resp::Many(v) => v.iter().map(dec).collect(),
        r => Err(unexpected(r)),
    }
}

fn enc<T: Serialize + ?Sized>(v: &T) -> Result<Bytes, ManagerError> {
    let mut buf = Vec::new();
    codec::encode(v, &mut buf, None)?;
    Ok(buf.into())
}

fn dec<T: Message>(b: &Bytes) -> Result<T, ManagerError> {
    Ok(codec::decode(b, Vec::new())?)
}

// ------------------------------------------------------------------ the server

/// The most bytes one remote frame may carry.
const MAX_FRAME: usize = 64 << 20;
/// How long a remote peer may take over the rest of a frame once its first byte came.
const PEER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a peer may take over the whole handshake (both challenges and the session
/// nonces).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a client waits for one frame of its answer before it calls the server gone
/// (a server that waits on a blocking request sends a heartbeat every 5 s).
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// What a call with a timeout allows the server beyond that timeout: a call with a
/// deadline returns [`ManagerError::Timeout`] by `timeout + CALL_MARGIN` (capped at
/// `REPLY_TIMEOUT` per frame) even when the server is frozen.
pub const CALL_MARGIN: Duration = Duration::from_secs(2);
/// How long a remote connection's server thread polls for the client's next request
/// before it sleeps, and how long a client polls for the reply: a sleeping thread takes
/// tens of microseconds to wake on a VM, as long as a whole loopback round trip
/// (measured: `manager_remote_ops` in `bench/`).
const SERVER_SPIN: Duration = Duration::from_micros(50);
const CLIENT_SPIN: Duration = Duration::from_micros(200);

/// Authenticated connections served at once per listener (the local socket name,
/// TCP); more are closed after their handshake. A client process opens one connection per thread that uses
/// a synchronisation object or a queue (see [`SharedLock`]), one for its references
/// (see [`refs`]), besides the one a remote manager's dicts and lists use.
const MAX_CONNECTIONS: usize = 256;
/// Connections that have not finished the handshake, at once per listener: when one
/// more arrives, the oldest of them is closed, so silent peers can never keep a client
/// that knows the key out.
const MAX_UNAUTHENTICATED: usize = 8;

/// Makes a proxy invariant in its types and `Send + Sync` whatever they are (it holds
/// none of them).
type Invariant<T> = fn(T) -> T;

macro_rules! proxy_common {
    ($t:ident < $($g:ident),* >) => {
        impl<$($g),*> Clone for $t<$($g),*> {
            fn clone(&self) -> Self {
                $t { h: self.h.clone(), _t: PhantomData }
            }
        }
        impl<$($g),*> fmt::Debug for $t<$($g),*> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($t)).field("id", &self.h.id).finish()
            }
        }
        impl<$($g),*> Serialize for $t<$($g),*> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                self.h.serialize(s)
            }
        }
        impl<'de, $($g),*> Deserialize<'de> for $t<$($g),*> {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                Ok($t { h: Handle::deserialize(d)?, _t: PhantomData })
            }
        }
    };
}

mod collections;
mod proxies;
