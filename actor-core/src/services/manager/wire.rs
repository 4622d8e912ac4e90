//! A manager connection after the handshake: every frame carries an HMAC-SHA-256 tag
//! under a key made for this connection, over a sequence number, so that a peer on the
//! path can neither inject, alter nor replay a frame; reads have deadlines and allocate
//! only what has arrived.
//!
//! # Session key
//!
//! After the HMAC challenge/response in both directions
//! ([`procactor_transports::conn`]), the server sends 32 random bytes, the client 32 of
//! its own, and both take `HMAC(authkey, "procactor-manager-session/1" || server's ||
//! client's)` as the connection's key. Only a peer that knows the authkey can compute
//! it, and it is new for every connection (so a frame recorded on one connection is
//! refused on any other).
//!
//! # Frames
//!
//! A frame is a 4-byte big-endian length, the payload, and a 32-byte tag:
//! `HMAC(session key, direction || sequence number || payload)`, the direction a byte
//! (client to server 0, server to client 1) and the sequence number the count of
//! frames sent before it in that direction. A receiver that finds a wrong tag (a frame
//! altered, injected, replayed, reordered or reflected) closes the connection.

use hmac::{Hmac, Mac};
use procactor_transports::conn::{self, Stream};
use procactor_transports::os;
use rustix::fd::AsFd;
use sha2::Sha256;
use std::io::{self, BufRead, Write};
use std::time::{Duration, Instant};

type HmacSha256 = Hmac<Sha256>;

/// Bytes of a tag.
const TAG: usize = 32;
/// What the session key is derived under (a new label for a new derivation).
const LABEL: &[u8] = b"procactor-manager-session/1";
/// How long one write may make no progress before the peer counts as gone (a frozen
/// or vanished peer never holds a thread for longer).
pub(super) const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// The capacity of a session's frame buffer kept once it is written (a larger one,
/// grown by a large frame, is given back).
const OUT_KEPT: usize = 64 * 1024;

/// Why a frame could not be read.
#[derive(Debug)]
pub(super) enum RecvError {
    /// The deadline passed first (the connection is out of step: close it).
    TimedOut,
    /// The frame announced more than the limit (its length); the connection is out of
    /// step.
    TooLarge(u64),
    /// The tag is wrong: altered, injected or replayed. The connection must close.
    BadTag,
    /// The stream failed or ended.
    Io,
}

/// One authenticated connection with its session key and sequence numbers.
pub(super) struct Session {
    s: io::BufReader<Stream>,
    mac: HmacSha256,
    /// this side's direction byte; the peer's is the other
    out_dir: u8,
    sent: u64,
    received: u64,
    /// a poll just saw bytes (or the end) waiting: the next read need not poll again
    ready: bool,
    /// the length of the frame [`try_recv`](Session::try_recv) reads, as far as it
    /// came (`head_got` bytes of it)
    head: [u8; 4],
    head_got: usize,
    /// the payload and tag of that frame, as far as they came (returned as the
    /// payload, without a copy, once it is all there)
    partial: Vec<u8>,
    /// frames made and not yet wholly written: `out[out_at..]` (frames
    /// [`queue`](Session::queue)d while the socket was full); also the buffer every
    /// frame is made in (kept between frames, not allocated for each)
    out: Vec<u8>,
    out_at: usize,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("sent", &self.sent)
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

fn keyed(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length
    <HmacSha256 as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
}

/// Sets the options every manager socket has: a write timeout, and TCP keepalive (an
/// idle connection is kept, a peer whose host vanished is found out within minutes).
pub(super) fn tune(s: &Stream) -> io::Result<()> {
    rustix::net::sockopt::set_socket_timeout(
        s.as_fd(),
        rustix::net::sockopt::Timeout::Send,
        Some(WRITE_TIMEOUT),
    )?;
    if let Stream::Tcp(_) = s {
        let fd = s.as_fd();
        rustix::net::sockopt::set_socket_keepalive(fd, true)?;
        rustix::net::sockopt::set_tcp_keepidle(fd, Duration::from_secs(60))?;
        rustix::net::sockopt::set_tcp_keepintvl(fd, Duration::from_secs(10))?;
        rustix::net::sockopt::set_tcp_keepcnt(fd, 6)?;
    }
    // reads are bounded by `poll` deadlines, never by the socket's timeout
    s.set_read_timeout(None)
}

impl Session {
    /// The client's side, on a stream that passed the handshake; all by `until`.
    pub(super) fn client(mut s: Stream, authkey: &[u8], until: Instant) -> io::Result<Session> {
        tune(&s)?;
        let server = read_nonce(&mut s, until)?;
        let mine = conn::random_nonce()?;
        conn::write_frame(&mut s, &mine)?;
        Ok(Session::new(s, authkey, &server, &mine, 0))
    }

    /// The server's side, on a stream that passed the handshake; all by `until`.
    pub(super) fn server(mut s: Stream, authkey: &[u8], until: Instant) -> io::Result<Session> {
        tune(&s)?;
        let mine = conn::random_nonce()?;
        conn::write_frame(&mut s, &mine)?;
        let client = read_nonce(&mut s, until)?;
        Ok(Session::new(s, authkey, &mine, &client, 1))
    }

    fn new(s: Stream, authkey: &[u8], server: &[u8], client: &[u8], out_dir: u8) -> Session {
        let mut k = keyed(authkey);
        k.update(LABEL);
        k.update(server);
        k.update(client);
        let key = k.finalize().into_bytes();
        Session {
            s: io::BufReader::new(s),
            mac: keyed(&key),
            out_dir,
            sent: 0,
            received: 0,
            ready: false,
            head: [0; 4],
            head_got: 0,
            partial: Vec::new(),
            out: Vec::new(),
            out_at: 0,
        }
    }

    fn tag(&self, dir: u8, seq: u64, payload: &[u8]) -> HmacSha256 {
        let mut m = self.mac.clone();
        m.update(&[dir]);
        m.update(&seq.to_be_bytes());
        m.update(payload);
        m
    }

    /// Makes the frame of `payload` after those not yet written, numbered next.
    fn push_frame(&mut self, payload: &[u8]) -> io::Result<()> {
        let len = u32::try_from(payload.len() + TAG)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame over 4 GiB"))?;
        let tag = self
            .tag(self.out_dir, self.sent, payload)
            .finalize()
            .into_bytes();
        self.out.reserve(4 + payload.len() + TAG);
        self.out.extend_from_slice(&len.to_be_bytes());
        self.out.extend_from_slice(payload);
        self.out.extend_from_slice(&tag);
        self.sent += 1;
        Ok(())
    }

    /// Everything made was written: the buffer is emptied (and given back when a large
    /// frame grew it).
    fn written(&mut self) {
        self.out_at = 0;
        if self.out.capacity() > OUT_KEPT {
            self.out = Vec::new();
        } else {
            self.out.clear();
        }
    }

    /// Sends one frame, after the frames [`queue`](Session::queue)d and not yet
    /// written (in order); a write that makes no progress for [`WRITE_TIMEOUT`] fails
    /// (the connection is then broken: nothing of it is kept).
    pub(super) fn send(&mut self, payload: &[u8]) -> io::Result<()> {
        self.push_frame(payload)?;
        let s = self.s.get_mut();
        let r = s
            .write_all(&self.out[self.out_at..])
            .and_then(|()| s.flush());
        self.written();
        r
    }

    /// Queues one frame without ever waiting: written at once as far as the socket
    /// takes it, the rest kept (after any frame queued before, in order) for
    /// [`flush_ready`](Session::flush_ready) or the next [`send`](Session::send).
    pub(super) fn queue(&mut self, payload: &[u8]) -> io::Result<()> {
        self.push_frame(payload)?;
        self.flush_ready().map(drop)
    }

    /// Writes what [`queue`](Session::queue) kept, as far as the socket takes it
    /// without waiting; true once nothing is left.
    pub(super) fn flush_ready(&mut self) -> io::Result<bool> {
        use rustix::net::SendFlags;
        while self.out_at < self.out.len() {
            let fd = self.s.get_ref().as_fd();
            let flags = SendFlags::DONTWAIT | SendFlags::NOSIGNAL;
            match rustix::net::send(fd, &self.out[self.out_at..], flags) {
                Ok(n) => self.out_at += n,
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::AGAIN) => return Ok(false),
                Err(e) => return Err(e.into()),
            }
        }
        self.written();
        Ok(true)
    }

    /// Whether queued frames wait to be written (see [`queue`](Session::queue)).
    pub(super) fn backlog(&self) -> bool {
        self.out_at < self.out.len()
    }

    /// Whether a frame's first bytes are here already, after polling up to `spin`
    /// without sleeping (a peer in a loop of calls answers within microseconds).
    pub(super) fn spin(&mut self, spin: Duration) -> bool {
        if !self.s.buffer().is_empty() {
            return true;
        }
        self.ready = self.s.get_ref().spin_until_readable(spin);
        self.ready
    }

    /// Whether bytes (or the end of the stream) wait to be read: a client that waits for
    /// its answer sends nothing, so that means it is gone or broke the protocol.
    pub(super) fn readable_now(&self) -> bool {
        !self.s.buffer().is_empty() || self.s.get_ref().spin_until_readable(Duration::ZERO)
    }

    /// The socket (to poll it).
    pub(super) fn fd(&self) -> rustix::fd::BorrowedFd<'_> {
        self.s.get_ref().as_fd()
    }

    /// Whether bytes read from the socket wait in the buffer (a poll of the socket
    /// would not see them).
    pub(super) fn buffered(&self) -> bool {
        !self.s.buffer().is_empty()
    }

    /// Reads what has arrived without ever waiting: `Some(payload)` once a whole frame
    /// of at most `max` payload bytes is there, `None` while it is not (the bytes of a
    /// frame begun are kept for the next call). A session read this way is read only
    /// this way. The payload grows with what arrives, as [`recv`](Session::recv)'s.
    pub(super) fn try_recv(&mut self, max: usize) -> Result<Option<Vec<u8>>, RecvError> {
        loop {
            // (once the length is here: the bytes of payload and tag the frame has)
            let mut body = None;
            if self.head_got == 4 {
                let len = u64::from(u32::from_be_bytes(self.head));
                let Some(n) = usize::try_from(len)
                    .ok()
                    .and_then(|n| n.checked_sub(TAG))
                    .filter(|n| *n <= max)
                else {
                    return Err(RecvError::TooLarge(len.saturating_sub(TAG as u64)));
                };
                if self.partial.len() == n + TAG {
                    let (payload, tag) = self.partial.split_at(n);
                    let peer = 1 - self.out_dir;
                    if self
                        .tag(peer, self.received, payload)
                        .verify_slice(tag)
                        .is_err()
                    {
                        return Err(RecvError::BadTag);
                    }
                    self.received += 1;
                    self.head_got = 0;
                    let mut payload = std::mem::take(&mut self.partial);
                    payload.truncate(n);
                    return Ok(Some(payload));
                }
                body = Some(n + TAG);
            }
            if self.s.buffer().is_empty()
                && !os::poll_readable(&[self.s.get_ref().as_fd()], Some(Instant::now()))
                    .map_err(|_| RecvError::Io)?[0]
            {
                return Ok(None);
            }
            let chunk = match self.s.fill_buf() {
                Ok([]) => return Err(RecvError::Io),
                Ok(b) => b,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                    ) =>
                {
                    continue
                }
                Err(_) => return Err(RecvError::Io),
            };
            let take = match body {
                Some(want) => {
                    let take = chunk.len().min(want - self.partial.len());
                    self.partial.extend_from_slice(&chunk[..take]);
                    take
                }
                None => {
                    let at = self.head_got;
                    let take = chunk.len().min(4 - at);
                    self.head[at..at + take].copy_from_slice(&chunk[..take]);
                    self.head_got += take;
                    take
                }
            };
            self.s.consume(take);
        }
    }

    /// Reads one frame of at most `max` payload bytes, whose first byte comes by
    /// `first` (`None`: any time) and the rest by `rest` after it (or by `first`, the
    /// earlier). The payload grows with what arrives: a length announced is never
    /// allocated ahead.
    pub(super) fn recv(
        &mut self,
        max: usize,
        first: Option<Instant>,
        rest: Duration,
    ) -> Result<Vec<u8>, RecvError> {
        let mut len = [0u8; 4];
        self.read_exact(&mut len[..1], first)?;
        let until = match first {
            Some(f) => f.min(Instant::now() + rest),
            None => Instant::now() + rest,
        };
        self.read_exact(&mut len[1..], Some(until))?;
        let len = u64::from(u32::from_be_bytes(len));
        let Some(n) = usize::try_from(len)
            .ok()
            .and_then(|n| n.checked_sub(TAG))
            .filter(|n| *n <= max)
        else {
            return Err(RecvError::TooLarge(len.saturating_sub(TAG as u64)));
        };
        let mut payload = Vec::new();
        while payload.len() < n {
            let chunk = self.fill(Some(until))?;
            let take = chunk.len().min(n - payload.len());
            payload.extend_from_slice(&chunk[..take]);
            self.s.consume(take);
        }
        let mut tag = [0u8; TAG];
        self.read_exact(&mut tag, Some(until))?;
        let peer = 1 - self.out_dir;
        if self
            .tag(peer, self.received, &payload)
            .verify_slice(&tag)
            .is_err()
        {
            return Err(RecvError::BadTag);
        }
        self.received += 1;
        Ok(payload)
    }

    fn fill(&mut self, until: Option<Instant>) -> Result<&[u8], RecvError> {
        if self.s.buffer().is_empty() && !std::mem::take(&mut self.ready) {
            let ready =
                os::poll_readable(&[self.s.get_ref().as_fd()], until).map_err(|_| RecvError::Io)?;
            if !ready[0] {
                return Err(RecvError::TimedOut);
            }
        }
        match self.s.fill_buf() {
            Ok([]) => Err(RecvError::Io),
            Ok(b) => Ok(b),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(&[]),
            Err(_) => Err(RecvError::Io),
        }
    }

    fn read_exact(&mut self, buf: &mut [u8], until: Option<Instant>) -> Result<(), RecvError> {
        let mut at = 0;
        while at < buf.len() {
            let chunk = self.fill(until)?;
            let take = chunk.len().min(buf.len() - at);
            buf[at..at + take].copy_from_slice(&chunk[..take]);
            self.s.consume(take);
            at += take;
        }
        Ok(())
    }
}

/// Shuts a connection down (its reader sees the end of the stream).
pub(super) fn shutdown(fd: &rustix::fd::OwnedFd) {
    let _ = rustix::net::shutdown(fd, rustix::net::Shutdown::Both);
}

fn read_nonce(s: &mut Stream, until: Instant) -> io::Result<Vec<u8>> {
    let n = conn::read_frame(&mut conn::WithDeadline::new(s, until), 64)?;
    if n.len() != 32 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "a session nonce of the wrong length",
        ));
    }
    Ok(n)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use procactor_transports::conn::{Address, Listener};

    pub(in crate::services::manager) fn pair() -> (Session, Session) {
        pair_on(&Address::Tcp("127.0.0.1:0".into()))
    }

    /// A client's and a server's session over a connection to `address` (bound here).
    pub(in crate::services::manager) fn pair_on(address: &Address) -> (Session, Session) {
        let l = Listener::bind(address).unwrap();
        let a = l.address().unwrap();
        let until = Instant::now() + Duration::from_secs(10);
        let c = std::thread::spawn(move || {
            Session::client(Stream::connect(&a).unwrap(), b"k", until).unwrap()
        });
        let s = Session::server(l.accept().unwrap(), b"k", until).unwrap();
        (c.join().unwrap(), s)
    }

    #[test]
    fn frames_pass_and_a_replayed_or_altered_one_is_refused() {
        let (mut c, mut s) = pair();
        let t = Duration::from_secs(10);
        let deadline = || Some(Instant::now() + t);
        c.send(b"one").unwrap();
        assert_eq!(s.recv(100, deadline(), t).unwrap(), b"one");
        s.send(b"back").unwrap();
        assert_eq!(c.recv(100, deadline(), t).unwrap(), b"back");
        // a frame written by someone without the key: refused
        let mut forged = 3u32.wrapping_add(TAG as u32).to_be_bytes().to_vec();
        forged.extend_from_slice(b"bad");
        forged.extend_from_slice(&[0u8; TAG]);
        c.s.get_mut().write_all(&forged).unwrap();
        assert!(matches!(s.recv(100, deadline(), t), Err(RecvError::BadTag)));
    }

    #[test]
    fn a_length_over_the_limit_is_too_large_before_any_payload() {
        let (mut c, mut s) = pair();
        let t = Duration::from_secs(10);
        c.send(&[7u8; 200]).unwrap();
        assert!(matches!(
            s.recv(100, Some(Instant::now() + t), t),
            Err(RecvError::TooLarge(200))
        ));
        // a deadline that passes: timed out
        let (_c, mut s) = pair();
        let t0 = Instant::now();
        assert!(matches!(
            s.recv(100, Some(Instant::now() + Duration::from_millis(50)), t),
            Err(RecvError::TimedOut)
        ));
        assert!(t0.elapsed() < Duration::from_secs(5));
    }

    /// `try_recv` until a frame comes (within 10 s).
    fn next(c: &mut Session) -> Vec<u8> {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(f) = c.try_recv(100).unwrap() {
                return f;
            }
            assert!(Instant::now() < until, "no frame came");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn try_recv_gives_a_frame_once_all_of_it_came_and_refuses_a_forged_one() {
        let (mut c, mut s) = pair();
        assert!(matches!(c.try_recv(100), Ok(None)));
        // a frame that arrives in pieces: nothing until its last byte
        let payload = b"in pieces";
        let tag = s.tag(s.out_dir, s.sent, payload).finalize().into_bytes();
        let mut raw = ((payload.len() + TAG) as u32).to_be_bytes().to_vec();
        raw.extend_from_slice(payload);
        raw.extend_from_slice(&tag);
        s.sent += 1;
        let (most, last) = raw.split_at(raw.len() - 1);
        for piece in most.chunks(3) {
            s.s.get_mut().write_all(piece).unwrap();
            assert!(matches!(c.try_recv(100), Ok(None)));
        }
        s.s.get_mut().write_all(last).unwrap();
        assert_eq!(next(&mut c), payload);
        // frames back to back, an empty one among them
        s.send(b"one").unwrap();
        s.send(b"").unwrap();
        s.send(b"two").unwrap();
        assert_eq!(next(&mut c), b"one");
        assert_eq!(next(&mut c), b"");
        assert_eq!(next(&mut c), b"two");
        // a frame written by someone without the key: refused
        let mut forged = 3u32.wrapping_add(TAG as u32).to_be_bytes().to_vec();
        forged.extend_from_slice(b"bad");
        forged.extend_from_slice(&[0u8; TAG]);
        s.s.get_mut().write_all(&forged).unwrap();
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            match c.try_recv(100) {
                Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(1)),
                r => break assert!(matches!(r, Err(RecvError::BadTag)), "{r:?}"),
            }
        }
    }
}
