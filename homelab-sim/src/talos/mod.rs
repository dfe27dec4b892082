//! Simulated Talos nodes: a [`GuestRuntime`] that runs a Talos node for every started VM that
//! boots a Talos ISO.
//!
//! **Which guests are Talos nodes:** a QEMU guest with a CD-ROM drive (`ideN`/`sataN`/`scsiN`
//! with `media=cdrom`) whose volume's file name contains `talos` (case-insensitive), e.g.
//! `ide2: local:iso/talos-v1.12.11-nocloud-amd64.iso,media=cdrom`, or any guest that already
//! has an installed node in the state directory (it boots from disk).
//!
//! **Addresses:** each node listens on its own loopback address with the real ports: apid on
//! 50000 and, on control planes after bootstrap, a minimal Kubernetes API on 6443. The address
//! is the static IP of `ipconfig0` (`ip=127.x.y.z/..`) when it is in 127.0.0.0/8 (as Talos'
//! nocloud platform applies the Proxmox cloud-init network config in maintenance mode),
//! otherwise one allocated from 127.100.0.0/16 and remembered in the state directory.
//!
//! **Lifecycle:** maintenance mode first (self-signed certificate, no client auth; serves
//! ApplyConfiguration in REBOOT/AUTO/TRY and Disks; Version/Reset/Upgrade answer
//! Unimplemented "API is not implemented in maintenance mode"). An applied config is validated
//! ([`talos_api::config::validate`] plus the install disk), the node "installs", reboots into
//! normal mode with mTLS against the config's OS CA, Bootstrap works once (then
//! `AlreadyExists`), Kubeconfig returns an admin kubeconfig signed by the cluster's Kubernetes
//! CA, and the Kubernetes API answers `/version`, `/readyz` and `/api/v1/nodes`.
//!
//! **Persistence:** node state (address, installed config, bootstrapped) lives in
//! `<state_dir>/talos/<node>-<vmid>.json` (mode 0600, written atomically), so a later process
//! with the same state directory sees the same nodes.

mod apid;
mod components;
mod cosi;
pub mod day2;
pub mod etcd;
mod etcd_backup;
mod kube;
mod kube_objects;
mod kube_proto;
pub mod metal_node;
mod node;
mod persist;
mod workloads;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::runtime::{GuestKind, GuestRuntime, GuestStart};

pub use node::{DiskInfo, NodeSnapshot};

/// The apid port.
pub const APID_PORT: u16 = 50000;
/// The Kubernetes API port.
pub const KUBE_PORT: u16 = 6443;

/// Runs simulated Talos nodes inside simulated Proxmox guests.
#[derive(Clone, Debug)]
pub struct TalosRuntime {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    dir: PathBuf,
    nodes: Mutex<HashMap<(String, u32), Arc<node::Node>>>,
    /// What happened to the nodes, in order.
    pub(crate) events: Mutex<Vec<day2::Event>>,
    /// Timing and fault knobs.
    pub(crate) knobs: Mutex<day2::Knobs>,
    /// etcd membership per cluster ID (`etcd.rs`).
    pub(crate) etcd: Mutex<etcd::Store>,
    /// Kubernetes Node objects, pods and PodDisruptionBudgets per cluster ID (`workloads.rs`).
    pub(crate) kube: Mutex<workloads::Store>,
}

/// Errors of the Talos runtime.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TalosSimError {
    /// The state directory could not be used.
    #[error("{path}: {source}")]
    Io {
        /// Path involved.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

impl TalosRuntime {
    /// A runtime keeping node state under `<state_dir>/talos`.
    pub fn new(state_dir: impl AsRef<Path>) -> Result<Self, TalosSimError> {
        let dir = state_dir.as_ref().join("talos");
        std::fs::create_dir_all(&dir).map_err(|source| TalosSimError::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(TalosRuntime {
            inner: Arc::new(Inner {
                nodes: Mutex::new(HashMap::new()),
                events: Mutex::new(Vec::new()),
                knobs: Mutex::new(day2::Knobs::load(&dir.join("knobs.json")).map_err(|e| {
                    TalosSimError::Io {
                        path: dir.join("knobs.json"),
                        source: std::io::Error::other(e),
                    }
                })?),
                etcd: Mutex::new(
                    etcd::Store::load(&state_dir.as_ref().join("talos-etcd.json")).map_err(
                        |e| TalosSimError::Io {
                            path: state_dir.as_ref().join("talos-etcd.json"),
                            source: std::io::Error::other(e),
                        },
                    )?,
                ),
                kube: Mutex::new(
                    workloads::Store::load(&state_dir.as_ref().join("talos-kube.json")).map_err(
                        |e| TalosSimError::Io {
                            path: state_dir.as_ref().join("talos-kube.json"),
                            source: std::io::Error::other(e),
                        },
                    )?,
                ),
                dir,
            }),
        })
    }

    /// The etcd membership of every cluster, by cluster ID (leaders re-elected as of now).
    pub fn etcd(&self) -> std::collections::BTreeMap<String, etcd::EtcdCluster> {
        let ids: Vec<String> = self
            .inner
            .etcd
            .lock()
            .map(|s| s.all().into_keys().collect())
            .unwrap_or_default();
        ids.into_iter()
            .filter_map(|id| self.inner.etcd_cluster(&id).map(|c| (id, c)))
            .collect()
    }

    /// What the runtime knows about every running node.
    pub fn nodes(&self) -> Vec<NodeSnapshot> {
        let nodes: Vec<_> = self
            .inner
            .nodes
            .lock()
            .map(|n| n.values().cloned().collect())
            .unwrap_or_default();
        let mut out: Vec<_> = nodes.iter().map(|n| n.snapshot()).collect();
        out.sort_by_key(|s| (s.pve_node.clone(), s.vmid));
        out
    }

    /// The event log: nodes going down and up, configs applied, upgrades accepted.
    pub fn events(&self) -> Vec<day2::Event> {
        self.inner
            .events
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default()
    }

    /// Set the timing and fault knobs (upgrade and reboot times, nodes that stay down).
    pub fn set_knobs(&self, knobs: day2::Knobs) {
        if let Ok(mut k) = self.inner.knobs.lock() {
            *k = knobs;
        }
    }

    /// The current knobs.
    pub fn knobs(&self) -> day2::Knobs {
        self.inner
            .knobs
            .lock()
            .map(|k| k.clone())
            .unwrap_or_default()
    }

    /// The node of a guest, if running.
    pub fn node(&self, pve_node: &str, vmid: u32) -> Option<NodeSnapshot> {
        self.inner
            .nodes
            .lock()
            .ok()?
            .get(&(pve_node.to_string(), vmid))
            .map(|n| n.snapshot())
    }
}

impl Inner {
    pub(crate) fn all_nodes(&self) -> Vec<Arc<node::Node>> {
        self.nodes
            .lock()
            .map(|n| n.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The event log other processes read (`<state_dir>/talos-events.jsonl`, beside the
    /// node files so that destroying every node still leaves `talos/` empty).
    pub(crate) fn events_file(&self) -> PathBuf {
        self.dir.parent().map_or_else(
            || self.dir.join("events.jsonl"),
            |p| p.join("talos-events.jsonl"),
        )
    }

    /// Append to the event log (in memory and `talos-events.jsonl`).
    pub(crate) fn record_event(
        &self,
        vmid: u32,
        hostname: &str,
        control_plane: bool,
        kind: day2::EventKind,
    ) {
        let line = day2::EventLine {
            at_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or_default(),
            vmid,
            hostname: hostname.to_string(),
            control_plane,
            kind: kind.as_line(),
        };
        if let Ok(mut e) = self.events.lock() {
            e.push(day2::Event {
                at: std::time::Instant::now(),
                vmid,
                hostname: hostname.to_string(),
                control_plane,
                kind,
            });
            // Appended under the lock, so lines keep the order of the events.
            if let Ok(json) = serde_json::to_string(&line) {
                use std::io::Write as _;
                let _ = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.events_file())
                    .and_then(|mut f| writeln!(f, "{json}"));
            }
        }
    }

    fn state_file(&self, pve_node: &str, vmid: u32) -> PathBuf {
        let safe: String = pve_node
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.dir.join(format!("{safe}-{vmid}.json"))
    }
}

/// Whether a guest config boots a Talos ISO (see the module docs).
pub fn boots_talos_iso(config: &std::collections::BTreeMap<String, String>) -> bool {
    config.iter().any(|(k, v)| {
        let disk_key = ["ide", "sata", "scsi"]
            .iter()
            .any(|p| k.strip_prefix(p).is_some_and(|n| n.parse::<u32>().is_ok()));
        let volume = v.split(',').next().unwrap_or_default();
        let file = volume.rsplit(['/', ':']).next().unwrap_or_default();
        disk_key && v.contains("media=cdrom") && file.to_ascii_lowercase().contains("talos")
    })
}

/// The static IPv4 of `ipconfig0` when it is a loopback address.
pub fn loopback_ip_from_ipconfig(
    config: &std::collections::BTreeMap<String, String>,
) -> Option<Ipv4Addr> {
    let ipc = config.get("ipconfig0")?;
    ipc.split(',')
        .find_map(|part| part.strip_prefix("ip="))
        .and_then(|ip| ip.split('/').next())
        .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
        .filter(|ip| ip.is_loopback())
}

/// Pick a free loopback address in 127.100.0.0/16 (nothing listening on :50000 there).
fn allocate_ip(taken: &[Ipv4Addr]) -> Option<Ipv4Addr> {
    use rand::Rng;
    let start: u32 = rand::thread_rng().gen_range(0..65_000);
    (0..65_000u32).find_map(|i| {
        let n = (start + i) % 65_000 + 256;
        let ip = Ipv4Addr::new(127, 100, (n >> 8) as u8, (n & 0xff) as u8);
        if ip.octets()[3] == 0 || ip.octets()[3] == 255 || taken.contains(&ip) {
            return None;
        }
        std::net::TcpListener::bind((ip, APID_PORT))
            .ok()
            .map(|_| ip)
    })
}

impl GuestRuntime for TalosRuntime {
    fn started(&self, guest: &GuestStart) -> Result<Vec<IpAddr>, String> {
        if guest.kind != GuestKind::Qemu {
            return Ok(Vec::new());
        }
        let file = self.inner.state_file(&guest.node, guest.vmid);
        let saved = node::NodeState::load(&file).map_err(|e| e.to_string())?;
        let installed = saved.as_ref().is_some_and(|s| s.installed);
        if !installed && !boots_talos_iso(&guest.config) {
            return Ok(Vec::new());
        }
        let key = (guest.node.clone(), guest.vmid);
        if let Some(existing) = self
            .inner
            .nodes
            .lock()
            .map_err(|e| e.to_string())?
            .remove(&key)
        {
            existing.stop();
        }
        let taken: Vec<Ipv4Addr> = self.inner.all_nodes().iter().map(|n| n.ip).collect();
        let ip = match loopback_ip_from_ipconfig(&guest.config) {
            Some(ip) => ip,
            None => match saved.as_ref().and_then(|s| s.ip.parse().ok()) {
                Some(ip) => ip,
                None => allocate_ip(&taken)
                    .ok_or_else(|| "no free loopback address for a Talos node".to_string())?,
            },
        };
        let mut state = saved.unwrap_or_default();
        state.ip = ip.to_string();
        if state.name.is_empty() {
            state.name = guest.name.clone();
        }
        let disks = node::disks_from_config(&guest.config);
        let platform = if guest
            .config
            .values()
            .any(|v| v.contains("media=cdrom") && v.to_ascii_lowercase().contains("nocloud"))
            || guest.config.contains_key("ipconfig0")
        {
            "nocloud"
        } else {
            "metal"
        };
        let n = Arc::new(node::Node::new(
            key.clone(),
            ip,
            platform,
            disks,
            state,
            file,
            Arc::downgrade(&self.inner),
        ));
        n.persist().map_err(|e| e.to_string())?;
        n.boot();
        self.inner
            .nodes
            .lock()
            .map_err(|e| e.to_string())?
            .insert(key, n);
        Ok(vec![IpAddr::V4(ip)])
    }

    fn stopped(&self, pve_node: &str, vmid: u32) {
        if let Ok(mut nodes) = self.inner.nodes.lock()
            && let Some(n) = nodes.remove(&(pve_node.to_string(), vmid))
        {
            n.stop();
        }
    }

    fn destroyed(&self, pve_node: &str, vmid: u32) {
        self.stopped(pve_node, vmid);
        let file = self.inner.state_file(pve_node, vmid);
        kube_objects::node_destroyed(&self.inner.dir, &(pve_node.to_string(), vmid), &file);
        let _ = std::fs::remove_file(file);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn iso_rule_and_ipconfig() {
        let mut c = BTreeMap::new();
        c.insert(
            "ide2".to_string(),
            "local:iso/talos-nocloud-amd64.iso,media=cdrom".to_string(),
        );
        assert!(boots_talos_iso(&c));
        c.insert(
            "ide2".to_string(),
            "local:iso/debian.iso,media=cdrom".to_string(),
        );
        assert!(!boots_talos_iso(&c));
        c.insert(
            "scsi0".to_string(),
            "local-lvm:vm-100-disk-0,size=32G".to_string(),
        );
        c.insert(
            "net0".to_string(),
            "virtio=AA:BB,bridge=vmbr0,tag=talos".to_string(),
        );
        assert!(!boots_talos_iso(&c));
        c.insert(
            "ipconfig0".to_string(),
            "ip=127.0.55.10/8,gw=127.0.0.1".to_string(),
        );
        assert_eq!(
            loopback_ip_from_ipconfig(&c),
            Some(Ipv4Addr::new(127, 0, 55, 10))
        );
        c.insert("ipconfig0".to_string(), "ip=10.0.0.5/24".to_string());
        assert_eq!(loopback_ip_from_ipconfig(&c), None);
    }
}
