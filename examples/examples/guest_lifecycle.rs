//! Create a VM, wait for its task, clone it, destroy both: the guest handle of
//! `proxmox-client` (`node.guest(GuestKind::Qemu, vmid)`), where every change is a `Task`.
//!
//! Without `PROXMOX_VE_ENDPOINT` the example starts an in-process simulated Proxmox VE.
//! Against a real node set `PROXMOX_VE_ENDPOINT`, `PROXMOX_VE_API_TOKEN` and
//! `PROXMOX_VE_FINGERPRINT` (see `proxmox_guests`), and optionally `PROXMOX_VE_NODE`,
//! `PROXMOX_VE_STORAGE` (default `local-lvm`), `PROXMOX_VE_BRIDGE` (default `vmbr0`).
//!
//! ```text
//! cargo run -p homelab-examples --example guest_lifecycle
//! ```

use proxmox_client::Client;

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let (client, _lab) = match std::env::var(proxmox_client::ENV_ENDPOINT) {
        Ok(url) if !url.is_empty() => (Client::from_env()?, None),
        _ => {
            println!("starting an in-process simulated Proxmox VE");
            let lab = homelab_sim::lab::Lab::builder().start().await?;
            let client = Client::builder()
                .base_url(lab.pve_url())
                .api_token(lab.token_id(), lab.token_secret())
                .pin_fingerprint(lab.fingerprint())
                .build()?;
            (client, Some(lab))
        }
    };
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
    // nextid reserves nothing: the clone takes the next number up.
    let clone = vmid + 1;
    let done =
        homelab_examples::guest_lifecycle::run(&client, &node, &storage, &bridge, vmid, clone)
            .await?;
    for line in &done.log {
        println!("{line}");
    }
    Ok(())
}
