//! What a running program shows of itself (issue 24): the data of a snapshot, and the
//! histogram that actors keep in shared memory.
//!
//! These are plain serde types, the contract between a program and whoever observes it
//! (`Supervisor::snapshot`, the observe socket, `procactor-top --json`, the `metrics`
//! facade). They use nothing layered, so every layer may fill in its part: the actors
//! layer the per-actor statistics, the channels layer a named queue's counts, the
//! observer the figures it reads from `/proc`.
//!
//! A histogram of durations is kept as [`HISTOGRAM_BUCKETS`] counters, one per power of
//! two of nanoseconds (bucket `b` counts durations in `[2^b, 2^(b+1))` ns, bucket 0 also
//! takes 0 ns, the last bucket everything longer), plus the largest value seen. The one
//! writer is the actor's process (`actors/actor/counters.rs`: relaxed atomics, no lock,
//! no syscall); a reader copies the words (`Group::histogram`) and makes a [`Histogram`]
//! with [`Histogram::from_buckets`]: quantiles to within a factor of two, which is what
//! "is this actor's p99 10 µs or 10 ms" needs.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};

/// Buckets of a duration histogram: powers of two from 1 ns to 2^39 ns (~9 minutes).
pub const HISTOGRAM_BUCKETS: usize = 40;

/// The bucket a duration of `ns` nanoseconds is counted in.
#[inline]
pub fn bucket_of(ns: u64) -> usize {
    let b = 63 - (ns | 1).leading_zeros() as usize;
    b.min(HISTOGRAM_BUCKETS - 1)
}

/// One writer's increment of a counter in shared memory: a load and a store, no
/// read-modify-write (each counter has a single writing process at a time: an actor's
/// own process, a Pool worker in its slot).
#[inline]
pub(crate) fn bump(w: &AtomicU64) {
    w.store(w.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
}

/// The words of one histogram in shared memory: [`HISTOGRAM_BUCKETS`] counters and the
/// largest value so far.
pub(crate) type HistogramWords<'a> = [&'a AtomicU64; HISTOGRAM_BUCKETS + 1];

/// One writer records one duration of `ns` nanoseconds (see [`bump`]).
#[inline]
pub(crate) fn record(h: &HistogramWords<'_>, ns: u64) {
    bump(h[bucket_of(ns)]);
    let max = h[HISTOGRAM_BUCKETS];
    if ns > max.load(Ordering::Relaxed) {
        max.store(ns, Ordering::Relaxed);
    }
}

/// Reads a histogram from its words in shared memory: `word(i)` loads word `i` of the
/// layout [`record`] writes ([`HISTOGRAM_BUCKETS`] counters, then the largest value).
pub(crate) fn read_histogram(word: impl Fn(usize) -> u64) -> Histogram {
    let buckets = (0..HISTOGRAM_BUCKETS).map(&word).collect();
    Histogram::from_buckets(buckets, word(HISTOGRAM_BUCKETS))
}

/// A duration histogram as a reader sees it: the count, quantiles and the largest value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Histogram {
    /// Durations recorded.
    pub count: u64,
    /// Median, in nanoseconds (the upper edge of its bucket, at most `max_ns`).
    pub p50_ns: u64,
    /// 90th percentile, in nanoseconds (same rounding).
    pub p90_ns: u64,
    /// 99th percentile, in nanoseconds (same rounding).
    pub p99_ns: u64,
    /// The largest duration recorded, in nanoseconds.
    pub max_ns: u64,
    /// The counters, one per power of two of nanoseconds (see the module docs): what a
    /// `metrics` histogram or a merge of several histograms needs.
    pub buckets: Vec<u64>,
}

impl Histogram {
    /// The histogram of these bucket counts and this largest value.
    ///
    /// The counters may come from another process (shared memory, a peer's snapshot):
    /// any words are accepted, sums saturate at `u64::MAX` rather than overflow.
    pub fn from_buckets(buckets: Vec<u64>, max_ns: u64) -> Histogram {
        let count: u64 = buckets.iter().fold(0u64, |a, &n| a.saturating_add(n));
        let q = |p: u64| -> u64 {
            if count == 0 {
                return 0;
            }
            // the smallest bucket whose running total reaches p% of the count (in
            // u128: `count * p` does not fit a u64 for counts near u64::MAX)
            let want = (u128::from(count) * u128::from(p)).div_ceil(100).max(1);
            let mut seen = 0u128;
            for (b, n) in buckets.iter().enumerate() {
                seen += u128::from(*n);
                if seen >= want {
                    let upper = if b >= 63 {
                        u64::MAX
                    } else {
                        (1u64 << (b + 1)) - 1
                    };
                    return upper.min(max_ns.max(1));
                }
            }
            max_ns
        };
        Histogram {
            count,
            p50_ns: q(50),
            p90_ns: q(90),
            p99_ns: q(99),
            max_ns,
            buckets,
        }
    }
}

/// An actor's own statistics (one member of a pool: its own), kept in the mailbox
/// group's shared memory and written by the actor's process.
///
/// Counts are per child, across restarts (they are not reset when the process is
/// started again); `uptime_ms` is the current incarnation's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorStats {
    /// Messages and calls handled (`handle` returned, `Ok` or `Err`).
    pub handled: u64,
    /// Of them, calls (request/reply).
    pub calls: u64,
    /// `handle` (or `started`) returned `Err` or panicked.
    pub errors: u64,
    /// Undecodable messages skipped.
    pub undecodable: u64,
    /// Time spent in `handle`.
    pub handle_time: Histogram,
    /// Time a message waited in the mailbox (from the sender's put to the actor's take).
    pub mailbox_wait: Histogram,
    /// Since the current process started its loop (`None` while not running).
    pub uptime_ms: Option<u64>,
}

/// Memory and CPU of one process as the observer reads them from `/proc/<pid>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessUsage {
    /// Unique set size (private clean + private dirty, `smaps_rollup`), KiB: what the
    /// process alone holds. Not RSS, which counts shared memory in every process.
    pub uss_kib: u64,
    /// Proportional set size (`smaps_rollup`), KiB.
    pub pss_kib: u64,
    /// User + system CPU time so far (`stat` fields 14 and 15), milliseconds. A viewer
    /// derives CPU% from two snapshots.
    pub cpu_ms: u64,
}

/// What kind of child a line of the tree is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChildKind {
    /// One actor.
    Actor,
    /// One member of a pool of actors sharing a mailbox.
    PoolMember {
        /// The pool's name.
        pool: String,
        /// The member's index in it.
        member: u32,
    },
    /// A child supervisor (its own children are in [`ChildSnapshot::supervisor`]).
    Supervisor,
}

/// One child of a supervisor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildSnapshot {
    /// Its name (a pool member's: `pool-1`, `pool-2`, … as [`crate::Supervisor::children`]
    /// names them).
    pub name: String,
    /// What it is.
    pub kind: ChildKind,
    /// Its current pid (`None` while not running).
    pub pid: Option<u32>,
    /// `starting`, `running`, `restarting` or `ended` (as [`crate::ActorState`] displays).
    pub state: String,
    /// Restarts so far.
    pub restarts: u64,
    /// How its last process ended (`exit code 1`, `signal 9`), `None` before any end.
    pub last_exit: Option<String>,
    /// Messages waiting in its mailbox (shared by a pool's members).
    pub mailbox_len: u64,
    /// The actor's statistics (`None` for a child supervisor).
    pub stats: Option<ActorStats>,
    /// Its process's memory and CPU (`None` when not running or unreadable).
    pub usage: Option<ProcessUsage>,
    /// A child supervisor's own tree (`None` for actors, or when it could not be read).
    pub supervisor: Option<Box<SupervisorSnapshot>>,
}

/// One supervisor and everything below it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupervisorSnapshot {
    /// Its name.
    pub name: String,
    /// The process it runs in; 0 for a child supervisor that is not running now
    /// (starting, restarting or ended: it has no process).
    pub pid: u32,
    /// `OneForOne`, `OneForAll` or `RestForOne`.
    pub strategy: String,
    /// `running`, `shut down` or `gave up`; a child supervisor read from its parent's
    /// side (see [`crate::Supervisor::snapshot`]): its state as a child (`starting`,
    /// `running`, `restarting`, `ended`).
    pub status: String,
    /// Restarts of its children so far.
    pub restarts: u64,
    /// Its children, in start order.
    pub children: Vec<ChildSnapshot>,
}

/// A queue given a name (`Queue::builder().name("jobs")`), as every handle of it counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSnapshot {
    /// Its name.
    pub name: String,
    /// Items in it now.
    pub depth: u64,
    /// Items put so far (all processes).
    pub puts: u64,
    /// Items taken so far (all processes).
    pub gets: u64,
}

/// One worker slot of a [`Pool`](crate::Pool). The counts and the histogram are written
/// by the worker process in the slot's shared cell and add up over every process that
/// held the slot (a replacement goes on counting).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolWorkerSnapshot {
    /// Its index in the pool.
    pub index: u32,
    /// Its current pid (`None` between a death and its replacement).
    pub pid: Option<u32>,
    /// Tasks it finished (items of `map` and friends, one per `apply`/`apply_async`).
    pub tasks: u64,
    /// Of them, tasks whose function panicked ([`TaskError::Panicked`](crate::TaskError)).
    /// A function returning `Err` is not counted: its `Err` is the task's value. A chunk
    /// that failed as a whole in the worker (arguments it could not decode, say) counts
    /// as one task and one error. Tasks lost with a dying worker are not counted here
    /// (the worker did not finish them): see `restarts`.
    pub errors: u64,
    /// Times this slot was given a new process (after a death, or recycled by
    /// `maxtasksperchild`).
    pub restarts: u64,
    /// Time each chunk took to run in the worker (every chunk is timed; `apply_async`'s
    /// chunk is one task, `map`'s chunks hold `chunksize` tasks).
    pub task_time: Histogram,
    /// Its process's memory and CPU.
    pub usage: Option<ProcessUsage>,
}

/// A [`Pool`](crate::Pool) of this program (none is listed yet: see
/// [`ProgramSnapshot::pools`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolSnapshot {
    /// Its name ([`PoolBuilder::name`](crate::PoolBuilder::name); default `pool-<n>`).
    pub name: String,
    /// Chunks submitted and not yet finished (queued, in a worker's ring or running).
    pub pending: u64,
    /// Its workers.
    pub workers: Vec<PoolWorkerSnapshot>,
}

/// Everything one program shows: what `procactor-top` displays and `--json` prints.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramSnapshot {
    /// The program's pid.
    pub pid: u32,
    /// Its command name (`/proc/<pid>/comm`).
    pub command: String,
    /// When the snapshot was taken, milliseconds since the Unix epoch.
    pub taken_at_ms: u64,
    /// The program's own memory and CPU.
    pub usage: Option<ProcessUsage>,
    /// Its supervisors (the ones created in this process), oldest first.
    pub supervisors: Vec<SupervisorSnapshot>,
    /// Its pools: empty for now (a [`Pool`](crate::Pool) counts no statistics of its
    /// own yet, and is not listed).
    pub pools: Vec<PoolSnapshot>,
    /// Its named queues.
    pub queues: Vec<QueueSnapshot>,
}

/// A duration of `ns` nanoseconds as short text, in the unit that suits it, with one
/// decimal above nanoseconds: `850ns`, `12.3µs`, `4.5ms`, `2.0s` (seconds also above a
/// minute). What [`Supervisor::tree`](crate::Supervisor::tree) and `procactor-top`
/// show of a histogram's quantiles, so that both print the same text.
///
/// # Examples
///
/// ```
/// use procactor::stats::duration_text;
///
/// assert_eq!(duration_text(850), "850ns");
/// assert_eq!(duration_text(12_345), "12.3µs");
/// assert_eq!(duration_text(4_500_000), "4.5ms");
/// assert_eq!(duration_text(2_000_000_000), "2.0s");
/// ```
pub fn duration_text(ns: u64) -> String {
    match ns {
        0..=999 => format!("{ns}ns"),
        1_000..=999_999 => format!("{:.1}µs", ns as f64 / 1e3),
        1_000_000..=999_999_999 => format!("{:.1}ms", ns as f64 / 1e6),
        _ => format!("{:.1}s", ns as f64 / 1e9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bucket counters of these durations (what the actor's writer counts).
    fn of(durations: &[u64]) -> Histogram {
        let mut b = vec![0u64; HISTOGRAM_BUCKETS];
        for &d in durations {
            b[bucket_of(d)] += 1;
        }
        Histogram::from_buckets(b, durations.iter().copied().max().unwrap_or(0))
    }

    #[test]
    fn buckets_are_powers_of_two() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(1), 0);
        assert_eq!(bucket_of(2), 1);
        assert_eq!(bucket_of(3), 1);
        assert_eq!(bucket_of(1024), 10);
        assert_eq!(bucket_of(2047), 10);
        assert_eq!(bucket_of(u64::MAX), HISTOGRAM_BUCKETS - 1);
    }

    #[test]
    fn quantiles_come_from_the_buckets_and_never_exceed_the_max() {
        // 98 fast (~1 µs), 2 slow (~1 ms)
        let mut d = vec![1_000; 98];
        d.extend([1_000_000, 1_500_000]);
        let h = of(&d);
        assert_eq!(h.count, 100);
        assert_eq!(h.max_ns, 1_500_000);
        assert_eq!(h.p50_ns, 1023);
        assert_eq!(h.p90_ns, 1023);
        // the 99th of 100 is the first slow one: the upper edge of its bucket
        // [2^19, 2^20), within a factor of two of it
        assert_eq!(h.p99_ns, (1 << 20) - 1);
        let h = of(&[700]);
        assert_eq!((h.p50_ns, h.p99_ns, h.max_ns), (700, 700, 700));
    }

    #[test]
    fn an_empty_histogram_reads_as_zero() {
        let h = Histogram::from_buckets(vec![0; HISTOGRAM_BUCKETS], 0);
        assert_eq!((h.count, h.p50_ns, h.p99_ns, h.max_ns), (0, 0, 0, 0));
        assert_eq!(Histogram::from_buckets(Vec::new(), 0).count, 0);
    }

    #[test]
    fn garbage_counters_saturate_instead_of_overflowing() {
        let h = Histogram::from_buckets(vec![u64::MAX; HISTOGRAM_BUCKETS], u64::MAX);
        assert_eq!(h.count, u64::MAX);
        // half of the (saturated) count is reached in the first bucket
        assert_eq!(h.p50_ns, 1);
        assert_eq!(h.max_ns, u64::MAX);
        let mut b = vec![0; HISTOGRAM_BUCKETS];
        b[3] = u64::MAX;
        b[30] = u64::MAX;
        let h = Histogram::from_buckets(b, 5_000_000_000);
        assert_eq!(h.count, u64::MAX);
        assert_eq!(h.p50_ns, 15);
        assert_eq!(h.p99_ns, 15);
    }
}
