//! [`Bytes`]: a byte buffer that travels as one CBOR byte string.

use serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};
use serde::{Serialize, Serializer};
use std::fmt;
use std::ops::{Deref, DerefMut};

/// A byte buffer (a `Vec<u8>`) that crosses process boundaries as **one CBOR byte
/// string**: the bytes themselves after a 1–9 byte header.
///
/// A plain `Vec<u8>` goes through serde as a sequence of integers, so CBOR writes it as
/// an array of numbers: every byte of 24 or more takes two bytes on the wire and is
/// encoded and decoded one element at a time. Put raw data (an image, a compressed
/// block, a serialized blob) in a `Bytes` to send it through a [`Queue`](crate::Queue)
/// or a [`Connection`](crate::Connection) as one copy. (For a Pipe whose messages are
/// only bytes, [`Connection::send_bytes`](crate::Connection::send_bytes) skips encoding
/// altogether.)
///
/// It dereferences to `[u8]` and converts from and into `Vec<u8>` without copying. It
/// decodes from a byte string or, for data written as a `Vec<u8>`, from an array of
/// integers.
///
/// # Examples
///
/// ```
/// use procactor_core::{Bytes, Queue};
///
/// let q: Queue<Bytes> = Queue::new().unwrap();
/// let data: Vec<u8> = (0..=255).collect();
/// q.put(Bytes::from(data.clone())).unwrap();
/// let got = q.get().unwrap();
/// assert_eq!(got.len(), 256);
/// assert_eq!(&got[..], &data[..]);
/// let back: Vec<u8> = got.into_vec();
/// assert_eq!(back, data);
///
/// // on the wire: a 3-byte header and the bytes, instead of one or two bytes per byte
/// let mut wire = Vec::new();
/// procactor_core::codec::encode(&Bytes::from(data.clone()), &mut wire, None).unwrap();
/// assert_eq!(wire.len(), 3 + 256);
/// wire.clear();
/// procactor_core::codec::encode(&data, &mut wire, None).unwrap();
/// assert_eq!(wire.len(), 3 + 24 + 2 * 232);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bytes(Vec<u8>);

impl Bytes {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// The bytes, as the `Vec<u8>` they are kept in (no copy).
    pub fn into_vec(self) -> Vec<u8> {
        self.0
    }
}

impl Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl DerefMut for Bytes {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Self {
        Bytes(v)
    }
}

impl From<&[u8]> for Bytes {
    fn from(s: &[u8]) -> Self {
        Bytes(s.to_vec())
    }
}

impl From<Bytes> for Vec<u8> {
    fn from(b: Bytes) -> Self {
        b.0
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_byte_buf(BytesVisitor)
    }
}

struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Bytes;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
        Ok(Bytes(v.to_vec()))
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
        Ok(Bytes(v))
    }

    /// An array of integers: how a `Vec<u8>` is written.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Bytes, A::Error> {
        // a declared length is a hint from the input, not a reason to allocate
        let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
        while let Some(b) = seq.next_element::<u8>()? {
            v.push(b);
        }
        Ok(Bytes(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode, encode};
    use std::collections::HashSet;

    fn cbor<T: Serialize>(v: &T) -> Vec<u8> {
        let mut buf = Vec::new();
        encode(v, &mut buf, None).unwrap();
        buf
    }

    #[test]
    fn encodes_as_one_byte_string() {
        let wire = cbor(&Bytes::from(vec![1, 2, 200]));
        assert_eq!(wire[0] >> 5, 2, "major type 2 (byte string)");
        assert_eq!(wire, [0x43, 1, 2, 200]);
        let long = cbor(&Bytes::from(vec![0xab; 300]));
        assert_eq!(
            &long[..3],
            [0x59, 0x01, 0x2c],
            "byte string of 300, 2-byte length"
        );
        assert_eq!(long.len(), 3 + 300);
        assert_eq!(cbor(&Bytes::new()), [0x40]);
        // a Vec<u8> is an array of integers (major type 4)
        assert_eq!(cbor(&vec![1u8, 2, 200]), [0x83, 1, 2, 0x18, 200]);
    }

    #[test]
    fn round_trips_through_the_codec_and_ciborium() {
        for data in [
            vec![],
            vec![0],
            (0..=255).collect::<Vec<u8>>(),
            vec![7; 70_000],
        ] {
            let b = Bytes::from(data.clone());
            let wire = cbor(&b);
            assert_eq!(decode::<Bytes>(&wire, Vec::new()).unwrap(), b);
            let slow: Bytes = ciborium::de::from_reader(&wire[..]).unwrap();
            assert_eq!(slow.into_vec(), data);
        }
        // inside other values too
        let v = (1u32, Bytes::from(&b"abc"[..]), Some(Bytes::new()));
        assert_eq!(
            decode::<(u32, Bytes, Option<Bytes>)>(&cbor(&v), Vec::new()).unwrap(),
            v
        );
    }

    #[test]
    fn decodes_the_array_of_integers_a_vec_is_written_as() {
        let wire = cbor(&vec![1u8, 2, 200]);
        assert_eq!(
            decode::<Bytes>(&wire, Vec::new()).unwrap(),
            Bytes::from(vec![1, 2, 200])
        );
        let slow: Bytes = ciborium::de::from_reader(&wire[..]).unwrap();
        assert_eq!(&slow[..], [1, 2, 200]);
        // and refuses an element that is not a byte
        assert!(decode::<Bytes>(&cbor(&vec![1u32, 256]), Vec::new()).is_err());
        assert!(decode::<Bytes>(&cbor(&"text"), Vec::new()).is_err());
        // a Vec<u8> reads what a Bytes wrote (ciborium reads a byte string as a sequence)
        let wire = cbor(&Bytes::from(vec![5, 6]));
        assert_eq!(decode::<Vec<u8>>(&wire, Vec::new()).unwrap(), [5, 6]);
    }

    #[test]
    fn behaves_as_a_byte_vector() {
        let mut b = Bytes::from(vec![3, 1, 2]);
        b.sort_unstable(); // DerefMut to [u8]
        assert_eq!(b.as_ref(), [1, 2, 3]);
        assert_eq!(b.first(), Some(&1));
        assert_eq!(format!("{b:?}"), "Bytes([1, 2, 3])");
        let same = b.clone();
        assert_eq!(HashSet::from([b.clone(), same]).len(), 1);
        assert!(Bytes::new().is_empty());
        assert_eq!(Bytes::default(), Bytes::new());
        let v: Vec<u8> = b.into();
        assert_eq!(v, [1, 2, 3]);
    }
}
