//! The runtime: [`init`], start methods, the child's entry, and process-global state.
//!
//! # How a child starts (start method [`StartMethod::Spawn`])
//!
//! 1. The parent makes a socketpair (the *control channel*) and re-executes its own
//!    binary (`/proc/self/exe`, same `argv`), with `PROCACTOR_CHILD=<fd>:<token>:<ppid>`
//!    in the environment and the child's end of the socketpair inherited.
//! 2. [`init`] at the top of the child's `main` sees the variable, removes it (so that the
//!    child's own children start cleanly), takes the control descriptor, sets
//!    `PR_SET_PDEATHSIG` (then checks the parent is still alive, closing the race) and
//!    reads the *bootstrap*: token, image fingerprint, target, name, then the arguments
//!    frame with the descriptors of every handle inside them.
//! 3. The child checks the image is its parent's (a different binary is refused), runs
//!    the target, sends back the encoded result or the panic message and location, and
//!    exits with Python's codes (0, or 1 after a panic).

use crate::codec;
use crate::error::SpawnError;
use once_cell::sync::{Lazy, OnceCell};
use procactor_transports::frame::{self, FrameReader, Wait};
use procactor_transports::target::{self, SameImage, TargetRef};
use procactor_transports::{os, AsFd, OwnedFd};
use serde::{Deserialize, Serialize};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

pub(crate) const CHILD_ENV: &str = "PROCACTOR_CHILD";

/// How children are started (Python's start methods). Whatever the method, a child
/// gets its target, name and arguments the same way, over its control channel, and ends
/// the same way: exit codes, results, panics, handles, `parent_process()` and the
/// parent-death signal behave alike.
///
/// | method | start+join here | with threads | what the child starts from |
/// |---|---|---|---|
/// | `Spawn` | 1.0–1.5 ms | yes | a fresh image of the binary, stopped in `init()` |
/// | `ForkServer` | 0.3–0.6 ms | yes | a copy of the fork server: a fresh image stopped in `init()` |
/// | `Fork` | 0.25–0.45 ms | refused | a copy of the caller, all its memory and descriptors |
///
/// Set it for the whole program with [`set_start_method`] (or the environment variable
/// `PROCACTOR_START_METHOD=spawn|forkserver|fork`, read by [`init`], which exits the
/// program with status 2 and a message when the value is not one of these or the
/// method cannot be set), for one process
/// with [`ProcessBuilder::start_method`](crate::ProcessBuilder::start_method), for a pool
/// or a supervisor with their builders' `start_method`. A pool or a supervisor built
/// with `Fork` in a single-threaded program forks a copy of it then (a zygote), which
/// forks its workers or children from that snapshot, although the pool or supervisor
/// runs threads.
///
/// # Examples
///
/// ```
/// use procactor_core::{Process, StartMethod};
///
/// fn square(x: u64) -> u64 { x * x }
///
/// fn main() {
///     procactor_core::init();
///     let mut p = Process::new(square, 7)
///         .start_method(StartMethod::ForkServer)
///         .start()
///         .unwrap();
///     p.join().unwrap();
///     assert_eq!(p.result().unwrap(), 49);
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum StartMethod {
    /// Re-execute the current binary (`posix_spawn` of `/proc/self/exe`); the child runs
    /// from `init()` with nothing of the parent's memory. Safe with threads; the default.
    #[default]
    Spawn,
    /// A fork server forks each child. The server is the binary re-executed once, the
    /// first time it is needed (or at `set_start_method(ForkServer)`), and stopped in
    /// `init()` (the first statement of `main`, or an ELF constructor in test binaries):
    /// single-threaded, holding none of the parent's later state, so forking it is safe
    /// whatever threads the parent has. Its children are not the parent's children to
    /// the OS (their exit statuses are relayed by the server); they get the parent-death
    /// signal from the server, which gets it from the parent: the parent's death takes
    /// the server and every child with it. A server that dies is replaced at the next
    /// start (its children die with it and are reported killed by `SIGKILL`); one that
    /// cannot fork fails that start only. As with Python's forkserver, a child inherits
    /// the environment, working directory and limits the *server* started with, not the
    /// parent's current ones (a spawned child gets the parent's current ones).
    ForkServer,
    /// Plain `fork()` of the caller; the child runs its target and `_exit`s. Refused with
    /// [`SpawnError::Unsupported`] when the process has more than one thread (counted in
    /// `/proc/self/task` at each start): a lock another thread held would stay locked in
    /// the child forever. procactor starts no thread of its own for a forked child, so a
    /// single-threaded program can fork again and again (a spawned or fork-server child
    /// does start procactor's exit monitor, and the fork server its relay thread: fork
    /// before those, or alone; `examples/start_methods.rs`); a `Pool` or a `Supervisor`
    /// runs threads and refuses `Fork`. As with Python's fork, the child inherits every
    /// descriptor of its parent: a pipe end the parent still holds is open in the child
    /// too (end-of-file on it needs both closed).
    Fork,
}

impl StartMethod {
    pub(crate) fn name(self) -> &'static str {
        match self {
            StartMethod::Spawn => "spawn",
            StartMethod::ForkServer => "forkserver",
            StartMethod::Fork => "fork",
        }
    }

    fn from_name(name: &str) -> Option<StartMethod> {
        match name {
            "spawn" => Some(StartMethod::Spawn),
            "forkserver" => Some(StartMethod::ForkServer),
            "fork" => Some(StartMethod::Fork),
            _ => None,
        }
    }

    /// `Fork` is refused in a process with more than one thread (counted in
    /// `/proc/self/task`): the child would hold a copy of every lock the other threads
    /// held, locked forever.
    pub(crate) fn check_available(self) -> Result<(), SpawnError> {
        match self {
            StartMethod::Spawn | StartMethod::ForkServer => Ok(()),
            StartMethod::Fork => match os::thread_count() {
                Ok(1) => Ok(()),
                Ok(n) => Err(fork_refused(n)),
                Err(e) => Err(SpawnError::Io(e)),
            },
        }
    }
}

/// How a pool or a supervisor (`owner`) will start its children: `method` or the
/// default, and with `Fork` the zygote that forks them. They run threads of their own (a
/// result collector, an exit watcher), so no worker or replacement can be forked from
/// their process itself: `Fork` forks a zygote now, before those threads exist
/// ([`Zygote::for_owner`](crate::forkserver::Zygote::for_owner), refused in a
/// threaded process), and the zygote forks every child.
pub(crate) fn method_for_owner(
    method: Option<StartMethod>,
    owner: &str,
) -> Result<(StartMethod, Option<Arc<crate::forkserver::Zygote>>), SpawnError> {
    let m = method.unwrap_or_else(start_method);
    if m == StartMethod::Fork {
        return Ok((m, Some(crate::forkserver::Zygote::for_owner(owner)?)));
    }
    m.check_available()?;
    Ok((m, None))
}

fn fork_refused(threads: usize) -> SpawnError {
    SpawnError::Unsupported {
        method: "fork",
        why: format!(
            "this process has {threads} threads, and fork() copies only the calling one: \
             a lock another thread holds would stay locked forever in the child \
             (use StartMethod::ForkServer, as fast and safe with threads, or Spawn)"
        ),
    }
}

/// The variable that sets the root process's default start method at [`init`]
/// (`spawn`, `forkserver` or `fork`): how the test matrix runs a whole test binary under
/// another start method.
pub const START_METHOD_ENV: &str = "PROCACTOR_START_METHOD";

static START_METHOD: AtomicU8 = AtomicU8::new(0);
static INITIALIZED: AtomicBool = AtomicBool::new(false);

/// Sets the default start method for processes started after this call (and for
/// pools and supervisors built after it).
///
/// `ForkServer` starts the fork server now (a process that forks each child), so that
/// the first start costs no more than the next ones. `Fork` is accepted in any process,
/// but each start is refused while the process has more than one thread.
///
/// Children started by `Fork` keep the parent's default (their memory is a copy of the
/// parent's, as with Python's fork); spawned and fork-server children start with
/// `Spawn`.
///
/// # Errors
///
/// [`SpawnError::Io`] when the fork server cannot be started; the setting is then left
/// unchanged.
///
/// # Examples
///
/// ```
/// use procactor_core::{set_start_method, start_method, StartMethod};
/// procactor_core::init();
/// assert!(set_start_method(StartMethod::Spawn).is_ok());
/// assert_eq!(start_method(), StartMethod::Spawn);
/// ```
pub fn set_start_method(method: StartMethod) -> Result<(), SpawnError> {
    if method == StartMethod::ForkServer && INITIALIZED.load(Ordering::SeqCst) {
        crate::forkserver::ensure_started()?;
    }
    START_METHOD.store(method as u8, Ordering::SeqCst);
    Ok(())
}

/// The default start method (`Spawn` unless changed by [`set_start_method`]).
pub fn start_method() -> StartMethod {
    match START_METHOD.load(Ordering::SeqCst) {
        1 => StartMethod::ForkServer,
        2 => StartMethod::Fork,
        _ => StartMethod::Spawn,
    }
}

/// A process's name and id, as `current_process()`, `parent_process()` and
/// `active_children()` report them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessInfo {
    name: String,
    pid: u32,
}

impl ProcessInfo {
    pub(crate) fn new(name: String, pid: u32) -> Self {
        Self { name, pid }
    }
    /// The process's name (`"MainProcess"` for the root, `"Process-N"` by default).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }
}

#[derive(Debug)]
struct Identity {
    current: ProcessInfo,
    parent: Option<ProcessInfo>,
    /// Python's `_identity`: empty in the root, the parent's plus this process's number
    /// among its siblings in a child (`Process-2:1` is the first child of `Process-2`).
    ids: Vec<u64>,
}

/// Set at start-up; replaced in a child made by `fork()` (which inherits its parent's).
static IDENTITY: Mutex<Option<Arc<Identity>>> = Mutex::new(None);
/// The proof, made at start-up, that this process runs its parent's image (in the root
/// process: trivially its own), so that function references the parent sent later (a
/// child supervisor's actor entries) can be resolved.
static IMAGE_PROOF: OnceCell<SameImage> = OnceCell::new();
static NAME_COUNTER: AtomicU64 = AtomicU64::new(0);
static FINGERPRINT: Lazy<std::io::Result<[u64; 5]>> = Lazy::new(os::exe_fingerprint);

fn identity() -> Arc<Identity> {
    let mut slot = IDENTITY.lock().unwrap_or_else(|e| e.into_inner());
    slot.get_or_insert_with(|| {
        Arc::new(Identity {
            current: ProcessInfo {
                name: "MainProcess".into(),
                pid: os::current_pid(),
            },
            parent: None,
            ids: Vec::new(),
        })
    })
    .clone()
}

/// This process's name and pid. In the root process the name is `"MainProcess"`.
///
/// # Examples
///
/// ```
/// let me = procactor_core::current_process();
/// assert_eq!(me.name(), "MainProcess");
/// assert_eq!(me.pid(), std::process::id());
/// ```
pub fn current_process() -> ProcessInfo {
    identity().current.clone()
}

/// The process that started this one, `None` in the root process.
pub fn parent_process() -> Option<ProcessInfo> {
    identity().parent.clone()
}

/// The number of CPUs online in the machine, as Python's `cpu_count()` reports it
/// (at least 1). Like Python's, it ignores this process's CPU affinity and cgroup quota:
/// use [`std::thread::available_parallelism`] for the CPUs this process may actually
/// use (it is also the fallback when the kernel's CPU list cannot be read).
///
/// # Examples
///
/// ```
/// assert!(procactor_core::cpu_count() >= 1);
/// ```
pub fn cpu_count() -> usize {
    os::online_cpus()
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1)
}

/// The identity of the next child this process starts (see `Identity::ids`).
pub(crate) fn next_child_ids() -> Vec<u64> {
    let n = NAME_COUNTER.fetch_add(1, Ordering::Relaxed) + 1;
    let mut ids = identity().ids.clone();
    ids.push(n);
    ids
}

/// Python's default name for a child of identity `ids`: `Process-2`, `Process-2:1`, …
/// (numbers, never the parent's custom name).
pub(crate) fn default_name(ids: &[u64]) -> String {
    let parts: Vec<String> = ids.iter().map(u64::to_string).collect();
    format!("Process-{}", parts.join(":"))
}

/// See `IMAGE_PROOF`. Public (hidden) for `procactor-redis`, whose workers resolve the
/// function references their parent sent them in their start arguments, as `Pool` does.
#[doc(hidden)]
pub fn image_proof() -> Result<&'static SameImage, String> {
    IMAGE_PROOF.get_or_try_init(|| {
        let mine = fingerprint().map_err(|e| e.to_string())?;
        SameImage::verify(&mine).map_err(|e| e.to_string())
    })
}

pub(crate) fn ensure_initialized() -> Result<(), SpawnError> {
    if INITIALIZED.load(Ordering::SeqCst) {
        Ok(())
    } else {
        Err(SpawnError::NotInitialized)
    }
}

pub(crate) fn fingerprint() -> std::io::Result<[u64; 5]> {
    match &*FINGERPRINT {
        Ok(f) => Ok(*f),
        Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
    }
}

/// Makes this process able to start children, or — in a child — runs the child's
/// target and exits.
///
/// Call it as the first statement of `main` (or put `#[procactor::main]` on `main`).
/// In the parent it returns at once (calling it again is harmless). In a child started
/// by procactor it never returns: it runs the target, reports the result to the parent
/// and exits the process.
///
/// Test binaries (`tests/*.rs`) have no `main` of their own: put the one line
/// `procactor::test_support!();` at the top level of the test file instead.
///
/// # Examples
///
/// ```
/// fn main() {
///     procactor_core::init();
///     // ... start processes ...
/// }
/// ```
pub fn init() {
    if let Some(v) = os::take_env(crate::forkserver::SERVER_ENV) {
        if addressed_to_me(v.parse().ok()) {
            crate::forkserver::server_main(&v);
        }
    }
    match os::take_env(CHILD_ENV).filter(|v| addressed_to_me(parse_env(v).map(|(_, _, p)| p))) {
        Some(v) => child_main(&v),
        None => {
            if INITIALIZED.swap(true, Ordering::SeqCst) {
                return;
            }
            let _ = identity();
            // the test matrix's way to run a whole binary under another start method
            // (taken out, so that children of children start with the default)
            // It fails loudly (exit status 2) when it cannot be honoured: a program, or
            // a test matrix, that asked for a method must not run quietly under another.
            if let Some(m) = os::take_env(START_METHOD_ENV) {
                match StartMethod::from_name(&m) {
                    Some(method) => {
                        if let Err(e) = set_start_method(method) {
                            eprintln!(
                                "procactor: {START_METHOD_ENV}={m:?} cannot be honoured: {e}"
                            );
                            std::process::exit(2);
                        }
                    }
                    None => {
                        eprintln!(
                            "procactor: {START_METHOD_ENV}={m:?} is not spawn, forkserver or fork"
                        );
                        std::process::exit(2);
                    }
                }
            }
        }
    }
}

/// What the parent sends first, before the arguments frame.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Bootstrap {
    pub(crate) token: u64,
    pub(crate) fingerprint: [u64; 5],
    pub(crate) entry: (i64, String, u64),
    pub(crate) target: (i64, String, u64),
    pub(crate) name: String,
    pub(crate) ids: Vec<u64>,
    pub(crate) parent: ProcessInfo,
}

/// The non-generic signature every target trampoline has.
pub(crate) type EntryFn = fn(&TargetRef, &SameImage, &[u8], Vec<OwnedFd>) -> Outcome;

/// What a child reports: tag byte, then CBOR.
pub(crate) const OUTCOME_OK: u8 = 0;
pub(crate) const OUTCOME_PANIC: u8 = 1;
pub(crate) const OUTCOME_FAILED: u8 = 2;

pub(crate) struct Outcome {
    pub(crate) tag: u8,
    pub(crate) bytes: Vec<u8>,
    pub(crate) fds: Vec<OwnedFd>,
}

impl Outcome {
    fn failed(msg: String) -> Self {
        let mut bytes = Vec::new();
        let _ = codec::encode(&msg, &mut bytes, None);
        Outcome {
            tag: OUTCOME_FAILED,
            bytes,
            fds: Vec::new(),
        }
    }
}

static PANIC_MESSAGE: Mutex<Option<String>> = Mutex::new(None);

thread_local! {
    /// Set while a pool worker runs a task: its panic is not printed (see [`quietly`]).
    static QUIET_PANICS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with this thread's panics not printed on stderr by a child's panic hook (the
/// message is still recorded for [`take_panic_message`]), unless [`log_debug`]: a pool
/// worker runs each task so, since the panic travels back to the caller as
/// `TaskError::Panicked` (also the Redis pool's workers, hence public and hidden).
#[doc(hidden)]
pub fn quietly<T>(f: impl FnOnce() -> T) -> T {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            QUIET_PANICS.with(|q| q.set(self.0));
        }
    }
    let _reset = Reset(QUIET_PANICS.with(|q| q.replace(true)));
    f()
}

/// The environment variable that asks procactor for more diagnostics on stderr.
pub const LOG_ENV: &str = "PROCACTOR_LOG";

/// Whether `PROCACTOR_LOG` is `debug` or `trace` (read once per process): then pool
/// workers print their tasks' panics on stderr too, as any panic is printed (by default
/// the panic only travels back to the caller as `TaskError::Panicked`).
pub fn log_debug() -> bool {
    static ON: OnceCell<bool> = OnceCell::new();
    *ON.get_or_init(|| {
        std::env::var(LOG_ENV).is_ok_and(|v| {
            let v = v.trim().to_ascii_lowercase();
            v == "debug" || v == "trace"
        })
    })
}

/// The monomorphised entry a child calls: decode the arguments, call the target, encode
/// its result.
pub(crate) fn entry<A, S, F>(
    target: &TargetRef,
    proof: &SameImage,
    args: &[u8],
    fds: Vec<OwnedFd>,
) -> Outcome
where
    A: crate::Message,
    S: 'static,
    F: target::Target<A, S>,
    F::Output: crate::Message,
{
    let f = match target::resolve_target::<F, A, S>(target, proof) {
        Ok(f) => f,
        Err(e) => return Outcome::failed(format!("the target does not resolve: {e}")),
    };
    let a: A = match codec::decode(args, fds) {
        Ok(a) => a,
        Err(e) => return Outcome::failed(format!("could not decode the arguments: {e}")),
    };
    match std::panic::catch_unwind(AssertUnwindSafe(move || f.call(a))) {
        Ok(r) => {
            let mut bytes = Vec::new();
            let mut fds = Vec::new();
            match codec::encode(&r, &mut bytes, Some(&mut fds)) {
                Ok(()) => Outcome {
                    tag: OUTCOME_OK,
                    bytes,
                    fds,
                },
                Err(e) => Outcome::failed(format!("could not encode the result: {e}")),
            }
        }
        Err(payload) => {
            let msg = PANIC_MESSAGE
                .lock()
                .ok()
                .and_then(|mut m| m.take())
                .unwrap_or_else(|| panic_payload_text(&*payload));
            let mut bytes = Vec::new();
            let _ = codec::encode(&msg, &mut bytes, None);
            Outcome {
                tag: OUTCOME_PANIC,
                bytes,
                fds: Vec::new(),
            }
        }
    }
}

/// The message of the panic just caught (with its location, as the child's panic hook
/// recorded it), for code that catches panics itself (a pool worker running tasks, here
/// or in `procactor-redis`).
#[doc(hidden)]
pub fn take_panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    PANIC_MESSAGE
        .lock()
        .ok()
        .and_then(|mut m| m.take())
        .unwrap_or_else(|| panic_payload_text(payload))
}

fn panic_payload_text(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}

fn child_main(env: &str) -> ! {
    let code = match child_run(env) {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("procactor child {}: {msg}", os::current_pid());
            1
        }
    };
    flush_std_streams();
    std::process::exit(code)
}

/// Whether a start variable naming `spawner` (the pid of the process that set it) is meant
/// for this process: `init()` removes such variables only while single-threaded (see
/// `os::take_env`), so a program that a child with running threads starts by other means
/// (`std::process::Command` on its own binary) inherits them and must ignore them.
///
/// Ours when our parent is `spawner`, or when `spawner` is gone (we were orphaned before
/// reading it: the child path then finds its parent dead and exits, as it should). Not
/// ours when `spawner` is alive but is not our parent. A malformed value counts as ours,
/// so that the child path reports it instead of running `main` by mistake.
fn addressed_to_me(spawner: Option<u32>) -> bool {
    match spawner {
        None => true,
        Some(p) => os::parent_pid() == Some(p) || !os::process_alive(p),
    }
}

fn parse_env(env: &str) -> Option<(i32, u64, u32)> {
    let mut it = env.split(':');
    let fd = it.next()?.parse().ok()?;
    let token = it.next()?.parse().ok()?;
    let ppid = it.next()?.parse().ok()?;
    if it.next().is_some() {
        return None;
    }
    Some((fd, token, ppid))
}

fn child_run(env: &str) -> Result<i32, String> {
    let (raw, token, ppid) =
        parse_env(env).ok_or_else(|| format!("malformed {CHILD_ENV} value {env:?}"))?;
    let control = os::take_inherited_fd(raw).map_err(|e| format!("control channel: {e}"))?;
    run_child(control, token, ppid, None)
}

/// The bootstrap and the arguments frame, already in the child's memory (a child made by
/// `fork()` in its parent has its parent's copies; nothing needs to travel).
pub(crate) struct Preloaded {
    pub(crate) boot: Bootstrap,
    pub(crate) args: Vec<u8>,
    pub(crate) fds: Vec<OwnedFd>,
}

/// In a process just made by `fork()`: nothing of the parent's runtime is ours: the
/// monitor (its epoll set is the parent's), the fork server connection, the identity,
/// the child counter, the spawner thread.
pub(crate) fn forget_parent_runtime() {
    crate::monitor::after_fork_in_child();
    crate::forkserver::after_fork_in_child();
    // (forgotten, not dropped: freeing would write to heap pages shared with the
    // parent, a copy-on-write fault each, for memory this process never needs back)
    std::mem::forget(IDENTITY.lock().unwrap_or_else(|e| e.into_inner()).take());
    NAME_COUNTER.store(0, Ordering::Relaxed);
    std::mem::forget(SPAWNER.lock().unwrap_or_else(|e| e.into_inner()).take());
}

/// The life of a child made by `fork()` (by [`StartMethod::Fork`] in the caller, or by
/// the fork server): from the control channel on, exactly a spawned child's. It ends
/// with `_exit` (after flushing the standard streams), so that `atexit` handlers its
/// parent registered do not run a second time.
pub(crate) fn forked_child_main(
    control: OwnedFd,
    token: u64,
    parent: u32,
    preloaded: Option<Preloaded>,
) -> ! {
    forget_parent_runtime();
    // (the default start method stays: a `Fork` child has its parent's, as a child of
    // Python's fork has, its memory being a copy; the fork server never sets one, so its
    // children have the default, as spawned children do)
    // Above us on this stack are the parent's frames (the caller of `start`, or the fork
    // server's loop): a panic must never unwind into them, so everything that could
    // panic here (the target is already wrapped; a failed `eprintln!` is not) is caught.
    let code = std::panic::catch_unwind(AssertUnwindSafe(move || {
        let code = match run_child(control, token, parent, preloaded) {
            Ok(code) => code,
            Err(msg) => {
                eprintln!("procactor child {}: {msg}", os::current_pid());
                1
            }
        };
        flush_std_streams();
        code
    }))
    .unwrap_or(1);
    os::exit_now(code)
}

fn run_child(
    control: OwnedFd,
    token: u64,
    ppid: u32,
    preloaded: Option<Preloaded>,
) -> Result<i32, String> {
    if !os::set_parent_death_kill(ppid).map_err(|e| format!("prctl: {e}"))? {
        return Ok(1); // the parent died before we could watch it
    }
    let mut reader = FrameReader::new();
    // (the bootstrap is small, and a large argument frame grows the buffer as it comes)
    reader.set_min_read(4096);
    let (boot, preloaded): (Bootstrap, _) = match preloaded {
        Some(p) => (p.boot, Some((p.args, p.fds))),
        None => (read_frame(&mut reader, &control)?.0, None),
    };
    if boot.token != token {
        return Err("control channel token mismatch".into());
    }
    let proof = match SameImage::verify(&boot.fingerprint) {
        Ok(p) => p,
        Err(e) => {
            report(&control, &Outcome::failed(e.to_string()));
            return Err(e.to_string());
        }
    };
    let _ = IMAGE_PROOF.set(proof.clone());
    *IDENTITY.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(Identity {
        current: ProcessInfo {
            name: boot.name,
            pid: os::current_pid(),
        },
        parent: Some(boot.parent),
        ids: boot.ids,
    }));
    INITIALIZED.store(true, Ordering::SeqCst);

    let (offset, name, mac) = boot.entry;
    let entry: EntryFn =
        match target::resolve_checked(&TargetRef::from_parts(offset, name, mac), &proof) {
            Ok(f) => f,
            Err(e) => {
                let msg = format!("the bootstrap entry does not resolve: {e}");
                report(&control, &Outcome::failed(msg.clone()));
                return Err(msg);
            }
        };
    let (offset, name, mac) = boot.target;
    let target_ref = TargetRef::from_parts(offset, name, mac);
    let (args, fds) = match preloaded {
        Some(p) => p,
        None => {
            frame_fill(&mut reader, &control)?;
            (reader.payload().to_vec(), reader.consume())
        }
    };

    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let loc = info
            .location()
            .map(|l| format!(" at {}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_default();
        let msg = format!("{}{loc}", panic_payload_text(info.payload()));
        if let Ok(mut m) = PANIC_MESSAGE.lock() {
            *m = Some(msg);
        }
        // a pool task's panic goes back to the caller as its result (as Python's
        // pool sends the exception back): printed only when PROCACTOR_LOG asks
        if !QUIET_PANICS.with(std::cell::Cell::get) || log_debug() {
            default_hook(info);
        }
    }));

    let outcome = entry(&target_ref, &proof, &args, fds);
    report(&control, &outcome);
    Ok(match outcome.tag {
        OUTCOME_OK => 0,
        _ => 1,
    })
}

/// Sends the outcome frame. The parent may be gone or not reading; the exit code still
/// tells the story, so a failed write is ignored.
fn report(control: &OwnedFd, outcome: &Outcome) {
    let mut payload = Vec::with_capacity(1 + outcome.bytes.len());
    payload.push(outcome.tag);
    payload.extend_from_slice(&outcome.bytes);
    let fds: Vec<_> = outcome.fds.iter().map(|f| f.as_fd()).collect();
    let _ = frame::write_frame(control.as_fd(), &payload, &fds);
}

fn frame_fill(reader: &mut FrameReader, control: &OwnedFd) -> Result<(), String> {
    reader
        .fill(control.as_fd(), Wait::Forever, None)
        .map(|_| ())
        .map_err(|e| format!("reading the bootstrap: {e}"))
}

fn read_frame<T: serde::de::DeserializeOwned>(
    reader: &mut FrameReader,
    control: &OwnedFd,
) -> Result<(T, Vec<OwnedFd>), String> {
    frame_fill(reader, control)?;
    let v = codec::decode(reader.payload(), Vec::new()).map_err(|e| e.to_string());
    let fds = reader.consume();
    v.map(|v| (v, fds))
}

/// The stack of procactor's own threads: the standard library's default, set
/// explicitly so that `RUST_MIN_STACK` (meant for the program's threads) does not change
/// it. Some of them run user code (a supervisor encodes an actor's state for a restart,
/// a manager's connection threads serve user values): 2 MiB whatever the environment.
/// The `Fork` test matrix relies on this: it makes libtest's thread starts fail with an
/// impossible `RUST_MIN_STACK` so that tests run on the main thread, while pools and
/// supervisors still start theirs.
const THREAD_STACK: usize = 2 << 20;

/// A builder for one of procactor's own threads, named `name` (see [`THREAD_STACK`]).
pub(crate) fn thread_builder(name: &str) -> std::thread::Builder {
    std::thread::Builder::new()
        .name(name.into())
        .stack_size(THREAD_STACK)
}

/// Flushes standard output and error (errors ignored): before a `fork()`, so that what
/// is buffered is not written twice, and before a process ends with `_exit`.
pub(crate) fn flush_std_streams() {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
}

type SpawnJob = Box<dyn FnOnce() + Send>;

static SPAWNER: Lazy<Mutex<Option<crossbeam_channel::Sender<SpawnJob>>>> =
    Lazy::new(|| Mutex::new(None));

/// Runs `f` (which starts a child) on a thread that lives as long as the process.
///
/// The kernel's parent-death signal fires when the *thread* that forked a child exits,
/// not the process. Children started from the main thread are started right there (its
/// exit is the process's exit); from any other thread the fork happens on one long-lived
/// spawner thread, so that a child outlives a short-lived thread that started it (a
/// worker thread, a test thread) for as long as its handle lives.
pub(crate) fn on_spawner_thread<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<T> {
    if os::is_main_thread() {
        return Ok(f());
    }
    let (tx, rx) = crossbeam_channel::bounded(1);
    let job: SpawnJob = Box::new(move || {
        let _ = tx.send(f());
    });
    let sender = {
        let mut slot = SPAWNER.lock().unwrap_or_else(|e| e.into_inner());
        match &*slot {
            Some(s) => s.clone(),
            None => {
                let (jtx, jrx) = crossbeam_channel::unbounded::<SpawnJob>();
                thread_builder("procactor-spawner").spawn(move || {
                    for job in jrx {
                        job();
                    }
                })?;
                *slot = Some(jtx.clone());
                jtx
            }
        }
    };
    sender
        .send(job)
        .map_err(|_| std::io::Error::other("the spawner thread is gone"))?;
    rx.recv()
        .map_err(|_| std::io::Error::other("the spawner thread dropped a start request"))
}

pub(crate) fn random_token() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(os::current_pid());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_value_parses_strictly() {
        assert_eq!(parse_env("5:123:77"), Some((5, 123, 77)));
        assert_eq!(parse_env("5:123"), None);
        assert_eq!(parse_env("5:x:77"), None);
        assert_eq!(parse_env("5:1:2:3"), None);
    }

    #[test]
    fn fork_is_refused_in_a_threaded_process() {
        // the test harness runs this on a thread of its own: two threads at least
        match StartMethod::Fork.check_available() {
            Err(SpawnError::Unsupported {
                method: "fork",
                why,
            }) => {
                assert!(why.contains("threads"), "{why}")
            }
            other => panic!("fork accepted with threads: {other:?}"),
        }
        assert!(StartMethod::ForkServer.check_available().is_ok());
        assert!(StartMethod::Spawn.check_available().is_ok());
    }

    #[test]
    fn start_method_names_round_trip() {
        for m in [
            StartMethod::Spawn,
            StartMethod::ForkServer,
            StartMethod::Fork,
        ] {
            assert_eq!(StartMethod::from_name(m.name()), Some(m));
        }
        assert_eq!(StartMethod::from_name("vfork"), None);
    }
}
