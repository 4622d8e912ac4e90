//! Seeing inside a running program: [`snapshot`] of this process, [`fetch`] of another
//! one through its observe socket, and traces that follow a message into an actor's
//! process.
//!
//! # What is observed
//!
//! Every [`Supervisor`](crate::Supervisor) built in this process (oldest first, with
//! its whole tree: child supervisors, pools of actors as their members, each actor's
//! statistics), every [`Pool`](crate::Pool) (its workers' tasks, panics, restarts and
//! chunk times, counted by the workers in shared memory), every named
//! [`Queue`](crate::Queue), and the process's own memory and CPU. The types are in
//! [`crate::stats`].
//!
//! Memory and CPU come from `/proc/<pid>`: USS (private clean + private dirty pages of
//! `smaps_rollup`: what the process alone holds) and PSS rather than RSS, which counts
//! the shared memory of mailboxes and queues in every process that maps it; CPU is
//! `utime + stime` of `stat` in milliseconds (a viewer gets CPU% from two snapshots).
//!
//! # The observe socket
//!
//! A program serves its snapshot on the abstract Unix stream socket named
//! `procactor-observe-<pid>` ([`socket_name`]; abstract: no file, gone with the
//! process). One thread serves it, started when the process makes its first observable
//! thing (a supervisor or a named queue) — not at [`init`](crate::init), so that
//! processes with nothing to show start no thread — and ended when the last one is
//! dropped (that last drop waits for the thread to end: up to
//! [`WRITE_LIMIT`] when it is writing a reply to a client that does not read).
//! `PROCACTOR_OBSERVE=0` (also `false`, `off`, `no`) in the environment turns
//! it off: [`fetch`] then reports [`ObserveError::NoServer`].
//!
//! Protocol: the client writes the 9 bytes `snapshot\n`; the server answers a `u32`
//! little-endian length, then that many bytes of CBOR of a
//! [`ProgramSnapshot`]; the client may ask again on the
//! same connection ([`Observer`]).
//!
//! Threat model: the socket is reachable by every process of the machine's network
//! namespace (an abstract name has no file permissions), so the server checks who
//! connected: a peer whose uid (`SO_PEERCRED`, recorded by the kernel at connect time)
//! is not this process's effective uid is closed at once, before anything is read. What
//! the same user could do is bounded, not forbidden (it can also `kill` the program):
//! at most [`MAX_CONNECTIONS`] connections are served (more are closed when accepted),
//! anything but the exact request closes the connection, a connection that completes
//! no request for [`IDLE`] is closed, a reply that is not read within [`WRITE_LIMIT`]
//! is dropped with its connection. The server holds at most 9 bytes per connection and
//! one reply at a time.
//!
//! # Traces across processes
//!
//! Without OpenTelemetry, "context" here is three numbers a message carries from its
//! sender to the actor: a **trace id** (minted at the first hop, carried on by every
//! later one: an actor sending while it handles a traced message passes its trace id
//! on), the sender's **span id** (its current span, as the sender's subscriber numbers
//! it: meaningful in the sender's process only) and the sender's **pid**. They travel
//! only when a subscriber is interested: no dispatcher ever set in the sender's process,
//! no current span, or a disabled one, and nothing is added to the envelope. With no
//! subscriber ever set, this costs one atomic load per send; with one, a look-up of the
//! current span through the dispatcher (no span clone or close) and, for a span
//! outside any trace, a new trace id from a per-thread generator.
//!
//! In the actor's process, `handle` runs inside a span `actor.handle` (target
//! `procactor::actor`) with the fields `actor` (its name), `msg` (the message type),
//! `kind` (`send` or `call`), `trace_id`, `parent_span` and `parent_pid`. An actor's
//! process is the program's binary started again and does not run `main`: install the
//! subscriber there in [`Actor::started`](crate::Actor::started) (e.g.
//! `let _ = tracing_subscriber::fmt().try_init();`). With `tracing-subscriber`'s `fmt`
//! layer every event inside `handle` is then printed with
//! `actor.handle{actor=worker-1 msg=u64 kind=call trace_id=… parent_span=… parent_pid=…}`
//! in front of it, and the caller's own lines show its span: the `trace_id` ties the
//! lines of one request together across processes, `parent_pid` and `parent_span` say
//! which process and which of its spans the hop came from.

mod client;
#[cfg(feature = "metrics")]
pub mod metrics;
mod registry;
mod server;

pub use client::{fetch, ObserveError, Observer, MAX_REPLY};
pub(crate) use registry::{PoolSource, QueueSource, Source, SupervisorSource};
pub(crate) use server::{register, Registration};
pub use server::{IDLE, MAX_CONNECTIONS, WRITE_LIMIT};

use crate::stats::{ProcessUsage, ProgramSnapshot};
use procactor_transports::observe as sys;

/// The environment variable that turns the observe socket off (`0`, `false`, `off`,
/// `no`, in any case).
pub const OBSERVE_ENV: &str = "PROCACTOR_OBSERVE";

/// The abstract socket name program `pid` serves its snapshot on.
pub fn socket_name(pid: u32) -> String {
    format!("procactor-observe-{pid}")
}

/// Whether this process serves its snapshot now (it has something observable, and
/// observing is not turned off).
pub fn serving() -> bool {
    server::serving()
}

pub(crate) struct ObserveSettings {
    pub(crate) enabled: bool,
}

impl ObserveSettings {
    pub(crate) fn from_env() -> ObserveSettings {
        ObserveSettings {
            enabled: !std::env::var(OBSERVE_ENV)
                .is_ok_and(|v| procactor_transports::spin::turns_off(&v)),
        }
    }
}

/// This process now: its supervisors (oldest first), pools, named queues and usage.
///
/// # Examples
///
/// ```
/// use procactor::{observe, Supervisor};
///
/// fn main() {
///     procactor::init();
///     let sup = Supervisor::builder().name("main").build().unwrap();
///     let snap = observe::snapshot();
///     assert_eq!(snap.pid, std::process::id());
///     assert!(snap.supervisors.iter().any(|s| s.name == "main"));
///     drop(sup);
/// }
/// ```
pub fn snapshot() -> ProgramSnapshot {
    let live = registry::registry().live();
    ProgramSnapshot {
        pid: std::process::id(),
        command: sys::command_name(None).unwrap_or_default(),
        taken_at_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        usage: usage(None),
        supervisors: live.supervisors.iter().map(|s| s.snapshot()).collect(),
        pools: live.pools.iter().map(|p| p.snapshot()).collect(),
        queues: live.queues.iter().map(|q| q.snapshot()).collect(),
    }
}

/// The memory and CPU of process `pid` (`None`: this one), `None` when unreadable.
pub(crate) fn usage(pid: Option<u32>) -> Option<ProcessUsage> {
    sys::process_usage(pid).ok().map(|u| ProcessUsage {
        uss_kib: u.uss_kib,
        pss_kib: u.pss_kib,
        cpu_ms: u.cpu_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_peer_of_the_same_uid_is_served() {
        assert!(server::peer_allowed(Ok(1000), 1000));
        assert!(!server::peer_allowed(Ok(0), 1000));
        assert!(!server::peer_allowed(Ok(1001), 1000));
        assert!(!server::peer_allowed(
            Err(std::io::Error::other("no credentials")),
            1000
        ));
    }
}
