//! Clone and template conversion (QEMU and LXC).

use super::*;

// ----------------------------------------------------------------------------- clone, template, resize

pub(super) async fn clone(sim: &Sim, caller: &Caller, p: &Params) -> ApiResult<Reply> {
    let node = req(p, "node")?.to_string();
    let vmid = vmid_of(p, "vmid")?;
    let newid = vmid_of(p, "newid")?;
    let target = p.get("target").cloned().unwrap_or_else(|| node.clone());
    let (full, src_template) = {
        let st = sim.state();
        let g = guest(&st, Kind::Qemu, &node, vmid)?;
        check_lock(g, p)?;
        check_node(&st, &target)?;
        if st.guests.contains_key(&newid) {
            return Err(ApiError::fail(format!(
                "unable to create VM {newid}: config file already exists"
            )));
        }
        if let Some(pool) = p.get("pool")
            && !st.pools.contains_key(pool)
        {
            return Err(ApiError::fail(format!("pool '{pool}' does not exist")));
        }
        // qemu-server `check_mapping_access`: a clone repeats the source's passthrough.
        if !caller.is_root() {
            for (k, v) in g
                .effective()
                .iter()
                .filter(|(k, _)| hardware::is_hostpci_key(k))
            {
                let d = hardware::HostPci::parse(v);
                if d.host.is_some() {
                    return Err(ApiError::fail(format!(
                        "only root can set '{k}' config for non-mapped devices"
                    )));
                }
                let Some(m) = d.mapping else {
                    return Err(ApiError::fail("either 'host' or 'mapping' must be set."));
                };
                let path = format!("/mapping/pci/{m}");
                if !crate::pve::auth::privileges(&st, caller, &path).contains("Mapping.Use") {
                    return Err(ApiError::perm(&path, "Mapping.Use"));
                }
            }
        }
        // check_bridge_access over the source's config, as clone_vm does after the
        // mapping check.
        crate::pve::perms::bridges(&st, caller, &g.effective())?;
        // qemu-server clone_vm `$load_and_check`: `full` defaults to "not a template";
        // `storage` and `format` are refused for linked clones.
        let full = p.get("full").map(|f| f == "1").unwrap_or(!g.is_template());
        for opt in ["storage", "format"] {
            if !full && p.contains_key(opt) {
                return Err(ApiError::fail(format!(
                    "parameter '{opt}' not allowed for linked clones"
                )));
            }
        }
        if target != node {
            let local = g.effective().iter().any(|(k, v)| {
                is_disk_key(k)
                    && !v.contains("media=cdrom")
                    && st.storages.get(storage_of(v)).is_some_and(|s| !s.shared)
            });
            if local {
                return Err(ApiError::fail(format!(
                    "can't clone to node '{target}' (VM uses local storage)"
                )));
            }
        }
        // Then, drive by drive, the storage plugin must support the clone (pve-storage
        // `volume_has_feature`: `clone` of a base volume for a linked clone, `copy` for a
        // full one and for cloud-init and TPM state): "Linked clone feature is not
        // supported for '<volid>' (scsi0)" on thick LVM, or for a VM that is no template.
        for (k, v) in g.effective() {
            if !is_disk_key(&k) || k.starts_with("unused") {
                continue;
            }
            let (vol, _) = split_prop(&v, "file");
            if (v.contains("media=cdrom") && !vol.contains("cloudinit")) || vol == "none" {
                continue;
            }
            let cloudinit = vol.contains("cloudinit");
            let copy = full || cloudinit || k == "tpmstate0";
            let Some((sid, volname)) = vol.split_once(':') else {
                continue;
            };
            let ty = st.storages.get(sid).map(|s| s.ty.as_str()).unwrap_or("");
            let feature = if copy {
                crate::pve::plugins::Feature::Copy
            } else {
                crate::pve::plugins::Feature::Clone
            };
            if !crate::pve::plugins::volume_has_feature(
                ty,
                feature,
                crate::pve::plugins::state_of(volname),
                crate::pve::plugins::format_of(volname),
            ) {
                return Err(ApiError::fail(format!(
                    "{} clone feature is not supported for '{vol}' ({k})",
                    if copy { "Full" } else { "Linked" }
                )));
            }
        }
        (full, g.is_template())
    };
    let guard = sim.lock_guest(Kind::Qemu, vmid).await?;
    {
        let mut st = sim.state();
        if st.guests.contains_key(&newid) {
            return Err(ApiError::fail(format!(
                "unable to create VM {newid}: config file already exists"
            )));
        }
        st.guests.insert(
            newid,
            Guest::reserved(newid, target.clone(), Kind::Qemu, "clone"),
        );
        if !src_template && let Some(g) = st.guests.get_mut(&vmid) {
            g.config.insert("lock".into(), "clone".into());
        }
    }
    let p = p.clone();
    let upid = sim.spawn_task_cleanup(
        &node.clone(),
        "qmclone",
        &vmid.to_string(),
        &caller.authid,
        Some(guard),
        move |ctx| async move {
            let sim = ctx.sim.clone();
            let mut st = sim.state();
            let mut allocated = Vec::new();
            let result = (|| -> Result<(), String> {
                let src = st
                    .guests
                    .get(&vmid)
                    .cloned()
                    .ok_or_else(|| format!("VM {vmid} vanished"))?;
                let mut cfg = src.effective();
                cfg.remove("lock");
                cfg.remove("template");
                let src_name = src.name();
                cfg.insert(
                    "name".into(),
                    p.get("name")
                        .cloned()
                        .unwrap_or_else(|| format!("Copy-of-VM-{src_name}")),
                );
                if let Some(d) = p.get("description") {
                    cfg.insert("description".into(), d.clone());
                }
                cfg.insert("smbios1".into(), format!("uuid={}", uuid()));
                if cfg.contains_key("vmgenid") {
                    cfg.insert("vmgenid".into(), uuid());
                }
                cfg.insert(
                    "meta".into(),
                    format!("creation-qemu=10.1.2,ctime={}", now()),
                );
                let keys: Vec<String> = cfg.keys().cloned().collect();
                for k in keys {
                    let v = cfg[&k].clone();
                    if k.starts_with("net") {
                        let (_, opts) = split_prop(&v, "model");
                        let model = v
                            .split(',')
                            .next()
                            .and_then(|m| m.split_once('='))
                            .map(|(m, _)| m.to_string())
                            .unwrap_or_else(|| "virtio".into());
                        let opts: BTreeMap<String, String> = opts
                            .into_iter()
                            .filter(|(o, _)| !NET_MODELS.contains(&o.as_str()))
                            .collect();
                        cfg.insert(
                            k.clone(),
                            join_prop(&format!("{model}={}", gen_mac()), &opts),
                        );
                        continue;
                    }
                    if k.starts_with("unused") {
                        cfg.remove(&k);
                        continue;
                    }
                    if !is_disk_key(&k) || (v.contains("media=cdrom") && !v.contains("cloudinit")) {
                        continue;
                    }
                    let (vol, mut opts) = split_prop(&v, "file");
                    let storage = storage_of(&vol).to_string();
                    if vol.contains("cloudinit") {
                        let id = alloc_image(
                            &sim,
                            &mut st,
                            &target,
                            &storage,
                            newid,
                            4 << 20,
                            Some(format!("vm-{newid}-cloudinit")),
                            "images",
                        )?;
                        allocated.push(id.clone());
                        cfg.insert(k.clone(), join_prop(&id, &opts));
                        continue;
                    }
                    let size = volume_size(&st, &node, &vol)
                        .ok_or_else(|| format!("volume '{vol}' does not exist"))?;
                    let (id, how) = if full {
                        let tstorage = p.get("storage").cloned().unwrap_or(storage.clone());
                        (
                            alloc_image(
                                &sim, &mut st, &target, &tstorage, newid, size, None, "images",
                            )?,
                            "full",
                        )
                    } else {
                        let base = vol.split(':').nth(1).unwrap_or("").to_string();
                        // The clone's volume name depends on the plugin (pve-storage
                        // `clone_image`): directory storages chain qcow2 files under
                        // `<base>/<vmid>/`, ZFS and RBD prefix the base, LVM-thin names
                        // the thin snapshot like any disk.
                        let cfg_ty = st.storages.get(&storage).map(|c| c.ty.clone());
                        let file_based = st.storages.get(&storage).is_some_and(|c| c.file_based());
                        let name_of = |n: &str| match cfg_ty.as_deref() {
                            _ if file_based => format!("{storage}:{base}/{newid}/{n}.qcow2"),
                            Some("zfspool" | "rbd") => format!("{storage}:{base}/{n}"),
                            _ => format!("{storage}:{n}"),
                        };
                        let taken = |id: &str| {
                            let short = id.rsplit(['/', ':']).next().unwrap_or("");
                            let short = short.trim_end_matches(".qcow2");
                            st.volumes.keys().any(|k| {
                                k.starts_with(&format!("{target}/{storage}:"))
                                    && k.rsplit(['/', ':'])
                                        .next()
                                        .is_some_and(|l| l.trim_end_matches(".qcow2") == short)
                            })
                        };
                        let id = (0..)
                            .map(|i| name_of(&format!("vm-{newid}-disk-{i}")))
                            .find(|id| !taken(id))
                            .unwrap_or_default();
                        st.volumes.insert(
                            format!("{target}/{id}"),
                            Volume {
                                volid: id.clone(),
                                node: target.clone(),
                                storage: storage.clone(),
                                content: "images".into(),
                                format: "raw".into(),
                                size,
                                vmid: Some(newid),
                                ctime: now(),
                                sha256: None,
                            },
                        );
                        (id, "linked")
                    };
                    allocated.push(id.clone());
                    ctx.log(format!("create {how} clone of drive {k} ({vol})"));
                    opts.insert("size".into(), fmt_size(size));
                    cfg.insert(k.clone(), join_prop(&id, &opts));
                }
                let g = st
                    .guests
                    .get_mut(&newid)
                    .ok_or_else(|| format!("VM {newid} vanished"))?;
                g.config = cfg;
                if let Some(pool) = p.get("pool") {
                    st.pools.entry(pool.clone()).or_default().vms.insert(newid);
                }
                Ok(())
            })();
            if let Some(g) = st.guests.get_mut(&vmid)
                && g.lock() == Some("clone")
            {
                g.config.remove("lock");
            }
            if let Err(e) = result {
                st.guests.remove(&newid);
                remove_volumes(&mut st, &allocated, &target);
                return Err(format!("clone failed: {e}"));
            }
            Ok(())
        },
        move |sim| {
            let mut st = sim.state();
            st.guests.remove(&newid);
            if let Some(g) = st.guests.get_mut(&vmid)
                && g.lock() == Some("clone")
            {
                g.config.remove("lock");
            }
        },
    );
    Ok(json!(upid).into())
}

pub(super) async fn template(sim: &Sim, caller: &Caller, p: &Params) -> ApiResult<Reply> {
    let node = req(p, "node")?.to_string();
    let vmid = vmid_of(p, "vmid")?;
    check_convertible(
        sim,
        Kind::Qemu,
        &node,
        vmid,
        p,
        "you can't convert a VM to template if VM is running",
    )?;
    let only = p.get("disk").cloned();
    guest_task(
        sim,
        caller,
        Kind::Qemu,
        &node.clone(),
        vmid,
        "template",
        move |ctx| async move {
            let mut st = ctx.sim.state();
            let mut g = guest_mut(&mut st, Kind::Qemu, &node, vmid)?.clone();
            let keys: Vec<String> = g.config.keys().cloned().collect();
            for k in keys {
                let v = g.config[&k].clone();
                if !is_disk_key(&k)
                    || k.starts_with("unused")
                    || v.contains("media=cdrom")
                    || only.as_ref().is_some_and(|o| *o != k)
                {
                    continue;
                }
                let (vol, opts) = split_prop(&v, "file");
                // qemu-server template_create: a volume whose plugin has no `template`
                // feature (thick LVM) is skipped silently and stays a plain volume.
                let (sid, volname) = vol.split_once(':').unwrap_or(("", ""));
                let ty = st
                    .storages
                    .get(sid)
                    .map(|s| s.ty.clone())
                    .unwrap_or_default();
                if !crate::pve::plugins::volume_has_feature(
                    &ty,
                    crate::pve::plugins::Feature::Template,
                    crate::pve::plugins::state_of(volname),
                    crate::pve::plugins::format_of(volname),
                ) {
                    continue;
                }
                let newvol =
                    vol.replace(&format!("vm-{vmid}-disk-"), &format!("base-{vmid}-disk-"));
                if newvol != vol
                    && let Some(mut volume) = st.volumes.remove(&format!("{node}/{vol}"))
                {
                    volume.volid = newvol.clone();
                    st.volumes.insert(format!("{node}/{newvol}"), volume);
                    ctx.log(format!(
                        "  Renamed \"{}\" to \"{}\"",
                        vol.split(':').nth(1).unwrap_or(""),
                        newvol.split(':').nth(1).unwrap_or("")
                    ));
                }
                g.config.insert(k, join_prop(&newvol, &opts));
            }
            g.config.insert("template".into(), "1".into());
            st.guests.insert(vmid, g);
            Ok(())
        },
    )
    .await
}

/// A guest converts to a template only when unlocked, stopped and not one already.
pub(super) fn check_convertible(
    sim: &Sim,
    kind: Kind,
    node: &str,
    vmid: u32,
    p: &Params,
    running: &'static str,
) -> ApiResult<()> {
    let st = sim.state();
    let g = guest(&st, kind, node, vmid)?;
    check_lock(g, p)?;
    if g.is_template() {
        return Err(ApiError::fail("you can't convert a template to a template"));
    }
    if g.running {
        return Err(ApiError::fail(running));
    }
    Ok(())
}

/// LXC template: the worker runs, but the call answers `null`, not the UPID (a PVE quirk:
/// clients poll the config or the task list).
pub(super) async fn lxc_template(sim: &Sim, caller: &Caller, p: &Params) -> ApiResult<Reply> {
    let node = req(p, "node")?.to_string();
    let vmid = vmid_of(p, "vmid")?;
    check_convertible(
        sim,
        Kind::Lxc,
        &node,
        vmid,
        p,
        "you can't convert a CT to template if the CT is running",
    )?;
    let guard = sim.lock_guest(Kind::Lxc, vmid).await?;
    sim.spawn_task(
        &node.clone(),
        "vztemplate",
        &vmid.to_string(),
        &caller.authid,
        Some(guard),
        move |ctx| async move {
            let mut st = ctx.sim.state();
            let mut g = guest_mut(&mut st, Kind::Lxc, &node, vmid)?.clone();
            let keys: Vec<String> = g
                .config
                .keys()
                .filter(|k| is_disk_key(k) && !k.starts_with("unused"))
                .cloned()
                .collect();
            // pve-container PVE/LXC.pm template_create: every volume's plugin must have
            // the `template` feature before any is converted.
            for k in &keys {
                let (vol, _) = split_prop(&g.config[k], "volume");
                let (sid, volname) = vol.split_once(':').unwrap_or(("", ""));
                let ty = st.storages.get(sid).map(|s| s.ty.as_str()).unwrap_or("");
                if !crate::pve::plugins::volume_has_feature(
                    ty,
                    crate::pve::plugins::Feature::Template,
                    crate::pve::plugins::state_of(volname),
                    crate::pve::plugins::format_of(volname),
                ) {
                    return Err(format!("Template feature is not available for '{vol}'"));
                }
            }
            for k in keys {
                let (vol, opts) = split_prop(&g.config[&k], "volume");
                let newvol =
                    vol.replace(&format!("vm-{vmid}-disk-"), &format!("base-{vmid}-disk-"));
                if newvol != vol
                    && let Some(mut volume) = st.volumes.remove(&format!("{node}/{vol}"))
                {
                    volume.volid = newvol.clone();
                    st.volumes.insert(format!("{node}/{newvol}"), volume);
                }
                g.config.insert(k, join_prop(&newvol, &opts));
            }
            g.config.insert("template".into(), "1".into());
            st.guests.insert(vmid, g);
            Ok(())
        },
    );
    Ok(Value::Null.into())
}
