//! Unix stream socket options: buffer sizes and one-directional shutdown.
pub use crate::sys::socket::{set_buffer_sizes, shutdown, Direction};
