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
    /// The name in the table, in `--filter` and in the Python script.
    pub(crate) name: &'static str,
    /// The unit of the figure both sides return.
    pub(crate) unit: &'static str,
    /// Whether a larger figure is better (a rate) or a smaller one (a time).
    pub(crate) higher_is_better: bool,
    /// The Python twin's script, relative to `bench/`.
    pub(crate) script: &'static str,
    /// Runs procactor's side once at the given scale (1.0 = full size) and returns the
    /// figure.
    pub(crate) run: fn(f64) -> f64,
}

/// `base` scaled, at least 1.
fn n(base: u64, scale: f64) -> u64 {
    ((base as f64 * scale) as u64).max(1)
}

fn n32(base: u32, scale: f64) -> u32 {
    ((f64::from(base) * scale) as u32).max(1)
}

/// Every workload, in table order.
pub(crate) const ALL: &[Workload] = &[
    Workload {
        name: "process_start_join",
        unit: "ms",
        higher_is_better: false,
        script: "mp_bench.py",
        run: |s| process::process_start_join(n32(100, s)),
    },
    Workload {
        name: "process_start_join_spawn",
        unit: "ms",
        higher_is_better: false,
        script: "mp_bench.py",
        run: |s| process::process_start_join_spawn(n32(100, s)),
    },
    Workload {
        name: "process_start_join_forkserver",
        unit: "ms",
        higher_is_better: false,
        script: "mp_bench.py",
        run: |s| process::process_start_join_forkserver(n32(200, s)),
    },
    Workload {
        name: "process_start_join_fork",
        unit: "ms",
        higher_is_better: false,
        script: "mp_bench.py",
        run: |s| process::process_start_join_fork(n32(200, s)),
    },
    Workload {
        name: "raw_fork_wait",
        unit: "ms",
        higher_is_better: false,
        script: "mp_bench.py",
        run: |s| process::raw_fork_wait(n32(200, s)),
    },
    Workload {
        name: "raw_fork_exec",
        unit: "ms",
        higher_is_better: false,
        script: "mp_bench.py",
        run: |s| process::raw_fork_exec(n32(200, s)),
    },
    Workload {
        name: "pipe_round_trip_small",
        unit: "us",
        higher_is_better: false,
        script: "mp_bench.py",
        run: |s| pipe::pipe_round_trip_small(n(20_000, s)),
    },
    Workload {
        name: "pipe_bulk_1mib",
        unit: "GB/s",
        higher_is_better: true,
        script: "mp_bench.py",
        run: |s| pipe::pipe_bulk_1mib(n32(500, s)),
    },
    Workload {
        name: "queue_1to1",
        unit: "msgs/s",
        higher_is_better: true,
        script: "queue_bench.py",
        run: |s| queue::queue_1to1(n(2_000_000, s)),
    },
    Workload {
        name: "queue_2to2",
        unit: "msgs/s",
        higher_is_better: true,
        script: "queue_bench.py",
        run: |s| queue::queue_2to2(n(2_000_000, s)),
    },
    Workload {
        name: "queue_round_trip",
        unit: "us",
        higher_is_better: false,
        script: "queue_bench.py",
        run: |s| queue::queue_round_trip(n(100_000, s)),
    },
    Workload {
        name: "queue_backlog_1m",
        unit: "msgs/s",
        higher_is_better: true,
        script: "queue_bench.py",
        run: |s| queue::queue_backlog(n(1_000_000, s)),
    },
    Workload {
        name: "joinable",
        unit: "items/s",
        higher_is_better: true,
        script: "queue_bench.py",
        run: |s| queue::joinable(n(1_000_000, s)),
    },
    Workload {
        name: "big_message_16mib_through_64kib",
        unit: "GB/s",
        higher_is_better: true,
        script: "queue_bench.py",
        run: |s| queue::big_message_16mib_through_64kib(n32(20, s)),
    },
    Workload {
        name: "value_locked_increments_2proc",
        unit: "ops/s",
        higher_is_better: true,
        script: "sync_bench.py",
        run: |s| sync::value_locked_increments_2proc(n(2_000_000, s)),
    },
    Workload {
        name: "lock_handoff_latency",
        unit: "us",
        higher_is_better: false,
        script: "sync_bench.py",
        run: |s| sync::lock_handoff_latency(n(50_000, s)),
    },
    Workload {
        name: "event_set_wake_latency",
        unit: "us",
        higher_is_better: false,
        script: "sync_bench.py",
        run: |s| sync::event_set_wake_latency(n(50_000, s)),
    },
    Workload {
        name: "uncontended_lock_ns",
        unit: "ns",
        higher_is_better: false,
        script: "sync_bench.py",
        run: |s| sync::uncontended_lock_ns(n32(10_000_000, s)),
    },
    Workload {
        name: "uncontended_semaphore_ns",
        unit: "ns",
        higher_is_better: false,
        script: "sync_bench.py",
        run: |s| sync::uncontended_semaphore_ns(n32(10_000_000, s)),
    },
    Workload {
        name: "actor_send",
        unit: "msgs/s",
        higher_is_better: true,
        script: "actor_bench.py",
        run: |s| actor::actor_send(n(2_000_000, s)),
    },
    Workload {
        name: "actor_call_rtt",
        unit: "us",
        higher_is_better: false,
        script: "actor_bench.py",
        run: |s| actor::actor_call_rtt(n(200_000, s)),
    },
    Workload {
        name: "actor_restart_ms",
        unit: "ms",
        higher_is_better: false,
        script: "actor_bench.py",
        run: |s| actor::actor_restart_ms(n32(50, s)),
    },
    Workload {
        name: "pool_map",
        unit: "tasks/s",
        higher_is_better: true,
        script: "pool_bench.py",
        run: |s| pool::pool_map(n(200_000, s)),
    },
    Workload {
        name: "pool_map_cs1",
        unit: "tasks/s",
        higher_is_better: true,
        script: "pool_bench.py",
        run: |s| pool::pool_map_cs1(n(20_000, s)),
    },
    Workload {
        name: "pool_imap_unordered_cs1",
        unit: "tasks/s",
        higher_is_better: true,
        script: "pool_bench.py",
        run: |s| pool::pool_imap_unordered_cs1(n(50_000, s)),
    },
    Workload {
        name: "pool_apply_async_rtt",
        unit: "us",
        higher_is_better: false,
        script: "pool_bench.py",
        run: |s| pool::pool_apply_async_rtt(n(20_000, s)),
    },
    Workload {
        name: "manager_dict_ops",
        unit: "ops/s",
        higher_is_better: true,
        script: "manager_bench.py",
        run: |s| manager::manager_dict_ops(n(200_000, s)),
    },
    Workload {
        name: "manager_remote_ops",
        unit: "ops/s",
        higher_is_better: true,
        script: "manager_bench.py",
        run: |s| manager::manager_remote_ops(n(40_000, s)),
    },
    Workload {
        name: "manager_lock_ops",
        unit: "ops/s",
        higher_is_better: true,
        script: "manager_bench.py",
        run: |s| manager::manager_lock_ops(n(40_000, s)),
    },
    Workload {
        name: "redis_put_get",
        unit: "msgs/s",
        higher_is_better: true,
        script: "redis_bench.py",
        run: |s| redis::redis_put_get(n(200_000, s)),
    },
    Workload {
        name: "redis_rtt",
        unit: "us",
        higher_is_better: false,
        script: "redis_bench.py",
        run: |s| redis::redis_rtt(n(20_000, s)),
    },
];
