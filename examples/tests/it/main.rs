//! The runnable examples' shared code, run against the simulator.
#![allow(clippy::unwrap_used)]

mod lifecycle;
