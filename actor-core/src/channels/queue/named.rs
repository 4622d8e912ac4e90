//! Queues given a name (`Queue::builder().name("jobs")`): listed by this process's
//! observer (`crate::observe`) with their depth and the items put and taken so far.
//!
//! The counts cost nothing more: they are the ring's own `written` and `read` counters
//! (every queue keeps them, in shared memory, for its length), so every handle in every
//! process counts. Only the process that made the queue lists it, for as long as one
//! of its handles there lives.

use crate::observe::{self, QueueSource, Registration};
use crate::stats::QueueSnapshot;
use procactor_transports::ring::Ring;
use std::sync::Arc;

pub(super) struct Named {
    name: String,
    ring: Arc<Ring>,
    _observed: Registration,
}

impl Named {
    pub(super) fn register(name: String, ring: Arc<Ring>) -> Arc<Named> {
        Arc::new_cyclic(|weak: &std::sync::Weak<Named>| Named {
            name,
            ring,
            _observed: observe::register(observe::Source::Queue(weak.clone())),
        })
    }
}

impl QueueSource for Named {
    fn snapshot(&self) -> QueueSnapshot {
        let (puts, gets) = self.ring.counts();
        QueueSnapshot {
            name: self.name.clone(),
            depth: puts.saturating_sub(gets),
            puts,
            gets,
        }
    }
}
