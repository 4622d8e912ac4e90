//! Starting a child's process, and applying the restart strategy when one ends (on the
//! exit watcher's thread).

use super::end::{end_set, reap_proc, EndHow, Ended};
use super::events::SupervisorEvent;
use super::intensity::{count_restart, give_up};
use super::spec::{Restart, Strategy};
use super::state::{push_event, Shared, State, Status};
use super::unit::Via;
use crate::actor::{cell, ActorState};
use crate::error::SpawnError;
use crate::monitor::ExitEvent;
use procactor_transports::os;
use std::sync::atomic::Ordering;
use std::sync::MutexGuard;

/// Starts child `i`'s process (again, when `restart`).
pub(super) fn start_child(st: &mut State, i: usize, restart: bool) -> Result<(), SpawnError> {
    let c = &mut st.children[i];
    let g = c.unit.group();
    g.reopen(c.member);
    g.word(cell::SUPERVISOR)
        .store(u64::from(os::current_pid()), Ordering::Release);
    g.set_state(c.member, ActorState::Starting);
    if restart {
        g.actor_word(c.member, cell::RESTARTS)
            .fetch_add(1, Ordering::AcqRel);
    }
    let p = c.unit.start(
        c.member,
        Via {
            method: st.settings.method,
            zygote: st.zygote.as_deref(),
        },
    )?;
    let pid = p.pid();
    if let Some(route) = &st.route {
        if let Err(e) = route.watch(p.child_state()) {
            // its end would go unnoticed: not kept
            let _ = p.kill();
            return Err(SpawnError::Io(e));
        }
    }
    let c = &mut st.children[i];
    let g = c.unit.group();
    g.actor_word(c.member, cell::PID)
        .store(u64::from(pid), Ordering::Release);
    // the actor sets Running itself too; a supervisor child has no one else to
    g.set_state(c.member, ActorState::Running);
    c.proc = Some(p);
    let name = c.name.clone();
    let restarts = c.restarts();
    push_event(
        st,
        SupervisorEvent::Started {
            name: name.clone(),
            pid,
        },
    );
    if restart {
        push_event(
            st,
            SupervisorEvent::Restarted {
                name,
                pid,
                restarts,
            },
        );
    }
    Ok(())
}

/// Applies the strategy to one child exit (on the exit watcher's thread).
pub(super) fn on_exit_event(shared: &Shared, ev: ExitEvent) {
    let mut st = shared.lock();
    if st.status != Status::Running {
        return;
    }
    let idx = st
        .children
        .iter()
        .position(|c| c.proc.as_ref().is_some_and(|p| p.pid() == ev.pid));
    if let Some(i) = idx {
        // (a duplicate of an exit already handled finds no process with that pid)
        let alive = st.children[i]
            .proc
            .as_ref()
            .is_some_and(|p| !os::pidfd_ended(p.exit_fd()));
        if alive {
            return;
        }
        st = on_exit(shared, st, i);
        drop(st);
        shared.notify_all();
    }
}

fn on_exit<'a>(
    shared: &'a Shared,
    mut st: MutexGuard<'a, State>,
    i: usize,
) -> MutexGuard<'a, State> {
    let Some(p) = st.children[i].proc.take() else {
        return st;
    };
    let (ev, ended) = reap_proc(&mut st, i, p);
    push_event(&mut st, ev);
    let c = &st.children[i];
    // a stop under way: a normal end finishes it; a crash in the middle of the drain is
    // restarted (by its restart type) and told to stop again, so the drain goes on
    let stopping = c.unit.group().word(cell::STOPPING).load(Ordering::Acquire) != 0;
    let restart = match (ended, c.spec.restart) {
        (Ended::Finished, _) | (_, Restart::Temporary) => false,
        (Ended::Normal, Restart::Permanent) => !stopping,
        (Ended::Normal, Restart::Transient) => false,
        (Ended::GaveUp, Restart::Transient) => false,
        (Ended::GaveUp | Ended::Crashed, _) => true,
    };
    if !restart {
        st.children[i].done = true;
        let c = &st.children[i];
        c.unit.group().mark_ended(c.member);
        return st;
    }
    // restart intensity, as OTP: this restart counts; more than max in the period fails
    if count_restart(&mut st) {
        return give_up(shared, st);
    }
    let set: Vec<usize> = match st.settings.strategy {
        Strategy::OneForOne => vec![i],
        Strategy::OneForAll => (0..st.children.len()).collect(),
        Strategy::RestForOne => (i..st.children.len()).collect(),
    };
    // end the others (all at once, outside the lock)…
    let others: Vec<usize> = set.iter().rev().copied().filter(|&j| j != i).collect();
    st = end_set(shared, st, &others, EndHow::Terminate, None);
    if st.status != Status::Running {
        // a shutdown came meanwhile: nothing restarts
        for &j in &set {
            if st.children[j].proc.is_none() {
                st.children[j].done = true;
                let c = &st.children[j];
                c.unit.group().mark_ended(c.member);
            }
        }
        return st;
    }
    // …then start them again in start order; temporary siblings are not restarted
    for &j in &set {
        if st.children[j].done || st.children[j].proc.is_some() {
            continue;
        }
        if j != i && st.children[j].spec.restart == Restart::Temporary {
            st.children[j].done = true;
            let c = &st.children[j];
            c.unit.group().mark_ended(c.member);
            continue;
        }
        if start_child(&mut st, j, true).is_err() {
            return give_up(shared, st);
        }
        let c = &st.children[j];
        if c.unit.group().word(cell::STOPPING).load(Ordering::Acquire) != 0 {
            c.unit.resume_stop();
        }
    }
    st
}
