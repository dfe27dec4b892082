//! Talos day 2, second part (issue 13): client certificates that expire soon are re-issued;
//! workers roll in batches of `talos.upgrade.max_unavailable`; a Kubernetes version bump is
//! planned as `kubernetes upgrade 1.35.4 -> 1.35.5` and rolled in `talosctl upgrade-k8s`
//! order without a reboot, the components reporting the new version through the
//! (simulated) Kubernetes API and to a real `kubectl`.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::process::Command;

use secrecy::ExposeSecret;

use crate::common::{Repo, flat};

const FILES: &[&str] = &[
    "homelab.yaml",
    "secrets.enc.yaml",
    "demo-age-key.txt",
    ".sops.yaml",
];

/// Addresses of a loopback /24 of this run's own instead of the example's 127.0.20.0/24
/// (other test runs on the same machine use those).
pub fn own_addresses(r: &Repo) {
    let seed = std::process::id()
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
    let net = format!("127.{}.{}.", 150 + seed % 100, (seed >> 8) % 250 + 1);
    for (secret, host) in [
        ("gateway", "1"),
        ("vip", "10"),
        ("cp1", "11"),
        ("cp2", "12"),
        ("cp3", "13"),
        ("w1", "21"),
        ("w2", "22"),
        ("w3", "23"),
    ] {
        r.edit(
            &format!("${{secret:network.{secret}}}"),
            &format!("{net}{host}"),
        );
    }
}

fn knobs(r: &Repo) {
    let dir = r.dir.path().join(".homelab/sim/talos");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("knobs.json"),
        serde_json::json!({"upgrade_ms": 300, "reboot_ms": 50, "component_ms": 150}).to_string(),
    )
    .unwrap();
}

/// What the cluster's components report through the Kubernetes API, and the API server's
/// `/version`, read from the lab the repository keeps.
fn components(r: &Repo) -> (std::collections::BTreeMap<String, String>, String, String) {
    r.with_lab(async |s| {
        let cluster = s.desired.talos.as_ref().unwrap();
        let bundle = s.bundle().unwrap().unwrap();
        let kc =
            homelab_cli::engine::talos::direct_kubeconfig(&s.desired, cluster, &bundle).unwrap();
        let opts = talos_api::health::WaitOptions::new(std::time::Duration::from_secs(30))
            .interval(std::time::Duration::from_millis(200));
        talos_api::health::wait_kubernetes_ready(&kc, &opts)
            .await
            .unwrap();
        let o = homelab_cli::engine::k8s_upgrade::observe(&kc)
            .await
            .unwrap();
        let creds = talos_api::kubeconfig::credentials(&kc).unwrap();
        let http = talos_api::health::kube_http_client(&creds).unwrap();
        let v: serde_json::Value = http
            .get(format!("{}/version", creds.server))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (
            homelab_cli::engine::k8s_upgrade::summary(&o),
            v["gitVersion"].as_str().unwrap().to_string(),
            creds.server,
        )
    })
}

/// Replace the kubeconfig output's client certificate by one from the bundle's Kubernetes
/// CA that expires in 10 days.
fn near_expiry_kubeconfig(r: &Repo) {
    r.with_lab(async |s| {
        let bundle = s.bundle().unwrap().unwrap();
        let path = s.desired.outputs.kubeconfig.clone();
        let text = String::from_utf8(s.ws.decrypt(&path).unwrap().unwrap().to_vec()).unwrap();
        let creds = talos_api::kubeconfig::credentials(&text).unwrap();
        let (crt, key) = talos_api::crypto::issue_leaf(
            &bundle.k8s.crt,
            bundle.k8s.key.expose_secret(),
            &talos_api::crypto::CertSpec {
                common_name: Some("admin".into()),
                organizations: vec!["system:masters".into()],
                client_auth: true,
                validity: Some(talos_api::expiry::RENEW_BEFORE / 3_i32),
                ..Default::default()
            },
        )
        .unwrap();
        use base64::Engine as _;
        let b64 = |x: &str| base64::engine::general_purpose::STANDARD.encode(x);
        let old_crt = b64(&creds.client_cert_pem);
        let old_key = b64(creds.client_key_pem.expose_secret());
        assert!(text.contains(&old_crt) && text.contains(&old_key));
        let new = text
            .replace(&old_crt, &b64(&crt))
            .replace(&old_key, &b64(&key));
        assert!(s.ws.write_encrypted(&path, new.as_bytes()).unwrap());
    });
}

fn certificate<'a>(status: &'a serde_json::Value, output: &str) -> &'a serde_json::Value {
    status["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["output"] == output)
        .unwrap_or_else(|| panic!("no {output} in {status:#}"))
}

/// The 3 + 3 cluster: a kubeconfig whose certificate expires in 10 days is shown by
/// `status` and re-issued by `up`; a Talos bump rolls the workers two at a time; a
/// Kubernetes bump upgrades every component in `upgrade-k8s` order without a reboot; a
/// version jump of two minors or beyond what Talos runs is refused; then the plan is empty.
#[test]
fn certificates_worker_batches_and_a_kubernetes_upgrade() {
    let r = Repo::copy("multi-node", FILES);
    own_addresses(&r);
    knobs(&r);
    r.edit(
        "    name: lab\n",
        "    name: lab\n    kubernetes_version: \"1.35.4\"\n",
    );
    r.edit(
        "  network:\n",
        "  upgrade:\n    max_unavailable: 2\n  network:\n",
    );
    r.up_ok(&[]);
    let (before, version, _) = components(&r);
    assert!(before.values().all(|v| v == "1.35.4"), "{before:?}");
    // Static pods on 3 control planes, 6 kubelets, kube-proxy.
    assert_eq!(before.len(), 3 * 3 + 6 + 1, "{before:?}");
    assert_eq!(version, "v1.35.4");

    // Client certificates: a year at first; one made to expire in 10 days is re-issued.
    let status = r.json(&["status", "--simulate", "-o", "json"]);
    for output in ["talosconfig", "kubeconfig"] {
        let c = certificate(&status, output);
        assert!(c["days_left"].as_i64().unwrap() >= 364, "{status:#}");
        assert_eq!(c["renew"], false);
    }
    near_expiry_kubeconfig(&r);
    let status = r.json(&["status", "--simulate", "-o", "json"]);
    let c = certificate(&status, "kubeconfig");
    assert!((9..=10).contains(&c["days_left"].as_i64().unwrap()), "{c}");
    assert_eq!(c["renew"], true);
    let out = r.cli(&["status", "--simulate"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("kubeconfig client certificate expires")
            && text.contains("`homelab-cli up` re-issues it"),
        "{text}"
    );
    let plan = r.plan_text(&[]);
    assert!(
        plan.contains(
            "kubeconfig will be written SOPS-encrypted: its client certificate expires on"
        ) && plan.contains("days) and is re-issued"),
        "{plan}"
    );
    assert!(!plan.contains("talosconfig will be written"), "{plan}");
    let up = r.up_ok(&[]);
    let written = up["outputs_written"].as_array().unwrap();
    assert_eq!(written.len(), 1, "{up:#}");
    assert!(
        written[0].as_str().unwrap().contains("kubeconfig"),
        "{up:#}"
    );
    let status = r.json(&["status", "--simulate", "-o", "json"]);
    assert!(
        certificate(&status, "kubeconfig")["days_left"]
            .as_i64()
            .unwrap()
            >= 364
    );
    r.assert_converged(&[]);

    // A Talos bump: control planes one at a time, workers two at a time.
    r.edit("version: v1.12.0", "version: v1.12.11");
    let up = r.up_ok(&["--talos-timeout", "60"]);
    let steps = up["steps"].as_array().unwrap();
    // The nearest upgrade steps a step waits for, through any steps in between (a config
    // change staged before a node's upgrade sits between two upgrades).
    let deps = |id: &str| -> Vec<String> {
        let mut out = std::collections::BTreeSet::new();
        let mut todo = vec![id.to_string()];
        while let Some(cur) = todo.pop() {
            let s = steps.iter().find(|s| s["id"] == cur.as_str()).unwrap();
            for d in s["deps"].as_array().unwrap() {
                let d = d.as_str().unwrap().to_string();
                if d.starts_with("upgrade:") {
                    out.insert(d);
                } else if d.starts_with("config:") {
                    todo.push(d);
                }
            }
        }
        out.into_iter().collect::<Vec<_>>()
    };
    assert_eq!(deps("upgrade:302"), ["upgrade:301"]);
    assert_eq!(deps("upgrade:311"), ["upgrade:303"]);
    assert_eq!(deps("upgrade:312"), ["upgrade:303"]);
    assert_eq!(deps("upgrade:313"), ["upgrade:311", "upgrade:312"]);
    let log = homelab_sim::talos::day2::read_event_log(&r.dir.path().join(".homelab/sim"));
    let first = log
        .iter()
        .position(|e| e.kind.starts_with("upgrade:"))
        .unwrap();
    let (mut down, mut most_workers) = (std::collections::BTreeSet::new(), 0);
    for e in &log[first..] {
        match e.kind.as_str() {
            "down" => {
                down.insert((e.control_plane, e.vmid));
                let cps = down.iter().filter(|(cp, _)| *cp).count();
                let workers = down.len() - cps;
                assert!(cps <= 1 && (cps == 0 || workers == 0), "{down:?}: {log:#?}");
                assert!(workers <= 2, "{down:?}: {log:#?}");
                most_workers = most_workers.max(workers);
            }
            "up" => {
                down.retain(|(_, v)| *v != e.vmid);
            }
            _ => {}
        }
    }
    assert_eq!(most_workers, 2, "{log:#?}");
    r.assert_converged(&[]);

    // Version checks of `upgrade-k8s`: one minor at a time, within what Talos 1.12 runs.
    r.edit(
        "kubernetes_version: \"1.35.4\"",
        "kubernetes_version: \"1.37.0\"",
    );
    let out = r.cli(&["plan", "--simulate"]);
    assert_eq!(out.status.code(), Some(1));
    let e = flat(&out.stderr);
    assert!(
        e.contains("1.35->1.37") && e.contains("one minor version at a time"),
        "{e}"
    );
    r.edit(
        "kubernetes_version: \"1.37.0\"",
        "kubernetes_version: \"1.36.0\"",
    );
    let e = flat(&r.cli(&["plan", "--simulate"]).stderr);
    assert!(e.contains("too new to be used with Talos v1.12.11"), "{e}");

    // The bump: planned as one Kubernetes upgrade, named as not rebooting.
    r.edit(
        "kubernetes_version: \"1.36.0\"",
        "kubernetes_version: \"1.35.5\"",
    );
    let plan = r.plan_text(&[]);
    assert!(
        plan.contains("kubernetes upgrade 1.35.4 -> 1.35.5"),
        "{plan}"
    );
    assert!(plan.contains("no node reboots"), "{plan}");
    assert!(!plan.contains("REBOOTS"), "{plan}");
    let json = r.json(&["plan", "--simulate", "-o", "json"]);
    let actions = json["plan"]["actions"].as_array().unwrap_or_else(|| {
        json["actions"]
            .as_array()
            .unwrap_or_else(|| panic!("{json:#}"))
    });
    assert_eq!(actions.len(), 1, "{json:#}");
    assert_eq!(actions[0]["action"], "kubernetes_upgrade");
    assert_eq!(actions[0]["from"], "1.35.4");
    assert_eq!(actions[0]["to"], "1.35.5");
    assert_eq!(
        actions[0]["workers"],
        serde_json::json!(["worker-1", "worker-2", "worker-3"])
    );

    let events_before =
        homelab_sim::talos::day2::read_event_log(&r.dir.path().join(".homelab/sim")).len();
    let up = r.up_ok(&["--talos-timeout", "60"]);
    let ids: Vec<&str> = up["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "k8s:kube-apiserver:301",
            "k8s:kube-apiserver:302",
            "k8s:kube-apiserver:303",
            "k8s:kube-controller-manager:301",
            "k8s:kube-controller-manager:302",
            "k8s:kube-controller-manager:303",
            "k8s:kube-scheduler:301",
            "k8s:kube-scheduler:302",
            "k8s:kube-scheduler:303",
            "k8s:proxy-config:301",
            "k8s:proxy-config:302",
            "k8s:proxy-config:303",
            "k8s:kubelet:301",
            "k8s:kubelet:302",
            "k8s:kubelet:303",
            "k8s:kubelet:311",
            "k8s:kubelet:312",
            "k8s:kubelet:313",
            "k8s:manifests",
        ],
        "{up:#}"
    );
    // The nodes took their configs without a reboot, in that order.
    let log = homelab_sim::talos::day2::read_event_log(&r.dir.path().join(".homelab/sim"));
    // (Each process that starts the lab boots the nodes again: `up` events, never `down`.)
    // Reads (`read:<what>`) are not changes.
    let during: Vec<String> = log[events_before..]
        .iter()
        .filter(|e| e.kind != "up" && !e.kind.starts_with("read:"))
        .map(|e| format!("{}:{}", e.hostname, e.kind))
        .collect();
    assert!(
        during.iter().all(|e| e.ends_with(":applied:no_reboot")),
        "{during:#?}"
    );
    let hosts: Vec<&str> = during
        .iter()
        .map(|e| e.split(':').next().unwrap())
        .collect();
    let cps = ["cp-1", "cp-2", "cp-3"];
    let expected: Vec<&str> = [cps, cps, cps, cps, cps]
        .concat()
        .into_iter()
        .chain(["worker-1", "worker-2", "worker-3"])
        .collect();
    assert_eq!(hosts, expected, "{during:#?}");

    // Every component reports the new version.
    let (after, version, server) = components(&r);
    assert_eq!(after.len(), before.len(), "{after:?}");
    assert!(after.values().all(|v| v == "1.35.5"), "{after:?}");
    assert_eq!(version, "v1.35.5");

    // A real kubectl sees the same.
    assert!(r.cli(&["config", "use"]).status.success());
    let kubeconfig = r.dir.path().join("home/.kube/config");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let lab = rt
        .block_on(homelab_cli::simlab::SimLab::start(
            &r.dir.path().join(".homelab/sim"),
            &homelab_cli::simlab::SimOptions::default(),
        ))
        .unwrap();
    let kubectl = |args: &[&str]| {
        Command::new("kubectl")
            .args([
                "--kubeconfig",
                kubeconfig.to_str().unwrap(),
                "--server",
                &server,
            ])
            .args(args)
            .output()
    };
    match kubectl(&["version", "-o", "json"]) {
        Ok(o) => {
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            assert_eq!(v["serverVersion"]["gitVersion"], "v1.35.5", "{v:#}");
            let o = kubectl(&["get", "nodes", "-o", "json"]).unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            let nodes: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            let items = nodes["items"].as_array().unwrap();
            assert_eq!(items.len(), 6);
            for n in items {
                assert_eq!(
                    n["status"]["nodeInfo"]["kubeletVersion"], "v1.35.5",
                    "{n:#}"
                );
                assert_eq!(
                    n["status"]["nodeInfo"]["osImage"], "Talos (v1.12.11)",
                    "{n:#}"
                );
            }
        }
        Err(_) => crate::common::skip_or_fail(
            "kubectl is not installed; the upgraded cluster not read with it",
        ),
    }
    rt.block_on(lab.shutdown());
    // The nodes this process ran stop with its runtime (and free their addresses).
    drop(rt);
    r.assert_converged(&[]);
}
