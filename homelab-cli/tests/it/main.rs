//! The one integration-test binary of homelab-cli: one module per command family.

mod image;
mod lab;
mod proxmox;
mod secrets;
mod services;
mod sim;
mod talos;
