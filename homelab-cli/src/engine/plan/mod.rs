//! The planner: a pure function from (desired, observed) to the actions `up` takes.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::observed::{Observed, ObservedGuest, TalosObserved};
use crate::model::desired::{
    BootSource, Desired, DesiredGuest, GuestKind, SPEC_TAG_PREFIX, has_owner_marker, owner_tag,
};
use crate::model::vms::BOOT_MARKER;
use proxmox_client::property::{
    canon_tags, canonical as canon, is_numbered, parse_disk_ref as parse_disk,
    root_only_features as root_features,
};

mod error;
mod guests;
mod planner;
mod root;
mod talos;

pub use self::error::PlanError;
use self::guests::*;
pub use self::planner::{adopting, is_ours, needs_config, plan, plan_backups, plan_sdn};
use self::root::*;
pub use self::root::{change_needs_root, root_only_on_create};
pub use self::talos::plan_talos;

/// A PCI mapping's entry for one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntryChange {
    /// The node.
    pub node: String,
    /// The entry it has now, if any.
    pub from: Option<String>,
    /// The entry it gets.
    pub to: String,
}

/// One changed configuration key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// Proxmox config key (`memory`, `scsi0`, ...).
    pub key: String,
    /// Current value (`None`: unset). `(sensitive)` when it came from a secret.
    pub from: Option<String>,
    /// New value (`None`: remove).
    pub to: Option<String>,
    /// Whether the guest must restart for it to take effect.
    pub reboot: bool,
    /// Whether the value is hidden in output.
    pub sensitive: bool,
    /// Whether people need to see it (a spec-hash tag refresh alone is bookkeeping).
    #[serde(skip)]
    pub shown: bool,
}

/// Something `up` will do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Download an ISO into file storage (kept by `down`).
    DownloadIso {
        /// Node.
        node: String,
        /// Storage.
        storage: String,
        /// File name.
        filename: String,
        /// Source URL.
        url: String,
    },
    /// Download an LXC OS template into file storage (kept by `down`).
    DownloadTemplate {
        /// Node.
        node: String,
        /// Storage.
        storage: String,
        /// File name.
        filename: String,
        /// Source URL.
        url: String,
    },
    /// Download a cloud image into `import` storage (kept by `down`), checksum verified by
    /// Proxmox.
    DownloadImage {
        /// Node.
        node: String,
        /// Storage.
        storage: String,
        /// File name.
        filename: String,
        /// Source URL.
        url: String,
        /// `algorithm:hex`.
        checksum: Option<String>,
    },
    /// Upload a cloud-init snippet to a node's snippet storage (over SFTP).
    UploadSnippet {
        /// Node.
        node: String,
        /// Storage.
        storage: String,
        /// File name.
        filename: String,
    },
    /// Delete a snippet of ours that no declared VM uses any more (after the VMs moved on).
    DeleteSnippet {
        /// Node.
        node: String,
        /// Storage.
        storage: String,
        /// File name.
        filename: String,
    },
    /// Create a cluster PCI mapping for a passed-through device.
    CreatePciMapping {
        /// Mapping ID.
        id: String,
        /// One entry per node (`id=10de:2204,iommugroup=14,node=pve,path=0000:01:00`).
        entries: Vec<String>,
    },
    /// Set a mapping's entries for some nodes (added, or replacing the old ones).
    UpdatePciMapping {
        /// Mapping ID.
        id: String,
        /// Per node.
        changes: Vec<EntryChange>,
    },
    /// Create a guest and start it.
    Create {
        /// VMID.
        vmid: u32,
        /// Name.
        name: String,
        /// Proxmox node.
        node: String,
        /// VM or CT.
        kind: GuestKind,
        /// Configuration it is created with (secret-derived values hidden).
        config: BTreeMap<String, String>,
    },
    /// Change a guest in place.
    Update {
        /// VMID.
        vmid: u32,
        /// Name.
        name: String,
        /// Proxmox node.
        node: String,
        /// VM or CT.
        kind: GuestKind,
        /// What changes.
        changes: Vec<Change>,
        /// Whether a restart is needed (and done) for the changes to apply.
        reboot: bool,
    },
    /// Destroy and recreate a guest.
    Replace {
        /// VMID.
        vmid: u32,
        /// Name.
        name: String,
        /// Proxmox node it will be on.
        node: String,
        /// Proxmox node it is on now.
        current_node: String,
        /// VM or CT.
        kind: GuestKind,
        /// Why it cannot be changed in place.
        reasons: Vec<String>,
    },
    /// Add a storage to `storage.cfg` (`POST /storage`).
    CreateStorage {
        /// Storage ID.
        id: String,
        /// `type` and the parameters.
        config: BTreeMap<String, String>,
    },
    /// Change a storage's parameters in place (`PUT /storage/{id}`).
    UpdateStorage {
        /// Storage ID.
        id: String,
        /// Each changed parameter.
        changes: Vec<Change>,
    },
    /// Add a resource pool (`POST /pools`), its comment carrying our owner marker.
    CreatePool {
        /// Pool ID.
        id: String,
        /// Its comment, owner marker included.
        comment: String,
    },
    /// Change a pool of ours in place (`PUT /pools`): its comment.
    UpdatePool {
        /// Pool ID.
        id: String,
        /// The comment change.
        changes: Vec<Change>,
    },
    /// Delete an empty pool of ours that is no longer declared (`DELETE /pools`).
    DeletePool {
        /// Pool ID.
        id: String,
    },
    /// Take over an existing guest that had no owner marker (`adopt: true`): write the
    /// ownership tag and marker (and any hot-applied difference), never restart.
    Adopt {
        /// VMID.
        vmid: u32,
        /// Name.
        name: String,
        /// Proxmox node.
        node: String,
        /// VM or CT.
        kind: GuestKind,
        /// What is written.
        changes: Vec<Change>,
    },
    /// Start a stopped guest.
    Start {
        /// VMID.
        vmid: u32,
        /// Name.
        name: String,
        /// Proxmox node.
        node: String,
        /// VM or CT.
        kind: GuestKind,
    },
    /// Destroy a guest we own that is no longer declared.
    Delete {
        /// VMID.
        vmid: u32,
        /// Name.
        name: String,
        /// Proxmox node.
        node: String,
        /// VM or CT.
        kind: GuestKind,
    },
    /// Generate the cluster's secrets bundle (once) and store it SOPS-encrypted.
    GenerateTalosSecrets {
        /// Where.
        path: String,
    },
    /// Apply the machine configuration to a node in maintenance mode.
    TalosApplyConfig {
        /// VMID.
        vmid: u32,
        /// Node name.
        name: String,
        /// controlplane / worker.
        role: String,
    },
    /// Upgrade Talos on a running node: the Upgrade RPC with the factory installer image;
    /// the node reboots. Rolled one node at a time, control planes first.
    TalosUpgrade {
        /// VMID.
        vmid: u32,
        /// Name.
        name: String,
        /// controlplane / worker.
        role: String,
        /// The version it runs.
        from: String,
        /// The version it will run.
        to: String,
        /// The installer image.
        image: String,
        /// The schematic it runs, when it reports one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from_schematic: Option<String>,
        /// The schematic it will run.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to_schematic: Option<String>,
    },
    /// Change the machine config of a running Talos node (ApplyConfiguration), with the
    /// mode Talos needs for it; see [`super::config_change`].
    TalosConfigChange {
        /// VMID (`None`: a bare-metal node, `talos.metal`, known by its name).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        vmid: Option<u32>,
        /// Name.
        name: String,
        /// controlplane / worker.
        role: String,
        /// `no-reboot`, `reboot` or `staged`.
        mode: super::config_change::ApplyWith,
        /// Staged before the node's Talos upgrade, whose reboot takes it.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        with_upgrade: bool,
        /// The paths that need a reboot (empty when it applies live).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        reboot_paths: Vec<String>,
        /// What changes, by path (secret values masked).
        changes: Vec<super::config_change::ConfigPathChange>,
    },
    /// Upgrade Kubernetes (`talos.cluster.kubernetes_version`) in `talosctl upgrade-k8s`
    /// order: control-plane components node by node, kubelets, then the kube-proxy
    /// DaemonSet. Configs are applied without a reboot: no node reboots.
    KubernetesUpgrade {
        /// The lowest version a component runs.
        from: String,
        /// The version every component will run.
        to: String,
        /// Control planes, in upgrade order.
        control_planes: Vec<String>,
        /// Workers, in upgrade order (their kubelets).
        workers: Vec<String>,
    },
    /// An encrypted etcd snapshot, taken by `up` before any other step because the plan
    /// changes control planes (`talos.etcd_backup: before_changes`).
    EtcdSnapshot {
        /// The snapshot directory.
        dir: String,
        /// The control planes (or Talos nodes being destroyed) the plan changes.
        nodes: Vec<String>,
    },
    /// Bootstrap etcd on the first control plane (once per cluster).
    TalosBootstrap {
        /// VMID.
        vmid: u32,
        /// Node name.
        name: String,
    },
    /// Write an encrypted output file.
    WriteOutput {
        /// Which (`talosconfig` / `kubeconfig`).
        what: String,
        /// Where.
        path: String,
        /// Why an existing output is written again (its client certificate expires soon).
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Create a vzdump backup job (`POST /cluster/backup`).
    CreateBackupJob {
        /// Proxmox job id.
        id: String,
        /// Name in homelab.yaml.
        name: String,
        /// The options it is created with.
        config: BTreeMap<String, String>,
    },
    /// Change a backup job's options in place.
    UpdateBackupJob {
        /// Proxmox job id.
        id: String,
        /// Name in homelab.yaml.
        name: String,
        /// Each changed option (from → to).
        changes: Vec<super::backups::JobChange>,
        /// Why it is re-applied without option changes, if so.
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// Delete a backup job we own that is no longer declared (its backups are kept).
    DeleteBackupJob {
        /// Proxmox job id.
        id: String,
        /// Its schedule, for people.
        schedule: Option<String>,
    },
    /// Stage an SDN change (zone, vnet or subnet); see [`super::sdn`].
    Sdn(super::sdn::SdnAction),
    /// Apply the staged SDN configuration on every node (`PUT /cluster/sdn`), once, after
    /// every SDN change.
    ApplySdn {
        /// What was staged before this plan (`vnet web (changed)`).
        pending: Vec<String>,
    },
    /// A bare-metal node (`talos.metal`) that does not run its configuration yet: it
    /// network-boots (from `pxe serve`, or the simulator's boot network), installs and joins.
    /// Not a Proxmox guest: nothing is created. See [`super::metal`].
    BootMetal {
        /// Name (Talos hostname).
        name: String,
        /// The MAC it boots from.
        mac: String,
        /// controlplane / worker.
        role: String,
        /// Its declared address.
        #[serde(skip_serializing_if = "Option::is_none")]
        address: Option<std::net::Ipv4Addr>,
        /// The disk it installs to.
        install_disk: String,
        /// How it was seen: `unreachable`, `maintenance` or `unknown` (no address).
        state: String,
    },
    /// A Talos node leaving the cluster, or a stale etcd member removed; see
    /// [`super::membership`].
    Membership(super::membership::MembershipAction),
    /// Upgrade Talos on a running metal node (the Upgrade RPC with the factory's metal
    /// installer image; it reboots), rolled after the VM nodes, one at a time.
    UpgradeMetal {
        /// Name.
        name: String,
        /// controlplane / worker.
        role: String,
        /// The version it runs.
        from: String,
        /// The version it will run.
        to: String,
        /// The installer image.
        image: String,
    },
}

impl Action {
    /// Whether the action changes the lab (all do; kept for symmetry with summaries).
    pub fn verb(&self) -> &'static str {
        match self {
            Action::DownloadIso { .. }
            | Action::DownloadTemplate { .. }
            | Action::DownloadImage { .. }
            | Action::UploadSnippet { .. }
            | Action::CreatePciMapping { .. }
            | Action::Create { .. }
            | Action::GenerateTalosSecrets { .. }
            | Action::EtcdSnapshot { .. }
            | Action::CreateBackupJob { .. } => "add",
            Action::Update { .. }
            | Action::UpdatePciMapping { .. }
            | Action::Start { .. }
            | Action::TalosApplyConfig { .. }
            | Action::TalosBootstrap { .. }
            | Action::TalosUpgrade { .. }
            | Action::TalosConfigChange { .. }
            | Action::KubernetesUpgrade { .. }
            | Action::WriteOutput { .. }
            | Action::UpdateBackupJob { .. } => "change",
            Action::Replace { .. } => "replace",
            Action::Adopt { .. } => "adopt",
            Action::CreateStorage { .. } => "add",
            Action::UpdateStorage { .. } => "change",
            Action::CreatePool { .. } => "add",
            Action::UpdatePool { .. } => "change",
            Action::DeletePool { .. } => "destroy",
            Action::DeleteSnippet { .. } => "destroy",
            Action::Delete { .. } | Action::DeleteBackupJob { .. } => "destroy",
            Action::Sdn(s) => match s.op {
                super::sdn::SdnOp::Create => "add",
                super::sdn::SdnOp::Update => "change",
                super::sdn::SdnOp::Delete => "destroy",
            },
            Action::ApplySdn { .. } => "change",
            Action::BootMetal { .. } => "add",
            Action::Membership(_) => "change",
            Action::UpgradeMetal { .. } => "change",
        }
    }
}

/// The plan: what `up` will do, in display order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// The actions.
    pub actions: Vec<Action>,
    /// Counts by verb.
    pub summary: Summary,
}

/// `Plan: 1 to add, 2 to change, 0 to replace, 0 to destroy.`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Created.
    pub add: usize,
    /// Changed in place.
    pub change: usize,
    /// Replaced.
    pub replace: usize,
    /// Destroyed.
    pub destroy: usize,
    /// Existing guests taken over.
    #[serde(skip_serializing_if = "is_zero")]
    pub adopt: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Plan {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    pub(crate) fn finish(mut self) -> Self {
        let mut s = Summary::default();
        for a in &self.actions {
            match a.verb() {
                "add" => s.add += 1,
                "change" => s.change += 1,
                "replace" => s.replace += 1,
                "adopt" => s.adopt += 1,
                _ => s.destroy += 1,
            }
        }
        self.summary = s;
        self
    }
}
