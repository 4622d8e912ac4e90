//! [`Pool`] itself and [`PoolBuilder`]: configuration and starting the workers and the
//! pool's threads.

use super::fault;
use super::feed::Wake;
use super::feeder::read_inputs;
use super::inner::{dispatch, Inner};
use super::results::{collect, worker_exited};
use super::role::Role;
use super::state::{Cost, InitArgs, Phase, State, Worker};
use super::wire::{FnRef, ResultMsg, CELL_WORDS};
use super::worker::{init_trampoline, InitFn};
use crate::codec::Encoded;
use crate::error::Error;
use crate::monitor::ExitWatcher;
use crate::queue::Queue;
use crate::runtime::{self, StartMethod};
use crate::shared::RawArray;
use crate::Message;
use procactor_transports::target::{self, Target};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

/// A pool of worker processes (Python's `multiprocessing.Pool`).
///
/// Targets are functions of 0 to 8 arguments (function items, closures capturing
/// nothing, function pointers: [`Target`]) with serde arguments and results, as for
/// [`Process::new`](crate::Process::new): each item is the arguments of one call, `()` for none, the value
/// itself for one, a tuple for more (so [`map`](Pool::map) and
/// [`starmap`](Pool::starmap) are the same method here). This holds for every method,
/// the callback and typed-error ones included (for `try_*` the target returns
/// `Result<R, E>`).
///
/// Every method that waits either returns the results or says why not: a panicking task
/// fails alone ([`TaskError::Panicked`](super::TaskError::Panicked)), a worker that dies fails exactly the tasks it
/// held ([`TaskError::WorkerDied`](super::TaskError::WorkerDied)) and is replaced, and the rest of the work completes.
///
/// Arguments may hold procactor handles (a `Queue`, a `Lock`, a `Value`, an `Event`, a
/// Pipe's `Connection`…), as Python's pool pickles them: they reach the worker and work
/// there (see the module documentation for how).
///
/// Dropping the pool terminates it (as Python's `with Pool(...)` does), in bounded time
/// even while a panic unwinds (see [`DROP_WAIT`](super::DROP_WAIT)).
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
/// finished (queued, in a ring or running) hold at most [`SUBMIT_WINDOW_CHUNKS`](super::SUBMIT_WINDOW_CHUNKS) chunks,
/// [`SUBMIT_WINDOW_BYTES`](super::SUBMIT_WINDOW_BYTES) bytes of encoded arguments and [`SUBMIT_WINDOW_FDS`](super::SUBMIT_WINDOW_FDS)
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
    pub(super) inner: Arc<Inner>,
    pub(super) processes: usize,
    pub(super) collector: Option<std::thread::JoinHandle<()>>,
    pub(super) dispatcher: Option<std::thread::JoinHandle<()>>,
    pub(super) feeder: Option<std::thread::JoinHandle<()>>,
    pub(super) watcher: Option<ExitWatcher>,
    /// Its place among what this process shows its observer (`crate::observe`).
    pub(super) _observed: crate::observe::Registration,
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

/// The number of the next pool of this process without a name (`pool-<n>`).
static POOL_NUMBER: AtomicU64 = AtomicU64::new(1);

/// Builds a [`Pool`]: `processes`, `maxtasksperchild`, `initializer`.
pub struct PoolBuilder {
    pub(super) processes: Option<usize>,
    pub(super) maxtasks: u64,
    pub(super) init: Option<(FnRef, FnRef, InitArgs)>,
    /// Why the initializer given cannot run in a worker (reported by `build`).
    pub(super) bad_init: Option<String>,
    pub(super) method: Option<StartMethod>,
    pub(super) name: Option<String>,
}

impl fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("processes", &self.processes)
            .field("maxtasksperchild", &self.maxtasks)
            .field("initializer", &self.init.is_some())
            .field("start_method", &self.method)
            .field("name", &self.name)
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
    /// `f` takes 0 to 8 arguments given as one value, as [`Process::new`](crate::Process::new)'s target does
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

    /// The name the pool is shown by to its observer (`procactor::observe`,
    /// `procactor-top`, the `metrics` labels). Default: `pool-<n>`, `n` counting the
    /// pools this process built from 1. A dropped pool leaves the observer's list, except
    /// from a snapshot already under way at that moment, which may still show it once.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// How the workers (and their replacements) start. Default, read at `build`: the
    /// method set for the process ([`set_start_method`](crate::set_start_method) or
    /// `PROCACTOR_START_METHOD`), or, when none was set, [`StartMethod::ForkServer`] (a
    /// worker or a replacement is a `fork()` of a small server instead of a new
    /// execution of the binary). The method given here is always honoured (`Spawn`
    /// included), and so is one set for the process. With the fork-server default,
    /// `build` checks that the server has this process's current environment and
    /// working directory (replacing it otherwise): the workers start with those. A
    /// replacement starts with what the process's one server has then: a later change
    /// reaches it only once a new server is brought up (by a later default build, for
    /// instance), for every owner at once (see [`StartMethod`]).
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
        let (handoff_tx, handoff_rx) = crossbeam_channel::unbounded();
        let name = self
            .name
            .unwrap_or_else(|| format!("pool-{}", POOL_NUMBER.fetch_add(1, Ordering::Relaxed)));
        let inner = Arc::new(Inner {
            name,
            rings,
            dead: (0..n).map(|_| AtomicBool::new(false)).collect(),
            st: Mutex::new(State {
                workers,
                pending: HashMap::new(),
                queue: VecDeque::new(),
                in_flight: Cost::default(),
                fns: Vec::new(),
                fn_ids: HashMap::new(),
                fn_by_type: HashMap::new(),
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
            role: Role::new(handoff_tx),
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
                collect(i2, reader, handoff_rx)
            })?;
        let i4 = inner.clone();
        let dispatcher = crate::runtime::thread_builder("procactor-pool-dispatch")
            .spawn(move || dispatch(i4))?;
        let i5 = inner.clone();
        let feeder = crate::runtime::thread_builder("procactor-pool-feeder")
            .spawn(move || read_inputs(&i5, &src_rx))?;
        // (after the zygote: with `Fork` it is made while the process has no thread, and
        // the first registration starts the observe socket's)
        let weak: std::sync::Weak<Inner> = Arc::downgrade(&inner);
        let observed = crate::observe::register(crate::observe::Source::Pool(weak));
        Ok(Pool {
            inner,
            _observed: observed,
            processes: n,
            collector: Some(collector),
            dispatcher: Some(dispatcher),
            feeder: Some(feeder),
            watcher: Some(watcher),
        })
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
            name: None,
        }
    }
}
