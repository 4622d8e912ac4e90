//! Supervision: a [`Supervisor`] starts actors, watches their processes, restarts them as
//! Erlang/OTP's `supervisor` does, and can itself run as a child of another supervisor,
//! in its own process: trees.
//!
//! # Vocabulary (OTP's, unchanged)
//!
//! - [`Strategy`]: `OneForOne` restarts the child that ended; `OneForAll` terminates the
//!   others and restarts all; `RestForOne` terminates and restarts the children started
//!   after it, and it.
//! - [`Restart`]: `Permanent` children are always restarted, `Transient` ones only after
//!   an abnormal exit (a panic, an `Err` from `handle`, a signal), `Temporary` ones never.
//!   A child stopped through [`ActorRef::stop`], or whose every sender is gone, has
//!   nothing left to do and is never restarted (like `supervisor:terminate_child/2`).
//! - [`Shutdown`]: how a child is ended by its supervisor: `Timeout(d)` sends `SIGTERM`
//!   (a child supervisor: a shutdown request, so that it ends its own children first),
//!   waits `d`, then `SIGKILL`s; `BrutalKill` `SIGKILL`s at once.
//! - Restart intensity: more than `max_restarts` restarts within `period` and the
//!   supervisor gives up: it terminates its children (reverse start order) and fails —
//!   [`Supervisor::wait`] returns [`SupervisorError::Intensity`], and a parent supervisor
//!   treats it as an abnormal exit of that child and applies its own strategy. OTP's
//!   defaults: `OneForOne`, 1 restart in 5 s; children `Permanent`, `Timeout(5 s)`.
//!
//! # Mailboxes survive restarts
//!
//! A child's mailbox belongs to the supervisor, not to the child's process: messages
//! queued and not yet taken are handled by the restarted actor. The message the dead
//! process had taken (the one in flight) is lost; its place in the stream is reported in
//! the [`Exited`](SupervisorEvent::Exited) event, and a [`call`](ActorRef::call) waiting
//! for it returns [`CallError::Died`](crate::CallError::Died).
//!
//! # No orphans
//!
//! Every child process is started with the kernel's parent-death signal: when a
//! supervisor's process dies, even by `SIGKILL`, its children die with it, and theirs
//! with them.

use crate::actor::{
    actor_main, cell, encode_status, ActorBootRef, ActorState, Envelope, ExitReport, Group, ReplyOf,
};
use crate::codec::Encoded;
use crate::error::{EncodeError, SpawnError};
use crate::monitor::{ExitEvent, ExitWatcher};
use crate::process::{start_encoded_via, Process};
use crate::queue::Queue;
use crate::runtime::{self, StartMethod};
use crate::sync::Event;
use crate::{ActorRef, ExitStatus, MailboxKind, ProcessActor};
use procactor_transports::os;
use procactor_transports::target::{self, TargetRef};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::fmt::{self, Write as _};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Which children a supervisor restarts when one ends (OTP's restart strategies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Strategy {
    /// Only the child that ended (the default).
    #[default]
    OneForOne,
    /// Every child: the others are terminated (reverse start order), then all restart.
    OneForAll,
    /// The child that ended and every child started after it.
    RestForOne,
}

/// When a child is restarted (OTP's restart types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Restart {
    /// Always (the default).
    #[default]
    Permanent,
    /// Only after an abnormal exit.
    Transient,
    /// Never.
    Temporary,
}

/// How a supervisor ends a child (OTP's shutdown values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Shutdown {
    /// Ask it to end (`SIGTERM`, or a shutdown request to a child supervisor), wait at
    /// most this long, then `SIGKILL`.
    Timeout(Duration),
    /// `SIGKILL` at once.
    BrutalKill,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::Timeout(Duration::from_secs(5))
    }
}

/// How one child is supervised: its name, restart type and shutdown.
///
/// # Examples
///
/// ```
/// use procactor::{ChildSpec, Restart, Shutdown};
/// use std::time::Duration;
/// let spec = ChildSpec::new()
///     .name("parser")
///     .restart(Restart::Transient)
///     .shutdown(Shutdown::Timeout(Duration::from_millis(500)));
/// assert_eq!(spec.restart_type(), Restart::Transient);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildSpec {
    name: Option<String>,
    restart: Restart,
    shutdown: Shutdown,
}

impl ChildSpec {
    /// `Permanent`, `Timeout(5 s)`, named after the actor type.
    pub fn new() -> Self {
        Self::default()
    }
    /// The child's name (a pool's members get `-1`, `-2`, … after it).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
    /// The restart type.
    pub fn restart(mut self, r: Restart) -> Self {
        self.restart = r;
        self
    }
    /// How the child is ended.
    pub fn shutdown(mut self, s: Shutdown) -> Self {
        self.shutdown = s;
        self
    }
    /// The restart type set.
    pub fn restart_type(&self) -> Restart {
        self.restart
    }
}

/// Why a supervisor failed.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// More restarts than `max_restarts` within `period`: it gave up.
    #[error("restart intensity exceeded: more than {max_restarts} restarts in {period:?}")]
    Intensity {
        /// The limit.
        max_restarts: u32,
        /// Within this period.
        period: Duration,
    },
    /// A child could not be started.
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    /// The supervisor is shut down or has failed: nothing more can be started.
    #[error("the supervisor is not running")]
    NotRunning,
    /// Shared memory for a mailbox could not be made.
    #[error(transparent)]
    Resource(#[from] crate::Error),
    /// A wait timed out.
    #[error("timed out")]
    Timeout,
}

/// Something that happened to a supervisor's children; also emitted as a `tracing`
/// event (target `procactor::supervisor`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SupervisorEvent {
    /// A child's process started.
    Started {
        /// The child's name.
        name: String,
        /// Its new pid.
        pid: u32,
    },
    /// A child's process ended.
    Exited {
        /// The child's name.
        name: String,
        /// The pid that ended.
        pid: u32,
        /// How.
        status: ExitStatus,
        /// Why, in words: `"normal"`, `"stopped"`, `"disconnected"`, `"shutdown"`, the
        /// panic message, `"killed by signal 9"`, ….
        reason: String,
        /// Whether the exit is abnormal (a crash).
        abnormal: bool,
        /// The number (1-based) of the message the process had taken last in its
        /// mailbox stream when it crashed: the one in flight, lost with it. `None` after
        /// a normal exit or when it had taken none.
        in_flight: Option<u64>,
        /// The call number lost with it (a pipe actor that died handling a call).
        lost_call: Option<u64>,
    },
    /// A child was started again.
    Restarted {
        /// The child's name.
        name: String,
        /// Its new pid.
        pid: u32,
        /// Its restarts so far.
        restarts: u64,
    },
    /// The supervisor gave up (restart intensity) and failed.
    GaveUp {
        /// Restarts within the period when it gave up.
        restarts: u32,
    },
    /// The supervisor was shut down.
    ShutDown,
}

/// One child as [`Supervisor::children`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildInfo {
    /// The child's name.
    pub name: String,
    /// Its current pid (`None` while not running).
    pub pid: Option<u32>,
    /// Restarts so far.
    pub restarts: u64,
    /// Messages waiting in its mailbox (shared by a pool's members).
    pub mailbox_len: usize,
    /// Where it is in its life.
    pub state: ActorState,
    /// Whether it is a child supervisor.
    pub supervisor: bool,
}

// ------------------------------------------------------------------ units

/// How a supervisor starts its children: the start method, and the zygote that forks
/// them when it is `Fork`.
#[derive(Clone, Copy)]
struct Via<'a> {
    method: Option<StartMethod>,
    zygote: Option<&'a crate::forkserver::Zygote>,
}

/// A child unit as the supervisor handles it, whatever the actor type: one actor, a pool
/// of actors sharing a mailbox (one member per process), or a child supervisor.
trait Unit: Send + Sync {
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
    /// Renders a child supervisor's children below it in a tree.
    fn render_children(&self, out: &mut String, prefix: &str);
    /// Encodes the unit for a child supervisor's process.
    fn wire(&self) -> Result<UnitWire, EncodeError>;
}

/// The parts of a unit of actors of type `A`.
#[derive(Serialize, Deserialize)]
struct ActorUnit<A: ProcessActor> {
    /// (behind a lock only so that the unit can be shared: the supervisor reads them
    /// one start at a time)
    #[serde(bound = "")]
    actors: Mutex<Vec<A>>,
    #[serde(bound = "")]
    mailbox: Queue<Envelope<A::Msg>>,
    #[serde(bound = "")]
    replies: Option<Queue<ReplyOf<A::Reply>>>,
    group: Group,
    name: String,
}

impl<A: ProcessActor> ActorUnit<A> {
    fn create(name: String, actors: Vec<A>) -> Result<ActorUnit<A>, crate::Error> {
        let calls = <A::Mailbox as MailboxKind>::REPLIES;
        let mailbox: Queue<Envelope<A::Msg>> = Queue::new()?;
        let replies = if calls {
            Some(Queue::<ReplyOf<A::Reply>>::new()?)
        } else {
            None
        };
        // the supervisor's handles are not senders (see the actor module docs)
        mailbox.close();
        if let Some(r) = &replies {
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

    fn actor_ref(&self, member: u32, name: String) -> ActorRef<A> {
        ActorRef::new(&self.mailbox, &self.replies, &self.group, member, name)
    }
}

fn member_name(base: &str, members: u32, member: u32) -> String {
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
        self.group.word(cell::STOPPING).store(1, Ordering::Release);
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
    fn render_children(&self, _out: &mut String, _prefix: &str) {}
    fn wire(&self) -> Result<UnitWire, EncodeError> {
        let decoder: DecodeFn = decode_actor_unit::<A>;
        UnitWire::encode(decoder, self)
    }
}

type DecodeFn = fn(Encoded) -> Result<Arc<dyn Unit>, String>;

fn decode_actor_unit<A: ProcessActor>(unit: Encoded) -> Result<Arc<dyn Unit>, String> {
    let u: ActorUnit<A> = unit.decode().map_err(|e| e.to_string())?;
    Ok(Arc::new(u))
}

/// A unit encoded for a child supervisor: the decoder to call (a function of this same
/// binary) and the unit, encoded once with its handles' descriptors.
#[derive(Serialize, Deserialize)]
struct UnitWire {
    decoder: (i64, String),
    unit: Encoded,
}

impl UnitWire {
    fn encode<T: Serialize>(decoder: DecodeFn, value: &T) -> Result<UnitWire, EncodeError> {
        let d = target::describe(decoder);
        Ok(UnitWire {
            decoder: (d.offset.0, d.type_name),
            unit: Encoded::new(value)?,
        })
    }

    fn decode(self) -> Result<Arc<dyn Unit>, String> {
        let proof = runtime::image_proof()?;
        let r = TargetRef {
            offset: target::FnOffset(self.decoder.0),
            type_name: self.decoder.1,
        };
        let f: DecodeFn = target::resolve_checked(&r, proof)
            .ok_or_else(|| format!("unexpected unit decoder {}", r.type_name))?;
        f(self.unit)
    }
}

/// A child supervisor: its settings and its children, started in its own process.
struct SupUnit {
    name: String,
    settings: Settings,
    children: Vec<(ChildSpec, Arc<dyn Unit>)>,
    /// Its own cell (one member: the supervisor's process) and end event.
    group: Group,
    /// Set by the parent to ask for a shutdown.
    shutdown: Event,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Settings {
    strategy: Strategy,
    max_restarts: u32,
    period: Duration,
    /// How its children start (`None`: the process-wide default).
    method: Option<StartMethod>,
}

/// What a child supervisor's process receives.
#[derive(Serialize, Deserialize)]
struct SupBoot {
    name: String,
    settings: Settings,
    specs: Vec<ChildSpec>,
    units: Vec<UnitWire>,
    group: Group,
    shutdown: Event,
}

impl SupUnit {
    /// What its process receives (its children encoded afresh).
    fn boot(&self) -> Result<SupBoot, EncodeError> {
        let units = self
            .children
            .iter()
            .map(|(_, u)| u.wire())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SupBoot {
            name: self.name.clone(),
            settings: self.settings,
            specs: self.children.iter().map(|(s, _)| s.clone()).collect(),
            units,
            group: self.group.clone(),
            shutdown: self.shutdown.clone(),
        })
    }
}

impl Unit for SupUnit {
    fn members(&self) -> u32 {
        1
    }
    fn group(&self) -> &Group {
        &self.group
    }
    fn member_name(&self, _member: u32) -> String {
        self.name.clone()
    }
    fn start(&self, _member: u32, via: Via<'_>) -> Result<Process<ExitReport>, SpawnError> {
        self.group.word(cell::STOPPING).store(0, Ordering::Release);
        self.shutdown.clear();
        let boot = self.boot().map_err(SpawnError::Encode)?;
        start_encoded_via(
            supervisor_main,
            &boot,
            Some(self.name.clone()),
            true,
            via.method,
            None,
            via.zygote,
        )
    }
    fn mailbox_len(&self) -> usize {
        0
    }
    fn recover(&self) {}
    /// A final, graceful shutdown: its children stop gracefully too.
    fn request_stop(&self) {
        self.group.word(cell::STOPPING).store(1, Ordering::Release);
        self.shutdown.set();
    }
    fn resume_stop(&self) {
        self.shutdown.set();
    }
    /// An end before a restart: its children are terminated (their mailboxes kept for
    /// the next incarnation).
    fn ask_to_end(&self, _pid: u32) {
        self.shutdown.set();
    }
    fn is_supervisor(&self) -> bool {
        true
    }
    fn render_children(&self, out: &mut String, prefix: &str) {
        let n = self.children.len();
        for (i, (_, u)) in self.children.iter().enumerate() {
            let members = u.members();
            for m in 0..members {
                let last = i + 1 == n && m + 1 == members;
                render_line(out, prefix, last, &**u, m);
                let deeper = format!("{prefix}{}", if last { "   " } else { "│  " });
                u.render_children(out, &deeper);
            }
        }
    }
    fn wire(&self) -> Result<UnitWire, EncodeError> {
        let decoder: DecodeFn = decode_sup_unit;
        UnitWire::encode(decoder, &self.boot()?)
    }
}

fn decode_sup_unit(unit: Encoded) -> Result<Arc<dyn Unit>, String> {
    let b: SupBoot = unit.decode().map_err(|e| e.to_string())?;
    Ok(Arc::new(sup_unit_from_boot(b)?))
}

fn sup_unit_from_boot(b: SupBoot) -> Result<SupUnit, String> {
    let mut children = Vec::new();
    for (spec, w) in b.specs.into_iter().zip(b.units) {
        children.push((spec, w.decode()?));
    }
    Ok(SupUnit {
        name: b.name,
        settings: b.settings,
        children,
        group: b.group,
        shutdown: b.shutdown,
    })
}

/// The target of a child supervisor's process.
fn supervisor_main(boot: SupBoot) -> ExitReport {
    let unit = match sup_unit_from_boot(boot) {
        Ok(u) => u,
        Err(e) => panic!("child supervisor could not read its children: {e}"),
    };
    let sup = match Supervisor::start_with(unit.name.clone(), unit.settings, unit.children) {
        Ok(s) => s,
        Err(e) => panic!("child supervisor {} could not start: {e}", unit.name),
    };
    // a shutdown request from the parent wakes the waiting below
    let shared = sup.shared.clone();
    let request = unit.shutdown.clone();
    let _ = crate::runtime::thread_builder("procactor-sup-shutdown").spawn(move || {
        request.wait();
        let mut st = shared.lock();
        st.shutdown_requested = true;
        shared.cv.notify_all();
    });
    let mut st = sup.shared.lock();
    loop {
        if st.shutdown_requested {
            drop(st);
            if unit.group.word(cell::STOPPING).load(Ordering::Acquire) != 0 {
                sup.shutdown_children(None);
            } else {
                sup.terminate_children();
            }
            return ExitReport::Shutdown;
        }
        if let Status::GaveUp = st.status {
            return ExitReport::Intensity;
        }
        st = sup.shared.cv.wait(st).unwrap_or_else(|e| e.into_inner());
    }
}

// ------------------------------------------------------------------ supervisor

struct Child {
    spec: ChildSpec,
    unit: Arc<dyn Unit>,
    member: u32,
    name: String,
    proc: Option<Process<ExitReport>>,
    /// Ended for good: not restarted again.
    done: bool,
}

impl Child {
    /// Its restarts so far, as its group's shared cell counts them (a unit started
    /// again by a restarted child supervisor keeps counting).
    fn restarts(&self) -> u64 {
        self.unit
            .group()
            .actor_word(self.member, cell::RESTARTS)
            .load(Ordering::Acquire)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Running,
    ShutDown,
    GaveUp,
}

struct State {
    name: String,
    settings: Settings,
    children: Vec<Child>,
    restarts: VecDeque<Instant>,
    events: Vec<SupervisorEvent>,
    status: Status,
    shutdown_requested: bool,
    names: std::collections::HashMap<String, u32>,
    /// With `Fork`: the copy of this process, made at build, that forks the children.
    zygote: Option<Arc<crate::forkserver::Zygote>>,
}

struct Shared {
    st: Mutex<State>,
    cv: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A supervisor running in this process: it starts actors as child processes and
/// restarts them by its strategy. See the [module docs](self).
///
/// Dropping it shuts it down (as [`shutdown`](Supervisor::shutdown) with each child's
/// own shutdown setting).
///
/// # Examples
///
/// ```
/// use procactor::{process_actor, Actor, ActorError, Context, Queue, Strategy, Supervisor};
/// use serde::{Deserialize, Serialize};
/// use std::time::Duration;
///
/// #[process_actor]
/// #[derive(Serialize, Deserialize)]
/// struct Doubler { out: Queue<u64> }
///
/// impl Actor for Doubler {
///     type Msg = u64;
///     type Reply = ();
///     fn handle(&mut self, x: u64, _: &mut Context<Self>) -> Result<(), ActorError> {
///         self.out.put(2 * x)?;
///         Ok(())
///     }
/// }
///
/// fn main() {
///     procactor::init();
///     let out = Queue::new().unwrap();
///     let sup = Supervisor::builder().strategy(Strategy::OneForOne).build().unwrap();
///     let d = sup.spawn(Doubler { out: out.clone() }).unwrap();
///     d.send(21).unwrap();
///     assert_eq!(out.get_timeout(Duration::from_secs(10)).unwrap(), 42);
///     sup.shutdown(Duration::from_secs(5)).unwrap();
/// }
/// ```
pub struct Supervisor {
    shared: Arc<Shared>,
    watcher: Option<ExitWatcher>,
}

impl fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.shared.lock();
        f.debug_struct("Supervisor")
            .field("name", &st.name)
            .field("strategy", &st.settings.strategy)
            .field("children", &st.children.len())
            .field("status", &st.status)
            .finish()
    }
}

/// Builds a [`Supervisor`], or the spec of a child supervisor (see
/// [`Supervisor::spawn_supervisor`]). Children added with [`add`](SupervisorBuilder::add)
/// start when the supervisor starts, in the order added.
pub struct SupervisorBuilder {
    name: String,
    settings: Settings,
    children: Vec<(ChildSpec, Arc<dyn Unit>)>,
}

impl fmt::Debug for SupervisorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SupervisorBuilder")
            .field("name", &self.name)
            .field("settings", &self.settings)
            .field("children", &self.children.len())
            .finish()
    }
}

fn short_name(full: &str) -> &str {
    full.rsplit("::").next().unwrap_or(full)
}

/// A child's name: the spec's, else the actor type's own.
fn base_name<A: ProcessActor>(spec: &ChildSpec) -> String {
    spec.name
        .clone()
        .unwrap_or_else(|| short_name(A::NAME).to_string())
}

/// `n` actors made by `make` on one new mailbox, and the pool's reference.
fn pool_unit<A: ProcessActor>(
    name: String,
    n: usize,
    make: impl FnMut() -> A,
) -> Result<(ActorUnit<A>, PoolRef<A>), crate::Error> {
    if n == 0 {
        return Err(crate::Error::InvalidArgument(
            "a pool of actors needs at least one".into(),
        ));
    }
    let actors: Vec<A> = std::iter::repeat_with(make).take(n).collect();
    let unit = ActorUnit::create(name.clone(), actors)?;
    let r = PoolRef {
        inner: unit.actor_ref(0, name),
    };
    Ok((unit, r))
}

impl SupervisorBuilder {
    /// The supervisor's name (default `"supervisor"`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }
    /// The restart strategy (default `OneForOne`).
    pub fn strategy(mut self, s: Strategy) -> Self {
        self.settings.strategy = s;
        self
    }
    /// Restart intensity: more than `n` restarts within `period` and the supervisor
    /// gives up (default 1 in 5 s, as OTP).
    pub fn max_restarts(mut self, n: u32, period: Duration) -> Self {
        self.settings.max_restarts = n;
        self.settings.period = period;
        self
    }

    /// How its children start (default: the process-wide
    /// [`start_method()`](crate::start_method)); a child supervisor passes it on to its
    /// own children only if its builder says so too.
    ///
    /// `Fork`: the supervisor, when it starts, forks a copy of its process (a *zygote*,
    /// which stays single-threaded) before it starts any thread, and the zygote forks
    /// every child and every restart, so they see the supervisor's process as it was
    /// then. That start needs a single-threaded process and fails clearly otherwise (a
    /// child supervisor told `Fork` makes its own zygote, in its own process, which is
    /// single-threaded at that point). `ForkServer` is the fast choice with threads.
    pub fn start_method(mut self, m: StartMethod) -> Self {
        self.settings.method = Some(m);
        self
    }

    /// Adds an actor child (started when the supervisor starts); its reference works
    /// from now on (messages wait in the mailbox).
    ///
    /// # Errors
    ///
    /// The mailbox's shared memory could not be made.
    pub fn add<A: ProcessActor>(&mut self, actor: A) -> Result<ActorRef<A>, SupervisorError> {
        self.add_with(ChildSpec::new(), actor)
    }

    /// As [`add`](SupervisorBuilder::add), with a child spec.
    ///
    /// # Errors
    ///
    /// As `add`.
    pub fn add_with<A: ProcessActor>(
        &mut self,
        spec: ChildSpec,
        actor: A,
    ) -> Result<ActorRef<A>, SupervisorError> {
        let name = base_name::<A>(&spec);
        let unit = ActorUnit::create(name.clone(), vec![actor])?;
        let r = unit.actor_ref(0, name);
        self.children.push((spec, Arc::new(unit)));
        Ok(r)
    }

    /// Adds `n` actors made by `make` sharing one mailbox (each message goes to one of
    /// them).
    ///
    /// # Errors
    ///
    /// As `add`.
    pub fn add_pool<A: ProcessActor>(
        &mut self,
        spec: ChildSpec,
        n: usize,
        make: impl FnMut() -> A,
    ) -> Result<PoolRef<A>, SupervisorError> {
        let (unit, r) = pool_unit(base_name::<A>(&spec), n, make)?;
        self.children.push((spec, Arc::new(unit)));
        Ok(r)
    }

    /// Adds a child supervisor, built by `builder` with its own children, to run in
    /// its own process.
    ///
    /// # Errors
    ///
    /// Its shared state could not be made.
    pub fn add_supervisor(
        &mut self,
        spec: ChildSpec,
        builder: SupervisorBuilder,
    ) -> Result<SupervisorRef, SupervisorError> {
        let unit = Arc::new(builder.into_unit(spec.name.clone())?);
        let r = SupervisorRef { unit: unit.clone() };
        self.children.push((spec, unit));
        Ok(r)
    }

    fn into_unit(self, name: Option<String>) -> Result<SupUnit, crate::Error> {
        Ok(SupUnit {
            name: name.unwrap_or(self.name),
            settings: self.settings,
            children: self.children,
            group: Group::new(1, false)?,
            shutdown: Event::new()?,
        })
    }

    /// Starts the supervisor (in this process) and the children added so far.
    ///
    /// # Errors
    ///
    /// A child could not be started (the ones started are ended again).
    pub fn build(self) -> Result<Supervisor, SupervisorError> {
        Supervisor::start_with(self.name, self.settings, self.children)
    }
}

/// A handle on a pool of actors sharing one mailbox ([`Supervisor::spawn_pool`]).
pub struct PoolRef<A: ProcessActor> {
    inner: ActorRef<A>,
}

impl<A: ProcessActor> Clone for PoolRef<A> {
    fn clone(&self) -> Self {
        PoolRef {
            inner: self.inner.clone(),
        }
    }
}

impl<A: ProcessActor> fmt::Debug for PoolRef<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolRef")
            .field("actor", &A::NAME)
            .field("size", &self.size())
            .field("pids", &self.pids())
            .finish()
    }
}

impl<A: ProcessActor> PoolRef<A> {
    /// Sends a message to whichever member takes it first (see [`ActorRef::send`]).
    ///
    /// # Errors
    ///
    /// As [`ActorRef::send`].
    pub fn send(&self, msg: A::Msg) -> Result<(), crate::PutError<A::Msg>> {
        self.inner.send(msg)
    }
    /// See [`ActorRef::try_send`].
    ///
    /// # Errors
    ///
    /// As [`ActorRef::try_send`].
    pub fn try_send(&self, msg: A::Msg) -> Result<(), crate::PutError<A::Msg>> {
        self.inner.try_send(msg)
    }
    /// See [`ActorRef::send_timeout`].
    ///
    /// # Errors
    ///
    /// As [`ActorRef::send_timeout`].
    pub fn send_timeout(&self, msg: A::Msg, d: Duration) -> Result<(), crate::PutError<A::Msg>> {
        self.inner.send_timeout(msg, d)
    }
    /// How many actors share the mailbox.
    pub fn size(&self) -> usize {
        self.inner.group.actors as usize
    }
    /// A reference to member `i` (for its pid and state; sending through it reaches the
    /// shared mailbox all the same).
    pub fn member(&self, i: usize) -> Option<ActorRef<A>> {
        (i < self.size()).then(|| {
            let mut r = self.inner.clone();
            r.index = i as u32;
            r.name = member_name(&self.inner.name, self.size() as u32, i as u32);
            r
        })
    }
    /// The running members' pids.
    pub fn pids(&self) -> Vec<u32> {
        (0..self.size())
            .filter_map(|i| self.member(i).and_then(|m| m.pid()))
            .collect()
    }
    /// Messages waiting in the shared mailbox.
    pub fn mailbox_len(&self) -> usize {
        self.inner.mailbox_len()
    }
    /// Stops every member gracefully (see [`ActorRef::stop`]).
    ///
    /// # Errors
    ///
    /// As [`ActorRef::stop`].
    pub fn stop(&self) -> Result<(), crate::PutError<()>> {
        self.inner.stop()
    }
    /// Waits until every member has ended for good.
    pub fn join(&self) {
        self.inner.join();
    }
    /// As [`join`](PoolRef::join), at most `timeout`.
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        self.inner.join_timeout(timeout)
    }
}

impl<A: ProcessActor<Mailbox = crate::PipeMailbox>> PoolRef<A> {
    /// See [`ActorRef::call`]: any member answers.
    ///
    /// # Errors
    ///
    /// As [`ActorRef::call`].
    pub fn call(&self, msg: A::Msg) -> Result<A::Reply, crate::CallError> {
        self.inner.call(msg)
    }
}

/// A handle on a child supervisor ([`Supervisor::spawn_supervisor`]).
pub struct SupervisorRef {
    unit: Arc<SupUnit>,
}

impl fmt::Debug for SupervisorRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SupervisorRef")
            .field("name", &self.unit.name)
            .field("pid", &self.pid())
            .finish()
    }
}

impl SupervisorRef {
    /// Its name.
    pub fn name(&self) -> &str {
        &self.unit.name
    }
    /// The pid of its process, `None` while not running.
    pub fn pid(&self) -> Option<u32> {
        match self.unit.group.state(0) {
            ActorState::Running => self.unit.group.pid(0),
            _ => None,
        }
    }
    /// Where it is in its life.
    pub fn state(&self) -> ActorState {
        self.unit.group.state(0)
    }
    /// How many times its parent restarted it.
    pub fn restarts(&self) -> u64 {
        self.unit
            .group
            .actor_word(0, cell::RESTARTS)
            .load(Ordering::Acquire)
    }
    /// Its tree (as [`Supervisor::tree`] draws it, from its parent's view).
    pub fn tree(&self) -> String {
        let mut out = format!("{} (supervisor)\n", self.unit.name);
        self.unit.render_children(&mut out, "");
        out
    }
}

fn render_line(out: &mut String, prefix: &str, last: bool, u: &dyn Unit, m: u32) {
    let g = u.group();
    let state = g.state(m);
    let pid = match (state, g.pid(m)) {
        (ActorState::Running, Some(p)) => p.to_string(),
        _ => "-".to_string(),
    };
    let restarts = g.actor_word(m, cell::RESTARTS).load(Ordering::Acquire);
    let kind = if u.is_supervisor() {
        " (supervisor)".to_string()
    } else {
        format!("  mailbox {}", u.mailbox_len())
    };
    let _ = writeln!(
        out,
        "{prefix}{} {}  pid {pid}  {state}  restarts {restarts}{kind}",
        if last { "└─" } else { "├─" },
        u.member_name(m),
    );
}

impl Supervisor {
    /// A builder with OTP's defaults: `OneForOne`, at most 1 restart in 5 s.
    pub fn builder() -> SupervisorBuilder {
        SupervisorBuilder {
            name: "supervisor".into(),
            settings: Settings {
                strategy: Strategy::OneForOne,
                max_restarts: 1,
                period: Duration::from_secs(5),
                method: None,
            },
            children: Vec::new(),
        }
    }

    fn start_with(
        name: String,
        settings: Settings,
        units: Vec<(ChildSpec, Arc<dyn Unit>)>,
    ) -> Result<Supervisor, SupervisorError> {
        runtime::ensure_initialized()?;
        let mut settings = settings;
        // (with Fork, a zygote forked now, before this supervisor starts any thread, forks
        // its children; a child supervisor, told Fork too, makes its own the same way)
        let (method, zygote) = runtime::method_for_owner(settings.method, "supervisor")?;
        settings.method = Some(method);
        let shared = Arc::new(Shared {
            st: Mutex::new(State {
                name,
                settings,
                children: Vec::new(),
                restarts: VecDeque::new(),
                events: Vec::new(),
                status: Status::Running,
                shutdown_requested: false,
                names: Default::default(),
                zygote,
            }),
            cv: Condvar::new(),
        });
        let sh = shared.clone();
        let watcher = ExitWatcher::start("procactor-supervisor", move |ev| on_exit_event(&sh, ev))
            .map_err(SpawnError::Io)?;
        let sup = Supervisor {
            shared,
            watcher: Some(watcher),
        };
        for (spec, unit) in units {
            if let Err(e) = sup.add_unit(spec, unit) {
                sup.shutdown_children(None);
                return Err(e);
            }
        }
        Ok(sup)
    }

    fn add_unit(&self, spec: ChildSpec, unit: Arc<dyn Unit>) -> Result<(), SupervisorError> {
        let mut st = self.shared.lock();
        if st.status != Status::Running {
            return Err(SupervisorError::NotRunning);
        }
        let first = st.children.len();
        for m in 0..unit.members() {
            st.children.push(Child {
                spec: spec.clone(),
                unit: unit.clone(),
                member: m,
                name: unit.member_name(m),
                proc: None,
                done: false,
            });
        }
        for i in first..st.children.len() {
            if let Err(e) = start_child(&mut st, i, false) {
                // undo this unit: end what started of it
                for j in (first..st.children.len()).rev() {
                    end_child(&mut st, j);
                    let c = &st.children[j];
                    c.unit.group().mark_ended(c.member);
                }
                st.children.truncate(first);
                return Err(e.into());
            }
        }
        Ok(())
    }

    fn unique_name(&self, base: &str) -> String {
        let mut st = self.shared.lock();
        let n = st.names.entry(base.to_string()).or_insert(0);
        *n += 1;
        if *n == 1 {
            base.to_string()
        } else {
            format!("{base}#{n}")
        }
    }

    /// Starts an actor as a child with the default spec (`Permanent`, `Timeout(5 s)`),
    /// named after its type.
    ///
    /// # Errors
    ///
    /// [`SupervisorError::NotRunning`] after a shutdown or a give-up,
    /// [`SupervisorError::Spawn`] when its process could not start.
    pub fn spawn<A: ProcessActor>(&self, actor: A) -> Result<ActorRef<A>, SupervisorError> {
        self.spawn_with(ChildSpec::new(), actor)
    }

    /// Starts an actor with a child spec.
    ///
    /// # Errors
    ///
    /// As [`spawn`](Supervisor::spawn).
    pub fn spawn_with<A: ProcessActor>(
        &self,
        spec: ChildSpec,
        actor: A,
    ) -> Result<ActorRef<A>, SupervisorError> {
        let name = self.unique_name(&base_name::<A>(&spec));
        let unit = ActorUnit::create(name.clone(), vec![actor])?;
        let r = unit.actor_ref(0, name);
        self.add_unit(spec, Arc::new(unit))?;
        Ok(r)
    }

    /// Starts `n` actors made by `make`, sharing one mailbox: each message is handled by
    /// one of them (a worker pool). Each member is a child of its own (named
    /// `name-1`, `name-2`, …) and is restarted on its own.
    ///
    /// # Errors
    ///
    /// As [`spawn`](Supervisor::spawn).
    pub fn spawn_pool<A: ProcessActor>(
        &self,
        n: usize,
        make: impl FnMut() -> A,
    ) -> Result<PoolRef<A>, SupervisorError> {
        self.spawn_pool_with(ChildSpec::new(), n, make)
    }

    /// As [`spawn_pool`](Supervisor::spawn_pool), with a child spec for every member.
    ///
    /// # Errors
    ///
    /// As [`spawn`](Supervisor::spawn).
    pub fn spawn_pool_with<A: ProcessActor>(
        &self,
        spec: ChildSpec,
        n: usize,
        make: impl FnMut() -> A,
    ) -> Result<PoolRef<A>, SupervisorError> {
        let name = self.unique_name(&base_name::<A>(&spec));
        let (unit, r) = pool_unit(name, n, make)?;
        self.add_unit(spec, Arc::new(unit))?;
        Ok(r)
    }

    /// Starts a child supervisor (built with its own children by `builder`) in its own
    /// process: a subtree. If it gives up, this supervisor sees an abnormal exit of that
    /// child and applies its own strategy; if this supervisor's process dies, the whole
    /// subtree dies with it.
    ///
    /// # Errors
    ///
    /// As [`spawn`](Supervisor::spawn).
    pub fn spawn_supervisor(
        &self,
        builder: SupervisorBuilder,
    ) -> Result<SupervisorRef, SupervisorError> {
        let spec = ChildSpec::new().shutdown(Shutdown::Timeout(Duration::from_secs(30)));
        self.spawn_supervisor_with(spec, builder)
    }

    /// As [`spawn_supervisor`](Supervisor::spawn_supervisor), with a child spec (the
    /// default gives a child supervisor 30 s to end its own children).
    ///
    /// # Errors
    ///
    /// As [`spawn`](Supervisor::spawn).
    pub fn spawn_supervisor_with(
        &self,
        spec: ChildSpec,
        builder: SupervisorBuilder,
    ) -> Result<SupervisorRef, SupervisorError> {
        let base = spec.name.clone().unwrap_or_else(|| builder.name.clone());
        let name = self.unique_name(&base);
        let unit = Arc::new(builder.into_unit(Some(name))?);
        let r = SupervisorRef { unit: unit.clone() };
        self.add_unit(spec, unit)?;
        Ok(r)
    }

    /// The children, in start order (a pool's members one by one).
    pub fn children(&self) -> Vec<ChildInfo> {
        let st = self.shared.lock();
        st.children
            .iter()
            .map(|c| {
                let g = c.unit.group();
                let state = g.state(c.member);
                ChildInfo {
                    name: c.name.clone(),
                    pid: match state {
                        ActorState::Running => c.proc.as_ref().map(Process::pid),
                        _ => None,
                    },
                    restarts: c.restarts(),
                    mailbox_len: c.unit.mailbox_len(),
                    state,
                    supervisor: c.unit.is_supervisor(),
                }
            })
            .collect()
    }

    /// Everything that happened so far, oldest first.
    pub fn events(&self) -> Vec<SupervisorEvent> {
        self.shared.lock().events.clone()
    }

    /// The live tree as text, `pstree`-like: every child with its pid, state, restarts
    /// and mailbox length, child supervisors with their own children below them.
    pub fn tree(&self) -> String {
        let st = self.shared.lock();
        let mut out = format!(
            "{} (supervisor, pid {}, {:?})\n",
            st.name,
            std::process::id(),
            st.settings.strategy
        );
        let n = st.children.len();
        for (i, c) in st.children.iter().enumerate() {
            let last = i + 1 == n;
            render_line(&mut out, "", last, &*c.unit, c.member);
            c.unit
                .render_children(&mut out, if last { "   " } else { "│  " });
        }
        out
    }

    /// Stops every child in reverse start order — a graceful stop request (actors
    /// handle what is queued, then `stopped` runs; child supervisors stop their own
    /// children), then a wait of at most the child's shutdown time and at most what is
    /// left of `timeout`, then `SIGKILL` — and ends the supervisor. Calling it again is
    /// harmless.
    ///
    /// # Errors
    ///
    /// None today; kept fallible for symmetry with `wait`.
    pub fn shutdown(&self, timeout: Duration) -> Result<(), SupervisorError> {
        self.shutdown_children(Instant::now().checked_add(timeout));
        Ok(())
    }

    fn shutdown_children(&self, deadline: Option<Instant>) {
        let mut st = self.shared.lock();
        if st.status == Status::Running {
            // one child at a time, last started first (OTP); a pool gets its stop
            // requests once, at its last member, and then each member is waited for
            let mut asked: Vec<*const ()> = Vec::new();
            for i in (0..st.children.len()).rev() {
                let c = &st.children[i];
                let unit = Arc::as_ptr(&c.unit) as *const ();
                if c.proc.is_some() && !asked.contains(&unit) {
                    asked.push(unit);
                    c.unit.request_stop();
                }
                wait_or_kill(&mut st, i, deadline);
            }
            st.status = Status::ShutDown;
            push_event(&mut st, SupervisorEvent::ShutDown);
        }
        for c in &st.children {
            c.unit.group().mark_ended(c.member);
        }
        self.shared.cv.notify_all();
    }

    /// Ends every child now, last started first, by its shutdown spec, without the
    /// graceful mailbox stop: a child supervisor about to be restarted by its parent does
    /// this, so its children's mailboxes wait for their next incarnation.
    fn terminate_children(&self) {
        let mut st = self.shared.lock();
        if st.status == Status::Running {
            for i in (0..st.children.len()).rev() {
                end_child(&mut st, i);
                let c = &st.children[i];
                c.unit.group().set_state(c.member, ActorState::Restarting);
            }
            st.status = Status::ShutDown;
        }
        self.shared.cv.notify_all();
    }

    /// Waits until the supervisor has ended: `Ok` after a shutdown or once every child
    /// has ended for good, `Err(Intensity)` when it gave up.
    ///
    /// # Errors
    ///
    /// [`SupervisorError::Intensity`].
    pub fn wait(&self) -> Result<(), SupervisorError> {
        self.wait_deadline(None)
    }

    /// As [`wait`](Supervisor::wait), at most `timeout`
    /// ([`SupervisorError::Timeout`] then).
    ///
    /// # Errors
    ///
    /// `Intensity`, or `Timeout`.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<(), SupervisorError> {
        self.wait_deadline(Instant::now().checked_add(timeout))
    }

    fn wait_deadline(&self, deadline: Option<Instant>) -> Result<(), SupervisorError> {
        let mut st = self.shared.lock();
        loop {
            match st.status {
                Status::GaveUp => {
                    return Err(SupervisorError::Intensity {
                        max_restarts: st.settings.max_restarts,
                        period: st.settings.period,
                    })
                }
                Status::ShutDown => return Ok(()),
                Status::Running => {
                    if !st.children.is_empty() && st.children.iter().all(|c| c.done) {
                        return Ok(());
                    }
                }
            }
            st = match deadline {
                None => self.shared.cv.wait(st).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Err(SupervisorError::Timeout);
                    }
                    self.shared
                        .cv
                        .wait_timeout(st, d - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.shutdown_children(None);
        self.watcher.take();
    }
}

fn push_event(st: &mut State, ev: SupervisorEvent) {
    match &ev {
        SupervisorEvent::Started { name, pid } => {
            tracing::info!(target: "procactor::supervisor", supervisor = %st.name, child = %name, pid, "child started")
        }
        SupervisorEvent::Exited {
            name,
            pid,
            status,
            reason,
            abnormal,
            ..
        } => {
            tracing::info!(target: "procactor::supervisor", supervisor = %st.name, child = %name, pid, %status, %reason, abnormal, "child exited")
        }
        SupervisorEvent::Restarted {
            name,
            pid,
            restarts,
        } => {
            tracing::info!(target: "procactor::supervisor", supervisor = %st.name, child = %name, pid, restarts, "child restarted")
        }
        SupervisorEvent::GaveUp { restarts } => {
            tracing::error!(target: "procactor::supervisor", supervisor = %st.name, restarts, "restart intensity exceeded: giving up")
        }
        SupervisorEvent::ShutDown => {
            tracing::info!(target: "procactor::supervisor", supervisor = %st.name, "shut down")
        }
    }
    st.events.push(ev);
}

/// Starts child `i`'s process (again, when `restart`).
fn start_child(st: &mut State, i: usize, restart: bool) -> Result<(), SpawnError> {
    let c = &mut st.children[i];
    let g = c.unit.group();
    g.reopen(c.member);
    g.word(cell::SUPERVISOR)
        .store(u64::from(os::current_pid()), Ordering::Release);
    g.set_state(c.member, ActorState::Starting);
    if restart {
        g.actor_word(c.member, cell::RESTARTS)
            .fetch_add(1, Ordering::AcqRel);
    }
    let p = c.unit.start(
        c.member,
        Via {
            method: st.settings.method,
            zygote: st.zygote.as_deref(),
        },
    )?;
    let pid = p.pid();
    g.actor_word(c.member, cell::PID)
        .store(u64::from(pid), Ordering::Release);
    // the actor sets Running itself too; a supervisor child has no one else to
    g.set_state(c.member, ActorState::Running);
    c.proc = Some(p);
    let name = c.name.clone();
    let restarts = c.restarts();
    push_event(
        st,
        SupervisorEvent::Started {
            name: name.clone(),
            pid,
        },
    );
    if restart {
        push_event(
            st,
            SupervisorEvent::Restarted {
                name,
                pid,
                restarts,
            },
        );
    }
    Ok(())
}

/// Reaps child `i`'s ended process and records its end; returns the exit event.
/// How a child's process ended, as the restart decision needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// `ctx.stop()`: OTP's `normal`.
    Normal,
    /// Nothing left to do: stopped on request, every sender gone, or shut down.
    Finished,
    /// A child supervisor gave up: abnormal, but like OTP's `shutdown` exit reason a
    /// `Transient` one is not restarted.
    GaveUp,
    /// A crash: a panic, an `Err` from `handle`, a signal.
    Crashed,
}

fn reap(st: &mut State, i: usize) -> Option<(SupervisorEvent, Ended)> {
    let c = &mut st.children[i];
    let mut p = c.proc.take()?;
    let status = p.join().unwrap_or(ExitStatus::Code(-1));
    let report = p.result();
    let g = c.unit.group();
    g.actor_word(c.member, cell::EXIT)
        .store(encode_status(status), Ordering::Release);
    g.actor_word(c.member, cell::PID)
        .store(0, Ordering::Release);
    let in_call = g
        .actor_word(c.member, cell::IN_CALL)
        .swap(0, Ordering::AcqRel);
    if in_call != 0 {
        g.word(cell::LOST_CALL).store(in_call, Ordering::Release);
    }
    let taken = g.actor_word(c.member, cell::TAKEN).load(Ordering::Acquire);
    c.unit.recover();
    let (reason, ended) = match (&report, status) {
        (Ok(ExitReport::Intensity), _) => ("gave up (restart intensity)", Ended::GaveUp),
        (Ok(ExitReport::Normal), ExitStatus::Code(0)) => ("normal", Ended::Normal),
        (Ok(ExitReport::Stopped), ExitStatus::Code(0)) => ("stopped", Ended::Finished),
        (Ok(ExitReport::Disconnected), ExitStatus::Code(0)) => ("disconnected", Ended::Finished),
        (Ok(ExitReport::Shutdown), ExitStatus::Code(0)) => ("shutdown", Ended::Finished),
        _ => ("", Ended::Crashed),
    };
    let reason = match (&report, ended) {
        (Err(crate::JoinError::Panicked { message }), Ended::Crashed) => message.clone(),
        (_, Ended::Crashed) => status.to_string(),
        _ => reason.to_string(),
    };
    let abnormal = matches!(ended, Ended::Crashed | Ended::GaveUp);
    let ev = SupervisorEvent::Exited {
        name: c.name.clone(),
        pid: p.pid(),
        status,
        reason,
        abnormal,
        in_flight: (abnormal && taken > 0 && !c.unit.is_supervisor()).then_some(taken),
        lost_call: (in_call != 0).then_some(in_call),
    };
    Some((ev, ended))
}

/// Ends child `i` now (for a restart of its siblings or a give-up), by its shutdown
/// spec; no graceful mailbox drain (its messages wait for the restart).
fn end_child(st: &mut State, i: usize) {
    let c = &st.children[i];
    let Some(p) = &c.proc else { return };
    match c.spec.shutdown {
        Shutdown::BrutalKill => {
            let _ = p.kill();
        }
        Shutdown::Timeout(_) => c.unit.ask_to_end(p.pid()),
    }
    wait_or_kill(st, i, None);
}

/// Waits for child `i` to end (its shutdown time, capped by `deadline`), kills it if
/// it does not, and records the exit.
fn wait_or_kill(st: &mut State, i: usize, deadline: Option<Instant>) {
    let c = &mut st.children[i];
    let Some(p) = c.proc.as_mut() else { return };
    let mut until = match c.spec.shutdown {
        Shutdown::BrutalKill => Some(Instant::now()),
        Shutdown::Timeout(d) => Instant::now().checked_add(d),
    };
    if let Some(d) = deadline {
        until = Some(until.map_or(d, |u| u.min(d)));
    }
    let left = until.map(|u| u.saturating_duration_since(Instant::now()));
    let ended = match left {
        None => p.join().ok(),
        Some(l) => p.join_timeout(l).ok().flatten(),
    };
    if ended.is_none() {
        let _ = p.kill();
        let _ = p.join();
    }
    if let Some((ev, _)) = reap(st, i) {
        push_event(st, ev);
    }
}

/// The exit watcher: applies the strategy to every child exit.
/// Applies the strategy to one child exit (on the exit watcher's thread).
fn on_exit_event(shared: &Shared, ev: ExitEvent) {
    let mut st = shared.lock();
    if st.status != Status::Running {
        return;
    }
    let idx = st
        .children
        .iter()
        .position(|c| c.proc.as_ref().is_some_and(|p| p.pid() == ev.pid));
    if let Some(i) = idx {
        on_exit(&mut st, i);
        shared.cv.notify_all();
    }
}

fn on_exit(st: &mut State, i: usize) {
    let Some((ev, ended)) = reap(st, i) else {
        return;
    };
    push_event(st, ev);
    let c = &st.children[i];
    // a stop under way: a normal end finishes it; a crash in the middle of the drain is
    // restarted (by its restart type) and told to stop again, so the drain goes on
    let stopping = c.unit.group().word(cell::STOPPING).load(Ordering::Acquire) != 0;
    let restart = match (ended, c.spec.restart) {
        (Ended::Finished, _) | (_, Restart::Temporary) => false,
        (Ended::Normal, Restart::Permanent) => !stopping,
        (Ended::Normal, Restart::Transient) => false,
        (Ended::GaveUp, Restart::Transient) => false,
        (Ended::GaveUp | Ended::Crashed, _) => true,
    };
    if !restart {
        st.children[i].done = true;
        let c = &st.children[i];
        c.unit.group().mark_ended(c.member);
        return;
    }
    // restart intensity, as OTP: this restart counts; more than max in the period fails
    let now = Instant::now();
    st.restarts.push_back(now);
    let period = st.settings.period;
    while st
        .restarts
        .front()
        .is_some_and(|t| now.duration_since(*t) > period)
    {
        st.restarts.pop_front();
    }
    if st.restarts.len() > st.settings.max_restarts as usize {
        give_up(st);
        return;
    }
    let set: Vec<usize> = match st.settings.strategy {
        Strategy::OneForOne => vec![i],
        Strategy::OneForAll => (0..st.children.len()).collect(),
        Strategy::RestForOne => (i..st.children.len()).collect(),
    };
    // terminate the others in reverse start order…
    for &j in set.iter().rev() {
        if j != i && st.children[j].proc.is_some() {
            end_child(st, j);
        }
    }
    // …then start them again in start order; temporary siblings are not restarted
    for &j in &set {
        if st.children[j].done {
            continue;
        }
        if j != i && st.children[j].spec.restart == Restart::Temporary {
            st.children[j].done = true;
            let c = &st.children[j];
            c.unit.group().mark_ended(c.member);
            continue;
        }
        if start_child(st, j, true).is_err() {
            give_up(st);
            return;
        }
        let c = &st.children[j];
        if c.unit.group().word(cell::STOPPING).load(Ordering::Acquire) != 0 {
            c.unit.resume_stop();
        }
    }
}

fn give_up(st: &mut State) {
    let n = st.restarts.len() as u32;
    push_event(st, SupervisorEvent::GaveUp { restarts: n });
    for j in (0..st.children.len()).rev() {
        end_child(st, j);
    }
    for c in &mut st.children {
        c.done = true;
        c.unit.group().mark_ended(c.member);
    }
    st.status = Status::GaveUp;
}
