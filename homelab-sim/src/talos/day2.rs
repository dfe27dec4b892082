//! Day-2 behaviour of a simulated node: what it runs (version and schematic from the
//! installer image), which config changes it applies live, upgrades, and the event log.
//!
//! Read from siderolabs/talos at tag v1.12.0:
//! - `internal/app/machined/pkg/runtime/v1alpha1/v1alpha1_runtime.go`, `CanApplyImmediate`:
//!   the fields copied from the running config before comparing; any other difference in
//!   the `v1alpha1` document fails with "this config change can't be applied in immediate
//!   mode\ndiff:\n...".
//! - `internal/app/machined/internal/server/v1alpha1/v1alpha1_server.go`,
//!   `ApplyConfiguration`: NO_REBOOT and TRY run that check and return its error as
//!   InvalidArgument; AUTO picks REBOOT when it fails, else NO_REBOOT; STAGED keeps the
//!   config for the next boot ("Staged configuration to be applied after the next reboot").
//!   `Upgrade`: acknowledges with "Upgrade request received" and runs the upgrade sequence
//!   (install the image, reboot) in the background.

use std::time::{Duration, Instant};

use serde_yaml_ng::{Mapping, Value};

/// The ID of the schematic without customisations (the vanilla image).
pub const VANILLA_SCHEMATIC: &str =
    "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba";

/// Version and schematic of an installer image reference:
/// `factory.talos.dev/nocloud-installer/<schematic>:<tag>` or
/// `ghcr.io/siderolabs/installer:<tag>` (vanilla).
pub fn image_version(image: &str) -> Option<(String, String)> {
    let (repo, tag) = image.rsplit_once(':')?;
    if tag.contains('/') || !tag.starts_with('v') {
        return None;
    }
    let last = repo.rsplit('/').next()?;
    let schematic = if last.len() == 64 && last.bytes().all(|b| b.is_ascii_hexdigit()) {
        last.to_string()
    } else {
        VANILLA_SCHEMATIC.to_string()
    };
    Some((tag.to_string(), schematic))
}

/// `machine.install.image` of a config text.
pub fn install_image(config: &str) -> Option<String> {
    let docs = talos_api::yaml::parse_documents(config, "machine config").ok()?;
    let v1 = docs.iter().find(|d| d.get("kind").is_none())?;
    v1.get("machine")?
        .get("install")?
        .get("image")?
        .as_str()
        .map(str::to_string)
}

const LIVE_MACHINE: &[&str] = &[
    "ca",
    "acceptedCAs",
    "time",
    "certSANs",
    "install",
    "network",
    "sysfs",
    "sysctls",
    "logging",
    "controlPlane",
    "kubelet",
    "kernel",
    "registries",
    "pods",
    "seccompProfiles",
    "nodeAnnotations",
    "nodeLabels",
    "nodeTaints",
];
const LIVE_FEATURES: &[&str] = &[
    "kubernetesTalosAPIAccess",
    "kubePrism",
    "hostDNS",
    "imageCache",
    "nodeAddressSortAlgorithm",
];

/// `CanApplyImmediate`: `Err(text)` with Talos's message when the change needs a reboot.
pub fn can_apply_immediate(current: &str, new: &str) -> Result<(), String> {
    let parse = |t: &str| talos_api::yaml::parse_documents(t, "machine config").ok();
    let v1 = |docs: &[Value]| docs.iter().find(|d| d.get("kind").is_none()).cloned();
    let cur = parse(current)
        .and_then(|d| v1(&d))
        .ok_or("current config is not v1alpha1")?;
    let mut next = parse(new)
        .and_then(|d| v1(&d))
        .ok_or("new config is not v1alpha1")?;
    for k in ["debug", "cluster"] {
        set_from(&mut next, &cur, &[], k);
    }
    if cur.get("machine").is_some_and(Value::is_mapping)
        && next.get("machine").is_some_and(Value::is_mapping)
    {
        for k in LIVE_MACHINE {
            set_from(&mut next, &cur, &["machine"], k);
        }
        let feats = |v: &Value| {
            v.get("machine")
                .and_then(|m| m.get("features"))
                .is_some_and(Value::is_mapping)
        };
        if feats(&cur) && feats(&next) {
            for k in LIVE_FEATURES {
                set_from(&mut next, &cur, &["machine", "features"], k);
            }
        }
    }
    let (a, b) = (strip_empty(&cur), strip_empty(&next));
    if a == b {
        return Ok(());
    }
    let show = |v: &Value| serde_yaml_ng::to_string(v).unwrap_or_default();
    let (sa, sb) = (show(&a), show(&b));
    let mut diff = String::new();
    let (la, lb): (Vec<&str>, Vec<&str>) = (sa.lines().collect(), sb.lines().collect());
    for l in &la {
        if !lb.contains(l) {
            diff.push_str(&format!("-{l}\n"));
        }
    }
    for l in &lb {
        if !la.contains(l) {
            diff.push_str(&format!("+{l}\n"));
        }
    }
    Err(format!(
        "this config change can't be applied in immediate mode\ndiff:\n{diff}"
    ))
}

fn set_from(dst: &mut Value, src: &Value, at: &[&str], key: &str) {
    let mut d = dst;
    let mut s = Some(src);
    for k in at {
        let Some(n) = d.get_mut(*k) else { return };
        d = n;
        s = s.and_then(|v| v.get(*k));
    }
    if let Value::Mapping(m) = d {
        match s.and_then(|v| v.get(key)) {
            Some(v) => {
                m.insert(Value::from(key), v.clone());
            }
            None => {
                m.remove(key);
            }
        }
    }
}

/// Go's `omitempty`: empty maps, lists and nulls are not there.
fn strip_empty(v: &Value) -> Value {
    match v {
        Value::Mapping(m) => {
            let mut out = Mapping::new();
            for (k, x) in m {
                let x = strip_empty(x);
                let empty = match &x {
                    Value::Null => true,
                    Value::Mapping(m) => m.is_empty(),
                    Value::Sequence(s) => s.is_empty(),
                    _ => false,
                };
                if !empty {
                    out.insert(k.clone(), x);
                }
            }
            Value::Mapping(out)
        }
        Value::Sequence(s) => Value::Sequence(s.iter().map(strip_empty).collect()),
        other => other.clone(),
    }
}

/// What happened to a node, for tests that check ordering.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventKind {
    /// The node went down (reboot or upgrade started).
    Down,
    /// The node answers again (normal or maintenance mode).
    Up,
    /// A config was applied (the mode used: `no_reboot`, `reboot`, `staged`, `try`).
    Applied(String),
    /// An upgrade to this image was accepted.
    Upgrade(String),
    /// The node served a read (`Version`, `Get MachineConfigs.config.talos.dev`, ...): the
    /// tests count them per node.
    Read(String),
    /// The node joined etcd as this member (or bootstrapped it).
    EtcdJoin(u64),
    /// This etcd member was removed (left, or removed by a peer).
    EtcdRemove(u64),
    /// The node's Kubernetes Node object was cordoned.
    Cordon,
    /// A pod (`namespace/name`) on the node was evicted.
    Evicted(String),
    /// An eviction of a pod on the node was refused (429, a disruption budget).
    EvictionRefused(String),
    /// The node's Kubernetes Node object was deleted.
    NodeDeleted,
    /// A `Reset` started (the wiped partitions, `+` separated; empty: all).
    Reset(String),
}

/// One entry of the event log.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Event {
    /// When.
    pub at: Instant,
    /// VMID of the node.
    pub vmid: u32,
    /// The node's hostname.
    pub hostname: String,
    /// Whether the node is a control plane.
    pub control_plane: bool,
    /// What.
    pub kind: EventKind,
}

/// Timing and fault knobs of the simulated nodes. A lab whose state directory holds
/// `talos/knobs.json` (`{"upgrade_ms": 300, "reboot_ms": 50, "stuck": [302], "component_ms":
/// 200}`) reads them
/// from there, so that tests can steer a lab running in another process.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Knobs {
    /// How long an upgrade keeps the node down before it reboots into the new version.
    pub upgrade_time: Duration,
    /// How long a reboot keeps the node down.
    pub reboot_time: Duration,
    /// VMIDs of nodes that do not come back from a reboot (their first boot still works).
    pub stuck: Vec<u32>,
    /// How long a Kubernetes component takes to restart on a new image after a config
    /// applied without a reboot (see `components.rs`).
    pub component_time: Duration,
}

/// The file form of [`Knobs`].
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KnobsFile {
    #[serde(default)]
    upgrade_ms: Option<u64>,
    #[serde(default)]
    reboot_ms: Option<u64>,
    #[serde(default)]
    stuck: Vec<u32>,
    #[serde(default)]
    component_ms: Option<u64>,
}

impl Knobs {
    /// Read `path` (JSON) if it exists; defaults otherwise.
    pub fn load(path: &std::path::Path) -> Result<Knobs, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Knobs::default()),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let f: KnobsFile =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let d = Knobs::default();
        Ok(Knobs {
            upgrade_time: f.upgrade_ms.map_or(d.upgrade_time, Duration::from_millis),
            reboot_time: f.reboot_ms.map_or(d.reboot_time, Duration::from_millis),
            stuck: f.stuck,
            component_time: f
                .component_ms
                .map_or(d.component_time, Duration::from_millis),
        })
    }
}

/// One line of `talos-events.jsonl` in the lab's state directory (the event log kept for
/// other processes).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct EventLine {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u128,
    /// VMID.
    pub vmid: u32,
    /// Hostname.
    pub hostname: String,
    /// Control plane or not.
    pub control_plane: bool,
    /// `down`, `up`, `applied:<mode>`, `upgrade:<image>`, `read:<what>`, `etcd-join:<id>`,
    /// `etcd-remove:<id>` (hex), `cordon`, `evicted:<ns/pod>`, `eviction-refused:<ns/pod>`,
    /// `node-deleted`, `reset:<partitions>`.
    pub kind: String,
}

impl EventKind {
    /// The kind as written in `talos-events.jsonl`.
    pub fn as_line(&self) -> String {
        match self {
            EventKind::Down => "down".into(),
            EventKind::Up => "up".into(),
            EventKind::Applied(m) => format!("applied:{m}"),
            EventKind::Upgrade(i) => format!("upgrade:{i}"),
            EventKind::Read(r) => format!("read:{r}"),
            EventKind::EtcdJoin(id) => format!("etcd-join:{id:x}"),
            EventKind::EtcdRemove(id) => format!("etcd-remove:{id:x}"),
            EventKind::Cordon => "cordon".into(),
            EventKind::Evicted(p) => format!("evicted:{p}"),
            EventKind::EvictionRefused(p) => format!("eviction-refused:{p}"),
            EventKind::NodeDeleted => "node-deleted".into(),
            EventKind::Reset(w) => format!("reset:{w}"),
        }
    }
}

/// Read the event log a lab wrote under `state_dir`.
pub fn read_event_log(state_dir: &std::path::Path) -> Vec<EventLine> {
    std::fs::read_to_string(state_dir.join("talos-events.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            upgrade_time: Duration::from_secs(2),
            reboot_time: Duration::from_millis(200),
            stuck: Vec::new(),
            component_time: Duration::from_millis(500),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn installer_images_name_version_and_schematic() {
        let id = "a".repeat(64);
        assert_eq!(
            image_version(&format!("factory.talos.dev/nocloud-installer/{id}:v1.12.0")),
            Some(("v1.12.0".into(), id))
        );
        assert_eq!(
            image_version("ghcr.io/siderolabs/installer:v1.12.11"),
            Some(("v1.12.11".into(), VANILLA_SCHEMATIC.into()))
        );
        assert_eq!(image_version("localhost:5000/installer"), None);
    }

    const CUR: &str = "version: v1alpha1\nmachine:\n  type: worker\n  install: { image: a }\n  features: { rbac: true }\ncluster:\n  clusterName: c\n";

    #[test]
    fn immediate_changes_and_the_refusal_text() {
        let live = CUR.replace(
            "  type: worker\n",
            "  type: worker\n  sysctls: { a: '1' }\n",
        );
        assert_eq!(can_apply_immediate(CUR, &live), Ok(()));
        let live = CUR.replace(
            "clusterName: c",
            "clusterName: c\n  proxy: { disabled: true }",
        );
        assert_eq!(can_apply_immediate(CUR, &live), Ok(()));
        let reboot = CUR.replace("  type: worker\n", "  type: worker\n  env: { A: b }\n");
        let e = can_apply_immediate(CUR, &reboot).unwrap_err();
        assert!(
            e.starts_with("this config change can't be applied in immediate mode\ndiff:\n"),
            "{e}"
        );
        assert!(e.contains("+  env:"), "{e}");
    }
}
