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

impl<K: Message, V: Message> SharedDict<K, V> {
    /// As [`insert`](Self::insert), as a future: one round trip without blocking a thread
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
    /// As [`insert`](Self::insert); [`ManagerError::Timeout`] by the call timeout, if the
    /// manager has one.
    ///
    /// # Examples
    ///
    /// ```
    /// use procactor::Manager;
    /// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     use std::task::{Context, Poll, Wake, Waker};
    /// #     use std::sync::Arc;
    /// #     struct T(std::thread::Thread);
    /// #     impl Wake for T { fn wake(self: Arc<Self>) { self.0.unpark() } }
    /// #     let w = Waker::from(Arc::new(T(std::thread::current())));
    /// #     let mut f = std::pin::pin!(f);
    /// #     loop {
    /// #         if let Poll::Ready(v) = f.as_mut().poll(&mut Context::from_waker(&w)) { return v; }
    /// #         std::thread::park();
    /// #     }
    /// # }
    ///
    /// fn main() {
    ///     procactor::init();
    ///     let mgr = Manager::start().unwrap();
    ///     let d = mgr.dict::<String, u32>().unwrap();
    ///     // any executor: tokio, `futures::executor::block_on`, …
    ///     block_on(async {
    ///         d.insert_async("a".into(), 1).await.unwrap();
    ///         assert_eq!(d.get_async(&"a".into()).await.unwrap(), Some(1));
    ///     });
    /// }
    /// ```
    pub async fn insert_async(&self, k: K, v: V) -> Result<Option<V>, ManagerError> {
        self.h
            .opt_async(Req::DInsert(self.h.id, enc(&k)?, enc(&v)?))
            .await
    }
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
    pub async fn get_async(&self, k: &K) -> Result<Option<V>, ManagerError> {
        self.h.opt_async(Req::DGet(self.h.id, enc(k)?)).await
    }
    /// As [`remove`](Self::remove), as a future: one round trip without blocking a thread
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
    /// As [`remove`](Self::remove); [`ManagerError::Timeout`] by the call timeout, if the
    /// manager has one.
    pub async fn remove_async(&self, k: &K) -> Result<Option<V>, ManagerError> {
        self.h.opt_async(Req::DRemove(self.h.id, enc(k)?)).await
    }
    /// As [`contains_key`](Self::contains_key), as a future: one round trip without blocking a thread
    /// (see [async calls](crate::manager#async-calls)).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it changes nothing, and an answer that comes after the future was
    /// dropped is never taken for another call's.
    ///
    /// # Errors
    ///
    /// As [`contains_key`](Self::contains_key); [`ManagerError::Timeout`] by the call timeout, if the
    /// manager has one.
    pub async fn contains_key_async(&self, k: &K) -> Result<bool, ManagerError> {
        match self
            .h
            .call_async(Req::DContains(self.h.id, enc(k)?))
            .await?
        {
            Resp::Bool(b) => Ok(b),
            r => Err(unexpected(r)),
        }
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
    /// As [`keys`](Self::keys), as a future: one round trip without blocking a thread
    /// (see [async calls](crate::manager#async-calls)).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it changes nothing, and an answer that comes after the future was
    /// dropped is never taken for another call's.
    ///
    /// # Errors
    ///
    /// As [`keys`](Self::keys); [`ManagerError::Timeout`] by the call timeout, if the
    /// manager has one.
    pub async fn keys_async(&self) -> Result<Vec<K>, ManagerError> {
        self.h.many_async(Req::DKeys(self.h.id)).await
    }
    /// As [`values`](Self::values), as a future: one round trip without blocking a thread
    /// (see [async calls](crate::manager#async-calls)).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it changes nothing, and an answer that comes after the future was
    /// dropped is never taken for another call's.
    ///
    /// # Errors
    ///
    /// As [`values`](Self::values); [`ManagerError::Timeout`] by the call timeout, if the
    /// manager has one.
    pub async fn values_async(&self) -> Result<Vec<V>, ManagerError> {
        self.h.many_async(Req::DValues(self.h.id)).await
    }
    /// As [`items`](Self::items), as a future: one round trip without blocking a thread
    /// (see [async calls](crate::manager#async-calls)).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it changes nothing, and an answer that comes after the future was
    /// dropped is never taken for another call's.
    ///
    /// # Errors
    ///
    /// As [`items`](Self::items); [`ManagerError::Timeout`] by the call timeout, if the
    /// manager has one.
    pub async fn items_async(&self) -> Result<Vec<(K, V)>, ManagerError> {
        match self.h.call_async(Req::DItems(self.h.id)).await? {
            Resp::Pairs(v) => v.iter().map(|(k, v)| Ok((dec(k)?, dec(v)?))).collect(),
            r => Err(unexpected(r)),
        }
    }
    /// As [`update`](Self::update), as a future: one round trip without blocking a thread
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
    /// As [`update`](Self::update); [`ManagerError::Timeout`] by the call timeout, if the
    /// manager has one.
    pub async fn update_async(
        &self,
        kvs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<(), ManagerError> {
        let kvs: Result<Vec<(Bytes, Bytes)>, ManagerError> = kvs
            .into_iter()
            .map(|(k, v)| Ok((enc(&k)?, enc(&v)?)))
            .collect();
        self.h.unit_async(Req::DUpdate(self.h.id, kvs?)).await
    }
    /// As [`clear`](Self::clear), as a future: one round trip without blocking a thread
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
    /// As [`clear`](Self::clear); [`ManagerError::Timeout`] by the call timeout, if the
    /// manager has one.
    pub async fn clear_async(&self) -> Result<(), ManagerError> {
        self.h.unit_async(Req::Clear(self.h.id)).await
    }
    /// As [`to_map`](Self::to_map), as a future: one round trip without blocking a
    /// thread.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it changes nothing, and an answer that comes after the future was
    /// dropped is never taken for another call's.
    ///
    /// # Errors
    ///
    /// As [`to_map`](Self::to_map).
    pub async fn to_map_async(&self) -> Result<HashMap<K, V>, ManagerError>
    where
        K: Eq + std::hash::Hash,
    {
        Ok(self.items_async().await?.into_iter().collect())
    }
    /// The same as [`update_async`](Self::update_async) (the `Extend` spelling).
    ///
    /// # Cancel safety
    ///
    /// Dropped once its request is sent, the change may or may not be applied (the
    /// server applies a request it received); a late answer is never taken for
    /// another call's, and nothing stays locked.
    ///
    /// # Errors
    ///
    /// As [`update`](Self::update).
    pub async fn extend_async(
        &self,
        kvs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<(), ManagerError> {
        self.update_async(kvs).await
    }
}

impl<T: Message> SharedList<T> {
    /// As [`push`](Self::push), as a future: one round trip without blocking a thread
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
    /// As [`push`](Self::push); [`ManagerError::Timeout`] by the call timeout, if the
    /// manager has one.
    pub async fn push_async(&self, x: T) -> Result<(), ManagerError> {
        self.h.unit_async(Req::LPush(self.h.id, enc(&x)?)).await
    }
    /// As [`pop`](Self::pop), as a future: one round trip without blocking a thread
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
    /// As [`pop`](Self::pop); [`ManagerError::Timeout`] by the call timeout, if the
    /// manager has one.
    pub async fn pop_async(&self) -> Result<Option<T>, ManagerError> {
        self.h.opt_async(Req::LPop(self.h.id)).await
    }
    /// As [`insert`](Self::insert), as a future: one round trip without blocking a
    /// thread.
    ///
    /// # Cancel safety
    ///
    /// Dropped once its request is sent, the change may or may not be applied (the
    /// server applies a request it received); a late answer is never taken for
    /// another call's, and nothing stays locked.
    ///
    /// # Errors
    ///
    /// As [`insert`](Self::insert).
    pub async fn insert_async(&self, i: usize, x: T) -> Result<(), ManagerError> {
        self.h
            .unit_async(Req::LInsert(self.h.id, i as u64, enc(&x)?))
            .await
    }
    /// As [`remove`](Self::remove), as a future: one round trip without blocking a
    /// thread.
    ///
    /// # Cancel safety
    ///
    /// Dropped once its request is sent, the change may or may not be applied (the
    /// server applies a request it received); a late answer is never taken for
    /// another call's, and nothing stays locked.
    ///
    /// # Errors
    ///
    /// As [`remove`](Self::remove).
    pub async fn remove_async(&self, i: usize) -> Result<T, ManagerError> {
        match self.h.call_async(Req::LRemove(self.h.id, i as u64)).await? {
            Resp::One(b) => dec(&b),
            r => Err(unexpected(r)),
        }
    }
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
    pub async fn set_async(&self, i: usize, x: T) -> Result<(), ManagerError> {
        self.h
            .unit_async(Req::LSet(self.h.id, i as u64, enc(&x)?))
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
    /// As [`extend`](Self::extend), as a future: one round trip without blocking a thread
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
    /// As [`extend`](Self::extend); [`ManagerError::Timeout`] by the call timeout, if the
    /// manager has one.
    pub async fn extend_async(&self, xs: impl IntoIterator<Item = T>) -> Result<(), ManagerError> {
        let xs: Result<Vec<Bytes>, ManagerError> = xs.into_iter().map(|x| enc(&x)).collect();
        self.h.unit_async(Req::LExtend(self.h.id, xs?)).await
    }
    /// As [`clear`](Self::clear), as a future: one round trip without blocking a thread
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
    /// As [`clear`](Self::clear); [`ManagerError::Timeout`] by the call timeout, if the
    /// manager has one.
    pub async fn clear_async(&self) -> Result<(), ManagerError> {
        self.h.unit_async(Req::Clear(self.h.id)).await
    }
}

impl Namespace {
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
    pub async fn set_async<T: Serialize + ?Sized>(
        &self,
        name: &str,
        v: &T,
    ) -> Result<(), ManagerError> {
        let b = enc(v)?;
        self.h
            .unit_async(Req::NSet(self.h.id, name.to_string(), b))
            .await
    }
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
    pub async fn get_async<T: Message>(&self, name: &str) -> Result<T, ManagerError> {
        self.h
            .opt_async(Req::NGet(self.h.id, name.to_string()))
            .await?
            .ok_or_else(|| ManagerError::Refused(format!("the namespace has no `{name}`")))
    }
    /// As [`remove`](Self::remove), as a future: one round trip without blocking a thread
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
    /// As [`remove`](Self::remove); [`ManagerError::Timeout`] by the call timeout, if the
    /// manager has one.
    pub async fn remove_async(&self, name: &str) -> Result<bool, ManagerError> {
        match self
            .h
            .call_async(Req::NRemove(self.h.id, name.to_string()))
            .await?
        {
            Resp::Opt(o) => Ok(o.is_some()),
            r => Err(unexpected(r)),
        }
    }
    /// As [`names`](Self::names), as a future: one round trip without blocking a thread
    /// (see [async calls](crate::manager#async-calls)).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it changes nothing, and an answer that comes after the future was
    /// dropped is never taken for another call's.
    ///
    /// # Errors
    ///
    /// As [`names`](Self::names); [`ManagerError::Timeout`] by the call timeout, if the
    /// manager has one.
    pub async fn names_async(&self) -> Result<Vec<String>, ManagerError> {
        match self.h.call_async(Req::NNames(self.h.id)).await? {
            Resp::Names(v) => Ok(v),
            r => Err(unexpected(r)),
        }
    }
}
