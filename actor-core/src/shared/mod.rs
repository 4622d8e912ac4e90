//! Shared state: [`Value`], [`Array`], [`RawValue`], [`RawArray`] (Python's
//! `multiprocessing.Value`, `Array`, `RawValue`, `RawArray`).
//!
//! Each is one anonymous shared-memory region (a memory file with no file-system name)
//! holding a robust lock word and the [`Pod`] data. Handles are cheap to clone and
//! travel to children inside a [`Process`](crate::Process)'s arguments (or through a
//! Pipe): the receiving process maps the same memory. Only processes handed a handle can
//! reach it.
//!
//! # Locking and dead holders
//!
//! [`Value::lock`] and [`Array::lock`] return a guard that derefs to the data and
//! releases the lock on drop, like [`std::sync::Mutex::lock`]. If the process that held
//! the lock died while holding it, the next `lock()` still acquires it (nobody ever
//! hangs on a dead holder) and says so with
//! [`Err(LockError::OwnerDied(guard))`](LockError::OwnerDied): the data may be
//! half-updated; take the guard with [`LockError::into_inner`] and repair or carry on.
//! The shortcut methods (`get`, `set`, `to_vec`) take the lock the same way and ignore
//! that report.
//!
//! # Examples
//!
//! ```
//! use procactor_core::{Array, Process, Value};
//!
//! fn work((n, a): (Value<i32>, Array<i32>)) {
//!     *n.lock().unwrap() += 1;
//!     for x in a.lock().unwrap().iter_mut() {
//!         *x *= 10;
//!     }
//! }
//!
//! fn main() {
//!     procactor_core::init();
//!     let n = Value::new(1i32).unwrap();
//!     let a = Array::from_slice(&[0, 1, 2]).unwrap();
//!     let mut p = Process::new(work, (n.clone(), a.clone())).start().unwrap();
//!     p.join().unwrap();
//!     assert_eq!(n.get().unwrap(), 2);
//!     assert_eq!(a.to_vec(), [0, 10, 20]);
//! }
//! ```
//!
//! This directory is the *shared state* layer: [`Value`]/[`Array`] (this file) and the
//! cross-process synchronisation primitives ([`sync`]). It builds on the channels and
//! process layers.

pub mod sync;

use crate::codec::{RecvFd, SendFd};
use crate::error::{Error, LockError};
use crate::Pod;
use procactor_transports::deadline::Deadline;
pub use procactor_transports::pod::AtomicInt;
use procactor_transports::pod::{PodCells, PodGuard, PodSlice};
use procactor_transports::robust::Acquired;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TAG_VALUE: u32 = 1;
const TAG_ARRAY: u32 = 2;
const TAG_RAW_VALUE: u32 = 3;
const TAG_RAW_ARRAY: u32 = 4;

/// Takes a slice's lock until `deadline`, wrapping the guard; `Ok(None)` on timeout.
fn lock_with<'a, T: Pod, G>(
    s: &'a PodSlice<T>,
    deadline: Option<Instant>,
    wrap: fn(PodGuard<'a, T>) -> G,
) -> Result<Option<G>, LockError<G>> {
    match s.lock(deadline) {
        None => Ok(None),
        Some((g, Acquired::Clean)) => Ok(Some(wrap(g))),
        Some((g, Acquired::OwnerDied)) => Err(LockError::OwnerDied(wrap(g))),
    }
}

/// Takes a slice's lock, waiting as long as it takes.
fn lock_forever<'a, T: Pod, G>(
    s: &'a PodSlice<T>,
    wrap: fn(PodGuard<'a, T>) -> G,
) -> Result<G, LockError<G>> {
    loop {
        // a lock without a deadline only returns once acquired; loop for the type's sake
        match lock_with(s, None, wrap) {
            Ok(Some(g)) => return Ok(g),
            Ok(None) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// The guard whichever way the lock was acquired.
fn either<G>(r: Result<G, LockError<G>>) -> G {
    r.unwrap_or_else(LockError::into_inner)
}

macro_rules! handle_serde {
    ($t:ident, $view:ident, $tag:expr, $len:expr) => {
        impl<T: Pod> Serialize for $t<T> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                SendFd(self.slice.fd()).serialize(s)
            }
        }

        impl<'de, T: Pod> Deserialize<'de> for $t<T> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let RecvFd(fd) = RecvFd::deserialize(d)?;
                let slice = $view::from_fd(fd, $tag, $len).map_err(|e| {
                    D::Error::custom(format!(
                        "cannot map a {}<{}>: {e}",
                        stringify!($t),
                        std::any::type_name::<T>()
                    ))
                })?;
                Ok(Self {
                    slice: Arc::new(slice),
                })
            }
        }

        impl<T> Clone for $t<T> {
            fn clone(&self) -> Self {
                Self {
                    slice: Arc::clone(&self.slice),
                }
            }
        }

        impl<T> std::fmt::Debug for $t<T> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($t))
                    .field("type", &std::any::type_name::<T>())
                    .field("slice", &self.slice)
                    .finish()
            }
        }
    };
}

/// One `T` in shared memory with its own lock (Python's `Value(typecode, v)`, whose
/// default is `lock=True`).
///
/// `get` and `set` are atomic with respect to [`lock`](Value::lock) holders in every
/// process. Clone it (cheap: another handle to the same memory) or pass it in a child's
/// arguments to share it.
///
/// A `Value` has no lock-free atomic operations: its guard reads and writes the value
/// plainly, and a plain access racing with an atomic one is undefined behaviour. For a
/// lock-free counter use [`RawValue`] (Python's `Value('i', 0, lock=False)`), whose
/// integer operations ([`RawValue::fetch_add`], [`RawValue::compare_exchange`], …) are
/// atomic.
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
    /// [`Value::get`]); nothing is written. ([`get`](Array::get) and
    /// [`to_vec`](Array::to_vec) have no error to say so: from the lock's holder they wait
    /// for ever, as a second [`lock`](Array::lock) does.)
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

/// One `T` in shared memory **without** a lock (Python's `RawValue`, or `Value(...,
/// lock=False)`).
///
/// There is no safe plain read or write, because another process may write at any
/// moment. Access it
/// - for an integer `T` (`i8`…`i64`, `u8`…`u64`, `isize`, `usize`: [`AtomicInt`]),
///   through its lock-free atomic operations: [`load`](RawValue::load),
///   [`store`](RawValue::store), [`fetch_add`](RawValue::fetch_add),
///   [`fetch_sub`](RawValue::fetch_sub), [`swap`](RawValue::swap),
///   [`compare_exchange`](RawValue::compare_exchange), all sequentially consistent
///   (Python's `Value` makes no weaker promise), or [`atomic`](RawValue::atomic), the
///   `std::sync::atomic` twin, for other orderings;
/// - through atomics when `T` is 4 or 8 bytes with matching alignment
///   ([`atomic_u32`](RawValue::atomic_u32), [`atomic_u64`](RawValue::atomic_u64)), or
/// - through the raw pointer [`as_ptr`](RawValue::as_ptr) (`unsafe` reads and writes),
///   when the program's own synchronisation (a [`Lock`](crate::Lock), a
///   [`Barrier`](crate::Barrier), a join) rules out concurrent access.
///
/// # Examples
///
/// ```
/// use procactor_core::RawValue;
/// use std::sync::atomic::Ordering;
///
/// let v = RawValue::new(5u64).unwrap();
/// v.atomic_u64().unwrap().fetch_add(1, Ordering::SeqCst);
/// // SAFETY: no other handle to this memory exists yet, so nobody writes concurrently.
/// assert_eq!(unsafe { v.as_ptr().read() }, 6);
/// ```
///
/// A lock-free counter shared by processes (Python's `Value('i', 0, lock=False)`, with
/// the atomicity Python's lacks):
///
/// ```
/// use procactor_core::{Process, RawValue};
///
/// fn count(n: RawValue<i32>) {
///     for _ in 0..1000 {
///         n.fetch_add(1);
///     }
/// }
///
/// fn main() {
///     procactor_core::init();
///     let n = RawValue::new(0i32).unwrap();
///     let mut ps: Vec<_> = (0..2).map(|_| Process::new(count, n.clone()).start().unwrap()).collect();
///     for p in &mut ps {
///         p.join().unwrap();
///     }
///     assert_eq!(n.load(), 2000);
///     assert_eq!(n.compare_exchange(2000, -1), Ok(2000));
///     assert_eq!(n.compare_exchange(2000, 5), Err(-1));
/// }
/// ```
pub struct RawValue<T> {
    slice: Arc<PodCells<T>>,
}

handle_serde!(RawValue, PodCells, TAG_RAW_VALUE, Some(1));

impl<T: Pod> RawValue<T> {
    /// A new unlocked shared value holding `v`.
    ///
    /// # Errors
    ///
    /// The kernel refused the shared memory ([`Error::Io`]).
    pub fn new(v: T) -> Result<Self, Error> {
        Ok(Self {
            slice: Arc::new(PodCells::from_slice("rawvalue", TAG_RAW_VALUE, &[v])?),
        })
    }

    /// The value as an `AtomicU32` when `T` is 4 bytes with alignment 4 (`u32`, `i32`,
    /// `f32` as bits, …); `None` otherwise.
    pub fn atomic_u32(&self) -> Option<&AtomicU32> {
        self.slice.atomic_u32(0)
    }

    /// The value as an `AtomicU64` when `T` is 8 bytes with alignment 8; `None`
    /// otherwise.
    pub fn atomic_u64(&self) -> Option<&AtomicU64> {
        self.slice.atomic_u64(0)
    }

    /// A pointer to the value (valid while this handle lives); dereferencing it is
    /// `unsafe` and the caller's synchronisation must rule out concurrent writes.
    pub fn as_ptr(&self) -> *mut T {
        self.slice.as_ptr()
    }
}

impl<T: AtomicInt> RawValue<T> {
    /// The value as its `std::sync::atomic` twin (`AtomicI32` for `i32`, …), for
    /// orderings other than `SeqCst`.
    pub fn atomic(&self) -> &T::Atomic {
        match self.slice.atomic(0) {
            Some(a) => a,
            // (a RawValue has exactly one element, checked when it was made or mapped,
            // and element 0 sits 64 bytes into a page-aligned mapping)
            None => unreachable!("a RawValue's element is always aligned for its atomic"),
        }
    }

    /// Reads the value atomically.
    pub fn load(&self) -> T {
        T::load(self.atomic(), Ordering::SeqCst)
    }

    /// Writes the value atomically.
    pub fn store(&self, v: T) {
        T::store(self.atomic(), v, Ordering::SeqCst)
    }

    /// Adds `v` (wrapping on overflow, as `std`'s atomics) and returns the previous
    /// value.
    ///
    /// # Examples
    ///
    /// ```
    /// let n = procactor_core::RawValue::new(u8::MAX).unwrap();
    /// assert_eq!(n.fetch_add(2), 255);
    /// assert_eq!(n.load(), 1);
    /// ```
    pub fn fetch_add(&self, v: T) -> T {
        T::fetch_add(self.atomic(), v, Ordering::SeqCst)
    }

    /// Subtracts `v` (wrapping on overflow) and returns the previous value.
    pub fn fetch_sub(&self, v: T) -> T {
        T::fetch_sub(self.atomic(), v, Ordering::SeqCst)
    }

    /// Replaces the value with `v` and returns the previous one.
    pub fn swap(&self, v: T) -> T {
        T::swap(self.atomic(), v, Ordering::SeqCst)
    }

    /// Writes `new` if the value is `current`: `Ok(current)` then, otherwise
    /// `Err(actual value)` and nothing is written (`std`'s `compare_exchange`, never
    /// failing spuriously).
    ///
    /// # Errors
    ///
    /// `Err(actual)` when the value was not `current`.
    pub fn compare_exchange(&self, current: T, new: T) -> Result<T, T> {
        T::compare_exchange(
            self.atomic(),
            current,
            new,
            Ordering::SeqCst,
            Ordering::SeqCst,
        )
    }
}

/// `len` elements of `T` in shared memory **without** a lock (Python's `RawArray`).
///
/// Access rules as [`RawValue`]: atomics per element for 4- and 8-byte types, or
/// `unsafe` reads and writes through [`as_ptr`](RawArray::as_ptr) under the program's
/// own synchronisation.
///
/// # Examples
///
/// ```
/// use procactor_core::RawArray;
/// use std::sync::atomic::Ordering;
///
/// let a = RawArray::<i32>::zeroed(4).unwrap();
/// a.atomic_u32(2).unwrap().store(7, Ordering::SeqCst);
/// assert!(a.atomic_u32(4).is_none()); // out of range: None, not a panic
/// // SAFETY: this process holds the only handle, so nothing writes concurrently;
/// // element 2 of 4 is in bounds.
/// assert_eq!(unsafe { a.as_ptr().add(2).read() }, 7);
/// ```
pub struct RawArray<T> {
    slice: Arc<PodCells<T>>,
}

handle_serde!(RawArray, PodCells, TAG_RAW_ARRAY, None);

impl<T: Pod> RawArray<T> {
    /// A new unlocked shared array holding a copy of `values`.
    ///
    /// # Errors
    ///
    /// The size overflows or the kernel refused the memory ([`Error::Io`]).
    pub fn from_slice(values: &[T]) -> Result<Self, Error> {
        Ok(Self {
            slice: Arc::new(PodCells::from_slice("rawarray", TAG_RAW_ARRAY, values)?),
        })
    }

    /// A new unlocked shared array of `len` zeroed elements.
    ///
    /// # Errors
    ///
    /// As [`from_slice`](RawArray::from_slice).
    pub fn zeroed(len: usize) -> Result<Self, Error> {
        Ok(Self {
            slice: Arc::new(PodCells::zeroed("rawarray", TAG_RAW_ARRAY, len)?),
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

    /// Element `i` as an `AtomicU32` (4-byte, 4-aligned `T`); `None` for other types or
    /// `i >= len()`.
    pub fn atomic_u32(&self, i: usize) -> Option<&AtomicU32> {
        self.slice.atomic_u32(i)
    }

    /// Element `i` as an `AtomicU64` (8-byte, 8-aligned `T`); `None` for other types or
    /// `i >= len()`.
    pub fn atomic_u64(&self, i: usize) -> Option<&AtomicU64> {
        self.slice.atomic_u64(i)
    }

    /// Element `i` of an integer array as its `std::sync::atomic` twin (`AtomicI16` for
    /// `i16`, …); `None` when `i >= len()`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::Ordering;
    ///
    /// let a = procactor_core::RawArray::<i16>::zeroed(3).unwrap();
    /// a.atomic(1).unwrap().fetch_sub(5, Ordering::SeqCst);
    /// assert_eq!(a.atomic(1).unwrap().load(Ordering::SeqCst), -5);
    /// assert!(a.atomic(3).is_none());
    /// ```
    pub fn atomic(&self, i: usize) -> Option<&T::Atomic>
    where
        T: AtomicInt,
    {
        self.slice.atomic(i)
    }

    /// A pointer to the first element (valid for `len()` elements while this handle
    /// lives); dereferencing it is `unsafe`.
    pub fn as_ptr(&self) -> *mut T {
        self.slice.as_ptr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::codec::round_trip;

    #[test]
    fn handles_travel_and_share_memory() {
        let v = Value::new(3u16).unwrap();
        let v2: Value<u16> = round_trip(&v).unwrap();
        v2.set(9).unwrap();
        assert_eq!(v.get().unwrap(), 9);
        let a = Array::from_slice(&[1.5f32, 2.5]).unwrap();
        let a2: Array<f32> = round_trip(&a).unwrap();
        a2.set(1, 0.5).unwrap();
        assert_eq!(a.to_vec(), [1.5, 0.5]);
    }

    #[test]
    fn wrong_handle_kind_or_type_is_a_decode_error() {
        let v = Value::new(3u32).unwrap();
        assert!(round_trip::<Value<u64>>(&v).is_err());
        assert!(round_trip::<Array<u32>>(&v).is_err());
        assert!(round_trip::<RawValue<u32>>(&v).is_err());
        let a = Array::from_slice(&[1u32, 2]).unwrap();
        assert!(round_trip::<Value<u32>>(&a).is_err());
    }

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
