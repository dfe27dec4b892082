//! The one integration-test binary of talos-factory: wiremock per endpoint.
#![allow(clippy::unwrap_used)]

mod client;
