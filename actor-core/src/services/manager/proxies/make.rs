//! The [`Manager`] methods that make synchronisation objects, queues, values and
//! arrays.

use super::super::client::Handle;
use super::super::objects::{SyncKind, SyncReq};
use super::super::refs::{Ref, Space};
use super::super::start::Manager;
use super::super::ManagerError;
use super::super::{enc, unexpected, Kind, Resp};
use super::locks::{SharedCondition, SharedLock, SharedRLock, SharedSemaphore};
use super::queues::{SharedJoinableQueue, SharedQueue};
use super::signals::{SharedBarrier, SharedEvent};
use super::values::{SharedArray, SharedValue};
use super::{sync_call, SyncHandle};
use crate::{Bytes, Message};
use std::marker::PhantomData;

// ------------------------------------------------------------------ Manager

impl Manager {
    fn new_sync(
        &self,
        kind: SyncKind,
        name: Option<&str>,
        n: u64,
    ) -> Result<SyncHandle, ManagerError> {
        let (link, holder) = self.link()?;
        let (address, key) = self.client.target();
        let timeout = self.client.timeout().clone();
        let r = sync_call(
            &address,
            &key,
            SyncReq::New(kind, name.map(str::to_string), n, holder),
            timeout.get(),
        )?;
        match r {
            Resp::Id(id) => Ok(SyncHandle {
                address,
                key,
                id,
                _ref: Ref::counted(link, (Space::Sync, id)),
                timeout,
            }),
            r => Err(unexpected(r)),
        }
    }

    fn new_with(
        &self,
        kind: Kind,
        name: Option<&str>,
        init: Vec<Bytes>,
    ) -> Result<Handle, ManagerError> {
        self.new_with_init(kind, name, Some(init))
    }

    /// A new lock ([`SharedLock`], Python's `Manager().Lock()`).
    ///
    /// A client that holds it and then freezes (stopped, swapped out, stuck) without
    /// closing its connection **keeps it**, as in Python: while that client sends
    /// nothing and is sent nothing, the server cannot tell it from a slow one. The lock
    /// is released when that connection closes: the client process dies (even by
    /// `SIGKILL`), the thread that holds it ends, or the server fails to write an answer
    /// to it for 5 s (a frozen client that had a request in flight). Other clients can
    /// use [`acquire_timeout`](SharedLock::acquire_timeout) to stay in control.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Disconnected`] when the server is gone.
    pub fn lock(&self) -> Result<SharedLock, ManagerError> {
        Ok(SharedLock {
            h: self.new_sync(SyncKind::Lock, None, 0)?,
        })
    }
    /// The lock called `name`, made if it does not exist yet: how another client finds
    /// it.
    ///
    /// # Errors
    ///
    /// As [`lock`](Manager::lock).
    pub fn lock_named(&self, name: &str) -> Result<SharedLock, ManagerError> {
        Ok(SharedLock {
            h: self.new_sync(SyncKind::Lock, Some(name), 0)?,
        })
    }
    /// A new re-entrant lock ([`SharedRLock`]).
    ///
    /// # Errors
    ///
    /// As [`lock`](Manager::lock).
    pub fn rlock(&self) -> Result<SharedRLock, ManagerError> {
        Ok(SharedRLock {
            h: self.new_sync(SyncKind::RLock, None, 0)?,
        })
    }
    /// The re-entrant lock called `name` (get or make).
    ///
    /// # Errors
    ///
    /// As [`lock`](Manager::lock).
    pub fn rlock_named(&self, name: &str) -> Result<SharedRLock, ManagerError> {
        Ok(SharedRLock {
            h: self.new_sync(SyncKind::RLock, Some(name), 0)?,
        })
    }
    /// A new semaphore with value `n` ([`SharedSemaphore`]).
    ///
    /// # Errors
    ///
    /// As [`lock`](Manager::lock).
    pub fn semaphore(&self, n: u32) -> Result<SharedSemaphore, ManagerError> {
        Ok(SharedSemaphore {
            h: self.new_sync(SyncKind::Semaphore, None, n.into())?,
        })
    }
    /// The semaphore called `name` (get, or make with value `n`).
    ///
    /// # Errors
    ///
    /// As [`lock`](Manager::lock).
    pub fn semaphore_named(&self, name: &str, n: u32) -> Result<SharedSemaphore, ManagerError> {
        Ok(SharedSemaphore {
            h: self.new_sync(SyncKind::Semaphore, Some(name), n.into())?,
        })
    }
    /// A new bounded semaphore with value `n`: a release above `n` is refused.
    ///
    /// # Errors
    ///
    /// As [`lock`](Manager::lock).
    pub fn bounded_semaphore(&self, n: u32) -> Result<SharedSemaphore, ManagerError> {
        Ok(SharedSemaphore {
            h: self.new_sync(SyncKind::BoundedSemaphore, None, n.into())?,
        })
    }
    /// The bounded semaphore called `name` (get, or make with value `n`).
    ///
    /// # Errors
    ///
    /// As [`lock`](Manager::lock).
    pub fn bounded_semaphore_named(
        &self,
        name: &str,
        n: u32,
    ) -> Result<SharedSemaphore, ManagerError> {
        Ok(SharedSemaphore {
            h: self.new_sync(SyncKind::BoundedSemaphore, Some(name), n.into())?,
        })
    }
    /// A new condition with its own re-entrant lock ([`SharedCondition`]).
    ///
    /// # Errors
    ///
    /// As [`lock`](Manager::lock).
    pub fn condition(&self) -> Result<SharedCondition, ManagerError> {
        Ok(SharedCondition {
            h: self.new_sync(SyncKind::Condition, None, 0)?,
        })
    }
    /// The condition called `name` (get or make).
    ///
    /// # Errors
    ///
    /// As [`lock`](Manager::lock).
    pub fn condition_named(&self, name: &str) -> Result<SharedCondition, ManagerError> {
        Ok(SharedCondition {
            h: self.new_sync(SyncKind::Condition, Some(name), 0)?,
        })
    }
    /// A new event, not set ([`SharedEvent`]).
    ///
    /// # Errors
    ///
    /// As [`lock`](Manager::lock).
    pub fn event(&self) -> Result<SharedEvent, ManagerError> {
        Ok(SharedEvent {
            h: self.new_sync(SyncKind::Event, None, 0)?,
        })
    }
    /// The event called `name` (get or make).
    ///
    /// # Errors
    ///
    /// As [`lock`](Manager::lock).
    pub fn event_named(&self, name: &str) -> Result<SharedEvent, ManagerError> {
        Ok(SharedEvent {
            h: self.new_sync(SyncKind::Event, Some(name), 0)?,
        })
    }
    /// A new barrier for `parties` clients ([`SharedBarrier`]).
    ///
    /// # Errors
    ///
    /// [`ManagerError::Refused`] for 0 parties; as [`lock`](Manager::lock).
    pub fn barrier(&self, parties: usize) -> Result<SharedBarrier, ManagerError> {
        Ok(SharedBarrier {
            h: self.new_sync(SyncKind::Barrier, None, parties as u64)?,
        })
    }
    /// The barrier called `name` (get, or make for `parties`).
    ///
    /// # Errors
    ///
    /// As [`barrier`](Manager::barrier).
    pub fn barrier_named(&self, name: &str, parties: usize) -> Result<SharedBarrier, ManagerError> {
        Ok(SharedBarrier {
            h: self.new_sync(SyncKind::Barrier, Some(name), parties as u64)?,
        })
    }
    /// A new unbounded queue ([`SharedQueue`]).
    ///
    /// # Errors
    ///
    /// As [`lock`](Manager::lock).
    pub fn queue<T: Message>(&self) -> Result<SharedQueue<T>, ManagerError> {
        self.queue_bounded(0)
    }
    /// A new queue holding at most `maxsize` items (0: unbounded, as Python's).
    ///
    /// # Errors
    ///
    /// As [`lock`](Manager::lock).
    pub fn queue_bounded<T: Message>(
        &self,
        maxsize: usize,
    ) -> Result<SharedQueue<T>, ManagerError> {
        Ok(SharedQueue {
            h: self.new_sync(SyncKind::Queue, None, maxsize as u64)?,
            _t: PhantomData,
        })
    }
    /// The queue called `name` (get, or make with `maxsize`, 0: unbounded).
    ///
    /// # Errors
    ///
    /// As [`lock`](Manager::lock).
    pub fn queue_named<T: Message>(
        &self,
        name: &str,
        maxsize: usize,
    ) -> Result<SharedQueue<T>, ManagerError> {
        Ok(SharedQueue {
            h: self.new_sync(SyncKind::Queue, Some(name), maxsize as u64)?,
            _t: PhantomData,
        })
    }
    /// A new unbounded joinable queue ([`SharedJoinableQueue`]).
    ///
    /// # Errors
    ///
    /// As [`lock`](Manager::lock).
    pub fn joinable_queue<T: Message>(&self) -> Result<SharedJoinableQueue<T>, ManagerError> {
        Ok(SharedJoinableQueue {
            h: self.new_sync(SyncKind::JoinableQueue, None, 0)?,
            _t: PhantomData,
        })
    }
    /// The joinable queue called `name` (get, or make with `maxsize`, 0: unbounded).
    ///
    /// # Errors
    ///
    /// As [`lock`](Manager::lock).
    pub fn joinable_queue_named<T: Message>(
        &self,
        name: &str,
        maxsize: usize,
    ) -> Result<SharedJoinableQueue<T>, ManagerError> {
        Ok(SharedJoinableQueue {
            h: self.new_sync(SyncKind::JoinableQueue, Some(name), maxsize as u64)?,
            _t: PhantomData,
        })
    }
    /// A new value holding `v` ([`SharedValue`]).
    ///
    /// # Errors
    ///
    /// As [`lock`](Manager::lock); an encode error.
    pub fn value<T: Message>(&self, v: T) -> Result<SharedValue<T>, ManagerError> {
        Ok(SharedValue {
            h: self.new_with(Kind::Value, None, vec![enc(&v)?])?,
            _t: PhantomData,
        })
    }
    /// The value called `name`: made holding `v` if it does not exist yet (else `v` is
    /// not used).
    ///
    /// # Errors
    ///
    /// As [`value`](Manager::value).
    pub fn value_named<T: Message>(
        &self,
        name: &str,
        v: T,
    ) -> Result<SharedValue<T>, ManagerError> {
        Ok(SharedValue {
            h: self.new_with(Kind::Value, Some(name), vec![enc(&v)?])?,
            _t: PhantomData,
        })
    }
    /// A new array holding `items` ([`SharedArray`]); its length is fixed.
    ///
    /// # Errors
    ///
    /// As [`value`](Manager::value).
    pub fn array<T: Message>(
        &self,
        items: impl IntoIterator<Item = T>,
    ) -> Result<SharedArray<T>, ManagerError> {
        let init: Result<Vec<Bytes>, ManagerError> = items.into_iter().map(|x| enc(&x)).collect();
        Ok(SharedArray {
            h: self.new_with(Kind::Array, None, init?)?,
            _t: PhantomData,
        })
    }
    /// The array called `name`: made holding `items` if it does not exist yet (else
    /// `items` are not used).
    ///
    /// # Errors
    ///
    /// As [`value`](Manager::value).
    pub fn array_named<T: Message>(
        &self,
        name: &str,
        items: impl IntoIterator<Item = T>,
    ) -> Result<SharedArray<T>, ManagerError> {
        let init: Result<Vec<Bytes>, ManagerError> = items.into_iter().map(|x| enc(&x)).collect();
        Ok(SharedArray {
            h: self.new_with(Kind::Array, Some(name), init?)?,
            _t: PhantomData,
        })
    }
}
