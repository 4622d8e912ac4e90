//! The proxies of a manager's events and barriers.

use super::super::objects::{SyncReq, Wait};
use super::super::ManagerError;
use super::super::{unexpected, Resp};
use super::{wait_of, SyncHandle};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

// ------------------------------------------------------------------ event, barrier

/// An event in a manager (Python's `Manager().Event()`): a flag that waiters wait to
/// see set.
#[derive(Clone, Serialize, Deserialize)]
pub struct SharedEvent {
    pub(super) h: SyncHandle,
}
sync_proxy!(SharedEvent);

impl SharedEvent {
    /// Sets the flag: every waiter wakes.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Disconnected`] when the server is gone.
    pub fn set(&self) -> Result<(), ManagerError> {
        self.h.unit(SyncReq::Set(self.h.id))
    }
    /// Clears the flag.
    ///
    /// # Errors
    ///
    /// As [`set`](SharedEvent::set).
    pub fn clear(&self) -> Result<(), ManagerError> {
        self.h.unit(SyncReq::Clear(self.h.id))
    }
    /// Whether the flag is set.
    ///
    /// # Errors
    ///
    /// As [`set`](SharedEvent::set).
    pub fn is_set(&self) -> Result<bool, ManagerError> {
        self.h.bool(SyncReq::IsSet(self.h.id))
    }
    /// Waits until the flag is set.
    ///
    /// # Errors
    ///
    /// As [`set`](SharedEvent::set).
    pub fn wait(&self) -> Result<(), ManagerError> {
        self.h.bool(SyncReq::Wait(self.h.id, None)).map(drop)
    }
    /// Waits at most `timeout` (`Duration::MAX`: forever); whether the flag is set.
    ///
    /// # Errors
    ///
    /// As [`set`](SharedEvent::set).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool, ManagerError> {
        self.h.bool(SyncReq::Wait(self.h.id, wait_of(timeout)))
    }
}

/// A barrier in a manager (Python's `Manager().Barrier(parties)`): `wait` returns when
/// `parties` clients wait, each with a different arrival index in `0..parties`.
///
/// As Python's, it **breaks** ([`ManagerError::BrokenBarrier`] for current and later
/// waiters, until [`reset`](SharedBarrier::reset)) on [`abort`](SharedBarrier::abort),
/// when a wait times out, and — here — when a waiter's connection closes (its process
/// died), so the others do not wait for it forever.
#[derive(Clone, Serialize, Deserialize)]
pub struct SharedBarrier {
    pub(super) h: SyncHandle,
}
sync_proxy!(SharedBarrier);

impl SharedBarrier {
    fn wait_for(&self, w: Wait) -> Result<usize, ManagerError> {
        match self.h.call(SyncReq::Wait(self.h.id, w))? {
            Resp::Count(i) => Ok(usize::try_from(i).unwrap_or(usize::MAX)),
            Resp::Broken => Err(ManagerError::BrokenBarrier),
            r => Err(unexpected(r)),
        }
    }
    fn state(&self) -> Result<(u64, u64, bool), ManagerError> {
        match self.h.call(SyncReq::BarrierState(self.h.id))? {
            Resp::Barrier(p, w, b) => Ok((p, w, b)),
            r => Err(unexpected(r)),
        }
    }
    /// Waits for the others; this client's arrival index.
    ///
    /// # Errors
    ///
    /// [`ManagerError::BrokenBarrier`] (see the type's docs);
    /// [`ManagerError::Disconnected`] when the server is gone.
    pub fn wait(&self) -> Result<usize, ManagerError> {
        self.wait_for(None)
    }
    /// Waits at most `timeout` (`Duration::MAX`: forever); a timeout breaks the barrier
    /// and is [`ManagerError::BrokenBarrier`].
    ///
    /// # Errors
    ///
    /// As [`wait`](SharedBarrier::wait).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<usize, ManagerError> {
        self.wait_for(wait_of(timeout))
    }
    /// Breaks it: current and later waiters get [`ManagerError::BrokenBarrier`].
    ///
    /// # Errors
    ///
    /// [`ManagerError::Disconnected`] when the server is gone.
    pub fn abort(&self) -> Result<(), ManagerError> {
        self.h.unit(SyncReq::Set(self.h.id))
    }
    /// Makes it usable again; clients waiting now get [`ManagerError::BrokenBarrier`].
    ///
    /// # Errors
    ///
    /// As [`abort`](SharedBarrier::abort).
    pub fn reset(&self) -> Result<(), ManagerError> {
        self.h.unit(SyncReq::Clear(self.h.id))
    }
    /// How many clients must wait.
    ///
    /// # Errors
    ///
    /// As [`abort`](SharedBarrier::abort).
    pub fn parties(&self) -> Result<usize, ManagerError> {
        Ok(self.state()?.0 as usize)
    }
    /// How many wait now.
    ///
    /// # Errors
    ///
    /// As [`abort`](SharedBarrier::abort).
    pub fn n_waiting(&self) -> Result<usize, ManagerError> {
        Ok(self.state()?.1 as usize)
    }
    /// Whether it is broken.
    ///
    /// # Errors
    ///
    /// As [`abort`](SharedBarrier::abort).
    pub fn is_broken(&self) -> Result<bool, ManagerError> {
        Ok(self.state()?.2)
    }
}
