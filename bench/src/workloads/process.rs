//! Process workloads (issue 2): procactor's side of starting and joining a trivial
//! child. The Python twin is `process_start_join` in `bench/mp_bench.py`.

use procactor::Process;
use std::time::Instant;

fn noop(_: ()) {}

/// Start a child that runs an empty function and join it, `n` times one after the
/// other. Returns the median milliseconds of one start + join.
pub(crate) fn process_start_join(n: u32) -> f64 {
    // one untimed start: page cache, the spawner and the monitor thread warm up
    Process::new(noop, ())
        .start()
        .expect("start")
        .join()
        .expect("join");
    let mut times: Vec<f64> = (0..n.max(1))
        .map(|_| {
            let t0 = Instant::now();
            let mut p = Process::new(noop, ()).start().expect("start");
            p.join().expect("join");
            t0.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    crate::median(&mut times)
}
