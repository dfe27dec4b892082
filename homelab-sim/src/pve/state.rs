//! The persistent state of the simulated cluster (what `/etc/pve` and the storages hold).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};

/// Everything a later process must see again.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct State {
    pub format: u32,
    pub cluster: String,
    pub nodes: BTreeMap<String, NodeState>,
    pub storages: BTreeMap<String, StorageCfg>,
    /// Volumes by `<node>/<volid>`.
    pub volumes: BTreeMap<String, Volume>,
    pub guests: BTreeMap<u32, Guest>,
    /// Tasks by UPID.
    pub tasks: BTreeMap<String, Task>,
    pub pools: BTreeMap<String, Pool>,
    pub users: BTreeMap<String, User>,
    /// API tokens by full id `user@realm!name`.
    pub tokens: BTreeMap<String, Token>,
    /// Custom roles (built-in ones live in code).
    pub roles: BTreeMap<String, BTreeSet<String>>,
    pub acl: Vec<AclEntry>,
    pub backup_jobs: BTreeMap<String, BTreeMap<String, String>>,
    pub sdn_zones: BTreeMap<String, SdnObject>,
    pub sdn_vnets: BTreeMap<String, SdnObject>,
    pub sdn_subnets: BTreeMap<String, SdnObject>,
    /// Cluster PCI resource mappings (`/etc/pve/mapping/pci.cfg`) by id.
    #[serde(default)]
    pub pci_mappings: BTreeMap<String, PciMapping>,
    pub next_pid: u32,
    /// Backup archives' contents (configuration, data markers, notes) by `<node>/<volid>`.
    #[serde(default)]
    pub archives: BTreeMap<String, super::vzdump::Archive>,
    /// Data markers on volumes by `<node>/<volid>` (what tests write "inside" a disk).
    #[serde(default)]
    pub volume_data: BTreeMap<String, String>,
    /// Key signing tickets and CSRF tokens (PVE keeps `authkey.key` on disk too).
    pub auth_key: String,
}

/// A cluster node.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct NodeState {
    pub maxcpu: u32,
    pub maxmem: u64,
    pub maxdisk: u64,
    pub boot_time: u64,
    /// The host's PCI devices (what `/sys/bus/pci/devices` holds).
    #[serde(default = "default_pci_devices")]
    pub pci: Vec<PciDevice>,
    /// Host device nodes a container may get through `devN` (`/dev/dri/renderD128`, ...).
    #[serde(default = "default_dev_nodes")]
    pub dev_nodes: Vec<String>,
}

/// One host PCI function, with the fields `GET /nodes/{node}/hardware/pci` reports
/// (pve-common `SysFSTools::lspci`). Ids are hex with `0x`, as sysfs prints them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PciDevice {
    /// `0000:01:00.0` (domain:bus:slot.function).
    pub id: String,
    /// Class code, e.g. `0x030000` (VGA controller).
    pub class: String,
    /// Vendor id, e.g. `0x10de`.
    pub vendor: String,
    /// Device id, e.g. `0x2204`.
    pub device: String,
    /// Vendor name from `pci.ids`.
    pub vendor_name: Option<String>,
    /// Device name from `pci.ids`.
    pub device_name: Option<String>,
    /// Subsystem vendor id.
    pub subsystem_vendor: Option<String>,
    /// Subsystem device id.
    pub subsystem_device: Option<String>,
    /// Subsystem vendor name.
    pub subsystem_vendor_name: Option<String>,
    /// Subsystem device name.
    pub subsystem_device_name: Option<String>,
    /// IOMMU group; -1 when the host has none.
    pub iommugroup: i64,
    /// Whether the device can create mediated devices.
    pub mdev: bool,
}

impl PciDevice {
    /// A device with the given ids and names and no subsystem.
    pub fn new(id: &str, class: &str, vendor: &str, device: &str, iommugroup: i64) -> Self {
        PciDevice {
            id: id.to_string(),
            class: class.to_string(),
            vendor: vendor.to_string(),
            device: device.to_string(),
            vendor_name: None,
            device_name: None,
            subsystem_vendor: None,
            subsystem_device: None,
            subsystem_vendor_name: None,
            subsystem_device_name: None,
            iommugroup,
            mdev: false,
        }
    }

    /// Set the `pci.ids` names.
    pub fn named(mut self, vendor: &str, device: &str) -> Self {
        self.vendor_name = Some(vendor.to_string());
        self.device_name = Some(device.to_string());
        self
    }

    /// Set the subsystem ids (and the subsystem vendor name, when known).
    pub fn subsystem(mut self, vendor: &str, device: &str, vendor_name: Option<&str>) -> Self {
        self.subsystem_vendor = Some(vendor.to_string());
        self.subsystem_device = Some(device.to_string());
        self.subsystem_vendor_name = vendor_name.map(str::to_string);
        self
    }
}

/// What every simulated node has unless the lab says otherwise: a discrete NVIDIA GPU with
/// its HDMI audio function in IOMMU group 14, and chipset devices in groups of their own.
pub fn default_pci_devices() -> Vec<PciDevice> {
    vec![
        PciDevice::new("0000:00:00.0", "0x060000", "0x8086", "0x4660", 0)
            .named(
                "Intel Corporation",
                "12th Gen Core Processor Host Bridge/DRAM Registers",
            )
            .subsystem("0x1043", "0x8882", Some("ASUSTeK Computer Inc.")),
        PciDevice::new("0000:00:01.0", "0x060400", "0x8086", "0x460d", 1)
            .named(
                "Intel Corporation",
                "12th Gen Core Processor PCI Express x16 Controller #1",
            )
            .subsystem("0x1043", "0x8882", Some("ASUSTeK Computer Inc.")),
        PciDevice::new("0000:00:14.0", "0x0c0330", "0x8086", "0x7ae0", 5)
            .named(
                "Intel Corporation",
                "Alder Lake-S PCH USB 3.2 Gen 2x2 XHCI Controller",
            )
            .subsystem("0x1043", "0x8882", Some("ASUSTeK Computer Inc.")),
        PciDevice::new("0000:00:17.0", "0x010601", "0x8086", "0x7ae2", 7)
            .named(
                "Intel Corporation",
                "Alder Lake-S PCH SATA Controller [AHCI Mode]",
            )
            .subsystem("0x1043", "0x8882", Some("ASUSTeK Computer Inc.")),
        PciDevice::new("0000:00:1f.0", "0x060100", "0x8086", "0x7a86", 11)
            .named("Intel Corporation", "Z690 Chipset LPC/eSPI Controller")
            .subsystem("0x1043", "0x8882", Some("ASUSTeK Computer Inc.")),
        PciDevice::new("0000:01:00.0", "0x030000", "0x10de", "0x2204", 14)
            .named("NVIDIA Corporation", "GA102 [GeForce RTX 3090]")
            .subsystem("0x10de", "0x147d", Some("NVIDIA Corporation")),
        PciDevice::new("0000:01:00.1", "0x040300", "0x10de", "0x1aef", 14)
            .named(
                "NVIDIA Corporation",
                "GA102 High Definition Audio Controller",
            )
            .subsystem("0x10de", "0x147d", Some("NVIDIA Corporation")),
        PciDevice::new("0000:04:00.0", "0x020000", "0x8086", "0x125c", 16)
            .named("Intel Corporation", "Ethernet Controller I226-V")
            .subsystem("0x1043", "0x87d2", Some("ASUSTeK Computer Inc.")),
    ]
}

/// Device nodes every simulated host has.
pub fn default_dev_nodes() -> Vec<String> {
    [
        "/dev/dri/card0",
        "/dev/dri/renderD128",
        "/dev/fuse",
        "/dev/kvm",
        "/dev/net/tun",
        "/dev/nvidia-uvm",
        "/dev/nvidia0",
        "/dev/nvidiactl",
        "/dev/null",
        "/dev/ttyUSB0",
        "/dev/zero",
    ]
    .map(String::from)
    .to_vec()
}

/// One cluster PCI mapping (a section of `mapping/pci.cfg`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct PciMapping {
    pub description: Option<String>,
    pub mdev: Option<bool>,
    pub live_migration_capable: Option<bool>,
    /// Per-node entries: `node=pve,path=0000:01:00.0,id=10de:2204,...`.
    pub map: Vec<String>,
}

/// A storage definition (`storage.cfg`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct StorageCfg {
    #[serde(rename = "type")]
    pub ty: String,
    pub content: Vec<String>,
    pub shared: bool,
    pub total: u64,
    pub path: Option<String>,
}

impl StorageCfg {
    /// Whether volumes are files (dir-like storages) rather than block devices.
    pub fn file_based(&self) -> bool {
        matches!(
            self.ty.as_str(),
            "dir" | "nfs" | "cifs" | "cephfs" | "btrfs"
        )
    }
}

/// One volume on a storage.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct Volume {
    pub volid: String,
    pub node: String,
    pub storage: String,
    pub content: String,
    pub format: String,
    pub size: u64,
    pub vmid: Option<u32>,
    pub ctime: u64,
    pub sha256: Option<String>,
}

/// QEMU VM or LXC container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum Kind {
    Qemu,
    Lxc,
}

impl Kind {
    /// `qemu` / `lxc`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Qemu => "qemu",
            Kind::Lxc => "lxc",
        }
    }
    /// The config directory PVE names in errors.
    pub fn conf_dir(self) -> &'static str {
        match self {
            Kind::Qemu => "qemu-server",
            Kind::Lxc => "lxc",
        }
    }
    /// `VM` / `CT` as messages say.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Qemu => "VM",
            Kind::Lxc => "CT",
        }
    }
    /// Path of the flock the real server takes for this guest.
    pub fn lock_file(self, vmid: u32) -> String {
        match self {
            Kind::Qemu => format!("/var/lock/qemu-server/lock-{vmid}.conf"),
            Kind::Lxc => format!("/run/lock/lxc/pve-config-{vmid}.lock"),
        }
    }
}

/// A guest and its configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct Guest {
    pub vmid: u32,
    pub node: String,
    pub kind: Kind,
    pub config: BTreeMap<String, String>,
    pub pending: BTreeMap<String, String>,
    pub pending_delete: BTreeSet<String>,
    pub running: bool,
    pub started_at: Option<u64>,
}

impl Guest {
    /// A stopped guest whose config is only `lock: <lock>`: the place a create or clone
    /// task holds until it writes the real config.
    pub(crate) fn reserved(vmid: u32, node: String, kind: Kind, lock: &str) -> Self {
        Guest {
            vmid,
            node,
            kind,
            config: BTreeMap::from([("lock".to_string(), lock.to_string())]),
            pending: BTreeMap::new(),
            pending_delete: BTreeSet::new(),
            running: false,
            started_at: None,
        }
    }

    /// The config with pending changes applied (what `GET config` returns by default).
    pub fn effective(&self) -> BTreeMap<String, String> {
        let mut c = self.config.clone();
        for k in &self.pending_delete {
            c.remove(k);
        }
        c.extend(self.pending.clone());
        c
    }

    /// Apply pending changes (on start or reboot).
    pub fn apply_pending(&mut self) {
        self.config = self.effective();
        self.pending.clear();
        self.pending_delete.clear();
    }

    /// The raw config file text, as PVE writes it (digest input).
    pub fn render(&self) -> String {
        let mut out = String::new();
        render_section(&mut out, &self.config);
        if !self.pending.is_empty() || !self.pending_delete.is_empty() {
            out.push_str("\n[PENDING]\n");
            render_section(&mut out, &self.pending);
            if !self.pending_delete.is_empty() {
                let d: Vec<&str> = self.pending_delete.iter().map(String::as_str).collect();
                out.push_str(&format!("delete: {}\n", d.join(",")));
            }
        }
        out
    }

    /// SHA-1 hex of the raw config file.
    pub fn digest(&self) -> String {
        hex::encode(Sha1::digest(self.render().as_bytes()))
    }

    /// The guest's name (`name` for QEMU, `hostname` for LXC).
    pub fn name(&self) -> String {
        let key = match self.kind {
            Kind::Qemu => "name",
            Kind::Lxc => "hostname",
        };
        self.config
            .get(key)
            .cloned()
            .unwrap_or_else(|| format!("{}{}", self.kind.label(), self.vmid))
    }

    /// The `lock` property, if set.
    pub fn lock(&self) -> Option<&str> {
        self.config.get("lock").map(String::as_str)
    }

    /// Whether it is a template.
    pub fn is_template(&self) -> bool {
        self.config.get("template").is_some_and(|v| v == "1")
    }

    /// Configured memory in MiB.
    pub fn memory_mib(&self) -> u64 {
        let c = self.effective();
        let m = c.get("memory").map(String::as_str).unwrap_or("512");
        let m = m.strip_prefix("current=").unwrap_or(m);
        m.split(',')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(512)
    }

    /// Number of vCPUs.
    pub fn cpus(&self) -> u64 {
        let c = self.effective();
        let cores: u64 = c.get("cores").and_then(|v| v.parse().ok()).unwrap_or(1);
        let sockets: u64 = c.get("sockets").and_then(|v| v.parse().ok()).unwrap_or(1);
        cores * sockets
    }
}

fn render_section(out: &mut String, cfg: &BTreeMap<String, String>) {
    if let Some(d) = cfg.get("description") {
        for line in d.lines() {
            out.push_str(&format!("#{line}\n"));
        }
    }
    for (k, v) in cfg {
        if k != "description" {
            out.push_str(&format!("{k}: {v}\n"));
        }
    }
}

/// A worker task.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct Task {
    pub upid: String,
    pub node: String,
    pub pid: u32,
    pub pstart: u64,
    pub starttime: u64,
    #[serde(rename = "type")]
    pub ty: String,
    pub id: String,
    pub user: String,
    pub endtime: Option<u64>,
    pub exitstatus: Option<String>,
    pub log: Vec<String>,
}

/// A resource pool.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct Pool {
    pub comment: Option<String>,
    pub vms: BTreeSet<u32>,
    pub storage: BTreeSet<String>,
}

/// A user (`user.cfg`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct User {
    pub enable: bool,
    pub expire: u64,
    pub comment: Option<String>,
    pub email: Option<String>,
    pub firstname: Option<String>,
    pub lastname: Option<String>,
    pub groups: Vec<String>,
    /// Salted SHA-256 of the password (`salt$hex`); never the password itself.
    pub password_hash: Option<String>,
}

/// An API token; only a hash of its secret is kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct Token {
    pub userid: String,
    pub tokenid: String,
    pub secret_sha256: String,
    pub privsep: bool,
    pub expire: u64,
    pub comment: Option<String>,
}

/// One ACL entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct AclEntry {
    pub path: String,
    /// `user`, `token` or `group`.
    #[serde(rename = "type")]
    pub ty: String,
    pub ugid: String,
    pub roleid: String,
    pub propagate: bool,
}

/// An SDN object with its running and pending versions.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct SdnObject {
    pub running: Option<BTreeMap<String, String>>,
    pub pending: Option<BTreeMap<String, String>>,
    /// Deleted in pending; gone after apply.
    pub deleted: bool,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn digest_covers_pending() {
        let mut g = Guest {
            vmid: 100,
            node: "pve".into(),
            kind: Kind::Qemu,
            config: BTreeMap::from([("memory".into(), "2048".into())]),
            pending: BTreeMap::new(),
            pending_delete: BTreeSet::new(),
            running: false,
            started_at: None,
        };
        let d1 = g.digest();
        g.pending.insert("cores".into(), "4".into());
        assert_ne!(d1, g.digest());
        assert!(g.render().contains("[PENDING]\ncores: 4\n"));
        assert_eq!(g.effective()["cores"], "4");
        assert_eq!(g.memory_mib(), 2048);
    }
}
