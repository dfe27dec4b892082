//! Plan-time check of declared linked clones against the storage plugin holding their
//! template: a linked clone needs the `clone` feature on the template's base volumes,
//! which thick LVM (and iSCSI) lack in pve-storage (`volume_has_feature`). Proxmox would
//! refuse the clone only after the template was built; refusing at plan time means
//! nothing is created. Storages whose type is unknown (not in the resource list, or a
//! plugin type the table does not know) are not judged.

use super::observed::Observed;
use super::plan::PlanError;
use crate::model::desired::{BootSource, Desired};

/// Refuse the first declared linked clone whose template has a disk on a storage without
/// linked clones.
pub fn check(desired: &Desired, observed: &Observed) -> Result<(), PlanError> {
    for g in &desired.guests {
        let Some(BootSource::Clone {
            template,
            full: false,
        }) = &g.boot
        else {
            continue;
        };
        let Some(t) = desired.guests.iter().find(|t| t.vmid == *template) else {
            continue;
        };
        let types = observed.storage_types.get(&t.node);
        for (disk, spec) in &t.disks {
            // qemu-server clone_vm copies cloud-init drives and TPM state even for linked
            // clones; only the other disks need the `clone` feature.
            if spec.cloudinit || disk == "tpmstate0" {
                continue;
            }
            let Some(plugin) = types.and_then(|t| t.get(&spec.storage)) else {
                continue;
            };
            if proxmox_client::plugins::supports_linked_clones(plugin) == Some(false) {
                return Err(PlanError::NoLinkedClones {
                    name: g.name.clone(),
                    vmid: g.vmid,
                    template: t.vmid,
                    disk: disk.clone(),
                    storage: spec.storage.clone(),
                    plugin: plugin.clone(),
                });
            }
        }
    }
    Ok(())
}
