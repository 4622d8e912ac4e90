//! The waits that take more than one step: a condition's (release, wait for a notify,
//! take the lock back) and a barrier's (arrive, wait for the generation to end).

use super::super::{refused, Resp};
use super::{no_object, Guard, Obj, Objects, Peer, Stop, SyncObjects};
use std::time::Instant;

impl SyncObjects {
    /// A condition's `wait`: releases the lock (whatever its count), waits for a
    /// `notify` or the deadline, then takes the lock back with its count (without a
    /// deadline, as Python's). `Bool(false)` on a timeout. A waiter whose client left
    /// after it was notified passes the notification on to the next waiter, so a
    /// dead waiter never swallows a `notify` meant for a live one.
    pub(super) fn cond_wait<'a>(
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
    pub(super) fn barrier_wait<'a>(
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
