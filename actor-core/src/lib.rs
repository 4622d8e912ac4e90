//! procactor-core: the runtime behind the `procactor` facade crate.
//!
//! Use the facade: `procactor` re-exports everything here. This crate's modules:
//! [`runtime`] (init, start methods, the child's entry), [`process`], [`codec`] (the wire
//! format, handles travelling as descriptors), [`pipe`], [`queue`], [`shared`], [`sync`],
//! [`actor`] (process actors), [`supervisor`] (supervision trees) and [`error`];
//! [`Bytes`] and [`ExitStatus`] sit at the root.
#![forbid(unsafe_code)]
// Doctests that start processes need an explicit `fn main` that calls `init()` first.
#![allow(clippy::needless_doctest_main)]

// The code is grouped by layer, each directory building only on the ones before it:
// channels → process → shared → actors, services (checked by `layers::tests`). The public
// module paths (`procactor::queue`, `procactor::runtime`, …) stay flat: re-exported here.
pub mod actors;
pub mod channels;
pub mod error;
#[cfg(test)]
mod layers;
pub mod observe;
pub mod process;
pub mod services;
pub mod shared;
pub mod stats;
mod status;

pub use actors::{actor, supervisor};
pub(crate) use channels::{aio, bytes, iter};
pub use channels::{codec, connection, pipe, queue};
pub use process::runtime;
pub(crate) use process::{forkserver, monitor};
pub use services::{manager, pool};
pub use shared::sync;

pub use actor::{
    registered_actors, Actor, ActorError, ActorRef, ActorState, CallError, Context, MailboxKind,
    PipeMailbox, ProcessActor, QueueMailbox, STOP_WAIT_FOR_SENDERS,
};
pub use bytes::Bytes;
pub use error::{
    BrokenBarrier, DecodeError, EncodeError, Error, GetError, GetTimeoutError, JoinError,
    JoinTimeoutError, LockError, PutError, PutTimeoutError, RecvError, RecvTimeoutError, Result,
    SendError, SpawnError, TaskDoneError, TryGetError, TryPutError,
};
pub use manager::{
    Manager, ManagerBuilder, ManagerError, ManagerGuard, Namespace, SharedArray, SharedBarrier,
    SharedCondition, SharedDict, SharedEvent, SharedJoinableQueue, SharedList, SharedLock,
    SharedQueue, SharedRLock, SharedSemaphore, SharedValue,
};
pub use pipe::{wait, wait_async, ConnPair, Connection, Pipe, RecvIter, TryRecvIter, Waitable};
pub use pool::{
    AsyncResult, Imap, Pool, PoolBuilder, TaskError, DROP_WAIT, IMAP_WINDOW_PER_WORKER,
    SUBMIT_WINDOW_BYTES, SUBMIT_WINDOW_CHUNKS, SUBMIT_WINDOW_FDS,
};
pub use process::{
    active_children, Process, ProcessBuilder, Target, PROCESS_DROP_JOIN_LIMIT,
    PROCESS_DROP_KILL_WAIT,
};
pub use queue::{
    JoinableQueue, Queue, QueueBuilder, QueueIter, QueueTryIter, SimpleQueue,
    DEFAULT_CAPACITY_BYTES,
};
pub use runtime::{
    cpu_count, current_process, init, parent_process, set_start_method, start_method, ProcessInfo,
    StartMethod,
};
pub use shared::{Array, ArrayGuard, AtomicInt, RawArray, RawValue, Value, ValueGuard};
pub use status::ExitStatus;
pub use supervisor::{
    ChildInfo, ChildSpec, EventTotals, PoolRef, Restart, Shutdown, Strategy, Supervisor,
    SupervisorBuilder, SupervisorError, SupervisorEvent, SupervisorRef, DEFAULT_EVENT_HISTORY,
    DROP_SHUTDOWN_LIMIT, DROP_SHUTDOWN_LIMIT_PANICKING,
};
pub use sync::{
    Barrier, BoundedSemaphore, Condition, Event, Lock, LockGuard, RLock, RLockGuard, SemGuard,
    Semaphore,
};

/// What a value needs to cross a process boundary: serde both ways, `Send`, `'static`.
/// Every such type implements it automatically.
pub trait Message: serde::Serialize + serde::de::DeserializeOwned + Send + 'static {}
impl<T: serde::Serialize + serde::de::DeserializeOwned + Send + 'static> Message for T {}

/// What a shared-memory element needs: plain old data (`bytemuck::Pod`). Implemented
/// for every `bytemuck::Pod` type.
pub trait Pod: bytemuck::Pod {}
impl<T: bytemuck::Pod> Pod for T {}
