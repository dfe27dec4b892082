//! Guest steps: create, clone, resize, start, template, update, destroy.

use super::*;

/// Grow `disk` to `size` unless it is already at least that large.
pub(super) async fn grow(
    env: &Env,
    d: &DesiredGuest,
    disk: &str,
    size: crate::model::config::Size,
) -> Result<(), StepError> {
    let vm = env.pve.node(&d.node).qemu(d.vmid);
    let cfg = vm
        .config()
        .await
        .map_err(|e| StepError::new(format!("read config: {e}")))?;
    let have = cfg
        .get_str(disk)
        .and_then(|v| parse_disk(&v))
        .and_then(|p| p.size_mib)
        .map(crate::model::config::Size::from_mib);
    if have.is_some_and(|h| h >= size) {
        return Ok(());
    }
    resize(
        env,
        &guest_on(&env.pve, &d.node, d.kind, d.vmid),
        disk,
        size,
    )
    .await
}

/// Resize `disk` to `size` (whole GiB), waiting for the task when there is one.
pub(super) async fn resize(
    env: &Env,
    guest: &Guest,
    disk: &str,
    size: crate::model::config::Size,
) -> Result<(), StepError> {
    let task = guest
        .resize(&ResizeOptions::to_gib(disk, size.gib_ceil()))
        .await
        .map_err(|e| StepError::new(format!("resize {disk}: {e}")))?;
    finish(env, task, "resize").await
}

/// Clone a gold template, then give the clone its own configuration.
pub(super) async fn create_clone(
    env: &Env,
    d: &DesiredGuest,
    template: u32,
    full: bool,
) -> Result<(), StepError> {
    let storage = d.disks.get("scsi0").map(|s| s.storage.clone());
    let opts = CloneOptions {
        newid: d.vmid,
        name: Some(d.name.clone()),
        // The owner marker travels with the clone request (`clone_vm` takes `description`): a
        // clone interrupted before its configuration is set is still recognisably ours.
        description: d.props.get("description").cloned(),
        full: Some(full),
        storage: storage.filter(|_| full),
        ..CloneOptions::default()
    };
    let source = guest_on(&env.pve, &d.node, GuestKind::Qemu, template);
    let mut sent = 0;
    loop {
        sent += 1;
        match source.clone_to(&opts).await {
            Ok(task) => {
                finish(env, task, "clone").await?;
                break;
            }
            // The answer was lost: read the new VMID back before sending the clone again.
            Err(e @ proxmox_client::Error::Transport { .. }) => {
                if clone_target_done(env, d).await? {
                    tracing::warn!(error = %e, vmid = d.vmid, "the clone's answer was lost; the clone exists");
                    break;
                }
                if sent >= 3 {
                    return Err(StepError::new(format!("clone of {template}: {e}")));
                }
                tracing::warn!(error = %e, vmid = d.vmid, "the clone's answer was lost and no clone exists: sending it again");
            }
            Err(e) => return Err(StepError::new(format!("clone of {template}: {e}"))),
        }
    }
    let mut set: Vec<(String, ParamValue)> = d
        .props
        .iter()
        .map(|(k, v)| (k.clone(), ParamValue::Str(v.clone())))
        .collect();
    set.push(("tags".into(), ParamValue::Str(d.tags(&env.desired.lab))));
    let update = ConfigUpdate {
        set,
        ..ConfigUpdate::default()
    };
    let task = guest_on(&env.pve, &d.node, d.kind, d.vmid)
        .update_config(&update)
        .await
        .map_err(|e| StepError::new(format!("configure the clone: {e}")))?;
    finish(env, task, "configure").await
}

/// After a clone request whose answer was lost: whether the clone exists, waiting (up to
/// the task deadline) while it still holds `lock: clone`.
pub(super) async fn clone_target_done(env: &Env, d: &DesiredGuest) -> Result<bool, StepError> {
    let vm = env.pve.node(&d.node).qemu(d.vmid);
    let start = std::time::Instant::now();
    loop {
        match vm.config().await {
            Ok(cfg) if cfg.get_str("lock").as_deref() == Some("clone") => {}
            Ok(_) => return Ok(true),
            Err(proxmox_client::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(StepError::new(format!("read back clone {}: {e}", d.vmid))),
        }
        if start.elapsed() >= env.timeouts.task {
            return Err(StepError::new(format!(
                "clone {} still holds `lock: clone` after {}s",
                d.vmid,
                env.timeouts.task.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Create a guest from its desired configuration, then start it.
pub(super) async fn create(env: &Env, d: &DesiredGuest) -> Result<String, StepError> {
    if let Some(BootSource::Clone { template, full }) = d.boot {
        create_clone(env, d, template, full).await?;
        return finish_cloud_vm(env, d).await;
    }
    let mut params: Vec<(String, ParamValue)> = Vec::new();
    for (k, v) in &d.props {
        params.push((k.clone(), ParamValue::Str(v.clone())));
    }
    for (k, disk) in &d.disks {
        params.push((k.clone(), ParamValue::Str(disk.create_value())));
    }
    for (k, v) in &d.create_only {
        params.push((k.clone(), ParamValue::Str(v.clone())));
    }
    params.push(("tags".into(), ParamValue::Str(d.tags(&env.desired.lab))));
    // Created in its pool (qemu-server / pve-container `create_vm`: `pool`).
    if let Some(pool) = env.desired.guest_pools.get(&d.vmid) {
        params.push(("pool".into(), ParamValue::Str(pool.clone())));
    }
    // A missing guest with `restore`: the archive instead of the OS template (containers)
    // or the drives (VMs), the declared settings over the backed-up ones. The archives are
    // listed again: a backup storage may have been added by this run.
    let restoring =
        env.observed.guest(d.vmid).is_none() && env.desired.restore.contains_key(&d.vmid);
    let mut now = Observed::default();
    if restoring {
        now.backups = crate::engine::restore::list(&env.pve, std::slice::from_ref(&d.node))
            .await
            .map_err(|e| StepError::new(format!("list backups: {e}")))?;
    }
    let archive = if restoring {
        crate::engine::restore::pick(&env.desired, &now, d.vmid)
            .map_err(|e| StepError::new(e.to_string()))?
    } else {
        None
    };
    crate::engine::restore::check_creatable(&env.desired, d, archive)
        .map_err(|e| StepError::new(e.to_string()))?;
    if let Some(b) = archive {
        match d.kind {
            // pve-container `create_vm` with `restore`.
            GuestKind::Lxc => {
                params.retain(|(k, _)| k != "ostemplate");
                params.push(("ostemplate".into(), ParamValue::Str(b.volid.clone())));
                params.push(("restore".into(), ParamValue::Bool(true)));
            }
            GuestKind::Qemu => {
                let (p, resume) = crate::engine::restore::qemu_params(d, &b.volid, params);
                params = p;
                let create = GuestCreate {
                    vmid: d.vmid,
                    params,
                };
                let task = env
                    .pve
                    .node(&d.node)
                    .create_guest(d.kind.into(), &create)
                    .await
                    .map_err(|e| StepError::new(format!("restore from {}: {e}", b.volid)))?;
                finish(env, task, "restore").await?;
                // Declared NICs that differ from the archive's, set before the first start.
                let vm = env.pve.node(&d.node).qemu(d.vmid);
                let cfg = vm
                    .config()
                    .await
                    .map_err(|e| StepError::new(format!("read the restored config: {e}")))?;
                let restored: BTreeMap<String, String> = cfg
                    .values
                    .keys()
                    .filter_map(|k| Some((k.clone(), cfg.get_str(k)?)))
                    .collect();
                let fixes = crate::engine::restore::nic_fixes(d, &restored);
                if !fixes.is_empty() {
                    let update = ConfigUpdate {
                        set: fixes
                            .into_iter()
                            .map(|(k, v)| (k, ParamValue::Str(v)))
                            .collect(),
                        delete: Vec::new(),
                        digest: None,
                    };
                    let task = guest_on(&env.pve, &d.node, d.kind, d.vmid)
                        .update_config(&update)
                        .await
                        .map_err(|e| StepError::new(format!("set the declared NICs: {e}")))?;
                    finish(env, task, "update").await?;
                }
                if let Some((disk, size)) = resume {
                    grow(env, d, &disk, size).await?;
                }
                start_guest(env, d).await?;
                return Ok(format!("restored from {} and started", b.volid));
            }
        }
    }
    let create = GuestCreate {
        vmid: d.vmid,
        params,
    };
    // Device passthrough and most container features are root@pam's alone.
    let client = match (
        &env.pve_root,
        crate::engine::plan::root_only_on_create(d).is_empty(),
    ) {
        (Some(root), false) => root,
        _ => &env.pve,
    };
    super::retry::create_guest(env, client, d, &create).await?;
    if d.boot.is_some() {
        return finish_cloud_vm(env, d).await;
    }
    start_guest(env, d).await?;
    Ok("created and started".into())
}

pub(super) async fn start_guest(env: &Env, d: &DesiredGuest) -> Result<(), StepError> {
    super::retry::start(env, &d.node, d.kind, d.vmid).await
}

/// After a cloud VM exists: grow its boot disk, then start it, or convert a template.
pub(super) async fn finish_cloud_vm(env: &Env, d: &DesiredGuest) -> Result<String, StepError> {
    if let Some(size) = d.disks.get("scsi0").and_then(|s| s.size) {
        grow(env, d, "scsi0", size).await?;
    }
    if d.is_template {
        convert_to_template(env, d).await?;
        return Ok("created and converted to a template".into());
    }
    start_guest(env, d).await?;
    Ok("created and started".into())
}

pub(super) async fn convert_to_template(env: &Env, d: &DesiredGuest) -> Result<(), StepError> {
    let task = guest_on(&env.pve, &d.node, d.kind, d.vmid)
        .template(&TemplateOptions::default())
        .await
        .map_err(|e| StepError::new(format!("convert to template: {e}")))?;
    finish(env, task, "template").await
}

/// Proxmox lets only `root@pam` with a password set container features besides nesting.
pub(super) fn feature_hint(err: &proxmox_client::Error, e: StepError) -> StepError {
    if err.is_root_only() {
        e.hint("only `root@pam` logged in with a password may set container features other than `nesting`; set them once by hand or drop them from homelab.yaml")
    } else {
        e
    }
}

/// Stop (if running) and destroy a guest with its disks.
pub(super) async fn destroy(
    env: &Env,
    node: &str,
    kind: GuestKind,
    vmid: u32,
) -> Result<(), StepError> {
    let guest = guest_on(&env.pve, node, kind, vmid);
    let running = env
        .observed
        .guest(vmid)
        .is_some_and(|g| g.status == "running");
    if running {
        match guest.stop(&StopOptions::default()).await {
            Ok(task) => finish(env, task, "stop").await?,
            // Stopped meanwhile: fine.
            Err(e) if e.is_not_running() => {}
            Err(e) => return Err(StepError::new(format!("stop: {e}"))),
        }
    }
    // The placeholder of an interrupted create is locked; only root@pam may skip the lock.
    let placeholder = env.observed.guest(vmid).is_some_and(|g| {
        let vols = env.observed.abandoned_volumes.get(&vmid);
        crate::engine::recover::abandoned_create(g, vols.map_or(&[][..], Vec::as_slice)).is_some()
            && crate::engine::recover::is_locked(g)
    });
    let mut opts = DestroyOptions::everything();
    let guest = match (&env.pve_root, placeholder) {
        (Some(root), true) => {
            opts.skiplock = true;
            guest_on(root, node, kind, vmid)
        }
        _ => guest,
    };
    let task = guest
        .destroy(&opts)
        .await
        .map_err(|e| StepError::new(format!("destroy: {e}")))?;
    finish(env, task, "destroy").await
}

/// Change a guest in place: configuration, disk growth, and a restart when needed.
pub(super) async fn update(
    env: &Env,
    node: &str,
    kind: GuestKind,
    vmid: u32,
    changes: &[Change],
    reboot: bool,
) -> Result<String, StepError> {
    let guest = guest_on(&env.pve, node, kind, vmid);
    let observed = env.observed.guest(vmid).and_then(|g| g.config.clone());
    let digest = observed.as_ref().and_then(|c| c.digest.clone());
    let mut set: Vec<(String, ParamValue)> = Vec::new();
    let mut delete: Vec<String> = Vec::new();
    let mut grown: Vec<(String, crate::model::config::Size)> = Vec::new();
    let d = env.desired_guest(vmid)?;
    let mut make_template = false;
    for c in changes {
        if c.key == "template" {
            make_template = true;
            continue;
        }
        if c.key == "pool" {
            // Membership is the pool's, not the guest configuration's.
            if let Some(pool) = &c.to {
                crate::engine::guest_pools::join(&env.pve, vmid, pool)
                    .await
                    .map_err(|e| StepError::new(format!("move into pool {pool}: {e}")))?;
            }
            continue;
        }
        if let Some(disk_key) = c.key.strip_suffix(".options") {
            // Re-state the existing volume with the new options.
            let have = observed
                .as_ref()
                .and_then(|o| o.props.get(disk_key))
                .and_then(|v| parse_disk(v))
                .ok_or_else(|| StepError::new(format!("{disk_key} vanished")))?;
            let want = &d.disks[disk_key];
            let mut v = proxmox_client::VolumeId::image(have.storage, have.volume).to_string();
            for (k, val) in &want.options {
                v.push_str(&format!(",{k}={val}"));
            }
            set.push((disk_key.to_string(), ParamValue::Str(v)));
        } else if d.disks.contains_key(&c.key) {
            match (&c.from, d.disks.get(&c.key).and_then(|w| w.size)) {
                (Some(_), Some(size))
                    if observed
                        .as_ref()
                        .is_some_and(|o| o.props.contains_key(&c.key)) =>
                {
                    grown.push((c.key.clone(), size));
                }
                _ => set.push((
                    c.key.clone(),
                    ParamValue::Str(d.disks[&c.key].create_value()),
                )),
            }
        } else {
            match &c.to {
                // The desired value, not the display one (which may read "(sensitive)").
                Some(_) if c.key == "tags" => set.push((
                    c.key.clone(),
                    ParamValue::Str(c.to.clone().unwrap_or_default()),
                )),
                Some(_) => set.push((
                    c.key.clone(),
                    ParamValue::Str(d.props.get(&c.key).cloned().unwrap_or_default()),
                )),
                None => delete.push(c.key.clone()),
            }
        }
    }
    if !set.is_empty() || !delete.is_empty() {
        let update = ConfigUpdate {
            set,
            delete,
            digest: digest.clone(),
        };
        let client = match &env.pve_root {
            Some(root)
                if changes
                    .iter()
                    .any(|c| crate::engine::plan::change_needs_root(d, c)) =>
            {
                root
            }
            _ => &env.pve,
        };
        // qemu-server's config update is asynchronous (POST); pve-container's is not (PUT).
        let mut update = update;
        let task = match guest_on(client, node, kind, vmid)
            .update_config(&update)
            .await
        {
            // A change of an interrupted run still in flight: once it ends, the same
            // planned change is sent again over the configuration it left.
            Err(e) if e.is_digest_mismatch() => {
                match super::retry::settled_digest(env, node, kind, vmid).await {
                    Some(fresh) => {
                        update.digest = Some(fresh);
                        guest_on(client, node, kind, vmid)
                            .update_config(&update)
                            .await
                    }
                    None => Err(e),
                }
            }
            other => other,
        }
        .map_err(|e| {
            let s = StepError::new(format!("update: {e}"));
            if e.is_digest_mismatch() {
                s.hint("the guest changed since the plan; run `homelab-cli up` again")
            } else {
                feature_hint(&e, s)
            }
        })?;
        finish(env, task, "update").await?;
    }
    for (disk, size) in grown {
        resize(env, &guest, &disk, size).await?;
    }
    if make_template {
        convert_to_template(env, d).await?;
    }
    if reboot {
        let task = guest
            .reboot(&RebootOptions::default())
            .await
            .map_err(|e| StepError::new(format!("reboot: {e}")))?;
        finish(env, task, "reboot").await?;
        return Ok(format!(
            "{} change(s), restarted",
            changes.iter().filter(|c| c.shown).count()
        ));
    }
    Ok(format!(
        "{} change(s)",
        changes.iter().filter(|c| c.shown).count()
    ))
}
