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
            let g = desired.guests.iter().find(|g| g.vmid == *vmid);
            return Err(PlanError::UnknownGuestPool {
                kind: g.map_or("guest", |g| g.kind.noun()),
                vmid: *vmid,
                name: g.map(|g| g.name.clone()).unwrap_or_default(),
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::engine::observed::ObservedGuest;
    use crate::engine::pools::ObservedPool;
    use crate::model::desired::GuestKind;
    use crate::model::secrets::SecretValues;

    fn desired(pool: &str, pools: &str) -> Desired {
        let text = format!(
            "name: lab\nproxmox:\n  endpoint: https://pve:8006\n  token_id: a@pve!b\n  token_secret: ${{secret:t}}\n  node: pve\npools:\n{pools}vms:\n  machines:\n    - {{ name: nas, vmid: 201, adopt: true, pool: {pool} }}\n"
        );
        let l = crate::model::parse(std::path::Path::new("homelab.yaml"), text).unwrap();
        let s = SecretValues::from_pairs([("t".to_string(), "x".to_string())]);
        crate::model::desired::resolve(&l, &s, &crate::engine::image::FactoryNaming::default())
            .unwrap()
    }

    fn observed(in_pool: Option<&str>, pools: &[&str]) -> Observed {
        let mut o = Observed {
            pools: Some(
                pools
                    .iter()
                    .map(|p| ObservedPool {
                        id: p.to_string(),
                        comment: None,
                        members: None,
                    })
                    .collect(),
            ),
            ..Observed::default()
        };
        o.guests.push(ObservedGuest {
            vmid: 201,
            node: "pve".into(),
            kind: GuestKind::Qemu,
            name: Some("nas".into()),
            status: "running".into(),
            tags: Default::default(),
            maxmem: None,
            maxcpu: None,
            maxdisk: None,
            template: false,
            lock: None,
            config: None,
        });
        if let Some(p) = in_pool {
            o.guest_pools.insert(201, p.into());
        }
        o
    }

    #[test]
    fn a_pool_must_be_declared_or_exist() {
        let d = desired("ops", "  - name: infra\n");
        let e = check(&d, &observed(None, &[])).unwrap_err();
        assert!(
            e.to_string()
                .contains("vm 201 \"nas\" is to be in pool ops"),
            "{e}"
        );
        check(&d, &observed(None, &["ops"])).unwrap();
        check(&desired("infra", "  - name: infra\n"), &observed(None, &[])).unwrap();
    }

    #[test]
    fn membership_changes_join_the_guest_update_or_make_one() {
        let d = desired("infra", "  - name: infra\n");
        // Already there: nothing.
        let mut a = Vec::new();
        merge(&d, &observed(Some("infra"), &["infra"]), &mut a);
        assert!(a.is_empty());
        // Elsewhere: an update of its own, no restart.
        merge(&d, &observed(Some("old"), &["infra", "old"]), &mut a);
        let [
            Action::Update {
                changes, reboot, ..
            },
        ] = a.as_slice()
        else {
            panic!("{a:?}")
        };
        assert!(!reboot);
        assert_eq!(changes[0].from.as_deref(), Some("old"));
        assert_eq!(changes[0].to.as_deref(), Some("infra"));
        // Being adopted: the change rides on the adoption.
        let mut a = vec![Action::Adopt {
            vmid: 201,
            name: "nas".into(),
            node: "pve".into(),
            kind: GuestKind::Qemu,
            changes: Vec::new(),
        }];
        merge(&d, &observed(None, &["infra"]), &mut a);
        let [Action::Adopt { changes, .. }] = a.as_slice() else {
            panic!("{a:?}")
        };
        assert_eq!(changes[0].key, "pool");
        // Its step waits for the pool when the plan creates it.
        let plan = vec![Action::CreatePool {
            id: "infra".into(),
            comment: String::new(),
        }];
        assert_eq!(deps(&d, &plan, 201), vec!["pool:infra".to_string()]);
        assert!(deps(&d, &[], 201).is_empty());
    }
}
