//! How children are supervised (strategy, restart type, shutdown, child spec) and a
//! supervisor's settings.

use crate::runtime::StartMethod;
use serde::{Deserialize, Serialize};
use std::time::Duration;

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
    pub(super) name: Option<String>,
    pub(super) restart: Restart,
    pub(super) shutdown: Shutdown,
    /// One message in this many is timed (`None`: [`DEFAULT_TIME_EVERY`](crate::actor::DEFAULT_TIME_EVERY)).
    #[serde(default)]
    pub(super) time_every: Option<u32>,
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
    /// Times one message in `every` (default [`DEFAULT_TIME_EVERY`](crate::actor::DEFAULT_TIME_EVERY), 16): its sender
    /// stamps it and the actor records how long it waited in the mailbox and how long
    /// `handle` took, in the histograms of its [`ActorStats`](crate::stats::ActorStats)
    /// (see [`Supervisor::snapshot`](crate::Supervisor::snapshot)). `1` times every
    /// message (three clock reads more per message: ~0.1 µs on a small VM), `0` none.
    /// The counts (handled, calls, errors) are exact whatever this says.
    ///
    /// # Examples
    ///
    /// ```
    /// use procactor::ChildSpec;
    /// let every_message = ChildSpec::new().name("billing").time_every(1);
    /// # let _ = every_message;
    /// ```
    pub fn time_every(mut self, every: u32) -> Self {
        self.time_every = Some(every);
        self
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(super) struct Settings {
    pub(super) strategy: Strategy,
    pub(super) max_restarts: u32,
    pub(super) period: Duration,
    /// How its children start (`None`: the process-wide default; a child supervisor's
    /// is its parent's, filled in when the parent starts it).
    pub(super) method: Option<StartMethod>,
    /// How many events [`Supervisor::events`] keeps (the most recent ones).
    pub(super) history: usize,
}
