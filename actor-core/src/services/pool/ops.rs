//! Submitting work: `map`, `apply`, `imap` and their async, callback and typed forms.

use super::async_result::{
    chunk_error, decode_all, decode_one, decode_one_typed, AsyncResult, Collect, Gather,
    GatherState,
};
use super::builder::Pool;
use super::direct::{nudge, Direct};
use super::feed::{Feed, FeedState, InputOf, Source};
use super::imap::Imap;
use super::state::{
    closed, default_chunksize, encode_chunk, guarded, Deliver, Hook, OnAll, OnErr, Outcome,
    ResultsRx, Signal, Sink, IMAP_WINDOW_PER_WORKER,
};
use super::task_error::TaskError;
use crate::error::Error;
use crate::process::Process;
use crate::Message;
use procactor_transports::target::Target;
use std::collections::{BTreeMap, VecDeque};
use std::marker::PhantomData;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

impl Pool {
    /// Fault injection for tests (hidden, see [`fault`]; only with the `test-hooks`
    /// feature): the next `n` writes of a handle chunk's frame to a worker's socket
    /// fail, as with `EMFILE`.
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub fn fail_next_frame_writes(&self, n: usize) {
        self.inner.fail_frames.set(n);
    }

    /// Fault injection for tests (hidden, see [`fault`]; only with the `test-hooks`
    /// feature): the next `n` puts into a worker's task ring fail, as with a broken
    /// ring.
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub fn fail_next_ring_puts(&self, n: usize) {
        self.inner.fail_puts.set(n);
    }

    /// The number of worker processes.
    pub fn processes(&self) -> usize {
        self.processes
    }

    /// The pids of the workers running now.
    pub fn pids(&self) -> Vec<u32> {
        let st = self.inner.lock();
        st.workers
            .iter()
            .filter_map(|w| w.proc.as_ref().map(Process::pid))
            .collect()
    }

    /// Hands `input` to the pool's feeder, which submits it in chunks, and returns the
    /// iterator of its results.
    pub(super) fn feed<A, R, S, F, I>(
        &self,
        f: F,
        input: I,
        chunksize: usize,
        ordered: bool,
    ) -> Result<Imap<'_, A, R, I>, Error>
    where
        A: Message,
        R: Message,
        S: 'static,
        F: Target<A, S, Output = R>,
        I: Iterator<Item = A> + Send + 'static,
    {
        let fid = self.inner.fn_id(f)?;
        let feed = Arc::new(Feed {
            st: Mutex::new(FeedState::default()),
            cap: (IMAP_WINDOW_PER_WORKER * self.processes) as u64,
            wake: self.inner.wake.clone(),
        });
        let (tx, rx) = crossbeam_channel::unbounded();
        let source = Source {
            input: Box::new(InputOf {
                input,
                chunksize: chunksize.max(1),
                _a: PhantomData,
            }),
            feed: feed.clone(),
            fid,
            seq: 0,
            tx,
        };
        // counted before the call returns, so that a join right after waits for it
        self.inner.feeders.fetch_add(1, Ordering::SeqCst);
        let sent = match &*self.inner.sources.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(s) => s.send(source).is_ok(),
            None => false,
        };
        if !sent {
            self.inner.feeders.fetch_sub(1, Ordering::SeqCst);
            return Err(closed());
        }
        self.inner.wake.wake();
        Ok(Imap {
            feed,
            rx,
            ordered,
            total: None,
            seen: 0,
            reorder: BTreeMap::new(),
            ready: VecDeque::new(),
            _t: PhantomData,
        })
    }

    /// The results of every item, in order: `f` applied to each (Python's `map`).
    ///
    /// # Errors
    ///
    /// The first failed item's [`TaskError`] (in input order); a closed pool gives
    /// `TaskError::Failed`.
    pub fn map<A: Message, R: Message, S: 'static, F: Target<A, S, Output = R>>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
    ) -> Result<Vec<R>, TaskError> {
        let items: Vec<A> = items.into_iter().collect();
        let cs = default_chunksize(items.len(), self.processes);
        self.map_chunksize(f, items, cs)
    }

    /// As [`map`](Pool::map) with chunks of `chunksize` items.
    ///
    /// # Errors
    ///
    /// As `map`.
    pub fn map_chunksize<A: Message, R: Message, S: 'static, F: Target<A, S, Output = R>>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> Result<Vec<R>, TaskError> {
        // (Python's map reads the whole input first too)
        let items: Vec<A> = items.into_iter().collect();
        let mut out = Vec::with_capacity(items.len());
        let results = self
            .feed(f, items.into_iter(), chunksize, true)
            .map_err(|e| TaskError::Failed(e.to_string()))?;
        for r in results {
            out.push(r?);
        }
        Ok(out)
    }

    /// As [`map`](Pool::map) for tasks that return `Result<R, E>`: the first failed
    /// item (in input order) gives its error, typed: `Err(e)` from the task is
    /// [`TaskError::Failed(e)`](TaskError::Failed); a panic, a worker's death and the
    /// pool's own reasons ([`TaskError::Pool`]) as for `map`.
    ///
    /// # Errors
    ///
    /// As above.
    ///
    /// # Examples
    ///
    /// ```
    /// use procactor::{Pool, TaskError};
    ///
    /// fn parse(s: String) -> Result<u32, String> {
    ///     s.parse().map_err(|_| format!("not a number: {s}"))
    /// }
    ///
    /// fn main() {
    ///     procactor::init();
    ///     let pool = Pool::new(2).unwrap();
    ///     let ok = pool.try_map(parse, ["1", "2"].map(String::from)).unwrap();
    ///     assert_eq!(ok, [1, 2]);
    ///     let bad = pool.try_map(parse, ["1", "x"].map(String::from));
    ///     assert_eq!(bad, Err(TaskError::Failed("not a number: x".to_string())));
    /// }
    /// ```
    pub fn try_map<
        A: Message,
        R: Message,
        E: Message,
        S: 'static,
        F: Target<A, S, Output = Result<R, E>>,
    >(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
    ) -> Result<Vec<R>, TaskError<E>> {
        let items: Vec<A> = items.into_iter().collect();
        let cs = default_chunksize(items.len(), self.processes);
        let mut out = Vec::with_capacity(items.len());
        let results = self
            .feed(f, items.into_iter(), cs, true)
            .map_err(|e| TaskError::Pool(e.to_string()))?;
        for r in results {
            match r {
                Ok(Ok(v)) => out.push(v),
                Ok(Err(e)) => return Err(TaskError::Failed(e)),
                Err(e) => return Err(e.typed()),
            }
        }
        Ok(out)
    }

    /// Python's `starmap`: each item is a tuple unpacked into `f`'s arguments
    /// (`starmap(mul, [(1, 2), (3, 4)])` calls `mul(1, 2)` and `mul(3, 4)`). Items are
    /// always unpacked this way here, so it is [`map`](Pool::map) under Python's name; a
    /// one-argument `f` whose parameter is a tuple gets each tuple whole.
    ///
    /// # Errors
    ///
    /// As `map`.
    ///
    /// # Examples
    ///
    /// ```
    /// use procactor::Pool;
    ///
    /// fn mul(a: u64, b: u64) -> u64 { a * b }
    ///
    /// fn main() {
    ///     procactor::init();
    ///     let pool = Pool::new(2).unwrap();
    ///     assert_eq!(pool.starmap(mul, vec![(1, 2), (3, 4)]).unwrap(), [2, 12]);
    ///     assert_eq!(pool.apply(mul, (6, 7)).unwrap(), 42);
    /// }
    /// ```
    pub fn starmap<A: Message, R: Message, S: 'static, F: Target<A, S, Output = R>>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
    ) -> Result<Vec<R>, TaskError> {
        self.map(f, items)
    }

    /// Submits every chunk of `items` (waiting only while the submission window is
    /// full); `gather` (if any) sees each chunk's outcome on the result thread.
    pub(super) fn submit_all<A: Message, R: Message, S: 'static, F: Target<A, S, Output = R>>(
        &self,
        f: F,
        items: Vec<A>,
        gather: Option<Arc<Gather>>,
        signal: &Arc<Signal>,
    ) -> Result<(ResultsRx, Vec<u64>), Error> {
        let cs = default_chunksize(items.len(), self.processes);
        let (tx, rx) = crossbeam_channel::unbounded();
        let fid = self.inner.fn_id(f)?;
        let mut chunks = Vec::new();
        for (k, part) in items.chunks(cs).enumerate() {
            let (payload, unsent) = encode_chunk(part).map_err(Error::Encode)?;
            let back = Deliver::new(tx.clone(), signal.clone());
            let gather = gather.clone();
            let sink: Sink = Box::new(move |_, c, out| {
                if let Some(g) = gather {
                    g.put(k, &out);
                }
                back.send(c, out);
            });
            let c = self.inner.submit(fid, payload, sink, false, false)?;
            unsent.sent();
            chunks.push(c);
        }
        Ok((rx, chunks))
    }

    /// As [`map`](Pool::map), without waiting: the result is an [`AsyncResult`] of the
    /// whole list (its `get` gives the first error, as `map`).
    ///
    /// # Errors
    ///
    /// The pool is closed, or an item cannot be encoded ([`Error::Encode`]).
    pub fn map_async<A: Message, R: Message, S: 'static, F: Target<A, S, Output = R>>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
    ) -> Result<AsyncResult<Vec<R>>, Error> {
        let signal = Arc::new(Signal::default());
        let (rx, chunks) = self.submit_all(f, items.into_iter().collect(), None, &signal)?;
        Ok(AsyncResult::new(
            rx,
            Collect::Chunks(chunks),
            decode_all::<R>,
            signal,
        ))
    }

    /// As [`map_async`](Pool::map_async), with Python's `callback` and `error_callback`:
    /// exactly one of them runs, on the pool's result thread. `callback(results)` (in
    /// input order) once every item is done, before the [`AsyncResult`] is ready; or, as
    /// CPython's `MapResult` does, `error_callback(e)` as soon as the first failed chunk
    /// arrives (whatever its place in the input; `e` is its first failed item's error),
    /// without waiting for the other chunks. The `AsyncResult` itself still waits for
    /// every chunk and its `get` gives the first failed item in input order (CPython's
    /// is ready at the first failure).
    ///
    /// A callback must not block: the result thread routes every result of the pool and
    /// waits for it (a panic in a callback is logged and ignored). When the pool is
    /// terminated first, `error_callback` gets `TaskError::Failed` on the terminating
    /// thread. When this call returns an error, no callback runs.
    ///
    /// # Errors
    ///
    /// As `map_async`.
    pub fn map_async_with<A, R, S, F, C, EC>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
        callback: C,
        error_callback: EC,
    ) -> Result<AsyncResult<Vec<R>>, Error>
    where
        A: Message,
        R: Message,
        S: 'static,
        F: Target<A, S, Output = R>,
        C: FnOnce(Vec<R>) + Send + 'static,
        EC: FnOnce(TaskError) + Send + 'static,
    {
        let items: Vec<A> = items.into_iter().collect();
        let cs = default_chunksize(items.len(), self.processes);
        let n = items.len().div_ceil(cs);
        let on_err: OnErr =
            Box::new(move |e: TaskError| guarded("error callback", || error_callback(e)));
        let on_err = Arc::new(Mutex::new(Some(on_err)));
        let on_err2 = on_err.clone();
        let on_all: OnAll = Box::new(move |outs: &[Outcome]| match decode_all::<R>(outs) {
            Ok(v) => guarded("callback", || callback(v)),
            Err(e) => {
                // (a result that failed to decode: not seen as a failure chunk by chunk)
                let f = on_err2.lock().unwrap_or_else(|e| e.into_inner()).take();
                if let Some(f) = f {
                    f(e)
                }
            }
        });
        let gather = Arc::new(Gather {
            st: Mutex::new(GatherState {
                outs: vec![None; n],
                missing: n,
                on_all: Some(on_all),
                failed: false,
            }),
            on_err,
            first_error: chunk_error::<R>,
        });
        let signal = Arc::new(Signal::default());
        let (rx, chunks) = self.submit_all(f, items, Some(gather.clone()), &signal)?;
        if n == 0 {
            gather.fire(); // (an empty list: at once, on this thread)
        }
        Ok(AsyncResult::new(
            rx,
            Collect::Chunks(chunks),
            decode_all::<R>,
            signal,
        ))
    }

    /// Runs `f(arg)` in a worker and waits for its result (Python's `apply`).
    ///
    /// # Errors
    ///
    /// As [`AsyncResult::get`]; an argument that cannot be encoded or a closed pool give
    /// `TaskError::Failed`.
    pub fn apply<A: Message, R: Message, S: 'static, F: Target<A, S, Output = R>>(
        &self,
        f: F,
        arg: A,
    ) -> Result<R, TaskError> {
        self.apply_async(f, arg)
            .map_err(|e| TaskError::Failed(e.to_string()))?
            .get()
    }

    /// Submits one task; `hook` sees its outcome on the result thread.
    pub(super) fn submit_one<
        A: Message,
        R: Message,
        S: 'static,
        F: Target<A, S, Output = R>,
        T,
        E,
    >(
        &self,
        f: F,
        arg: &A,
        hook: Option<Hook>,
        decode: fn(&[Outcome]) -> Result<T, TaskError<E>>,
    ) -> Result<AsyncResult<T, E>, Error> {
        let (payload, unsent) = encode_chunk(std::slice::from_ref(arg)).map_err(Error::Encode)?;
        let (tx, rx) = crossbeam_channel::bounded(1);
        let fid = self.inner.fn_id(f)?;
        // without callbacks (which run on the result thread), the caller waiting for the
        // result reads it from the result ring itself (see `direct`)
        let direct = hook.is_none();
        let signal = Arc::new(Signal::default());
        let weak = Arc::downgrade(&self.inner);
        let sink: Sink = {
            let (back, signal, weak) = (
                Deliver::new(tx, signal.clone()),
                signal.clone(),
                weak.clone(),
            );
            Box::new(move |_, c, out| {
                if let Some(h) = hook {
                    h(&out);
                }
                back.send(c, out);
                nudge(&weak, &signal.reading);
            })
        };
        let c = self.inner.submit(fid, payload, sink, false, direct)?;
        unsent.sent();
        let mut r = AsyncResult::new(rx, Collect::One(c), decode, signal);
        if direct {
            r.direct = Some(Direct {
                inner: weak,
                chunk: c,
            });
        }
        Ok(r)
    }

    /// Runs `f(arg)` in a worker; the result comes through the returned handle.
    ///
    /// # Errors
    ///
    /// The pool is closed, or `arg` cannot be encoded ([`Error::Encode`]).
    pub fn apply_async<A: Message, R: Message, S: 'static, F: Target<A, S, Output = R>>(
        &self,
        f: F,
        arg: A,
    ) -> Result<AsyncResult<R>, Error> {
        self.submit_one(f, &arg, None, decode_one::<R>)
    }

    /// As [`apply_async`](Pool::apply_async), with Python's `callback` and
    /// `error_callback`: exactly one of them runs, on the pool's result thread, before
    /// the [`AsyncResult`] is ready — `callback(result)`, or `error_callback(e)`.
    ///
    /// A callback must not block: the result thread routes every result of the pool and
    /// waits for it (a panic in a callback is logged and ignored). When the pool is
    /// terminated first, `error_callback` gets `TaskError::Failed` on the terminating
    /// thread. When this call returns an error, no callback runs.
    ///
    /// # Errors
    ///
    /// As `apply_async`.
    ///
    /// # Examples
    ///
    /// ```
    /// use procactor::Pool;
    /// use std::time::Duration;
    ///
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// fn main() {
    ///     procactor::init();
    ///     let pool = Pool::new(1).unwrap();
    ///     let (tx, rx) = std::sync::mpsc::channel();
    ///     let h = pool
    ///         .apply_async_with(square, 7, move |v| tx.send(v).unwrap(), |e| panic!("{e}"))
    ///         .unwrap();
    ///     assert_eq!(h.get().unwrap(), 49);
    ///     assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), 49);
    /// }
    /// ```
    pub fn apply_async_with<A, R, S, F, C, EC>(
        &self,
        f: F,
        arg: A,
        callback: C,
        error_callback: EC,
    ) -> Result<AsyncResult<R>, Error>
    where
        A: Message,
        R: Message,
        S: 'static,
        F: Target<A, S, Output = R>,
        C: FnOnce(R) + Send + 'static,
        EC: FnOnce(TaskError) + Send + 'static,
    {
        let hook: Hook =
            Box::new(
                move |out: &Outcome| match decode_one::<R>(std::slice::from_ref(out)) {
                    Ok(v) => guarded("callback", || callback(v)),
                    Err(e) => guarded("error callback", || error_callback(e)),
                },
            );
        self.submit_one(f, &arg, Some(hook), decode_one::<R>)
    }

    /// As [`apply`](Pool::apply) for a task that returns `Result<R, E>`: its `Err(e)` is
    /// [`TaskError::Failed(e)`](TaskError::Failed), typed; the pool's own reasons are
    /// [`TaskError::Pool`].
    ///
    /// # Errors
    ///
    /// As above.
    pub fn try_apply<
        A: Message,
        R: Message,
        E: Message,
        S: 'static,
        F: Target<A, S, Output = Result<R, E>>,
    >(
        &self,
        f: F,
        arg: A,
    ) -> Result<R, TaskError<E>> {
        self.try_apply_async(f, arg)
            .map_err(|e| TaskError::Pool(e.to_string()))?
            .get()
    }

    /// As [`apply_async`](Pool::apply_async) for a task that returns `Result<R, E>`: the
    /// handle's `get` gives `R`, or the task's `Err(e)` as
    /// [`TaskError::Failed(e)`](TaskError::Failed).
    ///
    /// # Errors
    ///
    /// As `apply_async`.
    pub fn try_apply_async<
        A: Message,
        R: Message,
        E: Message,
        S: 'static,
        F: Target<A, S, Output = Result<R, E>>,
    >(
        &self,
        f: F,
        arg: A,
    ) -> Result<AsyncResult<R, E>, Error> {
        self.submit_one(f, &arg, None, decode_one_typed::<R, E>)
    }

    /// The results in input order, as they come (Python's `imap`, chunk size 1).
    ///
    /// The tasks are submitted at once, as in Python: the pool's feeder thread reads
    /// `items` and submits them whether or not the results are read, keeping at most
    /// [`Imap::window`] chunks submitted and unread, so that an endless input works with
    /// flat memory. Dropping the iterator lets the input be read at most a window further
    /// (all of it after `close()`, which `join()` then waits for: see the module
    /// documentation). `items` is read on that thread, hence `Send + 'static`.
    ///
    /// # Errors
    ///
    /// The pool is closed.
    pub fn imap<A, R, S, F, I>(&self, f: F, items: I) -> Result<Imap<'_, A, R, I::IntoIter>, Error>
    where
        A: Message,
        R: Message,
        S: 'static,
        F: Target<A, S, Output = R>,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'static,
    {
        self.imap_chunksize(f, items, 1)
    }

    /// As [`imap`](Pool::imap) with chunks of `chunksize` items.
    ///
    /// # Errors
    ///
    /// The pool is closed.
    pub fn imap_chunksize<A, R, S, F, I>(
        &self,
        f: F,
        items: I,
        chunksize: usize,
    ) -> Result<Imap<'_, A, R, I::IntoIter>, Error>
    where
        A: Message,
        R: Message,
        S: 'static,
        F: Target<A, S, Output = R>,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'static,
    {
        self.feed(f, items.into_iter(), chunksize, true)
    }

    /// As [`imap`](Pool::imap), in completion order (Python's `imap_unordered`).
    ///
    /// # Errors
    ///
    /// The pool is closed.
    pub fn imap_unordered<A, R, S, F, I>(
        &self,
        f: F,
        items: I,
    ) -> Result<Imap<'_, A, R, I::IntoIter>, Error>
    where
        A: Message,
        R: Message,
        S: 'static,
        F: Target<A, S, Output = R>,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'static,
    {
        self.imap_unordered_chunksize(f, items, 1)
    }

    /// As [`imap_unordered`](Pool::imap_unordered) with chunks of `chunksize` items.
    ///
    /// # Errors
    ///
    /// The pool is closed.
    pub fn imap_unordered_chunksize<A, R, S, F, I>(
        &self,
        f: F,
        items: I,
        chunksize: usize,
    ) -> Result<Imap<'_, A, R, I::IntoIter>, Error>
    where
        A: Message,
        R: Message,
        S: 'static,
        F: Target<A, S, Output = R>,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'static,
    {
        self.feed(f, items.into_iter(), chunksize, false)
    }
}
