//! A minimal Kubernetes API for control-plane nodes: `/version`, `/readyz`, `/livez`,
//! `/healthz` (anonymous allowed, as `system:public-info-viewer`) and `/api/v1/nodes`
//! (client certificate from the cluster CA required), over TLS with a serving certificate
//! from the cluster's Kubernetes CA.

use std::convert::Infallible;
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use serde_json::json;
use serde_yaml_ng::{Mapping, Value};

use talos_api::k8s_upgrade::Component;

use super::KUBE_PORT;
use super::node::{ConfigFacts, Node, ServerHandle, bind};

/// The admin kubeconfig for a cluster (the shape Talos' `pkg/kubeconfig` writes).
pub(crate) fn admin_kubeconfig(
    f: &ConfigFacts,
    crt: &str,
    key: &str,
) -> zeroize::Zeroizing<String> {
    let b = |x: &str| Value::String(base64::engine::general_purpose::STANDARD.encode(x));
    let s = |x: &str| Value::String(x.to_string());
    let m = |e: Vec<(&str, Value)>| {
        let mut m = Mapping::new();
        for (k, v) in e {
            m.insert(s(k), v);
        }
        Value::Mapping(m)
    };
    let user = format!("admin@{}", f.cluster_name);
    let doc = m(vec![
        ("apiVersion", s("v1")),
        ("kind", s("Config")),
        (
            "clusters",
            Value::Sequence(vec![m(vec![
                ("name", s(&f.cluster_name)),
                (
                    "cluster",
                    m(vec![
                        ("server", s(&f.endpoint)),
                        ("certificate-authority-data", b(&f.k8s_ca_crt)),
                    ]),
                ),
            ])]),
        ),
        (
            "users",
            Value::Sequence(vec![m(vec![
                ("name", s(&user)),
                (
                    "user",
                    m(vec![
                        ("client-certificate-data", b(crt)),
                        ("client-key-data", b(key)),
                    ]),
                ),
            ])]),
        ),
        (
            "contexts",
            Value::Sequence(vec![m(vec![
                (
                    "context",
                    m(vec![
                        ("cluster", s(&f.cluster_name)),
                        ("namespace", s("default")),
                        ("user", s(&user)),
                    ]),
                ),
                ("name", s(&user)),
            ])]),
        ),
        ("current-context", s(&user)),
    ]);
    zeroize::Zeroizing::new(talos_api::yaml::to_string(&doc))
}

fn respond(status: StatusCode, ctype: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = ctype.parse() {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    r
}

fn status_json(code: u16, reason: &str, message: &str) -> String {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
    .to_string()
}

fn node_list(node: &Arc<Node>, f: &ConfigFacts) -> serde_json::Value {
    let peers: Vec<Arc<Node>> = node
        .runtime
        .upgrade()
        .map(|rt| rt.all_nodes())
        .unwrap_or_default();
    let mut items: Vec<serde_json::Value> = peers
        .iter()
        .filter_map(|n| {
            let pf = n.facts()?;
            if pf.cluster_id != f.cluster_id || !n.state().installed {
                return None;
            }
            let name = n.hostname();
            let mut labels = serde_json::Map::new();
            labels.insert("kubernetes.io/hostname".into(), json!(name));
            labels.insert("kubernetes.io/os".into(), json!("linux"));
            labels.insert("kubernetes.io/arch".into(), json!("amd64"));
            if pf.machine_type != "worker" {
                labels.insert("node-role.kubernetes.io/control-plane".into(), json!(""));
            }
            // The kubelet reports the version of the image it runs, Ready=False while the
            // node is down or the kubelet restarts (components.rs).
            let kubelet = n
                .running_image(Component::Kubelet)
                .and_then(|i| super::components::image_version(&i))
                .unwrap_or_else(|| format!("v{}", pf.kubernetes_version));
            let talos = n
                .state()
                .version
                .unwrap_or_else(|| talos_api::config::TALOS_VERSION.to_string());
            Some(json!({
                "metadata": {"name": name, "labels": labels},
                "spec": {"podCIDR": "10.244.0.0/24"},
                "status": {
                    "conditions": [super::components::ready_condition(n)],
                    "addresses": [{"type": "InternalIP", "address": n.ip.to_string()},
                                  {"type": "Hostname", "address": name}],
                    "nodeInfo": {"kubeletVersion": kubelet,
                                 "osImage": format!("Talos ({talos})"),
                                 "operatingSystem": "linux", "architecture": "amd64",
                                 "containerRuntimeVersion": "containerd://2.1.5"}
                }
            }))
        })
        .collect();
    items.sort_by(|a, b| {
        a["metadata"]["name"]
            .as_str()
            .cmp(&b["metadata"]["name"].as_str())
    });
    json!({"kind": "NodeList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items})
}

fn peers_of(node: &Arc<Node>) -> Vec<Arc<Node>> {
    node.runtime
        .upgrade()
        .map(|rt| rt.all_nodes())
        .unwrap_or_default()
}

/// The node of this cluster etcd was bootstrapped on: it keeps the cluster's objects the
/// simulator stores (the kube-proxy DaemonSet's image).
fn proxy_holder(node: &Arc<Node>, f: &ConfigFacts) -> Option<Arc<Node>> {
    peers_of(node).into_iter().find(|p| {
        p.state().bootstrapped && p.facts().is_some_and(|pf| pf.cluster_id == f.cluster_id)
    })
}

fn handle(
    node: &Arc<Node>,
    authenticated: bool,
    method: &http::Method,
    path: &str,
    body: &[u8],
) -> Response<Full<Bytes>> {
    let Some(f) = node.facts() else {
        return respond(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "not configured".into(),
        );
    };
    match path {
        "/readyz" | "/livez" | "/healthz" => {
            respond(StatusCode::OK, "text/plain; charset=utf-8", "ok".into())
        }
        "/version" => {
            // The version of the kube-apiserver answering: the image this node runs.
            let v = node
                .running_image(Component::ApiServer)
                .and_then(|i| super::components::image_version(&i))
                .map(|v| v.trim_start_matches('v').to_string())
                .unwrap_or_else(|| f.kubernetes_version.clone());
            let mut parts = v.split('.');
            let major = parts.next().unwrap_or("1");
            let minor = parts.next().unwrap_or("0");
            let body = json!({"major": major, "minor": minor, "gitVersion": format!("v{v}"),
                "gitTreeState": "clean", "goVersion": "go1.25.5", "compiler": "gc",
                "platform": "linux/amd64"});
            respond(StatusCode::OK, "application/json", body.to_string())
        }
        _ if !authenticated => respond(
            StatusCode::UNAUTHORIZED,
            "application/json",
            status_json(401, "Unauthorized", "Unauthorized"),
        ),
        // Legacy discovery, enough for kubectl and client-go to find `nodes` (the aggregated
        // v2 discovery is negotiated by Accept header; plain JSON makes clients fall back).
        "/api" => respond(
            StatusCode::OK,
            "application/json",
            json!({"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                    "serverAddress": format!("{}:{KUBE_PORT}", node.ip)}]})
            .to_string(),
        ),
        "/apis" => respond(
            StatusCode::OK,
            "application/json",
            json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": "apps", "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
                 "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"}}]})
            .to_string(),
        ),
        "/apis/apps/v1" => respond(
            StatusCode::OK,
            "application/json",
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "apps/v1",
                "resources": [{"name": "daemonsets", "singularName": "daemonset",
                    "namespaced": true, "kind": "DaemonSet", "verbs": ["get", "list", "patch"],
                    "shortNames": ["ds"]}]})
            .to_string(),
        ),
        "/api/v1" => respond(
            StatusCode::OK,
            "application/json",
            json!({"kind": "APIResourceList", "groupVersion": "v1", "resources": [
                {"name": "nodes", "singularName": "node", "namespaced": false, "kind": "Node",
                 "verbs": ["get", "list"], "shortNames": ["no"]},
                {"name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod",
                 "verbs": ["get", "list"], "shortNames": ["po"]}]})
            .to_string(),
        ),
        "/api/v1/namespaces/kube-system/pods" => {
            let items = super::components::kube_system_pods(
                &peers_of(node),
                &f.cluster_id,
                proxy_holder(node, &f)
                    .and_then(|n| n.state().kube_proxy_image)
                    .as_deref(),
            );
            respond(
                StatusCode::OK,
                "application/json",
                json!({"kind": "PodList", "apiVersion": "v1",
                       "metadata": {"resourceVersion": "1"}, "items": items})
                .to_string(),
            )
        }
        "/apis/apps/v1/namespaces/kube-system/daemonsets/kube-proxy" => {
            let Some(holder) = proxy_holder(node, &f) else {
                return respond(
                    StatusCode::NOT_FOUND,
                    "application/json",
                    status_json(404, "NotFound", "daemonsets.apps \"kube-proxy\" not found"),
                );
            };
            if method == http::Method::PATCH {
                let patch: serde_json::Value = match serde_json::from_slice(body) {
                    Ok(v) => v,
                    Err(e) => {
                        return respond(
                            StatusCode::BAD_REQUEST,
                            "application/json",
                            status_json(400, "BadRequest", &format!("error decoding patch: {e}")),
                        );
                    }
                };
                if let Some(image) = super::components::patched_proxy_image(&patch) {
                    let _ = holder.update(|s| s.kube_proxy_image = Some(image));
                }
            }
            let nodes = node_list(node, &f)["items"].as_array().map_or(0, Vec::len);
            match holder.state().kube_proxy_image {
                Some(image) => respond(
                    StatusCode::OK,
                    "application/json",
                    super::components::kube_proxy_daemonset(&image, nodes).to_string(),
                ),
                None => respond(
                    StatusCode::NOT_FOUND,
                    "application/json",
                    status_json(404, "NotFound", "daemonsets.apps \"kube-proxy\" not found"),
                ),
            }
        }
        "/api/v1/nodes" => respond(
            StatusCode::OK,
            "application/json",
            node_list(node, &f).to_string(),
        ),
        _ if path.starts_with("/api/v1/nodes/") => {
            let name = &path["/api/v1/nodes/".len()..];
            let list = node_list(node, &f);
            let found = list["items"].as_array().and_then(|items| {
                items
                    .iter()
                    .find(|n| n["metadata"]["name"].as_str() == Some(name))
                    .cloned()
            });
            match found {
                Some(mut item) => {
                    item["kind"] = json!("Node");
                    item["apiVersion"] = json!("v1");
                    respond(StatusCode::OK, "application/json", item.to_string())
                }
                None => respond(
                    StatusCode::NOT_FOUND,
                    "application/json",
                    status_json(404, "NotFound", &format!("nodes \"{name}\" not found")),
                ),
            }
        }
        _ => respond(
            StatusCode::NOT_FOUND,
            "application/json",
            status_json(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ),
        ),
    }
}

/// Start the Kubernetes API on ip:6443.
pub(crate) async fn start(node: &Arc<Node>) -> Result<ServerHandle, String> {
    let f = node.facts().ok_or("no config")?;
    let ca_key = f
        .k8s_ca_key
        .clone()
        .ok_or("no Kubernetes CA key (worker?)")?;
    let mut ips = vec![std::net::IpAddr::V4(node.ip)];
    let mut dns = vec![
        "kubernetes".to_string(),
        "kubernetes.default".to_string(),
        "localhost".to_string(),
    ];
    let endpoint_host = url::Url::parse(&f.endpoint)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string));
    for san in f
        .api_cert_sans
        .iter()
        .chain(f.cert_sans.iter())
        .chain(endpoint_host.iter())
    {
        match san.trim_matches(['[', ']']).parse() {
            Ok(ip) => ips.push(ip),
            Err(_) => dns.push(san.clone()),
        }
    }
    let (crt, key) = talos_api::crypto::issue_leaf(
        &f.k8s_ca_crt,
        &ca_key,
        &talos_api::crypto::CertSpec {
            common_name: Some("kube-apiserver".into()),
            ip_addresses: ips,
            dns_names: dns,
            server_auth: true,
            ..Default::default()
        },
    )
    .map_err(|e| e.to_string())?;
    let tls = server_config(&crt, &key, &f.k8s_ca_crt)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = bind(node.ip, KUBE_PORT)
        .await
        .map_err(|e| format!("{}:{KUBE_PORT}: {e}", node.ip))?;
    let node = node.clone();
    let accept = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let node = node.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let authenticated = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .is_some_and(|c| !c.is_empty());
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let node = node.clone();
                    async move {
                        use http_body_util::BodyExt as _;
                        let method = req.method().clone();
                        let path = req.uri().path().to_string();
                        let body = match req.into_body().collect().await {
                            Ok(b) => b.to_bytes(),
                            Err(_) => Bytes::new(),
                        };
                        Ok::<_, Infallible>(handle(&node, authenticated, &method, &path, &body))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                .await;
            });
        }
    });
    Ok(ServerHandle {
        accept,
        shutdown: None,
    })
}

fn server_config(crt: &str, key: &str, ca: &str) -> Result<rustls::ServerConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots
            .add(c.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| e.to_string())?;
    let certs = CertificateDer::pem_slice_iter(crt.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|e| e.to_string())?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}
