//! QEMU network-boots from the server (filled in below).
