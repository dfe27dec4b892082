//! Backups and restore in the simulated Proxmox VE: `/storage` entries, vzdump archives with
//! PVE's names, notes and protection, a QEMU restore with the data, and a reinstall that
//! keeps what lives on the pool.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use homelab_sim::lab::Lab;

use crate::pve::Api;

#[tokio::test]
async fn vzdump_then_restore_a_vm_across_a_reinstall() {
    let lab = Lab::builder()
        .task_duration(Duration::from_millis(20))
        .stats_interval(Duration::from_secs(3600))
        .start()
        .await
        .unwrap();
    let api = Api::token(&lab);

    // storage.cfg: a backup directory on the pool; PVE's refusals.
    let r = api
        .post(
            "/storage",
            &[("storage", "bk"), ("type", "dir"), ("content", "backup")],
        )
        .await;
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.error("path").contains("not optional"), "{r:?}");
    let r = api
        .post(
            "/storage",
            &[
                ("storage", "bk"),
                ("type", "dir"),
                ("path", "/tank/bk"),
                ("content", "backup"),
            ],
        )
        .await;
    assert_eq!(r.data()["type"], "dir");
    let r = api
        .post(
            "/storage",
            &[("storage", "bk"), ("type", "dir"), ("path", "/x")],
        )
        .await;
    assert!(r.raw.contains("storage ID 'bk' already defined"), "{r:?}");
    let r = api.put("/storage/bk", &[("content", "backup,iso")]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(api.get("/storage/bk").await.data()["content"], "backup,iso");

    // A VM with data on its disk.
    let r = api
        .post(
            "/nodes/pve/qemu",
            &[
                ("vmid", "300"),
                ("name", "vm-a"),
                ("memory", "2048"),
                ("scsi0", "tank:8"),
                ("scsi1", "tank:1,backup=0"),
                ("ide2", "tank:cloudinit"),
                ("net0", "virtio,bridge=vmbr0"),
            ],
        )
        .await;
    api.wait_ok(r).await;
    let cfg = api.get("/nodes/pve/qemu/300/config").await.data().clone();
    let (old_net, old_genid) = (cfg["net0"].clone(), cfg["vmgenid"].clone());
    let disk = cfg["scsi0"]
        .as_str()
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .to_string();
    lab.sim().write_volume_data("pve", &disk, "hello");

    let r = api
        .post(
            "/nodes/pve/vzdump",
            &[
                ("vmid", "300"),
                ("storage", "bk"),
                ("compress", "zstd"),
                ("protected", "1"),
                ("notes-template", "{{guestname}} on {{node}}"),
            ],
        )
        .await;
    let upid = r.data().as_str().unwrap().to_string();
    assert!(upid.contains(":vzdump:300:"), "{upid}");
    api.wait_ok(r).await;
    assert!(
        api.log(&upid)
            .await
            .iter()
            .any(|l| l.starts_with("INFO: creating vzdump archive '/tank/bk/dump/vzdump-qemu-300-")),
    );
    let list = api
        .get("/nodes/pve/storage/bk/content?content=backup")
        .await;
    let b = list.data()[0].clone();
    let volid = b["volid"].as_str().unwrap().to_string();
    let stamp = volid
        .strip_prefix("bk:backup/vzdump-qemu-300-")
        .and_then(|r| r.strip_suffix(".vma.zst"))
        .unwrap();
    assert_eq!(stamp.len(), 19, "{volid}");
    assert_eq!(b["notes"], "vm-a on pve");
    assert_eq!(b["protected"], 1);
    assert_eq!(b["subtype"], "qemu");
    assert_eq!(b["vmid"], 300);

    // Reinstall: guests and storage.cfg gone, the archive and the pool's volumes kept.
    lab.sim().reinstall();
    assert_eq!(
        api.get("/nodes/pve/qemu").await.data(),
        &serde_json::json!([])
    );
    assert!(api.get("/storage/bk").await.raw.contains("does not exist"));
    let r = api
        .post(
            "/storage",
            &[
                ("storage", "bk"),
                ("type", "dir"),
                ("path", "/tank/bk"),
                ("content", "backup"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = api
        .post(
            "/storage",
            &[("storage", "tank"), ("type", "zfspool"), ("pool", "tank")],
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");

    // Restore: drives cannot be passed with an archive; the archive's config and data
    // come back on new volumes.
    let r = api
        .post(
            "/nodes/pve/qemu",
            &[("vmid", "300"), ("archive", &volid), ("scsi0", "tank:8")],
        )
        .await;
    assert_eq!(r.error("scsi0"), "option conflicts with option 'archive'");
    let r = api
        .post(
            "/nodes/pve/qemu",
            &[
                ("vmid", "300"),
                ("archive", &volid),
                ("storage", "tank"),
                ("unique", "1"),
                ("name", "vm-b"),
            ],
        )
        .await;
    let upid = r.data().as_str().unwrap().to_string();
    assert!(upid.contains(":qmrestore:300:"), "{upid}");
    api.wait_ok(r).await;
    let cfg = api.get("/nodes/pve/qemu/300/config").await.data().clone();
    // The passed settings win over the archive's (qemu-server `restore_merge_config`).
    assert_eq!(cfg["name"], "vm-b");
    assert_eq!(cfg["memory"], "2048");
    assert!(cfg.get("lock").is_none(), "{cfg}");
    // `backup=0` drives are not restored; the cloud-init drive is new on `storage`;
    // `vmgenid` is renewed, and with `unique` the MAC too (`restore_update_config_line`).
    assert!(cfg.get("scsi1").is_none(), "{cfg}");
    assert_eq!(cfg["ide2"], "tank:vm-300-cloudinit,media=cdrom", "{cfg}");
    assert_ne!(cfg["vmgenid"], old_genid);
    assert_ne!(cfg["net0"], old_net);
    assert!(
        cfg["net0"].as_str().unwrap().starts_with("virtio=")
            && cfg["net0"].as_str().unwrap().ends_with(",bridge=vmbr0"),
        "{cfg}"
    );
    let disk = cfg["scsi0"]
        .as_str()
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .to_string();
    assert!(disk.starts_with("tank:vm-300-disk-"), "{cfg}");
    assert_eq!(
        lab.sim().read_volume_data("pve", &disk).as_deref(),
        Some("hello")
    );

    // An archive of another kind is refused.
    let r = api
        .post(
            "/nodes/pve/lxc",
            &[("vmid", "301"), ("ostemplate", &volid), ("restore", "1")],
        )
        .await;
    assert!(r.raw.contains("is a qemu backup, not lxc"), "{r:?}");
    lab.shutdown().await;
}
