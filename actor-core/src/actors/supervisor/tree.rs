//! The supervision tree as text, `pstree`-like.

use super::running::Supervisor;
use super::unit::Unit;
use crate::actor::{cell, ActorState};
use std::fmt::Write as _;
use std::sync::atomic::Ordering;

impl Supervisor {
    /// The live tree as text, `pstree`-like: every child with its pid, state, restarts
    /// and mailbox length, child supervisors with their own children below them.
    pub fn tree(&self) -> String {
        let st = self.shared.lock();
        let mut out = format!(
            "{} (supervisor, pid {}, {:?})\n",
            st.name,
            std::process::id(),
            st.settings.strategy
        );
        let n = st.children.len();
        for (i, c) in st.children.iter().enumerate() {
            let last = i + 1 == n;
            render_line(&mut out, "", last, &*c.unit, c.member);
            c.unit
                .render_children(&mut out, if last { "   " } else { "│  " });
        }
        out
    }
}

pub(super) fn render_line(out: &mut String, prefix: &str, last: bool, u: &dyn Unit, m: u32) {
    let g = u.group();
    let state = g.state(m);
    let pid = match (state, g.pid(m)) {
        (ActorState::Running, Some(p)) => p.to_string(),
        _ => "-".to_string(),
    };
    let restarts = g.actor_word(m, cell::RESTARTS).load(Ordering::Acquire);
    let kind = if u.is_supervisor() {
        " (supervisor)".to_string()
    } else {
        format!("  mailbox {}", u.mailbox_len())
    };
    let _ = writeln!(
        out,
        "{prefix}{} {}  pid {pid}  {state}  restarts {restarts}{kind}",
        if last { "└─" } else { "├─" },
        u.member_name(m),
    );
}
