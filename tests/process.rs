//! Cross-process tests of `Process` and the runtime (API.md sections 0 and 1).

mod common;

use common::watchdog;
use procactor::{
    active_children, cpu_count, current_process, parent_process, ExitStatus, JoinError, Process,
    ProcessInfo, SpawnError, StartMethod,
};
use std::time::{Duration, Instant};

procactor::test_support!();

const T: Duration = Duration::from_secs(20);

fn square(x: u64) -> u64 {
    x * x
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn panics(msg: String) -> u32 {
    panic!("child says {msg}");
}

fn exits_with(code: i32) {
    std::process::exit(code);
}

fn whoami(_: ()) -> (ProcessInfo, Option<ProcessInfo>) {
    (current_process(), parent_process())
}

/// Starts two grandchildren (default names); their result and names.
fn nested(x: u64) -> (u64, String, String) {
    let mut p = Process::new(square, x).start().expect("grandchild starts");
    let mut q = Process::new(square, 1).start().expect("grandchild starts");
    let names = (p.name().to_string(), q.name().to_string());
    q.result().expect("grandchild result");
    (p.result().expect("grandchild result"), names.0, names.1)
}

fn touch_after(args: (String, u64)) {
    std::thread::sleep(Duration::from_millis(args.1));
    std::fs::write(&args.0, b"done").expect("write marker");
}

fn join_ok<R: procactor::Message>(p: &mut Process<R>) -> ExitStatus {
    p.join_timeout(T)
        .expect("child finished within the timeout")
}

#[test]
fn start_join_result_name_pid() {
    watchdog(60, || {
        let mut p = Process::new(square, 7).name("sq").start().unwrap();
        assert_eq!(p.name(), "sq");
        assert!(p.pid() > 0 && p.pid() != std::process::id());
        assert_eq!(join_ok(&mut p), ExitStatus::Code(0));
        assert_eq!(p.join().unwrap(), ExitStatus::Code(0), "join is idempotent");
        assert_eq!(p.exitcode(), Some(ExitStatus::Code(0)));
        assert!(!p.is_alive());
        assert_eq!(p.result().unwrap(), 49);
        assert!(
            matches!(p.result(), Err(JoinError::Unavailable(_))),
            "taken once"
        );
    });
}

#[test]
fn default_names_count_up() {
    watchdog(60, || {
        let mut a = Process::new(square, 1).start().unwrap();
        let mut b = Process::new(square, 2).start().unwrap();
        let na: u64 = a.name().strip_prefix("Process-").unwrap().parse().unwrap();
        let nb: u64 = b.name().strip_prefix("Process-").unwrap().parse().unwrap();
        assert!(nb > na, "{na} then {nb}");
        join_ok(&mut a);
        join_ok(&mut b);
    });
}

#[test]
fn a_non_capturing_closure_is_a_target() {
    watchdog(60, || {
        let mut p = Process::new(|(a, b): (u64, u64)| a * b + 1, (6, 7))
            .start()
            .unwrap();
        assert_eq!(p.result().unwrap(), 43);
    });
}

#[test]
fn result_joins_implicitly() {
    watchdog(60, || {
        let mut p = Process::new(square, 9).start().unwrap();
        assert_eq!(p.result().unwrap(), 81);
        assert_eq!(p.exitcode(), Some(ExitStatus::Code(0)));
    });
}

#[test]
fn is_alive_exitcode_and_join_timeout_while_running() {
    watchdog(60, || {
        let mut p = Process::new(sleep_ms, 600).start().unwrap();
        assert!(p.is_alive());
        assert_eq!(p.exitcode(), None);
        let t0 = Instant::now();
        // a timeout is an error (the `join_timeout` convention)
        assert!(matches!(
            p.join_timeout(Duration::from_millis(100)),
            Err(procactor::Error::Timeout)
        ));
        assert!(t0.elapsed() >= Duration::from_millis(100));
        assert!(p.is_alive());
        assert_eq!(join_ok(&mut p), ExitStatus::Code(0));
        assert!(!p.is_alive());
        assert_eq!(p.result().unwrap(), 600);
    });
}

#[test]
fn terminate_and_kill_report_signals() {
    watchdog(60, || {
        let mut p = Process::new(sleep_ms, 30_000).start().unwrap();
        p.terminate().unwrap();
        let s = join_ok(&mut p);
        assert_eq!(s, ExitStatus::Signal(15));
        assert_eq!(s.python_exitcode(), -15);
        assert!(!s.success());
        assert_eq!(p.result(), Err(JoinError::Killed(ExitStatus::Signal(15))));
        // on an exited process both are a no-op Ok
        p.terminate().unwrap();
        p.kill().unwrap();

        let mut p = Process::new(sleep_ms, 30_000).start().unwrap();
        p.kill().unwrap();
        assert_eq!(join_ok(&mut p).python_exitcode(), -9);
    });
}

#[test]
fn panic_message_and_location_reach_the_parent() {
    watchdog(60, || {
        let mut p = Process::new(panics, "boom".to_string()).start().unwrap();
        assert_eq!(join_ok(&mut p), ExitStatus::Code(1));
        match p.result() {
            Err(JoinError::Panicked { message }) => {
                assert!(message.contains("child says boom"), "{message}");
                assert!(message.contains("tests/process.rs:"), "{message}");
            }
            other => panic!("expected Panicked, got {other:?}"),
        }
    });
}

#[test]
fn exit_without_result_is_killed_with_the_code() {
    watchdog(60, || {
        let mut p = Process::new(exits_with, 3).start().unwrap();
        assert_eq!(join_ok(&mut p), ExitStatus::Code(3));
        assert_eq!(p.result(), Err(JoinError::Killed(ExitStatus::Code(3))));
    });
}

#[test]
fn child_knows_its_name_and_parent() {
    watchdog(60, || {
        let mut p = Process::new(whoami, ()).name("kid").start().unwrap();
        let pid = p.pid();
        let (me, parent) = p.result().unwrap();
        assert_eq!(me.name(), "kid");
        assert_eq!(me.pid(), pid);
        let parent = parent.expect("a child has a parent");
        assert_eq!(parent.name(), "MainProcess");
        assert_eq!(parent.pid(), std::process::id());
        assert_eq!(current_process().name(), "MainProcess");
        assert!(parent_process().is_none());
    });
}

#[test]
fn children_can_start_children() {
    watchdog(60, || {
        // as in Python: a child's children are numbered from 1 under the child's own
        // number, `Process-N:1`, `Process-N:2`, whatever the child's name
        let mut p = Process::new(nested, 6).start().unwrap();
        let outer = p.name().to_string();
        let (v, first, second) = p.result().unwrap();
        assert_eq!(v, 36);
        assert_eq!(first, format!("{outer}:1"));
        assert_eq!(second, format!("{outer}:2"));
        let mut named = Process::new(nested, 2).name("outer").start().unwrap();
        let (_, first, second) = named.result().unwrap();
        let n = first
            .strip_prefix("Process-")
            .and_then(|r| r.strip_suffix(":1"))
            .unwrap_or_else(|| panic!("{first}"));
        assert!(n.parse::<u64>().is_ok(), "{first}");
        assert_eq!(second, format!("Process-{n}:2"));
    });
}

#[test]
fn active_children_lists_running_ones() {
    watchdog(60, || {
        let mut p = Process::new(sleep_ms, 800)
            .name("active-probe")
            .start()
            .unwrap();
        let listed = active_children();
        assert!(
            listed
                .iter()
                .any(|c| c.pid() == p.pid() && c.name() == "active-probe"),
            "{listed:?}"
        );
        join_ok(&mut p);
        assert!(!active_children().iter().any(|c| c.pid() == p.pid()));
    });
}

#[test]
fn cpu_count_is_the_machines_online_cpus_as_in_python() {
    // Python's cpu_count() is sysconf(_SC_NPROCESSORS_ONLN), affinity ignored
    let out = std::process::Command::new("getconf")
        .arg("_NPROCESSORS_ONLN")
        .output()
        .expect("getconf runs");
    let want: usize = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert_eq!(cpu_count(), want);
}

#[test]
fn fork_is_refused_clearly_in_a_threaded_process() {
    // (the test harness runs each test on a thread of its own)
    let e = Process::new(square, 1)
        .start_method(StartMethod::Fork)
        .start()
        .unwrap_err();
    assert!(
        matches!(e, SpawnError::Unsupported { method: "fork", .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("threads"), "{e}");
    // another executable is a spawn-only testing aid
    let e = Process::new(square, 1)
        .start_method(StartMethod::ForkServer)
        .executable("/bin/true")
        .start()
        .unwrap_err();
    assert!(matches!(e, SpawnError::Unsupported { .. }), "{e:?}");
}

#[test]
fn unencodable_args_fail_before_any_process_starts() {
    struct Bad;
    impl serde::Serialize for Bad {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("nope"))
        }
    }
    impl<'de> serde::Deserialize<'de> for Bad {
        fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
            Ok(Bad)
        }
    }
    fn take(_: Bad) {}
    /// In a child of its own (no other test starts processes there): the refused start
    /// leaves no child behind, in procactor's records or in the OS's.
    fn refused_start_leaves_no_child(_: ()) {
        let os_children = || common::os_children_of(std::process::id());
        assert_eq!(os_children(), Vec::<u32>::new(), "children before");
        assert_eq!(active_children().len(), 0);
        let e = Process::new(take, Bad).start().unwrap_err();
        match &e {
            SpawnError::Encode(m) => assert!(m.to_string().contains("nope"), "{m}"),
            other => panic!("expected an encoding error, got {other:?}"),
        }
        assert_eq!(active_children().len(), 0, "a child is recorded");
        assert_eq!(os_children(), Vec::<u32>::new(), "a child was started");
    }
    watchdog(60, || {
        let mut p = Process::new(refused_start_leaves_no_child, ())
            .start()
            .unwrap();
        let st = p.join_timeout(Duration::from_secs(30)).unwrap();
        if let Err(e) = p.result() {
            panic!("the child's check failed ({st:?}): {e}");
        }
    });
}

#[test]
fn a_child_running_another_binary_refuses_the_target() {
    watchdog(60, || {
        // a copy of this very test binary is a different image (other inode)
        let dir = std::env::temp_dir().join(format!("procactor-foreign-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let copy = dir.join("foreign-binary");
        std::fs::copy(std::env::current_exe().unwrap(), &copy).unwrap();
        // Executing a file just written can fail with ETXTBSY while another test thread
        // forks (the child briefly holds the writer's descriptor): retry a few times.
        let mut attempt = 0;
        let mut p = loop {
            match Process::new(square, 3)
                .executable(&copy)
                .start_method(StartMethod::Spawn)
                .start()
            {
                Ok(p) => break p,
                Err(SpawnError::Io(e)) if e.raw_os_error() == Some(26) && attempt < 50 => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("spawning the copy failed: {e}"),
            }
        };
        let status = join_ok(&mut p);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(status, ExitStatus::Code(1));
        match p.result() {
            Err(JoinError::Unavailable(m)) => assert!(m.contains("another binary"), "{m}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
    });
}

#[test]
fn dropping_handles_joins_non_daemon_and_terminates_daemon() {
    watchdog(60, || {
        let dir = std::env::temp_dir();
        let marker = dir.join(format!("procactor-nondaemon-{}", std::process::id()));
        let _ = std::fs::remove_file(&marker);
        let p = Process::new(touch_after, (marker.display().to_string(), 300))
            .start()
            .unwrap();
        drop(p); // joins: the child finishes its work
        assert!(marker.exists(), "non-daemon child was joined at drop");
        let _ = std::fs::remove_file(&marker);

        let marker = dir.join(format!("procactor-daemon-{}", std::process::id()));
        let _ = std::fs::remove_file(&marker);
        let p = Process::new(touch_after, (marker.display().to_string(), 3000))
            .daemon(true)
            .start()
            .unwrap();
        let pid = p.pid();
        assert!(p.daemon());
        let t0 = Instant::now();
        drop(p); // terminates
        assert!(t0.elapsed() < Duration::from_secs(2));
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "reaped"
        );
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            !marker.exists(),
            "daemon child was terminated before finishing"
        );
    });
}

#[test]
fn exited_children_are_reaped_without_join() {
    watchdog(60, || {
        let p = Process::new(square, 2).start().unwrap();
        let pid = p.pid();
        let t0 = Instant::now();
        // the monitor thread reaps it: /proc/<pid> disappears with no join() call
        while std::path::Path::new(&format!("/proc/{pid}")).exists() {
            assert!(t0.elapsed() < T, "child {pid} was never reaped");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(p.exitcode(), Some(ExitStatus::Code(0)));
    });
}

#[test]
fn large_results_do_not_deadlock_join() {
    fn big(n: usize) -> Vec<u8> {
        vec![7u8; n]
    }
    watchdog(60, || {
        let mut p = Process::new(big, 8 << 20).start().unwrap();
        assert_eq!(join_ok(&mut p), ExitStatus::Code(0));
        let v = p.result().unwrap();
        assert_eq!(v.len(), 8 << 20);
        assert!(v.iter().all(|&b| b == 7));
    });
}

fn read_stdin(_: ()) -> usize {
    use std::io::Read;
    let mut buf = Vec::new();
    std::io::stdin()
        .read_to_end(&mut buf)
        .expect("stdin readable");
    buf.len()
}

#[test]
fn a_childs_stdin_is_dev_null() {
    watchdog(60, || {
        // as in Python: reading stdin in a child sees end of file at once
        let mut p = Process::new(read_stdin, ()).start().unwrap();
        assert_eq!(p.result().unwrap(), 0);
    });
}

fn leak_grandchild(_: ()) -> u32 {
    let p = Process::new(sleep_ms, 60_000)
        .start()
        .expect("grandchild starts");
    let pid = p.pid();
    std::mem::forget(p); // no join, no terminate: only the parent-death signal is left
    pid
}

fn dead_or_zombie(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(true),
    }
}

#[test]
fn a_child_dies_with_its_parent() {
    watchdog(60, || {
        let mut p = Process::new(leak_grandchild, ()).start().unwrap();
        let grandchild = p.result().unwrap();
        assert_eq!(p.exitcode(), Some(ExitStatus::Code(0)));
        let t0 = Instant::now();
        while !dead_or_zombie(grandchild) {
            assert!(
                t0.elapsed() < T,
                "grandchild {grandchild} outlived its parent"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    });
}

#[test]
fn a_child_outlives_the_thread_that_started_it() {
    watchdog(60, || {
        // Start from a short-lived thread that ends only once the child is surely up
        // (past its parent-death set-up), then use the handle from here.
        let mut p = std::thread::spawn(|| {
            let p = Process::new(sleep_ms, 1500).start().unwrap();
            std::thread::sleep(Duration::from_millis(500));
            p
        })
        .join()
        .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            p.is_alive(),
            "the child was killed when its starting thread ended"
        );
        assert_eq!(join_ok(&mut p), ExitStatus::Code(0));
        assert_eq!(p.result().unwrap(), 1500);
    });
}

// ---- targets of any arity (issue 18, item 6)

fn hello() -> String {
    "hello".to_string()
}

fn mul(a: u64, b: i32) -> i64 {
    a as i64 * i64::from(b)
}

fn concat3(a: String, b: char, c: u8) -> String {
    format!("{a}{b}{c}")
}

#[allow(clippy::too_many_arguments)]
fn eight(a: u8, b: u16, c: u32, d: u64, e: i8, f: i16, g: i32, h: String) -> String {
    format!("{a} {b} {c} {d} {e} {f} {g} {h}")
}

#[test]
fn targets_take_zero_to_eight_arguments() {
    watchdog(60, || {
        let mut p = Process::new(hello, ()).start().unwrap();
        assert_eq!(p.result().unwrap(), "hello");
        // one argument: the value itself, not a 1-tuple
        let mut p = Process::new(square, 7).start().unwrap();
        assert_eq!(p.result().unwrap(), 49);
        // two and more: a tuple, unpacked into the parameters
        let mut p = Process::new(mul, (6, -7)).start().unwrap();
        assert_eq!(p.result().unwrap(), -42);
        let mut p = Process::new(concat3, ("ab".to_string(), 'c', 9))
            .start()
            .unwrap();
        assert_eq!(p.result().unwrap(), "abc9");
        let args = (1, 2, 3, 4, -5, -6, -7, "eight".to_string());
        let mut p = Process::new(eight, args).start().unwrap();
        assert_eq!(p.result().unwrap(), "1 2 3 4 -5 -6 -7 eight");
        // a one-argument function of a tuple gets the tuple whole
        let mut p = Process::new(whoami, ()).start().unwrap();
        assert_eq!(p.result().unwrap().0.pid(), p.pid());
    });
}

#[test]
fn closures_of_any_arity_are_targets() {
    watchdog(60, || {
        let mut p = Process::new(|| 5u8, ()).start().unwrap();
        assert_eq!(p.result().unwrap(), 5);
        let mut p = Process::new(|a: u64, b: u64, c: u64| a * b + c, (6, 7, 1))
            .start()
            .unwrap();
        assert_eq!(p.result().unwrap(), 43);
    });
}

#[test]
fn function_pointers_of_any_arity_are_targets() {
    watchdog(60, || {
        let one: fn(u64) -> u64 = square;
        let mut p = Process::new(one, 8).start().unwrap();
        assert_eq!(p.result().unwrap(), 64);
        let two: fn(u64, i32) -> i64 = mul;
        let mut p = Process::new(two, (3, 5)).start().unwrap();
        assert_eq!(p.result().unwrap(), 15);
        let none: fn() -> String = hello;
        let mut p = Process::new(none, ()).start().unwrap();
        assert_eq!(p.result().unwrap(), "hello");
        // (the start-method matrix runs of tests/start_methods.rs run these under
        // ForkServer and Fork too)
    });
}

#[test]
fn a_closure_capturing_a_pointer_sized_value_is_refused_at_start() {
    // (captures of any other size are refused at build time: tests/ui)
    let y = 5u64;
    let before = active_children().len();
    let e = Process::new(move |x: u64| x + y, 1).start().unwrap_err();
    assert!(matches!(e, SpawnError::NotATarget(_)), "{e:?}");
    assert!(e.to_string().contains("captures variables"), "{e}");
    assert!(active_children().len() <= before);
}

// ---- Python's process names (issue 18, item 7)

fn my_name(_: ()) -> String {
    current_process().name().to_string()
}

/// The default names of the first two children this child starts, and its own.
fn first_children_names(_: ()) -> (String, String, String) {
    let mut a = Process::new(my_name, ())
        .start()
        .expect("grandchild starts");
    let mut b = Process::new(my_name, ())
        .name("custom")
        .start()
        .expect("grandchild starts");
    let mine = current_process().name().to_string();
    (
        a.result().expect("result"),
        b.result().expect("result"),
        mine,
    )
}

#[test]
fn a_child_reports_its_default_name_and_numbers_its_own_children_from_one() {
    watchdog(60, || {
        let mut p = Process::new(my_name, ()).start().unwrap();
        let name = p.name().to_string();
        let n: u64 = name.strip_prefix("Process-").unwrap().parse().unwrap();
        assert!(n >= 1, "{name}");
        assert_eq!(
            p.result().unwrap(),
            name,
            "current_process().name() in the child"
        );

        let mut p = Process::new(first_children_names, ()).start().unwrap();
        let outer = p.name().to_string();
        let (first, custom, mine) = p.result().unwrap();
        assert_eq!(mine, outer);
        // Python's `_process_counter` starts at 1 in every process; a child's children
        // carry its identity as a prefix; an explicit name wins (and still counts)
        assert_eq!(first, format!("{outer}:1"));
        assert_eq!(custom, "custom");
        assert_eq!(current_process().name(), "MainProcess");
    });
}

// ------------------------------------------------------------------ issue 21: drops are
// bounded; a panic never turns into a wait

/// Starts a child that sleeps 60 s, then panics with its handle alive: the handle's
/// drop runs while unwinding.
fn panic_holding_a_child(daemon: bool) -> u32 {
    let _child = Process::new(sleep_ms, 60_000)
        .daemon(daemon)
        .start()
        .unwrap();
    panic!("boom while holding a child");
}

#[test]
fn a_panic_holding_a_running_child_does_not_wait_for_it() {
    watchdog(60, || {
        for daemon in [false, true] {
            let t = Instant::now();
            let mut p = Process::new(panic_holding_a_child, daemon).start().unwrap();
            let status = p.join_timeout(Duration::from_secs(10));
            assert!(
                status.is_ok(),
                "daemon={daemon}: the panicking parent still waits for its child"
            );
            assert!(matches!(p.result(), Err(JoinError::Panicked { .. })));
            assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        }
    });
}

#[test]
fn dropping_a_stopped_daemon_child_ends_and_reaps_it_in_bounded_time() {
    watchdog(60, || {
        // (stopped: the kernel still ends it on SIGTERM, whose default action is fatal)
        let p = Process::new(sleep_ms, 60_000).daemon(true).start().unwrap();
        std::process::Command::new("kill")
            .args(["-STOP", &p.pid().to_string()])
            .status()
            .unwrap();
        let pid = p.pid();
        let t = Instant::now();
        drop(p);
        let took = t.elapsed();
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "the daemon child is gone (and reaped)"
        );
        assert!(
            took < procactor::PROCESS_DROP_KILL_WAIT * 2 + Duration::from_secs(1),
            "{took:?}"
        );
    });
}
