// Over 800 lines (about 2450): not split in the change that made it model-checkable
// (loom), so that a move does not hide in a behaviour-sensitive refactor; natural cuts for a
// later split: streaming, the overflow area, recovery and the producer registry.
//! A multi-producer multi-consumer byte ring in shared memory: the body of a `Queue`.
//!
//! One [`ShmRegion`] holds a one-page header and a power-of-two byte ring. Messages are
//! *records* `[u32 header][bytes]`; the header holds the record's length and two flags:
//! `MORE` (another piece of the same message follows) and `ABORT` (the message being
//! streamed is abandoned; the reader drops what it gathered).
//!
//! # Protocol
//!
//! - A robust **writer lock** serializes writers among themselves and a robust **reader
//!   lock** readers among themselves ([`crate::robust`]). Between the one writer and the
//!   one reader holding them the ring is a lock-free SPSC ring: the writer copies bytes
//!   past `tail` and publishes them with a release store of `tail`; the reader copies
//!   bytes from `head` and frees them with a release store of `head`.
//! - A message whose record fits in the ring is written as one record. A larger one is
//!   **streamed**: pieces of at most a quarter of the ring, each but the last flagged
//!   `MORE`, while the writer keeps its lock; the reader keeps its lock and reassembles
//!   them. Several pieces fit in the ring at once, so the reader copies one out while the
//!   writer copies the next in.
//!   Two messages never interleave. A streaming writer always leaves 4 bytes free after
//!   each piece, so that an `ABORT` record can always be written (by itself on timeout,
//!   or by whoever recovers the lock after its death).
//! - **Blocking** costs no system call when nobody sleeps: a side that must wait spins a
//!   few tens of microseconds (adaptive), yields, then registers in a waiter count and
//!   sleeps on a futex sequence word; the other side bumps the word and wakes only when
//!   the waiter count is non-zero (the count increment and the `tail`/`head` store are
//!   ordered by `SeqCst` fences, so a wake-up is never missed).
//! - **Bounded** rings (`maxsize > 0`) count messages: `written` (by the writer) minus
//!   `read` (by the reader). A writer waits while that difference is `maxsize`; since only
//!   the writer-lock holder increments `written`, the ring never holds more than
//!   `maxsize` messages.
//!
//! # A process killed in the middle: recovery, not `Broken`
//!
//! Every change of a side's shared state (`tail, written, writing-partial` for the
//! writer; `head, read, reading-partial` for the reader) goes through a small **journal**
//! ([`crate::journal`]): the new values are written, a `state` word is set, the values
//! are applied, `state` is cleared (with release fences between the steps). Bytes past
//! `tail` are invisible until `tail` moves, and a reader only moves `head` after copying
//! a whole record. So at any instant a side's shared state is either the old or the new
//! committed state, or `state == 1` with the full new state in the journal. When a lock
//! is taken over from a dead owner ([`Acquired::OwnerDied`]) the new owner re-applies a
//! pending journal and then:
//! - writer side: if a streamed message was half written, it appends an `ABORT` record
//!   (there is always room for it, see above); readers drop the partial message;
//! - reader side: if a streamed message was half read, the new reader discards its
//!   remaining pieces (the message is lost, as if the dead reader had taken it).
//!
//! The count of *tasks put* (a `JoinableQueue`'s side of `unfinished = put - done`) is
//! writer state too, in the same journal and stored before `tail`: a message and its task
//! become visible together, so a writer killed mid-message leaves neither behind.
//!
//! A reader waiting for the next piece of a streamed message checks that the writer is
//! alive and performs the writer-side recovery itself if it is not. Hence no process ever
//! sees a torn message and no process waits forever for a dead one; the ring stays usable.
//! Only a header that breaks the ring's invariants (a record longer than the data
//! available, `tail - head` larger than the ring — which only memory corruption or a
//! hostile peer can produce) marks the ring **broken**: every later operation then
//! returns `Broken`.
//!
//! # A reader that gives up mid-message: the writer delivers it again
//!
//! A reader with a deadline that is in the middle of a streamed message waits past the
//! deadline only while the writer makes progress: when the deadline has passed and no
//! piece came for `MID_STREAM_GRACE` (100 ms: a frozen writer, e.g. `SIGSTOP`ped), it
//! returns `Empty`. It records that in the header's *stream fate* word (`dropped`, with
//! the message's number: the writer's `written` before its first piece, which is the
//! reader's `read` while it reads it) with one compare-and-swap, and leaves
//! `reading-partial` set, so the next reader drops the rest of that message up to its
//! `ABORT`. The writer loads the word (relaxed, no system call) before each piece and
//! while it waits for room; before publishing the *last* piece it claims the message
//! (`claimed`, a compare-and-swap on the same word). Whichever side's swap comes first
//! decides:
//!
//! - the reader's: the writer writes `ABORT` and delivers the message again, in the hot
//!   ring streamed anew from its first piece (a bounded ring waits for room and a free
//!   slot as any put does, and the put fails with `Full` if its deadline passes first:
//!   never `Ok` for a message not delivered), or, in an unbounded ring whose writer was
//!   streaming to a consumer inside `pop`, whole in the overflow area;
//! - the writer's: the reader does not give up on this message; it waits for the last
//!   piece, which is being published (only a writer frozen in the few instructions
//!   between its swap and its commit holds it longer).
//!
//! A process killed at any point has either swapped or not (one word, one step: no
//! journal); a writer killed after either swap has its stream aborted by recovery as
//! before, and its put never returned. So an item whose put returned `Ok` is delivered,
//! also when a reader gave up in the middle of it. (A reader that *dies* mid-message
//! still takes the message with it, as if it had received it.)
//!
//! # Overflow: unbounded rings
//!
//! A ring made by [`Ring::create_unbounded`] (what an unbounded `Queue` uses) never makes
//! a writer wait for room. Its memory file is `[header][hot ring][overflow area]`: the
//! overflow area (64 GiB by default) is sparse — `ftruncate` costs nothing and tmpfs
//! allocates a page only when it is first written — and each process maps it (`MAP_SHARED
//! | MAP_NORESERVE`) only the first time it needs it. There is one memory file per queue,
//! so no descriptor ever has to be passed to a peer when the backlog grows.
//!
//! The overflow area is a second byte ring with 64-bit positions (`ov_tail` moved by the
//! writer-lock holder, `ov_head` by the reader-lock holder) and the same record format.
//! Two *control records*, `ABORT | MORE` with length 1 or 2 (a combination no data or
//! abort record has), switch between the areas:
//!
//! - **`LINK`** (in the hot ring): the messages that follow are in the overflow area. A
//!   writer that finds the hot ring too full for its message, or a message larger than
//!   the hot ring, writes `LINK` at `tail` and the message at `ov_tail`, and commits
//!   `tail + 4`, `ov_tail + size` and *overflow mode* in one journaled step. While in
//!   overflow mode every writer appends to the overflow area, so FIFO order (and each
//!   producer's order) holds. (When the hot ring is full and the reader is in it and not
//!   asleep, the writer first spins up to 50 µs for room — 10 µs if `head` does not move
//!   at all: a producer slightly faster than its consumer then stays in the hot ring, as
//!   before, instead of paying for fresh overflow pages. A put whose deadline has already
//!   passed — `try_put` — does not spin: it overflows at once.)
//! - **`RETURN`** (in the overflow area): the messages that follow are in the hot ring
//!   again. A writer in overflow mode that finds at least half of the hot ring free (and
//!   room for its message) writes `RETURN` at `ov_tail` and its message at `tail`, and
//!   commits both positions and *hot mode* in one step. The half-ring threshold keeps the
//!   sides from flapping between the areas at every message.
//!
//! The reader follows: a `LINK` at `head` puts it in overflow mode (it then reads at
//! `ov_head`), a `RETURN` at `ov_head` back in hot mode. Its mode is journaled with
//! `head` and `ov_head`; the writer's with `tail` and `ov_tail` (`ov_tail` is stored
//! before `tail`, so a reader that sees a `LINK` sees the overflow bytes it leads to).
//! The hot ring always keeps 4 bytes free for a `LINK` and the overflow area 4 bytes for
//! a `RETURN`, as a streaming writer keeps 4 bytes for an `ABORT`.
//!
//! A message in the overflow area is written whole (in records of at most 1 GiB flagged
//! `MORE`, all committed at once), never streamed: overflow messages need no `ABORT`,
//! and a writer or reader killed at any step of a switch is recovered by the journals
//! exactly as in the hot ring (the switch *is* a journaled commit): a writer killed
//! before its commit leaves nothing visible, one killed inside it has its commit
//! completed by the next writer; a reader killed before its commit leaves the message
//! (or the `LINK`/`RETURN`) in place for the next reader, one killed inside it counts as
//! having taken it.
//!
//! A message larger than the hot ring, put while a consumer is inside a `pop` on the
//! hot ring (it holds the reader lock, in hot mode), is first **streamed** through the
//! hot ring as in a bounded ring: no fresh pages on either side, the consumer copying
//! one piece out while the writer copies the next in. If the consumer stops making room
//! for `STREAM_STALL` (1 ms), the writer writes `ABORT` (the reader drops the pieces it
//! gathered) and then `LINK` and the whole message in the overflow area, so `put` still
//! never waits for a consumer. With no consumer inside a `pop` (e.g. `q.put(big);
//! q.get()` on one thread), the message goes to the overflow area at once. A writer in
//! overflow mode with such a message, finding the overflow area consumed to its end and
//! a consumer inside a `pop`, writes `RETURN` and streams it through the hot ring the
//! same way (so a run of large messages does not stay in the overflow area for good).
//!
//! The reader gives memory back: after taking a message from the overflow area it
//! punches a hole (`fallocate(PUNCH_HOLE)`) over every whole 1 MiB step it has consumed,
//! one system call per MiB, and over all it has consumed when it follows a `RETURN` or
//! finds the overflow area empty. How far it has punched (`ov_punched`) is not
//! journaled: punching twice is harmless, and a reader killed before punching leaves the
//! work to the next one. Writers count the overflow area's free bytes from `ov_punched`,
//! not `ov_head`: a byte consumed but not yet punched is never written again (after the
//! area wraps) before the punch that would zero it.
//!
//! Only a backlog filling the whole overflow area (more than the machine's memory, in
//! practice) makes a writer wait, for the reader to free room in either area, exactly as
//! in a full bounded ring. A message larger than the overflow area itself is streamed
//! through the hot ring as without overflow. A process that cannot map the overflow area
//! (no address space left) gets [`PushError::Broken`] / [`PopError::Broken`] for the
//! operations that need it; the ring itself is not marked broken.
//!
//! `len()` counts messages in both areas (`written - read`); `is_full()` is true only
//! when the overflow area is (nearly) full.
//!
//! # Producers
//!
//! The header also keeps a registry of *producer* processes (pid and handle count) so
//! that a reader can tell that nobody can write any more ([`Ring::producers_alive`]): a
//! slot whose process has died counts as gone. A process id reused by an unrelated
//! process after the producer died counts as alive until that process exits.
//!
//! # Examples
//!
//! ```
//! use procactor_transports::ring::Ring;
//!
//! let w = Ring::create(4096, 0).unwrap();
//! let r = Ring::open(w.try_clone_fd().unwrap()).unwrap(); // e.g. in another process
//! w.push(b"hello", None).unwrap();
//! let mut buf = Vec::new();
//! r.pop(&mut buf, None, false).unwrap();
//! assert_eq!(buf, b"hello");
//! ```

use crate::journal::Journal;
use crate::killpoint;
use crate::robust::{self, Acquired, Owners};
#[cfg(not(all(test, loom)))]
use crate::shm::ShmRegion;
use crate::shm::ShmWindow;
use crate::waiter::{self, Slept};
#[cfg(not(all(test, loom)))]
use crate::{BorrowedFd, OwnedFd};
use std::io;
use std::sync::atomic::Ordering;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

// What the ring's shared memory and sleeping are made of. In every build but the loom
// tests: the memory file's words (`std` atomics), the operating system's futex, this
// process's lock identity and liveness checks (`waiter::Os`). Under
// `RUSTFLAGS="--cfg loom" cargo test`, the same code runs on a heap region of loom
// atomics, a modelled futex and one lock identity per thread
// (`loom_tests::model`): nothing else in this file changes.
#[cfg(not(all(test, loom)))]
use std::sync::atomic::{AtomicU32, AtomicU64};
#[cfg(not(all(test, loom)))]
type Region = ShmRegion;
#[cfg(not(all(test, loom)))]
const FX: waiter::Os = waiter::Os;
#[cfg(all(test, loom))]
use crate::loom_tests::model::{fail_point, AtomicU32, AtomicU64, Region, FX};

const MAGIC: u32 = 0x5052_5131; // "PRQ1"
const HEADER: usize = 4096;

// line 0: constants
const OFF_MAGIC: usize = 0;
const OFF_CAP: usize = 8;
const OFF_MAXSIZE: usize = 16;
const OFF_BROKEN: usize = 24;
/// Size of the overflow area (`0`: none) and its byte offset in the memory file.
#[cfg_attr(all(test, loom), allow(dead_code))] // read by `open`, not built under loom
const OFF_OV_SIZE: usize = 32;
#[cfg_attr(all(test, loom), allow(dead_code))]
const OFF_OV_BASE: usize = 40;
/// The largest message a writer may put and a reader accepts (see
/// [`Ring::max_message_size`]).
const OFF_MAX_MSG: usize = 48;
// Each side's words sit in their own 128-byte pair of cache lines (the adjacent-line
// prefetcher moves lines in such pairs: a side's second line must not pair with a line
// the other side writes).
// lines 2-3: writer state + journal. What a commit in the hot ring writes (the first
// four journal words, `tail`, `written`, `writing-partial`) is in line 2; the overflow
// words, stored only when they change, are in line 3.
const OFF_TAIL: usize = 128;
const OFF_WRITTEN: usize = 136;
const OFF_WPARTIAL: usize = 144;
const OFF_JW_STATE: usize = 152;
const OFF_JW_TAIL: usize = 160;
const OFF_JW_WRITTEN: usize = 168;
const OFF_JW_WPARTIAL: usize = 176;
const OFF_JW_TASKS: usize = 184;
const OFF_JW_OV_TAIL: usize = 192;
const OFF_JW_WMODE: usize = 200;
const OFF_OV_TAIL: usize = 208;
const OFF_WMODE: usize = 216;
/// The fate of the message being streamed (see [`Ring::drop_stream`] and
/// [`Ring::claim_stream`]): `FATE_DROPPED | tag` once the reader has given up on the
/// message, `FATE_CLAIMED | tag` once the writer is publishing its last piece (`tag` =
/// [`stream_tag`] of the message's number). Changed only by compare-and-swap, one step,
/// so it needs no journal. In the writer's line 3: the writer loads it at every piece,
/// the reader writes it only when it gives up mid-message.
const OFF_STREAM_FATE: usize = 224;
// lines 4-5: reader state + journal, in the same way
const OFF_HEAD: usize = 256;
const OFF_READ: usize = 264;
const OFF_RPARTIAL: usize = 272;
const OFF_JR_STATE: usize = 280;
const OFF_JR_HEAD: usize = 288;
const OFF_JR_READ: usize = 296;
const OFF_JR_RPARTIAL: usize = 304;
const OFF_JR_OV_HEAD: usize = 312;
const OFF_JR_RMODE: usize = 320;
const OFF_OV_HEAD: usize = 328;
const OFF_RMODE: usize = 336;
/// Overflow bytes before this position have been given back to the system (reader
/// side, not journaled: punching a hole twice is harmless).
const OFF_OV_PUNCHED: usize = 344;
/// The writer's journal: `[tail, written, writing-partial, tasks put, ov_tail, mode]`.
const W_JOURNAL: Journal<6> = Journal::new(OFF_JW_STATE, OFF_JW_TAIL);
/// The reader's journal: `[head, read, reading-partial, ov_head, mode]`.
const R_JOURNAL: Journal<5> = Journal::new(OFF_JR_STATE, OFF_JR_HEAD);
// a journal's words are consecutive, in the order its `apply` takes them
const _: () = assert!(
    OFF_JW_WRITTEN == OFF_JW_TAIL + 8
        && OFF_JW_WPARTIAL == OFF_JW_TAIL + 16
        && OFF_JW_TASKS == OFF_JW_TAIL + 24
        && OFF_JW_OV_TAIL == OFF_JW_TAIL + 32
        && OFF_JW_WMODE == OFF_JW_TAIL + 40
        && OFF_JR_READ == OFF_JR_HEAD + 8
        && OFF_JR_RPARTIAL == OFF_JR_HEAD + 16
        && OFF_JR_OV_HEAD == OFF_JR_HEAD + 24
        && OFF_JR_RMODE == OFF_JR_HEAD + 32
);
// lines 6-7 and 8-9: wake-up words
const OFF_DATA_SEQ: usize = 384;
const OFF_READERS_WAITING: usize = 388;
const OFF_SPACE_SEQ: usize = 512;
const OFF_WRITERS_WAITING: usize = 516;
/// Beside each sequence word: the CPU (plus one; 0: none yet) of the thread that last
/// woke its sleepers (see `Ring::learn_from_wait`). A hint, written only on a wake-up.
const WAKER_CPU_AFTER_SEQ: usize = 8;
const _: () = assert!(
    OFF_DATA_SEQ + WAKER_CPU_AFTER_SEQ + 4 <= OFF_SPACE_SEQ
        && OFF_SPACE_SEQ + WAKER_CPU_AFTER_SEQ + 4 <= OFF_WLOCK
        && OFF_READERS_WAITING < OFF_DATA_SEQ + WAKER_CPU_AFTER_SEQ
        && OFF_WRITERS_WAITING < OFF_SPACE_SEQ + WAKER_CPU_AFTER_SEQ
);
// lines 10-11 and 12-13: locks
const OFF_WLOCK: usize = 640;
const OFF_RLOCK: usize = 768;
// lines 14-15: task counters (JoinableQueue). `tasks put` is writer state (journaled
// with `tail`); `tasks done` is advanced by consumers with compare-and-swap.
const OFF_TASKS_PUT: usize = 896;
const OFF_JOIN_SEQ: usize = 904;
const OFF_JOIN_WAITERS: usize = 908;
const OFF_TASKS_DONE: usize = 912;
// line 16..: producer registry; slot 0 is the overflow counter
const OFF_SLOTS: usize = 1024;
const N_SLOTS: usize = (HEADER - OFF_SLOTS) / 8;

const LEN_MASK: u32 = (1 << 30) - 1;
const MORE: u32 = 1 << 30;
const ABORT: u32 = 1 << 31;
/// `ABORT | MORE` (never a valid data record) marks a control record; its length field
/// says which one, and it carries no bytes.
const CONTROL: u32 = ABORT | MORE;
/// In the hot ring: the messages that follow are in the overflow area.
const LINK: u32 = CONTROL | 1;
/// In the overflow area: the messages that follow are in the hot ring again.
const RETURN: u32 = CONTROL | 2;

/// The overflow area of an unbounded ring ([`Ring::create_unbounded`]): 64 GiB of sparse
/// memory file, taking memory only for the backlog actually in it.
///
/// A process with a file-size limit (`ulimit -f`, which memory files count against)
/// gets the largest power of two that fits under it instead, so that sizing the file
/// never raises `SIGXFSZ`; a backlog that fills that smaller area waits for room as a
/// bounded queue does. Below the hot ring's size, creating the ring fails with
/// `FileTooLarge`.
pub const DEFAULT_OVERFLOW_BYTES: u64 = 1 << 36;
/// The reader gives consumed overflow memory back in steps of this many bytes (and
/// whatever is consumed when it returns to the hot ring).
const PUNCH_CHUNK: u64 = 1 << 20;

/// How long a writer streaming a message larger than the hot ring of an unbounded ring
/// waits for the consumer to make room before it aborts the stream and writes the
/// message to the overflow area instead.
const STREAM_STALL: Duration = Duration::from_millis(1);

/// A streamed message travels in pieces of at most `capacity / STREAM_PIECE_DIVISOR`.
const STREAM_PIECE_DIVISOR: u64 = 4;

/// The default [`Ring::max_message_size`]: 1 GiB.
pub const DEFAULT_MAX_MESSAGE: u64 = 1 << 30;

/// Positions and counters read from shared memory must stay below this (2^62): a ring
/// would need exbibytes of traffic to get there, so a larger value is garbage (memory
/// corruption or a hostile peer) and breaks the ring. Below it, adding the size of any
/// one message (at most 2^46) cannot overflow.
const POS_LIMIT: u64 = 1 << 62;

/// Mid-message, a reader whose deadline has passed still waits this long for the next
/// piece: a writer streaming right now supplies one within microseconds, so only a
/// frozen (stopped, starved) writer makes the reader give up.
const MID_STREAM_GRACE: Duration = Duration::from_millis(100);

/// In `OFF_STREAM_FATE`: the reader gave up on the message (the writer aborts it and
/// delivers it again).
pub(crate) const FATE_DROPPED: u64 = 1 << 62;
/// In `OFF_STREAM_FATE`: the writer is publishing the message's last piece (the reader
/// waits for it).
pub(crate) const FATE_CLAIMED: u64 = 1 << 63;

/// The tag of message number `id` (the writer's `written` count before its first piece,
/// which is the reader's `read` count while it reads the message) in `OFF_STREAM_FATE`:
/// never 0, so the word's initial value matches no message.
pub(crate) fn stream_tag(id: u64) -> u64 {
    (id & ((1 << 61) - 1)) + 1
}

/// The word holding a streamed message's fate (`OFF_STREAM_FATE`): shared memory here,
/// a model checker's atomic in the loom tests, which so check [`settle_fate`] itself.
pub(crate) trait FateWord {
    fn load(&self, order: Ordering) -> u64;
    fn compare_exchange_weak(
        &self,
        current: u64,
        new: u64,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u64, u64>;
}

impl FateWord for AtomicU64 {
    #[inline]
    fn load(&self, order: Ordering) -> u64 {
        AtomicU64::load(self, order)
    }
    #[inline]
    fn compare_exchange_weak(
        &self,
        current: u64,
        new: u64,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u64, u64> {
        AtomicU64::compare_exchange_weak(self, current, new, success, failure)
    }
}

/// Decides the fate of streamed message number `id` for one side: `mine` is
/// [`FATE_CLAIMED`] (the writer, about to publish the last piece) or [`FATE_DROPPED`]
/// (the reader, giving up mid-message). Sets the word to `mine | tag` unless it already
/// holds the other side's decision for this message (`false`: the other side decided
/// first). One compare-and-swap on one word: whichever side's succeeds first wins, and a
/// process killed at any instruction has either decided or not.
pub(crate) fn settle_fate<W: FateWord + ?Sized>(fate: &W, id: u64, mine: u64) -> bool {
    let theirs = (FATE_CLAIMED | FATE_DROPPED) ^ mine;
    let mut v = fate.load(Ordering::Relaxed);
    loop {
        if v == theirs | stream_tag(id) {
            return false;
        }
        match fate.compare_exchange_weak(
            v,
            mine | stream_tag(id),
            Ordering::AcqRel,
            Ordering::Relaxed,
        ) {
            Ok(_) => return true,
            Err(now) => v = now,
        }
    }
}

/// The smallest ring, in bytes.
pub const MIN_CAPACITY: usize = 64;
/// The largest ring, in bytes (record lengths have 30 bits).
pub const MAX_CAPACITY: usize = 1 << 30;
/// The largest overflow area, in bytes (64 TiB of address space).
pub const MAX_OVERFLOW: u64 = 1 << 46;

pub use crate::deadline::Deadline;

/// Why a [`Ring::push`] did not happen. Nothing of the message is visible to readers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// No room (bytes or `maxsize`) before the deadline, or the writer lock stayed busy.
    Full,
    /// The message is larger than the ring's [`max_message_size`](Ring::max_message_size);
    /// nothing was written.
    TooLarge,
    /// The ring's shared state is corrupt; every later operation fails the same way.
    Broken,
}

/// Why a [`Ring::pop`] returned no message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PopError {
    /// Nothing arrived before the deadline.
    Empty,
    /// Nothing is left and no producer process is registered and alive.
    Disconnected,
    /// The ring's shared state is corrupt; every later operation fails the same way.
    Broken,
}

/// One process's view of a shared byte ring. See the [module docs](self).
///
/// Cheap to share between threads (`&Ring` is enough for every operation); open the
/// same ring in another process with [`Ring::open`] on a descriptor from
/// [`Ring::try_clone_fd`].
pub struct Ring {
    region: Region,
    cap: u64,
    mask: u64,
    /// Process-local lower bound of the shared `head` (it only grows): the writer
    /// rereads the shared word only when this bound says the ring is too full.
    cached_head: AtomicU64,
    /// Process-local lower bound of the shared `tail`, for the reader.
    cached_tail: AtomicU64,
    /// Adaptive spin budget in microseconds.
    spin_us: AtomicU32,
    /// Size of the overflow area (`0`: none; then a power of two) and its offset in the
    /// memory file.
    ov_size: u64,
    ov_base: u64,
    /// The message limit (`0`: none), copied once from the header at create/open: a
    /// peer rewriting the shared word changes nothing here.
    maxsize: u64,
    /// The largest message accepted (copied once from the header and validated).
    max_msg: u64,
    /// This process's mapping of the overflow area, made the first time it is needed.
    ov: OnceLock<Option<ShmWindow>>,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("capacity", &self.cap)
            .field("maxsize", &self.maxsize())
            .field("len", &self.len())
            .field("broken", &self.is_broken())
            .finish()
    }
}

/// A shared word held a value no correct peer writes; the ring is marked broken.
#[derive(Debug, Clone, Copy)]
struct Garbage;

impl From<Garbage> for PushError {
    fn from(_: Garbage) -> Self {
        PushError::Broken
    }
}

impl From<Garbage> for PopError {
    fn from(_: Garbage) -> Self {
        PopError::Broken
    }
}

/// One side's robust lock, held: released when dropped, also when a panic unwinds
/// through the locked section (a bug, or garbage a check missed). In that case the
/// half-done operation is first completed or aborted exactly as the next owner would
/// after this process's death (pending journal applied, a half-streamed message
/// aborted), so a live process never leaks the lock nor leaves a torn state behind.
struct SideLock<'a> {
    ring: &'a Ring,
    off: usize,
}

impl Drop for SideLock<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            #[cfg(test)]
            if dying() {
                // a test's stand-in for a kill: a dead process releases nothing
                return;
            }
            if self.off == OFF_WLOCK {
                self.ring.recover_writer();
            } else {
                self.ring.recover_reader();
            }
        }
        robust::unlock_in(&FX, self.ring.u32(self.off));
    }
}

const SPIN_MIN_US: u32 = 2;
const SPIN_MAX_US: u32 = 50;

impl Ring {
    /// Creates a ring of `capacity` bytes (rounded up to a power of two, at least
    /// [`MIN_CAPACITY`]) holding at most `maxsize` messages (`0`: no message limit).
    ///
    /// # Errors
    ///
    /// `capacity` above [`MAX_CAPACITY`], or the kernel refusing the memory.
    #[cfg(not(all(test, loom)))]
    pub fn create(capacity: usize, maxsize: u64) -> io::Result<Ring> {
        Self::create_with(capacity, maxsize, 0)
    }

    /// Creates a really unbounded ring: a hot ring of `capacity` bytes (as
    /// [`create`](Ring::create)) plus an overflow area of [`DEFAULT_OVERFLOW_BYTES`] of
    /// sparse memory file. A [`push`](Ring::push) that finds the hot ring too full (or a
    /// message larger than it) appends to the overflow area instead of waiting, so it
    /// never waits for room unless the backlog fills the whole overflow area. See the
    /// [module docs](self#overflow-unbounded-rings).
    ///
    /// # Errors
    ///
    /// As [`create`](Ring::create).
    #[cfg(not(all(test, loom)))]
    pub fn create_unbounded(capacity: usize) -> io::Result<Ring> {
        Self::create_with(capacity, 0, DEFAULT_OVERFLOW_BYTES)
    }

    /// Creates a ring with an overflow area of `overflow` bytes (rounded up to a power of
    /// two, at least the page size and the hot ring's size; `0`: none, as
    /// [`create`](Ring::create)). A ring with an overflow area has no message limit.
    ///
    /// # Errors
    ///
    /// `capacity` above [`MAX_CAPACITY`], `maxsize > 0` with an overflow area, an
    /// overflow area above 2^46 bytes, or the kernel refusing the memory.
    #[cfg(not(all(test, loom)))]
    pub fn create_with(capacity: usize, maxsize: u64, overflow: u64) -> io::Result<Ring> {
        Self::create_limited(capacity, maxsize, overflow, DEFAULT_MAX_MESSAGE)
    }

    /// As [`create_with`](Ring::create_with), with a maximum message size of
    /// `max_message` bytes (see [`max_message_size`](Ring::max_message_size); the others
    /// use [`DEFAULT_MAX_MESSAGE`]).
    ///
    /// # Errors
    ///
    /// As [`create_with`](Ring::create_with), and `max_message == 0` or above
    /// [`MAX_OVERFLOW`].
    ///
    /// # Examples
    ///
    /// ```
    /// use procactor_transports::ring::{PushError, Ring};
    ///
    /// let r = Ring::create_limited(4096, 0, 0, 100).unwrap();
    /// assert_eq!(r.max_message_size(), 100);
    /// assert_eq!(r.push(&[0; 101], None), Err(PushError::TooLarge));
    /// r.push(&[0; 100], None).unwrap();
    /// ```
    #[cfg(not(all(test, loom)))]
    pub fn create_limited(
        capacity: usize,
        maxsize: u64,
        overflow: u64,
        max_message: u64,
    ) -> io::Result<Ring> {
        if max_message == 0 || max_message > MAX_OVERFLOW {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("maximum message size {max_message} not in 1..={MAX_OVERFLOW}"),
            ));
        }
        if capacity > MAX_CAPACITY {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("ring capacity {capacity} above the maximum {MAX_CAPACITY}"),
            ));
        }
        if overflow > 0 && maxsize > 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a bounded ring has no overflow area",
            ));
        }
        if overflow > MAX_OVERFLOW {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("overflow area {overflow} above the maximum {MAX_OVERFLOW}"),
            ));
        }
        let cap = capacity.max(MIN_CAPACITY).next_power_of_two();
        let page = rustix::param::page_size() as u64;
        let (ov_size, ov_base) = if overflow == 0 {
            (0, 0)
        } else {
            let mut size = overflow.max(page).max(cap as u64).next_power_of_two();
            let base = (HEADER as u64 + cap as u64).div_ceil(page) * page;
            // Under a file-size limit (`ulimit -f`) the sparse area shrinks to the largest
            // power of two that fits (a backlog then waits for room at that size, as
            // documented on `DEFAULT_OVERFLOW_BYTES`); below its minimum, creating the
            // file fails with a clear error instead of `SIGXFSZ`.
            if let Some(limit) = crate::shm::file_size_limit() {
                let floor = page.max(cap as u64).next_power_of_two();
                while base + size > limit && size / 2 >= floor {
                    size /= 2;
                }
            }
            (size, base)
        };
        let region = ShmRegion::create_sparse("queue", HEADER + cap, ov_base + ov_size)?;
        region
            .atomic_u64(OFF_CAP)
            .store(cap as u64, Ordering::Relaxed);
        region
            .atomic_u64(OFF_MAXSIZE)
            .store(maxsize, Ordering::Relaxed);
        region
            .atomic_u64(OFF_OV_SIZE)
            .store(ov_size, Ordering::Relaxed);
        region
            .atomic_u64(OFF_OV_BASE)
            .store(ov_base, Ordering::Relaxed);
        region
            .atomic_u64(OFF_MAX_MSG)
            .store(max_message, Ordering::Relaxed);
        region.atomic_u32(OFF_MAGIC).store(MAGIC, Ordering::Release);
        Ok(Self::from_region(
            region,
            [cap as u64, ov_size, ov_base, maxsize, max_message],
        ))
    }

    /// Opens a ring created by [`Ring::create`] (in this or another process) from its
    /// memory file's descriptor. Only the header and the hot ring are mapped; an overflow
    /// area is mapped the first time this process needs it.
    ///
    /// # Errors
    ///
    /// The descriptor is not a ring's memory (wrong magic, impossible capacity or
    /// overflow area for the file's size) or cannot be mapped.
    #[cfg(not(all(test, loom)))]
    pub fn open(fd: OwnedFd) -> io::Result<Ring> {
        let bad =
            |m: &str| io::Error::new(io::ErrorKind::InvalidData, format!("not a queue ring: {m}"));
        // the header says how much to map: read it before mapping
        let mut h = [0u8; 56];
        let n = rustix::io::pread(&fd, &mut h, 0)?;
        if n < h.len() {
            return Err(bad("region too small"));
        }
        let word = |off: usize| u64::from_le_bytes(h[off..off + 8].try_into().expect("8 bytes"));
        if u32::from_le_bytes(h[..4].try_into().expect("4 bytes")) != MAGIC {
            return Err(bad("wrong magic number"));
        }
        let cap = word(OFF_CAP);
        let (ov_size, ov_base) = (word(OFF_OV_SIZE), word(OFF_OV_BASE));
        if !cap.is_power_of_two() || cap < MIN_CAPACITY as u64 || cap > MAX_CAPACITY as u64 {
            return Err(bad("impossible capacity"));
        }
        let page = rustix::param::page_size() as u64;
        if ov_size != 0
            && (!ov_size.is_power_of_two()
                || ov_size > MAX_OVERFLOW
                || ov_size < cap
                || !ov_base.is_multiple_of(page)
                || ov_base < HEADER as u64 + cap
                || ov_base > HEADER as u64 + cap + page)
        {
            return Err(bad("impossible overflow area"));
        }
        let (maxsize, max_msg) = (word(OFF_MAXSIZE), word(OFF_MAX_MSG));
        if max_msg == 0 || max_msg > MAX_OVERFLOW {
            return Err(bad("impossible maximum message size"));
        }
        if ov_size != 0 && maxsize != 0 {
            return Err(bad("a bounded ring with an overflow area"));
        }
        let region = ShmRegion::from_fd_prefix(fd, HEADER + cap as usize)?;
        if ov_size != 0 && region.file_len()? < ov_base + ov_size {
            return Err(bad("memory file shorter than its overflow area"));
        }
        Ok(Self::from_region(
            region,
            [cap, ov_size, ov_base, maxsize, max_msg],
        ))
    }

    /// The loom tests' [`create`](Ring::create): a ring of `cap` bytes (a power of two)
    /// and `maxsize` on a heap region made by `loom_tests::model`, header written as
    /// `create` writes it.
    #[cfg(all(test, loom))]
    pub(crate) fn model_create(region: &Region, cap: u64, maxsize: u64) -> Ring {
        assert!(cap.is_power_of_two() && region.data_len() as u64 == cap);
        region.atomic_u64(OFF_CAP).store(cap, Ordering::Relaxed);
        region
            .atomic_u64(OFF_MAXSIZE)
            .store(maxsize, Ordering::Relaxed);
        region
            .atomic_u64(OFF_MAX_MSG)
            .store(DEFAULT_MAX_MESSAGE, Ordering::Relaxed);
        region.atomic_u32(OFF_MAGIC).store(MAGIC, Ordering::Release);
        Self::from_region(region.clone(), [cap, 0, 0, maxsize, DEFAULT_MAX_MESSAGE])
    }

    /// The loom tests' [`open`](Ring::open): another process's view of the same region
    /// (its own caches and spin budget).
    #[cfg(all(test, loom))]
    pub(crate) fn model_open(region: &Region) -> Ring {
        let cap = region.data_len() as u64;
        let maxsize = region.atomic_u64(OFF_MAXSIZE).load(Ordering::Relaxed);
        Self::from_region(region.clone(), [cap, 0, 0, maxsize, DEFAULT_MAX_MESSAGE])
    }

    /// `[capacity, overflow size, overflow base, maxsize, max message]`, validated.
    fn from_region(region: Region, [cap, ov_size, ov_base, maxsize, max_msg]: [u64; 5]) -> Ring {
        Ring {
            region,
            cap,
            mask: cap - 1,
            cached_head: AtomicU64::new(0),
            cached_tail: AtomicU64::new(0),
            spin_us: AtomicU32::new(SPIN_MAX_US),
            ov_size,
            ov_base,
            maxsize,
            max_msg,
            ov: OnceLock::new(),
        }
    }

    /// The memory file's descriptor.
    #[cfg(not(all(test, loom)))]
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.region.fd()
    }

    /// A new descriptor for the ring's memory (to hand to another process).
    ///
    /// # Errors
    ///
    /// Out of descriptors.
    #[cfg(not(all(test, loom)))]
    pub fn try_clone_fd(&self) -> io::Result<OwnedFd> {
        self.region.try_clone_fd()
    }

    /// The ring's size in bytes.
    pub fn capacity(&self) -> usize {
        self.cap as usize
    }

    /// The message limit (`0`: none).
    pub fn maxsize(&self) -> u64 {
        self.maxsize
    }

    /// The largest message in bytes that [`push`](Ring::push) accepts (a larger one
    /// fails with [`PushError::TooLarge`]) and that [`pop`](Ring::pop) delivers: a
    /// message larger than this found in the ring (only a writer of another build, or a
    /// hostile one, can put it there) is discarded unread, the reader never allocating
    /// more than this for it. Fixed when the ring is created; every process opening it
    /// uses the same value.
    pub fn max_message_size(&self) -> u64 {
        self.max_msg
    }

    /// Messages in the ring (a streamed message counts from its first piece).
    /// Advisory: other processes change it at any time.
    pub fn len(&self) -> u64 {
        let (written, read) = self.counts();
        written.saturating_sub(read)
    }

    /// Messages written into the ring and read from it since it was made (`len` is
    /// their difference): what an observer shows as a queue's puts and gets.
    pub fn counts(&self) -> (u64, u64) {
        // `written` first: both only grow, so a count read later can only be larger, and
        // `written - read` never exceeds the messages in the ring at the moment `read` is
        // loaded (read the other way round, gets and puts between the two loads made it
        // overshoot: a bounded queue seemed to hold more than its maxsize)
        let written = self.u64(OFF_WRITTEN).load(Ordering::Acquire);
        let read = self.u64(OFF_READ).load(Ordering::Acquire);
        (written, read)
    }

    /// Whether no message is in the ring (advisory).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a `push` would have to wait now: `maxsize` messages are in the ring, or
    /// (unbounded) fewer than 8 bytes are free (advisory).
    pub fn is_full(&self) -> bool {
        let max = self.maxsize();
        if max > 0 {
            return self.len() >= max;
        }
        if self.ov_size > 0 {
            // only a backlog filling the whole overflow area makes a push wait
            let used = self
                .u64(OFF_OV_TAIL)
                .load(Ordering::Acquire)
                .wrapping_sub(self.u64(OFF_OV_HEAD).load(Ordering::Acquire));
            return self.ov_size.saturating_sub(used) < 8;
        }
        let used = self
            .u64(OFF_TAIL)
            .load(Ordering::Acquire)
            .wrapping_sub(self.u64(OFF_HEAD).load(Ordering::Acquire));
        self.cap.saturating_sub(used) < 8
    }

    /// The size of the overflow area in bytes (`0`: none; see
    /// [`create_unbounded`](Ring::create_unbounded)).
    pub fn overflow_capacity(&self) -> u64 {
        self.ov_size
    }

    /// Bytes of the backlog now in the overflow area (advisory).
    pub fn overflow_len(&self) -> u64 {
        let tail = self.u64(OFF_OV_TAIL).load(Ordering::Acquire);
        tail.wrapping_sub(self.u64(OFF_OV_HEAD).load(Ordering::Acquire))
            .min(self.ov_size)
    }

    /// The memory the ring's file takes now, in bytes (header, hot ring pages touched,
    /// overflow backlog not yet given back).
    ///
    /// # Errors
    ///
    /// The kernel refusing `fstat`.
    pub fn allocated_bytes(&self) -> io::Result<u64> {
        self.region.allocated_bytes()
    }

    /// Whether the ring was found corrupt (every operation then fails).
    pub fn is_broken(&self) -> bool {
        self.u32(OFF_BROKEN).load(Ordering::Acquire) != 0
    }

    fn set_broken(&self) {
        self.u32(OFF_BROKEN).store(1, Ordering::Release);
        // every sleeper, whatever the (shared, possibly scribbled) waiter counts say
        for w in [OFF_DATA_SEQ, OFF_SPACE_SEQ] {
            waiter::bump_and_wake_all(&FX, self.u32(w));
        }
    }

    fn u32(&self, off: usize) -> &AtomicU32 {
        self.region.atomic_u32(off)
    }

    /// A position or counter word of the shared state, checked: a value at or above
    /// [`POS_LIMIT`] is garbage, and marks the ring broken.
    fn pos(&self, off: usize) -> Result<u64, Garbage> {
        let v = self.u64(off).load(Ordering::Relaxed);
        if v >= POS_LIMIT {
            self.set_broken();
            return Err(Garbage);
        }
        Ok(v)
    }

    /// Takes one side's lock (`OFF_WLOCK` or `OFF_RLOCK`) with `how`, as a guard.
    fn side_lock(
        &self,
        off: usize,
        how: impl FnOnce(&AtomicU32) -> Option<Acquired>,
    ) -> Option<(SideLock<'_>, Acquired)> {
        #[cfg(test)]
        set_dying(false);
        let a = how(self.u32(off))?;
        killpoint::hit(if off == OFF_WLOCK {
            "ring.lock.writer_acquired"
        } else {
            "ring.lock.reader_acquired"
        });
        Some((SideLock { ring: self, off }, a))
    }

    fn u64(&self, off: usize) -> &AtomicU64 {
        self.region.atomic_u64(off)
    }

    // ---------------------------------------------------------------- byte copies

    /// Copies `src` into the ring at logical position `pos`, wrapping at the end.
    fn copy_in(&self, pos: u64, src: &[u8]) {
        debug_assert!(src.len() as u64 <= self.cap);
        let idx = (pos & self.mask) as usize;
        let first = src.len().min(self.cap as usize - idx);
        let base = self.region.as_ptr();
        // SAFETY: `HEADER + cap <= region.len()` (checked at create/open) and
        // `idx + first <= cap`, `src.len() - first <= cap` (we never copy more than the
        // ring's size), so both destinations lie inside the mapping, which lives as long
        // as `self`. No Rust reference to the ring bytes exists anywhere (all access is by
        // raw copies), so this write aliases nothing; the bytes lie outside
        // `[head, tail)` and we hold the writer lock, so no reader is entitled to read
        // them yet. A misbehaving process writing concurrently could only garble bytes,
        // which the layer above rejects when decoding.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), base.add(HEADER + idx), first);
            std::ptr::copy_nonoverlapping(
                src.as_ptr().add(first),
                base.add(HEADER),
                src.len() - first,
            );
        }
    }

    /// Copies `dst.len()` bytes out of the ring from logical position `pos`.
    fn copy_out(&self, pos: u64, dst: &mut [u8]) {
        debug_assert!(dst.len() as u64 <= self.cap);
        let idx = (pos & self.mask) as usize;
        let first = dst.len().min(self.cap as usize - idx);
        let base = self.region.as_ptr();
        // SAFETY: bounds as in `copy_in`: both sources lie in `HEADER..HEADER + cap`
        // inside the live mapping; `dst` is a distinct local buffer. The bytes were
        // published by the writer's release store of `tail`, which we loaded with acquire.
        unsafe {
            std::ptr::copy_nonoverlapping(base.add(HEADER + idx), dst.as_mut_ptr(), first);
            std::ptr::copy_nonoverlapping(
                base.add(HEADER),
                dst.as_mut_ptr().add(first),
                dst.len() - first,
            );
        }
    }

    /// Appends `len` bytes out of the ring from logical position `pos` to `out`, copying
    /// straight into its spare capacity (no zero-fill of the new part first). Callers
    /// guarantee `len <= cap` (a record never claims more than the bytes published).
    fn copy_out_append(&self, pos: u64, len: usize, out: &mut Vec<u8>) {
        debug_assert!(len as u64 <= self.cap);
        out.reserve(len);
        let at = out.len();
        let idx = (pos & self.mask) as usize;
        let first = len.min(self.cap as usize - idx);
        let base = self.region.as_ptr();
        // SAFETY: the sources are in bounds as in `copy_out` (`idx + first <= cap`,
        // `len - first <= cap`, inside the live mapping) and were published by the
        // writer's release store of `tail`, which we loaded with acquire. `reserve(len)`
        // made `out`'s allocation hold at least `at + len` bytes, so both destinations
        // lie in its spare capacity, which nothing else references and which cannot
        // overlap the mapping. All `len` new bytes are written before `set_len`, and
        // every bit pattern is a valid `u8`.
        unsafe {
            let dst = out.as_mut_ptr().add(at);
            std::ptr::copy_nonoverlapping(base.add(HEADER + idx), dst, first);
            std::ptr::copy_nonoverlapping(base.add(HEADER), dst.add(first), len - first);
            out.set_len(at + len);
        }
    }

    /// This process's mapping of the overflow area (made on first use; `None` if the
    /// ring has none or the mapping failed, e.g. for lack of address space).
    fn overflow(&self) -> Option<&ShmWindow> {
        if self.ov_size == 0 {
            return None;
        }
        self.ov
            .get_or_init(|| {
                let len = usize::try_from(self.ov_size).ok()?;
                self.region.map_window(self.ov_base, len).ok()
            })
            .as_ref()
    }

    /// Copies `src` into the overflow area at logical position `pos`, wrapping at its end.
    fn ov_copy_in(&self, ov: &ShmWindow, pos: u64, src: &[u8]) {
        assert!(src.len() as u64 <= self.ov_size && ov.len() as u64 == self.ov_size);
        let idx = (pos & (self.ov_size - 1)) as usize;
        let first = src.len().min(ov.len() - idx);
        // SAFETY: `ov` maps exactly `ov_size` bytes (asserted) and lives as long as
        // `self`; `idx + first <= ov_size` and `src.len() - first <= ov_size`, so both
        // destinations lie inside it. As in `copy_in`, nothing references these bytes
        // (raw copies only) and they lie past `ov_tail`, which only we (the writer-lock
        // holder) move, so no reader reads them yet.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), ov.as_ptr().add(idx), first);
            std::ptr::copy_nonoverlapping(src.as_ptr().add(first), ov.as_ptr(), src.len() - first);
        }
    }

    /// Appends `len` bytes of the overflow area from logical position `pos` to `out`.
    fn ov_copy_out_append(&self, ov: &ShmWindow, pos: u64, len: usize, out: &mut Vec<u8>) {
        assert!(len as u64 <= self.ov_size && ov.len() as u64 == self.ov_size);
        out.reserve(len);
        let at = out.len();
        let idx = (pos & (self.ov_size - 1)) as usize;
        let first = len.min(ov.len() - idx);
        // SAFETY: sources inside the `ov_size`-byte window (bounds as in `ov_copy_in`),
        // published by the writer's release store of `ov_tail`, loaded by us with acquire;
        // destinations in `out`'s spare capacity (`reserve(len)`), which cannot overlap
        // the mapping; all `len` bytes are written before `set_len`.
        unsafe {
            let dst = out.as_mut_ptr().add(at);
            std::ptr::copy_nonoverlapping(ov.as_ptr().add(idx), dst, first);
            std::ptr::copy_nonoverlapping(ov.as_ptr(), dst.add(first), len - first);
            out.set_len(at + len);
        }
    }

    /// The record header at overflow position `pos` (wrapping at the area's end).
    fn ov_read_u32(&self, ov: &ShmWindow, pos: u64) -> u32 {
        let mut b = [0u8; 4];
        let idx = (pos & (self.ov_size - 1)) as usize;
        let first = 4.min(ov.len() - idx);
        assert!(ov.len() as u64 == self.ov_size);
        // SAFETY: `idx < ov_size == ov.len()`, `idx + first <= ov.len()` and
        // `4 - first <= ov.len()`: both sources lie inside the live window; the bytes
        // were published by the writer's release store of `ov_tail` (loaded with
        // acquire); `b` is a local buffer.
        unsafe {
            std::ptr::copy_nonoverlapping(ov.as_ptr().add(idx), b.as_mut_ptr(), first);
            std::ptr::copy_nonoverlapping(ov.as_ptr(), b.as_mut_ptr().add(first), 4 - first);
        }
        u32::from_le_bytes(b)
    }

    /// Gives the overflow memory before `ov_head` back to the system: in steps of
    /// [`PUNCH_CHUNK`], or all of it (whole pages) when `all` (the reader has left the
    /// overflow area). Reader-lock holder only.
    fn punch_consumed(&self, ov_head: u64, all: bool) {
        let punched = self.u64(OFF_OV_PUNCHED);
        let from = punched.load(Ordering::Relaxed);
        let page = rustix::param::page_size() as u64;
        let step = PUNCH_CHUNK.min(self.ov_size / 2).max(page);
        let to = if all {
            ov_head / page * page
        } else {
            ov_head / step * step
        };
        if to <= from || to - from > self.ov_size {
            return;
        }
        // the range may wrap at the end of the area: at most two calls
        let mut pos = from;
        while pos < to {
            let idx = pos & (self.ov_size - 1);
            let n = (to - pos).min(self.ov_size - idx);
            // a failed punch zeroes nothing: the memory stays allocated (until the area
            // wraps over it), and moving `ov_punched` on is still safe
            let _ = self.region.punch_hole(self.ov_base + idx, n);
            pos += n;
        }
        // the writer counts free overflow bytes from here (see `ov_free`)
        punched.store(to, Ordering::Release);
        self.wake_noting(OFF_SPACE_SEQ, OFF_WRITERS_WAITING);
    }

    fn read_u32_at(&self, pos: u64) -> u32 {
        let mut b = [0u8; 4];
        self.copy_out(pos, &mut b);
        u32::from_le_bytes(b)
    }

    // ---------------------------------------------------------------- journals

    /// Commits the writer state, keeping the overflow position and mode as they are.
    fn w_commit(&self, tail: u64, written: u64, partial: u64, tasks: u64) {
        let ov_tail = self.u64(OFF_OV_TAIL).load(Ordering::Relaxed);
        let mode = self.u64(OFF_WMODE).load(Ordering::Relaxed);
        self.w_commit_ov(tail, written, partial, tasks, ov_tail, mode);
    }

    fn w_commit_ov(&self, tail: u64, written: u64, partial: u64, tasks: u64, ov: u64, mode: u64) {
        W_JOURNAL.commit_sparse(
            &self.region,
            3,
            [tail, written, partial, tasks, ov, mode],
            |[t, w, p, k, o, m]| self.w_apply(t, w, p, k, o, m),
        );
        self.wake_noting(OFF_DATA_SEQ, OFF_READERS_WAITING);
    }

    /// `tasks` and the overflow position are stored before `tail` (release), so whoever
    /// sees a message (or a `LINK`) also sees it counted as a task (and the overflow
    /// bytes it leads to).
    fn w_apply(&self, tail: u64, written: u64, partial: u64, tasks: u64, ov: u64, mode: u64) {
        self.u64(OFF_WRITTEN).store(written, Ordering::Relaxed);
        self.u64(OFF_WPARTIAL).store(partial, Ordering::Relaxed);
        // written only when it changes: a plain Queue never dirties the task line
        store_if_changed(self.u64(OFF_TASKS_PUT), tasks, Ordering::Release);
        // the overflow words only when they change (line 3 stays clean in the hot ring)
        store_if_changed(self.u64(OFF_WMODE), mode, Ordering::Relaxed);
        store_if_changed(self.u64(OFF_OV_TAIL), ov, Ordering::Release);
        fail_point("w_apply: overflow position stored, tail not yet");
        self.u64(OFF_TAIL).store(tail, Ordering::Release);
    }

    /// Commits the reader state, keeping the overflow position and mode as they are.
    fn r_commit(&self, head: u64, read: u64, partial: u64) {
        let ov_head = self.u64(OFF_OV_HEAD).load(Ordering::Relaxed);
        let mode = self.u64(OFF_RMODE).load(Ordering::Relaxed);
        self.r_commit_ov(head, read, partial, ov_head, mode);
    }

    fn r_commit_ov(&self, head: u64, read: u64, partial: u64, ov_head: u64, mode: u64) {
        R_JOURNAL.commit_sparse(
            &self.region,
            3,
            [head, read, partial, ov_head, mode],
            |[h, r, p, o, m]| self.r_apply(h, r, p, o, m),
        );
        self.wake_noting(OFF_SPACE_SEQ, OFF_WRITERS_WAITING);
    }

    fn r_apply(&self, head: u64, read: u64, partial: u64, ov_head: u64, mode: u64) {
        self.u64(OFF_RPARTIAL).store(partial, Ordering::Relaxed);
        store_if_changed(self.u64(OFF_RMODE), mode, Ordering::Relaxed);
        store_if_changed(self.u64(OFF_OV_HEAD), ov_head, Ordering::Release);
        fail_point("r_apply: overflow position stored, head not yet");
        self.u64(OFF_READ).store(read, Ordering::Release);
        self.u64(OFF_HEAD).store(head, Ordering::Release);
    }

    /// Called with the writer lock held after taking it over from a dead owner (or when a
    /// reader suspects the writer died): finish a pending journal, abort a half-streamed
    /// message. Returns `false` if the state is inconsistent (ring marked broken).
    fn recover_writer(&self) -> bool {
        W_JOURNAL.apply_pending(&self.region, |[t, w, p, k, o, m]| {
            self.w_apply(t, w, p, k, o, m)
        });
        if self.u64(OFF_WPARTIAL).load(Ordering::Relaxed) != 0 {
            let (Ok(tail), Ok(written), Ok(tasks)) = (
                self.pos(OFF_TAIL),
                self.pos(OFF_WRITTEN),
                self.pos(OFF_TASKS_PUT),
            ) else {
                return false;
            };
            let head = self.u64(OFF_HEAD).load(Ordering::Acquire);
            let used = tail.wrapping_sub(head);
            if used > self.cap || self.cap - used < 4 {
                self.set_broken();
                return false;
            }
            self.copy_in(tail, &ABORT.to_le_bytes());
            self.w_commit(tail + 4, written, 0, tasks);
        }
        true
    }

    fn recover_reader(&self) {
        R_JOURNAL.apply_pending(&self.region, |[h, r, p, o, m]| self.r_apply(h, r, p, o, m));
        // a half-read message is discarded by `pop_locked` (it sees `rpartial`); overflow
        // memory consumed but not yet given back is punched by the next `pop`
    }

    // ---------------------------------------------------------------- waiting

    /// Spins (adaptive budget), yields, then sleeps on `seq` until `ready()` holds or
    /// `until` passes. Returns whether `ready()` held.
    ///
    /// `streaming`: we are in the middle of a streamed message, so the other side is
    /// copying a piece right now and will be done within microseconds: spin the full
    /// budget whatever the adaptive one says (a futex sleep and wake-up per piece would
    /// cost more than the copy).
    fn wait_for(
        &self,
        ready: &mut dyn FnMut() -> bool,
        seq_off: usize,
        waiters_off: usize,
        until: Option<Instant>,
        streaming: bool,
    ) -> bool {
        let budget = if streaming {
            SPIN_MAX_US
        } else {
            self.spin_us.load(Ordering::Relaxed)
        };
        // the clock is first read after 32 spins: a short wait reads it not at all
        let mut spin_end = None;
        let mut n = 0u32;
        while FX.spin() {
            if ready() {
                self.spin_us.store(
                    (budget * 2).clamp(SPIN_MIN_US, SPIN_MAX_US),
                    Ordering::Relaxed,
                );
                return true;
            }
            n += 1;
            if n.is_multiple_of(32) {
                let now = Instant::now();
                let end =
                    *spin_end.get_or_insert_with(|| now + Duration::from_micros(budget.into()));
                if now >= end || until.is_some_and(|u| now >= u) {
                    crate::spin::note_overrun(end, now);
                    break;
                }
            }
            std::hint::spin_loop();
        }
        self.spin_us.store(
            (budget / 2).clamp(SPIN_MIN_US, SPIN_MAX_US),
            Ordering::Relaxed,
        );
        for _ in 0..2 * u8::from(FX.spin()) {
            crate::spin::yield_now();
            if ready() {
                return true;
            }
        }
        let got =
            waiter::sleep_registered(&FX, self.u32(seq_off), self.u32(waiters_off), ready, until);
        if got {
            self.learn_from_wait(spin_end, budget, seq_off);
        }
        got
    }

    /// Wakes the sleepers counted in `waiters_off` on `seq_off` (as
    /// [`waiter::wake_waiters`]), noting this thread's CPU beside the word for them
    /// first (see [`learn_from_wait`](Ring::learn_from_wait)). No system call, and no
    /// note, when nobody sleeps.
    #[inline]
    fn wake_noting(&self, seq_off: usize, waiters_off: usize) {
        waiter::wake_waiters_then(&FX, self.u32(seq_off), self.u32(waiters_off), || {
            self.u32(seq_off + WAKER_CPU_AFTER_SEQ)
                .store(crate::spin::cpu_tag(), Ordering::Relaxed);
        });
    }

    /// After a wait that outlasted its spin, slept, and was woken with what it waited
    /// for: if it came soon enough that a full spin would have seen it (within
    /// [`SPIN_MAX_US`] plus [`spin::WAKE_ALLOWANCE`](crate::spin::WAKE_ALLOWANCE) of the start) *and* the thread that
    /// woke it ran on another CPU, the next wait spins the full budget again.
    ///
    /// Halving the budget on every miss alone is bistable: once the budget is shorter
    /// than the other side's usual turnaround (a pool caller routing a result and
    /// encoding the next task: a few µs), every wait misses, sleeps, and the budget stays
    /// at its minimum for good, a futex wake-up per message (on a VM, an idle core's
    /// wake-up costs tens of microseconds) although spinning would serve every wait.
    /// The CPU check keeps the other case apart: when the scheduler has put both sides
    /// on one CPU (it may wake a sleeper on its waker's CPU), the answer always comes
    /// just after this side stops spinning (the other side needed the CPU), and a
    /// longer spin would only delay it. A look at the clock and the CPU number (vDSO,
    /// no system call) here is off the fast path: this wait already slept.
    #[cold]
    fn learn_from_wait(&self, spin_end: Option<Instant>, budget: u32, seq_off: usize) {
        // `None`: spinning was off or paused
        let Some(end) = spin_end else { return };
        let start = end - Duration::from_micros(budget.into());
        let waited = Instant::now().saturating_duration_since(start);
        if waited > Duration::from_micros(SPIN_MAX_US.into()) + crate::spin::WAKE_ALLOWANCE {
            return;
        }
        let waker = self
            .u32(seq_off + WAKER_CPU_AFTER_SEQ)
            .load(Ordering::Relaxed);
        // (an unknown waker, 0, teaches nothing here: the short budget stays)
        if waker != 0 && !crate::spin::on_this_cpu(waker) {
            self.spin_us.store(SPIN_MAX_US, Ordering::Relaxed);
        }
    }

    // ---------------------------------------------------------------- push

    /// Appends `msg` as one message, waiting until `deadline` (`None`: forever) for the
    /// writer lock and for room. A message larger than the ring is streamed through it
    /// (this needs a reader taking it meanwhile). If the reader gives up in the middle
    /// of the stream (its deadline passed while this writer was frozen, see
    /// [`pop`](Ring::pop)), the stream is aborted and the message streamed again from the
    /// start, for the next reader, under the same `deadline`. `Ok` means the whole
    /// message was published for a reader that takes it.
    ///
    /// # Errors
    ///
    /// [`PushError::Full`] when the deadline passed first (nothing of `msg` is visible:
    /// a stream cut short is aborted), [`PushError::Broken`].
    pub fn push(&self, msg: &[u8], deadline: Option<Instant>) -> Result<(), PushError> {
        self.push_with(msg, deadline.into())
    }

    /// As [`push`](Ring::push), giving up `timeout` after it starts waiting (no clock
    /// read when there is room at once).
    ///
    /// # Errors
    ///
    /// As [`push`](Ring::push).
    pub fn push_timeout(&self, msg: &[u8], timeout: Duration) -> Result<(), PushError> {
        self.push_with(msg, Deadline::After(timeout))
    }

    /// As [`push`](Ring::push) with any kind of [`Deadline`].
    ///
    /// # Errors
    ///
    /// As [`push`](Ring::push).
    pub fn push_with(&self, msg: &[u8], deadline: Deadline) -> Result<(), PushError> {
        self.push_inner(msg, deadline, false)
    }

    /// As [`push_with`](Ring::push_with), and counts one more task
    /// ([`task_done`](Ring::task_done), [`task_join`](Ring::task_join)) in the same step
    /// that makes the message visible: a failed push counts nothing, and a writer killed
    /// at any moment leaves either the message and its task or neither.
    ///
    /// # Errors
    ///
    /// As [`push`](Ring::push).
    pub fn push_task(&self, msg: &[u8], deadline: Deadline) -> Result<(), PushError> {
        self.push_inner(msg, deadline, true)
    }

    fn push_inner(&self, msg: &[u8], mut deadline: Deadline, task: bool) -> Result<(), PushError> {
        if msg.len() as u64 > self.max_msg {
            return Err(PushError::TooLarge);
        }
        if self.is_broken() {
            return Err(PushError::Broken);
        }
        let Some((_guard, acquired)) = self.side_lock(OFF_WLOCK, |w| {
            robust::try_lock_in(&FX, w, false)
                .or_else(|| robust::lock_contended_in(&FX, w, deadline.resolve()))
        }) else {
            return Err(PushError::Full);
        };
        if acquired == Acquired::OwnerDied && !self.recover_writer() {
            // taken over from a dead writer: its journal is finished, its stream
            // aborted, unless the state is garbage
            return Err(PushError::Broken);
        }
        self.push_locked(msg, &mut deadline, task)
    }

    fn free_bytes(&self, tail: u64) -> Result<u64, PushError> {
        let mut head = self.cached_head.load(Ordering::Relaxed);
        let mut used = tail.wrapping_sub(head);
        if used > self.cap || self.cap - used < 8 {
            head = self.u64(OFF_HEAD).load(Ordering::Acquire);
            self.cached_head.store(head, Ordering::Relaxed);
            used = tail.wrapping_sub(head);
            if used > self.cap {
                self.set_broken();
                return Err(PushError::Broken);
            }
        }
        Ok(self.cap - used)
    }

    fn fresh_free(&self, tail: u64) -> Result<u64, PushError> {
        let head = self.u64(OFF_HEAD).load(Ordering::Acquire);
        self.cached_head.store(head, Ordering::Relaxed);
        let used = tail.wrapping_sub(head);
        if used > self.cap {
            self.set_broken();
            return Err(PushError::Broken);
        }
        Ok(self.cap - used)
    }

    fn slot_free(&self, written: u64) -> bool {
        let max = self.maxsize();
        max == 0 || written.wrapping_sub(self.u64(OFF_READ).load(Ordering::Acquire)) < max
    }

    /// Waits until `need` bytes are free (and, if `new_msg`, a message slot), or `until`.
    /// With `watch`, also returns `Ok(true)` as soon as the reader has given up on the
    /// message with that number (see [`Ring::stream_dropped`]; the caller checks).
    fn wait_room(
        &self,
        tail: u64,
        written: u64,
        need: u64,
        new_msg: bool,
        until: &mut Deadline,
        watch: Option<u64>,
    ) -> Result<bool, PushError> {
        let dropped = |s: &Self| watch.is_some_and(|id| s.stream_dropped(id));
        let ok = |s: &Self| -> Result<bool, PushError> {
            Ok(s.free_bytes(tail)? >= need && (!new_msg || s.slot_free(written)) || dropped(s))
        };
        if ok(self)? {
            return Ok(true);
        }
        let until = until.resolve();
        loop {
            if self.is_broken() {
                return Err(PushError::Broken);
            }
            let mut err = None;
            let mut ready = || match (self.fresh_free(tail), new_msg) {
                (Ok(f), true) => f >= need && self.slot_free(written),
                (Ok(f), false) => f >= need || dropped(self),
                (Err(e), _) => {
                    err = Some(e);
                    true
                }
            };
            let until_now = slice_end(until);
            let got = self.wait_for(
                &mut ready,
                OFF_SPACE_SEQ,
                OFF_WRITERS_WAITING,
                until_now,
                !new_msg,
            );
            if let Some(e) = err {
                return Err(e);
            }
            if got {
                return Ok(true);
            }
            if until.is_some_and(|u| Instant::now() >= u) {
                return Ok(false);
            }
        }
    }

    fn push_locked(
        &self,
        msg: &[u8],
        deadline: &mut Deadline,
        task: bool,
    ) -> Result<(), PushError> {
        if self.ov_size != 0 {
            return self.push_unbounded(msg, deadline, task);
        }
        self.push_hot(msg, deadline, task, None)
    }

    /// Whether at least `need` bytes of the hot ring are free (the cached `head` first,
    /// the shared one if that is not enough).
    fn hot_free_at_least(&self, tail: u64, need: u64) -> Result<bool, PushError> {
        let head = self.cached_head.load(Ordering::Relaxed);
        let used = tail.wrapping_sub(head);
        if used <= self.cap && self.cap - used >= need {
            return Ok(true);
        }
        Ok(self.fresh_free(tail)? >= need)
    }

    /// Free bytes of the overflow area. Counted from `ov_punched`, not `ov_head`: the
    /// reader punches consumed bytes *after* committing `ov_head`, so bytes between the
    /// two may still be punched and must not be written again (after a wrap) until then.
    fn ov_free(&self, ov_tail: u64) -> Result<u64, PushError> {
        let used = ov_tail.wrapping_sub(self.u64(OFF_OV_PUNCHED).load(Ordering::Acquire));
        if used > self.ov_size {
            self.set_broken();
            return Err(PushError::Broken);
        }
        Ok(self.ov_size - used)
    }

    /// Writes `msg` into the overflow area at `pos` as records of at most `LEN_MASK`
    /// bytes (all but the last flagged `MORE`); returns the position after them.
    fn ov_write_message(&self, ov: &ShmWindow, mut pos: u64, msg: &[u8]) -> u64 {
        let mut off = 0;
        loop {
            let chunk = (msg.len() - off).min(LEN_MASK as usize);
            let last = off + chunk == msg.len();
            let hdr = chunk as u32 | if last { 0 } else { MORE };
            self.ov_copy_in(ov, pos, &hdr.to_le_bytes());
            self.ov_copy_in(ov, pos + 4, &msg[off..off + chunk]);
            pos += 4 + chunk as u64;
            off += chunk;
            if last {
                return pos;
            }
        }
    }

    /// Push into a ring with an overflow area (writer lock held). The hot ring always
    /// keeps 4 bytes free for a `LINK`, the overflow area 4 bytes for a `RETURN`.
    fn push_unbounded(
        &self,
        msg: &[u8],
        deadline: &mut Deadline,
        task: bool,
    ) -> Result<(), PushError> {
        let mut tail = self.pos(OFF_TAIL)?;
        let mut written = self.pos(OFF_WRITTEN)?;
        let tasks = self.pos(OFF_TASKS_PUT)?;
        let tasks_after = tasks + u64::from(task);
        let mut ov_tail = self.pos(OFF_OV_TAIL)?;
        let mut tried_stream = false;
        let mut over = self.u64(OFF_WMODE).load(Ordering::Relaxed) != 0;
        let total = 4 + msg.len() as u64;
        let fits_hot = total + 4 <= self.cap;
        let pieces = (msg.len() as u64).div_ceil(u64::from(LEN_MASK)).max(1);
        let ov_need = msg.len() as u64 + 4 * pieces;
        let fits_ov = ov_need + 4 <= self.ov_size;
        // fast path: room in the hot ring
        if !over && fits_hot && self.free_bytes(tail)? >= total + 4 {
            self.copy_in(tail, &(msg.len() as u32).to_le_bytes());
            fail_point("ring.put.after_header");
            self.copy_in(tail + 4, msg);
            fail_point("ring.put.written");
            self.w_commit_ov(tail + total, written + 1, 0, tasks_after, ov_tail, 0);
            fail_point("ring.put.committed");
            return Ok(());
        }
        loop {
            if self.is_broken() {
                return Err(PushError::Broken);
            }
            let ov = self.overflow();
            if !over {
                if fits_hot && self.hot_free_at_least(tail, total + 4)? {
                    self.copy_in(tail, &(msg.len() as u32).to_le_bytes());
                    self.copy_in(tail + 4, msg);
                    self.w_commit_ov(tail + total, written + 1, 0, tasks_after, ov_tail, 0);
                    return Ok(());
                }
                if !fits_ov || ov.is_none() {
                    // larger than the overflow area (or it cannot be mapped here):
                    // through the hot ring, streamed if need be, as without overflow
                    return self.push_hot(msg, deadline, task, None);
                }
                if !fits_hot && !tried_stream && self.consumer_inside() {
                    // larger than the hot ring, and a consumer is taking from it right
                    // now: stream it through the hot ring (no fresh pages on either
                    // side). If the consumer stalls for STREAM_STALL, the stream is
                    // aborted (the reader drops the pieces) and the message goes to the
                    // overflow area whole.
                    tried_stream = true;
                    match self.push_hot(msg, deadline, task, Some(STREAM_STALL)) {
                        Ok(()) => return Ok(()),
                        Err(PushError::Full) => {
                            tail = self.pos(OFF_TAIL)?;
                            written = self.pos(OFF_WRITTEN)?;
                            continue;
                        }
                        Err(e) => return Err(e),
                    }
                }
                // a `try_` put (its deadline already passed) never waits, not even a spin
                // of microseconds: it overflows at once
                if fits_hot && !deadline.expired() && self.spin_for_hot_room(tail, total + 4)? {
                    self.copy_in(tail, &(msg.len() as u32).to_le_bytes());
                    self.copy_in(tail + 4, msg);
                    self.w_commit_ov(tail + total, written + 1, 0, tasks_after, ov_tail, 0);
                    return Ok(());
                }
                if let Some(ov) = ov {
                    if self.ov_free(ov_tail)? >= ov_need + 4 && self.hot_free_at_least(tail, 4)? {
                        // switch: LINK in the hot ring, the message in the overflow area,
                        // both made visible by one journaled commit
                        self.copy_in(tail, &LINK.to_le_bytes());
                        let end = self.ov_write_message(ov, ov_tail, msg);
                        fail_point("link: written, not committed");
                        self.w_commit_ov(tail + 4, written + 1, 0, tasks_after, end, 1);
                        fail_point("link: committed, lock held");
                        return Ok(());
                    }
                }
            } else {
                let Some(ov) = ov else {
                    // mid-overflow and this process cannot map the area (no address
                    // space left): this push fails; the ring itself is fine
                    return Err(PushError::Broken);
                };
                // a message larger than the hot ring, and the consumer has taken all of
                // the overflow area and waits inside pop: back to the hot ring to stream
                // it there (aborted to the overflow area again if the consumer stalls)
                if !fits_hot
                    && fits_ov
                    && !tried_stream
                    && self.u64(OFF_OV_HEAD).load(Ordering::Acquire) == ov_tail
                    && robust::owner_in(&FX, self.u32(OFF_RLOCK)).is_some()
                    && self.hot_free_at_least(tail, self.cap / 2)?
                {
                    tried_stream = true;
                    self.ov_copy_in(ov, ov_tail, &RETURN.to_le_bytes());
                    fail_point("stream return: written, not committed");
                    self.w_commit_ov(tail, written, 0, tasks, ov_tail + 4, 0);
                    match self.push_hot(msg, deadline, task, Some(STREAM_STALL)) {
                        Ok(()) => return Ok(()),
                        Err(PushError::Full) => {
                            tail = self.pos(OFF_TAIL)?;
                            written = self.pos(OFF_WRITTEN)?;
                            ov_tail = self.pos(OFF_OV_TAIL)?;
                            over = false;
                            continue;
                        }
                        Err(e) => return Err(e),
                    }
                }
                let back = self.hot_free_at_least(tail, (total + 4).max(self.cap / 2))?;
                if back && (fits_hot || !fits_ov) {
                    // the hot ring has drained: RETURN in the overflow area (there is
                    // always room for it), then the message in the hot ring (or, too
                    // large for either, go back to the hot ring and stream it)
                    self.ov_copy_in(ov, ov_tail, &RETURN.to_le_bytes());
                    if !fits_hot {
                        self.w_commit_ov(tail, written, 0, tasks, ov_tail + 4, 0);
                        return self.push_hot(msg, deadline, task, None);
                    }
                    self.copy_in(tail, &(msg.len() as u32).to_le_bytes());
                    self.copy_in(tail + 4, msg);
                    fail_point("return: written, not committed");
                    self.w_commit_ov(tail + total, written + 1, 0, tasks_after, ov_tail + 4, 0);
                    fail_point("return: committed, lock held");
                    return Ok(());
                }
                if fits_ov && self.ov_free(ov_tail)? >= ov_need + 4 {
                    let end = self.ov_write_message(ov, ov_tail, msg);
                    fail_point("overflow: written, not committed");
                    self.w_commit_ov(tail, written + 1, 0, tasks_after, end, 1);
                    return Ok(());
                }
            }
            // the overflow area is full (or a giant message waits for the hot ring)
            if !self.wait_unbounded(tail, ov_tail, total, ov_need, deadline)? {
                return Err(PushError::Full);
            }
            ov_tail = self.pos(OFF_OV_TAIL)?;
            over = self.u64(OFF_WMODE).load(Ordering::Relaxed) != 0;
        }
    }

    /// The hot ring is too full, but a consumer may be taking from it right now (the
    /// reader is in the hot ring and not asleep): spins at most [`SPIN_MAX_US`] for
    /// `need` bytes, giving up after [`SPIN_MIN_US`] x 5 if `head` has not moved at all
    /// (no consumer at work). Room a few microseconds away is far cheaper than
    /// overflowing (fresh pages for the writer, cold ones for the reader) when a producer
    /// is just a little faster than its consumer. Never sleeps. Not called for a put
    /// whose deadline has already passed (`try_put`): that one overflows at once.
    fn spin_for_hot_room(&self, tail: u64, need: u64) -> Result<bool, PushError> {
        #[cfg(all(test, not(loom)))]
        tests::HOT_ROOM_SPINS.with(|c| c.set(c.get() + 1));
        if !FX.spin()
            || self.u64(OFF_RMODE).load(Ordering::Relaxed) != 0
            || self.u32(OFF_READERS_WAITING).load(Ordering::Relaxed) != 0
        {
            return Ok(false);
        }
        let head0 = self.u64(OFF_HEAD).load(Ordering::Relaxed);
        let start = Instant::now();
        let idle_limit = Duration::from_micros(u64::from(SPIN_MIN_US) * 5);
        let limit = Duration::from_micros(SPIN_MAX_US.into());
        let mut n = 0u32;
        loop {
            if self.fresh_free(tail)? >= need {
                return Ok(true);
            }
            n += 1;
            if n.is_multiple_of(16) {
                let spent = start.elapsed();
                let moved = self.u64(OFF_HEAD).load(Ordering::Relaxed) != head0;
                if spent >= limit || (!moved && spent >= idle_limit) {
                    return Ok(false);
                }
            }
            std::hint::spin_loop();
        }
    }

    /// Waits until the reader frees room in either area (or `until`); whether it did.
    fn wait_unbounded(
        &self,
        tail: u64,
        ov_tail: u64,
        total: u64,
        ov_need: u64,
        until: &mut Deadline,
    ) -> Result<bool, PushError> {
        let until = until.resolve();
        let err = std::cell::Cell::new(None);
        let mut ready = || {
            let r = self.fresh_free(tail).and_then(|f| {
                Ok(f >= (total + 4).max(self.cap / 2) || self.ov_free(ov_tail)? >= ov_need + 4)
            });
            r.unwrap_or_else(|e| {
                err.set(Some(e));
                true
            })
        };
        loop {
            let until_now = slice_end(until);
            let got = self.wait_for(
                &mut ready,
                OFF_SPACE_SEQ,
                OFF_WRITERS_WAITING,
                until_now,
                false,
            );
            if let Some(e) = err.get() {
                return Err(e);
            }
            if got {
                return Ok(true);
            }
            if self.is_broken() {
                return Err(PushError::Broken);
            }
            if until.is_some_and(|u| Instant::now() >= u) {
                return Ok(false);
            }
        }
    }

    /// Whether a consumer is inside a `pop` on the hot ring right now (it holds the
    /// reader lock, in hot mode): one that will take a streamed message's pieces.
    fn consumer_inside(&self) -> bool {
        self.u64(OFF_RMODE).load(Ordering::Relaxed) == 0
            && robust::owner_in(&FX, self.u32(OFF_RLOCK)).is_some()
    }

    /// Push through the hot ring only: one record, or streamed in pieces (writer lock
    /// held). With `stall`, each wait for room gives up after that long instead of at
    /// `deadline` (a stream begun is then aborted: `Err(Full)` with nothing delivered).
    fn push_hot(
        &self,
        msg: &[u8],
        deadline: &mut Deadline,
        task: bool,
        stall: Option<Duration>,
    ) -> Result<(), PushError> {
        let tail = self.pos(OFF_TAIL)?;
        let written = self.pos(OFF_WRITTEN)?;
        // only the writer-lock holder changes `tasks put`
        let tasks = self.pos(OFF_TASKS_PUT)?;
        let tasks_after = tasks + u64::from(task);
        let total = 4 + msg.len() as u64;
        let mut stalled = stall.map(Deadline::After);
        if total <= self.cap && msg.len() as u64 <= u64::from(LEN_MASK) {
            if !self.wait_room(
                tail,
                written,
                total,
                true,
                stalled.as_mut().unwrap_or(deadline),
                None,
            )? {
                return Err(PushError::Full);
            }
            self.copy_in(tail, &(msg.len() as u32).to_le_bytes());
            fail_point("ring.put.after_header");
            self.copy_in(tail + 4, msg);
            fail_point("ring.put.written");
            self.w_commit(tail + total, written + 1, 0, tasks_after);
            fail_point("ring.put.committed");
            return Ok(());
        }
        // Stream: pieces of at most a quarter of the ring, always leaving 4 bytes free.
        // Small enough that the reader copies one piece out while we copy the next ones
        // in (with half-ring pieces, two never fit at once and the sides take turns).
        let piece = self.cap / STREAM_PIECE_DIVISOR;
        let (mut tail, mut written) = (tail, written);
        'message: loop {
            // this message's number: a reader that gives up on it says so with this id
            let id = written;
            let mut off = 0usize;
            let mut first = true;
            while off < msg.len() || first {
                let left = (msg.len() - off) as u64;
                let want = left.min(piece - 8) + 8;
                stalled = stall.map(Deadline::After);
                let until = stalled.as_mut().unwrap_or(&mut *deadline);
                let watch = (!first).then_some(id);
                let got = self.wait_room(tail, written, want, first, until, watch)?;
                let dropped = !first && self.stream_dropped(id);
                if !got || dropped {
                    // Deadline: at the first piece nothing was written; later, abort.
                    if !first {
                        // the 4 reserved bytes are free (invariant)
                        self.copy_in(tail, &ABORT.to_le_bytes());
                        self.w_commit(tail + 4, written + 1, 0, tasks);
                        fail_point("ring.put.stream.aborted");
                    }
                    if dropped && stall.is_none() {
                        // the reader gave up on it: deliver it again, from the start
                        tail += 4;
                        written += 1;
                        continue 'message;
                    }
                    // (a dropped stream with `stall`: the caller puts it in the overflow
                    // area)
                    return Err(PushError::Full);
                }
                let free = self.free_bytes(tail)?;
                if free < want {
                    // `wait_room` saw `want` free: only a peer moving `head` back does this
                    self.set_broken();
                    return Err(PushError::Broken);
                }
                let chunk = left.min(free - 8).min(piece) as usize;
                let last = off + chunk == msg.len();
                let hdr = chunk as u32 | if last { 0 } else { MORE };
                self.copy_in(tail, &hdr.to_le_bytes());
                self.copy_in(tail + 4, &msg[off..off + chunk]);
                // the task counts with the last piece, when the message can be taken
                let t = if last { tasks_after } else { tasks };
                fail_point(if last {
                    "ring.put.stream.last_piece_written"
                } else {
                    "ring.put.stream.piece_written"
                });
                // A reader that gave up meanwhile drops whatever follows: abort (the
                // piece just copied is not committed; the ABORT overwrites its header).
                // Before the last piece, this is a compare-and-swap the reader's give-up
                // races with: either the reader waits for the piece, or we abort.
                let go_on = if first {
                    true
                } else if last {
                    self.claim_stream(id)
                } else {
                    !self.stream_dropped(id)
                };
                if !go_on {
                    self.copy_in(tail, &ABORT.to_le_bytes());
                    self.w_commit(tail + 4, written + 1, 0, tasks);
                    fail_point("ring.put.stream.aborted");
                    if stall.is_some() {
                        return Err(PushError::Full);
                    }
                    tail += 4;
                    written += 1;
                    continue 'message;
                }
                tail += 4 + chunk as u64;
                off += chunk;
                first = false;
                self.w_commit(tail, written + 1, u64::from(!last), t);
                if !last {
                    fail_point("ring.put.stream.piece_committed");
                }
            }
            break;
        }
        Ok(())
    }

    // ---------------------------------------------------------------- pop

    /// Takes the next message into `out` (cleared first), waiting until `deadline`
    /// (`None`: forever). With `disconnect`, returns [`PopError::Disconnected`] instead of
    /// waiting when the ring is empty and no producer is alive.
    ///
    /// Once the first piece of a streamed message has been taken, the rest is awaited
    /// past the deadline as long as the writer makes progress: the call gives up
    /// ([`PopError::Empty`]) when the deadline has passed and no piece came for 100 ms (a
    /// writer frozen, e.g. `SIGSTOP`ped, in the middle of a message). The message is not
    /// lost: the give-up is recorded in shared memory, and the writer, when it resumes,
    /// aborts the stream and delivers the message again from the start (streamed anew,
    /// or in the overflow area of an unbounded ring); a later `pop` gets it whole, after
    /// dropping the pieces of the abandoned try. Its `push` returns `Ok` only once the
    /// message is delivered that way (a bounded ring whose `push` deadline passes before
    /// the new try fits makes it return [`PushError::Full`] instead). The one exception
    /// to the 100 ms: a writer frozen between claiming the message's last piece and
    /// publishing it (a few instructions) is waited for, because its `push` is about to
    /// return `Ok`. See the [module docs](self#a-reader-that-gives-up-mid-message-the-writer-delivers-it-again).
    /// A writer that dies mid-message has it aborted and dropped (its `push` never
    /// returned). A message larger than [`max_message_size`](Ring::max_message_size) is
    /// discarded unread and the next one is taken.
    ///
    /// # Errors
    ///
    /// [`PopError::Empty`] on timeout, [`PopError::Disconnected`], [`PopError::Broken`].
    pub fn pop(
        &self,
        out: &mut Vec<u8>,
        deadline: Option<Instant>,
        disconnect: bool,
    ) -> Result<(), PopError> {
        self.pop_with(out, deadline.into(), disconnect)
    }

    /// As [`pop`](Ring::pop), giving up `timeout` after it starts waiting (no clock read
    /// when a message is there at once).
    ///
    /// # Errors
    ///
    /// As [`pop`](Ring::pop).
    pub fn pop_timeout(
        &self,
        out: &mut Vec<u8>,
        timeout: Duration,
        disconnect: bool,
    ) -> Result<(), PopError> {
        self.pop_with(out, Deadline::After(timeout), disconnect)
    }

    /// As [`pop`](Ring::pop) with any kind of [`Deadline`].
    ///
    /// # Errors
    ///
    /// As [`pop`](Ring::pop).
    pub fn pop_with(
        &self,
        out: &mut Vec<u8>,
        mut deadline: Deadline,
        disconnect: bool,
    ) -> Result<(), PopError> {
        if self.is_broken() {
            return Err(PopError::Broken);
        }
        let Some((_guard, acquired)) = self.side_lock(OFF_RLOCK, |w| {
            robust::try_lock_in(&FX, w, false)
                .or_else(|| robust::lock_contended_in(&FX, w, deadline.resolve()))
        }) else {
            return Err(PopError::Empty);
        };
        if acquired == Acquired::OwnerDied {
            // taken over from a dead reader: finish its journal (a half-read message is
            // then discarded by `pop_locked`)
            self.recover_reader();
        }
        let r = self.pop_locked(out, &mut deadline, disconnect);
        if r.is_err() {
            // nothing is delivered: not even the pieces of a message given up on
            out.clear();
        }
        r
    }

    /// Frees the reader lock at once if the process holding it is dead (a consumer
    /// killed while it waited in `pop`), completing its journal as the next reader would.
    /// A supervisor that has just seen a consumer die calls it, so that the successor
    /// starts without first waiting out the lock's liveness check (~1 ms).
    pub fn recover_dead_reader(&self) {
        if let Some((_guard, Acquired::OwnerDied)) =
            self.side_lock(OFF_RLOCK, |w| robust::try_lock_in(&FX, w, true))
        {
            self.recover_reader();
        }
    }

    fn avail(&self, head: u64) -> Result<u64, PopError> {
        let mut tail = self.cached_tail.load(Ordering::Relaxed);
        let mut n = tail.wrapping_sub(head);
        if n > self.cap || n < 4 {
            tail = self.u64(OFF_TAIL).load(Ordering::Acquire);
            self.cached_tail.store(tail, Ordering::Relaxed);
            n = tail.wrapping_sub(head);
            if n > self.cap {
                self.set_broken();
                return Err(PopError::Broken);
            }
        }
        Ok(n)
    }

    fn pop_locked(
        &self,
        out: &mut Vec<u8>,
        deadline: &mut Deadline,
        disconnect: bool,
    ) -> Result<(), PopError> {
        out.clear();
        let mut head = self.pos(OFF_HEAD)?;
        let mut read = self.pos(OFF_READ)?;
        let mut ov_head = self.pos(OFF_OV_HEAD)?;
        let mut over = self.u64(OFF_RMODE).load(Ordering::Relaxed) != 0;
        // a predecessor died in the middle of a streamed message: drop the rest of it
        let mut discarding = self.u64(OFF_RPARTIAL).load(Ordering::Relaxed) != 0;
        let mut in_msg = discarding;
        loop {
            if self.is_broken() {
                return Err(PopError::Broken);
            }
            if over {
                if self.pop_overflow(out, &mut head, &mut read, &mut ov_head, &mut over)? {
                    return Ok(());
                }
                if over {
                    self.wait_data(ov_head, true, false, None, deadline.resolve(), disconnect)?;
                }
                continue;
            }
            let n = self.avail(head)?;
            if n >= 4 {
                let hdr = self.read_u32_at(head);
                let len = u64::from(hdr & LEN_MASK);
                if hdr == LINK && !in_msg && self.ov_size != 0 {
                    // the messages that follow are in the overflow area
                    head += 4;
                    over = true;
                    fail_point("reader link: before commit");
                    self.r_commit_ov(head, read, 0, ov_head, 1);
                    continue;
                }
                if len > n - 4 || (hdr & ABORT != 0 && (len != 0 || hdr & MORE != 0)) {
                    self.set_broken();
                    return Err(PopError::Broken);
                }
                if hdr & ABORT != 0 {
                    // the writer abandoned (or died in) the message: drop it
                    head += 4;
                    read += 1;
                    self.r_commit(head, read, 0);
                    out.clear();
                    discarding = false;
                    in_msg = false;
                    continue;
                }
                if !discarding && out.len() as u64 + len > self.max_msg {
                    // larger than this queue accepts: refuse it, drop its pieces
                    discarding = true;
                    out.clear();
                    out.shrink_to(self.cap as usize);
                }
                if !discarding {
                    killpoint::hit(if hdr & MORE != 0 {
                        "ring.get.stream.before_piece_copy"
                    } else {
                        "ring.get.before_copy"
                    });
                    self.copy_out_append(head + 4, len as usize, out);
                }
                head += 4 + len;
                if hdr & MORE != 0 {
                    fail_point("ring.get.stream.piece_copied");
                    self.r_commit(head, read, 1);
                    fail_point("ring.get.stream.piece_committed");
                    in_msg = true;
                    continue;
                }
                read += 1;
                fail_point("ring.get.copied");
                self.r_commit(head, read, 0);
                fail_point("ring.get.committed");
                if discarding {
                    discarding = false;
                    in_msg = false;
                    out.clear();
                    continue;
                }
                return Ok(());
            }
            // mid-message (and not discarding it): this message's number is `read`
            let drop_id = (in_msg && !discarding).then_some(read);
            self.wait_data(head, false, in_msg, drop_id, deadline.resolve(), disconnect)?;
        }
    }

    /// One step in the overflow area (reader lock held, in overflow mode): takes a whole
    /// message into `out` (`Ok(true)`), or follows a `RETURN` back to the hot ring, or
    /// finds nothing yet (both `Ok(false)`; `over` says which).
    fn pop_overflow(
        &self,
        out: &mut Vec<u8>,
        head: &mut u64,
        read: &mut u64,
        ov_head: &mut u64,
        over: &mut bool,
    ) -> Result<bool, PopError> {
        let Some(ov) = self.overflow() else {
            // no overflow area (a corrupt mode word), or no address space left to map it
            // here: this call fails; the ring is marked broken only in the first case
            if self.ov_size == 0 {
                self.set_broken();
            }
            return Err(PopError::Broken);
        };
        let bad = || {
            self.set_broken();
            Err(PopError::Broken)
        };
        let ov_tail = self.u64(OFF_OV_TAIL).load(Ordering::Acquire);
        let n = ov_tail.wrapping_sub(*ov_head);
        if n > self.ov_size {
            return bad();
        }
        if n < 4 {
            // drained: give back all that was consumed (the writer only writes at
            // `ov_tail` and past it, beyond the pages punched)
            self.punch_consumed(*ov_head, true);
            return Ok(false);
        }
        let hdr = self.ov_read_u32(ov, *ov_head);
        if hdr == RETURN {
            *ov_head += 4;
            *over = false;
            fail_point("reader return: before commit");
            self.r_commit_ov(*head, *read, 0, *ov_head, 0);
            self.punch_consumed(*ov_head, true);
            return Ok(false);
        }
        // a message: all its pieces were published together
        let mut pos = *ov_head;
        let mut size = 0u64;
        loop {
            let hdr = self.ov_read_u32(ov, pos);
            let len = u64::from(hdr & LEN_MASK);
            if hdr & ABORT != 0 || len > ov_tail.wrapping_sub(pos) - 4 {
                return bad();
            }
            size += len;
            if size <= self.max_msg {
                self.ov_copy_out_append(ov, pos + 4, len as usize, out);
            } else if !out.is_empty() {
                // larger than this queue accepts: refused, skipped unread
                out.clear();
                out.shrink_to(0);
            }
            pos += 4 + len;
            if hdr & MORE == 0 {
                break;
            }
            if ov_tail.wrapping_sub(pos) < 4 {
                return bad();
            }
        }
        *ov_head = pos;
        *read += 1;
        fail_point("reader overflow: copied, before commit");
        self.r_commit_ov(*head, *read, 0, *ov_head, 1);
        self.punch_consumed(*ov_head, false);
        Ok(size <= self.max_msg)
    }

    /// Waits for at least one record header past `pos` (in the overflow area if
    /// `overflow`, else in the hot ring). Mid-message: the deadline holds only once the
    /// writer has made no progress for [`MID_STREAM_GRACE`], and the writer's liveness is
    /// checked; giving up on message number `drop_id` (a message being delivered, not one
    /// being discarded) is recorded with [`Ring::drop_stream`], so that the writer
    /// delivers it again. Otherwise: `Empty` at the deadline, `Disconnected` when asked
    /// for and no producer is alive.
    fn wait_data(
        &self,
        pos: u64,
        overflow: bool,
        in_msg: bool,
        drop_id: Option<u64>,
        deadline: Option<Instant>,
        disconnect: bool,
    ) -> Result<(), PopError> {
        let (tail_off, size) = if overflow {
            (OFF_OV_TAIL, self.ov_size)
        } else {
            (OFF_TAIL, self.cap)
        };
        let mut slice = Duration::from_millis(5);
        // Mid-message, the deadline still holds, but only once the writer has made no
        // progress for MID_STREAM_GRACE (a live writer supplies its next piece within
        // microseconds): a frozen writer cannot hold a reader with a deadline forever.
        let mut limit = if in_msg {
            deadline.map(|d| d.max(Instant::now() + MID_STREAM_GRACE))
        } else {
            deadline
        };
        loop {
            if self.is_broken() {
                return Err(PopError::Broken);
            }
            let mut ready = || {
                let t = self.u64(tail_off).load(Ordering::Acquire);
                let n = t.wrapping_sub(pos);
                n >= 4 || n > size || self.is_broken()
            };
            let now = Instant::now();
            if limit.is_some_and(|d| now >= d) {
                if in_msg {
                    if ready() {
                        // a piece came at the last moment: progress, take it
                        return Ok(());
                    }
                    if let Some(id) = drop_id {
                        if !self.drop_stream(id) {
                            // the writer is publishing the last piece right now (it
                            // claimed it): wait for it
                            limit = Some(now + MID_STREAM_GRACE);
                            continue;
                        }
                    }
                    // given up mid-message: the pieces taken are dropped, and the next
                    // reader drops the rest up to the writer's ABORT (`reading-partial`
                    // is committed); the writer, told by `drop_stream`, delivers the
                    // message again
                    return Err(PopError::Empty);
                }
                if disconnect && !self.producers_alive(robust::my_id()) && !ready() {
                    return Err(PopError::Disconnected);
                }
                return Err(PopError::Empty);
            }
            let until = Some(limit.map_or(now + slice, |d| d.min(now + slice)));
            if self.wait_for(&mut ready, OFF_DATA_SEQ, OFF_READERS_WAITING, until, in_msg) {
                return Ok(());
            }
            slice = (slice * 2).min(Duration::from_millis(100));
            if in_msg {
                self.check_writer_alive(pos)?;
            } else if disconnect && !self.producers_alive(robust::my_id()) {
                // anything put before the last producer left is visible by now
                if ready() {
                    return Ok(());
                }
                return Err(PopError::Disconnected);
            }
        }
    }

    /// Mid-message with no data: if the writer lock's owner is dead, recover the writer
    /// side (which aborts the half-streamed message).
    fn check_writer_alive(&self, head: u64) -> Result<(), PopError> {
        let Some((_guard, acq)) = self.side_lock(OFF_WLOCK, |w| robust::try_lock_in(&FX, w, true))
        else {
            return Ok(()); // a live writer holds it: it is streaming to us
        };
        let ok = match acq {
            Acquired::OwnerDied => self.recover_writer(),
            Acquired::Clean => {
                // Free lock while we are mid-message: fine if the rest (or an abort) is
                // already there, or a pending journal says so; otherwise inconsistent.
                let ok = self.recover_writer();
                let t = self.u64(OFF_TAIL).load(Ordering::Acquire);
                if ok && t.wrapping_sub(head) < 4 {
                    self.set_broken();
                    false
                } else {
                    ok
                }
            }
        };
        if ok {
            Ok(())
        } else {
            Err(PopError::Broken)
        }
    }

    /// Whether the reader has given up on the streamed message number `id` (a relaxed
    /// load: the writer checks it at every piece, no system call).
    fn stream_dropped(&self, id: u64) -> bool {
        self.u64(OFF_STREAM_FATE).load(Ordering::Relaxed) == FATE_DROPPED | stream_tag(id)
    }

    /// The writer, about to publish the last piece of message number `id`: claims it
    /// (compare-and-swap), unless the reader has given up on it first (`false`: the
    /// writer aborts it and delivers it again). After a successful claim the reader no
    /// longer gives up on this message: it waits for the piece.
    fn claim_stream(&self, id: u64) -> bool {
        settle_fate(self.u64(OFF_STREAM_FATE), id, FATE_CLAIMED)
    }

    /// The reader gives up on the streamed message number `id` it is in the middle of:
    /// records that (compare-and-swap) so that the writer aborts the message and
    /// delivers it again, and wakes a writer waiting for room. `false` if the writer has
    /// already claimed the message's last piece (it is being published: the reader
    /// waits for it instead).
    fn drop_stream(&self, id: u64) -> bool {
        if !settle_fate(self.u64(OFF_STREAM_FATE), id, FATE_DROPPED) {
            return false;
        }
        self.wake_noting(OFF_SPACE_SEQ, OFF_WRITERS_WAITING);
        true
    }

    // ---------------------------------------------------------------- producers

    fn slot(&self, i: usize) -> &AtomicU64 {
        self.u64(OFF_SLOTS + 8 * i)
    }

    /// Registers one producer handle held by process `pid`.
    pub fn register_producer(&self, pid: u32) {
        let p = u64::from(pid) << 32;
        for pass in 0..2 {
            // an existing slot of ours
            for i in 1..N_SLOTS {
                let s = self.slot(i);
                let mut v = s.load(Ordering::Acquire);
                while v >> 32 == u64::from(pid)
                    && v & 0xffff_ffff != 0
                    && v & 0xffff_ffff < 0xffff_ffff
                {
                    match s.compare_exchange(v, v + 1, Ordering::AcqRel, Ordering::Acquire) {
                        Ok(_) => return,
                        Err(x) => v = x,
                    }
                }
            }
            // a free slot
            for i in 1..N_SLOTS {
                let s = self.slot(i);
                if s.load(Ordering::Relaxed) == 0
                    && s.compare_exchange(0, p | 1, Ordering::AcqRel, Ordering::Relaxed)
                        .is_ok()
                {
                    return;
                }
            }
            if pass == 0 {
                self.reclaim_dead(pid);
            }
        }
        self.slot(0).fetch_add(1, Ordering::AcqRel);
    }

    /// Removes one producer handle of process `pid` (taken from the overflow counter if
    /// `pid` has no slot), and wakes a waiting reader so it can notice a disconnection.
    pub fn unregister_producer(&self, pid: u32) {
        let done = 'found: {
            for i in 1..N_SLOTS {
                let s = self.slot(i);
                let mut v = s.load(Ordering::Acquire);
                while v >> 32 == u64::from(pid) && v & 0xffff_ffff != 0 {
                    let new = if v & 0xffff_ffff == 1 { 0 } else { v - 1 };
                    match s.compare_exchange(v, new, Ordering::AcqRel, Ordering::Acquire) {
                        Ok(_) => break 'found true,
                        Err(x) => v = x,
                    }
                }
            }
            false
        };
        if !done {
            let o = self.slot(0);
            let _ = o.fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| c.checked_sub(1));
        }
        self.wake_noting(OFF_DATA_SEQ, OFF_READERS_WAITING);
    }

    fn reclaim_dead(&self, me: u32) {
        for i in 1..N_SLOTS {
            let s = self.slot(i);
            let v = s.load(Ordering::Acquire);
            let pid = (v >> 32) as u32;
            if v != 0 && pid != me && !crate::os::process_alive(pid) {
                let _ = s.compare_exchange(v, 0, Ordering::AcqRel, Ordering::Relaxed);
            }
        }
    }

    /// Whether some producer handle may still put: one held by process `me` (the
    /// caller), or by another process that is alive. Slots of dead processes are freed on
    /// the way. Makes system calls (liveness checks) for other processes' slots.
    pub fn producers_alive(&self, me: u32) -> bool {
        if self.slot(0).load(Ordering::Acquire) > 0 {
            return true;
        }
        let mut alive = false;
        for i in 1..N_SLOTS {
            let s = self.slot(i);
            let v = s.load(Ordering::Acquire);
            if v == 0 {
                continue;
            }
            let pid = (v >> 32) as u32;
            if pid == me || crate::os::process_alive(pid) {
                alive = true;
                if pid == me {
                    break;
                }
            } else {
                let _ = s.compare_exchange(v, 0, Ordering::AcqRel, Ordering::Relaxed);
            }
        }
        alive
    }

    // ---------------------------------------------------------------- async waiters

    /// The words a reader that does not block (a future) waits on for data: the data
    /// sequence word and the readers' waiter count. The waiter counts itself in the
    /// count, re-checks, and waits for the sequence word to change from the value it
    /// read (see [`crate::waiter`] and [`crate::watch`]); every publication that sees it
    /// counted bumps the word and wakes it.
    pub fn data_signal(&self) -> (&AtomicU32, &AtomicU32) {
        (self.u32(OFF_DATA_SEQ), self.u32(OFF_READERS_WAITING))
    }

    /// As [`data_signal`](Ring::data_signal), for a writer waiting for room.
    pub fn space_signal(&self) -> (&AtomicU32, &AtomicU32) {
        (self.u32(OFF_SPACE_SEQ), self.u32(OFF_WRITERS_WAITING))
    }

    /// As [`data_signal`](Ring::data_signal), for a joiner waiting for the unfinished
    /// task count to reach zero.
    pub fn join_signal(&self) -> (&AtomicU32, &AtomicU32) {
        (self.u32(OFF_JOIN_SEQ), self.u32(OFF_JOIN_WAITERS))
    }

    // ---------------------------------------------------------------- task counter

    /// Marks one task done; `false` (and no change) if every task counted by
    /// [`push_task`](Ring::push_task) is already done. Wakes joiners when the last one is.
    pub fn task_done(&self) -> bool {
        let done = self.u64(OFF_TASKS_DONE);
        let mut d = done.load(Ordering::SeqCst);
        loop {
            // `tasks put` only grows, and `done` never passes it
            let put = self.u64(OFF_TASKS_PUT).load(Ordering::SeqCst);
            if d >= put {
                return false;
            }
            match done.compare_exchange_weak(d, d + 1, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => {
                    if d + 1 == put {
                        // the SeqCst `done` above is the publication joiners read
                        waiter::wake_waiters(
                            &FX,
                            self.u32(OFF_JOIN_SEQ),
                            self.u32(OFF_JOIN_WAITERS),
                        );
                    }
                    return true;
                }
                Err(now) => d = now,
            }
        }
    }

    /// Unfinished tasks: counted by [`push_task`](Ring::push_task), not yet
    /// [`task_done`](Ring::task_done) (advisory).
    pub fn unfinished(&self) -> u64 {
        // `done` first: `put` read afterwards is at least as large
        let done = self.u64(OFF_TASKS_DONE).load(Ordering::SeqCst);
        let put = self.u64(OFF_TASKS_PUT).load(Ordering::SeqCst);
        put.saturating_sub(done)
    }

    /// Waits until the unfinished-task count is zero or `deadline` passes; whether it
    /// reached zero.
    pub fn task_join(&self, deadline: Option<Instant>) -> bool {
        let seq = self.u32(OFF_JOIN_SEQ);
        let waiters = self.u32(OFF_JOIN_WAITERS);
        loop {
            if self.unfinished() == 0 {
                return true;
            }
            let mut done = |_| self.unfinished() == 0;
            match waiter::sleep(&FX, seq, waiters, &mut done, deadline) {
                Slept::Ready => return true,
                Slept::TimedOut => return self.unfinished() == 0,
                Slept::Woken => {}
            }
        }
    }
}

/// The end of one sleep before a waiting writer looks again: `until`, or 100 ms from
/// now if that is sooner. Writers sleep in such slices so that a broken flag is noticed.
fn slice_end(until: Option<Instant>) -> Option<Instant> {
    let slice = Instant::now() + Duration::from_millis(100);
    Some(until.map_or(slice, |u| u.min(slice)))
}

/// Stores `v` only if the word holds another value: a word that rarely changes then
/// leaves its cache line clean (read, not written) on most commits.
#[inline]
fn store_if_changed(w: &AtomicU64, v: u64, order: Ordering) {
    if w.load(Ordering::Relaxed) != v {
        w.store(v, order);
    }
}

#[cfg(all(test, not(loom)))]
thread_local! {
    /// Set by a fail point standing in for a kill: the unwinding lock guards then leave
    /// their locks held, as a dead process would.
    static DYING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// A fail point at which this thread panics for real (a bug inside the locked
    /// section): the lock guards must recover and release.
    static PANIC_AT: std::cell::Cell<Option<&'static str>> =
        const { std::cell::Cell::new(None) };
    /// A fail point at which this thread stops (as if `SIGSTOP`ped) until the flag is
    /// set: 30 s at most, so that a failing test cannot hang.
    static PAUSE_AT: std::cell::Cell<Option<(&'static str, &'static std::sync::atomic::AtomicBool)>> =
        const { std::cell::Cell::new(None) };
}

/// Where a test makes this thread "die" (panic, leaving the locks held) in the middle of
/// an operation, to check recovery from that exact point; and a [kill
/// point](crate::killpoint) of the same name (the process is `SIGKILL`ed there when
/// `PROCACTOR_KILL_AT` names it).
#[cfg(all(test, not(loom)))]
fn fail_point(name: &'static str) {
    killpoint::hit(name);
    tests::FAIL_AT.with(|f| {
        if f.get() == Some(name) {
            f.set(None);
            DYING.with(|d| d.set(true));
            panic!("killed at fail point: {name}");
        }
    });
    PANIC_AT.with(|f| {
        if f.get() == Some(name) {
            f.set(None);
            panic!("a bug at: {name}");
        }
    });
    PAUSE_AT.with(|f| {
        if let Some((at, go)) = f.get() {
            if at == name {
                f.set(None);
                let end = Instant::now() + Duration::from_secs(30);
                while !go.load(Ordering::SeqCst) && Instant::now() < end {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    });
}

#[cfg(not(test))]
#[inline(always)]
fn fail_point(name: &'static str) {
    killpoint::hit(name);
}

/// Whether this thread is "dying" at a fail point (see [`fail_point`]).
#[cfg(all(test, not(loom)))]
fn dying() -> bool {
    DYING.with(|d| d.get())
}

#[cfg(all(test, not(loom)))]
fn set_dying(v: bool) {
    DYING.with(|d| d.set(v));
}

#[cfg(all(test, loom))]
use crate::loom_tests::model::{dying, set_dying};

#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(all(test, not(loom)))]
mod garbage_tests;

#[cfg(all(test, not(loom)))]
mod kill_tests;
