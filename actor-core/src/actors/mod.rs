//! The *actors* layer: process actors ([`actor`]: typed mailboxes, calls) and
//! supervision trees ([`supervisor`]). It builds on the channels, process and shared
//! state layers.

pub mod actor;
pub mod supervisor;
