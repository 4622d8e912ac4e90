//! The waits that take more than one step: a condition's (release, wait for a notify,
//! take the lock back) and a barrier's (arrive, wait for the generation to end).

use super::super::{refused, Resp};
use super::{no_object, Began, Blocked, Obj, Objects, Stop};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// A condition waiter's phases.
const WAITING: u8 = 0;
const RETAKE: u8 = 1;
const RETAKE_NOTIFIED: u8 = 2;

impl Objects {
    /// A condition's `wait`: releases the lock (whatever its count), waits for a
    /// `notify` or the deadline, then takes the lock back with its count (without a
    /// deadline, as Python's). `Bool(false)` on a timeout. A waiter whose client left
    /// after it was notified passes the notification on to the next waiter, so a
    /// dead waiter never swallows a `notify` meant for a live one.
    pub(super) fn cond_begin(&mut self, conn: u64, id: u64, until: Option<Instant>) -> Began {
        let ticket = self.ticket();
        let saved = match self.obj(id) {
            Some(Obj::Cond { lock, waiters, .. }) => match *lock {
                Some((c, n)) if c == conn => {
                    *lock = None;
                    waiters.push_back(ticket);
                    n
                }
                _ => {
                    return Began::Now(refused(
                        "wait on a condition whose lock this thread does not hold",
                    ))
                }
            },
            _ => return Began::Now(no_object(id)),
        };
        self.unhold(conn, id);
        self.wake(id);
        let phase = Arc::new(AtomicU8::new(WAITING));
        let p2 = phase.clone();
        let step = move |o: &mut Objects| {
            if phase.load(Ordering::Relaxed) == WAITING {
                match o.obj(id) {
                    Some(Obj::Cond { notified, .. }) => {
                        let i = notified.iter().position(|t| *t == ticket)?;
                        notified.swap_remove(i);
                        phase.store(RETAKE_NOTIFIED, Ordering::Relaxed);
                    }
                    _ => return Some(no_object(id)),
                }
            }
            // take the lock back
            match o.obj(id) {
                Some(Obj::Cond { lock, .. }) if lock.is_none() => *lock = Some((conn, saved)),
                Some(Obj::Cond { .. }) => return None,
                _ => return Some(no_object(id)),
            }
            o.hold(conn, id);
            Some(Resp::Bool(phase.load(Ordering::Relaxed) == RETAKE_NOTIFIED))
        };
        let on_stop = move |o: &mut Objects, stop: Stop| {
            if p2.load(Ordering::Relaxed) != WAITING {
                // (taking the lock back has no deadline: only a client gone stops it)
                return (stop == Stop::Gone).then_some(Resp::Bool(false));
            }
            let Some(Obj::Cond {
                waiters, notified, ..
            }) = o.obj(id)
            else {
                return Some(no_object(id));
            };
            waiters.retain(|t| *t != ticket);
            // a notify may have come in the meantime
            let mut was_notified = false;
            if let Some(i) = notified.iter().position(|t| *t == ticket) {
                notified.swap_remove(i);
                was_notified = true;
                if stop == Stop::Gone {
                    // gone: the notification goes to the next waiter
                    if let Some(next) = waiters.pop_front() {
                        notified.push(next);
                    }
                    o.wake(id);
                }
            }
            match stop {
                // timed out: the lock is taken back (the wait goes on without a deadline)
                Stop::TimedOut => {
                    let p = if was_notified {
                        RETAKE_NOTIFIED
                    } else {
                        RETAKE
                    };
                    p2.store(p, Ordering::Relaxed);
                    None
                }
                Stop::Gone => Some(Resp::Bool(false)), // (never answered)
            }
        };
        Began::Wait(Blocked::new(id, until, step, on_stop))
    }

    /// A barrier's `wait`: `Count(arrival index)`, or `Broken` when the barrier is or
    /// gets broken (a timeout or a waiter gone breaks it, as Python's).
    pub(super) fn barrier_begin(&mut self, id: u64, until: Option<Instant>) -> Began {
        let ticket = self.ticket();
        match self.obj(id) {
            Some(Obj::Barrier {
                parties,
                waiting,
                broken,
                outcome,
            }) => {
                if *broken {
                    return Began::Now(Resp::Broken);
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
                    self.wake(id);
                    return Began::Now(Resp::Count(index));
                }
            }
            _ => return Began::Now(no_object(id)),
        }
        let ended = move |o: &mut Objects| match o.obj(id) {
            Some(Obj::Barrier { outcome, .. }) => outcome.remove(&ticket).map(|r| match r {
                Some(i) => Resp::Count(i),
                None => Resp::Broken,
            }),
            _ => Some(no_object(id)),
        };
        let on_stop = move |o: &mut Objects, _: Stop| {
            if let Some(r) = ended(o) {
                return Some(r); // it ended just as the wait did
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
            Some(Resp::Broken)
        };
        Began::Wait(Blocked::new(id, until, ended, on_stop))
    }
}
