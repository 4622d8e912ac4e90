//! Pool: map and friends, async results, failures that never hang, close/join/terminate,
//! recycling, initializers, lazy imap.
procactor::test_support!();

mod common;
use common::{wait_until, watchdog};
use procactor::{Array, Pool, Queue, TaskError};
use proptest::prelude::{proptest, ProptestConfig};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);

fn square(x: u64) -> u64 {
    x * x
}

fn add((a, b): (u64, u64)) -> u64 {
    a + b
}

fn sleep_then(x: (u64, u64)) -> u64 {
    std::thread::sleep(Duration::from_millis(x.1));
    x.0
}

fn panics_on_7(x: u64) -> u64 {
    assert_ne!(x, 7, "seven is not allowed");
    x
}

fn aborts_on_7(x: u64) -> u64 {
    if x == 7 {
        std::process::abort();
    }
    std::thread::sleep(Duration::from_millis(2));
    x
}

fn pid_of(_: u64) -> u32 {
    std::process::id()
}

#[test]
fn map_keeps_order_with_any_chunk_size() {
    watchdog(60, || {
        let pool = Pool::new(2).unwrap();
        let want: Vec<u64> = (0..1000u64).map(|x| x * x).collect();
        assert_eq!(pool.map(square, 0..1000u64).unwrap(), want);
        assert_eq!(pool.map_chunksize(square, 0..1000u64, 1).unwrap(), want);
        assert_eq!(pool.map_chunksize(square, 0..1000u64, 999).unwrap(), want);
        assert_eq!(
            pool.map(square, Vec::<u64>::new()).unwrap(),
            Vec::<u64>::new()
        );
        assert_eq!(pool.starmap(add, vec![(1, 2), (3, 4)]).unwrap(), vec![3, 7]);
        // a non-capturing closure is a target too
        let lens = pool.map(|s: String| s.len(), ["a", "bcd"].map(String::from));
        assert_eq!(lens.unwrap(), [1, 3]);
        // both workers took part
        let pids: std::collections::BTreeSet<u32> = pool
            .map_chunksize(pid_of, 0..200u64, 1)
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(pids.len(), 2, "{pids:?}");
        assert!(!pids.contains(&std::process::id()));
    });
}

#[test]
fn apply_and_async_results() {
    watchdog(60, || {
        let pool = Pool::new(2).unwrap();
        assert_eq!(pool.apply(square, 12).unwrap(), 144);
        let slow = pool.apply_async(sleep_then, (5, 400)).unwrap();
        assert!(!slow.ready());
        assert_eq!(slow.successful(), None);
        assert_eq!(
            slow.get_timeout(Duration::from_millis(10)).unwrap_err(),
            TaskError::Timeout
        );
        assert!(slow.wait_timeout(T));
        assert!(slow.ready());
        assert_eq!(slow.successful(), Some(true));
        assert_eq!(slow.get().unwrap(), 5);
        assert_eq!(slow.get().unwrap(), 5, "get can be called again");
        let bad = pool.apply_async(panics_on_7, 7).unwrap();
        bad.wait();
        assert_eq!(bad.successful(), Some(false));
        let all = pool.map_async(square, 0..10u64).unwrap();
        assert_eq!(
            all.get_timeout(T).unwrap(),
            (0..10u64).map(|x| x * x).collect::<Vec<_>>()
        );
    });
}

#[test]
fn a_panicking_task_fails_alone() {
    watchdog(60, || {
        let pool = Pool::new(2).unwrap();
        let pids = pool.pids();
        match pool.map_chunksize(panics_on_7, 0..20u64, 4) {
            Err(TaskError::Panicked { message }) => {
                assert!(message.contains("seven is not allowed"), "{message}")
            }
            other => panic!("expected a panic, got {other:?}"),
        }
        let each: Vec<Result<u64, TaskError>> = pool
            .imap_chunksize(panics_on_7, 0..20u64, 4)
            .unwrap()
            .collect();
        assert_eq!(each.len(), 20);
        for (i, r) in each.iter().enumerate() {
            match (i, r) {
                (7, Err(TaskError::Panicked { .. })) => {}
                (i, Ok(v)) if i != 7 => assert_eq!(*v, i as u64),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(pool.pids(), pids, "a panic does not cost the worker");
    });
}

#[test]
fn a_dying_worker_fails_only_its_tasks_and_is_replaced() {
    watchdog(60, || {
        let pool = Pool::new(2).unwrap();
        let before = pool.pids();
        let each: Vec<Result<u64, TaskError>> = pool.imap(aborts_on_7, 0..40u64).unwrap().collect();
        assert_eq!(each.len(), 40);
        for (i, r) in each.iter().enumerate() {
            match r {
                Ok(v) => assert_eq!(*v, i as u64),
                Err(TaskError::WorkerDied(s)) => {
                    assert_eq!(i, 7, "only the task that killed its worker fails");
                    assert_eq!(*s, procactor::ExitStatus::Signal(6));
                }
                Err(e) => panic!("item {i}: {e:?}"),
            }
        }
        assert!(each[7].is_err());
        wait_until(T, "a replacement", || pool.pids().len() == 2);
        assert_ne!(pool.pids(), before);
        assert_eq!(pool.map(square, 0..10u64).unwrap()[9], 81);
    });
}

#[test]
fn a_worker_killed_from_outside_fails_what_it_held_and_the_rest_completes() {
    watchdog(60, || {
        let pool = Pool::new(2).unwrap();
        let h = pool
            .map_async(sleep_then, (0..20u64).map(|i| (i, 50)))
            .unwrap();
        std::thread::sleep(Duration::from_millis(120));
        let victim = pool.pids()[0];
        std::process::Command::new("kill")
            .args(["-9", &victim.to_string()])
            .status()
            .unwrap();
        match h.get_timeout(T) {
            Err(TaskError::WorkerDied(procactor::ExitStatus::Signal(9))) => {}
            other => panic!("expected WorkerDied, got {other:?}"),
        }
        wait_until(T, "a replacement", || {
            let p = pool.pids();
            p.len() == 2 && !p.contains(&victim)
        });
        assert_eq!(pool.map(square, 0..4u64).unwrap(), [0, 1, 4, 9]);
    });
}

#[test]
fn imap_unordered_yields_every_item_once_in_completion_order() {
    watchdog(60, || {
        let pool = Pool::new(2).unwrap();
        // item 0 is slow: it comes last although it was sent first
        let got: Vec<u64> = pool
            .imap_unordered(
                sleep_then,
                (0..8u64).map(|i| (i, if i == 0 { 300 } else { 1 })),
            )
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(got.len(), 8);
        assert_eq!(*got.last().unwrap(), 0, "{got:?}");
        let mut sorted = got.clone();
        sorted.sort();
        assert_eq!(sorted, (0..8).collect::<Vec<u64>>());
        let mut big: Vec<u64> = pool
            .imap_unordered_chunksize(square, 0..5000u64, 7)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        big.sort();
        assert_eq!(big, (0..5000u64).map(|x| x * x).collect::<Vec<_>>());
        // and per item, a death fails only its own item
        let each: Vec<Result<u64, TaskError>> = pool
            .imap_unordered(aborts_on_7, 0..20u64)
            .unwrap()
            .collect();
        assert_eq!(each.len(), 20);
        assert_eq!(each.iter().filter(|r| r.is_err()).count(), 1);
    });
}

#[test]
fn close_join_and_terminate() {
    watchdog(60, || {
        let pool = Pool::new(2).unwrap();
        assert!(pool.join().is_err(), "join before close is an error");
        let h = pool.apply_async(sleep_then, (1, 200)).unwrap();
        pool.close();
        assert!(pool.apply_async(square, 1).is_err());
        assert!(pool.map(square, 0..3u64).is_err());
        let pids = pool.pids();
        pool.join().unwrap();
        assert_eq!(h.get().unwrap(), 1, "work given before close completes");
        for pid in pids {
            assert!(
                !std::path::Path::new(&format!("/proc/{pid}")).exists()
                    || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                        .map(|s| s.contains(") Z"))
                        .unwrap_or(true)
            );
        }

        let pool = Pool::new(2).unwrap();
        let h = pool.apply_async(sleep_then, (1, 20_000)).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let t = Instant::now();
        pool.terminate();
        assert!(t.elapsed() < Duration::from_secs(5), "terminate is prompt");
        assert!(matches!(h.get_timeout(T), Err(TaskError::Failed(_))));
        assert!(pool.pids().is_empty());
        pool.join().unwrap();

        // drop terminates too
        let pool = Pool::new(1).unwrap();
        let h = pool.apply_async(sleep_then, (1, 20_000)).unwrap();
        let pid = pool.pids()[0];
        drop(pool);
        assert!(matches!(h.get_timeout(T), Err(TaskError::Failed(_))));
        wait_until(T, "the worker to be gone", || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| s.contains(") Z"))
                .unwrap_or(true)
        });
    });
}

#[test]
fn the_start_method_is_the_builders_choice() {
    watchdog(60, || {
        for (method, x) in [
            (procactor::StartMethod::Spawn, 3),
            (procactor::StartMethod::ForkServer, 4),
        ] {
            let pool = Pool::builder()
                .processes(1)
                .start_method(method)
                .build()
                .unwrap();
            assert_eq!(pool.apply(square, x).unwrap(), x * x);
        }
        // fork needs a single-threaded process at build (this test runs on one of
        // libtest's threads): refused, not silently replaced
        let e = Pool::builder()
            .processes(1)
            .start_method(procactor::StartMethod::Fork)
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("fork"), "{e}");
        assert!(e.to_string().contains("threads"), "{e}");
        assert!(Pool::builder().processes(0).build().is_err());
    });
}

#[test]
fn maxtasksperchild_recycles_workers_without_losing_tasks() {
    watchdog(60, || {
        let pool = Pool::builder()
            .processes(2)
            .maxtasksperchild(3)
            .build()
            .unwrap();
        let pids: Vec<u32> = pool.map_chunksize(pid_of, 0..30u64, 1).unwrap();
        assert_eq!(pids.len(), 30);
        let distinct: std::collections::BTreeSet<u32> = pids.iter().copied().collect();
        // 30 chunks, at most 3 per worker process: at least 10 processes took part
        assert!(distinct.len() >= 10, "{distinct:?}");
        for pid in &distinct {
            assert!(pids.iter().filter(|p| *p == pid).count() <= 3);
        }
    });
}

static SEEN: OnceLock<Queue<u32>> = OnceLock::new();
static COUNTS: OnceLock<Array<u32>> = OnceLock::new();

fn remember(q: Queue<u32>) {
    q.put(std::process::id()).unwrap();
    let _ = SEEN.set(q);
}

fn report(x: u64) -> u64 {
    SEEN.get().expect("the initializer ran").put(7).unwrap();
    x
}

#[test]
fn the_initializer_runs_in_every_worker_and_may_pass_handles() {
    watchdog(60, || {
        let q = Queue::new().unwrap();
        let pool = Pool::builder()
            .processes(2)
            .initializer(remember, q.clone())
            .build()
            .unwrap();
        let mut pids = vec![q.get_timeout(T).unwrap(), q.get_timeout(T).unwrap()];
        pids.sort();
        let mut now = pool.pids();
        now.sort();
        assert_eq!(pids, now);
        assert_eq!(pool.map(report, 0..4u64).unwrap(), [0, 1, 2, 3]);
        for _ in 0..4 {
            assert_eq!(q.get_timeout(T).unwrap(), 7);
        }
    });
}

fn bad_init(_: u8) {
    panic!("no initializing today");
}

#[test]
fn a_failing_initializer_does_not_hang_the_pool() {
    watchdog(60, || {
        let pool = Pool::builder()
            .processes(1)
            .initializer(bad_init, 0u8)
            .build()
            .unwrap();
        match pool.apply(square, 2) {
            Err(TaskError::Failed(m)) => assert!(m.contains("no initializing today"), "{m}"),
            other => panic!("expected a failure, got {other:?}"),
        }
        assert!(pool.apply_async(square, 2).is_err());
    });
}

fn counted(i: u64) -> u64 {
    let c = COUNTS.get().expect("initializer");
    let mut g = c.lock().unwrap();
    g[i as usize] += 1;
    drop(g);
    std::thread::sleep(Duration::from_millis(1 + i % 3));
    i
}

fn keep_counts(a: Array<u32>) {
    let _ = COUNTS.set(a);
}

#[test]
fn imap_reads_its_input_lazily_with_flat_memory() {
    watchdog(120, || {
        let pool = Pool::new(2).unwrap();
        // an endless input: only what is consumed (plus a bounded window) is read
        let pulled = std::sync::atomic::AtomicU64::new(0);
        let first: Vec<u64> = pool
            .imap(
                square,
                (0u64..).inspect(|_| {
                    pulled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }),
            )
            .unwrap()
            .take(100)
            .map(Result::unwrap)
            .collect();
        assert_eq!(first[99], 99 * 99);
        assert!(pulled.load(std::sync::atomic::Ordering::Relaxed) < 100_000);

        fn rss_kib() -> u64 {
            let s = std::fs::read_to_string("/proc/self/status").unwrap();
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap()
        }
        let n = 1_000_000u64;
        let mut sum = 0u64;
        let mut peak = 0;
        let start = rss_kib();
        for (i, r) in pool.imap_chunksize(square, 0..n, 256).unwrap().enumerate() {
            let v = r.unwrap();
            assert_eq!(v, (i as u64) * (i as u64));
            sum = sum.wrapping_add(v);
            if i % 100_000 == 0 {
                peak = peak.max(rss_kib());
            }
        }
        assert_eq!(sum, (0..n).map(|x| x * x).fold(0u64, u64::wrapping_add));
        // a million results never sat in memory at once (8 MB for the values alone,
        // far more in Python's eager list)
        assert!(
            peak < start + 32 * 1024,
            "rss grew from {start} to {peak} KiB"
        );
    });
}

fn run_kill_schedule(kills: &[u64]) {
    let n = 60usize;
    let counts = Array::<u32>::zeroed(n).unwrap();
    let pool = Pool::builder()
        .processes(2)
        .initializer(keep_counts, counts.clone())
        .build()
        .unwrap();
    let each: Vec<Result<u64, TaskError>> = std::thread::scope(|s| {
        // kill a worker at each scheduled moment while the imap runs
        s.spawn(|| {
            for &ms in kills {
                std::thread::sleep(Duration::from_millis(ms));
                if let Some(&pid) = pool.pids().first() {
                    let _ = std::process::Command::new("kill")
                        .args(["-9", &pid.to_string()])
                        .status();
                }
            }
        });
        pool.imap(counted, 0..n as u64).unwrap().collect()
    });
    // every task ends with its result or WorkerDied: never lost, never twice
    assert_eq!(each.len(), n);
    let counts = counts.to_vec();
    let mut died = 0;
    for (i, r) in each.iter().enumerate() {
        match r {
            Ok(v) => {
                assert_eq!(*v, i as u64);
                assert_eq!(
                    counts[i], 1,
                    "item {i} succeeded but ran {} times",
                    counts[i]
                );
            }
            Err(TaskError::WorkerDied(_)) => {
                died += 1;
                assert!(counts[i] <= 1, "item {i} ran {} times", counts[i]);
            }
            Err(e) => panic!("item {i}: unexpected {e:?}"),
        }
    }
    assert!(
        died <= kills.len(),
        "{died} tasks failed for {} kills",
        kills.len()
    );
    // and the pool goes on
    assert_eq!(pool.map(square, 0..3u64).unwrap(), [0, 1, 4]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 5, ..ProptestConfig::default() })]
    #[test]
    fn workers_killed_at_random_moments_never_lose_or_repeat_a_task(
        kills in proptest::collection::vec(0u64..60, 0..3),
    ) {
        let k = kills.clone();
        watchdog(120, move || run_kill_schedule(&k));
    }
}

fn fails_on_multiples_of_7(x: u64) -> u64 {
    assert!(x == 0 || !x.is_multiple_of(7), "multiple of seven: {x}");
    x
}

#[test]
fn map_reports_the_first_failure_in_input_order_and_unencodable_arguments() {
    watchdog(60, || {
        let pool = Pool::new(2).unwrap();
        match pool.map_chunksize(fails_on_multiples_of_7, 0..30u64, 1) {
            Err(TaskError::Panicked { message }) => {
                assert!(message.contains("multiple of seven: 7"), "{message}")
            }
            other => panic!("expected the panic of item 7, got {other:?}"),
        }
        // an argument that cannot be encoded fails its items, not the pool
        let bad = pool.map(refuse, vec![common::Refuses]);
        assert!(matches!(bad, Err(TaskError::Failed(_))), "{bad:?}");
        assert_eq!(pool.map(square, 0..3u64).unwrap(), [0, 1, 4]);
        // a closed pool refuses imap at once
        pool.close();
        assert!(pool.imap(square, 0..3u64).is_err());
    });
}

fn refuse(_: common::Refuses) -> u8 {
    0
}

// ---- targets of any arity (issue 18, item 6)

fn mul(a: u64, b: u64) -> u64 {
    a * b
}

fn three(a: u64, b: String, c: bool) -> String {
    format!("{a}{b}{c}")
}

fn forty_two() -> u64 {
    42
}

static PREFIX: OnceLock<String> = OnceLock::new();

fn set_prefix(a: String, b: u32) {
    let _ = PREFIX.set(format!("{a}{b}"));
}

fn prefixed(x: u64) -> String {
    format!("{}-{x}", PREFIX.get().expect("the initializer ran"))
}

#[test]
fn every_method_takes_targets_of_any_arity() {
    watchdog(60, || {
        let pool = Pool::new(2).unwrap();
        // Python's starmap: each tuple unpacked into the parameters
        assert_eq!(pool.starmap(mul, vec![(1, 2), (3, 4)]).unwrap(), [2, 12]);
        // a one-argument function of a tuple still gets the tuple whole
        assert_eq!(pool.starmap(add, vec![(1, 2), (3, 4)]).unwrap(), [3, 7]);
        assert_eq!(pool.map(mul, vec![(5, 5)]).unwrap(), [25]);
        assert_eq!(
            pool.map_chunksize(mul, vec![(1, 1), (2, 2), (3, 3)], 2)
                .unwrap(),
            [1, 4, 9]
        );
        assert_eq!(pool.apply(mul, (6, 7)).unwrap(), 42);
        assert_eq!(pool.apply(forty_two, ()).unwrap(), 42);
        assert_eq!(
            pool.apply(three, (1, "x".to_string(), true)).unwrap(),
            "1xtrue"
        );
        let h = pool.apply_async(|a: u8, b: u8| a + b, (2, 3)).unwrap();
        assert_eq!(h.get_timeout(T).unwrap(), 5);
        let h = pool.map_async(mul, vec![(2, 3), (4, 5)]).unwrap();
        assert_eq!(h.get_timeout(T).unwrap(), [6, 20]);
        let v: Vec<u64> = pool
            .imap(mul, (0..5u64).map(|x| (x, x)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(v, [0, 1, 4, 9, 16]);
        let mut v: Vec<u64> = pool
            .imap_unordered_chunksize(mul, (0..5u64).map(|x| (x, 2)), 2)
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        v.sort();
        assert_eq!(v, [0, 2, 4, 6, 8]);
        // function pointers too
        let p: fn(u64, u64) -> u64 = mul;
        assert_eq!(pool.starmap(p, vec![(7, 7)]).unwrap(), [49]);
    });
}

#[test]
fn initializers_take_any_arity_and_capturing_closures_are_refused() {
    watchdog(60, || {
        // (one pool in all: under the Fork matrix run a second pool could not fork its
        // zygote once the first has run threads; the refused build starts none)
        let y = 3u64;
        let e = Pool::builder()
            .processes(1)
            .initializer(move |x: u64| assert_eq!(x, y), 3)
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("captures variables"), "{e}");

        let pool = Pool::builder()
            .processes(1)
            .initializer(set_prefix, ("p".to_string(), 3))
            .build()
            .unwrap();
        assert_eq!(pool.map(prefixed, [1u64, 2]).unwrap(), ["p3-1", "p3-2"]);
        let e = pool.apply(move |x: u64| x + y, 1).unwrap_err();
        assert!(
            matches!(&e, TaskError::Failed(m) if m.contains("captures variables")),
            "{e:?}"
        );
    });
}
