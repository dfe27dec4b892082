//! The one integration-test binary of homelab-sim: one module per simulated system.

mod factory;
mod passthrough;
mod pve;
mod sftp;
mod talos;
