//! The SOPS file format with age keys, interoperable with `sops` 3.x.
