//! Response models. Deserialisation is tolerant the way PVE needs: numbers may arrive as
//! strings and booleans as `0`/`1`; fields the model does not name are kept in `extra`.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::property::indexed_entries;

/// Tolerant decoders for PVE's loosely typed JSON.
pub mod de {
    use super::*;

    fn num_of(v: &Value) -> Option<f64> {
        match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse().ok(),
            Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            _ => None,
        }
    }

    /// `Option<u64>` from a number or a numeric string.
    pub fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        let v = Option::<Value>::deserialize(d)?;
        match v {
            None | Some(Value::Null) => Ok(None),
            Some(v) => match &v {
                Value::Number(n) if n.as_u64().is_some() => Ok(n.as_u64()),
                Value::String(s) if s.trim().parse::<u64>().is_ok() => Ok(s.trim().parse().ok()),
                _ => num_of(&v)
                    .filter(|f| *f >= 0.0)
                    .map(|f| Some(f as u64))
                    .ok_or_else(|| serde::de::Error::custom(format!("expected integer, got {v}"))),
            },
        }
    }

    /// `u64` from a number or a numeric string.
    pub fn u64_any<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        opt_u64(d)?.ok_or_else(|| serde::de::Error::custom("expected integer, got null"))
    }

    /// `u32` (VMIDs) from a number or a numeric string.
    pub fn u32_any<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        let v = u64_any(d)?;
        u32::try_from(v).map_err(|_| serde::de::Error::custom(format!("{v} out of range")))
    }

    /// `Option<u32>` from a number or a numeric string.
    pub fn opt_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
        match opt_u64(d)? {
            None => Ok(None),
            Some(v) => u32::try_from(v)
                .map(Some)
                .map_err(|_| serde::de::Error::custom(format!("{v} out of range"))),
        }
    }

    /// `Option<f64>` from a number or a numeric string.
    pub fn opt_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        let v = Option::<Value>::deserialize(d)?;
        match v {
            None | Some(Value::Null) => Ok(None),
            Some(v) => num_of(&v)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom(format!("expected number, got {v}"))),
        }
    }

    /// `Option<bool>` from `true/false`, `0/1` or `"0"/"1"`.
    pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        let v = Option::<Value>::deserialize(d)?;
        match v {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(v) => match num_of(&v) {
                Some(n) => Ok(Some(n != 0.0)),
                None => match v.as_str() {
                    Some(s) => crate::property::parse_bool("boolean", s)
                        .map(Some)
                        .map_err(serde::de::Error::custom),
                    None => Err(serde::de::Error::custom(format!(
                        "expected boolean, got {v}"
                    ))),
                },
            },
        }
    }

    /// `i64` from a number or a numeric string (may be negative, e.g. `iommugroup: -1`).
    pub fn i64_any<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        let v = Value::deserialize(d)?;
        match &v {
            Value::Number(n) if n.as_i64().is_some() => Ok(n.as_i64().unwrap_or_default()),
            _ => num_of(&v)
                .filter(|f| f.fract() == 0.0)
                .map(|f| f as i64)
                .ok_or_else(|| serde::de::Error::custom(format!("expected integer, got {v}"))),
        }
    }

    /// A `String` from a string or a number (e.g. `nextid`).
    pub fn string_any<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => Ok(s),
            Value::Number(n) => Ok(n.to_string()),
            v => Err(serde::de::Error::custom(format!(
                "expected string, got {v}"
            ))),
        }
    }
}

/// `GET /version`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Version {
    /// Full pve-manager version, e.g. `9.1.1`.
    pub version: String,
    /// Release, e.g. `9.1`.
    pub release: String,
    /// Repository commit id.
    pub repoid: String,
    /// Default console viewer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console: Option<String>,
}

/// An entry of `GET /nodes`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeInfo {
    /// Node name.
    pub node: String,
    /// `online`, `offline` or `unknown`.
    pub status: String,
    /// CPU usage (0..1).
    #[serde(default, deserialize_with = "de::opt_f64")]
    pub cpu: Option<f64>,
    /// CPU count.
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub maxcpu: Option<u64>,
    /// Memory used, bytes.
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub mem: Option<u64>,
    /// Memory total, bytes.
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub maxmem: Option<u64>,
    /// Uptime, seconds.
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub uptime: Option<u64>,
    /// Support level.
    #[serde(default)]
    pub level: Option<String>,
    /// SHA-256 fingerprint of the node's certificate (pin it).
    #[serde(default)]
    pub ssl_fingerprint: Option<String>,
    /// Other fields.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// The `type` filter of `GET /cluster/resources`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceFilter {
    /// VMs and containers.
    Vm,
    /// Storages.
    Storage,
    /// Nodes.
    Node,
    /// SDN zones.
    Sdn,
}

impl ResourceFilter {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceFilter::Vm => "vm",
            ResourceFilter::Storage => "storage",
            ResourceFilter::Node => "node",
            ResourceFilter::Sdn => "sdn",
        }
    }
}

/// An entry of `GET /cluster/resources`. Guest stats lag up to ~10 s behind (pvestatd).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClusterResource {
    /// `qemu/100`, `lxc/101`, `node/pve`, `storage/pve/local`, ...
    pub id: String,
    /// `node`, `storage`, `pool`, `qemu`, `lxc`, `sdn`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// Node.
    #[serde(default)]
    pub node: Option<String>,
    /// VMID (guests).
    #[serde(default, deserialize_with = "de::opt_u32")]
    pub vmid: Option<u32>,
    /// Guest name.
    #[serde(default)]
    pub name: Option<String>,
    /// Status (`running`, `stopped`, `online`, `available`, `unknown`, ...).
    #[serde(default)]
    pub status: Option<String>,
    /// 1 for templates (a number on the wire).
    #[serde(default, deserialize_with = "de::opt_bool")]
    pub template: Option<bool>,
    /// `;`-joined tags.
    #[serde(default)]
    pub tags: Option<String>,
    /// Lock property.
    #[serde(default)]
    pub lock: Option<String>,
    /// Pool.
    #[serde(default)]
    pub pool: Option<String>,
    /// Storage id (storages).
    #[serde(default)]
    pub storage: Option<String>,
    /// CPU usage.
    #[serde(default, deserialize_with = "de::opt_f64")]
    pub cpu: Option<f64>,
    /// CPUs.
    #[serde(default, deserialize_with = "de::opt_f64")]
    pub maxcpu: Option<f64>,
    /// Memory used.
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub mem: Option<u64>,
    /// Memory configured, bytes.
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub maxmem: Option<u64>,
    /// Disk used.
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub disk: Option<u64>,
    /// Disk size, bytes.
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub maxdisk: Option<u64>,
    /// Uptime, seconds.
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub uptime: Option<u64>,
    /// Other fields.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// An entry of `GET /nodes/{node}/qemu` or `/lxc`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GuestListEntry {
    /// VMID.
    #[serde(deserialize_with = "de::u32_any")]
    pub vmid: u32,
    /// `running` or `stopped`.
    pub status: String,
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// Tags.
    #[serde(default)]
    pub tags: Option<String>,
    /// Template flag.
    #[serde(default, deserialize_with = "de::opt_bool")]
    pub template: Option<bool>,
    /// Lock.
    #[serde(default)]
    pub lock: Option<String>,
    /// Memory, bytes.
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub maxmem: Option<u64>,
    /// Boot disk size, bytes.
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub maxdisk: Option<u64>,
    /// CPUs.
    #[serde(default, deserialize_with = "de::opt_f64")]
    pub cpus: Option<f64>,
    /// Uptime.
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub uptime: Option<u64>,
    /// Other fields.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// `GET .../status/current` of a VM or container.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GuestStatus {
    /// `running` or `stopped`.
    pub status: String,
    /// VMID.
    #[serde(deserialize_with = "de::u32_any")]
    pub vmid: u32,
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// QMP status (qemu), e.g. `running`, `paused`.
    #[serde(default)]
    pub qmpstatus: Option<String>,
    /// Lock.
    #[serde(default)]
    pub lock: Option<String>,
    /// Tags.
    #[serde(default)]
    pub tags: Option<String>,
    /// Template.
    #[serde(default, deserialize_with = "de::opt_bool")]
    pub template: Option<bool>,
    /// Guest agent enabled (qemu).
    #[serde(default, deserialize_with = "de::opt_bool")]
    pub agent: Option<bool>,
    /// Uptime.
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub uptime: Option<u64>,
    /// Memory configured, bytes.
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub maxmem: Option<u64>,
    /// CPUs.
    #[serde(default, deserialize_with = "de::opt_f64")]
    pub cpus: Option<f64>,
    /// HA state (an object).
    #[serde(default)]
    pub ha: Option<Value>,
    /// Other fields.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl GuestStatus {
    /// Whether the guest is running.
    pub fn is_running(&self) -> bool {
        self.status == "running"
    }
}

/// A guest configuration (`GET .../config`): every key as the server returns it, plus
/// typed accessors. Values are strings, numbers or booleans as PVE sends them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct GuestConfig {
    /// SHA-1 of the config file; pass it back as `digest` for optimistic concurrency.
    #[serde(default)]
    pub digest: Option<String>,
    /// All other keys.
    #[serde(flatten)]
    pub values: BTreeMap<String, Value>,
}

impl GuestConfig {
    /// A key as a string (numbers rendered), if present.
    pub fn get_str(&self, key: &str) -> Option<String> {
        match self.values.get(key)? {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            v => Some(v.to_string()),
        }
    }

    /// A key parsed as a property-string type (`net0`, `scsi0`, ...).
    pub fn get_parsed<T: std::str::FromStr<Err = crate::Error>>(
        &self,
        key: &str,
    ) -> Option<crate::Result<T>> {
        self.get_str(key).map(|s| s.parse())
    }

    /// All `prefix<n>` keys by index (e.g. `net` -> {0: "virtio=...", 1: ...}).
    pub fn indexed(&self, prefix: &str) -> BTreeMap<u32, String> {
        indexed_entries(&self.values, prefix)
            .into_iter()
            .filter_map(|(i, v)| match v {
                Value::String(s) => Some((i, s.clone())),
                Value::Null => None,
                v => Some((i, v.to_string())),
            })
            .collect()
    }

    /// Tags as a list.
    pub fn tags(&self) -> Vec<String> {
        self.get_str("tags")
            .map(|t| {
                t.split([';', ',', ' '])
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Decoded `sshkeys` (stored percent-encoded once).
    pub fn ssh_keys(&self) -> crate::Result<Vec<String>> {
        match self.get_str("sshkeys") {
            Some(s) => crate::property::decode_sshkeys(&s),
            None => Ok(Vec::new()),
        }
    }
}

/// `GET /nodes/{node}/tasks/{upid}/status`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskStatus {
    /// `running` or `stopped`.
    pub status: String,
    /// Present once stopped: `OK`, `WARNINGS: n` or the error text.
    #[serde(default)]
    pub exitstatus: Option<String>,
    /// UPID.
    #[serde(default)]
    pub upid: Option<String>,
    /// Node.
    #[serde(default)]
    pub node: Option<String>,
    /// Task type.
    #[serde(default, rename = "type")]
    pub task_type: Option<String>,
    /// Task id.
    #[serde(default)]
    pub id: Option<String>,
    /// User.
    #[serde(default)]
    pub user: Option<String>,
    /// Start time (epoch).
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub starttime: Option<u64>,
    /// Other fields.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl TaskStatus {
    /// Whether the task has stopped.
    pub fn is_stopped(&self) -> bool {
        self.status == "stopped"
    }
}

/// How a stopped task ended without error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskOutcome {
    /// `OK`.
    Ok,
    /// `WARNINGS: n`.
    Warnings(u32),
}

impl TaskOutcome {
    /// Classifies an exit status: `Ok(outcome)` or `Err(error text)` (pve-common
    /// `status_is_error`: anything but `OK` and `WARNINGS: n` is an error).
    pub fn from_exitstatus(exitstatus: &str) -> Result<TaskOutcome, String> {
        if exitstatus == "OK" {
            return Ok(TaskOutcome::Ok);
        }
        if let Some(n) = exitstatus.strip_prefix("WARNINGS: ")
            && let Ok(n) = n.trim().parse()
        {
            return Ok(TaskOutcome::Warnings(n));
        }
        Err(exitstatus.to_string())
    }
}

/// A task log line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TaskLogLine {
    /// 1-based line number.
    #[serde(deserialize_with = "de::u64_any")]
    pub n: u64,
    /// Text.
    pub t: String,
}

/// An entry of `GET /nodes/{node}/storage`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StorageStatus {
    /// Storage id.
    pub storage: String,
    /// Storage type (`dir`, `lvmthin`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// Allowed content types, comma-separated.
    pub content: String,
    /// Active.
    #[serde(default, deserialize_with = "de::opt_bool")]
    pub active: Option<bool>,
    /// Enabled.
    #[serde(default, deserialize_with = "de::opt_bool")]
    pub enabled: Option<bool>,
    /// Shared.
    #[serde(default, deserialize_with = "de::opt_bool")]
    pub shared: Option<bool>,
    /// Total bytes.
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub total: Option<u64>,
    /// Used bytes.
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub used: Option<u64>,
    /// Available bytes.
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub avail: Option<u64>,
    /// Other fields.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl StorageStatus {
    /// Whether the storage allows a content type (`iso`, `import`, `images`, ...).
    pub fn allows(&self, content: &str) -> bool {
        self.content.split(',').any(|c| c.trim() == content)
    }
}

/// An entry of `GET /nodes/{node}/storage/{storage}/content`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StorageContent {
    /// Volume id, e.g. `local:iso/talos.iso`.
    pub volid: String,
    /// Format (`iso`, `raw`, `qcow2`, `tzst`, ...).
    pub format: String,
    /// Size in bytes.
    #[serde(deserialize_with = "de::u64_any")]
    pub size: u64,
    /// Content type.
    #[serde(default)]
    pub content: Option<String>,
    /// Creation time (epoch).
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub ctime: Option<u64>,
    /// Owning VMID.
    #[serde(default, deserialize_with = "de::opt_u32")]
    pub vmid: Option<u32>,
    /// Other fields.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// QEMU guest-agent `network-get-interfaces` result item.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AgentInterface {
    /// Interface name.
    pub name: String,
    /// MAC address.
    #[serde(default, rename = "hardware-address")]
    pub hardware_address: Option<String>,
    /// Addresses.
    #[serde(default, rename = "ip-addresses")]
    pub ip_addresses: Vec<AgentIpAddress>,
}

/// An address reported by the guest agent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AgentIpAddress {
    /// The address.
    #[serde(rename = "ip-address")]
    pub ip_address: String,
    /// `ipv4` or `ipv6`.
    #[serde(rename = "ip-address-type")]
    pub ip_address_type: String,
    /// Prefix length.
    #[serde(default, deserialize_with = "de::opt_u32")]
    pub prefix: Option<u32>,
}

/// The wrapper PVE puts around guest-agent answers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AgentResult<T> {
    /// The agent's answer.
    pub result: T,
}

/// An entry of `GET /pools`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Pool {
    /// Pool id.
    pub poolid: String,
    /// Comment.
    #[serde(default)]
    pub comment: Option<String>,
    /// Members (present when a `poolid` filter was given).
    #[serde(default)]
    pub members: Vec<Value>,
}

/// An entry of `GET /access/users`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct User {
    /// `user@realm`.
    pub userid: String,
    /// Enabled.
    #[serde(default, deserialize_with = "de::opt_bool")]
    pub enable: Option<bool>,
    /// Expiry (epoch, 0 = never).
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub expire: Option<u64>,
    /// Comment.
    #[serde(default)]
    pub comment: Option<String>,
    /// Other fields.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// An API token listed under a user.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TokenInfo {
    /// Token id (without the user part).
    pub tokenid: String,
    /// Privilege separation.
    #[serde(default, deserialize_with = "de::opt_bool")]
    pub privsep: Option<bool>,
    /// Expiry.
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub expire: Option<u64>,
    /// Comment.
    #[serde(default)]
    pub comment: Option<String>,
}

/// The answer to creating an API token. `value` is shown once only.
#[derive(Clone, Deserialize)]
pub struct NewToken {
    /// `user@realm!tokenid`.
    #[serde(rename = "full-tokenid")]
    pub full_tokenid: String,
    /// The secret.
    pub value: secrecy::SecretString,
    /// Token settings.
    #[serde(default)]
    pub info: Option<Value>,
}

impl std::fmt::Debug for NewToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewToken")
            .field("full_tokenid", &self.full_tokenid)
            .field("value", &"[redacted]")
            .finish()
    }
}

/// An ACL entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AclEntry {
    /// Object path, e.g. `/vms`.
    pub path: String,
    /// Role.
    pub roleid: String,
    /// `user`, `group` or `token`.
    #[serde(rename = "type")]
    pub kind: String,
    /// User, group or token id.
    pub ugid: String,
    /// Propagate.
    #[serde(default, deserialize_with = "de::opt_bool")]
    pub propagate: Option<bool>,
}

/// A role.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Role {
    /// Role id.
    pub roleid: String,
    /// Comma-separated privileges.
    #[serde(default)]
    pub privs: Option<String>,
    /// Built-in role.
    #[serde(default, deserialize_with = "de::opt_bool")]
    pub special: Option<bool>,
}

/// A scheduled backup job (`/cluster/backup`); fields as PVE returns them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BackupJob {
    /// Job id.
    pub id: String,
    /// Schedule.
    #[serde(default)]
    pub schedule: Option<String>,
    /// Target storage.
    #[serde(default)]
    pub storage: Option<String>,
    /// Enabled.
    #[serde(default, deserialize_with = "de::opt_bool")]
    pub enabled: Option<bool>,
    /// Other fields (`vmid`, `mode`, `next-run`, ...).
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// An SDN zone, VNet or subnet: PVE returns section-config objects; the id field differs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SdnObject {
    /// Type (`simple`, `vlan`, `vnet`, `subnet`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// All fields (`zone`, `vnet`, `subnet`, `digest`, `pending`, ...).
    #[serde(flatten)]
    pub fields: BTreeMap<String, Value>,
}

/// One host PCI function from `GET /nodes/{node}/hardware/pci` (pve-common
/// `SysFSTools::lspci`). Ids keep sysfs's `0x` prefix; names come from `pci.ids` and are
/// only present with `verbose` (the default).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PciDevice {
    /// `0000:01:00.0`.
    pub id: String,
    /// Class code, e.g. `0x030000` (VGA) or `0x040300` (audio).
    pub class: String,
    /// Vendor id, e.g. `0x10de`.
    pub vendor: String,
    /// Device id, e.g. `0x2204`.
    pub device: String,
    /// Vendor name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor_name: Option<String>,
    /// Device name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_name: Option<String>,
    /// Subsystem vendor id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subsystem_vendor: Option<String>,
    /// Subsystem device id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subsystem_device: Option<String>,
    /// Subsystem vendor name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subsystem_vendor_name: Option<String>,
    /// Subsystem device name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subsystem_device_name: Option<String>,
    /// IOMMU group, `-1` when the host has no IOMMU.
    #[serde(deserialize_with = "de::i64_any")]
    pub iommugroup: i64,
    /// Can create mediated devices (vGPU).
    #[serde(
        default,
        deserialize_with = "de::opt_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub mdev: Option<bool>,
}

impl PciDevice {
    /// The class without `0x`, e.g. `030000`.
    fn class_hex(&self) -> &str {
        self.class.trim_start_matches("0x")
    }
    /// A display controller (class `03`): VGA, 3D or other.
    pub fn is_gpu(&self) -> bool {
        self.class_hex().starts_with("03")
    }
    /// The PCI function number (`0` of `0000:01:00.0`).
    pub fn function(&self) -> Option<&str> {
        self.id.rsplit_once('.').map(|(_, f)| f)
    }
    /// The id without the function (`0000:01:00`): what names all functions of a device.
    pub fn slot(&self) -> &str {
        self.id
            .rsplit_once('.')
            .map_or(self.id.as_str(), |(d, _)| d)
    }
}

/// A diagnostic of `GET /cluster/mapping/pci?check-node=<node>`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MappingCheck {
    /// `warning` or `error`.
    pub severity: String,
    /// E.g. `No mapping for node pve2.` or `Invalid configuration: ...`.
    pub message: String,
}

/// A cluster PCI resource mapping (`/cluster/mapping/pci`): a logical device name that
/// VMs reference with `hostpciN: mapping=<id>` instead of a raw host id (which only
/// `root@pam` may use). Each `map` entry names one node's device; see
/// [`PciMapEntry`](crate::property::PciMapEntry) to read or build them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PciMapping {
    /// Mapping id (listed entries only; `GET /cluster/mapping/pci/{id}` omits it).
    #[serde(default)]
    pub id: String,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Per-node entries as property strings.
    #[serde(default)]
    pub map: Vec<String>,
    /// Mediated-device capable.
    #[serde(
        default,
        deserialize_with = "de::opt_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub mdev: Option<bool>,
    /// Marked live-migration capable.
    #[serde(
        rename = "live-migration-capable",
        default,
        deserialize_with = "de::opt_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub live_migration_capable: Option<bool>,
    /// Digest of the whole mapping file (for `update`'s `digest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Diagnostics, only with `check-node`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checks: Option<Vec<MappingCheck>>,
}

impl PciMapping {
    /// The `map` entries, parsed.
    pub fn entries(&self) -> crate::Result<Vec<crate::property::PciMapEntry>> {
        self.map.iter().map(|e| e.parse()).collect()
    }
    /// The entries that name `node`.
    pub fn entries_for(&self, node: &str) -> crate::Result<Vec<crate::property::PciMapEntry>> {
        Ok(self
            .entries()?
            .into_iter()
            .filter(|e| e.node == node)
            .collect())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tolerant_numbers_and_bools() {
        let r: ClusterResource = serde_json::from_value(serde_json::json!({
            "id": "qemu/100", "type": "qemu", "vmid": "100", "template": 0,
            "maxmem": "2147483648", "cpu": 0.5, "hastate": "started"
        }))
        .unwrap();
        assert_eq!(r.vmid, Some(100));
        assert_eq!(r.template, Some(false));
        assert_eq!(r.maxmem, Some(2147483648));
        assert_eq!(r.extra["hastate"], "started");
        let bad: Result<ClusterResource, _> = serde_json::from_value(serde_json::json!({
            "id": "qemu/100", "type": "qemu", "vmid": "abc"
        }));
        assert!(bad.is_err());
    }

    #[test]
    fn exitstatus_classification() {
        assert_eq!(TaskOutcome::from_exitstatus("OK"), Ok(TaskOutcome::Ok));
        assert_eq!(
            TaskOutcome::from_exitstatus("WARNINGS: 2"),
            Ok(TaskOutcome::Warnings(2))
        );
        assert_eq!(
            TaskOutcome::from_exitstatus("VM 100 already running"),
            Err("VM 100 already running".to_string())
        );
        assert!(TaskOutcome::from_exitstatus("unexpected status").is_err());
    }

    #[test]
    fn guest_config_accessors() {
        let c: GuestConfig = serde_json::from_value(serde_json::json!({
            "digest": "abc", "memory": "2048", "cores": 2,
            "net0": "virtio=BC:24:11:00:00:01,bridge=vmbr0", "net1": "e1000,bridge=vmbr1",
            "tags": "a;b", "sshkeys": "ssh-ed25519%20AAAA%20me"
        }))
        .unwrap();
        assert_eq!(c.digest.as_deref(), Some("abc"));
        assert_eq!(c.get_str("cores").as_deref(), Some("2"));
        assert_eq!(c.indexed("net").len(), 2);
        let n: crate::property::QemuNet = c.get_parsed("net0").unwrap().unwrap();
        assert_eq!(n.bridge.as_deref(), Some("vmbr0"));
        assert_eq!(c.tags(), vec!["a", "b"]);
        assert_eq!(c.ssh_keys().unwrap(), vec!["ssh-ed25519 AAAA me"]);
    }
}
