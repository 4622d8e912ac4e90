//! The async face of the queues: [`Queue`], [`SimpleQueue`] and [`JoinableQueue`]'s
//! `get_async`, `put_async`, and `JoinableQueue::join_async`.

use super::handle::Handle;
use super::joinable::JoinableQueue;
use super::mpmc::Queue;
use super::simple::SimpleQueue;
use crate::aio::WordWait;
use crate::error::{GetError, PutError, TryGetError};
use crate::pipe::sealed::{Sealed, WordReady};
use crate::pipe::Waitable;
use crate::Message;
use procactor_transports::ring::Ring;
use procactor_transports::BorrowedFd;
use std::future::poll_fn;
use std::time::{Duration, Instant};

/// How often a waiting future looks again although no word changed: a producer that
/// died (so that `Disconnected` is due) announces nothing.
pub(crate) const ASYNC_RECHECK: Duration = Duration::from_millis(50);

/// How soon a reader looks again when items are there but another reader held the
/// reader lock at its try (it publishes nothing when it lets go).
pub(crate) const CONTENDED_RECHECK: Duration = Duration::from_micros(200);

pub(super) fn data_seq(r: &Ring) -> &std::sync::atomic::AtomicU32 {
    r.data_signal().0
}
pub(super) fn data_waiters(r: &Ring) -> &std::sync::atomic::AtomicU32 {
    r.data_signal().1
}
fn space_seq(r: &Ring) -> &std::sync::atomic::AtomicU32 {
    r.space_signal().0
}
fn space_waiters(r: &Ring) -> &std::sync::atomic::AtomicU32 {
    r.space_signal().1
}
fn join_seq(r: &Ring) -> &std::sync::atomic::AtomicU32 {
    r.join_signal().0
}
fn join_waiters(r: &Ring) -> &std::sync::atomic::AtomicU32 {
    r.join_signal().1
}

impl Handle {
    /// Waits, as a future, for `try_get` to give something else than `Empty`.
    pub(super) async fn get_async<T: Message>(&self) -> Result<T, GetError> {
        let mut wait = WordWait::new(self.ring.clone(), data_seq, data_waiters);
        let mut recheck = ASYNC_RECHECK;
        poll_fn(|cx| {
            wait.poll(cx, Some(recheck), || {
                match self.get::<T>(procactor_transports::deadline::Deadline::After(
                    Duration::ZERO,
                )) {
                    Ok(t) => Some(Ok(t)),
                    Err(TryGetError::Empty) => {
                        recheck = if self.ring.is_empty() {
                            ASYNC_RECHECK
                        } else {
                            CONTENDED_RECHECK
                        };
                        None
                    }
                    Err(e) => e.into_blocking().map(Err),
                }
            })
        })
        .await
    }

    /// Waits, as a future, for room for `item` (never for an unbounded queue); `task`:
    /// count an unfinished task with it (a `JoinableQueue`'s put).
    pub(super) async fn put_async<T: Message>(
        &self,
        item: T,
        task: bool,
    ) -> Result<(), PutError<T>> {
        let mut wait = WordWait::new(self.ring.clone(), space_seq, space_waiters);
        let mut item = Some(item);
        poll_fn(|cx| {
            wait.poll(cx, Some(ASYNC_RECHECK), || {
                let it = item.take()?;
                match self.put_bytes(
                    it,
                    procactor_transports::deadline::Deadline::After(Duration::ZERO),
                    task,
                ) {
                    Ok(()) => Some(Ok(())),
                    Err(e) => match e.into_blocking() {
                        Ok(e) => Some(Err(e)),
                        Err(back) => {
                            item = Some(back);
                            None
                        }
                    },
                }
            })
        })
        .await
    }
}

impl<T: Message> Queue<T> {
    /// As [`get`](Queue::get), as a future: takes the next item, waiting for one
    /// without blocking a thread, on any executor (tokio, smol, `block_on`). For a
    /// timeout, wrap it in the runtime's own (`tokio::time::timeout(d, q.get_async())`).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: an item is taken only in the poll that returns it, so dropping the
    /// future (a `select!` branch that lost, a timeout) never loses an item.
    ///
    /// # Errors
    ///
    /// As [`get`](Queue::get): [`GetError::Disconnected`] once the queue is drained and
    /// no producer is left (noticed within 50 ms when the last producer dies).
    ///
    /// # Examples
    ///
    /// ```
    /// use procactor_core::Queue;
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
    /// let q: Queue<u32> = Queue::new().unwrap();
    /// let q2 = q.clone();
    /// let t = std::thread::spawn(move || q2.put(7).unwrap());
    /// assert_eq!(block_on(q.get_async()).unwrap(), 7);
    /// t.join().unwrap();
    /// ```
    pub async fn get_async(&self) -> Result<T, GetError> {
        self.h.get_async().await
    }

    /// As [`put`](Queue::put), as a future: waits for room without blocking a thread
    /// (only a bounded queue ever waits; an unbounded one puts at once).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it completes puts nothing (the item is dropped with
    /// it); once it has completed, the item is in the queue.
    ///
    /// # Errors
    ///
    /// As [`put`](Queue::put).
    pub async fn put_async(&self, item: T) -> Result<(), PutError<T>> {
        self.h.put_async(item, false).await
    }
}

impl<T: Message> SimpleQueue<T> {
    /// As [`get`](SimpleQueue::get), as a future (see [`Queue::get_async`]).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future never loses an item (it is taken only in the
    /// poll that returns it).
    ///
    /// # Errors
    ///
    /// As [`Queue::get_async`]: [`GetError::Disconnected`] once the queue is drained and
    /// no producer is left.
    ///
    /// # Examples
    ///
    /// ```
    /// use procactor_core::SimpleQueue;
    /// let q: SimpleQueue<String> = SimpleQueue::new().unwrap();
    /// q.put("hi".to_string()).unwrap();
    /// // any executor; `futures::executor::block_on` or a tokio runtime alike
    /// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
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
    /// assert_eq!(block_on(q.get_async()).unwrap(), "hi");
    /// ```
    pub async fn get_async(&self) -> Result<T, GetError> {
        self.q.h.get_async().await
    }

    /// As [`put`](SimpleQueue::put), as a future. A `SimpleQueue` is unbounded, so this
    /// waits only in the cases `put` does (a queue built with a `maxsize`, a 64 GiB
    /// backlog).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it completes puts nothing; once it has completed, the
    /// item is in the queue.
    ///
    /// # Errors
    ///
    /// As [`Queue::put`].
    pub async fn put_async(&self, item: T) -> Result<(), PutError<T>> {
        self.q.h.put_async(item, false).await
    }
}

impl<T: Message> JoinableQueue<T> {
    /// As [`get`](JoinableQueue::get), as a future (see [`Queue::get_async`]).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future never loses an item.
    ///
    /// # Errors
    ///
    /// As [`Queue::get_async`].
    pub async fn get_async(&self) -> Result<T, GetError> {
        self.q.h.get_async().await
    }

    /// As [`put`](JoinableQueue::put), as a future: waits for room without blocking a
    /// thread (a bounded queue); the task is counted when the item goes in.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it completes puts nothing and counts no task.
    ///
    /// # Errors
    ///
    /// As [`Queue::put`]; a failed put adds no task.
    pub async fn put_async(&self, item: T) -> Result<(), PutError<T>> {
        self.q.h.put_async(item, true).await
    }

    /// As [`join`](JoinableQueue::join), as a future: completes once every item put has
    /// been matched by a [`task_done`](JoinableQueue::task_done), in any process. For a
    /// timeout, wrap it in the runtime's own (`tokio::time::timeout`).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only watches the count (dropping it changes nothing).
    ///
    /// # Examples
    ///
    /// ```
    /// use procactor_core::JoinableQueue;
    /// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
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
    /// let q: JoinableQueue<u32> = JoinableQueue::new().unwrap();
    /// q.put(1).unwrap();
    /// let q2 = q.clone();
    /// let worker = std::thread::spawn(move || {
    ///     let _item = q2.get().unwrap();
    ///     q2.task_done().unwrap();
    /// });
    /// block_on(q.join_async());
    /// assert_eq!(q.unfinished_tasks(), 0);
    /// worker.join().unwrap();
    /// ```
    pub async fn join_async(&self) {
        let ring = &self.q.h.ring;
        let mut wait = WordWait::new(ring.clone(), join_seq, join_waiters);
        poll_fn(|cx| wait.poll(cx, None, || (ring.unfinished() == 0).then_some(()))).await;
    }
}

// ------------------------------------------------------------------ `wait` on queues

impl Handle {
    /// Whether `get` would not wait: an item is there, the ring is broken, or (when
    /// `producers` is asked: it makes system calls) no producer is left.
    fn ready_now(&self, producers: bool) -> bool {
        !self.ring.is_empty()
            || self.ring.is_broken()
            || (producers
                && !self
                    .ring
                    .producers_alive(procactor_transports::robust::my_id()))
    }

    /// Readiness as a poll function for `wait`/`wait_async`: the data word, with the
    /// producers' liveness checked every [`ASYNC_RECHECK`] (a dying producer announces
    /// nothing).
    fn word_ready(&self) -> WordReady<'_> {
        let mut wait = WordWait::new(self.ring.clone(), data_seq, data_waiters);
        let mut next_check = Instant::now() + ASYNC_RECHECK;
        WordReady(Box::new(move |cx| {
            let now = Instant::now();
            let mut check = now >= next_check;
            if check {
                next_check = now + ASYNC_RECHECK;
            }
            let recheck = next_check.saturating_duration_since(now);
            wait.poll(cx, Some(recheck), || {
                self.ready_now(std::mem::take(&mut check)).then_some(())
            })
        }))
    }
}

macro_rules! waitable_queue {
    ($t:ident, |$s:ident| $handle:expr) => {
        impl<T> Sealed for $t<T> {}

        /// Ready for [`wait`](crate::wait) when `get` would not wait (an item is there,
        /// or it would report `Disconnected` or `Broken`).
        impl<T> Waitable for $t<T> {
            fn ready_cached(&self) -> bool {
                let $s = self;
                $handle.ready_now(true)
            }
            fn ready_fd(&self) -> Option<BorrowedFd<'_>> {
                None
            }
            fn confirm_ready(&self) -> bool {
                self.ready_cached()
            }
            fn word_ready(&self) -> Option<WordReady<'_>> {
                let $s = self;
                Some($handle.word_ready())
            }
        }
    };
}

waitable_queue!(Queue, |s| s.h);
waitable_queue!(SimpleQueue, |s| s.q.h);
waitable_queue!(JoinableQueue, |s| s.q.h);
