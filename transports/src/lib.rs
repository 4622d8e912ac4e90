//! Byte-level channels and OS plumbing for procactor.
//!
//! This crate knows bytes, file descriptors and the operating system; it knows nothing
//! about serde, processes-as-actors or typed messages (that is `procactor-core`). Every
//! `unsafe` block of the procactor workspace lives here, each with a `// SAFETY:`
//! comment and a test.
//!
//! # Public surface
//!
//! This crate is procactor's plumbing, not an API of its own: every public module is here
//! because `procactor-core` (or `procactor-redis`, the benchmark, the tests) uses it, and
//! what no other crate uses is `pub(crate)` (raw futex calls, `set_cloexec`, the
//! pid-start tags, the spin state, the kill-point variables…). The surface, by user:
//!
//! - [`shm`]: a memfd-backed shared mapping ([`shm::ShmRegion`]), passed between
//!   processes as a file descriptor — core (`Value`, `Array`, queues), tests.
//! - [`ring`]: the shared-memory byte ring behind `Queue` (streaming, robust recovery,
//!   the overflow area of unbounded queues) — core's queues and mailboxes.
//! - [`pod`]: typed views of `Pod` elements in a shared region, behind a robust lock —
//!   core's `Value`/`Array`/`RawValue`.
//! - [`robust`]: a robust process-shared mutex on a `u32` (dead owners are detected) —
//!   core's `Lock`/`RLock`/`Condition`.
//! - [`waiter`]: the futex waiter handshake (never a lost wake-up, no system call when
//!   nobody sleeps), generic so that it is model-checked under loom — core's
//!   `Semaphore`, `Event`, `Condition`, `Barrier`, `JoinableQueue`, process joins.
//! - [`futex`]: only [`futex::WaitOutcome`], the answer of a wait in [`waiter::Futex`]
//!   (the raw wait and wake are crate-private: every sleeper goes through [`waiter`]).
//! - [`journal`]: a commit journal in shared memory (a multi-word change that a process
//!   killed half-way leaves undone or completable) — core's `Barrier`.
//! - [`frame`]: length-prefixed frames over a stream socket, read into reusable buffers
//!   — core's pipes, the child's control socket, the fork server; tests.
//! - [`fdpass`]: sending and receiving file descriptors alongside bytes (`SCM_RIGHTS`)
//!   — core's codec (handles travel as descriptors), Pool handle chunks.
//! - [`socket`]: Unix stream socket options (buffer sizes, half-close) — core's `Pipe`.
//! - [`conn`]: authenticated byte channels between programs (TCP or local socket names,
//!   HMAC-SHA-256 challenge/response, bounded frames) — core's remote `Manager`.
//! - [`observe`]: the abstract socket a program serves its snapshot on, the peer's uid,
//!   a process's USS/PSS/CPU time from `/proc` — core's `observe`.
//! - [`os`]: process plumbing: self re-execution, pidfds, signals, parent-death signal,
//!   liveness, polling — core's process layer, tests, the benchmark.
//! - [`target`]: function targets identified by their address relative to the image,
//!   MAC'd with the process tree's key — core's `Target`, the Redis pool.
//! - [`deadline`]: the one deadline type (`Duration::MAX` = for ever) — core, Redis.
//! - [`spin`]: the `PROCACTOR_SPIN=0` switch and the self-pausing spin budget — core's
//!   actors, joins and connections.
//! - [`killpoint`]: named places where a test makes the process die (`SIGKILL`) or
//!   pause, compiled in only for tests and the `kill-points` feature — core's tests.
//! - `testing` (`#[doc(hidden)]`): helpers for this workspace's tests only.
//!
//! All OS-specific code sits in `sys/` (today `sys/linux/`); the modules above re-export
//! it, so nothing above this crate needs `cfg`.
//!
//! # Shared memory and untrusted peers: the model
//!
//! Every process holding a handle (a descriptor) to a shared region can write any byte of
//! it at any time; it may be buggy, hostile, frozen mid-operation or killed. This crate
//! keeps these promises to the *other* processes:
//!
//! - **No fault.** Memory files are sealed against shrinking and growing once sized, and
//!   a received descriptor without those seals is refused before it is mapped
//!   ([`shm::ShmRegion`]): a peer cannot make our mappings raise `SIGBUS`.
//! - **Nothing derived from shared bytes indexes our memory unchecked.** Sizes, counts,
//!   offsets and tags in shared headers are read with atomic loads, and either copied once
//!   into private memory and validated (a [`pod::PodSlice`]'s element count and layout,
//!   checked against the file size at mapping time) or validated at each use; a bad value
//!   is an error for that object, never an out-of-bounds access, a panic or a hang.
//! - **Shared words are atomics.** Lock words, counters and ring indices are read and
//!   written only through `Atomic*` references ([`shm::ShmRegion::atomic_u32`]), never
//!   through a plain `&u32` a peer could change underneath.
//! - **Elements are plain old data.** The only plain (non-atomic) references into shared
//!   memory are a [`pod::PodGuard`]'s `&[T]`/`&mut [T]` with `T: Pod` (every bit pattern
//!   valid), held while the robust lock is ours. A peer that writes them without the lock
//!   breaks the protocol and can make us read a garbage `T` — never an invalid value, a
//!   pointer or a length. The guard's lock word is private to its view and a view has no
//!   atomic accessors, so no safe code of this process can make two guards, or a guard
//!   and an atomic view, alias through one view.
//! - **Liveness errs on "alive".** A lock owner is declared dead only on the kernel's
//!   word (see [`robust`] and [`os::incarnation_alive`]): a frozen or unreadable owner
//!   keeps its lock; waiters time out instead.
//!
//! What a peer *can* do: corrupt the values it shares (garbage in, garbage out), hold a
//! lock forever (waiters with a deadline time out), make a shared object report itself
//! broken, and waste memory up to the region's fixed size.
//!
//! Over sockets and pipes, the same: a frame header's announced length costs the reader
//! at most 64 KiB (or as much as already arrived) ahead of the bytes that really came
//! ([`frame::FrameReader`]); descriptors a frame did not announce are closed when its
//! bytes are consumed, and a frame carrying more than it announced breaks the connection
//! with an error. Function references ([`target::TargetRef`]) resolve only when a process
//! of this program's process tree described them (a MAC keyed with the tree's secret),
//! so no safe code can turn bytes into a jump to an address of its choosing.

mod sys;

pub mod conn;
pub mod deadline;
pub mod fdpass;
pub mod frame;
pub mod futex;
pub mod journal;
pub mod killpoint;
pub mod observe;
pub mod os;
pub mod pod;
pub mod ring;
pub mod robust;
pub mod shm;
pub mod socket;
pub mod spin;
pub mod target;
pub mod waiter;
pub mod watch;

#[cfg(all(test, loom))]
mod loom_tests;
#[doc(hidden)]
pub mod testing;

pub use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
