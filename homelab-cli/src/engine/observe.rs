//! Reading the lab from Proxmox in a constant number of calls: `/cluster/resources` (nodes,
//! guests, storages), one storage listing per (node, ISO or template storage) we use, then the
//! configuration of only those guests the planner cannot decide from the list.

use std::collections::{BTreeMap, BTreeSet};

use futures_util::{StreamExt, stream};
use proxmox_client::Client;

use super::observed::{GuestConfig, Observed, ObservedGuest, ObservedNode};
use super::plan::needs_config;
use crate::model::desired::{Desired, GuestKind};
use proxmox_client::property::canon_tags;

/// How many guest configurations are read at once.
pub const READ_PARALLELISM: usize = 8;

/// Observe the lab for `desired`.
pub async fn observe(
    client: &Client,
    desired: &Desired,
) -> Result<Observed, proxmox_client::Error> {
    let mut observed = list(client).await?;
    let mut wanted: BTreeSet<(String, String, &str)> = BTreeSet::new();
    for iso in &desired.isos {
        wanted.insert((iso.node.clone(), iso.storage.clone(), "iso"));
    }
    for t in &desired.templates {
        wanted.insert((t.node.clone(), t.storage.clone(), "vztmpl"));
    }
    for i in &desired.images {
        wanted.insert((i.node.clone(), i.storage.clone(), "import"));
    }
    for sn in &desired.snippets {
        wanted.insert((sn.node.clone(), sn.storage.clone(), "snippets"));
    }
    for (node, volid, _) in &desired.existing_images {
        if let Some((storage, _)) = volid.split_once(':') {
            wanted.insert((node.clone(), storage.to_string(), "import"));
        }
    }
    for (node, storage, content) in wanted {
        // A node that is offline or unknown is reported by the planner, not here.
        if !observed
            .nodes
            .iter()
            .any(|n| n.name == node && n.status == "online")
        {
            continue;
        }
        let content = client
            .node(&node)
            .storage(&storage)
            .content(Some(content), None)
            .await?;
        observed
            .volumes
            .entry(node.clone())
            .or_default()
            .extend(content.into_iter().map(|c| c.volid));
    }
    if super::pci::wanted(desired) {
        let nodes: BTreeSet<&str> = desired.guests.iter().map(|g| g.node.as_str()).collect();
        for node in nodes {
            if observed
                .nodes
                .iter()
                .any(|n| n.name == node && n.status == "online")
            {
                let devices = client.node(node).hardware_pci().await?;
                observed.pci_devices.insert(node.to_string(), devices);
            }
        }
        observed.pci_mappings = Some(client.pci_mappings().list().await?);
    }
    // A create or clone still running on the host: wait for it (its guest holds only a lock
    // and no markers until it ends), then read the list again. Read it again also when the
    // task ended between the list and the task query: the row still shows the placeholder.
    // Before the status checks below, so that they see the guest the task left.
    let locked = super::recover::locked_declared(desired, &observed);
    if await_in_flight(client, &locked).await? || !locked.is_empty() {
        let fresh = list(client).await?;
        observed.guests = fresh.guests;
    }
    // The resource list lags (pvestatd): a guest we are about to start may already run.
    // Asking the few that look stopped keeps a quick second `up` from starting them twice.
    let declared: BTreeSet<u32> = desired
        .guests
        .iter()
        .filter(|g| !g.is_template)
        .map(|g| g.vmid)
        .collect();
    let stopped: Vec<(String, GuestKind, u32)> = observed
        .guests
        .iter()
        // `unknown` too: pvestatd has not reported a new guest yet (up to 10 s), and a start
        // that failed right after its creation must still be planned.
        .filter(|g| g.status != "running" && !g.template && declared.contains(&g.vmid))
        .map(|g| (g.node.clone(), g.kind, g.vmid))
        .collect();
    for (node, kind, vmid) in stopped {
        let n = client.node(&node);
        let status = match kind {
            GuestKind::Qemu => n.qemu(vmid).status().await,
            GuestKind::Lxc => n.lxc(vmid).status().await,
        };
        if let (Ok(s), Some(g)) = (status, observed.guests.iter_mut().find(|g| g.vmid == vmid)) {
            g.status = s.status;
        }
    }
    let mut which = needs_config(desired, &observed);
    for l in super::recover::locked_declared(desired, &observed) {
        if !which.iter().any(|w| w.2 == l.2) {
            which.push(l);
        }
    }
    read_configs(client, &mut observed, which).await?;
    super::restore::observe(client, desired, &mut observed).await?;
    observed.storages = super::storages::observe(client, desired).await?;
    observed.pools = super::pools::observe(client, desired).await?;
    let placeholders: Vec<(String, u32)> = observed
        .guests
        .iter()
        .filter(|g| super::recover::abandoned_create(g, &[]).is_some())
        .map(|g| (g.node.clone(), g.vmid))
        .collect();
    for (node, vmid) in placeholders {
        let vols = super::recover::guest_volumes(client, &node, vmid).await?;
        observed.abandoned_volumes.insert(vmid, vols);
    }
    Ok(observed)
}

/// One `/cluster/resources` call: nodes and guests (no configurations).
pub async fn list(client: &Client) -> Result<Observed, proxmox_client::Error> {
    let read_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let resources = client.cluster_resources(None).await?;
    let mut observed = Observed {
        read_at,
        ..Observed::default()
    };
    for r in resources {
        match r.kind.as_str() {
            "node" => observed.nodes.push(ObservedNode {
                name: r.node.clone().unwrap_or_default(),
                status: r.status.clone().unwrap_or_else(|| "unknown".into()),
                maxcpu: r.maxcpu.map_or(0, |c| c.max(0.0) as u64),
                maxmem: r.maxmem.unwrap_or(0),
            }),
            "qemu" | "lxc" => {
                let Some(vmid) = r.vmid else { continue };
                if let Some(pool) = r.pool.clone().filter(|p| !p.is_empty()) {
                    observed.guest_pools.insert(vmid, pool);
                }
                observed.guests.push(ObservedGuest {
                    vmid,
                    node: r.node.clone().unwrap_or_default(),
                    kind: if r.kind == "qemu" {
                        GuestKind::Qemu
                    } else {
                        GuestKind::Lxc
                    },
                    name: r.name.clone().filter(|n| !n.is_empty()),
                    status: r.status.clone().unwrap_or_else(|| "unknown".into()),
                    tags: canon_tags(r.tags.as_deref().unwrap_or("")),
                    maxmem: r.maxmem,
                    maxcpu: r.maxcpu.map(|c| c.max(0.0) as u64),
                    maxdisk: r.maxdisk,
                    template: r.template.unwrap_or(false),
                    lock: r.lock.clone(),
                    config: None,
                });
            }
            "storage" => {
                if let (Some(node), Some(storage), Some(plugin)) = (
                    r.node.clone(),
                    r.storage.clone(),
                    r.extra.get("plugintype").and_then(|v| v.as_str()),
                ) {
                    observed
                        .storage_types
                        .entry(node)
                        .or_default()
                        .insert(storage, plugin.to_string());
                }
            }
            _ => {}
        }
    }
    observed.guests.sort_by_key(|g| g.vmid);
    Ok(observed)
}

/// Read the configurations of `which` guests, a few at a time.
pub async fn read_configs(
    client: &Client,
    observed: &mut Observed,
    which: Vec<(String, GuestKind, u32)>,
) -> Result<(), proxmox_client::Error> {
    let results: Vec<_> = stream::iter(which)
        .map(|(node, kind, vmid)| async move {
            let n = client.node(&node);
            let cfg = match kind {
                GuestKind::Qemu => n.qemu(vmid).config().await,
                GuestKind::Lxc => n.lxc(vmid).config().await,
            };
            (vmid, cfg)
        })
        .buffer_unordered(READ_PARALLELISM)
        .collect()
        .await;
    let mut by_vmid = BTreeMap::new();
    for (vmid, cfg) in results {
        by_vmid.insert(vmid, cfg?);
    }
    for g in &mut observed.guests {
        if let Some(cfg) = by_vmid.remove(&g.vmid) {
            let props = cfg
                .values
                .keys()
                .filter_map(|k| cfg.get_str(k).map(|v| (k.clone(), v)))
                .collect();
            g.config = Some(GuestConfig {
                props,
                digest: cfg.digest.clone(),
            });
        }
    }
    Ok(())
}

/// The addresses a QEMU guest agent reports, outside the guest's loopback interface (the
/// only ones that can reach the guest from outside).
pub fn agent_addresses(
    ifaces: &[proxmox_client::models::AgentInterface],
) -> impl Iterator<Item = &proxmox_client::models::AgentIpAddress> {
    ifaces
        .iter()
        .filter(|i| i.name != "lo")
        .flat_map(|i| &i.ip_addresses)
}

/// How long `observe` waits for a create or clone that is still running on the host.
pub const IN_FLIGHT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(600);

/// Wait for the tasks still running on the host for `guests`, saying which (UPID) and until
/// when. Whether there was any.
async fn await_in_flight(
    client: &Client,
    guests: &[(String, GuestKind, u32)],
) -> Result<bool, proxmox_client::Error> {
    let mut waited = false;
    for (node, kind, vmid) in guests {
        let mut upids = super::recover::active_tasks(client, node, *vmid).await?;
        if *kind == GuestKind::Qemu {
            upids.extend(super::recover::active_clones(client, node).await?);
        }
        for upid in upids {
            let Ok(parsed) = upid.parse::<proxmox_client::Upid>() else {
                continue;
            };
            let deadline = IN_FLIGHT_DEADLINE;
            eprintln!(
                "  waiting for task {upid} (guest {vmid} on {node}, still running from an earlier run; deadline {}s)",
                deadline.as_secs()
            );
            let opts = proxmox_client::WaitOptions {
                deadline,
                ..proxmox_client::WaitOptions::default()
            };
            // Its outcome does not matter here: the guest is read again afterwards.
            if let Err(e) = client.wait_task(&parsed, &opts).await {
                tracing::warn!(%upid, error = %e, "in-flight task did not finish cleanly");
            }
            waited = true;
        }
    }
    Ok(waited)
}
