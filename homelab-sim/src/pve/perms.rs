//! Permission checks the real handlers make themselves, per parameter, beyond the
//! endpoint's `permissions` expression (which [`super::auth::check_permissions`] evaluates
//! first). Each function names the Perl sub it follows; the order of the checks is theirs,
//! so a request with several faults gets the error a real host gives.

use std::collections::BTreeMap;

use super::auth::{Caller, privileges};
use super::error::{ApiError, ApiResult};
use super::schema::Params;
use super::state::State;

/// `$rpcenv->check($user, $path, [$privilege])`: 403 `Permission check failed (path, priv)`.
pub fn need(st: &State, caller: &Caller, path: &str, privilege: &str) -> ApiResult<()> {
    if privileges(st, caller, path).contains(privilege) {
        Ok(())
    } else {
        Err(ApiError::perm(path, privilege))
    }
}

/// `check_vm_perm` with several privileges and `any`: one of them suffices.
fn need_any(st: &State, caller: &Caller, path: &str, privs: &[&str]) -> ApiResult<()> {
    let have = privileges(st, caller, path);
    if privs.iter().any(|p| have.contains(*p)) {
        Ok(())
    } else {
        Err(ApiError::perm(path, &privs.join("|")))
    }
}

/// `raise_perm_exc($what)`: 403 `Permission check failed ($what)`.
fn perm_exc(what: &str) -> ApiError {
    ApiError::status(403, format!("Permission check failed ({what})"))
}

// ----------------------------------------------------------------------------- backup jobs

/// pve-manager `PVE/API2/Backup.pm` `assert_param_permission_common`.
fn backup_common(st: &State, caller: &Caller, p: &Params, is_delete: bool) -> ApiResult<()> {
    for key in ["tmpdir", "dumpdir", "script", "job-id"] {
        if p.contains_key(key) {
            return Err(ApiError::param(key, "Only root may set this option."));
        }
    }
    if ["bwlimit", "ionice", "performance"]
        .iter()
        .any(|k| p.contains_key(*k))
    {
        need(st, caller, "/", "Sys.Modify")?;
    }
    if !is_delete && let Some(f) = p.get("fleecing") {
        // PVE::VZDump::parse_fleecing: `enabled` is the default key.
        let opts: BTreeMap<&str, &str> = f.split(',').filter_map(|kv| kv.split_once('=')).collect();
        let enabled = f.split(',').next().is_some_and(|first| {
            matches!(first, "1" | "enabled=1" | "enabled=yes" | "enabled=true")
        }) || opts.get("enabled").is_some_and(|v| *v == "1");
        if enabled && let Some(storage) = opts.get("storage") {
            need(
                st,
                caller,
                &format!("/storage/{storage}"),
                "Datastore.AllocateSpace",
            )?;
        }
    }
    Ok(())
}

/// pve-manager `PVE/VZDump.pm` `get_storage_param`: none with `dumpdir`, else the
/// `storage` parameter, else `local`.
fn backup_storage(p: &BTreeMap<String, String>) -> Option<&str> {
    if p.contains_key("dumpdir") {
        return None;
    }
    Some(p.get("storage").map(String::as_str).unwrap_or("local"))
}

/// pve-manager `PVE/API2/Backup.pm` `assert_param_permission_create` (then the pool's
/// `VM.Backup`, as `create_job` checks next). root@pam itself skips it all.
pub fn backup_create(st: &State, caller: &Caller, p: &Params) -> ApiResult<()> {
    if !caller.is_root() {
        backup_common(st, caller, p, false)?;
        if let Some(storage) = backup_storage(p) {
            need(
                st,
                caller,
                &format!("/storage/{storage}"),
                "Datastore.Allocate",
            )?;
        }
    }
    backup_pool(st, caller, p)
}

/// `create_job`/`update_job`: `check_pool_exist` then `VM.Backup` on `/pool/<pool>`.
fn backup_pool(st: &State, caller: &Caller, p: &Params) -> ApiResult<()> {
    if let Some(pool) = p.get("pool") {
        if !st.pools.contains_key(pool) {
            return Err(ApiError::fail(format!("pool '{pool}' does not exist")));
        }
        need(st, caller, &format!("/pool/{pool}"), "VM.Backup")?;
    }
    Ok(())
}

/// pve-manager `PVE/API2/Backup.pm` `assert_param_permission_update`, the early call
/// (`current` = None, before the job is read) and the one with the stored job.
pub fn backup_update(
    st: &State,
    caller: &Caller,
    update: &Params,
    delete: &[String],
    current: Option<&BTreeMap<String, String>>,
) -> ApiResult<()> {
    if caller.is_root() {
        return if current.is_none() {
            backup_pool(st, caller, update)
        } else {
            Ok(())
        };
    }
    let deleted: Params = delete.iter().map(|k| (k.clone(), "1".into())).collect();
    backup_common(st, caller, update, false)?;
    backup_common(st, caller, &deleted, true)?;
    if let Some(storage) = update.get("storage") {
        need(
            st,
            caller,
            &format!("/storage/{storage}"),
            "Datastore.Allocate",
        )?;
    } else if deleted.contains_key("storage") {
        need(st, caller, "/storage/local", "Datastore.Allocate")?;
    }
    match current {
        None => backup_pool(st, caller, update),
        Some(job) if job.contains_key("dumpdir") => Err(ApiError::fail(
            "only root@pam may edit jobs with a 'dumpdir' option.",
        )),
        Some(job) => match backup_storage(job) {
            Some(storage) => need(
                st,
                caller,
                &format!("/storage/{storage}"),
                "Datastore.Allocate",
            ),
            None => Ok(()),
        },
    }
}

// ----------------------------------------------------------------------------- qemu

/// qemu-server `PVE::QemuServer::Drive::is_valid_drivename`.
pub fn is_qemu_drive(k: &str) -> bool {
    let n = |prefix: &str, max: u32| {
        k.strip_prefix(prefix).is_some_and(|d| {
            (d == "0" || (!d.starts_with('0') && !d.is_empty()))
                && d.bytes().all(|b| b.is_ascii_digit())
                && d.parse::<u32>().is_ok_and(|d| d <= max)
        })
    };
    n("ide", 3)
        || n("scsi", 30)
        || n("virtio", 15)
        || n("sata", 5)
        || k == "efidisk0"
        || k == "tpmstate0"
}

/// qemu-server `PVE/API2/Qemu.pm` `$check_vm_modify_config_perm`: the privilege each
/// option needs on `/vms/<vmid>`; `startup` needs `Sys.Modify` on `/` too; options in no
/// group are root@pam's (`die "only root can set '$opt' config"`, a 500). Drives, `cdrom`,
/// `unusedN`, `serialN`, `usbN`, `hostpciN`, `virtiofsN` and `tags` are checked elsewhere.
pub fn qemu_config<'a>(
    st: &State,
    caller: &Caller,
    vmid: u32,
    keys: impl IntoIterator<Item = &'a str>,
) -> ApiResult<()> {
    if caller.is_root() {
        return Ok(());
    }
    let vm = format!("/vms/{vmid}");
    let numbered = |k: &str, prefixes: &[&str]| {
        prefixes.iter().any(|p| {
            k.strip_prefix(p)
                .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        })
    };
    for k in keys {
        if is_qemu_drive(k)
            || k == "cdrom"
            || k == "tags"
            || numbered(k, &["unused", "serial", "usb", "hostpci", "virtiofs"])
        {
            continue;
        }
        match k {
            "cores" | "cpu" | "runningcpu" | "cpulimit" | "cpuunits" | "numa" | "smp"
            | "sockets" | "vcpus" => need(st, caller, &vm, "VM.Config.CPU")?,
            _ if numbered(k, &["numa"]) => need(st, caller, &vm, "VM.Config.CPU")?,
            "memory" | "balloon" | "shares" | "allow-ksm" => {
                need(st, caller, &vm, "VM.Config.Memory")?
            }
            "acpi" | "hotplug" | "kvm" | "machine" | "runningmachine" | "scsihw" | "smbios1"
            | "tablet" | "vga" | "watchdog" | "audio0" | "rng0" => {
                need(st, caller, &vm, "VM.Config.HWType")?
            }
            "agent" | "autostart" | "bios" | "description" | "keyboard" | "localtime"
            | "migrate_downtime" | "migrate_speed" | "name" | "onboot" | "ostype"
            | "protection" | "reboot" | "startdate" | "startup" | "tdf" | "template" => {
                need(st, caller, &vm, "VM.Config.Options")?;
                // "special case for startup since it changes host behaviour"
                if k == "startup" {
                    need(st, caller, "/", "Sys.Modify")?;
                }
            }
            "freeze" => need(st, caller, &vm, "VM.PowerMgmt")?,
            "boot" | "bootdisk" | "vmstatestorage" => need(st, caller, &vm, "VM.Config.Disk")?,
            "running-nets-host-mtu" => need(st, caller, &vm, "VM.Config.Network")?,
            _ if numbered(k, &["net"]) => need(st, caller, &vm, "VM.Config.Network")?,
            "cicustom" | "cipassword" | "citype" | "ciuser" | "ciupgrade" | "nameserver"
            | "searchdomain" | "sshkeys" => need_any(
                st,
                caller,
                &vm,
                &["VM.Config.Cloudinit", "VM.Config.Network"],
            )?,
            _ if numbered(k, &["ipconfig"]) => need_any(
                st,
                caller,
                &vm,
                &["VM.Config.Cloudinit", "VM.Config.Network"],
            )?,
            "vmstate" => {
                need(st, caller, &vm, "VM.Config.Disk")?;
                need(st, caller, &vm, "VM.PowerMgmt")?;
            }
            other => {
                return Err(ApiError::fail(format!(
                    "only root can set '{other}' config"
                )));
            }
        }
    }
    Ok(())
}

/// qemu-server `PVE/API2/Qemu.pm` `$check_storage_access` for new disks
/// (`<storage>:<size>`): `Datastore.AllocateSpace` on that storage, and the storage must
/// hold `images` (`storage '<id>' does not support vm images`, a parameter error).
pub fn qemu_new_disks(
    st: &State,
    caller: &Caller,
    sets: &BTreeMap<String, String>,
) -> ApiResult<()> {
    if caller.is_root() {
        return Ok(());
    }
    for v in sets
        .iter()
        .filter(|(k, _)| is_qemu_drive(k))
        .map(|(_, v)| v)
    {
        let file = v.split(',').next().unwrap_or("");
        if v.contains("media=cdrom") {
            continue;
        }
        let Some((sid, size)) = file.split_once(':') else {
            continue;
        };
        if size.parse::<f64>().is_err() {
            continue;
        }
        need(
            st,
            caller,
            &format!("/storage/{sid}"),
            "Datastore.AllocateSpace",
        )?;
        if let Some(s) = st.storages.get(sid)
            && !s.content.iter().any(|c| c == "images")
        {
            return Err(ApiError::param(
                "storage",
                format!("storage '{sid}' does not support vm images"),
            ));
        }
    }
    Ok(())
}

// ----------------------------------------------------------------------------- lxc

/// pve-container `src/PVE/LXC.pm` `check_ct_modify_config_perm`, for every set option and
/// then every deleted one. `features` keeps its own helper in guests.rs (same rules);
/// `devN` is root@pam's; `hookscript` too; `rootfs`/`mpN` need `VM.Config.Disk` and
/// `Datastore.AllocateSpace` on the storage of a new volume; anything unknown (even the
/// resize endpoint's `disk`) needs `VM.Config.Options`.
pub fn lxc_config(
    st: &State,
    caller: &Caller,
    vmid: u32,
    sets: &BTreeMap<String, String>,
    deletes: &[String],
) -> ApiResult<()> {
    if caller.is_root() {
        return Ok(());
    }
    let vm = format!("/vms/{vmid}");
    let numbered = |k: &str, p: &str| {
        k.strip_prefix(p)
            .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
    };
    let check = |k: &str, value: Option<&String>| -> ApiResult<()> {
        match k {
            "cores" | "cpuunits" | "cpulimit" => need(st, caller, &vm, "VM.Config.CPU"),
            "rootfs" => lxc_volume(st, caller, &vm, value),
            _ if numbered(k, "mp") => lxc_volume(st, caller, &vm, value),
            "memory" | "swap" => need(st, caller, &vm, "VM.Config.Memory"),
            _ if numbered(k, "net") => need(st, caller, &vm, "VM.Config.Network"),
            _ if numbered(k, "dev") => Err(perm_exc(
                "configuring device passthrough is only allowed for root@pam",
            )),
            "nameserver" | "searchdomain" | "hostname" => {
                need(st, caller, &vm, "VM.Config.Network")
            }
            // Checked by guests.rs `check_features_perm` (same function, same order).
            "features" => Ok(()),
            "hookscript" => Err(perm_exc(
                "changing the hookscript is only allowed for root@pam",
            )),
            // assert_tag_permissions: VM.Config.Options for guest tags.
            _ => need(st, caller, &vm, "VM.Config.Options"),
        }
    };
    for (k, v) in sets {
        check(k, Some(v))?;
    }
    for k in deletes {
        check(k, None)?;
    }
    Ok(())
}

fn lxc_volume(st: &State, caller: &Caller, vm: &str, value: Option<&String>) -> ApiResult<()> {
    need(st, caller, vm, "VM.Config.Disk")?;
    let Some(v) = value else {
        return Ok(());
    };
    let volume = v
        .split(',')
        .find_map(|kv| match kv.split_once('=') {
            Some(("volume", x)) => Some(x),
            Some(_) => None,
            None => Some(kv),
        })
        .unwrap_or("");
    if volume.starts_with('/') {
        return Err(perm_exc(
            "mount point type bind is only allowed for root@pam",
        ));
    }
    if let Some((sid, size)) = volume.split_once(':')
        && size.parse::<f64>().is_ok()
    {
        need(
            st,
            caller,
            &format!("/storage/{sid}"),
            "Datastore.AllocateSpace",
        )?;
    }
    Ok(())
}

// ----------------------------------------------------------------------------- bridges

/// pve-guest-common `PVE/GuestHelpers.pm` `check_vnet_access` (through qemu-server
/// `check_bridge_access` and pve-container's `netN` check): `SDN.Use` on
/// `/sdn/zones/<zone>/<bridge>` (`localnetwork` for a plain Linux bridge, the VNet's zone
/// for an applied SDN VNet), or on `.../<tag>` for a tagged interface and on each trunk
/// VLAN. root@pam skips it.
pub fn bridge_access(st: &State, caller: &Caller, net: &str) -> ApiResult<()> {
    if caller.is_root() {
        return Ok(());
    }
    let opt = |k: &str| {
        net.split(',')
            .find_map(|kv| kv.split_once('=').filter(|(a, _)| *a == k).map(|(_, v)| v))
    };
    let Some(bridge) = opt("bridge") else {
        return Ok(());
    };
    let zone = st
        .sdn_vnets
        .get(bridge)
        .and_then(|v| v.running.as_ref())
        .and_then(|r| r.get("zone"))
        .map(String::as_str)
        .unwrap_or("localnetwork");
    let base = format!("/sdn/zones/{zone}/{bridge}");
    let tag = opt("tag").filter(|t| !t.is_empty() && *t != "0");
    let trunks = opt("trunks").filter(|t| !t.is_empty());
    if let Some(tag) = tag {
        need(st, caller, &format!("{base}/{tag}"), "SDN.Use")?;
    }
    if let Some(trunks) = trunks {
        let mut tags = std::collections::BTreeSet::new();
        for part in trunks.split(';') {
            match part.split_once('-') {
                Some((a, b)) => {
                    if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
                        tags.extend(a..=b);
                    }
                }
                None => {
                    if let Ok(t) = part.parse::<u32>() {
                        tags.insert(t);
                    }
                }
            }
        }
        for t in tags {
            need(st, caller, &format!("{base}/{t}"), "SDN.Use")?;
        }
    }
    if tag.is_none() && trunks.is_none() {
        need(st, caller, &base, "SDN.Use")?;
    }
    Ok(())
}

/// [`bridge_access`] for every `netN` among `settings`.
pub fn bridges(st: &State, caller: &Caller, settings: &BTreeMap<String, String>) -> ApiResult<()> {
    for (k, v) in settings {
        if k.strip_prefix("net")
            .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        {
            bridge_access(st, caller, v)?;
        }
    }
    Ok(())
}
