//! The one integration-test binary of homelab-cli: one module per command family.

mod backups;
mod common;
mod completions;
mod image;
mod lab;
mod layers;
mod proxmox;
mod secrets;
mod services;
mod sim;
mod talos;
mod vms;
