//! The async proxies' way to the server: one **multiplexed connection** per manager
//! per process, shared by every `_async` future of that process, and the future of one
//! call on it.
//!
//! # Why one multiplexed connection, and owners instead of threads
//!
//! The blocking proxies use one connection per thread, and the server ties what a
//! request acquires to the connection that made it. A task may move between executor
//! threads between two polls, so a per-thread connection cannot say who owns a lock;
//! and a connection per future would cost a server thread and a descriptor per pending
//! future (the server serves at most 256 connections). Instead:
//!
//! - every request on the connection carries a **tag**, and its answer comes back with
//!   it ([`Resp::Tagged`]), in any order: thousands of futures wait on one socket, and
//!   one registration with the process's epoll thread serves them all (a waker of the
//!   connection's own reads the answers there and wakes the futures they belong to);
//! - a request that must wait (an `acquire`, a `get` from an empty queue, an event's
//!   `wait`) is **parked** at the server: no thread waits for it there either, and the
//!   change that lets it finish answers it;
//! - what an acquisition holds belongs to an **owner**, a number the future picks
//!   (its request's tag); the [`ManagerAsyncGuard`](super::ManagerAsyncGuard) carries
//!   it and ends it when dropped, and the server then releases whatever that owner
//!   holds, exactly as it does for a connection that closes. When the connection
//!   itself closes (the process died), every owner it named is released.
//!
//! # Giving up
//!
//! A future dropped before its answer sends `Cancel(tag)`: a request still parked
//! stops (as one whose client left: a condition's waiter passes a notification on, a
//! barrier breaks) and is answered "nothing done"; one answered already has its answer
//! on the way, and the connection keeps the tag as *abandoned* until it comes: an item
//! a queue's `get` took then goes back to the front of its queue, an acquisition is
//! released (its owner is ended right after the cancel). So a dropped future never
//! loses an item, never holds anything, and an answer never reaches another request.
//!
//! # Time
//!
//! A call that does not wait gives up by the manager's call timeout or, for a
//! synchronisation object's, [`CALL_MARGIN`](super::CALL_MARGIN) (the rules of the
//! blocking calls); a call that waits gives up after 30 s without any frame from the
//! server (a server with parked requests of this connection sends a heartbeat every
//! 5 s). Either way the connection is closed (the server releases what it held) and
//! every future on it ends with the error; the next call opens a new one. The timers
//! are [`procactor_transports::watch`]'s (no runtime's).

use super::calls::open_session_until;
use super::wire::Session;
use super::{ManagerError, MuxReq, Req, Resp, MAX_FRAME, REPLY_TIMEOUT};
use crate::codec;
use crate::Bytes;
use procactor_transports::conn::Address;
use procactor_transports::watch::{self, FdWatch, Interest, Timer, WordWatch};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

/// How long a future's first poll looks for its answer before it registers (a server
/// answering a request that does not wait answers within tens of microseconds).
const ANSWER_SPIN: Duration = Duration::from_micros(50);

/// Why a connection was given up (every future on it ends with this).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dead {
    Disconnected,
    Timeout,
}

impl Dead {
    fn error(self) -> ManagerError {
        match self {
            Dead::Disconnected => ManagerError::Disconnected,
            Dead::Timeout => ManagerError::Timeout,
        }
    }
}

/// One request's place on the connection.
enum Slot {
    /// Sent; its future waits, until `deadline` at the latest (and, like every
    /// request, until 30 s pass without a frame from the server).
    Waiting {
        waker: Option<Waker>,
        deadline: Option<Instant>,
    },
    /// Answered; its future has not taken the answer yet.
    Done(Result<Resp, Dead>),
    /// Its future was dropped; the answer still to come is dropped (an item goes back
    /// to queue `Some(id)`).
    Abandoned(Option<u64>),
}

struct State {
    /// `None` once the connection is given up.
    s: Option<Session>,
    dead: Option<Dead>,
    next_tag: u64,
    slots: HashMap<u64, Slot>,
    /// The connection's readiness, woken into [`Driver`].
    watch: Option<FdWatch>,
    timer: Option<WordWatch>,
    timer_at: Option<Instant>,
    /// The last time the server was heard from (or a request sent).
    heard: Instant,
    /// Wakers of futures ended where no list to wake was at hand (a failed send): woken
    /// once the state is let go.
    orphans: Vec<Waker>,
}

/// A multiplexed connection to one manager.
pub(super) struct Mux {
    st: Mutex<State>,
    /// A wake-up of [`Driver`] found the state busy: whoever holds it drives once it
    /// lets go (so a wake-up is never lost, and a waker called while the state is held,
    /// as a watch born fired does, never deadlocks).
    need_drive: std::sync::atomic::AtomicBool,
    /// Wakes [`Mux::drive`]: given to the epoll thread and to the timer.
    driver: Waker,
    pid: u32,
    address: String,
    key: Bytes,
}

/// Reads the connection's answers where its readiness is reported (the epoll thread,
/// or the timer's watcher thread): never blocks (non-blocking reads, short locks).
struct Driver(Weak<Mux>);

impl Wake for Driver {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref()
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(m) = self.0.upgrade() {
            m.drive();
        }
    }
}

/// This process's multiplexed connections, one per manager.
static MUXES: Mutex<Vec<Arc<Mux>>> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The multiplexed connection to the manager at `address`, opened if there is none
/// (or the last one was given up). Opening it is a connection and a handshake, done
/// in the calling thread (at most [`HANDSHAKE_TIMEOUT`](super::HANDSHAKE_TIMEOUT)).
pub(super) fn mux(address: &str, key: &Bytes) -> Result<Arc<Mux>, ManagerError> {
    let pid = std::process::id();
    let find = || {
        let mut all = lock(&MUXES);
        // (a forked child's copies, and connections given up, are forgotten)
        all.retain(|m| m.pid == pid && lock(&m.st).dead.is_none());
        all.iter()
            .find(|m| m.address == address && m.key == *key)
            .cloned()
    };
    if let Some(m) = find() {
        return Ok(m);
    }
    // (without the list's lock: a server slow to answer holds up no other manager's)
    let s = open_session_until(&Address::parse(address), key, None)?;
    let m = Arc::new_cyclic(|me: &Weak<Mux>| Mux {
        st: Mutex::new(State {
            s: Some(s),
            dead: None,
            next_tag: 1,
            slots: HashMap::new(),
            watch: None,
            timer: None,
            timer_at: None,
            heard: Instant::now(),
            orphans: Vec::new(),
        }),
        driver: Waker::from(Arc::new(Driver(me.clone()))),
        need_drive: std::sync::atomic::AtomicBool::new(false),
        pid,
        address: address.to_string(),
        key: key.clone(),
    });
    let mut all = lock(&MUXES);
    // (another thread may have opened one meanwhile: it is used, this one closed)
    if let Some(other) = all
        .iter()
        .find(|o| o.pid == pid && o.address == address && o.key == *key)
    {
        if lock(&other.st).dead.is_none() {
            return Ok(other.clone());
        }
    }
    all.push(m.clone());
    Ok(m)
}

impl State {
    /// Sends one request; `false` (and the connection given up) when that failed.
    fn send(&mut self, tag: u64, m: MuxReq) -> Result<(), ManagerError> {
        if let Some(d) = self.dead {
            return Err(d.error());
        }
        let mut buf = Vec::new();
        codec::encode(&Req::Mux(tag, m), &mut buf, None)?;
        if buf.len() > MAX_FRAME {
            return Err(ManagerError::TooLarge {
                size: buf.len() as u64,
                limit: MAX_FRAME,
            });
        }
        let sent = self.s.as_mut().map(|s| s.send(&buf));
        if !matches!(sent, Some(Ok(()))) {
            let mut wake = std::mem::take(&mut self.orphans);
            self.kill(Dead::Disconnected, &mut wake);
            self.orphans = wake;
            return Err(ManagerError::Disconnected);
        }
        self.heard = self.heard.max(Instant::now());
        Ok(())
    }

    /// Gives the connection up: closes it (the server releases what it held) and ends
    /// every waiting future with `d`.
    fn kill(&mut self, d: Dead, wake: &mut Vec<Waker>) {
        if self.dead.is_none() {
            self.dead = Some(d);
        }
        self.s = None;
        self.watch = None;
        self.timer = None;
        self.timer_at = None;
        self.slots.retain(|_, slot| match slot {
            Slot::Waiting { waker, .. } => {
                wake.extend(waker.take());
                *slot = Slot::Done(Err(d));
                true
            }
            Slot::Done(_) => true,
            Slot::Abandoned(_) => false,
        });
    }

    /// Reads every answer that has arrived, gives it to its slot, and checks the
    /// deadlines; the wakers of the futures answered go to `wake`.
    fn pump(&mut self, wake: &mut Vec<Waker>) {
        loop {
            let Some(s) = self.s.as_mut() else { return };
            let frame = match s.try_recv(MAX_FRAME) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(_) => return self.kill(Dead::Disconnected, wake),
            };
            self.heard = Instant::now();
            match codec::decode::<Resp>(&frame, Vec::new()) {
                Ok(Resp::Tagged(tag, r)) => self.answer(tag, *r, wake),
                Ok(Resp::Pending) => {} // the server's heartbeat
                // (an authentic frame that is no answer: the protocol is broken)
                _ => return self.kill(Dead::Disconnected, wake),
            }
        }
        let now = Instant::now();
        let mut late = None;
        for slot in self.slots.values() {
            if let Slot::Waiting { deadline, .. } = slot {
                if deadline.is_some_and(|d| d <= now) {
                    late = Some(Dead::Timeout);
                } else if now.duration_since(self.heard) >= REPLY_TIMEOUT {
                    late = late.or(Some(Dead::Disconnected));
                }
            }
        }
        if let Some(d) = late {
            self.kill(d, wake);
        }
    }

    fn answer(&mut self, tag: u64, r: Resp, wake: &mut Vec<Waker>) {
        match self.slots.remove(&tag) {
            Some(Slot::Waiting { waker, .. }) => {
                wake.extend(waker);
                self.slots.insert(tag, Slot::Done(Ok(r)));
            }
            Some(Slot::Abandoned(Some(q))) => {
                if let Resp::Opt(Some(item)) = r {
                    let _ = self.send(0, MuxReq::PutBack(q, item));
                }
            }
            // (an answer to nothing asked, or to a future that gave up: dropped)
            Some(slot @ Slot::Done(_)) => {
                self.slots.insert(tag, slot);
            }
            Some(Slot::Abandoned(None)) | None => {}
        }
    }

    /// Keeps the connection's readiness and its next deadline watched while a future
    /// waits on it.
    fn arm(&mut self, driver: &Waker) {
        if self.dead.is_some() || self.slots.is_empty() {
            return;
        }
        let Some(s) = self.s.as_ref() else { return };
        let armed = match &mut self.watch {
            Some(w) if !w.fired() => Ok(()),
            Some(w) => w.rearm(driver),
            None => FdWatch::new(s.fd(), Interest::Read, driver).map(|w| self.watch = Some(w)),
        };
        if armed.is_err() {
            // (the descriptor cannot be watched: nothing would ever wake the futures)
            let mut wake = std::mem::take(&mut self.orphans);
            self.kill(Dead::Disconnected, &mut wake);
            self.orphans = wake;
            return;
        }
        // (the server's silence: a server with parked requests of this connection
        // sends a heartbeat every 5 s, any other answers at once)
        let mut at = self.heard + REPLY_TIMEOUT;
        for slot in self.slots.values() {
            if let Slot::Waiting {
                deadline: Some(d), ..
            } = slot
            {
                at = at.min(*d);
            }
        }
        let at = Some(at);
        let fired = self.timer.as_ref().is_none_or(|t| t.fired());
        // (re-armed when it must fire earlier: one that fires late for a server heard
        // from meanwhile is armed again then, at most every 30 s)
        if fired || self.timer_at.is_none_or(|t| at.is_some_and(|a| a < t)) {
            match &mut self.timer {
                Some(t) => t.rearm(0, at, driver),
                None => self.timer = Some(watch::timer_watch(at, driver)),
            }
            self.timer_at = at;
        }
    }
}

impl Mux {
    /// Reads the answers that have arrived and wakes their futures; re-arms the watch.
    /// When the state is busy, its holder does it as it lets go.
    fn drive(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        self.need_drive.store(true, SeqCst);
        loop {
            let mut st = match self.st.try_lock() {
                Ok(g) => g,
                Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => return,
            };
            if !self.need_drive.swap(false, SeqCst) {
                return;
            }
            let mut wake = Vec::new();
            st.pump(&mut wake);
            st.arm(&self.driver);
            wake.append(&mut st.orphans);
            drop(st);
            for w in wake {
                w.wake();
            }
            if !self.need_drive.load(SeqCst) {
                return;
            }
        }
    }

    /// Runs `f` on the state; then wakes `f`'s wakers, and drives if a wake-up came
    /// meanwhile.
    fn with<R>(&self, f: impl FnOnce(&mut State, &mut Vec<Waker>) -> R) -> R {
        let mut wake = Vec::new();
        let r = {
            let mut st = lock(&self.st);
            let r = f(&mut st, &mut wake);
            wake.append(&mut st.orphans);
            r
        };
        for w in wake {
            w.wake();
        }
        if self.need_drive.load(std::sync::atomic::Ordering::SeqCst) {
            self.drive();
        }
        r
    }

    /// Whether it is still in use (a guard's owner lives on it).
    pub(super) fn alive(&self) -> bool {
        self.with(|st, _| st.dead.is_none())
    }

    /// Sends a request that is not answered (`End`, `PutBack`); a connection given up
    /// sends nothing (what it held was released when it closed).
    pub(super) fn tell(&self, m: MuxReq) -> Result<(), ManagerError> {
        self.with(|st, _| st.send(0, m))
    }

    /// Sends `m` and waits for its answer (see [`Call`]).
    pub(super) fn call(
        self: &Arc<Self>,
        m: impl FnOnce(u64) -> MuxReq,
        deadline: Option<Instant>,
        put_back_to: Option<u64>,
        end_owner: bool,
    ) -> Call {
        let (tag, sent) = self.with(|st, _| {
            let tag = st.next_tag;
            st.next_tag += 1;
            let sent = st.send(tag, m(tag));
            if sent.is_ok() {
                st.slots.insert(
                    tag,
                    Slot::Waiting {
                        waker: None,
                        deadline,
                    },
                );
            }
            (tag, sent)
        });
        Call {
            mux: self.clone(),
            tag,
            sent: Some(sent),
            put_back_to,
            end_owner,
            done: false,
        }
    }
}

/// The future of one request on a [`Mux`]: its answer, or the connection's end.
///
/// Dropped before it took its answer, it gives the request up (see the module docs):
/// `put_back_to` is the queue an item its answer carries goes back to, and with
/// `end_owner` the owner its tag names is ended (an acquisition is released).
pub(super) struct Call {
    mux: Arc<Mux>,
    tag: u64,
    /// the outcome of sending it, until the first poll
    sent: Option<Result<(), ManagerError>>,
    put_back_to: Option<u64>,
    end_owner: bool,
    done: bool,
}

impl Call {
    /// The number of its request (and owner).
    pub(super) fn tag(&self) -> u64 {
        self.tag
    }

    /// The connection it is on.
    pub(super) fn mux(&self) -> &Arc<Mux> {
        &self.mux
    }

    /// The answer if it is there.
    fn take(&mut self, st: &mut State) -> Option<Result<Resp, ManagerError>> {
        match st.slots.remove(&self.tag) {
            Some(Slot::Done(r)) => {
                self.done = true;
                Some(r.map_err(Dead::error))
            }
            Some(slot) => {
                st.slots.insert(self.tag, slot);
                None
            }
            None => {
                self.done = true;
                Some(Err(st.dead.unwrap_or(Dead::Disconnected).error()))
            }
        }
    }
}

impl Future for Call {
    type Output = Result<Resp, ManagerError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let Some(sent) = this.sent.take() {
            if let Err(e) = sent {
                this.done = true;
                return Poll::Ready(Err(e));
            }
            // a first look, spinning a little: a quick answer is taken without the two
            // cross-thread wake-ups a registered wait costs
            let until = Instant::now() + procactor_transports::spin::budget(ANSWER_SPIN);
            loop {
                let mux = this.mux.clone();
                let r = mux.with(|st, wake| {
                    st.pump(wake);
                    this.take(st)
                });
                if let Some(r) = r {
                    return Poll::Ready(r);
                }
                if Instant::now() >= until {
                    break;
                }
                std::hint::spin_loop();
            }
        }
        let mux = this.mux.clone();
        let r = mux.with(|st, wake| {
            st.pump(wake);
            let r = this.take(st);
            if r.is_none() {
                if let Some(Slot::Waiting { waker, .. }) = st.slots.get_mut(&this.tag) {
                    match waker {
                        Some(w) if w.will_wake(cx.waker()) => {}
                        w => *w = Some(cx.waker().clone()),
                    }
                }
                st.arm(&mux.driver);
            }
            r
        });
        match r {
            Some(r) => Poll::Ready(r),
            None => Poll::Pending,
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if self.done || matches!(self.sent, Some(Err(_))) {
            return;
        }
        let (tag, put_back_to, end_owner) = (self.tag, self.put_back_to, self.end_owner);
        self.mux.with(|st, _| {
            match st.slots.remove(&tag) {
                Some(Slot::Waiting { .. }) => {
                    st.slots.insert(tag, Slot::Abandoned(put_back_to));
                    let _ = st.send(0, MuxReq::Cancel(tag));
                }
                Some(Slot::Done(Ok(Resp::Opt(Some(item))))) => {
                    if let Some(q) = put_back_to {
                        let _ = st.send(0, MuxReq::PutBack(q, item));
                    }
                }
                _ => {}
            }
            if end_owner {
                let _ = st.send(0, MuxReq::End(tag));
            }
        });
    }
}

// ------------------------------------------------------------------ timers

// (`procactor_transports::watch::Timer`, the process's one timer, serves `by` and
// `while_true`)

/// Runs `f` until `at` (`None`: no limit): [`ManagerError::Timeout`] then.
pub(super) async fn by<T>(
    at: Option<Instant>,
    f: impl Future<Output = Result<T, ManagerError>>,
) -> Result<T, ManagerError> {
    let mut f = std::pin::pin!(f);
    let mut sleep = Timer::at(at);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(r) = f.as_mut().poll(cx) {
            return Poll::Ready(r);
        }
        sleep.poll(cx).map(|()| Err(ManagerError::Timeout))
    })
    .await
}

/// Runs `f`, asking `ok()` every `every` while it waits: [`ManagerError::Disconnected`]
/// as soon as `ok()` says no (a server that died announces nothing).
pub(super) async fn while_true<T>(
    every: Duration,
    mut ok: impl FnMut() -> bool,
    f: impl Future<Output = Result<T, ManagerError>>,
) -> Result<T, ManagerError> {
    let mut f = std::pin::pin!(f);
    let mut sleep = Timer::at(Some(Instant::now() + every));
    std::future::poll_fn(|cx| loop {
        if let Poll::Ready(r) = f.as_mut().poll(cx) {
            return Poll::Ready(r);
        }
        match sleep.poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(()) if !ok() => return Poll::Ready(Err(ManagerError::Disconnected)),
            Poll::Ready(()) => sleep.set(Some(Instant::now() + every)),
        }
    })
    .await
}
