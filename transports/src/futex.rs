//! Blocking on a `u32` in shared memory: the one place that sleeps on shared memory.
//!
//! The futexes are *shared* (not `FUTEX_PRIVATE_FLAG`), so a waiter in one process is
//! woken by a waker in another process that maps the same [`crate::shm::ShmRegion`].
pub use crate::sys::futex::WaitOutcome;
pub(crate) use crate::sys::futex::{wait, wait_any, wake, AnyOutcome, AnyWord, WAIT_ANY_MAX};
