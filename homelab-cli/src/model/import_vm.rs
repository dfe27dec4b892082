//! Adopting existing QEMU VMs (`homelab-cli import`): the pure mapping from a VM's Proxmox
//! configuration to a `vms.machines` declaration declared as it is (`adopt: true`, no
//! `image`, see [`super::vm_adopt`]). Every value is mapped to a field only when the field
//! gives back exactly the same configuration value; otherwise it is kept whole in
//! `options`, so the next plan adopts without a single change besides ownership.

use std::collections::BTreeMap;

use proxmox_client::property::{canonical, is_numbered, split_lenient};

use super::config::{PciPassthrough, Size, Startup, Vm};
use super::import::ImportError;

/// Keys an import never carries over: bookkeeping Proxmox keeps (and renews on restore).
const SKIPPED: &[&str] = &["digest", "lock", "parent", "snaptime", "meta", "vmgenid"];

/// A VM mapped from Proxmox: the declaration, the secret values it references (path in the
/// SOPS file → value) and what could not be carried over.
#[derive(Debug, Clone)]
pub struct ImportedVm {
    /// The declaration.
    pub vm: Vm,
    /// `(secret path, value)` for values moved into the SOPS file.
    pub secrets: Vec<(String, String)>,
    /// Things not carried over, for people.
    pub notes: Vec<String>,
}

fn empty_vm(name: String, vmid: u32) -> Vm {
    Vm {
        name,
        vmid: Some(vmid),
        node: None,
        preset: None,
        clone: None,
        full_clone: None,
        ip: None,
        pci: Vec::new(),
        startup: None,
        tags: Vec::new(),
        description: None,
        adopt: true,
        options: BTreeMap::new(),
        restore: None,
        pool: None,
        image: None,
        cores: None,
        memory: None,
        disk: None,
        storage: None,
        bridge: None,
        vlan: None,
        gateway: None,
        nameservers: None,
        searchdomain: None,
        user: None,
        ssh_keys: None,
        packages: None,
        user_data: None,
        onboot: None,
        handoff: None,
    }
}

/// Map VM `vmid`'s configuration (as `GET .../config` returns it) on `node` to a
/// declaration; `default_node` is `proxmox.node`. Secrets go to
/// `<secret_prefix>.<name>.<key>`.
pub fn map_vm(
    vmid: u32,
    node: &str,
    default_node: &str,
    cfg: &BTreeMap<String, String>,
    secret_prefix: &str,
) -> Result<ImportedVm, ImportError> {
    let unsupported = |key: &str, value: &str, why: &str| ImportError::Unsupported {
        kind: "vm",
        vmid,
        key: key.to_string(),
        value: value.to_string(),
        why: why.to_string(),
    };
    let name = cfg
        .get("name")
        .cloned()
        .unwrap_or_else(|| format!("vm{vmid}"));
    if !super::is_label(&name, 63) {
        return Err(unsupported(
            "name",
            &name,
            "names must be DNS labels (lowercase letters, digits, `-`)",
        ));
    }
    if cfg.get("template").is_some_and(|t| t.trim() == "1") {
        return Err(unsupported(
            "template",
            "1",
            "it is a VM template, not a service",
        ));
    }
    let mut vm = empty_vm(name.clone(), vmid);
    vm.node = (node != default_node).then(|| node.to_string());
    let mut notes = Vec::new();
    let mut options: BTreeMap<String, String> = BTreeMap::new();
    let mut pci: BTreeMap<usize, (String, PciPassthrough)> = BTreeMap::new();
    for (k, v) in cfg {
        let k = k.as_str();
        match k {
            _ if SKIPPED.contains(&k) => {}
            "name" | "template" => {}
            "description" => {
                let d = v.trim_end();
                if !d.is_empty() {
                    vm.description = Some(d.to_string());
                }
            }
            "tags" => {
                vm.tags = proxmox_client::property::canon_tags(v)
                    .into_iter()
                    .collect();
            }
            "cores" => match v.trim().parse::<u16>() {
                Ok(n) if n > 0 && n.to_string() == v.trim() => vm.cores = Some(n),
                _ => {
                    options.insert(k.into(), v.clone());
                }
            },
            "memory" => match v.trim().parse::<u64>() {
                Ok(m) if m >= 64 && m.to_string() == v.trim() => {
                    vm.memory = Some(Size::from_mib(m));
                }
                _ => {
                    options.insert(k.into(), v.clone());
                }
            },
            "onboot" => match v.trim() {
                "1" => vm.onboot = Some(true),
                "0" => vm.onboot = Some(false),
                _ => {
                    options.insert(k.into(), v.clone());
                }
            },
            "startup" => match startup(v) {
                Some(st) => vm.startup = Some(st),
                None => {
                    options.insert(k.into(), v.clone());
                }
            },
            "net0" => {
                if !map_net0(&mut vm, v) {
                    options.insert(k.into(), v.clone());
                }
            }
            "ipconfig0" => {
                if !map_ipconfig0(&mut vm, v) {
                    options.insert(k.into(), v.clone());
                }
            }
            "nameserver" => {
                let ns: Vec<String> = v.split_whitespace().map(str::to_string).collect();
                if !ns.is_empty() && ns.join(" ") == *v {
                    vm.nameservers = Some(ns);
                } else {
                    options.insert(k.into(), v.clone());
                }
            }
            "searchdomain" => vm.searchdomain = Some(v.clone()),
            "ciuser" => {
                let ok = v != "root"
                    && super::is_label(v, 32)
                    && !v.starts_with(|c: char| c.is_ascii_digit());
                if ok {
                    vm.user = Some(v.clone());
                } else {
                    options.insert(k.into(), v.clone());
                }
            }
            "sshkeys" => {
                let text = super::vms::url_decode(v);
                let keys: Vec<String> = text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect();
                let ed25519 = keys.iter().all(|k| {
                    k.starts_with("ssh-ed25519 ") || k.starts_with("sk-ssh-ed25519@openssh.com ")
                });
                let again: String = keys.iter().map(|k| format!("{k}\n")).collect();
                if !keys.is_empty() && ed25519 && super::vms::url_encode(&again) == *v {
                    vm.ssh_keys = Some(keys);
                } else {
                    options.insert(k.into(), v.clone());
                }
            }
            "cipassword" => notes.push(format!(
                "{name}: its cloud-init password is hidden by the Proxmox API (`**********`): it stays on Proxmox and is not declared; to declare one, put it in the secrets file and write `options: {{ cipassword: \"${{secret:{secret_prefix}.{name}.cipassword}}\" }}`"
            )),
            "scsi0" if !v.contains("media=cdrom") => {
                let parts = split_lenient(v);
                let vol = parts.first().map(|p| p.0.clone()).unwrap_or_default();
                match vol.split_once(':').filter(|_| !vol.starts_with('/')) {
                    Some((storage, _)) => {
                        vm.storage = Some(storage.to_string());
                        let size = parts
                            .iter()
                            .find(|(pk, _)| pk == "size")
                            .and_then(|(_, pv)| pv.as_deref())
                            .and_then(|s| Size::parse(s).ok());
                        vm.disk = size.filter(|s| s.mib() >= 1024);
                    }
                    None => notes.push(format!(
                        "{name}: scsi0 ({v}) is not a storage volume: kept on Proxmox, not declared"
                    )),
                }
            }
            _ if ["ide", "sata", "scsi", "virtio", "efidisk", "tpmstate"]
                .iter()
                .any(|p| is_numbered(k, p)) =>
            {
                notes.push(format!(
                    "{name}: drive {k} ({v}) stays as it is on Proxmox (drives come back from backups, not from homelab.yaml)"
                ));
            }
            _ if is_numbered(k, "unused") => notes.push(format!(
                "{name}: detached volume {k} ({v}) is not declared (it stays on Proxmox)"
            )),
            _ if is_numbered(k, "hostpci") => {
                let i: usize = k.trim_start_matches("hostpci").parse().unwrap_or(0);
                match pci_of(v) {
                    Some(d) => {
                        pci.insert(i, (v.clone(), d));
                    }
                    None => {
                        options.insert(k.into(), v.clone());
                    }
                }
            }
            _ => {
                options.insert(k.into(), v.clone());
            }
        }
    }
    // The model numbers passthrough devices by their position.
    if pci.keys().enumerate().all(|(i, k)| i == *k) {
        vm.pci = pci.into_values().map(|(_, d)| d).collect();
    } else {
        for (i, (raw, _)) in pci {
            options.insert(format!("hostpci{i}"), raw);
        }
    }
    let mut secrets = Vec::new();
    for (k, v) in options {
        if super::import::is_secret_option(&k, &v) || holds_secret(&v) {
            let path = format!("{secret_prefix}.{name}.{k}");
            vm.options.insert(k, format!("${{secret:{path}}}"));
            secrets.push((path, v));
        } else {
            vm.options.insert(k, v);
        }
    }
    Ok(ImportedVm { vm, secrets, notes })
}

/// Whether a value carries a `name=value` part whose name says secret (`args` with
/// `-device ...,password=...`, `-object secret,...`).
fn holds_secret(v: &str) -> bool {
    v.split([',', ' '])
        .filter_map(|p| p.split_once('=').map(|(k, _)| k))
        .any(|k| {
            let k = k.to_ascii_lowercase();
            ["password", "passwd", "secret", "token", "key"]
                .iter()
                .any(|w| k == *w || k.ends_with(&format!("-{w}")) || k.ends_with(&format!("_{w}")))
        })
}

fn startup(v: &str) -> Option<Startup> {
    let mut st = Startup {
        order: 0,
        up: None,
        down: None,
    };
    let mut ok = false;
    for (sk, sv) in split_lenient(v) {
        let n = sv.as_deref().and_then(|x| x.parse::<u32>().ok());
        match (sk.as_str(), n) {
            ("order", Some(n)) => {
                st.order = n;
                ok = true;
            }
            ("up", Some(n)) => st.up = Some(n),
            ("down", Some(n)) => st.down = Some(n),
            _ => return None,
        }
    }
    (ok && canonical("startup", &st.to_prop()) == canonical("startup", v)).then_some(st)
}

/// `net0` as `bridge`/`vlan` when it is a virtio NIC with nothing else (its MAC is kept by
/// Proxmox and ignored by the comparison).
fn map_net0(vm: &mut Vm, v: &str) -> bool {
    let mut bridge = None;
    let mut tag = None;
    for (j, (k, val)) in split_lenient(v).into_iter().enumerate() {
        match (j, k.as_str(), val) {
            (0, "virtio", _) => {}
            (_, "bridge", Some(b)) => bridge = Some(b),
            (_, "tag", Some(t)) => match t.parse::<u16>() {
                Ok(t) if (1..=4094).contains(&t) => tag = Some(t),
                _ => return false,
            },
            _ => return false,
        }
    }
    let Some(bridge) = bridge else { return false };
    vm.bridge = Some(bridge);
    vm.vlan = tag;
    true
}

/// `ipconfig0` as `ip`/`gateway` when it is IPv4 only.
fn map_ipconfig0(vm: &mut Vm, v: &str) -> bool {
    let mut ip = None;
    let mut gw = None;
    for (k, val) in split_lenient(v) {
        match (k.as_str(), val) {
            ("ip", Some(i)) => ip = Some(i),
            ("gw", Some(g)) => gw = Some(g),
            _ => return false,
        }
    }
    let Some(ip) = ip else { return false };
    let static_ok = ip.split_once('/').is_some_and(|(a, p)| {
        a.parse::<std::net::Ipv4Addr>().is_ok() && p.parse::<u8>().is_ok_and(|p| p <= 32)
    });
    if ip == "dhcp" {
        if gw.is_some() {
            return false;
        }
    } else if !static_ok {
        return false;
    }
    vm.ip = Some(ip);
    vm.gateway = gw;
    true
}

/// A `hostpciN` through a cluster mapping, when the field gives back the same value.
fn pci_of(v: &str) -> Option<PciPassthrough> {
    let mut d = PciPassthrough {
        mapping: String::new(),
        device: None,
        pcie: false,
        primary_gpu: false,
        rombar: true,
    };
    for (k, val) in split_lenient(v) {
        let on = |x: &Option<String>| matches!(x.as_deref(), Some("1" | "on" | "true" | "yes"));
        match k.as_str() {
            "mapping" => d.mapping = val?,
            "pcie" => d.pcie = on(&val),
            "x-vga" => d.primary_gpu = on(&val),
            "rombar" => d.rombar = on(&val),
            _ => return None,
        }
    }
    if !super::vms::is_mapping_id(&d.mapping) {
        return None;
    }
    let again = super::vms::hostpci_value(&d.mapping, &d);
    (canonical("hostpci0", &again) == canonical("hostpci0", v)).then_some(d)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn a_vm_maps_to_fields_and_options() {
        let keys = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx1 ops@lab\n";
        let c = cfg(&[
            ("name", "nas"),
            ("cores", "4"),
            ("memory", "8192"),
            ("sockets", "1"),
            ("cpu", "host"),
            ("machine", "q35"),
            ("bios", "ovmf"),
            ("agent", "enabled=1"),
            ("serial0", "socket"),
            ("vga", "serial0"),
            ("onboot", "1"),
            ("startup", "order=3,up=30"),
            ("net0", "virtio=BC:24:11:00:00:07,bridge=vmbr0,tag=20"),
            ("net1", "virtio=BC:24:11:00:00:08,bridge=vmbr1,firewall=1"),
            ("ipconfig0", "ip=10.0.20.7/24,gw=10.0.20.1"),
            ("nameserver", "10.0.20.1 1.1.1.1"),
            ("searchdomain", "lab.home"),
            ("ciuser", "ops"),
            ("cipassword", "**********"),
            ("sshkeys", &crate::model::vms::url_encode(keys)),
            ("scsi0", "tank:vm-207-disk-0,iothread=1,size=32G"),
            ("scsi1", "tank:vm-207-disk-1,size=500G"),
            ("efidisk0", "tank:vm-207-disk-2,size=1M"),
            ("hostpci0", "mapping=rtx3090,pcie=1,x-vga=1"),
            ("tags", "gpu;prod"),
            ("description", "NAS with the GPU\n"),
            ("vmgenid", "3f1c"),
            ("meta", "creation-qemu=10.1.2,ctime=1"),
            ("smbios1", "uuid=1234"),
            ("args", "-device foo,password=x"),
        ]);
        let m = map_vm(207, "pve", "pve", &c, "vms").unwrap();
        let vm = &m.vm;
        assert!(vm.adopt && vm.image.is_none());
        assert_eq!(vm.cores, Some(4));
        assert_eq!(vm.memory, Some(Size::from_gib(8)));
        assert_eq!(vm.onboot, Some(true));
        assert_eq!(vm.startup.unwrap().up, Some(30));
        assert_eq!(vm.bridge.as_deref(), Some("vmbr0"));
        assert_eq!(vm.vlan, Some(20));
        assert_eq!(vm.ip.as_deref(), Some("10.0.20.7/24"));
        assert_eq!(vm.gateway.as_deref(), Some("10.0.20.1"));
        assert_eq!(vm.nameservers.as_ref().unwrap().len(), 2);
        assert_eq!(vm.user.as_deref(), Some("ops"));
        assert_eq!(vm.ssh_keys.as_ref().unwrap()[0], keys.trim());
        assert_eq!(vm.storage.as_deref(), Some("tank"));
        assert_eq!(vm.disk, Some(Size::from_gib(32)));
        assert_eq!(vm.pci.len(), 1);
        assert!(vm.pci[0].primary_gpu && vm.pci[0].pcie);
        assert_eq!(vm.tags, vec!["gpu", "prod"]);
        for k in [
            "cpu", "machine", "bios", "agent", "serial0", "vga", "net1", "smbios1",
        ] {
            assert!(vm.options.contains_key(k), "{k}");
        }
        assert_eq!(vm.options["args"], "${secret:vms.nas.args}");
        assert_eq!(m.secrets[0].0, "vms.nas.args");
        for k in [
            "vmgenid",
            "meta",
            "scsi0",
            "scsi1",
            "efidisk0",
            "cipassword",
        ] {
            assert!(!vm.options.contains_key(k), "{k}");
        }
        assert!(m.notes.iter().any(|n| n.contains("scsi1")));
        assert!(m.notes.iter().any(|n| n.contains("cipassword")));
    }

    #[test]
    fn values_the_fields_would_change_are_kept_whole() {
        let c = cfg(&[
            ("name", "x"),
            ("net0", "e1000=BC:24:11:00:00:01,bridge=vmbr0"),
            ("ipconfig0", "ip6=auto"),
            ("ciuser", "root"),
            ("sshkeys", "ssh-rsa%20AAAA%20x"),
            ("hostpci1", "mapping=gpu"),
            ("memory", "current=2048"),
        ]);
        let m = map_vm(300, "pve2", "pve", &c, "vms").unwrap();
        for k in [
            "net0",
            "ipconfig0",
            "ciuser",
            "sshkeys",
            "hostpci1",
            "memory",
        ] {
            assert_eq!(m.vm.options[k], c[k], "{k}");
        }
        assert!(m.vm.pci.is_empty());
        assert_eq!(m.vm.node.as_deref(), Some("pve2"));
    }

    #[test]
    fn templates_and_bad_names_are_refused_with_the_key() {
        let e = map_vm(9000, "pve", "pve", &cfg(&[("template", "1")]), "vms").unwrap_err();
        assert!(e.to_string().contains("template"), "{e}");
        let e = map_vm(301, "pve", "pve", &cfg(&[("name", "Bad_Name")]), "vms").unwrap_err();
        assert!(e.to_string().contains("name"), "{e}");
    }
}
