//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

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
        p.join_timeout(Duration::from_secs(60)).unwrap().is_some(),
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
