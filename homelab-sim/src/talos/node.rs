//! One simulated Talos node: persisted state and the servers it runs.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_yaml_ng::Value;
use tokio::task::JoinHandle;

use super::{APID_PORT, Inner, KUBE_PORT};

/// A disk as the node reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskInfo {
    /// Device path, e.g. `/dev/sda`.
    pub device: String,
    /// Size in bytes.
    pub size: u64,
    /// CD-ROM drive.
    pub cdrom: bool,
}

/// A read-only view of a node.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NodeSnapshot {
    /// Proxmox node.
    pub pve_node: String,
    /// VMID.
    pub vmid: u32,
    /// Loopback address.
    pub ip: Ipv4Addr,
    /// Installed (normal mode) or in maintenance.
    pub installed: bool,
    /// Bootstrapped (control planes).
    pub bootstrapped: bool,
    /// `controlplane`, `worker`, or empty before a config.
    pub machine_type: String,
    /// Hostname.
    pub hostname: String,
    /// The running machine config (what `talosctl get machineconfig` shows), if any.
    pub config: Option<String>,
    /// The installed Talos version (`v1.12.0`), once installed.
    pub version: Option<String>,
    /// The installed schematic ID, once installed.
    pub schematic: Option<String>,
}

/// What is persisted per node.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct NodeState {
    pub ip: String,
    pub name: String,
    pub installed: bool,
    /// The applied machine config (the simulated STATE partition).
    pub config: Option<String>,
    pub bootstrapped: bool,
    /// Installed Talos version (from the installer image), once installed.
    #[serde(default)]
    pub version: Option<String>,
    /// Installed schematic ID.
    #[serde(default)]
    pub schematic: Option<String>,
    /// A config applied in staged mode, taken on the next boot.
    #[serde(default)]
    pub staged: Option<String>,
    /// The Kubernetes component images running now, by component name, when they lag the
    /// config (a config applied without a reboot restarts them a little later; see
    /// `components.rs`). Empty: what the config says.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub running_images: std::collections::BTreeMap<String, String>,
    /// On the node etcd was bootstrapped on: the kube-proxy DaemonSet's image (the cluster's
    /// bootstrap manifests, kept in etcd).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube_proxy_image: Option<String>,
    /// The etcd member this control plane's data directory (on EPHEMERAL) belongs to.
    #[serde(default)]
    pub etcd_member: Option<u64>,
}

impl NodeState {
    pub(crate) fn load(path: &Path) -> std::io::Result<Option<NodeState>> {
        match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Facts read from the applied config.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConfigFacts {
    pub machine_type: String,
    pub os_ca_crt: String,
    pub os_ca_key: Option<String>,
    pub k8s_ca_crt: String,
    pub k8s_ca_key: Option<String>,
    pub cluster_id: String,
    pub cluster_name: String,
    pub endpoint: String,
    pub cert_sans: Vec<String>,
    pub api_cert_sans: Vec<String>,
    pub hostname: Option<String>,
    pub kubernetes_version: String,
}

fn pem_at(v: &Value, path: &[&str]) -> Option<String> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    let b = cur.as_str().filter(|s| !s.is_empty())?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b.trim())
        .ok()?;
    String::from_utf8(raw).ok()
}

fn strs_at(v: &Value, path: &[&str]) -> Vec<String> {
    let mut cur = v;
    for p in path {
        match cur.get(p) {
            Some(n) => cur = n,
            None => return vec![],
        }
    }
    cur.as_sequence()
        .map(|s| {
            s.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

impl ConfigFacts {
    pub(crate) fn from_yaml(text: &str) -> Result<Self, String> {
        let docs =
            talos_api::yaml::parse_documents(text, "machine config").map_err(|e| e.to_string())?;
        let v1 = docs
            .iter()
            .find(|d| d.get("kind").is_none())
            .ok_or("the config has no v1alpha1 document")?;
        let s = |path: &[&str]| {
            let mut cur = v1;
            for p in path {
                cur = cur.get(p)?;
            }
            cur.as_str().map(str::to_string)
        };
        let hostname = docs
            .iter()
            .find(|d| d.get("kind").and_then(Value::as_str) == Some("HostnameConfig"))
            .and_then(|d| d.get("hostname"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let kubelet = s(&["machine", "kubelet", "image"]).unwrap_or_default();
        Ok(ConfigFacts {
            machine_type: s(&["machine", "type"]).unwrap_or_default(),
            os_ca_crt: pem_at(v1, &["machine", "ca", "crt"]).ok_or("machine.ca.crt is missing")?,
            os_ca_key: pem_at(v1, &["machine", "ca", "key"]),
            k8s_ca_crt: pem_at(v1, &["cluster", "ca", "crt"]).unwrap_or_default(),
            k8s_ca_key: pem_at(v1, &["cluster", "ca", "key"]),
            cluster_id: s(&["cluster", "id"]).unwrap_or_default(),
            cluster_name: s(&["cluster", "clusterName"]).unwrap_or_default(),
            endpoint: s(&["cluster", "controlPlane", "endpoint"]).unwrap_or_default(),
            cert_sans: strs_at(v1, &["machine", "certSANs"]),
            api_cert_sans: strs_at(v1, &["cluster", "apiServer", "certSANs"]),
            hostname,
            kubernetes_version: kubelet
                .rsplit_once(":v")
                .map(|(_, v)| v.to_string())
                .unwrap_or_else(|| talos_api::config::DEFAULT_KUBERNETES_VERSION.to_string()),
        })
    }
}

/// Parse the guest's disks from its Proxmox config.
pub(crate) fn disks_from_config(
    config: &std::collections::BTreeMap<String, String>,
) -> Vec<DiskInfo> {
    let mut sd = 0u8;
    let mut vd = 0u8;
    let mut sr = 0u8;
    let mut keys: Vec<(&String, &String)> = config
        .iter()
        .filter(|(k, _)| {
            ["ide", "sata", "scsi", "virtio"]
                .iter()
                .any(|p| k.strip_prefix(p).is_some_and(|n| n.parse::<u32>().is_ok()))
        })
        .collect();
    // SCSI/SATA disks enumerate before IDE on a q35 machine; keep a stable order.
    keys.sort_by_key(|(k, _)| (!k.starts_with("scsi"), !k.starts_with("sata"), (*k).clone()));
    keys.into_iter()
        .filter_map(|(k, v)| {
            if v.contains("cloudinit") {
                return None;
            }
            if v.contains("media=cdrom") {
                let d = DiskInfo {
                    device: format!("/dev/sr{sr}"),
                    size: 0,
                    cdrom: true,
                };
                sr += 1;
                return Some(d);
            }
            let size = v
                .split(',')
                .find_map(|p| p.strip_prefix("size="))
                .map(parse_size)
                .unwrap_or(0);
            let device = if k.starts_with("virtio") {
                let d = format!("/dev/vd{}", (b'a' + vd) as char);
                vd += 1;
                d
            } else {
                let d = format!("/dev/sd{}", (b'a' + sd) as char);
                sd += 1;
                d
            };
            Some(DiskInfo {
                device,
                size,
                cdrom: false,
            })
        })
        .collect()
}

fn parse_size(s: &str) -> u64 {
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len()));
    let n: f64 = num.parse().unwrap_or(0.0);
    let mul: f64 = match unit {
        "K" => 1024.0,
        "M" => 1024.0 * 1024.0,
        "G" | "" => 1024.0 * 1024.0 * 1024.0,
        "T" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => 1.0,
    };
    (n * mul) as u64
}

/// A running server: its accept loop and a graceful-shutdown trigger.
pub(crate) struct ServerHandle {
    pub accept: JoinHandle<()>,
    pub shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl ServerHandle {
    pub(crate) fn stop(mut self) -> JoinHandle<()> {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        self.accept.abort();
        std::mem::replace(&mut self.accept, tokio::spawn(async {}))
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        self.accept.abort();
    }
}

#[derive(Default)]
pub(crate) struct Servers {
    pub apid: Option<ServerHandle>,
    pub kube: Option<ServerHandle>,
}

/// One simulated node.
pub(crate) struct Node {
    pub key: (String, u32),
    pub ip: Ipv4Addr,
    pub platform: &'static str,
    pub disks: Vec<DiskInfo>,
    pub state: Mutex<NodeState>,
    pub servers: Mutex<Servers>,
    /// Serialises boots/reboots.
    pub boot_lock: tokio::sync::Mutex<()>,
    pub runtime: Weak<Inner>,
    file: PathBuf,
    /// Incremented on every boot so stale tasks can tell they are outdated.
    pub generation: std::sync::atomic::AtomicU64,
    /// The node has answered since this process started it (a "stuck" knob applies to
    /// reboots after that, not to the first boot).
    pub ever_up: std::sync::atomic::AtomicBool,
    /// The current boot's ID.
    pub boot_id: Mutex<String>,
    /// When the node last came up (etcd joins a little after; see `components.rs`).
    pub booted_at: Mutex<Option<std::time::Instant>>,
    /// apid runs in normal mode (mTLS) right now: what another node's apid can dial.
    pub normal_up: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("key", &self.key)
            .field("ip", &self.ip)
            .finish()
    }
}

/// Bind ip:port with SO_REUSEADDR, retrying while a previous server of this node lets go.
pub(crate) async fn bind(ip: Ipv4Addr, port: u16) -> std::io::Result<tokio::net::TcpListener> {
    let addr = SocketAddr::from((ip, port));
    let mut last = None;
    for _ in 0..100 {
        let sock = tokio::net::TcpSocket::new_v4()?;
        sock.set_reuseaddr(true)?;
        match sock.bind(addr).and_then(|_| sock.listen(128)) {
            Ok(l) => return Ok(l),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("bind failed")))
}

impl Node {
    pub(crate) fn new(
        key: (String, u32),
        ip: Ipv4Addr,
        platform: &'static str,
        disks: Vec<DiskInfo>,
        state: NodeState,
        file: PathBuf,
        runtime: Weak<Inner>,
    ) -> Self {
        Node {
            key,
            ip,
            platform,
            disks,
            state: Mutex::new(state),
            servers: Mutex::new(Servers::default()),
            boot_lock: tokio::sync::Mutex::new(()),
            runtime,
            file,
            generation: std::sync::atomic::AtomicU64::new(0),
            ever_up: std::sync::atomic::AtomicBool::new(false),
            boot_id: Mutex::new(String::new()),
            booted_at: Mutex::new(None),
            normal_up: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub(crate) fn state(&self) -> NodeState {
        self.state.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub(crate) fn update(&self, f: impl FnOnce(&mut NodeState)) -> std::io::Result<()> {
        if let Ok(mut s) = self.state.lock() {
            f(&mut s);
        }
        self.persist()
    }

    pub(crate) fn persist(&self) -> std::io::Result<()> {
        let s = self.state();
        let json = serde_json::to_vec_pretty(&s).map_err(std::io::Error::other)?;
        talos_api::talosconfig::write_private(&self.file, &json)
            .map_err(|e| std::io::Error::other(e.to_string()))
    }

    pub(crate) fn facts(&self) -> Option<ConfigFacts> {
        self.state()
            .config
            .and_then(|c| ConfigFacts::from_yaml(&c).ok())
    }

    pub(crate) fn hostname(&self) -> String {
        if let Some(h) = self.facts().and_then(|f| f.hostname) {
            return h;
        }
        // `auto: stable`: a name derived from the machine, stable across reboots.
        let o = self.ip.octets();
        let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let pick = |x: u32| alphabet[(x % 36) as usize] as char;
        let seed = u32::from_be_bytes(o).wrapping_mul(2_654_435_761) ^ self.key.1;
        format!(
            "talos-{}{}{}-{}{}{}",
            pick(seed),
            pick(seed >> 5),
            pick(seed >> 10),
            pick(seed >> 15),
            pick(seed >> 20),
            pick(seed >> 25)
        )
    }

    pub(crate) fn snapshot(&self) -> NodeSnapshot {
        let s = self.state();
        NodeSnapshot {
            pve_node: self.key.0.clone(),
            vmid: self.key.1,
            ip: self.ip,
            installed: s.installed,
            bootstrapped: s.bootstrapped,
            machine_type: self.facts().map(|f| f.machine_type).unwrap_or_default(),
            hostname: self.hostname(),
            config: s.config.clone(),
            version: s.version.clone(),
            schematic: s.schematic.clone(),
        }
    }

    /// Start in the mode the persisted state says.
    pub(crate) fn boot(self: &Arc<Self>) {
        let me = self.clone();
        tokio::spawn(async move { me.reboot().await });
    }

    /// Stop all servers (power off).
    pub(crate) fn stop(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.normal_up
            .store(false, std::sync::atomic::Ordering::SeqCst);
        if let Ok(mut s) = self.servers.lock() {
            s.apid.take();
            s.kube.take();
        }
    }

    /// Append to the lab's event log.
    pub(crate) fn record(&self, kind: super::day2::EventKind) {
        let Some(rt) = self.runtime.upgrade() else {
            return;
        };
        let control_plane = self
            .facts()
            .is_some_and(|f| f.machine_type == "controlplane");
        rt.record_event(self.key.1, &self.hostname(), control_plane, kind);
    }

    /// Log a read this node served (see [`super::day2::EventKind::Read`]).
    pub(crate) fn record_read(&self, what: &str) {
        self.record(super::day2::EventKind::Read(what.to_string()));
    }

    /// This boot's ID (`/proc/sys/kernel/random/boot_id`): a UUID-shaped value new on
    /// every boot.
    pub(crate) fn boot_id(&self) -> String {
        self.boot_id.lock().map(|b| b.clone()).unwrap_or_default()
    }

    /// The lab's knobs.
    pub(crate) fn knobs(&self) -> super::day2::Knobs {
        self.runtime
            .upgrade()
            .and_then(|rt| rt.knobs.lock().ok().map(|k| k.clone()))
            .unwrap_or_default()
    }

    /// Stop the servers (the node goes down), if they run. Returns whether they did.
    pub(crate) async fn go_down(&self) -> bool {
        let (apid, kube) = match self.servers.lock() {
            Ok(mut s) => (s.apid.take(), s.kube.take()),
            Err(_) => return false,
        };
        let was_up = apid.is_some();
        self.normal_up
            .store(false, std::sync::atomic::Ordering::SeqCst);
        for h in [apid, kube].into_iter().flatten() {
            let _ = h.stop().await;
        }
        if was_up {
            self.record(super::day2::EventKind::Down);
        }
        was_up
    }

    /// Stop the servers and start them again according to the state.
    pub(crate) async fn reboot(self: &Arc<Self>) {
        let _guard = self.boot_lock.lock().await;
        let generation = self.generation.load(std::sync::atomic::Ordering::SeqCst);
        let was_up = self.go_down().await;
        let knobs = self.knobs();
        if was_up {
            tokio::time::sleep(knobs.reboot_time).await;
        }
        if self.generation.load(std::sync::atomic::Ordering::SeqCst) != generation {
            return; // powered off meanwhile
        }
        if knobs.stuck.contains(&self.key.1)
            && self.ever_up.load(std::sync::atomic::Ordering::SeqCst)
        {
            tracing::warn!(ip = %self.ip, "talos node stuck: does not come back");
            return;
        }
        // A staged config becomes the running one on boot.
        if self.state().staged.is_some() {
            let _ = self.update(|s| {
                if let Some(c) = s.staged.take() {
                    s.config = Some(c);
                }
            });
        }
        // Every component starts on the images of the config it boots with.
        if !self.state().running_images.is_empty() {
            let _ = self.update(|s| s.running_images.clear());
        }
        let st = self.state();
        if let Ok(mut b) = self.boot_id.lock() {
            *b = new_boot_id(self.key.1);
        }
        let mut up = false;
        let registered = st.installed && super::etcd::register_if_running(self);
        let mut res = if st.installed {
            super::apid::start_normal(self).await
        } else {
            super::apid::start_maintenance(self).await
        };
        // A worker's apid gets its certificate from a control plane's trustd: while none
        // runs yet (they install at the same time), it keeps asking.
        let mut tries = 0;
        while st.installed && res.is_err() && tries < 150 {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            if self.generation.load(std::sync::atomic::Ordering::SeqCst) != generation {
                return;
            }
            res = super::apid::start_normal(self).await;
            tries += 1;
        }
        match res {
            Ok(h) => {
                if let Ok(mut s) = self.servers.lock() {
                    s.apid = Some(h);
                }
                up = true;
                self.ever_up
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                self.normal_up
                    .store(st.installed, std::sync::atomic::Ordering::SeqCst);
            }
            Err(e) => tracing::error!(ip = %self.ip, error = %e, "talos node failed to start apid"),
        }
        if st.installed && st.bootstrapped {
            self.start_kube().await;
        }
        if up {
            if let Ok(mut b) = self.booted_at.lock() {
                *b = Some(std::time::Instant::now());
            }
            self.record(super::day2::EventKind::Up);
        }
        if up && st.installed {
            super::etcd::after_boot(self, registered);
        }
        tracing::info!(ip = %self.ip, installed = st.installed, port = APID_PORT, "talos node up");
    }

    pub(crate) async fn start_kube(self: &Arc<Self>) {
        let already = self
            .servers
            .lock()
            .map(|s| s.kube.is_some())
            .unwrap_or(true);
        if already {
            return;
        }
        match super::kube::start(self).await {
            Ok(h) => {
                if let Ok(mut s) = self.servers.lock() {
                    s.kube = Some(h);
                }
                tracing::info!(ip = %self.ip, port = KUBE_PORT, "kubernetes API up");
            }
            Err(e) => tracing::error!(ip = %self.ip, error = %e, "kubernetes API failed to start"),
        }
    }
}

/// A fresh boot ID: 128 bits from the clock, the VMID and a process-wide counter, in the
/// kernel's UUID text form.
fn new_boot_id(vmid: u32) -> String {
    use std::hash::{BuildHasher as _, Hasher as _};
    static BOOTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = BOOTS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mut words = [0u64; 2];
    for (i, w) in words.iter_mut().enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(nanos);
        h.write_u32(vmid);
        h.write_u64(n);
        h.write_usize(i);
        *w = h.finish();
    }
    let x = (u128::from(words[0]) << 64) | u128::from(words[1]);
    let hex = format!("{x:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}
