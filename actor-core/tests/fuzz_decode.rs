//! Byte fuzzing of the CBOR decoder (`codec::decode`: the slice fast path, and ciborium
//! when it gives up) with an allocation meter: random and mutated bytes never panic and
//! never make it allocate more than a small multiple of the input's size, whatever
//! lengths the bytes declare.

use procactor_core::codec::decode;
use procactor_transports::testing::{peak_during, AllocMeter};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
#[global_allocator]
static METER: AllocMeter = AllocMeter;

#[derive(Debug, Serialize, Deserialize, PartialEq)]
enum Shape {
    Unit,
    Tuple(u8, String),
    Struct { a: Vec<u64>, b: Option<Box<Shape>> },
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Item {
    id: u64,
    name: String,
    data: Vec<u8>,
    tags: BTreeMap<String, Vec<i32>>,
    shape: Shape,
}

/// What any decode may allocate: ciborium's 4 KiB scratch buffer and error messages,
/// plus a multiple of the input (a 1-byte CBOR integer becomes an 8-byte `u64`; vectors
/// grow by doubling; map nodes carry overhead). A declared length the bytes cannot hold
/// is refused before serde preallocates for it (it used to preallocate up to 1 MiB per
/// declared collection); the fast decoder alone allocates nothing for a declared length.
fn allowed(input: usize) -> usize {
    16 * 1024 + 64 * input
}

fn decode_all(bytes: &[u8]) -> usize {
    peak_during(|| {
        let _ = decode::<Item>(bytes, Vec::new());
        let _ = decode::<Vec<String>>(bytes, Vec::new());
        let _ = decode::<BTreeMap<String, Vec<u64>>>(bytes, Vec::new());
        let _ = decode::<Vec<Vec<u8>>>(bytes, Vec::new());
        let _ = decode::<Shape>(bytes, Vec::new());
    })
}

fn item() -> impl Strategy<Value = Item> {
    (
        any::<u64>(),
        ".{0,20}",
        proptest::collection::vec(any::<u8>(), 0..100),
        proptest::collection::btree_map(
            ".{0,5}",
            proptest::collection::vec(any::<i32>(), 0..5),
            0..4,
        ),
        proptest::collection::vec(any::<u64>(), 0..10),
    )
        .prop_map(|(id, name, data, tags, a)| Item {
            id,
            name,
            data,
            tags,
            shape: Shape::Struct {
                a,
                b: Some(Box::new(Shape::Tuple(1, "x".into()))),
            },
        })
}

fn cbor<T: Serialize>(v: &T) -> Vec<u8> {
    let mut b = Vec::new();
    procactor_core::codec::encode(v, &mut b, None).unwrap();
    b
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic_nor_overallocate(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let peak = decode_all(&bytes);
        prop_assert!(peak <= allowed(bytes.len()), "{} for {} bytes", peak, bytes.len());
    }

    #[test]
    fn mutated_encodings_never_panic_nor_overallocate(
        v in item(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..5),
    ) {
        let mut bytes = cbor(&v);
        let round: Item = decode(&bytes, Vec::new()).unwrap();
        prop_assert_eq!(&round, &v);
        for (i, b) in flips {
            let at = i.index(bytes.len());
            bytes[at] = b;
        }
        let peak = decode_all(&bytes);
        prop_assert!(peak <= allowed(bytes.len()), "{} for {} bytes", peak, bytes.len());
    }
}

#[test]
fn declared_lengths_of_2_to_the_63_are_not_allocated() {
    // byte string, text string, array and map heads claiming 2^63 entries, no content
    for major in [0x5bu8, 0x7b, 0x9b, 0xbb] {
        let mut b = vec![major];
        b.extend_from_slice(&(1u64 << 63).to_be_bytes());
        let peak = decode_all(&b);
        assert!(peak <= allowed(b.len()), "{major:#x}: {peak}");
    }
}

/// Nested arrays each declaring 2^32-1 items: 20 bytes that made serde preallocate about
/// 1 MiB per level through ciborium.
#[test]
fn nested_declared_huge_arrays_cost_a_multiple_of_the_input() {
    let mut b = Vec::new();
    for _ in 0..4 {
        b.extend_from_slice(&[0x9a, 0xff, 0xff, 0xff, 0xff]);
    }
    let peak = peak_during(|| {
        let r = decode::<Vec<Vec<Vec<Vec<u64>>>>>(&b, Vec::new());
        assert!(r.is_err());
        let r = decode::<Vec<Vec<Vec<String>>>>(&b, Vec::new());
        assert!(r.is_err());
    });
    assert!(
        peak <= allowed(b.len()),
        "{peak} bytes for {} bytes",
        b.len()
    );
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
