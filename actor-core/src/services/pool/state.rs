//! The pool's bookkeeping, shared by its threads and its callers: the state under its
//! lock, the submission window, chunk payloads and the small helpers around them.

use super::fault;
use super::task_error::TaskError;
use super::wire::FnRef;
use crate::codec::{self, Encoded, Unsent};
use crate::error::{EncodeError, Error};
use crate::process::Process;
use crate::shared::RawArray;
use crate::Bytes;
use procactor_transports::fdpass;
use procactor_transports::frame;
use procactor_transports::{AsFd, BorrowedFd, OwnedFd};
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::task::Waker;
use std::time::{Duration, Instant};

// ------------------------------------------------------------------ the pool's side

pub(super) type Outcome = Result<Bytes, TaskError>;

/// Where a chunk's outcome goes: called exactly once, with the worker it was given to,
/// never under the pool's state lock (it may run a user's callback).
pub(super) type Sink = Box<dyn FnOnce(usize, u64, Outcome) + Send>;

/// What an [`AsyncResult`](super::AsyncResult) shares with the sinks of its chunks: whether its caller
/// reads the result ring itself (see `direct`), and the waker of a task `.await`ing it.
/// A sink wakes that task after it sent its outcome, from the thread that routed it (the
/// result thread, or a caller reading the ring): no thread of its own waits for awaited
/// results.
#[derive(Default)]
pub(super) struct Signal {
    pub(super) reading: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Signal {
    /// Wakes the task awaiting the result, if one is (an uncontended lock: the cost a
    /// sink adds to a result nobody awaits).
    fn wake(&self) {
        let w = self.waker.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(w) = w {
            w.wake();
        }
    }

    /// The awaiting task's waker, to be woken by the next outcome.
    pub(super) fn set(&self, waker: &Waker) {
        let mut g = self.waker.lock().unwrap_or_else(|e| e.into_inner());
        match &mut *g {
            Some(w) => w.clone_from(waker),
            None => *g = Some(waker.clone()),
        }
    }

    pub(super) fn clear(&self) {
        self.waker.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// A chunk's way back to its [`AsyncResult`](super::AsyncResult): the outcome goes on the channel, then the
/// awaiting task (if any) is woken; dropped without an outcome (the pool gone), it
/// still wakes it, after its sender is gone, so that the future sees the channel closed.
pub(super) struct Deliver {
    tx: Option<crossbeam_channel::Sender<(u64, Outcome)>>,
    signal: Arc<Signal>,
}

impl Deliver {
    pub(super) fn new(
        tx: crossbeam_channel::Sender<(u64, Outcome)>,
        signal: Arc<Signal>,
    ) -> Deliver {
        Deliver {
            tx: Some(tx),
            signal,
        }
    }

    /// Sends chunk `c`'s outcome (and wakes, as it is dropped).
    pub(super) fn send(mut self, c: u64, out: Outcome) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send((c, out));
        }
    }
}

impl Drop for Deliver {
    fn drop(&mut self) {
        self.tx.take();
        self.signal.wake();
    }
}

/// A chunk's arguments that hold handles, kept until the chunk finishes: the bytes and
/// the handles' descriptors (sent again to a replacement worker if needed).
pub(super) struct FdFrame {
    pub(super) bytes: Vec<u8>,
    pub(super) fds: Vec<OwnedFd>,
}

impl FdFrame {
    /// Writes what the socket takes now of this frame, from byte `*sent` on (the header
    /// counts); never blocks. `Ok(true)` once all of it is written, `Ok(false)` when the
    /// socket is full (call again later).
    pub(super) fn write_some(
        &self,
        sock: BorrowedFd<'_>,
        sent: &mut usize,
        fail: &fault::Counter,
    ) -> std::io::Result<bool> {
        if fail.hit() {
            return Err(std::io::Error::other(
                "injected failure (too many open files)",
            ));
        }
        let h = frame::header(self.bytes.len(), self.fds.len());
        let total = frame::HEADER_LEN + self.bytes.len();
        while *sent < total {
            let res = if *sent < frame::HEADER_LEN {
                // (the descriptors go with the first byte written)
                let fds: Vec<BorrowedFd<'_>> = if *sent == 0 {
                    self.fds.iter().map(|f| f.as_fd()).collect()
                } else {
                    Vec::new()
                };
                fdpass::send(sock, &[&h[*sent..], &self.bytes], &fds, true)
            } else {
                fdpass::send(sock, &[&self.bytes[*sent - frame::HEADER_LEN..]], &[], true)
            };
            match res {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => *sent += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

/// A chunk's encoded arguments.
pub(super) enum Payload {
    /// No handles: the bytes go through the worker's ring.
    Plain(Bytes),
    /// Handles: through the worker's socket.
    Fds(Arc<FdFrame>),
}

impl Payload {
    /// What it counts in the submission window.
    pub(super) fn cost(&self) -> Cost {
        match self {
            Payload::Plain(b) => Cost {
                chunks: 1,
                bytes: b.len(),
                fds: 0,
            },
            Payload::Fds(f) => Cost {
                chunks: 1,
                bytes: f.bytes.len(),
                fds: f.fds.len(),
            },
        }
    }
}

/// Chunks, argument bytes and duplicated descriptors: what the submission window
/// bounds (see [`SUBMIT_WINDOW_CHUNKS`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Cost {
    pub(super) chunks: usize,
    pub(super) bytes: usize,
    pub(super) fds: usize,
}

impl Cost {
    /// Whether `more` fits in the window on top of `self` (an empty window takes any
    /// one chunk, however large, so that nothing waits forever).
    pub(super) fn admits(&self, more: Cost) -> bool {
        *self == Cost::default()
            || (self.chunks + more.chunks <= SUBMIT_WINDOW_CHUNKS
                && self.bytes + more.bytes <= SUBMIT_WINDOW_BYTES
                && self.fds + more.fds <= SUBMIT_WINDOW_FDS)
    }
    pub(super) fn add(&mut self, c: Cost) {
        self.chunks += c.chunks;
        self.bytes += c.bytes;
        self.fds += c.fds;
    }
    pub(super) fn sub(&mut self, c: Cost) {
        self.chunks = self.chunks.saturating_sub(c.chunks);
        self.bytes = self.bytes.saturating_sub(c.bytes);
        self.fds = self.fds.saturating_sub(c.fds);
    }
}

/// The most chunks accepted by the pool and not finished (in the submission queue, in
/// workers' rings or running) before a submitting call waits: see [`Pool`](super::Pool)'s
/// "Submission" section.
pub const SUBMIT_WINDOW_CHUNKS: usize = 1 << 16;
/// The most bytes of encoded arguments accepted and not finished before a submitting
/// call waits (a single larger chunk is taken when nothing else is in flight).
pub const SUBMIT_WINDOW_BYTES: usize = 256 << 20;
/// The most descriptors held for handle arguments of chunks accepted and not finished
/// before a submitting call waits.
pub const SUBMIT_WINDOW_FDS: usize = 256;

/// The slot of a chunk not given to a worker yet.
pub(super) const NO_WORKER: usize = usize::MAX;

pub(super) struct Pending {
    /// Its worker's slot, or `NO_WORKER` while in the submission queue.
    pub(super) worker: usize,
    pub(super) sink: Sink,
    /// The arguments of a chunk sent through the worker's socket.
    pub(super) frame: Option<Arc<FdFrame>>,
    /// What it counts in the submission window.
    pub(super) cost: Cost,
    /// When it was given to its worker.
    pub(super) given: Option<Instant>,
    /// Why its frame could not be written to its worker's socket: it fails with this
    /// when that worker is gone, instead of being requeued (see `Inner::pump`).
    pub(super) unsendable: Option<String>,
}

/// A chunk accepted and not yet given to a worker.
pub(super) struct Sub {
    pub(super) chunk: u64,
    pub(super) fid: u32,
    pub(super) payload: Payload,
}

/// Where an `AsyncResult`'s chunks arrive.
pub(super) type ResultsRx = crossbeam_channel::Receiver<(u64, Outcome)>;
/// Sees one task's outcome on the result thread (runs its callbacks).
pub(super) type Hook = Box<dyn FnOnce(&Outcome) + Send>;
/// Sees every chunk's outcome of a `map_async_with`, in order, once all are there.
pub(super) type OnAll = Box<dyn FnOnce(&[Outcome]) + Send>;
/// Runs a `map_async_with`'s error callback.
pub(super) type OnErr = Box<dyn FnOnce(TaskError) + Send>;
/// What an `Imap` holds of its type parameters and the pool's borrow.
pub(super) type Marker<'p, A, R, I> = PhantomData<(&'p (), fn(A, I) -> R)>;

/// Sinks to call once the state lock is released.
pub(super) type Finished = Vec<(usize, u64, Sink, Outcome)>;

pub(super) fn run_sinks(done: Finished) {
    for (w, c, sink, out) in done {
        sink(w, c, out);
    }
}

pub(super) struct Worker {
    pub(super) cell: RawArray<u64>,
    pub(super) proc: Option<Process<()>>,
    /// The pool's end of this worker's task socket.
    pub(super) sock: Option<Arc<OwnedFd>>,
    /// Chunks put in this worker's ring and not finished, in ring order.
    pub(super) outstanding: VecDeque<u64>,
    /// Exits in a row before being ready.
    pub(super) start_failures: u32,
    /// Given up (see `MAX_START_FAILURES`).
    pub(super) broken: bool,
    /// The functions it knows: ids `1..=known` (from its boot or registrations put in
    /// its ring).
    pub(super) known: u32,
    /// Frames of handle chunks (with their chunk) still to write to its socket, in ring
    /// order; the first one may be partly written (`frame_sent` bytes).
    pub(super) frames: VecDeque<(u64, Arc<FdFrame>)>,
    pub(super) frame_sent: usize,
    /// Results received from its current process (compared with its `CELL_SENT`).
    pub(super) received: u64,
    /// When it last finished a chunk.
    pub(super) last_done: Option<Instant>,
    /// Replacements installed in this slot (deaths and `maxtasksperchild` recycling).
    pub(super) restarts: u64,
}

impl Worker {
    pub(super) fn new(cell: RawArray<u64>) -> Worker {
        Worker {
            cell,
            proc: None,
            sock: None,
            outstanding: VecDeque::new(),
            start_failures: 0,
            broken: false,
            known: 0,
            frames: VecDeque::new(),
            frame_sent: 0,
            received: 0,
            last_done: None,
            restarts: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Running,
    Closed,
    Terminated,
}
pub(super) struct State {
    pub(super) workers: Vec<Worker>,
    pub(super) pending: HashMap<u64, Pending>,
    /// The submission queue: chunks accepted, waiting for a worker with room.
    pub(super) queue: VecDeque<Sub>,
    /// What the chunks accepted and not finished hold.
    pub(super) in_flight: Cost,
    pub(super) fns: Vec<(u32, FnRef, FnRef)>,
    pub(super) fn_ids: HashMap<(FnRef, FnRef), u32>,
    /// The ids of zero-sized targets by their types (target, argument, result,
    /// signature), which alone decide their description.
    pub(super) fn_by_type: HashMap<std::any::TypeId, u32>,
    pub(super) next_chunk: u64,
    pub(super) phase: Phase,
    /// The time one chunk takes in a worker (moving average, seconds).
    pub(super) service: Option<f64>,
    /// How many chunks each worker's ring may hold (see `window_for`).
    pub(super) depth: usize,
    /// The dispatcher sleeps on `dcv`.
    pub(super) dispatcher_waiting: bool,
    /// Threads sleeping on `cv` (submitters waiting for the window, `join`).
    pub(super) cv_waiters: usize,
    /// Pids of workers that exited before their slot recorded them (see `install`).
    pub(super) early_exits: Vec<u32>,
}

/// A worker slot whose process exits this many times in a row before being ready (its
/// initializer fails) is given up: its chunks fail instead of waiting forever.
pub(super) const MAX_START_FAILURES: u32 = 3;
/// Encodes the initializer's arguments afresh for each worker start.
pub(super) type InitArgs = Box<dyn Fn() -> Result<Encoded, crate::EncodeError> + Send + Sync>;
/// Removes chunk `c` from the pending ones (and its worker's ring record, and the
/// window).
pub(super) fn take_pending(st: &mut State, c: u64) -> Option<Pending> {
    let p = st.pending.remove(&c)?;
    st.in_flight.sub(p.cost);
    if let Some(w) = st.workers.get_mut(p.worker) {
        if let Some(pos) = w.outstanding.iter().position(|&x| x == c) {
            w.outstanding.remove(pos);
        }
    }
    Some(p)
}

/// Updates the estimate of a chunk's time in a worker, hence how many chunks a worker's
/// ring may hold.
pub(super) fn note_service(st: &mut State, p: &Pending) {
    let (Some(given), Some(w)) = (p.given, st.workers.get_mut(p.worker)) else {
        return;
    };
    let now = Instant::now();
    // it started when it was given or when the previous one finished, the later
    let start = match w.last_done {
        Some(t) if t > given => t,
        _ => given,
    };
    w.last_done = Some(now);
    let sample = now.saturating_duration_since(start).as_secs_f64();
    let s = match st.service {
        None => sample,
        Some(s) => s * 0.875 + sample * 0.125,
    };
    st.service = Some(s);
    st.depth = window_for(Duration::from_secs_f64(s));
}

/// Fails the pending chunks `ids` with `why`.
pub(super) fn fail_pending(
    st: &mut State,
    ids: impl IntoIterator<Item = u64>,
    why: &TaskError,
) -> Finished {
    ids.into_iter()
        .filter_map(|c| take_pending(st, c).map(|p| (p.worker, c, p.sink, Err(why.clone()))))
        .collect()
}
pub(super) fn all_broken() -> String {
    format!(
        "every pool worker failed to start {MAX_START_FAILURES} times in a row \
         (does the initializer fail?)"
    )
}
pub(super) fn closed() -> Error {
    Error::InvalidArgument("the pool is closed: no new tasks".into())
}

/// The default chunk size: Python's `ceil(len / (4 × processes))`.
pub(super) fn default_chunksize(len: usize, processes: usize) -> usize {
    let d = 4 * processes.max(1);
    len.div_ceil(d).max(1)
}

/// How much expected work an operation queues in each worker's ring: enough to hide the
/// wake-ups between chunks when tasks are short, little enough that a slow task holds
/// back at most about this much work queued behind it (a worker's ring is its own).
pub(super) const QUEUED_WORK: Duration = Duration::from_millis(1);
/// The most chunks one operation keeps in one worker's ring.
pub(super) const MAX_WINDOW: usize = 256;

/// How many chunks per worker an `imap` (or `map`) keeps submitted and not yet read by
/// its iterator: its memory bound with an endless input is this × `processes` chunks of
/// results and arguments (see [`Imap::window`](super::Imap::window)).
pub const IMAP_WINDOW_PER_WORKER: usize = MAX_WINDOW;

/// The window for chunks that take `service` each in a worker.
pub(super) fn window_for(service: Duration) -> usize {
    let s = service.as_nanos().max(1);
    (QUEUED_WORK.as_nanos().div_ceil(s) as usize).clamp(1, MAX_WINDOW)
}

/// Encodes a chunk's arguments, with the descriptors of the handles inside them; the
/// guard undoes the handles' side effects unless told the chunk was sent.
pub(super) fn encode_chunk<A: Serialize>(items: &[A]) -> Result<(Payload, Unsent), EncodeError> {
    let mut buf = Vec::new();
    let mut fds = Vec::new();
    let unsent = codec::encode_for_sending(items, &mut buf, Some(&mut fds))?;
    let payload = if fds.is_empty() {
        Payload::Plain(Bytes::from(buf))
    } else if fds.len() > fdpass::MAX_FDS_PER_MSG {
        return Err(EncodeError(format!(
            "a chunk's arguments hold {} descriptors, more than the {} one message can \
             carry: use a smaller chunksize",
            fds.len(),
            fdpass::MAX_FDS_PER_MSG
        )));
    } else {
        Payload::Fds(Arc::new(FdFrame { bytes: buf, fds }))
    };
    Ok((payload, unsent))
}

pub(super) fn encode_failed(e: EncodeError) -> TaskError {
    TaskError::Failed(format!("could not encode the arguments: {}", e.0))
}

/// Runs a user's callback on the result thread; a panic in it is logged, not spread.
pub(super) fn guarded(what: &str, f: impl FnOnce()) {
    if std::panic::catch_unwind(AssertUnwindSafe(f)).is_err() {
        tracing::error!("pool: a {what} panicked (ignored)");
    }
}
