//! Why the planner refuses to plan, and what to do about it.

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
    /// The Talos secrets bundle is not the one the running nodes were configured with.
    #[error(
        "the Talos secrets bundle {path} does not belong to this cluster: node(s) {nodes} present a certificate its CA did not sign"
    )]
    SecretsForeign {
        /// The bundle's path.
        path: String,
        /// The nodes whose certificate failed the check (`vmid "name"`, metal names).
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
    /// The node of a passed-through PCI device did not answer, so its devices are unknown.
    #[error(
        "node {node} is not online: the PCI device {device} passed to {name} cannot be checked"
    )]
    PciNodeOffline {
        /// The declared address.
        device: String,
        /// The node.
        node: String,
        /// The VM.
        name: String,
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
    /// A guest names a pool that is neither declared nor on the cluster.
    #[error(
        "{kind} {vmid} \"{name}\" is to be in pool {pool}, which is neither declared under `pools:` nor on the cluster"
    )]
    UnknownGuestPool {
        /// `ct` or `vm`.
        kind: &'static str,
        /// VMID.
        vmid: u32,
        /// Name.
        name: String,
        /// The pool.
        pool: String,
    },
    /// A guest to restore names a backup that is not there.
    #[error(transparent)]
    Restore(#[from] crate::engine::restore::RestoreError),
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
            PlanError::SecretsForeign { .. } => {
                "restore the cluster's own bundle from git history or a backup (`git log -- <path>`); to start the cluster over instead, destroy its nodes (`homelab-cli down`) and run `up` again"
            }
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
            PlanError::PciNodeOffline { .. } => {
                "bring the node back (Proxmox shows it offline or unreachable), then run `homelab-cli up` again"
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
            PlanError::UnknownGuestPool { .. } => {
                "declare the pool under `pools:` (or fix the name)"
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
