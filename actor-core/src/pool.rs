//! [`Pool`]: Python's `multiprocessing.Pool`, which never hangs when a worker dies.
//!
//! # How it works
//!
//! Each worker process has its own task ring (a [`Queue`]) and a small shared cell
//! naming the chunk it is running; all workers put their results on one result ring,
//! which a collector thread reads and routes to whoever waits (a `map`, an `imap`
//! iterator, an [`AsyncResult`]). The pool therefore knows, at every moment, which chunks
//! sit in which worker's ring.
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
//! the rest of its chunk and the worker go on.
//!
//! # Chunks
//!
//! `map` and friends send items in chunks (one message and one result per chunk). The
//! default chunk size is Python's: `len / (4 × processes)`, rounded up; `imap` and
//! `imap_unordered` default to 1, as in Python, and take their input lazily, so an
//! endless iterator works with bounded memory (Python reads the whole input first).
//! A worker that dies takes its whole chunk with it: each item of that chunk gets
//! `WorkerDied`. `maxtasksperchild` counts chunks, as Python counts its tasks.

use crate::codec::{self, Encoded};
use crate::error::{Error, SpawnError};
use crate::monitor::ExitWatcher;
use crate::process::{start_encoded_via, Process};
use crate::queue::Queue;
use crate::runtime::{self, StartMethod};
use crate::shared::RawArray;
use crate::{Bytes, ExitStatus, GetError, Message};
use procactor_transports::target::{self, SameImage, Target, TargetRef};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Why one task has no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    /// The task panicked; the message (and location) of its panic.
    #[error("the task panicked: {message}")]
    Panicked {
        /// The panic message.
        message: String,
    },
    /// The worker process running the task died (its exit status); the pool replaced it.
    #[error("the worker running the task died ({0})")]
    WorkerDied(ExitStatus),
    /// [`AsyncResult::get_timeout`] ran out of time (the task may still finish).
    #[error("timed out waiting for the result")]
    Timeout,
    /// The task could not run or its result could not be read: an argument that cannot
    /// be encoded, a result that cannot be decoded, the pool terminated before it ran.
    #[error("the task could not complete: {0}")]
    Failed(String),
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

/// A bound function in a worker: decodes a chunk, runs it, encodes its results.
type Runner = Box<dyn Fn(&[u8]) -> Result<Vec<u8>, String>>;
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
    Some(Box::new(move |bytes: &[u8]| {
        let args: Vec<A> =
            codec::decode(bytes, Vec::new()).map_err(|e| format!("decoding the arguments: {e}"))?;
        let mut ok = Vec::with_capacity(args.len());
        let mut mixed: Option<Vec<Result<R, String>>> = None;
        for a in args {
            let r = std::panic::catch_unwind(AssertUnwindSafe(|| f.call(a)))
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

/// What a worker process receives.
#[derive(Serialize, Deserialize)]
struct WorkerBoot {
    tasks: Queue<TaskMsg>,
    results: Queue<ResultMsg>,
    cell: RawArray<u64>,
    fns: Vec<(u32, FnRef, FnRef)>,
    init: Option<(FnRef, FnRef, Encoded)>,
    maxtasks: u64,
}

#[derive(Serialize)]
struct WorkerBootRef<'a> {
    tasks: &'a Queue<TaskMsg>,
    results: &'a Queue<ResultMsg>,
    cell: &'a RawArray<u64>,
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
    let mut done = 0u64;
    loop {
        match tasks.get() {
            Ok(TaskMsg::Register(id, b, t)) => register(&mut runners, id, &b, &t),
            Ok(TaskMsg::Run(chunk, f, args)) => {
                if let Some(w) = chunk_word {
                    w.store(chunk, Ordering::Release);
                }
                let out = match runners.get(&f) {
                    Some(run) => run(&args).map(Bytes::from),
                    None => Err(format!("unknown function {f} in the worker")),
                };
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
            Err(GetError::Disconnected) => return, // the pool is gone or closed
            Err(GetError::Decode(e)) => {
                tracing::error!(error = %e, "pool worker: undecodable task skipped")
            }
            Err(GetError::Empty) => {}
            Err(GetError::Broken) => panic!("pool worker: the task ring is broken"),
        }
    }
}

// ------------------------------------------------------------------ the pool's side

type Outcome = Result<Bytes, TaskError>;

struct Pending {
    worker: usize,
    tx: crossbeam_channel::Sender<(u64, Outcome)>,
}

struct Worker {
    cell: RawArray<u64>,
    proc: Option<Process<()>>,
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

struct Inner {
    st: Mutex<State>,
    /// Signalled whenever a chunk finishes or a worker is replaced.
    cv: Condvar,
    /// The pool's handle on the result ring: it puts exit notices and `Quit`.
    results: Queue<ResultMsg>,
    init: Option<(FnRef, FnRef, InitArgs)>,
    maxtasks: u64,
    /// How workers start (`None`: the process-wide default).
    method: Option<StartMethod>,
    /// With `StartMethod::Fork`: the copy of the owner, made at `build`, that forks the
    /// workers.
    zygote: Option<Arc<crate::forkserver::Zygote>>,
    /// Each worker's task ring (usable without the state lock; put into under `puts`).
    rings: Vec<Queue<TaskMsg>>,
    /// Taken by whoever puts into worker `i`'s ring, and by the collector while it
    /// replaces that worker; always before the state lock.
    puts: Vec<Mutex<()>>,
    /// Set by the exit watcher when worker `i` exits, cleared when it is replaced.
    dead: Vec<std::sync::atomic::AtomicBool>,
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
        let w = &mut st.workers[i];
        let boot = WorkerBootRef {
            tasks: &self.rings[i],
            results: &self.results,
            cell: &w.cell,
            fns: &st.fns,
            init,
            maxtasks: self.maxtasks,
        };
        let p = start_encoded_via(
            worker_main,
            &boot,
            Some(format!("PoolWorker-{}", i + 1)),
            true,
            self.method,
            None,
            self.zygote.as_deref(),
        )?;
        w.proc = Some(p);
        Ok(())
    }
}

/// A pool of worker processes (Python's `multiprocessing.Pool`).
///
/// Targets are functions of 0 to 8 arguments (function items, closures capturing
/// nothing, function pointers: [`Target`]) with serde arguments and results, as for
/// [`Process::new`]: each item is the arguments of one call, `()` for none, the value
/// itself for one, a tuple for more (so [`map`](Pool::map) and
/// [`starmap`](Pool::starmap) are the same method here).
///
/// Every method that waits either returns the results or says why not: a panicking task
/// fails alone ([`TaskError::Panicked`]), a worker that dies fails exactly the tasks it
/// held ([`TaskError::WorkerDied`]) and is replaced, and the rest of the work completes.
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
    /// first task. `args` may hold handles (a `Queue`, a `Value`, an `ActorRef`…): this is
    /// how tasks reach shared state, since a task's own arguments travel through shared
    /// memory, where descriptors cannot (keep them in a `static` set by the initializer).
    /// An initializer that panics makes the worker exit; the pool starts another.
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
        let method = Some(method);
        let results: Queue<ResultMsg> = Queue::with_capacity_bytes(4 << 20)?;
        let mut workers = Vec::with_capacity(n);
        let mut rings = Vec::with_capacity(n);
        for _ in 0..n {
            rings.push(Queue::with_capacity_bytes(1 << 20)?);
            workers.push(Worker {
                cell: RawArray::zeroed(CELL_WORDS)?,
                proc: None,
                outstanding: VecDeque::new(),
                start_failures: 0,
                broken: false,
            });
        }
        let inner = Arc::new(Inner {
            rings,
            puts: (0..n).map(|_| Mutex::new(())).collect(),
            dead: (0..n)
                .map(|_| std::sync::atomic::AtomicBool::new(false))
                .collect(),
            st: Mutex::new(State {
                workers,
                pending: HashMap::new(),
                fns: Vec::new(),
                fn_ids: HashMap::new(),
                next_chunk: 1,
                phase: Phase::Running,
            }),
            cv: Condvar::new(),
            results,
            init,
            maxtasks: self.maxtasks,
            method,
            zygote,
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
                if let Some(p) = st.pending.remove(&chunk) {
                    if let Some(w) = st.workers.get_mut(p.worker) {
                        if let Some(pos) = w.outstanding.iter().position(|&c| c == chunk) {
                            w.outstanding.remove(pos);
                        }
                    }
                    let _ = p.tx.send((chunk, out.map_err(TaskError::Failed)));
                }
                drop(st);
                inner.cv.notify_all();
            }
            Ok(ResultMsg::Exited(i)) => {
                let i = i as usize;
                let Some(put) = inner.puts.get(i) else {
                    continue;
                };
                let _g = put.lock().unwrap_or_else(|e| e.into_inner());
                let mut st = inner.lock();
                on_worker_exit(&inner, &mut st, i);
                drop(st);
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

fn on_worker_exit(inner: &Inner, st: &mut State, i: usize) {
    let Some(w) = st.workers.get_mut(i) else {
        return;
    };
    let Some(mut p) = w.proc.take() else { return };
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
        for c in ids {
            if let Some(pd) = st.pending.remove(&c) {
                let _ = pd.tx.send((
                    c,
                    Err(TaskError::Failed(format!(
                        "the worker failed to start {MAX_START_FAILURES} times in a row: {why}"
                    ))),
                ));
            }
        }
        return; // `dead` stays set: nothing is sent to it again
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
            TaskMsg::Run(c, _, _) => Some(*c),
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
    for c in &lost {
        if let Some(pd) = st.pending.remove(c) {
            let _ = pd.tx.send((*c, Err(TaskError::WorkerDied(status))));
        }
    }
    if st.phase == Phase::Terminated {
        return;
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
        for c in ids {
            if let Some(pd) = st.pending.remove(&c) {
                let _ = pd.tx.send((
                    c,
                    Err(TaskError::Failed(
                        "no replacement worker could start".into(),
                    )),
                ));
            }
        }
        return;
    }
    inner.dead[i].store(false, Ordering::Release);
    for m in queued {
        if let TaskMsg::Run(..) = m {
            // they were in this ring a moment ago, so they fit again
            if ring.try_put(m).is_err() {
                tracing::error!("pool: a queued chunk could not be put back");
            }
        }
    }
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

/// The window for chunks that take `service` each in a worker.
fn window_for(service: Duration) -> usize {
    let s = service.as_nanos().max(1);
    (QUEUED_WORK.as_nanos().div_ceil(s) as usize).clamp(1, MAX_WINDOW)
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
            let mut st = self.inner.lock();
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
            let _g = self.inner.puts[i].lock().unwrap_or_else(|e| e.into_inner());
            let mut msg = TaskMsg::Register(id, key.0.clone(), key.1.clone());
            loop {
                match self.inner.rings[i].put_timeout(msg, PUT_SLICE) {
                    Ok(()) => break,
                    Err(e) if self.inner.dead[i].load(Ordering::Acquire) || !e.is_full() => {
                        break; // a replacement gets every registration in its boot
                    }
                    Err(e) => msg = e.into_inner(),
                }
            }
        }
        self.inner.lock().fn_ids.insert(key, id);
        Ok(id)
    }

    /// Sends one chunk: to the least loaded worker (everything queued in it) among those
    /// where this operation has fewer than `window` chunks.
    fn submit(
        &self,
        fid: u32,
        payload: Bytes,
        window: usize,
        mine: &mut [usize],
        tx: &crossbeam_channel::Sender<(u64, Outcome)>,
    ) -> Result<(u64, usize), Error> {
        let inner = &*self.inner;
        let mut payload = Some(payload);
        loop {
            let pick = {
                let st = inner.lock();
                if st.phase != Phase::Running {
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
                        mine.get(*i).is_some_and(|&m| m < window)
                            && !inner.dead[*i].load(Ordering::Acquire)
                    })
                    .min_by_key(|(_, w)| w.outstanding.len())
                    .map(|(i, _)| i);
                match pick {
                    Some(i) => i,
                    None => {
                        // no room: wait for a chunk to finish or a worker to come back
                        let _ = inner.cv.wait_timeout(st, Duration::from_millis(50));
                        continue;
                    }
                }
            };
            let i = pick;
            // the put lock orders this worker's ring as `outstanding` records it
            let _g = inner.puts[i].lock().unwrap_or_else(|e| e.into_inner());
            let chunk = {
                let mut st = inner.lock();
                if st.phase != Phase::Running {
                    return Err(closed());
                }
                let chunk = st.next_chunk;
                st.next_chunk += 1;
                st.workers[i].outstanding.push_back(chunk);
                st.pending.insert(
                    chunk,
                    Pending {
                        worker: i,
                        tx: tx.clone(),
                    },
                );
                chunk
            };
            let mut msg = TaskMsg::Run(chunk, fid, payload.take().unwrap_or_default());
            loop {
                match inner.rings[i].put_timeout(msg, PUT_SLICE) {
                    Ok(()) => {
                        mine[i] += 1;
                        return Ok((chunk, i));
                    }
                    Err(e) if e.is_full() && !inner.dead[i].load(Ordering::Acquire) => {
                        msg = e.into_inner();
                    }
                    Err(e) => {
                        // its worker died (or the ring refuses): take the reservation
                        // back and choose again
                        let mut st = inner.lock();
                        st.pending.remove(&chunk);
                        st.workers[i].outstanding.retain(|&c| c != chunk);
                        if !e.is_full() && !e.is_closed() {
                            return Err(Error::InvalidArgument(format!(
                                "a worker's task ring refused a chunk: {e}"
                            )));
                        }
                        if let TaskMsg::Run(_, _, p) = e.into_inner() {
                            payload = Some(p);
                        }
                        break;
                    }
                }
            }
            drop(_g);
            let st = inner.lock();
            let _ = inner.cv.wait_timeout(st, Duration::from_millis(20));
        }
    }

    fn encode_chunk<A: Serialize>(items: &[A]) -> Result<Bytes, TaskError> {
        let mut buf = Vec::new();
        codec::encode(items, &mut buf, None)
            .map(|()| Bytes::from(buf))
            .map_err(|e| TaskError::Failed(format!("could not encode the arguments: {e}")))
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
        let mut out = Vec::new();
        let results = self
            .run(f, items.into_iter(), chunksize.max(1), true)
            .map_err(|e| TaskError::Failed(e.to_string()))?;
        for r in results {
            out.push(r?);
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

    /// As [`map`](Pool::map), without waiting: the result is an [`AsyncResult`] of the
    /// whole list (its `get` gives the first error, as `map`).
    ///
    /// # Errors
    ///
    /// The pool is closed, or an item cannot be encoded.
    pub fn map_async<A: Message, R: Message, S: 'static, F: Target<A, S, Output = R>>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
    ) -> Result<AsyncResult<Vec<R>>, Error> {
        let items: Vec<A> = items.into_iter().collect();
        let cs = default_chunksize(items.len(), self.processes);
        let (tx, rx) = crossbeam_channel::unbounded();
        let fid = self.fn_id(f)?;
        let mut mine = vec![0; self.processes];
        let mut chunks = Vec::new();
        for part in items.chunks(cs) {
            let payload =
                Self::encode_chunk(part).map_err(|e| Error::InvalidArgument(e.to_string()))?;
            // no window: everything is queued now (map_async must not block)
            let (c, _) = self.submit(fid, payload, usize::MAX / 4, &mut mine, &tx)?;
            chunks.push(c);
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
    /// As [`AsyncResult::get`].
    pub fn apply<A: Message, R: Message, S: 'static, F: Target<A, S, Output = R>>(
        &self,
        f: F,
        arg: A,
    ) -> Result<R, TaskError> {
        self.apply_async(f, arg)
            .map_err(|e| TaskError::Failed(e.to_string()))?
            .get()
    }

    /// Runs `f(arg)` in a worker; the result comes through the returned handle.
    ///
    /// # Errors
    ///
    /// The pool is closed, or `arg` cannot be encoded.
    pub fn apply_async<A: Message, R: Message, S: 'static, F: Target<A, S, Output = R>>(
        &self,
        f: F,
        arg: A,
    ) -> Result<AsyncResult<R>, Error> {
        let payload = Self::encode_chunk(std::slice::from_ref(&arg))
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let (tx, rx) = crossbeam_channel::bounded(1);
        let fid = self.fn_id(f)?;
        let mut mine = vec![0; self.processes];
        let (c, _) = self.submit(fid, payload, usize::MAX / 4, &mut mine, &tx)?;
        Ok(AsyncResult::new(rx, Collect::One(c), decode_one::<R>))
    }

    /// The results in input order, as they come (Python's `imap`, chunk size 1). The
    /// input is read lazily: at most a bounded number of chunks are in flight.
    ///
    /// # Errors
    ///
    /// The pool is closed.
    pub fn imap<
        A: Message,
        R: Message,
        S: 'static,
        F: Target<A, S, Output = R>,
        I: IntoIterator<Item = A>,
    >(
        &self,
        f: F,
        items: I,
    ) -> Result<Imap<'_, A, R, I::IntoIter>, Error> {
        self.imap_chunksize(f, items, 1)
    }

    /// As [`imap`](Pool::imap) with chunks of `chunksize` items.
    ///
    /// # Errors
    ///
    /// The pool is closed.
    pub fn imap_chunksize<
        A: Message,
        R: Message,
        S: 'static,
        F: Target<A, S, Output = R>,
        I: IntoIterator<Item = A>,
    >(
        &self,
        f: F,
        items: I,
        chunksize: usize,
    ) -> Result<Imap<'_, A, R, I::IntoIter>, Error> {
        self.lazy(f, items.into_iter(), chunksize, true)
    }

    /// As [`imap`](Pool::imap), in completion order (Python's `imap_unordered`).
    ///
    /// # Errors
    ///
    /// The pool is closed.
    pub fn imap_unordered<
        A: Message,
        R: Message,
        S: 'static,
        F: Target<A, S, Output = R>,
        I: IntoIterator<Item = A>,
    >(
        &self,
        f: F,
        items: I,
    ) -> Result<Imap<'_, A, R, I::IntoIter>, Error> {
        self.imap_unordered_chunksize(f, items, 1)
    }

    /// As [`imap_unordered`](Pool::imap_unordered) with chunks of `chunksize` items.
    ///
    /// # Errors
    ///
    /// The pool is closed.
    pub fn imap_unordered_chunksize<
        A: Message,
        R: Message,
        S: 'static,
        F: Target<A, S, Output = R>,
        I: IntoIterator<Item = A>,
    >(
        &self,
        f: F,
        items: I,
        chunksize: usize,
    ) -> Result<Imap<'_, A, R, I::IntoIter>, Error> {
        self.lazy(f, items.into_iter(), chunksize, false)
    }

    fn lazy<
        A: Message,
        R: Message,
        S: 'static,
        F: Target<A, S, Output = R>,
        I: Iterator<Item = A>,
    >(
        &self,
        f: F,
        items: I,
        chunksize: usize,
        ordered: bool,
    ) -> Result<Imap<'_, A, R, I>, Error> {
        self.run(f, items, chunksize.max(1), ordered)
    }

    fn run<
        A: Message,
        R: Message,
        S: 'static,
        F: Target<A, S, Output = R>,
        I: Iterator<Item = A>,
    >(
        &self,
        f: F,
        input: I,
        chunksize: usize,
        ordered: bool,
    ) -> Result<Imap<'_, A, R, I>, Error> {
        let fid = self.fn_id(f)?;
        let (tx, rx) = crossbeam_channel::unbounded();
        Ok(Imap {
            pool: self,
            fid,
            input: Some(input),
            chunksize,
            ordered,
            // one chunk per worker until the first results say how long a chunk takes
            window: 1,
            started: None,
            completed: 0,
            mine: vec![0; self.processes],
            tx,
            rx,
            seq_of: HashMap::new(),
            next_seq: 0,
            emit_seq: 0,
            reorder: BTreeMap::new(),
            ready: VecDeque::new(),
            in_flight: 0,
            _t: PhantomData,
        })
    }

    /// No more tasks: later submissions are errors; work already given completes.
    pub fn close(&self) {
        let mut st = self.inner.lock();
        if st.phase == Phase::Running {
            st.phase = Phase::Closed;
        }
    }

    /// Waits for the work given so far to complete, then for the workers to exit. Call
    /// [`close`](Pool::close) first (as in Python).
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
        while !st.pending.is_empty() {
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
    /// `TaskError::Failed`. Calling it again is harmless.
    pub fn terminate(&self) {
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
        for (c, p) in st.pending.drain() {
            let _ =
                p.tx.send((c, Err(TaskError::Failed("the pool was terminated".into()))));
        }
        drop(st);
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

/// Results of [`Pool::imap`] and [`Pool::imap_unordered`]: one `Result` per input item.
/// Dropping it early abandons the rest (chunks already sent still run).
pub struct Imap<'p, A, R, I> {
    pool: &'p Pool,
    fid: u32,
    input: Option<I>,
    chunksize: usize,
    ordered: bool,
    window: usize,
    /// When the first chunk was sent, and how many have come back since: the rate
    /// that sets `window`.
    started: Option<Instant>,
    completed: u64,
    mine: Vec<usize>,
    tx: crossbeam_channel::Sender<(u64, Outcome)>,
    rx: crossbeam_channel::Receiver<(u64, Outcome)>,
    /// chunk id → (sequence number, item count, worker)
    seq_of: HashMap<u64, (u64, usize, usize)>,
    next_seq: u64,
    emit_seq: u64,
    reorder: BTreeMap<u64, Vec<Result<R, TaskError>>>,
    ready: VecDeque<Result<R, TaskError>>,
    in_flight: usize,
    _t: PhantomData<fn(A) -> R>,
}

impl<A, R, I> fmt::Debug for Imap<'_, A, R, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Imap")
            .field("chunksize", &self.chunksize)
            .field("ordered", &self.ordered)
            .field("in_flight", &self.in_flight)
            .finish()
    }
}

fn decode_chunk<R: Message>(out: Outcome, n: usize) -> Vec<Result<R, TaskError>> {
    match out {
        Err(e) => (0..n).map(|_| Err(e.clone())).collect(),
        Ok(bytes) => match codec::decode::<ChunkOut<R>>(&bytes, Vec::new()) {
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

impl<A: Message, R: Message, I: Iterator<Item = A>> Imap<'_, A, R, I> {
    /// Sends chunks while the window has room and input remains.
    fn fill(&mut self) {
        let cap = self.window * self.pool.processes;
        while self.in_flight < cap {
            let Some(input) = self.input.as_mut() else {
                return;
            };
            let part: Vec<A> = input.by_ref().take(self.chunksize).collect();
            if part.is_empty() {
                self.input = None;
                return;
            }
            let n = part.len();
            let seq = self.next_seq;
            self.next_seq += 1;
            let sent = Pool::encode_chunk(&part).and_then(|payload| {
                self.pool
                    .submit(self.fid, payload, self.window, &mut self.mine, &self.tx)
                    .map_err(|e| TaskError::Failed(e.to_string()))
            });
            match sent {
                Ok((chunk, w)) => {
                    self.started.get_or_insert_with(Instant::now);
                    self.seq_of.insert(chunk, (seq, n, w));
                    self.in_flight += 1;
                }
                Err(e) => {
                    let items = (0..n).map(|_| Err(e.clone())).collect();
                    self.deliver(seq, items);
                }
            }
        }
    }

    fn deliver(&mut self, seq: u64, items: Vec<Result<R, TaskError>>) {
        if !self.ordered {
            self.ready.extend(items);
            return;
        }
        self.reorder.insert(seq, items);
        while let Some(items) = self.reorder.remove(&self.emit_seq) {
            self.ready.extend(items);
            self.emit_seq += 1;
        }
    }
}

impl<A: Message, R: Message, I: Iterator<Item = A>> Iterator for Imap<'_, A, R, I> {
    type Item = Result<R, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(r) = self.ready.pop_front() {
                return Some(r);
            }
            self.fill();
            if let Some(r) = self.ready.pop_front() {
                return Some(r);
            }
            if self.in_flight == 0 {
                return None;
            }
            let (chunk, out) = self.rx.recv().ok()?;
            let Some((seq, n, w)) = self.seq_of.remove(&chunk) else {
                continue;
            };
            self.in_flight -= 1;
            // that worker has room again in this operation's window
            if let Some(m) = self.mine.get_mut(w) {
                *m = m.saturating_sub(1);
            }
            // with every worker busy, one worker takes `processes / rate` per chunk
            self.completed += 1;
            if let Some(t0) = self.started {
                let per_worker =
                    t0.elapsed().as_secs_f64() * self.pool.processes as f64 / self.completed as f64;
                self.window = window_for(Duration::from_secs_f64(per_worker));
            }
            let items = decode_chunk::<R>(out, n);
            self.deliver(seq, items);
        }
    }
}

enum Collect {
    One(u64),
    Chunks(Vec<u64>),
}

/// The result of [`Pool::apply_async`] / [`Pool::map_async`], to fetch later
/// (Python's `AsyncResult`).
pub struct AsyncResult<T> {
    rx: crossbeam_channel::Receiver<(u64, Outcome)>,
    what: Collect,
    got: Mutex<HashMap<u64, Outcome>>,
    decode: fn(Vec<Outcome>) -> Result<T, TaskError>,
}

impl<T> fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncResult").finish_non_exhaustive()
    }
}

fn decode_one<R: Message>(chunks: Vec<Outcome>) -> Result<R, TaskError> {
    let out = chunks
        .into_iter()
        .next()
        .unwrap_or_else(|| Err(TaskError::Failed("no result".into())));
    decode_chunk::<R>(out, 1)
        .into_iter()
        .next()
        .unwrap_or_else(|| Err(TaskError::Failed("an empty result".into())))
}

fn decode_all<R: Message>(chunks: Vec<Outcome>) -> Result<Vec<R>, TaskError> {
    let mut v = Vec::new();
    for out in chunks {
        // the item count only matters for a failed chunk, where any positive one does
        for r in decode_chunk::<R>(out, 1) {
            v.push(r?);
        }
    }
    Ok(v)
}

impl<T> AsyncResult<T> {
    fn new(
        rx: crossbeam_channel::Receiver<(u64, Outcome)>,
        what: Collect,
        decode: fn(Vec<Outcome>) -> Result<T, TaskError>,
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
    pub fn get(&self) -> Result<T, TaskError> {
        self.wait();
        self.value()
    }

    /// As [`get`](AsyncResult::get), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`TaskError::Timeout`] when the result is not there in time; else as `get`.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, TaskError> {
        if !self.wait_timeout(timeout) {
            return Err(TaskError::Timeout);
        }
        self.value()
    }

    fn value(&self) -> Result<T, TaskError> {
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
        (self.decode)(chunks)
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
        let v = decode_chunk::<u32>(Ok(Bytes::from(buf.clone())), 2);
        assert_eq!(v, [Ok(1), Ok(2)]);
        buf.clear();
        let mixed: ChunkOut<u32> = Err(vec![Ok(1), Err("boom".into())]);
        codec::encode(&mixed, &mut buf, None).unwrap();
        let v = decode_chunk::<u32>(Ok(Bytes::from(buf)), 2);
        assert_eq!(
            v[1],
            Err(TaskError::Panicked {
                message: "boom".into()
            })
        );
        // a whole-chunk failure repeats for each item; garbage is a decode failure
        let v = decode_chunk::<u32>(Err(TaskError::WorkerDied(ExitStatus::Signal(9))), 3);
        assert_eq!(v.len(), 3);
        let v = decode_chunk::<u32>(Ok(Bytes::from(vec![0xff, 0x00])), 2);
        assert!(matches!(v[0], Err(TaskError::Failed(_))));
    }
}
