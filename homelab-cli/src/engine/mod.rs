//! Observe → plan → apply. The planner and rendering are pure; observation and application
//! talk to Proxmox, the Image Factory and Talos.

pub mod apply;
pub mod backups;
pub mod graph;
pub mod image;
pub mod observe;
pub mod observed;
pub mod pci;
pub mod plan;
pub mod render;
pub mod talos;
