//! The server process: the shared-memory rings' loop, the listeners, one thread per
//! socket connection.

use super::objects::{self, SyncObjects, SyncReq};
use super::refs::{self, Oid, RefReq, Refs, Space};
use super::store::Store;
use super::wire::{self, Session};
use super::{refused, MuxReq, Req, Resp};
use super::{
    HANDSHAKE_TIMEOUT, MAX_CONNECTIONS, MAX_FRAME, MAX_UNAUTHENTICATED, PEER_TIMEOUT, SERVER_SPIN,
};
use crate::codec;
use crate::queue::Queue;
use crate::{Bytes, GetError};
use procactor_transports::conn::{self, Address, Stream};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the server process receives.
#[derive(Serialize, Deserialize)]
pub(super) struct ServerBoot {
    pub(super) requests: Queue<(u64, Req)>,
    pub(super) replies: Queue<(u64, Resp)>,
    pub(super) listener: Option<(Fd, Bytes)>,
    /// The local socket name and key proxies use when they travel where descriptors
    /// cannot (through a queue: a `Pool` task's arguments).
    pub(super) local: (String, Bytes),
}

/// A descriptor that travels as a handle does (its own `Serialize`/`Deserialize`).
pub(super) struct Fd(pub(super) std::os::fd::OwnedFd);

impl Serialize for Fd {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        codec::SendFd(std::os::fd::AsFd::as_fd(&self.0)).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Fd {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Fd(codec::RecvFd::deserialize(d)?.0))
    }
}

/// Everything a server process owns.
#[derive(Default)]
pub(super) struct Server {
    pub(super) store: Mutex<Store>,
    pub(super) objects: SyncObjects,
    pub(super) refs: Mutex<Refs>,
}

impl Server {
    pub(super) fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub(super) fn refs(&self) -> std::sync::MutexGuard<'_, Refs> {
        self.refs.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn free(&self, freed: refs::Freed) {
        for (space, id) in freed {
            match space {
                Space::Data => {
                    self.store().objs.remove(&id);
                }
                Space::Sync => self.objects.remove(id),
            }
        }
    }

    /// The first reference of an object just made (or found by name) goes to `holder`.
    pub(super) fn created(&self, resp: Resp, space: Space, named: bool, holder: u64) -> Resp {
        let Resp::Id(id) = resp else { return resp };
        let o = (space, id);
        let mut r = self.refs();
        if named {
            r.set_named(o);
        }
        if r.add(holder, o) {
            return resp;
        }
        let orphan = !named && !r.exists(o);
        drop(r);
        if orphan {
            self.free(vec![o]);
        }
        refused("the creating process's reference connection is gone")
    }

    /// Serves a request that does not block (the rings' loop, and a connection's
    /// requests other than synchronisation ones).
    pub(super) fn apply(&self, req: Req) -> Resp {
        match req {
            Req::New(kind, name, holder) => {
                let named = name.is_some();
                let r = self.store().create(kind, name, Vec::new());
                self.created(r, Space::Data, named, holder)
            }
            Req::NewWith(kind, name, init, holder) => {
                let named = name.is_some();
                let r = self.store().create(kind, name, init);
                self.created(r, Space::Data, named, holder)
            }
            Req::RemoveNamed(name) => {
                let mut ids: Vec<Oid> = {
                    let mut st = self.store();
                    let mut out = Vec::new();
                    st.names.retain(|(_, n), id| {
                        let hit = *n == name;
                        if hit {
                            out.push((Space::Data, *id));
                        }
                        !hit
                    });
                    out
                };
                ids.extend(
                    self.objects
                        .remove_names(&name)
                        .into_iter()
                        .map(|id| (Space::Sync, id)),
                );
                let n = ids.len() as u64;
                let free: Vec<Oid> = {
                    let mut r = self.refs();
                    ids.into_iter().filter(|o| r.unname(*o)).collect()
                };
                self.free(free);
                Resp::Count(n)
            }
            Req::ObjectCount => Resp::Count((self.store().objs.len() + self.objects.len()) as u64),
            Req::Ref(_) => refused("references are counted over a socket connection"),
            req => self.store().apply(req),
        }
    }

    pub(super) fn reference(&self, conn: u64, r: RefReq) -> Resp {
        let freed = {
            let mut refs = self.refs();
            match r {
                RefReq::Hello => {
                    refs.hello(conn);
                    return Resp::Id(conn);
                }
                RefReq::Lend(o, token) => return Resp::Bool(refs.lend(conn, o, token)),
                RefReq::Claim(o, token) => {
                    refs.claim(conn, o, token);
                    return Resp::Unit;
                }
                RefReq::Dec(o) => refs.dec(conn, o),
            }
        };
        self.free(freed);
        Resp::Unit
    }

    /// Connection `conn` ended: what it held (locks, references) is released.
    pub(super) fn end(&self, conn: u64) {
        self.objects.disconnect(conn);
        let freed = self.refs().end(conn);
        self.free(freed);
    }
}

pub(super) fn server_main(boot: ServerBoot) {
    let ServerBoot {
        requests,
        replies,
        listener,
        local,
    } = boot;
    requests.close(); // the server only takes requests
    let server = Arc::new(Server::default());
    // bound before the first request is answered, so before any proxy exists
    match conn::Listener::bind(&Address::Local(local.0.clone())) {
        Ok(l) => {
            let (server, key) = (server.clone(), local.1.into_vec());
            let _ = crate::runtime::thread_builder("procactor-manager-local")
                .spawn(move || serve_remote(l, key, server));
        }
        Err(e) => {
            tracing::error!(error = %e, "manager: no local socket; proxies will not travel through queues")
        }
    }
    if let Some((fd, key)) = listener {
        let l = conn::Listener::from_tcp(TcpListener::from(fd.0));
        let key = key.into_vec();
        let server = server.clone();
        let _ = crate::runtime::thread_builder("procactor-manager-listener")
            .spawn(move || serve_remote(l, key, server));
    }
    loop {
        let (n, req) = match requests.get() {
            Ok(r) => r,
            Err(GetError::Disconnected) => return, // no client left
            Err(GetError::Decode(e)) => {
                tracing::error!(error = %e, "manager: undecodable request skipped");
                continue;
            }
            Err(GetError::Broken) => return,
        };
        let shutdown = matches!(req, Req::Shutdown);
        let resp = if matches!(req, Req::Sync(_)) {
            refused("synchronisation objects are served over a socket connection")
        } else {
            server.apply(req)
        };
        let _ = replies.put((n, resp));
        if shutdown {
            return;
        }
    }
}

/// Connections not yet authenticated, oldest first (their number and a handle to close
/// them).
pub(super) type Pending = Arc<Mutex<std::collections::VecDeque<(u64, std::os::fd::OwnedFd)>>>;

pub(super) fn serve_remote(l: conn::Listener, key: Vec<u8>, server: Arc<Server>) {
    let live = Arc::new(AtomicUsize::new(0));
    let pending: Pending = Default::default();
    let key: Arc<[u8]> = key.into();
    loop {
        let Ok(s) = l.accept() else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let conn = NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed);
        {
            let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
            if p.len() >= MAX_UNAUTHENTICATED {
                if let Some((_, oldest)) = p.pop_front() {
                    wire::shutdown(&oldest);
                }
            }
            if let Ok(fd) = std::os::fd::AsFd::as_fd(&s).try_clone_to_owned() {
                p.push_back((conn, fd));
            }
        }
        let (server, key, live2, pending2) =
            (server.clone(), key.clone(), live.clone(), pending.clone());
        let spawned = crate::runtime::thread_builder("procactor-manager-conn").spawn(move || {
            let session = handshake(s, &key);
            pending2
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|(c, _)| *c != conn);
            let Ok(session) = session else { return };
            if live2.fetch_add(1, Ordering::AcqRel) < MAX_CONNECTIONS {
                serve_connection(session, &server, conn);
                // whatever it ended with, what it held is released
                server.end(conn);
            }
            live2.fetch_sub(1, Ordering::AcqRel);
        });
        if spawned.is_err() {
            pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|(c, _)| *c != conn);
        }
    }
}

/// The server's half of the handshake and the session key, within
/// [`HANDSHAKE_TIMEOUT`] however the peer dribbles.
pub(super) fn handshake(mut s: Stream, key: &[u8]) -> std::io::Result<Session> {
    let until = std::time::Instant::now() + HANDSHAKE_TIMEOUT;
    conn::server_handshake(&mut conn::WithDeadline::new(&mut s, until), key)?;
    Session::server(s, key, until)
}

/// Numbers the server's connections (the owner of a lock is a connection).
pub(super) static NEXT_CONNECTION: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(1);

/// A connection's client as a blocked request sees it.
pub(super) struct ConnPeer<'a>(pub(super) &'a mut Session);

impl objects::Peer for ConnPeer<'_> {
    fn alive(&mut self) -> bool {
        // the client sends nothing while it waits for its answer: bytes or the end of
        // the stream mean it is gone (or broke the protocol)
        !self.0.readable_now()
    }
    fn heartbeat(&mut self) -> bool {
        send_resp(self.0, &Resp::Pending).is_ok()
    }
}

/// Serves one remote client; any misbehaviour ends this connection only.
pub(super) fn serve_connection(mut s: Session, server: &Server, conn: u64) {
    loop {
        // a client in a loop of calls sends the next one within microseconds
        s.spin(SERVER_SPIN);
        // an authenticated client may stay idle between requests; once a frame has
        // begun, all of it must come within `PEER_TIMEOUT`
        let Ok(frame) = s.recv(MAX_FRAME, None, PEER_TIMEOUT) else {
            return;
        };
        let req = codec::decode::<Req>(&frame, Vec::new());
        // an item taken from a queue goes back if its answer cannot be written
        let taken_from = match &req {
            Ok(Req::Sync(SyncReq::Get(id, _))) => Some(*id),
            _ => None,
        };
        let resp = match req {
            Ok(Req::Sync(SyncReq::New(kind, name, n, holder))) => {
                let named = name.is_some();
                let r = server.objects.apply(
                    conn,
                    SyncReq::New(kind, name, n, holder),
                    &mut ConnPeer(&mut s),
                );
                server.created(r, Space::Sync, named, holder)
            }
            Ok(Req::Sync(req)) => server.objects.apply(conn, req, &mut ConnPeer(&mut s)),
            Ok(Req::Ref(r)) => server.reference(conn, r),
            // the connection is multiplexed from now on
            Ok(Req::Mux(tag, m)) => return serve_mux(s, server, conn, (tag, m)),
            Ok(Req::Shutdown) => {
                let _ = send_resp(&mut s, &Resp::Unit);
                std::process::exit(0);
            }
            Ok(req) => server.apply(req),
            Err(e) => refused(format!("undecodable request: {e}")),
        };
        if let Err(e) = send_resp(&mut s, &resp) {
            if let (Some(id), Resp::Opt(Some(item))) = (taken_from, resp) {
                server.objects.put_back(id, item);
            }
            if e.kind() != std::io::ErrorKind::InvalidData {
                return;
            }
        }
    }
}

/// Sends `r`; one over [`MAX_FRAME`] is replaced by a [`Resp::TooLarge`] (and is an
/// `InvalidData` error, the connection staying usable).
pub(super) fn send_resp(s: &mut Session, r: &Resp) -> std::io::Result<()> {
    send_or_too_large(s, r, Resp::TooLarge)
}

/// Sends `r`, or `too_large(size)` in its place when it is over [`MAX_FRAME`] (an
/// `InvalidData` error then, the connection staying usable).
fn send_or_too_large(
    s: &mut Session,
    r: &Resp,
    too_large: impl FnOnce(u64) -> Resp,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    codec::encode(r, &mut buf, None).map_err(|e| std::io::Error::other(e.to_string()))?;
    if buf.len() > MAX_FRAME {
        let mut small = Vec::new();
        codec::encode(&too_large(buf.len() as u64), &mut small, None)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        s.send(&small)?;
        return Err(std::io::ErrorKind::InvalidData.into());
    }
    s.send(&buf)
}

/// Serves a multiplexed connection (the async proxies', see `asynch`): tagged requests,
/// each answered with its tag; a request that must wait is parked at the objects (no
/// thread waits for it) and its answer comes through this connection's outbox. The
/// thread sleeps on the socket and the outbox's bell at once, and sends a heartbeat
/// every [`objects::HEARTBEAT`] so the client can tell a server that is there from one
/// that vanished. When the connection ends, its parked requests stop (as a blocked
/// thread's whose client left) and every owner it named releases what it holds.
fn serve_mux(mut s: Session, server: &Server, conn: u64, first: (u64, MuxReq)) {
    let Ok((out, bell)) = objects::Outbox::new() else {
        return;
    };
    // the client's owner numbers and the server's (an owner holds as a connection does)
    let mut owners: HashMap<u64, u64> = HashMap::new();
    let mut next = Some(first);
    // the requests of this connection parked at the objects (heartbeats go out while
    // there are some: an idle connection gets no frame it would have to read)
    let mut parked: std::collections::HashSet<u64> = std::collections::HashSet::new();
    let mut beat = std::time::Instant::now();
    // items taken from queues whose answers were not written, oldest first: they go
    // back to the front of their queues
    let mut unsent: Vec<(u64, Bytes)> = Vec::new();
    loop {
        if let Some((tag, m)) = next.take() {
            match serve_mux_req(server, conn, &mut owners, tag, m, &out) {
                Served::Answer(tag, resp, from) => {
                    parked.remove(&tag); // (a withdrawal's answer)
                    let sent = send_tagged(&mut s, tag, resp, from, &mut unsent);
                    put_back_all(server, &mut unsent);
                    if !sent {
                        break;
                    }
                }
                Served::Parked(tag) => {
                    if parked.is_empty() {
                        beat = std::time::Instant::now();
                    }
                    parked.insert(tag);
                }
                Served::Stopped(tags) => {
                    if !tags.into_iter().all(|tag| {
                        parked.remove(&tag);
                        send_tagged(&mut s, tag, Resp::Pending, None, &mut unsent)
                    }) {
                        break;
                    }
                }
                Served::Nothing => {}
            }
        }
        // (once a write failed, the rest of the batch is not written: its items go
        // back)
        let mut sent = true;
        for (tag, resp, from) in out.take() {
            parked.remove(&tag);
            if sent {
                sent = send_tagged(&mut s, tag, resp, Some(from), &mut unsent);
            } else {
                unsent.extend(taken_item(resp, Some(from)));
            }
        }
        if !sent {
            break;
        }
        put_back_all(server, &mut unsent);
        if !parked.is_empty() && beat.elapsed() >= objects::HEARTBEAT {
            if send_resp(&mut s, &Resp::Pending).is_err() {
                break;
            }
            beat = std::time::Instant::now();
        }
        if !s.buffered() {
            let fds = [s.fd(), std::os::fd::AsFd::as_fd(&bell)];
            let until = (!parked.is_empty()).then(|| beat + objects::HEARTBEAT);
            let Ok(ready) = spin_poll(&fds, until) else {
                break;
            };
            if ready[1] {
                // (the outbox is read after the bell is emptied: no answer is missed)
                let mut sink = [0u8; 64];
                while matches!(std::io::Read::read(&mut &bell, &mut sink), Ok(n) if n > 0) {}
            }
            if !ready[0] {
                continue;
            }
        }
        let Ok(frame) = s.recv(MAX_FRAME, None, PEER_TIMEOUT) else {
            break;
        };
        match codec::decode::<Req>(&frame, Vec::new()) {
            Ok(Req::Mux(tag, m)) => next = Some((tag, m)),
            // (anything else breaks the protocol)
            _ => break,
        }
    }
    // (the parked requests stop first: no answer comes to the outbox afterwards, and
    // the answers that came before and were never written give their items back)
    server.objects.end_parked(conn, owners.into_values());
    for (_, resp, from) in out.take() {
        unsent.extend(taken_item(resp, Some(from)));
    }
    put_back_all(server, &mut unsent);
}

/// Whether each of `fds` is readable, waiting until `until` at most (`None`: no limit),
/// after looking without sleeping for up to [`SERVER_SPIN`] (yielding between looks)
/// as the blocking connections' threads do: a client in a loop of calls sends its next
/// request within microseconds, and a thread asleep in `poll` costs a wake-up. No spin
/// with `PROCACTOR_SPIN=0` or while spinning is paused (the project's spin rules).
fn spin_poll(
    fds: &[rustix::fd::BorrowedFd<'_>],
    until: Option<std::time::Instant>,
) -> std::io::Result<Vec<bool>> {
    let spin = procactor_transports::spin::budget(SERVER_SPIN);
    if !spin.is_zero() {
        let start = std::time::Instant::now();
        loop {
            let ready = procactor_transports::os::poll_readable(fds, Some(start))?;
            if ready.iter().any(|r| *r) {
                return Ok(ready);
            }
            let now = std::time::Instant::now();
            if now >= start + spin {
                procactor_transports::spin::note_overrun(start + spin, now);
                break;
            }
            procactor_transports::spin::yield_now();
        }
    }
    procactor_transports::os::poll_readable(fds, until)
}

/// What a multiplexed connection's request came to.
enum Served {
    /// An answer to send now: its tag, and the queue an item may have been taken from.
    Answer(u64, Resp, Option<u64>),
    /// Request `tag` waits, parked; its answer will come through the outbox.
    Parked(u64),
    /// Requests withdrawn (their owner ended): each is answered "nothing done".
    Stopped(Vec<u64>),
    /// A request that is not answered.
    Nothing,
}

/// Serves one request of multiplexed connection `conn`.
fn serve_mux_req(
    server: &Server,
    conn: u64,
    owners: &mut HashMap<u64, u64>,
    tag: u64,
    m: MuxReq,
    out: &Arc<objects::Outbox>,
) -> Served {
    match m {
        MuxReq::Do(req) => Served::Answer(
            tag,
            match *req {
                Req::Sync(_) | Req::Ref(_) | Req::Mux(..) | Req::Shutdown => {
                    refused("not a request a multiplexed connection may make")
                }
                req => server.apply(req),
            },
            None,
        ),
        MuxReq::Sync(owner, req) => {
            let who = match owner {
                0 => conn,
                n => *owners
                    .entry(n)
                    .or_insert_with(|| NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed)),
            };
            let from = match &req {
                SyncReq::Get(id, _) => Some(*id),
                _ => None,
            };
            if let SyncReq::New(_, name, _, holder) = &req {
                let (named, holder) = (name.is_some(), *holder);
                let r = server.objects.apply(who, req, &mut Nobody);
                return Served::Answer(tag, server.created(r, Space::Sync, named, holder), None);
            }
            match server.objects.apply_parked(conn, who, tag, req, out) {
                Some(r) => Served::Answer(tag, r, from),
                None => Served::Parked(tag),
            }
        }
        // (its answer is the given-up request's, under that request's tag)
        MuxReq::Cancel(t) => match server.objects.cancel(conn, t) {
            true => Served::Answer(t, Resp::Pending, None),
            false => Served::Nothing,
        },
        MuxReq::End(n) => match owners.remove(&n) {
            Some(who) => Served::Stopped(server.objects.end_owner(conn, who)),
            None => Served::Nothing,
        },
        MuxReq::PutBack(id, item) => {
            server.objects.put_back(id, item);
            Served::Nothing
        }
    }
}

/// A client that never waits (a request that is answered at once).
struct Nobody;

impl objects::Peer for Nobody {
    fn alive(&mut self) -> bool {
        true
    }
    fn heartbeat(&mut self) -> bool {
        true
    }
}

/// Sends the answer to request `tag`; an item taken from queue `from` whose answer
/// could not be written goes to `unsent` (to go back to its queue). An answer over [`MAX_FRAME`] is
/// replaced by a [`Resp::TooLarge`] under the same tag (an untagged frame would break
/// the multiplexed protocol: the client would give the whole connection up). False
/// when the connection failed.
fn send_tagged(
    s: &mut Session,
    tag: u64,
    resp: Resp,
    from: Option<u64>,
    unsent: &mut Vec<(u64, Bytes)>,
) -> bool {
    let tagged = Resp::Tagged(tag, Box::new(resp));
    let too_large = |size| Resp::Tagged(tag, Box::new(Resp::TooLarge(size)));
    match send_or_too_large(s, &tagged, too_large) {
        Ok(()) => true,
        Err(e) => {
            if let Resp::Tagged(_, r) = tagged {
                unsent.extend(taken_item(*r, from));
            }
            e.kind() == std::io::ErrorKind::InvalidData
        }
    }
}

/// The item an answer carries that was taken from queue `from` (to give back when the
/// answer is not delivered).
fn taken_item(resp: Resp, from: Option<u64>) -> Option<(u64, Bytes)> {
    match (from, resp) {
        (Some(id), Resp::Opt(Some(item))) => Some((id, item)),
        _ => None,
    }
}

/// Puts the items of `unsent` (oldest first) back at the front of their queues, in
/// the order they were taken.
fn put_back_all(server: &Server, unsent: &mut Vec<(u64, Bytes)>) {
    for (id, item) in unsent.drain(..).rev() {
        server.objects.put_back(id, item);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn recv(s: &mut Session) -> Resp {
        let t = Duration::from_secs(10);
        let frame = s.recv(MAX_FRAME, Some(Instant::now() + t), t).unwrap();
        codec::decode::<Resp>(&frame, Vec::new()).unwrap()
    }

    #[test]
    fn a_multiplexed_answer_over_the_frame_limit_is_too_large_under_its_tag() {
        let (mut client, mut s) = wire::tests::pair();
        let big = Resp::One(vec![7u8; MAX_FRAME + 1].into());
        // (the connection stays usable: the next answer goes through)
        let mut unsent = Vec::new();
        assert!(send_tagged(&mut s, 5, big, None, &mut unsent));
        assert!(send_tagged(&mut s, 6, Resp::Unit, None, &mut unsent));
        match recv(&mut client) {
            Resp::Tagged(5, r) => {
                assert!(
                    matches!(*r, Resp::TooLarge(n) if n > MAX_FRAME as u64),
                    "{r:?}"
                )
            }
            r => panic!("expected a tagged TooLarge, got {r:?}"),
        }
        assert!(matches!(recv(&mut client), Resp::Tagged(6, r) if matches!(*r, Resp::Unit)));
    }

    fn send(s: &mut Session, r: &Req) {
        let mut buf = Vec::new();
        codec::encode(r, &mut buf, None).unwrap();
        s.send(&buf).unwrap();
    }

    #[test]
    fn an_answer_left_in_the_outbox_when_the_connection_fails_gives_its_item_back() {
        let (mut client, s) = wire::tests::pair();
        let server = Arc::new(Server::default());
        let new = SyncReq::New(objects::SyncKind::Queue, None, 0, 0);
        let q = match server.objects.apply(0, new, &mut Nobody) {
            Resp::Id(id) => id,
            r => panic!("{r:?}"),
        };
        // two gets park (the first is the one that made the connection multiplexed);
        // a put gives its item to the first (into the outbox) and its own answer
        // cannot be written: the server's writes fail from the start
        let get = move |tag| (tag, MuxReq::Sync(0, SyncReq::Get(q, None)));
        let (t, m) = get(2);
        send(&mut client, &Req::Mux(t, m));
        let put = SyncReq::Put(q, vec![7u8].into(), None);
        send(&mut client, &Req::Mux(3, MuxReq::Sync(0, put)));
        let fd = s.fd().try_clone_to_owned().unwrap();
        rustix::net::shutdown(&fd, rustix::net::Shutdown::Write).unwrap();
        let (done, ended) = std::sync::mpsc::channel();
        let srv = server.clone();
        std::thread::spawn(move || {
            serve_mux(s, &srv, 1000, get(1));
            let _ = done.send(());
        });
        ended
            .recv_timeout(Duration::from_secs(10))
            .expect("the connection's thread ends once a write failed");
        // the item is back in the queue, and no get of the connection is left parked
        let r = server
            .objects
            .apply(0, SyncReq::Get(q, Some(0)), &mut Nobody);
        assert!(matches!(&r, Resp::Opt(Some(b)) if b[..] == [7u8]), "{r:?}");
        let put = SyncReq::Put(q, vec![8u8].into(), None);
        server.objects.apply(0, put, &mut Nobody);
        let r = server.objects.apply(0, SyncReq::Len(q), &mut Nobody);
        assert!(matches!(r, Resp::Count(1)), "{r:?}");
    }
}
