//! Kubernetes Node objects, pods and PodDisruptionBudgets of a simulated cluster, and the
//! API verbs a drain uses: list/get/patch (cordon)/delete nodes, create/list/delete pods,
//! the Eviction subresource, and PodDisruptionBudgets.
//!
//! Read from kubernetes/kubernetes:
//! - `pkg/registry/core/pod/storage/eviction.go`, `EvictionREST.Create`: a pod that is
//!   Pending, Succeeded or Failed is deleted without looking at budgets; more than one
//!   matching budget is a 500 "This pod has more than one PodDisruptionBudget, which the
//!   eviction subresource does not support."; a not-ready pod is deleted when the budget
//!   has its desired healthy count; otherwise `checkAndDecrement` refuses with 429
//!   "Cannot evict pod as it would violate the pod's disruption budget." and the cause
//!   `DisruptionBudget` "The disruption budget `<name>` needs `<desired>` healthy pods and
//!   has `<current>` currently"; success answers a `Status` Success (201).
//! - `pkg/controller/disruption/disruption.go`: `currentHealthy` counts ready pods,
//!   `desiredHealthy` comes from `minAvailable` (an int or a percentage, rounded up) or
//!   `expectedCount - maxUnavailable`, `disruptionsAllowed = currentHealthy - desiredHealthy`
//!   (never below 0). The simulator computes the status when it is needed, where the real
//!   controller updates it a moment later.
//! - kubelet registers its Node at start; Talos uncordons it on boot when Talos cordoned it
//!   (siderolabs/talos `internal/app/machined/pkg/controllers/k8s/node_apply.go`,
//!   `ApplyCordoned`: only with the `talos.dev/cordoned` annotation); a node whose kubelet stops posting status shows
//!   `Ready=Unknown` ("Kubelet stopped posting node status."). Deleting a Node leaves its
//!   pods to the pod garbage collector (`pkg/controller/podgc`), which the simulator runs
//!   at once.
//!
//! Objects are kept per cluster ID in `<state_dir>/talos-kube.json`; a `Bootstrap` (a new
//! etcd) starts from an empty store.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Inner;
use super::kube::{respond, status_json};
use super::node::{ConfigFacts, Node};
use talos_api::k8s_upgrade::Component;

/// The annotation Talos puts on a node it cordons (`constants.AnnotationCordonedKey`).
pub(crate) const TALOS_CORDONED: &str = "talos.dev/cordoned";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct NodeRec {
    object: Value,
    pve_node: String,
    vmid: u32,
    control_plane: bool,
    ip: String,
    kubelet_version: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Cluster {
    nodes: BTreeMap<String, NodeRec>,
    /// `namespace/name` → pod.
    pods: BTreeMap<String, Value>,
    /// `namespace/name` → PodDisruptionBudget.
    pdbs: BTreeMap<String, Value>,
    rv: u64,
}

impl Cluster {
    fn next_rv(&mut self) -> String {
        self.rv += 1;
        self.rv.to_string()
    }
}

/// The objects of every cluster, persisted.
#[derive(Debug, Default)]
pub(crate) struct Store {
    path: PathBuf,
    clusters: BTreeMap<String, Cluster>,
}

impl Store {
    pub(crate) fn load(path: &Path) -> Result<Store, String> {
        let clusters = super::persist::read_json(path)?.unwrap_or_default();
        Ok(Store {
            path: path.to_path_buf(),
            clusters,
        })
    }

    fn save(&self) {
        super::persist::write_json(
            &self.path,
            &self.clusters,
            "the simulated Kubernetes objects",
        );
    }
}

/// Now, as Kubernetes writes timestamps (RFC 3339, UTC, seconds).
fn now() -> String {
    super::kube_objects::rfc3339_now()
}

fn uid() -> String {
    let b: [u8; 16] = rand::random();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// Whether a label selector (`matchLabels`, `matchExpressions`) selects `labels`. An empty
/// or missing selector selects nothing (eviction.go: "it should match nothing").
fn selects(selector: &Value, labels: &Value) -> bool {
    let ml = selector["matchLabels"].as_object();
    let me = selector["matchExpressions"].as_array();
    if ml.is_none_or(|m| m.is_empty()) && me.is_none_or(|m| m.is_empty()) {
        return false;
    }
    let label = |k: &str| labels.get(k).and_then(Value::as_str);
    ml.is_none_or(|m| m.iter().all(|(k, v)| label(k) == v.as_str()))
        && me.is_none_or(|exprs| {
            exprs.iter().all(|e| {
                let key = e["key"].as_str().unwrap_or_default();
                let values: Vec<&str> = e["values"]
                    .as_array()
                    .map(|v| v.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                match e["operator"].as_str() {
                    Some("In") => label(key).is_some_and(|v| values.contains(&v)),
                    Some("NotIn") => label(key).is_none_or(|v| !values.contains(&v)),
                    Some("Exists") => label(key).is_some(),
                    Some("DoesNotExist") => label(key).is_none(),
                    _ => false,
                }
            })
        })
}

/// `minAvailable`/`maxUnavailable` of an int or a percentage (rounded up) of `expected`.
fn scaled(v: &Value, expected: i64) -> Option<i64> {
    if let Some(n) = v.as_i64() {
        return Some(n);
    }
    let pct: i64 = v.as_str()?.strip_suffix('%')?.parse().ok()?;
    Some((pct * expected + 99) / 100)
}

/// A node's liveness: its kubelet posts status while the simulated machine runs installed.
fn node_ready(rt: &Inner, rec: &NodeRec, name: &str) -> bool {
    rt.all_nodes().iter().any(|n| {
        n.key.0 == rec.pve_node
            && n.key.1 == rec.vmid
            && n.state().installed
            && n.hostname() == name
            && n.servers.lock().map(|s| s.apid.is_some()).unwrap_or(false)
    })
}

struct View<'a> {
    rt: &'a Inner,
    c: &'a Cluster,
}

impl View<'_> {
    fn node_json(&self, name: &str, rec: &NodeRec) -> Value {
        let mut o = rec.object.clone();
        // The machine behind the Node object, while it runs installed.
        let machine = node_ready(self.rt, rec, name)
            .then(|| {
                self.rt.all_nodes().into_iter().find(|n| {
                    n.key.0 == rec.pve_node && n.key.1 == rec.vmid && n.hostname() == name
                })
            })
            .flatten();
        // Its kubelet posts status: Ready once it runs the image of its config
        // (`components.rs`); a machine that is gone stops posting.
        let cond = match &machine {
            Some(n) => super::components::ready_condition(n),
            None => json!({"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
                           "message": "Kubelet stopped posting node status."}),
        };
        let kubelet = machine
            .as_ref()
            .and_then(|n| n.running_image(Component::Kubelet))
            .and_then(|i| super::components::image_version(&i))
            .unwrap_or_else(|| format!("v{}", rec.kubelet_version));
        let talos = machine
            .as_ref()
            .and_then(|n| n.state().version)
            .unwrap_or_else(|| talos_api::config::TALOS_VERSION.to_string());
        o["kind"] = json!("Node");
        o["apiVersion"] = json!("v1");
        o["status"] = json!({
            "conditions": [cond],
            "addresses": [{"type": "InternalIP", "address": rec.ip},
                          {"type": "Hostname", "address": name}],
            "nodeInfo": {"kubeletVersion": kubelet,
                         "osImage": format!("Talos ({talos})"),
                         "operatingSystem": "linux", "architecture": "amd64",
                         "containerRuntimeVersion": "containerd://2.1.5"}
        });
        o
    }

    fn pod_ready(&self, pod: &Value) -> bool {
        let node = pod["spec"]["nodeName"].as_str().unwrap_or_default();
        pod["status"]["phase"] == "Running"
            && self
                .c
                .nodes
                .get(node)
                .is_some_and(|r| node_ready(self.rt, r, node))
    }

    fn pod_json(&self, pod: &Value) -> Value {
        let mut p = pod.clone();
        p["kind"] = json!("Pod");
        p["apiVersion"] = json!("v1");
        if p["status"]["phase"] == "Running" {
            let ready = if self.pod_ready(pod) { "True" } else { "False" };
            p["status"]["conditions"] = json!([{"type": "Ready", "status": ready}]);
        }
        p
    }

    /// (expected, currentHealthy, desiredHealthy, disruptionsAllowed) of a budget.
    fn pdb_numbers(&self, pdb: &Value) -> (i64, i64, i64, i64) {
        let ns = pdb["metadata"]["namespace"].as_str().unwrap_or_default();
        let pods: Vec<&Value> = self
            .c
            .pods
            .values()
            .filter(|p| {
                p["metadata"]["namespace"] == ns
                    && selects(&pdb["spec"]["selector"], &p["metadata"]["labels"])
                    && !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
            })
            .collect();
        let expected = pods.len() as i64;
        let healthy = pods.iter().filter(|p| self.pod_ready(p)).count() as i64;
        let spec = &pdb["spec"];
        let desired = if let Some(n) = spec.get("minAvailable").and_then(|v| scaled(v, expected)) {
            n
        } else if let Some(n) = spec.get("maxUnavailable").and_then(|v| scaled(v, expected)) {
            (expected - n).max(0)
        } else {
            1
        };
        (expected, healthy, desired, (healthy - desired).max(0))
    }

    fn pdb_json(&self, pdb: &Value) -> Value {
        let mut p = pdb.clone();
        let (expected, current, desired, allowed) = self.pdb_numbers(pdb);
        p["kind"] = json!("PodDisruptionBudget");
        p["apiVersion"] = json!("policy/v1");
        p["status"] = json!({"observedGeneration": pdb["metadata"]["generation"],
            "expectedPods": expected, "currentHealthy": current,
            "desiredHealthy": desired, "disruptionsAllowed": allowed});
        p
    }
}

fn ok(body: Value) -> Response<Full<Bytes>> {
    respond(StatusCode::OK, "application/json", body.to_string())
}

fn created(body: Value) -> Response<Full<Bytes>> {
    respond(StatusCode::CREATED, "application/json", body.to_string())
}

fn fail(code: u16, reason: &str, message: &str) -> Response<Full<Bytes>> {
    respond(
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        "application/json",
        status_json(code, reason, message),
    )
}

fn not_found(kind: &str, name: &str) -> Response<Full<Bytes>> {
    fail(404, "NotFound", &format!("{kind} \"{name}\" not found"))
}

fn list(kind: &str, api: &str, items: Vec<Value>) -> Response<Full<Bytes>> {
    ok(
        json!({"kind": kind, "apiVersion": api, "metadata": {"resourceVersion": "1"}, "items": items}),
    )
}

fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// `fieldSelector=spec.nodeName=<node>` (the one field selector drains use).
fn node_selector(query: Option<&str>) -> Option<String> {
    query_param(query, "fieldSelector").and_then(|s| {
        s.split(',')
            .find_map(|t| t.strip_prefix("spec.nodeName=").map(str::to_string))
    })
}

impl Inner {
    /// kubelet's registration: the Node object of `node` exists, uncordoned (Talos'
    /// `UncordonNode` on boot). Returns whether it is registered.
    pub(crate) fn kube_register_node(&self, node: &Node) -> bool {
        let Some(f) = node.facts() else {
            return false;
        };
        let name = node.hostname();
        let Ok(mut store) = self.kube.lock() else {
            return false;
        };
        let c = store.clusters.entry(f.cluster_id.clone()).or_default();
        let rv = c.next_rv();
        let cp = f.machine_type != "worker";
        let mut labels = serde_json::Map::new();
        labels.insert("kubernetes.io/hostname".into(), json!(name));
        labels.insert("kubernetes.io/os".into(), json!("linux"));
        labels.insert("kubernetes.io/arch".into(), json!("amd64"));
        if cp {
            labels.insert("node-role.kubernetes.io/control-plane".into(), json!(""));
        }
        let rec = c.nodes.entry(name.clone()).or_insert_with(|| NodeRec {
            object: json!({"metadata": {"name": name, "uid": uid(),
                "creationTimestamp": now()}, "spec": {"podCIDR": "10.244.0.0/24"}}),
            pve_node: String::new(),
            vmid: 0,
            control_plane: cp,
            ip: String::new(),
            kubelet_version: String::new(),
        });
        rec.object["metadata"]["labels"] = Value::Object(labels);
        rec.object["metadata"]["resourceVersion"] = json!(rv);
        // Talos' NodeApplyController (`ApplyCordoned`) uncordons only a node it cordoned
        // itself: one carrying the `talos.dev/cordoned` annotation.
        let by_talos = rec.object["metadata"]["annotations"]
            .get(TALOS_CORDONED)
            .is_some();
        if by_talos {
            if let Some(a) = rec.object["metadata"]["annotations"].as_object_mut() {
                a.remove(TALOS_CORDONED);
            }
            if let Some(spec) = rec.object["spec"].as_object_mut() {
                spec.remove("unschedulable");
            }
        }
        rec.pve_node = node.key.0.clone();
        rec.vmid = node.key.1;
        rec.control_plane = cp;
        rec.ip = node.ip.to_string();
        rec.kubelet_version = f.kubernetes_version.clone();
        store.save();
        true
    }

    /// A new etcd (Bootstrap) holds no Kubernetes objects.
    pub(crate) fn kube_forget_cluster(&self, cluster_id: &str) {
        if let Ok(mut store) = self.kube.lock() {
            store.clusters.remove(cluster_id);
            store.save();
        }
    }

    /// Cordon the node (Talos' graceful reset does it before draining).
    pub(crate) fn kube_cordon(&self, node: &Node) {
        let Some(f) = node.facts() else { return };
        let name = node.hostname();
        let cordoned = match self.kube.lock() {
            Ok(mut store) => {
                let done = match store
                    .clusters
                    .get_mut(&f.cluster_id)
                    .and_then(|c| c.nodes.get_mut(&name))
                {
                    Some(rec) if rec.object["spec"]["unschedulable"] != true => {
                        rec.object["spec"]["unschedulable"] = json!(true);
                        rec.object["metadata"]["annotations"][TALOS_CORDONED] = json!("true");
                        true
                    }
                    _ => false,
                };
                if done {
                    store.save();
                }
                done
            }
            Err(_) => false,
        };
        if cordoned {
            node.record(super::day2::EventKind::Cordon);
        }
    }
}

/// The routes of this module, for an authenticated client; `None` when the path is not
/// one of them.
pub(crate) fn route(
    node: &Arc<Node>,
    f: &ConfigFacts,
    method: &Method,
    path: &str,
    query: Option<&str>,
    body: &[u8],
) -> Option<Response<Full<Bytes>>> {
    let rt = node.runtime.upgrade()?;
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let resp = match parts.as_slice() {
        ["api", "v1", "nodes"] => nodes(&rt, f, method, None, body),
        ["api", "v1", "nodes", name] => nodes(&rt, f, method, Some(name), body),
        ["api", "v1", "pods"] => pods(&rt, f, method, None, None, query, body),
        ["api", "v1", "namespaces", ns, "pods"] => {
            pods(&rt, f, method, Some(ns), None, query, body)
        }
        ["api", "v1", "namespaces", ns, "pods", name] => {
            pods(&rt, f, method, Some(ns), Some(name), query, body)
        }
        ["api", "v1", "namespaces", ns, "pods", name, "eviction"] if method == Method::POST => {
            evict(&rt, f, ns, name, body)
        }
        ["apis", "policy", "v1", "poddisruptionbudgets"] => pdbs(&rt, f, method, None, None, body),
        [
            "apis",
            "policy",
            "v1",
            "namespaces",
            ns,
            "poddisruptionbudgets",
        ] => pdbs(&rt, f, method, Some(ns), None, body),
        [
            "apis",
            "policy",
            "v1",
            "namespaces",
            ns,
            "poddisruptionbudgets",
            name,
        ] => pdbs(&rt, f, method, Some(ns), Some(name), body),
        _ => return None,
    };
    Some(resp)
}

fn parse_body(body: &[u8]) -> Result<Value, String> {
    serde_json::from_slice(body)
        .map_err(|e| format!("the body of the request was in an unknown format: {e}"))
}

fn method_not_allowed() -> Response<Full<Bytes>> {
    fail(
        405,
        "MethodNotAllowed",
        "the server does not allow this method on the requested resource",
    )
}

fn nodes(
    rt: &Inner,
    f: &ConfigFacts,
    method: &Method,
    name: Option<&str>,
    body: &[u8],
) -> Response<Full<Bytes>> {
    let Ok(mut store) = rt.kube.lock() else {
        return fail(500, "InternalError", "store unavailable");
    };
    let c = store.clusters.entry(f.cluster_id.clone()).or_default();
    let Some(name) = name else {
        if method != Method::GET {
            return method_not_allowed();
        }
        let v = View { rt, c };
        let items = c.nodes.iter().map(|(n, r)| v.node_json(n, r)).collect();
        return list("NodeList", "v1", items);
    };
    if !c.nodes.contains_key(name) {
        return not_found("nodes", name);
    }
    match *method {
        Method::GET => {
            let v = View { rt, c };
            ok(v.node_json(name, &c.nodes[name]))
        }
        Method::PATCH => {
            let patch = match parse_body(body) {
                Ok(p) => p,
                Err(e) => return fail(400, "BadRequest", &e),
            };
            let rv = c.next_rv();
            let Some(rec) = c.nodes.get_mut(name) else {
                return not_found("nodes", name);
            };
            let was = rec.object["spec"]["unschedulable"] == true;
            merge_patch(&mut rec.object, &patch);
            rec.object["metadata"]["resourceVersion"] = json!(rv);
            let now_cordoned = rec.object["spec"]["unschedulable"] == true;
            let (vmid, cp) = (rec.vmid, rec.control_plane);
            let out = View { rt, c: &*c }.node_json(name, &c.nodes[name]);
            store.save();
            drop(store);
            if !was && now_cordoned {
                rt.record_event(vmid, name, cp, super::day2::EventKind::Cordon);
            }
            ok(out)
        }
        Method::DELETE => {
            let Some(rec) = c.nodes.remove(name) else {
                return not_found("nodes", name);
            };
            // podgc: pods bound to a node that no longer exists are deleted.
            c.pods
                .retain(|_, p| p["spec"]["nodeName"].as_str() != Some(name));
            let out = View { rt, c: &*c }.node_json(name, &rec);
            store.save();
            drop(store);
            rt.record_event(
                rec.vmid,
                name,
                rec.control_plane,
                super::day2::EventKind::NodeDeleted,
            );
            ok(out)
        }
        _ => method_not_allowed(),
    }
}

fn pods(
    rt: &Inner,
    f: &ConfigFacts,
    method: &Method,
    ns: Option<&str>,
    name: Option<&str>,
    query: Option<&str>,
    body: &[u8],
) -> Response<Full<Bytes>> {
    let Ok(mut store) = rt.kube.lock() else {
        return fail(500, "InternalError", "store unavailable");
    };
    let c = store.clusters.entry(f.cluster_id.clone()).or_default();
    match (method.clone(), ns, name) {
        (Method::GET, _, None) => {
            let on = node_selector(query);
            let v = View { rt, c };
            let items = c
                .pods
                .values()
                .filter(|p| ns.is_none_or(|n| p["metadata"]["namespace"] == n))
                .filter(|p| {
                    on.as_deref()
                        .is_none_or(|n| p["spec"]["nodeName"].as_str() == Some(n))
                })
                .map(|p| v.pod_json(p))
                .collect();
            list("PodList", "v1", items)
        }
        (Method::POST, Some(ns), None) => {
            let mut pod = match parse_body(body) {
                Ok(p) => p,
                Err(e) => return fail(400, "BadRequest", &e),
            };
            let Some(pname) = pod["metadata"]["name"].as_str().map(str::to_string) else {
                return fail(
                    422,
                    "Invalid",
                    "Pod \"\" is invalid: metadata.name: Required value: name or generateName is required",
                );
            };
            if pod["metadata"]["namespace"]
                .as_str()
                .is_some_and(|n| n != ns)
            {
                return fail(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not match the namespace sent on the request",
                );
            }
            let key = format!("{ns}/{pname}");
            if c.pods.contains_key(&key) {
                return fail(
                    409,
                    "AlreadyExists",
                    &format!("pods \"{pname}\" already exists"),
                );
            }
            // The scheduler: a Ready, schedulable node, workers first, fewest pods.
            if pod["spec"]["nodeName"].as_str().is_none_or(str::is_empty) {
                let v = View { rt, c };
                let pick = c
                    .nodes
                    .iter()
                    .filter(|(n, r)| {
                        r.object["spec"]["unschedulable"] != true && node_ready(rt, r, n)
                    })
                    .min_by_key(|(n, r)| {
                        let count =
                            v.c.pods
                                .values()
                                .filter(|p| p["spec"]["nodeName"].as_str() == Some(n.as_str()))
                                .count();
                        (r.control_plane, count, (*n).clone())
                    })
                    .map(|(n, _)| n.clone());
                if let Some(n) = pick {
                    pod["spec"]["nodeName"] = json!(n);
                }
            }
            let bound = pod["spec"]["nodeName"]
                .as_str()
                .is_some_and(|n| !n.is_empty());
            let rv = c.next_rv();
            pod["metadata"]["namespace"] = json!(ns);
            pod["metadata"]["uid"] = json!(uid());
            pod["metadata"]["resourceVersion"] = json!(rv);
            pod["metadata"]["creationTimestamp"] = json!(now());
            pod["status"] = json!({"phase": if bound { "Running" } else { "Pending" }});
            c.pods.insert(key, pod.clone());
            let out = View { rt, c: &*c }.pod_json(&pod);
            store.save();
            created(out)
        }
        (Method::GET, Some(_), Some(pname)) => {
            let key = format!("{}/{pname}", ns.unwrap_or_default());
            match c.pods.get(&key) {
                Some(p) => ok(View { rt, c: &*c }.pod_json(p)),
                None => not_found("pods", pname),
            }
        }
        (Method::DELETE, Some(_), Some(pname)) => {
            let key = format!("{}/{pname}", ns.unwrap_or_default());
            match c.pods.remove(&key) {
                Some(p) => {
                    store.save();
                    ok(p)
                }
                None => not_found("pods", pname),
            }
        }
        _ => method_not_allowed(),
    }
}

fn evict(rt: &Inner, f: &ConfigFacts, ns: &str, name: &str, body: &[u8]) -> Response<Full<Bytes>> {
    let eviction = match parse_body(body) {
        Ok(p) => p,
        Err(e) => return fail(400, "BadRequest", &e),
    };
    if eviction["metadata"]["name"].as_str() != Some(name) {
        return fail(
            400,
            "BadRequest",
            "name in URL does not match name in Eviction object",
        );
    }
    let Ok(mut store) = rt.kube.lock() else {
        return fail(500, "InternalError", "store unavailable");
    };
    let c = store.clusters.entry(f.cluster_id.clone()).or_default();
    let key = format!("{ns}/{name}");
    let Some(pod) = c.pods.get(&key).cloned() else {
        return not_found("pods", name);
    };
    let node_name = pod["spec"]["nodeName"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let (vmid, cp) = c
        .nodes
        .get(&node_name)
        .map_or((0, false), |r| (r.vmid, r.control_plane));
    let phase = pod["status"]["phase"].as_str().unwrap_or_default();
    // canIgnorePDB: terminal and pending pods go at once.
    let ignore_pdb = matches!(phase, "Succeeded" | "Failed" | "Pending");
    if !ignore_pdb {
        let v = View { rt, c: &*c };
        let budgets: Vec<&Value> = c
            .pdbs
            .values()
            .filter(|b| {
                b["metadata"]["namespace"] == ns
                    && selects(&b["spec"]["selector"], &pod["metadata"]["labels"])
            })
            .collect();
        if budgets.len() > 1 {
            return fail(
                500,
                "InternalError",
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            );
        }
        if let Some(b) = budgets.first() {
            let (_, current, desired, allowed) = v.pdb_numbers(b);
            let skip = !v.pod_ready(&pod) && current >= desired && desired > 0;
            if !skip && allowed == 0 {
                let pdb_name = b["metadata"]["name"].as_str().unwrap_or_default();
                let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                    "status": "Failure",
                    "message": "Cannot evict pod as it would violate the pod's disruption budget.",
                    "reason": "TooManyRequests",
                    "details": {"causes": [{"reason": "DisruptionBudget",
                        "message": format!("The disruption budget {pdb_name} needs {desired} healthy pods and has {current} currently")}]},
                    "code": 429});
                drop(store);
                rt.record_event(
                    vmid,
                    &node_name,
                    cp,
                    super::day2::EventKind::EvictionRefused(key),
                );
                return respond(
                    StatusCode::TOO_MANY_REQUESTS,
                    "application/json",
                    body.to_string(),
                );
            }
        }
    }
    c.pods.remove(&key);
    store.save();
    drop(store);
    rt.record_event(vmid, &node_name, cp, super::day2::EventKind::Evicted(key));
    created(json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Success", "code": 201}))
}

fn pdbs(
    rt: &Inner,
    f: &ConfigFacts,
    method: &Method,
    ns: Option<&str>,
    name: Option<&str>,
    body: &[u8],
) -> Response<Full<Bytes>> {
    let Ok(mut store) = rt.kube.lock() else {
        return fail(500, "InternalError", "store unavailable");
    };
    let c = store.clusters.entry(f.cluster_id.clone()).or_default();
    const KIND: &str = "poddisruptionbudgets.policy";
    match (method.clone(), ns, name) {
        (Method::GET, _, None) => {
            let v = View { rt, c: &*c };
            let items = c
                .pdbs
                .values()
                .filter(|p| ns.is_none_or(|n| p["metadata"]["namespace"] == n))
                .map(|p| v.pdb_json(p))
                .collect();
            list("PodDisruptionBudgetList", "policy/v1", items)
        }
        (Method::POST, Some(ns), None) => {
            let mut pdb = match parse_body(body) {
                Ok(p) => p,
                Err(e) => return fail(400, "BadRequest", &e),
            };
            let Some(pname) = pdb["metadata"]["name"].as_str().map(str::to_string) else {
                return fail(
                    422,
                    "Invalid",
                    "PodDisruptionBudget.policy \"\" is invalid: metadata.name: Required value: name or generateName is required",
                );
            };
            let spec = &pdb["spec"];
            if spec.get("minAvailable").is_some() && spec.get("maxUnavailable").is_some() {
                return fail(
                    422,
                    "Invalid",
                    &format!(
                        "PodDisruptionBudget.policy \"{pname}\" is invalid: spec: Invalid value: minAvailable and maxUnavailable cannot be both set"
                    ),
                );
            }
            let key = format!("{ns}/{pname}");
            if c.pdbs.contains_key(&key) {
                return fail(
                    409,
                    "AlreadyExists",
                    &format!("{KIND} \"{pname}\" already exists"),
                );
            }
            let rv = c.next_rv();
            pdb["metadata"]["namespace"] = json!(ns);
            pdb["metadata"]["uid"] = json!(uid());
            pdb["metadata"]["generation"] = json!(1);
            pdb["metadata"]["resourceVersion"] = json!(rv);
            pdb["metadata"]["creationTimestamp"] = json!(now());
            c.pdbs.insert(key, pdb.clone());
            let out = View { rt, c: &*c }.pdb_json(&pdb);
            store.save();
            created(out)
        }
        (m, Some(ns), Some(pname)) => {
            let key = format!("{ns}/{pname}");
            if !c.pdbs.contains_key(&key) {
                return not_found(KIND, pname);
            }
            match m {
                Method::GET => ok(View { rt, c: &*c }.pdb_json(&c.pdbs[&key])),
                Method::PATCH => {
                    let patch = match parse_body(body) {
                        Ok(p) => p,
                        Err(e) => return fail(400, "BadRequest", &e),
                    };
                    let rv = c.next_rv();
                    let Some(pdb) = c.pdbs.get_mut(&key) else {
                        return not_found(KIND, pname);
                    };
                    let spec_before = pdb["spec"].clone();
                    merge_patch(pdb, &patch);
                    if pdb["spec"] != spec_before {
                        let g = pdb["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
                        pdb["metadata"]["generation"] = json!(g);
                    }
                    pdb["metadata"]["resourceVersion"] = json!(rv);
                    let out = View { rt, c: &*c }.pdb_json(&c.pdbs[&key]);
                    store.save();
                    ok(out)
                }
                Method::DELETE => {
                    let gone = c.pdbs.remove(&key);
                    store.save();
                    ok(gone.unwrap_or_default())
                }
                _ => method_not_allowed(),
            }
        }
        _ => method_not_allowed(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn selectors_and_budget_arithmetic() {
        let labels = json!({"app": "web", "tier": "front"});
        assert!(selects(&json!({"matchLabels": {"app": "web"}}), &labels));
        assert!(!selects(&json!({"matchLabels": {"app": "db"}}), &labels));
        assert!(!selects(&json!({}), &labels), "empty selects nothing");
        assert!(selects(
            &json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["front"]}]}),
            &labels
        ));
        assert!(!selects(
            &json!({"matchExpressions": [{"key": "x", "operator": "Exists"}]}),
            &labels
        ));
        assert_eq!(scaled(&json!(2), 5), Some(2));
        assert_eq!(scaled(&json!("50%"), 3), Some(2));
        assert_eq!(scaled(&json!("x"), 3), None);
    }

    #[test]
    fn timestamps_are_rfc3339() {
        let t = now();
        assert_eq!(t.len(), 20, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z'), "{t}");
    }

    #[test]
    fn merge_patch_follows_rfc7386() {
        let mut t = json!({"spec": {"podCIDR": "a", "unschedulable": true}, "x": 1});
        merge_patch(
            &mut t,
            &json!({"spec": {"unschedulable": null}, "y": {"z": 2}}),
        );
        assert_eq!(t, json!({"spec": {"podCIDR": "a"}, "x": 1, "y": {"z": 2}}));
    }
}
