//! Integration tests of `homelab-cli` (image).
