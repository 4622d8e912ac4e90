//! Authenticated byte channels between programs: Python's
//! `multiprocessing.connection` `Listener`/`Client` at the byte level.
//!
//! - Addresses are TCP (`"127.0.0.1:0"`, `"host:port"`) or local socket names
//!   (`"local:NAME"`: an abstract Unix socket name on Linux, so no file is left behind).
//! - Frames are a 4-byte big-endian length and the payload; a reader refuses a length
//!   over its limit before reading the payload.
//! - Authentication is an HMAC-SHA-256 challenge/response in both directions before any
//!   other byte is accepted: the server sends `#CHALLENGE#{sha256}` and 32 random bytes,
//!   the client answers `{sha256}` and the HMAC of that message under the shared key, the
//!   server says `#WELCOME#` or `#FAILURE#`; then the roles swap. A wrong key fails with
//!   `io::ErrorKind::PermissionDenied` on both sides.

use hmac::{Hmac, Mac};
use interprocess::local_socket::{
    prelude::*, GenericNamespaced, ListenerOptions, Stream as LocalStream,
};
use rustix::fd::AsFd;
use sha2::Sha256;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

const CHALLENGE: &[u8] = b"#CHALLENGE#";
const WELCOME: &[u8] = b"#WELCOME#";
const FAILURE: &[u8] = b"#FAILURE#";
const DIGEST: &[u8] = b"{sha256}";
const NONCE_LEN: usize = 32;
/// The largest handshake frame either side accepts.
const HANDSHAKE_MAX: usize = 256;
const LOCAL_PREFIX: &str = "local:";

/// Where a listener listens: a TCP address or a local socket name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// `host:port` (`port` 0: any free port, see [`Listener::address`]).
    Tcp(String),
    /// A local socket name (abstract namespace on Linux).
    Local(String),
}

impl Address {
    /// `"local:NAME"` is a local socket name; anything else a TCP address.
    pub fn parse(s: &str) -> Address {
        match s.strip_prefix(LOCAL_PREFIX) {
            Some(name) => Address::Local(name.to_string()),
            None => Address::Tcp(s.to_string()),
        }
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Tcp(a) => f.write_str(a),
            Address::Local(n) => write!(f, "{LOCAL_PREFIX}{n}"),
        }
    }
}

/// A connected byte stream (TCP or local socket).
#[derive(Debug)]
pub enum Stream {
    /// Over TCP.
    Tcp(TcpStream),
    /// Over a local socket.
    Local(LocalStream),
}

impl Stream {
    /// Connects to `address`.
    ///
    /// # Errors
    ///
    /// Nobody listens there, or the name is invalid.
    pub fn connect(address: &Address) -> io::Result<Stream> {
        match address {
            Address::Tcp(a) => {
                let s = TcpStream::connect(a)?;
                s.set_nodelay(true)?;
                Ok(Stream::Tcp(s))
            }
            Address::Local(n) => {
                let name = n.as_str().to_ns_name::<GenericNamespaced>()?;
                Ok(Stream::Local(LocalStream::connect(name)?))
            }
        }
    }

    /// Bounds every later read (`None`: no bound). A read that times out fails with
    /// `WouldBlock` or `TimedOut`.
    ///
    /// # Errors
    ///
    /// The OS refused the option.
    pub fn set_read_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(d),
            Stream::Local(s) => s.set_recv_timeout(d),
        }
    }
}

impl Stream {
    /// Waits up to `spin` for bytes to arrive without going to sleep: polls, yielding the
    /// CPU between polls (to a peer on the same core). A request/reply peer that answers
    /// within the window is read without the tens of microseconds a sleeping thread takes
    /// to wake up on this kind of machine; after it, the caller's blocking read sleeps as
    /// usual. Returns whether bytes (or the end of the stream) are there.
    pub fn spin_until_readable(&self, spin: Duration) -> bool {
        let fd = self.as_fd();
        let start = std::time::Instant::now();
        loop {
            match crate::os::poll_readable(&[fd], Some(std::time::Instant::now())) {
                Ok(r) if r[0] => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
            if !crate::spin::enabled() || start.elapsed() >= spin {
                return false;
            }
            crate::spin::yield_now();
        }
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> rustix::fd::BorrowedFd<'_> {
        match self {
            Stream::Tcp(s) => s.as_fd(),
            Stream::Local(interprocess::local_socket::Stream::UdSocket(s)) => s.as_fd(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Local(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Local(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::Local(s) => s.flush(),
        }
    }
}

/// A stream whose reads must all be done by `until`: each read waits at most what is
/// left (a peer that dribbles one byte at a time cannot stretch a handshake or a frame).
#[derive(Debug)]
pub struct WithDeadline<'a> {
    s: &'a mut Stream,
    until: std::time::Instant,
}

impl<'a> WithDeadline<'a> {
    /// `s`, with reads bounded to end by `until` (its read timeout is changed).
    pub fn new(s: &'a mut Stream, until: std::time::Instant) -> Self {
        WithDeadline { s, until }
    }
}

impl Read for WithDeadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self
            .until
            .saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"));
        }
        self.s.set_read_timeout(Some(left))?;
        self.s.read(buf)
    }
}

impl Write for WithDeadline<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.s.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.s.flush()
    }
}

/// A listening socket (TCP or local).
#[derive(Debug)]
pub enum Listener {
    /// On TCP.
    Tcp(TcpListener),
    /// On a local socket name.
    Local(interprocess::local_socket::Listener, String),
}

impl Listener {
    /// Listens on `address`.
    ///
    /// # Errors
    ///
    /// The address is taken or invalid.
    pub fn bind(address: &Address) -> io::Result<Listener> {
        match address {
            Address::Tcp(a) => Ok(Listener::Tcp(TcpListener::bind(a)?)),
            Address::Local(n) => {
                let name = n.as_str().to_ns_name::<GenericNamespaced>()?;
                let l = ListenerOptions::new().name(name).create_sync()?;
                Ok(Listener::Local(l, n.clone()))
            }
        }
    }

    /// A listener made from a TCP listener's descriptor (one that travelled to another
    /// process).
    pub fn from_tcp(l: TcpListener) -> Listener {
        Listener::Tcp(l)
    }

    /// The address clients connect to (with the real port after binding port 0).
    ///
    /// # Errors
    ///
    /// The OS cannot say.
    pub fn address(&self) -> io::Result<Address> {
        match self {
            Listener::Tcp(l) => Ok(Address::Tcp(l.local_addr()?.to_string())),
            Listener::Local(_, n) => Ok(Address::Local(n.clone())),
        }
    }

    /// Waits for the next connection.
    ///
    /// # Errors
    ///
    /// The OS refused (`accept`).
    pub fn accept(&self) -> io::Result<Stream> {
        match self {
            Listener::Tcp(l) => {
                let (s, _) = l.accept()?;
                s.set_nodelay(true)?;
                Ok(Stream::Tcp(s))
            }
            Listener::Local(l, _) => Ok(Stream::Local(l.accept()?)),
        }
    }
}

/// Writes one frame.
///
/// # Errors
///
/// The payload is over 4 GiB, or the write failed.
pub fn write_frame(w: &mut impl Write, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame over 4 GiB"))?;
    let mut buf = Vec::with_capacity(4 + payload.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(payload);
    w.write_all(&buf)?;
    w.flush()
}

/// Reads one frame of at most `max` bytes. A longer length prefix is refused before any
/// of its payload is read (`InvalidData`); a stream that ends first gives
/// `UnexpectedEof`.
///
/// # Errors
///
/// As said, and any read error (a read timeout included).
pub fn read_frame(r: &mut impl Read, max: usize) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes refused (the limit is {max})"),
        ));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf)?;
    Ok(buf)
}

/// 32 random bytes from the kernel (`/dev/urandom`).
///
/// # Errors
///
/// The device cannot be read.
pub fn random_nonce() -> io::Result<[u8; NONCE_LEN]> {
    let mut n = [0u8; NONCE_LEN];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut n)?;
    Ok(n)
}

fn mac(key: &[u8], message: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length: `new_from_slice` cannot fail for it
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    m.update(message);
    m.finalize().into_bytes().to_vec()
}

fn verify(key: &[u8], message: &[u8], tag: &[u8]) -> bool {
    let Ok(mut m) = <Hmac<Sha256> as Mac>::new_from_slice(key) else {
        return false;
    };
    m.update(message);
    m.verify_slice(tag).is_ok() // constant time
}

fn refused(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, what.to_string())
}

/// The challenging side: proves the peer knows `key`.
///
/// # Errors
///
/// `PermissionDenied` when the peer's answer is wrong; any I/O error.
pub(crate) fn deliver_challenge(s: &mut (impl Read + Write), key: &[u8]) -> io::Result<()> {
    let mut msg = Vec::with_capacity(CHALLENGE.len() + DIGEST.len() + NONCE_LEN);
    msg.extend_from_slice(CHALLENGE);
    msg.extend_from_slice(DIGEST);
    msg.extend_from_slice(&random_nonce()?);
    write_frame(s, &msg)?;
    let answer = read_frame(s, HANDSHAKE_MAX)?;
    let ok = answer
        .strip_prefix(DIGEST)
        .is_some_and(|tag| verify(key, &msg[CHALLENGE.len()..], tag));
    if ok {
        write_frame(s, WELCOME)
    } else {
        let _ = write_frame(s, FAILURE);
        Err(refused("authentication failed: wrong key"))
    }
}

/// The answering side: proves to the peer that this side knows `key`.
///
/// # Errors
///
/// `PermissionDenied` when the peer refuses the answer (or sends no proper
/// challenge); any I/O error.
pub(crate) fn answer_challenge(s: &mut (impl Read + Write), key: &[u8]) -> io::Result<()> {
    let msg = read_frame(s, HANDSHAKE_MAX)?;
    let Some(challenge) = msg.strip_prefix(CHALLENGE) else {
        return Err(refused("the peer sent no challenge"));
    };
    if !challenge.starts_with(DIGEST) {
        return Err(refused("the peer asked for an unknown digest"));
    }
    let mut answer = DIGEST.to_vec();
    answer.extend_from_slice(&mac(key, challenge));
    write_frame(s, &answer)?;
    match read_frame(s, HANDSHAKE_MAX)? {
        r if r == WELCOME => Ok(()),
        _ => Err(refused("authentication failed: the peer refused our key")),
    }
}

/// A server's half of the handshake: challenge the client, then answer its challenge.
///
/// # Errors
///
/// The stream fails, or the client does not know the key (`PermissionDenied`).
pub fn server_handshake(s: &mut (impl Read + Write), key: &[u8]) -> io::Result<()> {
    deliver_challenge(s, key)?;
    answer_challenge(s, key)
}

/// A client's half of the handshake: answer the server, then challenge it.
///
/// # Errors
///
/// The stream fails, or the server does not know the key (`PermissionDenied`).
pub fn client_handshake(s: &mut (impl Read + Write), key: &[u8]) -> io::Result<()> {
    answer_challenge(s, key)?;
    deliver_challenge(s, key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Stream, Stream) {
        let l = Listener::bind(&Address::Tcp("127.0.0.1:0".into())).unwrap();
        let a = l.address().unwrap();
        let c = Stream::connect(&a).unwrap();
        let s = l.accept().unwrap();
        (s, c)
    }

    #[test]
    fn spinning_sees_bytes_and_gives_up_when_none_come() {
        let (s, mut c) = pair();
        let t0 = std::time::Instant::now();
        assert!(!s.spin_until_readable(Duration::from_millis(20)));
        // with PROCACTOR_SPIN=0 it looks once and gives up at once
        if crate::spin::enabled() {
            assert!(t0.elapsed() >= Duration::from_millis(20));
        }
        write_frame(&mut c, b"x").unwrap();
        assert!(s.spin_until_readable(Duration::from_secs(10)));
        // the end of the stream counts as readable too (the read then says so)
        let (s2, c2) = pair();
        drop(c2);
        assert!(s2.spin_until_readable(Duration::from_secs(10)));
        // a local socket
        let name = format!("local:procactor-spin-{}", std::process::id());
        let l = Listener::bind(&Address::parse(&name)).unwrap();
        let mut lc = Stream::connect(&l.address().unwrap()).unwrap();
        let ls = l.accept().unwrap();
        assert!(!ls.spin_until_readable(Duration::from_millis(5)));
        write_frame(&mut lc, b"y").unwrap();
        assert!(ls.spin_until_readable(Duration::from_secs(10)));
    }

    #[test]
    fn frames_round_trip_and_long_prefixes_are_refused() {
        let (mut s, mut c) = pair();
        write_frame(&mut c, b"hello").unwrap();
        assert_eq!(read_frame(&mut s, 16).unwrap(), b"hello");
        write_frame(&mut c, &[7u8; 100]).unwrap();
        let e = read_frame(&mut s, 16).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        // a truncated frame: the stream ends inside it
        let (mut s, mut c) = pair();
        c.write_all(&10u32.to_be_bytes()).unwrap();
        c.write_all(b"abc").unwrap();
        drop(c);
        assert_eq!(
            read_frame(&mut s, 16).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }

    #[test]
    fn the_handshake_accepts_the_right_key_and_refuses_a_wrong_one() {
        let (mut s, mut c) = pair();
        let t = std::thread::spawn(move || server_handshake(&mut s, b"secret"));
        client_handshake(&mut c, b"secret").unwrap();
        t.join().unwrap().unwrap();

        let (mut s, mut c) = pair();
        let t = std::thread::spawn(move || server_handshake(&mut s, b"secret"));
        let e = client_handshake(&mut c, b"guess").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert_eq!(
            t.join().unwrap().unwrap_err().kind(),
            io::ErrorKind::PermissionDenied
        );
    }

    #[test]
    fn garbage_instead_of_an_answer_is_refused() {
        let (mut s, mut c) = pair();
        let t = std::thread::spawn(move || server_handshake(&mut s, b"k"));
        let _challenge = read_frame(&mut c, HANDSHAKE_MAX).unwrap();
        write_frame(&mut c, b"{sha256}not a mac").unwrap();
        assert_eq!(
            t.join().unwrap().unwrap_err().kind(),
            io::ErrorKind::PermissionDenied
        );
        // and a huge length prefix in place of the answer
        let (mut s, mut c) = pair();
        let t = std::thread::spawn(move || server_handshake(&mut s, b"k"));
        let _challenge = read_frame(&mut c, HANDSHAKE_MAX).unwrap();
        c.write_all(&u32::MAX.to_be_bytes()).unwrap();
        assert_eq!(
            t.join().unwrap().unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }

    #[test]
    fn local_socket_names_work_and_leave_no_file() {
        let name = format!("procactor-test-{}", std::process::id());
        let l = Listener::bind(&Address::Local(name.clone())).unwrap();
        assert_eq!(l.address().unwrap().to_string(), format!("local:{name}"));
        let a = Address::parse(&format!("local:{name}"));
        let t = std::thread::spawn(move || {
            let mut s = l.accept().unwrap();
            server_handshake(&mut s, b"k").unwrap();
            let m = read_frame(&mut s, 64).unwrap();
            write_frame(&mut s, &m).unwrap();
        });
        let mut c = Stream::connect(&a).unwrap();
        client_handshake(&mut c, b"k").unwrap();
        write_frame(&mut c, b"echo").unwrap();
        assert_eq!(read_frame(&mut c, 64).unwrap(), b"echo");
        t.join().unwrap();
        assert!(!std::path::Path::new(&name).exists());
    }

    #[test]
    fn a_deadline_bounds_a_dribbling_peer() {
        let (mut s, mut c) = pair();
        let t = std::thread::spawn(move || {
            // one byte every 40 ms: each read is quick, the whole is not
            for b in 8u32.to_be_bytes() {
                let _ = c.write_all(&[b]);
                std::thread::sleep(Duration::from_millis(40));
            }
            c
        });
        let start = std::time::Instant::now();
        let mut d = WithDeadline::new(&mut s, start + Duration::from_millis(100));
        let e = read_frame(&mut d, 64).unwrap_err();
        assert!(matches!(
            e.kind(),
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
        ));
        assert!(start.elapsed() < Duration::from_secs(2));
        drop(t.join().unwrap());
    }

    #[test]
    fn a_read_timeout_ends_a_stalled_frame() {
        let (mut s, mut c) = pair();
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        c.write_all(&8u32.to_be_bytes()).unwrap();
        let e = read_frame(&mut s, 64).unwrap_err();
        assert!(matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ));
    }
}
