//! Sending file descriptors with bytes over a Unix stream socket (`SCM_RIGHTS`).
pub use crate::sys::fdpass::{recv, send, shutdown, socketpair, MAX_FDS_PER_MSG};
