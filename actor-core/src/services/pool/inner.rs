//! The pool's shared core: starting workers, accepting chunks into the submission
//! queue, giving them to workers (`place`), writing handle frames (`pump`), and the
//! dispatcher thread.

use super::fault;
use super::feed::{Source, Wake};
use super::role::Role;
use super::state::{
    all_broken, closed, fail_pending, run_sinks, Finished, InitArgs, Payload, Pending, Phase, Sink,
    State, Sub, NO_WORKER,
};
use super::task_error::TaskError;
use super::wire::{FnRef, ResultMsg, TaskMsg, WorkerBootRef, CELL_SENT};
use super::worker::{bind, worker_main, BindFn};
use crate::codec::SendFd;
use crate::error::{Error, SpawnError};
use crate::monitor::ExitRoute;
use crate::process::{start_encoded_via, Process};
use crate::queue::Queue;
use crate::runtime::StartMethod;
use crate::shared::RawArray;
use crate::Message;
use procactor_transports::fdpass;
use procactor_transports::target::{self, Target};
use procactor_transports::{AsFd, OwnedFd};
use std::any::TypeId;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The process-wide number of the next pool worker (Python's `…PoolWorker-N`).
pub(super) static WORKER_NUMBER: AtomicU64 = AtomicU64::new(1);
pub(super) struct Inner {
    /// Its name, as its observer shows it.
    pub(super) name: String,
    pub(super) st: Mutex<State>,
    /// Signalled when a chunk finishes (while someone waits: `cv_waiters`).
    pub(super) cv: Condvar,
    /// Signalled when the dispatcher has work (while it waits: `dispatcher_waiting`).
    pub(super) dcv: Condvar,
    pub(super) processes: usize,
    /// The pool's handle on the result ring: it puts exit notices and `Quit`.
    pub(super) results: Queue<ResultMsg>,
    pub(super) init: Option<(FnRef, FnRef, InitArgs)>,
    pub(super) maxtasks: u64,
    /// How workers start.
    pub(super) method: StartMethod,
    /// With `StartMethod::Fork`: the copy of the owner, made at `build`, that forks the
    /// workers.
    pub(super) zygote: Option<Arc<crate::forkserver::Zygote>>,
    /// Each worker's task ring (put into under the state lock).
    pub(super) rings: Vec<Queue<TaskMsg>>,
    /// Set by the exit watcher when worker `i` exits (or by the pool when it kills it),
    /// cleared when it is replaced.
    pub(super) dead: Vec<AtomicBool>,
    /// `imap`/`map` inputs still being read.
    pub(super) feeders: AtomicUsize,
    /// `close` (or `join`/`terminate`) was called: dropped `imap`s read on.
    pub(super) closing: AtomicBool,
    /// `join` waits: inputs ignore their window.
    pub(super) joining: AtomicBool,
    /// `terminate` was called: inputs stop.
    pub(super) terminated: AtomicBool,
    /// The pool is being dropped: its threads end.
    pub(super) quit: AtomicBool,
    /// New `imap`/`map` inputs for the reader thread.
    pub(super) sources: Mutex<Option<crossbeam_channel::Sender<Source>>>,
    /// Wakes the reader thread.
    pub(super) wake: Arc<Wake>,
    /// The result thread (a callback on it that submits must not wait for the window).
    pub(super) collector: std::sync::OnceLock<std::thread::ThreadId>,
    /// Fault injection (`fault`, with the `test-hooks` feature only): frame writes and
    /// ring puts still to fail.
    pub(super) fail_frames: fault::Counter,
    pub(super) fail_puts: fault::Counter,
    /// Where the monitor sends the exits of this pool's workers (and only theirs): set
    /// before the first worker starts.
    pub(super) route: std::sync::OnceLock<ExitRoute>,
    /// Who reads the result ring: the result thread, or a caller waiting for its
    /// result (see `direct`).
    pub(super) role: Role,
}

impl Inner {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a worker process for slot `i` (without the state lock: spawning takes
    /// time): its process, the pool's end of its socket, and how many functions its boot
    /// carried.
    pub(super) fn spawn_worker(
        &self,
        i: usize,
        cell: &RawArray<u64>,
        fns: &[(u32, FnRef, FnRef)],
    ) -> Result<(Process<()>, Arc<OwnedFd>), SpawnError> {
        let init = match &self.init {
            None => None,
            Some((t, f, args)) => Some((t, f, args()?)),
        };
        let (ours, theirs) = fdpass::socketpair()?;
        let boot = WorkerBootRef {
            tasks: &self.rings[i],
            results: &self.results,
            slot: i as u32,
            cell,
            sock: SendFd(theirs.as_fd()),
            fns,
            init,
            maxtasks: self.maxtasks,
        };
        let prefix = match (self.zygote.is_some(), self.method) {
            (true, _) | (_, StartMethod::Fork) => "Fork",
            (false, StartMethod::ForkServer) => "ForkServer",
            (false, StartMethod::Spawn) => "Spawn",
        };
        let n = WORKER_NUMBER.fetch_add(1, Ordering::Relaxed);
        let p = start_encoded_via(
            worker_main,
            &boot,
            Some(format!("{prefix}PoolWorker-{n}")),
            true,
            Some(self.method),
            None,
            self.zygote.as_deref(),
        )?;
        if let Some(route) = self.route.get() {
            if let Err(e) = route.watch(p.child_state()) {
                // its end would go unnoticed: not kept
                let _ = p.kill();
                return Err(SpawnError::Io(e));
            }
        }
        Ok((p, Arc::new(ours)))
    }

    /// Records a started worker in slot `i` (`known`: the functions its boot carried).
    /// An exit the watcher saw before this (a worker dying at once) is replayed.
    pub(super) fn install(
        &self,
        st: &mut State,
        i: usize,
        p: Process<()>,
        sock: Arc<OwnedFd>,
        known: u32,
    ) {
        let pid = p.pid();
        let w = &mut st.workers[i];
        w.proc = Some(p);
        w.sock = Some(sock);
        w.known = known;
        w.frames.clear();
        w.frame_sent = 0;
        w.received = 0;
        w.last_done = None;
        if let Some(word) = w.cell.atomic_u64(CELL_SENT) {
            word.store(0, Ordering::Release);
        }
        self.dead[i].store(false, Ordering::Release);
        if let Some(k) = st.early_exits.iter().position(|&p| p == pid) {
            st.early_exits.swap_remove(k);
            self.dead[i].store(true, Ordering::Release);
            let _ = self.results.put(ResultMsg::Exited(i as u32));
            self.role.wake_collector();
        }
    }

    /// The id workers know `f` by, registering it first if needed. Never waits: the
    /// registration reaches each worker's ring (before the first chunk using it) when
    /// the pool gives that worker such a chunk (a replacement gets every registration in
    /// its boot). A zero-sized target (a function item, a closure capturing nothing) is
    /// known by its types after its first use: no description, no string hashed.
    pub(super) fn fn_id<A: Message, R: Message, S: 'static, F: Target<A, S, Output = R>>(
        &self,
        f: F,
    ) -> Result<u32, Error> {
        let by_type = (std::mem::size_of::<F>() == 0).then(TypeId::of::<(F, A, R, S)>);
        if let Some(t) = by_type {
            let st = self.lock();
            if st.phase != Phase::Running {
                return Err(closed());
            }
            if let Some(&id) = st.fn_by_type.get(&t) {
                return Ok(id);
            }
        }
        let binder: BindFn = bind::<A, R, S, F>;
        let t = target::describe_target(f).map_err(|e| Error::InvalidArgument(e.0))?;
        let key = (FnRef::of(binder), FnRef::from(t));
        let mut st = self.lock();
        if st.phase != Phase::Running {
            return Err(closed());
        }
        let id = match st.fn_ids.get(&key) {
            Some(&id) => id,
            None => {
                let id = st.fns.len() as u32 + 1;
                st.fns.push((id, key.0.clone(), key.1.clone()));
                st.fn_ids.insert(key, id);
                id
            }
        };
        if let Some(t) = by_type {
            st.fn_by_type.insert(t, id);
        }
        Ok(id)
    }

    /// Accepts one chunk into the submission queue and gives what it can to workers at
    /// once; waits only while the submission window is full. `after_close`: an input
    /// finishing what was given before `close`. `direct`: its result is read by the
    /// caller waiting for it (see `direct`), so the result thread, if idle, is not woken
    /// for it alone.
    pub(super) fn submit(
        &self,
        fid: u32,
        payload: Payload,
        sink: Sink,
        after_close: bool,
        direct: bool,
    ) -> Result<u64, Error> {
        let cost = payload.cost();
        // a callback on the result thread that submits must not wait for the window:
        // only that thread makes room in it
        let on_result_thread = self.collector.get() == Some(&std::thread::current().id());
        let mut st = self.lock();
        loop {
            let refused = match st.phase {
                Phase::Running => false,
                Phase::Closed => !after_close,
                Phase::Terminated => true,
            };
            if refused {
                return Err(closed());
            }
            if st.workers.iter().all(|w| w.broken) {
                return Err(Error::InvalidArgument(all_broken()));
            }
            if on_result_thread || st.in_flight.admits(cost) {
                break;
            }
            st.cv_waiters += 1;
            st = self
                .cv
                .wait_timeout(st, Duration::from_millis(50))
                .unwrap_or_else(|e| e.into_inner())
                .0;
            st.cv_waiters -= 1;
        }
        let chunk = st.next_chunk;
        st.next_chunk += 1;
        st.in_flight.add(cost);
        let frame = match &payload {
            Payload::Fds(f) => Some(f.clone()),
            Payload::Plain(_) => None,
        };
        st.pending.insert(
            chunk,
            Pending {
                worker: NO_WORKER,
                sink,
                frame,
                cost,
                given: None,
                unsendable: None,
            },
        );
        st.queue.push_back(Sub {
            chunk,
            fid,
            payload,
        });
        let mut failed = Vec::new();
        self.place(&mut st, &mut failed);
        self.pump(&mut st);
        let wake = st.dispatcher_waiting
            && (!st.queue.is_empty() || st.workers.iter().any(|w| !w.frames.is_empty()));
        // a direct chunk alone in flight: its caller reads its result; with others, the
        // result thread routes theirs (and makes room for queued chunks) meanwhile
        let alone = st.pending.len() == 1;
        drop(st);
        if wake {
            self.dcv.notify_one();
        }
        if !direct || !alone {
            self.role.wake_collector();
        }
        run_sinks(failed);
        Ok(chunk)
    }

    /// Gives queued chunks to workers with room in their ring (the least loaded first),
    /// putting the registrations they need ahead of them. Never waits. Chunks a ring
    /// refuses fail (into `failed`).
    pub(super) fn place(&self, st: &mut State, failed: &mut Finished) {
        if st.queue.is_empty() {
            return;
        }
        if st.workers.iter().all(|w| w.broken) {
            let ids: Vec<u64> = st.queue.drain(..).map(|s| s.chunk).collect();
            failed.extend(fail_pending(st, ids, &TaskError::Failed(all_broken())));
            return;
        }
        let depth = st.depth;
        loop {
            let pick = st
                .workers
                .iter()
                .enumerate()
                .filter(|(i, w)| {
                    !w.broken
                        && w.proc.is_some()
                        && w.outstanding.len() < depth
                        && !self.dead[*i].load(Ordering::Acquire)
                })
                .min_by_key(|(_, w)| w.outstanding.len())
                .map(|(i, _)| i);
            let Some(i) = pick else { return };
            let Some(sub) = st.queue.pop_front() else {
                return;
            };
            let chunk = sub.chunk;
            let mut refused = None;
            while st.workers[i].known < sub.fid {
                let id = st.workers[i].known + 1;
                let Some((_, b, t)) = st.fns.get(id as usize - 1).cloned() else {
                    break;
                };
                match ring_put(&self.rings[i], TaskMsg::Register(id, b, t), &self.fail_puts) {
                    Ok(()) => st.workers[i].known = id,
                    Err(e) => {
                        refused = Some(e);
                        break;
                    }
                }
            }
            if refused.is_none() {
                let msg = match sub.payload {
                    Payload::Plain(b) => TaskMsg::Run(chunk, sub.fid, b),
                    Payload::Fds(_) => TaskMsg::RunSocket(chunk, sub.fid),
                };
                match ring_put(&self.rings[i], msg, &self.fail_puts) {
                    Ok(()) => {
                        let now = Instant::now();
                        let w = &mut st.workers[i];
                        w.outstanding.push_back(chunk);
                        if let Some(p) = st.pending.get_mut(&chunk) {
                            p.worker = i;
                            p.given = Some(now);
                            if let Some(f) = &p.frame {
                                // (the worker reads it when it reaches the marker)
                                w.frames.push_back((chunk, f.clone()));
                            }
                        }
                        continue;
                    }
                    Err(e) => refused = Some(e),
                }
            }
            // the ring refused (broken, or closed by terminate): the chunk fails
            // rather than waiting for ever
            let why = refused.unwrap_or_default();
            tracing::error!(worker = i, error = %why, "pool: a worker's ring refused a chunk");
            let e = TaskError::Failed(format!("a worker's task ring refused the chunk: {why}"));
            failed.extend(fail_pending(st, [chunk], &e));
        }
    }

    /// Writes what the workers' sockets take now of the frames waiting for them; never
    /// waits. A write that fails (other than a full socket: e.g. a descriptor limit)
    /// kills that worker, which would otherwise wait for the frame for ever: it is
    /// replaced, the chunk whose frame failed fails with `TaskError::Failed` (not
    /// requeued: the same write would fail again, killing worker after worker), the
    /// other chunks queued in its ring go to other workers and the one it was running
    /// fails with `WorkerDied`.
    pub(super) fn pump(&self, st: &mut State) {
        let mut unsendable = Vec::new();
        for (i, w) in st.workers.iter_mut().enumerate() {
            while let Some((chunk, f)) = w.frames.front() {
                let Some(sock) = &w.sock else {
                    w.frames.clear();
                    break;
                };
                match f.write_some(sock.as_fd(), &mut w.frame_sent, &self.fail_frames) {
                    Ok(true) => {
                        w.frames.pop_front();
                        w.frame_sent = 0;
                    }
                    Ok(false) => break,
                    Err(e) => {
                        tracing::error!(worker = i, error = %e,
                            "pool: writing a task's arguments to a worker failed; replacing it");
                        unsendable.push((*chunk, e));
                        self.dead[i].store(true, Ordering::Release);
                        if let Some(p) = &w.proc {
                            let _ = p.kill();
                        }
                        w.frames.clear();
                        w.frame_sent = 0;
                        break;
                    }
                }
            }
        }
        for (chunk, e) in unsendable {
            if let Some(p) = st.pending.get_mut(&chunk) {
                p.unsendable = Some(format!(
                    "could not send the task's arguments (with their descriptors) to its \
                     worker: {e}"
                ));
            }
        }
    }
}

/// Puts `msg` into a worker's ring without waiting for room (the ring is unbounded).
pub(super) fn ring_put(
    ring: &Queue<TaskMsg>,
    msg: TaskMsg,
    fail: &fault::Counter,
) -> Result<(), String> {
    if fail.hit() {
        return Err("injected failure (a broken ring)".into());
    }
    ring.try_put(msg).map_err(|e| e.to_string())
}
/// The pool's dispatcher thread: gives queued chunks to workers as they make room, and
/// writes handle chunks' frames as the workers' sockets take them (never blocking on
/// one worker).
pub(super) fn dispatch(inner: Arc<Inner>) {
    let mut st = inner.lock();
    loop {
        if inner.quit.load(Ordering::SeqCst) {
            return;
        }
        let mut failed = Vec::new();
        inner.place(&mut st, &mut failed);
        inner.pump(&mut st);
        if !failed.is_empty() {
            drop(st);
            run_sinks(failed);
            st = inner.lock();
            continue;
        }
        // frames the sockets did not take: look again soon (a worker reads its frame
        // when it reaches its marker)
        let frames = st.workers.iter().any(|w| !w.frames.is_empty());
        st.dispatcher_waiting = true;
        let limit = Duration::from_millis(if frames { 2 } else { 100 });
        st = inner
            .dcv
            .wait_timeout(st, limit)
            .unwrap_or_else(|e| e.into_inner())
            .0;
        st.dispatcher_waiting = false;
    }
}
