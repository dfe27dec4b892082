//! Backups: `POST /nodes/{node}/vzdump` writing archives into backup storages with PVE's
//! names, notes and protection; restoring them through the create endpoints (LXC
//! `restore=1` with the archive as `ostemplate`, QEMU `archive=`); the data markers tests
//! put on guest volumes and read back after a restore; and a host "reinstall".
//!
//! Read from the real handlers:
//! - pve-manager `PVE/API2/VZDump.pm` (`vzdump`: a `vzdump` worker task over the selected
//!   guests) and `PVE/VZDump.pm` (`exec_backup_task`: the archive is
//!   `vzdump-<type>-<vmid>-<%Y_%m_%d-%H_%M_%S>` plus the compressor's extension; afterwards
//!   `update_volume_attribute(..., 'notes', generated from notes-template)` and
//!   `(..., 'protected', 1)`); only mount points with `backup=1` (and the root file system)
//!   are in a container archive.
//! - pve-container `src/PVE/API2/LXC.pm` `create_vm`: with `restore`, `ostemplate` is the
//!   archive; the backed-up configuration is recovered (`recover_config`) and the passed
//!   parameters win over it (`restore_configuration`); without mount-point parameters every
//!   volume is re-created on `storage` with its backed-up size ("storage only mode"); the
//!   worker is `vzrestore`.
//! - qemu-server `src/PVE/API2/Qemu.pm` `create_vm`: `archive` conflicts with drive
//!   parameters ("option conflicts with option 'archive'"); disks come from the archive's
//!   configuration onto `storage`; the worker is `qmrestore`; the config holds
//!   `lock: create` from `create_and_lock_config` until the restored one is written; the
//!   passed settings win over the archive's (`override_conf`, `restore_merge_config`).
//!   qemu-server `src/PVE/QemuServer.pm` `restore_update_config_line` (drives with
//!   `backup=0` dropped, `vmgenid` renewed, MACs and the SMBIOS UUID renewed with `unique`)
//!   and `$parse_backup_hints` (a new cloud-init drive on `storage`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::api::{Reply, check_node, flag, req};
use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::schema::Params;
use super::sim::{Sim, now};
use super::state::{Kind, State, Volume};

/// What a backup archive holds: the guest's configuration and the data markers of the
/// volumes it backed up (by config key).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Archive {
    /// `qemu` or `lxc`.
    pub kind: String,
    /// The VMID it was taken of.
    pub vmid: u32,
    /// The guest configuration at backup time.
    pub config: BTreeMap<String, String>,
    /// Data markers of the backed-up volumes, by config key (`rootfs`, `mp0`, `scsi0`).
    pub data: BTreeMap<String, String>,
    /// Notes (`<archive>.notes`).
    pub notes: Option<String>,
    /// Protected from pruning and removal (`<archive>.protected`).
    pub protected: bool,
}

/// `YYYY_MM_DD-HH_MM_SS` of a Unix time (UTC; the simulated node runs in UTC).
pub fn timestr(t: u64) -> String {
    let days = (t / 86_400) as i64;
    let secs = t % 86_400;
    let (y, m, d) = super::calendar::civil(days);
    format!(
        "{y:04}_{m:02}_{d:02}-{:02}_{:02}_{:02}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

fn kind_str(k: Kind) -> &'static str {
    match k {
        Kind::Qemu => "qemu",
        Kind::Lxc => "lxc",
    }
}

/// Whether a config key is a volume an archive carries (root file system, mount points with
/// `backup=1`, VM disks other than CD-ROMs and cloud-init drives).
fn backed_up(kind: Kind, key: &str, value: &str) -> bool {
    match kind {
        Kind::Lxc => {
            key == "rootfs"
                || (super::guests::is_disk_key(key)
                    && key.starts_with("mp")
                    && value.split(',').any(|p| p == "backup=1"))
        }
        Kind::Qemu => {
            super::guests::is_disk_key(key)
                && !key.starts_with("unused")
                && !value.contains("media=cdrom")
                && !value.contains("cloudinit")
                && !value.split(',').any(|p| p == "backup=0")
        }
    }
}

fn volid_of(value: &str) -> &str {
    value.split(',').next().unwrap_or("")
}

/// `POST /nodes/{node}/vzdump`.
pub fn vzdump(sim: &Sim, caller: &Caller, p: &Params) -> ApiResult<Reply> {
    let node = req(p, "node")?.to_string();
    let storage = p.get("storage").cloned().unwrap_or_else(|| "local".into());
    let vmids: Vec<u32> = {
        let st = sim.state();
        check_node(&st, &node)?;
        let scfg = st
            .storages
            .get(&storage)
            .ok_or_else(|| ApiError::fail(format!("storage '{storage}' does not exist")))?;
        if !scfg.content.iter().any(|c| c == "backup") {
            return Err(ApiError::fail(format!(
                "storage '{storage}' does not support backups"
            )));
        }
        if flag(p, "all", false) {
            st.guests
                .values()
                .filter(|g| g.node == node)
                .map(|g| g.vmid)
                .collect()
        } else {
            let list = p.get("vmid").ok_or_else(|| {
                ApiError::param("vmid", "property is missing and it is not optional")
            })?;
            let mut out = Vec::new();
            for id in list.split([',', ' ', ';']).filter(|s| !s.is_empty()) {
                let vmid: u32 = id
                    .parse()
                    .map_err(|_| ApiError::param("vmid", format!("invalid VMID '{id}'")))?;
                if !st.guests.contains_key(&vmid) {
                    return Err(ApiError::fail(format!(
                        "unable to find configuration file for VM {vmid} on node '{node}'"
                    )));
                }
                out.push(vmid);
            }
            out
        }
    };
    let compress = p.get("compress").cloned().unwrap_or_else(|| "0".into());
    let notes_template = p.get("notes-template").cloned();
    let protected = flag(p, "protected", false);
    let mode = p.get("mode").cloned().unwrap_or_else(|| "snapshot".into());
    let ids = vmids
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let upid = sim.spawn_task(&node.clone(), "vzdump", &ids, &caller.authid, None, {
        move |ctx| async move {
            let sim = ctx.sim.clone();
            let mut failed = Vec::new();
            for vmid in vmids {
                let mut st = sim.state();
                let Some(g) = st.guests.get(&vmid).cloned() else {
                    failed.push(vmid);
                    continue;
                };
                let ty = kind_str(g.kind);
                ctx.log(format!("INFO: Starting Backup of VM {vmid} ({ty})"));
                ctx.log(format!("INFO: Backup started at {}", timestr(now())));
                ctx.log(format!(
                    "INFO: status = {}",
                    if g.running { "running" } else { "stopped" }
                ));
                ctx.log(format!("INFO: backup mode: {mode}"));
                if let Some(l) = g.config.get("lock") {
                    ctx.log(format!(
                        "ERROR: Backup of VM {vmid} failed - VM is locked ({l})"
                    ));
                    failed.push(vmid);
                    continue;
                }
                let ext = match (g.kind, compress.as_str()) {
                    (Kind::Lxc, "zstd" | "1") => "tar.zst",
                    (Kind::Lxc, "gzip") => "tar.gz",
                    (Kind::Lxc, "lzo") => "tar.lzo",
                    (Kind::Lxc, _) => "tar",
                    (Kind::Qemu, "zstd" | "1") => "vma.zst",
                    (Kind::Qemu, "gzip") => "vma.gz",
                    (Kind::Qemu, "lzo") => "vma.lzo",
                    (Kind::Qemu, _) => "vma",
                };
                let name = format!("vzdump-{ty}-{vmid}-{}.{ext}", timestr(now()));
                let volid = format!("{storage}:backup/{name}");
                let mut archive = Archive {
                    kind: ty.to_string(),
                    vmid,
                    protected,
                    ..Archive::default()
                };
                let mut size = 0;
                for (k, v) in &g.config {
                    if k == "lock" || k == "digest" {
                        continue;
                    }
                    archive.config.insert(k.clone(), v.clone());
                    if backed_up(g.kind, k, v) {
                        let vol = format!("{}/{}", g.node, volid_of(v));
                        size += st.volumes.get(&vol).map_or(0, |x| x.size / 8);
                        if let Some(marker) = st.volume_data.get(&vol) {
                            archive.data.insert(k.clone(), marker.clone());
                        }
                    } else if super::guests::is_disk_key(k) && k.starts_with("mp") {
                        ctx.log(format!(
                            "INFO: excluding volume mount point {k} ('{}') from backup (disabled)",
                            v.split(',')
                                .find_map(|p| p.strip_prefix("mp="))
                                .unwrap_or("")
                        ));
                    }
                }
                if let Some(t) = &notes_template {
                    let text = t
                        .replace(
                            "{{guestname}}",
                            g.config
                                .get("hostname")
                                .or(g.config.get("name"))
                                .map_or("", String::as_str),
                        )
                        .replace("{{vmid}}", &vmid.to_string())
                        .replace("{{node}}", &g.node)
                        .replace("{{cluster}}", &st.cluster);
                    archive.notes = Some(text);
                }
                let dir = st
                    .storages
                    .get(&storage)
                    .and_then(|s| s.path.clone())
                    .unwrap_or_else(|| format!("/mnt/pve/{storage}"));
                ctx.log(format!("INFO: creating vzdump archive '{dir}/dump/{name}'"));
                let key = format!("{}/{volid}", g.node);
                st.volumes.insert(
                    key.clone(),
                    Volume {
                        volid: volid.clone(),
                        node: g.node.clone(),
                        storage: storage.clone(),
                        content: "backup".into(),
                        format: ext.to_string(),
                        size: size.max(1 << 20),
                        vmid: Some(vmid),
                        ctime: now(),
                        sha256: None,
                    },
                );
                if archive.notes.is_some() {
                    ctx.log("INFO: adding notes to backup");
                }
                if protected {
                    ctx.log("INFO: marking backup as protected");
                }
                st.archives.insert(key, archive);
                ctx.log(format!("INFO: Finished Backup of VM {vmid}"));
            }
            if failed.is_empty() {
                ctx.log("INFO: Backup job finished successfully");
                Ok(())
            } else {
                Err(format!(
                    "job errors (backup of VM {} failed)",
                    failed
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            }
        }
    });
    Ok(json!(upid).into())
}

/// The archive behind a backup volume on `node`, if it is one.
pub fn archive<'a>(st: &'a State, node: &str, volid: &str) -> Option<&'a Archive> {
    st.archives.get(&format!("{node}/{volid}")).or_else(|| {
        st.archives.iter().find_map(|(k, a)| {
            let (_, v) = k.split_once('/')?;
            let shared = st
                .storages
                .get(v.split(':').next().unwrap_or(""))
                .is_some_and(|s| s.shared);
            (v == volid && shared).then_some(a)
        })
    })
}

/// Turn restore parameters into the create parameters they stand for: the archive's
/// configuration under the passed parameters (which win), volumes re-created with their
/// backed-up size on `storage` unless passed. Returns the archive's volid.
pub fn restore_params(st: &State, kind: Kind, p: &mut Params) -> ApiResult<Option<String>> {
    let node = req(p, "node")?.to_string();
    let (volid, key) = match kind {
        Kind::Lxc if flag(p, "restore", false) => (req(p, "ostemplate")?.to_string(), "ostemplate"),
        Kind::Qemu if p.contains_key("archive") => (req(p, "archive")?.to_string(), "archive"),
        _ => return Ok(None),
    };
    if kind == Kind::Qemu {
        // qemu-server: drives cannot be passed with an archive.
        if let Some(k) = p.keys().find(|k| super::guests::is_disk_key(k)) {
            return Err(ApiError::param(k, "option conflicts with option 'archive'"));
        }
    }
    let a = archive(st, &node, &volid).ok_or_else(|| {
        ApiError::param(
            key,
            format!("volume '{volid}' does not exist or is not a backup"),
        )
    })?;
    if a.kind != kind_str(kind) {
        return Err(ApiError::fail(format!(
            "archive '{volid}' is a {} backup, not {}",
            a.kind,
            kind_str(kind)
        )));
    }
    let storage = p.get("storage").cloned();
    let storage_only = !p.keys().any(|k| super::guests::is_disk_key(k));
    let unique = flag(p, "unique", false);
    for (k, v) in &a.config {
        if p.contains_key(k) || k.starts_with("unused") || k == "template" {
            continue;
        }
        if kind == Kind::Qemu {
            // qemu-server `restore_update_config_line`: a drive marked `backup=0` is not
            // restored (its line is commented out); `vmgenid` is always new; with `unique`
            // each NIC gets a new MAC and `smbios1` a new UUID. `$parse_backup_hints`
            // allocates a fresh cloud-init drive (`vm-<vmid>-cloudinit`) on `storage`.
            let drive = super::guests::is_disk_key(k);
            let fresh = if drive && v.split(',').any(|o| o == "backup=0") {
                None
            } else if drive && v.contains("cloudinit") {
                let own = volid_of(v).split(':').next().unwrap_or("local").to_string();
                let target = storage.clone().unwrap_or(own);
                Some(format!("{target}:cloudinit"))
            } else if k == "vmgenid" && v != "0" {
                Some(crate::pve::auth::uuid())
            } else if k == "smbios1" && unique {
                let mut s = format!("uuid={}", crate::pve::auth::uuid());
                for o in v.split(',').filter(|o| !o.starts_with("uuid=")) {
                    s.push(',');
                    s.push_str(o);
                }
                Some(s)
            } else if unique && !drive && k.starts_with("net") {
                let (first, rest) = v.split_once(',').unwrap_or((v.as_str(), ""));
                let model = first.split('=').next().unwrap_or("virtio");
                let mut s = format!("{model}={}", super::guests::gen_mac());
                if !rest.is_empty() {
                    s.push(',');
                    s.push_str(rest);
                }
                Some(s)
            } else {
                Some(String::new())
            };
            match fresh {
                None => continue,
                Some(s) if !s.is_empty() => {
                    p.insert(k.clone(), s);
                    continue;
                }
                Some(_) => {}
            }
        }
        let value = if super::guests::is_disk_key(k) {
            if !storage_only || v.contains("media=cdrom") {
                if v.contains("media=cdrom") {
                    p.insert(k.clone(), v.clone());
                }
                continue;
            }
            let mut parts = v.split(',');
            let vol = parts.next().unwrap_or("");
            let opts: Vec<&str> = parts.filter(|o| !o.starts_with("size=")).collect();
            if kind == Kind::Lxc && vol.starts_with('/') {
                continue; // bind mounts are root's to restore
            }
            let size = v
                .split(',')
                .find_map(|o| o.strip_prefix("size="))
                .and_then(super::guests::parse_size)
                .unwrap_or(4 << 30);
            let gib = size.div_ceil(1 << 30).max(1);
            let target = storage
                .clone()
                .unwrap_or_else(|| vol.split(':').next().unwrap_or("local").to_string());
            let mut s = format!("{target}:{gib}");
            for o in opts {
                s.push(',');
                s.push_str(o);
            }
            s
        } else {
            v.clone()
        };
        p.insert(k.clone(), value);
    }
    Ok(Some(volid))
}

/// After a restore created the guest's volumes: write the archive's data onto them.
pub fn restore_data(st: &mut State, node: &str, vmid: u32, volid: &str) {
    let Some(a) = archive(st, node, volid).cloned() else {
        return;
    };
    let Some(g) = st.guests.get(&vmid).cloned() else {
        return;
    };
    for (k, marker) in &a.data {
        if let Some(v) = g.config.get(k) {
            st.volume_data
                .insert(format!("{node}/{}", volid_of(v)), marker.clone());
        }
    }
}

/// Extra fields of a backup volume in a content listing (`notes`, `protected`, `subtype`).
pub fn annotate(st: &State, v: &Volume, o: &mut serde_json::Value) {
    if v.content != "backup" {
        return;
    }
    let Some(obj) = o.as_object_mut() else {
        return;
    };
    if let Some(a) = st.archives.get(&format!("{}/{}", v.node, v.volid)) {
        obj.insert("subtype".into(), json!(a.kind));
        if let Some(n) = &a.notes {
            obj.insert("notes".into(), json!(n));
        }
        if a.protected {
            obj.insert("protected".into(), json!(1));
        }
    }
}

impl Sim {
    /// Put a data marker on a volume (what a test writes "inside" a guest's disk).
    pub fn write_volume_data(&self, node: &str, volid: &str, marker: &str) {
        let mut st = self.state();
        st.volume_data
            .insert(format!("{node}/{volid}"), marker.to_string());
    }

    /// The data marker on a volume, if any.
    pub fn read_volume_data(&self, node: &str, volid: &str) -> Option<String> {
        self.state()
            .volume_data
            .get(&format!("{node}/{volid}"))
            .cloned()
    }

    /// Reinstall the host: every guest, task, pool, backup job, PCI mapping and the storage
    /// configuration beyond the installer's `local` and `local-lvm` are gone, and so are the
    /// volumes on the system disk. What lives on ZFS pools survives: the pools' datasets and
    /// every file below a pool's mount point (`/<pool>/...`, e.g. a backup directory), with
    /// the archives there. Their storages must be added again (`pvesm add`, or `up`).
    pub fn reinstall(&self) {
        let mut st = self.state();
        let pools: Vec<String> = st
            .storages
            .iter()
            .filter(|(_, s)| s.ty == "zfspool")
            .map(|(id, _)| id.clone())
            .collect();
        let survives = |st: &State, storage: &str| {
            st.storages.get(storage).is_some_and(|s| {
                s.ty == "zfspool"
                    || s.path.as_deref().is_some_and(|p| {
                        pools.iter().any(|pool| p.starts_with(&format!("/{pool}/")))
                    })
            })
        };
        let keep: Vec<String> = st
            .volumes
            .iter()
            .filter(|(_, v)| survives(&st, &v.storage))
            .map(|(k, _)| k.clone())
            .collect();
        st.volumes.retain(|k, _| keep.contains(k));
        st.archives.retain(|k, _| keep.contains(k));
        st.volume_data.retain(|k, _| keep.contains(k));
        // A fresh installer's storage.cfg.
        st.storages
            .retain(|id, _| id == "local" || id == "local-lvm");
        st.guests.clear();
        st.tasks.clear();
        st.pools.clear();
        st.backup_jobs.clear();
        st.pci_mappings.clear();
        drop(st);
        self.persist();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_times_are_pve_shaped() {
        assert_eq!(timestr(0), "1970_01_01-00_00_00");
        // 2026-12-06 19:40:05 UTC.
        assert_eq!(timestr(1_796_586_005), "2026_12_06-19_40_05");
        assert_eq!(timestr(951_782_400), "2000_02_29-00_00_00");
    }

    #[test]
    fn only_backed_up_volumes_are_in_the_archive() {
        assert!(backed_up(
            Kind::Lxc,
            "rootfs",
            "local-lvm:vm-1-disk-0,size=8G"
        ));
        assert!(backed_up(
            Kind::Lxc,
            "mp0",
            "tank:subvol-1-disk-0,mp=/d,backup=1,size=8G"
        ));
        assert!(!backed_up(
            Kind::Lxc,
            "mp1",
            "tank:subvol-1-disk-1,mp=/e,size=8G"
        ));
        assert!(backed_up(
            Kind::Qemu,
            "scsi0",
            "local-lvm:vm-1-disk-0,size=8G"
        ));
        assert!(!backed_up(
            Kind::Qemu,
            "ide2",
            "local:iso/x.iso,media=cdrom"
        ));
        assert!(!backed_up(
            Kind::Qemu,
            "ide3",
            "local-lvm:vm-1-cloudinit,media=cdrom"
        ));
    }
}
