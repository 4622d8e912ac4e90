//! The line of a process's `call_async` futures for one group of pipe actors.
//!
//! A call holds a lane from its request until its reply, so at most `lanes` calls of
//! a group run at once. The futures of one process beyond that wait in a first-come
//! first-served line: each finished call hands its place to the next future in line
//! (one wake-up), instead of every waiting future being woken by every lane's release
//! (ten thousand futures waiting would be a hundred million wake-ups).

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};

/// This process's line of `call_async` futures for one group (shared by the clones of
/// an `ActorRef`; a reference received from another process starts its own line).
#[derive(Clone, Default)]
pub(crate) struct CallGate(Arc<Mutex<GateState>>);

#[derive(Default)]
struct GateState {
    /// Futures through the gate (holding, or about to hold, a lane).
    inside: usize,
    line: VecDeque<Arc<Ticket>>,
}

/// A future's place in line.
struct Ticket {
    /// Set when a leaving future gave its place to this one.
    admitted: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl CallGate {
    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for a place inside (at most `room` futures are).
    pub(super) async fn enter(&self, room: usize) -> Pass<'_> {
        let mut waiting = Waiting {
            gate: self,
            ticket: None,
        };
        poll_fn(|cx| {
            let Some(t) = &waiting.ticket else {
                let mut g = self.lock();
                if g.inside < room.max(1) && g.line.is_empty() {
                    g.inside += 1;
                    return Poll::Ready(());
                }
                let t = Arc::new(Ticket {
                    admitted: AtomicBool::new(false),
                    waker: Mutex::new(Some(cx.waker().clone())),
                });
                g.line.push_back(t.clone());
                waiting.ticket = Some(t);
                return Poll::Pending;
            };
            if t.admitted.load(Ordering::Acquire) {
                waiting.ticket = None; // the place is ours now: the pass gives it back
                return Poll::Ready(());
            }
            *t.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
            // (admitted meanwhile: its waker may have been the old one)
            if t.admitted.load(Ordering::Acquire) {
                waiting.ticket = None;
                return Poll::Ready(());
            }
            Poll::Pending
        })
        .await;
        Pass(self)
    }

    /// A place inside is given up: to the first in line, else it is free.
    fn leave(&self) {
        let mut g = self.lock();
        match g.line.pop_front() {
            Some(next) => {
                // (under the lock: a ticket out of the line is always admitted, which is
                // what a dropped waiter checks)
                next.admitted.store(true, Ordering::Release);
                drop(g);
                let w = next.waker.lock().unwrap_or_else(|e| e.into_inner()).take();
                if let Some(w) = w {
                    w.wake();
                }
            }
            None => g.inside -= 1,
        }
    }
}

/// A future in line: dropped before it got in, it leaves the line (or, admitted but not
/// yet polled, hands its place on).
struct Waiting<'a> {
    gate: &'a CallGate,
    ticket: Option<Arc<Ticket>>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let Some(t) = self.ticket.take() else {
            return;
        };
        let mut g = self.gate.lock();
        if let Some(i) = g.line.iter().position(|x| Arc::ptr_eq(x, &t)) {
            g.line.remove(i);
            return;
        }
        drop(g);
        if t.admitted.load(Ordering::Acquire) {
            self.gate.leave();
        }
    }
}

/// A place inside the gate, given back on drop.
pub(super) struct Pass<'a>(&'a CallGate);

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        self.0.leave();
    }
}
