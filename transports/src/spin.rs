//! The one switch for spinning: `PROCACTOR_SPIN=0` turns off every spin-before-sleep
//! in procactor, for users who prefer cores to microseconds.
//!
//! By default a waiter that expects an answer within microseconds polls for a short
//! while before it sleeps in the kernel: a sleeping thread on another core takes tens
//! of microseconds to wake on a typical VM, a spinning one a fraction of one. The
//! price is CPU time: while it polls, the waiter keeps a core busy (and on a loaded
//! machine it takes that core from someone else). The spin sites and their budgets:
//!
//! | where | budget |
//! |---|---|
//! | a `Queue` ring reader or writer waiting for data or room | 2–50 µs, adaptive |
//! | a ring writer waiting for hot-ring room before it overflows | up to 50 µs |
//! | `Event::wait` | 50 µs |
//! | `Semaphore` acquire | 200 spin-loop hints |
//! | `Lock`/`Value` locks (the robust mutex) | 20 µs |
//! | pipes and frames (`Connection::recv`, `PROCACTOR_PIPE_SPIN_US`) | 40 µs, adaptive |
//! | a manager's server and its clients | 50 µs / 200 µs |
//! | `Process::join` (and the fork server's relayed exit status) | 300 µs |
//! | `ActorRef::call_async`'s reply wait (before it registers with the watcher) | 20 µs |
//!
//! With `PROCACTOR_SPIN=0` (also `false`, `off`, `no`) each of them checks its
//! condition once and goes straight to its blocking wait (futex, `poll`). Results are
//! the same; wake-ups are slower (tens of microseconds on a VM) and idle waiting costs
//! no CPU (a ring waiter also skips the two `sched_yield`s it makes before sleeping:
//! on a loaded machine a yield can hand the core to a busy neighbour for a whole time
//! slice).
//! Any other value, or no variable, leaves spinning on.
//!
//! # Spinning pauses itself on a loaded machine
//!
//! Spinning pays only while the waiter and the side it waits for each have a core. When
//! other runnable work competes for the cores, a spinning waiter takes CPU time from the
//! very process it waits for, and a `sched_yield` hands its core to a busy neighbour for
//! a whole time slice (milliseconds): measured with one busy process per core, a queue
//! round trip took about 1 ms spinning and 20 µs without. So every spin site reports
//! what it sees: a [`yield_now`] that took longer than [`PREEMPTED`], or a spin that
//! overran its budget by that much ([`note_overrun`]), means this process had to give
//! its core away; spinning then pauses for [`PAUSE`] in the whole process (each wait
//! goes straight to its blocking wait, as with `PROCACTOR_SPIN=0`), and the first wait
//! after the pause spins again (and pauses again at once if the load is still there).
//! On an idle machine a yield returns in about a microsecond and nothing changes.
//!
//! The variable is read once per process, on the first wait that asks (children
//! inherit the environment, so setting it before the program starts covers the whole
//! process tree); after that the answer is a cached relaxed atomic load: no `getenv`
//! and no system call on a hot path. Setting the variable later in a running process
//! changes nothing in it.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// 0: not read yet, 1: spinning on, 2: off, 3: on but paused until [`PAUSED_UNTIL`].
static STATE: AtomicU8 = AtomicU8::new(0);

/// While [`STATE`] is 3: nanoseconds since [`epoch`] at which spinning resumes.
static PAUSED_UNTIL: AtomicU64 = AtomicU64::new(0);

/// A yield or a spin overrun at least this long means that another runnable thread had
/// this core meanwhile (an idle machine gives a yield back in about a microsecond).
pub const PREEMPTED: Duration = Duration::from_micros(250);

/// How long spinning stays paused after this process was seen losing its core.
pub const PAUSE: Duration = Duration::from_millis(100);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn nanos_since_epoch(t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(epoch()).as_nanos()).unwrap_or(u64::MAX)
}

/// Whether the value of an on/off environment variable (`PROCACTOR_SPIN`,
/// `PROCACTOR_OBSERVE`) turns its feature off: `0`, `false`, `off` or `no`, in any case,
/// blanks around ignored. Anything else (empty too) leaves it on. The one rule for
/// every such switch of procactor.
///
/// ```
/// use procactor_transports::spin::turns_off;
/// assert!(turns_off(" Off "));
/// assert!(!turns_off("1") && !turns_off(""));
/// ```
pub fn turns_off(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "0" | "false" | "off" | "no"
    )
}

#[cold]
fn read_env() -> bool {
    let on = !std::env::var("PROCACTOR_SPIN").is_ok_and(|v| turns_off(&v));
    STATE.store(if on { 1 } else { 2 }, Ordering::Relaxed);
    on
}

/// Whether waits may spin before they sleep: `false` when the process started with
/// `PROCACTOR_SPIN=0` (see the [module docs](self)).
///
/// ```
/// // a program started without PROCACTOR_SPIN spins (the default)
/// if std::env::var_os("PROCACTOR_SPIN").is_none() {
///     assert!(procactor_transports::spin::enabled());
/// }
/// ```
#[inline]
pub fn enabled() -> bool {
    match STATE.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        0 => read_env(),
        _ => paused_check(),
    }
}

/// Spinning is paused (a loaded machine): whether the pause is over.
#[cold]
fn paused_check() -> bool {
    if nanos_since_epoch(Instant::now()) < PAUSED_UNTIL.load(Ordering::Relaxed) {
        return false;
    }
    // (a concurrent `note_preempted` may set 3 again right after: fine either way)
    let _ = STATE.compare_exchange(3, 1, Ordering::Relaxed, Ordering::Relaxed);
    true
}

/// Records that this process just had to give its core away (see the
/// [module docs](self)): spinning pauses for [`PAUSE`]. Nothing changes when
/// `PROCACTOR_SPIN=0` turned spinning off for good.
#[cold]
pub(crate) fn note_preempted() {
    let until = nanos_since_epoch(Instant::now() + PAUSE);
    PAUSED_UNTIL.store(until, Ordering::Relaxed);
    let _ = STATE.compare_exchange(1, 3, Ordering::Relaxed, Ordering::Relaxed);
}

/// `std::thread::yield_now` for spin sites: a yield that took [`PREEMPTED`] or more
/// pauses spinning (see the [module docs](self)).
#[inline]
pub fn yield_now() {
    let t = Instant::now();
    std::thread::yield_now();
    if t.elapsed() >= PREEMPTED {
        note_preempted();
    }
}

/// For a spin loop that meant to stop at `end` and looked at the clock at `now`: an
/// overrun of [`PREEMPTED`] or more (the thread was descheduled mid-spin) pauses
/// spinning (see the [module docs](self)).
#[inline]
pub fn note_overrun(end: Instant, now: Instant) {
    if now.saturating_duration_since(end) >= PREEMPTED {
        note_preempted();
    }
}

/// Whether spinning is paused right now by [`note_preempted`] (for tests and the
/// benchmark's notes).
#[cfg(test)]
pub(crate) fn paused() -> bool {
    STATE.load(Ordering::Relaxed) == 3 && !paused_check()
}

/// The CPU the calling thread runs on, plus one (so that 0 can mean "none"): a hint for
/// spin sites (read through the vDSO on x86_64: no system call).
///
/// ```
/// assert!(procactor_transports::spin::cpu_tag() >= 1);
/// ```
#[inline]
pub fn cpu_tag() -> u32 {
    u32::try_from(rustix::thread::sched_getcpu())
        .unwrap_or(u32::MAX - 1)
        .saturating_add(1)
}

/// Whether `tag`, a [`cpu_tag`] another thread noted (0: none), names the CPU this
/// thread runs on now: for a waiter that was served by that thread, both ends share a
/// core, where spinning cannot pay (the other end can only run once this one stops).
///
/// ```
/// use procactor_transports::spin::{cpu_tag, on_this_cpu};
/// assert!(!on_this_cpu(0));
/// assert!(!on_this_cpu(cpu_tag() + 1000));
/// ```
#[inline]
pub fn on_this_cpu(tag: u32) -> bool {
    tag != 0 && tag == cpu_tag()
}

/// A wait that outlasted its spin and still ended within its site's spin budget plus
/// this lost only the wake-up: a full spin would have served it (the ring's waits and
/// the pipes' receives learn from it).
pub const WAKE_ALLOWANCE: Duration = Duration::from_micros(40);

/// `budget` when spinning is on, zero when it is off: for spin sites that take a
/// duration.
///
/// ```
/// use std::time::Duration;
/// let b = procactor_transports::spin::budget(Duration::from_micros(40));
/// assert!(b == Duration::from_micros(40) || b.is_zero());
/// ```
#[inline]
pub fn budget(budget: Duration) -> Duration {
    if enabled() {
        budget
    } else {
        Duration::ZERO
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_documented_values_turn_spinning_off() {
        for v in ["0", "false", "OFF", " no ", "False"] {
            assert!(turns_off(v), "{v:?}");
        }
        for v in ["1", "", "yes", "on", "2", "00x"] {
            assert!(!turns_off(v), "{v:?}");
        }
    }

    /// Runs this test binary again with `PROCACTOR_SPIN=0`, on the tests whose names
    /// contain `filter`; returns its output. `Err` if it failed.
    fn rerun_without_spinning(filter: &str) -> Result<String, String> {
        let exe = std::env::current_exe().expect("test binary");
        let out = std::process::Command::new(exe)
            .args([filter, "--test-threads=2"])
            .env("PROCACTOR_SPIN", "0")
            .env("PROCACTOR_SPIN_TEST_CHILD", "1")
            .output()
            .expect("run the test binary");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            Ok(text)
        } else {
            Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)))
        }
    }

    /// A process started with `PROCACTOR_SPIN=0` does not spin (checked in a child
    /// started with the variable: this process's answer is cached).
    #[test]
    fn a_process_started_with_spin_0_does_not_spin() {
        if std::env::var_os("PROCACTOR_SPIN_TEST_CHILD").is_some() {
            assert!(!enabled());
            assert!(budget(Duration::from_micros(300)).is_zero());
            return;
        }
        let out = rerun_without_spinning("spin::tests::a_process_started_with_spin_0")
            .expect("the child saw spinning off");
        assert!(out.contains("1 passed"), "{out}");
    }

    /// Every ring test (blocked readers and writers, streaming, overflow, dead peers)
    /// passes with spinning off: the waits that no longer spin still wake.
    #[test]
    fn ring_tests_pass_without_spinning() {
        if std::env::var_os("PROCACTOR_SPIN_TEST_CHILD").is_some() {
            return;
        }
        let out = rerun_without_spinning("ring::").expect("ring tests with PROCACTOR_SPIN=0");
        let passed = out
            .lines()
            .find_map(|l| l.strip_prefix("test result: ok. "))
            .and_then(|l| l.split(' ').next())
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(0);
        assert!(passed >= 10, "too few ring tests ran: {out}");
    }

    /// A process that lost its core stops spinning for `PAUSE`, then spins again; a
    /// yield on an idle core changes nothing. (Run in a child: the state is global.)
    #[test]
    fn losing_the_core_pauses_spinning_for_a_while() {
        if std::env::var_os("PROCACTOR_SPIN_PAUSE_CHILD").is_none() {
            let exe = std::env::current_exe().expect("test binary");
            let out = std::process::Command::new(exe)
                .args([
                    "spin::tests::losing_the_core_pauses",
                    "--exact",
                    "--nocapture",
                ])
                .arg("spin::tests::losing_the_core_pauses_spinning_for_a_while")
                .env_remove("PROCACTOR_SPIN")
                .env("PROCACTOR_SPIN_PAUSE_CHILD", "1")
                .output()
                .expect("run the test binary");
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(text.contains("1 passed"), "{text}");
            return;
        }
        assert!(enabled());
        // an overrun shorter than PREEMPTED is not a preemption
        let t = Instant::now();
        note_overrun(t, t + PREEMPTED / 2);
        assert!(enabled() && !paused());
        // one that long is
        note_overrun(t, t + PREEMPTED);
        assert!(paused());
        assert!(!enabled());
        assert!(budget(Duration::from_micros(40)).is_zero());
        // ... until the pause is over
        std::thread::sleep(PAUSE + Duration::from_millis(20));
        assert!(enabled());
        assert!(!paused());
        assert_eq!(STATE.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn the_answer_is_cached_and_matches_the_environment() {
        let want = !std::env::var("PROCACTOR_SPIN").is_ok_and(|v| turns_off(&v));
        // the first look reads the variable (this test may be the first to ask: run
        // alone, or before any other), every later one the cached answer
        let first = enabled();
        assert!(
            want || !first,
            "spinning on although PROCACTOR_SPIN turns it off"
        );
        // (another test of this process may have seen it lose its core: paused, 3)
        let state = STATE.load(Ordering::Relaxed);
        if want {
            assert!(state == 1 || state == 3, "{state}");
        } else {
            assert_eq!(state, 2);
        }
        let on = enabled();
        assert_eq!(
            budget(Duration::from_micros(50)),
            if on {
                Duration::from_micros(50)
            } else {
                Duration::ZERO
            }
        );
        assert!(want || !on);
    }
}
