//! Secrets bundle, machine configs and talosconfig: formats, algorithms, schema validity.

use base64::Engine as _;
use secrecy::ExposeSecret;
use serde_yaml_ng::Value;
use talos_api::config::{ClusterInput, MachineConfig, MachineType, NodeInput, StaticNetwork};
use talos_api::patch::Patch;
use talos_api::secrets::SecretsBundle;
use talos_api::talosconfig::Talosconfig;
use x509_parser::prelude::*;

use super::bundle;

const ED25519: &str = "1.3.101.112";
const EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const PRIME256V1: &str = "1.2.840.10045.3.1.7";

fn der_of(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

struct CertFacts {
    alg: String,
    curve: Option<String>,
    orgs: Vec<String>,
    cns: Vec<String>,
    is_ca: bool,
    cert_sign: bool,
    digital_signature: bool,
    server_auth: bool,
    client_auth: bool,
    days: i64,
}

fn facts(pem: &str) -> CertFacts {
    let der = der_of(pem);
    let (_, c) = X509Certificate::from_der(&der).unwrap();
    let spki = c.public_key();
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .map(|o| o.to_id_string());
    let ku = c.key_usage().unwrap().map(|k| *k.value);
    let eku = c.extended_key_usage().unwrap().map(|k| k.value.clone());
    let subject = c.subject();
    CertFacts {
        alg: spki.algorithm.algorithm.to_id_string(),
        curve,
        orgs: subject
            .iter_organization()
            .map(|o| o.as_str().unwrap().to_string())
            .collect(),
        cns: subject
            .iter_common_name()
            .map(|o| o.as_str().unwrap().to_string())
            .collect(),
        is_ca: c.is_ca(),
        cert_sign: ku.as_ref().is_some_and(|k| k.key_cert_sign()),
        digital_signature: ku.as_ref().is_some_and(|k| k.digital_signature()),
        server_auth: eku.as_ref().is_some_and(|e| e.server_auth),
        client_auth: eku.as_ref().is_some_and(|e| e.client_auth),
        days: (c.validity().not_after.timestamp() - c.validity().not_before.timestamp()) / 86_400,
    }
}

#[test]
fn secrets_bundle_cas_have_talos_algorithms_subjects_and_usages() {
    let b = bundle();
    for (name, pem, orgs, cns, ed) in [
        ("etcd", &b.etcd.crt, vec!["etcd"], vec![], false),
        ("k8s", &b.k8s.crt, vec!["kubernetes"], vec![], false),
        (
            "k8saggregator",
            &b.k8s_aggregator.crt,
            vec![],
            vec!["front-proxy"],
            false,
        ),
        ("os", &b.os.crt, vec!["talos"], vec![], true),
    ] {
        let f = facts(pem);
        if ed {
            assert_eq!(f.alg, ED25519, "{name}");
        } else {
            assert_eq!(f.alg, EC_PUBLIC_KEY, "{name}");
            assert_eq!(f.curve.as_deref(), Some(PRIME256V1), "{name}");
        }
        assert_eq!(f.orgs, orgs, "{name}");
        assert_eq!(f.cns, cns, "{name}");
        assert!(f.is_ca && f.cert_sign && f.digital_signature, "{name}");
        assert!(f.server_auth && f.client_auth, "{name}");
        assert_eq!(f.days, 3650, "{name}: 87600h");
    }
    assert!(
        b.os.key
            .expose_secret()
            .starts_with("-----BEGIN ED25519 PRIVATE KEY-----\n")
    );
    assert!(
        b.etcd
            .key
            .expose_secret()
            .starts_with("-----BEGIN EC PRIVATE KEY-----\n")
    );
    // Service-account key: RSA 4096 in PKCS#1, as Talos 1.12 generates it.
    use rsa::pkcs1::DecodeRsaPrivateKey;
    use rsa::traits::PublicKeyParts;
    let sa = rsa::RsaPrivateKey::from_pkcs1_pem(b.k8s_service_account_key.expose_secret()).unwrap();
    assert_eq!(sa.size() * 8, 4096);
    // Tokens and secrets.
    let id = base64::engine::general_purpose::URL_SAFE
        .decode(&b.cluster_id)
        .unwrap();
    assert_eq!(id.len(), 32);
    assert!(talos_api::secrets::is_token(
        b.bootstrap_token.expose_secret()
    ));
    assert!(talos_api::secrets::is_token(b.trustd_token.expose_secret()));
}

#[test]
fn secrets_yaml_round_trips_byte_for_byte_in_talos_key_order() {
    let b = bundle();
    let text = b.to_yaml();
    let keys: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("        "))
        .map(|l| l.trim_end_matches(|c: char| c != ':'))
        .collect();
    assert_eq!(
        keys,
        [
            "cluster:",
            "    id:",
            "    secret:",
            "secrets:",
            "    bootstraptoken:",
            "    secretboxencryptionsecret:",
            "trustdinfo:",
            "    token:",
            "certs:",
            "    etcd:",
            "    k8s:",
            "    k8saggregator:",
            "    k8sserviceaccount:",
            "    os:",
        ]
    );
    let again = SecretsBundle::from_yaml(&text, "secrets.yaml").unwrap();
    assert_eq!(again.to_yaml().as_str(), text.as_str());

    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("secrets.yaml");
    std::fs::write(&p, text.as_bytes()).unwrap();
    let loaded = SecretsBundle::load(&p).unwrap();
    assert_eq!(loaded.cluster_id, b.cluster_id);

    // A broken CA is rejected with the field named.
    let broken = text.replacen(
        &base64::engine::general_purpose::STANDARD.encode(&b.os.crt),
        &base64::engine::general_purpose::STANDARD.encode(&b.k8s.crt),
        1,
    );
    let e = SecretsBundle::from_yaml(&broken, "s.yaml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("certs.os"), "{e}");
}

fn schema_validator() -> Option<jsonschema::Validator> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/talos-config-schema/config.schema.json"
    );
    let Ok(text) = std::fs::read_to_string(path) else {
        crate::common::skip_or_fail(&format!(
            "Talos config schema not found at {path}; schema validation not run"
        ));
        return None;
    };
    let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
    Some(jsonschema::validator_for(&schema).unwrap())
}

fn schema_errors(v: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    let json: serde_json::Value = serde_json::to_value(doc).unwrap();
    v.iter_errors(&json)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect()
}

/// Validate every document; `persist` is emitted by Talos but absent from the schema, so it is
/// checked for, removed, and only then is the v1alpha1 document validated.
fn assert_schema_valid(cfg: &MachineConfig) {
    let Some(v) = schema_validator() else { return };
    for doc in cfg.documents() {
        let mut doc = doc.clone();
        if doc.get("kind").is_none() {
            let errs = schema_errors(&v, &doc);
            assert!(!errs.is_empty(), "the known `persist` gap should show");
            assert_eq!(doc.get("persist"), Some(&Value::Bool(true)));
            doc.as_mapping_mut().unwrap().remove("persist");
        }
        let errs = schema_errors(&v, &doc);
        assert!(errs.is_empty(), "schema errors: {errs:#?}");
    }
}

fn cluster() -> ClusterInput {
    ClusterInput::new("lab", "https://10.0.0.10:6443")
        .unwrap()
        .install_disk("/dev/vda")
        .install_image("factory.talos.dev/nocloud-installer/ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515:v1.12.11")
        .cert_sans(["lab.example.com".to_string()])
}

#[test]
fn controlplane_and_worker_configs_validate_against_the_talos_schema() {
    let b = bundle();
    let net = StaticNetwork::new("eth0", "10.0.0.11/24")
        .gateway("10.0.0.1".parse().unwrap())
        .nameservers(["1.1.1.1".parse().unwrap()])
        .vip("10.0.0.10".parse().unwrap());
    let cp = MachineConfig::generate(
        &cluster().allow_scheduling_on_control_planes(true),
        b,
        MachineType::ControlPlane,
        &NodeInput::default().hostname("cp-1").network(net),
    )
    .unwrap();
    let kinds: Vec<_> = cp
        .documents()
        .iter()
        .map(|d| d.get("kind").and_then(Value::as_str).unwrap_or("v1alpha1"))
        .collect();
    assert_eq!(
        kinds,
        [
            "v1alpha1",
            "HostnameConfig",
            "LinkConfig",
            "ResolverConfig",
            "Layer2VIPConfig"
        ]
    );
    assert_schema_valid(&cp);
    assert!(cp.validate().unwrap().iter().any(|w| w.contains("persist")));

    let worker =
        MachineConfig::generate(&cluster(), b, MachineType::Worker, &NodeInput::default()).unwrap();
    assert_schema_valid(&worker);
    let y = worker.to_yaml();
    assert!(
        y.contains("\n        key: \"\"\n"),
        "worker gets CA certs without keys"
    );
    assert!(!y.contains("aggregatorCA"));
    assert!(y.ends_with("---\napiVersion: v1alpha1\nkind: HostnameConfig\nauto: stable\n"));
}

#[test]
fn generated_controlplane_has_talos_1_12_layout() {
    let b = bundle();
    let cp = MachineConfig::generate(
        &cluster(),
        b,
        MachineType::ControlPlane,
        &NodeInput::default(),
    )
    .unwrap();
    let y = cp.to_yaml();
    let skeleton: Vec<&str> = y
        .lines()
        .filter(|l| {
            !l.starts_with("        ") || l.starts_with("        ") && !l.starts_with("         ")
        })
        .map(|l| l.split(':').next().unwrap())
        .take(22)
        .collect();
    assert_eq!(
        skeleton,
        [
            "version",
            "debug",
            "persist",
            "machine",
            "    type",
            "    token",
            "    ca",
            "        crt",
            "        key",
            "    certSANs",
            "        - lab.example.com",
            "    kubelet",
            "        image",
            "        defaultRuntimeSeccompProfileEnabled",
            "        disableManifestsDirectory",
            "    network",
            "    install",
            "        disk",
            "        image",
            "        wipe",
            "        grubUseUKICmdline",
            "    features"
        ]
    );
    assert!(y.contains("    network: {}\n"));
    assert!(y.contains("        node.kubernetes.io/exclude-from-external-load-balancers: \"\"\n"));
    assert!(y.contains("            - name: PodSecurity\n              configuration:\n                apiVersion: pod-security.admission.config.k8s.io/v1alpha1\n"));
    // Parses back to the same documents.
    assert_eq!(MachineConfig::from_yaml(&y, "cp").unwrap(), cp);
}

#[test]
fn patches_apply_and_keep_configs_valid() {
    let b = bundle();
    let mut cp = MachineConfig::generate(
        &cluster(),
        b,
        MachineType::ControlPlane,
        &NodeInput::default(),
    )
    .unwrap();
    let smp = Patch::parse(
        "machine:\n  install:\n    disk: /dev/sdb\n  certSANs: [extra.example.com]\ncluster:\n  allowSchedulingOnControlPlanes: true\n---\napiVersion: v1alpha1\nkind: HostnameConfig\nauto: off\nhostname: cp-9\n",
        "smp.yaml",
    )
    .unwrap();
    let json = Patch::parse(
        r#"[{"op": "add", "path": "/machine/nodeLabels/role", "value": "edge"}]"#,
        "labels.json",
    )
    .unwrap();
    cp.apply_patches(&[smp, json]).unwrap();
    let v1 = cp.v1alpha1().unwrap();
    assert_eq!(v1["machine"]["install"]["disk"], Value::from("/dev/sdb"));
    assert_eq!(v1["machine"]["certSANs"].as_sequence().unwrap().len(), 2);
    assert_eq!(v1["machine"]["nodeLabels"]["role"], Value::from("edge"));
    assert_eq!(cp.documents()[1]["hostname"], Value::from("cp-9"));
    assert_schema_valid(&cp);

    let bad = Patch::parse("machine:\n  instal: {}\n", "typo.yaml").unwrap();
    cp.apply_patches(&[bad]).unwrap();
    let e = cp.validate().unwrap_err().to_string();
    assert_eq!(
        e,
        "machine config: unknown field \"instal\" in v1alpha1.MachineConfig"
    );
}

#[test]
fn admin_talosconfig_has_os_admin_ed25519_client_cert_and_round_trips() {
    let b = bundle();
    let tc = talos_api::config::admin_talosconfig("lab", b, &[], &[]).unwrap();
    let y = tc.to_yaml();
    assert!(
        y.starts_with("context: lab\ncontexts:\n    lab:\n        endpoints: []\n        ca: ")
    );
    let (_, ctx) = tc.current().unwrap();
    let f = facts(ctx.crt.as_deref().unwrap());
    assert_eq!(f.alg, ED25519);
    assert_eq!(f.orgs, ["os:admin"]);
    assert!(f.cns.is_empty());
    assert!(!f.is_ca && f.digital_signature && f.client_auth && !f.server_auth);
    assert_eq!(f.days, 365);
    assert!(
        ctx.key
            .as_ref()
            .unwrap()
            .expose_secret()
            .starts_with("-----BEGIN ED25519 PRIVATE KEY-----")
    );
    assert_eq!(ctx.ca.as_deref(), Some(b.os.crt.as_str()));
    // Issued by the OS CA.
    let der = der_of(ctx.crt.as_deref().unwrap());
    let ca_der = der_of(&b.os.crt);
    let (_, c) = X509Certificate::from_der(&der).unwrap();
    let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
    assert_eq!(c.issuer(), ca.subject());
    // (the signature itself is exercised by the mTLS tests in grpc.rs)

    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("sub/config");
    tc.save(&p).unwrap();
    assert_eq!(std::fs::read_to_string(&p).unwrap(), y.as_str());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let back = Talosconfig::load(&p).unwrap();
    assert_eq!(back.to_yaml().as_str(), y.as_str());
}

#[test]
fn offline_admin_kubeconfig_is_signed_by_the_k8s_ca() {
    let b = bundle();
    let kc = talos_api::kubeconfig::generate_admin(b, "lab", "https://10.0.0.10:6443").unwrap();
    let creds = talos_api::kubeconfig::credentials(&kc).unwrap();
    assert_eq!(creds.server, "https://10.0.0.10:6443");
    let f = facts(&creds.client_cert_pem);
    assert_eq!(f.cns, ["admin"]);
    assert_eq!(f.orgs, ["system:masters"]);
    assert_eq!(f.alg, EC_PUBLIC_KEY);
    assert!(f.client_auth);
    assert!(kc.contains("current-context: admin@lab\n"));
}
