//! Shared memory regions: an anonymous memory file mapped `MAP_SHARED`.
//!
//! A [`ShmRegion`] has no file-system name: the only way another process reaches it is by
//! being handed its file descriptor (inherited at start, or sent with a frame).
pub use crate::sys::shm::{file_size_limit, ShmRegion, ShmWindow};
