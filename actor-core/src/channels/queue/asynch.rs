//! The async face of [`Queue`]: `get_async`, `put_async`.

use super::handle::Handle;
use super::mpmc::Queue;
use crate::aio::WordWait;
use crate::error::{GetError, PutError, TryGetError};
use crate::Message;
use procactor_transports::ring::Ring;
use std::future::poll_fn;
use std::time::Duration;

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

    /// Waits, as a future, for room for `item` (never for an unbounded queue).
    pub(super) async fn put_async<T: Message>(&self, item: T) -> Result<(), PutError<T>> {
        let mut wait = WordWait::new(self.ring.clone(), space_seq, space_waiters);
        let mut item = Some(item);
        poll_fn(|cx| {
            wait.poll(cx, Some(ASYNC_RECHECK), || {
                let it = item.take()?;
                match self.put_bytes(
                    it,
                    procactor_transports::deadline::Deadline::After(Duration::ZERO),
                    false,
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
        self.h.put_async(item).await
    }
}
