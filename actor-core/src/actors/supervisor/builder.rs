//! [`SupervisorBuilder`]: a supervisor's settings and the children it starts with.

use super::events::DEFAULT_EVENT_HISTORY;
use super::pool::{pool_unit, PoolRef};
use super::running::Supervisor;
use super::spec::{ChildSpec, Settings, Strategy};
use super::unit::{base_name, ActorUnit, Unit};
use super::SupervisorError;
use crate::runtime::StartMethod;
use crate::{ActorRef, ProcessActor};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Builds a [`Supervisor`], or the spec of a child supervisor (see
/// [`Supervisor::spawn_supervisor`]). Children added with [`add`](SupervisorBuilder::add)
/// start when the supervisor starts, in the order added.
pub struct SupervisorBuilder {
    pub(super) name: String,
    pub(super) settings: Settings,
    pub(super) children: Vec<(ChildSpec, Arc<dyn Unit>)>,
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

    /// How its children start, and restart. Default: the method set for the process
    /// ([`set_start_method`](crate::set_start_method) or `PROCACTOR_START_METHOD`), or,
    /// when none was set, [`StartMethod::ForkServer`]: a restart forks a small server
    /// rather than executing the whole binary again (about 0.3 ms instead of 1–1.5 ms).
    /// The method given here is always honoured (`Spawn` included), and so is one set
    /// for the process. With the fork-server default the supervisor checks, when it
    /// starts, that the server has this process's current environment and working
    /// directory (replacing it otherwise): its children start with those. A restart
    /// starts with what the process's one server has then: a later change reaches it
    /// only once a new server is brought up (by a later default build, for instance),
    /// for every owner at once (see [`StartMethod`]).
    ///
    /// A child supervisor (see [`add_supervisor`](SupervisorBuilder::add_supervisor) and
    /// [`Supervisor::spawn_supervisor`]) starts its own children with the method its own
    /// builder names, or, when its builder names none, with the method its parent
    /// supervisor starts its children with (the one named on the parent's builder, or
    /// the parent's default as chosen when the parent started): a whole tree follows
    /// the root's method unless a builder below names another, which then holds for
    /// that subtree. It is passed in the child supervisor's start, and again at each of
    /// its restarts: so a method set for the root's process
    /// ([`set_start_method`](crate::set_start_method)), which the process of a spawned or
    /// fork-server child does not have, reaches the whole tree too. A child supervisor
    /// runs in a process of its own, so with `ForkServer` it runs a fork server of its
    /// own there (with the spare that server forks ahead), and with `Fork` a zygote of
    /// its own (see below).
    ///
    /// `Fork`: the supervisor, when it starts, forks a copy of its process (a *zygote*,
    /// which stays single-threaded) before it starts any thread, and the zygote forks
    /// every child and every restart, so they see the supervisor's process as it was
    /// then. That start needs a single-threaded process and fails clearly otherwise (a
    /// child supervisor told `Fork`, or taking it from its parent, makes its own zygote,
    /// in its own process, which is single-threaded at that point). `ForkServer` is the
    /// fast choice with threads.
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

    /// Starts the supervisor (in this process) and the children added so far.
    ///
    /// # Errors
    ///
    /// A child could not be started (the ones started are ended again).
    pub fn build(self) -> Result<Supervisor, SupervisorError> {
        Supervisor::start_with(self.name, self.settings, self.children)
    }
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
}
