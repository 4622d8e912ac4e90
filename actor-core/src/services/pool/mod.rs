//! [`Pool`]: Python's `multiprocessing.Pool`, which never hangs when a worker dies.
//!
//! # How it works
//!
//! Each worker process has its own task ring (a [`Queue`](crate::queue::Queue)) and a small shared cell
//! naming the chunk it is running; all workers put their results on one result ring,
//! which a collector thread (the pool's *result thread*) reads and routes to whoever
//! waits (a `map`, an `imap` iterator, an [`AsyncResult`], a callback). The pool
//! therefore knows, at every moment, which chunks sit in which worker's ring. A caller
//! waiting in [`AsyncResult::get`] for a task without callbacks reads the result ring
//! itself meanwhile, handing the result thread whatever else it finds there, so that a
//! round trip costs no hop through that thread (see `direct.rs`).
//!
//! **Handles as task arguments.** A chunk whose arguments hold procactor handles (a
//! `Queue`, a `Lock`, a `Value`, a Pipe's `Connection`…) cannot travel through shared
//! memory: its arguments go, with their descriptors (`SCM_RIGHTS`), over a socket of
//! the worker's own, and only a marker goes into the ring, at the chunk's place. Chunks
//! without handles take the ring alone, as fast as before. The pool keeps a handle
//! chunk's encoded arguments until it finishes, so that a replacement worker can be
//! sent them again.
//!
//! When a worker dies (a signal, an abort, the OOM killer) the exit watcher puts a
//! notice on the result ring *behind* every result the dead worker published; when the
//! collector reaches it, it takes back what is still queued in that worker's ring,
//! fails exactly the chunks that are neither queued nor finished — the one the worker was
//! running (or had half taken) — with [`TaskError::WorkerDied`], starts a replacement on
//! the same ring and puts the queued chunks back. Nothing is lost, nothing runs twice,
//! and no call waits forever.
//!
//! A task that panics is caught in the worker: its item gets [`TaskError::Panicked`],
//! the rest of its chunk and the worker go on. The panic is not printed on the worker's
//! stderr (Python's pool does not print a task's exception either: it goes back to the
//! caller) unless `PROCACTOR_LOG=debug` (or `trace`) is set.
//!
//! # Chunks
//!
//! `map` and friends send items in chunks (one message and one result per chunk). The
//! default chunk size is Python's: `len / (4 × processes)`, rounded up; `imap` and
//! `imap_unordered` default to 1, as in Python. A worker that dies takes its whole chunk
//! with it: each item of that chunk gets `WorkerDied`. `maxtasksperchild` counts chunks,
//! as Python counts its tasks.
//!
//! # imap runs eagerly, with a bounded window
//!
//! As in Python, `imap` and `imap_unordered` submit their tasks at the call: the pool's
//! feeder thread (one per pool, Python's task handler) reads every input, a chunk of
//! each in turn, and submits the chunks whether or not the results are read, so
//! `pool.imap(f, items)` followed by `close()` and `join()` runs every task. Unlike
//! Python, which reads the whole input at once, the feeder keeps at most
//! [`IMAP_WINDOW_PER_WORKER`] × `processes` chunks of one input submitted and not yet read
//! ([`Imap::window`]): an endless input works with flat memory. While [`Pool::join`]
//! waits, the window does not hold the feeder back (results then wait for their reader
//! in memory, as in Python). An input whose `next` blocks holds back the other `imap` and
//! `map` inputs of the pool (as in Python), not `apply_async`/`map_async`.
//!
//! Once an iterator is dropped, its results are thrown away and its input is read at
//! most one window further (so a dropped `imap` over an endless input stops), unless
//! [`Pool::close`] comes first: then all of it is read, as Python's `close(); join()`
//! does.
//!
//! # Submission never waits for a worker
//!
//! Chunks go into the pool's submission queue, from which the caller itself, the result
//! thread and a dispatcher thread give each worker what it has room for (see [`Pool`],
//! "Submission", for the window that bounds memory). A handle chunk's frame is written
//! to the worker's socket without blocking, as the socket takes it; a write that fails
//! (a descriptor limit, say) kills that worker, which would otherwise wait for the frame
//! for ever: it is replaced, the chunk whose frame failed fails with
//! [`TaskError::Failed`] saying so (it is not sent again: a lasting failure would kill
//! worker after worker), its other queued chunks go back to the submission queue and
//! the chunk it was running fails with [`TaskError::WorkerDied`]. A chunk a ring
//! refuses fails with [`TaskError::Failed`]; a result the pool cannot decode gets the
//! workers that may have sent it replaced, so the chunk it was for fails too: nothing
//! waits for ever.
//!
//! # Worker names
//!
//! Workers are named as Python names them: `SpawnPoolWorker-N`, `ForkServerPoolWorker-N`
//! or `ForkPoolWorker-N` by start method, `N` counting from 1 over every pool worker this
//! process started (a replacement gets the next number). Python's `N` is the counter
//! of every child process; procactor counts pool workers alone.

mod async_result;
mod builder;
mod direct;
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
pub mod fault;
mod feed;
mod feeder;
mod imap;
mod inner;
mod lifecycle;
mod observed;
mod ops;
mod results;
mod role;
mod state;
mod task_error;
#[cfg(test)]
mod tests;
mod wire;
mod worker;

pub use async_result::AsyncResult;
pub use builder::{Pool, PoolBuilder};
pub use imap::Imap;
pub use lifecycle::DROP_WAIT;
pub use state::{
    IMAP_WINDOW_PER_WORKER, SUBMIT_WINDOW_BYTES, SUBMIT_WINDOW_CHUNKS, SUBMIT_WINDOW_FDS,
};
pub use task_error::TaskError;
pub use wire::FnRef;

/// Without the `test-hooks` feature: no fault injection. The counters are zero-sized
/// and never fire; their checks are a constant `false` the compiler removes.
#[cfg(not(feature = "test-hooks"))]
mod fault {
    pub(super) struct Counter;

    impl Counter {
        pub(super) const fn new() -> Self {
            Counter
        }

        #[inline(always)]
        pub(super) fn hit(&self) -> bool {
            false
        }
    }
}
