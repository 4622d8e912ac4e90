//! [`Array`]: `len` elements of `T` in shared memory under one lock, and its guard.

use super::handle::{either, handle_serde, lock_forever, lock_with, TAG_ARRAY};
use crate::error::{Error, LockError};
use crate::Pod;
use procactor_transports::deadline::Deadline;
use procactor_transports::pod::{PodGuard, PodSlice};
use procactor_transports::robust::Acquired;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

/// `len` elements of `T` in shared memory with one lock for the whole array (Python's
/// `Array(typecode, seq)`).
///
/// Indexing methods never panic: an index out of range gives `None` or
/// [`Error::OutOfRange`].
///
/// # Examples
///
/// ```
/// use procactor_core::{Array, Error};
///
/// let a = Array::from_slice(&[0i32, 1, 2, 3]).unwrap();
/// a.lock().unwrap()[3] *= 10;
/// assert_eq!(a.get(3), Some(30));
/// assert_eq!(a.get(4), None);
/// assert!(matches!(a.set(9, 1), Err(Error::OutOfRange { index: 9, len: 4 })));
/// assert_eq!(a.to_vec(), [0, 1, 2, 30]);
/// assert_eq!(Array::<f64>::zeroed(1024).unwrap().len(), 1024);
/// ```
pub struct Array<T> {
    slice: Arc<PodSlice<T>>,
}

handle_serde!(Array, PodSlice, TAG_ARRAY, None);

/// Exclusive access to an [`Array`]'s elements; the lock is released on drop.
pub struct ArrayGuard<'a, T: Pod>(PodGuard<'a, T>);

impl<T: Pod> Deref for ArrayGuard<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.0
    }
}

impl<T: Pod> DerefMut for ArrayGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.0
    }
}

impl<T: Pod> std::fmt::Debug for ArrayGuard<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArrayGuard")
            .field("len", &self.0.len())
            .finish_non_exhaustive()
    }
}

impl<T: Pod> Array<T> {
    /// A new shared array holding a copy of `values`.
    ///
    /// # Errors
    ///
    /// The size overflows or the kernel refused the memory ([`Error::Io`]).
    pub fn from_slice(values: &[T]) -> Result<Self, Error> {
        Ok(Self {
            slice: Arc::new(PodSlice::from_slice("array", TAG_ARRAY, values)?),
        })
    }

    /// A new shared array of `len` zeroed elements.
    ///
    /// # Errors
    ///
    /// As [`from_slice`](Array::from_slice).
    pub fn zeroed(len: usize) -> Result<Self, Error> {
        Ok(Self {
            slice: Arc::new(PodSlice::zeroed("array", TAG_ARRAY, len)?),
        })
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.slice.len()
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.slice.is_empty()
    }

    /// A copy of element `i` (read under the lock); `None` when `i >= len()`.
    pub fn get(&self, i: usize) -> Option<T> {
        either(self.lock()).get(i).copied()
    }

    /// Sets element `i` (under the lock).
    ///
    /// # Errors
    ///
    /// [`Error::OutOfRange`] when `i >= len()`; [`Error::WouldDeadlock`] when the
    /// calling thread holds this array's lock (write through its guard instead, see
    /// [`Value::get`](super::Value::get)); nothing is written. ([`get`](Array::get)
    /// and [`to_vec`](Array::to_vec) have no error to say so: from the lock's holder
    /// they wait for ever, as a second [`lock`](Array::lock) does.)
    pub fn set(&self, i: usize, v: T) -> Result<(), Error> {
        if self.slice.held_by_this_thread() {
            return Err(Error::WouldDeadlock);
        }
        let mut g = either(self.lock());
        let len = g.len();
        match g.get_mut(i) {
            Some(x) => {
                *x = v;
                Ok(())
            }
            None => Err(Error::OutOfRange { index: i, len }),
        }
    }

    /// A copy of every element (Python's `arr[:]`), taken under the lock.
    pub fn to_vec(&self) -> Vec<T> {
        either(self.lock()).to_vec()
    }

    /// Takes the lock, waiting as long as it takes; the guard derefs to `[T]` and
    /// releases the lock on drop.
    ///
    /// # Errors
    ///
    /// [`LockError::OwnerDied`] when the previous holder died holding the lock: the lock
    /// is acquired anyway (the guard is inside) and the elements may be half-updated.
    pub fn lock(&self) -> Result<ArrayGuard<'_, T>, LockError<ArrayGuard<'_, T>>> {
        lock_forever(&self.slice, ArrayGuard)
    }

    /// Takes the lock if nobody holds it; `Ok(None)` if a live process does.
    ///
    /// # Errors
    ///
    /// As [`lock`](Array::lock).
    pub fn try_lock(&self) -> Result<Option<ArrayGuard<'_, T>>, LockError<ArrayGuard<'_, T>>> {
        match self.slice.try_lock(true) {
            None => Ok(None),
            Some((g, Acquired::Clean)) => Ok(Some(ArrayGuard(g))),
            Some((g, Acquired::OwnerDied)) => Err(LockError::OwnerDied(ArrayGuard(g))),
        }
    }

    /// Takes the lock, waiting at most `timeout`; `Ok(None)` when it ran out.
    ///
    /// # Errors
    ///
    /// As [`lock`](Array::lock).
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Result<Option<ArrayGuard<'_, T>>, LockError<ArrayGuard<'_, T>>> {
        lock_with(&self.slice, Deadline::after(timeout).instant(), ArrayGuard)
    }
}
