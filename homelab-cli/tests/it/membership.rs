//! Talos cluster membership (issue 14) on the simulated lab: 3 control planes → 5 → 3 with
//! the etcd members and Kubernetes nodes checked after each step and etcd never below quorum
//! (from the simulator's event log); a control-plane VM destroyed behind our back and
//! repaired by `up`; the refusal of 3 → 1 in one step; a worker drained through a
//! PodDisruptionBudget that first blocks and then allows the eviction; `talos reset`.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};

use homelab_cli::engine::talos as etalos;
use serde_json::json;
use talos_api::kube::KubeClient;

use crate::common::{Repo, flat};

const FILES: &[&str] = &[
    "homelab.yaml",
    "secrets.enc.yaml",
    "demo-age-key.txt",
    ".sops.yaml",
];

/// The multi-node example on its own network `127.<a>.<b>.x` (tests run side by side),
/// with the given Talos node lines.
fn repo(a: u8, b: u8, nodes: &[&str]) -> Repo {
    let r = Repo::copy("multi-node", FILES);
    let secrets = r.dir.path().join("secrets.enc.yaml");
    let key = r.dir.path().join("demo-age-key.txt");
    let mut ids = sops_age::Identities::new();
    ids.add_file(&key).unwrap();
    let plain = sops_age::decrypt(
        &std::fs::read(&secrets).unwrap(),
        sops_age::Format::Yaml,
        &ids,
    )
    .unwrap();
    let text = String::from_utf8(plain.to_vec())
        .unwrap()
        .replace("127.0.20.", &format!("127.{a}.{b}."));
    let public = std::fs::read_to_string(&key)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("# public key: ").map(str::to_string))
        .unwrap();
    let opts = sops_age::EncryptOptions::new(vec![sops_age::Recipient::parse(&public).unwrap()]);
    std::fs::write(
        &secrets,
        sops_age::encrypt(text.as_bytes(), sops_age::Format::Yaml, &opts).unwrap(),
    )
    .unwrap();
    set_nodes(&r, a, b, nodes);
    // Short reboots.
    let dir = r.dir.path().join(".homelab/sim/talos");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("knobs.json"),
        json!({"upgrade_ms": 300, "reboot_ms": 50}).to_string(),
    )
    .unwrap();
    r
}

/// Node line for `name` (cp-N / worker-N) on the test's network.
fn node_line(a: u8, b: u8, name: &str) -> String {
    let (role, n, base) = match name.strip_prefix("cp-") {
        Some(n) => ("controlplane", n.parse::<u32>().unwrap(), 10),
        None => (
            "worker",
            name.strip_prefix("worker-")
                .unwrap()
                .parse::<u32>()
                .unwrap(),
            20,
        ),
    };
    let vmid = if role == "worker" { 310 + n } else { 300 + n };
    format!(
        "    - {{ name: {name}, vmid: {vmid}, role: {role}, cores: 2, memory: 2GiB, ip: \"127.{a}.{b}.{}\" }}\n",
        base + n
    )
}

/// Replace the `nodes:` list of homelab.yaml.
fn set_nodes(r: &Repo, a: u8, b: u8, nodes: &[&str]) {
    let text = std::fs::read_to_string(r.config()).unwrap();
    let start = text.find("  nodes:\n").unwrap() + "  nodes:\n".len();
    let lines: String = nodes.iter().map(|n| node_line(a, b, n)).collect();
    r.write(&format!("{}{lines}", &text[..start]));
}

/// etcd member names (sorted) and the leader's name, as the simulator holds them.
fn etcd_members(r: &Repo) -> (Vec<String>, Option<String>) {
    r.with_lab(async |s| {
        // The lab just started: its nodes boot and elect a leader.
        let mut clusters = s.sim.as_ref().unwrap().talos.etcd();
        for _ in 0..100 {
            if clusters.values().any(|c| c.leader.is_some()) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            clusters = s.sim.as_ref().unwrap().talos.etcd();
        }
        let live: Vec<_> = clusters.values().filter(|c| c.leader.is_some()).collect();
        assert_eq!(live.len(), 1, "{clusters:#?}");
        let c = live[0];
        let mut names: Vec<String> = c.members.iter().map(|m| m.name.clone()).collect();
        names.sort();
        let leader = c
            .members
            .iter()
            .find(|m| Some(m.id) == c.leader)
            .map(|m| m.name.clone());
        (names, leader)
    })
}

/// Run `f` with a Kubernetes client to the first control plane of the running lab.
fn with_kube<T>(r: &Repo, f: impl AsyncFnOnce(&KubeClient) -> T) -> T {
    r.with_lab(async |s| {
        let cluster = s.desired.talos.as_ref().unwrap();
        let bundle = s.bundle().unwrap().unwrap();
        let kc = etalos::direct_kubeconfig(&s.desired, cluster, &bundle).unwrap();
        let k = KubeClient::from_kubeconfig(&kc).unwrap();
        // The lab just started: wait for the API and for every node that runs to be Ready.
        let names: Vec<String> = s
            .sim
            .as_ref()
            .unwrap()
            .talos
            .nodes()
            .into_iter()
            .filter(|n| n.installed)
            .map(|n| n.hostname)
            .collect();
        for _ in 0..150 {
            if let Ok(nodes) = k.nodes().await
                && names
                    .iter()
                    .all(|n| nodes.iter().any(|x| &x.name == n && x.ready))
            {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        f(&k).await
    })
}

/// Kubernetes node names (sorted), each with (ready, cordoned).
fn kube_nodes(r: &Repo) -> BTreeMap<String, (bool, bool)> {
    with_kube(r, async |k| {
        k.nodes()
            .await
            .unwrap()
            .into_iter()
            .map(|n| (n.name, (n.ready, n.unschedulable)))
            .collect()
    })
}

fn sorted(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// From the event log: after the bootstrap, at every event, the etcd members whose node is
/// up make a quorum of all members.
fn assert_quorum_always_held(r: &Repo) -> usize {
    let log = homelab_sim::talos::day2::read_event_log(&r.dir.path().join(".homelab/sim"));
    let mut members: BTreeMap<String, u32> = BTreeMap::new();
    let mut up: BTreeSet<u32> = BTreeSet::new();
    let mut checked = 0;
    let mut started = false;
    for e in &log {
        match e.kind.as_str() {
            "up" => {
                up.insert(e.vmid);
            }
            "down" => {
                up.remove(&e.vmid);
            }
            k => {
                if let Some(id) = k.strip_prefix("etcd-join:") {
                    started = true;
                    members.insert(id.to_string(), e.vmid);
                } else if let Some(id) = k.strip_prefix("etcd-remove:") {
                    members.remove(id);
                }
            }
        }
        if started {
            let healthy = members.values().filter(|v| up.contains(v)).count();
            let q = members.len() / 2 + 1;
            assert!(
                healthy >= q,
                "{healthy} healthy of {} members after {e:?}: {log:#?}",
                members.len()
            );
            checked += 1;
        }
    }
    checked
}

fn step_ids(up: &serde_json::Value) -> Vec<String> {
    up["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

/// 3 → 5 → 3 control planes, a control plane destroyed behind our back and repaired, and
/// 3 → 1 refused.
#[test]
fn control_planes_scale_out_and_in_with_quorum_kept_and_a_destroyed_one_is_repaired() {
    let (a, b) = (63, 14);
    let r = repo(a, b, &["cp-1", "cp-2", "cp-3"]);
    r.up_ok(&[]);
    let three = sorted(&["cp-1", "cp-2", "cp-3"]);
    assert_eq!(etcd_members(&r).0, three);
    let k = kube_nodes(&r);
    assert_eq!(k.keys().cloned().collect::<Vec<_>>(), three);
    assert!(k.values().all(|(ready, _)| *ready), "{k:?}");

    // Scale out: cp-4 and cp-5 join; no second bootstrap.
    set_nodes(&r, a, b, &["cp-1", "cp-2", "cp-3", "cp-4", "cp-5"]);
    let up = r.up_ok(&[]);
    let ids = step_ids(&up);
    assert!(!ids.contains(&"bootstrap".to_string()), "{ids:?}");
    assert!(
        ids.contains(&"join:304".to_string()) && ids.contains(&"join:305".to_string()),
        "{ids:?}"
    );
    let five = sorted(&["cp-1", "cp-2", "cp-3", "cp-4", "cp-5"]);
    let (members, leader) = etcd_members(&r);
    assert_eq!(members, five);
    assert!(leader.is_some());
    let k = kube_nodes(&r);
    assert_eq!(k.keys().cloned().collect::<Vec<_>>(), five);
    assert!(k.values().all(|(ready, _)| *ready), "{k:?}");
    r.assert_converged(&[]);

    // Scale in 5 → 3: the plan says what happens, in order, before anything does.
    set_nodes(&r, a, b, &["cp-1", "cp-2", "cp-3"]);
    let plan = r.plan_text(&[]);
    for s in [
        "control plane \"cp-5\" leaves the cluster first",
        "cordon and drain the Kubernetes node",
        "leave etcd (EtcdLeaveCluster",
        "reset it (graceful, wiping STATE and EPHEMERAL)",
        "delete the Kubernetes Node object",
        "then destroy the VM",
    ] {
        assert!(plan.contains(s), "{s:?} not in\n{plan}");
    }
    let up = r.up_ok(&[]);
    let ids = step_ids(&up);
    let pos = |id: &str| ids.iter().position(|x| x == id).unwrap();
    assert!(pos("leave:304") < pos("delete:304"), "{ids:?}");
    assert!(pos("leave:305") < pos("delete:305"), "{ids:?}");
    assert_eq!(etcd_members(&r).0, three);
    assert_eq!(kube_nodes(&r).keys().cloned().collect::<Vec<_>>(), three);
    r.assert_converged(&[]);

    // cp-3's VM destroyed through the Proxmox API: `up` removes its stale member first,
    // recreates it, and it joins again.
    r.with_lab(async |s| {
        let g = s
            .pve
            .node("pve")
            .guest(proxmox_client::GuestKind::Qemu, 303);
        let t = g
            .stop(&proxmox_client::guest::StopOptions::default())
            .await
            .unwrap();
        t.wait(&proxmox_client::WaitOptions::default())
            .await
            .unwrap();
        let t = g
            .destroy(&proxmox_client::guest::DestroyOptions::everything())
            .await
            .unwrap();
        t.wait(&proxmox_client::WaitOptions::default())
            .await
            .unwrap();
    });
    let plan = r.plan_text(&[]);
    assert!(plan.contains("stale etcd member"), "{plan}");
    assert!(plan.contains("\"cp-3\""), "{plan}");
    let up = r.up_ok(&[]);
    let ids = step_ids(&up);
    let rm = ids.iter().position(|x| x.starts_with("etcd-rm:")).unwrap();
    assert!(rm < pos_of(&ids, "talos:303"), "{ids:?}");
    assert!(!ids.contains(&"bootstrap".to_string()), "{ids:?}");
    assert_eq!(etcd_members(&r).0, three);
    let k = kube_nodes(&r);
    assert_eq!(k.keys().cloned().collect::<Vec<_>>(), three);
    assert!(k.values().all(|(ready, _)| *ready), "{k:?}");
    r.assert_converged(&[]);

    // 3 → 1 in one step is refused, with the way there; nothing changes.
    set_nodes(&r, a, b, &["cp-1"]);
    let out = r.cli(&["plan", "--simulate"]);
    assert_eq!(out.status.code(), Some(1));
    let e = flat(&out.stderr);
    assert!(e.contains("from 3 to 1 members"), "{e}");
    assert!(
        e.contains("at most 1 control plane(s) per `homelab-cli up`"),
        "{e}"
    );
    let out = r.cli(&["up", "--simulate", "--yes"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(etcd_members(&r).0, three);

    let checked = assert_quorum_always_held(&r);
    assert!(checked > 10, "{checked} events checked");
}

fn pos_of(ids: &[String], id: &str) -> usize {
    ids.iter()
        .position(|x| x == id)
        .unwrap_or_else(|| panic!("no step {id} in {ids:?}"))
}

fn pod(name: &str, node: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "web"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": "web-5d8f", "uid": "1", "controller": true}]},
        "spec": {"nodeName": node, "containers": [{"name": "web", "image": "nginx"}]}})
}

/// A worker removed with a drain: a PodDisruptionBudget first blocks the eviction (the run
/// fails naming the pod and the budget, the node stays cordoned, its VM untouched), then
/// allows it once relaxed. Then `talos reset` returns a worker to maintenance mode and `up`
/// installs it again.
#[test]
fn a_worker_is_drained_through_a_disruption_budget_then_removed_and_reset_works() {
    let (a, b) = (63, 15);
    let r = repo(a, b, &["cp-1", "worker-1", "worker-2"]);
    r.up_ok(&[]);
    with_kube(&r, async |k| {
        for (p, n) in [("web-1", "worker-1"), ("web-2", "worker-2")] {
            k.create("/api/v1/namespaces/default/pods", &pod(p, n))
                .await
                .unwrap();
        }
        k.create(
            "/apis/policy/v1/namespaces/default/poddisruptionbudgets",
            &json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                "metadata": {"name": "web"},
                "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}}}),
        )
        .await
        .unwrap();
        let pdb = k
            .get("/apis/policy/v1/namespaces/default/poddisruptionbudgets/web")
            .await
            .unwrap();
        assert_eq!(pdb["status"]["disruptionsAllowed"], 0, "{pdb:#}");
    });

    // worker-1 goes: the budget blocks; the run fails and says what blocked.
    set_nodes(&r, a, b, &["cp-1", "worker-2"]);
    let plan = r.plan_text(&[]);
    assert!(
        plan.contains("worker \"worker-1\" leaves the cluster first"),
        "{plan}"
    );
    assert!(!plan.contains("leave etcd"), "{plan}");
    let out = r.cli(&[
        "up",
        "--simulate",
        "--yes",
        "-o",
        "json",
        "--talos-timeout",
        "3",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let up: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let steps = up["steps"].as_array().unwrap();
    let step = |id: &str| steps.iter().find(|s| s["id"] == id).unwrap().clone();
    let msg = step("leave:311")["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(msg.contains("default/web-1"), "{msg}");
    assert!(
        msg.contains("The disruption budget web needs 2 healthy pods and has 2 currently"),
        "{msg}"
    );
    assert_eq!(step("delete:311")["outcome"], "skipped", "{up:#}");
    let k = kube_nodes(&r);
    assert_eq!(k["worker-1"], (true, true), "cordoned, still there: {k:?}");
    r.with_lab(async |s| {
        assert!(s.sim.as_ref().unwrap().talos.node("pve", 311).is_some());
    });

    // The budget relaxed: the eviction goes through, the node leaves, the VM goes.
    with_kube(&r, async |k| {
        k.merge_patch(
            "/apis/policy/v1/namespaces/default/poddisruptionbudgets/web",
            &json!({"spec": {"minAvailable": 1}}),
        )
        .await
        .unwrap();
    });
    r.up_ok(&[]);
    let k = kube_nodes(&r);
    assert_eq!(
        k.keys().cloned().collect::<Vec<_>>(),
        sorted(&["cp-1", "worker-2"])
    );
    let pods = with_kube(&r, async |k| {
        k.get("/api/v1/namespaces/default/pods").await.unwrap()
    });
    let names: Vec<&str> = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web-2"]);
    r.with_lab(async |s| {
        assert!(s.sim.as_ref().unwrap().talos.node("pve", 311).is_none());
    });
    let log = homelab_sim::talos::day2::read_event_log(&r.dir.path().join(".homelab/sim"));
    let at = |k: &str| {
        log.iter()
            .position(|e| e.vmid == 311 && e.kind == k)
            .unwrap_or_else(|| panic!("no {k} in {log:#?}"))
    };
    assert!(at("cordon") < at("eviction-refused:default/web-1"));
    assert!(at("eviction-refused:default/web-1") < at("evicted:default/web-1"));
    assert!(at("evicted:default/web-1") < at("reset:STATE+EPHEMERAL"));
    assert!(at("reset:STATE+EPHEMERAL") < at("node-deleted"));
    r.assert_converged(&[]);

    // `talos reset worker-2`: back to maintenance mode; `up` installs it again.
    with_kube(&r, async |k| {
        k.delete("/apis/policy/v1/namespaces/default/poddisruptionbudgets/web")
            .await
            .unwrap();
    });
    let out = r.cli(&[
        "talos",
        "reset",
        "worker-2",
        "--simulate",
        "--yes",
        "--timeout",
        "20",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("worker-2 is in maintenance mode"), "{text}");
    let plan = r.plan_text(&[]);
    assert!(plan.contains("talos_machine_config \"worker-2\""), "{plan}");
    r.up_ok(&[]);
    let k = kube_nodes(&r);
    assert_eq!(k["worker-2"], (true, false), "Ready and uncordoned: {k:?}");
    r.assert_converged(&[]);

    // The last control plane is never reset.
    let out = r.cli(&["talos", "reset", "cp-1", "--simulate", "--yes"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        flat(&out.stderr).contains("would remove the last etcd member"),
        "{}",
        flat(&out.stderr)
    );
}
