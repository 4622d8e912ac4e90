//! What a child unit is, whatever the actor type: one actor, a pool of actors sharing a
//! mailbox, or (see `nested`) a child supervisor; and how a unit travels to a child
//! supervisor's process.

use super::spec::ChildSpec;
use crate::actor::{actor_main, ActorBootRef, Envelope, ExitReport, Group, ReplyOf};
use crate::codec::Encoded;
use crate::error::{EncodeError, SpawnError};
use crate::process::{start_encoded_via, Process};
use crate::queue::Queue;
use crate::runtime::{self, StartMethod};
use crate::{ActorRef, MailboxKind, ProcessActor};
use procactor_transports::os;
use procactor_transports::target::{self, TargetRef};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How a supervisor starts its children: the start method, and the zygote that forks
/// them when it is `Fork`.
#[derive(Clone, Copy)]
pub(super) struct Via<'a> {
    pub(super) method: Option<StartMethod>,
    pub(super) zygote: Option<&'a crate::forkserver::Zygote>,
}

/// A child unit as the supervisor handles it, whatever the actor type: one actor, a pool
/// of actors sharing a mailbox (one member per process), or a child supervisor.
pub(super) trait Unit: Send + Sync {
    fn members(&self) -> u32;
    fn group(&self) -> &Group;
    fn member_name(&self, member: u32) -> String;
    fn start(&self, member: u32, via: Via<'_>) -> Result<Process<ExitReport>, SpawnError>;
    fn mailbox_len(&self) -> usize;
    /// After a member's death: frees the mailbox's reader lock if the dead process held
    /// it (it died waiting for a message), so the next incarnation starts at once.
    fn recover(&self);
    /// Graceful end: stop requests through the mailbox (actors), a shutdown request
    /// (supervisors).
    fn request_stop(&self);
    /// A member restarted while a graceful stop was under way: ask it to stop too.
    fn resume_stop(&self);
    /// Asks one running member to end now (before the kill that follows a timeout).
    fn ask_to_end(&self, pid: u32);
    fn is_supervisor(&self) -> bool;
    /// The unit's name (a pool's, not its members').
    fn base_name(&self) -> &str;
    /// A child supervisor's own children (`None` for actors).
    fn subtree(&self) -> Option<SubTree<'_>>;
    /// Encodes the unit for a child supervisor's process.
    fn wire(&self) -> Result<UnitWire, EncodeError>;
}

/// What a child supervisor's unit shows of its own children.
pub(super) struct SubTree<'a> {
    pub(super) name: &'a str,
    pub(super) strategy: String,
    pub(super) children: Vec<Arc<dyn Unit>>,
}

/// The parts of a unit of actors of type `A`.
#[derive(Serialize, Deserialize)]
pub(super) struct ActorUnit<A: ProcessActor> {
    /// (behind a lock only so that the unit can be shared: the supervisor reads them
    /// one start at a time)
    #[serde(bound = "")]
    actors: Mutex<Vec<A>>,
    #[serde(bound = "")]
    mailbox: Queue<Envelope<A::Msg>>,
    #[serde(bound = "")]
    replies: Vec<Queue<ReplyOf<A::Reply>>>,
    group: Group,
    name: String,
}

impl<A: ProcessActor> ActorUnit<A> {
    pub(super) fn create(name: String, actors: Vec<A>) -> Result<ActorUnit<A>, crate::Error> {
        let calls = <A::Mailbox as MailboxKind>::REPLIES;
        let mailbox: Queue<Envelope<A::Msg>> = Queue::new()?;
        // one reply queue per call lane (see `actor::lanes`)
        let replies = (0..crate::actor::lanes(actors.len(), calls))
            .map(|_| Queue::<ReplyOf<A::Reply>>::new())
            .collect::<Result<Vec<_>, _>>()?;
        // the supervisor's handles are not senders (see the actor module docs)
        mailbox.close();
        for r in &replies {
            r.close();
        }
        let group = Group::new(actors.len(), calls)?;
        Ok(ActorUnit {
            actors: Mutex::new(actors),
            mailbox,
            replies,
            group,
            name,
        })
    }

    pub(super) fn actor_ref(&self, member: u32, name: String) -> ActorRef<A> {
        ActorRef::new(&self.mailbox, &self.replies, &self.group, member, name)
    }
}

pub(super) fn member_name(base: &str, members: u32, member: u32) -> String {
    if members == 1 {
        base.to_string()
    } else {
        format!("{base}-{}", member + 1)
    }
}

impl<A: ProcessActor> Unit for ActorUnit<A> {
    fn members(&self) -> u32 {
        self.group.actors
    }
    fn group(&self) -> &Group {
        &self.group
    }
    fn member_name(&self, member: u32) -> String {
        member_name(&self.name, self.members(), member)
    }
    fn start(&self, member: u32, via: Via<'_>) -> Result<Process<ExitReport>, SpawnError> {
        let name = self.member_name(member);
        let actors = self.actors.lock().unwrap_or_else(|e| e.into_inner());
        let actor = actors
            .get(member as usize)
            .ok_or_else(|| SpawnError::Io(std::io::Error::other("no such pool member")))?;
        let boot = ActorBootRef {
            actor,
            mailbox: &self.mailbox,
            replies: &self.replies,
            group: &self.group,
            index: member,
            name: &name,
        };
        start_encoded_via(
            actor_main::<A>,
            &boot,
            Some(name.clone()),
            true,
            via.method,
            None,
            via.zygote,
        )
    }
    fn mailbox_len(&self) -> usize {
        self.mailbox.len()
    }
    fn recover(&self) {
        self.mailbox.recover_dead_consumer();
    }
    fn request_stop(&self) {
        self.group.close_for_stop();
        let sender = self.mailbox.clone_open();
        for _ in 0..self.members() {
            if sender
                .put_timeout(Envelope::Stop, Duration::from_millis(100))
                .is_err()
            {
                break; // full or broken: the kill after the timeout ends it
            }
        }
    }
    fn resume_stop(&self) {
        let _ = self
            .mailbox
            .clone_open()
            .put_timeout(Envelope::Stop, Duration::from_millis(100));
    }
    fn ask_to_end(&self, pid: u32) {
        let _ = os::signal_pid(pid, os::SIGTERM);
    }
    fn is_supervisor(&self) -> bool {
        false
    }
    fn base_name(&self) -> &str {
        &self.name
    }
    fn subtree(&self) -> Option<SubTree<'_>> {
        None
    }
    fn wire(&self) -> Result<UnitWire, EncodeError> {
        let decoder: DecodeFn = decode_actor_unit::<A>;
        UnitWire::encode(decoder, self)
    }
}

pub(super) type DecodeFn = fn(Encoded) -> Result<Arc<dyn Unit>, String>;

fn decode_actor_unit<A: ProcessActor>(unit: Encoded) -> Result<Arc<dyn Unit>, String> {
    let u: ActorUnit<A> = unit.decode().map_err(|e| e.to_string())?;
    Ok(Arc::new(u))
}

/// A unit encoded for a child supervisor: the decoder to call (a function of this same
/// binary) and the unit, encoded once with its handles' descriptors.
#[derive(Serialize, Deserialize)]
pub(super) struct UnitWire {
    decoder: (i64, String, u64),
    unit: Encoded,
}

impl UnitWire {
    pub(super) fn encode<T: Serialize>(
        decoder: DecodeFn,
        value: &T,
    ) -> Result<UnitWire, EncodeError> {
        Ok(UnitWire {
            decoder: target::describe(decoder).into_parts(),
            unit: Encoded::new(value)?,
        })
    }

    pub(super) fn decode(self) -> Result<Arc<dyn Unit>, String> {
        let proof = runtime::image_proof()?;
        let (offset, name, mac) = self.decoder;
        let r = TargetRef::from_parts(offset, name, mac);
        let f: DecodeFn =
            target::resolve_checked(&r, proof).map_err(|e| format!("unit decoder: {e}"))?;
        f(self.unit)
    }
}

fn short_name(full: &str) -> &str {
    full.rsplit("::").next().unwrap_or(full)
}

/// A child's name: the spec's, else the actor type's own.
pub(super) fn base_name<A: ProcessActor>(spec: &ChildSpec) -> String {
    spec.name
        .clone()
        .unwrap_or_else(|| short_name(A::NAME).to_string())
}
