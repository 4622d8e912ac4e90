//! [`Value`]: one `T` in shared memory with its own lock, and its guard.

use super::handle::{either, handle_serde, lock_forever, lock_with, TAG_VALUE};
use crate::error::{Error, LockError};
use crate::Pod;
use procactor_transports::deadline::Deadline;
use procactor_transports::pod::{PodGuard, PodSlice};
use procactor_transports::robust::Acquired;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

/// One `T` in shared memory with its own lock (Python's `Value(typecode, v)`, whose
/// default is `lock=True`).
///
/// `get` and `set` are atomic with respect to [`lock`](Value::lock) holders in every
/// process. Clone it (cheap: another handle to the same memory) or pass it in a child's
/// arguments to share it.
///
/// A `Value` has no lock-free atomic operations: its guard reads and writes the value
/// plainly, and a plain access racing with an atomic one is undefined behaviour. For a
/// lock-free counter use [`RawValue`](super::RawValue) (Python's
/// `Value('i', 0, lock=False)`), whose integer operations
/// ([`RawValue::fetch_add`](super::RawValue::fetch_add),
/// [`RawValue::compare_exchange`](super::RawValue::compare_exchange), …) are atomic.
///
/// # Examples
///
/// ```
/// use procactor_core::Value;
///
/// let n = Value::new(0i64).unwrap();
/// {
///     let mut g = n.lock().unwrap(); // Python: with n.get_lock(): n.value += 1
///     *g += 1;
/// }
/// n.set(n.get().unwrap() * 10).unwrap();
/// assert_eq!(n.get().unwrap(), 10);
/// ```
pub struct Value<T> {
    slice: Arc<PodSlice<T>>,
}

handle_serde!(Value, PodSlice, TAG_VALUE, Some(1));

/// Exclusive access to a [`Value`]'s `T`; the lock is released on drop.
pub struct ValueGuard<'a, T: Pod>(PodGuard<'a, T>);

impl<T: Pod> Deref for ValueGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // a Value's slice has exactly one element (checked when it was made or mapped)
        &self.0[0]
    }
}

impl<T: Pod> DerefMut for ValueGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0[0]
    }
}

impl<T: Pod + std::fmt::Debug> std::fmt::Debug for ValueGuard<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ValueGuard").field(&**self).finish()
    }
}

impl<T: Pod> Value<T> {
    /// A new shared value holding `v`.
    ///
    /// # Errors
    ///
    /// The kernel refused the shared memory ([`Error::Io`]).
    pub fn new(v: T) -> Result<Self, Error> {
        Ok(Self {
            slice: Arc::new(PodSlice::from_slice("value", TAG_VALUE, &[v])?),
        })
    }

    /// A copy of the value, read under the lock (Python's `v.value`).
    ///
    /// Python's `Value` lock is an `RLock`, so `v.value` inside `with v.get_lock():`
    /// works there. Here the thread holding a [`ValueGuard`] of this value reads and
    /// writes through the guard (`*g`): the guard hands out `&mut T`, and a second
    /// access to the same memory while that reference may be alive would break Rust's
    /// aliasing rules. So `get` (and [`set`](Value::set)) from the thread that holds this
    /// value's lock (through this handle or a clone of it) is an
    /// [`Error::WouldDeadlock`] at once, not a wait for ever. Another thread, or another
    /// process, waits for the lock as usual. (Taking [`lock`](Value::lock) twice on one
    /// thread still waits for ever, as `std::sync::Mutex` may.)
    ///
    /// A lock taken over from a dead owner is used as is (the value may be
    /// half-updated; [`lock`](Value::lock) tells).
    ///
    /// # Errors
    ///
    /// [`Error::WouldDeadlock`] when the calling thread holds this value's lock.
    ///
    /// # Examples
    ///
    /// ```
    /// use procactor_core::{Error, Value};
    ///
    /// let v = Value::new(1u32).unwrap();
    /// let mut g = v.lock().unwrap();
    /// *g += 1; // the holder reads and writes through its guard
    /// assert!(matches!(v.get(), Err(Error::WouldDeadlock)));
    /// drop(g);
    /// assert_eq!(v.get().unwrap(), 2);
    /// ```
    pub fn get(&self) -> Result<T, Error> {
        if self.slice.held_by_this_thread() {
            return Err(Error::WouldDeadlock);
        }
        Ok(*either(self.lock()))
    }

    /// Replaces the value, under the lock (Python's `v.value = x`).
    ///
    /// # Errors
    ///
    /// [`Error::WouldDeadlock`] when the calling thread holds this value's lock (see
    /// [`get`](Value::get)); nothing is written.
    pub fn set(&self, v: T) -> Result<(), Error> {
        if self.slice.held_by_this_thread() {
            return Err(Error::WouldDeadlock);
        }
        *either(self.lock()) = v;
        Ok(())
    }

    /// Takes the lock (Python's `get_lock()`), waiting as long as it takes; the guard
    /// derefs to the value and releases the lock on drop.
    ///
    /// # Errors
    ///
    /// [`LockError::OwnerDied`] when the previous holder died holding the lock: the lock
    /// is acquired anyway (the guard is inside) and the value may be half-updated.
    pub fn lock(&self) -> Result<ValueGuard<'_, T>, LockError<ValueGuard<'_, T>>> {
        lock_forever(&self.slice, ValueGuard)
    }

    /// Takes the lock if nobody holds it; `Ok(None)` if a live process does.
    ///
    /// # Errors
    ///
    /// As [`lock`](Value::lock).
    pub fn try_lock(&self) -> Result<Option<ValueGuard<'_, T>>, LockError<ValueGuard<'_, T>>> {
        match self.slice.try_lock(true) {
            None => Ok(None),
            Some((g, Acquired::Clean)) => Ok(Some(ValueGuard(g))),
            Some((g, Acquired::OwnerDied)) => Err(LockError::OwnerDied(ValueGuard(g))),
        }
    }

    /// Takes the lock, waiting at most `timeout`; `Ok(None)` when it ran out.
    ///
    /// # Errors
    ///
    /// As [`lock`](Value::lock).
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Result<Option<ValueGuard<'_, T>>, LockError<ValueGuard<'_, T>>> {
        lock_with(&self.slice, Deadline::after(timeout).instant(), ValueGuard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn lock_timeout_and_try_lock_while_held() {
        let v = Value::new(0u8).unwrap();
        let _g = v.lock().unwrap();
        let v2 = v.clone();
        std::thread::spawn(move || {
            assert!(v2.try_lock().unwrap().is_none());
            let t = Instant::now();
            assert!(v2
                .lock_timeout(Duration::from_millis(20))
                .unwrap()
                .is_none());
            assert!(t.elapsed() >= Duration::from_millis(20));
        })
        .join()
        .unwrap();
    }
}
