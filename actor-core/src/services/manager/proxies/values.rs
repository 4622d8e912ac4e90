//! The proxies of a manager's values and arrays.

use super::super::client::Handle;
use super::super::{dec, enc, unexpected, Req, Resp};
use super::super::{Invariant, ManagerError};
use crate::Message;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::marker::PhantomData;

// ------------------------------------------------------------------ value, array

/// One value in a manager (Python's `Manager().Value(typecode, v)`): `get` and `set`,
/// one round trip each, over the fast local path like a dict.
///
/// Like Python's manager `Value`, it has no lock: a read-modify-write from several
/// clients needs a [`SharedLock`](crate::manager::SharedLock) around it.
pub struct SharedValue<T> {
    pub(super) h: Handle,
    pub(super) _t: PhantomData<Invariant<T>>,
}
proxy_common!(SharedValue<T>);

impl<T: Message> SharedValue<T> {
    /// The value now.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Disconnected`] when the server is gone; a decode error.
    pub fn get(&self) -> Result<T, ManagerError> {
        match self.h.call(Req::VGet(self.h.id))? {
            Resp::One(b) => dec(&b),
            r => Err(unexpected(r)),
        }
    }
    /// Replaces the value.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Disconnected`] when the server is gone; an encode error.
    pub fn set(&self, v: T) -> Result<(), ManagerError> {
        self.h.unit(Req::VSet(self.h.id, enc(&v)?))
    }
}

/// A fixed-length array in a manager (Python's `Manager().Array(typecode, seq)`): item
/// `get`/`set`, one round trip each.
pub struct SharedArray<T> {
    pub(super) h: Handle,
    pub(super) _t: PhantomData<Invariant<T>>,
}
proxy_common!(SharedArray<T>);

impl<T: Message> SharedArray<T> {
    /// Item `i`, `None` out of range.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Disconnected`] when the server is gone; a decode error.
    pub fn get(&self, i: usize) -> Result<Option<T>, ManagerError> {
        self.h.opt(Req::LGet(self.h.id, i as u64))
    }
    /// Replaces item `i`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Refused`] out of range (Python's `IndexError`); as
    /// [`get`](SharedArray::get).
    pub fn set(&self, i: usize, v: T) -> Result<(), ManagerError> {
        self.h.unit(Req::LSet(self.h.id, i as u64, enc(&v)?))
    }
    /// Its length.
    ///
    /// # Errors
    ///
    /// As [`get`](SharedArray::get).
    pub fn len(&self) -> Result<usize, ManagerError> {
        self.h.count()
    }
    /// Whether its length is 0.
    ///
    /// # Errors
    ///
    /// As [`get`](SharedArray::get).
    pub fn is_empty(&self) -> Result<bool, ManagerError> {
        Ok(self.len()? == 0)
    }
    /// A snapshot as a local `Vec` (Python's `a[:]`).
    ///
    /// # Errors
    ///
    /// As [`get`](SharedArray::get).
    pub fn to_vec(&self) -> Result<Vec<T>, ManagerError> {
        self.h.many(Req::LAll(self.h.id))
    }
}

impl<T: Message> SharedValue<T> {
    /// As [`get`](Self::get), as a future: one round trip without blocking a thread
    /// (see [async calls](crate::manager#async-calls)).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it changes nothing, and an answer that comes after the future was
    /// dropped is never taken for another call's.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get); [`ManagerError::Timeout`] by the call timeout, if the
    /// manager has one.
    pub async fn get_async(&self) -> Result<T, ManagerError> {
        match self.h.call_async(Req::VGet(self.h.id)).await? {
            Resp::One(b) => dec(&b),
            r => Err(unexpected(r)),
        }
    }
    /// As [`set`](Self::set), as a future: one round trip without blocking a thread
    /// (see [async calls](crate::manager#async-calls)).
    ///
    /// # Cancel safety
    ///
    /// Dropped once its request is sent, the change may or may not be applied (the
    /// server applies a request it received); a late answer is never taken for
    /// another call's, and nothing stays locked.
    ///
    /// # Errors
    ///
    /// As [`set`](Self::set); [`ManagerError::Timeout`] by the call timeout, if the
    /// manager has one.
    pub async fn set_async(&self, v: T) -> Result<(), ManagerError> {
        self.h.unit_async(Req::VSet(self.h.id, enc(&v)?)).await
    }
}

impl<T: Message> SharedArray<T> {
    /// As [`get`](Self::get), as a future: one round trip without blocking a thread
    /// (see [async calls](crate::manager#async-calls)).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it changes nothing, and an answer that comes after the future was
    /// dropped is never taken for another call's.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get); [`ManagerError::Timeout`] by the call timeout, if the
    /// manager has one.
    pub async fn get_async(&self, i: usize) -> Result<Option<T>, ManagerError> {
        self.h.opt_async(Req::LGet(self.h.id, i as u64)).await
    }
    /// As [`set`](Self::set), as a future: one round trip without blocking a thread
    /// (see [async calls](crate::manager#async-calls)).
    ///
    /// # Cancel safety
    ///
    /// Dropped once its request is sent, the change may or may not be applied (the
    /// server applies a request it received); a late answer is never taken for
    /// another call's, and nothing stays locked.
    ///
    /// # Errors
    ///
    /// As [`set`](Self::set); [`ManagerError::Timeout`] by the call timeout, if the
    /// manager has one.
    pub async fn set_async(&self, i: usize, v: T) -> Result<(), ManagerError> {
        self.h
            .unit_async(Req::LSet(self.h.id, i as u64, enc(&v)?))
            .await
    }
    /// As [`len`](Self::len), as a future: one round trip without blocking a thread
    /// (see [async calls](crate::manager#async-calls)).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it changes nothing, and an answer that comes after the future was
    /// dropped is never taken for another call's.
    ///
    /// # Errors
    ///
    /// As [`len`](Self::len); [`ManagerError::Timeout`] by the call timeout, if the
    /// manager has one.
    pub async fn len_async(&self) -> Result<usize, ManagerError> {
        self.h.count_async().await
    }
    /// As [`to_vec`](Self::to_vec), as a future: one round trip without blocking a thread
    /// (see [async calls](crate::manager#async-calls)).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it changes nothing, and an answer that comes after the future was
    /// dropped is never taken for another call's.
    ///
    /// # Errors
    ///
    /// As [`to_vec`](Self::to_vec); [`ManagerError::Timeout`] by the call timeout, if the
    /// manager has one.
    pub async fn to_vec_async(&self) -> Result<Vec<T>, ManagerError> {
        self.h.many_async(Req::LAll(self.h.id)).await
    }
}
