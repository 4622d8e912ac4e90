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
            SyncReq::Set(id) => match g.obj(id) {
                Some(Obj::Event(b)) => {
                    *b = true;
                    changed = Some(id);
                    Resp::Unit
                }
                Some(Obj::Barrier {
                    broken,
                    waiting,
                    outcome,
                    ..
                }) => {
                    *broken = true;
                    outcome.extend(waiting.drain(..).map(|t| (t, None)));
                    changed = Some(id);
                    Resp::Unit
                }
                Some(_) => not_kind(id, "an event or a barrier"),
                None => no_object(id),
            },
            SyncReq::Clear(id) => match g.obj(id) {
                Some(Obj::Event(b)) => {
                    *b = false;
                    Resp::Unit
                }
                Some(Obj::Barrier {
                    waiting,
                    broken,
                    outcome,
                    ..
                }) => {
                    // the current waiters' generation ends broken
                    outcome.extend(waiting.drain(..).map(|t| (t, None)));
                    *broken = false;
                    changed = Some(id);
                    Resp::Unit
                }
                Some(_) => not_kind(id, "an event or a barrier"),
                None => no_object(id),
            },
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

    /// A condition's `wait`: releases the lock (whatever its count), waits for a
    /// `notify` or the deadline, then takes the lock back with its count (without a
    /// deadline, as Python's). `Bool(false)` on a timeout. A waiter whose client left
    /// after it was notified passes the notification on to the next waiter, so a
    /// dead waiter never swallows a `notify` meant for a live one.
    fn cond_wait<'a>(
        &'a self,
        mut g: Guard<'a>,
        conn: u64,
        id: u64,
        until: Option<Instant>,
        peer: &mut dyn Peer,
    ) -> Resp {
        let ticket = g.ticket();
        let saved = match g.obj(id) {
            Some(Obj::Cond { lock, waiters, .. }) => match *lock {
                Some((c, n)) if c == conn => {
                    *lock = None;
                    waiters.push_back(ticket);
                    n
                }
                _ => return refused("wait on a condition whose lock this thread does not hold"),
            },
            _ => return no_object(id),
        };
        g.unhold(conn, id);
        g.wake(id);
        let seen = |o: &mut Objects| match o.obj(id) {
            Some(Obj::Cond { notified, .. }) => {
                let i = notified.iter().position(|t| *t == ticket)?;
                notified.swap_remove(i);
                Some(Resp::Bool(true))
            }
            _ => Some(no_object(id)),
        };
        let (g2, r) = self.wait_until(g, id, until, peer, seen, |o, stop| {
            let Some(Obj::Cond {
                waiters, notified, ..
            }) = o.obj(id)
            else {
                return no_object(id);
            };
            waiters.retain(|t| *t != ticket);
            // a notify may have come in the meantime
            if let Some(i) = notified.iter().position(|t| *t == ticket) {
                notified.swap_remove(i);
                if stop == Stop::TimedOut {
                    return Resp::Bool(true);
                }
                // gone: the notification goes to the next waiter
                if let Some(next) = waiters.pop_front() {
                    notified.push(next);
                }
                o.wake(id);
            }
            match stop {
                // timed out: the lock is taken back below
                Stop::TimedOut => Resp::Bool(false),
                Stop::Gone => Resp::Pending, // (never answered)
            }
        });
        g = g2;
        let notified = match r {
            Resp::Bool(b) => b,
            Resp::Pending => return Resp::Bool(false),
            r => return r,
        };
        // take the lock back
        let take = |o: &mut Objects| {
            match o.obj(id) {
                Some(Obj::Cond { lock, .. }) if lock.is_none() => *lock = Some((conn, saved)),
                Some(Obj::Cond { .. }) => return None,
                _ => return Some(no_object(id)),
            }
            o.hold(conn, id);
            Some(Resp::Bool(notified))
        };
        self.wait_until(g, id, None, peer, take, |_, _| Resp::Bool(false))
            .1
    }

    /// A barrier's `wait`: `Count(arrival index)`, or `Broken` when the barrier is or
    /// gets broken (a timeout or a waiter gone breaks it, as Python's).
    fn barrier_wait<'a>(
        &'a self,
        mut g: Guard<'a>,
        id: u64,
        until: Option<Instant>,
        peer: &mut dyn Peer,
    ) -> Resp {
        let ticket = g.ticket();
        match g.obj(id) {
            Some(Obj::Barrier {
                parties,
                waiting,
                broken,
                outcome,
            }) => {
                if *broken {
                    return Resp::Broken;
                }
                waiting.push(ticket);
                if waiting.len() as u64 == *parties {
                    let index = waiting.len() as u64 - 1;
                    outcome.extend(
                        waiting
                            .drain(..)
                            .enumerate()
                            .filter(|(_, t)| *t != ticket)
                            .map(|(i, t)| (t, Some(i as u64))),
                    );
                    g.wake(id);
                    return Resp::Count(index);
                }
            }
            _ => return no_object(id),
        }
        let ended = move |o: &mut Objects| match o.obj(id) {
            Some(Obj::Barrier { outcome, .. }) => outcome.remove(&ticket).map(|r| match r {
                Some(i) => Resp::Count(i),
                None => Resp::Broken,
            }),
            _ => Some(no_object(id)),
        };
        let (_g, r) = self.wait_until(g, id, until, peer, ended, |o, _| {
            if let Some(r) = ended(o) {
                return r; // it ended just as the wait did
            }
            if let Some(Obj::Barrier {
                waiting,
                broken,
                outcome,
                ..
            }) = o.obj(id)
            {
                waiting.retain(|t| *t != ticket);
                *broken = true;
                outcome.extend(waiting.drain(..).map(|t| (t, None)));
            }
            o.wake(id);
            Resp::Broken
        });
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A client that stays (or, with `gone`, has left).
    struct Fake {
        gone: bool,
    }
    impl Peer for Fake {
        fn alive(&mut self) -> bool {
            !self.gone
        }
        fn heartbeat(&mut self) -> bool {
            !self.gone
        }
    }
    /// A client that stays, made fresh for each call.
    fn here() -> Fake {
        Fake { gone: false }
    }

    fn new(o: &SyncObjects, kind: SyncKind, n: u64) -> u64 {
        match o.apply(0, SyncReq::New(kind, None, n, 0), &mut here()) {
            Resp::Id(id) => id,
            r => panic!("{r:?}"),
        }
    }

    fn try_acquire(o: &SyncObjects, conn: u64, id: u64) -> bool {
        matches!(
            o.apply(conn, SyncReq::Acquire(id, Some(0)), &mut here()),
            Resp::Bool(true)
        )
    }

    #[test]
    fn a_closed_connection_releases_what_it_holds_and_nothing_else() {
        let o = SyncObjects::default();
        let (l, r, c) = (
            new(&o, SyncKind::Lock, 0),
            new(&o, SyncKind::RLock, 0),
            new(&o, SyncKind::Condition, 0),
        );
        assert!(try_acquire(&o, 1, l));
        assert!(try_acquire(&o, 1, r));
        assert!(try_acquire(&o, 1, r));
        assert!(try_acquire(&o, 1, c));
        assert!(!try_acquire(&o, 2, l) && !try_acquire(&o, 2, r) && !try_acquire(&o, 2, c));
        o.disconnect(3); // someone else: nothing changes
        assert!(!try_acquire(&o, 2, l) && !try_acquire(&o, 2, r) && !try_acquire(&o, 2, c));
        o.disconnect(1);
        assert!(try_acquire(&o, 2, l) && try_acquire(&o, 2, r) && try_acquire(&o, 2, c));
    }

    #[test]
    fn semaphore_units_are_given_back_once() {
        let o = SyncObjects::default();
        let s = new(&o, SyncKind::Semaphore, 2);
        let value = |o: &SyncObjects| match o.apply(0, SyncReq::Value(s), &mut here()) {
            Resp::Count(n) => n,
            r => panic!("{r:?}"),
        };
        assert!(try_acquire(&o, 1, s) && try_acquire(&o, 1, s));
        assert!(!try_acquire(&o, 2, s));
        // connection 2 releases one of connection 1's units (a signal)
        assert!(matches!(
            o.apply(2, SyncReq::Release(s), &mut here()),
            Resp::Unit
        ));
        assert_eq!(value(&o), 1);
        o.disconnect(1); // one unit still held by 1 comes back, not two
        assert_eq!(value(&o), 2);
        let b = new(&o, SyncKind::BoundedSemaphore, 1);
        assert!(matches!(
            o.apply(1, SyncReq::Release(b), &mut here()),
            Resp::Refused(_)
        ));
    }

    #[test]
    fn a_waiter_whose_client_left_stops_waiting_and_breaks_a_barrier() {
        let o = SyncObjects::default();
        let l = new(&o, SyncKind::Lock, 0);
        assert!(try_acquire(&o, 1, l));
        let t = Instant::now();
        let r = o.apply(2, SyncReq::Acquire(l, None), &mut Fake { gone: true });
        assert!(matches!(r, Resp::Bool(false)));
        assert!(t.elapsed() < Duration::from_secs(2));
        let b = new(&o, SyncKind::Barrier, 2);
        let r = o.apply(2, SyncReq::Wait(b, None), &mut Fake { gone: true });
        assert!(matches!(r, Resp::Broken));
        assert!(matches!(
            o.apply(3, SyncReq::Wait(b, Some(0)), &mut here()),
            Resp::Broken
        ));
        o.apply(3, SyncReq::Clear(b), &mut here());
        assert!(matches!(
            o.apply(3, SyncReq::BarrierState(b), &mut here()),
            Resp::Barrier(2, 0, false)
        ));
    }

    #[test]
    fn a_reset_breaks_the_current_waiters_only() {
        let o = Arc::new(SyncObjects::default());
        let b = new(&o, SyncKind::Barrier, 2);
        let o2 = o.clone();
        let waiter = std::thread::spawn(move || {
            o2.apply(1, SyncReq::Wait(b, Some(20_000_000)), &mut here())
        });
        let t = Instant::now();
        while !matches!(
            o.apply(0, SyncReq::BarrierState(b), &mut here()),
            Resp::Barrier(_, 1, _)
        ) {
            assert!(t.elapsed() < Duration::from_secs(20));
            std::thread::sleep(Duration::from_millis(2));
        }
        o.apply(0, SyncReq::Clear(b), &mut here());
        assert!(matches!(waiter.join().unwrap(), Resp::Broken));
        // usable again: two waiters pass
        let o2 = o.clone();
        let w = std::thread::spawn(move || o2.apply(1, SyncReq::Wait(b, None), &mut here()));
        let mine = o.apply(2, SyncReq::Wait(b, Some(20_000_000)), &mut here());
        let theirs = w.join().unwrap();
        let mut idx = [&mine, &theirs].map(|r| match r {
            Resp::Count(i) => *i,
            r => panic!("{r:?}"),
        });
        idx.sort();
        assert_eq!(idx, [0, 1]);
    }

    /// A client whose departure the test decides.
    struct Leaves(Arc<std::sync::atomic::AtomicBool>);
    impl Peer for Leaves {
        fn alive(&mut self) -> bool {
            !self.0.load(std::sync::atomic::Ordering::SeqCst)
        }
        fn heartbeat(&mut self) -> bool {
            self.alive()
        }
    }

    fn waiting(o: &SyncObjects, id: u64) -> usize {
        match o.lock().obj(id) {
            Some(Obj::Cond { waiters, .. }) => waiters.len(),
            _ => panic!("not a condition"),
        }
    }

    #[test]
    fn a_notify_taken_by_a_waiter_that_left_goes_to_the_next_one() {
        let o = Arc::new(SyncObjects::default());
        let c = new(&o, SyncKind::Condition, 0);
        let gone = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let wait_in = |conn: u64, peer: Box<dyn Peer + Send>, w: Wait| {
            let o = o.clone();
            std::thread::spawn(move || {
                let mut peer = peer;
                assert!(try_acquire(&o, conn, c));
                o.apply(conn, SyncReq::Wait(c, w), &mut *peer)
            })
        };
        // the oldest waiter's client is about to leave; the second stays
        let first = wait_in(1, Box::new(Leaves(gone.clone())), None);
        let t = Instant::now();
        while waiting(&o, c) < 1 {
            assert!(t.elapsed() < Duration::from_secs(20));
            std::thread::sleep(Duration::from_millis(2));
        }
        let second = wait_in(2, Box::new(here()), Some(20_000_000));
        while waiting(&o, c) < 2 {
            assert!(t.elapsed() < Duration::from_secs(20));
            std::thread::sleep(Duration::from_millis(2));
        }
        gone.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(try_acquire(&o, 3, c));
        assert!(matches!(
            o.apply(3, SyncReq::Notify(c, 1), &mut here()),
            Resp::Unit
        ));
        assert!(matches!(
            o.apply(3, SyncReq::Release(c), &mut here()),
            Resp::Unit
        ));
        assert!(matches!(first.join().unwrap(), Resp::Bool(false)));
        assert!(
            matches!(second.join().unwrap(), Resp::Bool(true)),
            "the live waiter got the notification"
        );
        assert!(t.elapsed() < Duration::from_secs(15));
    }

    #[test]
    fn a_condition_wait_that_times_out_holds_the_lock_again() {
        let o = SyncObjects::default();
        let c = new(&o, SyncKind::Condition, 0);
        assert!(try_acquire(&o, 1, c));
        assert!(matches!(
            o.apply(1, SyncReq::Wait(c, Some(10_000)), &mut here()),
            Resp::Bool(false)
        ));
        assert!(!try_acquire(&o, 2, c), "held by 1 again");
        assert!(matches!(
            o.apply(1, SyncReq::Notify(c, 1), &mut here()),
            Resp::Unit
        ));
    }

    #[test]
    fn a_deadline_too_far_to_represent_waits_forever_without_overflow() {
        let o = SyncObjects::default();
        let e = new(&o, SyncKind::Event, 0);
        o.apply(0, SyncReq::Set(e), &mut here());
        assert!(matches!(
            o.apply(0, SyncReq::Wait(e, Some(u64::MAX)), &mut here()),
            Resp::Bool(true)
        ));
    }
}
