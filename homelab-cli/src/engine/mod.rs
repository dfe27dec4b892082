//! Observe → plan → apply. The planner and rendering are pure; observation and application
//! talk to Proxmox, the Image Factory and Talos.

pub mod apply;
pub mod backups;
pub mod certs;
pub mod config_apply;
pub mod config_change;
pub mod day2;
pub mod etcd_backup;
pub mod graph;
pub mod guest_pools;
pub mod image;
pub mod k8s_upgrade;
pub mod membership;
pub mod metal;
pub mod metal_config;
pub mod observe;
pub mod observed;
pub mod pci;
pub mod plan;
pub mod pools;
pub mod recover;
pub mod render;
pub mod restore;
pub mod rolling;
pub mod sdn;
pub mod storage_check;
pub mod storages;
pub mod talos;
pub mod waits;
