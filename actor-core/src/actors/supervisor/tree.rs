//! The supervision tree as text, `pstree`-like, rendered from its snapshot.

use super::running::Supervisor;
use crate::stats::{duration_text, ChildSnapshot, SupervisorSnapshot};
use std::fmt::Write as _;

impl Supervisor {
    /// The live tree as text, `pstree`-like: every child with its pid, state, restarts,
    /// mailbox length and (once it has handled messages) how many and its p99 handle
    /// time; child supervisors with their own children below them. It renders
    /// [`snapshot`](Supervisor::snapshot), without the children's memory and CPU (not
    /// drawn, so not read from `/proc`).
    pub fn tree(&self) -> String {
        render(&self.shared.snapshot_with(false))
    }
}

/// `s` as text: its own line, then its children.
pub(super) fn render(s: &SupervisorSnapshot) -> String {
    let mut out = format!("{} (supervisor, pid {}, {})\n", s.name, s.pid, s.strategy);
    render_children(&mut out, "", &s.children);
    out
}

pub(super) fn render_children(out: &mut String, prefix: &str, children: &[ChildSnapshot]) {
    let n = children.len();
    for (i, c) in children.iter().enumerate() {
        let last = i + 1 == n;
        render_line(out, prefix, last, c);
        if let Some(sub) = &c.supervisor {
            let deeper = format!("{prefix}{}", if last { "   " } else { "│  " });
            render_children(out, &deeper, &sub.children);
        }
    }
}

fn render_line(out: &mut String, prefix: &str, last: bool, c: &ChildSnapshot) {
    let pid = c.pid.map_or_else(|| "-".to_string(), |p| p.to_string());
    let mut kind = if c.kind == crate::stats::ChildKind::Supervisor {
        " (supervisor)".to_string()
    } else {
        format!("  mailbox {}", c.mailbox_len)
    };
    if let Some(st) = c.stats.as_ref().filter(|s| s.handled > 0) {
        let _ = write!(
            kind,
            "  handled {}  p99 {}",
            st.handled,
            duration_text(st.handle_time.p99_ns)
        );
    }
    let _ = writeln!(
        out,
        "{prefix}{} {}  pid {pid}  {}  restarts {}{kind}",
        if last { "└─" } else { "├─" },
        c.name,
        c.state,
        c.restarts,
    );
}
