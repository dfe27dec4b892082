//! Integration tests for proxmox-client: schema conformance, wiremock per endpoint, TLS.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod endpoints;
mod schema;
