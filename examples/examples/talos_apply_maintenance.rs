//! Apply a machine config to a Talos node in maintenance mode, wait for it to come back with
//! mTLS, bootstrap etcd and fetch the kubeconfig.
//!
//! ```text
//! cargo run -p homelab-examples --example talos_apply_maintenance
//! ```
//!
//! Runs against a simulated node (from `homelab-sim`) on a loopback address. Against a real
//! node in maintenance mode, use its address instead of the simulator's and, if you can,
//! `ClientBuilder::pin_fingerprint` with the fingerprint printed on its console.

use std::collections::BTreeMap;
use std::time::Duration;

use homelab_sim::runtime::{GuestKind, GuestRuntime, GuestStart};
use homelab_sim::talos::TalosRuntime;
use talos_api::client::{ApplyMode, ClientBuilder};
use talos_api::config::{ClusterInput, MachineConfig, MachineType, NodeInput, admin_talosconfig};
use talos_api::health::{self, WaitOptions};
use talos_api::secrets::{SecretsBundle, SecretsOptions, ServiceAccountKeyKind};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A simulated VM booting the Talos ISO with a static loopback address from cloud-init.
    let state = tempfile::tempdir()?;
    let sim = TalosRuntime::new(state.path())?;
    let ip = "127.0.77.10";
    let mut config = BTreeMap::new();
    config.insert(
        "ide2".into(),
        "local:iso/talos-v1.12.11-nocloud-amd64.iso,media=cdrom".into(),
    );
    config.insert("scsi0".into(), "local-lvm:vm-100-disk-0,size=32G".into());
    config.insert("ipconfig0".into(), format!("ip={ip}/8"));
    sim.started(&GuestStart {
        node: "pve".into(),
        vmid: 100,
        name: "cp-1".into(),
        kind: GuestKind::Qemu,
        config,
    })?;

    let progress = |ev: &health::WaitEvent| {
        if let Some(e) = &ev.last_error {
            eprintln!("  waiting for {} (attempt {}): {e}", ev.what, ev.attempt);
        }
    };
    let wait = WaitOptions::new(Duration::from_secs(60))
        .interval(Duration::from_millis(200))
        .progress(&progress);

    // Maintenance mode: no client certificate, the node's self-signed certificate.
    let maintenance = ClientBuilder::maintenance(ip).build()?;
    let disks = health::wait_for("maintenance mode", &wait, || maintenance.disks()).await?;
    for d in &disks[0].disks {
        println!("disk {} ({} bytes)", d.device_name, d.size);
    }

    // ECDSA service-account key keeps this example fast; Talos 1.12 itself uses RSA-4096.
    let secrets = SecretsBundle::generate_with(
        &SecretsOptions::default().service_account(ServiceAccountKeyKind::EcdsaP256),
    )?;
    let cluster = ClusterInput::new("example", format!("https://{ip}:6443"))?
        .allow_scheduling_on_control_planes(true);
    let cp = MachineConfig::generate(
        &cluster,
        &secrets,
        MachineType::ControlPlane,
        &NodeInput::default().hostname("cp-1"),
    )?;
    let applied = maintenance
        .apply_configuration(cp.to_yaml().as_bytes(), ApplyMode::Auto, false)
        .await?;
    println!("applied, mode {:?}", ApplyMode::try_from(applied[0].mode)?);

    // The node installs and reboots into normal mode: mutual TLS with the admin talosconfig.
    let talosconfig = admin_talosconfig("example", &secrets, &[ip.to_string()], &[])?;
    let client =
        health::wait_mtls_ready(&ClientBuilder::from_talosconfig(&talosconfig, None)?, &wait)
            .await?;
    let v = client.version().await?;
    println!(
        "Talos {}",
        v[0].version.as_ref().map(|v| v.tag.as_str()).unwrap_or("?")
    );

    client.bootstrap().await?;
    health::wait_etcd_healthy(&client, &wait).await?;
    let kubeconfig = String::from_utf8(client.kubeconfig().await?.to_vec())?;
    health::wait_kubernetes_ready(&kubeconfig, &wait).await?;
    println!(
        "Kubernetes API ready; kubeconfig has {} bytes",
        kubeconfig.len()
    );
    Ok(())
}
