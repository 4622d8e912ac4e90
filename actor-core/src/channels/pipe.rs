//! Pipes: Python's `Pipe()` and `Connection`, and `multiprocessing.connection.wait`.
//!
//! A pipe is a connected pair of Unix stream sockets; each end is a typed
//! [`Connection<S, R>`] that sends `S` and receives `R`. Values travel as length-prefixed
//! frames of CBOR; handles inside a value (another Pipe end, a Queue, a Lock …) travel
//! as file descriptors attached to the frame. The kernel tells the other end when a
//! process holding an end exits, so a dead peer is an [`RecvError::Eof`], never a hang.
//!
//! | Python | procactor |
//! |---|---|
//! | `a, b = Pipe()` | [`Pipe::<T>::new()`](Pipe::new) |
//! | `r, w = Pipe(duplex=False)` | [`Pipe::<T>::oneway()`](Pipe::oneway) |
//! | (none: typed request/reply) | [`Pipe::typed::<Req, Resp>()`](Pipe::typed) |
//! | `conn.send(x)`, `conn.recv()` | [`Connection::send`], [`Connection::recv`], [`Connection::recv_timeout`] |
//! | `conn.poll(timeout)` | [`Connection::poll`] |
//! | `send_bytes`, `recv_bytes`, `recv_bytes_into` | [`Connection::send_bytes`], [`Connection::recv_bytes`], [`Connection::recv_bytes_into`] |
//! | `conn.close()`, `conn.fileno()` | [`Connection::close`], [`AsRawFd::as_raw_fd`] |
//! | `multiprocessing.connection.wait(objs, timeout)` | [`wait`] |
//!
//! # Latency
//!
//! A process blocked in the kernel takes tens of microseconds to wake up on a virtual
//! machine, so a receive that has to wait first polls the socket for a short, adaptive
//! time (40 µs by default) before it sleeps: a peer that answers quickly is served
//! without that wake-up cost. A connection whose messages keep arriving later than the
//! spin stops spinning (and starts again once replies come fast), so a slow producer
//! does not cost its consumer CPU. The environment variable `PROCACTOR_PIPE_SPIN_US`
//! (read once per process) sets the budget; `0` disables spinning.

use super::pipe_io::{deadline_of, send_io_error, Rx, Tx, KEEP_ENCODE_BUFFER};
pub(crate) use super::wait::sealed;
pub use super::wait::{wait, wait_async, Waitable};
use crate::codec::{self, RecvFd, SendFd};
use crate::error::{Error, RecvError, RecvTimeoutError, SendError};
use crate::iter::EndsAtError;
use crate::Message;
use procactor_transports::frame::{self, Wait};
use procactor_transports::{fdpass, socket};
use procactor_transports::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::marker::PhantomData;
use std::sync::{Mutex, MutexGuard, TryLockError};
use std::time::Duration;

/// Socket buffer size asked for on both ends: a 1 MiB message fits in flight, so a
/// writer is not woken and put to sleep many times per message.
const SOCKET_BUFFER: usize = 4 << 20;

/// Makes pipes: Python's `multiprocessing.Pipe`.
///
/// `Pipe` is never instantiated; its functions return the two ends.
///
/// # Examples
///
/// ```
/// use procactor_core::{Pipe, Process};
///
/// fn child(conn: procactor_core::Connection<Vec<u32>, Vec<u32>>) {
///     let v = conn.recv().unwrap();
///     conn.send(&v.iter().map(|x| x * 2).collect()).unwrap();
/// }
///
/// fn main() {
///     procactor_core::init();
///     let (parent, child_end) = Pipe::<Vec<u32>>::new().unwrap();
///     let mut p = Process::new(child, child_end).start().unwrap();
///     parent.send(&vec![1, 2, 3]).unwrap();
///     assert_eq!(parent.recv().unwrap(), vec![2, 4, 6]);
///     p.join().unwrap();
/// }
/// ```
pub struct Pipe<T>(PhantomData<fn() -> T>);

impl<T> std::fmt::Debug for Pipe<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pipe")
    }
}

impl<T: Message> Pipe<T> {
    /// A duplex pipe: both ends send and receive `T` (Python's `Pipe()`).
    ///
    /// # Errors
    ///
    /// The process is out of file descriptors.
    // `Pipe::new()` mirrors Python's `Pipe()`: it makes the two ends, not a `Pipe`.
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> Result<ConnPair<T, T>, Error> {
        pair()
    }

    /// A one-way pipe: `(receive end, send end)`, as Python's `Pipe(duplex=False)`.
    ///
    /// The unused directions are shut down: `recv` on the send end returns
    /// [`RecvError::Eof`] at once, and `send` on the receive end fails with
    /// [`SendError::Disconnected`].
    ///
    /// # Errors
    ///
    /// The process is out of file descriptors.
    ///
    /// # Examples
    ///
    /// ```
    /// let (rx, tx) = procactor_core::Pipe::<String>::oneway().unwrap();
    /// tx.send(&"hello".to_string()).unwrap();
    /// assert_eq!(rx.recv().unwrap(), "hello");
    /// ```
    pub fn oneway() -> Result<ConnPair<(), T>, Error> {
        let (rx, tx) = pair::<(), T>()?;
        socket::shutdown(rx.raw_fd_checked()?, socket::Direction::Write)?;
        socket::shutdown(tx.raw_fd_checked()?, socket::Direction::Read)?;
        Ok((rx, tx))
    }
}

impl Pipe<()> {
    /// A duplex pipe with a different type each way: the first end sends `A` and
    /// receives `B`, the second sends `B` and receives `A` (a client and a server).
    ///
    /// # Errors
    ///
    /// The process is out of file descriptors.
    ///
    /// # Examples
    ///
    /// ```
    /// use procactor_core::Pipe;
    /// let (client, server) = Pipe::typed::<String, usize>().unwrap();
    /// client.send(&"four".to_string()).unwrap();
    /// let req = server.recv().unwrap();
    /// server.send(&req.len()).unwrap();
    /// assert_eq!(client.recv().unwrap(), 4);
    /// ```
    pub fn typed<A: Message, B: Message>() -> Result<ConnPair<A, B>, Error> {
        pair()
    }
}

/// The two ends of one pipe: the first sends `A` and receives `B`, the second the
/// other way round.
pub type ConnPair<A, B> = (Connection<A, B>, Connection<B, A>);

fn pair<A, B>() -> Result<ConnPair<A, B>, Error> {
    let (x, y) = fdpass::socketpair()?;
    for fd in [x.as_fd(), y.as_fd()] {
        // Best effort: a smaller buffer only costs throughput.
        if let Err(e) = socket::set_buffer_sizes(fd, SOCKET_BUFFER) {
            tracing::debug!(error = %e, "could not enlarge pipe socket buffers");
        }
    }
    Ok((Connection::from_fd(x), Connection::from_fd(y)))
}

/// One end of a [`Pipe`]: sends `S`, receives `R` (Python's `Connection`).
///
/// `send` and `recv` take `&self`: a connection can be shared between threads (for
/// example one thread sending while another receives). Sends are serialised by one
/// lock and receives by another, so a message is never interleaved with another one.
/// The send side reuses one encode buffer, so small messages cost no allocation once
/// it has grown.
///
/// **Passing an end to another process.** A `Connection` implements `Serialize` and
/// `Deserialize`: put it in a child's arguments (`Process::new(f, conn)`) or send it
/// through another pipe. The other process gets its own descriptor for the same
/// socket. Drop (or [`close`](Connection::close)) the copy you keep, or the other end
/// will not see end of file when the child exits. A connection whose reader holds
/// read-ahead data (received but not yet returned by `recv`) refuses to be sent, since
/// that data would stay behind.
///
/// **Errors on the wire.** A frame that is not a valid `R` gives
/// [`RecvError::Decode`] naming the expected type; the frame is dropped and the
/// connection stays usable. Bytes that are not frames at all give
/// [`RecvError::Broken`], after which the connection only reports that error.
pub struct Connection<S, R> {
    pub(super) fd: Option<OwnedFd>,
    pub(super) rx: Mutex<Rx>,
    pub(super) tx: Mutex<Tx>,
    _types: PhantomData<fn(S) -> R>,
}

impl<S, R> std::fmt::Debug for Connection<S, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Connection");
        match &self.fd {
            Some(fd) => d.field("fd", &fd.as_raw_fd()),
            None => d.field("closed", &true),
        };
        d.field("sends", &std::any::type_name::<S>())
            .field("receives", &std::any::type_name::<R>())
            .finish()
    }
}

impl<S, R> Connection<S, R> {
    fn from_fd(fd: OwnedFd) -> Self {
        Connection {
            fd: Some(fd),
            rx: Mutex::new(Rx::new()),
            tx: Mutex::new(Tx::default()),
            _types: PhantomData,
        }
    }

    fn raw_fd_checked(&self) -> Result<BorrowedFd<'_>, Error> {
        self.fd
            .as_ref()
            .map(|f| f.as_fd())
            .ok_or(Error::Recv(RecvError::Closed))
    }

    fn lock_rx(&self) -> MutexGuard<'_, Rx> {
        // A panic inside a user's `Deserialize` poisons the lock; the reader's state is
        // still consistent (a frame is consumed or not), so carry on.
        self.rx.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_tx(&self) -> MutexGuard<'_, Tx> {
        self.tx.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends `bytes` as one raw frame (Python's `send_bytes`; slice the buffer for its
    /// `offset` and `size`). The other end reads it with
    /// [`recv_bytes`](Connection::recv_bytes) or
    /// [`recv_bytes_into`](Connection::recv_bytes_into).
    ///
    /// Blocks while the socket buffer (4 MiB when the system allows) is full.
    ///
    /// # Errors
    ///
    /// [`SendError::Closed`] after [`close`](Connection::close),
    /// [`SendError::Disconnected`] when the other end is gone, [`SendError::Io`] for
    /// other OS errors.
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, b) = procactor_core::Pipe::<()>::new().unwrap();
    /// let data = b"0123456789";
    /// a.send_bytes(&data[2..5]).unwrap();
    /// assert_eq!(b.recv_bytes(None).unwrap(), b"234");
    /// ```
    pub fn send_bytes(&self, bytes: &[u8]) -> Result<(), SendError> {
        let fd = self.fd.as_ref().ok_or(SendError::Closed)?;
        let mut tx = self.lock_tx();
        // (a frame a dropped `send_async` left half-written goes first)
        tx.finish_pending(fd.as_fd(), false)
            .map_err(send_io_error)?;
        frame::write_frame(fd.as_fd(), bytes, &[]).map_err(send_io_error)
    }

    /// Receives one raw frame (Python's `recv_bytes`), blocking until it arrives.
    ///
    /// # Errors
    ///
    /// [`RecvError::Eof`] when the other end is closed and nothing is left;
    /// [`RecvError::TooLong`] when the frame is longer than `maxlength` — the
    /// connection is unusable afterwards (as in Python: the stream cannot be resynced
    /// without reading the frame); [`RecvError::Broken`] for bytes that are not frames;
    /// [`RecvError::Closed`] after [`close`](Connection::close).
    ///
    /// # Examples
    ///
    /// ```
    /// use procactor_core::{Pipe, RecvError};
    /// let (a, b) = Pipe::<()>::new().unwrap();
    /// a.send_bytes(&[0u8; 100]).unwrap();
    /// assert!(matches!(b.recv_bytes(Some(10)), Err(RecvError::TooLong)));
    /// ```
    pub fn recv_bytes(&self, maxlength: Option<usize>) -> Result<Vec<u8>, RecvError> {
        let fd = self.fd.as_ref().ok_or(RecvError::Closed)?;
        let mut rx = self.lock_rx();
        rx.fill(fd.as_fd(), Wait::Forever, maxlength.map(|m| m as u64))
            .map_err(RecvTimeoutError::into_blocking)?;
        let bytes = rx.reader.payload().to_vec();
        drop(rx.reader.consume());
        Ok(bytes)
    }

    /// Receives one raw frame into `buf` and returns its length (Python's
    /// `recv_bytes_into`).
    ///
    /// # Errors
    ///
    /// [`RecvError::BufferTooShort`] with the size needed when `buf` is too small: the
    /// frame is kept, and a call with a large enough buffer returns it. Otherwise as
    /// [`recv_bytes`](Connection::recv_bytes).
    ///
    /// # Examples
    ///
    /// ```
    /// use procactor_core::{Pipe, RecvError};
    /// let (a, b) = Pipe::<()>::new().unwrap();
    /// a.send_bytes(b"hello world").unwrap();
    /// let mut small = [0u8; 4];
    /// assert!(matches!(b.recv_bytes_into(&mut small), Err(RecvError::BufferTooShort { needed: 11 })));
    /// let mut big = [0u8; 64];
    /// let n = b.recv_bytes_into(&mut big).unwrap();
    /// assert_eq!(&big[..n], b"hello world");
    /// ```
    pub fn recv_bytes_into(&self, buf: &mut [u8]) -> Result<usize, RecvError> {
        let fd = self.fd.as_ref().ok_or(RecvError::Closed)?;
        let mut rx = self.lock_rx();
        let info = rx
            .fill(fd.as_fd(), Wait::Forever, None)
            .map_err(RecvTimeoutError::into_blocking)?;
        if info.len > buf.len() {
            return Err(RecvError::BufferTooShort { needed: info.len });
        }
        buf[..info.len].copy_from_slice(rx.reader.payload());
        drop(rx.reader.consume());
        Ok(info.len)
    }

    /// Whether a receive would return without blocking: a complete message, end of
    /// file, or an error is there (Python's `poll`). `Some(Duration::ZERO)` only checks;
    /// `Some(d)` waits at most `d`; `None` waits until one of these happens.
    ///
    /// A message already read ahead into this connection's buffer answers `true`
    /// without a system call.
    ///
    /// # Errors
    ///
    /// [`Error::Recv`]`(`[`RecvError::Closed`]`)` after [`close`](Connection::close),
    /// or an OS error.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let (a, b) = procactor_core::Pipe::<u8>::new().unwrap();
    /// assert!(!b.poll(Some(Duration::ZERO)).unwrap());
    /// a.send(&1).unwrap();
    /// assert!(b.poll(Some(Duration::from_secs(5))).unwrap());
    /// drop(a);
    /// assert_eq!(b.recv().unwrap(), 1);
    /// assert!(b.poll(None).unwrap()); // end of file: recv returns at once
    /// ```
    pub fn poll(&self, timeout: Option<Duration>) -> Result<bool, Error> {
        let fd = self.raw_fd_checked()?;
        let mut rx = self.lock_rx();
        if rx.ready_without_syscall() {
            return Ok(true);
        }
        match rx.fill(fd, deadline_of(timeout), None) {
            Ok(_) => Ok(true),
            Err(RecvTimeoutError::Timeout) => Ok(false),
            Err(RecvTimeoutError::Io(e)) => Err(Error::Io(e)),
            // Eof, Broken: a receive returns at once (with that error)
            Err(_) => Ok(true),
        }
    }

    /// Closes this end (Python's `close`); dropping the connection does the same.
    ///
    /// Afterwards `send` fails with [`SendError::Closed`] and `recv` with
    /// [`RecvError::Closed`]. The other end sees end of file once every process's copy
    /// of this end is closed. Calling it again does nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use procactor_core::{Pipe, RecvError, SendError};
    /// let (mut a, b) = Pipe::<u8>::new().unwrap();
    /// a.close();
    /// assert!(matches!(a.send(&1), Err(SendError::Closed)));
    /// assert!(matches!(b.recv(), Err(RecvError::Eof)));
    /// ```
    pub fn close(&mut self) {
        self.fd = None;
    }

    /// Whether [`close`](Connection::close) was called (Python's `closed`).
    pub fn is_closed(&self) -> bool {
        self.fd.is_none()
    }
}

impl<S: Serialize, R> Connection<S, R> {
    /// Sends `value` (Python's `send`). Handles inside it (Pipe ends, queues, …) travel
    /// as file descriptors.
    ///
    /// Blocks while the socket buffer is full (the receiver is not reading).
    ///
    /// Raw bytes inside a value go efficiently as a [`Bytes`](crate::Bytes) (one CBOR
    /// byte string; a `Vec<u8>` is encoded as an array of integers). A message that is
    /// nothing but bytes can skip encoding: [`send_bytes`](Connection::send_bytes).
    ///
    /// # Errors
    ///
    /// [`SendError::Encode`] when the value's `Serialize` fails: nothing is written and
    /// the connection stays usable. [`SendError::Closed`] after
    /// [`close`](Connection::close), [`SendError::Disconnected`] when the other end is
    /// gone, [`SendError::Io`] for other OS errors.
    pub fn send(&self, value: &S) -> Result<(), SendError> {
        let fd = self.fd.as_ref().ok_or(SendError::Closed)?;
        let mut guard = self.lock_tx();
        let tx = &mut *guard;
        // (a frame a dropped `send_async` left half-written goes first)
        tx.finish_pending(fd.as_fd(), false)
            .map_err(send_io_error)?;
        tx.buf.clear();
        tx.fds.clear();
        let unsent = codec::encode_for_sending(value, &mut tx.buf, Some(&mut tx.fds))?;
        let res = if tx.fds.is_empty() {
            frame::write_frame(fd.as_fd(), &tx.buf, &[])
        } else {
            let fds: Vec<BorrowedFd<'_>> = tx.fds.iter().map(|f| f.as_fd()).collect();
            frame::write_frame(fd.as_fd(), &tx.buf, &fds)
        };
        // the kernel holds its own references to descriptors in flight
        tx.fds.clear();
        if tx.buf.capacity() > KEEP_ENCODE_BUFFER {
            tx.buf = Vec::new();
        }
        if res.is_ok() {
            unsent.sent();
        } // else dropping `unsent` undoes what the message's handles did
        res.map_err(send_io_error)
    }
}

impl<S, R: DeserializeOwned> Connection<S, R> {
    /// Receives one value, blocking until it arrives (Python's `recv`).
    ///
    /// # Errors
    ///
    /// [`RecvError::Eof`] once the other end is closed (dropped, `close()`d, or its
    /// process died) and nothing is left to read. [`RecvError::Decode`] when the frame
    /// is not an `R` (the frame is dropped, the connection stays usable).
    /// [`RecvError::Broken`] when the bytes are not frames or the stream ended inside
    /// one. [`RecvError::Closed`] after [`close`](Connection::close).
    pub fn recv(&self) -> Result<R, RecvError> {
        self.recv_wait(Wait::Forever)
            .map_err(RecvTimeoutError::into_blocking)
    }

    /// Receives one value, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`RecvTimeoutError::Timeout`] when nothing complete arrived in time (a partly received
    /// message stays buffered); otherwise as [`recv`](Connection::recv).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use procactor_core::{Pipe, RecvTimeoutError};
    /// let (a, b) = Pipe::<u8>::new().unwrap();
    /// let e = b.recv_timeout(Duration::from_millis(10)).unwrap_err();
    /// assert!(matches!(e, RecvTimeoutError::Timeout));
    /// a.send(&7).unwrap();
    /// assert_eq!(b.recv_timeout(Duration::from_secs(5)).unwrap(), 7);
    /// ```
    pub fn recv_timeout(&self, timeout: Duration) -> Result<R, RecvTimeoutError> {
        self.recv_wait(deadline_of(Some(timeout)))
    }

    /// `Timeout`: `wait`'s deadline passed.
    fn recv_wait(&self, wait: Wait) -> Result<R, RecvTimeoutError> {
        let fd = self.fd.as_ref().ok_or(RecvTimeoutError::Closed)?;
        let mut rx = self.lock_rx();
        let info = rx.fill(fd.as_fd(), wait, None)?;
        rx.take(info)
    }
}

/// Python's `fileno()`.
///
/// # Panics
///
/// After [`close`](Connection::close) (Python raises `OSError` there): a closed
/// connection has no descriptor.
impl<S, R> AsFd for Connection<S, R> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd
            .as_ref()
            .expect("Connection::as_fd on a closed connection")
            .as_fd()
    }
}

/// Python's `fileno()`.
///
/// # Panics
///
/// After [`close`](Connection::close).
impl<S, R> AsRawFd for Connection<S, R> {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

/// A connection travels as a file descriptor (see the [module docs](self)): only
/// through a channel that carries descriptors (a child's arguments, a Pipe).
impl<S, R> Serialize for Connection<S, R> {
    fn serialize<Z: Serializer>(&self, s: Z) -> Result<Z::Ok, Z::Error> {
        use serde::ser::Error as _;
        let fd = self
            .fd
            .as_ref()
            .ok_or_else(|| Z::Error::custom("cannot send a closed Connection"))?;
        match self.rx.try_lock() {
            Ok(rx) => {
                let (bytes, fds) = rx.reader.buffered();
                if bytes > 0 || fds > 0 {
                    return Err(Z::Error::custom(format!(
                        "cannot send a Connection holding {bytes} unread bytes and {fds} \
                         descriptors in its buffer: receive them first"
                    )));
                }
            }
            Err(TryLockError::Poisoned(_)) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(Z::Error::custom(
                    "cannot send a Connection while another thread is receiving on it",
                ))
            }
        }
        // (a send under way holds the lock: this very send, when a connection travels
        // through itself; it finishes its frame, so nothing is left half-written)
        let half_sent = match self.tx.try_lock() {
            Ok(tx) => tx.pending.is_some(),
            Err(TryLockError::Poisoned(p)) => p.into_inner().pending.is_some(),
            Err(TryLockError::WouldBlock) => false,
        };
        if half_sent {
            return Err(Z::Error::custom(
                "cannot send a Connection holding a half-written frame (a dropped \
                 send_async's, finished by its next send): send on it first",
            ));
        }
        SendFd(fd.as_fd()).serialize(s)
    }
}

impl<'de, S, R> Deserialize<'de> for Connection<S, R> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let RecvFd(fd) = RecvFd::deserialize(d)?;
        Ok(Connection::from_fd(fd))
    }
}

impl<S, R> sealed::Sealed for Connection<S, R> {}

impl<S, R> Waitable for Connection<S, R> {
    fn ready_cached(&self) -> bool {
        match self.rx.try_lock() {
            Ok(rx) => rx.ready_without_syscall(),
            Err(TryLockError::Poisoned(p)) => p.into_inner().ready_without_syscall(),
            Err(TryLockError::WouldBlock) => false,
        }
    }

    fn ready_fd(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(|f| f.as_fd())
    }

    fn confirm_ready(&self) -> bool {
        let Some(fd) = self.fd.as_ref() else {
            return true;
        };
        match self.rx.try_lock() {
            Ok(mut rx) => rx.ready_now(fd.as_fd()),
            Err(TryLockError::Poisoned(p)) => p.into_inner().ready_now(fd.as_fd()),
            // another thread is receiving; the descriptor is readable: report it
            Err(TryLockError::WouldBlock) => true,
        }
    }
}

// ------------------------------------------------------------------ iterators

/// A blocking iterator over the values a [`Connection`] receives, from
/// [`Connection::iter`] (or `for x in &conn`), as `std::sync::mpsc::Receiver::iter`:
/// each `next` is a [`recv`](Connection::recv).
///
/// It ends when `recv` fails: normally with [`RecvError::Eof`] (the other end is closed
/// or its process died and nothing is left to read, where Python's `recv` raises
/// `EOFError`), and also at any other error ([`RecvError::Decode`]: that frame is
/// dropped, the connection stays usable; [`RecvError::Broken`], [`RecvError::Closed`]):
/// an iterator yields plain `R`s, so instead of skipping a bad frame silently it stops,
/// and [`error`](RecvIter::error) tells why. It is fused: once ended, it stays ended.
pub struct RecvIter<'a, S, R> {
    c: &'a Connection<S, R>,
    end: EndsAtError<RecvError>,
}

impl<S, R> std::fmt::Debug for RecvIter<'_, S, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvIter")
            .field("connection", self.c)
            .field("error", &self.end.error())
            .finish()
    }
}

impl<S, R> RecvIter<'_, S, R> {
    /// Why the iteration ended (`None` while it has not): [`RecvError::Eof`] for the
    /// normal end.
    pub fn error(&self) -> Option<&RecvError> {
        self.end.error()
    }
}

impl<S, R: DeserializeOwned> Iterator for RecvIter<'_, S, R> {
    type Item = R;

    fn next(&mut self) -> Option<R> {
        let src = &self.c;
        self.end.step(|| src.recv())
    }
}

impl<S, R: DeserializeOwned> std::iter::FusedIterator for RecvIter<'_, S, R> {}

/// A non-blocking iterator over the values already received or readable now, from
/// [`Connection::try_iter`]: each `next` is a `recv_timeout(Duration::ZERO)`.
///
/// It ends at the first failure: [`RecvTimeoutError::Timeout`] (no complete value there now; a
/// partly arrived one stays buffered for the next `recv`), [`RecvError::Eof`], or any
/// other error as [`RecvIter`]; [`error`](TryRecvIter::error) tells which. It never waits.
pub struct TryRecvIter<'a, S, R> {
    c: &'a Connection<S, R>,
    end: EndsAtError<RecvTimeoutError>,
}

impl<S, R> std::fmt::Debug for TryRecvIter<'_, S, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TryRecvIter")
            .field("connection", self.c)
            .field("error", &self.end.error())
            .finish()
    }
}

impl<S, R> TryRecvIter<'_, S, R> {
    /// Why the iteration ended (`None` while it has not): [`RecvTimeoutError::Timeout`]
    /// for the usual end (nothing there now).
    pub fn error(&self) -> Option<&RecvTimeoutError> {
        self.end.error()
    }
}

impl<S, R: DeserializeOwned> Iterator for TryRecvIter<'_, S, R> {
    type Item = R;

    fn next(&mut self) -> Option<R> {
        let src = &self.c;
        self.end.step(|| src.recv_wait(Wait::No))
    }
}

impl<S, R: DeserializeOwned> std::iter::FusedIterator for TryRecvIter<'_, S, R> {}

impl<S, R: DeserializeOwned> Connection<S, R> {
    /// A blocking iterator over the values received: each step is a
    /// [`recv`](Connection::recv); it ends at [`RecvError::Eof`] (or any other error,
    /// see [`RecvIter`]). `for x in &conn` is the same.
    ///
    /// # Examples
    ///
    /// A child sends, the parent reads to the end of the stream:
    ///
    /// ```
    /// use procactor_core::{Connection, Pipe, Process};
    ///
    /// fn produce(tx: Connection<u32, ()>) {
    ///     for i in 0..5 {
    ///         tx.send(&i).unwrap();
    ///     }
    /// } // the child's end closes: the parent sees the end of file
    ///
    /// fn main() {
    ///     procactor_core::init();
    ///     let (rx, tx) = Pipe::<u32>::oneway().unwrap();
    ///     let mut child = Process::new(produce, tx).start().unwrap();
    ///     let got: Vec<u32> = rx.iter().collect();
    ///     assert_eq!(got, [0, 1, 2, 3, 4]);
    ///     child.join().unwrap();
    /// }
    /// ```
    pub fn iter(&self) -> RecvIter<'_, S, R> {
        RecvIter {
            c: self,
            end: EndsAtError::new(),
        }
    }

    /// The values there now, without waiting; ends at the first [`RecvTimeoutError::Timeout`]
    /// (nothing complete there) or other error, see [`TryRecvIter`].
    ///
    /// # Examples
    ///
    /// ```
    /// use procactor_core::Pipe;
    ///
    /// let (a, b) = Pipe::<u8>::new().unwrap();
    /// assert_eq!(b.try_iter().count(), 0); // nothing there: ends at once
    /// a.send(&1).unwrap();
    /// a.send(&2).unwrap();
    /// assert_eq!(b.try_iter().collect::<Vec<_>>(), [1, 2]);
    /// ```
    pub fn try_iter(&self) -> TryRecvIter<'_, S, R> {
        TryRecvIter {
            c: self,
            end: EndsAtError::new(),
        }
    }
}

impl<'a, S, R: DeserializeOwned> IntoIterator for &'a Connection<S, R> {
    type Item = R;
    type IntoIter = RecvIter<'a, S, R>;

    /// As [`Connection::iter`].
    fn into_iter(self) -> RecvIter<'a, S, R> {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_process_round_trip_and_errors() {
        let (a, b) = Pipe::<(u64, String)>::new().unwrap();
        a.send(&(1, "x".into())).unwrap();
        assert_eq!(b.recv().unwrap(), (1, "x".into()));
        // garbage frame: decode error naming the type, then usable
        a.send_bytes(b"\xff\xff").unwrap();
        match b.recv() {
            Err(RecvError::Decode(e)) => assert!(e.expected.contains("String"), "{e}"),
            other => panic!("{other:?}"),
        }
        a.send(&(2, "y".into())).unwrap();
        assert_eq!(b.recv().unwrap().0, 2);
    }

    #[test]
    fn oneway_ends_refuse_the_wrong_direction() {
        let (rx, tx) = Pipe::<u8>::oneway().unwrap();
        assert!(matches!(tx.recv(), Err(RecvError::Eof)));
        assert!(matches!(rx.send(&()), Err(SendError::Disconnected)));
        tx.send(&3).unwrap();
        assert_eq!(rx.recv().unwrap(), 3);
    }

    #[test]
    fn a_connection_with_read_ahead_refuses_to_travel() {
        let (a, b) = Pipe::<u8>::new().unwrap();
        let (c, _d) = Pipe::<Connection<u8, u8>>::new().unwrap();
        a.send(&1).unwrap();
        a.send(&2).unwrap();
        assert_eq!(b.recv().unwrap(), 1); // reads both frames ahead
        let e = c.send(&b).unwrap_err();
        assert!(matches!(e, SendError::Encode(_)), "{e:?}");
        assert_eq!(b.recv().unwrap(), 2);
        c.send(&b).unwrap();
    }
}
