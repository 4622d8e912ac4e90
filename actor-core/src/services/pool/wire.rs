//! What travels between the pool and its workers: the task ring's and the result
//! ring's messages, function references, a worker's boot and its shared cell.

use crate::codec::{Encoded, RecvFd, SendFd};
use crate::queue::Queue;
use crate::shared::RawArray;
use crate::Bytes;
use procactor_transports::target::{self, TargetRef};
use procactor_transports::{AsFd, OwnedFd};
use serde::{Deserialize, Serialize};

// ------------------------------------------------------------------ wire

/// What a worker's task ring carries.
#[derive(Serialize, Deserialize)]
pub(super) enum TaskMsg {
    /// A function the following chunks call: id, binder, target.
    #[serde(rename = "f")]
    Register(u32, FnRef, FnRef),
    /// Run chunk `id` with function `f` over the CBOR of a `Vec<A>`.
    #[serde(rename = "r")]
    Run(u64, u32, Bytes),
    /// Run chunk `id` with function `f`; its arguments hold handles and come, with their
    /// descriptors, as the next frame on the worker's task socket.
    #[serde(rename = "s")]
    RunSocket(u64, u32),
}

/// A function reference as it travels: image-relative address, type name and the MAC
/// that lets a process of this tree resolve it (see `procactor_transports::target`).
/// Public (hidden) for `procactor-redis`, whose local workers receive theirs the same way.
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FnRef(pub i64, pub String, pub u64);

impl FnRef {
    /// Describes function pointer `f`.
    pub fn of<F: Copy + 'static>(f: F) -> FnRef {
        FnRef::from(target::describe(f))
    }
    /// The reference as `procactor_transports::target` resolves it (which checks its
    /// MAC).
    pub fn target(&self) -> TargetRef {
        TargetRef::from_parts(self.0, self.1.clone(), self.2)
    }
}

impl From<TargetRef> for FnRef {
    fn from(t: TargetRef) -> FnRef {
        let (offset, name, mac) = t.into_parts();
        FnRef(offset, name, mac)
    }
}

/// What the result ring carries.
#[derive(Serialize, Deserialize)]
pub(super) enum ResultMsg {
    /// Chunk `id` is done (by worker slot `w`): the CBOR of its results, or why the whole
    /// chunk failed.
    #[serde(rename = "d")]
    Done(u64, u32, Result<Bytes, String>),
    /// Worker `i` has exited (put by the pool's exit watcher, behind the worker's last
    /// result).
    #[serde(rename = "x")]
    Exited(u32),
    /// The collector should end (the pool is gone).
    #[serde(rename = "q")]
    Quit,
    /// Whoever reads: look at the reader role, or at your own result (see `direct`).
    #[serde(rename = "y")]
    Yield,
}

/// What a worker puts on the result ring: a [`ResultMsg::Done`] as the collector reads
/// it, or (fault injection only, with the `test-hooks` feature) an item the collector
/// cannot decode.
#[derive(Serialize, Deserialize)]
pub(super) enum WorkerResult {
    #[serde(rename = "d")]
    Done(u64, u32, Result<Bytes, String>),
    /// Not a `ResultMsg`: undecodable for the collector.
    #[cfg(feature = "test-hooks")]
    #[serde(rename = "garbage")]
    Garbage(u64),
}

/// A chunk's results as the worker encodes them: all values when nothing panicked,
/// else one `Result` per item.
pub(super) type ChunkOut<R> = Result<Vec<R>, Vec<Result<R, String>>>;
/// Words of a worker's cell: the chunk it runs, 1 once it is ready (initialized), and
/// how many results it has started to put on the result ring; then its statistics
/// (written by the worker, read by the observer; they stay with the slot across
/// replacements): tasks finished, tasks failed, and the histogram of the time each
/// chunk took to run (see `crate::stats`).
pub(super) const CELL_CHUNK: usize = 0;
pub(super) const CELL_READY: usize = 1;
pub(super) const CELL_SENT: usize = 2;
pub(super) const CELL_TASKS: usize = 3;
pub(super) const CELL_ERRORS: usize = 4;
pub(super) const CELL_TASK_TIME: usize = 5;
pub(super) const CELL_WORDS: usize = CELL_TASK_TIME + crate::stats::HISTOGRAM_BUCKETS + 1;
/// A worker's end of its task socket, as it travels in its boot.
pub(super) struct TaskSocket(pub(super) OwnedFd);

impl Serialize for TaskSocket {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        SendFd(self.0.as_fd()).serialize(s)
    }
}

impl<'de> Deserialize<'de> for TaskSocket {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        RecvFd::deserialize(d).map(|f| TaskSocket(f.0))
    }
}

/// What a worker process receives.
#[derive(Serialize, Deserialize)]
pub(super) struct WorkerBoot {
    pub(super) tasks: Queue<TaskMsg>,
    pub(super) results: Queue<WorkerResult>,
    /// Its slot (named in its results).
    pub(super) slot: u32,
    pub(super) cell: RawArray<u64>,
    /// Its end of the task socket (chunks whose arguments hold handles).
    pub(super) sock: TaskSocket,
    pub(super) fns: Vec<(u32, FnRef, FnRef)>,
    pub(super) init: Option<(FnRef, FnRef, Encoded)>,
    pub(super) maxtasks: u64,
}

#[derive(Serialize)]
pub(super) struct WorkerBootRef<'a> {
    pub(super) tasks: &'a Queue<TaskMsg>,
    pub(super) results: &'a Queue<ResultMsg>,
    pub(super) slot: u32,
    pub(super) cell: &'a RawArray<u64>,
    pub(super) sock: SendFd<'a>,
    pub(super) fns: &'a [(u32, FnRef, FnRef)],
    pub(super) init: Option<(&'a FnRef, &'a FnRef, Encoded)>,
    pub(super) maxtasks: u64,
}
