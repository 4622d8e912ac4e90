//! Seed 002, "管道Pipe": a tour of the Connection API — duplex pipes, `send`/`recv`,
//! `poll` with and without a timeout, `send_bytes`/`recv_bytes`/`recv_bytes_into`,
//! end of file (`EOFError`), `BufferTooShort`, `close`, `fileno`, and one-way pipes.
//!
//! ```text
//! $ cargo run --example pipe_api
//! duplex: parent sent 3, child answered 9
//! duplex: parent sent 12, child answered 144
//! child handled 2 messages, then saw EOF
//! fileno: 3 and 4
//! poll(0) before anything was sent: false
//! poll(50 ms): false after 50 ms
//! poll(None) waits for data: true after 201 ms
//! recv_bytes: "hello, bytes"
//! recv_bytes_into an 8-byte buffer: BufferTooShort (needs 32 bytes)
//! recv_bytes_into a 64-byte buffer: 32 bytes, the message was kept
//! recv_bytes(maxlength=100) of 1000 bytes: TooLong
//! send after close: Closed
//! recv after close: Closed
//! other end receives: "last words"
//! other end then gets: Eof (Python's EOFError)
//! one-way: received 42
//! one-way: the receive end cannot send
//! ```

use procactor::{Connection, Pipe, Process, RecvError, SendError};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// Squares what it receives until the other end closes, then reports how many.
fn squarer(conn: Connection<u64, u64>) -> usize {
    let mut n = 0;
    loop {
        match conn.recv() {
            Ok(x) => {
                conn.send(&(x * x)).expect("send");
                n += 1;
            }
            Err(RecvError::Eof) => return n, // Python: EOFError
            Err(e) => panic!("unexpected: {e}"),
        }
    }
}

/// Sends raw byte messages after a pause.
fn byte_sender(conn: Connection<(), ()>) {
    std::thread::sleep(Duration::from_millis(200));
    let buf = b"__hello, bytes__";
    conn.send_bytes(&buf[2..14]).expect("send_bytes"); // Python: send_bytes(buf, 2, 12)
    conn.send_bytes(&[7u8; 32]).expect("send_bytes");
    conn.send_bytes(&[1u8; 1000]).expect("send_bytes");
}

#[procactor::main]
fn main() {
    // --- duplex: both ends send and receive
    let (conn1, conn2) = Pipe::<u64>::new().expect("pipe");
    let mut child = Process::new(squarer, conn2).start().expect("start");
    conn1.send(&3).expect("send");
    println!(
        "duplex: parent sent 3, child answered {}",
        conn1.recv().expect("recv")
    );
    conn1.send(&12).expect("send");
    println!(
        "duplex: parent sent 12, child answered {}",
        conn1.recv().expect("recv")
    );
    drop(conn1); // the child's recv now sees end of file
    println!(
        "child handled {} messages, then saw EOF",
        child.result().expect("result")
    );

    // --- poll, and the raw-bytes API
    let (a, b) = Pipe::<()>::new().expect("pipe");
    println!("fileno: {} and {}", a.as_raw_fd(), b.as_raw_fd());
    let mut sender = Process::new(byte_sender, b).start().expect("start");
    println!(
        "poll(0) before anything was sent: {}",
        a.poll(Some(Duration::ZERO)).unwrap()
    );
    let t0 = Instant::now();
    let ready = a.poll(Some(Duration::from_millis(50))).unwrap();
    println!("poll(50 ms): {ready} after {} ms", t0.elapsed().as_millis());
    let ready = a.poll(None).unwrap();
    println!(
        "poll(None) waits for data: {ready} after {} ms",
        t0.elapsed().as_millis()
    );

    let msg = a.recv_bytes(None).expect("recv_bytes");
    println!("recv_bytes: {:?}", String::from_utf8_lossy(&msg));

    let mut small = [0u8; 8];
    match a.recv_bytes_into(&mut small) {
        Err(RecvError::BufferTooShort { needed }) => {
            println!("recv_bytes_into an 8-byte buffer: BufferTooShort (needs {needed} bytes)")
        }
        other => panic!("expected BufferTooShort, got {other:?}"),
    }
    let mut big = [0u8; 64];
    let n = a.recv_bytes_into(&mut big).expect("recv_bytes_into");
    println!("recv_bytes_into a 64-byte buffer: {n} bytes, the message was kept");

    match a.recv_bytes(Some(100)) {
        Err(RecvError::TooLong) => println!("recv_bytes(maxlength=100) of 1000 bytes: TooLong"),
        other => panic!("expected TooLong, got {other:?}"),
    }
    sender.join().expect("join");

    // --- EOF and close
    let (mut c, d) = Pipe::<String>::new().expect("pipe");
    c.send(&"last words".to_string()).expect("send");
    c.close();
    println!(
        "send after close: {:?}",
        c.send(&"x".to_string()).unwrap_err()
    );
    println!("recv after close: {:?}", c.recv().unwrap_err());
    println!("other end receives: {:?}", d.recv().expect("recv"));
    match d.recv() {
        Err(RecvError::Eof) => println!("other end then gets: Eof (Python's EOFError)"),
        other => panic!("expected Eof, got {other:?}"),
    }

    // --- one-way pipe: Pipe(duplex=False)
    let (rx, tx) = Pipe::<u32>::oneway().expect("pipe");
    tx.send(&42).expect("send");
    println!("one-way: received {}", rx.recv().expect("recv"));
    match rx.send(&()) {
        Err(SendError::Disconnected) => println!("one-way: the receive end cannot send"),
        other => panic!("expected Disconnected, got {other:?}"),
    }
}
