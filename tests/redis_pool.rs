//! The Redis Pool and supervised Redis workers against a real redis-server: map and
//! friends, workers in separate processes each with its own client ("hosts"), a worker
//! SIGKILLed mid-task (its task redelivered and completed once), a crashing supervised
//! worker restarted with its item redelivered.
procactor::test_support!();

mod common;
mod redis_support;
use common::{wait_until, watchdog};
use procactor::redis::{self, ConnectRedis, Pool, RedisQueue, Tasks};
use procactor::{ActorError, JoinableQueue, Process, Supervisor, TaskError};
use redis_support::{require_redis, unique, url};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

fn square(x: u64) -> u64 {
    x * x
}

fn panics_on_7(x: u64) -> u64 {
    assert_ne!(x, 7, "seven is not allowed");
    x
}

fn never_registered(x: u64) -> u64 {
    x + 1
}

fn put_into((q, x): (procactor::Queue<u64>, u64)) -> u64 {
    q.put(x).unwrap();
    x
}

/// The skip rule itself (issue 17): see `redis_support::check_the_skip_rule`.
#[test]
fn without_redis_the_tests_skip_visibly_unless_required() {
    watchdog(120, || {
        redis_support::check_the_skip_rule("without_redis_the_tests_skip_visibly_unless_required")
    });
}

#[test]
fn a_handle_in_a_task_argument_is_refused_naming_the_alternatives() {
    require_redis!();
    watchdog(60, || {
        let pool = Pool::builder(&url(), &unique("pool-handles"))
            .task(put_into)
            .build()
            .unwrap();
        let q = procactor::Queue::new().unwrap();
        match pool.apply_async(put_into, (q, 1)) {
            Err(TaskError::Failed(m)) => {
                assert!(m.contains("local procactor::Pool"), "{m}");
                assert!(!m.contains("could not complete"), "not wrapped twice: {m}");
            }
            other => panic!("expected a clear refusal, got {other:?}"),
        }
    });
}

/// Sleeps `ms`, then answers `(x, pid of the worker)`.
fn slow_with_pid((x, ms): (u64, u64)) -> (u64, u32) {
    std::thread::sleep(Duration::from_millis(ms));
    (x, std::process::id())
}

#[test]
fn map_apply_async_and_imap_unordered() {
    require_redis!();
    watchdog(60, || {
        let pool = Pool::builder(&url(), &unique("pool"))
            .task(square)
            .task(panics_on_7)
            .local_workers(2)
            .build()
            .unwrap();
        let want: Vec<u64> = (0..200).map(|x| x * x).collect();
        assert_eq!(
            pool.map_timeout(square, (0..200).collect(), T).unwrap(),
            want
        );
        assert_eq!(
            pool.map_chunksize(square, (0..10).collect(), 3).unwrap(),
            want[..10]
        );
        assert_eq!(pool.map(square, Vec::new()).unwrap(), Vec::<u64>::new());
        assert_eq!(
            pool.apply_async(square, 12).unwrap().get_timeout(T),
            Ok(144)
        );
        let mut got: Vec<u64> = pool
            .imap_unordered(square, (0..20).collect())
            .unwrap()
            .map(Result::unwrap)
            .collect();
        got.sort();
        assert_eq!(got, want[..20]);
        match pool.apply_async(panics_on_7, 7).unwrap().get_timeout(T) {
            Err(TaskError::Panicked { message }) => {
                assert!(message.contains("seven is not allowed"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            pool.map_chunksize(panics_on_7, (0..10).collect(), 1),
            Err(TaskError::Panicked { .. })
        ));
        assert!(matches!(
            pool.apply_async(never_registered, 1),
            Err(TaskError::Failed(_))
        ));
        assert_eq!(pool.duplicates(), 0);
    });
}

fn mul(a: u64, b: u64) -> u64 {
    a * b
}

fn answer() -> u64 {
    42
}

fn label(name: String, n: u32, upper: bool) -> String {
    let s = format!("{name}-{n}");
    if upper {
        s.to_uppercase()
    } else {
        s
    }
}

#[test]
fn tasks_of_two_zero_and_three_arguments_run_on_local_workers() {
    require_redis!();
    watchdog(60, || {
        let pool = Pool::builder(&url(), &unique("pool-arity"))
            .task(mul)
            .task(answer)
            .task(label)
            .task(|a: u64, b: u64| a + b)
            .local_workers(2)
            .build()
            .unwrap();
        // two arguments, given as a tuple per call
        assert_eq!(
            pool.map_timeout(mul, vec![(1, 2), (3, 4), (5, 6)], T)
                .unwrap(),
            [2, 12, 30]
        );
        let pairs: Vec<(u64, u64)> = (0..50).map(|i| (i, i + 1)).collect();
        let want: Vec<u64> = pairs.iter().map(|&(a, b)| a * b).collect();
        assert_eq!(pool.map_chunksize(mul, pairs.clone(), 7).unwrap(), want);
        assert_eq!(
            pool.apply_async(mul, (6, 7)).unwrap().get_timeout(T),
            Ok(42)
        );
        let mut got: Vec<u64> = pool
            .imap_unordered(mul, pairs)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        got.sort();
        assert_eq!(got, want);
        // no argument: `()` per call
        assert_eq!(pool.apply_async(answer, ()).unwrap().get_timeout(T), Ok(42));
        assert_eq!(
            pool.map_timeout(answer, vec![(); 3], T).unwrap(),
            [42, 42, 42]
        );
        // three arguments of different types
        assert_eq!(
            pool.apply_async(label, ("a".to_string(), 3, true))
                .unwrap()
                .get_timeout(T),
            Ok("A-3".to_string())
        );
        // the closure is not the one registered (each closure is its own type)
        assert!(matches!(
            pool.apply_async(|a: u64, b: u64| a + b, (1, 2)),
            Err(TaskError::Failed(_))
        ));
        // a function registered as an item is not registered as a pointer
        match pool.apply_async(mul as fn(u64, u64) -> u64, (1, 2)) {
            Err(TaskError::Failed(m)) => assert!(m.contains("not one of this pool's tasks"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(pool.duplicates(), 0);
    });
}

#[test]
fn function_pointers_of_any_arity_are_tasks_and_capturing_closures_are_refused() {
    require_redis!();
    watchdog(60, || {
        let p: fn(u64, u64) -> u64 = mul;
        let pool = Pool::builder(&url(), &unique("pool-pointers"))
            .task(p)
            .local_workers(1)
            .build()
            .unwrap();
        assert_eq!(pool.apply_async(p, (6, 7)).unwrap().get_timeout(T), Ok(42));
        assert!(matches!(
            pool.apply_async(mul, (6, 7)),
            Err(TaskError::Failed(_))
        ));
        drop(pool);

        let y = 5u64;
        match Pool::builder(&url(), &unique("pool-capture"))
            .task(move |x: u64| x + y)
            .build()
        {
            Err(redis::PoolError::NotATarget(m)) => {
                assert!(m.contains("captures variables"), "{m}")
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        let e = redis::run_worker(
            &url(),
            &unique("pool-capture"),
            Tasks::new().with(move |x: u64| x + y),
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(e.to_string().contains("captures variables"), "{e}");
    });
}

/// Another "host": its own process, its own Redis client, its own list of functions.
fn host((url, pool): (String, String)) {
    redis::run_worker(
        &url,
        &pool,
        Tasks::new().with(slow_with_pid),
        Duration::from_secs(30),
    )
    .unwrap();
}

#[test]
fn workers_on_several_hosts_share_the_work_and_stop_on_request() {
    require_redis!();
    watchdog(60, || {
        let name = unique("hosts");
        let pool = Pool::builder(&url(), &name)
            .task(slow_with_pid)
            .build()
            .unwrap();
        let mut hosts: Vec<_> = (0..2)
            .map(|_| Process::new(host, (url(), name.clone())).start().unwrap())
            .collect();
        let out = pool
            .map_timeout(slow_with_pid, (0..40).map(|x| (x, 20)).collect(), T)
            .unwrap();
        assert_eq!(
            out.iter().map(|r| r.0).collect::<Vec<_>>(),
            (0..40).collect::<Vec<_>>()
        );
        let pids: HashSet<u32> = out.iter().map(|r| r.1).collect();
        let host_pids: HashSet<u32> = hosts.iter().map(Process::pid).collect();
        assert_eq!(pids, host_pids, "both hosts took part");
        pool.stop_workers().unwrap();
        for h in &mut hosts {
            assert!(h.join_timeout(Duration::from_secs(10)).is_ok());
            h.result().unwrap();
        }
    });
}

/// Says which process took it (its pid, on the Redis queue named `started`), sleeps
/// `ms`, then answers `(x, pid of the worker)`.
fn announce_then_sleep((x, ms, url, started): (u64, u64, String, String)) -> (u64, u32) {
    RedisQueue::<u32>::connect(&url, &started)
        .unwrap()
        .put(std::process::id())
        .unwrap();
    slow_with_pid((x, ms))
}

#[test]
fn a_worker_sigkilled_mid_task_loses_nothing() {
    require_redis!();
    watchdog(60, || {
        let pool = Pool::builder(&url(), &unique("kill"))
            .task(announce_then_sleep)
            .local_workers(2)
            .visibility_timeout(Duration::from_millis(700))
            .build()
            .unwrap();
        let victim = pool.worker_pids()[0];
        let started_name = unique("kill-started");
        let started = RedisQueue::<u32>::connect(&url(), &started_name).unwrap();
        let items: Vec<(u64, u64, String, String)> = (0..8)
            .map(|x| (x, 300, url(), started_name.clone()))
            .collect();
        let pending = pool.imap_unordered(announce_then_sleep, items).unwrap();
        // the victim holds a task when it dies: it said it took one, and sleeps 300 ms
        while started
            .get_timeout(T)
            .expect("the victim never took a task")
            != victim
        {}
        let killed = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("kill -KILL {victim}"))
            .status()
            .unwrap();
        assert!(killed.success());
        let mut got: Vec<(u64, u32)> = pending.map(Result::unwrap).collect();
        got.sort();
        assert_eq!(
            got.iter().map(|r| r.0).collect::<Vec<_>>(),
            (0..8).collect::<Vec<_>>(),
            "each task exactly once"
        );
        assert!(
            pool.redelivered() >= 1,
            "the victim's task came back with deliveries >= 2"
        );
        let survivor_did_the_rest = got.iter().any(|r| r.1 != victim);
        assert!(survivor_did_the_rest);
    });
}

#[derive(Serialize, Deserialize)]
struct Job {
    x: u64,
    out: RedisQueue<u64>,
    marker: String,
}

/// Crashes (a panic: the actor process ends) the first time it sees 13.
fn handle_job(job: Job) -> Result<(), ActorError> {
    if job.x == 13 && std::fs::create_dir(&job.marker).is_ok() {
        panic!("13 is unlucky the first time");
    }
    job.out
        .put(job.x * 10)
        .map_err(|e| ActorError::new(e.to_string()))
}

#[test]
fn supervised_redis_workers_restart_and_their_item_is_redelivered() {
    require_redis!();
    watchdog(60, || {
        let jobs = redis::RedisJoinableQueue::<Job>::builder(&url(), &unique("sup-jobs"))
            .visibility_timeout(Duration::from_millis(1000))
            .connect_joinable()
            .unwrap();
        let out = RedisQueue::<u64>::connect(&url(), &unique("sup-out")).unwrap();
        let marker = std::env::temp_dir().join(unique("marker").replace(':', "_"));
        let sup = Supervisor::builder()
            .max_restarts(5, Duration::from_secs(10))
            .build()
            .unwrap();
        let workers = redis::spawn_workers(&sup, 2, &jobs, handle_job).unwrap();
        for x in 0..20 {
            jobs.put(Job {
                x,
                out: out.clone(),
                marker: marker.to_string_lossy().into_owned(),
            })
            .unwrap();
        }
        assert!(jobs.join_timeout(T).is_ok(), "every job done");
        // read until quiet (each job is done, so nothing more is coming) and compare
        // the multiset: a job handled twice shows up twice
        let mut got = Vec::new();
        while let Ok(v) = out.get_timeout(Duration::from_millis(500)) {
            got.push(v);
        }
        got.sort_unstable();
        assert_eq!(got, (0..20).map(|x| x * 10).collect::<Vec<u64>>());
        wait_until(Duration::from_secs(5), "a restart", || {
            (0..2).any(|i| workers.member(i).is_some_and(|m| m.restarts() >= 1))
        });
        sup.shutdown(Duration::from_secs(5));
        let _ = std::fs::remove_dir(&marker);
        // the same handle type through the facade's trait
        let _: redis::RedisJoinableQueue<u8> =
            JoinableQueue::<u8>::connect_redis(&url(), &unique("sup-x")).unwrap();
    });
}

/// A two-argument handler: the queue's items are `(out, x)` pairs.
fn put_tenfold(out: RedisQueue<u64>, x: u64) -> Result<(), ActorError> {
    out.put(x * 10).map_err(|e| ActorError::new(e.to_string()))
}

#[test]
fn supervised_redis_workers_take_a_two_argument_handler() {
    require_redis!();
    watchdog(60, || {
        let jobs = redis::RedisJoinableQueue::<(RedisQueue<u64>, u64)>::builder(
            &url(),
            &unique("sup-pairs"),
        )
        .connect_joinable()
        .unwrap();
        let out = RedisQueue::<u64>::connect(&url(), &unique("sup-pairs-out")).unwrap();
        let sup = Supervisor::builder().build().unwrap();
        let _workers = redis::spawn_workers(&sup, 2, &jobs, put_tenfold).unwrap();
        for x in 0..10 {
            jobs.put((out.clone(), x)).unwrap();
        }
        assert!(jobs.join_timeout(T).is_ok(), "every job done");
        // read until quiet, compare the multiset (a duplicate shows up twice)
        let mut got = Vec::new();
        while let Ok(v) = out.get_timeout(Duration::from_millis(500)) {
            got.push(v);
        }
        got.sort_unstable();
        assert_eq!(got, (0..10).map(|x| x * 10).collect::<Vec<u64>>());
        // a plain function pointer (`Handler`) still makes a worker directly
        let h: redis::Handler<(RedisQueue<u64>, u64)> = |(o, x)| put_tenfold(o, x + 100);
        sup.shutdown(Duration::from_secs(5));
        let sup = Supervisor::builder().build().unwrap();
        let _w = sup
            .spawn_pool(1, || redis::RedisWorker::new(jobs.clone(), h))
            .unwrap();
        jobs.put((out.clone(), 1)).unwrap();
        assert!(
            jobs.join_timeout(T).is_ok(),
            "the pointer handler's job done"
        );
        assert_eq!(out.get_timeout(T).unwrap(), 1010);
        sup.shutdown(Duration::from_secs(5));
    });
}

// ------------------------------------------------------------- quiet task panics

/// Run only by `a_redis_worker_panic_prints_nothing_on_stderr`, in a child test
/// process whose stderr that test reads.
#[test]
#[ignore = "run by a_redis_worker_panic_prints_nothing_on_stderr"]
fn child_redis_pool_task_panics() {
    require_redis!();
    let pool = Pool::builder(&url(), &unique("quiet"))
        .task(panics_on_7)
        .local_workers(1)
        .build()
        .unwrap();
    match pool.apply_async(panics_on_7, 7).unwrap().get_timeout(T) {
        Err(TaskError::Panicked { message }) => {
            assert!(message.contains("seven is not allowed"), "{message}")
        }
        other => panic!("expected a panic, got {other:?}"),
    }
    assert_eq!(
        pool.apply_async(panics_on_7, 3).unwrap().get_timeout(T),
        Ok(3)
    );
    drop(pool);
    println!("CHILD-DONE");
}

/// A task's panic goes back to the caller and is not printed by the Redis pool's worker
/// (as the local pool's), unless `PROCACTOR_LOG=debug` asks for it.
#[test]
fn a_redis_worker_panic_prints_nothing_on_stderr() {
    require_redis!();
    watchdog(120, || {
        let run = |log: Option<&str>| {
            let url = url();
            let env = [
                ("PROCACTOR_LOG", log),
                ("PROCACTOR_REDIS_URL", Some(url.as_str())),
            ];
            let test = "child_redis_pool_task_panics";
            let out = common::run_test_in_child(test, true, &env);
            assert!(out.stdout.contains("CHILD-DONE"), "{}", out.stdout);
            out.stderr
        };
        let quiet = run(None);
        assert!(!quiet.contains("seven is not allowed"), "{quiet}");
        // asked for: printed, as any panic (so the check above can fail)
        let loud = run(Some("debug"));
        assert!(loud.contains("seven is not allowed"), "{loud}");
    });
}

/// Run only by `a_plain_process_running_run_worker_prints_no_task_panic`: a worker served
/// by `run_worker` on a thread of a process that is not a procactor child (as on another
/// host, from a plain `main`: no child panic hook is installed there by the runtime).
#[test]
#[ignore = "run by a_plain_process_running_run_worker_prints_no_task_panic"]
fn child_plain_run_worker_task_panics() {
    require_redis!();
    let name = unique("plain-quiet");
    let pool = Pool::builder(&url(), &name)
        .task(panics_on_7)
        .build()
        .unwrap();
    let (u, n) = (url(), name.clone());
    let worker = std::thread::spawn(move || {
        redis::run_worker(&u, &n, Tasks::new().with(panics_on_7), T).unwrap();
    });
    match pool.apply_async(panics_on_7, 7).unwrap().get_timeout(T) {
        Err(TaskError::Panicked { message }) => {
            assert!(message.contains("seven is not allowed"), "{message}");
            // the location, as the local pool's message has it
            assert!(message.contains("redis_pool.rs:"), "{message}");
        }
        other => panic!("expected a panic, got {other:?}"),
    }
    assert_eq!(
        pool.apply_async(panics_on_7, 3).unwrap().get_timeout(T),
        Ok(3)
    );
    pool.stop_workers().unwrap();
    worker.join().unwrap();
    // a panic outside a task is still printed (the hook passes it on)
    let other = std::thread::spawn(|| panic!("not a task: printed")).join();
    assert!(other.is_err());
    println!("CHILD-DONE");
}

/// `run_worker` in a plain process (a remote host's `main`) does not print its tasks'
/// panics either (they go back to the caller), unless `PROCACTOR_LOG=debug`; a panic
/// outside a task is printed as usual.
#[test]
fn a_plain_process_running_run_worker_prints_no_task_panic() {
    require_redis!();
    watchdog(120, || {
        let run = |log: Option<&str>| {
            let url = url();
            let env = [
                ("PROCACTOR_LOG", log),
                ("PROCACTOR_REDIS_URL", Some(url.as_str())),
            ];
            let out = common::run_test_in_child("child_plain_run_worker_task_panics", true, &env);
            assert!(out.stdout.contains("CHILD-DONE"), "{}", out.stdout);
            out.stderr
        };
        let quiet = run(None);
        assert!(!quiet.contains("seven is not allowed"), "{quiet}");
        assert!(quiet.contains("not a task: printed"), "{quiet}");
        // asked for: printed (so the check above can fail)
        let loud = run(Some("debug"));
        assert!(loud.contains("seven is not allowed"), "{loud}");
    });
}
