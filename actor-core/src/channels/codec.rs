//! The wire format: serde + CBOR (ciborium) into reused buffers, and handles that travel
//! as file descriptors.
//!
//! **Handles travel by fd.** While a value is encoded for a channel that can carry
//! descriptors (a Pipe, a child's bootstrap), a handle's `Serialize` puts a duplicate of
//! its descriptor into a side table and writes only the table index. On the receiving
//! side, decoding takes the descriptor out of the table. A channel that cannot carry
//! descriptors (a shared-memory `Queue`) encodes with no table, and a handle inside the
//! value is then an [`EncodeError`] naming the way that works.
//!
//! **Decoding takes a fast path.** [`decode`] first reads the bytes with a small
//! slice-based deserializer (`slice_de`) that covers what our encoder writes and lends
//! strings from the buffer; for anything it does not cover, or any error, it gives up and
//! ciborium decodes the same bytes and has the last word. Caveat: a `Deserialize` impl
//! with side effects may then run twice for one message (once in the fast decoder before
//! it gave up, once in ciborium). Messages that carry descriptors always go straight to
//! ciborium, since a handle's decoding takes its descriptor and must run only once.

use crate::error::{DecodeError, EncodeError};
use procactor_transports::{AsFd, BorrowedFd, OwnedFd};
use serde::de::{DeserializeOwned, Error as _};
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::cell::RefCell;

mod slice_de;

/// What an encoding with a descriptor table collects while it runs: the handles'
/// descriptors, and the undo actions of their side effects (see [`on_unsent`]).
#[derive(Default)]
struct Outgoing {
    fds: Vec<OwnedFd>,
    undo: Vec<Box<dyn FnOnce()>>,
}

thread_local! {
    static OUT: RefCell<Option<Outgoing>> = const { RefCell::new(None) };
    static IN_FDS: RefCell<Vec<Option<OwnedFd>>> = const { RefCell::new(Vec::new()) };
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Whether the value being encoded right now can carry descriptors (a Pipe, a child's
/// arguments) — not a shared-memory queue. A handle with another way to travel (a
/// manager proxy, which can reconnect by name) asks before choosing.
pub(crate) fn can_carry_fds() -> bool {
    OUT.with(|o| o.borrow().is_some())
}

/// Called by a handle's `Serialize`, after its descriptor went into the table, when it
/// had a side effect on shared state (a queue counting its travelling handle as the
/// sender's producer): `undo` runs if the message does not go out after all — its
/// encoding fails further on, or (for messages encoded with [`encode_for_sending`]) the
/// caller drops the [`Unsent`] guard without calling [`Unsent::sent`] because writing
/// or spawning failed. Only an encoding with a descriptor table can carry a handle, so
/// outside one there is nothing to undo later: `undo` runs at once.
pub(crate) fn on_unsent(undo: impl FnOnce() + 'static) {
    let undo: Box<dyn FnOnce()> = Box::new(undo);
    let outside = OUT.with(|o| match o.borrow_mut().as_mut() {
        Some(out) => {
            out.undo.push(undo);
            None
        }
        None => Some(undo),
    });
    if let Some(undo) = outside {
        undo();
    }
}

/// The undo actions of a message that is encoded but not yet known to be sent; they run
/// on drop unless [`sent`](Unsent::sent) was called.
#[must_use = "dropping it undoes the handles' side effects: call sent() once delivered"]
pub(crate) struct Unsent(Vec<Box<dyn FnOnce()>>);

impl Unsent {
    /// Whether undoing would do nothing (no handle in the message had side effects).
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The message went out: its handles' side effects stay.
    pub(crate) fn sent(mut self) {
        self.0.clear();
    }
}

impl Drop for Unsent {
    fn drop(&mut self) {
        while let Some(undo) = self.0.pop() {
            undo();
        }
    }
}

/// As [`encode`], for a message whose sending can still fail afterwards: the returned
/// guard undoes the handles' side effects unless told the message was [`sent`](
/// Unsent::sent).
///
/// # Errors
///
/// As [`encode`] (the side effects are undone already).
pub(crate) fn encode_for_sending<T: Serialize + ?Sized>(
    value: &T,
    buf: &mut Vec<u8>,
    fds: Option<&mut Vec<OwnedFd>>,
) -> Result<Unsent, EncodeError> {
    let start = buf.len();
    let (res, undo) = match fds {
        None => (ciborium::ser::into_writer(value, &mut *buf), Vec::new()),
        Some(table) => {
            let mine = Outgoing {
                fds: std::mem::take(table),
                undo: Vec::new(),
            };
            // a nested encoding (inside a `Serialize`) gets its own context
            let prev = OUT.with(|o| o.borrow_mut().replace(mine));
            let r = ciborium::ser::into_writer(value, &mut *buf);
            let mine = OUT
                .with(|o| std::mem::replace(&mut *o.borrow_mut(), prev))
                .unwrap_or_default();
            *table = mine.fds;
            (r, mine.undo)
        }
    };
    // on error the guard is dropped here, undoing at once
    let undo = Unsent(undo);
    res.map(|()| undo).map_err(|e| {
        buf.truncate(start);
        EncodeError(match e {
            ciborium::ser::Error::Io(e) => e.to_string(),
            ciborium::ser::Error::Value(m) => m,
        })
    })
}

/// Appends the CBOR encoding of `value` to `buf`.
///
/// With `fds = Some(table)`, handles inside `value` add their descriptors to `table`;
/// with `None` a handle inside `value` is an error.
///
/// # Errors
///
/// The value's `Serialize` failed (nothing meaningful is left in `buf` past its old
/// length: it is truncated back).
pub fn encode<T: Serialize + ?Sized>(
    value: &T,
    buf: &mut Vec<u8>,
    fds: Option<&mut Vec<OwnedFd>>,
) -> Result<(), EncodeError> {
    // a failed encoding undoes its handles' side effects; a successful one keeps them
    encode_for_sending(value, buf, fds).map(Unsent::sent)
}

/// Decodes a `T` from `bytes`, handing `fds` to the handles inside it.
///
/// # Errors
///
/// The bytes are not CBOR, not a `T`, have trailing bytes, or reference descriptors that
/// did not come.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], fds: Vec<OwnedFd>) -> Result<T, DecodeError> {
    let has_fds = !fds.is_empty();
    if !has_fds {
        if let Ok((value, used)) = slice_de::decode::<T>(bytes) {
            return match bytes.len() - used {
                0 => Ok(value),
                n => Err(trailing::<T>(n)),
            };
        }
        // the fast decoder gave up: ciborium decides (see the module docs)
    }
    // ciborium (through serde) preallocates for the lengths the bytes declare (up to
    // 1 MiB per collection): refuse declarations the bytes cannot hold first
    if let Err(message) = check_declared_lengths(bytes) {
        return Err(DecodeError {
            expected: std::any::type_name::<T>(),
            message,
        });
    }
    if has_fds {
        IN_FDS.with(|t| *t.borrow_mut() = fds.into_iter().map(Some).collect());
    }
    let mut reader = bytes;
    let res = SCRATCH.with(|s| {
        // a nested decode (a handle decoding inside a decode) gets its own scratch
        match s.try_borrow_mut() {
            Ok(mut scratch) => {
                if scratch.len() < 4096 {
                    scratch.resize(4096, 0);
                }
                ciborium::de::from_reader_with_buffer::<T, _>(&mut reader, &mut scratch)
            }
            Err(_) => ciborium::de::from_reader::<T, _>(&mut reader),
        }
    });
    if has_fds {
        IN_FDS.with(|t| t.borrow_mut().clear());
    }
    let value = res.map_err(|e| DecodeError {
        expected: std::any::type_name::<T>(),
        message: match e {
            ciborium::de::Error::Io(e) => format!("truncated or unreadable: {e}"),
            ciborium::de::Error::Syntax(off) => format!("invalid CBOR at byte {off}"),
            ciborium::de::Error::Semantic(off, m) => match off {
                Some(o) => format!("{m} (at byte {o})"),
                None => m,
            },
            ciborium::de::Error::RecursionLimitExceeded => "nesting too deep".into(),
        },
    })?;
    if !reader.is_empty() {
        return Err(trailing::<T>(reader.len()));
    }
    Ok(value)
}

/// One open container of [`check_declared_lengths`]'s walk.
enum Open {
    /// A definite-length array or map: this many items still to come.
    Items(u64),
    /// An indefinite-length array, map or string: items until a break byte.
    UntilBreak,
}

/// Walks the first CBOR item of `bytes` (heads only, string contents skipped) and
/// checks that every length it declares is there: a string's bytes, and an array's or
/// map's items, each of which takes at least one byte. Linear in the bytes; allocates
/// at most one small entry per nesting level.
///
/// Run before ciborium decodes (the fallback path): serde preallocates for a declared
/// collection length (capped at 1 MiB per collection), so 16 bytes of nested arrays each
/// declaring 2^32 items would otherwise cost megabytes. After this check the total of
/// the declared items is at most the number of bytes, so what serde preallocates is what
/// a real value of that size would need. Bytes past the first item are not looked at
/// (the decoder reports them as trailing).
///
/// # Errors
///
/// A message naming the first declaration the bytes cannot hold, or a malformed head.
pub(crate) fn check_declared_lengths(bytes: &[u8]) -> Result<(), String> {
    let mut at = 0usize;
    let mut open: Vec<Open> = vec![Open::Items(1)];
    while let Some(top) = open.last_mut() {
        if let Open::Items(0) = top {
            open.pop();
            continue;
        }
        let Some(&b) = bytes.get(at) else {
            return Err(format!(
                "truncated: the value ends at byte {at} with items missing"
            ));
        };
        let head_at = at;
        at += 1;
        let major = b >> 5;
        let info = b & 0x1f;
        if b == 0xff {
            if !matches!(top, Open::UntilBreak) {
                return Err(format!("unexpected break at byte {head_at}"));
            }
            open.pop();
            continue;
        }
        let arg: Option<u64> = match info {
            0..=23 => Some(u64::from(info)),
            24..=27 => {
                let n = 1usize << (info - 24);
                let Some(a) = bytes.get(at..at + n) else {
                    return Err(format!("truncated head at byte {head_at}"));
                };
                at += n;
                Some(a.iter().fold(0u64, |v, &x| (v << 8) | u64::from(x)))
            }
            31 if matches!(major, 2..=5) => None,
            _ => return Err(format!("invalid head {b:#04x} at byte {head_at}")),
        };
        if major == 6 {
            continue; // a tag: the item it tags follows (and is what counts)
        }
        // this head is one item of its container
        if let Open::Items(n) = top {
            *n -= 1;
        }
        let left = (bytes.len() - at) as u64;
        let too_long = |what: &str, n: u64| {
            format!("truncated: {what} at byte {head_at} declares {n} but only {left} bytes follow")
        };
        match (major, arg) {
            (2 | 3, Some(n)) => {
                if n > left {
                    return Err(too_long("a string", n));
                }
                at += n as usize;
            }
            (4, Some(n)) => {
                if n > left {
                    return Err(too_long("an array", n));
                }
                open.push(Open::Items(n));
            }
            (5, Some(n)) => {
                let items = n.saturating_mul(2);
                if items > left {
                    return Err(too_long("a map", n));
                }
                open.push(Open::Items(items));
            }
            (2..=5, None) => open.push(Open::UntilBreak),
            _ => {} // an integer, a simple value or a float: its argument was all of it
        }
    }
    Ok(())
}

fn trailing<T>(n: usize) -> DecodeError {
    DecodeError {
        expected: std::any::type_name::<T>(),
        message: format!("{n} trailing bytes after the value"),
    }
}

/// Serializes a borrowed descriptor as an index into the frame's descriptor table.
/// Used inside handles' `Serialize` impls.
#[derive(Debug, Clone, Copy)]
pub struct SendFd<'a>(pub BorrowedFd<'a>);

impl Serialize for SendFd<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let idx = OUT.with(|o| -> Result<u32, String> {
            let mut o = o.borrow_mut();
            let table = &mut o
                .as_mut()
                .ok_or_else(|| {
                    "a procactor handle cannot travel through this channel (a Queue or a \
                 non-procactor serializer): pass it in a child's args, a Pool task's \
                 arguments or initializer, or send it through a Pipe"
                        .to_string()
                })?
                .fds;
            let dup = self
                .0
                .try_clone_to_owned()
                .map_err(|e| format!("cannot duplicate a handle's descriptor: {e}"))?;
            table.push(dup);
            Ok((table.len() - 1) as u32)
        });
        match idx {
            Ok(i) => s.serialize_u32(i),
            Err(m) => Err(S::Error::custom(m)),
        }
    }
}

/// Deserializes a descriptor sent as [`SendFd`], taking it from the frame's table.
#[derive(Debug)]
pub struct RecvFd(pub OwnedFd);

impl<'de> Deserialize<'de> for RecvFd {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let idx = u32::deserialize(d)? as usize;
        IN_FDS
            .with(|t| t.borrow_mut().get_mut(idx).and_then(Option::take))
            .map(RecvFd)
            .ok_or_else(|| {
                D::Error::custom(format!(
                    "handle references descriptor #{idx}, which did not arrive with the message"
                ))
            })
    }
}

impl AsFd for RecvFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// A value encoded once, with the descriptors of the handles inside it, to be decoded
/// later in another process (a child supervisor's units, a pool's initializer
/// arguments). It travels as a byte string and a list of descriptors. Decode it exactly
/// once: a handle's decoding has side effects (a queue's producer count).
pub(crate) struct Encoded {
    pub(crate) bytes: crate::Bytes,
    pub(crate) fds: Vec<OwnedFd>,
}

impl Encoded {
    pub(crate) fn new<T: Serialize + ?Sized>(value: &T) -> Result<Encoded, EncodeError> {
        let mut bytes = Vec::new();
        let mut fds = Vec::new();
        encode(value, &mut bytes, Some(&mut fds))?;
        Ok(Encoded {
            bytes: bytes.into(),
            fds,
        })
    }

    pub(crate) fn decode<T: DeserializeOwned>(self) -> Result<T, DecodeError> {
        decode(&self.bytes, self.fds)
    }
}

impl Serialize for Encoded {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let fds: Vec<SendFd<'_>> = self.fds.iter().map(|f| SendFd(f.as_fd())).collect();
        (&self.bytes, fds).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Encoded {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (bytes, fds): (crate::Bytes, Vec<RecvFd>) = Deserialize::deserialize(d)?;
        Ok(Encoded {
            bytes,
            fds: fds.into_iter().map(|f| f.0).collect(),
        })
    }
}

/// Encodes `v` with its descriptors and decodes the result as a `B`, the way a value
/// crosses between processes (tests of handle types use it).
#[cfg(test)]
pub(crate) fn round_trip<B: DeserializeOwned>(v: &impl Serialize) -> Result<B, String> {
    let mut buf = Vec::new();
    let mut fds = Vec::new();
    encode(v, &mut buf, Some(&mut fds)).map_err(|e| e.to_string())?;
    decode(&buf, fds).map_err(|e| e.to_string())
}

#[cfg(test)]
mod declared_length_tests {
    use super::*;
    use std::collections::BTreeMap;

    fn enc<T: Serialize>(v: &T) -> Vec<u8> {
        let mut b = Vec::new();
        encode(v, &mut b, None).unwrap();
        b
    }

    #[test]
    fn what_our_encoder_writes_passes() {
        let mut m = BTreeMap::new();
        m.insert("k".to_string(), vec![1u64, 2, u64::MAX]);
        for b in [
            enc(&0u8),
            enc(&"text"),
            enc(&vec![vec![1u8; 300]; 3]),
            enc(&m),
            enc(&(1.5f64, -3i64, None::<u8>, true, ())),
            enc(&Vec::<u8>::new()),
        ] {
            check_declared_lengths(&b).unwrap();
        }
        // indefinite lengths and tags too (ciborium reads them)
        check_declared_lengths(&[0x9f, 0x01, 0x5f, 0x41, 0x00, 0xff, 0xff]).unwrap();
        check_declared_lengths(&[0xc1, 0x1a, 0, 0, 0, 1]).unwrap();
        check_declared_lengths(&[0xbf, 0x61, b'a', 0x01, 0xff]).unwrap();
    }

    #[test]
    fn declarations_the_bytes_cannot_hold_are_refused() {
        // an array of 2^32-1 items in 5 bytes
        let e = check_declared_lengths(&[0x9a, 0xff, 0xff, 0xff, 0xff]).unwrap_err();
        assert!(
            e.contains("an array at byte 0 declares 4294967295 but only 0 bytes"),
            "{e}"
        );
        // a string one byte longer than what follows
        assert!(check_declared_lengths(&[0x43, 1, 2]).is_err());
        // a map of n pairs needs 2n items
        assert!(check_declared_lengths(&[0xa2, 1, 2, 3]).is_err());
        // declared items missing at the end, a lone break, a reserved head
        assert!(check_declared_lengths(&[0x82, 1]).is_err());
        assert!(check_declared_lengths(&[0xff]).is_err());
        assert!(check_declared_lengths(&[0x1c]).is_err());
        assert!(check_declared_lengths(&[0x9f, 0x01]).is_err());
        // and decode says so before ciborium allocates
        let e = decode::<Vec<Vec<u64>>>(&[0x81, 0x9a, 0xff, 0xff, 0xff, 0xff], Vec::new());
        assert!(e.unwrap_err().to_string().contains("declares"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::*;
    use serde::{Deserialize, Serialize};

    /// Serializes as a number, with a side effect to undo: `log` gets `+` at encoding
    /// and `-` when undone.
    struct Effect(std::rc::Rc<RefCell<String>>);

    impl Serialize for Effect {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            self.0.borrow_mut().push('+');
            let log = self.0.clone();
            on_unsent(move || log.borrow_mut().push('-'));
            s.serialize_u8(1)
        }
    }

    struct Refuses;

    impl Serialize for Refuses {
        fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(S::Error::custom("refuses"))
        }
    }

    #[test]
    fn side_effects_of_a_message_not_sent_are_undone() {
        let log = std::rc::Rc::new(RefCell::new(String::new()));
        let mut buf = Vec::new();
        let mut fds = Vec::new();
        // encoding fails after the effect: undone at once
        let failed = encode(&(Effect(log.clone()), Refuses), &mut buf, Some(&mut fds));
        assert!(failed.is_err());
        assert_eq!(*log.borrow(), "+-");
        // plain encode succeeds: kept
        encode(&Effect(log.clone()), &mut buf, Some(&mut fds)).unwrap();
        assert_eq!(*log.borrow(), "+-+");
        // encoded for sending, then sending failed (guard dropped): undone
        let unsent = encode_for_sending(&Effect(log.clone()), &mut buf, Some(&mut fds));
        drop(unsent.unwrap());
        assert_eq!(*log.borrow(), "+-++-");
        // sent: kept; and no encoding context is left behind
        encode_for_sending(&Effect(log.clone()), &mut buf, Some(&mut fds))
            .unwrap()
            .sent();
        assert_eq!(*log.borrow(), "+-++-+");
        assert!(OUT.with(|o| o.borrow().is_none()));
        // without a descriptor table nothing can travel: an effect is undone at once
        encode(&Effect(log.clone()), &mut buf, None).unwrap();
        assert_eq!(*log.borrow(), "+-++-++-");
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    enum Shape {
        Unit,
        Tuple(i64, String),
        Struct {
            a: Vec<u8>,
            b: Option<f64>,
            c: std::collections::BTreeMap<String, u32>,
        },
    }

    fn shape() -> impl Strategy<Value = Shape> {
        prop_oneof![
            Just(Shape::Unit),
            (any::<i64>(), ".*").prop_map(|(a, b)| Shape::Tuple(a, b)),
            (
                proptest::collection::vec(any::<u8>(), 0..300),
                proptest::option::of(any::<f64>().prop_filter("nan", |f| !f.is_nan())),
                proptest::collection::btree_map(".{0,8}", any::<u32>(), 0..5)
            )
                .prop_map(|(a, b, c)| Shape::Struct { a, b, c }),
        ]
    }

    proptest! {
        #[test]
        fn every_value_round_trips(v in proptest::collection::vec(shape(), 0..8)) {
            let mut buf = Vec::new();
            encode(&v, &mut buf, None).unwrap();
            let back: Vec<Shape> = decode(&buf, Vec::new()).unwrap();
            prop_assert_eq!(back, v);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode::<Vec<Shape>>(&bytes, Vec::new());
            let _ = decode::<(u64, String)>(&bytes, Vec::new());
            let _ = decode::<RecvFd>(&bytes, Vec::new());
        }

        #[test]
        fn every_truncation_is_an_error(v in shape(), cut in any::<prop::sample::Index>()) {
            let mut buf = Vec::new();
            encode(&v, &mut buf, None).unwrap();
            let n = cut.index(buf.len());
            prop_assert!(decode::<Shape>(&buf[..n], Vec::new()).is_err());
        }
    }

    #[test]
    fn wrong_type_names_the_expected_type() {
        let mut buf = Vec::new();
        encode(&"text", &mut buf, None).unwrap();
        let e = decode::<u64>(&buf, Vec::new()).unwrap_err();
        assert_eq!(e.expected, "u64");
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        let mut buf = Vec::new();
        encode(&1u8, &mut buf, None).unwrap();
        buf.push(0);
        assert!(decode::<u8>(&buf, Vec::new())
            .unwrap_err()
            .message
            .contains("trailing"));
    }

    #[test]
    fn fds_travel_through_the_side_table_and_need_one() {
        let (a, _b) = procactor_transports::fdpass::socketpair().unwrap();
        let mut buf = Vec::new();
        // without a table: a clear error, buffer unchanged
        let e = encode(&SendFd(a.as_fd()), &mut buf, None).unwrap_err();
        assert!(e.0.contains("Pipe"), "{e}");
        assert!(buf.is_empty());
        let mut fds = Vec::new();
        encode(&(7u8, SendFd(a.as_fd())), &mut buf, Some(&mut fds)).unwrap();
        assert_eq!(fds.len(), 1);
        let (n, RecvFd(fd)): (u8, RecvFd) = decode(&buf, fds).unwrap();
        assert_eq!(n, 7);
        assert!(procactor_transports::os::raw_fd(fd.as_fd()) >= 0);
        // a table entry that did not come is an error, not a panic
        assert!(decode::<(u8, RecvFd)>(&buf, Vec::new()).is_err());
    }
}
