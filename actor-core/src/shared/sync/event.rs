//! [`Event`], a flag processes can wait for.

use super::region::{create, passed, region_handle, MAGIC_EVENT, SMALL};
use crate::aio::WordWait;
use crate::error::Error;
use procactor_transports::deadline::Deadline;
use procactor_transports::shm::ShmRegion;
use procactor_transports::waiter::{self, Os, Slept};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const EVENT_FLAG: usize = 8;
const EVENT_WAITERS: usize = 12;

fn flag_word(r: &ShmRegion) -> &AtomicU32 {
    r.atomic_u32(EVENT_FLAG)
}
fn flag_waiters(r: &ShmRegion) -> &AtomicU32 {
    r.atomic_u32(EVENT_WAITERS)
}

/// A flag processes can wait for (Python's `multiprocessing.Event`).
///
/// A waiter spins for a few tens of microseconds before sleeping, so a `set` wakes a
/// busy waiter on another core within a microsecond or so, and a sleeping one after the
/// kernel's wake-up time.
///
/// As in Python, a `set` releases every process waiting at that moment even if `clear`
/// follows at once: their `wait` returns, and their `wait_timeout` returns `true` (a
/// `set` happened during the wait; see [`wait_timeout`](Event::wait_timeout)).
///
/// # Examples
///
/// ```
/// use procactor_core::Event;
/// use std::time::Duration;
///
/// let e = Event::new().unwrap();
/// assert!(!e.wait_timeout(Duration::from_millis(5)));
/// e.set();
/// assert!(e.is_set());
/// e.wait(); // returns at once
/// e.clear();
/// assert!(!e.is_set());
/// ```
#[derive(Clone)]
pub struct Event {
    r: Arc<ShmRegion>,
}

region_handle!(Event, MAGIC_EVENT, 16);

impl Event {
    /// A new event, not set.
    ///
    /// # Errors
    ///
    /// The kernel refused the shared memory ([`Error::Io`]).
    pub fn new() -> Result<Self, Error> {
        Ok(Self {
            r: create("event", SMALL, MAGIC_EVENT)?,
        })
    }

    /// The futex word: bit 0 is the flag, the other bits count the `set`s that raised
    /// it (wrapping), so that a waiter notices a `set` even if a `clear` followed.
    fn flag(&self) -> &AtomicU32 {
        self.r.atomic_u32(EVENT_FLAG)
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        let raised = self
            .flag()
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |w| {
                (w & 1 == 0).then(|| (w | 1).wrapping_add(2))
            })
            .is_ok();
        if raised {
            let waiters = self.r.atomic_u32(EVENT_WAITERS);
            waiter::wake(&Os, self.flag(), waiters, waiter::ALL);
        }
    }

    /// Clears the flag.
    pub fn clear(&self) {
        self.flag().fetch_and(!1, Ordering::SeqCst);
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        self.flag().load(Ordering::Acquire) & 1 != 0
    }

    fn wait_deadline(&self, deadline: Option<Instant>) -> bool {
        let seen = self.flag().load(Ordering::Acquire);
        if seen & 1 != 0 {
            return true;
        }
        // released by a `set` since `seen` (the count moved), even if cleared again
        let released = |w: u32| w & 1 != 0 || w >> 1 != seen >> 1;
        let spin_until = Instant::now() + Duration::from_micros(50);
        let mut n = 0u32;
        while procactor_transports::spin::enabled() {
            for _ in 0..64 {
                std::hint::spin_loop();
                let w = self.flag().load(Ordering::Acquire);
                if released(w) {
                    return true; // (a `set` since the call: Python reports True)
                }
            }
            n += 1;
            if n.is_multiple_of(4) {
                let now = Instant::now();
                if now >= spin_until || deadline.is_some_and(|d| now >= d) {
                    procactor_transports::spin::note_overrun(spin_until, now);
                    break;
                }
            }
        }
        let waiters = self.r.atomic_u32(EVENT_WAITERS);
        loop {
            let w = self.flag().load(Ordering::Acquire);
            if released(w) {
                return true; // (a `set` since the call: Python reports True)
            }
            if passed(deadline) {
                return false;
            }
            // sleeps only while the word is unchanged (flag down, no new `set`)
            let slept = waiter::sleep(&Os, self.flag(), waiters, &mut |v| released(v), deadline);
            if slept == Slept::TimedOut {
                return false;
            }
        }
    }

    /// As [`wait`](Event::wait), as a future: completes once the flag is set, or a `set`
    /// happened since the first poll (even if a `clear` followed, as for `wait`). On any
    /// executor; for a timeout, wrap it in the runtime's own
    /// (`tokio::time::timeout(d, e.wait_async())`, whose `Err` is Python's `False`).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only watches the flag (dropping it changes nothing).
    ///
    /// # Examples
    ///
    /// ```
    /// use procactor_core::Event;
    /// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     use std::task::{Context, Poll, Wake, Waker};
    /// #     use std::sync::Arc;
    /// #     struct T(std::thread::Thread);
    /// #     impl Wake for T { fn wake(self: Arc<Self>) { self.0.unpark() } }
    /// #     let w = Waker::from(Arc::new(T(std::thread::current())));
    /// #     let mut f = std::pin::pin!(f);
    /// #     loop {
    /// #         if let Poll::Ready(v) = f.as_mut().poll(&mut Context::from_waker(&w)) { return v; }
    /// #         std::thread::park();
    /// #     }
    /// # }
    /// let e = Event::new().unwrap();
    /// let e2 = e.clone();
    /// let t = std::thread::spawn(move || e2.set());
    /// block_on(e.wait_async());
    /// assert!(e.is_set());
    /// t.join().unwrap();
    /// ```
    pub async fn wait_async(&self) {
        let mut seen = None;
        let mut wait = WordWait::new(self.r.clone(), flag_word, flag_waiters);
        std::future::poll_fn(|cx| {
            wait.poll(cx, None, || {
                let w = self.flag().load(Ordering::Acquire);
                let s = *seen.get_or_insert(w);
                // set, or released by a `set` since the first look (even if cleared)
                (w & 1 != 0 || w >> 1 != s >> 1).then_some(())
            })
        })
        .await;
    }

    /// Waits until the flag is set (or a `set` happened since the call, see above).
    pub fn wait(&self) {
        self.wait_deadline(None);
    }

    /// Waits at most `timeout` for the flag (Python's `wait(timeout)`): `true` if it was
    /// set when called or a `set` happened during the wait (even if a `clear` followed,
    /// as `threading.Event.wait` returns `True` then), `false` on timeout.
    ///
    /// CPython's `multiprocessing.Event.wait` differs here: it re-reads the flag after
    /// waking, so a set/clear pulse gives `True` or `False` depending on whether the
    /// waiter ran before the `clear`. procactor reports the `set` the waiter was woken
    /// by, an answer that does not depend on scheduling.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_deadline(Deadline::after(timeout).instant())
    }
}

impl crate::pipe::sealed::Sealed for Event {}

/// Ready for [`wait`](crate::wait) while the flag is set.
impl crate::pipe::Waitable for Event {
    fn ready_cached(&self) -> bool {
        self.is_set()
    }
    fn ready_fd(&self) -> Option<procactor_transports::BorrowedFd<'_>> {
        None
    }
    fn confirm_ready(&self) -> bool {
        self.is_set()
    }
    fn word_ready(&self) -> Option<crate::pipe::sealed::WordReady<'_>> {
        let mut wait = WordWait::new(self.r.clone(), flag_word, flag_waiters);
        Some(crate::pipe::sealed::WordReady(Box::new(move |cx| {
            wait.poll(cx, None, || self.is_set().then_some(()))
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_then_clear_pulse_releases_the_waiters_of_that_moment() {
        let e = Event::new().unwrap();
        let (e1, e2) = (e.clone(), e.clone());
        let timed = std::thread::spawn(move || {
            let t = Instant::now();
            (e1.wait_timeout(Duration::from_secs(20)), t.elapsed())
        });
        let untimed = std::thread::spawn(move || e2.wait());
        // both past their spin and counted as sleepers (a fixed sleep was not enough
        // on a loaded machine: a waiter that came late missed the pulse)
        let t0 = Instant::now();
        while e.r.atomic_u32(EVENT_WAITERS).load(Ordering::SeqCst) < 2 {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "the waiters never slept"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        e.set();
        e.clear();
        let (flag, waited) = timed.join().unwrap();
        assert!(
            flag,
            "a set during the wait is reported even if cleared since, as \
             threading.Event.wait(timeout) returns True"
        );
        assert!(waited < Duration::from_secs(10), "{waited:?}");
        untimed.join().unwrap();
        // and a later wait waits for the next set
        assert!(!e.wait_timeout(Duration::from_millis(20)));
        e.set();
        assert!(e.wait_timeout(Duration::from_millis(20)));
        // setting a set event changes nothing
        e.set();
        assert!(e.is_set());
        e.clear();
        assert!(!e.is_set());
    }
}
