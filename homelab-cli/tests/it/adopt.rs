//! Adopting an existing lab (issue 15): a simulated host pre-populated through the Proxmox
//! API (not by homelab-cli) with the eleven services, `import --all`, then `up` taking
//! ownership with tag/description writes only.

#![allow(clippy::unwrap_used, clippy::panic)]

use proxmox_client::ParamValue;
use proxmox_client::Upid;
use proxmox_client::WaitOptions;

use crate::common::{Repo, flat};

/// The services example without its containers and backup job: an empty lab to adopt into.
fn empty_repo() -> Repo {
    let repo = Repo::copy(
        "services",
        &[
            "homelab.yaml",
            "homelab.schema.json",
            "demo-age-key.txt",
            ".sops.yaml",
            "secrets.enc.yaml",
        ],
    );
    let text = std::fs::read_to_string(repo.config()).unwrap();
    let start = text.find("  containers:\n").unwrap();
    // Keep everything before the containers; drop the list (and the job over it).
    let end = text[start..]
        .find("\n# ")
        .map_or(text.len(), |i| start + i + 1);
    let tail = &text[end..];
    let tail = &tail[..tail.find("backups:").unwrap_or(tail.len())];
    let empty = format!(
        "{}  containers: [] # adopted services are appended here\n\n{}",
        &text[..start],
        tail.trim_end_matches('\n').to_string() + "\n"
    );
    // The OS template the services were made from: a first `up` with one container
    // downloads it, a second removes the container and keeps the template.
    repo.write(&empty.replace(
        "  containers: [] # adopted services are appended here\n",
        "  containers:\n    - { name: seed, vmid: 199 }\n",
    ));
    repo.up_ok(&[]);
    repo.write(&empty);
    repo.up_ok(&[]);
    repo
}

const TEMPLATE: &str = "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst";

/// (vmid, hostname, extra create parameters) of the eleven services, as someone set them
/// up by hand.
/// A service: VMID, hostname and the extra create parameters.
type Service = (u32, &'static str, Vec<(&'static str, String)>);

fn services() -> Vec<Service> {
    let net =
        |vmid: u32| format!("name=eth0,bridge=vmbr0,ip=10.0.10.{vmid}/24,gw=10.0.10.1,firewall=0");
    let simple_net =
        |vmid: u32| format!("name=eth0,bridge=vmbr0,ip=10.0.10.{vmid}/24,gw=10.0.10.1");
    vec![
        (
            100,
            "cloudflared",
            vec![
                ("startup", "order=1,up=10".into()),
                ("tags", "network".into()),
                ("net0", simple_net(100)),
                ("onboot", "1".into()),
            ],
        ),
        (
            102,
            "n8n",
            vec![
                ("memory", "1024".into()),
                ("startup", "order=3".into()),
                ("tags", "automation".into()),
                ("net0", simple_net(102)),
                ("onboot", "1".into()),
                ("features", "nesting=1".into()),
            ],
        ),
        (
            103,
            "postgresql",
            vec![
                ("cores", "2".into()),
                ("memory", "2048".into()),
                ("mp0", "tank:32,mp=/var/lib/postgresql,backup=1".into()),
                ("startup", "order=2,up=15".into()),
                ("tags", "database".into()),
                ("net0", simple_net(103)),
                ("onboot", "1".into()),
                ("password", "s3cret-root-pw".into()),
                (
                    "env",
                    "POSTGRES_USER=app\0POSTGRES_PASSWORD=hunter22".into(),
                ),
                ("description", "Postgres for n8n and paperless".into()),
            ],
        ),
        (
            105,
            "minio",
            vec![
                ("cores", "2".into()),
                ("memory", "2048".into()),
                ("mp0", "tank:100,mp=/data".into()),
                ("startup", "order=2".into()),
                ("tags", "storage".into()),
                ("net0", net(105)),
                ("onboot", "1".into()),
            ],
        ),
        (
            106,
            "prometheus",
            vec![
                ("memory", "1024".into()),
                ("mp0", "tank:20,mp=/var/lib/prometheus".into()),
                ("startup", "order=3".into()),
                ("tags", "monitoring".into()),
                ("net0", simple_net(106)),
                ("onboot", "1".into()),
                ("cpulimit", "1.5".into()),
            ],
        ),
        (
            107,
            "grafana",
            vec![
                ("startup", "order=4".into()),
                ("tags", "monitoring".into()),
                ("net0", simple_net(107)),
                ("onboot", "1".into()),
                ("features", "nesting=1".into()),
            ],
        ),
        (
            108,
            "paperless-ngx",
            vec![
                ("cores", "2".into()),
                ("memory", "2048".into()),
                ("mp0", "tank:32,mp=/data,backup=1".into()),
                ("startup", "order=4".into()),
                ("tags", "documents".into()),
                ("net0", simple_net(108)),
            ],
        ),
        (
            111,
            "mongodb",
            vec![
                ("cores", "2".into()),
                ("memory", "2048".into()),
                ("mp0", "tank:32,mp=/var/lib/mongodb,backup=1".into()),
                ("startup", "order=2".into()),
                ("tags", "database".into()),
                ("net0", simple_net(111)),
                ("onboot", "1".into()),
            ],
        ),
        (
            114,
            "gitea",
            vec![
                ("memory", "1024".into()),
                ("mp0", "tank:20,mp=/var/lib/gitea,backup=1".into()),
                ("startup", "order=4".into()),
                ("tags", "dev".into()),
                ("net0", simple_net(114)),
                ("onboot", "1".into()),
                ("swap", "1024".into()),
            ],
        ),
        (
            115,
            "jenkins",
            vec![
                ("cores", "2".into()),
                ("memory", "2048".into()),
                ("mp0", "tank:20,mp=/var/lib/jenkins".into()),
                ("startup", "order=5".into()),
                ("tags", "dev;ci".into()),
                ("net0", "name=eth0,bridge=vmbr0,ip=dhcp".into()),
                ("onboot", "1".into()),
            ],
        ),
        (
            117,
            "openwebui",
            vec![
                ("cores", "4".into()),
                ("memory", "4096".into()),
                ("rootfs", "local-lvm:16".into()),
                ("startup", "order=5".into()),
                ("tags", "ai".into()),
                ("net0", simple_net(117)),
                ("onboot", "1".into()),
                ("unprivileged", "0".into()),
            ],
        ),
    ]
}

/// Create and start the services through the API, as a person with a token would.
fn populate(repo: &Repo) {
    repo.with_lab(async |s| {
        let wait = WaitOptions::default();
        for (vmid, name, extra) in services() {
            let mut params: Vec<(&str, ParamValue)> = vec![
                ("vmid", vmid.to_string().into()),
                ("hostname", name.into()),
                ("ostemplate", TEMPLATE.into()),
                ("unprivileged", "1".into()),
            ];
            if !extra.iter().any(|(k, _)| *k == "rootfs") {
                params.push(("rootfs", "local-lvm:8".into()));
            }
            for (k, v) in &extra {
                if let Some(p) = params.iter_mut().find(|(pk, _)| pk == k) {
                    p.1 = v.clone().into();
                } else {
                    params.push((k, v.clone().into()));
                }
            }
            let upid: Upid = s.pve.post("/nodes/pve/lxc", &params).await.unwrap();
            s.pve.wait_task(&upid, &wait).await.unwrap();
            let upid: Upid = s
                .pve
                .post(&format!("/nodes/pve/lxc/{vmid}/status/start"), &[])
                .await
                .unwrap();
            s.pve.wait_task(&upid, &wait).await.unwrap();
        }
    });
}

#[test]
fn an_existing_lab_is_imported_and_adopted_without_restarts() {
    let repo = empty_repo();
    let before = std::fs::read_to_string(repo.config()).unwrap();
    populate(&repo);

    // Bad input first: each refused with the reason, nothing written.
    let out = repo.cli(&["import", "--simulate", "--vmid", "999"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        flat(&out.stderr).contains("there is no guest with VMID 999 on the cluster"),
        "{}",
        flat(&out.stderr)
    );
    let out = repo.cli(&["import", "--simulate"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(flat(&out.stderr).contains("say which guests to import"));
    assert_eq!(std::fs::read_to_string(repo.config()).unwrap(), before);

    // --dry-run shows the declarations and writes nothing.
    let out = repo.cli(&["import", "--simulate", "--all", "--dry-run"]);
    assert!(out.status.success(), "{}", flat(&out.stderr));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("Would add 11 guest(s)"), "{shown}");
    assert!(shown.contains("- name: postgresql"), "{shown}");
    assert_eq!(std::fs::read_to_string(repo.config()).unwrap(), before);
    let secrets_before = std::fs::read(repo.dir.path().join("secrets.enc.yaml")).unwrap();

    // import --all: the eleven appended, every existing line kept.
    let report = repo.json(&["import", "--simulate", "--all", "-o", "json"]);
    assert_eq!(
        report["imported"].as_array().unwrap().len(),
        11,
        "{report:#}"
    );
    assert_eq!(report["secrets"], serde_json::json!(["lxc.postgresql.env"]));
    let after = std::fs::read_to_string(repo.config()).unwrap();
    let head = &before[..before.find("  containers: []").unwrap()];
    assert!(after.starts_with(head), "{after}");
    assert!(
        after.contains("  containers: # adopted services are appended here\n")
            || after.contains("  containers:\n"),
        "{after}"
    );
    for (vmid, name, _) in services() {
        assert!(
            after.contains(&format!("    - name: {name}\n      vmid: {vmid}\n")),
            "{after}"
        );
    }
    // What the model has no field for is kept verbatim; the secret went to SOPS.
    assert!(
        after.contains("env: ${secret:lxc.postgresql.env}"),
        "{after}"
    );
    assert!(
        after.contains("cpulimit: '1.5'") || after.contains("cpulimit: \"1.5\""),
        "{after}"
    );
    // A NIC with settings the model has no field for (here the firewall flag) is kept
    // whole, its MAC included.
    assert!(
        after.contains("net0: bridge=vmbr0,firewall=0,gw=10.0.10.1,hwaddr="),
        "{after}"
    );
    assert!(!after.contains("hunter22"));
    let secrets_after = std::fs::read(repo.dir.path().join("secrets.enc.yaml")).unwrap();
    assert_ne!(secrets_after, secrets_before);
    assert!(!String::from_utf8_lossy(&secrets_after).contains("hunter22"));
    repo.with_lab(async |s| {
        let values = s.ws.secrets().unwrap();
        let env = values.get("lxc.postgresql.env").unwrap();
        assert_eq!(
            secrecy::ExposeSecret::expose_secret(env),
            "POSTGRES_USER=app\0POSTGRES_PASSWORD=hunter22"
        );
        // The values that were there keep theirs.
        assert!(values.get("proxmox.token_secret").is_some());
    });

    // The plan adopts: ownership only.
    let plan = repo.plan_text(&[]);
    assert!(
        plan.contains("# ct 103 \"postgresql\" will be adopted"),
        "{plan}"
    );
    assert!(
        plan.contains("Plan: 11 to adopt, 0 to add, 0 to change, 0 to replace, 0 to destroy."),
        "{plan}"
    );
    // up: one configuration write per container (tags + description), no power action.
    let up = repo.up_ok(&[]);
    let steps = up["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 11, "{up:#}");
    assert!(
        steps
            .iter()
            .all(|s| s["label"].as_str().unwrap().starts_with("adopt ct ")),
        "{up:#}"
    );
    assert_eq!(up["simulated_requests"]["mutating"], 11, "{up:#}");
    repo.with_lab(async |s| {
        for (vmid, _, _) in services() {
            let cfg: serde_json::Value = s
                .pve
                .get(&format!("/nodes/pve/lxc/{vmid}/config"), &[])
                .await
                .unwrap();
            assert!(
                cfg["tags"].as_str().unwrap().contains("homelab-services"),
                "{cfg:#}"
            );
            assert!(
                cfg["description"]
                    .as_str()
                    .unwrap()
                    .contains("homelab-cli:owner=services"),
                "{cfg:#}"
            );
            let st: serde_json::Value = s
                .pve
                .get(&format!("/nodes/pve/lxc/{vmid}/status/current"), &[])
                .await
                .unwrap();
            assert_eq!(st["status"], "running", "{st:#}");
        }
        let pg: serde_json::Value = s.pve.get("/nodes/pve/lxc/103/config", &[]).await.unwrap();
        assert!(
            pg["description"]
                .as_str()
                .unwrap()
                .starts_with("Postgres for n8n and paperless\n")
        );
        assert!(
            pg["mp0"]
                .as_str()
                .unwrap()
                .starts_with("tank:subvol-103-disk-")
        );
    });
    repo.assert_converged(&[]);

    // A second import adds nothing; importing a declared guest says so.
    let out = repo.cli(&["import", "--simulate", "--all"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("Nothing to import"));
    let out = repo.cli(&["import", "--simulate", "--vmid", "103"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        flat(&out.stderr).contains("ct 103 is already declared in"),
        "{}",
        flat(&out.stderr)
    );
    assert!(flat(&out.stderr).contains("as \"postgresql\""));
    assert_eq!(std::fs::read_to_string(repo.config()).unwrap(), after);

    rebuild_from_backups(&repo);
}

/// `(vmid, name, mount point backed up)` of the services with a data volume.
fn with_data() -> Vec<(u32, &'static str, bool)> {
    services()
        .into_iter()
        .filter_map(|(vmid, name, extra)| {
            let mp = extra.iter().find(|(k, _)| *k == "mp0")?;
            Some((vmid, name, mp.1.contains("backup=1")))
        })
        .collect()
}

fn volid(cfg: &serde_json::Value, key: &str) -> String {
    cfg[key]
        .as_str()
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .to_string()
}

/// The adopted lab backed up, the host reinstalled, `up` brings every service back from
/// its newest archive with its data.
fn rebuild_from_backups(repo: &Repo) {
    // Data in the services' volumes (the backup directory on the pool is declared under
    // `storages:` and was added by the first `up`).
    repo.with_lab(async |s| {
        let sim = s.sim.as_ref().unwrap().lab.sim();
        let cfg: serde_json::Value = s.pve.get("/storage/tank-backups", &[]).await.unwrap();
        assert_eq!(cfg["path"], "/tank/backups/lxc", "{cfg:#}");
        for (vmid, name, _) in services() {
            let cfg: serde_json::Value = s
                .pve
                .get(&format!("/nodes/pve/lxc/{vmid}/config"), &[])
                .await
                .unwrap();
            sim.write_volume_data("pve", &volid(&cfg, "rootfs"), &format!("{name} root"));
            if cfg.get("mp0").is_some() {
                sim.write_volume_data("pve", &volid(&cfg, "mp0"), &format!("{name} data"));
            }
        }
    });
    let text = std::fs::read_to_string(repo.config()).unwrap();
    repo.write(&text.replace(
        "      adopt: true\n",
        "      adopt: true\n      restore: latest\n",
    ));
    // Declaring the restore source changes nothing on a running lab.
    repo.assert_converged(&[]);

    // backup run: one archive per service, PVE's names, notes from the template.
    let run = repo.json(&[
        "backup",
        "run",
        "--simulate",
        "--storage",
        "tank-backups",
        "-o",
        "json",
    ]);
    let archives = run["archives"].as_array().unwrap();
    assert_eq!(archives.len(), 11, "{run:#}");
    let newest: Vec<String> = archives
        .iter()
        .map(|a| a["volid"].as_str().unwrap().to_string())
        .collect();
    for (a, (vmid, name, _)) in archives.iter().zip(services()) {
        let v = a["volid"].as_str().unwrap();
        let prefix = format!("tank-backups:backup/vzdump-lxc-{vmid}-");
        let stamp = v
            .strip_prefix(&prefix)
            .and_then(|r| r.strip_suffix(".tar.zst"))
            .unwrap_or_else(|| panic!("{v}"));
        assert!(
            stamp.len() == 19 && stamp.as_bytes()[4] == b'_' && stamp.as_bytes()[10] == b'-',
            "{v}"
        );
        assert_eq!(a["notes"], name, "{a:#}");
    }
    let list = repo.json(&["backup", "list", "--simulate", "-o", "json"]);
    assert_eq!(list.as_array().unwrap().len(), 11, "{list:#}");

    // Reinstall: guests, the system disk and storage.cfg are gone; the pool keeps its
    // datasets and the archives (`zpool import tank` is the manual step of
    // docs/recovery.md; `up` adds the storages back).
    repo.with_lab(async |s| {
        s.sim.as_ref().unwrap().lab.sim().reinstall();
    });
    repo.with_lab(async |s| {
        let guests: serde_json::Value = s.pve.get("/nodes/pve/lxc", &[]).await.unwrap();
        assert_eq!(guests, serde_json::json!([]));
        let storages: serde_json::Value = s.pve.get("/storage", &[]).await.unwrap();
        assert_eq!(storages.as_array().unwrap().len(), 2, "{storages:#}");
    });

    // The backup storage comes back in the same run: the plan says where the archives will
    // be taken from, and up restores all eleven.
    let plan = repo.plan_text(&[]);
    assert!(
        plan.contains("+ restore         = \"(the newest backup in tank-backups, added by this run; created empty if there is none)\""),
        "{plan}"
    );
    assert!(plan.contains("# storage \"tank\" will be added"), "{plan}");
    assert!(
        plan.contains("Plan: 14 to add, 0 to change, 0 to replace, 0 to destroy."),
        "{plan}"
    );
    let up = repo.up_ok(&[]);
    assert_eq!(up["steps"].as_array().unwrap().len(), 14, "{up:#}");
    repo.with_lab(async |s| {
        let sim = s.sim.as_ref().unwrap().lab.sim();
        for (vmid, name, _) in services() {
            let cfg: serde_json::Value = s
                .pve
                .get(&format!("/nodes/pve/lxc/{vmid}/config"), &[])
                .await
                .unwrap();
            assert_eq!(
                sim.read_volume_data("pve", &volid(&cfg, "rootfs"))
                    .as_deref(),
                Some(format!("{name} root").as_str()),
                "{cfg:#}"
            );
            assert!(cfg["tags"].as_str().unwrap().contains("homelab-services"));
            let st: serde_json::Value = s
                .pve
                .get(&format!("/nodes/pve/lxc/{vmid}/status/current"), &[])
                .await
                .unwrap();
            assert_eq!(st["status"], "running");
        }
        // Volumes in the backup come back with their data; those left out come back empty.
        for (vmid, name, backed_up) in with_data() {
            let cfg: serde_json::Value = s
                .pve
                .get(&format!("/nodes/pve/lxc/{vmid}/config"), &[])
                .await
                .unwrap();
            let data = sim.read_volume_data("pve", &volid(&cfg, "mp0"));
            if backed_up {
                assert_eq!(
                    data.as_deref(),
                    Some(format!("{name} data").as_str()),
                    "{cfg:#}"
                );
            } else {
                assert_eq!(data, None, "{cfg:#}");
            }
        }
        // What the model has no field for came back too (the secret from the SOPS file).
        let pg: serde_json::Value = s.pve.get("/nodes/pve/lxc/103/config", &[]).await.unwrap();
        assert!(
            pg["env"]
                .as_str()
                .unwrap()
                .contains("POSTGRES_PASSWORD=hunter22")
        );
        // Restored, not created: pve-container's `vzrestore` worker ran for each.
        let tasks: serde_json::Value = s
            .pve
            .get("/nodes/pve/tasks", &[("limit", 500u64.into())])
            .await
            .unwrap();
        let restores = tasks
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["type"] == "vzrestore" && t["status"] == "OK")
            .count();
        assert_eq!(restores, 11, "{tasks:#}");
    });
    repo.assert_converged(&[]);

    // With the backup storage in place, the plan names the archive a lost guest comes back
    // from: the newest of its VMID.
    repo.with_lab(async |s| {
        let wait = WaitOptions::default();
        let upid: Upid = s
            .pve
            .post("/nodes/pve/lxc/107/status/stop", &[])
            .await
            .unwrap();
        s.pve.wait_task(&upid, &wait).await.unwrap();
        let upid: Upid = s.pve.delete("/nodes/pve/lxc/107", &[]).await.unwrap();
        s.pve.wait_task(&upid, &wait).await.unwrap();
    });
    let grafana = newest.iter().find(|v| v.contains("-lxc-107-")).unwrap();
    let plan = repo.plan_text(&[]);
    assert!(
        plan.contains(&format!("+ restore         = \"{grafana}\"")),
        "{plan}"
    );
    repo.up_ok(&[]);
    repo.assert_converged(&[]);

    // A restore from a backup that is not there: refused before anything changes.
    let text = std::fs::read_to_string(repo.config()).unwrap();
    repo.write(&format!(
        "{text}    - name: extra\n      vmid: 130\n      restore: tank-backups:backup/vzdump-lxc-130-2000_01_01-00_00_00.tar.zst\n"
    ));
    let out = repo.cli(&["up", "--simulate", "--yes"]);
    assert_eq!(out.status.code(), Some(1));
    let err = flat(&out.stderr);
    assert!(
        err.contains("ct 130 \"extra\" is to be restored from")
            && err.contains("which is in no backup storage (backups of 130: none)"),
        "{err}"
    );
    let status = repo.json(&["status", "--simulate", "-o", "json"]);
    assert_eq!(status["guests"].as_array().unwrap().len(), 11, "{status:#}");
}

#[test]
fn a_locked_guest_is_not_imported() {
    let repo = empty_repo();
    repo.with_lab(async |s| {
        let wait = WaitOptions::default();
        for (vmid, name) in [(120, "busy"), (121, "idle")] {
            let upid: Upid = s
                .pve
                .post(
                    "/nodes/pve/lxc",
                    &[
                        ("vmid", vmid.to_string().into()),
                        ("hostname", name.into()),
                        ("ostemplate", TEMPLATE.into()),
                        ("rootfs", "local-lvm:8".into()),
                    ],
                )
                .await
                .unwrap();
            s.pve.wait_task(&upid, &wait).await.unwrap();
        }
        // A backup holds the lock (vzdump sets `lock: backup` for its duration).
        let _: serde_json::Value = s
            .pve
            .put("/nodes/pve/lxc/120/config", &[("lock", "backup".into())])
            .await
            .unwrap();
    });
    let before = std::fs::read_to_string(repo.config()).unwrap();
    let out = repo.cli(&["import", "--simulate", "--all"]);
    assert_eq!(out.status.code(), Some(1));
    let err = flat(&out.stderr);
    assert!(
        err.contains("ct 120 \"busy\" is locked (backup): nothing was imported"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(repo.config()).unwrap(), before);
    // The other one alone imports, and `up` adopts it; settings at Proxmox's defaults are
    // declared as they are (not started on boot).
    let out = repo.cli(&["import", "--simulate", "--name", "idle"]);
    assert!(out.status.success(), "{}", flat(&out.stderr));
    let text = std::fs::read_to_string(repo.config()).unwrap();
    assert!(
        text.contains("    - name: idle\n      vmid: 121\n"),
        "{text}"
    );
    assert!(text.contains("onboot: false"), "{text}");
    assert!(!text.contains("name: busy"), "{text}");
    repo.up_ok(&[]);
    repo.assert_converged(&[]);
}

/// docs/recovery.md's rehearsal, command by command, on a copy of the services example:
/// up, backup run, sim reinstall, plan, up, and a converged plan.
#[test]
fn recovery_steps_of_the_docs() {
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/recovery.md"),
    )
    .unwrap();
    let block = doc
        .split("Rehearse it on the simulated lab")
        .nth(1)
        .and_then(|r| r.split("```sh\n").nth(1))
        .and_then(|r| r.split("```").next())
        .unwrap();
    let steps: Vec<Vec<&str>> = block
        .lines()
        .filter_map(|l| l.split('#').next()?.trim().strip_prefix("homelab-cli "))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(steps.len(), 6, "{block}");
    let repo = Repo::copy(
        "services",
        &[
            "homelab.yaml",
            "homelab.schema.json",
            "demo-age-key.txt",
            ".sops.yaml",
            "secrets.enc.yaml",
        ],
    );
    let mut outputs = Vec::new();
    for args in &steps {
        let out = repo.cli(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "homelab-cli {args:?}: {}",
            flat(&out.stderr)
        );
        outputs.push(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    // The plan after the reinstall restores every service from the backup storage it adds.
    assert_eq!(
        outputs[3]
            .matches("(the newest backup in tank-backups, added by this run")
            .count(),
        11,
        "{}",
        outputs[3]
    );
    repo.with_lab(async |s| {
        let tasks: serde_json::Value = s
            .pve
            .get("/nodes/pve/tasks", &[("limit", 500u64.into())])
            .await
            .unwrap();
        let restored: Vec<&str> = tasks
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["type"] == "vzrestore" && t["status"] == "OK")
            .filter_map(|t| t["id"].as_str())
            .collect();
        assert_eq!(restored.len(), 11, "{tasks:#}");
    });
}
