//! The world the real [`robust`](crate::robust) and [`ring`](crate::ring) code runs in
//! under loom: loom atomics for the shared words, a futex modelled as the kernel's
//! (compare-and-queue atomic with respect to a wake-up, wake `n` wakes at most `n`
//! sleepers *on that word*), one lock identity per thread, and "processes" (threads) that
//! die.
//!
//! Time is not modelled: a timed futex wait never times out by the clock. It times out
//! only when a thread has died since this thread's last timeout on the same word (the
//! real waiters' timed sleeps exist to look for dead owners and writers; a sleeper that
//! nobody would wake stands for one whose timer runs out, once per death and word, so
//! that no loop spins forever).
//! A sleep that nobody ends leaves its thread asleep, which loom reports as a deadlock:
//! that is how a lost wake-up shows.

use crate::futex::WaitOutcome;
use crate::journal::Words;
use crate::waiter::{Futex, Word32};
use loom::sync::{Condvar, Mutex};
use std::cell::Cell;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64};

impl Word32 for AtomicU32 {
    fn load(&self, order: Ordering) -> u32 {
        AtomicU32::load(self, order)
    }
    fn fetch_add(&self, v: u32, order: Ordering) -> u32 {
        AtomicU32::fetch_add(self, v, order)
    }
    fn fetch_sub(&self, v: u32, order: Ordering) -> u32 {
        AtomicU32::fetch_sub(self, v, order)
    }
    fn compare_exchange(
        &self,
        current: u32,
        new: u32,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u32, u32> {
        AtomicU32::compare_exchange(self, current, new, success, failure)
    }
    fn swap(&self, v: u32, order: Ordering) -> u32 {
        AtomicU32::swap(self, v, order)
    }
}

// (`ring::FateWord` is implemented by the ring for its `AtomicU64`, which is loom's
// here.)

/// The kernel side: sleepers by word address, the dead identities, the death count.
struct Kernel {
    m: Mutex<State>,
    cv: Condvar,
}

#[derive(Default)]
struct State {
    /// Asleep: (word address, ticket), in arrival order.
    sleepers: Vec<(usize, u64)>,
    next_ticket: u64,
    /// Identities (bit `i` = identity `i + 1`) of threads that died.
    dead: u32,
    deaths: u32,
    next_id: u32,
}

loom::lazy_static! {
    static ref KERNEL: Kernel = Kernel {
        m: Mutex::new(State::default()),
        cv: Condvar::new(),
    };
}

loom::thread_local! {
    /// This thread's lock identity (0: not yet given).
    static ID: Cell<u32> = Cell::new(0);
    /// Deaths this thread's timed sleeps have already timed out for, by word address.
    static SEEN: std::cell::RefCell<Vec<(usize, u32)>> = std::cell::RefCell::new(Vec::new());
    /// The fail point at which this thread dies (see [`fail_point`]).
    static KILL_AT: Cell<Option<&'static str>> = Cell::new(None);
    /// Set while this thread unwinds from its death: its lock guards release nothing.
    static DYING: Cell<bool> = Cell::new(false);
}

/// The modelled environment: [`Futex`] and [`robust::Owners`](crate::robust::Owners).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Model;

/// The environment the ring uses under loom.
pub(crate) const FX: Model = Model;

/// This thread's identity (given on first use: 1, 2, … in order of first use).
pub(crate) fn me() -> u32 {
    ID.with(|id| {
        if id.get() == 0 {
            let mut k = KERNEL.m.lock().unwrap();
            k.next_id += 1;
            assert!(k.next_id < 32, "model: too many identities");
            id.set(k.next_id);
        }
        id.get()
    })
}

/// This thread "dies": its identity counts as dead from now on, and every timed sleeper
/// gets one timeout (its owner check). The thread itself must stop touching shared
/// state (return, or unwind from [`fail_point`]).
pub(crate) fn die() {
    let id = me();
    let mut k = KERNEL.m.lock().unwrap();
    k.dead |= 1 << (id - 1);
    k.deaths += 1;
    KERNEL.cv.notify_all();
}

/// Deaths this thread's timed sleeps on the word at `addr` have timed out for.
fn seen(addr: usize) -> u32 {
    SEEN.with(|s| s.borrow().iter().find(|e| e.0 == addr).map_or(0, |e| e.1))
}

fn set_seen(addr: usize, deaths: u32) {
    SEEN.with(|s| {
        let mut s = s.borrow_mut();
        match s.iter_mut().find(|e| e.0 == addr) {
            Some(e) => e.1 = deaths,
            None => s.push((addr, deaths)),
        }
    });
}

impl Futex for Model {
    type Word = AtomicU32;
    fn fence(&self, order: Ordering) {
        loom::sync::atomic::fence(order);
    }
    fn wait(&self, word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> WaitOutcome {
        let addr = word as *const AtomicU32 as usize;
        let mut k = KERNEL.m.lock().unwrap();
        if word.load(Ordering::SeqCst) != expected {
            return WaitOutcome::Changed;
        }
        let seen = seen(addr);
        let timed_out = |k: &State| deadline.is_some() && k.deaths > seen;
        if timed_out(&k) {
            set_seen(addr, k.deaths);
            return WaitOutcome::TimedOut;
        }
        let ticket = k.next_ticket;
        k.next_ticket += 1;
        k.sleepers.push((addr, ticket));
        loop {
            k = KERNEL.cv.wait(k).unwrap();
            let Some(i) = k.sleepers.iter().position(|s| s.1 == ticket) else {
                return WaitOutcome::Woken; // a waker took us off the queue
            };
            if timed_out(&k) {
                k.sleepers.remove(i);
                set_seen(addr, k.deaths);
                return WaitOutcome::TimedOut;
            }
        }
    }
    fn wake(&self, word: &AtomicU32, n: u32) {
        let addr = word as *const AtomicU32 as usize;
        let mut k = KERNEL.m.lock().unwrap();
        let mut left = n;
        let mut woke = false;
        k.sleepers.retain(|s| {
            if left > 0 && s.0 == addr {
                left -= 1;
                woke = true;
                false
            } else {
                true
            }
        });
        if woke {
            KERNEL.cv.notify_all();
        }
    }
}

impl crate::robust::Owners for Model {
    fn me(&self) -> u32 {
        me()
    }
    fn owner_is_dead(&self, id: u32) -> bool {
        assert!((1..32).contains(&id), "model: identity {id} in a lock word");
        KERNEL.m.lock().unwrap().dead & (1 << (id - 1)) != 0
    }
    fn spin(&self) -> bool {
        false // a spin loop is an unbounded number of loom steps; sleeping is modelled
    }
}

/// The ring's memory under loom: the header's words as loom atomics (only the offsets
/// the ring uses below the producer slots, and 4 producer slots), the data bytes as plain
/// heap memory. Loom explores the interleavings of every header access; the byte copies
/// are plain (loom runs one thread at a time, so a torn message shows in the bytes a
/// reader gets, which the tests compare, but loom does not check the data bytes' memory
/// ordering itself: that rests on the acquire/release pairs of the header words, which
/// it does check).
pub(crate) struct HeapRegion {
    u64s: Vec<AtomicU64>,
    u32s: Vec<(usize, AtomicU32)>,
    data: Box<[std::cell::UnsafeCell<u8>]>,
}

// SAFETY: the data bytes are only touched through raw pointers by the ring's copy
// routines, under its protocol (a byte is written only past `tail` by the writer-lock
// holder and read only before `tail` by the reader-lock holder); loom runs one thread at
// a time, so no two accesses are ever simultaneous.
unsafe impl Sync for HeapRegion {}

/// What the ring holds under loom.
pub(crate) type Region = Arc<HeapRegion>;

/// The header's `u32` words (every other header word is a `u64`).
const U32_OFFSETS: [usize; 12] = [0, 24, 384, 388, 392, 512, 516, 520, 640, 768, 904, 908];
/// `u64` words modelled: every 8-byte offset below the first producer slot (1024), and
/// 4 producer slots.
const U64_WORDS: usize = 1024 / 8 + 4;
const HEADER: usize = 4096;

impl HeapRegion {
    /// A region for a ring of `cap` data bytes.
    pub(crate) fn new(cap: usize) -> Region {
        Arc::new(HeapRegion {
            u64s: (0..U64_WORDS).map(|_| AtomicU64::new(0)).collect(),
            u32s: U32_OFFSETS
                .iter()
                .map(|&o| (o, AtomicU32::new(0)))
                .collect(),
            data: (0..HEADER + cap)
                .map(|_| std::cell::UnsafeCell::new(0))
                .collect(),
        })
    }

    /// The ring's data bytes.
    pub(crate) fn data_len(&self) -> usize {
        self.data.len() - HEADER
    }

    /// The `u32` word at `offset`.
    pub(crate) fn atomic_u32(&self, offset: usize) -> &AtomicU32 {
        match self.u32s.iter().find(|(o, _)| *o == offset) {
            Some((_, w)) => w,
            None => panic!("model: no u32 header word at {offset}"),
        }
    }

    /// The `u64` word at `offset`.
    pub(crate) fn atomic_u64(&self, offset: usize) -> &AtomicU64 {
        assert!(offset.is_multiple_of(8) && !U32_OFFSETS.contains(&offset));
        match self.u64s.get(offset / 8) {
            Some(w) => w,
            None => panic!("model: no u64 header word at {offset}"),
        }
    }

    /// The bytes, as the memory mapping's base (the header part is unused: its words
    /// are the atomics above).
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        std::cell::UnsafeCell::raw_get(self.data.as_ptr())
    }

    /// No overflow area under the model.
    pub(crate) fn map_window(
        &self,
        _offset: u64,
        _len: usize,
    ) -> io::Result<crate::shm::ShmWindow> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }

    /// Punching is a no-op on the heap.
    pub(crate) fn punch_hole(&self, _offset: u64, _len: u64) -> io::Result<()> {
        Ok(())
    }

    /// The region's size.
    pub(crate) fn allocated_bytes(&self) -> io::Result<u64> {
        Ok(self.data.len() as u64)
    }
}

impl Words for HeapRegion {
    fn load(&self, off: usize, order: Ordering) -> u64 {
        self.atomic_u64(off).load(order)
    }
    fn store(&self, off: usize, v: u64, order: Ordering) {
        self.atomic_u64(off).store(v, order);
    }
    fn fence(&self, order: Ordering) {
        loom::sync::atomic::fence(order);
    }
}

/// Makes this thread die at the fail point `name` (the next time it passes it).
pub(crate) fn kill_at(name: &'static str) {
    KILL_AT.with(|k| k.set(Some(name)));
}

/// The ring's fail points under loom: the thread dies at the one named by [`kill_at`]
/// (its identity is marked dead, it unwinds without releasing its locks, as a killed
/// process releases nothing).
pub(crate) fn fail_point(name: &'static str) {
    if KILL_AT.with(|k| k.get()) == Some(name) {
        KILL_AT.with(|k| k.set(None));
        DYING.with(|d| d.set(true));
        die();
        std::panic::resume_unwind(Box::new(Killed));
    }
}

/// The unwinding payload of a thread killed at a fail point.
#[derive(Debug)]
pub(crate) struct Killed;

/// Whether this thread is unwinding from its death.
pub(crate) fn dying() -> bool {
    DYING.with(|d| d.get())
}

/// See [`dying`].
pub(crate) fn set_dying(v: bool) {
    DYING.with(|d| d.set(v));
}

/// Runs `f` (a "process" that may be killed at a fail point): `Some` of its result if it
/// lived, `None` if it died.
pub(crate) fn run_process<T>(f: impl FnOnce() -> T) -> Option<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(v) => Some(v),
        Err(e) if e.is::<Killed>() => None,
        Err(e) => std::panic::resume_unwind(e),
    }
}
