//! The actor's process: what it receives, and its mailbox loop.

use super::call::answer_call;
use super::context::Context;
use super::counters::Counters;
use super::envelope::{Envelope, ReplyOf};
use super::mailbox::{cell, ActorState, Group};
use super::trace;
use super::{crash, ActorError, ProcessActor};
use crate::error::GetError;
use crate::queue::Queue;
use procactor_transports::os;
use serde::{Deserialize, Serialize};
use std::any::type_name;
use std::sync::atomic::{AtomicU64, Ordering};

/// How an actor's (or a child supervisor's) process ended, as its target returns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ExitReport {
    /// The actor called `ctx.stop()`.
    Normal,
    /// `ActorRef::stop()`: not restarted.
    Stopped,
    /// Every sender gone, mailbox drained: not restarted.
    Disconnected,
    /// A child supervisor was shut down by its parent.
    Shutdown,
    /// A child supervisor gave up (restart intensity): abnormal.
    Intensity,
}

/// What an actor's process receives: the actor and its mailbox.
#[derive(Serialize, Deserialize)]
pub(crate) struct ActorBoot<A: ProcessActor> {
    #[serde(bound = "")]
    actor: A,
    #[serde(bound = "")]
    mailbox: Queue<Envelope<A::Msg>>,
    #[serde(bound = "")]
    replies: Vec<Queue<ReplyOf<A::Reply>>>,
    group: Group,
    index: u32,
    name: String,
}

/// The same, borrowed, as the supervisor sends it (it keeps the actor to start it again).
#[derive(Serialize)]
pub(crate) struct ActorBootRef<'a, A: ProcessActor> {
    #[serde(bound = "")]
    pub(crate) actor: &'a A,
    #[serde(bound = "")]
    pub(crate) mailbox: &'a Queue<Envelope<A::Msg>>,
    #[serde(bound = "")]
    pub(crate) replies: &'a Vec<Queue<ReplyOf<A::Reply>>>,
    pub(crate) group: &'a Group,
    pub(crate) index: u32,
    pub(crate) name: &'a str,
}

/// The target of every actor process: the mailbox loop.
pub(crate) fn actor_main<A: ProcessActor>(boot: ActorBoot<A>) -> ExitReport {
    let ActorBoot {
        mut actor,
        mailbox,
        replies,
        group,
        index,
        name,
    } = boot;
    // the actor's own mailbox handle must not count as a sender (see module docs)
    mailbox.close();
    // …and it is the one sender of replies
    let open_replies: Vec<_> = replies.iter().map(Queue::clone_open).collect();
    for r in &replies {
        r.close();
    }
    group
        .actor_word(index, cell::PID)
        .store(u64::from(os::current_pid()), Ordering::Release);
    Counters::started(&group, index);
    group.set_state(index, ActorState::Running);
    let group_ = group.clone();
    let counters = Counters::new(&group_, index);
    let taken = group_.actor_word(index, cell::TAKEN);
    let in_call = group_.actor_word(index, cell::IN_CALL);
    taken.store(0, Ordering::Relaxed);
    let mut ctx = Context {
        name,
        mailbox,
        replies,
        group,
        index,
        stop: false,
    };
    let replies = open_replies;
    if let Err(e) = actor.started(&mut ctx) {
        counters.error();
        crash(&ctx.name, "started", &e);
    }
    let mut count = 0u64;
    let report = loop {
        if ctx.stop {
            break ExitReport::Normal;
        }
        let env = match ctx.mailbox.get() {
            Ok(env) => env,
            Err(GetError::Disconnected) => break ExitReport::Disconnected,
            Err(GetError::Decode(e)) => {
                // a message this actor cannot read: say so and go on with the next
                tracing::error!(actor = %ctx.name, error = %e, "undecodable message skipped");
                counters.undecodable();
                count += 1;
                taken.store(count, Ordering::Relaxed);
                continue;
            }
            Err(GetError::Broken) => crash(
                &ctx.name,
                "mailbox",
                &ActorError::new("the mailbox is broken"),
            ),
        };
        count += 1;
        taken.store(count, Ordering::Relaxed);
        let stop = handle_envelope(&mut actor, &mut ctx, &counters, in_call, &replies, env);
        if stop {
            // graceful: what was queued before the stop request is still handled
            // (and what raced with it), then the loop ends
            while let Ok(env) = ctx.mailbox.try_get() {
                if handle_envelope(&mut actor, &mut ctx, &counters, in_call, &replies, env) {
                    // another pool member's stop request: put it back for it
                    let _ = ctx.mailbox.clone_open().put(Envelope::Stop);
                    break;
                }
            }
            break ExitReport::Stopped;
        }
    };
    actor.stopped();
    report
}

/// Handles one envelope, counted; whether it was a stop request.
fn handle_envelope<A: ProcessActor>(
    actor: &mut A,
    ctx: &mut Context<A>,
    counters: &Counters<'_>,
    in_call: &AtomicU64,
    replies: &[Queue<ReplyOf<A::Reply>>],
    env: Envelope<A::Msg>,
) -> bool {
    match env {
        Envelope::Msg(m, meta) => {
            let took = counters.took(&meta);
            let unwinding = counters.on_unwind();
            let r = {
                let _handling = (meta.trace.as_ref())
                    .map(|t| trace::enter(t, &ctx.name, type_name::<A::Msg>(), "send"));
                actor.handle(m, ctx)
            };
            unwinding.disarm();
            counters.handled(false, took);
            if let Err(e) = r {
                counters.error();
                crash(&ctx.name, "handle", &e);
            }
        }
        Envelope::Call(n, m, meta) => {
            let took = counters.took(&meta);
            let _handling = (meta.trace.as_ref())
                .map(|t| trace::enter(t, &ctx.name, type_name::<A::Msg>(), "call"));
            answer_call(actor, ctx, counters, took, in_call, replies, n, Ok(m));
        }
        Envelope::BadCall(n, e) => {
            counters.undecodable();
            answer_call(actor, ctx, counters, None, in_call, replies, n, Err(e));
        }
        Envelope::Stop => return true,
    }
    false
}
