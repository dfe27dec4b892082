//! Bare-metal nodes in `plan`/`up`/`status` (issue 16) on the simulated lab: two VM control
//! planes, one metal worker and one metal control plane. `up` serves the boot network on loopback, the simulated
//! machine network-boots from it (DHCP, TFTP, iPXE script, kernel, initramfs, its
//! `talos.config=`), installs, and joins; the plan is then empty, `status` and a real
//! `kubectl` see the node, a version bump rolls onto it, and no machine config is on disk
//! in plaintext.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use secrecy::ExposeSecret;

use crate::common::Repo;

/// Addresses of this test only (tests run in parallel; every node listens on its own
/// loopback address).
const YAML: &str = r#"name: metal-lab

secrets:
  file: secrets.enc.yaml
  age_key_file: demo-age-key.txt

proxmox:
  endpoint: ${secret:proxmox.endpoint}
  token_id: ${secret:proxmox.token_id}
  token_secret: ${secret:proxmox.token_secret}
  node: pve

talos:
  version: v1.12.0
  extensions:
    - siderolabs/qemu-guest-agent
  cluster:
    name: lab
  network:
    gateway: 127.0.46.1
    prefix: 24
  defaults:
    disk: 20GiB
  nodes:
    - { name: cp-1, vmid: 461, role: controlplane, cores: 2, memory: 4GiB, ip: 127.0.46.11 }
    - { name: cp-2, vmid: 462, role: controlplane, cores: 2, memory: 4GiB, ip: 127.0.46.12 }
  metal:
    - name: metal-1
      mac: "52:54:00:46:00:21"
      role: worker
      install_disk: /dev/nvme0n1
      ip: 127.0.46.21
    - { name: cp-metal, mac: "52:54:00:46:00:22", role: controlplane, ip: 127.0.46.22 }
"#;

fn repo() -> Repo {
    let repo = Repo::copy(
        "multi-node",
        &["secrets.enc.yaml", "demo-age-key.txt", ".sops.yaml"],
    );
    repo.write(YAML);
    repo
}

/// The ids of the steps of `up` that contain `part`, in the order they ran.
fn step_ids<'a>(up: &'a serde_json::Value, part: &str) -> Vec<&'a str> {
    up["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["id"].as_str())
        .filter(|id| id.contains(part))
        .collect()
}

/// Files below `dir` holding `needle` (`skip` directories are not entered).
fn files_containing(dir: &Path, needle: &[u8], skip: &[PathBuf], hits: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() && !skip.contains(&path) {
            files_containing(&path, needle, skip, hits);
        } else if meta.is_file()
            && meta.len() < 64 << 20
            && let Ok(data) = std::fs::read(&path)
            && data.windows(needle.len()).any(|w| w == needle)
        {
            hits.push(path);
        }
    }
}

#[test]
fn up_boots_a_metal_worker_beside_vm_control_planes() {
    let repo = repo();

    // The plan shows the metal node: no VM, a network boot.
    let plan = repo.plan_text(&[]);
    assert!(
        plan.contains(
            "# metal node metal-1 (52:54:00:46:00:21) boots over the network (`homelab-cli pxe serve`), installs and joins"
        ),
        "{plan}"
    );
    assert!(plan.contains("+ metal worker \"metal-1\" {"), "{plan}");
    assert!(!plan.contains("vmid = 1"), "{plan}");

    let up = repo.up_ok(&["--talos-timeout", "120"]);
    let steps = up["steps"].as_array().unwrap();
    let step = |id: &str| {
        steps
            .iter()
            .find(|s| s["id"] == id)
            .unwrap_or_else(|| panic!("no step {id} in {up:#}"))
    };
    let boot = step("metal:metal-1");
    assert_eq!(
        boot["detail"], "network-booted, config fetched, installed to /dev/nvme0n1",
        "{boot:#}"
    );
    assert_eq!(
        step("metal-join:metal-1")["detail"],
        "Kubernetes node Ready"
    );
    // The metal control plane installs to the default disk and joins etcd.
    assert_eq!(
        step("metal:cp-metal")["detail"],
        "network-booted, config fetched, installed to /dev/sda"
    );
    assert_eq!(
        step("metal-join:cp-metal")["detail"],
        "Kubernetes node Ready, etcd member"
    );
    // Nothing was created in Proxmox for it.
    assert!(
        up["plan"]["actions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["action"] == "create")
            .all(|a| a["name"] != "metal-1"),
        "{up:#}"
    );

    // Converged: a second process sees the installed machine (booted from its disk).
    repo.assert_converged(&[]);

    let status = repo.json(&["status", "--simulate", "-o", "json"]);
    assert_eq!(status["metal"][1]["talos"], "configured", "{status:#}");
    let m = &status["metal"][0];
    assert_eq!(m["name"], "metal-1", "{status:#}");
    assert_eq!(m["mac"], "52:54:00:46:00:21");
    assert_eq!(m["address"], "127.0.46.21");
    assert_eq!(m["talos"], "configured", "{status:#}");
    assert_eq!(m["version"], "v1.12.0", "{status:#}");
    assert_eq!(m["kubernetes_ready"], true, "{status:#}");
    let text = String::from_utf8_lossy(&repo.cli(&["status", "--simulate"]).stdout).into_owned();
    let row = text
        .lines()
        .find(|l| l.trim_start().starts_with("metal-1"))
        .unwrap_or_else(|| panic!("{text}"));
    let words: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        words,
        [
            "metal-1",
            "52:54:00:46:00:21",
            "127.0.46.21",
            "worker",
            "configured",
            "v1.12.0",
            "Ready"
        ],
        "{text}"
    );

    // A real Kubernetes client lists the metal node beside the control planes.
    let out = repo.cli(&["config", "use"]);
    assert!(out.status.success());
    let kubeconfig = repo.dir.path().join("home/.kube/config");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let lab = rt
        .block_on(homelab_cli::simlab::SimLab::start(
            &repo.dir.path().join(".homelab/sim"),
            &homelab_cli::simlab::SimOptions::default(),
        ))
        .unwrap();
    let kc = std::fs::read_to_string(&kubeconfig).unwrap();
    rt.block_on(async {
        let opts = talos_api::health::WaitOptions::new(std::time::Duration::from_secs(30))
            .interval(std::time::Duration::from_millis(200));
        talos_api::health::wait_kubernetes_ready(&kc, &opts).await
    })
    .unwrap();
    let metal = lab
        .talos
        .metal_node(&[0x52, 0x54, 0x00, 0x46, 0x00, 0x21])
        .expect("the installed metal machine did not boot from its disk");
    assert!(metal.installed);
    assert_eq!(metal.hostname, "metal-1");
    assert_eq!(metal.machine_type, "worker");
    match Command::new("kubectl")
        .args(["--kubeconfig", kubeconfig.to_str().unwrap()])
        .args(["get", "nodes", "-o", "name"])
        .output()
    {
        Ok(o) => {
            assert!(
                o.status.success(),
                "kubectl: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            assert_eq!(
                String::from_utf8_lossy(&o.stdout).trim(),
                "node/cp-1\nnode/cp-2\nnode/cp-metal\nnode/metal-1"
            );
        }
        Err(_) => crate::common::skip_or_fail("kubectl is not installed; node list not checked"),
    }
    rt.block_on(lab.shutdown());
    // The runtime holds the nodes this process resumed: drop it so that they stop.
    drop(rt);

    // Day 2: a Talos version bump rolls onto the metal nodes too (after the VM nodes,
    // control plane first), with the metal installer.
    repo.edit("version: v1.12.0", "version: v1.12.1");
    let plan = repo.plan_text(&[]);
    assert!(
        plan.contains("# Talos on metal worker \"metal-1\" will be upgraded; the machine REBOOTS"),
        "{plan}"
    );
    assert!(plan.contains("/metal-installer/"), "{plan}");
    let up = repo.up_ok(&["--talos-timeout", "120"]);
    assert_eq!(
        step_ids(&up, "upgrade:"),
        [
            "upgrade:461",
            "upgrade:462",
            "metal-upgrade:cp-metal",
            "metal-upgrade:metal-1"
        ],
        "{up:#}"
    );
    repo.assert_converged(&[]);
    let status = repo.json(&["status", "--simulate", "-o", "json"]);
    assert_eq!(status["metal"][0]["version"], "v1.12.1", "{status:#}");
    assert_eq!(status["metal"][1]["version"], "v1.12.1", "{status:#}");

    // Day 2: the cluster-wide and role patches reach the metal nodes as well (they have
    // none of their own), planned by path and applied live after the VM nodes, control
    // planes first; `config resolve` shows a metal node's config with its patches.
    repo.edit(
        "  metal:\n",
        "  patches:
    all:
      - inline:
          machine:
            sysctls: { net.core.somaxconn: \"65535\" }
    worker:
      - inline:
          machine:
            nodeLabels: { rack: \"${secret:network.gateway}\" }
  metal:\n",
    );
    let text = repo.plan_text(&[]);
    for who in [
        "controlplane \"cp-1\"",
        "controlplane \"cp-2\"",
        "metal controlplane \"cp-metal\"",
        "metal worker \"metal-1\"",
    ] {
        assert!(
            text.contains(&format!(
                "# machine config of {who} will be updated in place; applied live (no reboot)"
            )),
            "{who}: {text}"
        );
    }
    assert!(
        text.contains("+ machine.nodeLabels.rack = (sensitive)"),
        "{text}"
    );
    assert!(!text.contains("127.0.46.1\""), "{text}");
    let resolved =
        String::from_utf8_lossy(&repo.cli(&["config", "resolve", "--node", "metal-1"]).stdout)
            .into_owned();
    let first = resolved.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("# effective machine config of metal-1; patches applied in order: ")
            && first.matches("homelab.yaml:").count() == 2,
        "{resolved}"
    );
    assert!(resolved.contains("rack: (sensitive)"), "{resolved}");
    assert!(
        resolved.contains("net.core.somaxconn: '65535'"),
        "{resolved}"
    );
    assert!(resolved.contains("/metal-installer/"), "{resolved}");
    let up = repo.up_ok(&["--talos-timeout", "120"]);
    assert_eq!(
        step_ids(&up, "config:"),
        [
            "config:461",
            "config:462",
            "config:metal:cp-metal",
            "config:metal:metal-1"
        ],
        "{up:#}"
    );
    repo.assert_converged(&[]);

    // No plaintext machine config on disk: the cluster's machine token and bootstrap token
    // (in every machine config, and in the SOPS-encrypted bundle only) appear in no file of
    // the repository, its caches, outputs and home, nor in the temporary directory. The
    // simulated lab's directory holds the simulated machines' own disks: there, and only in
    // the node state files (their STATE partitions), do the configs live.
    let bundle = repo.with_lab(async |s| s.bundle().unwrap().unwrap());
    let sim = repo.dir.path().join(".homelab/sim");
    for marker in [
        bundle.trustd_token.expose_secret().to_string(),
        bundle.bootstrap_token.expose_secret().to_string(),
    ] {
        let mut hits = Vec::new();
        files_containing(
            repo.dir.path(),
            marker.as_bytes(),
            std::slice::from_ref(&sim),
            &mut hits,
        );
        files_containing(
            &std::env::temp_dir(),
            marker.as_bytes(),
            &[repo.dir.path().to_path_buf()],
            &mut hits,
        );
        assert!(
            hits.is_empty(),
            "plaintext machine config on disk: {hits:?}"
        );
        let mut on_disks = Vec::new();
        files_containing(&sim, marker.as_bytes(), &[], &mut on_disks);
        assert!(
            on_disks.iter().all(|p| {
                p.parent() == Some(&sim.join("talos"))
                    && p.extension().is_some_and(|e| e == "json")
                    && !p.to_string_lossy().ends_with(".machine.json")
            }),
            "{on_disks:?}"
        );
        assert!(
            on_disks
                .iter()
                .any(|p| p.ends_with("talos/metal-1004587553.json")),
            "the metal machine's disk holds no config: {on_disks:?}"
        );
    }
}
