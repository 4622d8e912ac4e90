//! Cross-process synchronisation: [`Lock`], [`RLock`], [`Semaphore`],
//! [`BoundedSemaphore`], [`Event`], [`Condition`], [`Barrier`] (Python's
//! `multiprocessing.Lock` … `Barrier`).
//!
//! Each is a small anonymous shared-memory region of atomics, driven by futexes: an
//! uncontended operation makes no system call. Handles are cheap to clone and travel to
//! children inside a [`Process`](crate::Process)'s arguments (or through a Pipe).
//!
//! Blocking operations come as `x` (wait as long as it takes), `try_x` (never waits) and
//! `x_timeout(Duration)`; the waits also come as futures, on any executor:
//! `acquire_async` ([`Lock`], [`RLock`], [`Semaphore`], [`BoundedSemaphore`]),
//! [`Event::wait_async`], [`Barrier::wait_async`], [`Condition::wait_async`] (a timeout
//! is the runtime's own, such as `tokio::time::timeout`; each method's `# Cancel safety`
//! section says what dropping it does).
//!
//! # Dead processes never leave others hanging
//!
//! - A lock word stores its owner's pid (and, for [`RLock`], a thread number); a waiter
//!   that has slept for a while checks whether the owner is alive and takes the lock
//!   over if not. The new owner is told: [`Err(LockError::OwnerDied(guard))`](
//!   crate::error::LockError::OwnerDied), with the lock held.
//! - A [`Semaphore`] slot taken through a [`SemGuard`] is recorded (holder pid) in a
//!   table inside the semaphore, in the same journaled step that takes it; a waiter that
//!   has slept for a while gives back the slots of dead holders. See [`Semaphore`].
//! - A [`Barrier`] records its waiters' pids; a waiter that finds one of them dead breaks
//!   the barrier ([`BrokenBarrier`](crate::error::BrokenBarrier)) instead of waiting forever.
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

// One primitive (or one family) per file. `region` is the leaf every other file builds
// on (the shared-memory region, its magic word, the serde/Debug of a one-region handle);
// `lock` holds what every lock-like acquisition shares; `condition` builds on `lock`.
// No file imports one that imports it back.
mod barrier;
mod condition;
mod event;
mod lock;
mod region;
mod rlock;
mod semaphore;

pub use barrier::Barrier;
pub use condition::Condition;
pub use event::Event;
pub use lock::{Lock, LockGuard};
pub use rlock::{RLock, RLockGuard};
pub use semaphore::{BoundedSemaphore, SemGuard, Semaphore};

#[cfg(test)]
mod tests {
    use super::*;

    use crate::codec::round_trip;

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
}
