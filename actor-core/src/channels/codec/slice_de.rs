//! The fast path of [`decode`](super::decode): a serde `Deserializer` reading CBOR
//! straight from a byte slice.
//!
//! ciborium decodes from a generic reader, one header at a time, and copies every text
//! and byte string through a scratch buffer; for the small messages of a queue that is
//! most of the cost of a `get`. This decoder indexes the slice directly and lends
//! strings and byte strings from it (`visit_borrowed_str`, `visit_borrowed_bytes`).
//!
//! It understands what our encoder (ciborium's serializer) writes for serde's data
//! model: integers up to 64 bits, floats (half, single, double), booleans, null and
//! undefined, definite-length text and byte strings, arrays and maps of definite or
//! indefinite length, and enums as a variant name or a one-entry map. For everything
//! else — tags (bignums, ciborium's `@@TAG@@` enums), chunked strings, simple values in
//! their two-byte form, nesting deeper than [`MAX_DEPTH`] — and for *any* error, it gives
//! up ([`GiveUp`]) and the caller decodes the same bytes again with ciborium, whose
//! answer (value or error message) is the one returned. So this decoder never needs to
//! explain an error, and it is only ever stricter than ciborium, never more lenient, with
//! one deliberate exception: ciborium refuses borrowed text (`deserialize_str`,
//! identifiers) longer than its 4 KiB scratch buffer; this decoder accepts it.
//!
//! Every read is bounds-checked against the slice and declared lengths are never used to
//! allocate (a `size_hint` is capped by the bytes left), so arbitrary input can neither
//! panic nor make it allocate more than the input's size.

use serde::de::{self, DeserializeSeed, Visitor};
use serde::Deserialize;
use std::fmt;

/// Nesting of arrays, maps and enums beyond which the fast decoder gives up (ciborium
/// allows 256 and then fails; deeper values are left to it).
pub(super) const MAX_DEPTH: u32 = 128;

/// The fast decoder could not decode these bytes as this type; ciborium decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct GiveUp;

impl fmt::Display for GiveUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the fast CBOR decoder gave up")
    }
}

impl std::error::Error for GiveUp {}

impl de::Error for GiveUp {
    // The message is dropped on purpose: the caller falls back to ciborium, which
    // produces the real one (and formatting it here would cost time for nothing).
    fn custom<T: fmt::Display>(_msg: T) -> Self {
        GiveUp
    }
}

/// Decodes a `T` from the front of `bytes`; returns it and the number of bytes it took.
pub(super) fn decode<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> Result<(T, usize), GiveUp> {
    let mut de = SliceDe {
        buf: bytes,
        pos: 0,
        depth: 0,
    };
    let value = T::deserialize(&mut de)?;
    Ok((value, de.pos))
}

/// One CBOR data item's head, with the content of strings already taken.
#[derive(Debug, Clone, Copy)]
enum Head<'de> {
    Uint(u64),
    /// `-1 - n`
    Nint(u64),
    Bytes(&'de [u8]),
    Text(&'de str),
    /// `None`: indefinite length
    Array(Option<usize>),
    Map(Option<usize>),
    /// Simple values below 24 (20 false, 21 true, 22 null, 23 undefined).
    Simple(u8),
    Float(f64),
}

const FALSE: u8 = 20;
const TRUE: u8 = 21;
const NULL: u8 = 22;
const UNDEFINED: u8 = 23;
const BREAK_BYTE: u8 = 0xff;
const NULL_BYTE: u8 = 0xe0 | NULL;
const UNDEFINED_BYTE: u8 = 0xe0 | UNDEFINED;

struct SliceDe<'de> {
    buf: &'de [u8],
    pos: usize,
    depth: u32,
}

/// Converts an IEEE half-precision float to `f64` exactly as the `half` crate does
/// (which ciborium uses), NaN payloads included.
fn f16_to_f64(h: u16) -> f64 {
    let sign = u64::from(h & 0x8000) << 48;
    let exp = u64::from(h & 0x7c00);
    let man = u64::from(h & 0x03ff);
    if h & 0x7fff == 0 {
        return f64::from_bits(sign);
    }
    if exp == 0x7c00 {
        return if man == 0 {
            f64::from_bits(sign | 0x7ff0_0000_0000_0000)
        } else {
            f64::from_bits(sign | 0x7ff8_0000_0000_0000 | (man << 42))
        };
    }
    if exp == 0 {
        // subnormal: normalize (man != 0 here, so it has a leading one in 10 bits)
        let e = u64::from((man as u16).leading_zeros()) - 6;
        let exp = (1023 - 15 - e) << 52;
        let man = (man << (43 + e)) & 0x000f_ffff_ffff_ffff;
        return f64::from_bits(sign | exp | man);
    }
    let exp = ((exp >> 10) + 1023 - 15) << 52;
    f64::from_bits(sign | exp | (man << 42))
}

impl<'de> SliceDe<'de> {
    #[inline]
    fn peek(&self) -> Result<u8, GiveUp> {
        self.buf.get(self.pos).copied().ok_or(GiveUp)
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&'de [u8], GiveUp> {
        let end = self.pos.checked_add(n).ok_or(GiveUp)?;
        let s = self.buf.get(self.pos..end).ok_or(GiveUp)?;
        self.pos = end;
        Ok(s)
    }

    #[inline]
    fn array<const N: usize>(&mut self) -> Result<[u8; N], GiveUp> {
        self.take(N)?.try_into().map_err(|_| GiveUp)
    }

    /// The argument of an initial byte's additional information; `None`: indefinite.
    #[inline]
    fn arg(&mut self, info: u8) -> Result<Option<u64>, GiveUp> {
        Ok(Some(match info {
            0..=23 => u64::from(info),
            24 => u64::from(self.array::<1>()?[0]),
            25 => u64::from(u16::from_be_bytes(self.array()?)),
            26 => u64::from(u32::from_be_bytes(self.array()?)),
            27 => u64::from_be_bytes(self.array()?),
            31 => return Ok(None),
            _ => return Err(GiveUp),
        }))
    }

    #[inline]
    fn definite(&mut self, info: u8) -> Result<u64, GiveUp> {
        self.arg(info)?.ok_or(GiveUp)
    }

    #[inline]
    fn len(&mut self, info: u8) -> Result<Option<usize>, GiveUp> {
        match self.arg(info)? {
            None => Ok(None),
            Some(n) => usize::try_from(n).map(Some).map_err(|_| GiveUp),
        }
    }

    /// Reads the next item's head (and a string's content).
    #[inline]
    fn head(&mut self) -> Result<Head<'de>, GiveUp> {
        let b = self.array::<1>()?[0];
        let info = b & 0x1f;
        Ok(match b >> 5 {
            0 => Head::Uint(self.definite(info)?),
            1 => Head::Nint(self.definite(info)?),
            2 => {
                let n = usize::try_from(self.definite(info)?).map_err(|_| GiveUp)?;
                Head::Bytes(self.take(n)?)
            }
            3 => {
                let n = usize::try_from(self.definite(info)?).map_err(|_| GiveUp)?;
                Head::Text(std::str::from_utf8(self.take(n)?).map_err(|_| GiveUp)?)
            }
            4 => Head::Array(self.len(info)?),
            5 => Head::Map(self.len(info)?),
            6 => return Err(GiveUp), // tags: left to ciborium
            _ => match info {
                0..=23 => Head::Simple(info),
                25 => Head::Float(f16_to_f64(u16::from_be_bytes(self.array()?))),
                26 => Head::Float(f64::from(f32::from_be_bytes(self.array()?))),
                27 => Head::Float(f64::from_be_bytes(self.array()?)),
                _ => return Err(GiveUp), // two-byte simple values, break, reserved
            },
        })
    }

    fn uint(&mut self) -> Result<u64, GiveUp> {
        match self.head()? {
            Head::Uint(n) => Ok(n),
            _ => Err(GiveUp),
        }
    }

    fn int(&mut self) -> Result<i128, GiveUp> {
        match self.head()? {
            Head::Uint(n) => Ok(i128::from(n)),
            Head::Nint(n) => Ok(-1 - i128::from(n)),
            _ => Err(GiveUp),
        }
    }

    fn enter(&mut self) -> Result<(), GiveUp> {
        if self.depth >= MAX_DEPTH {
            return Err(GiveUp);
        }
        self.depth += 1;
        Ok(())
    }

    /// The most elements a container can still have: each takes at least one byte.
    fn cap_hint(&self, len: Option<usize>) -> Option<usize> {
        len.map(|n| n.min(self.buf.len() - self.pos))
    }

    fn seq<V: Visitor<'de>>(&mut self, len: Option<usize>, v: V) -> Result<V::Value, GiveUp> {
        self.enter()?;
        let mut acc = Seq {
            de: &mut *self,
            left: len,
            ended: false,
        };
        let value = v.visit_seq(&mut acc)?;
        acc.finish()?;
        self.depth -= 1;
        Ok(value)
    }

    fn map<V: Visitor<'de>>(&mut self, len: Option<usize>, v: V) -> Result<V::Value, GiveUp> {
        self.enter()?;
        let mut acc = Seq {
            de: &mut *self,
            left: len,
            ended: false,
        };
        let value = v.visit_map(&mut acc)?;
        acc.finish()?;
        self.depth -= 1;
        Ok(value)
    }
}

/// Elements of an array or entries of a map (`left` counts entries for a map).
struct Seq<'a, 'de> {
    de: &'a mut SliceDe<'de>,
    /// `None`: indefinite length, ended by a break byte.
    left: Option<usize>,
    /// An indefinite container's break byte was consumed.
    ended: bool,
}

impl Seq<'_, '_> {
    /// Whether another element follows (consuming a break byte if not).
    #[inline]
    fn more(&mut self) -> Result<bool, GiveUp> {
        match &mut self.left {
            Some(0) => Ok(false),
            Some(n) => {
                *n -= 1;
                Ok(true)
            }
            None if self.ended => Ok(false),
            None => {
                if self.de.peek()? == BREAK_BYTE {
                    self.de.pos += 1;
                    self.ended = true;
                    Ok(false)
                } else {
                    Ok(true)
                }
            }
        }
    }

    /// After the visitor: it must have taken every element (ciborium would leave the
    /// rest to be misread as what follows; we let it decide such input).
    fn finish(&mut self) -> Result<(), GiveUp> {
        match self.left {
            Some(0) => Ok(()),
            Some(_) => Err(GiveUp),
            None if self.ended => Ok(()),
            None => {
                if self.de.peek()? == BREAK_BYTE {
                    self.de.pos += 1;
                    Ok(())
                } else {
                    Err(GiveUp)
                }
            }
        }
    }
}

impl<'de> de::SeqAccess<'de> for Seq<'_, 'de> {
    type Error = GiveUp;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, GiveUp> {
        if !self.more()? {
            return Ok(None);
        }
        seed.deserialize(&mut *self.de).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        self.de.cap_hint(self.left)
    }
}

impl<'de> de::MapAccess<'de> for Seq<'_, 'de> {
    type Error = GiveUp;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, GiveUp> {
        if !self.more()? {
            return Ok(None);
        }
        seed.deserialize(&mut *self.de).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, GiveUp> {
        seed.deserialize(&mut *self.de)
    }

    fn size_hint(&self) -> Option<usize> {
        // an entry takes at least two bytes
        self.de.cap_hint(self.left).map(|n| n / 2)
    }
}

/// An enum: `"Variant"` (unit variants) or `{"Variant": value}` (the others), as
/// ciborium's serializer writes them.
struct Enum<'a, 'de> {
    de: &'a mut SliceDe<'de>,
    /// `Some(name)`: the variant was a bare name (a unit variant).
    name: Option<&'de str>,
}

impl<'de> de::EnumAccess<'de> for Enum<'_, 'de> {
    type Error = GiveUp;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), GiveUp> {
        let v = match self.name {
            Some(name) => seed.deserialize(de::value::BorrowedStrDeserializer::new(name))?,
            None => seed.deserialize(&mut *self.de)?,
        };
        Ok((v, self))
    }
}

impl<'de> de::VariantAccess<'de> for Enum<'_, 'de> {
    type Error = GiveUp;

    fn unit_variant(self) -> Result<(), GiveUp> {
        // `{"Unit": x}`: ciborium would leave `x` unread; let it decide
        self.name.map(|_| ()).ok_or(GiveUp)
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, GiveUp> {
        match self.name {
            None => seed.deserialize(&mut *self.de),
            Some(_) => Err(GiveUp),
        }
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, v: V) -> Result<V::Value, GiveUp> {
        match self.name {
            None => de::Deserializer::deserialize_any(&mut *self.de, v),
            Some(_) => Err(GiveUp),
        }
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, GiveUp> {
        match self.name {
            None => de::Deserializer::deserialize_any(&mut *self.de, v),
            Some(_) => Err(GiveUp),
        }
    }
}

impl<'de> de::Deserializer<'de> for &mut SliceDe<'de> {
    type Error = GiveUp;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, GiveUp> {
        match self.head()? {
            Head::Uint(n) => v.visit_u64(n),
            Head::Nint(n) => match i64::try_from(n) {
                Ok(n) => v.visit_i64(-1 - n),
                Err(_) => v.visit_i128(-1 - i128::from(n)),
            },
            Head::Bytes(b) => v.visit_borrowed_bytes(b),
            Head::Text(s) => v.visit_borrowed_str(s),
            Head::Array(len) => self.seq(len, v),
            Head::Map(len) => self.map(len, v),
            Head::Simple(FALSE) => v.visit_bool(false),
            Head::Simple(TRUE) => v.visit_bool(true),
            Head::Simple(NULL | UNDEFINED) => v.visit_none(),
            Head::Simple(_) => Err(GiveUp),
            Head::Float(f) => v.visit_f64(f),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value, GiveUp> {
        match self.head()? {
            Head::Simple(FALSE) => v.visit_bool(false),
            Head::Simple(TRUE) => v.visit_bool(true),
            _ => Err(GiveUp),
        }
    }

    fn deserialize_i8<V: Visitor<'de>>(self, v: V) -> Result<V::Value, GiveUp> {
        self.deserialize_i64(v)
    }

    fn deserialize_i16<V: Visitor<'de>>(self, v: V) -> Result<V::Value, GiveUp> {
        self.deserialize_i64(v)
    }

    fn deserialize_i32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, GiveUp> {
        self.deserialize_i64(v)
    }

    fn deserialize_i64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, GiveUp> {
        v.visit_i64(i64::try_from(self.int()?).map_err(|_| GiveUp)?)
    }

    fn deserialize_i128<V: Visitor<'de>>(self, v: V) -> Result<V::Value, GiveUp> {
        v.visit_i128(self.int()?)
    }

    fn deserialize_u8<V: Visitor<'de>>(self, v: V) -> Result<V::Value, GiveUp> {
        self.deserialize_u64(v)
    }

    fn deserialize_u16<V: Visitor<'de>>(self, v: V) -> Result<V::Value, GiveUp> {
        self.deserialize_u64(v)
    }

    fn deserialize_u32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, GiveUp> {
        self.deserialize_u64(v)
    }

    fn deserialize_u64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, GiveUp> {
        v.visit_u64(self.uint()?)
    }

    fn deserialize_u128<V: Visitor<'de>>(self, v: V) -> Result<V::Value, GiveUp> {
        v.visit_u128(u128::from(self.uint()?))
    }

    fn deserialize_f32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, GiveUp> {
        self.deserialize_f64(v)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, GiveUp> {
        match self.head()? {
            Head::Float(f) => v.visit_f64(f),
            _ => Err(GiveUp),
        }
    }

    fn deserialize_char<V: Visitor<'de>>(self, v: V) -> Result<V::Value, GiveUp> {
        match self.head()? {
            Head::Text(s) if s.len() <= 4 => {
                let mut chars = s.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => v.visit_char(c),
                    _ => Err(GiveUp),
                }
            }
            _ => Err(GiveUp),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, GiveUp> {
        match self.head()? {
            Head::Text(s) => v.visit_borrowed_str(s),
            _ => Err(GiveUp),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, GiveUp> {
        self.deserialize_str(v)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, v: V) -> Result<V::Value, GiveUp> {
        match self.head()? {
            Head::Bytes(b) => v.visit_borrowed_bytes(b),
            Head::Array(len) => self.seq(len, v),
            _ => Err(GiveUp),
        }
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, v: V) -> Result<V::Value, GiveUp> {
        self.deserialize_bytes(v)
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, GiveUp> {
        match self.peek()? {
            NULL_BYTE | UNDEFINED_BYTE => {
                self.pos += 1;
                v.visit_none()
            }
            _ => v.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, v: V) -> Result<V::Value, GiveUp> {
        match self.head()? {
            Head::Simple(NULL | UNDEFINED) => v.visit_unit(),
            _ => Err(GiveUp),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, GiveUp> {
        self.deserialize_unit(v)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, GiveUp> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, GiveUp> {
        match self.head()? {
            Head::Array(len) => self.seq(len, v),
            _ => Err(GiveUp), // (ciborium also reads a byte string as a sequence)
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, v: V) -> Result<V::Value, GiveUp> {
        self.deserialize_seq(v)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        v: V,
    ) -> Result<V::Value, GiveUp> {
        self.deserialize_seq(v)
    }

    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, GiveUp> {
        match self.head()? {
            Head::Map(len) => self.map(len, v),
            _ => Err(GiveUp),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, GiveUp> {
        self.deserialize_map(v)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        _variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, GiveUp> {
        if name == "@@TAG@@" {
            return Err(GiveUp); // ciborium's tag wrappers
        }
        let name = match self.head()? {
            Head::Map(Some(1)) => None,
            Head::Text(s) => Some(s),
            _ => return Err(GiveUp),
        };
        self.enter()?;
        let value = v.visit_enum(Enum {
            de: &mut *self,
            name,
        })?;
        self.depth -= 1;
        Ok(value)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, v: V) -> Result<V::Value, GiveUp> {
        match self.head()? {
            Head::Text(s) => v.visit_borrowed_str(s),
            Head::Bytes(b) => v.visit_borrowed_bytes(b),
            _ => Err(GiveUp),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, GiveUp> {
        self.deserialize_any(v)
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests;
