//! The client against the simulated Proxmox VE (`homelab_sim`), over real TLS with the
//! node certificate pinned by its SHA-256 fingerprint.

use std::sync::Arc;
use std::time::Duration;

use homelab_sim::lab::{Lab, LabHandle};
use proxmox_client::property::*;
use proxmox_client::requests::*;
use proxmox_client::{Client, Error, ResourceFilter, RetryPolicy, TaskOutcome, WaitOptions};

fn fast_wait() -> WaitOptions {
    WaitOptions {
        initial_interval: Duration::from_millis(20),
        max_interval: Duration::from_millis(100),
        deadline: Duration::from_secs(30),
    }
}

async fn lab() -> LabHandle {
    Lab::builder()
        .task_duration(Duration::from_millis(50))
        .agent_delay(Duration::from_millis(10))
        .lock_timeout(Duration::from_millis(200))
        .start()
        .await
        .unwrap()
}

fn client(lab: &LabHandle) -> Client {
    Client::builder()
        .base_url(lab.pve_url())
        .api_token(lab.token_id(), lab.token_secret())
        .pin_fingerprint(lab.fingerprint())
        .retry_policy(RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
        })
        .build()
        .unwrap()
}

async fn wait_ok(c: &Client, upid: &proxmox_client::Upid) -> TaskOutcome {
    c.wait_task(upid, &fast_wait()).await.unwrap()
}

#[tokio::test]
async fn vm_lifecycle_over_pinned_tls() {
    let lab = lab().await;
    let c = client(&lab);
    let v = c.version().await.unwrap();
    assert!(v.release.starts_with('9'), "{v:?}");
    let nodes = c.nodes().await.unwrap();
    assert_eq!(nodes[0].node, "pve");
    assert_eq!(
        nodes[0].ssl_fingerprint.as_deref(),
        Some(lab.fingerprint().as_str())
    );
    let node = c.node("pve");

    let vmid = c.next_id(None).await.unwrap();
    assert!(vmid >= 100);
    let mut options = QemuOptions {
        name: Some("talos-cp-1".into()),
        memory: Some(2048),
        cores: Some(2),
        agent: Some("enabled=1".into()),
        tags: Some(vec!["Talos".into(), "k8s".into()]),
        sshkeys: Some(vec![
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG9vZm9vZm9vZm9vZm9vZm9vZm9vZm9vZm9vZm9vZm9v alice@laptop".into(),
        ]),
        bios: Some("ovmf".into()),
        efidisk0: Some(EfiDisk::new("local-lvm", false)),
        ..Default::default()
    };
    options
        .disks
        .insert("scsi0".into(), QemuDisk::new_volume("local-lvm", 8));
    options
        .disks
        .insert("ide2".into(), QemuDisk::cloudinit("local-lvm"));
    options.net.insert(0, QemuNet::virtio("vmbr0"));
    options
        .ipconfig
        .insert(0, IpConfig::static_v4("10.0.0.5/24", Some("10.0.0.1")));
    let upid = node
        .qemu_create(&QemuCreate {
            vmid,
            options,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(upid.task_type, "qmcreate");
    assert_eq!(upid.user, lab.token_id());
    assert_eq!(wait_ok(&c, &upid).await, TaskOutcome::Ok);
    let log = c.task_log(&upid, Some(0), Some(50)).await.unwrap();
    assert_eq!(log.last().unwrap().t, "TASK OK");

    let vm = node.qemu(vmid);
    let cfg = vm.config().await.unwrap();
    assert_eq!(cfg.get_str("tags").as_deref(), Some("k8s;talos"));
    let net: QemuNet = cfg.get_parsed("net0").unwrap().unwrap();
    assert!(
        net.macaddr.as_deref().unwrap().starts_with("BC:24:11:"),
        "{net:?}"
    );
    assert_eq!(
        cfg.ssh_keys().unwrap(),
        [
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG9vZm9vZm9vZm9vZm9vZm9vZm9vZm9vZm9vZm9vZm9v alice@laptop"
        ]
    );
    let ide2: QemuDisk = cfg.get_parsed("ide2").unwrap().unwrap();
    assert!(ide2.is_cloudinit(), "{ide2:?}");
    let digest = cfg.digest.clone().unwrap();

    // Optimistic concurrency: a stale digest is refused, the current one accepted.
    let stale = vm
        .update_config(&QemuUpdate {
            options: QemuOptions {
                cores: Some(4),
                ..Default::default()
            },
            digest: Some("0".repeat(40)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        stale
            .server_message()
            .unwrap_or_default()
            .contains("checksum mismatch"),
        "{stale:?}"
    );
    vm.update_config(&QemuUpdate {
        options: QemuOptions {
            cores: Some(4),
            ..Default::default()
        },
        delete: vec!["ipconfig0".into()],
        digest: Some(digest.clone()),
        ..Default::default()
    })
    .await
    .unwrap();
    let cfg2 = vm.config().await.unwrap();
    assert_ne!(cfg2.digest.as_deref(), Some(digest.as_str()));
    assert_eq!(cfg2.get_str("cores").as_deref(), Some("4"));
    assert!(cfg2.get_str("ipconfig0").is_none());

    // Power and agent.
    wait_ok(&c, &vm.start().await.unwrap()).await;
    assert!(vm.status().await.unwrap().is_running());
    let mut ifaces = Vec::new();
    for _ in 0..100 {
        match vm.agent_network_interfaces().await {
            Ok(i) => {
                ifaces = i;
                break;
            }
            Err(e) => {
                assert!(matches!(e, Error::Api { status: 500, .. }), "{e:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    assert!(!ifaces.is_empty(), "agent never answered");

    // Pending/running semantics: stop a stopped VM fails synchronously.
    wait_ok(&c, &vm.stop().await.unwrap()).await;
    let e = vm.stop().await.unwrap_err();
    assert!(
        e.server_message()
            .unwrap_or_default()
            .contains("not running"),
        "{e:?}"
    );

    // Resize, clone, template, delete.
    let resize = vm.resize("scsi0", "+2G", None).await.unwrap();
    if let Some(u) = resize {
        wait_ok(&c, &u).await;
    }
    let disk: QemuDisk = vm
        .config()
        .await
        .unwrap()
        .get_parsed("scsi0")
        .unwrap()
        .unwrap();
    assert_eq!(disk.size.as_deref(), Some("10G"));
    let clone_id = c.next_id(None).await.unwrap();
    wait_ok(
        &c,
        &vm.clone_to(&QemuClone {
            newid: clone_id,
            name: Some("clone".into()),
            full: Some(true),
            ..Default::default()
        })
        .await
        .unwrap(),
    )
    .await;
    let clone_cfg = node.qemu(clone_id).config().await.unwrap();
    let clone_net: QemuNet = clone_cfg.get_parsed("net0").unwrap().unwrap();
    assert_ne!(clone_net.macaddr, net.macaddr, "a clone gets a new MAC");
    wait_ok(&c, &node.qemu(clone_id).template().await.unwrap()).await;
    lab.refresh_stats();
    let res = c.cluster_resources(Some(ResourceFilter::Vm)).await.unwrap();
    let tmpl = res.iter().find(|r| r.vmid == Some(clone_id)).unwrap();
    assert_eq!(tmpl.template, Some(true));
    assert_eq!(tmpl.kind, "qemu");
    wait_ok(&c, &node.qemu(clone_id).delete(true, true).await.unwrap()).await;
    wait_ok(&c, &vm.delete(true, true).await.unwrap()).await;
    let e = vm.config().await.unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }), "{e:?}");
    assert!(node.qemu_list().await.unwrap().is_empty());
    lab.shutdown().await;
}

#[tokio::test]
async fn errors_faults_and_retries_from_the_simulator() {
    let lab = lab().await;
    let c = client(&lab);
    let node = c.node("pve");
    // Validation with the per-parameter map (sent raw: the typed builder refuses vmid 99).
    let e = c
        .post::<serde_json::Value>("/nodes/pve/qemu", &[("vmid", 99u32.into())])
        .await
        .unwrap_err();
    match &e {
        // PVE checks the `pve-vmid` format (3-9 digits) and the minimum; either message
        // is keyed by the parameter.
        Error::Validation { errors, .. } => assert!(errors.contains_key("vmid"), "{errors:?}"),
        other => panic!("{other:?}"),
    }
    let create = |vmid| QemuCreate {
        vmid,
        options: QemuOptions {
            name: Some(format!("vm{vmid}")),
            ..Default::default()
        },
        ..Default::default()
    };
    wait_ok(&c, &node.qemu_create(&create(150)).await.unwrap()).await;
    let e = node.qemu_create(&create(150)).await.unwrap_err();
    assert!(matches!(e, Error::AlreadyExists { .. }), "{e:?}");
    let e = c.next_id(Some(150)).await.unwrap_err();
    assert!(
        matches!(&e, Error::Validation { errors, .. } if errors["vmid"].contains("already exists")),
        "{e:?}"
    );

    // Lock timeouts are retried by the client and then succeed.
    lab.faults().lock_timeouts(2);
    let before = c.request_count();
    node.qemu(150)
        .update_config(&QemuUpdate {
            options: QemuOptions {
                cores: Some(2),
                ..Default::default()
            },
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        c.request_count() - before,
        3,
        "two lock timeouts, then success"
    );

    // A failing task surfaces its error text.
    lab.faults()
        .fail_tasks(Some("qmstart"), 1, "start failed: simulated");
    let upid = node.qemu(150).start().await.unwrap();
    match c.wait_task(&upid, &fast_wait()).await.unwrap_err() {
        Error::TaskFailed { exitstatus, .. } => {
            assert!(exitstatus.contains("simulated"), "{exitstatus}")
        }
        other => panic!("{other:?}"),
    }

    // An offline node answers 595.
    lab.faults().set_node_offline("pve", true);
    let e = node.qemu_list().await.unwrap_err();
    assert!(
        matches!(e, Error::NodeUnreachable { status: 595, .. }),
        "{e:?}"
    );
    lab.faults().set_node_offline("pve", false);
    assert_eq!(node.qemu_list().await.unwrap().len(), 1);
    lab.shutdown().await;
}

#[tokio::test]
async fn wrong_pin_and_ticket_login() {
    let lab = lab().await;
    let e = Client::builder()
        .base_url(lab.pve_url())
        .api_token(lab.token_id(), lab.token_secret())
        .pin_fingerprint(proxmox_client::Fingerprint([1; 32]).to_string())
        .build()
        .unwrap()
        .version()
        .await
        .unwrap_err();
    match &e {
        Error::UntrustedCertificate { fingerprint, .. } => {
            assert_eq!(fingerprint.to_string(), lab.fingerprint())
        }
        other => panic!("{other:?}"),
    }
    // The simulator's certificate as a CA file works too.
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("pve.pem");
    std::fs::write(&ca, lab.cert_pem()).unwrap();
    // Ticket login with root@pam's password; writes carry the CSRF token.
    let c = Client::builder()
        .base_url(lab.pve_url())
        .password("root@pam", lab.root_password())
        .pin_fingerprint(lab.fingerprint())
        .build()
        .unwrap();
    c.pools().create("lab", Some("homelab")).await.unwrap();
    assert_eq!(c.pools().list().await.unwrap()[0].poolid, "lab");
    let bad = Client::builder()
        .base_url(lab.pve_url())
        .password("root@pam", "wrong")
        .pin_fingerprint(lab.fingerprint())
        .retry_policy(RetryPolicy::none())
        .build()
        .unwrap();
    assert!(matches!(
        bad.login_now().await.unwrap_err(),
        Error::Auth { .. }
    ));
    lab.shutdown().await;
}

#[tokio::test]
async fn containers_storage_and_admin_objects() {
    let lab = lab().await;
    let c = client(&lab);
    let node = c.node("pve");
    let local = node.storage("local");

    // Streaming upload with progress, then the volume is listed.
    let tmpl: Vec<u8> = (0..200_000u32).map(|i| (i % 256) as u8).collect();
    let total = tmpl.len() as u64;
    let progress = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let p2 = progress.clone();
    let upid = local
        .upload(
            &Upload {
                content: "vztmpl".into(),
                filename: "debian-12-standard_12.7-1_amd64.tar.zst".into(),
                checksum: None,
            },
            std::io::Cursor::new(tmpl),
            total,
            Some(Arc::new(move |sent, _| {
                p2.store(sent, std::sync::atomic::Ordering::Relaxed)
            })),
        )
        .await
        .unwrap();
    wait_ok(&c, &upid).await;
    assert_eq!(progress.load(std::sync::atomic::Ordering::Relaxed), total);
    let content = local.content(Some("vztmpl"), None).await.unwrap();
    let vol = content
        .iter()
        .find(|v| v.volid == "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst")
        .unwrap();
    assert_eq!(vol.size, total);

    // Container lifecycle.
    let mut options = LxcOptions {
        hostname: Some("ct1".into()),
        rootfs: Some(LxcMountPoint::new_volume("local-lvm", 4)),
        features: Some("nesting=1".parse().unwrap()),
        ..Default::default()
    };
    options
        .net
        .insert(0, "name=eth0,bridge=vmbr0,ip=dhcp".parse().unwrap());
    wait_ok(
        &c,
        &node
            .lxc_create(&LxcCreate {
                vmid: 200,
                ostemplate: vol.volid.clone(),
                options,
                ..Default::default()
            })
            .await
            .unwrap(),
    )
    .await;
    let ct = node.lxc(200);
    let cfg = ct.config().await.unwrap();
    let rootfs: LxcMountPoint = cfg.get_parsed("rootfs").unwrap().unwrap();
    assert_eq!(rootfs.size.as_deref(), Some("4G"));
    ct.update_config(&LxcUpdate {
        options: LxcOptions {
            memory: Some(1024),
            ..Default::default()
        },
        digest: cfg.digest.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    wait_ok(&c, &ct.start().await.unwrap()).await;
    assert!(ct.status().await.unwrap().is_running());
    wait_ok(&c, &ct.stop().await.unwrap()).await;
    wait_ok(&c, &ct.delete(true, false).await.unwrap()).await;
    assert!(node.lxc_list().await.unwrap().is_empty());

    // A restricted token for provisioning.
    let access = c.access();
    access
        .create_user(&UserCreate {
            userid: "homelab@pve".into(),
            comment: Some("automation".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    access
        .create_role(
            "HomelabProvision",
            &["VM.Allocate", "VM.Audit", "Datastore.Audit"],
        )
        .await
        .unwrap();
    let tok = access
        .create_token("homelab@pve", "provision", true, None)
        .await
        .unwrap();
    assert_eq!(tok.full_tokenid, "homelab@pve!provision");
    access
        .update_acl(&AclUpdate {
            path: "/".into(),
            roles: vec!["HomelabProvision".into()],
            users: vec!["homelab@pve".into()],
            tokens: vec!["homelab@pve!provision".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        access
            .acl()
            .await
            .unwrap()
            .iter()
            .any(|a| a.ugid == "homelab@pve!provision")
    );
    assert_eq!(access.tokens("homelab@pve").await.unwrap().len(), 1);

    // SDN and backup jobs.
    let sdn = c.sdn();
    sdn.create_zone("lab", "simple", &vec![]).await.unwrap();
    sdn.create_vnet("vnet1", "lab", None, Some("lab net"))
        .await
        .unwrap();
    sdn.create_subnet("vnet1", "10.10.0.0/24", Some("10.10.0.1"), Some(true))
        .await
        .unwrap();
    wait_ok(&c, &sdn.apply().await.unwrap()).await;
    assert!(
        sdn.vnets()
            .await
            .unwrap()
            .iter()
            .any(|v| v.fields["vnet"] == "vnet1")
    );
    assert_eq!(sdn.subnets("vnet1").await.unwrap().len(), 1);
    c.backup_jobs()
        .create(
            Some("nightly"),
            &BackupJobParams {
                schedule: Some("01:00".into()),
                storage: Some("local".into()),
                all: Some(true),
                mode: Some("snapshot".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(c.backup_jobs().get("nightly").await.unwrap().id, "nightly");
    lab.shutdown().await;
}

/// Serves `body` at any path over plain HTTP on loopback (the node downloads from it).
async fn file_server(body: Vec<u8>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let body = Arc::new(body);
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(&body).await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn download_url_with_checksum_then_import_from() {
    use sha2::Digest;
    let lab = lab().await;
    let c = client(&lab);
    let node = c.node("pve");
    let image: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let sum = hex::encode(sha2::Sha256::digest(&image));
    let url = format!(
        "{}/talos-nocloud-amd64.raw",
        file_server(image.clone()).await
    );
    let local = node.storage("local");

    // A wrong checksum fails inside the task, with the task's error text.
    let bad = local
        .download_url(&DownloadUrl {
            url: url.clone(),
            filename: "bad.raw".into(),
            content: "import".into(),
            checksum: Some((ChecksumAlgorithm::Sha256, "0".repeat(64))),
            verify_certificates: None,
            compression: None,
        })
        .await
        .unwrap();
    let e = c.wait_task(&bad, &fast_wait()).await.unwrap_err();
    assert!(matches!(e, Error::TaskFailed { .. }), "{e:?}");

    let upid = local
        .download_url(&DownloadUrl {
            url,
            filename: "talos.raw".into(),
            content: "import".into(),
            checksum: Some((ChecksumAlgorithm::Sha256, sum)),
            verify_certificates: None,
            compression: None,
        })
        .await
        .unwrap();
    assert_eq!(upid.task_type, "download");
    wait_ok(&c, &upid).await;
    let vols = local.content(Some("import"), None).await.unwrap();
    let vol = vols
        .iter()
        .find(|v| v.volid == "local:import/talos.raw")
        .unwrap();
    assert_eq!(vol.size, image.len() as u64);
    assert!(!vols.iter().any(|v| v.volid == "local:import/bad.raw"));

    let mut options = QemuOptions {
        name: Some("talos-import".into()),
        ..Default::default()
    };
    options.disks.insert(
        "scsi0".into(),
        QemuDisk::import("local-lvm", "local:import/talos.raw")
            .discard(true)
            .ssd(true),
    );
    wait_ok(
        &c,
        &node
            .qemu_create(&QemuCreate {
                vmid: 300,
                options,
                ..Default::default()
            })
            .await
            .unwrap(),
    )
    .await;
    let disk: QemuDisk = node
        .qemu(300)
        .config()
        .await
        .unwrap()
        .get_parsed("scsi0")
        .unwrap()
        .unwrap();
    assert_eq!(disk.storage(), Some("local-lvm"));
    assert!(
        disk.import_from.is_none(),
        "import-from is not stored: {disk:?}"
    );
    assert_eq!(disk.discard.as_deref(), Some("on"));
    assert!(disk.size.is_some(), "{disk:?}");
    lab.shutdown().await;
}
