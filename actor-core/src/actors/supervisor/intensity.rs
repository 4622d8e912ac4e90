//! Restart intensity (OTP's): more than `max_restarts` restarts within `period`, and the
//! supervisor gives up.

use super::end::{end_set, EndHow};
use super::events::SupervisorEvent;
use super::state::{push_event, Shared, State, Status};
use std::sync::MutexGuard;
use std::time::Instant;

/// Counts a restart about to happen, as OTP does: it is recorded, the restarts older
/// than the period are forgotten, and the answer is whether more than `max_restarts`
/// remain (the supervisor then gives up).
pub(super) fn count_restart(st: &mut State) -> bool {
    let now = Instant::now();
    st.restarts.push_back(now);
    let period = st.settings.period;
    while st
        .restarts
        .front()
        .is_some_and(|t| now.duration_since(*t) > period)
    {
        st.restarts.pop_front();
    }
    st.restarts.len() > st.settings.max_restarts as usize
}

/// Restart intensity exceeded: the supervisor fails. Nothing restarts from now on; every
/// child is ended (all at once) and marked ended for good.
pub(super) fn give_up<'a>(
    shared: &'a Shared,
    mut st: MutexGuard<'a, State>,
) -> MutexGuard<'a, State> {
    let n = st.restarts.len() as u32;
    push_event(&mut st, SupervisorEvent::GaveUp { restarts: n });
    st.status = Status::GaveUp;
    let set: Vec<usize> = (0..st.children.len()).rev().collect();
    st = end_set(shared, st, &set, EndHow::Terminate, None);
    for c in &mut st.children {
        c.done = true;
        c.unit.group().mark_ended(c.member);
    }
    shared.notify_all();
    st
}
