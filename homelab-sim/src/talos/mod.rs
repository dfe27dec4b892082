//! Simulated Talos nodes.
