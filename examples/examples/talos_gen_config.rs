//! Generate a Talos cluster's secrets bundle, machine configs and talosconfig, as
//! `talosctl gen secrets` + `talosctl gen config` would.
//!
//! ```text
//! cargo run -p homelab-examples --example talos_gen_config -- [OUT_DIR]
//! ```
//!
//! Writes `secrets.yaml`, `controlplane.yaml`, `worker.yaml` and `talosconfig` (mode 0600) to
//! OUT_DIR (default: a temporary directory that is removed again). These files hold the
//! cluster's secrets: encrypt them (see the `sops_secrets` example) before committing them.

use std::path::PathBuf;

use talos_api::config::{
    ClusterInput, MachineConfig, MachineType, NodeInput, StaticNetwork, admin_talosconfig,
};
use talos_api::patch::Patch;
use talos_api::secrets::SecretsBundle;
use talos_api::talosconfig::write_private;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let out: PathBuf = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&out)?;

    // RSA-4096 for the service-account key, as Talos 1.12 does: this takes a few seconds.
    let secrets = SecretsBundle::generate()?;
    write_private(&out.join("secrets.yaml"), secrets.to_yaml().as_bytes())?;

    let cluster = ClusterInput::new("homelab", "https://192.168.1.10:6443")?
        .install_disk("/dev/sda")
        .install_image("factory.talos.dev/nocloud-installer/ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515:v1.12.11")
        .cert_sans(["talos.homelab.lan".to_string()]);

    // A control plane with a static address and the shared VIP.
    let network = StaticNetwork::new("eth0", "192.168.1.11/24")
        .gateway("192.168.1.1".parse()?)
        .nameservers(["192.168.1.1".parse()?])
        .vip("192.168.1.10".parse()?);
    let mut cp = MachineConfig::generate(
        &cluster,
        &secrets,
        MachineType::ControlPlane,
        &NodeInput::default().hostname("cp-1").network(network),
    )?;
    // Patches work like talosctl's --config-patch: strategic merge or RFC 6902.
    cp.apply_patches(&[Patch::parse(
        "machine:\n  kubelet:\n    extraArgs:\n      rotate-server-certificates: \"true\"\n",
        "kubelet.yaml",
    )?])?;
    let warnings = cp.validate()?;
    write_private(&out.join("controlplane.yaml"), cp.to_yaml().as_bytes())?;

    let worker = MachineConfig::generate(
        &cluster,
        &secrets,
        MachineType::Worker,
        &NodeInput::default(),
    )?;
    write_private(&out.join("worker.yaml"), worker.to_yaml().as_bytes())?;

    let tc = admin_talosconfig("homelab", &secrets, &["192.168.1.10".to_string()], &[])?;
    tc.save(&out.join("talosconfig"))?;

    println!("cluster id: {}", secrets.cluster_id);
    for f in [
        "secrets.yaml",
        "controlplane.yaml",
        "worker.yaml",
        "talosconfig",
    ] {
        let len = std::fs::metadata(out.join(f))?.len();
        println!("wrote {} ({len} bytes)", out.join(f).display());
    }
    for w in warnings {
        println!("warning: {w}");
    }
    Ok(())
}
