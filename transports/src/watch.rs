//! Readiness for futures: wakes a [`Waker`] when a word in shared memory changes
//! ([`WordWatch`]) or a descriptor becomes readable or writable ([`FdWatch`]), with no
//! async runtime. The async face of procactor (`get_async`, `call_async`, …) is built on
//! these two and nothing else, so it runs under tokio, smol or `block_on` alike.
//!
//! # Words: one watcher thread per 127 words, no change to the synchronous paths
//!
//! A future that must wait for a word takes part in the very same handshake as a
//! thread that sleeps ([`crate::waiter`]): it counts itself in the word's waiter count,
//! re-checks its condition, and then, instead of sleeping on the word itself, hands
//! `(word, value seen)` to a *watcher thread*. The watcher sleeps on all the words it
//! was given at once (`futex_waitv(2)`, Linux 5.16+, up to 128 words per call: 127 plus
//! its own control word), and wakes the futures of a word when it is woken on it or
//! finds that it no longer holds the value seen. A publisher that sees a waiter counted
//! already wakes the word's sleepers: that now includes the watcher. So a publisher pays
//! nothing new (no flag to test, no descriptor to write), and a future pays one
//! registration (a lock and one `futex_wake` of the watcher's control word) per wait.
//! (A word changed with no wake-up at all is noticed only when the watcher next looks
//! at its table: the publishers' rule, wake when a waiter is counted, is what makes a
//! change seen at once.)
//! Watchers are started on demand: one for the first 127 distinct words watched at the
//! same time, another for the next 127, and so on; they stay (asleep) once started.
//!
//! A word is kept mapped by the watch itself (`Arc` of what holds it, given to
//! [`WordWatch::new`]), so the watcher can read it safely even if the future is leaked
//! with `mem::forget`.
//!
//! A publisher may wake only *one* sleeper (a semaphore's release, a lock's unlock). If
//! the watcher was the one woken and the future it woke for is dropped before it looked,
//! that wake-up would be lost for the others: a [`WordWatch`] dropped while fired and not
//! [`done`](WordWatch::done) passes the wake-up on (one `futex_wake` of the word).
//!
//! # Descriptors: one epoll thread
//!
//! [`FdWatch`] registers a duplicate of the descriptor (so that the caller closing its
//! own, or the number being reused, can never confuse the registration) with one
//! `epoll` instance and a thread waiting on it, one-shot: the waker is woken once per
//! arming.
//!
//! # Fork
//!
//! Watchers belong to the process that started them. A forked child that watches starts
//! its own (the parent's tables, and their locks, are never touched in the child).
//!
//! # Examples
//!
//! ```
//! use procactor_transports::watch::WordWatch;
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::sync::{Arc, Condvar, Mutex};
//! use std::task::{Wake, Waker};
//! use std::time::Duration;
//!
//! struct Flag(Mutex<bool>, Condvar);
//! impl Wake for Flag {
//!     fn wake(self: Arc<Self>) {
//!         *self.0.lock().unwrap() = true;
//!         self.1.notify_all();
//!     }
//! }
//! let flag = Arc::new(Flag(Mutex::new(false), Condvar::new()));
//! let word = Arc::new(AtomicU32::new(0));
//! let watch = WordWatch::new(word.clone(), |w| w, 0, None, &Waker::from(flag.clone()));
//! // a publisher stores, then wakes the word's sleepers (the watcher is one of them);
//! // `waiter::wake` does so when the waiter count (here 1: the future's) says so
//! let waiters = AtomicU32::new(1);
//! word.store(1, Ordering::SeqCst);
//! procactor_transports::waiter::wake(&procactor_transports::waiter::Os, &word, &waiters, 1);
//! let woken = flag.1.wait_timeout_while(flag.0.lock().unwrap(), Duration::from_secs(10), |w| !*w);
//! assert!(*woken.unwrap().0);
//! assert!(watch.fired());
//! ```

use crate::futex::{self, AnyOutcome, AnyWord, WAIT_ANY_MAX};
use rustix::event::epoll;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Waker;
use std::time::Instant;

/// How many shared words one watcher thread watches (one slot of `futex_waitv` is its
/// own control word).
const PER_WATCHER: usize = WAIT_ANY_MAX - 1;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // a panic while holding these locks cannot leave their tables half-updated in a way
    // that matters (entries are inserted or removed whole)
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A word and what keeps it mapped.
trait Word: Send + Sync {
    fn word(&self) -> &AtomicU32;
}

struct Picked<H: ?Sized, F>(Arc<H>, F);

impl<H, F> Word for Picked<H, F>
where
    H: Send + Sync + ?Sized,
    F: Fn(&H) -> &AtomicU32 + Send + Sync,
{
    fn word(&self) -> &AtomicU32 {
        (self.1)(&self.0)
    }
}

struct Entry {
    word: Arc<dyn Word>,
    expected: u32,
    recheck: Option<Instant>,
    waker: Waker,
    fired: Arc<AtomicBool>,
}

/// One watcher thread and its table.
struct Watcher {
    /// Bumped and woken on every change of the table.
    ctl: AtomicU32,
    table: Mutex<HashMap<u64, Entry>>,
}

/// The process's watchers, and which one watches each address.
struct Words {
    pid: u32,
    next_id: AtomicU64,
    assign: Mutex<Assign>,
}

#[derive(Default)]
struct Assign {
    watchers: Vec<(Arc<Watcher>, usize)>,
    /// address → (watcher index, how many entries watch it)
    by_addr: HashMap<usize, (usize, usize)>,
}

static WORDS: AtomicPtr<Words> = AtomicPtr::new(std::ptr::null_mut());

/// This process's watchers (a fresh set in a forked child: the parent's are leaked
/// there, never locked).
fn words() -> &'static Words {
    let pid = crate::os::current_pid_cached();
    let cur = WORDS.load(Ordering::Acquire);
    // SAFETY: a non-null pointer in WORDS comes from `Box::leak` below and is never
    // freed: it is valid for the rest of the process.
    if let Some(w) = unsafe { cur.as_ref() } {
        if w.pid == pid {
            return w;
        }
    }
    let new: &'static mut Words = Box::leak(Box::new(Words {
        pid,
        next_id: AtomicU64::new(1),
        assign: Mutex::new(Assign::default()),
    }));
    match WORDS.compare_exchange(cur, new, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => new,
        // another thread installed one first: use it (ours is leaked: a few bytes, once)
        // SAFETY: as above, a non-null pointer in WORDS is leaked and valid for ever.
        Err(other) => unsafe { &*other },
    }
}

impl Words {
    /// The watcher for `addr` (the one that already watches it, else one with room,
    /// else a new one), counting one more entry on it.
    fn take(&self, addr: usize) -> io::Result<Arc<Watcher>> {
        let mut a = lock(&self.assign);
        if let Some((i, n)) = a.by_addr.get_mut(&addr) {
            *n += 1;
            let i = *i;
            return Ok(a.watchers[i].0.clone());
        }
        let i = match a.watchers.iter().position(|(_, n)| *n < PER_WATCHER) {
            Some(i) => i,
            None => {
                let w = Arc::new(Watcher {
                    ctl: AtomicU32::new(0),
                    table: Mutex::new(HashMap::new()),
                });
                let w2 = w.clone();
                std::thread::Builder::new()
                    .name("procactor-watch".into())
                    .spawn(move || run_watcher(&w2))?;
                a.watchers.push((w, 0));
                a.watchers.len() - 1
            }
        };
        a.watchers[i].1 += 1;
        a.by_addr.insert(addr, (i, 1));
        Ok(a.watchers[i].0.clone())
    }

    /// One entry fewer on `addr`.
    fn give_back(&self, addr: usize) {
        let mut a = lock(&self.assign);
        if let Some((i, n)) = a.by_addr.get_mut(&addr) {
            *n -= 1;
            if *n == 0 {
                let i = *i;
                a.by_addr.remove(&addr);
                a.watchers[i].1 -= 1;
            }
        }
    }
}

impl Watcher {
    /// Makes the thread look at its table again.
    fn poke(&self) {
        self.ctl.fetch_add(1, Ordering::SeqCst);
        futex::wake(&self.ctl, 1);
    }
}

fn run_watcher(w: &Watcher) {
    let mut wake = Vec::new();
    let mut list: Vec<AnyWord> = Vec::with_capacity(WAIT_ANY_MAX);
    let mut keep: Vec<Arc<dyn Word>> = Vec::with_capacity(WAIT_ANY_MAX);
    loop {
        list.clear();
        keep.clear();
        let ctl = w.ctl.load(Ordering::SeqCst);
        list.push(AnyWord {
            addr: &w.ctl,
            expected: ctl,
            // (woken by `futex::wake`, which uses the shared form)
            private: false,
        });
        let mut deadline: Option<Instant> = None;
        {
            let mut t = lock(&w.table);
            let mut now = None;
            for e in t.values_mut() {
                if e.fired.load(Ordering::Relaxed) {
                    continue;
                }
                let word = e.word.word();
                let cur = word.load(Ordering::SeqCst);
                let due = e
                    .recheck
                    .is_some_and(|r| *now.get_or_insert_with(Instant::now) >= r);
                if cur != e.expected || due {
                    e.fired.store(true, Ordering::Release);
                    wake.push(e.waker.clone());
                    continue;
                }
                if let Some(r) = e.recheck {
                    deadline = Some(deadline.map_or(r, |d| d.min(r)));
                }
                let addr: *const AtomicU32 = word;
                if !list.iter().any(|x| std::ptr::eq(x.addr, addr)) && list.len() < WAIT_ANY_MAX {
                    list.push(AnyWord {
                        addr,
                        expected: cur,
                        private: false,
                    });
                    // held until the wait returns: the word stays mapped while the kernel
                    // may read it, whatever its watch does meanwhile
                    keep.push(e.word.clone());
                }
            }
        }
        for k in wake.drain(..) {
            k.wake();
        }
        if let AnyOutcome::Woken(i) = futex::wait_any(&list, deadline) {
            if i > 0 {
                // woken on a word: every future on it looks (its value may be back to
                // what was seen, an A-B-A the rebuild would miss)
                let addr = list[i].addr;
                let mut t = lock(&w.table);
                for e in t.values_mut() {
                    if !e.fired.load(Ordering::Relaxed) && std::ptr::eq(e.word.word(), addr) {
                        e.fired.store(true, Ordering::Release);
                        wake.push(e.waker.clone());
                    }
                }
                drop(t);
                for k in wake.drain(..) {
                    k.wake();
                }
            }
        }
    }
}

/// A registration with a watcher thread: its waker is woken once the word no longer
/// holds `expected` (or the watcher is woken on it, or `recheck` passes). Dropping it
/// unregisters.
pub struct WordWatch {
    watcher: Arc<Watcher>,
    id: u64,
    addr: usize,
    word: Arc<dyn Word>,
    fired: Arc<AtomicBool>,
}

impl std::fmt::Debug for WordWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WordWatch")
            .field("id", &self.id)
            .field("fired", &self.fired())
            .finish()
    }
}

impl WordWatch {
    /// Watches the word `pick(&host)` (kept mapped by `host`, held by the watch) for a
    /// change from `expected`; `recheck`: fire anyway at that time (for liveness checks
    /// that no word announces).
    ///
    /// If no watcher thread can be started (the process is out of threads), the watch
    /// is born fired: the caller polls again at once rather than never.
    pub fn new<H, F>(
        host: Arc<H>,
        pick: F,
        expected: u32,
        recheck: Option<Instant>,
        waker: &Waker,
    ) -> WordWatch
    where
        H: Send + Sync + ?Sized + 'static,
        F: Fn(&H) -> &AtomicU32 + Send + Sync + 'static,
    {
        let word: Arc<dyn Word> = Arc::new(Picked(host, pick));
        let addr = word.word() as *const AtomicU32 as usize;
        let fired = Arc::new(AtomicBool::new(false));
        let words = words();
        let id = words.next_id.fetch_add(1, Ordering::Relaxed);
        let watcher = match words.take(addr) {
            Ok(w) => w,
            Err(_) => {
                fired.store(true, Ordering::Release);
                waker.wake_by_ref();
                // an inert watcher: nothing ever runs on it
                Arc::new(Watcher {
                    ctl: AtomicU32::new(0),
                    table: Mutex::new(HashMap::new()),
                })
            }
        };
        let watch = WordWatch {
            watcher,
            id,
            addr,
            word: word.clone(),
            fired: fired.clone(),
        };
        if !watch.fired() {
            lock(&watch.watcher.table).insert(
                id,
                Entry {
                    word,
                    expected,
                    recheck,
                    waker: waker.clone(),
                    fired,
                },
            );
            watch.watcher.poke();
        }
        watch
    }

    /// Whether the watch has fired since it was armed.
    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::Acquire)
    }

    /// Arms the watch again, for a change from `expected`, with this waker.
    pub fn rearm(&mut self, expected: u32, recheck: Option<Instant>, waker: &Waker) {
        let mut t = lock(&self.watcher.table);
        match t.get_mut(&self.id) {
            Some(e) => {
                e.expected = expected;
                e.recheck = recheck;
                if !e.waker.will_wake(waker) {
                    e.waker = waker.clone();
                }
                self.fired.store(false, Ordering::Release);
            }
            None => {
                // an inert watch (no watcher thread): stays fired
                waker.wake_by_ref();
                return;
            }
        }
        drop(t);
        self.watcher.poke();
    }

    /// Whether the watch, still armed, would wake `waker` (a task polled again before
    /// the word changed need not re-arm it then).
    pub fn wakes(&self, waker: &Waker) -> bool {
        lock(&self.watcher.table)
            .get(&self.id)
            .is_some_and(|e| e.waker.will_wake(waker))
    }

    /// The wait it served is over (its future got what it waited for): dropping it
    /// passes no wake-up on.
    pub fn done(&mut self) {
        self.fired.store(false, Ordering::Release);
    }
}

impl Drop for WordWatch {
    fn drop(&mut self) {
        let removed = lock(&self.watcher.table).remove(&self.id).is_some();
        if removed {
            words().give_back(self.addr);
        }
        if self.fired() {
            // woken for something this watch's future will now never take: pass it on
            futex::wake(self.word.word(), 1);
        }
    }
}

// ---------------------------------------------------------------- timers

/// The word every timer watches: it never leaves 0, so a watch on it fires at its
/// `recheck` time only.
fn timer_word() -> Arc<AtomicU32> {
    static WORD: std::sync::OnceLock<Arc<AtomicU32>> = std::sync::OnceLock::new();
    WORD.get_or_init(|| Arc::new(AtomicU32::new(0))).clone()
}

/// A [`WordWatch`] that fires at `at` only (`None`: never), on the process's one timer
/// word (a word no one changes, expected `0`): re-arm it with `rearm(0, at, waker)`.
/// For a waker that is not a task's (a connection's driver); a future waits with a
/// [`Timer`].
pub fn timer_watch(at: Option<Instant>, waker: &Waker) -> WordWatch {
    WordWatch::new(timer_word(), |w: &AtomicU32| w, 0, at, waker)
}

/// A wake-up at a time, for a future's `poll`: [`poll`](Timer::poll) is `Ready` once
/// the time has passed, and otherwise arranges for the task to be woken then (by a
/// watcher thread: no async runtime, no thread of its own).
///
/// It wakes no earlier than its time but may wake later (the watcher thread's sleep,
/// a loaded machine). Moving it later ([`set`](Timer::set)) keeps the watch armed for
/// the earlier time: that wake-up finds the time not come, and the poll then arms it
/// again, so a timer pushed back often (a liveness guard) costs nothing each time.
///
/// # Examples
///
/// ```
/// use procactor_transports::watch::Timer;
/// use std::sync::Arc;
/// use std::task::{Context, Wake, Waker};
/// use std::time::{Duration, Instant};
///
/// // a task that is a parked thread
/// struct Unpark(std::thread::Thread);
/// impl Wake for Unpark {
///     fn wake(self: Arc<Self>) {
///         self.0.unpark()
///     }
/// }
/// let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
/// let cx = Context::from_waker(&waker);
///
/// let t = Instant::now();
/// let mut timer = Timer::at(Some(t + Duration::from_millis(20)));
/// while timer.poll(&cx).is_pending() {
///     std::thread::park(); // until woken (or spuriously: polled again)
/// }
/// assert!(t.elapsed() >= Duration::from_millis(20));
/// ```
#[derive(Debug, Default)]
pub struct Timer {
    at: Option<Instant>,
    watch: Option<WordWatch>,
    /// The time the watch is armed for.
    armed: Option<Instant>,
}

impl Timer {
    /// A timer for `at` (`None`: never ready).
    pub fn at(at: Option<Instant>) -> Timer {
        Timer {
            at,
            watch: None,
            armed: None,
        }
    }

    /// The time it is for.
    pub fn deadline(&self) -> Option<Instant> {
        self.at
    }

    /// Makes it for `at` instead (taken into account by the next [`poll`](Timer::poll)).
    pub fn set(&mut self, at: Option<Instant>) {
        self.at = at;
    }

    /// `Ready` once its time has passed (and from then on); otherwise `Pending`, the
    /// task to be woken at that time (`None`: `Pending` for ever, nothing armed).
    pub fn poll(&mut self, cx: &std::task::Context<'_>) -> std::task::Poll<()> {
        use std::task::Poll;
        let Some(at) = self.at else {
            return Poll::Pending;
        };
        if Instant::now() >= at {
            if let Some(mut w) = self.watch.take() {
                // its wake-up, if it fired, was for this: nothing to pass on
                w.done();
            }
            return Poll::Ready(());
        }
        let waker = cx.waker();
        match &mut self.watch {
            None => {
                self.watch = Some(timer_watch(Some(at), waker));
                self.armed = Some(at);
            }
            Some(w) => {
                let early_enough = self.armed.is_some_and(|a| a <= at);
                if w.fired() || !early_enough || !w.wakes(waker) {
                    w.rearm(0, Some(at), waker);
                    self.armed = Some(at);
                }
            }
        }
        Poll::Pending
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        if let Some(w) = &mut self.watch {
            // a timer's wake-up concerns no one else
            w.done();
        }
    }
}

// ---------------------------------------------------------------- descriptors

struct Fds {
    pid: u32,
    epoll: OwnedFd,
    next_id: AtomicU64,
    table: Mutex<HashMap<u64, (Waker, Arc<AtomicBool>)>>,
}

static FDS: AtomicPtr<Fds> = AtomicPtr::new(std::ptr::null_mut());

fn fds() -> io::Result<&'static Fds> {
    let pid = crate::os::current_pid_cached();
    let cur = FDS.load(Ordering::Acquire);
    // SAFETY: a non-null pointer in FDS comes from `Box::leak` below and is never freed.
    if let Some(f) = unsafe { cur.as_ref() } {
        if f.pid == pid {
            return Ok(f);
        }
    }
    let new: &'static Fds = Box::leak(Box::new(Fds {
        pid,
        epoll: epoll::create(epoll::CreateFlags::CLOEXEC)?,
        next_id: AtomicU64::new(1),
        table: Mutex::new(HashMap::new()),
    }));
    match FDS.compare_exchange(
        cur,
        new as *const Fds as *mut Fds,
        Ordering::AcqRel,
        Ordering::Acquire,
    ) {
        Ok(_) => {
            std::thread::Builder::new()
                .name("procactor-fdwatch".into())
                .spawn(move || run_fds(new))?;
            Ok(new)
        }
        // SAFETY: as above.
        Err(other) => Ok(unsafe { &*other }),
    }
}

fn run_fds(f: &'static Fds) {
    let mut events = Vec::with_capacity(64);
    loop {
        events.clear();
        if epoll::wait(&f.epoll, spare(&mut events), None).is_err() {
            continue; // EINTR
        }
        let mut t = lock(&f.table);
        let ready: Vec<Waker> = events
            .iter()
            .filter_map(|ev| {
                let (w, fired) = t.get_mut(&ev.data.u64())?;
                fired.store(true, Ordering::Release);
                Some(w.clone())
            })
            .collect();
        drop(t);
        for w in ready {
            w.wake();
        }
    }
}

fn spare(v: &mut Vec<epoll::Event>) -> rustix::buffer::SpareCapacity<'_, epoll::Event> {
    rustix::buffer::spare_capacity(v)
}

/// What an [`FdWatch`] waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    /// Readable (or hung up, or in error).
    Read,
    /// Writable (or hung up, or in error).
    Write,
}

/// A one-shot registration of a descriptor with the process's epoll thread: its waker
/// is woken once the descriptor is ready for the interest (or hung up, or in error).
/// Dropping it unregisters.
pub struct FdWatch {
    id: u64,
    dup: OwnedFd,
    flags: epoll::EventFlags,
    fired: Arc<AtomicBool>,
}

impl std::fmt::Debug for FdWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FdWatch")
            .field("id", &self.id)
            .field("fired", &self.fired())
            .finish()
    }
}

impl FdWatch {
    /// Watches (a duplicate of) `fd` for `interest`.
    ///
    /// # Errors
    ///
    /// Duplicating the descriptor or registering it failed (out of descriptors, or a
    /// descriptor epoll cannot watch, such as a regular file).
    pub fn new(fd: BorrowedFd<'_>, interest: Interest, waker: &Waker) -> io::Result<FdWatch> {
        let f = fds()?;
        let dup = rustix::io::fcntl_dupfd_cloexec(fd, 0)?;
        let id = f.next_id.fetch_add(1, Ordering::Relaxed);
        let fired = Arc::new(AtomicBool::new(false));
        lock(&f.table).insert(id, (waker.clone(), fired.clone()));
        let flags = epoll::EventFlags::ONESHOT
            | epoll::EventFlags::RDHUP
            | match interest {
                Interest::Read => epoll::EventFlags::IN,
                Interest::Write => epoll::EventFlags::OUT,
            };
        if let Err(e) = epoll::add(&f.epoll, &dup, epoll::EventData::new_u64(id), flags) {
            lock(&f.table).remove(&id);
            return Err(e.into());
        }
        Ok(FdWatch {
            id,
            dup,
            flags,
            fired,
        })
    }

    /// Whether the descriptor was found ready since the watch was armed.
    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::Acquire)
    }

    /// Arms the watch again (one-shot), with this waker.
    ///
    /// # Errors
    ///
    /// Re-registering failed (the watch is then left fired, so a caller polls again).
    pub fn rearm(&mut self, waker: &Waker) -> io::Result<()> {
        let f = fds()?;
        if let Some((w, _)) = lock(&f.table).get_mut(&self.id) {
            if !w.will_wake(waker) {
                *w = waker.clone();
            }
        }
        self.fired.store(false, Ordering::Release);
        let r = epoll::modify(
            &f.epoll,
            &self.dup,
            epoll::EventData::new_u64(self.id),
            self.flags,
        );
        if r.is_err() {
            self.fired.store(true, Ordering::Release);
        }
        Ok(r?)
    }

    /// The registered duplicate.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.dup.as_fd()
    }
}

impl Drop for FdWatch {
    fn drop(&mut self) {
        if let Ok(f) = fds() {
            let _ = epoll::delete(&f.epoll, &self.dup);
            lock(&f.table).remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Condvar;
    use std::task::Wake;
    use std::time::Duration;

    #[derive(Default)]
    struct Flag(Mutex<u32>, Condvar);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            *self.0.lock().unwrap() += 1;
            self.1.notify_all();
        }
    }
    impl Flag {
        fn wait(&self, n: u32, for_: Duration) -> bool {
            let g = self
                .1
                .wait_timeout_while(self.0.lock().unwrap(), for_, |c| *c < n)
                .unwrap();
            *g.0 >= n
        }
    }

    #[test]
    fn a_timer_wakes_its_task_at_its_time_not_before() {
        let flag = Arc::new(Flag::default());
        let waker = Waker::from(flag.clone());
        let cx = std::task::Context::from_waker(&waker);
        let t = Instant::now();
        let mut timer = Timer::at(Some(t + Duration::from_millis(60)));
        assert!(timer.poll(&cx).is_pending());
        assert!(flag.wait(1, Duration::from_secs(10)), "never woken");
        assert!(
            t.elapsed() >= Duration::from_millis(60),
            "{:?}",
            t.elapsed()
        );
        assert!(timer.poll(&cx).is_ready());
        assert!(timer.poll(&cx).is_ready(), "ready from then on");
        // never: pending, and no wake-up
        let mut never = Timer::at(None);
        assert!(never.poll(&cx).is_pending());
        assert!(!flag.wait(2, Duration::from_millis(100)));
    }

    #[test]
    fn a_timer_moved_earlier_wakes_then_and_one_moved_later_not_before() {
        let flag = Arc::new(Flag::default());
        let waker = Waker::from(flag.clone());
        let cx = std::task::Context::from_waker(&waker);
        let t = Instant::now();
        let mut timer = Timer::at(Some(t + Duration::from_secs(60)));
        assert!(timer.poll(&cx).is_pending());
        timer.set(Some(t + Duration::from_millis(30)));
        assert_eq!(timer.deadline(), Some(t + Duration::from_millis(30)));
        assert!(timer.poll(&cx).is_pending());
        assert!(
            flag.wait(1, Duration::from_secs(10)),
            "not re-armed earlier"
        );
        assert!(timer.poll(&cx).is_ready());
        // later: the early wake-up (if any) finds it pending, the poll re-arms it
        let t = Instant::now();
        timer.set(Some(t + Duration::from_millis(40)));
        let mut wakes = 1;
        while timer.poll(&cx).is_pending() {
            assert!(t.elapsed() < Duration::from_secs(10), "never ready");
            assert!(flag.wait(wakes + 1, Duration::from_secs(10)), "never woken");
            wakes += 1;
        }
        assert!(
            t.elapsed() >= Duration::from_millis(40),
            "{:?}",
            t.elapsed()
        );
    }

    #[test]
    fn a_changed_word_fires_its_watch_and_an_unchanged_one_does_not() {
        let flag = Arc::new(Flag::default());
        let words = Arc::new([AtomicU32::new(0), AtomicU32::new(7)]);
        let waker = Waker::from(flag.clone());
        let a = WordWatch::new(words.clone(), |w| &w[0], 0, None, &waker);
        let b = WordWatch::new(words.clone(), |w| &w[1], 7, None, &waker);
        assert!(
            !flag.wait(1, Duration::from_millis(50)),
            "fired with no change"
        );
        words[0].store(1, Ordering::SeqCst);
        futex::wake(&words[0], 1);
        assert!(flag.wait(1, Duration::from_secs(10)));
        assert!(a.fired() && !b.fired());
    }

    #[test]
    fn a_futex_wake_without_a_change_fires_and_rearm_waits_again() {
        let flag = Arc::new(Flag::default());
        let word = Arc::new(AtomicU32::new(3));
        let waker = Waker::from(flag.clone());
        let mut w = WordWatch::new(word.clone(), |w| w, 3, None, &waker);
        // the watcher may not be asleep on it yet: wake until it fires
        let end = Instant::now() + Duration::from_secs(10);
        while !w.fired() && Instant::now() < end {
            futex::wake(&word, 1);
            flag.wait(1, Duration::from_millis(5));
        }
        assert!(w.fired());
        w.rearm(3, None, &waker);
        assert!(!w.fired());
        word.store(4, Ordering::SeqCst);
        futex::wake(&word, 1);
        assert!(flag.wait(2, Duration::from_secs(10)));
        assert!(w.fired());
    }

    #[test]
    fn recheck_fires_without_a_change() {
        let flag = Arc::new(Flag::default());
        let word = Arc::new(AtomicU32::new(0));
        let t0 = Instant::now();
        let w = WordWatch::new(
            word,
            |w| w,
            0,
            Some(t0 + Duration::from_millis(30)),
            &Waker::from(flag.clone()),
        );
        assert!(flag.wait(1, Duration::from_secs(10)));
        assert!(w.fired() && t0.elapsed() >= Duration::from_millis(30));
    }

    #[test]
    fn more_words_than_one_watcher_takes_start_another_and_all_fire() {
        let flag = Arc::new(Flag::default());
        let n = PER_WATCHER + 20;
        let words: Arc<Vec<AtomicU32>> = Arc::new((0..n).map(|_| AtomicU32::new(0)).collect());
        let waker = Waker::from(flag.clone());
        let watches: Vec<_> = (0..n)
            .map(|i| WordWatch::new(words.clone(), move |w| &w[i], 0, None, &waker))
            .collect();
        std::thread::sleep(Duration::from_millis(20));
        for w in words.iter() {
            w.store(1, Ordering::SeqCst);
            futex::wake(w, 1);
        }
        let ok = flag.wait(n as u32, Duration::from_secs(20));
        let fired = watches.iter().filter(|w| w.fired()).count();
        assert!(
            ok,
            "{fired} of {n} fired, {} wakes",
            *flag.0.lock().unwrap()
        );
        assert!(watches.iter().all(WordWatch::fired));
        assert!(lock(words_assign()).watchers.len() >= 2);
    }

    fn words_assign() -> &'static Mutex<Assign> {
        &words().assign
    }

    #[test]
    fn a_fired_watch_dropped_unused_passes_the_wake_up_on() {
        let flag = Arc::new(Flag::default());
        let word = Arc::new(AtomicU32::new(0));
        let w = WordWatch::new(word.clone(), |w| w, 0, None, &Waker::from(flag.clone()));
        // a thread sleeping on the same word, as a synchronous waiter would
        let w2 = word.clone();
        let sleeper = std::thread::spawn(move || {
            let end = Instant::now() + Duration::from_secs(10);
            while Instant::now() < end {
                if futex::wait(&w2, 1, Some(end)) == futex::WaitOutcome::Woken {
                    return true;
                }
            }
            false
        });
        word.store(1, Ordering::SeqCst);
        futex::wake(&word, 1); // the watcher is the only sleeper yet
        assert!(flag.wait(1, Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(30)); // the sleeper is asleep on 1
        drop(w); // fired, never used: its drop wakes one sleeper
        assert!(sleeper.join().unwrap());
    }

    #[test]
    fn an_fd_watch_fires_when_the_pipe_is_written_and_again_after_rearm() {
        let (r, w) = rustix::pipe::pipe().unwrap();
        let flag = Arc::new(Flag::default());
        let waker = Waker::from(flag.clone());
        let mut fw = FdWatch::new(r.as_fd(), Interest::Read, &waker).unwrap();
        assert!(!flag.wait(1, Duration::from_millis(30)));
        rustix::io::write(&w, b"x").unwrap();
        assert!(flag.wait(1, Duration::from_secs(10)));
        assert!(fw.fired());
        // still readable: one-shot fires again once re-armed
        fw.rearm(&waker).unwrap();
        assert!(flag.wait(2, Duration::from_secs(10)));
        // the caller closing its descriptor does not touch the watch's duplicate
        drop(r);
        let mut buf = [0u8; 1];
        assert_eq!(rustix::io::read(fw.fd(), &mut buf).unwrap(), 1);
    }
}
