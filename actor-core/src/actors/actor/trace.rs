//! Traces across processes: the sender's span context in the envelope, and the actor's
//! `handle` run inside a child span of it (see the `observe` module's docs for what
//! "context" means here and how to see it).

use std::cell::Cell;

/// The sender's side of a hop: the trace it belongs to and the span it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct TraceCtx {
    /// Minted at the first hop, carried on by every later one.
    pub(crate) trace_id: u64,
    /// The sender's current span (an id of the sender's subscriber, in its process).
    pub(crate) span_id: u64,
    /// The sender's pid.
    pub(crate) pid: u32,
}

thread_local! {
    /// The trace of the message this thread's actor is handling (0: none).
    static CURRENT: Cell<u64> = const { Cell::new(0) };
    /// This thread's trace id generator (splitmix64's state; 0: not seeded yet).
    static MINTED: Cell<u64> = const { Cell::new(0) };
}

/// The context to send, when a subscriber is interested: `None` (nothing added to the
/// envelope, no allocation) when no subscriber was ever set, or when there is no
/// current span.
///
/// Cost per send: with no subscriber ever set in the process, one atomic load. With
/// one, the dispatcher's thread-local lookup and the subscriber's `current_span` (for
/// `tracing-subscriber`'s registry: its per-thread span stack and a look-up of the
/// span's slot), no span clone or close; then, with a current span and no trace to
/// carry on, a new id from a per-thread generator (no clock read).
#[inline]
pub(crate) fn current() -> Option<TraceCtx> {
    if !tracing::dispatcher::has_been_set() {
        return None;
    }
    sender_ctx()
}

fn sender_ctx() -> Option<TraceCtx> {
    let span_id =
        tracing::dispatcher::get_default(|d| d.current_span().id().map(|id| id.into_u64()))?;
    let pid = procactor_transports::os::current_pid_cached();
    let trace_id = match CURRENT.with(Cell::get) {
        0 => mint(pid),
        t => t,
    };
    Some(TraceCtx {
        trace_id,
        span_id,
        pid,
    })
}

/// A new trace id (never 0): splitmix64 over a per-thread state, seeded once from the
/// pid, the clock and the thread (its stack address), stepped by the golden gamma.
fn mint(pid: u32) -> u64 {
    let state = MINTED.with(|c| {
        let mut s = c.get();
        if s == 0 {
            let local = 0u8;
            s = (u64::from(pid) << 32)
                ^ procactor_transports::observe::monotonic_ns()
                ^ (std::ptr::addr_of!(local) as usize as u64).rotate_left(17);
        }
        s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        // (a state of 0 would seed again: harmless, and 2^-64 likely)
        c.set(s);
        s
    });
    let mut z = state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) | 1
}

/// The actor's `handle` running in a trace: the entered `actor.handle` span, and this
/// thread's trace id set to the message's (put back when dropped).
pub(crate) struct Handling {
    before: u64,
    _span: tracing::span::EnteredSpan,
}

impl Drop for Handling {
    fn drop(&mut self) {
        // (then the span is exited: fields drop after this)
        CURRENT.with(|c| c.set(self.before));
    }
}

/// Enters an `actor.handle` span, child of the remote context, with the trace id
/// carried on to what the actor sends until the guard is dropped. `actor` is borrowed
/// only while the span is made (its field is recorded then).
pub(crate) fn enter(
    ctx: &TraceCtx,
    actor: &str,
    msg: &'static str,
    kind: &'static str,
) -> Handling {
    let span = tracing::info_span!(
        target: "procactor::actor",
        "actor.handle",
        actor = %actor,
        msg,
        kind,
        trace_id = ctx.trace_id,
        parent_span = ctx.span_id,
        parent_pid = ctx.pid,
    );
    let _span = span.entered();
    Handling {
        before: CURRENT.with(|c| c.replace(ctx.trace_id)),
        _span,
    }
}
