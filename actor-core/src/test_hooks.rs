//! Test-only kill points: with the `test-hooks` feature (off by default; the workspace's
//! own integration tests turn it on), a process whose environment has
//! `PROCACTOR_TEST_KILL_AT=<point>` kills itself with `SIGKILL` when it reaches that
//! point, so that a test can place a death exactly (between taking a call from a
//! mailbox and recording it, say). The variable is read once per process; without the
//! feature every kill point compiles to nothing.
//!
//! Points: `actor.call.after_pop` (a pipe actor took a call and has recorded nothing
//! yet).
//!
//! Likewise `PROCACTOR_TEST_PAUSE_AT=<point>` makes the process sleep 2 ms at that
//! point, to widen a race window: `actor.send.after_check` (a sender has seen that no
//! stop was asked for and has not put its message yet).

/// The environment variable naming the kill point.
#[cfg(feature = "test-hooks")]
pub(crate) const KILL_AT: &str = "PROCACTOR_TEST_KILL_AT";

/// Dies here (`SIGKILL`) if this process was told to (see the module docs).
#[cfg(feature = "test-hooks")]
pub(crate) fn kill_point(point: &str) {
    static AT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let at = AT.get_or_init(|| std::env::var(KILL_AT).ok());
    if at.as_deref() == Some(point) {
        let _ = procactor_transports::os::signal_pid(
            procactor_transports::os::current_pid(),
            procactor_transports::os::SIGKILL,
        );
        // (the signal is delivered before the call returns; never go on regardless)
        loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }
}

/// (without the `test-hooks` feature: nothing)
#[cfg(not(feature = "test-hooks"))]
#[inline(always)]
pub(crate) fn kill_point(_point: &str) {}

/// Sleeps 2 ms here if this process was told to (see the module docs).
#[cfg(feature = "test-hooks")]
pub(crate) fn pause_point(point: &str) {
    static AT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let at = AT.get_or_init(|| std::env::var("PROCACTOR_TEST_PAUSE_AT").ok());
    if at.as_deref() == Some(point) {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// (without the `test-hooks` feature: nothing)
#[cfg(not(feature = "test-hooks"))]
#[inline(always)]
pub(crate) fn pause_point(_point: &str) {}
