//! The one integration-test binary of homelab-cli: one module per command family.

mod adopt;
mod adopt_vm;
mod backups;
mod common;
mod completions;
mod crash;
mod day2;
mod etcd_backup;
mod day2_config;
mod fidelity;
mod handoff;
mod image;
mod k8s;
mod lab;
mod layers;
mod metal;
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
