//! The one integration-test binary of homelab-cli: one module per command family.

mod adopt;
mod backups;
mod common;
mod fidelity;
mod handoff;
mod day2;
mod crash;
mod image;
mod lab;
mod layers;
mod proxmox;
mod sdn;
mod pxe;
mod secrets;
mod services;
mod sim;
mod talos;
mod validation;
mod vms;
