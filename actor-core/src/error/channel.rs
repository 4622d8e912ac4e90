//! The per-operation errors of connections (`recv`, `recv_timeout`, `send`) and of
//! queues and mailboxes (`get`, `try_get`, `get_timeout`; `put`, `try_put`,
//! `put_timeout`): see the table in the [module docs](super).

use super::{DecodeError, EncodeError, Error};
use std::fmt;

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
