//! The fork server behind [`StartMethod::ForkServer`](crate::StartMethod::ForkServer).
//!
//! The server is this program re-executed with `PROCACTOR_FORKSERVER=<ppid>` and stopped
//! in [`crate::init`] (the first statement of `main`, or an ELF constructor in test
//! binaries): a single-threaded process holding none of the parent's later state. For each start it forks; the child takes the control
//! descriptor the parent sent along and from there on starts exactly as a spawned child
//! does (bootstrap, parent-death signal, target, outcome).
//!
//! Two sockets join the parent and the server:
//! - *requests* (the server's standard input at start): the parent sends a frame holding
//!   the child's token and the request's kind (now, or a spare at leisure) with the
//!   child's control descriptor; the server answers with a frame holding the pid with a
//!   pidfd for the child. A third kind, *hurry* (no descriptor, no answer), asks for the
//!   spare asked at leisure now.
//! - *statuses*: the server cannot let the parent reap its children (only a parent may),
//!   so it reaps them itself and sends `(pid, how, value)` for each; a relay thread in
//!   the parent hands them to the monitor ([`monitor::relayed_exit`]). It reaps every
//!   ended child (`waitpid(-1)`): its children's memory keepers (below) are its children
//!   too, reaped without a word.
//!
//! The server has the parent-death signal set: it dies with its parent, and its children
//! (whose parent it is) die with it.
//!
//! # A child forked ahead: the spare
//!
//! A start through the server would wait for the server to wake, fork, and answer; and
//! the child, for its bootstrap, which the parent writes once it has the answer. So the
//! parent asks, right after each start (and when the server starts), for the *next*
//! start's child: the server forks it while nobody waits, and it waits in its bootstrap
//! read. The next start reads the answer (there by then), writes the bootstrap, and the
//! child runs: no fork and no round trip on the path of a start, which is what a
//! supervisor's restart or a pool's replacement waits for (issue 23: restart ≤ 0.5 ms).
//! The price is one more process, idle, per server (a fork of the small server: a few
//! hundred KiB of its own memory). A spare that dies while it waits is skipped (a child
//! is forked for that start instead); one given up (its server retired, the program
//! ending) sees its control socket end and exits quietly with status 0. Its status, which
//! nobody asked for, is dropped when its server ends.
//!
//! # When the spare is forked: at once in a burst, at leisure after a lone start
//!
//! The request for the next spare comes right after a start's bootstrap is written: the
//! fork and the spare's first steps then compete with that start for a core (on our
//! 2-core VM, which wakes a task on its waker's core, they did in most restarts). Starts
//! less than [`STARTS_APART`] after the one before are a burst: more are likely to come,
//! and the spare is forked at once. After a lone start the spare is asked for *at
//! leisure*: the server forks it [`AT_LEISURE`] later, when that start is done, or at
//! once when any request comes first (a start that needs it sends *hurry*, unless its
//! answer is already there). A spare forked at leisure, nobody waiting for it, also
//! starts its *memory keeper* (`os::start_memory_keeper`): when the child dies, its
//! death is reported before its memory is torn down (100–300 µs of the kernel's work
//! here), and the replacement starts meanwhile. Measured (design notes, "Restarts after
//! a quiet spell"): a restart 10 ms after the last, 1.02 → 0.61 ms; a burst, unchanged.
//!
//! A [`Zygote`] runs the same loop in a copy of the program made by `fork()` (for pools
//! and supervisors with `StartMethod::Fork`): its children start from the program's
//! memory as it was then.

use super::base::{
    at_fork_in_child, flush_std_streams, forget_parent_runtime, on_spawner_thread, random_token,
    thread_builder,
};
use super::child::forked_child_main;
use super::identity::fingerprint;
use super::monitor;
use crate::codec;
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
/// Requests are a token and a kind; answers a pid; statuses a triple: all tiny.
const MAX_FRAME: u64 = 64;

/// A request's kind: fork a child now and answer.
const START_NOW: u8 = 0;
/// A request's kind: the spare asked for after a lone start: forked [`AT_LEISURE`] later
/// (or at the next request), with its memory keeper, then answered.
const SPARE_AT_LEISURE: u8 = 1;
/// Not a start (no descriptor, no answer): fork the spare asked for at leisure now, its
/// start is waiting for it.
const HURRY: u8 = 2;

/// How long after the request for a spare, made right after a lone start, the server
/// forks it. That start's bootstrap was written just before: the fork (50–150 µs of
/// page-table copying on the machines we measure on) and the spare's first steps would
/// compete with it for a core, and on a machine that wakes a task on its waker's core
/// they do (a start after a quiet spell also runs from cold caches: 0.3 ms or more). A
/// spare made at leisure also takes the time to start its memory keeper
/// (`os::start_memory_keeper`: its process's death is then reported before its memory
/// is torn down). A start that comes sooner tells the server to hurry.
const AT_LEISURE: Duration = Duration::from_millis(1);
/// Starts closer together than this are a burst: the next spare is forked at once (the
/// next start is likely near; tried: forking it 200 µs later did not shorten a burst's
/// restarts, see the design notes), without a keeper (in a burst the cores are busy, and
/// a keeper only moves the teardown's work, adding its own). Further apart, each start
/// is a lone start and its spare is made [`AT_LEISURE`].
const STARTS_APART: Duration = Duration::from_millis(2);
/// How long after a child's end the server looks for its memory keeper's end (to reap
/// it; any later wake-up reaps it too).
const KEEPER_SWEEP: Duration = Duration::from_millis(10);

const HOW_CODE: u8 = 0;
const HOW_SIGNAL: u8 = 1;

/// The parent's side of a running server.
struct Client {
    requests: OwnedFd,
    reader: FrameReader,
    server: SpawnedChild,
    /// The environment and working directory the server started with
    /// ([`context_digest`]; 0 for a zygote, which is never compared).
    context: u64,
    /// The *spare*: a child asked for ahead of the next start (the token it waits for,
    /// our end of its control socket, and whether it was asked for at leisure: then the
    /// server may not have forked it yet, and a start that needs it says [`HURRY`]),
    /// whose answer is read at that start. The server forks it while nobody waits, and
    /// the next start only hands it its bootstrap: no fork, no round trip to the server,
    /// on the path of a start (a restart among them). `None` for a zygote (a `Fork`
    /// owner's snapshot), which forks on demand.
    spare: Option<(u64, OwnedFd, bool)>,
    /// When the last start was made, and how long after the one before it.
    last_start: Option<Instant>,
    last_gap: Option<Duration>,
}

impl Client {
    /// A client of the server `server` on its request socket, with no spare asked for.
    fn new(requests: OwnedFd, server: SpawnedChild, context: u64) -> Client {
        // (the answer comes as soon as the server has forked: a sleep and a wake-up
        // would cost a good part of that)
        let mut reader = FrameReader::new();
        reader.set_spin(monitor::JOIN_SPIN);
        Client {
            requests,
            reader,
            server,
            context,
            spare: None,
            last_start: None,
            last_gap: None,
        }
    }
}

/// A fork-server child that runs and waits for its bootstrap, which must carry `token`,
/// on `control` (our end of its control socket).
pub(crate) struct Waiting {
    pub(crate) child: SpawnedChild,
    /// The server's pid (the child's OS parent).
    pub(crate) server: u32,
    pub(crate) control: OwnedFd,
    pub(crate) token: u64,
}

static CLIENT: Mutex<Option<Client>> = Mutex::new(None);

/// Starts a child through the fork server (starting the server first if there is none or
/// it has died): the child then waits for its bootstrap on the returned control socket,
/// as a spawned child does. It is the spare asked for at the previous start when that
/// one is there and alive (the usual case: no fork and no wait here), else one forked
/// now. The caller asks for the next start's spare with [`ask_next_spare`] once it has
/// given this child its bootstrap (so that the server's fork does not compete with this
/// child's start for a core).
///
/// A server that cannot fork (out of processes) just fails this start. A server that
/// breaks the protocol or does not answer in time is *retired*: no more requests go to
/// it, it serves out the children it has (they are never killed for another start's
/// failure; a spare, whose control socket closes with it, exits quietly) and exits; this
/// start is then made once more, on a new server (and fails if that one fails too).
pub(crate) fn start_waiting() -> io::Result<Waiting> {
    let mut slot = CLIENT.lock().unwrap_or_else(|e| e.into_inner());
    let mut retried = false;
    loop {
        let client = current_client(&mut slot, None)?;
        match start_on(client) {
            Ok(w) => return Ok(w),
            Err(Failure::CouldNotFork) => {
                return Err(io::Error::new(
                    io::ErrorKind::OutOfMemory,
                    "the fork server could not fork (out of processes or memory)",
                ))
            }
            Err(Failure::Broken(e)) => {
                *slot = None; // (retired)
                if retried {
                    return Err(e);
                }
                tracing::debug!(error = %e, "fork server retired: the start is made on a new one");
                retried = true;
            }
        }
    }
}

/// A start on `client`'s server: its spare if it is there and alive, else a child
/// forked now.
fn start_on(client: &mut Client) -> Result<Waiting, Failure> {
    let server = client.server.pid;
    let now = Instant::now();
    client.last_gap = client.last_start.map(|t| now.saturating_duration_since(t));
    client.last_start = Some(now);
    if let Some((token, control, at_leisure)) = client.spare.take() {
        if at_leisure {
            hurry(client)?;
        }
        match read_answer(client) {
            Ok(child) if !os::pidfd_ended(child.pidfd.as_fd()) => {
                return Ok(Waiting {
                    child,
                    server,
                    control,
                    token,
                })
            }
            // killed while it waited (its status goes the way of any status nobody
            // asked for), or not forked: a child is forked now instead
            Ok(_) | Err(Failure::CouldNotFork) => {}
            Err(e @ Failure::Broken(_)) => return Err(e),
        }
    }
    fresh(client, server)
}

/// Asks the fork server for the next start's spare, unless one is asked for already
/// (without waiting for the answer, which the next start reads). A server that cannot
/// take the request is retired (its children, the last one started among them, are
/// served out); the next start brings up a new one.
pub(crate) fn ask_next_spare() {
    let mut slot = CLIENT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(client) = slot.as_mut() {
        let kind = if client.last_gap.is_none_or(|gap| gap >= STARTS_APART) {
            SPARE_AT_LEISURE
        } else {
            START_NOW
        };
        if client.spare.is_none() && ask_spare(client, kind).is_err() {
            *slot = None;
        }
    }
}

/// A child forked for this start (no spare at hand).
fn fresh(client: &mut Client, server: u32) -> Result<Waiting, Failure> {
    let token = random_token();
    let (control, theirs) = fdpass::socketpair().map_err(Failure::Broken)?;
    send_request(client, token, START_NOW, theirs)?;
    let child = read_answer(client)?;
    Ok(Waiting {
        child,
        server,
        control,
        token,
    })
}

/// Asks the server for the next start's spare, forked as `kind` says; its answer is read
/// at that start.
fn ask_spare(client: &mut Client, kind: u8) -> Result<(), Failure> {
    let token = random_token();
    let (control, theirs) = fdpass::socketpair().map_err(Failure::Broken)?;
    send_request(client, token, kind, theirs)?;
    client.spare = Some((token, control, kind == SPARE_AT_LEISURE));
    Ok(())
}

/// A start needs the spare asked for to be forked later: unless its answer is here
/// already, the server is told to fork it now.
fn hurry(client: &mut Client) -> Result<(), Failure> {
    match client
        .reader
        .fill(client.requests.as_fd(), Wait::No, Some(MAX_FRAME))
    {
        Ok(_) => Ok(()), // (answered: read next)
        Err(frame::FrameError::Timeout) => send_hurry(client),
        Err(frame::FrameError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
            send_hurry(client)
        }
        Err(e) => Err(broken(e.to_string())),
    }
}

fn send_hurry(client: &mut Client) -> Result<(), Failure> {
    let mut bytes = Vec::with_capacity(16);
    codec::encode(&(0u64, HURRY), &mut bytes, None).map_err(|e| broken(e.to_string()))?;
    frame::write_frame(client.requests.as_fd(), &bytes, &[]).map_err(|e| broken(e.to_string()))
}

/// Starts the fork server now rather than at the first start (so that the first start
/// costs no more than the others). Harmless if it runs already.
pub(crate) fn ensure_started() -> io::Result<()> {
    let mut slot = CLIENT.lock().unwrap_or_else(|e| e.into_inner());
    current_client(&mut slot, None).map(|_| ())
}

/// As [`ensure_started`], and a server started under another environment or working
/// directory than this process's current ones is replaced (retired: it serves out its
/// children, which keep running) by one started now: so that pools and supervisors that
/// default to the fork server start their children with the environment and working
/// directory a spawned child would have (see `StartMethod`'s docs). Costs a read of the
/// environment and a `getcwd` when the server is current.
pub(crate) fn ensure_current() -> io::Result<()> {
    let now = context_digest();
    let mut slot = CLIENT.lock().unwrap_or_else(|e| e.into_inner());
    current_client(&mut slot, Some(now)).map(|_| ())
}

/// The server to use: the one in `slot` if it is alive and in step (and, given
/// `context`, was started under that environment and working directory), else one
/// started now, the old one being retired (closing its request socket retires it: it
/// serves out its children).
fn current_client(slot: &mut Option<Client>, context: Option<u64>) -> io::Result<&mut Client> {
    let client = match slot.take() {
        Some(c) if usable(&c) && context.is_none_or(|now| c.context == now) => c,
        old => {
            drop(old);
            start_server(context.unwrap_or_else(context_digest))?
        }
    };
    Ok(slot.insert(client))
}

/// A digest of what a re-executed server inherits from this process and a forked
/// child from the server: the environment and the working directory.
fn context_digest() -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::env::current_dir().ok().hash(&mut h);
    for (k, v) in std::env::vars_os() {
        k.hash(&mut h);
        v.hash(&mut h);
    }
    h.finish()
}

/// A fork server made by forking this process (not by re-executing it): a *zygote*. Its
/// children are copies of this process as it was when the zygote was made, as children
/// of Python's fork are copies of their parent, but forked by a process that stays
/// single-threaded whatever this one does next. A pool or supervisor built with
/// [`StartMethod::Fork`](crate::StartMethod::Fork) forks its workers or children, and
/// their replacements, through one.
///
/// It dies with this process (parent-death signal), and ends once dropped and its
/// children have ended. It cannot be replaced: its memory is the snapshot.
pub(crate) struct Zygote {
    client: Mutex<Client>,
    pid: u32,
    /// Set when a start failed out of step (no answer in time, a malformed one): later
    /// answers could belong to earlier requests, so no start is made any more.
    broken: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Zygote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Zygote").field("pid", &self.pid).finish()
    }
}

impl Zygote {
    /// Forks the zygote. Refused ([`io::ErrorKind::Unsupported`]) when this process has
    /// more than one thread, as every `fork()` of ours is.
    pub(crate) fn fork() -> io::Result<std::sync::Arc<Zygote>> {
        let (requests, theirs) = fdpass::socketpair()?;
        let (statuses, statuses_theirs) = fdpass::socketpair()?;
        let me = os::current_pid();
        flush_std_streams();
        match os::fork_single_threaded()? {
            Forked::Child => {
                drop(requests);
                drop(statuses);
                forget_parent_runtime();
                let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    if !os::set_parent_death_kill(me)? {
                        return Ok(()); // the parent is already gone
                    }
                    // Ctrl-C reaches the whole process group: a program that handles it
                    // must not lose its zygote (which cannot be replaced) to it. The
                    // children get the program's handling back.
                    let interrupt = os::ignore_interrupts()?;
                    serve_loop(theirs, statuses_theirs, FrameReader::new(), me, &interrupt)
                }));
                let code = match code {
                    Ok(Ok(())) => 0,
                    Ok(Err(e)) => {
                        eprintln!("procactor zygote {}: {e}", os::current_pid());
                        1
                    }
                    Err(_) => 1,
                };
                os::exit_now(code)
            }
            Forked::Parent(server) => {
                drop(theirs);
                drop(statuses_theirs);
                let pid = server.pid;
                monitor::server_started(pid);
                let relayed = server.pidfd.try_clone().and_then(|server_pidfd| {
                    thread_builder("procactor-zygote")
                        .spawn(move || relay(statuses, pid, server_pidfd))
                });
                if let Err(e) = relayed {
                    // not left unowned, nor a zombie
                    let _ = os::pidfd_signal(server.pidfd.as_fd(), os::SIGKILL);
                    let _ = os::poll_readable(&[server.pidfd.as_fd()], None);
                    let _ = os::pidfd_try_reap(server.pidfd.as_fd());
                    return Err(e);
                }
                tracing::debug!(pid, "zygote forked");
                Ok(std::sync::Arc::new(Zygote {
                    client: Mutex::new(Client::new(requests, server, 0)),
                    pid,
                    broken: std::sync::atomic::AtomicBool::new(false),
                }))
            }
        }
    }

    /// [`Zygote::fork`] for a pool or supervisor built with `Fork` (`owner` names it in
    /// the error): a threaded process gets a clear [`SpawnError::Unsupported`].
    ///
    /// [`SpawnError::Unsupported`]: crate::SpawnError::Unsupported
    pub(crate) fn for_owner(owner: &str) -> Result<std::sync::Arc<Zygote>, crate::SpawnError> {
        Zygote::fork().map_err(|e| {
            if e.kind() == io::ErrorKind::Unsupported {
                crate::SpawnError::Unsupported {
                    method: "fork",
                    why: format!(
                        "a {owner} with Fork forks a copy of this process when it is built, \
                         which needs a single-threaded process ({e}); use \
                         StartMethod::ForkServer, as fast and safe with threads"
                    ),
                }
            } else {
                crate::SpawnError::Io(e)
            }
        })
    }

    /// Starts a child through the zygote, as [`start_child`] does through the fork
    /// server; a zygote that has ended fails every start from then on.
    pub(crate) fn start_child(
        &self,
        token: u64,
        control: OwnedFd,
    ) -> io::Result<(SpawnedChild, u32)> {
        let mut client = self.client.lock().unwrap_or_else(|e| e.into_inner());
        if self.broken.load(std::sync::atomic::Ordering::Relaxed) || !usable(&client) {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the zygote (the copy of this process that forks the pool's workers) has ended",
            ));
        }
        let sent = send_request(&mut client, token, START_NOW, control);
        match sent.and_then(|()| read_answer(&mut client)) {
            Ok(child) => Ok((child, self.pid)),
            Err(Failure::CouldNotFork) => Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                "the zygote could not fork (out of processes or memory)",
            )),
            Err(Failure::Broken(e)) => {
                // out of step: retired, as the fork server is (it serves out its
                // children and exits); every later start fails clearly
                self.broken
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                let _ = fdpass::shutdown(client.requests.as_fd());
                Err(e)
            }
        }
    }
}

/// In a child made by `fork()`: forgets the parent's server connection without closing
/// it (closing is the parent's business; the child starts its own server if it needs one).
/// Registered with [`at_fork_in_child`] before the first server is started.
fn forget_in_fork_child() {
    let old = CLIENT.lock().unwrap_or_else(|e| e.into_inner()).take();
    std::mem::forget(old);
}

/// Alive and in step.
fn usable(c: &Client) -> bool {
    !os::pidfd_ended(c.server.pidfd.as_fd()) && !c.reader.saw_eof()
}

enum Failure {
    /// The server answered that `fork()` failed: this start fails, the server stays.
    CouldNotFork,
    /// No answer in time, or not one we understand: the server is retired.
    Broken(io::Error),
}

fn broken(e: String) -> Failure {
    Failure::Broken(io::Error::other(format!("fork server: {e}")))
}

/// Asks for a child that will wait for a bootstrap with `token` on `control` (its end),
/// forked as `kind` says; the answer is read with [`read_answer`].
fn send_request(
    client: &mut Client,
    token: u64,
    kind: u8,
    control: OwnedFd,
) -> Result<(), Failure> {
    let mut bytes = Vec::with_capacity(16);
    codec::encode(&(token, kind), &mut bytes, None).map_err(|e| broken(e.to_string()))?;
    frame::write_frame(client.requests.as_fd(), &bytes, &[control.as_fd()])
        .map_err(|e| broken(e.to_string()))?;
    Ok(())
}

/// Reads the answer to the oldest request not answered yet (answers come in order).
fn read_answer(client: &mut Client) -> Result<SpawnedChild, Failure> {
    client
        .reader
        .fill(
            client.requests.as_fd(),
            Wait::Until(Instant::now() + REPLY_TIMEOUT),
            Some(MAX_FRAME),
        )
        .map_err(|e| broken(e.to_string()))?;
    let pid: Result<u32, _> = codec::decode(client.reader.payload(), Vec::new());
    let mut fds = client.reader.consume();
    match (pid, fds.pop()) {
        (Ok(0), None) => Err(Failure::CouldNotFork),
        (Ok(pid), Some(pidfd)) if pid != 0 && fds.is_empty() => Ok(SpawnedChild { pid, pidfd }),
        _ => Err(broken("malformed answer".into())),
    }
}

/// Starts a server; `context`: the [`context_digest`] of this process now (the server
/// inherits its environment and working directory).
fn start_server(context: u64) -> io::Result<Client> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| at_fork_in_child(forget_in_fork_child));
    let (requests, theirs) = fdpass::socketpair()?;
    let (statuses, statuses_theirs) = fdpass::socketpair()?;
    let me = os::current_pid();
    let server = on_spawner_thread(move || {
        let ppid = me.to_string();
        os::spawn_self(theirs, &[(SERVER_ENV, ppid.as_str())])
    })??;
    frame::write_frame(requests.as_fd(), &[], &[statuses_theirs.as_fd()])?;
    drop(statuses_theirs);
    let server_pidfd = server.pidfd.try_clone()?;
    let server_pid = server.pid;
    monitor::server_started(server_pid);
    thread_builder("procactor-forkserver")
        .spawn(move || relay(statuses, server_pid, server_pidfd))?;
    tracing::debug!(pid = server.pid, "fork server started");
    let mut client = Client::new(requests, server, context);
    // (the first start takes a spare too, likely soon)
    match ask_spare(&mut client, START_NOW) {
        Ok(()) | Err(Failure::CouldNotFork) => Ok(client),
        Err(Failure::Broken(e)) => Err(e),
    }
}

/// The parent's relay thread: hands each status the server sends to the monitor. When
/// the stream ends, the server is gone (or is killed here, if it sent something we do
/// not understand: its statuses could not be trusted any more); its children died with
/// it (parent-death signal) and are reported killed ([`monitor::server_died`]).
fn relay(statuses: OwnedFd, server: u32, server_pidfd: OwnedFd) {
    let mut reader = FrameReader::new();
    loop {
        let st: Option<(u32, u8, i32)> =
            match reader.fill(statuses.as_fd(), Wait::Forever, Some(MAX_FRAME)) {
                Ok(_) => {
                    let st = codec::decode(reader.payload(), Vec::new()).ok();
                    reader.consume();
                    st
                }
                Err(frame::FrameError::Eof) => break,
                Err(_) => None,
            };
        match st {
            Some((pid, HOW_CODE, c)) => monitor::relayed_exit(server, pid, ExitStatus::Code(c)),
            Some((pid, HOW_SIGNAL, s)) => monitor::relayed_exit(server, pid, ExitStatus::Signal(s)),
            _ => {
                tracing::warn!(server, "fork server sent a malformed status: killed");
                let _ = os::pidfd_signal(server_pidfd.as_fd(), os::SIGKILL);
                break;
            }
        }
    }
    // marked dead before it is reaped (until then its pid cannot be reused: a new
    // server with that pid, whose start unmarks it, comes after), then reaped (it is
    // our child)
    let _ = os::poll_readable(&[server_pidfd.as_fd()], None);
    monitor::server_died(server);
    let _ = os::pidfd_try_reap(server_pidfd.as_fd());
}

/// Reaps every ended child of the server and sends the status of each that the parent
/// knows of (in `children`) on `statuses`; others (memory keepers) are only reaped.
/// Returns whether a child the parent knows of was reaped.
fn reap_ended(
    children: &mut HashMap<u32, OwnedFd>,
    poller: &Poller,
    statuses: &OwnedFd,
    out: &mut Vec<u8>,
) -> io::Result<bool> {
    let mut known = false;
    while let Some((pid, info)) = os::reap_any()? {
        let Some(pidfd) = children.remove(&pid) else {
            continue;
        };
        known = true;
        let _ = poller.delete(pidfd.as_fd());
        let (how, value) = match info {
            ExitInfo::Code(c) => (HOW_CODE, c),
            ExitInfo::Signal(s) => (HOW_SIGNAL, s),
        };
        out.clear();
        codec::encode(&(pid, how, value), out, None).map_err(io::Error::other)?;
        // (the parent gone, its death takes this process and the children too)
        frame::write_frame(statuses.as_fd(), out, &[])?;
    }
    Ok(known)
}

/// The server takes no more requests: the parent sees its request socket end at once
/// (and starts a new server); the children there are are served out.
fn stop_accepting(poller: &Poller, requests: &OwnedFd) -> bool {
    let _ = poller.delete(requests.as_fd());
    let _ = fdpass::shutdown(requests.as_fd());
    false
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
    // Ctrl-C reaches the whole process group: a program that handles it must not lose
    // its server to it (and, by their parent-death signal, every child of the server).
    // The children get the program's handling back.
    let interrupt = os::ignore_interrupts()?;
    serve_loop(requests, statuses, reader, ppid, &interrupt)
}

/// The server's loop, on its request and status sockets (`reader` may hold requests
/// already read), for parent `ppid`: until the parent stops asking and the children
/// there are have ended.
/// `interrupt`: `SIGINT`'s disposition for the children (the server ignores it).
fn serve_loop(
    requests: OwnedFd,
    statuses: OwnedFd,
    mut reader: FrameReader,
    ppid: u32,
    interrupt: &os::SavedInterrupt,
) -> io::Result<()> {
    let me = os::current_pid();
    // The image's fingerprint is taken once, here: the children inherit it (a fork runs
    // the same image), so none of them reads `/proc` to prove it. Likewise the standard
    // streams, which every child flushes before it exits: set up once here rather than
    // in each child.
    fingerprint()?;
    {
        flush_std_streams();
        // (the codec's thread-local tables, which a child's outcome encoding sets up,
        // and the tracing dispatcher's default)
        let _ = codec::encode(&0u8, &mut Vec::new(), Some(&mut Vec::new()));
        tracing::trace!(parent = ppid, "fork server ready");
    }
    let poller = Poller::new()?;
    const REQUESTS: u64 = u64::MAX;
    poller.add(requests.as_fd(), REQUESTS)?;
    let mut children: HashMap<u32, OwnedFd> = HashMap::new();
    // Once the parent closes its request socket (or breaks the protocol), no more
    // requests are taken; the children there are are served out: their statuses still
    // go to the parent, and they are not killed for it. Then the server exits.
    let mut accepting = true;
    let mut ready = Vec::new();
    let mut out = Vec::with_capacity(32);
    // A spare asked for at leisure, and when it is forked (unless a request comes first).
    let mut leisurely: Option<(u64, OwnedFd, Instant)> = None;
    // When to look for ended memory keepers again.
    let mut sweep: Option<Instant> = None;
    // The children to fork now, in the order their requests came (answers go in order);
    // `None`: a request refused; `true`: a spare made at leisure, its quiet time past
    // (with a memory keeper).
    let mut forks: Vec<(u64, Option<OwnedFd>, bool)> = Vec::with_capacity(4);
    loop {
        if !accepting && children.is_empty() {
            return Ok(());
        }
        ready.clear();
        let now = Instant::now();
        let timeout = [leisurely.as_ref().map(|(_, _, due)| *due), sweep]
            .into_iter()
            .flatten()
            .min()
            .map(|due| due.saturating_duration_since(now));
        match poller.wait(&mut ready, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        // Every ended child, those whose pidfd woke us and the memory keepers of children
        // that ended before (`os::start_memory_keeper`: each child's keeper is a child of
        // this server, with no pidfd here; reaped as it comes, unreported). A keeper ends
        // just after its child: one more look [`KEEPER_SWEEP`] after a child's end.
        if reap_ended(&mut children, &poller, &statuses, &mut out)? {
            sweep = Some(Instant::now() + KEEPER_SWEEP);
        } else if sweep.is_some_and(|t| Instant::now() >= t) {
            sweep = None;
        }
        if accepting && ready.contains(&REQUESTS) {
            // requests: every complete frame buffered
            loop {
                match reader.fill(requests.as_fd(), Wait::No, Some(MAX_FRAME)) {
                    Ok(_) => {}
                    Err(frame::FrameError::Timeout) => break,
                    Err(frame::FrameError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        // the parent is done with us, or out of step: no more requests
                        accepting = stop_accepting(&poller, &requests);
                        break;
                    }
                }
                let request: Result<(u64, u8), _> = codec::decode(reader.payload(), Vec::new());
                let mut fds = reader.consume();
                let control = fds.pop();
                // any request comes after the leisurely one: that one is forked first, now
                // (its start may be waiting: no keeper, whose start would delay it)
                if let Some((token, control, _)) = leisurely.take() {
                    forks.push((token, Some(control), false));
                }
                match (request, control, fds.is_empty()) {
                    (Ok((_, HURRY)), None, _) => {}
                    (Ok((token, START_NOW)), Some(control), true) => {
                        forks.push((token, Some(control), false));
                    }
                    (Ok((token, SPARE_AT_LEISURE)), Some(control), true) => {
                        leisurely = Some((token, control, Instant::now() + AT_LEISURE));
                    }
                    // not a request we understand: refused (after the answers of those
                    // before it), the next one may be
                    _ => forks.push((0, None, false)),
                }
            }
        }
        if leisurely
            .as_ref()
            .is_some_and(|(_, _, due)| Instant::now() >= *due)
        {
            if let Some((token, control, _)) = leisurely.take() {
                forks.push((token, Some(control), true));
            }
        }
        let mut batch = std::mem::take(&mut forks).into_iter();
        while let Some((token, control, keeper)) = batch.next() {
            let answered = if let Some(control) = control {
                match os::fork_single_threaded() {
                    Ok(Forked::Child) => {
                        // The server's descriptors are the server's business: closed
                        // (the other children's control sockets among them: a spare
                        // given up must see its socket end). Its memory is forgotten,
                        // not freed: freeing writes to heap pages shared with the
                        // server, a copy-on-write fault each.
                        reader.close_fds();
                        std::mem::forget(reader);
                        drop(requests);
                        drop(statuses);
                        drop(poller);
                        drop(leisurely);
                        batch.by_ref().for_each(drop);
                        std::mem::forget(batch);
                        let mut pidfds = children.into_values();
                        pidfds.by_ref().for_each(drop);
                        std::mem::forget(pidfds);
                        let _ = interrupt.restore();
                        // (a spare made at leisure has the time to start its memory
                        // keeper; one made in a burst of starts does not take it)
                        forked_child_main(control, token, me, None, keeper)
                    }
                    Ok(Forked::Parent(child)) => {
                        drop(control);
                        out.clear();
                        codec::encode(&child.pid, &mut out, None).map_err(io::Error::other)?;
                        let answered =
                            frame::write_frame(requests.as_fd(), &out, &[child.pidfd.as_fd()]);
                        poller.add(child.pidfd.as_fd(), u64::from(child.pid))?;
                        children.insert(child.pid, child.pidfd);
                        answered
                    }
                    Err(e) => {
                        drop(control);
                        tracing::warn!(error = %e, "fork server: fork failed");
                        out.clear();
                        codec::encode(&0u32, &mut out, None).map_err(io::Error::other)?;
                        frame::write_frame(requests.as_fd(), &out, &[])
                    }
                }
            } else {
                out.clear();
                codec::encode(&0u32, &mut out, None).map_err(io::Error::other)?;
                frame::write_frame(requests.as_fd(), &out, &[])
            };
            if answered.is_err() {
                accepting = stop_accepting(&poller, &requests);
                // (the rest are dropped: their starts see their control sockets end)
                break;
            }
        }
        if !accepting {
            // (nobody will start it: it is not forked, its start sees its socket end)
            leisurely = None;
        }
    }
}
