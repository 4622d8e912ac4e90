//! The async face of [`Connection`]: `recv_async`, `send_async`.
//!
//! The descriptor is shared with the blocking methods (and with other processes), so it
//! stays in blocking mode: every read and write here is one `recvmsg`/`sendmsg` with
//! `MSG_DONTWAIT`, and a future that would block waits for readiness through the epoll
//! thread ([`FdWait`]). Both sides keep their state in the connection, not in the
//! future: the frame reader (partial frames included) is the blocking `recv`'s own, and
//! a frame `send_async` could not finish is finished by the next send.

use super::pipe::Connection;
use super::pipe_io::{send_io_error, Partial, KEEP_ENCODE_BUFFER};
use crate::aio::FdWait;
use crate::codec;
use crate::error::{RecvError, RecvTimeoutError, SendError};
use procactor_transports::frame::{self, Wait};
use procactor_transports::watch::Interest;
use procactor_transports::{AsFd, BorrowedFd};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::future::poll_fn;
use std::io;
use std::sync::{MutexGuard, TryLockError};
use std::task::Poll;

/// The lock if it is free now (a poisoned one is used anyway, as the blocking side
/// does); `None` while another thread holds it.
fn try_lock<T>(m: &std::sync::Mutex<T>) -> Option<MutexGuard<'_, T>> {
    match m.try_lock() {
        Ok(g) => Some(g),
        Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

impl<S, R: DeserializeOwned> Connection<S, R> {
    /// As [`recv`](Connection::recv), as a future: receives one value, waiting for it
    /// without blocking a thread, on any executor (tokio, smol, `block_on`). For a
    /// timeout, wrap it in the runtime's own (`tokio::time::timeout`).
    ///
    /// Each try is one non-blocking read (`MSG_DONTWAIT`; the descriptor itself stays
    /// blocking, since blocking calls and other processes share it); while nothing
    /// complete is there the future waits for the descriptor to become readable (one
    /// epoll thread serves every waiting future of the process).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: bytes read belong to the connection's frame reader (the one `recv`
    /// uses), not to the future, and a value is taken only in the poll that returns it.
    /// Dropping the future (a `select!` branch that lost, a timeout) loses nothing,
    /// even with a frame half arrived: the next `recv` or `recv_async` returns it.
    ///
    /// # Errors
    ///
    /// As [`recv`](Connection::recv); also [`RecvError::Io`] when the descriptor cannot
    /// be watched.
    ///
    /// # Examples
    ///
    /// ```
    /// use procactor_core::Pipe;
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
    /// let (a, b) = Pipe::<String>::new().unwrap();
    /// let t = std::thread::spawn(move || a.send(&"hi".to_string()).unwrap());
    /// assert_eq!(block_on(b.recv_async()).unwrap(), "hi");
    /// t.join().unwrap();
    /// ```
    pub async fn recv_async(&self) -> Result<R, RecvError> {
        let fd = self.fd.as_ref().ok_or(RecvError::Closed)?.as_fd();
        let mut wait = FdWait::default();
        poll_fn(|cx| {
            // (another thread holding the reader is receiving: the descriptor turning
            // readable is when to try again)
            if let Some(mut rx) = try_lock(&self.rx) {
                match rx.fill(fd, Wait::No, None) {
                    Ok(info) => return Poll::Ready(rx.take(info).map_err(|e| e.into_blocking())),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(e) => return Poll::Ready(Err(e.into_blocking())),
                }
            }
            wait.poll_ready(cx, fd, Interest::Read)
                .map(|r| Err(r.map_or_else(RecvError::Io, |()| unreachable_ready())))
        })
        .await
    }
}

/// `FdWait::poll_ready` is `Pending` or an error, never `Ready(Ok)`.
fn unreachable_ready() -> RecvError {
    RecvError::Io(io::Error::other("descriptor wait ended without readiness"))
}

impl<S: Serialize, R> Connection<S, R> {
    /// As [`send`](Connection::send), as a future: sends `value`, waiting for room in
    /// the socket buffer without blocking a thread.
    ///
    /// The value is encoded once; each write is non-blocking (`MSG_DONTWAIT`), and the
    /// future waits for the descriptor to become writable when the buffer is full.
    ///
    /// # Cancel safety
    ///
    /// A frame is never cut short on the wire by a drop. Dropped before the first byte
    /// of its frame was written, the future sends nothing (and the value's handles are
    /// left as they were, as after a failed `send`). Dropped after that, the rest of the
    /// frame stays in the connection and the *next send* on it (`send`, `send_bytes`
    /// or `send_async`, from any thread) writes it before its own frame: the value is
    /// delivered whole, just later. Only closing or dropping the connection before that
    /// next send cuts it, and then the receiver gets [`RecvError::Broken`] (a stream
    /// ended inside a frame) instead of the value. A connection holding such a
    /// half-written frame refuses to be sent to another process.
    ///
    /// # Errors
    ///
    /// As [`send`](Connection::send) ([`SendError::Encode`]: nothing written, the
    /// connection stays usable). An error writing an earlier half-written frame (see
    /// above) is reported by this send.
    ///
    /// # Examples
    ///
    /// ```
    /// use procactor_core::Pipe;
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
    /// let (a, b) = Pipe::<u32>::new().unwrap();
    /// block_on(a.send_async(&5)).unwrap();
    /// assert_eq!(b.recv().unwrap(), 5);
    /// ```
    pub async fn send_async(&self, value: &S) -> Result<(), SendError> {
        let fd = self.fd.as_ref().ok_or(SendError::Closed)?.as_fd();
        let mut wait = FdWait::default();
        // the number of our frame once it is partly written and left in the connection
        let mut mine: Option<u64> = None;
        poll_fn(|cx| {
            if let Some(mut tx) = try_lock(&self.tx) {
                match self.send_step(&mut tx, fd, value, &mut mine) {
                    Ok(true) => return Poll::Ready(Ok(())),
                    Ok(false) => {}
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
            wait.poll_ready(cx, fd, Interest::Write).map(|r| {
                Err(match r {
                    Err(e) => SendError::Io(e),
                    Ok(()) => {
                        SendError::Io(io::Error::other("descriptor wait ended without readiness"))
                    }
                })
            })
        })
        .await
    }

    /// One try under the send lock: `Ok(true)` once our frame is written whole,
    /// `Ok(false)` when the socket is full (wait for it to be writable).
    fn send_step(
        &self,
        tx: &mut super::pipe_io::Tx,
        fd: BorrowedFd<'_>,
        value: &S,
        mine: &mut Option<u64>,
    ) -> Result<bool, SendError> {
        let would_block = |e: &io::Error| e.kind() == io::ErrorKind::WouldBlock;
        if let Some(id) = *mine {
            // ours is (or was) the pending frame: another sender may have finished it
            if tx.finished >= id {
                return Ok(true);
            }
            return match tx.finish_pending(fd, true) {
                Ok(()) => Ok(true),
                Err(e) if would_block(&e) => Ok(false),
                Err(e) => Err(send_io_error(e)),
            };
        }
        // an earlier frame a dropped send_async left half-written goes first
        match tx.finish_pending(fd, true) {
            Ok(()) => {}
            Err(e) if would_block(&e) => return Ok(false),
            Err(e) => return Err(send_io_error(e)),
        }
        tx.buf.clear();
        tx.fds.clear();
        let unsent = codec::encode_for_sending(value, &mut tx.buf, Some(&mut tx.fds))?;
        let header = frame::header(tx.buf.len(), tx.fds.len());
        let mut sent = 0;
        let res = {
            let fds: Vec<BorrowedFd<'_>> = tx.fds.iter().map(|f| f.as_fd()).collect();
            frame::write_frame_from(fd, &header, &tx.buf, &fds, &mut sent, true)
        };
        // the kernel holds its own references to descriptors in flight
        tx.fds.clear();
        match res {
            Ok(()) => {
                unsent.sent();
                tx.buf.clear();
                if tx.buf.capacity() > KEEP_ENCODE_BUFFER {
                    tx.buf = Vec::new();
                }
                Ok(true)
            }
            Err(e) if would_block(&e) && sent == 0 => {
                // nothing went: undo (dropping `unsent`), encode again on the next try
                drop(unsent);
                tx.buf.clear();
                Ok(false)
            }
            Err(e) if would_block(&e) => {
                // the first byte went, with the descriptors: the value is sent, its rest
                // stays in the connection
                unsent.sent();
                tx.started += 1;
                let id = tx.started;
                tx.pending = Some(Partial { header, sent, id });
                *mine = Some(id);
                Ok(false)
            }
            Err(e) => Err(send_io_error(e)),
        }
    }
}
