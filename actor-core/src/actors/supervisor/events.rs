//! What happens to a supervisor's children: events and their totals.

use crate::ExitStatus;

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

/// The default of [`SupervisorBuilder::event_history`](crate::SupervisorBuilder::event_history).
pub const DEFAULT_EVENT_HISTORY: usize = 1000;

/// How many events of each kind a supervisor has emitted since it started
/// ([`Supervisor::event_totals`](crate::Supervisor::event_totals)), including those no longer kept by
/// [`Supervisor::events`](crate::Supervisor::events).
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
