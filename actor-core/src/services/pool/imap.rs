//! [`Imap`]: the iterator of `imap`'s (and `map`'s) results.

use super::async_result::decode_chunk;
use super::feed::{Feed, FeedMsg};
use super::state::Marker;
use super::task_error::TaskError;
use crate::Message;
use procactor_transports::deadline::Deadline;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Results of [`Pool::imap`](super::Pool::imap) and [`Pool::imap_unordered`](super::Pool::imap_unordered) (and the driver of `map`):
/// one `Result` per input item. Its tasks run whether it is read or dropped (see
/// [`Pool::imap`](super::Pool::imap)).
pub struct Imap<'p, A, R, I> {
    pub(super) feed: Arc<Feed>,
    pub(super) rx: crossbeam_channel::Receiver<FeedMsg>,
    pub(super) ordered: bool,
    /// How many chunks the input made (once the feeder is done).
    pub(super) total: Option<u64>,
    /// Chunks whose items went to `ready`.
    pub(super) seen: u64,
    pub(super) reorder: BTreeMap<u64, (Vec<Result<R, TaskError>>, bool)>,
    /// Results in order, each with whether taking it completes a chunk that counts in
    /// the feeder's window (its last item): a chunk is *read* when the caller has taken
    /// all of it, not when it arrived.
    pub(super) ready: VecDeque<(Result<R, TaskError>, bool)>,
    pub(super) _t: Marker<'p, A, R, I>,
}

impl<A, R, I> fmt::Debug for Imap<'_, A, R, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Imap")
            .field("ordered", &self.ordered)
            .field("window", &self.feed.cap)
            .field("chunks_seen", &self.seen)
            .finish()
    }
}

impl<A, R: Message, I> Imap<'_, A, R, I> {
    /// The most chunks (of `chunksize` items) its feeder keeps submitted and not yet
    /// read: [`IMAP_WINDOW_PER_WORKER`](super::IMAP_WINDOW_PER_WORKER) × the pool's processes.
    pub fn window(&self) -> usize {
        self.feed.cap as usize
    }

    /// The next result, waiting at most `timeout` (Python's `IMapIterator.next(timeout)`):
    /// `Some(Err(TaskError::Timeout))` when none came in time (the iterator is unchanged:
    /// ask again), `None` at the end.
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<R, TaskError>> {
        self.next_until(Deadline::after(timeout).instant())
    }

    pub(super) fn next_until(&mut self, deadline: Option<Instant>) -> Option<Result<R, TaskError>> {
        loop {
            if let Some((r, completes)) = self.ready.pop_front() {
                if completes {
                    self.read_chunks(1);
                }
                return Some(r);
            }
            if self.total.is_some_and(|t| self.seen >= t) {
                return None;
            }
            let msg = match deadline {
                None => self.rx.recv().ok()?,
                Some(d) => match self.rx.recv_deadline(d) {
                    Ok(m) => m,
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                        return Some(Err(TaskError::Timeout))
                    }
                    // every sender is gone: nothing more comes
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return None,
                },
            };
            match msg {
                FeedMsg::End(t) => self.total = Some(t),
                FeedMsg::Chunk(seq, n, out, counted) => {
                    let items = decode_chunk::<R>(&out, n);
                    self.deliver(seq, items, counted);
                }
            }
        }
    }

    pub(super) fn deliver(&mut self, seq: u64, items: Vec<Result<R, TaskError>>, counted: bool) {
        if self.ordered {
            self.reorder.insert(seq, (items, counted));
            while let Some((items, counted)) = self.reorder.remove(&self.seen) {
                self.make_ready(items, counted);
                self.seen += 1;
            }
        } else {
            self.make_ready(items, counted);
            self.seen += 1;
        }
    }

    /// Queues a chunk's results for the caller; the chunk counts as read when its last
    /// result is taken (at once if it has none).
    pub(super) fn make_ready(&mut self, items: Vec<Result<R, TaskError>>, counted: bool) {
        let n = items.len();
        if n == 0 && counted {
            self.read_chunks(1);
        }
        self.ready.extend(
            items
                .into_iter()
                .enumerate()
                .map(|(i, r)| (r, counted && i + 1 == n)),
        );
    }

    /// `n` chunks of this operation were read: room in the feeder's window.
    pub(super) fn read_chunks(&self, n: u64) {
        self.feed.lock().delivered += n;
        self.feed.wake.wake();
    }
}

impl<A, R, I> Drop for Imap<'_, A, R, I> {
    fn drop(&mut self) {
        {
            let mut s = self.feed.lock();
            s.gone = true;
            s.submitted_at_drop = s.submitted;
        }
        self.feed.wake.wake();
    }
}

impl<A, R: Message, I> Iterator for Imap<'_, A, R, I> {
    type Item = Result<R, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_until(None)
    }
}
