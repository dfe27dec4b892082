//! The runnable examples' shared code, run against the simulator.

mod lifecycle;
