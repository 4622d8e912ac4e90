//! The real ring ([`crate::ring::Ring`]: `push`, `pop`, streaming, the journals and their
//! recovery, the writer and reader locks, the futex waits) under loom: each thread is a
//! "process" with its own view of one heap region ([`Ring::model_open`]), one lock
//! identity, and may die at one of the ring's fail points ([`model::kill_at`]).
//!
//! What is covered, and with which bounds, is said at each test; the loom step's time
//! budget (CI) sets the preemption bounds. Not covered under loom: the overflow area of
//! unbounded rings (the heap region has none; its switches are journaled commits like
//! the ones checked here, and are killed at every step in `ring::kill_tests`), the spin
//! phases (disabled in the model), and deadlines (time is not modelled).

use super::model::{self, HeapRegion, Region};
use crate::ring::Ring;

/// A message `[producer, seq, filler…]` of `len` bytes.
fn msg(producer: u8, seq: u8, len: usize) -> Vec<u8> {
    let mut m = vec![producer, seq];
    m.extend((2..len).map(|i| producer ^ seq ^ i as u8));
    m
}

fn pop(r: &Ring) -> Vec<u8> {
    let mut out = Vec::new();
    r.pop(&mut out, None, false).expect("a message");
    out
}

fn setup(cap: u64, maxsize: u64) -> (Region, Ring) {
    let region = HeapRegion::new(cap as usize);
    let r = Ring::model_create(&region, cap, maxsize);
    (region, r)
}

/// Two producers (one putting two messages, the other one) and one consumer taking
/// three, all at once, on a 64-byte ring where two messages do not fit together (so
/// writers also wait for room): every message arrives once, whole, and each producer's
/// messages in its order. Preemption bound 2.
#[test]
fn loom_ring_two_producers_one_consumer_no_loss_no_duplicate_in_order() {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(2);
    b.check(|| {
        let (region, r) = setup(64, 0);
        let producers: Vec<_> = [(1u8, 2u8), (2, 1)]
            .into_iter()
            .map(|(p, n)| {
                let region = region.clone();
                loom::thread::spawn(move || {
                    let w = Ring::model_open(&region);
                    for s in 0..n {
                        w.push(&msg(p, s, 24), None).unwrap();
                    }
                })
            })
            .collect();
        let got: Vec<Vec<u8>> = (0..3).map(|_| pop(&r)).collect();
        for p in producers {
            p.join().unwrap();
        }
        for m in &got {
            assert_eq!(*m, msg(m[0], m[1], 24), "torn message");
        }
        let of = |p: u8| {
            got.iter()
                .filter(|m| m[0] == p)
                .map(|m| m[1])
                .collect::<Vec<_>>()
        };
        assert_eq!(of(1), vec![0, 1], "producer 1: loss, duplicate or reorder");
        assert_eq!(of(2), vec![0], "producer 2: loss or duplicate");
        assert!(r.is_empty());
    });
}

/// A bounded ring (`maxsize` 1) that is full: the second put waits for the slot and is
/// woken by the get that frees it (a lost wake-up is a loom deadlock); the reader,
/// started before anything is there, sleeps and is woken by the puts. Preemption
/// bound 2.
#[test]
fn loom_ring_a_full_ring_blocks_the_writer_and_the_get_wakes_it() {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(2);
    b.check(|| {
        let (region, r) = setup(64, 1);
        let w = loom::thread::spawn(move || {
            let w = Ring::model_open(&region);
            w.push(&msg(1, 0, 8), None).unwrap();
            w.push(&msg(1, 1, 8), None).unwrap();
        });
        assert_eq!(pop(&r), msg(1, 0, 8));
        assert_eq!(pop(&r), msg(1, 1, 8));
        w.join().unwrap();
    });
}

/// A message larger than the ring (100 bytes through 64) is streamed in pieces while the
/// reader reassembles it, each side waiting for the other: it arrives whole, then the
/// next message. Preemption bound 2.
#[test]
fn loom_ring_a_message_larger_than_the_ring_is_streamed_whole() {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(2);
    b.check(|| {
        let (region, r) = setup(64, 0);
        let w = loom::thread::spawn(move || {
            let w = Ring::model_open(&region);
            w.push(&msg(1, 0, 100), None).unwrap();
            w.push(&msg(1, 1, 8), None).unwrap();
        });
        assert_eq!(pop(&r), msg(1, 0, 100));
        assert_eq!(pop(&r), msg(1, 1, 8));
        w.join().unwrap();
    });
}

/// A producer killed at `point` (a fail point of `push`) while a second producer puts
/// and a consumer takes; then a third put (by the consumer's thread) and gets up to its
/// message. Whoever takes the writer lock over from the dead one finishes its journal or
/// aborts its stream (a reader mid-stream does it too); the consumer gets every live
/// message whole and once, and the dead one's message exactly when its commit was
/// journaled (`committed`: it is completed by the next writer at the latest), never
/// torn, never twice. `len` > 64 makes it a streamed message.
fn killed_producer(point: &'static str, len: usize, committed: bool, bound: usize) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(bound);
    b.check(move || {
        let (region, r) = setup(64, 0);
        let reg = region.clone();
        let dead = loom::thread::spawn(move || {
            let w = Ring::model_open(&reg);
            model::kill_at(point);
            model::run_process(|| w.push(&msg(1, 0, len), None).unwrap())
        });
        let reg = region.clone();
        let live = loom::thread::spawn(move || {
            let w = Ring::model_open(&reg);
            w.push(&msg(2, 0, 8), None).unwrap();
        });
        let mut got = vec![pop(&r)];
        assert!(dead.join().unwrap().is_none(), "not killed at {point}");
        live.join().unwrap();
        // the next writer: completes (or aborts) what the dead one left, if nobody has
        let marker = msg(3, 0, 8);
        Ring::model_open(&region).push(&marker, None).unwrap();
        while *got.last().unwrap() != marker {
            got.push(pop(&r));
        }
        got.sort();
        let mut want = vec![msg(2, 0, 8), marker];
        if committed {
            want.insert(0, msg(1, 0, len));
        }
        assert_eq!(got, want, "killed at {point}");
        assert!(r.is_empty(), "killed at {point}: {} left", r.len());
    });
}

#[test]
fn loom_ring_producer_killed_after_the_header_leaves_nothing() {
    killed_producer("ring.put.after_header", 8, false, 2);
}

#[test]
fn loom_ring_producer_killed_before_its_commit_leaves_nothing() {
    killed_producer("ring.put.written", 8, false, 2);
}

#[test]
fn loom_ring_producer_killed_inside_its_journaled_commit_is_completed() {
    killed_producer(
        "w_apply: overflow position stored, tail not yet",
        8,
        true,
        2,
    );
}

#[test]
fn loom_ring_producer_killed_after_its_commit_is_delivered_once() {
    killed_producer("ring.put.committed", 8, true, 2);
}

#[test]
fn loom_ring_producer_killed_mid_stream_is_aborted() {
    killed_producer("ring.put.stream.piece_committed", 100, false, 1);
}
