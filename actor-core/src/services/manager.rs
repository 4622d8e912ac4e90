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
//! # Freeing
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
//! from a queue is put back at its front). Calls without a timeout wait as long as the
//! server says it is still waiting (a heartbeat every 5 s), and give up after 30 s
//! without any frame.
//!
//! A manager may also have a **call timeout** ([`ManagerBuilder::call_timeout`],
//! [`Manager::set_call_timeout`]; none by default, as in Python): then every operation
//! of its dicts, lists, namespaces, values and arrays, which have no timeout of their
//! own, fails with [`ManagerError::Timeout`] once that much time has passed, and the
//! proxy stays usable (a late answer is never taken for a later call's).
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
use crate::process::Process;
use crate::queue::{await_reply, NoReply, Queue};
use crate::shared::RawArray;
use crate::sync::Lock;
use crate::{Bytes, GetError, Message, PutTimeoutError};
use procactor_transports::conn::{self, Address, Stream};
use procactor_transports::os;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::marker::PhantomData;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
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
    /// A call with a timeout got no answer within that timeout and
    /// [`CALL_MARGIN`]: the server is frozen or overloaded. The call's connection was
    /// closed, so whatever the call may have obtained at the server (a lock, a queue's
    /// item) is given back there (see the [module docs](crate::manager#timeouts)).
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

// ------------------------------------------------------------------ protocol

mod objects;
mod refs;
mod wire;

use objects::{SyncObjects, SyncReq};
#[doc(hidden)]
pub use proxies::close_this_threads_connections;
pub use proxies::{
    ManagerGuard, SharedArray, SharedBarrier, SharedCondition, SharedEvent, SharedJoinableQueue,
    SharedLock, SharedQueue, SharedRLock, SharedSemaphore, SharedValue,
};
use refs::{Oid, Ref, RefReq, Refs, Space};
use wire::{RecvError, Session};

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
}

enum Obj {
    Dict(BTreeMap<Bytes, Bytes>),
    List(Vec<Bytes>),
    Ns(BTreeMap<String, Bytes>),
    Value(Bytes),
    Array(Vec<Bytes>),
}

#[derive(Default)]
struct Store {
    objs: HashMap<u64, Obj>,
    names: HashMap<(Kind, String), u64>,
    next: u64,
}

fn refused(m: impl Into<String>) -> Resp {
    Resp::Refused(m.into())
}

impl Store {
    fn apply(&mut self, req: Req) -> Resp {
        use Req::*;
        match req {
            VGet(id) => match self.objs.get(&id) {
                Some(Obj::Value(v)) => Resp::One(v.clone()),
                Some(_) => refused(format!("object {id} is not a value")),
                None => no_object(id),
            },
            VSet(id, x) => match self.objs.get_mut(&id) {
                Some(Obj::Value(v)) => {
                    *v = x;
                    Resp::Unit
                }
                Some(_) => refused(format!("object {id} is not a value")),
                None => no_object(id),
            },
            Len(id) => match self.objs.get(&id) {
                Some(Obj::Dict(d)) => Resp::Count(d.len() as u64),
                Some(Obj::List(l)) | Some(Obj::Array(l)) => Resp::Count(l.len() as u64),
                Some(Obj::Ns(n)) => Resp::Count(n.len() as u64),
                Some(Obj::Value(_)) => refused(format!("object {id} is a value")),
                None => no_object(id),
            },
            Clear(id) => match self.objs.get_mut(&id) {
                Some(Obj::Dict(d)) => {
                    d.clear();
                    Resp::Unit
                }
                Some(Obj::List(l)) => {
                    l.clear();
                    Resp::Unit
                }
                Some(Obj::Ns(n)) => {
                    n.clear();
                    Resp::Unit
                }
                Some(_) => refused(format!("object {id} cannot be cleared")),
                None => no_object(id),
            },
            DInsert(id, k, v) => self.dict(id, |d| Resp::Opt(d.insert(k, v))),
            DGet(id, k) => self.dict(id, |d| Resp::Opt(d.get(&k).cloned())),
            DRemove(id, k) => self.dict(id, |d| Resp::Opt(d.remove(&k))),
            DContains(id, k) => self.dict(id, |d| Resp::Bool(d.contains_key(&k))),
            DKeys(id) => self.dict(id, |d| Resp::Many(d.keys().cloned().collect())),
            DValues(id) => self.dict(id, |d| Resp::Many(d.values().cloned().collect())),
            DItems(id) => self.dict(id, |d| {
                Resp::Pairs(d.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            }),
            DUpdate(id, kvs) => self.dict(id, |d| {
                d.extend(kvs);
                Resp::Unit
            }),
            LPush(id, v) => self.list(id, |l| {
                l.push(v);
                Resp::Unit
            }),
            LPop(id) => self.list(id, |l| Resp::Opt(l.pop())),
            LGet(id, i) => self.seq(id, |l| Resp::Opt(l.get(i as usize).cloned())),
            LSet(id, i, v) => self.seq(id, |l| match l.get_mut(i as usize) {
                Some(slot) => {
                    *slot = v;
                    Resp::Unit
                }
                None => out_of_range(i, l.len()),
            }),
            LInsert(id, i, v) => self.list(id, |l| {
                if i as usize > l.len() {
                    return out_of_range(i, l.len());
                }
                l.insert(i as usize, v);
                Resp::Unit
            }),
            LRemove(id, i) => self.list(id, |l| {
                if i as usize >= l.len() {
                    return out_of_range(i, l.len());
                }
                Resp::One(l.remove(i as usize))
            }),
            LExtend(id, vs) => self.list(id, |l| {
                l.extend(vs);
                Resp::Unit
            }),
            LAll(id) => self.seq(id, |l| Resp::Many(l.clone())),
            NSet(id, n, v) => self.ns(id, |m| {
                m.insert(n, v);
                Resp::Unit
            }),
            NGet(id, n) => self.ns(id, |m| Resp::Opt(m.get(&n).cloned())),
            NRemove(id, n) => self.ns(id, |m| Resp::Opt(m.remove(&n))),
            NNames(id) => self.ns(id, |m| Resp::Names(m.keys().cloned().collect())),
            Shutdown => Resp::Unit,
            New(..) | NewWith(..) | RemoveNamed(_) | ObjectCount | Ref(_) | Sync(_) => {
                refused("not a request about one object")
            }
        }
    }

    fn create(&mut self, kind: Kind, name: Option<String>, init: Vec<Bytes>) -> Resp {
        if let Some(n) = &name {
            if let Some(&id) = self.names.get(&(kind, n.clone())) {
                return Resp::Id(id);
            }
        }
        let obj = match kind {
            Kind::Dict => Obj::Dict(BTreeMap::new()),
            Kind::List => Obj::List(init),
            Kind::Namespace => Obj::Ns(BTreeMap::new()),
            Kind::Value => match init.into_iter().next() {
                Some(v) => Obj::Value(v),
                None => return refused("a value needs its first contents"),
            },
            Kind::Array => Obj::Array(init),
        };
        self.next += 1;
        let id = self.next;
        self.objs.insert(id, obj);
        if let Some(n) = name {
            self.names.insert((kind, n), id);
        }
        Resp::Id(id)
    }

    /// A list or an array (the operations both have: get, set, all, len).
    fn seq(&mut self, id: u64, f: impl FnOnce(&mut Vec<Bytes>) -> Resp) -> Resp {
        match self.objs.get_mut(&id) {
            Some(Obj::List(l)) | Some(Obj::Array(l)) => f(l),
            Some(_) => refused(format!("object {id} is not a list or an array")),
            None => no_object(id),
        }
    }

    fn dict(&mut self, id: u64, f: impl FnOnce(&mut BTreeMap<Bytes, Bytes>) -> Resp) -> Resp {
        match self.objs.get_mut(&id) {
            Some(Obj::Dict(d)) => f(d),
            Some(_) => refused(format!("object {id} is not a dict")),
            None => no_object(id),
        }
    }
    fn list(&mut self, id: u64, f: impl FnOnce(&mut Vec<Bytes>) -> Resp) -> Resp {
        match self.objs.get_mut(&id) {
            Some(Obj::List(l)) => f(l),
            Some(_) => refused(format!("object {id} is not a list")),
            None => no_object(id),
        }
    }
    fn ns(&mut self, id: u64, f: impl FnOnce(&mut BTreeMap<String, Bytes>) -> Resp) -> Resp {
        match self.objs.get_mut(&id) {
            Some(Obj::Ns(n)) => f(n),
            Some(_) => refused(format!("object {id} is not a namespace")),
            None => no_object(id),
        }
    }
}

fn no_object(id: u64) -> Resp {
    refused(format!("no object {id} in this manager"))
}

fn out_of_range(i: u64, len: usize) -> Resp {
    refused(format!("index {i} out of range for a list of {len}"))
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

/// What the server process receives.
#[derive(Serialize, Deserialize)]
struct ServerBoot {
    requests: Queue<(u64, Req)>,
    replies: Queue<(u64, Resp)>,
    listener: Option<(Fd, Bytes)>,
    /// The local socket name and key proxies use when they travel where descriptors
    /// cannot (through a queue: a `Pool` task's arguments).
    local: (String, Bytes),
}

/// A descriptor that travels as a handle does (its own `Serialize`/`Deserialize`).
struct Fd(std::os::fd::OwnedFd);

impl Serialize for Fd {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        codec::SendFd(std::os::fd::AsFd::as_fd(&self.0)).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Fd {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Fd(codec::RecvFd::deserialize(d)?.0))
    }
}

/// Everything a server process owns.
#[derive(Default)]
struct Server {
    store: Mutex<Store>,
    objects: SyncObjects,
    refs: Mutex<Refs>,
}

impl Server {
    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn refs(&self) -> std::sync::MutexGuard<'_, Refs> {
        self.refs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn free(&self, freed: refs::Freed) {
        for (space, id) in freed {
            match space {
                Space::Data => {
                    self.store().objs.remove(&id);
                }
                Space::Sync => self.objects.remove(id),
            }
        }
    }

    /// The first reference of an object just made (or found by name) goes to `holder`.
    fn created(&self, resp: Resp, space: Space, named: bool, holder: u64) -> Resp {
        let Resp::Id(id) = resp else { return resp };
        let o = (space, id);
        let mut r = self.refs();
        if named {
            r.set_named(o);
        }
        if r.add(holder, o) {
            return resp;
        }
        let orphan = !named && !r.exists(o);
        drop(r);
        if orphan {
            self.free(vec![o]);
        }
        refused("the creating process's reference connection is gone")
    }

    /// Serves a request that does not block (the rings' loop, and a connection's
    /// requests other than synchronisation ones).
    fn apply(&self, req: Req) -> Resp {
        match req {
            Req::New(kind, name, holder) => {
                let named = name.is_some();
                let r = self.store().create(kind, name, Vec::new());
                self.created(r, Space::Data, named, holder)
            }
            Req::NewWith(kind, name, init, holder) => {
                let named = name.is_some();
                let r = self.store().create(kind, name, init);
                self.created(r, Space::Data, named, holder)
            }
            Req::RemoveNamed(name) => {
                let mut ids: Vec<Oid> = {
                    let mut st = self.store();
                    let mut out = Vec::new();
                    st.names.retain(|(_, n), id| {
                        let hit = *n == name;
                        if hit {
                            out.push((Space::Data, *id));
                        }
                        !hit
                    });
                    out
                };
                ids.extend(
                    self.objects
                        .remove_names(&name)
                        .into_iter()
                        .map(|id| (Space::Sync, id)),
                );
                let n = ids.len() as u64;
                let free: Vec<Oid> = {
                    let mut r = self.refs();
                    ids.into_iter().filter(|o| r.unname(*o)).collect()
                };
                self.free(free);
                Resp::Count(n)
            }
            Req::ObjectCount => Resp::Count((self.store().objs.len() + self.objects.len()) as u64),
            Req::Ref(_) => refused("references are counted over a socket connection"),
            req => self.store().apply(req),
        }
    }

    fn reference(&self, conn: u64, r: RefReq) -> Resp {
        let freed = {
            let mut refs = self.refs();
            match r {
                RefReq::Hello => {
                    refs.hello(conn);
                    return Resp::Id(conn);
                }
                RefReq::Lend(o, token) => return Resp::Bool(refs.lend(conn, o, token)),
                RefReq::Claim(o, token) => {
                    refs.claim(conn, o, token);
                    return Resp::Unit;
                }
                RefReq::Dec(o) => refs.dec(conn, o),
            }
        };
        self.free(freed);
        Resp::Unit
    }

    /// Connection `conn` ended: what it held (locks, references) is released.
    fn end(&self, conn: u64) {
        self.objects.disconnect(conn);
        let freed = self.refs().end(conn);
        self.free(freed);
    }
}

fn server_main(boot: ServerBoot) {
    let ServerBoot {
        requests,
        replies,
        listener,
        local,
    } = boot;
    requests.close(); // the server only takes requests
    let server = Arc::new(Server::default());
    // bound before the first request is answered, so before any proxy exists
    match conn::Listener::bind(&Address::Local(local.0.clone())) {
        Ok(l) => {
            let (server, key) = (server.clone(), local.1.into_vec());
            let _ = crate::runtime::thread_builder("procactor-manager-local")
                .spawn(move || serve_remote(l, key, server));
        }
        Err(e) => {
            tracing::error!(error = %e, "manager: no local socket; proxies will not travel through queues")
        }
    }
    if let Some((fd, key)) = listener {
        let l = conn::Listener::from_tcp(TcpListener::from(fd.0));
        let key = key.into_vec();
        let server = server.clone();
        let _ = crate::runtime::thread_builder("procactor-manager-listener")
            .spawn(move || serve_remote(l, key, server));
    }
    loop {
        let (n, req) = match requests.get() {
            Ok(r) => r,
            Err(GetError::Disconnected) => return, // no client left
            Err(GetError::Decode(e)) => {
                tracing::error!(error = %e, "manager: undecodable request skipped");
                continue;
            }
            Err(GetError::Broken) => return,
        };
        let shutdown = matches!(req, Req::Shutdown);
        let resp = if matches!(req, Req::Sync(_)) {
            refused("synchronisation objects are served over a socket connection")
        } else {
            server.apply(req)
        };
        let _ = replies.put((n, resp));
        if shutdown {
            return;
        }
    }
}

/// Connections not yet authenticated, oldest first (their number and a handle to close
/// them).
type Pending = Arc<Mutex<std::collections::VecDeque<(u64, std::os::fd::OwnedFd)>>>;

fn serve_remote(l: conn::Listener, key: Vec<u8>, server: Arc<Server>) {
    let live = Arc::new(AtomicUsize::new(0));
    let pending: Pending = Default::default();
    let key: Arc<[u8]> = key.into();
    loop {
        let Ok(s) = l.accept() else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let conn = NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed);
        {
            let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
            if p.len() >= MAX_UNAUTHENTICATED {
                if let Some((_, oldest)) = p.pop_front() {
                    wire::shutdown(&oldest);
                }
            }
            if let Ok(fd) = std::os::fd::AsFd::as_fd(&s).try_clone_to_owned() {
                p.push_back((conn, fd));
            }
        }
        let (server, key, live2, pending2) =
            (server.clone(), key.clone(), live.clone(), pending.clone());
        let spawned = crate::runtime::thread_builder("procactor-manager-conn").spawn(move || {
            let session = handshake(s, &key);
            pending2
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|(c, _)| *c != conn);
            let Ok(session) = session else { return };
            if live2.fetch_add(1, Ordering::AcqRel) < MAX_CONNECTIONS {
                serve_connection(session, &server, conn);
                // whatever it ended with, what it held is released
                server.end(conn);
            }
            live2.fetch_sub(1, Ordering::AcqRel);
        });
        if spawned.is_err() {
            pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|(c, _)| *c != conn);
        }
    }
}

/// The server's half of the handshake and the session key, within
/// [`HANDSHAKE_TIMEOUT`] however the peer dribbles.
fn handshake(mut s: Stream, key: &[u8]) -> std::io::Result<Session> {
    let until = std::time::Instant::now() + HANDSHAKE_TIMEOUT;
    conn::server_handshake(&mut conn::WithDeadline::new(&mut s, until), key)?;
    Session::server(s, key, until)
}

/// Numbers the server's connections (the owner of a lock is a connection).
static NEXT_CONNECTION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A connection's client as a blocked request sees it.
struct ConnPeer<'a>(&'a mut Session);

impl objects::Peer for ConnPeer<'_> {
    fn alive(&mut self) -> bool {
        // the client sends nothing while it waits for its answer: bytes or the end of
        // the stream mean it is gone (or broke the protocol)
        !self.0.readable_now()
    }
    fn heartbeat(&mut self) -> bool {
        send_resp(self.0, &Resp::Pending).is_ok()
    }
}

/// Serves one remote client; any misbehaviour ends this connection only.
fn serve_connection(mut s: Session, server: &Server, conn: u64) {
    loop {
        // a client in a loop of calls sends the next one within microseconds
        s.spin(SERVER_SPIN);
        // an authenticated client may stay idle between requests; once a frame has
        // begun, all of it must come within `PEER_TIMEOUT`
        let Ok(frame) = s.recv(MAX_FRAME, None, PEER_TIMEOUT) else {
            return;
        };
        let req = codec::decode::<Req>(&frame, Vec::new());
        // an item taken from a queue goes back if its answer cannot be written
        let taken_from = match &req {
            Ok(Req::Sync(SyncReq::Get(id, _))) => Some(*id),
            _ => None,
        };
        let resp = match req {
            Ok(Req::Sync(SyncReq::New(kind, name, n, holder))) => {
                let named = name.is_some();
                let r = server.objects.apply(
                    conn,
                    SyncReq::New(kind, name, n, holder),
                    &mut ConnPeer(&mut s),
                );
                server.created(r, Space::Sync, named, holder)
            }
            Ok(Req::Sync(req)) => server.objects.apply(conn, req, &mut ConnPeer(&mut s)),
            Ok(Req::Ref(r)) => server.reference(conn, r),
            Ok(Req::Shutdown) => {
                let _ = send_resp(&mut s, &Resp::Unit);
                std::process::exit(0);
            }
            Ok(req) => server.apply(req),
            Err(e) => refused(format!("undecodable request: {e}")),
        };
        if let Err(e) = send_resp(&mut s, &resp) {
            if let (Some(id), Resp::Opt(Some(item))) = (taken_from, resp) {
                server.objects.put_back(id, item);
            }
            if e.kind() != std::io::ErrorKind::InvalidData {
                return;
            }
        }
    }
}

/// Sends `r`; one over [`MAX_FRAME`] is replaced by a [`Resp::TooLarge`] (and is an
/// `InvalidData` error, the connection staying usable).
fn send_resp(s: &mut Session, r: &Resp) -> std::io::Result<()> {
    let mut buf = Vec::new();
    codec::encode(r, &mut buf, None).map_err(|e| std::io::Error::other(e.to_string()))?;
    if buf.len() > MAX_FRAME {
        let mut small = Vec::new();
        codec::encode(&Resp::TooLarge(buf.len() as u64), &mut small, None)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        s.send(&small)?;
        return Err(std::io::ErrorKind::InvalidData.into());
    }
    s.send(&buf)
}

// ------------------------------------------------------------------ clients

/// Connects to a manager's `address`, proves `key` both ways and sets up the session
/// key, all by `until` (at most [`HANDSHAKE_TIMEOUT`] from now).
fn open_session_by(
    address: &Address,
    key: &[u8],
    until: Option<std::time::Instant>,
) -> Result<Session, ManagerError> {
    let h = std::time::Instant::now() + HANDSHAKE_TIMEOUT;
    let until = until.map_or(h, |u| u.min(h));
    let io = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::PermissionDenied => ManagerError::Auth(e.to_string()),
        _ => ManagerError::Io(e),
    };
    let mut s = Stream::connect(address).map_err(io)?;
    conn::client_handshake(&mut conn::WithDeadline::new(&mut s, until), key).map_err(io)?;
    Session::client(s, key, until).map_err(io)
}

/// As [`open_session_by`], the address as text; a server that does not answer is
/// [`ManagerError::Disconnected`].
fn open_session(address: &str, key: &[u8]) -> Result<Session, ManagerError> {
    open_session_by(&Address::parse(address), key, None).map_err(|e| match e {
        ManagerError::Io(_) => ManagerError::Disconnected,
        e => e,
    })
}

/// As [`open_session_by`] for a call with an optional deadline: a server that does not
/// answer is [`ManagerError::Disconnected`], or [`ManagerError::Timeout`] when the
/// handshake ran into the call's deadline (a frozen server).
fn open_session_until(
    address: &Address,
    key: &[u8],
    deadline: Option<std::time::Instant>,
) -> Result<Session, ManagerError> {
    open_session_by(address, key, deadline).map_err(|e| match e {
        ManagerError::Io(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ) && deadline.is_some_and(|d| d <= std::time::Instant::now()) =>
        {
            ManagerError::Timeout
        }
        ManagerError::Io(_) => ManagerError::Disconnected,
        e => e,
    })
}

/// A call's failure, and whether the connection is still in step (else close it).
type CallError = (ManagerError, bool);

/// One request and its answer over a session (heartbeats skipped). `deadline`: the
/// call's ([`ManagerError::Timeout`] when it passes; the connection is then out of
/// step). A refusal, an undecodable answer or an answer over the limit leave the
/// connection usable.
fn round_trip(
    s: &mut Session,
    req: &Req,
    deadline: Option<std::time::Instant>,
) -> Result<Resp, CallError> {
    let mut buf = Vec::new();
    codec::encode(req, &mut buf, None).map_err(|e| (e.into(), true))?;
    if buf.len() > MAX_FRAME {
        return Err((
            ManagerError::TooLarge {
                size: buf.len() as u64,
                limit: MAX_FRAME,
            },
            true,
        ));
    }
    s.send(&buf)
        .map_err(|_| (ManagerError::Disconnected, false))?;
    loop {
        s.spin(CLIENT_SPIN);
        let now = std::time::Instant::now();
        let patience = now + REPLY_TIMEOUT;
        let first = deadline.map_or(patience, |d| d.min(patience));
        let frame = match s.recv(MAX_FRAME, Some(first), REPLY_TIMEOUT) {
            Ok(f) => f,
            Err(RecvError::TimedOut) if deadline.is_some_and(|d| d <= patience) => {
                return Err((ManagerError::Timeout, false))
            }
            Err(RecvError::TooLarge(size)) => {
                return Err((
                    ManagerError::TooLarge {
                        size,
                        limit: MAX_FRAME,
                    },
                    false,
                ))
            }
            Err(_) => return Err((ManagerError::Disconnected, false)),
        };
        return match codec::decode::<Resp>(&frame, Vec::new()) {
            Ok(Resp::Pending) => continue,
            Ok(Resp::Refused(m)) => Err((ManagerError::Refused(m), true)),
            Ok(Resp::TooLarge(size)) => Err((
                ManagerError::TooLarge {
                    size,
                    limit: MAX_FRAME,
                },
                true,
            )),
            Ok(r) => Ok(r),
            // the frame was whole and authentic: the connection is still in step
            Err(e) => Err((e.into(), true)),
        };
    }
}

/// How a process reaches the server.
enum Client {
    Local {
        requests: Queue<(u64, Req)>,
        replies: Queue<(u64, Resp)>,
        lock: Lock,
        /// word 0: the last call number; word 1: the server's pid
        cell: RawArray<u64>,
        /// The server's local socket name and key (see `ServerBoot::local`).
        by_name: (String, Bytes),
        /// The call timeout (see [`Manager::set_call_timeout`]).
        timeout: CallTimeout,
    },
    Remote {
        address: Address,
        key: Vec<u8>,
        session: Mutex<Option<Session>>,
        /// The call timeout (see [`Manager::set_call_timeout`]).
        timeout: CallTimeout,
    },
}

/// A manager's call timeout in microseconds, [`CallTimeout::NONE`] for none; shared by
/// the [`Manager`] and every proxy of it in this process (they share its `Client`).
struct CallTimeout(std::sync::atomic::AtomicU64);

impl CallTimeout {
    const NONE: u64 = u64::MAX;

    /// As it travels: microseconds, `None` for no timeout.
    fn new(micros: Option<u64>) -> Self {
        CallTimeout(std::sync::atomic::AtomicU64::new(
            micros.unwrap_or(Self::NONE),
        ))
    }

    fn set(&self, d: Option<Duration>) {
        // (a timeout too long for the microsecond count is none: it never passes)
        let us = d.map_or(Self::NONE, |d| {
            u64::try_from(d.as_micros()).map_or(Self::NONE, |us| us.min(Self::NONE - 1))
        });
        self.0.store(us, Ordering::Relaxed);
    }

    fn micros(&self) -> Option<u64> {
        let us = self.0.load(Ordering::Relaxed);
        (us != Self::NONE).then_some(us)
    }

    fn get(&self) -> Option<Duration> {
        self.micros().map(Duration::from_micros)
    }

    /// The deadline of a call starting now (`None`: none, or too far to name).
    fn deadline(&self) -> Option<std::time::Instant> {
        std::time::Instant::now().checked_add(self.get()?)
    }
}

#[derive(Serialize, Deserialize)]
enum ClientWire {
    // (the last field: the call timeout in force when the proxy was encoded, in
    // microseconds)
    Local(
        Queue<(u64, Req)>,
        Queue<(u64, Resp)>,
        Lock,
        RawArray<u64>,
        (String, Bytes),
        Option<u64>,
    ),
    Remote(String, Bytes, Option<u64>),
}

/// How long one put of a request waits before the server's liveness is checked.
const CHECK: Duration = Duration::from_millis(20);

impl Client {
    fn wire(&self) -> ClientWire {
        match self {
            // through a channel that cannot carry descriptors, reconnect by name
            Client::Local {
                by_name, timeout, ..
            } if !codec::can_carry_fds() => ClientWire::Remote(
                Address::Local(by_name.0.clone()).to_string(),
                by_name.1.clone(),
                timeout.micros(),
            ),
            Client::Local {
                requests,
                replies,
                lock,
                cell,
                by_name,
                timeout,
            } => ClientWire::Local(
                requests.clone(),
                replies.clone(),
                lock.clone(),
                cell.clone(),
                by_name.clone(),
                timeout.micros(),
            ),
            Client::Remote {
                address,
                key,
                timeout,
                ..
            } => ClientWire::Remote(
                address.to_string(),
                Bytes::from(key.clone()),
                timeout.micros(),
            ),
        }
    }

    fn from_wire(w: ClientWire) -> Client {
        match w {
            ClientWire::Local(requests, replies, lock, cell, by_name, t) => Client::Local {
                requests,
                replies,
                lock,
                cell,
                by_name,
                timeout: CallTimeout::new(t),
            },
            ClientWire::Remote(a, key, t) => Client::Remote {
                address: Address::parse(&a),
                key: key.into_vec(),
                session: Mutex::new(None),
                timeout: CallTimeout::new(t),
            },
        }
    }

    /// The address and key socket connections use (synchronisation objects,
    /// references).
    fn target(&self) -> (String, Bytes) {
        match self {
            Client::Local { by_name, .. } => (
                Address::Local(by_name.0.clone()).to_string(),
                by_name.1.clone(),
            ),
            Client::Remote { address, key, .. } => (address.to_string(), Bytes::from(key.clone())),
        }
    }

    fn server_alive(cell: &RawArray<u64>) -> bool {
        let pid = cell.atomic_u64(1).map_or(0, |w| w.load(Ordering::Acquire));
        pid != 0 && u32::try_from(pid).is_ok_and(os::process_alive)
    }

    fn timeout(&self) -> &CallTimeout {
        match self {
            Client::Local { timeout, .. } | Client::Remote { timeout, .. } => timeout,
        }
    }

    /// One request and its answer, by the call timeout's deadline if there is one
    /// ([`ManagerError::Timeout`] then; the call's reply, should it come later, is never
    /// taken for another call's: local replies are numbered and a reply to another
    /// number is dropped, and a remote call's connection is closed).
    fn call(&self, req: Req) -> Result<Resp, ManagerError> {
        let deadline = self.timeout().deadline();
        let left = |d: std::time::Instant| d.saturating_duration_since(std::time::Instant::now());
        let resp = match self {
            Client::Local {
                requests,
                replies,
                lock,
                cell,
                ..
            } => {
                let _g = match deadline {
                    None => lock.acquire().unwrap_or_else(|e| e.into_inner()),
                    // (another thread's call holds the lock, stuck at a frozen server)
                    Some(d) => match lock.acquire_timeout(left(d)) {
                        Ok(Some(g)) => g,
                        Ok(None) => return Err(ManagerError::Timeout),
                        Err(e) => e.into_inner(),
                    },
                };
                let n = cell
                    .atomic_u64(0)
                    .map_or(0, |w| w.fetch_add(1, Ordering::AcqRel) + 1);
                let mut item = (n, req);
                loop {
                    let wait = deadline.map_or(CHECK, |d| left(d).min(CHECK));
                    match requests.put_timeout(item, wait) {
                        Ok(()) => break,
                        Err(PutTimeoutError::Timeout(_))
                            if deadline.is_some_and(|d| left(d).is_zero()) =>
                        {
                            return Err(ManagerError::Timeout)
                        }
                        Err(PutTimeoutError::Timeout(i)) if Self::server_alive(cell) => item = i,
                        Err(PutTimeoutError::Encode(_, e)) => return Err(e.into()),
                        Err(_) => return Err(ManagerError::Disconnected),
                    }
                }
                let gone = || (!Self::server_alive(cell)).then_some(());
                // (a reply to call `n` that comes after it timed out is dropped by the
                // next call, which waits for its own number)
                match await_reply(replies, n, deadline, gone) {
                    Ok(r) => r,
                    Err(NoReply::Timeout) => return Err(ManagerError::Timeout),
                    Err(NoReply::Decode(e)) => return Err(e.into()),
                    Err(_) => return Err(ManagerError::Disconnected),
                }
            }
            Client::Remote {
                address,
                key,
                session,
                ..
            } => {
                let mut g = match deadline {
                    None => session.lock().unwrap_or_else(|e| e.into_inner()),
                    // (another thread's call holds the session, stuck at a frozen server)
                    Some(d) => loop {
                        match session.try_lock() {
                            Ok(g) => break g,
                            Err(std::sync::TryLockError::Poisoned(e)) => break e.into_inner(),
                            Err(std::sync::TryLockError::WouldBlock) if left(d).is_zero() => {
                                return Err(ManagerError::Timeout)
                            }
                            Err(std::sync::TryLockError::WouldBlock) => {
                                std::thread::sleep(left(d).min(Duration::from_millis(1)))
                            }
                        }
                    },
                };
                let s = match g.as_mut() {
                    Some(s) => s,
                    // (a server that is gone refuses the connection)
                    None => g.insert(open_session_until(address, key, deadline)?),
                };
                match round_trip(s, &req, deadline) {
                    Ok(r) => r,
                    Err((e, keep)) => {
                        // (a timeout leaves the connection out of step: closed, so a late
                        // answer is never read; the next call opens a new one)
                        if !keep {
                            *g = None;
                        }
                        return Err(e);
                    }
                }
            }
        };
        match resp {
            Resp::Refused(m) => Err(ManagerError::Refused(m)),
            r => Ok(r),
        }
    }
}

fn unexpected(r: Resp) -> ManagerError {
    ManagerError::Refused(format!("unexpected answer from the server: {r:?}"))
}

fn enc<T: Serialize + ?Sized>(v: &T) -> Result<Bytes, ManagerError> {
    let mut buf = Vec::new();
    codec::encode(v, &mut buf, None)?;
    Ok(buf.into())
}

fn dec<T: Message>(b: &Bytes) -> Result<T, ManagerError> {
    Ok(codec::decode(b, Vec::new())?)
}

/// The shared part of every proxy: the connection, the object's id and this
/// process's reference to it.
#[derive(Clone)]
struct Handle {
    client: Arc<Client>,
    id: u64,
    _ref: Arc<Ref>,
}

impl Serialize for Handle {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // the encoding holds a reference of its own (see `refs`)
        let token = self._ref.lend().map_err(serde::ser::Error::custom)?;
        (self.client.wire(), self.id, token).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Handle {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (w, id, token): (ClientWire, u64, u64) = Deserialize::deserialize(d)?;
        let client = Client::from_wire(w);
        let (address, key) = client.target();
        let link = refs::link(&address, &key);
        Ok(Handle {
            client: Arc::new(client),
            id,
            _ref: Ref::claimed(link, (Space::Data, id), token),
        })
    }
}

impl Handle {
    fn call(&self, r: Req) -> Result<Resp, ManagerError> {
        self.client.call(r)
    }
    fn unit(&self, r: Req) -> Result<(), ManagerError> {
        match self.call(r)? {
            Resp::Unit => Ok(()),
            r => Err(unexpected(r)),
        }
    }
    fn opt<T: Message>(&self, r: Req) -> Result<Option<T>, ManagerError> {
        match self.call(r)? {
            Resp::Opt(None) => Ok(None),
            Resp::Opt(Some(b)) => Ok(Some(dec(&b)?)),
            r => Err(unexpected(r)),
        }
    }
    fn count(&self) -> Result<usize, ManagerError> {
        match self.call(Req::Len(self.id))? {
            Resp::Count(n) => Ok(n as usize),
            r => Err(unexpected(r)),
        }
    }
    fn many<T: Message>(&self, r: Req) -> Result<Vec<T>, ManagerError> {
        match self.call(r)? {
            Resp::Many(v) => v.iter().map(dec).collect(),
            r => Err(unexpected(r)),
        }
    }
}

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

mod proxies;

/// A dict in a manager (Python's `Manager().dict()`): a proxy; every call is one round
/// trip to the server. Keys compare by their CBOR encoding (see the module docs).
pub struct SharedDict<K, V> {
    h: Handle,
    _t: PhantomData<Invariant<(K, V)>>,
}
proxy_common!(SharedDict<K, V>);

impl<K: Message, V: Message> SharedDict<K, V> {
    /// Sets `k` to `v`; the value it had, if any.
    ///
    /// # Errors
    ///
    /// [`ManagerError`]: the server is gone, a value cannot be encoded, the old value is
    /// not a `V`.
    pub fn insert(&self, k: K, v: V) -> Result<Option<V>, ManagerError> {
        self.h.opt(Req::DInsert(self.h.id, enc(&k)?, enc(&v)?))
    }
    /// The value of `k`, `None` when it is not there.
    ///
    /// # Errors
    ///
    /// As [`insert`](SharedDict::insert).
    pub fn get(&self, k: &K) -> Result<Option<V>, ManagerError> {
        self.h.opt(Req::DGet(self.h.id, enc(k)?))
    }
    /// Removes `k`; the value it had.
    ///
    /// # Errors
    ///
    /// As [`insert`](SharedDict::insert).
    pub fn remove(&self, k: &K) -> Result<Option<V>, ManagerError> {
        self.h.opt(Req::DRemove(self.h.id, enc(k)?))
    }
    /// Whether `k` is there.
    ///
    /// # Errors
    ///
    /// As [`insert`](SharedDict::insert).
    pub fn contains_key(&self, k: &K) -> Result<bool, ManagerError> {
        match self.h.call(Req::DContains(self.h.id, enc(k)?))? {
            Resp::Bool(b) => Ok(b),
            r => Err(unexpected(r)),
        }
    }
    /// The number of entries.
    ///
    /// # Errors
    ///
    /// As [`insert`](SharedDict::insert).
    pub fn len(&self) -> Result<usize, ManagerError> {
        self.h.count()
    }
    /// Whether it is empty.
    ///
    /// # Errors
    ///
    /// As [`insert`](SharedDict::insert).
    pub fn is_empty(&self) -> Result<bool, ManagerError> {
        Ok(self.len()? == 0)
    }
    /// The keys (in the order of their encodings).
    ///
    /// # Errors
    ///
    /// As [`insert`](SharedDict::insert).
    pub fn keys(&self) -> Result<Vec<K>, ManagerError> {
        self.h.many(Req::DKeys(self.h.id))
    }
    /// The values (in the order of their keys' encodings).
    ///
    /// # Errors
    ///
    /// As [`insert`](SharedDict::insert).
    pub fn values(&self) -> Result<Vec<V>, ManagerError> {
        self.h.many(Req::DValues(self.h.id))
    }
    /// Every `(key, value)` (Python's `items()`).
    ///
    /// # Errors
    ///
    /// As [`insert`](SharedDict::insert).
    pub fn items(&self) -> Result<Vec<(K, V)>, ManagerError> {
        match self.h.call(Req::DItems(self.h.id))? {
            Resp::Pairs(v) => v.iter().map(|(k, v)| Ok((dec(k)?, dec(v)?))).collect(),
            r => Err(unexpected(r)),
        }
    }
    /// A snapshot as a local map (Python's `dict(d)`).
    ///
    /// # Errors
    ///
    /// As [`insert`](SharedDict::insert).
    pub fn to_map(&self) -> Result<HashMap<K, V>, ManagerError>
    where
        K: Eq + std::hash::Hash,
    {
        Ok(self.items()?.into_iter().collect())
    }
    /// Inserts every pair, in one round trip (Python's `update`).
    ///
    /// # Errors
    ///
    /// As [`insert`](SharedDict::insert).
    pub fn update(&self, kvs: impl IntoIterator<Item = (K, V)>) -> Result<(), ManagerError> {
        let kvs: Result<Vec<(Bytes, Bytes)>, ManagerError> = kvs
            .into_iter()
            .map(|(k, v)| Ok((enc(&k)?, enc(&v)?)))
            .collect();
        self.h.unit(Req::DUpdate(self.h.id, kvs?))
    }
    /// The same as [`update`](SharedDict::update) (the `Extend` spelling).
    ///
    /// # Errors
    ///
    /// As [`insert`](SharedDict::insert).
    pub fn extend(&self, kvs: impl IntoIterator<Item = (K, V)>) -> Result<(), ManagerError> {
        self.update(kvs)
    }
    /// Removes every entry.
    ///
    /// # Errors
    ///
    /// As [`insert`](SharedDict::insert).
    pub fn clear(&self) -> Result<(), ManagerError> {
        self.h.unit(Req::Clear(self.h.id))
    }
}

/// A list in a manager (Python's `Manager().list()`): a proxy; every call is one round
/// trip to the server.
pub struct SharedList<T> {
    h: Handle,
    _t: PhantomData<Invariant<T>>,
}
proxy_common!(SharedList<T>);

impl<T: Message> SharedList<T> {
    /// Appends `x` (Python's `append`).
    ///
    /// # Errors
    ///
    /// [`ManagerError`]: the server is gone, a value cannot be encoded or decoded.
    pub fn push(&self, x: T) -> Result<(), ManagerError> {
        self.h.unit(Req::LPush(self.h.id, enc(&x)?))
    }
    /// Removes and returns the last item.
    ///
    /// # Errors
    ///
    /// As [`push`](SharedList::push).
    pub fn pop(&self) -> Result<Option<T>, ManagerError> {
        self.h.opt(Req::LPop(self.h.id))
    }
    /// Item `i`, `None` out of range.
    ///
    /// # Errors
    ///
    /// As [`push`](SharedList::push).
    pub fn get(&self, i: usize) -> Result<Option<T>, ManagerError> {
        self.h.opt(Req::LGet(self.h.id, i as u64))
    }
    /// Replaces item `i`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Refused`] out of range; as [`push`](SharedList::push).
    pub fn set(&self, i: usize, x: T) -> Result<(), ManagerError> {
        self.h.unit(Req::LSet(self.h.id, i as u64, enc(&x)?))
    }
    /// Inserts `x` before item `i` (`i == len` appends).
    ///
    /// # Errors
    ///
    /// [`ManagerError::Refused`] when `i > len`; as [`push`](SharedList::push).
    pub fn insert(&self, i: usize, x: T) -> Result<(), ManagerError> {
        self.h.unit(Req::LInsert(self.h.id, i as u64, enc(&x)?))
    }
    /// Removes and returns item `i`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Refused`] out of range; as [`push`](SharedList::push).
    pub fn remove(&self, i: usize) -> Result<T, ManagerError> {
        match self.h.call(Req::LRemove(self.h.id, i as u64))? {
            Resp::One(b) => dec(&b),
            r => Err(unexpected(r)),
        }
    }
    /// The number of items.
    ///
    /// # Errors
    ///
    /// As [`push`](SharedList::push).
    pub fn len(&self) -> Result<usize, ManagerError> {
        self.h.count()
    }
    /// Whether it is empty.
    ///
    /// # Errors
    ///
    /// As [`push`](SharedList::push).
    pub fn is_empty(&self) -> Result<bool, ManagerError> {
        Ok(self.len()? == 0)
    }
    /// Appends every item, in one round trip.
    ///
    /// # Errors
    ///
    /// As [`push`](SharedList::push).
    pub fn extend(&self, xs: impl IntoIterator<Item = T>) -> Result<(), ManagerError> {
        let xs: Result<Vec<Bytes>, ManagerError> = xs.into_iter().map(|x| enc(&x)).collect();
        self.h.unit(Req::LExtend(self.h.id, xs?))
    }
    /// A snapshot as a local `Vec` (Python's `list(l)`).
    ///
    /// # Errors
    ///
    /// As [`push`](SharedList::push).
    pub fn to_vec(&self) -> Result<Vec<T>, ManagerError> {
        self.h.many(Req::LAll(self.h.id))
    }
    /// Removes every item.
    ///
    /// # Errors
    ///
    /// As [`push`](SharedList::push).
    pub fn clear(&self) -> Result<(), ManagerError> {
        self.h.unit(Req::Clear(self.h.id))
    }
}

/// A namespace in a manager (Python's `Manager().Namespace()`): named values of any
/// type.
#[derive(Clone, Serialize, Deserialize)]
pub struct Namespace {
    h: Handle,
}

impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Namespace").field("id", &self.h.id).finish()
    }
}

impl Namespace {
    /// Sets `name` to `v`.
    ///
    /// # Errors
    ///
    /// [`ManagerError`]: the server is gone, the value cannot be encoded.
    pub fn set<T: Serialize + ?Sized>(&self, name: &str, v: &T) -> Result<(), ManagerError> {
        self.h.unit(Req::NSet(self.h.id, name.to_string(), enc(v)?))
    }
    /// The value of `name`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Refused`] when `name` is not set (Python's `AttributeError`), a
    /// decode error when it holds another type.
    pub fn get<T: Message>(&self, name: &str) -> Result<T, ManagerError> {
        self.h
            .opt(Req::NGet(self.h.id, name.to_string()))?
            .ok_or_else(|| ManagerError::Refused(format!("the namespace has no `{name}`")))
    }
    /// Removes `name`; whether it was set.
    ///
    /// # Errors
    ///
    /// As [`set`](Namespace::set).
    pub fn remove(&self, name: &str) -> Result<bool, ManagerError> {
        match self.h.call(Req::NRemove(self.h.id, name.to_string()))? {
            Resp::Opt(o) => Ok(o.is_some()),
            r => Err(unexpected(r)),
        }
    }
    /// The names set, sorted.
    ///
    /// # Errors
    ///
    /// As [`set`](Namespace::set).
    pub fn names(&self) -> Result<Vec<String>, ManagerError> {
        match self.h.call(Req::NNames(self.h.id))? {
            Resp::Names(v) => Ok(v),
            r => Err(unexpected(r)),
        }
    }
}

// ------------------------------------------------------------------ Manager

/// A manager: a server process owning shared objects (Python's `Manager()`), or a
/// connection to a remote one ([`Manager::connect`]).
///
/// Dropping a manager that started its server shuts the server down. An object of the
/// manager is freed when its last proxy (in any process) is dropped, or, for a `_named`
/// one, once [`remove_named`](Manager::remove_named) was called (see
/// [Freeing](crate::manager#freeing)).
///
/// # Examples
///
/// ```
/// use procactor::Manager;
///
/// fn main() {
///     procactor::init();
///     let mgr = Manager::start().unwrap();
///     let d = mgr.dict::<String, i64>().unwrap();
///     d.insert("a".into(), 22).unwrap();
///     assert_eq!(d.get(&"a".into()).unwrap(), Some(22));
///     let l = mgr.list::<u64>().unwrap();
///     l.push(1).unwrap();
///     assert_eq!(l.to_vec().unwrap(), [1]);
///     let ns = mgr.namespace().unwrap();
///     ns.set("x", &3).unwrap();
///     assert_eq!(ns.get::<i32>("x").unwrap(), 3);
///     mgr.shutdown().unwrap();
/// }
/// ```
pub struct Manager {
    client: Arc<Client>,
    server: Mutex<Option<Process<()>>>,
    address: Option<String>,
    /// Whether the server's local socket is known to be bound (see `new_sync`).
    sync_ready: std::sync::atomic::AtomicBool,
}

impl fmt::Debug for Manager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manager")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Manager`] that also listens for remote clients.
#[derive(Debug, Default)]
pub struct ManagerBuilder {
    listen: Option<String>,
    authkey: Option<Vec<u8>>,
    call_timeout: Option<Duration>,
}

impl ManagerBuilder {
    /// Also listen on this TCP address (`"127.0.0.1:0"` picks a free port; see
    /// [`Manager::address`]).
    pub fn listen(mut self, address: &str) -> Self {
        self.listen = Some(address.to_string());
        self
    }
    /// The key remote clients must prove they know (required with `listen`).
    pub fn authkey(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.authkey = Some(key.into());
        self
    }
    /// The manager's call timeout (default: none, as in Python): see
    /// [`Manager::set_call_timeout`].
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = Some(timeout);
        self
    }
    /// Starts the server process.
    ///
    /// # Errors
    ///
    /// `listen` without `authkey`, an address that cannot be bound, the server cannot
    /// start.
    pub fn start(self) -> Result<Manager, ManagerError> {
        let requests: Queue<(u64, Req)> = Queue::with_capacity_bytes(1 << 20)?;
        let replies: Queue<(u64, Resp)> = Queue::with_capacity_bytes(1 << 20)?;
        let cell = RawArray::<u64>::zeroed(2)?;
        let mut address = None;
        let listener = match self.listen {
            None => None,
            Some(a) => {
                let key = self.authkey.clone().ok_or_else(|| {
                    ManagerError::Refused("a listening manager needs an authkey".into())
                })?;
                let l = TcpListener::bind(&a)?;
                address = Some(l.local_addr()?.to_string());
                Some((l, key))
            }
        };
        let boot_replies = replies.clone();
        replies.close(); // clients only take replies
                         // the name is world-readable (`/proc/net/unix`): it comes from random bytes of
                         // its own, never from the key's
        let (tag, nonce) = (conn::random_nonce()?, conn::random_nonce()?);
        let local_name = format!(
            "procactor-manager-{}-{}",
            std::process::id(),
            tag[..8]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        let local_key = Bytes::from(nonce.to_vec());
        let boot = ServerBootRef {
            local: (&local_name, &local_key),
            requests: &requests,
            replies: &boot_replies,
            listener: listener.as_ref().map(|(l, k)| {
                (
                    codec::SendFd(std::os::fd::AsFd::as_fd(l)),
                    Bytes::from(k.clone()),
                )
            }),
        };
        let p = crate::process::start_encoded_via(
            server_main,
            &boot,
            Some("SyncManager".into()),
            true,
            None,
            None,
            None,
        )?;
        drop(boot_replies);
        if let Some(w) = cell.atomic_u64(1) {
            w.store(u64::from(p.pid()), Ordering::Release);
        }
        let timeout = CallTimeout::new(None);
        timeout.set(self.call_timeout);
        Ok(Manager {
            client: Arc::new(Client::Local {
                requests,
                replies,
                lock: Lock::new()?,
                cell,
                by_name: (local_name, local_key),
                timeout,
            }),
            server: Mutex::new(Some(p)),
            address,
            sync_ready: Default::default(),
        })
    }
}

#[derive(Serialize)]
struct ServerBootRef<'a> {
    requests: &'a Queue<(u64, Req)>,
    replies: &'a Queue<(u64, Resp)>,
    listener: Option<(codec::SendFd<'a>, Bytes)>,
    local: (&'a str, &'a Bytes),
}

impl Manager {
    /// Starts a manager server process, reachable from this process and its children.
    ///
    /// # Errors
    ///
    /// The server cannot start (or `procactor::init()` was not called).
    pub fn start() -> Result<Manager, ManagerError> {
        ManagerBuilder::default().start()
    }

    /// A builder (`listen`, `authkey`).
    pub fn builder() -> ManagerBuilder {
        ManagerBuilder::default()
    }

    /// Connects to a manager listening at `address` (`"host:port"`), proving `key`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Auth`] for a wrong key, [`ManagerError::Io`] when nobody listens.
    pub fn connect(address: &str, key: &[u8]) -> Result<Manager, ManagerError> {
        let address = Address::parse(address);
        let s = open_session_by(&address, key, None)?;
        Ok(Manager {
            client: Arc::new(Client::Remote {
                address: address.clone(),
                key: key.to_vec(),
                session: Mutex::new(Some(s)),
                timeout: CallTimeout::new(None),
            }),
            server: Mutex::new(None),
            address: Some(address.to_string()),
            sync_ready: Default::default(),
        })
    }

    /// Sets the **call timeout**: how long an operation that has no timeout of its own
    /// may wait for the server before it fails with [`ManagerError::Timeout`]; `None`
    /// (the default, as in Python) waits as long as the server is there.
    ///
    /// It applies to every operation of the dicts, lists, namespaces, values and arrays
    /// of this manager (their proxies in this process share it, whenever they were
    /// made, and see a change at once), and to this manager's own calls (making an
    /// object, [`object_count`](Manager::object_count),
    /// [`remove_named`](Manager::remove_named); [`shutdown`](Manager::shutdown) of a
    /// server this process started kills it when it does not answer in time). A proxy
    /// that travels to another process carries the timeout in force when it was
    /// encoded (a later change here does not reach it). The synchronisation objects
    /// and queues ([`SharedLock`], [`SharedQueue`], …) are not covered: their waiting
    /// operations have `try_`/`_timeout` forms, and their other operations give up on
    /// a server that sends nothing for 30 s (see [Timeouts](crate::manager#timeouts)).
    ///
    /// An operation that timed out may or may not have been applied (the server may
    /// be frozen with the request in hand, and apply it when it runs again; a frozen
    /// server cannot say). Its answer, should it come later, is never taken for the
    /// answer to a later call: local answers are numbered and a late one is dropped; a
    /// remote manager's connection is closed and the next call opens a new one. The
    /// timeout counts from the start of the call, including the wait for another
    /// thread's call on the same connection.
    ///
    /// # Examples
    ///
    /// ```
    /// use procactor::Manager;
    /// use std::time::Duration;
    ///
    /// fn main() {
    ///     procactor::init();
    ///     let mgr = Manager::builder()
    ///         .call_timeout(Duration::from_secs(5))
    ///         .start()
    ///         .unwrap();
    ///     assert_eq!(mgr.call_timeout(), Some(Duration::from_secs(5)));
    ///     let d = mgr.dict::<u32, u32>().unwrap();
    ///     d.insert(1, 2).unwrap(); // fails with `Timeout` after 5 s of a frozen server
    ///     mgr.set_call_timeout(None); // as Python: wait as long as the server lives
    ///     assert_eq!(d.get(&1).unwrap(), Some(2));
    /// }
    /// ```
    pub fn set_call_timeout(&self, timeout: Option<Duration>) {
        self.client.timeout().set(timeout);
    }

    /// The call timeout (see [`set_call_timeout`](Manager::set_call_timeout)).
    pub fn call_timeout(&self) -> Option<Duration> {
        self.client.timeout().get()
    }

    /// The address remote clients use (`None` for a manager that does not listen).
    pub fn address(&self) -> Option<String> {
        self.address.clone()
    }

    /// The server's pid, for a manager this process started.
    pub fn pid(&self) -> Option<u32> {
        self.server
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(Process::pid)
    }

    /// This process's reference connection to the server (see [`refs`]), and its
    /// number there.
    fn link(&self) -> Result<(Arc<refs::Link>, u64), ManagerError> {
        if matches!(&*self.client, Client::Local { .. }) && !self.sync_ready.load(Ordering::Acquire)
        {
            // the server binds its local socket before it answers its first request
            // over the rings: one answer (here a refusal) means the name is there
            match self.client.call(Req::Len(0)) {
                Ok(_) | Err(ManagerError::Refused(_)) => {}
                Err(e) => return Err(e),
            }
            self.sync_ready.store(true, Ordering::Release);
        }
        let (address, key) = self.client.target();
        let link = refs::link(&address, &key);
        let holder = link.holder()?;
        Ok((link, holder))
    }

    fn new_obj(&self, kind: Kind, name: Option<&str>) -> Result<Handle, ManagerError> {
        self.new_with_init(kind, name, None)
    }

    /// A dict, list, namespace (`init: None`), value or array.
    fn new_with_init(
        &self,
        kind: Kind,
        name: Option<&str>,
        init: Option<Vec<Bytes>>,
    ) -> Result<Handle, ManagerError> {
        let (link, holder) = self.link()?;
        let name = name.map(str::to_string);
        let req = match init {
            None => Req::New(kind, name, holder),
            Some(init) => Req::NewWith(kind, name, init, holder),
        };
        match self.client.call(req)? {
            Resp::Id(id) => Ok(Handle {
                client: self.client.clone(),
                id,
                _ref: Ref::counted(link, (Space::Data, id)),
            }),
            r => Err(unexpected(r)),
        }
    }

    /// How many objects the server holds now (named ones included): what a test of
    /// freeing looks at. An object goes when the last proxy of it, in any process, is
    /// dropped (see [`Manager`]); the server learns of a drop a moment later (the
    /// decrement is sent in the background), so a caller that dropped its last proxy
    /// may see the old count for a few milliseconds.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Disconnected`] when the server is gone.
    pub fn object_count(&self) -> Result<usize, ManagerError> {
        match self.client.call(Req::ObjectCount)? {
            Resp::Count(n) => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
            r => Err(unexpected(r)),
        }
    }

    /// Forgets `name` (for objects of every kind made with a `_named` method under that
    /// name): they then go when their last proxy does — at once if there is none.
    /// Returns whether any object had that name. A later `_named` call with this name
    /// makes a new object.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Disconnected`] when the server is gone.
    pub fn remove_named(&self, name: &str) -> Result<bool, ManagerError> {
        match self.client.call(Req::RemoveNamed(name.to_string()))? {
            Resp::Count(n) => Ok(n > 0),
            r => Err(unexpected(r)),
        }
    }

    /// A new, empty shared dict.
    ///
    /// # Errors
    ///
    /// The server is gone.
    pub fn dict<K: Message, V: Message>(&self) -> Result<SharedDict<K, V>, ManagerError> {
        Ok(SharedDict {
            h: self.new_obj(Kind::Dict, None)?,
            _t: PhantomData,
        })
    }
    /// The shared dict called `name`, made empty if it does not exist yet: how another
    /// client finds it.
    ///
    /// # Errors
    ///
    /// The server is gone.
    pub fn dict_named<K: Message, V: Message>(
        &self,
        name: &str,
    ) -> Result<SharedDict<K, V>, ManagerError> {
        Ok(SharedDict {
            h: self.new_obj(Kind::Dict, Some(name))?,
            _t: PhantomData,
        })
    }
    /// A new, empty shared list.
    ///
    /// # Errors
    ///
    /// The server is gone.
    pub fn list<T: Message>(&self) -> Result<SharedList<T>, ManagerError> {
        Ok(SharedList {
            h: self.new_obj(Kind::List, None)?,
            _t: PhantomData,
        })
    }
    /// The shared list called `name` (get or create).
    ///
    /// # Errors
    ///
    /// The server is gone.
    pub fn list_named<T: Message>(&self, name: &str) -> Result<SharedList<T>, ManagerError> {
        Ok(SharedList {
            h: self.new_obj(Kind::List, Some(name))?,
            _t: PhantomData,
        })
    }
    /// A new, empty namespace.
    ///
    /// # Errors
    ///
    /// The server is gone.
    pub fn namespace(&self) -> Result<Namespace, ManagerError> {
        Ok(Namespace {
            h: self.new_obj(Kind::Namespace, None)?,
        })
    }
    /// The namespace called `name` (get or create).
    ///
    /// # Errors
    ///
    /// The server is gone.
    pub fn namespace_named(&self, name: &str) -> Result<Namespace, ManagerError> {
        Ok(Namespace {
            h: self.new_obj(Kind::Namespace, Some(name))?,
        })
    }

    /// Stops the server (a remote one too). Later operations through any proxy give
    /// [`ManagerError::Disconnected`]. Calling it again is harmless.
    ///
    /// # Errors
    ///
    /// None today for a local manager (a server already gone is fine).
    pub fn shutdown(&self) -> Result<(), ManagerError> {
        let mut server = self.server.lock().unwrap_or_else(|e| e.into_inner());
        match self.client.call(Req::Shutdown) {
            Ok(_) | Err(ManagerError::Disconnected) => {}
            // (a server of ours that did not answer in time is killed below)
            Err(ManagerError::Timeout) if server.is_some() => {}
            Err(e) => return Err(e),
        }
        if let Some(mut p) = server.take() {
            if p.join_timeout(Duration::from_secs(5)).is_err() {
                let _ = p.kill();
                let _ = p.join();
            }
        }
        Ok(())
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        let started = self
            .server
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some();
        if started {
            let _ = self.shutdown();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(s: &mut Session, r: &Resp) {
        let mut buf = Vec::new();
        codec::encode(r, &mut buf, None).unwrap();
        s.send(&buf).unwrap();
    }

    #[test]
    fn an_answer_that_does_not_decode_fails_its_call_and_keeps_the_connection() {
        let (mut client, mut server) = wire::tests::pair();
        let until = || Some(std::time::Instant::now() + Duration::from_secs(10));
        // an authentic frame whose payload is no answer (a newer server, say)
        server.send(b"\xff\xfe not an answer").unwrap();
        let r = round_trip(&mut client, &Req::ObjectCount, until());
        assert!(matches!(r, Err((ManagerError::Decode(_), true))), "{r:?}");
        // the connection is in step: the next call gets its answer
        send(&mut server, &Resp::Count(7));
        assert!(matches!(
            round_trip(&mut client, &Req::ObjectCount, until()),
            Ok(Resp::Count(7))
        ));
        // an answer over the limit is TooLarge, the connection kept too
        send(&mut server, &Resp::TooLarge(1 << 40));
        assert!(matches!(
            round_trip(&mut client, &Req::ObjectCount, until()),
            Err((ManagerError::TooLarge { size, .. }, true)) if size == 1 << 40
        ));
        // and a deadline that passes is Timeout, the connection out of step
        let t = std::time::Instant::now();
        let r = round_trip(
            &mut client,
            &Req::ObjectCount,
            Some(t + Duration::from_millis(50)),
        );
        assert!(matches!(r, Err((ManagerError::Timeout, false))), "{r:?}");
        assert!(t.elapsed() < Duration::from_secs(5));
    }
}
