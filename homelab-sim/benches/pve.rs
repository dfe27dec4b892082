//! Throughput of the simulated Proxmox VE over pinned TLS: creating 100 VMs (requests and
//! tasks), reading the full state through `/cluster/resources` versus per-guest calls.
//! Prints figures; `cargo bench -p homelab-sim`.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use homelab_sim::lab::Lab;
use homelab_sim::tls::PinnedVerifier;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let lab = Lab::builder()
        .task_duration(Duration::from_millis(5))
        .start()
        .await
        .unwrap();
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(
            PinnedVerifier::new(&lab.fingerprint())
                .unwrap()
                .client_config()
                .unwrap(),
        )
        .build()
        .unwrap();
    let api = lab.api_url();
    let auth = lab.authorization();
    let get = |path: String| {
        let client = client.clone();
        let auth = auth.clone();
        let url = format!("{api}{path}");
        async move {
            let r = client
                .get(url)
                .header("Authorization", auth)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success());
            r.json::<serde_json::Value>().await.unwrap()
        }
    };

    let t = Instant::now();
    let mut upids = Vec::new();
    for vmid in 100..200 {
        let vmid = vmid.to_string();
        let r = client
            .post(format!("{api}/nodes/pve/qemu"))
            .header("Authorization", &auth)
            .form(&[
                ("vmid", vmid.as_str()),
                ("name", "bench"),
                ("memory", "2048"),
                ("net0", "virtio,bridge=vmbr0"),
                ("scsi0", "local-lvm:8"),
                ("tags", "bench"),
            ])
            .send()
            .await
            .unwrap();
        let v: serde_json::Value = r.json().await.unwrap();
        upids.push(v["data"].as_str().unwrap().to_string());
    }
    let submitted = t.elapsed();
    for upid in &upids {
        let path = format!(
            "/nodes/pve/tasks/{}/status",
            url::form_urlencoded::byte_serialize(upid.as_bytes()).collect::<String>()
        );
        loop {
            let v = get(path.clone()).await;
            if v["data"]["status"] == "stopped" {
                assert_eq!(v["data"]["exitstatus"], "OK");
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let created = t.elapsed();
    lab.refresh_stats();

    let before = lab.requests().total;
    let t = Instant::now();
    const ROUNDS: u32 = 50;
    for _ in 0..ROUNDS {
        let v = get("/cluster/resources?type=vm".into()).await;
        assert_eq!(v["data"].as_array().unwrap().len(), 100);
    }
    let bulk = t.elapsed() / ROUNDS;
    let bulk_calls = (lab.requests().total - before) / u64::from(ROUNDS);

    let before = lab.requests().total;
    let t = Instant::now();
    for vmid in 100..200 {
        get(format!("/nodes/pve/qemu/{vmid}/config")).await;
        get(format!("/nodes/pve/qemu/{vmid}/status/current")).await;
    }
    let per_guest = t.elapsed();
    let per_guest_calls = lab.requests().total - before;

    println!("homelab-sim pve bench (100 VMs, pinned TLS, keep-alive)");
    println!(
        "  create: 100 requests submitted in {submitted:?} ({:.0} req/s), all tasks OK after {created:?}",
        100.0 / submitted.as_secs_f64()
    );
    println!("  full state via /cluster/resources: {bulk_calls} call, {bulk:?} per read");
    println!("  full state per guest (config + status): {per_guest_calls} calls, {per_guest:?}");
    println!("  requests served: {:?}", lab.requests());
    lab.shutdown().await;
}
