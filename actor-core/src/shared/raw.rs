//! [`RawValue`] and [`RawArray`]: shared memory **without** a lock, reached through
//! atomics or raw pointers.

use super::handle::{handle_serde, TAG_RAW_ARRAY, TAG_RAW_VALUE};
use crate::error::Error;
use crate::Pod;
use procactor_transports::pod::{AtomicInt, PodCells};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

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
