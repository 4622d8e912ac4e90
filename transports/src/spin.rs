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
//! its core away; spinning then pauses in the whole process (each wait goes straight to
//! its blocking wait, as with `PROCACTOR_SPIN=0`), and the first wait after the pause
//! spins again (and pauses again at once if the load is still there). The pause is
//! short the first time ([`PAUSE`], 5 ms) and doubles while the losses go on, up to
//! [`MAX_PAUSE`] (160 ms): a passing squeeze costs a few milliseconds of slower waits, a
//! lasting load at most a few fruitless spins a second.
//! On an idle machine a yield returns in about a microsecond and nothing changes.
//!
//! The passing squeeze is common: the scheduler may wake a sleeping waiter on the core
//! of the thread that woke it (its answer to "which core is free" can be "this one"),
//! and the two then share one core until its load balancer moves one of them away,
//! often tens of milliseconds later. Each spin there is wasted (the other side cannot
//! run), so it overruns and pauses; once they are apart, the short pause has them
//! spinning again almost at once. Measured on the 2-core VM with the pool's round trip
//! (`pool_apply_async_rtt`): the 100 ms fixed pause of before kept a run in its slow
//! mode (futex wake-ups, 6–10 µs per round trip) for 100 ms after the two were apart.
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

/// How long spinning stays paused after this process was seen losing its core, the
/// first time: each further loss soon after spinning resumed (within the length of the
/// pause that just ended) doubles the pause, up to [`MAX_PAUSE`]; a loss after a longer
/// quiet spell starts again from here.
pub const PAUSE: Duration = Duration::from_millis(5);

/// The longest pause (see [`PAUSE`]).
pub const MAX_PAUSE: Duration = Duration::from_millis(160);

/// The length of the last pause, in nanoseconds (0: none yet).
static PAUSE_LEN: AtomicU64 = AtomicU64::new(0);

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
    let now = nanos_since_epoch(Instant::now());
    let len = next_pause(
        now,
        PAUSED_UNTIL.load(Ordering::Relaxed),
        PAUSE_LEN.load(Ordering::Relaxed),
    );
    // (threads racing here store one of their answers: each is a sensible pause)
    PAUSE_LEN.store(len, Ordering::Relaxed);
    PAUSED_UNTIL.store(now.saturating_add(len), Ordering::Relaxed);
    let _ = STATE.compare_exchange(1, 3, Ordering::Relaxed, Ordering::Relaxed);
}

/// The length of a pause that starts at `now` (ns since [`epoch`]), after the last one
/// that ended (or ends) at `last_until` and lasted `last_len` (0: there was none): twice
/// the last one when spinning lost its core again within `last_len` of resuming (the
/// load is still there), else [`PAUSE`]. Between [`PAUSE`] and [`MAX_PAUSE`].
///
/// Why not one fixed pause: a short pause lets a process whose core was taken once (a
/// neighbour's burst, two threads that the scheduler put on one core for a moment) spin
/// again within milliseconds, and a long one keeps a process on a loaded machine from
/// losing a time slice to a fruitless spin more than a few times a second.
fn next_pause(now: u64, last_until: u64, last_len: u64) -> u64 {
    let base = u64::try_from(PAUSE.as_nanos()).unwrap_or(u64::MAX);
    let max = u64::try_from(MAX_PAUSE.as_nanos()).unwrap_or(u64::MAX);
    if last_len == 0 || now > last_until.saturating_add(last_len) {
        base
    } else {
        last_len.saturating_mul(2).clamp(base, max)
    }
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
    fn the_pause_doubles_while_losses_go_on_and_starts_short_after_a_quiet_spell() {
        let ms = |n: u64| n * 1_000_000;
        let base = ms(5);
        assert_eq!(PAUSE, Duration::from_nanos(base));
        // the first loss ever
        assert_eq!(next_pause(ms(1_000), 0, 0), base);
        // lost again right after a 5 ms pause ended (at 1 005 ms): 10 ms
        assert_eq!(next_pause(ms(1_006), ms(1_005), base), ms(10));
        // ... and during a pause (another thread's spin that started before it)
        assert_eq!(next_pause(ms(1_003), ms(1_005), base), ms(10));
        // the doubling stops at MAX_PAUSE
        assert_eq!(next_pause(ms(2_000), ms(1_990), ms(160)), ms(160));
        assert_eq!(next_pause(ms(2_000), ms(1_990), ms(120)), ms(160));
        // a loss long after the last pause ended (more than its length) starts again
        assert_eq!(next_pause(ms(1_100), ms(1_005), ms(80)), base);
        assert_eq!(next_pause(ms(1_011), ms(1_005), base), base);
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
