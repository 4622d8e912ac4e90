//! Process plumbing: re-executing the current binary with an inherited control socket,
//! pidfds (signals, exit status, readiness), the parent-death signal, polling.
pub use crate::sys::os::*;
