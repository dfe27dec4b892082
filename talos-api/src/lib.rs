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
//!
//! Generate a cluster's configs (what `talosctl gen secrets` + `gen config` write):
//!
//! ```
//! use talos_api::config::{ClusterInput, MachineConfig, MachineType, NodeInput, admin_talosconfig};
//! use talos_api::secrets::{SecretsBundle, SecretsOptions, ServiceAccountKeyKind};
//!
//! # fn main() -> Result<(), talos_api::Error> {
//! // Talos 1.12 uses RSA-4096 for the service-account key (the default); ECDSA is faster.
//! let secrets = SecretsBundle::generate_with(
//!     &SecretsOptions::default().service_account(ServiceAccountKeyKind::EcdsaP256),
//! )?;
//! let cluster = ClusterInput::new("lab", "https://192.168.1.10:6443")?.install_disk("/dev/vda");
//! let cp = MachineConfig::generate(&cluster, &secrets, MachineType::ControlPlane, &NodeInput::default())?;
//! assert!(cp.to_yaml().starts_with("version: v1alpha1\ndebug: false\npersist: true\nmachine:\n"));
//! let talosconfig = admin_talosconfig("lab", &secrets, &["192.168.1.10".into()], &[])?;
//! assert!(talosconfig.to_yaml().starts_with("context: lab\n"));
//! # Ok(()) }
//! ```
//!
//! Apply it to a node in maintenance mode, then talk mTLS:
//!
//! ```no_run
//! use std::time::Duration;
//! use talos_api::client::{ApplyMode, ClientBuilder};
//! use talos_api::health::{self, WaitOptions};
//! # async fn run(config_yaml: &str, talosconfig: &talos_api::talosconfig::Talosconfig) -> Result<(), talos_api::Error> {
//! let maintenance = ClientBuilder::maintenance("192.168.1.11").build()?;
//! maintenance.apply_configuration(config_yaml.as_bytes(), ApplyMode::Auto, false).await?;
//! let wait = WaitOptions::new(Duration::from_secs(600));
//! let client = health::wait_mtls_ready(&ClientBuilder::from_talosconfig(talosconfig, None)?, &wait).await?;
//! client.bootstrap().await?;
//! health::wait_etcd_healthy(&client, &wait).await?;
//! let kubeconfig = String::from_utf8_lossy(&client.kubeconfig().await?).into_owned();
//! health::wait_kubernetes_ready(&kubeconfig, &wait).await?;
//! # Ok(()) }
//! ```

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
