//! Talos day 2 (issue 13): machine-config patches in homelab.yaml (order, secrets, errors
//! pointing into the patch file, `config resolve --node`), patches reaching the nodes on
//! the simulated 3 + 3 cluster, and a Talos version bump whose new ISO is downloaded before
//! any VM's CD-ROM is switched to it.

#![allow(clippy::unwrap_used, clippy::panic)]

use crate::common::{Repo, flat};

const FILES: &[&str] = &[
    "homelab.yaml",
    "secrets.enc.yaml",
    "demo-age-key.txt",
    ".sops.yaml",
];

/// The multi-node example with patches at every level: the same sysctl set cluster-wide,
/// per role and for cp-1, so the winner shows the order; a secret inside a patch file; a
/// second document (an extra config document) and an RFC 6902 patch.
fn patched_repo() -> Repo {
    let r = Repo::copy("multi-node", FILES);
    std::fs::create_dir_all(r.dir.path().join("patches")).unwrap();
    std::fs::write(
        r.dir.path().join("patches/common.yaml"),
        "# every node\nmachine:\n  sysctls:\n    net.core.somaxconn: \"all\"\n  env:\n    GATEWAY: \"${secret:network.gateway}\"\n---\napiVersion: v1alpha1\nkind: ResolverConfig\nnameservers:\n  - address: 9.9.9.9\n",
    )
    .unwrap();
    std::fs::write(
        r.dir.path().join("patches/kubelet.json.yaml"),
        "- op: add\n  path: /machine/kubelet/extraArgs\n  value:\n    max-pods: \"150\"\n",
    )
    .unwrap();
    r.edit(
        "  nodes:\n",
        "  patches:
    all:
      - file: patches/common.yaml
    controlplane:
      - inline:
          machine:
            sysctls: { net.core.somaxconn: \"cp\" }
          cluster:
            proxy: { disabled: true }
    worker:
      - file: patches/kubelet.json.yaml
  nodes:\n",
    );
    r.edit(
        "ip: \"${secret:network.cp1}\" }",
        "ip: \"${secret:network.cp1}\", patches: [ { inline: { machine: { sysctls: { net.core.somaxconn: \"node\" } } } } ] }",
    );
    // Addresses of its own (other runs on this machine use the example's).
    crate::k8s::own_addresses(&r);
    r
}

fn resolve(r: &Repo, node: &str) -> serde_json::Value {
    r.json(&["config", "resolve", "--node", node, "-o", "json"])
}

fn v1alpha1(docs: &serde_json::Value) -> &serde_json::Value {
    docs.as_array()
        .unwrap()
        .iter()
        .find(|d| d.get("kind").is_none())
        .unwrap()
}

#[test]
fn patches_apply_in_the_documented_order_with_secrets_redacted() {
    let r = patched_repo();
    let cp1 = resolve(&r, "cp-1");
    let cp2 = resolve(&r, "cp-2");
    let w1 = resolve(&r, "worker-1");
    let sysctl = |d: &serde_json::Value| {
        v1alpha1(d)["machine"]["sysctls"]["net.core.somaxconn"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // all -> role -> node: the later one wins.
    assert_eq!(sysctl(&cp1), "node");
    assert_eq!(sysctl(&cp2), "cp");
    assert_eq!(sysctl(&w1), "all");
    // Role patches reach only their role.
    assert_eq!(v1alpha1(&cp2)["cluster"]["proxy"]["disabled"], true);
    assert!(v1alpha1(&w1)["cluster"]["proxy"].get("disabled").is_none());
    assert_eq!(
        v1alpha1(&w1)["machine"]["kubelet"]["extraArgs"]["max-pods"],
        "150"
    );
    assert!(
        v1alpha1(&cp1)["machine"]["kubelet"]["extraArgs"]
            .get("max-pods")
            .is_none()
    );
    // The second document of the multi-document patch is a config document of its own.
    let docs = w1.as_array().unwrap();
    assert!(
        docs.iter()
            .any(|d| d["kind"] == "ResolverConfig" && d["nameservers"][0]["address"] == "9.9.9.9"),
        "{w1:#}"
    );
    // The secret substituted into the patch and the key material are redacted.
    let text = serde_json::to_string(&w1).unwrap();
    assert_eq!(v1alpha1(&w1)["machine"]["env"]["GATEWAY"], "(sensitive)");
    assert_eq!(v1alpha1(&w1)["machine"]["token"], "(sensitive)");
    assert_eq!(v1alpha1(&cp1)["machine"]["ca"]["key"], "(sensitive)");
    assert_eq!(
        v1alpha1(&cp1)["cluster"]["secretboxEncryptionSecret"],
        "(sensitive)"
    );
    assert!(!text.contains("PRIVATE KEY"), "{text}");

    // The text form names the patches in the order they were applied.
    let out = r.cli(&["config", "resolve", "--node", "cp-1"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let header = text.lines().next().unwrap();
    let pos = |s: &str| {
        header
            .find(s)
            .unwrap_or_else(|| panic!("{s} not in {header}"))
    };
    assert!(
        pos("patches/common.yaml:2") < pos("patches/common.yaml:8"),
        "{header}"
    );
    assert!(
        pos("patches/common.yaml:8") < pos("homelab.yaml:"),
        "{header}"
    );
}

#[test]
fn patch_errors_point_into_the_patch_file() {
    // A JSON patch whose second operation removes something that is not there: the error
    // names the file and the line of that operation.
    let r = patched_repo();
    std::fs::write(
        r.dir.path().join("patches/kubelet.json.yaml"),
        "- op: add\n  path: /machine/kubelet/extraArgs\n  value: { max-pods: \"150\" }\n- op: remove\n  path: /machine/nothing/here\n",
    )
    .unwrap();
    let out = r.cli(&["config", "resolve", "--node", "worker-2"]);
    assert_eq!(out.status.code(), Some(1));
    let e = flat(&out.stderr);
    assert!(e.contains("patches/kubelet.json.yaml:4"), "{e}");

    // A missing secret inside a patch file: the caret is on its line in that file.
    let r = patched_repo();
    std::fs::write(
        r.dir.path().join("patches/common.yaml"),
        "machine:\n  env:\n    A: \"${secret:network.nope}\"\n",
    )
    .unwrap();
    let out = r.cli(&["config", "resolve", "--node", "cp-1"]);
    assert_ne!(out.status.code(), Some(0));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("patches/common.yaml:3"), "{e}");
    assert!(e.contains("network.nope"), "{e}");

    // A YAML syntax error in a patch file.
    std::fs::write(
        r.dir.path().join("patches/common.yaml"),
        "machine:\n  env: [a, b\n",
    )
    .unwrap();
    let out = r.cli(&["check"]);
    let out = if out.status.success() {
        r.cli(&["config", "resolve", "--node", "cp-1"])
    } else {
        out
    };
    assert_ne!(out.status.code(), Some(0));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("patches/common.yaml"), "{e}");

    // Both `file` and `inline`, or neither: a structural error in homelab.yaml.
    let r = patched_repo();
    r.edit(
        "      - file: patches/common.yaml\n",
        "      - file: patches/common.yaml\n        inline: { a: 1 }\n      - {}\n",
    );
    let out = r.cli(&["check"]);
    assert_ne!(out.status.code(), Some(0));
    let e = flat(&out.stderr);
    assert!(e.contains("either a `file` or `inline`"), "{e}");
    assert!(e.contains("empty patch"), "{e}");
}

#[test]
fn unknown_node_lists_the_talos_nodes() {
    let r = patched_repo();
    let out = r.cli(&["config", "resolve", "--node", "cp-9"]);
    assert_ne!(out.status.code(), Some(0));
    let e = flat(&out.stderr);
    assert!(e.contains("no Talos node named `cp-9`"), "{e}");
    assert!(e.contains("cp-1, cp-2, cp-3, worker-1"), "{e}");
}

/// The running configs of the simulated nodes, by hostname.
fn running_configs(r: &Repo) -> std::collections::BTreeMap<String, String> {
    r.with_lab(async |s| {
        s.sim
            .as_ref()
            .unwrap()
            .talos
            .nodes()
            .into_iter()
            .map(|n| (n.hostname.clone(), n.config.clone().unwrap_or_default()))
            .collect()
    })
}

/// Steer the simulated Talos nodes of the lab the CLI starts (short upgrades; nodes that
/// never come back).
fn knobs(r: &Repo, stuck: &[u32]) {
    let dir = r.dir.path().join(".homelab/sim/talos");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("knobs.json"),
        serde_json::json!({"upgrade_ms": 300, "reboot_ms": 50, "stuck": stuck}).to_string(),
    )
    .unwrap();
}

/// Versions the simulated nodes run, by hostname.
fn versions(r: &Repo) -> std::collections::BTreeMap<String, String> {
    r.with_lab(async |s| {
        s.sim
            .as_ref()
            .unwrap()
            .talos
            .nodes()
            .into_iter()
            .map(|n| (n.hostname.clone(), n.version.clone().unwrap_or_default()))
            .collect()
    })
}

fn upgrades_in(report: &serde_json::Value) -> Vec<String> {
    report["plan"]["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "talos_upgrade")
        .map(|a| a["name"].as_str().unwrap().to_string())
        .collect()
}

/// The 3 + 3 cluster end to end: patches reach the nodes; a Talos version bump is planned
/// as six upgrades that reboot, rolled one node at a time (the new ISO downloaded before
/// any CD-ROM switches to it); a node that never comes back stops the roll, naming it, with
/// the rest untouched; once it is back `up` resumes; at most one control plane was ever
/// down; then everything runs the new version and the plan is empty.
#[test]
fn patches_reach_the_nodes_then_a_version_bump_rolls_node_by_node_and_resumes() {
    let r = patched_repo();
    knobs(&r, &[]);
    r.up_ok(&[]);
    let configs = running_configs(&r);
    assert_eq!(configs.len(), 6, "{configs:?}");
    for (host, cfg) in &configs {
        let want = match host.as_str() {
            "cp-1" => "node",
            h if h.starts_with("cp-") => "cp",
            _ => "all",
        };
        assert!(
            cfg.contains(&format!("net.core.somaxconn: {want}"))
                || cfg.contains(&format!("net.core.somaxconn: \"{want}\"")),
            "{host}: {cfg}"
        );
        assert!(cfg.contains("kind: ResolverConfig"), "{host}: {cfg}");
    }
    r.assert_converged(&[]);

    // A version bump: six upgrades, each named as a reboot, control planes first.
    r.edit("version: v1.12.0", "version: v1.12.11");
    let plan = r.plan_text(&[]);
    assert_eq!(plan.matches("talos_upgrade").count(), 6, "{plan}");
    assert_eq!(plan.matches("the node REBOOTS").count(), 6, "{plan}");
    assert!(
        plan.contains("version = \"v1.12.0\" -> \"v1.12.11\""),
        "{plan}"
    );
    let pos = |n: &str| plan.find(&format!("talos_upgrade \"{n}\"")).unwrap();
    assert!(
        pos("cp-1") < pos("cp-2") && pos("cp-3") < pos("worker-1"),
        "{plan}"
    );

    // cp-2 never comes back: the roll stops there, naming it.
    knobs(&r, &[302]);
    let out = r.cli(&[
        "up",
        "--simulate",
        "--yes",
        "-o",
        "json",
        "--talos-timeout",
        "4",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let up: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(upgrades_in(&up).len(), 6, "{up:#}");
    let steps = up["steps"].as_array().unwrap();
    let step = |id: &str| {
        steps
            .iter()
            .find(|s| s["id"] == id)
            .unwrap_or_else(|| panic!("no step {id} in {up:#}"))
    };
    assert_eq!(step("upgrade:301")["outcome"], "done", "{up:#}");
    let failed = &step("upgrade:302")["error"]["message"];
    assert!(
        failed
            .as_str()
            .unwrap()
            .contains("cp-2 did not come back on v1.12.11"),
        "{failed}"
    );
    for later in ["upgrade:303", "upgrade:311", "upgrade:312", "upgrade:313"] {
        assert_eq!(step(later)["outcome"], "skipped", "{up:#}");
    }
    // The update switching each CD-ROM waited for the new ISO's download.
    let index = |pred: &dyn Fn(&str) -> bool| {
        steps
            .iter()
            .position(|s| pred(s["label"].as_str().unwrap()))
            .unwrap_or_else(|| panic!("no such step in {up:#}"))
    };
    let download = index(&|l| l.starts_with("download ") && l.contains("v1.12.11"));
    let update = index(&|l| l.starts_with("update") && l.contains(" 301 "));
    let iso_step = steps[download]["id"].as_str().unwrap();
    let deps: Vec<&str> = steps[update]["deps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    assert!(deps.contains(&iso_step), "{up:#}");
    assert!(download < update, "{up:#}");
    knobs(&r, &[]);
    let v = versions(&r);
    assert_eq!(v["cp-1"], "v1.12.11");
    for untouched in ["cp-3", "worker-1", "worker-2", "worker-3"] {
        assert_eq!(v[untouched], "v1.12.0", "{v:?}");
    }

    // Fixed (the node booted again): `up` resumes with the nodes still on the old version.
    let up = r.up_ok(&["--talos-timeout", "60"]);
    assert_eq!(
        upgrades_in(&up),
        ["cp-3", "worker-1", "worker-2", "worker-3"],
        "{up:#}"
    );
    let v = versions(&r);
    assert!(v.values().all(|x| x == "v1.12.11"), "{v:?}");

    // The event log: from the first upgrade on (the install reboots of day 0 are all at
    // once), never two control planes down at once.
    let log = homelab_sim::talos::day2::read_event_log(&r.dir.path().join(".homelab/sim"));
    let first = log
        .iter()
        .position(|e| e.kind.starts_with("upgrade:"))
        .unwrap();
    let mut down = std::collections::BTreeSet::new();
    let mut upgrades = 0;
    for e in &log[first..] {
        match e.kind.as_str() {
            "down" if e.control_plane => {
                down.insert(e.vmid);
                assert!(down.len() <= 1, "{down:?} down at once: {log:#?}");
            }
            "up" => {
                down.remove(&e.vmid);
            }
            k if k.starts_with("upgrade:") => upgrades += 1,
            _ => {}
        }
    }
    assert_eq!(upgrades, 6, "{log:#?}");
    r.assert_converged(&[]);
}
