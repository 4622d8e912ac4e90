//! Garbage-proof ring: message size limit, a reader's deadline mid-stream, the lock
//! released by a guard on panic, and random header words (never a panic, never a hang).

use super::*;
use proptest::prelude::*;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

fn ms(m: u64) -> Option<Instant> {
    Some(Instant::now() + Duration::from_millis(m))
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

/// Runs `f` on a thread; fails the test (instead of hanging it) if it takes longer than
/// `limit`.
fn within<R: Send + 'static>(limit: Duration, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("did not return within {limit:?} (hang)"))
}

#[test]
fn a_put_larger_than_the_max_message_size_fails_with_too_large_and_writes_nothing() {
    for r in [
        Ring::create_limited(4096, 0, 0, 1000).unwrap(),
        Ring::create_limited(256, 0, 1 << 20, 1000).unwrap(),
        Ring::create_limited(256, 3, 0, 1000).unwrap(),
    ] {
        assert_eq!(r.max_message_size(), 1000);
        assert_eq!(r.push(&pattern(1, 1001), ms(10)), Err(PushError::TooLarge));
        assert_eq!(
            r.push_task(&pattern(1, 5000), Deadline::Never),
            Err(PushError::TooLarge)
        );
        assert_eq!(r.len(), 0);
        assert_eq!(r.unfinished(), 0);
        // (the bounded 256-byte ring would stream 1000 bytes, which needs a reader
        // meanwhile: it gets a message that fits)
        let n = if r.capacity() < 1004 && r.overflow_capacity() == 0 {
            200
        } else {
            1000
        };
        r.push(&pattern(2, n), ms(1000)).unwrap();
        let mut out = Vec::new();
        r.pop(&mut out, ms(1000), false).unwrap();
        assert_eq!(out, pattern(2, n));
    }
    assert!(Ring::create_limited(4096, 0, 0, 0).is_err());
    // the default is 1 GiB, the same in every opened view
    let r = Ring::create(4096, 0).unwrap();
    assert_eq!(r.max_message_size(), DEFAULT_MAX_MESSAGE);
    let o = Ring::open(r.try_clone_fd().unwrap()).unwrap();
    assert_eq!(o.max_message_size(), DEFAULT_MAX_MESSAGE);
}

/// A writer whose view of the ring has a larger limit than the reader's (as a peer of
/// another build, or a hostile one, would): the reader's view was opened first.
fn reader_and_lax_writer(cap: usize, overflow: u64, limit: u64) -> (Ring, Ring) {
    let reader = Ring::create_limited(cap, 0, overflow, limit).unwrap();
    reader.u64(OFF_MAX_MSG).store(1 << 30, Ordering::Relaxed);
    let writer = Ring::open(reader.try_clone_fd().unwrap()).unwrap();
    assert_eq!(writer.max_message_size(), 1 << 30);
    assert_eq!(reader.max_message_size(), limit);
    (reader, writer)
}

#[test]
fn a_reader_refuses_and_discards_a_streamed_message_over_its_limit() {
    let (reader, writer) = reader_and_lax_writer(256, 0, 1000);
    let writer = Arc::new(writer);
    let w = writer.clone();
    let t = std::thread::spawn(move || {
        w.push(&pattern(3, 50_000), ms(10_000)).unwrap();
        w.push(&pattern(4, 100), ms(10_000)).unwrap();
    });
    let mut out = Vec::new();
    reader.pop(&mut out, ms(10_000), false).unwrap();
    t.join().unwrap();
    assert_eq!(out, pattern(4, 100), "the oversized message is skipped");
    // never more memory than the limit plus a piece for the refused message
    assert!(out.capacity() <= 1000 + 256, "{}", out.capacity());
    assert!(reader.is_empty());
    assert!(!reader.is_broken());
}

#[test]
fn a_reader_refuses_an_oversized_message_in_the_overflow_area() {
    let (reader, writer) = reader_and_lax_writer(256, 1 << 20, 1000);
    // one thread, no consumer inside pop: straight to the overflow area
    writer.push(&pattern(5, 60_000), ms(1000)).unwrap();
    writer.push(&pattern(6, 10), ms(1000)).unwrap();
    let mut out = Vec::new();
    reader.pop(&mut out, ms(1000), false).unwrap();
    assert_eq!(out, pattern(6, 10));
    assert!(out.capacity() <= 1000 + 256, "{}", out.capacity());
    assert_eq!(reader.pop(&mut out, ms(20), false), Err(PopError::Empty));
    assert!(!reader.is_broken());
}

/// A live process that does nothing (stands for a frozen writer holding the lock).
fn frozen_process() -> std::process::Child {
    std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap()
}

#[test]
fn a_reader_mid_stream_gives_up_at_its_deadline_when_the_writer_is_frozen() {
    let r = Arc::new(Ring::create(64, 0).unwrap());
    let mut frozen = frozen_process();
    // the frozen writer holds the writer lock and has streamed one piece
    r.u32(OFF_WLOCK).store(frozen.id(), Ordering::SeqCst);
    r.copy_in(0, &(16u32 | MORE).to_le_bytes());
    r.copy_in(4, &pattern(7, 16));
    r.w_commit(20, 1, 1, 0);
    let r2 = r.clone();
    let (res, took) = within(Duration::from_secs(20), move || {
        let start = Instant::now();
        let mut out = Vec::new();
        let res = r2.pop(&mut out, ms(300), false);
        (res.map(|()| out), start.elapsed())
    });
    assert_eq!(res, Err(PopError::Empty));
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(!r.is_broken());
    // the give-up is recorded for the writer (which, resumed, would abort the stream and
    // deliver message 0 again: `ring::tests::a_message_a_reader_gave_up_on_mid_stream_
    // arrives_whole_on_the_next_pop`), and the reader left the message half read
    assert_eq!(
        r.u64(OFF_STREAM_FATE).load(Ordering::SeqCst),
        FATE_DROPPED | stream_tag(0)
    );
    assert_eq!(r.u64(OFF_RPARTIAL).load(Ordering::SeqCst), 1);
    // once the writer is killed, the queue works again (its stream is aborted, the
    // piece already taken is not delivered: a writer that dies never returned `Ok`)
    frozen.kill().unwrap();
    frozen.wait().unwrap();
    let r3 = r.clone();
    let got = within(Duration::from_secs(20), move || {
        r3.push(&pattern(8, 10), ms(5000)).unwrap();
        let mut out = Vec::new();
        r3.pop(&mut out, ms(5000), false).unwrap();
        out
    });
    assert_eq!(got, pattern(8, 10));
    assert!(r.is_empty());
}

#[test]
fn a_panic_in_the_writers_locked_section_releases_the_lock_and_aborts_the_stream() {
    let r = Ring::create(64, 0).unwrap();
    PANIC_AT.with(|p| p.set(Some("ring.put.stream.piece_committed")));
    let died = catch_unwind(AssertUnwindSafe(|| r.push(&pattern(9, 100), ms(1000))));
    PANIC_AT.with(|p| p.set(None));
    assert!(died.is_err(), "the panic point was not reached");
    assert_eq!(robust::owner(r.u32(OFF_WLOCK)), None, "lock leaked");
    assert_eq!(r.u64(OFF_WPARTIAL).load(Ordering::Relaxed), 0);
    // another writer gets in at once; the reader sees only the next message
    within(Duration::from_secs(20), move || {
        r.push_timeout(&pattern(10, 10), Duration::from_millis(500))
            .unwrap();
        let mut out = Vec::new();
        r.pop(&mut out, ms(1000), false).unwrap();
        assert_eq!(out, pattern(10, 10));
        assert!(r.is_empty());
    });
}

#[test]
fn a_panic_in_the_readers_locked_section_releases_the_lock_and_keeps_the_message() {
    let r = Ring::create(256, 0).unwrap();
    r.push(&pattern(11, 20), ms(100)).unwrap();
    PANIC_AT.with(|p| p.set(Some("ring.get.copied")));
    let died = catch_unwind(AssertUnwindSafe(|| {
        let mut out = Vec::new();
        r.pop(&mut out, ms(100), false)
    }));
    PANIC_AT.with(|p| p.set(None));
    assert!(died.is_err(), "the panic point was not reached");
    assert_eq!(robust::owner(r.u32(OFF_RLOCK)), None, "lock leaked");
    within(Duration::from_secs(20), move || {
        let mut out = Vec::new();
        r.pop_timeout(&mut out, Duration::from_millis(500), false)
            .unwrap();
        assert_eq!(out, pattern(11, 20), "the message was not taken");
    });
}

/// Shared words a peer can scribble on (every one the ring reads after open).
const WORDS: &[usize] = &[
    OFF_MAXSIZE,
    OFF_MAX_MSG,
    OFF_CAP,
    OFF_OV_SIZE,
    OFF_OV_BASE,
    OFF_TAIL,
    OFF_WRITTEN,
    OFF_WPARTIAL,
    OFF_JW_STATE,
    OFF_JW_TAIL,
    OFF_JW_WRITTEN,
    OFF_JW_WPARTIAL,
    OFF_JW_TASKS,
    OFF_JW_OV_TAIL,
    OFF_JW_WMODE,
    OFF_OV_TAIL,
    OFF_WMODE,
    OFF_HEAD,
    OFF_READ,
    OFF_RPARTIAL,
    OFF_JR_STATE,
    OFF_JR_HEAD,
    OFF_JR_READ,
    OFF_JR_RPARTIAL,
    OFF_JR_OV_HEAD,
    OFF_JR_RMODE,
    OFF_OV_HEAD,
    OFF_RMODE,
    OFF_OV_PUNCHED,
    OFF_STREAM_FATE,
    OFF_TASKS_PUT,
    OFF_TASKS_DONE,
];

fn garbage_value() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..8,
        0u64..100_000,
        any::<u64>(),
        Just(u64::MAX),
        Just(u64::MAX - 3),
        Just(POS_LIMIT - 1),
        Just(POS_LIMIT),
        (0u32..64).prop_map(|b| 1u64 << b),
    ]
}

fn garbage_ring(kind: u8) -> Ring {
    match kind {
        0 => Ring::create(128, 0).unwrap(),
        1 => Ring::create(128, 4).unwrap(),
        _ => Ring::create_with(128, 0, 8192).unwrap(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Random values in any shared word and random bytes in the ring: every operation
    /// returns (no panic, no hang: a few deadlines' worth of time at most), and a
    /// broken ring stays broken without disturbing another ring.
    #[test]
    fn random_header_words_never_panic_or_hang(
        kind in 0u8..3,
        before in 0usize..6,
        writes in proptest::collection::vec((0..WORDS.len(), garbage_value()), 1..6),
        bytes in proptest::collection::vec((any::<u16>(), any::<u8>()), 0..20),
        locks in 0u8..3,
        lock_words in (any::<u32>(), any::<u32>()),
    ) {
        let r = garbage_ring(kind);
        let other = Ring::create(128, 0).unwrap();
        for i in 0..before {
            let _ = r.push(&pattern(i as u8, 10 + 30 * i), ms(5));
        }
        for (w, v) in writes {
            r.u64(WORDS[w]).store(v, Ordering::Relaxed);
        }
        for (at, b) in bytes {
            let idx = u64::from(at) & r.mask;
            r.copy_in(idx, &[b]);
        }
        if locks == 2 {
            // random lock words (owner ids of processes that mostly do not exist, the
            // waiters bit set or not)
            r.u32(OFF_WLOCK).store(lock_words.0, Ordering::SeqCst);
            r.u32(OFF_RLOCK).store(lock_words.1, Ordering::SeqCst);
        }
        if locks == 1 {
            // garbage owners too: both locks held by a process that no longer exists
            let dead = {
                let mut c = std::process::Command::new("true").spawn().unwrap();
                let p = c.id();
                c.wait().unwrap();
                p
            };
            r.u32(OFF_WLOCK).store(dead, Ordering::SeqCst);
            r.u32(OFF_RLOCK).store(dead, Ordering::SeqCst);
        }
        let start = Instant::now();
        let mut out = Vec::new();
        for i in 0..3 {
            let _ = r.push(&pattern(i, 20 + 150 * usize::from(i)), ms(20));
            let _ = r.push_task(&pattern(i, 5), Deadline::After(Duration::from_millis(20)));
            let _ = r.pop(&mut out, ms(20), i == 2);
            prop_assert!(out.len() as u64 <= r.max_message_size());
            let _ = r.task_done();
            let _ = (r.len(), r.is_full(), r.unfinished(), r.overflow_len());
            let _ = r.task_join(ms(1));
        }
        r.recover_dead_reader();
        // one op waits at most ~20 ms (+ the 100 ms mid-stream grace, + lock checks)
        prop_assert!(start.elapsed() < Duration::from_secs(10), "{:?}", start.elapsed());
        // the other ring is untouched
        other.push(b"fine", ms(100)).unwrap();
        other.pop(&mut out, ms(100), false).unwrap();
        prop_assert_eq!(&out[..], b"fine");
        // a view opened now on the scribbled memory is refused or works: no panic
        if let Ok(o) = Ring::open(r.try_clone_fd().unwrap()) {
            let _ = o.push(b"x", ms(5));
            let _ = o.pop(&mut out, ms(5), false);
        }
    }
}
