//! The one integration-test binary of sops-age.
#![allow(clippy::unwrap_used)]

mod common;
mod errors;
mod interop;
mod roundtrip;
