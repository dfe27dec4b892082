//! The simulated factory's versions, extension and overlay catalogues. The names and image
//! repositories follow siderolabs/extensions and siderolabs/overlays; tags and digests are
//! generated (deterministic, not the real ones).

use serde::Serialize;
use sha2::{Digest, Sha256};
use talos_factory::TalosVersion;

/// Versions the simulated factory builds.
pub const VERSIONS: &[&str] = &[
    "v1.9.5", "v1.9.6", "v1.10.0", "v1.10.6", "v1.11.0", "v1.11.5", "v1.12.0", "v1.12.1",
    "v1.12.2", "v1.12.11",
];

/// Versions listed by `GET /versions?broken=true` (fictional: the sim marks one as broken
/// so that clients can exercise the listing).
pub const BROKEN_VERSIONS: &[&str] = &["v1.10.1"];

/// Official extensions: (name, author, description, first minor version that ships it).
const EXTENSIONS: &[(&str, &str, &str, u64)] = &[
    (
        "siderolabs/amd-ucode",
        "Sidero Labs",
        "AMD CPU microcode updates",
        5,
    ),
    (
        "siderolabs/binfmt-misc",
        "Sidero Labs",
        "binfmt_misc kernel module",
        5,
    ),
    (
        "siderolabs/btrfs",
        "Sidero Labs",
        "btrfs filesystem driver",
        7,
    ),
    ("siderolabs/drbd", "Sidero Labs", "DRBD kernel module", 5),
    (
        "siderolabs/fuse3",
        "Sidero Labs",
        "FUSE 3 userspace tools",
        5,
    ),
    (
        "siderolabs/gvisor",
        "Sidero Labs",
        "gVisor container runtime",
        5,
    ),
    (
        "siderolabs/i915",
        "Sidero Labs",
        "Intel i915 GPU firmware and driver",
        8,
    ),
    (
        "siderolabs/intel-ucode",
        "Sidero Labs",
        "Intel CPU microcode updates",
        5,
    ),
    (
        "siderolabs/iscsi-tools",
        "Sidero Labs",
        "open-iscsi tools",
        5,
    ),
    (
        "siderolabs/mdadm",
        "Sidero Labs",
        "Linux software RAID tools",
        7,
    ),
    (
        "siderolabs/nfsd",
        "Sidero Labs",
        "NFS server kernel modules",
        6,
    ),
    (
        "siderolabs/nfsrahead",
        "Sidero Labs",
        "NFS readahead tuning",
        8,
    ),
    (
        "siderolabs/nut-client",
        "Sidero Labs",
        "Network UPS Tools client",
        5,
    ),
    (
        "siderolabs/nvidia-container-toolkit-production",
        "Sidero Labs",
        "NVIDIA container toolkit",
        5,
    ),
    (
        "siderolabs/qemu-guest-agent",
        "Markus Reiter",
        "QEMU guest agent for Proxmox and libvirt",
        5,
    ),
    ("siderolabs/tailscale", "Sidero Labs", "Tailscale VPN", 5),
    (
        "siderolabs/util-linux-tools",
        "Sidero Labs",
        "util-linux tools (fstrim, lsblk...)",
        5,
    ),
    (
        "siderolabs/zfs",
        "Sidero Labs",
        "OpenZFS kernel module and tools",
        5,
    ),
];

/// Official overlays: (name, image), from Talos 1.7 on.
const OVERLAYS: &[(&str, &str)] = &[
    ("rock4cplus", "siderolabs/sbc-rockchip"),
    ("rpi_generic", "siderolabs/sbc-raspberrypi"),
    ("rpi_5", "siderolabs/sbc-raspberrypi"),
    ("turingrk1", "siderolabs/sbc-rockchip"),
];

/// One entry of `GET /version/{v}/extensions/official`.
#[derive(Debug, Clone, Serialize)]
pub struct Extension {
    /// e.g. `siderolabs/qemu-guest-agent`.
    pub name: String,
    /// Image reference.
    #[serde(rename = "ref")]
    pub reference: String,
    /// `sha256:...`.
    pub digest: String,
    /// Author.
    pub author: String,
    /// Description.
    pub description: String,
}

/// One entry of `GET /version/{v}/overlays/official`.
#[derive(Debug, Clone, Serialize)]
pub struct OverlayEntry {
    /// Overlay name.
    pub name: String,
    /// Overlay image.
    pub image: String,
    /// Image reference.
    #[serde(rename = "ref")]
    pub reference: String,
    /// `sha256:...`.
    pub digest: String,
}

/// Whether the simulated factory knows this version.
pub fn known_version(v: &TalosVersion) -> bool {
    VERSIONS.iter().any(|k| *k == v.to_string())
}

fn digest(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

/// The extension catalogue for a version.
pub fn extensions(v: &TalosVersion) -> Vec<Extension> {
    EXTENSIONS
        .iter()
        .filter(|(_, _, _, since)| v.major > 1 || v.minor >= *since)
        .map(|(name, author, description, _)| {
            let short = name.rsplit('/').next().unwrap_or(name);
            let tag = format!("{}-{}", short.len() % 7 + 1, v);
            let reference = format!("ghcr.io/{name}:{tag}");
            Extension {
                name: (*name).to_owned(),
                digest: digest(&[&reference]),
                reference,
                author: (*author).to_owned(),
                description: (*description).to_owned(),
            }
        })
        .collect()
}

/// The overlay catalogue for a version (empty before 1.7).
pub fn overlays(v: &TalosVersion) -> Vec<OverlayEntry> {
    if v.major == 1 && v.minor < 7 {
        return Vec::new();
    }
    OVERLAYS
        .iter()
        .map(|(name, image)| {
            let reference = format!("ghcr.io/{image}:v0.1.{}", v.minor);
            OverlayEntry {
                name: (*name).to_owned(),
                image: (*image).to_owned(),
                digest: digest(&[&reference, name]),
                reference,
            }
        })
        .collect()
}
