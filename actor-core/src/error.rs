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

/// Why a blocking `recv` (or `recv_bytes`, `recv_bytes_into`) on a connection failed.
/// It waits, so it never times out; see [`RecvTimeoutError`].
#[derive(Debug, thiserror::Error)]
pub enum RecvError {
    /// The other end is closed (dropped, `close()`d or its process died) and nothing is
    /// left to read (Python's `EOFError`).
    #[error("end of file: the other end is closed")]
    Eof,
    /// The frame is longer than `maxlength`; the connection is unusable afterwards.
    #[error("message longer than maxlength")]
    TooLong,
    /// The caller's buffer is too small; the frame is kept and can be read again.
    #[error("buffer too short: the message needs {needed} bytes")]
    BufferTooShort {
        /// Bytes needed.
        needed: usize,
    },
    /// The frame is not a valid encoding of the expected type (the frame is dropped; the
    /// connection stays usable).
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The byte stream is not procactor frames, or ended inside one; the connection is
    /// unusable.
    #[error("connection broken: {0}")]
    Broken(String),
    /// This end was closed with `close()`.
    #[error("connection closed")]
    Closed,
    /// An operating-system error.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Why `recv_timeout` on a connection failed: [`RecvError`]'s cases and `Timeout`.
#[derive(Debug, thiserror::Error)]
pub enum RecvTimeoutError {
    /// Nothing complete arrived in time (a partly received message stays buffered).
    #[error("timed out")]
    Timeout,
    /// As [`RecvError::Eof`].
    #[error("end of file: the other end is closed")]
    Eof,
    /// As [`RecvError::TooLong`].
    #[error("message longer than maxlength")]
    TooLong,
    /// As [`RecvError::BufferTooShort`].
    #[error("buffer too short: the message needs {needed} bytes")]
    BufferTooShort {
        /// Bytes needed.
        needed: usize,
    },
    /// As [`RecvError::Decode`].
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// As [`RecvError::Broken`].
    #[error("connection broken: {0}")]
    Broken(String),
    /// As [`RecvError::Closed`].
    #[error("connection closed")]
    Closed,
    /// As [`RecvError::Io`].
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl RecvTimeoutError {
    /// Whether nothing came in time.
    pub fn is_timeout(&self) -> bool {
        matches!(self, RecvTimeoutError::Timeout)
    }
    /// The internal receive's outcome as a blocking receive's error. A receive without
    /// a deadline does not time out; a descriptor a user made non-blocking could make
    /// it "would block", which is said as that i/o error.
    pub(crate) fn into_blocking(self) -> RecvError {
        match self {
            RecvTimeoutError::Timeout => {
                RecvError::Io(std::io::Error::from(std::io::ErrorKind::WouldBlock))
            }
            RecvTimeoutError::Eof => RecvError::Eof,
            RecvTimeoutError::TooLong => RecvError::TooLong,
            RecvTimeoutError::BufferTooShort { needed } => RecvError::BufferTooShort { needed },
            RecvTimeoutError::Decode(e) => RecvError::Decode(e),
            RecvTimeoutError::Broken(w) => RecvError::Broken(w),
            RecvTimeoutError::Closed => RecvError::Closed,
            RecvTimeoutError::Io(e) => RecvError::Io(e),
        }
    }
}

impl From<RecvError> for RecvTimeoutError {
    fn from(e: RecvError) -> Self {
        match e {
            RecvError::Eof => RecvTimeoutError::Eof,
            RecvError::TooLong => RecvTimeoutError::TooLong,
            RecvError::BufferTooShort { needed } => RecvTimeoutError::BufferTooShort { needed },
            RecvError::Decode(e) => RecvTimeoutError::Decode(e),
            RecvError::Broken(w) => RecvTimeoutError::Broken(w),
            RecvError::Closed => RecvTimeoutError::Closed,
            RecvError::Io(e) => RecvTimeoutError::Io(e),
        }
    }
}

/// Why `send` on a connection failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// This end was closed with `close()`.
    #[error("connection closed")]
    Closed,
    /// The other end is gone (Python's `BrokenPipeError`).
    #[error("the other end is closed")]
    Disconnected,
    /// The value could not be encoded; nothing was written, the connection is usable.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// An operating-system error.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

// ------------------------------------------------------------------ put errors

/// The failures every put shares (defined once, for the three put error types).
macro_rules! put_error {
    (
        $(#[$m:meta])*
        $name:ident $(, $(#[$xm:meta])* $extra:ident => $text:literal, $pred:ident)?
    ) => {
        $(#[$m])*
        pub enum $name<T> {
            $(
                $(#[$xm])*
                $extra(T),
            )?
            /// This handle (or the queue, or the actor's mailbox) was closed with
            /// `close()` (for an actor: it was asked to stop or has ended for good).
            Closed(T),
            /// The queue's shared memory is inconsistent (only memory corruption or a
            /// hostile process can do that: a process killed mid-operation is recovered
            /// from); every later operation says so too.
            Broken(T),
            /// The item could not be encoded; nothing was written.
            Encode(T, EncodeError),
            /// The encoded item is larger than the queue's maximum message size
            /// ([`QueueBuilder::max_message_size`](crate::QueueBuilder::max_message_size));
            /// nothing was written, the queue stays usable.
            TooLarge(T),
        }

        impl<T> $name<T> {
            /// The item that was not put.
            pub fn into_inner(self) -> T {
                match self {
                    $($name::$extra(t) |)? $name::Closed(t) | $name::Broken(t) | $name::TooLarge(t) => t,
                    $name::Encode(t, _) => t,
                }
            }
            /// The same error with the item transformed by `f` (a wrapper that put an
            /// envelope around the caller's item gives the caller's item back this way).
            pub fn map<U>(self, f: impl FnOnce(T) -> U) -> $name<U> {
                match self {
                    $($name::$extra(t) => $name::$extra(f(t)),)?
                    $name::Closed(t) => $name::Closed(f(t)),
                    $name::Broken(t) => $name::Broken(f(t)),
                    $name::Encode(t, e) => $name::Encode(f(t), e),
                    $name::TooLarge(t) => $name::TooLarge(f(t)),
                }
            }
            /// `map` with an `f` that may find no item to give back: the same error
            /// with `()` then.
            pub(crate) fn filter_map<U>(
                self,
                f: impl FnOnce(T) -> Option<U>,
            ) -> Result<$name<U>, $name<()>> {
                match self {
                    $($name::$extra(t) => f(t).map($name::$extra).ok_or($name::$extra(())),)?
                    $name::Closed(t) => f(t).map($name::Closed).ok_or($name::Closed(())),
                    $name::Broken(t) => f(t).map($name::Broken).ok_or($name::Broken(())),
                    $name::TooLarge(t) => f(t).map($name::TooLarge).ok_or($name::TooLarge(())),
                    $name::Encode(t, e) => match f(t) {
                        Some(u) => Ok($name::Encode(u, e)),
                        None => Err($name::Encode((), e)),
                    },
                }
            }
            $(
                #[doc = concat!("Whether this is [`", stringify!($extra), "`](", stringify!($name), "::", stringify!($extra), ").")]
                pub fn $pred(&self) -> bool {
                    matches!(self, $name::$extra(_))
                }
            )?
            /// Whether the handle, queue or mailbox was closed.
            pub fn is_closed(&self) -> bool {
                matches!(self, $name::Closed(_))
            }
            /// Whether the queue is broken.
            pub fn is_broken(&self) -> bool {
                matches!(self, $name::Broken(_))
            }
            /// Whether the item was larger than the queue's maximum message size.
            pub fn is_too_large(&self) -> bool {
                matches!(self, $name::TooLarge(_))
            }
        }

        impl<T> fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $($name::$extra(_) => f.write_str(concat!(stringify!($extra), "(..)")),)?
                    $name::Closed(_) => f.write_str("Closed(..)"),
                    $name::Broken(_) => f.write_str("Broken(..)"),
                    $name::Encode(_, e) => write!(f, "Encode(.., {e:?})"),
                    $name::TooLarge(_) => f.write_str("TooLarge(..)"),
                }
            }
        }

        impl<T> fmt::Display for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $($name::$extra(_) => f.write_str($text),)?
                    $name::Closed(_) => f.write_str("queue is closed"),
                    $name::Broken(_) => {
                        f.write_str("queue is broken: its shared state is inconsistent")
                    }
                    $name::Encode(_, e) => write!(f, "{e}"),
                    $name::TooLarge(_) => f.write_str(
                        "item too large: its encoding exceeds the queue's maximum message size",
                    ),
                }
            }
        }

        impl<T> std::error::Error for $name<T> {}

        impl<T> From<$name<T>> for Error {
            fn from(e: $name<T>) -> Self {
                Error::Put(e.to_string())
            }
        }
    };
}

put_error!(
    /// A failed blocking `put` (`Queue::put`, `ActorRef::send`…): the item comes back.
    ///
    /// It waits for room, so it is never "full"; see [`TryPutError`] and
    /// [`PutTimeoutError`] for the operations that give up.
    PutError
);

put_error!(
    /// A failed `try_put` / `try_send`: the item comes back.
    TryPutError,
    /// The queue (or mailbox) is full now.
    Full => "queue is full", is_full
);

put_error!(
    /// A failed `put_timeout` / `put_deadline` / `send_timeout`: the item comes back.
    PutTimeoutError,
    /// No room came before the timeout (or the deadline).
    Timeout => "timed out: the queue stayed full", is_timeout
);

impl<T> From<PutError<T>> for TryPutError<T> {
    fn from(e: PutError<T>) -> Self {
        match e {
            PutError::Closed(t) => TryPutError::Closed(t),
            PutError::Broken(t) => TryPutError::Broken(t),
            PutError::Encode(t, e) => TryPutError::Encode(t, e),
            PutError::TooLarge(t) => TryPutError::TooLarge(t),
        }
    }
}

impl<T> From<PutError<T>> for PutTimeoutError<T> {
    fn from(e: PutError<T>) -> Self {
        match e {
            PutError::Closed(t) => PutTimeoutError::Closed(t),
            PutError::Broken(t) => PutTimeoutError::Broken(t),
            PutError::Encode(t, e) => PutTimeoutError::Encode(t, e),
            PutError::TooLarge(t) => PutTimeoutError::TooLarge(t),
        }
    }
}

impl<T> TryPutError<T> {
    /// The internal put's outcome (`Full`: the deadline passed) as a timed put's error.
    pub(crate) fn into_timeout(self) -> PutTimeoutError<T> {
        match self {
            TryPutError::Full(t) => PutTimeoutError::Timeout(t),
            TryPutError::Closed(t) => PutTimeoutError::Closed(t),
            TryPutError::Broken(t) => PutTimeoutError::Broken(t),
            TryPutError::Encode(t, e) => PutTimeoutError::Encode(t, e),
            TryPutError::TooLarge(t) => PutTimeoutError::TooLarge(t),
        }
    }
    /// The internal put's outcome as a blocking put's error; `Err(item)` for `Full`,
    /// which a put without a deadline does not report (the caller tries again).
    pub(crate) fn into_blocking(self) -> Result<PutError<T>, T> {
        match self {
            TryPutError::Full(t) => Err(t),
            TryPutError::Closed(t) => Ok(PutError::Closed(t)),
            TryPutError::Broken(t) => Ok(PutError::Broken(t)),
            TryPutError::Encode(t, e) => Ok(PutError::Encode(t, e)),
            TryPutError::TooLarge(t) => Ok(PutError::TooLarge(t)),
        }
    }
}

// ------------------------------------------------------------------ get errors

/// A failed blocking `get` (`Queue::get`, `SimpleQueue::get`…). It waits for an item, so
/// it is never "empty"; see [`TryGetError`] and [`GetTimeoutError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GetError {
    /// Every producer handle is closed or dropped and the queue is drained.
    #[error("queue is empty and every producer is gone")]
    Disconnected,
    /// The queue's shared memory is inconsistent (only memory corruption or a hostile
    /// process can do that: a process killed mid-operation is recovered from); every
    /// later operation says so too.
    #[error("queue is broken: its shared state is inconsistent")]
    Broken,
    /// The message is not a valid encoding of the expected type (it is dropped).
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// A failed `try_get` (Python's `get_nowait`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TryGetError {
    /// No item is there now (Python's `queue.Empty`).
    #[error("queue is empty")]
    Empty,
    /// As [`GetError::Disconnected`].
    #[error("queue is empty and every producer is gone")]
    Disconnected,
    /// As [`GetError::Broken`].
    #[error("queue is broken: its shared state is inconsistent")]
    Broken,
    /// As [`GetError::Decode`].
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// A failed `get_timeout` / `get_deadline`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GetTimeoutError {
    /// Nothing came before the timeout (or the deadline) (Python's `queue.Empty`).
    #[error("timed out: the queue stayed empty")]
    Timeout,
    /// As [`GetError::Disconnected`].
    #[error("queue is empty and every producer is gone")]
    Disconnected,
    /// As [`GetError::Broken`].
    #[error("queue is broken: its shared state is inconsistent")]
    Broken,
    /// As [`GetError::Decode`].
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

impl GetError {
    /// Whether the queue is drained and no producer is left (nothing will ever come).
    pub fn is_disconnected(&self) -> bool {
        matches!(self, GetError::Disconnected)
    }
    /// Whether the queue is broken.
    pub fn is_broken(&self) -> bool {
        matches!(self, GetError::Broken)
    }
}

impl TryGetError {
    /// Whether no item was there.
    pub fn is_empty(&self) -> bool {
        matches!(self, TryGetError::Empty)
    }
    /// Whether the queue is drained and no producer is left (nothing will ever come).
    pub fn is_disconnected(&self) -> bool {
        matches!(self, TryGetError::Disconnected)
    }
    /// Whether the queue is broken.
    pub fn is_broken(&self) -> bool {
        matches!(self, TryGetError::Broken)
    }
    /// The internal get's outcome (`Empty`: the deadline passed) as a timed get's error.
    pub(crate) fn into_timeout(self) -> GetTimeoutError {
        match self {
            TryGetError::Empty => GetTimeoutError::Timeout,
            TryGetError::Disconnected => GetTimeoutError::Disconnected,
            TryGetError::Broken => GetTimeoutError::Broken,
            TryGetError::Decode(e) => GetTimeoutError::Decode(e),
        }
    }
    /// The internal get's outcome as a blocking get's error; `None` for `Empty`, which a
    /// get without a deadline does not report (the caller tries again).
    pub(crate) fn into_blocking(self) -> Option<GetError> {
        match self {
            TryGetError::Empty => None,
            TryGetError::Disconnected => Some(GetError::Disconnected),
            TryGetError::Broken => Some(GetError::Broken),
            TryGetError::Decode(e) => Some(GetError::Decode(e)),
        }
    }
}

impl GetTimeoutError {
    /// Whether nothing came in time.
    pub fn is_timeout(&self) -> bool {
        matches!(self, GetTimeoutError::Timeout)
    }
    /// Whether the queue is drained and no producer is left (nothing will ever come).
    pub fn is_disconnected(&self) -> bool {
        matches!(self, GetTimeoutError::Disconnected)
    }
    /// Whether the queue is broken.
    pub fn is_broken(&self) -> bool {
        matches!(self, GetTimeoutError::Broken)
    }
}

impl From<GetError> for TryGetError {
    fn from(e: GetError) -> Self {
        match e {
            GetError::Disconnected => TryGetError::Disconnected,
            GetError::Broken => TryGetError::Broken,
            GetError::Decode(d) => TryGetError::Decode(d),
        }
    }
}

impl From<GetError> for GetTimeoutError {
    fn from(e: GetError) -> Self {
        match e {
            GetError::Disconnected => GetTimeoutError::Disconnected,
            GetError::Broken => GetTimeoutError::Broken,
            GetError::Decode(d) => GetTimeoutError::Decode(d),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Deliberately without `Debug`.
    struct NoDebug;

    fn all_puts() -> [TryPutError<NoDebug>; 4] {
        [
            TryPutError::Full(NoDebug),
            TryPutError::Closed(NoDebug),
            TryPutError::Broken(NoDebug),
            TryPutError::Encode(NoDebug, EncodeError("bad".into())),
        ]
    }

    /// What three predicates give on three variants and a fourth one: each is true for
    /// its own variant only.
    const EACH_ITS_OWN: [(bool, bool, bool); 4] = [
        (true, false, false),
        (false, true, false),
        (false, false, true),
        (false, false, false),
    ];

    #[test]
    fn put_error_predicates_name_exactly_their_variant() {
        let got: Vec<(bool, bool, bool)> = all_puts()
            .iter()
            .map(|e| (e.is_full(), e.is_closed(), e.is_broken()))
            .collect();
        assert_eq!(got, EACH_ITS_OWN);
        for (i, e) in [
            TryPutError::Full(1),
            TryPutError::Closed(2),
            TryPutError::Broken(3),
            TryPutError::Encode(4, EncodeError(String::new())),
            TryPutError::TooLarge(5),
        ]
        .into_iter()
        .enumerate()
        {
            assert_eq!(e.into_inner(), i + 1);
        }
        let t = PutTimeoutError::Timeout(7);
        assert!(t.is_timeout() && !t.is_closed() && !t.is_broken() && !t.is_too_large());
        assert_eq!(t.map(|x| x * 2).into_inner(), 14);
        let b = PutError::TooLarge(8);
        assert!(b.is_too_large() && !b.is_closed() && !b.is_broken());
        assert_eq!(b.into_inner(), 8);
    }

    #[test]
    fn a_blocking_put_error_converts_into_the_other_two_keeping_the_item() {
        let t: TryPutError<u8> = PutError::Closed(1).into();
        assert!(matches!(t, TryPutError::Closed(1)));
        let t: PutTimeoutError<u8> = PutError::Encode(2, EncodeError("x".into())).into();
        assert!(matches!(t, PutTimeoutError::Encode(2, _)));
        // (the crate's own mapping: `Full` is the deadline passing)
        assert!(matches!(
            TryPutError::Full(3).into_timeout(),
            PutTimeoutError::Timeout(3)
        ));
        assert!(matches!(TryPutError::Full(4).into_blocking(), Err(4)));
        assert!(matches!(
            TryPutError::Broken(5).into_blocking(),
            Ok(PutError::Broken(5))
        ));
        // `?` from a blocking put in a function returning a try-put error
        fn f() -> std::result::Result<(), TryPutError<u8>> {
            Err(PutError::Closed(6))?
        }
        assert!(matches!(f(), Err(TryPutError::Closed(6))));
    }

    #[test]
    fn put_and_lock_errors_format_without_t_debug() {
        let debug: Vec<String> = all_puts().iter().map(|e| format!("{e:?}")).collect();
        assert_eq!(
            debug,
            [
                "Full(..)",
                "Closed(..)",
                "Broken(..)",
                r#"Encode(.., EncodeError("bad"))"#,
            ]
        );
        let display: Vec<String> = all_puts().iter().map(|e| e.to_string()).collect();
        assert_eq!(
            display,
            [
                "queue is full",
                "queue is closed",
                "queue is broken: its shared state is inconsistent",
                "encode error: bad",
            ]
        );
        // `{:#?}` and `unwrap_err` (which needs `T: Debug` for `Ok(T)`) work too
        assert_eq!(format!("{:#?}", TryPutError::Full(NoDebug)), "Full(..)");
        assert_eq!(
            format!("{:?}", PutTimeoutError::Timeout(NoDebug)),
            "Timeout(..)"
        );
        assert_eq!(
            PutTimeoutError::Timeout(NoDebug).to_string(),
            "timed out: the queue stayed full"
        );
        fn refuse() -> std::result::Result<(), TryPutError<NoDebug>> {
            Err(TryPutError::Full(NoDebug))
        }
        assert!(refuse().unwrap_err().is_full());

        let l = LockError::OwnerDied(NoDebug);
        assert_eq!(format!("{l:?}"), "OwnerDied(..)");
        assert_eq!(
            l.to_string(),
            "the previous owner of the lock died while holding it"
        );
        let _guard: NoDebug = l.into_inner();
    }

    #[test]
    fn put_and_lock_errors_are_std_errors_and_convert_without_t_debug() {
        fn is_error<E: std::error::Error + Send + Sync + 'static>(_: &E) {}
        is_error(&PutError::Closed(NoDebug));
        is_error(&TryPutError::Full(NoDebug));
        is_error(&PutTimeoutError::Timeout(NoDebug));
        is_error(&LockError::OwnerDied(NoDebug));
        let b: Box<dyn std::error::Error + Send + Sync> = Box::new(PutError::Broken(NoDebug));
        assert!(b.to_string().starts_with("queue is broken"));

        let e = Error::from(TryPutError::Full(NoDebug));
        assert!(matches!(&e, Error::Put(m) if m == "queue is full"), "{e:?}");
        assert_eq!(e.to_string(), "queue is full");
        let e = Error::from(LockError::OwnerDied(NoDebug));
        assert!(matches!(e, Error::OwnerDied), "{e:?}");
    }

    #[test]
    fn get_error_predicates_name_exactly_their_variant() {
        let decode = || DecodeError {
            expected: "u8",
            message: "x".into(),
        };
        let got: Vec<(bool, bool, bool)> = [
            TryGetError::Empty,
            TryGetError::Disconnected,
            TryGetError::Broken,
            TryGetError::Decode(decode()),
        ]
        .iter()
        .map(|e| (e.is_empty(), e.is_disconnected(), e.is_broken()))
        .collect();
        assert_eq!(got, EACH_ITS_OWN);
        let got: Vec<(bool, bool, bool)> = [
            GetTimeoutError::Timeout,
            GetTimeoutError::Disconnected,
            GetTimeoutError::Broken,
            GetTimeoutError::Decode(decode()),
        ]
        .iter()
        .map(|e| (e.is_timeout(), e.is_disconnected(), e.is_broken()))
        .collect();
        assert_eq!(got, EACH_ITS_OWN);
        let got: Vec<(bool, bool)> = [
            GetError::Disconnected,
            GetError::Broken,
            GetError::Decode(decode()),
        ]
        .iter()
        .map(|e| (e.is_disconnected(), e.is_broken()))
        .collect();
        assert_eq!(got, [(true, false), (false, true), (false, false)]);
    }

    #[test]
    fn a_blocking_get_error_converts_into_the_other_two() {
        assert_eq!(
            TryGetError::from(GetError::Disconnected),
            TryGetError::Disconnected
        );
        assert_eq!(
            GetTimeoutError::from(GetError::Broken),
            GetTimeoutError::Broken
        );
        assert_eq!(TryGetError::Empty.into_timeout(), GetTimeoutError::Timeout);
        assert_eq!(TryGetError::Empty.into_blocking(), None);
        assert_eq!(
            TryGetError::Disconnected.into_blocking(),
            Some(GetError::Disconnected)
        );
        fn f() -> std::result::Result<u8, GetTimeoutError> {
            Err(GetError::Disconnected)?
        }
        assert_eq!(f(), Err(GetTimeoutError::Disconnected));
        // and every one into the crate-wide error, keeping the variant
        assert!(matches!(
            Error::from(GetTimeoutError::Timeout),
            Error::GetTimeout(GetTimeoutError::Timeout)
        ));
        assert!(matches!(
            Error::from(GetError::Broken),
            Error::Get(GetError::Broken)
        ));
    }

    #[test]
    fn get_error_debug_names_the_variant() {
        assert_eq!(format!("{:?}", TryGetError::Empty), "Empty");
        assert_eq!(format!("{:?}", GetTimeoutError::Timeout), "Timeout");
        assert_eq!(format!("{:?}", GetError::Disconnected), "Disconnected");
        assert_eq!(format!("{:?}", GetError::Broken), "Broken");
        let d = GetError::Decode(DecodeError {
            expected: "u64",
            message: "wrong".into(),
        });
        assert!(format!("{d:?}").starts_with("Decode("), "{d:?}");
        assert_eq!(d.to_string(), "decode error (expected u64): wrong");
        assert_eq!(TryGetError::Empty.to_string(), "queue is empty");
        assert_eq!(
            GetTimeoutError::Timeout.to_string(),
            "timed out: the queue stayed empty"
        );
        assert_eq!(
            GetError::Disconnected.to_string(),
            "queue is empty and every producer is gone"
        );
        assert_ne!(TryGetError::Empty, TryGetError::Disconnected);
        assert_eq!(format!("{TaskDoneError:?}"), "TaskDoneError");
        // through the crate-wide error, the variant is kept
        assert!(matches!(
            Error::from(TryGetError::Empty),
            Error::TryGet(TryGetError::Empty)
        ));
        assert_eq!(
            Error::from(TryGetError::Empty).to_string(),
            "queue is empty"
        );
    }

    #[test]
    fn a_blocking_recv_error_converts_into_the_timed_one_and_back() {
        let t = RecvTimeoutError::from(RecvError::BufferTooShort { needed: 4 });
        assert!(matches!(t, RecvTimeoutError::BufferTooShort { needed: 4 }));
        assert!(!t.is_timeout() && RecvTimeoutError::Timeout.is_timeout());
        assert!(matches!(
            RecvTimeoutError::Eof.into_blocking(),
            RecvError::Eof
        ));
        // a blocking receive never times out: the internal `Timeout` (only a descriptor
        // made non-blocking can give it) is said as the i/o error it is
        match RecvTimeoutError::Timeout.into_blocking() {
            RecvError::Io(e) => assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock),
            other => panic!("{other:?}"),
        }
        fn f() -> std::result::Result<u8, RecvTimeoutError> {
            Err(RecvError::Closed)?
        }
        assert!(matches!(f(), Err(RecvTimeoutError::Closed)));
        assert!(matches!(
            Error::from(RecvTimeoutError::Timeout),
            Error::RecvTimeout(RecvTimeoutError::Timeout)
        ));
        assert!(matches!(Error::from(JoinTimeoutError), Error::Timeout));
        assert_eq!(joined(true), Ok(()));
        assert_eq!(joined(false), Err(JoinTimeoutError));
    }

    #[test]
    fn display_texts_are_lowercase_without_a_final_period() {
        let texts = [
            TryPutError::Full(NoDebug).to_string(),
            PutTimeoutError::Timeout(NoDebug).to_string(),
            PutError::Closed(NoDebug).to_string(),
            PutError::Broken(NoDebug).to_string(),
            PutError::TooLarge(NoDebug).to_string(),
            PutError::Encode(NoDebug, EncodeError("x".into())).to_string(),
            LockError::OwnerDied(NoDebug).to_string(),
            TryGetError::Empty.to_string(),
            GetTimeoutError::Timeout.to_string(),
            GetError::Disconnected.to_string(),
            GetError::Broken.to_string(),
            TaskDoneError.to_string(),
            JoinTimeoutError.to_string(),
            BrokenBarrier.to_string(),
            RecvError::Eof.to_string(),
            RecvTimeoutError::Timeout.to_string(),
            RecvError::TooLong.to_string(),
            RecvError::BufferTooShort { needed: 3 }.to_string(),
            RecvError::Broken("x".into()).to_string(),
            RecvError::Closed.to_string(),
            SendError::Closed.to_string(),
            SendError::Disconnected.to_string(),
            JoinError::NotFinished.to_string(),
            JoinError::Unavailable("x".into()).to_string(),
            SpawnError::NotInitialized.to_string(),
            Error::OwnerDied.to_string(),
            Error::OverRelease.to_string(),
            Error::Timeout.to_string(),
            Error::OutOfRange { index: 3, len: 2 }.to_string(),
        ];
        for t in texts {
            let first = t.chars().next().expect("empty Display text");
            assert!(!first.is_uppercase(), "{t:?} starts with a capital");
            assert!(!t.ends_with('.'), "{t:?} ends with a period");
        }
    }
}
