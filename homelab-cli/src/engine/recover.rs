//! What an interrupted `up` can leave on a Proxmox host, recognised so that the next run
//! converges instead of calling our own leftovers foreign.
//!
//! Proxmox creates a guest in two writes: the API handler first writes a configuration that
//! holds nothing but `lock: create` (qemu-server `PVE/API2/Qemu.pm` `create_vm` calls
//! `PVE::QemuConfig->create_and_lock_config`; pve-container `src/PVE/API2/LXC.pm`
//! `create_vm` calls `PVE::LXC::Config->create_and_lock_config`, both from pve-guest-common
//! `AbstractConfig::create_and_lock_config`), then the worker allocates the volumes and only
//! at the end writes the full configuration (qemu-server `write_config` after
//! `create_disks`; pve-container `create_rootfs` then `write_config`). A host (or, under
//! `--simulate`, our own process) that dies in between leaves the placeholder and any volumes
//! allocated so far. Such a guest carries none of our markers, because they are in the part of
//! the configuration that was never written; at a VMID we declare it is ours to clean up. A
//! guest with a real configuration but without our marker is never touched.
//!
//! A clone works the same way: qemu-server `clone_vm` first writes a temporary configuration
//! holding only `lock: clone`, and the copied configuration at the end.
//!
//! Removing a locked guest takes `skiplock`, which Proxmox grants to `root@pam` alone
//! (`destroy_vm`: "Only root may use this option."), so the repair needs the root login.

use std::collections::BTreeMap;

use proxmox_client::{Client, ParamValue};
use serde::Deserialize;

use super::observed::{Observed, ObservedGuest};
use crate::model::desired::{Desired, GuestKind};

/// The lock an unfinished create holds.
pub const CREATE_LOCK: &str = "create";

/// Why a guest at a declared VMID is the remains of an interrupted create, or `None` when it
/// is not (no `lock: create`, its configuration was not read, or it has a real
/// configuration).
pub fn abandoned_create(g: &ObservedGuest, volumes: &[String]) -> Option<Vec<String>> {
    let cfg = g.config.as_ref()?;
    if cfg.props.keys().any(|k| k != "lock" && k != "digest") {
        return None;
    }
    let lock = cfg
        .props
        .get("lock")
        .map(String::as_str)
        .or(g.lock.as_deref());
    let first = match lock {
        Some(CREATE_LOCK) => format!(
            "{} {} holds only `lock: create`: a create that never finished (Proxmox writes that placeholder first and the full configuration last)",
            g.kind.noun(),
            g.vmid
        ),
        Some("clone") => format!(
            "{} {} holds only `lock: clone`: a clone that never finished (qemu-server `clone_vm` writes that temporary file first)",
            g.kind.noun(),
            g.vmid
        ),
        // What `qm unlock` / `pct unlock` leaves of such a placeholder.
        None => format!(
            "{} {} has an empty configuration: the placeholder of a create that never finished, unlocked",
            g.kind.noun(),
            g.vmid
        ),
        Some(_) => return None,
    };
    let mut evidence = vec![first, "no owner marker, no tags, no name".to_string()];
    if volumes.is_empty() {
        evidence.push("it owns no volumes yet".to_string());
    } else {
        evidence.push(format!(
            "volumes it allocated (destroyed with it): {}",
            volumes.join(", ")
        ));
    }
    Some(evidence)
}

/// Whether the placeholder still holds its lock (removing it then takes `skiplock`).
pub fn is_locked(g: &ObservedGuest) -> bool {
    g.config
        .as_ref()
        .and_then(|c| c.props.get("lock"))
        .or(g.lock.as_ref())
        .is_some()
}

/// Whether `up` can remove the placeholder itself: an unlocked one always; a locked VM with
/// root@pam (`skiplock`); a locked container never (pve-container's `destroy_vm` and config
/// update call `check_lock` unconditionally).
pub fn can_remove(g: &ObservedGuest, root_access: bool) -> bool {
    !is_locked(g) || (g.kind == GuestKind::Qemu && root_access)
}

/// The help text when the repair cannot be made through the API. `sim_state`: the simulated
/// lab's state directory under `--simulate`.
pub fn manual_repair(
    kind: GuestKind,
    vmid: u32,
    node: &str,
    sim_state: Option<&std::path::Path>,
) -> String {
    let tool = match kind {
        GuestKind::Qemu => "qm",
        GuestKind::Lxc => "pct",
    };
    let unlock = match sim_state {
        Some(dir) => format!(
            "run `homelab-cli sim unlock {vmid} --state {}` (the simulated node's `{tool} unlock`)",
            dir.display()
        ),
        None => format!("on node {node}, run `{tool} unlock {vmid}` as root"),
    };
    let root = if kind == GuestKind::Qemu && sim_state.is_none() {
        " (or add `proxmox.root_password: ${secret:proxmox.root_password}` so that `up` removes it with `skiplock`)"
    } else {
        ""
    };
    format!(
        "{unlock}{root}, then run `up` again: it destroys the empty guest with any volumes it allocated and creates it anew"
    )
}

#[derive(Deserialize)]
struct ActiveTask {
    upid: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default, rename = "type")]
    ty: Option<String>,
}

/// Clones still running on `node`. qemu-server `clone_vm` forks its `qmclone` worker under
/// the *source* VMID, so a clone in flight is found by its type, not by the new VMID.
pub async fn active_clones(
    client: &Client,
    node: &str,
) -> Result<Vec<String>, proxmox_client::Error> {
    let tasks: Vec<ActiveTask> = client
        .get(
            &format!("/nodes/{node}/tasks"),
            &[
                ("source", ParamValue::Str("active".into())),
                ("typefilter", ParamValue::Str("qmclone".into())),
            ],
        )
        .await?;
    Ok(tasks
        .into_iter()
        .filter(|t| t.ty.as_deref().is_none_or(|t| t == "qmclone"))
        .map(|t| t.upid)
        .collect())
}

/// Tasks still running on `node` for `vmid` (`GET /nodes/{node}/tasks?source=active&vmid=`).
pub async fn active_tasks(
    client: &Client,
    node: &str,
    vmid: u32,
) -> Result<Vec<String>, proxmox_client::Error> {
    let tasks: Vec<ActiveTask> = client
        .get(
            &format!("/nodes/{node}/tasks"),
            &[
                ("source", ParamValue::Str("active".into())),
                ("vmid", ParamValue::Int(i64::from(vmid))),
            ],
        )
        .await?;
    Ok(tasks
        .into_iter()
        .filter(|t| t.id.as_deref().is_none_or(|id| id == vmid.to_string()))
        .map(|t| t.upid)
        .collect())
}

#[derive(Deserialize)]
struct EndedTask {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    endtime: Option<u64>,
}

/// Whether a task of `vmid` that had started by `at` (Unix seconds) ended at or after it:
/// a change already under way when the plan was read, which the plan could not see.
/// `GET /nodes/{node}/tasks?source=archive&vmid=&until=` (pve-manager `API2/Tasks.pm`
/// `node_tasks`: `until` bounds the start time, `endtime` is the task log's).
pub async fn ended_since(
    client: &Client,
    node: &str,
    vmid: u32,
    at: u64,
) -> Result<bool, proxmox_client::Error> {
    if at == 0 {
        return Ok(false);
    }
    let tasks: Vec<EndedTask> = client
        .get(
            &format!("/nodes/{node}/tasks"),
            &[
                ("source", ParamValue::Str("archive".into())),
                ("vmid", ParamValue::Int(i64::from(vmid))),
                (
                    "until",
                    ParamValue::Int(i64::try_from(at).unwrap_or(i64::MAX)),
                ),
            ],
        )
        .await?;
    // Task times have a resolution of one second: one that ended within the plan's first
    // second counts (it may have ended after the read).
    Ok(tasks.iter().any(|t| {
        t.id.as_deref().is_none_or(|id| id == vmid.to_string())
            && t.endtime.is_some_and(|e| e >= at)
    }))
}

#[derive(Deserialize)]
struct Content {
    volid: String,
}

#[derive(Deserialize)]
struct StorageEntry {
    storage: String,
    #[serde(default)]
    content: String,
}

/// The guest volumes of `vmid` on `node`, across the node's image and container storages.
pub async fn guest_volumes(
    client: &Client,
    node: &str,
    vmid: u32,
) -> Result<Vec<String>, proxmox_client::Error> {
    let storages: Vec<StorageEntry> = client.get(&format!("/nodes/{node}/storage"), &[]).await?;
    let mut out = Vec::new();
    for s in storages {
        let kinds: Vec<&str> = s
            .content
            .split(',')
            .filter(|c| matches!(*c, "images" | "rootdir"))
            .collect();
        if kinds.is_empty() {
            continue;
        }
        let items: Vec<Content> = client
            .get(
                &format!("/nodes/{node}/storage/{}/content", s.storage),
                &[("vmid", ParamValue::Int(i64::from(vmid)))],
            )
            .await?;
        out.extend(items.into_iter().map(|c| c.volid));
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Declared VMIDs whose guest is locked by an unfinished create or clone: these need their
/// configuration read (and their in-flight tasks awaited) before the planner decides.
pub fn locked_declared(desired: &Desired, observed: &Observed) -> Vec<(String, GuestKind, u32)> {
    let declared: BTreeMap<u32, ()> = desired.guests.iter().map(|g| (g.vmid, ())).collect();
    observed
        .guests
        .iter()
        .filter(|g| declared.contains_key(&g.vmid))
        .filter(|g| {
            // Locked by a create or clone, or (unlocked by hand) without name and tags: the
            // resource list names such a guest `VM<vmid>` / `CT<vmid>` or not at all.
            matches!(g.lock.as_deref(), Some("create" | "clone"))
                || (g.tags.is_empty()
                    && g.name.as_deref().is_none_or(|n| {
                        n == format!("VM{}", g.vmid) || n == format!("CT{}", g.vmid)
                    }))
        })
        .map(|g| (g.node.clone(), g.kind, g.vmid))
        .collect()
}

/// Refuse to generate a new Talos secrets bundle while nodes that keep running (not
/// recreated by `plan`) already run a configuration made from the old one: their trust roots
/// would no longer match, and the cluster could not be managed. Likewise refuse a bundle
/// those nodes' certificates show is another cluster's.
pub fn check_bundle(
    desired: &Desired,
    talos: &super::observed::TalosObserved,
    plan: &super::plan::Plan,
) -> Result<(), super::plan::PlanError> {
    let Some(cluster) = &desired.talos else {
        return Ok(());
    };
    let recreated: std::collections::BTreeSet<u32> = plan
        .actions
        .iter()
        .filter_map(|a| match a {
            super::plan::Action::Create { vmid, .. }
            | super::plan::Action::Replace { vmid, .. } => Some(*vmid),
            _ => None,
        })
        .collect();
    let kept = |vmids: &std::collections::BTreeSet<u32>| -> Vec<String> {
        desired
            .guests
            .iter()
            .filter(|g| vmids.contains(&g.vmid) && !recreated.contains(&g.vmid))
            .map(|g| format!("{} \"{}\"", g.vmid, g.name))
            .collect()
    };
    if talos.secrets_present {
        // Nodes that stay, configured from another bundle: nothing could manage them.
        let foreign = kept(&talos.foreign_ca);
        if foreign.is_empty() {
            return Ok(());
        }
        return Err(super::plan::PlanError::SecretsForeign {
            path: cluster.secrets_file.display().to_string(),
            nodes: foreign.join(", "),
        });
    }
    let running = kept(&talos.configured);
    if running.is_empty() {
        return Ok(());
    }
    Err(super::plan::PlanError::SecretsLost {
        path: cluster.secrets_file.display().to_string(),
        nodes: running.join(", "),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::engine::observed::GuestConfig;

    fn guest(props: &[(&str, &str)], lock: Option<&str>) -> ObservedGuest {
        ObservedGuest {
            vmid: 301,
            node: "pve".into(),
            kind: GuestKind::Qemu,
            name: None,
            status: "stopped".into(),
            tags: BTreeSet::new(),
            maxmem: None,
            maxcpu: None,
            maxdisk: None,
            template: false,
            lock: lock.map(str::to_string),
            config: Some(GuestConfig {
                props: props
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                digest: Some("abc".into()),
            }),
        }
    }

    #[test]
    fn placeholder_is_recognised_with_its_volumes() {
        let g = guest(&[("lock", "create")], Some("create"));
        let ev = abandoned_create(&g, &["local-lvm:vm-301-disk-0".into()]).expect("abandoned");
        assert!(ev[0].contains("lock: create"), "{ev:?}");
        assert!(ev[2].contains("local-lvm:vm-301-disk-0"), "{ev:?}");
    }

    #[test]
    fn a_real_config_is_never_abandoned() {
        let g = guest(
            &[("lock", "create"), ("name", "theirs"), ("memory", "2048")],
            Some("create"),
        );
        assert!(abandoned_create(&g, &[]).is_none());
        let g = guest(&[("lock", "backup")], Some("backup"));
        assert!(abandoned_create(&g, &[]).is_none());
        // Unlocked by hand: still the empty placeholder, removable without root.
        let g = guest(&[], None);
        assert!(abandoned_create(&g, &[]).is_some());
        assert!(can_remove(&g, false));
        let mut g = guest(&[("lock", "create")], Some("create"));
        assert!(can_remove(&g, true) && !can_remove(&g, false));
        g.kind = GuestKind::Lxc;
        assert!(!can_remove(&g, true));
        let mut g = guest(&[("lock", "create")], Some("create"));
        g.config = None;
        assert!(abandoned_create(&g, &[]).is_none());
    }

    #[test]
    fn manual_repair_names_the_tool() {
        let t = manual_repair(GuestKind::Lxc, 108, "pve2", None);
        assert!(t.contains("pct unlock 108"), "{t}");
        assert!(t.contains("node pve2"), "{t}");
        let t = manual_repair(
            GuestKind::Lxc,
            108,
            "pve",
            Some(std::path::Path::new("/r/.homelab/sim")),
        );
        assert!(
            t.contains("homelab-cli sim unlock 108 --state /r/.homelab/sim"),
            "{t}"
        );
    }
}
