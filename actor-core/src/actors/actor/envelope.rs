//! What travels in a mailbox (a message, a call, a stop request) and how it is encoded.

use super::ActorError;
use crate::error::{PutError, PutTimeoutError, TryPutError};
use serde::de::{self, DeserializeOwned, SeqAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::marker::PhantomData;

/// What travels in a mailbox: a message, a call (request number + message), or a stop
/// request. Encoded as a CBOR array: `[0, message]`, `[1, number, bytes]`, `[2]`, where
/// a call's message is CBOR inside a byte string: its kind and number are read before
/// the message, so a call whose message cannot be read is still answered (with an
/// error) instead of leaving its caller without a reply. A message or call whose
/// [`Meta`] says something carries it after the message: the stamp, then the trace
/// context when there is one (`[trace_id, span_id, pid]`): `[0, message, sent_ns]`,
/// `[1, number, bytes, sent_ns]`, `[0, message, sent_ns, [trace_id, span_id, pid]]`,
/// `[1, number, bytes, sent_ns, [trace_id, span_id, pid]]` (`sent_ns` is 0 when only
/// the context is carried).
pub(crate) enum Envelope<M> {
    Msg(M, Meta),
    Call(u64, M, Meta),
    Stop,
    /// (decoding only) a call whose message could not be read, and why.
    BadCall(u64, String),
}

/// What a message carries besides itself: when it was sent (`CLOCK_MONOTONIC` ns, for
/// the mailbox-wait histogram; 0 when the sender did not time it) and the sender's
/// trace context (when a subscriber of the sender's was interested).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Meta {
    pub(crate) sent_ns: u64,
    pub(crate) trace: Option<super::trace::TraceCtx>,
}

impl Meta {
    /// Whether it adds nothing to the envelope.
    fn is_empty(&self) -> bool {
        self.sent_ns == 0 && self.trace.is_none()
    }

    /// Items it adds after the message: none, the stamp, or the stamp and the context.
    fn items(&self) -> usize {
        match (self.is_empty(), self.trace.is_some()) {
            (true, _) => 0,
            (false, false) => 1,
            (false, true) => 2,
        }
    }

    fn serialize_into<T: SerializeTuple>(&self, t: &mut T) -> Result<(), T::Error> {
        if !self.is_empty() {
            t.serialize_element(&self.sent_ns)?;
        }
        if let Some(c) = &self.trace {
            t.serialize_element(&(c.trace_id, c.span_id, c.pid))?;
        }
        Ok(())
    }
}

/// A byte string (a call's encoded message).
struct AsBytes<'a>(&'a [u8]);

impl Serialize for AsBytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

/// A call's message, decoded straight from its byte string (borrowed from the frame by
/// the fast decoder, lent from a scratch buffer by ciborium: no copy either way); a
/// message that cannot be read is kept as its error.
struct CallMsg<M>(Result<M, String>);

impl<'de, M: DeserializeOwned> Deserialize<'de> for CallMsg<M> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct B<M>(PhantomData<M>);
        impl<'de, M: DeserializeOwned> Visitor<'de> for B<M> {
            type Value = CallMsg<M>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<CallMsg<M>, E> {
                Ok(CallMsg(
                    crate::codec::decode::<M>(v, Vec::new()).map_err(|e| e.to_string()),
                ))
            }
        }
        d.deserialize_bytes(B(PhantomData))
    }
}

thread_local! {
    /// Where a call's message is encoded before it goes into its envelope.
    static CALL_SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A scratch buffer grown past this by a large message is given back.
const CALL_SCRATCH_KEEP: usize = 64 * 1024;

/// `[KIND_CALL, n, bytes of m]`, `m` encoded in `buf` first.
fn serialize_call<S: Serializer, M: Serialize>(
    s: S,
    n: u64,
    m: &M,
    meta: &Meta,
    buf: &mut Vec<u8>,
) -> Result<S::Ok, S::Error> {
    crate::codec::encode(m, buf, None).map_err(|e| serde::ser::Error::custom(e.to_string()))?;
    let mut t = s.serialize_tuple(3 + meta.items())?;
    t.serialize_element(&KIND_CALL)?;
    t.serialize_element(&n)?;
    t.serialize_element(&AsBytes(buf))?;
    meta.serialize_into(&mut t)?;
    t.end()
}

pub(super) const KIND_MSG: u8 = 0;
const KIND_CALL: u8 = 1;
const KIND_STOP: u8 = 2;

impl<M: Serialize> Serialize for Envelope<M> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Envelope::Msg(m, meta) => {
                let mut t = s.serialize_tuple(2 + meta.items())?;
                t.serialize_element(&KIND_MSG)?;
                t.serialize_element(m)?;
                meta.serialize_into(&mut t)?;
                t.end()
            }
            Envelope::Call(n, m, meta) => {
                // the message as a byte string of its own, so that a receiver that cannot
                // read it still has the call's number (and answers it with an error);
                // encoded in a per-thread scratch buffer: no allocation per call
                CALL_SCRATCH.with(|cell| match cell.try_borrow_mut() {
                    Ok(mut buf) => {
                        buf.clear();
                        let r = serialize_call(s, *n, m, meta, &mut buf);
                        if buf.capacity() > CALL_SCRATCH_KEEP {
                            *buf = Vec::new();
                        }
                        r
                    }
                    // (a call envelope encoded inside another one's message)
                    Err(_) => serialize_call(s, *n, m, meta, &mut Vec::new()),
                })
            }
            Envelope::Stop => {
                let mut t = s.serialize_tuple(1)?;
                t.serialize_element(&KIND_STOP)?;
                t.end()
            }
            Envelope::BadCall(..) => Err(serde::ser::Error::custom(
                "an undecodable call is not sent again",
            )),
        }
    }
}

impl<'de, M: DeserializeOwned> Deserialize<'de> for Envelope<M> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<M>(PhantomData<M>);
        impl<'de, M: DeserializeOwned> Visitor<'de> for V<M> {
            type Value = Envelope<M>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mailbox envelope [0, message], [1, number, message] or [2]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                let kind: u8 = a
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                match kind {
                    KIND_MSG => {
                        let m = a
                            .next_element()?
                            .ok_or_else(|| de::Error::invalid_length(1, &self))?;
                        Ok(Envelope::Msg(m, read_meta(&mut a)?))
                    }
                    KIND_CALL => {
                        let n = a
                            .next_element()?
                            .ok_or_else(|| de::Error::invalid_length(1, &self))?;
                        let CallMsg(m) = a
                            .next_element()?
                            .ok_or_else(|| de::Error::invalid_length(2, &self))?;
                        let meta = read_meta(&mut a)?;
                        // the number is known: a message that cannot be read is answered
                        Ok(match m {
                            Ok(m) => Envelope::Call(n, m, meta),
                            Err(e) => Envelope::BadCall(n, e),
                        })
                    }
                    KIND_STOP => Ok(Envelope::Stop),
                    k => Err(de::Error::custom(format!(
                        "invalid mailbox envelope (kind {k})"
                    ))),
                }
            }
        }
        d.deserialize_seq(V(PhantomData))
    }
}

/// The optional fields after a message.
fn read_meta<'de, A: SeqAccess<'de>>(a: &mut A) -> Result<Meta, A::Error> {
    let sent_ns = a.next_element::<u64>()?.unwrap_or(0);
    let trace = a
        .next_element::<(u64, u64, u32)>()?
        .map(|(trace_id, span_id, pid)| super::trace::TraceCtx {
            trace_id,
            span_id,
            pid,
        });
    Ok(Meta { sent_ns, trace })
}

impl<M> Envelope<M> {
    /// The sender's message back out of a refused envelope (`Stop` carries none).
    fn into_msg(self) -> Option<M> {
        match self {
            Envelope::Msg(m, _) | Envelope::Call(_, m, _) => Some(m),
            Envelope::Stop | Envelope::BadCall(..) => None,
        }
    }
}

/// A refused message/call envelope's error, with the caller's message given back
/// (`Err` with `()` for an envelope that carries none).
pub(super) fn give_back<M, E: GiveBack<Envelope<M>>>(e: E) -> Result<E::With<M>, E::With<()>> {
    e.give_back(Envelope::into_msg)
}

/// The three put errors' `filter_map`, for [`give_back`].
pub(super) trait GiveBack<T> {
    type With<U>;
    fn give_back<U>(self, f: impl FnOnce(T) -> Option<U>) -> Result<Self::With<U>, Self::With<()>>;
}

macro_rules! give_back_for {
    ($($e:ident),*) => {$(
        impl<T> GiveBack<T> for $e<T> {
            type With<U> = $e<U>;
            fn give_back<U>(
                self,
                f: impl FnOnce(T) -> Option<U>,
            ) -> Result<$e<U>, $e<()>> {
                self.filter_map(f)
            }
        }
    )*};
}
give_back_for!(PutError, TryPutError, PutTimeoutError);

/// A reply: the request's number and the handler's result.
pub(crate) type ReplyOf<R> = (u64, Result<R, ActorError>);
