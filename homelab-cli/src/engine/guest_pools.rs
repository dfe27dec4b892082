//! Guest membership in resource pools (`pool:` on a container or VM): observed from the
//! `pool` field of `/cluster/resources`, set on creation through the create call's `pool`
//! parameter (qemu-server and pve-container `create_vm` add the new guest to it), and for
//! an existing guest in another pool (or none) moved with `PUT /pools` (`poolid`, `vms`,
//! `allow-move`: the PVE 9.1 schema's `update_pool`; the `/pools/{poolid}` form is
//! deprecated). A guest that declares no pool keeps whatever membership it has.

use std::collections::BTreeSet;

use proxmox_client::{Client, ParamValue};

use super::observed::Observed;
use super::plan::{Action, Change, PlanError};
use crate::model::desired::Desired;

/// Every pool a guest names must be declared under `pools:` or exist.
pub fn check(desired: &Desired, observed: &Observed) -> Result<(), PlanError> {
    let known: BTreeSet<&str> = desired
        .pools
        .iter()
        .map(|p| p.id.as_str())
        .chain(observed.pools.iter().flatten().map(|p| p.id.as_str()))
        .collect();
    for (vmid, pool) in &desired.guest_pools {
        if !known.contains(pool.as_str()) {
            let name = desired
                .guests
                .iter()
                .find(|g| g.vmid == *vmid)
                .map(|g| g.name.clone())
                .unwrap_or_default();
            return Err(PlanError::UnknownGuestPool {
                vmid: *vmid,
                name,
                pool: pool.clone(),
            });
        }
    }
    Ok(())
}

/// The membership change of each existing declared guest whose pool differs, added to its
/// update (or adoption), or as an update of its own. Never a restart.
pub fn merge(desired: &Desired, observed: &Observed, actions: &mut Vec<Action>) {
    for d in &desired.guests {
        let Some(want) = desired.guest_pools.get(&d.vmid) else {
            continue;
        };
        if observed.guest(d.vmid).is_none() {
            continue; // created in it
        }
        let have = observed.guest_pools.get(&d.vmid);
        if have == Some(want) {
            continue;
        }
        // Replaced guests are created in it.
        if actions
            .iter()
            .any(|a| matches!(a, Action::Replace { vmid, .. } if *vmid == d.vmid))
        {
            continue;
        }
        let change = Change {
            key: "pool".into(),
            from: have.cloned(),
            to: Some(want.clone()),
            reboot: false,
            sensitive: false,
            shown: true,
        };
        let existing = actions.iter_mut().find_map(|a| match a {
            Action::Update { vmid, changes, .. } | Action::Adopt { vmid, changes, .. }
                if *vmid == d.vmid =>
            {
                Some(changes)
            }
            _ => None,
        });
        match existing {
            Some(changes) => changes.push(change),
            None => {
                // Before a start of the same guest, which waits for its update.
                let at = actions
                    .iter()
                    .position(|a| matches!(a, Action::Start { vmid, .. } if *vmid == d.vmid))
                    .unwrap_or(actions.len());
                actions.insert(
                    at,
                    Action::Update {
                        vmid: d.vmid,
                        name: d.name.clone(),
                        node: d.node.clone(),
                        kind: d.kind,
                        changes: vec![change],
                        reboot: false,
                    },
                );
            }
        }
    }
}

/// The step ids a guest's create or update waits for: the creation of its pool.
pub fn deps(desired: &Desired, actions: &[Action], vmid: u32) -> Vec<String> {
    let Some(pool) = desired.guest_pools.get(&vmid) else {
        return Vec::new();
    };
    actions
        .iter()
        .filter(|a| matches!(a, Action::CreatePool { id, .. } if id == pool))
        .map(|_| format!("pool:{pool}"))
        .collect()
}

/// Move guest `vmid` into `pool` (out of any other: `allow-move`).
pub async fn join(client: &Client, vmid: u32, pool: &str) -> Result<(), proxmox_client::Error> {
    let _: serde_json::Value = client
        .put(
            "/pools",
            &[
                ("poolid", ParamValue::from(pool)),
                ("vms", ParamValue::from(vmid.to_string())),
                ("allow-move", ParamValue::Bool(true)),
            ],
        )
        .await?;
    Ok(())
}
