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
//! A mailbox is a [`Queue`] of envelopes (a message, a call, or a stop request) owned by
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

use crate::error::{joined, GetError, JoinTimeoutError, PutError, PutTimeoutError, TryPutError};
use crate::queue::{await_reply, NoReply, Queue};
use crate::shared::RawArray;
use crate::sync::{Event, Lock};
use crate::{ExitStatus, Message};
use procactor_transports::deadline::Deadline;
use procactor_transports::os;
use serde::de::{self, DeserializeOwned, SeqAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// An actor's behaviour: the messages it takes and what it does with each.
///
/// The struct itself is the actor's state; it travels to the actor's process when the
/// actor starts (so it is `Serialize + Deserialize`, and may hold handles such as a
/// [`Queue`] or another actor's [`ActorRef`]). A restart starts again from the state the
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

mod sealed {
    pub trait Sealed {}
}

/// The two kinds of mailbox (sealed).
pub trait MailboxKind: sealed::Sealed + Send + Sync + 'static {
    /// Whether senders wait for a reply.
    const REPLIES: bool;
}

/// A queue mailbox: messages in, nothing back (`send`).
#[derive(Debug)]
pub enum QueueMailbox {}
/// A request/reply mailbox: `call` sends a request and waits for its reply.
#[derive(Debug)]
pub enum PipeMailbox {}
impl sealed::Sealed for QueueMailbox {}
impl sealed::Sealed for PipeMailbox {}
impl MailboxKind for QueueMailbox {
    const REPLIES: bool = false;
}
impl MailboxKind for PipeMailbox {
    const REPLIES: bool = true;
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

// ------------------------------------------------------------------ registry

static REGISTRY: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());

/// Records an actor type's name; `#[process_actor]` calls it from a load-time
/// constructor of the binary (`.init_array`), so every actor linked into a program is
/// known before `main` runs. Not for direct use.
#[doc(hidden)]
pub fn register_actor(name: &'static str) {
    let mut r = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    if !r.contains(&name) {
        r.push(name);
    }
}

/// The names of the actor types `#[process_actor]` registered in this binary
/// (non-generic ones: a generic actor has no single name to register before `main`).
///
/// # Examples
///
/// ```
/// use procactor::{process_actor, Actor, ActorError, Context, ProcessActor};
/// use serde::{Deserialize, Serialize};
///
/// #[process_actor]
/// #[derive(Serialize, Deserialize)]
/// struct Echo;
/// impl Actor for Echo {
///     type Msg = String;
///     type Reply = ();
///     fn handle(&mut self, _: String, _: &mut Context<Self>) -> Result<(), ActorError> { Ok(()) }
/// }
///
/// fn main() {
///     assert!(procactor::registered_actors().contains(&Echo::NAME));
///     assert!(Echo::NAME.ends_with("::Echo"));
/// }
/// ```
pub fn registered_actors() -> Vec<&'static str> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Implemented for every type that is `Serialize + DeserializeOwned`; `#[process_actor]`
/// asserts it so that a struct without serde gets one clear error at its name.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`{Self}` must be Serialize + Deserialize to be a process actor",
    label = "add #[derive(serde::Serialize, serde::Deserialize)] to this struct",
    note = "an actor's state travels to its process when it starts"
)]
pub trait SerdeActor {}
impl<T: Serialize + DeserializeOwned> SerdeActor for T {}

#[doc(hidden)]
pub fn assert_serde_actor<T: SerdeActor + ?Sized>() {}

// ------------------------------------------------------------------ envelope

/// What travels in a mailbox: a message, a call (request number + message), or a stop
/// request. Encoded as a CBOR array: `[0, message]`, `[1, number, bytes]`, `[2]`, where
/// a call's message is CBOR inside a byte string: its kind and number are read before
/// the message, so a call whose message cannot be read is still answered (with an
/// error) instead of leaving its caller without a reply.
pub(crate) enum Envelope<M> {
    Msg(M),
    Call(u64, M),
    Stop,
    /// (decoding only) a call whose message could not be read, and why.
    BadCall(u64, String),
}

/// A byte string (a call's encoded message).
struct AsBytes<'a>(&'a [u8]);

impl Serialize for AsBytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

/// A call's message, decoded straight from its byte string (borrowed from the frame by
/// the fast decoder, lent from a scratch buffer by ciborium: no copy either way); a
/// message that cannot be read is kept as its error.
struct CallMsg<M>(Result<M, String>);

impl<'de, M: DeserializeOwned> Deserialize<'de> for CallMsg<M> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct B<M>(PhantomData<M>);
        impl<'de, M: DeserializeOwned> Visitor<'de> for B<M> {
            type Value = CallMsg<M>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<CallMsg<M>, E> {
                Ok(CallMsg(
                    crate::codec::decode::<M>(v, Vec::new()).map_err(|e| e.to_string()),
                ))
            }
        }
        d.deserialize_bytes(B(PhantomData))
    }
}

thread_local! {
    /// Where a call's message is encoded before it goes into its envelope.
    static CALL_SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A scratch buffer grown past this by a large message is given back.
const CALL_SCRATCH_KEEP: usize = 64 * 1024;

/// `[KIND_CALL, n, bytes of m]`, `m` encoded in `buf` first.
fn serialize_call<S: Serializer, M: Serialize>(
    s: S,
    n: u64,
    m: &M,
    buf: &mut Vec<u8>,
) -> Result<S::Ok, S::Error> {
    crate::codec::encode(m, buf, None).map_err(|e| serde::ser::Error::custom(e.to_string()))?;
    let mut t = s.serialize_tuple(3)?;
    t.serialize_element(&KIND_CALL)?;
    t.serialize_element(&n)?;
    t.serialize_element(&AsBytes(buf))?;
    t.end()
}

const KIND_MSG: u8 = 0;
const KIND_CALL: u8 = 1;
const KIND_STOP: u8 = 2;

impl<M: Serialize> Serialize for Envelope<M> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Envelope::Msg(m) => {
                let mut t = s.serialize_tuple(2)?;
                t.serialize_element(&KIND_MSG)?;
                t.serialize_element(m)?;
                t.end()
            }
            Envelope::Call(n, m) => {
                // the message as a byte string of its own, so that a receiver that cannot
                // read it still has the call's number (and answers it with an error);
                // encoded in a per-thread scratch buffer: no allocation per call
                CALL_SCRATCH.with(|cell| match cell.try_borrow_mut() {
                    Ok(mut buf) => {
                        buf.clear();
                        let r = serialize_call(s, *n, m, &mut buf);
                        if buf.capacity() > CALL_SCRATCH_KEEP {
                            *buf = Vec::new();
                        }
                        r
                    }
                    // (a call envelope encoded inside another one's message)
                    Err(_) => serialize_call(s, *n, m, &mut Vec::new()),
                })
            }
            Envelope::Stop => {
                let mut t = s.serialize_tuple(1)?;
                t.serialize_element(&KIND_STOP)?;
                t.end()
            }
            Envelope::BadCall(..) => Err(serde::ser::Error::custom(
                "an undecodable call is not sent again",
            )),
        }
    }
}

impl<'de, M: DeserializeOwned> Deserialize<'de> for Envelope<M> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<M>(PhantomData<M>);
        impl<'de, M: DeserializeOwned> Visitor<'de> for V<M> {
            type Value = Envelope<M>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mailbox envelope [0, message], [1, number, message] or [2]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                let kind: u8 = a
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                match kind {
                    KIND_MSG => {
                        let m = a
                            .next_element()?
                            .ok_or_else(|| de::Error::invalid_length(1, &self))?;
                        Ok(Envelope::Msg(m))
                    }
                    KIND_CALL => {
                        let n = a
                            .next_element()?
                            .ok_or_else(|| de::Error::invalid_length(1, &self))?;
                        let CallMsg(m) = a
                            .next_element()?
                            .ok_or_else(|| de::Error::invalid_length(2, &self))?;
                        // the number is known: a message that cannot be read is answered
                        Ok(match m {
                            Ok(m) => Envelope::Call(n, m),
                            Err(e) => Envelope::BadCall(n, e),
                        })
                    }
                    KIND_STOP => Ok(Envelope::Stop),
                    k => Err(de::Error::custom(format!(
                        "invalid mailbox envelope (kind {k})"
                    ))),
                }
            }
        }
        d.deserialize_seq(V(PhantomData))
    }
}

impl<M> Envelope<M> {
    /// The sender's message back out of a refused envelope (`Stop` carries none).
    fn into_msg(self) -> Option<M> {
        match self {
            Envelope::Msg(m) | Envelope::Call(_, m) => Some(m),
            Envelope::Stop | Envelope::BadCall(..) => None,
        }
    }
}

/// A refused message/call envelope's error, with the caller's message given back
/// (`Err` with `()` for an envelope that carries none).
fn give_back<M, E: GiveBack<Envelope<M>>>(e: E) -> Result<E::With<M>, E::With<()>> {
    e.give_back(Envelope::into_msg)
}

/// The three put errors' `filter_map`, for [`give_back`].
trait GiveBack<T> {
    type With<U>;
    fn give_back<U>(self, f: impl FnOnce(T) -> Option<U>) -> Result<Self::With<U>, Self::With<()>>;
}

macro_rules! give_back_for {
    ($($e:ident),*) => {$(
        impl<T> GiveBack<T> for $e<T> {
            type With<U> = $e<U>;
            fn give_back<U>(
                self,
                f: impl FnOnce(T) -> Option<U>,
            ) -> Result<$e<U>, $e<()>> {
                self.filter_map(f)
            }
        }
    )*};
}
give_back_for!(PutError, TryPutError, PutTimeoutError);

/// A reply: the request's number and the handler's result.
pub(crate) type ReplyOf<R> = (u64, Result<R, ActorError>);

// ------------------------------------------------------------------ shared cell

/// Words of a mailbox group's shared cell (a `RawArray<u64>`): a header, then one block
/// per actor sharing the mailbox.
pub(crate) mod cell {
    /// Next call number (callers take one with fetch_add).
    pub(crate) const NEXT_CALL: usize = 0;
    /// The number of the last call lost with a dying actor (the supervisor writes it).
    pub(crate) const LOST_CALL: usize = 1;
    /// 1 once `stop()` was requested: sends are refused from then on.
    pub(crate) const STOPPING: usize = 2;
    /// How many of the group's actors have ended for good.
    pub(crate) const ENDED: usize = 3;
    /// The pid of the process supervising the group (0: none yet).
    pub(crate) const SUPERVISOR: usize = 4;
    /// How many of the group's processes have ended (the supervisor counts them): a
    /// caller whose call vanished looks whether one ended since it sent it.
    pub(crate) const EXITS: usize = 5;
    /// Senders between their `stopping` check and the end of their put (see
    /// `ActorRef::stop`).
    pub(crate) const SENDING: usize = 6;
    /// (a whole cache line: the per-actor words the actor writes on every message do not
    /// share a line with the header words every sender reads)
    pub(crate) const HEADER: usize = 8;

    /// Per actor: current pid (0 when not running).
    pub(crate) const PID: usize = 0;
    /// Per actor: [`super::ActorState`] as a number.
    pub(crate) const STATE: usize = 1;
    /// Per actor: restarts so far.
    pub(crate) const RESTARTS: usize = 2;
    /// Per actor: messages taken by the current incarnation.
    pub(crate) const TAKEN: usize = 3;
    /// Per actor: the call being handled (0: none).
    pub(crate) const IN_CALL: usize = 4;
    /// Per actor: the last exit status (see `encode_status`), 0 = none yet.
    pub(crate) const EXIT: usize = 5;
    /// Per call lane (lane `k` uses actor block `k`'s word): the number of the last call
    /// of this lane an actor took.
    pub(crate) const LANE_TAKEN: usize = 6;
    /// Per call lane: who took it, `member << 32 | pid` (written before `LANE_TAKEN`).
    pub(crate) const LANE_TAKER: usize = 7;
    pub(crate) const BLOCK: usize = 8;

    pub(crate) fn len(actors: usize) -> usize {
        HEADER + BLOCK * actors
    }
}

/// Where an actor is in its life, as [`ActorRef`] and the supervisor's tree show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ActorState {
    /// Its process is starting (or waiting to be started).
    Starting,
    /// Running its loop.
    Running,
    /// Ended, and its supervisor is about to start it again.
    Restarting,
    /// Ended for good (stopped, normal exit not restarted, or given up on).
    Ended,
}

impl ActorState {
    pub(crate) fn to_word(self) -> u64 {
        match self {
            ActorState::Starting => 0,
            ActorState::Running => 1,
            ActorState::Restarting => 2,
            ActorState::Ended => 3,
        }
    }
    pub(crate) fn from_word(w: u64) -> ActorState {
        match w {
            1 => ActorState::Running,
            2 => ActorState::Restarting,
            3 => ActorState::Ended,
            _ => ActorState::Starting,
        }
    }
}

impl fmt::Display for ActorState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ActorState::Starting => "starting",
            ActorState::Running => "running",
            ActorState::Restarting => "restarting",
            ActorState::Ended => "ended",
        })
    }
}

pub(crate) fn encode_status(s: ExitStatus) -> u64 {
    match s {
        ExitStatus::Code(c) => (1 << 32) | u64::from(c as u32),
        ExitStatus::Signal(n) => (2 << 32) | u64::from(n as u32),
    }
}

pub(crate) fn decode_status(w: u64) -> Option<ExitStatus> {
    let v = (w & 0xffff_ffff) as u32 as i32;
    match w >> 32 {
        1 => Some(ExitStatus::Code(v)),
        2 => Some(ExitStatus::Signal(v)),
        _ => None,
    }
}

/// The shared parts of a mailbox: cell, end event and (pipe actors) the call lock.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Group {
    pub(crate) cell: RawArray<u64>,
    pub(crate) ended: Event,
    /// One lock per call lane (pipe actors: one lane per member, at most
    /// [`MAX_LANES`]): a caller holds a lane for its call, and the lane's reply queue
    /// carries its reply.
    pub(crate) call_locks: Vec<Lock>,
    pub(crate) actors: u32,
}

/// How long [`ActorRef::stop`] waits at most for the sends under way (counted in the
/// mailbox's shared cell) to finish before it queues the stop request.
pub const STOP_WAIT_FOR_SENDERS: Duration = Duration::from_secs(1);

/// A sender between its `stopping` check and the end of its put (counted in the
/// group's `SENDING` word).
struct Sending<'a>(&'a AtomicU64);

impl<'a> Sending<'a> {
    fn enter(g: &'a Group) -> Sending<'a> {
        let w = g.word(cell::SENDING);
        w.fetch_add(1, Ordering::SeqCst);
        Sending(w)
    }
}

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// At most this many calls to one pool of pipe actors run at once (a pool of more
/// members shares the lanes); each lane is a lock and a reply queue.
pub(crate) const MAX_LANES: usize = 64;

/// How many call lanes a group of `actors` has: one per member for pipe actors.
pub(crate) fn lanes(actors: usize, calls: bool) -> usize {
    if calls {
        actors.clamp(1, MAX_LANES)
    } else {
        0
    }
}

/// A call number carries its lane in its low byte.
fn lane_of(n: u64) -> usize {
    (n & 0xff) as usize
}

impl Group {
    pub(crate) fn new(actors: usize, calls: bool) -> Result<Group, crate::Error> {
        Ok(Group {
            cell: RawArray::zeroed(cell::len(actors))?,
            ended: Event::new()?,
            call_locks: (0..lanes(actors, calls))
                .map(|_| Lock::new())
                .collect::<Result<_, _>>()?,
            actors: actors as u32,
        })
    }

    pub(crate) fn word(&self, i: usize) -> &AtomicU64 {
        // the cell is created with `cell::len(actors)` words and every index used is a
        // constant below that; a handle decoded from a hostile peer could be shorter,
        // in which case a spare word stands in
        static SPARE: AtomicU64 = AtomicU64::new(0);
        self.cell.atomic_u64(i).unwrap_or(&SPARE)
    }

    pub(crate) fn actor_word(&self, actor: u32, w: usize) -> &AtomicU64 {
        self.word(cell::HEADER + actor as usize * cell::BLOCK + w)
    }

    pub(crate) fn state(&self, actor: u32) -> ActorState {
        ActorState::from_word(self.actor_word(actor, cell::STATE).load(Ordering::Acquire))
    }

    pub(crate) fn set_state(&self, actor: u32, s: ActorState) {
        self.actor_word(actor, cell::STATE)
            .store(s.to_word(), Ordering::Release);
    }

    pub(crate) fn pid(&self, actor: u32) -> Option<u32> {
        match self.actor_word(actor, cell::PID).load(Ordering::Acquire) {
            0 => None,
            p => u32::try_from(p).ok(),
        }
    }

    /// Marks one actor as ended for good; the last one sets the end event.
    pub(crate) fn mark_ended(&self, actor: u32) {
        if self.state(actor) == ActorState::Ended {
            return;
        }
        self.set_state(actor, ActorState::Ended);
        self.actor_word(actor, cell::PID)
            .store(0, Ordering::Release);
        let n = self.word(cell::ENDED).fetch_add(1, Ordering::AcqRel) + 1;
        if n >= u64::from(self.actors) {
            self.ended.set();
        }
    }

    /// Undoes [`mark_ended`](Group::mark_ended) for an actor started again (a unit
    /// whose child supervisor gave up and was itself restarted).
    pub(crate) fn reopen(&self, actor: u32) {
        if self.state(actor) == ActorState::Ended {
            self.set_state(actor, ActorState::Restarting);
            self.word(cell::ENDED).fetch_sub(1, Ordering::AcqRel);
            self.ended.clear();
        }
    }

    /// Refuses sends from now on and waits (at most [`STOP_WAIT_FOR_SENDERS`]) until
    /// the senders that got past their check have put their message: a stop request
    /// queued after this comes after every message whose send returned `Ok`.
    pub(crate) fn close_for_stop(&self) {
        self.word(cell::STOPPING).store(1, Ordering::SeqCst);
        let sending = self.word(cell::SENDING);
        let until = Instant::now() + STOP_WAIT_FOR_SENDERS;
        let mut spins = 0u32;
        while sending.load(Ordering::SeqCst) != 0 && Instant::now() < until {
            spins += 1;
            if spins < 100 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }

    pub(crate) fn all_ended(&self) -> bool {
        self.ended.is_set()
    }

    /// Whether the group's supervisor process is gone: its actors are gone with it
    /// (parent-death signal) and nobody will mark them ended.
    pub(crate) fn orphaned(&self) -> bool {
        match self.word(cell::SUPERVISOR).load(Ordering::Acquire) {
            0 => false,
            p => u32::try_from(p).is_ok_and(|p| !os::process_alive(p)),
        }
    }

    /// Ended for good, or its supervisor is gone.
    pub(crate) fn over(&self) -> bool {
        self.all_ended() || self.orphaned()
    }
}

// ------------------------------------------------------------------ ActorRef

/// A handle on a running actor (or on the mailbox of a pool of them): send it
/// messages, call it (pipe actors), stop it, watch it.
///
/// Cloning is cheap; a clone may travel to another process (in a child's arguments, in
/// another actor's fields, through a `Pipe`). Every `ActorRef` is a *sender*: when the
/// last one is dropped and the mailbox is drained, the actor's loop ends (see the
/// [module docs](self)).
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
    fn refuse_if_stopping(&self, msg: A::Msg) -> Result<(A::Msg, Sending<'_>), A::Msg> {
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
            .put(Envelope::Msg(msg))
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
            .put_until(Envelope::Msg(msg), deadline)
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
    /// before the request are still handled, then [`Actor::stopped`] runs and the process
    /// exits. Every `send` that returned `Ok` is handled, even one racing with this call
    /// (from any process): the stop request is queued only after the sends under way
    /// have finished putting (waiting for them at most [`STOP_WAIT_FOR_SENDERS`]: a
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
        let put = self.mailbox.put_until(Envelope::Call(n, msg), deadline);
        drop(sending);
        if let Err(e) = put {
            return Err(match e {
                TryPutError::Full(_) => CallError::Timeout,
                TryPutError::Closed(_) => CallError::Stopped,
                e => CallError::Send(e.to_string()),
            });
        }
        // every few milliseconds without the reply: was the request lost with a dying
        // actor, or has the actor ended (a reply may still have come just before)?
        let lane_word = |w| self.group.actor_word(lane as u32, w);
        let mut vanished_since: Option<Instant> = None;
        let mut check = || {
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
        };
        match await_reply(replies, n, deadline, &mut check) {
            Ok(r) => r.map_err(CallError::Failed),
            Err(NoReply::Stopped(outcome)) => outcome,
            Err(NoReply::Timeout) => Err(CallError::Timeout),
            Err(NoReply::Decode(e)) => Err(CallError::Reply(e.to_string())),
            Err(NoReply::Broken) => Err(CallError::Send("the reply channel is broken".into())),
        }
    }
}

/// How long a call must look lost (taken from the mailbox, recorded by nobody, a process
/// of its group ended) before its caller concludes that the taker died: a live actor
/// records a call microseconds after taking it.
const VANISHED: Duration = Duration::from_millis(50);

// ------------------------------------------------------------------ Context

/// What an actor knows about itself while it runs: its name, a reference to itself, and
/// a way to stop after the current message.
pub struct Context<A: Actor> {
    name: String,
    mailbox: Queue<Envelope<A::Msg>>,
    replies: Vec<Queue<ReplyOf<A::Reply>>>,
    group: Group,
    index: u32,
    stop: bool,
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

// ------------------------------------------------------------------ the actor's process

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
    group.set_state(index, ActorState::Running);
    let taken = group.actor_word(index, cell::TAKEN);
    let in_call = group.actor_word(index, cell::IN_CALL);
    taken.store(0, Ordering::Relaxed);
    let mut ctx = Context {
        name,
        mailbox,
        replies,
        group: group.clone(),
        index,
        stop: false,
    };
    let replies = open_replies;
    if let Err(e) = actor.started(&mut ctx) {
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
        match env {
            Envelope::Msg(m) => {
                if let Err(e) = actor.handle(m, &mut ctx) {
                    crash(&ctx.name, "handle", &e);
                }
            }
            Envelope::Call(n, m) => {
                answer_call(&mut actor, &mut ctx, in_call, &replies, n, Ok(m));
            }
            Envelope::BadCall(n, e) => {
                answer_call(&mut actor, &mut ctx, in_call, &replies, n, Err(e));
            }
            Envelope::Stop => {
                // graceful: what was queued before the stop request is still handled
                // (and what raced with it), then the loop ends
                while let Ok(env) = ctx.mailbox.try_get() {
                    match env {
                        Envelope::Msg(m) => {
                            if let Err(e) = actor.handle(m, &mut ctx) {
                                crash(&ctx.name, "handle", &e);
                            }
                        }
                        Envelope::Call(n, m) => {
                            answer_call(&mut actor, &mut ctx, in_call, &replies, n, Ok(m));
                        }
                        Envelope::BadCall(n, e) => {
                            answer_call(&mut actor, &mut ctx, in_call, &replies, n, Err(e));
                        }
                        // another pool member's stop request: put it back for it
                        Envelope::Stop => {
                            let _ = ctx.mailbox.clone_open().put(Envelope::Stop);
                            break;
                        }
                    }
                }
                break ExitReport::Stopped;
            }
        }
    };
    actor.stopped();
    report
}

/// How long an actor tries to put a reply (a reply queue is unbounded: only a caller
/// that stopped reading a huge backlog of replies could make it wait): a late reply to
/// a caller that gave up never holds the actor longer.
const REPLY_PUT_LIMIT: Duration = Duration::from_secs(1);

/// Handles call `n` (or answers a call whose message could not be read with an error,
/// without crashing): records it as taken on its lane and in flight (so a death here
/// is reported to the caller as `Died`), sends the reply on the lane's reply queue, and
/// ends the actor as a crash if `handle` failed.
fn answer_call<A: ProcessActor>(
    actor: &mut A,
    ctx: &mut Context<A>,
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
            let r = actor.handle(m, ctx);
            let failed = r.as_ref().err().cloned();
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

/// Ends the actor's process as a crash, with the error as the panic message (the
/// supervisor reports it; the exit code is 1).
fn crash(name: &str, what: &str, e: &ActorError) -> ! {
    panic!("actor {name}: {what} failed: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_and_bad_kinds_are_errors() {
        let mut buf = Vec::new();
        crate::codec::encode(&Envelope::Call(7, "x".to_string()), &mut buf, None).unwrap();
        match crate::codec::decode::<Envelope<String>>(&buf, Vec::new()).unwrap() {
            Envelope::Call(7, s) => assert_eq!(s, "x"),
            _ => panic!("wrong envelope"),
        }
        buf.clear();
        crate::codec::encode(&Envelope::<String>::Stop, &mut buf, None).unwrap();
        assert!(matches!(
            crate::codec::decode::<Envelope<String>>(&buf, Vec::new()).unwrap(),
            Envelope::Stop
        ));
        buf.clear();
        crate::codec::encode(&(9u8, 1u32), &mut buf, None).unwrap();
        assert!(crate::codec::decode::<Envelope<u32>>(&buf, Vec::new()).is_err());
        buf.clear();
        // a message envelope without its message, or with one too many items
        crate::codec::encode(&(KIND_MSG,), &mut buf, None).unwrap();
        assert!(crate::codec::decode::<Envelope<u32>>(&buf, Vec::new()).is_err());
        buf.clear();
        crate::codec::encode(&(KIND_MSG, 1u32, 2u32), &mut buf, None).unwrap();
        assert!(crate::codec::decode::<Envelope<u32>>(&buf, Vec::new()).is_err());
        buf.clear();
        crate::codec::encode(&Envelope::Msg(7u32), &mut buf, None).unwrap();
        assert_eq!(buf.len(), 3, "[0, 7]: two items, three bytes");
        // a call whose message is not the actor's type: its number is still read
        buf.clear();
        crate::codec::encode(
            &Envelope::Call(9, "not a number".to_string()),
            &mut buf,
            None,
        )
        .unwrap();
        match crate::codec::decode::<Envelope<u32>>(&buf, Vec::new()).unwrap() {
            Envelope::BadCall(9, why) => assert!(why.contains("u32"), "{why}"),
            _ => panic!("expected BadCall(9, ..)"),
        }
    }

    #[test]
    fn exit_status_words_round_trip() {
        for s in [
            ExitStatus::Code(0),
            ExitStatus::Code(1),
            ExitStatus::Code(-1),
            ExitStatus::Signal(9),
        ] {
            assert_eq!(decode_status(encode_status(s)), Some(s));
        }
        assert_eq!(decode_status(0), None);
    }

    #[test]
    fn give_back_returns_the_message() {
        let e = give_back(TryPutError::Full(Envelope::Msg(5u32))).unwrap();
        assert!(e.is_full());
        assert_eq!(e.into_inner(), 5);
        assert!(give_back(PutError::Closed(Envelope::<u32>::Stop)).is_err());
        let e = give_back(PutTimeoutError::Timeout(Envelope::Call(1, 6u32))).unwrap();
        assert!(e.is_timeout());
        assert_eq!(e.into_inner(), 6);
    }

    #[test]
    fn actor_error_converts_from_std_errors() {
        let e: ActorError = std::io::Error::other("disk on fire").into();
        assert_eq!(e.message(), "disk on fire");
        assert_eq!(e.to_string(), "disk on fire");
        assert_eq!(format!("{e:?}"), "ActorError(\"disk on fire\")");
    }

    #[derive(Serialize, Deserialize)]
    struct One;
    #[derive(Serialize, Deserialize)]
    struct Two;
    impl Actor for One {
        type Msg = u32;
        type Reply = ();
        fn handle(&mut self, _: u32, _: &mut Context<Self>) -> Result<(), ActorError> {
            Ok(())
        }
    }
    impl Actor for Two {
        type Msg = u32;
        type Reply = ();
        fn handle(&mut self, _: u32, _: &mut Context<Self>) -> Result<(), ActorError> {
            Ok(())
        }
    }
    impl ProcessActor for One {
        const NAME: &'static str = "tests::One";
        type Mailbox = QueueMailbox;
    }
    impl ProcessActor for Two {
        const NAME: &'static str = "tests::Two";
        type Mailbox = QueueMailbox;
    }

    fn one_ref() -> ActorRef<One> {
        let q: Queue<Envelope<u32>> = Queue::new().unwrap();
        q.close();
        ActorRef::new(
            &q,
            &Vec::new(),
            &Group::new(1, false).unwrap(),
            0,
            "one".into(),
        )
    }

    #[test]
    fn a_ref_reads_back_as_its_own_actor_only() {
        let r = one_ref();
        let back: ActorRef<One> = crate::codec::round_trip(&r).unwrap();
        assert_eq!(back.name(), "one");
        back.send(5).unwrap();
        assert_eq!(r.mailbox_len(), 1);
        let e = crate::codec::round_trip::<ActorRef<Two>>(&r).unwrap_err();
        assert!(
            e.contains("cannot be read as an ActorRef of tests::Two"),
            "{e}"
        );
    }

    #[test]
    fn sends_are_refused_once_stopping_or_ended() {
        let r = one_ref();
        r.send(1).unwrap();
        r.stop().unwrap();
        assert_eq!(r.send(2).unwrap_err().into_inner(), 2);
        assert!(r.try_send(3).unwrap_err().is_closed());
        // the stop request is queued behind the message
        assert_eq!(r.mailbox_len(), 2);
        let r2 = one_ref();
        r2.group.mark_ended(0);
        assert!(r2.send(4).unwrap_err().is_closed());
        assert_eq!(r2.join_timeout(Duration::from_millis(1)), Ok(()));
        assert_eq!(r2.pid(), None);
        assert!(!r2.is_alive());
        assert_eq!(r2.exitcode(), None);
    }

    #[test]
    fn group_marks_end_once_per_actor() {
        let g = Group::new(2, false).unwrap();
        assert!(!g.all_ended());
        g.mark_ended(0);
        g.mark_ended(0);
        assert!(!g.all_ended());
        g.mark_ended(1);
        assert!(g.all_ended());
        assert_eq!(g.state(1), ActorState::Ended);
        // a member started again (its child supervisor was restarted) reopens it
        g.reopen(1);
        assert!(!g.all_ended());
        assert_eq!(g.state(1), ActorState::Restarting);
        g.reopen(1);
        g.mark_ended(1);
        assert!(g.all_ended());
    }
}
