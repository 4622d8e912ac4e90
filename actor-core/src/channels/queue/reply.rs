//! Waiting for a numbered reply on a queue shared by numbered calls (the pipe actors'
//! and the manager's reply rings).

use super::asynch::{data_seq, data_waiters};
use super::mpmc::Queue;
use crate::aio::WordWait;
use crate::error::{GetTimeoutError, TryGetError};
use crate::Message;
use std::future::poll_fn;
use std::time::{Duration, Instant};

/// Why [`await_reply`] came back without the reply.
pub(crate) enum NoReply<E> {
    /// The deadline passed.
    Timeout,
    /// The reply ring holds bytes that are not a reply.
    Decode(crate::DecodeError),
    /// The reply ring is broken.
    Broken,
    /// `check` said to stop waiting.
    Stopped(E),
}

/// How long [`await_reply`] waits between two looks at `check`.
const REPLY_CHECK: Duration = Duration::from_millis(20);

/// Waits for the reply numbered `n` on a ring shared by numbered calls (a pipe actor's,
/// a manager's), dropping replies to other numbers (callers that gave up or died). The
/// common case is one blocking get; every 20 ms without the reply, `check` says whether
/// to stop waiting (the server is gone, the request was lost). While no process can put
/// a reply (the replier died and its successor is not up yet) it waits a millisecond
/// before looking again.
pub(crate) fn await_reply<R: Message, E>(
    replies: &Queue<(u64, R)>,
    n: u64,
    deadline: Option<Instant>,
    mut check: impl FnMut() -> Option<E>,
) -> Result<R, NoReply<E>> {
    loop {
        let now = Instant::now();
        let slice_end = now + REPLY_CHECK;
        let until = match deadline {
            Some(d) if d <= now => return Err(NoReply::Timeout),
            Some(d) => d.min(slice_end),
            None => slice_end,
        };
        match replies.get_deadline(until) {
            Ok((k, r)) if k == n => return Ok(r),
            Ok(_) => continue,
            Err(GetTimeoutError::Timeout) => {}
            Err(GetTimeoutError::Disconnected) => std::thread::sleep(Duration::from_millis(1)),
            Err(GetTimeoutError::Decode(e)) => return Err(NoReply::Decode(e)),
            Err(GetTimeoutError::Broken) => return Err(NoReply::Broken),
        }
        if let Some(e) = check() {
            return Err(NoReply::Stopped(e));
        }
    }
}

/// How long [`await_reply_async`] tries again before it registers its wait: a reply that
/// comes within this is taken without the watcher thread's wake-up and the executor's
/// (two cross-thread wake-ups, tens of microseconds each on a virtual machine).
pub(crate) const REPLY_SPIN: Duration = Duration::from_micros(20);

/// As [`await_reply`], as a future (no deadline: the caller's runtime times it out by
/// dropping it). The replies ring's data word wakes it; every 20 ms without the reply,
/// `check` says whether to stop waiting. Replies to other numbers are dropped, as
/// [`await_reply`] does. Before its first registration it tries again for up to
/// `spin` (see [`REPLY_SPIN`]).
pub(crate) async fn await_reply_async<R: Message, E>(
    replies: &Queue<(u64, R)>,
    n: u64,
    spin: Duration,
    mut check: impl FnMut() -> Option<E>,
) -> Result<R, NoReply<E>> {
    let take = || loop {
        match replies.try_get() {
            Ok((k, r)) if k == n => return Some(Ok(r)),
            Ok(_) => continue,
            // (no process can put a reply now: `check` tells whether one ever comes)
            Err(TryGetError::Empty | TryGetError::Disconnected) => return None,
            Err(TryGetError::Decode(e)) => return Some(Err(NoReply::Decode(e))),
            Err(TryGetError::Broken) => return Some(Err(NoReply::Broken)),
        }
    };
    if !spin.is_zero() {
        let until = Instant::now() + spin;
        loop {
            // (two loads while the ring is empty: the reader lock a `try_get` takes is
            // left alone while the actor writes the reply)
            if !replies.h.ring.is_empty() {
                if let Some(r) = take() {
                    return r;
                }
            }
            let now = Instant::now();
            if now >= until {
                // (an overrun far past the budget: this thread lost its core meanwhile,
                // and spinning pauses in the whole process)
                procactor_transports::spin::note_overrun(until, now);
                break;
            }
            std::hint::spin_loop();
        }
    }
    let mut wait = WordWait::new(replies.h.ring.clone(), data_seq, data_waiters);
    let mut checked = Instant::now();
    poll_fn(|cx| {
        wait.poll(cx, Some(REPLY_CHECK), || {
            if let Some(r) = take() {
                return Some(r);
            }
            let now = Instant::now();
            if now.duration_since(checked) >= REPLY_CHECK {
                checked = now;
                if let Some(e) = check() {
                    return Some(Err(NoReply::Stopped(e)));
                }
            }
            None
        })
    })
    .await
}
