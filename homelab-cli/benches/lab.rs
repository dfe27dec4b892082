//! Benchmarks of issue 6 on the simulated lab (prints figures; `cargo bench -p homelab-cli`).
//!
//! 1. A no-op `plan` for 100 declared guests: how many Proxmox API round trips it takes
//!    (target: at most 3), counted by the simulator.
//! 2. `up` of 3 control planes + 3 workers with 50 ms injected latency per Proxmox API call:
//!    wall time against the critical path of the step graph (target: at most 1.2×).
//! 3. Issue 7: `up` of the vm-fleet example grown to 50 VMs (image downloads, a gold
//!    template, linked clones, vendor-data snippets over SFTP, a PCI mapping) with 20 ms
//!    latency per call: wall time against the critical path, then how many requests a no-op
//!    plan of the 50 VMs takes (target: the same 6 as for the 6-VM example).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use homelab_cli::engine::apply::{self, Env, Timeouts};
use homelab_cli::engine::graph::{self, Outcome, Quiet};
use homelab_cli::engine::image::FactoryNaming;
use homelab_cli::engine::observed::TalosObserved;
use homelab_cli::engine::{observe, plan};
use homelab_cli::model;
use homelab_cli::model::desired;
use homelab_cli::model::secrets::SecretValues;
use homelab_cli::session::{Session, SimArgs};

fn main() {
    // `cargo bench -p homelab-cli --bench lab -- vm_fleet` runs only the benches whose
    // name contains the filter (cargo itself passes `--bench`, which is not one).
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let run = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f));
    let rt = tokio::runtime::Runtime::new().unwrap();
    if run("noop_plan_100_guests") {
        rt.block_on(noop_plan_round_trips());
    }
    if run("up_3cp_3w") {
        rt.block_on(up_against_critical_path());
    }
    if run("vm_fleet") {
        rt.block_on(vm_fleet_at_scale());
    }
}

async fn vm_fleet_at_scale() {
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/vm-fleet");
    for f in [
        "homelab.yaml",
        "demo-age-key.txt",
        ".sops.yaml",
        "secrets.enc.yaml",
    ] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    let config = dir.path().join("homelab.yaml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    // 44 more small linked clones (VMIDs 206..=249), each with its own snippet.
    for i in 0..44 {
        let _ = write!(
            text,
            "\n    - {{ name: extra-{i}, preset: small, clone: debian-12-gold, ip: 10.0.21.{}/24 }}",
            10 + i
        );
    }
    text.push('\n');
    std::fs::write(&config, text).unwrap();
    let sim = SimArgs {
        simulate: true,
        sim_latency_ms: Some(20),
    };
    let session = Session::open(&config, &sim).await.unwrap();
    let planned = session.plan().await.unwrap();
    let t = Instant::now();
    let applied = homelab_cli::apply_plan(&session, &planned, 8, &Quiet)
        .await
        .unwrap();
    let wall = t.elapsed();
    let ok = applied
        .finished
        .iter()
        .all(|f| matches!(f.outcome, Outcome::Done { .. }));
    let cp = graph::critical_path(&applied.finished);
    // With more steps than workers the bound is the work divided among them.
    let work: Duration = applied.finished.iter().map(|f| f.elapsed).sum();
    let bound = cp.max(work / 8);
    // Like pvestatd's next broadcast: the resource list catches up with what `up` did.
    if let Some(s) = &session.sim {
        s.lab.refresh_stats();
    }
    let before = session.sim.as_ref().map(|s| s.requests());
    let again = session.plan().await.unwrap();
    for a in &again.plan.actions {
        eprintln!("  left over: {a:?}");
    }
    let after = session.sim.as_ref().map(|s| s.requests());
    let (total, mutating) = match (before, after) {
        (Some(b), Some(a)) => (a.total - b.total, a.mutating - b.mutating),
        _ => (0, 0),
    };
    println!(
        "bench up_vm_fleet_50_latency20ms: {} steps, all ok = {ok}; wall {:.2}s, critical path {:.2}s, work/8 {:.2}s, wall/bound {:.2} (parallelism 8); no-op plan: {} action(s), {total} request(s) (target 6), {mutating} mutating",
        applied.finished.len(),
        wall.as_secs_f64(),
        cp.as_secs_f64(),
        (work / 8).as_secs_f64(),
        wall.as_secs_f64() / bound.as_secs_f64().max(1e-9),
        again.plan.actions.len(),
    );
    session.close().await;
}

/// A config with `n` Talos nodes (the planner treats every guest alike).
fn many_guests(n: u32) -> String {
    let mut s = String::from(
        "name: bench\nproxmox:\n  endpoint: https://127.0.0.1:8006\n  token_id: a@pve!b\n  token_secret: ${secret:t}\n  node: pve\ntalos:\n  version: v1.12.0\n  extensions: [siderolabs/qemu-guest-agent]\n  cluster: { name: bench, endpoint: \"https://127.0.0.1:6443\" }\n  nodes:\n",
    );
    for i in 0..n {
        let _ = writeln!(
            s,
            "    - {{ name: n{i}, vmid: {}, role: {}, cores: 2, memory: 2GiB, disk: 10GiB }}",
            1000 + i,
            if i == 0 { "controlplane" } else { "worker" }
        );
    }
    s
}

async fn noop_plan_round_trips() {
    // No guest runtime: these guests boot nothing, only Proxmox is measured.
    let lab = homelab_sim::lab::Lab::builder().start().await.unwrap();
    let factory = homelab_sim::factory::FactorySim::start(
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        None,
    )
    .await
    .unwrap();
    let factory_naming = FactoryNaming {
        base: url::Url::parse(&factory.base_url()).ok(),
    };
    let loaded = model::parse(Path::new("bench/homelab.yaml"), many_guests(100)).unwrap();
    let secrets = SecretValues::from_pairs([("t".to_string(), "x".to_string())]);
    let mut d = desired::resolve(&loaded, &secrets, &factory_naming).unwrap();
    d.proxmox.endpoint = lab.pve_url();
    d.proxmox.token_id = lab.token_id().into();
    d.proxmox.token_secret = lab.token_secret().to_string().into();
    d.proxmox.fingerprint = Some(lab.fingerprint());
    let client = homelab_cli::session::connect(&d).unwrap();
    // Converge: download the ISO once and create the 100 guests.
    let observed = observe::observe(&client, &d).await.unwrap();
    let p = plan::plan(&d, &observed).unwrap();
    let env = Arc::new(Env {
        pve_root: None,
        pve: client.clone(),
        factory: Some(
            talos_factory::FactoryClient::builder()
                .base_url(factory.base_url())
                .build()
                .unwrap(),
        ),
        desired: d.clone(),
        observed,
        bundle: Arc::default(),
        bundle_store: None,
        timeouts: Timeouts::default(),
        metal: None,
    });
    let mut steps = apply::steps(&env, &p);
    // Proxmox only: no Talos steps.
    steps.retain(|s| s.id.starts_with("guest:") || s.id.starts_with("iso:") || s.id == "schematic");
    let t = Instant::now();
    let finished = graph::run(steps, 16, &Quiet).await;
    let created = finished
        .iter()
        .filter(|f| f.id.starts_with("guest:") && matches!(f.outcome, Outcome::Done { .. }))
        .count();
    lab.refresh_stats();
    let before = lab.requests();
    let observed = observe::observe(&client, &d).await.unwrap();
    let p = plan::plan(&d, &observed).unwrap();
    let p = plan::plan_talos(
        &desired::Desired {
            talos: None,
            ..d.clone()
        },
        &TalosObserved::default(),
        p,
    );
    let after = lab.requests();
    println!(
        "bench noop_plan_100_guests: created {created} guests in {:.1}s; no-op plan: {} action(s), {} Proxmox API round trip(s) (target <= 3), {} mutating",
        t.elapsed().as_secs_f64(),
        p.actions
            .iter()
            .filter(|a| !matches!(a, plan::Action::DownloadIso { .. }))
            .count(),
        after.total - before.total,
        after.mutating - before.mutating,
    );
    factory.shutdown().await;
    lab.shutdown().await;
}

async fn up_against_critical_path() {
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/multi-node");
    for f in [
        "homelab.yaml",
        "demo-age-key.txt",
        ".sops.yaml",
        "secrets.enc.yaml",
    ] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    // Own loopback addresses so the bench never meets a test's nodes.
    let key = dir.path().join("demo-age-key.txt");
    let mut ids = sops_age::Identities::new();
    ids.add_file(&key).unwrap();
    let sec = dir.path().join("secrets.enc.yaml");
    let plain =
        sops_age::decrypt(&std::fs::read(&sec).unwrap(), sops_age::Format::Yaml, &ids).unwrap();
    let text = String::from_utf8(plain.to_vec())
        .unwrap()
        .replace("127.0.20.", "127.64.3.");
    let public = std::fs::read_to_string(&key)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("# public key: ").map(str::to_string))
        .unwrap();
    let opts = sops_age::EncryptOptions::new(vec![sops_age::Recipient::parse(&public).unwrap()]);
    std::fs::write(
        &sec,
        sops_age::encrypt(text.as_bytes(), sops_age::Format::Yaml, &opts).unwrap(),
    )
    .unwrap();

    let sim = SimArgs {
        simulate: true,
        sim_latency_ms: Some(50),
    };
    let session = Session::open(&dir.path().join("homelab.yaml"), &sim)
        .await
        .unwrap();
    let planned = session.plan().await.unwrap();
    let t = Instant::now();
    let applied = homelab_cli::apply_plan(&session, &planned, 8, &Quiet)
        .await
        .unwrap();
    let wall = t.elapsed();
    let ok = applied
        .finished
        .iter()
        .all(|f| matches!(f.outcome, Outcome::Done { .. }));
    let steps_wall: Duration = applied
        .finished
        .iter()
        .map(|f| f.elapsed)
        .max()
        .unwrap_or_default();
    let cp = graph::critical_path(&applied.finished);
    let requests = session.sim.as_ref().map(|s| s.requests());
    println!(
        "bench up_3cp_3w_latency50ms: all steps ok = {ok}; wall {:.2}s, critical path {:.2}s, ratio {:.2} (target <= 1.2); longest step {:.2}s; Proxmox requests {:?}",
        wall.as_secs_f64(),
        cp.as_secs_f64(),
        wall.as_secs_f64() / cp.as_secs_f64().max(1e-9),
        steps_wall.as_secs_f64(),
        requests,
    );
    session.close().await;
}
