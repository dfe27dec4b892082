//! The `homelab.yaml` document as written by people: serde + JSON Schema.
//!
//! Strings documented as "may reference secrets" accept `${secret:dotted.path}` anywhere in
//! their text; the path names a value in the SOPS file given by `secrets.file`. References
//! are resolved in memory only (see [`super::desired::resolve`]).

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
}

/// LXC containers and the values they inherit.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Lxc {
    /// Values every container takes unless it sets them.
    #[serde(default)]
    pub defaults: ContainerSettings,
    /// The containers.
    pub containers: Vec<Container>,
}

/// One LXC container.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Container {
    /// Hostname (a DNS label), unique among guests.
    pub name: String,
    /// Proxmox VMID (100-999999999), fixed.
    pub vmid: u32,
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
    /// Start/shutdown order on boot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup: Option<Startup>,
    /// Extra tags (our ownership tags are added).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// A note shown in Proxmox (the ownership marker is appended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    // The same settings as `lxc.defaults` (`#[serde(flatten)]` would lose
    // `deny_unknown_fields`, so they are spelled out).
    /// OS template: an `http(s)://` URL (downloaded once into `proxmox.template_storage`
    /// under its file name) or a volume already in storage (`local:vztmpl/x.tar.zst`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// CPU cores (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cores: Option<u16>,
    /// Memory (default `512MiB`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Size>,
    /// Swap (default `512MiB`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap: Option<Size>,
    /// Root disk size (default `8GiB`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<Size>,
    /// Storage of the root disk (default `proxmox.storage`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
    /// Bridge (default `proxmox.bridge`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<String>,
    /// Gateway for static addresses. May reference secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// DNS servers. Each may reference secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nameservers: Option<Vec<String>>,
    /// Unprivileged container (default true). Changing it re-creates the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unprivileged: Option<bool>,
    /// Container features.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<Features>,
    /// SSH public keys for root, installed at creation (later changes need re-creation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_keys: Option<Vec<String>>,
    /// Start on host boot (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onboot: Option<bool>,
}

impl Container {
    /// Its own settings (each `None` falls back to `lxc.defaults`).
    pub fn settings(&self) -> ContainerSettings {
        ContainerSettings {
            template: self.template.clone(),
            cores: self.cores,
            memory: self.memory,
            swap: self.swap,
            disk: self.disk,
            storage: self.storage.clone(),
            bridge: self.bridge.clone(),
            gateway: self.gateway.clone(),
            nameservers: self.nameservers.clone(),
            unprivileged: self.unprivileged,
            features: self.features,
            ssh_keys: self.ssh_keys.clone(),
            onboot: self.onboot,
        }
    }
}

impl ContainerSettings {
    /// `self` where set, else `defaults`.
    pub fn or(self, d: &ContainerSettings) -> ContainerSettings {
        ContainerSettings {
            template: self.template.or_else(|| d.template.clone()),
            cores: self.cores.or(d.cores),
            memory: self.memory.or(d.memory),
            swap: self.swap.or(d.swap),
            disk: self.disk.or(d.disk),
            storage: self.storage.or_else(|| d.storage.clone()),
            bridge: self.bridge.or_else(|| d.bridge.clone()),
            gateway: self.gateway.or_else(|| d.gateway.clone()),
            nameservers: self.nameservers.or_else(|| d.nameservers.clone()),
            unprivileged: self.unprivileged.or(d.unprivileged),
            features: self.features.or(d.features),
            ssh_keys: self.ssh_keys.or_else(|| d.ssh_keys.clone()),
            onboot: self.onboot.or(d.onboot),
        }
    }
}

/// Container settings that `lxc.defaults` provides and containers override.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContainerSettings {
    /// OS template: an `http(s)://` URL (downloaded once into `proxmox.template_storage`
    /// under its file name) or a volume already in storage (`local:vztmpl/x.tar.zst`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// CPU cores (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cores: Option<u16>,
    /// Memory (default `512MiB`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Size>,
    /// Swap (default `512MiB`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap: Option<Size>,
    /// Root disk size (default `8GiB`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<Size>,
    /// Storage of the root disk (default `proxmox.storage`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
    /// Bridge (default `proxmox.bridge`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<String>,
    /// Gateway for static addresses. May reference secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// DNS servers. Each may reference secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nameservers: Option<Vec<String>>,
    /// Unprivileged container (default true). Changing it re-creates the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unprivileged: Option<bool>,
    /// Container features.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<Features>,
    /// SSH public keys for root, installed at creation (later changes need re-creation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_keys: Option<Vec<String>>,
    /// Start on host boot (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onboot: Option<bool>,
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
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Num(n) => Ok(Size::from_mib(n)),
            Raw::Text(t) => Size::parse(&t).map_err(serde::de::Error::custom),
        }
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
    fn schema_names_every_top_level_key() {
        let s = json_schema();
        let props = s["properties"].as_object().unwrap();
        for k in ["name", "secrets", "proxmox", "talos", "lxc", "outputs"] {
            assert!(props.contains_key(k), "{k} missing");
        }
        assert_eq!(s["additionalProperties"], serde_json::json!(false));
    }
}
