//! [`Context`]: what an actor knows about itself while it runs.

use super::actor_ref::ActorRef;
use super::envelope::{Envelope, ReplyOf};
use super::mailbox::{cell, Group};
use super::{Actor, ProcessActor};
use crate::queue::Queue;
use std::fmt;
use std::sync::atomic::Ordering;

/// What an actor knows about itself while it runs: its name, a reference to itself, and
/// a way to stop after the current message.
pub struct Context<A: Actor> {
    pub(super) name: String,
    pub(super) mailbox: Queue<Envelope<A::Msg>>,
    pub(super) replies: Vec<Queue<ReplyOf<A::Reply>>>,
    pub(super) group: Group,
    pub(super) index: u32,
    pub(super) stop: bool,
}

impl<A: Actor> fmt::Debug for Context<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("name", &self.name)
            .field("stop", &self.stop)
            .finish()
    }
}

impl<A: Actor> Context<A> {
    /// This actor's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Ends the loop after the current message (a normal exit: OTP's `normal`; a
    /// `Permanent` child is restarted, a `Transient` or `Temporary` one is not).
    pub fn stop(&mut self) {
        self.stop = true;
    }

    /// How many times this actor has been restarted before this incarnation.
    pub fn restarts(&self) -> u64 {
        self.group
            .actor_word(self.index, cell::RESTARTS)
            .load(Ordering::Acquire)
    }
}

impl<A: ProcessActor> Context<A> {
    /// A reference to this actor (a new sender: while the actor holds it, its mailbox
    /// never looks disconnected).
    pub fn myself(&self) -> ActorRef<A> {
        ActorRef::new(
            &self.mailbox,
            &self.replies,
            &self.group,
            self.index,
            self.name.clone(),
        )
    }
}
