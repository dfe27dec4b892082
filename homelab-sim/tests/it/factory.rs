//! Integration tests of the simulated factory.
