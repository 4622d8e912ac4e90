//! Errors: one small enum per area, and [`Error`], which they all convert into.
//!
//! Control-flow outcomes (`Empty`, `Full`, `Timeout`, `Eof`, `Disconnected`, `Closed`,
//! `Broken`) are distinct variants a caller can match. An error that carries the
//! caller's item (a failed `put`) gives it back with `into_inner()` and does not require
//! `T: Debug`. `Display` texts are lowercase without a final period.
//!
//! # One error type per operation
//!
//! As in crossbeam-channel, an operation's error type names only what that operation
//! can return, so a `match` needs no arm for what cannot happen:
//!
//! | operation | error | its own variant |
//! |---|---|---|
//! | `get`, `recv` (blocking) | [`GetError`], [`RecvError`] | — (waits, so never empty) |
//! | `try_get` | [`TryGetError`] | `Empty` |
//! | `get_timeout`, `get_deadline` | [`GetTimeoutError`] | `Timeout` |
//! | `recv_timeout` | [`RecvTimeoutError`] | `Timeout` |
//! | `put`, `send` (blocking) | [`PutError<T>`] | — (waits, so never full) |
//! | `try_put`, `try_send` | [`TryPutError<T>`] | `Full(T)` |
//! | `put_timeout`, `put_deadline`, `send_timeout` | [`PutTimeoutError<T>`] | `Timeout(T)` |
//!
//! The rest of each family is shared (`Disconnected`, `Broken`, `Decode` for gets;
//! `Closed`, `Broken`, `Encode`, `TooLarge` for puts). The types are the same for
//! [`Queue`](crate::Queue), [`SimpleQueue`](crate::SimpleQueue),
//! [`JoinableQueue`](crate::JoinableQueue), an actor's mailbox
//! ([`ActorRef`](crate::ActorRef)) and the Redis queues. They are exhaustive enums (no
//! `#[non_exhaustive]`), like crossbeam's, so that a `match` lists every case; a new
//! case would be a breaking change, made on purpose. The blocking error converts into
//! the other two with `From` (so `?` works from a `get` inside a function returning
//! [`GetTimeoutError`]), and every one converts into [`Error`].
//!
//! # `join_timeout`
//!
//! Everything that can be joined has `join_timeout(timeout) -> Result<T, E>`: `Ok` with
//! what `join` returns (`()` for a queue, an actor or a supervisor; the
//! [`ExitStatus`] for a process) once it finished in time, `Err` when the time ran out
//! ([`JoinTimeoutError`], or a `Timeout` variant of the type's own error when its join
//! can fail otherwise too). Python's `join(timeout)` returns `None` either way and leaves
//! the caller to look again; `std`'s `recv_timeout` and crossbeam's `Err(Timeout)` are
//! the model here, and a `Result` cannot be ignored unnoticed (`#[must_use]`) where a
//! `bool` can.
//!
//! This file holds [`Error`] and the errors of processes, encoding and locks; the
//! per-operation errors of connections and queues are in `channel.rs`.

mod channel;
#[cfg(test)]
mod tests;

pub use channel::{
    GetError, GetTimeoutError, PutError, PutTimeoutError, RecvError, RecvTimeoutError, SendError,
    TryGetError, TryPutError,
};

use crate::status::ExitStatus;
use std::fmt;

/// Any procactor error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Starting a process failed.
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    /// A process ended without a result.
    #[error(transparent)]
    Join(#[from] JoinError),
    /// Receiving from a connection failed.
    #[error(transparent)]
    Recv(#[from] RecvError),
    /// Receiving from a connection with a timeout failed.
    #[error(transparent)]
    RecvTimeout(#[from] RecvTimeoutError),
    /// Sending on a connection failed.
    #[error(transparent)]
    Send(#[from] SendError),
    /// A value could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// Bytes could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A blocking `get` from a queue failed.
    #[error(transparent)]
    Get(#[from] GetError),
    /// A `try_get` from a queue failed.
    #[error(transparent)]
    TryGet(#[from] TryGetError),
    /// A `get_timeout` (or `get_deadline`) from a queue failed.
    #[error(transparent)]
    GetTimeout(#[from] GetTimeoutError),
    /// Putting on a queue failed (any of [`PutError`], [`TryPutError`],
    /// [`PutTimeoutError`]; the item was dropped on conversion).
    #[error("{0}")]
    Put(String),
    /// `task_done` called too often.
    #[error(transparent)]
    TaskDone(#[from] TaskDoneError),
    /// A barrier broke.
    #[error(transparent)]
    BrokenBarrier(#[from] BrokenBarrier),
    /// A lock's previous owner died while holding it (the guard was dropped on conversion).
    #[error("the previous owner of the lock died while holding it")]
    OwnerDied,
    /// A semaphore was released more times than it was acquired.
    #[error("semaphore released too many times")]
    OverRelease,
    /// An index was outside an array.
    #[error("index {index} out of range for length {len}")]
    OutOfRange {
        /// The index asked for.
        index: usize,
        /// The array's length.
        len: usize,
    },
    /// A wait ran out of time.
    #[error("timed out")]
    Timeout,
    /// The calling thread already holds the lock this operation needs: waiting for it
    /// would never end ([`Value::get`](crate::Value::get) inside `v.lock()`).
    #[error("this thread already holds the lock (use its guard): waiting would deadlock")]
    WouldDeadlock,
    /// An argument outside what the operation accepts (e.g. a barrier of 0 parties).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// An operating-system error.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl<G> From<LockError<G>> for Error {
    fn from(_: LockError<G>) -> Self {
        Error::OwnerDied
    }
}

/// Why a process could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnError {
    /// The operating system refused (`fork`, `exec`, descriptors, memory).
    #[error("could not start the process: {0}")]
    Io(#[from] std::io::Error),
    /// The arguments could not be encoded.
    #[error("could not encode the process arguments: {0}")]
    Encode(#[from] EncodeError),
    /// The start method is not available (yet, or in this situation).
    #[error("start method {method} is not available: {why}")]
    Unsupported {
        /// The method asked for.
        method: &'static str,
        /// Why not.
        why: String,
    },
    /// `procactor::init()` was not called at the top of `main`, so a child would run the
    /// parent's `main` instead of its target.
    #[error("procactor::init() must be the first statement of main (or use #[procactor::main]) before starting processes")]
    NotInitialized,
    /// The child did not acknowledge its bootstrap (it died or refused).
    #[error("the child failed during start-up: {0}")]
    Bootstrap(String),
    /// The target cannot run in another process: a closure that captures a
    /// pointer-sized value (other capturing closures are refused at build time).
    #[error("{0}")]
    NotATarget(String),
}

/// Why a process has no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// The target panicked; the child's panic message and location.
    #[error("the process panicked: {message}")]
    Panicked {
        /// The panic message, with `at file:line:col` appended when known.
        message: String,
    },
    /// The process died without sending a result (killed, `exit()` called, crashed).
    #[error("the process ended without a result ({0})")]
    Killed(ExitStatus),
    /// The process is still running (`result()` before `join()` completed).
    #[error("the process has not finished")]
    NotFinished,
    /// The result arrived but could not be decoded, or the result was already taken.
    #[error("the result is unavailable: {0}")]
    Unavailable(String),
}

/// A value could not be encoded; nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("encode error: {0}")]
pub struct EncodeError(pub String);

/// Bytes could not be decoded into the expected type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("decode error (expected {expected}): {message}")]
pub struct DecodeError {
    /// The Rust type that was expected.
    pub expected: &'static str,
    /// What went wrong.
    pub message: String,
}

/// A `join_timeout` (or `join_deadline`) ran out of time before what it waits for
/// finished; for the types whose `join` cannot fail otherwise (queues, actors). See the
/// [module docs](self) for the convention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("timed out waiting for the join")]
pub struct JoinTimeoutError;

/// A wait's "finished in time" as the `join_timeout` result.
pub(crate) fn joined(done: bool) -> Result<(), JoinTimeoutError> {
    if done {
        Ok(())
    } else {
        Err(JoinTimeoutError)
    }
}

impl From<JoinTimeoutError> for Error {
    fn from(_: JoinTimeoutError) -> Self {
        Error::Timeout
    }
}

/// `task_done()` was called more times than items were put.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("task_done() called more times than there were items")]
pub struct TaskDoneError;

/// A barrier was aborted, reset, or a waiter died or timed out while others waited.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the barrier is broken")]
pub struct BrokenBarrier;

/// A lock whose previous holder died while holding it. The lock is acquired (the guard
/// is inside); the protected data may be inconsistent.
pub enum LockError<G> {
    /// The previous owner died; the caller now owns the lock.
    OwnerDied(G),
}

impl<G> LockError<G> {
    /// The guard: the lock is held.
    pub fn into_inner(self) -> G {
        match self {
            LockError::OwnerDied(g) => g,
        }
    }
}

impl<G> fmt::Debug for LockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OwnerDied(..)")
    }
}

impl<G> fmt::Display for LockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the previous owner of the lock died while holding it")
    }
}

impl<G> std::error::Error for LockError<G> {}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
