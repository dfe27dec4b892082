//! Cloud-init VMs (issue 7): the vm-fleet example, validation, and the life cycle on the
//! simulated lab (image import, gold template, linked and full clones, snippets over SFTP).

#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::Path;

use homelab_cli::engine::plan;
use homelab_cli::engine::render;
use homelab_cli::model::desired::{self, BootSource, Desired};
use homelab_cli::model::secrets::SecretValues;
use homelab_cli::model::{self};

use crate::common::{NoImages, Repo, example_dir as example, flat};

fn example_dir() -> std::path::PathBuf {
    example("vm-fleet")
}

/// The example's own secrets, decrypted with its demo key.
fn secrets() -> SecretValues {
    homelab_cli::workspace::Workspace::open(&example_dir().join("homelab.yaml"))
        .unwrap()
        .secrets()
        .unwrap()
}

fn resolve(text: &str) -> Result<Desired, model::ConfigErrors> {
    let loaded = model::parse(Path::new("lab/homelab.yaml"), text.to_string())?;
    desired::resolve(&loaded, &secrets(), &NoImages)
}

fn example_text() -> String {
    std::fs::read_to_string(example_dir().join("homelab.yaml")).unwrap()
}

#[test]
fn example_builds_a_fleet_from_presets_images_and_a_template() {
    let d = resolve(&example_text()).unwrap();
    let ids: Vec<(u32, &str)> = d.guests.iter().map(|g| (g.vmid, g.name.as_str())).collect();
    assert_eq!(
        ids,
        [
            (200, "web-1"),
            (201, "web-2"),
            (202, "app-1"),
            (203, "db-1"),
            (204, "builder"),
            (205, "media"),
            (9000, "debian-12-gold")
        ]
    );
    let g = |n: &str| d.guests.iter().find(|g| g.name == n).unwrap();
    // Preset values, overridden by the VM's own, falling back to vms.defaults.
    assert_eq!(g("web-1").props["cores"], "1");
    assert_eq!(g("web-1").props["memory"], "1024");
    assert_eq!(g("app-1").props["memory"], "4096");
    assert_eq!(
        g("db-1").props["memory"],
        "16384",
        "own value beats the preset"
    );
    assert_eq!(g("db-1").props["cores"], "4");
    assert_eq!(g("db-1").props["startup"], "order=1,up=30");
    // Cloud-init essentials.
    let web = g("web-1");
    assert_eq!(web.props["serial0"], "socket");
    assert_eq!(web.props["ciuser"], "homelab");
    assert_eq!(web.props["agent"], "enabled=1");
    assert_eq!(web.props["onboot"], "1");
    assert_eq!(web.props["ipconfig0"], "ip=10.0.20.11/24,gw=10.0.20.1");
    assert!(
        web.sensitive.contains("ipconfig0.gw") && !web.sensitive.contains("ipconfig0"),
        "the gateway is a secret"
    );
    assert!(!web.props.contains_key("cipassword"));
    assert!(
        web.props["sshkeys"].starts_with("ssh-ed25519%20AAAAC3NzaC1lZDI1NTE5"),
        "{}",
        web.props["sshkeys"]
    );
    assert_eq!(g("builder").props["ipconfig0"], "ip=dhcp");
    // Boot disks: imported (grown later) or cloned.
    assert_eq!(
        g("app-1").boot,
        Some(BootSource::Image {
            volid: "local:import/debian-12-genericcloud-amd64.qcow2".into()
        })
    );
    assert_eq!(
        g("app-1").disks["scsi0"].create_value(),
        "local-lvm:0,import-from=local:import/debian-12-genericcloud-amd64.qcow2,discard=on,iothread=1,ssd=1"
    );
    assert_eq!(
        web.boot,
        Some(BootSource::Clone {
            template: 9000,
            full: false
        })
    );
    assert_eq!(
        g("builder").boot,
        Some(BootSource::Clone {
            template: 9000,
            full: true
        })
    );
    assert!(g("debian-12-gold").is_template);
    // Ubuntu's .img is imported under a .qcow2 name.
    let files: Vec<&str> = d.images.iter().map(|i| i.filename.as_str()).collect();
    assert_eq!(
        files,
        [
            "debian-12-genericcloud-amd64.qcow2",
            "noble-server-cloudimg-amd64.qcow2"
        ]
    );
    assert!(d.images.iter().all(|i| i.checksum.is_some()));
    // One vendor-data snippet per VM (packages differ), named by content.
    assert_eq!(d.snippets.len(), 6);
    // The GPU goes through a mapping made from the node's device.
    assert_eq!(g("media").props["hostpci0"], "mapping=rtx3090,pcie=1");
    assert_eq!(d.pci_mappings.len(), 1);
    assert_eq!(d.pci_mappings[0].path, "0000:01:00");
    let app = d
        .snippets
        .iter()
        .find(|s| s.filename.starts_with("fleet.app-1.vendor-"))
        .unwrap();
    assert!(app.content.starts_with("#cloud-config\n"));
    let doc: serde_json::Value = serde_yaml_ng::from_str(&app.content).unwrap();
    assert_eq!(
        doc["packages"],
        serde_json::json!(["qemu-guest-agent", "docker.io"])
    );
    assert_eq!(doc["ssh_pwauth"], false);
    assert_eq!(doc["runcmd"].as_array().unwrap().len(), 2, "{doc}");
    assert_eq!(
        g("app-1").props["cicustom"],
        format!("vendor=local:snippets/{}", app.filename)
    );
}

#[test]
fn checked_in_schema_is_current() {
    let text = std::fs::read_to_string(example_dir().join("homelab.schema.json")).unwrap();
    let on_disk: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        on_disk,
        model::config::json_schema(),
        "examples/vm-fleet/homelab.schema.json is stale: regenerate it with \
         `homelab-cli schema > examples/vm-fleet/homelab.schema.json`"
    );
}

/// The error messages with their 1-based line numbers.
fn errors(text: &str) -> Vec<(usize, String)> {
    let errs = match resolve(text) {
        Ok(_) => panic!("expected errors"),
        Err(e) => e,
    };
    errs.errors()
        .iter()
        .map(|e| (e.line_col().map_or(0, |l| l.0), e.message.clone()))
        .collect()
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn bad_vm_declarations_are_reported_where_they_are() {
    let text = example_text()
        .replacen("      preset: medium\n", "      preset: huge\n", 1)
        .replacen(
            "    filename: noble-server-cloudimg-amd64.qcow2\n",
            "    filename: noble-server-cloudimg-amd64.img\n",
            1,
        )
        .replacen("      clone: debian-12-gold\n      full_clone: true\n", "      clone: debian-13-gold\n", 1)
        .replacen(
            "      - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF7d1J6b4rDtW12s+0Ehn3TIoNVFHW9S5ZlHT+kSpf93 homelab-demo",
            "      - ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ me@old",
            1,
        )
;
    let errs = errors(&text);
    let has = |line: usize, msg: &str| {
        assert!(
            errs.iter().any(|(l, m)| *l == line && m.contains(msg)),
            "no `{msg}` at line {line} in {errs:#?}"
        );
    };
    has(
        line_of(&text, "preset: huge"),
        "no preset `huge` in vms.presets",
    );
    has(
        line_of(&text, "filename: noble-server-cloudimg-amd64.img"),
        "is not a disk image file name",
    );
    has(
        line_of(&text, "clone: debian-13-gold"),
        "no template `debian-13-gold` in vms.templates",
    );
    has(
        line_of(&text, "ssh-rsa AAAA"),
        "not an ed25519 SSH public key line",
    );
    // Without vmid_base, a VM without a vmid has none.
    let text = example_text().replacen("  vmid_base: 200\n", "", 1);
    let errs = errors(&text);
    assert!(
        errs.iter()
            .any(|(l, m)| *l == line_of(&text, "- name: web-1") && m == "no VMID"),
        "{errs:#?}"
    );
}

#[test]
fn images_need_a_checksum_and_one_source() {
    let text = example_text().replacen(
        "    checksum: sha256:000000000000000000000000000000000000000000000000000000000000000d\n",
        "",
        1,
    );
    let errs = errors(&text);
    assert!(
        errs.iter().any(
            |(l, m)| *l == line_of(&text, "noble-server-cloudimg-amd64.img")
                && m.contains("a downloaded image needs a `checksum`")
        ),
        "{errs:#?}"
    );
    let text = example_text().replacen("sha512:0000", "crc32:0000", 1);
    let errs = errors(&text);
    assert!(
        errs.iter()
            .any(|(_, m)| m.contains("is not `ALGORITHM:HEX`")),
        "{errs:#?}"
    );
}

const FILES: &[&str] = &[
    "homelab.yaml",
    "homelab.schema.json",
    "demo-age-key.txt",
    ".sops.yaml",
    "secrets.enc.yaml",
    "homelab.dev.yaml",
];

fn repo() -> Repo {
    Repo::copy("vm-fleet", FILES)
}

/// Every guest's configuration as Proxmox reports it, planned against the declaration.
fn full_read_plan(repo: &Repo) -> (plan::Plan, homelab_cli::engine::observed::Observed) {
    repo.with_lab(async |session| {
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
        let p = plan::plan(&session.desired, &observed).unwrap();
        (p, observed)
    })
}

fn step_ids(up: &serde_json::Value, prefix: &str) -> usize {
    up["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["id"].as_str().unwrap().starts_with(prefix))
        .count()
}

#[test]
fn vm_fleet_lifecycle_on_the_simulated_lab() {
    let repo = repo();
    let up = repo.json(&["up", "--simulate", "--yes", "-o", "json"]);
    let steps = up["steps"].as_array().unwrap();
    assert!(steps.iter().all(|s| s["outcome"] == "done"), "{up:#}");
    assert_eq!(step_ids(&up, "image:"), 2, "{up:#}");
    assert_eq!(step_ids(&up, "snippet:"), 6, "{up:#}");
    assert_eq!(step_ids(&up, "guest:"), 7, "{up:#}");
    assert_eq!(step_ids(&up, "pcimap:"), 1, "{up:#}");
    // Every request the engine sent matched the PVE 9.1 API schema.
    assert_eq!(up["simulated_requests"]["schema_rejected"], 0, "{up:#}");

    // Re-run: nothing to do, no mutating request.
    let again = repo.json(&["up", "--simulate", "-o", "json"]);
    assert_eq!(again["plan"]["actions"], serde_json::json!([]), "{again:#}");
    assert_eq!(again["simulated_requests"]["mutating"], 0, "{again:#}");
    // A constant number of reads, not one per VM: the resource list, the import and
    // snippet storage listings, the host's PCI devices, the PCI mappings, the backup jobs.
    assert_eq!(again["simulated_requests"]["total"], 6, "{again:#}");
    repo.assert_converged(&[]);

    // What Proxmox holds matches the declaration key by key, not just the spec tags.
    let (p, observed) = full_read_plan(&repo);
    assert!(p.is_empty(), "{}", render::plan_text(&p, false));
    let cfg = |vmid: u32| observed.guest(vmid).unwrap().config.clone().unwrap().props;
    let gold = observed.guest(9000).unwrap();
    assert!(gold.template, "the gold image is a template");
    assert!(
        cfg(9000)["scsi0"].contains("base-9000-disk"),
        "{:?}",
        cfg(9000)
    );
    // Clones got their own disk, grown to the preset's size, and a fresh MAC.
    assert!(
        cfg(200)["scsi0"].starts_with("local-lvm:vm-200-disk-"),
        "{:?}",
        cfg(200)
    );
    assert!(cfg(200)["scsi0"].contains("size=10G"), "{:?}", cfg(200));
    assert!(cfg(204)["scsi0"].contains("size=32G"), "{:?}", cfg(204));
    assert_ne!(cfg(200)["net0"], cfg(201)["net0"]);
    // Imported and grown.
    assert!(cfg(202)["scsi0"].contains("size=32G"), "{:?}", cfg(202));
    assert_eq!(cfg(202)["serial0"], "socket");
    assert_eq!(observed.guest(202).unwrap().status, "running");
    assert_eq!(observed.guest(9000).unwrap().status, "stopped");
    let status = repo.json(&["status", "--simulate", "-o", "json"]);
    let gold = status["guests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["vmid"] == 9000)
        .unwrap();
    assert_eq!(gold["status"], "template", "{status:#}");

    // The snippet reached the node's snippet directory over SFTP.
    let snippets = repo
        .dir
        .path()
        .join(".homelab/sim/sftp/root/var/lib/vz/snippets");
    let names: Vec<String> = std::fs::read_dir(&snippets)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 6, "{names:?}");
    // The GPU VM runs with the mapped device; the mapping matches the host's device.
    assert_eq!(cfg(205)["hostpci0"], "mapping=rtx3090,pcie=1");
    assert_eq!(observed.guest(205).unwrap().status, "running");
    let maps = observed.pci_mappings.as_ref().unwrap();
    let rtx = maps.iter().find(|m| m.id == "rtx3090").unwrap();
    assert!(
        rtx.map.iter().any(|e| e.contains("node=pve")
            && e.contains("path=0000:01:00")
            && e.contains("id=10de:2204")),
        "{rtx:?}"
    );
    let app = names
        .iter()
        .find(|n| n.starts_with("fleet.app-1."))
        .unwrap();
    let text = std::fs::read_to_string(snippets.join(app)).unwrap();
    assert!(text.contains("docker.io"), "{text}");
    assert_eq!(cfg(202)["cicustom"], format!("vendor=local:snippets/{app}"));

    // A preset change reaches exactly the VMs using it; the disk grows.
    repo.edit(
        "small: { cores: 1, memory: 1GiB, disk: 10GiB }",
        "small: { cores: 1, memory: 2GiB, disk: 12GiB }",
    );
    let out = repo.cli(&["plan", "--simulate", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(2));
    let shown = String::from_utf8_lossy(&out.stdout);
    for vm in ["200 \"web-1\"", "201 \"web-2\""] {
        assert!(
            shown.contains(&format!(
                "# vm {vm} will be updated in place (restart required)"
            )),
            "{shown}"
        );
    }
    assert!(shown.contains("~ memory = 1024 -> 2048"), "{shown}");
    assert!(
        shown.contains("~ scsi0  = \"size=10GiB\" -> \"size=12GiB\""),
        "{shown}"
    );
    assert!(
        shown.contains("Plan: 0 to add, 2 to change, 0 to replace, 0 to destroy."),
        "{shown}"
    );

    // An address change is shown, with only the secret gateway masked.
    repo.edit("ip: 10.0.20.12/24", "ip: 10.0.20.13/24");
    let shown = repo.plan_text(&[]);
    assert!(
        shown.contains("~ ipconfig0 = \"ip=10.0.20.12/24,gw=(sensitive)\" -> \"ip=10.0.20.13/24,gw=(sensitive)\""),
        "{shown}"
    );
    assert!(
        !shown.contains("10.0.20.1\""),
        "the gateway never shows: {shown}"
    );

    // A GPU setting change is a hostpci0 change that needs a restart.
    repo.edit("primary_gpu: false", "primary_gpu: true");
    let shown = repo.plan_text(&[]);
    assert!(
        shown.contains("~ hostpci0 = \"mapping=rtx3090,pcie=1\" -> \"mapping=rtx3090,pcie=1,x-vga=1\"   # restart"),
        "{shown}"
    );
    assert!(
        !shown.contains("pci-mapping"),
        "the mapping is unchanged: {shown}"
    );

    // A package change: a new snippet, and the VM points at it.
    repo.edit(
        "packages: [qemu-guest-agent, docker.io]",
        "packages: [qemu-guest-agent, docker.io, htop]",
    );
    // A file of someone else's in the snippet directory is never ours to delete.
    std::fs::write(snippets.join("notes.yaml"), "#cloud-config\n").unwrap();
    let shown = repo.plan_text(&[]);
    assert!(
        shown.contains("+ snippet \"local:snippets/fleet.app-1.vendor-"),
        "{shown}"
    );
    // The old snippet goes once no VM uses it.
    assert!(
        shown.contains(&format!("- snippet \"local:snippets/{app}\"")),
        "{shown}"
    );
    assert!(!shown.contains("notes.yaml"), "{shown}");
    assert!(
        shown.contains("~ cicustom = \"vendor=local:snippets/fleet.app-1.vendor-"),
        "{shown}"
    );
    let up = repo.up_ok(&[]);
    assert_eq!(up["simulated_requests"]["schema_rejected"], 0, "{up:#}");
    assert!(
        !snippets.join(app).exists(),
        "the unused snippet is deleted"
    );
    assert!(snippets.join("notes.yaml").exists());
    repo.assert_converged(&[]);
    let (p, _) = full_read_plan(&repo);
    assert!(p.is_empty(), "{}", render::plan_text(&p, false));

    // down removes the clones before the template, keeps the images.
    let out = repo.cli(&["down", "--simulate", "--yes"]);
    assert!(out.status.success());
    let status = repo.json(&["status", "--simulate", "-o", "json"]);
    assert_eq!(
        status["guests"].as_array().map_or(0, Vec::len),
        0,
        "{status:#}"
    );
    let shown = repo.plan_text(&[]);
    assert!(!shown.contains("image \"local:import/"), "{shown}");
}

#[test]
fn a_missing_gpu_is_refused_before_anything_changes() {
    let repo = repo();
    repo.edit("device: \"0000:01:00\"", "device: \"0000:42:00\"");
    let out = repo.cli(&["up", "--simulate", "--yes"]);
    assert_eq!(out.status.code(), Some(1));
    let err = flat(&out.stderr);
    assert!(
        err.contains("PCI device 0000:42:00 (passed to media) does not exist on node pve; its GPUs: 0000:01:00.0 (GA102 [GeForce RTX 3090])"),
        "{err}"
    );
    // Nothing was created.
    let status = repo.json(&["status", "--simulate", "-o", "json"]);
    assert_eq!(
        status["guests"].as_array().map_or(0, Vec::len),
        0,
        "{status:#}"
    );
    // A mapping that is referenced but neither exists nor is described is refused too.
    repo.edit("device: \"0000:42:00\", ", "");
    let out = repo.cli(&["plan", "--simulate"]);
    let err = flat(&out.stderr);
    assert!(
        err.contains(
            "PCI mapping \"rtx3090\" (passed to media) does not exist or has no device on node pve"
        ),
        "{err}"
    );
}

#[test]
fn the_dev_environment_is_a_smaller_fleet_beside_prod() {
    let repo = repo();
    let d = repo.json(&["config", "resolve", "--env", "dev", "-o", "json"]);
    let guests: Vec<(u64, &str)> = d["guests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["vmid"].as_u64().unwrap(), g["name"].as_str().unwrap()))
        .collect();
    assert_eq!(
        guests,
        [
            (300, "web-1"),
            (301, "app-1"),
            (302, "db-1"),
            (303, "builder"),
            (9300, "debian-12-gold")
        ]
    );
    let db = &d["guests"][2]["props"];
    assert_eq!(db["memory"], "4096", "the dev preset, not prod's override");
    assert_eq!(db["net0"], "virtio,bridge=vmbr0,tag=30");

    // dev and prod share the simulated host without touching each other.
    let up = repo.json(&["up", "--simulate", "--env", "dev", "--yes", "-o", "json"]);
    assert!(
        up["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["outcome"] == "done"),
        "{up:#}"
    );
    assert_eq!(up["simulated_requests"]["schema_rejected"], 0, "{up:#}");
    let out = repo.cli(&["plan", "--simulate", "--env", "dev", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0));
    let shown = repo.plan_text(&[]);
    // Nothing of dev's is changed or destroyed, and the same guest names are fine.
    assert!(
        shown.contains("Plan: 14 to add, 0 to change, 0 to replace, 0 to destroy."),
        "{shown}"
    );
    assert!(
        !shown.contains("will be downloaded"),
        "images are shared: {shown}"
    );
}

#[test]
fn ssh_settings_are_checked_when_loading() {
    // A private key written into homelab.yaml is refused.
    let text = example_text().replacen(
        "    private_key: ${secret:proxmox.ssh_key}\n",
        "    private_key: \"-----BEGIN OPENSSH PRIVATE KEY-----\"\n",
        1,
    );
    let errs = errors(&text);
    assert!(
        errs.iter()
            .any(|(l, m)| *l == line_of(&text, "private_key: \"-----BEGIN")
                && m == "the SSH private key is written in plaintext"),
        "{errs:#?}"
    );
    // A host key pin that is not one, and a secret that is not a private key.
    let text = example_text()
        .replacen("host_key: SHA256:", "host_key: MD5:", 1)
        .replacen(
            "${secret:proxmox.ssh_key}",
            "${secret:proxmox.token_secret}",
            1,
        );
    let errs = errors(&text);
    assert!(
        errs.iter()
            .any(|(l, _)| *l == line_of(&text, "host_key: MD5:")),
        "{errs:#?}"
    );
    let text = example_text().replacen(
        "${secret:proxmox.ssh_key}",
        "${secret:proxmox.token_secret}",
        1,
    );
    let errs = errors(&text);
    assert!(
        errs.iter().any(|(l, m)| *l
            == line_of(&text, "private_key: ${secret:proxmox.token_secret}")
            && m == "the secret is not an unencrypted OpenSSH private key"),
        "{errs:#?}"
    );
}

#[test]
fn an_image_volume_that_is_not_in_storage_is_refused_by_the_plan() {
    let repo = repo();
    repo.edit(
        "    url: https://cloud-images.ubuntu.com/noble/current/noble-server-cloudimg-amd64.img\n",
        "    volume: local:import/noble-by-hand.qcow2\n",
    );
    repo.edit("    filename: noble-server-cloudimg-amd64.qcow2\n", "");
    repo.edit(
        "    checksum: sha256:000000000000000000000000000000000000000000000000000000000000000d\n",
        "",
    );
    let out = repo.cli(&["plan", "--simulate"]);
    assert_eq!(out.status.code(), Some(1));
    let err = flat(&out.stderr);
    assert!(
        err.contains("image ubuntu-24.04 is the volume local:import/noble-by-hand.qcow2, which is not in storage on node pve"),
        "{err}"
    );
}

#[test]
fn a_new_boot_source_rebuilds_the_vm_and_a_used_template_is_kept() {
    let repo = repo();
    repo.up_ok(&[]);
    // app-1 moves from its own imported disk to a linked clone of the gold template.
    repo.edit(
        "      preset: medium\n      ip: 10.0.20.21/24\n",
        "      preset: medium\n      clone: debian-12-gold\n      ip: 10.0.20.21/24\n",
    );
    let shown = repo.plan_text(&[]);
    assert!(
        shown.contains("# vm 202 \"app-1\" must be replaced (its disks are lost)"),
        "{shown}"
    );
    assert!(
        shown.contains("its boot disk changes from image local:import/debian-12-genericcloud-amd64.qcow2 to linked clone of 9000"),
        "{shown}"
    );
    repo.up_ok(&[]);
    repo.assert_converged(&[]);
    let (p, _) = full_read_plan(&repo);
    assert!(p.is_empty(), "{}", render::plan_text(&p, false));

    // Rebuilding the template from another image would pull the disk from under its
    // linked clones: refused before anything changes.
    repo.edit(
        "    - name: debian-12-gold\n      vmid: 9000\n      image: debian-12\n",
        "    - name: debian-12-gold\n      vmid: 9000\n      image: ubuntu-24.04\n",
    );
    let out = repo.cli(&["plan", "--simulate"]);
    assert_eq!(out.status.code(), Some(1));
    let err = flat(&out.stderr);
    assert!(
        err.contains("template 9000 \"debian-12-gold\" would be rebuilt"),
        "{err}"
    );
    assert!(
        err.contains(
            "but the linked clones 200 \"web-1\", 201 \"web-2\", 202 \"app-1\" use its disk"
        ),
        "{err}"
    );
}

#[test]
fn a_mapping_shared_by_two_vms_is_created_once() {
    let repo = repo();
    repo.edit(
        "      memory: 16GiB # overrides the preset\n",
        "      memory: 16GiB # overrides the preset\n      pci:\n        - { mapping: rtx3090, device: \"0000:01:00\" }\n",
    );
    let out = repo.cli(&["plan", "--simulate", "-o", "json"]);
    assert!(out.status.success());
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let maps: Vec<&serde_json::Value> = plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "create_pci_mapping")
        .collect();
    assert_eq!(maps.len(), 1, "{plan:#}");
    assert_eq!(
        maps[0]["entries"],
        serde_json::json!([
            "id=10de:2204,iommugroup=14,node=pve,path=0000:01:00,subsystem-id=10de:147d"
        ])
    );
}

#[test]
fn a_template_on_zfs_is_removed_only_after_its_linked_clones() {
    let repo = repo();
    repo.edit(
        "      vmid: 9000\n      image: debian-12\n",
        "      vmid: 9000\n      image: debian-12\n      storage: tank\n",
    );
    repo.up_ok(&[]);
    // Drop the template; its clones import the image instead.
    let text = std::fs::read_to_string(repo.config()).unwrap();
    let text = text
        .replace("  templates:\n    - name: debian-12-gold\n      vmid: 9000\n      image: debian-12\n      storage: tank\n", "")
        .replace("      clone: debian-12-gold\n      full_clone: true\n", "")
        .replace("      clone: debian-12-gold\n", "");
    repo.write(&text);
    let shown = repo.plan_text(&[]);
    assert!(
        shown.contains("Plan: 0 to add, 0 to change, 3 to replace, 1 to destroy."),
        "{shown}"
    );
    // Proxmox refuses to free a ZFS base volume that linked clones use: the template's
    // destroy waits for the clones to be rebuilt.
    repo.up_ok(&[]);
    repo.assert_converged(&[]);
}

/// The provisioning role `proxmox token create` grants is enough for everything the fleet
/// needs: image downloads, imports, templates, clones, resizes, PCI mappings, backups.
#[test]
fn the_provisioning_role_builds_the_whole_fleet() {
    let repo = repo();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut s = homelab_cli::session::Session::open(
            &repo.config(),
            &homelab_cli::session::SimArgs {
                simulate: true,
                sim_latency_ms: None,
            },
        )
        .await
        .unwrap();
        // From here on only the restricted token talks to Proxmox.
        crate::common::use_provisioning_token(&mut s, "fleet", true, &[]).await;
        let planned = s.plan().await.unwrap();
        let applied = homelab_cli::apply_plan(&s, &planned, 4, &homelab_cli::engine::graph::Quiet)
            .await
            .unwrap();
        let failed: Vec<String> = applied
            .finished
            .iter()
            .filter(|f| !matches!(f.outcome, homelab_cli::engine::graph::Outcome::Done { .. }))
            .map(|f| format!("{}: {:?}", f.label, f.outcome))
            .collect();
        assert!(failed.is_empty(), "{failed:#?}");
        assert_eq!(applied.finished.len(), 16);
        let again = s.plan().await.unwrap();
        assert!(
            again.plan.is_empty(),
            "{}\n{:#?}\n{:#?}",
            render::plan_text(&again.plan, false),
            again.observed.guest(9000),
            applied
                .finished
                .iter()
                .map(|f| (&f.label, &f.outcome))
                .collect::<Vec<_>>()
        );
        s.close().await;
    });
}
