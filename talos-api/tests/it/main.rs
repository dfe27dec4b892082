//! The one integration-test binary of talos-api.
#![allow(clippy::unwrap_used)]

mod common;
mod etcd;
mod generate;
mod grpc;

use std::sync::OnceLock;

use talos_api::secrets::SecretsBundle;

/// One RSA-4096 bundle for the whole binary: key generation is the slow part.
pub fn bundle() -> &'static SecretsBundle {
    static B: OnceLock<SecretsBundle> = OnceLock::new();
    B.get_or_init(|| SecretsBundle::generate().expect("generate secrets"))
}
