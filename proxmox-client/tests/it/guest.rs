//! The guest handle (`Node::guest`) against the simulated Proxmox VE: both kinds through one
//! API, every change a `Task`, and the error predicates on the answers PVE gives.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use homelab_sim::lab::Lab;
use proxmox_client::guest::*;
use proxmox_client::property::{LxcMountPoint, QemuDisk, QemuNet};
use proxmox_client::requests::{LxcCreate, LxcOptions, QemuCreate, QemuOptions, Upload};
use proxmox_client::{Client, ContentKind, GuestKind, TaskOutcome, VolumeId, WaitOptions};

fn wait() -> WaitOptions {
    WaitOptions {
        initial_interval: Duration::from_millis(20),
        max_interval: Duration::from_millis(100),
        deadline: Duration::from_secs(30),
    }
}

/// The error of a call that must fail, in the request or in its task.
async fn failure(
    r: proxmox_client::Result<proxmox_client::Task>,
    w: &WaitOptions,
) -> proxmox_client::Error {
    match r {
        Ok(task) => task.wait(w).await.unwrap_err(),
        Err(e) => e,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_handle_for_containers_and_vms() {
    let lab = Lab::builder()
        .task_duration(Duration::from_millis(150))
        .start()
        .await
        .unwrap();
    let c = Client::builder()
        .base_url(lab.pve_url())
        .api_token(lab.token_id(), lab.token_secret())
        .pin_fingerprint(lab.fingerprint())
        .build()
        .unwrap();
    let node = c.node("pve");
    let w = wait();

    // An OS template for the container.
    let tmpl = VolumeId::new("local", ContentKind::Vztmpl, "debian-12.tar.zst");
    let bytes = vec![7u8; 4096];
    let upid = node
        .storage("local")
        .upload(
            &Upload {
                content: "vztmpl".into(),
                filename: tmpl.name.clone(),
                checksum: None,
            },
            std::io::Cursor::new(bytes),
            4096,
            None,
        )
        .await
        .unwrap();
    c.wait_task(&upid, &w).await.unwrap();

    // Container: create, config update with digest, power, template, destroy.
    let create = GuestCreate::lxc(&LxcCreate {
        vmid: 210,
        ostemplate: tmpl.to_string(),
        options: LxcOptions {
            hostname: Some("ct210".into()),
            rootfs: Some(LxcMountPoint::new_volume("local-lvm", 2)),
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();
    let polls = Arc::new(AtomicUsize::new(0));
    let p2 = polls.clone();
    let outcome = node
        .create_guest(GuestKind::Lxc, &create)
        .await
        .unwrap()
        .wait_with_progress(&w, move |p| {
            assert!(p.elapsed <= p.deadline);
            assert_eq!(p.status.status, "running");
            p2.fetch_add(1, Ordering::Relaxed);
        })
        .await
        .unwrap();
    assert_eq!(outcome, TaskOutcome::Ok);
    assert!(polls.load(Ordering::Relaxed) >= 1, "no progress callback");

    let ct = node.guest(GuestKind::Lxc, 210);
    let cfg = ct.config().await.unwrap();
    let stale = cfg.digest.clone().unwrap();
    let task = ct
        .update_config(
            &ConfigUpdate::default()
                .set("memory", 768)
                .digest(stale.clone()),
        )
        .await
        .unwrap();
    assert!(task.is_finished(), "a container update is synchronous");
    // The same digest again: the config moved on.
    let e = ct
        .update_config(&ConfigUpdate::default().set("memory", 512).digest(stale))
        .await
        .unwrap_err();
    assert!(e.is_digest_mismatch(), "{e}");
    let raw = ct.config_raw().await.unwrap();
    assert_eq!(raw["memory"], 768);

    // Stopping a stopped container.
    let e = failure(ct.stop(&StopOptions::default()).await, &w).await;
    assert!(e.is_not_running(), "{e}");
    ct.start(&StartOptions::default())
        .await
        .unwrap()
        .wait(&w)
        .await
        .unwrap();
    // PVE refuses in the request (pve-container) or in the task (qemu-server): both are
    // the same predicate.
    let e = failure(ct.start(&StartOptions::default()).await, &w).await;
    assert!(e.is_already_running(), "{e}");
    ct.shutdown(&ShutdownOptions {
        timeout: Some(10),
        force_stop: true,
    })
    .await
    .unwrap()
    .wait(&w)
    .await
    .unwrap();

    ct.template(&TemplateOptions::default())
        .await
        .unwrap()
        .wait(&w)
        .await
        .unwrap();
    ct.destroy(&DestroyOptions::everything())
        .await
        .unwrap()
        .wait(&w)
        .await
        .unwrap();
    let e = ct.config().await.unwrap_err();
    assert!(e.is_not_found(), "{e}");

    // VM: typed create, reboot needs it running, delete list, resize, clone, destroy both.
    let mut options = QemuOptions {
        name: Some("vm220".into()),
        memory: Some(1024),
        ..Default::default()
    };
    options
        .disks
        .insert("scsi0".into(), QemuDisk::new_volume("local-lvm", 2));
    options.net.insert(0, QemuNet::virtio("vmbr0"));
    node.create_guest(
        GuestKind::Qemu,
        &GuestCreate::qemu(&QemuCreate {
            vmid: 220,
            options,
            ..Default::default()
        })
        .unwrap(),
    )
    .await
    .unwrap()
    .wait(&w)
    .await
    .unwrap();
    let vm = node.guest(GuestKind::Qemu, 220);
    let e = failure(vm.reboot(&RebootOptions::default()).await, &w).await;
    assert!(e.is_not_running(), "{e}");
    vm.update_config(&ConfigUpdate::default().set("cores", 2).delete("net0"))
        .await
        .unwrap()
        .wait(&w)
        .await
        .unwrap();
    let cfg = vm.config_current().await.unwrap();
    assert_eq!(cfg.get_str("cores").as_deref(), Some("2"));
    assert!(cfg.get_str("net0").is_none());
    vm.resize(&ResizeOptions::to_gib("scsi0", 3))
        .await
        .unwrap()
        .wait(&w)
        .await
        .unwrap();
    let scsi0 = vm.config().await.unwrap().get_str("scsi0").unwrap();
    assert!(scsi0.contains("size=3G"), "{scsi0}");
    vm.clone_to(&CloneOptions {
        newid: 221,
        name: Some("vm221".into()),
        full: Some(true),
        ..Default::default()
    })
    .await
    .unwrap()
    .wait(&w)
    .await
    .unwrap();
    let copy = node.guest(GuestKind::Qemu, 221);
    assert_eq!(
        copy.config().await.unwrap().get_str("name").as_deref(),
        Some("vm221")
    );
    for g in [&copy, &vm] {
        g.destroy(&DestroyOptions::everything())
            .await
            .unwrap()
            .wait(&w)
            .await
            .unwrap();
    }
    lab.shutdown().await;
}
