//! Processes: Python's `Process`, with typed function targets and results.
//!
//! This directory is the *process* layer: the [`Process`] handle (this file), the
//! [`runtime`] (`init`, start methods), and private files that form a DAG, each using
//! only those before it: `base` (threads, stream flushing, after-fork hooks), `identity`,
//! `monitor` (the exit monitor), `child` (a child's entry), `forkserver`, then `runtime`.
//! It builds on the channels layer only.

mod asynch;
mod base;
mod child;
pub(crate) mod forkserver;
mod identity;
pub(crate) mod monitor;
pub mod runtime;

use crate::codec;
use crate::error::{Error, JoinError, SpawnError};
use crate::monitor::{ChildState, Watch};
use crate::runtime::{Bootstrap, EntryFn, StartMethod};
use crate::Message;
use procactor_transports::deadline::Deadline;
use procactor_transports::frame::{self, FrameError, FrameReader, Wait};
use procactor_transports::target::{self, TargetRef};
use procactor_transports::{fdpass, os, AsFd, BorrowedFd, OwnedFd};
use serde::Serialize;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

// How a process ends lives in the leaf module `status`; re-exported here so that
// `procactor_core::process::ExitStatus` keeps working.
pub use crate::status::ExitStatus;
pub use procactor_transports::target::Target;

/// A process that runs `target(args)` in a child process. Build it with
/// [`Process::new`], start it with [`ProcessBuilder::start`].
///
/// The target is a function of 0 to 8 arguments ([`Target`]: a function item, a
/// closure that captures nothing, or a function pointer); the child runs the same
/// binary, so the function is found by its address in the image. The arguments and the
/// result cross the process boundary as CBOR ([`Message`]); handles inside the
/// arguments (a Pipe end, a Queue, a Lock, …) travel as file descriptors.
///
/// **At drop**, a non-daemon child still running is joined (Python joins non-daemon
/// children at interpreter exit), for at most [`PROCESS_DROP_JOIN_LIMIT`], and a daemon
/// child is terminated (`SIGTERM`, then `SIGKILL` if it has not exited after a second);
/// while the dropping thread panics nothing is waited for (see the `Drop` impl: every
/// drop is bounded). Every child also gets `SIGKILL`
/// from the kernel when its parent process dies (`PR_SET_PDEATHSIG`), so a crashed or
/// killed parent never leaves orphans behind. (The kernel ties that signal to the
/// forking *thread*; children started from threads other than the main thread are
/// therefore forked by one long-lived spawner thread, so a child keeps running after the
/// thread that started it has finished.)
///
/// A child's standard input is `/dev/null` (as in Python); its standard output and error
/// are the parent's.
///
/// # Examples
///
/// ```
/// use procactor_core::{Process, ExitStatus};
///
/// fn square(x: u64) -> u64 { x * x }
///
/// fn main() {
///     procactor_core::init();
///     let mut p = Process::new(square, 7).name("sq").start().unwrap();
///     assert_eq!(p.name(), "sq");
///     assert_eq!(p.join().unwrap(), ExitStatus::Code(0));
///     assert_eq!(p.result().unwrap(), 49);
/// }
/// ```
pub struct Process<R = ()> {
    state: Arc<ChildState>,
    control: Option<OwnedFd>,
    reader: FrameReader,
    outcome: Option<Result<Vec<u8>, JoinError>>,
    outcome_fds: Vec<OwnedFd>,
    result_taken: bool,
    daemon: bool,
    _r: PhantomData<fn() -> R>,
}

impl<R> std::fmt::Debug for Process<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("name", &self.state.name)
            .field("pid", &self.state.pid)
            .field("daemon", &self.daemon)
            .field("exitcode", &self.state.exit_status())
            .finish()
    }
}

/// A process not yet started: set its name, daemon flag and start method, then
/// [`start`](ProcessBuilder::start) it.
pub struct ProcessBuilder<A, R> {
    entry: TargetRef,
    target: Result<TargetRef, target::NotATarget>,
    args: A,
    name: Option<String>,
    daemon: bool,
    method: Option<StartMethod>,
    exe: Option<std::path::PathBuf>,
    _r: PhantomData<fn() -> R>,
}

impl<A, R> std::fmt::Debug for ProcessBuilder<A, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessBuilder")
            .field("target", &self.target)
            .field("name", &self.name)
            .field("daemon", &self.daemon)
            .finish()
    }
}

impl Process {
    /// A process that will run `target` with `args`. Nothing runs until
    /// [`start`](ProcessBuilder::start).
    ///
    /// `target` takes 0 to 8 arguments, given as one value (Python's `args=(…)`): `()`
    /// for none, the value itself for one, a tuple for more. A one-argument function
    /// whose parameter is a tuple gets the tuple whole. A closure that captures variables
    /// is refused at build time (see [`Target`]); pass the values as arguments.
    ///
    /// # Examples
    ///
    /// ```
    /// use procactor_core::Process;
    ///
    /// fn hello() -> String { "hello".into() }
    /// fn square(x: u64) -> u64 { x * x }
    /// fn mul(a: u64, b: u64) -> u64 { a * b }
    ///
    /// fn main() {
    ///     procactor_core::init();
    ///     assert_eq!(Process::new(hello, ()).start().unwrap().result().unwrap(), "hello");
    ///     assert_eq!(Process::new(square, 7).start().unwrap().result().unwrap(), 49);
    ///     assert_eq!(Process::new(mul, (6, 7)).start().unwrap().result().unwrap(), 42);
    ///     let add = |a: u64, b: u64, c: u64| a + b + c;
    ///     assert_eq!(Process::new(add, (1, 2, 3)).start().unwrap().result().unwrap(), 6);
    /// }
    /// ```
    #[allow(clippy::new_ret_no_self)]
    pub fn new<A, S, F>(target: F, args: A) -> ProcessBuilder<A, F::Output>
    where
        A: Message,
        S: 'static,
        F: Target<A, S>,
        F::Output: Message,
    {
        let (entry, target) = describe::<A, S, F>(target);
        ProcessBuilder {
            entry,
            target,
            args,
            name: None,
            daemon: false,
            method: None,
            exe: None,
            _r: PhantomData,
        }
    }
}

impl<A: Message, R: Message> ProcessBuilder<A, R> {
    /// The process's name. The default is Python's: `"Process-N"` for the N-th child
    /// started by the root process, and `"Process-N:M"` for the M-th child started by
    /// a child whose number is `Process-N` (whatever name that child was given).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Daemon children are terminated when their handle is dropped (at parent exit at
    /// the latest); non-daemon children are joined then.
    pub fn daemon(mut self, daemon: bool) -> Self {
        self.daemon = daemon;
        self
    }

    /// Overrides the default start method for this process.
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// Testing aid: execute `path` instead of the current binary. A child running
    /// another binary image refuses its target (function addresses would be
    /// meaningless there); this exists so that the refusal can be tested.
    #[doc(hidden)]
    pub fn executable(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.exe = Some(path.into());
        self
    }

    /// Starts the child.
    ///
    /// # Errors
    ///
    /// [`SpawnError::NotInitialized`] without `procactor::init()`,
    /// [`SpawnError::Unsupported`] for a start method that is not available,
    /// [`SpawnError::Encode`] when the arguments cannot be encoded, and
    /// [`SpawnError::Io`] when the OS refuses.
    pub fn start(self) -> Result<Process<R>, SpawnError> {
        let target = self.target.map_err(|e| SpawnError::NotATarget(e.0))?;
        start_described(
            self.entry,
            target,
            &self.args,
            self.name,
            self.daemon,
            self.method,
            self.exe,
            None,
        )
    }
}

/// Most bytes written to a child's control socket before the child runs (well under
/// the socket's buffer, so the writes cannot block on a reader that does not exist yet).
const PREWRITE_MAX: usize = 32 << 10;

/// The child's entry for target `F` and the reference to `target` it resolves.
fn describe<A, S, F>(target: F) -> (TargetRef, Result<TargetRef, target::NotATarget>)
where
    A: Message,
    S: 'static,
    F: Target<A, S>,
    F::Output: Message,
{
    let entry: EntryFn = runtime::entry::<A, S, F>;
    (target::describe(entry), target::describe_target(target))
}

/// Starts `target` in a child with arguments encoded from `args`, which must encode
/// exactly as an `A` does (a borrowed view of an `A`, so that a supervisor can start the
/// same actor again and again without giving it away). With `zygote`, the child is
/// forked by that zygote (the method is then the fork server's protocol, whatever
/// `method` says).
pub(crate) fn start_encoded_via<A, S, F, B>(
    target: F,
    value: &B,
    name: Option<String>,
    daemon: bool,
    method: Option<StartMethod>,
    exe: Option<std::path::PathBuf>,
    zygote: Option<&crate::forkserver::Zygote>,
) -> Result<Process<F::Output>, SpawnError>
where
    A: Message,
    S: 'static,
    F: Target<A, S>,
    F::Output: Message,
    B: Serialize + ?Sized,
{
    let (entry, target) = describe::<A, S, F>(target);
    let target = target.map_err(|e| SpawnError::NotATarget(e.0))?;
    start_described(entry, target, value, name, daemon, method, exe, zygote)
}

/// A state of [`start_described`] that the code before it rules out: seen only if
/// procactor itself is wrong (never because of a user's input or a peer process), and
/// then reported as a [`SpawnError::Io`] saying which, rather than a panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Impossible {
    /// `Spawn`, `Fork` or a zygote's start without the child's end of a new control
    /// socket (only a fork-server child waiting already comes without one).
    NoControlSocket,
    /// `ForkServer` with neither a waiting fork-server child nor a zygote to ask.
    NoForkServerChild,
}

impl std::fmt::Display for Impossible {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self {
            Impossible::NoControlSocket => "no control socket to pass to the child",
            Impossible::NoForkServerChild => "no fork-server child and no zygote to start from",
        };
        write!(f, "internal error in procactor's process start: {what}")
    }
}

impl std::error::Error for Impossible {}

impl From<Impossible> for SpawnError {
    fn from(e: Impossible) -> SpawnError {
        SpawnError::Io(std::io::Error::other(e))
    }
}

/// As [`start_encoded_via`], with the entry and the target already described.
#[allow(clippy::too_many_arguments)]
fn start_described<R: Message, B: Serialize + ?Sized>(
    entry: TargetRef,
    tgt: TargetRef,
    value: &B,
    name: Option<String>,
    daemon: bool,
    method: Option<StartMethod>,
    exe: Option<std::path::PathBuf>,
    zygote: Option<&crate::forkserver::Zygote>,
) -> Result<Process<R>, SpawnError> {
    runtime::ensure_initialized()?;
    let method = match zygote {
        Some(_) => StartMethod::ForkServer,
        None => method.unwrap_or_else(runtime::start_method),
    };
    if method != StartMethod::Fork {
        // (Fork's check, the thread count, is made by the fork itself)
        method.check_available()?;
    }
    if exe.is_some() && method != StartMethod::Spawn {
        return Err(SpawnError::Unsupported {
            method: method.name(),
            why: "another executable can only be spawned".into(),
        });
    }
    // Encode first: a bad argument fails before any process exists.
    let mut args = Vec::new();
    let mut arg_fds = Vec::new();
    // (until the child has the bytes, handles inside may need their side effects
    // undone: dropping `unsent` on any failure below does that)
    let unsent = codec::encode_for_sending(value, &mut args, Some(&mut arg_fds))?;
    let ids = runtime::next_child_ids();
    let name = name.unwrap_or_else(|| runtime::default_name(&ids));
    let me = runtime::current_process();
    let fingerprint = runtime::fingerprint()?;
    // A fork-server child (not a zygote's) runs already and waits for its bootstrap,
    // with the token it was given: mostly the spare forked after the previous start (see
    // `forkserver::start_waiting`).
    let waiting = match (method, zygote) {
        (StartMethod::ForkServer, None) => Some(crate::forkserver::start_waiting()?),
        _ => None,
    };
    let token = waiting
        .as_ref()
        .map_or_else(runtime::random_token, |w| w.token);
    let boot = Bootstrap {
        token,
        fingerprint,
        entry: entry.into_parts(),
        target: tgt.into_parts(),
        name: name.clone(),
        ids,
        parent: me.clone(),
    };
    // (a forked child takes the bootstrap itself from its copy of our memory)
    let mut boot_bytes = Vec::new();
    if method != StartMethod::Fork {
        codec::encode(&boot, &mut boot_bytes, None)?;
    }

    let server_child = waiting.is_some();
    let (ours, theirs, waiting) = match waiting {
        Some(w) => (w.control, None, Some((w.child, w.server))),
        None => {
            let (ours, theirs) = fdpass::socketpair()?;
            (ours, Some(theirs), None)
        }
    };
    let theirs = || theirs.ok_or_else(|| SpawnError::from(Impossible::NoControlSocket));
    // whether the child already has its bootstrap and arguments: a forked child has them
    // in memory; a zygote's child finds them waiting in its control socket when they
    // are small and carry no handle whose side effects would need undoing if the child
    // died before reading them (see `codec::Unsent`); a fork-server child waiting
    // already gets them at once, below
    let mut delivered = false;
    if method == StartMethod::ForkServer
        && waiting.is_none()
        && unsent.is_empty()
        && boot_bytes.len() + args.len() <= PREWRITE_MAX
    {
        let borrowed: Vec<BorrowedFd<'_>> = arg_fds.iter().map(|f| f.as_fd()).collect();
        frame::write_frame(ours.as_fd(), &boot_bytes, &[])?;
        frame::write_frame(ours.as_fd(), &args, &borrowed)?;
        delivered = true;
    }
    let (child, watch) = match method {
        StartMethod::Spawn => {
            let theirs = theirs()?;
            let env = format!("{}:{token}:{}", os::CHILD_CONTROL_FD, me.pid());
            let child = runtime::on_spawner_thread(move || {
                let env = [(runtime::CHILD_ENV, env.as_str())];
                match &exe {
                    None => os::spawn_self(theirs, &env),
                    Some(exe) => os::spawn_exe(exe, theirs, &env),
                }
            })??;
            (child, Watch::Reap)
        }
        StartMethod::ForkServer => {
            let (child, server) = match (waiting, zygote) {
                (Some(w), _) => w,
                (None, Some(z)) => z.start_child(token, theirs()?)?,
                (None, None) => return Err(Impossible::NoForkServerChild.into()),
            };
            (child, Watch::Relayed(server))
        }
        StartMethod::Fork => {
            let theirs = theirs()?;
            runtime::flush_std_streams();
            match os::fork_single_threaded() {
                Ok(os::Forked::Child) => {
                    // the bootstrap and the arguments are right here, in our copy of
                    // the parent's memory (and their descriptors in our copy of its
                    // descriptor table): nothing to wait for
                    drop(ours);
                    let preloaded = runtime::Preloaded {
                        boot,
                        args,
                        fds: arg_fds,
                    };
                    runtime::forked_child_main(theirs, token, me.pid(), Some(preloaded), false)
                }
                Ok(os::Forked::Parent(child)) => {
                    drop(theirs);
                    delivered = true;
                    (child, Watch::ReapWithoutThread)
                }
                Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {
                    return Err(StartMethod::Fork
                        .check_available()
                        .err()
                        .unwrap_or(SpawnError::Io(e)))
                }
                Err(e) => return Err(SpawnError::Io(e)),
            }
        }
    };
    let pid = child.pid;
    let state = match monitor::register(pid, name, child.pidfd, watch) {
        Ok(state) => state,
        Err(e) => {
            // not unowned: a child nobody could join is ended at once
            let _ = os::signal_pid(pid, os::SIGKILL);
            return Err(SpawnError::Io(e));
        }
    };
    // The child reads these as soon as it runs; a child that died at once makes
    // them fail with BrokenPipe, which join() then reports through the exit status.
    let borrowed: Vec<BorrowedFd<'_>> = arg_fds.iter().map(|f| f.as_fd()).collect();
    let sent = if delivered {
        Ok(())
    } else {
        frame::write_frame(ours.as_fd(), &boot_bytes, &[])
            .and_then(|()| frame::write_frame(ours.as_fd(), &args, &borrowed))
    };
    match sent {
        Ok(()) => unsent.sent(),
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            let _ = os::pidfd_signal(state.pidfd.as_fd(), os::SIGKILL);
            return Err(SpawnError::Io(e));
        }
        // the child died at once and never gets its arguments: undo (drop `unsent`)
        Err(_) => drop(unsent),
    }
    if server_child {
        // the next start's child, forked while this one starts
        crate::forkserver::ask_next_spare();
    }
    tracing::debug!(pid = state.pid, name = %state.name, "process started");
    Ok(Process {
        state,
        control: Some(ours),
        reader: {
            // a forked child starts at once and a short target is done within a few
            // hundred microseconds: seen without a sleep and a wake-up (others take a
            // millisecond or more to start, and polling would only burn the CPU)
            let mut r = FrameReader::new();
            if method == StartMethod::Fork {
                r.set_spin(monitor::JOIN_SPIN);
            }
            // An outcome is mostly a few bytes, and a large result grows the buffer as
            // its header announces it. 64 KiB zero-filled for every child cost a parent
            // that forks 15 copy-on-write faults per start (its heap pages are shared
            // with the child it just made): a fifth of a `Fork` start.
            r.set_min_read(4096);
            r
        },
        outcome: None,
        outcome_fds: Vec::new(),
        result_taken: false,
        daemon,
        _r: PhantomData,
    })
}

impl<R: Message> Process<R> {
    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.state.pid
    }

    /// The child's name.
    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// Whether this is a daemon child.
    pub fn daemon(&self) -> bool {
        self.daemon
    }

    /// Whether the child is still running.
    pub fn is_alive(&self) -> bool {
        !self.state.has_exited()
    }

    /// Waits for the child to exit and returns how it ended. Calling it again returns the
    /// same status at once.
    ///
    /// # Errors
    ///
    /// Only an operating-system failure while reading the child's report.
    pub fn join(&mut self) -> Result<ExitStatus, Error> {
        Ok(self
            .join_deadline(None)?
            .expect("join without a deadline returns a status"))
    }

    /// As [`join`](Process::join), at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when the child is still running then (the crate-wide
    /// `join_timeout` convention: `Ok` with what `join` returns, a timeout is an error,
    /// see [`error`](crate::error)); otherwise as [`join`](Process::join).
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<ExitStatus, Error> {
        self.join_deadline(Deadline::after(timeout).instant())?
            .ok_or(Error::Timeout)
    }

    fn join_deadline(&mut self, deadline: Option<Instant>) -> Result<Option<ExitStatus>, Error> {
        if let Some(s) = self.state.exit_status() {
            if self.control.is_none() {
                return Ok(Some(s));
            }
        }
        // Drain the child's report first: a large result must be read for the child to
        // finish writing it and exit.
        if !self.drain_control(deadline)? {
            return Ok(None);
        }
        Ok(self.state.wait_exit_direct(deadline))
    }

    /// Reads the control channel until the child closes it. `Ok(false)` on timeout.
    fn drain_control(&mut self, deadline: Option<Instant>) -> Result<bool, Error> {
        let Some(ctl) = self.control.as_ref() else {
            return Ok(true);
        };
        let wait = match deadline {
            None => Wait::Forever,
            Some(d) => Wait::Until(d),
        };
        loop {
            match self.reader.fill(ctl.as_fd(), wait, None) {
                Ok(_) => {
                    let payload = self.reader.payload();
                    if self.outcome.is_none() {
                        self.outcome = Some(parse_outcome(payload));
                        self.outcome_fds = self.reader.consume();
                    } else {
                        self.reader.consume();
                    }
                }
                Err(FrameError::Timeout) => return Ok(false),
                Err(FrameError::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    return Ok(false)
                }
                Err(FrameError::Io(e)) => return Err(Error::Io(e)),
                Err(_) => {
                    // Eof, or a report cut short by the child's death
                    self.control = None;
                    return Ok(true);
                }
            }
        }
    }

    /// Sends `SIGTERM`. A no-op `Ok` if the child has already exited.
    ///
    /// # Errors
    ///
    /// The OS refused the signal.
    pub fn terminate(&self) -> Result<(), Error> {
        os::pidfd_signal(self.state.pidfd.as_fd(), os::SIGTERM)?;
        Ok(())
    }

    /// Sends `SIGKILL`. A no-op `Ok` if the child has already exited.
    ///
    /// # Errors
    ///
    /// The OS refused the signal.
    pub fn kill(&self) -> Result<(), Error> {
        os::pidfd_signal(self.state.pidfd.as_fd(), os::SIGKILL)?;
        Ok(())
    }

    /// How the child ended, `None` while it runs (Python's `exitcode`).
    pub fn exitcode(&self) -> Option<ExitStatus> {
        self.state.reap_now()
    }

    /// The target's return value. Joins the child first if it has not been joined.
    ///
    /// # Errors
    ///
    /// [`JoinError::Panicked`] with the child's panic message and location,
    /// [`JoinError::Killed`] when it died without a result, [`JoinError::Unavailable`]
    /// when the result was already taken or could not be decoded.
    pub fn result(&mut self) -> Result<R, JoinError> {
        let status = self
            .join()
            .map_err(|e| JoinError::Unavailable(e.to_string()))?;
        if self.result_taken {
            return Err(JoinError::Unavailable(
                "the result was already taken".into(),
            ));
        }
        match self.outcome.take() {
            None => Err(JoinError::Killed(status)),
            Some(Err(e)) => {
                self.outcome = Some(Err(e.clone()));
                Err(e)
            }
            Some(Ok(bytes)) => {
                self.result_taken = true;
                codec::decode(&bytes, std::mem::take(&mut self.outcome_fds))
                    .map_err(|e| JoinError::Unavailable(e.to_string()))
            }
        }
    }

    /// The child as the monitor sees it (for an owner's exit watcher).
    pub(crate) fn child_state(&self) -> Arc<ChildState> {
        self.state.clone()
    }

    /// The child's pidfd: readable once the child has exited (for `procactor::wait`).
    pub(crate) fn exit_fd(&self) -> BorrowedFd<'_> {
        self.state.pidfd.as_fd()
    }
}

impl<R: Message> crate::pipe::sealed::Sealed for Process<R> {}

/// A process is ready for [`crate::wait`] once it has exited.
impl<R: Message> crate::pipe::Waitable for Process<R> {
    fn ready_cached(&self) -> bool {
        self.state.exit_status().is_some()
    }

    fn ready_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.exit_fd())
    }

    fn confirm_ready(&self) -> bool {
        true // a pidfd is readable only once its process has exited
    }
}

fn parse_outcome(payload: &[u8]) -> Result<Vec<u8>, JoinError> {
    let Some((&tag, rest)) = payload.split_first() else {
        return Err(JoinError::Unavailable("empty report from the child".into()));
    };
    match tag {
        runtime::OUTCOME_OK => Ok(rest.to_vec()),
        runtime::OUTCOME_PANIC => Err(JoinError::Panicked {
            message: codec::decode::<String>(rest, Vec::new())
                .unwrap_or_else(|e| format!("(unreadable panic message: {e})")),
        }),
        _ => Err(JoinError::Unavailable(
            codec::decode::<String>(rest, Vec::new())
                .unwrap_or_else(|e| format!("(unreadable failure report: {e})")),
        )),
    }
}

/// How long dropping a [`Process`] handle waits for a running non-daemon child to end
/// before it lets it run on unwatched (see [`Process`]'s drop).
pub const PROCESS_DROP_JOIN_LIMIT: Duration = Duration::from_secs(60);
/// How long dropping a handle waits for a daemon child after `SIGTERM` (then after
/// `SIGKILL`).
pub const PROCESS_DROP_KILL_WAIT: Duration = Duration::from_secs(1);

impl<R> Drop for Process<R> {
    /// Bounded whatever the child does:
    ///
    /// - a daemon child is sent `SIGTERM`, given [`PROCESS_DROP_KILL_WAIT`] (1 s), sent
    ///   `SIGKILL` and given 1 s more: at most 2 s;
    /// - a non-daemon child is joined (its report read, so that a child blocked writing
    ///   a large result can end), for at most [`PROCESS_DROP_JOIN_LIMIT`] (60 s); one
    ///   still running then is left to run on (a warning is logged; the monitor reaps it
    ///   when it ends; it still dies with this process, by its parent-death signal);
    /// - while the dropping thread is panicking, nothing is waited for: a daemon child
    ///   is sent `SIGKILL` (and given at most 1 s), a non-daemon child is left to run on
    ///   at once, so that a panic never turns into a wait for a child.
    fn drop(&mut self) {
        if self.state.exit_status().is_some() {
            return;
        }
        let panicking = std::thread::panicking();
        let pidfd = self.state.pidfd.as_fd();
        if self.daemon {
            if !panicking {
                let _ = os::pidfd_signal(pidfd, os::SIGTERM);
                if self
                    .state
                    .wait_exit_direct(Some(Instant::now() + PROCESS_DROP_KILL_WAIT))
                    .is_some()
                {
                    return;
                }
            }
            let _ = os::pidfd_signal(pidfd, os::SIGKILL);
            let _ = self
                .state
                .wait_exit_direct(Some(Instant::now() + PROCESS_DROP_KILL_WAIT));
            return;
        }
        if panicking {
            tracing::debug!(pid = self.state.pid, "dropped while panicking: not joined");
            return;
        }
        let until = Instant::now() + PROCESS_DROP_JOIN_LIMIT;
        // drain the report so that a child blocked writing it can exit, then wait
        if let Some(c) = self.control.take() {
            let mut reader = FrameReader::new();
            while reader.fill(c.as_fd(), Wait::Until(until), None).is_ok() {
                reader.consume();
            }
        }
        if self.state.wait_exit_direct(Some(until)).is_none() {
            tracing::warn!(
                pid = self.state.pid,
                name = %self.state.name,
                "a dropped non-daemon child still runs after {PROCESS_DROP_JOIN_LIMIT:?}: left to run on"
            );
        }
    }
}

/// Children started by this process that are still running (Python's
/// `active_children()`), as name and pid.
pub fn active_children() -> Vec<crate::ProcessInfo> {
    monitor::live_children()
        .into_iter()
        .map(|c| crate::runtime::ProcessInfo::new(c.name.clone(), c.pid))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn double(x: u32) -> u32 {
        x * 2
    }

    #[test]
    fn starting_without_init_is_a_clear_error() {
        // this unit-test binary never calls init(): a child would run the harness
        let e = Process::new(double, 1).start().unwrap_err();
        assert!(matches!(e, SpawnError::NotInitialized), "{e:?}");
        assert!(e.to_string().contains("procactor::init()"));
    }

    #[test]
    fn outcome_parsing_never_panics_on_garbage() {
        assert!(matches!(parse_outcome(&[]), Err(JoinError::Unavailable(_))));
        assert!(matches!(
            parse_outcome(&[runtime::OUTCOME_PANIC, 0xff]),
            Err(JoinError::Panicked { .. })
        ));
        assert!(matches!(
            parse_outcome(&[9, 1, 2]),
            Err(JoinError::Unavailable(_))
        ));
        assert_eq!(parse_outcome(&[runtime::OUTCOME_OK, 1]).unwrap(), vec![1]);
    }

    #[test]
    fn an_impossible_start_state_is_an_io_error_that_says_which() {
        for (e, says) in [
            (Impossible::NoControlSocket, "no control socket"),
            (Impossible::NoForkServerChild, "no fork-server child"),
        ] {
            let err = SpawnError::from(e);
            let text = err.to_string();
            assert!(matches!(err, SpawnError::Io(_)), "{err:?}");
            assert!(text.contains("internal error"), "{text}");
            assert!(text.contains(says), "{text}");
        }
    }
}
