//! Process actors: a struct whose `handle` runs in its own process, fed by a typed
//! mailbox.
//!
//! `#[process_actor]` on a struct implements [`ProcessActor`] for it (its name and its
//! kind of mailbox); you implement [`Actor`] (the message type and `handle`). A
//! [`Supervisor`](crate::Supervisor) starts actors and restarts them; what you get back is
//! an [`ActorRef`], a cheap, cloneable, serializable handle that sends to the mailbox.
//!
//! # The mailbox
//!
//! A mailbox is a [`Queue`](crate::Queue) of envelopes (a message, a call, or a stop request) owned by
//! the supervisor, so it outlives the actor's process: a restarted actor finds the
//! messages that were queued and not yet taken. A *pipe* actor
//! (`#[process_actor(mailbox = pipe)]`) answers each message: its mailbox is a
//! request/reply pair, and [`ActorRef::call`] sends a request and waits for its reply.
//! Both directions are shared-memory rings (a socketpair round trip costs ~5 µs on the
//! machines we measure, a ring round trip under 1 µs). A pool of pipe actors has one
//! call *lane* per member (at most 64): a lane is a cross-process lock and a reply
//! queue, a caller takes a free lane (or waits for one), so calls to a pool run on its
//! members at once; each reply carries its request's number (whose low byte names the
//! lane), and a late reply to a caller that gave up is dropped by the lane's next
//! caller.
//!
//! # A call always ends
//!
//! With its reply, [`CallError::Timeout`], [`CallError::Died`] (the process that took
//! it died: the caller sees it in the lane's record of who took the call, or, if the
//! taker died before recording it, from the call having left the mailbox while a
//! process of the group ended), [`CallError::Stopped`] or [`CallError::Failed`] (also
//! for a request the actor could not decode: it answers with the decoding error and
//! goes on).
//!
//! # Ending
//!
//! An actor's loop ends when
//! - [`ActorRef::stop`] was called: messages queued before the stop request are still
//!   handled, then [`Actor::stopped`] runs (graceful; the supervisor does not restart it);
//! - the actor called [`Context::stop`] (a normal exit: OTP's `normal`);
//! - every sender is gone: each `ActorRef` is a producer handle of the mailbox, and the
//!   actor's own handle is not one, so when the last `ActorRef` is dropped (or its
//!   process dies) and the mailbox is drained, the loop ends instead of waiting forever;
//! - `handle` returned `Err` or panicked: the process exits with code 1 (a crash, which
//!   the supervisor may answer with a restart), after a pipe actor has sent the error as
//!   the reply to the call it was handling.
//!
//! # Files
//!
//! `mailbox` (the kinds of mailbox, the group's shared cell, call lanes), `envelope`
//! (what travels in a mailbox), `actor_ref` ([`ActorRef`]: sending, stopping,
//! watching), `call` (request/reply: the caller's side and the actor's), `context`
//! ([`Context`]), `run` (the actor's process: its mailbox loop) and `registry`
//! ([`registered_actors`]). This file holds the traits and the errors they share.

mod actor_ref;
mod call;
mod call_async;
mod context;
mod envelope;
mod gate;
mod mailbox;
mod registry;
mod run;
#[cfg(test)]
mod tests;

pub use actor_ref::ActorRef;
pub use context::Context;
pub use mailbox::{ActorState, MailboxKind, PipeMailbox, QueueMailbox, STOP_WAIT_FOR_SENDERS};
pub use registry::{assert_serde_actor, register_actor, registered_actors, SerdeActor};

pub(crate) use envelope::{Envelope, ReplyOf};
pub(crate) use mailbox::{cell, decode_status, encode_status, lanes, Group};
pub(crate) use run::{actor_main, ActorBootRef, ExitReport};

use crate::Message;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt;

/// An actor's behaviour: the messages it takes and what it does with each.
///
/// The struct itself is the actor's state; it travels to the actor's process when the
/// actor starts (so it is `Serialize + Deserialize`, and may hold handles such as a
/// [`Queue`](crate::Queue) or another actor's [`ActorRef`]). A restart starts again from the state the
/// actor was spawned with.
///
/// # Examples
///
/// ```
/// use procactor::{process_actor, Actor, ActorError, Context};
/// use serde::{Deserialize, Serialize};
///
/// #[process_actor]
/// #[derive(Serialize, Deserialize)]
/// struct Counter { total: u64 }
///
/// impl Actor for Counter {
///     type Msg = u64;
///     type Reply = ();
///     fn handle(&mut self, n: u64, _ctx: &mut Context<Self>) -> Result<(), ActorError> {
///         self.total += n;
///         Ok(())
///     }
/// }
/// # fn main() {}
/// ```
pub trait Actor: Serialize + DeserializeOwned + Send + Sized + 'static {
    /// The messages the mailbox takes: sending anything else does not compile.
    type Msg: Message;
    /// What `handle` answers: `()` for a queue actor; the reply type of a pipe actor.
    type Reply: Message;

    /// Handles one message, in the actor's process.
    ///
    /// # Errors
    ///
    /// An `Err` ends the actor as a crash (exit code 1): its supervisor decides whether
    /// to restart it. A pipe actor's caller receives the error as the call's result.
    fn handle(
        &mut self,
        msg: Self::Msg,
        ctx: &mut Context<Self>,
    ) -> Result<Self::Reply, ActorError>;

    /// Runs once in the actor's process before the first message (after each restart).
    ///
    /// # Errors
    ///
    /// An `Err` ends the actor as a crash before it takes any message.
    fn started(&mut self, ctx: &mut Context<Self>) -> Result<(), ActorError> {
        let _ = ctx;
        Ok(())
    }

    /// Runs once when the loop ends without a crash (stopped, or every sender gone).
    fn stopped(&mut self) {}
}

/// What `#[process_actor]` implements: the actor's registered name and its kind of
/// mailbox. Write the attribute rather than implementing this by hand.
pub trait ProcessActor: Actor {
    /// The name the actor was registered under (its path in the crate).
    const NAME: &'static str;
    /// [`QueueMailbox`] (the default) or [`PipeMailbox`] (`mailbox = pipe`).
    type Mailbox: MailboxKind;
}

/// Why an actor's `handle` (or `started`) failed: a message for the supervisor's
/// events and for a pipe actor's caller.
///
/// Any `std::error::Error` converts into it, so `?` works in `handle`. (Like
/// `anyhow::Error`, it does not implement `std::error::Error` itself, which is what makes
/// that blanket conversion possible.)
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorError {
    message: String,
}

impl ActorError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        ActorError {
            message: message.into(),
        }
    }
    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Debug for ActorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ActorError({:?})", self.message)
    }
}

impl fmt::Display for ActorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: std::error::Error> From<E> for ActorError {
    fn from(e: E) -> Self {
        ActorError::new(e.to_string())
    }
}

/// A failed [`ActorRef::call`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// `handle` returned this error (the actor then crashed), or the actor could not
    /// read the request (a message whose `Deserialize` fails in the actor's process:
    /// the error says so, and the actor goes on).
    #[error("the actor failed: {0}")]
    Failed(ActorError),
    /// The actor's process died while handling this call (a panic, a signal): no reply
    /// will come.
    #[error("the actor died while handling the call")]
    Died,
    /// No reply within the timeout.
    #[error("timed out waiting for the reply")]
    Timeout,
    /// The actor has stopped for good (or was asked to stop): the request was not sent,
    /// or will not be handled.
    #[error("the actor has stopped")]
    Stopped,
    /// The mailbox refused the request (full after the timeout, or broken).
    #[error("the request could not be queued: {0}")]
    Send(String),
    /// The reply could not be read (its bytes are not a `Reply`).
    #[error("the reply could not be read: {0}")]
    Reply(String),
}

/// Ends the actor's process as a crash, with the error as the panic message (the
/// supervisor reports it; the exit code is 1).
fn crash(name: &str, what: &str, e: &ActorError) -> ! {
    panic!("actor {name}: {what} failed: {e}")
}
