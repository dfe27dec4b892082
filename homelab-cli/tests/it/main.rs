//! The one integration-test binary of homelab-cli: one module per command family.

mod adopt;
mod backups;
mod common;
mod completions;
mod crash;
mod day2;
mod fidelity;
mod handoff;
mod image;
mod lab;
mod layers;
mod membership;
mod pools;
mod proxmox;
mod pxe;
mod sdn;
mod secrets;
mod services;
mod sim;
mod talos;
mod validation;
mod vms;
