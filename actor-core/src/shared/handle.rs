//! What the four shared-memory handles ([`Value`](super::Value), [`Array`](super::Array),
//! [`RawValue`](super::RawValue), [`RawArray`](super::RawArray)) share: the tag naming
//! each kind in its region, taking a locked handle's lock, and the `Serialize`,
//! `Deserialize`, `Clone` and `Debug` of a handle.

use crate::error::LockError;
use crate::Pod;
use procactor_transports::pod::{PodGuard, PodSlice};
use procactor_transports::robust::Acquired;
use std::time::Instant;

pub(super) const TAG_VALUE: u32 = 1;
pub(super) const TAG_ARRAY: u32 = 2;
pub(super) const TAG_RAW_VALUE: u32 = 3;
pub(super) const TAG_RAW_ARRAY: u32 = 4;

/// Takes a slice's lock until `deadline`, wrapping the guard; `Ok(None)` on timeout.
pub(super) fn lock_with<'a, T: Pod, G>(
    s: &'a PodSlice<T>,
    deadline: Option<Instant>,
    wrap: fn(PodGuard<'a, T>) -> G,
) -> Result<Option<G>, LockError<G>> {
    match s.lock(deadline) {
        None => Ok(None),
        Some((g, Acquired::Clean)) => Ok(Some(wrap(g))),
        Some((g, Acquired::OwnerDied)) => Err(LockError::OwnerDied(wrap(g))),
    }
}

/// Takes a slice's lock, waiting as long as it takes.
pub(super) fn lock_forever<'a, T: Pod, G>(
    s: &'a PodSlice<T>,
    wrap: fn(PodGuard<'a, T>) -> G,
) -> Result<G, LockError<G>> {
    loop {
        // a lock without a deadline only returns once acquired; loop for the type's sake
        match lock_with(s, None, wrap) {
            Ok(Some(g)) => return Ok(g),
            Ok(None) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// The guard whichever way the lock was acquired.
pub(super) fn either<G>(r: Result<G, LockError<G>>) -> G {
    r.unwrap_or_else(LockError::into_inner)
}

/// `Serialize`, `Deserialize`, `Clone` and `Debug` for a handle `$t<T>` whose one field
/// `slice` is an `Arc` of the view type `$view` (which must be in scope where it is used).
macro_rules! handle_serde {
    ($t:ident, $view:ident, $tag:expr, $len:expr) => {
        impl<T: $crate::Pod> ::serde::Serialize for $t<T> {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                ::serde::Serialize::serialize(&$crate::codec::SendFd(self.slice.fd()), s)
            }
        }

        impl<'de, T: $crate::Pod> ::serde::Deserialize<'de> for $t<T> {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                use ::serde::de::Error as _;
                let $crate::codec::RecvFd(fd) =
                    <$crate::codec::RecvFd as ::serde::Deserialize>::deserialize(d)?;
                let slice = $view::from_fd(fd, $tag, $len).map_err(|e| {
                    D::Error::custom(format!(
                        "cannot map a {}<{}>: {e}",
                        stringify!($t),
                        std::any::type_name::<T>()
                    ))
                })?;
                Ok(Self {
                    slice: ::std::sync::Arc::new(slice),
                })
            }
        }

        impl<T> Clone for $t<T> {
            fn clone(&self) -> Self {
                Self {
                    slice: ::std::sync::Arc::clone(&self.slice),
                }
            }
        }

        impl<T> std::fmt::Debug for $t<T> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($t))
                    .field("type", &std::any::type_name::<T>())
                    .field("slice", &self.slice)
                    .finish()
            }
        }
    };
}
pub(super) use handle_serde;
