//! Integration tests of `homelab-cli` (secrets).
