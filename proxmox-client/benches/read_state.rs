//! How many API calls and how much wall time it takes to read the full state of a
//! simulated node with 100 guests: the typed client reads it from `/cluster/resources` in a
//! constant number of calls; the per-guest way (config + status for each guest, what
//! Terraform's provider does on refresh) is shown for comparison.
//!
//! `cargo bench -p proxmox-client --bench read_state`

use std::time::{Duration, Instant};

use homelab_sim::lab::Lab;
use proxmox_client::property::{QemuDisk, QemuNet};
use proxmox_client::requests::{QemuCreate, QemuOptions};
use proxmox_client::{Client, ResourceFilter, WaitOptions};

const GUESTS: u32 = 100;
const ROUNDS: usize = 20;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let lab = Lab::builder()
        .task_duration(Duration::from_millis(1))
        .stats_interval(Duration::from_millis(100))
        .start()
        .await?;
    let client = Client::builder()
        .base_url(lab.pve_url())
        .api_token(lab.token_id(), lab.token_secret())
        .pin_fingerprint(lab.fingerprint())
        .build()?;
    let node = client.node("pve");
    let wait = WaitOptions {
        initial_interval: Duration::from_millis(2),
        max_interval: Duration::from_millis(20),
        deadline: Duration::from_secs(60),
    };
    let setup = Instant::now();
    for i in 0..GUESTS {
        let vmid = 100 + i;
        let mut options = QemuOptions {
            name: Some(format!("guest-{vmid}")),
            memory: Some(1024),
            tags: Some(vec!["bench".into()]),
            ..Default::default()
        };
        options
            .disks
            .insert("scsi0".into(), QemuDisk::new_volume("local-lvm", 4));
        options.net.insert(0, QemuNet::virtio("vmbr0"));
        let upid = node
            .qemu_create(&QemuCreate {
                vmid,
                options,
                ..Default::default()
            })
            .await?;
        client.wait_task(&upid, &wait).await?;
    }
    lab.refresh_stats();
    println!(
        "setup: created {GUESTS} VMs in {:.2?} ({} API calls)",
        setup.elapsed(),
        client.request_count()
    );

    // Typed client: the whole node in one call.
    let mut times = Vec::new();
    let mut calls = 0;
    for _ in 0..ROUNDS {
        let before = lab.requests().total;
        let t = Instant::now();
        let res = client.cluster_resources(None).await?;
        times.push(t.elapsed());
        calls = lab.requests().total - before;
        let guests = res
            .iter()
            .filter(|r| r.kind == "qemu" || r.kind == "lxc")
            .count();
        assert_eq!(guests as u32, GUESTS, "cluster resources lists every guest");
    }
    println!(
        "cluster/resources: {calls} API call(s) per full read of {GUESTS} guests, median {:.2?} over {ROUNDS} rounds",
        median(times)
    );
    let mut times = Vec::new();
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let vms = client.cluster_resources(Some(ResourceFilter::Vm)).await?;
        times.push(t.elapsed());
        assert_eq!(vms.len() as u32, GUESTS);
    }
    println!(
        "cluster/resources?type=vm: 1 API call, median {:.2?} over {ROUNDS} rounds",
        median(times)
    );

    // Per-guest reads, for comparison.
    let before = lab.requests().total;
    let t = Instant::now();
    for g in node.qemu_list().await? {
        let vm = node.qemu(g.vmid);
        vm.config().await?;
        vm.status().await?;
    }
    println!(
        "per-guest (list + config + status each): {} API calls, {:.2?}",
        lab.requests().total - before,
        t.elapsed()
    );
    lab.shutdown().await;
    Ok(())
}
