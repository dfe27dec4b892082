//! Guest creation (`POST /nodes/{node}/qemu|lxc`), power-on/off primitives.

use super::*;

// ----------------------------------------------------------------------------- create

pub(super) const CREATE_ONLY: &[&str] = &[
    "node",
    "vmid",
    "start",
    "pool",
    "storage",
    "archive",
    "force",
    "unique",
    "live-restore",
    "import-working-storage",
    "bwlimit",
    "ostemplate",
    "password",
    "ssh-public-keys",
    "restore",
    "ignore-unpack-errors",
];

pub(super) async fn create(sim: &Sim, caller: &Caller, kind: Kind, p: Params) -> ApiResult<Reply> {
    // A restore is a create from the archive's configuration (see vzdump.rs).
    let mut p = p;
    // Permissions are checked over the parameters the caller sent, not over what a restore
    // takes from the archive (qemu-server `create_vm` runs `$check_vm_modify_config_perm`
    // over `keys %$param`; pve-container `create_vm` passes `$param` to
    // `check_ct_modify_config_perm`).
    let sent = p.clone();
    let restored = crate::pve::vzdump::restore_params(&sim.state(), kind, &mut p)?;
    let node = req(&p, "node")?.to_string();
    let vmid = vmid_of(&p, "vmid")?;
    if let Some(k) = p.get("sshkeys") {
        validate_ssh_keys(&crate::pve::schema::percent_decode(k))?;
    }
    if let Some(k) = p.get("ssh-public-keys") {
        validate_ssh_keys(k)?;
    }
    {
        let st = sim.state();
        check_node(&st, &node)?;
        if let Some(g) = st.guests.get(&vmid) {
            return Err(ApiError::fail(match kind {
                Kind::Qemu => format!(
                    "unable to create VM {vmid} - VM {vmid} already exists on node '{}'",
                    g.node
                ),
                Kind::Lxc => format!("CT {vmid} already exists on node '{}'", g.node),
            }));
        }
        if let Some(pool) = p.get("pool")
            && !st.pools.contains_key(pool)
        {
            return Err(ApiError::fail(format!("pool '{pool}' does not exist")));
        }
        let settings: BTreeMap<String, String> = sent
            .iter()
            .filter(|(k, _)| !CREATE_ONLY.contains(&k.as_str()) && *k != "unprivileged")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if kind == Kind::Lxc {
            // pve-container checks config permissions before it looks at the template.
            crate::pve::perms::lxc_config(&st, caller, vmid, &settings, &[])?;
            crate::pve::perms::bridges(&st, caller, &settings)?;
            if let Some(f) = p.get("features") {
                check_features_perm(caller, None, Some(f), flag(&p, "unprivileged", true))?;
            }
            if p.keys().any(|k| hardware::is_dev_key(k)) {
                hardware::check_dev_perm(caller)?;
            }
            let tmpl = req(&p, "ostemplate")?;
            if volume_size(&st, &node, tmpl).is_none() {
                return Err(ApiError::fail(format!("volume '{tmpl}' does not exist")));
            }
        }
        if kind == Kind::Qemu {
            // qemu-server create_vm: `$check_vm_modify_config_perm` over the settings
            // (storage access was checked with VM.Allocate, see auth::handler_checks).
            crate::pve::perms::qemu_config(&st, caller, vmid, settings.keys().map(String::as_str))?;
            // ... then check_bridge_access over the new config's netN.
            crate::pve::perms::bridges(&st, caller, &settings)?;
        }
        if kind == Kind::Qemu {
            for (k, v) in p.iter().filter(|(k, _)| hardware::is_hostpci_key(k)) {
                hardware::check_hostpci_perm(&st, caller, vmid, k, v)?;
            }
        }
    }
    for (k, v) in &p {
        if is_disk_key(k) && v.contains("import-from=") {
            let (file, _) = split_prop(v, "file");
            if !is_new_disk_spec(&file).is_some_and(|(_, n)| n == 0.0) {
                return Err(ApiError::param(
                    k,
                    "'import-from' requires special syntax - use <storage ID>:0,import-from=<source>",
                ));
            }
        }
    }
    let guard = sim.lock_guest(kind, vmid).await?;
    {
        let mut st = sim.state();
        if st.guests.contains_key(&vmid) {
            return Err(ApiError::fail(format!(
                "unable to create VM {vmid} - VM {vmid} already exists on node '{node}'"
            )));
        }
        st.guests
            .insert(vmid, Guest::reserved(vmid, node.clone(), kind, "create"));
    }
    let ty = match (kind, restored.is_some()) {
        (Kind::Qemu, false) => "qmcreate",
        (Kind::Qemu, true) => "qmrestore",
        (Kind::Lxc, false) => "vzcreate",
        (Kind::Lxc, true) => "vzrestore",
    };
    let upid = sim.spawn_task_cleanup(
        &node.clone(),
        ty,
        &vmid.to_string(),
        &caller.authid,
        Some(guard),
        move |ctx| async move {
            let sim = ctx.sim.clone();
            if let Some(a) = &restored {
                ctx.log(format!("restoring '{a}' now.."));
            }
            let outcome = build_new_config(&ctx, kind, &node, vmid, &p);
            if let (Ok(()), Some(a)) = (&outcome, &restored) {
                crate::pve::vzdump::restore_data(&mut sim.state(), &node, vmid, a);
            }
            match outcome {
                Err(e) => {
                    let mut st = sim.state();
                    st.guests.remove(&vmid);
                    Err(match kind {
                        Kind::Qemu => format!("unable to create VM {vmid} - {e}"),
                        Kind::Lxc => format!("unable to create CT {vmid} - {e}"),
                    })
                }
                Ok(()) => {
                    if flag(&p, "start", false) {
                        let g = sim.state().guests.get(&vmid).cloned();
                        if let Some(g) = g {
                            ctx.log("Execute autostart");
                            if let Err(e) = claim_pci(&sim, &g) {
                                ctx.warn(e);
                            } else if let Err(e) = power_on(&sim, g) {
                                ctx.warn(format!("unable to start {} {vmid}: {e}", kind.label()));
                            }
                        }
                    }
                    Ok(())
                }
            }
        },
        move |sim| {
            sim.state().guests.remove(&vmid);
        },
    );
    Ok(json!(upid).into())
}

pub(super) fn build_new_config(
    ctx: &TaskCtx,
    kind: Kind,
    node: &str,
    vmid: u32,
    p: &Params,
) -> Result<(), String> {
    let sim = &ctx.sim;
    let mut st = sim.state();
    let mut allocated = Vec::new();
    let mut cfg = BTreeMap::new();
    let result = (|| -> Result<(), String> {
        for (k, v) in p {
            if CREATE_ONLY.contains(&k.as_str()) {
                continue;
            }
            let v = if is_disk_key(k) {
                process_disk(
                    sim,
                    &mut st,
                    node,
                    vmid,
                    kind,
                    k,
                    v,
                    Some(ctx),
                    &mut allocated,
                )?
            } else if k.starts_with("net") && kind == Kind::Qemu {
                normalize_qemu_net(v, None)
            } else if k.starts_with("net") {
                normalize_lxc_net(v, None)
            } else if k == "cipassword" {
                hash_cipassword(v)
            } else if k == "tags" {
                normalize_tags(v)
            } else if kind == Kind::Lxc && hardware::is_dev_key(k) {
                hardware::check_dev_exists(&st, node, v)?;
                v.clone()
            } else {
                v.clone()
            };
            cfg.insert(k.clone(), v);
        }
        match kind {
            Kind::Qemu => {
                cfg.entry("meta".into())
                    .or_insert_with(|| format!("creation-qemu=10.1.2,ctime={}", now()));
                cfg.entry("smbios1".into())
                    .or_insert_with(|| format!("uuid={}", uuid()));
                cfg.entry("vmgenid".into()).or_insert_with(uuid);
                if !cfg.contains_key("boot") {
                    let mut order: Vec<String> = Vec::new();
                    let disk = cfg
                        .iter()
                        .find(|(k, v)| {
                            is_disk_key(k)
                                && !k.starts_with("unused")
                                && !matches!(k.as_str(), "efidisk0" | "tpmstate0")
                                && !v.contains("media=cdrom")
                        })
                        .map(|(k, _)| k.clone());
                    order.extend(disk);
                    order.extend(
                        cfg.iter()
                            .filter(|(k, v)| {
                                is_disk_key(k)
                                    && v.contains("media=cdrom")
                                    && !v.contains("cloudinit")
                            })
                            .map(|(k, _)| k.clone()),
                    );
                    order.extend(cfg.keys().filter(|k| k.starts_with("net")).cloned());
                    if !order.is_empty() {
                        cfg.insert("boot".into(), format!("order={}", order.join(";")));
                    }
                }
            }
            Kind::Lxc => {
                let tmpl = p.get("ostemplate").cloned().unwrap_or_default();
                if !cfg.contains_key("rootfs") {
                    let storage = p.get("storage").map(String::as_str).unwrap_or("local");
                    let v = process_disk(
                        sim,
                        &mut st,
                        node,
                        vmid,
                        kind,
                        "rootfs",
                        &format!("{storage}:4"),
                        Some(ctx),
                        &mut allocated,
                    )?;
                    cfg.insert("rootfs".into(), v);
                }
                cfg.entry("arch".into()).or_insert_with(|| "amd64".into());
                cfg.entry("hostname".into())
                    .or_insert_with(|| format!("CT{vmid}"));
                cfg.entry("memory".into()).or_insert_with(|| "512".into());
                cfg.entry("swap".into()).or_insert_with(|| "512".into());
                cfg.entry("unprivileged".into())
                    .or_insert_with(|| "1".into());
                let name = tmpl.rsplit('/').next().unwrap_or("");
                let os = [
                    "debian",
                    "ubuntu",
                    "alpine",
                    "centos",
                    "fedora",
                    "archlinux",
                    "rockylinux",
                    "almalinux",
                    "opensuse",
                    "devuan",
                    "gentoo",
                    "nixos",
                ]
                .into_iter()
                .find(|o| name.starts_with(o))
                .unwrap_or("unmanaged");
                cfg.entry("ostype".into()).or_insert_with(|| os.into());
                ctx.log(format!("extracting archive '{tmpl}'"));
                ctx.log(format!(
                    "Total bytes read: {}",
                    140_000_000 + u64::from(vmid)
                ));
                ctx.log("Detected container architecture: amd64".to_string());
            }
        }
        let g = st
            .guests
            .get_mut(&vmid)
            .ok_or_else(|| "guest vanished during create".to_string())?;
        g.config = cfg.clone();
        if let Some(pool) = p.get("pool") {
            st.pools.entry(pool.clone()).or_default().vms.insert(vmid);
        }
        Ok(())
    })();
    if result.is_err() {
        remove_volumes(&mut st, &allocated, node);
    }
    result
}

/// What a QEMU start does before QEMU runs: resolve and reserve the `hostpciN` devices of
/// the config it will run (pending changes applied). The error is the task's exit status.
pub(super) fn claim_pci(sim: &Sim, g: &Guest) -> Result<(), String> {
    if g.kind != Kind::Qemu {
        return Ok(());
    }
    let st = sim.state();
    let cfg = g.effective();
    // The cloud-init drive is regenerated first (qemu-server `vm_start_nolock`).
    check_cicustom(&st, &g.node, &cfg)?;
    if !cfg.keys().any(|k| hardware::is_hostpci_key(k)) {
        return Ok(());
    }
    hardware::claim_for_start(&st, &g.node, g.vmid, &cfg).map(|_| ())
}

/// qemu-server `Cloudinit.pm`: a VM with a cloud-init drive reads its `cicustom` snippets
/// (network, user, meta, vendor) whenever the drive is generated, i.e. at every start.
pub(super) fn check_cicustom(
    st: &State,
    node: &str,
    cfg: &BTreeMap<String, String>,
) -> Result<(), String> {
    let has_drive = cfg
        .iter()
        .any(|(k, v)| is_disk_key(k) && v.contains("cloudinit"));
    let Some(custom) = cfg.get("cicustom").filter(|_| has_drive) else {
        return Ok(());
    };
    let parts: BTreeMap<&str, &str> = custom
        .split(',')
        .filter_map(|p| p.split_once('='))
        .collect();
    for key in ["network", "user", "meta", "vendor"] {
        let Some(volid) = parts.get(key) else {
            continue;
        };
        let (sid, name) = volid
            .split_once(':')
            .ok_or_else(|| format!("unable to parse volume ID '{volid}'"))?;
        if !st.storages.contains_key(sid) {
            return Err(format!("storage '{sid}' does not exist"));
        }
        if !name.starts_with("snippets/") {
            return Err(format!("{volid} is not in the snippets directory"));
        }
        let present = [node, "shared"]
            .iter()
            .any(|n| st.volumes.contains_key(&format!("{n}/{volid}")));
        if !present {
            return Err(format!("can't find file '{volid}'"));
        }
    }
    Ok(())
}

/// Mark a guest running and tell the runtime; undo on failure.
pub(super) fn power_on(sim: &Sim, mut g: Guest) -> Result<(), String> {
    {
        let mut st = sim.state();
        let cur = st
            .guests
            .get_mut(&g.vmid)
            .ok_or_else(|| format!("{} {} vanished", g.kind.label(), g.vmid))?;
        cur.apply_pending();
        cur.running = true;
        cur.started_at = Some(now());
        g = cur.clone();
    }
    if let Err(e) = sim.guest_started(&g) {
        let mut st = sim.state();
        if let Some(cur) = st.guests.get_mut(&g.vmid) {
            cur.running = false;
            cur.started_at = None;
        }
        return Err(e);
    }
    Ok(())
}

pub(super) fn power_off(sim: &Sim, node: &str, vmid: u32) {
    {
        let mut st = sim.state();
        if let Some(g) = st.guests.get_mut(&vmid) {
            g.running = false;
            g.started_at = None;
        }
    }
    sim.guest_stopped(node, vmid);
}
