//! Integration tests of the simulated Talos nodes: the full apply → bootstrap → kubeconfig
//! flow with the real talos-api client over TLS on loopback.

#![allow(clippy::unwrap_used)]
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use homelab_sim::runtime::{GuestKind, GuestRuntime, GuestStart};
use homelab_sim::talos::TalosRuntime;
use talos_api::client::{ApplyMode, ClientBuilder};
use talos_api::config::{ClusterInput, MachineConfig, MachineType, NodeInput};
use talos_api::health::{self, WaitOptions};
use talos_api::secrets::{SecretsBundle, SecretsOptions, ServiceAccountKeyKind};

/// A loopback address unlikely to collide with other tests running at the same time.
fn random_loopback() -> Ipv4Addr {
    use rand::Rng;
    let mut r = rand::thread_rng();
    Ipv4Addr::new(127, 55, r.gen_range(1..250), r.gen_range(2..250))
}

fn guest(ip: Ipv4Addr, vmid: u32) -> GuestStart {
    let mut config = BTreeMap::new();
    config.insert(
        "ide2".to_string(),
        "local:iso/talos-v1.12.11-nocloud-amd64.iso,media=cdrom".to_string(),
    );
    config.insert(
        "scsi0".to_string(),
        "local-lvm:vm-100-disk-0,size=32G".to_string(),
    );
    config.insert("ipconfig0".to_string(), format!("ip={ip}/8,gw=127.0.0.1"));
    GuestStart {
        node: "pve".into(),
        vmid,
        name: format!("cp-{vmid}"),
        kind: GuestKind::Qemu,
        config,
    }
}

fn opts() -> WaitOptions<'static> {
    WaitOptions::new(Duration::from_secs(30)).interval(Duration::from_millis(100))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_bootstrap_kubeconfig_flow_and_persistence() {
    let dir = tempfile::tempdir().unwrap();
    let rt = TalosRuntime::new(dir.path()).unwrap();
    let ip = random_loopback();
    let g = guest(ip, 100);
    assert_eq!(rt.started(&g).unwrap(), vec![IpAddr::V4(ip)]);

    // Maintenance mode: server-only TLS, Disks works, admin APIs are unimplemented.
    let m = ClientBuilder::maintenance(&ip.to_string()).build().unwrap();
    let disks = health::wait_for("maintenance Disks", &opts(), || m.disks())
        .await
        .unwrap();
    let devices: Vec<_> = disks[0]
        .disks
        .iter()
        .map(|d| d.device_name.clone())
        .collect();
    assert_eq!(devices, ["/dev/sda", "/dev/sr0"]);
    let e = m.version().await.unwrap_err();
    assert_eq!(e.grpc_code(), Some(tonic::Code::Unimplemented));
    assert!(
        e.to_string()
            .contains("API is not implemented in maintenance mode"),
        "{e}"
    );
    assert_eq!(
        m.bootstrap().await.unwrap_err().grpc_code(),
        Some(tonic::Code::Unimplemented)
    );

    let secrets = SecretsBundle::generate_with(
        &SecretsOptions::default().service_account(ServiceAccountKeyKind::EcdsaP256),
    )
    .unwrap();
    let endpoint = format!("https://{ip}:6443");
    let cluster = ClusterInput::new("simlab", &endpoint)
        .unwrap()
        .allow_scheduling_on_control_planes(true);
    let cp = MachineConfig::generate(
        &cluster,
        &secrets,
        MachineType::ControlPlane,
        &NodeInput::default().hostname("cp-1"),
    )
    .unwrap();
    let yaml = cp.to_yaml();

    // Rejected: a disk the VM does not have, an unknown field, and non-maintenance modes.
    let bad_disk = MachineConfig::generate(
        &cluster.clone().install_disk("/dev/vdz"),
        &secrets,
        MachineType::ControlPlane,
        &NodeInput::default(),
    )
    .unwrap();
    let e = m
        .apply_configuration(bad_disk.to_yaml().as_bytes(), ApplyMode::Auto, false)
        .await
        .unwrap_err();
    assert_eq!(e.grpc_code(), Some(tonic::Code::InvalidArgument));
    assert!(e.to_string().contains("/dev/vdz"), "{e}");
    let typo = yaml.replace("    certSANs: []\n", "    certSANz: []\n");
    let e = m
        .apply_configuration(typo.as_bytes(), ApplyMode::Auto, false)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("unknown field \"certSANz\""), "{e}");
    let e = m
        .apply_configuration(yaml.as_bytes(), ApplyMode::NoReboot, false)
        .await
        .unwrap_err();
    assert_eq!(e.grpc_code(), Some(tonic::Code::Unimplemented));

    let dry = m
        .apply_configuration(yaml.as_bytes(), ApplyMode::Auto, true)
        .await
        .unwrap();
    assert!(dry[0].mode_details.starts_with("Dry run summary"));
    assert!(!rt.node("pve", 100).unwrap().installed);
    m.apply_configuration(yaml.as_bytes(), ApplyMode::Auto, false)
        .await
        .unwrap();

    // Normal mode: mTLS with the admin talosconfig.
    let tc =
        talos_api::config::admin_talosconfig("simlab", &secrets, &[ip.to_string()], &[]).unwrap();
    let builder = ClientBuilder::from_talosconfig(&tc, None).unwrap();
    let c = health::wait_mtls_ready(&builder, &opts()).await.unwrap();
    let v = c.version().await.unwrap();
    assert_eq!(v[0].version.as_ref().unwrap().tag, "v1.12.11");
    assert_eq!(v[0].platform.as_ref().unwrap().name, "nocloud");
    // apid proxying: `node`/`nodes` metadata tags each reply with its target; an unknown
    // target contributes a per-node error.
    let one = c.with_node(ip.to_string()).version().await.unwrap();
    assert_eq!(one[0].metadata.as_ref().unwrap().hostname, ip.to_string());
    let e = c
        .with_nodes([ip.to_string(), "127.55.255.254".to_string()])
        .version()
        .await
        .unwrap_err();
    match e {
        talos_api::Error::Node { errors, .. } => {
            assert_eq!(errors.len(), 1);
            assert_eq!(errors[0].node, "127.55.255.254");
            assert!(errors[0].message.contains("connection refused"));
        }
        other => panic!("unexpected {other:?}"),
    }
    // The maintenance (no client certificate) handshake is now refused.
    assert!(
        !talos_api::client::is_maintenance(&ip.to_string(), Duration::from_secs(5))
            .await
            .unwrap()
    );

    // Before bootstrap etcd is not up.
    assert!(c.etcd_member_list(false).await.is_err());
    c.bootstrap().await.unwrap();
    let e = c.bootstrap().await.unwrap_err();
    assert_eq!(e.grpc_code(), Some(tonic::Code::AlreadyExists));
    assert!(
        e.to_string().contains("etcd data directory is not empty"),
        "{e}"
    );
    let events = std::sync::Mutex::new(Vec::new());
    let record = |ev: &health::WaitEvent| events.lock().unwrap().push(ev.attempt);
    health::wait_etcd_healthy(&c, &opts().progress(&record))
        .await
        .unwrap();
    assert!(
        !events.lock().unwrap().is_empty(),
        "progress callback was called"
    );
    let members = c.etcd_member_list(false).await.unwrap();
    assert_eq!(members[0].members[0].hostname, "cp-1");

    // Kubeconfig signed by the cluster's Kubernetes CA; a real client uses it.
    let kc = c.kubeconfig().await.unwrap();
    let kc = String::from_utf8(kc.to_vec()).unwrap();
    let creds = talos_api::kubeconfig::credentials(&kc).unwrap();
    assert_eq!(creds.server, endpoint);
    assert_eq!(creds.ca_pem, secrets.k8s.crt);
    let cert_der = rustls_pemfile_der(&creds.client_cert_pem);
    let ca_der = rustls_pemfile_der(&secrets.k8s.crt);
    let (_, cert) = x509_parser::parse_x509_certificate(&cert_der).unwrap();
    let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
    assert_eq!(cert.issuer(), ca.subject());
    assert_eq!(
        cert.subject()
            .iter_organization()
            .next()
            .unwrap()
            .as_str()
            .unwrap(),
        "system:masters"
    );

    health::wait_kubernetes_ready(&kc, &opts()).await.unwrap();
    let http = health::kube_http_client(&creds).unwrap();
    let nodes: serde_json::Value = http
        .get(format!("{endpoint}/api/v1/nodes"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(nodes["kind"], "NodeList");
    assert_eq!(nodes["items"][0]["metadata"]["name"], "cp-1");
    assert_eq!(
        nodes["items"][0]["status"]["addresses"][0]["address"],
        ip.to_string()
    );
    let version: serde_json::Value = http
        .get(format!("{endpoint}/version"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(version["gitVersion"], "v1.35.4");

    // A worker joins: its apid certificate is signed with the control plane's OS CA key (what
    // trustd does), and it shows up in the node list.
    let wip = random_loopback();
    let mut wg = guest(wip, 101);
    wg.name = "worker-1".into();
    rt.started(&wg).unwrap();
    let wm = ClientBuilder::maintenance(&wip.to_string())
        .build()
        .unwrap();
    health::wait_for("worker maintenance", &opts(), || wm.disks())
        .await
        .unwrap();
    let worker = MachineConfig::generate(
        &cluster,
        &secrets,
        MachineType::Worker,
        &NodeInput::default().hostname("worker-1"),
    )
    .unwrap();
    wm.apply_configuration(worker.to_yaml().as_bytes(), ApplyMode::Auto, false)
        .await
        .unwrap();
    let wc = health::wait_mtls_ready(&builder.clone().node(wip.to_string()), &opts())
        .await
        .unwrap();
    let e = c.with_node(wip.to_string()).bootstrap().await.unwrap_err();
    assert!(e.to_string().contains("worker"), "{e}");
    let e = wc.kubeconfig().await.unwrap_err().to_string();
    assert!(e.contains(&format!("node {wip}")), "{e}");
    assert!(e.contains("only available on control plane nodes"), "{e}");
    let nodes: serde_json::Value = http
        .get(format!("{endpoint}/api/v1/nodes"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<_> = nodes["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["cp-1", "worker-1"]);
    rt.destroyed("pve", 101);

    // A later process with the same state directory sees the same, bootstrapped node.
    rt.stopped("pve", 100);
    drop(rt);
    let rt2 = TalosRuntime::new(dir.path()).unwrap();
    let mut g2 = g.clone();
    g2.config.remove("ide2"); // boots from the installed disk
    assert_eq!(rt2.started(&g2).unwrap(), vec![IpAddr::V4(ip)]);
    let c2 = health::wait_mtls_ready(&builder, &opts()).await.unwrap();
    let e = health::wait_for("bootstrap answer", &opts(), || {
        let c2 = c2.clone();
        async move {
            match c2.bootstrap().await {
                Err(e) if e.grpc_code() == Some(tonic::Code::AlreadyExists) => Ok(e),
                Err(e) => Err(e),
                Ok(_) => panic!("second bootstrap succeeded"),
            }
        }
    })
    .await
    .unwrap();
    assert!(e.to_string().contains("etcd data directory is not empty"));
    health::wait_kubernetes_ready(&kc, &opts()).await.unwrap();

    rt2.destroyed("pve", 100);
    assert!(rt2.node("pve", 100).is_none());
    assert_eq!(
        std::fs::read_dir(dir.path().join("talos")).unwrap().count(),
        0
    );
}

fn rustls_pemfile_der(pem: &str) -> Vec<u8> {
    use base64::Engine as _;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

#[tokio::test]
async fn non_talos_guests_are_not_managed() {
    let dir = tempfile::tempdir().unwrap();
    let rt = TalosRuntime::new(dir.path()).unwrap();
    let mut g = guest(random_loopback(), 101);
    g.config
        .insert("ide2".into(), "local:iso/debian-13.iso,media=cdrom".into());
    assert!(rt.started(&g).unwrap().is_empty());
    g.kind = GuestKind::Lxc;
    assert!(rt.started(&g).unwrap().is_empty());
    assert!(rt.nodes().is_empty());
}

/// Day 2 on one node: the version and schematic the installer image carried, apply modes
/// with Talos 1.12's semantics, a staged config taken on reboot, and an upgrade that takes
/// the node down, then reports the new version and schematic; all in the event log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_modes_and_upgrade_change_what_the_node_runs() {
    use homelab_sim::talos::day2::{EventKind, Knobs, VANILLA_SCHEMATIC};

    let dir = tempfile::tempdir().unwrap();
    let rt = TalosRuntime::new(dir.path()).unwrap();
    let mut knobs = Knobs::default();
    knobs.upgrade_time = Duration::from_millis(300);
    knobs.reboot_time = Duration::from_millis(50);
    rt.set_knobs(knobs);
    let ip = random_loopback();
    rt.started(&guest(ip, 120)).unwrap();
    let m = ClientBuilder::maintenance(&ip.to_string()).build().unwrap();
    health::wait_for("maintenance Disks", &opts(), || m.disks())
        .await
        .unwrap();
    let secrets = SecretsBundle::generate_with(
        &SecretsOptions::default().service_account(ServiceAccountKeyKind::EcdsaP256),
    )
    .unwrap();
    let cluster = ClusterInput::new("simlab", format!("https://{ip}:6443"))
        .unwrap()
        .install_image(
            "factory.talos.dev/nocloud-installer/".to_string() + &"a".repeat(64) + ":v1.12.0",
        );
    let config_with = |patch: &str| {
        let mut c = MachineConfig::generate(
            &cluster,
            &secrets,
            MachineType::ControlPlane,
            &NodeInput::default().hostname("w-1"),
        )
        .unwrap();
        if !patch.is_empty() {
            c.apply_patches(&[talos_api::patch::Patch::parse(patch, "p").unwrap()])
                .unwrap();
        }
        c.to_yaml().to_string()
    };
    m.apply_configuration(config_with("").as_bytes(), ApplyMode::Auto, false)
        .await
        .unwrap();
    let tc =
        talos_api::config::admin_talosconfig("simlab", &secrets, &[ip.to_string()], &[]).unwrap();
    let builder = ClientBuilder::from_talosconfig(&tc, None).unwrap();
    let c = match health::wait_mtls_ready(&builder, &opts()).await {
        Ok(c) => c,
        Err(e) => panic!("{e}: {:?} {:?}", rt.events(), rt.node("pve", 120)),
    };
    let tag = |c: talos_api::client::Client| async move {
        c.version().await.unwrap()[0]
            .version
            .as_ref()
            .unwrap()
            .tag
            .clone()
    };
    assert_eq!(tag(c.clone()).await, "v1.12.0");
    let snap = rt.node("pve", 120).unwrap();
    assert_eq!(snap.schematic.as_deref(), Some("a".repeat(64).as_str()));

    // A sysctl applies live; an environment variable needs a reboot: refused in
    // no-reboot mode with Talos's text, a reboot in auto mode.
    let sysctl = config_with("machine: { sysctls: { net.core.somaxconn: '1024' } }");
    let r = c
        .apply_configuration(sysctl.as_bytes(), ApplyMode::NoReboot, false)
        .await
        .unwrap();
    assert_eq!(r[0].mode, ApplyMode::NoReboot as i32);
    assert!(
        rt.node("pve", 120)
            .unwrap()
            .config
            .unwrap()
            .contains("somaxconn")
    );
    let env = config_with("machine: { sysctls: { net.core.somaxconn: '1024' }, env: { A: b } }");
    let e = c
        .apply_configuration(env.as_bytes(), ApplyMode::NoReboot, false)
        .await
        .unwrap_err();
    assert_eq!(e.grpc_code(), Some(tonic::Code::InvalidArgument));
    assert!(
        e.to_string()
            .contains("this config change can't be applied in immediate mode"),
        "{e}"
    );
    let r = c
        .apply_configuration(env.as_bytes(), ApplyMode::Auto, false)
        .await
        .unwrap();
    assert_eq!(r[0].mode, ApplyMode::Reboot as i32);
    assert_eq!(r[0].mode_details, "Applied configuration with a reboot");

    // Wait for the reboot to go through (down, then up again).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while rt
        .events()
        .iter()
        .filter(|e| e.kind == EventKind::Up)
        .count()
        < 3
    {
        assert!(std::time::Instant::now() < deadline, "{:?}", rt.events());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Staged: kept for the next boot, the running config is unchanged until then.
    let c = health::wait_mtls_ready(&builder, &opts()).await.unwrap();
    let staged = config_with("machine: { sysctls: { net.core.somaxconn: '2048' }, env: { A: b } }");
    let r = c
        .apply_configuration(staged.as_bytes(), ApplyMode::Staged, false)
        .await
        .unwrap();
    assert_eq!(
        r[0].mode_details,
        "Staged configuration to be applied after the next reboot"
    );
    assert!(
        !rt.node("pve", 120)
            .unwrap()
            .config
            .unwrap()
            .contains("2048")
    );

    // Upgrade: acked, the node goes down, comes back with the new version and schematic
    // (and the staged config).
    let r = c
        .upgrade(talos_api::proto::machine::UpgradeRequest {
            image: "ghcr.io/siderolabs/installer:v1.12.11".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(r[0].ack, "Upgrade request received");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let s = rt.node("pve", 120).unwrap();
        if s.version.as_deref() == Some("v1.12.11") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never upgraded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let c = health::wait_mtls_ready(&builder, &opts()).await.unwrap();
    assert_eq!(tag(c).await, "v1.12.11");
    let snap = rt.node("pve", 120).unwrap();
    assert_eq!(snap.schematic.as_deref(), Some(VANILLA_SCHEMATIC));
    assert!(snap.config.unwrap().contains("2048"));

    // The log: applied live, applied with reboot (down, up), upgrade (down, up).
    // (Reads are logged too, for the tests that count them; not this one.)
    let kinds: Vec<EventKind> = rt
        .events()
        .into_iter()
        .map(|e| e.kind)
        .filter(|k| !matches!(k, EventKind::Read(_)))
        .collect();
    let after_install = kinds
        .iter()
        .position(|k| *k == EventKind::Applied("no_reboot".into()))
        .unwrap();
    assert_eq!(
        kinds[after_install..],
        [
            EventKind::Applied("no_reboot".into()),
            EventKind::Applied("reboot".into()),
            EventKind::Down,
            EventKind::Up,
            EventKind::Applied("staged".into()),
            EventKind::Upgrade("ghcr.io/siderolabs/installer:v1.12.11".into()),
            EventKind::Down,
            EventKind::Up,
        ]
    );
    let bad = health::wait_mtls_ready(&builder, &opts())
        .await
        .unwrap()
        .upgrade(talos_api::proto::machine::UpgradeRequest {
            image: "not-an-image".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        bad.to_string().contains("error validating installer image"),
        "{bad}"
    );
}
