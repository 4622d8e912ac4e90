//! The two building blocks of every `_async` method: waiting for a word in shared
//! memory ([`WordWait`]) and for a descriptor ([`FdWait`]), as parts of a hand-written
//! future's `poll`, on any executor (std wakers only; the threads that wake them are
//! `procactor_transports::watch`'s).
//!
//! A `WordWait` takes part in the same waiter handshake as a blocking wait (it counts
//! itself in the word's waiter count while it waits, and re-checks after counting), so
//! the publishers need no change and pay nothing new: see `docs/design-notes.md`,
//! "async: one watcher thread, no new cost for publishers".

use procactor_transports::watch::{FdWatch, Interest, WordWatch};
use procactor_transports::BorrowedFd;
use std::io;
use std::sync::atomic::{fence, AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// How many times a first poll looks again before registering (each try is a
/// `try_` operation: tens of nanoseconds; all of them, a few microseconds).
const SPIN_TRIES: u32 = 64;

/// Picks a word out of its host.
pub(crate) type Pick<H> = fn(&H) -> &AtomicU32;

/// A wait, across polls, for a condition announced by a word in shared memory.
///
/// `host` keeps the memory mapped (the watch holds a clone of it); `word` is the word
/// that changes and is woken when the condition may have become true (a sequence word,
/// or the value word itself), `waiters` the count its publishers read before waking.
pub(crate) struct WordWait<H: Send + Sync + 'static> {
    host: Arc<H>,
    word: Pick<H>,
    waiters: Pick<H>,
    counted: bool,
    watch: Option<WordWatch>,
}

impl<H: Send + Sync + 'static> WordWait<H> {
    pub(crate) fn new(host: Arc<H>, word: Pick<H>, waiters: Pick<H>) -> Self {
        WordWait {
            host,
            word,
            waiters,
            counted: false,
            watch: None,
        }
    }

    /// One poll: `Ready` with what `ready` gives once it gives something; otherwise
    /// registers (once) and arms the watch, with a `recheck` after which the future is
    /// polled again even if the word did not change (for liveness checks no word
    /// announces).
    pub(crate) fn poll<T>(
        &mut self,
        cx: &mut Context<'_>,
        recheck: Option<Duration>,
        mut ready: impl FnMut() -> Option<T>,
    ) -> Poll<T> {
        if let Some(v) = ready() {
            self.finish();
            return Poll::Ready(v);
        }
        if let Some(w) = &self.watch {
            if !w.fired() {
                // polled again before the word changed (a select, a join): keep the watch
                // as it is if it already wakes this task, else arm it with its waker
                if !w.wakes(cx.waker()) {
                    let seen = (self.word)(&self.host).load(Ordering::SeqCst);
                    let at = recheck.map(|d| Instant::now() + d);
                    if let Some(w) = &mut self.watch {
                        w.rearm(seen, at, cx.waker());
                    }
                }
                return match ready() {
                    Some(v) => {
                        self.finish();
                        Poll::Ready(v)
                    }
                    None => Poll::Pending,
                };
            }
        }
        if self.watch.is_none() {
            // before the first registration (a lock, a system call and a hop through the
            // watcher thread), look again for a few microseconds: a queue fed by a busy
            // producer, a reply on its way, are there by then. Disclosed in the design
            // notes; never more than SPIN_TRIES tries.
            for _ in 0..SPIN_TRIES {
                std::hint::spin_loop();
                if let Some(v) = ready() {
                    return Poll::Ready(v);
                }
            }
        }
        if !self.counted {
            (self.waiters)(&self.host).fetch_add(1, Ordering::SeqCst);
            self.counted = true;
        }
        // pairs with the publisher's fence: either our re-check sees its publication, or
        // it sees us counted and wakes the word (the watcher among its sleepers)
        fence(Ordering::SeqCst);
        let seen = (self.word)(&self.host).load(Ordering::SeqCst);
        if let Some(v) = ready() {
            self.finish();
            return Poll::Ready(v);
        }
        let at = recheck.map(|d| Instant::now() + d);
        match &mut self.watch {
            Some(w) => w.rearm(seen, at, cx.waker()),
            None => {
                self.watch = Some(WordWatch::new(
                    self.host.clone(),
                    self.word,
                    seen,
                    at,
                    cx.waker(),
                ))
            }
        }
        Poll::Pending
    }

    /// The wait got what it waited for: unregisters, passing no wake-up on.
    fn finish(&mut self) {
        if let Some(mut w) = self.watch.take() {
            w.done();
        }
        self.uncount();
    }

    fn uncount(&mut self) {
        if self.counted {
            (self.waiters)(&self.host).fetch_sub(1, Ordering::SeqCst);
            self.counted = false;
        }
    }
}

impl<H: Send + Sync + 'static> Drop for WordWait<H> {
    fn drop(&mut self) {
        // (a watch that fired for nothing taken passes its wake-up on as it drops)
        self.watch = None;
        self.uncount();
    }
}

/// A wait, across polls, for a descriptor to become readable or writable.
#[derive(Default)]
pub(crate) struct FdWait {
    watch: Option<FdWatch>,
}

impl FdWait {
    /// After an operation on `fd` would have blocked: arms the watch (one-shot,
    /// level-triggered: a descriptor that became ready meanwhile fires at once) and
    /// returns `Pending`; the task is woken when the caller should try again.
    ///
    /// # Errors
    ///
    /// `Ready(Err)` when the descriptor cannot be watched (duplicating or registering it
    /// failed).
    pub(crate) fn poll_ready(
        &mut self,
        cx: &mut Context<'_>,
        fd: BorrowedFd<'_>,
        interest: Interest,
    ) -> Poll<io::Result<()>> {
        let armed = match &mut self.watch {
            None => FdWatch::new(fd, interest, cx.waker()).map(|w| self.watch = Some(w)),
            Some(w) => w.rearm(cx.waker()),
        };
        match armed {
            Ok(()) => Poll::Pending,
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}
