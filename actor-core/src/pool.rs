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
//! As in Python, `imap` and `imap_unordered` submit their tasks at the call: a feeder
//! thread of their own (Python's task handler) reads the input and submits its chunks
//! whether or not the results are read, so `pool.imap(f, items)` followed by `close()`
//! and `join()` runs every task. Unlike Python, which reads the whole input at once, the
//! feeder keeps at most [`IMAP_WINDOW_PER_WORKER`] × `processes` chunks submitted and not
//! yet read ([`Imap::window`]): an endless input works with flat memory. Once the
//! iterator is dropped its results are thrown away, so the window then only counts chunks
//! still running; while [`Pool::join`] waits, the window does not hold the feeders back
//! (results then wait for their reader in memory, as in Python).
//!
//! # Worker names
//!
//! Workers are named as Python names them: `SpawnPoolWorker-N`, `ForkServerPoolWorker-N`
//! or `ForkPoolWorker-N` by start method, `N` counting from 1 over every pool worker this
//! process started (a replacement gets the next number). Python's `N` is the counter
//! of every child process; procactor counts pool workers alone.

use crate::codec::{self, Encoded, RecvFd, SendFd, Unsent};
use crate::error::{EncodeError, Error, SpawnError};
use crate::monitor::ExitWatcher;
use crate::process::{start_encoded_via, Process};
use crate::queue::Queue;
use crate::runtime::{self, StartMethod};
use crate::shared::RawArray;
use crate::{Bytes, ExitStatus, GetError, Message};
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

/// A function reference as it travels: image-relative address and type name. Public
/// (hidden) for `procactor-redis`, whose local workers receive theirs the same way.
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FnRef(pub i64, pub String);

impl FnRef {
    /// Describes function pointer `f`.
    pub fn of<F: Copy + 'static>(f: F) -> FnRef {
        let t = target::describe(f);
        FnRef(t.offset.0, t.type_name)
    }
    /// The reference as `procactor_transports::target` resolves it.
    pub fn target(&self) -> TargetRef {
        TargetRef {
            offset: target::FnOffset(self.0),
            type_name: self.1.clone(),
        }
    }
}

/// What the result ring carries.
#[derive(Serialize, Deserialize)]
enum ResultMsg {
    /// Chunk `id` is done: the CBOR of its results, or why the whole chunk failed.
    #[serde(rename = "d")]
    Done(u64, Result<Bytes, String>),
    /// Worker `i` has exited (put by the pool's exit watcher, behind the worker's last
    /// result).
    #[serde(rename = "x")]
    Exited(u32),
    /// The collector should end (the pool is gone).
    #[serde(rename = "q")]
    Quit,
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
    let f = target::resolve_target::<F, A, S>(target, proof)?;
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
        .ok_or_else(|| "initializer of an unexpected type".to_string())?;
    let a: A = args.decode().map_err(|e| e.to_string())?;
    f.call(a);
    Ok(())
}

/// Words of a worker's cell: the chunk it runs, and 1 once it is ready (initialized).
const CELL_CHUNK: usize = 0;
const CELL_READY: usize = 1;
const CELL_WORDS: usize = 2;
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
    results: Queue<ResultMsg>,
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
            .unwrap_or_else(|| panic!("pool worker: unexpected initializer trampoline"));
        if let Err(e) = t(&target.target(), proof, args) {
            panic!("pool worker: initializer failed: {e}");
        }
    }
    if let Some(w) = cell.atomic_u64(CELL_READY) {
        w.store(1, Ordering::Release);
    }
    let mut runners: HashMap<u32, Runner> = HashMap::new();
    let register = |runners: &mut HashMap<u32, Runner>, id: u32, b: &FnRef, t: &FnRef| {
        let binder: Option<BindFn> = target::resolve_checked(&b.target(), proof);
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
            Err(GetError::Empty) => continue,
            Err(GetError::Broken) => panic!("pool worker: the task ring is broken"),
        };
        if let Some(w) = chunk_word {
            w.store(chunk, Ordering::Release);
        }
        let out = args.and_then(|args| match runners.get(&f) {
            Some(run) => run(&args, fds).map(Bytes::from),
            None => Err(format!("unknown function {f} in the worker")),
        });
        if let Err(e) = results.put(ResultMsg::Done(chunk, out)) {
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
    fn write_to(&self, sock: BorrowedFd<'_>) -> std::io::Result<()> {
        let fds: Vec<BorrowedFd<'_>> = self.fds.iter().map(|f| f.as_fd()).collect();
        frame::write_frame(sock, &self.bytes, &fds)
    }
}

/// A chunk's encoded arguments.
enum Payload {
    /// No handles: the bytes go through the worker's ring.
    Plain(Bytes),
    /// Handles: through the worker's socket.
    Fds(Arc<FdFrame>),
}

struct Pending {
    worker: usize,
    sink: Sink,
    /// The arguments of a chunk sent through the worker's socket.
    frame: Option<Arc<FdFrame>>,
}

/// Where an `AsyncResult`'s chunks arrive.
type ResultsRx = crossbeam_channel::Receiver<(u64, Outcome)>;
/// Sees one task's outcome on the result thread (runs its callbacks).
type Hook = Box<dyn FnOnce(&Outcome) + Send>;
/// Sees every chunk's outcome of a `map_async_with`, in order, once all are there.
type OnAll = Box<dyn FnOnce(&[Outcome]) + Send>;
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
    fns: Vec<(u32, FnRef, FnRef)>,
    fn_ids: HashMap<(FnRef, FnRef), u32>,
    next_chunk: u64,
    phase: Phase,
}

/// The process-wide number of the next pool worker (Python's `…PoolWorker-N`).
static WORKER_NUMBER: AtomicU64 = AtomicU64::new(1);

struct Inner {
    st: Mutex<State>,
    /// Signalled whenever a chunk finishes or a worker is replaced.
    cv: Condvar,
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
    /// Each worker's task ring (usable without the state lock; put into under `puts`).
    rings: Vec<Queue<TaskMsg>>,
    /// Taken by whoever puts into worker `i`'s ring (or writes to its socket), and by the
    /// collector while it replaces that worker; always before the state lock.
    puts: Vec<Mutex<()>>,
    /// Set by the exit watcher when worker `i` exits, cleared when it is replaced.
    dead: Vec<AtomicBool>,
    /// Feeder threads (of `imap` and `map`) still submitting.
    feeders: AtomicUsize,
    /// `join` waits: feeders ignore their window.
    joining: AtomicBool,
    /// `terminate` was called: feeders stop.
    terminated: AtomicBool,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn start_worker(&self, st: &mut State, i: usize) -> Result<(), SpawnError> {
        let init = match &self.init {
            None => None,
            Some((t, f, args)) => Some((t, f, args()?)),
        };
        let (ours, theirs) = fdpass::socketpair()?;
        let w = &mut st.workers[i];
        let boot = WorkerBootRef {
            tasks: &self.rings[i],
            results: &self.results,
            cell: &w.cell,
            sock: SendFd(theirs.as_fd()),
            fns: &st.fns,
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
        w.proc = Some(p);
        w.sock = Some(Arc::new(ours));
        Ok(())
    }

    /// The id workers know `f` by, registering it first if needed. Every worker's ring
    /// gets the registration before the id is handed out, so it precedes every chunk
    /// that uses it (a replacement worker gets all registrations in its boot).
    fn fn_id<A: Message, R: Message, S: 'static, F: Target<A, S, Output = R>>(
        &self,
        f: F,
    ) -> Result<u32, Error> {
        let binder: BindFn = bind::<A, R, S, F>;
        let t = target::describe_target(f).map_err(|e| Error::InvalidArgument(e.0))?;
        let key = (FnRef::of(binder), FnRef(t.offset.0, t.type_name));
        let id = {
            let mut st = self.lock();
            if st.phase != Phase::Running {
                return Err(closed());
            }
            if let Some(&id) = st.fn_ids.get(&key) {
                return Ok(id);
            }
            let id = st.fns.len() as u32 + 1;
            st.fns.push((id, key.0.clone(), key.1.clone()));
            id
        };
        for i in 0..self.processes {
            let _g = self.puts[i].lock().unwrap_or_else(|e| e.into_inner());
            let mut msg = TaskMsg::Register(id, key.0.clone(), key.1.clone());
            loop {
                match self.rings[i].put_timeout(msg, PUT_SLICE) {
                    Ok(()) => break,
                    Err(e) if self.dead[i].load(Ordering::Acquire) || !e.is_full() => {
                        break; // a replacement gets every registration in its boot
                    }
                    Err(e) => msg = e.into_inner(),
                }
            }
        }
        self.lock().fn_ids.insert(key, id);
        Ok(id)
    }

    /// Sends one chunk: to the least loaded worker (everything queued in it) among those
    /// where this operation has fewer than `window` chunks (`mine` counts them; empty:
    /// no window). `after_close`: a feeder finishing what was given before `close`.
    /// `mine[worker]` is counted up here; the sink counts it down.
    fn submit(
        &self,
        fid: u32,
        payload: Payload,
        window: usize,
        mine: &[AtomicUsize],
        sink: Sink,
        after_close: bool,
    ) -> Result<(u64, usize), Error> {
        let refused = |phase: Phase| match phase {
            Phase::Running => false,
            Phase::Closed => !after_close,
            Phase::Terminated => true,
        };
        let mut sink = Some(sink);
        let mut payload = Some(payload);
        loop {
            let i = {
                let st = self.lock();
                if refused(st.phase) {
                    return Err(closed());
                }
                if st.workers.iter().all(|w| w.broken) {
                    return Err(Error::InvalidArgument(format!(
                        "every pool worker failed to start {MAX_START_FAILURES} times in a row \
                         (does the initializer fail?)"
                    )));
                }
                let pick = st
                    .workers
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| {
                        mine.get(*i)
                            .is_none_or(|m| m.load(Ordering::Acquire) < window)
                            && !self.dead[*i].load(Ordering::Acquire)
                    })
                    .min_by_key(|(_, w)| w.outstanding.len())
                    .map(|(i, _)| i);
                match pick {
                    Some(p) => p,
                    None => {
                        // no room: wait for a chunk to finish or a worker to come back
                        let _ = self.cv.wait_timeout(st, Duration::from_millis(50));
                        continue;
                    }
                }
            };
            // the put lock orders this worker's ring (and socket) as `outstanding`
            // records it
            let _g = self.puts[i].lock().unwrap_or_else(|e| e.into_inner());
            let frame = match &payload {
                Some(Payload::Fds(f)) => Some(f.clone()),
                _ => None,
            };
            let (chunk, sock) = {
                let mut st = self.lock();
                if refused(st.phase) {
                    return Err(closed());
                }
                if self.dead[i].load(Ordering::Acquire) {
                    drop(_g);
                    continue;
                }
                // (read under the put lock: a replacement, which takes it too, cannot
                // come between this and the write)
                let sock = st.workers[i].sock.clone();
                let chunk = st.next_chunk;
                st.next_chunk += 1;
                st.workers[i].outstanding.push_back(chunk);
                st.pending.insert(
                    chunk,
                    Pending {
                        worker: i,
                        sink: sink.take().unwrap_or_else(|| Box::new(|_, _, _| {})),
                        frame: frame.clone(),
                    },
                );
                (chunk, sock)
            };
            if let Some(m) = mine.get(i) {
                m.fetch_add(1, Ordering::AcqRel);
            }
            let mut msg = match payload.take() {
                Some(Payload::Plain(b)) => TaskMsg::Run(chunk, fid, b),
                _ => TaskMsg::RunSocket(chunk, fid),
            };
            loop {
                match self.rings[i].put_timeout(msg, PUT_SLICE) {
                    Ok(()) => {
                        if let (Some(f), Some(sock)) = (&frame, &sock) {
                            // the worker waits for it at the marker; a worker that died
                            // meanwhile makes it fail, and the exit handling sends the
                            // frame again to its replacement if the marker was queued
                            if let Err(e) = f.write_to(sock.as_fd()) {
                                tracing::debug!(worker = i, error = %e, "pool: task socket");
                            }
                        }
                        return Ok((chunk, i));
                    }
                    Err(e) if e.is_full() && !self.dead[i].load(Ordering::Acquire) => {
                        msg = e.into_inner();
                    }
                    Err(e) => {
                        // its worker died (or the ring refuses): take the reservation
                        // back and choose again
                        if let Some(m) = mine.get(i) {
                            m.fetch_sub(1, Ordering::AcqRel);
                        }
                        let mut st = self.lock();
                        if let Some(p) = st.pending.remove(&chunk) {
                            sink = Some(p.sink);
                        }
                        st.workers[i].outstanding.retain(|&c| c != chunk);
                        if !e.is_full() && !e.is_closed() {
                            return Err(Error::InvalidArgument(format!(
                                "a worker's task ring refused a chunk: {e}"
                            )));
                        }
                        payload = Some(match e.into_inner() {
                            TaskMsg::Run(_, _, p) => Payload::Plain(p),
                            _ => match frame {
                                Some(f) => Payload::Fds(f),
                                None => Payload::Plain(Bytes::from(Vec::new())),
                            },
                        });
                        break;
                    }
                }
            }
            drop(_g);
            let st = self.lock();
            let _ = self.cv.wait_timeout(st, Duration::from_millis(20));
        }
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
/// Dropping the pool terminates it (as Python's `with Pool(...)` does).
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
        self.init = Some((FnRef::of(tramp), FnRef(t.offset.0, t.type_name), enc));
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
            workers.push(Worker {
                cell: RawArray::zeroed(CELL_WORDS)?,
                proc: None,
                sock: None,
                outstanding: VecDeque::new(),
                start_failures: 0,
                broken: false,
            });
        }
        let inner = Arc::new(Inner {
            rings,
            puts: (0..n).map(|_| Mutex::new(())).collect(),
            dead: (0..n).map(|_| AtomicBool::new(false)).collect(),
            st: Mutex::new(State {
                workers,
                pending: HashMap::new(),
                fns: Vec::new(),
                fn_ids: HashMap::new(),
                next_chunk: 1,
                phase: Phase::Running,
            }),
            cv: Condvar::new(),
            processes: n,
            results,
            init,
            maxtasks: self.maxtasks,
            method,
            zygote,
            feeders: AtomicUsize::new(0),
            joining: AtomicBool::new(false),
            terminated: AtomicBool::new(false),
        });
        // watching before any worker starts, so that no exit is missed
        let i3 = inner.clone();
        let watcher =
            ExitWatcher::start("procactor-pool-exits", move |ev| worker_exited(&i3, ev.pid))?;
        {
            let mut st = inner.lock();
            for i in 0..n {
                if let Err(e) = inner.start_worker(&mut st, i) {
                    for w in &st.workers {
                        if let Some(p) = &w.proc {
                            let _ = p.kill();
                        }
                    }
                    return Err(e.into());
                }
            }
        }
        let reader = inner.results.clone();
        reader.close(); // the collector only reads
        let i2 = inner.clone();
        let collector = crate::runtime::thread_builder("procactor-pool-results")
            .spawn(move || collect(i2, reader))?;
        Ok(Pool {
            inner,
            processes: n,
            collector: Some(collector),
            watcher: Some(watcher),
        })
    }
}

/// Puts an exit notice on the result ring when a worker exits (behind its results).
fn worker_exited(inner: &Inner, pid: u32) {
    let idx = {
        let st = inner.lock();
        st.workers
            .iter()
            .position(|w| w.proc.as_ref().is_some_and(|p| p.pid() == pid))
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
            Ok(ResultMsg::Done(chunk, out)) => {
                let mut st = inner.lock();
                let done = st.pending.remove(&chunk).inspect(|p| {
                    if let Some(w) = st.workers.get_mut(p.worker) {
                        if let Some(pos) = w.outstanding.iter().position(|&c| c == chunk) {
                            w.outstanding.remove(pos);
                        }
                    }
                });
                drop(st);
                if let Some(p) = done {
                    (p.sink)(p.worker, chunk, out.map_err(TaskError::Failed));
                }
                inner.cv.notify_all();
            }
            Ok(ResultMsg::Exited(i)) => {
                let i = i as usize;
                let Some(put) = inner.puts.get(i) else {
                    continue;
                };
                let g = put.lock().unwrap_or_else(|e| e.into_inner());
                let mut st = inner.lock();
                let finished = on_worker_exit(&inner, &mut st, i);
                drop(st);
                drop(g);
                run_sinks(finished);
                inner.cv.notify_all();
            }
            Ok(ResultMsg::Quit) | Err(GetError::Disconnected) | Err(GetError::Broken) => return,
            Err(GetError::Decode(e)) => {
                tracing::error!(error = %e, "pool: undecodable result skipped")
            }
            Err(GetError::Empty) => {}
        }
    }
}

/// Fails the pending chunks `ids` with `why`.
fn fail_pending(st: &mut State, ids: impl IntoIterator<Item = u64>, why: &TaskError) -> Finished {
    ids.into_iter()
        .filter_map(|c| {
            st.pending
                .remove(&c)
                .map(|p| (p.worker, c, p.sink, Err(why.clone())))
        })
        .collect()
}

fn on_worker_exit(inner: &Inner, st: &mut State, i: usize) -> Finished {
    let Some(w) = st.workers.get_mut(i) else {
        return Vec::new();
    };
    let Some(mut p) = w.proc.take() else {
        return Vec::new();
    };
    w.sock = None; // its socket, and what the dead worker did not read there, go
    let status = p.join().unwrap_or(ExitStatus::Code(-1));
    if let Some(word) = w.cell.atomic_u64(CELL_CHUNK) {
        word.store(0, Ordering::Release);
    }
    let was_ready = w
        .cell
        .atomic_u64(CELL_READY)
        .is_some_and(|r| r.swap(0, Ordering::AcqRel) == 1);
    w.start_failures = if was_ready { 0 } else { w.start_failures + 1 };
    if w.start_failures >= MAX_START_FAILURES {
        let why = match p.result() {
            Err(crate::JoinError::Panicked { message }) => message,
            _ => status.to_string(),
        };
        w.broken = true;
        let ids: Vec<u64> = w.outstanding.drain(..).collect();
        tracing::error!(worker = i, %why, "pool worker keeps failing to start; giving it up");
        let e = TaskError::Failed(format!(
            "the worker failed to start {MAX_START_FAILURES} times in a row: {why}"
        ));
        return fail_pending(st, ids, &e); // `dead` stays set: nothing is sent to it again
    }
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
    w.outstanding.retain(|c| queued_ids.contains(c));
    let mut finished = fail_pending(st, lost.iter().copied(), &TaskError::WorkerDied(status));
    if st.phase == Phase::Terminated {
        return finished;
    }
    tracing::debug!(worker = i, %status, lost = lost.len(), "pool worker exited; replacing it");
    // a replacement on the same ring, with the queued chunks back in order
    if let Err(e) = inner.start_worker(st, i) {
        // given up like a worker that keeps failing to start (`dead` stays set), so
        // nothing waits for it: when every slot is given up, submissions are refused
        tracing::error!(worker = i, error = %e, "pool: no replacement worker could start");
        let w = &mut st.workers[i];
        w.broken = true;
        let ids: Vec<u64> = w.outstanding.drain(..).collect();
        let e = TaskError::Failed("no replacement worker could start".into());
        finished.extend(fail_pending(st, ids, &e));
        return finished;
    }
    inner.dead[i].store(false, Ordering::Release);
    let sock = st.workers[i].sock.clone();
    for m in queued {
        let frame = match &m {
            TaskMsg::Run(..) => None,
            TaskMsg::RunSocket(c, _) => st.pending.get(c).and_then(|p| p.frame.clone()),
            TaskMsg::Register(..) => continue,
        };
        // they were in this ring a moment ago, so they fit again
        if ring.try_put(m).is_err() {
            tracing::error!("pool: a queued chunk could not be put back");
            continue;
        }
        // (the new worker reads the frame when it reaches the marker)
        if let (Some(f), Some(sock)) = (frame, &sock) {
            if let Err(e) = f.write_to(sock.as_fd()) {
                tracing::debug!(worker = i, error = %e, "pool: task socket");
            }
        }
    }
    finished
}

/// How long one blocking put into a worker's ring waits before looking whether the
/// worker died.
const PUT_SLICE: Duration = Duration::from_millis(100);

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

    /// Starts a feeder thread that submits `input` in chunks, and returns the iterator
    /// of its results.
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
            st: Mutex::new(FeedState {
                // one chunk per worker until the first results say how long one takes
                window: 1,
                ..FeedState::default()
            }),
            cv: Condvar::new(),
            mine: (0..self.processes).map(|_| AtomicUsize::new(0)).collect(),
            cap: (IMAP_WINDOW_PER_WORKER * self.processes) as u64,
        });
        let (tx, rx) = crossbeam_channel::unbounded();
        // counted before the call returns, so that a join right after waits for it
        self.inner.feeders.fetch_add(1, Ordering::SeqCst);
        let (inner, feed2) = (self.inner.clone(), feed.clone());
        let spawned = runtime::thread_builder("procactor-pool-feeder").spawn(move || {
            feed_loop(&inner, &feed2, fid, input, chunksize.max(1), &tx);
            drop(tx);
            inner.feeders.fetch_sub(1, Ordering::SeqCst);
            let _g = inner.lock();
            inner.cv.notify_all();
        });
        // (`feed_loop` catches a panic of the input iterator: the count always goes down)
        if let Err(e) = spawned {
            self.inner.feeders.fetch_sub(1, Ordering::SeqCst);
            return Err(e.into());
        }
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

    /// Submits every chunk of `items` at once (no window: `map_async` must not block);
    /// `gather` (if any) sees each chunk's outcome on the result thread.
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
            let (c, _) = self.inner.submit(fid, payload, 0, &[], sink, false)?;
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
    /// once every item is done, exactly one of them runs, on the pool's result thread,
    /// before the [`AsyncResult`] is ready: `callback(results)` (in input order), or
    /// `error_callback(e)` with the first failed item's error in input order (Python
    /// calls it at the first failure to arrive; here it comes when all items are done).
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
        let on_all: OnAll = Box::new(move |outs: &[Outcome]| match decode_all::<R>(outs) {
            Ok(v) => guarded("callback", || callback(v)),
            Err(e) => guarded("error callback", || error_callback(e)),
        });
        let gather = Arc::new(Gather {
            st: Mutex::new((vec![None; n], n, Some(on_all))),
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
        let (c, _) = self.inner.submit(fid, payload, 0, &[], sink, false)?;
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
    /// The tasks are submitted at once, as in Python: a feeder thread reads `items` and
    /// submits them whether or not the results are read (dropping the iterator does not
    /// stop them; `close()` and `join()` then wait for them), keeping at most
    /// [`Imap::window`] chunks submitted and unread, so that an endless input works with
    /// flat memory. `items` is read on that thread, hence `Send + 'static`.
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
        while !st.pending.is_empty() || self.inner.feeders.load(Ordering::SeqCst) > 0 {
            st = self
                .inner
                .cv
                .wait_timeout(st, Duration::from_millis(100))
                .unwrap_or_else(|e| e.into_inner())
                .0;
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
        self.inner.terminated.store(true, Ordering::SeqCst);
        let mut st = self.inner.lock();
        st.phase = Phase::Terminated;
        let procs: Vec<Process<()>> = st
            .workers
            .iter_mut()
            .filter_map(|w| w.proc.take())
            .collect();
        for w in &mut st.workers {
            w.outstanding.clear();
        }
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
        run_sinks(finished);
        for mut p in procs {
            let _ = p.kill();
            let _ = p.join();
        }
        self.inner.cv.notify_all();
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.terminate();
        let _ = self.inner.results.put(ResultMsg::Quit);
        if let Some(t) = self.collector.take() {
            let _ = t.join();
        }
        self.watcher.take();
    }
}

/// Every chunk's outcome of a `map_async_with`, and what runs once all are there.
struct Gather {
    /// Each chunk's outcome, how many are missing, what runs once none is.
    st: Mutex<(Vec<Option<Outcome>>, usize, Option<OnAll>)>,
}

impl Gather {
    fn put(&self, k: usize, out: &Outcome) {
        {
            let mut g = self.st.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(slot) = g.0.get_mut(k) {
                if slot.is_none() {
                    *slot = Some(out.clone());
                    g.1 -= 1;
                }
            }
            if g.1 != 0 {
                return;
            }
        }
        self.fire();
    }

    fn fire(&self) {
        let (outs, f) = {
            let mut g = self.st.lock().unwrap_or_else(|e| e.into_inner());
            let outs: Vec<Outcome> = g.0.iter_mut().filter_map(Option::take).collect();
            (outs, g.2.take())
        };
        if let Some(f) = f {
            f(&outs);
        }
    }
}

/// What a feeder and its iterator share: how many chunks are submitted, done and read.
struct Feed {
    st: Mutex<FeedState>,
    cv: Condvar,
    /// This operation's chunks queued in each worker.
    mine: Vec<AtomicUsize>,
    /// The most chunks submitted and not read.
    cap: u64,
}

#[derive(Default)]
struct FeedState {
    submitted: u64,
    done: u64,
    delivered: u64,
    /// The iterator was dropped: results are thrown away.
    gone: bool,
    /// Chunks per worker (see `window_for`).
    window: usize,
    /// The feeder waits for room (to be woken).
    waiting: bool,
    started: Option<Instant>,
}

impl Feed {
    fn lock(&self) -> MutexGuard<'_, FeedState> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What a feeder (and the sinks of its chunks) send its iterator.
enum FeedMsg {
    /// Chunk `seq` of `n` items; whether it was submitted (counted in the window).
    Chunk(u64, usize, Outcome, bool),
    /// The input ended (or the pool was terminated) after this many chunks.
    End(u64),
}

fn feed_loop<A: Message, I: Iterator<Item = A>>(
    inner: &Arc<Inner>,
    feed: &Arc<Feed>,
    fid: u32,
    mut input: I,
    chunksize: usize,
    tx: &crossbeam_channel::Sender<FeedMsg>,
) {
    let mut seq = 0u64;
    loop {
        // room in the window?
        let window = {
            let mut s = feed.lock();
            loop {
                if inner.terminated.load(Ordering::SeqCst) {
                    let _ = tx.send(FeedMsg::End(seq));
                    return;
                }
                let unread = if s.gone {
                    s.submitted - s.done
                } else {
                    s.submitted - s.delivered
                };
                if unread < feed.cap || inner.joining.load(Ordering::SeqCst) {
                    break;
                }
                s.waiting = true;
                s = feed
                    .cv
                    .wait_timeout(s, Duration::from_millis(50))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
                s.waiting = false;
            }
            s.window
        };
        // the input is the user's code: a panic in it ends the input with an error item
        // (not the feeder, whose end `join` and the iterator wait for)
        let part = std::panic::catch_unwind(AssertUnwindSafe(|| {
            input.by_ref().take(chunksize).collect::<Vec<A>>()
        }));
        let part = match part {
            Ok(part) => part,
            Err(p) => {
                let why = TaskError::Failed(format!(
                    "the input iterator panicked: {}",
                    runtime::take_panic_message(&*p)
                ));
                let _ = tx.send(FeedMsg::Chunk(seq, 1, Err(why), false));
                seq += 1;
                break;
            }
        };
        if part.is_empty() {
            break;
        }
        let n = part.len();
        let (payload, unsent) = match encode_chunk(&part) {
            Ok(p) => p,
            Err(e) => {
                // its items fail; the rest goes on
                let _ = tx.send(FeedMsg::Chunk(seq, n, Err(encode_failed(e)), false));
                seq += 1;
                continue;
            }
        };
        drop(part);
        {
            let mut s = feed.lock();
            s.submitted += 1;
            s.started.get_or_insert_with(Instant::now);
        }
        let (feed_s, tx_s, processes) = (feed.clone(), tx.clone(), inner.processes);
        let sink: Sink = Box::new(move |w, _, out| {
            if let Some(m) = feed_s.mine.get(w) {
                let _ = m.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                    Some(v.saturating_sub(1))
                });
            }
            let wake = {
                let mut s = feed_s.lock();
                s.done += 1;
                // with every worker busy, one worker takes `processes / rate` per chunk
                if let Some(t0) = s.started {
                    let per_worker = t0.elapsed().as_secs_f64() * processes as f64 / s.done as f64;
                    s.window = window_for(Duration::from_secs_f64(per_worker));
                }
                s.waiting
            };
            // (a wake-up is a system call: only when the feeder waits for room)
            if wake {
                feed_s.cv.notify_all();
            }
            let _ = tx_s.send(FeedMsg::Chunk(seq, n, out, true));
        });
        match inner.submit(fid, payload, window, &feed.mine, sink, true) {
            Ok(_) => unsent.sent(),
            Err(e) => {
                // terminated (or every worker given up): this chunk fails, and the
                // input is not read further
                feed.lock().submitted -= 1;
                let _ = tx.send(FeedMsg::Chunk(
                    seq,
                    n,
                    Err(TaskError::Failed(e.to_string())),
                    false,
                ));
                seq += 1;
                break;
            }
        }
        seq += 1;
    }
    let _ = tx.send(FeedMsg::End(seq));
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
        self.next_until(Instant::now().checked_add(timeout))
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
        let wake = {
            let mut s = self.feed.lock();
            s.delivered += n;
            s.waiting
        };
        if wake {
            self.feed.cv.notify_all();
        }
    }
}

impl<A, R, I> Drop for Imap<'_, A, R, I> {
    fn drop(&mut self) {
        self.feed.lock().gone = true;
        self.feed.cv.notify_all();
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
pub struct AsyncResult<T, E = String> {
    rx: crossbeam_channel::Receiver<(u64, Outcome)>,
    what: Collect,
    got: Mutex<HashMap<u64, Outcome>>,
    decode: fn(&[Outcome]) -> Result<T, TaskError<E>>,
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
            got: Mutex::new(HashMap::new()),
            decode,
        }
    }

    fn ids(&self) -> Vec<u64> {
        match &self.what {
            Collect::One(c) => vec![*c],
            Collect::Chunks(v) => v.clone(),
        }
    }

    /// Takes what has arrived; `true` once everything has.
    fn gather(&self, deadline: Option<Instant>) -> bool {
        let ids = self.ids();
        let mut got = self.got.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if ids.iter().all(|c| got.contains_key(c)) {
                return true;
            }
            let r = match deadline {
                None => self.rx.recv().map_err(|_| ()),
                Some(d) => self.rx.recv_deadline(d).map_err(|_| ()),
            };
            match r {
                Ok((c, out)) => {
                    got.insert(c, out);
                }
                Err(()) => return ids.iter().all(|c| got.contains_key(c)),
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
        self.gather(Instant::now().checked_add(timeout))
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
                got.get(c)
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
