//! # procactor
//!
//! Python's `multiprocessing`, rebuilt in Rust as a message-passing framework over OS
//! processes: real process isolation (a crash, a leak or a non-thread-safe C library
//! stays inside its process), typed channels between processes, explicit shared memory.
//!
//! ## Starting processes
//!
//! Call [`init()`] first in `main` (or put [`#[procactor::main]`](macro@main) on it): a
//! child is the same binary re-executed, and `init` is where it takes over.
//!
//! ```
//! use procactor::{Process, ExitStatus};
//!
//! fn greet(who: String) -> String { format!("hello, {who}") }
//!
//! fn main() {
//!     procactor::init();
//!     let mut p = Process::new(greet, "world".to_string()).start().unwrap();
//!     assert_eq!(p.join().unwrap(), ExitStatus::Code(0));
//!     assert_eq!(p.result().unwrap(), "hello, world");
//! }
//! ```
//!
//! In an integration-test file (which has no `main` of its own) write the one line
//! `procactor::test_support!();` at the top level instead.
//!
//! ## Python names
//!
//! | Python `multiprocessing` | procactor |
//! |---|---|
//! | `Process(target=f, args=(x,))` | [`Process::new(f, x)`](Process::new) `.start()` |
//! | `Process(target=g)`, `Process(target=mul, args=(a, b))` | [`Process::new(g, ())`](Process::new), `Process::new(mul, (a, b))`: 0 to 8 arguments ([`Target`]) |
//! | `p.join()`, `p.exitcode` | [`Process::join`], [`Process::exitcode`] → [`ExitStatus`] |
//! | `current_process()`, `active_children()`, `cpu_count()` | [`current_process`], [`active_children`], [`cpu_count`] |
//! | `set_start_method('spawn'/'forkserver'/'fork')` | [`set_start_method`]`(`[`StartMethod`]`::Spawn / ForkServer / Fork)` |
//! | `Pipe()`, `Pipe(duplex=False)` | [`Pipe::new`], [`Pipe::oneway`], [`Pipe::typed`] → [`Connection`] |
//! | `Queue(maxsize)`, `SimpleQueue`, `JoinableQueue` | [`Queue::new`] / [`Queue::bounded`], [`SimpleQueue`], [`JoinableQueue`] |
//! | `Value`, `Array`, `RawValue`, `RawArray` | [`Value`], [`Array`], [`RawValue`], [`RawArray`] |
//! | `Value('i', 0, lock=False)` | [`RawValue`], with lock-free [`RawValue::fetch_add`], [`RawValue::compare_exchange`], … |
//! | `Lock`, `RLock`, `Semaphore`, `BoundedSemaphore` | [`Lock`], [`RLock`], [`Semaphore`], [`BoundedSemaphore`] |
//! | `Event`, `Condition`, `Barrier` | [`Event`], [`Condition`], [`Barrier`] |
//! | `Pool`, `map`, `imap`, `apply_async(.., callback, error_callback)` | [`Pool`] (`apply_async_with`, `try_map`…), [`AsyncResult`], [`Imap`], [`TaskError`] |
//! | `Manager()`, `dict()`, `list()`, `Namespace()` | [`Manager`], [`SharedDict`], [`SharedList`], [`Namespace`] |
//! | `Manager().Lock()`, `RLock()`, `Semaphore()`, `Condition()`, `Event()`, `Barrier()`, `Queue()`, `JoinableQueue()`, `Value()`, `Array()` | [`Manager::lock`] → [`SharedLock`], [`SharedRLock`], [`SharedSemaphore`], [`SharedCondition`], [`SharedEvent`], [`SharedBarrier`], [`SharedQueue`], [`SharedJoinableQueue`], [`SharedValue`], [`SharedArray`] |
//! | `multiprocessing.connection` `Listener`, `Client` | [`connection::Listener`], [`connection::Client`] |
//! | (Erlang/OTP actors and supervisors) | `#[process_actor]`, [`Actor`], [`ActorRef`], [`Supervisor`] |
//! | a remote Manager's queue, across hosts | `redis` (feature `redis`, default): `Queue::connect_redis(url, name)`, `redis::Pool`, `redis::spawn_workers` |
//!
//! ## Message passing
//!
//! ```
//! use procactor::{JoinableQueue, Process, Queue};
//!
//! fn worker((tasks, results): (JoinableQueue<u64>, Queue<u64>)) {
//!     tasks.close(); // this handle only takes
//!     while let Ok(x) = tasks.get() {
//!         results.put(x * x).unwrap();
//!         tasks.task_done().unwrap();
//!     }
//! }
//!
//! fn main() {
//!     procactor::init();
//!     let tasks = JoinableQueue::new().unwrap();
//!     let results = Queue::new().unwrap();
//!     let mut p = Process::new(worker, (tasks.clone(), results.clone())).start().unwrap();
//!     for x in 1..=3 {
//!         tasks.put(x).unwrap();
//!     }
//!     tasks.join();
//!     let mut got: Vec<u64> = (0..3).map(|_| results.get().unwrap()).collect();
//!     got.sort();
//!     assert_eq!(got, [1, 4, 9]);
//!     tasks.close(); // the worker's get now says Disconnected
//!     p.join().unwrap();
//! }
//! ```

//!
//! ## Timeouts and iteration
//!
//! Every `_timeout(d)` method takes any `Duration`: one too large to add to the clock
//! (e.g. `Duration::MAX`) means no deadline, as the method without `_timeout` (Python's
//! `timeout=None`). Queues and connections iterate as `std::sync::mpsc` receivers do:
//! `for x in &q` waits for each item and ends when every producer is gone
//! ([`GetError::Disconnected`]; [`RecvError::Eof`] for a connection), `try_iter()` takes
//! only what is there now.
//!
//! ## Actors and supervision
//!
//! A struct marked `#[process_actor]` with an [`Actor`] impl runs in its own process,
//! fed by a typed mailbox; a [`Supervisor`] starts it and restarts it by an OTP
//! strategy. See [`actor`] and [`supervisor`] for the rules.
//!
//! ```
//! use procactor::{process_actor, Actor, ActorError, Context, Supervisor};
//! use serde::{Deserialize, Serialize};
//!
//! #[process_actor(mailbox = pipe)]
//! #[derive(Serialize, Deserialize)]
//! struct Counter { n: u64 }
//!
//! impl Actor for Counter {
//!     type Msg = u64;
//!     type Reply = u64;
//!     fn handle(&mut self, by: u64, _: &mut Context<Self>) -> Result<u64, ActorError> {
//!         self.n += by;
//!         Ok(self.n)
//!     }
//! }
//!
//! fn main() {
//!     procactor::init();
//!     let sup = Supervisor::builder().build().unwrap();
//!     let c = sup.spawn(Counter { n: 0 }).unwrap();
//!     assert_eq!(c.call(2).unwrap(), 2);
//!     assert_eq!(c.call(40).unwrap(), 42);
//!     c.stop().unwrap();
//!     assert!(c.join_timeout(std::time::Duration::from_secs(10)).is_ok());
//! }
//! ```
//!
//! ## Spinning, and `PROCACTOR_SPIN=0`
//!
//! For users who prefer cores to microseconds. By default a wait that expects an answer
//! within microseconds polls for a short while before it sleeps in the kernel: `Queue`
//! rings 2–50 µs (adaptive), [`Event::wait`] 50 µs, `Lock`/`Value` locks 20 µs, pipes
//! and frames 40 µs (adaptive), a manager's server 50 µs and its clients 200 µs,
//! [`Process::join`] 300 µs. That is how a wake-up takes a fraction of a microsecond
//! instead of tens, and it costs CPU time: a waiter keeps its core busy while it polls.
//!
//! Start the program with `PROCACTOR_SPIN=0` (also `false`, `off`, `no`) and every one
//! of these waits checks once and then sleeps: the same results, slower wake-ups, no
//! CPU burnt while waiting. The variable is read once per process and cached (children
//! inherit it with the environment); nothing on a hot path calls `getenv` or the
//! kernel for it. The benchmark (`bench/`, README) prints each figure with its CPU
//! time, spinning and not.

// Doctests that start processes need an explicit `fn main` that calls `init()` first.
#![allow(clippy::needless_doctest_main)]

// The whole API, by area (each name also stays reachable through its module below).
// Processes and the runtime:
pub use procactor_core::{
    active_children, cpu_count, current_process, init, parent_process, set_start_method,
    start_method, ExitStatus, Message, Process, ProcessBuilder, ProcessInfo, StartMethod, Target,
    PROCESS_DROP_JOIN_LIMIT, PROCESS_DROP_KILL_WAIT,
};
// Channels: pipes, queues, `wait`, and what crosses them:
pub use procactor_core::{
    wait, wait_async, Bytes, ConnPair, Connection, JoinableQueue, Pipe, Queue, QueueBuilder,
    QueueIter, QueueTryIter, RecvIter, SimpleQueue, TryRecvIter, Waitable, DEFAULT_CAPACITY_BYTES,
};
// Shared memory and synchronisation:
pub use procactor_core::{
    Array, ArrayGuard, AtomicInt, Barrier, BoundedSemaphore, Condition, Event, Lock, LockGuard,
    Pod, RLock, RLockGuard, RawArray, RawValue, SemGuard, Semaphore, Value, ValueGuard,
};
// Pool:
pub use procactor_core::{
    AsyncResult, Imap, Pool, PoolBuilder, TaskError, DROP_WAIT, IMAP_WINDOW_PER_WORKER,
    SUBMIT_WINDOW_BYTES, SUBMIT_WINDOW_CHUNKS, SUBMIT_WINDOW_FDS,
};
// Manager:
pub use procactor_core::{
    Manager, ManagerBuilder, ManagerError, ManagerGuard, Namespace, SharedArray, SharedBarrier,
    SharedCondition, SharedDict, SharedEvent, SharedJoinableQueue, SharedList, SharedLock,
    SharedQueue, SharedRLock, SharedSemaphore, SharedValue,
};
// Actors and supervision:
pub use procactor_core::{
    registered_actors, Actor, ActorError, ActorRef, ActorState, CallError, ChildInfo, ChildSpec,
    Context, EventTotals, MailboxKind, PipeMailbox, PoolRef, ProcessActor, QueueMailbox, Restart,
    Shutdown, Strategy, Supervisor, SupervisorBuilder, SupervisorError, SupervisorEvent,
    SupervisorRef, DEFAULT_EVENT_HISTORY, DROP_SHUTDOWN_LIMIT, DROP_SHUTDOWN_LIMIT_PANICKING,
    STOP_WAIT_FOR_SENDERS,
};
// Errors:
pub use procactor_core::{
    BrokenBarrier, DecodeError, EncodeError, Error, GetError, GetTimeoutError, JoinError,
    JoinTimeoutError, LockError, PutError, PutTimeoutError, RecvError, RecvTimeoutError, Result,
    SendError, SpawnError, TaskDoneError, TryGetError, TryPutError,
};
// The modules, for the rest (builders' helpers, iterators' docs, the codec):
pub use procactor_core::{
    actor, codec, connection, error, manager, observe, pipe, pool, process, queue, runtime, shared,
    stats, supervisor, sync,
};
pub use procactor_macros::{main, process_actor};
/// Queue, JoinableQueue, Pool and supervised workers across hosts on Redis Streams
/// (the cargo feature `redis`, on by default).
#[cfg(feature = "redis")]
pub use procactor_redis as redis;

/// The names most programs need.
pub mod prelude {
    pub use procactor_core::{
        active_children, cpu_count, current_process, init, Array, Barrier, BoundedSemaphore, Bytes,
        Condition, Connection, Event, ExitStatus, JoinableQueue, Lock, Pipe, Pool, Process, Queue,
        RLock, Semaphore, SimpleQueue, StartMethod, TaskError, Value,
    };
    pub use procactor_core::{
        Actor, ActorError, ActorRef, ChildSpec, Context, Restart, Shutdown, Strategy, Supervisor,
    };
    pub use procactor_macros::process_actor;
    #[cfg(feature = "redis")]
    pub use procactor_redis::ConnectRedis;
}

#[doc(hidden)]
pub mod __private {
    pub use procactor_core::actor::{assert_serde_actor, register_actor, SerdeActor};
    pub use procactor_core::{init, Actor, PipeMailbox, ProcessActor, QueueMailbox};
}

/// Makes an integration-test binary (or any binary without a hand-written `main`) able
/// to start procactor children: write `procactor::test_support!();` once at the top
/// level of the test file.
///
/// It registers [`init()`] as an ELF constructor (`.init_array`), so that a child
/// re-executing the test binary runs its target before the test harness starts, and the
/// parent is initialised before any test runs.
#[macro_export]
macro_rules! test_support {
    () => {
        #[used]
        #[link_section = ".init_array"]
        static __PROCACTOR_TEST_SUPPORT: extern "C" fn() = {
            extern "C" fn __procactor_test_support_init() {
                $crate::__private::init();
            }
            __procactor_test_support_init
        };
    };
}
