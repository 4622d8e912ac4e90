//! The server side of the manager's synchronisation objects and queues (Python's
//! `SyncManager.Lock()`, `RLock()`, `Semaphore()`, `BoundedSemaphore()`, `Condition()`,
//! `Event()`, `Barrier()`, `Queue()`, `JoinableQueue()`).
//!
//! # Threading model
//!
//! These objects are only reached over the server's socket connections (its local socket
//! name, or TCP), never over the shared-memory rings that serve dicts and lists: the
//! server runs **one thread per connection**, so a request that blocks (an `acquire`, a
//! `get` from an empty queue, an event's `wait`) blocks that connection's thread only.
//! All objects share one mutex; **each object has its own condition variable**, and a
//! request that changed an object wakes the threads blocked on that object only. A
//! blocked thread also wakes every [`SLICE`] to see whether its client hung up (the
//! client sends nothing while it waits, so a readable socket means it is gone), and
//! sends a [`Resp::Pending`] frame every [`HEARTBEAT`] so that the client can tell a
//! server that still waits from one that vanished.
//!
//! # Ownership
//!
//! Every connection has a number; a lock records the number of the connection that
//! holds it, and each connection has the list of the objects it holds something of.
//! When a connection ends (the client closed it, died, or broke the protocol)
//! [`SyncObjects::disconnect`] releases, in those objects only, whatever it holds: a
//! `Lock`, an `RLock` (whatever its count), a `Condition`'s lock, and the `Semaphore`
//! acquisitions it has not released. A client process opens one connection per thread
//! (see the proxies), so ownership is per thread of a client process.

use super::{refused, Resp};
use crate::Bytes;
use procactor_transports::deadline::Deadline;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a blocked server thread sleeps before it checks whether its client is gone.
pub(super) const SLICE: Duration = Duration::from_millis(100);
/// How often a blocked server thread tells its client that it still waits.
pub(super) const HEARTBEAT: Duration = Duration::from_secs(5);

/// What kind of object (a name finds an object of one kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(super) enum SyncKind {
    Lock,
    RLock,
    Semaphore,
    BoundedSemaphore,
    Condition,
    Event,
    Barrier,
    Queue,
    JoinableQueue,
}

/// A timeout as it travels: microseconds, `None` for no limit.
pub(super) type Wait = Option<u64>;

/// A request about a synchronisation object or a queue.
#[derive(Debug, Serialize, Deserialize)]
pub(super) enum SyncReq {
    /// A new object (`name`: get or create); the first `u64` is a semaphore's value, a
    /// barrier's parties or a queue's maxsize (0: unbounded), the second the reference
    /// connection that holds its first reference (see `refs`).
    New(SyncKind, Option<String>, u64, u64),
    /// Lock, RLock, Semaphore, Condition: acquire.
    Acquire(u64, Wait),
    /// Lock, RLock, Semaphore, Condition: release.
    Release(u64),
    /// Lock: whether held; RLock/Condition: held by anyone; Event: whether set.
    IsSet(u64),
    /// A semaphore's value.
    Value(u64),
    /// Condition: wait (the lock must be held); Event: wait; Barrier: wait;
    /// JoinableQueue: join.
    Wait(u64, Wait),
    /// Condition: wake up to `n` waiters.
    Notify(u64, u64),
    /// Event: set; Barrier: abort.
    Set(u64),
    /// Event: clear; Barrier: reset.
    Clear(u64),
    /// Barrier: (parties, waiting, broken).
    BarrierState(u64),
    /// Queue: put.
    Put(u64, Bytes, Wait),
    /// Queue: get.
    Get(u64, Wait),
    /// Queue: its length.
    Len(u64),
    /// JoinableQueue: one item is done.
    TaskDone(u64),
}

impl SyncReq {
    /// How long the server may wait on it (`None`: it does not wait, or without limit).
    pub(super) fn wait(&self) -> Wait {
        match self {
            SyncReq::Acquire(_, w)
            | SyncReq::Wait(_, w)
            | SyncReq::Put(_, _, w)
            | SyncReq::Get(_, w) => *w,
            _ => None,
        }
    }

    /// Whether the server may wait on it (with or without a limit): an acquire, a
    /// `wait`, a queue's put or get. The other requests are answered at once.
    pub(super) fn blocks(&self) -> bool {
        matches!(
            self,
            SyncReq::Acquire(..) | SyncReq::Wait(..) | SyncReq::Put(..) | SyncReq::Get(..)
        )
    }
}

enum Obj {
    Lock(Option<u64>),
    RLock(Option<(u64, u64)>),
    Sem {
        value: u64,
        bound: Option<u64>,
        /// acquisitions not released yet, per connection
        held: HashMap<u64, u64>,
    },
    Cond {
        lock: Option<(u64, u64)>,
        /// waiting tickets, oldest first
        waiters: VecDeque<u64>,
        /// tickets notified and not yet seen by their waiter
        notified: Vec<u64>,
    },
    Event(bool),
    Barrier {
        parties: u64,
        /// the tickets of the current waiters, in arrival order
        waiting: Vec<u64>,
        broken: bool,
        /// how each waiter's wait ended (its arrival index; `None`: broken), until it
        /// sees it (each waiter takes its own: nothing piles up)
        outcome: HashMap<u64, Option<u64>>,
    },
    Queue {
        items: VecDeque<Bytes>,
        max: Option<usize>,
        /// `Some` for a joinable queue: items put and not yet `task_done`
        unfinished: Option<u64>,
    },
}

/// An object and the condition variable its waiters sleep on.
struct Entry {
    obj: Obj,
    cv: Arc<Condvar>,
}

#[derive(Default)]
pub(super) struct Objects {
    objs: HashMap<u64, Entry>,
    names: HashMap<(SyncKind, String), u64>,
    next: u64,
    next_ticket: u64,
    /// per connection, the objects it holds something of (a lock, semaphore units)
    held: HashMap<u64, HashSet<u64>>,
    /// per object, the requests of multiplexed connections that wait on it, oldest
    /// first (see [`SyncObjects::apply_parked`])
    parked: HashMap<u64, VecDeque<Parked>>,
    /// objects changed since their parked requests were last tried
    dirty: Vec<u64>,
}

/// A request that must wait: its object, its deadline, and how it goes on. Its steps
/// own what they need, so that it can wait in a thread ([`SyncObjects::apply`]) or
/// parked, with no thread ([`SyncObjects::apply_parked`]).
pub(super) struct Blocked {
    id: u64,
    until: Option<Instant>,
    /// With the mutex held, first and after each change of the object: the answer
    /// once there is one (it has then done what the request asked).
    step: Box<Step>,
    /// The deadline passed or the client is gone: the answer, or `None` to go on
    /// waiting without a deadline (a condition's waiter taking its lock back). It may
    /// still find the request done.
    on_stop: Box<OnStop>,
}

/// A blocked request's step (see [`Blocked`]).
type Step = dyn FnMut(&mut Objects) -> Option<Resp> + Send;
/// A blocked request's end (see [`Blocked`]).
type OnStop = dyn FnMut(&mut Objects, Stop) -> Option<Resp> + Send;

impl Blocked {
    fn new(
        id: u64,
        until: Option<Instant>,
        step: impl FnMut(&mut Objects) -> Option<Resp> + Send + 'static,
        on_stop: impl FnMut(&mut Objects, Stop) -> Option<Resp> + Send + 'static,
    ) -> Self {
        Blocked {
            id,
            until,
            step: Box::new(step),
            on_stop: Box::new(on_stop),
        }
    }
}

/// What a request comes to at once.
pub(super) enum Began {
    /// Its answer.
    Now(Resp),
    /// It may have to wait.
    Wait(Blocked),
}

/// Where the answers of a multiplexed connection's parked requests go: its thread
/// writes them (never a thread that holds the objects' mutex, so a frozen client holds
/// up nobody).
pub(super) struct Outbox {
    /// (tag, answer, object)
    q: Mutex<VecDeque<(u64, Resp, u64)>>,
    /// rung (a byte written, never blocking) when the queue stops being empty
    bell: std::os::unix::net::UnixStream,
}

impl Outbox {
    /// A new outbox and the end its connection's thread polls.
    pub(super) fn new() -> std::io::Result<(Arc<Outbox>, std::os::unix::net::UnixStream)> {
        let (bell, hears) = std::os::unix::net::UnixStream::pair()?;
        bell.set_nonblocking(true)?;
        hears.set_nonblocking(true)?;
        Ok((
            Arc::new(Outbox {
                q: Mutex::new(VecDeque::new()),
                bell,
            }),
            hears,
        ))
    }

    fn deliver(&self, tag: u64, r: Resp, id: u64) {
        let mut q = self.q.lock().unwrap_or_else(|e| e.into_inner());
        q.push_back((tag, r, id));
        if q.len() == 1 {
            // (a full socket means a byte is there already: the thread will look)
            let _ = std::io::Write::write(&mut &self.bell, &[1]);
        }
    }

    /// The answers ready to be written, oldest first: (tag, answer, object).
    pub(super) fn take(&self) -> VecDeque<(u64, Resp, u64)> {
        std::mem::take(&mut *self.q.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// A request of a multiplexed connection that waits, with no thread.
struct Parked {
    conn: u64,
    /// on whose behalf it waits
    owner: u64,
    tag: u64,
    b: Blocked,
    out: Arc<Outbox>,
}

impl Objects {
    fn obj(&mut self, id: u64) -> Option<&mut Obj> {
        self.objs.get_mut(&id).map(|e| &mut e.obj)
    }
    fn hold(&mut self, conn: u64, id: u64) {
        self.held.entry(conn).or_default().insert(id);
    }
    fn unhold(&mut self, conn: u64, id: u64) {
        if let Some(h) = self.held.get_mut(&conn) {
            h.remove(&id);
            if h.is_empty() {
                self.held.remove(&conn);
            }
        }
    }
    fn ticket(&mut self) -> u64 {
        self.next_ticket += 1;
        self.next_ticket
    }
    /// Object `id` changed: its blocked threads look again, and so do its parked
    /// requests (at [`settle`](Objects::settle), before the mutex is let go).
    fn wake(&mut self, id: u64) {
        if let Some(e) = self.objs.get(&id) {
            e.cv.notify_all();
        }
        if self.parked.contains_key(&id) {
            self.dirty.push(id);
        }
    }

    /// Tries again the parked requests of the objects that changed, oldest first,
    /// until none makes progress; their answers go to their connections' outboxes.
    fn settle(&mut self) {
        while let Some(id) = self.dirty.pop() {
            let Some(mut list) = self.parked.remove(&id) else {
                continue;
            };
            let mut keep = VecDeque::new();
            let mut progress = false;
            while let Some(mut p) = list.pop_front() {
                match (p.b.step)(self) {
                    Some(r) => {
                        p.out.deliver(p.tag, r, id);
                        progress = true;
                    }
                    None => keep.push_back(p),
                }
            }
            if !keep.is_empty() {
                self.parked.insert(id, keep);
            }
            if progress {
                // what was done (an item taken, a lock taken) may let others on
                self.wake(id);
            }
        }
    }

    /// One attempt at an acquisition by `conn`: `None` when it must wait.
    fn try_acquire(&mut self, conn: u64, id: u64) -> Option<Resp> {
        let got = match self.obj(id) {
            Some(Obj::Lock(h)) => h.is_none().then(|| *h = Some(conn)).is_some(),
            Some(Obj::RLock(h)) | Some(Obj::Cond { lock: h, .. }) => match h {
                None => {
                    *h = Some((conn, 1));
                    true
                }
                Some((c, n)) if *c == conn => {
                    *n += 1;
                    true
                }
                Some(_) => false,
            },
            Some(Obj::Sem { value, held, .. }) => {
                if *value > 0 {
                    *value -= 1;
                    *held.entry(conn).or_insert(0) += 1;
                    true
                } else {
                    false
                }
            }
            Some(_) => return Some(not_kind(id, "a lock or a semaphore")),
            None => return Some(no_object(id)),
        };
        got.then(|| {
            self.hold(conn, id);
            Resp::Bool(true)
        })
    }
}

/// Why a blocked request stopped waiting.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stop {
    TimedOut,
    Gone,
}

/// The blocked thread's view of its client: whether it is still there, and the
/// heartbeats.
pub(super) trait Peer {
    /// Whether the client is still there (checked without the objects' mutex held).
    fn alive(&mut self) -> bool;
    /// Tells the client the server still waits; false when that failed.
    fn heartbeat(&mut self) -> bool;
}

/// Every synchronisation object of one server.
#[derive(Default)]
pub(super) struct SyncObjects {
    m: Mutex<Objects>,
}

fn deadline(w: Wait) -> Option<Instant> {
    Deadline::after_opt(w.map(Duration::from_micros)).instant()
}

fn not_kind(id: u64, what: &str) -> Resp {
    refused(format!("object {id} is not {what}"))
}

fn no_object(id: u64) -> Resp {
    refused(format!("no object {id} in this manager"))
}

type Guard<'a> = MutexGuard<'a, Objects>;

impl SyncObjects {
    fn lock(&self) -> Guard<'_> {
        self.m.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The one wait loop of every request that blocks a thread: runs the request's step
    /// (with the mutex held) first and after every wake-up of its object's condition
    /// variable until it gives the answer; when the deadline passes or the client is
    /// gone first, its `on_stop` gives it (or, at a deadline, says to go on without
    /// one).
    fn wait_until<'a>(
        &'a self,
        mut g: Guard<'a>,
        mut b: Blocked,
        peer: &mut dyn Peer,
    ) -> (Guard<'a>, Resp) {
        let id = b.id;
        let mut beat = Instant::now();
        loop {
            if let Some(r) = (b.step)(&mut g) {
                g.wake(id);
                return (g, r);
            }
            let Some(cv) = g.objs.get(&id).map(|e| e.cv.clone()) else {
                return (g, no_object(id));
            };
            let now = Instant::now();
            let slice = match b.until {
                Some(d) if d <= now => match (b.on_stop)(&mut g, Stop::TimedOut) {
                    Some(r) => return (g, r),
                    None => {
                        b.until = None;
                        continue;
                    }
                },
                Some(d) => (d - now).min(SLICE),
                None => SLICE,
            };
            // (what the request changed before it waits is seen by the parked ones)
            g.settle();
            let (g2, _) = cv.wait_timeout(g, slice).unwrap_or_else(|e| e.into_inner());
            drop(g2);
            let mut ok = peer.alive();
            if ok && beat.elapsed() >= HEARTBEAT {
                ok = peer.heartbeat();
                beat = Instant::now();
            }
            g = self.lock();
            if !ok {
                let r = (b.on_stop)(&mut g, Stop::Gone).unwrap_or(Resp::Bool(false));
                return (g, r);
            }
        }
    }

    /// Releases what connection `conn` holds (it ended): only in the objects on its
    /// list, waking only their waiters.
    pub(super) fn disconnect(&self, conn: u64) {
        let mut g = self.lock();
        Self::disconnect_in(&mut g, conn);
        g.settle();
    }

    fn disconnect_in(g: &mut Objects, conn: u64) {
        for id in g.held.remove(&conn).unwrap_or_default() {
            match g.obj(id) {
                Some(Obj::Lock(h)) if *h == Some(conn) => *h = None,
                Some(Obj::RLock(h)) | Some(Obj::Cond { lock: h, .. })
                    if h.is_some_and(|(c, _)| c == conn) =>
                {
                    *h = None
                }
                Some(Obj::Sem { value, held, .. }) => {
                    if let Some(n) = held.remove(&conn) {
                        *value += n;
                    }
                }
                _ => {}
            }
            g.wake(id);
        }
    }

    /// Frees object `id` (its last reference went); a thread still blocked on it, or a
    /// request parked on it, gets a refusal.
    pub(super) fn remove(&self, id: u64) {
        let mut g = self.lock();
        if let Some(e) = g.objs.remove(&id) {
            e.cv.notify_all();
        }
        if g.parked.contains_key(&id) {
            g.dirty.push(id);
        }
        g.settle();
    }

    /// Forgets the name `name` for every kind; the objects it named.
    pub(super) fn remove_names(&self, name: &str) -> Vec<u64> {
        let mut out = Vec::new();
        self.lock().names.retain(|(_, n), id| {
            let hit = n == name;
            if hit {
                out.push(*id);
            }
            !hit
        });
        out
    }

    /// How many objects there are.
    pub(super) fn len(&self) -> usize {
        self.lock().objs.len()
    }

    /// Puts an item taken for a client that never got it back at the front of its
    /// queue.
    pub(super) fn put_back(&self, id: u64, item: Bytes) {
        let mut g = self.lock();
        if let Some(Obj::Queue { items, .. }) = g.obj(id) {
            items.push_front(item);
            g.wake(id);
        }
        g.settle();
    }

    /// Serves one request of connection `conn`, waiting in this thread if it must.
    pub(super) fn apply(&self, conn: u64, req: SyncReq, peer: &mut dyn Peer) -> Resp {
        let mut g = self.lock();
        let r = match g.begin(conn, req) {
            Began::Now(r) => r,
            Began::Wait(b) => {
                let (g2, r) = self.wait_until(g, b, peer);
                g = g2;
                r
            }
        };
        g.settle();
        r
    }

    /// Serves one request of a multiplexed connection `conn` (tag `tag`) on behalf of
    /// `owner` (what an acquisition belongs to): its answer now, or `None` when it must
    /// wait, then it is **parked** (no thread waits for it) and its answer goes to
    /// `out` once a change of its object lets it finish. A parked request has no
    /// deadline (the client gives up by [`cancel`](SyncObjects::cancel)); a deadline it
    /// carries is ignored.
    pub(super) fn apply_parked(
        &self,
        conn: u64,
        owner: u64,
        tag: u64,
        req: SyncReq,
        out: &Arc<Outbox>,
    ) -> Option<Resp> {
        let mut g = self.lock();
        let r = match g.begin(owner, req) {
            Began::Now(r) => Some(r),
            Began::Wait(mut b) => match (b.step)(&mut g) {
                Some(r) => {
                    g.wake(b.id);
                    Some(r)
                }
                None if !g.objs.contains_key(&b.id) => Some(no_object(b.id)),
                None => {
                    b.until = None;
                    g.parked.entry(b.id).or_default().push_back(Parked {
                        conn,
                        owner,
                        tag,
                        b,
                        out: out.clone(),
                    });
                    None
                }
            },
        };
        g.settle();
        r
    }

    /// The client of multiplexed connection `conn` gave up request `tag`: if it is still
    /// parked, it stops as if its client were gone (a condition's waiter passes a
    /// notification on, a barrier breaks) and `true`; `false` when it was answered
    /// already.
    pub(super) fn cancel(&self, conn: u64, tag: u64) -> bool {
        let mut g = self.lock();
        let found = !g.unpark(|p| p.conn == conn && p.tag == tag).is_empty();
        g.settle();
        found
    }

    /// Owner `owner` (of multiplexed connection `conn`) is done: its parked requests
    /// stop (so none of them can acquire for it afterwards; their tags are returned,
    /// to be answered "nothing done") and what it holds is released.
    pub(super) fn end_owner(&self, conn: u64, owner: u64) -> Vec<u64> {
        let mut g = self.lock();
        let stopped = g.unpark(|p| p.conn == conn && p.owner == owner);
        Self::disconnect_in(&mut g, owner);
        g.settle();
        stopped
    }

    /// Multiplexed connection `conn` ended: its parked requests stop as if their client
    /// were gone, and each of `owners` releases what it holds.
    pub(super) fn end_parked(&self, conn: u64, owners: impl IntoIterator<Item = u64>) {
        let mut g = self.lock();
        g.unpark(|p| p.conn == conn);
        for o in owners {
            Self::disconnect_in(&mut g, o);
        }
        g.settle();
    }
}

impl Objects {
    /// Stops the parked requests `which` picks (their client is gone); their tags.
    fn unpark(&mut self, which: impl Fn(&Parked) -> bool) -> Vec<u64> {
        let mut gone = Vec::new();
        for list in self.parked.values_mut() {
            let mut i = 0;
            while i < list.len() {
                if which(&list[i]) {
                    gone.extend(list.remove(i));
                } else {
                    i += 1;
                }
            }
        }
        self.parked.retain(|_, l| !l.is_empty());
        let mut tags = Vec::with_capacity(gone.len());
        for mut p in gone {
            let _ = (p.b.on_stop)(self, Stop::Gone);
            self.wake(p.b.id);
            tags.push(p.tag);
        }
        tags
    }

    /// What request `req` of connection (or owner) `conn` comes to at once: its answer,
    /// or how it waits.
    fn begin(&mut self, conn: u64, req: SyncReq) -> Began {
        // the object this request changed: its waiters are woken
        let mut changed = None;
        let resp = match req {
            SyncReq::New(kind, name, n, _holder) => {
                if let Some(n) = &name {
                    if let Some(&id) = self.names.get(&(kind, n.clone())) {
                        return Began::Now(Resp::Id(id));
                    }
                }
                let obj = match kind {
                    SyncKind::Lock => Obj::Lock(None),
                    SyncKind::RLock => Obj::RLock(None),
                    SyncKind::Semaphore | SyncKind::BoundedSemaphore => Obj::Sem {
                        value: n,
                        bound: (kind == SyncKind::BoundedSemaphore).then_some(n),
                        held: HashMap::new(),
                    },
                    SyncKind::Condition => Obj::Cond {
                        lock: None,
                        waiters: VecDeque::new(),
                        notified: Vec::new(),
                    },
                    SyncKind::Event => Obj::Event(false),
                    SyncKind::Barrier if n == 0 => {
                        return Began::Now(refused("a barrier needs at least one party"))
                    }
                    SyncKind::Barrier => Obj::Barrier {
                        parties: n,
                        waiting: Vec::new(),
                        broken: false,
                        outcome: HashMap::new(),
                    },
                    SyncKind::Queue | SyncKind::JoinableQueue => Obj::Queue {
                        items: VecDeque::new(),
                        max: (n > 0).then(|| usize::try_from(n).unwrap_or(usize::MAX)),
                        unfinished: (kind == SyncKind::JoinableQueue).then_some(0),
                    },
                };
                self.next += 1;
                let id = self.next;
                self.objs.insert(
                    id,
                    Entry {
                        obj,
                        cv: Arc::default(),
                    },
                );
                if let Some(n) = name {
                    self.names.insert((kind, n), id);
                }
                Resp::Id(id)
            }
            SyncReq::Acquire(id, w) => {
                return Began::Wait(Blocked::new(
                    id,
                    deadline(w),
                    move |o| o.try_acquire(conn, id),
                    |_, _| Some(Resp::Bool(false)),
                ))
            }
            SyncReq::Release(id) => {
                changed = Some(id);
                let Objects { objs, held, .. } = &mut *self;
                let mut unhold = None;
                let r = match objs.get_mut(&id).map(|e| &mut e.obj) {
                    Some(Obj::Lock(h)) => match h.take() {
                        Some(c) => {
                            unhold = Some(c);
                            Resp::Unit
                        }
                        None => refused("release of an unlocked lock"),
                    },
                    Some(Obj::RLock(h)) | Some(Obj::Cond { lock: h, .. }) => match h {
                        Some((c, n)) if *c == conn => {
                            *n -= 1;
                            if *n == 0 {
                                *h = None;
                                unhold = Some(conn);
                            }
                            Resp::Unit
                        }
                        _ => refused("release of a lock this thread does not hold"),
                    },
                    Some(Obj::Sem {
                        value,
                        bound,
                        held: by,
                    }) => {
                        if bound.is_some_and(|b| *value >= b) {
                            refused("a bounded semaphore released too many times")
                        } else {
                            *value += 1;
                            // the releaser's own acquisition first, else anyone's (a
                            // semaphore may be released by another client than the one
                            // that acquired it)
                            let who = if by.get(&conn).is_some_and(|n| *n > 0) {
                                Some(conn)
                            } else {
                                by.iter().find(|(_, n)| **n > 0).map(|(c, _)| *c)
                            };
                            if let Some(c) = who {
                                if let Some(n) = by.get_mut(&c) {
                                    *n -= 1;
                                    if *n == 0 {
                                        by.remove(&c);
                                        unhold = Some(c);
                                    }
                                }
                            }
                            Resp::Unit
                        }
                    }
                    Some(_) => not_kind(id, "a lock or a semaphore"),
                    None => no_object(id),
                };
                if let Some(c) = unhold {
                    if let Some(h) = held.get_mut(&c) {
                        h.remove(&id);
                    }
                }
                r
            }
            SyncReq::IsSet(id) => match self.obj(id) {
                Some(Obj::Lock(h)) => Resp::Bool(h.is_some()),
                Some(Obj::RLock(h)) | Some(Obj::Cond { lock: h, .. }) => Resp::Bool(h.is_some()),
                Some(Obj::Event(b)) => Resp::Bool(*b),
                Some(_) => not_kind(id, "a lock or an event"),
                None => no_object(id),
            },
            SyncReq::Value(id) => match self.obj(id) {
                Some(Obj::Sem { value, .. }) => Resp::Count(*value),
                Some(_) => not_kind(id, "a semaphore"),
                None => no_object(id),
            },
            SyncReq::Wait(id, w) => {
                let until = deadline(w);
                match self.obj(id) {
                    Some(Obj::Cond { .. }) => return self.cond_begin(conn, id, until),
                    Some(Obj::Barrier { .. }) => return self.barrier_begin(id, until),
                    Some(Obj::Event(_)) | Some(Obj::Queue { .. }) => {}
                    Some(_) => {
                        return Began::Now(not_kind(
                            id,
                            "a condition, an event, a barrier or a queue",
                        ))
                    }
                    None => return Began::Now(no_object(id)),
                }
                let step = move |o: &mut Objects| match o.obj(id) {
                    Some(Obj::Event(b)) => b.then_some(Resp::Bool(true)),
                    Some(Obj::Queue {
                        unfinished: Some(u),
                        ..
                    }) => (*u == 0).then_some(Resp::Bool(true)),
                    Some(Obj::Queue { .. }) => Some(not_kind(id, "a joinable queue")),
                    _ => Some(no_object(id)),
                };
                return Began::Wait(Blocked::new(id, until, step, |_, _| {
                    Some(Resp::Bool(false))
                }));
            }
            SyncReq::Notify(id, n) => match self.obj(id) {
                Some(Obj::Cond {
                    lock,
                    waiters,
                    notified,
                }) => {
                    if !lock.is_some_and(|(c, _)| c == conn) {
                        return Began::Now(refused(
                            "notify on a condition whose lock this thread does not hold",
                        ));
                    }
                    for _ in 0..n {
                        match waiters.pop_front() {
                            Some(t) => notified.push(t),
                            None => break,
                        }
                    }
                    changed = Some(id);
                    Resp::Unit
                }
                Some(_) => not_kind(id, "a condition"),
                None => no_object(id),
            },
            SyncReq::Set(id) | SyncReq::Clear(id) => {
                let on = matches!(req, SyncReq::Set(_));
                match self.obj(id) {
                    Some(Obj::Event(b)) => {
                        *b = on;
                        if on {
                            changed = Some(id);
                        }
                        Resp::Unit
                    }
                    // a barrier's abort (set: broken until a reset) or reset (clear): the
                    // current waiters' generation ends broken either way
                    Some(Obj::Barrier {
                        broken,
                        waiting,
                        outcome,
                        ..
                    }) => {
                        outcome.extend(waiting.drain(..).map(|t| (t, None)));
                        *broken = on;
                        changed = Some(id);
                        Resp::Unit
                    }
                    Some(_) => not_kind(id, "an event or a barrier"),
                    None => no_object(id),
                }
            }
            SyncReq::BarrierState(id) => match self.obj(id) {
                Some(Obj::Barrier {
                    parties,
                    waiting,
                    broken,
                    ..
                }) => Resp::Barrier(*parties, waiting.len() as u64, *broken),
                Some(_) => not_kind(id, "a barrier"),
                None => no_object(id),
            },
            SyncReq::Put(id, item, w) => {
                let mut item = Some(item);
                let step = move |o: &mut Objects| match o.obj(id) {
                    Some(Obj::Queue {
                        items,
                        max,
                        unfinished,
                    }) => max.is_none_or(|m| items.len() < m).then(|| {
                        items.extend(item.take());
                        if let Some(u) = unfinished {
                            *u += 1;
                        }
                        Resp::Bool(true)
                    }),
                    Some(_) => Some(not_kind(id, "a queue")),
                    None => Some(no_object(id)),
                };
                return Began::Wait(Blocked::new(id, deadline(w), step, |_, _| {
                    Some(Resp::Bool(false))
                }));
            }
            SyncReq::Get(id, w) => {
                let step = move |o: &mut Objects| match o.obj(id) {
                    Some(Obj::Queue { items, .. }) => items.pop_front().map(|x| Resp::Opt(Some(x))),
                    Some(_) => Some(not_kind(id, "a queue")),
                    None => Some(no_object(id)),
                };
                return Began::Wait(Blocked::new(id, deadline(w), step, |_, _| {
                    Some(Resp::Opt(None))
                }));
            }
            SyncReq::Len(id) => match self.obj(id) {
                Some(Obj::Queue { items, .. }) => Resp::Count(items.len() as u64),
                Some(_) => not_kind(id, "a queue"),
                None => no_object(id),
            },
            SyncReq::TaskDone(id) => match self.obj(id) {
                Some(Obj::Queue {
                    unfinished: Some(u),
                    ..
                }) => {
                    if *u == 0 {
                        refused("task_done() called more times than items were put")
                    } else {
                        *u -= 1;
                        changed = Some(id);
                        Resp::Unit
                    }
                }
                Some(_) => not_kind(id, "a joinable queue"),
                None => no_object(id),
            },
        };
        if let Some(id) = changed {
            self.wake(id);
        }
        Began::Now(resp)
    }
}

mod waits;

#[cfg(test)]
mod tests;
