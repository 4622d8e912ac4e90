//! [`AsyncResult`] (Python's `AsyncResult`), decoding chunk outcomes, and the gathering
//! of `map_async_with`'s chunks for its callbacks.

use super::direct::{self, Direct, Received};
use super::state::{OnAll, OnErr, Outcome, Signal};
use super::task_error::TaskError;
use super::wire::ChunkOut;
use crate::codec;
use procactor_transports::deadline::Deadline;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub(super) enum Collect {
    One(u64),
    Chunks(Vec<u64>),
}

/// The result of [`Pool::apply_async`](super::Pool::apply_async) / [`Pool::map_async`](super::Pool::map_async), to fetch later
/// (Python's `AsyncResult`). `E`: see [`TaskError`] (the task's error type for
/// [`Pool::try_apply_async`](super::Pool::try_apply_async)).
///
/// Its methods may be called from several threads at once; [`ready`](AsyncResult::ready),
/// [`successful`](AsyncResult::successful) and the `_timeout` methods never wait behind
/// another thread's [`get`](AsyncResult::get) (which waits without holding the handle's
/// lock).
pub struct AsyncResult<T, E = String> {
    pub(super) rx: crossbeam_channel::Receiver<(u64, Outcome)>,
    pub(super) what: Collect,
    pub(super) got: Mutex<Got>,
    /// Signalled when the thread receiving for everyone got something.
    pub(super) cv: Condvar,
    pub(super) decode: fn(&[Outcome]) -> Result<T, TaskError<E>>,
    /// Set for a task whose waiting caller reads the result ring itself.
    pub(super) direct: Option<Direct>,
    /// Shared with the sinks of its chunks (see [`Signal`]).
    pub(super) signal: Arc<Signal>,
}

/// The chunks an `AsyncResult` has received.
#[derive(Default)]
pub(super) struct Got {
    pub(super) outs: HashMap<u64, Outcome>,
    /// A thread waits in the channel's `recv` (without the lock) for everyone.
    pub(super) receiving: bool,
}

impl<T, E> fmt::Debug for AsyncResult<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncResult").finish_non_exhaustive()
    }
}

pub(super) fn decode_one<R: DeserializeOwned>(chunks: &[Outcome]) -> Result<R, TaskError> {
    let Some(out) = chunks.first() else {
        return Err(TaskError::Failed("no result".into()));
    };
    decode_chunk::<R>(out, 1)
        .into_iter()
        .next()
        .unwrap_or_else(|| Err(TaskError::Failed("an empty result".into())))
}

pub(super) fn decode_one_typed<R: DeserializeOwned, E: DeserializeOwned>(
    chunks: &[Outcome],
) -> Result<R, TaskError<E>> {
    match decode_one::<Result<R, E>>(chunks) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(TaskError::Failed(e)),
        Err(e) => Err(e.typed()),
    }
}

pub(super) fn decode_all<R: DeserializeOwned>(chunks: &[Outcome]) -> Result<Vec<R>, TaskError> {
    let mut v = Vec::new();
    for out in chunks {
        // the item count only matters for a failed chunk, where any positive one does
        for r in decode_chunk::<R>(out, 1) {
            v.push(r?);
        }
    }
    Ok(v)
}

impl<T, E> AsyncResult<T, E> {
    pub(super) fn new(
        rx: crossbeam_channel::Receiver<(u64, Outcome)>,
        what: Collect,
        decode: fn(&[Outcome]) -> Result<T, TaskError<E>>,
        signal: Arc<Signal>,
    ) -> Self {
        AsyncResult {
            rx,
            what,
            got: Mutex::new(Got::default()),
            cv: Condvar::new(),
            decode,
            direct: None,
            signal,
        }
    }

    pub(super) fn ids(&self) -> Vec<u64> {
        match &self.what {
            Collect::One(c) => vec![*c],
            Collect::Chunks(v) => v.clone(),
        }
    }

    /// Takes what has arrived, waiting until `deadline` (`None`: for ever) for the rest;
    /// `true` once everything has. The lock is never held across a blocking receive:
    /// one waiting thread receives for all, the others wait on `cv` (each with its own
    /// deadline), and a `deadline` already passed never waits (a direct task then looks
    /// at the result ring once, if nobody reads it).
    pub(super) fn gather(&self, deadline: Option<Instant>) -> bool {
        let ids = self.ids();
        let lock = || self.got.lock().unwrap_or_else(|e| e.into_inner());
        let mut g = lock();
        let mut polled = false;
        loop {
            while let Ok((c, out)) = self.rx.try_recv() {
                g.outs.insert(c, out);
            }
            if ids.iter().all(|c| g.outs.contains_key(c)) {
                return true;
            }
            let passed = deadline.is_some_and(|d| d <= Instant::now());
            if passed && (polled || self.direct.is_none()) {
                return false;
            }
            if g.receiving {
                // another thread receives: wait for what it gets (or our deadline)
                g = match deadline {
                    None => self.cv.wait(g).unwrap_or_else(|e| e.into_inner()),
                    Some(_) if passed => return false,
                    Some(d) => {
                        let left = d.saturating_duration_since(Instant::now());
                        self.cv
                            .wait_timeout(g, left)
                            .unwrap_or_else(|e| e.into_inner())
                            .0
                    }
                };
                continue;
            }
            polled = true;
            g.receiving = true;
            drop(g);
            let r = self.receive(deadline);
            g = lock();
            g.receiving = false;
            self.cv.notify_all();
            match r {
                Ok((c, out)) => {
                    g.outs.insert(c, out);
                }
                Err(true) => {
                    // every sender is gone: nothing more comes
                    while let Ok((c, out)) = self.rx.try_recv() {
                        g.outs.insert(c, out);
                    }
                    return ids.iter().all(|c| g.outs.contains_key(c));
                }
                Err(false) => {} // timed out: the loop sees the deadline passed
            }
        }
    }

    /// Receives one outcome until `deadline`: reading the result ring directly when the
    /// task allows it (see `direct`), else from the channel the result thread fills.
    /// `Err(true)`: every sender is gone; `Err(false)`: timed out.
    fn receive(&self, deadline: Option<Instant>) -> Result<(u64, Outcome), bool> {
        if let Some(d) = &self.direct {
            match direct::receive(d, &self.signal.reading, &self.rx, deadline) {
                Received::Out(c, out) => return Ok((c, out)),
                Received::Timeout => return Err(false),
                Received::Disconnected => return Err(true),
                Received::Fallback => {}
            }
        }
        match deadline {
            None => self.rx.recv().map_err(|_| true),
            Some(d) => self.rx.recv_deadline(d).map_err(|e| e.is_disconnected()),
        }
    }

    /// Whether the result is there (Python's `ready()`).
    pub fn ready(&self) -> bool {
        self.gather(Some(Instant::now()))
    }

    /// Waits until the result is there (Python's `wait()`).
    pub fn wait(&self) {
        self.gather(None);
    }

    /// Waits at most `timeout`; whether the result is there (Python's `wait(timeout)`).
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.gather(Deadline::after(timeout).instant())
    }

    /// Whether it completed without error (Python's `successful()`); `None` while not
    /// ready (where Python raises `ValueError`).
    pub fn successful(&self) -> Option<bool> {
        if !self.ready() {
            return None;
        }
        Some(self.value().is_ok())
    }

    /// Waits for the result and returns it (Python's `get()`); it can be taken again.
    ///
    /// # Errors
    ///
    /// The task's [`TaskError`] (for `map_async`: the first failed item's, in order).
    pub fn get(&self) -> Result<T, TaskError<E>> {
        self.wait();
        self.value()
    }

    /// As [`get`](AsyncResult::get), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`TaskError::Timeout`] when the result is not there in time; else as `get`.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, TaskError<E>> {
        if !self.wait_timeout(timeout) {
            return Err(TaskError::Timeout);
        }
        self.value()
    }

    pub(super) fn value(&self) -> Result<T, TaskError<E>> {
        let got = self.got.lock().unwrap_or_else(|e| e.into_inner());
        let chunks: Vec<Outcome> = self
            .ids()
            .iter()
            .map(|c| {
                got.outs
                    .get(c)
                    .cloned()
                    .unwrap_or_else(|| Err(TaskError::Failed("no result".into())))
            })
            .collect();
        (self.decode)(&chunks)
    }
}

pub(super) fn decode_chunk<R: DeserializeOwned>(
    out: &Outcome,
    n: usize,
) -> Vec<Result<R, TaskError>> {
    match out {
        Err(e) => (0..n).map(|_| Err(e.clone())).collect(),
        Ok(bytes) => match codec::decode::<ChunkOut<R>>(bytes, Vec::new()) {
            Ok(Ok(v)) => v.into_iter().map(Ok).collect(),
            Ok(Err(v)) => v
                .into_iter()
                .map(|r| r.map_err(|message| TaskError::Panicked { message }))
                .collect(),
            Err(e) => (0..n)
                .map(|_| {
                    Err(TaskError::Failed(format!(
                        "could not decode the result: {e}"
                    )))
                })
                .collect(),
        },
    }
}

/// Every chunk's outcome of a `map_async_with`, and what runs once all are there (or
/// at the first failure).
pub(super) struct Gather {
    pub(super) st: Mutex<GatherState>,
    /// The error callback, run at the first failed chunk.
    pub(super) on_err: Arc<Mutex<Option<OnErr>>>,
    /// A chunk's first failed item, if any.
    pub(super) first_error: fn(&Outcome) -> Option<TaskError>,
}

pub(super) struct GatherState {
    /// Each chunk's outcome.
    pub(super) outs: Vec<Option<Outcome>>,
    /// How many are missing.
    pub(super) missing: usize,
    /// What runs once none is (unless one failed).
    pub(super) on_all: Option<OnAll>,
    /// A chunk failed: `on_all` will not run.
    pub(super) failed: bool,
}

/// The first failed item of a chunk (decoded as `R`, so that a result that cannot be
/// decoded counts as a failure too).
pub(super) fn chunk_error<R: DeserializeOwned>(out: &Outcome) -> Option<TaskError> {
    match out {
        Err(e) => Some(e.clone()),
        Ok(_) => decode_chunk::<R>(out, 1).into_iter().find_map(Result::err),
    }
}

impl Gather {
    pub(super) fn put(&self, k: usize, out: &Outcome) {
        let err = (self.first_error)(out);
        {
            let mut g = self.st.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(slot) = g.outs.get_mut(k) {
                if slot.is_none() {
                    *slot = Some(out.clone());
                    g.missing -= 1;
                }
            }
            if err.is_none() && (g.missing != 0 || g.failed) {
                return;
            }
            if err.is_some() {
                g.failed = true;
                g.on_all = None;
            }
        }
        match err {
            Some(e) => {
                let f = self.on_err.lock().unwrap_or_else(|e| e.into_inner()).take();
                if let Some(f) = f {
                    f(e);
                }
            }
            None => self.fire(),
        }
    }

    pub(super) fn fire(&self) {
        let (outs, f) = {
            let mut g = self.st.lock().unwrap_or_else(|e| e.into_inner());
            let outs: Vec<Outcome> = g.outs.iter_mut().filter_map(Option::take).collect();
            (outs, g.on_all.take())
        };
        if let Some(f) = f {
            f(&outs);
        }
    }
}

/// `pool.apply_async(f, x)?.await` (and `map_async`'s): gives what
/// [`get`](AsyncResult::get) gives, waiting without blocking a thread, on any executor.
/// For a timeout, wrap it in the runtime's own (`tokio::time::timeout`).
///
/// No thread waits for it: the thread that routes the result (the pool's result thread,
/// or a caller of `get` reading the result ring) wakes the task once it sent the
/// outcome. So an `.await` costs the hop from that thread to the task's, as a blocking
/// `get` through the result thread does, and any number of awaited results cost no
/// thread.
///
/// # Cancel safety
///
/// The future owns the `AsyncResult`: dropping it drops the result (the task still
/// runs in the pool; its outcome is discarded), as dropping an `AsyncResult` does.
///
/// # Examples
///
/// ```
/// use procactor_core::Pool;
/// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     // a minimal executor: any runtime works the same way
/// #     use std::task::{Context, Poll, Wake, Waker};
/// #     use std::sync::Arc;
/// #     struct T(std::thread::Thread);
/// #     impl Wake for T { fn wake(self: Arc<Self>) { self.0.unpark() } }
/// #     let w = Waker::from(Arc::new(T(std::thread::current())));
/// #     let mut f = std::pin::pin!(f);
/// #     loop {
/// #         if let Poll::Ready(v) = f.as_mut().poll(&mut Context::from_waker(&w)) { return v; }
/// #         std::thread::park();
/// #     }
/// # }
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// fn main() {
///     procactor_core::init();
///     let pool = Pool::new(2).unwrap();
///     let r = block_on(async { pool.apply_async(square, 7).unwrap().await });
///     assert_eq!(r.unwrap(), 49);
///     let v = block_on(async {
///         pool.map_async(square, vec![1, 2, 3]).unwrap().await
///     });
///     assert_eq!(v.unwrap(), vec![1, 4, 9]);
/// }
/// ```
impl<T: Send + 'static, E: Send + 'static> std::future::IntoFuture for AsyncResult<T, E> {
    type Output = Result<T, TaskError<E>>;
    type IntoFuture =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, TaskError<E>>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            // (the waker is taken back when the future ends or is dropped)
            let _armed = Armed(&self.signal);
            let ids = self.ids();
            let mut routed = false;
            std::future::poll_fn(|cx| {
                let mut g = self.got.lock().unwrap_or_else(|e| e.into_inner());
                if self.take_arrived(&mut g, &ids) {
                    return std::task::Poll::Ready(());
                }
                // registered, then looked at again: an outcome sent before the
                // registration is seen now, one sent after it wakes the task
                self.signal.set(cx.waker());
                if self.take_arrived(&mut g, &ids) {
                    return std::task::Poll::Ready(());
                }
                if let (Some(d), false) = (&self.direct, routed) {
                    routed = true;
                    direct::routed_for_await(d);
                }
                std::task::Poll::Pending
            })
            .await;
            self.value()
        })
    }
}

impl<T, E> AsyncResult<T, E> {
    /// Takes the outcomes on the channel; whether nothing more is to wait for (all of
    /// `ids` arrived, or every sender is gone).
    fn take_arrived(&self, g: &mut Got, ids: &[u64]) -> bool {
        loop {
            match self.rx.try_recv() {
                Ok((c, out)) => {
                    g.outs.insert(c, out);
                }
                Err(crossbeam_channel::TryRecvError::Empty) => break,
                Err(crossbeam_channel::TryRecvError::Disconnected) => return true,
            }
        }
        ids.iter().all(|c| g.outs.contains_key(c))
    }
}

/// Takes an awaiting task's waker back from the [`Signal`] when dropped.
struct Armed<'a>(&'a Signal);

impl Drop for Armed<'_> {
    fn drop(&mut self) {
        self.0.clear();
    }
}
