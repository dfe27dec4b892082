//! The `homelab.yaml` document as written by people: serde + JSON Schema.
//!
//! Strings documented as "may reference secrets" accept `${secret:dotted.path}` anywhere in
//! their text; the path names a value in the SOPS file given by `secrets.file`. References
//! are resolved in memory only (see [`super::desired::resolve`]).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The schema line every example starts with (relative to an example directory).
pub const SCHEMA_URL: &str =
    "https://raw.githubusercontent.com/homelab-rs/homelab/main/homelab.schema.json";

/// A homelab: one Proxmox VE host (or cluster) and what runs on it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Name of this homelab. Guests we create carry the tag `homelab-<name>` and an owner
    /// marker in their description; guests without them are never touched.
    /// Lowercase letters, digits and `-`, at most 40 characters.
    pub name: String,
    /// The SOPS-encrypted secrets file that `${secret:...}` references read from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<SecretsRef>,
    /// How to reach and use Proxmox VE.
    pub proxmox: Proxmox,
    /// A Talos Linux Kubernetes cluster running in Proxmox VMs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub talos: Option<Talos>,
    /// LXC containers (services), reconciled like the Talos VMs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lxc: Option<Lxc>,
    /// Scheduled vzdump backup jobs over the declared guests. Jobs carry the owner marker
    /// in their comment; jobs without it are never touched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backups: Vec<super::backups::BackupJob>,
    /// Proxmox storages (`storage.cfg`): created when missing and updated where they may
    /// change; never deleted (a storage no longer declared is left as it is).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub storages: Vec<super::storages::StorageDecl>,
    /// Proxmox resource pools: created when missing, their comment kept as declared. A pool
    /// homelab-cli created carries the owner marker in its comment; one no longer declared
    /// is deleted when empty (the plan refuses while it has members). Pools without the
    /// marker are never touched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<super::pools::PoolDecl>,
    /// Cloud images (Debian, Ubuntu, ...) that VMs are built from, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub images: BTreeMap<String, CloudImage>,
    /// Cloud-init VMs and their gold templates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vms: Option<Vms>,
    /// Proxmox SDN: zones, vnets and subnets, applied cluster-wide. A guest's `bridge`
    /// may name a vnet. Declaring `sdn:` (even empty) reconciles what this homelab owns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdn: Option<super::sdn::Sdn>,
    /// First-boot handoff: VMs with `handoff: true` get a signed provisioning token and the
    /// spec server's URL; `homelab-cli handoff serve` answers them with their spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handoff: Option<super::handoff::HandoffConfig>,
    /// Where generated client configurations are written (SOPS-encrypted).
    #[serde(default)]
    pub outputs: Outputs,
}

/// A SOPS file holding the secrets this configuration references.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretsRef {
    /// Path of the SOPS-encrypted YAML file, relative to homelab.yaml.
    pub file: PathBuf,
    /// Age identity file used to decrypt (relative to homelab.yaml). When absent:
    /// `SOPS_AGE_KEY`, `SOPS_AGE_KEY_FILE`, then `~/.config/sops/age/keys.txt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_key_file: Option<PathBuf>,
}

/// Proxmox VE connection and placement defaults.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Proxmox {
    /// API URL, e.g. `https://pve.lan:8006`. May reference secrets.
    pub endpoint: String,
    /// API token id `user@realm!name`. May reference secrets.
    pub token_id: String,
    /// API token secret (a UUID). Must reference a secret: plaintext is rejected.
    pub token_secret: String,
    /// The `root@pam` password, used only for what Proxmox reserves to `root@pam` logged in
    /// with a password (no API token or role can do it): container device passthrough
    /// (`devices`) and container features other than `nesting`. Must reference a secret.
    /// Without it such settings are refused when planning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_password: Option<String>,
    /// SHA-256 fingerprint of the node certificate to pin (`AA:BB:...`), for self-signed
    /// certificates. May reference secrets. Without it the system trust store is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// The Proxmox node guests are placed on unless they say otherwise.
    pub node: String,
    /// Storage for VM disks and cloud-init drives.
    #[serde(default = "default_storage")]
    pub storage: String,
    /// File storage holding ISO images (downloaded once, kept by `down`).
    #[serde(default = "default_iso_storage")]
    pub iso_storage: String,
    /// Bridge guest NICs attach to.
    #[serde(default = "default_bridge")]
    pub bridge: String,
    /// File storage holding LXC OS templates (`vztmpl`, downloaded once, kept by `down`).
    #[serde(default = "default_iso_storage")]
    pub template_storage: String,
    /// File storage holding cloud images (content `import`, downloaded once, kept by `down`).
    #[serde(default = "default_iso_storage")]
    pub image_storage: String,
    /// File storage holding cloud-init snippets (content `snippets`). Snippets cannot be
    /// uploaded through the API; they are written over SFTP (see `ssh`).
    #[serde(default = "default_iso_storage")]
    pub snippet_storage: String,
    /// Directory of `snippet_storage` on the node (`/var/lib/vz` for `local`).
    #[serde(default = "default_snippet_dir")]
    pub snippet_dir: String,
    /// SSH access to the node, used only to upload cloud-init snippets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<Ssh>,
}

fn default_snippet_dir() -> String {
    "/var/lib/vz".into()
}

/// SSH (SFTP) access to a Proxmox node for snippet uploads. The host key is pinned.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ssh {
    /// Host name or address; defaults to the host of `proxmox.endpoint`. May reference
    /// secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Per Proxmox node, the address to reach it at, for clusters (snippet storages such as
    /// `local` are per node): `{ pve2: 10.0.0.12 }`. Nodes not listed use `host`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hosts: BTreeMap<String, String>,
    /// Per Proxmox node, its host key fingerprint (nodes not listed must present
    /// `host_key`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub host_keys: BTreeMap<String, String>,
    /// Port (default 22).
    #[serde(default = "default_ssh_port")]
    pub port: u16,
    /// User (default `root`: the snippet directories belong to root).
    #[serde(default = "default_ssh_user")]
    pub user: String,
    /// The OpenSSH private key (ed25519). Must reference a secret.
    pub private_key: String,
    /// The node's host key fingerprint, `SHA256:...` as `ssh-keygen -lf` prints it
    /// (`homelab-cli proxmox ssh-fingerprint HOST` shows it). May reference secrets.
    pub host_key: String,
}

fn default_ssh_port() -> u16 {
    22
}
fn default_ssh_user() -> String {
    "root".into()
}

fn default_storage() -> String {
    "local-lvm".into()
}
fn default_iso_storage() -> String {
    "local".into()
}
fn default_bridge() -> String {
    "vmbr0".into()
}

/// Talos Linux: boot image, cluster and nodes.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Talos {
    /// Talos version, e.g. `v1.12.0`.
    pub version: String,
    /// Image Factory base URL.
    #[serde(default = "default_factory")]
    pub factory: String,
    /// System extensions baked into the image, e.g. `siderolabs/qemu-guest-agent`.
    #[serde(default)]
    pub extensions: Vec<String>,
    /// Extra kernel arguments baked into the image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_kernel_args: Vec<String>,
    /// The SOPS file holding the cluster's secrets bundle (generated once, then reused),
    /// relative to homelab.yaml.
    #[serde(default = "default_talos_secrets")]
    pub secrets_file: PathBuf,
    /// Kubernetes cluster settings.
    pub cluster: Cluster,
    /// Node network (static addresses are handed over through the cloud-init drive).
    #[serde(default)]
    pub network: Network,
    /// Defaults every node inherits.
    #[serde(default)]
    pub defaults: NodeDefaults,
    /// The cluster's nodes (Proxmox VMs).
    pub nodes: Vec<TalosNode>,
    /// Bare-metal nodes of the same cluster, network-booted by `homelab-cli pxe serve`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metal: Vec<super::metal::MetalNode>,
    /// Machine-config patches for every node and per role (see `docs/day2.md`).
    #[serde(
        default,
        skip_serializing_if = "super::patches::ClusterPatches::is_empty"
    )]
    pub patches: super::patches::ClusterPatches,
    /// How rolling upgrades proceed (`max_unavailable` workers at a time; see
    /// `docs/day2.md`).
    #[serde(
        default,
        skip_serializing_if = "super::rolling::UpgradePolicy::is_default"
    )]
    pub upgrade: super::rolling::UpgradePolicy,
    /// Encrypted etcd snapshots: `before_changes` takes one before `up` changes a control
    /// plane (see `docs/disaster-recovery.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd_backup: Option<super::etcd_backup::EtcdBackupSetting>,
}

fn default_factory() -> String {
    "https://factory.talos.dev".into()
}
fn default_talos_secrets() -> PathBuf {
    PathBuf::from("talos-secrets.enc.yaml")
}

/// Kubernetes cluster settings.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// Cluster name (appears in talosconfig and kubeconfig contexts).
    pub name: String,
    /// Shared virtual IP of the control planes (Talos layer-2 VIP). May reference secrets.
    /// When set, the Kubernetes endpoint is `https://<vip>:6443`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vip: Option<String>,
    /// Kubernetes API endpoint; defaults to the VIP, else the first control plane.
    /// May reference secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Let ordinary workloads run on control planes. Defaults to true when there are no
    /// workers (a single-node cluster), else false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_scheduling_on_control_planes: Option<bool>,
    /// Kubernetes version (defaults to the one Talos ships).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_version: Option<String>,
}

/// Node network settings.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// Default gateway. May reference secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Prefix length of static addresses.
    #[serde(default = "default_prefix")]
    pub prefix: u8,
    /// DNS servers. Each may reference secrets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
}

fn default_prefix() -> u8 {
    24
}

impl Default for Network {
    fn default() -> Self {
        Network {
            gateway: None,
            prefix: default_prefix(),
            nameservers: Vec::new(),
        }
    }
}

/// Values a node takes when it does not set them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeDefaults {
    /// Virtual CPU cores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cores: Option<u16>,
    /// Memory, e.g. `16GiB` (binary units: `16G` = `16GB` = `16GiB`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Size>,
    /// Boot disk size, e.g. `100GiB`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<Size>,
    /// The disk Talos installs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install_disk: Option<String>,
}

/// One Talos node, i.e. one Proxmox VM.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TalosNode {
    /// VM name and Talos hostname (a DNS label).
    pub name: String,
    /// Proxmox VMID (100-999999999).
    pub vmid: u32,
    /// `controlplane` or `worker`.
    pub role: Role,
    /// Proxmox node; defaults to `proxmox.node`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Virtual CPU cores (default 2 for control planes, 4 for workers... see `defaults`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cores: Option<u16>,
    /// Memory, e.g. `16GiB`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Size>,
    /// Boot disk size, e.g. `100GiB`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<Size>,
    /// Static IPv4 address (without prefix). May reference secrets. Without it the node's
    /// address is read from the QEMU guest agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// The disk Talos installs to (default `/dev/sda`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install_disk: Option<String>,
    /// Machine-config patches of this node only (applied last).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patches: Vec<super::patches::PatchSpec>,
}

/// LXC containers and the values they inherit.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Lxc {
    /// VMIDs of containers that do not set `vmid`: `vmid_base + index in the list`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmid_base: Option<u32>,
    /// Values every container takes unless it (or its preset) sets them.
    #[serde(default)]
    pub defaults: ContainerSettings,
    /// Named sets of settings (`small`, `large`, ...) a container picks with `preset`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub presets: BTreeMap<String, ContainerSettings>,
    /// The containers.
    pub containers: Vec<Container>,
}

impl Lxc {
    /// The VMID of container `i`: its own, else `vmid_base + i`.
    pub fn vmid_of(&self, i: usize) -> Option<u32> {
        let ct = self.containers.get(i)?;
        ct.vmid.or_else(|| index_vmid(self.vmid_base, i))
    }

    /// Container `i`'s settings: its own, then its preset's, then `defaults`.
    pub fn effective(&self, i: usize) -> Option<ContainerSettings> {
        let ct = self.containers.get(i)?;
        Some(layered(
            ct.settings(),
            ct.preset.as_ref(),
            &self.presets,
            &self.defaults,
        ))
    }
}

/// Settings that fall back, field by field, to another set (a preset, then defaults).
pub trait Fallback: Clone + Default {
    /// `self` where set, else `d`.
    fn or(self, d: &Self) -> Self;
}

/// A guest's settings: its own, then its preset's, then the section's defaults. The one
/// resolution order of every guest kind.
pub fn layered<S: Fallback>(
    own: S,
    preset: Option<&String>,
    presets: &BTreeMap<String, S>,
    defaults: &S,
) -> S {
    let p = preset
        .and_then(|p| presets.get(p))
        .cloned()
        .unwrap_or_default();
    own.or(&p.or(defaults))
}

/// Defines a guest kind's settings struct (what `defaults` and presets hold), the guest
/// struct (its own `guest` fields, then the same settings, spelled out once here because
/// `#[serde(flatten)]` would lose `deny_unknown_fields`), `settings()` from one to the other
/// and the field-by-field [`Fallback`].
macro_rules! guest_settings {
    (
        $(#[$sm:meta])* settings $settings:ident;
        $(#[$gm:meta])* guest $guest:ident {
            $( $(#[$em:meta])* pub $ename:ident: $ety:ty, )*
        }
        shared {
            $( $(#[$fm:meta])* $fname:ident: $fty:ty, )*
        }
    ) => {
        $(#[$sm])*
        #[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        pub struct $settings {
            $(
                $(#[$fm])*
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $fname: Option<$fty>,
            )*
        }

        $(#[$gm])*
        #[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        pub struct $guest {
            $( $(#[$em])* pub $ename: $ety, )*
            $(
                $(#[$fm])*
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $fname: Option<$fty>,
            )*
        }

        impl $guest {
            /// Its own settings (each `None` falls back to its preset, then the defaults).
            pub fn settings(&self) -> $settings {
                $settings {
                    $( $fname: self.$fname.clone(), )*
                }
            }
        }

        impl Fallback for $settings {
            fn or(self, d: &Self) -> Self {
                $settings {
                    $( $fname: self.$fname.or_else(|| d.$fname.clone()), )*
                }
            }
        }
    };
}

/// `base + index`, when there is a base and it fits.
pub fn index_vmid(base: Option<u32>, i: usize) -> Option<u32> {
    base.and_then(|b| b.checked_add(u32::try_from(i).ok()?))
}

guest_settings! {
    /// Container settings that `lxc.defaults` provides and containers override.
    settings ContainerSettings;
    /// One LXC container.
    guest Container {
        /// Hostname (a DNS label), unique among guests.
        pub name: String,
        /// Proxmox VMID (100-999999999); defaults to `lxc.vmid_base` + the position in the list.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub vmid: Option<u32>,
        /// A preset from `lxc.presets` whose settings this container takes unless it sets them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub preset: Option<String>,
        /// Proxmox node; defaults to `proxmox.node`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub node: Option<String>,
        /// Static IPv4 address with prefix (`10.0.0.20/24`) or `dhcp` (the default).
        /// May reference secrets.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub ip: Option<String>,
        /// Mount points `mp0`, `mp1`, ... in this order: new volumes on a storage.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub mounts: Vec<Mount>,
        /// Host devices passed into the container (`dev0`, `dev1`, ...), e.g. a GPU's
        /// `/dev/dri/renderD128` for hardware transcoding. Proxmox lets only `root@pam` set
        /// these: they need `proxmox.root_password`.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub devices: Vec<ContainerDevice>,
        /// Start/shutdown order on boot.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub startup: Option<Startup>,
        /// Extra tags (our ownership tags are added).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub tags: Vec<String>,
        /// A note shown in Proxmox (the ownership marker is appended).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub description: Option<String>,
        /// Take over an existing container of this VMID that carries no owner marker
        /// (`homelab-cli import` writes this): `up` adds the ownership tag and marker and
        /// nothing else, never restarting or re-creating it. Harmless once it is ours.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        pub adopt: bool,
        /// Further Proxmox configuration keys, set verbatim (`arch`, `ostype`, `cpulimit`,
        /// `env`, ...): what `import` found that the fields above do not cover. A key here
        /// overrides the value the fields above derive (e.g. a full `net0`). Values may
        /// reference secrets. Keys removed from here are left as they are on Proxmox.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        pub options: BTreeMap<String, String>,
        /// When the container does not exist, restore it from a vzdump backup instead of
        /// creating it empty: `latest` (the newest archive of its VMID in any backup storage;
        /// created empty when there is none) or a backup volume
        /// (`backups:backup/vzdump-lxc-103-2026_01_02-03_04_05.tar.zst`). The declared
        /// settings are applied over the backed-up ones. Never touches an existing container.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub restore: Option<String>,
        /// Resource pool the container belongs to (declared under `pools:`, or existing):
        /// set on creation, moved into it when it is elsewhere. Without it, its pool
        /// membership is left as it is.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub pool: Option<String>,
    }
    shared {
        /// OS template: an `http(s)://` URL (downloaded once into `proxmox.template_storage`
        /// under its file name) or a volume already in storage (`local:vztmpl/x.tar.zst`).
        template: String,
        /// CPU cores (default 1).
        cores: u16,
        /// Memory (default `512MiB`).
        memory: Size,
        /// Swap (default `512MiB`).
        swap: Size,
        /// Root disk size (default `8GiB`).
        disk: Size,
        /// Storage of the root disk (default `proxmox.storage`).
        storage: String,
        /// Bridge (default `proxmox.bridge`).
        bridge: String,
        /// Gateway for static addresses. May reference secrets.
        gateway: String,
        /// DNS servers. Each may reference secrets.
        nameservers: Vec<String>,
        /// Unprivileged container (default true). Changing it re-creates the container.
        unprivileged: bool,
        /// Container features.
        features: Features,
        /// SSH public keys for root, installed at creation (later changes need re-creation).
        ssh_keys: Vec<String>,
        /// Start on host boot (default true).
        onboot: bool,
    }
}

/// LXC feature flags. Proxmox lets only `root@pam` with a password (not an API token)
/// set flags other than `nesting`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Features {
    /// Nested containers (systemd, Docker).
    #[serde(default)]
    pub nesting: bool,
    /// The keyctl() system call (Docker in unprivileged containers).
    #[serde(default)]
    pub keyctl: bool,
}

/// A host device node passed into a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContainerDevice {
    /// Device node on the host, e.g. `/dev/dri/renderD128` or `/dev/net/tun`.
    pub path: String,
    /// Owner group ID inside the container (e.g. 44 = `video` on Debian).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    /// Owner user ID inside the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// Access mode, four octal digits (e.g. `0660`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

/// A mount point backed by a new volume.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Mount {
    /// Path inside the container, e.g. `/var/lib/postgresql`.
    pub path: String,
    /// Storage of the volume (e.g. a ZFS pool `tank`); default `proxmox.storage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
    /// Volume size.
    pub size: Size,
    /// Include the volume in backups (default false).
    #[serde(default)]
    pub backup: bool,
}

impl Startup {
    /// The Proxmox value, `order=N[,down=S][,up=S]`.
    pub fn to_prop(&self) -> String {
        let mut v = format!("order={}", self.order);
        if let Some(d) = self.down {
            v.push_str(&format!(",down={d}"));
        }
        if let Some(u) = self.up {
            v.push_str(&format!(",up={u}"));
        }
        v
    }
}

/// Boot order (`startup` in Proxmox).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Startup {
    /// Position: lower starts first, stops last.
    pub order: u32,
    /// Seconds to wait after starting it before starting the next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub up: Option<u32>,
    /// Seconds to wait for it to shut down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down: Option<u32>,
}

/// A cloud image: an `http(s)://` URL downloaded once into `proxmox.image_storage` (content
/// `import`) and verified, or a volume already in storage.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CloudImage {
    /// Where Proxmox downloads it from, e.g.
    /// `https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `ALGORITHM:HEX` (`sha256:...`, `sha512:...`) that Proxmox checks after the download.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    /// File name in storage (default: the URL's last segment). Must end in `.qcow2`,
    /// `.raw` or `.vmdk` (Ubuntu's `.img` cloud images are qcow2: name them `.qcow2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// An image already in storage instead of a URL (`local:import/debian-12.qcow2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<String>,
}

/// Cloud-init VMs, their gold templates and the values they inherit.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Vms {
    /// VMIDs of VMs that do not set `vmid`: `vmid_base + index in the list`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmid_base: Option<u32>,
    /// Values every VM takes unless it (or its preset) sets them.
    #[serde(default)]
    pub defaults: VmSettings,
    /// Named sets of settings (`small`, `medium`, `large`, ...) a VM picks with `preset`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub presets: BTreeMap<String, VmSettings>,
    /// Gold templates: VMs built from a cloud image once and converted to templates, which
    /// VMs clone with `clone`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub templates: Vec<VmTemplate>,
    /// The VMs.
    #[serde(default)]
    pub machines: Vec<Vm>,
}

/// A gold template built from a cloud image.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VmTemplate {
    /// Template name (a DNS label), unique among guests.
    pub name: String,
    /// Proxmox VMID (templates conventionally sit high, e.g. 9000).
    pub vmid: u32,
    /// Cloud image (a key of `images`).
    pub image: String,
    /// Proxmox node; defaults to `proxmox.node`. Clones are made on the same node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Storage of its disks (default `proxmox.storage`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
}

guest_settings! {
    /// VM settings that `vms.defaults` and `vms.presets` provide and VMs override.
    settings VmSettings;
    /// One cloud-init VM.
    guest Vm {
        /// VM name and hostname (a DNS label), unique among guests.
        pub name: String,
        /// Proxmox VMID (100-999999999); defaults to `vms.vmid_base` + the position in the list.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub vmid: Option<u32>,
        /// Proxmox node; defaults to `proxmox.node`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub node: Option<String>,
        /// A preset from `vms.presets` whose settings this VM takes unless it sets them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub preset: Option<String>,
        /// Clone this gold template (a name in `vms.templates`) instead of importing `image`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub clone: Option<String>,
        /// With `clone`: a full copy instead of a linked clone (default false: linked).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub full_clone: Option<bool>,
        /// Static IPv4 address with prefix (`10.0.20.11/24`) or `dhcp` (the default).
        /// May reference secrets.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub ip: Option<String>,
        /// PCI devices passed through (GPUs), as `hostpci0`, `hostpci1`, ...
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub pci: Vec<PciPassthrough>,
        /// Start/shutdown order on boot.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub startup: Option<Startup>,
        /// Extra tags (our ownership tags are added).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub tags: Vec<String>,
        /// A note shown in Proxmox (the ownership marker is appended).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub description: Option<String>,
        /// Take over an existing VM of this VMID that carries no owner marker (`homelab-cli
        /// import` writes this): `up` adds the ownership tag and marker and nothing else,
        /// never restarting or re-creating it. An adopted VM without its own `image` or
        /// `clone` is declared as it is: `vms.defaults` and presets do not apply to it, and
        /// what it leaves out is left as Proxmox has it.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        pub adopt: bool,
        /// Further Proxmox configuration keys, set verbatim (`machine`, `cpu`, `bios`,
        /// `agent`, `serial0`, `vga`, `boot`, a full `net0`, ...): what `import` found that
        /// the fields above do not cover. A key here overrides the value the fields derive.
        /// Values may reference secrets. Drives are not set here (they come from the image,
        /// the template or a backup). Keys removed from here are left as they are on Proxmox.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        pub options: BTreeMap<String, String>,
        /// When the VM does not exist, restore it from a vzdump backup instead of creating
        /// it: `latest` (the newest archive of its VMID in any backup storage; created from
        /// its image or template when there is none) or a backup volume
        /// (`backups:backup/vzdump-qemu-201-2026_01_02-03_04_05.vma.zst`). The declared
        /// settings are applied over the backed-up ones. Never touches an existing VM.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub restore: Option<String>,
        /// Resource pool the VM belongs to (declared under `pools:`, or existing): set on
        /// creation, moved into it when it is elsewhere. Without it, its pool membership is
        /// left as it is.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub pool: Option<String>,
    }
    shared {
        /// Cloud image (a key of `images`) the boot disk is imported from. Changing it
        /// later does not rebuild an existing VM.
        image: String,
        /// CPU cores (default 1).
        cores: u16,
        /// Memory (default `1GiB`).
        memory: Size,
        /// Boot disk size (default `10GiB`); the imported image is grown to it.
        disk: Size,
        /// Storage of the boot disk and cloud-init drive (default `proxmox.storage`).
        storage: String,
        /// Bridge (default `proxmox.bridge`).
        bridge: String,
        /// VLAN tag on the bridge port.
        vlan: u16,
        /// Gateway for static addresses. May reference secrets.
        gateway: String,
        /// DNS servers. Each may reference secrets.
        nameservers: Vec<String>,
        /// DNS search domain.
        searchdomain: String,
        /// The automation user cloud-init creates (default `homelab`; never `root`).
        /// It logs in with `ssh_keys` only: no password is ever set.
        user: String,
        /// The user's SSH public keys (`ssh-ed25519` only).
        ssh_keys: Vec<String>,
        /// Packages installed on first boot, e.g. `qemu-guest-agent` (Debian's cloud images lack it;
        /// the guest agent is switched on in Proxmox either way).
        packages: Vec<String>,
        /// Extra cloud-config (a mapping: `runcmd`, `write_files`, ...) merged into the
        /// vendor-data snippet.
        user_data: serde_json::Map<String, serde_json::Value>,
        /// Start on host boot (default true).
        onboot: bool,
        /// Give the VM a signed provisioning token and the spec server's URL (top-level
        /// `handoff:`) in its vendor data, to fetch its spec on first boot (default false).
        handoff: bool,
    }
}

impl Vms {
    /// The VMID of VM `i`: its own, else `vmid_base + i`.
    pub fn vmid_of(&self, i: usize) -> Option<u32> {
        let vm = self.machines.get(i)?;
        vm.vmid.or_else(|| index_vmid(self.vmid_base, i))
    }

    /// VM `i`'s settings: its own, then its preset's, then `defaults`.
    pub fn effective(&self, i: usize) -> Option<VmSettings> {
        let vm = self.machines.get(i)?;
        Some(layered(
            vm.settings(),
            vm.preset.as_ref(),
            &self.presets,
            &self.defaults,
        ))
    }
}

/// A host PCI device passed through to a VM, through a cluster PCI mapping (Proxmox lets
/// API tokens pass through mapped devices only; raw host ids are `root@pam`'s).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PciPassthrough {
    /// Cluster PCI mapping ID (Datacenter → Resource Mappings), e.g. `rtx3090`: lowercase
    /// letters, `-` and `_`, optionally ending in digits.
    pub mapping: String,
    /// Host PCI address on the VM's node: `0000:01:00.0` (one function) or `0000:01:00`
    /// (all functions, e.g. a GPU with its audio device). When given, `up` creates the
    /// mapping (or its entry for this node) from the host's device list; without it the
    /// mapping must exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Attach as PCI Express (default true; needs the q35 machine, which these VMs use).
    #[serde(default = "yes")]
    pub pcie: bool,
    /// Primary GPU of the VM (`x-vga`, default false).
    #[serde(default)]
    pub primary_gpu: bool,
    /// Expose the device ROM (`rombar`, default true).
    #[serde(default = "yes")]
    pub rombar: bool,
}

fn yes() -> bool {
    true
}

/// The role of a Talos node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Runs etcd and the Kubernetes control plane.
    Controlplane,
    /// Runs workloads only.
    Worker,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Controlplane => "controlplane",
            Role::Worker => "worker",
        })
    }
}

/// Generated client configurations, written SOPS-encrypted (paths relative to homelab.yaml).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Outputs {
    /// talosconfig.
    #[serde(default = "default_talosconfig")]
    pub talosconfig: PathBuf,
    /// kubeconfig.
    #[serde(default = "default_kubeconfig")]
    pub kubeconfig: PathBuf,
}

impl Default for Outputs {
    fn default() -> Self {
        Outputs {
            talosconfig: default_talosconfig(),
            kubeconfig: default_kubeconfig(),
        }
    }
}

fn default_talosconfig() -> PathBuf {
    PathBuf::from("output/talosconfig.enc.yaml")
}
fn default_kubeconfig() -> PathBuf {
    PathBuf::from("output/kubeconfig.enc.yaml")
}

/// A size with binary units: `512M`, `16G`, `16GB`, `16GiB`, `1T`. A bare number is MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size {
    mib: u64,
}

impl Size {
    /// A size in MiB.
    pub const fn from_mib(mib: u64) -> Self {
        Size { mib }
    }
    /// A size in GiB.
    pub const fn from_gib(gib: u64) -> Self {
        Size { mib: gib * 1024 }
    }
    /// The size in MiB.
    pub const fn mib(self) -> u64 {
        self.mib
    }
    /// The size in whole GiB, rounded up.
    pub const fn gib_ceil(self) -> u64 {
        self.mib.div_ceil(1024)
    }
    /// Parse `16G`, `16GB`, `16GiB`, `512M`, `1T`, or a bare number of MiB.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(digits_end);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("`{text}` is not a size (expected e.g. `16GiB` or `512M`)"))?;
        let factor = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "m" | "mb" | "mib" => 1,
            "g" | "gb" | "gib" => 1024,
            "t" | "tb" | "tib" => 1024 * 1024,
            other => {
                return Err(format!(
                    "unknown size unit `{other}` in `{text}` (use M, G or T; units are binary)"
                ));
            }
        };
        n.checked_mul(factor)
            .map(Size::from_mib)
            .ok_or_else(|| format!("size `{text}` is too large"))
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.mib >= 1024 && self.mib.is_multiple_of(1024) {
            write!(f, "{}GiB", self.mib / 1024)
        } else {
            write!(f, "{}MiB", self.mib)
        }
    }
}

impl Serialize for Size {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SizeVisitor)
    }
}

/// Sizes from YAML numbers or strings, with one clear message for everything else (an
/// untagged enum would only say "did not match any variant").
struct SizeVisitor;

impl serde::de::Visitor<'_> for SizeVisitor {
    type Value = Size;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a size such as `16GiB`, `512M` or a whole number of MiB")
    }

    fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Size, E> {
        Ok(Size::from_mib(n))
    }

    fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Size, E> {
        u64::try_from(n).map(Size::from_mib).map_err(|_| {
            E::custom(format!(
                "a size cannot be negative ({n}); write e.g. `2GiB` or `512` (MiB)"
            ))
        })
    }

    fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Size, E> {
        Err(E::custom(format!(
            "a size is a whole number of MiB or has a unit (`1.5G` → `1536M`), not {n}"
        )))
    }

    fn visit_str<E: serde::de::Error>(self, t: &str) -> Result<Size, E> {
        Size::parse(t).map_err(E::custom)
    }
}

impl JsonSchema for Size {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Size".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A size with binary units (`16G` = `16GB` = `16GiB`); a bare number is MiB.",
            "anyOf": [
                {"type": "integer", "minimum": 1},
                {"type": "string", "pattern": "^[0-9]+ ?([MmGgTt]([Ii]?[Bb])?)?$"}
            ]
        })
    }
}

/// JSON Schema of homelab.yaml, as `homelab-cli schema` prints it.
pub fn json_schema() -> serde_json::Value {
    let mut schema = schemars::schema_for!(Config);
    schema.insert(
        "$id".into(),
        serde_json::Value::String(SCHEMA_URL.to_string()),
    );
    schema.insert(
        "title".into(),
        serde_json::Value::String("homelab.yaml".into()),
    );
    schema.to_value()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_binary_units() {
        assert_eq!(Size::parse("16GB").unwrap(), Size::from_gib(16));
        assert_eq!(Size::parse("16GiB").unwrap(), Size::from_gib(16));
        assert_eq!(Size::parse("16 G").unwrap(), Size::from_gib(16));
        assert_eq!(Size::parse("512").unwrap(), Size::from_mib(512));
        assert_eq!(Size::parse("1T").unwrap(), Size::from_gib(1024));
        assert!(
            Size::parse("16 potatoes")
                .unwrap_err()
                .contains("unknown size unit")
        );
        assert!(Size::parse("GB").is_err());
        assert_eq!(Size::from_gib(100).to_string(), "100GiB");
        assert_eq!(Size::from_mib(1536).to_string(), "1536MiB");
    }

    #[test]
    fn negative_and_fractional_sizes_say_so() {
        let e = serde_yaml_ng::from_str::<Size>("-1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot be negative"), "{e}");
        let e = serde_yaml_ng::from_str::<Size>("1.5")
            .unwrap_err()
            .to_string();
        assert!(e.contains("whole number"), "{e}");
        assert_eq!(
            serde_yaml_ng::from_str::<Size>("\"2G\"").unwrap(),
            Size::from_gib(2)
        );
        assert_eq!(
            serde_yaml_ng::from_str::<Size>("512").unwrap(),
            Size::from_mib(512)
        );
    }

    #[test]
    fn schema_names_every_top_level_key() {
        let s = json_schema();
        let props = s["properties"].as_object().unwrap();
        for k in [
            "name", "secrets", "proxmox", "talos", "lxc", "images", "vms", "outputs",
        ] {
            assert!(props.contains_key(k), "{k} missing");
        }
        assert_eq!(s["additionalProperties"], serde_json::json!(false));
    }
}
