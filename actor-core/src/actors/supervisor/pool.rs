//! [`PoolRef`]: a pool of actors sharing one mailbox.

use super::unit::{member_name, ActorUnit};
use crate::{ActorRef, ProcessActor};
use std::fmt;
use std::time::Duration;

/// `n` actors made by `make` on one new mailbox, and the pool's reference.
pub(super) fn pool_unit<A: ProcessActor>(
    name: String,
    n: usize,
    make: impl FnMut() -> A,
) -> Result<(ActorUnit<A>, PoolRef<A>), crate::Error> {
    if n == 0 {
        return Err(crate::Error::InvalidArgument(
            "a pool of actors needs at least one".into(),
        ));
    }
    let actors: Vec<A> = std::iter::repeat_with(make).take(n).collect();
    let unit = ActorUnit::create(name.clone(), actors)?;
    let r = PoolRef {
        inner: unit.actor_ref(0, name),
    };
    Ok((unit, r))
}

/// A handle on a pool of actors sharing one mailbox ([`Supervisor::spawn_pool`](crate::Supervisor::spawn_pool)).
pub struct PoolRef<A: ProcessActor> {
    inner: ActorRef<A>,
}

impl<A: ProcessActor> Clone for PoolRef<A> {
    fn clone(&self) -> Self {
        PoolRef {
            inner: self.inner.clone(),
        }
    }
}

impl<A: ProcessActor> fmt::Debug for PoolRef<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolRef")
            .field("actor", &A::NAME)
            .field("size", &self.size())
            .field("pids", &self.pids())
            .finish()
    }
}

impl<A: ProcessActor> PoolRef<A> {
    /// Sends a message to whichever member takes it first (see [`ActorRef::send`]).
    ///
    /// # Errors
    ///
    /// As [`ActorRef::send`].
    pub fn send(&self, msg: A::Msg) -> Result<(), crate::PutError<A::Msg>> {
        self.inner.send(msg)
    }

    /// As [`send`](PoolRef::send), as a future (see [`ActorRef::send_async`]).
    ///
    /// # Cancel safety
    ///
    /// As [`ActorRef::send_async`]: dropped before it completes, it sends nothing.
    ///
    /// # Errors
    ///
    /// As [`ActorRef::send`].
    pub async fn send_async(&self, msg: A::Msg) -> Result<(), crate::PutError<A::Msg>> {
        self.inner.send_async(msg).await
    }
    /// See [`ActorRef::try_send`].
    ///
    /// # Errors
    ///
    /// As [`ActorRef::try_send`].
    pub fn try_send(&self, msg: A::Msg) -> Result<(), crate::TryPutError<A::Msg>> {
        self.inner.try_send(msg)
    }
    /// See [`ActorRef::send_timeout`].
    ///
    /// # Errors
    ///
    /// As [`ActorRef::send_timeout`].
    pub fn send_timeout(
        &self,
        msg: A::Msg,
        d: Duration,
    ) -> Result<(), crate::PutTimeoutError<A::Msg>> {
        self.inner.send_timeout(msg, d)
    }
    /// How many actors share the mailbox.
    pub fn size(&self) -> usize {
        self.inner.group.actors as usize
    }
    /// A reference to member `i` (for its pid and state; sending through it reaches the
    /// shared mailbox all the same).
    pub fn member(&self, i: usize) -> Option<ActorRef<A>> {
        (i < self.size()).then(|| {
            let mut r = self.inner.clone();
            r.index = i as u32;
            r.name = member_name(&self.inner.name, self.size() as u32, i as u32);
            r
        })
    }
    /// The running members' pids.
    pub fn pids(&self) -> Vec<u32> {
        (0..self.size())
            .filter_map(|i| self.member(i).and_then(|m| m.pid()))
            .collect()
    }
    /// Messages waiting in the shared mailbox.
    pub fn mailbox_len(&self) -> usize {
        self.inner.mailbox_len()
    }
    /// Stops every member gracefully (see [`ActorRef::stop`]).
    ///
    /// # Errors
    ///
    /// As [`ActorRef::stop`].
    pub fn stop(&self) -> Result<(), crate::PutError<()>> {
        self.inner.stop()
    }
    /// Waits until every member has ended for good.
    pub fn join(&self) {
        self.inner.join();
    }
    /// As [`join`](PoolRef::join), at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`JoinTimeoutError`](crate::JoinTimeoutError) when a member had not ended by
    /// then.
    pub fn join_timeout(&self, timeout: Duration) -> Result<(), crate::JoinTimeoutError> {
        self.inner.join_timeout(timeout)
    }
}

impl<A: ProcessActor<Mailbox = crate::PipeMailbox>> PoolRef<A> {
    /// See [`ActorRef::call`]: any member answers.
    ///
    /// # Errors
    ///
    /// As [`ActorRef::call`].
    pub fn call(&self, msg: A::Msg) -> Result<A::Reply, crate::CallError> {
        self.inner.call(msg)
    }
    /// See [`ActorRef::call_timeout`]: any member answers. Calls from several threads
    /// or processes run on different members at once (one call lane per member, at
    /// most 64).
    ///
    /// # Errors
    ///
    /// As [`ActorRef::call_timeout`].
    pub fn call_timeout(
        &self,
        msg: A::Msg,
        timeout: Duration,
    ) -> Result<A::Reply, crate::CallError> {
        self.inner.call_timeout(msg, timeout)
    }

    /// See [`ActorRef::call_async`]: any member answers; the calls of this process wait
    /// in line for a free member (one call lane per member, at most 64), so any number
    /// of them can be in flight at once.
    ///
    /// # Cancel safety
    ///
    /// As [`ActorRef::call_async`]: a dropped call leaves no stale reply for the next
    /// one and holds no lane.
    ///
    /// # Errors
    ///
    /// As [`ActorRef::call_async`]: a call whose member died handling it gives
    /// [`CallError::Died`](crate::CallError::Died) (the supervisor restarts the member;
    /// the next call is served).
    pub async fn call_async(&self, msg: A::Msg) -> Result<A::Reply, crate::CallError> {
        self.inner.call_async(msg).await
    }
}
