//! List guests, create a VM, and wait for its task, with `proxmox-client`.
//!
//! Against the simulator:
//!
//! ```text
//! homelab-cli sim serve            # prints {"api_url", "endpoint", "token_id", "token_secret", "fingerprint", ...}
//! export PROXMOX_VE_ENDPOINT=https://127.0.0.1:8006
//! export PROXMOX_VE_API_TOKEN='<token_id>=<token_secret>'
//! export PROXMOX_VE_FINGERPRINT=<fingerprint>
//! cargo run -p homelab-examples --example proxmox_guests
//! ```
//!
//! Without `PROXMOX_VE_ENDPOINT` the example starts an in-process simulated Proxmox VE
//! (`homelab_sim::lab::Lab`) and talks to it the same way (pinned TLS, API token).
//!
//! Against a real node, pin its certificate with `PROXMOX_VE_FINGERPRINT` (shown by
//! `pvenode cert info`), or trust a CA with `PROXMOX_VE_CA_FILE`. Optional:
//! `PROXMOX_VE_NODE` (default: the first online node), `PROXMOX_VE_STORAGE` (default
//! `local-lvm`), `PROXMOX_VE_BRIDGE` (default `vmbr0`).

use proxmox_client::property::{QemuDisk, QemuNet};
use proxmox_client::requests::{QemuCreate, QemuOptions};
use proxmox_client::{Client, ResourceFilter, TaskOutcome, WaitOptions};

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    // Keep the in-process lab (if any) alive until the end.
    let (client, _lab) = match std::env::var(proxmox_client::ENV_ENDPOINT) {
        Ok(url) if !url.is_empty() => (Client::from_env()?, None),
        _ => {
            println!(
                "{} is not set: starting an in-process simulated Proxmox VE",
                proxmox_client::ENV_ENDPOINT
            );
            let lab = homelab_sim::lab::Lab::builder().start().await?;
            let client = Client::builder()
                .base_url(lab.pve_url())
                .api_token(lab.token_id(), lab.token_secret())
                .pin_fingerprint(lab.fingerprint())
                .build()?;
            (client, Some(lab))
        }
    };
    let version = client.version().await?;
    println!("Proxmox VE {} at {}", version.version, client.base_url());

    // One call for the whole cluster's guests, however many there are.
    let guests = client.cluster_resources(Some(ResourceFilter::Vm)).await?;
    println!(
        "{:>6}  {:<6}  {:<10}  {:<8}  NAME",
        "VMID", "TYPE", "NODE", "STATUS"
    );
    for g in &guests {
        println!(
            "{:>6}  {:<6}  {:<10}  {:<8}  {}",
            g.vmid.unwrap_or_default(),
            g.kind,
            g.node.as_deref().unwrap_or("-"),
            g.status.as_deref().unwrap_or("-"),
            g.name.as_deref().unwrap_or("")
        );
    }

    let node = match std::env::var("PROXMOX_VE_NODE") {
        Ok(n) if !n.is_empty() => n,
        _ => client
            .nodes()
            .await?
            .into_iter()
            .find(|n| n.status == "online")
            .map(|n| n.node)
            .ok_or_else(|| proxmox_client::Error::Config("no online node".into()))?,
    };
    let storage = std::env::var("PROXMOX_VE_STORAGE").unwrap_or_else(|_| "local-lvm".into());
    let bridge = std::env::var("PROXMOX_VE_BRIDGE").unwrap_or_else(|_| "vmbr0".into());

    let vmid = client.next_id(None).await?;
    let mut options = QemuOptions {
        name: Some(format!("example-{vmid}")),
        memory: Some(1024),
        cores: Some(1),
        tags: Some(vec!["homelab-example".into()]),
        ..Default::default()
    };
    options
        .disks
        .insert("scsi0".into(), QemuDisk::new_volume(&storage, 4));
    options.net.insert(0, QemuNet::virtio(&bridge));
    let upid = client
        .node(&node)
        .qemu_create(&QemuCreate {
            vmid,
            options,
            ..Default::default()
        })
        .await?;
    println!("creating VM {vmid} on {node}: task {upid}");
    match client.wait_task(&upid, &WaitOptions::default()).await? {
        TaskOutcome::Ok => println!("VM {vmid} created"),
        TaskOutcome::Warnings(n) => println!("VM {vmid} created with {n} warning(s)"),
    }
    let config = client.node(&node).qemu(vmid).config().await?;
    if let Some(Ok(net)) = config.get_parsed::<QemuNet>("net0") {
        println!(
            "net0: {} on {} (MAC {})",
            net.model,
            net.bridge.as_deref().unwrap_or("-"),
            net.macaddr.as_deref().unwrap_or("-")
        );
    }
    Ok(())
}
