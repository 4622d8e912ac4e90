//! The async methods' machinery: `get_async`, `put_async` and `join_async` of a queue
//! handle, as std futures on any executor, with no async runtime and no thread of their
//! own.
//!
//! # Lanes
//!
//! A handle has two *lanes*, each a non-blocking connection of its own (opened on first
//! use): the read lane carries `get_async`'s read rounds (`XAUTOCLAIM`, `XREADGROUP …
//! BLOCK`), the write lane `put_async`'s `XADD`s and `join_async`'s `XLEN`s, so that a
//! put never waits behind a blocked read. The handle's sync methods keep their own
//! blocking connection; all of them share the handle's state (entries read ahead,
//! acknowledgements owed, items outstanding).
//!
//! A lane serves one future at a time: the futures waiting on it stand in line (a
//! ticket each, their wakers kept in ticket order), and only the first in line drives
//! the connection: it writes its commands, reads the replies, and, when the socket
//! would block, arms the socket's registration with the process's one epoll thread
//! (`procactor_transports::watch::FdWatch`) with its waker. When it is done (or
//! dropped), it wakes the next in line. So 10 000 pending `get_async` on a handle cost
//! 10 000 wakers in a map and one registered descriptor: no thread each, no task each.
//!
//! # Cancellation
//!
//! The commands a future sent belong to the lane, not to the future: the replies of a
//! dropped future's commands are read by whoever drives the lane next, and their
//! effects applied all the same. A read round's entries go to the handle's buffer, so
//! an entry read for a `get_async` that was dropped is handed to the handle's next get
//! (or, if the handle is dropped first, stays pending in the group for `XAUTOCLAIM`).
//! A `put_async` dropped before its `XADD` was written takes it back (not put); dropped
//! with it partly written, it closes the lane's connection, so the server discards the
//! incomplete command (not put); dropped after it was written whole, the item is put.
//!
//! # Waiting for room, or for an empty stream
//!
//! A bounded `put_async` waiting for room and a `join_async` waiting for the stream to
//! empty wait in the handle's waiting room ([`Room`]): one check of the stream on the
//! write lane at a time, made by one of them, whose answer wakes them all; N of them
//! waiting on one handle make one check per pause, not N. As with a lane, the one that
//! checks is a future: while it is not polled (its task busy, or the future kept
//! without being polled or dropped), the others are not checked for either.
//!
//! # Timers
//!
//! The room pauses between checks, and a lane gives up on a server that sends nothing
//! for [`QUIET_LIMIT`] (a stopped server keeps its connections open): both are
//! wake-ups at a time, taken from procactor's watcher thread
//! (`procactor_transports::watch::Timer`, shared with the rest of procactor).

use crate::conn::{self, Entry, RedisError, MAX_BLOCK};
use crate::stream::{split_fetch, Core, Delivered, Failure, FIRST_NAP, LONGEST_NAP};
use procactor_transports::watch::{FdWatch, Interest, Timer};
use procactor_transports::BorrowedFd;
use redis::Value;
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};
use std::task::{ready, Context, Poll, Waker};
use std::time::{Duration, Instant};

/// How long a lane waits for a reply before it declares the server gone: the longest
/// `BLOCK` it sends, plus the sync connections' read timeout.
pub(crate) const QUIET_LIMIT: Duration = Duration::from_secs(31);
const _: () = assert!(QUIET_LIMIT.as_secs() > MAX_BLOCK.as_secs());

/// A handle's two lanes.
#[derive(Debug, Default)]
pub(crate) struct Aio {
    pub(crate) read: Lane,
    pub(crate) write: Lane,
    /// Where waiting bounded `put_async`s and `join_async`s share one check.
    room: Room,
    /// How long the lanes wait for a reply ([`QUIET_LIMIT`]; shorter in this crate's
    /// tests only).
    quiet: Quiet,
}

/// A lane's limit on a server's silence: [`QUIET_LIMIT`], but in tests.
#[derive(Debug, Clone, Copy)]
struct Quiet(Duration);

impl Default for Quiet {
    fn default() -> Self {
        Quiet(QUIET_LIMIT)
    }
}

impl Aio {
    /// Whether the read lane may have had entries delivered that it has not read yet: a
    /// read round still under way (see `Core`'s drop; one whose connection failed is
    /// recorded in the handle's state, as the sync path's).
    pub(crate) fn reading(&mut self) -> bool {
        let st = self.read.0.get_mut().unwrap_or_else(|e| e.into_inner());
        st.conn.as_ref().is_some_and(Conn::reading)
    }

    /// Whether the read lane ever connected: a read round may have made this handle's
    /// consumer in the group (the write lane's commands make none).
    pub(crate) fn read_used(&mut self) -> bool {
        self.read
            .0
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .ever_connected
    }

    /// How long a lane waits for a reply before it declares the server gone.
    fn quiet_limit(&self) -> Duration {
        self.quiet.0
    }

    /// Shortens the quiet limit (for the guard's test: [`QUIET_LIMIT`] is 31 s).
    #[cfg(test)]
    pub(crate) fn set_quiet_limit(&mut self, limit: Duration) {
        self.quiet = Quiet(limit);
    }
}

/// One non-blocking connection and the line of futures waiting to use it.
#[derive(Debug, Default)]
pub(crate) struct Lane(Mutex<LaneState>);

#[derive(Default)]
struct LaneState {
    conn: Option<Conn>,
    ever_connected: bool,
    /// The futures waiting for this lane, by ticket: the first drives it.
    line: BTreeMap<u64, Waker>,
    next_ticket: u64,
    /// How many times the connection failed (an I/O error, a server quiet too long),
    /// and the last such failure: a future that took its ticket before a failure gets
    /// that failure when its turn comes, without connecting again (so that the futures
    /// queued behind a frozen server do not each wait [`QUIET_LIMIT`] on a new
    /// connection). One that comes later connects again.
    epoch: u64,
    failure: Option<redis::RedisError>,
    /// Wakes the first in line when the server has been quiet too long.
    guard: Timer,
}

impl std::fmt::Debug for LaneState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LaneState")
            .field("connected", &self.conn.is_some())
            .field("waiting", &self.line.len())
            .finish()
    }
}

impl Lane {
    fn lock(&self) -> MutexGuard<'_, LaneState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl LaneState {
    /// The connection, opened (its handshake queued) if there is none.
    fn conn(&mut self, core: &Core) -> Result<&mut Conn, RedisError> {
        if self.conn.is_none() {
            self.conn = Some(Conn::open(core)?);
            self.ever_connected = true;
        }
        Ok(self.conn.as_mut().expect("opened just above"))
    }

    /// The connection failed: dropped (the next user reconnects), the error remembered.
    fn fail(&mut self, core: &Core, e: &RedisError) {
        if self.conn.take().is_some_and(|c| c.reading()) {
            core.lost_read();
        }
        if e.0.is_io_error() {
            // (an error reply concerns its own commands only)
            self.epoch += 1;
            self.failure = Some(e.0.clone());
        }
        core.note_error(e);
    }

    /// After the connection would block with replies owed: the first in line is also
    /// woken when the server has been quiet for `limit` ([`QUIET_LIMIT`]).
    fn guard(&mut self, cx: &Context<'_>, limit: Duration) {
        let Some(c) = &self.conn else { return };
        if c.jobs.is_empty() {
            return;
        }
        // (pushed back as replies come: the armed wake-up stays, and finds it early)
        self.guard.set(Some(c.quiet_since + limit));
        if self.guard.poll(cx).is_ready() {
            // the limit passed meanwhile: the next poll's drive says so
            cx.waker().wake_by_ref();
        }
    }
}

/// A future's place in a lane's line.
pub(crate) struct Turn<'a> {
    lane: &'a Lane,
    ticket: Option<u64>,
    /// The lane's failure count when the ticket was taken.
    epoch: u64,
}

impl<'a> Turn<'a> {
    fn new(lane: &'a Lane) -> Self {
        Turn {
            lane,
            ticket: None,
            epoch: 0,
        }
    }

    /// Whether this future is first in line (standing in it, with its current waker,
    /// either way).
    fn first(&mut self, st: &mut LaneState, cx: &Context<'_>) -> bool {
        let epoch = &mut self.epoch;
        let t = *self.ticket.get_or_insert_with(|| {
            *epoch = st.epoch;
            st.next_ticket += 1;
            st.next_ticket
        });
        match st.line.get_mut(&t) {
            Some(w) => {
                if !w.will_wake(cx.waker()) {
                    *w = cx.waker().clone();
                }
            }
            None => {
                st.line.insert(t, cx.waker().clone());
            }
        }
        st.line.keys().next() == Some(&t)
    }

    /// Leaves the line (waking the next if this was the first); the commands this
    /// future sent and has not had the replies of are left to the lane (see the module
    /// docs, "Cancellation").
    fn leave(&mut self, st: &mut LaneState) {
        let Some(t) = self.ticket.take() else { return };
        let was_first = st.line.keys().next() == Some(&t);
        st.line.remove(&t);
        if let Some(c) = &mut st.conn {
            if c.abandon(t) {
                st.conn = None;
            }
        }
        if was_first {
            if let Some(w) = st.line.values().next() {
                w.wake_by_ref();
            }
        }
    }

    fn ticket(&self) -> u64 {
        self.ticket.unwrap_or(0)
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        if self.ticket.is_some() {
            let mut st = self.lane.lock();
            self.leave(&mut st);
        }
    }
}

impl std::fmt::Debug for Turn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Turn")
            .field("ticket", &self.ticket)
            .finish()
    }
}

// ---------------------------------------------------------------- the connection

enum Io {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Io {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        match self {
            Io::Tcp(s) => s.read(b),
            Io::Unix(s) => s.read(b),
        }
    }

    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match self {
            Io::Tcp(s) => s.write(b),
            Io::Unix(s) => s.write(b),
        }
    }

    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Io::Tcp(s) => s.as_fd(),
            Io::Unix(s) => s.as_fd(),
        }
    }
}

/// What a group of replies is for.
enum Kind {
    /// `[AUTH,] [SELECT,] XGROUP CREATE`: errors fail the connection, but `BUSYGROUP`.
    Init,
    /// A read round: `acks` acknowledgement commands, `[XAUTOCLAIM,] XREADGROUP`.
    Fetch { claim: bool, acks: usize },
    /// The `XPENDING` of the entries a read round claimed, buffered with them.
    Counts {
        claimed: Vec<Entry>,
        read: Vec<Entry>,
    },
    /// `XADD`s.
    Put,
    /// `acks` acknowledgement commands (owed by this handle: an undecodable entry
    /// dropped, auto-acknowledged items), then `XLEN`, `XPENDING` summary: the
    /// stream's length and the undelivered count (a [`Room`]'s check).
    Len { acks: usize },
}

/// Commands sent (or queued to be), awaiting `replies` replies.
struct Job {
    kind: Kind,
    replies: usize,
    /// The ticket of the future that sent it; `None` once that future is gone.
    owner: Option<u64>,
    /// Its bytes' place in everything written on the connection.
    start: u64,
    end: u64,
}

/// What a finished job tells its future.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Out {
    Done,
    /// A [`Room`]'s check: `XLEN`, and the entries not yet delivered.
    Len {
        xlen: u64,
        undelivered: u64,
    },
}

struct Conn {
    io: Io,
    /// Bytes queued: `out[sent..]` are not yet written, `out[sent]` is byte `written`
    /// of the connection (an offset, not a drain per partial write: a big put is
    /// written in many pieces).
    out: Vec<u8>,
    sent: usize,
    written: u64,
    /// Bytes read and not yet parsed.
    inb: Vec<u8>,
    /// What one `read` fills (allocated once per connection).
    scratch: Box<[u8]>,
    jobs: VecDeque<Job>,
    /// The replies of `jobs[0]` so far.
    replies: Vec<Value>,
    rwatch: Option<FdWatch>,
    wwatch: Option<FdWatch>,
    /// Since when the server has owed a reply and sent nothing.
    quiet_since: Instant,
}

fn from_io(e: io::Error) -> RedisError {
    RedisError(e.into())
}

fn io_error(what: &'static str, detail: String) -> RedisError {
    RedisError(redis::RedisError::from((
        redis::ErrorKind::Io,
        what,
        detail,
    )))
}

impl Conn {
    /// Starts connecting to the handle's server (non-blocking: the connection completes
    /// while the first commands wait to be written) and queues the handshake.
    fn open(core: &Core) -> Result<Conn, RedisError> {
        let client = redis::Client::open(core.cfg.url.as_str())?;
        let info = client.get_connection_info();
        let io = match info.addr() {
            redis::ConnectionAddr::Tcp(host, port) => {
                // a host name is looked up by the system's resolver (blocking); an
                // address needs no lookup
                let addr = (host.as_str(), *port)
                    .to_socket_addrs()
                    .map_err(|e| io_error("cannot resolve the Redis host", e.to_string()))?
                    .next()
                    .ok_or_else(|| io_error("no address for the Redis host", host.clone()))?;
                let family = if addr.is_ipv4() {
                    rustix::net::AddressFamily::INET
                } else {
                    rustix::net::AddressFamily::INET6
                };
                let fd = rustix::net::socket_with(
                    family,
                    rustix::net::SocketType::STREAM,
                    rustix::net::SocketFlags::NONBLOCK | rustix::net::SocketFlags::CLOEXEC,
                    None,
                )
                .map_err(|e| from_io(e.into()))?;
                match rustix::net::connect(&fd, &addr) {
                    Ok(()) | Err(rustix::io::Errno::INPROGRESS) => {}
                    Err(e) => return Err(from_io(e.into())),
                }
                let s = TcpStream::from(fd);
                s.set_nodelay(true).map_err(from_io)?;
                Io::Tcp(s)
            }
            redis::ConnectionAddr::Unix(path) => {
                // non-blocking too: a Unix socket connects at once, or is refused, or
                // (the server's backlog full) would block, which is an error here (a
                // Unix connect cannot be waited for as a TCP one is)
                let addr = rustix::net::SocketAddrUnix::new(path.as_path())
                    .map_err(|e| from_io(e.into()))?;
                let fd = rustix::net::socket_with(
                    rustix::net::AddressFamily::UNIX,
                    rustix::net::SocketType::STREAM,
                    rustix::net::SocketFlags::NONBLOCK | rustix::net::SocketFlags::CLOEXEC,
                    None,
                )
                .map_err(|e| from_io(e.into()))?;
                match rustix::net::connect(&fd, &addr) {
                    Ok(()) | Err(rustix::io::Errno::INPROGRESS) => {}
                    Err(rustix::io::Errno::AGAIN) => {
                        return Err(io_error(
                            "the Redis server's Unix socket backlog is full",
                            path.display().to_string(),
                        ))
                    }
                    Err(e) => return Err(from_io(e.into())),
                }
                Io::Unix(UnixStream::from(fd))
            }
            _ => {
                return Err(io_error(
                    "the async methods support redis:// and redis+unix:// URLs",
                    core.cfg.url.clone(),
                ))
            }
        };
        let mut c = Conn {
            io,
            out: Vec::new(),
            sent: 0,
            written: 0,
            inb: Vec::new(),
            scratch: vec![0; 16 * 1024].into_boxed_slice(),
            jobs: VecDeque::new(),
            replies: Vec::new(),
            rwatch: None,
            wwatch: None,
            quiet_since: Instant::now(),
        };
        let r = info.redis_settings();
        let mut p = redis::pipe();
        if let Some(pw) = r.password() {
            let auth = p.cmd("AUTH");
            if let Some(user) = r.username() {
                auth.arg(user);
            }
            auth.arg(pw);
        }
        if r.db() != 0 {
            p.cmd("SELECT").arg(r.db());
        }
        p.cmd("XGROUP")
            .arg("CREATE")
            .arg(&core.cfg.name)
            .arg(&core.cfg.group)
            .arg("0")
            .arg("MKSTREAM");
        c.push(&p, Kind::Init, None);
        Ok(c)
    }

    /// Queues a pipeline's commands, awaiting all its replies.
    fn push(&mut self, p: &redis::Pipeline, kind: Kind, owner: Option<u64>) {
        if self.jobs.is_empty() {
            self.quiet_since = Instant::now();
        }
        let start = self.written + self.unsent().len() as u64;
        let packed = p.get_packed_pipeline();
        if self.unsent().is_empty() {
            // (the usual case: the packed commands become the buffer, no copy)
            self.out = packed;
            self.sent = 0;
        } else {
            self.out.extend_from_slice(&packed);
        }
        let end = self.written + self.unsent().len() as u64;
        self.jobs.push_back(Job {
            kind,
            replies: p.len(),
            owner,
            start,
            end,
        });
    }

    /// The bytes queued and not yet written.
    fn unsent(&self) -> &[u8] {
        &self.out[self.sent..]
    }

    /// Whether a read round (or its follow-up) is under way.
    fn reading(&self) -> bool {
        self.jobs
            .iter()
            .any(|j| matches!(j.kind, Kind::Fetch { .. } | Kind::Counts { .. }))
    }

    fn owns(&self, t: u64) -> bool {
        self.jobs.iter().any(|j| j.owner == Some(t))
    }

    /// Future `t` is gone: its jobs are left to the lane, but a put (or a check) not yet
    /// written is taken back, and a put partly written closes the connection (`true`):
    /// the server then discards the incomplete command.
    fn abandon(&mut self, t: u64) -> bool {
        let last = self.jobs.len().wrapping_sub(1);
        let mut close = false;
        let mut take_back = None;
        for (i, j) in self.jobs.iter_mut().enumerate() {
            if j.owner != Some(t) {
                continue;
            }
            let unsent = j.start >= self.written;
            let whole = j.end <= self.written;
            match j.kind {
                // (a check that carries acknowledgements is sent all the same: taken
                // back, they would be lost)
                Kind::Put | Kind::Len { acks: 0 } if unsent && i == last => {
                    take_back = Some(j.start);
                }
                Kind::Put if !whole => close = true,
                _ => j.owner = None,
            }
        }
        if let Some(start) = take_back {
            self.out
                .truncate(self.sent + (start - self.written) as usize);
            self.jobs.pop_back();
        }
        close
    }

    /// Moves the connection on: writes what is queued, reads and applies replies.
    /// `Ready(Some)` when a job of `me` finished, `Ready(None)` when no job is left,
    /// `Pending` when the socket would block (the watches armed with `cx`'s waker).
    fn drive(
        &mut self,
        core: &Core,
        me: u64,
        cx: &Context<'_>,
    ) -> Poll<Result<Option<Out>, RedisError>> {
        loop {
            while !self.unsent().is_empty() {
                match self.io.write(&self.out[self.sent..]) {
                    Ok(0) => return Poll::Ready(Err(from_io(io::ErrorKind::WriteZero.into()))),
                    Ok(n) => {
                        self.sent += n;
                        self.written += n as u64;
                        if self.sent == self.out.len() {
                            self.out.clear();
                            self.sent = 0;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Poll::Ready(Err(from_io(e))),
                }
            }
            let mut parsed = 0;
            let mut mine = None;
            while let Some(job) = self.jobs.front() {
                let n = match frame_len(&self.inb[parsed..]) {
                    Ok(Some(n)) => n,
                    Ok(None) => break,
                    Err(()) => {
                        return Poll::Ready(Err(io_error(
                            "a reply that is not RESP",
                            String::from_utf8_lossy(
                                &self.inb[parsed..(parsed + 64).min(self.inb.len())],
                            )
                            .into_owned(),
                        )))
                    }
                };
                let v = redis::parse_redis_value(&self.inb[parsed..parsed + n]);
                parsed += n;
                self.replies.push(v.map_err(RedisError)?);
                if self.replies.len() < job.replies {
                    continue;
                }
                let job = self.jobs.pop_front().expect("looked at just above");
                // (taken and given back: the vector keeps its capacity from job to job)
                let mut replies = std::mem::take(&mut self.replies);
                let owner = job.owner;
                let finished = self.finish(core, job, &mut replies);
                replies.clear();
                self.replies = replies;
                let out = match finished {
                    Ok(o) => o,
                    Err(e) => {
                        self.inb.drain(..parsed);
                        return Poll::Ready(Err(e));
                    }
                };
                if owner == Some(me) && out.is_some() {
                    mine = out;
                    break;
                }
            }
            self.inb.drain(..parsed);
            if mine.is_some() {
                return Poll::Ready(Ok(mine));
            }
            if self.jobs.is_empty() {
                return Poll::Ready(Ok(None));
            }
            match self.io.read(&mut self.scratch) {
                Ok(0) => {
                    return Poll::Ready(Err(io_error(
                        "the Redis server closed the connection",
                        String::new(),
                    )))
                }
                Ok(n) => {
                    self.inb.extend_from_slice(&self.scratch[..n]);
                    self.quiet_since = Instant::now();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // (the clock read only when there is nothing to read)
                    let limit = core.aio.quiet_limit();
                    if self.quiet_since.elapsed() >= limit {
                        return Poll::Ready(Err(io_error(
                            "the Redis server sent nothing for too long",
                            format!("{limit:?} with a reply owed"),
                        )));
                    }
                    if let Err(e) = self.arm(cx) {
                        return Poll::Ready(Err(from_io(e)));
                    }
                    return Poll::Pending;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Poll::Ready(Err(from_io(e))),
            }
        }
    }

    /// Arms the read watch (and the write watch while bytes wait to be written).
    fn arm(&mut self, cx: &Context<'_>) -> io::Result<()> {
        match &mut self.rwatch {
            None => self.rwatch = Some(FdWatch::new(self.io.fd(), Interest::Read, cx.waker())?),
            Some(w) => w.rearm(cx.waker())?,
        }
        if !self.unsent().is_empty() {
            match &mut self.wwatch {
                None => {
                    self.wwatch = Some(FdWatch::new(self.io.fd(), Interest::Write, cx.waker())?)
                }
                Some(w) => w.rearm(cx.waker())?,
            }
        }
        Ok(())
    }

    /// A job's replies are all in: its effects, whoever sent it.
    fn finish(
        &mut self,
        core: &Core,
        job: Job,
        replies: &mut Vec<Value>,
    ) -> Result<Option<Out>, RedisError> {
        let last = replies.len().saturating_sub(1);
        let mut checked = Vec::with_capacity(replies.len());
        for (i, v) in replies.drain(..).enumerate() {
            match v.extract_error() {
                Ok(v) => checked.push(v),
                Err(e)
                    if matches!(job.kind, Kind::Init)
                        && i == last
                        && e.code() == Some("BUSYGROUP") =>
                {
                    checked.push(Value::Nil)
                }
                Err(e) => return Err(RedisError(e)),
            }
        }
        Ok(match job.kind {
            Kind::Init => None,
            Kind::Fetch { claim, acks } => {
                let (claimed, read) = split_fetch(claim, checked.get(acks..).unwrap_or(&[]));
                if claimed.is_empty() {
                    core.fetched(Vec::new(), Vec::new(), read);
                } else {
                    let p = core.counts_pipeline(&claimed);
                    self.push(&p, Kind::Counts { claimed, read }, job.owner);
                }
                Some(Out::Done)
            }
            Kind::Counts { claimed, read } => {
                core.fetched(claimed, checked, read);
                Some(Out::Done)
            }
            Kind::Put => Some(Out::Done),
            Kind::Len { acks } => {
                let xlen = checked.get(acks).map_or(0, conn::int);
                let pending = checked.get(acks + 1).map_or(0, conn::pending_count);
                Some(Out::Len {
                    xlen,
                    undelivered: xlen.saturating_sub(pending),
                })
            }
        })
    }
}

/// The longest type-and-length (or simple string, error, number) line [`frame_len`]
/// accepts: a server that sends more without a CRLF is not speaking RESP.
const MAX_LINE: usize = 64 * 1024;
/// The largest bulk string length, or aggregate element count, [`frame_len`] accepts
/// (Redis's own `proto-max-bulk-len` default): a larger one is garbage, not a reply to
/// wait for.
const MAX_DECLARED: i64 = 512 << 20;

/// The length of the first complete RESP value (RESP2 or RESP3) at the start of `b`;
/// `Ok(None)` while it is incomplete, `Err` when `b` is not RESP: an unknown type, a
/// line longer than [`MAX_LINE`] without its CRLF, a declared length or count above
/// [`MAX_DECLARED`] (so that a server writing garbage cannot make the caller buffer
/// without bound).
pub(crate) fn frame_len(b: &[u8]) -> Result<Option<usize>, ()> {
    let mut pos = 0usize;
    // values still to read: the one asked for, plus the elements announced so far
    let mut left: u64 = 1;
    while left > 0 {
        let window = &b[pos..b.len().min(pos + MAX_LINE + 2)];
        let Some(eol) = window.windows(2).position(|w| w == b"\r\n") else {
            return if window.len() >= MAX_LINE + 2 {
                Err(())
            } else {
                Ok(None)
            };
        };
        let ty = b[pos];
        let line = &b[pos + 1..pos + eol];
        pos += eol + 2;
        left -= 1;
        let count = |line: &[u8]| -> Result<i64, ()> {
            std::str::from_utf8(line)
                .ok()
                .and_then(|t| t.parse::<i64>().ok())
                .filter(|&n| n <= MAX_DECLARED)
                .ok_or(())
        };
        match ty {
            b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => {}
            b'$' | b'!' | b'=' => {
                let n = count(line)?;
                if n >= 0 {
                    let n = usize::try_from(n).map_err(|_| ())?;
                    let end = pos.checked_add(n).ok_or(())?;
                    if b.len() < end + 2 {
                        return Ok(None);
                    }
                    if &b[end..end + 2] != b"\r\n" {
                        return Err(());
                    }
                    pos = end + 2;
                }
            }
            b'*' | b'~' | b'>' => {
                let n = count(line)?;
                if n > 0 {
                    left = left.checked_add(n as u64).ok_or(())?;
                }
            }
            b'%' | b'|' => {
                let n = count(line)?;
                if n > 0 {
                    left = left
                        .checked_add((n as u64).checked_mul(2).ok_or(())?)
                        .ok_or(())?;
                }
                if ty == b'|' {
                    // an attribute map precedes the value it describes
                    left += 1;
                }
            }
            _ => return Err(()),
        }
    }
    Ok(Some(pos))
}

// ---------------------------------------------------------------- the futures

/// One step of a lane's first in line: makes sure a job of its own is under way
/// (`start` queues it, given the connection, when none is), then drives.
fn step(
    turn: &mut Turn<'_>,
    core: &Core,
    cx: &Context<'_>,
    start: &mut dyn FnMut(&mut Conn, u64),
) -> Poll<Result<Option<Out>, RedisError>> {
    let mut st = turn.lane.lock();
    if !turn.first(&mut st, cx) {
        return Poll::Pending;
    }
    let me = turn.ticket();
    if turn.epoch != st.epoch {
        // the connection failed while this future waited in line: the same failure
        if let Some(e) = st.failure.clone() {
            turn.leave(&mut st);
            return Poll::Ready(Err(RedisError(e)));
        }
    }
    let c = match st.conn(core) {
        Ok(c) => c,
        Err(e) => {
            core.note_error(&e);
            turn.leave(&mut st);
            return Poll::Ready(Err(e));
        }
    };
    if !c.owns(me) {
        start(c, me);
    }
    match c.drive(core, me, cx) {
        Poll::Pending => {
            st.guard(cx, core.aio.quiet_limit());
            Poll::Pending
        }
        Poll::Ready(Ok(out)) => Poll::Ready(Ok(out)),
        Poll::Ready(Err(e)) => {
            st.fail(core, &e);
            turn.leave(&mut st);
            Poll::Ready(Err(e))
        }
    }
}

/// `get_async`'s future: the next entry for this handle.
pub(crate) struct Get<'a> {
    core: &'a Core,
    turn: Turn<'a>,
}

pub(crate) fn get(core: &Core) -> Get<'_> {
    Get {
        core,
        turn: Turn::new(&core.aio.read),
    }
}

impl Future for Get<'_> {
    type Output = Result<Delivered, Failure>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let core = this.core;
        loop {
            if core.is_closed() {
                let mut st = this.turn.lane.lock();
                this.turn.leave(&mut st);
                return Poll::Ready(Err(Failure::Closed));
            }
            if let Some(d) = core.take_buffered() {
                let mut st = this.turn.lane.lock();
                this.turn.leave(&mut st);
                return Poll::Ready(Ok(d));
            }
            // a read round of our own, unless one (ours, or a dropped future's) is
            // still under way: its entries come to the buffer
            let mut start = |c: &mut Conn, me: u64| {
                if c.jobs.iter().all(|j| matches!(j.kind, Kind::Init)) {
                    let plan = core.fetch_job();
                    c.push(
                        &plan.pipe,
                        Kind::Fetch {
                            claim: plan.claim,
                            acks: plan.acks,
                        },
                        Some(me),
                    );
                }
            };
            match ready!(step(&mut this.turn, core, cx, &mut start)) {
                Ok(_) => continue,
                Err(e) => return Poll::Ready(Err(Failure::Redis(e))),
            }
        }
    }
}

impl std::fmt::Debug for Get<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Get").field("turn", &self.turn).finish()
    }
}

// ---------------------------------------------------------------- the waiting room

/// Where a handle's waiting bounded `put_async`s and `join_async`s wait for the stream
/// to change: one check (`XLEN` + `XPENDING` on the write lane) at a time for all of
/// them, made by one of them (the *checker*), its answer waking every one.
///
/// The pause between checks is the room's (200 µs doubling to 20 ms while anyone
/// waits, back to 200 µs when the room empties): N futures waiting make one check per
/// pause, not N. A future takes only the answer of a check sent after it came in (so
/// that a `join_async` after a `put_async` of the same handle sees that put), and the
/// first one in an empty room checks at once (an uncontended bounded put costs one
/// check, as before).
///
/// A bounded put is let in by an answer only as far as there is room in it: the
/// answer's undelivered count, plus the items of puts let in whose `XADD` was not yet
/// queued when the check was sent (not counted by that `XLEN`), plus the puts let in
/// by this answer so far (`level`). So the puts of one handle never overfill the
/// stream between them, as when each checked in turn; which of them goes first when
/// room frees is the order they are polled in (no queue among waiting puts).
#[derive(Debug, Default)]
struct Room(Mutex<RoomState>);

#[derive(Debug)]
struct RoomState {
    /// Checks sent so far (a check's number is this count when it was sent).
    sent: u64,
    /// The number of the last check answered, and its answer.
    answered: u64,
    xlen: u64,
    /// Undelivered items, counting the puts let in and not yet in the stream.
    level: u64,
    failure: Option<redis::RedisError>,
    /// Items of puts let in whose `XADD` is not yet queued on the lane.
    admitted: u64,
    /// `admitted` when the check in flight was sent.
    admitted_at_check: u64,
    /// The future making the checks, if any.
    checker: Option<u64>,
    /// When the next check may be sent, and the pause after it.
    next_at: Option<Instant>,
    nap: Duration,
    /// The futures waiting for an answer, by id.
    waiters: BTreeMap<u64, Waker>,
    next_id: u64,
}

impl Default for RoomState {
    fn default() -> Self {
        RoomState {
            sent: 0,
            answered: 0,
            xlen: 0,
            level: 0,
            failure: None,
            admitted: 0,
            admitted_at_check: 0,
            checker: None,
            next_at: None,
            nap: FIRST_NAP,
            waiters: BTreeMap::new(),
            next_id: 0,
        }
    }
}

impl Room {
    fn lock(&self) -> MutexGuard<'_, RoomState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl RoomState {
    /// A check's answer (`Err`: it failed) came in: every waiter is woken to look at it.
    fn answer(&mut self, number: u64, a: Result<(u64, u64), redis::RedisError>, me: u64) {
        self.answered = self.answered.max(number);
        match a {
            Ok((xlen, undelivered)) => {
                self.xlen = xlen;
                self.level = undelivered + self.admitted_at_check;
                self.failure = None;
            }
            Err(e) => self.failure = Some(e),
        }
        self.next_at = Some(Instant::now() + self.nap);
        self.nap = (self.nap * 2).min(LONGEST_NAP);
        for (id, w) in &self.waiters {
            if *id != me {
                w.wake_by_ref();
            }
        }
    }
}

/// What a waiting future waits for.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// Room for a put of this many items in a queue of at most `max`.
    Room { items: u64, max: u64 },
    /// An empty stream (`join_async`).
    Empty,
}

/// A future's place in its handle's [`Room`].
struct Seat<'a> {
    room: &'a Room,
    id: Option<u64>,
    /// The first check whose answer this future takes.
    need: u64,
    /// The checker's pause before its next check.
    timer: Option<Timer>,
    /// The number of the check this future (the checker) sent and awaits.
    checking: Option<u64>,
    /// Items let in whose `XADD` is not yet queued (given back if dropped).
    admitted: u64,
}

impl<'a> Seat<'a> {
    fn new(room: &'a Room) -> Self {
        Seat {
            room,
            id: None,
            need: 0,
            timer: None,
            checking: None,
            admitted: 0,
        }
    }

    /// Waits, checking when it is the checker, until the stream gives what `want` asks:
    /// `Ready(Ok)` then (a put's items counted as let in), `Ready(Err)` when the check
    /// failed. It leaves the room then.
    fn wait(
        &mut self,
        turn: &mut Turn<'_>,
        core: &Core,
        cx: &Context<'_>,
        want: Want,
    ) -> Poll<Result<(), RedisError>> {
        loop {
            let mut r = self.room.lock();
            let id = match self.id {
                Some(id) => id,
                None => {
                    r.next_id += 1;
                    self.id = Some(r.next_id);
                    self.need = r.sent + 1;
                    r.next_id
                }
            };
            match r.waiters.get_mut(&id) {
                Some(w) if w.will_wake(cx.waker()) => {}
                Some(w) => *w = cx.waker().clone(),
                None => {
                    r.waiters.insert(id, cx.waker().clone());
                }
            }
            if r.answered >= self.need && self.checking.is_none() {
                self.need = r.answered + 1;
                if let Some(e) = r.failure.clone() {
                    self.leave(&mut r);
                    return Poll::Ready(Err(RedisError(e)));
                }
                let fits = match want {
                    Want::Empty => r.xlen == 0,
                    Want::Room { items, max } => {
                        let ok = r.level == 0 || r.level + items <= max;
                        if ok {
                            r.level += items;
                            r.admitted += items;
                            self.admitted = items;
                        }
                        ok
                    }
                };
                if fits {
                    self.leave(&mut r);
                    return Poll::Ready(Ok(()));
                }
            }
            if r.checker.is_none() {
                r.checker = Some(id);
            }
            if r.checker != Some(id) {
                return Poll::Pending;
            }
            if self.checking.is_none() && self.timer.is_none() {
                match r.next_at {
                    Some(at) if at > Instant::now() => self.timer = Some(Timer::at(Some(at))),
                    _ => {}
                }
            }
            drop(r);
            if let Some(t) = &mut self.timer {
                ready!(t.poll(cx));
                self.timer = None;
            }
            // the check: sent once (`step` queues it when this future has no job on
            // the lane), its number taken then
            let room = self.room;
            let checking = &mut self.checking;
            let mut start = |c: &mut Conn, me: u64| {
                let (p, acks) = core.len_pipeline();
                let mut r = room.lock();
                r.sent += 1;
                r.admitted_at_check = r.admitted;
                *checking = Some(r.sent);
                drop(r);
                c.push(&p, Kind::Len { acks }, Some(me));
            };
            let got = ready!(step(turn, core, cx, &mut start));
            let answer = match got {
                Ok(None) | Ok(Some(Out::Done)) => continue,
                Ok(Some(Out::Len { xlen, undelivered })) => {
                    // out of the lane's line while waiting, so that others go on
                    let mut st = turn.lane.lock();
                    turn.leave(&mut st);
                    Ok((xlen, undelivered))
                }
                // (`step` left the line)
                Err(e) => Err(e.0),
            };
            let mut r = self.room.lock();
            // (a failure before the check was sent, e.g. no connection: numbered as a
            // check of its own, so that this future and those waiting for it get it)
            let number = self.checking.take().unwrap_or_else(|| {
                r.sent += 1;
                r.sent
            });
            r.answer(number, answer, id);
        }
    }

    /// Leaves the room (the checker's part handed to the next waiter).
    fn leave(&mut self, r: &mut RoomState) {
        let Some(id) = self.id.take() else { return };
        r.waiters.remove(&id);
        self.timer = None;
        self.checking = None;
        if r.checker == Some(id) {
            r.checker = None;
            if let Some(w) = r.waiters.values().next() {
                w.wake_by_ref();
            }
        }
        if r.waiters.is_empty() {
            r.next_at = None;
            r.nap = FIRST_NAP;
        }
    }

    /// The items let in are queued on the lane now (counted by the next check's `XLEN`),
    /// or will never be.
    fn settle(&mut self) {
        if self.admitted > 0 {
            let mut r = self.room.lock();
            r.admitted = r.admitted.saturating_sub(self.admitted);
            self.admitted = 0;
        }
    }
}

impl Drop for Seat<'_> {
    fn drop(&mut self) {
        if self.id.is_some() || self.admitted > 0 {
            let mut r = self.room.lock();
            self.leave(&mut r);
            r.admitted = r.admitted.saturating_sub(self.admitted);
        }
    }
}

impl std::fmt::Debug for Seat<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seat").field("id", &self.id).finish()
    }
}

// ---------------------------------------------------------------- puts and joins

/// `put_async`'s future: `XADD` of the payloads, after waiting for room when the
/// queue is bounded (in the handle's [`Room`]).
pub(crate) struct Put<'a> {
    core: &'a Core,
    turn: Turn<'a>,
    payloads: Vec<Vec<u8>>,
    /// A bounded queue's place in the room (it holds the items let in until their
    /// `XADD` is queued).
    seat: Option<Seat<'a>>,
    /// Let in (or unbounded): the `XADD` is to be sent.
    let_in: bool,
}

pub(crate) fn put(core: &Core, payloads: Vec<Vec<u8>>) -> Put<'_> {
    Put {
        core,
        turn: Turn::new(&core.aio.write),
        seat: (core.cfg.maxsize > 0).then(|| Seat::new(&core.aio.room)),
        let_in: core.cfg.maxsize == 0,
        payloads,
    }
}

impl Future for Put<'_> {
    type Output = Result<(), Failure>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let core = this.core;
        if core.is_closed() && this.turn.ticket.is_none() {
            return Poll::Ready(Err(Failure::Closed));
        }
        if let (false, Some(seat)) = (this.let_in, &mut this.seat) {
            let want = Want::Room {
                items: this.payloads.len() as u64,
                max: core.cfg.maxsize as u64,
            };
            if let Err(e) = ready!(seat.wait(&mut this.turn, core, cx, want)) {
                return Poll::Ready(Err(Failure::Redis(e)));
            }
            this.let_in = true;
            if core.is_closed() && this.turn.ticket.is_none() {
                return Poll::Ready(Err(Failure::Closed));
            }
        }
        loop {
            let payloads = &this.payloads;
            let seat = &mut this.seat;
            let mut start = |c: &mut Conn, me: u64| {
                c.push(&core.put_pipeline(payloads), Kind::Put, Some(me));
                if let Some(s) = seat {
                    s.settle();
                }
            };
            match ready!(step(&mut this.turn, core, cx, &mut start)) {
                Err(e) => return Poll::Ready(Err(Failure::Redis(e))),
                // a dropped future's commands were answered
                Ok(None) | Ok(Some(Out::Len { .. })) => continue,
                Ok(Some(Out::Done)) => {
                    let mut st = this.turn.lane.lock();
                    this.turn.leave(&mut st);
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }
}

impl std::fmt::Debug for Put<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Put")
            .field("turn", &self.turn)
            .field("items", &self.payloads.len())
            .finish()
    }
}

/// `join_async`'s future: waits (in the handle's [`Room`]) for the stream to be empty
/// (`XLEN` = 0).
pub(crate) struct Join<'a> {
    core: &'a Core,
    turn: Turn<'a>,
    seat: Seat<'a>,
}

pub(crate) fn join(core: &Core) -> Join<'_> {
    Join {
        core,
        turn: Turn::new(&core.aio.write),
        seat: Seat::new(&core.aio.room),
    }
}

impl Future for Join<'_> {
    type Output = Result<(), RedisError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        this.seat.wait(&mut this.turn, this.core, cx, Want::Empty)
    }
}

impl std::fmt::Debug for Join<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Join").field("turn", &self.turn).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::frame_len;
    use crate::stream::{Config, Core};
    use std::future::Future;
    use std::io::Read;
    use std::net::TcpListener;
    use std::task::{Context, Poll, Waker};
    use std::time::{Duration, Instant};

    /// The futures waiting in a lane's line when its connection fails get that failure
    /// without connecting again: one connection for the three of them.
    #[test]
    fn the_futures_in_line_when_the_connection_fails_share_its_failure() {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("redis://{}", server.local_addr().unwrap());
        let core = Core::lazy(Config::new(&url, "q"), true);
        let mut cx = Context::from_waker(Waker::noop());
        let mut puts: Vec<_> = (0..3u8)
            .map(|i| Box::pin(super::put(&core, vec![vec![i]])))
            .collect();
        // the first connects and waits for its replies, the others wait in line
        for p in &mut puts {
            assert!(p.as_mut().poll(&mut cx).is_pending());
        }
        // the server reads the handshake and closes the connection
        let (mut s, _) = server.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.read(&mut [0; 64]).unwrap();
        drop(s);
        let t = Instant::now();
        for p in &mut puts {
            loop {
                match p.as_mut().poll(&mut cx) {
                    Poll::Ready(r) => {
                        assert!(r.is_err(), "a put succeeded on a closed connection");
                        break;
                    }
                    Poll::Pending => {
                        assert!(t.elapsed() < Duration::from_secs(10), "no failure in 10 s");
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }
        }
        // no other connection was opened
        server.set_nonblocking(true).unwrap();
        assert!(server.accept().is_err(), "a future in line connected again");
        // a future that comes after the failure connects again
        let mut late = Box::pin(super::put(&core, vec![vec![9]]));
        assert!(late.as_mut().poll(&mut cx).is_pending());
        let t = Instant::now();
        while server.accept().is_err() {
            assert!(t.elapsed() < Duration::from_secs(10), "no new connection");
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(late);
        drop(puts);
        drop(server);
    }

    /// A waker that records that it was called and unparks the thread that polls.
    struct Flag {
        woken: std::sync::atomic::AtomicBool,
        thread: std::thread::Thread,
    }

    impl std::task::Wake for Flag {
        fn wake(self: std::sync::Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &std::sync::Arc<Self>) {
            self.woken.store(true, std::sync::atomic::Ordering::SeqCst);
            self.thread.unpark();
        }
    }

    /// The quiet guard: a server that accepts the lanes' connections, keeps them open
    /// and never answers (a frozen server) fails each lane after the quiet limit, and
    /// every future waiting on it ends then with that error: two `get_async` on the read
    /// lane, two `put_async` and a `join_async` (whose check waits behind the puts) on
    /// the write lane. Each future is polled only when its waker was called (as an
    /// executor does): it is the guard's wake-up that ends them, no poll of the test's.
    #[test]
    fn a_frozen_server_fails_every_waiting_future_after_the_quiet_limit() {
        use std::sync::atomic::Ordering;
        use std::sync::Arc;
        const LIMIT: Duration = Duration::from_millis(800);
        // (generous: a loaded machine delays the wake-up, never brings it forward)
        const DEADLINE: Duration = Duration::from_secs(15);
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        server.set_nonblocking(true).unwrap();
        let url = format!("redis://{}", server.local_addr().unwrap());
        // accepts, reads what comes, answers nothing, keeps the connections open
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let frozen = std::thread::spawn(move || {
            let mut open = Vec::new();
            let t = Instant::now();
            // (until the test drops its end of the channel)
            while matches!(
                stopped.try_recv(),
                Err(std::sync::mpsc::TryRecvError::Empty)
            ) && t.elapsed() < DEADLINE * 2
            {
                if let Ok((s, _)) = server.accept() {
                    s.set_nonblocking(true).unwrap();
                    open.push(s);
                }
                for s in &mut open {
                    let _ = s.read(&mut [0; 4096]);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            open.len()
        });
        let mut core = Core::lazy(Config::new(&url, "q"), true);
        core.aio.set_quiet_limit(LIMIT);
        let core = &core;
        fn ended<T, E: std::fmt::Debug>(r: Result<T, E>) -> Result<(), String> {
            r.map(drop).map_err(|e| format!("{e:?}"))
        }
        type Waiting<'a> = std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + 'a>>;
        let mut futures: Vec<(&str, Waiting<'_>)> = vec![
            ("get 1", Box::pin(async { ended(super::get(core).await) })),
            ("get 2", Box::pin(async { ended(super::get(core).await) })),
            (
                "put 1",
                Box::pin(async { ended(super::put(core, vec![vec![1]]).await) }),
            ),
            (
                "put 2",
                Box::pin(async { ended(super::put(core, vec![vec![2]]).await) }),
            ),
            ("join", Box::pin(async { ended(super::join(core).await) })),
        ];
        let flags: Vec<Arc<Flag>> = futures
            .iter()
            .map(|_| {
                Arc::new(Flag {
                    woken: false.into(),
                    thread: std::thread::current(),
                })
            })
            .collect();
        let t0 = Instant::now();
        let mut outcomes: Vec<Option<(Duration, Result<(), String>)>> = vec![None; futures.len()];
        // each polled once: the first of each lane connects and sends its commands, the
        // others wait in line (the join's check behind the puts)
        for ((name, f), flag) in futures.iter_mut().zip(&flags) {
            let waker = Waker::from(flag.clone());
            let r = f.as_mut().poll(&mut Context::from_waker(&waker));
            assert!(r.is_pending(), "{name} ended at its first poll: {r:?}");
        }
        // then polled only when woken
        while outcomes.iter().any(Option::is_none) {
            let waiting: Vec<&str> = futures
                .iter()
                .zip(&outcomes)
                .filter(|(_, o)| o.is_none())
                .map(|((name, _), _)| *name)
                .collect();
            assert!(
                t0.elapsed() < DEADLINE,
                "{waiting:?} still waiting {DEADLINE:?} after a quiet limit of {LIMIT:?}"
            );
            std::thread::park_timeout(Duration::from_millis(50));
            for (((_, f), flag), outcome) in futures.iter_mut().zip(&flags).zip(&mut outcomes) {
                if outcome.is_some() || !flag.woken.swap(false, Ordering::SeqCst) {
                    continue;
                }
                let waker = Waker::from(flag.clone());
                if let Poll::Ready(r) = f.as_mut().poll(&mut Context::from_waker(&waker)) {
                    *outcome = Some((t0.elapsed(), r));
                }
            }
        }
        drop(stop);
        let connections = frozen.join().unwrap();
        for ((name, _), outcome) in futures.iter().zip(&outcomes) {
            let (at, r) = outcome.as_ref().expect("all ended");
            eprintln!("{name}: ended after {at:?}: {r:?}");
            let e = r
                .as_ref()
                .expect_err("a future succeeded against a silent server");
            assert!(e.contains("sent nothing for too long"), "{name}: {e}");
            // (a lower bound only: load delays the end, never brings it forward)
            assert!(*at >= LIMIT, "{name} gave up after {at:?} < {LIMIT:?}");
        }
        // one connection per lane: the futures in line shared its failure
        assert_eq!(connections, 2, "connections made to the silent server");
    }

    #[test]
    fn frame_len_finds_whole_values_only() {
        let cases: &[(&[u8], Option<usize>)] = &[
            (b"+OK\r\n", Some(5)),
            (b"+OK\r", None),
            (b":12\r\n:3\r\n", Some(5)),
            (b"$3\r\nabc\r\n", Some(9)),
            (b"$3\r\nabc\r", None),
            (b"$-1\r\n", Some(5)),
            (b"*-1\r\n", Some(5)),
            (b"*0\r\n", Some(4)),
            (b"*2\r\n$1\r\na\r\n*1\r\n:1\r\n", Some(19)),
            (b"*2\r\n$1\r\na\r\n*1\r\n", None),
            (b"%1\r\n+k\r\n+v\r\n", Some(12)),
            (b"-ERR x\r\n", Some(8)),
            (b"$2\r\n\r\n\r\n", Some(8)), // a payload holding CRLF
            (b"", None),
        ];
        for (b, want) in cases {
            assert_eq!(frame_len(b), Ok(*want), "{:?}", String::from_utf8_lossy(b));
        }
        assert_eq!(frame_len(b"?x\r\n"), Err(()));
        assert_eq!(frame_len(b"$3\r\nabcd\r\n"), Err(()));
        assert_eq!(frame_len(b"*x\r\n"), Err(()));
    }

    #[test]
    fn frame_len_refuses_what_would_grow_the_buffer_without_bound() {
        use super::{MAX_DECLARED, MAX_LINE};
        // a line without its CRLF: incomplete up to the limit, garbage beyond
        let mut line = b"+".to_vec();
        line.resize(MAX_LINE, b'x');
        assert_eq!(frame_len(&line), Ok(None));
        line.resize(MAX_LINE + 2, b'x');
        assert_eq!(frame_len(&line), Err(()));
        // the same within an aggregate (the limit counts from the line's start)
        let mut nested = b"*2\r\n:1\r\n+".to_vec();
        nested.resize(nested.len() + MAX_LINE + 1, b'x');
        assert_eq!(frame_len(&nested), Err(()));
        // a long line with its CRLF in time is a value
        let mut ok = b"+".to_vec();
        ok.resize(MAX_LINE - 1, b'y');
        ok.extend_from_slice(b"\r\n");
        assert_eq!(frame_len(&ok), Ok(Some(ok.len())));
        // declared lengths and counts: up to the limit, a value to wait for
        for ty in ["$", "*", "%", "~"] {
            let at = format!("{ty}{MAX_DECLARED}\r\n");
            assert_eq!(frame_len(at.as_bytes()), Ok(None), "{at:?}");
            let above = format!("{ty}{}\r\n", MAX_DECLARED + 1);
            assert_eq!(frame_len(above.as_bytes()), Err(()), "{above:?}");
        }
        assert_eq!(frame_len(b"$99999999999999999999\r\n"), Err(()));
    }

    #[test]
    fn frame_len_agrees_with_the_redis_parser() {
        let b = b"*3\r\n$1\r\nq\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$4\r\ncbor\r\n$2\r\n\x01\x02\r\n:7\r\n";
        let n = frame_len(b).unwrap().unwrap();
        assert_eq!(n, b.len());
        assert!(redis::parse_redis_value(&b[..n]).is_ok());
        for cut in 0..n {
            assert_eq!(frame_len(&b[..cut]), Ok(None), "cut at {cut}");
        }
    }
}
