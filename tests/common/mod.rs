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
