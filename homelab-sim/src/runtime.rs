//! The contract between the simulated Proxmox VE and what runs inside its guests.
//!
//! The Proxmox side owns VMs and containers; when a guest starts, stops or is destroyed it
//! tells a [`GuestRuntime`], which may bring up a simulated machine for it (for example a
//! Talos node in maintenance mode listening on its own loopback address). The addresses the
//! runtime returns are what the simulated QEMU guest agent reports.
//!
//! When the simulated Proxmox VE calls the runtime:
//! - [`GuestRuntime::started`]: at the end of a `qmstart`/`vzstart` task (after pending
//!   changes are applied), in a create task with `start=1`, in the second half of a reboot,
//!   and when a lab starts from a state directory in which the guest was running. An `Err`
//!   fails the start task with `start failed: <text>` (a create with `start=1` ends
//!   `WARNINGS: 1` instead) and the guest stays stopped.
//! - [`GuestRuntime::stopped`]: at the end of stop, shutdown, the first half of reboot, and
//!   before `destroyed` when a running guest is destroyed.
//! - [`GuestRuntime::destroyed`]: at the end of a `qmdestroy`/`vzdestroy` task.
//!
//! The addresses `started` returns are reported by `GET .../agent/network-get-interfaces`
//! (on `eth0`, with `net0`'s MAC) once the guest agent is up (`agent=1` and the lab's
//! agent delay elapsed), and by LXC `GET .../interfaces`. Calls come from Tokio worker
//! threads without the state lock held, so implementations may read the lab over its API;
//! the guest's own config lock is held during start/stop tasks (as on PVE), so writing that
//! guest's config from inside a call would wait for the lock timeout.

use std::collections::BTreeMap;
use std::net::IpAddr;

/// Whether a guest is a QEMU virtual machine or an LXC container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestKind {
    /// A QEMU/KVM virtual machine.
    Qemu,
    /// An LXC container.
    Lxc,
}

/// What the simulated Proxmox knows about a guest at the moment it starts.
#[derive(Debug, Clone)]
pub struct GuestStart {
    /// The node the guest runs on.
    pub node: String,
    /// The guest's VMID.
    pub vmid: u32,
    /// The guest's name (`name` for QEMU, `hostname` for LXC).
    pub name: String,
    /// QEMU or LXC.
    pub kind: GuestKind,
    /// The guest's current configuration as Proxmox property strings (`net0`, `ide2`,
    /// `ipconfig0`, ...), pending changes applied.
    pub config: BTreeMap<String, String>,
}

/// Something that runs inside simulated guests.
pub trait GuestRuntime: Send + Sync + std::fmt::Debug + 'static {
    /// A guest has started. Returns the IP addresses its guest agent reports once it is up
    /// (empty when the guest has none, or when the runtime does not manage this guest).
    ///
    /// Called from within a Tokio runtime; implementations may spawn tasks.
    fn started(&self, guest: &GuestStart) -> Result<Vec<IpAddr>, String>;

    /// A guest has stopped (shutdown, stop or reboot's first half).
    fn stopped(&self, node: &str, vmid: u32);

    /// A guest has been destroyed; any state kept for it can go.
    fn destroyed(&self, node: &str, vmid: u32);
}

/// A runtime that runs nothing: guests boot, report no addresses, and stop.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoRuntime;

impl GuestRuntime for NoRuntime {
    fn started(&self, _guest: &GuestStart) -> Result<Vec<IpAddr>, String> {
        Ok(Vec::new())
    }
    fn stopped(&self, _node: &str, _vmid: u32) {}
    fn destroyed(&self, _node: &str, _vmid: u32) {}
}
