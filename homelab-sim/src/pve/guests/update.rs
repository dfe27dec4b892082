//! Config update (`POST`/`PUT .../config`): pending changes, hotplug, digest.

use super::*;

// ----------------------------------------------------------------------------- config update

pub(super) fn hotpluggable(kind: Kind, key: &str, cfg: &BTreeMap<String, String>) -> bool {
    const FAST: &[&str] = &[
        "name",
        "hostname",
        "description",
        "onboot",
        "protection",
        "tags",
        "startup",
        "hookscript",
        "lock",
    ];
    if FAST.contains(&key) {
        return true;
    }
    let base = key.trim_end_matches(|c: char| c.is_ascii_digit());
    match kind {
        Kind::Lxc => matches!(
            base,
            "net"
                | "memory"
                | "swap"
                | "cores"
                | "cpulimit"
                | "cpuunits"
                | "nameserver"
                | "searchdomain"
        ),
        Kind::Qemu => {
            let hotplug = cfg
                .get("hotplug")
                .map(String::as_str)
                .unwrap_or("network,disk,usb");
            let has = |f: &str| hotplug == "1" || hotplug.split(',').any(|h| h == f);
            match base {
                "net" => has("network"),
                "scsi" | "virtio" => has("disk"),
                "usb" => has("usb"),
                "vcpus" => has("cpu"),
                "memory" => has("memory") && cfg.get("numa").is_some_and(|n| n == "1"),
                "balloon" => true,
                _ => false,
            }
        }
    }
}

pub(super) const UPDATE_META: &[&str] = &[
    "node",
    "vmid",
    "digest",
    "delete",
    "revert",
    "skiplock",
    "force",
    "background_delay",
];

pub(super) async fn update(
    sim: &Sim,
    caller: &Caller,
    kind: Kind,
    p: Params,
    asynchronous: bool,
) -> ApiResult<Reply> {
    check_skiplock(caller, &p)?;
    let node = req(&p, "node")?.to_string();
    let vmid = vmid_of(&p, "vmid")?;
    let sets: BTreeMap<String, String> = p
        .iter()
        .filter(|(k, _)| !UPDATE_META.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let deletes: Vec<String> = p
        .get("delete")
        .map(|d| {
            crate::pve::formats::split_list(d)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let reverts: Vec<String> = p
        .get("revert")
        .map(|d| {
            crate::pve::formats::split_list(d)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if sets.is_empty() && deletes.is_empty() && reverts.is_empty() {
        return Err(ApiError::fail("no options specified"));
    }
    if let Some(k) = sets.get("sshkeys") {
        validate_ssh_keys(&crate::pve::schema::percent_decode(k))?;
    }
    for k in &deletes {
        if sets.contains_key(k) {
            return Err(ApiError::param(
                "delete",
                format!("you can't use '-{k}' and -delete {k}' at the same time"),
            ));
        }
    }
    {
        // Per-option permissions before the config is locked: qemu-server
        // `$update_vm_api` checks the deleted options, then the set ones
        // (`$check_vm_modify_config_perm`), then new disks' storages
        // (`$check_storage_access`); pve-container `update_pct_config` runs
        // `check_ct_modify_config_perm` over both.
        let st = sim.state();
        match kind {
            Kind::Qemu => {
                crate::pve::perms::qemu_config(
                    &st,
                    caller,
                    vmid,
                    deletes.iter().map(String::as_str),
                )?;
                crate::pve::perms::qemu_config(&st, caller, vmid, sets.keys().map(String::as_str))?;
                crate::pve::perms::qemu_new_disks(&st, caller, &sets)?;
                crate::pve::perms::bridges(&st, caller, &sets)?;
            }
            Kind::Lxc => {
                crate::pve::perms::lxc_config(&st, caller, vmid, &sets, &deletes)?;
                crate::pve::perms::bridges(&st, caller, &sets)?;
            }
        }
    }
    let guard = sim.lock_guest(kind, vmid).await?;
    {
        let st = sim.state();
        let g = guest(&st, kind, &node, vmid)?;
        let cur = g.effective();
        match kind {
            Kind::Lxc => {
                let unprivileged = cur.get("unprivileged").is_some_and(|u| u == "1");
                if sets.contains_key("features") || deletes.iter().any(|d| d == "features") {
                    check_features_perm(
                        caller,
                        cur.get("features").map(String::as_str),
                        sets.get("features").map(String::as_str),
                        unprivileged,
                    )?;
                }
                let dev_keys: Vec<&String> = sets
                    .keys()
                    .chain(deletes.iter())
                    .filter(|k| hardware::is_dev_key(k))
                    .collect();
                if !dev_keys.is_empty() {
                    hardware::check_dev_perm(caller)?;
                }
                for v in sets
                    .iter()
                    .filter(|(k, _)| hardware::is_dev_key(k))
                    .map(|(_, v)| v)
                {
                    hardware::check_dev_exists(&st, &node, v).map_err(ApiError::fail)?;
                }
            }
            Kind::Qemu => {
                // qemu-server checks the value being replaced or removed too, so a token
                // cannot drop a raw device root@pam attached.
                for (k, v) in sets.iter().filter(|(k, _)| hardware::is_hostpci_key(k)) {
                    if let Some(old) = cur.get(k) {
                        hardware::check_hostpci_perm(&st, caller, vmid, k, old)?;
                    }
                    hardware::check_hostpci_perm(&st, caller, vmid, k, v)?;
                }
                for k in deletes.iter().filter(|k| hardware::is_hostpci_key(k)) {
                    if let Some(old) = cur.get(k) {
                        hardware::check_hostpci_perm(&st, caller, vmid, k, old)?;
                    }
                }
            }
        }
    }
    let precheck = |sim: &Sim| -> ApiResult<()> {
        let st = sim.state();
        let g = guest(&st, kind, &node, vmid)?;
        if let Some(d) = p.get("digest")
            && *d != g.digest()
        {
            return Err(ApiError::fail(match kind {
                Kind::Qemu => "checksum mismatch (file change by other user?)",
                Kind::Lxc => {
                    "detected modified configuration - file changed by other user? Try again."
                }
            }));
        }
        check_lock(g, &p)
    };
    precheck(sim)?;
    let force = flag(&p, "force", false);
    if !asynchronous {
        apply_update(
            sim, kind, &node, vmid, &sets, &deletes, &reverts, force, None,
        )
        .map_err(ApiError::fail)?;
        drop(guard);
        sim.persist();
        return Ok(Value::Null.into());
    }
    let delay: u64 = p
        .get("background_delay")
        .and_then(|d| d.parse().ok())
        .unwrap_or(0);
    let node2 = node.clone();
    let upid = sim.spawn_task(
        &node.clone(),
        "qmconfig",
        &vmid.to_string(),
        &caller.authid,
        Some(guard),
        move |ctx| async move {
            apply_update(
                &ctx.sim,
                kind,
                &node2,
                vmid,
                &sets,
                &deletes,
                &reverts,
                force,
                Some(&ctx),
            )
        },
    );
    match sim.wait_task(&upid, delay).await {
        Some(e) if e == "OK" || e.starts_with("WARNINGS: ") => return Ok(Value::Null.into()),
        Some(e) => return Err(ApiError::fail(format!("failed to update VM {vmid}: {e}"))),
        None => {}
    }
    Ok(json!(upid).into())
}

#[allow(clippy::too_many_arguments)]
pub(super) fn apply_update(
    sim: &Sim,
    kind: Kind,
    node: &str,
    vmid: u32,
    sets: &BTreeMap<String, String>,
    deletes: &[String],
    reverts: &[String],
    force: bool,
    ctx: Option<&TaskCtx>,
) -> Result<(), String> {
    let mut st = sim.state();
    let mut g = guest_mut(&mut st, kind, node, vmid)?.clone();
    let mut allocated = Vec::new();
    let result = (|| -> Result<(), String> {
        let current = g.effective();
        for k in reverts {
            g.pending.remove(k);
            g.pending_delete.remove(k);
        }
        for k in deletes {
            if g.running && !hotpluggable(kind, k, &current) {
                g.pending.remove(k);
                if g.config.contains_key(k) {
                    g.pending_delete.insert(k.clone());
                }
                continue;
            }
            g.pending.remove(k);
            let Some(old) = g.config.remove(k) else {
                continue;
            };
            if is_disk_key(k) && !k.starts_with("unused") && !old.contains("media=cdrom") {
                let vol = old.split(',').next().unwrap_or("").to_string();
                if force {
                    st.volumes.remove(&format!("{node}/{vol}"));
                } else {
                    let slot = (0..256)
                        .map(|i| format!("unused{i}"))
                        .find(|u| !g.config.contains_key(u));
                    if let Some(slot) = slot {
                        g.config.insert(slot, vol);
                    }
                }
            } else if old.contains("cloudinit") || k.starts_with("unused") && force {
                let vol = old.split(',').next().unwrap_or("").to_string();
                st.volumes.remove(&format!("{node}/{vol}"));
            }
        }
        for (k, v) in sets {
            let old = current.get(k).cloned();
            let v = if is_disk_key(k) {
                if old.as_deref() == Some(v.as_str()) {
                    v.clone()
                } else {
                    process_disk(sim, &mut st, node, vmid, kind, k, v, ctx, &mut allocated)?
                }
            } else if k.starts_with("net") && kind == Kind::Qemu {
                normalize_qemu_net(v, old.as_deref().and_then(net_mac))
            } else if k.starts_with("net") {
                normalize_lxc_net(v, old.as_deref().and_then(net_mac))
            } else if k == "cipassword" {
                hash_cipassword(v)
            } else if k == "tags" {
                normalize_tags(v)
            } else {
                v.clone()
            };
            if g.running && !hotpluggable(kind, k, &current) {
                g.pending.insert(k.clone(), v);
            } else {
                g.config.insert(k.clone(), v);
                g.pending.remove(k);
            }
            g.pending_delete.remove(k);
        }
        Ok(())
    })();
    match result {
        Ok(()) => {
            st.guests.insert(vmid, g);
            Ok(())
        }
        Err(e) => {
            remove_volumes(&mut st, &allocated, node);
            Err(e)
        }
    }
}
