//! Linux implementations.

pub(crate) mod fdpass;
pub(crate) mod futex;
pub(crate) mod keeper;
pub(crate) mod observe;
pub(crate) mod os;
pub(crate) mod shm;
pub(crate) mod socket;
