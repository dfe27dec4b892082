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

pub mod apply_mode;
pub mod client;
pub mod config;
pub mod cosi;
pub mod crypto;
mod error;
pub mod etcd;
pub mod expiry;
pub mod health;
pub mod k8s_upgrade;
pub mod kube;
pub mod kube_components;
pub mod kubeconfig;
pub mod patch;
mod reset;
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
    /// `cosi.resource` package: the COSI `State` service (`talosctl get`).
    pub mod cosi {
        /// `cosi.resource`.
        pub mod resource {
            tonic::include_proto!("cosi.resource");
        }
    }
    /// `resource.config` package: specs of the `config` namespace's resources.
    pub mod resource {
        /// `resource.config`.
        pub mod config {
            tonic::include_proto!("resource.config");
        }
    }
    /// `storage` package: `StorageService`.
    pub mod storage {
        tonic::include_proto!("storage");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod wire_tests {
    use prost::Message;

    use crate::proto::{common, machine, storage};

    /// Field numbers as Talos 1.12 has them, checked on the encoded bytes.
    #[test]
    fn field_numbers_match_talos() {
        let req = machine::ApplyConfigurationRequest {
            data: b"x".to_vec(),
            mode: machine::apply_configuration_request::Mode::Try as i32,
            dry_run: true,
            try_mode_timeout: Some(prost_types::Duration {
                seconds: 60,
                nanos: 0,
            }),
        };
        // data=1 (0x0a), mode=4 (0x20) = TRY(4), dry_run=5 (0x28), try_mode_timeout=6 (0x32)
        assert_eq!(
            req.encode_to_vec(),
            [0x0a, 1, b'x', 0x20, 4, 0x28, 1, 0x32, 2, 0x08, 60]
        );
        let member = machine::EtcdMember {
            id: 1,
            hostname: "h".into(),
            ..Default::default()
        };
        // id=2 (0x10), hostname=3 (0x1a): there is no field 1.
        assert_eq!(member.encode_to_vec(), [0x10, 1, 0x1a, 1, b'h']);
        let md = common::Metadata {
            hostname: "a".into(),
            error: "b".into(),
            status: None,
        };
        assert_eq!(md.encode_to_vec(), [0x0a, 1, b'a', 0x12, 1, b'b']);
        let disk = storage::Disk {
            device_name: "/".into(),
            r#type: storage::disk::DiskType::Nvme as i32,
            system_disk: true,
            ..Default::default()
        };
        // device_name=3 (0x1a), type=9 (0x48) = NVME(3), system_disk=11 (0x58)
        assert_eq!(disk.encode_to_vec(), [0x1a, 1, b'/', 0x48, 3, 0x58, 1]);
        let up = machine::UpgradeRequest {
            image: "i".into(),
            reboot_mode: machine::upgrade_request::RebootMode::Powercycle as i32,
            ..Default::default()
        };
        assert_eq!(up.encode_to_vec(), [0x0a, 1, b'i', 0x28, 1]);
        let reset = machine::ResetRequest {
            mode: machine::reset_request::WipeMode::UserDisks as i32,
            system_partitions_to_wipe: vec![machine::ResetPartitionSpec {
                label: "S".into(),
                wipe: true,
            }],
            ..Default::default()
        };
        assert_eq!(
            reset.encode_to_vec(),
            [0x1a, 5, 0x0a, 1, b'S', 0x10, 1, 0x28, 2]
        );
        // recover_etcd=1 (0x08), recover_skip_hash_check=2 (0x10).
        let boot = machine::BootstrapRequest {
            recover_etcd: true,
            recover_skip_hash_check: true,
        };
        assert_eq!(boot.encode_to_vec(), [0x08, 1, 0x10, 1]);
        // EtcdRecoverResponse: messages=1, each EtcdRecover's metadata=1.
        let rec = machine::EtcdRecoverResponse {
            messages: vec![machine::EtcdRecover {
                metadata: Some(common::Metadata {
                    hostname: "n".into(),
                    ..Default::default()
                }),
            }],
        };
        assert_eq!(rec.encode_to_vec(), [0x0a, 5, 0x0a, 3, 0x0a, 1, b'n']);
        assert!(machine::EtcdSnapshotRequest {}.encode_to_vec().is_empty());
    }
}
