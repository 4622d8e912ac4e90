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
    fn past_deadline_times_out_without_sleeping() {
        let w = AtomicU32::new(0);
        assert_eq!(wait(&w, 0, Some(Instant::now())), WaitOutcome::TimedOut);
    }
}
