//! Waiting for a numbered reply on a queue shared by numbered calls (the pipe actors'
//! and the manager's reply rings).

use super::mpmc::Queue;
use crate::error::GetTimeoutError;
use crate::Message;
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
