//! The pool's result thread: routes results to their waiters, and replaces workers
//! that exit (failing what they ran, requeuing what they had queued).

use super::inner::Inner;
use super::role::{Handoff, IDLE_CHECK};
use super::state::{
    fail_pending, note_service, run_sinks, take_pending, Finished, Payload, Phase, State, Sub,
    MAX_START_FAILURES, NO_WORKER,
};
use super::task_error::TaskError;
use super::wire::{FnRef, ResultMsg, TaskMsg, CELL_CHUNK, CELL_READY, CELL_SENT};
use crate::queue::Queue;
use crate::shared::RawArray;
use crate::{Bytes, ExitStatus, GetError};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Puts an exit notice on the result ring when a worker exits (behind its results).
pub(super) fn worker_exited(inner: &Inner, pid: u32) {
    let idx = {
        let mut st = inner.lock();
        let idx = st
            .workers
            .iter()
            .position(|w| w.proc.as_ref().is_some_and(|p| p.pid() == pid));
        if idx.is_none() {
            // a worker being installed (its slot learns its pid after the spawn): the
            // slot replays this exit (bounded: a few pids at most)
            st.early_exits.push(pid);
            if st.early_exits.len() > 64 {
                st.early_exits.remove(0);
            }
        }
        idx
    };
    if let Some(i) = idx {
        inner.dead[i].store(true, Ordering::Release);
        let _ = inner.results.put(ResultMsg::Exited(i as u32));
        inner.role.wake_collector();
    }
}

/// Routes results to their waiters; handles worker exits. It reads the result ring
/// while it holds the reader role, and otherwise runs what the direct reader hands it
/// (see `direct`).
pub(super) fn collect(
    inner: Arc<Inner>,
    results: Queue<ResultMsg>,
    handoff: crossbeam_channel::Receiver<Handoff>,
) {
    loop {
        // waits for the role, running what a direct reader hands over meanwhile
        loop {
            while let Ok(h) = handoff.try_recv() {
                if !on_handoff(&inner, h) {
                    return;
                }
            }
            if inner
                .role
                .collector_takes(|| !inner.results.is_empty() || !inner.lock().pending.is_empty())
            {
                break;
            }
            match handoff.recv_timeout(IDLE_CHECK) {
                Ok(h) => {
                    if !on_handoff(&inner, h) {
                        return;
                    }
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
            }
        }
        // reads until a caller asks for the role
        loop {
            match results.get() {
                Ok(ResultMsg::Yield) => {
                    if inner.role.collector_yields() {
                        break;
                    }
                }
                Ok(m) => {
                    if !on_msg(&inner, m) {
                        return;
                    }
                }
                Err(GetError::Disconnected) | Err(GetError::Broken) => return,
                Err(GetError::Decode(e)) => on_garbage(&inner, &e.to_string()),
            }
        }
    }
}

/// Runs what a direct reader handed over; `false`: the pool is gone.
fn on_handoff(inner: &Inner, h: Handoff) -> bool {
    match h {
        Handoff::Msg(m) => return on_msg(inner, m),
        Handoff::Garbage(e) => on_garbage(inner, &e),
        Handoff::Sinks(s) => run_sinks(s),
        Handoff::Resume => {}
    }
    true
}

/// Handles one message of the result ring on the result thread; `false`: the pool is
/// gone.
fn on_msg(inner: &Inner, m: ResultMsg) -> bool {
    match m {
        ResultMsg::Done(chunk, slot, out) => on_done(inner, chunk, slot, out, true),
        ResultMsg::Exited(i) => {
            let i = i as usize;
            if i < inner.processes {
                replace_worker(inner, i);
            }
        }
        ResultMsg::Yield => {}
        ResultMsg::Quit => return false,
    }
    true
}

/// Routes chunk `chunk`'s result (from worker slot `slot`) to its sink and gives the
/// workers what the freed room allows. `on_collector`: this is the result thread; else
/// (a direct reader with its own result) the sinks of chunks failed meanwhile, which may
/// run callbacks, go to the result thread.
pub(super) fn on_done(
    inner: &Inner,
    chunk: u64,
    slot: u32,
    out: Result<Bytes, String>,
    on_collector: bool,
) {
    let mut st = inner.lock();
    if let Some(w) = st.workers.get_mut(slot as usize) {
        w.received += 1;
    }
    let done = take_pending(&mut st, chunk);
    if let Some(p) = &done {
        note_service(&mut st, p);
    }
    let mut failed = Vec::new();
    inner.place(&mut st, &mut failed);
    let wake_d = st.dispatcher_waiting && st.workers.iter().any(|w| !w.frames.is_empty());
    let wake = st.cv_waiters > 0;
    drop(st);
    if let Some(p) = done {
        (p.sink)(p.worker, chunk, out.map_err(TaskError::Failed));
    }
    if on_collector {
        run_sinks(failed);
    } else if !failed.is_empty() {
        inner.role.hand_off(Handoff::Sinks(failed));
    }
    if wake_d {
        inner.dcv.notify_one();
    }
    if wake {
        inner.cv.notify_all();
    }
}

/// A worker broke the protocol: the ones with results in the ring are suspects
/// (usually one); they are replaced, so that the chunk whose result this was fails
/// instead of waiting for ever.
fn on_garbage(inner: &Inner, e: &str) {
    let st = inner.lock();
    let suspects: Vec<usize> = st
        .workers
        .iter()
        .enumerate()
        .filter(|(_, w)| {
            w.proc.is_some()
                && w.cell
                    .atomic_u64(CELL_SENT)
                    .is_some_and(|s| s.load(Ordering::Acquire) > w.received)
        })
        .map(|(i, _)| i)
        .collect();
    tracing::error!(error = %e, ?suspects,
        "pool: an undecodable result; replacing the workers that may have sent it");
    for &i in &suspects {
        if let Some(p) = &st.workers[i].proc {
            let _ = p.kill();
        }
    }
    drop(st);
}
/// Handles worker `i`'s exit (on the result thread): fails what it was running, puts
/// what was queued in its ring back at the front of the submission queue, and starts a
/// replacement — the spawn without the state lock, so that submitters never wait for
/// it.
pub(super) fn replace_worker(inner: &Inner, i: usize) {
    let (finished, respawn) = {
        let mut st = inner.lock();
        on_worker_exit(inner, &mut st, i)
    };
    run_sinks(finished);
    if let Some((cell, fns)) = respawn {
        let started = inner.spawn_worker(i, &cell, &fns);
        let mut st = inner.lock();
        let mut failed = Vec::new();
        match started {
            Ok((mut p, sock)) => {
                if st.phase == Phase::Terminated {
                    drop(st);
                    let _ = p.kill();
                    let _ = p.join();
                    return;
                }
                inner.install(&mut st, i, p, sock, fns.len() as u32);
                st.workers[i].restarts += 1;
            }
            Err(e) => {
                // given up like a worker that keeps failing to start (`dead` stays set),
                // so nothing waits for it: when every slot is given up, submissions are
                // refused and queued chunks fail
                tracing::error!(worker = i, error = %e, "pool: no replacement worker could start");
                st.workers[i].broken = true;
            }
        }
        inner.place(&mut st, &mut failed);
        inner.pump(&mut st);
        let wake_d = st.dispatcher_waiting;
        drop(st);
        run_sinks(failed);
        if wake_d {
            inner.dcv.notify_one();
        }
    }
    inner.cv.notify_all();
}

/// What a replacement for a worker needs: its cell and the functions so far.
pub(super) type Respawn = Option<(RawArray<u64>, Vec<(u32, FnRef, FnRef)>)>;

pub(super) fn on_worker_exit(inner: &Inner, st: &mut State, i: usize) -> (Finished, Respawn) {
    let Some(w) = st.workers.get_mut(i) else {
        return (Vec::new(), None);
    };
    let Some(mut p) = w.proc.take() else {
        return (Vec::new(), None);
    };
    // its socket, and what the dead worker did not read there, go
    w.sock = None;
    w.frames.clear();
    w.frame_sent = 0;
    let status = p.join().unwrap_or(ExitStatus::Code(-1));
    if let Some(word) = w.cell.atomic_u64(CELL_CHUNK) {
        word.store(0, Ordering::Release);
    }
    let was_ready = w
        .cell
        .atomic_u64(CELL_READY)
        .is_some_and(|r| r.swap(0, Ordering::AcqRel) == 1);
    w.start_failures = if was_ready { 0 } else { w.start_failures + 1 };
    // What is still in its ring was not taken: take it back (this also completes or
    // rolls back a get the worker died in the middle of)…
    // (the dead worker may hold the ring's reader lock, asleep in `get`: free it first)
    let ring = &inner.rings[i];
    ring.recover_dead_consumer();
    let mut queued = Vec::new();
    while let Ok(m) = ring.try_get() {
        queued.push(m);
    }
    let queued_ids: Vec<u64> = queued
        .iter()
        .filter_map(|m| match m {
            TaskMsg::Run(c, _, _) | TaskMsg::RunSocket(c, _) => Some(*c),
            TaskMsg::Register(..) => None,
        })
        .collect();
    // …and every other unfinished chunk it was given went down with it
    let outstanding: Vec<u64> = w.outstanding.drain(..).collect();
    // (except a chunk whose frame could not be written: it fails with why, for that is
    // what got the worker killed, and requeued it would fail the same way again)
    let mut finished = Finished::new();
    for &c in &outstanding {
        let why = st.pending.get(&c).and_then(|p| p.unsendable.clone());
        if let Some(why) = why {
            finished.extend(fail_pending(st, [c], &TaskError::Failed(why)));
        }
    }
    let lost: Vec<u64> = outstanding
        .iter()
        .copied()
        .filter(|c| !queued_ids.contains(c))
        .collect();
    finished.extend(fail_pending(
        st,
        lost.iter().copied(),
        &TaskError::WorkerDied(status),
    ));
    // the queued ones go back to the front of the submission queue, in order, for any
    // worker (the pool's memory: nothing can refuse them)
    for m in queued.into_iter().rev() {
        let (c, fid, payload) = match m {
            TaskMsg::Run(c, f, b) => (c, f, Payload::Plain(b)),
            TaskMsg::RunSocket(c, f) => match st.pending.get(&c).and_then(|p| p.frame.clone()) {
                Some(frame) => (c, f, Payload::Fds(frame)),
                None => continue,
            },
            TaskMsg::Register(..) => continue,
        };
        let Some(p) = st.pending.get_mut(&c) else {
            continue;
        };
        p.worker = NO_WORKER;
        p.given = None;
        st.queue.push_front(Sub {
            chunk: c,
            fid,
            payload,
        });
    }
    if st.phase == Phase::Terminated {
        return (finished, None);
    }
    let w = &mut st.workers[i];
    if w.start_failures >= MAX_START_FAILURES {
        let why = match p.result() {
            Err(crate::JoinError::Panicked { message }) => message,
            _ => status.to_string(),
        };
        w.broken = true;
        tracing::error!(worker = i, %why, "pool worker keeps failing to start; giving it up");
        if st.workers.iter().all(|w| w.broken) {
            let ids: Vec<u64> = st.queue.drain(..).map(|s| s.chunk).collect();
            let e = TaskError::Failed(format!(
                "the worker failed to start {MAX_START_FAILURES} times in a row: {why}"
            ));
            finished.extend(fail_pending(st, ids, &e));
        }
        return (finished, None); // `dead` stays set: nothing is sent to it again
    }
    tracing::debug!(worker = i, %status, lost = lost.len(), "pool worker exited; replacing it");
    (finished, Some((st.workers[i].cell.clone(), st.fns.clone())))
}
