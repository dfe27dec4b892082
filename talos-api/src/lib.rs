//! Talos gRPC API client, talosconfig, secrets bundle and machine-config generation.
//!
//! - [`secrets::SecretsBundle`]: `talosctl gen secrets` (generate, read, write).
//! - [`config`]: machine configs for the Talos 1.12 contract, config patches, and the admin
//!   talosconfig.
//! - [`talosconfig::Talosconfig`]: read, write and merge `~/.talos/config`.
//! - [`client::Client`]: the Talos API over gRPC, in maintenance mode or with mTLS.
//! - [`health`]: waits with deadlines and progress callbacks.
//!
//! Wire facts (field numbers, PEM labels, YAML layout) follow Talos 1.12.

pub mod client;
pub mod config;
pub mod crypto;
mod error;
pub mod health;
pub mod kubeconfig;
pub mod patch;
pub mod secrets;
pub mod talosconfig;
pub mod yaml;

pub use error::{Error, NodeError, Result};

/// Generated protobuf messages and gRPC stubs (Talos 1.12 field numbers).
pub mod proto {
    #![allow(
        missing_docs,
        clippy::all,
        missing_debug_implementations,
        rust_2018_idioms
    )]
    /// `google.rpc` (Status).
    pub mod google {
        /// `google.rpc`.
        pub mod rpc {
            tonic::include_proto!("google.rpc");
        }
    }
    /// `common` package.
    pub mod common {
        tonic::include_proto!("common");
    }
    /// `machine` package: `MachineService`.
    pub mod machine {
        tonic::include_proto!("machine");
    }
    /// `storage` package: `StorageService`.
    pub mod storage {
        tonic::include_proto!("storage");
    }
}
