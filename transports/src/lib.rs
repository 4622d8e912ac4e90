//! Byte-level channels and OS plumbing for procactor.
//!
//! This crate knows bytes, file descriptors and the operating system; it knows nothing
//! about serde, processes-as-actors or typed messages (that is `procactor-core`). Every
//! `unsafe` block of the procactor workspace lives here, each with a `// SAFETY:`
//! comment and a test.
//!
//! - [`shm`]: a memfd-backed shared mapping ([`shm::ShmRegion`]), passed between
//!   processes as a file descriptor.
//! - [`futex`]: wait/wake on a `u32` in shared memory, with deadlines.
//! - [`journal`]: a commit journal in shared memory (a multi-word change that a process
//!   killed half-way leaves undone or completable).
//! - [`conn`]: authenticated byte channels between programs (TCP or local socket names,
//!   HMAC-SHA-256 challenge/response, bounded frames).
//! - [`fdpass`]: sending and receiving file descriptors alongside bytes (`SCM_RIGHTS`).
//! - [`frame`]: length-prefixed frames over a stream socket, read into reusable buffers.
//! - [`socket`]: Unix stream socket options (buffer sizes, half-close).
//! - [`os`]: process plumbing: self re-execution, pidfds, signals, parent-death signal,
//!   polling.
//! - [`pod`]: typed views of `Pod` elements in a shared region, behind a robust lock.
//! - [`ring`]: the shared-memory byte ring behind `Queue` (streaming, robust recovery).
//! - [`robust`]: a robust process-shared mutex on a `u32` (dead owners are detected).
//! - [`spin`]: the `PROCACTOR_SPIN=0` switch that turns off every spin-before-sleep.
//! - [`target`]: function targets identified by their address relative to the image.
//!
//! All OS-specific code sits in `sys/` (today `sys/linux/`); the modules above re-export
//! it, so nothing above this crate needs `cfg`.

mod sys;

pub mod conn;
pub mod fdpass;
pub mod frame;
pub mod futex;
pub mod journal;
pub mod os;
pub mod pod;
pub mod ring;
pub mod robust;
pub mod shm;
pub mod socket;
pub mod spin;
pub mod target;
#[doc(hidden)]
pub mod testing;

pub use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
