//! The workloads: each one is a procactor function in a submodule here and a Python
//! function of the same name in one of the scripts in `bench/`.

pub(crate) mod actor;
pub(crate) mod manager;
pub(crate) mod pipe;
pub(crate) mod pool;
pub(crate) mod process;
pub(crate) mod queue;
pub(crate) mod redis;
pub(crate) mod sync;

/// One workload of the table.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Workload {
    /// The workload id: the name in the table, in `--filter` and in the Python script.
    pub(crate) name: &'static str,
    /// What it is, in words, for the README table (both sides' start method, batching).
    pub(crate) label: &'static str,
    /// The unit of the figure both sides return.
    pub(crate) unit: &'static str,
    /// Whether a larger figure is better (a rate) or a smaller one (a time).
    pub(crate) higher_is_better: bool,
    /// A latency workload (a wake-up or a round trip bounds it): it also gets the
    /// no-spin and the loaded rows.
    pub(crate) latency: bool,
    /// The Python twin's script, relative to `bench/`.
    pub(crate) script: &'static str,
    /// Runs procactor's side once at the given scale (1.0 = full size) and returns the
    /// figure and the number of operations done in all (warm-up included), which the
    /// run's CPU time is divided by.
    pub(crate) run: fn(f64) -> (f64, u64),
}

/// `base` scaled, at least 1.
fn n(base: u64, scale: f64) -> u64 {
    ((base as f64 * scale) as u64).max(1)
}

fn n32(base: u32, scale: f64) -> u32 {
    ((f64::from(base) * scale) as u32).max(1)
}

/// The time budget of the measured loop of the workloads that can crawl
/// (`lock_handoff_latency`, `actor_call_rtt`): once it has passed, the loop ends after
/// the iteration under way and the figure is per iteration done (the run reports the
/// count as its operations). Python's twins follow the same rule with the same budget.
/// `PROCACTOR_BENCH_BUDGET` (seconds, read by both sides) replaces the default, 20 s:
/// far below the runner's 240 s limit per run, and above what a full-size run of these
/// workloads takes on a quiet machine, so the budget only cuts runs that crawl
/// (Python's lock hand-off, calls beside busy neighbours).
pub(crate) fn budget() -> std::time::Duration {
    let secs = std::env::var("PROCACTOR_BENCH_BUDGET")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .unwrap_or(DEFAULT_BUDGET_S);
    std::time::Duration::from_secs_f64(secs)
}

/// The default of [`budget`], in seconds.
pub(crate) const DEFAULT_BUDGET_S: f64 = 20.0;

/// Every workload, in table order.
pub(crate) const ALL: &[Workload] = &[
    Workload {
        name: "process_start_join",
        label: "process start + join, trivial target (procactor: its default, `Spawn`; Python: `fork`, its Linux default)",
        unit: "ms",
        higher_is_better: false,
        latency: true,
        script: "mp_bench.py",
        run: |s| process::process_start_join(n32(100, s)),
    },
    Workload {
        name: "process_start_join_spawn",
        label: "start + join, `Spawn` (Python: `spawn`)",
        unit: "ms",
        higher_is_better: false,
        latency: false,
        script: "mp_bench.py",
        run: |s| process::process_start_join_spawn(n32(100, s)),
    },
    Workload {
        name: "process_start_join_forkserver",
        label: "start + join, `ForkServer` (Python: `forkserver`)",
        unit: "ms",
        higher_is_better: false,
        latency: true,
        script: "mp_bench.py",
        run: |s| process::process_start_join_forkserver(n32(200, s)),
    },
    Workload {
        name: "process_start_join_fork",
        label: "start + join, `Fork` (Python: `fork`)",
        unit: "ms",
        higher_is_better: false,
        latency: false,
        script: "mp_bench.py",
        run: |s| process::process_start_join_fork(n32(200, s)),
    },
    Workload {
        name: "raw_fork_wait",
        label: "floor: `fork()` + wait, nothing else (Python: `os.fork`)",
        unit: "ms",
        higher_is_better: false,
        latency: false,
        script: "mp_bench.py",
        run: |s| process::raw_fork_wait(n32(200, s)),
    },
    Workload {
        name: "raw_fork_exec",
        label: "floor: start `/bin/true` + wait (Python: `os.posix_spawn`)",
        unit: "ms",
        higher_is_better: false,
        latency: false,
        script: "mp_bench.py",
        run: |s| process::raw_fork_exec(n32(200, s)),
    },
    Workload {
        name: "pipe_round_trip_small",
        label: "Pipe round trip, small message",
        unit: "us",
        higher_is_better: false,
        latency: true,
        script: "mp_bench.py",
        run: |s| { let k = n(20_000, s); (pipe::pipe_round_trip_small(k), k + 1000) },
    },
    Workload {
        name: "pipe_bulk_1mib",
        label: "Pipe bulk, 1 MiB messages (CPU per MiB)",
        unit: "GB/s",
        higher_is_better: true,
        latency: false,
        script: "mp_bench.py",
        run: |s| { let k = n32(500, s); (pipe::pipe_bulk_1mib(k), u64::from(k) + 1) },
    },
    Workload {
        name: "queue_1to1",
        label: "Queue 1→1, `(u64, 32-byte String)`",
        unit: "msgs/s",
        higher_is_better: true,
        latency: false,
        script: "queue_bench.py",
        run: |s| { let k = n(2_000_000, s); (queue::queue_1to1(k), k) },
    },
    Workload {
        name: "queue_1to1_async",
        label: "Queue 1→1, consumer async (`get_async` on tokio; Python: `run_in_executor(None, q.get)` on asyncio)",
        unit: "msgs/s",
        higher_is_better: true,
        latency: false,
        script: "queue_bench.py",
        run: |s| { let k = n(2_000_000, s); (queue::queue_1to1_async(k), k) },
    },
    Workload {
        name: "queue_2to2",
        label: "Queue 2→2",
        unit: "msgs/s",
        higher_is_better: true,
        latency: false,
        script: "queue_bench.py",
        run: |s| { let k = n(2_000_000, s); (queue::queue_2to2(k), k / 2 * 2) },
    },
    Workload {
        name: "queue_round_trip",
        label: "Queue round trip (request queue, reply queue)",
        unit: "us",
        higher_is_better: false,
        latency: true,
        script: "queue_bench.py",
        run: |s| { let k = n(100_000, s); (queue::queue_round_trip(k), k + 1000) },
    },
    Workload {
        name: "queue_backlog_1m",
        label: "Queue backlog: items put before any consumer starts, then drained by one child",
        unit: "msgs/s",
        higher_is_better: true,
        latency: false,
        script: "queue_bench.py",
        run: |s| { let k = n(1_000_000, s); (queue::queue_backlog(k), k) },
    },
    Workload {
        name: "joinable",
        label: "JoinableQueue put/get/task_done/join",
        unit: "items/s",
        higher_is_better: true,
        latency: false,
        script: "queue_bench.py",
        run: |s| { let k = n(1_000_000, s); (queue::joinable(k), k) },
    },
    Workload {
        name: "big_message_16mib_through_64kib",
        label: "one 16 MiB message through a 64 KiB ring (CPU per message)",
        unit: "GB/s",
        higher_is_better: true,
        latency: false,
        script: "queue_bench.py",
        run: |s| { let k = n32(20, s); (queue::big_message_16mib_through_64kib(k), u64::from(k) + 1) },
    },
    Workload {
        name: "value_locked_increments_2proc",
        label: "`Value` locked increments, 2 processes",
        unit: "ops/s",
        higher_is_better: true,
        latency: false,
        script: "sync_bench.py",
        run: |s| { let k = n(2_000_000, s); (sync::value_locked_increments_2proc(k), 2 * k) },
    },
    Workload {
        name: "lock_handoff_latency",
        label: "`Lock` hand-off between 2 processes (measured loop stops after the time budget)",
        unit: "us",
        higher_is_better: false,
        latency: true,
        script: "sync_bench.py",
        run: |s| { let (us, handoffs) = sync::lock_handoff_latency(n(50_000, s), budget()); (us, handoffs) },
    },
    Workload {
        name: "event_set_wake_latency",
        label: "`Event` set → wake in another process",
        unit: "us",
        higher_is_better: false,
        latency: true,
        script: "sync_bench.py",
        run: |s| { let k = n(50_000, s); (sync::event_set_wake_latency(k), 2 * k) },
    },
    Workload {
        name: "uncontended_lock_ns",
        label: "uncontended `Lock` acquire + release",
        unit: "ns",
        higher_is_better: false,
        latency: false,
        script: "sync_bench.py",
        run: |s| { let k = n32(10_000_000, s); (sync::uncontended_lock_ns(k), u64::from(k) + sync::WARM_UP) },
    },
    Workload {
        name: "uncontended_semaphore_ns",
        label: "uncontended `Semaphore` acquire + release",
        unit: "ns",
        higher_is_better: false,
        latency: false,
        script: "sync_bench.py",
        run: |s| { let k = n32(10_000_000, s); (sync::uncontended_semaphore_ns(k), u64::from(k) + sync::WARM_UP) },
    },
    Workload {
        name: "actor_send",
        label: "actor `send` throughput (one queue actor; Python: a Process on a Queue)",
        unit: "msgs/s",
        higher_is_better: true,
        latency: false,
        script: "actor_bench.py",
        run: |s| { let k = n(2_000_000, s); (actor::actor_send(k), k) },
    },
    Workload {
        name: "actor_call_rtt",
        label: "pipe-actor `call` round trip (Python: a Process on a Pipe; measured loop stops after the time budget)",
        unit: "us",
        higher_is_better: false,
        latency: true,
        script: "actor_bench.py",
        run: |s| { let (us, calls) = actor::actor_call_rtt(n(200_000, s), budget()); (us, calls + 1000) },
    },
    Workload {
        name: "actor_call_async_rtt",
        label: "pipe-actor `call_async` round trip, awaited on a current-thread executor (Python: asyncio awaiting a Process on a Pipe through `add_reader`; measured loop stops after the time budget)",
        unit: "us",
        higher_is_better: false,
        latency: true,
        script: "actor_bench.py",
        run: |s| { let (us, calls) = actor::actor_call_async_rtt(n(200_000, s), budget()); (us, calls + 1000) },
    },
    Workload {
        name: "actor_restart_ms",
        label: "actor restart: SIGKILL → replacement handling a message (each kill as soon as the replacement before has answered)",
        unit: "ms",
        higher_is_better: false,
        latency: true,
        script: "actor_bench.py",
        run: |s| { let k = n32(50, s); (actor::actor_restart_ms(k), u64::from(k) + 1) },
    },
    Workload {
        name: "actor_restart_isolated_ms",
        label: "actor restart, one crash at a time: as above, the kills 10 ms apart (the pause untimed)",
        unit: "ms",
        higher_is_better: false,
        latency: true,
        script: "actor_bench.py",
        run: |s| { let k = n32(50, s); (actor::actor_restart_isolated_ms(k), u64::from(k) + 1) },
    },
    Workload {
        name: "pool_map",
        label: "`Pool(2).map`, trivial tasks",
        unit: "tasks/s",
        higher_is_better: true,
        latency: false,
        script: "pool_bench.py",
        run: |s| { let k = n(200_000, s); (pool::pool_map(k), k + 1000) },
    },
    Workload {
        name: "pool_map_cs1",
        label: "`Pool.map(chunksize=1)`",
        unit: "tasks/s",
        higher_is_better: true,
        latency: false,
        script: "pool_bench.py",
        run: |s| { let k = n(20_000, s); (pool::pool_map_cs1(k), k + 1000) },
    },
    Workload {
        name: "pool_imap_unordered_cs1",
        label: "`Pool.imap_unordered(chunksize=1)`",
        unit: "tasks/s",
        higher_is_better: true,
        latency: false,
        script: "pool_bench.py",
        run: |s| { let k = n(50_000, s); (pool::pool_imap_unordered_cs1(k), k + 1000) },
    },
    Workload {
        name: "pool_apply_async_rtt",
        label: "`Pool.apply_async(..).get()` round trip",
        unit: "us",
        higher_is_better: false,
        latency: true,
        script: "pool_bench.py",
        run: |s| { let k = n(20_000, s); let (v, warm) = pool::pool_apply_async_rtt(k); (v, k + 1000 + warm) },
    },
    Workload {
        name: "pool_apply_await_rtt",
        label: "`Pool.apply_async(..)` awaited on a current-thread executor (Python: asyncio awaiting `loop.run_in_executor(ProcessPoolExecutor(2), f, x)`)",
        unit: "us",
        higher_is_better: false,
        latency: true,
        script: "pool_bench.py",
        run: |s| { let k = n(20_000, s); let (v, warm) = pool::pool_apply_await_rtt(k); (v, k + 1000 + warm) },
    },
    Workload {
        name: "manager_dict_ops",
        label: "Manager dict insert/get from a child",
        unit: "ops/s",
        higher_is_better: true,
        latency: true,
        script: "manager_bench.py",
        run: |s| { let k = n(200_000, s); (manager::manager_dict_ops(k), k + manager::WARM_UP) },
    },
    Workload {
        name: "manager_remote_ops",
        label: "remote Manager dict ops over loopback TCP",
        unit: "ops/s",
        higher_is_better: true,
        latency: true,
        script: "manager_bench.py",
        run: |s| { let k = n(40_000, s); (manager::manager_remote_ops(k), k + manager::WARM_UP) },
    },
    Workload {
        name: "manager_lock_ops",
        label: "Manager lock acquire/release from a child",
        unit: "ops/s",
        higher_is_better: true,
        latency: true,
        script: "manager_bench.py",
        run: |s| { let k = n(40_000, s); (manager::manager_lock_ops(k), k + manager::WARM_UP) },
    },
    Workload {
        name: "redis_put_get",
        label: "Redis queue `put`→`get` one item per round trip, `prefetch(1)`, 2 processes (Python: remote Manager `queue.Queue`, `put`/`get`)",
        unit: "msgs/s",
        higher_is_better: true,
        latency: false,
        script: "redis_bench.py",
        run: |s| { let k = n(50_000, s); (redis::redis_put_get(k), k) },
    },
    Workload {
        name: "redis_put_get_async",
        label: "Redis queue `put`→`get_async` (tokio current-thread), one item per round trip (Python: remote Manager `queue.Queue`, `get` through `run_in_executor` on asyncio)",
        unit: "msgs/s",
        higher_is_better: true,
        latency: false,
        script: "redis_bench.py",
        run: |s| { let k = n(50_000, s); (redis::redis_put_get_async(k), k) },
    },
    Workload {
        name: "redis_put_get_batched",
        label: "Redis queue **batched**: `put_many` of 256, `prefetch(256)` (Python: remote Manager `queue.Queue`, lists of 256 items)",
        unit: "msgs/s",
        higher_is_better: true,
        latency: false,
        script: "redis_bench.py",
        run: |s| { let k = n(200_000, s); (redis::redis_put_get_batched(k), k) },
    },
    Workload {
        name: "redis_rtt",
        label: "Redis queue round trip: request stream, echo process, reply stream (Python: remote Manager)",
        unit: "us",
        higher_is_better: false,
        latency: true,
        script: "redis_bench.py",
        run: |s| { let k = n(20_000, s); (redis::redis_rtt(k), k + redis::WARM_UP) },
    },
    Workload {
        name: "redis_rtt_async",
        label: "Redis queue round trip, `put_async` and `get_async` awaited on tokio current-thread (Python: remote Manager, `put`/`get` through `run_in_executor` on asyncio)",
        unit: "us",
        higher_is_better: false,
        latency: true,
        script: "redis_bench.py",
        run: |s| { let k = n(20_000, s); (redis::redis_rtt_async(k), k + redis::WARM_UP) },
    },
];
