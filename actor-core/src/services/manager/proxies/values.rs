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
/// clients needs a [`SharedLock`] around it.
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
