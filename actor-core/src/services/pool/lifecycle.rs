//! Ending a pool: `close`, `join`, `terminate` and drop.

use super::builder::Pool;
use super::role::Handoff;
use super::state::{run_sinks, Cost, Finished, Phase};
use super::task_error::TaskError;
use super::wire::ResultMsg;
use crate::error::Error;
use crate::process::Process;
use crate::runtime;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

impl Pool {
    /// No more tasks: later submissions are errors; work already given completes
    /// (including what `imap` feeders have still to submit).
    pub fn close(&self) {
        let mut st = self.inner.lock();
        if st.phase == Phase::Running {
            st.phase = Phase::Closed;
        }
        drop(st);
        self.inner.closing.store(true, Ordering::SeqCst);
        self.inner.wake.wake();
    }

    /// Waits for the work given so far to complete, then for the workers to exit. Call
    /// [`close`](Pool::close) first (as in Python). Work given includes every item of an
    /// `imap`'s input, read or not (an endless input makes `join` wait forever, as in
    /// Python).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when the pool was not closed or terminated first.
    pub fn join(&self) -> Result<(), Error> {
        let mut st = self.inner.lock();
        if st.phase == Phase::Running {
            return Err(Error::InvalidArgument(
                "join() needs close() or terminate() first".into(),
            ));
        }
        self.inner.joining.store(true, Ordering::SeqCst);
        self.inner.closing.store(true, Ordering::SeqCst);
        self.inner.wake.wake();
        while !st.pending.is_empty() || self.inner.feeders.load(Ordering::SeqCst) > 0 {
            st.cv_waiters += 1;
            st = self
                .inner
                .cv
                .wait_timeout(st, Duration::from_millis(100))
                .unwrap_or_else(|e| e.into_inner())
                .0;
            st.cv_waiters -= 1;
        }
        st.phase = Phase::Terminated;
        // every worker's ring is empty: closing the pool's handles disconnects them
        for r in &self.inner.rings {
            r.close();
        }
        let procs: Vec<Process<()>> = st
            .workers
            .iter_mut()
            .filter_map(|w| w.proc.take())
            .collect();
        drop(st);
        for mut p in procs {
            let _ = p.join();
        }
        Ok(())
    }

    /// Stops at once: the workers are killed and every unfinished task fails with
    /// `TaskError::Failed` (its error callback, if any, runs on this thread); `imap`
    /// feeders stop. Calling it again is harmless.
    pub fn terminate(&self) {
        let finished = self.stop_all();
        run_sinks(finished);
        self.inner.cv.notify_all();
        self.inner.dcv.notify_all();
    }

    /// `terminate` without running the failed tasks' sinks (returned, to run).
    pub(super) fn stop_all(&self) -> Finished {
        self.inner.terminated.store(true, Ordering::SeqCst);
        self.inner.closing.store(true, Ordering::SeqCst);
        let mut st = self.inner.lock();
        st.phase = Phase::Terminated;
        let procs: Vec<Process<()>> = st
            .workers
            .iter_mut()
            .filter_map(|w| w.proc.take())
            .collect();
        for w in &mut st.workers {
            w.outstanding.clear();
            w.frames.clear();
            w.frame_sent = 0;
        }
        st.queue.clear();
        st.in_flight = Cost::default();
        for r in &self.inner.rings {
            r.close();
        }
        let why = TaskError::Failed("the pool was terminated".into());
        let finished: Finished = st
            .pending
            .drain()
            .map(|(c, p)| (p.worker, c, p.sink, Err(why.clone())))
            .collect();
        drop(st);
        self.inner.wake.wake();
        // SIGKILL first to all, then reap: the time of one worker's end, not n
        for p in &procs {
            let _ = p.kill();
        }
        for mut p in procs {
            let _ = p.join();
        }
        finished
    }
}

/// How long dropping a pool waits for its result thread and its feeder (busy in a
/// user's callback or input iterator) before leaving them to end on their own.
pub const DROP_WAIT: Duration = Duration::from_secs(1);

/// Joins `t` if it ends before `deadline`; otherwise leaves it (detached).
pub(super) fn join_until(t: std::thread::JoinHandle<()>, deadline: Instant) {
    while !t.is_finished() {
        if Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = t.join();
}

impl Drop for Pool {
    /// Terminates the pool (as Python's `with Pool(...)` does on exit) within a bound:
    /// the workers are sent `SIGKILL` and reaped, every unfinished task fails (its
    /// error callback runs on a thread of its own), and the pool's threads end. User
    /// code the drop would wait for — those error callbacks, the result thread in a
    /// callback, the feeder in an `imap` input's `next` — is waited for until
    /// [`DROP_WAIT`] after the drop began, then left to end on its own (the pool does
    /// nothing more). So a drop, including one while a panic unwinds, takes at most
    /// about `DROP_WAIT` beyond the kernel's time to end the killed workers.
    fn drop(&mut self) {
        let deadline = Instant::now() + DROP_WAIT;
        let finished = self.stop_all();
        if !finished.is_empty() {
            // the unfinished tasks' error callbacks are user code: on a thread of their
            // own, waited for until the deadline
            let spawned =
                runtime::thread_builder("procactor-pool-drop").spawn(move || run_sinks(finished));
            if let Ok(t) = spawned {
                join_until(t, deadline);
            }
        }
        self.inner.cv.notify_all();
        self.inner.quit.store(true, Ordering::SeqCst);
        self.inner
            .sources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        self.inner.wake.wake();
        {
            let _st = self.inner.lock();
            self.inner.dcv.notify_all();
        }
        let _ = self.inner.results.put(ResultMsg::Quit);
        // (the result thread may be idle, a caller holding the reader role)
        self.inner.role.hand_off(Handoff::Msg(ResultMsg::Quit));
        if let Some(t) = self.dispatcher.take() {
            // (it may be running an error callback of a chunk a ring refused)
            join_until(t, deadline);
        }
        if let Some(t) = self.collector.take() {
            join_until(t, deadline);
        }
        if let Some(t) = self.feeder.take() {
            join_until(t, deadline);
        }
        self.watcher.take();
        // (`_observed` goes after this, with the other fields: the pool leaves the
        // observer's registry once its threads are gone)
    }
}
