//! The server's dicts, lists, namespaces, values and arrays, kept as CBOR bytes.

use super::{refused, Kind, Req, Resp};
use crate::Bytes;
use std::collections::{BTreeMap, HashMap};

pub(super) enum Obj {
    Dict(BTreeMap<Bytes, Bytes>),
    List(Vec<Bytes>),
    Ns(BTreeMap<String, Bytes>),
    Value(Bytes),
    Array(Vec<Bytes>),
}

#[derive(Default)]
pub(super) struct Store {
    pub(super) objs: HashMap<u64, Obj>,
    pub(super) names: HashMap<(Kind, String), u64>,
    pub(super) next: u64,
}

impl Store {
    pub(super) fn apply(&mut self, req: Req) -> Resp {
        use Req::*;
        match req {
            VGet(id) => match self.objs.get(&id) {
                Some(Obj::Value(v)) => Resp::One(v.clone()),
                Some(_) => refused(format!("object {id} is not a value")),
                None => no_object(id),
            },
            VSet(id, x) => match self.objs.get_mut(&id) {
                Some(Obj::Value(v)) => {
                    *v = x;
                    Resp::Unit
                }
                Some(_) => refused(format!("object {id} is not a value")),
                None => no_object(id),
            },
            Len(id) => match self.objs.get(&id) {
                Some(Obj::Dict(d)) => Resp::Count(d.len() as u64),
                Some(Obj::List(l)) | Some(Obj::Array(l)) => Resp::Count(l.len() as u64),
                Some(Obj::Ns(n)) => Resp::Count(n.len() as u64),
                Some(Obj::Value(_)) => refused(format!("object {id} is a value")),
                None => no_object(id),
            },
            Clear(id) => match self.objs.get_mut(&id) {
                Some(Obj::Dict(d)) => {
                    d.clear();
                    Resp::Unit
                }
                Some(Obj::List(l)) => {
                    l.clear();
                    Resp::Unit
                }
                Some(Obj::Ns(n)) => {
                    n.clear();
                    Resp::Unit
                }
                Some(_) => refused(format!("object {id} cannot be cleared")),
                None => no_object(id),
            },
            DInsert(id, k, v) => self.dict(id, |d| Resp::Opt(d.insert(k, v))),
            DGet(id, k) => self.dict(id, |d| Resp::Opt(d.get(&k).cloned())),
            DRemove(id, k) => self.dict(id, |d| Resp::Opt(d.remove(&k))),
            DContains(id, k) => self.dict(id, |d| Resp::Bool(d.contains_key(&k))),
            DKeys(id) => self.dict(id, |d| Resp::Many(d.keys().cloned().collect())),
            DValues(id) => self.dict(id, |d| Resp::Many(d.values().cloned().collect())),
            DItems(id) => self.dict(id, |d| {
                Resp::Pairs(d.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            }),
            DUpdate(id, kvs) => self.dict(id, |d| {
                d.extend(kvs);
                Resp::Unit
            }),
            LPush(id, v) => self.list(id, |l| {
                l.push(v);
                Resp::Unit
            }),
            LPop(id) => self.list(id, |l| Resp::Opt(l.pop())),
            LGet(id, i) => self.seq(id, |l| Resp::Opt(l.get(i as usize).cloned())),
            LSet(id, i, v) => self.seq(id, |l| match l.get_mut(i as usize) {
                Some(slot) => {
                    *slot = v;
                    Resp::Unit
                }
                None => out_of_range(i, l.len()),
            }),
            LInsert(id, i, v) => self.list(id, |l| {
                if i as usize > l.len() {
                    return out_of_range(i, l.len());
                }
                l.insert(i as usize, v);
                Resp::Unit
            }),
            LRemove(id, i) => self.list(id, |l| {
                if i as usize >= l.len() {
                    return out_of_range(i, l.len());
                }
                Resp::One(l.remove(i as usize))
            }),
            LExtend(id, vs) => self.list(id, |l| {
                l.extend(vs);
                Resp::Unit
            }),
            LAll(id) => self.seq(id, |l| Resp::Many(l.clone())),
            NSet(id, n, v) => self.ns(id, |m| {
                m.insert(n, v);
                Resp::Unit
            }),
            NGet(id, n) => self.ns(id, |m| Resp::Opt(m.get(&n).cloned())),
            NRemove(id, n) => self.ns(id, |m| Resp::Opt(m.remove(&n))),
            NNames(id) => self.ns(id, |m| Resp::Names(m.keys().cloned().collect())),
            Shutdown => Resp::Unit,
            New(..) | NewWith(..) | RemoveNamed(_) | ObjectCount | Ref(_) | Sync(_) | Mux(..) => {
                refused("not a request about one object")
            }
        }
    }

    pub(super) fn create(&mut self, kind: Kind, name: Option<String>, init: Vec<Bytes>) -> Resp {
        if let Some(n) = &name {
            if let Some(&id) = self.names.get(&(kind, n.clone())) {
                return Resp::Id(id);
            }
        }
        let obj = match kind {
            Kind::Dict => Obj::Dict(BTreeMap::new()),
            Kind::List => Obj::List(init),
            Kind::Namespace => Obj::Ns(BTreeMap::new()),
            Kind::Value => match init.into_iter().next() {
                Some(v) => Obj::Value(v),
                None => return refused("a value needs its first contents"),
            },
            Kind::Array => Obj::Array(init),
        };
        self.next += 1;
        let id = self.next;
        self.objs.insert(id, obj);
        if let Some(n) = name {
            self.names.insert((kind, n), id);
        }
        Resp::Id(id)
    }

    /// A list or an array (the operations both have: get, set, all, len).
    pub(super) fn seq(&mut self, id: u64, f: impl FnOnce(&mut Vec<Bytes>) -> Resp) -> Resp {
        match self.objs.get_mut(&id) {
            Some(Obj::List(l)) | Some(Obj::Array(l)) => f(l),
            Some(_) => refused(format!("object {id} is not a list or an array")),
            None => no_object(id),
        }
    }

    pub(super) fn dict(
        &mut self,
        id: u64,
        f: impl FnOnce(&mut BTreeMap<Bytes, Bytes>) -> Resp,
    ) -> Resp {
        match self.objs.get_mut(&id) {
            Some(Obj::Dict(d)) => f(d),
            Some(_) => refused(format!("object {id} is not a dict")),
            None => no_object(id),
        }
    }
    pub(super) fn list(&mut self, id: u64, f: impl FnOnce(&mut Vec<Bytes>) -> Resp) -> Resp {
        match self.objs.get_mut(&id) {
            Some(Obj::List(l)) => f(l),
            Some(_) => refused(format!("object {id} is not a list")),
            None => no_object(id),
        }
    }
    pub(super) fn ns(
        &mut self,
        id: u64,
        f: impl FnOnce(&mut BTreeMap<String, Bytes>) -> Resp,
    ) -> Resp {
        match self.objs.get_mut(&id) {
            Some(Obj::Ns(n)) => f(n),
            Some(_) => refused(format!("object {id} is not a namespace")),
            None => no_object(id),
        }
    }
}

pub(super) fn no_object(id: u64) -> Resp {
    refused(format!("no object {id} in this manager"))
}

pub(super) fn out_of_range(i: u64, len: usize) -> Resp {
    refused(format!("index {i} out of range for a list of {len}"))
}
