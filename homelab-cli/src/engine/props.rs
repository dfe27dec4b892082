//! Proxmox property strings (`virtio=BC:24:11:00:00:01,bridge=vmbr0`) in a canonical form, so
//! that what we send and what Proxmox reports back compare equal when they mean the same.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::config::Size;

/// NIC models: their value is the MAC address Proxmox generated.
const NIC_MODELS: &[&str] = &["virtio", "e1000", "e1000e", "rtl8139", "vmxnet3"];

/// Canonical form of a managed configuration value.
pub fn canon(key: &str, value: &str) -> String {
    let value = value.trim();
    match key {
        "tags" => canon_tags(value).into_iter().collect::<Vec<_>>().join(";"),
        "description" => value.trim_end().to_string(),
        "agent" => {
            let mut parts = split(value);
            if let Some((k, v)) = parts.first_mut()
                && v.is_none()
            {
                *v = Some(k.clone());
                *k = "enabled".into();
            }
            normalize_bool_keys(&mut parts, &["enabled", "fstrim_cloned_disks"]);
            join_sorted(parts, 0)
        }
        "ide2" | "ide0" | "ide1" | "ide3" | "sata0" => {
            // A CD-ROM: drop the size Proxmox adds.
            let parts: Vec<_> = split(value)
                .into_iter()
                .filter(|(k, _)| k != "size")
                .collect();
            join_sorted(parts, 1)
        }
        k if k.starts_with("net") && is_lxc_net(value) => {
            // A container NIC: the MAC Proxmox generated and the default type do not count.
            let parts: Vec<_> = split(value)
                .into_iter()
                .filter(|(k, v)| k != "hwaddr" && !(k == "type" && v.as_deref() == Some("veth")))
                .collect();
            join_sorted(parts, 0)
        }
        "features" => {
            let mut parts = split(value);
            normalize_bool_keys(
                &mut parts,
                &["nesting", "keyctl", "fuse", "mknod", "force_rw_sys"],
            );
            // `x=0` is the same as not setting it.
            parts.retain(|(_, v)| v.as_deref() != Some("0"));
            join_sorted(parts, 0)
        }
        "startup" => join_sorted(split(value), 0),
        k if is_numbered(k, "dev") => join_sorted(split(value), 1),
        "unprivileged" => match value {
            "true" | "on" | "yes" => "1".into(),
            "false" | "off" | "no" => "0".into(),
            v => v.to_string(),
        },
        k if k.starts_with("net") => {
            let mut parts = split(value);
            if let Some((m, mac)) = parts.first_mut()
                && NIC_MODELS.contains(&m.as_str())
            {
                *mac = None;
            }
            join_sorted(parts, 1)
        }
        k if k.starts_with("ipconfig") => join_sorted(split(value), 0),
        k if k.starts_with("hostpci") => {
            let mut parts = split(value);
            normalize_bool_keys(&mut parts, &["pcie", "x-vga", "rombar", "legacy-igd"]);
            join_sorted(parts, 0)
        }
        "onboot" | "balloon" | "sockets" | "cores" | "memory" | "swap" => {
            value.trim_start_matches('+').to_string()
        }
        _ => value.to_string(),
    }
}

/// Whether `key` is `<prefix><digits>` (`dev0`, `mp3`, `hostpci1`).
pub fn is_numbered(key: &str, prefix: &str) -> bool {
    key.strip_prefix(prefix)
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Container feature flags other than `nesting` (which only `root@pam` may change).
pub fn root_features(value: &str) -> BTreeSet<String> {
    split(value)
        .into_iter()
        .filter(|(k, v)| {
            k != "nesting" && !matches!(v.as_deref(), Some("0" | "false" | "off" | "no"))
        })
        .map(|(k, v)| format!("{k}={}", v.unwrap_or_default()))
        .collect()
}

/// Whether a `netN` value is a container NIC (`name=eth0,bridge=...`), not a VM NIC
/// (`virtio=MAC,bridge=...`).
fn is_lxc_net(value: &str) -> bool {
    split(value)
        .iter()
        .any(|(k, _)| k == "name" || k == "hwaddr")
}

/// Tags as Proxmox normalises them: split on `;`, `,` or spaces, lowercased, sorted, unique.
pub fn canon_tags(value: &str) -> BTreeSet<String> {
    value
        .split([';', ',', ' '])
        .filter(|t| !t.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

fn normalize_bool_keys(parts: &mut [(String, Option<String>)], keys: &[&str]) {
    for (k, v) in parts.iter_mut() {
        if keys.contains(&k.as_str())
            && let Some(val) = v
        {
            *val = match val.as_str() {
                "true" | "on" | "yes" => "1".into(),
                "false" | "off" | "no" => "0".into(),
                _ => val.clone(),
            };
        }
    }
}

/// Split `a=b,c,d=e` into pairs (a bare item has no value).
pub fn split(value: &str) -> Vec<(String, Option<String>)> {
    value
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.trim().to_string(), Some(v.trim().to_string())),
            None => (p.trim().to_string(), None),
        })
        .collect()
}

/// Join pairs, keeping the first `keep_first` in place and sorting the rest by key.
fn join_sorted(mut parts: Vec<(String, Option<String>)>, keep_first: usize) -> String {
    let keep = keep_first.min(parts.len());
    parts[keep..].sort_by(|a, b| a.0.cmp(&b.0));
    parts
        .into_iter()
        .map(|(k, v)| match v {
            Some(v) => format!("{k}={v}"),
            None => k,
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A disk as Proxmox reports it: `local-lvm:vm-100-disk-1,discard=on,size=100G,ssd=1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedDisk {
    /// Storage id.
    pub storage: String,
    /// Volume name inside the storage.
    pub volume: String,
    /// `size=`.
    pub size: Option<Size>,
    /// Whether this is a cloud-init drive.
    pub cloudinit: bool,
    /// Remaining options (without `size` and `media`).
    pub options: BTreeMap<String, String>,
}

/// Parse a disk property string.
pub fn parse_disk(value: &str) -> Option<ObservedDisk> {
    let mut parts = split(value).into_iter();
    let (first, first_val) = parts.next()?;
    let vol = match (first.as_str(), first_val) {
        ("file" | "volume", Some(v)) => v,
        (_, None) => first,
        _ => return None,
    };
    let (storage, volume) = vol.split_once(':')?;
    let mut size = None;
    let mut options = BTreeMap::new();
    for (k, v) in parts {
        match (k.as_str(), v) {
            ("size", Some(s)) => size = parse_pve_size(&s),
            ("media", _) => {}
            (_, Some(v)) => {
                options.insert(k, v);
            }
            (_, None) => {
                options.insert(k, String::new());
            }
        }
    }
    Some(ObservedDisk {
        storage: storage.to_string(),
        volume: volume.to_string(),
        size,
        cloudinit: volume.contains("cloudinit"),
        options,
    })
}

/// Proxmox sizes: `100G`, `4M`, `512K`, `1T`, bare bytes.
pub fn parse_pve_size(s: &str) -> Option<Size> {
    let s = s.trim();
    let (num, unit) = s.split_at(
        s.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len()),
    );
    let n: f64 = num.parse().ok()?;
    let mib = match unit {
        "" => n / (1024.0 * 1024.0),
        "K" => n / 1024.0,
        "M" => n,
        "G" => n * 1024.0,
        "T" => n * 1024.0 * 1024.0,
        _ => return None,
    };
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Some(Size::from_mib(mib.ceil() as u64))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn nic_mac_is_ignored() {
        assert_eq!(
            canon("net0", "virtio=BC:24:11:AA:BB:CC,firewall=0,bridge=vmbr0"),
            canon("net0", "virtio,bridge=vmbr0,firewall=0")
        );
        assert_ne!(
            canon("net0", "virtio,bridge=vmbr1"),
            canon("net0", "virtio,bridge=vmbr0")
        );
    }

    #[test]
    fn container_nic_and_features_canon() {
        assert_eq!(
            canon(
                "net0",
                "bridge=vmbr0,hwaddr=BC:24:11:00:00:01,ip=10.0.0.2/24,name=eth0,type=veth"
            ),
            canon("net0", "name=eth0,bridge=vmbr0,ip=10.0.0.2/24")
        );
        assert_ne!(
            canon(
                "net0",
                "bridge=vmbr0,hwaddr=BC:24:11:00:00:01,ip=dhcp,name=eth0"
            ),
            canon("net0", "name=eth0,bridge=vmbr0,ip=10.0.0.2/24")
        );
        assert_eq!(
            canon("features", "nesting=1,keyctl=1"),
            "keyctl=1,nesting=1"
        );
        assert_eq!(canon("features", "keyctl=0,nesting=1"), "nesting=1");
        assert_eq!(canon("startup", "up=30,order=2"), "order=2,up=30");
    }

    #[test]
    fn agent_forms_agree() {
        assert_eq!(canon("agent", "1"), canon("agent", "enabled=1"));
        assert_ne!(canon("agent", "0"), canon("agent", "enabled=1"));
    }

    #[test]
    fn cdrom_size_and_tag_order_are_ignored() {
        assert_eq!(
            canon("ide2", "local:iso/t.iso,media=cdrom,size=100M"),
            canon("ide2", "local:iso/t.iso,media=cdrom")
        );
        assert_eq!(canon("tags", "b;A,c"), "a;b;c");
        assert_eq!(
            canon("ipconfig0", "ip=1.2.3.4/24,gw=1.2.3.1"),
            "gw=1.2.3.1,ip=1.2.3.4/24"
        );
    }

    #[test]
    fn disks_parse() {
        let d = parse_disk("local-lvm:vm-100-disk-1,discard=on,size=100G,ssd=1").unwrap();
        assert_eq!(d.storage, "local-lvm");
        assert_eq!(d.size, Some(Size::from_gib(100)));
        assert_eq!(d.options.get("discard").map(String::as_str), Some("on"));
        assert!(!d.options.contains_key("size"));
        let ci = parse_disk("local-lvm:vm-100-cloudinit,media=cdrom").unwrap();
        assert!(ci.cloudinit);
        assert_eq!(parse_pve_size("4M"), Some(Size::from_mib(4)));
        assert_eq!(parse_pve_size("528K"), Some(Size::from_mib(1)));
        assert!(parse_disk("garbage").is_none());
    }
}
