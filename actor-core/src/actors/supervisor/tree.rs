//! The supervision tree as text, `pstree`-like, rendered from its snapshot.

use super::running::Supervisor;
use crate::stats::{duration_text, ChildSnapshot, SupervisorSnapshot};
use std::fmt::Write as _;

impl Supervisor {
    /// The live tree as text, `pstree`-like: every child with its pid, state, restarts,
    /// mailbox length and (once it has handled messages) how many and, once some were
    /// timed (a sample: see [`ChildSpec::time_every`](crate::ChildSpec::time_every)), its
    /// p99 handle time; child supervisors with their own children below them. It renders
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
        let _ = write!(kind, "  handled {}", st.handled);
        // (timed messages are a sample: one in 16 by default, so a few handled may
        // have none; no sample, no p99 rather than "0ns")
        if st.handle_time.count > 0 {
            let _ = write!(kind, "  p99 {}", duration_text(st.handle_time.p99_ns));
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{ActorStats, ChildKind, Histogram};

    fn actor(name: &str, handled: u64, timed: u64) -> ChildSnapshot {
        ChildSnapshot {
            name: name.into(),
            kind: ChildKind::Actor,
            pid: Some(42),
            state: "running".into(),
            restarts: 0,
            last_exit: None,
            mailbox_len: 0,
            stats: Some(ActorStats {
                handled,
                handle_time: Histogram {
                    count: timed,
                    p99_ns: if timed > 0 { 1_500 } else { 0 },
                    max_ns: if timed > 0 { 1_500 } else { 0 },
                    ..Histogram::default()
                },
                ..ActorStats::default()
            }),
            usage: None,
            supervisor: None,
        }
    }

    #[test]
    fn a_line_shows_p99_only_once_some_messages_were_timed() {
        let s = SupervisorSnapshot {
            name: "root".into(),
            pid: 7,
            strategy: "OneForOne".into(),
            status: "running".into(),
            restarts: 0,
            children: vec![
                actor("idle", 0, 0),
                actor("fresh", 3, 0),
                actor("busy", 40, 2),
            ],
        };
        let text = render(&s);
        let line = |name: &str| text.lines().find(|l| l.contains(name)).unwrap().to_string();
        assert!(!line("idle").contains("handled"), "{text}");
        assert!(line("fresh").ends_with("handled 3"), "{text}");
        assert!(line("busy").ends_with("handled 40  p99 1.5µs"), "{text}");
    }
}
