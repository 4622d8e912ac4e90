//! From snapshots to rows: the tree flattened into lines, the rates and CPU% derived from
//! two snapshots, and what is saturated or flapping, derived from the last few.
//!
//! Everything here is a pure function of the snapshots it is given (no clock, no I/O),
//! so that the whole view is unit-tested on snapshots built in memory.

use procactor::stats::{
    duration_text, ActorStats, ChildKind, ChildSnapshot, PoolSnapshot, ProcessUsage,
    ProgramSnapshot, QueueSnapshot, SupervisorSnapshot,
};
use std::collections::{HashMap, HashSet, VecDeque};

/// Refreshes kept per line: enough for [`SATURATION_REFRESHES`] and [`FLAP_REFRESHES`].
const HISTORY: usize = 6;

/// A mailbox is *saturated* when its depth grew at each of the last this many refreshes
/// (so this many + 1 snapshots, strictly increasing).
pub const SATURATION_REFRESHES: usize = 2;

/// A child is *flapping* when its restart count rose within the last this many refreshes.
pub const FLAP_REFRESHES: usize = 5;

/// What a line of the view is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A supervisor (top level, in the observed program's process, or a child one).
    Supervisor,
    /// An actor.
    Actor,
    /// A member of a pool of actors sharing one mailbox.
    Member,
    /// A `Pool` of the program.
    Pool,
    /// One worker process of a `Pool`.
    Worker,
    /// A named queue.
    Queue,
}

impl Kind {
    /// The word in the KIND column.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Supervisor => "sup",
            Kind::Actor => "actor",
            Kind::Member => "member",
            Kind::Pool => "pool",
            Kind::Worker => "worker",
            Kind::Queue => "queue",
        }
    }
}

/// One line of the view.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Identity across refreshes: the path of names under a top-level key made of the
    /// section, the name and its occurrence among the section's same-named items
    /// (`s:root#1/sub/c`, `p:pool-1#1/0`, `q:jobs#2`), so that a line keeps its
    /// history when an item listed before it goes away.
    pub key: String,
    /// The key of the line it is under (`None` at the top).
    pub parent: Option<String>,
    /// 0 supervisors, 1 pools, 2 queues: the sections keep this order whatever the sort.
    pub section: u8,
    /// Indentation level.
    pub depth: usize,
    /// Its name.
    pub name: String,
    /// What it is.
    pub kind: Kind,
    /// Its process (`None` while not running; a queue or a pool has none).
    pub pid: Option<u32>,
    /// `running`, `restarting`… (a supervisor's status, a queue's `-`).
    pub state: String,
    /// Restarts so far.
    pub restarts: Option<u64>,
    /// Messages waiting (a pool of actors: its shared mailbox; a `Pool`: tasks pending;
    /// a queue: its depth).
    pub mailbox: Option<u64>,
    /// Messages handled so far (a `Pool` worker: tasks finished; a queue: items taken).
    pub count: Option<u64>,
    /// `count` per second over the last refresh.
    pub rate: Option<f64>,
    /// 99th percentile of the time in `handle` (a worker: of its tasks), ns.
    pub p99_ns: Option<u64>,
    /// Unique set size of its process, KiB.
    pub uss_kib: Option<u64>,
    /// CPU use of its process over the last refresh, percent of one core.
    pub cpu_pct: Option<f64>,
    /// Its mailbox depth grew at each of the last [`SATURATION_REFRESHES`] refreshes.
    pub saturated: bool,
    /// Its restart count rose within the last [`FLAP_REFRESHES`] refreshes.
    pub flapping: bool,
    /// More about it, for the line under the table.
    pub detail: String,
    /// CPU time so far (for the next refresh's CPU%), ms.
    cpu_ms: Option<u64>,
}

impl Row {
    fn new(key: String, parent: Option<&str>, section: u8, depth: usize, kind: Kind) -> Row {
        Row {
            key,
            parent: parent.map(str::to_string),
            section,
            depth,
            name: String::new(),
            kind,
            pid: None,
            state: "-".to_string(),
            restarts: None,
            mailbox: None,
            count: None,
            rate: None,
            p99_ns: None,
            uss_kib: None,
            cpu_pct: None,
            saturated: false,
            flapping: false,
            detail: String::new(),
            cpu_ms: None,
        }
    }

    fn usage(&mut self, u: Option<&ProcessUsage>) {
        if let Some(u) = u {
            self.uss_kib = Some(u.uss_kib);
            self.cpu_ms = Some(u.cpu_ms);
        }
    }

    /// The NOTE column: `saturated`, `flapping`, both or nothing.
    pub fn note(&self) -> String {
        match (self.saturated, self.flapping) {
            (true, true) => "saturated flapping".to_string(),
            (true, false) => "saturated".to_string(),
            (false, true) => "flapping".to_string(),
            (false, false) => String::new(),
        }
    }
}

/// The header's figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    /// The observed program's pid.
    pub pid: u32,
    /// Its command name.
    pub command: String,
    /// When the snapshot was taken, ms since the Unix epoch.
    pub taken_at_ms: u64,
    /// Supervisors, child supervisors included.
    pub supervisors: usize,
    /// Actors, pool members included.
    pub actors: usize,
    /// `Pool`s.
    pub pools: usize,
    /// Their workers.
    pub workers: usize,
    /// Named queues.
    pub queues: usize,
    /// Restarts of every actor, pool member, child supervisor (at any depth) and Pool
    /// worker: the sum of their lines' RESTARTS (a top-level supervisor's line and a
    /// Pool's line sum lines already counted, and are left out).
    pub restarts: u64,
    /// Messages handled per second by every actor and Pool worker (`None` on the first
    /// snapshot).
    pub rate: Option<f64>,
    /// USS of the program and every process shown, KiB.
    pub uss_kib: u64,
    /// CPU of the program and every process shown, percent of one core (`None` on the
    /// first snapshot).
    pub cpu_pct: Option<f64>,
    /// Lines marked saturated.
    pub saturated: usize,
    /// Lines marked flapping.
    pub flapping: usize,
}

/// What one refresh shows: the header and the lines, in tree order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct View {
    /// The header's figures.
    pub totals: Totals,
    /// The lines, in tree order (see [`crate::app::sorted`] for the other orders).
    pub rows: Vec<Row>,
}

/// The rows of one snapshot, before anything is derived from earlier ones.
pub fn rows_of(snap: &ProgramSnapshot) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut sups = Occurrences::default();
    for s in &snap.supervisors {
        let key = sups.key("s", &s.name);
        let mut r = Row::new(key.clone(), None, 0, 0, Kind::Supervisor);
        r.name = s.name.clone();
        r.pid = Some(s.pid);
        r.state = s.status.clone();
        r.restarts = Some(s.restarts);
        r.usage(snap.usage.as_ref());
        r.detail = format!("supervisor {}, strategy {}", s.name, s.strategy);
        rows.push(r);
        children(&mut rows, s, &key, 1);
    }
    let mut pools = Occurrences::default();
    for p in &snap.pools {
        pool(&mut rows, p, pools.key("p", &p.name));
    }
    let mut queues = Occurrences::default();
    for q in &snap.queues {
        rows.push(queue(q, queues.key("q", &q.name)));
    }
    rows
}

/// How many times each name has come so far in one section of a snapshot.
#[derive(Default)]
struct Occurrences<'a>(HashMap<&'a str, usize>);

impl<'a> Occurrences<'a> {
    /// The top-level key of the next item named `name` in `section`: `s:root#1`, then
    /// `s:root#2` for a second `root` (the count never holds a `#`, so no two distinct
    /// names and counts give the same key).
    fn key(&mut self, section: &str, name: &'a str) -> String {
        let k = self.0.entry(name).or_insert(0);
        *k += 1;
        format!("{section}:{name}#{k}")
    }
}

fn children(rows: &mut Vec<Row>, sup: &SupervisorSnapshot, parent: &str, depth: usize) {
    for c in &sup.children {
        let key = format!("{parent}/{}", c.name);
        let kind = match c.kind {
            ChildKind::Actor => Kind::Actor,
            ChildKind::PoolMember { .. } => Kind::Member,
            ChildKind::Supervisor => Kind::Supervisor,
        };
        rows.push(child(c, key.clone(), parent, depth, kind));
        if let Some(s) = &c.supervisor {
            children(rows, s, &key, depth + 1);
        }
    }
}

fn child(c: &ChildSnapshot, key: String, parent: &str, depth: usize, kind: Kind) -> Row {
    let mut r = Row::new(key, Some(parent), 0, depth, kind);
    r.name = c.name.clone();
    r.pid = c.pid;
    r.state = c.state.clone();
    r.restarts = Some(c.restarts);
    r.usage(c.usage.as_ref());
    let mut detail = match &c.kind {
        ChildKind::Actor => format!("actor {}", c.name),
        ChildKind::PoolMember { pool, member } => format!("member {member} of pool {pool}"),
        ChildKind::Supervisor => match &c.supervisor {
            Some(s) => format!(
                "supervisor {}, strategy {}, {}",
                c.name, s.strategy, s.status
            ),
            None => format!("supervisor {} (its tree could not be read)", c.name),
        },
    };
    if c.kind != ChildKind::Supervisor {
        r.mailbox = Some(c.mailbox_len);
    }
    if let Some(st) = &c.stats {
        r.count = Some(st.handled);
        r.p99_ns = Some(st.handle_time.p99_ns);
        detail.push_str(&actor_detail(st));
    }
    if let Some(exit) = &c.last_exit {
        detail.push_str(&format!(" · last exit: {exit}"));
    }
    if let Some(u) = &c.usage {
        detail.push_str(&format!(" · PSS {}", fmt_kib(u.pss_kib)));
    }
    r.detail = detail;
    r
}

fn actor_detail(st: &ActorStats) -> String {
    let h = &st.handle_time;
    let w = &st.mailbox_wait;
    let mut s = format!(
        " · handled {} (calls {}, errors {}) · handle p50 {} p90 {} p99 {} max {}",
        st.handled,
        st.calls,
        st.errors,
        duration_text(h.p50_ns),
        duration_text(h.p90_ns),
        duration_text(h.p99_ns),
        duration_text(h.max_ns)
    );
    if w.count > 0 {
        s.push_str(&format!(
            " · mailbox wait p50 {} p99 {}",
            duration_text(w.p50_ns),
            duration_text(w.p99_ns)
        ));
    }
    if st.undecodable > 0 {
        s.push_str(&format!(" · undecodable {}", st.undecodable));
    }
    if let Some(up) = st.uptime_ms {
        s.push_str(&format!(" · up {}", fmt_secs(up / 1000)));
    }
    s
}

fn pool(rows: &mut Vec<Row>, p: &PoolSnapshot, key: String) {
    let mut r = Row::new(key.clone(), None, 1, 0, Kind::Pool);
    r.name = p.name.clone();
    r.state = "running".to_string();
    r.mailbox = Some(p.pending);
    r.restarts = Some(p.workers.iter().map(|w| w.restarts).sum());
    r.count = Some(p.workers.iter().map(|w| w.tasks).sum());
    r.detail = format!(
        "Pool {}: {} workers, {} tasks pending",
        p.name,
        p.workers.len(),
        p.pending
    );
    rows.push(r);
    for w in &p.workers {
        let mut r = Row::new(format!("{key}/{}", w.index), Some(&key), 1, 1, Kind::Worker);
        r.name = format!("{}[{}]", p.name, w.index);
        r.pid = w.pid;
        r.state = if w.pid.is_some() {
            "running"
        } else {
            "restarting"
        }
        .to_string();
        r.restarts = Some(w.restarts);
        r.count = Some(w.tasks);
        r.p99_ns = Some(w.task_time.p99_ns);
        r.usage(w.usage.as_ref());
        r.detail = format!(
            "worker {} of Pool {} · tasks {} (errors {}) · task p50 {} p99 {} max {}",
            w.index,
            p.name,
            w.tasks,
            w.errors,
            duration_text(w.task_time.p50_ns),
            duration_text(w.task_time.p99_ns),
            duration_text(w.task_time.max_ns)
        );
        rows.push(r);
    }
}

fn queue(q: &QueueSnapshot, key: String) -> Row {
    let mut r = Row::new(key, None, 2, 0, Kind::Queue);
    r.name = q.name.clone();
    r.mailbox = Some(q.depth);
    r.count = Some(q.gets);
    r.detail = format!(
        "queue {}: depth {}, puts {}, gets {}",
        q.name, q.depth, q.puts, q.gets
    );
    r
}

/// One line's figures at one refresh.
#[derive(Debug, Clone)]
struct Sample {
    at_ms: u64,
    pid: Option<u32>,
    count: Option<u64>,
    cpu_ms: Option<u64>,
    mailbox: Option<u64>,
    restarts: Option<u64>,
}

/// The last few snapshots' figures, per line (and the program's own, under
/// `PROGRAM_KEY`): turns each new snapshot into a [`View`].
#[derive(Debug, Default)]
pub struct Tracker {
    history: HashMap<String, VecDeque<Sample>>,
}

/// The history key of the program's own usage (its CPU% in the header). No line's key
/// is this: theirs all hold a `:`.
const PROGRAM_KEY: &str = "program";

impl Tracker {
    /// A tracker that has seen nothing.
    pub fn new() -> Tracker {
        Tracker::default()
    }

    /// Adds `s` to the history of `key` and returns the rate of its count and its CPU%
    /// since the previous sample (none on the first, or when the clock did not move),
    /// with the history.
    fn record(&mut self, key: &str, s: Sample) -> (Option<f64>, Option<f64>, &VecDeque<Sample>) {
        let h = self.history.entry(key.to_string()).or_default();
        // a snapshot not newer than the last ones replaces them (the program's clock
        // went back): rates only over time that really passed
        while h.back().is_some_and(|p| p.at_ms >= s.at_ms) {
            h.pop_back();
        }
        let (mut rate, mut cpu_pct) = (None, None);
        if let Some(prev) = h.back() {
            let dt = (s.at_ms - prev.at_ms) as f64 / 1000.0;
            if let (Some(c), Some(p)) = (s.count, prev.count) {
                rate = Some(c.saturating_sub(p) as f64 / dt);
            }
            // CPU time is per process: a new pid starts again from 0
            if let (Some(c), Some(p), true) = (s.cpu_ms, prev.cpu_ms, s.pid == prev.pid) {
                cpu_pct = Some(c.saturating_sub(p) as f64 / 10.0 / dt);
            }
        }
        h.push_back(s);
        while h.len() > HISTORY {
            h.pop_front();
        }
        (rate, cpu_pct, h)
    }

    /// The view of `snap`, with rates and CPU% over the time since the previous snapshot
    /// given (none on the first, or when the clock did not move), and the saturated and
    /// flapping marks from the last few. A line that is gone is forgotten.
    pub fn observe(&mut self, snap: &ProgramSnapshot) -> View {
        let mut rows = rows_of(snap);
        let now = snap.taken_at_ms;
        let mut seen = HashSet::new();
        for r in &mut rows {
            seen.insert(r.key.clone());
            let sample = Sample {
                at_ms: now,
                pid: r.pid,
                count: r.count,
                cpu_ms: r.cpu_ms,
                mailbox: r.mailbox,
                restarts: r.restarts,
            };
            let (rate, cpu_pct, h) = self.record(&r.key, sample);
            r.rate = rate;
            r.cpu_pct = cpu_pct;
            r.saturated = growing(h.iter().map(|s| s.mailbox));
            r.flapping = rose(h.iter().map(|s| s.restarts));
        }
        // the program's own CPU%, from the same history
        let mut program_cpu = None;
        if let Some(u) = &snap.usage {
            seen.insert(PROGRAM_KEY.to_string());
            let sample = Sample {
                at_ms: now,
                pid: Some(snap.pid),
                count: None,
                cpu_ms: Some(u.cpu_ms),
                mailbox: None,
                restarts: None,
            };
            program_cpu = self.record(PROGRAM_KEY, sample).1;
        }
        self.history.retain(|k, _| seen.contains(k));

        let mut t = Totals {
            pid: snap.pid,
            command: snap.command.clone(),
            taken_at_ms: now,
            ..Totals::default()
        };
        for r in &rows {
            match r.kind {
                Kind::Supervisor => t.supervisors += 1,
                Kind::Actor | Kind::Member => t.actors += 1,
                Kind::Pool => t.pools += 1,
                Kind::Worker => t.workers += 1,
                Kind::Queue => t.queues += 1,
            }
            if matches!(r.kind, Kind::Actor | Kind::Member | Kind::Worker) {
                if let Some(x) = r.rate {
                    *t.rate.get_or_insert(0.0) += x;
                }
            }
            // the program's own usage is on its supervisors' lines: count it once, below
            if r.kind != Kind::Supervisor || r.depth > 0 {
                t.uss_kib += r.uss_kib.unwrap_or(0);
                if let Some(x) = r.cpu_pct {
                    *t.cpu_pct.get_or_insert(0.0) += x;
                }
            }
            // each restart once: on the line of what restarted
            if matches!(r.kind, Kind::Actor | Kind::Member | Kind::Worker)
                || (r.kind == Kind::Supervisor && r.depth > 0)
            {
                t.restarts += r.restarts.unwrap_or(0);
            }
            t.saturated += r.saturated as usize;
            t.flapping += r.flapping as usize;
        }
        if let Some(u) = &snap.usage {
            t.uss_kib += u.uss_kib;
        }
        if let Some(x) = program_cpu {
            *t.cpu_pct.get_or_insert(0.0) += x;
        }
        View { totals: t, rows }
    }
}

/// Each of the last [`SATURATION_REFRESHES`] steps went up (all known).
fn growing(xs: impl DoubleEndedIterator<Item = Option<u64>>) -> bool {
    let last: Vec<Option<u64>> = xs.rev().take(SATURATION_REFRESHES + 1).collect();
    last.len() == SATURATION_REFRESHES + 1
        && last.windows(2).all(|w| match (w[0], w[1]) {
            (Some(newer), Some(older)) => newer > older,
            _ => false,
        })
}

/// The newest value is above the one [`FLAP_REFRESHES`] refreshes back (or the oldest
/// kept).
fn rose(xs: impl DoubleEndedIterator<Item = Option<u64>>) -> bool {
    let last: Vec<Option<u64>> = xs.rev().take(FLAP_REFRESHES + 1).collect();
    match (
        last.first().copied().flatten(),
        last.last().copied().flatten(),
    ) {
        (Some(newest), Some(oldest)) => last.len() > 1 && newest > oldest,
        _ => false,
    }
}

/// `512K`, `12.3M`, `1.20G` (from KiB).
pub fn fmt_kib(kib: u64) -> String {
    let x = kib as f64;
    if kib < 10 * 1024 {
        format!("{kib}K")
    } else if kib < 1024 * 1024 {
        format!("{:.1}M", x / 1024.0)
    } else {
        format!("{:.2}G", x / (1024.0 * 1024.0))
    }
}

/// A count: in full up to 9 999 999, then `12.3M`, `4.56G`.
pub fn fmt_count(n: u64) -> String {
    let x = n as f64;
    if n < 10_000_000 {
        n.to_string()
    } else if n < 10_000_000_000 {
        format!("{:.1}M", x / 1e6)
    } else {
        format!("{:.2}G", x / 1e9)
    }
}

/// A rate: `0`, `12.5`, `1234`, `45.6k`, `1.23M`.
pub fn fmt_rate(r: f64) -> String {
    if r == 0.0 {
        "0".to_string()
    } else if r < 100.0 {
        format!("{r:.1}")
    } else if r < 100_000.0 {
        format!("{r:.0}")
    } else if r < 10_000_000.0 {
        format!("{:.1}k", r / 1e3)
    } else {
        format!("{:.2}M", r / 1e6)
    }
}

/// `42s`, `3m07s`, `2h05m`, `3d04h`.
pub fn fmt_secs(s: u64) -> String {
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else if s < 86_400 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600)
    }
}

/// `15:04:05 UTC` of a time in ms since the Unix epoch.
pub fn fmt_clock(ms: u64) -> String {
    let s = ms / 1000 % 86_400;
    format!("{:02}:{:02}:{:02} UTC", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use procactor::stats::{Histogram, PoolWorkerSnapshot};

    /// An actor child with these counts.
    pub(crate) fn actor(
        name: &str,
        pid: u32,
        handled: u64,
        mailbox: u64,
        restarts: u64,
    ) -> ChildSnapshot {
        ChildSnapshot {
            name: name.to_string(),
            kind: ChildKind::Actor,
            pid: Some(pid),
            state: "running".to_string(),
            restarts,
            last_exit: (restarts > 0).then(|| "signal 9".to_string()),
            mailbox_len: mailbox,
            stats: Some(ActorStats {
                handled,
                calls: handled / 2,
                handle_time: Histogram {
                    count: handled,
                    p50_ns: 1_023,
                    p90_ns: 2_047,
                    p99_ns: 65_535,
                    max_ns: 100_000,
                    ..Histogram::default()
                },
                uptime_ms: Some(12_000),
                ..ActorStats::default()
            }),
            usage: Some(ProcessUsage {
                uss_kib: 2_048,
                pss_kib: 3_000,
                cpu_ms: handled / 10,
            }),
            supervisor: None,
        }
    }

    /// A program: `root` with `a`, `b`, two pool members `w[0]`, `w[1]` and a child
    /// supervisor `sub` with `c`; a Pool `pool-1` of two workers; a queue `jobs`.
    /// `t` seconds in, with counts growing as `t`.
    pub(crate) fn program(t: u64, mailbox_a: u64, restarts_b: u64) -> ProgramSnapshot {
        let member = |i: u32| {
            let mut m = actor(&format!("w[{i}]"), 200 + i, 100 * t, 3, 0);
            m.kind = ChildKind::PoolMember {
                pool: "w".to_string(),
                member: i,
            };
            m
        };
        let mut sub = actor("sub", 300, 0, 0, 0);
        sub.kind = ChildKind::Supervisor;
        sub.stats = None;
        sub.supervisor = Some(Box::new(SupervisorSnapshot {
            name: "sub".to_string(),
            pid: 300,
            strategy: "OneForAll".to_string(),
            status: "running".to_string(),
            restarts: 0,
            children: vec![actor("c", 301, 10 * t, 0, 0)],
        }));
        ProgramSnapshot {
            pid: 100,
            command: "observe".to_string(),
            taken_at_ms: 1_000_000 + 1000 * t,
            usage: Some(ProcessUsage {
                uss_kib: 10_000,
                pss_kib: 12_000,
                cpu_ms: 500 * t,
            }),
            supervisors: vec![SupervisorSnapshot {
                name: "root".to_string(),
                pid: 100,
                strategy: "OneForOne".to_string(),
                status: "running".to_string(),
                restarts: restarts_b,
                children: vec![
                    actor("a", 101, 1000 * t, mailbox_a, 0),
                    actor("b", 102 + restarts_b as u32, 50 * t, 0, restarts_b),
                    member(0),
                    member(1),
                    sub,
                ],
            }],
            pools: vec![PoolSnapshot {
                name: "pool-1".to_string(),
                pending: 7,
                workers: (0..2)
                    .map(|i| PoolWorkerSnapshot {
                        index: i,
                        pid: Some(400 + i),
                        tasks: 20 * t,
                        errors: 0,
                        restarts: 0,
                        task_time: Histogram {
                            p99_ns: 2_000_000,
                            ..Histogram::default()
                        },
                        usage: None,
                    })
                    .collect(),
            }],
            queues: vec![QueueSnapshot {
                name: "jobs".to_string(),
                depth: 5,
                puts: 30 * t + 5,
                gets: 30 * t,
            }],
        }
    }

    fn row<'a>(v: &'a View, name: &str) -> &'a Row {
        v.rows.iter().find(|r| r.name == name).expect(name)
    }

    #[test]
    fn the_tree_is_flattened_in_order_with_depths() {
        let rows = rows_of(&program(1, 0, 0));
        let got: Vec<(usize, &str, Kind)> = rows
            .iter()
            .map(|r| (r.depth, r.name.as_str(), r.kind))
            .collect();
        assert_eq!(
            got,
            [
                (0, "root", Kind::Supervisor),
                (1, "a", Kind::Actor),
                (1, "b", Kind::Actor),
                (1, "w[0]", Kind::Member),
                (1, "w[1]", Kind::Member),
                (1, "sub", Kind::Supervisor),
                (2, "c", Kind::Actor),
                (0, "pool-1", Kind::Pool),
                (1, "pool-1[0]", Kind::Worker),
                (1, "pool-1[1]", Kind::Worker),
                (0, "jobs", Kind::Queue),
            ]
        );
        assert_eq!(rows[6].parent.as_deref(), Some("s:root#1/sub"));
        assert_eq!(rows[7].mailbox, Some(7), "a Pool's pending tasks");
        assert_eq!(rows[10].mailbox, Some(5), "a queue's depth");
    }

    #[test]
    fn rates_and_cpu_come_from_two_snapshots() {
        let mut t = Tracker::new();
        let v = t.observe(&program(1, 0, 0));
        assert_eq!(row(&v, "a").rate, None, "one snapshot has no rate");
        assert_eq!(v.totals.rate, None);
        let v = t.observe(&program(3, 0, 0));
        // a: 1000 msgs per second of snapshot time, 100 ms CPU per second = 10%
        assert_eq!(row(&v, "a").rate, Some(1000.0));
        assert_eq!(row(&v, "a").cpu_pct, Some(10.0));
        assert_eq!(row(&v, "pool-1[1]").rate, Some(20.0));
        assert_eq!(row(&v, "jobs").rate, Some(30.0));
        // actors 1000 + 50 + 100 + 100 + 10, workers 20 + 20
        assert_eq!(v.totals.rate, Some(1300.0));
        // b restarted between the snapshots (new pid): its CPU time started again
        let v = t.observe(&program(4, 0, 1));
        assert_eq!(row(&v, "b").cpu_pct, None);
        assert_eq!(row(&v, "a").cpu_pct, Some(10.0));
        // the program's 500 ms per second counts in the total
        assert!(v.totals.cpu_pct.unwrap() >= 50.0);
        assert_eq!(v.totals.actors, 5);
        assert_eq!(v.totals.supervisors, 2);
        assert_eq!(
            (v.totals.pools, v.totals.workers, v.totals.queues),
            (1, 2, 1)
        );
        assert_eq!(v.totals.restarts, 1);
    }

    #[test]
    fn a_line_keeps_its_history_when_an_earlier_item_goes() {
        // before the program's items: a supervisor early, a Pool pool-0, a queue
        // early-q; after them a second root and a second jobs
        let more = |t: u64| {
            let mut p = program(t, 0, 0);
            let root = p.supervisors[0].clone();
            let mut early = root.clone();
            early.name = "early".to_string();
            early.children = vec![actor("x", 500, 7 * t, 0, 0)];
            p.supervisors.insert(0, early);
            p.supervisors.push(root);
            let mut pool = p.pools[0].clone();
            pool.name = "pool-0".to_string();
            p.pools.insert(0, pool);
            let jobs = p.queues[0].clone();
            let mut early_q = jobs.clone();
            early_q.name = "early-q".to_string();
            p.queues.insert(0, early_q);
            p.queues.push(jobs);
            p
        };
        let rows = rows_of(&more(1));
        let keys: Vec<&str> = rows
            .iter()
            .filter(|r| r.depth == 0)
            .map(|r| r.key.as_str())
            .collect();
        assert_eq!(
            keys,
            [
                "s:early#1",
                "s:root#1",
                "s:root#2",
                "p:pool-0#1",
                "p:pool-1#1",
                "q:early-q#1",
                "q:jobs#1",
                "q:jobs#2"
            ]
        );
        let mut t = Tracker::new();
        t.observe(&more(1));
        // early, pool-0, early-q and the second root and jobs go: the lines that stay
        // keep their history (with positional keys, each had moved up one place and
        // started again without a rate)
        let v = t.observe(&program(2, 0, 0));
        assert_eq!(row(&v, "a").rate, Some(1000.0));
        assert_eq!(row(&v, "c").rate, Some(10.0), "under root/sub");
        assert_eq!(row(&v, "pool-1").rate, Some(40.0));
        assert_eq!(row(&v, "pool-1[0]").rate, Some(20.0));
        assert_eq!(row(&v, "jobs").rate, Some(30.0));
    }

    #[test]
    fn the_program_cpu_comes_from_its_own_history() {
        // nothing but the program's own usage: 500 ms of CPU a second
        let bare = |t: u64| ProgramSnapshot {
            supervisors: vec![],
            pools: vec![],
            queues: vec![],
            ..program(t, 0, 0)
        };
        let mut t = Tracker::new();
        assert_eq!(t.observe(&bare(1)).totals.cpu_pct, None, "one snapshot");
        assert_eq!(t.observe(&bare(3)).totals.cpu_pct, Some(50.0));
        // the same snapshot again replaces the last one: CPU% over the one before
        assert_eq!(t.observe(&bare(3)).totals.cpu_pct, Some(50.0));
        // the clock back two refreshes: no CPU%, no panic; then again from there
        assert_eq!(t.observe(&bare(1)).totals.cpu_pct, None);
        assert_eq!(t.observe(&bare(2)).totals.cpu_pct, Some(50.0));
        // another program under the same pid (a new pid): its CPU time starts again
        let mut p = bare(4);
        p.pid = 101;
        assert_eq!(t.observe(&p).totals.cpu_pct, None);
    }

    #[test]
    fn the_restart_total_counts_children_of_child_supervisors() {
        let mut p = program(1, 0, 1);
        // sub's child c restarted twice, sub itself (as root's child) once; root counts
        // only its direct children's restarts, sub its own
        let sub = &mut p.supervisors[0].children[4];
        sub.restarts = 1;
        let inner = sub.supervisor.as_mut().unwrap();
        inner.restarts = 2;
        inner.children[0].restarts = 2;
        p.supervisors[0].restarts = 2;
        // and a Pool worker once
        p.pools[0].workers[1].restarts = 1;
        let v = Tracker::new().observe(&p);
        // b 1, sub 1, c 2, the worker 1
        assert_eq!(v.totals.restarts, 5);
    }

    #[test]
    fn a_growing_mailbox_is_saturated_and_rising_restarts_flap() {
        let mut t = Tracker::new();
        let v = t.observe(&program(1, 1, 0));
        assert!(!row(&v, "a").saturated);
        let v = t.observe(&program(2, 5, 0));
        assert!(!row(&v, "a").saturated, "one rise is not a trend");
        let v = t.observe(&program(3, 9, 0));
        assert!(row(&v, "a").saturated);
        assert_eq!(row(&v, "a").note(), "saturated");
        assert_eq!(v.totals.saturated, 1);
        let v = t.observe(&program(4, 9, 0));
        assert!(!row(&v, "a").saturated, "a steady depth is not saturated");
        assert!(!row(&v, "w[0]").saturated, "a constant depth never is");

        let v = t.observe(&program(5, 0, 1));
        assert!(row(&v, "b").flapping);
        assert!(
            row(&v, "root").flapping,
            "the supervisor's restarts rose too"
        );
        assert!(row(&v, "b").detail.contains("last exit: signal 9"));
        for i in 6..6 + FLAP_REFRESHES as u64 - 1 {
            let v = t.observe(&program(i, 0, 1));
            assert!(row(&v, "b").flapping, "still within the window at {i}");
        }
        let v = t.observe(&program(6 + FLAP_REFRESHES as u64, 0, 1));
        assert!(!row(&v, "b").flapping, "calm again");
    }

    #[test]
    fn a_stale_or_repeated_snapshot_gives_no_nonsense() {
        let mut t = Tracker::new();
        t.observe(&program(2, 0, 0));
        let v = t.observe(&program(2, 0, 0));
        assert_eq!(row(&v, "a").rate, None, "no time passed");
        let v = t.observe(&program(1, 0, 0));
        assert_eq!(row(&v, "a").rate, None, "the clock went back");
        let v = t.observe(&program(2, 0, 0));
        assert_eq!(row(&v, "a").rate, Some(1000.0));
        // back by more than one refresh: no rate, and no panic on a negative time
        t.observe(&program(3, 0, 0));
        let v = t.observe(&program(1, 0, 0));
        assert_eq!(row(&v, "a").rate, None, "the clock went back two refreshes");
        assert_eq!(row(&v, "a").cpu_pct, None);
        let v = t.observe(&program(2, 0, 0));
        assert_eq!(row(&v, "a").rate, Some(1000.0));
        // counts that go down (a program restarted under the same pid) give 0, not a wrap
        let mut p = program(3, 0, 0);
        p.supervisors[0].children[0].stats.as_mut().unwrap().handled = 0;
        let v = t.observe(&p);
        assert_eq!(row(&v, "a").rate, Some(0.0));
    }

    #[test]
    fn formats() {
        // durations: procactor::stats::duration_text, as Supervisor::tree prints them
        assert_eq!(duration_text(850), "850ns");
        assert_eq!(duration_text(12_345), "12.3µs");
        assert_eq!(duration_text(4_500_000), "4.5ms");
        assert_eq!(duration_text(1_200_000_000), "1.2s");
        assert_eq!(fmt_kib(512), "512K");
        assert_eq!(fmt_kib(12_600), "12.3M");
        assert_eq!(fmt_count(1234), "1234");
        assert_eq!(fmt_count(12_345_678), "12.3M");
        assert_eq!(fmt_rate(0.0), "0");
        assert_eq!(fmt_rate(12.54), "12.5");
        assert_eq!(fmt_rate(1234.4), "1234");
        assert_eq!(fmt_rate(456_000.0), "456.0k");
        assert_eq!(fmt_secs(187), "3m07s");
        assert_eq!(fmt_clock(1_000 * (15 * 3600 + 4 * 60 + 5)), "15:04:05 UTC");
    }
}
