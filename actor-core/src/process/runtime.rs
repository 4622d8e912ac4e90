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

pub(crate) use super::child::CHILD_ENV;
use super::child::{addressed_to_me, child_main, parse_env};
use super::identity::{identity, is_initialized, mark_initialized};
use crate::error::SpawnError;
use procactor_transports::os;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

// What the rest of the crate and the facade reach through `runtime::` (the items live in
// the files of this directory that build before this one).
pub(crate) use super::base::{flush_std_streams, on_spawner_thread, random_token, thread_builder};
pub(crate) use super::child::{entry, forked_child_main};
pub use super::child::{log_debug, LOG_ENV};
#[doc(hidden)]
pub use super::child::{quietly, take_panic_message};
pub(crate) use super::child::{Bootstrap, EntryFn, Preloaded, OUTCOME_OK, OUTCOME_PANIC};
#[doc(hidden)]
pub use super::identity::image_proof;
pub use super::identity::{current_process, parent_process, ProcessInfo};
pub(crate) use super::identity::{default_name, ensure_initialized, fingerprint, next_child_ids};

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
/// # Pools and supervisors: the fork server by default
///
/// A [`Pool`](crate::Pool) or a [`Supervisor`](crate::Supervisor) whose builder was not
/// given a method, in a process where no method was set (neither [`set_start_method`]
/// nor `PROCACTOR_START_METHOD`), starts its workers or children, and every replacement,
/// through the fork server: a restart is then a `fork()` of a small process rather than
/// the execution of a whole binary (as Python 3.14 made `forkserver` its default on
/// Linux). A method given to the builder, or set for the process (`Spawn` included),
/// is always honoured. [`Process`](crate::Process) keeps `Spawn` as its default.
///
/// The fork server's children start with the environment and working directory the
/// server started with (see `ForkServer` below). So that the default changes nothing
/// there, a pool or supervisor that takes it checks, when it is built, that the server
/// runs with this process's current environment and working directory, and replaces
/// it otherwise (the old one serves out its children). Its restarts are not checked:
/// every fork-server start of the process goes through its one server, so a restart
/// starts with whatever that server has then, the environment of the last time a
/// server was started or brought in line (a later change is not seen by it until a
/// pool or supervisor built later with the default, or a server that died, brings up a
/// new server; from then on every owner's restarts start with the new one). Pick
/// `Spawn` for children that must see each change. Resource limits and the umask are
/// not compared: a child has the server's.
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
    /// from `init()` with nothing of the parent's memory. Safe with threads; the default
    /// of [`Process`](crate::Process) (pools and supervisors default to `ForkServer`
    /// unless a method was set for the process: see above).
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
    /// cannot fork fails that start only. After each start the server forks the next
    /// start's child ahead of need, which waits, idle, for its bootstrap: a start (a
    /// restart, a pool worker's replacement) then costs no fork and no round trip to the
    /// server, at the price of that one idle process. As with Python's forkserver, a child inherits
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
    let m = match method.or_else(chosen_start_method) {
        Some(m) => m,
        None => {
            // the owners' own default: the fork server, brought in line with this
            // process's current environment and working directory first
            crate::forkserver::ensure_current().map_err(SpawnError::Io)?;
            StartMethod::ForkServer
        }
    };
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

/// The process-wide start method: [`UNSET`] until [`set_start_method`] (or
/// [`START_METHOD_ENV`]) sets one, else the method's number (see [`start_method`]).
static START_METHOD: AtomicU8 = AtomicU8::new(UNSET);
const UNSET: u8 = u8::MAX;

/// Sets the default start method for processes started after this call (and for
/// pools and supervisors built after it: once a method is set, whatever it is, they
/// use it instead of their own default, the fork server; see [`StartMethod`]).
///
/// `ForkServer` starts the fork server now (a process that forks each child), so that
/// the first start costs no more than the next ones. `Fork` is accepted in any process,
/// but each start is refused while the process has more than one thread.
///
/// Children started by `Fork` keep the parent's setting (their memory is a copy of the
/// parent's, as with Python's fork); spawned and fork-server children start with none:
/// a [`Process`](crate::Process) they start uses `Spawn`, and a pool or supervisor they
/// build its own default, the fork server, in a server of their own. A child
/// supervisor whose builder names no method is the exception: it is given the method
/// its parent supervisor uses, so a method set here reaches a whole supervision tree
/// (see [`SupervisorBuilder::start_method`](crate::SupervisorBuilder::start_method)).
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
    if method == StartMethod::ForkServer && is_initialized() {
        crate::forkserver::ensure_started()?;
    }
    START_METHOD.store(method as u8, Ordering::SeqCst);
    Ok(())
}

/// The default start method of [`Process`](crate::Process) (`Spawn` unless changed by
/// [`set_start_method`]).
///
/// Pools and supervisors have a default of their own while no method was set: see
/// [`StartMethod`]'s "Pools and supervisors".
pub fn start_method() -> StartMethod {
    chosen_start_method().unwrap_or(StartMethod::Spawn)
}

/// The method set by [`set_start_method`] (or [`START_METHOD_ENV`]) in this process, if
/// any (a child made by `Fork` has its parent's, its memory being a copy).
pub(crate) fn chosen_start_method() -> Option<StartMethod> {
    match START_METHOD.load(Ordering::SeqCst) {
        0 => Some(StartMethod::Spawn),
        1 => Some(StartMethod::ForkServer),
        2 => Some(StartMethod::Fork),
        _ => None,
    }
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
            if mark_initialized() {
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
#[cfg(test)]
mod tests {
    use super::*;

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
