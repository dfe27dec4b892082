//! A small Kubernetes API client for taking nodes out of a cluster: list nodes, cordon
//! (`PATCH spec.unschedulable`), drain through the Eviction API (which honours
//! PodDisruptionBudgets), delete the Node object. Plus the plain JSON verbs for the few
//! other objects callers need.
//!
//! The drain follows `kubectl drain --ignore-daemonsets --delete-emptydir-data --force`
//! (kubernetes `staging/src/k8s.io/kubectl/pkg/drain`): mirror pods
//! (`kubernetes.io/config.mirror`) and DaemonSet pods are left alone, every other pod on the
//! node gets `POST .../pods/{name}/eviction`; a 429 (a budget allows no disruption now) is
//! retried until the deadline, a 404 means the pod is gone already, and the drain waits
//! for evicted pods to disappear. Talos' own graceful reset does the same
//! (siderolabs/talos `pkg/kubernetes/kubernetes.go`, `Drain`/`evict`).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::kubeconfig::KubeCredentials;

/// A Kubernetes API client with the kubeconfig's credentials (rustls, ring).
#[derive(Debug, Clone)]
pub struct KubeClient {
    base: String,
    http: reqwest::Client,
}

/// A node as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KubeNode {
    /// `metadata.name`.
    pub name: String,
    /// `spec.unschedulable` (cordoned).
    pub unschedulable: bool,
    /// The `Ready` condition is `True`.
    pub ready: bool,
    /// Labelled `node-role.kubernetes.io/control-plane`.
    pub control_plane: bool,
}

/// A pod as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KubePod {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `spec.nodeName`.
    pub node: String,
    /// The kind of its controlling owner (`ReplicaSet`, `DaemonSet`, ...), if any.
    pub controller: Option<String>,
    /// A static pod's mirror (`kubernetes.io/config.mirror`).
    pub mirror: bool,
}

impl KubePod {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// What one eviction request got.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Eviction {
    /// Accepted: the pod is being deleted.
    Evicted,
    /// The pod does not exist (any more).
    Gone,
    /// Refused for now (429): a PodDisruptionBudget allows no disruption. The API server's
    /// message and causes.
    Blocked(String),
}

/// How long a drain may take and how often it retries.
#[derive(Debug, Clone, Copy)]
pub struct DrainOptions {
    /// Give up (with [`Error::DrainTimeout`]) after this long.
    pub timeout: Duration,
    /// Pause between rounds of evictions.
    pub interval: Duration,
    /// Cordon the way Talos does (with the `talos.dev/cordoned` annotation), so that Talos
    /// uncordons the node when it comes back (`node_apply.go`, `ApplyCordoned`).
    pub cordon_for_talos: bool,
}

impl Default for DrainOptions {
    fn default() -> Self {
        DrainOptions {
            timeout: Duration::from_secs(300),
            interval: Duration::from_secs(5),
            cordon_for_talos: false,
        }
    }
}

/// What a drain did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DrainReport {
    /// `namespace/name` of the pods evicted.
    pub evicted: Vec<String>,
    /// Pods left alone (DaemonSet and mirror pods).
    pub skipped: Vec<String>,
    /// Refusals seen on the way (`namespace/name: message`), later overcome.
    pub refusals: Vec<String>,
}

fn status_message(body: &str) -> String {
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        return body.trim().to_string();
    };
    let mut msg = v["message"].as_str().unwrap_or_default().to_string();
    if let Some(causes) = v["details"]["causes"].as_array() {
        for c in causes {
            if let Some(m) = c["message"].as_str() {
                msg.push_str(" (");
                msg.push_str(m);
                msg.push(')');
            }
        }
    }
    if msg.is_empty() {
        body.trim().to_string()
    } else {
        msg
    }
}

fn seg(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

impl KubeClient {
    /// A client for the kubeconfig's current context.
    pub fn from_kubeconfig(kubeconfig: &str) -> Result<Self> {
        let creds = crate::kubeconfig::credentials(kubeconfig)?;
        Self::new(&creds)
    }

    /// A client from extracted credentials.
    pub fn new(creds: &KubeCredentials) -> Result<Self> {
        Ok(KubeClient {
            base: creds.server.trim_end_matches('/').to_string(),
            http: crate::health::kube_http_client(creds)?,
        })
    }

    /// The API server URL.
    pub fn server(&self) -> &str {
        &self.base
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<(&str, &Value)>,
    ) -> Result<(u16, String)> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url);
        if let Some((ctype, b)) = body {
            req = req
                .header(http::header::CONTENT_TYPE, ctype)
                .body(b.to_string());
        }
        let resp = req
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| Error::Http {
                url: url.clone(),
                message: e.to_string(),
            })?;
        let code = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| Error::Http {
            url: url.clone(),
            message: e.to_string(),
        })?;
        Ok((code, text))
    }

    async fn json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<(&str, &Value)>,
    ) -> Result<Value> {
        let (code, text) = self.send(method, path, body).await?;
        if !(200..300).contains(&code) {
            return Err(Error::Kubernetes {
                url: format!("{}{path}", self.base),
                code,
                message: status_message(&text),
            });
        }
        serde_json::from_str(&text).map_err(|e| Error::Http {
            url: format!("{}{path}", self.base),
            message: format!("not JSON: {e}"),
        })
    }

    /// `GET path` (e.g. `/api/v1/namespaces/default/pods/web`).
    pub async fn get(&self, path: &str) -> Result<Value> {
        self.json(reqwest::Method::GET, path, None).await
    }

    /// `POST path` with a JSON object (create).
    pub async fn create(&self, path: &str, object: &Value) -> Result<Value> {
        self.json(
            reqwest::Method::POST,
            path,
            Some(("application/json", object)),
        )
        .await
    }

    /// `PATCH path` with a JSON merge patch (RFC 7386).
    pub async fn merge_patch(&self, path: &str, patch: &Value) -> Result<Value> {
        self.json(
            reqwest::Method::PATCH,
            path,
            Some(("application/merge-patch+json", patch)),
        )
        .await
    }

    /// `PATCH path` with a strategic merge patch (lists of containers merged by name).
    pub async fn strategic_merge_patch(&self, path: &str, patch: &Value) -> Result<Value> {
        self.json(
            reqwest::Method::PATCH,
            path,
            Some(("application/strategic-merge-patch+json", patch)),
        )
        .await
    }

    /// `DELETE path`; `Ok(false)` when it was not there.
    pub async fn delete(&self, path: &str) -> Result<bool> {
        match self.json(reqwest::Method::DELETE, path, None).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every node.
    pub async fn nodes(&self) -> Result<Vec<KubeNode>> {
        let list = self.get("/api/v1/nodes").await?;
        Ok(list["items"]
            .as_array()
            .map(|items| items.iter().map(node_from).collect())
            .unwrap_or_default())
    }

    /// Mark the node unschedulable, as `kubectl cordon` does (a strategic-merge patch of
    /// `spec.unschedulable`).
    pub async fn cordon(&self, node: &str) -> Result<()> {
        self.cordon_with(node, json!({"spec": {"unschedulable": true}}))
            .await
    }

    /// Cordon as Talos does: `spec.unschedulable` and the `talos.dev/cordoned` annotation,
    /// which makes Talos uncordon the node when it boots again.
    pub async fn cordon_for_talos(&self, node: &str) -> Result<()> {
        self.cordon_with(
            node,
            json!({"metadata": {"annotations": {"talos.dev/cordoned": "true"}},
                   "spec": {"unschedulable": true}}),
        )
        .await
    }

    async fn cordon_with(&self, node: &str, patch: Value) -> Result<()> {
        self.json(
            reqwest::Method::PATCH,
            &format!("/api/v1/nodes/{}", seg(node)),
            Some(("application/strategic-merge-patch+json", &patch)),
        )
        .await
        .map(|_| ())
    }

    /// The pods bound to `node` (`fieldSelector=spec.nodeName=<node>`).
    pub async fn pods_on(&self, node: &str) -> Result<Vec<KubePod>> {
        let sel = seg(&format!("spec.nodeName={node}"));
        let list = self
            .get(&format!("/api/v1/pods?fieldSelector={sel}"))
            .await?;
        Ok(list["items"]
            .as_array()
            .map(|items| items.iter().map(pod_from).collect())
            .unwrap_or_default())
    }

    /// `POST /api/v1/namespaces/{ns}/pods/{name}/eviction` (policy/v1 Eviction).
    pub async fn evict(&self, namespace: &str, name: &str) -> Result<Eviction> {
        let path = format!(
            "/api/v1/namespaces/{}/pods/{}/eviction",
            seg(namespace),
            seg(name)
        );
        let body = json!({"apiVersion": "policy/v1", "kind": "Eviction",
            "metadata": {"name": name, "namespace": namespace}});
        let (code, text) = self
            .send(
                reqwest::Method::POST,
                &path,
                Some(("application/json", &body)),
            )
            .await?;
        match code {
            200..=299 => Ok(Eviction::Evicted),
            404 => Ok(Eviction::Gone),
            429 => Ok(Eviction::Blocked(status_message(&text))),
            _ => Err(Error::Kubernetes {
                url: format!("{}{path}", self.base),
                code,
                message: status_message(&text),
            }),
        }
    }

    /// Delete the Node object; `Ok(false)` when it was gone already.
    pub async fn delete_node(&self, node: &str) -> Result<bool> {
        self.delete(&format!("/api/v1/nodes/{}", seg(node))).await
    }

    /// Cordon `node`, then evict its pods (see the module docs) until none is left or the
    /// deadline passes; then [`Error::DrainTimeout`] names each pod left and why.
    pub async fn drain(&self, node: &str, opts: &DrainOptions) -> Result<DrainReport> {
        let start = Instant::now();
        if opts.cordon_for_talos {
            self.cordon_for_talos(node).await?;
        } else {
            self.cordon(node).await?;
        }
        let mut report = DrainReport::default();
        loop {
            let pods = self.pods_on(node).await?;
            let mut left = Vec::new();
            for p in pods {
                if p.mirror || p.controller.as_deref() == Some("DaemonSet") {
                    if !report.skipped.contains(&p.key()) {
                        report.skipped.push(p.key());
                    }
                    continue;
                }
                if report.evicted.contains(&p.key()) {
                    left.push(format!("{}: evicted, still terminating", p.key()));
                    continue;
                }
                match self.evict(&p.namespace, &p.name).await? {
                    Eviction::Evicted | Eviction::Gone => report.evicted.push(p.key()),
                    Eviction::Blocked(why) => {
                        let line = format!("{}: {why}", p.key());
                        tracing::info!(pod = %p.key(), reason = %why, "eviction refused; retrying");
                        if !report.refusals.contains(&line) {
                            report.refusals.push(line.clone());
                        }
                        left.push(line);
                    }
                }
            }
            if left.is_empty() {
                // Evicted pods must be gone before the node goes away.
                let still: Vec<String> = self
                    .pods_on(node)
                    .await?
                    .into_iter()
                    .filter(|p| report.evicted.contains(&p.key()))
                    .map(|p| format!("{}: evicted, still terminating", p.key()))
                    .collect();
                if still.is_empty() {
                    return Ok(report);
                }
                left = still;
            }
            if start.elapsed() >= opts.timeout {
                return Err(Error::DrainTimeout {
                    node: node.to_string(),
                    after: opts.timeout,
                    blocked: left,
                });
            }
            let rest = opts.timeout.saturating_sub(start.elapsed());
            tokio::time::sleep(opts.interval.min(rest)).await;
        }
    }
}

fn node_from(n: &Value) -> KubeNode {
    KubeNode {
        name: n["metadata"]["name"].as_str().unwrap_or_default().into(),
        unschedulable: n["spec"]["unschedulable"].as_bool().unwrap_or(false),
        ready: n["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        }),
        control_plane: n["metadata"]["labels"]
            .get("node-role.kubernetes.io/control-plane")
            .is_some(),
    }
}

fn pod_from(p: &Value) -> KubePod {
    let controller = p["metadata"]["ownerReferences"].as_array().and_then(|o| {
        o.iter()
            .find(|r| r["controller"] == true)
            .and_then(|r| r["kind"].as_str())
            .map(str::to_string)
    });
    KubePod {
        namespace: p["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .into(),
        name: p["metadata"]["name"].as_str().unwrap_or_default().into(),
        node: p["spec"]["nodeName"].as_str().unwrap_or_default().into(),
        controller,
        mirror: p["metadata"]["annotations"]
            .get("kubernetes.io/config.mirror")
            .is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_messages_keep_the_causes() {
        let body = r#"{"kind":"Status","status":"Failure","message":"Cannot evict pod as it would violate the pod's disruption budget.","reason":"TooManyRequests","details":{"causes":[{"reason":"DisruptionBudget","message":"The disruption budget web needs 2 healthy pods and has 2 currently"}]},"code":429}"#;
        assert_eq!(
            status_message(body),
            "Cannot evict pod as it would violate the pod's disruption budget. (The disruption budget web needs 2 healthy pods and has 2 currently)"
        );
        assert_eq!(status_message("plain"), "plain");
    }

    #[test]
    fn pods_and_nodes_from_json() {
        let p = json!({"metadata": {"namespace": "kube-system", "name": "cilium-x",
            "ownerReferences": [{"kind": "DaemonSet", "controller": true}]},
            "spec": {"nodeName": "w1"}});
        let p = pod_from(&p);
        assert_eq!(p.controller.as_deref(), Some("DaemonSet"));
        assert_eq!(p.key(), "kube-system/cilium-x");
        let n = node_from(&json!({"metadata": {"name": "cp-1",
            "labels": {"node-role.kubernetes.io/control-plane": ""}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}}));
        assert!(n.unschedulable && n.ready && n.control_plane);
    }
}
