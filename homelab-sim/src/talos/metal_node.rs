//! Simulated bare-metal Talos nodes: a [`MetalMachine`] that has network-booted comes up as a
//! Talos node of the same kind as the VM nodes (same apid, Kubernetes API, persistence and
//! event log), listening on its leased address.
//!
//! What Talos does after the kernel starts (siderolabs/talos):
//! - `internal/app/machined/pkg/runtime/v1alpha1/platform/metal/metal.go`,
//!   `Metal.Configuration`: the first `talos.config=` of the kernel command line is the
//!   config source; without one (or with `talos.config=none`) it answers
//!   `ErrNoConfigSource`, and machined starts the maintenance service (apid without client
//!   auth, waiting for `ApplyConfiguration`); otherwise it downloads the URL.
//! - `internal/app/machined/pkg/runtime/v1alpha1/v1alpha1_sequencer.go`, `Initialize` and
//!   `Install`: a downloaded config is validated (a bad one fails the boot), the installer
//!   writes the image named by `machine.install.image` to `machine.install.disk`, and the
//!   machine reboots into the installed system, which runs with the config (normal mode,
//!   mTLS against the config's OS CA).
//!
//! Here the install is the same state change the maintenance-mode `ApplyConfiguration` makes
//! for a VM node (`apid.rs`): config stored on the node's disk (its state file under
//! `<state_dir>/talos/`), installed, version and schematic of the installer image.
//!
//! **Identity:** a metal node is keyed `("metal", id)` where `id` is 1 000 000 000 plus the
//! low 24 bits of its MAC (Proxmox VMIDs stop at 999 999 999, so the two never meet). A
//! sidecar `metal-<id>.machine.json` remembers its MAC, address, name and disks, so that a
//! later process with the same state directory boots an installed machine from its disk
//! ([`TalosRuntime::resume_metal`]).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::node::{self, DiskInfo, NodeSnapshot, NodeState};
use super::{TalosRuntime, TalosSimError};
use crate::metal::{BootReport, MetalBootError, MetalMachine};

/// The Proxmox-node part of a metal node's key.
pub const METAL_KEY: &str = "metal";

/// A bare-metal machine: its NIC (network boot) and its disks.
#[derive(Debug, Clone)]
pub struct MetalSpec {
    /// The machine as it network-boots.
    pub machine: MetalMachine,
    /// A name for logs before a config names it.
    pub name: String,
    /// Its disks (the install disk must be one of them).
    pub disks: Vec<DiskInfo>,
}

/// How a powered-on machine came up.
#[derive(Debug)]
#[non_exhaustive]
pub struct MetalBooted {
    /// What the network boot fetched.
    pub report: BootReport,
    /// Whether it installed from a fetched config (else: maintenance mode).
    pub installed: bool,
    /// The node as it is now.
    pub node: NodeSnapshot,
}

/// Why a metal machine did not come up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetalNodeError {
    /// The network boot failed.
    #[error("network boot: {0}")]
    Boot(#[from] MetalBootError),
    /// The fetched config was refused (Talos fails the boot sequence).
    #[error("the fetched machine config is invalid: {0}")]
    InvalidConfig(String),
    /// Its state could not be stored.
    #[error("{0}")]
    State(String),
}

/// What the sidecar file keeps about a machine.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct MachineRecord {
    name: String,
    mac: [u8; 6],
    ip: Ipv4Addr,
    disks: Vec<(String, u64)>,
}

/// The key's number for a MAC (see the module docs).
pub fn metal_id(mac: &[u8; 6]) -> u32 {
    1_000_000_000 + (u32::from(mac[3]) << 16 | u32::from(mac[4]) << 8 | u32::from(mac[5]))
}

/// Check a downloaded config as Talos does before installing (parse, validate, the install
/// disk exists and is not a CD-ROM).
fn check_config(text: &str, disks: &[DiskInfo]) -> Result<(), String> {
    let cfg = talos_api::config::MachineConfig::from_yaml(text, "talos.config")
        .map_err(|e| format!("failed to parse config: {e}"))?;
    cfg.validate()
        .map_err(|e| format!("configuration validation failed: {e}"))?;
    let disk = cfg
        .v1alpha1()
        .and_then(|v| v.get("machine"))
        .and_then(|m| m.get("install"))
        .and_then(|i| i.get("disk"))
        .and_then(|d| d.as_str())
        .unwrap_or_default();
    if !disk.is_empty() && !disks.iter().any(|d| d.device == disk && !d.cdrom) {
        return Err(format!("specified install disk does not exist: {disk:?}"));
    }
    Ok(())
}

impl TalosRuntime {
    fn machine_file(&self, id: u32) -> PathBuf {
        self.inner.dir.join(format!("metal-{id}.machine.json"))
    }

    /// Power on a bare-metal machine: it boots over the network (firmware PXE, iPXE,
    /// kernel, `talos.config=`), then comes up in maintenance mode (no config source) or
    /// installs the fetched config to its install disk and runs it, on its leased address.
    pub async fn power_on_metal(&self, spec: &MetalSpec) -> Result<MetalBooted, MetalNodeError> {
        let id = metal_id(&spec.machine.mac);
        let key = (METAL_KEY.to_string(), id);
        // Powering on again: whatever ran stops first.
        if let Some(old) = self
            .inner
            .nodes
            .lock()
            .map_err(|e| MetalNodeError::State(e.to_string()))?
            .remove(&key)
        {
            old.stop();
        }
        let report = spec.machine.boot().await?;
        let installed = match &report.config {
            Some(bytes) => {
                let text = std::str::from_utf8(bytes)
                    .map_err(|_| MetalNodeError::InvalidConfig("not UTF-8".into()))?;
                check_config(text, &spec.disks).map_err(MetalNodeError::InvalidConfig)?;
                true
            }
            None => false,
        };
        let mut state = NodeState {
            ip: report.address.to_string(),
            name: spec.name.clone(),
            ..NodeState::default()
        };
        if let Some(bytes) = &report.config {
            // The installer: the config goes to the STATE partition, the installer image's
            // version and schematic to the system disk.
            let text = String::from_utf8_lossy(bytes).into_owned();
            if let Some((v, s)) =
                super::day2::install_image(&text).and_then(|i| super::day2::image_version(&i))
            {
                state.version = Some(v);
                state.schematic = Some(s);
            }
            state.config = Some(text);
            state.installed = true;
        }
        let record = MachineRecord {
            name: spec.name.clone(),
            mac: spec.machine.mac,
            ip: report.address,
            disks: spec
                .disks
                .iter()
                .map(|d| (d.device.clone(), d.size))
                .collect(),
        };
        let json =
            serde_json::to_vec_pretty(&record).map_err(|e| MetalNodeError::State(e.to_string()))?;
        talos_api::talosconfig::write_private(&self.machine_file(id), &json)
            .map_err(|e| MetalNodeError::State(e.to_string()))?;
        let n = self.start_metal(key, report.address, spec.disks.clone(), state)?;
        Ok(MetalBooted {
            report,
            installed,
            node: n.snapshot(),
        })
    }

    fn start_metal(
        &self,
        key: (String, u32),
        ip: Ipv4Addr,
        disks: Vec<DiskInfo>,
        state: NodeState,
    ) -> Result<Arc<node::Node>, MetalNodeError> {
        let file = self.inner.state_file(&key.0, key.1);
        let n = Arc::new(node::Node::new(
            key.clone(),
            ip,
            "metal",
            disks,
            state,
            file,
            Arc::downgrade(&self.inner),
        ));
        n.persist()
            .map_err(|e| MetalNodeError::State(e.to_string()))?;
        n.boot();
        self.inner
            .nodes
            .lock()
            .map_err(|e| MetalNodeError::State(e.to_string()))?
            .insert(key, n.clone());
        Ok(n)
    }

    /// Boot every installed metal machine of the state directory from its disk (a machine
    /// that never installed needs the network again: [`TalosRuntime::power_on_metal`]).
    /// Returns how many came up. Must run inside a Tokio runtime.
    pub fn resume_metal(&self) -> Result<usize, TalosSimError> {
        let io = |path: &std::path::Path, source: std::io::Error| TalosSimError::Io {
            path: path.to_path_buf(),
            source,
        };
        let entries = std::fs::read_dir(&self.inner.dir).map_err(|e| io(&self.inner.dir, e))?;
        let mut started = 0;
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(id) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("metal-"))
                .and_then(|n| n.strip_suffix(".machine.json"))
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let key = (METAL_KEY.to_string(), id);
            let running = self
                .inner
                .nodes
                .lock()
                .map(|n| n.contains_key(&key))
                .unwrap_or(true);
            if running {
                continue;
            }
            let bytes = std::fs::read(&path).map_err(|e| io(&path, e))?;
            let record: MachineRecord =
                serde_json::from_slice(&bytes).map_err(|e| io(&path, std::io::Error::other(e)))?;
            let state_file = self.inner.state_file(&key.0, key.1);
            let Some(state) = NodeState::load(&state_file).map_err(|e| io(&state_file, e))? else {
                continue;
            };
            if !state.installed {
                continue;
            }
            let disks = record
                .disks
                .iter()
                .map(|(device, size)| DiskInfo {
                    device: device.clone(),
                    size: *size,
                    cdrom: false,
                })
                .collect();
            self.start_metal(key, record.ip, disks, state)
                .map_err(|e| io(&path, std::io::Error::other(e.to_string())))?;
            started += 1;
        }
        Ok(started)
    }

    /// The metal node with this MAC, if running.
    pub fn metal_node(&self, mac: &[u8; 6]) -> Option<NodeSnapshot> {
        self.node(METAL_KEY, metal_id(mac))
    }

    /// Power a metal machine off (its disk keeps the installed system).
    pub fn power_off_metal(&self, mac: &[u8; 6]) {
        crate::runtime::GuestRuntime::stopped(self, METAL_KEY, metal_id(mac));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ids_stay_clear_of_vmids() {
        let id = metal_id(&[0x52, 0x54, 0, 0xaa, 0, 1]);
        assert_eq!(id, 1_000_000_000 + 0xaa0001);
        assert!(id > 999_999_999);
        assert_ne!(id, metal_id(&[0x52, 0x54, 0, 0xaa, 0, 2]));
    }

    #[test]
    fn a_config_for_a_missing_disk_is_refused() {
        let bundle = talos_api::secrets::SecretsBundle::generate().unwrap();
        let input = talos_api::config::ClusterInput::new("c", "https://127.0.0.1:6443")
            .unwrap()
            .install_disk("/dev/nvme0n1");
        let cfg = talos_api::config::MachineConfig::generate(
            &input,
            &bundle,
            talos_api::config::MachineType::Worker,
            &talos_api::config::NodeInput::default(),
        )
        .unwrap();
        let text = cfg.to_yaml().to_string();
        let sda = DiskInfo {
            device: "/dev/sda".into(),
            size: 1 << 30,
            cdrom: false,
        };
        let err = check_config(&text, std::slice::from_ref(&sda)).unwrap_err();
        assert!(err.contains("/dev/nvme0n1"), "{err}");
        let nvme = DiskInfo {
            device: "/dev/nvme0n1".into(),
            ..sda
        };
        check_config(&text, &[nvme]).unwrap();
        assert!(check_config("machine: [", &[]).is_err());
    }
}
