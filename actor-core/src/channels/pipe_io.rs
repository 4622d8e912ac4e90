//! The send and receive state of one [`Connection`](super::pipe::Connection) end: the
//! frame reader and its broken flag, the adaptive spin of a waiting receive, the reused
//! encode buffers, and how wait times and send errors map to the pipe's errors.

use crate::codec;
use crate::error::{RecvTimeoutError, SendError};
use once_cell::sync::Lazy;
use procactor_transports::deadline::Deadline;
use procactor_transports::frame::{self, FrameError, FrameInfo, FrameReader, Wait};
use procactor_transports::{spin, BorrowedFd, OwnedFd};
use serde::de::DeserializeOwned;
use std::io;
use std::time::{Duration, Instant};

/// The encode buffer is freed after a message larger than this (so that one huge
/// message does not pin memory for the connection's lifetime).
pub(super) const KEEP_ENCODE_BUFFER: usize = 1 << 20;
/// Consecutive waits longer than the spin plus [`spin::WAKE_ALLOWANCE`] before a
/// connection stops spinning.
const MISSES_BEFORE_SLEEPING: u8 = 3;

static SPIN_BUDGET: Lazy<Duration> = Lazy::new(|| {
    std::env::var("PROCACTOR_PIPE_SPIN_US")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(Duration::from_micros(40), Duration::from_micros)
});

#[derive(Debug)]
pub(super) struct Rx {
    pub(super) reader: FrameReader,
    /// Why the stream is unusable (bad framing, truncated frame, `TooLong`).
    broken: Option<String>,
    spin: Spin,
    /// Payload copy for frames that carry descriptors (decoding needs the payload and
    /// the descriptors the reader hands out when the frame is consumed).
    scratch: Vec<u8>,
}

#[derive(Debug, Default)]
pub(super) struct Tx {
    pub(super) buf: Vec<u8>,
    pub(super) fds: Vec<OwnedFd>,
    /// A frame `send_async` started and could not finish without waiting (its payload
    /// is `buf`; its descriptors went with its first byte): every send finishes it
    /// before writing its own.
    pub(super) pending: Option<Partial>,
    /// Frames started with `send_async` get numbers from here ...
    pub(super) started: u64,
    /// ... and this is the highest finished one (frames finish in order).
    pub(super) finished: u64,
}

/// A frame partly written: its header and how many of its bytes are in the socket.
#[derive(Debug)]
pub(super) struct Partial {
    pub(super) header: [u8; frame::HEADER_LEN],
    pub(super) sent: usize,
    pub(super) id: u64,
}

impl Tx {
    /// Writes the rest of the pending frame, if any (`nonblocking`: as far as the socket
    /// takes now, `Err(WouldBlock)` if not all). An error other than `WouldBlock` drops
    /// the frame (the stream is out of step then, as after a failed blocking send).
    pub(super) fn finish_pending(
        &mut self,
        sock: BorrowedFd<'_>,
        nonblocking: bool,
    ) -> io::Result<()> {
        let Some(p) = &mut self.pending else {
            return Ok(());
        };
        let res =
            frame::write_frame_from(sock, &p.header, &self.buf, &[], &mut p.sent, nonblocking);
        match res {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(e),
            r => {
                self.finished = p.id;
                self.pending = None;
                self.buf.clear();
                if self.buf.capacity() > KEEP_ENCODE_BUFFER {
                    self.buf = Vec::new();
                }
                r
            }
        }
    }
}

/// The adaptive spin budget of one connection's receive side.
#[derive(Debug)]
struct Spin {
    max: Duration,
    budget: Duration,
    misses: u8,
}

impl Spin {
    fn new() -> Self {
        let max = *SPIN_BUDGET;
        Spin {
            max,
            budget: max,
            misses: 0,
        }
    }

    /// Learns from a wait that took `waited` and ended with a frame written from the
    /// CPU `sender_cpu` (plus one; 0: unknown): a wait spinning could have served keeps
    /// (or turns back on) spinning; several long ones in a row turn it off. But a wait
    /// that outlasted the spin (or did not spin) and was served from this very CPU turns
    /// spinning off: both ends share a core (the scheduler may wake a sleeper on its
    /// waker's core), so the peer can only answer once this end stops spinning, and a
    /// spin only delays it (measured with both pinned to one core: a round trip of
    /// 75 µs spinning, 12 µs not). The next wait served from another CPU turns it on again.
    fn observe(&mut self, waited: Duration, sender_cpu: u16) {
        if waited <= self.max + spin::WAKE_ALLOWANCE {
            self.misses = 0;
            // (an unknown writer, 0, counts as elsewhere)
            let from_here = waited > self.budget && spin::on_this_cpu(u32::from(sender_cpu));
            self.budget = if from_here { Duration::ZERO } else { self.max };
        } else {
            self.misses = self.misses.saturating_add(1);
            if self.misses >= MISSES_BEFORE_SLEEPING {
                self.budget = Duration::ZERO;
            }
        }
    }
}

impl Rx {
    pub(super) fn new() -> Self {
        Rx {
            reader: FrameReader::new(),
            broken: None,
            spin: Spin::new(),
            scratch: Vec::new(),
        }
    }

    /// Makes sure a complete frame is buffered.
    pub(super) fn fill(
        &mut self,
        fd: BorrowedFd<'_>,
        wait: Wait,
        max_len: Option<u64>,
    ) -> Result<FrameInfo, RecvTimeoutError> {
        if let Some(why) = &self.broken {
            return Err(RecvTimeoutError::Broken(why.clone()));
        }
        let started = if wait != Wait::No && !self.reader.has_frame() {
            self.reader.set_spin(self.spin.budget);
            Some(Instant::now())
        } else {
            None
        };
        let res = self.reader.fill(fd, wait, max_len);
        if let Some(t0) = started {
            let sender_cpu = res.as_ref().map_or(0, |i| i.sender_cpu);
            self.spin.observe(t0.elapsed(), sender_cpu);
        }
        res.map_err(|e| self.frame_error(e))
    }

    /// `Timeout`: the wait's deadline passed (a receive without one gets none).
    fn frame_error(&mut self, e: FrameError) -> RecvTimeoutError {
        match e {
            FrameError::Eof => RecvTimeoutError::Eof,
            FrameError::Timeout => RecvTimeoutError::Timeout,
            FrameError::Io(e) if e.kind() == io::ErrorKind::WouldBlock => RecvTimeoutError::Timeout,
            FrameError::Io(e) => RecvTimeoutError::Io(e),
            FrameError::TooLong { .. } => {
                self.broken = Some(e.to_string());
                RecvTimeoutError::TooLong
            }
            FrameError::Broken => RecvTimeoutError::Broken(
                self.broken
                    .clone()
                    .unwrap_or_else(|| FrameError::Broken.to_string()),
            ),
            e @ (FrameError::Truncated { .. } | FrameError::BadHeader(_)) => {
                let why = e.to_string();
                self.broken = Some(why.clone());
                RecvTimeoutError::Broken(why)
            }
        }
    }

    /// Decodes and drops the frame at the front (dropped even when decoding fails).
    pub(super) fn take<T: DeserializeOwned>(
        &mut self,
        info: FrameInfo,
    ) -> Result<T, RecvTimeoutError> {
        if info.nfds == 0 {
            let res = codec::decode(self.reader.payload(), Vec::new());
            // the frame's descriptors (none announced; any strays are closed here)
            drop(self.reader.consume());
            Ok(res?)
        } else {
            self.scratch.clear();
            self.scratch.extend_from_slice(self.reader.payload());
            let fds = self.reader.consume();
            let res = codec::decode(&self.scratch, fds);
            if self.scratch.capacity() > KEEP_ENCODE_BUFFER {
                self.scratch = Vec::new();
            }
            Ok(res?)
        }
    }

    /// Whether a receive would return at once (a frame, end of stream, or an error).
    pub(super) fn ready_without_syscall(&self) -> bool {
        self.broken.is_some() || self.reader.has_frame() || self.reader.saw_eof()
    }

    /// A non-blocking look: whether a receive would return at once.
    pub(super) fn ready_now(&mut self, fd: BorrowedFd<'_>) -> bool {
        if self.ready_without_syscall() {
            return true;
        }
        !matches!(
            self.fill(fd, Wait::No, None),
            Err(RecvTimeoutError::Timeout)
        )
    }
}

pub(super) fn deadline_of(timeout: Option<Duration>) -> Wait {
    match timeout {
        None => Wait::Forever,
        Some(d) if d.is_zero() => Wait::No,
        Some(d) => match Deadline::after(d).instant() {
            Some(t) => Wait::Until(t),
            None => Wait::Forever,
        },
    }
}

pub(super) fn send_io_error(e: io::Error) -> SendError {
    match e.kind() {
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => SendError::Disconnected,
        _ => SendError::Io(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spin_turns_off_after_long_waits_and_back_on_after_short_ones() {
        let mut s = Spin {
            max: Duration::from_micros(40),
            budget: Duration::from_micros(40),
            misses: 0,
        };
        for _ in 0..MISSES_BEFORE_SLEEPING {
            assert_eq!(s.budget, Duration::from_micros(40));
            s.observe(Duration::from_millis(5), 0);
        }
        assert_eq!(s.budget, Duration::ZERO);
        s.observe(Duration::from_micros(30), 0);
        assert_eq!(s.budget, Duration::from_micros(40));
    }

    /// A wait that outlasted the spin and was served from this CPU turns spinning off
    /// (both ends on one core); one served from elsewhere turns it on again; a wait
    /// served within the spin keeps it whatever the CPU.
    #[test]
    fn spinning_stops_while_the_peer_shares_this_core() {
        let mut s = Spin {
            max: Duration::from_micros(40),
            budget: Duration::from_micros(40),
            misses: 0,
        };
        // (retried if this thread moved to another CPU in between)
        let mut checked = false;
        for _ in 0..1000 {
            s.budget = s.max;
            let here = procactor_transports::spin::cpu_tag();
            let tag = u16::try_from(here).unwrap();
            s.observe(Duration::from_micros(50), tag);
            if procactor_transports::spin::cpu_tag() == here {
                assert_eq!(s.budget, Duration::ZERO);
                // not spinning, served from here again: stays off
                s.observe(Duration::from_micros(10), tag);
                if procactor_transports::spin::cpu_tag() == here {
                    assert_eq!(s.budget, Duration::ZERO);
                    checked = true;
                    break;
                }
            }
        }
        assert!(checked, "this thread never stayed on one CPU");
        let elsewhere = u16::try_from(procactor_transports::spin::cpu_tag() + 1000).unwrap();
        s.observe(Duration::from_micros(10), elsewhere);
        assert_eq!(s.budget, Duration::from_micros(40));
        // served within the spin: kept, whoever wrote it
        s.observe(Duration::from_micros(5), elsewhere);
        assert_eq!(s.budget, Duration::from_micros(40));
        // an unknown writer (0) is taken as elsewhere
        s.budget = Duration::ZERO;
        s.observe(Duration::from_micros(10), 0);
        assert_eq!(s.budget, Duration::from_micros(40));
    }

    #[test]
    fn deadline_mapping() {
        assert_eq!(deadline_of(None), Wait::Forever);
        assert_eq!(deadline_of(Some(Duration::ZERO)), Wait::No);
        assert_eq!(deadline_of(Some(Duration::MAX)), Wait::Forever);
        assert!(matches!(
            deadline_of(Some(Duration::from_secs(1))),
            Wait::Until(_)
        ));
    }
}
