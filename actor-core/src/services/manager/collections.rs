//! The proxies of a manager's dicts, lists and namespaces.

use super::client::Handle;
use super::start::Manager;
use super::{dec, enc, unexpected, Kind, Req, Resp};
use super::{Invariant, ManagerError};
use crate::{Bytes, Message};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;

/// A dict in a manager (Python's `Manager().dict()`): a proxy; every call is one round
/// trip to the server. Keys compare by their CBOR encoding (see the module docs).
pub struct SharedDict<K, V> {
    h: Handle,
    _t: PhantomData<Invariant<(K, V)>>,
}
proxy_common!(SharedDict<K, V>);

impl<K: Message, V: Message> SharedDict<K, V> {
    /// Sets `k` to `v`; the value it had, if any.
    ///
    /// # Errors
    ///
    /// [`ManagerError`]: the server is gone, a value cannot be encoded, the old value is
    /// not a `V`.
    pub fn insert(&self, k: K, v: V) -> Result<Option<V>, ManagerError> {
        self.h.opt(Req::DInsert(self.h.id, enc(&k)?, enc(&v)?))
    }
    /// The value of `k`, `None` when it is not there.
    ///
    /// # Errors
    ///
    /// As [`insert`](SharedDict::insert).
    pub fn get(&self, k: &K) -> Result<Option<V>, ManagerError> {
        self.h.opt(Req::DGet(self.h.id, enc(k)?))
    }
    /// Removes `k`; the value it had.
    ///
    /// # Errors
    ///
    /// As [`insert`](SharedDict::insert).
    pub fn remove(&self, k: &K) -> Result<Option<V>, ManagerError> {
        self.h.opt(Req::DRemove(self.h.id, enc(k)?))
    }
    /// Whether `k` is there.
    ///
    /// # Errors
    ///
    /// As [`insert`](SharedDict::insert).
    pub fn contains_key(&self, k: &K) -> Result<bool, ManagerError> {
        match self.h.call(Req::DContains(self.h.id, enc(k)?))? {
            Resp::Bool(b) => Ok(b),
            r => Err(unexpected(r)),
        }
    }
    /// The number of entries.
    ///
    /// # Errors
    ///
    /// As [`insert`](SharedDict::insert).
    pub fn len(&self) -> Result<usize, ManagerError> {
        self.h.count()
    }
    /// Whether it is empty.
    ///
    /// # Errors
    ///
    /// As [`insert`](SharedDict::insert).
    pub fn is_empty(&self) -> Result<bool, ManagerError> {
        Ok(self.len()? == 0)
    }
    /// The keys (in the order of their encodings).
    ///
    /// # Errors
    ///
    /// As [`insert`](SharedDict::insert).
    pub fn keys(&self) -> Result<Vec<K>, ManagerError> {
        self.h.many(Req::DKeys(self.h.id))
    }
    /// The values (in the order of their keys' encodings).
    ///
    /// # Errors
    ///
    /// As [`insert`](SharedDict::insert).
    pub fn values(&self) -> Result<Vec<V>, ManagerError> {
        self.h.many(Req::DValues(self.h.id))
    }
    /// Every `(key, value)` (Python's `items()`).
    ///
    /// # Errors
    ///
    /// As [`insert`](SharedDict::insert).
    pub fn items(&self) -> Result<Vec<(K, V)>, ManagerError> {
        match self.h.call(Req::DItems(self.h.id))? {
            Resp::Pairs(v) => v.iter().map(|(k, v)| Ok((dec(k)?, dec(v)?))).collect(),
            r => Err(unexpected(r)),
        }
    }
    /// A snapshot as a local map (Python's `dict(d)`).
    ///
    /// # Errors
    ///
    /// As [`insert`](SharedDict::insert).
    pub fn to_map(&self) -> Result<HashMap<K, V>, ManagerError>
    where
        K: Eq + std::hash::Hash,
    {
        Ok(self.items()?.into_iter().collect())
    }
    /// Inserts every pair, in one round trip (Python's `update`).
    ///
    /// # Errors
    ///
    /// As [`insert`](SharedDict::insert).
    pub fn update(&self, kvs: impl IntoIterator<Item = (K, V)>) -> Result<(), ManagerError> {
        let kvs: Result<Vec<(Bytes, Bytes)>, ManagerError> = kvs
            .into_iter()
            .map(|(k, v)| Ok((enc(&k)?, enc(&v)?)))
            .collect();
        self.h.unit(Req::DUpdate(self.h.id, kvs?))
    }
    /// The same as [`update`](SharedDict::update) (the `Extend` spelling).
    ///
    /// # Errors
    ///
    /// As [`insert`](SharedDict::insert).
    pub fn extend(&self, kvs: impl IntoIterator<Item = (K, V)>) -> Result<(), ManagerError> {
        self.update(kvs)
    }
    /// Removes every entry.
    ///
    /// # Errors
    ///
    /// As [`insert`](SharedDict::insert).
    pub fn clear(&self) -> Result<(), ManagerError> {
        self.h.unit(Req::Clear(self.h.id))
    }
}

/// A list in a manager (Python's `Manager().list()`): a proxy; every call is one round
/// trip to the server.
pub struct SharedList<T> {
    h: Handle,
    _t: PhantomData<Invariant<T>>,
}
proxy_common!(SharedList<T>);

impl<T: Message> SharedList<T> {
    /// Appends `x` (Python's `append`).
    ///
    /// # Errors
    ///
    /// [`ManagerError`]: the server is gone, a value cannot be encoded or decoded.
    pub fn push(&self, x: T) -> Result<(), ManagerError> {
        self.h.unit(Req::LPush(self.h.id, enc(&x)?))
    }
    /// Removes and returns the last item.
    ///
    /// # Errors
    ///
    /// As [`push`](SharedList::push).
    pub fn pop(&self) -> Result<Option<T>, ManagerError> {
        self.h.opt(Req::LPop(self.h.id))
    }
    /// Item `i`, `None` out of range.
    ///
    /// # Errors
    ///
    /// As [`push`](SharedList::push).
    pub fn get(&self, i: usize) -> Result<Option<T>, ManagerError> {
        self.h.opt(Req::LGet(self.h.id, i as u64))
    }
    /// Replaces item `i`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Refused`] out of range; as [`push`](SharedList::push).
    pub fn set(&self, i: usize, x: T) -> Result<(), ManagerError> {
        self.h.unit(Req::LSet(self.h.id, i as u64, enc(&x)?))
    }
    /// Inserts `x` before item `i` (`i == len` appends).
    ///
    /// # Errors
    ///
    /// [`ManagerError::Refused`] when `i > len`; as [`push`](SharedList::push).
    pub fn insert(&self, i: usize, x: T) -> Result<(), ManagerError> {
        self.h.unit(Req::LInsert(self.h.id, i as u64, enc(&x)?))
    }
    /// Removes and returns item `i`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Refused`] out of range; as [`push`](SharedList::push).
    pub fn remove(&self, i: usize) -> Result<T, ManagerError> {
        match self.h.call(Req::LRemove(self.h.id, i as u64))? {
            Resp::One(b) => dec(&b),
            r => Err(unexpected(r)),
        }
    }
    /// The number of items.
    ///
    /// # Errors
    ///
    /// As [`push`](SharedList::push).
    pub fn len(&self) -> Result<usize, ManagerError> {
        self.h.count()
    }
    /// Whether it is empty.
    ///
    /// # Errors
    ///
    /// As [`push`](SharedList::push).
    pub fn is_empty(&self) -> Result<bool, ManagerError> {
        Ok(self.len()? == 0)
    }
    /// Appends every item, in one round trip.
    ///
    /// # Errors
    ///
    /// As [`push`](SharedList::push).
    pub fn extend(&self, xs: impl IntoIterator<Item = T>) -> Result<(), ManagerError> {
        let xs: Result<Vec<Bytes>, ManagerError> = xs.into_iter().map(|x| enc(&x)).collect();
        self.h.unit(Req::LExtend(self.h.id, xs?))
    }
    /// A snapshot as a local `Vec` (Python's `list(l)`).
    ///
    /// # Errors
    ///
    /// As [`push`](SharedList::push).
    pub fn to_vec(&self) -> Result<Vec<T>, ManagerError> {
        self.h.many(Req::LAll(self.h.id))
    }
    /// Removes every item.
    ///
    /// # Errors
    ///
    /// As [`push`](SharedList::push).
    pub fn clear(&self) -> Result<(), ManagerError> {
        self.h.unit(Req::Clear(self.h.id))
    }
}

/// A namespace in a manager (Python's `Manager().Namespace()`): named values of any
/// type.
#[derive(Clone, Serialize, Deserialize)]
pub struct Namespace {
    h: Handle,
}

impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Namespace").field("id", &self.h.id).finish()
    }
}

impl Namespace {
    /// Sets `name` to `v`.
    ///
    /// # Errors
    ///
    /// [`ManagerError`]: the server is gone, the value cannot be encoded.
    pub fn set<T: Serialize + ?Sized>(&self, name: &str, v: &T) -> Result<(), ManagerError> {
        self.h.unit(Req::NSet(self.h.id, name.to_string(), enc(v)?))
    }
    /// The value of `name`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Refused`] when `name` is not set (Python's `AttributeError`), a
    /// decode error when it holds another type.
    pub fn get<T: Message>(&self, name: &str) -> Result<T, ManagerError> {
        self.h
            .opt(Req::NGet(self.h.id, name.to_string()))?
            .ok_or_else(|| ManagerError::Refused(format!("the namespace has no `{name}`")))
    }
    /// Removes `name`; whether it was set.
    ///
    /// # Errors
    ///
    /// As [`set`](Namespace::set).
    pub fn remove(&self, name: &str) -> Result<bool, ManagerError> {
        match self.h.call(Req::NRemove(self.h.id, name.to_string()))? {
            Resp::Opt(o) => Ok(o.is_some()),
            r => Err(unexpected(r)),
        }
    }
    /// The names set, sorted.
    ///
    /// # Errors
    ///
    /// As [`set`](Namespace::set).
    pub fn names(&self) -> Result<Vec<String>, ManagerError> {
        match self.h.call(Req::NNames(self.h.id))? {
            Resp::Names(v) => Ok(v),
            r => Err(unexpected(r)),
        }
    }
}

impl Manager {
    /// A new, empty shared dict.
    ///
    /// # Errors
    ///
    /// The server is gone.
    pub fn dict<K: Message, V: Message>(&self) -> Result<SharedDict<K, V>, ManagerError> {
        Ok(SharedDict {
            h: self.new_obj(Kind::Dict, None)?,
            _t: PhantomData,
        })
    }
    /// The shared dict called `name`, made empty if it does not exist yet: how another
    /// client finds it.
    ///
    /// # Errors
    ///
    /// The server is gone.
    pub fn dict_named<K: Message, V: Message>(
        &self,
        name: &str,
    ) -> Result<SharedDict<K, V>, ManagerError> {
        Ok(SharedDict {
            h: self.new_obj(Kind::Dict, Some(name))?,
            _t: PhantomData,
        })
    }
    /// A new, empty shared list.
    ///
    /// # Errors
    ///
    /// The server is gone.
    pub fn list<T: Message>(&self) -> Result<SharedList<T>, ManagerError> {
        Ok(SharedList {
            h: self.new_obj(Kind::List, None)?,
            _t: PhantomData,
        })
    }
    /// The shared list called `name` (get or create).
    ///
    /// # Errors
    ///
    /// The server is gone.
    pub fn list_named<T: Message>(&self, name: &str) -> Result<SharedList<T>, ManagerError> {
        Ok(SharedList {
            h: self.new_obj(Kind::List, Some(name))?,
            _t: PhantomData,
        })
    }
    /// A new, empty namespace.
    ///
    /// # Errors
    ///
    /// The server is gone.
    pub fn namespace(&self) -> Result<Namespace, ManagerError> {
        Ok(Namespace {
            h: self.new_obj(Kind::Namespace, None)?,
        })
    }
    /// The namespace called `name` (get or create).
    ///
    /// # Errors
    ///
    /// The server is gone.
    pub fn namespace_named(&self, name: &str) -> Result<Namespace, ManagerError> {
        Ok(Namespace {
            h: self.new_obj(Kind::Namespace, Some(name))?,
        })
    }
}
