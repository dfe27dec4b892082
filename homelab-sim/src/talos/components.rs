//! The Kubernetes components of a simulated node: which version each runs, taken from the
//! node's running machine config, as Talos runs them.
//!
//! Read from siderolabs/talos at v1.12:
//! - The control-plane static pods take their image from `cluster.apiServer.image`,
//!   `cluster.controllerManager.image` and `cluster.scheduler.image`
//!   (`internal/app/machined/pkg/controllers/k8s/control_plane.go` builds the
//!   `APIServerConfig`/`ControllerManagerConfig`/`SchedulerConfig` resources from the
//!   config; `control_plane_static_pod.go` renders the pods `kube-apiserver` etc. with the
//!   labels `k8s-app: <name>` and `tier: control-plane` in `kube-system`, named
//!   `<name>-<nodename>` by the kubelet). A config applied without a reboot re-renders the
//!   pod and the kubelet restarts it: the new version answers a moment later.
//! - The kubelet runs `machine.kubelet.image` (`controllers/k8s/kubelet_spec.go`); a new
//!   image restarts the kubelet service (`upgradeKubeletOnNode` in
//!   `pkg/cluster/kubernetes/kubelet.go` waits for it to go down and up), after which the
//!   Node reports the new `status.nodeInfo.kubeletVersion`.
//! - kube-proxy is a DaemonSet of the bootstrap manifests, rendered from
//!   `cluster.proxy.image` (`controllers/k8s/templates.go`), created at bootstrap and only
//!   changed when the manifests are synced (`PerformManifestsSync`); its pods run the
//!   DaemonSet's image.
//! - etcd on a control plane that boots has to rejoin before it reports healthy
//!   (`internal/app/machined/pkg/system/services/etcd.go`); while the node is down it does
//!   not answer at all, so `talosctl health` sees its member unhealthy.
//!
//! Kubernetes side (kubernetes/kubernetes): while a node shuts down the kubelet's
//! graceful-shutdown manager sets `Ready=False` with reason `KubeletNotReady`, message
//! "node is shutting down" (`pkg/kubelet/nodeshutdown/nodeshutdown_manager_linux.go`,
//! `nodeShutdownNotAdmittedReason`/`nodeShutdownMessage`); a restarting kubelet posts
//! `Ready=False` with `KubeletNotReady` until its runtime and network are ready again
//! (`pkg/kubelet/nodestatus/setters.go`, `ReadyCondition`).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;
use talos_api::k8s_upgrade::Component;

use super::node::Node;

/// The images a config names, by component name.
pub(crate) fn config_images(config: &str) -> BTreeMap<String, String> {
    talos_api::k8s_upgrade::images_of(config)
        .map(|v| {
            v.into_iter()
                .map(|(c, i)| (c.name().to_string(), i))
                .collect()
        })
        .unwrap_or_default()
}

/// `v1.35.4` from an image reference, if it has a version tag.
pub(crate) fn image_version(image: &str) -> Option<String> {
    talos_api::k8s_upgrade::KubeVersion::from_image(image).map(|v| format!("v{v}"))
}

impl Node {
    /// Whether the node's apid answers (it is not down for a reboot or an upgrade).
    pub(crate) fn is_up(&self) -> bool {
        self.servers
            .lock()
            .map(|s| s.apid.is_some())
            .unwrap_or(false)
    }

    /// The image `component` runs now (the config's, unless a restart onto a new one is
    /// still under way).
    pub(crate) fn running_image(&self, component: Component) -> Option<String> {
        let st = self.state();
        if let Some(i) = st.running_images.get(component.name()) {
            return Some(i.clone());
        }
        config_images(st.config.as_deref().unwrap_or_default()).remove(component.name())
    }

    /// Whether the kubelet runs the image its config names (not restarting onto a new one).
    pub(crate) fn kubelet_settled(&self) -> bool {
        !self
            .state()
            .running_images
            .contains_key(Component::Kubelet.name())
    }

    /// After a config was applied without a reboot: the components whose image changed
    /// keep running the old one for [`super::day2::Knobs::component_time`], then restart on
    /// the new one.
    pub(crate) fn components_follow(self: &Arc<Self>, old_config: &str, new_config: &str) {
        let old = config_images(old_config);
        let new = config_images(new_config);
        let changed: BTreeMap<String, String> = old
            .into_iter()
            .filter(|(k, v)| new.get(k).is_some_and(|n| n != v))
            .collect();
        if changed.is_empty() {
            return;
        }
        let _ = self.update(|s| {
            for (k, v) in &changed {
                s.running_images
                    .entry(k.clone())
                    .or_insert_with(|| v.clone());
            }
        });
        let node = self.clone();
        let generation = self.generation.load(std::sync::atomic::Ordering::SeqCst);
        let delay = self.knobs().component_time;
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if node.generation.load(std::sync::atomic::Ordering::SeqCst) != generation {
                return;
            }
            let _ = node.update(|s| {
                for k in changed.keys() {
                    s.running_images.remove(k);
                }
            });
        });
    }

    /// Whether etcd on this (joined) control plane reports healthy: it has been up for a
    /// moment (rejoined its peers) after its last boot.
    pub(crate) fn etcd_settled(&self) -> bool {
        let since = self.booted_at.lock().ok().and_then(|b| *b);
        since.is_some_and(|t| t.elapsed() >= self.knobs().reboot_time)
    }
}

/// The `Ready` condition of a node's Node object.
pub(crate) fn ready_condition(n: &Node) -> serde_json::Value {
    if !n.is_up() {
        json!({"type": "Ready", "status": "False", "reason": "KubeletNotReady",
               "message": "node is shutting down"})
    } else if !n.kubelet_settled() {
        json!({"type": "Ready", "status": "False", "reason": "KubeletNotReady",
               "message": "container runtime status check may not have completed yet"})
    } else {
        json!({"type": "Ready", "status": "True", "reason": "KubeletReady",
               "message": "kubelet is posting ready status"})
    }
}

fn pod(
    name: &str,
    app: &str,
    image: &str,
    node: &Node,
    hostname: &str,
    extra_labels: &[(&str, &str)],
) -> serde_json::Value {
    let mut labels = serde_json::Map::new();
    labels.insert("k8s-app".into(), json!(app));
    for (k, v) in extra_labels {
        labels.insert((*k).into(), json!(v));
    }
    let up = node.is_up();
    json!({
        "metadata": {"name": name, "namespace": "kube-system", "labels": labels},
        "spec": {"nodeName": hostname, "containers": [{"name": app, "image": image}]},
        "status": {
            "phase": "Running",
            "hostIP": node.ip.to_string(),
            "conditions": [{"type": "Ready", "status": if up { "True" } else { "False" }}],
            "containerStatuses": [{"name": app, "image": image, "ready": up}]
        }
    })
}

/// The kube-system pods of the cluster: the static pods of every control plane and a
/// kube-proxy pod per node (the DaemonSet's image), sorted by name.
pub(crate) fn kube_system_pods(
    peers: &[Arc<Node>],
    cluster_id: &str,
    proxy_image: Option<&str>,
) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for n in peers {
        let Some(f) = n.facts() else { continue };
        if f.cluster_id != cluster_id || !n.state().installed {
            continue;
        }
        let host = n.hostname();
        if f.machine_type == "controlplane" {
            for c in Component::STATIC_PODS {
                if let Some(image) = n.running_image(c) {
                    out.push(pod(
                        &format!("{}-{host}", c.name()),
                        c.name(),
                        &image,
                        n,
                        &host,
                        &[("tier", "control-plane")],
                    ));
                }
            }
        }
        if let Some(image) = proxy_image {
            out.push(pod(
                &format!("kube-proxy-{}", pod_suffix(&host)),
                "kube-proxy",
                image,
                n,
                &host,
                &[],
            ));
        }
    }
    out.sort_by(|a, b| {
        a["metadata"]["name"]
            .as_str()
            .cmp(&b["metadata"]["name"].as_str())
    });
    out
}

/// A DaemonSet pod's five-character suffix (stable per node here; random in Kubernetes'
/// `names.SimpleNameGenerator`, from the alphabet of `utilrand.String`).
fn pod_suffix(host: &str) -> String {
    let alphabet = b"bcdfghjklmnpqrstvwxz2456789";
    let mut h: u64 = 1_469_598_103_934_665_603;
    for b in host.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(1_099_511_628_211);
    }
    (0..5)
        .map(|i| alphabet[((h >> (i * 8)) % alphabet.len() as u64) as usize] as char)
        .collect()
}

/// The kube-proxy DaemonSet.
pub(crate) fn kube_proxy_daemonset(image: &str, nodes: usize) -> serde_json::Value {
    json!({
        "kind": "DaemonSet", "apiVersion": "apps/v1",
        "metadata": {"name": "kube-proxy", "namespace": "kube-system",
                     "labels": {"k8s-app": "kube-proxy", "tier": "node"}},
        "spec": {
            "selector": {"matchLabels": {"k8s-app": "kube-proxy", "tier": "node"}},
            "template": {
                "metadata": {"labels": {"k8s-app": "kube-proxy", "tier": "node"}},
                "spec": {"containers": [{"name": "kube-proxy", "image": image}]}
            }
        },
        "status": {"desiredNumberScheduled": nodes, "currentNumberScheduled": nodes,
                   "updatedNumberScheduled": nodes, "numberReady": nodes}
    })
}

/// The container image a strategic-merge (or JSON merge) patch of the kube-proxy
/// DaemonSet sets, if any.
pub(crate) fn patched_proxy_image(patch: &serde_json::Value) -> Option<String> {
    patch["spec"]["template"]["spec"]["containers"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == "kube-proxy")?
        .get("image")?
        .as_str()
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn images_and_versions_from_a_config() {
        let cfg = "version: v1alpha1\nmachine:\n  kubelet:\n    image: ghcr.io/siderolabs/kubelet:v1.35.4\ncluster:\n  apiServer:\n    image: registry.k8s.io/kube-apiserver:v1.35.5\n";
        let m = config_images(cfg);
        assert_eq!(m["kubelet"], "ghcr.io/siderolabs/kubelet:v1.35.4");
        assert_eq!(
            image_version(&m["kube-apiserver"]).as_deref(),
            Some("v1.35.5")
        );
        let p = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "kube-proxy", "image": "registry.k8s.io/kube-proxy:v1.35.5"}]}}}});
        assert_eq!(
            patched_proxy_image(&p).as_deref(),
            Some("registry.k8s.io/kube-proxy:v1.35.5")
        );
        assert_eq!(patched_proxy_image(&json!({"spec": {}})), None);
    }
}
