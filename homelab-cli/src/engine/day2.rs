//! Talos day 2: what each running node reports (its Talos version), the upgrades the plan
//! needs, and the rolling upgrade `up` runs: control planes one at a time, then workers one
//! at a time, each gated on the node answering with the new version and, for control
//! planes, etcd healthy, before the next one starts. The first failure stops the roll (the
//! steps after it depend on it), naming the node; a re-run observes again and resumes with
//! the nodes still on the old version.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use futures_util::FutureExt;
use talos_api::secrets::SecretsBundle;

use super::apply::Env;
use super::graph::{Step, StepError};
use super::plan::Action;
use super::talos;
use crate::model::config::Role;
use crate::model::desired::{Desired, TalosCluster};

/// The Talos version each reachable configured node reports (one Version call per node,
/// all at once).
pub async fn observe_versions(
    cluster: &TalosCluster,
    bundle: &SecretsBundle,
    nodes: &[(u32, IpAddr)],
) -> BTreeMap<u32, String> {
    observe_versions_and_trust(cluster, bundle, nodes).await.0
}

/// [`observe_versions`], and the nodes whose certificate our CA did not sign (their
/// `Version` call failed the mTLS handshake with a bad signature: the bundle is not theirs).
pub async fn observe_versions_and_trust(
    cluster: &TalosCluster,
    bundle: &SecretsBundle,
    nodes: &[(u32, IpAddr)],
) -> (BTreeMap<u32, String>, std::collections::BTreeSet<u32>) {
    let calls = nodes.iter().map(|&(vmid, ip)| async move {
        let client = talos::admin_client(cluster, bundle, ip)
            .ok()?
            .build()
            .ok()?;
        let tag = match client.version().await {
            Ok(v) => Ok(v.first()?.version.as_ref()?.tag.clone()),
            Err(e) if super::waits::is_cert_mismatch(&e.to_string()) => Err(()),
            Err(_) => return None,
        };
        Some((vmid, tag))
    });
    let mut versions = BTreeMap::new();
    let mut foreign = std::collections::BTreeSet::new();
    for (vmid, tag) in futures_util::future::join_all(calls)
        .await
        .into_iter()
        .flatten()
    {
        match tag {
            Ok(t) => {
                versions.insert(vmid, t);
            }
            Err(()) => {
                foreign.insert(vmid);
            }
        }
    }
    (versions, foreign)
}

/// Upgrades for the configured nodes whose reported version or installed schematic (an
/// extension added at the same version) differs from the desired one: control planes
/// first, then workers, each in declaration order (the order `up` rolls them in).
pub fn plan_upgrades(
    desired: &Desired,
    versions: &BTreeMap<u32, String>,
    schematics: &BTreeMap<u32, String>,
    skip: &std::collections::BTreeSet<u32>,
) -> Vec<Action> {
    let Some(cluster) = &desired.talos else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for role in [Role::Controlplane, Role::Worker] {
        for vmid in &cluster.nodes {
            let Some(g) = desired.guests.iter().find(|g| g.vmid == *vmid) else {
                continue;
            };
            let Some(member) = &g.talos else { continue };
            if member.role != role || skip.contains(vmid) {
                continue;
            }
            let Some(running) = versions.get(vmid) else {
                continue;
            };
            let schematic = schematics.get(vmid);
            if *running == cluster.version && schematic.is_none_or(|s| *s == cluster.schematic_id) {
                continue;
            }
            out.push(Action::TalosUpgrade {
                vmid: *vmid,
                name: g.name.clone(),
                role: role.to_string(),
                from: running.clone(),
                to: cluster.version.clone(),
                image: cluster.installer_image.clone(),
                from_schematic: schematic.cloned(),
                to_schematic: schematic.map(|_| cluster.schematic_id.clone()),
            });
        }
    }
    out
}

/// The rolling-upgrade steps: control planes one after the other, then workers in batches
/// of `talos.upgrade.max_unavailable` (each batch after the previous one); each step also
/// waits for its own VM's update (e.g. the CD-ROM switched to the new ISO).
pub fn upgrade_steps(env: &Arc<Env>, actions: &[Action], existing: &[Step]) -> Vec<Step> {
    let max = env.desired.talos.as_ref().map_or(1, |c| c.max_unavailable);
    let mut out = Vec::new();
    // The steps the next one (or batch) waits for.
    let mut previous: Vec<String> = Vec::new();
    let mut batch: Vec<String> = Vec::new();
    for a in actions {
        let Action::TalosUpgrade {
            vmid,
            name,
            role,
            from,
            to,
            image,
            to_schematic,
            ..
        } = a.clone()
        else {
            continue;
        };
        let id = format!("upgrade:{vmid}");
        let worker = role == Role::Worker.to_string();
        let full = batch.len() >= usize::try_from(max.max(1)).unwrap_or(1);
        if (!worker || full) && !batch.is_empty() {
            previous = std::mem::take(&mut batch);
        }
        let mut deps: Vec<String> = previous.clone();
        let own = format!("guest:{vmid}");
        if existing.iter().any(|s| s.id == own) {
            deps.push(own);
        }
        let e = env.clone();
        out.push(Step {
            id: id.clone(),
            label: format!("upgrade Talos on {role} \"{name}\": {from} -> {to} (reboots)"),
            deps,
            run: async move { upgrade_node(&e, vmid, &to, to_schematic.as_deref(), &image).await }
                .boxed(),
        });
        if worker {
            batch.push(id);
        } else {
            previous = vec![id];
        }
    }
    out
}

/// What a rolling step needs to talk to one configured node: its cluster, the secrets
/// bundle, its declaration and address, and an admin client (and the builder, for clients
/// made again after a reboot).
pub(crate) struct NodeTarget<'a> {
    pub cluster: &'a TalosCluster,
    pub bundle: &'a SecretsBundle,
    pub guest: &'a crate::model::desired::DesiredGuest,
    pub ip: IpAddr,
    pub builder: talos_api::client::ClientBuilder,
    pub client: talos_api::client::Client,
}

/// The [`NodeTarget`] of the node `vmid`.
pub(crate) fn node_target(env: &Env, vmid: u32) -> Result<NodeTarget<'_>, StepError> {
    let (cluster, bundle) = env.cluster_and_bundle()?;
    let (d, ip) = env.static_talos_node(vmid)?;
    let builder =
        talos::admin_client(cluster, bundle, ip).map_err(|e| StepError::new(e.to_string()))?;
    let client = builder
        .clone()
        .build()
        .map_err(|e| StepError::new(format!("Talos client: {e}")))?;
    Ok(NodeTarget {
        cluster,
        bundle,
        guest: d,
        ip,
        builder,
        client,
    })
}

/// Upgrade one node and wait until it is healthy on the new version.
async fn upgrade_node(
    env: &Env,
    vmid: u32,
    to: &str,
    to_schematic: Option<&str>,
    image: &str,
) -> Result<String, StepError> {
    let NodeTarget {
        cluster: _,
        bundle: _,
        guest: d,
        ip,
        builder,
        client,
    } = node_target(env, vmid)?;
    let current = client
        .version()
        .await
        .ok()
        .and_then(|v| v.first()?.version.as_ref().map(|x| x.tag.clone()));
    // The installed schematic is only compared when the plan knew it.
    let schematic_ok =
        |s: Option<String>| to_schematic.is_none_or(|want| s.as_deref() == Some(want));
    let current_schematic = match to_schematic {
        Some(_) => client.schematic().await.ok(),
        None => None,
    };
    // A re-run after the node already took the upgrade only waits for health.
    if current.as_deref() != Some(to) || !schematic_ok(current_schematic) {
        client
            .upgrade(talos_api::proto::machine::UpgradeRequest {
                image: image.to_string(),
                ..Default::default()
            })
            .await
            .map_err(|e| StepError::new(format!("{}: upgrade refused: {e}", d.name)))?;
    }
    let opts = talos_api::health::WaitOptions::new(env.timeouts.talos).interval(env.timeouts.poll);
    let stuck = |what: String| {
        StepError::new(format!(
            "{} did not come back on {to}: {what}; the roll stopped here and the nodes after it are untouched",
            d.name
        ))
        .hint(format!(
            "look at \"{}\" in the Proxmox console; once it answers, re-run `homelab-cli up` to resume the roll",
            d.name
        ))
    };
    let client = talos_api::health::wait_for("the new Talos version", &opts, || {
        let b = builder.clone();
        async move {
            let c = b.build()?;
            let v = c.version().await?;
            let tag = v
                .first()
                .and_then(|x| x.version.as_ref())
                .map(|x| x.tag.clone())
                .unwrap_or_default();
            if tag != to {
                return Err(talos_api::Error::InvalidConfig(format!("still on {tag}")));
            }
            if let Some(want) = to_schematic {
                let s = c.schematic().await?;
                if s != want {
                    return Err(talos_api::Error::InvalidConfig(format!(
                        "still on schematic {s}"
                    )));
                }
            }
            Ok(c)
        }
    })
    .await
    .map_err(|e| stuck(e.to_string()))?;
    if d.is_control_plane() {
        // etcd healthy, every control plane a member again.
        super::config_apply::wait_control_plane(env, &client, &opts)
            .await
            .map_err(|e| stuck(format!("etcd: {e}")))?;
        // etcd healthy on every control plane (this node's member rejoined).
        let cps = super::talos::control_plane_ips(&env.desired);
        super::rolling::wait_etcd_everywhere(&client, &cps, &opts)
            .await
            .map_err(|e| stuck(format!("etcd: {e}")))?;
    }
    // Its Kubernetes node is Ready again.
    super::rolling::wait_node_ready(env, &d.name, ip, &opts)
        .await
        .map_err(|e| stuck(e.message))?;
    Ok(format!("{} runs {to}", d.name))
}
