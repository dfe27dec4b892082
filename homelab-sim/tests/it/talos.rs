//! Integration tests of the simulated talos.
