//! Kill points across processes: a child process (this test binary, re-executed) is
//! `SIGKILL`ed at a named step of put, get, stream or lock ([`crate::killpoint`]); the
//! parent, the survivor, then checks that every message it gets is intact, none is
//! duplicated, the order holds, at most the dead process's own message is lost, nothing
//! hangs and the ring goes on working. One more scenario `SIGSTOP`s a writer in the
//! middle of a large message.

use super::*;
use rustix::fd::AsRawFd;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

const ROLE: &str = "PROCACTOR_KT_ROLE";
const RING: &str = "PROCACTOR_KT_RING";
const N: u64 = 24;
/// Message lengths cycle through these: small, medium, streamed (in a 256-byte ring),
/// tiny.
const LENS: [usize; 4] = [10, 100, 700, 30];

fn msg(seq: u64) -> Vec<u8> {
    let len = LENS[(seq % 4) as usize];
    let mut m = seq.to_le_bytes().to_vec();
    m.extend((0..len).map(|i| (i as u64 ^ seq.wrapping_mul(77)) as u8));
    m
}

/// The sequence number of an intact message (panics on a torn or garbled one).
fn seq_of(m: &[u8]) -> u64 {
    assert!(m.len() >= 8, "torn message of {} bytes", m.len());
    let seq = u64::from_le_bytes(m[..8].try_into().unwrap());
    assert_eq!(m, &msg(seq)[..], "torn or garbled message {seq}");
    seq
}

fn ms(m: u64) -> Option<Instant> {
    Some(Instant::now() + Duration::from_millis(m))
}

/// The child's side: not a test of its own (ignored; does nothing without the
/// environment the parent sets).
#[test]
#[ignore = "the child process of the kill-point tests"]
fn child_main() {
    let (Ok(role), Ok(path)) = (std::env::var(ROLE), std::env::var(RING)) else {
        return;
    };
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let r = Ring::open(OwnedFd::from(f)).unwrap();
    match role.as_str() {
        "put" => {
            for seq in 0..N {
                r.push(&msg(seq), ms(20_000)).unwrap();
            }
        }
        "get" => {
            let mut out = Vec::new();
            for _ in 0..N {
                r.pop(&mut out, ms(20_000), false).unwrap();
                println!("SEQ {}", seq_of(&out));
            }
        }
        "put_big" => {
            r.push(&vec![5u8; 2560], ms(60_000)).unwrap();
        }
        _ => panic!("unknown role {role}"),
    }
}

fn spawn_child(r: &Ring, role: &str, kill_at: Option<&str>) -> Child {
    let path = format!("/proc/{}/fd/{}", std::process::id(), r.fd().as_raw_fd());
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([
        "--exact",
        "ring::kill_tests::child_main",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(ROLE, role)
    .env(RING, path)
    .env_remove(crate::killpoint::ENV)
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    if let Some(k) = kill_at {
        c.env(crate::killpoint::ENV, k);
    }
    c.spawn().unwrap()
}

/// Waits for the child (at most 60 s: a hang fails the test) and checks it was killed
/// at its kill point (not finished, not crashed otherwise).
fn killed(mut c: Child, point: &str) -> String {
    let end = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = c.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > end {
            let _ = c.kill();
            let _ = c.wait();
            panic!("child with kill point {point} hung");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(9),
        "kill point {point} not reached ({status})"
    );
    let mut s = String::new();
    c.stdout.take().unwrap().read_to_string(&mut s).unwrap();
    s
}

/// Takes everything left (the survivor's side), until `done` and nothing came for a
/// while; returns the sequence numbers, checking each message is intact.
fn drain_until(r: &Ring, done: impl Fn() -> bool) -> Vec<u64> {
    let mut got = Vec::new();
    let mut out = Vec::new();
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < end, "the survivor's gets hung");
        match r.pop(&mut out, ms(100), false) {
            Ok(()) => got.push(seq_of(&out)),
            Err(PopError::Empty) if done() => {
                if r.pop(&mut out, ms(200), false).is_ok() {
                    got.push(seq_of(&out));
                    continue;
                }
                return got;
            }
            Err(PopError::Empty) => {}
            Err(e) => panic!("{e:?}"),
        }
    }
}

/// The ring still works both ways after the recovery.
fn still_works(r: &Ring) {
    r.push(&msg(1000), ms(5000)).unwrap();
    let mut out = Vec::new();
    r.pop(&mut out, ms(5000), false).unwrap();
    assert_eq!(seq_of(&out), 1000);
    assert!(r.is_empty());
    assert!(!r.is_broken());
}

fn writer_killed(r: Ring, point: &str, read_while_running: bool) {
    let child = spawn_child(&r, "put", Some(point));
    let pid = child.id();
    let got = if read_while_running {
        // streamed messages need a reader while the writer runs
        let alive = move || crate::os::process_alive(pid);
        let got = drain_until(&r, move || !alive());
        let _ = killed(child, point);
        let mut rest = drain_until(&r, || true);
        let mut all = got;
        all.append(&mut rest);
        all
    } else {
        let _ = killed(child, point);
        drain_until(&r, || true)
    };
    // a prefix, in order, nothing twice, nothing torn (checked by `seq_of`)
    let expect: Vec<u64> = (0..got.len() as u64).collect();
    assert_eq!(got, expect, "writer killed at {point}");
    assert!(
        (got.len() as u64) < N,
        "{point}: the writer died before its last put"
    );
    still_works(&r);
}

#[test]
fn a_writer_killed_at_any_step_leaves_an_intact_prefix_and_a_working_ring() {
    for point in [
        "ring.lock.writer_acquired@1",
        "ring.lock.writer_acquired@4",
        "ring.put.after_header@1",
        "ring.put.after_header@3",
        "ring.put.written@2",
        "ring.put.committed@2",
        "ring.put.stream.piece_written@1",
        "ring.put.stream.piece_written@3",
        "ring.put.stream.piece_committed@1",
        "ring.put.stream.piece_committed@4",
        "ring.put.stream.last_piece_written@1",
        "w_apply: overflow position stored, tail not yet@5",
    ] {
        writer_killed(Ring::create(256, 0).unwrap(), point, true);
    }
    // an unbounded ring, read only after the writer died: it switches to the overflow
    // area on its own
    for point in [
        "link: written, not committed@1",
        "link: committed, lock held@1",
        "overflow: written, not committed@2",
        "ring.put.committed@2",
    ] {
        writer_killed(Ring::create_with(256, 0, 1 << 16).unwrap(), point, false);
    }
}

/// `write_first`: every message is put before the reader starts (an unbounded ring then
/// holds most of them in its overflow area, whatever the scheduling); otherwise the
/// writer runs beside the reader.
fn reader_killed(r: Ring, point: &str, write_first: bool) {
    let r = Arc::new(r);
    let w = r.clone();
    let write = move || {
        for seq in 0..N {
            w.push(&msg(seq), ms(30_000)).unwrap();
        }
    };
    let writer = if write_first {
        write();
        std::thread::spawn(|| {})
    } else {
        std::thread::spawn(write)
    };
    let child = spawn_child(&r, "get", Some(point));
    let taken_by_child: Vec<u64> = killed(child, point)
        .lines()
        .filter_map(|l| Some(l[l.find("SEQ ")? + 4..].trim().parse().unwrap()))
        .collect();
    let rest = drain_until(&r, || writer.is_finished());
    writer.join().unwrap();
    // each side in order, nothing twice, at most the one message the reader was taking
    // lost
    for side in [&taken_by_child, &rest] {
        assert!(side.windows(2).all(|w| w[0] < w[1]), "{point}: {side:?}");
    }
    let mut all = taken_by_child.clone();
    all.extend(&rest);
    let mut sorted = all.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), all.len(), "{point}: duplicated: {all:?}");
    assert!(
        all.len() as u64 >= N - 1,
        "{point}: more than one message lost: {taken_by_child:?} {rest:?}"
    );
    assert!(
        taken_by_child.last() < rest.first() || rest.is_empty(),
        "{point}"
    );
    still_works(&r);
}

#[test]
fn a_reader_killed_at_any_step_loses_at_most_its_message_and_duplicates_nothing() {
    for point in [
        "ring.lock.reader_acquired@2",
        "ring.get.before_copy@2",
        "ring.get.copied@2",
        "ring.get.committed@3",
        "ring.get.stream.before_piece_copy@2",
        "ring.get.stream.piece_copied@1",
        "ring.get.stream.piece_committed@3",
        "r_apply: overflow position stored, head not yet@4",
    ] {
        reader_killed(Ring::create(256, 0).unwrap(), point, false);
    }
    for point in [
        "reader link: before commit@1",
        "reader overflow: copied, before commit@1",
    ] {
        // a writer far ahead of the reader: the ring overflows (every message put
        // before the reader starts: with the writer beside it, a reader scheduled as
        // fast as the writer never reached the overflow area under load 12)
        let r = Ring::create_with(256, 0, 1 << 16).unwrap();
        reader_killed(r, point, true);
    }
}

/// A writer `SIGSTOP`ped mid-message, a reader giving up at its deadline; then the
/// writer is resumed (`SIGCONT`: the message it was putting is delivered whole to the
/// next reader, and its put succeeds) or killed (the message is dropped).
fn writer_stopped_mid_message(resume: bool) {
    let r = Ring::create(256, 0).unwrap();
    let mut child = spawn_child(&r, "put_big", None);
    // the writer fills the ring with the first pieces and waits for room, mid-message
    let end = Instant::now() + Duration::from_secs(30);
    while r.u64(OFF_WPARTIAL).load(Ordering::Acquire) == 0 {
        assert!(Instant::now() < end, "the writer never started streaming");
        std::thread::sleep(Duration::from_millis(1));
    }
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::STOP).unwrap();
    // the signal is delivered asynchronously: wait until the child really is stopped
    // (state `T`), so that it cannot stream on while we read
    let stat = format!("/proc/{}/stat", child.id());
    let stopped = || {
        let s = std::fs::read_to_string(&stat).unwrap_or_default();
        s.rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('T'))
    };
    while !stopped() {
        assert!(Instant::now() < end, "the writer did not stop");
        std::thread::sleep(Duration::from_millis(1));
    }
    let start = Instant::now();
    let mut out = Vec::new();
    assert_eq!(
        r.pop_timeout(&mut out, Duration::from_millis(300), false),
        Err(PopError::Empty)
    );
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(out.is_empty(), "nothing of the half message is delivered");
    if resume {
        // resumed: the writer sees that the reader gave up, aborts the stream and
        // streams the message again; the next reader drops the rest of the first try
        // and gets it whole
        rustix::process::kill_process(pid, rustix::process::Signal::CONT).unwrap();
        r.pop_timeout(&mut out, Duration::from_secs(30), false)
            .unwrap();
        assert_eq!(out, vec![5u8; 2560]);
        let end = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < end, "the writer did not finish");
            std::thread::sleep(Duration::from_millis(5));
        };
        assert!(status.success(), "the writer's put failed: {status}");
        assert_eq!(
            r.pop_timeout(&mut out, Duration::from_millis(50), false),
            Err(PopError::Empty),
            "delivered twice"
        );
    } else {
        // killed while stopped: the queue works again
        child.kill().unwrap();
        child.wait().unwrap();
    }
    still_works(&r);
}

#[test]
fn a_writer_stopped_mid_message_does_not_hold_a_reader_past_its_deadline() {
    writer_stopped_mid_message(false);
}

#[test]
fn a_writer_stopped_mid_message_and_resumed_delivers_its_message_whole() {
    writer_stopped_mid_message(true);
}
