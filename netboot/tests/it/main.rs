//! Integration tests: the real server against real clients (busybox udhcpc/udhcpd, tftp-hpa,
//! curl, QEMU's iPXE) in network namespaces the tests create and remove.

mod clients;
mod netns;
mod qemu;
