//! What the feeder thread and an `imap`'s iterator share: inputs, their windows, the
//! feeder's wake-up.

use super::state::{encode_chunk, encode_failed, Outcome, Payload};
use super::task_error::TaskError;
use crate::codec::Unsent;
use crate::runtime;
use crate::Message;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Wakes the pool's input reader (the feeder of `imap` and `map`).
#[derive(Default)]
pub(super) struct Wake {
    pub(super) flag: Mutex<bool>,
    pub(super) cv: Condvar,
    /// The reader is about to sleep or sleeps: changes must set `flag`.
    pub(super) waiting: AtomicBool,
}

impl Wake {
    pub(super) fn wake(&self) {
        if self.waiting.load(Ordering::SeqCst) {
            *self.flag.lock().unwrap_or_else(|e| e.into_inner()) = true;
            self.cv.notify_one();
        }
    }

    /// Sleeps until woken (at most `limit`).
    pub(super) fn sleep(&self, limit: Duration) {
        let mut f = self.flag.lock().unwrap_or_else(|e| e.into_inner());
        if !*f {
            f = self
                .cv
                .wait_timeout(f, limit)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *f = false;
    }
}
/// What the feeder and an `imap`'s iterator share: how many chunks are submitted, done
/// and read.
pub(super) struct Feed {
    pub(super) st: Mutex<FeedState>,
    /// The most chunks submitted and not read.
    pub(super) cap: u64,
    /// Wakes the feeder when room is made.
    pub(super) wake: Arc<Wake>,
}

#[derive(Default)]
pub(super) struct FeedState {
    pub(super) submitted: u64,
    pub(super) done: u64,
    pub(super) delivered: u64,
    /// The iterator was dropped: results are thrown away.
    pub(super) gone: bool,
    /// `submitted` when the iterator was dropped.
    pub(super) submitted_at_drop: u64,
}

impl Feed {
    pub(super) fn lock(&self) -> MutexGuard<'_, FeedState> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What the feeder (and the sinks of its chunks) send an iterator.
pub(super) enum FeedMsg {
    /// Chunk `seq` of `n` items; whether it was submitted (counted in the window).
    Chunk(u64, usize, Outcome, bool),
    /// The input ended (or the pool was terminated) after this many chunks.
    End(u64),
}

/// One chunk read from an input.
pub(super) enum Part {
    /// Encoded, `n` items.
    Chunk(Payload, Unsent, usize),
    /// `n` items that cannot go (they fail with this error); `true`: the input ends.
    Failed(TaskError, usize, bool),
}

/// An `imap`'s input, as the feeder reads it.
pub(super) trait Input: Send {
    /// The next chunk, `None` at the end of the input.
    fn next_chunk(&mut self) -> Option<Part>;
}

pub(super) struct InputOf<A, I> {
    pub(super) input: I,
    pub(super) chunksize: usize,
    pub(super) _a: PhantomData<fn(A)>,
}

impl<A: Message, I: Iterator<Item = A> + Send> Input for InputOf<A, I> {
    fn next_chunk(&mut self) -> Option<Part> {
        // the input is the user's code: a panic in it ends the input with an error item
        // (not the feeder, which every input and `join` wait for)
        let n = self.chunksize;
        let input = &mut self.input;
        let part = std::panic::catch_unwind(AssertUnwindSafe(|| input.take(n).collect::<Vec<A>>()));
        match part {
            Err(p) => Some(Part::Failed(
                TaskError::Failed(format!(
                    "the input iterator panicked: {}",
                    runtime::take_panic_message(&*p)
                )),
                1,
                true,
            )),
            Ok(part) if part.is_empty() => None,
            Ok(part) => Some(match encode_chunk(&part) {
                Ok((payload, unsent)) => Part::Chunk(payload, unsent, part.len()),
                // its items fail; the rest goes on
                Err(e) => Part::Failed(encode_failed(e), part.len(), false),
            }),
        }
    }
}

/// An input being fed, with its iterator's side.
pub(super) struct Source {
    pub(super) input: Box<dyn Input>,
    pub(super) feed: Arc<Feed>,
    pub(super) fid: u32,
    /// The next chunk's number.
    pub(super) seq: u64,
    pub(super) tx: crossbeam_channel::Sender<FeedMsg>,
}

/// What one look at a source did.
pub(super) enum Step {
    Read,
    Wait,
    Ended,
}
