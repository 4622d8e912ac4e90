//! Kill points: named places in a protocol where a test makes the process die with
//! `SIGKILL`, to check that the survivors complete or abort what it was doing.
//!
//! A process whose environment has `PROCACTOR_KILL_AT=<name>` (read once, on the first
//! [`hit`], and cached) kills itself with `SIGKILL` when it reaches
//! `hit("<name>")` — no unwinding, no destructor, no lock released: exactly a crash or
//! an OOM kill at that instruction. `PROCACTOR_KILL_AT=<name>@<n>` dies at the `n`-th
//! hit of that name (1-based) instead of the first.
//!
//! The hook exists only in this crate's own tests and in builds with the `kill-points`
//! feature; everywhere else [`hit`] is an empty inline function, so the points cost
//! nothing in production. Other crates put their own points in with [`hit`] and enable
//! the feature in the test build that uses them.
//!
//! The points of the queue ring ([`crate::ring`]) are named `ring.<op>.<step>`:
//! `ring.put.after_header`, `ring.put.written`, `ring.put.committed`,
//! `ring.put.stream.piece_written`, `ring.put.stream.piece_committed`,
//! `ring.put.stream.last_piece_written`, `ring.get.before_copy`, `ring.get.copied`,
//! `ring.get.committed`, `ring.get.stream.before_piece_copy`,
//! `ring.get.stream.piece_copied`, `ring.get.stream.piece_committed`,
//! `ring.lock.writer_acquired`, `ring.lock.reader_acquired`, and the overflow-area
//! switch points named in the ring's source.
//!
//! # Examples
//!
//! ```
//! // without PROCACTOR_KILL_AT (or for another name) a point does nothing
//! procactor_transports::killpoint::hit("example.step");
//! ```

/// Whether kill points are compiled in (this crate's tests or the `kill-points`
/// feature).
pub const ENABLED: bool = cfg!(any(test, feature = "kill-points"));

/// The environment variable naming the point to die at.
pub const ENV: &str = "PROCACTOR_KILL_AT";

#[cfg(any(test, feature = "kill-points"))]
mod imp {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;

    /// `(name, n)` from the environment, read once.
    static TARGET: OnceLock<Option<(String, u64)>> = OnceLock::new();
    static HITS: AtomicU64 = AtomicU64::new(0);

    fn target() -> Option<&'static (String, u64)> {
        TARGET
            .get_or_init(|| {
                let v = std::env::var(super::ENV).ok()?;
                match v.rsplit_once('@') {
                    Some((name, n)) => Some((name.to_string(), n.parse().ok()?)),
                    None => Some((v, 1)),
                }
            })
            .as_ref()
    }

    pub(super) fn hit(name: &str) {
        if let Some((t, n)) = target() {
            if t == name && HITS.fetch_add(1, Ordering::Relaxed) + 1 == *n {
                let _ = rustix::process::kill_process(
                    rustix::process::getpid(),
                    rustix::process::Signal::KILL,
                );
                // SIGKILL to ourselves is delivered before kill() returns; never go on
                loop {
                    std::thread::park();
                }
            }
        }
    }
}

/// The process reaches the kill point `name`: it dies here with `SIGKILL` if
/// `PROCACTOR_KILL_AT` names it (see the [module docs](self)); otherwise (and always
/// without the hook compiled in) nothing happens.
#[inline(always)]
pub fn hit(name: &str) {
    #[cfg(any(test, feature = "kill-points"))]
    imp::hit(name);
    #[cfg(not(any(test, feature = "kill-points")))]
    let _ = name;
}
