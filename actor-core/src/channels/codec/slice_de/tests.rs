use super::*;
use crate::codec::{decode as full_decode, encode};
use crate::Bytes;
use proptest::prelude::*;
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Unit;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Newtype(i32);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Inner {
    x: i16,
    y: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Flat {
    a: u8,
    // flatten serializes the struct as a map of unknown length: indefinite in CBOR
    #[serde(flatten)]
    inner: Inner,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
enum Untagged {
    Num(i64),
    Text(String),
    List(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind")]
enum Internal {
    A { n: u32 },
    B(Inner),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Value {
    Nothing,
    U(u8, u16, u32, u64),
    I(i8, i16, i32, i64),
    Wide(u128, i128),
    F(f32, f64),
    B(bool),
    C(char),
    S(String),
    Bytes(Bytes),
    List(Vec<Value>),
    Map(BTreeMap<String, Value>),
    IntKeys(BTreeMap<i32, bool>),
    Opt(Option<Box<Value>>),
    Tuple((), Unit, Newtype),
    Struct { inner: Inner, skip: Vec<Option<u8>> },
    Flat(Flat),
    Untagged(Untagged),
    Internal(Internal),
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Nothing),
        (any::<u8>(), any::<u16>(), any::<u32>(), any::<u64>())
            .prop_map(|(a, b, c, d)| Value::U(a, b, c, d)),
        (any::<i8>(), any::<i16>(), any::<i32>(), any::<i64>())
            .prop_map(|(a, b, c, d)| Value::I(a, b, c, d)),
        (any::<u128>(), any::<i128>()).prop_map(|(a, b)| Value::Wide(a, b)),
        (any::<u64>(), any::<i64>()).prop_map(|(a, b)| Value::Wide(a.into(), b.into())),
        (any::<f32>(), any::<f64>()).prop_map(|(a, b)| Value::F(a, b)),
        any::<u16>().prop_map(|h| Value::F(0.0, f16_to_f64(h))),
        any::<bool>().prop_map(Value::B),
        any::<char>().prop_map(Value::C),
        ".{0,40}".prop_map(Value::S),
        proptest::collection::vec(any::<u8>(), 0..100).prop_map(|b| Value::Bytes(Bytes::from(b))),
        proptest::collection::btree_map(any::<i32>(), any::<bool>(), 0..4).prop_map(Value::IntKeys),
        Just(Value::Tuple((), Unit, Newtype(-7))),
        (any::<i16>(), proptest::option::of(".{0,8}"), any::<u8>()).prop_map(|(x, y, a)| {
            Value::Flat(Flat {
                a,
                inner: Inner { x, y },
            })
        }),
        prop_oneof![
            any::<i64>().prop_map(Untagged::Num),
            ".{0,8}".prop_map(Untagged::Text),
            proptest::collection::vec(any::<u8>(), 0..8).prop_map(Untagged::List),
        ]
        .prop_map(Value::Untagged),
        any::<u32>().prop_map(|n| Value::Internal(Internal::A { n })),
        (any::<i16>(), proptest::option::of(".{0,8}"))
            .prop_map(|(x, y)| Value::Internal(Internal::B(Inner { x, y }))),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::List),
            proptest::collection::btree_map(".{0,6}", inner.clone(), 0..4).prop_map(Value::Map),
            proptest::option::of(inner.clone()).prop_map(|v| Value::Opt(v.map(Box::new))),
            (
                any::<i16>(),
                proptest::option::of(".{0,8}"),
                proptest::collection::vec(proptest::option::of(any::<u8>()), 0..4)
            )
                .prop_map(|(x, y, skip)| Value::Struct {
                    inner: Inner { x, y },
                    skip
                }),
        ]
    })
}

fn cbor<T: Serialize>(v: &T) -> Vec<u8> {
    let mut buf = Vec::new();
    encode(v, &mut buf, None).unwrap();
    buf
}

fn ciborium_decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    let mut r = bytes;
    let v = ciborium::de::from_reader(&mut r).ok()?;
    r.is_empty().then_some(v)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Whatever the fast decoder returns for our encoder's output is what ciborium
    /// returns (compared as re-encoded bytes, so that NaNs compare by their bits).
    #[test]
    fn agrees_with_ciborium_on_encoded_values(v in value()) {
        let bytes = cbor(&v);
        let slow: Value = ciborium_decode(&bytes).expect("ciborium reads our encoding");
        prop_assert_eq!(cbor(&slow), bytes.clone());
        if let Ok((fast, used)) = decode::<Value>(&bytes) {
            prop_assert_eq!(used, bytes.len());
            prop_assert_eq!(cbor(&fast), bytes.clone());
        }
        // and through the public entry point, fast or not
        let back: Value = full_decode(&bytes, Vec::new()).unwrap();
        prop_assert_eq!(cbor(&back), bytes);
    }

    /// Everything without bignum tags takes the fast path.
    #[test]
    fn values_without_tags_never_fall_back(v in value()) {
        let bytes = cbor(&v);
        if !bytes.contains(&0xc2) && !bytes.contains(&0xc3) {
            prop_assert!(decode::<Value>(&bytes).is_ok());
        }
    }

    /// On arbitrary bytes the fast decoder never panics, and whenever it succeeds,
    /// ciborium reads the same bytes as the same value.
    #[test]
    fn arbitrary_bytes_never_panic_and_never_disagree(
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        if let Ok((v, used)) = decode::<Value>(&bytes) {
            let slow: Value = ciborium::de::from_reader(&bytes[..used]).expect("ciborium agrees");
            prop_assert_eq!(cbor(&slow), cbor(&v));
        }
        if let Ok(((n, s), used)) = decode::<(u64, String)>(&bytes) {
            prop_assert_eq!(ciborium_decode::<(u64, String)>(&bytes[..used]), Some((n, s)));
        }
        let _ = decode::<BTreeMap<String, Vec<Option<f64>>>>(&bytes);
        let _ = decode::<serde::de::IgnoredAny>(&bytes);
    }

    /// Encoded values with random corruption: still no panic, still no disagreement.
    #[test]
    fn corrupted_encodings_never_disagree(
        v in value(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = cbor(&v);
        for (i, b) in flips {
            let i = i.index(bytes.len());
            bytes[i] = b;
        }
        if let Ok((fast, used)) = decode::<Value>(&bytes) {
            let slow: Value = ciborium::de::from_reader(&bytes[..used]).expect("ciborium agrees");
            prop_assert_eq!(cbor(&slow), cbor(&fast));
        }
    }
}

#[test]
fn every_half_float_converts_like_ciborium() {
    for h in 0..=u16::MAX {
        let [a, b] = h.to_be_bytes();
        let bytes = [0xf9, a, b];
        let slow: f64 = ciborium::de::from_reader(&bytes[..]).unwrap();
        let (fast, used) = decode::<f64>(&bytes).unwrap();
        assert_eq!(used, 3);
        assert_eq!(fast.to_bits(), slow.to_bits(), "half {h:#06x}");
    }
}

#[test]
fn indefinite_arrays_and_maps_are_read() {
    // [_ 1, [_ ], {_ "a": 2}]
    let bytes = [0x9f, 0x01, 0x9f, 0xff, 0xbf, 0x61, b'a', 0x02, 0xff, 0xff];
    type T = (u8, Vec<u8>, BTreeMap<String, u8>);
    let (v, used) = decode::<T>(&bytes).unwrap();
    assert_eq!(used, bytes.len());
    assert_eq!(v, (1, vec![], BTreeMap::from([("a".to_string(), 2)])));
}

#[test]
fn bytes_decode_on_the_fast_path_from_a_byte_string_or_an_array() {
    let data: Vec<u8> = (0..=255).collect();
    let wire = cbor(&Bytes::from(data.clone()));
    let (b, used) = decode::<Bytes>(&wire).expect("no fallback to ciborium");
    assert_eq!((b.into_vec(), used), (data.clone(), wire.len()));
    // as a Vec<u8> writes it: an array of integers
    let wire = cbor(&data);
    let (b, used) = decode::<Bytes>(&wire).expect("no fallback to ciborium");
    assert_eq!((b.into_vec(), used), (data, wire.len()));
    // inside a struct, a tuple, an option
    let v = (7u64, Some(Bytes::from(vec![1, 2])), vec![Bytes::new()]);
    let (back, _) = decode::<(u64, Option<Bytes>, Vec<Bytes>)>(&cbor(&v)).unwrap();
    assert_eq!(back, v);
}

#[test]
fn unsupported_input_gives_up_and_ciborium_decides() {
    // a tagged value (tag 1, epoch time): ciborium skips the tag
    let tagged = [0xc1, 0x05];
    assert_eq!(decode::<u8>(&tagged).unwrap_err(), GiveUp);
    assert_eq!(full_decode::<u8>(&tagged, Vec::new()).unwrap(), 5);
    // a chunked text string
    let chunked = [0x7f, 0x61, b'a', 0x61, b'b', 0xff];
    assert_eq!(decode::<String>(&chunked).unwrap_err(), GiveUp);
    assert_eq!(full_decode::<String>(&chunked, Vec::new()).unwrap(), "ab");
    // a byte string read as a sequence
    let bytes = [0x42, 1, 2];
    assert_eq!(decode::<Vec<u8>>(&bytes).unwrap_err(), GiveUp);
    assert_eq!(full_decode::<Vec<u8>>(&bytes, Vec::new()).unwrap(), [1, 2]);
    // a big integer
    let big = cbor(&u128::MAX);
    assert_eq!(decode::<u128>(&big).unwrap_err(), GiveUp);
    assert_eq!(full_decode::<u128>(&big, Vec::new()).unwrap(), u128::MAX);
    // deeper than MAX_DEPTH: ciborium's own limit decides
    let mut deep = vec![0x81; MAX_DEPTH as usize + 1];
    deep.push(0x80);
    assert_eq!(decode::<serde::de::IgnoredAny>(&deep).unwrap_err(), GiveUp);
    assert!(full_decode::<serde::de::IgnoredAny>(&deep, Vec::new()).is_ok());
    let mut too_deep = vec![0x81; 300];
    too_deep.push(0x80);
    let e = full_decode::<serde::de::IgnoredAny>(&too_deep, Vec::new()).unwrap_err();
    assert!(e.message.contains("deep"), "{e}");
}

#[test]
fn errors_come_from_ciborium_with_their_message() {
    let e = full_decode::<u64>(&cbor(&"text"), Vec::new()).unwrap_err();
    assert_eq!(e.expected, "u64");
    assert!(e.message.contains("string"), "{e}");
    let e = full_decode::<(u64, String)>(&[0x82, 0x01], Vec::new()).unwrap_err();
    assert!(e.message.contains("truncated"), "{e}");
    // huge declared lengths are neither trusted nor allocated
    let e = full_decode::<Vec<u8>>(
        &[0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        Vec::new(),
    );
    assert!(e.is_err());
    let e = full_decode::<String>(
        &[0x7b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        Vec::new(),
    );
    assert!(e.is_err());
}

#[test]
fn strings_and_bytes_are_lent_from_the_input() {
    #[derive(Deserialize)]
    struct Borrowed<'a> {
        #[serde(borrow)]
        s: &'a str,
        #[serde(borrow)]
        b: &'a [u8],
    }
    #[derive(Serialize)]
    struct Owned {
        s: String,
        b: Bytes,
    }
    let bytes = cbor(&Owned {
        s: "x".repeat(5000), // longer than ciborium's scratch buffer
        b: Bytes::from(vec![9; 10]),
    });
    let (v, _) = decode::<Borrowed<'_>>(&bytes).unwrap();
    assert_eq!(v.s.len(), 5000);
    assert_eq!(v.b, [9; 10]);
    let range = bytes.as_ptr_range();
    assert!(range.contains(&v.s.as_ptr()) && range.contains(&v.b.as_ptr()));
}

/// The documented caveat: when the fast decoder gives up part-way, a `Deserialize` impl
/// that ran before that point runs again in ciborium.
#[test]
fn a_fallback_runs_deserialize_impls_again() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    #[derive(Debug)]
    struct Counted;
    impl<'de> Deserialize<'de> for Counted {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            RUNS.fetch_add(1, Ordering::SeqCst);
            u8::deserialize(d).map(|_| Counted)
        }
    }
    // (Counted, tag 1 + 5): the fast decoder reads `Counted`, then gives up on the tag
    let bytes = [0x82, 0x01, 0xc1, 0x05];
    let (_, n): (Counted, u8) = full_decode(&bytes, Vec::new()).unwrap();
    assert_eq!(n, 5);
    assert_eq!(RUNS.load(Ordering::SeqCst), 2);
    // without a fallback, once
    let _: (Counted, u8) = full_decode(&[0x82, 0x01, 0x05], Vec::new()).unwrap();
    assert_eq!(RUNS.load(Ordering::SeqCst), 3);
}
