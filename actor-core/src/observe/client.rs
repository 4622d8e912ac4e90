//! The observe socket's client: [`fetch`] one snapshot, or keep an [`Observer`]
//! connected and ask again.

use super::server::REQUEST;
use super::socket_name;
use crate::stats::ProgramSnapshot;
use procactor_transports::observe as sys;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// The largest reply a client reads (a snapshot of tens of thousands of actors is a few
/// MiB): a longer announced length is garbage.
pub const MAX_REPLY: u32 = 64 << 20;

/// Why a program could not be observed.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    /// Nothing listens on the program's observe socket.
    #[error(
        "no observe server for pid {pid}: no such process, not a procactor program, \
         observing turned off (PROCACTOR_OBSERVE=0), or it has made nothing observable \
         (a supervisor, a named queue) yet"
    )]
    NoServer {
        /// The pid asked for.
        pid: u32,
    },
    /// The program closed the connection without answering: the observer runs as
    /// another user (only the same user may observe a program), or the program already
    /// serves as many observers as it takes. Also when the socket's listener is not
    /// process `pid` of this user (another process took the name): nothing is asked.
    #[error(
        "pid {pid} refused to be observed: only the same user may observe a program \
         (or it serves as many observers as it takes already, or its socket is held by \
         another process)"
    )]
    Refused {
        /// The pid asked for.
        pid: u32,
    },
    /// No complete answer in time.
    #[error("pid {pid} did not answer within {timeout:?}")]
    Timeout {
        /// The pid asked for.
        pid: u32,
        /// The time given.
        timeout: Duration,
    },
    /// The answer is not a snapshot.
    #[error("pid {pid} answered with something that is not a snapshot: {reason}")]
    Garbage {
        /// The pid asked for.
        pid: u32,
        /// What was wrong with it.
        reason: String,
    },
    /// An earlier request on this [`Observer`] failed: its connection may hold the
    /// late answer to it, which would be taken for the next one, so it is not used
    /// again. Connect again.
    #[error("an earlier request to pid {pid} failed on this connection: connect again")]
    Broken {
        /// The pid asked for.
        pid: u32,
    },
    /// Any other failure of the connection.
    #[error("observing pid {pid} failed: {source}")]
    Io {
        /// The pid asked for.
        pid: u32,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// Asks the program running as `pid` for its snapshot, over its observe socket, and
/// waits at most `timeout` for the answer.
///
/// # Errors
///
/// See [`ObserveError`]: no server, refused, timeout, garbage.
///
/// # Examples
///
/// ```
/// use procactor::observe::{fetch, ObserveError};
/// use std::time::Duration;
///
/// // pid 1 is not a procactor program
/// let e = fetch(1, Duration::from_secs(1)).unwrap_err();
/// assert!(matches!(e, ObserveError::NoServer { .. }), "{e}");
/// ```
pub fn fetch(pid: u32, timeout: Duration) -> Result<ProgramSnapshot, ObserveError> {
    let deadline = Instant::now() + timeout;
    let timed_out = |e| match e {
        ObserveError::Timeout { pid, .. } => ObserveError::Timeout { pid, timeout },
        e => e,
    };
    let mut o = Observer::connect(pid, timeout).map_err(timed_out)?;
    o.snapshot(deadline.saturating_duration_since(Instant::now()))
        .map_err(timed_out)
}

/// A connection to a program's observe socket, kept for repeated snapshots (what a
/// live viewer uses: one connection, one request per refresh).
#[derive(Debug)]
pub struct Observer {
    pid: u32,
    stream: UnixStream,
    answered: bool,
    /// A request failed: the connection is out of step (see [`ObserveError::Broken`]).
    broken: bool,
}

impl Observer {
    /// Connects to the observe socket of the program running as `pid`, waiting at most
    /// `timeout` (a program that is stopped, or too busy to accept, with a full backlog
    /// of pending connections would otherwise keep the caller waiting for ever).
    ///
    /// # Errors
    ///
    /// [`ObserveError::NoServer`] when nothing listens there,
    /// [`ObserveError::Timeout`] when the connection was not taken within `timeout`.
    pub fn connect(pid: u32, timeout: Duration) -> Result<Observer, ObserveError> {
        match sys::connect_abstract_within(&socket_name(pid), timeout) {
            Ok(stream) if !peer_is(sys::peer_cred(&stream), pid, sys::effective_uid()) => {
                Err(ObserveError::Refused { pid })
            }
            Ok(stream) => Ok(Observer {
                pid,
                stream,
                answered: false,
                broken: false,
            }),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound
                ) =>
            {
                Err(ObserveError::NoServer { pid })
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(ObserveError::Timeout { pid, timeout })
            }
            Err(source) => Err(ObserveError::Io { pid, source }),
        }
    }

    /// The pid observed.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Asks for a snapshot and waits at most `timeout` for it. After an error the
    /// connection is of no further use: every later call returns
    /// [`ObserveError::Broken`] (a late answer to the failed request must not be taken
    /// for the next one); connect again.
    ///
    /// # Errors
    ///
    /// As [`fetch`], and [`ObserveError::Broken`] after an error.
    pub fn snapshot(&mut self, timeout: Duration) -> Result<ProgramSnapshot, ObserveError> {
        if self.broken {
            return Err(ObserveError::Broken { pid: self.pid });
        }
        let r = self.ask(timeout);
        self.broken = r.is_err();
        r
    }

    fn ask(&mut self, timeout: Duration) -> Result<ProgramSnapshot, ObserveError> {
        let pid = self.pid;
        let deadline = Instant::now() + timeout;
        let io_err = |e: io::Error, answered: bool| match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                ObserveError::Timeout { pid, timeout }
            }
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
                if !answered =>
            {
                ObserveError::Refused { pid }
            }
            _ => ObserveError::Io { pid, source: e },
        };
        let answered = self.answered;
        self.set_timeout(deadline)
            .map_err(|e| io_err(e, answered))?;
        self.stream
            .write_all(REQUEST)
            .map_err(|e| io_err(e, answered))?;
        let mut len = [0u8; 4];
        self.read_exact_by(&mut len, deadline)
            .map_err(|e| io_err(e, answered))?;
        let n = u32::from_le_bytes(len);
        if n > MAX_REPLY {
            return Err(ObserveError::Garbage {
                pid,
                reason: format!("a reply of {n} bytes announced (at most {MAX_REPLY})"),
            });
        }
        // (grown as the bytes come, not by the announced length)
        let mut body = Vec::new();
        let mut chunk = [0u8; 16 << 10];
        while body.len() < n as usize {
            let want = (n as usize - body.len()).min(chunk.len());
            self.read_exact_by(&mut chunk[..want], deadline)
                .map_err(|e| io_err(e, true))?;
            body.extend_from_slice(&chunk[..want]);
        }
        self.answered = true;
        ciborium::from_reader(&body[..]).map_err(|e| ObserveError::Garbage {
            pid,
            reason: e.to_string(),
        })
    }

    fn set_timeout(&self, deadline: Instant) -> io::Result<()> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(left))?;
        self.stream.set_write_timeout(Some(left))
    }

    fn read_exact_by(&mut self, mut buf: &mut [u8], deadline: Instant) -> io::Result<()> {
        while !buf.is_empty() {
            self.set_timeout(deadline)?;
            match self.stream.read(buf) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => buf = &mut buf[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Whether the listener at the other end (`(pid, uid)` from `SO_PEERCRED`) is process
/// `pid` of user `own`: an abstract name can be taken by anyone, so a process that
/// squats another's name must not be believed (nor sent anything).
fn peer_is(peer: io::Result<(u32, u32)>, pid: u32, own: u32) -> bool {
    matches!(peer, Ok(p) if p == (pid, own))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_asked_process_of_this_user_is_believed() {
        assert!(peer_is(Ok((42, 1000)), 42, 1000));
        assert!(!peer_is(Ok((43, 1000)), 42, 1000), "another process");
        assert!(!peer_is(Ok((42, 0)), 42, 1000), "another user");
        assert!(!peer_is(Err(io::ErrorKind::Other.into()), 42, 1000));
        // a connection to this process's own socket pair is this process
        let (a, _b) = UnixStream::pair().unwrap();
        assert!(peer_is(
            sys::peer_cred(&a),
            std::process::id(),
            sys::effective_uid()
        ));
    }

    fn reply_bytes() -> Vec<u8> {
        let mut body = Vec::new();
        ciborium::into_writer(&ProgramSnapshot::default(), &mut body).unwrap();
        let mut out = (body.len() as u32).to_le_bytes().to_vec();
        out.extend(body);
        out
    }

    #[test]
    fn a_late_answer_is_not_taken_for_the_next_one() {
        let (stream, mut server) = UnixStream::pair().unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut o = Observer {
            pid: 7,
            stream,
            answered: false,
            broken: false,
        };
        // served in time: fine, and asked again on the same connection
        let mut req = [0u8; 9];
        server.write_all(&reply_bytes()).unwrap();
        o.snapshot(Duration::from_secs(10)).unwrap();
        server.read_exact(&mut req).unwrap();
        assert_eq!(&req, REQUEST);
        // not answered in time: a timeout; the answer comes late
        let e = o.snapshot(Duration::from_millis(50)).unwrap_err();
        assert!(matches!(e, ObserveError::Timeout { pid: 7, .. }), "{e}");
        server.read_exact(&mut req).unwrap();
        server.write_all(&reply_bytes()).unwrap();
        // the next request is refused rather than answered with the late reply
        let e = o.snapshot(Duration::from_secs(10)).unwrap_err();
        assert!(matches!(e, ObserveError::Broken { pid: 7 }), "{e}");
        assert!(e.to_string().contains("connect again"), "{e}");
    }
}
