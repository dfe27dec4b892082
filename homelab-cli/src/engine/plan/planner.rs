//! The top-level planner: ownership, which configs to read, the guest plan, backups and SDN.

use super::*;

/// Whether a listed guest belongs to homelab `lab`: our tag, and (when its configuration
/// was read) our description marker.
pub fn is_ours(g: &ObservedGuest, lab: &str) -> bool {
    g.tags.contains(&owner_tag(lab))
        && g.config.as_ref().is_none_or(|c| {
            has_owner_marker(c.props.get("description").map_or("", String::as_str), lab)
        })
}

/// Guests whose configuration must be read before planning (those that cannot be decided
/// from the cluster resource list alone). A no-op plan needs none.
pub fn needs_config(desired: &Desired, observed: &Observed) -> Vec<(String, GuestKind, u32)> {
    let want: BTreeMap<u32, &DesiredGuest> = desired.guests.iter().map(|g| (g.vmid, g)).collect();
    let mut out = Vec::new();
    for g in &observed.guests {
        if g.config.is_none() && adopting(desired, g) {
            // A guest to take over: compared in full.
            out.push((g.node.clone(), g.kind, g.vmid));
            continue;
        }
        if g.config.is_some() || !g.tags.contains(&owner_tag(&desired.lab)) {
            continue;
        }
        let closer = match want.get(&g.vmid) {
            // Ours but no longer declared: confirm the marker before destroying it.
            None => true,
            Some(d) => !cheap_match(d, g),
        };
        if closer {
            out.push((g.node.clone(), g.kind, g.vmid));
        }
    }
    out
}

/// Whether `g` is a guest the declaration takes over (`adopt: true`): same VMID, and no
/// homelab's ownership tag or marker on it.
pub fn adopting(desired: &Desired, g: &ObservedGuest) -> bool {
    desired.adopt.contains(&g.vmid)
        && !is_ours(g, &desired.lab)
        && !g.tags.iter().any(|t| t.starts_with("homelab-"))
        && g.config.as_ref().is_none_or(|c| {
            !c.props
                .get("description")
                .is_some_and(|d| d.contains("homelab-cli:owner="))
        })
}

/// Whether the resource list alone shows the guest as desired: same spec-hash tag, node and
/// kind, and no contradicting figure (name, memory, cores) where the list has one.
pub(super) fn cheap_match(d: &DesiredGuest, g: &ObservedGuest) -> bool {
    let hash_tag = format!("{SPEC_TAG_PREFIX}{}", d.spec_hash);
    g.tags.contains(&hash_tag)
        && g.template == d.is_template
        && g.node == d.node
        && g.kind == d.kind
        && g.name.as_ref().is_none_or(|n| *n == d.name)
        && g.maxmem
            .is_none_or(|m| m == 0 || m == d.memory_mib() * 1024 * 1024)
        && g.maxcpu.is_none_or(|c| c == 0 || c == d.cpus())
}

/// Plan the guests and images. `observed` must carry the configurations [`needs_config`]
/// asked for.
pub fn plan(desired: &Desired, observed: &Observed) -> Result<Plan, PlanError> {
    let lab = &desired.lab;
    let mut actions = Vec::new();
    let known_nodes: BTreeSet<&str> = observed.nodes.iter().map(|n| n.name.as_str()).collect();
    for g in &desired.guests {
        if !known_nodes.contains(g.node.as_str()) {
            return Err(PlanError::UnknownNode {
                node: g.node.clone(),
                name: g.name.clone(),
                known: known_nodes.iter().copied().collect::<Vec<_>>().join(", "),
            });
        }
    }
    crate::engine::storage_check::check(desired, observed)?;
    let by_vmid: BTreeMap<u32, &ObservedGuest> =
        observed.guests.iter().map(|g| (g.vmid, g)).collect();
    // Storages first: guest volumes and backups live on them.
    actions.extend(crate::engine::storages::diff(
        desired,
        observed.storages.as_ref(),
    )?);
    // Pools too: guests are placed in them.
    actions.extend(crate::engine::pools::diff(
        desired,
        observed.pools.as_deref(),
    )?);
    crate::engine::guest_pools::check(desired, observed)?;

    // Clashes with guests we do not own.
    let mut abandoned: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for d in &desired.guests {
        // The remains of a create that died with its host: ours to clean up (see `recover`).
        if let Some(g) = by_vmid.get(&d.vmid)
            && let Some(evidence) = crate::engine::recover::abandoned_create(
                g,
                observed
                    .abandoned_volumes
                    .get(&d.vmid)
                    .map_or(&[][..], Vec::as_slice),
            )
        {
            if !crate::engine::recover::can_remove(g, observed.root_access) {
                return Err(PlanError::AbandonedCreate {
                    vmid: d.vmid,
                    name: d.name.clone(),
                    kind: g.kind.noun(),
                    node: g.node.clone(),
                    evidence: evidence.join("; "),
                    repair: crate::engine::recover::manual_repair(
                        g.kind,
                        d.vmid,
                        &g.node,
                        observed.sim_state.as_deref(),
                    ),
                });
            }
            abandoned.insert(d.vmid, evidence);
            continue;
        }
        if let Some(g) = by_vmid.get(&d.vmid)
            && !is_ours(g, lab)
            && !(adopting(desired, g) && g.kind == d.kind)
        {
            return Err(PlanError::VmidClash {
                vmid: d.vmid,
                name: d.name.clone(),
                other: g.name.clone().unwrap_or_default(),
                kind: g.kind.noun(),
                node: g.node.clone(),
            });
        }
        // Another homelab on the same host (say dev beside prod) may use the same names.
        if let Some(g) = observed.guests.iter().find(|g| {
            g.vmid != d.vmid
                && g.name.as_deref() == Some(d.name.as_str())
                && !is_ours(g, lab)
                && !g.tags.iter().any(|t| t.starts_with("homelab-"))
        }) {
            return Err(PlanError::NameClash {
                name: d.name.clone(),
                vmid: d.vmid,
                other_vmid: g.vmid,
                kind: g.kind.noun(),
                node: g.node.clone(),
            });
        }
    }

    for (node, volid, image) in &desired.existing_images {
        if known_nodes.contains(node.as_str()) && !observed.has_volume(node, volid) {
            return Err(PlanError::MissingImage {
                image: image.clone(),
                volid: volid.clone(),
                node: node.clone(),
            });
        }
    }

    // Images first: guests boot from them.
    for iso in &desired.isos {
        if !observed.has_volume(&iso.node, &iso.volid()) {
            actions.push(Action::DownloadIso {
                node: iso.node.clone(),
                storage: iso.storage.clone(),
                filename: iso.filename.clone(),
                url: iso.url.clone(),
            });
        }
    }

    for t in &desired.templates {
        if !observed.has_volume(&t.node, &t.volid()) {
            actions.push(Action::DownloadTemplate {
                node: t.node.clone(),
                storage: t.storage.clone(),
                filename: t.filename.clone(),
                url: t.url.clone(),
            });
        }
    }

    for img in &desired.images {
        if !observed.has_volume(&img.node, &img.volid()) {
            actions.push(Action::DownloadImage {
                node: img.node.clone(),
                storage: img.storage.clone(),
                filename: img.filename.clone(),
                url: img.url.clone(),
                checksum: img.checksum.as_ref().map(|(a, h)| format!("{a}:{h}")),
            });
        }
    }

    for sn in &desired.snippets {
        if !observed.has_volume(&sn.node, &sn.volid()) {
            actions.push(Action::UploadSnippet {
                node: sn.node.clone(),
                storage: sn.storage.clone(),
                filename: sn.filename.clone(),
            });
        }
    }

    // Snippets of ours no declared VM references any more (older contents).
    let wanted_snippets: BTreeSet<(String, String)> = desired
        .snippets
        .iter()
        .map(|s| (s.node.clone(), s.volid()))
        .collect();
    for sn in &desired.snippets {
        for v in observed.volumes.get(&sn.node).into_iter().flatten() {
            let Ok(vol) = v.parse::<proxmox_client::VolumeId>() else {
                continue;
            };
            if vol.storage != sn.storage
                || vol.content != Some(proxmox_client::ContentKind::Snippets)
            {
                continue;
            }
            let file = vol.name.as_str();
            let stale = crate::model::vms::is_snippet_name(lab, file)
                && !wanted_snippets.contains(&(sn.node.clone(), v.clone()));
            let listed = actions.iter().any(|a| {
                matches!(a, Action::DeleteSnippet { node, filename, .. } if *node == sn.node && filename == file)
            });
            if stale && !listed {
                actions.push(Action::DeleteSnippet {
                    node: sn.node.clone(),
                    storage: sn.storage.clone(),
                    filename: file.to_string(),
                });
            }
        }
    }

    actions.extend(crate::engine::pci::plan(desired, observed)?);

    for d in &desired.guests {
        if let (Some(reasons), Some(g)) = (abandoned.remove(&d.vmid), by_vmid.get(&d.vmid)) {
            actions.push(Action::Replace {
                vmid: d.vmid,
                name: d.name.clone(),
                node: d.node.clone(),
                current_node: g.node.clone(),
                kind: d.kind,
                reasons,
            });
            continue;
        }
        match by_vmid.get(&d.vmid) {
            None => {
                let mut c = create(d, lab);
                if !desired.restore.contains_key(&d.vmid) {
                    crate::engine::restore::check_creatable(desired, d, None)?;
                }
                if desired.restore.contains_key(&d.vmid)
                    && let Action::Create { config, .. } = &mut c
                {
                    match crate::engine::restore::pick(desired, observed, d.vmid)? {
                        Some(b) => {
                            config.remove("ostemplate");
                            // A VM's drives come from the archive.
                            if d.kind == GuestKind::Qemu {
                                for k in d.disks.keys() {
                                    config.remove(k);
                                }
                            }
                            config.insert("restore".into(), b.volid.clone());
                        }
                        None => {
                            // A backup storage this run adds cannot be listed before.
                            let adding: Vec<&str> = desired
                                .storages
                                .iter()
                                .filter(|s| {
                                    s.params
                                        .get("content")
                                        .is_some_and(|c| c.contains("backup"))
                                        && observed
                                            .storages
                                            .as_ref()
                                            .is_some_and(|h| !h.contains_key(&s.id))
                                })
                                .map(|s| s.id.as_str())
                                .collect();
                            if adding.is_empty() {
                                crate::engine::restore::check_creatable(desired, d, None)?;
                            }
                            let text = if adding.is_empty() {
                                "(no backup of this VMID found: created empty)".to_string()
                            } else {
                                format!(
                                    "(the newest backup in {}, added by this run; created empty if there is none)",
                                    adding.join(", ")
                                )
                            };
                            config.insert("restore".into(), text);
                        }
                    }
                }
                if let (Some(pool), Action::Create { config, .. }) =
                    (desired.guest_pools.get(&d.vmid), &mut c)
                {
                    config.insert("pool".into(), pool.clone());
                }
                actions.push(c);
            }
            Some(g) if !is_ours(g, lab) => actions.extend(adopt_actions(d, g, lab)?),
            Some(g) => actions.extend(guest_actions(d, g, lab)),
        }
    }
    crate::engine::guest_pools::merge(desired, observed, &mut actions);

    if desired.proxmox.root_password.is_none() {
        check_root_only(desired, &actions)?;
    }
    // Proxmox cannot remove a template's base disk while linked clones use it.
    for a in &actions {
        let Action::Replace { vmid, reasons, .. } = a else {
            continue;
        };
        let Some(t) = desired
            .guests
            .iter()
            .find(|g| g.vmid == *vmid && g.is_template)
        else {
            continue;
        };
        let clones: Vec<String> = desired
            .guests
            .iter()
            .filter(|g| {
                g.boot
                    == Some(BootSource::Clone {
                        template: *vmid,
                        full: false,
                    })
                    && by_vmid.contains_key(&g.vmid)
            })
            .map(|g| format!("{} \"{}\"", g.vmid, g.name))
            .collect();
        if !clones.is_empty() {
            return Err(PlanError::TemplateInUse {
                vmid: *vmid,
                name: t.name.clone(),
                reason: reasons.join("; "),
                clones: clones.join(", "),
            });
        }
    }

    let want: BTreeSet<u32> = desired.guests.iter().map(|g| g.vmid).collect();
    for g in &observed.guests {
        if !want.contains(&g.vmid) && is_ours(g, lab) && g.config.is_some() {
            actions.push(Action::Delete {
                vmid: g.vmid,
                name: g.name.clone().unwrap_or_default(),
                node: g.node.clone(),
                kind: g.kind,
            });
        }
    }
    Ok(Plan {
        actions,
        summary: Summary::default(),
    }
    .finish())
}

/// Add the backup-job actions to a guest plan (see [`crate::engine::backups::diff`]).
pub fn plan_backups(
    desired: &Desired,
    jobs: &[crate::engine::backups::ObservedBackupJob],
    mut plan: Plan,
) -> Result<Plan, PlanError> {
    let replaced: BTreeSet<u32> = plan
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Replace { vmid, .. } => Some(*vmid),
            _ => None,
        })
        .collect();
    plan.actions.extend(crate::engine::backups::diff(
        &desired.backups,
        jobs,
        &desired.lab,
        &replaced,
    )?);
    Ok(plan.finish())
}

/// Add the SDN actions to a guest plan (see [`crate::engine::sdn::diff`]); nothing when `sdn:` is
/// not declared.
pub fn plan_sdn(
    desired: &Desired,
    sdn: &crate::engine::sdn::ObservedSdn,
    observed: &Observed,
    mut plan: Plan,
) -> Result<Plan, crate::engine::sdn::SdnPlanError> {
    let Some(want) = &desired.sdn else {
        return Ok(plan);
    };
    let actions =
        crate::engine::sdn::diff(&desired.lab, &desired.guests, want, sdn, observed, &plan)?;
    // Shown (and applied) before the guests, whose bridges they provide.
    let at = plan
        .actions
        .iter()
        .position(|a| {
            matches!(
                a,
                Action::Create { .. }
                    | Action::Replace { .. }
                    | Action::Update { .. }
                    | Action::Start { .. }
                    | Action::Delete { .. }
            )
        })
        .unwrap_or(plan.actions.len());
    plan.actions.splice(at..at, actions);
    Ok(plan.finish())
}
