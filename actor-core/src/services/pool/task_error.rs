//! [`TaskError`]: why one task has no result (plain and typed).

use crate::ExitStatus;

/// Why one task has no result.
///
/// `E` is the type of a task's own error: `String` for the plain operations (`map`,
/// `apply`…), whose tasks return a value, and the task's `E` for the `try_` operations
/// ([`Pool::try_map`](super::Pool::try_map), [`Pool::try_apply`](super::Pool::try_apply), [`Pool::try_apply_async`](super::Pool::try_apply_async)), whose tasks
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
    /// [`AsyncResult::get_timeout`](super::AsyncResult::get_timeout) or [`Imap::next_timeout`](super::Imap::next_timeout) ran out of time (the task
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
    pub(super) fn typed<E>(self) -> TaskError<E> {
        match self {
            TaskError::Panicked { message } => TaskError::Panicked { message },
            TaskError::WorkerDied(s) => TaskError::WorkerDied(s),
            TaskError::Timeout => TaskError::Timeout,
            TaskError::Failed(m) | TaskError::Pool(m) => TaskError::Pool(m),
        }
    }
}
