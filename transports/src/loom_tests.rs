//! Model checks under loom (`RUSTFLAGS="--cfg loom" cargo test -p procactor-transports
//! --release --lib loom`): the real [`journal`](crate::journal),
//! [`waiter`](crate::waiter), [`robust`](crate::robust) and [`ring`](crate::ring) code,
//! on threads over heap memory, with the futex behind the [`Futex`] trait, in every
//! interleaving loom explores (within the stated preemption bounds). [`model`] is the
//! world they run in; [`robust`](mod@robust) and [`ring`](mod@ring) hold the lock's and the
//! ring's checks.

pub(crate) mod model;
mod ring;
mod robust;

use crate::futex::WaitOutcome;
use crate::journal::{Journal, Words};
use crate::waiter::{self, Futex};
use loom::sync::atomic::{AtomicU32, AtomicU64};
use loom::sync::{Arc, Condvar, Mutex};
use std::sync::atomic::Ordering;
use std::time::Instant;

/// A futex made of a mutex and a condition variable: the value check and the sleep are
/// atomic with respect to a wake-up (the kernel's hash-bucket lock). A lost wake-up
/// leaves a thread asleep forever, which loom reports as a deadlock. Waking `n` wakes
/// `n` sleepers (`notify_one` each; loom's condition variable has no spurious
/// wake-ups), so a model with a wake of fewer than all uses one futex per word.
struct ModelFutex {
    m: Mutex<()>,
    cv: Condvar,
}

impl ModelFutex {
    fn new() -> Self {
        ModelFutex {
            m: Mutex::new(()),
            cv: Condvar::new(),
        }
    }
}

impl Futex for ModelFutex {
    type Word = AtomicU32;
    fn fence(&self, order: Ordering) {
        loom::sync::atomic::fence(order);
    }
    fn wait(&self, word: &AtomicU32, expected: u32, _deadline: Option<Instant>) -> WaitOutcome {
        let g = self.m.lock().unwrap();
        if word.load(Ordering::SeqCst) == expected {
            drop(self.cv.wait(g).unwrap());
            WaitOutcome::Woken
        } else {
            WaitOutcome::Changed
        }
    }
    fn wake(&self, _word: &AtomicU32, n: u32) {
        let _g = self.m.lock().unwrap();
        if n >= i32::MAX as u32 {
            self.cv.notify_all();
        } else {
            for _ in 0..n {
                self.cv.notify_one();
            }
        }
    }
}

struct Handshake {
    data: AtomicU64,
    seq: AtomicU32,
    waiters: AtomicU32,
    fx: ModelFutex,
}

fn wait_for_data(h: &Handshake) {
    let mut ready = || h.data.load(Ordering::Acquire) != 0;
    while !ready() {
        if waiter::sleep_registered(&h.fx, &h.seq, &h.waiters, &mut ready, None) {
            break;
        }
    }
}

#[test]
fn loom_waiter_handshake_never_loses_a_wakeup() {
    loom::model(|| {
        let h = Arc::new(Handshake {
            data: AtomicU64::new(0),
            seq: AtomicU32::new(0),
            waiters: AtomicU32::new(0),
            fx: ModelFutex::new(),
        });
        let h2 = h.clone();
        let w = loom::thread::spawn(move || wait_for_data(&h2));
        // the publisher: the release store a waiter's condition reads, then the wake
        h.data.store(1, Ordering::Release);
        waiter::wake_waiters(&h.fx, &h.seq, &h.waiters);
        w.join().unwrap();
    });
}

#[test]
fn loom_waiter_handshake_wakes_two_waiters() {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(|| {
        let h = Arc::new(Handshake {
            data: AtomicU64::new(0),
            seq: AtomicU32::new(0),
            waiters: AtomicU32::new(0),
            fx: ModelFutex::new(),
        });
        let ws: Vec<_> = (0..2)
            .map(|_| {
                let h = h.clone();
                loom::thread::spawn(move || wait_for_data(&h))
            })
            .collect();
        h.data.store(1, Ordering::Release);
        waiter::wake_waiters(&h.fx, &h.seq, &h.waiters);
        for w in ws {
            w.join().unwrap();
        }
    });
}

/// The control: a handshake done wrong (the waiter reads the sequence word before it
/// registers; the publisher checks the count with no fence) loses a wake-up, and loom
/// finds it — so the models above can fail. Loom reports it as a deadlock and then
/// aborts the process, so the control runs in a child process (this test binary).
#[test]
fn loom_a_broken_handshake_is_caught_by_the_model() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "loom_tests::broken_handshake_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "loom missed the lost wake-up");
    assert!(err.contains("deadlock"), "{err}");
}

#[test]
#[ignore = "the child of loom_a_broken_handshake_is_caught_by_the_model"]
fn broken_handshake_child() {
    loom::model(|| {
        let h = Arc::new(Handshake {
            data: AtomicU64::new(0),
            seq: AtomicU32::new(0),
            waiters: AtomicU32::new(0),
            fx: ModelFutex::new(),
        });
        let h2 = h.clone();
        let w = loom::thread::spawn(move || {
            // a waiter that reads the sequence word before registering
            let ready = || h2.data.load(Ordering::Acquire) != 0;
            while !ready() {
                let s = h2.seq.load(Ordering::SeqCst);
                if ready() {
                    break;
                }
                h2.waiters.fetch_add(1, Ordering::SeqCst);
                h2.fx.wait(&h2.seq, s, None);
                h2.waiters.fetch_sub(1, Ordering::SeqCst);
            }
        });
        h.data.store(1, Ordering::Release);
        if h.waiters.load(Ordering::Relaxed) > 0 {
            h.fx.wake(&h.seq, waiter::ALL);
        }
        w.join().unwrap();
    });
}

/// A semaphore in miniature on the value-word path ([`waiter::sleep`] on the count
/// itself, [`waiter::wake`] of one sleeper per slot given): two takers find no slot and
/// sleep, the giver gives two slots one at a time, waking one sleeper each. Both takers
/// get a slot: a wake of one is never lost nor wasted on a taker that already has its
/// slot (a taker woken for a slot another took sleeps again, and the slot it leaves is
/// the one the other was woken for).
#[test]
fn loom_value_word_wake_one_per_slot_wakes_every_taker() {
    struct Sem {
        count: AtomicU32,
        waiters: AtomicU32,
        fx: ModelFutex,
    }
    fn take(s: &Sem) {
        loop {
            let v = s.count.load(Ordering::Acquire);
            if v > 0 {
                if s.count
                    .compare_exchange(v, v - 1, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    return;
                }
                continue;
            }
            let _ = waiter::sleep(&s.fx, &s.count, &s.waiters, &mut |v| v != 0, None);
        }
    }
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(2);
    b.check(|| {
        let s = Arc::new(Sem {
            count: AtomicU32::new(0),
            waiters: AtomicU32::new(0),
            fx: ModelFutex::new(),
        });
        let ts: Vec<_> = (0..2)
            .map(|_| {
                let s = s.clone();
                loom::thread::spawn(move || take(&s))
            })
            .collect();
        for _ in 0..2 {
            s.count.fetch_add(1, Ordering::AcqRel);
            waiter::wake(&s.fx, &s.count, &s.waiters, 1);
        }
        for t in ts {
            t.join().unwrap();
        }
        assert_eq!(s.count.load(Ordering::Relaxed), 0);
    });
}

/// A condition variable in miniature (the `Condition` and `Barrier` path): the waiter
/// reads the notification counter under the lock, releases the lock and sleeps on the
/// counter until it moves; the notifier, under the lock, sets the state, bumps the
/// counter and wakes one sleeper if any is counted. The waiter always returns.
#[test]
fn loom_condition_notify_one_after_unlock_is_never_lost() {
    struct Cond {
        lock: Mutex<bool>,
        seq: AtomicU32,
        waiters: AtomicU32,
        fx: ModelFutex,
    }
    loom::model(|| {
        let c = Arc::new(Cond {
            lock: Mutex::new(false),
            seq: AtomicU32::new(0),
            waiters: AtomicU32::new(0),
            fx: ModelFutex::new(),
        });
        let c2 = c.clone();
        let notifier = loom::thread::spawn(move || {
            let mut g = c2.lock.lock().unwrap();
            *g = true;
            c2.seq.fetch_add(1, Ordering::SeqCst);
            waiter::wake(&c2.fx, &c2.seq, &c2.waiters, 1);
            drop(g);
        });
        loop {
            let g = c.lock.lock().unwrap();
            if *g {
                break;
            }
            let s = c.seq.load(Ordering::SeqCst);
            drop(g);
            let _ = waiter::sleep(&c.fx, &c.seq, &c.waiters, &mut |w| w != s, None);
        }
        notifier.join().unwrap();
    });
}

/// Heap words for the journal; a view whose owner "dies" after `budget` stores (every
/// later store of that view is lost, as for a process killed at that instruction).
struct Heap {
    words: Vec<AtomicU64>,
}

struct View {
    heap: Arc<Heap>,
    budget: std::cell::Cell<usize>,
}

impl Words for View {
    fn load(&self, off: usize, order: Ordering) -> u64 {
        self.heap.words[off / 8].load(order)
    }
    fn store(&self, off: usize, v: u64, order: Ordering) {
        if self.budget.get() == 0 {
            return; // dead
        }
        self.budget.set(self.budget.get() - 1);
        self.heap.words[off / 8].store(v, order);
    }
    fn fence(&self, order: Ordering) {
        if self.budget.get() > 0 {
            loom::sync::atomic::fence(order);
        }
    }
}

// layout: state at 0, journal words at 8 and 16, the state it guards: `count` at 24
// (stored first, relaxed) and `pos` at 32 (stored last, release), as the ring's
// `written` and `tail`
const J: Journal<2> = Journal::new(0, 8);
const COUNT: usize = 24;
const POS: usize = 32;

fn apply(v: &View) -> impl Fn([u64; 2]) + '_ {
    move |[pos, count]| {
        v.store(COUNT, count, Ordering::Relaxed);
        v.store(POS, pos, Ordering::Release);
    }
}

/// A committer killed after any number of its stores, a reader of the published state
/// running meanwhile, and the next owner recovering: the reader never sees the new
/// `pos` without the new `count`, and after recovery the state is all old or all new.
#[test]
fn loom_journal_commit_killed_anywhere_is_recovered_whole() {
    // 2 journal words + state + 2 applied words + state cleared = 6 stores
    for budget in 0..=6 {
        loom::model(move || {
            let heap = Arc::new(Heap {
                words: (0..5).map(|_| AtomicU64::new(0)).collect(),
            });
            let h = heap.clone();
            let committer = loom::thread::spawn(move || {
                let v = View {
                    heap: h,
                    budget: std::cell::Cell::new(budget),
                };
                J.commit(&v, [100, 1], apply(&v));
            });
            let h = heap.clone();
            let reader = loom::thread::spawn(move || {
                let pos = h.words[POS / 8].load(Ordering::Acquire);
                let count = h.words[COUNT / 8].load(Ordering::Relaxed);
                assert!(pos == 0 || (pos == 100 && count == 1), "{pos} {count}");
            });
            committer.join().unwrap();
            // the next owner (the lock handed over by the join)
            let next = View {
                heap: heap.clone(),
                budget: std::cell::Cell::new(usize::MAX),
            };
            let recovered = J.apply_pending(&next, apply(&next));
            let state = (
                heap.words[POS / 8].load(Ordering::Relaxed),
                heap.words[COUNT / 8].load(Ordering::Relaxed),
            );
            assert!(state == (0, 0) || state == (100, 1), "{budget}: {state:?}");
            if budget >= 3 {
                // the journal was complete: the change is there
                assert_eq!(state, (100, 1), "{budget}");
            }
            assert_eq!(recovered, (3..6).contains(&budget), "{budget}");
            assert!(!J.is_pending(&next));
            reader.join().unwrap();
        });
    }
}

/// The ring's put/get protocol in miniature, with the real journal and waiter code: a
/// 4-word ring, records `[len, payload...]`, the writer publishing with a journaled
/// release store of `tail` and waking readers, the reader copying a record, then
/// committing `head` (release) and waking writers. Two 3-word messages force a wrap
/// and a wait for room on both sides. Every message arrives whole and in order; nobody
/// sleeps forever.
mod mini_ring {
    use super::*;

    const CAP: u64 = 4;
    // words: writer journal state 0, words 8..24; reader journal state 24, word 32;
    // tail 40, written 48, head 56
    const WJ: Journal<2> = Journal::new(0, 8);
    const RJ: Journal<1> = Journal::new(24, 32);
    const TAIL: usize = 40;
    const WRITTEN: usize = 48;
    const HEAD: usize = 56;

    struct Ring {
        heap: Heap,
        data: Vec<AtomicU64>,
        data_seq: AtomicU32,
        readers_waiting: AtomicU32,
        space_seq: AtomicU32,
        writers_waiting: AtomicU32,
        fx: ModelFutex,
    }

    impl Words for Heap {
        fn load(&self, off: usize, order: Ordering) -> u64 {
            self.words[off / 8].load(order)
        }
        fn store(&self, off: usize, v: u64, order: Ordering) {
            self.words[off / 8].store(v, order);
        }
        fn fence(&self, order: Ordering) {
            loom::sync::atomic::fence(order);
        }
    }

    impl Ring {
        fn push(&self, msg: &[u64]) {
            let tail = self.heap.load(TAIL, Ordering::Relaxed);
            let written = self.heap.load(WRITTEN, Ordering::Relaxed);
            let need = 1 + msg.len() as u64;
            let mut room =
                || CAP - tail.wrapping_sub(self.heap.load(HEAD, Ordering::Acquire)) >= need;
            while !room() {
                if waiter::sleep_registered(
                    &self.fx,
                    &self.space_seq,
                    &self.writers_waiting,
                    &mut room,
                    None,
                ) {
                    break;
                }
            }
            for (i, w) in std::iter::once(&(msg.len() as u64)).chain(msg).enumerate() {
                self.data[((tail + i as u64) % CAP) as usize].store(*w, Ordering::Relaxed);
            }
            WJ.commit(&self.heap, [tail + need, written + 1], |[t, w]| {
                self.heap.store(WRITTEN, w, Ordering::Relaxed);
                self.heap.store(TAIL, t, Ordering::Release);
            });
            waiter::wake_waiters(&self.fx, &self.data_seq, &self.readers_waiting);
        }

        fn pop(&self) -> Vec<u64> {
            let head = self.heap.load(HEAD, Ordering::Relaxed);
            let mut ready = || self.heap.load(TAIL, Ordering::Acquire).wrapping_sub(head) >= 1;
            while !ready() {
                if waiter::sleep_registered(
                    &self.fx,
                    &self.data_seq,
                    &self.readers_waiting,
                    &mut ready,
                    None,
                ) {
                    break;
                }
            }
            let word = |i: u64| self.data[((head + i) % CAP) as usize].load(Ordering::Relaxed);
            let len = word(0);
            // a record is published whole: its length never exceeds what `tail` covers
            let tail = self.heap.load(TAIL, Ordering::Acquire);
            assert!(len < CAP && tail.wrapping_sub(head) > len, "torn record");
            let out: Vec<u64> = (1..=len).map(word).collect();
            RJ.commit(&self.heap, [head + 1 + len], |[h]| {
                self.heap.store(HEAD, h, Ordering::Release);
            });
            waiter::wake_waiters(&self.fx, &self.space_seq, &self.writers_waiting);
            out
        }
    }

    #[test]
    fn loom_ring_put_get_wraps_waits_and_delivers_whole_messages_in_order() {
        let mut b = loom::model::Builder::new();
        b.preemption_bound = Some(3);
        b.check(|| {
            let r = Arc::new(Ring {
                heap: Heap {
                    words: (0..8).map(|_| AtomicU64::new(0)).collect(),
                },
                data: (0..CAP).map(|_| AtomicU64::new(0)).collect(),
                data_seq: AtomicU32::new(0),
                readers_waiting: AtomicU32::new(0),
                space_seq: AtomicU32::new(0),
                writers_waiting: AtomicU32::new(0),
                fx: ModelFutex::new(),
            });
            let w = r.clone();
            let writer = loom::thread::spawn(move || {
                w.push(&[11, 12]);
                w.push(&[21, 22]);
            });
            assert_eq!(r.pop(), vec![11, 12]);
            assert_eq!(r.pop(), vec![21, 22]);
            writer.join().unwrap();
            assert_eq!(r.heap.load(WRITTEN, Ordering::Relaxed), 2);
        });
    }
}

/// The decision on a streamed message's last piece ([`settle_fate`], the very code the
/// ring runs): the writer claims the last piece and then publishes it (its put returns
/// `Ok`), or, finding that the reader gave up, writes `ABORT` (and delivers the message
/// again); the reader, finding no piece, gives up unless the writer has claimed it, in
/// which case it waits for the piece. In every interleaving: the put returns `Ok`
/// exactly when the reader gets the message, and an `ABORT` comes only after a give-up.
#[test]
fn loom_a_message_given_up_on_mid_stream_is_never_reported_delivered() {
    use crate::ring::{settle_fate, stream_tag, FATE_CLAIMED, FATE_DROPPED};
    /// The message's number.
    const ID: u64 = 3;
    // the word starts as the previous message left it (delivered, or given up on)
    let prev = stream_tag(ID - 1);
    for before in [0, FATE_CLAIMED | prev, FATE_DROPPED | prev] {
        loom::model(move || {
            let fate = Arc::new(AtomicU64::new(before));
            // the record after the pieces taken: 0 none yet, 1 the last piece, 2 ABORT
            let next = Arc::new(AtomicU64::new(0));
            let (f2, n2) = (fate.clone(), next.clone());
            let writer = loom::thread::spawn(move || {
                if settle_fate(&*f2, ID, FATE_CLAIMED) {
                    n2.store(1, Ordering::Release);
                    true
                } else {
                    n2.store(2, Ordering::Release);
                    false
                }
            });
            let got = loop {
                match next.load(Ordering::Acquire) {
                    1 => break Some(true),
                    2 => break Some(false),
                    _ => {}
                }
                if settle_fate(&*fate, ID, FATE_DROPPED) {
                    break None;
                }
                // claimed: the last piece is coming
                loom::thread::yield_now();
            };
            let put_ok = writer.join().unwrap();
            match got {
                Some(true) => assert!(put_ok),
                Some(false) => panic!("an ABORT the reader did not ask for"),
                None => assert!(!put_ok, "the put returned Ok for a message given up on"),
            }
        });
    }
}
