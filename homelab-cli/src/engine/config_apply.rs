//! Applying machine-config changes: the steps `up` runs for the plan's
//! [`Action::TalosConfigChange`]s (VM nodes, then metal nodes, one at a time after the
//! upgrades) and the apply-and-wait each of them does.

use std::sync::Arc;

use futures_util::FutureExt;
use serde_yaml_ng::Value;
use talos_api::apply_mode::NeededMode;

use super::apply::Env;
use super::config_change::{ApplyWith, config_to_apply, desired_docs};
use super::graph::{Step, StepError};
use super::plan::Action;

/// The config-change steps: one after the other, control planes first, after the rolling
/// upgrades; a change that rides on an upgrade is staged right before that node's upgrade
/// step.
pub fn add_steps(env: &Arc<Env>, actions: &[Action], out: &mut Vec<Step>) {
    let last_upgrade = out
        .iter()
        .rev()
        .find(|s| s.id.starts_with("upgrade:"))
        .map(|s| s.id.clone());
    let mut previous = last_upgrade;
    for a in actions {
        let Action::TalosConfigChange {
            vmid,
            name,
            role,
            mode,
            with_upgrade,
            ..
        } = a.clone()
        else {
            continue;
        };
        let e = env.clone();
        let Some(vmid) = vmid else {
            // A metal node: after every upgrade (the metal ones roll last) and the change
            // before it.
            let id = format!("config:metal:{name}");
            let mut deps: Vec<String> = previous.iter().cloned().collect();
            deps.extend(
                out.iter()
                    .filter(|s| s.id.starts_with("metal-upgrade:"))
                    .map(|s| s.id.clone()),
            );
            let label = match mode {
                ApplyWith::NoReboot => {
                    format!("apply the machine config of metal {role} \"{name}\" (no reboot)")
                }
                ApplyWith::Reboot => {
                    format!("apply the machine config of metal {role} \"{name}\" (reboots)")
                }
                ApplyWith::Staged => format!("stage the machine config of metal {role} \"{name}\""),
            };
            out.push(Step {
                id: id.clone(),
                label,
                deps,
                run: async move { super::metal_config::apply(&e, &name, mode).await }.boxed(),
            });
            previous = Some(id);
            continue;
        };
        let id = format!("config:{vmid}");
        let run = async move { apply_node(&e, vmid, mode, with_upgrade).await }.boxed();
        if with_upgrade && let Some(up) = out.iter_mut().find(|s| s.id == format!("upgrade:{vmid}"))
        {
            let deps = std::mem::replace(&mut up.deps, vec![id.clone()]);
            out.push(Step {
                id,
                label: format!(
                    "stage the machine config of {role} \"{name}\" for its upgrade's reboot"
                ),
                deps,
                run,
            });
            continue;
        }
        let mut deps: Vec<String> = previous.iter().cloned().collect();
        let own = format!("guest:{vmid}");
        if out.iter().any(|s| s.id == own) {
            deps.push(own);
        }
        let label = match mode {
            ApplyWith::NoReboot => {
                format!("apply the machine config of {role} \"{name}\" (no reboot)")
            }
            ApplyWith::Reboot => format!("apply the machine config of {role} \"{name}\" (reboots)"),
            ApplyWith::Staged => format!("stage the machine config of {role} \"{name}\""),
        };
        out.push(Step {
            id: id.clone(),
            label,
            deps,
            run,
        });
        previous = Some(id);
    }
}

/// Apply one node's config with `mode` and wait until it runs it, healthy.
async fn apply_node(
    env: &Env,
    vmid: u32,
    mode: ApplyWith,
    with_upgrade: bool,
) -> Result<String, StepError> {
    let super::day2::NodeTarget {
        cluster,
        bundle,
        guest: d,
        ip: _,
        builder,
        client,
    } = super::day2::node_target(env, vmid)?;
    let desired = desired_docs(cluster, d, bundle).map_err(StepError::new)?;
    let node = ConfigTarget {
        name: &d.name,
        control_plane: d.is_control_plane(),
        console: "the Proxmox console",
        builder,
        client,
    };
    apply_config(env, node, &desired, mode, with_upgrade).await
}

/// A running node a config is applied to.
pub(crate) struct ConfigTarget<'a> {
    /// Its name.
    pub name: &'a str,
    /// Whether it runs etcd.
    pub control_plane: bool,
    /// Where to look when it does not come back (`the Proxmox console`).
    pub console: &'a str,
    /// Its Talos API (mTLS), to build fresh clients while it reboots.
    pub builder: talos_api::client::ClientBuilder,
    /// A client of it.
    pub client: talos_api::client::Client,
}

/// Apply `desired` (the node's documents, before the running Kubernetes images are kept)
/// with `mode` and wait until the node runs it, healthy.
pub(crate) async fn apply_config(
    env: &Env,
    node: ConfigTarget<'_>,
    desired: &[Value],
    mode: ApplyWith,
    with_upgrade: bool,
) -> Result<String, StepError> {
    let ConfigTarget {
        name,
        control_plane,
        console,
        builder,
        client,
    } = node;
    let read = |b: zeroize::Zeroizing<Vec<u8>>| -> Result<Vec<Value>, StepError> {
        let text = String::from_utf8(b.to_vec())
            .map_err(|_| StepError::new(format!("{}: the running config is not UTF-8", name)))?;
        talos_api::yaml::parse_documents(&text, "running machine config")
            .map_err(|e| StepError::new(format!("{}: {e}", name)))
    };
    let running =
        read(client.machine_config().await.map_err(|e| {
            StepError::new(format!("{}: cannot read its machine config: {e}", name))
        })?)?;
    let want = config_to_apply(desired, &running);
    // A re-run after the change went through has nothing left to do (a staged config
    // waits in the `persistent` resource).
    let target = if mode == ApplyWith::Staged {
        read(
            client
                .machine_config_with_id(talos_api::cosi::PERSISTENT_ID)
                .await
                .map_err(|e| StepError::new(format!("{}: {e}", name)))?,
        )?
    } else {
        running.clone()
    };
    if talos_api::apply_mode::decide(&target, &want).0 == NeededMode::Unchanged {
        return Ok(format!("{} already has it", name));
    }
    let boot_before = if mode == ApplyWith::Reboot {
        Some(
            client
                .boot_id()
                .await
                .map_err(|e| StepError::new(format!("{}: boot ID: {e}", name)))?,
        )
    } else {
        None
    };
    let yaml = zeroize::Zeroizing::new(talos_api::yaml::to_multi_doc_string(&want));
    client
        .apply_configuration(yaml.as_bytes(), mode.api(), false)
        .await
        .map_err(|e| {
            StepError::new(format!("{}: apply-config refused: {e}", name))
                .hint("run `homelab-cli plan` again: the node may have changed since this plan")
        })?;
    if mode == ApplyWith::Staged {
        return Ok(if with_upgrade {
            format!("{} staged; its upgrade's reboot takes it", name)
        } else {
            format!("{} staged; taken at its next reboot", name)
        });
    }
    let opts = talos_api::health::WaitOptions::new(env.timeouts.talos).interval(env.timeouts.poll);
    let stuck = |what: String| {
        StepError::new(format!(
            "{} did not come back with its new machine config: {what}; the roll stopped here and the nodes after it are untouched",
            name
        ))
        .hint(format!(
            "look at \"{name}\" in {console}; once it answers, re-run `homelab-cli up` to resume"
        ))
    };
    let client = talos_api::health::wait_for("the node to run its new config", &opts, || {
        let b = builder.clone();
        let before = boot_before.clone();
        let want = want.clone();
        async move {
            let c = b.build()?;
            if let Some(before) = before
                && c.boot_id().await? == before
            {
                return Err(talos_api::Error::InvalidConfig("not rebooted yet".into()));
            }
            let text = c.machine_config().await?;
            let docs = talos_api::yaml::parse_documents(
                &String::from_utf8_lossy(&text),
                "running machine config",
            )?;
            if talos_api::apply_mode::decide(&docs, &want).0 == NeededMode::Unchanged {
                Ok(c)
            } else {
                Err(talos_api::Error::InvalidConfig(
                    "still on the old config".into(),
                ))
            }
        }
    })
    .await
    .map_err(|e| stuck(e.to_string()))?;
    if control_plane {
        wait_control_plane(env, &client, &opts)
            .await
            .map_err(|e| stuck(format!("etcd: {e}")))?;
    }
    Ok(match mode {
        ApplyWith::Reboot => format!("{} rebooted with its new config", name),
        _ => format!("{} runs its new config", name),
    })
}

/// etcd healthy, and every VM control plane a member again; the rolling upgrade waits the
/// same way.
pub(crate) async fn wait_control_plane(
    env: &Env,
    client: &talos_api::client::Client,
    opts: &talos_api::health::WaitOptions<'_>,
) -> Result<(), talos_api::Error> {
    talos_api::health::wait_etcd_healthy(client, opts).await?;
    // At least the VM control planes (a metal one may not have booted yet in this run).
    let want = env
        .desired
        .guests
        .iter()
        .filter(|g| g.is_control_plane())
        .count();
    talos_api::health::wait_for("every etcd member", opts, || {
        let c = client.clone();
        async move {
            let n: usize = c
                .etcd_member_list(false)
                .await?
                .iter()
                .map(|m| m.members.len())
                .sum();
            if n >= want {
                Ok(())
            } else {
                Err(talos_api::Error::InvalidConfig(format!(
                    "{n} of {want} etcd members"
                )))
            }
        }
    })
    .await
}
