//! [`Barrier`], for a fixed number of processes.

use super::region::{create, map, passed, tick_end, MAGIC_BARRIER};
use crate::aio::WordWait;
use crate::codec::{RecvFd, SendFd};
use crate::error::{BrokenBarrier, Error};
use procactor_transports::deadline::Deadline;
use procactor_transports::os;
use procactor_transports::robust;
use procactor_transports::shm::ShmRegion;
use procactor_transports::waiter::{self, Os, Slept};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BAR_LOCK: usize = 8;
const BAR_SEQ: usize = 12;
const BAR_STATE: usize = 16;
const BAR_COUNT: usize = 20;
const BAR_PARTIES: usize = 24;
const BAR_WAITERS: usize = 28;
const BAR_TABLE: usize = 64;
const MAX_PARTIES: usize = 1 << 20;

const FILLING: u32 = 0;
const DRAINING: u32 = 1;
const RESETTING: u32 = 2;
const BROKEN: u32 = 3;

/// How often a barrier waiter checks that the other waiters are alive.
const BAR_TICK: Duration = Duration::from_millis(50);

/// A barrier for a fixed number of processes (Python's `multiprocessing.Barrier`, with
/// `threading.Barrier` semantics).
///
/// Each of `parties` callers of [`wait`](Barrier::wait) blocks until all have arrived;
/// each then gets a distinct index in `0..parties` and the barrier is ready for the next
/// round. It **breaks** ([`BrokenBarrier`] for current and later waiters, until
/// [`reset`](Barrier::reset)) when [`abort`](Barrier::abort) is called, when a waiter's
/// timeout runs out, or when a waiting process dies (waiters check each other's
/// liveness every 50 ms). [`reset`](Barrier::reset) breaks the current round (its
/// waiters get `BrokenBarrier`) and makes the barrier usable again.
///
/// The number of parties is copied into each handle when it is made or received; a
/// shared header that no longer agrees with it (a process scribbled over the barrier's
/// memory) makes the barrier broken — `wait` returns [`BrokenBarrier`], never panics or
/// indexes outside the memory — until [`reset`](Barrier::reset) rewrites the header.
///
/// # Examples
///
/// ```
/// use procactor_core::Barrier;
/// use std::time::Duration;
///
/// let b = Barrier::new(2).unwrap();
/// let b2 = b.clone();
/// let t = std::thread::spawn(move || b2.wait_timeout(Duration::from_secs(30)));
/// let mine = b.wait_timeout(Duration::from_secs(30)).unwrap();
/// let theirs = t.join().unwrap().unwrap();
/// assert_eq!(mine + theirs, 1); // indices 0 and 1
/// b.abort();
/// assert!(b.is_broken() && b.wait().is_err());
/// b.reset();
/// assert!(!b.is_broken());
/// ```
#[derive(Clone)]
pub struct Barrier {
    r: Arc<ShmRegion>,
    /// The number of parties, validated against the region's size when this handle was
    /// made (a private copy: the shared one is checked against it at each use).
    parties: usize,
}

impl Serialize for Barrier {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        SendFd(self.r.fd()).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Barrier {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let RecvFd(fd) = RecvFd::deserialize(d)?;
        let r = map(fd, BAR_TABLE, MAGIC_BARRIER, "Barrier").map_err(D::Error::custom)?;
        let parties = r.atomic_u32(BAR_PARTIES).load(Ordering::Relaxed) as usize;
        if parties == 0 || parties > MAX_PARTIES || BAR_TABLE + 4 * parties > r.len() {
            return Err(D::Error::custom("the Barrier's header is inconsistent"));
        }
        Ok(Self { r, parties })
    }
}

impl std::fmt::Debug for Barrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Barrier")
            .field("parties", &self.parties())
            .field("n_waiting", &self.n_waiting())
            .field("broken", &self.is_broken())
            .finish_non_exhaustive()
    }
}

/// The barrier's internal lock, held.
struct BarrierLocked<'a> {
    b: &'a Barrier,
}

impl Drop for BarrierLocked<'_> {
    fn drop(&mut self) {
        robust::unlock(self.b.r.atomic_u32(BAR_LOCK));
    }
}

impl BarrierLocked<'_> {
    fn state(&self) -> u32 {
        self.b.r.atomic_u32(BAR_STATE).load(Ordering::Relaxed)
    }
    fn set_state(&self, s: u32) {
        self.b.r.atomic_u32(BAR_STATE).store(s, Ordering::Relaxed);
    }
    fn count(&self) -> usize {
        self.b.r.atomic_u32(BAR_COUNT).load(Ordering::Relaxed) as usize
    }
    fn set_count(&self, c: usize) {
        self.b
            .r
            .atomic_u32(BAR_COUNT)
            .store(c as u32, Ordering::Relaxed);
    }
    /// Slot `i < self.b.parties` (in the region: checked when the handle was made).
    fn slot(&self, i: usize) -> &AtomicU32 {
        self.b.r.atomic_u32(BAR_TABLE + 4 * i)
    }
    /// Whether the shared header is one this code could have written: the parties this
    /// handle knows, a count below them, a known state.
    fn header_ok(&self) -> bool {
        self.b.r.atomic_u32(BAR_PARTIES).load(Ordering::Relaxed) as usize == self.b.parties
            && self.count() <= self.b.parties
            && self.state() <= BROKEN
    }
    fn notify_all(&self) {
        let seq = self.b.r.atomic_u32(BAR_SEQ);
        seq.fetch_add(1, Ordering::SeqCst);
        waiter::wake(&Os, seq, self.b.r.atomic_u32(BAR_WAITERS), waiter::ALL);
    }

    /// The last one out of a draining or resetting round makes the barrier fill again.
    fn exit_check(&self) {
        if self.count() == 0 && matches!(self.state(), DRAINING | RESETTING) {
            self.set_state(FILLING);
            self.notify_all();
        }
    }

    /// This waiter leaves its round: its slot (if it still holds it: a reaper clears a
    /// slot only if its process was dead) and its count.
    fn leave(&self, slot: Option<usize>, me: u32) {
        if let Some(i) = slot {
            if self.slot(i).load(Ordering::Relaxed) == me {
                self.slot(i).store(0, Ordering::Relaxed);
            }
        }
        self.set_count(self.count().saturating_sub(1));
        self.exit_check();
    }

    /// Forgets waiters whose processes died; a death during filling breaks the barrier.
    fn reap_dead(&self) {
        let me = robust::my_id();
        let mut dead = 0;
        for i in 0..self.b.parties {
            let pid = self.slot(i).load(Ordering::Relaxed);
            if pid != 0 && pid != me && !os::process_alive(pid) {
                self.slot(i).store(0, Ordering::Relaxed);
                dead += 1;
            }
        }
        if dead > 0 {
            tracing::debug!(dead, "barrier waiters died");
            self.set_count(self.count().saturating_sub(dead));
            if self.state() == FILLING {
                self.set_state(BROKEN);
            }
            self.notify_all();
            self.exit_check();
        }
    }
}

fn seq_word(r: &ShmRegion) -> &AtomicU32 {
    r.atomic_u32(BAR_SEQ)
}
fn seq_waiters(r: &ShmRegion) -> &AtomicU32 {
    r.atomic_u32(BAR_WAITERS)
}

/// An async waiter that has arrived in a round: dropped before the round ended (the
/// future was cancelled), it breaks the barrier as a timeout does, and leaves.
struct Arrived<'a> {
    b: &'a Barrier,
    slot: Option<usize>,
    me: u32,
    left: bool,
}

impl Drop for Arrived<'_> {
    fn drop(&mut self) {
        if self.left {
            return;
        }
        let l = self.b.locked();
        if l.header_ok() && l.state() == FILLING {
            l.set_state(BROKEN);
            l.notify_all();
        }
        l.leave(self.slot, self.me);
    }
}

impl Barrier {
    /// A barrier for `parties` processes (or threads).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for 0 parties or more than 2²⁰, [`Error::Io`] when the
    /// kernel refused the shared memory.
    pub fn new(parties: usize) -> Result<Self, Error> {
        if parties == 0 || parties > MAX_PARTIES {
            return Err(Error::InvalidArgument(format!(
                "a barrier needs 1..={MAX_PARTIES} parties, not {parties}"
            )));
        }
        let r = create("barrier", BAR_TABLE + 4 * parties, MAGIC_BARRIER)?;
        r.atomic_u32(BAR_PARTIES)
            .store(parties as u32, Ordering::Release);
        Ok(Self { r, parties })
    }

    fn locked(&self) -> BarrierLocked<'_> {
        // without a deadline `lock` only returns once acquired (a dead holder is taken
        // over; the barrier's own state stays consistent enough: see reap_dead)
        while robust::lock(self.r.atomic_u32(BAR_LOCK), None).is_none() {}
        BarrierLocked { b: self }
    }

    /// The internal lock, waiting until `deadline` at most (a live process could hold it
    /// forever if it scribbled a live pid into the word).
    fn locked_until(&self, deadline: Option<Instant>) -> Option<BarrierLocked<'_>> {
        robust::lock(self.r.atomic_u32(BAR_LOCK), deadline)?;
        Some(BarrierLocked { b: self })
    }

    /// Releases the internal lock, sleeps until notified, `deadline` or one tick, and
    /// takes the lock again (checking for dead waiters after a quiet tick).
    /// `None` when the lock could not be taken again before `deadline`.
    fn sleep<'a>(
        &'a self,
        l: BarrierLocked<'a>,
        deadline: Option<Instant>,
    ) -> Option<BarrierLocked<'a>> {
        let seq = self.r.atomic_u32(BAR_SEQ);
        let waiters = self.r.atomic_u32(BAR_WAITERS);
        // read under the lock: a notification after this changes the word
        let s = seq.load(Ordering::SeqCst);
        drop(l);
        let until = tick_end(deadline, BAR_TICK);
        let out = waiter::sleep(&Os, seq, waiters, &mut |w| w != s, until);
        let l = self.locked_until(deadline)?;
        if out == Slept::TimedOut && l.header_ok() {
            l.reap_dead();
        }
        Some(l)
    }

    fn wait_deadline(&self, deadline: Option<Instant>) -> Result<usize, BrokenBarrier> {
        let mut l = self.locked_until(deadline).ok_or(BrokenBarrier)?;
        // a previous round still draining (or resetting): wait until it is done
        while l.header_ok() && matches!(l.state(), DRAINING | RESETTING) {
            if passed(deadline) {
                return Err(BrokenBarrier);
            }
            l = self.sleep(l, deadline).ok_or(BrokenBarrier)?;
        }
        if !l.header_ok() {
            tracing::warn!("a Barrier's shared header is corrupt: treated as broken");
            return Err(BrokenBarrier);
        }
        if l.state() == BROKEN {
            return Err(BrokenBarrier);
        }
        let parties = self.parties;
        let index = l.count();
        l.set_count(index + 1);
        let me = robust::my_id();
        let slot = (0..parties).find(|&i| l.slot(i).load(Ordering::Relaxed) == 0);
        if let Some(i) = slot {
            l.slot(i).store(me, Ordering::Relaxed);
        }
        let res = if index + 1 >= parties {
            l.set_state(DRAINING);
            l.notify_all();
            Ok(index)
        } else {
            loop {
                if l.state() != FILLING || !l.header_ok() {
                    break;
                }
                if passed(deadline) {
                    l.set_state(BROKEN);
                    l.notify_all();
                    break;
                }
                l = self.sleep(l, deadline).ok_or(BrokenBarrier)?;
            }
            if l.state() == DRAINING && l.header_ok() {
                Ok(index)
            } else {
                Err(BrokenBarrier)
            }
        };
        l.leave(slot, me);
        res
    }

    /// Waits, as a future, until the notification word moves from `s` (`false`) or one
    /// tick passes without it moving (`true`: time for a liveness check).
    async fn notified_or_tick(&self, s: u32) -> bool {
        let tick_at = Instant::now() + BAR_TICK;
        let mut wait = WordWait::new(self.r.clone(), seq_word, seq_waiters);
        std::future::poll_fn(|cx| {
            let recheck = tick_at.saturating_duration_since(Instant::now());
            wait.poll(cx, Some(recheck), || {
                if seq_word(&self.r).load(Ordering::SeqCst) != s {
                    Some(false)
                } else if Instant::now() >= tick_at {
                    Some(true)
                } else {
                    None
                }
            })
        })
        .await
    }

    /// As [`wait`](Barrier::wait), as a future: completes once `parties` callers (sync
    /// or async, in any process) have arrived, with a distinct index in `0..parties`.
    /// On any executor; the barrier's internal lock is taken only for the few
    /// instructions of each look, as `wait` does. Waiters' liveness is checked every
    /// 50 ms, as by `wait`.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future after it has arrived (its first poll) and before the barrier
    /// tripped **breaks the barrier**, exactly as a `wait_timeout` that runs out does
    /// (Python's rule: so `tokio::time::timeout(d, b.wait_async())` behaves as
    /// `wait_timeout(d)`); the arrival could not be withdrawn without giving two waiters
    /// the same index. Dropped after the barrier tripped, it just leaves its round.
    /// Dropped before its first poll, it did nothing.
    ///
    /// # Errors
    ///
    /// As [`wait`](Barrier::wait): [`BrokenBarrier`].
    pub async fn wait_async(&self) -> Result<usize, BrokenBarrier> {
        let me = robust::my_id();
        // a previous round still draining (or resetting): wait until it is done
        let (index, slot, mut s) = loop {
            let l = self.locked();
            if l.header_ok() && matches!(l.state(), DRAINING | RESETTING) {
                let s = seq_word(&self.r).load(Ordering::SeqCst);
                drop(l);
                if self.notified_or_tick(s).await {
                    let l = self.locked();
                    if l.header_ok() {
                        l.reap_dead();
                    }
                }
                continue;
            }
            if !l.header_ok() {
                tracing::warn!("a Barrier's shared header is corrupt: treated as broken");
                return Err(BrokenBarrier);
            }
            if l.state() == BROKEN {
                return Err(BrokenBarrier);
            }
            let index = l.count();
            l.set_count(index + 1);
            let slot = (0..self.parties).find(|&i| l.slot(i).load(Ordering::Relaxed) == 0);
            if let Some(i) = slot {
                l.slot(i).store(me, Ordering::Relaxed);
            }
            if index + 1 >= self.parties {
                l.set_state(DRAINING);
                l.notify_all();
                l.leave(slot, me);
                return Ok(index);
            }
            break (index, slot, seq_word(&self.r).load(Ordering::SeqCst));
        };
        let mut arrived = Arrived {
            b: self,
            slot,
            me,
            left: false,
        };
        loop {
            let ticked = self.notified_or_tick(s).await;
            let l = self.locked();
            if ticked && l.header_ok() {
                l.reap_dead();
            }
            if l.state() != FILLING || !l.header_ok() {
                let res = if l.state() == DRAINING && l.header_ok() {
                    Ok(index)
                } else {
                    Err(BrokenBarrier)
                };
                arrived.left = true;
                l.leave(slot, me);
                return res;
            }
            // read under the lock: a notification after this changes the word
            s = seq_word(&self.r).load(Ordering::SeqCst);
        }
    }

    /// Waits until `parties` callers have arrived; a distinct index in `0..parties`.
    ///
    /// # Errors
    ///
    /// [`BrokenBarrier`] when the barrier is or becomes broken (aborted, reset, a
    /// waiter timed out or died).
    pub fn wait(&self) -> Result<usize, BrokenBarrier> {
        self.wait_deadline(None)
    }

    /// As [`wait`](Barrier::wait), for at most `timeout`; running out breaks the
    /// barrier for everyone (as Python does).
    ///
    /// # Errors
    ///
    /// As [`wait`](Barrier::wait), and when the time ran out.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<usize, BrokenBarrier> {
        self.wait_deadline(Deadline::after(timeout).instant())
    }

    /// Breaks the barrier: current and future waiters get [`BrokenBarrier`] until
    /// [`reset`](Barrier::reset).
    pub fn abort(&self) {
        let l = self.locked();
        l.set_state(BROKEN);
        l.notify_all();
    }

    /// Returns the barrier to its empty, usable state; processes waiting in the current
    /// round get [`BrokenBarrier`].
    ///
    /// A barrier whose shared header was corrupted is rewritten from this handle's own
    /// copy of the number of parties, with no waiter (any process still waiting in it gets
    /// [`BrokenBarrier`] at its next check).
    pub fn reset(&self) {
        let l = self.locked();
        if !l.header_ok() {
            self.r
                .atomic_u32(BAR_PARTIES)
                .store(self.parties as u32, Ordering::Relaxed);
            for i in 0..self.parties {
                l.slot(i).store(0, Ordering::Relaxed);
            }
            l.set_count(0);
            l.set_state(FILLING);
            l.notify_all();
            return;
        }
        if l.count() > 0 {
            if matches!(l.state(), FILLING | BROKEN) {
                l.set_state(RESETTING);
            }
        } else {
            l.set_state(FILLING);
        }
        l.notify_all();
    }

    /// The number of processes needed to pass the barrier.
    pub fn parties(&self) -> usize {
        self.parties
    }

    /// How many are waiting in the current round (advisory).
    pub fn n_waiting(&self) -> usize {
        if self.r.atomic_u32(BAR_STATE).load(Ordering::Relaxed) == FILLING {
            self.r.atomic_u32(BAR_COUNT).load(Ordering::Relaxed) as usize
        } else {
            0
        }
    }

    /// Whether the barrier is broken (also when its shared header is corrupt).
    pub fn is_broken(&self) -> bool {
        self.r.atomic_u32(BAR_STATE).load(Ordering::Relaxed) == BROKEN
            || self.r.atomic_u32(BAR_PARTIES).load(Ordering::Relaxed) as usize != self.parties
            || self.r.atomic_u32(BAR_STATE).load(Ordering::Relaxed) > BROKEN
            || self.r.atomic_u32(BAR_COUNT).load(Ordering::Relaxed) as usize > self.parties
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_corrupt_barrier_header_breaks_the_barrier_until_reset() {
        let b = Barrier::new(2).unwrap();
        for (off, bad) in [
            (BAR_PARTIES, u32::MAX),
            (BAR_PARTIES, 0),
            (BAR_COUNT, 7),
            (BAR_STATE, 99),
        ] {
            b.r.atomic_u32(off).store(bad, Ordering::Relaxed);
            assert!(b.is_broken(), "{off}={bad}");
            assert_eq!(b.parties(), 2);
            let t = Instant::now();
            assert!(b.wait_timeout(Duration::from_secs(5)).is_err());
            assert!(t.elapsed() < Duration::from_secs(4), "no quick error");
            b.reset();
            assert!(!b.is_broken());
            let b2 = b.clone();
            let other = std::thread::spawn(move || b2.wait_timeout(Duration::from_secs(30)));
            let mine = b.wait_timeout(Duration::from_secs(30)).unwrap();
            assert_eq!(mine + other.join().unwrap().unwrap(), 1);
        }
    }

    #[test]
    fn barrier_rejects_zero_parties() {
        assert!(matches!(Barrier::new(0), Err(Error::InvalidArgument(_))));
    }
}
