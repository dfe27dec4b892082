//! Kubernetes upgrades (`talos.cluster.kubernetes_version`): what the cluster runs, read
//! statelessly through the Kubernetes API (Nodes, kube-system pods, the kube-proxy
//! DaemonSet); the plan's `kubernetes upgrade 1.35.4 -> 1.35.5` with the version checks of
//! `talosctl upgrade-k8s`; and its steps in that command's order
//! ([`talos_api::k8s_upgrade::steps`]): each static pod on every control plane, the
//! kube-proxy image in the control planes' configs, the kubelet on every node, then the
//! kube-proxy DaemonSet. Each step applies the node's config without a reboot and waits
//! for the component to report the new version (and be Ready) before the next one. No
//! node reboots.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use futures_util::FutureExt;
use talos_api::k8s_upgrade::{self as ku, Component, KubeVersion};
use talos_api::kube::KubeClient;
use talos_api::kube_components::{ComponentPod, NodeInfo};

use super::apply::Env;
use super::graph::{Step, StepError};
use super::plan::Action;
use super::talos;
use crate::model::desired::{Desired, DesiredGuest};

/// What the cluster's Kubernetes components run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct K8sObserved {
    /// Nodes (kubelet versions, Ready).
    pub nodes: Vec<NodeInfo>,
    /// Control-plane static pods and kube-proxy pods.
    pub pods: Vec<ComponentPod>,
    /// The kube-proxy DaemonSet's image.
    pub proxy_image: Option<String>,
}

impl K8sObserved {
    /// Every component version observed, with what runs it (`kubelet on cp-1`).
    pub fn versions(&self) -> Vec<(String, KubeVersion)> {
        let mut out = Vec::new();
        for n in &self.nodes {
            if let Ok(v) = KubeVersion::parse(&n.kubelet_version) {
                out.push((format!("kubelet on {}", n.name), v));
            }
        }
        for p in &self.pods {
            if p.component != Component::Proxy
                && let Some(v) = p.version()
            {
                out.push((format!("{} on {}", p.component, p.node_name), v));
            }
        }
        if let Some(v) = self
            .proxy_image
            .as_deref()
            .and_then(KubeVersion::from_image)
        {
            out.push(("kube-proxy".into(), v));
        }
        out
    }
}

/// Read Nodes, kube-system pods and the kube-proxy DaemonSet (three reads, whole cluster).
pub async fn observe(kubeconfig: &str) -> Result<K8sObserved, talos_api::Error> {
    let k = KubeClient::from_kubeconfig(kubeconfig)?;
    let (nodes, pods, proxy) =
        futures_util::join!(k.node_versions(), k.component_pods(), k.kube_proxy_image());
    Ok(K8sObserved {
        nodes: nodes?,
        pods: pods?,
        proxy_image: proxy?,
    })
}

/// The Kubernetes version the cluster is to run.
pub fn desired_version(desired: &Desired) -> Option<String> {
    let c = desired.talos.as_ref()?;
    Some(
        c.kubernetes_version
            .clone()
            .unwrap_or_else(|| talos_api::config::DEFAULT_KUBERNETES_VERSION.into())
            .trim_start_matches('v')
            .to_string(),
    )
}

/// The upgrade the plan needs, if any: from the lowest version any component runs (as
/// `upgrade-k8s` detects it) to the desired one. Refuses a path `upgrade-k8s` refuses
/// (more than one minor, a minor downgrade) and a version the desired Talos does not run.
pub fn plan(desired: &Desired, observed: &K8sObserved) -> Result<Option<Action>, String> {
    let (Some(cluster), Some(to_text)) = (&desired.talos, desired_version(desired)) else {
        return Ok(None);
    };
    let to = KubeVersion::parse(&to_text).map_err(|e| e.to_string())?;
    let versions = observed.versions();
    if versions.iter().all(|(_, v)| *v == to) {
        return Ok(None);
    }
    let Some((_, from)) = versions.iter().min_by_key(|(_, v)| *v) else {
        return Ok(None);
    };
    ku::check_path(from, &to).map_err(|e| e.to_string())?;
    ku::check_talos_compatibility(&to, &cluster.version).map_err(|e| e.to_string())?;
    let (cps, workers) = nodes(desired);
    Ok(Some(Action::KubernetesUpgrade {
        from: from.to_string(),
        to: to.to_string(),
        control_planes: cps.iter().map(|g| g.name.clone()).collect(),
        workers: workers.iter().map(|g| g.name.clone()).collect(),
    }))
}

/// Control planes and workers with a static address, in declaration order.
fn nodes(desired: &Desired) -> (Vec<&DesiredGuest>, Vec<&DesiredGuest>) {
    let mut cps = Vec::new();
    let mut workers = Vec::new();
    let Some(cluster) = &desired.talos else {
        return (cps, workers);
    };
    for vmid in &cluster.nodes {
        let Some(g) = desired.guests.iter().find(|g| g.vmid == *vmid) else {
            continue;
        };
        if g.talos.as_ref().and_then(|t| t.ip).is_none() {
            continue;
        }
        if g.is_control_plane() {
            cps.push(g);
        } else {
            workers.push(g);
        }
    }
    (cps, workers)
}

fn step_id(s: &ku::Step<u32>) -> String {
    match s {
        ku::Step::StaticPod { component, node } => format!("k8s:{component}:{node}"),
        ku::Step::ProxyConfig { node } => format!("k8s:proxy-config:{node}"),
        ku::Step::Kubelet { node } => format!("k8s:kubelet:{node}"),
        ku::Step::Manifests => "k8s:manifests".into(),
        _ => "k8s:other".into(),
    }
}

/// The upgrade's steps, one after the other, after every other step of the run (Talos
/// upgrades and config changes first, as Talos recommends).
pub fn upgrade_steps(env: &Arc<Env>, actions: &[Action], existing: &[Step]) -> Vec<Step> {
    let Some(Action::KubernetesUpgrade { from, to, .. }) = actions
        .iter()
        .find(|a| matches!(a, Action::KubernetesUpgrade { .. }))
    else {
        return Vec::new();
    };
    let (Ok(to_v), Ok(from_v)) = (KubeVersion::parse(to), KubeVersion::parse(from)) else {
        return Vec::new();
    };
    let (cps, workers) = nodes(&env.desired);
    let cp_ids: Vec<u32> = cps.iter().map(|g| g.vmid).collect();
    let w_ids: Vec<u32> = workers.iter().map(|g| g.vmid).collect();
    let order = Arc::new(ku::steps(&cp_ids, &w_ids));
    let mut previous: Vec<String> = existing.iter().map(|s| s.id.clone()).collect();
    let mut out = Vec::new();
    for index in 0..order.len() {
        let s = &order[index];
        let id = step_id(s);
        let name = s
            .node()
            .and_then(|v| env.desired.guests.iter().find(|g| g.vmid == *v))
            .map(|g| g.name.clone());
        let label = match (s, &name) {
            (ku::Step::ProxyConfig { .. }, Some(n)) => {
                format!("kubernetes upgrade: kube-proxy image in the config of \"{n}\" -> {to}")
            }
            (ku::Step::Manifests, _) => {
                format!("kubernetes upgrade: sync the kube-proxy DaemonSet -> {to}")
            }
            (_, Some(n)) => format!(
                "kubernetes upgrade: {} on \"{n}\" {from} -> {to} (no reboot)",
                s.component()
            ),
            _ => format!("kubernetes upgrade: {}", s.component()),
        };
        let e = env.clone();
        let order = order.clone();
        out.push(Step {
            id: id.clone(),
            label,
            deps: std::mem::take(&mut previous),
            run: async move { run_step(&e, &order, index, &from_v, &to_v).await }.boxed(),
        });
        previous = vec![id];
    }
    out
}

fn kube(env: &Env) -> Result<KubeClient, StepError> {
    let (cluster, bundle) = env.cluster_and_bundle()?;
    let kc = talos::direct_kubeconfig(&env.desired, cluster, bundle)
        .map_err(|e| StepError::new(format!("kubeconfig: {e}")))?;
    KubeClient::from_kubeconfig(&kc).map_err(|e| StepError::new(format!("kubeconfig: {e}")))
}

/// Where a step is in the upgrade.
struct Position<'a> {
    order: &'a [ku::Step<u32>],
    index: usize,
    from: &'a KubeVersion,
    to: &'a KubeVersion,
}

/// The node's config for step `index`: the desired config, with each component's image at
/// the new version when its step on this node is at or before `index`, else at what the
/// node runs now (observed), else the version the upgrade starts from.
fn config_for_step(
    env: &Env,
    g: &DesiredGuest,
    ip: IpAddr,
    at: &Position<'_>,
    observed: &K8sObserved,
) -> Result<String, StepError> {
    let (cluster, bundle) = env.cluster_and_bundle()?;
    let config = talos::machine_config(cluster, g, bundle)
        .map_err(|e| StepError::new(format!("machine config of {}: {e}", g.name)))?;
    let text = config.to_yaml().to_string();
    let ip_text = ip.to_string();
    let images: Vec<(Component, String)> = Component::ALL
        .into_iter()
        .map(|c| {
            let done = at.order[..=at.index]
                .iter()
                .any(|s| s.node() == Some(&g.vmid) && s.component() == c);
            let now = match c {
                Component::Kubelet => observed
                    .nodes
                    .iter()
                    .find(|n| n.name == g.name || n.addresses.contains(&ip_text))
                    .and_then(|n| KubeVersion::parse(&n.kubelet_version).ok()),
                Component::Proxy => observed
                    .proxy_image
                    .as_deref()
                    .and_then(KubeVersion::from_image),
                _ => observed
                    .pods
                    .iter()
                    .find(|p| p.component == c && (p.node_name == g.name || p.host_ip == ip_text))
                    .and_then(ComponentPod::version),
            };
            let v = if done {
                *at.to
            } else {
                now.unwrap_or(*at.from)
            };
            (c, c.image(&v))
        })
        .collect();
    ku::with_images(&text, &images).map_err(|e| StepError::new(e.to_string()))
}

async fn read(k: &KubeClient) -> Result<K8sObserved, talos_api::Error> {
    let (nodes, pods, proxy) =
        futures_util::join!(k.node_versions(), k.component_pods(), k.kube_proxy_image());
    Ok(K8sObserved {
        nodes: nodes?,
        pods: pods?,
        proxy_image: proxy?,
    })
}

async fn run_step(
    env: &Env,
    order: &[ku::Step<u32>],
    index: usize,
    from: &KubeVersion,
    to: &KubeVersion,
) -> Result<String, StepError> {
    let step = &order[index];
    let k = kube(env)?;
    let opts = talos_api::health::WaitOptions::new(env.timeouts.talos)
        .interval(env.timeouts.poll.min(std::time::Duration::from_secs(1)))
        .progress(&crate::engine::waits::report);
    let observed = talos_api::health::wait_for("the Kubernetes API", &opts, || read(&k))
        .await
        .map_err(|e| StepError::new(format!("Kubernetes API: {e}")))?;
    let component = step.component();
    if let ku::Step::Manifests = step {
        let image = Component::Proxy.image(to);
        if observed.proxy_image.is_none() {
            return Ok("no kube-proxy DaemonSet".into());
        }
        if observed.proxy_image.as_deref() != Some(image.as_str()) {
            k.set_kube_proxy_image(&image)
                .await
                .map_err(|e| StepError::new(format!("kube-proxy DaemonSet: {e}")))?;
        }
        talos_api::health::wait_for("kube-proxy pods on the new version", &opts, || {
            let k = k.clone();
            let image = image.clone();
            async move {
                let pods = k.component_pods().await?;
                let behind: Vec<String> = pods
                    .iter()
                    .filter(|p| p.component == Component::Proxy && (p.image != image || !p.ready))
                    .map(|p| p.name.clone())
                    .collect();
                if behind.is_empty() {
                    Ok(())
                } else {
                    Err(talos_api::Error::InvalidConfig(format!(
                        "not yet on {image}: {}",
                        behind.join(", ")
                    )))
                }
            }
        })
        .await
        .map_err(|e| StepError::new(format!("kube-proxy did not roll out {to}: {e}")))?;
        return Ok(format!("kube-proxy runs {to}"));
    }
    let vmid = *step
        .node()
        .ok_or_else(|| StepError::new("step without a node"))?;
    let (g, ip) = env.static_talos_node(vmid)?;
    let ip_text = ip.to_string();
    let want = format!("v{to}");
    let on_node = |o: &K8sObserved| -> Option<(String, bool)> {
        match component {
            Component::Kubelet => o
                .nodes
                .iter()
                .find(|n| n.name == g.name || n.addresses.contains(&ip_text))
                .map(|n| (n.kubelet_version.clone(), n.ready)),
            _ => o
                .pods
                .iter()
                .find(|p| {
                    p.component == component && (p.node_name == g.name || p.host_ip == ip_text)
                })
                .map(|p| {
                    (
                        p.version().map(|v| format!("v{v}")).unwrap_or_default(),
                        p.ready,
                    )
                }),
        }
    };
    let already = matches!(step, ku::Step::StaticPod { .. } | ku::Step::Kubelet { .. })
        && on_node(&observed).is_some_and(|(v, ready)| v == want && ready);
    if already {
        return Ok(format!("{component} on {} already runs {to}", g.name));
    }
    let at = Position {
        order,
        index,
        from,
        to,
    };
    let config = config_for_step(env, g, ip, &at, &observed)?;
    let (cluster, bundle) = env.cluster_and_bundle()?;
    let client = talos::admin_client(cluster, bundle, ip)
        .and_then(|b| b.build())
        .map_err(|e| StepError::new(format!("Talos client: {e}")))?;
    client
        .apply_configuration(
            config.as_bytes(),
            talos_api::client::ApplyMode::NoReboot,
            false,
        )
        .await
        .map_err(|e| {
            StepError::new(format!(
                "{}: the new {component} image was refused without a reboot: {e}",
                g.name
            ))
            .hint("the node's running configuration differs in a field that needs a reboot: run `homelab-cli plan` to see it")
        })?;
    if let ku::Step::ProxyConfig { .. } = step {
        return Ok(format!("{}: kube-proxy image set to {to}", g.name));
    }
    let what = format!("{component} on {} to report {want}", g.name);
    crate::engine::waits::announce(&what, opts.deadline);
    let want_ref = &want;
    talos_api::health::wait_for(&what, &opts, || {
        let k = k.clone();
        let want = want_ref;
        async move {
            let o = read(&k).await?;
            match on_node(&o) {
                Some((v, true)) if v == *want => Ok(()),
                Some((v, ready)) => Err(talos_api::Error::InvalidConfig(format!(
                    "reports {v}{}",
                    if ready { "" } else { ", not Ready" }
                ))),
                None => Err(talos_api::Error::InvalidConfig("not found".into())),
            }
        }
    })
    .await
    .map_err(|e| {
        StepError::new(format!(
            "{component} on {} did not report {want}: {e}; the Kubernetes upgrade stopped here and the steps after it are untouched",
            g.name
        ))
        .hint(format!(
            "look at \"{}\" (`homelab-cli status`, `kubectl get nodes`); once it is healthy, re-run `homelab-cli up` to resume the upgrade",
            g.name
        ))
    })?;
    Ok(format!("{component} on {} runs {to}", g.name))
}

/// Kubernetes versions by component, for `--output json` of tests and status.
pub fn summary(observed: &K8sObserved) -> BTreeMap<String, String> {
    observed
        .versions()
        .into_iter()
        .map(|(k, v)| (k, v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn node(name: &str, v: &str) -> NodeInfo {
        talos_api::kube_components::parse_nodes(&serde_json::json!({"items": [
            {"metadata": {"name": name}, "status": {"nodeInfo": {"kubeletVersion": v},
             "conditions": [{"type": "Ready", "status": "True"}]}}]}))
        .remove(0)
    }

    #[test]
    fn lowest_version_is_where_the_upgrade_starts() {
        let o = K8sObserved {
            nodes: vec![node("cp-1", "v1.35.5"), node("w-1", "v1.35.4")],
            pods: vec![],
            proxy_image: Some("registry.k8s.io/kube-proxy:v1.35.5".into()),
        };
        let v = o.versions();
        let min = v.iter().min_by_key(|(_, v)| *v).unwrap();
        assert_eq!(min.0, "kubelet on w-1");
        assert_eq!(min.1.to_string(), "1.35.4");
        assert_eq!(summary(&o)["kube-proxy"], "1.35.5");
    }
}
