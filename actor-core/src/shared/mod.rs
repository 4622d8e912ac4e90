//! Shared state: [`Value`], [`Array`], [`RawValue`], [`RawArray`] (Python's
//! `multiprocessing.Value`, `Array`, `RawValue`, `RawArray`).
//!
//! Each is one anonymous shared-memory region (a memory file with no file-system name)
//! holding a robust lock word and the [`Pod`](crate::Pod) data. Handles are cheap to
//! clone and travel to children inside a [`Process`](crate::Process)'s arguments (or
//! through a Pipe): the receiving process maps the same memory. Only processes handed a
//! handle can reach it.
//!
//! # Locking and dead holders
//!
//! [`Value::lock`] and [`Array::lock`] return a guard that derefs to the data and
//! releases the lock on drop, like [`std::sync::Mutex::lock`]. If the process that held
//! the lock died while holding it, the next `lock()` still acquires it (nobody ever
//! hangs on a dead holder) and says so with
//! [`Err(LockError::OwnerDied(guard))`](crate::error::LockError::OwnerDied): the data
//! may be half-updated; take the guard with
//! [`LockError::into_inner`](crate::error::LockError::into_inner) and repair or carry
//! on. The shortcut methods (`get`, `set`, `to_vec`) take the lock the same way and
//! ignore that report.
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
//! This directory is the *shared state* layer: [`Value`], [`Array`] and the raw
//! [`RawValue`]/[`RawArray`] (one file each, on the leaf `handle` they share) and the
//! cross-process synchronisation primitives ([`sync`]). It builds on the channels and
//! process layers.

pub mod sync;

mod array;
mod handle;
mod raw;
mod value;

pub use array::{Array, ArrayGuard};
pub use procactor_transports::pod::AtomicInt;
pub use raw::{RawArray, RawValue};
pub use value::{Value, ValueGuard};

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
}
