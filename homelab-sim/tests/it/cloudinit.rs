//! The cloud-init VM path the homelab engine drives: an image downloaded with a checksum,
//! imported as the boot disk, cloud-init options, `cicustom` snippets read at start, templates
//! and linked or full clones, and the backup job shape.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use homelab_sim::lab::{Lab, LabHandle};
use serde_json::json;
use sha2::Digest;

use crate::pve::{Api, file_server};

async fn lab() -> LabHandle {
    Lab::builder()
        .task_duration(Duration::from_millis(30))
        .stats_interval(Duration::from_secs(3600))
        .start()
        .await
        .unwrap()
}

const KEY: &str = "ssh-ed25519%20AAAAC3NzaC1lZDI1NTE5AAAAIF7d1J6b4rDtW12s%2B0Ehn3TIoNVFHW9S5ZlHT%2BkSpf93%20ops%40lab";

#[tokio::test]
async fn cloud_image_vm_with_snippet_checked_at_start() {
    const IMAGE: &[u8] = &[7u8; 3 << 20];
    let lab = lab().await;
    let api = Api::token(&lab);
    let base = file_server(IMAGE).await;
    let url = format!("{base}/debian-12-genericcloud-amd64.qcow2");
    let sum = hex::encode(sha2::Sha512::digest(IMAGE));

    // A wrong checksum fails the download task with pve-common's text, leaving nothing.
    let bad = api
        .post(
            "/nodes/pve/storage/local/download-url",
            &[
                ("url", &url),
                ("filename", "debian-12.qcow2"),
                ("content", "import"),
                ("checksum", "abcd"),
                ("checksum-algorithm", "sha512"),
            ],
        )
        .await;
    let upid = bad.data().as_str().unwrap().to_string();
    let st = api.wait(&upid).await;
    assert_eq!(
        st["exitstatus"],
        format!("checksum mismatch: got '{sum}' != expect 'abcd'")
    );
    let log = api.log(&upid).await;
    assert_eq!(log[log.len() - 2], "calculating checksum...");
    let content = api
        .get("/nodes/pve/storage/local/content?content=import")
        .await;
    assert_eq!(content.data(), &json!([]));

    let ok = api
        .post(
            "/nodes/pve/storage/local/download-url",
            &[
                ("url", &url),
                ("filename", "debian-12.qcow2"),
                ("content", "import"),
                ("checksum", &sum),
                ("checksum-algorithm", "sha512"),
            ],
        )
        .await;
    let upid = ok.data().as_str().unwrap().to_string();
    api.wait_ok(ok).await;
    assert!(
        api.log(&upid)
            .await
            .contains(&"calculating checksum...OK, checksum verified".to_string())
    );

    // The imported disk takes the image's size; `:0` is the required import syntax.
    let r = api
        .post(
            "/nodes/pve/qemu",
            &[
                ("vmid", "700"),
                ("name", "web-1"),
                ("scsihw", "virtio-scsi-single"),
                (
                    "scsi0",
                    "local-lvm:0,import-from=local:import/debian-12.qcow2,discard=on",
                ),
                ("ide2", "local-lvm:cloudinit"),
                ("ciuser", "ops"),
                ("sshkeys", KEY),
                ("ipconfig0", "ip=10.0.0.50/24,gw=10.0.0.1"),
                ("serial0", "socket"),
                ("vga", "serial0"),
                ("agent", "enabled=1"),
                ("net0", "virtio,bridge=vmbr0"),
                ("cicustom", "vendor=local:snippets/web-1.yaml"),
            ],
        )
        .await;
    api.wait_ok(r).await;
    let cfg = api.get("/nodes/pve/qemu/700/config").await.data().clone();
    assert_eq!(cfg["scsi0"], "local-lvm:vm-700-disk-0,discard=on,size=3M");
    assert_eq!(cfg["sshkeys"], KEY);
    assert_eq!(cfg["serial0"], "socket");
    assert_eq!(cfg["vga"], "serial0");
    assert_eq!(cfg["ipconfig0"], "ip=10.0.0.50/24,gw=10.0.0.1");
    assert_eq!(cfg["cicustom"], "vendor=local:snippets/web-1.yaml");

    // Growing the imported disk (a task since qemu-server 8.0.2).
    api.wait_ok(
        api.put(
            "/nodes/pve/qemu/700/resize",
            &[("disk", "scsi0"), ("size", "8G")],
        )
        .await,
    )
    .await;
    let cfg = api.get("/nodes/pve/qemu/700/config").await.data().clone();
    assert_eq!(cfg["scsi0"], "local-lvm:vm-700-disk-0,discard=on,size=8G");

    // The snippet is read when the cloud-init drive is generated, i.e. at start.
    let r = api.post("/nodes/pve/qemu/700/status/start", &[]).await;
    let st = api.wait(r.data().as_str().unwrap()).await;
    assert_eq!(
        st["exitstatus"],
        "can't find file 'local:snippets/web-1.yaml'"
    );
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("var/lib/vz/snippets");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("web-1.yaml"), "#cloud-config\npackages: [nginx]\n").unwrap();
    homelab_sim::sftp::sync_snippets(root.path(), lab.sim(), "pve");
    api.wait_ok(api.post("/nodes/pve/qemu/700/status/start", &[]).await)
        .await;

    // A cicustom volume outside `snippets/` is refused at start the same way.
    api.wait_ok(api.post("/nodes/pve/qemu/700/status/stop", &[]).await)
        .await;
    api.put(
        "/nodes/pve/qemu/700/config",
        &[("cicustom", "user=local:iso/web-1.yaml")],
    )
    .await
    .data();
    let r = api.post("/nodes/pve/qemu/700/status/start", &[]).await;
    let st = api.wait(r.data().as_str().unwrap()).await;
    assert_eq!(
        st["exitstatus"],
        "local:iso/web-1.yaml is not in the snippets directory"
    );
    // Keys that do not parse are refused on update too.
    let junk = api
        .put(
            "/nodes/pve/qemu/700/config",
            &[("sshkeys", "ssh-rsa%20AAAA")],
        )
        .await;
    assert_eq!(junk.reason, "SSH public key validation error");
}

#[tokio::test]
async fn templates_clone_linked_or_full_per_storage() {
    let lab = lab().await;
    let api = Api::token(&lab);
    // As an admin would in storage.cfg: let `local` (a directory) hold disk images.
    lab.sim()
        .state()
        .storages
        .get_mut("local")
        .unwrap()
        .content
        .push("images".into());
    // A gold image on directory storage (qcow2) and one on LVM-thin.
    for (vmid, disk) in [("800", "local:4"), ("810", "local-lvm:4")] {
        api.wait_ok(
            api.post(
                "/nodes/pve/qemu",
                &[
                    ("vmid", vmid),
                    ("scsi0", disk),
                    ("ide2", "local-lvm:cloudinit"),
                    ("net0", "virtio,bridge=vmbr0"),
                ],
            )
            .await,
        )
        .await;
        api.wait_ok(
            api.post(&format!("/nodes/pve/qemu/{vmid}/template"), &[])
                .await,
        )
        .await;
    }
    let cfg = api.get("/nodes/pve/qemu/800/config").await.data().clone();
    assert!(
        cfg["scsi0"]
            .as_str()
            .unwrap()
            .starts_with("local:800/base-800-disk-0.qcow2,")
    );
    // A template cannot start; a linked clone needs a template.
    let r = api.post("/nodes/pve/qemu/800/status/start", &[]).await;
    assert_eq!(r.reason, "you can't start a VM if it's a template");

    let clone = |src: &'static str, newid: &'static str, full: &'static str| {
        let api = api.clone();
        async move {
            api.wait_ok(
                api.post(
                    &format!("/nodes/pve/qemu/{src}/clone"),
                    &[("newid", newid), ("full", full), ("name", "c")],
                )
                .await,
            )
            .await;
            api.get(&format!("/nodes/pve/qemu/{newid}/config"))
                .await
                .data()["scsi0"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    // pve-storage `clone_image`: qcow2 chains under the base, LVM-thin a plain thin LV.
    assert!(
        clone("800", "801", "0")
            .await
            .starts_with("local:800/base-800-disk-0.qcow2/801/vm-801-disk-0.qcow2,"),
    );
    assert!(
        clone("810", "811", "0")
            .await
            .starts_with("local-lvm:vm-811-disk-0,")
    );
    assert!(
        clone("810", "812", "1")
            .await
            .starts_with("local-lvm:vm-812-disk-0,")
    );
    let c = api.get("/nodes/pve/qemu/811/config").await.data().clone();
    assert!(c.get("template").is_none());
    assert!(
        c["ide2"]
            .as_str()
            .unwrap()
            .starts_with("local-lvm:vm-811-cloudinit")
    );

    // pve-storage `vdisk_free`: the qcow2 base its linked clone chains on is not removed.
    let r = api.delete("/nodes/pve/qemu/800").await;
    let st = api.wait(r.data().as_str().unwrap()).await;
    assert_eq!(
        st["exitstatus"],
        "base volume '800/base-800-disk-0.qcow2' is still in use by linked cloned"
    );
    assert_eq!(api.get("/nodes/pve/qemu/800/config").await.status, 200);
    // Once the clone is gone, the template goes too. (LVM-thin does not track parents.)
    api.wait_ok(api.delete("/nodes/pve/qemu/801").await).await;
    api.wait_ok(api.delete("/nodes/pve/qemu/800").await).await;
    api.wait_ok(api.delete("/nodes/pve/qemu/810").await).await;
}

#[tokio::test]
async fn backup_jobs_answer_property_strings_as_objects() {
    let lab = lab().await;
    let api = Api::token(&lab);
    api.post(
        "/cluster/backup",
        &[
            ("id", "nightly"),
            ("schedule", "02:00"),
            ("storage", "local"),
            ("vmid", "100,101"),
            ("mode", "snapshot"),
            ("compress", "zstd"),
            ("prune-backups", "keep-daily=7,keep-last=3"),
            ("fleecing", "1,storage=local-lvm"),
        ],
    )
    .await
    .data();
    for job in [
        api.get("/cluster/backup").await.data()[0].clone(),
        api.get("/cluster/backup/nightly").await.data().clone(),
    ] {
        assert_eq!(job["id"], "nightly");
        assert_eq!(job["type"], "vzdump");
        assert_eq!(job["enabled"], 1);
        assert_eq!(job["vmid"], "100,101");
        assert_eq!(
            job["prune-backups"],
            json!({"keep-daily": "7", "keep-last": "3"})
        );
        assert_eq!(
            job["fleecing"],
            json!({"enabled": "1", "storage": "local-lvm"})
        );
        assert!(job["next-run"].as_u64().is_some());
    }
}
