//! What every primitive's shared-memory region shares: the magic word naming its kind,
//! creating and mapping it, the deadline helpers of the waiting loops, and the
//! `Serialize`/`Deserialize`/`Debug` of a handle that is one region.

use crate::error::Error;
use procactor_transports::deadline::Deadline;
use procactor_transports::shm::ShmRegion;
use procactor_transports::OwnedFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Every region starts with a magic word naming its kind, so that a handle of one kind
/// cannot be decoded as another.
pub(super) const OFF_MAGIC: usize = 0;
pub(super) const MAGIC_LOCK: u32 = 0x7061_6c6b; // "palk"
pub(super) const MAGIC_RLOCK: u32 = 0x7061_726c;
pub(super) const MAGIC_SEM: u32 = 0x7061_736d;
pub(super) const MAGIC_BSEM: u32 = 0x7061_6273;
pub(super) const MAGIC_EVENT: u32 = 0x7061_6576;
pub(super) const MAGIC_COND: u32 = 0x7061_636e;
pub(super) const MAGIC_BARRIER: u32 = 0x7061_6272;

/// Size of the fixed-size primitives' regions (one page on every Linux we run on).
pub(super) const SMALL: usize = 4096;

pub(super) fn create(name: &str, len: usize, magic: u32) -> Result<Arc<ShmRegion>, Error> {
    let r = ShmRegion::create(name, len)?;
    r.atomic_u32(OFF_MAGIC).store(magic, Ordering::Release);
    Ok(Arc::new(r))
}

pub(super) fn map(
    fd: OwnedFd,
    min_len: usize,
    magic: u32,
    what: &str,
) -> Result<Arc<ShmRegion>, String> {
    let r = ShmRegion::from_fd(fd).map_err(|e| format!("cannot map a {what}: {e}"))?;
    if r.len() < min_len || r.atomic_u32(OFF_MAGIC).load(Ordering::Acquire) != magic {
        return Err(format!("the descriptor is not a procactor {what}"));
    }
    Ok(Arc::new(r))
}

pub(super) fn passed(deadline: Option<Instant>) -> bool {
    Deadline::from(deadline).expired()
}

/// The end of a sleep that must look around (liveness checks) after `tick` at most:
/// `deadline`, or `tick` from now if that is sooner.
pub(super) fn tick_end(deadline: Option<Instant>, tick: Duration) -> Option<Instant> {
    let wake_at = Instant::now() + tick;
    Some(deadline.map_or(wake_at, |d| d.min(wake_at)))
}

pub(super) fn fmt_region(
    f: &mut std::fmt::Formatter<'_>,
    name: &str,
    r: &ShmRegion,
) -> std::fmt::Result {
    f.debug_struct(name)
        .field("region", r)
        .finish_non_exhaustive()
}

/// Serialize/Deserialize/Debug for a handle that is one region (a struct with an
/// `r: Arc<ShmRegion>` field).
macro_rules! region_handle {
    ($t:ident, $magic:expr, $min:expr) => {
        impl ::serde::Serialize for $t {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                ::serde::Serialize::serialize(&$crate::codec::SendFd(self.r.fd()), s)
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $t {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                use ::serde::de::Error as _;
                let $crate::codec::RecvFd(fd) =
                    <$crate::codec::RecvFd as ::serde::Deserialize>::deserialize(d)?;
                let r = $crate::shared::sync::region::map(fd, $min, $magic, stringify!($t))
                    .map_err(D::Error::custom)?;
                Ok(Self { r })
            }
        }

        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                $crate::shared::sync::region::fmt_region(f, stringify!($t), &self.r)
            }
        }
    };
}
pub(super) use region_handle;
