//! Disk resize (QEMU and LXC).

use super::*;

/// qemu-server `PVE/API2/Qemu.pm` `resize_vm`: only `skiplock` is checked before the
/// worker forks; digest, lock, the disk, `Datastore.AllocateSpace` on its storage and
/// the size all fail inside the `resize` task (`$updatefn` under the config lock).
pub(super) async fn resize(sim: &Sim, caller: &Caller, p: &Params) -> ApiResult<Reply> {
    check_skiplock(caller, p)?;
    let node = req(p, "node")?.to_string();
    let vmid = vmid_of(p, "vmid")?;
    let disk = req(p, "disk")?.to_string();
    let size = req(p, "size")?.to_string();
    {
        let st = sim.state();
        guest(&st, Kind::Qemu, &node, vmid)?;
    }
    let guard = sim.lock_guest(Kind::Qemu, vmid).await?;
    let p = p.clone();
    let caller = caller.clone();
    let upid = sim.spawn_task(
        &node.clone(),
        "resize",
        &vmid.to_string(),
        &caller.authid.clone(),
        Some(guard),
        move |ctx| async move {
            let mut st = ctx.sim.state();
            let mut g = guest_mut(&mut st, Kind::Qemu, &node, vmid)?.clone();
            if let Some(d) = p.get("digest")
                && *d != g.digest()
            {
                return Err("checksum mismatch (file change by other user?)".into());
            }
            check_lock(&g, &p).map_err(|e| e.message.trim_end().to_string())?;
            let v = g
                .config
                .get(&disk)
                .cloned()
                .ok_or_else(|| format!("disk '{disk}' does not exist"))?;
            if v.contains("media=cdrom") {
                return Err("you can't resize a cdrom".to_string());
            }
            let (vol, mut opts) = split_prop(&v, "file");
            crate::pve::perms::need(
                &st,
                &caller,
                &format!("/storage/{}", storage_of(&vol)),
                "Datastore.AllocateSpace",
            )
            .map_err(|e| e.message.trim_end().to_string())?;
            let cur = volume_size(&st, &node, &vol)
                .or_else(|| opts.get("size").and_then(|s| parse_size(s)))
                .unwrap_or(0);
            let (grow, num) = match size.strip_prefix('+') {
                Some(n) => (true, n),
                None => (false, size.as_str()),
            };
            let n = parse_size(num).ok_or_else(|| "internal error".to_string())?;
            let new = if grow { cur + n } else { n };
            if new < cur {
                return Err("shrinking disks is not supported".into());
            }
            if new == cur {
                return Ok(());
            }
            if let Some(volume) = st.volumes.get_mut(&format!("{node}/{vol}")) {
                volume.size = new;
            }
            ctx.log(format!(
                "  Size of logical volume pve/{} changed from {} to {}.",
                vol.split(':').nth(1).unwrap_or(""),
                human_gib(cur),
                human_gib(new)
            ));
            opts.insert("size".into(), fmt_size(new));
            g.config.insert(disk.clone(), join_prop(&vol, &opts));
            st.guests.insert(vmid, g);
            Ok(())
        },
    );
    Ok(json!(upid).into())
}

/// pve-container `PVE/API2/LXC.pm` `resize_vm` (`PUT /nodes/{node}/lxc/{vmid}/resize`):
/// `$load_and_check` runs before the fork (and again in the worker): the config and its
/// lock, `check_ct_modify_config_perm` over the remaining parameters (`disk` is no
/// known option, so it needs `VM.Config.Options`), the digest, the volume's owner,
/// `Datastore.AllocateSpace` on its storage, then the size: no shrinking, no no-op.
pub(super) async fn lxc_resize(sim: &Sim, caller: &Caller, p: &Params) -> ApiResult<Reply> {
    let node = req(p, "node")?.to_string();
    let vmid = vmid_of(p, "vmid")?;
    let disk = req(p, "disk")?.to_string();
    let size = req(p, "size")?.to_string();
    let (grow, num) = match size.strip_prefix('+') {
        Some(n) => (true, n),
        None => (false, size.as_str()),
    };
    let request = parse_size(num).ok_or_else(|| ApiError::fail("invalid size string"))?;
    let load_and_check = |st: &State| -> ApiResult<(String, BTreeMap<String, String>, u64)> {
        let g = guest(st, Kind::Lxc, &node, vmid)?;
        check_lock(g, p)?;
        crate::pve::perms::lxc_config(
            st,
            caller,
            vmid,
            &BTreeMap::from([("disk".to_string(), disk.clone())]),
            &[],
        )?;
        if let Some(d) = p.get("digest")
            && *d != g.digest()
        {
            return Err(ApiError::fail(
                "detected modified configuration - file changed by other user? Try again.",
            ));
        }
        let value = g.config.get(&disk).cloned().unwrap_or_default();
        let (vol, opts) = split_prop(&value, "volume");
        let Some((sid, volname)) = vol.split_once(':') else {
            return Err(ApiError::fail(format!("unable to parse volume ID '{vol}'")));
        };
        let owner = volname
            .split(['/', '-'])
            .find_map(|part| part.parse::<u32>().ok())
            .unwrap_or(vmid);
        if owner != vmid {
            return Err(ApiError::fail(format!(
                "can't resize mount point owned by another container ({owner})"
            )));
        }
        crate::pve::perms::need(
            st,
            caller,
            &format!("/storage/{sid}"),
            "Datastore.AllocateSpace",
        )?;
        let cur = volume_size(st, &node, &vol)
            .or_else(|| opts.get("size").and_then(|s| parse_size(s)))
            .ok_or_else(|| {
                ApiError::fail(format!(
                    "Could not determine current size of volume '{vol}'"
                ))
            })?;
        let new = if grow { cur + request } else { request };
        if new < cur {
            return Err(ApiError::fail("unable to shrink disk size"));
        }
        if new == cur {
            return Err(ApiError::fail("disk is already at specified size"));
        }
        Ok((vol, opts, new))
    };
    load_and_check(&sim.state())?;
    let guard = sim.lock_guest(Kind::Lxc, vmid).await?;
    let checked = load_and_check(&sim.state());
    let upid = sim.spawn_task(
        &node.clone(),
        "resize",
        &vmid.to_string(),
        &caller.authid,
        Some(guard),
        move |ctx| async move {
            let (vol, mut opts, new) = checked.map_err(|e| e.message.trim_end().to_string())?;
            let mut st = ctx.sim.state();
            let mut g = guest_mut(&mut st, Kind::Lxc, &node, vmid)?.clone();
            if let Some(volume) = st.volumes.get_mut(&format!("{node}/{vol}")) {
                volume.size = new;
            }
            ctx.log(format!("resize2fs: resizing the filesystem on {vol}"));
            opts.insert("size".into(), fmt_size(new));
            g.config.insert(disk.clone(), join_prop(&vol, &opts));
            st.guests.insert(vmid, g);
            Ok(())
        },
    );
    Ok(json!(upid).into())
}
