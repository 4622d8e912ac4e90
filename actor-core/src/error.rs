//! Errors: one small enum per area, and [`Error`], which they all convert into.
//!
//! Control-flow outcomes (`Empty`, `Full`, `Timeout`, `Eof`, `Disconnected`, `Closed`,
//! `Broken`) are distinct variants a caller can match. An error that carries the
//! caller's item (a failed `put`) gives it back with `into_inner()` and does not require
//! `T: Debug`. `Display` texts are lowercase without a final period.

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
    /// Sending on a connection failed.
    #[error(transparent)]
    Send(#[from] SendError),
    /// A value could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// Bytes could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// Taking from a queue failed.
    #[error(transparent)]
    Get(#[from] GetError),
    /// Putting on a queue failed (the item was dropped on conversion).
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

impl<T> From<PutError<T>> for Error {
    fn from(e: PutError<T>) -> Self {
        Error::Put(e.to_string())
    }
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

/// Why `recv` on a connection failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecvError {
    /// The other end is closed (dropped, `close()`d or its process died) and nothing is
    /// left to read (Python's `EOFError`).
    #[error("end of file: the other end is closed")]
    Eof,
    /// Nothing arrived in time.
    #[error("timed out")]
    Timeout,
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

/// A failed `put`: the item comes back.
pub enum PutError<T> {
    /// The queue is full (after the timeout, or at once for `try_put`).
    Full(T),
    /// This handle (or the queue) was closed with `close()`.
    Closed(T),
    /// The queue's shared memory is inconsistent (only memory corruption or a hostile
    /// process can do that: a process killed mid-operation is recovered from); every
    /// later operation says so too.
    Broken(T),
    /// The item could not be encoded; nothing was written.
    Encode(T, EncodeError),
    /// The encoded item is larger than the queue's maximum message size
    /// ([`QueueBuilder::max_message_size`](crate::QueueBuilder::max_message_size));
    /// nothing was written, the queue stays usable.
    TooLarge(T),
}

impl<T> PutError<T> {
    /// The item that was not put.
    pub fn into_inner(self) -> T {
        match self {
            PutError::Full(t) | PutError::Closed(t) | PutError::Broken(t) => t,
            PutError::TooLarge(t) => t,
            PutError::Encode(t, _) => t,
        }
    }
    /// The same error with the item transformed by `f` (a wrapper that put an envelope
    /// around the caller's item gives the caller's item back this way).
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> PutError<U> {
        match self {
            PutError::Full(t) => PutError::Full(f(t)),
            PutError::Closed(t) => PutError::Closed(f(t)),
            PutError::Broken(t) => PutError::Broken(f(t)),
            PutError::Encode(t, e) => PutError::Encode(f(t), e),
            PutError::TooLarge(t) => PutError::TooLarge(f(t)),
        }
    }
    /// Whether the queue was full.
    pub fn is_full(&self) -> bool {
        matches!(self, PutError::Full(_))
    }
    /// Whether the queue was closed.
    pub fn is_closed(&self) -> bool {
        matches!(self, PutError::Closed(_))
    }
    /// Whether the queue is broken.
    pub fn is_broken(&self) -> bool {
        matches!(self, PutError::Broken(_))
    }
    /// Whether the item was larger than the queue's maximum message size.
    pub fn is_too_large(&self) -> bool {
        matches!(self, PutError::TooLarge(_))
    }
}

impl<T> fmt::Debug for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutError::Full(_) => f.write_str("Full(..)"),
            PutError::Closed(_) => f.write_str("Closed(..)"),
            PutError::Broken(_) => f.write_str("Broken(..)"),
            PutError::Encode(_, e) => write!(f, "Encode(.., {e:?})"),
            PutError::TooLarge(_) => f.write_str("TooLarge(..)"),
        }
    }
}

impl<T> fmt::Display for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutError::Full(_) => f.write_str("queue is full"),
            PutError::Closed(_) => f.write_str("queue is closed"),
            PutError::Broken(_) => f.write_str("queue is broken: its shared state is inconsistent"),
            PutError::Encode(_, e) => write!(f, "{e}"),
            PutError::TooLarge(_) => {
                f.write_str("item too large: its encoding exceeds the queue's maximum message size")
            }
        }
    }
}

impl<T> std::error::Error for PutError<T> {}

/// A failed `get`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GetError {
    /// Nothing arrived in time (at once for `try_get`).
    #[error("queue is empty")]
    Empty,
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

impl GetError {
    /// Whether nothing arrived in time (`try_get` on an empty queue, a timeout).
    pub fn is_empty(&self) -> bool {
        matches!(self, GetError::Empty)
    }
    /// Whether the queue is drained and no producer is left (nothing will ever come).
    pub fn is_disconnected(&self) -> bool {
        matches!(self, GetError::Disconnected)
    }
    /// Whether the queue is broken.
    pub fn is_broken(&self) -> bool {
        matches!(self, GetError::Broken)
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

    fn all_puts() -> [PutError<NoDebug>; 4] {
        [
            PutError::Full(NoDebug),
            PutError::Closed(NoDebug),
            PutError::Broken(NoDebug),
            PutError::Encode(NoDebug, EncodeError("bad".into())),
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
            PutError::Full(1),
            PutError::Closed(2),
            PutError::Broken(3),
            PutError::Encode(4, EncodeError(String::new())),
        ]
        .into_iter()
        .enumerate()
        {
            assert_eq!(e.into_inner(), i + 1);
        }
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
        assert_eq!(format!("{:#?}", PutError::Full(NoDebug)), "Full(..)");
        fn refuse() -> std::result::Result<(), PutError<NoDebug>> {
            Err(PutError::Full(NoDebug))
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
        is_error(&PutError::Full(NoDebug));
        is_error(&LockError::OwnerDied(NoDebug));
        let b: Box<dyn std::error::Error + Send + Sync> = Box::new(PutError::Broken(NoDebug));
        assert!(b.to_string().starts_with("queue is broken"));

        let e = Error::from(PutError::Full(NoDebug));
        assert!(matches!(&e, Error::Put(m) if m == "queue is full"), "{e:?}");
        assert_eq!(e.to_string(), "queue is full");
        let e = Error::from(LockError::OwnerDied(NoDebug));
        assert!(matches!(e, Error::OwnerDied), "{e:?}");
    }

    #[test]
    fn get_error_predicates_name_exactly_their_variant() {
        let got: Vec<(bool, bool, bool)> = [
            GetError::Empty,
            GetError::Disconnected,
            GetError::Broken,
            GetError::Decode(DecodeError {
                expected: "u8",
                message: "x".into(),
            }),
        ]
        .iter()
        .map(|e| (e.is_empty(), e.is_disconnected(), e.is_broken()))
        .collect();
        assert_eq!(got, EACH_ITS_OWN);
    }

    #[test]
    fn get_error_debug_names_the_variant() {
        assert_eq!(format!("{:?}", GetError::Empty), "Empty");
        assert_eq!(format!("{:?}", GetError::Disconnected), "Disconnected");
        assert_eq!(format!("{:?}", GetError::Broken), "Broken");
        let d = GetError::Decode(DecodeError {
            expected: "u64",
            message: "wrong".into(),
        });
        assert!(format!("{d:?}").starts_with("Decode("), "{d:?}");
        assert_eq!(d.to_string(), "decode error (expected u64): wrong");
        assert_eq!(GetError::Empty.to_string(), "queue is empty");
        assert_eq!(
            GetError::Disconnected.to_string(),
            "queue is empty and every producer is gone"
        );
        assert_ne!(GetError::Empty, GetError::Disconnected);
        assert_eq!(format!("{TaskDoneError:?}"), "TaskDoneError");
        // through the crate-wide error, the variant is kept
        assert!(matches!(
            Error::from(GetError::Empty),
            Error::Get(GetError::Empty)
        ));
        assert_eq!(Error::from(GetError::Empty).to_string(), "queue is empty");
    }

    #[test]
    fn display_texts_are_lowercase_without_a_final_period() {
        let texts = [
            PutError::Full(NoDebug).to_string(),
            PutError::Closed(NoDebug).to_string(),
            PutError::Broken(NoDebug).to_string(),
            PutError::Encode(NoDebug, EncodeError("x".into())).to_string(),
            LockError::OwnerDied(NoDebug).to_string(),
            GetError::Empty.to_string(),
            GetError::Disconnected.to_string(),
            GetError::Broken.to_string(),
            TaskDoneError.to_string(),
            BrokenBarrier.to_string(),
            RecvError::Eof.to_string(),
            RecvError::Timeout.to_string(),
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
