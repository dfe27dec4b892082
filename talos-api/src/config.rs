//! Machine configuration generation for the Talos 1.12 contract, as `talosctl gen config`
//! produces it (the `v1alpha1` document followed by a `HostnameConfig` document), plus the
//! admin talosconfig.

use std::net::IpAddr;

use secrecy::ExposeSecret;
use serde_yaml_ng::{Mapping, Value};
use zeroize::Zeroizing;

use crate::crypto::{self, CertSpec};
use crate::error::{Error, Result};
use crate::patch::Patch;
use crate::secrets::SecretsBundle;
use crate::talosconfig::{Context, Talosconfig};

/// The Talos version whose contract the generator follows.
pub const TALOS_VERSION: &str = "v1.12.11";
/// Default Kubernetes version of the Talos 1.12.11 SDK (`constants.DefaultKubernetesVersion`).
pub const DEFAULT_KUBERNETES_VERSION: &str = "1.35.4";
/// Default install disk of `talosctl gen config`.
pub const DEFAULT_INSTALL_DISK: &str = "/dev/sda";

/// The default installer image for [`TALOS_VERSION`] (use an Image Factory installer instead
/// when the node needs extensions).
pub fn default_installer_image() -> String {
    format!("ghcr.io/siderolabs/installer:{TALOS_VERSION}")
}

/// Machine role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MachineType {
    /// A control-plane node (runs etcd and the Kubernetes control plane).
    ControlPlane,
    /// A worker node.
    Worker,
}

impl MachineType {
    /// The `machine.type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            MachineType::ControlPlane => "controlplane",
            MachineType::Worker => "worker",
        }
    }
}

/// Static network settings for one node, written as 1.12 network documents
/// (`LinkConfig`, `ResolverConfig`, `Layer2VIPConfig`).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct StaticNetwork {
    /// Link name, e.g. `eth0` (or `ens18` on Proxmox virtio).
    pub interface: String,
    /// Address in CIDR form, e.g. `192.168.1.10/24`.
    pub address: String,
    /// Default gateway.
    pub gateway: Option<IpAddr>,
    /// DNS servers.
    pub nameservers: Vec<IpAddr>,
    /// A shared control-plane virtual IP announced on this link.
    pub vip: Option<IpAddr>,
}

impl StaticNetwork {
    /// A static address on `interface`.
    pub fn new(interface: impl Into<String>, address_cidr: impl Into<String>) -> Self {
        StaticNetwork {
            interface: interface.into(),
            address: address_cidr.into(),
            ..Default::default()
        }
    }
    /// Set the default gateway.
    pub fn gateway(mut self, gw: IpAddr) -> Self {
        self.gateway = Some(gw);
        self
    }
    /// Set DNS servers.
    pub fn nameservers(mut self, ns: impl IntoIterator<Item = IpAddr>) -> Self {
        self.nameservers = ns.into_iter().collect();
        self
    }
    /// Set a control-plane VIP.
    pub fn vip(mut self, vip: IpAddr) -> Self {
        self.vip = Some(vip);
        self
    }
}

/// Cluster-wide inputs of `talosctl gen config`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClusterInput {
    /// `cluster.clusterName` (also the talosconfig context name).
    pub cluster_name: String,
    /// `cluster.controlPlane.endpoint`, e.g. `https://192.168.1.10:6443`.
    pub endpoint: String,
    /// Kubernetes version without the `v`.
    pub kubernetes_version: String,
    /// `machine.install.disk`.
    pub install_disk: String,
    /// `machine.install.image` (put the Image Factory installer ref here).
    pub install_image: String,
    /// Extra SANs for `machine.certSANs` and `cluster.apiServer.certSANs`.
    pub cert_sans: Vec<String>,
    /// `cluster.allowSchedulingOnControlPlanes` (single-node clusters need it).
    pub allow_scheduling_on_control_planes: bool,
}

impl ClusterInput {
    /// Inputs for a cluster; the endpoint must be an `https://` URL.
    pub fn new(cluster_name: impl Into<String>, endpoint: impl Into<String>) -> Result<Self> {
        let cluster_name = cluster_name.into();
        let endpoint = endpoint.into();
        if cluster_name.is_empty() {
            return Err(Error::InvalidConfig(
                "cluster name must not be empty".into(),
            ));
        }
        let u = url::Url::parse(&endpoint).map_err(|e| {
            Error::InvalidConfig(format!("endpoint {endpoint:?} is not a URL: {e}"))
        })?;
        if u.scheme() != "https" || u.host_str().is_none() {
            return Err(Error::InvalidConfig(format!(
                "endpoint {endpoint:?} must look like https://HOST:6443"
            )));
        }
        Ok(ClusterInput {
            cluster_name,
            endpoint,
            kubernetes_version: DEFAULT_KUBERNETES_VERSION.to_string(),
            install_disk: DEFAULT_INSTALL_DISK.to_string(),
            install_image: default_installer_image(),
            cert_sans: Vec::new(),
            allow_scheduling_on_control_planes: false,
        })
    }
    /// Set the install disk.
    pub fn install_disk(mut self, d: impl Into<String>) -> Self {
        self.install_disk = d.into();
        self
    }
    /// Set the installer image.
    pub fn install_image(mut self, i: impl Into<String>) -> Self {
        self.install_image = i.into();
        self
    }
    /// Set the Kubernetes version (with or without `v`).
    pub fn kubernetes_version(mut self, v: impl Into<String>) -> Self {
        self.kubernetes_version = v.into().trim_start_matches('v').to_string();
        self
    }
    /// Add certificate SANs.
    pub fn cert_sans(mut self, sans: impl IntoIterator<Item = String>) -> Self {
        self.cert_sans.extend(sans);
        self
    }
    /// Allow workloads on control planes.
    pub fn allow_scheduling_on_control_planes(mut self, yes: bool) -> Self {
        self.allow_scheduling_on_control_planes = yes;
        self
    }

    fn endpoint_host(&self) -> String {
        url::Url::parse(&self.endpoint)
            .ok()
            .and_then(|u| u.host_str().map(|h| h.trim_matches(['[', ']']).to_string()))
            .unwrap_or_default()
    }
}

/// Per-node settings.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct NodeInput {
    /// Fixed hostname (`HostnameConfig.hostname`); `None` keeps `auto: stable`.
    pub hostname: Option<String>,
    /// Static network.
    pub network: Option<StaticNetwork>,
}

impl NodeInput {
    /// Set the hostname.
    pub fn hostname(mut self, h: impl Into<String>) -> Self {
        self.hostname = Some(h.into());
        self
    }
    /// Set a static network.
    pub fn network(mut self, n: StaticNetwork) -> Self {
        self.network = Some(n);
        self
    }
}

/// A multi-document machine configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct MachineConfig {
    docs: Vec<Value>,
}

fn s(x: &str) -> Value {
    Value::String(x.to_string())
}

fn b64(x: &str) -> Value {
    use base64::Engine as _;
    Value::String(base64::engine::general_purpose::STANDARD.encode(x.as_bytes()))
}

fn map(entries: Vec<(&str, Value)>) -> Value {
    let mut m = Mapping::new();
    for (k, v) in entries {
        m.insert(s(k), v);
    }
    Value::Mapping(m)
}

fn seq(items: Vec<Value>) -> Value {
    Value::Sequence(items)
}

fn image(repo: &str, version: &str) -> Value {
    s(&format!("{repo}:v{version}"))
}

impl MachineConfig {
    /// Generate the config of one machine type for a cluster, as `talosctl gen config` does for
    /// contract 1.12, then apply per-node settings.
    pub fn generate(
        cluster: &ClusterInput,
        secrets: &SecretsBundle,
        machine_type: MachineType,
        node: &NodeInput,
    ) -> Result<Self> {
        let cp = machine_type == MachineType::ControlPlane;
        let k = &cluster.kubernetes_version;
        let sans: Vec<Value> = cluster.cert_sans.iter().map(|x| s(x)).collect();
        let key_or_empty = |key: &str| if cp { b64(key) } else { s("") };

        let mut machine = vec![
            ("type", s(machine_type.as_str())),
            ("token", s(secrets.trustd_token.expose_secret())),
            (
                "ca",
                map(vec![
                    ("crt", b64(&secrets.os.crt)),
                    ("key", key_or_empty(secrets.os.key.expose_secret())),
                ]),
            ),
            ("certSANs", seq(sans.clone())),
            (
                "kubelet",
                map(vec![
                    ("image", image("ghcr.io/siderolabs/kubelet", k)),
                    ("defaultRuntimeSeccompProfileEnabled", Value::Bool(true)),
                    ("disableManifestsDirectory", Value::Bool(true)),
                ]),
            ),
            ("network", Value::Mapping(Mapping::new())),
            (
                "install",
                map(vec![
                    ("disk", s(&cluster.install_disk)),
                    ("image", s(&cluster.install_image)),
                    ("wipe", Value::Bool(false)),
                    ("grubUseUKICmdline", Value::Bool(true)),
                ]),
            ),
            (
                "features",
                map(vec![
                    ("diskQuotaSupport", Value::Bool(true)),
                    (
                        "kubePrism",
                        map(vec![
                            ("enabled", Value::Bool(true)),
                            ("port", Value::from(7445)),
                        ]),
                    ),
                    (
                        "hostDNS",
                        map(vec![
                            ("enabled", Value::Bool(true)),
                            ("forwardKubeDNSToHost", Value::Bool(true)),
                        ]),
                    ),
                ]),
            ),
        ];
        if cp {
            machine.push((
                "nodeLabels",
                map(vec![(
                    "node.kubernetes.io/exclude-from-external-load-balancers",
                    s(""),
                )]),
            ));
        }

        let mut cl = vec![
            ("id", s(&secrets.cluster_id)),
            ("secret", s(secrets.cluster_secret.expose_secret())),
            (
                "controlPlane",
                map(vec![("endpoint", s(&cluster.endpoint))]),
            ),
            ("clusterName", s(&cluster.cluster_name)),
            (
                "network",
                map(vec![
                    ("dnsDomain", s("cluster.local")),
                    ("podSubnets", seq(vec![s("10.244.0.0/16")])),
                    ("serviceSubnets", seq(vec![s("10.96.0.0/12")])),
                ]),
            ),
            ("token", s(secrets.bootstrap_token.expose_secret())),
        ];
        if cp {
            if let Some(a) = &secrets.aescbc_encryption_secret {
                cl.push(("aescbcEncryptionSecret", s(a.expose_secret())));
            }
            if let Some(a) = &secrets.secretbox_encryption_secret {
                cl.push(("secretboxEncryptionSecret", s(a.expose_secret())));
            }
        }
        cl.push((
            "ca",
            map(vec![
                ("crt", b64(&secrets.k8s.crt)),
                ("key", key_or_empty(secrets.k8s.key.expose_secret())),
            ]),
        ));
        if cp {
            let mut api_sans = vec![s(&cluster.endpoint_host())];
            for x in &sans {
                if !api_sans.contains(x) {
                    api_sans.push(x.clone());
                }
            }
            cl.push((
                "aggregatorCA",
                map(vec![
                    ("crt", b64(&secrets.k8s_aggregator.crt)),
                    ("key", b64(secrets.k8s_aggregator.key.expose_secret())),
                ]),
            ));
            cl.push((
                "serviceAccount",
                map(vec![(
                    "key",
                    b64(secrets.k8s_service_account_key.expose_secret()),
                )]),
            ));
            cl.push((
                "apiServer",
                map(vec![
                    ("image", image("registry.k8s.io/kube-apiserver", k)),
                    ("certSANs", seq(api_sans)),
                    ("admissionControl", seq(vec![pod_security()])),
                    (
                        "auditPolicy",
                        map(vec![
                            ("apiVersion", s("audit.k8s.io/v1")),
                            ("kind", s("Policy")),
                            ("rules", seq(vec![map(vec![("level", s("Metadata"))])])),
                        ]),
                    ),
                ]),
            ));
            cl.push((
                "controllerManager",
                map(vec![(
                    "image",
                    image("registry.k8s.io/kube-controller-manager", k),
                )]),
            ));
            cl.push((
                "proxy",
                map(vec![("image", image("registry.k8s.io/kube-proxy", k))]),
            ));
            cl.push((
                "scheduler",
                map(vec![("image", image("registry.k8s.io/kube-scheduler", k))]),
            ));
        }
        cl.push((
            "discovery",
            map(vec![
                ("enabled", Value::Bool(true)),
                (
                    "registries",
                    map(vec![
                        ("kubernetes", map(vec![("disabled", Value::Bool(true))])),
                        ("service", Value::Mapping(Mapping::new())),
                    ]),
                ),
            ]),
        ));
        if cp {
            cl.push((
                "etcd",
                map(vec![(
                    "ca",
                    map(vec![
                        ("crt", b64(&secrets.etcd.crt)),
                        ("key", b64(secrets.etcd.key.expose_secret())),
                    ]),
                )]),
            ));
            if cluster.allow_scheduling_on_control_planes {
                cl.push(("allowSchedulingOnControlPlanes", Value::Bool(true)));
            }
        }

        let v1 = map(vec![
            ("version", s("v1alpha1")),
            ("debug", Value::Bool(false)),
            // Deprecated and absent from the JSON schema, but still emitted by Talos 1.12.
            ("persist", Value::Bool(true)),
            ("machine", map(machine)),
            ("cluster", map(cl)),
        ]);
        let mut docs = vec![v1];
        let hostname = match &node.hostname {
            Some(h) => map(vec![
                ("apiVersion", s("v1alpha1")),
                ("kind", s("HostnameConfig")),
                ("hostname", s(h)),
            ]),
            None => map(vec![
                ("apiVersion", s("v1alpha1")),
                ("kind", s("HostnameConfig")),
                ("auto", s("stable")),
            ]),
        };
        docs.push(hostname);
        if let Some(n) = &node.network {
            docs.extend(network_docs(n)?);
        }
        Ok(MachineConfig { docs })
    }

    /// Parse a (multi-document) machine config.
    pub fn from_yaml(text: &str, what: &str) -> Result<Self> {
        let docs = crate::yaml::parse_documents(text, what)?;
        Ok(MachineConfig { docs })
    }

    /// The documents.
    pub fn documents(&self) -> &[Value] {
        &self.docs
    }

    /// The `v1alpha1` document (the one without `kind`).
    pub fn v1alpha1(&self) -> Option<&Value> {
        self.docs.iter().find(|d| d.get("kind").is_none())
    }

    /// Apply config patches in order.
    pub fn apply_patches(&mut self, patches: &[Patch]) -> Result<()> {
        for p in patches {
            p.apply(&mut self.docs)?;
        }
        Ok(())
    }

    /// Serialise as Talos does (documents separated by `---`). Holds secrets: encrypt before
    /// writing to git.
    pub fn to_yaml(&self) -> Zeroizing<String> {
        Zeroizing::new(crate::yaml::to_multi_doc_string(&self.docs))
    }

    /// Check what a Talos node checks before accepting the config (see [`validate`]).
    pub fn validate(&self) -> Result<Vec<String>> {
        validate(&self.docs)
    }
}

fn pod_security() -> Value {
    map(vec![
        ("name", s("PodSecurity")),
        (
            "configuration",
            map(vec![
                (
                    "apiVersion",
                    s("pod-security.admission.config.k8s.io/v1alpha1"),
                ),
                (
                    "defaults",
                    map(vec![
                        ("audit", s("restricted")),
                        ("audit-version", s("latest")),
                        ("enforce", s("baseline")),
                        ("enforce-version", s("latest")),
                        ("warn", s("restricted")),
                        ("warn-version", s("latest")),
                    ]),
                ),
                (
                    "exemptions",
                    map(vec![
                        ("namespaces", seq(vec![s("kube-system")])),
                        ("runtimeClasses", seq(vec![])),
                        ("usernames", seq(vec![])),
                    ]),
                ),
                ("kind", s("PodSecurityConfiguration")),
            ]),
        ),
    ])
}

fn network_docs(n: &StaticNetwork) -> Result<Vec<Value>> {
    let (ip, prefix) = n.address.split_once('/').ok_or_else(|| {
        Error::InvalidConfig(format!("address {:?} must be in CIDR form", n.address))
    })?;
    ip.parse::<IpAddr>()
        .map_err(|e| Error::InvalidConfig(format!("address {:?}: {e}", n.address)))?;
    prefix
        .parse::<u8>()
        .map_err(|e| Error::InvalidConfig(format!("address {:?}: prefix: {e}", n.address)))?;
    if n.interface.is_empty() {
        return Err(Error::InvalidConfig(
            "network interface name is empty".into(),
        ));
    }
    let mut link = vec![
        ("apiVersion", s("v1alpha1")),
        ("kind", s("LinkConfig")),
        ("name", s(&n.interface)),
        ("up", Value::Bool(true)),
        (
            "addresses",
            seq(vec![map(vec![("address", s(&n.address))])]),
        ),
    ];
    if let Some(gw) = n.gateway {
        link.push((
            "routes",
            seq(vec![map(vec![("gateway", s(&gw.to_string()))])]),
        ));
    }
    let mut docs = vec![map(link)];
    if !n.nameservers.is_empty() {
        docs.push(map(vec![
            ("apiVersion", s("v1alpha1")),
            ("kind", s("ResolverConfig")),
            (
                "nameservers",
                seq(n
                    .nameservers
                    .iter()
                    .map(|a| map(vec![("address", s(&a.to_string()))]))
                    .collect()),
            ),
        ]));
    }
    if let Some(vip) = n.vip {
        docs.push(map(vec![
            ("apiVersion", s("v1alpha1")),
            ("kind", s("Layer2VIPConfig")),
            ("name", s(&vip.to_string())),
            ("link", s(&n.interface)),
        ]));
    }
    Ok(docs)
}

const V1ALPHA1_KEYS: &[&str] = &["version", "debug", "persist", "machine", "cluster"];
const MACHINE_KEYS: &[&str] = &[
    "type",
    "token",
    "ca",
    "acceptedCAs",
    "certSANs",
    "controlPlane",
    "kubelet",
    "pods",
    "network",
    "install",
    "files",
    "env",
    "time",
    "sysctls",
    "sysfs",
    "registries",
    "features",
    "udev",
    "logging",
    "kernel",
    "seccompProfiles",
    "baseRuntimeSpecOverrides",
    "nodeLabels",
    "nodeAnnotations",
    "nodeTaints",
];
const CLUSTER_KEYS: &[&str] = &[
    "id",
    "secret",
    "controlPlane",
    "clusterName",
    "network",
    "token",
    "aescbcEncryptionSecret",
    "secretboxEncryptionSecret",
    "ca",
    "acceptedCAs",
    "aggregatorCA",
    "serviceAccount",
    "apiServer",
    "controllerManager",
    "proxy",
    "scheduler",
    "discovery",
    "etcd",
    "coreDNS",
    "externalCloudProvider",
    "extraManifests",
    "extraManifestHeaders",
    "inlineManifests",
    "adminKubeconfig",
    "allowSchedulingOnControlPlanes",
];
const INSTALL_KEYS: &[&str] = &[
    "disk",
    "diskSelector",
    "image",
    "wipe",
    "legacyBIOSSupport",
    "grubUseUKICmdline",
    "extraKernelArgs",
    "extensions",
];

fn unknown_keys(v: &Value, allowed: &[&str], path: &str) -> Result<()> {
    if let Value::Mapping(m) = v {
        for k in m.keys() {
            let name = k.as_str().unwrap_or_default();
            if !allowed.contains(&name) {
                return Err(Error::InvalidConfig(format!(
                    "unknown field \"{name}\" in {path}"
                )));
            }
        }
        Ok(())
    } else {
        Err(Error::InvalidConfig(format!("{path} must be a mapping")))
    }
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str()
}

fn decode_pem_field(v: &Value, path: &[&str]) -> Result<Option<String>> {
    use base64::Engine as _;
    match str_at(v, path) {
        None | Some("") => Ok(None),
        Some(b) => {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .map_err(|e| {
                    Error::InvalidConfig(format!("{}: invalid base64: {e}", path.join(".")))
                })?;
            let text = String::from_utf8(raw)
                .map_err(|_| Error::InvalidConfig(format!("{}: not PEM text", path.join("."))))?;
            if !text.contains("-----BEGIN ") {
                return Err(Error::InvalidConfig(format!(
                    "{}: failed to decode PEM data",
                    path.join(".")
                )));
            }
            Ok(Some(text))
        }
    }
}

/// Validate machine-config documents the way a Talos 1.12 node does before accepting them:
/// a `v1alpha1` document must be present, with only known fields at its upper levels, a
/// machine type, an install disk, and well-formed CA certificates (the OS CA Ed25519; the
/// Kubernetes and etcd CAs parse as CA certificates). Returns warnings (e.g. deprecated
/// fields).
pub fn validate(docs: &[Value]) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    let v1 = docs
        .iter()
        .find(|d| d.get("kind").is_none())
        .ok_or_else(|| Error::InvalidConfig("the config has no v1alpha1 document".into()))?;
    unknown_keys(v1, V1ALPHA1_KEYS, "v1alpha1.Config")?;
    if str_at(v1, &["version"]) != Some("v1alpha1") {
        return Err(Error::InvalidConfig("version must be v1alpha1".into()));
    }
    let machine = v1
        .get("machine")
        .ok_or_else(|| Error::InvalidConfig("machine instructions are required".into()))?;
    unknown_keys(machine, MACHINE_KEYS, "v1alpha1.MachineConfig")?;
    let mtype = str_at(machine, &["type"]).unwrap_or_default();
    if !matches!(mtype, "controlplane" | "worker" | "init") {
        return Err(Error::InvalidConfig(format!(
            "machine type {mtype:?} is not valid"
        )));
    }
    if let Some(install) = machine.get("install") {
        unknown_keys(install, INSTALL_KEYS, "v1alpha1.InstallConfig")?;
    }
    let disk = str_at(machine, &["install", "disk"]).unwrap_or_default();
    if disk.is_empty()
        && machine
            .get("install")
            .and_then(|i| i.get("diskSelector"))
            .is_none()
    {
        return Err(Error::InvalidConfig(
            "an install disk or disk selector is required".into(),
        ));
    }
    if let Some(cluster) = v1.get("cluster") {
        unknown_keys(cluster, CLUSTER_KEYS, "v1alpha1.ClusterConfig")?;
        let ep = str_at(cluster, &["controlPlane", "endpoint"]).unwrap_or_default();
        if url::Url::parse(ep).is_err() {
            return Err(Error::InvalidConfig(format!(
                "cluster.controlPlane.endpoint {ep:?} is not a valid URL"
            )));
        }
    } else {
        return Err(Error::InvalidConfig(
            "cluster instructions are required".into(),
        ));
    }
    let os_ca = decode_pem_field(v1, &["machine", "ca", "crt"])?
        .ok_or_else(|| Error::InvalidConfig("machine.ca.crt is required".into()))?;
    check_ca_cert(&os_ca, "machine.ca.crt", true)?;
    for path in [
        &["cluster", "ca", "crt"][..],
        &["cluster", "etcd", "ca", "crt"][..],
        &["cluster", "aggregatorCA", "crt"][..],
    ] {
        if let Some(p) = decode_pem_field(v1, path)? {
            check_ca_cert(&p, &path.join("."), false)?;
        }
    }
    if mtype != "worker" {
        for path in [
            &["machine", "ca", "key"][..],
            &["cluster", "ca", "key"][..],
            &["cluster", "etcd", "ca", "key"][..],
        ] {
            let pem = decode_pem_field(v1, path)?.ok_or_else(|| {
                Error::InvalidConfig(format!("{} is required on control plane", path.join(".")))
            })?;
            crypto::load_key(&pem)
                .map_err(|e| Error::InvalidConfig(format!("{}: {e}", path.join("."))))?;
        }
    }
    if v1.get("persist").is_some() {
        warnings.push(".persist: deprecated and ignored".to_string());
    }
    Ok(warnings)
}

fn check_ca_cert(pem: &str, what: &str, ed25519: bool) -> Result<()> {
    let (_, der) =
        crypto::pem_decode(pem).map_err(|e| Error::InvalidConfig(format!("{what}: {e}")))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| Error::InvalidConfig(format!("{what}: failed to parse certificate: {e}")))?;
    if !cert.is_ca() {
        return Err(Error::InvalidConfig(format!(
            "{what}: not a CA certificate"
        )));
    }
    let oid = cert.public_key().algorithm.algorithm.to_id_string();
    if ed25519 && oid != "1.3.101.112" {
        return Err(Error::InvalidConfig(format!(
            "{what}: the Talos API CA must be Ed25519"
        )));
    }
    Ok(())
}

/// The admin talosconfig `talosctl gen config` writes: context named after the cluster, the OS
/// CA, and a fresh Ed25519 client certificate with O=`os:admin` (clientAuth, 1 year).
pub fn admin_talosconfig(
    cluster_name: &str,
    secrets: &SecretsBundle,
    endpoints: &[String],
    nodes: &[String],
) -> Result<Talosconfig> {
    let (crt, key) = crypto::issue_leaf(
        &secrets.os.crt,
        secrets.os.key.expose_secret(),
        &CertSpec {
            organizations: vec!["os:admin".into()],
            client_auth: true,
            validity: Some(crypto::CLIENT_CERT_VALIDITY),
            ..Default::default()
        },
    )?;
    let ctx = Context::new(
        endpoints.to_vec(),
        nodes.to_vec(),
        &secrets.os.crt,
        &crt,
        &key,
    );
    Ok(Talosconfig::single(cluster_name, ctx))
}
