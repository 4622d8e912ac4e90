//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

pub mod aio;

use std::sync::mpsc::{channel, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Runs `f` on its own thread and fails the test if it takes longer than `secs` seconds,
/// so that a hang shows up as a failure instead of a stuck test run. A panic inside `f`
/// is re-raised with its message.
///
/// Under [`ON_MAIN_THREAD`] (the `Fork` matrix run, which must stay single-threaded)
/// `f` runs right here, and the whole suite's deadline in the matrix runner is the
/// watchdog.
pub fn watchdog<F: FnOnce() + Send + 'static>(secs: u64, f: F) {
    if on_main_thread() {
        return f();
    }
    let (tx, rx) = channel();
    let handle = std::thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(()) => handle.join().expect("test thread"),
        Err(RecvTimeoutError::Disconnected) => match handle.join() {
            Ok(()) => {}
            Err(p) => std::panic::resume_unwind(p),
        },
        Err(RecvTimeoutError::Timeout) => panic!("test exceeded its {secs} s watchdog"),
    }
}

/// Set by the start-method matrix (tests/start_methods.rs) when it runs a suite under
/// `StartMethod::Fork`: libtest then runs every test on the main thread, and nothing may
/// start a thread (a forking process must have exactly one).
pub const ON_MAIN_THREAD: &str = "PROCACTOR_TEST_ON_MAIN_THREAD";

/// Whether this run is the `Fork` matrix run (see [`ON_MAIN_THREAD`]).
///
/// The matrix makes libtest run each test on the main thread by making its thread
/// starts fail (`RUST_MIN_STACK` beyond any address space: libtest then runs the test
/// "synchronously here instead"); the variable is taken out of the environment on the
/// first call, so that processes this one spawns can start threads.
pub fn on_main_thread() -> bool {
    static ONCE: std::sync::Once = std::sync::Once::new();
    let on = std::env::var_os(ON_MAIN_THREAD).is_some();
    if on {
        // (single-threaded here: nothing reads the environment concurrently)
        ONCE.call_once(|| std::env::remove_var("RUST_MIN_STACK"));
    }
    on
}

/// Polls `cond` every 2 ms; fails the test if it does not hold within `limit`.
pub fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The number in field `name` (such as `"Threads"` or `"VmRSS"`, without the colon) of
/// `/proc/<pid>/status`, `pid` a process number or `"self"`; a unit after the number
/// (`kB`) is ignored. Panics when the process or the field is not there.
pub fn proc_status_field(pid: &str, name: &str) -> u64 {
    let path = format!("/proc/{pid}/status");
    let s = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    s.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no number in field {name} of {path}"))
}

/// A value whose `Serialize` always fails (after its siblings in a message may have been
/// written); it is never received, so its `Deserialize` fails too.
#[derive(Debug, PartialEq)]
pub struct Refuses;

impl serde::Serialize for Refuses {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "this value refuses to be encoded",
        ))
    }
}

impl<'de> serde::Deserialize<'de> for Refuses {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom("a Refuses is never sent"))
    }
}

/// The variable the start-method matrix (`tests/start_methods.rs`) sets beside
/// `PROCACTOR_START_METHOD` (which `init` takes out of the environment): the method the
/// suite must be running under.
pub const MATRIX_METHOD_ENV: &str = "PROCACTOR_MATRIX_METHOD";

/// What [`the_start_method_in_force_is_the_one_the_matrix_asked_for`] prints when it
/// has checked (the matrix looks for it, so a suite cannot pass under the wrong method
/// or without the check).
pub const MATRIX_CHECKED: &str = "start method in force, checked:";

fn os_parent() -> u32 {
    std::os::unix::process::parent_id()
}

/// In every suite that includes this module: under the start-method matrix, the
/// method asked for is the one in force — the default says so, and a child's OS parent
/// is the fork server (`forkserver`) or this process (`spawn`, `fork`). Outside the
/// matrix it checks nothing and says so.
#[test]
fn the_start_method_in_force_is_the_one_the_matrix_asked_for() {
    use std::io::Write;
    let Ok(want) = std::env::var(MATRIX_METHOD_ENV) else {
        return;
    };
    let expected = match want.as_str() {
        "spawn" => procactor::StartMethod::Spawn,
        "forkserver" => procactor::StartMethod::ForkServer,
        "fork" => procactor::StartMethod::Fork,
        other => panic!("{MATRIX_METHOD_ENV}={other:?} is not a start method"),
    };
    assert_eq!(
        procactor::start_method(),
        expected,
        "the default start method"
    );
    let mut p = procactor::Process::new(os_parent, ()).start().unwrap();
    assert!(
        p.join_timeout(Duration::from_secs(60)).is_ok(),
        "child ended"
    );
    let parent = p.result().unwrap();
    if expected == procactor::StartMethod::ForkServer {
        assert_ne!(
            parent,
            std::process::id(),
            "a fork-server child's OS parent is the server"
        );
    } else {
        assert_eq!(
            parent,
            std::process::id(),
            "the child's OS parent is this process"
        );
    }
    let _ = writeln!(std::io::stderr().lock(), "{MATRIX_CHECKED} {want}");
}

/// The OS's idea of process `pid`'s parent (field 4 of `/proc/PID/stat`), or `None` when
/// the process is gone.
pub fn os_parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.get(stat.rfind(')')? + 2..)?;
    after.split(' ').nth(1)?.parse().ok()
}

/// The processes whose OS parent is `pid` (a scan of `/proc`).
pub fn os_children_of(pid: u32) -> Vec<u32> {
    let mut kids: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| os_parent_of(p) == Some(pid))
        .collect();
    kids.sort_unstable();
    kids
}

/// Whether `pid` is a memory keeper (a fork-server child's `procactor-keep` sibling,
/// see `os::start_memory_keeper`), by its name.
pub fn is_keeper(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "procactor-keep")
}

/// The process a memory keeper keeps: the one its only descriptor, a pidfd, names.
/// `None` for a process that is not a keeper, or whose process is gone (reaped).
pub fn kept_by(keeper: u32) -> Option<u32> {
    if !is_keeper(keeper) {
        return None;
    }
    for e in std::fs::read_dir(format!("/proc/{keeper}/fd")).ok()? {
        let e = e.ok()?;
        if std::fs::read_link(e.path()).ok()?.to_string_lossy() == "anon_inode:[pidfd]" {
            let info = std::fs::read_to_string(format!(
                "/proc/{keeper}/fdinfo/{}",
                e.file_name().to_str()?
            ))
            .ok()?;
            return info
                .lines()
                .find_map(|l| l.strip_prefix("Pid:"))
                .and_then(|v| v.trim().parse().ok());
        }
    }
    None
}

/// Whether `pid` is a fork server of this process: this process's child, re-executed
/// with `PROCACTOR_FORKSERVER=<this pid>` in its environment (how `init` recognises a
/// server). Read from the OS (`/proc`), not from procactor's records.
pub fn is_my_fork_server(pid: u32) -> bool {
    is_fork_server_of(pid, std::process::id())
}

/// Whether `pid` is a fork server of process `owner` (as [`is_my_fork_server`], for any
/// process of ours, a child supervisor's for instance).
pub fn is_fork_server_of(pid: u32, owner: u32) -> bool {
    if os_parent_of(pid) != Some(owner) {
        return false;
    }
    let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    let want = format!("PROCACTOR_FORKSERVER={owner}");
    env.split(|&b| b == 0).any(|v| v == want.as_bytes())
}

/// Asserts that process `child` (a child procactor started with `method` from this
/// process) has the OS parent that method gives it: this process for `Spawn`, this
/// process's fork server for `ForkServer`, a zygote (a forked copy of this process,
/// this process's child) for `Fork`.
pub fn assert_os_parent(child: u32, method: procactor::StartMethod, what: &str) {
    assert_started_by(std::process::id(), child, method, what);
}

/// As [`assert_os_parent`], for a `child` started by process `owner` (another process
/// of the test's, a child supervisor for instance): its OS parent is `owner` for
/// `Spawn`, `owner`'s fork server for `ForkServer`, a zygote (`owner`'s child, not a
/// fork server) for `Fork`.
pub fn assert_started_by(owner: u32, child: u32, method: procactor::StartMethod, what: &str) {
    let parent = os_parent_of(child).unwrap_or_else(|| panic!("{what} {child} is gone"));
    match method {
        procactor::StartMethod::Spawn => {
            assert_eq!(
                parent, owner,
                "{what} {child}: a spawned child's OS parent is its starter {owner}"
            )
        }
        procactor::StartMethod::ForkServer => assert!(
            is_fork_server_of(parent, owner),
            "{what} {child}: its OS parent {parent} is not the fork server of {owner}"
        ),
        procactor::StartMethod::Fork => {
            assert_ne!(
                parent, owner,
                "{what} {child}: forked by {owner}, not by a zygote"
            );
            assert!(
                !is_fork_server_of(parent, owner),
                "{what} {child}: made by the fork server of {owner}"
            );
            assert_eq!(
                os_parent_of(parent),
                Some(owner),
                "{what} {child}: its zygote {parent} is not a child of {owner}"
            );
        }
    }
}

/// The proptest configuration of the integration tests: `PROPTEST_CASES` cases if set
/// (exactly: the replay line below gives it), else `default_cases` (small, for CI time)
/// times `PROCACTOR_PROPTEST_SCALE` if set (`scripts/proptest-10x.sh` sets 10). The other
/// `PROPTEST_*` variables work as proptest documents them. The random seed is drawn here
/// unless `PROPTEST_RNG_SEED` gives one, and printed with the command that replays the
/// run (libtest shows it when the test fails); a failing case is also persisted in
/// `tests/<suite>.proptest-regressions` (commit those files), and replayed first on
/// every later run.
pub fn proptest_config(default_cases: u32) -> proptest::test_runner::Config {
    use proptest::test_runner::{Config, RngSeed};
    let mut c = Config::default(); // reads the PROPTEST_* variables
    if std::env::var_os("PROPTEST_CASES").is_none() {
        let scale = std::env::var("PROCACTOR_PROPTEST_SCALE")
            .ok()
            .and_then(|s| s.parse::<u32>().ok())
            .unwrap_or(1);
        c.cases = default_cases.saturating_mul(scale.max(1));
    }
    if matches!(c.rng_seed, RngSeed::Random) {
        c.rng_seed = RngSeed::Fixed(fresh_seed());
    }
    // beside the suite's source: `tests/<suite>.proptest-regressions` (what proptest's
    // default ends up at here, after a warning that `tests/` has no lib.rs)
    c.failure_persistence = Some(Box::new(
        proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
    ));
    eprintln!(
        "proptest: {} cases, seed {} (replay: PROPTEST_RNG_SEED={} PROPTEST_CASES={})",
        c.cases, c.rng_seed, c.rng_seed, c.cases
    );
    c
}

/// A seed for a test's own random choices: `PROCACTOR_TEST_SEED` if set, else a fresh
/// one; printed with how to replay it (libtest shows it when the test fails).
pub fn test_seed(what: &str) -> u64 {
    let seed = std::env::var("PROCACTOR_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(fresh_seed);
    eprintln!("{what}: seed {seed} (replay: PROCACTOR_TEST_SEED={seed})");
    seed
}

fn fresh_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// Whether the main thread of process `pid` (the one running a child's target) is
/// asleep in a futex wait (Linux: `/proc/<pid>/task/<pid>/{stat,wchan}`).
///
/// Where the kernel hides wait channels (`wchan` unreadable, empty or `0`) the sleeping
/// state alone decides; the callers only ask once the child has passed the point after
/// which the only place it can sleep is the futex it waits on.
pub fn asleep_in_futex(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/stat")).unwrap_or_default();
    // the state letter follows the ")" that closes the command name
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    if state != Some('S') {
        return false;
    }
    let wchan =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/wchan")).unwrap_or_default();
    let wchan = wchan.trim();
    wchan.contains("futex") || wchan.is_empty() || wchan == "0"
}

/// What a child test process printed (see [`run_test_in_child`]).
pub struct ChildRun {
    pub stdout: String,
    pub stderr: String,
}

/// Runs the test `name` of this test binary in a child process (`--exact`,
/// `--nocapture`, and `--ignored` when `ignored`: the tests that only another test runs)
/// with `env` set (a `None` value removes that variable) and without the `Fork` matrix's
/// settings ([`ON_MAIN_THREAD`]); fails unless the child's test run passed. What it
/// printed, for the caller's own checks.
pub fn run_test_in_child(name: &str, ignored: bool, env: &[(&str, Option<&str>)]) -> ChildRun {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", name, "--nocapture"])
        .env_remove(ON_MAIN_THREAD)
        .env_remove("RUST_MIN_STACK");
    if ignored {
        cmd.arg("--ignored");
    }
    for (k, v) in env {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let out = cmd.output().unwrap();
    let run = ChildRun {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(
        out.status.success(),
        "{name}: {:?}\n{}\n{}",
        out.status,
        run.stdout,
        run.stderr
    );
    run
}

/// Sends `sig` (`"STOP"`, `"KILL"`) to `pid` with kill(1), as an operator would.
pub fn send_signal(pid: u32, sig: &str) {
    let s = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(s.success(), "kill -{sig} {pid}");
}
