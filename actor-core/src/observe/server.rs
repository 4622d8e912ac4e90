//! The observe socket's server: one thread, started when the process registers its
//! first observable thing, ended (and joined) when the last one is gone.
//!
//! One thread serves every connection with `poll`: at most [`MAX_CONNECTIONS`] at once
//! (more are closed as soon as they are accepted), a peer of another uid is closed at
//! once, a request is exactly `snapshot\n` (anything else closes the connection), a
//! connection that completes no request within [`IDLE`] is closed, and a reply that the
//! peer does not read within [`WRITE_LIMIT`] closes it too. So a hostile client holds
//! at most one slot for at most `IDLE`, and the memory the server uses is bounded.

use super::registry::{registry, Source};
use super::{socket_name, ObserveSettings};
use procactor_transports::observe as sys;
use procactor_transports::os;
use rustix::fd::AsFd;
use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The request, and its only form.
pub(super) const REQUEST: &[u8; 9] = b"snapshot\n";
/// Connections served at once; more are closed when accepted.
pub const MAX_CONNECTIONS: usize = 16;
/// How long a connection may stay without completing a request.
pub const IDLE: Duration = Duration::from_secs(60);
/// How long a reply may take to be written (a peer that does not read is dropped).
pub const WRITE_LIMIT: Duration = Duration::from_secs(2);

struct Server {
    /// The process that started it (a forked child has a copy of this, not the thread).
    pid: u32,
    /// Written to wake the thread and make it end.
    wake: UnixStream,
    thread: JoinHandle<()>,
    /// Told to end by its own thread (see [`stop`]): it has not ended yet and its
    /// listener may still hold the socket's name, so it stays here until the next
    /// registration joins it.
    stopping: bool,
}

/// Lock order: `SERVER`, then the registry (the server thread takes only the registry).
static SERVER: Mutex<Option<Server>> = Mutex::new(None);

/// Registers `s` and starts the server if it does not run (and observing is on).
///
/// A server that is ending (it was told to end from its own thread, or its `poll`
/// failed) is joined first: its listener holds the socket's name until its thread
/// ends, and binding the name again before that fails (`EADDRINUSE`), which left a
/// program with observable things and no server.
pub(crate) fn register(s: Source) -> Registration {
    let mut server = SERVER.lock().unwrap_or_else(|e| e.into_inner());
    let me = os::current_pid();
    if let Some(old) = server.take_if(|s| s.pid != me) {
        // a copy inherited through fork(): its thread is not in this process
        std::mem::forget(old);
    }
    let here = std::thread::current().id();
    if let Some(old) =
        server.take_if(|s| (s.stopping || s.thread.is_finished()) && s.thread.thread().id() != here)
    {
        // (it ends by itself: the wake-up is written, or it has ended; it needs no lock
        // of ours to get there, see `stop`)
        let _ = old.thread.join();
    }
    let id = registry().add(s);
    if server.is_none() && ObserveSettings::from_env().enabled {
        match start(me) {
            Ok(s) => *server = Some(s),
            Err(e) => tracing::warn!(
                target: "procactor::observe",
                error = %e,
                "the observe socket could not be started"
            ),
        }
    } else if server.as_ref().is_some_and(|s| s.stopping) {
        // registered from the ending server's own thread (a source's drop there made
        // something observable): it cannot join itself, and a new listener cannot bind
        // the name its own listener still holds
        tracing::warn!(
            target: "procactor::observe",
            "the observe socket could not be started again from its own ending thread"
        );
    }
    Registration { id }
}

/// Whether this process serves its snapshot now.
pub(crate) fn serving() -> bool {
    let server = SERVER.lock().unwrap_or_else(|e| e.into_inner());
    server
        .as_ref()
        .is_some_and(|s| s.pid == os::current_pid() && !s.stopping && !s.thread.is_finished())
}

/// An observable thing's place in the registry: dropping it takes it out, and when the
/// registry is empty the server ends (so that a program with nothing observable left
/// is back to its own threads: `StartMethod::Fork` needs a single-threaded process to
/// make its zygote).
///
/// That last drop joins the server thread, which sees the wake-up between replies: if
/// it is writing a reply to a client that does not read, the drop (a `Supervisor`'s
/// or a named queue's) waits until the write gives up, at most [`WRITE_LIMIT`] (plus
/// the time to take one snapshot).
pub(crate) struct Registration {
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut server = SERVER.lock().unwrap_or_else(|e| e.into_inner());
        let empty = registry().remove(self.id);
        if !empty {
            return;
        }
        if server.as_ref().is_some_and(|s| s.pid != os::current_pid()) {
            std::mem::forget(server.take());
            return;
        }
        if let Some(s) = server.take() {
            *server = stop(s);
        }
    }
}

/// Wakes the server thread to end it and joins it, unless this *is* the server thread:
/// a source's last `Arc` can be dropped there (a snapshot upgraded it and its owner let
/// it go meanwhile), and a thread joining itself fails. It then returns to its loop,
/// sees the wake-up and ends, closing its listener; until then it stays in `SERVER`
/// marked `stopping`, and the next [`register`] joins it before it binds the name
/// again (returned for that). The thread takes no lock of ours on its way out: only a
/// [`Registration`]'s drop takes `SERVER`, and none is alive while the registry is
/// empty (`register` joins before it adds one).
fn stop(mut s: Server) -> Option<Server> {
    let mut wake = &s.wake;
    let _ = wake.write_all(b"x");
    if s.thread.thread().id() == std::thread::current().id() {
        s.stopping = true;
        return Some(s);
    }
    let _ = s.thread.join();
    None
}

fn start(pid: u32) -> io::Result<Server> {
    let listener = sys::listen_abstract(&socket_name(pid))?;
    listener.set_nonblocking(true)?;
    let (wake, wakee) = UnixStream::pair()?;
    let thread = std::thread::Builder::new()
        .name("procactor-observe".into())
        .stack_size(512 << 10)
        .spawn(move || serve(listener, wakee))?;
    Ok(Server {
        pid,
        wake,
        thread,
        stopping: false,
    })
}

struct Conn {
    stream: UnixStream,
    got: [u8; 9],
    len: usize,
    deadline: Instant,
}

/// Whether a peer of uid `peer` may read this process's snapshot (running as `own`).
pub(crate) fn peer_allowed(peer: io::Result<u32>, own: u32) -> bool {
    matches!(peer, Ok(uid) if uid == own)
}

fn serve(listener: UnixListener, wakee: UnixStream) {
    let own = sys::effective_uid();
    let mut conns: Vec<Conn> = Vec::new();
    loop {
        let now = Instant::now();
        conns.retain(|c| c.deadline > now);
        let deadline = conns.iter().map(|c| c.deadline).min();
        let ready = {
            let mut fds = vec![wakee.as_fd(), listener.as_fd()];
            fds.extend(conns.iter().map(|c| c.stream.as_fd()));
            match os::poll_readable(&fds, deadline) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(target: "procactor::observe", error = %e, "observe socket: poll failed, serving stopped");
                    return;
                }
            }
        };
        if ready[0] {
            return;
        }
        // (connections first: an index into `ready` is only true of this round's list)
        let mut closed = Vec::new();
        for (i, c) in conns.iter_mut().enumerate() {
            if ready[2 + i] && !serve_readable(c) {
                closed.push(i);
            }
        }
        for i in closed.into_iter().rev() {
            conns.swap_remove(i);
        }
        if ready[1] {
            accept_all(&listener, &mut conns, own);
        }
    }
}

fn accept_all(listener: &UnixListener, conns: &mut Vec<Conn>, own: u32) {
    loop {
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // (out of descriptors, a connection reset before it was accepted: nothing
            // to keep; poll says again when one is pending)
            Err(_) => return,
        };
        if !peer_allowed(sys::peer_uid(&stream), own) {
            tracing::debug!(target: "procactor::observe", "observe socket: a peer of another uid refused");
            continue;
        }
        if conns.len() >= MAX_CONNECTIONS || stream.set_nonblocking(true).is_err() {
            continue;
        }
        conns.push(Conn {
            stream,
            got: [0; 9],
            len: 0,
            deadline: Instant::now() + IDLE,
        });
    }
}

/// Reads what came; answers a complete request. Whether the connection stays.
fn serve_readable(c: &mut Conn) -> bool {
    loop {
        match c.stream.read(&mut c.got[c.len..]) {
            Ok(0) => return false,
            Ok(n) => {
                c.len += n;
                if c.len < REQUEST.len() {
                    continue;
                }
                if &c.got != REQUEST || !reply(&c.stream) {
                    return false;
                }
                c.len = 0;
                c.deadline = Instant::now() + IDLE;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
}

/// Writes this process's snapshot: a `u32` little-endian length, then its CBOR.
fn reply(stream: &UnixStream) -> bool {
    let mut out = vec![0u8; 4];
    if ciborium::into_writer(&super::snapshot(), &mut out).is_err() {
        return false;
    }
    let Ok(n) = u32::try_from(out.len() - 4) else {
        return false;
    };
    out[..4].copy_from_slice(&n.to_le_bytes());
    write_within(stream, &out, Instant::now() + WRITE_LIMIT)
}

fn write_within(stream: &UnixStream, data: &[u8], deadline: Instant) -> bool {
    // blocking writes, each with the time left as its timeout (a peer that reads a
    // byte now and then cannot stretch it), then back to non-blocking
    if stream.set_nonblocking(false).is_err() {
        return false;
    }
    let mut w = stream;
    let mut data = data;
    let mut ok = true;
    while !data.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_write_timeout(Some(left)).is_err() {
            ok = false;
            break;
        }
        match w.write(data) {
            Ok(0) => {
                ok = false;
                break;
            }
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                ok = false;
                break;
            }
        }
    }
    ok && stream.set_nonblocking(true).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn the_server_thread_stopping_itself_does_not_join_itself() {
        // what happens when a source's last `Arc` is dropped on the server thread and
        // the registry becomes empty: `stop` runs on the thread it stops
        let (wake, wakee) = UnixStream::pair().unwrap();
        let (give, take) = mpsc::channel::<Server>();
        let (done, result) = mpsc::channel::<bool>();
        let thread = std::thread::spawn(move || {
            let s = take.recv().unwrap();
            // (with a join of its own handle this panicked: no `done` then); it is kept
            // for the next registration to join
            let kept = stop(s);
            assert!(kept.is_some_and(|k| k.stopping));
            let mut b = [0u8; 1];
            let woken = (&wakee).read(&mut b).is_ok_and(|n| n == 1) && b == *b"x";
            let _ = done.send(woken);
        });
        give.send(Server {
            pid: os::current_pid(),
            wake,
            thread,
            stopping: false,
        })
        .unwrap();
        let woken = result
            .recv_timeout(Duration::from_secs(10))
            .expect("stop() on the server's own thread returned");
        assert!(woken, "the wake-up byte was written");
    }
}
