//! Talos planning: secrets, apply, bootstrap, upgrades, outputs.

use super::*;

/// Add the Talos steps (secrets bundle, apply, bootstrap, outputs) to a guest plan.
pub fn plan_talos(desired: &Desired, talos: &TalosObserved, mut plan: Plan) -> Plan {
    let Some(cluster) = &desired.talos else {
        return plan;
    };
    if !talos.secrets_present {
        plan.actions.push(Action::GenerateTalosSecrets {
            path: cluster.secrets_file.display().to_string(),
        });
    }
    let recreated: BTreeSet<u32> = plan
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Create { vmid, .. } | Action::Replace { vmid, .. } => Some(*vmid),
            _ => None,
        })
        .collect();
    let mut any_apply = false;
    for d in desired.guests.iter().filter(|g| g.talos.is_some()) {
        let configured = talos.configured.contains(&d.vmid);
        if recreated.contains(&d.vmid) || !configured {
            any_apply = true;
            plan.actions.push(Action::TalosApplyConfig {
                vmid: d.vmid,
                name: d.name.clone(),
                role: d
                    .talos
                    .as_ref()
                    .map(|t| t.role.to_string())
                    .unwrap_or_default(),
            });
        }
    }
    let first_cp = cluster.nodes.iter().find_map(|vmid| {
        desired
            .guests
            .iter()
            .find(|g| g.vmid == *vmid && g.is_control_plane())
    });
    let all_cps_recreated = desired
        .guests
        .iter()
        .filter(|g| g.is_control_plane())
        .all(|g| recreated.contains(&g.vmid));
    if let Some(cp) = first_cp
        && (!talos.bootstrapped || all_cps_recreated)
    {
        plan.actions.push(Action::TalosBootstrap {
            vmid: cp.vmid,
            name: cp.name.clone(),
        });
    }
    let schematics: BTreeMap<u32, String> = talos
        .running
        .iter()
        .filter_map(|(vmid, r)| Some((*vmid, r.schematic.clone()?)))
        .collect();
    plan.actions.extend(crate::engine::day2::plan_upgrades(
        desired,
        &talos.versions,
        &schematics,
        &recreated,
    ));
    plan.actions
        .extend(crate::engine::metal::plan(desired, talos));
    if let Some(k) = &talos.kubernetes
        && let Ok(Some(a)) = crate::engine::k8s_upgrade::plan(desired, k)
    {
        plan.actions.push(a);
    }
    let fresh = any_apply || !talos.secrets_present;
    if fresh || !talos.talosconfig_current {
        plan.actions.push(Action::WriteOutput {
            what: "talosconfig".into(),
            path: desired.outputs.talosconfig.display().to_string(),
            reason: renew_reason(talos, "talosconfig", fresh),
        });
    }
    if fresh || !talos.kubeconfig_current {
        plan.actions.push(Action::WriteOutput {
            what: "kubeconfig".into(),
            path: desired.outputs.kubeconfig.display().to_string(),
            reason: renew_reason(talos, "kubeconfig", fresh),
        });
    }
    if let Some(a) = crate::engine::etcd_backup::before_changes(desired, talos, &plan) {
        plan.actions.insert(0, a);
    }
    plan.finish()
}

/// Why an output is written again when its certificate is what makes it due.
fn renew_reason(talos: &TalosObserved, what: &str, fresh: bool) -> Option<String> {
    if fresh {
        return None;
    }
    talos
        .renew
        .iter()
        .find(|c| c.output == what)
        .map(crate::engine::certs::reason)
}
