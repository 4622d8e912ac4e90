//! Kill points and pause points: named places in a protocol where a test makes the
//! process die with `SIGKILL` (to check that the survivors complete or abort what it was
//! doing), or pause briefly (to widen a race window).
//!
//! A process whose environment has `PROCACTOR_KILL_AT=<name>` (read once, on the first
//! [`hit`], and cached) kills itself with `SIGKILL` when it reaches
//! `hit("<name>")` — no unwinding, no destructor, no lock released: exactly a crash or
//! an OOM kill at that instruction. `PROCACTOR_KILL_AT=<name>@<n>` dies at the `n`-th
//! hit of that name (1-based) instead of the first.
//!
//! Likewise `PROCACTOR_PAUSE_AT=<name>` (read once, on the first [`pause`], and cached)
//! makes the calling thread sleep [`PAUSE`] (2 ms) at every `pause("<name>")`, and
//! `PROCACTOR_PAUSE_AT=<name>@<n>` only at the `n`-th. A value that does not parse
//! (`name@x`) names no point.
//!
//! The hooks exist only in this crate's own tests and in builds with the `kill-points`
//! feature; everywhere else [`hit`] and [`pause`] are empty inline functions, so the
//! points cost nothing in production. Other crates put their own points in with [`hit`]
//! and [`pause`] and enable the feature in the test build that uses them
//! (`procactor-core`'s `test-hooks` feature turns it on).
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
//! The runtime's (`procactor-core`) points: kill point `actor.call.after_pop` (a pipe
//! actor took a call from its mailbox and has recorded nothing yet); pause point
//! `actor.send.after_check` (a sender has seen that no stop was asked for and has not
//! put its message yet).
//!
//! # Examples
//!
//! ```
//! // without PROCACTOR_KILL_AT / PROCACTOR_PAUSE_AT (or for another name) a point does
//! // nothing
//! procactor_transports::killpoint::hit("example.step");
//! procactor_transports::killpoint::pause("example.window");
//! ```

/// The environment variable naming the point to die at.
pub const ENV: &str = "PROCACTOR_KILL_AT";

/// The environment variable naming the point to pause at.
pub const PAUSE_ENV: &str = "PROCACTOR_PAUSE_AT";

/// How long a [`pause`] point named by [`PAUSE_ENV`] sleeps.
pub const PAUSE: std::time::Duration = std::time::Duration::from_millis(2);

#[cfg(any(test, feature = "kill-points"))]
mod imp {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;

    /// A point named by an environment variable: its name, and `Some(n)` for `name@n`
    /// (the `n`-th hit only) or `None` for a bare name (every hit).
    type Target = Option<(String, Option<u64>)>;

    /// `name` or `name@n` from `var`, read once per process (`None`: no point, or a
    /// value that does not parse).
    fn read(cell: &'static OnceLock<Target>, var: &str) -> Option<&'static (String, Option<u64>)> {
        cell.get_or_init(|| parse(&std::env::var(var).ok()?))
            .as_ref()
    }

    /// `name` or `name@n` (`None` when `n` is not a number).
    fn parse(v: &str) -> Target {
        match v.rsplit_once('@') {
            Some((name, n)) => Some((name.to_string(), Some(n.parse().ok()?))),
            None => Some((v.to_string(), None)),
        }
    }

    /// Whether this hit of `name` is the one `target` asks for (counting it in `hits`).
    fn due(target: Option<&(String, Option<u64>)>, hits: &AtomicU64, name: &str) -> bool {
        match target {
            Some((t, n)) if t == name => {
                let k = hits.fetch_add(1, Ordering::Relaxed) + 1;
                n.is_none_or(|n| k == n)
            }
            _ => false,
        }
    }

    pub(super) fn hit(name: &str) {
        static TARGET: OnceLock<Target> = OnceLock::new();
        static HITS: AtomicU64 = AtomicU64::new(0);
        // (a bare name dies at its first hit: there is no second)
        if due(read(&TARGET, super::ENV), &HITS, name) {
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

    pub(super) fn pause(name: &str) {
        static TARGET: OnceLock<Target> = OnceLock::new();
        static HITS: AtomicU64 = AtomicU64::new(0);
        if due(read(&TARGET, super::PAUSE_ENV), &HITS, name) {
            std::thread::sleep(super::PAUSE);
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// Which of `hits` hits of `name` are due under the variable's value `v`.
        fn due_hits(v: &str, name: &str, hits: u64) -> Vec<u64> {
            let t = parse(v);
            let c = AtomicU64::new(0);
            (1..=hits).filter(|_| due(t.as_ref(), &c, name)).collect()
        }

        #[test]
        fn a_bare_name_is_every_hit_and_name_at_n_only_the_nth() {
            assert_eq!(due_hits("a.b", "a.b", 3), [1, 2, 3]);
            assert_eq!(due_hits("a.b@2", "a.b", 4), [2]);
            assert_eq!(due_hits("a.b@2", "a.c", 4), Vec::<u64>::new());
            // (a value that does not parse names nothing)
            assert_eq!(parse("a.b@x"), None);
            assert_eq!(due_hits("a.b@x", "a.b", 2), Vec::<u64>::new());
            assert_eq!(parse("a@b@3"), Some(("a@b".to_string(), Some(3))));
        }
    }
}

/// Without the hooks compiled in: points that do nothing.
#[cfg(not(any(test, feature = "kill-points")))]
mod imp {
    #[inline(always)]
    pub(super) fn hit(_: &str) {}

    #[inline(always)]
    pub(super) fn pause(_: &str) {}
}

/// The process reaches the kill point `name`: it dies here with `SIGKILL` if
/// `PROCACTOR_KILL_AT` names it (see the [module docs](self)); otherwise (and always
/// without the hook compiled in) nothing happens.
#[inline(always)]
pub fn hit(name: &str) {
    imp::hit(name);
}

/// The thread reaches the pause point `name`: it sleeps [`PAUSE`] here if
/// `PROCACTOR_PAUSE_AT` names it (see the [module docs](self)); otherwise (and always
/// without the hook compiled in) nothing happens.
#[inline(always)]
pub fn pause(name: &str) {
    imp::pause(name);
}
