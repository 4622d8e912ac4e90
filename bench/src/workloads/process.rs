//! Process workloads (issues 2 and 11): procactor's side of starting and joining a
//! trivial child, under each start method, and the raw `fork()` and fork+exec
//! baselines. The Python twins have the same names in `bench/mp_bench.py`.

use procactor::{Process, StartMethod};
use procactor_transports::{os, AsFd};
use std::time::{Duration, Instant};

fn noop(_: ()) {}

/// How long `once` runs untimed before the timed runs (at least once): an idle VM's
/// vCPUs are slow to wake until kept busy for a while, and a start's first run also
/// faults the code in. The Python twins warm up the same way.
const WARM_UP: Duration = Duration::from_millis(30);

/// Median milliseconds of `n` runs of `once`, after [`WARM_UP`], and the number of
/// runs in all (warm-up included: the CPU time is divided by it).
fn median_ms(n: u32, mut once: impl FnMut()) -> (f64, u64) {
    let t0 = Instant::now();
    let mut runs = 1u64;
    once();
    while t0.elapsed() < WARM_UP {
        once();
        runs += 1;
    }
    let mut times: Vec<f64> = (0..n.max(1))
        .map(|_| {
            let t0 = Instant::now();
            once();
            t0.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    (crate::median(&mut times), runs + u64::from(n.max(1)))
}

fn start_join(method: StartMethod) {
    Process::new(noop, ())
        .start_method(method)
        .start()
        .expect("start")
        .join()
        .expect("join");
}

/// `Spawn` start + join (the Python twin uses the spawn start method).
pub(crate) fn process_start_join_spawn(n: u32) -> (f64, u64) {
    median_ms(n, || start_join(StartMethod::Spawn))
}

/// `ForkServer` start + join (Python: the forkserver start method).
pub(crate) fn process_start_join_forkserver(n: u32) -> (f64, u64) {
    median_ms(n, || start_join(StartMethod::ForkServer))
}

/// Runs `measure(n)` in a spawned child: the benchmark process has threads (a Python
/// watchdog, the monitor), and forking is for single-threaded processes only.
fn in_single_threaded_child(measure: fn(u32) -> (f64, u64), n: u32) -> (f64, u64) {
    let mut p = Process::new(measure, n)
        .start_method(StartMethod::Spawn)
        .start()
        .expect("start the measuring child");
    p.join_timeout(Duration::from_secs(120))
        .expect("the measuring child took over 120 s");
    p.result().expect("the measuring child's result")
}

fn fork_start_join_here(n: u32) -> (f64, u64) {
    median_ms(n, || start_join(StartMethod::Fork))
}

/// `Fork` start + join, measured in a single-threaded child (Python: fork).
pub(crate) fn process_start_join_fork(n: u32) -> (f64, u64) {
    in_single_threaded_child(fork_start_join_here, n)
}

fn raw_fork_wait_here(n: u32) -> (f64, u64) {
    median_ms(n, || match os::fork_single_threaded().expect("fork") {
        os::Forked::Child => os::exit_now(0),
        os::Forked::Parent(c) => {
            os::poll_readable(&[c.pidfd.as_fd()], None).expect("poll");
            os::pidfd_try_reap(c.pidfd.as_fd()).expect("reap");
        }
    })
}

/// The floor: `fork()`, the child `_exit(0)`s, the parent waits for it (through a pidfd,
/// as procactor does). Measured in a single-threaded child.
pub(crate) fn raw_fork_wait(n: u32) -> (f64, u64) {
    in_single_threaded_child(raw_fork_wait_here, n)
}

/// The other floor: start `/bin/true` (posix_spawn: vfork + exec) and wait for it.
pub(crate) fn raw_fork_exec(n: u32) -> (f64, u64) {
    median_ms(n, || {
        let st = std::process::Command::new("/bin/true")
            .status()
            .expect("/bin/true");
        assert!(st.success());
    })
}

/// Start a child that runs an empty function (default start method: spawn) and join it,
/// `n` times one after the other, beside Python's fork. Returns the median milliseconds
/// of one start + join.
pub(crate) fn process_start_join(n: u32) -> (f64, u64) {
    median_ms(n, || start_join(procactor::start_method()))
}
