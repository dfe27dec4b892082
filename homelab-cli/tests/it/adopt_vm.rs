//! Adopting existing QEMU VMs and bringing them back from backups (issue 15): VMs made
//! through the Proxmox API (not by homelab-cli) → `import --all` → `up` writes only tags
//! and description, restarts nothing → converged; then backup run → reinstall → `up`
//! restores each VM from its newest archive (`archive=`, qemu-server's `qmrestore`).

#![allow(clippy::unwrap_used, clippy::panic)]

use proxmox_client::{ParamValue, Upid, WaitOptions};

use crate::common::{Repo, flat};

/// The services example's head (secrets, proxmox, the storages on `tank`) and nothing else.
fn bare_repo() -> Repo {
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
    let head = &text[..text.find("\nlxc:\n").unwrap() + 1];
    repo.write(&format!("{head}\n# Adopted VMs land below.\n"));
    // The storages (the pool and the backup directory on it).
    repo.up_ok(&[]);
    repo
}

/// ops@lab's key as the Proxmox GUI stores `sshkeys` (encodeURIComponent).
const SSHKEYS: &str = "ssh-ed25519%20AAAAC3NzaC1lZDI1NTE5AAAAIF7d1J6b4rDtW12s%2B0Ehn3TIoNVFHW9S5ZlHT%2BkSpf93%20ops%40lab%0A";

/// A VM: VMID, name and its create parameters.
type HandMade = (u32, &'static str, Vec<(&'static str, &'static str)>);

/// Two VMs someone set up by hand.
fn vms() -> Vec<HandMade> {
    vec![
        (
            201,
            "nas",
            vec![
                ("cores", "2"),
                ("memory", "2048"),
                ("sockets", "1"),
                ("cpu", "host"),
                ("machine", "q35"),
                ("ostype", "l26"),
                ("scsihw", "virtio-scsi-single"),
                ("scsi0", "tank:8,iothread=1"),
                ("ide2", "tank:cloudinit"),
                ("net0", "virtio,bridge=vmbr0,tag=20"),
                ("ipconfig0", "ip=10.0.20.7/24,gw=10.0.20.1"),
                ("nameserver", "10.0.20.1"),
                ("searchdomain", "lab.home"),
                ("ciuser", "ops"),
                ("cipassword", "correct-horse"),
                ("sshkeys", SSHKEYS),
                ("agent", "enabled=1"),
                ("serial0", "socket"),
                ("vga", "serial0"),
                ("onboot", "1"),
                ("startup", "order=2,up=10"),
                ("tags", "nas;prod"),
                ("description", "File server\n"),
            ],
        ),
        (
            202,
            "runner",
            vec![
                ("memory", "1024"),
                ("scsi0", "local-lvm:4"),
                ("net0", "e1000,bridge=vmbr0,firewall=1"),
                ("boot", "order=scsi0;net0"),
            ],
        ),
    ]
}

fn populate(repo: &Repo) {
    repo.with_lab(async |s| {
        let wait = WaitOptions::default();
        for (vmid, name, extra) in vms() {
            let mut params: Vec<(&str, ParamValue)> =
                vec![("vmid", vmid.to_string().into()), ("name", name.into())];
            for (k, v) in extra {
                params.push((k, v.into()));
            }
            let upid: Upid = s.pve.post("/nodes/pve/qemu", &params).await.unwrap();
            s.pve.wait_task(&upid, &wait).await.unwrap();
            let upid: Upid = s
                .pve
                .post(&format!("/nodes/pve/qemu/{vmid}/status/start"), &[])
                .await
                .unwrap();
            s.pve.wait_task(&upid, &wait).await.unwrap();
        }
    });
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

#[test]
fn existing_vms_are_imported_adopted_and_restored_from_backups() {
    let repo = bare_repo();
    populate(&repo);
    let before = std::fs::read_to_string(repo.config()).unwrap();

    // --dry-run: the declarations, nothing written.
    let out = repo.cli(&["import", "--simulate", "--all", "--dry-run"]);
    assert!(out.status.success(), "{}", flat(&out.stderr));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("Would add 2 guest(s)"), "{shown}");
    assert!(shown.contains("vms.machines:"), "{shown}");
    assert_eq!(std::fs::read_to_string(repo.config()).unwrap(), before);

    // import --all: mapped fields, the rest verbatim in `options`.
    let report = repo.json(&["import", "--simulate", "--all", "-o", "json"]);
    assert_eq!(
        report["imported"],
        serde_json::json!([[201, "nas"], [202, "runner"]])
    );
    let after = std::fs::read_to_string(repo.config()).unwrap();
    assert!(after.starts_with(&before), "{after}");
    for want in [
        "vms:\n  machines:\n    # imported from vm 201 on pve\n    - name: nas\n      vmid: 201\n",
        "      startup:\n        order: 2\n        up: 10\n",
        "      tags:\n      - nas\n      - prod\n",
        "      description: File server\n",
        "      adopt: true\n",
        "      cores: 2\n",
        "      memory: 2GiB\n",
        "      disk: 8GiB\n",
        "      storage: tank\n",
        "      bridge: vmbr0\n",
        "      vlan: 20\n",
        "      ip: 10.0.20.7/24\n",
        "      gateway: 10.0.20.1\n",
        "      searchdomain: lab.home\n",
        "      user: ops\n",
        "      - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF7d1J6b4rDtW12s+0Ehn3TIoNVFHW9S5ZlHT+kSpf93 ops@lab\n",
        "      onboot: true\n",
        "        agent: enabled=1\n",
        "        machine: q35\n",
        "        serial0: socket\n",
        "        vga: serial0\n",
        // A NIC the fields cannot say (another model, the firewall flag) is kept whole.
        "        net0: e1000=",
    ] {
        assert!(after.contains(want), "no {want:?} in\n{after}");
    }
    // Neither bookkeeping nor drives nor the (unreadable) password are declared.
    for absent in ["vmgenid", "meta:", "ide2", "cipassword:", "correct-horse"] {
        assert!(!after.contains(absent), "{absent} in\n{after}");
    }
    let notes = report["notes"].as_array().unwrap();
    assert!(
        notes.iter().any(|n| n
            .as_str()
            .unwrap()
            .contains("cloud-init password is hidden")),
        "{report:#}"
    );

    // The plan adopts; up writes tags and description only, restarts nothing.
    let plan = repo.plan_text(&[]);
    assert!(plan.contains("# vm 201 \"nas\" will be adopted"), "{plan}");
    assert!(
        plan.contains("Plan: 2 to adopt, 0 to add, 0 to change, 0 to replace, 0 to destroy."),
        "{plan}"
    );
    // Power actions so far (qemu-server's worker types), to show up adds none.
    let power_tasks = |repo: &Repo| {
        repo.with_lab(async |s| {
            let tasks: serde_json::Value = s
                .pve
                .get("/nodes/pve/tasks", &[("limit", 500u64.into())])
                .await
                .unwrap();
            tasks
                .as_array()
                .unwrap()
                .iter()
                .filter(|t| {
                    matches!(
                        t["type"].as_str(),
                        Some("qmstart" | "qmstop" | "qmshutdown" | "qmreboot" | "qmreset")
                    )
                })
                .count()
        })
    };
    let before_up = power_tasks(&repo);
    let up = repo.up_ok(&[]);
    let steps = up["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{up:#}");
    assert!(
        steps
            .iter()
            .all(|s| s["label"].as_str().unwrap().starts_with("adopt vm ")),
        "{up:#}"
    );
    assert_eq!(up["simulated_requests"]["mutating"], 2, "{up:#}");
    assert_eq!(power_tasks(&repo), before_up, "a VM was restarted");
    repo.with_lab(async |s| {
        for (vmid, _, _) in vms() {
            let st: serde_json::Value = s
                .pve
                .get(&format!("/nodes/pve/qemu/{vmid}/status/current"), &[])
                .await
                .unwrap();
            assert_eq!(st["status"], "running", "{st:#}");
        }
        let cfg: serde_json::Value = s.pve.get("/nodes/pve/qemu/201/config", &[]).await.unwrap();
        assert!(cfg["tags"].as_str().unwrap().contains("homelab-services"));
        let d = cfg["description"].as_str().unwrap();
        assert!(d.starts_with("File server\n") && d.contains("homelab-cli:owner=services"));
    });
    repo.assert_converged(&[]);

    // A second import adds nothing; an imported VMID is refused with where it is declared.
    let out = repo.cli(&["import", "--simulate", "--all"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("Nothing to import"));
    let out = repo.cli(&["import", "--simulate", "--vmid", "201"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        flat(&out.stderr).contains("vm 201 is already declared in"),
        "{}",
        flat(&out.stderr)
    );

    // Pool membership: an unknown pool is refused; a declared one is joined, then the VM
    // moves to another, without a restart; each time the next plan is empty.
    let adopted = std::fs::read_to_string(repo.config()).unwrap();
    let nas = "    - name: nas\n      vmid: 201\n";
    repo.write(&adopted.replace(nas, &format!("{nas}      pool: nowhere\n")));
    let out = repo.cli(&["plan", "--simulate"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        flat(&out.stderr)
            .contains("vm 201 \"nas\" is to be in pool nowhere, which is neither declared"),
        "{}",
        flat(&out.stderr)
    );
    let with_pool = |pool: &str| {
        format!(
            "{}\npools:\n  - name: infra\n  - name: storage\n",
            adopted.replace(nas, &format!("{nas}      pool: {pool}\n"))
        )
    };
    let members = |repo: &Repo, pool: &str| {
        repo.with_lab(async |s| {
            let p: serde_json::Value = s
                .pve
                .get("/pools", &[("poolid", pool.into())])
                .await
                .unwrap();
            p[0]["members"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|m| m["vmid"].as_u64())
                .collect::<Vec<_>>()
        })
    };
    repo.write(&with_pool("infra"));
    let plan = repo.plan_text(&[]);
    assert!(plan.contains("+ pool = \"infra\""), "{plan}");
    assert!(plan.contains("Plan: 2 to add, 1 to change,"), "{plan}");
    repo.up_ok(&[]);
    assert_eq!(members(&repo, "infra"), vec![201]);
    repo.assert_converged(&[]);
    repo.write(&with_pool("storage"));
    let up = repo.up_ok(&[]);
    assert_eq!(up["steps"].as_array().unwrap().len(), 1, "{up:#}");
    assert_eq!(members(&repo, "infra"), Vec::<u64>::new());
    assert_eq!(members(&repo, "storage"), vec![201]);
    assert_eq!(power_tasks(&repo), before_up, "a VM was restarted");
    repo.assert_converged(&[]);

    // Back up, reinstall, up: both come back from their newest archives.
    repo.with_lab(async |s| {
        let sim = s.sim.as_ref().unwrap().lab.sim();
        let cfg: serde_json::Value = s.pve.get("/nodes/pve/qemu/201/config", &[]).await.unwrap();
        sim.write_volume_data("pve", &volid(&cfg, "scsi0"), "nas data");
    });
    let text = std::fs::read_to_string(repo.config()).unwrap();
    repo.write(&text.replace(
        "      adopt: true\n",
        "      adopt: true\n      restore: latest\n",
    ));
    repo.assert_converged(&[]);
    let run = repo.json(&[
        "backup",
        "run",
        "--simulate",
        "--storage",
        "tank-backups",
        "-o",
        "json",
    ]);
    let archives: Vec<String> = run["archives"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["volid"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(archives.len(), 2, "{run:#}");
    assert!(
        archives[0].starts_with("tank-backups:backup/vzdump-qemu-201-")
            && archives[0].ends_with(".vma.zst"),
        "{archives:?}"
    );
    let mac_before = repo.with_lab(async |s| {
        let cfg: serde_json::Value = s.pve.get("/nodes/pve/qemu/201/config", &[]).await.unwrap();
        cfg["net0"].clone()
    });
    repo.with_lab(async |s| {
        s.sim.as_ref().unwrap().lab.sim().reinstall();
    });
    let plan = repo.plan_text(&[]);
    assert_eq!(
        plan.matches("(the newest backup in tank-backups, added by this run")
            .count(),
        2,
        "{plan}"
    );
    let up = repo.up_ok(&[]);
    assert!(
        up["steps"].as_array().unwrap().iter().any(|s| s["detail"]
            .as_str()
            .unwrap_or("")
            .starts_with("restored from tank-backups:backup/vzdump-qemu-201-")),
        "{up:#}"
    );
    repo.with_lab(async |s| {
        let sim = s.sim.as_ref().unwrap().lab.sim();
        let cfg: serde_json::Value = s.pve.get("/nodes/pve/qemu/201/config", &[]).await.unwrap();
        assert_eq!(
            sim.read_volume_data("pve", &volid(&cfg, "scsi0"))
                .as_deref(),
            Some("nas data"),
            "{cfg:#}"
        );
        // The machine comes back as itself (no `unique`): same MAC; the settings the
        // archive carries and the declared ones.
        assert_eq!(cfg["net0"], mac_before);
        assert_eq!(cfg["ciuser"], "ops");
        assert_eq!(cfg["cores"].to_string().trim_matches('"'), "2", "{cfg:#}");
        assert!(cfg["tags"].as_str().unwrap().contains("homelab-services"));
        let tasks: serde_json::Value = s
            .pve
            .get("/nodes/pve/tasks", &[("limit", 500u64.into())])
            .await
            .unwrap();
        let restores = tasks
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["type"] == "qmrestore" && t["status"] == "OK")
            .count();
        assert_eq!(restores, 2, "{tasks:#}");
    });
    // The reinstall took the pools; the restored VM was put back into its pool.
    assert_eq!(members(&repo, "storage"), vec![201]);
    repo.assert_converged(&[]);

    // Gone without a backup: an adopted VM declared as it is cannot be created empty.
    let text = std::fs::read_to_string(repo.config()).unwrap();
    repo.write(&text.replace(
        "\npools:\n",
        "    - name: lost\n      vmid: 230\n      adopt: true\n      restore: latest\n\npools:\n",
    ));
    let out = repo.cli(&["plan", "--simulate"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        flat(&out.stderr).contains("vm 230 \"lost\" does not exist and cannot be created")
            && flat(&out.stderr).contains("no backup of it is in any backup storage"),
        "{}",
        flat(&out.stderr)
    );
    repo.write(&text);

    // A locked VM is not imported; nothing is written.
    repo.with_lab(async |s| {
        let wait = WaitOptions::default();
        let upid: Upid = s
            .pve
            .post(
                "/nodes/pve/qemu",
                &[
                    ("vmid", "203".into()),
                    ("name", "busy".into()),
                    ("scsi0", "local-lvm:4".into()),
                ],
            )
            .await
            .unwrap();
        s.pve.wait_task(&upid, &wait).await.unwrap();
        // A backup running on it holds `lock: backup` (qemu-server lets only root set a
        // lock through the API, so the simulated host sets it as vzdump would).
        let sim = s.sim.as_ref().unwrap().lab.sim();
        sim.state()
            .guests
            .get_mut(&203)
            .unwrap()
            .config
            .insert("lock".into(), "backup".into());
    });
    let out = repo.cli(&["import", "--simulate", "--all"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        flat(&out.stderr).contains("vm 203 \"busy\" is locked (backup): nothing was imported"),
        "{}",
        flat(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(repo.config()).unwrap(), text);
}
