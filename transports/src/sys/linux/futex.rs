use rustix::thread::futex;
use std::sync::atomic::AtomicU32;
use std::time::Instant;

/// Why a futex wait returned. Every outcome may be spurious; callers re-check their
/// condition in a loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitOutcome {
    /// Woken by a futex wake (or a signal, or spuriously).
    Woken,
    /// The word did not hold `expected` when the kernel looked.
    Changed,
    /// The deadline passed.
    TimedOut,
}

/// Sleeps while `*word == expected`, until woken or `deadline` passes.
///
/// Works across processes when `word` lives in a [`crate::shm::ShmRegion`].
///
/// (Tested in `tests::wait_returns_changed_or_timed_out`.)
pub(crate) fn wait(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> WaitOutcome {
    let ts;
    let timeout = match deadline {
        None => None,
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return WaitOutcome::TimedOut;
            }
            ts = rustix::time::Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: i64::from(left.subsec_nanos()),
            };
            Some(&ts)
        }
    };
    match futex::wait(word, futex::Flags::empty(), expected, timeout) {
        Ok(()) => WaitOutcome::Woken,
        Err(rustix::io::Errno::AGAIN) => WaitOutcome::Changed,
        Err(rustix::io::Errno::TIMEDOUT) => WaitOutcome::TimedOut,
        Err(_) => WaitOutcome::Woken, // EINTR and friends: spurious, caller re-checks
    }
}

/// Wakes at most `n` waiters on `word`; returns how many were woken. Any `n` above
/// `i32::MAX` means all of them (the kernel reads the count as an `int`, and a negative
/// one would wake a single waiter).
pub(crate) fn wake(word: &AtomicU32, n: u32) -> usize {
    let n = n.min(i32::MAX as u32);
    futex::wake(word, futex::Flags::empty(), n).unwrap_or(0)
}

/// One word for [`wait_any`]: sleep while `*addr == expected`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AnyWord {
    /// The word's address (it must stay mapped for as long as the kernel may read it:
    /// an unmapped one makes `wait_any` fail with `EFAULT`, nothing worse).
    pub(crate) addr: *const AtomicU32,
    /// The value it is expected to hold.
    pub(crate) expected: u32,
    /// A word of this process only (`FUTEX2_PRIVATE`), not one in shared memory.
    pub(crate) private: bool,
}

/// How a [`wait_any`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AnyOutcome {
    /// Woken on the word at this index (or spuriously).
    Woken(usize),
    /// A word did not hold its expected value when the kernel looked, or a signal or an
    /// error ended the wait: look at every word again.
    Changed,
    /// The deadline passed.
    TimedOut,
}

/// The kernel's `struct futex_waitv` (Linux 5.16+, `include/uapi/linux/futex.h`).
#[repr(C)]
struct FutexWaitv {
    val: u64,
    uaddr: u64,
    flags: u32,
    reserved: u32,
}

const FUTEX2_SIZE_U32: u32 = 0x02;
const FUTEX2_PRIVATE: u32 = 128;
/// The most words one `futex_waitv` takes (`FUTEX_WAITV_MAX`).
pub(crate) const WAIT_ANY_MAX: usize = 128;

/// Sleeps until one of `words` is woken (or does not hold its expected value), or
/// `deadline` passes: `futex_waitv(2)`, at most [`WAIT_ANY_MAX`] words.
pub(crate) fn wait_any(words: &[AnyWord], deadline: Option<Instant>) -> AnyOutcome {
    debug_assert!(!words.is_empty() && words.len() <= WAIT_ANY_MAX);
    let v: Vec<FutexWaitv> = words
        .iter()
        .take(WAIT_ANY_MAX)
        .map(|w| FutexWaitv {
            val: u64::from(w.expected),
            uaddr: w.addr as u64,
            flags: FUTEX2_SIZE_U32 | if w.private { FUTEX2_PRIVATE } else { 0 },
            reserved: 0,
        })
        .collect();
    // the timeout of futex_waitv is absolute, on the clock named (CLOCK_MONOTONIC, the
    // clock `Instant` reads on Linux)
    let ts = deadline.map(|d| {
        let left = d.saturating_duration_since(Instant::now());
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        let nanos = i128::from(now.tv_sec) * 1_000_000_000
            + i128::from(now.tv_nsec)
            + left.as_nanos() as i128;
        libc::timespec {
            tv_sec: (nanos / 1_000_000_000) as libc::time_t,
            tv_nsec: (nanos % 1_000_000_000) as libc::c_long,
        }
    });
    let tsp = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `v` is a valid array of `v.len()` `struct futex_waitv` that lives across
    // the call; `tsp` is null or points at a live timespec. The kernel only reads them,
    // and reads each `uaddr` with its own fault handling (an address that is not mapped
    // gives EFAULT, never a fault in this process).
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex_waitv,
            v.as_ptr(),
            v.len() as libc::c_uint,
            0 as libc::c_uint,
            tsp,
            libc::CLOCK_MONOTONIC,
        )
    };
    if r >= 0 {
        return AnyOutcome::Woken(r as usize);
    }
    match rustix::io::Errno::from_raw_os_error(
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
    ) {
        rustix::io::Errno::TIMEDOUT => AnyOutcome::TimedOut,
        _ => AnyOutcome::Changed,
    }
}

/// Wakes every waiter on `word`.
#[cfg(test)]
pub(crate) fn wake_all(word: &AtomicU32) -> usize {
    wake(word, i32::MAX as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn wait_returns_changed_or_timed_out() {
        let w = AtomicU32::new(1);
        assert_eq!(wait(&w, 0, None), WaitOutcome::Changed);
        let d = Instant::now() + Duration::from_millis(5);
        assert_eq!(wait(&w, 1, Some(d)), WaitOutcome::TimedOut);
    }

    #[test]
    fn a_count_above_i32_max_wakes_every_waiter() {
        let w = Arc::new(AtomicU32::new(0));
        let ts: Vec<_> = (0..3)
            .map(|_| {
                let w = w.clone();
                std::thread::spawn(move || {
                    let deadline = Instant::now() + Duration::from_secs(10);
                    while w.load(Ordering::SeqCst) == 0 {
                        if wait(&w, 0, Some(deadline)) == WaitOutcome::TimedOut {
                            return false;
                        }
                    }
                    true
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(50));
        w.store(1, Ordering::SeqCst);
        wake(&w, u32::MAX);
        for t in ts {
            assert!(t.join().unwrap());
        }
    }

    #[test]
    fn wake_releases_a_waiter_in_another_thread() {
        let w = Arc::new(AtomicU32::new(0));
        let w2 = w.clone();
        let t = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(10);
            while w2.load(Ordering::SeqCst) == 0 {
                if wait(&w2, 0, Some(deadline)) == WaitOutcome::TimedOut {
                    return false;
                }
            }
            true
        });
        std::thread::sleep(Duration::from_millis(20));
        w.store(1, Ordering::SeqCst);
        wake_all(&w);
        assert!(t.join().unwrap());
    }

    #[test]
    fn wait_any_reports_the_word_woken_a_changed_word_and_the_deadline() {
        let w = Arc::new([AtomicU32::new(0), AtomicU32::new(0)]);
        let words = |a: &[AtomicU32; 2], e0, e1| {
            [
                AnyWord {
                    addr: &a[0],
                    expected: e0,
                    private: false,
                },
                AnyWord {
                    addr: &a[1],
                    expected: e1,
                    private: true,
                },
            ]
        };
        // a word that does not hold what is expected: at once
        assert_eq!(wait_any(&words(&w, 0, 5), None), AnyOutcome::Changed);
        // nothing happens: the deadline
        let d = Instant::now() + Duration::from_millis(20);
        assert_eq!(wait_any(&words(&w, 0, 0), Some(d)), AnyOutcome::TimedOut);
        assert!(Instant::now() >= d);
        // woken on the second word
        let w2 = w.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            w2[1].store(1, Ordering::SeqCst);
            // a private wake for the private word
            futex::wake(&w2[1], futex::Flags::PRIVATE, 1).unwrap()
        });
        let d = Instant::now() + Duration::from_secs(10);
        let out = match wait_any(&words(&w, 0, 0), Some(d)) {
            AnyOutcome::Woken(i) => Some(i),
            AnyOutcome::Changed => None,
            AnyOutcome::TimedOut => panic!("not woken"),
        };
        let woke = t.join().unwrap();
        // either the wake found the sleeper (index 1), or the store came first
        assert!(out == Some(1) && woke == 1 || out.is_none());
    }

    #[test]
    fn past_deadline_times_out_without_sleeping() {
        let w = AtomicU32::new(0);
        assert_eq!(wait(&w, 0, Some(Instant::now())), WaitOutcome::TimedOut);
    }
}
