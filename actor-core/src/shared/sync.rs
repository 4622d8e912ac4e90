//! Cross-process synchronisation: [`Lock`], [`RLock`], [`Semaphore`],
//! [`BoundedSemaphore`], [`Event`], [`Condition`], [`Barrier`] (Python's
//! `multiprocessing.Lock` … `Barrier`).
//!
//! Each is a small anonymous shared-memory region of atomics, driven by futexes: an
//! uncontended operation makes no system call. Handles are cheap to clone and travel to
//! children inside a [`Process`](crate::Process)'s arguments (or through a Pipe).
//!
//! Blocking operations come as `x` (wait as long as it takes), `try_x` (never waits) and
//! `x_timeout(Duration)`.
//!
//! # Dead processes never leave others hanging
//!
//! - A lock word stores its owner's pid (and, for [`RLock`], a thread number); a waiter
//!   that has slept for a while checks whether the owner is alive and takes the lock
//!   over if not. The new owner is told: [`Err(LockError::OwnerDied(guard))`](
//!   LockError::OwnerDied), with the lock held.
//! - A [`Semaphore`] slot taken through a [`SemGuard`] is recorded (holder pid) in a
//!   table inside the semaphore, in the same journaled step that takes it; a waiter that
//!   has slept for a while gives back the slots of dead holders. See [`Semaphore`].
//! - A [`Barrier`] records its waiters' pids; a waiter that finds one of them dead breaks
//!   the barrier ([`BrokenBarrier`]) instead of waiting forever.
//!
//! # Examples
//!
//! ```
//! use procactor_core::{Lock, Process, Value};
//!
//! fn add((lock, n): (Lock, Value<u64>)) {
//!     for _ in 0..1000 {
//!         let _g = lock.acquire().unwrap();
//!         *n.lock().unwrap() += 1;
//!     }
//! }
//!
//! fn main() {
//!     procactor_core::init();
//!     let lock = Lock::new().unwrap();
//!     let n = Value::new(0u64).unwrap();
//!     let mut ps: Vec<_> = (0..2)
//!         .map(|_| Process::new(add, (lock.clone(), n.clone())).start().unwrap())
//!         .collect();
//!     for p in &mut ps {
//!         p.join().unwrap();
//!     }
//!     assert_eq!(n.get().unwrap(), 2000);
//! }
//! ```

use crate::codec::{RecvFd, SendFd};
use crate::error::{BrokenBarrier, Error, LockError};
use procactor_transports::deadline::Deadline;
use procactor_transports::journal::Journal;
use procactor_transports::robust::{self, Acquired};
use procactor_transports::shm::ShmRegion;
use procactor_transports::waiter::{self, Os, Slept};
use procactor_transports::{os, OwnedFd};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------
// common plumbing

/// Every region starts with a magic word naming its kind, so that a handle of one kind
/// cannot be decoded as another.
const OFF_MAGIC: usize = 0;
const MAGIC_LOCK: u32 = 0x7061_6c6b; // "palk"
const MAGIC_RLOCK: u32 = 0x7061_726c;
const MAGIC_SEM: u32 = 0x7061_736d;
const MAGIC_BSEM: u32 = 0x7061_6273;
const MAGIC_EVENT: u32 = 0x7061_6576;
const MAGIC_COND: u32 = 0x7061_636e;
const MAGIC_BARRIER: u32 = 0x7061_6272;

/// Size of the fixed-size primitives' regions (one page on every Linux we run on).
const SMALL: usize = 4096;

fn create(name: &str, len: usize, magic: u32) -> Result<Arc<ShmRegion>, Error> {
    let r = ShmRegion::create(name, len)?;
    r.atomic_u32(OFF_MAGIC).store(magic, Ordering::Release);
    Ok(Arc::new(r))
}

fn map(fd: OwnedFd, min_len: usize, magic: u32, what: &str) -> Result<Arc<ShmRegion>, String> {
    let r = ShmRegion::from_fd(fd).map_err(|e| format!("cannot map a {what}: {e}"))?;
    if r.len() < min_len || r.atomic_u32(OFF_MAGIC).load(Ordering::Acquire) != magic {
        return Err(format!("the descriptor is not a procactor {what}"));
    }
    Ok(Arc::new(r))
}

fn passed(deadline: Option<Instant>) -> bool {
    Deadline::from(deadline).expired()
}

/// The end of a sleep that must look around (liveness checks) after `tick` at most:
/// `deadline`, or `tick` from now if that is sooner.
fn tick_end(deadline: Option<Instant>, tick: Duration) -> Option<Instant> {
    let wake_at = Instant::now() + tick;
    Some(deadline.map_or(wake_at, |d| d.min(wake_at)))
}

fn fmt_region(f: &mut std::fmt::Formatter<'_>, name: &str, r: &ShmRegion) -> std::fmt::Result {
    f.debug_struct(name)
        .field("region", r)
        .finish_non_exhaustive()
}

/// Serialize/Deserialize/Debug for a handle that is one region.
macro_rules! region_handle {
    ($t:ident, $magic:expr, $min:expr) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                SendFd(self.r.fd()).serialize(s)
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let RecvFd(fd) = RecvFd::deserialize(d)?;
                let r = map(fd, $min, $magic, stringify!($t)).map_err(D::Error::custom)?;
                Ok(Self { r })
            }
        }

        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                fmt_region(f, stringify!($t), &self.r)
            }
        }
    };
}

// ---------------------------------------------------------------------------------------
// Lock

const LOCK_WORD: usize = 8;

/// A mutual-exclusion lock shared by processes (Python's `multiprocessing.Lock`).
///
/// [`acquire`](Lock::acquire) returns a [`LockGuard`] that releases the lock on drop.
/// Ownership is per process: two threads of one process contend for it like two
/// processes (it is not re-entrant; see [`RLock`]). Uncontended acquire + release is one
/// atomic compare-exchange and one atomic swap, no system call.
///
/// If the holder dies, the next acquirer gets the lock with
/// [`Err(LockError::OwnerDied(guard))`](LockError::OwnerDied) instead of hanging (the
/// waiter notices within a fraction of a second).
///
/// # Examples
///
/// ```
/// use procactor_core::Lock;
/// use std::time::Duration;
///
/// let lock = Lock::new().unwrap();
/// let g = lock.acquire().unwrap();
/// let other = lock.clone(); // another handle (in a child, typically)
/// std::thread::spawn(move || {
///     assert!(other.try_acquire().unwrap().is_none());
///     assert!(other.acquire_timeout(Duration::from_millis(10)).unwrap().is_none());
/// })
/// .join()
/// .unwrap();
/// drop(g);
/// assert!(lock.try_acquire().unwrap().is_some());
/// ```
#[derive(Clone)]
pub struct Lock {
    r: Arc<ShmRegion>,
}

region_handle!(Lock, MAGIC_LOCK, 24);

/// A held [`Lock`]; releases it on drop.
pub struct LockGuard<'a> {
    lock: &'a Lock,
}

impl std::fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockGuard").finish_non_exhaustive()
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        robust::unlock(self.lock.word());
    }
}

type LockResult<G> = Result<G, LockError<G>>;

fn acquired<G>(how: Acquired, g: G) -> LockResult<G> {
    match how {
        Acquired::Clean => Ok(g),
        Acquired::OwnerDied => Err(LockError::OwnerDied(g)),
    }
}

/// An acquisition that may have timed out: `None` stays `Ok(None)`.
fn some<G>(r: Option<LockResult<G>>) -> TimedLockResult<G> {
    match r {
        None => Ok(None),
        Some(Ok(g)) => Ok(Some(g)),
        Some(Err(e)) => Err(e),
    }
}

/// The result of an acquisition with a deadline: `Ok(None)` when it ran out.
type TimedLockResult<G> = Result<Option<G>, LockError<G>>;

/// Unwraps an acquisition made without a deadline (which never gives `Ok(None)`).
fn forever<G>(mut f: impl FnMut() -> TimedLockResult<G>) -> LockResult<G> {
    loop {
        match f() {
            Ok(Some(g)) => return Ok(g),
            Ok(None) => continue,
            Err(e) => return Err(e),
        }
    }
}

impl Lock {
    /// A new, unlocked lock.
    ///
    /// # Errors
    ///
    /// The kernel refused the shared memory ([`Error::Io`]).
    pub fn new() -> Result<Self, Error> {
        Ok(Self {
            r: create("lock", SMALL, MAGIC_LOCK)?,
        })
    }

    fn word(&self) -> &AtomicU32 {
        self.r.atomic_u32(LOCK_WORD)
    }

    fn acquire_deadline(&self, deadline: Option<Instant>) -> TimedLockResult<LockGuard<'_>> {
        some(robust::lock(self.word(), deadline).map(|a| acquired(a, LockGuard { lock: self })))
    }

    /// Acquires the lock, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// [`LockError::OwnerDied`]: the previous holder died holding it; the lock is now
    /// held by the caller anyway (the guard is inside).
    pub fn acquire(&self) -> Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        forever(|| self.acquire_deadline(None))
    }

    /// Acquires the lock if it is free (or its holder is dead); `Ok(None)` if a live
    /// process holds it. A failed attempt checks the holder's liveness (a system call
    /// and a read of `/proc`, a few microseconds): poll with
    /// [`acquire_timeout`](Lock::acquire_timeout) rather than in a tight loop.
    ///
    /// # Errors
    ///
    /// As [`acquire`](Lock::acquire).
    pub fn try_acquire(&self) -> Result<Option<LockGuard<'_>>, LockError<LockGuard<'_>>> {
        some(robust::try_lock(self.word(), true).map(|a| acquired(a, LockGuard { lock: self })))
    }

    /// Acquires the lock, waiting at most `timeout`; `Ok(None)` when it ran out.
    ///
    /// # Errors
    ///
    /// As [`acquire`](Lock::acquire).
    pub fn acquire_timeout(
        &self,
        timeout: Duration,
    ) -> Result<Option<LockGuard<'_>>, LockError<LockGuard<'_>>> {
        self.acquire_deadline(Deadline::after(timeout).instant())
    }

    /// Whether some process holds the lock (advisory: it may change at once).
    pub fn is_locked(&self) -> bool {
        robust::owner(self.word()).is_some()
    }

    /// An identity shared by every handle to this lock (used by [`Condition`]).
    fn same_as(&self, other: &Lock) -> bool {
        let id = self.r.atomic_u64(IDENT).load(Ordering::Relaxed);
        Arc::ptr_eq(&self.r, &other.r)
            || (id != 0 && id == other.r.atomic_u64(IDENT).load(Ordering::Relaxed))
    }
}

/// Where a lock keeps a random identity, written lazily by [`Condition::new`].
const IDENT: usize = 16;

// ---------------------------------------------------------------------------------------
// RLock

const RLOCK_TID: usize = 12;
const RLOCK_COUNT: usize = 16;

static NEXT_THREAD: AtomicU32 = AtomicU32::new(1);
thread_local! {
    /// A number for this thread, unique within the process (never 0).
    static THREAD: u32 = NEXT_THREAD.fetch_add(1, Ordering::Relaxed).max(1);
}

fn thread_number() -> u32 {
    THREAD.with(|t| *t)
}

/// A re-entrant lock (Python's `multiprocessing.RLock`): the thread holding it may
/// acquire it again; it is released when every guard is dropped.
///
/// The owner is a *thread of a process*: the region stores the owner's pid, a
/// per-process thread number and the recursion count. Another thread of the same process
/// waits like another process does. A dead owner is detected as with [`Lock`].
///
/// # Examples
///
/// ```
/// use procactor_core::RLock;
///
/// let r = RLock::new().unwrap();
/// let a = r.acquire().unwrap();
/// let b = r.acquire().unwrap(); // same thread: no deadlock
/// assert_eq!(r.count(), 2);
/// drop(b);
/// drop(a);
/// assert_eq!(r.count(), 0);
/// ```
#[derive(Clone)]
pub struct RLock {
    r: Arc<ShmRegion>,
}

region_handle!(RLock, MAGIC_RLOCK, 20);

/// One level of a held [`RLock`]; the lock is released when the last one is dropped.
/// Not `Send`: it must be dropped by the owning thread.
pub struct RLockGuard<'a> {
    lock: &'a RLock,
    _not_send: PhantomData<*const ()>,
}

impl std::fmt::Debug for RLockGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RLockGuard").finish_non_exhaustive()
    }
}

impl Drop for RLockGuard<'_> {
    fn drop(&mut self) {
        let count = self.lock.r.atomic_u32(RLOCK_COUNT);
        let left = count.load(Ordering::Relaxed).saturating_sub(1);
        count.store(left, Ordering::Relaxed);
        if left == 0 {
            self.lock
                .r
                .atomic_u32(RLOCK_TID)
                .store(0, Ordering::Relaxed);
            robust::unlock(self.lock.word());
        }
    }
}

impl RLock {
    /// A new, unlocked re-entrant lock.
    ///
    /// # Errors
    ///
    /// The kernel refused the shared memory ([`Error::Io`]).
    pub fn new() -> Result<Self, Error> {
        Ok(Self {
            r: create("rlock", SMALL, MAGIC_RLOCK)?,
        })
    }

    fn word(&self) -> &AtomicU32 {
        self.r.atomic_u32(LOCK_WORD)
    }

    fn guard(&self) -> RLockGuard<'_> {
        RLockGuard {
            lock: self,
            _not_send: PhantomData,
        }
    }

    /// Re-enters if this thread owns the lock.
    fn reenter(&self) -> Option<RLockGuard<'_>> {
        if robust::held_by_this_process(self.word())
            && self.r.atomic_u32(RLOCK_TID).load(Ordering::Relaxed) == thread_number()
        {
            let c = self.r.atomic_u32(RLOCK_COUNT);
            c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
            return Some(self.guard());
        }
        None
    }

    fn took(&self, how: Acquired) -> LockResult<RLockGuard<'_>> {
        self.r
            .atomic_u32(RLOCK_TID)
            .store(thread_number(), Ordering::Relaxed);
        self.r.atomic_u32(RLOCK_COUNT).store(1, Ordering::Relaxed);
        acquired(how, self.guard())
    }

    fn acquire_deadline(&self, deadline: Option<Instant>) -> TimedLockResult<RLockGuard<'_>> {
        if let Some(g) = self.reenter() {
            return Ok(Some(g));
        }
        some(robust::lock(self.word(), deadline).map(|a| self.took(a)))
    }

    /// Acquires the lock (again, if this thread holds it), waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// [`LockError::OwnerDied`]: the previous owner died holding it; the caller holds it
    /// now anyway.
    pub fn acquire(&self) -> Result<RLockGuard<'_>, LockError<RLockGuard<'_>>> {
        forever(|| self.acquire_deadline(None))
    }

    /// Acquires the lock if it is free, held by this thread, or held by a dead owner;
    /// `Ok(None)` otherwise.
    ///
    /// # Errors
    ///
    /// As [`acquire`](RLock::acquire).
    pub fn try_acquire(&self) -> Result<Option<RLockGuard<'_>>, LockError<RLockGuard<'_>>> {
        if let Some(g) = self.reenter() {
            return Ok(Some(g));
        }
        some(robust::try_lock(self.word(), true).map(|a| self.took(a)))
    }

    /// Acquires the lock, waiting at most `timeout`; `Ok(None)` when it ran out.
    ///
    /// # Errors
    ///
    /// As [`acquire`](RLock::acquire).
    pub fn acquire_timeout(
        &self,
        timeout: Duration,
    ) -> Result<Option<RLockGuard<'_>>, LockError<RLockGuard<'_>>> {
        self.acquire_deadline(Deadline::after(timeout).instant())
    }

    /// The recursion depth of the current owner (0 when free; advisory).
    pub fn count(&self) -> u32 {
        if robust::owner(self.word()).is_none() {
            return 0;
        }
        self.r.atomic_u32(RLOCK_COUNT).load(Ordering::Relaxed)
    }
}

// ---------------------------------------------------------------------------------------
// Semaphore

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

// ---------------------------------------------------------------------------------------
// Event

const EVENT_FLAG: usize = 8;
const EVENT_WAITERS: usize = 12;

/// A flag processes can wait for (Python's `multiprocessing.Event`).
///
/// A waiter spins for a few tens of microseconds before sleeping, so a `set` wakes a
/// busy waiter on another core within a microsecond or so, and a sleeping one after the
/// kernel's wake-up time.
///
/// As in Python, a `set` releases every process waiting at that moment even if `clear`
/// follows at once: their `wait` returns, and `wait_timeout` returns the flag as it is
/// then (`false` after such a pulse, as Python's `wait(timeout)` does).
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

    /// Waits until the flag is set (or a `set` happened since the call, see above).
    pub fn wait(&self) {
        self.wait_deadline(None);
    }

    /// Waits at most `timeout` for the flag (Python's `wait(timeout)`): `true` if it was
    /// set when called or a `set` happened during the wait (even if a `clear` followed,
    /// as Python's `Event.wait` returns `True` then), `false` on timeout.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_deadline(Deadline::after(timeout).instant())
    }
}

// ---------------------------------------------------------------------------------------
// Condition

const COND_SEQ: usize = 8;
const COND_WAITERS: usize = 12;

/// A condition variable over a [`Lock`], shared by processes (Python's
/// `multiprocessing.Condition`, `std::sync::Condvar`).
///
/// Wait with the guard of the lock given to [`new`](Condition::new): the lock is
/// released while waiting and re-acquired before returning. Notify while holding that
/// lock, after changing the shared state the waiters test, and no wake-up is lost.
/// Waits may wake spuriously: test the state in a loop, or use
/// [`wait_while`](Condition::wait_while).
///
/// # Examples
///
/// ```
/// use procactor_core::{Condition, Lock, Process, Value};
/// use std::time::Duration;
///
/// fn producer((cond, ready): (Condition, Value<u8>)) {
///     let _g = cond.lock().acquire().unwrap();
///     ready.set(1).unwrap();
///     cond.notify_all();
/// }
///
/// fn main() {
///     procactor_core::init();
///     let lock = Lock::new().unwrap();
///     let cond = Condition::new(&lock).unwrap();
///     let ready = Value::new(0u8).unwrap();
///     let g = lock.acquire().unwrap();
///     let mut p = Process::new(producer, (cond.clone(), ready.clone())).start().unwrap();
///     let (g, ok) = cond
///         .wait_timeout_while(g, Duration::from_secs(30), || ready.get().unwrap() == 0)
///         .unwrap();
///     assert!(ok);
///     drop(g);
///     p.join().unwrap();
/// }
/// ```
#[derive(Clone)]
pub struct Condition {
    r: Arc<ShmRegion>,
    lock: Lock,
}

impl Serialize for Condition {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (SendFd(self.r.fd()), &self.lock).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Condition {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (RecvFd(fd), lock) = <(RecvFd, Lock)>::deserialize(d)?;
        let r = map(fd, 16, MAGIC_COND, "Condition").map_err(D::Error::custom)?;
        Ok(Self { r, lock })
    }
}

impl std::fmt::Debug for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fmt_region(f, "Condition", &self.r)
    }
}

impl Condition {
    /// A condition variable over `lock` (the condition keeps a handle to it).
    ///
    /// # Errors
    ///
    /// The kernel refused the shared memory ([`Error::Io`]).
    pub fn new(lock: &Lock) -> Result<Self, Error> {
        let ident = lock.r.atomic_u64(IDENT);
        if ident.load(Ordering::Relaxed) == 0 {
            let id = crate::runtime::random_token() | 1;
            let _ = ident.compare_exchange(0, id, Ordering::Relaxed, Ordering::Relaxed);
        }
        Ok(Self {
            r: create("condition", SMALL, MAGIC_COND)?,
            lock: lock.clone(),
        })
    }

    /// The lock this condition works with.
    pub fn lock(&self) -> &Lock {
        &self.lock
    }

    fn seq(&self) -> &AtomicU32 {
        self.r.atomic_u32(COND_SEQ)
    }

    /// Releases `guard`'s lock, sleeps until notified or `deadline`, re-acquires it.
    /// The flag says whether it was woken (or saw a notification) before the deadline.
    fn wait_deadline<'a>(
        &self,
        guard: LockGuard<'a>,
        deadline: Option<Instant>,
    ) -> (Result<LockGuard<'a>, LockError<LockGuard<'a>>>, bool) {
        let lock = guard.lock;
        if !lock.same_as(&self.lock) {
            tracing::warn!("Condition::wait with the guard of a lock other than the condition's");
        }
        let seq = self.seq();
        let waiters = self.r.atomic_u32(COND_WAITERS);
        // read under the lock: a notification after this changes the word (notifiers
        // bump it whether or not anyone is counted), so none is missed once it is read
        let s = seq.load(Ordering::SeqCst);
        drop(guard);
        let slept = waiter::sleep(&Os, seq, waiters, &mut |w| w != s, deadline);
        (lock.acquire(), slept != Slept::TimedOut)
    }

    /// Releases the lock, waits for a notification, re-acquires the lock.
    ///
    /// # Errors
    ///
    /// [`LockError::OwnerDied`] when re-acquiring found the lock's holder dead (the lock
    /// is held anyway: the guard is inside).
    pub fn wait<'a>(
        &self,
        guard: LockGuard<'a>,
    ) -> Result<LockGuard<'a>, LockError<LockGuard<'a>>> {
        self.wait_deadline(guard, None).0
    }

    /// As [`wait`](Condition::wait), for at most `timeout`; the flag is `false` when the
    /// time ran out without a notification (Python's `wait(timeout)` result).
    ///
    /// # Errors
    ///
    /// As [`wait`](Condition::wait).
    pub fn wait_timeout<'a>(
        &self,
        guard: LockGuard<'a>,
        timeout: Duration,
    ) -> Result<(LockGuard<'a>, bool), LockError<(LockGuard<'a>, bool)>> {
        match self.wait_deadline(guard, Deadline::after(timeout).instant()) {
            (Ok(g), woken) => Ok((g, woken)),
            (Err(LockError::OwnerDied(g)), woken) => Err(LockError::OwnerDied((g, woken))),
        }
    }

    /// Waits while `condition()` is true (tested with the lock held), like
    /// `std::sync::Condvar::wait_while` (Python's `wait_for(not condition)`).
    ///
    /// # Errors
    ///
    /// As [`wait`](Condition::wait); it returns at once on that error, without testing
    /// the condition again.
    pub fn wait_while<'a>(
        &self,
        mut guard: LockGuard<'a>,
        mut condition: impl FnMut() -> bool,
    ) -> Result<LockGuard<'a>, LockError<LockGuard<'a>>> {
        while condition() {
            guard = self.wait(guard)?;
        }
        Ok(guard)
    }

    /// As [`wait_while`](Condition::wait_while), for at most `timeout`; the flag is
    /// `true` when the condition became false, `false` when the time ran out first.
    ///
    /// # Errors
    ///
    /// As [`wait_while`](Condition::wait_while).
    pub fn wait_timeout_while<'a>(
        &self,
        mut guard: LockGuard<'a>,
        timeout: Duration,
        mut condition: impl FnMut() -> bool,
    ) -> Result<(LockGuard<'a>, bool), LockError<(LockGuard<'a>, bool)>> {
        let deadline = Deadline::after(timeout).instant();
        loop {
            if !condition() {
                return Ok((guard, true));
            }
            if passed(deadline) {
                return Ok((guard, false));
            }
            match self.wait_deadline(guard, deadline) {
                (Ok(g), _) => guard = g,
                (Err(LockError::OwnerDied(g)), _) => {
                    let done = !condition();
                    return Err(LockError::OwnerDied((g, done)));
                }
            }
        }
    }

    /// Wakes at most `n` of the waiters that are asleep. A waiter that has released the
    /// lock in `wait` but not yet fallen asleep also returns (like a spurious wake-up of
    /// `std::sync::Condvar`), so more than `n` `wait`s may return: wait for a condition
    /// with [`wait_while`](Condition::wait_while), not for a number of notifications.
    pub fn notify(&self, n: usize) {
        self.seq().fetch_add(1, Ordering::SeqCst);
        // (any count above i32::MAX wakes all)
        let n = u32::try_from(n).unwrap_or(waiter::ALL);
        waiter::wake(&Os, self.seq(), self.r.atomic_u32(COND_WAITERS), n);
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        self.seq().fetch_add(1, Ordering::SeqCst);
        waiter::wake(
            &Os,
            self.seq(),
            self.r.atomic_u32(COND_WAITERS),
            waiter::ALL,
        );
    }
}

// ---------------------------------------------------------------------------------------
// Barrier

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
        // leave: a reaper may already have cleared our slot only if we were dead, so
        // it is still ours
        if let Some(i) = slot {
            if l.slot(i).load(Ordering::Relaxed) == me {
                l.slot(i).store(0, Ordering::Relaxed);
            }
        }
        l.set_count(l.count().saturating_sub(1));
        l.exit_check();
        res
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

    use crate::codec::round_trip;

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
    fn handles_of_the_wrong_kind_are_refused() {
        let l = Lock::new().unwrap();
        assert!(round_trip::<Lock>(&l).is_ok());
        assert!(round_trip::<RLock>(&l).is_err());
        assert!(round_trip::<Event>(&l).is_err());
        let s = Semaphore::new(1).unwrap();
        assert!(round_trip::<BoundedSemaphore>(&s).is_err());
        assert!(round_trip::<Semaphore>(&s).is_ok());
        let c = Condition::new(&l).unwrap();
        let c2: Condition = round_trip(&c).unwrap();
        assert!(c2.lock().same_as(&l));
        assert!(!Lock::new().unwrap().same_as(&l));
        assert!(round_trip::<Barrier>(&l).is_err());
        assert!(round_trip::<Barrier>(&Barrier::new(3).unwrap()).is_ok());
    }

    #[test]
    fn rlock_is_exclusive_between_threads() {
        let r = RLock::new().unwrap();
        let g = r.acquire().unwrap();
        let g2 = r.try_acquire().unwrap().unwrap();
        let r2 = r.clone();
        std::thread::spawn(move || {
            assert!(r2.try_acquire().unwrap().is_none());
            assert!(r2
                .acquire_timeout(Duration::from_millis(10))
                .unwrap()
                .is_none());
        })
        .join()
        .unwrap();
        drop(g2);
        drop(g);
        let r2 = r.clone();
        std::thread::spawn(move || assert!(r2.try_acquire().unwrap().is_some()))
            .join()
            .unwrap();
    }

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
            "a set during the wait is reported even if cleared since, as Python's \
             wait(timeout) returns True"
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

    #[test]
    fn barrier_rejects_zero_parties() {
        assert!(matches!(Barrier::new(0), Err(Error::InvalidArgument(_))));
    }
}
