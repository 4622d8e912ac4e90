//! A [`Pool`] whose task queue is a Redis stream: workers on any host share the work,
//! results come back on a stream of the caller's own.
//!
//! # Streams and entries
//!
//! For a pool named `P`:
//!
//! - `P:tasks`, consumer group `workers`: one entry per chunk, field `cbor` = the CBOR
//!   of `{"f": key, "args": <CBOR of Vec<A>>, "reply": stream, "task": n}`, where `key`
//!   names the function (`"<offset>:<type>"`, the same in every copy of one binary: for a
//!   function item or a closure capturing nothing, the offset and name of its
//!   per-target trampoline; for a function pointer, its own) and `A` is the function's
//!   arguments as one value (`()`, the argument itself, or a tuple: see
//!   [`Target`]);
//! - `P:results:<caller>`: one entry per finished chunk, field `cbor` = the CBOR of
//!   `{"task": n, "deliveries": d, "out": Ok(<CBOR of Vec<Result<R, String>>>) | Err(why)}`;
//! - `P:stop`: set by [`Pool::stop_workers`]; every [`run_worker`] returns when it sees it.
//!
//! # Which functions run
//!
//! A worker runs only the functions in its [`Tasks`]: a task naming any other function
//! (whoever wrote it into Redis) is answered with an error, never called. The pool's
//! own [`PoolBuilder::task`] list is what its local workers serve and what `map` and
//! friends accept.
//!
//! # Failures
//!
//! A worker killed mid-task leaves its entry pending; after the visibility timeout
//! another worker takes it over (`XAUTOCLAIM`) and runs it again. The caller keeps the
//! first result of each task number and drops later ones ([`Pool::duplicates`]), so
//! `map` returns each item once.

use crate::conn::{self, RedisError};
use crate::stream::{Config, Core, Failure};
use procactor_core::pool::FnRef;
use procactor_core::{codec, runtime, Bytes, Message, Process, TaskError};
use procactor_transports::deadline::Deadline;
use procactor_transports::target::{self, SameImage, Target, TargetRef};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const WORKER_GROUP: &str = "workers";

#[derive(Serialize, Deserialize)]
struct TaskMsg {
    f: String,
    args: Bytes,
    reply: String,
    task: u64,
}

#[derive(Serialize, Deserialize)]
struct ResultMsg {
    task: u64,
    deliveries: u64,
    out: Result<Bytes, String>,
}

/// The key a task names its function by: `"<offset>:<type>"` (the same in every copy of
/// one binary).
fn key(f: &FnRef) -> String {
    format!("{}:{}", f.0, f.1)
}

/// A bound function in a worker: decodes a chunk's arguments, runs it, encodes its
/// results.
type Runner = Box<dyn Fn(&[u8]) -> Result<Vec<u8>, String>>;
/// The non-generic signature of every binder.
type BindFn = fn(&TargetRef, &SameImage) -> Option<Runner>;

fn bind<A: Message, R: Message, S: 'static, F: Target<A, S, Output = R>>(
    t: &TargetRef,
    proof: &SameImage,
) -> Option<Runner> {
    let f = target::resolve_target::<F, A, S>(t, proof).ok()?;
    Some(Box::new(move |bytes: &[u8]| {
        let args: Vec<A> =
            codec::decode(bytes, Vec::new()).map_err(|e| format!("decoding the arguments: {e}"))?;
        let out: Vec<Result<R, String>> = args
            .into_iter()
            .map(|a| {
                // (the panic goes back as the item's result: not printed unless
                // `PROCACTOR_LOG=debug`, as in the local pool)
                crate::quiet::run_task(|| f.call(a))
            })
            .collect();
        let mut buf = Vec::new();
        codec::encode(&out, &mut buf, None).map_err(|e| format!("encoding the results: {e}"))?;
        Ok(buf)
    }))
}

/// The key `f` travels as, or why it cannot be a task.
fn target_key<A: 'static, S: 'static, F: Target<A, S>>(f: F) -> Result<FnRef, String> {
    let t = target::describe_target(f).map_err(|e| e.0)?;
    Ok(FnRef::from(t))
}

/// The functions a worker serves (and a pool accepts): any [`Target`] (a function item,
/// a closure capturing nothing or a function pointer of 0 to 8 arguments) whose
/// arguments and result are serde [`Message`]s.
///
/// A task's arguments are one value, as for the local `procactor::Pool`: `()` for a
/// function of none, the argument itself for one, a tuple for two or more
/// (`pool.map(mul, vec![(1, 2), (3, 4)])` calls `mul(1, 2)` and `mul(3, 4)`).
///
/// A function is known by what it is when given: a function item (`square`) and the
/// same function as a pointer (`square as fn(u64) -> u64`) are two different tasks, and
/// `map` accepts each only if it was added in that form.
///
/// A closure capturing variables is refused: when the program is built if its captures
/// are not pointer-sized, otherwise by [`PoolBuilder::build`] and [`run_worker`] (with an
/// error naming it).
///
/// # Examples
///
/// ```
/// use procactor_redis::Tasks;
/// fn square(x: u64) -> u64 { x * x }
/// fn shout(s: String) -> String { s.to_uppercase() }
/// fn mul(a: u64, b: u64) -> u64 { a * b }
/// fn answer() -> u64 { 42 }
/// let tasks = Tasks::new().with(square).with(shout).with(mul).with(answer);
/// assert_eq!(tasks.len(), 4);
/// ```
#[derive(Default)]
pub struct Tasks {
    keys: HashSet<String>,
    refs: Vec<(FnRef, FnRef)>,
    refused: Vec<String>,
}

impl fmt::Debug for Tasks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tasks")
            .field(
                "functions",
                &self.refs.iter().map(|r| &r.1 .1).collect::<Vec<_>>(),
            )
            .field("refused", &self.refused)
            .finish()
    }
}

impl Tasks {
    /// No functions.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `f` (adding it twice is harmless). A closure capturing a pointer-sized value
    /// is not added: it is reported by [`PoolBuilder::build`] or [`run_worker`].
    pub fn with<A: Message, R: Message, S: 'static, F: Target<A, S, Output = R>>(
        mut self,
        f: F,
    ) -> Self {
        match target_key(f) {
            Ok(target) => {
                if self.keys.insert(key(&target)) {
                    self.refs
                        .push((FnRef::of(bind::<A, R, S, F> as BindFn), target));
                }
            }
            Err(why) => self.refused.push(why),
        }
        self
    }

    /// How many functions.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn contains(&self, key: &str) -> bool {
        self.keys.contains(key)
    }

    /// Why some functions were refused, or `None`.
    fn refused(&self) -> Option<String> {
        (!self.refused.is_empty()).then(|| self.refused.join("; "))
    }

    /// Binds every function (in the process that serves them; the references were made
    /// in this image or, for a local worker, in its parent running the same image).
    fn runners(&self) -> Result<HashMap<String, Runner>, String> {
        let proof = runtime::image_proof()?;
        let mut runners = HashMap::with_capacity(self.refs.len());
        for (b, f) in &self.refs {
            let binder: BindFn = target::resolve_checked(&b.target(), proof)
                .map_err(|e| format!("a task binder: {e}"))?;
            let run = binder(&f.target(), proof).ok_or("a task of an unexpected type")?;
            runners.insert(key(f), run);
        }
        Ok(runners)
    }

    /// Rebuilds a set from references the parent sent (a local worker's start); they are
    /// checked when [`run_worker`] binds them.
    fn from_refs(refs: &[(FnRef, FnRef)]) -> Tasks {
        Tasks {
            keys: refs.iter().map(|(_, f)| key(f)).collect(),
            refs: refs.to_vec(),
            refused: Vec::new(),
        }
    }
}

fn tasks_stream(pool: &str) -> String {
    format!("{pool}:tasks")
}

fn stop_key(pool: &str) -> String {
    format!("{pool}:stop")
}

fn worker_config(url: &str, pool: &str, visibility: Duration) -> Config {
    let mut cfg = Config::new(url, &tasks_stream(pool));
    cfg.group = WORKER_GROUP.to_string();
    cfg.visibility_ms = visibility.as_millis().max(1) as u64;
    cfg
}

/// Serves the pool `pool` at `url` with the functions in `tasks`, until
/// [`Pool::stop_workers`] is called (then returns `Ok`). Run it on every host that
/// should take part: the same binary, started with a role argument (see
/// `examples/distributed_pool.rs`).
///
/// A task is taken over from a dead worker after `visibility` (the pool's
/// [`PoolBuilder::visibility_timeout`] should be the same); it must exceed the longest
/// task.
///
/// A task's panic goes back to the caller ([`TaskError::Panicked`], with its location)
/// and is not printed on this process's stderr, unless `PROCACTOR_LOG=debug` (or
/// `trace`) asks, as in the local pool. For that, the first call installs a panic hook
/// that wraps the process's own: panics outside a task still reach the previous hook.
///
/// # Errors
///
/// The server cannot be reached at start, `tasks` holds a refused function (a closure
/// capturing variables), or this process's image cannot be read from `/proc` (all three
/// reported as a [`RedisError`]; the last two as a client error). Later connection losses
/// are retried.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// fn square(x: u64) -> u64 { x * x }
/// procactor_redis::run_worker(
///     "redis://127.0.0.1:6379/",
///     "squares",
///     procactor_redis::Tasks::new().with(square),
///     Duration::from_secs(30),
/// )
/// .unwrap();
/// ```
pub fn run_worker(
    url: &str,
    pool: &str,
    tasks: Tasks,
    visibility: Duration,
) -> Result<(), RedisError> {
    let refused = |why: String| {
        RedisError::from(redis::RedisError::from((
            redis::ErrorKind::Client,
            "redis pool worker",
            why,
        )))
    };
    if let Some(why) = tasks.refused() {
        return Err(refused(why));
    }
    let runners = tasks.runners().map_err(refused)?;
    // (a plain process has no hook that keeps a task's panic quiet: see `quiet`)
    crate::quiet::install();
    let core = Core::connect(worker_config(url, pool, visibility), false)?;
    serve(&core, &runners)
}

fn serve(core: &Core, runners: &HashMap<String, Runner>) -> Result<(), RedisError> {
    let pool_stop = stop_key(core.cfg.name.trim_end_matches(":tasks"));
    let mut next_stop_check = Instant::now();
    loop {
        if Instant::now() >= next_stop_check {
            let stop: Option<String> = core
                .with_connection(|c| redis::cmd("GET").arg(&pool_stop).query(c))
                .unwrap_or(None);
            if stop.is_some() {
                return Ok(());
            }
            next_stop_check = Instant::now() + Duration::from_millis(500);
        }
        let d = match core.get(Some(Instant::now() + Duration::from_millis(500))) {
            Ok(d) => d,
            Err(Failure::Empty) => continue,
            Err(Failure::Redis(e)) => {
                tracing::warn!(error = %e, "redis pool worker: retrying");
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
            Err(Failure::Full | Failure::Closed) => return Ok(()),
        };
        let msg: TaskMsg = match d
            .payload
            .as_deref()
            .map(|b| codec::decode::<TaskMsg>(b, Vec::new()))
        {
            Some(Ok(m)) => m,
            _ => {
                tracing::error!(id = %d.id, "redis pool worker: undecodable task dropped");
                let _ = core.discard(&d.id);
                continue;
            }
        };
        let out = match runners.get(&msg.f) {
            Some(run) => run(&msg.args).map(Bytes::from),
            None => Err(format!(
                "function {} is not served by worker {}",
                msg.f, core.consumer
            )),
        };
        let result = ResultMsg {
            task: msg.task,
            deliveries: d.deliveries,
            out,
        };
        let mut bytes = Vec::new();
        if let Err(e) = codec::encode(&result, &mut bytes, None) {
            tracing::error!(error = %e, "redis pool worker: could not encode a result");
            core.release(&d.id);
            continue;
        }
        // the result, then the acknowledgement: a crash in between gives a duplicate
        // result (dropped by the caller), never a lost one
        let sent = core.with_connection(|c| {
            redis::cmd("XADD")
                .arg(&msg.reply)
                .arg("*")
                .arg(conn::PAYLOAD_FIELD)
                .arg(bytes.as_slice())
                .exec(c)
        });
        match sent {
            Ok(()) => {
                let _ = core.discard(&d.id);
            }
            Err(e) => {
                // left pending: it runs again after the visibility timeout
                tracing::warn!(error = %e, "redis pool worker: result not sent");
                core.release(&d.id);
            }
        }
    }
}

#[derive(Serialize, Deserialize)]
struct LocalBoot {
    url: String,
    pool: String,
    visibility_ms: u64,
    fns: Vec<(FnRef, FnRef)>,
}

fn local_worker_main(boot: LocalBoot) {
    let tasks = Tasks::from_refs(&boot.fns);
    let visibility = Duration::from_millis(boot.visibility_ms);
    if let Err(e) = run_worker(&boot.url, &boot.pool, tasks, visibility) {
        panic!("redis pool worker: {e}");
    }
}

/// Options of a [`Pool`].
#[derive(Debug)]
pub struct PoolBuilder {
    url: String,
    name: String,
    tasks: Tasks,
    local_workers: usize,
    visibility: Duration,
}

impl PoolBuilder {
    /// Adds a function the pool runs (and its local workers serve): any [`Target`], as
    /// [`Tasks::with`] (`.task(mul)` for `fn mul(a: u64, b: u64) -> u64`, then
    /// `pool.map(mul, vec![(1, 2), (3, 4)])`).
    pub fn task<A: Message, R: Message, S: 'static, F: Target<A, S, Output = R>>(
        mut self,
        f: F,
    ) -> Self {
        self.tasks = self.tasks.with(f);
        self
    }

    /// Starts `n` worker processes on this host (default 0: only remote workers, from
    /// [`run_worker`]).
    pub fn local_workers(mut self, n: usize) -> Self {
        self.local_workers = n;
        self
    }

    /// How long a task may stay with a worker before another takes it over (default
    /// 30 s): longer than the longest task.
    pub fn visibility_timeout(mut self, d: Duration) -> Self {
        self.visibility = d;
        self
    }

    /// Connects, clears a previous [`Pool::stop_workers`], starts the local workers and
    /// the result collector.
    ///
    /// # Errors
    ///
    /// The server cannot be reached, a local worker could not start, or a task was
    /// refused ([`PoolError::NotATarget`]).
    pub fn build(self) -> Result<Pool, PoolError> {
        if let Some(why) = self.tasks.refused() {
            return Err(PoolError::NotATarget(why));
        }
        let reply_core = Core::connect(Config::new(&self.url, "unused"), true)?;
        let reply = format!("{}:results:{}", self.name, reply_core.consumer);
        let tasks_core =
            Core::connect(worker_config(&self.url, &self.name, self.visibility), true)?;
        tasks_core.with_connection(|c| redis::cmd("DEL").arg(stop_key(&self.name)).exec(c))?;
        let mut workers = Vec::with_capacity(self.local_workers);
        for i in 0..self.local_workers {
            let boot = LocalBoot {
                url: self.url.clone(),
                pool: self.name.clone(),
                visibility_ms: self.visibility.as_millis().max(1) as u64,
                fns: self.tasks.refs.clone(),
            };
            let p = Process::new(local_worker_main, boot)
                .name(format!("{}-worker-{i}", self.name))
                .start()
                .map_err(|e| PoolError::Spawn(e.to_string()))?;
            workers.push(p);
        }
        let inner = Arc::new(Inner {
            tasks_core,
            reply,
            next_task: AtomicU64::new(1),
            pending: Mutex::new(HashMap::new()),
            redelivered: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            quit: AtomicBool::new(false),
        });
        let collector = {
            let inner = inner.clone();
            std::thread::Builder::new()
                .name("redis-pool-results".into())
                .spawn(move || collect(&inner, &reply_core))
                .map_err(|e| PoolError::Spawn(e.to_string()))?
        };
        Ok(Pool {
            inner,
            name: self.name,
            tasks: self.tasks,
            workers: Mutex::new(workers),
            collector: Some(collector),
        })
    }
}

/// Why a [`Pool`] could not start.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// Redis could not be reached.
    #[error(transparent)]
    Redis(#[from] RedisError),
    /// A local worker process or the collector thread could not start.
    #[error("could not start a worker: {0}")]
    Spawn(String),
    /// A function given to [`PoolBuilder::task`] cannot be a task (a closure capturing
    /// variables).
    #[error("{0}")]
    NotATarget(String),
}

type Outcome = Result<Bytes, String>;

struct Inner {
    tasks_core: Core,
    reply: String,
    next_task: AtomicU64,
    pending: Mutex<HashMap<u64, crossbeam_channel::Sender<(u64, Outcome)>>>,
    redelivered: AtomicU64,
    duplicates: AtomicU64,
    quit: AtomicBool,
}

/// The collector thread: reads the caller's result stream, hands each task's first
/// result to its waiter, counts later ones as duplicates.
fn collect(inner: &Inner, core: &Core) {
    let mut last = "0-0".to_string();
    while !inner.quit.load(Ordering::SeqCst) {
        let reply: Result<redis::Value, _> = core.with_connection(|c| {
            redis::cmd("XREAD")
                .arg("COUNT")
                .arg(512)
                .arg("BLOCK")
                .arg(100)
                .arg("STREAMS")
                .arg(&inner.reply)
                .arg(&last)
                .query(c)
        });
        let entries = match reply {
            Ok(v) => conn::read_reply(&v),
            Err(e) => {
                tracing::warn!(error = %e, "redis pool collector: retrying");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let Some(end) = entries.last().map(|e| e.id.clone()) else {
            continue;
        };
        let ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
        let _ = core.with_connection(|c| redis::cmd("XDEL").arg(&inner.reply).arg(&ids).exec(c));
        last = end;
        for e in entries {
            let Some(Ok(msg)) = e
                .payload
                .as_deref()
                .map(|b| codec::decode::<ResultMsg>(b, Vec::new()))
            else {
                continue;
            };
            if msg.deliveries > 1 {
                inner.redelivered.fetch_add(1, Ordering::Relaxed);
            }
            let tx = inner
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&msg.task);
            match tx {
                Some(tx) => {
                    let _ = tx.send((msg.task, msg.out));
                }
                None => {
                    inner.duplicates.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// A process pool across hosts: `map`, `apply_async`, `imap_unordered` over a Redis
/// stream of tasks (see the [module docs](self)).
///
/// # Examples
///
/// ```no_run
/// use procactor_redis::Pool;
///
/// fn square(x: u64) -> u64 { x * x }
///
/// fn main() {
///     procactor_core::init();
///     let pool = Pool::builder("redis://127.0.0.1:6379/", "squares")
///         .task(square)
///         .local_workers(2)
///         .build()
///         .unwrap();
///     assert_eq!(pool.map(square, vec![1, 2, 3]).unwrap(), [1, 4, 9]);
/// }
/// ```
pub struct Pool {
    inner: Arc<Inner>,
    name: String,
    tasks: Tasks,
    workers: Mutex<Vec<Process<()>>>,
    collector: Option<JoinHandle<()>>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("name", &self.name)
            .field("reply", &self.inner.reply)
            .field("tasks", &self.tasks)
            .finish()
    }
}

/// The pending result of [`Pool::apply_async`].
#[derive(Debug)]
pub struct AsyncResult<R> {
    rx: crossbeam_channel::Receiver<(u64, Outcome)>,
    _r: std::marker::PhantomData<fn() -> R>,
}

fn decode_chunk<R: Message>(out: Outcome) -> Result<Vec<Result<R, TaskError>>, TaskError> {
    let bytes = out.map_err(TaskError::Failed)?;
    let items: Vec<Result<R, String>> = codec::decode(&bytes, Vec::new())
        .map_err(|e| TaskError::Failed(format!("decoding the results: {e}")))?;
    Ok(items
        .into_iter()
        .map(|r| r.map_err(|message| TaskError::Panicked { message }))
        .collect())
}

impl<R: Message> AsyncResult<R> {
    /// Waits for the result.
    ///
    /// # Errors
    ///
    /// [`TaskError::Panicked`], or [`TaskError::Failed`] (a function the worker does not
    /// serve, the pool dropped).
    pub fn get(self) -> Result<R, TaskError> {
        let (_, out) = self
            .rx
            .recv()
            .map_err(|_| TaskError::Failed("the pool is gone".into()))?;
        Self::one(out)
    }

    /// As [`get`](Self::get), for at most `timeout`.
    ///
    /// # Errors
    ///
    /// As `get`, and [`TaskError::Timeout`].
    pub fn get_timeout(&self, timeout: Duration) -> Result<R, TaskError> {
        match self.rx.recv_timeout(timeout) {
            Ok((_, out)) => Self::one(out),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => Err(TaskError::Timeout),
            Err(_) => Err(TaskError::Failed("the pool is gone".into())),
        }
    }

    fn one(out: Outcome) -> Result<R, TaskError> {
        decode_chunk::<R>(out)?
            .pop()
            .unwrap_or_else(|| Err(TaskError::Failed("an empty result".into())))
    }
}

impl Pool {
    /// Options, for the pool `name` at `url`.
    pub fn builder(url: &str, name: &str) -> PoolBuilder {
        PoolBuilder {
            url: url.to_string(),
            name: name.to_string(),
            tasks: Tasks::new(),
            local_workers: 0,
            visibility: Duration::from_secs(30),
        }
    }

    fn submit<A: Message, R: Message, S: 'static, F: Target<A, S, Output = R>>(
        &self,
        f: F,
        chunks: Vec<Vec<A>>,
        tx: &crossbeam_channel::Sender<(u64, Outcome)>,
    ) -> Result<Vec<u64>, TaskError> {
        let fkey = key(&target_key(f).map_err(TaskError::Failed)?);
        if !self.tasks.contains(&fkey) {
            return Err(TaskError::Failed(format!(
                "{} is not one of this pool's tasks (add it with PoolBuilder::task)",
                std::any::type_name::<F>()
            )));
        }
        let mut payloads = Vec::with_capacity(chunks.len());
        let mut numbers = Vec::with_capacity(chunks.len());
        for chunk in chunks {
            let mut args = Vec::new();
            codec::encode(&chunk, &mut args, None).map_err(|e| {
                TaskError::Failed(format!(
                    "could not encode the arguments ({}): a Redis pool's tasks travel \
                     through Redis, where a procactor handle (a local Queue, Lock, Value, \
                     Pipe end…) cannot go; use a local procactor::Pool, whose tasks take \
                     handles, or reach shared state by name in the task (e.g. \
                     Queue::connect_redis)",
                    e.0
                ))
            })?;
            let task = self.inner.next_task.fetch_add(1, Ordering::Relaxed);
            let msg = TaskMsg {
                f: fkey.clone(),
                args: Bytes::from(args),
                reply: self.inner.reply.clone(),
                task,
            };
            let mut b = Vec::new();
            codec::encode(&msg, &mut b, None).map_err(|e| TaskError::Failed(e.to_string()))?;
            payloads.push(b);
            numbers.push(task);
        }
        {
            let mut pending = self.inner.pending.lock().unwrap_or_else(|e| e.into_inner());
            for n in &numbers {
                pending.insert(*n, tx.clone());
            }
        }
        if let Err(e) = self.inner.tasks_core.put(&payloads, None) {
            let mut pending = self.inner.pending.lock().unwrap_or_else(|e| e.into_inner());
            for n in &numbers {
                pending.remove(n);
            }
            return Err(TaskError::Failed(format!(
                "could not queue the tasks: {e:?}"
            )));
        }
        Ok(numbers)
    }

    fn chunks<A>(items: Vec<A>, chunksize: usize) -> Vec<Vec<A>> {
        let size = chunksize.max(1);
        let mut out = Vec::with_capacity(items.len().div_ceil(size));
        let mut it = items.into_iter().peekable();
        while it.peek().is_some() {
            out.push(it.by_ref().take(size).collect());
        }
        out
    }

    fn default_chunksize(&self, n: usize) -> usize {
        let workers = self
            .workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
            .max(4);
        n.div_ceil(4 * workers).max(1)
    }

    /// `f` over every item, results in order (Python's `Pool.map`), in chunks of
    /// `len / (4 × workers)`. Each item is one call's arguments as one value: `()` for a
    /// function of none, a tuple for two or more (`pool.map(mul, vec![(1, 2), (3, 4)])`,
    /// which also covers Python's `starmap`).
    ///
    /// # Errors
    ///
    /// The first item's error, in order ([`TaskError::Panicked`], [`TaskError::Failed`]).
    pub fn map<A: Message, R: Message, S: 'static, F: Target<A, S, Output = R>>(
        &self,
        f: F,
        items: Vec<A>,
    ) -> Result<Vec<R>, TaskError> {
        let c = self.default_chunksize(items.len());
        self.map_chunksize_deadline(f, items, c, None)
    }

    /// As [`map`](Self::map), with chunks of `chunksize` items.
    ///
    /// # Errors
    ///
    /// As `map`.
    pub fn map_chunksize<A: Message, R: Message, S: 'static, F: Target<A, S, Output = R>>(
        &self,
        f: F,
        items: Vec<A>,
        chunksize: usize,
    ) -> Result<Vec<R>, TaskError> {
        self.map_chunksize_deadline(f, items, chunksize, None)
    }

    /// As [`map`](Self::map), giving up with [`TaskError::Timeout`] after `timeout`.
    ///
    /// # Errors
    ///
    /// As `map`, and `Timeout`.
    pub fn map_timeout<A: Message, R: Message, S: 'static, F: Target<A, S, Output = R>>(
        &self,
        f: F,
        items: Vec<A>,
        timeout: Duration,
    ) -> Result<Vec<R>, TaskError> {
        let c = self.default_chunksize(items.len());
        self.map_chunksize_deadline(f, items, c, Deadline::after(timeout).instant())
    }

    fn map_chunksize_deadline<A: Message, R: Message, S: 'static, F: Target<A, S, Output = R>>(
        &self,
        f: F,
        items: Vec<A>,
        chunksize: usize,
        deadline: Option<Instant>,
    ) -> Result<Vec<R>, TaskError> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let numbers = self.submit(f, Self::chunks(items, chunksize), &tx)?;
        let Some(&first) = numbers.first() else {
            return Ok(Vec::new());
        };
        let mut slots: Vec<Option<Outcome>> = (0..numbers.len()).map(|_| None).collect();
        let mut left = numbers.len();
        while left > 0 {
            let got = match deadline {
                Some(d) => rx.recv_deadline(d).map_err(|_| TaskError::Timeout),
                None => rx
                    .recv()
                    .map_err(|_| TaskError::Failed("the pool is gone".into())),
            };
            let (task, out) = match got {
                Ok(x) => x,
                Err(e) => {
                    self.forget(&numbers);
                    return Err(e);
                }
            };
            let i = (task - first) as usize;
            if slots[i].is_none() {
                slots[i] = Some(out);
                left -= 1;
            }
        }
        let mut results = Vec::new();
        for out in slots.into_iter().flatten() {
            for r in decode_chunk::<R>(out)? {
                results.push(r?);
            }
        }
        Ok(results)
    }

    fn forget(&self, numbers: &[u64]) {
        let mut pending = self.inner.pending.lock().unwrap_or_else(|e| e.into_inner());
        for n in numbers {
            pending.remove(n);
        }
    }

    /// Runs `f(arg)` on some worker; the result comes later.
    ///
    /// # Errors
    ///
    /// `f` is not one of the pool's tasks, or the task could not be queued.
    pub fn apply_async<A: Message, R: Message, S: 'static, F: Target<A, S, Output = R>>(
        &self,
        f: F,
        arg: A,
    ) -> Result<AsyncResult<R>, TaskError> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.submit(f, vec![vec![arg]], &tx)?;
        Ok(AsyncResult {
            rx,
            _r: std::marker::PhantomData,
        })
    }

    /// `f` over every item, one task per item, results as they finish (Python's
    /// `imap_unordered`).
    ///
    /// # Errors
    ///
    /// `f` is not one of the pool's tasks, or the tasks could not be queued.
    pub fn imap_unordered<A: Message, R: Message, S: 'static, F: Target<A, S, Output = R>>(
        &self,
        f: F,
        items: Vec<A>,
    ) -> Result<ImapUnordered<R>, TaskError> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let n = items.len();
        self.submit(f, Self::chunks(items, 1), &tx)?;
        Ok(ImapUnordered {
            rx,
            left: n,
            ready: Vec::new(),
            _r: std::marker::PhantomData,
        })
    }

    /// Results that came from a task delivered more than once (a worker died holding it,
    /// or kept it past the visibility timeout).
    pub fn redelivered(&self) -> u64 {
        self.inner.redelivered.load(Ordering::Relaxed)
    }

    /// Results dropped because their task had already given one.
    pub fn duplicates(&self) -> u64 {
        self.inner.duplicates.load(Ordering::Relaxed)
    }

    /// The pids of the local worker processes (still running or not).
    pub fn worker_pids(&self) -> Vec<u32> {
        self.workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(Process::pid)
            .collect()
    }

    /// Asks every worker of this pool name, local or remote, to return (sets `P:stop`;
    /// they see it within about half a second).
    ///
    /// # Errors
    ///
    /// Redis could not be reached.
    pub fn stop_workers(&self) -> Result<(), RedisError> {
        self.inner
            .tasks_core
            .with_connection(|c| redis::cmd("SET").arg(stop_key(&self.name)).arg(1).exec(c))
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for w in self.workers.get_mut().unwrap_or_else(|e| e.into_inner()) {
            let _ = w.kill();
            let _ = w.join_timeout(Duration::from_secs(5));
        }
        self.inner.quit.store(true, Ordering::SeqCst);
        if let Some(c) = self.collector.take() {
            let _ = c.join();
        }
        let _ = self
            .inner
            .tasks_core
            .with_connection(|c| redis::cmd("DEL").arg(&self.inner.reply).exec(c));
    }
}

/// The iterator [`Pool::imap_unordered`] returns: each item's result as it finishes.
#[derive(Debug)]
pub struct ImapUnordered<R> {
    rx: crossbeam_channel::Receiver<(u64, Outcome)>,
    left: usize,
    ready: Vec<Result<R, TaskError>>,
    _r: std::marker::PhantomData<fn() -> R>,
}

impl<R: Message> Iterator for ImapUnordered<R> {
    type Item = Result<R, TaskError>;
    fn next(&mut self) -> Option<Self::Item> {
        if let Some(r) = self.ready.pop() {
            return Some(r);
        }
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        match self.rx.recv() {
            Ok((_, out)) => match decode_chunk::<R>(out) {
                Ok(mut items) => {
                    items.reverse();
                    self.ready = items;
                    self.ready.pop()
                }
                Err(e) => Some(Err(e)),
            },
            Err(_) => Some(Err(TaskError::Failed("the pool is gone".into()))),
        }
    }
}
