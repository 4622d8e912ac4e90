//! Pipe and Connection across real processes: every row of API.md's Pipe table.

mod common;

use common::{watchdog, Refuses};
use procactor::{
    codec, wait, Connection, ExitStatus, Pipe, Process, RecvError, RecvTimeoutError, SendError,
    Waitable,
};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

procactor::test_support!();

const T: Duration = Duration::from_secs(20);
const SMALL: (u64, &str) = (7, "0123456789abcdef0123456789abcdef");

// ---------------------------------------------------------------- child targets

fn echo_doubled(conn: Connection<u64, u64>) -> u64 {
    let mut n = 0;
    while let Ok(x) = conn.recv_timeout(T) {
        conn.send(&(x * 2)).unwrap();
        n += 1;
    }
    n
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Py {
    Int(i64),
    None,
    Str(String),
}

fn send_seed_list(conn: Connection<Vec<Py>, Vec<Py>>) {
    conn.send(&vec![Py::Int(42), Py::None, Py::Str("hello".into())])
        .unwrap();
}

fn produce(args: (Connection<u32, ()>, u32)) {
    let (tx, n) = args;
    for i in 0..n {
        tx.send(&i).unwrap();
    }
}

fn serve_lengths(server: Connection<usize, String>) {
    while let Ok(req) = server.recv_timeout(T) {
        server.send(&req.len()).unwrap();
    }
}

fn sleep_forever(conn: Connection<u8, u8>) {
    // holds its end open and never answers
    let _ = conn.recv_timeout(Duration::from_secs(120));
}

fn send_bytes_then_exit(args: (Connection<(), ()>, Vec<Vec<u8>>)) {
    let (conn, frames) = args;
    for f in frames {
        conn.send_bytes(&f).unwrap();
    }
}

fn send_garbage_then_value(conn: Connection<(u64, String), ()>) {
    conn.send_bytes(b"\xff\x00garbage").unwrap();
    let mut wrong = Vec::new();
    codec::encode(&"not a tuple", &mut wrong, None).unwrap();
    conn.send_bytes(&wrong).unwrap();
    conn.send(&(SMALL.0, SMALL.1.to_string())).unwrap();
}

fn write_raw_bytes(conn: Connection<(), ()>) {
    let fd = conn.as_fd().try_clone_to_owned().unwrap();
    std::fs::File::from(fd)
        .write_all(b"this is not a procactor frame")
        .unwrap();
}

/// Receives a fresh Pipe end through `control` after start, answers through it.
fn use_received_end(control: Connection<(), Connection<String, String>>) -> usize {
    let end = control.recv_timeout(T).unwrap();
    let mut n = 0;
    while let Ok(s) = end.recv_timeout(T) {
        end.send(&s.to_uppercase()).unwrap();
        n += 1;
    }
    n
}

/// Makes a pipe in the child and hands one end back to the parent.
fn hand_back_an_end(control: Connection<Connection<u8, u8>, ()>) {
    let (mine, theirs) = Pipe::<u8>::new().unwrap();
    control.send(&theirs).unwrap();
    drop(theirs);
    let x = mine.recv_timeout(T).unwrap();
    mine.send(&(x + 1)).unwrap();
}

fn reply_after(args: (Connection<u8, u8>, u64, u8)) {
    let (conn, ms, v) = args;
    std::thread::sleep(Duration::from_millis(ms));
    conn.send(&v).unwrap();
    // keep the end open until the parent says goodbye
    let _ = conn.recv_timeout(T);
}

fn nap(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

fn close_then_report(mut conn: Connection<u8, u8>) -> (bool, bool) {
    conn.send(&1).unwrap();
    conn.close();
    let send_closed = matches!(conn.send(&2), Err(SendError::Closed));
    let recv_closed = matches!(conn.recv(), Err(RecvError::Closed));
    (send_closed, recv_closed)
}

fn sum_bytes(conn: Connection<Vec<u8>, Vec<u8>>) {
    let v = conn.recv_timeout(T).unwrap();
    let mut back = v.clone();
    back.reverse();
    conn.send(&back).unwrap();
}

// ---------------------------------------------------------------- send / recv

#[test]
fn duplex_send_recv_with_a_child() {
    watchdog(60, || {
        let (a, b) = Pipe::<u64>::new().unwrap();
        let mut p = Process::new(echo_doubled, b).start().unwrap();
        for i in 0..100 {
            a.send(&i).unwrap();
            assert_eq!(a.recv_timeout(T).unwrap(), i * 2);
        }
        drop(a);
        assert_eq!(p.join().unwrap(), ExitStatus::Code(0));
        assert_eq!(p.result().unwrap(), 100);
    });
}

#[test]
fn seed_000_child_sends_a_list() {
    watchdog(60, || {
        let (parent, child) = Pipe::<Vec<Py>>::new().unwrap();
        let mut p = Process::new(send_seed_list, child).start().unwrap();
        assert!(p.join().unwrap().success());
        assert_eq!(
            parent.recv_timeout(T).unwrap(),
            vec![Py::Int(42), Py::None, Py::Str("hello".into())]
        );
        // the child exited and its end is gone
        assert!(matches!(parent.recv_timeout(T), Err(RecvTimeoutError::Eof)));
    });
}

#[test]
fn oneway_pipe_from_a_producer_child() {
    watchdog(60, || {
        let (rx, tx) = Pipe::<u32>::oneway().unwrap();
        let mut p = Process::new(produce, (tx, 1000)).start().unwrap();
        for i in 0..1000 {
            assert_eq!(rx.recv_timeout(T).unwrap(), i);
        }
        assert!(matches!(rx.recv_timeout(T), Err(RecvTimeoutError::Eof)));
        assert!(p.join().unwrap().success());
        // the receive end cannot send
        assert!(matches!(rx.send(&()), Err(SendError::Disconnected)));
    });
}

#[test]
fn typed_pipe_request_reply() {
    watchdog(60, || {
        let (client, server) = Pipe::typed::<String, usize>().unwrap();
        let mut p = Process::new(serve_lengths, server).start().unwrap();
        for s in ["", "a", "hello", "ünïcødé"] {
            client.send(&s.to_string()).unwrap();
            assert_eq!(client.recv_timeout(T).unwrap(), s.len());
        }
        drop(client);
        assert!(p.join().unwrap().success());
    });
}

#[test]
fn large_values_cross_both_ways() {
    watchdog(60, || {
        let (a, b) = Pipe::<Vec<u8>>::new().unwrap();
        let mut p = Process::new(sum_bytes, b).start().unwrap();
        let v: Vec<u8> = (0..10_000_000u32).map(|i| (i % 251) as u8).collect();
        a.send(&v).unwrap();
        let back = a.recv_timeout(T).unwrap();
        assert_eq!(back.len(), v.len());
        assert!(back.iter().rev().eq(v.iter()));
        assert!(p.join().unwrap().success());
    });
}

#[test]
fn one_end_shared_by_two_threads() {
    watchdog(60, || {
        let (a, b) = Pipe::<u64>::new().unwrap();
        let mut p = Process::new(echo_doubled, b).start().unwrap();
        let a = Arc::new(a);
        let sender = {
            let a = a.clone();
            std::thread::spawn(move || {
                for i in 0..500 {
                    a.send(&i).unwrap();
                }
            })
        };
        let mut sum = 0;
        for _ in 0..500 {
            sum += a.recv_timeout(T).unwrap();
        }
        sender.join().unwrap();
        assert_eq!(sum, 2 * (0..500).sum::<u64>());
        drop(a);
        assert!(p.join().unwrap().success());
    });
}

// ---------------------------------------------------------------- EOF

#[test]
fn eof_when_the_peer_process_is_killed() {
    watchdog(60, || {
        let (a, b) = Pipe::<u8>::new().unwrap();
        let mut p = Process::new(sleep_forever, b).start().unwrap();
        assert!(matches!(
            a.recv_timeout(Duration::from_millis(100)),
            Err(RecvTimeoutError::Timeout)
        ));
        p.kill().unwrap();
        let t0 = Instant::now();
        assert!(matches!(a.recv_timeout(T), Err(RecvTimeoutError::Eof)));
        assert!(t0.elapsed() < Duration::from_secs(5));
        assert_eq!(p.join().unwrap(), ExitStatus::Signal(9));
        // sending to a dead peer is Disconnected, not a SIGPIPE
        assert!(matches!(a.send(&1), Err(SendError::Disconnected)));
    });
}

#[test]
fn eof_after_the_last_message_when_the_peer_returns() {
    watchdog(60, || {
        let (a, b) = Pipe::<()>::new().unwrap();
        let frames = vec![b"one".to_vec(), Vec::new(), b"three".to_vec()];
        let mut p = Process::new(send_bytes_then_exit, (b, frames.clone()))
            .start()
            .unwrap();
        assert!(p.join().unwrap().success());
        for f in &frames {
            assert_eq!(&a.recv_bytes(None).unwrap(), f);
        }
        assert!(matches!(a.recv_bytes(None), Err(RecvError::Eof)));
        assert!(matches!(a.recv(), Err(RecvError::Eof)));
        assert!(a.poll(Some(Duration::ZERO)).unwrap(), "EOF polls ready");
    });
}

// ---------------------------------------------------------------- raw frames

#[test]
fn recv_bytes_over_maxlength_is_too_long_then_unusable() {
    watchdog(60, || {
        let (a, b) = Pipe::<()>::new().unwrap();
        let frames = vec![vec![1u8; 1000], vec![2u8; 10]];
        let mut p = Process::new(send_bytes_then_exit, (b, frames))
            .start()
            .unwrap();
        assert!(matches!(a.recv_bytes(Some(999)), Err(RecvError::TooLong)));
        assert!(matches!(a.recv_bytes(None), Err(RecvError::Broken(_))));
        assert!(matches!(a.recv(), Err(RecvError::Broken(_))));
        assert!(p.join().unwrap().success());
    });
}

#[test]
fn recv_bytes_at_exactly_maxlength_is_fine() {
    watchdog(60, || {
        let (a, b) = Pipe::<()>::new().unwrap();
        let frames = vec![vec![1u8; 1000]];
        let mut p = Process::new(send_bytes_then_exit, (b, frames))
            .start()
            .unwrap();
        assert_eq!(a.recv_bytes(Some(1000)).unwrap().len(), 1000);
        assert!(p.join().unwrap().success());
    });
}

#[test]
fn buffer_too_short_keeps_the_frame_for_a_retry() {
    watchdog(60, || {
        let (a, b) = Pipe::<()>::new().unwrap();
        let big: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        let frames = vec![big.clone(), b"next".to_vec()];
        let mut p = Process::new(send_bytes_then_exit, (b, frames))
            .start()
            .unwrap();
        let mut small = [0u8; 100];
        match a.recv_bytes_into(&mut small) {
            Err(RecvError::BufferTooShort { needed }) => assert_eq!(needed, 5000),
            other => panic!("expected BufferTooShort, got {other:?}"),
        }
        // asking again with the same small buffer is the same answer, nothing lost
        assert!(matches!(
            a.recv_bytes_into(&mut small),
            Err(RecvError::BufferTooShort { needed: 5000 })
        ));
        let mut buf = vec![0u8; 8192];
        let n = a.recv_bytes_into(&mut buf).unwrap();
        assert_eq!(&buf[..n], &big[..]);
        let n = a.recv_bytes_into(&mut small).unwrap();
        assert_eq!(&small[..n], b"next");
        assert!(p.join().unwrap().success());
    });
}

#[test]
fn send_bytes_of_a_slice_sends_only_that_range() {
    watchdog(60, || {
        let (a, b) = Pipe::<()>::new().unwrap();
        let buf = b"0123456789";
        a.send_bytes(&buf[3..3 + 4]).unwrap();
        assert_eq!(b.recv_bytes(None).unwrap(), b"3456");
    });
}

// ---------------------------------------------------------------- bad input

#[test]
fn garbage_and_wrong_type_are_decode_errors_and_the_connection_survives() {
    watchdog(60, || {
        let (a, b) = Pipe::typed::<(), (u64, String)>().unwrap();
        let mut p = Process::new(send_garbage_then_value, b).start().unwrap();
        for _ in 0..2 {
            match a.recv_timeout(T) {
                Err(RecvTimeoutError::Decode(e)) => {
                    assert!(e.expected.contains("u64"), "{e}");
                    assert!(e.to_string().contains("String"), "{e}");
                }
                other => panic!("expected a decode error, got {other:?}"),
            }
        }
        assert_eq!(a.recv_timeout(T).unwrap(), (SMALL.0, SMALL.1.to_string()));
        assert!(p.join().unwrap().success());
    });
}

#[test]
fn bytes_that_are_not_frames_break_the_connection() {
    watchdog(60, || {
        let (a, b) = Pipe::<()>::new().unwrap();
        let mut p = Process::new(write_raw_bytes, b).start().unwrap();
        assert!(p.join().unwrap().success());
        match a.recv() {
            Err(RecvError::Broken(why)) => assert!(why.contains("magic"), "{why}"),
            other => panic!("expected Broken, got {other:?}"),
        }
        // it stays broken, and says why
        assert!(matches!(a.recv_bytes(None), Err(RecvError::Broken(_))));
        assert!(a.poll(Some(Duration::ZERO)).unwrap());
    });
}

#[derive(Debug, Serialize, Deserialize)]
enum MaybeBad {
    Good(u64),
    Bad(Refuses),
}

fn echo_maybe_bad(conn: Connection<MaybeBad, MaybeBad>) {
    while let Ok(MaybeBad::Good(x)) = conn.recv_timeout(T) {
        conn.send(&MaybeBad::Good(x + 1)).unwrap();
    }
}

#[test]
fn a_value_that_fails_to_encode_writes_nothing() {
    watchdog(60, || {
        let (a, b) = Pipe::<MaybeBad>::new().unwrap();
        let mut p = Process::new(echo_maybe_bad, b).start().unwrap();
        match a.send(&MaybeBad::Bad(Refuses)) {
            Err(SendError::Encode(e)) => assert!(e.0.contains("refuses"), "{e}"),
            other => panic!("expected an encode error, got {other:?}"),
        }
        a.send(&MaybeBad::Good(1)).unwrap();
        assert!(matches!(a.recv_timeout(T).unwrap(), MaybeBad::Good(2)));
        drop(a);
        assert!(p.join().unwrap().success());
    });
}

// ---------------------------------------------------------------- handles travel

#[test]
fn an_end_sent_through_another_pipe_after_start() {
    watchdog(60, || {
        let (control, child_control) = Pipe::typed::<Connection<String, String>, ()>().unwrap();
        let mut p = Process::new(use_received_end, child_control)
            .start()
            .unwrap();
        let (mine, theirs) = Pipe::<String>::new().unwrap();
        control.send(&theirs).unwrap();
        drop(theirs);
        for s in ["abc", "xyz"] {
            mine.send(&s.to_string()).unwrap();
            assert_eq!(mine.recv_timeout(T).unwrap(), s.to_uppercase());
        }
        drop(mine);
        assert_eq!(p.result().unwrap(), 2);
    });
}

#[test]
fn a_child_hands_an_end_back_to_the_parent() {
    watchdog(60, || {
        let (control, child_control) = Pipe::typed::<(), Connection<u8, u8>>().unwrap();
        let mut p = Process::new(hand_back_an_end, child_control)
            .start()
            .unwrap();
        let end = control.recv_timeout(T).unwrap();
        end.send(&41).unwrap();
        assert_eq!(end.recv_timeout(T).unwrap(), 42);
        assert!(p.join().unwrap().success());
        assert!(matches!(end.recv_timeout(T), Err(RecvTimeoutError::Eof)));
    });
}

/// A message type that serializes a shared handle to the very connection it is sent on.
struct SelfRef(Arc<Connection<SelfRef, SelfRef>>);

impl Serialize for SelfRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for SelfRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(SelfRef(Arc::new(Connection::deserialize(d)?)))
    }
}

#[test]
fn sending_a_connection_through_itself_does_not_deadlock() {
    watchdog(30, || {
        let (a, b) = Pipe::<SelfRef>::new().unwrap();
        let a = Arc::new(a);
        // each end of a socket pair is a socket of its own (its own inode)
        let inode = |c: &Connection<SelfRef, SelfRef>| {
            use std::os::unix::fs::MetadataExt;
            let fd = std::os::fd::AsFd::as_fd(c).try_clone_to_owned().unwrap();
            std::fs::File::from(fd).metadata().unwrap().ino()
        };
        assert_ne!(inode(&a), inode(&b));
        a.send(&SelfRef(a.clone())).unwrap();
        let SelfRef(a2) = b.recv_timeout(T).unwrap();
        // what arrived is another descriptor for a's socket (same inode), checked before
        // it is used: an end of any other socket fails here, not by a timeout below
        assert_eq!(inode(&a2), inode(&a), "the end that arrived is not a's");
        // and it works: what it sends arrives at b
        a2.send(&SelfRef(a2.clone())).unwrap();
        let SelfRef(a3) = b.recv_timeout(T).unwrap();
        assert_eq!(inode(&a3), inode(&a));
        a3.send(&SelfRef(a3.clone())).unwrap();
        let SelfRef(a4) = b.recv_timeout(T).unwrap();
        assert_eq!(inode(&a4), inode(&a));
    });
}

#[test]
fn a_closed_end_cannot_travel() {
    watchdog(30, || {
        let (control, _other) = Pipe::<Connection<u8, u8>>::new().unwrap();
        let (mut x, _y) = Pipe::<u8>::new().unwrap();
        x.close();
        assert!(matches!(control.send(&x), Err(SendError::Encode(_))));
        match Process::new(echo_closed_probe, x).start() {
            Err(procactor::SpawnError::Encode(e)) => {
                assert!(e.to_string().contains("closed"), "{e}")
            }
            Err(e) => panic!("expected an encoding error, got {e:?}"),
            Ok(_) => panic!("a closed end travelled to a child"),
        }
    });
}

fn echo_closed_probe(_c: Connection<u8, u8>) {}

// ---------------------------------------------------------------- poll / wait

#[test]
fn poll_times_out_then_sees_data() {
    watchdog(60, || {
        let (a, b) = Pipe::<u8>::new().unwrap();
        let mut p = Process::new(reply_after, (b, 300, 5)).start().unwrap();
        assert!(!a.poll(Some(Duration::ZERO)).unwrap());
        let t0 = Instant::now();
        assert!(!a.poll(Some(Duration::from_millis(50))).unwrap());
        let waited = t0.elapsed();
        assert!(waited >= Duration::from_millis(50), "{waited:?}");
        assert!(waited < Duration::from_secs(2), "{waited:?}");
        assert!(a.poll(None).unwrap());
        // a buffered message answers poll without consuming it
        assert!(a.poll(Some(Duration::ZERO)).unwrap());
        assert_eq!(a.recv_timeout(T).unwrap(), 5);
        assert!(!a.poll(Some(Duration::ZERO)).unwrap());
        a.send(&0).unwrap();
        assert!(p.join().unwrap().success());
    });
}

#[test]
fn recv_timeout_keeps_a_partial_message() {
    watchdog(60, || {
        let (a, b) = Pipe::<String>::new().unwrap();
        // half a frame: header announcing 9 bytes (the CBOR of an 8-byte string), then 5
        let mut raw = std::fs::File::from(a.as_fd().try_clone_to_owned().unwrap());
        let mut header = Vec::from(*b"PAF1");
        header.extend_from_slice(&0u32.to_le_bytes());
        header.extend_from_slice(&9u64.to_le_bytes());
        raw.write_all(&header).unwrap();
        raw.write_all(&[0x68, b'a', b'b', b'c', b'd']).unwrap();
        // the typed receive times out on the half frame and must keep what it read
        let r = b.recv_timeout(Duration::from_millis(30));
        assert!(matches!(r, Err(RecvTimeoutError::Timeout)), "{r:?}");
        assert!(!b.poll(Some(Duration::from_millis(20))).unwrap());
        raw.write_all(b"efgh").unwrap();
        assert_eq!(b.recv_timeout(T).unwrap(), "abcdefgh");
        // and the stream is still in step: a normal message follows
        a.send(&"next".to_string()).unwrap();
        assert_eq!(b.recv_timeout(T).unwrap(), "next");
    });
}

#[test]
fn wait_over_connections_and_processes() {
    watchdog(60, || {
        let (a1, b1) = Pipe::<u8>::new().unwrap();
        let (a2, b2) = Pipe::<u8>::new().unwrap();
        let mut p1 = Process::new(reply_after, (b1, 100, 1)).start().unwrap();
        let mut p2 = Process::new(reply_after, (b2, 600, 2)).start().unwrap();
        let mut sleeper = Process::new(nap, 1200).start().unwrap();

        assert!(wait(&[&a1, &a2, &sleeper], Some(Duration::from_millis(10)))
            .unwrap()
            .is_empty());
        assert_eq!(wait(&[&a1, &a2, &sleeper], Some(T)).unwrap(), vec![0]);
        assert_eq!(a1.recv().unwrap(), 1);
        assert_eq!(wait(&[&a1, &a2, &sleeper], Some(T)).unwrap(), vec![1]);
        // ready stays ready until received (the frame is buffered now)
        assert_eq!(wait(&[&a1, &a2], Some(Duration::ZERO)).unwrap(), vec![1]);
        assert_eq!(a2.recv().unwrap(), 2);
        assert_eq!(wait(&[&a1, &a2, &sleeper], Some(T)).unwrap(), vec![2]);
        assert!(sleeper.join().unwrap().success());
        // after a process is joined it stays ready
        assert_eq!(wait(&[&sleeper], None).unwrap(), vec![0]);

        // end of file makes a connection ready
        a1.send(&0).unwrap();
        a2.send(&0).unwrap();
        assert!(p1.join().unwrap().success());
        assert!(p2.join().unwrap().success());
        let objs: [&dyn Waitable; 4] = [&a1, &a2, &p1, &p2];
        assert_eq!(wait(&objs, Some(T)).unwrap(), vec![0, 1, 2, 3]);
        assert!(matches!(a1.recv(), Err(RecvError::Eof)));
        assert!(wait(&[], None).unwrap().is_empty());
    });
}

// ---------------------------------------------------------------- close / fileno

#[test]
fn close_on_both_sides() {
    watchdog(60, || {
        let (a, b) = Pipe::<u8>::new().unwrap();
        let mut p = Process::new(close_then_report, b).start().unwrap();
        assert_eq!(a.recv_timeout(T).unwrap(), 1);
        // the child closed its only copy: end of file while it is still running
        assert!(matches!(a.recv_timeout(T), Err(RecvTimeoutError::Eof)));
        assert_eq!(p.result().unwrap(), (true, true));

        let (mut c, d) = Pipe::<u8>::new().unwrap();
        assert!(!c.is_closed());
        c.close();
        c.close(); // idempotent
        assert!(c.is_closed());
        assert!(matches!(c.send(&1), Err(SendError::Closed)));
        assert!(matches!(c.recv(), Err(RecvError::Closed)));
        assert!(matches!(c.recv_bytes(None), Err(RecvError::Closed)));
        assert!(c.poll(Some(Duration::ZERO)).is_err());
        assert!(matches!(d.recv(), Err(RecvError::Eof)));
        // a closed connection is ready for wait (recv returns at once)
        assert_eq!(wait(&[&c], None).unwrap(), vec![0]);
    });
}

#[test]
fn fileno_is_a_live_descriptor() {
    let (a, b) = Pipe::<u8>::new().unwrap();
    assert!(a.as_raw_fd() >= 0);
    assert_ne!(a.as_raw_fd(), b.as_raw_fd());
    // writing through the descriptor is seen by the other end
    let dup = a.as_fd().try_clone_to_owned().unwrap();
    let mut payload = Vec::new();
    codec::encode(&9u8, &mut payload, None).unwrap();
    std::fs::File::from(dup)
        .write_all(&frame_bytes(&payload))
        .unwrap();
    assert_eq!(b.recv_timeout(T).unwrap(), 9);
}

// ---------------------------------------------------------------- properties

fn raw_writer<S, R>(c: &Connection<S, R>) -> std::fs::File {
    std::fs::File::from(c.as_fd().try_clone_to_owned().unwrap())
}

fn frame_bytes(payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::from(*b"PAF1");
    f.extend_from_slice(&0u32.to_le_bytes());
    f.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    f.extend_from_slice(payload);
    f
}

proptest! {
    #![proptest_config(common::proptest_config(48))]

    /// Raw payloads written in arbitrary pieces (with the receiver polling between
    /// pieces, so it sees partial frames) come out whole and in order.
    #[test]
    fn arbitrary_payloads_and_split_points_round_trip(
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..5000), 1..8),
        cuts in proptest::collection::vec(1usize..700, 1..30),
    ) {
        let (a, b) = Pipe::<()>::new().unwrap();
        let mut w = raw_writer(&a);
        let wire: Vec<u8> = payloads.iter().flat_map(|p| frame_bytes(p)).collect();
        let mut got = Vec::new();
        let (mut pos, mut ci) = (0, 0);
        while pos < wire.len() {
            let n = cuts[ci % cuts.len()].min(wire.len() - pos);
            ci += 1;
            w.write_all(&wire[pos..pos + n]).unwrap();
            pos += n;
            while b.poll(Some(Duration::ZERO)).unwrap() {
                got.push(b.recv_bytes(None).unwrap());
            }
        }
        prop_assert_eq!(got, payloads);
    }

    /// Typed values round-trip through send/recv, including through send_bytes of their
    /// encoding.
    #[test]
    fn typed_values_round_trip(v in proptest::collection::vec((any::<u64>(), ".{0,40}"), 0..50)) {
        let (a, b) = Pipe::<Vec<(u64, String)>>::new().unwrap();
        a.send(&v).unwrap();
        prop_assert_eq!(&b.recv_timeout(T).unwrap(), &v);
        let mut enc = Vec::new();
        codec::encode(&v, &mut enc, None).unwrap();
        a.send_bytes(&enc).unwrap();
        prop_assert_eq!(b.recv_timeout(T).unwrap(), v);
    }

    /// Arbitrary bytes on the wire never panic a receiver, whichever way it reads, and
    /// reading always ends (Eof, Broken, Decode errors, or values).
    #[test]
    fn arbitrary_garbage_never_panics(
        bytes in proptest::collection::vec(any::<u8>(), 0..400),
        framed in any::<bool>(),
        how in 0u8..3,
    ) {
        let (a, b) = Pipe::<(u64, String)>::new().unwrap();
        let mut w = raw_writer(&a);
        let wire = if framed { frame_bytes(&bytes) } else { bytes };
        w.write_all(&wire).unwrap();
        drop(w);
        drop(a);
        let mut buf = [0u8; 64];
        let mut ended = false;
        for _ in 0..20 {
            let r: Result<(), RecvError> = match how {
                0 => b.recv_timeout(T).map(drop).map_err(as_recv_error),
                1 => b.recv_bytes(Some(300)).map(drop),
                _ => b.recv_bytes_into(&mut buf).map(drop),
            };
            match r {
                Err(RecvError::Eof) | Err(RecvError::Broken(_)) | Err(RecvError::TooLong) => {
                    ended = true;
                    break;
                }
                Err(RecvError::BufferTooShort { needed }) => {
                    prop_assert!(needed > buf.len());
                    prop_assert!(b.recv_bytes(None).is_ok());
                }
                Err(RecvError::Decode(_)) | Ok(()) => {}
                Err(e) => prop_assert!(false, "unexpected error {e:?}"),
            }
        }
        prop_assert!(ended);
    }
}

/// `recv_timeout`'s error as `recv`'s, its `Timeout` as an i/o error (which the tests
/// that use this count as unexpected).
fn as_recv_error(e: RecvTimeoutError) -> RecvError {
    match e {
        RecvTimeoutError::Timeout => RecvError::Io(std::io::Error::other("timed out")),
        RecvTimeoutError::Eof => RecvError::Eof,
        RecvTimeoutError::TooLong => RecvError::TooLong,
        RecvTimeoutError::BufferTooShort { needed } => RecvError::BufferTooShort { needed },
        RecvTimeoutError::Decode(d) => RecvError::Decode(d),
        RecvTimeoutError::Broken(w) => RecvError::Broken(w),
        RecvTimeoutError::Closed => RecvError::Closed,
        RecvTimeoutError::Io(e) => RecvError::Io(e),
    }
}
