//! [`Pool`]: Python's `multiprocessing.Pool`, which never hangs when a worker dies.
//!
//! # How it works
//!
//! Each worker process has its own task ring (a [`Queue`]) and a small shared cell
//! naming the chunk it is running; all workers put their results on one result ring,
//! which a collector thread (the pool's *result thread*) reads and routes to whoever
//! waits (a `map`, an `imap` iterator, an [`AsyncResult`], a callback). The pool
//! therefore knows, at every moment, which chunks sit in which worker's ring.
//!
//! **Handles as task arguments.** A chunk whose arguments hold procactor handles (a
//! `Queue`, a `Lock`, a `Value`, a Pipe's `Connection`…) cannot travel through shared
//! memory: its arguments go, with their descriptors (`SCM_RIGHTS`), over a socket of
//! the worker's own, and only a marker goes into the ring, at the chunk's place. Chunks
//! without handles take the ring alone, as fast as before. The pool keeps a handle
//! chunk's encoded arguments until it finishes, so that a replacement worker can be
//! sent them again.
//!
//! When a worker dies (a signal, an abort, the OOM killer) the exit watcher puts a
//! notice on the result ring *behind* every result the dead worker published; when the
//! collector reaches it, it takes back what is still queued in that worker's ring,
//! fails exactly the chunks that are neither queued nor finished — the one the worker was
//! running (or had half taken) — with [`TaskError::WorkerDied`], starts a replacement on
//! the same ring and puts the queued chunks back. Nothing is lost, nothing runs twice,
//! and no call waits forever.
//!
//! A task that panics is caught in the worker: its item gets [`TaskError::Panicked`],
//! the rest of its chunk and the worker go on. The panic is not printed on the worker's
//! stderr (Python's pool does not print a task's exception either: it goes back to the
//! caller) unless `PROCACTOR_LOG=debug` (or `trace`) is set.
//!
//! # Chunks
//!
//! `map` and friends send items in chunks (one message and one result per chunk). The
//! default chunk size is Python's: `len / (4 × processes)`, rounded up; `imap` and
//! `imap_unordered` default to 1, as in Python. A worker that dies takes its whole chunk
//! with it: each item of that chunk gets `WorkerDied`. `maxtasksperchild` counts chunks,
//! as Python counts its tasks.
//!
//! # imap runs eagerly, with a bounded window
//!
//! As in Python, `imap` and `imap_unordered` submit their tasks at the call: the pool's
//! feeder thread (one per pool, Python's task handler) reads every input, a chunk of
//! each in turn, and submits the chunks whether or not the results are read, so
//! `pool.imap(f, items)` followed by `close()` and `join()` runs every task. Unlike
//! Python, which reads the whole input at once, the feeder keeps at most
//! [`IMAP_WINDOW_PER_WORKER`] × `processes` chunks of one input submitted and not yet read
//! ([`Imap::window`]): an endless input works with flat memory. While [`Pool::join`]
//! waits, the window does not hold the feeder back (results then wait for their reader
//! in memory, as in Python). An input whose `next` blocks holds back the other `imap` and
//! `map` inputs of the pool (as in Python), not `apply_async`/`map_async`.
//!
//! Once an iterator is dropped, its results are thrown away and its input is read at
//! most one window further (so a dropped `imap` over an endless input stops), unless
//! [`Pool::close`] comes first: then all of it is read, as Python's `close(); join()`
//! does.
//!
//! # Submission never waits for a worker
//!
//! Chunks go into the pool's submission queue, from which the caller itself, the result
//! thread and a dispatcher thread give each worker what it has room for (see [`Pool`],
//! "Submission", for the window that bounds memory). A handle chunk's frame is written
//! to the worker's socket without blocking, as the socket takes it; a write that fails
//! kills that worker (it is replaced, its queued chunks go back to the submission queue,
//! the chunk it was running fails with [`TaskError::WorkerDied`]). A chunk a ring
//! refuses fails with [`TaskError::Failed`]; a result the pool cannot decode gets the
//! workers that may have sent it replaced, so the chunk it was for fails too: nothing
//! waits for ever.
//!
//! # Worker names
//!
//! Workers are named as Python names them: `SpawnPoolWorker-N`, `ForkServerPoolWorker-N`
//! or `ForkPoolWorker-N` by start method, `N` counting from 1 over every pool worker this
//! process started (a replacement gets the next number). Python's `N` is the counter
//! of every child process; procactor counts pool workers alone.

use crate::codec::{self, Encoded, RecvFd, SendFd, Unsent};
use crate::error::{EncodeError, Error, SpawnError};
use crate::monitor::{ExitRoute, ExitWatcher};
use crate::process::{start_encoded_via, Process};
use crate::queue::Queue;
use crate::runtime::{self, StartMethod};
use crate::shared::RawArray;
use crate::{Bytes, ExitStatus, GetError, Message};
use procactor_transports::deadline::Deadline;
use procactor_transports::fdpass;
use procactor_transports::frame::{self, FrameReader, Wait};
use procactor_transports::target::{self, SameImage, Target, TargetRef};
use procactor_transports::{AsFd, BorrowedFd, OwnedFd};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Why one task has no result.
///
/// `E` is the type of a task's own error: `String` for the plain operations (`map`,
/// `apply`…), whose tasks return a value, and the task's `E` for the `try_` operations
/// ([`Pool::try_map`], [`Pool::try_apply`], [`Pool::try_apply_async`]), whose tasks
/// return `Result<R, E>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError<E = String> {
    /// The task panicked; the message (and location) of its panic.
    #[error("the task panicked: {message}")]
    Panicked {
        /// The panic message.
        message: String,
    },
    /// The worker process running the task died (its exit status); the pool replaced it.
    #[error("the worker running the task died ({0})")]
    WorkerDied(ExitStatus),
    /// [`AsyncResult::get_timeout`] or [`Imap::next_timeout`] ran out of time (the task
    /// may still finish).
    #[error("timed out waiting for the result")]
    Timeout,
    /// The task failed. For the `try_` operations: the `Err(e)` the task returned. For
    /// the plain ones (`E = String`): why the task could not complete — an argument that
    /// cannot be encoded, a result that cannot be decoded, the pool terminated before it
    /// ran.
    #[error("the task failed: {0}")]
    Failed(E),
    /// The `try_` operations only: the pool could not run the task or deliver its
    /// result (what the plain operations report as `Failed(String)`).
    #[error("the task could not complete: {0}")]
    Pool(String),
}

impl TaskError {
    /// This error for a `try_` operation: the task's own errors are `Failed(E)`, so the
    /// pool's reasons become `Pool(String)`.
    fn typed<E>(self) -> TaskError<E> {
        match self {
            TaskError::Panicked { message } => TaskError::Panicked { message },
            TaskError::WorkerDied(s) => TaskError::WorkerDied(s),
            TaskError::Timeout => TaskError::Timeout,
            TaskError::Failed(m) | TaskError::Pool(m) => TaskError::Pool(m),
        }
    }
}

// ------------------------------------------------------------------ wire

/// What a worker's task ring carries.
#[derive(Serialize, Deserialize)]
enum TaskMsg {
    /// A function the following chunks call: id, binder, target.
    #[serde(rename = "f")]
    Register(u32, FnRef, FnRef),
    /// Run chunk `id` with function `f` over the CBOR of a `Vec<A>`.
    #[serde(rename = "r")]
    Run(u64, u32, Bytes),
    /// Run chunk `id` with function `f`; its arguments hold handles and come, with their
    /// descriptors, as the next frame on the worker's task socket.
    #[serde(rename = "s")]
    RunSocket(u64, u32),
}

/// A function reference as it travels: image-relative address, type name and the MAC
/// that lets a process of this tree resolve it (see `procactor_transports::target`).
/// Public (hidden) for `procactor-redis`, whose local workers receive theirs the same way.
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FnRef(pub i64, pub String, pub u64);

impl FnRef {
    /// Describes function pointer `f`.
    pub fn of<F: Copy + 'static>(f: F) -> FnRef {
        FnRef::from(target::describe(f))
    }
    /// The reference as `procactor_transports::target` resolves it (which checks its
    /// MAC).
    pub fn target(&self) -> TargetRef {
        TargetRef::from_parts(self.0, self.1.clone(), self.2)
    }
}

impl From<TargetRef> for FnRef {
    fn from(t: TargetRef) -> FnRef {
        let (offset, name, mac) = t.into_parts();
        FnRef(offset, name, mac)
    }
}

/// What the result ring carries.
#[derive(Serialize, Deserialize)]
enum ResultMsg {
    /// Chunk `id` is done (by worker slot `w`): the CBOR of its results, or why the whole
    /// chunk failed.
    #[serde(rename = "d")]
    Done(u64, u32, Result<Bytes, String>),
    /// Worker `i` has exited (put by the pool's exit watcher, behind the worker's last
    /// result).
    #[serde(rename = "x")]
    Exited(u32),
    /// The collector should end (the pool is gone).
    #[serde(rename = "q")]
    Quit,
}

/// What a worker puts on the result ring: a [`ResultMsg::Done`] as the collector reads
/// it, or (fault injection only, with the `test-hooks` feature) an item the collector
/// cannot decode.
#[derive(Serialize, Deserialize)]
enum WorkerResult {
    #[serde(rename = "d")]
    Done(u64, u32, Result<Bytes, String>),
    /// Not a `ResultMsg`: undecodable for the collector.
    #[cfg(feature = "test-hooks")]
    #[serde(rename = "garbage")]
    Garbage(u64),
}

/// Test-only fault injection (hidden, not part of the API; only with the `test-hooks`
/// feature, which the workspace's own tests turn on): makes the pool's own
/// operations fail as the OS or a broken worker could, so that tests can show that no
/// task is stranded when they do (the pool's side: [`Pool::fail_next_frame_writes`],
/// [`Pool::fail_next_ring_puts`]). Each counter is "the next `n` such operations fail".
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
pub mod fault {
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// "The next `n` such operations fail".
    pub(super) struct Counter(AtomicUsize);

    impl Counter {
        pub(super) const fn new() -> Self {
            Counter(AtomicUsize::new(0))
        }

        pub(super) fn set(&self, n: usize) {
            self.0.store(n, Ordering::SeqCst);
        }

        /// Whether the next operation counted here fails (counting it down).
        pub(super) fn hit(&self) -> bool {
            self.0.load(Ordering::Relaxed) != 0
                && self
                    .0
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
                    .is_ok()
        }
    }

    pub(super) static RESULTS: Counter = Counter::new();

    /// Called from a task, in a worker: the next `n` results this worker sends are
    /// garbage the pool cannot decode.
    pub fn send_garbage_results(n: usize) {
        RESULTS.set(n);
    }
}

/// Without the `test-hooks` feature: no fault injection. The counters are zero-sized
/// and never fire; their checks are a constant `false` the compiler removes.
#[cfg(not(feature = "test-hooks"))]
mod fault {
    pub(super) struct Counter;

    impl Counter {
        pub(super) const fn new() -> Self {
            Counter
        }

        #[inline(always)]
        pub(super) fn hit(&self) -> bool {
            false
        }
    }
}

/// A chunk's results as the worker encodes them: all values when nothing panicked,
/// else one `Result` per item.
type ChunkOut<R> = Result<Vec<R>, Vec<Result<R, String>>>;

/// A bound function in a worker: decodes a chunk (bytes and the descriptors of its
/// handles), runs it, encodes its results.
type Runner = Box<dyn Fn(&[u8], Vec<OwnedFd>) -> Result<Vec<u8>, String>>;
/// The non-generic signature of every binder.
type BindFn = fn(&TargetRef, &SameImage) -> Option<Runner>;
/// The non-generic signature of every initializer trampoline.
type InitFn = fn(&TargetRef, &SameImage, Encoded) -> Result<(), String>;
/// Encodes the initializer's arguments afresh for each worker start.
type InitArgs = Box<dyn Fn() -> Result<Encoded, crate::EncodeError> + Send + Sync>;

fn bind<A: Message, R: Message, S: 'static, F: Target<A, S, Output = R>>(
    target: &TargetRef,
    proof: &SameImage,
) -> Option<Runner> {
    let f = target::resolve_target::<F, A, S>(target, proof).ok()?;
    Some(Box::new(move |bytes: &[u8], fds: Vec<OwnedFd>| {
        let args: Vec<A> =
            codec::decode(bytes, fds).map_err(|e| format!("decoding the arguments: {e}"))?;
        let mut ok = Vec::with_capacity(args.len());
        let mut mixed: Option<Vec<Result<R, String>>> = None;
        for a in args {
            // (the panic goes back as the item's result: not printed, see the module)
            let r = runtime::quietly(|| std::panic::catch_unwind(AssertUnwindSafe(|| f.call(a))))
                .map_err(|p| runtime::take_panic_message(&*p));
            match (&mut mixed, r) {
                (None, Ok(v)) => ok.push(v),
                (None, Err(m)) => {
                    let mut all: Vec<Result<R, String>> = ok.drain(..).map(Ok).collect();
                    all.push(Err(m));
                    mixed = Some(all);
                }
                (Some(all), r) => all.push(r),
            }
        }
        let out: ChunkOut<R> = match mixed {
            None => Ok(ok),
            Some(all) => Err(all),
        };
        let mut buf = Vec::new();
        codec::encode(&out, &mut buf, None).map_err(|e| format!("encoding the results: {e}"))?;
        Ok(buf)
    }))
}

fn init_trampoline<A: Message, S: 'static, F: Target<A, S, Output = ()>>(
    target: &TargetRef,
    proof: &SameImage,
    args: Encoded,
) -> Result<(), String> {
    let f = target::resolve_target::<F, A, S>(target, proof)
        .map_err(|e| format!("initializer: {e}"))?;
    let a: A = args.decode().map_err(|e| e.to_string())?;
    f.call(a);
    Ok(())
}

/// Words of a worker's cell: the chunk it runs, 1 once it is ready (initialized), and
/// how many results it has started to put on the result ring.
const CELL_CHUNK: usize = 0;
const CELL_READY: usize = 1;
const CELL_SENT: usize = 2;
const CELL_WORDS: usize = 3;
/// A worker slot whose process exits this many times in a row before being ready (its
/// initializer fails) is given up: its chunks fail instead of waiting forever.
const MAX_START_FAILURES: u32 = 3;

/// A worker's end of its task socket, as it travels in its boot.
struct TaskSocket(OwnedFd);

impl Serialize for TaskSocket {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        SendFd(self.0.as_fd()).serialize(s)
    }
}

impl<'de> Deserialize<'de> for TaskSocket {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        RecvFd::deserialize(d).map(|f| TaskSocket(f.0))
    }
}

/// What a worker process receives.
#[derive(Serialize, Deserialize)]
struct WorkerBoot {
    tasks: Queue<TaskMsg>,
    results: Queue<WorkerResult>,
    /// Its slot (named in its results).
    slot: u32,
    cell: RawArray<u64>,
    /// Its end of the task socket (chunks whose arguments hold handles).
    sock: TaskSocket,
    fns: Vec<(u32, FnRef, FnRef)>,
    init: Option<(FnRef, FnRef, Encoded)>,
    maxtasks: u64,
}

#[derive(Serialize)]
struct WorkerBootRef<'a> {
    tasks: &'a Queue<TaskMsg>,
    results: &'a Queue<ResultMsg>,
    slot: u32,
    cell: &'a RawArray<u64>,
    sock: SendFd<'a>,
    fns: &'a [(u32, FnRef, FnRef)],
    init: Option<(&'a FnRef, &'a FnRef, Encoded)>,
    maxtasks: u64,
}

/// The target of every worker process.
fn worker_main(boot: WorkerBoot) {
    let WorkerBoot {
        tasks,
        results,
        slot,
        cell,
        sock,
        fns,
        init,
        maxtasks,
    } = boot;
    tasks.close(); // the pool is the one sender of tasks
    let proof = match runtime::image_proof() {
        Ok(p) => p,
        Err(e) => panic!("pool worker: {e}"),
    };
    if let Some((tramp, target, args)) = init {
        let t: InitFn = target::resolve_checked(&tramp.target(), proof)
            .unwrap_or_else(|e| panic!("pool worker: initializer trampoline: {e}"));
        if let Err(e) = t(&target.target(), proof, args) {
            panic!("pool worker: initializer failed: {e}");
        }
    }
    if let Some(w) = cell.atomic_u64(CELL_READY) {
        w.store(1, Ordering::Release);
    }
    let mut runners: HashMap<u32, Runner> = HashMap::new();
    let register = |runners: &mut HashMap<u32, Runner>, id: u32, b: &FnRef, t: &FnRef| {
        let binder: Option<BindFn> = target::resolve_checked(&b.target(), proof).ok();
        if let Some(r) = binder.and_then(|binder| binder(&t.target(), proof)) {
            runners.insert(id, r);
        }
    };
    for (id, b, t) in &fns {
        register(&mut runners, *id, b, t);
    }
    let chunk_word = cell.atomic_u64(CELL_CHUNK);
    let mut reader = FrameReader::new();
    let mut done = 0u64;
    loop {
        let (chunk, f, args, fds) = match tasks.get() {
            Ok(TaskMsg::Register(id, b, t)) => {
                register(&mut runners, id, &b, &t);
                continue;
            }
            Ok(TaskMsg::Run(chunk, f, args)) => (chunk, f, Ok(args), Vec::new()),
            Ok(TaskMsg::RunSocket(chunk, f)) => {
                match reader.fill(sock.0.as_fd(), Wait::Forever, None) {
                    Ok(_) => {
                        let args = Bytes::from(reader.payload());
                        (chunk, f, Ok(args), reader.consume())
                    }
                    Err(e) => (
                        chunk,
                        f,
                        Err(format!("reading the task's arguments from the pool: {e}")),
                        Vec::new(),
                    ),
                }
            }
            Err(GetError::Disconnected) => return, // the pool is gone or closed
            Err(GetError::Decode(e)) => {
                tracing::error!(error = %e, "pool worker: undecodable task skipped");
                continue;
            }
            Err(GetError::Broken) => panic!("pool worker: the task ring is broken"),
        };
        if let Some(w) = chunk_word {
            w.store(chunk, Ordering::Release);
        }
        let out = args.and_then(|args| match runners.get(&f) {
            Some(run) => run(&args, fds).map(Bytes::from),
            None => Err(format!("unknown function {f} in the worker")),
        });
        if let Some(w) = cell.atomic_u64(CELL_SENT) {
            w.fetch_add(1, Ordering::AcqRel);
        }
        #[cfg(feature = "test-hooks")]
        let msg = if fault::RESULTS.hit() {
            WorkerResult::Garbage(chunk)
        } else {
            WorkerResult::Done(chunk, slot, out)
        };
        #[cfg(not(feature = "test-hooks"))]
        let msg = WorkerResult::Done(chunk, slot, out);
        if let Err(e) = results.put(msg) {
            panic!("pool worker: the result ring refused a result: {e}");
        }
        if let Some(w) = chunk_word {
            w.store(0, Ordering::Release);
        }
        done += 1;
        if maxtasks != 0 && done >= maxtasks {
            return; // recycled: the pool starts a fresh worker on this ring
        }
    }
}

// ------------------------------------------------------------------ the pool's side

type Outcome = Result<Bytes, TaskError>;

/// Where a chunk's outcome goes: called exactly once, with the worker it was given to,
/// never under the pool's state lock (it may run a user's callback).
type Sink = Box<dyn FnOnce(usize, u64, Outcome) + Send>;

/// A chunk's arguments that hold handles, kept until the chunk finishes: the bytes and
/// the handles' descriptors (sent again to a replacement worker if needed).
struct FdFrame {
    bytes: Vec<u8>,
    fds: Vec<OwnedFd>,
}

impl FdFrame {
    /// Writes what the socket takes now of this frame, from byte `*sent` on (the header
    /// counts); never blocks. `Ok(true)` once all of it is written, `Ok(false)` when the
    /// socket is full (call again later).
    fn write_some(
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
enum Payload {
    /// No handles: the bytes go through the worker's ring.
    Plain(Bytes),
    /// Handles: through the worker's socket.
    Fds(Arc<FdFrame>),
}

impl Payload {
    /// What it counts in the submission window.
    fn cost(&self) -> Cost {
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
struct Cost {
    chunks: usize,
    bytes: usize,
    fds: usize,
}

impl Cost {
    /// Whether `more` fits in the window on top of `self` (an empty window takes any
    /// one chunk, however large, so that nothing waits forever).
    fn admits(&self, more: Cost) -> bool {
        *self == Cost::default()
            || (self.chunks + more.chunks <= SUBMIT_WINDOW_CHUNKS
                && self.bytes + more.bytes <= SUBMIT_WINDOW_BYTES
                && self.fds + more.fds <= SUBMIT_WINDOW_FDS)
    }
    fn add(&mut self, c: Cost) {
        self.chunks += c.chunks;
        self.bytes += c.bytes;
        self.fds += c.fds;
    }
    fn sub(&mut self, c: Cost) {
        self.chunks = self.chunks.saturating_sub(c.chunks);
        self.bytes = self.bytes.saturating_sub(c.bytes);
        self.fds = self.fds.saturating_sub(c.fds);
    }
}

/// The most chunks accepted by the pool and not finished (in the submission queue, in
/// workers' rings or running) before a submitting call waits: see [`Pool`]'s
/// "Submission" section.
pub const SUBMIT_WINDOW_CHUNKS: usize = 1 << 16;
/// The most bytes of encoded arguments accepted and not finished before a submitting
/// call waits (a single larger chunk is taken when nothing else is in flight).
pub const SUBMIT_WINDOW_BYTES: usize = 256 << 20;
/// The most descriptors held for handle arguments of chunks accepted and not finished
/// before a submitting call waits.
pub const SUBMIT_WINDOW_FDS: usize = 256;

/// The slot of a chunk not given to a worker yet.
const NO_WORKER: usize = usize::MAX;

struct Pending {
    /// Its worker's slot, or `NO_WORKER` while in the submission queue.
    worker: usize,
    sink: Sink,
    /// The arguments of a chunk sent through the worker's socket.
    frame: Option<Arc<FdFrame>>,
    /// What it counts in the submission window.
    cost: Cost,
    /// When it was given to its worker.
    given: Option<Instant>,
}

/// A chunk accepted and not yet given to a worker.
struct Sub {
    chunk: u64,
    fid: u32,
    payload: Payload,
}

/// Where an `AsyncResult`'s chunks arrive.
type ResultsRx = crossbeam_channel::Receiver<(u64, Outcome)>;
/// Sees one task's outcome on the result thread (runs its callbacks).
type Hook = Box<dyn FnOnce(&Outcome) + Send>;
/// Sees every chunk's outcome of a `map_async_with`, in order, once all are there.
type OnAll = Box<dyn FnOnce(&[Outcome]) + Send>;
/// Runs a `map_async_with`'s error callback.
type OnErr = Box<dyn FnOnce(TaskError) + Send>;
/// What an `Imap` holds of its type parameters and the pool's borrow.
type Marker<'p, A, R, I> = PhantomData<(&'p (), fn(A, I) -> R)>;

/// Sinks to call once the state lock is released.
type Finished = Vec<(usize, u64, Sink, Outcome)>;

fn run_sinks(done: Finished) {
    for (w, c, sink, out) in done {
        sink(w, c, out);
    }
}

struct Worker {
    cell: RawArray<u64>,
    proc: Option<Process<()>>,
    /// The pool's end of this worker's task socket.
    sock: Option<Arc<OwnedFd>>,
    /// Chunks put in this worker's ring and not finished, in ring order.
    outstanding: VecDeque<u64>,
    /// Exits in a row before being ready.
    start_failures: u32,
    /// Given up (see `MAX_START_FAILURES`).
    broken: bool,
    /// The functions it knows: ids `1..=known` (from its boot or registrations put in
    /// its ring).
    known: u32,
    /// Frames of handle chunks still to write to its socket, in ring order; the first
    /// one may be partly written (`frame_sent` bytes).
    frames: VecDeque<Arc<FdFrame>>,
    frame_sent: usize,
    /// Results received from its current process (compared with its `CELL_SENT`).
    received: u64,
    /// When it last finished a chunk.
    last_done: Option<Instant>,
}

impl Worker {
    fn new(cell: RawArray<u64>) -> Worker {
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
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    Closed,
    Terminated,
}

struct State {
    workers: Vec<Worker>,
    pending: HashMap<u64, Pending>,
    /// The submission queue: chunks accepted, waiting for a worker with room.
    queue: VecDeque<Sub>,
    /// What the chunks accepted and not finished hold.
    in_flight: Cost,
    fns: Vec<(u32, FnRef, FnRef)>,
    fn_ids: HashMap<(FnRef, FnRef), u32>,
    next_chunk: u64,
    phase: Phase,
    /// The time one chunk takes in a worker (moving average, seconds).
    service: Option<f64>,
    /// How many chunks each worker's ring may hold (see `window_for`).
    depth: usize,
    /// The dispatcher sleeps on `dcv`.
    dispatcher_waiting: bool,
    /// Threads sleeping on `cv` (submitters waiting for the window, `join`).
    cv_waiters: usize,
    /// Pids of workers that exited before their slot recorded them (see `install`).
    early_exits: Vec<u32>,
}

/// The process-wide number of the next pool worker (Python's `…PoolWorker-N`).
static WORKER_NUMBER: AtomicU64 = AtomicU64::new(1);

/// Wakes the pool's input reader (the feeder of `imap` and `map`).
#[derive(Default)]
struct Wake {
    flag: Mutex<bool>,
    cv: Condvar,
    /// The reader is about to sleep or sleeps: changes must set `flag`.
    waiting: AtomicBool,
}

impl Wake {
    fn wake(&self) {
        if self.waiting.load(Ordering::SeqCst) {
            *self.flag.lock().unwrap_or_else(|e| e.into_inner()) = true;
            self.cv.notify_one();
        }
    }

    /// Sleeps until woken (at most `limit`).
    fn sleep(&self, limit: Duration) {
        let mut f = self.flag.lock().unwrap_or_else(|e| e.into_inner());
        if !*f {
            f = self
                .cv
                .wait_timeout(f, limit)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *f = false;
    }
}

struct Inner {
    st: Mutex<State>,
    /// Signalled when a chunk finishes (while someone waits: `cv_waiters`).
    cv: Condvar,
    /// Signalled when the dispatcher has work (while it waits: `dispatcher_waiting`).
    dcv: Condvar,
    processes: usize,
    /// The pool's handle on the result ring: it puts exit notices and `Quit`.
    results: Queue<ResultMsg>,
    init: Option<(FnRef, FnRef, InitArgs)>,
    maxtasks: u64,
    /// How workers start.
    method: StartMethod,
    /// With `StartMethod::Fork`: the copy of the owner, made at `build`, that forks the
    /// workers.
    zygote: Option<Arc<crate::forkserver::Zygote>>,
    /// Each worker's task ring (put into under the state lock).
    rings: Vec<Queue<TaskMsg>>,
    /// Set by the exit watcher when worker `i` exits (or by the pool when it kills it),
    /// cleared when it is replaced.
    dead: Vec<AtomicBool>,
    /// `imap`/`map` inputs still being read.
    feeders: AtomicUsize,
    /// `close` (or `join`/`terminate`) was called: dropped `imap`s read on.
    closing: AtomicBool,
    /// `join` waits: inputs ignore their window.
    joining: AtomicBool,
    /// `terminate` was called: inputs stop.
    terminated: AtomicBool,
    /// The pool is being dropped: its threads end.
    quit: AtomicBool,
    /// New `imap`/`map` inputs for the reader thread.
    sources: Mutex<Option<crossbeam_channel::Sender<Source>>>,
    /// Wakes the reader thread.
    wake: Arc<Wake>,
    /// The result thread (a callback on it that submits must not wait for the window).
    collector: std::sync::OnceLock<std::thread::ThreadId>,
    /// Fault injection (`fault`, with the `test-hooks` feature only): frame writes and
    /// ring puts still to fail.
    fail_frames: fault::Counter,
    fail_puts: fault::Counter,
    /// Where the monitor sends the exits of this pool's workers (and only theirs): set
    /// before the first worker starts.
    route: std::sync::OnceLock<ExitRoute>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a worker process for slot `i` (without the state lock: spawning takes
    /// time): its process, the pool's end of its socket, and how many functions its boot
    /// carried.
    fn spawn_worker(
        &self,
        i: usize,
        cell: &RawArray<u64>,
        fns: &[(u32, FnRef, FnRef)],
    ) -> Result<(Process<()>, Arc<OwnedFd>), SpawnError> {
        let init = match &self.init {
            None => None,
            Some((t, f, args)) => Some((t, f, args()?)),
        };
        let (ours, theirs) = fdpass::socketpair()?;
        let boot = WorkerBootRef {
            tasks: &self.rings[i],
            results: &self.results,
            slot: i as u32,
            cell,
            sock: SendFd(theirs.as_fd()),
            fns,
            init,
            maxtasks: self.maxtasks,
        };
        let prefix = match (self.zygote.is_some(), self.method) {
            (true, _) | (_, StartMethod::Fork) => "Fork",
            (false, StartMethod::ForkServer) => "ForkServer",
            (false, StartMethod::Spawn) => "Spawn",
        };
        let n = WORKER_NUMBER.fetch_add(1, Ordering::Relaxed);
        let p = start_encoded_via(
            worker_main,
            &boot,
            Some(format!("{prefix}PoolWorker-{n}")),
            true,
            Some(self.method),
            None,
            self.zygote.as_deref(),
        )?;
        if let Some(route) = self.route.get() {
            route.watch(p.pid(), || crate::pipe::Waitable::ready_cached(&p));
        }
        Ok((p, Arc::new(ours)))
    }

    /// Records a started worker in slot `i` (`known`: the functions its boot carried).
    /// An exit the watcher saw before this (a worker dying at once) is replayed.
    fn install(&self, st: &mut State, i: usize, p: Process<()>, sock: Arc<OwnedFd>, known: u32) {
        let pid = p.pid();
        let w = &mut st.workers[i];
        w.proc = Some(p);
        w.sock = Some(sock);
        w.known = known;
        w.frames.clear();
        w.frame_sent = 0;
        w.received = 0;
        w.last_done = None;
        if let Some(word) = w.cell.atomic_u64(CELL_SENT) {
            word.store(0, Ordering::Release);
        }
        self.dead[i].store(false, Ordering::Release);
        if let Some(k) = st.early_exits.iter().position(|&p| p == pid) {
            st.early_exits.swap_remove(k);
            self.dead[i].store(true, Ordering::Release);
            let _ = self.results.put(ResultMsg::Exited(i as u32));
        }
    }

    /// The id workers know `f` by, registering it first if needed. Never waits: the
    /// registration reaches each worker's ring (before the first chunk using it) when
    /// the pool gives that worker such a chunk (a replacement gets every registration in
    /// its boot).
    fn fn_id<A: Message, R: Message, S: 'static, F: Target<A, S, Output = R>>(
        &self,
        f: F,
    ) -> Result<u32, Error> {
        let binder: BindFn = bind::<A, R, S, F>;
        let t = target::describe_target(f).map_err(|e| Error::InvalidArgument(e.0))?;
        let key = (FnRef::of(binder), FnRef::from(t));
        let mut st = self.lock();
        if st.phase != Phase::Running {
            return Err(closed());
        }
        if let Some(&id) = st.fn_ids.get(&key) {
            return Ok(id);
        }
        let id = st.fns.len() as u32 + 1;
        st.fns.push((id, key.0.clone(), key.1.clone()));
        st.fn_ids.insert(key, id);
        Ok(id)
    }

    /// Accepts one chunk into the submission queue and gives what it can to workers at
    /// once; waits only while the submission window is full. `after_close`: an input
    /// finishing what was given before `close`.
    fn submit(
        &self,
        fid: u32,
        payload: Payload,
        sink: Sink,
        after_close: bool,
    ) -> Result<u64, Error> {
        let cost = payload.cost();
        // a callback on the result thread that submits must not wait for the window:
        // only that thread makes room in it
        let on_result_thread = self.collector.get() == Some(&std::thread::current().id());
        let mut st = self.lock();
        loop {
            let refused = match st.phase {
                Phase::Running => false,
                Phase::Closed => !after_close,
                Phase::Terminated => true,
            };
            if refused {
                return Err(closed());
            }
            if st.workers.iter().all(|w| w.broken) {
                return Err(Error::InvalidArgument(all_broken()));
            }
            if on_result_thread || st.in_flight.admits(cost) {
                break;
            }
            st.cv_waiters += 1;
            st = self
                .cv
                .wait_timeout(st, Duration::from_millis(50))
                .unwrap_or_else(|e| e.into_inner())
                .0;
            st.cv_waiters -= 1;
        }
        let chunk = st.next_chunk;
        st.next_chunk += 1;
        st.in_flight.add(cost);
        let frame = match &payload {
            Payload::Fds(f) => Some(f.clone()),
            Payload::Plain(_) => None,
        };
        st.pending.insert(
            chunk,
            Pending {
                worker: NO_WORKER,
                sink,
                frame,
                cost,
                given: None,
            },
        );
        st.queue.push_back(Sub {
            chunk,
            fid,
            payload,
        });
        let mut failed = Vec::new();
        self.place(&mut st, &mut failed);
        self.pump(&mut st);
        let wake = st.dispatcher_waiting
            && (!st.queue.is_empty() || st.workers.iter().any(|w| !w.frames.is_empty()));
        drop(st);
        if wake {
            self.dcv.notify_one();
        }
        run_sinks(failed);
        Ok(chunk)
    }

    /// Gives queued chunks to workers with room in their ring (the least loaded first),
    /// putting the registrations they need ahead of them. Never waits. Chunks a ring
    /// refuses fail (into `failed`).
    fn place(&self, st: &mut State, failed: &mut Finished) {
        if st.queue.is_empty() {
            return;
        }
        if st.workers.iter().all(|w| w.broken) {
            let ids: Vec<u64> = st.queue.drain(..).map(|s| s.chunk).collect();
            failed.extend(fail_pending(st, ids, &TaskError::Failed(all_broken())));
            return;
        }
        let depth = st.depth;
        loop {
            let pick = st
                .workers
                .iter()
                .enumerate()
                .filter(|(i, w)| {
                    !w.broken
                        && w.proc.is_some()
                        && w.outstanding.len() < depth
                        && !self.dead[*i].load(Ordering::Acquire)
                })
                .min_by_key(|(_, w)| w.outstanding.len())
                .map(|(i, _)| i);
            let Some(i) = pick else { return };
            let Some(sub) = st.queue.pop_front() else {
                return;
            };
            let chunk = sub.chunk;
            let mut refused = None;
            while st.workers[i].known < sub.fid {
                let id = st.workers[i].known + 1;
                let Some((_, b, t)) = st.fns.get(id as usize - 1).cloned() else {
                    break;
                };
                match ring_put(&self.rings[i], TaskMsg::Register(id, b, t), &self.fail_puts) {
                    Ok(()) => st.workers[i].known = id,
                    Err(e) => {
                        refused = Some(e);
                        break;
                    }
                }
            }
            if refused.is_none() {
                let msg = match sub.payload {
                    Payload::Plain(b) => TaskMsg::Run(chunk, sub.fid, b),
                    Payload::Fds(_) => TaskMsg::RunSocket(chunk, sub.fid),
                };
                match ring_put(&self.rings[i], msg, &self.fail_puts) {
                    Ok(()) => {
                        let now = Instant::now();
                        let w = &mut st.workers[i];
                        w.outstanding.push_back(chunk);
                        if let Some(p) = st.pending.get_mut(&chunk) {
                            p.worker = i;
                            p.given = Some(now);
                            if let Some(f) = &p.frame {
                                // (the worker reads it when it reaches the marker)
                                w.frames.push_back(f.clone());
                            }
                        }
                        continue;
                    }
                    Err(e) => refused = Some(e),
                }
            }
            // the ring refused (broken, or closed by terminate): the chunk fails
            // rather than waiting for ever
            let why = refused.unwrap_or_default();
            tracing::error!(worker = i, error = %why, "pool: a worker's ring refused a chunk");
            let e = TaskError::Failed(format!("a worker's task ring refused the chunk: {why}"));
            failed.extend(fail_pending(st, [chunk], &e));
        }
    }

    /// Writes what the workers' sockets take now of the frames waiting for them; never
    /// waits. A write that fails (other than a full socket) kills that worker: it is
    /// replaced, the chunks queued in its ring go to other workers and the one it was
    /// running (or waiting for its frame) fails with `WorkerDied`.
    fn pump(&self, st: &mut State) {
        for (i, w) in st.workers.iter_mut().enumerate() {
            while let Some(f) = w.frames.front() {
                let Some(sock) = &w.sock else {
                    w.frames.clear();
                    break;
                };
                match f.write_some(sock.as_fd(), &mut w.frame_sent, &self.fail_frames) {
                    Ok(true) => {
                        w.frames.pop_front();
                        w.frame_sent = 0;
                    }
                    Ok(false) => break,
                    Err(e) => {
                        tracing::error!(worker = i, error = %e,
                            "pool: writing a task's arguments to a worker failed; replacing it");
                        self.dead[i].store(true, Ordering::Release);
                        if let Some(p) = &w.proc {
                            let _ = p.kill();
                        }
                        w.frames.clear();
                        w.frame_sent = 0;
                        break;
                    }
                }
            }
        }
    }
}

/// Puts `msg` into a worker's ring without waiting for room (the ring is unbounded).
fn ring_put(ring: &Queue<TaskMsg>, msg: TaskMsg, fail: &fault::Counter) -> Result<(), String> {
    if fail.hit() {
        return Err("injected failure (a broken ring)".into());
    }
    ring.try_put(msg).map_err(|e| e.to_string())
}

fn all_broken() -> String {
    format!(
        "every pool worker failed to start {MAX_START_FAILURES} times in a row \
         (does the initializer fail?)"
    )
}

/// The pool's dispatcher thread: gives queued chunks to workers as they make room, and
/// writes handle chunks' frames as the workers' sockets take them (never blocking on
/// one worker).
fn dispatch(inner: Arc<Inner>) {
    let mut st = inner.lock();
    loop {
        if inner.quit.load(Ordering::SeqCst) {
            return;
        }
        let mut failed = Vec::new();
        inner.place(&mut st, &mut failed);
        inner.pump(&mut st);
        if !failed.is_empty() {
            drop(st);
            run_sinks(failed);
            st = inner.lock();
            continue;
        }
        // frames the sockets did not take: look again soon (a worker reads its frame
        // when it reaches its marker)
        let frames = st.workers.iter().any(|w| !w.frames.is_empty());
        st.dispatcher_waiting = true;
        let limit = Duration::from_millis(if frames { 2 } else { 100 });
        st = inner
            .dcv
            .wait_timeout(st, limit)
            .unwrap_or_else(|e| e.into_inner())
            .0;
        st.dispatcher_waiting = false;
    }
}

/// A pool of worker processes (Python's `multiprocessing.Pool`).
///
/// Targets are functions of 0 to 8 arguments (function items, closures capturing
/// nothing, function pointers: [`Target`]) with serde arguments and results, as for
/// [`Process::new`]: each item is the arguments of one call, `()` for none, the value
/// itself for one, a tuple for more (so [`map`](Pool::map) and
/// [`starmap`](Pool::starmap) are the same method here). This holds for every method,
/// the callback and typed-error ones included (for `try_*` the target returns
/// `Result<R, E>`).
///
/// Every method that waits either returns the results or says why not: a panicking task
/// fails alone ([`TaskError::Panicked`]), a worker that dies fails exactly the tasks it
/// held ([`TaskError::WorkerDied`]) and is replaced, and the rest of the work completes.
///
/// Arguments may hold procactor handles (a `Queue`, a `Lock`, a `Value`, an `Event`, a
/// Pipe's `Connection`…), as Python's pool pickles them: they reach the worker and work
/// there (see the module documentation for how).
///
/// Dropping the pool terminates it (as Python's `with Pool(...)` does), in bounded time
/// even while a panic unwinds (see [`DROP_WAIT`]).
///
/// # Submission
///
/// Submitting never waits for a worker: `apply_async`, `map_async` and their `_with` and
/// `try_` forms encode the arguments on the calling thread and put the chunks in the
/// pool's submission queue (in the caller's process), from which the pool gives each
/// worker a few chunks at a time (about a millisecond of work queued in its ring, at
/// least one chunk) as it makes room; `imap` and `map` inputs are read by the pool's
/// single feeder thread. Nothing in that path waits for a worker — not a busy, slow,
/// dead or frozen (`SIGSTOP`ped) one, not a worker's socket for handle arguments, not a
/// replacement starting — so such a call returns after its encoding plus a few
/// microseconds of bookkeeping.
///
/// Memory is bounded by the **submission window**: the chunks accepted and not yet
/// finished (queued, in a ring or running) hold at most [`SUBMIT_WINDOW_CHUNKS`] chunks,
/// [`SUBMIT_WINDOW_BYTES`] bytes of encoded arguments and [`SUBMIT_WINDOW_FDS`]
/// duplicated descriptors of handle arguments. A submitting call waits (for chunks to
/// finish) only while that window is full — that is the one case where it blocks, and
/// it is where Python's pool, whose queue is unbounded, would grow instead. A chunk
/// larger than the byte window is taken when nothing else is in flight. A callback
/// running on the pool's result thread never waits for the window (it alone would make
/// room), so callbacks that submit more tasks cannot deadlock.
///
/// Registering a new function with the workers happens with its first chunk, in each
/// worker's ring, and never makes a caller wait either.
///
/// # Examples
///
/// ```
/// use procactor::Pool;
/// use std::time::Duration;
///
/// fn square(x: u64) -> u64 { x * x }
///
/// fn main() {
///     procactor::init();
///     let pool = Pool::new(2).unwrap();
///     assert_eq!(pool.map(square, 0..5u64).unwrap(), [0, 1, 4, 9, 16]);
///     let h = pool.apply_async(square, 9).unwrap();
///     assert_eq!(h.get_timeout(Duration::from_secs(10)).unwrap(), 81);
///     let mut v: Vec<u64> = pool
///         .imap_unordered(square, 0..4u64)
///         .unwrap()
///         .map(|r| r.unwrap())
///         .collect();
///     v.sort();
///     assert_eq!(v, [0, 1, 4, 9]);
///     pool.close();
///     pool.join().unwrap();
/// }
/// ```
pub struct Pool {
    inner: Arc<Inner>,
    processes: usize,
    collector: Option<std::thread::JoinHandle<()>>,
    dispatcher: Option<std::thread::JoinHandle<()>>,
    feeder: Option<std::thread::JoinHandle<()>>,
    watcher: Option<ExitWatcher>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.inner.lock();
        f.debug_struct("Pool")
            .field("processes", &self.processes)
            .field("pending_chunks", &st.pending.len())
            .field("phase", &st.phase)
            .finish()
    }
}

/// Builds a [`Pool`]: `processes`, `maxtasksperchild`, `initializer`.
pub struct PoolBuilder {
    processes: Option<usize>,
    maxtasks: u64,
    init: Option<(FnRef, FnRef, InitArgs)>,
    /// Why the initializer given cannot run in a worker (reported by `build`).
    bad_init: Option<String>,
    method: Option<StartMethod>,
}

impl fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("processes", &self.processes)
            .field("maxtasksperchild", &self.maxtasks)
            .field("initializer", &self.init.is_some())
            .field("start_method", &self.method)
            .finish()
    }
}

impl PoolBuilder {
    /// The number of worker processes (default: [`cpu_count()`](crate::cpu_count)).
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = Some(n);
        self
    }

    /// A worker exits after this many chunks and a fresh one replaces it (default 0:
    /// never), e.g. to give back memory a library leaks.
    pub fn maxtasksperchild(mut self, n: usize) -> Self {
        self.maxtasks = n as u64;
        self
    }

    /// `f(args)` runs in every worker when it starts (also in replacements), before its
    /// first task. `args` may hold handles (a `Queue`, a `Value`, an `ActorRef`…), kept
    /// by the initializer in a `static` for the tasks (Python's `initializer=`,
    /// `initargs=`); tasks' own arguments may hold handles too. An initializer that
    /// panics makes the worker exit; the pool starts another.
    ///
    /// `f` takes 0 to 8 arguments given as one value, as [`Process::new`]'s target does
    /// (Python's `initargs`). A closure capturing a pointer-sized value (other capturing
    /// closures are refused at build time) makes [`build`](PoolBuilder::build) fail;
    /// pass the value in `args`.
    pub fn initializer<A: Message, S: 'static, F: Target<A, S, Output = ()>>(
        mut self,
        f: F,
        args: A,
    ) -> Self {
        let tramp: InitFn = init_trampoline::<A, S, F>;
        let t = match target::describe_target(f) {
            Ok(t) => t,
            Err(e) => {
                self.bad_init = Some(e.0);
                return self;
            }
        };
        let args = Mutex::new(args);
        let enc: InitArgs =
            Box::new(move || Encoded::new(&*args.lock().unwrap_or_else(|e| e.into_inner())));
        self.init = Some((FnRef::of(tramp), FnRef::from(t), enc));
        self
    }

    /// How the workers (and their replacements) start (default: the process-wide
    /// [`start_method()`](crate::start_method), read at `build`). `ForkServer` is the fast
    /// choice.
    ///
    /// `Fork`: `build` forks a copy of this process (a *zygote*, which stays
    /// single-threaded) before the pool starts any thread, and the zygote forks every
    /// worker and every replacement. So workers see this process's memory as it was at
    /// `build` (copy-on-write, as workers of Python's fork pool do), though the pool runs
    /// threads. `build` needs a single-threaded process for that fork, and fails with a
    /// clear error otherwise. The zygote holds a copy of every descriptor open at `build`
    /// until the pool is dropped (a pipe end among them keeps its peer from seeing
    /// end-of-file).
    pub fn start_method(mut self, m: StartMethod) -> Self {
        self.method = Some(m);
        self
    }

    /// Starts the workers.
    ///
    /// # Errors
    ///
    /// `processes(0)`, an initializer argument that cannot be encoded, a worker that
    /// cannot start, or no `procactor::init()`.
    pub fn build(self) -> Result<Pool, Error> {
        runtime::ensure_initialized()?;
        let n = self.processes.unwrap_or_else(crate::cpu_count);
        if n == 0 {
            return Err(Error::InvalidArgument(
                "a pool needs at least one process".into(),
            ));
        }
        if let Some(why) = self.bad_init {
            return Err(Error::InvalidArgument(format!("the initializer: {why}")));
        }
        let init = self.init;
        let (method, zygote) = runtime::method_for_owner(self.method, "pool")?;
        let results: Queue<ResultMsg> = Queue::with_capacity_bytes(4 << 20)?;
        let mut workers = Vec::with_capacity(n);
        let mut rings = Vec::with_capacity(n);
        for _ in 0..n {
            rings.push(Queue::with_capacity_bytes(1 << 20)?);
            workers.push(Worker::new(RawArray::zeroed(CELL_WORDS)?));
        }
        let (src_tx, src_rx) = crossbeam_channel::unbounded();
        let inner = Arc::new(Inner {
            rings,
            dead: (0..n).map(|_| AtomicBool::new(false)).collect(),
            st: Mutex::new(State {
                workers,
                pending: HashMap::new(),
                queue: VecDeque::new(),
                in_flight: Cost::default(),
                fns: Vec::new(),
                fn_ids: HashMap::new(),
                next_chunk: 1,
                phase: Phase::Running,
                service: None,
                // one chunk per worker until the first results say how long one takes
                depth: 1,
                dispatcher_waiting: false,
                cv_waiters: 0,
                early_exits: Vec::new(),
            }),
            cv: Condvar::new(),
            dcv: Condvar::new(),
            processes: n,
            results,
            init,
            maxtasks: self.maxtasks,
            method,
            zygote,
            feeders: AtomicUsize::new(0),
            closing: AtomicBool::new(false),
            joining: AtomicBool::new(false),
            terminated: AtomicBool::new(false),
            quit: AtomicBool::new(false),
            sources: Mutex::new(Some(src_tx)),
            wake: Arc::new(Wake::default()),
            collector: std::sync::OnceLock::new(),
            fail_frames: fault::Counter::new(),
            fail_puts: fault::Counter::new(),
            route: std::sync::OnceLock::new(),
        });
        // watching before any worker starts, so that no exit is missed
        // (routed: the exits of this pool's workers only, not every child of the process)
        let i3 = inner.clone();
        let (watcher, route) = ExitWatcher::start_routed("procactor-pool-exits", move |ev| {
            worker_exited(&i3, ev.pid)
        })?;
        let _ = inner.route.set(route);
        let mut started = Vec::with_capacity(n);
        for i in 0..n {
            let cell = inner.lock().workers[i].cell.clone();
            match inner.spawn_worker(i, &cell, &[]) {
                Ok(w) => started.push(w),
                Err(e) => {
                    for (p, _) in &started {
                        let _ = p.kill();
                    }
                    return Err(e.into());
                }
            }
        }
        {
            let mut st = inner.lock();
            for (i, (p, sock)) in started.into_iter().enumerate() {
                inner.install(&mut st, i, p, sock, 0);
            }
        }
        let reader = inner.results.clone();
        reader.close(); // the collector only reads
        let i2 = inner.clone();
        let collector =
            crate::runtime::thread_builder("procactor-pool-results").spawn(move || {
                let _ = i2.collector.set(std::thread::current().id());
                collect(i2, reader)
            })?;
        let i4 = inner.clone();
        let dispatcher = crate::runtime::thread_builder("procactor-pool-dispatch")
            .spawn(move || dispatch(i4))?;
        let i5 = inner.clone();
        let feeder = crate::runtime::thread_builder("procactor-pool-feeder")
            .spawn(move || read_inputs(&i5, &src_rx))?;
        Ok(Pool {
            inner,
            processes: n,
            collector: Some(collector),
            dispatcher: Some(dispatcher),
            feeder: Some(feeder),
            watcher: Some(watcher),
        })
    }
}

/// Puts an exit notice on the result ring when a worker exits (behind its results).
fn worker_exited(inner: &Inner, pid: u32) {
    let idx = {
        let mut st = inner.lock();
        let idx = st
            .workers
            .iter()
            .position(|w| w.proc.as_ref().is_some_and(|p| p.pid() == pid));
        if idx.is_none() {
            // a worker being installed (its slot learns its pid after the spawn): the
            // slot replays this exit (bounded: a few pids at most)
            st.early_exits.push(pid);
            if st.early_exits.len() > 64 {
                st.early_exits.remove(0);
            }
        }
        idx
    };
    if let Some(i) = idx {
        inner.dead[i].store(true, Ordering::Release);
        let _ = inner.results.put(ResultMsg::Exited(i as u32));
    }
}

/// Routes results to their waiters; handles worker exits.
fn collect(inner: Arc<Inner>, results: Queue<ResultMsg>) {
    loop {
        match results.get() {
            Ok(ResultMsg::Done(chunk, slot, out)) => {
                let mut st = inner.lock();
                if let Some(w) = st.workers.get_mut(slot as usize) {
                    w.received += 1;
                }
                let done = take_pending(&mut st, chunk);
                if let Some(p) = &done {
                    note_service(&mut st, p);
                }
                let mut failed = Vec::new();
                inner.place(&mut st, &mut failed);
                let wake_d =
                    st.dispatcher_waiting && st.workers.iter().any(|w| !w.frames.is_empty());
                let wake = st.cv_waiters > 0;
                drop(st);
                if let Some(p) = done {
                    (p.sink)(p.worker, chunk, out.map_err(TaskError::Failed));
                }
                run_sinks(failed);
                if wake_d {
                    inner.dcv.notify_one();
                }
                if wake {
                    inner.cv.notify_all();
                }
            }
            Ok(ResultMsg::Exited(i)) => {
                let i = i as usize;
                if i >= inner.processes {
                    continue;
                }
                replace_worker(&inner, i);
            }
            Ok(ResultMsg::Quit) | Err(GetError::Disconnected) | Err(GetError::Broken) => return,
            Err(GetError::Decode(e)) => {
                // a worker broke the protocol: the ones with results in the ring are
                // suspects (usually one); they are replaced, so that the chunk whose
                // result this was fails instead of waiting for ever
                let st = inner.lock();
                let suspects: Vec<usize> = st
                    .workers
                    .iter()
                    .enumerate()
                    .filter(|(_, w)| {
                        w.proc.is_some()
                            && w.cell
                                .atomic_u64(CELL_SENT)
                                .is_some_and(|s| s.load(Ordering::Acquire) > w.received)
                    })
                    .map(|(i, _)| i)
                    .collect();
                tracing::error!(error = %e, ?suspects,
                    "pool: an undecodable result; replacing the workers that may have sent it");
                for &i in &suspects {
                    if let Some(p) = &st.workers[i].proc {
                        let _ = p.kill();
                    }
                }
                drop(st);
            }
        }
    }
}

/// Removes chunk `c` from the pending ones (and its worker's ring record, and the
/// window).
fn take_pending(st: &mut State, c: u64) -> Option<Pending> {
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
fn note_service(st: &mut State, p: &Pending) {
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
fn fail_pending(st: &mut State, ids: impl IntoIterator<Item = u64>, why: &TaskError) -> Finished {
    ids.into_iter()
        .filter_map(|c| take_pending(st, c).map(|p| (p.worker, c, p.sink, Err(why.clone()))))
        .collect()
}

/// Handles worker `i`'s exit (on the result thread): fails what it was running, puts
/// what was queued in its ring back at the front of the submission queue, and starts a
/// replacement — the spawn without the state lock, so that submitters never wait for
/// it.
fn replace_worker(inner: &Inner, i: usize) {
    let (finished, respawn) = {
        let mut st = inner.lock();
        on_worker_exit(inner, &mut st, i)
    };
    run_sinks(finished);
    if let Some((cell, fns)) = respawn {
        let started = inner.spawn_worker(i, &cell, &fns);
        let mut st = inner.lock();
        let mut failed = Vec::new();
        match started {
            Ok((mut p, sock)) => {
                if st.phase == Phase::Terminated {
                    drop(st);
                    let _ = p.kill();
                    let _ = p.join();
                    return;
                }
                inner.install(&mut st, i, p, sock, fns.len() as u32);
            }
            Err(e) => {
                // given up like a worker that keeps failing to start (`dead` stays set),
                // so nothing waits for it: when every slot is given up, submissions are
                // refused and queued chunks fail
                tracing::error!(worker = i, error = %e, "pool: no replacement worker could start");
                st.workers[i].broken = true;
            }
        }
        inner.place(&mut st, &mut failed);
        inner.pump(&mut st);
        let wake_d = st.dispatcher_waiting;
        drop(st);
        run_sinks(failed);
        if wake_d {
            inner.dcv.notify_one();
        }
    }
    inner.cv.notify_all();
}

/// What a replacement for a worker needs: its cell and the functions so far.
type Respawn = Option<(RawArray<u64>, Vec<(u32, FnRef, FnRef)>)>;

fn on_worker_exit(inner: &Inner, st: &mut State, i: usize) -> (Finished, Respawn) {
    let Some(w) = st.workers.get_mut(i) else {
        return (Vec::new(), None);
    };
    let Some(mut p) = w.proc.take() else {
        return (Vec::new(), None);
    };
    // its socket, and what the dead worker did not read there, go
    w.sock = None;
    w.frames.clear();
    w.frame_sent = 0;
    let status = p.join().unwrap_or(ExitStatus::Code(-1));
    if let Some(word) = w.cell.atomic_u64(CELL_CHUNK) {
        word.store(0, Ordering::Release);
    }
    let was_ready = w
        .cell
        .atomic_u64(CELL_READY)
        .is_some_and(|r| r.swap(0, Ordering::AcqRel) == 1);
    w.start_failures = if was_ready { 0 } else { w.start_failures + 1 };
    // What is still in its ring was not taken: take it back (this also completes or
    // rolls back a get the worker died in the middle of)…
    // (the dead worker may hold the ring's reader lock, asleep in `get`: free it first)
    let ring = &inner.rings[i];
    ring.recover_dead_consumer();
    let mut queued = Vec::new();
    while let Ok(m) = ring.try_get() {
        queued.push(m);
    }
    let queued_ids: Vec<u64> = queued
        .iter()
        .filter_map(|m| match m {
            TaskMsg::Run(c, _, _) | TaskMsg::RunSocket(c, _) => Some(*c),
            TaskMsg::Register(..) => None,
        })
        .collect();
    // …and every other unfinished chunk it was given went down with it
    let lost: Vec<u64> = w
        .outstanding
        .iter()
        .copied()
        .filter(|c| !queued_ids.contains(c))
        .collect();
    w.outstanding.clear();
    let mut finished = fail_pending(st, lost.iter().copied(), &TaskError::WorkerDied(status));
    // the queued ones go back to the front of the submission queue, in order, for any
    // worker (the pool's memory: nothing can refuse them)
    for m in queued.into_iter().rev() {
        let (c, fid, payload) = match m {
            TaskMsg::Run(c, f, b) => (c, f, Payload::Plain(b)),
            TaskMsg::RunSocket(c, f) => match st.pending.get(&c).and_then(|p| p.frame.clone()) {
                Some(frame) => (c, f, Payload::Fds(frame)),
                None => continue,
            },
            TaskMsg::Register(..) => continue,
        };
        let Some(p) = st.pending.get_mut(&c) else {
            continue;
        };
        p.worker = NO_WORKER;
        p.given = None;
        st.queue.push_front(Sub {
            chunk: c,
            fid,
            payload,
        });
    }
    if st.phase == Phase::Terminated {
        return (finished, None);
    }
    let w = &mut st.workers[i];
    if w.start_failures >= MAX_START_FAILURES {
        let why = match p.result() {
            Err(crate::JoinError::Panicked { message }) => message,
            _ => status.to_string(),
        };
        w.broken = true;
        tracing::error!(worker = i, %why, "pool worker keeps failing to start; giving it up");
        if st.workers.iter().all(|w| w.broken) {
            let ids: Vec<u64> = st.queue.drain(..).map(|s| s.chunk).collect();
            let e = TaskError::Failed(format!(
                "the worker failed to start {MAX_START_FAILURES} times in a row: {why}"
            ));
            finished.extend(fail_pending(st, ids, &e));
        }
        return (finished, None); // `dead` stays set: nothing is sent to it again
    }
    tracing::debug!(worker = i, %status, lost = lost.len(), "pool worker exited; replacing it");
    (finished, Some((st.workers[i].cell.clone(), st.fns.clone())))
}

fn closed() -> Error {
    Error::InvalidArgument("the pool is closed: no new tasks".into())
}

/// The default chunk size: Python's `ceil(len / (4 × processes))`.
fn default_chunksize(len: usize, processes: usize) -> usize {
    let d = 4 * processes.max(1);
    len.div_ceil(d).max(1)
}

/// How much expected work an operation queues in each worker's ring: enough to hide the
/// wake-ups between chunks when tasks are short, little enough that a slow task holds
/// back at most about this much work queued behind it (a worker's ring is its own).
const QUEUED_WORK: Duration = Duration::from_millis(1);
/// The most chunks one operation keeps in one worker's ring.
const MAX_WINDOW: usize = 256;

/// How many chunks per worker an `imap` (or `map`) keeps submitted and not yet read by
/// its iterator: its memory bound with an endless input is this × `processes` chunks of
/// results and arguments (see [`Imap::window`]).
pub const IMAP_WINDOW_PER_WORKER: usize = MAX_WINDOW;

/// The window for chunks that take `service` each in a worker.
fn window_for(service: Duration) -> usize {
    let s = service.as_nanos().max(1);
    (QUEUED_WORK.as_nanos().div_ceil(s) as usize).clamp(1, MAX_WINDOW)
}

/// Encodes a chunk's arguments, with the descriptors of the handles inside them; the
/// guard undoes the handles' side effects unless told the chunk was sent.
fn encode_chunk<A: Serialize>(items: &[A]) -> Result<(Payload, Unsent), EncodeError> {
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

fn encode_failed(e: EncodeError) -> TaskError {
    TaskError::Failed(format!("could not encode the arguments: {}", e.0))
}

/// Runs a user's callback on the result thread; a panic in it is logged, not spread.
fn guarded(what: &str, f: impl FnOnce()) {
    if std::panic::catch_unwind(AssertUnwindSafe(f)).is_err() {
        tracing::error!("pool: a {what} panicked (ignored)");
    }
}

impl Pool {
    /// A pool of `n` workers.
    ///
    /// # Errors
    ///
    /// As [`PoolBuilder::build`].
    pub fn new(n: usize) -> Result<Pool, Error> {
        Pool::builder().processes(n).build()
    }

    /// A builder (`processes`, `maxtasksperchild`, `initializer`).
    pub fn builder() -> PoolBuilder {
        PoolBuilder {
            processes: None,
            maxtasks: 0,
            init: None,
            bad_init: None,
            method: None,
        }
    }

    /// Fault injection for tests (hidden, see [`fault`]; only with the `test-hooks`
    /// feature): the next `n` writes of a handle chunk's frame to a worker's socket
    /// fail, as with `EMFILE`.
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub fn fail_next_frame_writes(&self, n: usize) {
        self.inner.fail_frames.set(n);
    }

    /// Fault injection for tests (hidden, see [`fault`]; only with the `test-hooks`
    /// feature): the next `n` puts into a worker's task ring fail, as with a broken
    /// ring.
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub fn fail_next_ring_puts(&self, n: usize) {
        self.inner.fail_puts.set(n);
    }

    /// The number of worker processes.
    pub fn processes(&self) -> usize {
        self.processes
    }

    /// The pids of the workers running now.
    pub fn pids(&self) -> Vec<u32> {
        let st = self.inner.lock();
        st.workers
            .iter()
            .filter_map(|w| w.proc.as_ref().map(Process::pid))
            .collect()
    }

    /// Hands `input` to the pool's feeder, which submits it in chunks, and returns the
    /// iterator of its results.
    fn feed<A, R, S, F, I>(
        &self,
        f: F,
        input: I,
        chunksize: usize,
        ordered: bool,
    ) -> Result<Imap<'_, A, R, I>, Error>
    where
        A: Message,
        R: Message,
        S: 'static,
        F: Target<A, S, Output = R>,
        I: Iterator<Item = A> + Send + 'static,
    {
        let fid = self.inner.fn_id(f)?;
        let feed = Arc::new(Feed {
            st: Mutex::new(FeedState::default()),
            cap: (IMAP_WINDOW_PER_WORKER * self.processes) as u64,
            wake: self.inner.wake.clone(),
        });
        let (tx, rx) = crossbeam_channel::unbounded();
        let source = Source {
            input: Box::new(InputOf {
                input,
                chunksize: chunksize.max(1),
                _a: PhantomData,
            }),
            feed: feed.clone(),
            fid,
            seq: 0,
            tx,
        };
        // counted before the call returns, so that a join right after waits for it
        self.inner.feeders.fetch_add(1, Ordering::SeqCst);
        let sent = match &*self.inner.sources.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(s) => s.send(source).is_ok(),
            None => false,
        };
        if !sent {
            self.inner.feeders.fetch_sub(1, Ordering::SeqCst);
            return Err(closed());
        }
        self.inner.wake.wake();
        Ok(Imap {
            feed,
            rx,
            ordered,
            total: None,
            seen: 0,
            reorder: BTreeMap::new(),
            ready: VecDeque::new(),
            _t: PhantomData,
        })
    }

    /// The results of every item, in order: `f` applied to each (Python's `map`).
    ///
    /// # Errors
    ///
    /// The first failed item's [`TaskError`] (in input order); a closed pool gives
    /// `TaskError::Failed`.
    pub fn map<A: Message, R: Message, S: 'static, F: Target<A, S, Output = R>>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
    ) -> Result<Vec<R>, TaskError> {
        let items: Vec<A> = items.into_iter().collect();
        let cs = default_chunksize(items.len(), self.processes);
        self.map_chunksize(f, items, cs)
    }

    /// As [`map`](Pool::map) with chunks of `chunksize` items.
    ///
    /// # Errors
    ///
    /// As `map`.
    pub fn map_chunksize<A: Message, R: Message, S: 'static, F: Target<A, S, Output = R>>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> Result<Vec<R>, TaskError> {
        // (Python's map reads the whole input first too)
        let items: Vec<A> = items.into_iter().collect();
        let mut out = Vec::with_capacity(items.len());
        let results = self
            .feed(f, items.into_iter(), chunksize, true)
            .map_err(|e| TaskError::Failed(e.to_string()))?;
        for r in results {
            out.push(r?);
        }
        Ok(out)
    }

    /// As [`map`](Pool::map) for tasks that return `Result<R, E>`: the first failed
    /// item (in input order) gives its error, typed: `Err(e)` from the task is
    /// [`TaskError::Failed(e)`](TaskError::Failed); a panic, a worker's death and the
    /// pool's own reasons ([`TaskError::Pool`]) as for `map`.
    ///
    /// # Errors
    ///
    /// As above.
    ///
    /// # Examples
    ///
    /// ```
    /// use procactor::{Pool, TaskError};
    ///
    /// fn parse(s: String) -> Result<u32, String> {
    ///     s.parse().map_err(|_| format!("not a number: {s}"))
    /// }
    ///
    /// fn main() {
    ///     procactor::init();
    ///     let pool = Pool::new(2).unwrap();
    ///     let ok = pool.try_map(parse, ["1", "2"].map(String::from)).unwrap();
    ///     assert_eq!(ok, [1, 2]);
    ///     let bad = pool.try_map(parse, ["1", "x"].map(String::from));
    ///     assert_eq!(bad, Err(TaskError::Failed("not a number: x".to_string())));
    /// }
    /// ```
    pub fn try_map<
        A: Message,
        R: Message,
        E: Message,
        S: 'static,
        F: Target<A, S, Output = Result<R, E>>,
    >(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
    ) -> Result<Vec<R>, TaskError<E>> {
        let items: Vec<A> = items.into_iter().collect();
        let cs = default_chunksize(items.len(), self.processes);
        let mut out = Vec::with_capacity(items.len());
        let results = self
            .feed(f, items.into_iter(), cs, true)
            .map_err(|e| TaskError::Pool(e.to_string()))?;
        for r in results {
            match r {
                Ok(Ok(v)) => out.push(v),
                Ok(Err(e)) => return Err(TaskError::Failed(e)),
                Err(e) => return Err(e.typed()),
            }
        }
        Ok(out)
    }

    /// Python's `starmap`: each item is a tuple unpacked into `f`'s arguments
    /// (`starmap(mul, [(1, 2), (3, 4)])` calls `mul(1, 2)` and `mul(3, 4)`). Items are
    /// always unpacked this way here, so it is [`map`](Pool::map) under Python's name; a
    /// one-argument `f` whose parameter is a tuple gets each tuple whole.
    ///
    /// # Errors
    ///
    /// As `map`.
    ///
    /// # Examples
    ///
    /// ```
    /// use procactor::Pool;
    ///
    /// fn mul(a: u64, b: u64) -> u64 { a * b }
    ///
    /// fn main() {
    ///     procactor::init();
    ///     let pool = Pool::new(2).unwrap();
    ///     assert_eq!(pool.starmap(mul, vec![(1, 2), (3, 4)]).unwrap(), [2, 12]);
    ///     assert_eq!(pool.apply(mul, (6, 7)).unwrap(), 42);
    /// }
    /// ```
    pub fn starmap<A: Message, R: Message, S: 'static, F: Target<A, S, Output = R>>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
    ) -> Result<Vec<R>, TaskError> {
        self.map(f, items)
    }

    /// Submits every chunk of `items` (waiting only while the submission window is
    /// full); `gather` (if any) sees each chunk's outcome on the result thread.
    fn submit_all<A: Message, R: Message, S: 'static, F: Target<A, S, Output = R>>(
        &self,
        f: F,
        items: Vec<A>,
        gather: Option<Arc<Gather>>,
    ) -> Result<(ResultsRx, Vec<u64>), Error> {
        let cs = default_chunksize(items.len(), self.processes);
        let (tx, rx) = crossbeam_channel::unbounded();
        let fid = self.inner.fn_id(f)?;
        let mut chunks = Vec::new();
        for (k, part) in items.chunks(cs).enumerate() {
            let (payload, unsent) = encode_chunk(part).map_err(Error::Encode)?;
            let tx = tx.clone();
            let gather = gather.clone();
            let sink: Sink = Box::new(move |_, c, out| {
                if let Some(g) = gather {
                    g.put(k, &out);
                }
                let _ = tx.send((c, out));
            });
            let c = self.inner.submit(fid, payload, sink, false)?;
            unsent.sent();
            chunks.push(c);
        }
        Ok((rx, chunks))
    }

    /// As [`map`](Pool::map), without waiting: the result is an [`AsyncResult`] of the
    /// whole list (its `get` gives the first error, as `map`).
    ///
    /// # Errors
    ///
    /// The pool is closed, or an item cannot be encoded ([`Error::Encode`]).
    pub fn map_async<A: Message, R: Message, S: 'static, F: Target<A, S, Output = R>>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
    ) -> Result<AsyncResult<Vec<R>>, Error> {
        let (rx, chunks) = self.submit_all(f, items.into_iter().collect(), None)?;
        Ok(AsyncResult::new(
            rx,
            Collect::Chunks(chunks),
            decode_all::<R>,
        ))
    }

    /// As [`map_async`](Pool::map_async), with Python's `callback` and `error_callback`:
    /// exactly one of them runs, on the pool's result thread. `callback(results)` (in
    /// input order) once every item is done, before the [`AsyncResult`] is ready; or, as
    /// CPython's `MapResult` does, `error_callback(e)` as soon as the first failed chunk
    /// arrives (whatever its place in the input; `e` is its first failed item's error),
    /// without waiting for the other chunks. The `AsyncResult` itself still waits for
    /// every chunk and its `get` gives the first failed item in input order (CPython's
    /// is ready at the first failure).
    ///
    /// A callback must not block: the result thread routes every result of the pool and
    /// waits for it (a panic in a callback is logged and ignored). When the pool is
    /// terminated first, `error_callback` gets `TaskError::Failed` on the terminating
    /// thread. When this call returns an error, no callback runs.
    ///
    /// # Errors
    ///
    /// As `map_async`.
    pub fn map_async_with<A, R, S, F, C, EC>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
        callback: C,
        error_callback: EC,
    ) -> Result<AsyncResult<Vec<R>>, Error>
    where
        A: Message,
        R: Message,
        S: 'static,
        F: Target<A, S, Output = R>,
        C: FnOnce(Vec<R>) + Send + 'static,
        EC: FnOnce(TaskError) + Send + 'static,
    {
        let items: Vec<A> = items.into_iter().collect();
        let cs = default_chunksize(items.len(), self.processes);
        let n = items.len().div_ceil(cs);
        let on_err: OnErr =
            Box::new(move |e: TaskError| guarded("error callback", || error_callback(e)));
        let on_err = Arc::new(Mutex::new(Some(on_err)));
        let on_err2 = on_err.clone();
        let on_all: OnAll = Box::new(move |outs: &[Outcome]| match decode_all::<R>(outs) {
            Ok(v) => guarded("callback", || callback(v)),
            Err(e) => {
                // (a result that failed to decode: not seen as a failure chunk by chunk)
                let f = on_err2.lock().unwrap_or_else(|e| e.into_inner()).take();
                if let Some(f) = f {
                    f(e)
                }
            }
        });
        let gather = Arc::new(Gather {
            st: Mutex::new(GatherState {
                outs: vec![None; n],
                missing: n,
                on_all: Some(on_all),
                failed: false,
            }),
            on_err,
            first_error: chunk_error::<R>,
        });
        let (rx, chunks) = self.submit_all(f, items, Some(gather.clone()))?;
        if n == 0 {
            gather.fire(); // (an empty list: at once, on this thread)
        }
        Ok(AsyncResult::new(
            rx,
            Collect::Chunks(chunks),
            decode_all::<R>,
        ))
    }

    /// Runs `f(arg)` in a worker and waits for its result (Python's `apply`).
    ///
    /// # Errors
    ///
    /// As [`AsyncResult::get`]; an argument that cannot be encoded or a closed pool give
    /// `TaskError::Failed`.
    pub fn apply<A: Message, R: Message, S: 'static, F: Target<A, S, Output = R>>(
        &self,
        f: F,
        arg: A,
    ) -> Result<R, TaskError> {
        self.apply_async(f, arg)
            .map_err(|e| TaskError::Failed(e.to_string()))?
            .get()
    }

    /// Submits one task; `hook` sees its outcome on the result thread.
    fn submit_one<A: Message, R: Message, S: 'static, F: Target<A, S, Output = R>, T, E>(
        &self,
        f: F,
        arg: &A,
        hook: Option<Hook>,
        decode: fn(&[Outcome]) -> Result<T, TaskError<E>>,
    ) -> Result<AsyncResult<T, E>, Error> {
        let (payload, unsent) = encode_chunk(std::slice::from_ref(arg)).map_err(Error::Encode)?;
        let (tx, rx) = crossbeam_channel::bounded(1);
        let fid = self.inner.fn_id(f)?;
        let sink: Sink = Box::new(move |_, c, out| {
            if let Some(h) = hook {
                h(&out);
            }
            let _ = tx.send((c, out));
        });
        let c = self.inner.submit(fid, payload, sink, false)?;
        unsent.sent();
        Ok(AsyncResult::new(rx, Collect::One(c), decode))
    }

    /// Runs `f(arg)` in a worker; the result comes through the returned handle.
    ///
    /// # Errors
    ///
    /// The pool is closed, or `arg` cannot be encoded ([`Error::Encode`]).
    pub fn apply_async<A: Message, R: Message, S: 'static, F: Target<A, S, Output = R>>(
        &self,
        f: F,
        arg: A,
    ) -> Result<AsyncResult<R>, Error> {
        self.submit_one(f, &arg, None, decode_one::<R>)
    }

    /// As [`apply_async`](Pool::apply_async), with Python's `callback` and
    /// `error_callback`: exactly one of them runs, on the pool's result thread, before
    /// the [`AsyncResult`] is ready — `callback(result)`, or `error_callback(e)`.
    ///
    /// A callback must not block: the result thread routes every result of the pool and
    /// waits for it (a panic in a callback is logged and ignored). When the pool is
    /// terminated first, `error_callback` gets `TaskError::Failed` on the terminating
    /// thread. When this call returns an error, no callback runs.
    ///
    /// # Errors
    ///
    /// As `apply_async`.
    ///
    /// # Examples
    ///
    /// ```
    /// use procactor::Pool;
    /// use std::time::Duration;
    ///
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// fn main() {
    ///     procactor::init();
    ///     let pool = Pool::new(1).unwrap();
    ///     let (tx, rx) = std::sync::mpsc::channel();
    ///     let h = pool
    ///         .apply_async_with(square, 7, move |v| tx.send(v).unwrap(), |e| panic!("{e}"))
    ///         .unwrap();
    ///     assert_eq!(h.get().unwrap(), 49);
    ///     assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), 49);
    /// }
    /// ```
    pub fn apply_async_with<A, R, S, F, C, EC>(
        &self,
        f: F,
        arg: A,
        callback: C,
        error_callback: EC,
    ) -> Result<AsyncResult<R>, Error>
    where
        A: Message,
        R: Message,
        S: 'static,
        F: Target<A, S, Output = R>,
        C: FnOnce(R) + Send + 'static,
        EC: FnOnce(TaskError) + Send + 'static,
    {
        let hook: Hook =
            Box::new(
                move |out: &Outcome| match decode_one::<R>(std::slice::from_ref(out)) {
                    Ok(v) => guarded("callback", || callback(v)),
                    Err(e) => guarded("error callback", || error_callback(e)),
                },
            );
        self.submit_one(f, &arg, Some(hook), decode_one::<R>)
    }

    /// As [`apply`](Pool::apply) for a task that returns `Result<R, E>`: its `Err(e)` is
    /// [`TaskError::Failed(e)`](TaskError::Failed), typed; the pool's own reasons are
    /// [`TaskError::Pool`].
    ///
    /// # Errors
    ///
    /// As above.
    pub fn try_apply<
        A: Message,
        R: Message,
        E: Message,
        S: 'static,
        F: Target<A, S, Output = Result<R, E>>,
    >(
        &self,
        f: F,
        arg: A,
    ) -> Result<R, TaskError<E>> {
        self.try_apply_async(f, arg)
            .map_err(|e| TaskError::Pool(e.to_string()))?
            .get()
    }

    /// As [`apply_async`](Pool::apply_async) for a task that returns `Result<R, E>`: the
    /// handle's `get` gives `R`, or the task's `Err(e)` as
    /// [`TaskError::Failed(e)`](TaskError::Failed).
    ///
    /// # Errors
    ///
    /// As `apply_async`.
    pub fn try_apply_async<
        A: Message,
        R: Message,
        E: Message,
        S: 'static,
        F: Target<A, S, Output = Result<R, E>>,
    >(
        &self,
        f: F,
        arg: A,
    ) -> Result<AsyncResult<R, E>, Error> {
        self.submit_one(f, &arg, None, decode_one_typed::<R, E>)
    }

    /// The results in input order, as they come (Python's `imap`, chunk size 1).
    ///
    /// The tasks are submitted at once, as in Python: the pool's feeder thread reads
    /// `items` and submits them whether or not the results are read, keeping at most
    /// [`Imap::window`] chunks submitted and unread, so that an endless input works with
    /// flat memory. Dropping the iterator lets the input be read at most a window further
    /// (all of it after `close()`, which `join()` then waits for: see the module
    /// documentation). `items` is read on that thread, hence `Send + 'static`.
    ///
    /// # Errors
    ///
    /// The pool is closed.
    pub fn imap<A, R, S, F, I>(&self, f: F, items: I) -> Result<Imap<'_, A, R, I::IntoIter>, Error>
    where
        A: Message,
        R: Message,
        S: 'static,
        F: Target<A, S, Output = R>,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'static,
    {
        self.imap_chunksize(f, items, 1)
    }

    /// As [`imap`](Pool::imap) with chunks of `chunksize` items.
    ///
    /// # Errors
    ///
    /// The pool is closed.
    pub fn imap_chunksize<A, R, S, F, I>(
        &self,
        f: F,
        items: I,
        chunksize: usize,
    ) -> Result<Imap<'_, A, R, I::IntoIter>, Error>
    where
        A: Message,
        R: Message,
        S: 'static,
        F: Target<A, S, Output = R>,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'static,
    {
        self.feed(f, items.into_iter(), chunksize, true)
    }

    /// As [`imap`](Pool::imap), in completion order (Python's `imap_unordered`).
    ///
    /// # Errors
    ///
    /// The pool is closed.
    pub fn imap_unordered<A, R, S, F, I>(
        &self,
        f: F,
        items: I,
    ) -> Result<Imap<'_, A, R, I::IntoIter>, Error>
    where
        A: Message,
        R: Message,
        S: 'static,
        F: Target<A, S, Output = R>,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'static,
    {
        self.imap_unordered_chunksize(f, items, 1)
    }

    /// As [`imap_unordered`](Pool::imap_unordered) with chunks of `chunksize` items.
    ///
    /// # Errors
    ///
    /// The pool is closed.
    pub fn imap_unordered_chunksize<A, R, S, F, I>(
        &self,
        f: F,
        items: I,
        chunksize: usize,
    ) -> Result<Imap<'_, A, R, I::IntoIter>, Error>
    where
        A: Message,
        R: Message,
        S: 'static,
        F: Target<A, S, Output = R>,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'static,
    {
        self.feed(f, items.into_iter(), chunksize, false)
    }

    /// No more tasks: later submissions are errors; work already given completes
    /// (including what `imap` feeders have still to submit).
    pub fn close(&self) {
        let mut st = self.inner.lock();
        if st.phase == Phase::Running {
            st.phase = Phase::Closed;
        }
        drop(st);
        self.inner.closing.store(true, Ordering::SeqCst);
        self.inner.wake.wake();
    }

    /// Waits for the work given so far to complete, then for the workers to exit. Call
    /// [`close`](Pool::close) first (as in Python). Work given includes every item of an
    /// `imap`'s input, read or not (an endless input makes `join` wait forever, as in
    /// Python).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when the pool was not closed or terminated first.
    pub fn join(&self) -> Result<(), Error> {
        let mut st = self.inner.lock();
        if st.phase == Phase::Running {
            return Err(Error::InvalidArgument(
                "join() needs close() or terminate() first".into(),
            ));
        }
        self.inner.joining.store(true, Ordering::SeqCst);
        self.inner.closing.store(true, Ordering::SeqCst);
        self.inner.wake.wake();
        while !st.pending.is_empty() || self.inner.feeders.load(Ordering::SeqCst) > 0 {
            st.cv_waiters += 1;
            st = self
                .inner
                .cv
                .wait_timeout(st, Duration::from_millis(100))
                .unwrap_or_else(|e| e.into_inner())
                .0;
            st.cv_waiters -= 1;
        }
        st.phase = Phase::Terminated;
        // every worker's ring is empty: closing the pool's handles disconnects them
        for r in &self.inner.rings {
            r.close();
        }
        let procs: Vec<Process<()>> = st
            .workers
            .iter_mut()
            .filter_map(|w| w.proc.take())
            .collect();
        drop(st);
        for mut p in procs {
            let _ = p.join();
        }
        Ok(())
    }

    /// Stops at once: the workers are killed and every unfinished task fails with
    /// `TaskError::Failed` (its error callback, if any, runs on this thread); `imap`
    /// feeders stop. Calling it again is harmless.
    pub fn terminate(&self) {
        let finished = self.stop_all();
        run_sinks(finished);
        self.inner.cv.notify_all();
        self.inner.dcv.notify_all();
    }

    /// `terminate` without running the failed tasks' sinks (returned, to run).
    fn stop_all(&self) -> Finished {
        self.inner.terminated.store(true, Ordering::SeqCst);
        self.inner.closing.store(true, Ordering::SeqCst);
        let mut st = self.inner.lock();
        st.phase = Phase::Terminated;
        let procs: Vec<Process<()>> = st
            .workers
            .iter_mut()
            .filter_map(|w| w.proc.take())
            .collect();
        for w in &mut st.workers {
            w.outstanding.clear();
            w.frames.clear();
            w.frame_sent = 0;
        }
        st.queue.clear();
        st.in_flight = Cost::default();
        for r in &self.inner.rings {
            r.close();
        }
        let why = TaskError::Failed("the pool was terminated".into());
        let finished: Finished = st
            .pending
            .drain()
            .map(|(c, p)| (p.worker, c, p.sink, Err(why.clone())))
            .collect();
        drop(st);
        self.inner.wake.wake();
        // SIGKILL first to all, then reap: the time of one worker's end, not n
        for p in &procs {
            let _ = p.kill();
        }
        for mut p in procs {
            let _ = p.join();
        }
        finished
    }
}

/// How long dropping a pool waits for its result thread and its feeder (busy in a
/// user's callback or input iterator) before leaving them to end on their own.
pub const DROP_WAIT: Duration = Duration::from_secs(1);

/// Joins `t` if it ends before `deadline`; otherwise leaves it (detached).
fn join_until(t: std::thread::JoinHandle<()>, deadline: Instant) {
    while !t.is_finished() {
        if Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = t.join();
}

impl Drop for Pool {
    /// Terminates the pool (as Python's `with Pool(...)` does on exit) within a bound:
    /// the workers are sent `SIGKILL` and reaped, every unfinished task fails (its
    /// error callback runs on a thread of its own), and the pool's threads end. User
    /// code the drop would wait for — those error callbacks, the result thread in a
    /// callback, the feeder in an `imap` input's `next` — is waited for until
    /// [`DROP_WAIT`] after the drop began, then left to end on its own (the pool does
    /// nothing more). So a drop, including one while a panic unwinds, takes at most
    /// about `DROP_WAIT` beyond the kernel's time to end the killed workers.
    fn drop(&mut self) {
        let deadline = Instant::now() + DROP_WAIT;
        let finished = self.stop_all();
        if !finished.is_empty() {
            // the unfinished tasks' error callbacks are user code: on a thread of their
            // own, waited for until the deadline
            let spawned =
                runtime::thread_builder("procactor-pool-drop").spawn(move || run_sinks(finished));
            if let Ok(t) = spawned {
                join_until(t, deadline);
            }
        }
        self.inner.cv.notify_all();
        self.inner.quit.store(true, Ordering::SeqCst);
        self.inner
            .sources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        self.inner.wake.wake();
        {
            let _st = self.inner.lock();
            self.inner.dcv.notify_all();
        }
        let _ = self.inner.results.put(ResultMsg::Quit);
        if let Some(t) = self.dispatcher.take() {
            // (it may be running an error callback of a chunk a ring refused)
            join_until(t, deadline);
        }
        if let Some(t) = self.collector.take() {
            join_until(t, deadline);
        }
        if let Some(t) = self.feeder.take() {
            join_until(t, deadline);
        }
        self.watcher.take();
    }
}

/// Every chunk's outcome of a `map_async_with`, and what runs once all are there (or
/// at the first failure).
struct Gather {
    st: Mutex<GatherState>,
    /// The error callback, run at the first failed chunk.
    on_err: Arc<Mutex<Option<OnErr>>>,
    /// A chunk's first failed item, if any.
    first_error: fn(&Outcome) -> Option<TaskError>,
}

struct GatherState {
    /// Each chunk's outcome.
    outs: Vec<Option<Outcome>>,
    /// How many are missing.
    missing: usize,
    /// What runs once none is (unless one failed).
    on_all: Option<OnAll>,
    /// A chunk failed: `on_all` will not run.
    failed: bool,
}

/// The first failed item of a chunk (decoded as `R`, so that a result that cannot be
/// decoded counts as a failure too).
fn chunk_error<R: DeserializeOwned>(out: &Outcome) -> Option<TaskError> {
    match out {
        Err(e) => Some(e.clone()),
        Ok(_) => decode_chunk::<R>(out, 1).into_iter().find_map(Result::err),
    }
}

impl Gather {
    fn put(&self, k: usize, out: &Outcome) {
        let err = (self.first_error)(out);
        {
            let mut g = self.st.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(slot) = g.outs.get_mut(k) {
                if slot.is_none() {
                    *slot = Some(out.clone());
                    g.missing -= 1;
                }
            }
            if err.is_none() && (g.missing != 0 || g.failed) {
                return;
            }
            if err.is_some() {
                g.failed = true;
                g.on_all = None;
            }
        }
        match err {
            Some(e) => {
                let f = self.on_err.lock().unwrap_or_else(|e| e.into_inner()).take();
                if let Some(f) = f {
                    f(e);
                }
            }
            None => self.fire(),
        }
    }

    fn fire(&self) {
        let (outs, f) = {
            let mut g = self.st.lock().unwrap_or_else(|e| e.into_inner());
            let outs: Vec<Outcome> = g.outs.iter_mut().filter_map(Option::take).collect();
            (outs, g.on_all.take())
        };
        if let Some(f) = f {
            f(&outs);
        }
    }
}

/// What the feeder and an `imap`'s iterator share: how many chunks are submitted, done
/// and read.
struct Feed {
    st: Mutex<FeedState>,
    /// The most chunks submitted and not read.
    cap: u64,
    /// Wakes the feeder when room is made.
    wake: Arc<Wake>,
}

#[derive(Default)]
struct FeedState {
    submitted: u64,
    done: u64,
    delivered: u64,
    /// The iterator was dropped: results are thrown away.
    gone: bool,
    /// `submitted` when the iterator was dropped.
    submitted_at_drop: u64,
}

impl Feed {
    fn lock(&self) -> MutexGuard<'_, FeedState> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What the feeder (and the sinks of its chunks) send an iterator.
enum FeedMsg {
    /// Chunk `seq` of `n` items; whether it was submitted (counted in the window).
    Chunk(u64, usize, Outcome, bool),
    /// The input ended (or the pool was terminated) after this many chunks.
    End(u64),
}

/// One chunk read from an input.
enum Part {
    /// Encoded, `n` items.
    Chunk(Payload, Unsent, usize),
    /// `n` items that cannot go (they fail with this error); `true`: the input ends.
    Failed(TaskError, usize, bool),
}

/// An `imap`'s input, as the feeder reads it.
trait Input: Send {
    /// The next chunk, `None` at the end of the input.
    fn next_chunk(&mut self) -> Option<Part>;
}

struct InputOf<A, I> {
    input: I,
    chunksize: usize,
    _a: PhantomData<fn(A)>,
}

impl<A: Message, I: Iterator<Item = A> + Send> Input for InputOf<A, I> {
    fn next_chunk(&mut self) -> Option<Part> {
        // the input is the user's code: a panic in it ends the input with an error item
        // (not the feeder, which every input and `join` wait for)
        let n = self.chunksize;
        let input = &mut self.input;
        let part = std::panic::catch_unwind(AssertUnwindSafe(|| input.take(n).collect::<Vec<A>>()));
        match part {
            Err(p) => Some(Part::Failed(
                TaskError::Failed(format!(
                    "the input iterator panicked: {}",
                    runtime::take_panic_message(&*p)
                )),
                1,
                true,
            )),
            Ok(part) if part.is_empty() => None,
            Ok(part) => Some(match encode_chunk(&part) {
                Ok((payload, unsent)) => Part::Chunk(payload, unsent, part.len()),
                // its items fail; the rest goes on
                Err(e) => Part::Failed(encode_failed(e), part.len(), false),
            }),
        }
    }
}

/// An input being fed, with its iterator's side.
struct Source {
    input: Box<dyn Input>,
    feed: Arc<Feed>,
    fid: u32,
    /// The next chunk's number.
    seq: u64,
    tx: crossbeam_channel::Sender<FeedMsg>,
}

/// What one look at a source did.
enum Step {
    Read,
    Wait,
    Ended,
}

/// The pool's feeder thread (Python's task handler): reads every `imap`/`map` input,
/// a chunk at a time in turn, each within its window, and submits the chunks.
fn read_inputs(inner: &Arc<Inner>, new: &crossbeam_channel::Receiver<Source>) {
    let mut sources: Vec<Source> = Vec::new();
    loop {
        // (set before looking, so that a change made while looking is not missed)
        inner.wake.waiting.store(true, Ordering::SeqCst);
        while let Ok(s) = new.try_recv() {
            sources.push(s);
        }
        let quit = inner.quit.load(Ordering::SeqCst);
        let mut progressed = false;
        let mut k = 0;
        while k < sources.len() {
            let step = if quit {
                Step::Ended
            } else {
                feed_one(inner, &mut sources[k])
            };
            match step {
                Step::Read => {
                    progressed = true;
                    k += 1;
                }
                Step::Wait => k += 1,
                Step::Ended => {
                    let s = sources.remove(k);
                    let _ = s.tx.send(FeedMsg::End(s.seq));
                    drop(s);
                    inner.feeders.fetch_sub(1, Ordering::SeqCst);
                    let st = inner.lock();
                    let wake = st.cv_waiters > 0;
                    drop(st);
                    if wake {
                        inner.cv.notify_all();
                    }
                    progressed = true;
                }
            }
        }
        if quit {
            return;
        }
        if !progressed {
            inner.wake.sleep(Duration::from_millis(100));
        }
        inner.wake.waiting.store(false, Ordering::SeqCst);
    }
}

/// Reads and submits one chunk of `src` if its window allows.
fn feed_one(inner: &Arc<Inner>, src: &mut Source) -> Step {
    if inner.terminated.load(Ordering::SeqCst) {
        return Step::Ended;
    }
    {
        let s = src.feed.lock();
        if s.gone && !inner.closing.load(Ordering::SeqCst) {
            // dropped while the pool runs: a window more, then it stops (an endless
            // input does not run for ever); `close` lets it finish, as in Python
            if s.submitted - s.submitted_at_drop >= src.feed.cap {
                return Step::Ended;
            }
        }
        let unread = if s.gone {
            s.submitted - s.done
        } else {
            s.submitted - s.delivered
        };
        if unread >= src.feed.cap && !inner.joining.load(Ordering::SeqCst) {
            return Step::Wait;
        }
    }
    let seq = src.seq;
    match src.input.next_chunk() {
        None => Step::Ended,
        Some(Part::Failed(e, n, end)) => {
            let _ = src.tx.send(FeedMsg::Chunk(seq, n, Err(e), false));
            src.seq += 1;
            if end {
                Step::Ended
            } else {
                Step::Read
            }
        }
        Some(Part::Chunk(payload, unsent, n)) => {
            src.feed.lock().submitted += 1;
            let (feed_s, tx_s) = (src.feed.clone(), src.tx.clone());
            let sink: Sink = Box::new(move |_, _, out| {
                feed_s.lock().done += 1;
                feed_s.wake.wake();
                let _ = tx_s.send(FeedMsg::Chunk(seq, n, out, true));
            });
            src.seq += 1;
            match inner.submit(src.fid, payload, sink, true) {
                Ok(_) => {
                    unsent.sent();
                    Step::Read
                }
                Err(e) => {
                    // terminated (or every worker given up): this chunk fails, and the
                    // input is not read further
                    src.feed.lock().submitted -= 1;
                    let _ = src.tx.send(FeedMsg::Chunk(
                        seq,
                        n,
                        Err(TaskError::Failed(e.to_string())),
                        false,
                    ));
                    Step::Ended
                }
            }
        }
    }
}

/// Results of [`Pool::imap`] and [`Pool::imap_unordered`] (and the driver of `map`):
/// one `Result` per input item. Its tasks run whether it is read or dropped (see
/// [`Pool::imap`]).
pub struct Imap<'p, A, R, I> {
    feed: Arc<Feed>,
    rx: crossbeam_channel::Receiver<FeedMsg>,
    ordered: bool,
    /// How many chunks the input made (once the feeder is done).
    total: Option<u64>,
    /// Chunks whose items went to `ready`.
    seen: u64,
    reorder: BTreeMap<u64, (Vec<Result<R, TaskError>>, bool)>,
    /// Results in order, each with whether taking it completes a chunk that counts in
    /// the feeder's window (its last item): a chunk is *read* when the caller has taken
    /// all of it, not when it arrived.
    ready: VecDeque<(Result<R, TaskError>, bool)>,
    _t: Marker<'p, A, R, I>,
}

impl<A, R, I> fmt::Debug for Imap<'_, A, R, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Imap")
            .field("ordered", &self.ordered)
            .field("window", &self.feed.cap)
            .field("chunks_seen", &self.seen)
            .finish()
    }
}

fn decode_chunk<R: DeserializeOwned>(out: &Outcome, n: usize) -> Vec<Result<R, TaskError>> {
    match out {
        Err(e) => (0..n).map(|_| Err(e.clone())).collect(),
        Ok(bytes) => match codec::decode::<ChunkOut<R>>(bytes, Vec::new()) {
            Ok(Ok(v)) => v.into_iter().map(Ok).collect(),
            Ok(Err(v)) => v
                .into_iter()
                .map(|r| r.map_err(|message| TaskError::Panicked { message }))
                .collect(),
            Err(e) => (0..n)
                .map(|_| {
                    Err(TaskError::Failed(format!(
                        "could not decode the result: {e}"
                    )))
                })
                .collect(),
        },
    }
}

impl<A, R: Message, I> Imap<'_, A, R, I> {
    /// The most chunks (of `chunksize` items) its feeder keeps submitted and not yet
    /// read: [`IMAP_WINDOW_PER_WORKER`] × the pool's processes.
    pub fn window(&self) -> usize {
        self.feed.cap as usize
    }

    /// The next result, waiting at most `timeout` (Python's `IMapIterator.next(timeout)`):
    /// `Some(Err(TaskError::Timeout))` when none came in time (the iterator is unchanged:
    /// ask again), `None` at the end.
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<R, TaskError>> {
        self.next_until(Deadline::after(timeout).instant())
    }

    fn next_until(&mut self, deadline: Option<Instant>) -> Option<Result<R, TaskError>> {
        loop {
            if let Some((r, completes)) = self.ready.pop_front() {
                if completes {
                    self.read_chunks(1);
                }
                return Some(r);
            }
            if self.total.is_some_and(|t| self.seen >= t) {
                return None;
            }
            let msg = match deadline {
                None => self.rx.recv().ok()?,
                Some(d) => match self.rx.recv_deadline(d) {
                    Ok(m) => m,
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                        return Some(Err(TaskError::Timeout))
                    }
                    // every sender is gone: nothing more comes
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return None,
                },
            };
            match msg {
                FeedMsg::End(t) => self.total = Some(t),
                FeedMsg::Chunk(seq, n, out, counted) => {
                    let items = decode_chunk::<R>(&out, n);
                    self.deliver(seq, items, counted);
                }
            }
        }
    }

    fn deliver(&mut self, seq: u64, items: Vec<Result<R, TaskError>>, counted: bool) {
        if self.ordered {
            self.reorder.insert(seq, (items, counted));
            while let Some((items, counted)) = self.reorder.remove(&self.seen) {
                self.make_ready(items, counted);
                self.seen += 1;
            }
        } else {
            self.make_ready(items, counted);
            self.seen += 1;
        }
    }

    /// Queues a chunk's results for the caller; the chunk counts as read when its last
    /// result is taken (at once if it has none).
    fn make_ready(&mut self, items: Vec<Result<R, TaskError>>, counted: bool) {
        let n = items.len();
        if n == 0 && counted {
            self.read_chunks(1);
        }
        self.ready.extend(
            items
                .into_iter()
                .enumerate()
                .map(|(i, r)| (r, counted && i + 1 == n)),
        );
    }

    /// `n` chunks of this operation were read: room in the feeder's window.
    fn read_chunks(&self, n: u64) {
        self.feed.lock().delivered += n;
        self.feed.wake.wake();
    }
}

impl<A, R, I> Drop for Imap<'_, A, R, I> {
    fn drop(&mut self) {
        {
            let mut s = self.feed.lock();
            s.gone = true;
            s.submitted_at_drop = s.submitted;
        }
        self.feed.wake.wake();
    }
}

impl<A, R: Message, I> Iterator for Imap<'_, A, R, I> {
    type Item = Result<R, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_until(None)
    }
}

enum Collect {
    One(u64),
    Chunks(Vec<u64>),
}

/// The result of [`Pool::apply_async`] / [`Pool::map_async`], to fetch later
/// (Python's `AsyncResult`). `E`: see [`TaskError`] (the task's error type for
/// [`Pool::try_apply_async`]).
///
/// Its methods may be called from several threads at once; [`ready`](AsyncResult::ready),
/// [`successful`](AsyncResult::successful) and the `_timeout` methods never wait behind
/// another thread's [`get`](AsyncResult::get) (which waits without holding the handle's
/// lock).
pub struct AsyncResult<T, E = String> {
    rx: crossbeam_channel::Receiver<(u64, Outcome)>,
    what: Collect,
    got: Mutex<Got>,
    /// Signalled when the thread receiving for everyone got something.
    cv: Condvar,
    decode: fn(&[Outcome]) -> Result<T, TaskError<E>>,
}

/// The chunks an `AsyncResult` has received.
#[derive(Default)]
struct Got {
    outs: HashMap<u64, Outcome>,
    /// A thread waits in the channel's `recv` (without the lock) for everyone.
    receiving: bool,
}

impl<T, E> fmt::Debug for AsyncResult<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncResult").finish_non_exhaustive()
    }
}

fn decode_one<R: DeserializeOwned>(chunks: &[Outcome]) -> Result<R, TaskError> {
    let Some(out) = chunks.first() else {
        return Err(TaskError::Failed("no result".into()));
    };
    decode_chunk::<R>(out, 1)
        .into_iter()
        .next()
        .unwrap_or_else(|| Err(TaskError::Failed("an empty result".into())))
}

fn decode_one_typed<R: DeserializeOwned, E: DeserializeOwned>(
    chunks: &[Outcome],
) -> Result<R, TaskError<E>> {
    match decode_one::<Result<R, E>>(chunks) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(TaskError::Failed(e)),
        Err(e) => Err(e.typed()),
    }
}

fn decode_all<R: DeserializeOwned>(chunks: &[Outcome]) -> Result<Vec<R>, TaskError> {
    let mut v = Vec::new();
    for out in chunks {
        // the item count only matters for a failed chunk, where any positive one does
        for r in decode_chunk::<R>(out, 1) {
            v.push(r?);
        }
    }
    Ok(v)
}

impl<T, E> AsyncResult<T, E> {
    fn new(
        rx: crossbeam_channel::Receiver<(u64, Outcome)>,
        what: Collect,
        decode: fn(&[Outcome]) -> Result<T, TaskError<E>>,
    ) -> Self {
        AsyncResult {
            rx,
            what,
            got: Mutex::new(Got::default()),
            cv: Condvar::new(),
            decode,
        }
    }

    fn ids(&self) -> Vec<u64> {
        match &self.what {
            Collect::One(c) => vec![*c],
            Collect::Chunks(v) => v.clone(),
        }
    }

    /// Takes what has arrived, waiting until `deadline` (`None`: for ever) for the rest;
    /// `true` once everything has. The lock is never held across a blocking receive:
    /// one waiting thread receives for all, the others wait on `cv` (each with its own
    /// deadline), and a `deadline` already passed never waits.
    fn gather(&self, deadline: Option<Instant>) -> bool {
        let ids = self.ids();
        let lock = || self.got.lock().unwrap_or_else(|e| e.into_inner());
        let mut g = lock();
        loop {
            while let Ok((c, out)) = self.rx.try_recv() {
                g.outs.insert(c, out);
            }
            if ids.iter().all(|c| g.outs.contains_key(c)) {
                return true;
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| d <= now) {
                return false;
            }
            if g.receiving {
                // another thread receives: wait for what it gets (or our deadline)
                g = match deadline {
                    None => self.cv.wait(g).unwrap_or_else(|e| e.into_inner()),
                    Some(d) => {
                        self.cv
                            .wait_timeout(g, d - now)
                            .unwrap_or_else(|e| e.into_inner())
                            .0
                    }
                };
                continue;
            }
            g.receiving = true;
            drop(g);
            let r = match deadline {
                None => self.rx.recv().map_err(|_| true),
                Some(d) => self.rx.recv_deadline(d).map_err(|e| e.is_disconnected()),
            };
            g = lock();
            g.receiving = false;
            self.cv.notify_all();
            match r {
                Ok((c, out)) => {
                    g.outs.insert(c, out);
                }
                Err(true) => {
                    // every sender is gone: nothing more comes
                    while let Ok((c, out)) = self.rx.try_recv() {
                        g.outs.insert(c, out);
                    }
                    return ids.iter().all(|c| g.outs.contains_key(c));
                }
                Err(false) => {} // timed out: the loop sees the deadline passed
            }
        }
    }

    /// Whether the result is there (Python's `ready()`).
    pub fn ready(&self) -> bool {
        self.gather(Some(Instant::now()))
    }

    /// Waits until the result is there (Python's `wait()`).
    pub fn wait(&self) {
        self.gather(None);
    }

    /// Waits at most `timeout`; whether the result is there (Python's `wait(timeout)`).
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.gather(Deadline::after(timeout).instant())
    }

    /// Whether it completed without error (Python's `successful()`); `None` while not
    /// ready (where Python raises `ValueError`).
    pub fn successful(&self) -> Option<bool> {
        if !self.ready() {
            return None;
        }
        Some(self.value().is_ok())
    }

    /// Waits for the result and returns it (Python's `get()`); it can be taken again.
    ///
    /// # Errors
    ///
    /// The task's [`TaskError`] (for `map_async`: the first failed item's, in order).
    pub fn get(&self) -> Result<T, TaskError<E>> {
        self.wait();
        self.value()
    }

    /// As [`get`](AsyncResult::get), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`TaskError::Timeout`] when the result is not there in time; else as `get`.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, TaskError<E>> {
        if !self.wait_timeout(timeout) {
            return Err(TaskError::Timeout);
        }
        self.value()
    }

    fn value(&self) -> Result<T, TaskError<E>> {
        let got = self.got.lock().unwrap_or_else(|e| e.into_inner());
        let chunks: Vec<Outcome> = self
            .ids()
            .iter()
            .map(|c| {
                got.outs
                    .get(c)
                    .cloned()
                    .unwrap_or_else(|| Err(TaskError::Failed("no result".into())))
            })
            .collect();
        (self.decode)(&chunks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_chunks_are_pythons() {
        // Python: chunksize, extra = divmod(len, 4 * processes); if extra: chunksize += 1
        assert_eq!(default_chunksize(0, 2), 1);
        assert_eq!(default_chunksize(10, 4), 1);
        assert_eq!(default_chunksize(200_000, 2), 25_000);
        assert_eq!(default_chunksize(200_001, 2), 25_001);
        assert_eq!(default_chunksize(17, 1), 5);
    }

    #[test]
    fn the_window_queues_about_a_millisecond_of_work() {
        assert_eq!(window_for(Duration::from_millis(5)), 1);
        assert_eq!(window_for(Duration::from_micros(250)), 4);
        assert_eq!(window_for(Duration::from_nanos(1)), MAX_WINDOW);
        assert_eq!(window_for(Duration::ZERO), MAX_WINDOW);
    }

    #[test]
    fn the_submission_window_bounds_chunks_bytes_and_descriptors() {
        let one = |bytes, fds| Cost {
            chunks: 1,
            bytes,
            fds,
        };
        let mut w = Cost::default();
        // an empty window takes any one chunk, however large
        assert!(w.admits(one(SUBMIT_WINDOW_BYTES * 2, SUBMIT_WINDOW_FDS * 2)));
        w.add(one(SUBMIT_WINDOW_BYTES - 10, 0));
        assert!(w.admits(one(10, 0)));
        assert!(!w.admits(one(11, 0)));
        let mut f = Cost::default();
        f.add(one(0, SUBMIT_WINDOW_FDS));
        assert!(!f.admits(one(0, 1)));
        assert!(f.admits(one(100, 0)));
        let mut c = Cost {
            chunks: SUBMIT_WINDOW_CHUNKS,
            bytes: 0,
            fds: 0,
        };
        assert!(!c.admits(one(0, 0)));
        c.sub(one(0, 0));
        assert!(c.admits(one(0, 0)));
        // taking back more than was added never wraps
        c.sub(one(5, 5));
        assert_eq!((c.bytes, c.fds), (0, 0));
    }

    #[test]
    fn chunk_outcomes_decode_per_item() {
        let mut buf = Vec::new();
        let all_ok: ChunkOut<u32> = Ok(vec![1, 2]);
        codec::encode(&all_ok, &mut buf, None).unwrap();
        let v = decode_chunk::<u32>(&Ok(Bytes::from(buf.clone())), 2);
        assert_eq!(v, [Ok(1), Ok(2)]);
        buf.clear();
        let mixed: ChunkOut<u32> = Err(vec![Ok(1), Err("boom".into())]);
        codec::encode(&mixed, &mut buf, None).unwrap();
        let v = decode_chunk::<u32>(&Ok(Bytes::from(buf)), 2);
        assert_eq!(
            v[1],
            Err(TaskError::Panicked {
                message: "boom".into()
            })
        );
        // a whole-chunk failure repeats for each item; garbage is a decode failure
        let v = decode_chunk::<u32>(&Err(TaskError::WorkerDied(ExitStatus::Signal(9))), 3);
        assert_eq!(v.len(), 3);
        let v = decode_chunk::<u32>(&Ok(Bytes::from(vec![0xff, 0x00])), 2);
        assert!(matches!(v[0], Err(TaskError::Failed(_))));
    }
}
