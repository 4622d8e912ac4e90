//! The direct path of a task's result: a caller waiting in
//! [`AsyncResult::get`](super::AsyncResult::get) reads the result ring itself, instead
//! of the result thread reading it and then waking the caller (one thread hop, one
//! sleep and one wake-up less per round trip).
//!
//! # Who reads the result ring
//!
//! One thread at a time pops from the result ring: the one holding the *reader role*
//! ([`Role`]). By default that is the pool's result thread. A caller waiting for the
//! result of an `apply_async` without callbacks takes the role: at once if nobody holds
//! it, else it asks the result thread to give it up (a [`ResultMsg::Yield`] on the
//! ring, which the result thread reads behind whatever came before) and waits for that
//! (also looking at its own result: it may have come meanwhile). Holding the role, the
//! caller takes its own result from the ring and routes it exactly as the result thread
//! would; everything else it pops (others' results, exit notices, undecodable results)
//! goes, in ring order, to the result thread ([`Handoff`]), so callbacks still run on
//! the result thread, and worker deaths are still handled there (failing the caller's
//! task with `WorkerDied`, which the caller then sees on its channel: the sink puts a
//! `Yield` on the ring to wake it if it is reading).
//!
//! When the caller has its result it gives the role back. The result thread, while it
//! does not hold the role, waits on the handoff channel; it takes the role again (if
//! nobody holds or asks for it) when there is something to read, woken by whoever gives
//! the ring something that nobody reads: a caller giving the role back with chunks still
//! pending or messages on the ring, a submission other than a direct task alone in
//! flight, an exit notice, the pool's drop. As a safety net it also looks every
//! [`IDLE_CHECK`]. A sequence of `apply_async(..).get()` therefore keeps the role with
//! the callers and the result thread asleep: a round trip is the caller and the worker
//! only, as a pipe call is (a direct task nobody waits for is routed within
//! `IDLE_CHECK`, or by the next `get`, `ready` or other submission).
//!
//! A caller reading the ring looks at its own channel at least every [`SLICE`] (its
//! result may come another way: `terminate`, a drop, a worker's death handled on the
//! result thread), so nothing waits on the ring for ever.

use super::inner::Inner;
use super::state::{Finished, Outcome};
use super::wire::ResultMsg;
use crate::queue::Queue;
use crate::{GetTimeoutError, TryGetError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
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
const PUT_LIMIT: Duration = Duration::from_millis(10);

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
    pub(super) fn collector_takes(&self, inner: &Inner) -> bool {
        // (idle first, then the look: a change made after the look sees it idle)
        self.idle.store(true, Ordering::SeqCst);
        if inner.results.is_empty() && inner.lock().pending.is_empty() {
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
    fn caller_takes(
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
    fn caller_takes_free(&self) -> bool {
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
    fn caller_gives_back(&self, inner: &Inner) {
        {
            let mut s = self.lock();
            s.reader = Reader::Nobody;
        }
        // (after the role is free: a submitter or exit notice that saw it held has made
        // its change visible by now, see `wake_collector`)
        if self.idle.load(Ordering::SeqCst)
            && (!inner.results.is_empty() || !inner.lock().pending.is_empty())
        {
            self.hand_off(Handoff::Resume);
        }
    }
}

/// What a task's [`AsyncResult`](super::AsyncResult) needs to read the ring itself.
pub(super) struct Direct {
    pub(super) inner: Weak<Inner>,
    pub(super) chunk: u64,
    /// It reads the ring now: whoever else finishes the task wakes it (a `Yield`).
    pub(super) reading: Arc<AtomicBool>,
}

/// Gives the role back when dropped.
struct Held<'a>(&'a Inner, &'a AtomicBool);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.1.store(false, Ordering::SeqCst);
        self.0.role.caller_gives_back(self.0);
    }
}

/// What the direct path got.
pub(super) enum Received {
    /// The task's outcome (from its channel).
    Out(u64, Outcome),
    /// The deadline passed.
    Timeout,
    /// The channel's sender is gone.
    Disconnected,
    /// The ring could not be read directly: wait on the channel.
    Fallback,
}

type Rx = crossbeam_channel::Receiver<(u64, Outcome)>;

/// Waits for the task's outcome reading the result ring (until `deadline`, `None`: for
/// ever; one already passed: only what is there now, and only if the role is free).
pub(super) fn receive(d: &Direct, rx: &Rx, deadline: Option<Instant>) -> Received {
    let Some(inner) = d.inner.upgrade() else {
        return Received::Fallback;
    };
    if inner.quit.load(Ordering::SeqCst) || inner.terminated.load(Ordering::SeqCst) {
        return Received::Fallback;
    }
    let polling = deadline.is_some_and(|t| t <= Instant::now());
    let took = if polling {
        inner.role.caller_takes_free()
    } else {
        let arrived = || !rx.is_empty();
        inner.role.caller_takes(&inner.results, &arrived, deadline)
    };
    if !took {
        return Received::Fallback;
    }
    d.reading.store(true, Ordering::SeqCst);
    let _held = Held(&inner, &d.reading);
    loop {
        match rx.try_recv() {
            Ok((c, out)) => return Received::Out(c, out),
            Err(crossbeam_channel::TryRecvError::Disconnected) => return Received::Disconnected,
            Err(crossbeam_channel::TryRecvError::Empty) => {}
        }
        let msg = if polling {
            match inner.results.try_get() {
                Ok(m) => Ok(m),
                Err(TryGetError::Empty) => return Received::Timeout,
                Err(TryGetError::Disconnected) => Err(GetTimeoutError::Disconnected),
                Err(TryGetError::Broken) => Err(GetTimeoutError::Broken),
                Err(TryGetError::Decode(e)) => Err(GetTimeoutError::Decode(e)),
            }
        } else {
            let slice = match deadline {
                None => SLICE,
                Some(t) => {
                    let now = Instant::now();
                    if t <= now {
                        return Received::Timeout;
                    }
                    (t - now).min(SLICE)
                }
            };
            inner.results.get_timeout(slice)
        };
        match msg {
            Ok(ResultMsg::Done(c, slot, out)) if c == d.chunk => {
                // routed here as the result thread would (its sink fills `rx`)
                d.reading.store(false, Ordering::SeqCst);
                super::results::on_done(&inner, c, slot, out, false);
            }
            Ok(ResultMsg::Yield) => {}
            Ok(m) => inner.role.hand_off(Handoff::Msg(m)),
            Err(GetTimeoutError::Timeout) => {}
            Err(GetTimeoutError::Decode(e)) => inner.role.hand_off(Handoff::Garbage(e.to_string())),
            Err(GetTimeoutError::Disconnected | GetTimeoutError::Broken) => {
                return Received::Fallback
            }
        }
    }
}

/// In a task's sink: wakes its caller if it is reading the ring (the outcome came
/// another way).
pub(super) fn nudge(inner: &Weak<Inner>, reading: &AtomicBool) {
    if reading.load(Ordering::SeqCst) {
        if let Some(inner) = inner.upgrade() {
            let _ = inner.results.put_timeout(ResultMsg::Yield, PUT_LIMIT);
        }
    }
}
