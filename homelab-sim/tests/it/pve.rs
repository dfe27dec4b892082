//! Integration tests of the simulated pve.
