//! Length-prefixed frames over a stream socket, with file descriptors riding along.
//!
//! A frame is a 16-byte header — magic `b"PAF1"`, the number of descriptors attached
//! (`u16` LE), the writer's CPU plus one (`u16` LE, a hint for the reader's spin:
//! [`FrameInfo::sender_cpu`]), the payload length (`u64` LE) — followed by the payload.
//! Both ends run the same build (a child is the same image; the remote Manager's TCP
//! has its own framing), so the header has no version. Descriptors are
//! sent with the header's first byte (`SCM_RIGHTS`) and held by the reader until their
//! frame is complete.
//!
//! Received descriptors belong to the frame that announced them. The kernel hands a batch
//! of descriptors to the read that took the byte they were sent with (a read ends after
//! such a byte's message), so the reader notes the stream range of each read that
//! brought descriptors; a frame announcing `n` descriptors takes the batch whose range
//! holds its header's first byte, and it must hold exactly `n` (else `BadHeader`). A
//! batch no frame claims once its range is consumed was not asked for: its descriptors
//! are closed. At most [`MAX_PENDING_FDS`] descriptors wait in a reader; a peer sending
//! more breaks the connection (`BadHeader`) instead of filling our descriptor table.
//!
//! The reader keeps one growable buffer and reuses it: a small frame costs no allocation
//! once the buffer has grown, and many small frames are taken from one `recvmsg`.
//! A frame stays in the buffer until [`FrameReader::consume`], so a caller whose own
//! buffer is too small can ask again (Python's `BufferTooShort` keeps the message).

use crate::fdpass;
use rustix::fd::{BorrowedFd, OwnedFd};
use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

/// The frame header's size in bytes.
pub const HEADER_LEN: usize = 16;
const MAGIC: [u8; 4] = *b"PAF1";
const MIN_READ: usize = 64 * 1024;
/// How far ahead of the bytes already buffered the reader grows its buffer for the
/// length a header announces: 64 KiB, or as much again as is buffered (so that a large
/// real frame grows by doubling). A lying header costs at most this, never its length.
const MAX_PREALLOC: usize = 64 << 10;

/// The most received descriptors a [`FrameReader`] holds before their frames are
/// consumed (four full batches).
pub const MAX_PENDING_FDS: usize = 4 * fdpass::MAX_FDS_PER_MSG;

/// Descriptors that came with the read of stream bytes `from..to`.
#[derive(Debug)]
struct FdBatch {
    from: u64,
    to: u64,
    fds: Vec<OwnedFd>,
}

/// How long a read may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Do not block: only what is already there.
    No,
    /// Block until a frame is complete or the peer is gone.
    Forever,
    /// Block until this instant at the latest.
    Until(Instant),
}

/// Why a frame could not be read.
#[derive(Debug)]
pub enum FrameError {
    /// The peer closed its end and no bytes of a further frame were buffered.
    Eof,
    /// Nothing complete arrived in the allowed time (the partial frame stays buffered).
    Timeout,
    /// The peer closed in the middle of a frame: `got` of `expected` bytes arrived.
    Truncated {
        /// Bytes of the frame (header included) that arrived.
        got: usize,
        /// Bytes the frame needed.
        expected: usize,
    },
    /// The bytes are not a frame (bad magic, lying descriptor count). The stream is out
    /// of step and the reader refuses further reads.
    BadHeader(String),
    /// The announced payload is longer than the limit given to [`FrameReader::fill`].
    /// The reader refuses further reads (as Python's `recv_bytes(maxlength)`).
    TooLong {
        /// The announced payload length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The reader is broken by an earlier `BadHeader`/`TooLong`/`Truncated`.
    Broken,
    /// An operating-system error.
    Io(io::Error),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Eof => f.write_str("end of stream"),
            FrameError::Timeout => f.write_str("timed out waiting for a frame"),
            FrameError::Truncated { got, expected } => {
                write!(f, "stream ended inside a frame ({got} of {expected} bytes)")
            }
            FrameError::BadHeader(why) => write!(f, "not a procactor frame: {why}"),
            FrameError::TooLong { len, max } => {
                write!(f, "frame of {len} bytes exceeds the limit of {max}")
            }
            FrameError::Broken => f.write_str("connection broken by an earlier framing error"),
            FrameError::Io(e) => write!(f, "i/o error: {e}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Encodes a frame header: the magic, the descriptor count (16 bits), the writing
/// thread's CPU plus one (16 bits, a hint for the reader's spin: see
/// [`FrameInfo::sender_cpu`]) and the payload length (64 bits).
pub fn header(payload_len: usize, nfds: usize) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..4].copy_from_slice(&MAGIC);
    // (a count above MAX_FDS_PER_MSG is refused by every reader anyway)
    h[4..6].copy_from_slice(&u16::try_from(nfds).unwrap_or(u16::MAX).to_le_bytes());
    let cpu = u16::try_from(crate::spin::cpu_tag()).unwrap_or(0);
    h[6..8].copy_from_slice(&cpu.to_le_bytes());
    h[8..].copy_from_slice(&(payload_len as u64).to_le_bytes());
    h
}

/// Writes one frame: header, `payload`, and `fds` attached. Blocks until all of it is in
/// the socket (partial writes are continued).
///
/// # Errors
///
/// The peer is gone (`BrokenPipe`), too many descriptors, or another OS error. On an
/// error after a partial write the stream is out of step; callers treat the connection
/// as closed.
pub fn write_frame(sock: BorrowedFd<'_>, payload: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    let h = header(payload.len(), fds.len());
    let total = HEADER_LEN + payload.len();
    let mut sent = 0usize;
    let mut first = true;
    while sent < total {
        let res = if sent < HEADER_LEN {
            fdpass::send(
                sock,
                &[&h[sent..], payload],
                if first { fds } else { &[] },
                false,
            )
        } else {
            fdpass::send(sock, &[&payload[sent - HEADER_LEN..]], &[], false)
        };
        match res {
            Ok(n) => {
                sent += n;
                first = false;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes more of one frame (`header`, then `payload`; `fds` go with the header's first
/// byte, so only while `*sent` is 0), from byte `*sent` on, advancing `*sent`. With
/// `nonblocking` every write has `MSG_DONTWAIT` (the descriptor itself is left as it
/// is, since blocking users share it): a full socket buffer gives `Err(WouldBlock)`
/// with `*sent` telling how far the frame got, and a later call continues it. `Ok`
/// once the whole frame is written.
///
/// # Errors
///
/// `WouldBlock` (only when `nonblocking`), the peer is gone (`BrokenPipe`), too many
/// descriptors, or another OS error. After an error other than `WouldBlock` with
/// `*sent` between 0 and the frame's length the stream is out of step.
pub fn write_frame_from(
    sock: BorrowedFd<'_>,
    header: &[u8; HEADER_LEN],
    payload: &[u8],
    fds: &[BorrowedFd<'_>],
    sent: &mut usize,
    nonblocking: bool,
) -> io::Result<()> {
    let total = HEADER_LEN + payload.len();
    while *sent < total {
        let res = if *sent < HEADER_LEN {
            let fds = if *sent == 0 { fds } else { &[] };
            fdpass::send(sock, &[&header[*sent..], payload], fds, nonblocking)
        } else {
            fdpass::send(sock, &[&payload[*sent - HEADER_LEN..]], &[], nonblocking)
        };
        match res {
            Ok(n) => *sent += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A parsed header of the frame at the front of the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameInfo {
    /// Payload length in bytes.
    pub len: usize,
    /// Descriptors attached.
    pub nfds: usize,
    /// The CPU the writer ran on when it wrote the header, plus one (0: unknown). A hint
    /// only, which a peer may set to anything: a receiver that slept and finds the
    /// frame written from its own CPU knows both ends share a core, where spinning for
    /// the next frame cannot pay.
    pub sender_cpu: u16,
}

/// Reads frames from a stream socket into one reusable buffer.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Stream offset of `buf[start]` (bytes consumed before it).
    pos: u64,
    /// Descriptor batches not yet claimed by a frame, oldest first.
    fds: VecDeque<FdBatch>,
    /// The descriptors of the frame at `claimed_at` (the front one once claimed).
    claimed: Vec<OwnedFd>,
    claimed_at: Option<u64>,
    scratch_fds: Vec<OwnedFd>,
    eof: bool,
    broken: bool,
    spin: Duration,
    /// The buffer's first size and smallest read; 0: [`MIN_READ`].
    min_read: usize,
}

impl FrameReader {
    /// A reader with an empty buffer that does not spin before blocking.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets how long a blocking read polls without sleeping before it blocks in the
    /// kernel. A waiting process on another core takes tens of microseconds to wake; a
    /// short spin answers fast replies without that cost.
    pub fn set_spin(&mut self, spin: Duration) {
        self.spin = crate::spin::budget(spin);
    }

    /// Sets the buffer's first size and smallest read (64 KiB unless set; at least 64
    /// bytes). A reader that takes a few small frames (a child reading its bootstrap)
    /// needs one page, not 64 KiB of fresh memory zero-filled and faulted in page by
    /// page; it still grows as large frames come.
    pub fn set_min_read(&mut self, bytes: usize) {
        self.min_read = bytes.max(64);
    }

    fn min_read(&self) -> usize {
        if self.min_read == 0 {
            MIN_READ
        } else {
            self.min_read
        }
    }

    /// Whether a complete frame is already buffered (no system call).
    pub fn has_frame(&self) -> bool {
        self.parse()
            .ok()
            .flatten()
            .is_some_and(|i| self.avail() >= HEADER_LEN + i.len)
    }

    /// Closes the descriptors received and not yet taken with [`consume`], and leaves the
    /// reader otherwise as it is. A process just made by `fork()` that must not keep its
    /// parent's descriptors calls this, then forgets the reader rather than dropping it:
    /// freeing the buffer would write to heap pages shared with the parent (a
    /// copy-on-write fault each) for memory it never needs back.
    ///
    /// [`consume`]: FrameReader::consume
    pub fn close_fds(&mut self) {
        self.fds.clear();
        self.claimed.clear();
        self.claimed_at = None;
        self.scratch_fds.clear();
    }

    fn pending_fds(&self) -> usize {
        self.fds.iter().map(|b| b.fds.len()).sum::<usize>() + self.claimed.len()
    }

    /// Takes the descriptors of the complete frame at the front (announcing `nfds`):
    /// exactly the batch whose range holds the header's first byte.
    fn claim(&mut self, nfds: usize) -> Result<(), FrameError> {
        if self.claimed_at == Some(self.pos) {
            return Ok(());
        }
        let p = self.pos;
        let at = self.fds.iter().position(|b| b.from <= p && p < b.to);
        let got = at.map_or(0, |i| self.fds[i].fds.len());
        if nfds == 0 {
            // a batch in range may belong to a later frame of the same read
            return Ok(());
        }
        if got != nfds {
            return Err(FrameError::BadHeader(format!(
                "frame announces {nfds} descriptors, {got} arrived with it"
            )));
        }
        if let Some(b) = at.and_then(|i| self.fds.remove(i)) {
            self.claimed = b.fds;
            self.claimed_at = Some(p);
        }
        Ok(())
    }

    /// Whether the peer has closed (end of stream seen) — frames may still be buffered.
    pub fn saw_eof(&self) -> bool {
        self.eof
    }

    /// Bytes read from the socket and not yet consumed (complete frames and a partial
    /// one), plus descriptors received and not yet handed out. Whoever hands the socket
    /// to another process must check that both are zero: buffered data would stay here.
    pub fn buffered(&self) -> (usize, usize) {
        (self.avail(), self.pending_fds())
    }

    fn avail(&self) -> usize {
        self.end - self.start
    }

    fn parse(&self) -> Result<Option<FrameInfo>, FrameError> {
        if self.avail() < HEADER_LEN {
            return Ok(None);
        }
        let h = &self.buf[self.start..self.start + HEADER_LEN];
        if h[..4] != MAGIC {
            return Err(FrameError::BadHeader(format!("bad magic {:02x?}", &h[..4])));
        }
        let nfds = usize::from(u16::from_le_bytes([h[4], h[5]]));
        let sender_cpu = u16::from_le_bytes([h[6], h[7]]);
        let len = u64::from_le_bytes([h[8], h[9], h[10], h[11], h[12], h[13], h[14], h[15]]);
        // (bounded so that `HEADER_LEN + len` cannot overflow)
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l <= isize::MAX as usize - HEADER_LEN)
            .ok_or_else(|| FrameError::BadHeader(format!("length {len} does not fit in memory")))?;
        if nfds > fdpass::MAX_FDS_PER_MSG {
            return Err(FrameError::BadHeader(format!(
                "{nfds} descriptors announced"
            )));
        }
        Ok(Some(FrameInfo {
            len,
            nfds,
            sender_cpu,
        }))
    }

    /// Makes sure a whole frame is buffered and returns its header. `max_len` limits the
    /// payload (`None`: no limit beyond memory).
    ///
    /// # Errors
    ///
    /// See [`FrameError`]. `Timeout` and `Io(WouldBlock)` keep everything buffered;
    /// `Eof` means a clean end between frames.
    pub fn fill(
        &mut self,
        sock: BorrowedFd<'_>,
        wait: Wait,
        max_len: Option<u64>,
    ) -> Result<FrameInfo, FrameError> {
        if self.broken {
            return Err(FrameError::Broken);
        }
        let mut spun = false;
        loop {
            let info = match self.parse() {
                Ok(i) => i,
                Err(e) => {
                    self.broken = true;
                    return Err(e);
                }
            };
            if let Some(info) = info {
                if let Some(max) = max_len {
                    if info.len as u64 > max {
                        self.broken = true;
                        return Err(FrameError::TooLong {
                            len: info.len as u64,
                            max,
                        });
                    }
                }
                if self.avail() >= HEADER_LEN + info.len {
                    if let Err(e) = self.claim(info.nfds) {
                        self.broken = true;
                        self.close_fds();
                        return Err(e);
                    }
                    return Ok(info);
                }
            }
            if self.eof {
                if self.avail() == 0 {
                    return Err(FrameError::Eof);
                }
                self.broken = true;
                let expected = info.map_or(HEADER_LEN, |i| HEADER_LEN + i.len);
                return Err(FrameError::Truncated {
                    got: self.avail(),
                    expected,
                });
            }
            let need = info.map_or(HEADER_LEN, |i| HEADER_LEN + i.len);
            self.make_room(need);
            // try without blocking first (and spin a little if asked)
            match self.read_some(sock, true) {
                Ok(()) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(FrameError::Io(e)),
            }
            match wait {
                Wait::No => return Err(FrameError::Io(io::ErrorKind::WouldBlock.into())),
                Wait::Until(d) if Instant::now() >= d => return Err(FrameError::Timeout),
                _ => {}
            }
            if !spun && !self.spin.is_zero() {
                spun = true;
                if self.spin_read(sock)? {
                    continue;
                }
            }
            let deadline = match wait {
                Wait::Until(d) => Some(d),
                _ => None,
            };
            let ready = crate::os::poll_readable(&[sock], deadline).map_err(FrameError::Io)?;
            if !ready[0] {
                return Err(FrameError::Timeout);
            }
        }
    }

    /// Polls without sleeping for up to the spin budget; `Ok(true)` if bytes arrived.
    fn spin_read(&mut self, sock: BorrowedFd<'_>) -> Result<bool, FrameError> {
        let until = Instant::now() + self.spin;
        let mut i = 0u32;
        loop {
            for _ in 0..(1 << i.min(6)) {
                std::hint::spin_loop();
            }
            i += 1;
            match self.read_some(sock, true) {
                Ok(()) => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(FrameError::Io(e)),
            }
            if Instant::now() >= until {
                return Ok(false);
            }
        }
    }

    fn make_room(&mut self, need: usize) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        // Grow for what the header announces only up to MAX_PREALLOC (or the bytes
        // buffered, whichever is more) ahead of the data: a lying header must not make
        // us allocate it; a real large frame grows by doubling as its bytes arrive.
        let min_read = self.min_read();
        let ahead = MAX_PREALLOC.max(self.avail());
        let want = need.min(self.avail().saturating_add(ahead)).max(min_read);
        if self.buf.len() - self.start < want {
            // move the partial frame to the front, then grow if still short
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.buf.len() < want {
                self.buf.resize(want, 0);
            }
        } else if self.buf.len() - self.end < min_read.min(need - self.avail().min(need)).max(1) {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }

    fn read_some(&mut self, sock: BorrowedFd<'_>, nonblocking: bool) -> io::Result<()> {
        if self.end == self.buf.len() {
            let n = self.buf.len().max(self.min_read());
            self.buf.resize(n * 2, 0);
        }
        let n = match fdpass::recv(
            sock,
            &mut self.buf[self.end..],
            &mut self.scratch_fds,
            nonblocking,
        ) {
            Ok(n) => n,
            // A peer that died with unread data in its receive queue makes the kernel
            // reset the connection: for us that is the peer being gone, like EOF.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => 0,
            Err(e) => return Err(e),
        };
        if !self.scratch_fds.is_empty() {
            let from = self.pos + self.avail() as u64;
            self.fds.push_back(FdBatch {
                from,
                to: from + n.max(1) as u64,
                fds: std::mem::take(&mut self.scratch_fds),
            });
            if self.pending_fds() > MAX_PENDING_FDS {
                let held = self.pending_fds();
                self.close_fds();
                self.broken = true;
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "peer sent {held} descriptors ahead of their frames (at most \
                         {MAX_PENDING_FDS}): connection refused"
                    ),
                ));
            }
        }
        if n == 0 {
            self.eof = true;
        }
        self.end += n;
        Ok(())
    }

    /// The payload of the complete frame at the front (after a successful [`fill`]).
    ///
    /// [`fill`]: FrameReader::fill
    pub fn payload(&self) -> &[u8] {
        match self.parse() {
            Ok(Some(i)) if self.avail() >= HEADER_LEN + i.len => {
                &self.buf[self.start + HEADER_LEN..self.start + HEADER_LEN + i.len]
            }
            _ => &[],
        }
    }

    /// Drops the frame at the front and returns the descriptors that came with it (those
    /// [`fill`](FrameReader::fill) matched to it). Descriptors that arrived with bytes now
    /// consumed and that no frame announced are closed.
    pub fn consume(&mut self) -> Vec<OwnedFd> {
        match self.parse() {
            Ok(Some(i)) if self.avail() >= HEADER_LEN + i.len => {
                let fds = if self.claimed_at == Some(self.pos) {
                    std::mem::take(&mut self.claimed)
                } else {
                    Vec::new()
                };
                self.claimed_at = None;
                let n = HEADER_LEN + i.len;
                self.start += n;
                self.pos += n as u64;
                // batches whose bytes are all consumed were not asked for: close them
                let pos = self.pos;
                self.fds.retain(|b| b.to > pos);
                fds
            }
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rustix::fd::AsFd;

    fn pair() -> (OwnedFd, OwnedFd) {
        fdpass::socketpair().unwrap()
    }

    fn inode(fd: BorrowedFd<'_>) -> u64 {
        rustix::fs::fstat(fd).unwrap().st_ino
    }

    #[test]
    fn descriptors_nobody_announced_are_closed_not_handed_to_a_later_frame() {
        let (a, b) = pair();
        let (pr, pw) = rustix::pipe::pipe().unwrap();
        let (_qr, qw) = rustix::pipe::pipe().unwrap();
        // a frame announcing no descriptor, with one attached anyway
        let h = header(3, 0);
        fdpass::send(a.as_fd(), &[&h, b"abc"], &[pw.as_fd()], false).unwrap();
        drop(pw);
        write_frame(a.as_fd(), b"x", &[qw.as_fd()]).unwrap();
        let mut r = FrameReader::new();
        assert_eq!(r.fill(b.as_fd(), Wait::Forever, None).unwrap().nfds, 0);
        assert!(r.consume().is_empty());
        let i = r.fill(b.as_fd(), Wait::Forever, None).unwrap();
        assert_eq!(i.nfds, 1);
        let fds = r.consume();
        assert_eq!(fds.len(), 1);
        assert_eq!(
            inode(fds[0].as_fd()),
            inode(qw.as_fd()),
            "its own descriptor"
        );
        assert_eq!(r.buffered(), (0, 0));
        // the unasked write end was closed: the pipe has no writer left
        assert_eq!(rustix::io::read(&pr, &mut [0u8; 1]).unwrap(), 0);
    }

    #[test]
    fn a_frame_must_get_exactly_the_descriptors_it_announces() {
        let (a, b) = pair();
        let (_pr, pw) = rustix::pipe::pipe().unwrap();
        let h = header(1, 1);
        fdpass::send(a.as_fd(), &[&h, b"z"], &[pw.as_fd(), pw.as_fd()], false).unwrap();
        let mut r = FrameReader::new();
        let e = r.fill(b.as_fd(), Wait::Forever, None).unwrap_err();
        assert!(
            matches!(e, FrameError::BadHeader(ref m) if m.contains("2 arrived")),
            "{e}"
        );
        assert_eq!(r.buffered().1, 0, "closed");
    }

    #[test]
    fn descriptors_piling_up_ahead_of_their_frame_are_bounded() {
        let (a, b) = pair();
        let (_pr, pw) = rustix::pipe::pipe().unwrap();
        let t = std::thread::spawn(move || {
            let many: Vec<_> = std::iter::repeat_n(pw.as_fd(), fdpass::MAX_FDS_PER_MSG).collect();
            // a frame of 1 MiB whose pieces each bring a full batch of descriptors
            fdpass::send(a.as_fd(), &[&header(1 << 20, 0)], &[], false).unwrap();
            for _ in 0..8 {
                let _ = fdpass::send(a.as_fd(), &[&[0u8; 1000]], &many, false);
            }
            drop(many);
            (a, pw)
        });
        let mut r = FrameReader::new();
        let e = r
            .fill(
                b.as_fd(),
                Wait::Until(Instant::now() + Duration::from_secs(20)),
                None,
            )
            .unwrap_err();
        assert!(e.to_string().contains("descriptors ahead"), "{e}");
        assert!(r.buffered().1 <= MAX_PENDING_FDS);
        drop(t.join().unwrap());
    }

    #[test]
    fn frames_round_trip_with_fds() {
        let (a, b) = pair();
        let (_pr, pw) = rustix::pipe::pipe().unwrap();
        write_frame(a.as_fd(), b"one", &[pw.as_fd()]).unwrap();
        write_frame(a.as_fd(), b"", &[]).unwrap();
        let mut r = FrameReader::new();
        let i = r.fill(b.as_fd(), Wait::Forever, None).unwrap();
        assert_eq!((i.len, i.nfds), (3, 1));
        // (the writer noted the CPU it ran on: some CPU, plus one)
        assert!(i.sender_cpu >= 1);
        let (bytes, fds) = r.buffered();
        assert!(bytes >= HEADER_LEN + 3 && fds == 1, "{bytes} {fds}");
        assert_eq!(r.payload(), b"one");
        assert_eq!(r.consume().len(), 1);
        assert_eq!(r.fill(b.as_fd(), Wait::No, None).unwrap().len, 0);
        assert!(r.consume().is_empty());
        assert_eq!(r.buffered(), (0, 0));
        drop(a);
        assert!(matches!(
            r.fill(b.as_fd(), Wait::Forever, None),
            Err(FrameError::Eof)
        ));
    }

    #[test]
    fn close_fds_closes_what_came_and_was_not_taken_and_a_small_reader_grows() {
        let (a, b) = pair();
        let (pr, pw) = rustix::pipe::pipe().unwrap();
        let big = vec![7u8; 100_000];
        write_frame(a.as_fd(), b"x", &[pw.as_fd()]).unwrap();
        write_frame(a.as_fd(), &big, &[]).unwrap();
        drop(pw); // the frame's copy is now the only write end
        let mut r = FrameReader::new();
        r.set_min_read(64);
        r.fill(b.as_fd(), Wait::Forever, None).unwrap();
        assert_eq!(r.buffered().1, 1);
        r.close_fds();
        assert_eq!(r.buffered().1, 0);
        // the pipe's last write end is gone: its reader sees end-of-file
        let mut buf = [0u8; 1];
        assert_eq!(rustix::io::read(&pr, &mut buf).unwrap(), 0);
        // the buffered bytes are untouched, and a frame far over the first size arrives
        assert_eq!(r.payload(), b"x");
        r.consume();
        let i = r.fill(b.as_fd(), Wait::Forever, None).unwrap();
        assert_eq!(i.len, big.len());
        assert_eq!(r.payload(), &big[..]);
    }

    #[test]
    fn a_frame_written_in_nonblocking_parts_reads_whole() {
        let (a, b) = pair();
        let payload = vec![7u8; 16 << 20]; // more than any socket buffer
        let h = header(payload.len(), 0);
        let mut sent = 0;
        let e = write_frame_from(a.as_fd(), &h, &payload, &[], &mut sent, true).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert!(sent > 0 && sent < HEADER_LEN + payload.len(), "{sent}");
        let reader = std::thread::spawn(move || {
            let mut r = FrameReader::new();
            let info = r.fill(b.as_fd(), Wait::Forever, None).unwrap();
            assert_eq!(info.len, 16 << 20);
            assert!(r.payload().iter().all(|&x| x == 7));
        });
        write_frame_from(a.as_fd(), &h, &payload, &[], &mut sent, false).unwrap();
        assert_eq!(sent, HEADER_LEN + payload.len());
        reader.join().unwrap();
    }

    #[test]
    fn timeout_keeps_partial_frame() {
        let (a, b) = pair();
        let h = header(4, 0);
        fdpass::send(a.as_fd(), &[&h, b"ab"], &[], false).unwrap();
        let mut r = FrameReader::new();
        let d = Instant::now() + Duration::from_millis(10);
        assert!(matches!(
            r.fill(b.as_fd(), Wait::Until(d), None),
            Err(FrameError::Timeout)
        ));
        fdpass::send(a.as_fd(), &[b"cd"], &[], false).unwrap();
        r.fill(b.as_fd(), Wait::Forever, None).unwrap();
        assert_eq!(r.payload(), b"abcd");
    }

    #[test]
    fn garbage_and_too_long_break_the_reader() {
        let (a, b) = pair();
        fdpass::send(a.as_fd(), &[b"garbage-garbage-garbage"], &[], false).unwrap();
        let mut r = FrameReader::new();
        assert!(matches!(
            r.fill(b.as_fd(), Wait::Forever, None),
            Err(FrameError::BadHeader(_))
        ));
        assert!(matches!(
            r.fill(b.as_fd(), Wait::Forever, None),
            Err(FrameError::Broken)
        ));

        let (a, b) = pair();
        write_frame(a.as_fd(), &[0u8; 100], &[]).unwrap();
        let mut r = FrameReader::new();
        assert!(matches!(
            r.fill(b.as_fd(), Wait::Forever, Some(10)),
            Err(FrameError::TooLong { len: 100, max: 10 })
        ));
    }

    #[test]
    fn reset_by_a_dying_peer_reads_as_eof() {
        let (a, b) = pair();
        // b never reads what a sends; closing b with unread data resets the connection
        write_frame(a.as_fd(), b"unread", &[]).unwrap();
        drop(b);
        let mut r = FrameReader::new();
        assert!(matches!(
            r.fill(a.as_fd(), Wait::Forever, None),
            Err(FrameError::Eof)
        ));
    }

    #[test]
    fn a_lying_length_is_neither_allocated_nor_overflowing() {
        for len in [u64::MAX, u64::MAX - 8, 1 << 50] {
            let (a, b) = pair();
            let mut h = header(0, 0);
            h[8..].copy_from_slice(&len.to_le_bytes());
            fdpass::send(a.as_fd(), &[&h, b"abc"], &[], false).unwrap();
            drop(a);
            let mut r = FrameReader::new();
            assert!(!r.has_frame());
            match r.fill(b.as_fd(), Wait::Forever, None) {
                Err(FrameError::BadHeader(_)) | Err(FrameError::Truncated { .. }) => {}
                other => panic!("{len}: {other:?}"),
            }
        }
    }

    #[test]
    fn truncated_frame_is_reported() {
        let (a, b) = pair();
        let h = header(10, 0);
        fdpass::send(a.as_fd(), &[&h, b"abc"], &[], false).unwrap();
        drop(a);
        let mut r = FrameReader::new();
        assert!(matches!(
            r.fill(b.as_fd(), Wait::Forever, None),
            Err(FrameError::Truncated {
                got: 19,
                expected: 26
            })
        ));
    }

    #[test]
    fn large_frame_crosses_while_writer_blocks() {
        let (a, b) = pair();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| i as u8).collect();
        let d2 = data.clone();
        let t = std::thread::spawn(move || write_frame(a.as_fd(), &d2, &[]).unwrap());
        let mut r = FrameReader::new();
        r.fill(b.as_fd(), Wait::Forever, None).unwrap();
        assert!(r.payload() == &data[..]);
        t.join().unwrap();
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Frames split at arbitrary byte boundaries reassemble exactly.
        #[test]
        fn split_frames_reassemble(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..3000), 1..8),
            cuts in proptest::collection::vec(1usize..500, 1..40),
        ) {
            let mut wire = Vec::new();
            for p in &payloads {
                wire.extend_from_slice(&header(p.len(), 0));
                wire.extend_from_slice(p);
            }
            let (a, b) = pair();
            let mut r = FrameReader::new();
            let mut got = Vec::new();
            let mut pos = 0;
            let mut ci = 0;
            while pos < wire.len() {
                let n = cuts[ci % cuts.len()].min(wire.len() - pos);
                ci += 1;
                fdpass::send(a.as_fd(), &[&wire[pos..pos + n]], &[], false).unwrap();
                pos += n;
                while let Ok(_i) = r.fill(b.as_fd(), Wait::No, None) {
                    got.push(r.payload().to_vec());
                    r.consume();
                }
            }
            prop_assert_eq!(got, payloads);
        }

        /// Arbitrary bytes never panic the reader; it yields frames or an error.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let (a, b) = pair();
            fdpass::send(a.as_fd(), &[&bytes], &[], false).unwrap();
            drop(a);
            let mut r = FrameReader::new();
            for _ in 0..10 {
                match r.fill(b.as_fd(), Wait::No, Some(1 << 20)) {
                    Ok(_) => { let _ = r.consume(); }
                    Err(_) => break,
                }
            }
        }
    }
}
