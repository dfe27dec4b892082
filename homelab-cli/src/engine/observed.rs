//! What the lab looks like now, as read from Proxmox (and the Talos nodes). Built by the
//! observer from a constant number of list calls plus per-guest configuration reads only for
//! guests [`super::plan::needs_config`] names.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::model::desired::GuestKind;

/// A Proxmox node.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ObservedNode {
    /// Node name.
    pub name: String,
    /// `online` / `offline` / `unknown`.
    pub status: String,
    /// CPU threads.
    pub maxcpu: u64,
    /// Memory in bytes.
    pub maxmem: u64,
}

/// A guest from `/cluster/resources`, plus its configuration when it was read.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ObservedGuest {
    /// VMID.
    pub vmid: u32,
    /// Node.
    pub node: String,
    /// VM or CT.
    pub kind: GuestKind,
    /// Name (may lag just after creation).
    pub name: Option<String>,
    /// `running` / `stopped` / `unknown`.
    pub status: String,
    /// Normalised tags.
    pub tags: BTreeSet<String>,
    /// Configured memory in bytes (0/None when not yet reported).
    pub maxmem: Option<u64>,
    /// CPUs.
    pub maxcpu: Option<u64>,
    /// Boot disk size in bytes.
    pub maxdisk: Option<u64>,
    /// Whether it is a template.
    pub template: bool,
    /// Lock, if any.
    pub lock: Option<String>,
    /// Configuration, read only when needed.
    pub config: Option<GuestConfig>,
}

/// A guest's configuration (pending changes applied) as key → property string.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct GuestConfig {
    /// Keys and values.
    pub props: BTreeMap<String, String>,
    /// The config digest (optimistic locking on update).
    pub digest: Option<String>,
}

/// The lab.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Observed {
    /// Proxmox nodes.
    pub nodes: Vec<ObservedNode>,
    /// All guests visible to us (ours and others).
    pub guests: Vec<ObservedGuest>,
    /// Volumes present in the storages we looked at, per node (`local:iso/x.iso`).
    pub volumes: BTreeMap<String, BTreeSet<String>>,
    /// Host PCI devices per node (read only when a VM passes devices through).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pci_devices: BTreeMap<String, Vec<proxmox_client::models::PciDevice>>,
    /// Cluster PCI mappings (`None`: not read because no VM passes devices through).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci_mappings: Option<Vec<proxmox_client::models::PciMapping>>,
    /// Storage plugin types (`lvmthin`, `lvm`, `dir`, ...) by node, then storage id, from
    /// the resource list (no extra request).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub storage_types: BTreeMap<String, BTreeMap<String, String>>,
    /// `storage.cfg` by storage ID (read only when storages are declared).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storages: Option<BTreeMap<String, BTreeMap<String, String>>>,
    /// Per VMID, the pool a guest is in (the `pool` field of `/cluster/resources`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub guest_pools: BTreeMap<u32, String>,
    /// Resource pools (read only when pools are declared).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pools: Option<Vec<super::pools::ObservedPool>>,
    /// Backup archives in the backup storages (read only when a guest to restore is
    /// missing).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backups: Vec<super::restore::BackupArchive>,
    /// Volumes of guests at declared VMIDs that hold only `lock: create` (an interrupted
    /// create), by VMID: the evidence the plan shows before cleaning them up.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub abandoned_volumes: BTreeMap<u32, Vec<String>>,
    /// Whether `root@pam` may act (needed to remove a locked guest: `skiplock`).
    #[serde(skip)]
    pub root_access: bool,
    /// The simulated lab's state directory, under `--simulate`.
    #[serde(skip)]
    pub sim_state: Option<std::path::PathBuf>,
    /// When the reading began (Unix seconds, this machine's clock; 0: unknown). A task of
    /// a guest that had started by then was already under way when the plan was made.
    #[serde(skip)]
    pub read_at: u64,
}

impl ObservedGuest {
    /// Whether it is a template: the resource list says so, or (as that list lags behind a
    /// conversion, like pvestatd) its configuration does.
    pub fn is_template(&self) -> bool {
        self.template
            || self
                .config
                .as_ref()
                .is_some_and(|c| c.props.get("template").is_some_and(|v| v == "1"))
    }
}

impl Observed {
    /// Whether `volid` exists on `node`.
    pub fn has_volume(&self, node: &str, volid: &str) -> bool {
        self.volumes.get(node).is_some_and(|v| v.contains(volid))
    }

    /// The guest with this VMID.
    pub fn guest(&self, vmid: u32) -> Option<&ObservedGuest> {
        self.guests.iter().find(|g| g.vmid == vmid)
    }
}

/// What the Talos side looks like.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct TalosObserved {
    /// The encrypted secrets bundle exists.
    pub secrets_present: bool,
    /// VMIDs of nodes that run with a configuration (not in maintenance mode).
    pub configured: BTreeSet<u32>,
    /// etcd has been bootstrapped.
    pub bootstrapped: bool,
    /// The encrypted talosconfig exists and matches the cluster.
    pub talosconfig_current: bool,
    /// The encrypted kubeconfig exists and matches the cluster.
    pub kubeconfig_current: bool,
    /// The Talos version each configured node reports, by VMID.
    pub versions: std::collections::BTreeMap<u32, String>,
    /// Configured nodes whose certificate our bundle's CA did not sign (a bundle from
    /// another cluster), by VMID.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub foreign_ca: BTreeSet<u32>,
    /// Bare-metal nodes (`talos.metal`) by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metal: BTreeMap<String, super::metal::MetalObserved>,
    /// The running machine config and installed schematic of each configured node, by
    /// VMID (read through the COSI resource API; configs hold secrets: never serialized).
    #[serde(skip)]
    pub running: std::collections::BTreeMap<u32, super::config_change::RunningNode>,
    /// Outputs whose client certificate expires within 30 days (re-issued by `up`).
    pub renew: Vec<super::certs::OutputCert>,
    /// What the Kubernetes components run (read through the Kubernetes API), when it
    /// answers.
    #[serde(skip)]
    pub kubernetes: Option<super::k8s_upgrade::K8sObserved>,
}
