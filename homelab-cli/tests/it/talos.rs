//! Integration tests of `homelab-cli talos` (the built binary; Talos nodes simulated in the
//! test process on loopback).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use homelab_sim::runtime::{GuestKind, GuestRuntime, GuestStart};
use homelab_sim::talos::TalosRuntime;
use talos_api::config::MachineConfig;
use talos_api::secrets::SecretsBundle;
use talos_api::talosconfig::Talosconfig;

async fn cli(dir: &Path, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_homelab-cli"))
        .args(args)
        .current_dir(dir)
        .env_remove("TALOSCONFIG")
        .env("HOME", dir)
        .env("NO_COLOR", "1")
        .output()
        .await
        .unwrap()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn err(o: &Output) -> String {
    assert!(!o.status.success(), "unexpectedly succeeded");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gen_secrets_and_config_with_patches() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    ok(&cli(dir, &["talos", "gen", "secrets", "-o", "secrets.yaml"]).await);
    let bundle = SecretsBundle::load(&dir.join("secrets.yaml")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("secrets.yaml"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let e = err(&cli(dir, &["talos", "gen", "secrets", "-o", "secrets.yaml"]).await);
    assert!(e.contains("already exists"), "{e}");

    std::fs::write(
        dir.join("patch.yaml"),
        "machine:\n  certSANs: [lab.example.com]\n",
    )
    .unwrap();
    let out = cli(
        dir,
        &[
            "talos",
            "gen",
            "config",
            "--secrets",
            "secrets.yaml",
            "--cluster-name",
            "lab",
            "--endpoint",
            "https://10.0.0.10:6443",
            "--install-disk",
            "/dev/vda",
            "--config-patch",
            "@patch.yaml",
            "--config-patch-control-plane",
            r#"[{"op":"add","path":"/cluster/allowSchedulingOnControlPlanes","value":true}]"#,
            "-o",
            "out",
        ],
    )
    .await;
    ok(&out);
    let cp_text = std::fs::read_to_string(dir.join("out/controlplane.yaml")).unwrap();
    let cp = MachineConfig::from_yaml(&cp_text, "cp").unwrap();
    cp.validate().unwrap();
    let v1 = cp.v1alpha1().unwrap();
    assert_eq!(v1["machine"]["install"]["disk"].as_str(), Some("/dev/vda"));
    assert_eq!(
        v1["machine"]["certSANs"][0].as_str(),
        Some("lab.example.com")
    );
    assert_eq!(
        v1["cluster"]["allowSchedulingOnControlPlanes"].as_bool(),
        Some(true)
    );
    assert_eq!(
        v1["cluster"]["id"].as_str(),
        Some(bundle.cluster_id.as_str())
    );
    let worker = std::fs::read_to_string(dir.join("out/worker.yaml")).unwrap();
    assert!(!worker.contains("allowSchedulingOnControlPlanes"));
    let tc = Talosconfig::load(&dir.join("out/talosconfig")).unwrap();
    assert_eq!(tc.context, "lab");
    assert!(tc.contexts["lab"].endpoints.is_empty());

    let e = err(&cli(
        dir,
        &[
            "talos",
            "gen",
            "config",
            "--secrets",
            "secrets.yaml",
            "--cluster-name",
            "x",
            "--endpoint",
            "10.0.0.1",
            "-o",
            "bad",
        ],
    )
    .await);
    assert!(e.contains("endpoint \"10.0.0.1\" is not a URL"), "{e}");
    let e = err(&cli(
        dir,
        &[
            "talos",
            "gen",
            "config",
            "--secrets",
            "secrets.yaml",
            "--cluster-name",
            "x",
            "--endpoint",
            "https://a:6443",
            "--config-patch",
            "machine:\n  instal: {}\n",
            "-o",
            "bad",
        ],
    )
    .await);
    assert!(e.contains("unknown field \"instal\""), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gen_secrets_encrypted_with_sops_age() {
    let d = tempfile::tempdir().unwrap();
    let mut ids = sops_age::Identities::new();
    let recipient = ids.generate();
    ok(&cli(
        d.path(),
        &[
            "talos",
            "gen",
            "secrets",
            "-o",
            "secrets.sops.yaml",
            "--encrypt",
            "--age",
            &recipient,
        ],
    )
    .await);
    let data = std::fs::read(d.path().join("secrets.sops.yaml")).unwrap();
    let text = String::from_utf8_lossy(&data);
    assert!(text.contains("ENC[AES256_GCM,"), "encrypted values");
    // base64 of "-----BEGIN" would mean a plaintext PEM on disk
    assert!(!text.contains("LS0tLS1CRUdJTi"), "no plaintext PEM on disk");
    assert!(sops_age::file_status(&data, sops_age::Format::Yaml));
    let plain = sops_age::decrypt(&data, sops_age::Format::Yaml, &ids).unwrap();
    let b = SecretsBundle::from_yaml(std::str::from_utf8(&plain).unwrap(), "dec").unwrap();
    b.validate().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_bootstrap_health_kubeconfig_against_simulated_node() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let rt = TalosRuntime::new(dir.join("sim")).unwrap();
    // An address unlikely to collide with tests running at the same time.
    let seed = std::process::id()
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
    let ip = Ipv4Addr::new(
        127,
        56,
        (seed % 249 + 1) as u8,
        ((seed >> 8) % 248 + 2) as u8,
    );
    let mut config = BTreeMap::new();
    config.insert(
        "ide2".to_string(),
        "local:iso/talos-nocloud-amd64.iso,media=cdrom".to_string(),
    );
    config.insert(
        "scsi0".to_string(),
        "local-lvm:vm-200-disk-0,size=20G".to_string(),
    );
    config.insert("ipconfig0".to_string(), format!("ip={ip}/8"));
    rt.started(&GuestStart {
        node: "pve".into(),
        vmid: 200,
        name: "cp".into(),
        kind: GuestKind::Qemu,
        config,
    })
    .unwrap();
    let ips = ip.to_string();
    let endpoint = format!("https://{ip}:6443");
    ok(&cli(
        dir,
        &[
            "talos",
            "gen",
            "config",
            "--cluster-name",
            "simlab",
            "--endpoint",
            &endpoint,
            "--allow-scheduling-on-control-planes",
            "-o",
            ".",
        ],
    )
    .await);

    // Maintenance mode needs a moment to come up after the VM starts: retry the dry run.
    let mut last = String::new();
    for _ in 0..100 {
        let o = cli(
            dir,
            &[
                "talos",
                "apply",
                "--insecure",
                "-n",
                &ips,
                "-f",
                "controlplane.yaml",
                "--dry-run",
            ],
        )
        .await;
        if o.status.success() {
            last.clear();
            break;
        }
        last = String::from_utf8_lossy(&o.stderr).into_owned();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(last.is_empty(), "maintenance mode never answered: {last}");
    let out = ok(&cli(
        dir,
        &[
            "talos",
            "apply",
            "--insecure",
            "-n",
            &ips,
            "-f",
            "controlplane.yaml",
            "-o",
            "json",
        ],
    )
    .await);
    let applied: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(applied[0]["node"], ips.as_str());
    assert_eq!(applied[0]["mode"], "REBOOT");

    let tc = ["--talosconfig", "talosconfig", "-e", &ips, "-n", &ips];
    let with = |cmd: &[&'static str]| -> Vec<String> {
        cmd.iter()
            .map(|s| s.to_string())
            .chain(tc.iter().map(|s| s.to_string()))
            .collect()
    };
    // The node installs and reboots into mTLS mode: retry `version` until it answers.
    let mut version = None;
    for _ in 0..100 {
        let args = with(&["talos", "version", "-o", "json"]);
        let o = cli(dir, &args.iter().map(String::as_str).collect::<Vec<_>>()).await;
        if o.status.success() {
            version = Some(String::from_utf8(o.stdout).unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let v: serde_json::Value =
        serde_json::from_str(&version.expect("node never came up in mTLS mode")).unwrap();
    assert_eq!(v[0]["tag"], "v1.12.11");
    assert_eq!(v[0]["node"], ips.as_str());

    let run = |cmd: &[&'static str]| {
        let args = with(cmd);
        async move { cli(dir, &args.iter().map(String::as_str).collect::<Vec<_>>()).await }
    };
    ok(&run(&["talos", "bootstrap"]).await);
    let e = err(&run(&["talos", "bootstrap"]).await);
    assert!(e.contains("etcd data directory is not empty"), "{e}");

    let health = ok(&run(&["talos", "health", "--wait-timeout", "60s", "-o", "json"]).await);
    let h: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(h["etcd"], true, "{health}");
    assert_eq!(h["kubernetes"], true, "{health}");

    ok(&run(&["talos", "kubeconfig", "kube.yaml"]).await);
    let kc = std::fs::read_to_string(dir.join("kube.yaml")).unwrap();
    let creds = talos_api::kubeconfig::credentials(&kc).unwrap();
    assert_eq!(creds.server, endpoint);
    let e = err(&run(&["talos", "kubeconfig", "kube.yaml"]).await);
    assert!(e.contains("already exists"), "{e}");
    talos_api::health::kubernetes_readyz(&kc).await.unwrap();

    // The kubeconfig can go to disk SOPS-encrypted only.
    let mut ids = sops_age::Identities::new();
    let recipient = ids.generate();
    let args = with(&["talos", "kubeconfig", "kube.sops.yaml", "--encrypt"]);
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.extend(["--age", &recipient]);
    ok(&cli(dir, &args).await);
    let data = std::fs::read(dir.join("kube.sops.yaml")).unwrap();
    assert!(sops_age::file_status(&data, sops_age::Format::Yaml));
    let plain = sops_age::decrypt(&data, sops_age::Format::Yaml, &ids).unwrap();
    let creds = talos_api::kubeconfig::credentials(std::str::from_utf8(&plain).unwrap()).unwrap();
    assert_eq!(creds.server, endpoint);
}
