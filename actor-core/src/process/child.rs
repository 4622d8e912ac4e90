//! A child's side of a start: its entry from [`init`](crate::init) (spawned) or from a
//! `fork()` (fork server, zygote, `StartMethod::Fork`), the bootstrap it reads, the target
//! it runs and the outcome it reports.

use super::base::{flush_std_streams, forget_parent_runtime};
use super::identity::{become_child, ProcessInfo};
use crate::codec;
use once_cell::sync::OnceCell;
use procactor_transports::frame::{self, FrameReader, Wait};
use procactor_transports::target::{self, SameImage, TargetRef};
use procactor_transports::{os, AsFd, OwnedFd};
use serde::{Deserialize, Serialize};
use std::panic::AssertUnwindSafe;
use std::sync::Mutex;

pub(crate) const CHILD_ENV: &str = "PROCACTOR_CHILD";

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

pub(super) fn child_main(env: &str) -> ! {
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
pub(super) fn addressed_to_me(spawner: Option<u32>) -> bool {
    match spawner {
        None => true,
        Some(p) => os::parent_pid() == Some(p) || !os::process_alive(p),
    }
}

pub(super) fn parse_env(env: &str) -> Option<(i32, u64, u32)> {
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
    run_child(control, token, ppid, None, false)
}

/// The bootstrap and the arguments frame, already in the child's memory (a child made by
/// `fork()` in its parent has its parent's copies; nothing needs to travel).
pub(crate) struct Preloaded {
    pub(crate) boot: Bootstrap,
    pub(crate) args: Vec<u8>,
    pub(crate) fds: Vec<OwnedFd>,
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
    keeper: bool,
) -> ! {
    forget_parent_runtime();
    // (the default start method stays: a `Fork` child has its parent's, as a child of
    // Python's fork has, its memory being a copy; the fork server never sets one, so its
    // children have the default, as spawned children do)
    // Above us on this stack are the parent's frames (the caller of `start`, or the fork
    // server's loop): a panic must never unwind into them, so everything that could
    // panic here (the target is already wrapped; a failed `eprintln!` is not) is caught.
    let code = std::panic::catch_unwind(AssertUnwindSafe(move || {
        let code = match run_child(control, token, parent, preloaded, keeper) {
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
    keeper: bool,
) -> Result<i32, String> {
    if !os::set_parent_death_kill(ppid).map_err(|e| format!("prctl: {e}"))? {
        return Ok(1); // the parent died before we could watch it
    }
    let mut reader = FrameReader::new();
    // (the bootstrap is small, and a large argument frame grows the buffer as it comes)
    reader.set_min_read(4096);
    let (boot, preloaded): (Bootstrap, _) = match preloaded {
        Some(p) => (p.boot, Some((p.args, p.fds))),
        None => {
            // Before the wait (a fork server's spare waits here for its start, maybe
            // long): this process's lock identity, which its first robust lock takes
            // (one read of `/proc/self/stat`, tens of microseconds on a VM), is ready
            // when the start comes.
            os::current_lock_id_cached();
            if keeper {
                // (see `os::start_memory_keeper`: this process's death is then reported
                // before its memory is torn down; without one, after)
                let _ = os::start_memory_keeper();
            }
            if !frame_fill(&mut reader, &control)? {
                // the parent closed the control socket before any bootstrap: nobody will
                // start this child (a fork server's spare given up, a start abandoned),
                // and nobody waits for its report either
                return Ok(0);
            }
            (decode_frame(&mut reader)?, None)
        }
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
    become_child(proof.clone(), boot.name, boot.parent, boot.ids);

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
            if !frame_fill(&mut reader, &control)? {
                return Err("reading the bootstrap: the parent closed the control socket".into());
            }
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

/// Reads the next frame of the bootstrap into `reader`; `false` when the parent closed
/// the control socket first.
fn frame_fill(reader: &mut FrameReader, control: &OwnedFd) -> Result<bool, String> {
    match reader.fill(control.as_fd(), Wait::Forever, None) {
        Ok(_) => Ok(true),
        Err(frame::FrameError::Eof) => Ok(false),
        Err(e) => Err(format!("reading the bootstrap: {e}")),
    }
}

/// Decodes the frame `reader` holds, and consumes it (with any descriptors it carried).
fn decode_frame<T: serde::de::DeserializeOwned>(reader: &mut FrameReader) -> Result<T, String> {
    let v = codec::decode(reader.payload(), Vec::new()).map_err(|e| e.to_string());
    drop(reader.consume());
    v
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
}
