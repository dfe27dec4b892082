//! The simulated Proxmox VE API.
