//! Integration tests of `homelab-cli` (talos).
