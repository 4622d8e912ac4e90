//! Queues: [`Queue`], [`SimpleQueue`] and [`JoinableQueue`] on a shared-memory ring.
//!
//! A queue is one shared-memory region (a [`Ring`](procactor_transports::ring::Ring)):
//! `put` serializes the item (CBOR, into a reused per-thread buffer) *before* taking the
//! writer lock, then copies the bytes into the ring; `get` copies a message out under the
//! reader lock and decodes it after releasing the lock. An uncontended `put`/`get` makes
//! no system call. There is **no feeder thread**: when `put` returns, the item is in
//! shared memory, so a process may exit right after `put` without losing it and without
//! hanging at exit (Python's "joining a process that has put items" deadlock does not
//! exist here).
//!
//! # Unbounded queues
//!
//! As in Python, a queue without `maxsize` is really unbounded: `put` never waits and
//! never fails for lack of room while memory lasts. Its memory file holds a small *hot*
//! ring (256 KiB by default), used while consumers keep up, and a large sparse *overflow
//! area* (64 GiB of address range in the same file, taking memory only for the backlog
//! actually in it, given back as consumers drain it). A producer that finds the hot ring
//! full, or an item larger than it, appends to the overflow area instead of waiting;
//! consumers follow in order. (An item larger than the hot ring put while a consumer is
//! inside `get` is streamed to it through the hot ring instead, as in a bounded queue;
//! if that consumer stops taking pieces for 1 ms, the item goes to the overflow area.) Only a backlog of 64 GiB would make `put` wait. Bounded
//! queues ([`Queue::bounded`]) keep their back-pressure: `put` waits at `maxsize` items.
//!
//! # Producers and `Disconnected`
//!
//! Every open handle — the one `new` returns, each [`Clone`], each handle a child
//! deserializes from its arguments — counts as a *producer*, until it is
//! [`close`](Queue::close)d or dropped. (A handle can both put and get, as in Python.)
//! The queue records which processes hold producer handles; when a `get` finds the queue
//! empty and no producer handle left in a live process, it returns
//! [`GetError::Disconnected`](crate::error::GetError::Disconnected) instead of waiting
//! for an item nobody can put — also when the producers were killed with `SIGKILL`. A
//! consumer that will never put should therefore `close()` its own handle: while the
//! caller's own handle is open, the caller itself could still put, and `get` keeps
//! waiting.
//!
//! A handle serialized into a child's arguments counts as a producer of the sending
//! process until the child has decoded it, so a queue cannot look disconnected while a
//! handle is on its way. If those bytes are never decoded (the child was killed during
//! start-up), the count stays with the sender until the sender exits. A message that
//! does not go out at all (the rest of it fails to encode, the Pipe's peer is gone, the
//! child cannot be started) takes its count back at once.
//!
//! # Async
//!
//! `get_async` and `put_async` (all three types) and `JoinableQueue::join_async` wait as
//! futures, on any executor; a dropped `get_async` never loses an item. A queue can also
//! be waited for with [`wait`](crate::wait) / [`wait_async`](crate::wait_async) next to
//! pipes, processes and events.
//!
//! # Killed processes
//!
//! A process killed in the middle of a `put` or `get` — even while streaming a message
//! larger than the ring — never makes another process hang or receive a torn message:
//! the next process to take the lock completes or aborts the dead one's operation and
//! the queue goes on working. The item being put by the dead process is lost, and so is
//! the item a dead consumer had started to take. Only corrupted shared memory makes the
//! queue *broken*, and every operation then says so
//! ([`GetError::Broken`](crate::error::GetError::Broken),
//! [`PutError::Broken`](crate::error::PutError::Broken)).
//!
//! # Examples
//!
//! ```
//! use procactor_core::{Process, Queue};
//!
//! fn produce(q: Queue<String>) {
//!     q.put("Hello World".to_string()).unwrap();
//! }
//!
//! fn main() {
//!     procactor_core::init();
//!     let q: Queue<String> = Queue::new().unwrap();
//!     let mut p = Process::new(produce, q.clone()).start().unwrap();
//!     assert_eq!(q.get().unwrap(), "Hello World");
//!     p.join().unwrap();
//! }
//! ```

// One type per file, each building only on the files before it: `handle` (one handle on
// the ring: encode/decode buffers, producer counting, the handle's wire format) →
// `mpmc` (`Queue`, `QueueBuilder`) → `simple`, `joinable` (each adds its own
// `QueueBuilder::build_*`) → `iter`; `reply` (the numbered-reply wait the actor runtime
// and the manager share) builds on `mpmc`.
mod asynch;
mod handle;
mod iter;
mod joinable;
mod mpmc;
mod named;
mod reply;
mod simple;

pub use iter::{QueueIter, QueueTryIter};
pub use joinable::JoinableQueue;
pub use mpmc::{Queue, QueueBuilder, DEFAULT_CAPACITY_BYTES};
pub(crate) use reply::{await_reply, await_reply_async, NoReply, REPLY_SPIN};
pub use simple::SimpleQueue;

#[cfg(test)]
mod tests;
