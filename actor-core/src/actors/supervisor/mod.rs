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
//!
//! # Files
//!
//! `spec` (strategies, restart types, shutdowns, child specs, a supervisor's settings),
//! `builder` ([`SupervisorBuilder`]), `running` ([`Supervisor`]: starting children,
//! shutting down, waiting), `state` (what the supervisor's threads share), `unit` (what
//! a child is: one actor, a pool of them, or a child supervisor), `pool` ([`PoolRef`]),
//! `nested` (child supervisors in their own processes, [`SupervisorRef`]), `restart`
//! (starting a child and applying the strategy when one ends), `intensity` (giving up),
//! `end` (ending a set of children at once), `events` ([`SupervisorEvent`]) and `tree`
//! (the text tree). This file holds the error and child report types they share.

mod builder;
mod end;
mod events;
mod intensity;
mod nested;
mod pool;
mod restart;
mod running;
mod snapshot;
mod spec;
mod state;
mod tree;
mod unit;

pub use builder::SupervisorBuilder;
pub use events::{EventTotals, SupervisorEvent, DEFAULT_EVENT_HISTORY};
pub use nested::SupervisorRef;
pub use pool::PoolRef;
pub use running::{Supervisor, DROP_SHUTDOWN_LIMIT, DROP_SHUTDOWN_LIMIT_PANICKING};
pub use spec::{ChildSpec, Restart, Shutdown, Strategy};

use crate::actor::ActorState;
use crate::error::SpawnError;
#[cfg(doc)]
use crate::ActorRef;
use std::time::Duration;

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
