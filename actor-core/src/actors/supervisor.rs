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
//!   supervisor gives up: it terminates its children (all at once, one deadline) and fails —
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
use procactor_transports::deadline::Deadline;
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
    /// Every child: the others are terminated (all at once, one deadline; OTP ends them
    /// one after another in reverse start order), then all restart.
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
    replies: Vec<Queue<ReplyOf<A::Reply>>>,
    group: Group,
    name: String,
}

impl<A: ProcessActor> ActorUnit<A> {
    fn create(name: String, actors: Vec<A>) -> Result<ActorUnit<A>, crate::Error> {
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
    decoder: (i64, String, u64),
    unit: Encoded,
}

impl UnitWire {
    fn encode<T: Serialize>(decoder: DecodeFn, value: &T) -> Result<UnitWire, EncodeError> {
        Ok(UnitWire {
            decoder: target::describe(decoder).into_parts(),
            unit: Encoded::new(value)?,
        })
    }

    fn decode(self) -> Result<Arc<dyn Unit>, String> {
        let proof = runtime::image_proof()?;
        let (offset, name, mac) = self.decoder;
        let r = TargetRef::from_parts(offset, name, mac);
        let f: DecodeFn =
            target::resolve_checked(&r, proof).map_err(|e| format!("unit decoder: {e}"))?;
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
    /// How many events [`Supervisor::events`] keeps (the most recent ones).
    history: usize,
}

/// The default of [`SupervisorBuilder::event_history`].
pub const DEFAULT_EVENT_HISTORY: usize = 1000;

/// How many events of each kind a supervisor has emitted since it started
/// ([`Supervisor::event_totals`]), including those no longer kept by
/// [`Supervisor::events`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventTotals {
    /// [`SupervisorEvent::Started`] events.
    pub started: u64,
    /// [`SupervisorEvent::Exited`] events.
    pub exited: u64,
    /// [`SupervisorEvent::Restarted`] events.
    pub restarted: u64,
    /// [`SupervisorEvent::GaveUp`] events.
    pub gave_up: u64,
    /// [`SupervisorEvent::ShutDown`] events.
    pub shut_down: u64,
    /// Events emitted but no longer kept (the oldest, beyond the history size).
    pub dropped: u64,
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
        if st.status == Status::GaveUp && st.busy == 0 {
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
    /// The most recent events (at most `settings.history`), oldest first.
    events: VecDeque<SupervisorEvent>,
    totals: EventTotals,
    /// Ends under way outside the lock (sets of children being ended by a restart, a
    /// give-up or a shutdown): `wait` reports the end of the supervisor only after them.
    busy: usize,
    /// Where the exits of this supervisor's children go (its exit watcher).
    route: Option<crate::monitor::ExitRoute>,
    status: Status,
    shutdown_requested: bool,
    names: std::collections::HashMap<String, u32>,
    /// With `Fork`: the copy of this process, made at build, that forks the children.
    zygote: Option<Arc<crate::forkserver::Zygote>>,
}

struct Shared {
    st: Mutex<State>,
    cv: Condvar,
    /// Set by a shutdown with a deadline: every end under way (a restart's, a
    /// give-up's) kills what is still running by then, whatever its own shutdown time.
    kill_by: Mutex<Option<Instant>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn kill_by(&self) -> Option<Instant> {
        *self.kill_by.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Brings the kill deadline of every end under way forward to `d`.
    fn hurry(&self, d: Instant) {
        let mut k = self.kill_by.lock().unwrap_or_else(|e| e.into_inner());
        *k = Some(k.map_or(d, |k| k.min(d)));
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
///     sup.shutdown(Duration::from_secs(5));
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

    /// How many events [`Supervisor::events`] keeps: the most recent `n` (default
    /// [`DEFAULT_EVENT_HISTORY`], 1000), so that a long-lived supervisor's memory does
    /// not grow with its restarts. [`Supervisor::event_totals`] counts every event.
    pub fn event_history(mut self, n: usize) -> Self {
        self.settings.history = n;
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
    pub fn try_send(&self, msg: A::Msg) -> Result<(), crate::TryPutError<A::Msg>> {
        self.inner.try_send(msg)
    }
    /// See [`ActorRef::send_timeout`].
    ///
    /// # Errors
    ///
    /// As [`ActorRef::send_timeout`].
    pub fn send_timeout(
        &self,
        msg: A::Msg,
        d: Duration,
    ) -> Result<(), crate::PutTimeoutError<A::Msg>> {
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
    ///
    /// # Errors
    ///
    /// [`JoinTimeoutError`](crate::JoinTimeoutError) when a member had not ended by
    /// then.
    pub fn join_timeout(&self, timeout: Duration) -> Result<(), crate::JoinTimeoutError> {
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
    /// See [`ActorRef::call_timeout`]: any member answers. Calls from several threads
    /// or processes run on different members at once (one call lane per member, at
    /// most 64).
    ///
    /// # Errors
    ///
    /// As [`ActorRef::call_timeout`].
    pub fn call_timeout(
        &self,
        msg: A::Msg,
        timeout: Duration,
    ) -> Result<A::Reply, crate::CallError> {
        self.inner.call_timeout(msg, timeout)
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
                history: DEFAULT_EVENT_HISTORY,
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
                events: VecDeque::new(),
                totals: EventTotals::default(),
                busy: 0,
                route: None,
                status: Status::Running,
                shutdown_requested: false,
                names: Default::default(),
                zygote,
            }),
            cv: Condvar::new(),
            kill_by: Mutex::new(None),
        });
        let sh = shared.clone();
        let (watcher, route) =
            ExitWatcher::start_routed("procactor-supervisor", move |ev| on_exit_event(&sh, ev))
                .map_err(SpawnError::Io)?;
        shared.lock().route = Some(route);
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
                // undo this unit: kill what started of it (and wait for it outside the
                // lock: its exits are this thread's, the entries gone)
                let mut started = Vec::new();
                for j in (first..st.children.len()).rev() {
                    let c = &mut st.children[j];
                    if let Some(p) = c.proc.take() {
                        let _ = p.kill();
                        started.push(p);
                    }
                    c.unit.group().mark_ended(c.member);
                }
                st.children.truncate(first);
                drop(st);
                for mut p in started {
                    let _ = p.join();
                }
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

    /// What happened lately, oldest first: the most recent events, at most
    /// [`event_history`](SupervisorBuilder::event_history) of them (default 1000; older
    /// ones are dropped, and counted in [`event_totals`](Supervisor::event_totals)).
    pub fn events(&self) -> Vec<SupervisorEvent> {
        self.shared.lock().events.iter().cloned().collect()
    }

    /// How many events of each kind happened since the supervisor started, including
    /// those [`events`](Supervisor::events) no longer keeps.
    pub fn event_totals(&self) -> EventTotals {
        self.shared.lock().totals
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

    /// Stops every child — a graceful stop request to all of them at once (actors
    /// handle what is queued, then `stopped` runs; child supervisors stop their own
    /// children), then one wait of at most each child's shutdown time and at most
    /// `timeout`, then `SIGKILL` — and ends the supervisor. The children end in
    /// parallel (OTP ends them one after another, last started first: with many slow
    /// children that is the sum of their shutdown times; here it is the longest one). An
    /// end already under way (a restart's) is cut short by `timeout` too. Returns within
    /// `timeout` plus a few milliseconds whatever the children do. Calling it again is
    /// harmless. It cannot fail (a child that does not end in time is killed), so it
    /// returns nothing; what happened to each child is in [`events`](Supervisor::events).
    pub fn shutdown(&self, timeout: Duration) {
        self.shutdown_children(Deadline::after(timeout).instant());
    }

    fn shutdown_children(&self, deadline: Option<Instant>) {
        if let Some(d) = deadline {
            self.shared.hurry(d);
        }
        let mut st = self.shared.lock();
        if st.status == Status::Running {
            // from now on nothing restarts and nothing new starts
            st.status = Status::ShutDown;
            let set: Vec<usize> = (0..st.children.len()).rev().collect();
            st = end_set(&self.shared, st, &set, EndHow::Graceful, deadline);
            push_event(&mut st, SupervisorEvent::ShutDown);
        }
        // ends under way on other threads (a restart, a give-up): killed by the deadline
        // (see `hurry`), recorded a moment later
        let give_up_at = deadline.map(|d| d + SETTLE);
        while st.busy > 0 {
            st = match give_up_at {
                None => self.shared.cv.wait(st).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        break;
                    }
                    self.shared
                        .cv
                        .wait_timeout(st, d - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
        for c in &st.children {
            c.unit.group().mark_ended(c.member);
        }
        self.shared.cv.notify_all();
    }

    /// Ends every child now, all at once, by its shutdown spec, without the graceful
    /// mailbox stop: a child supervisor about to be restarted by its parent does this,
    /// so its children's mailboxes wait for their next incarnation.
    fn terminate_children(&self) {
        let mut st = self.shared.lock();
        if st.status == Status::Running {
            st.status = Status::ShutDown;
            let set: Vec<usize> = (0..st.children.len()).rev().collect();
            st = end_set(&self.shared, st, &set, EndHow::Terminate, None);
            for c in &st.children {
                c.unit.group().set_state(c.member, ActorState::Restarting);
            }
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
        self.wait_deadline(Deadline::after(timeout).instant())
    }

    fn wait_deadline(&self, deadline: Option<Instant>) -> Result<(), SupervisorError> {
        let mut st = self.shared.lock();
        loop {
            // (an end under way is part of the supervisor's end: reported once recorded)
            match st.status {
                Status::GaveUp if st.busy == 0 => {
                    return Err(SupervisorError::Intensity {
                        max_restarts: st.settings.max_restarts,
                        period: st.settings.period,
                    })
                }
                Status::ShutDown if st.busy == 0 => return Ok(()),
                Status::Running
                    if !st.children.is_empty() && st.children.iter().all(|c| c.done) =>
                {
                    return Ok(())
                }
                _ => {}
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

/// How long a dropped supervisor waits for its children at most (then `SIGKILL`).
pub const DROP_SHUTDOWN_LIMIT: Duration = Duration::from_secs(30);
/// The same while the dropping thread is panicking.
pub const DROP_SHUTDOWN_LIMIT_PANICKING: Duration = Duration::from_secs(1);
/// How long past a shutdown's deadline it waits for a killed child's end to be recorded.
const SETTLE: Duration = Duration::from_millis(30);

impl Drop for Supervisor {
    /// Shuts the supervisor down, bounded: each child gets its own shutdown time but
    /// all of them together at most [`DROP_SHUTDOWN_LIMIT`] (30 s), or
    /// [`DROP_SHUTDOWN_LIMIT_PANICKING`] (1 s) while the thread is panicking (so that a
    /// panic unwinding through a supervisor never turns into a long wait); then whatever
    /// still runs is killed.
    fn drop(&mut self) {
        let limit = if std::thread::panicking() {
            DROP_SHUTDOWN_LIMIT_PANICKING
        } else {
            DROP_SHUTDOWN_LIMIT
        };
        self.shutdown_children(Deadline::after(limit).instant());
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
    let t = &mut st.totals;
    match &ev {
        SupervisorEvent::Started { .. } => t.started += 1,
        SupervisorEvent::Exited { .. } => t.exited += 1,
        SupervisorEvent::Restarted { .. } => t.restarted += 1,
        SupervisorEvent::GaveUp { .. } => t.gave_up += 1,
        SupervisorEvent::ShutDown => t.shut_down += 1,
    }
    st.events.push_back(ev);
    while st.events.len() > st.settings.history {
        st.events.pop_front();
        st.totals.dropped += 1;
    }
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
    if let Some(route) = &st.route {
        route.watch(pid, || crate::pipe::Waitable::ready_cached(&p));
    }
    let c = &mut st.children[i];
    let g = c.unit.group();
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

/// How a child's process ended, as the restart decision needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// `ctx.stop()`: OTP's `normal`.
    Normal,
    /// Nothing left to do: stopped on request, every sender gone, or shut down.
    Finished,
    /// A child supervisor gave up (restart intensity): abnormal, but like OTP's
    /// `shutdown` exit reason a `Transient` one is not restarted.
    GaveUp,
    /// A crash: a panic, an `Err` from `handle`, a signal.
    Crashed,
}

/// Records the end of child `i`'s process `p` (which has ended: this joins it) and
/// returns the exit event.
fn reap_proc(st: &mut State, i: usize, mut p: Process<ExitReport>) -> (SupervisorEvent, Ended) {
    let c = &mut st.children[i];
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
    // (a caller whose call vanished looks at this: see `ActorRef::call`)
    g.word(cell::EXITS).fetch_add(1, Ordering::AcqRel);
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
    (ev, ended)
}

/// How [`end_set`] asks children to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EndHow {
    /// A final, graceful stop: stop requests through the mailboxes (actors drain what
    /// is queued), a shutdown request to child supervisors.
    Graceful,
    /// An end before a restart (or a give-up): `SIGTERM` (a shutdown request to a child
    /// supervisor), no mailbox drain: queued messages wait for the next incarnation.
    Terminate,
}

/// A child being ended outside the supervisor's lock.
struct Ending {
    idx: usize,
    proc: Process<ExitReport>,
    /// When it is killed if still running (its shutdown time, capped by the deadline).
    until: Option<Instant>,
    killed: bool,
    ended: bool,
}

/// Ends the children `set` (indices, in the order their requests go out) all at once
/// and records their exits, without waiting under the lock: their processes are taken
/// out of the state (so their exits are not handled as crashes), the requests sent,
/// the lock released for the wait (one wait for all: each is killed at its own
/// shutdown time, or at `deadline`, or at a shutdown's deadline, whichever comes
/// first), and re-taken to record them. Returns the re-taken lock: the caller must
/// look at the state afresh (a shutdown may have come meanwhile).
fn end_set<'a>(
    shared: &'a Shared,
    mut st: MutexGuard<'a, State>,
    set: &[usize],
    how: EndHow,
    deadline: Option<Instant>,
) -> MutexGuard<'a, State> {
    let now = Instant::now();
    let mut ending = Vec::new();
    let mut to_stop: Vec<Arc<dyn Unit>> = Vec::new();
    for &j in set {
        let c = &mut st.children[j];
        let Some(p) = c.proc.take() else { continue };
        let mut until = match c.spec.shutdown {
            Shutdown::BrutalKill => Some(now),
            Shutdown::Timeout(d) => now.checked_add(d),
        };
        if let Some(d) = deadline {
            until = Some(until.map_or(d, |u| u.min(d)));
        }
        match (c.spec.shutdown, how) {
            (Shutdown::BrutalKill, _) => {
                let _ = p.kill();
            }
            (Shutdown::Timeout(_), EndHow::Terminate) => c.unit.ask_to_end(p.pid()),
            (Shutdown::Timeout(_), EndHow::Graceful) => {
                // a pool gets its stop requests once, for all its members
                let unit = Arc::as_ptr(&c.unit) as *const ();
                if !to_stop
                    .iter()
                    .any(|u| std::ptr::eq(Arc::as_ptr(u) as *const (), unit))
                {
                    to_stop.push(c.unit.clone());
                }
            }
        }
        ending.push(Ending {
            idx: j,
            proc: p,
            until,
            killed: false,
            ended: false,
        });
    }
    if ending.is_empty() {
        return st;
    }
    st.busy += 1;
    drop(st);
    for u in &to_stop {
        u.request_stop();
    }
    wait_all(shared, &mut ending);
    let mut st = shared.lock();
    for e in ending {
        let (ev, _) = reap_proc(&mut st, e.idx, e.proc);
        push_event(&mut st, ev);
    }
    st.busy -= 1;
    shared.cv.notify_all();
    st
}

/// Waits until every process of `ending` has ended, killing each at its deadline (or
/// at the shared kill deadline of a shutdown, if earlier).
fn wait_all(shared: &Shared, ending: &mut [Ending]) {
    // (a wake-up at least this often, to see a shutdown's deadline)
    const SLICE: Duration = Duration::from_millis(10);
    loop {
        let now = Instant::now();
        let hurry = shared.kill_by();
        let mut next = now + SLICE;
        for e in ending.iter_mut().filter(|e| !e.ended && !e.killed) {
            let until = match (e.until, hurry) {
                (Some(u), Some(h)) => Some(u.min(h)),
                (u, h) => u.or(h),
            };
            match until {
                Some(u) if u <= now => {
                    let _ = e.proc.kill();
                    e.killed = true;
                }
                Some(u) => next = next.min(u),
                None => {}
            }
        }
        let pending: Vec<usize> = (0..ending.len()).filter(|&k| !ending[k].ended).collect();
        if pending.is_empty() {
            return;
        }
        let fds: Vec<_> = pending.iter().map(|&k| ending[k].proc.exit_fd()).collect();
        let ready = os::poll_readable(&fds, Some(next));
        drop(fds);
        match ready {
            Ok(r) => {
                for (n, &k) in pending.iter().enumerate() {
                    if r.get(n).copied().unwrap_or(false) {
                        // ended: its report and status are read when it is recorded
                        ending[k].ended = true;
                    }
                }
            }
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}

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
        // (a duplicate of an exit already handled finds no process with that pid)
        let alive = st.children[i]
            .proc
            .as_ref()
            .is_some_and(|p| !os::pidfd_ended(p.exit_fd()));
        if alive {
            return;
        }
        st = on_exit(shared, st, i);
        drop(st);
        shared.cv.notify_all();
    }
}

fn on_exit<'a>(
    shared: &'a Shared,
    mut st: MutexGuard<'a, State>,
    i: usize,
) -> MutexGuard<'a, State> {
    let Some(p) = st.children[i].proc.take() else {
        return st;
    };
    let (ev, ended) = reap_proc(&mut st, i, p);
    push_event(&mut st, ev);
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
        return st;
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
        return give_up(shared, st);
    }
    let set: Vec<usize> = match st.settings.strategy {
        Strategy::OneForOne => vec![i],
        Strategy::OneForAll => (0..st.children.len()).collect(),
        Strategy::RestForOne => (i..st.children.len()).collect(),
    };
    // end the others (all at once, outside the lock)…
    let others: Vec<usize> = set.iter().rev().copied().filter(|&j| j != i).collect();
    st = end_set(shared, st, &others, EndHow::Terminate, None);
    if st.status != Status::Running {
        // a shutdown came meanwhile: nothing restarts
        for &j in &set {
            if st.children[j].proc.is_none() {
                st.children[j].done = true;
                let c = &st.children[j];
                c.unit.group().mark_ended(c.member);
            }
        }
        return st;
    }
    // …then start them again in start order; temporary siblings are not restarted
    for &j in &set {
        if st.children[j].done || st.children[j].proc.is_some() {
            continue;
        }
        if j != i && st.children[j].spec.restart == Restart::Temporary {
            st.children[j].done = true;
            let c = &st.children[j];
            c.unit.group().mark_ended(c.member);
            continue;
        }
        if start_child(&mut st, j, true).is_err() {
            return give_up(shared, st);
        }
        let c = &st.children[j];
        if c.unit.group().word(cell::STOPPING).load(Ordering::Acquire) != 0 {
            c.unit.resume_stop();
        }
    }
    st
}

/// Restart intensity exceeded: the supervisor fails. Nothing restarts from now on; every
/// child is ended (all at once) and marked ended for good.
fn give_up<'a>(shared: &'a Shared, mut st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
    let n = st.restarts.len() as u32;
    push_event(&mut st, SupervisorEvent::GaveUp { restarts: n });
    st.status = Status::GaveUp;
    let set: Vec<usize> = (0..st.children.len()).rev().collect();
    st = end_set(shared, st, &set, EndHow::Terminate, None);
    for c in &mut st.children {
        c.done = true;
        c.unit.group().mark_ended(c.member);
    }
    shared.cv.notify_all();
    st
}
