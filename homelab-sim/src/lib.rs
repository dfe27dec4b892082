//! A simulated homelab served on loopback: a stateful Proxmox VE API (`pve`), a Talos Image
//! Factory (`factory`) and Talos nodes (`talos`), so that the clients, the CLI and users' own
//! tests run end to end without hardware.

pub mod factory;
pub mod pve;
pub mod runtime;
pub mod talos;
