use super::*;
use proptest::prelude::*;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

thread_local! {
    /// The fail point (see `fail_point`) at which this thread "dies" next.
    pub(super) static FAIL_AT: std::cell::Cell<Option<&'static str>> =
        const { std::cell::Cell::new(None) };
    /// How many times this thread entered `spin_for_hot_room`.
    pub(super) static HOT_ROOM_SPINS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

fn secs(s: u64) -> Option<Instant> {
    Some(Instant::now() + Duration::from_secs(s))
}

fn ms(m: u64) -> Option<Instant> {
    Some(Instant::now() + Duration::from_millis(m))
}

/// The pid of a process that has exited and been reaped.
fn dead_pid() -> u32 {
    let mut c = std::process::Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    pid
}

/// A message that says who wrote it and checks itself: `[writer, seq(8), pattern...]`.
fn message(writer: u8, seq: u64, len: usize) -> Vec<u8> {
    let mut m = Vec::with_capacity(len.max(9));
    m.push(writer);
    m.extend_from_slice(&seq.to_le_bytes());
    let mut x = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(writer);
    while m.len() < len.max(9) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        m.push(x as u8);
    }
    m
}

fn check(m: &[u8]) -> (u8, u64) {
    assert!(m.len() >= 9, "torn message of {} bytes", m.len());
    let w = m[0];
    let seq = u64::from_le_bytes(m[1..9].try_into().unwrap());
    assert_eq!(m, &message(w, seq, m.len())[..], "torn or garbled message");
    (w, seq)
}

#[test]
fn small_messages_round_trip_in_order_including_empty() {
    let r = Ring::create(256, 0).unwrap();
    assert_eq!(r.capacity(), 256);
    let mut out = Vec::new();
    for i in 0..1000u32 {
        let m = vec![i as u8; (i % 40) as usize];
        r.push(&m, None).unwrap();
        assert_eq!(r.len(), 1);
        r.pop(&mut out, None, false).unwrap();
        assert_eq!(out, m);
    }
    assert!(r.is_empty());
}

#[test]
fn a_second_mapping_sees_the_same_ring() {
    let a = Ring::create(4096, 0).unwrap();
    let b = Ring::open(a.try_clone_fd().unwrap()).unwrap();
    a.push(b"one", None).unwrap();
    a.push(b"two", None).unwrap();
    assert_eq!(b.len(), 2);
    let mut out = Vec::new();
    b.pop(&mut out, None, false).unwrap();
    assert_eq!(out, b"one");
    a.pop(&mut out, None, false).unwrap();
    assert_eq!(out, b"two");
}

#[test]
fn open_rejects_memory_that_is_not_a_ring() {
    let r = ShmRegion::create("x", 8192).unwrap();
    assert!(Ring::open(r.try_clone_fd().unwrap()).is_err());
    let (p, _w) = rustix::pipe::pipe().unwrap();
    assert!(Ring::open(p).is_err());
    assert!(Ring::create(MAX_CAPACITY + 1, 0).is_err());
}

#[test]
fn bounded_ring_refuses_past_maxsize_then_accepts() {
    let r = Ring::create(4096, 3).unwrap();
    for i in 0..3u8 {
        r.push(&[i], Some(Instant::now())).unwrap();
    }
    assert!(r.is_full());
    let t0 = Instant::now();
    assert_eq!(r.push(b"x", ms(30)), Err(PushError::Full));
    assert!(t0.elapsed() >= Duration::from_millis(30));
    let mut out = Vec::new();
    r.pop(&mut out, None, false).unwrap();
    assert_eq!(out, [0]);
    assert!(!r.is_full());
    r.push(b"x", Some(Instant::now())).unwrap();
    assert_eq!(r.len(), 3);
}

#[test]
fn byte_full_ring_times_out_and_empty_ring_times_out() {
    let r = Ring::create(64, 0).unwrap();
    r.push(&[1; 40], None).unwrap();
    assert_eq!(r.push(&[2; 40], ms(20)), Err(PushError::Full));
    let mut out = Vec::new();
    r.pop(&mut out, None, false).unwrap();
    assert_eq!(r.pop(&mut out, ms(20), false), Err(PopError::Empty));
    assert_eq!(
        r.pop(&mut out, Some(Instant::now()), false),
        Err(PopError::Empty)
    );
}

#[test]
fn messages_larger_than_the_ring_stream_between_threads() {
    let r = Arc::new(Ring::create(64, 0).unwrap());
    let w = r.clone();
    let t = std::thread::spawn(move || {
        for (i, len) in [0usize, 300, 61, 59, 60, 4096, 7, 100_000]
            .into_iter()
            .enumerate()
        {
            w.push(&message(1, i as u64, len), secs(20)).unwrap();
        }
    });
    let mut out = Vec::new();
    for i in 0..8u64 {
        r.pop(&mut out, secs(20), false).unwrap();
        assert_eq!(check(&out), (1, i));
    }
    t.join().unwrap();
}

#[test]
fn a_stream_cut_short_by_a_timeout_is_aborted_and_never_seen() {
    let r = Ring::create(256, 0).unwrap();
    // nobody reads: the first piece goes in, then the deadline passes
    assert_eq!(r.push(&message(1, 0, 1000), ms(20)), Err(PushError::Full));
    r.push(&message(1, 1, 10), None).unwrap();
    let mut out = Vec::new();
    r.pop(&mut out, ms(100), false).unwrap();
    assert_eq!(check(&out), (1, 1));
    assert_eq!(r.len(), 0);
}

#[test]
fn disconnected_needs_every_producer_gone() {
    let r = Ring::create(256, 0).unwrap();
    let me = robust::my_id();
    let mut out = Vec::new();
    assert_eq!(r.pop(&mut out, ms(10), true), Err(PopError::Disconnected));
    r.register_producer(me);
    r.register_producer(me);
    assert_eq!(r.pop(&mut out, ms(10), true), Err(PopError::Empty));
    r.push(b"last", None).unwrap();
    r.unregister_producer(me);
    r.unregister_producer(me);
    // drained first, then disconnected
    r.pop(&mut out, ms(10), true).unwrap();
    assert_eq!(out, b"last");
    assert_eq!(r.pop(&mut out, None, true), Err(PopError::Disconnected));
    // a dead process's registration does not count (and is reclaimed)
    r.register_producer(dead_pid());
    assert!(!r.producers_alive(me));
    assert_eq!(r.pop(&mut out, None, true), Err(PopError::Disconnected));
    // without asking, an empty ring just times out
    assert_eq!(r.pop(&mut out, ms(10), false), Err(PopError::Empty));
}

#[test]
fn a_blocked_reader_is_woken_by_the_last_producer_leaving() {
    let r = Arc::new(Ring::create(256, 0).unwrap());
    // the only producer: this process (the reader below is in it too, and asks with
    // `disconnect`, so it counts this process's registration as a live producer)
    r.register_producer(robust::my_id());
    let r2 = r.clone();
    let t = std::thread::spawn(move || {
        let mut out = Vec::new();
        // one blocking pop, far deadline: it can only end early by the disconnection
        let res = r2.pop(&mut out, secs(60), true);
        (res, Instant::now())
    });
    // the reader is inside the wait: counted as a sleeping reader (which it only is
    // between its last check of the ring and the futex sleep)
    let t0 = Instant::now();
    while r.u32(OFF_READERS_WAITING).load(Ordering::SeqCst) == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the reader never waited"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(
        !t.is_finished(),
        "the reader returned without a producer leaving"
    );
    // (a second, foreign sleeper counted for the moment of the unregistration: between
    // two of its sleep slices the reader is briefly not counted, and the wake-up must
    // not depend on that timing)
    r.u32(OFF_READERS_WAITING).fetch_add(1, Ordering::SeqCst);
    let seq = r.u32(OFF_DATA_SEQ).load(Ordering::SeqCst);
    let left = Instant::now();
    r.unregister_producer(robust::my_id());
    let woke = r.u32(OFF_DATA_SEQ).load(Ordering::SeqCst);
    r.u32(OFF_READERS_WAITING).fetch_sub(1, Ordering::SeqCst);
    assert_ne!(woke, seq, "leaving did not wake the waiting readers");
    let (res, ended) = t.join().unwrap();
    assert_eq!(res, Err(PopError::Disconnected));
    // well before its 60 s deadline (generous: a loaded machine)
    assert!(ended.duration_since(left) < Duration::from_secs(20));
    assert!(!r.producers_alive(robust::my_id()));
}

#[test]
fn overflowing_the_producer_table_still_counts() {
    let r = Ring::create(256, 0).unwrap();
    let me = robust::my_id();
    for _ in 0..3 {
        r.register_producer(me);
    }
    assert_eq!(r.slot(0).load(Ordering::Relaxed), 0);
    // fill every other slot with a live foreign pid (1: init)
    for i in 1..N_SLOTS {
        if r.slot(i).load(Ordering::Relaxed) == 0 {
            r.slot(i).store((1u64 << 32) | 1, Ordering::Relaxed);
        }
    }
    r.register_producer(me); // our own slot still exists: counted there
    for i in 1..N_SLOTS {
        if r.slot(i).load(Ordering::Relaxed) >> 32 == u64::from(me) {
            r.slot(i).store((1u64 << 32) | 1, Ordering::Relaxed);
        }
    }
    r.register_producer(me); // no slot of ours, none free, none dead: overflow
    assert_eq!(r.slot(0).load(Ordering::Relaxed), 1);
    assert!(r.producers_alive(0));
    r.unregister_producer(me);
    assert_eq!(r.slot(0).load(Ordering::Relaxed), 0);
}

#[test]
fn writer_killed_mid_stream_is_recovered_by_the_reader() {
    let r = Ring::create(64, 0).unwrap();
    // a writer that wrote the first piece of a big message, then died holding the lock
    let wl = r.u32(OFF_WLOCK);
    robust::lock(wl, None).unwrap();
    let first = message(7, 0, 100);
    let hdr = 20u32 | MORE;
    r.copy_in(0, &hdr.to_le_bytes());
    r.copy_in(4, &first[..20]);
    r.w_commit(24, 1, 1, 0);
    wl.store(dead_pid(), Ordering::SeqCst);
    assert_eq!(r.len(), 1);
    let mut out = Vec::new();
    // the reader takes the piece, finds the writer dead, aborts the stream for it
    assert_eq!(r.pop(&mut out, ms(50), false), Err(PopError::Empty));
    assert_eq!(r.len(), 0);
    assert!(!r.is_broken());
    // and the ring works on
    r.push(&message(7, 1, 30), ms(1000)).unwrap();
    r.pop(&mut out, ms(1000), false).unwrap();
    assert_eq!(check(&out), (7, 1));
}

#[test]
fn writer_killed_inside_its_journal_is_completed_by_the_next_writer() {
    let r = Ring::create(256, 0).unwrap();
    let wl = r.u32(OFF_WLOCK);
    let m = message(3, 0, 50);
    r.copy_in(0, &(50u32).to_le_bytes());
    r.copy_in(4, &m);
    // journal written and flagged, nothing applied yet: then death
    r.u64(OFF_JW_TAIL).store(54, Ordering::Relaxed);
    r.u64(OFF_JW_WRITTEN).store(1, Ordering::Relaxed);
    r.u64(OFF_JW_WPARTIAL).store(0, Ordering::Relaxed);
    r.u64(OFF_JW_TASKS).store(1, Ordering::Relaxed); // it was a counted task
    r.u64(OFF_JW_STATE).store(1, Ordering::Relaxed);
    wl.store(dead_pid(), Ordering::SeqCst);
    assert_eq!(r.len(), 0);
    assert_eq!(r.unfinished(), 0);
    r.push(&message(3, 1, 5), secs(10)).unwrap();
    // the message and its task appear together
    assert_eq!(r.unfinished(), 1);
    let mut out = Vec::new();
    r.pop(&mut out, ms(100), false).unwrap();
    assert_eq!(check(&out), (3, 0));
    r.pop(&mut out, ms(100), false).unwrap();
    assert_eq!(check(&out), (3, 1));
    assert!(r.task_done());
    assert!(!r.task_done());
}

#[test]
fn reader_killed_mid_stream_makes_the_next_reader_skip_the_rest() {
    let r = Ring::create(256, 0).unwrap();
    // ring content: [piece MORE][last piece][next message]; a reader took the first
    // piece (committed rpartial=1) and died holding the reader lock
    let big = message(5, 0, 60);
    r.copy_in(0, &(30u32 | MORE).to_le_bytes());
    r.copy_in(4, &big[..30]);
    r.copy_in(34, &(30u32).to_le_bytes());
    r.copy_in(38, &big[30..]);
    let next = message(5, 1, 12);
    r.copy_in(68, &(12u32).to_le_bytes());
    r.copy_in(72, &next);
    r.w_commit(84, 2, 0, 0);
    r.r_commit(34, 0, 1);
    r.u32(OFF_RLOCK).store(dead_pid(), Ordering::SeqCst);
    let mut out = Vec::new();
    r.pop(&mut out, secs(10), false).unwrap();
    assert_eq!(check(&out), (5, 1));
    assert!(r.is_empty());
}

#[test]
fn reader_killed_while_waiting_leaves_a_usable_ring() {
    let r = Ring::create(256, 0).unwrap();
    r.u32(OFF_RLOCK).store(dead_pid(), Ordering::SeqCst);
    r.push(b"still here", None).unwrap();
    let mut out = Vec::new();
    r.pop(&mut out, secs(10), false).unwrap();
    assert_eq!(out, b"still here");
}

#[test]
fn a_dead_readers_lock_is_freed_at_once_by_recover_dead_reader() {
    let r = Ring::create(256, 0).unwrap();
    r.u32(OFF_RLOCK).store(dead_pid(), Ordering::SeqCst);
    r.push(b"waiting", None).unwrap();
    r.recover_dead_reader();
    assert_eq!(r.u32(OFF_RLOCK).load(Ordering::SeqCst) & 0x7fff_ffff, 0);
    // a try-pop (no waiting) now gets the message: the lock is free
    let mut out = Vec::new();
    r.pop(&mut out, Some(Instant::now()), false).unwrap();
    assert_eq!(out, b"waiting");
    // a live owner (this process) is left alone
    r.u32(OFF_RLOCK).store(std::process::id(), Ordering::SeqCst);
    r.recover_dead_reader();
    assert_eq!(r.u32(OFF_RLOCK).load(Ordering::SeqCst), std::process::id());
    r.u32(OFF_RLOCK).store(0, Ordering::SeqCst);
}

#[test]
fn corrupt_headers_break_the_ring_instead_of_panicking() {
    let r = Ring::create(256, 0).unwrap();
    r.copy_in(0, &(200u32).to_le_bytes()); // claims 200 bytes, only 10 published
    r.w_commit(14, 1, 0, 0);
    let mut out = Vec::new();
    assert_eq!(r.pop(&mut out, ms(10), false), Err(PopError::Broken));
    assert!(r.is_broken());
    assert_eq!(r.push(b"x", None), Err(PushError::Broken));
    assert_eq!(r.pop(&mut out, None, false), Err(PopError::Broken));

    let r = Ring::create(256, 0).unwrap();
    r.w_commit(100_000, 1, 0, 0); // tail - head larger than the ring
    assert_eq!(r.pop(&mut out, ms(10), false), Err(PopError::Broken));
    let r = Ring::create(256, 0).unwrap();
    r.copy_in(0, &(ABORT | 3).to_le_bytes()); // an abort record with a length
    r.w_commit(7, 1, 0, 0);
    assert_eq!(r.pop(&mut out, ms(10), false), Err(PopError::Broken));
}

#[test]
fn task_counter_counts_and_joins() {
    let r = Arc::new(Ring::create(256, 0).unwrap());
    assert!(!r.task_done());
    assert!(r.task_join(Some(Instant::now())));
    r.push_task(b"a", Deadline::Never).unwrap();
    r.push(b"not a task", None).unwrap();
    r.push_task(b"b", Deadline::Never).unwrap();
    assert_eq!(r.unfinished(), 2);
    assert!(!r.task_join(ms(20)));
    let r2 = r.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        assert!(r2.task_done());
        assert!(r2.task_done());
    });
    assert!(r.task_join(secs(10)));
    t.join().unwrap();
    assert!(!r.task_done());
    assert_eq!(r.unfinished(), 0);
}

#[test]
fn a_failed_or_abandoned_push_task_counts_no_task() {
    let r = Ring::create(256, 1).unwrap();
    r.push_task(b"one", Deadline::Never).unwrap();
    // bounded ring full: refused, not counted
    let zero = Deadline::After(Duration::ZERO);
    assert_eq!(r.push_task(b"two", zero), Err(PushError::Full));
    assert_eq!(r.unfinished(), 1);
    let mut out = Vec::new();
    r.pop(&mut out, ms(100), false).unwrap();
    // a stream cut short after its first piece: aborted, not counted
    let big = message(1, 0, 1000);
    let after = Deadline::After(Duration::from_millis(20));
    assert_eq!(r.push_task(&big, after), Err(PushError::Full));
    assert_eq!(r.unfinished(), 1);
    assert!(r.task_done());
    assert!(r.task_join(Some(Instant::now())));
}

#[test]
fn a_writer_killed_mid_stream_leaves_no_task_behind() {
    let r = Ring::create(64, 0).unwrap();
    r.push_task(b"done before", Deadline::Never).unwrap();
    let mut out = Vec::new();
    r.pop(&mut out, ms(100), false).unwrap();
    assert!(r.task_done());
    // a writer streaming a task died after its first piece, holding the lock
    let wl = r.u32(OFF_WLOCK);
    robust::lock(wl, None).unwrap();
    let tail = r.u64(OFF_TAIL).load(Ordering::Relaxed);
    let hdr = 20u32 | MORE;
    r.copy_in(tail, &hdr.to_le_bytes());
    r.copy_in(tail + 4, &[9; 20]);
    r.w_commit(tail + 24, 2, 1, 1);
    wl.store(dead_pid(), Ordering::SeqCst);
    // join does not wait for the half-sent task, before or after the recovery
    assert!(r.task_join(ms(1000)));
    r.push_task(b"next", Deadline::Never).unwrap();
    assert_eq!(r.unfinished(), 1);
    r.pop(&mut out, ms(1000), false).unwrap();
    assert_eq!(out, b"next");
    assert!(r.task_done());
    assert!(r.task_join(Some(Instant::now())));
}

/// Many writers and readers (threads), random sizes up to 4x the ring: every message
/// exactly once, intact, in order per writer; a bounded ring never holds more than
/// `maxsize`.
fn run_schedule(cap: usize, maxsize: u64, writers: Vec<Vec<usize>>, readers: usize) {
    run_schedule_on(Ring::create(cap, maxsize).unwrap(), writers, readers);
}

fn run_schedule_on(r: Ring, writers: Vec<Vec<usize>>, readers: usize) {
    let maxsize = r.maxsize();
    let r = Arc::new(r);
    let total: usize = writers.iter().map(Vec::len).sum();
    let taken = Arc::new(AtomicU64::new(0));
    let over = Arc::new(AtomicBool::new(false));
    let mut ws = Vec::new();
    for (w, sizes) in writers.into_iter().enumerate() {
        let r = r.clone();
        ws.push(std::thread::spawn(move || {
            for (i, len) in sizes.into_iter().enumerate() {
                r.push(&message(w as u8, i as u64, len), secs(30)).unwrap();
            }
        }));
    }
    let mut rs = Vec::new();
    for _ in 0..readers {
        let (r, taken, over) = (r.clone(), taken.clone(), over.clone());
        rs.push(std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut out = Vec::new();
            while (taken.load(Ordering::SeqCst) as usize) < total {
                match r.pop(&mut out, ms(20), false) {
                    Ok(()) => {
                        taken.fetch_add(1, Ordering::SeqCst);
                        got.push(check(&out));
                    }
                    Err(PopError::Empty) => {}
                    Err(e) => panic!("{e:?}"),
                }
                if maxsize > 0 && r.len() > maxsize {
                    over.store(true, Ordering::SeqCst);
                }
            }
            got
        }));
    }
    for w in ws {
        w.join().unwrap();
    }
    let mut all: Vec<Vec<(u8, u64)>> = rs.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(
        !over.load(Ordering::SeqCst),
        "more than maxsize messages in the ring"
    );
    // per writer, each reader's view is increasing; together they are exactly 0..n
    let mut seen = std::collections::BTreeMap::<u8, Vec<u64>>::new();
    for got in &mut all {
        let mut last = std::collections::HashMap::new();
        for &(w, s) in got.iter() {
            if let Some(&p) = last.get(&w) {
                assert!(s > p, "writer {w}: {s} after {p}");
            }
            last.insert(w, s);
            seen.entry(w).or_default().push(s);
        }
    }
    let n: usize = seen.values().map(Vec::len).sum();
    assert_eq!(n, total);
    for (w, mut v) in seen {
        v.sort_unstable();
        let expect: Vec<u64> = (0..v.len() as u64).collect();
        assert_eq!(v, expect, "writer {w}");
    }
}

/// The proptests' configuration: `PROPTEST_CASES` if set, else `default_cases` times
/// `PROCACTOR_PROPTEST_SCALE` if set (`scripts/proptest-10x.sh`); a seed drawn here
/// unless `PROPTEST_RNG_SEED` gives one, printed with how to replay it. Failures are
/// persisted where proptest puts them (`transports/proptest-regressions/`).
fn config(default_cases: u32) -> ProptestConfig {
    let mut c = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        let scale = std::env::var("PROCACTOR_PROPTEST_SCALE")
            .ok()
            .and_then(|s| s.parse::<u32>().ok())
            .unwrap_or(1);
        c.cases = default_cases.saturating_mul(scale.max(1));
    }
    if matches!(c.rng_seed, proptest::test_runner::RngSeed::Random) {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id()).rotate_left(32);
        c.rng_seed = proptest::test_runner::RngSeed::Fixed(seed);
    }
    eprintln!(
        "proptest: {} cases, seed {} (replay: PROPTEST_RNG_SEED={} PROPTEST_CASES={})",
        c.cases, c.rng_seed, c.rng_seed, c.cases
    );
    c
}

proptest! {
    #![proptest_config(config(24))]
    #[test]
    fn any_schedule_delivers_everything_once_intact_in_order(
        writers in proptest::collection::vec(
            proptest::collection::vec(prop_oneof![0usize..64, 0usize..1024, 0usize..4096], 0..40),
            1..=4),
        readers in 1usize..=4,
        maxsize in prop_oneof![Just(0u64), 1u64..8],
    ) {
        run_schedule(1024, maxsize, writers, readers);
    }
}

#[test]
fn one_reader_sees_one_writer_in_order_fast() {
    run_schedule(1 << 16, 0, vec![vec![24; 200_000]], 1);
}

#[test]
fn copy_out_append_wraps_and_keeps_what_was_there() {
    let r = Ring::create(64, 0).unwrap();
    let data: Vec<u8> = (100..164).collect();
    for start in [0u64, 1, 40, 63, 64, 100] {
        for len in [0usize, 1, 23, 24, 25, 64] {
            r.copy_in(start, &data[..len]);
            // garbage in the spare capacity must not show through
            let mut out = Vec::with_capacity(3);
            out.extend_from_slice(&[0xaa; 200]);
            out.truncate(3);
            r.copy_out_append(start, len, &mut out);
            assert_eq!(out[..3], [0xaa; 3]);
            assert_eq!(out[3..], data[..len], "start {start} len {len}");
        }
    }
}

#[test]
fn streamed_messages_travel_in_quarter_ring_pieces() {
    let r = Arc::new(Ring::create(1024, 0).unwrap());
    let w = r.clone();
    let t = std::thread::spawn(move || w.push(&message(2, 0, 10_000), secs(20)));
    // the first record is a piece of a quarter ring flagged MORE
    let t0 = Instant::now();
    while r.u64(OFF_TAIL).load(Ordering::Acquire) == 0 {
        assert!(t0.elapsed() < Duration::from_secs(20), "no piece came");
        std::thread::yield_now();
    }
    assert_eq!(r.read_u32_at(0), 256 | MORE);
    let mut out = Vec::new();
    r.pop(&mut out, secs(20), false).unwrap();
    assert_eq!(check(&out), (2, 0));
    t.join().unwrap().unwrap();
}

#[test]
fn deadlines_after_a_duration_read_the_clock_only_when_waiting() {
    let mut d = Deadline::After(Duration::from_millis(5));
    let t0 = Instant::now();
    let at = d.resolve().unwrap();
    assert!(at >= t0 + Duration::from_millis(5));
    assert_eq!(d, Deadline::At(at)); // kept: a second wait does not move it
    assert_eq!(d.resolve(), Some(at));
    let mut huge = Deadline::After(Duration::MAX);
    assert_eq!(huge.resolve(), None); // too far to represent: forever
    assert_eq!(huge, Deadline::Never);
    assert_eq!(Deadline::from(None), Deadline::Never);

    let r = Ring::create(64, 0).unwrap();
    let mut out = Vec::new();
    assert_eq!(
        r.pop_timeout(&mut out, Duration::ZERO, false),
        Err(PopError::Empty)
    );
    let t0 = Instant::now();
    assert_eq!(
        r.pop_timeout(&mut out, Duration::from_millis(20), false),
        Err(PopError::Empty)
    );
    assert!(t0.elapsed() >= Duration::from_millis(20));
    r.push_timeout(&[1; 40], Duration::MAX).unwrap();
    assert_eq!(
        r.push_timeout(&[2; 40], Duration::from_millis(20)),
        Err(PushError::Full)
    );
    assert_eq!(
        r.push_timeout(&[2; 40], Duration::ZERO),
        Err(PushError::Full)
    );
    r.pop_timeout(&mut out, Duration::MAX, false).unwrap();
    assert_eq!(out, [1; 40]);
}

// ---------------------------------------------------------------- overflow area

/// A small unbounded ring: a 256-byte hot ring and a 64 KiB overflow area.
fn small_unbounded() -> Ring {
    Ring::create_with(256, 0, 64 << 10).unwrap()
}

fn now() -> Option<Instant> {
    Some(Instant::now())
}

fn writer_mode(r: &Ring) -> u64 {
    r.u64(OFF_WMODE).load(Ordering::SeqCst)
}

fn reader_mode(r: &Ring) -> u64 {
    r.u64(OFF_RMODE).load(Ordering::SeqCst)
}

/// Pops everything (a try-pop each, nothing waited for) and returns the (writer, seq)
/// of each message, checking each is intact.
fn drain(r: &Ring) -> Vec<(u8, u64)> {
    let mut got = Vec::new();
    let mut out = Vec::new();
    loop {
        match r.pop(&mut out, now(), false) {
            Ok(()) => got.push(check(&out)),
            Err(PopError::Empty) => return got,
            Err(e) => panic!("{e:?}"),
        }
    }
}

#[test]
fn an_unbounded_ring_takes_far_more_than_its_hot_ring_without_waiting() {
    let r = small_unbounded();
    assert_eq!((r.capacity(), r.overflow_capacity()), (256, 64 << 10));
    // 1000 messages of 40 bytes: 44 KB, 170 times the hot ring; none may wait
    for i in 0..1000 {
        r.push(&message(1, i, 40), now()).unwrap();
    }
    assert_eq!(r.len(), 1000);
    assert_eq!(
        writer_mode(&r),
        1,
        "the writer went over to the overflow area"
    );
    assert!(r.overflow_len() > 40_000);
    assert!(!r.is_full());
    // another mapping (as another process) takes them, in order
    let other = Ring::open(r.try_clone_fd().unwrap()).unwrap();
    let got = drain(&other);
    assert_eq!(got, (0..1000).map(|i| (1, i)).collect::<Vec<_>>());
    assert!(r.is_empty());
    assert_eq!(reader_mode(&r), 1, "the reader followed the LINK");
    // the next push finds the hot ring empty and goes back (RETURN)
    r.push(&message(1, 1000, 10), now()).unwrap();
    assert_eq!(writer_mode(&r), 0);
    assert_eq!(drain(&other), [(1, 1000)]);
    assert_eq!(reader_mode(&r), 0, "the reader followed the RETURN");
    assert_eq!(r.overflow_len(), 0);
}

#[test]
fn fifo_holds_across_many_link_and_return_cycles() {
    let r = small_unbounded();
    let mut next_put = 0u64;
    let mut next_get = 0u64;
    let mut out = Vec::new();
    let (mut links, mut returns) = (0, 0);
    for cycle in 0..50u64 {
        // fill past the hot ring, then take part of it back
        let before = writer_mode(&r);
        for _ in 0..(10 + cycle % 7) {
            r.push(&message(2, next_put, 9 + (next_put % 50) as usize), now())
                .unwrap();
            next_put += 1;
            let m = writer_mode(&r);
            if before == 0 && m == 1 {
                links += 1;
            }
        }
        for _ in 0..(5 + cycle % 11) {
            if next_get == next_put {
                break;
            }
            let was = writer_mode(&r);
            r.pop(&mut out, now(), false).unwrap();
            assert_eq!(check(&out), (2, next_get));
            next_get += 1;
            let _ = was;
        }
        if before == 1 && writer_mode(&r) == 0 {
            returns += 1;
        }
        // a push after draining goes back to the hot ring
        let m0 = writer_mode(&r);
        r.push(&message(2, next_put, 12), now()).unwrap();
        next_put += 1;
        if m0 == 1 && writer_mode(&r) == 0 {
            returns += 1;
        }
    }
    for (w, s) in drain(&r) {
        assert_eq!((w, s), (2, next_get));
        next_get += 1;
    }
    assert_eq!(next_get, next_put);
    assert!(
        links >= 5 && returns >= 5,
        "{links} LINKs, {returns} RETURNs"
    );
}

#[test]
fn a_message_larger_than_the_hot_ring_goes_to_the_overflow_area_on_one_thread() {
    let r = small_unbounded();
    r.push(&message(3, 0, 20), now()).unwrap();
    // 4x the hot ring, no reader anywhere: must not wait (streaming would)
    r.push(&message(3, 1, 1024), now()).unwrap();
    r.push(&message(3, 2, 20), now()).unwrap();
    assert_eq!(drain(&r), [(3, 0), (3, 1), (3, 2)]);
    // and the same for a task
    r.push_task(&message(3, 3, 4096), Deadline::After(Duration::ZERO))
        .unwrap();
    assert_eq!(r.unfinished(), 1);
    assert_eq!(drain(&r), [(3, 3)]);
}

/// A message larger than the hot ring, put while a consumer waits in `pop`, is streamed
/// through the hot ring (the overflow area is never touched: `ov_tail` stays 0). The
/// consumer thread may be descheduled for longer than the stall budget on a loaded
/// machine (then the message rightly goes to the overflow area), so one streamed
/// transfer out of ten attempts is what is required.
#[test]
fn a_message_larger_than_the_hot_ring_streams_to_a_consumer_waiting_in_pop() {
    let mut streamed = 0;
    for attempt in 0..10u64 {
        let r = Arc::new(Ring::create_with(4096, 0, 4 << 20).unwrap());
        let reader = r.clone();
        let t = std::thread::spawn(move || {
            let mut out = Vec::new();
            reader.pop(&mut out, secs(20), false).unwrap();
            out
        });
        // the consumer is inside pop once it holds the reader lock
        let t0 = Instant::now();
        while robust::owner(r.u32(OFF_RLOCK)).is_none() {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "reader never started"
            );
            std::thread::yield_now();
        }
        r.push(&message(9, attempt, 256 << 10), secs(20)).unwrap();
        assert_eq!(check(&t.join().unwrap()), (9, attempt));
        if r.u64(OFF_OV_TAIL).load(Ordering::SeqCst) == 0 {
            streamed += 1;
        }
        assert!(r.is_empty());
    }
    assert!(streamed >= 1, "no transfer of ten was streamed");
}

/// A consumer that is inside `pop` but makes no room (here: the reader lock held by
/// the test, nobody reading): the writer streams what fits, waits `STREAM_STALL`, aborts
/// the stream and puts the message whole in the overflow area; `push` returns and the
/// reader later gets the message once, intact, in order.
#[test]
fn a_stalled_stream_is_aborted_and_the_message_goes_to_the_overflow_area() {
    let r = Ring::create_with(4096, 0, 4 << 20).unwrap();
    r.push(&message(8, 0, 20), now()).unwrap();
    assert_eq!(robust::lock(r.u32(OFF_RLOCK), None), Some(Acquired::Clean));
    let t0 = Instant::now();
    r.push(&message(8, 1, 100 << 10), now()).unwrap();
    let waited = t0.elapsed();
    assert!(
        waited >= STREAM_STALL,
        "{waited:?}: the stream was not tried"
    );
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    assert!(
        r.u64(OFF_OV_TAIL).load(Ordering::SeqCst) > 0,
        "not in the overflow area"
    );
    r.push(&message(8, 2, 20), now()).unwrap();
    robust::unlock(r.u32(OFF_RLOCK));
    assert_eq!(drain(&r), [(8, 0), (8, 1), (8, 2)]);
    assert_eq!(r.len(), 0);
}

/// A put whose deadline has passed (`try_put`) into an unbounded ring whose hot ring is
/// full overflows at once: it never enters the spin for hot room (which may last up to
/// 50 µs), while a put allowed to wait does (when spinning is on).
#[test]
fn a_try_put_on_a_full_hot_ring_overflows_without_spinning() {
    let r = small_unbounded();
    let mut n = 0u64;
    // fill the hot ring (the first overflow switch is a LINK: stop before it)
    while r.overflow_len() == 0 {
        HOT_ROOM_SPINS.with(|c| c.set(0));
        r.push_with(&message(4, n, 100), Deadline::After(Duration::ZERO))
            .unwrap();
        assert_eq!(HOT_ROOM_SPINS.with(|c| c.get()), 0, "message {n}");
        n += 1;
        assert!(n < 10_000, "never overflowed");
    }
    HOT_ROOM_SPINS.with(|c| c.set(0));
    r.push_with(&message(4, n, 100), Deadline::After(Duration::ZERO))
        .unwrap();
    assert_eq!(HOT_ROOM_SPINS.with(|c| c.get()), 0);
    n += 1;
    assert_eq!(drain(&r), (0..n).map(|i| (4, i)).collect::<Vec<_>>());
    // the control: a put that may wait finds the hot ring full and spins first
    if crate::spin::enabled() {
        let r = small_unbounded();
        let mut m = 0u64;
        HOT_ROOM_SPINS.with(|c| c.set(0));
        while r.overflow_len() == 0 {
            r.push(&message(4, m, 100), secs(10)).unwrap();
            m += 1;
        }
        assert!(
            HOT_ROOM_SPINS.with(|c| c.get()) > 0,
            "the control never spun"
        );
    }
}

#[test]
fn only_a_full_overflow_area_makes_a_push_wait() {
    let r = small_unbounded();
    let mut n = 0u64;
    while r.push(&message(4, n, 100), now()).is_ok() {
        n += 1;
        assert!(n < 10_000, "never full");
    }
    // 64 KiB of overflow plus the hot ring, 104 bytes a record
    assert!((600..=660).contains(&n), "{n} messages");
    let t0 = Instant::now();
    assert_eq!(r.push(&message(4, n, 100), ms(30)), Err(PushError::Full));
    assert!(t0.elapsed() >= Duration::from_millis(30));
    // a waiting writer is woken by the reader making room
    let r = Arc::new(r);
    let w = r.clone();
    let t = std::thread::spawn(move || w.push(&message(4, n, 100), secs(20)));
    std::thread::sleep(Duration::from_millis(20));
    let mut out = Vec::new();
    r.pop(&mut out, now(), false).unwrap();
    assert_eq!(check(&out), (4, 0));
    t.join().unwrap().unwrap();
    let got = drain(&r);
    assert_eq!(got, (1..=n).map(|i| (4, i)).collect::<Vec<_>>());
}

#[test]
fn consumed_overflow_memory_is_given_back() {
    let r = Ring::create_unbounded(64 << 10).unwrap();
    assert_eq!(r.overflow_capacity(), DEFAULT_OVERFLOW_BYTES);
    let idle = r.allocated_bytes().unwrap();
    assert!(idle < 1 << 20, "{idle} bytes before any backlog");
    for i in 0..1024 {
        r.push(&message(5, i, 64 << 10), now()).unwrap();
    }
    let full = r.allocated_bytes().unwrap();
    assert!(full >= 64 << 20, "{full} bytes for a 64 MiB backlog");
    // half drained: about half given back already (1 MiB steps)
    let mut out = Vec::new();
    for i in 0..512 {
        r.pop(&mut out, now(), false).unwrap();
        assert_eq!(check(&out), (5, i));
    }
    let half = r.allocated_bytes().unwrap();
    assert!(half <= 34 << 20, "{half} bytes with 32 MiB left");
    assert_eq!(drain(&r).len(), 512);
    // drained, the reader still in the overflow area: all of it given back already
    let drained = r.allocated_bytes().unwrap();
    assert!(
        drained < idle + (1 << 20),
        "{drained} bytes drained ({idle} idle)"
    );
    // the writer goes back to the hot ring; the reader follows and gives back the rest
    r.push(b"\x05after the backlog", now()).unwrap();
    r.pop(&mut out, now(), false).unwrap();
    let after = r.allocated_bytes().unwrap();
    assert!(
        after < idle + (1 << 20),
        "{after} bytes after draining ({idle} idle)"
    );
}

#[test]
fn a_small_overflow_area_wraps_many_times_under_concurrent_traffic() {
    // 64 KiB of overflow, ~2 MB of traffic: the area wraps some 30 times while the
    // reader punches behind itself and the writer waits when it is full
    let mut s = 0x1234_5678u64;
    let sizes: Vec<usize> = (0..2000)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % 2000) as usize
        })
        .collect();
    run_schedule_on(small_unbounded(), vec![sizes.clone(), sizes], 2);
}

/// Runs `f` as a thread that is killed (at `point`) holding `lock`: the panic stands for
/// the kill, then the lock is made to look owned by a dead process.
fn killed_at(r: &Ring, lock: usize, point: &'static str, f: impl FnOnce()) {
    FAIL_AT.with(|c| c.set(Some(point)));
    let died = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    FAIL_AT.with(|c| c.set(None));
    assert!(died.is_err(), "fail point {point} not reached");
    r.u32(lock).store(dead_pid(), Ordering::SeqCst);
    if lock == OFF_RLOCK {
        // as a supervisor that saw the consumer die does (the try-pops of `drain` do not
        // wait out the lock's liveness check)
        r.recover_dead_reader();
    }
}

/// A small unbounded ring where the next push of a 40-byte message switches into the
/// overflow area (`to_overflow`) or back out of it. Returns the ring, the next sequence
/// number to put and the first one still in the ring.
fn ring_at_switch(to_overflow: bool) -> (Ring, u64, u64) {
    let r = small_unbounded();
    let mut n = 0;
    // 40-byte messages take 44 bytes: the hot ring takes 5 with room for a LINK
    for _ in 0..5 {
        r.push(&message(6, n, 40), now()).unwrap();
        n += 1;
    }
    assert_eq!(writer_mode(&r), 0);
    if to_overflow {
        return (r, n, 0);
    }
    for _ in 0..3 {
        r.push(&message(6, n, 40), now()).unwrap();
        n += 1;
    }
    assert_eq!(writer_mode(&r), 1);
    // the reader empties the hot ring and follows the LINK into the overflow area
    let mut out = Vec::new();
    let mut first = 0;
    while reader_mode(&r) == 0 {
        r.pop(&mut out, now(), false).unwrap();
        assert_eq!(check(&out), (6, first));
        first += 1;
    }
    assert!(first >= 5, "{first}");
    (r, n, first)
}

/// A writer killed at `point` while putting message `killed`: the next writer recovers,
/// and a reader gets everything before it, the killed one if `delivered`, and the one
/// after it, intact and in order; nothing hangs.
fn writer_killed_at(point: &'static str, to_overflow: bool, delivered: bool) {
    let (r, n, first) = ring_at_switch(to_overflow);
    killed_at(&r, OFF_WLOCK, point, || {
        let _ = r.push(&message(6, n, 40), now());
    });
    r.push(&message(6, n + 1, 40), secs(10)).unwrap();
    let mut expect: Vec<(u8, u64)> = (first..n).map(|i| (6, i)).collect();
    if delivered {
        expect.push((6, n));
    }
    expect.push((6, n + 1));
    assert_eq!(drain(&r), expect, "killed at {point}");
    assert!(!r.is_broken());
    // and the ring works on in both areas
    for i in n + 2..n + 40 {
        r.push(&message(6, i, 40), now()).unwrap();
    }
    assert_eq!(
        drain(&r),
        (n + 2..n + 40).map(|i| (6, i)).collect::<Vec<_>>()
    );
}

#[test]
fn a_writer_killed_while_switching_into_the_overflow_area_loses_at_most_its_message() {
    writer_killed_at("link: written, not committed", true, false);
    writer_killed_at(
        "w_apply: overflow position stored, tail not yet",
        true,
        true,
    );
    writer_killed_at("link: committed, lock held", true, true);
}

#[test]
fn a_writer_killed_while_switching_back_to_the_hot_ring_loses_at_most_its_message() {
    writer_killed_at("return: written, not committed", false, false);
    writer_killed_at(
        "w_apply: overflow position stored, tail not yet",
        false,
        true,
    );
    writer_killed_at("return: committed, lock held", false, true);
}

/// A writer in overflow mode, the overflow area consumed to its end, a consumer inside
/// `pop` (here: the reader lock held by the test) and a message larger than the hot
/// ring: the writer returns to the hot ring to stream it. Killed before that RETURN is
/// committed, it loses only its message; not killed, the stream stalls (nobody reads),
/// is aborted and the message goes to the overflow area: delivered once, in order.
#[test]
fn a_writer_returning_to_the_hot_ring_to_stream_is_killed_or_stalls_safely() {
    for kill in [true, false] {
        let (r, n, first) = ring_at_switch(false);
        let mut got: Vec<(u8, u64)> = Vec::new();
        let mut out = Vec::new();
        while let Ok(()) = r.pop(&mut out, now(), false) {
            got.push(check(&out));
        }
        assert_eq!(got, (first..n).map(|i| (6, i)).collect::<Vec<_>>());
        assert_eq!(writer_mode(&r), 1, "the writer is still in overflow mode");
        assert_eq!(robust::lock(r.u32(OFF_RLOCK), None), Some(Acquired::Clean));
        if kill {
            killed_at(
                &r,
                OFF_WLOCK,
                "stream return: written, not committed",
                || {
                    let _ = r.push(&message(6, n, 1024), now());
                },
            );
        } else {
            r.push(&message(6, n, 1024), now()).unwrap();
        }
        robust::unlock(r.u32(OFF_RLOCK));
        r.push(&message(6, n + 1, 40), secs(10)).unwrap();
        let mut expect = Vec::new();
        if !kill {
            expect.push((6, n));
        }
        expect.push((6, n + 1));
        assert_eq!(drain(&r), expect, "kill: {kill}");
        assert!(!r.is_broken());
    }
}

#[test]
fn a_writer_killed_while_appending_to_the_overflow_area_loses_at_most_its_message() {
    // in the overflow area with the hot ring still full: the next put appends there
    for (point, delivered) in [
        ("overflow: written, not committed", false),
        ("w_apply: overflow position stored, tail not yet", true),
    ] {
        let (r, n, _) = ring_at_switch(true);
        r.push(&message(6, n, 40), now()).unwrap();
        assert_eq!(writer_mode(&r), 1);
        killed_at(&r, OFF_WLOCK, point, || {
            let _ = r.push(&message(6, n + 1, 40), now());
        });
        r.push(&message(6, n + 2, 40), secs(10)).unwrap();
        let mut expect: Vec<(u8, u64)> = (0..=n).map(|i| (6, i)).collect();
        if delivered {
            expect.push((6, n + 1));
        }
        expect.push((6, n + 2));
        assert_eq!(drain(&r), expect, "killed at {point}");
    }
}

/// A reader killed at `point` during the pop that follows a LINK (`at_link`) or a
/// RETURN: the next reader goes on; at most the message being taken is lost.
#[test]
fn a_reader_killed_while_following_link_or_return_loses_at_most_one_message() {
    // killed following the LINK (before its commit, or half way through it): nothing
    // is lost, the next reader follows the LINK again or completes the journal
    for point in [
        "reader link: before commit",
        "r_apply: overflow position stored, head not yet",
    ] {
        let r = small_unbounded();
        for i in 0..20 {
            r.push(&message(7, i, 40), now()).unwrap();
        }
        let mut out = Vec::new();
        for i in 0..5 {
            r.pop(&mut out, now(), false).unwrap();
            assert_eq!(check(&out), (7, i));
        }
        // the next record in the hot ring is the LINK
        killed_at(&r, OFF_RLOCK, point, || {
            let _ = r.pop(&mut out, now(), false);
        });
        assert_eq!(
            drain(&r),
            (5..20).map(|i| (7, i)).collect::<Vec<_>>(),
            "{point}"
        );
    }
    // killed taking a message out of the overflow area: before its commit the message
    // is still there; half way through the commit it counts as taken
    for (point, lost) in [
        ("reader overflow: copied, before commit", false),
        ("r_apply: overflow position stored, head not yet", true),
    ] {
        let (r, n, first) = ring_at_switch(false);
        let mut out = Vec::new();
        killed_at(&r, OFF_RLOCK, point, || {
            let _ = r.pop(&mut out, now(), false);
        });
        let from = first + u64::from(lost);
        assert_eq!(
            drain(&r),
            (from..n).map(|i| (6, i)).collect::<Vec<_>>(),
            "{point}"
        );
    }
    // killed following a RETURN
    for point in [
        "reader return: before commit",
        "r_apply: overflow position stored, head not yet",
    ] {
        let (r, n, first) = ring_at_switch(false);
        let mut out = Vec::new();
        // take the overflow backlog, leaving the reader just before the RETURN
        let mut next = first;
        while r.overflow_len() > 0 {
            r.pop(&mut out, now(), false).unwrap();
            assert_eq!(check(&out), (6, next));
            next += 1;
        }
        assert_eq!(next, n);
        r.push(&message(6, n, 40), now()).unwrap();
        assert_eq!(writer_mode(&r), 0, "the writer went back");
        killed_at(&r, OFF_RLOCK, point, || {
            let _ = r.pop(&mut out, now(), false);
        });
        assert_eq!(drain(&r), [(6, n)], "{point}");
        assert_eq!(reader_mode(&r), 0);
    }
}

proptest! {
    #![proptest_config(config(64))]
    /// Random puts (sizes from empty to 6x the hot ring) and gets on one small unbounded
    /// ring, against a `VecDeque`: no put waits, no loss, no duplicate, order kept.
    #[test]
    fn an_unbounded_ring_behaves_as_a_fifo(
        ops in proptest::collection::vec(
            prop_oneof![
                3 => (0usize..64).prop_map(Some),
                2 => (0usize..1536).prop_map(Some),
                4 => Just(None),
            ],
            1..400),
    ) {
        let r = Ring::create_with(256, 0, 1 << 20).unwrap();
        let mut model = std::collections::VecDeque::new();
        let mut out = Vec::new();
        for (seq, op) in ops.into_iter().enumerate() {
            match op {
                Some(len) => {
                    let m = message(8, seq as u64, len);
                    prop_assert_eq!(r.push(&m, now()), Ok(()));
                    model.push_back(m);
                }
                None => match model.pop_front() {
                    Some(m) => {
                        prop_assert_eq!(r.pop(&mut out, now(), false), Ok(()));
                        prop_assert_eq!(&out, &m);
                    }
                    None => prop_assert_eq!(r.pop(&mut out, now(), false), Err(PopError::Empty)),
                },
            }
            prop_assert_eq!(r.len(), model.len() as u64);
        }
        while let Some(m) = model.pop_front() {
            prop_assert_eq!(r.pop(&mut out, now(), false), Ok(()));
            prop_assert_eq!(&out, &m);
        }
        prop_assert_eq!(r.pop(&mut out, now(), false), Err(PopError::Empty));
        prop_assert_eq!(r.overflow_len(), 0);
    }

    /// Threads putting and getting at once on a small unbounded ring.
    #[test]
    fn any_schedule_on_an_unbounded_ring_delivers_everything_once_in_order(
        writers in proptest::collection::vec(
            proptest::collection::vec(prop_oneof![0usize..64, 0usize..1024, 0usize..4096], 0..40),
            1..=4),
        readers in 1usize..=4,
    ) {
        run_schedule_on(Ring::create_with(1024, 0, 1 << 20).unwrap(), writers, readers);
    }
}

/// Created and dropped many times, each time through the overflow area: every memory
/// file, mapping and overflow window is given back (a leaked window alone would be
/// 64 GiB of address space per ring; a leaked file, one descriptor).
#[test]
fn unbounded_rings_created_and_dropped_many_times_free_what_they_made() {
    fn fds() -> usize {
        std::fs::read_dir("/proc/self/fd").unwrap().count()
    }
    fn vm_kib() -> u64 {
        let s = std::fs::read_to_string("/proc/self/status").unwrap();
        s.lines()
            .find_map(|l| l.strip_prefix("VmSize:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
    let (fd0, vm0) = (fds(), vm_kib());
    for i in 0..3000u64 {
        let r = Ring::create_unbounded(256).unwrap();
        for k in 0..4 {
            r.push(&message(7, k, 200), now()).unwrap();
        }
        assert!(r.u64(OFF_OV_TAIL).load(Ordering::SeqCst) > 0, "overflowed");
        assert_eq!(drain(&r).len(), 4, "round {i}");
    }
    // other tests run beside this one: generous margins, far below one leak per round
    assert!(fds() < fd0 + 200, "descriptors: {fd0} -> {}", fds());
    assert!(
        vm_kib() < vm0 + (8 << 20),
        "address space: {vm0} -> {} KiB",
        vm_kib()
    );
}

/// A writer paused in the middle of a streamed message (as if `SIGSTOP`ped) makes a
/// reader with a deadline give up; when the writer resumes it sees that, aborts the
/// stream and delivers the message again (streamed anew in a plain or bounded ring,
/// through the overflow area in an unbounded one): the next `pop` gets it whole, and the
/// `push` returns `Ok` for a message that was delivered.
#[test]
fn a_message_a_reader_gave_up_on_mid_stream_arrives_whole_on_the_next_pop() {
    // paused after the first piece, or with every piece but the last taken (just before
    // the writer claims the last piece)
    for point in [
        "ring.put.stream.piece_committed",
        "ring.put.stream.last_piece_written",
    ] {
        reader_gives_up_then_gets_it_whole(Ring::create(256, 0).unwrap(), point, false);
        reader_gives_up_then_gets_it_whole(Ring::create(256, 1).unwrap(), point, false);
    }
    // (the unbounded ring's writer aborts a stream to the overflow area after 1 ms
    // without room: paused only at the first piece, which never waits)
    let unbounded = Ring::create_with(256, 0, 1 << 16).unwrap();
    reader_gives_up_then_gets_it_whole(unbounded, "ring.put.stream.piece_committed", true);
}

fn reader_gives_up_then_gets_it_whole(r: Ring, point: &'static str, overflow: bool) {
    let r = Arc::new(r);
    let go: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
    let msg = message(3, 7, 2000);
    // the reader is inside `pop` first (an unbounded ring streams only to a consumer
    // inside a pop); its deadline leaves the writer ample time to start
    let r1 = r.clone();
    let first = std::thread::spawn(move || {
        let mut out = Vec::new();
        let start = Instant::now();
        let res = r1.pop_timeout(&mut out, Duration::from_millis(1500), false);
        (res, out, start.elapsed())
    });
    let end = Instant::now() + Duration::from_secs(30);
    while robust::owner(r.u32(OFF_RLOCK)).is_none() {
        assert!(Instant::now() < end, "the reader never started");
        std::thread::sleep(Duration::from_millis(1));
    }
    let (r2, m2) = (r.clone(), msg.clone());
    let writer = std::thread::spawn(move || {
        super::PAUSE_AT.with(|p| p.set(Some((point, go))));
        r2.push(&m2, secs(60))
    });
    let (res, out, took) = first.join().unwrap();
    assert_eq!(res, Err(PopError::Empty), "{point}");
    assert!(
        out.is_empty(),
        "{point}: nothing of the half message is delivered"
    );
    assert!(took >= Duration::from_millis(1500), "{point}: {took:?}");
    assert_eq!(
        r.u64(OFF_STREAM_FATE).load(Ordering::SeqCst),
        FATE_DROPPED | stream_tag(0),
        "{point}: the reader did not give up mid-message"
    );
    // the writer resumes: the item comes whole on the next pop
    go.store(true, Ordering::SeqCst);
    let mut out = Vec::new();
    r.pop(&mut out, secs(30), false).unwrap();
    assert_eq!(out, msg, "{point}");
    assert_eq!(writer.join().unwrap(), Ok(()), "{point}");
    assert_eq!(r.len(), 0, "{point}");
    assert_eq!(r.pop(&mut out, ms(50), false), Err(PopError::Empty));
    assert_eq!(
        r.u64(OFF_OV_TAIL).load(Ordering::SeqCst) > 0,
        overflow,
        "{point}"
    );
    assert!(!r.is_broken());
}

/// A wait that missed its spin, slept, and was woken soon after by a thread on another
/// CPU (a full spin would have served it) gives the next wait the full budget back; a
/// long wait, or one woken from this very CPU (both sides on one CPU: spinning cannot
/// help), does not. Without this the budget, halved on each miss, can stay at its
/// minimum for good (see `Ring::learn_from_wait`).
#[test]
fn a_wait_served_soon_after_its_spin_restores_the_full_spin_budget() {
    let ring = Ring::create(4096, 0).unwrap();
    let waker = ring.u32(OFF_DATA_SEQ + WAKER_CPU_AFTER_SEQ);
    let budget = || ring.spin_us.load(Ordering::Relaxed);
    ring.spin_us.store(SPIN_MIN_US, Ordering::Relaxed);
    // (the spin's end not reached yet by the clock: the wait took no time beyond it)
    let soon = Instant::now() + Duration::from_secs(10);
    // nobody has noted a CPU yet: nothing to learn
    ring.learn_from_wait(Some(soon), SPIN_MIN_US, OFF_DATA_SEQ);
    assert_eq!(budget(), SPIN_MIN_US);
    // woken from this CPU: the budget stays short (retried if this thread moved to
    // another CPU in between, which would make it a wake-up from elsewhere)
    let mut same_cpu_checked = false;
    for _ in 0..1000 {
        let here = crate::spin::cpu_tag();
        waker.store(here, Ordering::Relaxed);
        ring.learn_from_wait(Some(soon), SPIN_MIN_US, OFF_DATA_SEQ);
        if crate::spin::cpu_tag() == here {
            assert_eq!(budget(), SPIN_MIN_US);
            same_cpu_checked = true;
            break;
        }
        ring.spin_us.store(SPIN_MIN_US, Ordering::Relaxed);
    }
    assert!(same_cpu_checked, "this thread never stayed on one CPU");
    // woken from another CPU, but ten seconds after the spin ended: stays short
    let other = crate::spin::cpu_tag() + 1000;
    waker.store(other, Ordering::Relaxed);
    let long_ago = Instant::now() - Duration::from_secs(10);
    ring.learn_from_wait(Some(long_ago), SPIN_MIN_US, OFF_DATA_SEQ);
    assert_eq!(budget(), SPIN_MIN_US);
    // no spin at all (spinning off or paused): nothing to learn
    ring.learn_from_wait(None, SPIN_MIN_US, OFF_DATA_SEQ);
    assert_eq!(budget(), SPIN_MIN_US);
    // soon, from another CPU: the full budget again
    ring.learn_from_wait(Some(soon), SPIN_MIN_US, OFF_DATA_SEQ);
    assert_eq!(budget(), SPIN_MAX_US);
}

/// A wake-up notes the waker's CPU beside the sequence word; a publish with nobody
/// asleep notes nothing (no store on that path).
#[test]
fn a_wake_up_notes_the_wakers_cpu_and_a_plain_publish_does_not() {
    let ring = Ring::create(4096, 0).unwrap();
    let noted = || {
        ring.u32(OFF_DATA_SEQ + WAKER_CPU_AFTER_SEQ)
            .load(Ordering::Relaxed)
    };
    ring.push(b"a", None).unwrap();
    assert_eq!(noted(), 0, "noted without a sleeper");
    // a counted sleeper (as a reader about to sleep counts itself)
    ring.u32(OFF_READERS_WAITING).fetch_add(1, Ordering::SeqCst);
    ring.push(b"b", None).unwrap();
    ring.u32(OFF_READERS_WAITING).fetch_sub(1, Ordering::SeqCst);
    let n = noted();
    assert!(n >= 1, "no CPU noted at the wake-up");
}
