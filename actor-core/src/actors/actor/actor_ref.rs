//! [`ActorRef`]: sending to an actor's mailbox, stopping it, watching it.

use super::envelope::{give_back, Envelope, ReplyOf};
use super::mailbox::{cell, decode_status, ActorState, Group, Sending};
use super::ProcessActor;
use crate::error::{joined, JoinTimeoutError, PutError, PutTimeoutError, TryPutError};
use crate::queue::Queue;
use crate::ExitStatus;
use procactor_transports::deadline::Deadline;
use procactor_transports::os;
use serde::de;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// A handle on a running actor (or on the mailbox of a pool of them): send it
/// messages, call it (pipe actors), stop it, watch it.
///
/// Cloning is cheap; a clone may travel to another process (in a child's arguments, in
/// another actor's fields, through a `Pipe`). Every `ActorRef` is a *sender*: when the
/// last one is dropped and the mailbox is drained, the actor's loop ends (see the
/// [module docs](crate::actor)).
///
/// The type parameter fixes what can be sent:
///
/// ```compile_fail,E0308
/// use procactor::{process_actor, Actor, ActorError, ActorRef, Context};
/// use serde::{Deserialize, Serialize};
///
/// #[process_actor]
/// #[derive(Serialize, Deserialize)]
/// struct Adder;
/// impl Actor for Adder {
///     type Msg = u64;
///     type Reply = ();
///     fn handle(&mut self, _: u64, _: &mut Context<Self>) -> Result<(), ActorError> { Ok(()) }
/// }
///
/// fn f(r: ActorRef<Adder>) {
///     r.send("seven"); // a &str is not the actor's `Msg`
/// }
/// # fn main() {}
/// ```
///
/// and `call` exists only for pipe actors:
///
/// ```compile_fail,E0599
/// use procactor::{process_actor, Actor, ActorError, ActorRef, Context};
/// use serde::{Deserialize, Serialize};
///
/// #[process_actor] // a queue actor
/// #[derive(Serialize, Deserialize)]
/// struct Adder;
/// impl Actor for Adder {
///     type Msg = u64;
///     type Reply = ();
///     fn handle(&mut self, _: u64, _: &mut Context<Self>) -> Result<(), ActorError> { Ok(()) }
/// }
///
/// fn f(r: ActorRef<Adder>) {
///     let _ = r.call(7); // no method `call`: it answers nothing
/// }
/// # fn main() {}
/// ```
pub struct ActorRef<A: ProcessActor> {
    pub(crate) mailbox: Queue<Envelope<A::Msg>>,
    pub(crate) replies: Vec<Queue<ReplyOf<A::Reply>>>,
    pub(crate) group: Group,
    pub(crate) index: u32,
    pub(crate) name: String,
    _a: PhantomData<fn() -> A>,
}

impl<A: ProcessActor> Clone for ActorRef<A> {
    fn clone(&self) -> Self {
        ActorRef {
            mailbox: self.mailbox.clone(),
            replies: self.replies.clone(),
            group: self.group.clone(),
            index: self.index,
            name: self.name.clone(),
            _a: PhantomData,
        }
    }
}

impl<A: ProcessActor> fmt::Debug for ActorRef<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActorRef")
            .field("actor", &A::NAME)
            .field("name", &self.name)
            .field("pid", &self.pid())
            .field("state", &self.state())
            .finish()
    }
}

#[derive(Serialize)]
struct RefWireOut<'a, M, R> {
    actor: &'a str,
    mailbox: &'a Queue<M>,
    replies: &'a Vec<Queue<R>>,
    group: &'a Group,
    index: u32,
    name: &'a str,
}

#[derive(Deserialize)]
struct RefWireIn<M, R> {
    actor: String,
    mailbox: Queue<M>,
    replies: Vec<Queue<R>>,
    group: Group,
    index: u32,
    name: String,
}

impl<A: ProcessActor> Serialize for ActorRef<A> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        RefWireOut {
            actor: A::NAME,
            mailbox: &self.mailbox,
            replies: &self.replies,
            group: &self.group,
            index: self.index,
            name: &self.name,
        }
        .serialize(s)
    }
}

impl<'de, A: ProcessActor> Deserialize<'de> for ActorRef<A> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w: RefWireIn<Envelope<A::Msg>, ReplyOf<A::Reply>> = RefWireIn::deserialize(d)?;
        if w.actor != A::NAME {
            return Err(de::Error::custom(format!(
                "an ActorRef of actor {} cannot be read as an ActorRef of {}",
                w.actor,
                A::NAME
            )));
        }
        if w.index >= w.group.actors {
            return Err(de::Error::custom("actor index out of range for its group"));
        }
        Ok(ActorRef {
            mailbox: w.mailbox,
            replies: w.replies,
            group: w.group,
            index: w.index,
            name: w.name,
            _a: PhantomData,
        })
    }
}

impl<A: ProcessActor> ActorRef<A> {
    pub(crate) fn new(
        mailbox: &Queue<Envelope<A::Msg>>,
        replies: &[Queue<ReplyOf<A::Reply>>],
        group: &Group,
        index: u32,
        name: String,
    ) -> Self {
        ActorRef {
            mailbox: mailbox.clone_open(),
            // callers only take replies: a closed handle, so that a dead actor's reply
            // queue looks disconnected
            replies: replies.to_vec(),
            group: group.clone(),
            index,
            name,
            _a: PhantomData,
        }
    }

    /// Counts this sender in (see [`Group::close_for_stop`]) unless a stop was asked
    /// for: the message back then. The guard counts it out when dropped, once its put
    /// has ended.
    pub(super) fn refuse_if_stopping(&self, msg: A::Msg) -> Result<(A::Msg, Sending<'_>), A::Msg> {
        let sending = Sending::enter(&self.group);
        // (SeqCst, with `close_for_stop`: either this sender sees the stop, or the
        // stopper sees this sender)
        if self.group.word(cell::STOPPING).load(Ordering::SeqCst) != 0 || self.group.all_ended() {
            Err(msg)
        } else {
            procactor_transports::killpoint::pause("actor.send.after_check");
            Ok((msg, sending))
        }
    }

    /// Sends a message. A queue mailbox is unbounded (see [`Queue::new`](crate::Queue::new)),
    /// so this does not wait for room.
    ///
    /// # Errors
    ///
    /// [`PutError::Closed`] once the actor was asked to stop or has ended for good,
    /// [`PutError::Encode`] when the message cannot be encoded (a handle inside it
    /// cannot travel through a mailbox: send it in the actor's fields instead), and
    /// [`PutError::Broken`]. The message comes back in every case.
    pub fn send(&self, msg: A::Msg) -> Result<(), PutError<A::Msg>> {
        let (msg, _sending) = self.refuse_if_stopping(msg).map_err(PutError::Closed)?;
        self.mailbox
            .put(Envelope::Msg(msg, self.group.meta()))
            .map_err(|e| give_back(e).unwrap_or_else(|_| PutError::Closed(unreachable_msg())))
    }

    /// As [`send`](ActorRef::send), giving up with [`PutTimeoutError::Timeout`] after
    /// `timeout` (`Duration::MAX`: never).
    ///
    /// # Errors
    ///
    /// As `send`, and `Timeout`.
    pub fn send_timeout(
        &self,
        msg: A::Msg,
        timeout: Duration,
    ) -> Result<(), PutTimeoutError<A::Msg>> {
        self.send_until(msg, Deadline::after(timeout).instant())
            .map_err(TryPutError::into_timeout)
    }

    /// As [`send`](ActorRef::send) without waiting: [`TryPutError::Full`] at once when
    /// the mailbox is full (a queue mailbox is unbounded: only a 64 GiB backlog fills it).
    ///
    /// # Errors
    ///
    /// As `send`, and `Full`.
    pub fn try_send(&self, msg: A::Msg) -> Result<(), TryPutError<A::Msg>> {
        self.send_until(msg, Some(Instant::now()))
    }

    /// `Full`: the deadline passed.
    fn send_until(
        &self,
        msg: A::Msg,
        deadline: Option<Instant>,
    ) -> Result<(), TryPutError<A::Msg>> {
        let (msg, _sending) = self.refuse_if_stopping(msg).map_err(TryPutError::Closed)?;
        self.mailbox
            .put_until(Envelope::Msg(msg, self.group.meta()), deadline)
            .map_err(|e| give_back(e).unwrap_or_else(|_| TryPutError::Closed(unreachable_msg())))
    }

    /// The actor's registered name and this actor's name (`"Consumer"`, `"worker-2"`…).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The pid of the actor's current process, `None` while it is not running.
    pub fn pid(&self) -> Option<u32> {
        match self.group.state(self.index) {
            ActorState::Running | ActorState::Starting => self.group.pid(self.index),
            _ => None,
        }
    }

    /// Where the actor is in its life.
    pub fn state(&self) -> ActorState {
        self.group.state(self.index)
    }

    /// Whether the actor's process is running now.
    pub fn is_alive(&self) -> bool {
        self.pid().is_some_and(os::process_alive)
    }

    /// How the actor's last process ended, `None` if none has ended yet.
    pub fn exitcode(&self) -> Option<ExitStatus> {
        decode_status(
            self.group
                .actor_word(self.index, cell::EXIT)
                .load(Ordering::Acquire),
        )
    }

    /// How many times the actor has been restarted.
    pub fn restarts(&self) -> u64 {
        self.group
            .actor_word(self.index, cell::RESTARTS)
            .load(Ordering::Acquire)
    }

    /// Messages waiting in the mailbox.
    pub fn mailbox_len(&self) -> usize {
        self.mailbox.len()
    }

    /// Asks the actor to stop gracefully: later sends are refused, the messages queued
    /// before the request are still handled, then [`Actor::stopped`](crate::Actor::stopped) runs and the process
    /// exits. Every `send` that returned `Ok` is handled, even one racing with this call
    /// (from any process): the stop request is queued only after the sends under way
    /// have finished putting (waiting for them at most [`STOP_WAIT_FOR_SENDERS`](crate::STOP_WAIT_FOR_SENDERS): a
    /// sender killed in the middle of its put is not waited for longer). The supervisor does not restart an actor stopped this way. Returns at once
    /// (use [`join`](ActorRef::join) to wait). For a pool, every actor of the pool stops.
    ///
    /// # Errors
    ///
    /// The stop request could not be queued (the mailbox is broken).
    pub fn stop(&self) -> Result<(), PutError<()>> {
        if self.group.all_ended() {
            return Ok(());
        }
        self.group.close_for_stop();
        for _ in 0..self.group.actors {
            match self.mailbox.put(Envelope::Stop) {
                Ok(()) => {}
                Err(e) => {
                    return Err(match give_back(e) {
                        Err(e) => e,
                        Ok(e) => e.map(|_| ()),
                    })
                }
            }
        }
        Ok(())
    }

    /// Sends `SIGTERM` to the actor's process (a crash: the supervisor may restart it).
    /// A no-op when it is not running.
    ///
    /// # Errors
    ///
    /// The OS refused the signal.
    pub fn terminate(&self) -> Result<(), crate::Error> {
        self.signal(os::SIGTERM)
    }

    /// Sends `SIGKILL` to the actor's process (a crash: the supervisor may restart it).
    /// A no-op when it is not running.
    ///
    /// # Errors
    ///
    /// The OS refused the signal.
    pub fn kill(&self) -> Result<(), crate::Error> {
        self.signal(os::SIGKILL)
    }

    fn signal(&self, sig: i32) -> Result<(), crate::Error> {
        if let Some(pid) = self.pid() {
            os::signal_pid(pid, sig)?;
        }
        Ok(())
    }

    /// Waits until the actor (every actor of a pool) has ended for good: stopped, ended
    /// without being restarted, given up on by its supervisor, or gone with its
    /// supervisor's process (checked every 100 ms).
    pub fn join(&self) {
        while !self.join_until(Instant::now().checked_add(Duration::from_secs(3600))) {}
    }

    /// As [`join`](ActorRef::join), at most `timeout` (`Duration::MAX`: for ever).
    ///
    /// # Errors
    ///
    /// [`JoinTimeoutError`] when the actor had not ended by then (the crate-wide
    /// `join_timeout` convention: `Ok` with what `join` returns, see
    /// [`error`](crate::error)).
    pub fn join_timeout(&self, timeout: Duration) -> Result<(), JoinTimeoutError> {
        joined(self.join_until(Deadline::after(timeout).instant()))
    }

    /// Whether the actor ended before `until` (`None`: waits for it).
    fn join_until(&self, until: Option<Instant>) -> bool {
        loop {
            if self.group.over() {
                return true;
            }
            let slice = Duration::from_millis(100);
            let wait = match until {
                Some(u) => {
                    let left = u.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return false;
                    }
                    left.min(slice)
                }
                None => slice,
            };
            if self.group.ended.wait_timeout(wait) {
                return true;
            }
        }
    }
}

// A `Stop` envelope never goes through `send_deadline`, so `give_back` always finds the
// message there; this only gives the type checker a value for the impossible branch.
#[cold]
fn unreachable_msg<M>() -> M {
    unreachable!("a message envelope always carries the sender's message")
}
