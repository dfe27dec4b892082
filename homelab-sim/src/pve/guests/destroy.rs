//! Guest destruction.

use super::*;

// ----------------------------------------------------------------------------- destroy

pub(super) async fn destroy(
    sim: &Sim,
    caller: &Caller,
    kind: Kind,
    p: &Params,
) -> ApiResult<Reply> {
    check_skiplock(caller, p)?;
    let node = req(p, "node")?.to_string();
    let vmid = vmid_of(p, "vmid")?;
    {
        let st = sim.state();
        let g = guest(&st, kind, &node, vmid)?;
        check_lock(g, p)?;
        if g.running && !(kind == Kind::Lxc && flag(p, "force", false)) {
            return Err(ApiError::fail(format!(
                "{} {vmid} is running - destroy failed",
                kind.label()
            )));
        }
        if g.config.get("protection").is_some_and(|v| v == "1") {
            return Err(ApiError::fail(format!(
                "can't remove {} {vmid} - protection mode enabled",
                kind.label()
            )));
        }
    }
    let purge = flag(p, "purge", false);
    guest_task(
        sim,
        caller,
        kind,
        &node.clone(),
        vmid,
        "destroy",
        move |ctx| async move {
            let was_running = {
                let mut st = ctx.sim.state();
                let keys: Vec<String> = st
                    .volumes
                    .iter()
                    .filter(|(_, v)| {
                        v.node == node
                            && v.vmid == Some(vmid)
                            && matches!(v.content.as_str(), "images" | "rootdir")
                    })
                    .map(|(k, _)| k.clone())
                    .collect();
                // pve-storage `vdisk_free`: a template's base volume that linked clones
                // still name as their parent (ZFS, directory storages) is not removed.
                for k in &keys {
                    let Some(v) = st.volumes.get(k) else { continue };
                    let Some(name) = v.volid.split_once(':').map(|(_, n)| n.to_string()) else {
                        continue;
                    };
                    let base = name
                        .trim_end_matches(".qcow2")
                        .rsplit('/')
                        .next()
                        .unwrap_or("");
                    if !base.starts_with("base-") {
                        continue;
                    }
                    let ty = st.storages.get(&v.storage).map(|c| c.ty.clone());
                    let tracks_parent = ty.as_deref() == Some("zfspool")
                        || st.storages.get(&v.storage).is_some_and(|c| c.file_based());
                    let used = st.volumes.values().any(|o| {
                        o.vmid != Some(vmid)
                            && o.storage == v.storage
                            && (o.volid.contains(&format!("{base}/"))
                                || o.volid.contains(&format!("{base}.qcow2/")))
                    });
                    if tracks_parent && used {
                        return Err(format!(
                            "base volume '{name}' is still in use by linked cloned"
                        ));
                    }
                }
                for k in keys {
                    if let Some(v) = st.volumes.remove(&k) {
                        let name = v.volid.split(':').nth(1).unwrap_or("").to_string();
                        if st.storages.get(&v.storage).is_some_and(|s| !s.file_based()) {
                            ctx.log(format!("  Logical volume \"{name}\" successfully removed."));
                        }
                    }
                }
                let was_running = st.guests.get(&vmid).is_some_and(|g| g.running);
                st.guests.remove(&vmid);
                for pool in st.pools.values_mut() {
                    pool.vms.remove(&vmid);
                }
                if purge {
                    ctx.log(format!(
                        "purging {} {vmid} from related configurations..",
                        kind.label()
                    ));
                    for job in st.backup_jobs.values_mut() {
                        if let Some(list) = job.get("vmid").cloned() {
                            let rest: Vec<&str> =
                                list.split(',').filter(|v| *v != vmid.to_string()).collect();
                            job.insert("vmid".into(), rest.join(","));
                        }
                    }
                }
                was_running
            };
            if was_running {
                ctx.sim.guest_stopped(&node, vmid);
            }
            ctx.sim.guest_destroyed(&node, vmid);
            Ok(())
        },
    )
    .await
}
