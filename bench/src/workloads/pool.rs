//! Pool workloads: procactor's side of `map` (default chunking and chunk size 1),
//! `imap_unordered` with chunk size 1 and `apply_async(..).get()` round trips (also
//! `.await`ed). Each
//! function starts a pool of 2 workers, warms it up once (the task function is
//! registered, the workers are running), times the workload, and returns the figure
//! named in its doc; starting and ending the pool is not timed. The Python twins (a
//! `multiprocessing.Pool(2)`) are in `bench/pool_bench.py`.

use procactor::Pool;
use std::future::IntoFuture;
use std::time::Instant;

/// The pool's size, as Python's `Pool(2)`.
const PROCESSES: usize = 2;

/// The trivial task.
fn square(x: u64) -> u64 {
    x.wrapping_mul(x)
}

/// A pool of [`PROCESSES`] workers that has run a small `map` of [`square`].
fn warm_pool() -> Pool {
    let pool = Pool::new(PROCESSES).expect("pool");
    let r = pool.map(square, 0..1000).expect("warm-up map");
    assert_eq!(r[999], 999 * 999);
    pool
}

/// The sum of `x * x` for `x` in `0..n` (wrapping), to check results with.
fn sum_of_squares(n: u64) -> u64 {
    (0..n).map(square).fold(0, u64::wrapping_add)
}

/// One `Pool::map` of [`square`] over `0..n` with the default chunk size (Python's:
/// `n / (4 × processes)`, rounded up). Returns tasks per second.
pub(crate) fn pool_map(n: u64) -> f64 {
    let pool = warm_pool();
    let t0 = Instant::now();
    let r = pool.map(square, 0..n).expect("map");
    let dt = t0.elapsed().as_secs_f64();
    assert_eq!(r.len() as u64, n);
    assert_eq!(r[(n - 1) as usize], square(n - 1));
    n as f64 / dt
}

/// One `Pool::map_chunksize` of [`square`] over `0..n`, chunk size 1 (a message and a
/// result per task). Returns tasks per second.
pub(crate) fn pool_map_cs1(n: u64) -> f64 {
    let pool = warm_pool();
    let t0 = Instant::now();
    let r = pool.map_chunksize(square, 0..n, 1).expect("map");
    let dt = t0.elapsed().as_secs_f64();
    assert_eq!(r.len() as u64, n);
    assert_eq!(r[(n - 1) as usize], square(n - 1));
    n as f64 / dt
}

/// `Pool::imap_unordered` of [`square`] over `0..n` (chunk size 1), every result
/// consumed. Returns tasks per second.
pub(crate) fn pool_imap_unordered_cs1(n: u64) -> f64 {
    let pool = warm_pool();
    let t0 = Instant::now();
    let mut count = 0u64;
    let mut sum = 0u64;
    for r in pool.imap_unordered(square, 0..n).expect("imap_unordered") {
        sum = sum.wrapping_add(r.expect("task"));
        count += 1;
    }
    let dt = t0.elapsed().as_secs_f64();
    assert_eq!(count, n);
    assert_eq!(sum, sum_of_squares(n));
    n as f64 / dt
}

/// How long the pool's round-trip rows warm up at least (beside at least 1000 round
/// trips), on both sides: 1000 of procactor's take 2-10 ms, Python's about 0.25 s, and
/// the first tens of milliseconds after a pool starts are not its steady state (the
/// scheduler may still have the caller and the busy worker on one CPU: see the design
/// notes, "Why short runs were slow"). The same rule in `bench/pool_bench.py`.
pub(crate) const WARM_UP: std::time::Duration = std::time::Duration::from_millis(250);

/// Runs `once(x)` for x = 0, 1, ... until at least 1000 have run and [`WARM_UP`] has
/// passed; returns how many ran.
fn warm_up(mut once: impl FnMut(u64)) -> u64 {
    let t = Instant::now();
    let mut x = 0u64;
    while x < 1000 || t.elapsed() < WARM_UP {
        once(x);
        x += 1;
    }
    x
}

/// `n` sequential `Pool::apply_async(square, x).get()` round trips, after untimed ones
/// (see [`warm_up`]). Returns microseconds per round trip and the untimed round trips.
pub(crate) fn pool_apply_async_rtt(n: u64) -> (f64, u64) {
    let pool = warm_pool();
    let warm = warm_up(|x| {
        let r = pool.apply_async(square, x).expect("apply_async").get();
        assert_eq!(r.expect("task"), x * x);
    });
    let t0 = Instant::now();
    for x in 0..n {
        let r = pool.apply_async(square, x).expect("apply_async").get();
        debug_assert_eq!(r, Ok(square(x)));
        r.expect("task");
    }
    let dt = t0.elapsed().as_secs_f64();
    (dt * 1e6 / n as f64, warm)
}

/// As [`pool_apply_async_rtt`], each result `.await`ed (`AsyncResult: IntoFuture`) on
/// the minimal current-thread executor of the actor rows (`actor::block_on`: polls,
/// parks while pending, unparked by the waker): the pool's result thread routes the
/// result and wakes the task. Returns microseconds per round trip and the untimed
/// round trips.
pub(crate) fn pool_apply_await_rtt(n: u64) -> (f64, u64) {
    let pool = warm_pool();
    let once = |x: u64| {
        let r = pool.apply_async(square, x).expect("apply_async");
        super::actor::block_on(r.into_future())
    };
    let warm = warm_up(|x| assert_eq!(once(x).expect("task"), x * x));
    let t0 = Instant::now();
    for x in 0..n {
        let r = once(x);
        debug_assert_eq!(r, Ok(square(x)));
        r.expect("task");
    }
    let dt = t0.elapsed().as_secs_f64();
    (dt * 1e6 / n as f64, warm)
}
