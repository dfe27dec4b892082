//! LXC containers (issue 7): the services example, the planner on containers, and the
//! whole life cycle on the simulated lab.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use homelab_cli::engine::observed::{GuestConfig, Observed, ObservedGuest, ObservedNode};
use homelab_cli::engine::plan::{self, Action};
use homelab_cli::engine::render;
use homelab_cli::model::desired::{self, Desired, DesiredGuest, GuestKind};
use homelab_cli::model::secrets::SecretValues;
use homelab_cli::model::{self};

use crate::common::{NoImages, Repo, flat};

fn example_dir() -> PathBuf {
    crate::common::example_dir("services")
}

fn secrets() -> SecretValues {
    SecretValues::from_pairs(
        [
            ("proxmox.endpoint", "https://127.0.0.1:8006"),
            ("proxmox.token_id", "homelab@pve!provision"),
            (
                "proxmox.token_secret",
                "11111111-2222-4333-8444-555555555555",
            ),
            ("network.gateway", "10.0.10.1"),
            ("proxmox.root_password", "root-secret"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string())),
    )
}

fn resolve(text: &str) -> Result<Desired, model::ConfigErrors> {
    let loaded = model::parse(Path::new("lab/homelab.yaml"), text.to_string())?;
    desired::resolve(&loaded, &secrets(), &NoImages)
}

fn example_text() -> String {
    std::fs::read_to_string(example_dir().join("homelab.yaml")).unwrap()
}

/// What pve-container reports for a container created from `d`: generated MAC and
/// `type=veth` on the NIC, allocated volumes with their size, keys it adds itself.
fn as_observed(d: &DesiredGuest, lab: &str) -> ObservedGuest {
    let mut props: BTreeMap<String, String> = d.props.clone();
    if let Some(net) = props.get_mut("net0") {
        let mut parts: Vec<String> = net.split(',').map(String::from).collect();
        parts.push("hwaddr=BC:24:11:00:00:01".into());
        parts.push("type=veth".into());
        parts.sort();
        *net = parts.join(",");
    }
    for (i, (k, disk)) in d.disks.iter().enumerate() {
        let mut v = format!("{}:vm-{}-disk-{i}", disk.storage, d.vmid);
        for (ok, ov) in &disk.options {
            v.push_str(&format!(",{ok}={ov}"));
        }
        v.push_str(&format!(",size={}G", disk.size.unwrap().gib_ceil()));
        props.insert(k.clone(), v);
    }
    props.insert("tags".into(), d.tags(lab));
    props.insert("arch".into(), "amd64".into());
    props.insert("ostype".into(), "debian".into());
    ObservedGuest {
        vmid: d.vmid,
        node: d.node.clone(),
        kind: d.kind,
        name: Some(d.name.clone()),
        status: "running".into(),
        tags: d.tags(lab).split(';').map(String::from).collect(),
        maxmem: Some(d.memory_mib() << 20),
        maxcpu: Some(d.cpus()),
        maxdisk: None,
        template: false,
        lock: None,
        config: Some(GuestConfig {
            props,
            digest: Some("abc".into()),
        }),
    }
}

fn converged(d: &Desired) -> Observed {
    let mut o = Observed {
        nodes: vec![ObservedNode {
            name: "pve".into(),
            status: "online".into(),
            maxcpu: 16,
            maxmem: 64 << 30,
        }],
        guests: d.guests.iter().map(|g| as_observed(g, &d.lab)).collect(),
        volumes: BTreeMap::new(),
        ..Observed::default()
    };
    for t in &d.templates {
        o.volumes
            .entry(t.node.clone())
            .or_default()
            .insert(t.volid());
    }
    o
}

#[test]
fn example_declares_the_service_inventory_as_containers() {
    let d = resolve(&example_text()).unwrap();
    let names: Vec<(u32, &str)> = d.guests.iter().map(|g| (g.vmid, g.name.as_str())).collect();
    for svc in [
        "cloudflared",
        "n8n",
        "postgresql",
        "minio",
        "prometheus",
        "grafana",
        "paperless-ngx",
        "mongodb",
        "gitea",
        "jenkins",
        "openwebui",
    ] {
        assert!(names.iter().any(|(_, n)| *n == svc), "{svc} missing");
    }
    assert!(names.iter().all(|(id, _)| (100..=117).contains(id)));
    assert!(d.guests.iter().all(|g| g.kind == GuestKind::Lxc));
    // One template, downloaded once for all of them.
    assert_eq!(d.templates.len(), 1);
    assert_eq!(
        d.templates[0].volid(),
        "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"
    );
    // The real inventory's VMIDs.
    let ids: Vec<u32> = d.guests.iter().map(|g| g.vmid).collect();
    assert_eq!(ids, [100, 102, 103, 105, 106, 107, 108, 111, 114, 115, 117]);
    assert!(d.restore.values().all(|r| r == "latest") && d.restore.len() == 11);
    let ow = d.guests.iter().find(|g| g.name == "openwebui").unwrap();
    assert_eq!(ow.props["dev0"], "/dev/nvidia0");
    assert_eq!(
        d.storages.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        ["tank", "tank-backups"]
    );
    assert_eq!(d.backups[0].params["storage"], "tank-backups");
    let pg = d.guests.iter().find(|g| g.name == "postgresql").unwrap();
    assert_eq!(pg.props["memory"], "2048");
    assert_eq!(pg.props["cores"], "2");
    assert_eq!(pg.props["features"], "nesting=1");
    assert_eq!(pg.props["unprivileged"], "1");
    assert_eq!(pg.props["startup"], "order=2,up=15");
    assert_eq!(
        pg.props["net0"],
        "name=eth0,bridge=vmbr0,ip=10.0.10.103/24,gw=10.0.10.1"
    );
    // The gateway came from the secrets file.
    // Only the gateway is a secret: the rest of the NIC is shown.
    assert!(pg.sensitive.contains("net0.gw") && !pg.sensitive.contains("net0"));
    assert_eq!(
        pg.redact("net0", &pg.props["net0"]),
        "name=eth0,bridge=vmbr0,ip=10.0.10.103/24,gw=(sensitive)"
    );
    assert_eq!(pg.disks["rootfs"].create_value(), "local-lvm:8");
    assert_eq!(
        pg.disks["mp0"].create_value(),
        "tank:32,backup=1,mp=/var/lib/postgresql"
    );
    assert_eq!(
        pg.create_only["ostemplate"],
        "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"
    );
    assert!(pg.create_only["ssh-public-keys"].starts_with("ssh-ed25519 "));
    assert!(pg.tags(&d.lab).split(';').any(|t| t == "database"));
    assert!(pg.tags(&d.lab).split(';').any(|t| t == "homelab-services"));
}

#[test]
fn checked_in_schema_is_current() {
    let text = std::fs::read_to_string(example_dir().join("homelab.schema.json")).unwrap();
    let on_disk: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        on_disk,
        model::config::json_schema(),
        "examples/services/homelab.schema.json is stale: regenerate it with \
         `homelab-cli schema > examples/services/homelab.schema.json`"
    );
    assert!(example_text().starts_with("# yaml-language-server: $schema=./homelab.schema.json\n"));
}

#[test]
fn fresh_lab_downloads_the_template_once_then_creates_every_container() {
    let d = resolve(&example_text()).unwrap();
    let mut o = converged(&d);
    o.guests.clear();
    o.volumes.clear();
    let p = plan::plan(&d, &o).unwrap();
    let downloads = p
        .actions
        .iter()
        .filter(|a| matches!(a, Action::DownloadTemplate { .. }))
        .count();
    assert_eq!(downloads, 1);
    assert!(matches!(p.actions[0], Action::DownloadTemplate { .. }));
    assert_eq!(p.summary.add, 1 + d.guests.len());
    let text = render::plan_text(&p, false);
    // The first container in full (the rest look alike).
    let first: String = text.split("\n\n").take(3).collect::<Vec<_>>().join("\n\n");
    insta::assert_snapshot!("services_plan_fresh_first", first);
    assert!(text.contains("+ template \"local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst\""));
    assert!(text.contains("# ct 103 \"postgresql\" will be created on pve"));
    assert!(text.contains("ssh-public-keys = \"(1 key(s))\""));
    // The secret-derived NIC is hidden.
    assert!(!text.contains("10.0.10.1,") && !text.contains("gw=10.0.10.1"));
    // With the template in storage, no download.
    let mut o2 = converged(&d);
    o2.guests.clear();
    let p2 = plan::plan(&d, &o2).unwrap();
    assert!(
        !p2.actions
            .iter()
            .any(|a| matches!(a, Action::DownloadTemplate { .. }))
    );
}

#[test]
fn converged_containers_plan_nothing_even_when_configs_are_read() {
    let d = resolve(&example_text()).unwrap();
    let o = converged(&d);
    let p = plan::plan(&d, &o).unwrap();
    assert!(p.is_empty(), "{}", render::plan_text(&p, false));
    // Without configurations, the list alone decides: nothing to read.
    let mut listed = o.clone();
    for g in &mut listed.guests {
        g.config = None;
    }
    assert!(plan::needs_config(&d, &listed).is_empty());
}

#[test]
fn container_changes_are_field_diffs_replacements_and_deletes() {
    let d = resolve(&example_text()).unwrap();
    let o = converged(&d);
    // Memory: hot-applied, no restart.
    let more = resolve(&example_text().replacen("memory: 2GiB", "memory: 3GiB", 1)).unwrap();
    let mut listed = o.clone();
    for g in &mut listed.guests {
        g.config = None;
    }
    assert_eq!(
        plan::needs_config(&more, &listed),
        vec![("pve".to_string(), GuestKind::Lxc, 103)]
    );
    let p = plan::plan(&more, &o).unwrap();
    assert_eq!(p.actions.len(), 1, "{p:?}");
    let Action::Update {
        vmid,
        changes,
        reboot,
        kind,
        ..
    } = &p.actions[0]
    else {
        panic!("{p:?}")
    };
    assert_eq!((*vmid, *kind, *reboot), (103, GuestKind::Lxc, false));
    let mem = changes.iter().find(|c| c.key == "memory").unwrap();
    assert_eq!(
        (mem.from.as_deref(), mem.to.as_deref()),
        (Some("2048"), Some("3072"))
    );
    insta::assert_snapshot!("services_plan_memory", render::plan_text(&p, false));
    // A feature flag: needs a restart.
    let feat = resolve(&example_text().replace(
        "features: { nesting: true }",
        "features: { nesting: false }",
    ))
    .unwrap();
    let p = plan::plan(&feat, &o).unwrap();
    assert_eq!(p.summary.change, d.guests.len());
    assert!(p.actions.iter().all(|a| matches!(
        a,
        Action::Update { reboot: true, changes, .. }
            if changes.iter().any(|c| c.key == "features" && c.to.is_none())
    )));
    // A bigger mount point grows in place; a smaller one cannot.
    let grow = resolve(&example_text().replace("size: 100GiB", "size: 200GiB")).unwrap();
    let p = plan::plan(&grow, &o).unwrap();
    assert!(matches!(
        &p.actions[..],
        [Action::Update { vmid: 105, changes, .. }]
            if changes.iter().any(|c| c.key == "mp0" && c.to.as_deref() == Some("size=200GiB"))
    ));
    let shrink = resolve(&example_text().replace("size: 100GiB", "size: 50GiB")).unwrap();
    let p = plan::plan(&shrink, &o).unwrap();
    assert!(matches!(
        &p.actions[..],
        [Action::Replace { vmid: 105, .. }]
    ));
    // A mount point dropped from the file is detached (its volume stays as unusedN).
    let dropped = resolve(&example_text().replace(
        "      mounts:\n        - { path: /data, storage: tank, size: 100GiB }\n",
        "",
    ))
    .unwrap();
    let p = plan::plan(&dropped, &o).unwrap();
    assert!(
        matches!(
            &p.actions[..],
            [Action::Update { vmid: 105, reboot: true, changes, .. }]
                if changes.iter().any(|c| c.key == "mp0" && c.to.is_none())
        ),
        "{p:?}"
    );
    // unprivileged only changes on creation.
    let privileged = resolve(&example_text().replace(
        "    - name: openwebui\n      vmid: 117\n",
        "    - name: openwebui\n      vmid: 117\n      unprivileged: false\n",
    ))
    .unwrap();
    // A privileged container's features (even nesting) are root@pam's alone.
    let mut privileged = privileged;
    privileged.proxmox.root_password = None;
    let err = plan::plan(&privileged, &o).unwrap_err();
    assert!(
        matches!(&err, plan::PlanError::NeedsRoot { vmid: 117, keys, .. } if keys.ends_with("features=nesting=1")),
        "{err:?}"
    );
    privileged.proxmox.root_password = Some("root-secret".to_string().into());
    let p = plan::plan(&privileged, &o).unwrap();
    let [
        Action::Replace {
            vmid: 117, reasons, ..
        },
    ] = &p.actions[..]
    else {
        panic!("{p:?}")
    };
    assert!(reasons[0].contains("unprivileged"), "{reasons:?}");
    // A container removed from the file is destroyed.
    let fewer = resolve(&example_text().replace(
        "    - name: grafana\n      vmid: 107\n",
        "    - name: grafana\n      vmid: 116\n",
    ))
    .unwrap();
    let p = plan::plan(&fewer, &o).unwrap();
    assert!(p.actions.iter().any(|a| matches!(
        a,
        Action::Delete {
            vmid: 107,
            kind: GuestKind::Lxc,
            ..
        }
    )));
    assert!(
        p.actions
            .iter()
            .any(|a| matches!(a, Action::Create { vmid: 116, .. }))
    );
}

#[test]
fn bad_container_declarations_are_reported_where_they_are() {
    let text = example_text().replace("vmid: 117", "vmid: 100");
    let e = resolve(&text).unwrap_err();
    let msg = format!("{:?}", e.errors());
    assert!(
        msg.contains("VMID 100 is already used by lxc.containers[0]"),
        "{msg}"
    );
    let text = example_text().replace(
        "    template: http://download.proxmox.com/images/system/debian-12-standard_12.7-1_amd64.tar.zst\n",
        "    template: debian-12\n",
    );
    let e = resolve(&text).unwrap_err();
    assert!(
        format!("{:?}", e.errors()).contains("is neither a URL nor a template volume"),
        "{:?}",
        e.errors()
    );
    let text = example_text().replace("ip: 10.0.10.100/24", "ip: 10.0.10.100");
    let e = resolve(&text).unwrap_err();
    assert!(format!("{:?}", e.errors()).contains("is not an IPv4 address with prefix"));
    let text = example_text().replace("ip: 10.0.10.117/24", "ip: 10.0.10.100/24");
    let e = resolve(&text).unwrap_err();
    assert!(
        format!("{:?}", e.errors()).contains("this address is already given to cloudflared"),
        "{:?}",
        e.errors()
    );
    let text = example_text().replace("      - ssh-ed25519 AAAA", "      - AAAA");
    let e = resolve(&text).unwrap_err();
    assert!(
        format!("{:?}", e.errors()).contains("not an SSH public key line"),
        "{:?}",
        e.errors()
    );
    let e = resolve(&example_text().replace("- { path: /data,", "- { path: data,")).unwrap_err();
    assert!(format!("{:?}", e.errors()).contains("is not an absolute path"));
}

// ---------------------------------------------------------------------------------------
// End to end on the simulated lab.

fn repo() -> Repo {
    Repo::copy(
        "services",
        &[
            "homelab.yaml",
            "homelab.schema.json",
            "demo-age-key.txt",
            ".sops.yaml",
            "secrets.enc.yaml",
        ],
    )
}

#[test]
fn services_lifecycle_on_the_simulated_lab() {
    let repo = repo();
    // up: one template download, eleven containers, the nightly backup job.
    let up = repo.json(&["up", "--simulate", "--yes", "-o", "json"]);
    let steps = up["steps"].as_array().unwrap();
    // ... and the backup storage on the pool.
    assert_eq!(steps.len(), 14, "{up:#}");
    assert_eq!(up["simulated_requests"]["schema_rejected"], 0, "{up:#}");
    assert!(steps.iter().all(|s| s["outcome"] == "done"), "{up:#}");
    assert_eq!(
        steps
            .iter()
            .filter(|s| s["id"].as_str().unwrap().starts_with("tmpl:"))
            .count(),
        1
    );

    // Re-run: nothing to do, and not a single mutating request.
    let again = repo.json(&["up", "--simulate", "-o", "json"]);
    assert_eq!(again["plan"]["actions"], serde_json::json!([]), "{again:#}");
    assert_eq!(again["simulated_requests"]["mutating"], 0, "{again:#}");
    // Constant: the resource list, the template storage listing, storage.cfg and the
    // backup-job list, no per-guest reads.
    assert_eq!(again["simulated_requests"]["total"], 4, "{again:#}");
    let out = repo.cli(&["plan", "--simulate", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0));
    let status = repo.json(&["status", "--simulate", "-o", "json"]);
    let rows = status["guests"].as_array().unwrap();
    assert_eq!(rows.len(), 11, "{status:#}");
    assert!(
        rows.iter()
            .all(|g| g["kind"] == "ct" && g["status"] == "running" && g["declared"] == true),
        "{status:#}"
    );
    let text = String::from_utf8(repo.cli(&["status", "--simulate"]).stdout).unwrap();
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == [
                    "117",
                    "openwebui",
                    "pve",
                    "ct",
                    "running",
                    "10.0.10.117",
                    "-",
                    "-"
                ]),
        "{text}"
    );

    // Every container's configuration, as Proxmox reports it, matches the declaration
    // (not just the spec-hash tags the no-op plan relies on).
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let session = homelab_cli::session::Session::open(
            &repo.config(),
            &homelab_cli::session::SimArgs {
                simulate: true,
                sim_latency_ms: None,
            },
        )
        .await
        .unwrap();
        let mut observed = homelab_cli::engine::observe::observe(&session.pve, &session.desired)
            .await
            .unwrap();
        let all = observed
            .guests
            .iter()
            .map(|g| (g.node.clone(), g.kind, g.vmid))
            .collect();
        homelab_cli::engine::observe::read_configs(&session.pve, &mut observed, all)
            .await
            .unwrap();
        assert_eq!(observed.guests.len(), 11);
        let p = plan::plan(&session.desired, &observed).unwrap();
        assert!(p.is_empty(), "{}", render::plan_text(&p, false));
        let pg = observed.guest(103).unwrap();
        let cfg = &pg.config.as_ref().unwrap().props;
        assert!(cfg["mp0"].contains("mp=/var/lib/postgresql"), "{cfg:?}");
        // The data volume is a dataset on the ZFS pool.
        assert!(cfg["mp0"].starts_with("tank:subvol-103-disk-"), "{cfg:?}");
        assert_eq!(pg.kind, GuestKind::Lxc);
        assert_eq!(pg.status, "running");
        session.close().await;
    });

    // Change a container's memory: the plan shows it, up applies it, then converged.
    let text = std::fs::read_to_string(repo.config()).unwrap();
    std::fs::write(
        repo.config(),
        text.replacen("memory: 2GiB", "memory: 3GiB", 1),
    )
    .unwrap();
    let out = repo.cli(&["plan", "--simulate", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(2));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("# ct 103 \"postgresql\" will be updated in place"),
        "{shown}"
    );
    assert!(shown.contains("~ memory = 2048 -> 3072"), "{shown}");
    assert!(shown.contains("Plan: 0 to add, 1 to change, 0 to replace, 0 to destroy."));
    let up = repo.json(&["up", "--simulate", "-o", "json"]);
    assert_eq!(up["steps"].as_array().unwrap().len(), 1, "{up:#}");
    assert_eq!(up["steps"][0]["outcome"], "done", "{up:#}");
    let out = repo.cli(&["plan", "--simulate", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0));

    // down destroys the containers, keeps the template; a later up does not download it again.
    let out = repo.cli(&["down", "--simulate", "--yes"]);
    assert!(out.status.success());
    let status = repo.json(&["status", "--simulate", "-o", "json"]);
    let guests = status["guests"].as_array().map_or(0, Vec::len);
    assert_eq!(guests, 0, "{status:#}");
    let out = repo.cli(&["plan", "--simulate"]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(!shown.contains("will be downloaded"), "{shown}");
    assert!(shown.contains("Plan: 12 to add"), "{shown}");
}

#[test]
fn root_only_settings_are_refused_at_plan_without_root_and_applied_with_it() {
    let repo = repo();
    // The example without root@pam's password and without openwebui's GPU.
    let text = std::fs::read_to_string(repo.config())
        .unwrap()
        .replace("  root_password: ${secret:proxmox.root_password}\n", "")
        .replace(
            "      devices:\n        - { path: /dev/nvidia0 }\n        - { path: /dev/nvidiactl }\n        - { path: /dev/nvidia-uvm }\n",
            "",
        );
    assert!(!text.contains("root_password") && !text.contains("nvidia0"));
    std::fs::write(repo.config(), &text).unwrap();
    // Only the first container asks for keyctl and a GPU's render node.
    let with_root_only = text.replacen(
        "      startup: { order: 1, up: 10 }\n",
        "      startup: { order: 1, up: 10 }\n      features: { nesting: true, keyctl: true }\n      devices:\n        - { path: /dev/dri/renderD128, gid: 44, mode: \"0660\" }\n",
        1,
    );
    assert_ne!(with_root_only, text);
    std::fs::write(repo.config(), &with_root_only).unwrap();
    // An API token cannot: refused before anything changes, with the way out.
    let out = repo.cli(&["up", "--simulate", "--yes"]);
    assert_eq!(out.status.code(), Some(1));
    let err = flat(&out.stderr);
    assert!(
        err.contains("ct 100 \"cloudflared\" needs dev0=/dev/dri/renderD128,gid=44,mode=0660, features=keyctl=1,nesting=1, which Proxmox lets only root@pam (logged in with a password) set"),
        "{err}"
    );
    assert!(err.contains("proxmox.root_password"), "{err}");
    let status = repo.json(&["status", "--simulate", "-o", "json"]);
    assert_eq!(
        status["guests"].as_array().map_or(0, Vec::len),
        0,
        "{status:#}"
    );

    // With root@pam's password (a secret), up makes them through a root login.
    let with_root = with_root_only.replacen(
        "  token_secret: ${secret:proxmox.token_secret}\n",
        "  token_secret: ${secret:proxmox.token_secret}\n  root_password: ${secret:proxmox.root_password}\n",
        1,
    );
    assert_ne!(with_root, with_root_only);
    std::fs::write(repo.config(), &with_root).unwrap();
    let up = repo.json(&["up", "--simulate", "--yes", "-o", "json"]);
    assert!(
        up["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["outcome"] == "done"),
        "{up:#}"
    );
    let out = repo.cli(&["plan", "--simulate", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0));

    // A change of the device is an update made as root; dropping it detaches it.
    std::fs::write(repo.config(), with_root.replacen("gid: 44", "gid: 993", 1)).unwrap();
    let out = repo.cli(&["plan", "--simulate"]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("~ dev0 = \"/dev/dri/renderD128,gid=44,mode=0660\" -> \"/dev/dri/renderD128,gid=993,mode=0660\""),
        "{shown}"
    );
    let up = repo.json(&["up", "--simulate", "-o", "json"]);
    assert_eq!(up["steps"][0]["outcome"], "done", "{up:#}");
    let without_dev = with_root.replacen(
        "      devices:\n        - { path: /dev/dri/renderD128, gid: 44, mode: \"0660\" }\n",
        "",
        1,
    );
    std::fs::write(repo.config(), &without_dev).unwrap();
    let out = repo.cli(&["plan", "--simulate"]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("- dev0 = "), "{shown}");
    let up = repo.json(&["up", "--simulate", "-o", "json"]);
    assert_eq!(up["steps"][0]["outcome"], "done", "{up:#}");
    let out = repo.cli(&["plan", "--simulate", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0));

    // Back on a token alone, removing keyctl again needs root: the plan says how by hand.
    std::fs::write(repo.config(), &text).unwrap();
    let out = repo.cli(&["plan", "--simulate"]);
    let err = flat(&out.stderr);
    assert!(err.contains("pct set 100 -features nesting=1"), "{err}");
}
