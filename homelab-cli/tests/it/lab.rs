//! Integration tests of `homelab-cli` (lab): the homelab.yaml model, its errors, the
//! planner and its rendering, and the commands end to end on the simulated lab.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use homelab_cli::engine::observed::{GuestConfig, Observed, ObservedGuest, ObservedNode};
use homelab_cli::engine::plan::{self, Action, PlanError};
use homelab_cli::engine::render;
use homelab_cli::model::desired::{self, Desired, DesiredGuest, GuestKind, ImageNaming};
use homelab_cli::model::secrets::SecretValues;
use homelab_cli::model::{self, ConfigErrors};

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
        .join("homelab.yaml")
}

/// Names images the way the factory does, but with a fixed schematic so tests do not
/// depend on the factory library's hashing.
struct FixedNaming;

impl ImageNaming for FixedNaming {
    fn schematic_id(&self, extensions: &[String], _: &[String]) -> String {
        format!("{:0>64}", extensions.len())
    }
    fn iso_url(&self, factory: &str, id: &str, version: &str) -> String {
        format!("{factory}/image/{id}/{version}/nocloud-amd64.iso")
    }
    fn installer_image(&self, factory: &str, id: &str, version: &str) -> String {
        let host = factory.trim_start_matches("https://");
        format!("{host}/nocloud-installer/{id}:{version}")
    }
}

fn single_node_secrets() -> SecretValues {
    SecretValues::from_pairs(
        [
            ("proxmox.endpoint", "https://127.0.0.1:8006"),
            ("proxmox.token_id", "homelab@pve!provision"),
            (
                "proxmox.token_secret",
                "11111111-2222-4333-8444-555555555555",
            ),
            ("network.node_ip", "127.0.10.11"),
            ("network.gateway", "127.0.10.1"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string())),
    )
}

fn render_diag(e: &dyn miette::Diagnostic) -> String {
    let mut s = String::new();
    miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
        .with_width(100)
        .render_report(&mut s, e)
        .unwrap();
    s
}

fn parse_err(text: &str) -> ConfigErrors {
    model::parse(Path::new("homelab.yaml"), text.to_string()).unwrap_err()
}

fn desired_single(text: &str) -> Desired {
    let loaded = model::parse(Path::new("lab/homelab.yaml"), text.to_string()).unwrap();
    desired::resolve(&loaded, &single_node_secrets(), &FixedNaming).unwrap()
}

fn example_text(name: &str) -> String {
    std::fs::read_to_string(example(name)).unwrap()
}

/// What Proxmox would report for a guest we created from `d` and left running.
fn as_observed(d: &DesiredGuest, lab: &str) -> ObservedGuest {
    let mut props: BTreeMap<String, String> = d.props.clone();
    if let Some(net) = props.get_mut("net0") {
        *net = net.replacen("virtio", "virtio=BC:24:11:00:00:01", 1);
    }
    for (i, (k, disk)) in d.disks.iter().enumerate() {
        let vol = if disk.cloudinit {
            format!("{}:vm-{}-cloudinit,media=cdrom", disk.storage, d.vmid)
        } else {
            let mut v = format!("{}:vm-{}-disk-{i}", disk.storage, d.vmid);
            for (ok, ov) in &disk.options {
                v.push_str(&format!(",{ok}={ov}"));
            }
            let size = disk
                .size
                .map_or("4M".to_string(), |s| format!("{}G", s.gib_ceil()));
            v.push_str(&format!(",size={size}"));
            v
        };
        props.insert(k.clone(), vol);
    }
    props.insert("tags".into(), d.tags(lab));
    props.insert(
        "vmgenid".into(),
        "c0ffee00-0000-4000-8000-000000000000".into(),
    );
    ObservedGuest {
        vmid: d.vmid,
        node: d.node.clone(),
        kind: d.kind,
        name: Some(d.name.clone()),
        status: "running".into(),
        tags: d.tags(lab).split(';').map(String::from).collect(),
        maxmem: Some(d.memory_mib() * 1024 * 1024),
        maxcpu: Some(d.cpus()),
        maxdisk: Some(100 * 1024 * 1024 * 1024),
        template: false,
        lock: None,
        config: Some(GuestConfig {
            props,
            digest: Some("0123456789abcdef0123456789abcdef01234567".into()),
        }),
    }
}

fn empty_lab() -> Observed {
    Observed {
        nodes: vec![ObservedNode {
            name: "pve".into(),
            status: "online".into(),
            maxcpu: 16,
            maxmem: 64 * 1024 * 1024 * 1024,
        }],
        guests: vec![],
        volumes: BTreeMap::new(),
        ..Observed::default()
    }
}

/// The lab after a successful `up` of `d`; configurations only where `with_config`.
fn converged(d: &Desired, with_config: bool) -> Observed {
    let mut o = empty_lab();
    for g in &d.guests {
        let mut og = as_observed(g, &d.lab);
        if !with_config {
            og.config = None;
        }
        o.guests.push(og);
    }
    for iso in &d.isos {
        o.volumes
            .entry(iso.node.clone())
            .or_default()
            .insert(iso.volid());
    }
    o
}

#[test]
fn examples_parse_and_resolve() {
    for name in ["single-node", "multi-node"] {
        let text = example_text(name);
        assert!(
            text.starts_with("# yaml-language-server: $schema="),
            "{name} must start with the schema line"
        );
        model::parse(&example(name), text).unwrap();
    }
    let d = desired_single(&example_text("single-node"));
    assert_eq!(d.guests.len(), 1);
    let g = &d.guests[0];
    assert_eq!(g.props["cores"], "4");
    assert_eq!(g.props["memory"], "16384");
    assert_eq!(g.disks["scsi0"].size.unwrap().gib_ceil(), 100);
    assert_eq!(g.props["agent"], "enabled=1");
    assert_eq!(g.props["ipconfig0"], "gw=127.0.10.1,ip=127.0.10.11/24");
    assert!(g.sensitive.contains("ipconfig0"));
    let t = d.talos.as_ref().unwrap();
    assert!(t.allow_scheduling_on_control_planes);
    assert_eq!(t.endpoint, "https://127.0.10.11:6443");
    assert_eq!(
        t.extensions,
        ["siderolabs/qemu-guest-agent", "siderolabs/nfs-mount"]
    );
    assert!(d.outputs.kubeconfig.ends_with("output/kubeconfig.enc.yaml"));
}

#[test]
fn checked_in_schema_is_current() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/single-node/homelab.schema.json");
    let on_disk: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert!(
        on_disk == model::config::json_schema(),
        "examples/single-node/homelab.schema.json is stale: regenerate it with \
         `homelab-cli schema > examples/single-node/homelab.schema.json`"
    );
}

#[test]
fn unknown_key_points_at_line_and_column() {
    let text = example_text("single-node").replace(
        "    - name: talos-cp-1\n",
        "    - name: talos-cp-1\n      memroy: 8GiB\n",
    );
    let e = parse_err(&text);
    let first = &e.errors()[0];
    let (line, col) = first.line_col().unwrap();
    let expected_line = text.lines().position(|l| l.contains("memroy")).unwrap() + 1;
    assert_eq!((line, col), (expected_line, 7));
    insta::assert_snapshot!("unknown_key", render_diag(&e));
}

#[test]
fn semantic_errors_are_all_reported_with_carets() {
    let text = "name: Bad_Name\nproxmox:\n  endpoint: https://127.0.0.1:8006\n  token_id: a@pve!b\n  token_secret: plaintext\n  node: pve\ntalos:\n  version: 1.12\n  cluster: { name: c }\n  nodes:\n    - { name: a, vmid: 42, role: controlplane, memory: 512M }\n    - { name: a, vmid: 42, role: worker }\n";
    let e = parse_err(text);
    let msgs: Vec<String> = e.errors().iter().map(|e| e.message.clone()).collect();
    assert!(
        msgs.iter().any(|m| m.contains("invalid homelab name")),
        "{msgs:?}"
    );
    assert!(msgs.iter().any(|m| m.contains("plaintext")), "{msgs:?}");
    assert!(
        msgs.iter().any(|m| m.contains("VMID 42 is outside")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.contains("already used by talos.nodes[0]")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter().any(|m| m.contains("below the 1GiB")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter().any(|m| m.contains("invalid Talos version")),
        "{msgs:?}"
    );
    insta::assert_snapshot!("semantic_errors", render_diag(&e));
}

#[test]
fn missing_secret_points_at_the_reference() {
    let text = example_text("single-node").replace("network.node_ip", "network.nodeip");
    let loaded = model::parse(Path::new("homelab.yaml"), text.clone()).unwrap();
    let e = desired::resolve(&loaded, &single_node_secrets(), &FixedNaming).unwrap_err();
    let rendered = render_diag(&e);
    assert!(
        rendered.contains("secret `network.nodeip` is not in the secrets file"),
        "{rendered}"
    );
    // The secret values never appear, only the paths.
    assert!(!rendered.contains("11111111-2222"), "{rendered}");
    let (line, _) = e.errors()[0].line_col().unwrap();
    assert_eq!(
        line,
        text.lines().position(|l| l.contains("nodeip")).unwrap() + 1
    );
}

#[test]
fn fresh_lab_plan_creates_everything() {
    let d = desired_single(&example_text("single-node"));
    let o = empty_lab();
    assert!(plan::needs_config(&d, &o).is_empty());
    let p = plan::plan(&d, &o).unwrap();
    assert!(matches!(p.actions[0], Action::DownloadIso { .. }));
    assert!(matches!(p.actions[1], Action::Create { vmid: 200, .. }));
    let text = render::plan_text(&p, false);
    assert!(
        !text.contains("127.0.10.11"),
        "secret-derived values are hidden"
    );
    insta::assert_snapshot!("plan_fresh", text);
    insta::assert_json_snapshot!("plan_fresh_json", p);
}

#[test]
fn converged_lab_needs_no_config_reads_and_no_changes() {
    let text = example_text("multi-node");
    let loaded = model::parse(&example("multi-node"), text).unwrap();
    let secrets = SecretValues::from_pairs(
        [
            ("proxmox.endpoint", "https://127.0.0.1:8006"),
            ("proxmox.token_id", "a@pve!b"),
            ("proxmox.token_secret", "x"),
            ("network.gateway", "127.0.20.1"),
            ("network.vip", "127.0.20.10"),
            ("network.cp1", "127.0.20.11"),
            ("network.cp2", "127.0.20.12"),
            ("network.cp3", "127.0.20.13"),
            ("network.w1", "127.0.20.21"),
            ("network.w2", "127.0.20.22"),
            ("network.w3", "127.0.20.23"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string())),
    );
    let d = desired::resolve(&loaded, &secrets, &FixedNaming).unwrap();
    assert_eq!(d.guests.len(), 6);
    assert_eq!(
        d.talos.as_ref().unwrap().endpoint,
        "https://127.0.20.10:6443"
    );
    assert!(!d.talos.as_ref().unwrap().allow_scheduling_on_control_planes);
    // From the resource list alone: nothing to read, nothing to do.
    let cheap = converged(&d, false);
    assert!(plan::needs_config(&d, &cheap).is_empty());
    assert!(plan::plan(&d, &cheap).unwrap().is_empty());
    // With configurations read, the diff is empty too (MACs, sizes, volumes normalised).
    let full = converged(&d, true);
    let p = plan::plan(&d, &full).unwrap();
    assert!(p.is_empty(), "{}", render::plan_text(&p, false));
    insta::assert_snapshot!("plan_noop", render::plan_text(&p, false));
}

#[test]
fn memory_change_is_an_in_place_update_needing_a_restart() {
    let before = desired_single(&example_text("single-node"));
    let after =
        desired_single(&example_text("single-node").replace("memory: 16GiB", "memory: 8GiB"));
    let mut o = converged(&before, false);
    let look = plan::needs_config(&after, &o);
    assert_eq!(look, vec![("pve".to_string(), GuestKind::Qemu, 200)]);
    // The observer then reads that guest's configuration.
    o.guests[0].config = as_observed(&before.guests[0], &before.lab).config;
    let p = plan::plan(&after, &o).unwrap();
    let Action::Update {
        changes, reboot, ..
    } = &p.actions[0]
    else {
        panic!("expected an update: {p:?}");
    };
    assert!(*reboot);
    let mem = changes.iter().find(|c| c.key == "memory").unwrap();
    assert_eq!(
        (mem.from.as_deref(), mem.to.as_deref()),
        (Some("16384"), Some("8192"))
    );
    insta::assert_snapshot!("plan_memory", render::plan_text(&p, false));
}

#[test]
fn disk_growth_is_in_place_and_shrinking_replaces() {
    let before = desired_single(&example_text("single-node"));
    let grown =
        desired_single(&example_text("single-node").replace("disk: 100GiB", "disk: 200GiB"));
    let o = converged(&before, true);
    let p = plan::plan(&grown, &o).unwrap();
    let Action::Update {
        changes, reboot, ..
    } = &p.actions[0]
    else {
        panic!("{p:?}")
    };
    assert!(!reboot);
    let shown: Vec<&str> = changes
        .iter()
        .filter(|c| c.shown)
        .map(|c| c.key.as_str())
        .collect();
    assert_eq!(shown, ["scsi0"]);
    let shrunk =
        desired_single(&example_text("single-node").replace("disk: 100GiB", "disk: 50GiB"));
    let p = plan::plan(&shrunk, &o).unwrap();
    assert!(
        matches!(&p.actions[0], Action::Replace { reasons, .. } if reasons[0].contains("cannot shrink"))
    );
    insta::assert_snapshot!("plan_replace", render::plan_text(&p, false));
}

#[test]
fn foreign_guests_are_never_touched_and_clashes_name_them() {
    let d = desired_single(&example_text("single-node"));
    let foreign = ObservedGuest {
        vmid: 200,
        node: "pve".into(),
        kind: GuestKind::Qemu,
        name: Some("grafana".into()),
        status: "running".into(),
        tags: BTreeSet::from(["monitoring".to_string()]),
        maxmem: None,
        maxcpu: None,
        maxdisk: None,
        template: false,
        lock: None,
        config: None,
    };
    let mut o = empty_lab();
    o.guests.push(foreign.clone());
    let e = plan::plan(&d, &o).unwrap_err();
    assert_eq!(
        e.to_string(),
        "VMID 200 (talos-cp-1) is already used by vm 200 \"grafana\" on node pve, which this homelab does not manage"
    );
    // Same name, other VMID.
    let mut o = empty_lab();
    o.guests.push(ObservedGuest {
        vmid: 150,
        name: Some("talos-cp-1".into()),
        ..foreign.clone()
    });
    assert!(matches!(
        plan::plan(&d, &o).unwrap_err(),
        PlanError::NameClash {
            other_vmid: 150,
            ..
        }
    ));
    // Our tag but not our marker (someone copied the tag): still foreign.
    let mut o = empty_lab();
    let mut impostor = as_observed(&d.guests[0], &d.lab);
    impostor
        .config
        .as_mut()
        .unwrap()
        .props
        .insert("description".into(), "hand-made".into());
    o.guests.push(impostor);
    assert!(matches!(
        plan::plan(&d, &o).unwrap_err(),
        PlanError::VmidClash { .. }
    ));
    // A foreign guest elsewhere is ignored; one of ours that is no longer declared goes.
    let mut o = converged(&d, false);
    o.guests.push(ObservedGuest {
        vmid: 101,
        name: Some("pihole".into()),
        ..foreign
    });
    let mut stale = as_observed(&d.guests[0], &d.lab);
    stale.vmid = 299;
    stale.name = Some("old-node".into());
    stale.config = None;
    o.guests.push(stale.clone());
    let look = plan::needs_config(&d, &o);
    assert_eq!(look, vec![("pve".to_string(), GuestKind::Qemu, 299)]);
    let idx = o.guests.iter().position(|g| g.vmid == 299).unwrap();
    let mut cfg = as_observed(&d.guests[0], &d.lab).config;
    cfg.as_mut()
        .unwrap()
        .props
        .insert("name".into(), "old-node".into());
    o.guests[idx].config = cfg;
    let p = plan::plan(&d, &o).unwrap();
    assert_eq!(p.actions.len(), 1, "{p:?}");
    assert!(matches!(&p.actions[0], Action::Delete { vmid: 299, .. }));
    insta::assert_snapshot!("plan_delete", render::plan_text(&p, false));
}

#[test]
fn unknown_proxmox_node_is_an_error() {
    let d = desired_single(&example_text("single-node").replace("  node: pve\n", "  node: pve2\n"));
    let e = plan::plan(&d, &empty_lab()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Proxmox node \"pve2\" (needed by talos-cp-1) does not exist; known nodes: pve"
    );
}

// ---------------------------------------------------------------------------------------
// End to end on the simulated lab: the commands as users run them.

pub(crate) mod e2e {
    use std::path::{Path, PathBuf};
    use std::process::{Command, Output};

    use super::example;

    /// A copy of an example in a temp dir, its node addresses moved to `127.<a>.<b>.x` so
    /// tests running at the same time do not share Talos node addresses.
    pub struct Repo {
        pub dir: tempfile::TempDir,
        pub net: String,
    }

    impl Repo {
        pub fn new(name: &str, a: u8, b: u8) -> Repo {
            let dir = tempfile::tempdir().unwrap();
            let src = example(name);
            let src = src.parent().unwrap();
            for f in [
                "homelab.yaml",
                "demo-age-key.txt",
                ".sops.yaml",
                "secrets.enc.yaml",
            ] {
                std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
            }
            let net = format!("127.{a}.{b}.");
            let key = dir.path().join("demo-age-key.txt");
            let mut ids = sops_age::Identities::new();
            ids.add_file(&key).unwrap();
            let secrets = dir.path().join("secrets.enc.yaml");
            let plain = sops_age::decrypt(
                &std::fs::read(&secrets).unwrap(),
                sops_age::Format::Yaml,
                &ids,
            )
            .unwrap();
            let text = String::from_utf8(plain.to_vec()).unwrap();
            let old_net = if name == "single-node" {
                "127.0.10."
            } else {
                "127.0.20."
            };
            let text = text.replace(old_net, &net);
            let public = std::fs::read_to_string(&key)
                .unwrap()
                .lines()
                .find_map(|l| l.strip_prefix("# public key: ").map(str::to_string))
                .unwrap();
            let opts =
                sops_age::EncryptOptions::new(vec![sops_age::Recipient::parse(&public).unwrap()]);
            let enc = sops_age::encrypt(text.as_bytes(), sops_age::Format::Yaml, &opts).unwrap();
            std::fs::write(&secrets, enc).unwrap();
            std::fs::create_dir_all(dir.path().join("home")).unwrap();
            Repo { dir, net }
        }

        pub fn path(&self, p: &str) -> PathBuf {
            self.dir.path().join(p)
        }

        pub fn cli(&self, args: &[&str]) -> Output {
            let out = Command::new(env!("CARGO_BIN_EXE_homelab-cli"))
                .args(args)
                .args(["-c", self.path("homelab.yaml").to_str().unwrap()])
                .current_dir(self.dir.path())
                .env("HOME", self.path("home"))
                .env("NO_COLOR", "1")
                .env_remove("TALOSCONFIG")
                .env_remove("KUBECONFIG")
                .env_remove("SOPS_AGE_KEY_FILE")
                .env_remove("SOPS_AGE_KEY")
                .output()
                .unwrap();
            eprintln!(
                "$ homelab-cli {}\n{}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            out
        }

        pub fn json(&self, args: &[&str]) -> serde_json::Value {
            let out = self.cli(args);
            assert!(out.status.success(), "homelab-cli {args:?} failed");
            serde_json::from_slice(&out.stdout).unwrap()
        }

        /// Decrypt with the real `sops` binary (None when it is not installed).
        pub fn sops_decrypt(&self, file: &str) -> Option<String> {
            let out = Command::new("sops")
                .args(["decrypt", file])
                .current_dir(self.dir.path())
                .env("SOPS_AGE_KEY_FILE", self.path("demo-age-key.txt"))
                .output();
            match out {
                Ok(o) => {
                    assert!(
                        o.status.success(),
                        "sops: {}",
                        String::from_utf8_lossy(&o.stderr)
                    );
                    Some(String::from_utf8(o.stdout).unwrap())
                }
                Err(_) => {
                    crate::common::skip_or_fail(
                        "the sops binary is not installed; outputs not checked with it",
                    );
                    None
                }
            }
        }
    }

    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn single_node_lifecycle_converges_and_cleans_up() {
        let repo = Repo::new("single-node", 61, 7);
        // Fresh lab → up.
        let first = repo.json(&["up", "--simulate", "-o", "json"]);
        assert_eq!(
            first["simulated_requests"]["schema_rejected"], 0,
            "{first:#}"
        );
        let steps = first["steps"].as_array().unwrap();
        assert!(steps.iter().all(|s| s["outcome"] == "done"), "{first:#}");
        for id in ["schematic", "guest:200", "talos:200", "bootstrap", "health"] {
            assert!(steps.iter().any(|s| s["id"] == id), "step {id} missing");
        }
        assert_eq!(first["outputs_written"].as_array().unwrap().len(), 2);
        assert!(repo.path("talos-secrets.enc.yaml").exists());

        // The outputs are SOPS files the real sops decrypts.
        if let Some(kube) = repo.sops_decrypt("output/kubeconfig.enc.yaml") {
            assert!(
                kube.contains(&format!("server: https://{}11:6443", repo.net)),
                "{kube}"
            );
            let talos = repo.sops_decrypt("output/talosconfig.enc.yaml").unwrap();
            assert!(talos.contains("context: homelab"), "{talos}");
        }
        let bundle_before = std::fs::read(repo.path("talos-secrets.enc.yaml")).unwrap();
        let kube_before = std::fs::read(repo.path("output/kubeconfig.enc.yaml")).unwrap();

        // up again: nothing to do, no mutating request, files untouched.
        let second = repo.json(&["up", "--simulate", "-o", "json"]);
        assert_eq!(
            second["plan"]["actions"],
            serde_json::json!([]),
            "{second:#}"
        );
        assert_eq!(second["simulated_requests"]["mutating"], 0, "{second:#}");
        assert_eq!(
            std::fs::read(repo.path("talos-secrets.enc.yaml")).unwrap(),
            bundle_before
        );
        assert_eq!(
            std::fs::read(repo.path("output/kubeconfig.enc.yaml")).unwrap(),
            kube_before
        );
        assert_eq!(
            repo.cli(&["plan", "--simulate", "--detailed-exitcode"])
                .status
                .code(),
            Some(0)
        );

        // Change the VM's memory: plan shows it (exit 2), up applies it, then nothing is left.
        let cfg = std::fs::read_to_string(repo.path("homelab.yaml")).unwrap();
        std::fs::write(
            repo.path("homelab.yaml"),
            cfg.replace("memory: 16GiB", "memory: 8GiB"),
        )
        .unwrap();
        let plan = repo.cli(&["plan", "--simulate", "--detailed-exitcode"]);
        assert_eq!(plan.status.code(), Some(2));
        let text = String::from_utf8_lossy(&plan.stdout);
        assert!(
            text.contains("~ memory = 16384 -> 8192   # restart"),
            "{text}"
        );
        assert!(
            text.contains("Plan: 0 to add, 1 to change, 0 to replace, 0 to destroy."),
            "{text}"
        );
        let plan_json = repo.json(&["plan", "--simulate", "-o", "json"]);
        assert_eq!(plan_json["actions"][0]["action"], "update");
        assert_eq!(plan_json["actions"][0]["reboot"], true);
        let third = repo.json(&["up", "--simulate", "-o", "json"]);
        assert!(
            third["steps"]
                .as_array()
                .unwrap()
                .iter()
                .all(|s| s["outcome"] == "done"),
            "{third:#}"
        );
        assert_eq!(
            repo.cli(&["plan", "--simulate", "--detailed-exitcode"])
                .status
                .code(),
            Some(0)
        );

        // config use: decrypted, 0600, into HOME (merged with what is there).
        let kube_dir = repo.path("home/.kube");
        std::fs::create_dir_all(&kube_dir).unwrap();
        std::fs::write(
            kube_dir.join("config"),
            "apiVersion: v1\nkind: Config\nclusters:\n- name: other\n  cluster: {server: https://127.0.0.1:1}\ncontexts: []\nusers: []\ncurrent-context: other\n",
        )
        .unwrap();
        let out = repo.cli(&["config", "use"]);
        assert!(out.status.success());
        let kubeconfig = kube_dir.join("config");
        assert_eq!(mode(&kubeconfig), 0o600);
        assert_eq!(mode(&repo.path("home/.talos/config")), 0o600);
        let merged = std::fs::read_to_string(&kubeconfig).unwrap();
        assert!(
            merged.contains("name: other") && merged.contains("current-context: admin@homelab"),
            "{merged}"
        );
        // A real Kubernetes client against the simulated API server (the lab resumed from
        // its state directory, as `homelab-cli sim serve` does).
        let rt = tokio::runtime::Runtime::new().unwrap();
        let lab = rt
            .block_on(homelab_cli::simlab::SimLab::start(
                &repo.path(".homelab/sim"),
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
        match Command::new("kubectl")
            .args([
                "--kubeconfig",
                kubeconfig.to_str().unwrap(),
                "get",
                "nodes",
                "-o",
                "name",
            ])
            .output()
        {
            // A real client-go: discovery (/api, /apis, /api/v1), then the node list.
            Ok(o) => {
                assert!(
                    o.status.success(),
                    "kubectl: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
                assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "node/talos-cp-1");
            }
            Err(_) => crate::common::skip_or_fail(
                "kubectl is not installed; kubeconfig not tried with it",
            ),
        }
        rt.block_on(lab.shutdown());

        // status reports the node's address as its guest agent sees it, and Talos' state.
        let status = repo.json(&["status", "--simulate", "-o", "json"]);
        let row = &status["guests"][0];
        assert_eq!(
            row["addresses"],
            serde_json::json!([format!("{}11", repo.net)]),
            "{status:#}"
        );
        assert_eq!(row["address_source"], "agent", "{status:#}");
        assert_eq!(row["talos"], "configured", "{status:#}");
        assert_eq!(status["kubernetes_ready"], true, "{status:#}");

        // down destroys our guest (asks unless --yes), status is empty afterwards.
        let refused = repo.cli(&["down", "--simulate"]);
        assert!(
            !refused.status.success(),
            "down must not proceed without --yes off a terminal"
        );
        let down = repo.json(&["down", "--simulate", "--yes", "-o", "json"]);
        assert_eq!(down["destroyed"], serde_json::json!([200]));
        let status = repo.json(&["status", "--simulate", "-o", "json"]);
        assert_eq!(status["guests"], serde_json::json!([]), "{status:#}");
        // The ISO stays cached: the next plan does not download it again.
        let plan_json = repo.json(&["plan", "--simulate", "-o", "json"]);
        assert!(
            !plan_json["actions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["action"] == "download_iso"),
            "{plan_json:#}"
        );
    }

    #[test]
    fn multi_node_with_vip_comes_up_and_converges() {
        let repo = Repo::new("multi-node", 62, 9);
        let first = repo.json(&["up", "--simulate", "-o", "json"]);
        assert_eq!(
            first["simulated_requests"]["schema_rejected"], 0,
            "{first:#}"
        );
        let steps = first["steps"].as_array().unwrap();
        assert!(steps.iter().all(|s| s["outcome"] == "done"), "{first:#}");
        // Six guests, six Talos configurations, one bootstrap.
        assert_eq!(
            steps
                .iter()
                .filter(|s| s["id"].as_str().unwrap().starts_with("guest:"))
                .count(),
            6
        );
        assert_eq!(
            steps
                .iter()
                .filter(|s| s["id"].as_str().unwrap().starts_with("talos:"))
                .count(),
            6
        );
        assert_eq!(steps.iter().filter(|s| s["id"] == "bootstrap").count(), 1);
        if let Some(kube) = repo.sops_decrypt("output/kubeconfig.enc.yaml") {
            // Clients use the VIP.
            assert!(
                kube.contains(&format!("server: https://{}10:6443", repo.net)),
                "{kube}"
            );
        }
        let again = repo.json(&["up", "--simulate", "-o", "json"]);
        assert_eq!(again["plan"]["actions"], serde_json::json!([]), "{again:#}");
        assert_eq!(again["simulated_requests"]["mutating"], 0);
        let status = repo.json(&["status", "--simulate", "-o", "json"]);
        assert_eq!(status["guests"].as_array().unwrap().len(), 6);
        assert_eq!(status["kubernetes_ready"], true);
        let down = repo.json(&["down", "--simulate", "--yes", "-o", "json"]);
        assert_eq!(down["destroyed"].as_array().unwrap().len(), 6);
    }

    fn run_in(dir: &Path, home: &Path, args: &[&str]) -> Output {
        let out = Command::new(env!("CARGO_BIN_EXE_homelab-cli"))
            .args(args)
            .current_dir(dir)
            .env("HOME", home)
            .env_remove("SOPS_AGE_KEY_FILE")
            .env_remove("SOPS_AGE_KEY")
            .env_remove("XDG_CONFIG_HOME")
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        eprintln!(
            "$ homelab-cli {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    #[test]
    fn init_scaffolds_a_repo_that_checks_and_its_hook_blocks_plaintext_secrets() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let repo = tmp.path().join("repo");
        let out = run_in(tmp.path(), &home, &["init", "repo", "--name", "mylab"]);
        assert!(out.status.success());
        for f in [
            "homelab.yaml",
            ".sops.yaml",
            "secrets.enc.yaml",
            ".gitignore",
        ] {
            assert!(repo.join(f).exists(), "{f}");
        }
        // The key lives outside the repository, private.
        let key = home.join(".config/sops/age/keys.txt");
        assert_eq!(mode(&key), 0o600);
        assert!(
            std::fs::read_to_string(&key)
                .unwrap()
                .contains("AGE-SECRET-KEY-1")
        );
        let text = std::fs::read_to_string(repo.join("homelab.yaml")).unwrap();
        assert!(text.starts_with("# yaml-language-server: $schema=./homelab.schema.json\n"));
        let schema: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(repo.join("homelab.schema.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(schema, homelab_cli::model::config::json_schema());
        // Refuses to overwrite.
        assert!(
            !run_in(tmp.path(), &home, &["init", "repo"])
                .status
                .success()
        );
        // The scaffold validates, decrypts with the new key, and has no plaintext secrets.
        let check = run_in(&repo, &home, &["check", "--offline", "-o", "json"]);
        assert!(check.status.success());
        let report: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
        assert_eq!(report["totals"]["memory_mib"], 16384);
        assert_eq!(report["plaintext_secrets"], serde_json::json!([]));
        let resolved = run_in(&repo, &home, &["config", "resolve", "-o", "json"]);
        let resolved: serde_json::Value = serde_json::from_slice(&resolved.stdout).unwrap();
        assert_eq!(resolved["guests"][0]["props"]["ipconfig0"], "(sensitive)");
        // A plaintext key in the repo makes check fail, naming file and line.
        std::fs::write(repo.join("notes.txt"), "todo\nAGE-SECRET-KEY-1QQQQQQQQQQ\n").unwrap();
        let check = run_in(&repo, &home, &["check", "--offline", "--secrets-only"]);
        assert!(!check.status.success());
        assert!(String::from_utf8_lossy(&check.stdout).contains("notes.txt:2: an age private key"));
        std::fs::remove_file(repo.join("notes.txt")).unwrap();

        // The pre-commit hook (needs git).
        let git = |args: &[&str]| {
            Command::new("git")
                .args(["-c", "user.email=t@example.invalid", "-c", "user.name=t"])
                .args(args)
                .current_dir(&repo)
                .env("HOME", &home)
                .env(
                    "PATH",
                    format!(
                        "{}:{}",
                        Path::new(env!("CARGO_BIN_EXE_homelab-cli"))
                            .parent()
                            .unwrap()
                            .display(),
                        std::env::var("PATH").unwrap_or_default()
                    ),
                )
                .output()
        };
        let Ok(init) = git(&["init", "-q"]) else {
            crate::common::skip_or_fail(
                "git is not installed; the pre-commit hook was not exercised",
            );
            return;
        };
        assert!(init.status.success());
        assert!(run_in(&repo, &home, &["hooks", "install"]).status.success());
        std::fs::write(
            repo.join("leak.yaml"),
            "token_secret: 0123abcd-0000-4000-8000-0123456789ab\n",
        )
        .unwrap();
        assert!(git(&["add", "-A"]).unwrap().status.success());
        let blocked = git(&["commit", "-q", "-m", "leak"]).unwrap();
        assert!(
            !blocked.status.success(),
            "the hook must refuse plaintext secrets"
        );
        assert!(
            git(&["rm", "-q", "--cached", "leak.yaml"])
                .unwrap()
                .status
                .success()
        );
        std::fs::remove_file(repo.join("leak.yaml")).unwrap();
        let ok = git(&["commit", "-q", "-m", "scaffold"]).unwrap();
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
    }
}
