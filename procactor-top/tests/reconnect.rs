//! `procactor-top`'s [`Source`] coming back after its kept connection breaks: once, not
//! in a loop.
//!
//! The program watched is this test process (a test binary of its own, so that what it
//! makes observable is only what this test makes): first its real observe server is
//! restarted between two refreshes (its only named queue dropped and made again), then
//! a fake server takes the socket's name and breaks connections on purpose, counting
//! how many it is asked for.

procactor::test_support!();

use procactor::observe;
use procactor_top::Source;
use std::io::{Read, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(5);

fn named_queue() -> procactor::Queue<u8> {
    procactor::Queue::<u8>::builder()
        .name("reconnect-q")
        .build()
        .unwrap()
}

fn addr() -> SocketAddr {
    SocketAddr::from_abstract_name(observe::socket_name(std::process::id()).as_bytes()).unwrap()
}

/// One request's bytes read off `s` (`false`: the peer closed or nothing came in time).
fn read_request(s: &mut UnixStream) -> bool {
    let mut got = [0u8; 9];
    s.read_exact(&mut got).is_ok() && &got == b"snapshot\n"
}

/// The next connection, waited for at most `T` (the listener is non-blocking).
fn accept_within(l: &UnixListener) -> UnixStream {
    let t0 = Instant::now();
    loop {
        match l.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(T)).unwrap();
                s.set_write_timeout(Some(T)).unwrap();
                return s;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(t0.elapsed() < T, "no connection within {T:?}");
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

#[test]
fn a_broken_connection_is_reconnected_once_and_a_second_failure_is_reported() {
    let me = std::process::id();
    let t0 = Instant::now();

    // 1. the real server restarts between two refreshes
    let q = named_queue();
    let mut src = Source::new(me);
    let s = src.snapshot(T).unwrap();
    assert!(s.queues.iter().any(|q| q.name == "reconnect-q"), "{s:?}");
    assert!(src.connected());
    // a reply as the server writes it, kept for the fake server below
    let reply = {
        let mut c = UnixStream::connect_addr(&addr()).unwrap();
        c.set_read_timeout(Some(T)).unwrap();
        c.write_all(b"snapshot\n").unwrap();
        let mut len = [0u8; 4];
        c.read_exact(&mut len).unwrap();
        let mut body = vec![0u8; u32::from_le_bytes(len) as usize];
        c.read_exact(&mut body).unwrap();
        [&len[..], &body].concat()
    };
    // the last observable thing gone: the server thread has ended, closing the kept
    // connection; a new one starts with the next queue
    drop(q);
    assert!(!observe::serving());
    let q = named_queue();
    assert!(observe::serving());
    assert!(src.connected(), "the broken connection is still kept");
    let s = src
        .snapshot(T)
        .expect("the refresh after the restart, through one reconnect");
    assert!(s.queues.iter().any(|q| q.name == "reconnect-q"), "{s:?}");
    assert!(src.connected());
    // gone for good: the kept connection fails, and so does the one reconnect
    drop(q);
    let e = src.snapshot(T).unwrap_err();
    assert!(
        e.contains(&format!("no observe server for pid {me}")),
        "{e}"
    );
    assert!(!src.connected());

    // 2. a fake server on the name (free now): it answers each connection once and
    // closes it, and closes the third one unanswered; it reports each connection
    let l = UnixListener::bind_addr(&addr()).unwrap();
    l.set_nonblocking(true).unwrap();
    let (conns, seen) = mpsc::channel::<u32>();
    let fake = std::thread::spawn(move || {
        for n in 1..=3u32 {
            let mut c = accept_within(&l);
            conns.send(n).unwrap();
            if n < 3 {
                assert!(read_request(&mut c), "connection {n}: no request");
                c.write_all(&reply).unwrap();
            }
            // (closed: a second request on it gets no answer)
        }
        // no fourth connection is asked for while the test looks
        l
    });
    let mut src = Source::new(me);
    let s = src.snapshot(T).expect("the first refresh");
    assert_eq!(s.pid, me);
    assert_eq!(seen.recv_timeout(T), Ok(1));
    // the kept connection is closed by the server: the next refresh reconnects, once
    let s = src
        .snapshot(T)
        .expect("the second refresh, through one reconnect");
    assert!(s.queues.iter().any(|q| q.name == "reconnect-q"), "{s:?}");
    assert_eq!(seen.recv_timeout(T), Ok(2));
    assert!(src.connected());
    // broken again, and the reconnect is refused: reported, no third try
    let e = src.snapshot(T).unwrap_err();
    assert!(e.contains("refused to be observed"), "{e}");
    assert!(!src.connected());
    assert_eq!(seen.recv_timeout(T), Ok(3));
    let l = fake.join().unwrap();
    match l.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("a connection after the reported failure: {other:?}"),
    }
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
}
