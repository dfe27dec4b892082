//! Integration tests: the real server against real clients (busybox udhcpc/udhcpd, tftp-hpa,
//! curl, QEMU's iPXE) in network namespaces the tests create and remove.
#![allow(clippy::unwrap_used)]

mod clients;
mod netns;
mod qemu;
