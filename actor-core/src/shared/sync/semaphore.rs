//! [`Semaphore`] and [`BoundedSemaphore`] (one machinery, `SemCore`), and their guard
//! [`SemGuard`].

use super::lock::{forever, TimedLockResult};
use super::region::{create, map, passed, tick_end, MAGIC_BSEM, MAGIC_SEM, SMALL};
use crate::aio::WordWait;
use crate::codec::{RecvFd, SendFd};
use crate::error::{Error, LockError};
use procactor_transports::deadline::Deadline;
use procactor_transports::journal::Journal;
use procactor_transports::os;
use procactor_transports::robust::{self, Acquired};
use procactor_transports::shm::ShmRegion;
use procactor_transports::waiter::{self, Os, Slept};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SEM_VALUE: usize = 8;
const SEM_WAITERS: usize = 12;
const SEM_MAX: usize = 16;
/// A robust lock held for the few instructions of each change of value + table.
const SEM_LOCK: usize = 20;
/// The journal of the change being made: `state` is 1 while it is being applied; the
/// words are `[count, table index, table entry]` (consecutive `u64`s).
const SEM_J_STATE: usize = 24;
const SEM_J_VALUE: usize = 32;
const SEM_J_INDEX: usize = 40;
const SEM_J_ENTRY: usize = 48;
const SEM_JOURNAL: Journal<3> = Journal::new(SEM_J_STATE, SEM_J_VALUE);
const _: () = assert!(SEM_J_INDEX == SEM_J_VALUE + 8 && SEM_J_ENTRY == SEM_J_VALUE + 16);
const SEM_TABLE: usize = 64;
/// Holder entries: `pid << 32 | slots held`.
const SEM_SLOTS: usize = (SMALL - SEM_TABLE) / 8;
/// A journal index meaning "no table entry changes".
const NO_ENTRY: u64 = u64::MAX;

/// The shared machinery of [`Semaphore`] and [`BoundedSemaphore`].
///
/// The free-slot count (the futex word sleepers wait on) and the holder table change
/// together, under a small robust lock and through a journal
/// ([`procactor_transports::journal`]): the new count, the index
/// of the entry that changes and its new value are written, `state` is set, both are
/// applied, `state` is cleared. Whoever takes the lock over from a dead process
/// re-applies a pending journal. So a process killed at any instruction leaves either
/// the old or the new (count, table) pair: a slot is never lost nor made up, and every
/// slot taken through a guard is recorded against its holder.
#[derive(Clone)]
struct SemCore {
    r: Arc<ShmRegion>,
    bounded: bool,
    /// The table entry this process used last (process-local), tried first.
    hint: Arc<AtomicUsize>,
}

/// What a change of the table does to this process's entry.
#[derive(Clone, Copy)]
enum Entry {
    /// Record one more slot held.
    Add,
    /// Forget one slot held.
    Remove,
}

impl SemCore {
    fn new(n: u32, bounded: bool) -> Result<Self, Error> {
        let magic = if bounded { MAGIC_BSEM } else { MAGIC_SEM };
        let r = create("semaphore", SMALL, magic)?;
        r.atomic_u32(SEM_VALUE).store(n, Ordering::Relaxed);
        r.atomic_u32(SEM_MAX)
            .store(if bounded { n } else { u32::MAX }, Ordering::Release);
        Ok(Self {
            r,
            bounded,
            hint: Arc::default(),
        })
    }

    fn value(&self) -> &AtomicU32 {
        self.r.atomic_u32(SEM_VALUE)
    }

    fn max(&self) -> u32 {
        self.r.atomic_u32(SEM_MAX).load(Ordering::Relaxed)
    }

    fn slot(&self, i: usize) -> &AtomicU64 {
        self.r.atomic_u64(SEM_TABLE + 8 * i)
    }

    // ------------------------------------------------------------ lock and journal

    /// Takes the internal lock, waiting until `deadline`; `false` if it passed. Taken
    /// over from a dead process, the lock comes with its journal completed.
    fn lock(&self, deadline: Option<Instant>) -> bool {
        let w = self.r.atomic_u32(SEM_LOCK);
        match robust::lock(w, deadline) {
            None => false,
            Some(Acquired::Clean) => true,
            Some(Acquired::OwnerDied) => {
                self.recover();
                true
            }
        }
    }

    fn unlock(&self) {
        robust::unlock(self.r.atomic_u32(SEM_LOCK));
    }

    fn recover(&self) {
        if SEM_JOURNAL.apply_pending(&self.r, |[v, i, e]| self.apply(v, i, e)) {
            tracing::debug!("semaphore change of a dead process completed");
        }
    }

    /// With the lock held: sets the count to `value` and, with `Some((index, entry))`,
    /// table entry `index` to `entry`, as one step for anyone who finds this process dead
    /// half-way.
    fn commit(&self, value: u32, change: Option<(usize, u64)>) {
        let (index, entry) = change.map_or((NO_ENTRY, 0), |(i, e)| (i as u64, e));
        SEM_JOURNAL.commit(&self.r, [u64::from(value), index, entry], |[v, i, e]| {
            self.apply(v, i, e)
        });
    }

    /// `value` is the count as journaled: a `u32` widened (only a corrupted journal has
    /// high bits, which are dropped).
    fn apply(&self, value: u64, index: u64, entry: u64) {
        // an index out of range can only come from a corrupted journal: ignore it
        if let Some(i) = usize::try_from(index).ok().filter(|i| *i < SEM_SLOTS) {
            self.slot(i).store(entry, Ordering::Relaxed);
        }
        self.value().store(value as u32, Ordering::Release);
    }

    /// With the lock held: the entry to change for this process and its new value, or
    /// `None` (nothing recorded: the table is full, or this process holds no recorded
    /// slot). A process may have several entries; each counts.
    fn find_entry(&self, change: Entry) -> Option<(usize, u64)> {
        let me = u64::from(robust::my_id());
        let fits = |e: u64| -> Option<u64> {
            let (pid, held) = (e >> 32, e & 0xffff_ffff);
            match change {
                Entry::Add if e == 0 => Some(me << 32 | 1),
                Entry::Add if pid == me && held < 0xffff_ffff => Some(e + 1),
                Entry::Remove if pid == me && held == 1 => Some(0),
                Entry::Remove if pid == me && held > 1 => Some(e - 1),
                _ => None,
            }
        };
        let h = self.hint.load(Ordering::Relaxed);
        let h = if h < SEM_SLOTS { h } else { 0 };
        let at = |i: usize| fits(self.slot(i).load(Ordering::Relaxed)).map(|e| (i, e));
        at(h).or_else(|| {
            let found = (0..SEM_SLOTS).find_map(at)?;
            self.hint.store(found.0, Ordering::Relaxed);
            Some(found)
        })
    }

    /// Releases the lock after the count went up by `n` (the count is the word sleepers
    /// sleep on), waking up to `n` sleepers if any is counted ([`waiter::wake`]: no
    /// system call otherwise). A woken sleeper that finds no slot (another process took
    /// it first) sleeps again; the slot it was woken for is in the count, for whoever
    /// takes it.
    fn unlock_waking(&self, n: u32) {
        self.unlock();
        waiter::wake(&Os, self.value(), self.r.atomic_u32(SEM_WAITERS), n);
    }

    // ------------------------------------------------------------ operations

    /// Takes a slot if one is free, recording it against this process; `None` if
    /// none is free, or the internal lock was not had by `deadline`. `Some(tracked)`:
    /// whether the slot is recorded (it is not when the holder table is full).
    fn try_take(&self, deadline: Option<Instant>) -> Option<bool> {
        if self.value().load(Ordering::Relaxed) == 0 || !self.lock(deadline) {
            return None;
        }
        let r = self.take_locked();
        self.unlock();
        r
    }

    /// As [`try_take`](Self::try_take), with the lock held.
    fn take_locked(&self) -> Option<bool> {
        let v = self.value().load(Ordering::Relaxed);
        if v == 0 {
            return None;
        }
        let entry = self.find_entry(Entry::Add);
        self.commit(v - 1, entry);
        Some(entry.is_some())
    }

    /// Gives a guard's slot back: forgets the record (if `tracked`) and adds the slot
    /// to the count (unless the count is at the bound already: a bounded semaphore
    /// released by hand while the guard was held). Whether the count went up.
    fn give_back(&self, tracked: bool) -> bool {
        self.lock(None);
        let v = self.value().load(Ordering::Relaxed);
        let entry = if tracked {
            self.find_entry(Entry::Remove)
        } else {
            None
        };
        let up = v < self.max();
        self.commit(if up { v + 1 } else { v }, entry);
        self.unlock_waking(u32::from(up));
        up
    }

    /// Forgets the record of one slot held by this process (the slot stays taken).
    fn forget_one(&self) {
        self.lock(None);
        if let Some(entry) = self.find_entry(Entry::Remove) {
            let v = self.value().load(Ordering::Relaxed);
            self.commit(v, Some(entry));
        }
        self.unlock();
    }

    /// Returns `n` slots; `Err(OverRelease)` (nothing changed) when a bounded
    /// semaphore would exceed its initial value, or the count would overflow.
    fn give(&self, n: u32) -> Result<(), Error> {
        self.lock(None);
        let v = self.value().load(Ordering::Relaxed);
        match v.checked_add(n).filter(|nv| *nv <= self.max()) {
            Some(nv) => {
                self.commit(nv, None);
                self.unlock_waking(n);
                Ok(())
            }
            None => {
                self.unlock();
                Err(Error::OverRelease)
            }
        }
    }

    /// Gives back the slots of dead holders; how many.
    fn reclaim_dead(&self) -> u32 {
        let me = u64::from(robust::my_id());
        let mut total = 0u32;
        self.lock(None);
        for i in 0..SEM_SLOTS {
            let e = self.slot(i).load(Ordering::Relaxed);
            let pid = e >> 32;
            if e == 0 || pid == me || os::process_alive(pid as u32) {
                continue;
            }
            let v = self.value().load(Ordering::Relaxed);
            // a bounded semaphore never goes above its initial value
            let n = ((e & 0xffff_ffff) as u32).min(self.max().saturating_sub(v));
            self.commit(v + n, Some((i, 0)));
            total += n;
            tracing::debug!(pid, slots = n, "semaphore slots of a dead holder reclaimed");
        }
        self.unlock_waking(total);
        total
    }

    fn acquire_deadline(&self, deadline: Option<Instant>) -> TimedLockResult<SemGuard<'_>> {
        let mut took = self.try_take(deadline);
        if took.is_none() && procactor_transports::spin::enabled() {
            for _ in 0..200 {
                std::hint::spin_loop();
                if self.value().load(Ordering::Relaxed) > 0 {
                    took = self.try_take(deadline);
                    if took.is_some() {
                        break;
                    }
                }
            }
        }
        let mut reclaimed = false;
        let mut tick = Duration::from_millis(10);
        let tracked = loop {
            if let Some(t) = took {
                break t;
            }
            if !self.lock(deadline) {
                return Ok(None);
            }
            took = self.take_locked();
            if took.is_some() {
                self.unlock();
                continue; // breaks with the slot
            }
            self.unlock();
            if passed(deadline) {
                return Ok(None);
            }
            // empty: sleep on the count until it is non-zero, a tick at most (then the
            // holders' liveness is checked)
            let sleepers = self.r.atomic_u32(SEM_WAITERS);
            let until = tick_end(deadline, tick);
            if waiter::sleep(&Os, self.value(), sleepers, &mut |v| v != 0, until) == Slept::TimedOut
            {
                reclaimed |= self.reclaim_dead() > 0;
                tick = (tick * 2).min(Duration::from_millis(200));
            }
        };
        let g = SemGuard {
            core: self,
            tracked,
        };
        if reclaimed {
            Err(LockError::OwnerDied(g))
        } else {
            Ok(Some(g))
        }
    }
}

fn value_word(r: &ShmRegion) -> &AtomicU32 {
    r.atomic_u32(SEM_VALUE)
}
fn value_waiters(r: &ShmRegion) -> &AtomicU32 {
    r.atomic_u32(SEM_WAITERS)
}

impl SemCore {
    /// As `acquire_deadline(None)`, as a future: the slot is taken only in the poll that
    /// returns it; dead holders' slots are reclaimed on the blocking path's schedule (10
    /// ms into the wait, backing off to 200 ms).
    async fn acquire_async(&self) -> Result<SemGuard<'_>, LockError<SemGuard<'_>>> {
        let mut wait = WordWait::new(self.r.clone(), value_word, value_waiters);
        let mut reclaimed = false;
        let mut tick = Duration::from_millis(10);
        let mut next_check = Instant::now() + tick;
        let tracked = std::future::poll_fn(|cx| {
            let now = Instant::now();
            if now >= next_check {
                reclaimed |= self.reclaim_dead() > 0;
                tick = (tick * 2).min(Duration::from_millis(200));
                next_check = now + tick;
            }
            let recheck = next_check.saturating_duration_since(now);
            wait.poll(cx, Some(recheck), || self.try_take(None))
        })
        .await;
        let g = SemGuard {
            core: self,
            tracked,
        };
        if reclaimed {
            Err(LockError::OwnerDied(g))
        } else {
            Ok(g)
        }
    }
}

/// A slot of a [`Semaphore`] or [`BoundedSemaphore`]; given back on drop.
///
/// While it lives, the slot is recorded as held by this process, so that if the
/// process dies the slot is given back to the others (see [`Semaphore`]).
pub struct SemGuard<'a> {
    core: &'a SemCore,
    tracked: bool,
}

impl std::fmt::Debug for SemGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SemGuard")
            .field("tracked", &self.tracked)
            .finish_non_exhaustive()
    }
}

impl SemGuard<'_> {
    /// Keeps the slot taken without a guard (Python's bare `acquire()`): it is no longer
    /// given back on drop nor when this process dies; somebody must call `release()`.
    pub fn forget(self) {
        if self.tracked {
            self.core.forget_one();
        }
        std::mem::forget(self);
    }
}

impl Drop for SemGuard<'_> {
    fn drop(&mut self) {
        if !self.core.give_back(self.tracked) {
            // a bounded semaphore released by hand while this guard was held
            tracing::warn!("semaphore guard dropped on a semaphore already at its bound");
        }
    }
}

macro_rules! sem_api {
    ($t:ident) => {
        impl $t {
            /// Takes a slot, waiting as long as it takes; the guard gives it back on drop.
            ///
            /// # Errors
            ///
            /// [`LockError::OwnerDied`] when the wait ended because this caller gave back
            /// slots of holders that had died (the slot is taken anyway: the guard is
            /// inside).
            pub fn acquire(&self) -> Result<SemGuard<'_>, LockError<SemGuard<'_>>> {
                forever(|| self.core.acquire_deadline(None))
            }

            /// Takes a slot if one is free; `Ok(None)` otherwise. It never sleeps for a
            /// slot (at most it waits out another process's few-instruction update of
            /// the count), and never reclaims dead holders' slots (only waiting
            /// acquisitions do).
            ///
            /// # Errors
            ///
            /// None in practice; the type is that of [`acquire`](Self::acquire).
            pub fn try_acquire(&self) -> Result<Option<SemGuard<'_>>, LockError<SemGuard<'_>>> {
                Ok(self.core.try_take(None).map(|tracked| SemGuard {
                    core: &self.core,
                    tracked,
                }))
            }

            /// Takes a slot, waiting at most `timeout`; `Ok(None)` when it ran out.
            ///
            /// # Errors
            ///
            /// As [`acquire`](Self::acquire).
            pub fn acquire_timeout(
                &self,
                timeout: Duration,
            ) -> Result<Option<SemGuard<'_>>, LockError<SemGuard<'_>>> {
                self.core
                    .acquire_deadline(Deadline::after(timeout).instant())
            }

            /// As [`acquire`](Self::acquire), as a future: waits for a slot without
            /// blocking a thread, on any executor. For a timeout, wrap it in the
            /// runtime's own (`tokio::time::timeout`). Dead holders' slots are given
            /// back as by `acquire` (10 ms into the wait, then at most every 200 ms).
            ///
            /// # Cancel safety
            ///
            /// Cancel safe: the slot is taken only in the poll that returns the guard,
            /// so a dropped future holds nothing. If it had been woken by a release it
            /// will now not use, that wake-up is passed on to the other waiters.
            ///
            /// # Errors
            ///
            /// As [`acquire`](Self::acquire): [`LockError::OwnerDied`] when this wait
            /// gave back slots of dead holders (the slot is taken anyway).
            ///
            /// # Examples
            ///
            /// ```
            #[doc = concat!("use procactor_core::", stringify!($t), ";")]
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
            #[doc = concat!("let s = ", stringify!($t), "::new(1).unwrap();")]
            /// let first = s.acquire().unwrap();
            /// let s2 = s.clone();
            /// let t = std::thread::spawn(move || {
            ///     let g = block_on(s2.acquire_async()).unwrap();
            ///     drop(g);
            /// });
            /// std::thread::sleep(std::time::Duration::from_millis(20));
            /// drop(first); // the slot goes to the waiting future
            /// t.join().unwrap();
            /// assert_eq!(s.value(), 1);
            /// ```
            pub async fn acquire_async(&self) -> Result<SemGuard<'_>, LockError<SemGuard<'_>>> {
                self.core.acquire_async().await
            }

            /// The number of free slots (advisory: it may change at once).
            pub fn value(&self) -> u32 {
                self.core.value().load(Ordering::Relaxed)
            }
        }

        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                SendFd(self.core.r.fd()).serialize(s)
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let RecvFd(fd) = RecvFd::deserialize(d)?;
                let bounded = stringify!($t) == "BoundedSemaphore";
                let magic = if bounded { MAGIC_BSEM } else { MAGIC_SEM };
                let r = map(fd, SMALL, magic, stringify!($t)).map_err(D::Error::custom)?;
                Ok(Self {
                    core: SemCore {
                        r,
                        bounded,
                        hint: Arc::default(),
                    },
                })
            }
        }

        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($t))
                    .field("value", &self.value())
                    .field("bounded", &self.core.bounded)
                    .finish_non_exhaustive()
            }
        }
    };
}

/// A counting semaphore shared by processes (Python's `multiprocessing.Semaphore`).
///
/// [`acquire`](Semaphore::acquire) takes a slot and returns a [`SemGuard`] that gives it
/// back on drop; [`release`](Semaphore::release) adds a slot by hand (Python style, after
/// [`SemGuard::forget`]).
///
/// **Dead holders.** A slot taken through a guard is recorded with the holder's pid in a
/// table inside the semaphore (up to 504 distinct holder processes at once; a slot taken
/// beyond that is not recorded). A waiter that has slept ~10 ms (backing off to 200 ms)
/// without a slot gives back the recorded slots of processes that have died and is told
/// so with [`LockError::OwnerDied`]. Taking a slot and recording it (and forgetting the
/// record and giving the slot back) is one journaled step under a small internal robust
/// lock, so a process killed at any moment neither loses a slot nor makes one up. Not
/// given back on death: slots kept with [`SemGuard::forget`] (as in Python, somebody
/// must `release()` them) and slots taken while the table was full.
///
/// # Examples
///
/// ```
/// use procactor_core::Semaphore;
///
/// let s = Semaphore::new(2).unwrap();
/// let a = s.acquire().unwrap();
/// let b = s.try_acquire().unwrap().unwrap();
/// assert!(s.try_acquire().unwrap().is_none());
/// drop(a);
/// assert_eq!(s.value(), 1);
/// b.forget(); // keep the slot; give it back by hand
/// s.release().unwrap();
/// assert_eq!(s.value(), 2);
/// ```
#[derive(Clone)]
pub struct Semaphore {
    core: SemCore,
}

sem_api!(Semaphore);

impl Semaphore {
    /// A semaphore with `n` free slots.
    ///
    /// # Errors
    ///
    /// The kernel refused the shared memory ([`Error::Io`]).
    pub fn new(n: u32) -> Result<Self, Error> {
        Ok(Self {
            core: SemCore::new(n, false)?,
        })
    }

    /// Adds a slot, waking one waiter.
    ///
    /// # Errors
    ///
    /// [`Error::OverRelease`] only when the count would overflow `u32`.
    pub fn release(&self) -> Result<(), Error> {
        self.core.give(1)
    }
}

/// A semaphore that refuses to go above its initial value (Python's
/// `multiprocessing.BoundedSemaphore`).
///
/// Same operations and robustness as [`Semaphore`]; [`release`](BoundedSemaphore::release)
/// beyond the initial value is `Err(Error::OverRelease)`.
///
/// # Examples
///
/// ```
/// use procactor_core::{BoundedSemaphore, Error};
///
/// let s = BoundedSemaphore::new(1).unwrap();
/// assert!(matches!(s.release(), Err(Error::OverRelease)));
/// s.acquire().unwrap().forget();
/// assert!(s.release().is_ok());
/// ```
#[derive(Clone)]
pub struct BoundedSemaphore {
    core: SemCore,
}

sem_api!(BoundedSemaphore);

impl BoundedSemaphore {
    /// A bounded semaphore with `n` free slots, which is also its bound.
    ///
    /// # Errors
    ///
    /// The kernel refused the shared memory ([`Error::Io`]).
    pub fn new(n: u32) -> Result<Self, Error> {
        Ok(Self {
            core: SemCore::new(n, true)?,
        })
    }

    /// Adds a slot, waking one waiter.
    ///
    /// # Errors
    ///
    /// [`Error::OverRelease`] when that would exceed the initial value (nothing changes).
    pub fn release(&self) -> Result<(), Error> {
        self.core.give(1)
    }

    /// The bound (the initial value).
    pub fn bound(&self) -> u32 {
        self.core.max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semaphore_table_records_holders() {
        let s = Semaphore::new(3).unwrap();
        let a = s.acquire().unwrap();
        let b = s.acquire().unwrap();
        let me = u64::from(robust::my_id());
        let held: u64 = (0..SEM_SLOTS)
            .map(|i| s.core.slot(i).load(Ordering::Relaxed))
            .filter(|e| e >> 32 == me)
            .map(|e| e & 0xffff_ffff)
            .sum();
        assert_eq!(held, 2);
        drop(a);
        b.forget();
        assert!((0..SEM_SLOTS).all(|i| s.core.slot(i).load(Ordering::Relaxed) == 0));
        assert_eq!(s.value(), 2);
    }

    #[test]
    fn semaphore_reclaims_a_dead_holders_slot() {
        let s = Semaphore::new(1).unwrap();
        s.acquire().unwrap().forget();
        // pretend a process that has exited holds the slot
        let mut c = std::process::Command::new("true").spawn().unwrap();
        let dead = u64::from(c.id());
        c.wait().unwrap();
        s.core.slot(0).store(dead << 32 | 1, Ordering::Relaxed);
        match s.acquire_timeout(Duration::from_secs(10)) {
            Err(LockError::OwnerDied(_)) => {}
            other => panic!("expected OwnerDied, got {other:?}"),
        };
    }

    fn dead_pid() -> u32 {
        let mut c = std::process::Command::new("true").spawn().unwrap();
        let pid = c.id();
        c.wait().unwrap();
        pid
    }

    #[test]
    fn a_slot_taken_by_a_process_killed_mid_journal_is_recorded_and_reclaimed() {
        let s = Semaphore::new(1).unwrap();
        let dead = dead_pid();
        // the dead process had journaled "count 0, entry 3 = me holding 1" and applied
        // nothing, holding the internal lock
        let r = &s.core.r;
        r.atomic_u64(SEM_J_VALUE).store(0, Ordering::Relaxed);
        r.atomic_u64(SEM_J_INDEX).store(3, Ordering::Relaxed);
        r.atomic_u64(SEM_J_ENTRY)
            .store(u64::from(dead) << 32 | 1, Ordering::Relaxed);
        r.atomic_u64(SEM_J_STATE).store(1, Ordering::Relaxed);
        r.atomic_u32(SEM_LOCK).store(dead, Ordering::Relaxed);
        assert_eq!(s.value(), 1);
        // the next acquirer completes the change (the slot is the dead one's), then
        // gives it back as a dead holder's
        match s.acquire_timeout(Duration::from_secs(10)) {
            Err(LockError::OwnerDied(g)) => drop(g),
            other => panic!("expected OwnerDied, got {other:?}"),
        }
        assert_eq!(s.value(), 1);
        assert!((0..SEM_SLOTS).all(|i| s.core.slot(i).load(Ordering::Relaxed) == 0));
        assert!(!SEM_JOURNAL.is_pending(r));
    }

    #[test]
    fn a_change_not_yet_journaled_by_a_dead_process_never_happened() {
        let s = BoundedSemaphore::new(2).unwrap();
        let r = &s.core.r;
        // journal values written but `state` never set: nothing is applied
        r.atomic_u64(SEM_J_VALUE).store(0, Ordering::Relaxed);
        r.atomic_u64(SEM_J_INDEX).store(0, Ordering::Relaxed);
        r.atomic_u64(SEM_J_ENTRY).store(u64::MAX, Ordering::Relaxed);
        r.atomic_u32(SEM_LOCK).store(dead_pid(), Ordering::Relaxed);
        let a = s.acquire_timeout(Duration::from_secs(10)).unwrap().unwrap();
        let b = s.try_acquire().unwrap().unwrap();
        assert!(s.try_acquire().unwrap().is_none());
        drop((a, b));
        assert_eq!(s.value(), 2);
    }

    #[test]
    fn a_corrupt_journal_index_is_ignored_not_a_panic() {
        let s = Semaphore::new(0).unwrap();
        let r = &s.core.r;
        r.atomic_u64(SEM_J_VALUE).store(1, Ordering::Relaxed);
        r.atomic_u64(SEM_J_INDEX).store(1 << 40, Ordering::Relaxed);
        r.atomic_u64(SEM_J_STATE).store(1, Ordering::Relaxed);
        r.atomic_u32(SEM_LOCK).store(dead_pid(), Ordering::Relaxed);
        s.release().unwrap(); // takes the lock over, applies the count, ignores the index
        assert_eq!(s.value(), 2);
    }

    #[test]
    fn a_full_holder_table_still_gives_slots_untracked() {
        let s = Semaphore::new(2).unwrap();
        // every entry held by another live process (our parent)
        let other = u64::from(std::os::unix::process::parent_id());
        for i in 0..SEM_SLOTS {
            s.core.slot(i).store(other << 32 | 1, Ordering::Relaxed);
        }
        let g = s.try_acquire().unwrap().unwrap();
        assert!(!g.tracked);
        drop(g);
        assert_eq!(s.value(), 2);
        let g = s.acquire().unwrap();
        g.forget();
        assert_eq!(s.value(), 1);
    }
}
