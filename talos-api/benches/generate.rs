//! Timings of secrets and config generation (run with `cargo bench -p talos-api`).

use std::time::Instant;

use talos_api::config::{ClusterInput, MachineConfig, MachineType, NodeInput};
use talos_api::secrets::{SecretsBundle, SecretsOptions, ServiceAccountKeyKind};

fn time<T>(name: &str, n: u32, mut f: impl FnMut() -> T) {
    let start = Instant::now();
    for _ in 0..n {
        std::hint::black_box(f());
    }
    let per = start.elapsed() / n;
    println!(
        "{name:<48} {:>10.3} ms/iter ({n} iters)",
        per.as_secs_f64() * 1e3
    );
}

fn main() -> Result<(), talos_api::Error> {
    let ecdsa = SecretsOptions::default().service_account(ServiceAccountKeyKind::EcdsaP256);
    time("secrets bundle (ECDSA service-account key)", 20, || {
        SecretsBundle::generate_with(&ecdsa)
    });
    time(
        "secrets bundle (RSA-4096, Talos 1.12 default)",
        3,
        SecretsBundle::generate,
    );
    let secrets = SecretsBundle::generate_with(&ecdsa)?;
    let cluster = ClusterInput::new("bench", "https://10.0.0.10:6443")?;
    time("controlplane config generate + YAML", 200, || {
        MachineConfig::generate(
            &cluster,
            &secrets,
            MachineType::ControlPlane,
            &NodeInput::default(),
        )
        .map(|c| c.to_yaml().len())
    });
    let yaml = MachineConfig::generate(
        &cluster,
        &secrets,
        MachineType::ControlPlane,
        &NodeInput::default(),
    )?
    .to_yaml();
    time("controlplane config parse + validate", 200, || {
        MachineConfig::from_yaml(&yaml, "bench").and_then(|c| c.validate())
    });
    time("secrets.yaml parse + validate", 200, || {
        SecretsBundle::from_yaml(&secrets.to_yaml(), "bench")
    });
    Ok(())
}
