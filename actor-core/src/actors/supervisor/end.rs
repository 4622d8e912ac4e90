//! Ending children: a set of them at once, outside the supervisor's lock, and recording
//! how each one's process ended.

use super::events::SupervisorEvent;
use super::spec::Shutdown;
use super::state::{push_event, Shared, State};
use super::unit::Unit;
use crate::actor::{cell, encode_status, ExitReport};
use crate::process::Process;
use crate::ExitStatus;
use procactor_transports::os;
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant};

/// How a child's process ended, as the restart decision needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ended {
    /// `ctx.stop()`: OTP's `normal`.
    Normal,
    /// Nothing left to do: stopped on request, every sender gone, or shut down.
    Finished,
    /// A child supervisor gave up (restart intensity): abnormal, but like OTP's
    /// `shutdown` exit reason a `Transient` one is not restarted.
    GaveUp,
    /// A crash: a panic, an `Err` from `handle`, a signal.
    Crashed,
}

/// Records the end of child `i`'s process `p` (which has ended: this joins it) and
/// returns the exit event.
pub(super) fn reap_proc(
    st: &mut State,
    i: usize,
    mut p: Process<ExitReport>,
) -> (SupervisorEvent, Ended) {
    let c = &mut st.children[i];
    let status = p.join().unwrap_or(ExitStatus::Code(-1));
    let report = p.result();
    let g = c.unit.group();
    g.actor_word(c.member, cell::EXIT)
        .store(encode_status(status), Ordering::Release);
    g.actor_word(c.member, cell::PID)
        .store(0, Ordering::Release);
    let in_call = g
        .actor_word(c.member, cell::IN_CALL)
        .swap(0, Ordering::AcqRel);
    if in_call != 0 {
        g.word(cell::LOST_CALL).store(in_call, Ordering::Release);
    }
    let taken = g.actor_word(c.member, cell::TAKEN).load(Ordering::Acquire);
    // (a caller whose call vanished looks at this: see `ActorRef::call`)
    g.word(cell::EXITS).fetch_add(1, Ordering::AcqRel);
    c.unit.recover();
    let (reason, ended) = match (&report, status) {
        (Ok(ExitReport::Intensity), _) => ("gave up (restart intensity)", Ended::GaveUp),
        (Ok(ExitReport::Normal), ExitStatus::Code(0)) => ("normal", Ended::Normal),
        (Ok(ExitReport::Stopped), ExitStatus::Code(0)) => ("stopped", Ended::Finished),
        (Ok(ExitReport::Disconnected), ExitStatus::Code(0)) => ("disconnected", Ended::Finished),
        (Ok(ExitReport::Shutdown), ExitStatus::Code(0)) => ("shutdown", Ended::Finished),
        _ => ("", Ended::Crashed),
    };
    let reason = match (&report, ended) {
        (Err(crate::JoinError::Panicked { message }), Ended::Crashed) => message.clone(),
        (_, Ended::Crashed) => status.to_string(),
        _ => reason.to_string(),
    };
    let abnormal = matches!(ended, Ended::Crashed | Ended::GaveUp);
    let ev = SupervisorEvent::Exited {
        name: c.name.clone(),
        pid: p.pid(),
        status,
        reason,
        abnormal,
        in_flight: (abnormal && taken > 0 && !c.unit.is_supervisor()).then_some(taken),
        lost_call: (in_call != 0).then_some(in_call),
    };
    (ev, ended)
}

/// How [`end_set`] asks children to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum EndHow {
    /// A final, graceful stop: stop requests through the mailboxes (actors drain what
    /// is queued), a shutdown request to child supervisors.
    Graceful,
    /// An end before a restart (or a give-up): `SIGTERM` (a shutdown request to a child
    /// supervisor), no mailbox drain: queued messages wait for the next incarnation.
    Terminate,
}

/// A child being ended outside the supervisor's lock.
struct Ending {
    idx: usize,
    proc: Process<ExitReport>,
    /// When it is killed if still running (its shutdown time, capped by the deadline).
    until: Option<Instant>,
    killed: bool,
    ended: bool,
}

/// Ends the children `set` (indices, in the order their requests go out) all at once
/// and records their exits, without waiting under the lock: their processes are taken
/// out of the state (so their exits are not handled as crashes), the requests sent,
/// the lock released for the wait (one wait for all: each is killed at its own
/// shutdown time, or at `deadline`, or at a shutdown's deadline, whichever comes
/// first), and re-taken to record them. Returns the re-taken lock: the caller must
/// look at the state afresh (a shutdown may have come meanwhile).
pub(super) fn end_set<'a>(
    shared: &'a Shared,
    mut st: MutexGuard<'a, State>,
    set: &[usize],
    how: EndHow,
    deadline: Option<Instant>,
) -> MutexGuard<'a, State> {
    let now = Instant::now();
    let mut ending = Vec::new();
    let mut to_stop: Vec<Arc<dyn Unit>> = Vec::new();
    for &j in set {
        let c = &mut st.children[j];
        let Some(p) = c.proc.take() else { continue };
        let mut until = match c.spec.shutdown {
            Shutdown::BrutalKill => Some(now),
            Shutdown::Timeout(d) => now.checked_add(d),
        };
        if let Some(d) = deadline {
            until = Some(until.map_or(d, |u| u.min(d)));
        }
        match (c.spec.shutdown, how) {
            (Shutdown::BrutalKill, _) => {
                let _ = p.kill();
            }
            (Shutdown::Timeout(_), EndHow::Terminate) => c.unit.ask_to_end(p.pid()),
            (Shutdown::Timeout(_), EndHow::Graceful) => {
                // a pool gets its stop requests once, for all its members
                let unit = Arc::as_ptr(&c.unit) as *const ();
                if !to_stop
                    .iter()
                    .any(|u| std::ptr::eq(Arc::as_ptr(u) as *const (), unit))
                {
                    to_stop.push(c.unit.clone());
                }
            }
        }
        ending.push(Ending {
            idx: j,
            proc: p,
            until,
            killed: false,
            ended: false,
        });
    }
    if ending.is_empty() {
        return st;
    }
    st.busy += 1;
    drop(st);
    for u in &to_stop {
        u.request_stop();
    }
    wait_all(shared, &mut ending);
    let mut st = shared.lock();
    for e in ending {
        let (ev, _) = reap_proc(&mut st, e.idx, e.proc);
        push_event(&mut st, ev);
    }
    st.busy -= 1;
    shared.notify_all();
    st
}

/// Waits until every process of `ending` has ended, killing each at its deadline (or
/// at the shared kill deadline of a shutdown, if earlier).
fn wait_all(shared: &Shared, ending: &mut [Ending]) {
    // (a wake-up at least this often, to see a shutdown's deadline)
    const SLICE: Duration = Duration::from_millis(10);
    loop {
        let now = Instant::now();
        let hurry = shared.kill_by();
        let mut next = now + SLICE;
        for e in ending.iter_mut().filter(|e| !e.ended && !e.killed) {
            let until = match (e.until, hurry) {
                (Some(u), Some(h)) => Some(u.min(h)),
                (u, h) => u.or(h),
            };
            match until {
                Some(u) if u <= now => {
                    let _ = e.proc.kill();
                    e.killed = true;
                }
                Some(u) => next = next.min(u),
                None => {}
            }
        }
        let pending: Vec<usize> = (0..ending.len()).filter(|&k| !ending[k].ended).collect();
        if pending.is_empty() {
            return;
        }
        let fds: Vec<_> = pending.iter().map(|&k| ending[k].proc.exit_fd()).collect();
        let ready = os::poll_readable(&fds, Some(next));
        drop(fds);
        match ready {
            Ok(r) => {
                for (n, &k) in pending.iter().enumerate() {
                    if r.get(n).copied().unwrap_or(false) {
                        // ended: its report and status are read when it is recorded
                        ending[k].ended = true;
                    }
                }
            }
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}
