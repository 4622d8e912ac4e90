//! What this process has that can be observed: its supervisors and named queues,
//! each registered by the layer that made it, for as long as it lives.

use crate::stats::{PoolSnapshot, QueueSnapshot, SupervisorSnapshot};
use std::sync::{Mutex, MutexGuard, Weak};

/// A supervisor running in this process, as it describes itself.
pub(crate) trait SupervisorSource: Send + Sync {
    fn snapshot(&self) -> SupervisorSnapshot;
}

/// A [`Pool`](crate::Pool) of this process.
pub(crate) trait PoolSource: Send + Sync {
    fn snapshot(&self) -> PoolSnapshot;
}

/// A named queue made in this process.
pub(crate) trait QueueSource: Send + Sync {
    fn snapshot(&self) -> QueueSnapshot;
}

pub(crate) enum Source {
    Supervisor(Weak<dyn SupervisorSource>),
    Pool(Weak<dyn PoolSource>),
    Queue(Weak<dyn QueueSource>),
}

#[derive(Default)]
pub(super) struct Registry {
    next: u64,
    /// In registration order: oldest first.
    entries: Vec<(u64, Source)>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    next: 0,
    entries: Vec::new(),
});

pub(super) fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

impl Registry {
    pub(super) fn add(&mut self, s: Source) -> u64 {
        self.next += 1;
        self.entries.push((self.next, s));
        self.next
    }

    /// Removes an entry; whether the registry is empty now.
    pub(super) fn remove(&mut self, id: u64) -> bool {
        self.entries.retain(|(i, _)| *i != id);
        self.entries.is_empty()
    }

    /// The live sources, upgraded (so that they are read without the registry's lock).
    pub(super) fn live(&self) -> Live {
        let mut l = Live::default();
        for (_, s) in &self.entries {
            match s {
                Source::Supervisor(w) => l.supervisors.extend(w.upgrade()),
                Source::Pool(w) => l.pools.extend(w.upgrade()),
                Source::Queue(w) => l.queues.extend(w.upgrade()),
            }
        }
        l
    }
}

#[derive(Default)]
pub(super) struct Live {
    pub(super) supervisors: Vec<std::sync::Arc<dyn SupervisorSource>>,
    pub(super) pools: Vec<std::sync::Arc<dyn PoolSource>>,
    pub(super) queues: Vec<std::sync::Arc<dyn QueueSource>>,
}
