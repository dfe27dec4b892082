//! The guest lifecycle through the typed handle, shared by the `guest_lifecycle` example and
//! its test: create a VM and wait for its task, clone it, then destroy both.

use proxmox_client::guest::{CloneOptions, DestroyOptions, GuestCreate};
use proxmox_client::property::{QemuDisk, QemuNet};
use proxmox_client::requests::{QemuCreate, QemuOptions};
use proxmox_client::{Client, GuestKind, TaskOutcome, WaitOptions};

/// What happened, for printing and for the test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lifecycle {
    /// The VM created.
    pub vmid: u32,
    /// Its clone.
    pub clone: u32,
    /// The clone's name as its config reads.
    pub clone_name: Option<String>,
    /// Progress callbacks seen while waiting for the clone task.
    pub progress_polls: usize,
    /// One line per step.
    pub log: Vec<String>,
}

/// Creates VM `vmid` on `node` (a `size_gib` disk on `storage`, a NIC on `bridge`), clones
/// it to `clone`, and destroys both, waiting for every task.
pub async fn run(
    client: &Client,
    node: &str,
    storage: &str,
    bridge: &str,
    vmid: u32,
    clone: u32,
) -> proxmox_client::Result<Lifecycle> {
    let wait = WaitOptions::default();
    let mut log = Vec::new();
    let n = client.node(node);

    let mut options = QemuOptions {
        name: Some(format!("example-{vmid}")),
        memory: Some(1024),
        cores: Some(1),
        ..Default::default()
    };
    options
        .disks
        .insert("scsi0".into(), QemuDisk::new_volume(storage, 4));
    options.net.insert(0, QemuNet::virtio(bridge));
    let create = GuestCreate::qemu(&QemuCreate {
        vmid,
        options,
        ..Default::default()
    })?;
    let task = n.create_guest(GuestKind::Qemu, &create).await?;
    let outcome = task.wait(&wait).await?;
    log.push(format!(
        "created VM {vmid} on {node}: {}",
        describe(&outcome)
    ));

    let vm = n.guest(GuestKind::Qemu, vmid);
    let task = vm
        .clone_to(&CloneOptions {
            newid: clone,
            name: Some(format!("example-{clone}")),
            full: Some(true),
            ..Default::default()
        })
        .await?;
    let mut polls = 0;
    let outcome = task
        // A real tool would move a progress bar here (elapsed vs deadline).
        .wait_with_progress(&wait, |_progress| polls += 1)
        .await?;
    log.push(format!("cloned {vmid} to {clone}: {}", describe(&outcome)));
    let copy = n.guest(GuestKind::Qemu, clone);
    let clone_name = copy.config().await?.get_str("name");

    for g in [&copy, &vm] {
        let outcome = g
            .destroy(&DestroyOptions::everything())
            .await?
            .wait(&wait)
            .await?;
        log.push(format!("destroyed {}: {}", g.vmid(), describe(&outcome)));
    }
    Ok(Lifecycle {
        vmid,
        clone,
        clone_name,
        progress_polls: polls,
        log,
    })
}

fn describe(o: &TaskOutcome) -> String {
    match o {
        TaskOutcome::Ok => "OK".into(),
        TaskOutcome::Warnings(n) => format!("{n} warning(s)"),
    }
}
