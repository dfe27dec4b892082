//! The few Kubernetes API reads and writes a Talos cluster's day 2 needs, with the admin
//! kubeconfig's client certificate: Nodes (kubelet version, Ready), the kube-system pods
//! (control-plane static pods and kube-proxy, with their images) and the kube-proxy
//! DaemonSet (read and image patch), as `talosctl upgrade-k8s` uses them
//! (`pkg/cluster/kubernetes/kubelet.go` `checkNodeKubeletVersion`, `detect.go`
//! `DetectLowestVersion`, `talos_managed.go` `checkPodStatus`).

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::k8s_upgrade::{Component, KubeVersion};
use crate::kubeconfig::KubeCredentials;

/// A Node as the upgrade reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeInfo {
    /// `metadata.name` (the Talos hostname).
    pub name: String,
    /// `status.addresses[].address`.
    pub addresses: Vec<String>,
    /// `status.nodeInfo.kubeletVersion` (`v1.35.4`).
    pub kubelet_version: String,
    /// The `Ready` condition is `True`.
    pub ready: bool,
    /// The `Ready` condition's reason and message when it is not `True`.
    pub not_ready_reason: Option<String>,
}

/// A kube-system pod of a Kubernetes component.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ComponentPod {
    /// Pod name.
    pub name: String,
    /// Which component (`k8s-app` label).
    pub component: Component,
    /// `spec.nodeName`.
    pub node_name: String,
    /// `status.hostIP`.
    pub host_ip: String,
    /// The component container's image.
    pub image: String,
    /// The pod's `Ready` condition is `True`.
    pub ready: bool,
}

impl ComponentPod {
    /// The version its image runs.
    pub fn version(&self) -> Option<KubeVersion> {
        KubeVersion::from_image(&self.image)
    }
}

/// A Kubernetes API client for one kubeconfig (cluster CA only, client certificate).
#[derive(Debug, Clone)]
pub struct KubeClient {
    server: String,
    http: reqwest::Client,
}

fn component_named(name: &str) -> Option<Component> {
    Component::ALL.into_iter().find(|c| c.name() == name)
}

fn ready_of(conditions: &Value) -> (bool, Option<String>) {
    let ready = conditions
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"));
    match ready {
        Some(c) if c["status"] == "True" => (true, None),
        Some(c) => (
            false,
            Some(format!(
                "Ready={}: {} {}",
                c["status"].as_str().unwrap_or("Unknown"),
                c["reason"].as_str().unwrap_or_default(),
                c["message"].as_str().unwrap_or_default()
            )),
        ),
        None => (false, Some("no Ready condition".into())),
    }
}

/// Nodes from a `NodeList`.
pub fn parse_nodes(list: &Value) -> Vec<NodeInfo> {
    list["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|n| {
                    let (ready, not_ready_reason) = ready_of(&n["status"]["conditions"]);
                    NodeInfo {
                        name: n["metadata"]["name"].as_str().unwrap_or_default().into(),
                        addresses: n["status"]["addresses"]
                            .as_array()
                            .map(|a| {
                                a.iter()
                                    .filter_map(|x| x["address"].as_str().map(str::to_string))
                                    .collect()
                            })
                            .unwrap_or_default(),
                        kubelet_version: n["status"]["nodeInfo"]["kubeletVersion"]
                            .as_str()
                            .unwrap_or_default()
                            .into(),
                        ready,
                        not_ready_reason,
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Component pods from a kube-system `PodList`: those whose `k8s-app` label names a
/// component, with the container of the same name (as `DetectLowestVersion` picks it).
pub fn parse_component_pods(list: &Value) -> Vec<ComponentPod> {
    let Some(items) = list["items"].as_array() else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|p| {
            let app = p["metadata"]["labels"]["k8s-app"].as_str()?;
            let component = component_named(app)?;
            let image = p["spec"]["containers"]
                .as_array()?
                .iter()
                .find(|c| c["name"] == app)?["image"]
                .as_str()?
                .to_string();
            Some(ComponentPod {
                name: p["metadata"]["name"].as_str().unwrap_or_default().into(),
                component,
                node_name: p["spec"]["nodeName"].as_str().unwrap_or_default().into(),
                host_ip: p["status"]["hostIP"].as_str().unwrap_or_default().into(),
                image,
                ready: ready_of(&p["status"]["conditions"]).0,
            })
        })
        .collect()
}

impl KubeClient {
    /// A client for the kubeconfig's current context.
    pub fn from_kubeconfig(kubeconfig: &str) -> Result<KubeClient> {
        let creds: KubeCredentials = crate::kubeconfig::credentials(kubeconfig)?;
        Ok(KubeClient {
            server: creds.server.trim_end_matches('/').to_string(),
            http: crate::health::kube_http_client(&creds)?,
        })
    }

    async fn send<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<T> {
        let http_err = |message: String| Error::Http {
            url: url.to_string(),
            message,
        };
        let resp = req.send().await.map_err(|e| http_err(e.to_string()))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| http_err(e.to_string()))?;
        if !status.is_success() {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let msg = v["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_string());
            return Err(http_err(format!("{status}: {msg}")));
        }
        serde_json::from_slice(&body).map_err(|e| http_err(format!("bad JSON: {e}")))
    }

    async fn get(&self, path: &str) -> Result<Value> {
        let url = format!("{}{path}", self.server);
        self.send(
            self.http.get(&url).header("Accept", "application/json"),
            &url,
        )
        .await
    }

    /// `GET /api/v1/nodes`.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>> {
        Ok(parse_nodes(&self.get("/api/v1/nodes").await?))
    }

    /// `GET /api/v1/namespaces/kube-system/pods`, the component pods.
    pub async fn component_pods(&self) -> Result<Vec<ComponentPod>> {
        Ok(parse_component_pods(
            &self.get("/api/v1/namespaces/kube-system/pods").await?,
        ))
    }

    /// The kube-proxy DaemonSet's container image (`None`: no such DaemonSet, e.g.
    /// `cluster.proxy.disabled`).
    pub async fn kube_proxy_image(&self) -> Result<Option<String>> {
        match self
            .get("/apis/apps/v1/namespaces/kube-system/daemonsets/kube-proxy")
            .await
        {
            Ok(ds) => Ok(ds["spec"]["template"]["spec"]["containers"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["name"] == "kube-proxy"))
                .and_then(|c| c["image"].as_str())
                .map(str::to_string)),
            Err(Error::Http { message, .. }) if message.starts_with("404") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Set the kube-proxy DaemonSet's image (a strategic-merge patch of its container, as
    /// syncing the bootstrap manifests does for that field).
    pub async fn set_kube_proxy_image(&self, image: &str) -> Result<()> {
        let url = format!(
            "{}/apis/apps/v1/namespaces/kube-system/daemonsets/kube-proxy",
            self.server
        );
        let patch = serde_json::json!({"spec": {"template": {"spec": {"containers": [
            {"name": "kube-proxy", "image": image}]}}}});
        let _: Value = self
            .send(
                self.http
                    .patch(&url)
                    .header("Content-Type", "application/strategic-merge-patch+json")
                    .header("Accept", "application/json")
                    .body(patch.to_string()),
                &url,
            )
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn nodes_and_component_pods_parse() {
        let nodes = parse_nodes(&json!({"items": [
            {"metadata": {"name": "cp-1"}, "status": {
                "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}],
                "nodeInfo": {"kubeletVersion": "v1.35.4"},
                "conditions": [{"type": "Ready", "status": "False", "reason": "KubeletNotReady",
                                "message": "node is shutting down"}]}}]}));
        assert_eq!(nodes[0].kubelet_version, "v1.35.4");
        assert!(!nodes[0].ready);
        assert!(
            nodes[0]
                .not_ready_reason
                .as_deref()
                .unwrap()
                .contains("shutting down")
        );
        let pods = parse_component_pods(&json!({"items": [
            {"metadata": {"name": "kube-apiserver-cp-1", "labels": {"k8s-app": "kube-apiserver"}},
             "spec": {"nodeName": "cp-1", "containers": [
                {"name": "kube-apiserver", "image": "registry.k8s.io/kube-apiserver:v1.35.5"}]},
             "status": {"hostIP": "10.0.0.1", "conditions": [{"type": "Ready", "status": "True"}]}},
            {"metadata": {"name": "coredns-1", "labels": {"k8s-app": "kube-dns"}},
             "spec": {"containers": [{"name": "coredns", "image": "x:v1"}]}}]}));
        assert_eq!(pods.len(), 1);
        assert_eq!(pods[0].component, Component::ApiServer);
        assert_eq!(pods[0].version().unwrap().to_string(), "1.35.5");
        assert!(pods[0].ready);
    }
}
