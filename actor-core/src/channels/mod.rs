//! The *channels* layer: how values cross between processes.
//!
//! [`codec`] (the wire format; handles travel as descriptors), [`pipe`] (Python's `Pipe`,
//! `Connection` and `wait`), [`queue`] (`Queue`, `SimpleQueue`, `JoinableQueue` over a
//! shared-memory ring) and [`connection`]. It builds on `procactor-transports` and the
//! crate's error types only: nothing here knows about processes, actors or services.

pub(crate) mod aio;
pub(crate) mod bytes;
pub mod codec;
pub mod connection;
pub(crate) mod iter;
pub mod pipe;
mod pipe_async;
mod pipe_io;
pub mod queue;
mod wait;
