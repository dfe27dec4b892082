//! What a simulated cluster's etcd holds: Kubernetes objects (Namespaces, ConfigMaps,
//! Secrets) behind the simulated Kubernetes API, and the etcd snapshots that carry them.
//!
//! **Storage.** One store per cluster (by the config's `cluster.id`) in
//! `<state_dir>/talos-etcd/<cluster>.json` (mode 0600, written atomically), keyed as
//! kube-apiserver keys its etcd objects (`/registry/<resource>/<namespace>/<name>`, the
//! default `--etcd-prefix`). A plain `Bootstrap` starts it empty (the four namespaces
//! kube-apiserver creates); `Bootstrap` with `recover_etcd` starts it from the uploaded
//! snapshot; destroying the last control plane of the cluster deletes it, as losing every
//! member's data directory loses etcd.
//!
//! **API.** Enough of kube-apiserver's REST conventions for `kubectl create`, `get` and
//! `delete`: discovery entries, create (201, `AlreadyExists` 409, the NamespaceLifecycle
//! admission's 404 for a missing namespace), get, list (with `metadata.name` field
//! selectors and equality label selectors), replace, delete (a `Status` of `Success`; a
//! namespace takes its objects with it at once instead of going through `Terminating`).
//! Messages follow `k8s.io/apimachinery/pkg/api/errors` (`NewNotFound`, `NewAlreadyExists`).
//!
//! Snapshots of the store: `etcd_backup.rs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::node::Node;

/// One lock for every store file of the process (the nodes of a lab share a process).
static LOCK: Mutex<()> = Mutex::new(());

/// A cluster's etcd contents.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct Store {
    /// etcd's revision: bumped by every write, the objects' `resourceVersion`.
    pub revision: u64,
    /// `/registry/...` key → object.
    pub kvs: BTreeMap<String, Value>,
}

/// A resource this store serves.
struct Resource {
    name: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
}

const RESOURCES: &[Resource] = &[
    Resource {
        name: "namespaces",
        singular: "namespace",
        kind: "Namespace",
        namespaced: false,
        short: &["ns"],
    },
    Resource {
        name: "configmaps",
        singular: "configmap",
        kind: "ConfigMap",
        namespaced: true,
        short: &["cm"],
    },
    Resource {
        name: "secrets",
        singular: "secret",
        kind: "Secret",
        namespaced: true,
        short: &[],
    },
];

/// The discovery entries (`/api/v1`) of the resources kept here.
pub(crate) fn api_resources() -> Vec<Value> {
    RESOURCES
        .iter()
        .map(|r| {
            json!({"name": r.name, "singularName": r.singular, "namespaced": r.namespaced,
                "kind": r.kind, "shortNames": r.short,
                "verbs": ["create", "delete", "get", "list", "update"]})
        })
        .collect()
}

/// Add [`api_resources`] to an `/api/v1` `APIResourceList` reply.
pub(crate) async fn with_resources(resp: Resp) -> Resp {
    if resp.status() != StatusCode::OK {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let Ok(bytes) = body.collect().await.map(|b| b.to_bytes());
    let Ok(mut list) = serde_json::from_slice::<Value>(&bytes) else {
        return Response::from_parts(parts, Full::new(bytes));
    };
    if let Some(r) = list["resources"].as_array_mut() {
        r.extend(api_resources());
    }
    Response::from_parts(parts, Full::new(Bytes::from(list.to_string())))
}

fn resource(name: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.name == name)
}

// ---- persistence -------------------------------------------------------------------

/// `<state_dir>/talos-etcd` for a runtime whose node files are in `<state_dir>/talos`.
pub(crate) fn store_dir(talos_dir: &Path) -> PathBuf {
    talos_dir
        .parent()
        .map_or_else(|| talos_dir.join("etcd"), |p| p.join("talos-etcd"))
}

fn store_file(talos_dir: &Path, cluster_id: &str) -> PathBuf {
    let h = hex::encode(Sha256::digest(cluster_id.as_bytes()));
    store_dir(talos_dir).join(format!("{}.json", &h[..16]))
}

/// Where a node keeps an uploaded recovery snapshot (Talos: `/var/lib/etcd.snapshot`).
pub(crate) fn recovery_file(talos_dir: &Path, key: &(String, u32)) -> PathBuf {
    let safe: String = key
        .0
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    store_dir(talos_dir).join(format!("{safe}-{}.etcd.snapshot", key.1))
}

pub(crate) fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    talos_api::talosconfig::write_private(path, data)
        .map_err(|e| std::io::Error::other(e.to_string()))
}

fn load(path: &Path) -> std::io::Result<Option<Store>> {
    super::persist::read_json(path).map_err(std::io::Error::other)
}

fn save(path: &Path, s: &Store) -> std::io::Result<()> {
    let json = serde_json::to_vec(s).map_err(std::io::Error::other)?;
    write_private(path, &json)
}

/// Replace the cluster's store (Bootstrap: empty or recovered).
pub(crate) fn replace(talos_dir: &Path, cluster_id: &str, s: &Store) -> std::io::Result<()> {
    let _g = LOCK
        .lock()
        .map_err(|_| std::io::Error::other("store lock poisoned"))?;
    save(&store_file(talos_dir, cluster_id), s)
}

/// Forget the cluster's etcd (its last member's data directory is gone).
pub(crate) fn forget(talos_dir: &Path, cluster_id: &str) {
    if let Ok(_g) = LOCK.lock() {
        let _ = std::fs::remove_file(store_file(talos_dir, cluster_id));
    }
}

/// Called before a node's state file is removed (its VM destroyed): its uploaded snapshot
/// goes with its disk, and when no other control plane of its cluster remains, so does
/// the cluster's etcd.
pub(crate) fn node_destroyed(talos_dir: &Path, key: &(String, u32), state_file: &Path) {
    let _ = std::fs::remove_file(recovery_file(talos_dir, key));
    let Some(facts) = super::node::NodeState::load(state_file)
        .ok()
        .flatten()
        .and_then(|s| s.config)
        .and_then(|c| super::node::ConfigFacts::from_yaml(&c).ok())
    else {
        return;
    };
    if facts.machine_type != "controlplane" {
        return;
    }
    let others = std::fs::read_dir(talos_dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p != state_file && p.extension().is_some_and(|x| x == "json"))
        .filter_map(|p| super::node::NodeState::load(&p).ok().flatten())
        .filter_map(|s| {
            s.config
                .and_then(|c| super::node::ConfigFacts::from_yaml(&c).ok())
        })
        .any(|f| f.cluster_id == facts.cluster_id && f.machine_type == "controlplane");
    if !others {
        forget(talos_dir, &facts.cluster_id);
    }
}

/// What kube-apiserver creates on a new cluster.
pub(crate) fn fresh_store() -> Store {
    let mut s = Store::default();
    for ns in ["default", "kube-node-lease", "kube-public", "kube-system"] {
        let obj = json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}});
        let _ = s.insert(&format!("/registry/namespaces/{ns}"), obj);
    }
    s
}

impl Store {
    /// Store `obj` under `key` with fresh server-set metadata; `false` when it exists.
    pub(crate) fn insert(&mut self, key: &str, mut obj: Value) -> bool {
        if self.kvs.contains_key(key) {
            return false;
        }
        self.revision += 1;
        let meta = &mut obj["metadata"];
        meta["uid"] = json!(uid());
        meta["resourceVersion"] = json!(self.revision.to_string());
        meta["creationTimestamp"] = json!(rfc3339_now());
        self.kvs.insert(key.to_string(), obj);
        true
    }
}

fn uid() -> String {
    let b: [u8; 16] = rand::random();
    let h = hex::encode(b);
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// Seconds since the epoch as RFC 3339 UTC (metav1.Time's wire form).
pub(crate) fn rfc3339_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    rfc3339(secs)
}

fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = crate::pve::calendar::civil(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

// ---- the REST API ------------------------------------------------------------------

type Resp = Response<Full<Bytes>>;

fn respond(status: StatusCode, body: &Value) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn status(code: u16, reason: &str, message: &str, details: Value) -> Resp {
    let mut body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code});
    if !details.is_null() {
        body["details"] = details;
    }
    respond(
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &body,
    )
}

fn not_found(r: &Resource, name: &str) -> Resp {
    status(
        404,
        "NotFound",
        &format!("{} \"{name}\" not found", r.name),
        json!({"name": name, "kind": r.name}),
    )
}

fn bad_request(message: &str) -> Resp {
    status(400, "BadRequest", message, Value::Null)
}

/// A parsed request path of the resources kept here.
struct Target<'a> {
    resource: &'static Resource,
    namespace: Option<&'a str>,
    name: Option<&'a str>,
}

fn parse_path(path: &str) -> Option<Target<'_>> {
    let rest = path.strip_prefix("/api/v1/")?;
    let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    match parts.as_slice() {
        ["namespaces"] => Some(Target {
            resource: resource("namespaces")?,
            namespace: None,
            name: None,
        }),
        ["namespaces", name] => Some(Target {
            resource: resource("namespaces")?,
            namespace: None,
            name: Some(name),
        }),
        ["namespaces", ns, res] => Some(Target {
            resource: resource(res).filter(|r| r.namespaced)?,
            namespace: Some(ns),
            name: None,
        }),
        ["namespaces", ns, res, name] => Some(Target {
            resource: resource(res).filter(|r| r.namespaced)?,
            namespace: Some(ns),
            name: Some(name),
        }),
        [res] => Some(Target {
            resource: resource(res).filter(|r| r.namespaced)?,
            namespace: None,
            name: None,
        }),
        _ => None,
    }
}

fn key(r: &Resource, ns: Option<&str>, name: &str) -> String {
    match ns {
        Some(ns) if r.namespaced => format!("/registry/{}/{ns}/{name}", r.name),
        _ => format!("/registry/{}/{name}", r.name),
    }
}

/// DNS-1123 subdomain (ConfigMap/Secret names) or label (Namespace names), with
/// apimachinery's validation messages.
fn invalid_name(r: &Resource, name: &str) -> Option<String> {
    let label = !r.namespaced;
    let max = if label { 63 } else { 253 };
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (!label && c == '.'));
    let ends_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    if name.is_empty() {
        return Some("name or generateName is required".into());
    }
    if name.len() > max || !ok_chars || !ends_ok {
        let what = if label {
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"
        } else {
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
        };
        return Some(format!("metadata.name: Invalid value: \"{name}\": {what}"));
    }
    None
}

fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(v) => {
                    out.push(v);
                    i += 3;
                }
                Err(_) => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `a=b,c==d,e!=f` over `labels` (equality-based selectors).
fn labels_match(selector: &str, labels: &Value) -> bool {
    selector.split(',').filter(|t| !t.is_empty()).all(|term| {
        if let Some((k, v)) = term.split_once("!=") {
            labels.get(k.trim()).and_then(Value::as_str) != Some(v.trim())
        } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            labels.get(k.trim()).and_then(Value::as_str) == Some(v.trim())
        } else {
            labels.get(term.trim()).is_some()
        }
    })
}

fn fields_match(selector: &str, obj: &Value) -> bool {
    selector.split(',').filter(|t| !t.is_empty()).all(|term| {
        let (k, v, eq) = match term.split_once("!=") {
            Some((k, v)) => (k, v, false),
            None => match term.split_once("==").or_else(|| term.split_once('=')) {
                Some((k, v)) => (k, v, true),
                None => return false,
            },
        };
        let got = match k.trim() {
            "metadata.name" => obj["metadata"]["name"].as_str(),
            "metadata.namespace" => obj["metadata"]["namespace"].as_str(),
            _ => None,
        };
        (got == Some(v.trim())) == eq
    })
}

/// The cluster's store for this node, or the error kube-apiserver gives without etcd.
fn cluster_of(node: &Arc<Node>) -> Option<(PathBuf, String)> {
    let rt = node.runtime.upgrade()?;
    let f = node.facts()?;
    Some((rt.dir.clone(), f.cluster_id))
}

/// Whether a control plane of `node`'s cluster was bootstrapped (etcd exists).
pub(crate) fn cluster_bootstrapped(node: &Node) -> bool {
    let Some(me) = node.facts() else {
        return false;
    };
    node.runtime.upgrade().is_some_and(|rt| {
        rt.all_nodes().iter().any(|p| {
            p.state().bootstrapped && p.facts().is_some_and(|f| f.cluster_id == me.cluster_id)
        })
    })
}

/// The cluster's store; a cluster bootstrapped by a simulator that kept no store (state
/// from before it did) gets a fresh one.
pub(crate) fn read_or_init(
    talos_dir: &Path,
    cluster_id: &str,
    bootstrapped: bool,
) -> std::io::Result<Option<Store>> {
    let _g = LOCK
        .lock()
        .map_err(|_| std::io::Error::other("store lock poisoned"))?;
    let file = store_file(talos_dir, cluster_id);
    match load(&file)? {
        Some(s) => Ok(Some(s)),
        None if bootstrapped => {
            let s = fresh_store();
            save(&file, &s)?;
            Ok(Some(s))
        }
        None => Ok(None),
    }
}

/// Serve `req` when it is for a resource kept here; otherwise give it back.
pub(crate) async fn route(
    node: &Arc<Node>,
    authenticated: bool,
    req: Request<hyper::body::Incoming>,
) -> Result<Resp, Request<hyper::body::Incoming>> {
    let Some(target) = parse_path(req.uri().path()) else {
        return Err(req);
    };
    if !authenticated {
        return Ok(status(401, "Unauthorized", "Unauthorized", Value::Null));
    }
    let method = req.method().clone();
    let query = req.uri().query().unwrap_or_default().to_string();
    let protobuf = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(super::kube_proto::CONTENT_TYPE));
    let namespace = target.namespace.map(str::to_string);
    let name = target.name.map(str::to_string);
    let r = target.resource;
    let mut body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return Ok(bad_request(&format!("reading the body: {e}"))),
    };
    // kubectl's typed clients (create namespace/configmap/secret) send protobuf.
    if protobuf && !body.is_empty() {
        match super::kube_proto::decode(&body) {
            Ok(v) => body = Bytes::from(v.to_string()),
            Err(e) => return Ok(bad_request(&e)),
        }
    }
    let bootstrapped = cluster_bootstrapped(node);
    let Some((dir, cluster_id)) = cluster_of(node) else {
        return Ok(status(
            503,
            "ServiceUnavailable",
            "etcd is not available",
            Value::Null,
        ));
    };
    let _g = match LOCK.lock() {
        Ok(g) => g,
        Err(_) => {
            return Ok(status(
                500,
                "InternalError",
                "store lock poisoned",
                Value::Null,
            ));
        }
    };
    let file = store_file(&dir, &cluster_id);
    let loaded = match load(&file) {
        Ok(None) if bootstrapped => {
            let s = fresh_store();
            save(&file, &s).map(|()| Some(s))
        }
        other => other,
    };
    let mut store = match loaded {
        Ok(Some(s)) => s,
        Ok(None) => {
            return Ok(status(
                503,
                "ServiceUnavailable",
                "etcd is not available (the cluster is not bootstrapped)",
                Value::Null,
            ));
        }
        Err(e) => return Ok(status(500, "InternalError", &e.to_string(), Value::Null)),
    };
    let before = store.clone();
    let resp = serve(
        &mut store,
        r,
        namespace.as_deref(),
        name.as_deref(),
        &method,
        &query,
        &body,
    );
    if store != before
        && let Err(e) = save(&file, &store)
    {
        return Ok(status(500, "InternalError", &e.to_string(), Value::Null));
    }
    Ok(resp)
}

fn serve(
    store: &mut Store,
    r: &'static Resource,
    ns: Option<&str>,
    name: Option<&str>,
    method: &http::Method,
    query: &str,
    body: &[u8],
) -> Resp {
    // A namespaced object needs its namespace (NamespaceLifecycle admission on writes,
    // plain NotFound on reads of its objects).
    let ns_missing = |store: &Store| {
        ns.is_some_and(|n| !store.kvs.contains_key(&format!("/registry/namespaces/{n}")))
    };
    match (method.as_str(), name) {
        ("GET", None) => {
            let prefix = match ns {
                Some(n) => format!("/registry/{}/{n}/", r.name),
                None => format!("/registry/{}/", r.name),
            };
            let fsel = query_param(query, "fieldSelector").unwrap_or_default();
            let lsel = query_param(query, "labelSelector").unwrap_or_default();
            let items: Vec<Value> = store
                .kvs
                .range(prefix.clone()..)
                .take_while(|(k, _)| k.starts_with(&prefix))
                .map(|(_, v)| v.clone())
                .filter(|o| fields_match(&fsel, o))
                .filter(|o| labels_match(&lsel, &o["metadata"]["labels"]))
                .collect();
            respond(
                StatusCode::OK,
                &json!({"kind": format!("{}List", r.kind), "apiVersion": "v1",
                    "metadata": {"resourceVersion": store.revision.to_string()}, "items": items}),
            )
        }
        ("GET", Some(name)) => match store.kvs.get(&key(r, ns, name)) {
            Some(o) => respond(StatusCode::OK, o),
            None => not_found(r, name),
        },
        ("POST", None) => {
            let mut obj: Value = match serde_json::from_slice(body) {
                Ok(v @ Value::Object(_)) => v,
                _ => return bad_request("the body of the request was in an unknown format"),
            };
            if obj["kind"].as_str().is_some_and(|k| k != r.kind) {
                return bad_request(&format!(
                    "the API version in the data (v1) does not match the expected API version (v1), or kind {} is not {}",
                    obj["kind"], r.kind
                ));
            }
            obj["kind"] = json!(r.kind);
            obj["apiVersion"] = json!("v1");
            if !obj["metadata"].is_object() {
                obj["metadata"] = json!({});
            }
            if let Some(body_ns) = obj["metadata"]["namespace"].as_str()
                && ns.is_some_and(|n| n != body_ns)
            {
                return bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                );
            }
            let name = obj["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if let Some(msg) = invalid_name(r, &name) {
                return status(
                    422,
                    "Invalid",
                    &format!("{} \"{name}\" is invalid: {msg}", r.kind),
                    json!({"name": name, "kind": r.kind}),
                );
            }
            if r.namespaced {
                if ns_missing(store) {
                    let n = ns.unwrap_or_default();
                    return status(
                        404,
                        "NotFound",
                        &format!("namespaces \"{n}\" not found"),
                        json!({"name": n, "kind": "namespaces"}),
                    );
                }
                obj["metadata"]["namespace"] = json!(ns);
            }
            match r.kind {
                "Namespace" => {
                    obj["spec"] = json!({"finalizers": ["kubernetes"]});
                    obj["status"] = json!({"phase": "Active"});
                    obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
                }
                "Secret" => {
                    if obj["type"].is_null() {
                        obj["type"] = json!("Opaque");
                    }
                    // stringData is write-only: merged into data (base64).
                    if let Some(sd) = obj.get("stringData").and_then(Value::as_object).cloned() {
                        use base64::Engine as _;
                        for (k, v) in sd {
                            let text = v.as_str().unwrap_or_default();
                            obj["data"][k] =
                                json!(base64::engine::general_purpose::STANDARD.encode(text));
                        }
                        if let Some(o) = obj.as_object_mut() {
                            o.remove("stringData");
                        }
                    }
                }
                _ => {}
            }
            if query_param(query, "dryRun").is_some() {
                return respond(StatusCode::CREATED, &obj);
            }
            let k = key(r, ns, &name);
            if !store.insert(&k, obj) {
                return status(
                    409,
                    "AlreadyExists",
                    &format!("{} \"{name}\" already exists", r.name),
                    json!({"name": name, "kind": r.name}),
                );
            }
            respond(StatusCode::CREATED, &store.kvs[&k])
        }
        ("PUT", Some(name)) => {
            let k = key(r, ns, name);
            let Some(old) = store.kvs.get(&k).cloned() else {
                return not_found(r, name);
            };
            let mut obj: Value = match serde_json::from_slice(body) {
                Ok(v @ Value::Object(_)) => v,
                _ => return bad_request("the body of the request was in an unknown format"),
            };
            if obj["metadata"]["name"].as_str() != Some(name) {
                return bad_request("the name of the object does not match the name on the URL");
            }
            if let Some(rv) = obj["metadata"]["resourceVersion"].as_str()
                && Some(rv) != old["metadata"]["resourceVersion"].as_str()
            {
                return status(
                    409,
                    "Conflict",
                    &format!(
                        "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                        r.name
                    ),
                    json!({"name": name, "kind": r.name}),
                );
            }
            store.revision += 1;
            for f in ["uid", "creationTimestamp", "namespace"] {
                obj["metadata"][f] = old["metadata"][f].clone();
            }
            obj["metadata"]["resourceVersion"] = json!(store.revision.to_string());
            obj["kind"] = json!(r.kind);
            obj["apiVersion"] = json!("v1");
            store.kvs.insert(k.clone(), obj);
            respond(StatusCode::OK, &store.kvs[&k])
        }
        ("DELETE", Some(name)) => {
            let k = key(r, ns, name);
            let Some(old) = store.kvs.remove(&k) else {
                return not_found(r, name);
            };
            store.revision += 1;
            if r.kind == "Namespace" {
                // The namespace controller deletes what it holds (at once here).
                let inner: Vec<String> = store
                    .kvs
                    .keys()
                    .filter(|key| {
                        RESOURCES
                            .iter()
                            .filter(|x| x.namespaced)
                            .any(|x| key.starts_with(&format!("/registry/{}/{name}/", x.name)))
                    })
                    .cloned()
                    .collect();
                for key in inner {
                    store.kvs.remove(&key);
                }
                let mut gone = old;
                gone["status"]["phase"] = json!("Terminating");
                return respond(StatusCode::OK, &gone);
            }
            respond(
                StatusCode::OK,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                    "status": "Success",
                    "details": {"name": name, "kind": r.name,
                                "uid": old["metadata"]["uid"]}}),
            )
        }
        (m, _) => status(
            405,
            "MethodNotAllowed",
            &format!("{m} is not supported on {} here", r.name),
            Value::Null,
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn create_get_list_delete_follow_the_api_conventions() {
        let mut s = fresh_store();
        let post = |s: &mut Store, ns: Option<&str>, res: &str, body: Value| {
            serve(
                s,
                resource(res).unwrap(),
                ns,
                None,
                &http::Method::POST,
                "",
                body.to_string().as_bytes(),
            )
        };
        let r = post(
            &mut s,
            Some("apps"),
            "configmaps",
            json!({"metadata": {"name": "a"}}),
        );
        assert_eq!(r.status(), 404, "namespace missing");
        let r = post(
            &mut s,
            None,
            "namespaces",
            json!({"metadata": {"name": "apps"}}),
        );
        assert_eq!(r.status(), 201);
        let r = post(
            &mut s,
            Some("apps"),
            "configmaps",
            json!({"metadata": {"name": "a"}, "data": {"x": "1"}}),
        );
        assert_eq!(r.status(), 201);
        let r = post(
            &mut s,
            Some("apps"),
            "configmaps",
            json!({"metadata": {"name": "a"}}),
        );
        assert_eq!(r.status(), 409);
        let r = post(
            &mut s,
            Some("apps"),
            "configmaps",
            json!({"metadata": {"name": "Bad_"}}),
        );
        assert_eq!(r.status(), 422);
        let r = post(
            &mut s,
            Some("apps"),
            "secrets",
            json!({"metadata": {"name": "s"}, "stringData": {"p": "hi"}}),
        );
        assert_eq!(r.status(), 201);
        assert_eq!(s.kvs["/registry/secrets/apps/s"]["data"]["p"], "aGk=");
        assert_eq!(s.kvs["/registry/secrets/apps/s"]["type"], "Opaque");
        let cm = &s.kvs["/registry/configmaps/apps/a"];
        assert_eq!(cm["metadata"]["namespace"], "apps");
        assert!(cm["metadata"]["uid"].as_str().unwrap().len() == 36);
        // List with a field selector.
        let list = serve(
            &mut s,
            resource("configmaps").unwrap(),
            None,
            None,
            &http::Method::GET,
            "fieldSelector=metadata.name%3Dnope",
            b"",
        );
        assert_eq!(list.status(), 200);
        // Deleting the namespace takes its objects.
        let r = serve(
            &mut s,
            resource("namespaces").unwrap(),
            None,
            Some("apps"),
            &http::Method::DELETE,
            "",
            b"",
        );
        assert_eq!(r.status(), 200);
        assert!(!s.kvs.keys().any(|k| k.contains("/apps/")));
    }

    #[test]
    fn selectors_and_paths() {
        assert!(labels_match("a=b,c!=d", &json!({"a": "b", "c": "x"})));
        assert!(!labels_match("a==c", &json!({"a": "b"})));
        let o = json!({"metadata": {"name": "x", "namespace": "n"}});
        assert!(fields_match("metadata.name=x", &o));
        assert!(!fields_match("metadata.name!=x", &o));
        assert_eq!(percent_decode("metadata.name%3Dx"), "metadata.name=x");
        let t = parse_path("/api/v1/namespaces/n/configmaps/x").unwrap();
        assert_eq!(
            (t.resource.name, t.namespace, t.name),
            ("configmaps", Some("n"), Some("x"))
        );
        assert!(parse_path("/api/v1/nodes").is_none());
        assert!(parse_path("/api/v1/namespaces/n/pods").is_none());
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_780_000_000), "2026-05-28T20:26:40Z");
    }
}
