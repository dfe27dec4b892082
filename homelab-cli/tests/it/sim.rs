//! Integration tests of `homelab-cli` (sim).
