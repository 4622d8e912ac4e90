//! The kinds of mailbox, and the shared parts of one: the group's cell (a word per
//! fact, read by every handle), its end event and its call lanes.

use crate::shared::RawArray;
use crate::sync::{Event, Lock};
use crate::ExitStatus;
use procactor_transports::os;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod sealed {
    pub trait Sealed {}
}

/// The two kinds of mailbox (sealed).
pub trait MailboxKind: sealed::Sealed + Send + Sync + 'static {
    /// Whether senders wait for a reply.
    const REPLIES: bool;
}

/// A queue mailbox: messages in, nothing back (`send`).
#[derive(Debug)]
pub enum QueueMailbox {}
/// A request/reply mailbox: `call` sends a request and waits for its reply.
#[derive(Debug)]
pub enum PipeMailbox {}
impl sealed::Sealed for QueueMailbox {}
impl sealed::Sealed for PipeMailbox {}
impl MailboxKind for QueueMailbox {
    const REPLIES: bool = false;
}
impl MailboxKind for PipeMailbox {
    const REPLIES: bool = true;
}

// ------------------------------------------------------------------ shared cell

/// Words of a mailbox group's shared cell (a `RawArray<u64>`): a header, then one block
/// per actor sharing the mailbox.
pub(crate) mod cell {
    /// Next call number (callers take one with fetch_add).
    pub(crate) const NEXT_CALL: usize = 0;
    /// The number of the last call lost with a dying actor (the supervisor writes it).
    pub(crate) const LOST_CALL: usize = 1;
    /// 1 once `stop()` was requested: sends are refused from then on.
    pub(crate) const STOPPING: usize = 2;
    /// How many of the group's actors have ended for good.
    pub(crate) const ENDED: usize = 3;
    /// The pid of the process supervising the group (0: none yet).
    pub(crate) const SUPERVISOR: usize = 4;
    /// How many of the group's processes have ended (the supervisor counts them): a
    /// caller whose call vanished looks whether one ended since it sent it.
    pub(crate) const EXITS: usize = 5;
    /// Senders between their `stopping` check and the end of their put (see
    /// `ActorRef::stop`).
    pub(crate) const SENDING: usize = 6;
    /// One message in this many is timed (its sender stamps it; 0: none; see
    /// `counters`).
    pub(crate) const TIME_EVERY: usize = 7;
    /// (a whole cache line: the per-actor words the actor writes on every message do not
    /// share a line with the header words every sender reads)
    pub(crate) const HEADER: usize = 8;

    /// Per actor: current pid (0 when not running).
    pub(crate) const PID: usize = 0;
    /// Per actor: [`super::ActorState`] as a number.
    pub(crate) const STATE: usize = 1;
    /// Per actor: restarts so far.
    pub(crate) const RESTARTS: usize = 2;
    /// Per actor: messages taken by the current incarnation.
    pub(crate) const TAKEN: usize = 3;
    /// Per actor: the call being handled (0: none).
    pub(crate) const IN_CALL: usize = 4;
    /// Per actor: the last exit status (see `encode_status`), 0 = none yet.
    pub(crate) const EXIT: usize = 5;
    /// Per call lane (lane `k` uses actor block `k`'s word): the number of the last call
    /// of this lane an actor took.
    pub(crate) const LANE_TAKEN: usize = 6;
    /// Per call lane: who took it, `member << 32 | pid` (written before `LANE_TAKEN`).
    pub(crate) const LANE_TAKER: usize = 7;

    // The actor's statistics (written by its own process only, with relaxed loads and
    // stores: one writer at a time, a restarted incarnation after the dead one), read
    // by any process holding the group. Counts are kept across restarts.
    /// Per actor: messages and calls handled (`handle` returned).
    pub(crate) const HANDLED: usize = 8;
    /// Per actor: of them, calls.
    pub(crate) const CALLS: usize = 9;
    /// Per actor: `handle` or `started` returned `Err` or panicked.
    pub(crate) const ERRORS: usize = 10;
    /// Per actor: undecodable messages and calls.
    pub(crate) const UNDECODABLE: usize = 11;
    /// Per actor: when the current incarnation started its loop (`CLOCK_MONOTONIC` ns).
    pub(crate) const STARTED_AT: usize = 12;
    /// Per actor: the handle-time histogram (see [`crate::stats`]: buckets then the max),
    /// on a cache line boundary.
    pub(crate) const HANDLE_TIME: usize = 16;
    /// Per actor: the mailbox-wait histogram.
    pub(crate) const MAILBOX_WAIT: usize = HANDLE_TIME + HIST;
    /// Words of a histogram.
    pub(crate) const HIST: usize = crate::stats::HISTOGRAM_BUCKETS + 1;
    /// (rounded up to whole cache lines: pool members write their own blocks at once)
    pub(crate) const BLOCK: usize = (MAILBOX_WAIT + HIST).div_ceil(8) * 8;

    pub(crate) fn len(actors: usize) -> usize {
        HEADER + BLOCK * actors
    }
}

/// Where an actor is in its life, as [`ActorRef`](crate::ActorRef) and the supervisor's tree show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ActorState {
    /// Its process is starting (or waiting to be started).
    Starting,
    /// Running its loop.
    Running,
    /// Ended, and its supervisor is about to start it again.
    Restarting,
    /// Ended for good (stopped, normal exit not restarted, or given up on).
    Ended,
}

impl ActorState {
    pub(crate) fn to_word(self) -> u64 {
        match self {
            ActorState::Starting => 0,
            ActorState::Running => 1,
            ActorState::Restarting => 2,
            ActorState::Ended => 3,
        }
    }
    pub(crate) fn from_word(w: u64) -> ActorState {
        match w {
            1 => ActorState::Running,
            2 => ActorState::Restarting,
            3 => ActorState::Ended,
            _ => ActorState::Starting,
        }
    }
}

impl fmt::Display for ActorState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ActorState::Starting => "starting",
            ActorState::Running => "running",
            ActorState::Restarting => "restarting",
            ActorState::Ended => "ended",
        })
    }
}

pub(crate) fn encode_status(s: ExitStatus) -> u64 {
    match s {
        ExitStatus::Code(c) => (1 << 32) | u64::from(c as u32),
        ExitStatus::Signal(n) => (2 << 32) | u64::from(n as u32),
    }
}

pub(crate) fn decode_status(w: u64) -> Option<ExitStatus> {
    let v = (w & 0xffff_ffff) as u32 as i32;
    match w >> 32 {
        1 => Some(ExitStatus::Code(v)),
        2 => Some(ExitStatus::Signal(v)),
        _ => None,
    }
}

/// The shared parts of a mailbox: cell, end event and (pipe actors) the call lock.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Group {
    pub(crate) cell: RawArray<u64>,
    pub(crate) ended: Event,
    /// One lock per call lane (pipe actors: one lane per member, at most
    /// [`MAX_LANES`]): a caller holds a lane for its call, and the lane's reply queue
    /// carries its reply.
    pub(crate) call_locks: Vec<Lock>,
    pub(crate) actors: u32,
    /// This process's line of `call_async` futures (not shared with other processes).
    #[serde(skip)]
    pub(crate) gate: super::gate::CallGate,
}

/// One message in this many is timed (mailbox wait and handle time) unless the child
/// spec says otherwise ([`ChildSpec::time_every`](crate::ChildSpec::time_every)): the
/// counts are exact, the histograms a random sample (see the `counters` module).
pub const DEFAULT_TIME_EVERY: u32 = 16;

/// How long [`ActorRef::stop`](crate::ActorRef::stop) waits at most for the sends under way (counted in the
/// mailbox's shared cell) to finish before it queues the stop request.
pub const STOP_WAIT_FOR_SENDERS: Duration = Duration::from_secs(1);

/// A sender between its `stopping` check and the end of its put (counted in the
/// group's `SENDING` word).
pub(super) struct Sending<'a>(&'a AtomicU64);

impl<'a> Sending<'a> {
    pub(super) fn enter(g: &'a Group) -> Sending<'a> {
        let w = g.word(cell::SENDING);
        w.fetch_add(1, Ordering::SeqCst);
        Sending(w)
    }
}

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// At most this many calls to one pool of pipe actors run at once (a pool of more
/// members shares the lanes); each lane is a lock and a reply queue.
pub(crate) const MAX_LANES: usize = 64;

/// How many call lanes a group of `actors` has: one per member for pipe actors.
pub(crate) fn lanes(actors: usize, calls: bool) -> usize {
    if calls {
        actors.clamp(1, MAX_LANES)
    } else {
        0
    }
}

/// A call number carries its lane in its low byte.
pub(super) fn lane_of(n: u64) -> usize {
    (n & 0xff) as usize
}

impl Group {
    pub(crate) fn new(actors: usize, calls: bool) -> Result<Group, crate::Error> {
        let cell = RawArray::zeroed(cell::len(actors))?;
        if let Some(w) = cell.atomic_u64(cell::TIME_EVERY) {
            w.store(u64::from(DEFAULT_TIME_EVERY), Ordering::Relaxed);
        }
        Ok(Group {
            cell,
            ended: Event::new()?,
            call_locks: (0..lanes(actors, calls))
                .map(|_| Lock::new())
                .collect::<Result<_, _>>()?,
            actors: actors as u32,
            gate: Default::default(),
        })
    }

    pub(crate) fn word(&self, i: usize) -> &AtomicU64 {
        // the cell is created with `cell::len(actors)` words and every index used is a
        // constant below that; a handle decoded from a hostile peer could be shorter,
        // in which case a spare word stands in
        static SPARE: AtomicU64 = AtomicU64::new(0);
        self.cell.atomic_u64(i).unwrap_or(&SPARE)
    }

    pub(crate) fn actor_word(&self, actor: u32, w: usize) -> &AtomicU64 {
        self.word(cell::HEADER + actor as usize * cell::BLOCK + w)
    }

    pub(crate) fn state(&self, actor: u32) -> ActorState {
        ActorState::from_word(self.actor_word(actor, cell::STATE).load(Ordering::Acquire))
    }

    pub(crate) fn set_state(&self, actor: u32, s: ActorState) {
        self.actor_word(actor, cell::STATE)
            .store(s.to_word(), Ordering::Release);
    }

    pub(crate) fn pid(&self, actor: u32) -> Option<u32> {
        match self.actor_word(actor, cell::PID).load(Ordering::Acquire) {
            0 => None,
            p => u32::try_from(p).ok(),
        }
    }

    /// Actor `actor`'s statistics as its process has written them.
    pub(crate) fn actor_stats(&self, actor: u32) -> crate::stats::ActorStats {
        let w = |i| self.actor_word(actor, i).load(Ordering::Relaxed);
        let started = w(cell::STARTED_AT);
        let uptime_ms = (self.state(actor) == ActorState::Running && started != 0).then(|| {
            procactor_transports::observe::monotonic_ns().saturating_sub(started) / 1_000_000
        });
        crate::stats::ActorStats {
            handled: w(cell::HANDLED),
            calls: w(cell::CALLS),
            errors: w(cell::ERRORS),
            undecodable: w(cell::UNDECODABLE),
            handle_time: self.histogram(actor, cell::HANDLE_TIME),
            mailbox_wait: self.histogram(actor, cell::MAILBOX_WAIT),
            uptime_ms,
        }
    }

    fn histogram(&self, actor: u32, at: usize) -> crate::stats::Histogram {
        crate::stats::read_histogram(|i| self.actor_word(actor, at + i).load(Ordering::Relaxed))
    }

    /// Marks one actor as ended for good; the last one sets the end event.
    pub(crate) fn mark_ended(&self, actor: u32) {
        if self.state(actor) == ActorState::Ended {
            return;
        }
        self.set_state(actor, ActorState::Ended);
        self.actor_word(actor, cell::PID)
            .store(0, Ordering::Release);
        let n = self.word(cell::ENDED).fetch_add(1, Ordering::AcqRel) + 1;
        if n >= u64::from(self.actors) {
            self.ended.set();
        }
    }

    /// Undoes [`mark_ended`](Group::mark_ended) for an actor started again (a unit
    /// whose child supervisor gave up and was itself restarted).
    pub(crate) fn reopen(&self, actor: u32) {
        if self.state(actor) == ActorState::Ended {
            self.set_state(actor, ActorState::Restarting);
            self.word(cell::ENDED).fetch_sub(1, Ordering::AcqRel);
            self.ended.clear();
        }
    }

    /// Refuses sends from now on and waits (at most [`STOP_WAIT_FOR_SENDERS`]) until
    /// the senders that got past their check have put their message: a stop request
    /// queued after this comes after every message whose send returned `Ok`.
    pub(crate) fn close_for_stop(&self) {
        self.word(cell::STOPPING).store(1, Ordering::SeqCst);
        let sending = self.word(cell::SENDING);
        let until = Instant::now() + STOP_WAIT_FOR_SENDERS;
        let mut spins = 0u32;
        while sending.load(Ordering::SeqCst) != 0 && Instant::now() < until {
            spins += 1;
            if spins < 100 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }

    pub(crate) fn all_ended(&self) -> bool {
        self.ended.is_set()
    }

    /// Whether the group's supervisor process is gone: its actors are gone with it
    /// (parent-death signal) and nobody will mark them ended.
    pub(crate) fn orphaned(&self) -> bool {
        match self.word(cell::SUPERVISOR).load(Ordering::Acquire) {
            0 => false,
            p => u32::try_from(p).is_ok_and(|p| !os::process_alive(p)),
        }
    }

    /// Ended for good, or its supervisor is gone.
    pub(crate) fn over(&self) -> bool {
        self.all_ended() || self.orphaned()
    }
}
