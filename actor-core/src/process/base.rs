//! The leaf of the process layer: helpers every other file here uses (procactor's own
//! threads, flushing the standard streams before a fork or an `_exit`, the spawner thread,
//! start tokens) and what a child made by `fork()` does first.

//!
//! It uses no other file of this directory: the files that keep process-global state a
//! forked child must not keep (the monitor, the fork server connection, the identity)
//! *register* what to do about it here ([`at_fork_in_child`]), and
//! [`forget_parent_runtime`] runs what was registered, without naming them.

use once_cell::sync::Lazy;
use procactor_transports::os;
use std::sync::Mutex;

/// What a piece of process-global state does in a child made by `fork()`.
type AfterForkHook = fn();

/// The hooks registered so far, in the order of registration. A child made by `fork()`
/// inherits the list with the state the hooks are about.
static AFTER_FORK: Mutex<Vec<AfterForkHook>> = Mutex::new(Vec::new());

/// Registers `hook`, to be run by [`forget_parent_runtime`] in every child made by
/// `fork()` from this process from now on (and from its forked children, which inherit
/// the list). A file that keeps process-global state registers its hook once (under a
/// `std::sync::Once`), before it first creates that state: a process that never created
/// it has nothing to forget. A hook runs in a single-threaded process that is a copy of
/// its parent; it forgets (`std::mem::forget`) rather than drops what it takes, since
/// freeing would write to heap pages shared with the parent, a copy-on-write fault each,
/// for memory the child never needs back.
pub(crate) fn at_fork_in_child(hook: AfterForkHook) {
    AFTER_FORK
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(hook);
}

/// In a process just made by `fork()`: nothing of the parent's runtime is ours. Runs
/// every hook registered with [`at_fork_in_child`] (the monitor, whose epoll set is the
/// parent's; the fork server connection; the identity and the child counter), then
/// forgets the spawner thread (this file's own state). The registry's lock is not held
/// while a hook runs, so a hook may register another (run in its turn).
pub(crate) fn forget_parent_runtime() {
    let mut i = 0;
    loop {
        let hook = match AFTER_FORK.lock().unwrap_or_else(|e| e.into_inner()).get(i) {
            Some(&hook) => hook,
            None => break,
        };
        hook();
        i += 1;
    }
    std::mem::forget(SPAWNER.lock().unwrap_or_else(|e| e.into_inner()).take());
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
