//! A program's snapshot through the [`metrics`] crate facade (cargo feature `metrics`),
//! so that whatever exporter the program installs (Prometheus, StatsD, OpenTelemetry…)
//! shows its supervision trees, pools and named queues.
//!
//! The actors run in other processes; their figures are in shared memory and reach
//! this process in its [`ProgramSnapshot`]. So the publishing happens here, from
//! snapshots: [`publish`] sets every metric from one snapshot (counters to their
//! absolute values, gauges to theirs), and [`Publisher::start`] does it from a thread
//! every interval with this process's [`snapshot`](super::snapshot).
//!
//! # Names and labels
//!
//! Labels: `supervisor` (the path of supervisor names from the top, `root/sub`),
//! `actor` (an actor's name; for a member of a pool of actors the pool's name, with
//! `member` its index), `pool` (a [`Pool`](crate::Pool)'s name, with `member` the
//! worker's index), `queue` (a named queue's name).
//!
//! Top-level supervisors of one program may share a name (every unnamed one is
//! `supervisor`): so that each has series of its own, the second of a name is published
//! as `name#2`, the third `name#3`, and so on, in the snapshot's order (the order they
//! were started in), and the paths of their children supervisors start with that.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `procactor_actor_handled_total`, `_calls_total`, `_errors_total`, `_undecodable_total`, `_restarts_total` | counter | supervisor, actor, (member) |
//! | `procactor_actor_up` (1 running, 0 not), `procactor_actor_uptime_seconds` | gauge | supervisor, actor, (member) |
//! | `procactor_actor_handle_seconds`, `procactor_actor_mailbox_wait_seconds` | gauge per `quantile` (`0.5`, `0.9`, `0.99`, `1` = max) | supervisor, actor, (member), quantile |
//! | `procactor_actor_mailbox_depth` | gauge | supervisor, actor (a pool's shared mailbox once, without `member`) |
//! | `procactor_supervisor_restarts_total` (of its children) | counter | supervisor |
//! | `procactor_supervisor_process_restarts_total` (a child supervisor's own process, restarted by its parent) | counter | supervisor |
//! | `procactor_supervisor_children`, `procactor_supervisor_up` (1 running) | gauge | supervisor |
//! | `procactor_pool_pending` | gauge | pool |
//! | `procactor_pool_tasks_total`, `_task_errors_total`, `_worker_restarts_total` | counter | pool, member |
//! | `procactor_pool_task_seconds` | gauge per `quantile` | pool, member, quantile |
//! | `procactor_queue_depth` | gauge | queue |
//! | `procactor_queue_puts_total`, `procactor_queue_gets_total` | counter | queue |
//! | `procactor_process_uss_bytes`, `procactor_process_pss_bytes` | gauge | those of its actor, child supervisor or worker; none for the program itself |
//! | `procactor_process_cpu_milliseconds_total` | counter | the same |
//!
//! # Durations: quantile gauges, not histogram samples
//!
//! An actor keeps its handle times as counts per power-of-two bucket
//! ([`crate::stats::Histogram`]); the snapshot carries them with their p50/p90/p99/max.
//! They are published as one gauge per quantile (the Prometheus *summary* shape), not
//! replayed into a `metrics` histogram: a busy actor handles millions of messages a
//! second, and a histogram handle takes its samples one by one (exporters such as
//! `metrics-exporter-prometheus` keep every sample until the next scrape), which would
//! cost the observing process time and memory in proportion to the actors' traffic.
//! The quantiles are the snapshot's: within a factor of two, which is what the buckets
//! know.
//!
//! # Examples
//!
//! ```
//! use procactor_core::stats::{ProgramSnapshot, QueueSnapshot};
//!
//! // with no recorder installed, publishing does nothing (and costs little)
//! let snap = ProgramSnapshot {
//!     queues: vec![QueueSnapshot { name: "jobs".into(), depth: 3, puts: 10, gets: 7 }],
//!     ..ProgramSnapshot::default()
//! };
//! procactor_core::observe::metrics::publish(&snap);
//! ```

use crate::stats::{
    ChildKind, ChildSnapshot, Histogram, ProcessUsage, ProgramSnapshot, SupervisorSnapshot,
};
use metrics::{counter, describe_counter, describe_gauge, gauge, Label, Unit};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Sets every metric from `snap` through the installed `metrics` recorder (see the
/// module docs for the names and labels). Counters are set to the snapshot's absolute
/// counts, so publishing the same snapshot twice changes nothing.
///
/// Only what the snapshot holds is set: the series of an actor, supervisor, pool or
/// queue that is gone (stopped, renamed, dropped) are not removed, and the recorder
/// keeps showing their last values for as long as it lives. Expiring them is the
/// exporter's business: `metrics-exporter-prometheus`, for one, drops series not
/// updated for a while with `PrometheusBuilder::idle_timeout` (a few publishing
/// intervals; `examples/observe.rs` uses three).
pub fn publish(snap: &ProgramSnapshot) {
    describe();
    if let Some(u) = &snap.usage {
        usage(&[], u);
    }
    let mut seen: Vec<&str> = Vec::with_capacity(snap.supervisors.len());
    for s in &snap.supervisors {
        let k = 1 + seen.iter().filter(|n| **n == s.name).count();
        seen.push(&s.name);
        if k == 1 {
            supervisor(s, &s.name);
        } else {
            supervisor(s, &format!("{}#{k}", s.name));
        }
    }
    for p in &snap.pools {
        let pool = vec![Label::new("pool", p.name.clone())];
        gauge!("procactor_pool_pending", pool.iter()).set(p.pending as f64);
        for w in &p.workers {
            let mut l = pool.clone();
            l.push(Label::new("member", w.index.to_string()));
            counter!("procactor_pool_tasks_total", l.iter()).absolute(w.tasks);
            counter!("procactor_pool_task_errors_total", l.iter()).absolute(w.errors);
            counter!("procactor_pool_worker_restarts_total", l.iter()).absolute(w.restarts);
            quantiles("procactor_pool_task_seconds", &l, &w.task_time);
            if let Some(u) = &w.usage {
                usage(&l, u);
            }
        }
    }
    for q in &snap.queues {
        let l = [Label::new("queue", q.name.clone())];
        gauge!("procactor_queue_depth", l.iter()).set(q.depth as f64);
        counter!("procactor_queue_puts_total", l.iter()).absolute(q.puts);
        counter!("procactor_queue_gets_total", l.iter()).absolute(q.gets);
    }
}

fn supervisor(s: &SupervisorSnapshot, path: &str) {
    let l = vec![Label::new("supervisor", path.to_string())];
    counter!("procactor_supervisor_restarts_total", l.iter()).absolute(s.restarts);
    gauge!("procactor_supervisor_children", l.iter()).set(s.children.len() as f64);
    gauge!("procactor_supervisor_up", l.iter()).set(f64::from(u8::from(s.status == "running")));
    let mut pool_mailboxes_done: Vec<&str> = Vec::new();
    for c in &s.children {
        match &c.kind {
            ChildKind::Supervisor => {
                let sub = format!("{path}/{}", c.name);
                let own = [Label::new("supervisor", sub.clone())];
                counter!("procactor_supervisor_process_restarts_total", own.iter())
                    .absolute(c.restarts);
                if let Some(u) = &c.usage {
                    usage(&own, u);
                }
                if let Some(inner) = &c.supervisor {
                    supervisor(inner, &sub);
                }
            }
            ChildKind::Actor => actor(c, &l, &c.name, None),
            ChildKind::PoolMember { pool, member } => {
                actor(c, &l, pool, Some(*member));
                // the members share one mailbox: its depth once per pool
                if !pool_mailboxes_done.contains(&pool.as_str()) {
                    pool_mailboxes_done.push(pool);
                    let mut m = l.clone();
                    m.push(Label::new("actor", pool.clone()));
                    gauge!("procactor_actor_mailbox_depth", m.iter()).set(c.mailbox_len as f64);
                }
            }
        }
    }
}

fn actor(c: &ChildSnapshot, sup: &[Label], name: &str, member: Option<u32>) {
    let mut l = sup.to_vec();
    l.push(Label::new("actor", name.to_string()));
    if let Some(m) = member {
        l.push(Label::new("member", m.to_string()));
    } else {
        gauge!("procactor_actor_mailbox_depth", l.iter()).set(c.mailbox_len as f64);
    }
    counter!("procactor_actor_restarts_total", l.iter()).absolute(c.restarts);
    gauge!("procactor_actor_up", l.iter()).set(f64::from(u8::from(c.state == "running")));
    if let Some(st) = &c.stats {
        counter!("procactor_actor_handled_total", l.iter()).absolute(st.handled);
        counter!("procactor_actor_calls_total", l.iter()).absolute(st.calls);
        counter!("procactor_actor_errors_total", l.iter()).absolute(st.errors);
        counter!("procactor_actor_undecodable_total", l.iter()).absolute(st.undecodable);
        quantiles("procactor_actor_handle_seconds", &l, &st.handle_time);
        quantiles("procactor_actor_mailbox_wait_seconds", &l, &st.mailbox_wait);
        gauge!("procactor_actor_uptime_seconds", l.iter())
            .set(st.uptime_ms.map_or(0.0, |ms| ms as f64 / 1e3));
    }
    if let Some(u) = &c.usage {
        usage(&l, u);
    }
}

/// One gauge per quantile (`0.5`, `0.9`, `0.99`, and `1` for the max), in seconds; none
/// for a histogram that has counted nothing (it has no quantiles).
fn quantiles(name: &'static str, labels: &[Label], h: &Histogram) {
    if h.count == 0 {
        return;
    }
    for (q, ns) in [
        ("0.5", h.p50_ns),
        ("0.9", h.p90_ns),
        ("0.99", h.p99_ns),
        ("1", h.max_ns),
    ] {
        let mut l = labels.to_vec();
        l.push(Label::new("quantile", q));
        gauge!(name, l.iter()).set(ns as f64 / 1e9);
    }
}

fn usage(labels: &[Label], u: &ProcessUsage) {
    gauge!("procactor_process_uss_bytes", labels.iter()).set((u.uss_kib * 1024) as f64);
    gauge!("procactor_process_pss_bytes", labels.iter()).set((u.pss_kib * 1024) as f64);
    counter!("procactor_process_cpu_milliseconds_total", labels.iter()).absolute(u.cpu_ms);
}

/// Units and descriptions, for the exporters that show them (`# HELP` lines).
fn describe() {
    let counters: [(&'static str, Unit, &'static str); 13] = [
        (
            "procactor_actor_handled_total",
            Unit::Count,
            "Messages and calls an actor handled",
        ),
        (
            "procactor_actor_calls_total",
            Unit::Count,
            "Calls (request/reply) an actor handled",
        ),
        (
            "procactor_actor_errors_total",
            Unit::Count,
            "handle/started returned Err or panicked",
        ),
        (
            "procactor_actor_undecodable_total",
            Unit::Count,
            "Undecodable messages skipped",
        ),
        (
            "procactor_actor_restarts_total",
            Unit::Count,
            "Restarts of an actor",
        ),
        (
            "procactor_supervisor_restarts_total",
            Unit::Count,
            "Restarts of a supervisor's children",
        ),
        (
            "procactor_supervisor_process_restarts_total",
            Unit::Count,
            "Restarts of a child supervisor's own process",
        ),
        (
            "procactor_pool_tasks_total",
            Unit::Count,
            "Tasks a Pool worker finished",
        ),
        (
            "procactor_pool_task_errors_total",
            Unit::Count,
            "Tasks whose function failed",
        ),
        (
            "procactor_pool_worker_restarts_total",
            Unit::Count,
            "New processes for a Pool worker's place",
        ),
        (
            "procactor_queue_puts_total",
            Unit::Count,
            "Items put on a named queue",
        ),
        (
            "procactor_queue_gets_total",
            Unit::Count,
            "Items taken from a named queue",
        ),
        (
            "procactor_process_cpu_milliseconds_total",
            Unit::Milliseconds,
            "User + system CPU time of a process",
        ),
    ];
    for (name, unit, what) in counters {
        describe_counter!(name, unit, what);
    }
    let gauges: [(&'static str, Unit, &'static str); 12] = [
        (
            "procactor_actor_up",
            Unit::Count,
            "1 while the actor's process runs",
        ),
        (
            "procactor_actor_uptime_seconds",
            Unit::Seconds,
            "Since the actor's current process started its loop",
        ),
        (
            "procactor_actor_handle_seconds",
            Unit::Seconds,
            "Time in handle, by quantile (within a factor of two)",
        ),
        (
            "procactor_actor_mailbox_wait_seconds",
            Unit::Seconds,
            "Time a message waited in the mailbox, by quantile",
        ),
        (
            "procactor_actor_mailbox_depth",
            Unit::Count,
            "Messages waiting in an actor's (or a pool's) mailbox",
        ),
        (
            "procactor_supervisor_children",
            Unit::Count,
            "Children of a supervisor",
        ),
        (
            "procactor_supervisor_up",
            Unit::Count,
            "1 while the supervisor runs",
        ),
        (
            "procactor_pool_pending",
            Unit::Count,
            "Tasks submitted to a Pool and not finished",
        ),
        (
            "procactor_pool_task_seconds",
            Unit::Seconds,
            "Time a Pool worker spent on a task, by quantile",
        ),
        (
            "procactor_queue_depth",
            Unit::Count,
            "Items in a named queue",
        ),
        (
            "procactor_process_uss_bytes",
            Unit::Bytes,
            "Unique set size of a process",
        ),
        (
            "procactor_process_pss_bytes",
            Unit::Bytes,
            "Proportional set size of a process",
        ),
    ];
    for (name, unit, what) in gauges {
        describe_gauge!(name, unit, what);
    }
}

/// The shortest interval a [`Publisher`] publishes at (as `procactor-top`'s shortest
/// `--interval`): a shorter one asked for is raised to this.
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// A thread that [`publish`]es a snapshot every interval; dropping it (or
/// [`stop`](Publisher::stop)) ends the thread.
#[derive(Debug)]
pub struct Publisher {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Publisher {
    /// Publishes this process's [`snapshot`](super::snapshot) now and then every
    /// `every` (at least [`MIN_INTERVAL`]: a shorter one, zero included, is raised to
    /// it), through the global recorder (install the exporter first), until the
    /// returned handle is dropped or stopped.
    ///
    /// # Errors
    ///
    /// The thread could not be started.
    pub fn start(every: Duration) -> std::io::Result<Publisher> {
        Publisher::start_with(every, super::snapshot)
    }

    /// Publishes `source()` now and then every `every` (at least [`MIN_INTERVAL`]: a
    /// shorter one, zero included, is raised to it, so that the thread never spins a
    /// core), through the global recorder (install the exporter first), until the
    /// returned handle is dropped or stopped.
    ///
    /// # Errors
    ///
    /// The thread could not be started.
    pub fn start_with<F>(every: Duration, mut source: F) -> std::io::Result<Publisher>
    where
        F: FnMut() -> ProgramSnapshot + Send + 'static,
    {
        let every = every.max(MIN_INTERVAL);
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("procactor-metrics".into())
            .spawn(move || loop {
                publish(&source());
                match stopped.recv_timeout(every) {
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
            })?;
        Ok(Publisher {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Ends the thread and waits for it (it is between two publishes, or finishing one).
    pub fn stop(mut self) {
        self.end();
    }

    fn end(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{ActorStats, PoolSnapshot, PoolWorkerSnapshot, QueueSnapshot};
    use metrics::{
        Counter, CounterFn, Gauge, GaugeFn, Key, KeyName, Metadata, Recorder, SharedString,
    };
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    /// Metric values by `name{k=v,…}` (labels sorted), as a recorder was last told.
    #[derive(Default)]
    struct TestRecorder {
        values: Arc<Mutex<BTreeMap<String, f64>>>,
        described: Arc<Mutex<Vec<String>>>,
    }

    struct Cell(Arc<Mutex<BTreeMap<String, f64>>>, String);

    impl CounterFn for Cell {
        fn increment(&self, v: u64) {
            *self.0.lock().unwrap().entry(self.1.clone()).or_default() += v as f64;
        }
        fn absolute(&self, v: u64) {
            self.0.lock().unwrap().insert(self.1.clone(), v as f64);
        }
    }

    impl GaugeFn for Cell {
        fn increment(&self, v: f64) {
            *self.0.lock().unwrap().entry(self.1.clone()).or_default() += v;
        }
        fn decrement(&self, v: f64) {
            *self.0.lock().unwrap().entry(self.1.clone()).or_default() -= v;
        }
        fn set(&self, v: f64) {
            self.0.lock().unwrap().insert(self.1.clone(), v);
        }
    }

    fn id(key: &Key) -> String {
        let mut labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        format!("{}{{{}}}", key.name(), labels.join(","))
    }

    impl Recorder for TestRecorder {
        fn describe_counter(&self, k: KeyName, _: Option<metrics::Unit>, _: SharedString) {
            self.described.lock().unwrap().push(k.as_str().to_string());
        }
        fn describe_gauge(&self, k: KeyName, _: Option<metrics::Unit>, _: SharedString) {
            self.described.lock().unwrap().push(k.as_str().to_string());
        }
        fn describe_histogram(&self, k: KeyName, _: Option<metrics::Unit>, _: SharedString) {
            self.described.lock().unwrap().push(k.as_str().to_string());
        }
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            Counter::from_arc(Arc::new(Cell(self.values.clone(), id(key))))
        }
        fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::from_arc(Arc::new(Cell(self.values.clone(), id(key))))
        }
        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> metrics::Histogram {
            panic!("no histogram is published")
        }
    }

    fn hist(p50: u64, p99: u64, max: u64) -> Histogram {
        Histogram {
            count: 10,
            p50_ns: p50,
            p90_ns: p50,
            p99_ns: p99,
            max_ns: max,
            buckets: Vec::new(),
        }
    }

    fn child(name: &str, kind: ChildKind, handled: u64, mailbox: u64) -> ChildSnapshot {
        ChildSnapshot {
            name: name.into(),
            kind,
            pid: Some(7),
            state: "running".into(),
            restarts: 2,
            last_exit: None,
            mailbox_len: mailbox,
            stats: Some(ActorStats {
                handled,
                calls: 4,
                errors: 1,
                undecodable: 0,
                handle_time: hist(1_000, 2_000_000, 3_000_000),
                mailbox_wait: Histogram::default(),
                uptime_ms: Some(1_500),
            }),
            usage: Some(ProcessUsage {
                uss_kib: 100,
                pss_kib: 150,
                cpu_ms: 42,
            }),
            supervisor: None,
        }
    }

    fn snapshot() -> ProgramSnapshot {
        let member = |i| {
            child(
                &format!("w[{i}]"),
                ChildKind::PoolMember {
                    pool: "w".into(),
                    member: i,
                },
                10 + u64::from(i),
                6,
            )
        };
        let mut sub = child("sub", ChildKind::Supervisor, 0, 0);
        sub.stats = None;
        sub.supervisor = Some(Box::new(SupervisorSnapshot {
            name: "sub".into(),
            pid: 8,
            strategy: "OneForOne".into(),
            status: "running".into(),
            restarts: 0,
            children: vec![child("c", ChildKind::Actor, 5, 0)],
        }));
        ProgramSnapshot {
            pid: 1,
            command: "t".into(),
            taken_at_ms: 0,
            usage: Some(ProcessUsage {
                uss_kib: 1000,
                pss_kib: 1100,
                cpu_ms: 9,
            }),
            supervisors: vec![SupervisorSnapshot {
                name: "root".into(),
                pid: 1,
                strategy: "OneForOne".into(),
                status: "running".into(),
                restarts: 3,
                children: vec![
                    child("a", ChildKind::Actor, 100, 9),
                    member(0),
                    member(1),
                    sub,
                ],
            }],
            pools: vec![PoolSnapshot {
                name: "pool-1".into(),
                pending: 4,
                workers: vec![PoolWorkerSnapshot {
                    index: 0,
                    pid: Some(9),
                    tasks: 17,
                    errors: 2,
                    restarts: 1,
                    task_time: hist(5_000, 8_000, 9_000),
                    usage: None,
                }],
            }],
            queues: vec![QueueSnapshot {
                name: "jobs".into(),
                depth: 3,
                puts: 10,
                gets: 7,
            }],
        }
    }

    fn published(snap: &ProgramSnapshot) -> (BTreeMap<String, f64>, Vec<String>) {
        let r = TestRecorder::default();
        metrics::with_local_recorder(&r, || publish(snap));
        let v = r.values.lock().unwrap().clone();
        let d = r.described.lock().unwrap().clone();
        (v, d)
    }

    #[test]
    fn every_figure_is_published_with_its_labels() {
        let (v, described) = published(&snapshot());
        let get = |k: &str| *v.get(k).unwrap_or_else(|| panic!("{k} not in {v:#?}"));
        // a plain actor
        let a = "supervisor=root";
        assert_eq!(
            get(&format!("procactor_actor_handled_total{{actor=a,{a}}}")),
            100.0
        );
        assert_eq!(
            get(&format!("procactor_actor_calls_total{{actor=a,{a}}}")),
            4.0
        );
        assert_eq!(
            get(&format!("procactor_actor_errors_total{{actor=a,{a}}}")),
            1.0
        );
        assert_eq!(
            get(&format!("procactor_actor_restarts_total{{actor=a,{a}}}")),
            2.0
        );
        assert_eq!(
            get(&format!("procactor_actor_mailbox_depth{{actor=a,{a}}}")),
            9.0
        );
        assert_eq!(get(&format!("procactor_actor_up{{actor=a,{a}}}")), 1.0);
        assert_eq!(
            get(&format!("procactor_actor_uptime_seconds{{actor=a,{a}}}")),
            1.5
        );
        assert_eq!(
            get(&format!(
                "procactor_actor_handle_seconds{{actor=a,quantile=0.99,{a}}}"
            )),
            0.002
        );
        assert_eq!(
            get(&format!(
                "procactor_actor_handle_seconds{{actor=a,quantile=1,{a}}}"
            )),
            0.003
        );
        assert_eq!(
            get(&format!(
                "procactor_actor_handle_seconds{{actor=a,quantile=0.5,{a}}}"
            )),
            0.000001
        );
        assert!(
            !v.keys()
                .any(|k| k.starts_with("procactor_actor_mailbox_wait_seconds")),
            "an empty histogram has no quantiles"
        );
        assert_eq!(
            get(&format!("procactor_process_uss_bytes{{actor=a,{a}}}")),
            102_400.0
        );
        assert_eq!(
            get(&format!("procactor_process_pss_bytes{{actor=a,{a}}}")),
            153_600.0
        );
        assert_eq!(
            get(&format!(
                "procactor_process_cpu_milliseconds_total{{actor=a,{a}}}"
            )),
            42.0
        );
        // pool members: one series each, the shared mailbox once
        assert_eq!(
            get("procactor_actor_handled_total{actor=w,member=1,supervisor=root}"),
            11.0
        );
        assert_eq!(
            get("procactor_actor_mailbox_depth{actor=w,supervisor=root}"),
            6.0
        );
        assert!(!v.contains_key("procactor_actor_mailbox_depth{actor=w,member=0,supervisor=root}"));
        // supervisors, the child one by its path
        assert_eq!(
            get("procactor_supervisor_restarts_total{supervisor=root}"),
            3.0
        );
        assert_eq!(get("procactor_supervisor_children{supervisor=root}"), 4.0);
        assert_eq!(get("procactor_supervisor_up{supervisor=root/sub}"), 1.0);
        assert_eq!(
            get("procactor_supervisor_process_restarts_total{supervisor=root/sub}"),
            2.0
        );
        assert_eq!(
            get("procactor_process_uss_bytes{supervisor=root/sub}"),
            102_400.0
        );
        assert_eq!(
            get("procactor_actor_handled_total{actor=c,supervisor=root/sub}"),
            5.0
        );
        // the Pool, the queue, the program itself
        assert_eq!(get("procactor_pool_pending{pool=pool-1}"), 4.0);
        assert_eq!(
            get("procactor_pool_tasks_total{member=0,pool=pool-1}"),
            17.0
        );
        assert_eq!(
            get("procactor_pool_task_errors_total{member=0,pool=pool-1}"),
            2.0
        );
        assert_eq!(
            get("procactor_pool_worker_restarts_total{member=0,pool=pool-1}"),
            1.0
        );
        assert_eq!(
            get("procactor_pool_task_seconds{member=0,pool=pool-1,quantile=0.99}"),
            0.000008
        );
        assert_eq!(get("procactor_queue_depth{queue=jobs}"), 3.0);
        assert_eq!(get("procactor_queue_puts_total{queue=jobs}"), 10.0);
        assert_eq!(get("procactor_queue_gets_total{queue=jobs}"), 7.0);
        assert_eq!(get("procactor_process_uss_bytes{}"), 1_024_000.0);
        assert_eq!(get("procactor_process_cpu_milliseconds_total{}"), 9.0);
        // every name published is described
        for k in v.keys() {
            let name = k.split('{').next().unwrap();
            assert!(
                described.iter().any(|d| d == name),
                "{name} has no description"
            );
        }
    }

    #[test]
    fn counters_are_absolute_so_publishing_again_changes_nothing() {
        let r = TestRecorder::default();
        let snap = snapshot();
        metrics::with_local_recorder(&r, || {
            publish(&snap);
            publish(&snap);
        });
        let v = r.values.lock().unwrap().clone();
        assert_eq!(
            v["procactor_actor_handled_total{actor=a,supervisor=root}"],
            100.0
        );
        let mut later = snap.clone();
        later.queues[0].gets = 9;
        metrics::with_local_recorder(&r, || publish(&later));
        let v = r.values.lock().unwrap().clone();
        assert_eq!(v["procactor_queue_gets_total{queue=jobs}"], 9.0);
    }

    #[test]
    fn same_named_supervisors_get_series_of_their_own() {
        let mut snap = snapshot();
        let mut other = snap.supervisors[0].clone();
        other.restarts = 11;
        other.children.truncate(1); // `a`
        other.children[0].stats.as_mut().unwrap().handled = 55;
        snap.supervisors.push(other.clone());
        other.restarts = 12;
        snap.supervisors.push(other);
        let (v, _) = published(&snap);
        assert_eq!(
            v["procactor_supervisor_restarts_total{supervisor=root}"],
            3.0
        );
        assert_eq!(
            v["procactor_supervisor_restarts_total{supervisor=root#2}"],
            11.0
        );
        assert_eq!(
            v["procactor_supervisor_restarts_total{supervisor=root#3}"],
            12.0
        );
        assert_eq!(
            v["procactor_actor_handled_total{actor=a,supervisor=root}"],
            100.0
        );
        assert_eq!(
            v["procactor_actor_handled_total{actor=a,supervisor=root#2}"],
            55.0
        );
        assert_eq!(v["procactor_supervisor_children{supervisor=root}"], 4.0);
        assert_eq!(v["procactor_supervisor_children{supervisor=root#2}"], 1.0);
    }

    #[test]
    fn a_zero_interval_is_raised_to_the_floor() {
        let calls = Arc::new(Mutex::new(0u32));
        let c = calls.clone();
        let p = Publisher::start_with(Duration::ZERO, move || {
            *c.lock().unwrap() += 1;
            ProgramSnapshot::default()
        })
        .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        p.stop();
        let n = *calls.lock().unwrap();
        // at most one every 10 ms (plus the first): a spinning thread makes thousands
        assert!((1..=25).contains(&n), "{n} publishes in 200 ms");
    }

    #[test]
    fn a_publisher_publishes_until_stopped() {
        // the thread publishes to the global recorder: none here, so count the calls
        let calls = Arc::new(Mutex::new(0u32));
        let c = calls.clone();
        let p = Publisher::start_with(Duration::from_millis(10), move || {
            *c.lock().unwrap() += 1;
            snapshot()
        })
        .unwrap();
        let t0 = std::time::Instant::now();
        while *calls.lock().unwrap() < 3 {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "publishes every 10 ms"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        p.stop();
        let n = *calls.lock().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(*calls.lock().unwrap(), n, "nothing after stop");
    }
}
