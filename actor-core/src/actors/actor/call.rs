//! Calls to pipe actors: the caller's side (a lane, the request, waiting for its reply
//! or finding out that it will not come) and the actor's (recording the taker,
//! answering on the lane's reply queue).

use super::actor_ref::ActorRef;
use super::context::Context;
use super::counters::Counters;
use super::envelope::{Envelope, ReplyOf};
use super::mailbox::{cell, lane_of, PipeMailbox};
use super::{crash, ActorError, CallError, ProcessActor};
use crate::error::TryPutError;
use crate::queue::{await_reply, NoReply, Queue};
use procactor_transports::deadline::Deadline;
use procactor_transports::os;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

impl<A: ProcessActor<Mailbox = PipeMailbox>> ActorRef<A> {
    /// Sends a request and waits for the actor's reply (pipe actors only: for a queue
    /// actor this method does not exist).
    ///
    /// # Errors
    ///
    /// [`CallError::Failed`] when `handle` returned an error, [`CallError::Died`] when
    /// the actor died handling this request, [`CallError::Stopped`] when it has stopped.
    pub fn call(&self, msg: A::Msg) -> Result<A::Reply, CallError> {
        self.call_deadline(msg, None)
    }

    /// As [`call`](ActorRef::call), giving up with [`CallError::Timeout`] after
    /// `timeout`. A reply that comes after the timeout is discarded by the next call.
    ///
    /// # Errors
    ///
    /// As `call`, and `Timeout`.
    pub fn call_timeout(&self, msg: A::Msg, timeout: Duration) -> Result<A::Reply, CallError> {
        self.call_deadline(msg, Deadline::after(timeout).instant())
    }

    fn call_deadline(&self, msg: A::Msg, deadline: Option<Instant>) -> Result<A::Reply, CallError> {
        let lanes = self.group.call_locks.len().min(self.replies.len());
        if lanes == 0 {
            return Err(CallError::Send("this actor has no reply channel".into()));
        }
        let (msg, sending) = self
            .refuse_if_stopping(msg)
            .map_err(|_| CallError::Stopped)?;
        // a lane for this call: a free one if any (calls to a pool run on its members at
        // once), else wait for the one this call number falls on
        let c = self
            .group
            .word(cell::NEXT_CALL)
            .fetch_add(1, Ordering::AcqRel)
            + 1;
        let first = (c % lanes as u64) as usize;
        let mut held = None;
        for k in (0..lanes).map(|i| (first + i) % lanes) {
            match self.group.call_locks[k].try_acquire() {
                Ok(Some(g)) => held = Some((k, g)),
                Ok(None) => continue,
                Err(e) => held = Some((k, e.into_inner())),
            }
            break;
        }
        let (lane, _guard) = match held {
            Some(h) => h,
            None => {
                let lock = &self.group.call_locks[first];
                let g = match deadline {
                    None => lock.acquire().unwrap_or_else(|e| e.into_inner()),
                    Some(d) => {
                        let left = d.saturating_duration_since(Instant::now());
                        match lock.acquire_timeout(left) {
                            Ok(Some(g)) => g,
                            Ok(None) => return Err(CallError::Timeout),
                            Err(e) => e.into_inner(),
                        }
                    }
                };
                (first, g)
            }
        };
        let replies = &self.replies[lane];
        let n = (c << 8) | lane as u64;
        let exits = self.group.word(cell::EXITS).load(Ordering::Acquire);
        let put = self
            .mailbox
            .put_until(Envelope::Call(n, msg, self.group.meta()), deadline);
        drop(sending);
        if let Err(e) = put {
            return Err(match e {
                TryPutError::Full(_) => CallError::Timeout,
                TryPutError::Closed(_) => CallError::Stopped,
                e => CallError::Send(e.to_string()),
            });
        }
        let mut check = self.lost_call_check(lane, n, exits);
        match await_reply(replies, n, deadline, &mut check) {
            Ok(r) => r.map_err(CallError::Failed),
            Err(NoReply::Stopped(outcome)) => outcome,
            Err(NoReply::Timeout) => Err(CallError::Timeout),
            Err(NoReply::Decode(e)) => Err(CallError::Reply(e.to_string())),
            Err(NoReply::Broken) => Err(CallError::Send("the reply channel is broken".into())),
        }
    }

    /// What a caller waiting for call `n`'s reply on `lane` checks every so often (see
    /// [`await_reply`]): whether the request was lost with a dying actor, or the actor
    /// has ended (a reply may still have come just before). `exits`: the group's exit
    /// count when the request was sent.
    pub(super) fn lost_call_check(
        &self,
        lane: usize,
        n: u64,
        exits: u64,
    ) -> impl FnMut() -> Option<Result<A::Reply, CallError>> + '_ {
        let replies = &self.replies[lane];
        // every few milliseconds without the reply: was the request lost with a dying
        // actor, or has the actor ended (a reply may still have come just before)?
        let lane_word = move |w| self.group.actor_word(lane as u32, w);
        let mut vanished_since: Option<Instant> = None;
        move || {
            if self.group.word(cell::LOST_CALL).load(Ordering::Acquire) == n {
                return Some(Err(CallError::Died));
            }
            let last_reply = || match replies.try_get() {
                Ok((k, r)) if k == n => Some(r.map_err(CallError::Failed)),
                _ => None,
            };
            if lane_word(cell::LANE_TAKEN).load(Ordering::Acquire) == n {
                // taken: by an incarnation that has ended since?
                let taker = lane_word(cell::LANE_TAKER).load(Ordering::Acquire);
                let (member, pid) = ((taker >> 32) as u32, taker as u32);
                let ended = member >= self.group.actors
                    || self.group.pid(member) != Some(pid)
                    || !os::process_alive(pid);
                if ended {
                    return Some(last_reply().unwrap_or(Err(CallError::Died)));
                }
            } else if self.mailbox.is_empty()
                && self.group.word(cell::EXITS).load(Ordering::Acquire) != exits
            {
                // not in the mailbox, taken by nobody alive, and a process of the group
                // ended since it was sent: it died between taking it and recording it
                // (seen twice, VANISHED apart, so that a live taker has recorded it)
                let now = Instant::now();
                match vanished_since {
                    None => vanished_since = Some(now),
                    Some(t) if now.duration_since(t) >= VANISHED => {
                        if lane_word(cell::LANE_TAKEN).load(Ordering::Acquire) != n {
                            return Some(last_reply().unwrap_or(Err(CallError::Died)));
                        }
                    }
                    Some(_) => {}
                }
            } else {
                vanished_since = None;
            }
            if self.group.over() {
                return Some(last_reply().unwrap_or(Err(CallError::Stopped)));
            }
            None
        }
    }
}

/// How long a call must look lost (taken from the mailbox, recorded by nobody, a process
/// of its group ended) before its caller concludes that the taker died: a live actor
/// records a call microseconds after taking it.
const VANISHED: Duration = Duration::from_millis(50);

/// How long an actor tries to put a reply (a reply queue is unbounded: only a caller
/// that stopped reading a huge backlog of replies could make it wait): a late reply to
/// a caller that gave up never holds the actor longer.
const REPLY_PUT_LIMIT: Duration = Duration::from_secs(1);

/// Handles call `n` (or answers a call whose message could not be read with an error,
/// without crashing): records it as taken on its lane and in flight (so a death here
/// is reported to the caller as `Died`), sends the reply on the lane's reply queue, and
/// ends the actor as a crash if `handle` failed.
#[allow(clippy::too_many_arguments)]
pub(super) fn answer_call<A: ProcessActor>(
    actor: &mut A,
    ctx: &mut Context<A>,
    counters: &Counters<'_>,
    took: Option<u64>,
    in_call: &AtomicU64,
    replies: &[Queue<ReplyOf<A::Reply>>],
    n: u64,
    m: Result<A::Msg, String>,
) {
    procactor_transports::killpoint::hit("actor.call.after_pop");
    let lane = lane_of(n);
    if lane < replies.len() {
        // (the cached pid: `getpid` is a system call on every call otherwise)
        let taker = (u64::from(ctx.index) << 32) | u64::from(os::current_pid_cached());
        ctx.group
            .actor_word(lane as u32, cell::LANE_TAKER)
            .store(taker, Ordering::Release);
        ctx.group
            .actor_word(lane as u32, cell::LANE_TAKEN)
            .store(n, Ordering::Release);
    }
    in_call.store(n, Ordering::Release);
    let (r, crash_on) = match m {
        Ok(m) => {
            let unwinding = counters.on_unwind();
            let r = actor.handle(m, ctx);
            unwinding.disarm();
            counters.handled(true, took);
            let failed = r.as_ref().err().cloned();
            if failed.is_some() {
                counters.error();
            }
            (r, failed)
        }
        Err(e) => {
            tracing::error!(actor = %ctx.name, error = %e, "undecodable call answered with an error");
            (
                Err(ActorError::new(format!(
                    "the request could not be read: {e}"
                ))),
                None,
            )
        }
    };
    match replies.get(lane) {
        Some(q) => {
            // (at once when there is room, as there nearly always is: no clock read)
            let sent = match q.try_put((n, r)) {
                Err(TryPutError::Full(reply)) => q
                    .put_deadline(reply, Instant::now() + REPLY_PUT_LIMIT)
                    .map_err(|e| e.to_string()),
                r => r.map_err(|e| e.to_string()),
            };
            if let Err(e) = sent {
                tracing::error!(actor = %ctx.name, error = %e, "reply not sent");
            }
        }
        None => tracing::error!(actor = %ctx.name, call = n, "a call on no lane: not answered"),
    }
    in_call.store(0, Ordering::Release);
    if let Some(e) = crash_on {
        crash(&ctx.name, "handle", &e);
    }
}
