//! What every fused "each step is one fallible receive" iterator keeps (the queue and
//! connection iterators): the error that ended it.

/// The error that ended an iteration (`None` while it runs); once set, every step is
/// `None` (the iterator is fused).
#[derive(Debug)]
pub(crate) struct EndsAtError<E>(Option<E>);

impl<E> EndsAtError<E> {
    pub(crate) fn new() -> Self {
        EndsAtError(None)
    }

    /// One step: `recv()`'s value, or `None` (keeping its error) once it fails.
    pub(crate) fn step<T>(&mut self, recv: impl FnOnce() -> Result<T, E>) -> Option<T> {
        if self.0.is_some() {
            return None;
        }
        match recv() {
            Ok(x) => Some(x),
            Err(e) => {
                self.0 = Some(e);
                None
            }
        }
    }

    /// The error that ended the iteration.
    pub(crate) fn error(&self) -> Option<&E> {
        self.0.as_ref()
    }
}
