//! Restoring missing guests from vzdump backups (`restore: latest | <volume>`), and the
//! backup archives `backup list` shows: reading them (one storage list per node plus one
//! content listing per backup storage) and choosing the archive (pure).

use proxmox_client::Client;
use proxmox_client::ParamValue;
use serde::Serialize;

use super::observed::Observed;
use crate::model::desired::{Desired, GuestKind};

/// A vzdump archive in a backup storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupArchive {
    /// Node whose storage listing showed it.
    pub node: String,
    /// Storage.
    pub storage: String,
    /// Volume id (`backups:backup/vzdump-lxc-103-2026_12_06-19_40_05.tar.zst`).
    pub volid: String,
    /// VMID it was taken of.
    pub vmid: u32,
    /// `lxc` / `qemu`.
    pub kind: String,
    /// Creation time (epoch seconds).
    pub ctime: u64,
    /// Size in bytes.
    pub size: u64,
    /// Notes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// Protected from pruning.
    pub protected: bool,
}

/// `(kind, vmid, time string)` from a vzdump file name
/// (`vzdump-<kind>-<vmid>-<YYYY_MM_DD-HH_MM_SS>.<ext>`), as pve-storage's
/// `archive_info` reads it.
pub fn parse_name(volid: &str) -> Option<(String, u32, String)> {
    let file = volid.rsplit('/').next()?;
    let rest = file.strip_prefix("vzdump-")?;
    let (kind, rest) = rest.split_once('-')?;
    if !matches!(kind, "lxc" | "qemu" | "openvz") {
        return None;
    }
    let (vmid, rest) = rest.split_once('-')?;
    let vmid: u32 = vmid.parse().ok()?;
    let time = rest.get(..19)?;
    Some((kind.to_string(), vmid, time.to_string()))
}

/// Every backup archive in the backup storages of the online nodes.
pub async fn list(
    client: &Client,
    nodes: &[String],
) -> Result<Vec<BackupArchive>, proxmox_client::Error> {
    let mut out: Vec<BackupArchive> = Vec::new();
    for node in nodes {
        let n = client.node(node);
        for s in n.storage_list(Some("backup")).await? {
            if s.enabled == Some(false) || s.active == Some(false) {
                continue;
            }
            for c in n.storage(&s.storage).content(Some("backup"), None).await? {
                let Some((kind, vmid, _)) = parse_name(&c.volid) else {
                    continue;
                };
                if out.iter().any(|b| b.volid == c.volid) {
                    continue; // a shared storage seen from another node
                }
                out.push(BackupArchive {
                    node: node.clone(),
                    storage: s.storage.clone(),
                    vmid: c.vmid.unwrap_or(vmid),
                    kind,
                    ctime: c.ctime.unwrap_or(0),
                    size: c.size,
                    notes: c
                        .extra
                        .get("notes")
                        .and_then(|v| v.as_str())
                        .map(str::to_string),
                    protected: c
                        .extra
                        .get("protected")
                        .is_some_and(|v| v.as_u64() == Some(1) || v.as_bool() == Some(true)),
                    volid: c.volid,
                });
            }
        }
    }
    out.sort_by(|a, b| (a.vmid, a.ctime, &a.volid).cmp(&(b.vmid, b.ctime, &b.volid)));
    Ok(out)
}

/// Read the archives into `observed` when a declared guest to restore is missing.
pub async fn observe(
    client: &Client,
    desired: &Desired,
    observed: &mut Observed,
) -> Result<(), proxmox_client::Error> {
    let missing = desired
        .restore
        .keys()
        .any(|vmid| observed.guest(*vmid).is_none());
    if !missing {
        return Ok(());
    }
    let nodes: Vec<String> = observed
        .nodes
        .iter()
        .filter(|n| n.status == "online")
        .map(|n| n.name.clone())
        .collect();
    observed.backups = list(client, &nodes).await?;
    Ok(())
}

/// A disk to grow after a restore, and to what.
pub type Grow = (String, crate::model::config::Size);

/// The create parameters that restore VM `d` from `volid` (qemu-server
/// `PVE/API2/Qemu.pm` `create_vm`): `archive` plus `storage` (the boot disk's storage: the
/// archive's drives are allocated there, `$parse_backup_hints`), the declared settings
/// without drives (drives conflict with `archive`; the other parameters are the
/// `override_conf` written over the backed-up configuration, `restore_merge_config`).
/// Neither `unique` (the VM comes back as itself: same MACs and SMBIOS UUID) nor `force`
/// (it only overwrites an existing VM, which a restore never targets). Also the boot disk
/// to grow afterwards, when the declaration asks for more than the archive may hold.
pub fn qemu_params(
    d: &crate::model::desired::DesiredGuest,
    volid: &str,
    params: Vec<(String, ParamValue)>,
) -> (Vec<(String, ParamValue)>, Option<Grow>) {
    // NICs are left to the archive: a NIC passed without its MAC gets a new one
    // (`add_random_macs` over the parameters); [`nic_fixes`] reconciles them afterwards.
    let mut out: Vec<(String, ParamValue)> = params
        .into_iter()
        .filter(|(k, _)| {
            !d.disks.contains_key(k)
                && !is_drive(k)
                && !proxmox_client::property::is_numbered(k, "net")
        })
        .collect();
    out.push(("archive".into(), ParamValue::Str(volid.to_string())));
    let boot = d.disks.get("scsi0").or_else(|| d.disks.values().next());
    if let Some(disk) = boot {
        out.push(("storage".into(), ParamValue::Str(disk.storage.clone())));
    }
    let grow = d
        .disks
        .get("scsi0")
        .and_then(|s| s.size)
        .map(|size| ("scsi0".to_string(), size));
    (out, grow)
}

/// After a restore: the declared NICs that differ from the restored ones, each with the
/// restored MAC kept (`virtio,bridge=vmbr1` over `virtio=BC:..,bridge=vmbr0` gives
/// `virtio=BC:..,bridge=vmbr1`).
pub fn nic_fixes(
    d: &crate::model::desired::DesiredGuest,
    restored: &std::collections::BTreeMap<String, String>,
) -> Vec<(String, String)> {
    use proxmox_client::property::canonical;
    let mut out = Vec::new();
    for (k, want) in &d.props {
        if !proxmox_client::property::is_numbered(k, "net") {
            continue;
        }
        let have = restored.get(k);
        if have.is_some_and(|h| canonical(k, h) == canonical(k, want)) {
            continue;
        }
        let mac = have.and_then(|h| {
            h.split(',')
                .next()
                .and_then(|m| m.split_once('='))
                .map(|(_, mac)| mac.to_string())
        });
        let value = match (mac, want.split_once(',')) {
            (Some(mac), Some((model, rest))) if !model.contains('=') => {
                format!("{model}={mac},{rest}")
            }
            (Some(mac), None) if !want.contains('=') => format!("{want}={mac}"),
            _ => want.clone(),
        };
        out.push((k.clone(), value));
    }
    out
}

/// Whether `key` names a QEMU drive (qemu-server `Drive::is_valid_drivename`).
fn is_drive(key: &str) -> bool {
    ["ide", "sata", "scsi", "virtio", "efidisk", "tpmstate"]
        .iter()
        .any(|p| proxmox_client::property::is_numbered(key, p))
}

/// Why a restore cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// The named backup volume is not in any backup storage, or is of another guest.
    #[error("{kind} {vmid} \"{name}\" is to be restored from {volume}, which {why}")]
    NoSuchBackup {
        /// VMID.
        vmid: u32,
        /// Name.
        name: String,
        /// `ct`.
        kind: &'static str,
        /// The volume asked for.
        volume: String,
        /// What is wrong.
        why: String,
    },
    /// A missing VM with nothing to build it from (an adopted VM declared as it was, with
    /// neither `image` nor `clone`) and no backup to restore it from.
    #[error(
        "vm {vmid} \"{name}\" does not exist and cannot be created: it has no `image` or `clone` to build it from, and {why}"
    )]
    NothingToCreateFrom {
        /// VMID.
        vmid: u32,
        /// Name.
        name: String,
        /// `no backup of it was found` / `it has no \`restore\``.
        why: String,
    },
}

/// Whether `d` is a VM that only a restore can bring back: an adopted VM declared as it
/// was, with no image, template or ISO to build a new one from.
pub fn restore_only(d: &crate::model::desired::DesiredGuest) -> bool {
    d.kind == GuestKind::Qemu && d.boot.is_none() && d.iso.is_none() && d.talos.is_none()
}

/// A missing guest that only a restore can bring back must have an archive.
pub fn check_creatable(
    desired: &Desired,
    d: &crate::model::desired::DesiredGuest,
    archive: Option<&BackupArchive>,
) -> Result<(), RestoreError> {
    if !restore_only(d) || archive.is_some() {
        return Ok(());
    }
    Err(RestoreError::NothingToCreateFrom {
        vmid: d.vmid,
        name: d.name.clone(),
        why: if desired.restore.contains_key(&d.vmid) {
            "no backup of it is in any backup storage".into()
        } else {
            "it has no `restore: latest` to bring it back from a backup".into()
        },
    })
}

/// The archive a missing guest is restored from: `None` when it is created empty
/// (`restore: latest` without any backup, or no `restore`).
pub fn pick<'a>(
    desired: &Desired,
    observed: &'a Observed,
    vmid: u32,
) -> Result<Option<&'a BackupArchive>, RestoreError> {
    let Some(how) = desired.restore.get(&vmid) else {
        return Ok(None);
    };
    let Some(d) = desired.guests.iter().find(|g| g.vmid == vmid) else {
        return Ok(None);
    };
    let kind = match d.kind {
        GuestKind::Lxc => "lxc",
        GuestKind::Qemu => "qemu",
    };
    let mine = observed
        .backups
        .iter()
        .filter(|b| b.vmid == vmid && b.kind == kind);
    if how == "latest" {
        // The newest by the time in its name, then by creation time.
        return Ok(mine.max_by(|a, b| {
            let ta = parse_name(&a.volid).map(|x| x.2).unwrap_or_default();
            let tb = parse_name(&b.volid).map(|x| x.2).unwrap_or_default();
            (ta, a.ctime).cmp(&(tb, b.ctime))
        }));
    }
    let err = |why: String| RestoreError::NoSuchBackup {
        vmid,
        name: d.name.clone(),
        kind: d.kind.noun(),
        volume: how.clone(),
        why,
    };
    match observed.backups.iter().find(|b| b.volid == *how) {
        Some(b) if b.vmid == vmid && b.kind == kind => Ok(Some(b)),
        Some(b) => Err(err(format!("is a backup of {} {}", b.kind, b.vmid))),
        None => {
            let have: Vec<&str> = observed
                .backups
                .iter()
                .filter(|b| b.vmid == vmid)
                .map(|b| b.volid.as_str())
                .collect();
            Err(err(format!(
                "is in no backup storage (backups of {vmid}: {})",
                if have.is_empty() {
                    "none".to_string()
                } else {
                    have.join(", ")
                }
            )))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn nics_keep_the_restored_mac() {
        let d = crate::model::desired::DesiredGuest {
            props: [
                ("net0".to_string(), "virtio,bridge=vmbr1".to_string()),
                ("net1".to_string(), "virtio,bridge=vmbr0".to_string()),
            ]
            .into_iter()
            .collect(),
            ..test_guest()
        };
        let restored = [
            (
                "net0".to_string(),
                "virtio=BC:24:11:00:00:01,bridge=vmbr0".to_string(),
            ),
            (
                "net1".to_string(),
                "virtio=BC:24:11:00:00:02,bridge=vmbr0".to_string(),
            ),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            nic_fixes(&d, &restored),
            vec![(
                "net0".to_string(),
                "virtio=BC:24:11:00:00:01,bridge=vmbr1".to_string()
            )]
        );
    }

    fn test_guest() -> crate::model::desired::DesiredGuest {
        crate::model::desired::DesiredGuest {
            vmid: 201,
            name: "x".into(),
            node: "pve".into(),
            kind: GuestKind::Qemu,
            props: Default::default(),
            disks: Default::default(),
            sensitive: Default::default(),
            spec_hash: String::new(),
            talos: None,
            iso: None,
            template: None,
            create_only: Default::default(),
            extra_tags: Vec::new(),
            boot: None,
            is_template: false,
            snippet: None,
        }
    }

    #[test]
    fn vzdump_names_parse() {
        assert_eq!(
            parse_name("b:backup/vzdump-lxc-103-2026_12_06-19_40_05.tar.zst"),
            Some(("lxc".into(), 103, "2026_12_06-19_40_05".into()))
        );
        assert_eq!(
            parse_name("b:backup/vzdump-qemu-9000-2026_12_06-19_40_05.vma.zst").map(|x| x.1),
            Some(9000)
        );
        assert!(parse_name("local:iso/talos.iso").is_none());
        assert!(parse_name("b:backup/vzdump-lxc-x-2026.tar").is_none());
    }
}
