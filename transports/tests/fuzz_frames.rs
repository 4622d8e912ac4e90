//! Byte fuzzing of `FrameReader` with an allocation meter: random and mutated bytes from
//! a peer never panic the reader and never make it allocate more than its read buffer
//! plus what the caller's frame limit allows, whatever length a header announces.
//! *Without* a limit (`max_len: None`) the reader allocates at most a small multiple of
//! the bytes that really arrived (a header announcing a huge payload does not make it
//! preallocate that payload).

use procactor_transports::frame::{header, FrameReader, Wait, HEADER_LEN};
use procactor_transports::testing::{peak_during, AllocMeter};
use proptest::prelude::*;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;

#[global_allocator]
static METER: AllocMeter = AllocMeter;

/// The reader's own buffer: it reads in steps of 64 KiB and doubles a full buffer.
const READ_BUFFER: usize = 256 << 10;
const LIMIT: u64 = 4096;

fn frames(payloads: &[Vec<u8>]) -> Vec<u8> {
    let mut b = Vec::new();
    for p in payloads {
        b.extend_from_slice(&header(p.len(), 0));
        b.extend_from_slice(p);
    }
    b
}

/// Feeds `bytes` to a reader (then EOF) and reads frames until an error; returns the
/// peak allocation.
fn read_all(bytes: &[u8]) -> usize {
    read_all_within(bytes, Some(LIMIT))
}

/// As `read_all`, with the given frame limit (`None`: none).
fn read_all_within(bytes: &[u8], limit: Option<u64>) -> usize {
    let (mut a, b) = UnixStream::pair().unwrap();
    a.write_all(bytes).unwrap();
    drop(a);
    peak_during(|| {
        let mut r = FrameReader::new();
        for _ in 0..64 {
            match r.fill(b.as_fd(), Wait::No, limit) {
                Ok(info) => {
                    let max = limit.unwrap_or(u64::MAX);
                    assert!(info.len as u64 <= max);
                    assert!(r.payload().len() as u64 <= max);
                    let _ = r.consume();
                }
                Err(_) => break,
            }
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic_nor_overallocate(
        bytes in proptest::collection::vec(any::<u8>(), 0..3000),
    ) {
        let peak = read_all(&bytes);
        prop_assert!(peak <= READ_BUFFER + 2 * bytes.len(), "{} for {} bytes", peak, bytes.len());
    }

    /// Valid frames with some bytes changed (lengths, counts, magic, payload): headers
    /// announcing up to 2^64 bytes included.
    #[test]
    fn mutated_frames_never_panic_nor_overallocate(
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..600), 1..6),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        huge in proptest::option::of((0usize..6, any::<u64>())),
    ) {
        let mut bytes = frames(&payloads);
        for (i, b) in flips {
            let at = i.index(bytes.len());
            bytes[at] = b;
        }
        if let Some((k, len)) = huge {
            // a header that lies about its length
            let _ = k;
            let at = 8;
            bytes[at..at + 8].copy_from_slice(&len.to_le_bytes());
        }
        let peak = read_all(&bytes);
        prop_assert!(peak <= READ_BUFFER + 2 * bytes.len(), "{} for {} bytes", peak, bytes.len());
        let peak = read_all_within(&bytes, None);
        prop_assert!(peak <= READ_BUFFER + 4 * bytes.len(), "no limit: {} for {} bytes", peak, bytes.len());
    }
}

/// Without a limit, a header announcing a large payload costs the reader a small
/// multiple of the bytes that came, not the announced length (it used to preallocate up
/// to 64 MiB for 16 bytes).
#[test]
fn without_a_limit_a_lying_header_costs_only_what_arrived() {
    for announced in [1u64 << 20, 64 << 20, 1 << 40] {
        for sent in [0usize, 100, 60 << 10] {
            let mut b = header(0, 0).to_vec();
            b[8..16].copy_from_slice(&announced.to_le_bytes());
            b.extend(std::iter::repeat_n(7u8, sent));
            let peak = read_all_within(&b, None);
            assert!(
                peak <= READ_BUFFER + 4 * b.len(),
                "{peak} bytes allocated for {} bytes announcing {announced}",
                b.len()
            );
        }
    }
}

/// A real frame larger than the preallocation still arrives whole without a limit.
#[test]
fn without_a_limit_a_large_real_frame_still_arrives() {
    let payload: Vec<u8> = (0..(3 << 20)).map(|i| (i % 251) as u8).collect();
    let (mut a, b) = UnixStream::pair().unwrap();
    let p = payload.clone();
    let writer = std::thread::spawn(move || {
        a.write_all(&header(p.len(), 0)).unwrap();
        a.write_all(&p).unwrap();
    });
    let mut r = FrameReader::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let info = r.fill(b.as_fd(), Wait::Until(deadline), None).unwrap();
    assert_eq!(info.len, payload.len());
    assert!(r.payload() == &payload[..]);
    writer.join().unwrap();
}

#[test]
fn a_header_announcing_an_exabyte_allocates_nothing_for_it() {
    let mut h = header(0, 0).to_vec();
    h[8..16].copy_from_slice(&(1u64 << 60).to_le_bytes());
    assert_eq!(h.len(), HEADER_LEN);
    let peak = read_all(&h);
    assert!(peak <= READ_BUFFER, "{peak}");
}

/// The meter works (so the bounds above measure something).
#[test]
fn the_meter_sees_this_threads_allocations() {
    let peak = peak_during(|| {
        let v = vec![1u8; 1 << 20];
        std::hint::black_box(&v);
    });
    assert!(peak >= 1 << 20, "{peak}");
}
