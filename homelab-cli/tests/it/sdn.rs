//! `sdn:` end to end on a two-node simulated cluster: a vxlan zone, two vnets with
//! subnets, VMs on both vnets; up, a no-op plan, a pending subnet change applied once, and
//! a vnet still in use that cannot go.

#![allow(clippy::unwrap_used, clippy::panic)]

use crate::common::{Repo, flat};

const FILES: &[&str] = &["demo-age-key.txt", ".sops.yaml", "secrets.enc.yaml"];

pub const BASE: &str = r#"name: net
secrets:
  file: secrets.enc.yaml
  age_key_file: demo-age-key.txt
proxmox:
  endpoint: ${secret:proxmox.endpoint}
  token_id: ${secret:proxmox.token_id}
  token_secret: ${secret:proxmox.token_secret}
  node: pve
  storage: local-lvm
  image_storage: local
  snippet_storage: local
  ssh:
    private_key: ${secret:proxmox.ssh_key}
    host_key: SHA256:qZz4bPri6aA+ilvKtF/pedgTpCfLplZvxEXvyRge4mA
images:
  debian-12:
    url: https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2
    checksum: sha512:0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000d
"#;

const SDN: &str = r#"sdn:
  zones:
    overlay: { type: vxlan, peers: [10.0.0.1, 10.0.0.2], mtu: 1450 }
  vnets:
    web:
      zone: overlay
      tag: 100
      alias: web tier
      subnets:
        - { cidr: 10.10.0.0/24, gateway: 10.10.0.1 }
    db:
      zone: overlay
      tag: 200
      subnets:
        - { cidr: 10.20.0.0/24, gateway: 10.20.0.1 }
vms:
  vmid_base: 300
  defaults:
    image: debian-12
    ssh_keys:
      - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF7d1J6b4rDtW12s+0Ehn3TIoNVFHW9S5ZlHT+kSpf93 homelab-demo
  machines:
    - { name: web-1, node: pve, bridge: web, ip: 10.10.0.11/24, gateway: 10.10.0.1 }
    - { name: db-1, node: pve2, bridge: db, ip: 10.20.0.11/24, gateway: 10.20.0.1 }
"#;

fn repo() -> Repo {
    let r = Repo::copy("vm-fleet", FILES);
    r.write(&format!("{BASE}{SDN}"));
    r
}

fn steps_with(up: &serde_json::Value, prefix: &str) -> Vec<serde_json::Value> {
    up["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["id"].as_str().unwrap().starts_with(prefix))
        .cloned()
        .collect()
}

#[test]
fn vxlan_vnets_on_two_nodes_pending_changes_and_one_apply() {
    let repo = repo();
    let shown = repo.plan_text(&[]);
    assert!(shown.contains("+ sdn_zone \"overlay\" {"), "{shown}");
    assert!(shown.contains("+ peers = \"10.0.0.1,10.0.0.2\""), "{shown}");
    assert!(shown.contains("+ sdn_vnet \"web\" {"), "{shown}");
    assert!(
        shown.contains("+ alias = \"web tier homelab-cli:owner=net\""),
        "{shown}"
    );
    assert!(
        shown.contains("+ sdn_subnet \"overlay-10.20.0.0-24\" {"),
        "{shown}"
    );
    // One apply, after every SDN change.
    assert_eq!(shown.matches("sdn_apply").count(), 1, "{shown}");
    assert!(
        shown.rfind("sdn_subnet").unwrap() < shown.find("sdn_apply").unwrap(),
        "{shown}"
    );
    // The vnets come before the VMs that use them.
    assert!(
        shown.find("sdn_apply").unwrap() < shown.find("+ vm \"web-1\"").unwrap(),
        "{shown}"
    );

    let up = repo.up_ok(&[]);
    assert_eq!(steps_with(&up, "sdn:apply").len(), 1, "{up:#}");
    assert_eq!(steps_with(&up, "sdn:").len(), 6, "{up:#}");
    // Each VM waits for the apply: its bridge exists only then (the simulated node
    // refuses to start a guest on a bridge it lacks, as Proxmox does).
    for g in steps_with(&up, "guest:")
        .iter()
        .chain(&steps_with(&up, "start:"))
    {
        assert!(
            g["deps"]
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d == "sdn:apply"),
            "{g:#}"
        );
    }
    let status = repo.json(&["status", "--simulate", "-o", "json"]);
    let guests = status["guests"].as_array().unwrap();
    let node_of = |name: &str| {
        guests
            .iter()
            .find(|g| g["name"] == name)
            .map(|g| (g["node"].clone(), g["status"].clone()))
            .unwrap()
    };
    assert_eq!(node_of("web-1"), ("pve".into(), "running".into()));
    assert_eq!(node_of("db-1"), ("pve2".into(), "running".into()));
    let cfg = repo.with_lab(async |s| {
        let c: serde_json::Value = s.pve.get("/nodes/pve2/qemu/301/config", &[]).await.unwrap();
        c["net0"].as_str().unwrap().to_string()
    });
    assert!(cfg.contains("bridge=db"), "{cfg}");

    // Nothing to do now, and nothing is written.
    let again = repo.json(&["up", "--simulate", "-o", "json"]);
    assert_eq!(again["plan"]["actions"], serde_json::json!([]), "{again:#}");
    assert_eq!(again["simulated_requests"]["mutating"], 0, "{again:#}");
    repo.assert_converged(&[]);

    // A subnet change: staged, then applied.
    repo.edit("gateway: 10.10.0.1 }", "gateway: 10.10.0.254 }");
    let shown = repo.plan_text(&[]);
    assert!(
        shown.contains("~ sdn_subnet \"overlay-10.10.0.0-24\" {"),
        "{shown}"
    );
    assert!(
        shown.contains("~ gateway = \"10.10.0.1\" -> \"10.10.0.254\""),
        "{shown}"
    );
    assert!(
        shown.contains("Plan: 0 to add, 2 to change, 0 to replace, 0 to destroy."),
        "{shown}"
    );
    // Someone (an interrupted run) staged it without applying: the plan shows it pending.
    repo.with_lab(async |s| {
        let mut p = std::collections::BTreeMap::new();
        p.insert("gateway".to_string(), "10.10.0.254".to_string());
        s.pve
            .sdn_config()
            .update_subnet(
                "web",
                "overlay-10.10.0.0-24",
                &proxmox_client::sdn::params_of(&p),
                &[],
            )
            .await
            .unwrap();
        let subnets = s.pve.sdn_config().subnets("web").await.unwrap();
        assert_eq!(
            subnets[0].state,
            Some(proxmox_client::sdn::SdnState::Changed)
        );
        assert_eq!(subnets[0].running.as_ref().unwrap()["gateway"], "10.10.0.1");
    });
    let shown = repo.plan_text(&[]);
    assert!(!shown.contains("sdn_subnet"), "already staged: {shown}");
    assert!(
        shown.contains("# pending before this plan: subnet overlay-10.10.0.0-24 (changed)"),
        "{shown}"
    );
    let up = repo.up_ok(&[]);
    let sdn_steps = steps_with(&up, "sdn:");
    assert_eq!(sdn_steps.len(), 1, "{up:#}");
    assert_eq!(sdn_steps[0]["id"], "sdn:apply");
    // Exactly one write: the apply.
    assert_eq!(up["simulated_requests"]["mutating"], 1, "{up:#}");
    repo.with_lab(async |s| {
        let subnets = s.pve.sdn_config().subnets("web").await.unwrap();
        assert!(!subnets[0].is_pending(), "{subnets:?}");
        assert_eq!(
            subnets[0].running.as_ref().unwrap()["gateway"],
            "10.10.0.254"
        );
    });
    repo.assert_converged(&[]);

    // A vnet a VM still uses cannot go; the error names the VM.
    let text = std::fs::read_to_string(repo.config()).unwrap();
    let start = text.find("    db:\n").unwrap();
    let end = text.find("vms:\n").unwrap();
    repo.write(&format!("{}{}", &text[..start], &text[end..]));
    let out = repo.cli(&["plan", "--simulate"]);
    assert_eq!(out.status.code(), Some(1));
    let err = flat(&out.stderr);
    assert!(
        err.contains("sdn vnet \"db\" is no longer declared but guests still use it: db-1 (301)"),
        "{err}"
    );
}

#[test]
fn bad_sdn_declarations_are_reported_where_they_are() {
    let repo = repo();
    let text = format!("{BASE}{SDN}")
        .replace("tag: 200", "tag: 100")
        .replace("gateway: 10.20.0.1 }", "gateway: 10.99.0.1 }")
        .replace(
            "zone: overlay\n      tag: 100\n      alias",
            "zone: nowhere\n      tag: 100\n      alias",
        );
    repo.write(&text);
    let out = repo.cli(&["plan", "--simulate"]);
    assert_eq!(out.status.code(), Some(1));
    let err = flat(&out.stderr);
    assert!(err.contains("no zone `nowhere` in sdn.zones"), "{err}");
    assert!(
        err.contains("10.99.0.1 is not in subnet 10.20.0.0/24"),
        "{err}"
    );
}
