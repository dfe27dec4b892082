//! Integration tests for proxmox-client: schema conformance, wiremock per endpoint, TLS.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod auth;
mod common;
mod endpoints;
mod errors;
mod guest;
mod lost_answers;
mod passthrough;
mod schema;
mod sim;
mod tls;
