//! The leaf of the process layer: helpers every other file here uses (procactor's own
//! threads, flushing the standard streams before a fork or an `_exit`, the spawner thread,
//! start tokens) and what a child made by `fork()` does first.

use super::identity::{IDENTITY, NAME_COUNTER};
use once_cell::sync::Lazy;
use procactor_transports::os;
use std::sync::atomic::Ordering;
use std::sync::Mutex;

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
