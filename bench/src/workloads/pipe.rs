//! Pipe workloads (issue 2): a small-message round trip and 1 MiB byte frames. The
//! Python twins are in `bench/mp_bench.py`.

use crate::workloads::queue::Small;
use procactor::{Connection, Pipe, Process};
use std::time::{Duration, Instant};

fn echo(conn: Connection<Small, Small>) {
    while let Ok(msg) = conn.recv() {
        if conn.send(&msg).is_err() {
            break;
        }
    }
}

/// The parent sends an `(u64, 32-byte String)` tuple through a duplex Pipe, a child
/// sends it back; `n` round trips after 1000 untimed ones. Returns microseconds per
/// round trip.
pub(crate) fn pipe_round_trip_small(n: u64) -> f64 {
    let (here, there) = Pipe::<Small>::new().expect("pipe");
    let mut p = Process::new(echo, there).start().expect("start");
    let msg: Small = (1, "abcdefghijklmnopqrstuvwxyz012345".to_string());
    let round = || {
        here.send(&msg).expect("send");
        let back = here.recv_timeout(Duration::from_secs(60)).expect("recv");
        debug_assert_eq!(back, msg);
    };
    for _ in 0..1000 {
        round();
    }
    let t0 = Instant::now();
    for _ in 0..n {
        round();
    }
    let dt = t0.elapsed().as_secs_f64();
    drop(here);
    p.join().expect("join");
    dt * 1e6 / n as f64
}

fn send_frames((conn, size, reps): (Connection<(), ()>, usize, u32)) {
    let frame = vec![0x5au8; size];
    for _ in 0..reps {
        conn.send_bytes(&frame).expect("send_bytes");
    }
}

/// A child sends `reps` byte frames of 1 MiB through a one-way Pipe; the parent
/// receives each into one reused buffer with `recv_bytes_into`. Returns GB/s (10^9
/// payload bytes per second), timed from the first frame's arrival.
pub(crate) fn pipe_bulk_1mib(reps: u32) -> f64 {
    const SIZE: usize = 1 << 20;
    let (rx, tx) = Pipe::<()>::oneway().expect("pipe");
    let mut p = Process::new(send_frames, (tx, SIZE, reps + 1))
        .start()
        .expect("start");
    let mut buf = vec![0u8; SIZE];
    // the first frame is untimed: it includes the child's start
    let got = rx.recv_bytes_into(&mut buf).expect("recv");
    assert_eq!(got, SIZE);
    let t0 = Instant::now();
    for _ in 0..reps {
        let got = rx.recv_bytes_into(&mut buf).expect("recv");
        assert_eq!(got, SIZE);
    }
    let dt = t0.elapsed().as_secs_f64();
    p.join().expect("join");
    (SIZE as f64 * f64::from(reps)) / dt / 1e9
}
