//! Machine-config changes on running bare-metal nodes (`talos.metal`): the same diff, apply
//! mode and wait as for the VM nodes ([`super::config_change`]), with the metal node's own
//! config (metal installer, no static network, the cluster-wide and role patches). They are
//! applied after every VM node's change and every upgrade, one node at a time.

use talos_api::secrets::SecretsBundle;

use super::apply::Env;
use super::config_apply::{ConfigTarget, apply_config};
use super::config_change::{ApplyWith, ConfigMode, change_of};
use super::graph::StepError;
use super::metal::{MetalTarget, metal_installer, metal_machine_config, metal_target};
use super::observed::TalosObserved;
use super::plan::{Action, Plan};
use crate::model::config::Role;
use crate::model::desired::{Desired, TalosCluster};
use crate::model::metal::MetalNode;

/// The documents a metal node should run (before the running Kubernetes images are kept).
fn desired_docs(
    cluster: &TalosCluster,
    node: &MetalNode,
    bundle: &SecretsBundle,
) -> Result<Vec<serde_yaml_ng::Value>, String> {
    metal_machine_config(cluster, &metal_installer(cluster), None, node, bundle)
        .map(|c| c.documents().to_vec())
        .map_err(|e| format!("machine config of {}: {e}", node.name))
}

/// The config changes of the configured metal nodes whose running config (read by
/// [`super::metal::observe`]) differs from theirs, control planes first, added to `plan`.
/// A node the plan boots is left out (it gets its config when it boots); one the plan
/// upgrades gets the change after its upgrade.
pub fn plan_config_changes(
    desired: &Desired,
    observed: &TalosObserved,
    bundle: Option<&SecretsBundle>,
    mode: ConfigMode,
    mut plan: Plan,
) -> Result<Plan, String> {
    let (Some(cluster), Some(bundle)) = (&desired.talos, bundle) else {
        return Ok(plan);
    };
    let booting = |name: &str| {
        plan.actions
            .iter()
            .any(|a| matches!(a, Action::BootMetal { name: n, .. } if n == name))
    };
    let mut changes = Vec::new();
    for role in [Role::Controlplane, Role::Worker] {
        for m in cluster.metal.iter().filter(|m| m.role == role) {
            if booting(&m.name) {
                continue;
            }
            let Some(text) = observed
                .metal
                .get(&m.name)
                .filter(|o| o.talos == "configured")
                .and_then(|o| o.config.as_deref())
            else {
                continue;
            };
            let desired = desired_docs(cluster, m, bundle)?;
            let secrets = &cluster.metal_patches.for_role(role).secret_values;
            changes.extend(change_of(
                (None, &m.name, role),
                text,
                &desired,
                secrets,
                (mode, false),
            )?);
        }
    }
    plan.actions.extend(changes);
    Ok(plan.finish())
}

/// Apply the config of the metal node `name` with `mode` and wait until it runs it.
pub async fn apply(env: &Env, name: &str, mode: ApplyWith) -> Result<String, StepError> {
    let MetalTarget {
        cluster,
        node,
        bundle,
        builder,
        client,
    } = metal_target(env, name)?;
    let desired = desired_docs(cluster, node, bundle).map_err(StepError::new)?;
    let target = ConfigTarget {
        name,
        control_plane: node.role == Role::Controlplane,
        console: "the machine's console",
        builder,
        client,
    };
    apply_config(env, target, &desired, mode, false).await
}
