//! Unit tests of the pool's arithmetic and decoding.

use super::async_result::decode_chunk;
use super::state::{
    default_chunksize, window_for, Cost, MAX_WINDOW, SUBMIT_WINDOW_BYTES, SUBMIT_WINDOW_CHUNKS,
    SUBMIT_WINDOW_FDS,
};
use super::task_error::TaskError;
use super::wire::ChunkOut;
use crate::{codec, Bytes, ExitStatus};
use std::time::Duration;

#[test]
fn default_chunks_are_pythons() {
    // Python: chunksize, extra = divmod(len, 4 * processes); if extra: chunksize += 1
    assert_eq!(default_chunksize(0, 2), 1);
    assert_eq!(default_chunksize(10, 4), 1);
    assert_eq!(default_chunksize(200_000, 2), 25_000);
    assert_eq!(default_chunksize(200_001, 2), 25_001);
    assert_eq!(default_chunksize(17, 1), 5);
}

#[test]
fn the_window_queues_about_a_millisecond_of_work() {
    assert_eq!(window_for(Duration::from_millis(5)), 1);
    assert_eq!(window_for(Duration::from_micros(250)), 4);
    assert_eq!(window_for(Duration::from_nanos(1)), MAX_WINDOW);
    assert_eq!(window_for(Duration::ZERO), MAX_WINDOW);
}

#[test]
fn the_submission_window_bounds_chunks_bytes_and_descriptors() {
    let one = |bytes, fds| Cost {
        chunks: 1,
        bytes,
        fds,
    };
    let mut w = Cost::default();
    // an empty window takes any one chunk, however large
    assert!(w.admits(one(SUBMIT_WINDOW_BYTES * 2, SUBMIT_WINDOW_FDS * 2)));
    w.add(one(SUBMIT_WINDOW_BYTES - 10, 0));
    assert!(w.admits(one(10, 0)));
    assert!(!w.admits(one(11, 0)));
    let mut f = Cost::default();
    f.add(one(0, SUBMIT_WINDOW_FDS));
    assert!(!f.admits(one(0, 1)));
    assert!(f.admits(one(100, 0)));
    let mut c = Cost {
        chunks: SUBMIT_WINDOW_CHUNKS,
        bytes: 0,
        fds: 0,
    };
    assert!(!c.admits(one(0, 0)));
    c.sub(one(0, 0));
    assert!(c.admits(one(0, 0)));
    // taking back more than was added never wraps
    c.sub(one(5, 5));
    assert_eq!((c.bytes, c.fds), (0, 0));
}

#[test]
fn chunk_outcomes_decode_per_item() {
    let mut buf = Vec::new();
    let all_ok: ChunkOut<u32> = Ok(vec![1, 2]);
    codec::encode(&all_ok, &mut buf, None).unwrap();
    let v = decode_chunk::<u32>(&Ok(Bytes::from(buf.clone())), 2);
    assert_eq!(v, [Ok(1), Ok(2)]);
    buf.clear();
    let mixed: ChunkOut<u32> = Err(vec![Ok(1), Err("boom".into())]);
    codec::encode(&mixed, &mut buf, None).unwrap();
    let v = decode_chunk::<u32>(&Ok(Bytes::from(buf)), 2);
    assert_eq!(
        v[1],
        Err(TaskError::Panicked {
            message: "boom".into()
        })
    );
    // a whole-chunk failure repeats for each item; garbage is a decode failure
    let v = decode_chunk::<u32>(&Err(TaskError::WorkerDied(ExitStatus::Signal(9))), 3);
    assert_eq!(v.len(), 3);
    let v = decode_chunk::<u32>(&Ok(Bytes::from(vec![0xff, 0x00])), 2);
    assert!(matches!(v[0], Err(TaskError::Failed(_))));
}
