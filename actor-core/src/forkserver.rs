//! The fork server behind [`StartMethod::ForkServer`](crate::StartMethod::ForkServer).
//!
//! The server is this program re-executed with `PROCACTOR_FORKSERVER=<ppid>` and stopped
//! in [`crate::init`], before any code of `main` runs: a single-threaded process holding
//! none of the parent's later state. For each start it forks; the child takes the control
//! descriptor the parent sent along and from there on starts exactly as a spawned child
//! does (bootstrap, parent-death signal, target, outcome).
//!
//! Two sockets join the parent and the server:
//! - *requests* (the server's standard input at start): the parent sends a frame holding
//!   the child's token with the child's control descriptor; the server answers with a
//!   frame holding the pid with a pidfd for the child.
//! - *statuses*: the server cannot let the parent reap its children (only a parent may),
//!   so it reaps them itself and sends `(pid, how, value)` for each; a relay thread in
//!   the parent hands them to the monitor ([`monitor::relayed_exit`]).
//!
//! The server has the parent-death signal set: it dies with its parent, and its children
//! (whose parent it is) die with it.

use crate::codec;
use crate::monitor;
use crate::runtime;
use crate::status::ExitStatus;
use procactor_transports::frame::{self, FrameReader, Wait};
use procactor_transports::os::{self, ExitInfo, Forked, Poller, SpawnedChild};
use procactor_transports::{fdpass, AsFd, OwnedFd};
use std::collections::HashMap;
use std::io;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The variable that makes a re-executed binary a fork server: the parent's pid.
pub(crate) const SERVER_ENV: &str = "PROCACTOR_FORKSERVER";

/// Longest a start waits for the server's answer before calling the server broken.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests are a token; answers a pid; statuses a triple: all tiny.
const MAX_FRAME: u64 = 64;

const HOW_CODE: u8 = 0;
const HOW_SIGNAL: u8 = 1;

/// The parent's side of a running server.
struct Client {
    requests: OwnedFd,
    reader: FrameReader,
    server: SpawnedChild,
}

static CLIENT: Mutex<Option<Client>> = Mutex::new(None);

/// Starts a child through the fork server (starting the server first if there is none or
/// it has died): the child will read its bootstrap from `control` as a spawned child does.
/// Returns the child and the server's pid.
pub(crate) fn start_child(token: u64, control: OwnedFd) -> io::Result<(SpawnedChild, u32)> {
    let mut slot = CLIENT.lock().unwrap_or_else(|e| e.into_inner());
    if slot
        .as_ref()
        .is_some_and(|c| server_gone(&c.server) || c.reader.saw_eof())
    {
        *slot = None; // its relay thread reaps it
    }
    if slot.is_none() {
        *slot = Some(start_server()?);
    }
    let Some(client) = slot.as_mut() else {
        return Err(io::Error::other("fork server missing"));
    };
    let server = client.server.pid;
    let result = request(client, token, control).map(|c| (c, server));
    if result.is_err() {
        // out of step or gone: the next start begins with a fresh server
        if let Some(c) = slot.take() {
            let _ = os::pidfd_signal(c.server.pidfd.as_fd(), os::SIGKILL);
        }
    }
    result
}

/// Starts the fork server now rather than at the first start (so that the first start
/// costs no more than the others). Harmless if it runs already.
pub(crate) fn ensure_started() -> io::Result<()> {
    let mut slot = CLIENT.lock().unwrap_or_else(|e| e.into_inner());
    if slot.as_ref().is_some_and(|c| server_gone(&c.server)) {
        *slot = None;
    }
    if slot.is_none() {
        *slot = Some(start_server()?);
    }
    Ok(())
}

/// In a child made by `fork()`: forgets the parent's server connection without closing
/// it (closing is the parent's business; the child starts its own server if it needs one).
pub(crate) fn after_fork_in_child() {
    let old = CLIENT.lock().unwrap_or_else(|e| e.into_inner()).take();
    std::mem::forget(old);
}

fn server_gone(server: &SpawnedChild) -> bool {
    matches!(os::poll_readable(&[server.pidfd.as_fd()], Some(Instant::now())), Ok(r) if r[0])
}

fn request(client: &mut Client, token: u64, control: OwnedFd) -> io::Result<SpawnedChild> {
    let mut bytes = Vec::with_capacity(16);
    codec::encode(&token, &mut bytes, None).map_err(io::Error::other)?;
    frame::write_frame(client.requests.as_fd(), &bytes, &[control.as_fd()])?;
    drop(control);
    client
        .reader
        .fill(
            client.requests.as_fd(),
            Wait::Until(Instant::now() + REPLY_TIMEOUT),
            Some(MAX_FRAME),
        )
        .map_err(|e| io::Error::other(format!("fork server: {e}")))?;
    let pid: Result<u32, _> = codec::decode(client.reader.payload(), Vec::new());
    let mut fds = client.reader.consume();
    match (pid, fds.pop()) {
        (Ok(0), _) => Err(io::Error::other("the fork server could not fork")),
        (Ok(pid), Some(pidfd)) if fds.is_empty() => Ok(SpawnedChild { pid, pidfd }),
        _ => Err(io::Error::other("fork server: malformed answer")),
    }
}

fn start_server() -> io::Result<Client> {
    let (requests, theirs) = fdpass::socketpair()?;
    let (statuses, statuses_theirs) = fdpass::socketpair()?;
    let me = os::current_pid();
    let server = runtime::on_spawner_thread(move || {
        let ppid = me.to_string();
        os::spawn_self(theirs, &[(SERVER_ENV, ppid.as_str())])
    })??;
    frame::write_frame(requests.as_fd(), &[], &[statuses_theirs.as_fd()])?;
    drop(statuses_theirs);
    let server_pidfd = server.pidfd.try_clone()?;
    let server_pid = server.pid;
    std::thread::Builder::new()
        .name("procactor-forkserver".into())
        .spawn(move || relay(statuses, server_pid, server_pidfd))?;
    tracing::debug!(pid = server.pid, "fork server started");
    Ok(Client {
        requests,
        reader: FrameReader::new(),
        server,
    })
}

/// The parent's relay thread: hands each status the server sends to the monitor. When
/// the server is gone, its children died with it (parent-death signal): each one still
/// registered is reported as killed once its pidfd says it has ended.
fn relay(statuses: OwnedFd, server: u32, server_pidfd: OwnedFd) {
    let mut reader = FrameReader::new();
    while reader
        .fill(statuses.as_fd(), Wait::Forever, Some(MAX_FRAME))
        .is_ok()
    {
        let st: Result<(u32, u8, i32), _> = codec::decode(reader.payload(), Vec::new());
        reader.consume();
        match st {
            Ok((pid, HOW_CODE, c)) => monitor::relayed_exit(server, pid, ExitStatus::Code(c)),
            Ok((pid, HOW_SIGNAL, s)) => monitor::relayed_exit(server, pid, ExitStatus::Signal(s)),
            _ => break,
        }
    }
    // reap the server itself (it is our child)
    let _ = os::poll_readable(&[server_pidfd.as_fd()], None);
    let _ = os::pidfd_try_reap(server_pidfd.as_fd());
    for child in monitor::relayed_children(server) {
        let _ = os::poll_readable(&[child.pidfd.as_fd()], None);
        monitor::relayed_exit(server, child.pid, ExitStatus::Signal(os::SIGKILL));
    }
}

/// The server's life: never returns.
pub(crate) fn server_main(env: &str) -> ! {
    let code = match serve(env) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("procactor fork server {}: {e}", os::current_pid());
            1
        }
    };
    std::process::exit(code)
}

fn serve(env: &str) -> io::Result<()> {
    let ppid: u32 = env
        .parse()
        .map_err(|_| io::Error::other(format!("malformed {SERVER_ENV} value {env:?}")))?;
    let requests = os::take_inherited_fd(os::CHILD_CONTROL_FD)?;
    if !os::set_parent_death_kill(ppid)? {
        return Ok(()); // the parent is already gone
    }
    let mut reader = FrameReader::new();
    reader
        .fill(requests.as_fd(), Wait::Forever, Some(MAX_FRAME))
        .map_err(|e| io::Error::other(format!("reading the status socket: {e}")))?;
    let statuses = reader
        .consume()
        .pop()
        .ok_or_else(|| io::Error::other("no status socket"))?;
    let me = os::current_pid();
    let poller = Poller::new()?;
    const REQUESTS: u64 = u64::MAX;
    poller.add(requests.as_fd(), REQUESTS)?;
    let mut children: HashMap<u32, OwnedFd> = HashMap::new();
    let mut ready = Vec::new();
    let mut out = Vec::with_capacity(32);
    loop {
        ready.clear();
        match poller.wait(&mut ready, None) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for &token in &ready {
            if token != REQUESTS {
                let pid = token as u32;
                let Some(pidfd) = children.get(&pid) else {
                    continue;
                };
                let (how, value) = match os::pidfd_try_reap(pidfd.as_fd()) {
                    Ok(None) => continue,
                    Ok(Some(ExitInfo::Code(c))) => (HOW_CODE, c),
                    Ok(Some(ExitInfo::Signal(s))) => (HOW_SIGNAL, s),
                    Err(_) => (HOW_CODE, -1),
                };
                if let Some(fd) = children.remove(&pid) {
                    let _ = poller.delete(fd.as_fd());
                }
                out.clear();
                codec::encode(&(pid, how, value), &mut out, None).map_err(io::Error::other)?;
                frame::write_frame(statuses.as_fd(), &out, &[])?;
                continue;
            }
            // requests: every complete frame buffered
            loop {
                match reader.fill(requests.as_fd(), Wait::No, Some(MAX_FRAME)) {
                    Ok(_) => {}
                    Err(frame::FrameError::Timeout) => break,
                    Err(frame::FrameError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(frame::FrameError::Eof) => return Ok(()), // the parent is done
                    Err(e) => return Err(io::Error::other(e.to_string())),
                }
                let token: Result<u64, _> = codec::decode(reader.payload(), Vec::new());
                let control = reader.consume().pop();
                let (Ok(token), Some(control)) = (token, control) else {
                    return Err(io::Error::other("malformed request"));
                };
                match os::fork_single_threaded() {
                    Ok(Forked::Child) => {
                        // the server's descriptors are the server's business
                        drop(reader);
                        drop(requests);
                        drop(statuses);
                        drop(poller);
                        drop(children);
                        runtime::forked_child_main(control, token, me, None)
                    }
                    Ok(Forked::Parent(child)) => {
                        drop(control);
                        out.clear();
                        codec::encode(&child.pid, &mut out, None).map_err(io::Error::other)?;
                        frame::write_frame(requests.as_fd(), &out, &[child.pidfd.as_fd()])?;
                        poller.add(child.pidfd.as_fd(), u64::from(child.pid))?;
                        children.insert(child.pid, child.pidfd);
                    }
                    Err(e) => {
                        drop(control);
                        tracing::warn!(error = %e, "fork server: fork failed");
                        out.clear();
                        codec::encode(&0u32, &mut out, None).map_err(io::Error::other)?;
                        frame::write_frame(requests.as_fd(), &out, &[])?;
                    }
                }
            }
        }
    }
}
