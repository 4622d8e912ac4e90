//! The direct path of a task's result: a caller waiting in
//! [`AsyncResult::get`](super::AsyncResult::get) reads the result ring itself, instead
//! of the result thread reading it and then waking the caller (one thread hop, one
//! sleep and one wake-up less per round trip).
//!
//! # Who reads the result ring
//!
//! One thread at a time pops from the result ring: the one holding the *reader role*
//! ([`Role`](super::role::Role)). By default that is the pool's result thread. A caller waiting for the
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
//! [`IDLE_CHECK`](super::role::IDLE_CHECK). A sequence of `apply_async(..).get()` therefore keeps the role with
//! the callers and the result thread asleep: a round trip is the caller and the worker
//! only, as a pipe call is (a direct task nobody waits for is routed within
//! `IDLE_CHECK`, or by the next `get`, `ready` or other submission).
//!
//! A caller reading the ring looks at its own channel at least every [`SLICE`] (its
//! result may come another way: `terminate`, a drop, a worker's death handled on the
//! result thread), so nothing waits on the ring for ever.

use super::inner::Inner;
use super::role::{Handoff, PUT_LIMIT, SLICE};
use super::state::Outcome;
use super::wire::ResultMsg;
use crate::{GetTimeoutError, TryGetError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Weak;
use std::time::Instant;

/// What a task's [`AsyncResult`](super::AsyncResult) needs to read the ring itself.
pub(super) struct Direct {
    pub(super) inner: Weak<Inner>,
    pub(super) chunk: u64,
}

/// Gives the role back when dropped.
struct Held<'a>(&'a Inner, &'a AtomicBool);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.1.store(false, Ordering::SeqCst);
        let inner = self.0;
        inner
            .role
            .caller_gives_back(|| !inner.results.is_empty() || !inner.lock().pending.is_empty());
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
pub(super) fn receive(
    d: &Direct,
    reading: &AtomicBool,
    rx: &Rx,
    deadline: Option<Instant>,
) -> Received {
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
    reading.store(true, Ordering::SeqCst);
    let _held = Held(&inner, reading);
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
                reading.store(false, Ordering::SeqCst);
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

/// An `.await`ed task's result is routed by the result thread (the awaiting task cannot
/// read the ring: it would block its executor): wakes that thread if it is idle with
/// nobody reading, as it may be when this direct task is all that is in flight.
pub(super) fn routed_for_await(d: &Direct) {
    if let Some(inner) = d.inner.upgrade() {
        inner.role.wake_collector();
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
