//! Integration tests for proxmox-client.
