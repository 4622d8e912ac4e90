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
    fn wake(&self, id: u64) {
        if let Some(e) = self.objs.get(&id) {
            e.cv.notify_all();
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

    /// The one wait loop of every blocking request: runs `step` (with the mutex held)
    /// first and after every wake-up of object `id`'s condition variable until it gives
    /// the answer; when the deadline passes or the client is gone first, `on_stop`
    /// gives it (it may still find the request done: it runs with the mutex held).
    fn wait_until<'a>(
        &'a self,
        mut g: Guard<'a>,
        id: u64,
        until: Option<Instant>,
        peer: &mut dyn Peer,
        mut step: impl FnMut(&mut Objects) -> Option<Resp>,
        on_stop: impl FnOnce(&mut Objects, Stop) -> Resp,
    ) -> (Guard<'a>, Resp) {
        let mut beat = Instant::now();
        loop {
            if let Some(r) = step(&mut g) {
                return (g, r);
            }
            let Some(cv) = g.objs.get(&id).map(|e| e.cv.clone()) else {
                return (g, no_object(id));
            };
            let now = Instant::now();
            let slice = match until {
                Some(d) if d <= now => {
                    let r = on_stop(&mut g, Stop::TimedOut);
                    return (g, r);
                }
                Some(d) => (d - now).min(SLICE),
                None => SLICE,
            };
            let (g2, _) = cv.wait_timeout(g, slice).unwrap_or_else(|e| e.into_inner());
            drop(g2);
            let mut ok = peer.alive();
            if ok && beat.elapsed() >= HEARTBEAT {
                ok = peer.heartbeat();
                beat = Instant::now();
            }
            g = self.lock();
            if !ok {
                let r = on_stop(&mut g, Stop::Gone);
                return (g, r);
            }
        }
    }

    /// Releases what connection `conn` holds (it ended): only in the objects on its
    /// list, waking only their waiters.
    pub(super) fn disconnect(&self, conn: u64) {
        let mut g = self.lock();
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

    /// Frees object `id` (its last reference went); a thread still blocked on it gets
    /// a refusal.
    pub(super) fn remove(&self, id: u64) {
        let mut g = self.lock();
        if let Some(e) = g.objs.remove(&id) {
            e.cv.notify_all();
        }
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
    }

    /// Serves one request of connection `conn`.
    pub(super) fn apply(&self, conn: u64, req: SyncReq, peer: &mut dyn Peer) -> Resp {
        let mut g = self.lock();
        // the object this request changed: its waiters are woken
        let mut changed = None;
        let resp = match req {
            SyncReq::New(kind, name, n, _holder) => {
                if let Some(n) = &name {
                    if let Some(&id) = g.names.get(&(kind, n.clone())) {
                        return Resp::Id(id);
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
                        return refused("a barrier needs at least one party")
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
                g.next += 1;
                let id = g.next;
                g.objs.insert(
                    id,
                    Entry {
                        obj,
                        cv: Arc::default(),
                    },
                );
                if let Some(n) = name {
                    g.names.insert((kind, n), id);
                }
                Resp::Id(id)
            }
            SyncReq::Acquire(id, w) => {
                let (g2, r) = self.wait_until(
                    g,
                    id,
                    deadline(w),
                    peer,
                    |o| o.try_acquire(conn, id),
                    |_, _| Resp::Bool(false),
                );
                g = g2;
                r
            }
            SyncReq::Release(id) => {
                changed = Some(id);
                let Objects { objs, held, .. } = &mut *g;
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
            SyncReq::IsSet(id) => match g.obj(id) {
                Some(Obj::Lock(h)) => Resp::Bool(h.is_some()),
                Some(Obj::RLock(h)) | Some(Obj::Cond { lock: h, .. }) => Resp::Bool(h.is_some()),
                Some(Obj::Event(b)) => Resp::Bool(*b),
                Some(_) => not_kind(id, "a lock or an event"),
                None => no_object(id),
            },
            SyncReq::Value(id) => match g.obj(id) {
                Some(Obj::Sem { value, .. }) => Resp::Count(*value),
                Some(_) => not_kind(id, "a semaphore"),
                None => no_object(id),
            },
            SyncReq::Wait(id, w) => {
                let until = deadline(w);
                match g.obj(id) {
                    Some(Obj::Cond { .. }) => return self.cond_wait(g, conn, id, until, peer),
                    Some(Obj::Barrier { .. }) => return self.barrier_wait(g, id, until, peer),
                    Some(Obj::Event(_)) | Some(Obj::Queue { .. }) => {}
                    Some(_) => return not_kind(id, "a condition, an event, a barrier or a queue"),
                    None => return no_object(id),
                }
                let step = |o: &mut Objects| match o.obj(id) {
                    Some(Obj::Event(b)) => b.then_some(Resp::Bool(true)),
                    Some(Obj::Queue {
                        unfinished: Some(u),
                        ..
                    }) => (*u == 0).then_some(Resp::Bool(true)),
                    Some(Obj::Queue { .. }) => Some(not_kind(id, "a joinable queue")),
                    _ => Some(no_object(id)),
                };
                let (g2, r) = self.wait_until(g, id, until, peer, step, |_, _| Resp::Bool(false));
                g = g2;
                r
            }
            SyncReq::Notify(id, n) => match g.obj(id) {
                Some(Obj::Cond {
                    lock,
                    waiters,
                    notified,
                }) => {
                    if !lock.is_some_and(|(c, _)| c == conn) {
                        return refused(
                            "notify on a condition whose lock this thread does not hold",
                        );
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
                match g.obj(id) {
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
            SyncReq::BarrierState(id) => match g.obj(id) {
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
                let step = |o: &mut Objects| match o.obj(id) {
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
                let (g2, r) =
                    self.wait_until(g, id, deadline(w), peer, step, |_, _| Resp::Bool(false));
                g = g2;
                changed = Some(id);
                r
            }
            SyncReq::Get(id, w) => {
                let step = |o: &mut Objects| match o.obj(id) {
                    Some(Obj::Queue { items, .. }) => items.pop_front().map(|x| Resp::Opt(Some(x))),
                    Some(_) => Some(not_kind(id, "a queue")),
                    None => Some(no_object(id)),
                };
                let (g2, r) =
                    self.wait_until(g, id, deadline(w), peer, step, |_, _| Resp::Opt(None));
                g = g2;
                changed = Some(id);
                r
            }
            SyncReq::Len(id) => match g.obj(id) {
                Some(Obj::Queue { items, .. }) => Resp::Count(items.len() as u64),
                Some(_) => not_kind(id, "a queue"),
                None => no_object(id),
            },
            SyncReq::TaskDone(id) => match g.obj(id) {
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
            g.wake(id);
        }
        resp
    }
}

mod waits;

#[cfg(test)]
mod tests;
