//! The *services* layer: [`pool`] (Python's `Pool`) and [`manager`] (Python's
//! `Manager`: a server process holding shared objects, local or over TCP). It builds on
//! the channels, process and shared state layers.

pub mod manager;
pub mod pool;
