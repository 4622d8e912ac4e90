//! [`Manager`] itself: starting a server or connecting to one, making dicts, lists and
//! namespaces, shutting down.

use super::calls::open_session_by;
use super::client::{CallTimeout, Client, Handle};
use super::refs::{self, Ref, Space};
use super::server::server_main;
use super::ManagerError;
use super::{unexpected, Kind, Req, Resp};
use crate::codec;
use crate::process::Process;
use crate::queue::Queue;
use crate::shared::RawArray;
use crate::sync::Lock;
use crate::Bytes;
use procactor_transports::conn::{self, Address};
use serde::Serialize;
use std::fmt;
use std::net::TcpListener;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A manager: a server process owning shared objects (Python's `Manager()`), or a
/// connection to a remote one ([`Manager::connect`]).
///
/// Dropping a manager that started its server shuts the server down. An object of the
/// manager is freed when its last proxy (in any process) is dropped, or, for a `_named`
/// one, once [`remove_named`](Manager::remove_named) was called (see
/// [Freeing](crate::manager#freeing)).
///
/// # Examples
///
/// ```
/// use procactor::Manager;
///
/// fn main() {
///     procactor::init();
///     let mgr = Manager::start().unwrap();
///     let d = mgr.dict::<String, i64>().unwrap();
///     d.insert("a".into(), 22).unwrap();
///     assert_eq!(d.get(&"a".into()).unwrap(), Some(22));
///     let l = mgr.list::<u64>().unwrap();
///     l.push(1).unwrap();
///     assert_eq!(l.to_vec().unwrap(), [1]);
///     let ns = mgr.namespace().unwrap();
///     ns.set("x", &3).unwrap();
///     assert_eq!(ns.get::<i32>("x").unwrap(), 3);
///     mgr.shutdown().unwrap();
/// }
/// ```
pub struct Manager {
    pub(super) client: Arc<Client>,
    pub(super) server: Mutex<Option<Process<()>>>,
    pub(super) address: Option<String>,
    /// Whether the server's local socket is known to be bound (see `new_sync`).
    pub(super) sync_ready: std::sync::atomic::AtomicBool,
}

impl fmt::Debug for Manager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manager")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Manager`] that also listens for remote clients.
#[derive(Debug, Default)]
pub struct ManagerBuilder {
    listen: Option<String>,
    authkey: Option<Vec<u8>>,
    call_timeout: Option<Duration>,
}

impl ManagerBuilder {
    /// Also listen on this TCP address (`"127.0.0.1:0"` picks a free port; see
    /// [`Manager::address`]).
    pub fn listen(mut self, address: &str) -> Self {
        self.listen = Some(address.to_string());
        self
    }
    /// The key remote clients must prove they know (required with `listen`).
    pub fn authkey(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.authkey = Some(key.into());
        self
    }
    /// The manager's call timeout (default: none, as in Python): see
    /// [`Manager::set_call_timeout`].
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = Some(timeout);
        self
    }
    /// Starts the server process.
    ///
    /// # Errors
    ///
    /// `listen` without `authkey`, an address that cannot be bound, the server cannot
    /// start.
    pub fn start(self) -> Result<Manager, ManagerError> {
        let requests: Queue<(u64, Req)> = Queue::with_capacity_bytes(1 << 20)?;
        let replies: Queue<(u64, Resp)> = Queue::with_capacity_bytes(1 << 20)?;
        let cell = RawArray::<u64>::zeroed(2)?;
        let mut address = None;
        let listener = match self.listen {
            None => None,
            Some(a) => {
                let key = self.authkey.clone().ok_or_else(|| {
                    ManagerError::Refused("a listening manager needs an authkey".into())
                })?;
                let l = TcpListener::bind(&a)?;
                address = Some(l.local_addr()?.to_string());
                Some((l, key))
            }
        };
        let boot_replies = replies.clone();
        replies.close(); // clients only take replies
                         // the name is world-readable (`/proc/net/unix`): it comes from random bytes of
                         // its own, never from the key's
        let (tag, nonce) = (conn::random_nonce()?, conn::random_nonce()?);
        let local_name = format!(
            "procactor-manager-{}-{}",
            std::process::id(),
            tag[..8]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        let local_key = Bytes::from(nonce.to_vec());
        let boot = ServerBootRef {
            local: (&local_name, &local_key),
            requests: &requests,
            replies: &boot_replies,
            listener: listener.as_ref().map(|(l, k)| {
                (
                    codec::SendFd(std::os::fd::AsFd::as_fd(l)),
                    Bytes::from(k.clone()),
                )
            }),
        };
        let p = crate::process::start_encoded_via(
            server_main,
            &boot,
            Some("SyncManager".into()),
            true,
            None,
            None,
            None,
        )?;
        drop(boot_replies);
        if let Some(w) = cell.atomic_u64(1) {
            w.store(u64::from(p.pid()), Ordering::Release);
        }
        let timeout = Arc::new(CallTimeout::new(None));
        timeout.set(self.call_timeout);
        Ok(Manager {
            client: Arc::new(Client::Local {
                requests,
                replies,
                lock: Lock::new()?,
                cell,
                by_name: (local_name, local_key),
                timeout,
            }),
            server: Mutex::new(Some(p)),
            address,
            sync_ready: Default::default(),
        })
    }
}

#[derive(Serialize)]
pub(super) struct ServerBootRef<'a> {
    pub(super) requests: &'a Queue<(u64, Req)>,
    pub(super) replies: &'a Queue<(u64, Resp)>,
    pub(super) listener: Option<(codec::SendFd<'a>, Bytes)>,
    pub(super) local: (&'a str, &'a Bytes),
}

impl Manager {
    /// Starts a manager server process, reachable from this process and its children.
    ///
    /// # Errors
    ///
    /// The server cannot start (or `procactor::init()` was not called).
    pub fn start() -> Result<Manager, ManagerError> {
        ManagerBuilder::default().start()
    }

    /// A builder (`listen`, `authkey`).
    pub fn builder() -> ManagerBuilder {
        ManagerBuilder::default()
    }

    /// Connects to a manager listening at `address` (`"host:port"`), proving `key`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Auth`] for a wrong key, [`ManagerError::Io`] when nobody listens.
    pub fn connect(address: &str, key: &[u8]) -> Result<Manager, ManagerError> {
        let address = Address::parse(address);
        let s = open_session_by(&address, key, None)?;
        Ok(Manager {
            client: Arc::new(Client::Remote {
                address: address.clone(),
                key: key.to_vec(),
                session: Mutex::new(Some(Box::new(s))),
                timeout: Arc::new(CallTimeout::new(None)),
            }),
            server: Mutex::new(None),
            address: Some(address.to_string()),
            sync_ready: Default::default(),
        })
    }

    /// Sets the **call timeout**: how long an operation that has no timeout of its own
    /// may wait for the server before it fails with [`ManagerError::Timeout`]; `None`
    /// (the default, as in Python) waits as long as the server is there.
    ///
    /// It applies to every operation of the dicts, lists, namespaces, values and arrays
    /// of this manager (their proxies in this process share it, whenever they were
    /// made, and see a change at once), and to this manager's own calls (making an
    /// object, [`object_count`](Manager::object_count),
    /// [`remove_named`](Manager::remove_named); [`shutdown`](Manager::shutdown) of a
    /// server this process started kills it when it does not answer in time). A proxy
    /// that travels to another process carries the timeout in force when it was
    /// encoded (a later change here does not reach it). The synchronisation objects
    /// and queues ([`SharedLock`](crate::manager::SharedLock), [`SharedQueue`](crate::manager::SharedQueue), …) are not covered: their waiting
    /// operations have `try_`/`_timeout` forms, and their other operations give up on
    /// a server that sends nothing for 30 s (see [Timeouts](crate::manager#timeouts)).
    ///
    /// An operation that timed out may or may not have been applied (the server may
    /// be frozen with the request in hand, and apply it when it runs again; a frozen
    /// server cannot say). Its answer, should it come later, is never taken for the
    /// answer to a later call: local answers are numbered and a late one is dropped; a
    /// remote manager's connection is closed and the next call opens a new one. The
    /// timeout counts from the start of the call, including the wait for another
    /// thread's call on the same connection.
    ///
    /// # Examples
    ///
    /// ```
    /// use procactor::Manager;
    /// use std::time::Duration;
    ///
    /// fn main() {
    ///     procactor::init();
    ///     let mgr = Manager::builder()
    ///         .call_timeout(Duration::from_secs(5))
    ///         .start()
    ///         .unwrap();
    ///     assert_eq!(mgr.call_timeout(), Some(Duration::from_secs(5)));
    ///     let d = mgr.dict::<u32, u32>().unwrap();
    ///     d.insert(1, 2).unwrap(); // fails with `Timeout` after 5 s of a frozen server
    ///     mgr.set_call_timeout(None); // as Python: wait as long as the server lives
    ///     assert_eq!(d.get(&1).unwrap(), Some(2));
    /// }
    /// ```
    pub fn set_call_timeout(&self, timeout: Option<Duration>) {
        self.client.timeout().set(timeout);
    }

    /// The call timeout (see [`set_call_timeout`](Manager::set_call_timeout)).
    pub fn call_timeout(&self) -> Option<Duration> {
        self.client.timeout().get()
    }

    /// The address remote clients use (`None` for a manager that does not listen).
    pub fn address(&self) -> Option<String> {
        self.address.clone()
    }

    /// The server's pid, for a manager this process started.
    pub fn pid(&self) -> Option<u32> {
        self.server
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(Process::pid)
    }

    /// This process's reference connection to the server (see [`refs`]), and its
    /// number there.
    pub(super) fn link(&self) -> Result<(Arc<refs::Link>, u64), ManagerError> {
        if matches!(&*self.client, Client::Local { .. }) && !self.sync_ready.load(Ordering::Acquire)
        {
            // the server binds its local socket before it answers its first request
            // over the rings: one answer (here a refusal) means the name is there
            match self.client.call(Req::Len(0)) {
                Ok(_) | Err(ManagerError::Refused(_)) => {}
                Err(e) => return Err(e),
            }
            self.sync_ready.store(true, Ordering::Release);
        }
        let (address, key) = self.client.target();
        let link = refs::link(&address, &key);
        let holder = link.holder()?;
        Ok((link, holder))
    }

    pub(super) fn new_obj(&self, kind: Kind, name: Option<&str>) -> Result<Handle, ManagerError> {
        self.new_with_init(kind, name, None)
    }

    /// A dict, list, namespace (`init: None`), value or array.
    pub(super) fn new_with_init(
        &self,
        kind: Kind,
        name: Option<&str>,
        init: Option<Vec<Bytes>>,
    ) -> Result<Handle, ManagerError> {
        let (link, holder) = self.link()?;
        let name = name.map(str::to_string);
        let req = match init {
            None => Req::New(kind, name, holder),
            Some(init) => Req::NewWith(kind, name, init, holder),
        };
        match self.client.call(req)? {
            Resp::Id(id) => Ok(Handle {
                client: self.client.clone(),
                id,
                _ref: Ref::counted(link, (Space::Data, id)),
            }),
            r => Err(unexpected(r)),
        }
    }

    /// How many objects the server holds now (named ones included): what a test of
    /// freeing looks at. An object goes when the last proxy of it, in any process, is
    /// dropped (see [`Manager`]); the server learns of a drop a moment later (the
    /// decrement is sent in the background), so a caller that dropped its last proxy
    /// may see the old count for a few milliseconds.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Disconnected`] when the server is gone.
    pub fn object_count(&self) -> Result<usize, ManagerError> {
        match self.client.call(Req::ObjectCount)? {
            Resp::Count(n) => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
            r => Err(unexpected(r)),
        }
    }

    /// Forgets `name` (for objects of every kind made with a `_named` method under that
    /// name): they then go when their last proxy does — at once if there is none.
    /// Returns whether any object had that name. A later `_named` call with this name
    /// makes a new object.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Disconnected`] when the server is gone.
    pub fn remove_named(&self, name: &str) -> Result<bool, ManagerError> {
        match self.client.call(Req::RemoveNamed(name.to_string()))? {
            Resp::Count(n) => Ok(n > 0),
            r => Err(unexpected(r)),
        }
    }

    /// Stops the server (a remote one too). Later operations through any proxy give
    /// [`ManagerError::Disconnected`]. Calling it again is harmless.
    ///
    /// # Errors
    ///
    /// None today for a local manager (a server already gone is fine).
    pub fn shutdown(&self) -> Result<(), ManagerError> {
        let mut server = self.server.lock().unwrap_or_else(|e| e.into_inner());
        match self.client.call(Req::Shutdown) {
            Ok(_) | Err(ManagerError::Disconnected) => {}
            // (a server of ours that did not answer in time is killed below)
            Err(ManagerError::Timeout) if server.is_some() => {}
            Err(e) => return Err(e),
        }
        if let Some(mut p) = server.take() {
            if p.join_timeout(Duration::from_secs(5)).is_err() {
                let _ = p.kill();
                let _ = p.join();
            }
        }
        Ok(())
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        let started = self
            .server
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some();
        if started {
            let _ = self.shutdown();
        }
    }
}
