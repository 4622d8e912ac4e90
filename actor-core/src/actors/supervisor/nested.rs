//! Child supervisors: a supervisor started as a child of another, in its own process,
//! and [`SupervisorRef`], the handle on one.

use super::builder::SupervisorBuilder;
use super::running::Supervisor;
use super::snapshot::child_snapshot;
use super::spec::{ChildSpec, Settings, Shutdown};
use super::state::Status;
use super::unit::{DecodeFn, SubTree, Unit, UnitWire, Via};
use super::SupervisorError;
use crate::actor::{cell, ActorState, ExitReport, Group};
use crate::codec::Encoded;
use crate::error::{EncodeError, SpawnError};
use crate::process::{start_encoded_via, Process};
use crate::sync::Event;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

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
        let mut boot = self.boot().map_err(SpawnError::Encode)?;
        // a builder that named no method: the one its parent starts its children with
        // (see `SupervisorBuilder::start_method`)
        boot.settings.method = boot.settings.method.or(via.method);
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
    fn base_name(&self) -> &str {
        &self.name
    }
    fn subtree(&self) -> Option<SubTree<'_>> {
        Some(SubTree {
            name: &self.name,
            strategy: format!("{:?}", self.settings.strategy),
            children: self.children.iter().map(|(_, u)| u.clone()).collect(),
        })
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
        shared.notify_all();
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

impl SupervisorBuilder {
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
}

impl Supervisor {
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
        // (without the children's memory and CPU: not drawn)
        if let Some(s) = child_snapshot(&*self.unit, 0, false).supervisor {
            super::tree::render_children(&mut out, "", &s.children);
        }
        out
    }

    /// Its line of its parent's [`Supervisor::snapshot`], with its subtree (read from
    /// its children's shared memory, as the parent reads it).
    pub fn snapshot(&self) -> crate::stats::ChildSnapshot {
        child_snapshot(&*self.unit, 0, true)
    }
}
