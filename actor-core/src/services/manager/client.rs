//! How a client process reaches the server: sessions, one call's round trip, the
//! rings, the call timeout, and the part every dict/list/namespace proxy shares.

use super::calls::{open_session_until, round_trip};
use super::refs::{self, Ref, Space};
use super::wire::Session;
use super::ManagerError;
use super::{as_count, as_many, as_opt, as_unit, resp_result, Req, Resp};
use crate::codec;
use crate::queue::{await_reply, NoReply, Queue};
use crate::shared::RawArray;
use crate::sync::Lock;
use crate::{Bytes, Message, PutTimeoutError};
use procactor_transports::conn::Address;
use procactor_transports::os;
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How a process reaches the server.
pub(super) enum Client {
    Local {
        requests: Queue<(u64, Req)>,
        replies: Queue<(u64, Resp)>,
        lock: Lock,
        /// word 0: the last call number; word 1: the server's pid
        cell: RawArray<u64>,
        /// The server's local socket name and key (see `ServerBoot::local`).
        by_name: (String, Bytes),
        /// The call timeout (see [`Manager::set_call_timeout`]).
        timeout: Arc<CallTimeout>,
    },
    Remote {
        address: Address,
        key: Vec<u8>,
        session: Mutex<Option<Box<Session>>>,
        /// The call timeout (see [`Manager::set_call_timeout`]).
        timeout: Arc<CallTimeout>,
    },
}

/// A manager's call timeout in microseconds, [`CallTimeout::NONE`] for none; shared by
/// the [`Manager`] and every proxy of it in this process (they share its `Client`).
pub(super) struct CallTimeout(pub(super) std::sync::atomic::AtomicU64);

impl CallTimeout {
    const NONE: u64 = u64::MAX;

    /// As it travels: microseconds, `None` for no timeout.
    pub(super) fn new(micros: Option<u64>) -> Self {
        CallTimeout(std::sync::atomic::AtomicU64::new(
            micros.unwrap_or(Self::NONE),
        ))
    }

    pub(super) fn set(&self, d: Option<Duration>) {
        // (a timeout too long for the microsecond count is none: it never passes)
        let us = d.map_or(Self::NONE, |d| {
            u64::try_from(d.as_micros()).map_or(Self::NONE, |us| us.min(Self::NONE - 1))
        });
        self.0.store(us, Ordering::Relaxed);
    }

    pub(super) fn micros(&self) -> Option<u64> {
        let us = self.0.load(Ordering::Relaxed);
        (us != Self::NONE).then_some(us)
    }

    pub(super) fn get(&self) -> Option<Duration> {
        self.micros().map(Duration::from_micros)
    }

    /// The deadline of a call starting now (`None`: none, or too far to name).
    pub(super) fn deadline(&self) -> Option<std::time::Instant> {
        std::time::Instant::now().checked_add(self.get()?)
    }
}

#[derive(Serialize, Deserialize)]
pub(super) enum ClientWire {
    // (the last field: the call timeout in force when the proxy was encoded, in
    // microseconds)
    Local(
        Queue<(u64, Req)>,
        Queue<(u64, Resp)>,
        Lock,
        RawArray<u64>,
        (String, Bytes),
        Option<u64>,
    ),
    Remote(String, Bytes, Option<u64>),
}

/// How long one put of a request waits before the server's liveness is checked.
pub(super) const CHECK: Duration = Duration::from_millis(20);

impl Client {
    pub(super) fn wire(&self) -> ClientWire {
        match self {
            // through a channel that cannot carry descriptors, reconnect by name
            Client::Local {
                by_name, timeout, ..
            } if !codec::can_carry_fds() => ClientWire::Remote(
                Address::Local(by_name.0.clone()).to_string(),
                by_name.1.clone(),
                timeout.micros(),
            ),
            Client::Local {
                requests,
                replies,
                lock,
                cell,
                by_name,
                timeout,
            } => ClientWire::Local(
                requests.clone(),
                replies.clone(),
                lock.clone(),
                cell.clone(),
                by_name.clone(),
                timeout.micros(),
            ),
            Client::Remote {
                address,
                key,
                timeout,
                ..
            } => ClientWire::Remote(
                address.to_string(),
                Bytes::from(key.clone()),
                timeout.micros(),
            ),
        }
    }

    pub(super) fn from_wire(w: ClientWire) -> Client {
        match w {
            ClientWire::Local(requests, replies, lock, cell, by_name, t) => Client::Local {
                requests,
                replies,
                lock,
                cell,
                by_name,
                timeout: Arc::new(CallTimeout::new(t)),
            },
            ClientWire::Remote(a, key, t) => Client::Remote {
                address: Address::parse(&a),
                key: key.into_vec(),
                session: Mutex::new(None),
                timeout: Arc::new(CallTimeout::new(t)),
            },
        }
    }

    /// The address and key socket connections use (synchronisation objects,
    /// references).
    pub(super) fn target(&self) -> (String, Bytes) {
        match self {
            Client::Local { by_name, .. } => (
                Address::Local(by_name.0.clone()).to_string(),
                by_name.1.clone(),
            ),
            Client::Remote { address, key, .. } => (address.to_string(), Bytes::from(key.clone())),
        }
    }

    pub(super) fn server_alive(cell: &RawArray<u64>) -> bool {
        let pid = cell.atomic_u64(1).map_or(0, |w| w.load(Ordering::Acquire));
        pid != 0 && u32::try_from(pid).is_ok_and(os::process_alive)
    }

    pub(super) fn timeout(&self) -> &Arc<CallTimeout> {
        match self {
            Client::Local { timeout, .. } | Client::Remote { timeout, .. } => timeout,
        }
    }

    /// One request and its answer, by the call timeout's deadline if there is one
    /// ([`ManagerError::Timeout`] then; the call's reply, should it come later, is never
    /// taken for another call's: local replies are numbered and a reply to another
    /// number is dropped, and a remote call's connection is closed).
    pub(super) fn call(&self, req: Req) -> Result<Resp, ManagerError> {
        let deadline = self.timeout().deadline();
        let left = |d: std::time::Instant| d.saturating_duration_since(std::time::Instant::now());
        let resp = match self {
            Client::Local {
                requests,
                replies,
                lock,
                cell,
                ..
            } => {
                let _g = match deadline {
                    None => lock.acquire().unwrap_or_else(|e| e.into_inner()),
                    // (another thread's call holds the lock, stuck at a frozen server)
                    Some(d) => match lock.acquire_timeout(left(d)) {
                        Ok(Some(g)) => g,
                        Ok(None) => return Err(ManagerError::Timeout),
                        Err(e) => e.into_inner(),
                    },
                };
                let n = cell
                    .atomic_u64(0)
                    .map_or(0, |w| w.fetch_add(1, Ordering::AcqRel) + 1);
                let mut item = (n, req);
                loop {
                    let wait = deadline.map_or(CHECK, |d| left(d).min(CHECK));
                    match requests.put_timeout(item, wait) {
                        Ok(()) => break,
                        Err(PutTimeoutError::Timeout(_))
                            if deadline.is_some_and(|d| left(d).is_zero()) =>
                        {
                            return Err(ManagerError::Timeout)
                        }
                        Err(PutTimeoutError::Timeout(i)) if Self::server_alive(cell) => item = i,
                        Err(PutTimeoutError::Encode(_, e)) => return Err(e.into()),
                        Err(_) => return Err(ManagerError::Disconnected),
                    }
                }
                let gone = || (!Self::server_alive(cell)).then_some(());
                // (a reply to call `n` that comes after it timed out is dropped by the
                // next call, which waits for its own number)
                match await_reply(replies, n, deadline, gone) {
                    Ok(r) => r,
                    Err(NoReply::Timeout) => return Err(ManagerError::Timeout),
                    Err(NoReply::Decode(e)) => return Err(e.into()),
                    Err(_) => return Err(ManagerError::Disconnected),
                }
            }
            Client::Remote {
                address,
                key,
                session,
                ..
            } => {
                let mut g = match deadline {
                    None => session.lock().unwrap_or_else(|e| e.into_inner()),
                    // (another thread's call holds the session, stuck at a frozen server)
                    Some(d) => loop {
                        match session.try_lock() {
                            Ok(g) => break g,
                            Err(std::sync::TryLockError::Poisoned(e)) => break e.into_inner(),
                            Err(std::sync::TryLockError::WouldBlock) if left(d).is_zero() => {
                                return Err(ManagerError::Timeout)
                            }
                            Err(std::sync::TryLockError::WouldBlock) => {
                                std::thread::sleep(left(d).min(Duration::from_millis(1)))
                            }
                        }
                    },
                };
                let s = match g.as_mut() {
                    Some(s) => s,
                    // (a server that is gone refuses the connection)
                    None => g.insert(Box::new(open_session_until(address, key, deadline)?)),
                };
                match round_trip(s, &req, deadline) {
                    Ok(r) => r,
                    Err((e, keep)) => {
                        // (a timeout leaves the connection out of step: closed, so a late
                        // answer is never read; the next call opens a new one)
                        if !keep {
                            *g = None;
                        }
                        return Err(e);
                    }
                }
            }
        };
        resp_result(resp)
    }
}

impl Client {
    /// As [`call`](Client::call), as a future that never blocks its thread: a local
    /// client takes the rings' lock with [`Lock::acquire_async`], puts its request
    /// (waiting for room as a future, checking every 20 ms that the server lives) and
    /// waits for its numbered reply on the reply ring's word; a remote one sends it on
    /// this process's multiplexed connection (see `asynch`). The call timeout, if any,
    /// bounds it all ([`ManagerError::Timeout`]).
    ///
    /// Dropped at any point, it leaves nothing behind: the rings' lock is released with
    /// its guard, and a reply that comes later is dropped by the next call (it waits
    /// for its own number); the request, once sent, may or may not be applied.
    pub(super) async fn call_async(&self, req: Req) -> Result<Resp, ManagerError> {
        let deadline = self.timeout().deadline();
        let resp = match self {
            Client::Local {
                requests,
                replies,
                lock,
                cell,
                ..
            } => {
                super::asynch::by(deadline, async {
                    let _g = lock
                        .acquire_async()
                        .await
                        .unwrap_or_else(|e| e.into_inner());
                    let n = cell
                        .atomic_u64(0)
                        .map_or(0, |w| w.fetch_add(1, Ordering::AcqRel) + 1);
                    let alive = || Self::server_alive(cell);
                    let put = super::asynch::while_true(CHECK, alive, async {
                        requests.put_async((n, req)).await.map_err(|e| match e {
                            crate::PutError::Encode(_, e) => e.into(),
                            _ => ManagerError::Disconnected,
                        })
                    });
                    put.await?;
                    let spin = procactor_transports::spin::budget(crate::queue::REPLY_SPIN);
                    let gone = || (!Self::server_alive(cell)).then_some(());
                    match crate::queue::await_reply_async(replies, n, spin, gone).await {
                        Ok(r) => Ok(r),
                        Err(NoReply::Decode(e)) => Err(e.into()),
                        Err(_) => Err(ManagerError::Disconnected),
                    }
                })
                .await?
            }
            Client::Remote { .. } => {
                let (address, key) = self.target();
                let mux = super::asynch::mux(&address, &key)?;
                mux.call(
                    move |_| super::MuxReq::Do(Box::new(req)),
                    deadline,
                    None,
                    false,
                )
                .await?
            }
        };
        resp_result(resp)
    }
}

/// The shared part of every proxy: the connection, the object's id and this
/// process's reference to it.
#[derive(Clone)]
pub(super) struct Handle {
    pub(super) client: Arc<Client>,
    pub(super) id: u64,
    pub(super) _ref: Arc<Ref>,
}

impl Serialize for Handle {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // the encoding holds a reference of its own (see `refs`)
        let token = self._ref.lend().map_err(serde::ser::Error::custom)?;
        (self.client.wire(), self.id, token).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Handle {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (w, id, token): (ClientWire, u64, u64) = Deserialize::deserialize(d)?;
        let client = Client::from_wire(w);
        let (address, key) = client.target();
        let link = refs::link(&address, &key);
        Ok(Handle {
            client: Arc::new(client),
            id,
            _ref: Ref::claimed(link, (Space::Data, id), token),
        })
    }
}

impl Handle {
    pub(super) fn call(&self, r: Req) -> Result<Resp, ManagerError> {
        self.client.call(r)
    }
    pub(super) fn unit(&self, r: Req) -> Result<(), ManagerError> {
        as_unit(self.call(r)?)
    }
    pub(super) fn opt<T: Message>(&self, r: Req) -> Result<Option<T>, ManagerError> {
        as_opt(self.call(r)?)
    }
    pub(super) fn count(&self) -> Result<usize, ManagerError> {
        as_count(self.call(Req::Len(self.id))?).map(|n| n as usize)
    }
    pub(super) fn many<T: Message>(&self, r: Req) -> Result<Vec<T>, ManagerError> {
        as_many(self.call(r)?)
    }

    // the same, as futures (see `Client::call_async`)

    pub(super) async fn call_async(&self, r: Req) -> Result<Resp, ManagerError> {
        self.client.call_async(r).await
    }
    pub(super) async fn unit_async(&self, r: Req) -> Result<(), ManagerError> {
        as_unit(self.call_async(r).await?)
    }
    pub(super) async fn opt_async<T: Message>(&self, r: Req) -> Result<Option<T>, ManagerError> {
        as_opt(self.call_async(r).await?)
    }
    pub(super) async fn count_async(&self) -> Result<usize, ManagerError> {
        as_count(self.call_async(Req::Len(self.id)).await?).map(|n| n as usize)
    }
    pub(super) async fn many_async<T: Message>(&self, r: Req) -> Result<Vec<T>, ManagerError> {
        as_many(self.call_async(r).await?)
    }
}
