//! Start methods (API.md section 0, issue 11): children of the fork server and children
//! made by `fork()` behave as spawned ones do, and the test matrix: every cross-process
//! integration suite run again under the fork server, and under `Fork`: the process,
//! pipe, queue, shared and sync suites in one process each, the pool, actor and
//! supervisor suites one test per process.
//!
//! `Fork` is refused in a process with more than one thread, and libtest runs every test
//! on a thread of its own, except when it cannot start one: then it runs the test on the
//! main thread ("synchronously here instead"). The `Fork` matrix run makes every such
//! thread start fail (`RUST_MIN_STACK` larger than any address space; procactor's own
//! threads set their stack size and still start) and passes `--test-threads=1`: the
//! suites' own tests run single-threaded, forking for real. A pool or supervisor with
//! `Fork` forks a zygote when built, which needs a single-threaded process: hence one
//! process per test for those suites. Tests that cannot apply are listed, with why, in
//! `NOT_UNDER_FORK`. The `Fork` scenarios below (run inside a spawned child, whose only
//! thread is its main thread) cover what the suites cannot: refusal, threads, zygotes.

mod common;

use common::{os_parent_of, wait_until, watchdog};
use procactor::{
    active_children, current_process, parent_process, set_start_method, ExitStatus, JoinError,
    Pipe, Pool, Process, Queue, SpawnError, StartMethod, Supervisor, Value,
};
use std::time::{Duration, Instant};

procactor::test_support!();

const T: Duration = Duration::from_secs(20);

fn square(x: u64) -> u64 {
    x * x
}

fn boom(_: ()) {
    panic!("boom in the child");
}

fn sleep_forever(_: ()) {
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Gone: no such process, or only a zombie left for someone else to reap.
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat.get(i + 2..i + 3))
            .is_some_and(|s| s == "Z" || s == "X"),
    }
}

/// (name, pid, parent pid by procactor, parent pid by the OS)
fn whoami(_: ()) -> (String, u32, Option<u32>, Option<u32>) {
    let me = current_process();
    (
        me.name().to_string(),
        me.pid(),
        parent_process().map(|p| p.pid()),
        os_parent_of(me.pid()),
    )
}

fn checksum(v: Vec<u8>) -> u64 {
    v.iter()
        .enumerate()
        .map(|(i, &b)| (i as u64 + 1) * u64::from(b))
        .sum()
}

fn through_queue((q, x): (Queue<u64>, u64)) {
    q.put(x * x).unwrap();
}

fn add_to((v, n): (Value<u64>, u64)) {
    for _ in 0..n {
        *v.lock().unwrap() += 1;
    }
}

fn join_within(p: &mut Process<impl procactor::Message>) -> ExitStatus {
    p.join_timeout(T).expect("the child did not end in time")
}

/// Runs `scenario` in a spawned child and fails with its panic, if any.
fn in_own_child(scenario: fn(())) {
    let mut p = Process::new(scenario, ())
        .start_method(StartMethod::Spawn)
        .start()
        .unwrap();
    let status = join_within(&mut p);
    if let Err(e) = p.result() {
        panic!("the scenario failed ({status:?}): {e}");
    }
    assert_eq!(status, ExitStatus::Code(0));
}

/// `#[test] fn $name`: [`in_own_child`]`($scenario)` under a 120 s watchdog (each such
/// scenario has a fork server of its own: the other tests' server is left alone).
macro_rules! own_child_test {
    ($name:ident, $scenario:ident) => {
        #[test]
        fn $name() {
            watchdog(120, || in_own_child($scenario));
        }
    };
}

/// The end of a scenario whose fork server was retired: kills `child`, that server's
/// last child, sees it reported killed (the retired server still relays its status), and
/// waits for the server, its children served out, to exit.
fn kill_the_last_child_of_a_retired_server(child: &mut Process<()>, server: u32) {
    child.kill().unwrap();
    assert_eq!(join_within(child), ExitStatus::Signal(9));
    wait_until(T, "the retired server to exit", || gone(server));
}

#[test]
fn fork_server_children_behave_like_spawned_ones() {
    watchdog(120, || {
        let me = std::process::id();
        let fs = StartMethod::ForkServer;
        let mut p = Process::new(square, 7).start_method(fs).start().unwrap();
        assert_eq!(join_within(&mut p), ExitStatus::Code(0));
        assert_eq!(p.result().unwrap(), 49);

        // named, told who its parent is, but forked by the server (the OS's parent)
        let mut a = Process::new(whoami, ())
            .name("a")
            .start_method(fs)
            .start()
            .unwrap();
        let mut b = Process::new(whoami, ()).start_method(fs).start().unwrap();
        assert_eq!(join_within(&mut a), ExitStatus::Code(0));
        assert_eq!(join_within(&mut b), ExitStatus::Code(0));
        let (name_a, pid_a, parent_a, os_parent_a) = a.result().unwrap();
        let (name_b, _, parent_b, os_parent_b) = b.result().unwrap();
        assert_eq!((name_a.as_str(), pid_a, parent_a), ("a", a.pid(), Some(me)));
        assert!(name_b.starts_with("Process-"), "{name_b}");
        assert_eq!(parent_b, Some(me));
        let server = os_parent_a.expect("the child saw its OS parent");
        assert_ne!(server, me, "a fork-server child is the server's child");
        assert_eq!(os_parent_b, Some(server), "one server forks every child");

        // arguments larger than what is written before the child runs
        let big: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let mut p = Process::new(checksum, big.clone())
            .start_method(fs)
            .start()
            .unwrap();
        assert_eq!(join_within(&mut p), ExitStatus::Code(0));
        assert_eq!(p.result().unwrap(), checksum(big));

        // a panic: exit code 1 and the message
        let mut p = Process::new(boom, ()).start_method(fs).start().unwrap();
        assert_eq!(join_within(&mut p), ExitStatus::Code(1));
        match p.result() {
            Err(JoinError::Panicked { message }) => {
                assert!(message.contains("boom in the child"), "{message}")
            }
            other => panic!("expected the panic, got {other:?}"),
        }

        // handles travel as they do to spawned children
        let q = Queue::new().unwrap();
        let mut p = Process::new(through_queue, (q.clone(), 9))
            .start_method(fs)
            .start()
            .unwrap();
        assert_eq!(q.get_timeout(T).unwrap(), 81);
        assert_eq!(join_within(&mut p), ExitStatus::Code(0));

        // alive, listed, terminated, killed
        let mut t = Process::new(sleep_forever, ())
            .start_method(fs)
            .start()
            .unwrap();
        let mut k = Process::new(sleep_forever, ())
            .start_method(fs)
            .start()
            .unwrap();
        assert!(t.is_alive() && k.is_alive());
        let live: Vec<u32> = active_children().iter().map(|c| c.pid()).collect();
        assert!(
            live.contains(&t.pid()) && live.contains(&k.pid()),
            "{live:?}"
        );
        t.terminate().unwrap();
        k.kill().unwrap();
        assert_eq!(join_within(&mut t), ExitStatus::Signal(15));
        assert_eq!(join_within(&mut k), ExitStatus::Signal(9));
        assert!(!t.is_alive());
        assert_eq!(t.exitcode(), Some(ExitStatus::Signal(15)));
    });
}

/// Starts a fork-server child that sleeps, reports `(its pid, the server's pid)`, and
/// sleeps too.
fn middle(out: Queue<(u32, u32)>) {
    set_start_method(StartMethod::ForkServer).unwrap();
    let p = Process::new(sleep_forever, ()).start().unwrap();
    let server = os_parent_of(p.pid()).unwrap_or(0);
    out.put((p.pid(), server)).unwrap();
    std::mem::forget(p);
    sleep_forever(());
}

#[test]
fn the_fork_server_dies_with_its_parent_and_takes_its_children() {
    watchdog(120, || {
        let out = Queue::new().unwrap();
        let mut m = Process::new(middle, out.clone())
            .start_method(StartMethod::Spawn)
            .start()
            .unwrap();
        let (child, server) = out.get_timeout(T).unwrap();
        assert!(server != 0 && server != m.pid());
        assert!(!gone(child) && !gone(server));
        m.kill().unwrap();
        assert_eq!(join_within(&mut m), ExitStatus::Signal(9));
        wait_until(T, "the server and its child to die", || {
            gone(server) && gone(child)
        });
    });
}

/// (In a child of its own, with a fork server of its own: the other tests' server is
/// left alone.)
fn a_killed_fork_server_is_replaced_and_its_children_are_reported_killed_scenario(_: ()) {
    let fs = StartMethod::ForkServer;
    let (mut p, server) = sleeper_on_the_fork_server();
    assert_ne!(server, std::process::id());
    let killed = std::process::Command::new("kill")
        .args(["-9", &server.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    // the child dies with its server (parent-death signal); its status is not lost
    assert_eq!(join_within(&mut p), ExitStatus::Signal(9));
    // the next start brings up a new server
    let mut q = Process::new(whoami, ()).start_method(fs).start().unwrap();
    assert_eq!(join_within(&mut q), ExitStatus::Code(0));
    let (_, _, _, os_parent_q) = q.result().unwrap();
    let new_server = os_parent_q.unwrap();
    assert_ne!(new_server, server);
    assert_ne!(new_server, std::process::id());
}

own_child_test!(
    a_killed_fork_server_is_replaced_and_its_children_are_reported_killed,
    a_killed_fork_server_is_replaced_and_its_children_are_reported_killed_scenario
);

/// (In a child of its own, with a fork server of its own: the other tests' server is
/// left alone.)
fn a_start_that_fails_on_the_server_leaves_its_other_children_running_scenario(_: ()) {
    let fs = StartMethod::ForkServer;
    let (mut a, server) = sleeper_on_the_fork_server();
    // the server may open no descriptor numbered 3 or above any more: the next
    // request's control socket cannot reach it, and that start fails on it
    let limited = std::process::Command::new("prlimit")
        .args(["--pid", &server.to_string(), "--nofile=3:3"])
        .status()
        .unwrap();
    assert!(limited.success());
    // the spare the server forked after `a`'s start (before the limit) serves the next
    // start…
    let mut spare = Process::new(square, 3).start_method(fs).start().unwrap();
    assert_eq!(join_within(&mut spare), ExitStatus::Code(0));
    assert_eq!(spare.result().unwrap(), 9);
    // …and the one after needs a fork the crippled server cannot make: that server is
    // retired and the start is made again, on a new server
    let mut b = Process::new(whoami, ()).start_method(fs).start().unwrap();
    assert_eq!(join_within(&mut b), ExitStatus::Code(0));
    let (_, _, _, b_server) = b.result().unwrap();
    assert!(
        b_server.is_some_and(|s| s != server && s != std::process::id()),
        "not started by a new fork server: {b_server:?} (the old one is {server})"
    );
    // …without taking `a` with it
    assert!(a.is_alive());
    // and a new server serves the next start
    let mut c = Process::new(whoami, ()).start_method(fs).start().unwrap();
    assert_eq!(join_within(&mut c), ExitStatus::Code(0));
    assert_eq!(c.result().unwrap().3, b_server);
    // and the old one still relays `a`'s end
    assert!(a.is_alive());
    kill_the_last_child_of_a_retired_server(&mut a, server);
}

own_child_test!(
    a_start_that_fails_on_the_server_leaves_its_other_children_running,
    a_start_that_fails_on_the_server_leaves_its_other_children_running_scenario
);

/// A child that sleeps until killed, started by this process's fork server, and that
/// server's pid.
fn sleeper_on_the_fork_server() -> (Process<()>, u32) {
    let p = Process::new(sleep_forever, ())
        .start_method(StartMethod::ForkServer)
        .start()
        .unwrap();
    let server = os_parent_of(p.pid()).unwrap();
    (p, server)
}

/// In a child of its own (its own fork server): after each start the server forks the
/// next start's child ahead of need (a spare, waiting for its bootstrap), the next start
/// is that very process, and a spare whose server is retired exits, quietly, while the
/// retired server's other children run on.
fn the_fork_server_forks_each_start_ahead_scenario(_: ()) {
    let fs = StartMethod::ForkServer;
    let (mut a, server) = sleeper_on_the_fork_server();
    // (the server's other children: the spare, and the memory keepers of children made
    // at leisure, told apart by name)
    let spare = || {
        common::os_children_of(server)
            .into_iter()
            .find(|&c| c != a.pid() && !gone(c) && !common::is_keeper(c))
    };
    wait_until(T, "the server to fork a spare", || spare().is_some());
    let waiting = spare().unwrap();
    // the next start is the process that was waiting
    let mut b = Process::new(whoami, ()).start_method(fs).start().unwrap();
    assert_eq!(b.pid(), waiting, "the start did not take the spare");
    assert_eq!(join_within(&mut b), ExitStatus::Code(0));
    let (_, pid, _, os_parent_b) = b.result().unwrap();
    assert_eq!((pid, os_parent_b), (waiting, Some(server)));
    // a new spare waits again; retiring the server (a default pool built under another
    // environment brings up a current one) ends it, not `a`
    wait_until(T, "the next spare", || spare().is_some());
    let next = spare().unwrap();
    assert_ne!(next, waiting);
    std::env::set_var("PROCACTOR_TEST_MARK", "retire the server");
    let pool = Pool::builder().processes(1).build().unwrap();
    assert_ne!(
        os_parent_of(pool.pids()[0]),
        Some(server),
        "the server was not replaced"
    );
    wait_until(T, "the retired server's spare to exit", || gone(next));
    assert!(
        a.is_alive(),
        "the retired server's child died with the spare"
    );
    drop(pool);
    kill_the_last_child_of_a_retired_server(&mut a, server);
}

own_child_test!(
    the_fork_server_forks_each_start_ahead,
    the_fork_server_forks_each_start_ahead_scenario
);

fn ready_then_sleep(ready: Queue<u32>) {
    ready.put(procactor::current_process().pid()).unwrap();
    sleep_forever(());
}

/// In a child of its own (its own fork server): the child of the start after a lone
/// start (its spare made at leisure, once its quiet time has passed) has a memory
/// keeper, a child of the server that holds a pidfd for it; killed, the child is
/// reported killed as before, and its keeper ends and is reaped. The first start's child (forked as the server started, in case a
/// start came at once) has none.
fn a_lone_starts_spare_has_a_memory_keeper_scenario(_: ()) {
    let fs = StartMethod::ForkServer;
    let ready: Queue<u32> = Queue::new().unwrap();
    let mut a = Process::new(ready_then_sleep, ready.clone())
        .start_method(fs)
        .start()
        .unwrap();
    let server = os_parent_of(a.pid()).unwrap();
    let keeper_of = |pid: u32| {
        common::os_children_of(server)
            .into_iter()
            .find(|&k| common::kept_by(k) == Some(pid))
    };
    // running: a keeper, had it one, would be there (made before the start is read)
    assert_eq!(ready.get_timeout(T).unwrap(), a.pid());
    assert_eq!(
        keeper_of(a.pid()),
        None,
        "the first start's child has a keeper"
    );
    // the next start's spare, forked once its quiet time has passed (a start coming
    // before would have it forked at once, without a keeper)
    let spare = || {
        common::os_children_of(server)
            .into_iter()
            .find(|&c| c != a.pid() && !gone(c) && !common::is_keeper(c))
    };
    wait_until(T, "the spare made at leisure", || spare().is_some());
    let mut b = Process::new(ready_then_sleep, ready.clone())
        .start_method(fs)
        .start()
        .unwrap();
    assert_eq!(ready.get_timeout(T).unwrap(), b.pid());
    let keeper = keeper_of(b.pid()).expect("the keeper of a child made at leisure");
    b.kill().unwrap();
    assert_eq!(join_within(&mut b), ExitStatus::Signal(9));
    wait_until(T, "the keeper to end and be reaped", || {
        !std::path::Path::new(&format!("/proc/{keeper}")).exists()
    });
    a.kill().unwrap();
    assert_eq!(join_within(&mut a), ExitStatus::Signal(9));
}

own_child_test!(
    a_lone_starts_spare_has_a_memory_keeper,
    a_lone_starts_spare_has_a_memory_keeper_scenario
);

/// In a child of its own (its own fork server): the server ignores `SIGINT` (Ctrl-C
/// reaches the whole process group; a program that handles it must not lose the server,
/// and with it every child), and its children get the default disposition back.
fn the_fork_server_outlives_an_interrupt_scenario(_: ()) {
    let fs = StartMethod::ForkServer;
    let (mut a, server) = sleeper_on_the_fork_server();
    assert_ne!(server, std::process::id());
    common::send_signal(server, "INT");
    // (a signal to a live process is delivered before `kill` returns; a server that did
    // not ignore it would be gone within this pause)
    std::thread::sleep(Duration::from_millis(300));
    assert!(!gone(server), "the fork server died of SIGINT");
    assert!(a.is_alive(), "the server's child died with it");
    // the same server serves the next start
    let mut b = Process::new(whoami, ()).start_method(fs).start().unwrap();
    assert_eq!(join_within(&mut b), ExitStatus::Code(0));
    let (_, _, _, b_server) = b.result().unwrap();
    assert_eq!(b_server, Some(server));
    // and a child has SIGINT's default back: it dies of it
    let sent = std::process::Command::new("kill")
        .args(["-INT", &a.pid().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    assert_eq!(join_within(&mut a), ExitStatus::Signal(2));
}

own_child_test!(
    the_fork_server_outlives_an_interrupt,
    the_fork_server_outlives_an_interrupt_scenario
);

/// What a pool worker sees of its environment: `PROCACTOR_TEST_MARK` and its working
/// directory.
fn env_and_cwd(_: u64) -> (Option<String>, String) {
    (
        std::env::var("PROCACTOR_TEST_MARK").ok(),
        std::env::current_dir().unwrap().display().to_string(),
    )
}

/// Runs in a spawned child, where no start method was set: pools and supervisors
/// default to the fork server (their restarts too), an explicit `Spawn` on a builder or
/// for the process is honoured, and the default server has the current environment and
/// working directory at each build.
fn owners_default_to_the_fork_server_scenario(_: ()) {
    assert_eq!(procactor::start_method(), StartMethod::Spawn, "nothing set");
    let fs = StartMethod::ForkServer;
    // a pool built without a method: its workers are forked by our fork server
    let pool = Pool::builder().processes(2).build().unwrap();
    for pid in pool.pids() {
        common::assert_os_parent(pid, fs, "default pool worker");
    }
    assert_eq!(pool.apply(square, 6).unwrap(), 36);
    // …and so is a replacement
    let victim = pool.pids()[0];
    let _ = std::process::Command::new("kill")
        .args(["-9", &victim.to_string()])
        .status();
    wait_until(T, "the pool worker's replacement", || {
        let p = pool.pids();
        p.len() == 2 && !p.contains(&victim)
    });
    for pid in pool.pids() {
        common::assert_os_parent(pid, fs, "default pool worker's replacement");
    }
    drop(pool);
    // a supervisor built without a method: its actor and the actor's restart too
    let out: Queue<(u64, u32)> = Queue::new().unwrap();
    actor_and_restart_started_by(Supervisor::builder(), &out, fs, "default supervised actor");

    // the builders' explicit Spawn is honoured, restarts included
    let spawn = StartMethod::Spawn;
    let pool = Pool::builder()
        .processes(1)
        .start_method(spawn)
        .build()
        .unwrap();
    common::assert_os_parent(pool.pids()[0], spawn, "Spawn pool worker");
    drop(pool);
    actor_and_restart_started_by(
        Supervisor::builder().start_method(spawn),
        &out,
        spawn,
        "Spawn supervised actor",
    );

    // the default server follows the environment and the working directory: a pool
    // built after a change sees it, as a spawned worker would
    let dir = std::env::temp_dir().canonicalize().unwrap();
    std::env::set_var("PROCACTOR_TEST_MARK", "after");
    std::env::set_current_dir(&dir).unwrap();
    let pool = Pool::builder().processes(1).build().unwrap();
    common::assert_os_parent(pool.pids()[0], fs, "default pool worker");
    assert_eq!(
        pool.apply(env_and_cwd, 0).unwrap(),
        (Some("after".to_string()), dir.display().to_string())
    );
    drop(pool);

    // a method set for the process, Spawn included, is honoured by the owners too
    procactor::set_start_method(spawn).unwrap();
    let pool = Pool::builder().processes(1).build().unwrap();
    common::assert_os_parent(pool.pids()[0], spawn, "pool worker after set_start_method");
    drop(pool);
    actor_and_restart_started_by(
        Supervisor::builder(),
        &out,
        spawn,
        "actor after set_start_method",
    );
}

/// Builds the supervisor, spawns a [`Seer`], and checks that its process and the
/// process of its restart (it exits with 9 when told) were started by `method`.
fn actor_and_restart_started_by(
    builder: procactor::SupervisorBuilder,
    out: &Queue<(u64, u32)>,
    method: StartMethod,
    what: &str,
) {
    let sup = builder.build().unwrap();
    let seer = sup.spawn(Seer { out: out.clone() }).unwrap();
    seer.send(false).unwrap();
    let (_, pid) = out.get_timeout(T).unwrap();
    common::assert_os_parent(pid, method, what);
    seer.send(true).unwrap(); // exits with 9: restarted
    seer.send(false).unwrap();
    let (_, pid2) = out.get_timeout(T).unwrap();
    assert_ne!(pid2, pid);
    common::assert_os_parent(pid2, method, &format!("{what}'s restart"));
    sup.shutdown(T);
}

own_child_test!(
    pools_and_supervisors_default_to_the_fork_server_unless_told_otherwise,
    owners_default_to_the_fork_server_scenario
);

#[test]
fn pools_and_supervisors_run_on_the_fork_server() {
    watchdog(120, || {
        let pool = Pool::builder()
            .processes(2)
            .start_method(StartMethod::ForkServer)
            .build()
            .unwrap();
        // each worker's OS parent is our fork server (our child, run with its variable)
        let pids = pool.pids();
        assert_eq!(pids.len(), 2);
        for &pid in &pids {
            common::assert_os_parent(pid, StartMethod::ForkServer, "pool worker");
        }
        assert_eq!(
            pool.map(square, 0..100u64).unwrap(),
            (0..100u64).map(|x| x * x).collect::<Vec<_>>()
        );
        let sup = Supervisor::builder()
            .start_method(StartMethod::ForkServer)
            .build()
            .unwrap();
        // a supervised actor, and its restart, come from the fork server too
        let out: Queue<(u64, u32)> = Queue::new().unwrap();
        let seer = sup.spawn(Seer { out: out.clone() }).unwrap();
        seer.send(false).unwrap();
        let (_, pid) = out.get_timeout(T).unwrap();
        assert_eq!(Some(pid), seer.pid());
        common::assert_os_parent(pid, StartMethod::ForkServer, "supervised actor");
        seer.send(true).unwrap(); // exits with 9: restarted
        wait_until(T, "the actor's restart", || {
            seer.pid().is_some_and(|p| p != pid)
        });
        seer.send(false).unwrap();
        let (_, pid2) = out.get_timeout(T).unwrap();
        assert_ne!(pid2, pid);
        common::assert_os_parent(pid2, StartMethod::ForkServer, "restarted actor");
        sup.shutdown(T);
        // fork: refused for both here, with the reason (each forks a copy of this
        // process when it is built, which needs a single-threaded process)
        for e in [
            Pool::builder()
                .processes(1)
                .start_method(StartMethod::Fork)
                .build()
                .unwrap_err()
                .to_string(),
            Supervisor::builder()
                .start_method(StartMethod::Fork)
                .build()
                .unwrap_err()
                .to_string(),
        ] {
            assert!(e.contains("single-threaded process"), "{e}");
        }
    });
}

/// A child supervisor whose builder names no method starts its children, and their
/// restarts, with its parent's (here `Spawn`: the actor's OS parent is the child
/// supervisor's process itself, where its own default would have been a fork server of
/// its own); one whose builder names a method (`Fork`) keeps it (a zygote of its own).
#[test]
fn a_child_supervisor_takes_its_parents_start_method_unless_its_builder_names_one() {
    watchdog(120, || {
        let out: Queue<(u64, u32)> = Queue::new().unwrap();
        let ask = |a: &procactor::ActorRef<Seer>| {
            a.send(false).unwrap();
            out.get_timeout(T).unwrap().1
        };
        let sup = Supervisor::builder()
            .start_method(StartMethod::Spawn)
            .build()
            .unwrap();
        let mut plain = Supervisor::builder().name("plain");
        let low = plain.add(Seer { out: out.clone() }).unwrap();
        let plain = sup.spawn_supervisor(plain).unwrap();
        let mut forks = Supervisor::builder()
            .name("forks")
            .start_method(StartMethod::Fork);
        let forked = forks.add(Seer { out: out.clone() }).unwrap();
        let forks = sup.spawn_supervisor(forks).unwrap();

        let pid = ask(&low);
        let owner = plain.pid().expect("the child supervisor runs");
        let what = "actor of a child supervisor without a method, under a Spawn parent";
        common::assert_started_by(owner, pid, StartMethod::Spawn, what);
        low.send(true).unwrap(); // exits with 9: restarted by the child supervisor
        let pid2 = ask(&low);
        assert_ne!(pid2, pid, "the actor was not restarted");
        assert_eq!(
            plain.pid(),
            Some(owner),
            "the child supervisor itself restarted"
        );
        common::assert_started_by(
            owner,
            pid2,
            StartMethod::Spawn,
            &format!("{what}, restarted"),
        );

        let pid = ask(&forked);
        let owner = forks.pid().expect("the child supervisor runs");
        let what = "actor of a child supervisor told Fork, under a Spawn parent";
        common::assert_started_by(owner, pid, StartMethod::Fork, what);
        sup.shutdown(T);
    });
}

/// Runs in a spawned child, whose only thread is its main thread: every `Fork` scenario.
/// A failed check panics, and the panic comes back to the test as the result.
fn fork_scenarios(_: ()) -> usize {
    fn threads() -> usize {
        std::fs::read_dir("/proc/self/task").unwrap().count()
    }
    assert_eq!(
        threads(),
        1,
        "the scenario child should start single-threaded"
    );
    assert!(
        procactor_transports::os::never_threaded(),
        "glibc should say no thread was ever started here"
    );
    set_start_method(StartMethod::Fork).unwrap();
    let me = std::process::id();

    // result, exit code, name, parents: forked by us, for real
    let mut p = Process::new(whoami, ()).name("forked").start().unwrap();
    assert_eq!(join_within(&mut p), ExitStatus::Code(0));
    let (name, pid, parent, os_parent) = p.result().unwrap();
    assert_eq!(
        (name.as_str(), pid, parent, os_parent),
        ("forked", p.pid(), Some(me), Some(me))
    );

    // large arguments (they are in the child's copy of our memory)
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let mut p = Process::new(checksum, big.clone()).start().unwrap();
    assert_eq!(join_within(&mut p), ExitStatus::Code(0));
    assert_eq!(p.result().unwrap(), checksum(big));

    // a panic
    let mut p = Process::new(boom, ()).start().unwrap();
    assert_eq!(join_within(&mut p), ExitStatus::Code(1));
    assert!(matches!(p.result(), Err(JoinError::Panicked { .. })));

    // handles: a Queue, a Pipe, a shared Value under its lock, from several children
    let q = Queue::new().unwrap();
    let mut p = Process::new(through_queue, (q.clone(), 5)).start().unwrap();
    assert_eq!(q.get_timeout(T).unwrap(), 25);
    assert_eq!(join_within(&mut p), ExitStatus::Code(0));
    let v = Value::new(0u64).unwrap();
    let mut kids: Vec<Process> = (0..3)
        .map(|_| Process::new(add_to, (v.clone(), 1000)).start().unwrap())
        .collect();
    for k in &mut kids {
        assert_eq!(join_within(k), ExitStatus::Code(0));
    }
    assert_eq!(*v.lock().unwrap(), 3000);
    // (a forked child holds a copy of every descriptor of its parent, `a` included, as
    // with Python's fork: the parent's drop of `a` would not end the loop, a 0 does)
    fn echo(c: procactor::Connection<u64, u64>) {
        while let Ok(x) = c.recv() {
            if x == 0 {
                return;
            }
            c.send(&(x + 1)).unwrap();
        }
    }
    let (a, b) = Pipe::<u64>::new().unwrap();
    let mut p = Process::new(echo, b).start().unwrap();
    a.send(&41).unwrap();
    assert!(a.poll(Some(T)).unwrap());
    assert_eq!(a.recv().unwrap(), 42);
    a.send(&0).unwrap();
    assert_eq!(join_within(&mut p), ExitStatus::Code(0));

    // alive, terminate, kill
    let mut t = Process::new(sleep_forever, ()).start().unwrap();
    assert!(t.is_alive());
    t.terminate().unwrap();
    assert_eq!(join_within(&mut t), ExitStatus::Signal(15));

    // procactor started no thread of its own for all this: forking can go on
    assert_eq!(
        threads(),
        1,
        "procactor started a thread in a forking program"
    );
    // …and nothing of a joined child stays open
    let fds = || std::fs::read_dir("/proc/self/fd").unwrap().count();
    let before = fds();
    let n = 20;
    for i in 0..n {
        let mut p = Process::new(square, i).start().unwrap();
        assert_eq!(join_within(&mut p), ExitStatus::Code(0));
        assert_eq!(p.result().unwrap(), i * i);
    }
    assert_eq!(fds(), before, "descriptors left open by joined children");

    // a thread of the program's own: refused, clearly
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let th = std::thread::spawn(move || rx.recv());
    match Process::new(square, 1).start() {
        Err(SpawnError::Unsupported {
            method: "fork",
            why,
        }) => {
            assert!(why.contains("2 threads"), "{why}")
        }
        other => panic!("fork with two threads: {other:?}"),
    }
    drop(tx);
    let _ = th.join();
    // the thread is gone: glibc's flag stays down, the threads are counted (one), and
    // forking works again (the kernel drops a joined thread from its count a moment
    // after the join returns)
    assert!(!procactor_transports::os::never_threaded());
    let t0 = std::time::Instant::now();
    while threads() != 1 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the joined thread still counts"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut p = Process::new(square, 3).start().unwrap();
    assert_eq!(join_within(&mut p), ExitStatus::Code(0));
    assert_eq!(p.result().unwrap(), 9);
    n as usize
}

#[test]
fn fork_children_behave_like_spawned_ones_in_a_single_threaded_process() {
    watchdog(120, || {
        let mut p = Process::new(fork_scenarios, ())
            .start_method(StartMethod::Spawn)
            .start()
            .unwrap();
        let status = join_within(&mut p);
        match p.result() {
            Ok(n) => assert_eq!(n, 20),
            Err(e) => panic!("the fork scenarios failed ({status:?}): {e}"),
        }
        assert_eq!(status, ExitStatus::Code(0));
    });
}

/// What the program holds when its fork pool is built (a worker sees this value).
static SNAPSHOT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn snapshot_plus(x: u64) -> u64 {
    SNAPSHOT.load(std::sync::atomic::Ordering::Relaxed) + x
}

fn my_os_parent(_: u64) -> u32 {
    std::os::unix::process::parent_id()
}

fn exit_at_once(_: u64) -> u64 {
    std::process::exit(3)
}

/// Runs in a spawned child, whose only thread is its main thread: a pool with `Fork`.
fn fork_pool_scenario(_: ()) {
    use std::sync::atomic::Ordering::Relaxed;
    let me = std::process::id();
    SNAPSHOT.store(1000, Relaxed);
    let pool = Pool::builder()
        .processes(2)
        .start_method(StartMethod::Fork)
        .build()
        .unwrap();
    // the workers are copies of this process as it was at build
    SNAPSHOT.store(5, Relaxed);
    let r: Vec<u64> = pool.map(snapshot_plus, 0..10u64).unwrap();
    assert_eq!(r, (1000..1010).collect::<Vec<u64>>());
    // forked by one zygote (their OS parent), not by this process
    let parents: Vec<u32> = pool.map_chunksize(my_os_parent, 0..8u64, 1).unwrap();
    let zygote = parents[0];
    assert!(parents.iter().all(|&p| p == zygote), "{parents:?}");
    assert_ne!(zygote, me);
    // a worker that dies is replaced, from the same snapshot, though the pool runs
    // threads by now
    assert!(pool.apply(exit_at_once, 0).is_err());
    let r: Vec<u64> = pool.map_chunksize(snapshot_plus, 0..6u64, 1).unwrap();
    assert_eq!(r, (1000..1006).collect::<Vec<u64>>());
    // an interrupt (Ctrl-C reaches the whole process group) does not take the zygote,
    // which cannot be replaced: workers are still replaced after it
    assert!(procactor_transports::os::signal_pid(zygote, 2).unwrap());
    std::thread::sleep(Duration::from_millis(50));
    assert!(!gone(zygote), "the zygote died of SIGINT");
    assert!(pool.apply(exit_at_once, 0).is_err());
    let r: Vec<u64> = pool.map_chunksize(snapshot_plus, 0..4u64, 1).unwrap();
    assert_eq!(r, (1000..1004).collect::<Vec<u64>>());
    // the zygote ends with the pool
    let zfd = procactor_transports::os::pidfd_of(zygote).unwrap();
    drop(pool);
    let ended = procactor_transports::os::poll_readable(
        &[procactor_transports::AsFd::as_fd(&zfd)],
        Some(Instant::now() + Duration::from_secs(10)),
    )
    .unwrap();
    assert!(ended[0], "the zygote outlived its pool");
    // with a thread running (the pool's own threads ended with it, and a fork pool
    // starts no monitor thread), a second fork pool is refused, clearly
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let other = std::thread::spawn(move || {
        let _ = stopped.recv_timeout(Duration::from_secs(60));
    });
    let e = Pool::builder()
        .processes(1)
        .start_method(StartMethod::Fork)
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("single-threaded"), "{e}");
    drop(stop);
    other.join().unwrap();
}

/// An actor that answers with what it sees: the snapshot and its pid.
#[procactor::process_actor]
#[derive(serde::Serialize, serde::Deserialize)]
struct Seer {
    out: Queue<(u64, u32)>,
}

impl procactor::Actor for Seer {
    type Msg = bool;
    type Reply = ();
    fn handle(
        &mut self,
        die: bool,
        _: &mut procactor::Context<Self>,
    ) -> Result<(), procactor::ActorError> {
        if die {
            std::process::exit(9);
        }
        self.out.put((
            SNAPSHOT.load(std::sync::atomic::Ordering::Relaxed),
            std::process::id(),
        ))?;
        Ok(())
    }
}

/// Runs in a spawned child, whose only thread is its main thread: a supervision tree
/// with `Fork`, a child supervisor (`Fork` too) below the root.
fn fork_supervisor_scenario(_: ()) {
    use std::sync::atomic::Ordering::Relaxed;
    let me = std::process::id();
    SNAPSHOT.store(77, Relaxed);
    let out: Queue<(u64, u32)> = Queue::new().unwrap();
    let mut child = Supervisor::builder()
        .name("below")
        .start_method(StartMethod::Fork);
    let low = child.add(Seer { out: out.clone() }).unwrap();
    let sup = Supervisor::builder()
        .start_method(StartMethod::Fork)
        .build()
        .unwrap();
    SNAPSHOT.store(5, Relaxed);
    let top = sup.spawn(Seer { out: out.clone() }).unwrap();
    let _below = sup.spawn_supervisor(child).unwrap();
    // a child supervisor that names no method takes the root's, Fork: a zygote of its own
    let mut plain = Supervisor::builder().name("plain");
    let plain_seer = plain.add(Seer { out: out.clone() }).unwrap();
    let plain = sup.spawn_supervisor(plain).unwrap();
    let ask = |a: &procactor::ActorRef<Seer>| {
        a.send(false).unwrap();
        out.get_timeout(T).unwrap()
    };
    // children see the root's memory as it was when the root started (its zygote's)
    let (seen, pid) = ask(&top);
    assert_eq!(seen, 77);
    let zygote = os_parent_of(pid).unwrap();
    assert_ne!(zygote, me, "the actor was not forked by a zygote");
    // the child supervisor's actor: forked by the child supervisor's own zygote
    let (seen, low_pid) = ask(&low);
    assert_eq!(seen, 77);
    let low_zygote = os_parent_of(low_pid).unwrap();
    assert_ne!(low_zygote, zygote);
    // …and the method-less child supervisor's actor by that child supervisor's zygote
    let (seen, plain_pid) = ask(&plain_seer);
    assert_eq!(seen, 77);
    let plain_sup = plain.pid().expect("the child supervisor runs");
    common::assert_started_by(
        plain_sup,
        plain_pid,
        StartMethod::Fork,
        "actor of a child supervisor without a method, under a Fork parent",
    );
    // a restart comes from the same zygote, with the same snapshot
    top.send(true).unwrap();
    let t0 = Instant::now();
    let (seen, pid2) = loop {
        assert!(t0.elapsed() < T, "no restart");
        if top.restarts() >= 1 {
            let r = ask(&top);
            if r.1 != pid {
                break r;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(seen, 77);
    assert_eq!(os_parent_of(pid2), Some(zygote));
    sup.shutdown(T);
    drop(sup);
    wait_until(T, "the zygote to end with its supervisor", || gone(zygote));
}

own_child_test!(
    a_fork_supervision_tree_forks_its_children_from_zygotes,
    fork_supervisor_scenario
);

own_child_test!(
    a_fork_pool_forks_its_workers_from_a_copy_made_at_build,
    fork_pool_scenario
);

/// The newest build of integration-test binary `name` next to this one
/// (`target/<profile>/deps/<name>-<16 hex digits>`).
fn sibling_test_binary(name: &str) -> std::path::PathBuf {
    let me = std::env::current_exe().unwrap();
    let dir = me.parent().unwrap();
    let mut best: Option<(std::time::SystemTime, std::path::PathBuf)> = None;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let file = entry.file_name();
        let Some(file) = file.to_str() else { continue };
        let Some(hash) = file.strip_prefix(name).and_then(|r| r.strip_prefix('-')) else {
            continue;
        };
        if hash.len() != 16 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let modified = entry.metadata().unwrap().modified().unwrap();
        if best.as_ref().is_none_or(|(t, _)| modified > *t) {
            best = Some((modified, entry.path()));
        }
    }
    best.unwrap_or_else(|| {
        panic!(
            "no test binary `{name}` next to {}: run `cargo test --workspace`, which \
             builds every test binary before running any",
            me.display()
        )
    })
    .1
}

/// Runs one whole integration suite with `PROCACTOR_START_METHOD=method`.
fn run_suite(name: &str, method: &str) {
    let _ = run_suite_with(name, method, &[], &[]);
}

/// As [`run_suite`], with more variables and arguments for the test binary.
/// Returns the run's output.
fn run_suite_with(name: &str, method: &str, env: &[(&str, &str)], args: &[&str]) -> String {
    let bin = sibling_test_binary(name);
    let out_path = std::env::temp_dir().join(format!(
        "procactor-matrix-{name}-{method}-{}.log",
        std::process::id()
    ));
    let log = std::fs::File::create(&out_path).unwrap();
    let mut child = std::process::Command::new(&bin)
        .arg("-q")
        .args(args)
        .envs(env.iter().copied())
        .env("PROCACTOR_START_METHOD", method)
        .env(common::MATRIX_METHOD_ENV, method)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = std::fs::read_to_string(&out_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    let tail: String = {
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    };
    match status {
        Some(st) if st.success() => {
            assert!(text.contains("test result: ok."), "{name}: {tail}");
            // the suite ran under the method asked for (checked by a test of its own),
            // unless this run picked single tests that leave that one out
            let mut picked = false;
            let mut it = args.iter();
            while let Some(a) = it.next() {
                if *a == "--skip" {
                    it.next();
                } else if !a.starts_with('-') {
                    picked = true;
                }
            }
            assert!(
                picked || text.contains(&format!("{} {method}", common::MATRIX_CHECKED)),
                "{name}: the start method in force was not checked to be {method}:\n{tail}"
            );
            text
        }
        Some(st) => panic!("suite `{name}` under {method} failed ({st}):\n{tail}"),
        None => panic!("suite `{name}` under {method} ran over 300 s:\n{tail}"),
    }
}

#[test]
fn every_cross_process_suite_passes_under_the_fork_server() {
    // (sequentially: each suite uses both cores on its own)
    for suite in [
        "process",
        "pipe",
        "queue",
        "shared",
        "sync",
        "pool",
        "actor",
        "supervisor",
        "manager",
    ] {
        run_suite(suite, "forkserver");
    }
}

/// The environment of a suite's `Fork` run (beside the start method itself): 1 PiB of
/// stack cannot be mapped, so libtest runs each test on the main thread (see the
/// module's documentation).
const FORK_RUN_ENV: &[(&str, &str)] = &[
    (common::ON_MAIN_THREAD, "1"),
    ("RUST_MIN_STACK", "1125899906842624"),
];

/// Tests of the `Fork` matrix run that do not apply to it, with why.
const NOT_UNDER_FORK: &[(&str, &str, &str)] = &[
    (
        "process",
        "a_child_outlives_the_thread_that_started_it",
        "starts from a thread",
    ),
    (
        "process",
        "fork_is_refused_clearly_in_a_threaded_process",
        "needs a thread (the Fork scenarios cover it)",
    ),
    (
        "process",
        "exited_children_are_reaped_without_join",
        "forked children are reaped by their handles: a forking program has no monitor thread",
    ),
    (
        "process",
        "a_child_running_another_binary_refuses_the_target",
        "a Spawn start, whose monitor thread this run cannot start",
    ),
    ("pipe", "one_end_shared_by_two_threads", "needs threads"),
    // A forked child holds a copy of every descriptor of its parent, the parent's pipe end
    // too (as under Python's fork): the parent's drop brings no end-of-file, and these
    // children stop only at their 20 s receive timeout. They pass, slowly.
    (
        "pipe",
        "duplex_send_recv_with_a_child",
        "the child inherits the parent's end",
    ),
    (
        "pipe",
        "typed_pipe_request_reply",
        "the child inherits the parent's end",
    ),
    (
        "pipe",
        "a_value_that_fails_to_encode_writes_nothing",
        "the child inherits the parent's end",
    ),
    // A pool or supervisor with Fork forks its zygote when built, which needs a
    // single-threaded process: these build a second one (or start a plain Fork process)
    // once the first one's threads run, and are refused, by design.
    (
        "pool",
        "close_join_and_terminate",
        "a second pool once the first runs threads",
    ),
    (
        "pool",
        "workers_killed_at_random_moments_never_lose_or_repeat_a_task",
        "needs threads",
    ),
    (
        "pool",
        "ready_and_get_timeout_never_wait_behind_another_threads_get",
        "needs a thread of its own",
    ),
    (
        "pool",
        "gets_on_many_threads_with_callbacks_and_imap_meanwhile",
        "needs threads",
    ),
    (
        "pool",
        "terminate_and_drop_end_a_waiting_get",
        "needs a thread of its own",
    ),
    (
        "pool",
        "child_pool_task_panics",
        "ignored: run by a_worker_panic_prints_nothing_on_stderr",
    ),
    (
        "actor",
        "calls_from_several_processes_each_get_their_own_reply",
        "plain Fork starts once a supervisor runs threads",
    ),
    (
        "actor",
        "refs_travel_to_other_processes",
        "plain Fork starts once a supervisor runs threads",
    ),
    (
        "actor",
        "calls_to_a_pool_run_on_its_members_at_once",
        "needs threads (concurrent callers)",
    ),
    (
        "actor",
        "a_stop_racing_senders_loses_no_accepted_message",
        "needs threads (concurrent senders)",
    ),
    (
        "actor",
        "child_call_killed_after_pop",
        "ignored: run by a_taker_killed_between_pop_and_record_is_died_not_a_hang",
    ),
    (
        "supervisor",
        "otp_defaults_and_restarts_older_than_the_period_are_forgotten",
        "a second supervisor once the first runs threads",
    ),
    (
        "supervisor",
        "random_crash_schedules_lose_nothing_queued_and_count_restarts",
        "a supervisor per proptest case, in one process",
    ),
];

#[test]
fn the_process_pipe_queue_shared_and_sync_suites_pass_under_fork() {
    for suite in ["process", "pipe", "queue", "shared", "sync"] {
        let mut args = vec!["--test-threads=1", "--exact"];
        for (s, test, _why) in NOT_UNDER_FORK {
            if *s == suite {
                args.extend(["--skip", test]);
            }
        }
        run_suite_with(suite, "fork", FORK_RUN_ENV, &args);
    }
}

/// The tests of suite `name` that run by default (`--list`, less `--list --ignored`:
/// ignored tests are helpers that other tests run in a child).
fn tests_of(name: &str) -> Vec<String> {
    listed_tests(name, true)
}

/// The tests of suite `name`, with its ignored ones unless `default_only`.
fn listed_tests(name: &str, default_only: bool) -> Vec<String> {
    let list = |extra: &[&str]| {
        let out = std::process::Command::new(sibling_test_binary(name))
            .args(["--list", "--format", "terse"])
            .args(extra)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let tests: Vec<String> = text
            .lines()
            .filter_map(|l| l.strip_suffix(": test"))
            .map(str::to_string)
            .collect();
        (tests, text)
    };
    let (all, text) = list(&[]);
    let ignored = if default_only {
        list(&["--ignored"]).0
    } else {
        Vec::new()
    };
    let tests: Vec<String> = all.into_iter().filter(|t| !ignored.contains(t)).collect();
    assert!(!tests.is_empty(), "no tests listed in {name}: {text}");
    tests
}

/// Pool, actor and supervisor tests under `Fork`, each in a process of its own (a pool or
/// supervisor with `Fork` forks its zygote when built, which needs the process to be
/// single-threaded then: a fresh process per test, its test on the main thread).
#[test]
fn every_test_skipped_under_fork_exists() {
    for (suite, test, _) in NOT_UNDER_FORK {
        assert!(
            listed_tests(suite, false).iter().any(|t| t == test),
            "NOT_UNDER_FORK names {suite}::{test}, which does not exist"
        );
    }
}

#[test]
fn the_pool_actor_and_supervisor_suites_pass_under_fork_one_test_per_process() {
    for suite in ["pool", "actor", "supervisor"] {
        for test in tests_of(suite) {
            if let Some((_, _, why)) = NOT_UNDER_FORK
                .iter()
                .find(|(s, t, _)| *s == suite && *t == test)
            {
                eprintln!("{suite}::{test} skipped under fork: {why}");
                continue;
            }
            let out = run_suite_with(
                suite,
                "fork",
                FORK_RUN_ENV,
                &["--test-threads=1", "--exact", &test],
            );
            assert!(
                out.contains("test result: ok. 1 passed"),
                "{suite}::{test} did not run: {out}"
            );
        }
    }
}
