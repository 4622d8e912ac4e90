//! Reference counts: an object lives while a proxy of it lives in some process (or while
//! it has a name).
//!
//! # Client side
//!
//! A process that holds proxies of a manager keeps **one reference connection** to it
//! (over the server's local socket name, or TCP for a remote manager), opened when it
//! first needs one, with a thread of its own that sends the reference operations in
//! order. Every proxy value holds a [`Ref`]: clones in one process share it (an `Arc`),
//! and when the last of them drops, a decrement is queued for that thread — a drop
//! never waits for the server. The server counts the references of each connection, so
//! when the process ends (even by `SIGKILL`: the kernel closes its sockets) the server
//! drops every reference it held.
//!
//! A proxy that travels (a `Process` argument, a `Pool` task, a queue, a value stored
//! in the manager) is **lent**: encoding it asks the server for one more reference held
//! by the sender's reference connection under a random token, and decoding it claims
//! that token for the receiver's connection. A token claimed again (the same bytes
//! decoded twice) adds a reference if the object still exists. A token never claimed
//! (the bytes were never decoded) stays until the sender's process ends.

use super::ManagerError;
use crate::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Which of the server's two stores an object lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(super) enum Space {
    /// Dicts, lists, namespaces, values, arrays.
    Data,
    /// Locks, semaphores, conditions, events, barriers, queues.
    Sync,
}

/// An object of a server.
pub(super) type Oid = (Space, u64);

/// A reference operation, sent over a process's reference connection.
#[derive(Debug, Serialize, Deserialize)]
pub(super) enum RefReq {
    /// This connection holds references: the answer is its number, which creations
    /// name as the holder of the new object's first reference.
    Hello,
    /// One reference less.
    Dec(Oid),
    /// One reference more, held by this connection under `token` until claimed.
    Lend(Oid, u64),
    /// Takes the reference lent under `token` (or, if it was claimed already, one
    /// more, while the object exists).
    Claim(Oid, u64),
}

// ------------------------------------------------------------------ server

/// The server's reference counts.
#[derive(Default)]
pub(super) struct Refs {
    count: HashMap<Oid, u64>,
    /// live reference connections and what each holds
    holders: HashMap<u64, HashMap<Oid, u64>>,
    /// lent references: token -> (object, lender)
    lent: HashMap<u64, (Oid, u64)>,
    lent_by: HashMap<u64, HashSet<u64>>,
    named: HashSet<Oid>,
}

/// What the caller must free (objects whose last reference went).
pub(super) type Freed = Vec<Oid>;

impl Refs {
    pub(super) fn hello(&mut self, conn: u64) {
        self.holders.entry(conn).or_default();
    }

    pub(super) fn exists(&self, o: Oid) -> bool {
        self.count.contains_key(&o) || self.named.contains(&o)
    }

    pub(super) fn set_named(&mut self, o: Oid) {
        self.named.insert(o);
    }

    /// Unnames `o`; whether it must be freed now.
    pub(super) fn unname(&mut self, o: Oid) -> bool {
        self.named.remove(&o) && !self.count.contains_key(&o)
    }

    /// One reference more held by `conn`; false when `conn` is not a holder.
    pub(super) fn add(&mut self, conn: u64, o: Oid) -> bool {
        let Some(h) = self.holders.get_mut(&conn) else {
            return false;
        };
        *h.entry(o).or_insert(0) += 1;
        *self.count.entry(o).or_insert(0) += 1;
        true
    }

    fn drop_one(&mut self, o: Oid, freed: &mut Freed) {
        if let Some(n) = self.count.get_mut(&o) {
            *n -= 1;
            if *n == 0 {
                self.count.remove(&o);
                if !self.named.contains(&o) {
                    freed.push(o);
                }
            }
        }
    }

    pub(super) fn dec(&mut self, conn: u64, o: Oid) -> Freed {
        let mut freed = Vec::new();
        if let Some(h) = self.holders.get_mut(&conn) {
            if let Some(n) = h.get_mut(&o) {
                *n -= 1;
                if *n == 0 {
                    h.remove(&o);
                }
                self.drop_one(o, &mut freed);
            }
        }
        freed
    }

    pub(super) fn lend(&mut self, conn: u64, o: Oid, token: u64) -> bool {
        if !self.holders.contains_key(&conn) || !self.exists(o) || self.lent.contains_key(&token) {
            return false;
        }
        *self.count.entry(o).or_insert(0) += 1;
        self.lent.insert(token, (o, conn));
        self.lent_by.entry(conn).or_default().insert(token);
        true
    }

    pub(super) fn claim(&mut self, conn: u64, o: Oid, token: u64) {
        if !self.holders.contains_key(&conn) {
            return;
        }
        match self.lent.get(&token) {
            Some(&(lent, lender)) if lent == o => {
                self.lent.remove(&token);
                if let Some(s) = self.lent_by.get_mut(&lender) {
                    s.remove(&token);
                }
                // the count stays: the reference changes holder
                if let Some(h) = self.holders.get_mut(&conn) {
                    *h.entry(o).or_insert(0) += 1;
                }
            }
            _ => {
                if self.exists(o) {
                    self.add(conn, o);
                }
            }
        }
    }

    /// `conn` ended: every reference it held or lent goes.
    pub(super) fn end(&mut self, conn: u64) -> Freed {
        let mut freed = Vec::new();
        for (o, n) in self.holders.remove(&conn).unwrap_or_default() {
            for _ in 0..n {
                self.drop_one(o, &mut freed);
            }
        }
        for token in self.lent_by.remove(&conn).unwrap_or_default() {
            if let Some((o, _)) = self.lent.remove(&token) {
                self.drop_one(o, &mut freed);
            }
        }
        freed
    }
}

// ------------------------------------------------------------------ client

/// How long an encoding waits for the server to record a lent reference, and a first
/// creation for the reference connection.
const LINK_WAIT: Duration = Duration::from_secs(30);

enum Op {
    Dec(Oid),
    Claim(Oid, u64),
    Lend(Oid, u64, crossbeam_channel::Sender<bool>),
}

/// A process's reference connection to one manager.
pub(super) struct Link {
    tx: crossbeam_channel::Sender<Op>,
    /// the connection's number at the server, once known
    holder: OnceLock<Result<u64, String>>,
    hello: Mutex<Option<crossbeam_channel::Receiver<Result<u64, String>>>>,
    /// its thread ended (the server is gone or the connection broke)
    closed: AtomicBool,
}

type Target = (String, Bytes);

/// This process's links, by manager (address, key); `pid` guards against copies
/// inherited through a fork.
static LINKS: Mutex<Option<(u32, Links)>> = Mutex::new(None);

type Links = HashMap<Target, Arc<Link>>;

/// The link to the manager at `address` with `key`, made (and its thread started) if
/// there is none yet.
pub(super) fn link(address: &str, key: &Bytes) -> Arc<Link> {
    let pid = std::process::id();
    let mut g = LINKS.lock().unwrap_or_else(|e| e.into_inner());
    if g.as_ref().is_none_or(|(p, _)| *p != pid) {
        *g = Some((pid, HashMap::new()));
    }
    let Some((_, map)) = g.as_mut() else {
        unreachable!("set just above")
    };
    let target = (address.to_string(), key.clone());
    if let Some(l) = map.get(&target) {
        if !l.closed.load(Ordering::Acquire) {
            return l.clone();
        }
        map.remove(&target);
    }
    let (tx, rx) = crossbeam_channel::unbounded();
    let (htx, hrx) = crossbeam_channel::bounded(1);
    let l = Arc::new(Link {
        tx,
        holder: OnceLock::new(),
        hello: Mutex::new(Some(hrx)),
        closed: AtomicBool::new(false),
    });
    let t = target.clone();
    let weak = Arc::downgrade(&l);
    let spawned = crate::runtime::thread_builder("procactor-manager-refs")
        .spawn(move || run_link(t, rx, htx, weak));
    if spawned.is_err() {
        let _ = l
            .holder
            .set(Err("could not start the reference thread".into()));
        l.closed.store(true, Ordering::Release);
    }
    map.insert(target, l.clone());
    l
}

impl Link {
    /// The connection's number at the server (waits for the connection, the first
    /// time).
    pub(super) fn holder(&self) -> Result<u64, ManagerError> {
        if let Some(h) = self.holder.get() {
            return h.clone().map_err(|_| ManagerError::Disconnected);
        }
        let mut g = self.hello.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(rx) = g.take() {
            let r = rx
                .recv_timeout(LINK_WAIT)
                .unwrap_or_else(|_| Err("no answer from the manager".into()));
            let _ = self.holder.set(r);
        }
        drop(g);
        match self.holder.get() {
            Some(Ok(h)) => Ok(*h),
            _ => Err(ManagerError::Disconnected),
        }
    }

    /// Lends a reference to `o` under a new token (an encoding of a proxy).
    pub(super) fn lend(&self, o: Oid) -> Result<u64, ManagerError> {
        let token = new_token()?;
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.tx
            .send(Op::Lend(o, token, tx))
            .map_err(|_| ManagerError::Disconnected)?;
        match rx.recv_timeout(LINK_WAIT) {
            Ok(true) => Ok(token),
            Ok(false) => Err(ManagerError::Refused(format!(
                "object {} is gone: the proxy cannot be sent",
                o.1
            ))),
            Err(_) => Err(ManagerError::Disconnected),
        }
    }
}

fn new_token() -> Result<u64, ManagerError> {
    let n = procactor_transports::conn::random_nonce()?;
    let mut b = [0u8; 8];
    b.copy_from_slice(&n[..8]);
    Ok(u64::from_le_bytes(b))
}

/// The link's thread: connects, says hello, then sends operations in order (each
/// answered) until the server is gone or every handle of the link dropped.
fn run_link(
    target: Target,
    rx: crossbeam_channel::Receiver<Op>,
    hello: crossbeam_channel::Sender<Result<u64, String>>,
    me: std::sync::Weak<Link>,
) {
    let fail = |why: String| {
        if let Some(l) = me.upgrade() {
            l.closed.store(true, Ordering::Release);
            let _ = l.holder.set(Err(why.clone()));
        }
        let _ = hello.send(Err(why));
    };
    let mut s = match super::calls::open_session(&target.0, &target.1) {
        Ok(s) => s,
        Err(e) => return fail(e.to_string()),
    };
    match super::calls::round_trip(&mut s, &super::Req::Ref(RefReq::Hello), None) {
        Ok(super::Resp::Id(h)) => {
            let _ = hello.send(Ok(h));
        }
        Ok(r) => return fail(format!("unexpected answer {r:?}")),
        Err((e, _)) => return fail(e.to_string()),
    }
    // the link stays while any `Link` handle or queued operation does
    while let Ok(op) = rx.recv() {
        let (req, answer) = match op {
            Op::Dec(o) => (RefReq::Dec(o), None),
            Op::Claim(o, t) => (RefReq::Claim(o, t), None),
            Op::Lend(o, t, a) => (RefReq::Lend(o, t), Some(a)),
        };
        match super::calls::round_trip(&mut s, &super::Req::Ref(req), None) {
            Ok(r) => {
                if let Some(a) = answer {
                    let _ = a.send(matches!(r, super::Resp::Bool(true)));
                }
            }
            Err(_) => {
                // the server is gone (or the connection broke, and with it every
                // reference it held): later links start afresh
                fail("the reference connection broke".into());
                return;
            }
        }
    }
}

/// One reference of this process to one object; the last clone's drop gives it back.
pub(super) struct Ref {
    link: Arc<Link>,
    pub(super) oid: Oid,
    pid: u32,
}

impl std::fmt::Debug for Ref {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ref").field("oid", &self.oid).finish()
    }
}

impl Ref {
    /// A reference the server counted already (a creation named this link's holder).
    pub(super) fn counted(link: Arc<Link>, oid: Oid) -> Arc<Ref> {
        Arc::new(Ref {
            link,
            oid,
            pid: std::process::id(),
        })
    }

    /// A reference decoded with `token`: claims it (queued, never waits).
    pub(super) fn claimed(link: Arc<Link>, oid: Oid, token: u64) -> Arc<Ref> {
        let _ = link.tx.send(Op::Claim(oid, token));
        Ref::counted(link, oid)
    }

    pub(super) fn lend(&self) -> Result<u64, ManagerError> {
        self.link.lend(self.oid)
    }
}

impl Drop for Ref {
    fn drop(&mut self) {
        // a copy inherited through a fork holds no reference of its own
        if self.pid == std::process::id() {
            let _ = self.link.tx.send(Op::Dec(self.oid));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Oid = (Space::Data, 1);

    #[test]
    fn counts_follow_holders_loans_and_claims() {
        let mut r = Refs::default();
        r.hello(1);
        r.hello(2);
        assert!(r.add(1, D));
        assert!(!r.add(9, D), "not a holder");
        assert!(r.lend(1, D, 77));
        assert!(r.dec(1, D).is_empty(), "the loan keeps it");
        r.claim(2, D, 77);
        assert_eq!(r.dec(2, D), vec![D]);
        // a holder that ends gives back what it held and lent
        assert!(r.add(1, D));
        assert!(r.lend(1, D, 78));
        assert_eq!(r.end(1), vec![D]);
        // a name keeps an object without references; unnaming frees it
        r.set_named(D);
        assert!(r.add(2, D));
        assert!(r.dec(2, D).is_empty());
        assert!(r.unname(D));
    }
}
