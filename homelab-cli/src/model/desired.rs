//! The resolved desired state: secrets substituted, defaults applied, every guest turned
//! into the Proxmox configuration it should have. This is what the planner compares with
//! what it observes; later guest kinds (cloud-init VMs, LXC) compile to the same shape.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::config::{Role, Size};
use super::secrets::SecretValues;
pub use super::vms::{BootSource, DesiredImage, DesiredPciMapping, DesiredSnippet};
use super::{ConfigError, ConfigErrors, Loaded};

/// The tag every guest of homelab `lab` carries.
pub fn owner_tag(lab: &str) -> String {
    format!("homelab-{lab}")
}

/// Prefix of the tag carrying the hash of the guest's desired configuration, which lets a
/// no-op plan skip reading each guest's configuration.
pub const SPEC_TAG_PREFIX: &str = "hl-spec-";

/// The description line that marks a guest as owned by homelab `lab`.
pub fn owner_marker(lab: &str) -> String {
    format!("homelab-cli:owner={lab}")
}

/// Whether a Proxmox description carries our owner marker for `lab`.
pub fn has_owner_marker(description: &str, lab: &str) -> bool {
    let marker = owner_marker(lab);
    description.lines().any(|l| l.trim() == marker)
}

/// Everything `up` should make true.
#[derive(Debug, Clone, Serialize)]
pub struct Desired {
    /// Homelab name (ownership).
    pub lab: String,
    /// Proxmox connection.
    pub proxmox: Connection,
    /// ISO images that must be in storage.
    pub isos: Vec<DesiredIso>,
    /// LXC OS templates that must be in storage (downloaded once).
    pub templates: Vec<DesiredTemplate>,
    /// Cloud images that must be in storage (downloaded once, checksum verified).
    pub images: Vec<DesiredImage>,
    /// Cloud-init snippets that must be on the nodes (uploaded over SFTP).
    pub snippets: Vec<DesiredSnippet>,
    /// Cluster PCI mappings to create for passed-through devices.
    pub pci_mappings: Vec<DesiredPciMapping>,
    /// Cloud images declared by `volume`, which must be in storage: (node, volid, image).
    pub existing_images: Vec<(String, String, String)>,
    /// Guests, ordered by VMID.
    pub guests: Vec<DesiredGuest>,
    /// VMIDs of declared guests that `up` may take over when they carry no owner marker
    /// (`adopt: true`).
    pub adopt: BTreeSet<u32>,
    /// Declared storages.
    pub storages: Vec<super::storages::DesiredStorage>,
    /// Declared resource pools.
    pub pools: Vec<super::pools::DesiredPool>,
    /// Per VMID, the resource pool a guest belongs to (`pool:` on a container or VM).
    pub guest_pools: BTreeMap<u32, String>,
    /// Per VMID, what a missing guest is restored from (`latest` or a backup volume).
    pub restore: BTreeMap<u32, String>,
    /// The Talos cluster, if any.
    pub talos: Option<TalosCluster>,
    /// Scheduled backup jobs, guests resolved to VMIDs.
    pub backups: Vec<super::backups::DesiredBackupJob>,
    /// Proxmox SDN objects (`None`: `sdn:` not declared, nothing reconciled).
    pub sdn: Option<super::sdn::DesiredSdn>,
    /// First-boot handoff (key in memory only).
    pub handoff: Option<super::handoff::DesiredHandoff>,
    /// Where encrypted outputs go.
    pub outputs: OutputPaths,
}

/// How to reach Proxmox VE.
#[derive(Debug, Clone, Serialize)]
pub struct Connection {
    /// API base URL.
    pub endpoint: String,
    /// `user@realm!token`.
    pub token_id: String,
    /// The token secret.
    #[serde(skip)]
    pub token_secret: SecretString,
    /// Pinned certificate fingerprint.
    pub fingerprint: Option<String>,
    /// Default node.
    pub node: String,
    /// SSH access for snippet uploads.
    pub ssh: Option<SshAccess>,
    /// `root@pam`'s password, for the settings only root may make.
    #[serde(skip)]
    pub root_password: Option<SecretString>,
}

/// SSH (SFTP) access to the Proxmox node(s), for snippet uploads.
#[derive(Debug, Clone, Serialize)]
pub struct SshAccess {
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// User.
    pub user: String,
    /// OpenSSH private key text.
    #[serde(skip)]
    pub private_key: SecretString,
    /// Pinned host key fingerprint (`SHA256:...`).
    pub host_key: String,
    /// Per-node addresses (clusters).
    pub hosts: BTreeMap<String, String>,
    /// Per-node host keys.
    pub host_keys: BTreeMap<String, String>,
}

impl SshAccess {
    /// Address and pinned host key of `node`'s SSH endpoint.
    pub fn target(&self, node: &str) -> (&str, &str) {
        (
            self.hosts
                .get(node)
                .map_or(self.host.as_str(), String::as_str),
            self.host_keys
                .get(node)
                .map_or(self.host_key.as_str(), String::as_str),
        )
    }
}

/// An ISO image downloaded into file storage once.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DesiredIso {
    /// Proxmox node whose storage holds it.
    pub node: String,
    /// File storage.
    pub storage: String,
    /// File name in `iso/`.
    pub filename: String,
    /// Where Proxmox downloads it from.
    pub url: String,
}

impl DesiredIso {
    /// `storage:iso/filename`.
    pub fn volid(&self) -> String {
        proxmox_client::VolumeId::new(
            self.storage.as_str(),
            proxmox_client::ContentKind::Iso,
            self.filename.as_str(),
        )
        .to_string()
    }
}

/// An LXC OS template downloaded into file storage once.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct DesiredTemplate {
    /// Proxmox node whose storage holds it.
    pub node: String,
    /// File storage (content `vztmpl`).
    pub storage: String,
    /// File name in `vztmpl/`.
    pub filename: String,
    /// Where Proxmox downloads it from.
    pub url: String,
}

impl DesiredTemplate {
    /// `storage:vztmpl/filename`.
    pub fn volid(&self) -> String {
        proxmox_client::VolumeId::new(
            self.storage.as_str(),
            proxmox_client::ContentKind::Vztmpl,
            self.filename.as_str(),
        )
        .to_string()
    }
}

/// QEMU VM or LXC container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GuestKind {
    /// A QEMU virtual machine.
    Qemu,
    /// An LXC container.
    Lxc,
}

impl GuestKind {
    /// `qemu` / `lxc`, as in Proxmox paths and resource ids.
    pub fn as_str(self) -> &'static str {
        match self {
            GuestKind::Qemu => "qemu",
            GuestKind::Lxc => "lxc",
        }
    }
    /// `vm` / `ct`, for people.
    pub fn noun(self) -> &'static str {
        match self {
            GuestKind::Qemu => "vm",
            GuestKind::Lxc => "ct",
        }
    }
}

impl From<GuestKind> for proxmox_client::GuestKind {
    fn from(k: GuestKind) -> Self {
        match k {
            GuestKind::Qemu => proxmox_client::GuestKind::Qemu,
            GuestKind::Lxc => proxmox_client::GuestKind::Lxc,
        }
    }
}

/// A disk the guest should have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiskSpec {
    /// Storage the volume lives on.
    pub storage: String,
    /// Size; `None` for volumes whose size Proxmox decides (EFI vars, cloud-init).
    pub size: Option<Size>,
    /// `cloudinit` drives are created with `storage:cloudinit`.
    pub cloudinit: bool,
    /// Options after the volume (`discard=on`, ...), compared with what Proxmox reports.
    pub options: BTreeMap<String, String>,
    /// A disk image the volume is imported from on creation (`local:import/x.qcow2`).
    /// Creation only: a later change does not rebuild the guest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub import_from: Option<String>,
}

impl DiskSpec {
    /// The value sent when creating the disk (`local-lvm:100,discard=on`; an imported disk
    /// is `local-lvm:0,import-from=local:import/x.qcow2,...` and grown afterwards).
    pub fn create_value(&self) -> String {
        match &self.import_from {
            Some(src) => {
                let mut s = format!("{}:0,import-from={src}", self.storage);
                for (k, v) in &self.options {
                    s.push_str(&format!(",{k}={v}"));
                }
                s
            }
            None => self.new_value(),
        }
    }

    /// The value for a new empty volume of this size (what the spec hash covers).
    pub fn new_value(&self) -> String {
        let vol = if self.cloudinit {
            format!("{}:cloudinit", self.storage)
        } else {
            // New volumes are given in GiB; EFI disks take a nominal `1`.
            format!("{}:{}", self.storage, self.size.map_or(1, Size::gib_ceil))
        };
        let mut s = vol;
        for (k, v) in &self.options {
            s.push_str(&format!(",{k}={v}"));
        }
        s
    }
}

/// One guest as it should exist on Proxmox.
#[derive(Debug, Clone, Serialize)]
pub struct DesiredGuest {
    /// VMID.
    pub vmid: u32,
    /// Name.
    pub name: String,
    /// Proxmox node.
    pub node: String,
    /// VM or container.
    pub kind: GuestKind,
    /// Managed configuration keys (not disks) in canonical form.
    pub props: BTreeMap<String, String>,
    /// Managed disks by config key (`scsi0`, `efidisk0`, `ide3`).
    pub disks: BTreeMap<String, DiskSpec>,
    /// Keys whose value came from a secret: plans print `(sensitive)` instead.
    pub sensitive: BTreeSet<String>,
    /// Hash of props + disks, recorded in a tag.
    pub spec_hash: String,
    /// Its Talos identity, for Talos nodes.
    pub talos: Option<TalosMember>,
    /// The ISO it boots from, if any (must be downloaded first).
    pub iso: Option<String>,
    /// The OS template a container is created from (must be in storage first).
    pub template: Option<String>,
    /// Parameters only sent on creation (`ostemplate`, `ssh-public-keys`): Proxmox does
    /// not report them back, so they are neither compared nor part of the spec hash.
    pub create_only: BTreeMap<String, String>,
    /// Tags the user asked for, besides ours.
    pub extra_tags: Vec<String>,
    /// Where a cloud-init VM's boot disk comes from (image import or template clone).
    pub boot: Option<BootSource>,
    /// Whether it is a gold template (created stopped, then converted).
    pub is_template: bool,
    /// The cloud-init snippet it references (must be uploaded first).
    pub snippet: Option<String>,
}

impl DesiredGuest {
    /// `value` of `key` as it may be shown: `(sensitive)` when it came from a secret, or
    /// with just the secret part masked (`key.part` in [`Self::sensitive`], e.g. the
    /// gateway in `ip=10.0.20.11/24,gw=(sensitive)`).
    pub fn redact(&self, key: &str, value: &str) -> String {
        if self.sensitive.contains(key) {
            return "(sensitive)".into();
        }
        let parts: Vec<&str> = self
            .sensitive
            .iter()
            .filter_map(|s| s.strip_prefix(key)?.strip_prefix('.'))
            .collect();
        if parts.is_empty() {
            return value.to_string();
        }
        value
            .split(',')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if parts.contains(&k) => format!("{k}=(sensitive)"),
                _ => p.to_string(),
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Whether any part of `key`'s value came from a secret.
    pub fn is_sensitive(&self, key: &str) -> bool {
        self.sensitive
            .iter()
            .any(|s| s == key || s.strip_prefix(key).is_some_and(|r| r.starts_with('.')))
    }

    /// The tags the guest carries (owner + spec hash), sorted as Proxmox stores them.
    pub fn tags(&self, lab: &str) -> String {
        let mut t: BTreeSet<String> = self
            .extra_tags
            .iter()
            .map(|t| t.to_ascii_lowercase())
            .collect();
        t.insert(owner_tag(lab));
        t.insert(format!("{SPEC_TAG_PREFIX}{}", self.spec_hash));
        t.into_iter().collect::<Vec<_>>().join(";")
    }

    /// Memory in MiB (0 if unmanaged).
    pub fn memory_mib(&self) -> u64 {
        self.props
            .get("memory")
            .and_then(|m| m.parse().ok())
            .unwrap_or(0)
    }

    /// Cores × sockets (0 if unmanaged).
    pub fn cpus(&self) -> u64 {
        let c: u64 = self
            .props
            .get("cores")
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        let s: u64 = self
            .props
            .get("sockets")
            .and_then(|m| m.parse().ok())
            .unwrap_or(1);
        c * s
    }

    /// Whether it is a Talos control-plane node.
    pub fn is_control_plane(&self) -> bool {
        self.talos
            .as_ref()
            .is_some_and(|t| t.role == Role::Controlplane)
    }

    /// Sum of sized disks in MiB.
    pub fn disk_mib(&self) -> u64 {
        self.disks
            .values()
            .filter_map(|d| d.size)
            .map(Size::mib)
            .sum()
    }
}

/// A guest's role in the Talos cluster.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TalosMember {
    /// controlplane / worker.
    pub role: Role,
    /// Static address (None: ask the guest agent).
    #[serde(skip)]
    pub ip: Option<IpAddr>,
    /// The disk Talos installs to.
    pub install_disk: String,
    /// Machine-config patches in application order (secrets substituted; not shown).
    #[serde(skip)]
    pub patches: super::patches::NodePatches,
}

/// The Talos cluster as it should run.
#[derive(Debug, Clone, Serialize)]
pub struct TalosCluster {
    /// Talos version (`v1.12.0`).
    pub version: String,
    /// Image Factory base URL.
    pub factory: String,
    /// Extensions in the image.
    pub extensions: Vec<String>,
    /// Extra kernel args in the image.
    pub extra_kernel_args: Vec<String>,
    /// The schematic's ID (its content hash).
    pub schematic_id: String,
    /// The installer image Talos installs itself from.
    pub installer_image: String,
    /// Cluster name.
    pub cluster_name: String,
    /// Kubernetes API endpoint URL.
    #[serde(skip)]
    pub endpoint: String,
    /// Control-plane VIP.
    #[serde(skip)]
    pub vip: Option<IpAddr>,
    /// Workloads on control planes.
    pub allow_scheduling_on_control_planes: bool,
    /// Kubernetes version.
    pub kubernetes_version: Option<String>,
    /// The SOPS file with the secrets bundle (absolute or relative to the cwd).
    pub secrets_file: PathBuf,
    /// Gateway for static addresses.
    #[serde(skip)]
    pub gateway: Option<IpAddr>,
    /// Prefix length.
    pub prefix: u8,
    /// DNS servers.
    #[serde(skip)]
    pub nameservers: Vec<IpAddr>,
    /// Node VMIDs in declaration order.
    pub nodes: Vec<u32>,
    /// Bare-metal nodes (`talos.metal`), their install disk resolved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metal: Vec<super::metal::MetalNode>,
    /// The patches metal nodes get: the cluster-wide ones, then their role's (metal nodes
    /// have no patches of their own).
    #[serde(skip)]
    pub metal_patches: super::patches::RolePatches,
    /// Workers a rolling upgrade may take down at once (`talos.upgrade.max_unavailable`).
    pub max_unavailable: u32,
    /// `talos.etcd_backup` (long form; `manual` when absent).
    pub etcd_backup: super::etcd_backup::EtcdBackup,
}

/// Output file paths (relative to the working directory).
#[derive(Debug, Clone, Serialize)]
pub struct OutputPaths {
    /// Encrypted talosconfig.
    pub talosconfig: PathBuf,
    /// Encrypted kubeconfig.
    pub kubeconfig: PathBuf,
}

/// What the image needs that only the factory library knows: the schematic ID for a set of
/// extensions, and URL layouts. Supplied by the caller so resolution stays pure.
pub trait ImageNaming {
    /// Content-addressed schematic ID for these extensions and kernel args.
    fn schematic_id(&self, extensions: &[String], extra_kernel_args: &[String]) -> String;
    /// URL of the nocloud ISO for a schematic and version.
    fn iso_url(&self, factory: &str, schematic_id: &str, version: &str) -> String;
    /// Installer image reference.
    fn installer_image(&self, factory: &str, schematic_id: &str, version: &str) -> String;
}

/// Substitute secrets, apply defaults, compile guests.
pub fn resolve(
    l: &Loaded,
    secrets: &SecretValues,
    naming: &dyn ImageNaming,
) -> Result<Desired, ConfigErrors> {
    let mut errs: Vec<ConfigError> = Vec::new();
    let c = &l.config;
    let text = |path: &str, value: &str, errs: &mut Vec<ConfigError>| {
        super::subst(l, secrets, path, value, errs)
    };
    let endpoint = text("proxmox.endpoint", &c.proxmox.endpoint, &mut errs);
    let token_id = text("proxmox.token_id", &c.proxmox.token_id, &mut errs);
    let token_secret = match secrets.substitute(&c.proxmox.token_secret) {
        Ok((v, _)) => Some(v),
        Err(e) => {
            errs.push(l.error_at("proxmox.token_secret", e));
            None
        }
    };
    let fingerprint = c
        .proxmox
        .fingerprint
        .as_ref()
        .and_then(|f| text("proxmox.fingerprint", f, &mut errs))
        .map(|(v, _)| v);
    if let Some((e, _)) = &endpoint
        && url::Url::parse(e)
            .map(|u| u.scheme() != "https" && u.scheme() != "http")
            .unwrap_or(true)
    {
        errs.push(
            l.error_at("proxmox.endpoint", format!("`{e}` is not an http(s) URL"))
                .with_help("e.g. `https://pve.lan:8006`"),
        );
    }

    let ip_of = |path: &str, v: &str, errs: &mut Vec<ConfigError>| -> Option<(IpAddr, bool)> {
        let (s, sens) = text(path, v, errs)?;
        match s.trim().parse::<IpAddr>() {
            Ok(ip) => Some((ip, sens)),
            Err(_) => {
                let shown = if sens {
                    "the secret value".to_string()
                } else {
                    format!("`{s}`")
                };
                errs.push(l.error_at(path, format!("{shown} is not an IP address")));
                None
            }
        }
    };

    let mut guests = Vec::new();
    let mut isos = Vec::new();
    let mut talos = None;
    if let Some(t) = &c.talos {
        for p in super::metal::validate(t) {
            errs.push(l.error_at(&p.path, p.message));
        }
        let schematic_id = naming.schematic_id(&t.extensions, &t.extra_kernel_args);
        let iso = DesiredIso {
            node: c.proxmox.node.clone(),
            storage: c.proxmox.iso_storage.clone(),
            filename: format!(
                "talos-{}-{}-nocloud-amd64.iso",
                t.version,
                &schematic_id[..schematic_id.len().min(12)]
            ),
            url: naming.iso_url(&t.factory, &schematic_id, &t.version),
        };
        let gateway = t
            .network
            .gateway
            .as_ref()
            .and_then(|g| ip_of("talos.network.gateway", g, &mut errs));
        let nameservers: Vec<(IpAddr, bool)> = t
            .network
            .nameservers
            .iter()
            .enumerate()
            .filter_map(|(i, n)| ip_of(&format!("talos.network.nameservers[{i}]"), n, &mut errs))
            .collect();
        let vip = t
            .cluster
            .vip
            .as_ref()
            .and_then(|v| ip_of("talos.cluster.vip", v, &mut errs));
        let agent = t
            .extensions
            .iter()
            .any(|e| e == "siderolabs/qemu-guest-agent");
        let mut node_ips = Vec::new();
        let mut seen_ips: BTreeMap<IpAddr, usize> = BTreeMap::new();
        let mut isos_needed = BTreeMap::new();
        for (i, n) in t.nodes.iter().enumerate() {
            let path = format!("talos.nodes[{i}]");
            let ip =
                n.ip.as_ref()
                    .and_then(|v| ip_of(&format!("{path}.ip"), v, &mut errs));
            if let Some((addr, _)) = ip {
                if let Some(prev) = seen_ips.insert(addr, i) {
                    errs.push(l.error_at(
                        &format!("{path}.ip"),
                        format!("this address is already given to talos.nodes[{prev}]"),
                    ));
                }
                if Some(addr) == vip.map(|v| v.0) {
                    errs.push(l.error_at(&format!("{path}.ip"), "this address is the cluster VIP"));
                }
            }
            node_ips.push(ip.map(|x| x.0));
            let node = n.node.clone().unwrap_or_else(|| c.proxmox.node.clone());
            let role = n.role;
            let cores = n.cores.or(t.defaults.cores).unwrap_or(match role {
                Role::Controlplane => 2,
                Role::Worker => 4,
            });
            let memory = n.memory.or(t.defaults.memory).unwrap_or(match role {
                Role::Controlplane => Size::from_gib(4),
                Role::Worker => Size::from_gib(8),
            });
            let disk = n.disk.or(t.defaults.disk).unwrap_or(Size::from_gib(100));
            let node_iso = DesiredIso {
                node: node.clone(),
                ..iso.clone()
            };
            let iso_volid = node_iso.volid();
            isos_needed.insert(node.clone(), node_iso);

            let mut props = BTreeMap::new();
            let mut sensitive = BTreeSet::new();
            props.insert("name".into(), n.name.clone());
            props.insert(
                "description".into(),
                format!(
                    "Talos {role} of cluster {} (homelab {}).\nManaged by homelab-cli: changes made here are reverted by `homelab-cli up`.\n{}",
                    t.cluster.name,
                    c.name,
                    owner_marker(&c.name)
                ),
            );
            props.insert("onboot".into(), "1".into());
            props.insert("ostype".into(), "l26".into());
            props.insert("machine".into(), "q35".into());
            props.insert("bios".into(), "ovmf".into());
            props.insert("cpu".into(), "host".into());
            props.insert("cores".into(), cores.to_string());
            props.insert("sockets".into(), "1".into());
            props.insert("memory".into(), memory.mib().to_string());
            // Talos must see all its memory: no ballooning.
            props.insert("balloon".into(), "0".into());
            // VirtIO SCSI, not "single": the latter can hang Talos disk discovery.
            props.insert("scsihw".into(), "virtio-scsi-pci".into());
            props.insert("net0".into(), format!("virtio,bridge={}", c.proxmox.bridge));
            props.insert("boot".into(), "order=scsi0;ide2".into());
            props.insert("serial0".into(), "socket".into());
            props.insert(
                "agent".into(),
                if agent { "enabled=1" } else { "enabled=0" }.into(),
            );
            props.insert("ide2".into(), format!("{iso_volid},media=cdrom"));
            props.insert("citype".into(), "nocloud".into());
            let ipconfig = match (ip, gateway) {
                (Some((addr, s1)), gw) => {
                    if s1 {
                        sensitive.insert("ipconfig0".to_string());
                    } else if gw.is_some_and(|g| g.1) {
                        sensitive.insert("ipconfig0.gw".to_string());
                    }
                    match gw {
                        Some((g, _)) => format!("gw={g},ip={addr}/{}", t.network.prefix),
                        None => format!("ip={addr}/{}", t.network.prefix),
                    }
                }
                (None, _) => "ip=dhcp".into(),
            };
            props.insert("ipconfig0".into(), ipconfig);
            if !nameservers.is_empty() {
                props.insert(
                    "nameserver".into(),
                    nameservers
                        .iter()
                        .map(|n| n.0.to_string())
                        .collect::<Vec<_>>()
                        .join(" "),
                );
                if nameservers.iter().any(|n| n.1) {
                    sensitive.insert("nameserver".into());
                }
            }
            let mut disks = BTreeMap::new();
            disks.insert(
                "efidisk0".to_string(),
                DiskSpec {
                    storage: c.proxmox.storage.clone(),
                    size: None,
                    cloudinit: false,
                    options: [("efitype", "4m"), ("pre-enrolled-keys", "0")]
                        .into_iter()
                        .map(|(a, b)| (a.to_string(), b.to_string()))
                        .collect(),
                    import_from: None,
                },
            );
            disks.insert(
                "scsi0".to_string(),
                DiskSpec {
                    storage: c.proxmox.storage.clone(),
                    size: Some(disk),
                    cloudinit: false,
                    options: [("discard", "on"), ("ssd", "1")]
                        .into_iter()
                        .map(|(a, b)| (a.to_string(), b.to_string()))
                        .collect(),
                    import_from: None,
                },
            );
            disks.insert(
                "ide3".to_string(),
                DiskSpec {
                    storage: c.proxmox.storage.clone(),
                    size: None,
                    cloudinit: true,
                    options: BTreeMap::new(),
                    import_from: None,
                },
            );
            let spec_hash = spec_hash(&node, &props, &disks);
            guests.push(DesiredGuest {
                vmid: n.vmid,
                name: n.name.clone(),
                node,
                kind: GuestKind::Qemu,
                props,
                disks,
                sensitive,
                spec_hash,
                talos: Some(TalosMember {
                    role,
                    ip: ip.map(|x| x.0),
                    install_disk: n
                        .install_disk
                        .clone()
                        .or_else(|| t.defaults.install_disk.clone())
                        .unwrap_or_else(|| "/dev/sda".into()),
                    patches: super::patches::resolve_node(l, secrets, i, &mut errs),
                }),
                iso: Some(iso_volid),
                template: None,
                create_only: BTreeMap::new(),
                extra_tags: Vec::new(),
                boot: None,
                is_template: false,
                snippet: None,
            });
        }
        isos.extend(isos_needed.into_values());
        let has_workers = t.nodes.iter().any(|n| n.role == Role::Worker)
            || t.metal.iter().any(|m| m.role == Role::Worker);
        let first_cp_ip = t
            .nodes
            .iter()
            .zip(&node_ips)
            .find(|(n, _)| n.role == Role::Controlplane)
            .and_then(|(_, ip)| *ip);
        let endpoint = match &t.cluster.endpoint {
            Some(e) => text("talos.cluster.endpoint", e, &mut errs).map(|x| x.0),
            None => vip
                .map(|v| v.0)
                .or(first_cp_ip)
                .map(|ip| format!("https://{}:6443", host_for_url(ip))),
        };
        let endpoint = match endpoint {
            Some(e) => e,
            None => {
                errs.push(
                    l.error_at("talos.cluster", "no Kubernetes endpoint can be derived")
                        .with_help(
                            "set `vip`, `endpoint`, or a static `ip` on the first control plane",
                        ),
                );
                String::new()
            }
        };
        talos = Some(TalosCluster {
            version: t.version.clone(),
            factory: t.factory.clone(),
            extensions: t.extensions.clone(),
            extra_kernel_args: t.extra_kernel_args.clone(),
            installer_image: naming.installer_image(&t.factory, &schematic_id, &t.version),
            schematic_id,
            cluster_name: t.cluster.name.clone(),
            endpoint,
            vip: vip.map(|v| v.0),
            allow_scheduling_on_control_planes: t
                .cluster
                .allow_scheduling_on_control_planes
                .unwrap_or(!has_workers),
            kubernetes_version: t.cluster.kubernetes_version.clone(),
            secrets_file: l.relative(&t.secrets_file),
            gateway: gateway.map(|g| g.0),
            prefix: t.network.prefix,
            nameservers: nameservers.iter().map(|n| n.0).collect(),
            nodes: t.nodes.iter().map(|n| n.vmid).collect(),
            metal: super::metal::resolved(t),
            metal_patches: if t.metal.is_empty() {
                super::patches::RolePatches::default()
            } else {
                super::patches::resolve_roles(l, secrets, &mut errs)
            },
            max_unavailable: t.upgrade.max_unavailable.get(),
            etcd_backup: t
                .etcd_backup
                .as_ref()
                .map(super::etcd_backup::EtcdBackupSetting::resolved)
                .unwrap_or_default(),
        });
    }
    let mut templates = BTreeSet::new();
    let mut adopt = BTreeSet::new();
    let mut restore = BTreeMap::new();
    let mut guest_pools: BTreeMap<u32, String> = BTreeMap::new();
    // Static addresses already given out (Talos nodes first), to report clashes.
    let mut taken: BTreeMap<IpAddr, String> = guests
        .iter()
        .filter_map(|g| {
            let ip = g.talos.as_ref()?.ip?;
            Some((ip, g.name.clone()))
        })
        .collect();
    if let Some(x) = &c.lxc {
        for (i, ct) in x.containers.iter().enumerate() {
            let path = format!("lxc.containers[{i}]");
            let s = x.effective(i).unwrap_or_default();
            let Some(vmid) = x.vmid_of(i) else {
                continue; // reported by validation
            };
            let node = ct.node.clone().unwrap_or_else(|| c.proxmox.node.clone());
            let Some(template) = s.template.clone() else {
                continue; // reported by validation
            };
            let volid = if template.starts_with("http://") || template.starts_with("https://") {
                let filename = url::Url::parse(&template)
                    .ok()
                    .and_then(|u| {
                        u.path_segments()
                            .and_then(|mut p| p.next_back().map(str::to_string))
                    })
                    .filter(|f| !f.is_empty());
                let Some(filename) = filename else {
                    errs.push(l.error_at(
                        &format!("{path}.template"),
                        format!("`{template}` does not end in a file name"),
                    ));
                    continue;
                };
                let t = DesiredTemplate {
                    node: node.clone(),
                    storage: c.proxmox.template_storage.clone(),
                    filename,
                    url: template.clone(),
                };
                let v = t.volid();
                templates.insert(t);
                v
            } else if template.contains(":vztmpl/") {
                template.clone()
            } else {
                errs.push(
                    l.error_at(
                        &format!("{path}.template"),
                        format!("`{template}` is neither a URL nor a template volume"),
                    )
                    .with_help("e.g. `local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst`"),
                );
                continue;
            };
            let mut props = BTreeMap::new();
            let mut sensitive = BTreeSet::new();
            props.insert("hostname".to_string(), ct.name.clone());
            let note = ct
                .description
                .as_deref()
                .map(|d| format!("{}\n", d.trim_end()))
                .unwrap_or_default();
            props.insert(
                "description".into(),
                format!(
                    "{note}Managed by homelab-cli (homelab {}): changes made here are reverted by `homelab-cli up`.\n{}",
                    c.name,
                    owner_marker(&c.name)
                ),
            );
            props.insert("cores".into(), s.cores.unwrap_or(1).to_string());
            props.insert(
                "memory".into(),
                s.memory.unwrap_or(Size::from_mib(512)).mib().to_string(),
            );
            props.insert(
                "swap".into(),
                s.swap.unwrap_or(Size::from_mib(512)).mib().to_string(),
            );
            props.insert(
                "unprivileged".into(),
                u8::from(s.unprivileged.unwrap_or(true)).to_string(),
            );
            props.insert(
                "onboot".into(),
                u8::from(s.onboot.unwrap_or(true)).to_string(),
            );
            let f = s.features.unwrap_or_default();
            let mut feats = Vec::new();
            if f.keyctl {
                feats.push("keyctl=1");
            }
            if f.nesting {
                feats.push("nesting=1");
            }
            if !feats.is_empty() {
                props.insert("features".into(), feats.join(","));
            }
            if let Some(st) = ct.startup {
                props.insert("startup".into(), st.to_prop());
            }
            let bridge = s.bridge.clone().unwrap_or_else(|| c.proxmox.bridge.clone());
            let mut net = format!("name=eth0,bridge={bridge}");
            match ct.ip.as_deref() {
                None => net.push_str(",ip=dhcp"),
                Some(v) => {
                    if let Some((ip, sens)) = text(&format!("{path}.ip"), v, &mut errs) {
                        let ip = ip.trim().to_string();
                        if ip == "dhcp" {
                            net.push_str(",ip=dhcp");
                        } else {
                            let ok = ip.split_once('/').is_some_and(|(a, p)| {
                                a.parse::<std::net::Ipv4Addr>().is_ok()
                                    && p.parse::<u8>().is_ok_and(|p| p <= 32)
                            });
                            if let Some(addr) = ip
                                .split_once('/')
                                .and_then(|(a, _)| a.parse::<IpAddr>().ok())
                                && let Some(prev) = taken.insert(addr, ct.name.clone())
                            {
                                errs.push(l.error_at(
                                    &format!("{path}.ip"),
                                    format!("this address is already given to {prev}"),
                                ));
                            }
                            if !ok {
                                let shown = if sens {
                                    "the secret value".into()
                                } else {
                                    format!("`{ip}`")
                                };
                                errs.push(
                                    l.error_at(
                                        &format!("{path}.ip"),
                                        format!("{shown} is not an IPv4 address with prefix"),
                                    )
                                    .with_help("e.g. `10.0.0.20/24`, or `dhcp`"),
                                );
                            }
                            if sens {
                                sensitive.insert("net0".to_string());
                            }
                            net.push_str(&format!(",ip={ip}"));
                            if let Some(g) = &s.gateway {
                                let gpath = if ct.gateway.is_some() {
                                    format!("{path}.gateway")
                                } else {
                                    "lxc.defaults.gateway".into()
                                };
                                if let Some((g, gs)) = ip_of(&gpath, g, &mut errs) {
                                    if gs {
                                        sensitive.insert("net0.gw".to_string());
                                    }
                                    net.push_str(&format!(",gw={g}"));
                                }
                            }
                        }
                    }
                }
            }
            props.insert("net0".into(), net);
            for (j, dev) in ct.devices.iter().enumerate() {
                let mut v = dev.path.clone();
                if let Some(g) = dev.gid {
                    v.push_str(&format!(",gid={g}"));
                }
                if let Some(m) = &dev.mode {
                    v.push_str(&format!(",mode={m}"));
                }
                if let Some(u) = dev.uid {
                    v.push_str(&format!(",uid={u}"));
                }
                props.insert(format!("dev{j}"), v);
            }
            if let Some(ns) = &s.nameservers {
                let base = if ct.nameservers.is_some() {
                    path.clone()
                } else {
                    "lxc.defaults".into()
                };
                let ips: Vec<(IpAddr, bool)> = ns
                    .iter()
                    .enumerate()
                    .filter_map(|(j, n)| ip_of(&format!("{base}.nameservers[{j}]"), n, &mut errs))
                    .collect();
                if !ips.is_empty() {
                    if ips.iter().any(|x| x.1) {
                        sensitive.insert("nameserver".into());
                    }
                    props.insert(
                        "nameserver".into(),
                        ips.iter()
                            .map(|x| x.0.to_string())
                            .collect::<Vec<_>>()
                            .join(" "),
                    );
                }
            }
            super::import::apply_options(
                l,
                &path,
                ct,
                secrets,
                &mut props,
                &mut sensitive,
                &mut errs,
            );
            if ct.adopt {
                adopt.insert(vmid);
            }
            if let Some(pool) = &ct.pool {
                super::vm_adopt::check_pool(l, &format!("{path}.pool"), pool, &mut errs);
                guest_pools.insert(vmid, pool.clone());
            }
            if let Some(r) = &ct.restore {
                if r == "latest" || r.contains(":backup/") {
                    restore.insert(vmid, r.clone());
                } else {
                    errs.push(
                        l.error_at(
                            &format!("{path}.restore"),
                            format!("`{r}` is neither `latest` nor a backup volume"),
                        )
                        .with_help("e.g. `latest`, or `backups:backup/vzdump-lxc-103-2026_01_02-03_04_05.tar.zst` (`homelab-cli backup list` shows them)"),
                    );
                }
            }
            let storage = s
                .storage
                .clone()
                .unwrap_or_else(|| c.proxmox.storage.clone());
            let mut disks = BTreeMap::new();
            disks.insert(
                "rootfs".to_string(),
                DiskSpec {
                    storage,
                    size: Some(s.disk.unwrap_or(Size::from_gib(8))),
                    cloudinit: false,
                    options: BTreeMap::new(),
                    import_from: None,
                },
            );
            for (j, m) in ct.mounts.iter().enumerate() {
                let mut options = BTreeMap::new();
                options.insert("backup".to_string(), u8::from(m.backup).to_string());
                options.insert("mp".to_string(), m.path.clone());
                disks.insert(
                    format!("mp{j}"),
                    DiskSpec {
                        storage: m
                            .storage
                            .clone()
                            .unwrap_or_else(|| c.proxmox.storage.clone()),
                        size: Some(m.size),
                        cloudinit: false,
                        options,
                        import_from: None,
                    },
                );
            }
            let mut create_only = BTreeMap::new();
            create_only.insert("ostemplate".to_string(), volid.clone());
            if let Some(keys) = &s.ssh_keys
                && !keys.is_empty()
            {
                create_only.insert("ssh-public-keys".to_string(), keys.join("\n"));
            }
            let mut extra_tags: Vec<String> =
                ct.tags.iter().map(|t| t.to_ascii_lowercase()).collect();
            extra_tags.sort();
            extra_tags.dedup();
            let mut hashed = props.clone();
            hashed.insert("tags".into(), extra_tags.join(";"));
            let spec_hash = spec_hash(&node, &hashed, &disks);
            guests.push(DesiredGuest {
                vmid,
                name: ct.name.clone(),
                node,
                kind: GuestKind::Lxc,
                props,
                disks,
                sensitive,
                spec_hash,
                talos: None,
                iso: None,
                template: Some(volid),
                create_only,
                extra_tags,
                boot: None,
                is_template: false,
                snippet: None,
            });
        }
    }
    let compiled = super::vms::compile(l, secrets, &mut errs, &mut taken);
    guests.extend(compiled.guests);
    adopt.extend(compiled.adopt);
    restore.extend(compiled.restore);
    guest_pools.extend(compiled.pools);
    let ssh = c.proxmox.ssh.as_ref().and_then(|s| {
        let host = match &s.host {
            Some(h) => text("proxmox.ssh.host", h, &mut errs)?.0,
            None => endpoint
                .as_ref()
                .and_then(|(e, _)| url::Url::parse(e).ok())
                .and_then(|u| u.host_str().map(str::to_string))?,
        };
        let host_key = text("proxmox.ssh.host_key", &s.host_key, &mut errs)?.0;
        if let Err(e) = host_key.parse::<proxmox_client::snippets::HostKeyPin>() {
            errs.push(
                l.error_at("proxmox.ssh.host_key", e.to_string())
                    .with_help("`homelab-cli proxmox ssh-fingerprint HOST` prints it"),
            );
            return None;
        }
        let private_key = match secrets.substitute(&s.private_key) {
            Ok((v, _)) => v,
            Err(e) => {
                errs.push(l.error_at("proxmox.ssh.private_key", e));
                return None;
            }
        };
        // Checked now rather than at the first upload; the message never quotes the key.
        if proxmox_client::snippets::decode_private_key(private_key.expose_secret(), None, "the secret").is_err() {
            errs.push(
                l.error_at("proxmox.ssh.private_key", "the secret is not an unencrypted OpenSSH private key")
                    .with_help("store the text of an `ssh-keygen -t ed25519 -N ''` private key in the SOPS file"),
            );
            return None;
        }
        for (node, pin) in &s.host_keys {
            if let Err(e) = pin.parse::<proxmox_client::snippets::HostKeyPin>() {
                errs.push(l.error_at(&format!("proxmox.ssh.host_keys.{node}"), e.to_string()));
            }
        }
        Some(SshAccess {
            host,
            port: s.port,
            user: s.user.clone(),
            private_key,
            host_key,
            hosts: s.hosts.clone(),
            host_keys: s.host_keys.clone(),
        })
    });
    let root_password = c.proxmox.root_password.as_ref().and_then(|p| {
        secrets
            .substitute(p)
            .map(|(v, _)| v)
            .map_err(|e| errs.push(l.error_at("proxmox.root_password", e)))
            .ok()
    });
    guests.sort_by_key(|g| g.vmid);
    let storages = super::storages::resolve(l, &mut errs);
    let pools = super::pools::resolve(l, &mut errs);
    // Backup jobs select guests by name or tag: resolved once every guest is known.
    let refs: Vec<super::backups::GuestRef<'_>> = guests
        .iter()
        .map(|g| super::backups::GuestRef {
            name: &g.name,
            vmid: g.vmid,
            tags: &g.extra_tags,
        })
        .collect();
    let backups = super::backups::resolve(l, &refs).unwrap_or_else(|e| {
        errs.extend(e);
        Vec::new()
    });
    let handoff = super::handoff::resolve(l, secrets, &mut errs);
    if !errs.is_empty() {
        return Err(ConfigErrors::new(l.path.clone(), errs));
    }
    Ok(Desired {
        lab: c.name.clone(),
        proxmox: Connection {
            endpoint: endpoint.map(|e| e.0).unwrap_or_default(),
            token_id: token_id.map(|e| e.0).unwrap_or_default(),
            token_secret: token_secret.unwrap_or_else(|| SecretString::from(String::new())),
            fingerprint,
            node: c.proxmox.node.clone(),
            ssh,
            root_password,
        },
        isos,
        templates: templates.into_iter().collect(),
        images: compiled.images.into_iter().collect(),
        snippets: compiled.snippets.into_iter().collect(),
        pci_mappings: compiled.pci_mappings.into_iter().collect(),
        existing_images: compiled.existing_images.into_iter().collect(),
        guests,
        adopt,
        restore,
        storages,
        pools,
        guest_pools,
        talos,
        backups,
        sdn: c.sdn.as_ref().map(|s| super::sdn::resolve(s, &c.name)),
        handoff,
        outputs: OutputPaths {
            talosconfig: l.relative(&c.outputs.talosconfig),
            kubeconfig: l.relative(&c.outputs.kubeconfig),
        },
    })
}

fn host_for_url(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// A short content hash of what we manage on a guest (its node included).
pub fn spec_hash(
    node: &str,
    props: &BTreeMap<String, String>,
    disks: &BTreeMap<String, DiskSpec>,
) -> String {
    let mut h = Sha256::new();
    h.update(node.as_bytes());
    h.update([0]);
    for (k, v) in props {
        h.update(k.as_bytes());
        h.update([b'=']);
        h.update(v.as_bytes());
        h.update([0]);
    }
    for (k, d) in disks {
        h.update(k.as_bytes());
        h.update([b'=']);
        h.update(d.new_value().as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..6])
}
