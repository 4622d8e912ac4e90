//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::sync::mpsc::{channel, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Runs `f` on its own thread and fails the test if it takes longer than `secs` seconds,
/// so that a hang shows up as a failure instead of a stuck test run. A panic inside `f`
/// is re-raised with its message.
pub fn watchdog<F: FnOnce() + Send + 'static>(secs: u64, f: F) {
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
