//! The exit monitor: one thread per process waits on every child's pidfd (epoll) and
//! reaps it as soon as it exits. No zombies, no `SIGCHLD` handler, no polling.
//!
//! Whoever owns a child (a [`crate::Process`] handle, later the Pool or a Supervisor)
//! holds an `Arc<ChildState>` and waits on its condition variable; an owner of many
//! children has their exits reported by an [`ExitWatcher`] of its own. Whoever reaps a
//! child first (the thread, or a handle that saw the exit itself) takes it out of the
//! monitor and records its status, once.
//!
//! Children of the fork server are not ours: the kernel lets only their parent, the
//! server, reap them. Their pidfds still tell when they end and take signals, and the
//! server *relays* each exit status ([`relayed_exit`]); such a child is registered as
//! [`Watch::Relayed`] by the server's pid. A joiner does not wait for the relay when the
//! kernel can tell: once the server has reaped the child, its pidfd gives the status
//! (`PIDFD_GET_INFO`, Linux 6.15+), which the joiner records (first wins; the relay
//! brings the same status later, and takes the child out of the monitor). When a server
//! dies, its children die with it (parent-death signal) and their statuses are lost:
//! each is reported killed by `SIGKILL` once its pidfd says it has ended
//! ([`server_died`]).
//!
//! The thread starts with the first child it must watch, except for children started by
//! [`StartMethod::Fork`](crate::StartMethod::Fork): a program that forks must stay
//! single-threaded, so those are reaped by their handles (which poll the pidfd
//! themselves) until something else needs the thread.

use super::base::{at_fork_in_child, thread_builder};
use crate::status::ExitStatus;
use once_cell::sync::OnceCell;
use procactor_transports::os::{self, ExitInfo, Poller};
use procactor_transports::{AsFd, OwnedFd};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

/// How long a joiner polls (the child's pidfd, its control socket, its status) before
/// it sleeps: on an idle VM a sleeping thread takes tens of microseconds to wake, a
/// good part of a short child's whole life (`process_start_join_*` in `bench/`).
pub(crate) const JOIN_SPIN: Duration = Duration::from_micros(300);

/// How long a fork-server child that has ended may wait for its relayed status before
/// the server is checked for death again.
const RELAY_CHECK: Duration = Duration::from_millis(20);
/// How long `is_alive()`/`exitcode()` wait for the relayed status of a child the OS says
/// has ended (the server sends it within microseconds; a dead server's children are
/// settled by the relay thread).
const RELAY_SETTLE: Duration = Duration::from_millis(200);
/// How long the end of a server waits for each of its children to die of the
/// parent-death signal before reporting it killed anyway.
const ORPHAN_WAIT: Duration = Duration::from_secs(10);

/// One child as the monitor and its owner see it.
#[derive(Debug)]
pub(crate) struct ChildState {
    pub(crate) pid: u32,
    pub(crate) name: String,
    pub(crate) pidfd: OwnedFd,
    /// A fork server's child (the server's pid): its status comes from the server, not
    /// from `waitid`.
    relayed: Option<u32>,
    exit: Mutex<Option<ExitStatus>>,
    cv: Condvar,
}

impl ChildState {
    pub(crate) fn exit_status(&self) -> Option<ExitStatus> {
        *self.exit.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the status (first one wins); whether this call recorded it.
    fn complete(&self, status: ExitStatus) -> bool {
        let mut g = self.exit.lock().unwrap_or_else(|e| e.into_inner());
        if g.is_some() {
            return false;
        }
        *g = Some(status);
        drop(g);
        // (after unlocking: a waiter woken under the lock would only block on it again)
        self.cv.notify_all();
        true
    }

    /// Waits until the child's status is known or `deadline` passes.
    fn wait_exit(&self, deadline: Option<Instant>) -> Option<ExitStatus> {
        let mut g = self.exit.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(s) = *g {
                return Some(s);
            }
            match deadline {
                None => g = self.cv.wait(g).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return None;
                    }
                    g = self
                        .cv
                        .wait_timeout(g, d - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
    }

    /// Whether the process has ended (reaping it if it just did).
    pub(crate) fn has_exited(&self) -> bool {
        self.reap_now().is_some()
    }

    /// Whether the OS says the process has ended (its pidfd is readable).
    fn ended(&self) -> bool {
        os::pidfd_ended(self.pidfd.as_fd())
    }

    /// Polls the pidfd (yielding between polls) for up to [`JOIN_SPIN`]; whether the
    /// process has ended.
    fn spin_until_ended(&self, deadline: Option<Instant>) -> bool {
        let until = Instant::now() + procactor_transports::spin::budget(JOIN_SPIN);
        let until = deadline.map_or(until, |d| d.min(until));
        loop {
            if self.ended() {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            procactor_transports::spin::yield_now();
        }
    }

    /// Reaps the child if it has exited (whoever calls first: the monitor thread or a
    /// joiner that saw the exit itself, saving a cross-thread wake-up) and returns the
    /// status; `None` while it runs. A fork-server child that has ended waits (briefly)
    /// for its relayed status, so that an ended child is never reported running.
    pub(crate) fn reap_now(&self) -> Option<ExitStatus> {
        if let Some(server) = self.relayed {
            if let Some(s) = self.exit_status() {
                return Some(s);
            }
            if !self.ended() {
                return None;
            }
            if let Some(s) = self.reaped_by_server() {
                return Some(s);
            }
            return self.settle_relayed(server, Some(Instant::now() + RELAY_SETTLE));
        }
        let reaped = {
            let mut g = self.exit.lock().unwrap_or_else(|e| e.into_inner());
            if g.is_some() {
                return *g;
            }
            let status = match os::pidfd_try_reap(self.pidfd.as_fd()) {
                Ok(Some(ExitInfo::Code(c))) => ExitStatus::Code(c),
                Ok(Some(ExitInfo::Signal(s))) => ExitStatus::Signal(s),
                Ok(None) => return None,
                // reaped by someone else (a foreign waitpid(-1)): the status is lost
                Err(_) => ExitStatus::Code(-1),
            };
            *g = Some(status);
            status
        };
        self.cv.notify_all();
        // (outside the status lock: the monitor's locks come after it, never before)
        retire(None, self, reaped);
        Some(reaped)
    }

    /// For a fork-server child: its status read from its pidfd, if the server has reaped
    /// it (and the kernel tells: Linux 6.15 and later), recorded here first-wins. (One
    /// call whatever the child's state: a running or unreaped child simply has no status
    /// yet, so no separate "has it ended" poll is needed first.) The
    /// status the server relays later is the same one; the relay takes the child out of
    /// the monitor ([`relayed_exit`]).
    fn reaped_by_server(&self) -> Option<ExitStatus> {
        let status = match os::pidfd_reaped_status(self.pidfd.as_fd()) {
            Ok(Some(ExitInfo::Code(c))) => ExitStatus::Code(c),
            Ok(Some(ExitInfo::Signal(s))) => ExitStatus::Signal(s),
            _ => return None,
        };
        self.complete(status);
        self.exit_status()
    }

    /// For a fork-server child: polls (yielding) for up to [`JOIN_SPIN`] until the server
    /// has reaped it and its pidfd gives the status. On an idle VM this saves two
    /// wake-ups one after the other (the relay thread's, then this thread's) at the end
    /// of every short child.
    fn spin_until_reaped_by_server(&self, deadline: Option<Instant>) -> Option<ExitStatus> {
        let until = Instant::now() + procactor_transports::spin::budget(JOIN_SPIN);
        let until = deadline.map_or(until, |d| d.min(until));
        loop {
            if let Some(s) = self.exit_status() {
                return Some(s);
            }
            if let Some(s) = self.reaped_by_server() {
                return Some(s);
            }
            if Instant::now() >= until {
                return None;
            }
            procactor_transports::spin::yield_now();
        }
    }

    /// For a fork-server child: waits for the relayed status until `deadline`; if its
    /// server has died, the status is lost with it and the child, once ended, is
    /// reported killed (it died of the parent-death signal).
    fn settle_relayed(&self, server: u32, deadline: Option<Instant>) -> Option<ExitStatus> {
        loop {
            let step = Instant::now() + RELAY_CHECK;
            let until = deadline.map_or(step, |d| d.min(step));
            if let Some(s) = self.wait_exit(Some(until)) {
                return Some(s);
            }
            if let Some(s) = self.reaped_by_server() {
                return Some(s);
            }
            if server_is_dead(server) && self.ended() {
                relayed_exit(server, self.pid, ExitStatus::Signal(os::SIGKILL));
                return self.exit_status();
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return None;
            }
        }
    }

    /// Waits until the child has exited or `deadline` passes, reaping it from this
    /// thread when it sees the exit first.
    pub(crate) fn wait_exit_direct(&self, deadline: Option<Instant>) -> Option<ExitStatus> {
        if let Some(server) = self.relayed {
            // (not ours to reap: its status comes from its pidfd once the server has
            // reaped it, or else from the relay thread)
            if let Some(s) = self.spin_until_reaped_by_server(deadline) {
                return Some(s);
            }
            return self.settle_relayed(server, deadline);
        }
        loop {
            if let Some(s) = self.exit_status() {
                return Some(s);
            }
            if !self.spin_until_ended(deadline) {
                match os::poll_readable(&[self.pidfd.as_fd()], deadline) {
                    Ok(r) if r[0] => {}
                    Ok(_) => return None, // deadline passed
                    Err(_) => return self.wait_exit(deadline),
                }
            }
            if let Some(s) = self.reap_now() {
                return Some(s);
            }
        }
    }
}

/// An exit, as an [`ExitWatcher`] reports it: the process has ended and its status is
/// known (the owner reads it from its handle, at once: a join does not wait).
#[derive(Debug, Clone)]
pub(crate) struct ExitEvent {
    pub(crate) pid: u32,
}

/// The children being watched, by (server pid or 0 for our own, pid), and the fork
/// servers known dead (one lock, so that a registration and a server's death cannot
/// miss each other).
#[derive(Default)]
struct Children {
    map: HashMap<(u32, u32), Arc<ChildState>>,
    dead_servers: HashSet<u32>,
}

struct Monitor {
    poller: Poller,
    children: Mutex<Children>,
    live: Mutex<Vec<Weak<ChildState>>>,
    /// Statuses a fork server relayed before their child was registered here, by
    /// (server, child) pid.
    early: Mutex<HashMap<(u32, u32), ExitStatus>>,
    thread: OnceCell<()>,
}

/// This process's monitor. Not a `Lazy`: a child made by `fork()` inherits its parent's
/// (with the parent's epoll set and without its thread) and must start afresh.
static MONITOR: Mutex<Option<Arc<Monitor>>> = Mutex::new(None);

fn monitor() -> std::io::Result<Arc<Monitor>> {
    let mut slot = MONITOR.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(m) = &*slot {
        return Ok(m.clone());
    }
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| at_fork_in_child(forget_in_fork_child));
    let m = Arc::new(Monitor {
        poller: Poller::new()?,
        children: Mutex::new(Children::default()),
        live: Mutex::new(Vec::new()),
        early: Mutex::new(HashMap::new()),
        thread: OnceCell::new(),
    });
    *slot = Some(m.clone());
    Ok(m)
}

/// In a child made by `fork()`: forgets the parent's monitor (its epoll set is shared
/// with the parent and its thread does not exist here) without running its destructors.
/// The process is single-threaded, so no lock of the old monitor is held. Registered
/// with [`at_fork_in_child`] before the first monitor is made.
fn forget_in_fork_child() {
    let old = MONITOR.lock().unwrap_or_else(|e| e.into_inner()).take();
    std::mem::forget(old);
}

impl Monitor {
    /// Starts the thread that reaps children and feeds the exit stream (once).
    fn ensure_thread(self: &Arc<Self>) -> std::io::Result<()> {
        self.thread
            .get_or_try_init(|| {
                let m = self.clone();
                thread_builder("procactor-monitor")
                    .spawn(move || m.run())
                    .map(|_| ())
            })
            .map(|_| ())
    }

    fn run(&self) {
        let mut ready = Vec::new();
        loop {
            ready.clear();
            if self.poller.wait(&mut ready, None).is_err() {
                std::thread::sleep(std::time::Duration::from_millis(10));
                continue;
            }
            for &token in &ready {
                let pid = token as u32;
                let child = self.lock_children().map.get(&(0, pid)).cloned();
                match child {
                    // (reaping takes it out of the monitor)
                    Some(child) => drop(child.reap_now()),
                    // an entry already taken out: its registration must not linger
                    None => tracing::trace!(pid, "exit of a child no longer watched"),
                }
            }
        }
    }

    fn lock_children(&self) -> std::sync::MutexGuard<'_, Children> {
        self.children.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Takes `child` (whose status was just recorded) out of the monitor, if this very
/// entry is still there: exactly once, whoever calls first.
fn retire(server: Option<u32>, child: &ChildState, status: ExitStatus) {
    let Ok(m) = monitor() else { return };
    let key = (server.unwrap_or(0), child.pid);
    let taken = {
        let mut c = m.lock_children();
        match c.map.get(&key) {
            Some(e) if std::ptr::eq(Arc::as_ptr(e), child) => c.map.remove(&key),
            _ => None,
        }
    };
    if taken.is_none() {
        return;
    }
    if server.is_none() {
        let _ = m.poller.delete(child.pidfd.as_fd());
    }
    tracing::debug!(pid = child.pid, name = %child.name, ?status, "child exited");
}

/// How a child was started, as far as watching it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Watch {
    /// Our own child: reaped by the monitor thread (started now if need be).
    Reap,
    /// Our own child started by `fork()`: reaped by its handle; no thread is started
    /// for it (the thread, once running for other reasons, reaps it too).
    ReapWithoutThread,
    /// A child of the fork server with this pid: its status is relayed (see
    /// [`relayed_exit`]).
    Relayed(u32),
}

/// Registers a freshly started child with the monitor.
pub(crate) fn register(
    pid: u32,
    name: String,
    pidfd: OwnedFd,
    watch: Watch,
) -> std::io::Result<Arc<ChildState>> {
    let m = monitor()?;
    if watch == Watch::Reap {
        m.ensure_thread()?;
    }
    let relayed = match watch {
        Watch::Relayed(server) => Some(server),
        _ => None,
    };
    let state = Arc::new(ChildState {
        pid,
        name,
        pidfd,
        relayed,
        exit: Mutex::new(None),
        cv: Condvar::new(),
    });
    // (an entry with this pid still there is an ended child whose status was read from
    // its pidfd and whose relay has not come yet, its pid reused by now: replaced; its
    // owner learnt of its end from its pidfd)
    let server_dead = {
        let mut c = m.lock_children();
        c.map.insert((relayed.unwrap_or(0), pid), state.clone());
        relayed.is_some_and(|s| c.dead_servers.contains(&s))
    };
    {
        let mut live = m.live.lock().unwrap_or_else(|e| e.into_inner());
        live.retain(|w| w.upgrade().is_some_and(|c| c.exit_status().is_none()));
        live.push(Arc::downgrade(&state));
    }
    if let Some(server) = relayed {
        // The server may have relayed the exit before we got here. (An entry left by a
        // start that failed after the fork may name a pid now reused: it counts only if
        // this process, which the pidfd names exactly, has really ended.)
        let early = m
            .early
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(server, pid));
        if let Some(status) = early {
            if state.ended() {
                relayed_exit(server, pid, status);
            }
        }
        if server_dead && state.exit_status().is_none() {
            // its server died between forking it and now: it dies of the parent-death
            // signal, and nobody will relay that
            let _ = os::poll_readable(&[state.pidfd.as_fd()], Some(Instant::now() + ORPHAN_WAIT));
            relayed_exit(server, pid, ExitStatus::Signal(os::SIGKILL));
        }
        return Ok(state);
    }
    if let Err(e) = m.poller.add(state.pidfd.as_fd(), u64::from(pid)) {
        m.lock_children().map.remove(&(0, pid));
        return Err(e);
    }
    Ok(state)
}

/// Fork server `server` reports that its child `pid` ended with `status`.
pub(crate) fn relayed_exit(server: u32, pid: u32, status: ExitStatus) {
    let Ok(m) = monitor() else { return };
    let child = m.lock_children().map.get(&(server, pid)).cloned();
    match child {
        // A status for a process that has not ended is stale: its pid was reused by a
        // newer child of the same server after a joiner read the old one's status from
        // its pidfd and before this relay came.
        Some(child) if child.exit_status().is_none() && !child.ended() => {
            tracing::debug!(server, pid, "stale relayed status dropped");
        }
        Some(child) => {
            // (its status may have been read from its pidfd already: the same status;
            // the child is taken out of the monitor here either way)
            child.complete(status);
            retire(Some(server), &child, child.exit_status().unwrap_or(status));
        }
        None => {
            m.early
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert((server, pid), status);
        }
    }
}

/// A fork server (or zygote) with pid `server` has just started: a dead server's pid
/// reused by it must not mark its children orphans (a registration would wait
/// [`ORPHAN_WAIT`] for each, and report it killed). Called before its first child is
/// registered.
pub(crate) fn server_started(server: u32) {
    let Ok(m) = monitor() else { return };
    m.lock_children().dead_servers.remove(&server);
}

fn server_is_dead(server: u32) -> bool {
    monitor().is_ok_and(|m| m.lock_children().dead_servers.contains(&server))
}

/// Fork server `server` is gone (its status stream ended): every child of it still
/// registered, and every one registered from now on, is reported killed once its pidfd
/// says it has ended (within [`ORPHAN_WAIT`]).
pub(crate) fn server_died(server: u32) {
    let Ok(m) = monitor() else { return };
    let orphans: Vec<Arc<ChildState>> = {
        let mut c = m.lock_children();
        c.dead_servers.insert(server);
        c.map
            .iter()
            .filter(|(k, _)| k.0 == server)
            .map(|(_, v)| v.clone())
            .collect()
    };
    m.early
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|k, _| k.0 != server);
    let until = Instant::now() + ORPHAN_WAIT;
    for child in orphans {
        let _ = os::poll_readable(&[child.pidfd.as_fd()], Some(until));
        relayed_exit(server, child.pid, ExitStatus::Signal(os::SIGKILL));
    }
}

/// Children of this process that have not exited yet.
pub(crate) fn live_children() -> Vec<Arc<ChildState>> {
    let Ok(m) = monitor() else { return Vec::new() };
    let live = m.live.lock().unwrap_or_else(|e| e.into_inner());
    live.iter()
        .filter_map(Weak::upgrade)
        .filter(|c| !c.has_exited())
        .collect()
}

/// A thread that handles the exits of one owner's children (a supervisor's, a pool's)
/// until it is dropped: it waits on their pidfds itself (one epoll set per owner), so
/// that an exit reaches the owner straight from the kernel, with one wake-up, whoever
/// reaps the child (the monitor thread, or for a fork-server child the server, whose
/// status comes by its relay thread: two more wake-ups one after the other, which a
/// restart would wait for). The watcher then waits for the child's status before it
/// calls the owner, out of any lock of the owner's: the owner's join under its lock
/// returns at once. A fork-server child's status is read from its pidfd once the server
/// has reaped it (Linux 6.15+): the watcher keeps the ended child's pidfd in its epoll
/// set, watched for the hang-up that the reap brings, so it learns the status the moment
/// the kernel has it (no spinning, no wait for the relay, and other children's exits
/// are handled meanwhile); a look every [`STATUS_SLICE`] takes a relayed status, or
/// settles the children of a server that died, should no hang-up come. On older
/// kernels it waits for the relay as before. A server that is stopped (frozen) holds
/// up this thread only, which still quits when dropped. The owner reads the status
/// from the child's handle.
pub(crate) struct ExitWatcher {
    /// Dropped to stop the thread (its peer, in the epoll set, then reads end-of-file).
    quit: Option<OwnedFd>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Where an owner's children are watched: [`watch`](ExitRoute::watch) adds each one it
/// starts, and its [`ExitWatcher`] reports that child's exit, once.
#[derive(Clone)]
pub(crate) struct ExitRoute {
    watched: Arc<Watched>,
}

/// The epoll set of an owner's watcher, and the children in it, by the token each was
/// registered with (not by pid: a pid may be reused by a later child before the watcher
/// has handled the earlier one's exit).
struct Watched {
    poller: Poller,
    fds: Mutex<HashMap<u64, Arc<ChildState>>>,
    next: std::sync::atomic::AtomicU64,
}

/// The token of the watcher's quit socket in its epoll set (child tokens count up from
/// 0 and never get there).
const QUIT: u64 = u64::MAX;
/// How long a watcher waits for an ended child's status before it checks whether it
/// was told to quit (the status normally comes within microseconds; a stopped server
/// holds it back).
const STATUS_SLICE: Duration = Duration::from_millis(20);

impl ExitRoute {
    /// Watches `child` through its pidfd: the owner's watcher reports its exit once the
    /// OS says it has ended and its status is known (at once for a child that has ended
    /// already). (The owner ignores the exit of a pid it no longer has.)
    ///
    /// # Errors
    ///
    /// The epoll set refused it: the child's exit would go unnoticed, so the caller must
    /// not keep the child.
    pub(crate) fn watch(&self, child: Arc<ChildState>) -> std::io::Result<()> {
        let token = self
            .watched
            .next
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut fds = self.watched.lock_fds();
        self.watched.poller.add(child.pidfd.as_fd(), token)?;
        fds.insert(token, child);
        Ok(())
    }
}

impl Watched {
    fn lock_fds(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<ChildState>>> {
        self.fds.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ExitWatcher {
    /// A watcher thread, named `name`, that calls `on_exit` for each child watched
    /// through the returned [`ExitRoute`] once it has ended.
    pub(crate) fn start_routed(
        name: &str,
        mut on_exit: impl FnMut(ExitEvent) + Send + 'static,
    ) -> std::io::Result<(ExitWatcher, ExitRoute)> {
        let watched = Arc::new(Watched {
            poller: Poller::new()?,
            fds: Mutex::new(HashMap::new()),
            next: std::sync::atomic::AtomicU64::new(0),
        });
        let (quit, quit_theirs) = procactor_transports::fdpass::socketpair()?;
        watched.poller.add(quit_theirs.as_fd(), QUIT)?;
        let w = watched.clone();
        let thread = thread_builder(name).spawn(move || {
            let mut ready = Vec::new();
            // ended fork-server children whose status is not known yet, by token, and
            // whether their pidfd has hung up (been reaped) without giving a status
            let mut awaiting: HashMap<u64, (Arc<ChildState>, bool)> = HashMap::new();
            let mut ended = Vec::new();
            loop {
                ready.clear();
                let timeout = (!awaiting.is_empty()).then_some(STATUS_SLICE);
                if w.poller.wait(&mut ready, timeout).is_err() {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
                for &token in &ready {
                    if token == QUIT {
                        return;
                    }
                    if let Some((child, hung_up)) = awaiting.get_mut(&token) {
                        // reaped: looked at below; if it still has no status then, its
                        // hang-up (level-triggered) must not be reported again and again
                        if child.exit_status().is_none() && child.reaped_by_server().is_none() {
                            let _ = w.poller.delete(child.pidfd.as_fd());
                            *hung_up = true;
                        }
                        continue;
                    }
                    let taken = w.lock_fds().remove(&token);
                    let Some(child) = taken else { continue };
                    if child.relayed.is_some()
                        && child.exit_status().is_none()
                        && matches!(os::pidfd_reaped_status(child.pidfd.as_fd()), Ok(None))
                        && w.poller.watch_hangup(child.pidfd.as_fd(), token).is_ok()
                    {
                        // ended, not reaped by its server yet: the reap hangs the pidfd
                        // up, and then the kernel has its status (no wait for the
                        // server's relay, no spinning, and the other children's exits
                        // are not held up meanwhile)
                        awaiting.insert(token, (child, false));
                        continue;
                    }
                    let _ = w.poller.delete(child.pidfd.as_fd());
                    // its status first (a fork-server child's comes once the server
                    // has reaped it), so that the owner's join does not wait for it
                    // under the owner's lock; a slice at a time, to see a quit
                    while child
                        .wait_exit_direct(Some(Instant::now() + STATUS_SLICE))
                        .is_none()
                    {
                        let quit = os::poll_readable(&[quit_theirs.as_fd()], Some(Instant::now()));
                        if quit.map_or(true, |q| q[0]) {
                            return;
                        }
                    }
                    on_exit(ExitEvent { pid: child.pid });
                }
                // the awaited ones whose status is known now: reaped (from the pidfd),
                // relayed, or settled because their server died (without waiting)
                awaiting.retain(|_, (child, hung_up)| {
                    if child.wait_exit_direct(Some(Instant::now())).is_none() {
                        return true;
                    }
                    if !*hung_up {
                        let _ = w.poller.delete(child.pidfd.as_fd());
                    }
                    ended.push(child.pid);
                    false
                });
                for pid in ended.drain(..) {
                    on_exit(ExitEvent { pid });
                }
            }
        })?;
        Ok((
            ExitWatcher {
                quit: Some(quit),
                thread: Some(thread),
            },
            ExitRoute { watched },
        ))
    }
}

impl Drop for ExitWatcher {
    fn drop(&mut self) {
        self.quit.take();
        if let Some(t) = self.thread.take() {
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sleeper(secs: &str) -> (u32, OwnedFd, std::process::Child) {
        let c = std::process::Command::new("sleep")
            .arg(secs)
            .spawn()
            .unwrap();
        let pid = c.id();
        (pid, os::pidfd_of(pid).unwrap(), c)
    }

    #[test]
    fn a_watcher_sees_the_exits_of_its_children_only() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let (w, route) = ExitWatcher::start_routed("test-routed", move |ev| {
            let _ = tx.send(ev.pid);
        })
        .unwrap();
        let (mine, fd1, mut c1) = sleeper("30");
        let (other, fd2, mut c2) = sleeper("30");
        let s1 = register(mine, "mine".into(), fd1, Watch::Reap).unwrap();
        let s2 = register(other, "other".into(), fd2, Watch::Reap).unwrap();
        route.watch(s1.clone()).unwrap();
        // (the other one is not watched by this owner)
        let _ = c2.kill();
        let _ = s2.wait_exit(Some(Instant::now() + Duration::from_secs(10)));
        let _ = c1.kill();
        let got = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(got, mine);
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
        assert!(
            route.watched.lock_fds().is_empty(),
            "a reported child is still watched"
        );
        // a child that ended before it was watched: reported at once
        let (late, fd3, mut c3) = sleeper("0");
        let s3 = register(late, "late".into(), fd3, Watch::Reap).unwrap();
        let _ = s3.wait_exit(Some(Instant::now() + Duration::from_secs(10)));
        route.watch(s3.clone()).unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), late);
        let _ = (c1.wait(), c2.wait(), c3.wait());
        // a dropped watcher's thread ends (the drop joins it)
        drop(w);
        assert!(route.watch(s1.clone()).is_ok());
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
    }

    #[test]
    fn a_watcher_reports_a_fork_server_child_once_its_status_is_known() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let (_w, route) = ExitWatcher::start_routed("test-relayed", move |ev| {
            let _ = tx.send(ev.pid);
        })
        .unwrap();
        // (a pid no real process has, standing in for a live server that has not yet
        // reaped its child: the status comes only by relay)
        let server = u32::MAX - 9;
        let (pid, pidfd, mut c) = sleeper("30");
        let st = register(pid, "relayed".into(), pidfd, Watch::Relayed(server)).unwrap();
        route.watch(st.clone()).unwrap();
        let _ = c.kill();
        // ended (a zombie nobody reaps yet), but no status: not reported
        let _ = os::poll_readable(&[st.pidfd.as_fd()], None);
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
        relayed_exit(server, pid, ExitStatus::Signal(9));
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), pid);
        // (so the owner's join, under its lock, does not wait)
        assert_eq!(st.exit_status(), Some(ExitStatus::Signal(9)));
        let _ = c.wait();
    }

    /// A fork-server child that its server has reaped is reported with the status the
    /// kernel keeps (`PIDFD_GET_INFO`, Linux 6.15+), without the relay: the watcher
    /// learns of the reap from the pidfd's hang-up.
    #[test]
    fn a_watcher_reports_a_reaped_fork_server_child_without_the_relay() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let (_w, route) = ExitWatcher::start_routed("test-reaped", move |ev| {
            let _ = tx.send(ev.pid);
        })
        .unwrap();
        // (a pid no real process has, standing in for a live server that never relays;
        // this test process plays the server's part of reaping)
        let server = u32::MAX - 11;
        let (pid, pidfd, mut c) = sleeper("30");
        if matches!(
            os::pidfd_reaped_status(pidfd.as_fd()),
            Err(e) if e.kind() == std::io::ErrorKind::Unsupported
        ) {
            let _ = c.kill();
            let _ = c.wait();
            eprintln!("skipped: this kernel keeps no status for pidfds (before 6.15)");
            return;
        }
        let st = register(pid, "reaped".into(), pidfd, Watch::Relayed(server)).unwrap();
        route.watch(st.clone()).unwrap();
        let _ = c.kill();
        let _ = os::poll_readable(&[st.pidfd.as_fd()], None);
        // ended, not reaped: no status anywhere yet, nothing reported
        assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());
        let _ = c.wait();
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), pid);
        assert_eq!(st.exit_status(), Some(ExitStatus::Signal(9)));
        // the relay, coming late, changes nothing (first status wins) and is not
        // reported again
        relayed_exit(server, pid, ExitStatus::Signal(9));
        assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());
    }

    #[test]
    fn a_new_server_reusing_a_dead_servers_pid_is_not_taken_for_dead() {
        // (a pid no real process has: only this test uses it)
        let server = u32::MAX - 7;
        server_died(server);
        assert!(server_is_dead(server));
        server_started(server);
        assert!(!server_is_dead(server));
        // a live child of the new server: registered at once, running (were the server
        // still marked dead, the registration would wait ORPHAN_WAIT for it to die and
        // report it killed)
        let (pid, pidfd, mut c) = sleeper("30");
        let t = Instant::now();
        let st = register(pid, "reused".into(), pidfd, Watch::Relayed(server)).unwrap();
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        assert_eq!(st.exit_status(), None);
        let _ = c.kill();
        let _ = c.wait();
        relayed_exit(server, pid, ExitStatus::Signal(9));
        assert_eq!(st.exit_status(), Some(ExitStatus::Signal(9)));
    }

    #[test]
    fn a_relayed_status_waits_for_its_child_and_a_stale_one_is_dropped() {
        // a live process with a status "relayed" before it was registered: stale (a pid
        // reused after a failed start), so it must not be taken as this child's exit
        let (pid, pidfd, mut c) = sleeper("30");
        relayed_exit(1, pid, ExitStatus::Code(7));
        let st = register(pid, "live".into(), pidfd, Watch::Relayed(1)).unwrap();
        assert_eq!(st.exit_status(), None);
        // a status from another server is not this child's either
        relayed_exit(2, pid, ExitStatus::Code(8));
        assert_eq!(st.exit_status(), None);
        // nor one for its pid while it runs (an older child's, the pid reused since)
        relayed_exit(1, pid, ExitStatus::Code(5));
        assert_eq!(st.exit_status(), None);
        assert!(monitor()
            .unwrap()
            .lock_children()
            .map
            .contains_key(&(1, pid)));
        let _ = c.kill();
        let _ = c.wait();
        relayed_exit(1, pid, ExitStatus::Signal(9));
        assert_eq!(
            st.wait_exit_direct(Some(Instant::now() + Duration::from_secs(5))),
            Some(ExitStatus::Signal(9))
        );
        let m = monitor().unwrap();
        assert!(
            !m.lock_children().map.contains_key(&(1, pid)),
            "still watched"
        );

        // a process whose parent (standing in for a fork server) reaps it: its status
        // comes from its pidfd without the relay; the relay, when it comes, takes the
        // entry out of the monitor
        let (mut sh, pid) = procactor_transports::testing::shell_and_its_child(
            "sleep 0.1 & echo $!; wait; sleep 30",
        );
        let server = sh.id();
        let st = register(
            pid,
            "grandchild".into(),
            os::pidfd_of(pid).unwrap(),
            Watch::Relayed(server),
        )
        .unwrap();
        let got = st.wait_exit_direct(Some(Instant::now() + Duration::from_secs(10)));
        if os::pidfd_reaped_status(st.pidfd.as_fd()).is_ok() {
            assert_eq!(got, Some(ExitStatus::Code(0)));
            assert!(m.lock_children().map.contains_key(&(server, pid)));
            relayed_exit(server, pid, ExitStatus::Code(0));
        } else {
            // (a kernel before 6.15: only the relay tells)
            assert_eq!(got, None);
            relayed_exit(server, pid, ExitStatus::Code(0));
            assert_eq!(st.exit_status(), Some(ExitStatus::Code(0)));
        }
        assert!(
            !m.lock_children().map.contains_key(&(server, pid)),
            "still watched"
        );
        let _ = sh.kill();
        let _ = sh.wait();

        // an ended process whose status came first: taken at registration
        let (pid, pidfd, mut c) = sleeper("0");
        let _ = os::poll_readable(&[pidfd.as_fd()], None); // ended (a zombie of ours)
        relayed_exit(3, pid, ExitStatus::Code(0));
        let st = register(pid, "early".into(), pidfd, Watch::Relayed(3)).unwrap();
        assert_eq!(st.exit_status(), Some(ExitStatus::Code(0)));
        let _ = c.wait();
    }
}
