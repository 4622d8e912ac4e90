//! Python's `multiprocessing.connection` `Listener` and `Client`: typed, framed,
//! authenticated connections between any two programs, over TCP (`"host:port"`) or a
//! local socket name (`"local:NAME"`, an abstract name on Linux: nothing is left in the
//! file system). The remote [`Manager`](crate::Manager) rides on the same layer.
//!
//! Both sides prove they know the `authkey` (HMAC-SHA-256 challenge/response in both
//! directions, see [`procactor_transports::conn`]) before any other byte is accepted; a
//! wrong key fails with an [`io::ErrorKind::PermissionDenied`] error. Messages are serde
//! values (CBOR) in length-prefixed frames; handles (descriptors) do not travel here.
//!
//! # Examples
//!
//! ```
//! use procactor::connection::{Client, Listener};
//!
//! let listener = Listener::bind("127.0.0.1:0", b"secret").unwrap();
//! let address = listener.address();
//! let server = std::thread::spawn(move || {
//!     let mut c = listener.accept().unwrap();
//!     let n: u64 = c.recv().unwrap();
//!     c.send(&(n * 2)).unwrap();
//! });
//! let mut c = Client::connect(&address, b"secret").unwrap();
//! c.send(&21u64).unwrap();
//! assert_eq!(c.recv::<u64>().unwrap(), 42);
//! server.join().unwrap();
//! ```

use crate::codec;
use crate::error::Error;
use procactor_transports::conn::{self, Address, Stream};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io;
use std::time::Duration;

/// How long a peer may take over the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest frame `recv` accepts unless told otherwise (64 MiB).
pub const DEFAULT_MAX_FRAME: usize = 64 << 20;

/// The server half of the handshake on an accepted stream, all of it within
/// [`HANDSHAKE_TIMEOUT`] however the peer dribbles (the remote manager uses it too).
pub(crate) fn authenticate(s: &mut Stream, key: &[u8]) -> io::Result<()> {
    let until = std::time::Instant::now() + HANDSHAKE_TIMEOUT;
    conn::server_handshake(&mut conn::WithDeadline::new(s, until), key)
}

/// Connects to `address` and runs the client half of the handshake within
/// [`HANDSHAKE_TIMEOUT`] (the remote manager's client uses it too).
pub(crate) fn connect_authenticated(address: &Address, key: &[u8]) -> io::Result<Stream> {
    let mut s = Stream::connect(address)?;
    let until = std::time::Instant::now() + HANDSHAKE_TIMEOUT;
    conn::client_handshake(&mut conn::WithDeadline::new(&mut s, until), key)?;
    Ok(s)
}

/// A listening socket that hands out authenticated connections (Python's
/// `Listener(address, authkey=...)`).
#[derive(Debug)]
pub struct Listener {
    inner: conn::Listener,
    key: Vec<u8>,
}

impl Listener {
    /// Listens on `address`: `"host:port"` (port 0 for any free one) or `"local:NAME"`.
    ///
    /// # Errors
    ///
    /// The address is taken or invalid.
    pub fn bind(address: &str, authkey: &[u8]) -> io::Result<Listener> {
        Ok(Listener {
            inner: conn::Listener::bind(&Address::parse(address))?,
            key: authkey.to_vec(),
        })
    }

    /// The address clients connect to (the real port after binding port 0).
    pub fn address(&self) -> String {
        self.inner
            .address()
            .map(|a| a.to_string())
            .unwrap_or_default()
    }

    /// Waits for a client and authenticates it.
    ///
    /// # Errors
    ///
    /// `PermissionDenied` when the client does not know the key; a client whose whole
    /// handshake takes over 5 s times out. The listener stays usable either way.
    pub fn accept(&self) -> io::Result<RemoteConnection> {
        let mut s = self.inner.accept()?;
        authenticate(&mut s, &self.key)?;
        s.set_read_timeout(None)?;
        Ok(RemoteConnection { s })
    }
}

/// Connects to a [`Listener`] (Python's `Client(address, authkey=...)`).
#[derive(Debug)]
pub struct Client;

impl Client {
    /// Connects to `address` and authenticates both ways.
    ///
    /// # Errors
    ///
    /// Nobody listens there; `PermissionDenied` for a wrong key.
    pub fn connect(address: &str, authkey: &[u8]) -> io::Result<RemoteConnection> {
        let s = connect_authenticated(&Address::parse(address), authkey)?;
        s.set_read_timeout(None)?;
        Ok(RemoteConnection { s })
    }
}

/// An authenticated connection from a [`Listener`] or a [`Client`].
#[derive(Debug)]
pub struct RemoteConnection {
    s: Stream,
}

impl RemoteConnection {
    /// Sends a value.
    ///
    /// # Errors
    ///
    /// It cannot be encoded, or the connection broke.
    pub fn send<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
        let mut buf = Vec::new();
        codec::encode(v, &mut buf, None)?;
        self.send_bytes(&buf)
    }

    /// Receives a value.
    ///
    /// # Errors
    ///
    /// The connection broke or ended, the frame is over [`DEFAULT_MAX_FRAME`], or the
    /// bytes are not a `T` (a decode error naming `T`).
    pub fn recv<T: DeserializeOwned>(&mut self) -> Result<T, Error> {
        let b = self.recv_bytes(DEFAULT_MAX_FRAME)?;
        Ok(codec::decode(&b, Vec::new())?)
    }

    /// Sends raw bytes as one frame.
    ///
    /// # Errors
    ///
    /// The connection broke.
    pub fn send_bytes(&mut self, b: &[u8]) -> Result<(), Error> {
        Ok(conn::write_frame(&mut self.s, b)?)
    }

    /// Receives one frame of at most `max` bytes.
    ///
    /// # Errors
    ///
    /// The connection broke or ended, or the frame is longer than `max` (then the
    /// connection is unusable, as in Python).
    pub fn recv_bytes(&mut self, max: usize) -> Result<Vec<u8>, Error> {
        Ok(conn::read_frame(&mut self.s, max)?)
    }

    /// Bounds how long `recv` waits (`None`: forever).
    ///
    /// # Errors
    ///
    /// The OS refused the option.
    pub fn set_recv_timeout(&self, d: Option<Duration>) -> Result<(), Error> {
        Ok(self.s.set_read_timeout(d)?)
    }
}
