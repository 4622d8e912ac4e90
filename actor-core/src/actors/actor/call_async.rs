//! The async face of [`ActorRef`]: `send_async`, `call_async`.
//!
//! A call holds a lane (a lock and a reply queue) from its request until its reply, so
//! at most `lanes` calls of a group run at once, whatever the number of futures; the
//! futures of one process beyond that wait in line at the group's
//! [`CallGate`](super::gate::CallGate). Only a future through the gate watches a lane
//! lock's word, for the calls of other processes (and of this process's blocking
//! `call`s), which do not go through the gate.

use super::actor_ref::ActorRef;
use super::envelope::{give_back, Envelope};
use super::mailbox::{cell, PipeMailbox};
use super::{CallError, ProcessActor};
use crate::aio::WordWait;
use crate::error::PutError;
use crate::queue::{await_reply_async, NoReply, REPLY_SPIN};
use crate::sync::LockGuard;
use std::future::poll_fn;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// How often a future waiting for a lane lock held by another process tries again
/// although the lock's word did not wake it (the holder may have died: `try_acquire`
/// then takes the lock over; or its release woke a blocking waiter instead).
const LANE_RECHECK: Duration = Duration::from_millis(10);

impl<A: ProcessActor> ActorRef<A> {
    /// As [`send`](ActorRef::send), as a future: waits for room in the mailbox without
    /// blocking a thread (a bounded mailbox only: a queue actor's mailbox is unbounded
    /// and this completes at once, as `send` does).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it completes sends nothing (the message is dropped
    /// with it); once it has completed, the message is in the mailbox.
    ///
    /// # Errors
    ///
    /// As [`send`](ActorRef::send).
    pub async fn send_async(&self, msg: A::Msg) -> Result<(), PutError<A::Msg>> {
        let (msg, _sending) = self.refuse_if_stopping(msg).map_err(PutError::Closed)?;
        self.mailbox
            .put_async(Envelope::Msg(msg, self.group.meta()))
            .await
            .map_err(|e| {
                give_back(e).unwrap_or_else(|_| {
                    unreachable!("a message envelope always carries the sender's message")
                })
            })
    }
}

impl<A: ProcessActor<Mailbox = PipeMailbox>> ActorRef<A> {
    /// As [`call`](ActorRef::call), as a future: sends a request and waits for the
    /// actor's reply without blocking a thread, on any executor. For a timeout, wrap it
    /// in the runtime's own (`tokio::time::timeout`); there is no `call_async_timeout`.
    ///
    /// It waits, in turn, for a call lane (one per member of the group: calls to one
    /// actor run one at a time, as blocking calls do; the futures of this process wait
    /// in line, first come first served, so thousands of them cost one wake-up per
    /// call), for room in the mailbox, and for the reply. Like `call`, it notices
    /// within milliseconds that the actor died handling the request
    /// ([`CallError::Died`]) or has stopped. The reply wait first tries again for up to
    /// 20 µs before it registers (a fast actor's reply is then taken without the two
    /// cross-thread wake-ups a registered wait costs: see `docs/design-notes.md`); that
    /// spin holds the executor's thread, and `PROCACTOR_SPIN=0` turns it off with
    /// every other spin (see `procactor_transports::spin`).
    ///
    /// A process that has used an async method has a watcher thread, so it can no
    /// longer start children with [`StartMethod::Fork`](crate::StartMethod).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future is safe at any point. Before the request is in the mailbox,
    /// nothing is sent. After that, the request is still handled by the actor, but its
    /// reply is never mistaken for another call's: every call has its own number, and
    /// a caller drops the replies to other numbers it finds on its lane. The lane (and
    /// the place in line) is given back as the future drops.
    ///
    /// # Errors
    ///
    /// As [`call`](ActorRef::call) (never [`CallError::Timeout`]: the caller times out
    /// by dropping the future).
    ///
    /// # Examples
    ///
    /// ```
    /// use procactor::{process_actor, Actor, ActorError, Context, Supervisor};
    /// use serde::{Deserialize, Serialize};
    /// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     // a minimal executor: any runtime works the same way
    /// #     use std::task::{Context, Poll, Wake, Waker};
    /// #     use std::sync::Arc;
    /// #     struct T(std::thread::Thread);
    /// #     impl Wake for T { fn wake(self: Arc<Self>) { self.0.unpark() } }
    /// #     let w = Waker::from(Arc::new(T(std::thread::current())));
    /// #     let mut f = std::pin::pin!(f);
    /// #     loop {
    /// #         if let Poll::Ready(v) = f.as_mut().poll(&mut Context::from_waker(&w)) { return v; }
    /// #         std::thread::park();
    /// #     }
    /// # }
    ///
    /// #[process_actor(mailbox = pipe)]
    /// #[derive(Serialize, Deserialize)]
    /// struct Doubler;
    ///
    /// impl Actor for Doubler {
    ///     type Msg = u64;
    ///     type Reply = u64;
    ///     fn handle(&mut self, x: u64, _: &mut Context<Self>) -> Result<u64, ActorError> {
    ///         Ok(2 * x)
    ///     }
    /// }
    ///
    /// fn main() {
    ///     procactor::init();
    ///     let sup = Supervisor::builder().build().unwrap();
    ///     let r = sup.spawn(Doubler).unwrap();
    ///     assert_eq!(block_on(r.call_async(21)).unwrap(), 42);
    /// }
    /// ```
    pub async fn call_async(&self, msg: A::Msg) -> Result<A::Reply, CallError> {
        let lanes = self.group.call_locks.len().min(self.replies.len());
        if lanes == 0 {
            return Err(CallError::Send("this actor has no reply channel".into()));
        }
        let _pass = self.group.gate.enter(lanes).await;
        let c = self
            .group
            .word(cell::NEXT_CALL)
            .fetch_add(1, Ordering::AcqRel)
            + 1;
        let first = (c % lanes as u64) as usize;
        let (lane, _guard) = self.take_lane_async(first, lanes).await;
        let (msg, sending) = self
            .refuse_if_stopping(msg)
            .map_err(|_| CallError::Stopped)?;
        let n = (c << 8) | lane as u64;
        let exits = self.group.word(cell::EXITS).load(Ordering::Acquire);
        let put = self
            .mailbox
            .put_async(Envelope::Call(n, msg, self.group.meta()))
            .await;
        drop(sending);
        if let Err(e) = put {
            return Err(match e {
                PutError::Closed(_) => CallError::Stopped,
                e => CallError::Send(e.to_string()),
            });
        }
        let check = self.lost_call_check(lane, n, exits);
        let spin = procactor_transports::spin::budget(REPLY_SPIN);
        match await_reply_async(&self.replies[lane], n, spin, check).await {
            Ok(r) => r.map_err(CallError::Failed),
            Err(NoReply::Stopped(outcome)) => outcome,
            Err(NoReply::Timeout) => Err(CallError::Timeout),
            Err(NoReply::Decode(e)) => Err(CallError::Reply(e.to_string())),
            Err(NoReply::Broken) => Err(CallError::Send("the reply channel is broken".into())),
        }
    }

    /// A free lane (trying each, from `first` on), else waits for lane `first`'s lock:
    /// its word wakes the future when its holder releases it.
    async fn take_lane_async(&self, first: usize, lanes: usize) -> (usize, LockGuard<'_>) {
        let try_all = || {
            (0..lanes).map(|i| (first + i) % lanes).find_map(|k| {
                match self.group.call_locks[k].try_acquire() {
                    Ok(Some(g)) => Some((k, g)),
                    Ok(None) => None,
                    // (its holder died: the lane is ours; its reply queue may hold a
                    // stale reply, which the numbering discards)
                    Err(e) => Some((k, e.into_inner())),
                }
            })
        };
        if let Some(h) = try_all() {
            return h;
        }
        let lock = &self.group.call_locks[first];
        let (host, word) = lock.word_host();
        let mut wait = WordWait::new(host, word, no_count);
        poll_fn(|cx| {
            wait.poll(cx, Some(LANE_RECHECK), || {
                let got = try_all();
                if got.is_none() {
                    // so that its release wakes the word's sleepers, our watcher among them
                    lock.mark_waited();
                }
                got
            })
        })
        .await
    }
}

/// The robust lock keeps no waiter count (a flag bit in its word says that somebody may
/// wait, set by `mark_waited`); `WordWait` counts itself here instead.
fn no_count(_: &procactor_transports::shm::ShmRegion) -> &std::sync::atomic::AtomicU32 {
    static NOBODY_READS_IT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    &NOBODY_READS_IT
}
