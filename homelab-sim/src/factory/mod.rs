//! The simulated Talos Image Factory.
