//! The one integration-test binary of homelab-sim: one module per simulated system.

mod cloudinit;
mod common;
mod factory;
mod fidelity;
mod passthrough;
mod proxmoxer;
mod pve;
mod sftp;
mod talos;
mod vzdump;
