//! What each storage plugin can do, as pve-storage's plugins declare it: the content
//! types a storage of that type may hold (`plugindata`) and the volume features
//! (`volume_has_feature`: snapshot, linked clone, template, copy) by volume state and
//! format. The handlers (clone, template) ask here instead of assuming every storage can
//! do everything: thick LVM has neither templates nor linked clones on a real host.

/// A volume feature (`$feature` of `PVE::Storage::volume_has_feature`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    /// Take a snapshot.
    Snapshot,
    /// Linked clone from it.
    Clone,
    /// Turn it into a base volume (template).
    Template,
    /// Full copy.
    Copy,
}

/// The state of the volume asked about (`$key` in `volume_has_feature`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolState {
    /// A guest's own volume.
    Current,
    /// A template's base volume (`base-<vmid>-disk-N`).
    Base,
    /// A snapshot of it.
    Snap,
}

/// Whether a volume named `volname` (the part after `storage:`) is a base volume.
pub fn state_of(volname: &str) -> VolState {
    let file = volname.rsplit('/').next().unwrap_or(volname);
    // A linked clone's volume is `base-100-disk-0/vm-101-disk-0`: its own part counts.
    if file.starts_with("base-") {
        VolState::Base
    } else {
        VolState::Current
    }
}

/// The image format of a volume name: a file extension on file storages, `subvol` for
/// container subvolumes, `raw` for block storages.
pub fn format_of(volname: &str) -> &str {
    let file = volname.rsplit('/').next().unwrap_or(volname);
    match file.rsplit_once('.') {
        Some((_, ext)) if matches!(ext, "qcow2" | "raw" | "vmdk") => ext,
        _ if file.starts_with("subvol-") || file.starts_with("basevol-") => "subvol",
        _ => "raw",
    }
}

/// `volume_has_feature` of the plugin for storage type `ty`. Unknown types have none.
pub fn volume_has_feature(ty: &str, feature: Feature, state: VolState, format: &str) -> bool {
    use Feature::*;
    use VolState::*;
    let f = |formats: &[&str]| formats.contains(&format);
    match ty {
        // pve-storage src/PVE/Storage/Plugin.pm volume_has_feature (Dir, NFS, CIFS,
        // CephFS inherit it): snapshots of qcow2 only, linked clones from any base image.
        "dir" | "nfs" | "cifs" | "cephfs" => match (feature, state) {
            (Snapshot, Current | Snap) => f(&["qcow2"]),
            (Clone, Base) => f(&["qcow2", "raw", "vmdk"]),
            (Template, Current) => f(&["qcow2", "raw", "vmdk", "subvol"]),
            (Copy, Base | Current) => f(&["qcow2", "raw", "vmdk"]),
            (Copy, Snap) => f(&["qcow2"]),
            _ => false,
        },
        // src/PVE/Storage/BTRFSPlugin.pm.
        "btrfs" => match (feature, state) {
            (Snapshot, Current | Snap) => f(&["qcow2", "raw", "subvol"]),
            (Clone, Base) => f(&["qcow2", "raw", "subvol", "vmdk"]),
            (Clone, Current | Snap) => f(&["raw"]),
            (Template, Current) => f(&["qcow2", "raw", "vmdk", "subvol"]),
            (Copy, Base | Current) => f(&["qcow2", "raw", "subvol", "vmdk"]),
            (Copy, Snap) => f(&["qcow2", "raw", "subvol"]),
            _ => false,
        },
        // src/PVE/Storage/LVMPlugin.pm: template and clone are commented out ("fixme: add
        // later"), and create_base dies "can't create base images in lvm storage".
        "lvm" => match (feature, state) {
            (Copy, Base | Current) => f(&["qcow2", "raw"]),
            (Copy, Snap) | (Snapshot, Current | Snap) => f(&["qcow2"]),
            _ => false,
        },
        // src/PVE/Storage/LvmThinPlugin.pm.
        "lvmthin" => matches!(
            (feature, state),
            (Snapshot, Current)
                | (Clone, Base | Snap)
                | (Template, Current)
                | (Copy, Base | Current | Snap)
        ),
        // src/PVE/Storage/ZFSPoolPlugin.pm.
        "zfspool" => matches!(
            (feature, state),
            (Snapshot, Current | Snap)
                | (Clone, Base)
                | (Template, Current)
                | (Copy, Base | Current)
        ),
        // src/PVE/Storage/ZFSPlugin.pm (ZFS over iSCSI).
        "zfs" => matches!(
            (feature, state),
            (Snapshot, Current | Snap)
                | (Clone, Base)
                | (Template, Current)
                | (Copy, Base | Current)
        ),
        // src/PVE/Storage/RBDPlugin.pm.
        "rbd" => matches!(
            (feature, state),
            (Snapshot, Current | Snap)
                | (Clone, Base | Snap)
                | (Template, Current)
                | (Copy, Base | Current | Snap)
        ),
        // src/PVE/Storage/ISCSIPlugin.pm, ISCSIDirectPlugin.pm: copies only.
        "iscsi" | "iscsidirect" => matches!((feature, state), (Copy, Current)),
        _ => false,
    }
}

/// The content types a storage of type `ty` may hold (the first hash of `plugindata`'s
/// `content`), `None` for a type the simulator does not know.
pub fn content_types(ty: &str) -> Option<&'static [&'static str]> {
    Some(match ty {
        // DirPlugin.pm, BTRFSPlugin.pm.
        "dir" | "btrfs" => &[
            "images", "rootdir", "vztmpl", "iso", "backup", "snippets", "none", "import",
        ],
        // NFSPlugin.pm, CIFSPlugin.pm.
        "nfs" | "cifs" => &[
            "images", "rootdir", "vztmpl", "iso", "backup", "snippets", "import",
        ],
        // CephFSPlugin.pm.
        "cephfs" => &["vztmpl", "iso", "backup", "snippets", "import"],
        // LVMPlugin.pm, LvmThinPlugin.pm, ZFSPoolPlugin.pm, RBDPlugin.pm.
        "lvm" | "lvmthin" | "zfspool" | "rbd" => &["images", "rootdir"],
        // ZFSPlugin.pm.
        "zfs" => &["images"],
        // ISCSIPlugin.pm, ISCSIDirectPlugin.pm.
        "iscsi" | "iscsidirect" => &["images", "none"],
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// pve-storage LVMPlugin.pm: thick LVM cannot make templates or linked clones, but
    /// copies (full clones) work; LvmThinPlugin.pm and ZFSPoolPlugin.pm can do both.
    #[test]
    fn thick_lvm_has_no_templates_or_linked_clones() {
        assert!(!volume_has_feature(
            "lvm",
            Feature::Template,
            VolState::Current,
            "raw"
        ));
        assert!(!volume_has_feature(
            "lvm",
            Feature::Clone,
            VolState::Base,
            "raw"
        ));
        assert!(volume_has_feature(
            "lvm",
            Feature::Copy,
            VolState::Current,
            "raw"
        ));
        assert!(!volume_has_feature(
            "lvm",
            Feature::Snapshot,
            VolState::Current,
            "raw"
        ));
        for ty in ["lvmthin", "zfspool", "rbd"] {
            assert!(volume_has_feature(
                ty,
                Feature::Template,
                VolState::Current,
                "raw"
            ));
            assert!(volume_has_feature(
                ty,
                Feature::Clone,
                VolState::Base,
                "raw"
            ));
        }
        // Plugin.pm: dir snapshots need qcow2; linked clones come from any base image.
        assert!(!volume_has_feature(
            "dir",
            Feature::Snapshot,
            VolState::Current,
            "raw"
        ));
        assert!(volume_has_feature(
            "dir",
            Feature::Snapshot,
            VolState::Current,
            "qcow2"
        ));
        assert!(volume_has_feature(
            "dir",
            Feature::Clone,
            VolState::Base,
            "raw"
        ));
        assert!(!volume_has_feature(
            "iscsi",
            Feature::Clone,
            VolState::Base,
            "raw"
        ));
    }

    #[test]
    fn volume_names() {
        assert_eq!(state_of("base-9000-disk-0"), VolState::Base);
        assert_eq!(
            state_of("base-9000-disk-0/vm-101-disk-0"),
            VolState::Current
        );
        assert_eq!(format_of("9000/base-9000-disk-0.qcow2"), "qcow2");
        assert_eq!(format_of("subvol-101-disk-0"), "subvol");
        assert_eq!(format_of("vm-101-disk-0"), "raw");
        assert_eq!(content_types("lvm"), Some(&["images", "rootdir"][..]));
        assert!(content_types("cephfs").is_some_and(|c| !c.contains(&"images")));
    }
}
