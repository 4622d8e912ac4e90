//! [`Supervisor`]: the supervisor running in this process — starting children,
//! reporting them, shutting down, waiting.

use super::end::{end_set, EndHow};
use super::events::{EventTotals, SupervisorEvent};
use super::pool::{pool_unit, PoolRef};
use super::restart::{on_exit_event, start_child};
use super::spec::{ChildSpec, Settings};
use super::state::{push_event, Child, Shared, State, Status};
use super::unit::{base_name, ActorUnit, Unit};
use super::{ChildInfo, SupervisorError};
use crate::actor::ActorState;
use crate::error::SpawnError;
use crate::monitor::ExitWatcher;
use crate::process::Process;
use crate::runtime;
use crate::{ActorRef, ProcessActor};
use procactor_transports::deadline::Deadline;
use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A supervisor running in this process: it starts actors as child processes and
/// restarts them by its strategy. See the [module docs](crate::supervisor).
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
    pub(super) shared: Arc<Shared>,
    pub(super) watcher: Option<ExitWatcher>,
    /// Its place among what this process shows (`crate::observe`): dropped (the
    /// supervisor unlisted) after `drop` has shut its children down.
    _observed: crate::observe::Registration,
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

impl Supervisor {
    pub(super) fn start_with(
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
            wakers: Mutex::new(Vec::new()),
            kill_by: Mutex::new(None),
        });
        let sh = shared.clone();
        let (watcher, route) =
            ExitWatcher::start_routed("procactor-supervisor", move |ev| on_exit_event(&sh, ev))
                .map_err(SpawnError::Io)?;
        shared.lock().route = Some(route);
        // (after the zygote: with `Fork` it must be made before the process has threads)
        let weak: std::sync::Weak<Shared> = Arc::downgrade(&shared);
        let observed = crate::observe::register(crate::observe::Source::Supervisor(weak));
        let sup = Supervisor {
            shared,
            watcher: Some(watcher),
            _observed: observed,
        };
        for (spec, unit) in units {
            if let Err(e) = sup.add_unit(spec, unit) {
                sup.shutdown_children(None);
                return Err(e);
            }
        }
        Ok(sup)
    }

    pub(super) fn add_unit(
        &self,
        spec: ChildSpec,
        unit: Arc<dyn Unit>,
    ) -> Result<(), SupervisorError> {
        let mut st = self.shared.lock();
        if st.status != Status::Running {
            return Err(SupervisorError::NotRunning);
        }
        let first = st.children.len();
        if let Some(every) = spec.time_every {
            unit.group().set_time_every(every);
        }
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

    pub(super) fn unique_name(&self, base: &str) -> String {
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
    /// [`event_history`](crate::SupervisorBuilder::event_history) of them (default 1000; older
    /// ones are dropped, and counted in [`event_totals`](Supervisor::event_totals)).
    pub fn events(&self) -> Vec<SupervisorEvent> {
        self.shared.lock().events.iter().cloned().collect()
    }

    /// How many events of each kind happened since the supervisor started, including
    /// those [`events`](Supervisor::events) no longer keeps.
    pub fn event_totals(&self) -> EventTotals {
        self.shared.lock().totals
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

    pub(super) fn shutdown_children(&self, deadline: Option<Instant>) {
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
        self.shared.notify_all();
    }

    /// Ends every child now, all at once, by its shutdown spec, without the graceful
    /// mailbox stop: a child supervisor about to be restarted by its parent does this,
    /// so its children's mailboxes wait for their next incarnation.
    pub(super) fn terminate_children(&self) {
        let mut st = self.shared.lock();
        if st.status == Status::Running {
            st.status = Status::ShutDown;
            let set: Vec<usize> = (0..st.children.len()).rev().collect();
            st = end_set(&self.shared, st, &set, EndHow::Terminate, None);
            for c in &st.children {
                c.unit.group().set_state(c.member, ActorState::Restarting);
            }
        }
        self.shared.notify_all();
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

    /// As [`wait`](Supervisor::wait), as a future: waits without blocking a thread, on
    /// any executor, until the supervisor has ended. For a timeout, wrap it in the
    /// runtime's own (`tokio::time::timeout`).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only watches; dropping it changes nothing.
    ///
    /// # Errors
    ///
    /// As [`wait`](Supervisor::wait): [`SupervisorError::Intensity`].
    pub async fn wait_async(&self) -> Result<(), SupervisorError> {
        std::future::poll_fn(|cx| {
            let st = self.shared.lock();
            if let Some(r) = st.outcome() {
                return std::task::Poll::Ready(r);
            }
            // (registered under the state lock, which every change takes before it
            // notifies: no change can slip between the look and the registration)
            let mut w = self.shared.wakers.lock().unwrap_or_else(|e| e.into_inner());
            if !w.iter().any(|x| x.will_wake(cx.waker())) {
                w.push(cx.waker().clone());
            }
            std::task::Poll::Pending
        })
        .await
    }

    fn wait_deadline(&self, deadline: Option<Instant>) -> Result<(), SupervisorError> {
        let mut st = self.shared.lock();
        loop {
            if let Some(r) = st.outcome() {
                return r;
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
        // (`_observed` goes with the fields, after this)
    }
}
