//! What Proxmox VE's storage plugins can do with guest disks, by plugin type (the
//! `plugintype` of a storage in `GET /cluster/resources`, `type` in `storage.cfg`).
//!
//! From pve-storage's `volume_has_feature` of each plugin (`src/PVE/Storage/*Plugin.pm`):
//! a linked clone needs the `clone` feature on the template's base volume, a template the
//! `template` feature. Thick LVM (`LVMPlugin.pm`) has neither — its entries are commented
//! out and `create_base` dies — so `qemu-server` refuses a linked clone on it with
//! `Linked clone feature is not supported for '<volid>' (<drive>)`. Full clones (`copy`)
//! work on every plugin that holds images.

/// Whether a template's disks on a storage of plugin type `plugin` can be cloned linked.
/// `None` for a plugin type this table does not know (ESXi, PBS, third-party plugins).
pub fn supports_linked_clones(plugin: &str) -> Option<bool> {
    match plugin {
        // Plugin.pm (dir, nfs, cifs, cephfs): any base image; BTRFSPlugin.pm, RBDPlugin.pm,
        // LvmThinPlugin.pm, ZFSPoolPlugin.pm, ZFSPlugin.pm: `clone => { base => 1 }`.
        "dir" | "nfs" | "cifs" | "cephfs" | "btrfs" | "rbd" | "lvmthin" | "zfspool" | "zfs" => {
            Some(true)
        }
        // LVMPlugin.pm, ISCSIPlugin.pm, ISCSIDirectPlugin.pm: copies only.
        "lvm" | "iscsi" | "iscsidirect" => Some(false),
        _ => None,
    }
}

/// Whether disks on a storage of plugin type `plugin` become base volumes when the guest
/// is converted to a template (`None`: unknown plugin type). qemu-server's
/// `template_create` silently leaves other volumes as they are.
pub fn supports_templates(plugin: &str) -> Option<bool> {
    match plugin {
        "dir" | "nfs" | "cifs" | "cephfs" | "btrfs" | "rbd" | "lvmthin" | "zfspool" | "zfs" => {
            Some(true)
        }
        "lvm" | "iscsi" | "iscsidirect" => Some(false),
        _ => None,
    }
}

/// Plugin types whose storages can hold a template for linked clones, for messages.
pub const LINKED_CLONE_PLUGINS: &[&str] = &[
    "lvmthin", "zfspool", "dir", "nfs", "cifs", "btrfs", "rbd", "zfs",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thick_lvm_cannot_clone_linked() {
        assert_eq!(supports_linked_clones("lvm"), Some(false));
        assert_eq!(supports_templates("lvm"), Some(false));
        assert_eq!(supports_linked_clones("lvmthin"), Some(true));
        assert_eq!(supports_linked_clones("zfspool"), Some(true));
        assert_eq!(supports_linked_clones("pbs"), None);
        for p in LINKED_CLONE_PLUGINS {
            assert_eq!(supports_linked_clones(p), Some(true), "{p}");
        }
    }
}
