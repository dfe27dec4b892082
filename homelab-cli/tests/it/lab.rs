//! Integration tests of `homelab-cli` (lab).
