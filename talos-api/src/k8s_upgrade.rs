//! Kubernetes upgrades of a Talos cluster, as `talosctl upgrade-k8s` runs them: which
//! machine-config fields hold each component's image, the image names, which version
//! changes are supported, and the order of the steps. Pure functions; the caller applies
//! the configs and waits.
//!
//! Read from siderolabs/talos (`pkg/cluster/kubernetes/talos_managed.go`, `Upgrade`):
//! after the checks, every control-plane component is updated in turn, `kube-apiserver`,
//! then `kube-controller-manager`, then `kube-scheduler`, each control-plane node one
//! after the other (`upgradeStaticPod`: patch the node's config with `NO_REBOOT`, then
//! wait for the static pod to run the new config and be Ready); then the kube-proxy image
//! in every control plane's config (`upgradeKubeProxy`, no wait); then the kubelet on every
//! node, control planes first (`kubelet.go`, `upgradeKubeletOnNode`: patch, wait for the
//! kubelet service to restart, then for the Node to report the new `kubeletVersion` and be
//! Ready); last the bootstrap manifests are synced into the cluster
//! (`PerformManifestsSync`), which rolls the kube-proxy DaemonSet.
//!
//! The version checks: siderolabs/go-kubernetes `kubernetes/upgrade/path.go`
//! (`Path.IsSupported`: the same minor or the next one, never a minor downgrade) and
//! siderolabs/talos `pkg/machinery/compatibility/kubernetes_version.go` (`SupportedWith`,
//! the Kubernetes range each Talos minor supports, `talos1xx/talos1xx.go`).

use std::fmt;

use serde_yaml_ng::Value;

use crate::error::{Error, Result};

/// The kubelet image Talos enforces (`constants.KubeletImage`).
pub const KUBELET_IMAGE: &str = "ghcr.io/siderolabs/kubelet";
/// `constants.KubernetesAPIServerImage`.
pub const APISERVER_IMAGE: &str = "registry.k8s.io/kube-apiserver";
/// `constants.KubernetesControllerManagerImage`.
pub const CONTROLLER_MANAGER_IMAGE: &str = "registry.k8s.io/kube-controller-manager";
/// `constants.KubernetesSchedulerImage`.
pub const SCHEDULER_IMAGE: &str = "registry.k8s.io/kube-scheduler";
/// `constants.KubeProxyImage`.
pub const PROXY_IMAGE: &str = "registry.k8s.io/kube-proxy";

/// A Kubernetes component whose version follows the cluster's Kubernetes version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Component {
    /// `kube-apiserver` (static pod on control planes).
    ApiServer,
    /// `kube-controller-manager` (static pod on control planes).
    ControllerManager,
    /// `kube-scheduler` (static pod on control planes).
    Scheduler,
    /// `kube-proxy` (DaemonSet from the bootstrap manifests; image in the control planes'
    /// configs).
    Proxy,
    /// The kubelet (a Talos service on every node).
    Kubelet,
}

impl Component {
    /// Every component, in upgrade order.
    pub const ALL: [Component; 5] = [
        Component::ApiServer,
        Component::ControllerManager,
        Component::Scheduler,
        Component::Proxy,
        Component::Kubelet,
    ];

    /// The control-plane static pods.
    pub const STATIC_PODS: [Component; 3] = [
        Component::ApiServer,
        Component::ControllerManager,
        Component::Scheduler,
    ];

    /// The name Kubernetes knows it by (the `k8s-app` label and container name).
    pub fn name(self) -> &'static str {
        match self {
            Component::ApiServer => "kube-apiserver",
            Component::ControllerManager => "kube-controller-manager",
            Component::Scheduler => "kube-scheduler",
            Component::Proxy => "kube-proxy",
            Component::Kubelet => "kubelet",
        }
    }

    /// The image repository (without tag).
    pub fn repository(self) -> &'static str {
        match self {
            Component::ApiServer => APISERVER_IMAGE,
            Component::ControllerManager => CONTROLLER_MANAGER_IMAGE,
            Component::Scheduler => SCHEDULER_IMAGE,
            Component::Proxy => PROXY_IMAGE,
            Component::Kubelet => KUBELET_IMAGE,
        }
    }

    /// The image reference for `version`: `registry.k8s.io/kube-apiserver:v1.35.5`.
    pub fn image(self, version: &KubeVersion) -> String {
        format!("{}:v{version}", self.repository())
    }

    /// Where the `v1alpha1` document keeps its image (`cluster.apiServer.image`, ...).
    pub fn config_path(self) -> [&'static str; 3] {
        match self {
            Component::ApiServer => ["cluster", "apiServer", "image"],
            Component::ControllerManager => ["cluster", "controllerManager", "image"],
            Component::Scheduler => ["cluster", "scheduler", "image"],
            Component::Proxy => ["cluster", "proxy", "image"],
            Component::Kubelet => ["machine", "kubelet", "image"],
        }
    }

    /// Whether only control planes carry it in their config.
    pub fn control_plane_only(self) -> bool {
        !matches!(self, Component::Kubelet)
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A Kubernetes version `major.minor.patch` (a `v` prefix is accepted and not kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KubeVersion {
    /// Major.
    pub major: u64,
    /// Minor.
    pub minor: u64,
    /// Patch.
    pub patch: u64,
}

impl KubeVersion {
    /// Parse `1.35.4` or `v1.35.4` (a pre-release or build suffix is ignored, as semver's
    /// `ParseTolerant` core comparison does).
    pub fn parse(text: &str) -> Result<KubeVersion> {
        let bad = || {
            Error::InvalidConfig(format!(
                "Kubernetes version {text:?} is not of the form 1.35.4"
            ))
        };
        let core = text.trim().trim_start_matches('v');
        let core = core.split(['-', '+']).next().unwrap_or_default();
        let mut parts = core.split('.');
        let mut num = || -> Result<u64> {
            parts
                .next()
                .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|p| p.parse().ok())
                .ok_or_else(bad)
        };
        let v = KubeVersion {
            major: num()?,
            minor: num()?,
            patch: num()?,
        };
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(v)
    }

    /// The version of an image reference's tag (`registry.k8s.io/kube-apiserver:v1.35.4`,
    /// also with a `-fat`/`-slim` kubelet suffix), as `kubernetes.VersionFromImageRef` reads
    /// it; `None` for a digest-only or untagged reference.
    pub fn from_image(image: &str) -> Option<KubeVersion> {
        let no_digest = image.split('@').next().unwrap_or(image);
        let (repo, tag) = no_digest.rsplit_once(':')?;
        if tag.contains('/') || repo.is_empty() {
            return None;
        }
        KubeVersion::parse(tag).ok()
    }
}

impl fmt::Display for KubeVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Whether `from -> to` is a path `upgrade-k8s` takes: the same minor (any patch, also
/// down) or the next minor. Anything else is refused with the reason.
pub fn check_path(from: &KubeVersion, to: &KubeVersion) -> Result<()> {
    let same = from.major == to.major && from.minor == to.minor;
    let next = from.major == to.major && to.minor == from.minor + 1;
    if from.major == 1 && (same || next) {
        return Ok(());
    }
    let why = if to < from {
        "Kubernetes cannot be downgraded to an older minor version"
    } else {
        "Kubernetes upgrades go one minor version at a time"
    };
    Err(Error::UnsupportedUpgrade(format!(
        "unsupported upgrade path {}.{}->{}.{} (from {from} to {to}): {why}",
        from.major, from.minor, to.major, to.minor
    )))
}

/// The Kubernetes versions a Talos minor runs: `[min, max)` of
/// `pkg/machinery/compatibility/talos1xx`.
fn talos_range(talos_minor: (u64, u64)) -> Option<(KubeVersion, KubeVersion)> {
    let v = |major, minor, patch| KubeVersion {
        major,
        minor,
        patch,
    };
    Some(match talos_minor {
        (1, 10) => (v(1, 28, 0), v(1, 33, 99)),
        (1, 11) => (v(1, 29, 0), v(1, 34, 99)),
        (1, 12) => (v(1, 30, 0), v(1, 35, 99)),
        (1, 13) => (v(1, 31, 0), v(1, 36, 99)),
        _ => return None,
    })
}

/// Whether Kubernetes `k8s` runs on Talos `talos` (`v1.12.11`), as `SupportedWith` decides.
pub fn check_talos_compatibility(k8s: &KubeVersion, talos: &str) -> Result<()> {
    let t = talos.trim().trim_start_matches('v');
    let mut it = t.split(['.', '-']);
    let minor = (
        it.next().and_then(|x| x.parse().ok()),
        it.next().and_then(|x| x.parse().ok()),
    );
    let (Some(major), Some(minor)) = minor else {
        return Err(Error::UnsupportedUpgrade(format!(
            "Talos version {talos:?} is not of the form v1.12.0"
        )));
    };
    let Some((min, max)) = talos_range((major, minor)) else {
        return Err(Error::UnsupportedUpgrade(format!(
            "compatibility with Talos {talos} is not known"
        )));
    };
    if *k8s < min {
        return Err(Error::UnsupportedUpgrade(format!(
            "version of Kubernetes {k8s} is too old to be used with Talos {talos}"
        )));
    }
    if *k8s >= max {
        return Err(Error::UnsupportedUpgrade(format!(
            "version of Kubernetes {k8s} is too new to be used with Talos {talos}"
        )));
    }
    Ok(())
}

/// One step of a Kubernetes upgrade, on node `N`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Step<N> {
    /// Set a control-plane static pod's image in this control plane's config (no reboot),
    /// then wait for the pod on it to run the new version and be Ready.
    StaticPod {
        /// Which.
        component: Component,
        /// The control plane.
        node: N,
    },
    /// Set the kube-proxy image in this control plane's config (the source of the
    /// bootstrap manifests); nothing to wait for.
    ProxyConfig {
        /// The control plane.
        node: N,
    },
    /// Set the kubelet image in this node's config (no reboot), then wait for the Node to
    /// report the new `kubeletVersion` and be Ready.
    Kubelet {
        /// The node.
        node: N,
    },
    /// Sync the bootstrap manifests into the cluster: the kube-proxy DaemonSet takes the
    /// new image; wait for its pods to run it.
    Manifests,
}

impl<N> Step<N> {
    /// The component a step changes.
    pub fn component(&self) -> Component {
        match self {
            Step::StaticPod { component, .. } => *component,
            Step::ProxyConfig { .. } | Step::Manifests => Component::Proxy,
            Step::Kubelet { .. } => Component::Kubelet,
        }
    }

    /// The node, if the step is on one.
    pub fn node(&self) -> Option<&N> {
        match self {
            Step::StaticPod { node, .. } | Step::ProxyConfig { node } | Step::Kubelet { node } => {
                Some(node)
            }
            Step::Manifests => None,
        }
    }
}

/// The steps of `talosctl upgrade-k8s`, in order: each static pod on every control plane
/// (apiserver, controller-manager, scheduler), the kube-proxy image in the control planes'
/// configs, the kubelet on every control plane then every worker, the manifests.
pub fn steps<N: Clone>(control_planes: &[N], workers: &[N]) -> Vec<Step<N>> {
    let mut out = Vec::new();
    for component in Component::STATIC_PODS {
        for n in control_planes {
            out.push(Step::StaticPod {
                component,
                node: n.clone(),
            });
        }
    }
    for n in control_planes {
        out.push(Step::ProxyConfig { node: n.clone() });
    }
    for n in control_planes.iter().chain(workers) {
        out.push(Step::Kubelet { node: n.clone() });
    }
    out.push(Step::Manifests);
    out
}

fn v1alpha1_mut(docs: &mut [Value]) -> Result<&mut Value> {
    docs.iter_mut()
        .find(|d| d.get("kind").is_none())
        .ok_or_else(|| Error::InvalidConfig("no v1alpha1 document".into()))
}

/// The component images a machine config names (components it does not carry are absent).
pub fn images_of(config: &str) -> Result<Vec<(Component, String)>> {
    let docs = crate::yaml::parse_documents(config, "machine config")?;
    let v1 = docs
        .iter()
        .find(|d| d.get("kind").is_none())
        .ok_or_else(|| Error::InvalidConfig("no v1alpha1 document".into()))?;
    Ok(Component::ALL
        .iter()
        .filter_map(|c| {
            let mut cur = v1;
            for k in c.config_path() {
                cur = cur.get(k)?;
            }
            cur.as_str().map(|s| (*c, s.to_string()))
        })
        .collect())
}

/// `config` with the images of the given components replaced (only where the config
/// carries the component: a worker's config has no `cluster.apiServer`). Every document
/// other than `v1alpha1` is kept as it is.
pub fn with_images(config: &str, images: &[(Component, String)]) -> Result<String> {
    let mut docs = crate::yaml::parse_documents(config, "machine config")?;
    let v1 = v1alpha1_mut(&mut docs)?;
    for (c, image) in images {
        let [a, b, leaf] = c.config_path();
        let Some(section) = v1.get_mut(a).and_then(|x| x.get_mut(b)) else {
            continue;
        };
        if let Value::Mapping(m) = section {
            m.insert(Value::from(leaf), Value::from(image.as_str()));
        }
    }
    Ok(crate::yaml::to_multi_doc_string(&docs))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn v(s: &str) -> KubeVersion {
        KubeVersion::parse(s).unwrap()
    }

    #[test]
    fn versions_parse_with_or_without_v_and_from_images() {
        assert_eq!(v("v1.35.4"), v("1.35.4"));
        assert_eq!(v("1.35.4").to_string(), "1.35.4");
        assert!(v("1.35.10") > v("1.35.9"));
        assert!(KubeVersion::parse("1.35").is_err());
        assert!(KubeVersion::parse("latest").is_err());
        assert_eq!(
            KubeVersion::from_image("registry.k8s.io/kube-apiserver:v1.35.5"),
            Some(v("1.35.5"))
        );
        assert_eq!(
            KubeVersion::from_image("localhost:5000/kubelet:v1.34.1-fat"),
            Some(v("1.34.1"))
        );
        assert_eq!(KubeVersion::from_image("localhost:5000/kubelet"), None);
        assert_eq!(
            Component::ApiServer.image(&v("1.35.5")),
            "registry.k8s.io/kube-apiserver:v1.35.5"
        );
        assert_eq!(
            Component::Kubelet.image(&v("1.35.5")),
            "ghcr.io/siderolabs/kubelet:v1.35.5"
        );
    }

    #[test]
    fn skew_one_minor_at_a_time_and_no_minor_downgrade() {
        check_path(&v("1.35.4"), &v("1.35.5")).unwrap();
        check_path(&v("1.35.5"), &v("1.35.4")).unwrap();
        check_path(&v("1.34.2"), &v("1.35.0")).unwrap();
        let e = check_path(&v("1.33.2"), &v("1.35.0")).unwrap_err();
        assert!(e.is_unsupported_upgrade());
        assert!(e.to_string().contains("1.33->1.35"), "{e}");
        assert!(e.to_string().contains("one minor version at a time"), "{e}");
        let e = check_path(&v("1.35.0"), &v("1.34.9")).unwrap_err();
        assert!(e.to_string().contains("cannot be downgraded"), "{e}");
        assert!(check_path(&v("1.35.0"), &v("2.0.0")).is_err());
    }

    #[test]
    fn talos_compatibility_ranges() {
        check_talos_compatibility(&v("1.35.5"), "v1.12.11").unwrap();
        check_talos_compatibility(&v("1.30.0"), "v1.12.0").unwrap();
        let e = check_talos_compatibility(&v("1.36.0"), "v1.12.11").unwrap_err();
        assert!(e.to_string().contains("too new"), "{e}");
        let e = check_talos_compatibility(&v("1.29.9"), "v1.12.11").unwrap_err();
        assert!(e.to_string().contains("too old"), "{e}");
        check_talos_compatibility(&v("1.36.0"), "v1.13.0").unwrap();
        assert!(check_talos_compatibility(&v("1.35.0"), "v2.0.0").is_err());
    }

    #[test]
    fn steps_follow_upgrade_k8s_order() {
        let s = steps(&["cp1", "cp2"], &["w1"]);
        let names: Vec<String> = s
            .iter()
            .map(|s| format!("{}@{}", s.component(), s.node().copied().unwrap_or("-")))
            .collect();
        assert_eq!(
            names,
            [
                "kube-apiserver@cp1",
                "kube-apiserver@cp2",
                "kube-controller-manager@cp1",
                "kube-controller-manager@cp2",
                "kube-scheduler@cp1",
                "kube-scheduler@cp2",
                "kube-proxy@cp1",
                "kube-proxy@cp2",
                "kubelet@cp1",
                "kubelet@cp2",
                "kubelet@w1",
                "kube-proxy@-",
            ]
        );
        assert!(matches!(s.last(), Some(Step::Manifests)));
    }

    const CP: &str = "version: v1alpha1\nmachine:\n  type: controlplane\n  kubelet:\n    image: ghcr.io/siderolabs/kubelet:v1.35.4\ncluster:\n  apiServer:\n    image: registry.k8s.io/kube-apiserver:v1.35.4\n    certSANs: [a]\n  controllerManager:\n    image: registry.k8s.io/kube-controller-manager:v1.35.4\n  proxy:\n    image: registry.k8s.io/kube-proxy:v1.35.4\n  scheduler:\n    image: registry.k8s.io/kube-scheduler:v1.35.4\n---\napiVersion: v1alpha1\nkind: HostnameConfig\nhostname: cp-1\n";

    #[test]
    fn images_are_read_and_replaced_in_place() {
        let imgs = images_of(CP).unwrap();
        assert_eq!(imgs.len(), 5);
        let to = v("1.35.5");
        let out = with_images(
            CP,
            &[(Component::ApiServer, Component::ApiServer.image(&to))],
        )
        .unwrap();
        let after = images_of(&out).unwrap();
        assert!(after.contains(&(
            Component::ApiServer,
            "registry.k8s.io/kube-apiserver:v1.35.5".into()
        )));
        assert!(after.contains(&(
            Component::Scheduler,
            "registry.k8s.io/kube-scheduler:v1.35.4".into()
        )));
        assert!(out.contains("kind: HostnameConfig"), "{out}");
        assert!(out.contains("certSANs"), "{out}");
        // A worker's config has no control-plane sections: nothing is invented.
        let worker = "version: v1alpha1\nmachine:\n  type: worker\n  kubelet:\n    image: ghcr.io/siderolabs/kubelet:v1.35.4\ncluster:\n  clusterName: c\n";
        let out = with_images(
            worker,
            &[
                (Component::ApiServer, Component::ApiServer.image(&to)),
                (Component::Kubelet, Component::Kubelet.image(&to)),
            ],
        )
        .unwrap();
        assert!(!out.contains("apiServer"), "{out}");
        assert!(out.contains("kubelet:v1.35.5"), "{out}");
    }
}
