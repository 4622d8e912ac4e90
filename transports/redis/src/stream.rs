//! The untyped core of every queue handle: one Redis stream read by one consumer group,
//! one connection and one consumer name per handle.

use crate::aio::Aio;
use crate::conn::{self, Entry, RedisError, MAX_BLOCK, PAYLOAD_FIELD};
use redis::Value;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The default visibility timeout: a pending entry idle this long is taken over.
pub(crate) const DEFAULT_VISIBILITY: Duration = Duration::from_secs(30);
/// The default consumer group.
pub(crate) const DEFAULT_GROUP: &str = "procactor";

/// The first and the longest pause between two checks of a bounded put waiting for
/// room and of a join (sync and async alike): doubling from the first.
pub(crate) const FIRST_NAP: Duration = Duration::from_micros(200);
pub(crate) const LONGEST_NAP: Duration = Duration::from_millis(20);

/// What a handle is, as it travels to another process: everything but the connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Config {
    pub(crate) url: String,
    pub(crate) name: String,
    pub(crate) group: String,
    pub(crate) maxsize: usize,
    pub(crate) visibility_ms: u64,
    pub(crate) prefetch: usize,
}

impl Config {
    pub(crate) fn new(url: &str, name: &str) -> Config {
        Config {
            url: url.to_string(),
            name: name.to_string(),
            group: DEFAULT_GROUP.to_string(),
            maxsize: 0,
            visibility_ms: DEFAULT_VISIBILITY.as_millis() as u64,
            prefetch: 1,
        }
    }

    fn claim_interval(&self) -> Duration {
        (Duration::from_millis(self.visibility_ms) / 2)
            .clamp(Duration::from_millis(20), Duration::from_secs(5))
    }
}

/// An entry handed to this handle: id, payload, how many times it has been delivered.
#[derive(Debug)]
pub(crate) struct Delivered {
    pub(crate) id: String,
    pub(crate) payload: Option<Vec<u8>>,
    pub(crate) deliveries: u64,
}

/// Why an operation failed, before the typed layer gives the item back.
#[derive(Debug)]
pub(crate) enum Failure {
    Full,
    Closed,
    Empty,
    Redis(RedisError),
}

impl From<RedisError> for Failure {
    fn from(e: RedisError) -> Self {
        Failure::Redis(e)
    }
}

impl From<redis::RedisError> for Failure {
    fn from(e: redis::RedisError) -> Self {
        Failure::Redis(RedisError(e))
    }
}

/// One read round's commands (see `Core::fetch`): `acks` acknowledgement commands,
/// then `XAUTOCLAIM` when `claim`, then `XREADGROUP`.
pub(crate) struct FetchPlan {
    pub(crate) pipe: redis::Pipeline,
    pub(crate) claim: bool,
    pub(crate) acks: usize,
}

/// The entries claimed and the entries read, out of the replies of a read round
/// (`[XAUTOCLAIM,] XREADGROUP`, without the acknowledgements').
pub(crate) fn split_fetch(claim: bool, replies: &[Value]) -> (Vec<Entry>, Vec<Entry>) {
    match (claim, replies) {
        (true, [claim, read]) => (conn::autoclaim_reply(claim).0, conn::read_reply(read)),
        (false, [read]) => (Vec::new(), conn::read_reply(read)),
        _ => (Vec::new(), Vec::new()),
    }
}

/// Buffers the entries of a read round: the claimed ones first (stale entries before
/// new ones), with their delivery counts (`XPENDING` replies, in order), then the ones
/// read.
fn buffer(st: &mut State, claimed: Vec<Entry>, counts: Vec<Value>, read: Vec<Entry>) {
    let mut counts = counts.into_iter();
    for Entry { id, payload } in claimed {
        let deliveries = counts
            .next()
            .and_then(|n| conn::pending_deliveries(&n))
            .unwrap_or(2);
        tracing::debug!(%id, deliveries, "took over a stale entry");
        st.buffer.push_back(Delivered {
            id,
            payload,
            deliveries,
        });
    }
    for Entry { id, payload } in read {
        st.buffer.push_back(Delivered {
            id,
            payload,
            deliveries: 1,
        });
    }
}

#[derive(Default)]
struct State {
    /// Entries read ahead (`prefetch > 1`) and not yet returned.
    buffer: VecDeque<Delivered>,
    /// Auto-ack mode: ids returned by `get`, acknowledged with the next command.
    to_ack: Vec<String>,
    /// Joinable mode: ids returned by `get` and not yet `task_done`, oldest first.
    outstanding: VecDeque<String>,
    last_claim: Option<Instant>,
    last_error: Option<String>,
    /// A read round (sync, or an async lane's) failed after it was sent: entries may
    /// have been delivered to this consumer that only `XAUTOCLAIM` can now reach (so
    /// the consumer is not deleted).
    lost_read: bool,
}

/// One handle's stream state.
pub(crate) struct Core {
    pub(crate) cfg: Config,
    pub(crate) consumer: String,
    /// `get` acknowledges (and deletes) what it returns (`Queue`), or leaves that to
    /// `task_done` (`JoinableQueue`).
    auto_ack: bool,
    closed: AtomicBool,
    /// The sync methods' blocking connection, held across their round trips (and a
    /// bounded `put`'s waits between checks are taken without it).
    sync_con: Mutex<Option<redis::Connection>>,
    /// What the sync and the async methods share, locked only to plan a round trip and
    /// to apply its replies, never across one (so that a sync `get` blocked in
    /// `XREADGROUP` does not hold up the async methods). Lock order: `sync_con` or a
    /// lane (`aio`), then `state`.
    state: Mutex<State>,
    /// The async methods' connections (`crate::aio`).
    pub(crate) aio: Aio,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("cfg", &self.cfg)
            .field("consumer", &self.consumer)
            .field("auto_ack", &self.auto_ack)
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish()
    }
}

fn ack_cmds(p: &mut redis::Pipeline, cfg: &Config, ids: &[String]) {
    if ids.is_empty() {
        return;
    }
    p.cmd("XACK")
        .arg(&cfg.name)
        .arg(&cfg.group)
        .arg(ids)
        .ignore();
    p.cmd("XDEL").arg(&cfg.name).arg(ids).ignore();
}

impl Core {
    /// A handle that connects on first use.
    pub(crate) fn lazy(cfg: Config, auto_ack: bool) -> Core {
        Core {
            cfg,
            consumer: conn::consumer_name(),
            auto_ack,
            closed: AtomicBool::new(false),
            sync_con: Mutex::new(None),
            state: Mutex::new(State::default()),
            aio: Aio::default(),
        }
    }

    /// A handle connected now (so that a wrong URL or a missing server shows at once).
    pub(crate) fn connect(cfg: Config, auto_ack: bool) -> Result<Core, RedisError> {
        let core = Core::lazy(cfg, auto_ack);
        core.con(&mut core.sync_con())?;
        Ok(core)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn sync_con(&self) -> MutexGuard<'_, Option<redis::Connection>> {
        self.sync_con.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn con<'a>(
        &self,
        con: &'a mut Option<redis::Connection>,
    ) -> Result<&'a mut redis::Connection, RedisError> {
        if con.is_none() {
            let mut c = conn::connect(&self.cfg.url)?;
            conn::ensure_group(&mut c, &self.cfg.name, &self.cfg.group)?;
            *con = Some(c);
        }
        Ok(con.as_mut().expect("connected just above"))
    }

    /// Runs `f` on the sync connection (`con`, locked by the caller; `state` is not
    /// held); an error drops the connection (the next call reconnects) and is
    /// remembered for [`Core::last_error`].
    fn run<R>(
        &self,
        con: &mut Option<redis::Connection>,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<R>,
    ) -> Result<R, RedisError> {
        let r = match self.con(con) {
            Ok(c) => f(c).map_err(RedisError),
            Err(e) => Err(e),
        };
        if let Err(e) = &r {
            *con = None;
            self.note_error(e);
        }
        r
    }

    pub(crate) fn last_error(&self) -> Option<String> {
        self.lock().last_error.clone()
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Entries not yet delivered to any consumer (`XLEN` minus the group's pending).
    pub(crate) fn len(&self) -> Result<usize, RedisError> {
        self.len_on(&mut self.sync_con())
    }

    fn len_on(&self, con: &mut Option<redis::Connection>) -> Result<usize, RedisError> {
        // (`query` leaves out the replies of the ignored acknowledgements)
        let (p, _) = self.len_pipeline();
        let (xlen, pending): (Value, Value) = self.run(con, |c| p.query(c))?;
        let undelivered = conn::int(&xlen).saturating_sub(conn::pending_count(&pending));
        Ok(usize::try_from(undelivered).unwrap_or(usize::MAX))
    }

    /// Entries in the stream: put and not yet acknowledged (`XLEN`, acknowledged entries
    /// being deleted).
    pub(crate) fn unfinished(&self) -> Result<u64, RedisError> {
        let mut con = self.sync_con();
        let (p, _) = self.xlen_pipeline();
        let (xlen,): (Value,) = self.run(&mut con, |c| p.query(c))?;
        Ok(conn::int(&xlen))
    }

    /// `XADD`s every payload in one pipeline, after waiting (until `deadline`) for the
    /// queue to have room when it is bounded.
    pub(crate) fn put(
        &self,
        payloads: &[Vec<u8>],
        deadline: Option<Instant>,
    ) -> Result<(), Failure> {
        if self.is_closed() {
            return Err(Failure::Closed);
        }
        if payloads.is_empty() {
            return Ok(());
        }
        let mut con = self.sync_con();
        if self.cfg.maxsize > 0 {
            let mut nap = FIRST_NAP;
            loop {
                let len = self.len_on(&mut con)?;
                if len == 0 || len + payloads.len() <= self.cfg.maxsize {
                    break;
                }
                // the wait holds no lock: other users of the handle go on meanwhile
                drop(con);
                let now = Instant::now();
                match deadline {
                    Some(d) if now >= d => return Err(Failure::Full),
                    Some(d) => std::thread::sleep(nap.min(d - now)),
                    None => std::thread::sleep(nap),
                }
                nap = (nap * 2).min(LONGEST_NAP);
                con = self.sync_con();
            }
        }
        let p = self.put_pipeline(payloads);
        self.run(&mut con, |c| p.exec(c))?;
        Ok(())
    }

    /// The next entry: a stale one taken over from a dead consumer, else a new one;
    /// waits until `deadline` (`None`: for ever, `Some(now)`: not at all).
    pub(crate) fn get(&self, deadline: Option<Instant>) -> Result<Delivered, Failure> {
        if self.is_closed() {
            return Err(Failure::Closed);
        }
        let mut con = self.sync_con();
        loop {
            if let Some(d) = self.take_buffered() {
                return Ok(d);
            }
            self.fetch(&mut con, deadline)?;
            if deadline.is_some_and(|d| Instant::now() >= d) && self.lock().buffer.is_empty() {
                return Err(Failure::Empty);
            }
        }
    }

    /// One round of reading into the buffer, in one pipelined round trip: the
    /// acknowledgements owed, a claim of stale entries when due (`XAUTOCLAIM`), then
    /// `XREADGROUP >` blocking at most until the next claim is due, `deadline`, or
    /// [`MAX_BLOCK`] (not at all when the claim found entries).
    fn fetch(
        &self,
        con: &mut Option<redis::Connection>,
        deadline: Option<Instant>,
    ) -> Result<(), Failure> {
        let plan = self.plan_fetch(&mut self.lock(), deadline);
        // (`query` leaves out the replies of the ignored acknowledgements)
        let replies: Vec<Value> = self
            .run(con, |c| plan.pipe.query(c))
            .inspect_err(|_| self.lost_read())?;
        let (claimed, read) = split_fetch(plan.claim, &replies);
        let counts = if claimed.is_empty() {
            Vec::new()
        } else {
            let p = self.counts_pipeline(&claimed);
            self.run(con, |c| p.query(c))
                .inspect_err(|_| self.lost_read())?
        };
        buffer(&mut self.lock(), claimed, counts, read);
        Ok(())
    }

    /// The commands of one read round (see [`Core::fetch`]), taking the acknowledgements
    /// owed and starting the claim interval when a claim is due.
    fn plan_fetch(&self, st: &mut State, deadline: Option<Instant>) -> FetchPlan {
        let cfg = &self.cfg;
        let now = Instant::now();
        let interval = cfg.claim_interval();
        let claim_due = st
            .last_claim
            .is_none_or(|t| now.duration_since(t) >= interval);
        if claim_due {
            st.last_claim = Some(now);
        }
        let next_claim = st.last_claim.map_or(now, |t| t + interval);
        let mut wait = next_claim.saturating_duration_since(now).min(MAX_BLOCK);
        if let Some(d) = deadline {
            wait = wait.min(d.saturating_duration_since(now));
        }
        let to_ack = std::mem::take(&mut st.to_ack);
        let count = cfg.prefetch.max(1);
        let mut p = redis::pipe();
        ack_cmds(&mut p, cfg, &to_ack);
        let acks = p.len();
        if claim_due {
            p.cmd("XAUTOCLAIM")
                .arg(&cfg.name)
                .arg(&cfg.group)
                .arg(&self.consumer)
                .arg(cfg.visibility_ms)
                .arg("0-0")
                .arg("COUNT")
                .arg(count);
        }
        let block_ms = wait.as_millis() as u64;
        let read = p
            .cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&cfg.group)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(count);
        if block_ms > 0 && !claim_due {
            // BLOCK 0 would be for ever: a zero wait is a non-blocking read. A claim
            // round does not block (what it claims must not wait behind the read).
            read.arg("BLOCK").arg(block_ms);
        }
        read.arg("STREAMS").arg(&cfg.name).arg(">");
        FetchPlan {
            pipe: p,
            claim: claim_due,
            acks,
        }
    }

    /// `XPENDING` of each claimed entry, for its delivery count.
    pub(crate) fn counts_pipeline(&self, claimed: &[Entry]) -> redis::Pipeline {
        let cfg = &self.cfg;
        let mut p = redis::pipe();
        for e in claimed {
            p.cmd("XPENDING")
                .arg(&cfg.name)
                .arg(&cfg.group)
                .arg(&e.id)
                .arg(&e.id)
                .arg(1);
        }
        p
    }

    // ---- the async lanes' side (`crate::aio`): the same commands and the same state,
    // ---- sent and read on the lanes' own connections

    /// A read round for an async `get` (no deadline: the runtime's own timeouts cancel
    /// the future instead).
    pub(crate) fn fetch_job(&self) -> FetchPlan {
        let mut st = self.lock();
        self.plan_fetch(&mut st, None)
    }

    /// Buffers what an async read round brought: `claimed` (with their `XPENDING`
    /// `counts`) first, then `read`.
    pub(crate) fn fetched(&self, claimed: Vec<Entry>, counts: Vec<Value>, read: Vec<Entry>) {
        buffer(&mut self.lock(), claimed, counts, read);
    }

    /// An entry read ahead, handed to the caller (recorded for its acknowledgement as
    /// `get` records it).
    pub(crate) fn take_buffered(&self) -> Option<Delivered> {
        let mut st = self.lock();
        let d = st.buffer.pop_front()?;
        if self.auto_ack {
            st.to_ack.push(d.id.clone());
        } else {
            st.outstanding.push_back(d.id.clone());
        }
        Some(d)
    }

    /// A read round failed after it was sent (see `State::lost_read`).
    pub(crate) fn lost_read(&self) {
        self.lock().lost_read = true;
    }

    /// An async connection failed: remembered for [`Core::last_error`].
    pub(crate) fn note_error(&self, e: &RedisError) {
        self.lock().last_error = Some(e.to_string());
    }

    /// Entry `id` (undecodable) is acknowledged and deleted with this handle's next read
    /// round, as an item `get` returned: no round trip of its own (for async callers).
    pub(crate) fn discard_later(&self, id: &str) {
        let mut st = self.lock();
        st.outstanding.retain(|o| o != id);
        if !st.to_ack.iter().any(|o| o == id) {
            st.to_ack.push(id.to_string());
        }
    }

    /// `XADD` of each payload.
    pub(crate) fn put_pipeline(&self, payloads: &[Vec<u8>]) -> redis::Pipeline {
        let mut p = redis::pipe();
        for b in payloads {
            p.cmd("XADD")
                .arg(&self.cfg.name)
                .arg("*")
                .arg(PAYLOAD_FIELD)
                .arg(b.as_slice());
        }
        p
    }

    /// The acknowledgements owed (taken from the state), then `XLEN` and the group's
    /// `XPENDING` summary: undelivered = the first − the second's count; and how many
    /// commands the acknowledgements are (their replies come first; `query` leaves
    /// them out, being ignored).
    pub(crate) fn len_pipeline(&self) -> (redis::Pipeline, usize) {
        let to_ack = std::mem::take(&mut self.lock().to_ack);
        let mut p = redis::pipe();
        ack_cmds(&mut p, &self.cfg, &to_ack);
        let acks = p.len();
        p.cmd("XLEN").arg(&self.cfg.name);
        p.cmd("XPENDING").arg(&self.cfg.name).arg(&self.cfg.group);
        (p, acks)
    }

    /// The acknowledgements owed (taken from the state, as a read round takes them),
    /// then `XLEN`; and how many commands the acknowledgements are. Without them a
    /// `join_async` after an undecodable entry (acknowledged with the next round) would
    /// wait for ever when no read round comes.
    pub(crate) fn xlen_pipeline(&self) -> (redis::Pipeline, usize) {
        let to_ack = std::mem::take(&mut self.lock().to_ack);
        let mut p = redis::pipe();
        ack_cmds(&mut p, &self.cfg, &to_ack);
        let acks = p.len();
        p.cmd("XLEN").arg(&self.cfg.name);
        (p, acks)
    }

    /// Acknowledges (and deletes) the oldest entry `get` returned and `task_done` has
    /// not; `Ok(false)` when there is none.
    pub(crate) fn task_done(&self) -> Result<bool, RedisError> {
        let mut con = self.sync_con();
        let Some(id) = self.lock().outstanding.pop_front() else {
            return Ok(false);
        };
        let cfg = &self.cfg;
        let ids = [id];
        self.run(&mut con, |c| {
            let mut p = redis::pipe();
            ack_cmds(&mut p, cfg, &ids);
            p.exec(c)
        })?;
        Ok(true)
    }

    /// Acknowledges (and deletes) entry `id` at once: a task done, or a payload that
    /// cannot be decoded, dropped.
    pub(crate) fn discard(&self, id: &str) -> Result<(), RedisError> {
        let mut con = self.sync_con();
        {
            let mut st = self.lock();
            st.outstanding.retain(|o| o != id);
            st.to_ack.retain(|o| o != id);
        }
        let cfg = &self.cfg;
        let ids = [id.to_string()];
        self.run(&mut con, |c| {
            let mut p = redis::pipe();
            ack_cmds(&mut p, cfg, &ids);
            p.exec(c)
        })
    }

    /// Forgets entry `id` without acknowledging it: it stays pending and is taken over
    /// after the visibility timeout (by this handle or another).
    pub(crate) fn release(&self, id: &str) {
        self.lock().outstanding.retain(|o| o != id);
    }

    /// Runs `f` on this handle's connection (for the pool's own commands).
    pub(crate) fn with_connection<R>(
        &self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<R>,
    ) -> Result<R, RedisError> {
        self.run(&mut self.sync_con(), f)
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        // a read round of an async `get` still under way (its future dropped) may have
        // delivered entries to this consumer that no one has read: they must stay in
        // the group's pending list, for XAUTOCLAIM (deleting the consumer drops them)
        let reading = self.aio.reading();
        let read_async = self.aio.read_used();
        let st = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        let con = self.sync_con.get_mut().unwrap_or_else(|e| e.into_inner());
        if con.is_none() && (read_async || !st.to_ack.is_empty()) {
            // a handle used only through its async methods, with acknowledgements owed
            // or a consumer its async reads made: settled on a connection of its own (as
            // the sync path's are, a blocking round trip); one that only put (or
            // joined) has nothing to settle and connects for nothing
            *con = conn::connect(&self.cfg.url).ok();
        }
        let Some(c) = con.as_mut() else { return };
        let cfg = &self.cfg;
        let mut p = redis::pipe();
        ack_cmds(&mut p, cfg, &st.to_ack);
        if st.buffer.is_empty() && st.outstanding.is_empty() && !reading && !st.lost_read {
            // nothing pending here: forget this consumer (a consumer holding entries is
            // left for XAUTOCLAIM, which is how its entries reach a live one)
            p.cmd("XGROUP")
                .arg("DELCONSUMER")
                .arg(&cfg.name)
                .arg(&cfg.group)
                .arg(&self.consumer)
                .ignore();
        }
        let _ = p.exec(c);
    }
}
