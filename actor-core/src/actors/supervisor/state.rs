//! What a supervisor's threads share: its children, its recent events, its restarts,
//! and how an event is recorded.

use super::events::{EventTotals, SupervisorEvent};
use super::spec::{ChildSpec, Settings};
use super::unit::Unit;
use super::SupervisorError;
use crate::actor::{cell, ExitReport};
use crate::process::Process;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::Waker;
use std::time::Instant;

pub(super) struct Child {
    pub(super) spec: ChildSpec,
    pub(super) unit: Arc<dyn Unit>,
    pub(super) member: u32,
    pub(super) name: String,
    pub(super) proc: Option<Process<ExitReport>>,
    /// Ended for good: not restarted again.
    pub(super) done: bool,
}

impl Child {
    /// Its restarts so far, as its group's shared cell counts them (a unit started
    /// again by a restarted child supervisor keeps counting).
    pub(super) fn restarts(&self) -> u64 {
        self.unit
            .group()
            .actor_word(self.member, cell::RESTARTS)
            .load(Ordering::Acquire)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Status {
    Running,
    ShutDown,
    GaveUp,
}

pub(super) struct State {
    pub(super) name: String,
    pub(super) settings: Settings,
    pub(super) children: Vec<Child>,
    pub(super) restarts: VecDeque<Instant>,
    /// The most recent events (at most `settings.history`), oldest first.
    pub(super) events: VecDeque<SupervisorEvent>,
    pub(super) totals: EventTotals,
    /// Ends under way outside the lock (sets of children being ended by a restart, a
    /// give-up or a shutdown): `wait` reports the end of the supervisor only after them.
    pub(super) busy: usize,
    /// Where the exits of this supervisor's children go (its exit watcher).
    pub(super) route: Option<crate::monitor::ExitRoute>,
    pub(super) status: Status,
    pub(super) shutdown_requested: bool,
    pub(super) names: std::collections::HashMap<String, u32>,
    /// With `Fork`: the copy of this process, made at build, that forks the children.
    pub(super) zygote: Option<Arc<crate::forkserver::Zygote>>,
}

impl State {
    /// How the supervisor ended, once it has (`None` while it runs): `Ok` after a
    /// shutdown or once every child has ended for good, `Err(Intensity)` when it gave
    /// up. (An end under way is part of the supervisor's end: reported once recorded.)
    pub(super) fn outcome(&self) -> Option<Result<(), SupervisorError>> {
        match self.status {
            Status::GaveUp if self.busy == 0 => Some(Err(SupervisorError::Intensity {
                max_restarts: self.settings.max_restarts,
                period: self.settings.period,
            })),
            Status::ShutDown if self.busy == 0 => Some(Ok(())),
            Status::Running
                if !self.children.is_empty() && self.children.iter().all(|c| c.done) =>
            {
                Some(Ok(()))
            }
            _ => None,
        }
    }
}

pub(super) struct Shared {
    pub(super) st: Mutex<State>,
    pub(super) cv: Condvar,
    /// Set by a shutdown with a deadline: every end under way (a restart's, a
    /// give-up's) kills what is still running by then, whatever its own shutdown time.
    pub(super) kill_by: Mutex<Option<Instant>>,
    /// The tasks of `wait_async` futures, woken with the condition variable's waiters.
    pub(super) wakers: Mutex<Vec<Waker>>,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn kill_by(&self) -> Option<Instant> {
        *self.kill_by.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes every waiter of the state: the threads on `cv` and the `wait_async` tasks.
    pub(super) fn notify_all(&self) {
        self.cv.notify_all();
        let wakers = std::mem::take(&mut *self.wakers.lock().unwrap_or_else(|e| e.into_inner()));
        for w in wakers {
            w.wake();
        }
    }

    /// Brings the kill deadline of every end under way forward to `d`.
    pub(super) fn hurry(&self, d: Instant) {
        let mut k = self.kill_by.lock().unwrap_or_else(|e| e.into_inner());
        *k = Some(k.map_or(d, |k| k.min(d)));
    }
}

pub(super) fn push_event(st: &mut State, ev: SupervisorEvent) {
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
