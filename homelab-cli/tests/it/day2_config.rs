//! Talos day 2 on running nodes (issue 13): the running machine config read back through
//! the COSI resource API, config changes planned by path with the apply mode Talos needs
//! and rolled node by node, a schematic change (new extension, same version) planned and
//! rolled as an upgrade; one plan reads each thing at most once per node.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;

use homelab_sim::talos::day2::{EventLine, read_event_log};

use crate::common::Repo;

const FILES: &[&str] = &[
    "homelab.yaml",
    "secrets.enc.yaml",
    "demo-age-key.txt",
    ".sops.yaml",
];

/// The multi-node example (3 control planes, 3 workers) on a loopback /24 of its own, `net`
/// (other tests, this file's too, run the same example at the same time), with short
/// simulated reboots.
fn cluster(net: &str) -> Repo {
    let r = Repo::copy("multi-node", FILES);
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
            &format!("{net}.{host}"),
        );
    }
    let dir = r.dir.path().join(".homelab/sim/talos");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("knobs.json"),
        r#"{"upgrade_ms": 300, "reboot_ms": 50}"#,
    )
    .unwrap();
    r
}

fn log(r: &Repo) -> Vec<EventLine> {
    read_event_log(&r.dir.path().join(".homelab/sim"))
}

fn plan_json(r: &Repo) -> serde_json::Value {
    r.json(&["plan", "--simulate", "-o", "json"])
}

fn actions<'a>(plan: &'a serde_json::Value, kind: &str) -> Vec<&'a serde_json::Value> {
    plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == kind)
        .collect()
}

/// The config blocks of a plan text (the rest names simulator ports).
fn config_blocks(text: &str) -> String {
    text.split("\n\n")
        .filter(|b| b.contains("talos_machine_config"))
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// Events after `from`, of the given kind prefix, as (hostname, kind).
fn events_since(r: &Repo, from: usize, prefix: &str) -> Vec<(String, String)> {
    log(r)[from..]
        .iter()
        .filter(|e| e.kind.starts_with(prefix))
        .map(|e| (e.hostname.clone(), e.kind.clone()))
        .collect()
}

const HOSTS: [&str; 6] = ["cp-1", "cp-2", "cp-3", "worker-1", "worker-2", "worker-3"];

#[test]
fn config_changes_are_planned_by_path_and_rolled_node_by_node() {
    let r = cluster("127.0.93");
    r.up_ok(&[]);

    // One plan of the six running nodes: at most one read of each kind per node, and the
    // machine config and the extensions were read on every node.
    let before = log(&r).len();
    r.assert_converged(&[]);
    let mut reads: BTreeMap<(u32, String), usize> = BTreeMap::new();
    for e in &log(&r)[before..] {
        if let Some(what) = e.kind.strip_prefix("read:") {
            *reads.entry((e.vmid, what.to_string())).or_default() += 1;
        }
    }
    assert!(reads.values().all(|n| *n == 1), "{reads:#?}");
    for vmid in [301, 302, 303, 311, 312, 313] {
        for what in [
            "Version",
            "Get MachineConfigs.config.talos.dev",
            "List ExtensionStatuses.runtime.talos.dev",
        ] {
            assert!(
                reads.contains_key(&(vmid, what.to_string())),
                "{vmid} {what}: {reads:#?}"
            );
        }
    }

    // (a) A patch added: a diff by path, applied live; a secret inside it is masked.
    r.edit(
        "  nodes:\n",
        "  patches:
    all:
      - inline:
          machine:
            sysctls: { net.core.somaxconn: \"65535\" }
    worker:
      - inline:
          machine:
            kubelet: { extraArgs: { max-pods: \"150\" } }
            nodeLabels: { gateway: \"${secret:network.gateway}\" }
  nodes:\n",
    );
    let text = r.plan_text(&[]);
    assert_eq!(
        text.matches("applied live (no reboot)").count(),
        6,
        "{text}"
    );
    assert!(!text.contains("REBOOTS"), "{text}");
    assert!(!text.contains("127.0.20.1"), "{text}");
    insta::assert_snapshot!("config_change_plan_live", config_blocks(&text));
    let plan = plan_json(&r);
    let changes = actions(&plan, "talos_config_change");
    assert_eq!(changes.len(), 6, "{plan:#}");
    let names: Vec<&str> = changes
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, HOSTS, "control planes first");
    assert!(changes.iter().all(|a| a["mode"] == "no-reboot"), "{plan:#}");
    let w1 = changes.iter().find(|a| a["name"] == "worker-1").unwrap();
    let label = w1["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["path"] == "machine.nodeLabels.gateway")
        .unwrap();
    assert_eq!(label["to"], "(sensitive)", "{w1:#}");

    // `up` applies it node by node in that order, nothing reboots; then nothing is left.
    let from = log(&r).len();
    let up = r.up_ok(&[]);
    let steps: Vec<&str> = up["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["id"].as_str())
        .filter(|id| id.starts_with("config:"))
        .collect();
    assert_eq!(steps.len(), 6, "{up:#}");
    let applied = events_since(&r, from, "applied:");
    assert_eq!(
        applied,
        HOSTS
            .iter()
            .map(|h| (h.to_string(), "applied:no_reboot".to_string()))
            .collect::<Vec<_>>()
    );
    assert!(events_since(&r, from, "down").is_empty());
    r.assert_converged(&[]);

    // (b) A change Talos cannot apply live: the plan names the reboot, `up` reboots the
    // workers one at a time; `--config-mode staged` would reboot nothing.
    r.edit(
        "            kubelet: { extraArgs: { max-pods: \"150\" } }\n",
        "            kubelet: { extraArgs: { max-pods: \"150\" } }\n            env: { HTTP_PROXY: \"http://proxy:3128\" }\n",
    );
    let text = r.plan_text(&[]);
    assert_eq!(
        text.matches("the node REBOOTS (machine.env cannot be applied live")
            .count(),
        3,
        "{text}"
    );
    for w in ["worker-1", "worker-2", "worker-3"] {
        assert!(
            text.contains(&format!(
                "worker \"{w}\" will be updated in place; the node REBOOTS"
            )),
            "{text}"
        );
    }
    let staged = r.plan_text(&["--config-mode", "staged"]);
    assert!(!staged.contains("REBOOTS"), "{staged}");
    assert_eq!(
        staged
            .matches("staged: taken at the node's next reboot")
            .count(),
        3
    );
    let from = log(&r).len();
    r.up_ok(&[]);
    let downs: Vec<String> = events_since(&r, from, "")
        .into_iter()
        .filter(|(_, k)| k == "down" || k == "up" || k.starts_with("applied:"))
        .map(|(h, k)| format!("{h} {k}"))
        // The lab's own start (every node booting) comes first.
        .skip_while(|l| !l.contains(" applied:"))
        .collect();
    assert_eq!(
        downs,
        [
            "worker-1 applied:reboot",
            "worker-1 down",
            "worker-1 up",
            "worker-2 applied:reboot",
            "worker-2 down",
            "worker-2 up",
            "worker-3 applied:reboot",
            "worker-3 down",
            "worker-3 up",
        ]
    );
    r.assert_converged(&[]);
}

#[test]
fn a_new_extension_at_the_same_version_is_an_upgrade() {
    let r = cluster("127.0.94");
    r.up_ok(&[]);
    let schematic = |r: &Repo| -> BTreeMap<String, String> {
        r.with_lab(async |s| {
            s.sim
                .as_ref()
                .unwrap()
                .talos
                .nodes()
                .into_iter()
                .map(|n| (n.hostname.clone(), n.schematic.clone().unwrap_or_default()))
                .collect()
        })
    };
    let old = schematic(&r);
    r.edit(
        "    - siderolabs/nfs-mount\n",
        "    - siderolabs/nfs-mount\n    - siderolabs/iscsi-tools\n",
    );
    let plan = plan_json(&r);
    let upgrades = actions(&plan, "talos_upgrade");
    assert_eq!(upgrades.len(), 6, "{plan:#}");
    let new_id = upgrades[0]["to_schematic"].as_str().unwrap().to_string();
    for u in &upgrades {
        assert_eq!(u["from"], "v1.12.0");
        assert_eq!(u["to"], "v1.12.0");
        assert_eq!(u["from_schematic"], old["cp-1"].as_str(), "{u:#}");
        assert!(
            u["image"]
                .as_str()
                .unwrap()
                .ends_with(&format!("/nocloud-installer/{new_id}:v1.12.0")),
            "{u:#}"
        );
    }
    // The installer image in each config follows, staged for the upgrade's own reboot.
    let changes = actions(&plan, "talos_config_change");
    assert_eq!(changes.len(), 6, "{plan:#}");
    assert!(
        changes
            .iter()
            .all(|c| c["mode"] == "staged" && c["with_upgrade"] == true),
        "{plan:#}"
    );
    let text = r.plan_text(&[]);
    assert!(
        text.contains(&format!(
            "version = \"v1.12.0 (schematic {})\" -> \"v1.12.0 (schematic {})\"",
            &old["cp-1"][..12],
            &new_id[..12]
        )),
        "{text}"
    );
    assert_eq!(text.matches("the node REBOOTS").count(), 6, "{text}");

    r.up_ok(&["--talos-timeout", "60"]);
    let now = schematic(&r);
    assert!(now.values().all(|s| *s == new_id), "{now:?}");
    r.assert_converged(&[]);
}
