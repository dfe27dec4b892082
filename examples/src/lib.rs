//! Runnable examples of the homelab libraries live in `examples/examples/`; run one with
//! `cargo run -p homelab-examples --example NAME`. Example homelab configurations live in
//! the folders beside it (`examples/single-node/`, ...).

pub mod guest_lifecycle;
