//! [`Supervisor::snapshot`]: the whole tree as data ([`crate::stats`]), read from the
//! shared cells of the children's mailbox groups and from `/proc`.
//!
//! A child supervisor runs in its own process, but its children's units (their mailbox
//! groups: pid, state, restarts, statistics) are shared memory that this process holds
//! too (they were made here and travelled to it): its subtree is read here, directly,
//! with no request to its process. So a snapshot sends no request to another process
//! and works with the observe socket turned off. It does take the supervisor's state
//! lock (briefly, to copy the list of children), and a (re)start of a child holds that
//! lock while the child's process is started: a snapshot taken then waits for that
//! start. What only the child supervisor's process knows (whether it gave up, for one)
//! shows as its state as a child instead.

use super::running::Supervisor;
use super::state::{Shared, Status};
use super::unit::{SubTree, Unit};
use crate::actor::{cell, decode_status, ActorState};
use crate::observe::{self, SupervisorSource};
use crate::stats::{ChildKind, ChildSnapshot, SupervisorSnapshot};
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl Supervisor {
    /// The whole tree as data: every child (a pool of actors as its members) with its
    /// pid, state, restarts, last exit, mailbox length, statistics and its process's
    /// memory and CPU; child supervisors with their own children, recursively.
    ///
    /// A child supervisor's subtree is read from the shared memory of its children's
    /// mailboxes (see the module source): no request to its process. Its `status` is
    /// then its state as a child (`starting`, `running`, `restarting`, `ended`). The
    /// supervisor's state lock is taken to copy the list of children: a snapshot taken
    /// while a child is being (re)started waits for that start to finish.
    ///
    /// # Examples
    ///
    /// ```
    /// use procactor::Supervisor;
    ///
    /// fn main() {
    ///     procactor::init();
    ///     let sup = Supervisor::builder().name("root").build().unwrap();
    ///     let s = sup.snapshot();
    ///     assert_eq!((s.name.as_str(), s.status.as_str()), ("root", "running"));
    ///     assert!(s.children.is_empty());
    /// }
    /// ```
    pub fn snapshot(&self) -> SupervisorSnapshot {
        self.shared.snapshot()
    }
}

impl SupervisorSource for Shared {
    fn snapshot(&self) -> SupervisorSnapshot {
        self.snapshot_with(true)
    }
}

impl Shared {
    /// The snapshot; `with_usage`: read each running child's memory and CPU from
    /// `/proc` (two files per child: what [`Supervisor::tree`], which shows none of it,
    /// does without).
    pub(super) fn snapshot_with(&self, with_usage: bool) -> SupervisorSnapshot {
        // (copied under the lock, read without it: a restart under way holds nobody up)
        let (name, strategy, status, children) = {
            let st = self.lock();
            let status = match st.status {
                Status::Running => "running",
                Status::ShutDown => "shut down",
                Status::GaveUp => "gave up",
            };
            let children: Vec<(Arc<dyn Unit>, u32)> = st
                .children
                .iter()
                .map(|c| (c.unit.clone(), c.member))
                .collect();
            (
                st.name.clone(),
                format!("{:?}", st.settings.strategy),
                status.to_string(),
                children,
            )
        };
        let children: Vec<ChildSnapshot> = children
            .iter()
            .map(|(u, m)| child_snapshot(&**u, *m, with_usage))
            .collect();
        SupervisorSnapshot {
            name,
            pid: std::process::id(),
            strategy,
            status,
            restarts: children.iter().map(|c| c.restarts).sum(),
            children,
        }
    }
}

/// One member of a unit (`with_usage`: with its memory and CPU, read from `/proc`).
pub(super) fn child_snapshot(u: &dyn Unit, m: u32, with_usage: bool) -> ChildSnapshot {
    let g = u.group();
    let state = g.state(m);
    let pid = match state {
        ActorState::Running => g.pid(m),
        _ => None,
    };
    let sub = u.subtree();
    let kind = if sub.is_some() {
        ChildKind::Supervisor
    } else if u.members() > 1 {
        ChildKind::PoolMember {
            pool: u.base_name().to_string(),
            member: m,
        }
    } else {
        ChildKind::Actor
    };
    ChildSnapshot {
        name: u.member_name(m),
        kind,
        pid,
        state: state.to_string(),
        restarts: g.actor_word(m, cell::RESTARTS).load(Ordering::Acquire),
        last_exit: decode_status(g.actor_word(m, cell::EXIT).load(Ordering::Acquire))
            .map(|s| s.to_string()),
        mailbox_len: u.mailbox_len() as u64,
        stats: (!u.is_supervisor()).then(|| g.actor_stats(m)),
        usage: pid
            .filter(|_| with_usage)
            .and_then(|p| observe::usage(Some(p))),
        supervisor: sub.map(|t| Box::new(subtree_snapshot(t, pid, state, with_usage))),
    }
}

/// A child supervisor's tree as its parent reads it (`pid` 0 when it is not running).
fn subtree_snapshot(
    t: SubTree<'_>,
    pid: Option<u32>,
    state: ActorState,
    with_usage: bool,
) -> SupervisorSnapshot {
    let mut children = Vec::new();
    for u in &t.children {
        for m in 0..u.members() {
            children.push(child_snapshot(&**u, m, with_usage));
        }
    }
    SupervisorSnapshot {
        name: t.name.to_string(),
        pid: pid.unwrap_or(0),
        strategy: t.strategy,
        status: state.to_string(),
        restarts: children.iter().map(|c| c.restarts).sum(),
        children,
    }
}
