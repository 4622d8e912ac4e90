//! The *reader role* of a pool's result ring: who pops from it, the result thread or a
//! caller waiting in `AsyncResult::get` (see [`direct`](super::direct) for the protocol).
//! Kept apart from `direct` so that `inner` (which holds a [`Role`]) and `direct`
//! (which reads through `inner`) do not use each other.

use super::state::Finished;
use super::wire::ResultMsg;
use crate::queue::Queue;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The longest a direct reader waits on the ring before it looks at its own channel.
pub(super) const SLICE: Duration = Duration::from_millis(5);
/// The longest the result thread leaves the role free without looking at it (a safety
/// net: every change that gives it work wakes it at once).
pub(super) const IDLE_CHECK: Duration = Duration::from_millis(5);
/// The longest a caller waiting for the result thread to give up the role waits before
/// it looks at its own channel again.
const ASK_SLICE: Duration = Duration::from_millis(1);
/// The longest a `Yield` waits for the ring's writer lock (held by a worker's put for
/// microseconds; a dead worker's is recovered).
pub(super) const PUT_LIMIT: Duration = Duration::from_millis(10);

/// Who pops from the result ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reader {
    Nobody,
    Collector,
    Caller,
}

/// What a direct reader gives the result thread.
pub(super) enum Handoff {
    /// A message from the ring that is not the reader's result, in ring order.
    Msg(ResultMsg),
    /// An undecodable result was on the ring.
    Garbage(String),
    /// Sinks to run on the result thread (they may run callbacks).
    Sinks(Finished),
    /// Look at the role: the ring may have something nobody reads.
    Resume,
}

struct RoleState {
    reader: Reader,
    /// Callers waiting for the result thread to give up the role.
    asking: usize,
    /// A `Yield` asking for the role is on the ring, not yet read by the result thread.
    yield_sent: bool,
}

/// The reader role over the pool's result ring.
pub(super) struct Role {
    st: Mutex<RoleState>,
    cv: Condvar,
    /// The result thread does not hold the role and waits on the handoff channel: whoever
    /// gives the ring something nobody reads wakes it.
    idle: AtomicBool,
    handoff: crossbeam_channel::Sender<Handoff>,
}

impl Role {
    pub(super) fn new(handoff: crossbeam_channel::Sender<Handoff>) -> Role {
        Role {
            st: Mutex::new(RoleState {
                reader: Reader::Nobody,
                asking: 0,
                yield_sent: false,
            }),
            cv: Condvar::new(),
            idle: AtomicBool::new(false),
            handoff,
        }
    }

    fn lock(&self) -> MutexGuard<'_, RoleState> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Gives the result thread something to do (it runs it in order with the rest).
    pub(super) fn hand_off(&self, h: Handoff) {
        let _ = self.handoff.send(h);
    }

    /// The result thread takes the role if nobody holds it or asks for it and there is
    /// something to read (a chunk pending, a message on the ring); otherwise it is idle
    /// (and must be woken for work) until it looks again.
    pub(super) fn collector_takes(&self, has_work: impl FnOnce() -> bool) -> bool {
        // (idle first, then the look: a change made after the look sees it idle)
        self.idle.store(true, Ordering::SeqCst);
        if !has_work() {
            return false;
        }
        let mut s = self.lock();
        // (a caller it gave the role to has not taken it yet: not taken back)
        if s.reader == Reader::Nobody && s.asking == 0 {
            s.reader = Reader::Collector;
            self.idle.store(false, Ordering::SeqCst);
            true
        } else {
            false
        }
    }

    /// The result thread read a `Yield`: it gives the role up if a caller asks for it.
    pub(super) fn collector_yields(&self) -> bool {
        let mut s = self.lock();
        s.yield_sent = false;
        if s.asking == 0 || s.reader != Reader::Collector {
            return false;
        }
        s.reader = Reader::Nobody;
        self.idle.store(true, Ordering::SeqCst);
        self.cv.notify_all();
        true
    }

    /// Wakes the result thread if it is idle and nobody reads the ring (after a
    /// submission or an exit notice that something will come on it).
    pub(super) fn wake_collector(&self) {
        if self.idle.load(Ordering::SeqCst) && self.lock().reader == Reader::Nobody {
            self.hand_off(Handoff::Resume);
        }
    }

    /// A caller about to wait for its result takes the role, asking the result thread
    /// for it if needed; `false` when it cannot (another caller reads, the deadline
    /// passed, or `arrived()` says its result came meanwhile).
    pub(super) fn caller_takes(
        &self,
        results: &Queue<ResultMsg>,
        arrived: &dyn Fn() -> bool,
        deadline: Option<Instant>,
    ) -> bool {
        let mut s = self.lock();
        loop {
            match s.reader {
                Reader::Nobody => {
                    s.reader = Reader::Caller;
                    return true;
                }
                Reader::Caller => return false,
                Reader::Collector => {}
            }
            if arrived() {
                return false;
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| d <= now) {
                return false;
            }
            if !s.yield_sent {
                // (the ring is unbounded: this waits only for a worker's put to end)
                if results.put_timeout(ResultMsg::Yield, PUT_LIMIT).is_err() {
                    return false;
                }
                s.yield_sent = true;
            }
            let limit = deadline.map_or(ASK_SLICE, |d| (d - now).min(ASK_SLICE));
            s.asking += 1;
            s = self
                .cv
                .wait_timeout(s, limit)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            s.asking -= 1;
        }
    }

    /// A caller that took the role only if it was free (never asking for it).
    pub(super) fn caller_takes_free(&self) -> bool {
        let mut s = self.lock();
        if s.reader == Reader::Nobody {
            s.reader = Reader::Caller;
            true
        } else {
            false
        }
    }

    /// A caller gives the role back; the result thread takes over at once if there is
    /// anything to read.
    pub(super) fn caller_gives_back(&self, has_work: impl FnOnce() -> bool) {
        {
            let mut s = self.lock();
            s.reader = Reader::Nobody;
        }
        // (after the role is free: a submitter or exit notice that saw it held has made
        // its change visible by now, see `wake_collector`)
        if self.idle.load(Ordering::SeqCst) && has_work() {
            self.hand_off(Handoff::Resume);
        }
    }
}
