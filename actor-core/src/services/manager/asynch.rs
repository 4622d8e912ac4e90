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
//! # Writing
//!
//! A request is written by the thread that makes the call (a blocking write, which
//! waits only while the socket is full). The frames that are not answered — `Cancel`,
//! `End`, `PutBack` — are also written from drops and from the process's epoll thread
//! (which reads the answers): they never wait. What the socket does not take at once
//! is kept in the connection, in order, and written on the socket's next readiness to
//! write (watched, while anything is kept, by the same epoll thread) or before the
//! next request, whichever comes first; a frozen server therefore stalls no thread of
//! this process, and nothing is lost or reordered (the frames are numbered: the
//! server would refuse the connection otherwise).
//!
//! # Time
//!
//! A call that does not wait gives up by the manager's call timeout or, for a
//! synchronisation object's, [`CALL_MARGIN`](super::CALL_MARGIN) (the rules of the
//! blocking calls). Its own deadline ends **that call only**: its future gets
//! [`ManagerError::Timeout`] and the request is given up as a dropped future's is
//! (`Cancel(tag)`, its owner ended if it names one; an answer that still comes is
//! dropped, an item it carries goes back to the front of its queue). The connection
//! stays, and with it every other future on it and every async guard's acquisition.
//!
//! Only the server's silence closes the connection: a call (waiting or not) gives up
//! after 30 s without any frame from the server (a server with parked requests of
//! this connection sends a heartbeat every 5 s); the connection is closed then (the
//! server, should it wake, releases what it held), every future on it ends with
//! [`ManagerError::Disconnected`], and the next call opens a new one. The timers are
//! [`procactor_transports::watch`]'s (no runtime's).

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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
    /// Sent at `sent`; its future waits, until `deadline` at the latest (and, like
    /// every request, until 30 s pass without a frame from the server since it was
    /// sent). Given up (dropped or timed out), an item its answer carries goes back to
    /// queue `put_back_to`, and with `end_owner` the owner its tag names is ended.
    Waiting {
        waker: Option<Waker>,
        deadline: Option<Instant>,
        sent: Instant,
        put_back_to: Option<u64>,
        end_owner: bool,
    },
    /// Answered; its future has not taken the answer yet.
    Done(Result<Resp, Dead>),
    /// Its future was dropped; the answer still to come is dropped (an item goes back
    /// to queue `Some(id)`).
    Abandoned(Option<u64>),
    /// Its deadline passed: the request was given up as an abandoned one (`Cancel`
    /// sent, its owner ended), and its future, which has not seen it yet, gets
    /// `Timeout`. Its answer, should it come first, is handled as an abandoned one's
    /// (an item goes back to queue `Some(id)`).
    TimedOut(Option<u64>),
}

struct State {
    /// `None` once the connection is given up.
    s: Option<Session>,
    dead: Option<Dead>,
    /// Set with `dead` (the [`Mux`]'s own flag): read without this state's lock.
    gone: Arc<AtomicBool>,
    slots: HashMap<u64, Slot>,
    /// The connection's readiness, woken into [`Driver`].
    watch: Option<FdWatch>,
    /// The connection's readiness to write, watched while queued control frames wait
    /// for room in the socket ([`Session::backlog`]).
    wwatch: Option<FdWatch>,
    timer: Option<WordWatch>,
    timer_at: Option<Instant>,
    /// The last time a frame came from the server (sending is not hearing: a process
    /// that keeps calling a frozen server must not keep its waits pending).
    heard: Instant,
    /// No waiting future is due to give up before this (`None`: none waits). It may be
    /// earlier than the true next time (a future answered or dropped since, the server
    /// heard from): only then are the slots looked at again, not on every poll.
    due: Option<Instant>,
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
    need_drive: AtomicBool,
    /// Wakes [`Mux::drive`]: given to the epoll thread and to the timer.
    driver: Waker,
    /// The next request's tag (and owner number): taken without the state's lock.
    next_tag: AtomicU64,
    /// The connection was given up (set once, as the state's `dead` is): read by
    /// [`mux`] without the state's lock, which a call writing to a slow server holds.
    gone: Arc<AtomicBool>,
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
    let pid = procactor_transports::os::current_pid_cached();
    let find = || {
        let mut all = lock(&MUXES);
        // (a forked child's copies, and connections given up, are forgotten; no
        // connection's state is locked here: a caller blocked in a write to one
        // manager holds up no lookup, and no wake-up of a connection's driver finds
        // its state held by someone who would not drive it)
        all.retain(|m| m.pid == pid && !m.gone.load(Ordering::Acquire));
        all.iter()
            .find(|m| m.address == address && m.key == *key)
            .cloned()
    };
    if let Some(m) = find() {
        return Ok(m);
    }
    // (without the list's lock: a server slow to answer holds up no other manager's)
    let s = open_session_until(&Address::parse(address), key, None)?;
    let m = Mux::new(s, pid, address, key);
    let mut all = lock(&MUXES);
    // (another thread may have opened one meanwhile: it is used, this one closed)
    if let Some(other) = all
        .iter()
        .find(|o| o.pid == pid && o.address == address && o.key == *key)
    {
        if !other.gone.load(Ordering::Acquire) {
            return Ok(other.clone());
        }
    }
    all.push(m.clone());
    Ok(m)
}

/// Request `m`'s frame under `tag`, checked against the frame limit.
fn encode(tag: u64, m: MuxReq) -> Result<Vec<u8>, ManagerError> {
    let mut buf = Vec::new();
    codec::encode(&Req::Mux(tag, m), &mut buf, None)?;
    if buf.len() > MAX_FRAME {
        return Err(ManagerError::TooLarge {
            size: buf.len() as u64,
            limit: MAX_FRAME,
        });
    }
    Ok(buf)
}

impl State {
    fn new(s: Option<Session>, gone: Arc<AtomicBool>) -> State {
        State {
            s,
            dead: None,
            gone,
            slots: HashMap::new(),
            watch: None,
            wwatch: None,
            timer: None,
            timer_at: None,
            heard: Instant::now(),
            due: None,
            orphans: Vec::new(),
        }
    }

    /// Sends a control frame (a `Cancel`, an `End`, a `PutBack`: one made while the
    /// state is held anyway, on any thread, the epoll thread's too): never waits. What
    /// the socket does not take now is kept, in order, and written once it is writable
    /// (the write readiness is watched, see [`arm_writes`](State::arm_writes)) or
    /// before the next request (see [`send_frame`](State::send_frame)).
    fn send(&mut self, tag: u64, m: MuxReq) -> Result<(), ManagerError> {
        let buf = encode(tag, m)?;
        self.queue_frame(&buf)
    }

    /// Queues a frame ([`encode`]) without waiting (see [`send`](State::send)); the
    /// connection is given up when the socket failed.
    fn queue_frame(&mut self, buf: &[u8]) -> Result<(), ManagerError> {
        if let Some(d) = self.dead {
            return Err(d.error());
        }
        let queued = self.s.as_mut().map(|s| s.queue(buf));
        if !matches!(queued, Some(Ok(()))) {
            self.kill_disconnected();
            return Err(ManagerError::Disconnected);
        }
        Ok(())
    }

    /// Writes the queued control frames the socket takes now (never waits); the
    /// connection is given up when the socket failed.
    fn flush(&mut self, wake: &mut Vec<Waker>) {
        let Some(s) = self.s.as_mut() else { return };
        if s.backlog() && s.flush_ready().is_err() {
            self.kill(Dead::Disconnected, wake);
        }
    }

    /// Gives the connection up as disconnected (its socket failed, or its descriptor
    /// cannot be watched, so nothing would ever drive it again); the futures it ends
    /// are woken with the orphans, once the state's lock is let go.
    fn kill_disconnected(&mut self) {
        let mut wake = std::mem::take(&mut self.orphans);
        self.kill(Dead::Disconnected, &mut wake);
        self.orphans = wake;
    }

    /// Watches the socket's readiness to write while queued frames wait (and stops
    /// once none does: a writable socket would wake the driver for nothing).
    fn arm_writes(&mut self, driver: &Waker) {
        let Some(s) = self.s.as_ref().filter(|s| s.backlog()) else {
            self.wwatch = None;
            return;
        };
        if keep_watching(&mut self.wwatch, s.fd(), Interest::Write, driver).is_err() {
            // (nothing would ever write the rest)
            self.kill_disconnected();
        }
    }

    /// Sends one request's frame ([`encode`]), after the queued control frames (a
    /// blocking write, in the calling thread: it waits only while the socket is full,
    /// at most [`WRITE_TIMEOUT`](super::wire::WRITE_TIMEOUT) without progress); the
    /// connection is given up when that failed.
    fn send_frame(&mut self, buf: &[u8]) -> Result<(), ManagerError> {
        if let Some(d) = self.dead {
            return Err(d.error());
        }
        let sent = self.s.as_mut().map(|s| s.send(buf));
        if !matches!(sent, Some(Ok(()))) {
            self.kill_disconnected();
            return Err(ManagerError::Disconnected);
        }
        Ok(())
    }

    /// Gives the connection up: closes it (the server releases what it held) and ends
    /// every waiting future with `d`.
    fn kill(&mut self, d: Dead, wake: &mut Vec<Waker>) {
        if self.dead.is_none() {
            self.dead = Some(d);
            self.gone.store(true, Ordering::Release);
        }
        self.s = None;
        self.watch = None;
        self.wwatch = None;
        self.timer = None;
        self.timer_at = None;
        self.due = None;
        self.slots.retain(|_, slot| match slot {
            Slot::Waiting { waker, .. } => {
                wake.extend(waker.take());
                *slot = Slot::Done(Err(d));
                true
            }
            // (its future still gets its own end)
            Slot::TimedOut(_) => {
                *slot = Slot::Done(Err(Dead::Timeout));
                true
            }
            Slot::Done(_) => true,
            Slot::Abandoned(_) => false,
        });
    }

    /// Reads every answer that has arrived, gives it to its slot, and checks the
    /// deadlines; the wakers of the futures answered go to `wake`.
    fn pump(&mut self, wake: &mut Vec<Waker>) {
        self.flush(wake);
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
        if self.due.is_none_or(|d| d > now) {
            return;
        }
        // (something may be due: every waiting slot is looked at, and the next time
        // found again; a call past its own deadline is given up alone, the server's
        // silence gives the connection up)
        let mut late = Vec::new();
        let mut silent = false;
        for (tag, slot) in &self.slots {
            if let Slot::Waiting { deadline, sent, .. } = slot {
                if deadline.is_some_and(|d| d <= now) {
                    late.push(*tag);
                } else if now.duration_since(self.heard.max(*sent)) >= REPLY_TIMEOUT {
                    silent = true;
                }
            }
        }
        for tag in late {
            self.time_out(tag, wake);
        }
        if silent {
            return self.kill(Dead::Disconnected, wake);
        }
        self.due = self.next_due();
    }

    /// Gives request `tag` up because its deadline passed: its future is woken to
    /// find `Timeout`, and the request is withdrawn as a dropped future's is.
    fn time_out(&mut self, tag: u64, wake: &mut Vec<Waker>) {
        let Some(slot) = self.slots.get_mut(&tag) else {
            return;
        };
        let Slot::Waiting {
            waker,
            put_back_to,
            end_owner,
            ..
        } = slot
        else {
            return;
        };
        wake.extend(waker.take());
        let end_owner = *end_owner;
        *slot = Slot::TimedOut(*put_back_to);
        // (a connection that fails here is given up: the future then finds `Timeout`
        // all the same, see `kill`)
        let _ = self.send(0, MuxReq::Cancel(tag));
        if end_owner {
            let _ = self.send(0, MuxReq::End(tag));
        }
    }

    /// Records request `tag`, sent at `sent`: its future waits, until `deadline` at
    /// the latest (see [`Slot::Waiting`] for the rest).
    fn waiting(
        &mut self,
        tag: u64,
        deadline: Option<Instant>,
        sent: Instant,
        put_back_to: Option<u64>,
        end_owner: bool,
    ) {
        let due = self.due_of(deadline, sent);
        self.due = Some(self.due.map_or(due, |d| d.min(due)));
        let slot = Slot::Waiting {
            waker: None,
            deadline,
            sent,
            put_back_to,
            end_owner,
        };
        self.slots.insert(tag, slot);
    }

    /// When a request sent at `sent` gives up: at `deadline`, or after 30 s of the
    /// server's silence since it was sent.
    fn due_of(&self, deadline: Option<Instant>, sent: Instant) -> Instant {
        let due = self.heard.max(sent) + REPLY_TIMEOUT;
        deadline.map_or(due, |d| d.min(due))
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
            // (its future will find `Timeout`: what the answer carries goes back)
            Some(Slot::TimedOut(q)) => {
                if let (Some(q), Resp::Opt(Some(item))) = (q, r) {
                    let _ = self.send(0, MuxReq::PutBack(q, item));
                }
                self.slots.insert(tag, Slot::Done(Err(Dead::Timeout)));
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
        self.arm_writes(driver);
        if self.dead.is_some() || self.slots.is_empty() {
            return;
        }
        let Some(s) = self.s.as_ref() else { return };
        if keep_watching(&mut self.watch, s.fd(), Interest::Read, driver).is_err() {
            // (the descriptor cannot be watched: nothing would ever wake the futures)
            self.kill_disconnected();
            return;
        }
        // (no future waits: nothing is due, the timer is not armed; an abandoned
        // request's answer is read when it comes, as the readiness is still watched)
        let Some(at) = self.due else { return };
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

    /// When the next waiting future is due to give up: its deadline, or 30 s of the
    /// server's silence since it was sent (a server with parked requests of this connection sends a
    /// heartbeat every 5 s, any other answers at once). `None` when no future waits:
    /// abandoned requests are not timed (a timer armed for them at a time already
    /// past would fire at once, again and again).
    fn next_due(&self) -> Option<Instant> {
        let mut at = None;
        for slot in self.slots.values() {
            if let Slot::Waiting { deadline, sent, .. } = slot {
                let due = self.due_of(*deadline, *sent);
                at = Some(at.map_or(due, |a: Instant| a.min(due)));
            }
        }
        at
    }
}

impl Mux {
    /// The connection `s` of process `pid` to the manager at `address` with `key`.
    fn new(s: Session, pid: u32, address: &str, key: &Bytes) -> Arc<Mux> {
        let gone = Arc::new(AtomicBool::new(false));
        Arc::new_cyclic(|me: &Weak<Mux>| Mux {
            st: Mutex::new(State::new(Some(s), gone.clone())),
            driver: Waker::from(Arc::new(Driver(me.clone()))),
            need_drive: AtomicBool::new(false),
            next_tag: AtomicU64::new(1),
            gone,
            pid,
            address: address.to_string(),
            key: key.clone(),
        })
    }

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
            // (control frames `f` queued that the socket did not take: written on its
            // next readiness to write, if no one else does first)
            st.arm_writes(&self.driver);
            wake.append(&mut st.orphans);
            r
        };
        for w in wake {
            w.wake();
        }
        if self.need_drive.load(Ordering::SeqCst) {
            self.drive();
        }
        r
    }

    /// Whether it is the connection to the manager at `address` with `key`.
    pub(super) fn serves(&self, address: &str, key: &Bytes) -> bool {
        self.address == address && self.key == *key
    }

    /// Sends a request that is not answered (`End`, `PutBack`) without waiting (as
    /// a control frame: queued when the socket is full, see [`State::send`]); a
    /// connection given up sends nothing (what it held was released when it closed).
    pub(super) fn tell(&self, m: MuxReq) -> Result<(), ManagerError> {
        // (encoded before the state is taken)
        let buf = encode(0, m)?;
        self.with(|st, _| st.queue_frame(&buf))
    }

    /// Sends `m` and waits for its answer (see [`Call`]).
    pub(super) fn call(
        self: &Arc<Self>,
        m: impl FnOnce(u64) -> MuxReq,
        deadline: Option<Instant>,
        put_back_to: Option<u64>,
        end_owner: bool,
    ) -> Call {
        // (numbered and encoded before the state is taken: other callers wait only
        // for the write)
        let tag = self.next_tag.fetch_add(1, Ordering::Relaxed);
        let sent = encode(tag, m(tag)).and_then(|buf| {
            self.with(|st, _| {
                let sent = st.send_frame(&buf);
                if sent.is_ok() {
                    st.waiting(tag, deadline, Instant::now(), put_back_to, end_owner);
                }
                sent
            })
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
            // (the request is given up already; its answer is still to come)
            Some(Slot::TimedOut(q)) => {
                st.slots.insert(self.tag, Slot::Abandoned(q));
                self.done = true;
                Some(Err(ManagerError::Timeout))
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
            // cross-thread wake-ups a registered wait costs (the project's spin rules:
            // a single look with `PROCACTOR_SPIN=0` or while spinning is paused). The
            // looks yield the core between them, as the blocking client's do: on a
            // busy machine the server's thread may need it to answer (a busy spin here
            // measured 2-3x slower round trips, see the design notes)
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
                let now = Instant::now();
                if now >= until {
                    // (an overrun far past the budget: this thread lost its core
                    // meanwhile, and spinning pauses in the whole process)
                    procactor_transports::spin::note_overrun(until, now);
                    break;
                }
                procactor_transports::spin::yield_now();
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
            // (whether the owner is still to be ended: not when the request was given
            // up already, nor on a connection given up)
            let end = match st.slots.remove(&tag) {
                Some(Slot::Waiting { .. }) => {
                    st.slots.insert(tag, Slot::Abandoned(put_back_to));
                    let _ = st.send(0, MuxReq::Cancel(tag));
                    true
                }
                Some(Slot::Done(Ok(r))) => {
                    if let (Some(q), Resp::Opt(Some(item))) = (put_back_to, r) {
                        let _ = st.send(0, MuxReq::PutBack(q, item));
                    }
                    true
                }
                Some(Slot::TimedOut(q)) => {
                    st.slots.insert(tag, Slot::Abandoned(q));
                    false
                }
                _ => false,
            };
            if end && end_owner {
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

/// Keeps `slot` watching `fd` for `interest` on `driver`: a watch that has not fired is
/// left as it is, a fired one is armed again, and one is made when there is none.
fn keep_watching(
    slot: &mut Option<FdWatch>,
    fd: rustix::fd::BorrowedFd<'_>,
    interest: Interest,
    driver: &Waker,
) -> std::io::Result<()> {
    match slot {
        Some(w) if !w.fired() => Ok(()),
        Some(w) => w.rearm(driver),
        None => FdWatch::new(fd, interest, driver).map(|w| *slot = Some(w)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ago(secs: u64) -> Instant {
        Instant::now()
            .checked_sub(Duration::from_secs(secs))
            .expect("the monotonic clock is older than a minute")
    }

    fn state() -> State {
        State::new(None, Arc::new(AtomicBool::new(false)))
    }

    /// A state on a real connection (and the server's end, kept open and silent).
    fn connected() -> (State, Session) {
        let (c, s) = super::super::wire::tests::pair();
        (State::new(Some(c), Arc::new(AtomicBool::new(false))), s)
    }

    #[test]
    fn only_abandoned_requests_against_a_silent_server_arm_no_timer() {
        let mut st = state();
        st.heard = ago(60);
        st.slots.insert(1, Slot::Abandoned(Some(7)));
        st.slots.insert(2, Slot::Abandoned(None));
        st.slots.insert(3, Slot::Done(Ok(Resp::Unit)));
        assert_eq!(st.next_due(), None);
    }

    #[test]
    fn a_waiting_request_is_due_at_its_deadline_or_the_servers_silence() {
        let mut st = state();
        st.heard = ago(60);
        let sent = ago(50);
        st.slots.insert(1, Slot::Abandoned(None));
        st.slots.insert(
            2,
            Slot::Waiting {
                waker: None,
                deadline: None,
                sent,
                put_back_to: None,
                end_owner: false,
            },
        );
        assert_eq!(st.next_due(), Some(sent + REPLY_TIMEOUT));
        let soon = sent + Duration::from_secs(1);
        st.slots.insert(
            3,
            Slot::Waiting {
                waker: None,
                deadline: Some(soon),
                sent,
                put_back_to: None,
                end_owner: false,
            },
        );
        assert_eq!(st.next_due(), Some(soon));
    }

    #[test]
    fn a_wait_against_a_silent_server_ends_though_the_process_keeps_calling() {
        let (mut st, _server) = connected();
        let heard = ago(60);
        st.heard = heard;
        st.waiting(1, None, ago(40), None, false);
        // (a request just sent: sending is not hearing from the server)
        st.send(2, MuxReq::End(2)).unwrap();
        assert_eq!(st.heard, heard);
        st.waiting(2, None, Instant::now(), None, false);
        let mut wake = Vec::new();
        st.pump(&mut wake);
        assert_eq!(st.dead, Some(Dead::Disconnected));
        assert!(st.gone.load(Ordering::Acquire));
        assert!(matches!(
            st.slots.get(&1),
            Some(Slot::Done(Err(Dead::Disconnected)))
        ));
    }

    #[test]
    fn a_request_sent_to_a_server_silent_for_long_is_not_late_at_once() {
        let (mut st, _server) = connected();
        st.heard = ago(60);
        st.waiting(1, None, Instant::now(), None, false);
        let mut wake = Vec::new();
        st.pump(&mut wake);
        assert_eq!(st.dead, None);
        assert!(st.next_due().is_some_and(|d| d > Instant::now()));
    }

    #[test]
    fn the_slots_are_looked_at_again_only_once_the_earliest_time_passed() {
        let (mut st, _server) = connected();
        st.waiting(1, None, Instant::now(), None, false);
        let soon = Instant::now() + Duration::from_secs(5);
        st.waiting(2, Some(soon), Instant::now(), None, false);
        assert_eq!(st.due, Some(soon));
        // the early one answered, then dropped: the time kept is early, never late
        st.slots.remove(&2);
        let mut wake = Vec::new();
        st.pump(&mut wake);
        assert_eq!(st.due, Some(soon));
        // once it passed, the slots are looked at again and the next time found
        st.due = Some(ago(1));
        st.pump(&mut wake);
        assert_eq!(st.dead, None);
        assert_eq!(st.due, st.next_due());
        assert!(st.due.is_some_and(|d| d > soon));
        // only an abandoned request left: no time at all (no timer is armed)
        st.slots.insert(1, Slot::Abandoned(None));
        st.due = Some(ago(1));
        st.pump(&mut wake);
        assert_eq!(st.due, None);
    }

    /// The next request the server's end `s` receives (within 10 s).
    fn received(s: &mut Session) -> (u64, MuxReq) {
        let t = Duration::from_secs(10);
        let f = s.recv(MAX_FRAME, Some(Instant::now() + t), t).unwrap();
        match codec::decode::<Req>(&f, Vec::new()).unwrap() {
            Req::Mux(tag, m) => (tag, m),
            r => panic!("not a multiplexed request: {r:?}"),
        }
    }

    /// Sends answer `r` to request `tag` from the server's end `s`.
    fn answer_from(s: &mut Session, tag: u64, r: Resp) {
        let mut buf = Vec::new();
        codec::encode(&Resp::Tagged(tag, Box::new(r)), &mut buf, None).unwrap();
        s.send(&buf).unwrap();
    }

    /// `pump` until slot `tag` is no longer `pending` (within 10 s).
    fn pump_until(st: &mut State, what: &str, done: impl Fn(&State) -> bool) {
        let until = Instant::now() + Duration::from_secs(10);
        let mut wake = Vec::new();
        while !done(st) {
            assert!(Instant::now() < until, "{what}: not within 10 s");
            std::thread::sleep(Duration::from_millis(1));
            st.pump(&mut wake);
        }
    }

    #[test]
    fn a_call_past_its_deadline_is_given_up_alone_and_the_connection_stays() {
        let (mut st, mut server) = connected();
        let past = ago(1);
        // a queue's get (its item goes back to queue 7) and an acquisition (owner 2)
        // past their deadlines; another call without one
        st.waiting(1, Some(past), ago(2), Some(7), false);
        st.waiting(2, Some(past), ago(2), None, true);
        st.waiting(3, None, Instant::now(), None, false);
        let mut wake = Vec::new();
        st.pump(&mut wake);
        assert_eq!(st.dead, None, "the connection stays");
        assert!(st.s.is_some());
        assert!(matches!(st.slots.get(&1), Some(Slot::TimedOut(Some(7)))));
        assert!(matches!(st.slots.get(&2), Some(Slot::TimedOut(None))));
        assert!(matches!(st.slots.get(&3), Some(Slot::Waiting { .. })));
        // the next time is the waiting one's, not the given-up ones'
        assert_eq!(st.due, st.next_due());
        assert!(st.due.is_some_and(|d| d > Instant::now()));
        // both withdrawn, the acquisition's owner ended (the order between the two
        // calls is the slots' order)
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(match received(&mut server) {
                (0, MuxReq::Cancel(t)) => format!("cancel {t}"),
                (0, MuxReq::End(n)) => format!("end {n}"),
                other => panic!("unexpected {other:?}"),
            });
        }
        got.sort();
        assert_eq!(got, ["cancel 1", "cancel 2", "end 2"]);
        // the get's answer crossed the withdrawal: its item goes back, and its future
        // still finds `Timeout`
        answer_from(&mut server, 1, Resp::Opt(Some(Bytes::from(vec![9u8]))));
        pump_until(&mut st, "the late answer", |st| {
            matches!(st.slots.get(&1), Some(Slot::Done(Err(Dead::Timeout))))
        });
        match received(&mut server) {
            (0, MuxReq::PutBack(7, item)) => assert_eq!(&item[..], &[9u8]),
            other => panic!("unexpected {other:?}"),
        }
        // the other call is still answered on the same connection
        answer_from(&mut server, 3, Resp::Unit);
        pump_until(&mut st, "the other call's answer", |st| {
            matches!(st.slots.get(&3), Some(Slot::Done(Ok(Resp::Unit))))
        });
        assert_eq!(st.dead, None);
    }

    #[test]
    fn a_timed_out_call_seen_by_its_future_stays_abandoned_until_its_answer() {
        let (mut st, mut server) = connected();
        st.waiting(5, Some(ago(1)), ago(2), Some(4), false);
        let mut wake = Vec::new();
        st.pump(&mut wake);
        assert!(matches!(received(&mut server), (0, MuxReq::Cancel(5))));
        // its future takes `Timeout`; the slot waits for the answer as an abandoned one
        let m = Arc::new(Mux {
            st: Mutex::new(state()),
            need_drive: AtomicBool::new(false),
            driver: Waker::noop().clone(),
            next_tag: AtomicU64::new(6),
            gone: Arc::new(AtomicBool::new(false)),
            pid: 0,
            address: String::new(),
            key: Bytes::from(Vec::new()),
        });
        let mut call = Call {
            mux: m,
            tag: 5,
            sent: None,
            put_back_to: Some(4),
            end_owner: false,
            done: false,
        };
        assert!(matches!(
            call.take(&mut st),
            Some(Err(ManagerError::Timeout))
        ));
        assert!(matches!(st.slots.get(&5), Some(Slot::Abandoned(Some(4)))));
        answer_from(&mut server, 5, Resp::Opt(Some(Bytes::from(vec![1u8]))));
        pump_until(&mut st, "the late answer", |st| st.slots.is_empty());
        assert!(matches!(received(&mut server), (0, MuxReq::PutBack(4, _))));
        // (the call is done: its drop sends nothing)
        drop(call);
    }

    #[test]
    fn the_servers_silence_still_gives_the_connection_up_and_a_timed_out_call_keeps_its_timeout() {
        let (mut st, _server) = connected();
        st.heard = ago(60);
        st.waiting(1, Some(ago(1)), ago(40), None, false);
        st.waiting(2, None, ago(40), None, false);
        let mut wake = Vec::new();
        st.pump(&mut wake);
        assert_eq!(st.dead, Some(Dead::Disconnected));
        assert!(matches!(
            st.slots.get(&1),
            Some(Slot::Done(Err(Dead::Timeout)))
        ));
        assert!(matches!(
            st.slots.get(&2),
            Some(Slot::Done(Err(Dead::Disconnected)))
        ));
    }

    /// A waker that raises a flag.
    struct Flag(AtomicBool);

    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    fn flag() -> (Arc<Flag>, Waker) {
        let f = Arc::new(Flag(AtomicBool::new(false)));
        (f.clone(), Waker::from(f))
    }

    /// Waits (10 s at most) until `done()`.
    fn wait_for(what: &str, done: impl Fn() -> bool) {
        let until = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < until, "{what}: not within 10 s");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn control_frames_never_wait_for_a_full_socket_and_all_arrive_in_order() {
        // (a local socket: what it holds is bounded by the sender's buffer alone, and
        // stays until read — over TCP the kernel moves bytes on to the receiver's
        // buffer meanwhile; a small buffer: full after a few frames)
        let name = format!(
            "procactor-test-mux-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        );
        let address = procactor_transports::conn::Address::Local(name);
        let (c, mut server) = super::super::wire::tests::pair_on(&address);
        rustix::net::sockopt::set_socket_send_buffer_size(c.fd(), 4096).unwrap();
        let m = Mux::new(c, 0, "test", &Bytes::from(Vec::new()));
        // a request waits for its answer (the socket's readiness is watched), and
        // abandoned ones whose items must go back to queue 7
        const ABANDONED: u64 = 100;
        let (answered, waker) = flag();
        m.with(|st, _| {
            st.waiting(1, None, Instant::now(), None, false);
            if let Some(Slot::Waiting { waker: w, .. }) = st.slots.get_mut(&1) {
                *w = Some(waker);
            }
            for tag in 2..2 + ABANDONED {
                st.slots.insert(tag, Slot::Abandoned(Some(7)));
            }
            st.arm(&m.driver);
        });
        // frames the server does not read: kept past what the socket takes, and
        // sending them never waits (a blocking write would wait 5 s and fail)
        let backlog = || m.with(|st, _| st.s.as_ref().is_some_and(|s| s.backlog()));
        let mut n = 0u64;
        while !backlog() {
            m.tell(MuxReq::PutBack(1000 + n, Bytes::from(vec![n as u8; 512])))
                .unwrap();
            n += 1;
            assert!(n < 100_000, "the socket never filled");
        }
        // the answers come: the epoll thread reads them and gives each abandoned
        // request's item back (a frame more behind the full socket) without waiting,
        // and wakes the waiting request's future
        for tag in 2..2 + ABANDONED {
            let item = Bytes::from(tag.to_be_bytes().to_vec());
            answer_from(&mut server, tag, Resp::Opt(Some(item)));
        }
        answer_from(&mut server, 1, Resp::Unit);
        wait_for("the waiting request's answer", || {
            answered.0.load(Ordering::SeqCst)
        });
        m.with(|st, _| {
            assert_eq!(st.dead, None);
            assert!(matches!(st.slots.get(&1), Some(Slot::Done(Ok(Resp::Unit)))));
            assert!(st.slots.len() == 1, "every abandoned answer handled");
        });
        assert!(backlog(), "the server has read nothing yet");
        // the epoll thread still serves other waits
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let (ready, waker) = flag();
        let _w = FdWatch::new(rustix::fd::AsFd::as_fd(&b), Interest::Read, &waker).unwrap();
        std::io::Write::write_all(&mut &a, b"x").unwrap();
        wait_for("another descriptor's readiness", || {
            ready.0.load(Ordering::SeqCst)
        });
        // the server reads at last: every frame arrives, in order (the fillers, then
        // an item given back for each abandoned request, in the order of the answers),
        // written as the socket becomes writable (no one else takes the state now)
        for i in 0..n {
            match received(&mut server) {
                (0, MuxReq::PutBack(q, item)) => {
                    assert_eq!(q, 1000 + i);
                    assert_eq!(&item[..], &vec![i as u8; 512][..]);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        for tag in 2..2 + ABANDONED {
            match received(&mut server) {
                (0, MuxReq::PutBack(7, item)) => assert_eq!(&item[..], &tag.to_be_bytes()),
                other => panic!("unexpected {other:?}"),
            }
        }
        wait_for("everything written", || !backlog());
        m.with(|st, _| assert!(st.wwatch.is_none(), "no longer watched"));
    }
}
