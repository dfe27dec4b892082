//! Adopted VMs declared as they are (`adopt: true` without `image` or `clone`, what
//! `homelab-cli import` writes for a QEMU VM): compiled from their own fields and
//! `options` only (no `vms.defaults`, no presets, none of the cloud-VM invariants such as
//! `machine: q35` or the serial console), so that what they leave out stays as Proxmox has
//! it. Their drives are not declared beyond the boot disk's storage and size: they come
//! back from a backup (`restore: latest`), never from an empty create.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::config::{Vm, VmSettings};
use super::desired::{DesiredGuest, DiskSpec, GuestKind, owner_marker, spec_hash};
use super::secrets::SecretValues;
use super::{ConfigError, Loaded, subst};

/// Keys `options` may not set on a VM: fields own them, Proxmox manages them, or they are
/// drives (which come from the image, the template or a backup).
pub(crate) fn reserved_vm_option(key: &str) -> bool {
    const FIXED: &[&str] = &[
        "name",
        "description",
        "tags",
        "digest",
        "lock",
        "template",
        "parent",
        "meta",
        "vmgenid",
        "snaptime",
    ];
    FIXED.contains(&key)
        || [
            "ide", "sata", "scsi", "virtio", "efidisk", "tpmstate", "unused",
        ]
        .iter()
        .any(|p| proxmox_client::property::is_numbered(key, p))
}

/// Whether VM `vm` is declared as it is (adopted, nothing to build it from).
pub fn as_is(vm: &Vm) -> bool {
    vm.adopt && vm.image.is_none() && vm.clone.is_none()
}

/// Merge VM `vm`'s `options` into `props` (secrets substituted); each overrides what the
/// fields derive.
pub(crate) fn apply_options(
    l: &Loaded,
    path: &str,
    vm: &Vm,
    secrets: &SecretValues,
    props: &mut BTreeMap<String, String>,
    sensitive: &mut BTreeSet<String>,
    errs: &mut Vec<ConfigError>,
) {
    for (k, v) in &vm.options {
        let at = format!("{path}.options.{k}");
        let valid = !k.is_empty()
            && k.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !valid {
            errs.push(l.error_at(&at, format!("`{k}` is not a Proxmox configuration key")));
            continue;
        }
        if reserved_vm_option(k) {
            errs.push(
                l.error_at(&at, format!("`{k}` cannot be set through `options`"))
                    .with_help("use the VM's own fields (name, description, tags, disk, pci); drives come from the image, the template or a backup"),
            );
            continue;
        }
        if let Some((value, sens)) = subst(l, secrets, &at, v, errs) {
            if sens {
                sensitive.insert(k.clone());
            }
            props.insert(k.clone(), value);
        }
    }
}

/// Compile an adopted VM declared as it is.
#[allow(clippy::too_many_arguments)]
pub(crate) fn compile(
    l: &Loaded,
    secrets: &SecretValues,
    errs: &mut Vec<ConfigError>,
    path: &str,
    vm: &Vm,
    vmid: u32,
    node: String,
    taken: &mut BTreeMap<IpAddr, String>,
) -> DesiredGuest {
    let c = &l.config;
    // Its own settings only.
    let s: VmSettings = vm.settings();
    let mut props = BTreeMap::new();
    let mut sensitive = BTreeSet::new();
    props.insert("name".to_string(), vm.name.clone());
    let note = vm
        .description
        .as_deref()
        .map(|d| format!("{}\n", d.trim_end()))
        .unwrap_or_default();
    props.insert(
        "description".into(),
        format!(
            "{note}Managed by homelab-cli (homelab {}): changes made here are reverted by `homelab-cli up`.\n{}",
            c.name,
            owner_marker(&c.name)
        ),
    );
    if let Some(n) = s.cores {
        props.insert("cores".into(), n.to_string());
    }
    if let Some(m) = s.memory {
        props.insert("memory".into(), m.mib().to_string());
    }
    if let Some(o) = s.onboot {
        props.insert("onboot".into(), u8::from(o).to_string());
    }
    if let Some(st) = vm.startup {
        props.insert("startup".into(), st.to_prop());
    }
    if let Some(b) = &s.bridge {
        let mut net = format!("virtio,bridge={b}");
        if let Some(t) = s.vlan {
            net.push_str(&format!(",tag={t}"));
        }
        props.insert("net0".into(), net);
    }
    if let Some(u) = &s.user {
        props.insert("ciuser".into(), u.clone());
    }
    if let Some(keys) = s.ssh_keys.as_ref().filter(|k| !k.is_empty()) {
        let text: String = keys.iter().map(|k| format!("{}\n", k.trim())).collect();
        props.insert("sshkeys".into(), super::vms::url_encode(&text));
    }
    if let Some(raw) = &vm.ip
        && let Some((ip, sens)) = subst(l, secrets, &format!("{path}.ip"), raw, errs)
    {
        let ip = ip.trim().to_string();
        let mut v = format!("ip={ip}");
        if ip != "dhcp" {
            match ip
                .split_once('/')
                .and_then(|(a, _)| a.parse::<IpAddr>().ok())
            {
                Some(addr) => {
                    if let Some(prev) = taken.insert(addr, vm.name.clone()) {
                        errs.push(l.error_at(
                            &format!("{path}.ip"),
                            format!("this address is already given to {prev}"),
                        ));
                    }
                }
                None => errs.push(
                    l.error_at(&format!("{path}.ip"), "not an IPv4 address with prefix")
                        .with_help("e.g. `10.0.20.11/24`, or `dhcp`"),
                ),
            }
            if let Some(g) = &s.gateway
                && let Some((gw, gs)) = subst(l, secrets, &format!("{path}.gateway"), g, errs)
            {
                v.push_str(&format!(",gw={}", gw.trim()));
                if gs {
                    sensitive.insert("ipconfig0.gw".to_string());
                }
            }
        }
        if sens {
            sensitive.insert("ipconfig0".to_string());
        }
        props.insert("ipconfig0".into(), v);
    }
    if let Some(ns) = s.nameservers.as_ref().filter(|n| !n.is_empty()) {
        let mut ips = Vec::new();
        for (j, n) in ns.iter().enumerate() {
            if let Some((t, sens)) = subst(l, secrets, &format!("{path}.nameservers[{j}]"), n, errs)
            {
                ips.push(t.trim().to_string());
                if sens {
                    sensitive.insert("nameserver".into());
                }
            }
        }
        props.insert("nameserver".into(), ips.join(" "));
    }
    if let Some(sd) = &s.searchdomain {
        props.insert("searchdomain".into(), sd.clone());
    }
    for (j, d) in vm.pci.iter().enumerate() {
        props.insert(
            format!("hostpci{j}"),
            super::vms::hostpci_value(&d.mapping, d),
        );
    }
    apply_options(l, path, vm, secrets, &mut props, &mut sensitive, errs);
    let mut disks = BTreeMap::new();
    if let Some(storage) = &s.storage {
        disks.insert(
            "scsi0".to_string(),
            DiskSpec {
                storage: storage.clone(),
                size: s.disk,
                cloudinit: false,
                options: BTreeMap::new(),
                import_from: None,
            },
        );
    }
    let mut extra_tags: Vec<String> = vm.tags.iter().map(|t| t.to_ascii_lowercase()).collect();
    extra_tags.sort();
    extra_tags.dedup();
    let mut hashed = props.clone();
    hashed.insert("tags".into(), extra_tags.join(";"));
    let spec_hash = spec_hash(&node, &hashed, &disks);
    DesiredGuest {
        vmid,
        name: vm.name.clone(),
        node,
        kind: GuestKind::Qemu,
        props,
        disks,
        sensitive,
        spec_hash,
        talos: None,
        iso: None,
        template: None,
        create_only: BTreeMap::new(),
        extra_tags,
        boot: None,
        is_template: false,
        snippet: None,
    }
}

/// A guest's `pool:` must be a Proxmox pool ID (pve-manager `verify_poolname`).
pub(crate) fn check_pool(l: &Loaded, at: &str, pool: &str, errs: &mut Vec<ConfigError>) {
    if !super::pools::is_pool_id(pool) {
        errs.push(
            l.error_at(at, format!("`{pool}` is not a pool ID"))
                .with_help("letters, digits, `-` and `_`, nested pools as `parent/child`"),
        );
    }
}
