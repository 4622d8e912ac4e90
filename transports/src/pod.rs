//! Typed views of `Pod` elements in shared memory, guarded by a robust lock word.
//!
//! A [`PodSlice<T>`] is one [`ShmRegion`] laid out as a small header followed by `len`
//! elements of `T`:
//!
//! ```text
//! 0   lock word (u32, a crate::robust mutex)
//! 4   magic (u32)             8   element count (u64)
//! 16  size_of::<T>() (u32)    20  align_of::<T>() (u32)
//! 24  tag (u32, chosen by the user of the view: what kind of handle this is)
//! D   the elements, D = max(64, align_of::<T>())
//! ```
//!
//! Access comes in two kinds:
//! - **locked**: [`PodSlice::lock`] takes the robust lock word and returns a
//!   [`PodGuard`], which derefs to `[T]`. Safe: while the guard lives no other
//!   locked access (from any thread of any process) can happen.
//! - **raw**: [`PodSlice::read`], [`PodSlice::write`], [`PodSlice::as_mut_slice`] are
//!   `unsafe` (the caller promises there is no concurrent conflicting access).
//! - **atomic**, on the other type [`PodCells`] (same layout, no guard):
//!   [`PodCells::atomic_u32`] / [`PodCells::atomic_u64`] are safe atomic views of
//!   elements whose size and alignment allow it, and [`PodCells::atomic`] the atomic
//!   view of an integer element as its own atomic type ([`AtomicInt`]).
//!
//! Atomic views and the lock are two separate disciplines: a locked guard reads and
//! writes plainly, so an element accessed atomically in one place and through a guard in
//! another is a data race. The two types keep them apart: no safe code can hold a guard's
//! `&mut [T]` and an atomic view of the same view's memory at once (`procactor-core`'s
//! locked `Value` is a `PodSlice`, its unlocked `RawValue` a `PodCells`). The lock word
//! is private to the view, so no safe code can unlock it under a live guard either.
//!
//! The header is validated when a view is made from a descriptor received from another
//! process ([`PodSlice::from_fd`]), so a peer cannot make this process read outside the
//! mapping or reinterpret elements of another size.

use crate::robust::{self, Acquired};
use crate::shm::ShmRegion;
use bytemuck::Pod;
use rustix::fd::{BorrowedFd, OwnedFd};
use std::io;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

const MAGIC: u32 = 0x706f_6431; // "pod1"
const OFF_LOCK: usize = 0;
const OFF_MAGIC: usize = 4;
const OFF_LEN: usize = 8;
const OFF_SIZE: usize = 16;
const OFF_ALIGN: usize = 20;
const OFF_TAG: usize = 24;

/// `len` elements of `T` in a shared-memory region, with a robust lock word.
///
/// A `PodSlice` has no atomic views of its elements (those are on [`PodCells`]), and its
/// lock word is private, so a guard's `&mut [T]` is the only reference to the elements
/// through this view while it lives:
///
/// ```compile_fail
/// use procactor_transports::pod::PodSlice;
/// let s = PodSlice::<u32>::zeroed("example", 7, 1).unwrap();
/// let (mut g, _) = s.lock(None).unwrap();
/// let a = s.atomic_u32(0).unwrap(); // no such method
/// g[0] = 1;
/// a.load(std::sync::atomic::Ordering::SeqCst);
/// ```
///
/// ```compile_fail
/// use procactor_transports::pod::PodSlice;
/// let s = PodSlice::<u32>::zeroed("example", 7, 1).unwrap();
/// let (g, _) = s.lock(None).unwrap();
/// procactor_transports::robust::unlock(s.lock_word()); // private
/// let (g2, _) = s.lock(None).unwrap();
/// ```
///
/// # Examples
///
/// ```
/// use procactor_transports::pod::PodSlice;
///
/// let a = PodSlice::<u32>::from_slice("example", 7, &[1, 2, 3]).unwrap();
/// let b = PodSlice::<u32>::from_fd(a.try_clone_fd().unwrap(), 7, Some(3)).unwrap();
/// {
///     let (mut g, _) = a.lock(None).unwrap();
///     g[1] = 20;
/// }
/// let (g, _) = b.lock(None).unwrap();
/// assert_eq!(&*g, &[1, 20, 3]);
/// ```
pub struct PodSlice<T> {
    region: ShmRegion,
    len: usize,
    data_off: usize,
    /// The [`thread_token`] of the thread of this process holding the lock through this
    /// view (0: none); process-local, so that a re-entry by the holder can be told
    /// from another thread that must wait.
    holder: AtomicU64,
    _t: PhantomData<T>,
}

/// A number that identifies the calling thread within its process (never 0).
fn thread_token() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local!(static TOKEN: u64 = NEXT.fetch_add(1, Ordering::Relaxed));
    TOKEN.with(|t| *t)
}

impl<T> std::fmt::Debug for PodSlice<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodSlice")
            .field("type", &std::any::type_name::<T>())
            .field("len", &self.len)
            .field("region", &self.region)
            .finish()
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

impl<T: Pod> PodSlice<T> {
    fn layout(len: usize) -> io::Result<(usize, usize)> {
        let align = std::mem::align_of::<T>();
        if align > rustix::param::page_size() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("element alignment {align} exceeds the page size"),
            ));
        }
        let data_off = align.max(64);
        let bytes = len
            .checked_mul(std::mem::size_of::<T>())
            .and_then(|b| b.checked_add(data_off))
            .filter(|b| *b <= isize::MAX as usize)
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "shared array size overflows")
            })?;
        Ok((data_off, bytes))
    }

    /// A new region of `len` zeroed elements, labelled `tag` (the caller's kind of
    /// handle, checked again by [`PodSlice::from_fd`]).
    ///
    /// # Errors
    ///
    /// The size overflows, `T`'s alignment exceeds a page, or the kernel refuses memory.
    pub fn zeroed(name: &str, tag: u32, len: usize) -> io::Result<Self> {
        let (data_off, bytes) = Self::layout(len)?;
        let region = ShmRegion::create(name, bytes)?;
        region.atomic_u32(OFF_MAGIC).store(MAGIC, Ordering::Relaxed);
        region
            .atomic_u64(OFF_LEN)
            .store(len as u64, Ordering::Relaxed);
        region
            .atomic_u32(OFF_SIZE)
            .store(std::mem::size_of::<T>() as u32, Ordering::Relaxed);
        region
            .atomic_u32(OFF_ALIGN)
            .store(std::mem::align_of::<T>() as u32, Ordering::Relaxed);
        region.atomic_u32(OFF_TAG).store(tag, Ordering::Release);
        Ok(Self {
            region,
            len,
            data_off,
            holder: AtomicU64::new(0),
            _t: PhantomData,
        })
    }

    /// A new region holding a copy of `values`.
    ///
    /// # Errors
    ///
    /// As [`PodSlice::zeroed`].
    pub fn from_slice(name: &str, tag: u32, values: &[T]) -> io::Result<Self> {
        let s = Self::zeroed(name, tag, values.len())?;
        // SAFETY: the region is new and nobody else has its descriptor yet, so this is
        // the only access; `as_mut_slice` has exactly `values.len()` elements.
        unsafe { s.as_mut_slice() }.copy_from_slice(values);
        Ok(s)
    }

    /// Maps a region received from another process, checking its header: the magic, the
    /// `tag`, the element size and alignment of `T`, the element count (`expected_len`
    /// when given) and that the elements fit in the memory behind the descriptor.
    ///
    /// # Errors
    ///
    /// The descriptor is not a mappable region, or the header does not match.
    pub fn from_fd(fd: OwnedFd, tag: u32, expected_len: Option<usize>) -> io::Result<Self> {
        let region = ShmRegion::from_fd(fd)?;
        if region.len() < 64 {
            return Err(invalid("shared region too small for a header".into()));
        }
        let magic = region.atomic_u32(OFF_MAGIC).load(Ordering::Acquire);
        if magic != MAGIC {
            return Err(invalid("not a procactor shared-state region".into()));
        }
        let got_tag = region.atomic_u32(OFF_TAG).load(Ordering::Acquire);
        if got_tag != tag {
            return Err(invalid(format!(
                "shared region is of another kind (tag {got_tag}, expected {tag})"
            )));
        }
        let size = region.atomic_u32(OFF_SIZE).load(Ordering::Relaxed) as usize;
        let align = region.atomic_u32(OFF_ALIGN).load(Ordering::Relaxed) as usize;
        if size != std::mem::size_of::<T>() || align != std::mem::align_of::<T>() {
            return Err(invalid(format!(
                "shared region holds elements of size {size}/align {align}, not {}",
                std::any::type_name::<T>()
            )));
        }
        let len = usize::try_from(region.atomic_u64(OFF_LEN).load(Ordering::Relaxed))
            .map_err(|_| invalid("element count does not fit in usize".into()))?;
        if let Some(e) = expected_len {
            if e != len {
                return Err(invalid(format!("expected {e} elements, found {len}")));
            }
        }
        let (data_off, bytes) = Self::layout(len)?;
        if bytes > region.len() {
            return Err(invalid(format!(
                "{len} elements do not fit in a {}-byte region",
                region.len()
            )));
        }
        Ok(Self {
            region,
            len,
            data_off,
            holder: AtomicU64::new(0),
            _t: PhantomData,
        })
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The region's descriptor (to send to another process).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.region.fd()
    }

    /// A new descriptor for the same region.
    ///
    /// # Errors
    ///
    /// Out of descriptors.
    pub fn try_clone_fd(&self) -> io::Result<OwnedFd> {
        self.region.try_clone_fd()
    }

    /// The robust lock word guarding the elements (see [`crate::robust`]). Private: safe
    /// code that could unlock it while a [`PodGuard`] lives could make a second guard, and
    /// two `&mut [T]` to the same memory.
    fn lock_word(&self) -> &AtomicU32 {
        self.region.atomic_u32(OFF_LOCK)
    }

    /// A pointer to the first element, valid for [`len`](PodSlice::len) elements while
    /// `self` lives. Dereferencing it is the caller's responsibility: other processes may
    /// access the same memory at any time.
    pub fn as_ptr(&self) -> *mut T {
        // SAFETY: `data_off` is inside the mapping (checked when the view was made:
        // `data_off + len * size <= region.len()`), so the offset stays in bounds.
        unsafe { self.region.as_ptr().add(self.data_off).cast::<T>() }
    }

    /// Takes the lock, waiting until `deadline` (`None`: forever). `None` on timeout;
    /// otherwise the guard and whether the lock was taken over from a dead owner.
    pub fn lock(&self, deadline: Option<Instant>) -> Option<(PodGuard<'_, T>, Acquired)> {
        robust::lock(self.lock_word(), deadline).map(|a| (self.guard(), a))
    }

    /// Takes the lock if it is free (or held by a dead owner when `check_owner`).
    pub fn try_lock(&self, check_owner: bool) -> Option<(PodGuard<'_, T>, Acquired)> {
        robust::try_lock(self.lock_word(), check_owner).map(|a| (self.guard(), a))
    }

    /// The guard of a lock just taken by this thread.
    fn guard(&self) -> PodGuard<'_, T> {
        self.holder.store(thread_token(), Ordering::Relaxed);
        PodGuard { slice: self }
    }

    /// Whether the calling thread holds the lock through this view (a guard from
    /// [`lock`](PodSlice::lock) or [`try_lock`](PodSlice::try_lock) of this same
    /// `PodSlice` is alive on this thread). Taking the lock again would wait for ever;
    /// another view of the same region (mapped again from its descriptor) is not seen.
    pub fn held_by_this_thread(&self) -> bool {
        // Only this thread stores its own token, so a relaxed load sees it exactly when
        // this thread's guard is alive; the lock word rules out a token inherited over
        // fork (the child's lock-word identity differs from the parent's).
        self.holder.load(Ordering::Relaxed) == thread_token()
            && robust::held_by_this_process(self.lock_word())
    }

    /// Reads element `i` without the lock; `None` when `i >= len()`.
    ///
    /// # Safety
    ///
    /// No thread of any process may be writing element `i` during the read (hold the
    /// lock, or know by the program's structure that writers are done).
    pub unsafe fn read(&self, i: usize) -> Option<T> {
        if i >= self.len {
            return None;
        }
        // SAFETY: `i < len` so the element is inside the mapping and aligned (data_off is
        // a multiple of align_of::<T>(), the mapping is page-aligned); any bit pattern is
        // a valid `T: Pod`; the caller rules out concurrent writers.
        Some(unsafe { self.as_ptr().add(i).read() })
    }

    /// Writes element `i` without the lock; `false` (nothing written) when `i >= len()`.
    ///
    /// # Safety
    ///
    /// No thread of any process may be reading or writing element `i` during the write.
    pub unsafe fn write(&self, i: usize, v: T) -> bool {
        if i >= self.len {
            return false;
        }
        // SAFETY: in bounds and aligned as in `read`; the caller rules out concurrent
        // access to the element.
        unsafe { self.as_ptr().add(i).write(v) };
        true
    }

    /// All elements as a mutable slice, without the lock.
    ///
    /// # Safety
    ///
    /// For as long as the returned slice lives, no other access to these elements may
    /// happen from any thread of any process (no guard, no other slice, no raw access).
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn as_mut_slice(&self) -> &mut [T] {
        // SAFETY: `len` elements from an aligned, in-bounds pointer into a mapping that
        // lives as long as `&self`; `T: Pod` so any bytes are valid; exclusivity is the
        // caller's promise.
        unsafe { std::slice::from_raw_parts_mut(self.as_ptr(), self.len) }
    }
}

/// `len` elements of `T` in a shared-memory region **without** a lock: the other
/// discipline of [`PodSlice`]. Elements are reached through atomic views
/// ([`PodCells::atomic_u32`], [`PodCells::atomic_u64`], [`PodCells::atomic`]) or the
/// `unsafe` raw accessors; there is no guard, so no `&[T]`/`&mut [T]` can ever alias an
/// atomic view of the same memory (a [`PodSlice`] has guards and no atomic views).
///
/// The layout and header checks are those of [`PodSlice`] (the `tag` tells the two kinds
/// of handle apart).
///
/// # Examples
///
/// ```
/// use procactor_transports::pod::PodCells;
/// use std::sync::atomic::Ordering;
///
/// let a = PodCells::<u32>::from_slice("example", 9, &[1, 2, 3]).unwrap();
/// let b = PodCells::<u32>::from_fd(a.try_clone_fd().unwrap(), 9, Some(3)).unwrap();
/// a.atomic_u32(1).unwrap().fetch_add(5, Ordering::SeqCst);
/// assert_eq!(b.atomic(1).unwrap().load(Ordering::SeqCst), 7);
/// ```
pub struct PodCells<T>(PodSlice<T>);

impl<T> std::fmt::Debug for PodCells<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PodCells").field(&self.0).finish()
    }
}

impl<T: Pod> PodCells<T> {
    /// As [`PodSlice::zeroed`].
    ///
    /// # Errors
    ///
    /// As [`PodSlice::zeroed`].
    pub fn zeroed(name: &str, tag: u32, len: usize) -> io::Result<Self> {
        PodSlice::zeroed(name, tag, len).map(Self)
    }

    /// As [`PodSlice::from_slice`].
    ///
    /// # Errors
    ///
    /// As [`PodSlice::zeroed`].
    pub fn from_slice(name: &str, tag: u32, values: &[T]) -> io::Result<Self> {
        PodSlice::from_slice(name, tag, values).map(Self)
    }

    /// As [`PodSlice::from_fd`].
    ///
    /// # Errors
    ///
    /// As [`PodSlice::from_fd`].
    pub fn from_fd(fd: OwnedFd, tag: u32, expected_len: Option<usize>) -> io::Result<Self> {
        PodSlice::from_fd(fd, tag, expected_len).map(Self)
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.0.len
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.0.len == 0
    }

    /// The region's descriptor (to send to another process).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.0.fd()
    }

    /// A new descriptor for the same region.
    ///
    /// # Errors
    ///
    /// Out of descriptors.
    pub fn try_clone_fd(&self) -> io::Result<OwnedFd> {
        self.0.try_clone_fd()
    }

    /// As [`PodSlice::as_ptr`].
    pub fn as_ptr(&self) -> *mut T {
        self.0.as_ptr()
    }

    /// As [`PodSlice::read`].
    ///
    /// # Safety
    ///
    /// As [`PodSlice::read`]; atomic views count as writers.
    pub unsafe fn read(&self, i: usize) -> Option<T> {
        // SAFETY: forwarded contract.
        unsafe { self.0.read(i) }
    }

    /// As [`PodSlice::write`].
    ///
    /// # Safety
    ///
    /// As [`PodSlice::write`]; atomic views count as readers and writers.
    pub unsafe fn write(&self, i: usize, v: T) -> bool {
        // SAFETY: forwarded contract.
        unsafe { self.0.write(i, v) }
    }

    /// Element `i` as an `AtomicU32`, when `T` is 4 bytes with alignment 4 (`u32`, `i32`,
    /// `f32`, …); `None` for other types or `i >= len()`.
    pub fn atomic_u32(&self, i: usize) -> Option<&AtomicU32> {
        if std::mem::size_of::<T>() != 4 || std::mem::align_of::<T>() < 4 || i >= self.0.len {
            return None;
        }
        // SAFETY: element `i` is in bounds and 4-aligned, 4 bytes wide; AtomicU32 has the
        // layout of u32 and every bit pattern is valid for both; the mapping outlives
        // `&self`; all access through the returned reference is atomic.
        Some(unsafe { &*self.0.as_ptr().add(i).cast::<AtomicU32>() })
    }

    /// Element `i` as an `AtomicU64`, when `T` is 8 bytes with alignment 8 (`u64`,
    /// `i64`, `f64`, …); `None` for other types or `i >= len()`.
    pub fn atomic_u64(&self, i: usize) -> Option<&AtomicU64> {
        if std::mem::size_of::<T>() != 8 || std::mem::align_of::<T>() < 8 || i >= self.0.len {
            return None;
        }
        // SAFETY: as `atomic_u32`, for an 8-byte, 8-aligned element.
        Some(unsafe { &*self.0.as_ptr().add(i).cast::<AtomicU64>() })
    }
}

mod sealed {
    pub trait Sealed {}
}

/// The integer types that have an atomic twin in `std::sync::atomic` of the same size
/// (`i8`…`i64`, `u8`…`u64`, `isize`, `usize`): what [`PodCells::atomic`] offers, with the
/// operations of the twin. Sealed.
pub trait AtomicInt: Pod + sealed::Sealed {
    /// The `std::sync::atomic` type of the same size (`AtomicU64` for `u64`, …).
    type Atomic: Send + Sync + std::fmt::Debug;
    /// `Atomic::load`.
    fn load(a: &Self::Atomic, order: Ordering) -> Self;
    /// `Atomic::store`.
    fn store(a: &Self::Atomic, v: Self, order: Ordering);
    /// `Atomic::swap`.
    fn swap(a: &Self::Atomic, v: Self, order: Ordering) -> Self;
    /// `Atomic::fetch_add` (wrapping on overflow).
    fn fetch_add(a: &Self::Atomic, v: Self, order: Ordering) -> Self;
    /// `Atomic::fetch_sub` (wrapping on overflow).
    fn fetch_sub(a: &Self::Atomic, v: Self, order: Ordering) -> Self;
    /// `Atomic::compare_exchange`: `Ok(previous)` when the value was `current` and is now
    /// `new`, else `Err(actual)` and nothing written.
    fn compare_exchange(
        a: &Self::Atomic,
        current: Self,
        new: Self,
        success: Ordering,
        failure: Ordering,
    ) -> Result<Self, Self>;
}

macro_rules! atomic_int {
    ($($t:ty => $a:ty),* $(,)?) => {$(
        impl sealed::Sealed for $t {}
        impl AtomicInt for $t {
            type Atomic = $a;
            fn load(a: &$a, order: Ordering) -> $t {
                a.load(order)
            }
            fn store(a: &$a, v: $t, order: Ordering) {
                a.store(v, order)
            }
            fn swap(a: &$a, v: $t, order: Ordering) -> $t {
                a.swap(v, order)
            }
            fn fetch_add(a: &$a, v: $t, order: Ordering) -> $t {
                a.fetch_add(v, order)
            }
            fn fetch_sub(a: &$a, v: $t, order: Ordering) -> $t {
                a.fetch_sub(v, order)
            }
            fn compare_exchange(
                a: &$a,
                current: $t,
                new: $t,
                success: Ordering,
                failure: Ordering,
            ) -> Result<$t, $t> {
                a.compare_exchange(current, new, success, failure)
            }
        }
    )*};
}

atomic_int!(
    i8 => std::sync::atomic::AtomicI8,
    i16 => std::sync::atomic::AtomicI16,
    i32 => std::sync::atomic::AtomicI32,
    i64 => std::sync::atomic::AtomicI64,
    isize => std::sync::atomic::AtomicIsize,
    u8 => std::sync::atomic::AtomicU8,
    u16 => std::sync::atomic::AtomicU16,
    u32 => std::sync::atomic::AtomicU32,
    u64 => AtomicU64,
    usize => std::sync::atomic::AtomicUsize,
);

impl<T: AtomicInt> PodCells<T> {
    /// Element `i` as its atomic twin (`AtomicI32` for `i32`, …); `None` when
    /// `i >= len()` or the element is not aligned for the atomic type (an atomic may
    /// need more alignment than its integer: `AtomicU64` on 32-bit x86). Element 0 is
    /// always aligned (the data starts 64 bytes into a page-aligned mapping), so a
    /// one-element slice always has its atomic.
    pub fn atomic(&self, i: usize) -> Option<&T::Atomic> {
        // (true of every std atomic; checked so that the cast below stays in bounds)
        const { assert!(std::mem::size_of::<T::Atomic>() == std::mem::size_of::<T>()) };
        if i >= self.0.len {
            return None;
        }
        // SAFETY: `i < len`, so the element lies inside the mapping (checked when the
        // view was made).
        let p = unsafe { self.0.as_ptr().add(i) };
        if !p.cast::<T::Atomic>().is_aligned() {
            return None;
        }
        // SAFETY: `p` points to an in-bounds element of the same size as `T::Atomic`
        // (asserted at compile time), aligned for it (checked just above); every bit
        // pattern is a valid integer and a valid atomic of it (same in-memory
        // representation); the mapping outlives `&self`; the atomic is `Sync`, and
        // concurrent access through other references of other processes is atomic too,
        // unless they use the `unsafe` raw accessors or a guard, whose contracts exclude
        // concurrent access (see the module documentation).
        Some(unsafe { &*p.cast::<T::Atomic>() })
    }
}

/// Exclusive access to a [`PodSlice`]'s elements: the robust lock is held until drop.
pub struct PodGuard<'a, T: Pod> {
    slice: &'a PodSlice<T>,
}

impl<T: Pod> std::fmt::Debug for PodGuard<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodGuard")
            .field("len", &self.slice.len)
            .finish_non_exhaustive()
    }
}

impl<T: Pod> Deref for PodGuard<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: the lock is held by this guard, so no locked accessor anywhere writes
        // the elements meanwhile (raw writers promised not to run concurrently with lock
        // holders); bounds and alignment as in `PodSlice::read`.
        unsafe { std::slice::from_raw_parts(self.slice.as_ptr(), self.slice.len) }
    }
}

impl<T: Pod> DerefMut for PodGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as `deref`; `&mut self` makes this the only slice from this guard, and
        // the lock makes this guard the only one.
        unsafe { std::slice::from_raw_parts_mut(self.slice.as_ptr(), self.slice.len) }
    }
}

impl<T: Pod> Drop for PodGuard<'_, T> {
    fn drop(&mut self) {
        self.slice.holder.store(0, Ordering::Relaxed);
        robust::unlock(self.slice.lock_word());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holding_thread_is_known_and_no_other() {
        let s: PodSlice<u64> = PodSlice::zeroed("value", 1, 1).unwrap();
        assert!(!s.held_by_this_thread());
        let (g, _) = s.lock(None).unwrap();
        assert!(s.held_by_this_thread());
        std::thread::scope(|sc| {
            sc.spawn(|| assert!(!s.held_by_this_thread(), "another thread is not the holder"));
        });
        drop(g);
        assert!(!s.held_by_this_thread());
        let (g, _) = s.try_lock(false).unwrap();
        assert!(s.held_by_this_thread());
        drop(g);
        assert!(!s.held_by_this_thread());
    }
    use std::time::Duration;

    #[test]
    fn locked_access_is_shared_between_mappings() {
        let a = PodSlice::<i64>::from_slice("t", 1, &[1, 2, 3]).unwrap();
        let b = PodSlice::<i64>::from_fd(a.try_clone_fd().unwrap(), 1, None).unwrap();
        assert_eq!(b.len(), 3);
        {
            let (mut g, how) = b.lock(None).unwrap();
            assert_eq!(how, Acquired::Clean);
            g[2] = -7;
            // held: a second locker times out
            assert!(a
                .lock(Some(Instant::now() + Duration::from_millis(5)))
                .is_none());
            assert!(a.try_lock(true).is_none());
        }
        let (g, _) = a.lock(None).unwrap();
        assert_eq!(&*g, &[1, 2, -7]);
    }

    #[test]
    fn header_mismatches_are_refused() {
        let a = PodSlice::<u32>::zeroed("t", 1, 4).unwrap();
        let fd = || a.try_clone_fd().unwrap();
        assert!(PodSlice::<u32>::from_fd(fd(), 2, None).is_err()); // tag
        assert!(PodSlice::<u64>::from_fd(fd(), 1, None).is_err()); // size
        assert!(PodSlice::<u32>::from_fd(fd(), 1, Some(5)).is_err()); // len
        assert!(PodSlice::<u32>::from_fd(fd(), 1, Some(4)).is_ok());
        // a region that is not ours at all
        let r = ShmRegion::create("t", 4096).unwrap();
        assert!(PodSlice::<u32>::from_fd(r.try_clone_fd().unwrap(), 1, None).is_err());
        // a header claiming more elements than the memory holds
        r.atomic_u32(OFF_MAGIC).store(MAGIC, Ordering::Relaxed);
        r.atomic_u32(OFF_TAG).store(1, Ordering::Relaxed);
        r.atomic_u32(OFF_SIZE).store(4, Ordering::Relaxed);
        r.atomic_u32(OFF_ALIGN).store(4, Ordering::Relaxed);
        r.atomic_u64(OFF_LEN).store(1 << 40, Ordering::Relaxed);
        assert!(PodSlice::<u32>::from_fd(r.try_clone_fd().unwrap(), 1, None).is_err());
        r.atomic_u64(OFF_LEN).store(u64::MAX, Ordering::Relaxed);
        assert!(PodSlice::<u32>::from_fd(r.try_clone_fd().unwrap(), 1, None).is_err());
        r.atomic_u64(OFF_LEN).store(1000, Ordering::Relaxed);
        assert_eq!(
            PodSlice::<u32>::from_fd(r.try_clone_fd().unwrap(), 1, None)
                .unwrap()
                .len(),
            1000
        );
    }

    #[test]
    fn raw_access_checks_bounds() {
        let a = PodSlice::<u16>::from_slice("t", 1, &[5, 6]).unwrap();
        // SAFETY: single-threaded test, no other mapping exists.
        unsafe {
            assert_eq!(a.read(1), Some(6));
            assert_eq!(a.read(2), None);
            assert!(a.write(0, 9));
            assert!(!a.write(2, 9));
            assert_eq!(a.as_mut_slice(), &[9, 6]);
        }
    }

    #[test]
    fn atomics_only_for_fitting_types() {
        let a = PodCells::<u32>::zeroed("t", 1, 2).unwrap();
        a.atomic_u32(1).unwrap().fetch_add(3, Ordering::SeqCst);
        assert!(a.atomic_u32(2).is_none());
        assert!(a.atomic_u64(0).is_none());
        // SAFETY (test): single-threaded, nothing writes during the reads
        assert_eq!(unsafe { (a.read(0), a.read(1)) }, (Some(0), Some(3)));
        let b = PodCells::<f64>::zeroed("t", 1, 1).unwrap();
        b.atomic_u64(0)
            .unwrap()
            .store(2.5f64.to_bits(), Ordering::SeqCst);
        // SAFETY (test): as above
        assert_eq!(unsafe { b.read(0) }, Some(2.5));
        assert!(PodCells::<u8>::zeroed("t", 1, 8)
            .unwrap()
            .atomic_u32(0)
            .is_none());
    }

    #[test]
    fn integer_atomics_share_memory_across_mappings() {
        let a = PodCells::<i16>::from_slice("t", 1, &[5, -1, 7]).unwrap();
        let b = PodCells::<i16>::from_fd(a.try_clone_fd().unwrap(), 1, None).unwrap();
        let (x, y) = (a.atomic(1).unwrap(), b.atomic(1).unwrap());
        assert_eq!(i16::fetch_add(x, 3, Ordering::SeqCst), -1);
        assert_eq!(i16::load(y, Ordering::SeqCst), 2);
        assert_eq!(i16::fetch_sub(y, 4, Ordering::SeqCst), 2);
        assert_eq!(i16::swap(x, 100, Ordering::SeqCst), -2);
        assert_eq!(
            i16::compare_exchange(y, 1, 9, Ordering::SeqCst, Ordering::SeqCst),
            Err(100)
        );
        assert_eq!(
            i16::compare_exchange(y, 100, 9, Ordering::SeqCst, Ordering::SeqCst),
            Ok(100)
        );
        i16::store(x, i16::MAX, Ordering::SeqCst);
        assert_eq!(i16::fetch_add(y, 1, Ordering::SeqCst), i16::MAX);
        assert_eq!(
            i16::load(x, Ordering::SeqCst),
            i16::MIN,
            "wraps as std does"
        );
        assert!(a.atomic(3).is_none());

        // SAFETY (test): single-threaded, nothing writes during the reads
        assert_eq!(unsafe { a.read(1) }, Some(i16::MIN));
        // every element of every integer width is reachable and aligned
        let u = PodCells::<u64>::zeroed("t", 1, 3).unwrap();
        for i in 0..3 {
            u64::fetch_add(u.atomic(i).unwrap(), i as u64 + 1, Ordering::SeqCst);
        }
        // SAFETY (test): as above
        assert_eq!(unsafe { u.read(2) }, Some(3));
        let z = PodCells::<usize>::zeroed("t", 1, 1).unwrap();
        assert_eq!(
            usize::fetch_sub(z.atomic(0).unwrap(), 1, Ordering::SeqCst),
            0
        );
        assert_eq!(
            usize::load(z.atomic(0).unwrap(), Ordering::SeqCst),
            usize::MAX
        );
    }

    #[test]
    fn a_guard_and_atomic_views_never_share_one_view() {
        // the same memory as cells and as a locked slice: two views (like two processes);
        // within each view, only one discipline exists
        let cells = PodCells::<u32>::from_slice("t", 1, &[1]).unwrap();
        let locked = PodSlice::<u32>::from_fd(cells.try_clone_fd().unwrap(), 1, None).unwrap();
        let (mut g, _) = locked.lock(None).unwrap();
        g[0] = 2;
        drop(g);
        assert_eq!(cells.atomic_u32(0).unwrap().load(Ordering::SeqCst), 2);
    }

    #[test]
    fn empty_and_overaligned() {
        let e = PodSlice::<u8>::zeroed("t", 1, 0).unwrap();
        assert!(e.is_empty());
        assert_eq!(e.lock(None).unwrap().0.len(), 0);
        assert!(PodSlice::<u64>::zeroed("t", 1, usize::MAX / 4).is_err());
        #[derive(Clone, Copy)]
        #[repr(C, align(128))]
        struct Big([u8; 128]);
        // SAFETY: plain bytes, no padding (size 128 == align).
        unsafe impl bytemuck::Zeroable for Big {}
        // SAFETY: as above.
        unsafe impl Pod for Big {}
        let b = PodSlice::<Big>::zeroed("t", 1, 3).unwrap();
        assert_eq!(b.as_ptr() as usize % 128, 0);
        assert_eq!(b.lock(None).unwrap().0.len(), 3);
    }
}
