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

/// Keys we may have set on a Talos VM in an earlier version of the config; present but no
/// longer desired means "remove".
const OPTIONAL_KEYS: &[&str] = &[
    "nameserver",
    "searchdomain",
    "cicustom",
    "sshkeys",
    "startup",
];

/// The same for containers.
const OPTIONAL_LXC_KEYS: &[&str] = &["nameserver", "searchdomain", "features", "startup"];

/// Container keys Proxmox refuses to change after creation: a change means re-creating.
const LXC_FIXED_KEYS: &[&str] = &["unprivileged"];

/// Container keys applied to a running container without a restart (pve-container
/// hot-applies these; everything else becomes pending until the next start).
const LXC_HOT_KEYS: &[&str] = &[
    "hostname",
    "description",
    "tags",
    "onboot",
    "startup",
    "protection",
    "memory",
    "swap",
    "cores",
    "net0",
    "nameserver",
    "searchdomain",
];

/// Keys whose change takes effect without restarting the guest.
const HOT_KEYS: &[&str] = &[
    "name",
    "description",
    "tags",
    "onboot",
    "ide2",
    "protection",
];

/// Why the planner refused to plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// A desired VMID is used by a guest we do not own.
    #[error(
        "VMID {vmid} ({name}) is already used by {kind} {vmid} \"{other}\" on node {node}, which this homelab does not manage"
    )]
    VmidClash {
        /// The VMID.
        vmid: u32,
        /// Our guest's name.
        name: String,
        /// Their guest's name.
        other: String,
        /// Their kind.
        kind: &'static str,
        /// Their node.
        node: String,
    },
    /// An interrupted create left a placeholder at a declared VMID, and only root@pam may
    /// remove a locked guest.
    #[error(
        "VMID {vmid} ({name}) holds the remains of an interrupted create ({kind} on node {node}): {evidence}"
    )]
    AbandonedCreate {
        /// The VMID.
        vmid: u32,
        /// Our guest's name.
        name: String,
        /// Its kind.
        kind: &'static str,
        /// Its node.
        node: String,
        /// What shows it.
        evidence: String,
        /// What to do.
        repair: String,
    },
    /// The Talos secrets bundle is missing while nodes run a configuration made from it.
    #[error(
        "the Talos secrets bundle {path} is missing, but node(s) {nodes} already run a configuration made from it; a new bundle would lock `up` out of the running cluster"
    )]
    SecretsLost {
        /// The bundle's path.
        path: String,
        /// The configured nodes (`vmid "name"`).
        nodes: String,
    },
    /// A desired name is used by a guest we do not own.
    #[error(
        "name \"{name}\" (VMID {vmid}) is already used by {kind} {other_vmid} on node {node}, which this homelab does not manage"
    )]
    NameClash {
        /// The name.
        name: String,
        /// Our VMID.
        vmid: u32,
        /// Their VMID.
        other_vmid: u32,
        /// Their kind.
        kind: &'static str,
        /// Their node.
        node: String,
    },
    /// A Proxmox node we place guests on does not exist.
    #[error("Proxmox node \"{node}\" (needed by {name}) does not exist; known nodes: {known}")]
    UnknownNode {
        /// The node.
        node: String,
        /// Who needs it.
        name: String,
        /// Nodes that exist.
        known: String,
    },
    /// A linked clone of a template whose disk is on a storage whose plugin has no
    /// linked clones (thick LVM): Proxmox would refuse the clone.
    #[error(
        "{name} (VMID {vmid}) is a linked clone of template {template}, whose disk {disk} is on storage \"{storage}\" of type {plugin}, which has no linked clones in Proxmox (pve-storage's {plugin} plugin); set `full_clone: true` on it, or keep the template on one of: {}",
        proxmox_client::plugins::LINKED_CLONE_PLUGINS.join(", ")
    )]
    NoLinkedClones {
        /// The clone's name.
        name: String,
        /// The clone's VMID.
        vmid: u32,
        /// The template's VMID.
        template: u32,
        /// The template's disk (`scsi0`).
        disk: String,
        /// The storage.
        storage: String,
        /// Its plugin type.
        plugin: String,
    },
    /// A passed-through PCI device does not exist on the node.
    #[error(
        "PCI device {device} (passed to {name}) does not exist on node {node}; its GPUs: {known}"
    )]
    UnknownPciDevice {
        /// The declared address.
        device: String,
        /// The node.
        node: String,
        /// The VM.
        name: String,
        /// What the node has.
        known: String,
    },
    /// A referenced PCI mapping does not exist or has no entry for the node.
    #[error(
        "PCI mapping \"{id}\" (passed to {name}) does not exist or has no device on node {node}; existing mappings: {known}"
    )]
    UnknownPciMapping {
        /// The mapping ID.
        id: String,
        /// The node.
        node: String,
        /// The VM.
        name: String,
        /// Mappings that exist.
        known: String,
    },
    /// A cloud image given as a volume is not in storage.
    #[error("image {image} is the volume {volid}, which is not in storage on node {node}")]
    MissingImage {
        /// The image's name in `images`.
        image: String,
        /// The volume.
        volid: String,
        /// The node.
        node: String,
    },
    /// A gold template would be rebuilt while linked clones still use its disk.
    #[error(
        "template {vmid} \"{name}\" would be rebuilt ({reason}), but the linked clones {clones} use its disk"
    )]
    TemplateInUse {
        /// The template's VMID.
        vmid: u32,
        /// Its name.
        name: String,
        /// Why it would be rebuilt.
        reason: String,
        /// The clones.
        clones: String,
    },
    /// A container is given a GPU device node on a node without a GPU.
    #[error("{name} is given {device}, but node {node} has no GPU (no display-class PCI device)")]
    NoGpu {
        /// The device node.
        device: String,
        /// The Proxmox node.
        node: String,
        /// The container.
        name: String,
    },
    /// A container setting only `root@pam` may make, without root credentials.
    #[error(
        "{kind} {vmid} \"{name}\" needs {keys}, which Proxmox lets only root@pam (logged in with a password) set; API tokens cannot{manual}"
    )]
    NeedsRoot {
        /// VMID.
        vmid: u32,
        /// Name.
        name: String,
        /// `ct`.
        kind: &'static str,
        /// The settings.
        keys: String,
        /// The `pct set` that would make them by hand, for an existing container.
        manual: String,
    },
    /// A declared storage exists with another type or fixed parameter.
    #[error("storage {id} {what}")]
    StorageMismatch {
        /// Storage ID.
        id: String,
        /// What differs.
        what: String,
    },
    /// A declared pool exists without our owner marker.
    #[error(
        "pool {id} exists but was not created by homelab `{lab}` (its comment has no owner marker): refusing to take it over"
    )]
    PoolNotOurs {
        /// Pool ID.
        id: String,
        /// Homelab name.
        lab: String,
    },
    /// A pool of ours that is no longer declared still has members.
    #[error("pool {id} is no longer declared but still has members: {members}")]
    PoolNotEmpty {
        /// Pool ID.
        id: String,
        /// Its members (`lxc/101`, `storage/pve/tank`).
        members: String,
    },
    /// A guest to restore names a backup that is not there.
    #[error(transparent)]
    Restore(#[from] super::restore::RestoreError),
    /// Taking over an existing guest would change more than its ownership.
    #[error(
        "adopting {kind} {vmid} \"{name}\" would {what}: the declaration does not match the guest"
    )]
    AdoptMismatch {
        /// VMID.
        vmid: u32,
        /// Name.
        name: String,
        /// `ct` / `vm`.
        kind: &'static str,
        /// What it would do (restart for which keys, or re-create and why).
        what: String,
    },
    /// A declared backup job's id is taken by a job we do not own.
    #[error(
        "backup job \"{name}\" needs the id {id}, which a backup job this homelab does not manage already has"
    )]
    BackupJobClash {
        /// The Proxmox job id.
        id: String,
        /// The job's name in homelab.yaml.
        name: String,
    },
}

impl PlanError {
    /// What to do about it.
    pub fn help(&self) -> std::borrow::Cow<'static, str> {
        if let PlanError::AbandonedCreate { repair, .. } = self {
            return repair.clone().into();
        }
        self.static_help().into()
    }

    fn static_help(&self) -> &'static str {
        match self {
            PlanError::AbandonedCreate { .. } => "",
            PlanError::SecretsLost { .. } => {
                "restore the file from git history or a backup (`git checkout -- <path>`), or, to start the cluster over, destroy its nodes (`homelab-cli down`) and run `up` again: that makes a new bundle"
            }
            PlanError::VmidClash { .. } | PlanError::NameClash { .. } => {
                "change the VMID or name in homelab.yaml, or remove the other guest yourself"
            }
            PlanError::UnknownNode { .. } => "fix `node` (or `proxmox.node`) in homelab.yaml",
            PlanError::NoLinkedClones { .. } => {
                "make the clone `full_clone: true`, or give the template's `storage` a thin pool (lvmthin), a ZFS pool or a directory storage"
            }
            PlanError::UnknownPciDevice { .. } => {
                "fix `device` (`lspci -D` on the node lists them), or drop the `pci` item"
            }
            PlanError::UnknownPciMapping { .. } => {
                "create the mapping (Datacenter → Resource Mappings), or give `device` so that `up` creates it"
            }
            PlanError::MissingImage { .. } => {
                "put the image there (`qm disk import`, the storage's Import upload) or give the image a `url` and `checksum` so that `up` downloads it"
            }
            PlanError::TemplateInUse { .. } => {
                "give the new image its own template (name and vmid) and move the clones to it, make them `full_clone: true`, or remove them first"
            }
            PlanError::NoGpu { .. } => {
                "place the container on a node with a GPU (`node`), or drop the device"
            }
            PlanError::NeedsRoot { .. } => {
                "add `proxmox.root_password: ${secret:proxmox.root_password}` (root@pam's password, kept in the SOPS file), or drop the setting from homelab.yaml"
            }
            PlanError::BackupJobClash { .. } => {
                "rename the backup job in homelab.yaml, or remove the other job yourself"
            }
            PlanError::StorageMismatch { .. } => {
                "fix the declaration, or remove the storage by hand (`pvesm remove`; its data stays) so that `up` adds it again"
            }
            PlanError::PoolNotOurs { .. } => {
                "give the declared pool another name, or (if it is meant to be this homelab's) append the marker line `homelab-cli:owner=<name>` to its comment by hand"
            }
            PlanError::PoolNotEmpty { .. } => {
                "move the members out of the pool (or declare the pool again); `up` deletes it once it is empty"
            }
            PlanError::Restore(_) => {
                "`homelab-cli backup list` shows the archives; write `restore: latest` or one of them"
            }
            PlanError::AdoptMismatch { .. } => {
                "make the declaration match the guest (`homelab-cli import --dry-run` shows what it has), or let `up` adopt it first and change it afterwards"
            }
        }
    }
}

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
            | Action::CreateBackupJob { .. } => "add",
            Action::Update { .. }
            | Action::UpdatePciMapping { .. }
            | Action::Start { .. }
            | Action::TalosApplyConfig { .. }
            | Action::TalosBootstrap { .. }
            | Action::TalosUpgrade { .. }
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

    fn finish(mut self) -> Self {
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

/// Whether a listed guest belongs to homelab `lab`: our tag, and (when its configuration
/// was read) our description marker.
pub fn is_ours(g: &ObservedGuest, lab: &str) -> bool {
    g.tags.contains(&owner_tag(lab))
        && g.config.as_ref().is_none_or(|c| {
            has_owner_marker(c.props.get("description").map_or("", String::as_str), lab)
        })
}

/// Guests whose configuration must be read before planning (those that cannot be decided
/// from the cluster resource list alone). A no-op plan needs none.
pub fn needs_config(desired: &Desired, observed: &Observed) -> Vec<(String, GuestKind, u32)> {
    let want: BTreeMap<u32, &DesiredGuest> = desired.guests.iter().map(|g| (g.vmid, g)).collect();
    let mut out = Vec::new();
    for g in &observed.guests {
        if g.config.is_none() && adopting(desired, g) {
            // A guest to take over: compared in full.
            out.push((g.node.clone(), g.kind, g.vmid));
            continue;
        }
        if g.config.is_some() || !g.tags.contains(&owner_tag(&desired.lab)) {
            continue;
        }
        let closer = match want.get(&g.vmid) {
            // Ours but no longer declared: confirm the marker before destroying it.
            None => true,
            Some(d) => !cheap_match(d, g),
        };
        if closer {
            out.push((g.node.clone(), g.kind, g.vmid));
        }
    }
    out
}

/// Whether `g` is a guest the declaration takes over (`adopt: true`): same VMID, and no
/// homelab's ownership tag or marker on it.
pub fn adopting(desired: &Desired, g: &ObservedGuest) -> bool {
    desired.adopt.contains(&g.vmid)
        && !is_ours(g, &desired.lab)
        && !g.tags.iter().any(|t| t.starts_with("homelab-"))
        && g.config.as_ref().is_none_or(|c| {
            !c.props
                .get("description")
                .is_some_and(|d| d.contains("homelab-cli:owner="))
        })
}

/// Whether the resource list alone shows the guest as desired: same spec-hash tag, node and
/// kind, and no contradicting figure (name, memory, cores) where the list has one.
fn cheap_match(d: &DesiredGuest, g: &ObservedGuest) -> bool {
    let hash_tag = format!("{SPEC_TAG_PREFIX}{}", d.spec_hash);
    g.tags.contains(&hash_tag)
        && g.template == d.is_template
        && g.node == d.node
        && g.kind == d.kind
        && g.name.as_ref().is_none_or(|n| *n == d.name)
        && g.maxmem
            .is_none_or(|m| m == 0 || m == d.memory_mib() * 1024 * 1024)
        && g.maxcpu.is_none_or(|c| c == 0 || c == d.cpus())
}

/// Plan the guests and images. `observed` must carry the configurations [`needs_config`]
/// asked for.
pub fn plan(desired: &Desired, observed: &Observed) -> Result<Plan, PlanError> {
    let lab = &desired.lab;
    let mut actions = Vec::new();
    let known_nodes: BTreeSet<&str> = observed.nodes.iter().map(|n| n.name.as_str()).collect();
    for g in &desired.guests {
        if !known_nodes.contains(g.node.as_str()) {
            return Err(PlanError::UnknownNode {
                node: g.node.clone(),
                name: g.name.clone(),
                known: known_nodes.iter().copied().collect::<Vec<_>>().join(", "),
            });
        }
    }
    super::storage_check::check(desired, observed)?;
    let by_vmid: BTreeMap<u32, &ObservedGuest> =
        observed.guests.iter().map(|g| (g.vmid, g)).collect();
    // Storages first: guest volumes and backups live on them.
    actions.extend(super::storages::diff(desired, observed.storages.as_ref())?);
    // Pools too: guests are placed in them.
    actions.extend(super::pools::diff(desired, observed.pools.as_deref())?);

    // Clashes with guests we do not own.
    let mut abandoned: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for d in &desired.guests {
        // The remains of a create that died with its host: ours to clean up (see `recover`).
        if let Some(g) = by_vmid.get(&d.vmid)
            && let Some(evidence) = super::recover::abandoned_create(
                g,
                observed
                    .abandoned_volumes
                    .get(&d.vmid)
                    .map_or(&[][..], Vec::as_slice),
            )
        {
            if !super::recover::can_remove(g, observed.root_access) {
                return Err(PlanError::AbandonedCreate {
                    vmid: d.vmid,
                    name: d.name.clone(),
                    kind: g.kind.noun(),
                    node: g.node.clone(),
                    evidence: evidence.join("; "),
                    repair: super::recover::manual_repair(
                        g.kind,
                        d.vmid,
                        &g.node,
                        observed.sim_state.as_deref(),
                    ),
                });
            }
            abandoned.insert(d.vmid, evidence);
            continue;
        }
        if let Some(g) = by_vmid.get(&d.vmid)
            && !is_ours(g, lab)
            && !(adopting(desired, g) && g.kind == d.kind)
        {
            return Err(PlanError::VmidClash {
                vmid: d.vmid,
                name: d.name.clone(),
                other: g.name.clone().unwrap_or_default(),
                kind: g.kind.noun(),
                node: g.node.clone(),
            });
        }
        // Another homelab on the same host (say dev beside prod) may use the same names.
        if let Some(g) = observed.guests.iter().find(|g| {
            g.vmid != d.vmid
                && g.name.as_deref() == Some(d.name.as_str())
                && !is_ours(g, lab)
                && !g.tags.iter().any(|t| t.starts_with("homelab-"))
        }) {
            return Err(PlanError::NameClash {
                name: d.name.clone(),
                vmid: d.vmid,
                other_vmid: g.vmid,
                kind: g.kind.noun(),
                node: g.node.clone(),
            });
        }
    }

    for (node, volid, image) in &desired.existing_images {
        if known_nodes.contains(node.as_str()) && !observed.has_volume(node, volid) {
            return Err(PlanError::MissingImage {
                image: image.clone(),
                volid: volid.clone(),
                node: node.clone(),
            });
        }
    }

    // Images first: guests boot from them.
    for iso in &desired.isos {
        if !observed.has_volume(&iso.node, &iso.volid()) {
            actions.push(Action::DownloadIso {
                node: iso.node.clone(),
                storage: iso.storage.clone(),
                filename: iso.filename.clone(),
                url: iso.url.clone(),
            });
        }
    }

    for t in &desired.templates {
        if !observed.has_volume(&t.node, &t.volid()) {
            actions.push(Action::DownloadTemplate {
                node: t.node.clone(),
                storage: t.storage.clone(),
                filename: t.filename.clone(),
                url: t.url.clone(),
            });
        }
    }

    for img in &desired.images {
        if !observed.has_volume(&img.node, &img.volid()) {
            actions.push(Action::DownloadImage {
                node: img.node.clone(),
                storage: img.storage.clone(),
                filename: img.filename.clone(),
                url: img.url.clone(),
                checksum: img.checksum.as_ref().map(|(a, h)| format!("{a}:{h}")),
            });
        }
    }

    for sn in &desired.snippets {
        if !observed.has_volume(&sn.node, &sn.volid()) {
            actions.push(Action::UploadSnippet {
                node: sn.node.clone(),
                storage: sn.storage.clone(),
                filename: sn.filename.clone(),
            });
        }
    }

    // Snippets of ours no declared VM references any more (older contents).
    let wanted_snippets: BTreeSet<(String, String)> = desired
        .snippets
        .iter()
        .map(|s| (s.node.clone(), s.volid()))
        .collect();
    for sn in &desired.snippets {
        for v in observed.volumes.get(&sn.node).into_iter().flatten() {
            let Ok(vol) = v.parse::<proxmox_client::VolumeId>() else {
                continue;
            };
            if vol.storage != sn.storage
                || vol.content != Some(proxmox_client::ContentKind::Snippets)
            {
                continue;
            }
            let file = vol.name.as_str();
            let stale = crate::model::vms::is_snippet_name(lab, file)
                && !wanted_snippets.contains(&(sn.node.clone(), v.clone()));
            let listed = actions.iter().any(|a| {
                matches!(a, Action::DeleteSnippet { node, filename, .. } if *node == sn.node && filename == file)
            });
            if stale && !listed {
                actions.push(Action::DeleteSnippet {
                    node: sn.node.clone(),
                    storage: sn.storage.clone(),
                    filename: file.to_string(),
                });
            }
        }
    }

    actions.extend(super::pci::plan(desired, observed)?);

    for d in &desired.guests {
        if let (Some(reasons), Some(g)) = (abandoned.remove(&d.vmid), by_vmid.get(&d.vmid)) {
            actions.push(Action::Replace {
                vmid: d.vmid,
                name: d.name.clone(),
                node: d.node.clone(),
                current_node: g.node.clone(),
                kind: d.kind,
                reasons,
            });
            continue;
        }
        match by_vmid.get(&d.vmid) {
            None => {
                let mut c = create(d, lab);
                if desired.restore.contains_key(&d.vmid)
                    && let Action::Create { config, .. } = &mut c
                {
                    match super::restore::pick(desired, observed, d.vmid)? {
                        Some(b) => {
                            config.remove("ostemplate");
                            config.insert("restore".into(), b.volid.clone());
                        }
                        None => {
                            // A backup storage this run adds cannot be listed before.
                            let adding: Vec<&str> = desired
                                .storages
                                .iter()
                                .filter(|s| {
                                    s.params
                                        .get("content")
                                        .is_some_and(|c| c.contains("backup"))
                                        && observed
                                            .storages
                                            .as_ref()
                                            .is_some_and(|h| !h.contains_key(&s.id))
                                })
                                .map(|s| s.id.as_str())
                                .collect();
                            let text = if adding.is_empty() {
                                "(no backup of this VMID found: created empty)".to_string()
                            } else {
                                format!(
                                    "(the newest backup in {}, added by this run; created empty if there is none)",
                                    adding.join(", ")
                                )
                            };
                            config.insert("restore".into(), text);
                        }
                    }
                }
                actions.push(c);
            }
            Some(g) if !is_ours(g, lab) => actions.extend(adopt_actions(d, g, lab)?),
            Some(g) => actions.extend(guest_actions(d, g, lab)),
        }
    }

    if desired.proxmox.root_password.is_none() {
        check_root_only(desired, &actions)?;
    }
    // Proxmox cannot remove a template's base disk while linked clones use it.
    for a in &actions {
        let Action::Replace { vmid, reasons, .. } = a else {
            continue;
        };
        let Some(t) = desired
            .guests
            .iter()
            .find(|g| g.vmid == *vmid && g.is_template)
        else {
            continue;
        };
        let clones: Vec<String> = desired
            .guests
            .iter()
            .filter(|g| {
                g.boot
                    == Some(BootSource::Clone {
                        template: *vmid,
                        full: false,
                    })
                    && by_vmid.contains_key(&g.vmid)
            })
            .map(|g| format!("{} \"{}\"", g.vmid, g.name))
            .collect();
        if !clones.is_empty() {
            return Err(PlanError::TemplateInUse {
                vmid: *vmid,
                name: t.name.clone(),
                reason: reasons.join("; "),
                clones: clones.join(", "),
            });
        }
    }

    let want: BTreeSet<u32> = desired.guests.iter().map(|g| g.vmid).collect();
    for g in &observed.guests {
        if !want.contains(&g.vmid) && is_ours(g, lab) && g.config.is_some() {
            actions.push(Action::Delete {
                vmid: g.vmid,
                name: g.name.clone().unwrap_or_default(),
                node: g.node.clone(),
                kind: g.kind,
            });
        }
    }
    Ok(Plan {
        actions,
        summary: Summary::default(),
    }
    .finish())
}

/// Add the backup-job actions to a guest plan (see [`super::backups::diff`]).
pub fn plan_backups(
    desired: &Desired,
    jobs: &[super::backups::ObservedBackupJob],
    mut plan: Plan,
) -> Result<Plan, PlanError> {
    let replaced: BTreeSet<u32> = plan
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Replace { vmid, .. } => Some(*vmid),
            _ => None,
        })
        .collect();
    plan.actions.extend(super::backups::diff(
        &desired.backups,
        jobs,
        &desired.lab,
        &replaced,
    )?);
    Ok(plan.finish())
}

/// Add the SDN actions to a guest plan (see [`super::sdn::diff`]); nothing when `sdn:` is
/// not declared.
pub fn plan_sdn(
    desired: &Desired,
    sdn: &super::sdn::ObservedSdn,
    observed: &Observed,
    mut plan: Plan,
) -> Result<Plan, super::sdn::SdnPlanError> {
    let Some(want) = &desired.sdn else {
        return Ok(plan);
    };
    let actions = super::sdn::diff(&desired.lab, &desired.guests, want, sdn, observed, &plan)?;
    // Shown (and applied) before the guests, whose bridges they provide.
    let at = plan
        .actions
        .iter()
        .position(|a| {
            matches!(
                a,
                Action::Create { .. }
                    | Action::Replace { .. }
                    | Action::Update { .. }
                    | Action::Start { .. }
                    | Action::Delete { .. }
            )
        })
        .unwrap_or(plan.actions.len());
    plan.actions.splice(at..at, actions);
    Ok(plan.finish())
}

/// Add the Talos steps (secrets bundle, apply, bootstrap, outputs) to a guest plan.
pub fn plan_talos(desired: &Desired, talos: &TalosObserved, mut plan: Plan) -> Plan {
    let Some(cluster) = &desired.talos else {
        return plan;
    };
    if !talos.secrets_present {
        plan.actions.push(Action::GenerateTalosSecrets {
            path: cluster.secrets_file.display().to_string(),
        });
    }
    let recreated: BTreeSet<u32> = plan
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Create { vmid, .. } | Action::Replace { vmid, .. } => Some(*vmid),
            _ => None,
        })
        .collect();
    let mut any_apply = false;
    for d in desired.guests.iter().filter(|g| g.talos.is_some()) {
        let configured = talos.configured.contains(&d.vmid);
        if recreated.contains(&d.vmid) || !configured {
            any_apply = true;
            plan.actions.push(Action::TalosApplyConfig {
                vmid: d.vmid,
                name: d.name.clone(),
                role: d
                    .talos
                    .as_ref()
                    .map(|t| t.role.to_string())
                    .unwrap_or_default(),
            });
        }
    }
    let first_cp = cluster.nodes.iter().find_map(|vmid| {
        desired
            .guests
            .iter()
            .find(|g| g.vmid == *vmid && g.is_control_plane())
    });
    let all_cps_recreated = desired
        .guests
        .iter()
        .filter(|g| g.is_control_plane())
        .all(|g| recreated.contains(&g.vmid));
    if let Some(cp) = first_cp
        && (!talos.bootstrapped || all_cps_recreated)
    {
        plan.actions.push(Action::TalosBootstrap {
            vmid: cp.vmid,
            name: cp.name.clone(),
        });
    }
    plan.actions.extend(super::day2::plan_upgrades(
        desired,
        &talos.versions,
        &recreated,
    ));
    let fresh = any_apply || !talos.secrets_present;
    if fresh || !talos.talosconfig_current {
        plan.actions.push(Action::WriteOutput {
            what: "talosconfig".into(),
            path: desired.outputs.talosconfig.display().to_string(),
        });
    }
    if fresh || !talos.kubeconfig_current {
        plan.actions.push(Action::WriteOutput {
            what: "kubeconfig".into(),
            path: desired.outputs.kubeconfig.display().to_string(),
        });
    }
    plan.finish()
}

/// The settings of a container that only `root@pam` may make when creating it.
pub fn root_only_on_create(d: &DesiredGuest) -> Vec<String> {
    if d.kind != GuestKind::Lxc {
        return Vec::new();
    }
    let privileged = privileged(d);
    d.props
        .iter()
        .filter(|(k, v)| {
            is_numbered(k, "dev")
                || (k.as_str() == "features" && (privileged || !root_features(v).is_empty()))
        })
        .map(|(k, v)| format!("{k}={v}"))
        .collect()
}

/// A privileged container: pve-container lets only root@pam set any of its features.
fn privileged(d: &DesiredGuest) -> bool {
    d.props.get("unprivileged").is_some_and(|v| v == "0")
}

/// Whether changing `c` on container `d` needs `root@pam`.
pub fn change_needs_root(d: &DesiredGuest, c: &Change) -> bool {
    d.kind == GuestKind::Lxc
        && (is_numbered(&c.key, "dev")
            || (c.key == "features"
                && (privileged(d)
                    || root_features(c.from.as_deref().unwrap_or(""))
                        != root_features(c.to.as_deref().unwrap_or("")))))
}

/// Refuse, before anything changes, what an API token cannot do.
fn check_root_only(desired: &Desired, actions: &[Action]) -> Result<(), PlanError> {
    for a in actions {
        match a {
            Action::Create { vmid, .. } | Action::Replace { vmid, .. } => {
                let Some(d) = desired.guests.iter().find(|g| g.vmid == *vmid) else {
                    continue;
                };
                let keys = root_only_on_create(d);
                if !keys.is_empty() {
                    return Err(PlanError::NeedsRoot {
                        vmid: d.vmid,
                        name: d.name.clone(),
                        kind: d.kind.noun(),
                        keys: keys.join(", "),
                        manual: String::new(),
                    });
                }
            }
            Action::Update {
                vmid,
                name,
                kind,
                changes,
                ..
            } => {
                let Some(d) = desired.guests.iter().find(|g| g.vmid == *vmid) else {
                    continue;
                };
                let root: Vec<&Change> =
                    changes.iter().filter(|c| change_needs_root(d, c)).collect();
                if !root.is_empty() {
                    let set: Vec<String> = root
                        .iter()
                        .map(|c| match &c.to {
                            Some(v) => format!("-{} {v}", c.key),
                            None => format!("-delete {}", c.key),
                        })
                        .collect();
                    return Err(PlanError::NeedsRoot {
                        vmid: *vmid,
                        name: name.clone(),
                        kind: kind.noun(),
                        keys: root
                            .iter()
                            .map(|c| {
                                format!("{}={}", c.key, c.to.as_deref().unwrap_or("(removed)"))
                            })
                            .collect::<Vec<_>>()
                            .join(", "),
                        manual: format!(
                            " (or run `pct set {vmid} {}` on the node, then re-run)",
                            set.join(" ")
                        ),
                    });
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn create(d: &DesiredGuest, lab: &str) -> Action {
    let mut config: BTreeMap<String, String> = d
        .props
        .iter()
        .map(|(k, v)| (k.clone(), shown(d, k, v)))
        .collect();
    for (k, disk) in &d.disks {
        config.insert(k.clone(), disk.create_value());
    }
    for (k, v) in &d.create_only {
        let v = if k == "ssh-public-keys" {
            format!(
                "({} key(s))",
                v.lines().filter(|l| !l.trim().is_empty()).count()
            )
        } else {
            v.clone()
        };
        config.insert(k.clone(), v);
    }
    config.insert("tags".into(), d.tags(lab));
    match &d.boot {
        Some(BootSource::Clone { template, full }) => {
            let how = if *full { "full" } else { "linked" };
            config.insert("clone".into(), format!("{how} clone of {template}"));
            // The boot disk comes from the template and is grown to its size.
            if let Some(size) = d.disks.get("scsi0").and_then(|s| s.size) {
                config.insert("scsi0".into(), format!("(cloned), grown to {size}"));
            }
        }
        Some(BootSource::Image { .. }) if !d.is_template => {
            if let Some(size) = d.disks.get("scsi0").and_then(|s| s.size) {
                config.insert(
                    "scsi0".into(),
                    format!("{}, grown to {size}", d.disks["scsi0"].create_value()),
                );
            }
        }
        _ => {}
    }
    if d.is_template {
        config.insert("template".into(), "1".into());
    }
    Action::Create {
        vmid: d.vmid,
        name: d.name.clone(),
        node: d.node.clone(),
        kind: d.kind,
        config,
    }
}

fn shown(d: &DesiredGuest, key: &str, v: &str) -> String {
    if d.is_sensitive(key) {
        d.redact(key, v)
    } else {
        readable(key, v)
    }
}

/// A value as people read it: `sshkeys` is stored URL-encoded.
fn readable(key: &str, v: &str) -> String {
    if key == "sshkeys" {
        crate::model::vms::url_decode(v).trim_end().to_string()
    } else {
        v.to_string()
    }
}

/// Taking over `g` for `d`: the ownership tag and marker, and differences Proxmox applies
/// without a restart. Anything that would restart or re-create it is refused.
fn adopt_actions(d: &DesiredGuest, g: &ObservedGuest, lab: &str) -> Result<Vec<Action>, PlanError> {
    let mismatch = |what: String| PlanError::AdoptMismatch {
        vmid: d.vmid,
        name: d.name.clone(),
        kind: d.kind.noun(),
        what,
    };
    if g.config.is_none() {
        return Err(mismatch(
            "need its configuration, which was not read".into(),
        ));
    }
    let mut out = Vec::new();
    for a in guest_actions(d, g, lab) {
        match a {
            Action::Replace { reasons, .. } => {
                return Err(mismatch(format!("re-create it ({})", reasons.join("; "))));
            }
            Action::Update { changes, .. } => {
                let restart: Vec<&str> = changes
                    .iter()
                    .filter(|c| c.reboot)
                    .map(|c| c.key.as_str())
                    .collect();
                if !restart.is_empty() {
                    return Err(mismatch(format!(
                        "restart it to change {}",
                        restart.join(", ")
                    )));
                }
                out.push(Action::Adopt {
                    vmid: d.vmid,
                    name: d.name.clone(),
                    node: d.node.clone(),
                    kind: d.kind,
                    changes,
                });
            }
            other => out.push(other),
        }
    }
    Ok(out)
}

fn guest_actions(d: &DesiredGuest, g: &ObservedGuest, lab: &str) -> Vec<Action> {
    let start = || Action::Start {
        vmid: d.vmid,
        name: d.name.clone(),
        node: d.node.clone(),
        kind: d.kind,
    };
    // Templates never run.
    let stopped = g.status == "stopped" && !d.is_template;
    let Some(cfg) = &g.config else {
        // Decided from the resource list: nothing changed.
        return if stopped { vec![start()] } else { vec![] };
    };
    let mut reasons = Vec::new();
    // Where the boot disk came from is recorded in the description; another source means
    // a new disk.
    let boot_line = |text: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(BOOT_MARKER))
            .map(str::to_string)
    };
    if let (Some(want), Some(have)) = (
        d.props.get("description").and_then(|t| boot_line(t)),
        cfg.props.get("description").and_then(|t| boot_line(t)),
    ) && want != have
    {
        reasons.push(format!("its boot disk changes from {have} to {want}"));
    }
    if g.node != d.node {
        reasons.push(format!("moves from node {} to {}", g.node, d.node));
    }
    if g.kind != d.kind {
        reasons.push(format!(
            "changes from {} to {}",
            g.kind.noun(),
            d.kind.noun()
        ));
    }
    let mut changes = Vec::new();
    let lxc = d.kind == GuestKind::Lxc;
    let hot = |k: &str| {
        if lxc {
            LXC_HOT_KEYS.contains(&k)
        } else {
            HOT_KEYS.contains(&k)
        }
    };
    for (k, want) in &d.props {
        let have = cfg.props.get(k);
        // Proxmox omits some keys at their default; an absent key reads as the default.
        let have: Option<&str> = match (lxc, k.as_str(), have) {
            (true, "onboot" | "unprivileged", None) => Some("0"),
            _ => have.map(String::as_str),
        };
        if lxc
            && LXC_FIXED_KEYS.contains(&k.as_str())
            && have.map(|h| canon(k, h)) != Some(canon(k, want))
        {
            reasons.push(format!(
                "{k} changes from {} to {want}, which Proxmox only sets on creation",
                have.unwrap_or("unset")
            ));
            continue;
        }
        if have.map(|h| canon(k, h)) != Some(canon(k, want)) {
            let sensitive = d.is_sensitive(k);
            changes.push(Change {
                key: k.clone(),
                from: have.map(|h| shown(d, k, h)),
                to: Some(shown(d, k, want)),
                reboot: !hot(k),
                sensitive,
                shown: true,
            });
        }
    }
    let optional = if lxc {
        OPTIONAL_LXC_KEYS
    } else {
        OPTIONAL_KEYS
    };
    for k in optional {
        if !d.props.contains_key(*k)
            && let Some(h) = cfg.props.get(*k)
        {
            changes.push(Change {
                key: (*k).to_string(),
                from: Some(h.clone()),
                to: None,
                reboot: !hot(k),
                sensitive: false,
                shown: true,
            });
        }
    }
    // A PCI device no longer declared is detached.
    if !lxc {
        for (k, v) in &cfg.props {
            let is_pci = k
                .strip_prefix("hostpci")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if is_pci && !d.props.contains_key(k) {
                changes.push(Change {
                    key: k.clone(),
                    from: Some(v.clone()),
                    to: None,
                    reboot: true,
                    sensitive: false,
                    shown: true,
                });
            }
        }
    }
    // A container mount point no longer declared is detached (Proxmox keeps its volume as
    // `unusedN`, so no data is lost).
    if lxc {
        for (k, v) in &cfg.props {
            // A device no longer declared is detached as well.
            let gone = (is_numbered(k, "mp") && !d.disks.contains_key(k))
                || (is_numbered(k, "dev") && !d.props.contains_key(k));
            if gone {
                changes.push(Change {
                    key: k.clone(),
                    from: Some(v.clone()),
                    to: None,
                    reboot: true,
                    sensitive: false,
                    shown: true,
                });
            }
        }
    }
    // Tags: our owner tag must stay; the spec-hash tag is bookkeeping.
    let want_tags = canon_tags(&d.tags(lab));
    let have_tags = canon_tags(cfg.props.get("tags").map_or("", String::as_str));
    if want_tags != have_tags {
        let kept_foreign: BTreeSet<String> = have_tags
            .iter()
            .filter(|t| !t.starts_with(SPEC_TAG_PREFIX) && **t != owner_tag(lab))
            .cloned()
            .collect();
        let mut merged = want_tags.clone();
        merged.extend(kept_foreign);
        if merged != have_tags {
            let only_hash = have_tags
                .iter()
                .filter(|t| !t.starts_with(SPEC_TAG_PREFIX))
                .eq(merged.iter().filter(|t| !t.starts_with(SPEC_TAG_PREFIX)));
            changes.push(Change {
                key: "tags".into(),
                from: cfg.props.get("tags").cloned(),
                to: Some(merged.into_iter().collect::<Vec<_>>().join(";")),
                reboot: false,
                sensitive: false,
                shown: !only_hash,
            });
        }
    }
    for (k, want) in &d.disks {
        match cfg.props.get(k).and_then(|v| parse_disk(v)) {
            None => changes.push(Change {
                key: k.clone(),
                from: cfg.props.get(k).cloned(),
                to: Some(want.create_value()),
                reboot: !want.cloudinit,
                sensitive: false,
                shown: true,
            }),
            Some(have) => {
                if have.storage != want.storage {
                    reasons.push(format!(
                        "disk {k} moves from storage {} to {}",
                        have.storage, want.storage
                    ));
                    continue;
                }
                if let (Some(w), Some(h)) = (
                    want.size,
                    have.size_mib.map(crate::model::config::Size::from_mib),
                ) {
                    // A cloud VM's boot disk comes from an image or template that may
                    // already be larger than asked: the size is a minimum, never a shrink.
                    let minimum = want.import_from.is_some() || (d.boot.is_some() && k == "scsi0");
                    if w < h && !minimum {
                        reasons.push(format!("disk {k} cannot shrink from {h} to {w}"));
                        continue;
                    }
                    if w > h {
                        changes.push(Change {
                            key: k.clone(),
                            from: Some(format!("size={h}")),
                            to: Some(format!("size={w}")),
                            reboot: false,
                            sensitive: false,
                            shown: true,
                        });
                    }
                }
                let opts_differ = want.options.iter().any(|(ok, ov)| {
                    // A mount point without `backup` is not backed up.
                    let absent = (lxc && ok == "backup").then_some("0");
                    have.options.get(ok).map(String::as_str).or(absent) != Some(ov.as_str())
                });
                if opts_differ {
                    let fmt = |o: &BTreeMap<String, String>| {
                        o.iter()
                            .map(|(a, b)| format!("{a}={b}"))
                            .collect::<Vec<_>>()
                            .join(",")
                    };
                    changes.push(Change {
                        key: format!("{k}.options"),
                        from: Some(fmt(&have.options)),
                        to: Some(fmt(&want.options)),
                        reboot: true,
                        sensitive: false,
                        shown: true,
                    });
                }
            }
        }
    }
    if d.is_template && !g.is_template() {
        // Created but not yet converted (an interrupted run).
        changes.push(Change {
            key: "template".into(),
            from: None,
            to: Some("1".into()),
            reboot: false,
            sensitive: false,
            shown: true,
        });
    }
    if !reasons.is_empty() {
        return vec![Action::Replace {
            vmid: d.vmid,
            name: d.name.clone(),
            node: d.node.clone(),
            current_node: g.node.clone(),
            kind: d.kind,
            reasons,
        }];
    }
    let mut out = Vec::new();
    if !changes.is_empty() {
        let reboot = !stopped && changes.iter().any(|c| c.reboot);
        out.push(Action::Update {
            vmid: d.vmid,
            name: d.name.clone(),
            node: d.node.clone(),
            kind: d.kind,
            changes,
            reboot,
        });
    }
    if stopped {
        out.push(start());
    }
    out
}
