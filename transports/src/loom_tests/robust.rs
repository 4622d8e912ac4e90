//! The real robust lock ([`crate::robust`]: `try_lock_in`, `lock_contended_in`,
//! `take_over_if_dead`, `unlock_in`) under loom, in the [`Model`] environment: one lock
//! identity per thread, a dead owner as a thread that stops while holding the lock
//! ([`model::die`]), the futex modelled as the kernel's (see [`model`]).
//!
//! Covered: the uncontended CAS, the sleeping loop (waiters bit, futex wait with the
//! value seen, retry), unlock's wake of one sleeper, the takeover of a dead owner. Not
//! covered here: the spin phase (it retries the same CAS; disabled in the model, where a
//! spin loop would be an unbounded number of steps) and the OS liveness check itself
//! (`incarnation_alive`, tested on real processes in `tests/hostile.rs`).

use super::model::{self, AtomicU32, Model};
use crate::robust::{self, Acquired};
use loom::sync::Arc;
use std::sync::atomic::Ordering;

struct Lock {
    word: AtomicU32,
    /// What the lock protects: a count of threads inside, checked for exclusion.
    inside: AtomicU32,
}

impl Lock {
    fn new() -> Arc<Lock> {
        Arc::new(Lock {
            word: AtomicU32::new(0),
            inside: AtomicU32::new(0),
        })
    }

    /// As the ring and `pod` take a lock: one try, then the contended path.
    fn lock(&self) -> Acquired {
        robust::try_lock_in(&Model, &self.word, false)
            .or_else(|| robust::lock_contended_in(&Model, &self.word, None))
            .expect("no deadline: the lock is taken")
    }

    fn unlock(&self) {
        robust::unlock_in(&Model, &self.word);
    }

    fn critical_section(&self) {
        assert_eq!(self.inside.fetch_add(1, Ordering::Relaxed), 0, "two owners");
        assert_eq!(self.inside.fetch_sub(1, Ordering::Relaxed), 1, "two owners");
    }
}

/// Two contenders and the main thread: mutual exclusion, and no sleeper is left behind
/// (a lost wake-up is a loom deadlock).
#[test]
fn loom_robust_lock_excludes_and_wakes_every_contender() {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(|| {
        let l = Lock::new();
        let ts: Vec<_> = (0..2)
            .map(|_| {
                let l = l.clone();
                loom::thread::spawn(move || {
                    assert_eq!(l.lock(), Acquired::Clean, "nobody died");
                    l.critical_section();
                    l.unlock();
                })
            })
            .collect();
        assert_eq!(l.lock(), Acquired::Clean);
        l.critical_section();
        l.unlock();
        for t in ts {
            t.join().unwrap();
        }
        assert_eq!(l.word.load(Ordering::SeqCst), 0);
    });
}

/// The main thread takes the lock and dies holding it (its identity is reported dead
/// while two others contend, in every order loom explores): exactly one contender takes
/// the lock over and is told so, the other then gets it cleanly, they exclude each
/// other, and nobody is left asleep.
#[test]
fn loom_robust_lock_a_dead_owner_is_taken_over_once() {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(|| {
        let l = Lock::new();
        assert_eq!(l.lock(), Acquired::Clean);
        let ts: Vec<_> = (0..2)
            .map(|_| {
                let l = l.clone();
                loom::thread::spawn(move || {
                    let a = l.lock();
                    l.critical_section();
                    l.unlock();
                    a
                })
            })
            .collect();
        // the owner stops while holding: it never unlocks
        model::die();
        let got: Vec<Acquired> = ts.into_iter().map(|t| t.join().unwrap()).collect();
        let takeovers = got.iter().filter(|a| **a == Acquired::OwnerDied).count();
        assert_eq!(takeovers, 1, "{got:?}");
        assert_eq!(l.word.load(Ordering::SeqCst), 0);
    });
}

/// A living owner is never taken over, also by a contender that checks (`try_lock` with
/// `check_owner`, as a reader checking a writer mid-stream does): until it unlocks, every
/// try fails; then one succeeds cleanly.
#[test]
fn loom_robust_lock_a_living_owner_is_not_taken_over() {
    loom::model(|| {
        let l = Lock::new();
        assert_eq!(l.lock(), Acquired::Clean);
        let l2 = l.clone();
        let t = loom::thread::spawn(move || loop {
            match robust::try_lock_in(&Model, &l2.word, true) {
                Some(a) => {
                    l2.critical_section();
                    l2.unlock();
                    return a;
                }
                None => loom::thread::yield_now(),
            }
        });
        l.critical_section();
        l.unlock();
        assert_eq!(t.join().unwrap(), Acquired::Clean);
    });
}
