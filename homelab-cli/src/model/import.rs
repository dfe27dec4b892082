//! Adopting existing guests (`homelab-cli import`): the pure mapping from a container's
//! Proxmox configuration to a declaration, the text-level insertion of declarations into
//! homelab.yaml (comments, order and formatting kept), and the `options` field that carries
//! every key the model has no field for.

use std::collections::{BTreeMap, BTreeSet};

use super::config::{Container, ContainerDevice, Features, Mount, Size, Startup};
use super::secrets::SecretValues;
use super::{ConfigError, Loaded};

/// Keys `options` may not set: the fields above own them, or Proxmox manages them.
const RESERVED: &[&str] = &[
    "hostname",
    "description",
    "tags",
    "rootfs",
    "digest",
    "lock",
    "template",
    "parent",
];

/// Keys an import never carries over: bookkeeping Proxmox keeps itself.
const SKIPPED: &[&str] = &["digest", "lock", "parent", "snaptime"];

/// Whether `key` is `<prefix><number>`.
fn numbered(key: &str, prefix: &str) -> Option<usize> {
    key.strip_prefix(prefix)
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.parse().ok())
}

/// Merge container `ct`'s `options` into its derived configuration: each key (secrets
/// substituted) overrides what the fields derive.
pub(crate) fn apply_options(
    l: &Loaded,
    path: &str,
    ct: &Container,
    secrets: &SecretValues,
    props: &mut BTreeMap<String, String>,
    sensitive: &mut BTreeSet<String>,
    errs: &mut Vec<ConfigError>,
) {
    for (k, v) in &ct.options {
        let at = format!("{path}.options.{k}");
        let valid = !k.is_empty()
            && k.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !valid {
            errs.push(l.error_at(&at, format!("`{k}` is not a Proxmox configuration key")));
            continue;
        }
        if RESERVED.contains(&k.as_str())
            || numbered(k, "mp").is_some()
            || numbered(k, "unused").is_some()
        {
            errs.push(
                l.error_at(&at, format!("`{k}` cannot be set through `options`"))
                    .with_help(
                        "use the container's own fields (name, description, tags, disk, mounts)",
                    ),
            );
            continue;
        }
        if let Some((value, sens)) = super::subst(l, secrets, &at, v, errs) {
            if sens {
                sensitive.insert(k.clone());
            }
            props.insert(k.clone(), value);
        }
    }
}

/// What the container's values would be without saying anything: `lxc.defaults` (secrets
/// substituted) over the built-in defaults. An imported value equal to it is left out.
#[derive(Debug, Clone)]
pub struct Inherited {
    /// Proxmox node guests default to.
    pub node: String,
    /// Cores.
    pub cores: u16,
    /// Memory.
    pub memory: Size,
    /// Swap.
    pub swap: Size,
    /// Root disk size.
    pub disk: Size,
    /// Root disk storage.
    pub storage: String,
    /// Bridge.
    pub bridge: String,
    /// Gateway, if the defaults give one.
    pub gateway: Option<String>,
    /// Name servers, if the defaults give any.
    pub nameservers: Option<Vec<String>>,
    /// Unprivileged.
    pub unprivileged: bool,
    /// Features.
    pub features: Features,
    /// Start on boot.
    pub onboot: bool,
    /// Whether the defaults name a template (else each declaration needs one).
    pub has_template: bool,
}

impl Inherited {
    /// From a parsed configuration and its decrypted secrets.
    pub fn of(l: &Loaded, secrets: &SecretValues) -> Self {
        let c = &l.config;
        let d = c
            .lxc
            .as_ref()
            .map(|x| x.defaults.clone())
            .unwrap_or_default();
        let plain = |v: &str| {
            secrets
                .substitute(v)
                .ok()
                .map(|(s, _)| secrecy::ExposeSecret::expose_secret(&s).to_string())
        };
        Inherited {
            node: c.proxmox.node.clone(),
            cores: d.cores.unwrap_or(1),
            memory: d.memory.unwrap_or(Size::from_mib(512)),
            swap: d.swap.unwrap_or(Size::from_mib(512)),
            disk: d.disk.unwrap_or(Size::from_gib(8)),
            storage: d
                .storage
                .clone()
                .unwrap_or_else(|| c.proxmox.storage.clone()),
            bridge: d.bridge.clone().unwrap_or_else(|| c.proxmox.bridge.clone()),
            gateway: d.gateway.as_deref().and_then(plain),
            nameservers: d
                .nameservers
                .as_ref()
                .map(|ns| ns.iter().filter_map(|n| plain(n)).collect()),
            unprivileged: d.unprivileged.unwrap_or(true),
            features: d.features.unwrap_or_default(),
            onboot: d.onboot.unwrap_or(true),
            has_template: d.template.is_some(),
        }
    }
}

/// A container mapped from Proxmox: the declaration, the secret values it references
/// (path in the SOPS file → value) and what could not be carried over.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The declaration (fields equal to the inherited values left out).
    pub container: Container,
    /// `(secret path, value)` for values moved into the SOPS file.
    pub secrets: Vec<(String, String)>,
    /// Things not carried over, for people.
    pub notes: Vec<String>,
}

/// Why a guest cannot be imported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// Its configuration holds something the model cannot declare.
    #[error("{kind} {vmid}: {key} = \"{value}\" cannot be declared: {why}")]
    Unsupported {
        /// `ct` or `vm`.
        kind: &'static str,
        /// VMID.
        vmid: u32,
        /// Config key.
        key: String,
        /// Its value.
        value: String,
        /// Why.
        why: String,
    },
}

/// Whether an environment variable or option name holds a secret.
fn secret_name(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    [
        "PASSWORD",
        "PASSWD",
        "SECRET",
        "TOKEN",
        "API_KEY",
        "APIKEY",
        "PRIVATE_KEY",
        "ACCESS_KEY",
    ]
    .iter()
    .any(|w| n.contains(w))
}

/// Whether an option's value must go into the SOPS file.
pub(crate) fn is_secret_option(key: &str, value: &str) -> bool {
    if secret_name(key) {
        return true;
    }
    // `env` is a NUL-separated list of NAME=value.
    key == "env"
        && value
            .split('\0')
            .filter_map(|kv| kv.split_once('=').map(|(k, _)| k))
            .any(secret_name)
}

fn size_of(value: &str) -> Option<Size> {
    proxmox_client::property::split_lenient(value)
        .into_iter()
        .find(|(k, _)| k == "size")
        .and_then(|(_, v)| v)
        .and_then(|v| Size::parse(&v).ok())
}

/// Map container `vmid`'s configuration (as `GET .../config` returns it) on `node` to a
/// declaration. Values equal to `inherited` are left out; secrets go to
/// `<secret_prefix>.<name>.<key>`.
pub fn map_container(
    vmid: u32,
    node: &str,
    cfg: &BTreeMap<String, String>,
    inherited: &Inherited,
    secret_prefix: &str,
) -> Result<Imported, ImportError> {
    let unsupported = |key: &str, value: &str, why: &str| ImportError::Unsupported {
        kind: "ct",
        vmid,
        key: key.to_string(),
        value: value.to_string(),
        why: why.to_string(),
    };
    let name = cfg
        .get("hostname")
        .cloned()
        .unwrap_or_else(|| format!("ct{vmid}"));
    if !super::is_label(&name, 63) {
        return Err(unsupported(
            "hostname",
            &name,
            "names must be DNS labels (lowercase letters, digits, `-`)",
        ));
    }
    let mut ct = Container {
        name: name.clone(),
        vmid: Some(vmid),
        preset: None,
        node: (node != inherited.node).then(|| node.to_string()),
        ip: None,
        mounts: Vec::new(),
        devices: Vec::new(),
        startup: None,
        tags: Vec::new(),
        description: None,
        adopt: true,
        options: BTreeMap::new(),
        restore: None,
        pool: None,
        template: None,
        cores: None,
        memory: None,
        swap: None,
        disk: None,
        storage: None,
        bridge: None,
        gateway: None,
        nameservers: None,
        unprivileged: None,
        features: None,
        ssh_keys: None,
        onboot: None,
    };
    let mut notes = Vec::new();
    let mut secrets = Vec::new();
    let mut options = BTreeMap::new();
    let mut mounts: BTreeMap<usize, Mount> = BTreeMap::new();
    let mut devices: BTreeMap<usize, ContainerDevice> = BTreeMap::new();
    let num = |k: &str, v: &str| -> Result<u64, ImportError> {
        v.trim()
            .parse::<u64>()
            .map_err(|_| unsupported(k, v, "not a number"))
    };
    let flag = |v: &str| v.trim() == "1";
    // Keys absent from the configuration are at Proxmox's defaults.
    let unprivileged = cfg.get("unprivileged").is_some_and(|v| flag(v));
    if unprivileged != inherited.unprivileged {
        ct.unprivileged = Some(unprivileged);
    }
    let onboot = cfg.get("onboot").is_some_and(|v| flag(v));
    if onboot != inherited.onboot {
        ct.onboot = Some(onboot);
    }
    let memory = Size::from_mib(cfg.get("memory").map_or(Ok(512), |v| num("memory", v))?);
    if memory != inherited.memory {
        ct.memory = Some(memory);
    }
    let swap = Size::from_mib(cfg.get("swap").map_or(Ok(512), |v| num("swap", v))?);
    if swap != inherited.swap {
        ct.swap = Some(swap);
    }
    let mut features = Features::default();
    let mut has_features = false;
    for (k, v) in cfg {
        let k = k.as_str();
        match k {
            "hostname" | "memory" | "swap" | "unprivileged" | "onboot" => {}
            _ if SKIPPED.contains(&k) => {}
            "template" => {
                return Err(unsupported(
                    k,
                    v,
                    "it is a container template, not a service",
                ));
            }
            "description" => {
                let d = v.trim_end();
                if !d.is_empty() {
                    ct.description = Some(d.to_string());
                }
            }
            "tags" => {
                ct.tags = proxmox_client::property::canon_tags(v)
                    .into_iter()
                    .collect();
            }
            "cores" => {
                let c = u16::try_from(num(k, v)?).map_err(|_| unsupported(k, v, "too many"))?;
                if c != inherited.cores {
                    ct.cores = Some(c);
                }
            }
            "features" => {
                let parts = proxmox_client::property::split_lenient(v);
                let known = parts.iter().all(|(fk, fv)| {
                    matches!(fk.as_str(), "nesting" | "keyctl")
                        && matches!(fv.as_deref(), Some("0" | "1"))
                });
                if known {
                    has_features = true;
                    for (fk, fv) in parts {
                        let on = fv.as_deref() == Some("1");
                        match fk.as_str() {
                            "nesting" => features.nesting = on,
                            _ => features.keyctl = on,
                        }
                    }
                } else {
                    options.insert(k.to_string(), v.clone());
                }
            }
            "startup" => {
                let mut st = Startup {
                    order: 0,
                    up: None,
                    down: None,
                };
                let mut ok = false;
                let mut bad = false;
                for (sk, sv) in proxmox_client::property::split_lenient(v) {
                    let n = sv.as_deref().and_then(|x| x.parse::<u32>().ok());
                    match (sk.as_str(), n) {
                        ("order", Some(n)) => {
                            st.order = n;
                            ok = true;
                        }
                        ("up", Some(n)) => st.up = Some(n),
                        ("down", Some(n)) => st.down = Some(n),
                        _ => bad = true,
                    }
                }
                if ok && !bad {
                    ct.startup = Some(st);
                } else {
                    options.insert(k.to_string(), v.clone());
                }
            }
            "nameserver" => {
                let ns: Vec<String> = v.split_whitespace().map(str::to_string).collect();
                if Some(&ns) != inherited.nameservers.as_ref() {
                    ct.nameservers = Some(ns);
                }
            }
            "net0" => {
                if !map_net0(&mut ct, v, inherited) {
                    options.insert(k.to_string(), v.clone());
                }
            }
            "rootfs" => {
                let (vol, _) = v.split_once(',').unwrap_or((v.as_str(), ""));
                let Some((storage, _)) = vol.split_once(':') else {
                    return Err(unsupported(k, v, "the root file system is not a volume"));
                };
                if storage != inherited.storage {
                    ct.storage = Some(storage.to_string());
                }
                let size = size_of(v).ok_or_else(|| unsupported(k, v, "it has no size"))?;
                if size != inherited.disk {
                    ct.disk = Some(size);
                }
            }
            _ if numbered(k, "mp").is_some() => {
                let i = numbered(k, "mp").unwrap_or_default();
                let parts = proxmox_client::property::split_lenient(v);
                let vol = parts.first().map(|p| p.0.clone()).unwrap_or_default();
                let Some((storage, _)) = vol.split_once(':').filter(|_| !vol.starts_with('/'))
                else {
                    return Err(unsupported(
                        k,
                        v,
                        "bind mounts of host directories are not declarable yet",
                    ));
                };
                let opt = |name: &str| {
                    parts
                        .iter()
                        .find(|(pk, _)| pk == name)
                        .and_then(|(_, pv)| pv.clone())
                };
                let path = opt("mp").ok_or_else(|| unsupported(k, v, "it has no `mp` path"))?;
                let size = size_of(v).ok_or_else(|| unsupported(k, v, "it has no size"))?;
                let extra: Vec<&str> = parts
                    .iter()
                    .skip(1)
                    .map(|(pk, _)| pk.as_str())
                    .filter(|pk| !matches!(*pk, "mp" | "size" | "backup"))
                    .collect();
                if !extra.is_empty() {
                    notes.push(format!(
                        "{name}: {k} options {} are kept on Proxmox but not declared",
                        extra.join(", ")
                    ));
                }
                mounts.insert(
                    i,
                    Mount {
                        path,
                        storage: Some(storage.to_string()),
                        size,
                        backup: opt("backup").is_some_and(|b| b == "1"),
                    },
                );
            }
            _ if numbered(k, "dev").is_some() => {
                let i = numbered(k, "dev").unwrap_or_default();
                let parts = proxmox_client::property::split_lenient(v);
                let mut dev = ContainerDevice {
                    path: String::new(),
                    gid: None,
                    uid: None,
                    mode: None,
                };
                let mut plain = true;
                for (j, (dk, dv)) in parts.into_iter().enumerate() {
                    match (j, dk.as_str(), dv) {
                        (0, p, None) => dev.path = p.to_string(),
                        (_, "path", Some(p)) => dev.path = p,
                        (_, "gid", Some(g)) => dev.gid = g.parse().ok(),
                        (_, "uid", Some(u)) => dev.uid = u.parse().ok(),
                        (_, "mode", Some(m)) => dev.mode = Some(m),
                        _ => plain = false,
                    }
                }
                if plain && !dev.path.is_empty() {
                    devices.insert(i, dev);
                } else {
                    options.insert(k.to_string(), v.clone());
                }
            }
            _ if numbered(k, "unused").is_some() => notes.push(format!(
                "{name}: detached volume {k} ({v}) is not declared (it stays on Proxmox)"
            )),
            "lxc" => notes.push(format!(
                "{name}: raw `lxc.*` lines cannot be set through the API and are not declared"
            )),
            _ => {
                options.insert(k.to_string(), v.clone());
            }
        }
    }
    if has_features && features != inherited.features {
        ct.features = Some(features);
    } else if !has_features && inherited.features != Features::default() {
        ct.features = Some(Features::default());
    }
    // The model numbers mount points and devices by their position.
    for (what, keys) in [
        ("mp", mounts.keys().copied().collect::<Vec<_>>()),
        ("dev", devices.keys().copied().collect()),
    ] {
        if keys.iter().enumerate().any(|(i, k)| i != *k) {
            return Err(unsupported(
                what,
                &keys
                    .iter()
                    .map(|k| format!("{what}{k}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                "they are not numbered from 0 without gaps",
            ));
        }
    }
    ct.mounts = mounts.into_values().collect();
    ct.devices = devices.into_values().collect();
    for (k, v) in options {
        if is_secret_option(&k, &v) {
            let path = format!("{secret_prefix}.{name}.{k}");
            ct.options.insert(k, format!("${{secret:{path}}}"));
            secrets.push((path, v));
        } else {
            ct.options.insert(k, v);
        }
    }
    Ok(Imported {
        container: ct,
        secrets,
        notes,
    })
}

/// `net0` as `ip`/`gateway`/`bridge` when it holds nothing else; false when it must be kept
/// whole in `options`.
fn map_net0(ct: &mut Container, v: &str, inherited: &Inherited) -> bool {
    let mut ip = None;
    let mut gw = None;
    let mut bridge = None;
    for (k, val) in proxmox_client::property::split_lenient(v) {
        match (k.as_str(), val) {
            ("name", Some(n)) if n == "eth0" => {}
            ("hwaddr", Some(_)) => {}
            ("type", Some(t)) if t == "veth" => {}
            ("bridge", Some(b)) => bridge = Some(b),
            ("ip", Some(i)) => ip = Some(i),
            ("gw", Some(g)) => gw = Some(g),
            _ => return false,
        }
    }
    let Some(bridge) = bridge else { return false };
    let ip = ip.unwrap_or_else(|| "dhcp".into());
    let static_ok = ip.split_once('/').is_some_and(|(a, p)| {
        a.parse::<std::net::Ipv4Addr>().is_ok() && p.parse::<u8>().is_ok_and(|p| p <= 32)
    });
    if ip == "dhcp" {
        if gw.is_some() {
            return false;
        }
    } else if !static_ok {
        return false;
    } else {
        match (&gw, &inherited.gateway) {
            (Some(g), Some(d)) if g == d => {}
            (Some(g), _) => ct.gateway = Some(g.clone()),
            // The defaults would add a gateway this NIC does not have.
            (None, Some(_)) => return false,
            (None, None) => {}
        }
        ct.ip = Some(ip);
    }
    if bridge != inherited.bridge {
        ct.bridge = Some(bridge);
    }
    true
}

/// The declarations rendered as YAML list items at `indent` (the column of `-`).
pub fn render_items<T: serde::Serialize>(
    items: &[(T, String)],
    indent: usize,
) -> Result<String, String> {
    let pad = " ".repeat(indent);
    let mut out = String::new();
    for (ct, comment) in items {
        let yaml = serde_yaml_ng::to_string(ct).map_err(|e| e.to_string())?;
        if !comment.is_empty() {
            out.push_str(&format!("{pad}# {comment}\n"));
        }
        for (i, line) in yaml.lines().enumerate() {
            let lead = if i == 0 { "- " } else { "  " };
            out.push_str(&format!("{pad}{lead}{line}\n"));
        }
    }
    Ok(out)
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

fn is_content(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && !t.starts_with('#')
}

/// Insert container declarations into homelab.yaml's text: appended to `lxc.containers`
/// (created when missing), every other line left as it was.
pub fn insert_containers(text: &str, items: &[(Container, String)]) -> Result<String, String> {
    insert_list(text, "lxc", "containers", items)
}

/// Insert VM declarations into homelab.yaml's text: appended to `vms.machines` (created
/// when missing), every other line left as it was.
pub fn insert_vms(text: &str, items: &[(super::config::Vm, String)]) -> Result<String, String> {
    insert_list(text, "vms", "machines", items)
}

/// Append `items` to the block list `<section>.<list>` of homelab.yaml's text.
fn insert_list<T: serde::Serialize>(
    text: &str,
    section: &str,
    list: &str,
    items: &[(T, String)],
) -> Result<String, String> {
    let key = format!("{list}:");
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let top = |l: &str, key: &str| {
        indent_of(l) == 0
            && l.trim_end()
                .strip_prefix(key)
                .is_some_and(|r| r.starts_with(':'))
    };
    let Some(lxc) = lines.iter().position(|l| top(l, section)) else {
        let mut out = text.to_string();
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&format!("\n{section}:\n  {list}:\n"));
        out.push_str(&render_items(items, 4)?);
        return Ok(out);
    };
    // The end of the `lxc:` block: the next top-level content line.
    let lxc_end = lines
        .iter()
        .enumerate()
        .skip(lxc + 1)
        .find(|(_, l)| is_content(l) && indent_of(l) == 0)
        .map_or(lines.len(), |(i, _)| i);
    let containers = (lxc + 1..lxc_end).find(|&i| {
        let t = lines[i].trim_start();
        is_content(lines[i]) && t.starts_with(key.as_str())
    });
    let Some(ci) = containers else {
        // No `containers:` yet: add it at the end of the block.
        let indent = (lxc + 1..lxc_end)
            .find(|&i| is_content(lines[i]))
            .map_or(2, |i| indent_of(lines[i]));
        let at = last_content(&lines, lxc, lxc_end) + 1;
        let mut block = format!("{}{key}\n", " ".repeat(indent));
        block.push_str(&render_items(items, indent + 2)?);
        return Ok(splice(&lines, at, &block));
    };
    let key_indent = indent_of(lines[ci]);
    let rest = lines[ci].trim().trim_start_matches(key.as_str()).trim();
    let rest = rest.split(" #").next().unwrap_or("").trim();
    if rest == "[]" {
        let mut block = format!("{}{key}\n", " ".repeat(key_indent));
        block.push_str(&render_items(items, key_indent + 2)?);
        let mut out: String = lines[..ci].concat();
        out.push_str(&block);
        out.push_str(&lines[ci + 1..].concat());
        return Ok(out);
    }
    if !rest.is_empty() {
        return Err(format!(
            "line {}: `{key}` is written inline; write it as a block list to import into it",
            ci + 1
        ));
    }
    // The list: lines deeper than the key, or `- ` items at the key's column.
    let mut end = ci;
    let mut dash = None;
    for (i, l) in lines.iter().enumerate().take(lxc_end).skip(ci + 1) {
        if !is_content(l) {
            continue;
        }
        let ind = indent_of(l);
        let item = l.trim_start().starts_with("- ") || l.trim() == "-";
        if ind > key_indent || (ind == key_indent && item) {
            if item && dash.is_none() {
                dash = Some(ind);
            }
            end = i;
        } else {
            break;
        }
    }
    let dash = dash.unwrap_or(key_indent + 2);
    Ok(splice(&lines, end + 1, &render_items(items, dash)?))
}

fn last_content(lines: &[&str], from: usize, to: usize) -> usize {
    (from..to)
        .rev()
        .find(|&i| is_content(lines[i]))
        .unwrap_or(from)
}

fn splice(lines: &[&str], at: usize, block: &str) -> String {
    let mut out: String = lines[..at].concat();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(block);
    out.push_str(&lines[at..].concat());
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn inherited() -> Inherited {
        Inherited {
            node: "pve".into(),
            cores: 1,
            memory: Size::from_mib(512),
            swap: Size::from_mib(512),
            disk: Size::from_gib(8),
            storage: "local-lvm".into(),
            bridge: "vmbr0".into(),
            gateway: Some("10.0.10.1".into()),
            nameservers: Some(vec!["10.0.10.1".into()]),
            unprivileged: true,
            features: Features {
                nesting: true,
                keyctl: false,
            },
            onboot: true,
            has_template: true,
        }
    }

    fn cfg(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn a_service_maps_to_fields_and_options_with_secrets_split_out() {
        let c = cfg(&[
            ("hostname", "postgresql"),
            ("arch", "amd64"),
            ("ostype", "debian"),
            ("cores", "2"),
            ("memory", "2048"),
            ("swap", "512"),
            ("unprivileged", "1"),
            ("onboot", "1"),
            ("features", "nesting=1"),
            ("startup", "order=2,up=15"),
            ("nameserver", "10.0.10.1"),
            (
                "net0",
                "name=eth0,bridge=vmbr0,hwaddr=BC:24:11:00:00:01,ip=10.0.10.103/24,gw=10.0.10.1,type=veth",
            ),
            ("rootfs", "local-lvm:vm-103-disk-0,size=8G"),
            (
                "mp0",
                "tank:subvol-103-disk-0,mp=/var/lib/postgresql,backup=1,size=32G",
            ),
            ("tags", "database;prod"),
            ("description", "Postgres for n8n and paperless\n"),
            ("env", "POSTGRES_USER=app\0POSTGRES_PASSWORD=hunter22"),
            ("cpulimit", "2"),
            ("digest", "abc"),
            ("unused0", "tank:subvol-103-disk-1"),
        ]);
        let m = map_container(103, "pve", &c, &inherited(), "lxc").unwrap();
        let ct = &m.container;
        assert_eq!(ct.name, "postgresql");
        assert_eq!(ct.cores, Some(2));
        assert_eq!(ct.memory, Some(Size::from_gib(2)));
        assert_eq!(ct.swap, None, "equal to the default");
        assert_eq!(ct.features, None, "equal to the default");
        assert_eq!(ct.gateway, None, "equal to the default");
        assert_eq!(ct.ip.as_deref(), Some("10.0.10.103/24"));
        assert_eq!(
            ct.startup,
            Some(Startup {
                order: 2,
                up: Some(15),
                down: None
            })
        );
        assert_eq!(ct.tags, vec!["database", "prod"]);
        assert_eq!(ct.mounts.len(), 1);
        assert!(ct.mounts[0].backup);
        assert_eq!(ct.mounts[0].size, Size::from_gib(32));
        assert!(ct.adopt);
        assert_eq!(ct.options["arch"], "amd64");
        assert_eq!(ct.options["cpulimit"], "2");
        assert_eq!(ct.options["env"], "${secret:lxc.postgresql.env}");
        assert_eq!(
            m.secrets,
            vec![(
                "lxc.postgresql.env".to_string(),
                "POSTGRES_USER=app\0POSTGRES_PASSWORD=hunter22".to_string()
            )]
        );
        assert!(!ct.options.contains_key("digest"));
        assert!(m.notes.iter().any(|n| n.contains("unused0")));
    }

    #[test]
    fn nics_and_features_the_model_cannot_say_are_kept_whole() {
        let c = cfg(&[
            ("hostname", "minio"),
            (
                "net0",
                "name=eth0,bridge=vmbr0,firewall=1,ip=dhcp,type=veth",
            ),
            ("features", "nesting=1,fuse=1"),
            ("rootfs", "local-lvm:vm-105-disk-0,size=8G"),
        ]);
        let m = map_container(105, "pve", &c, &inherited(), "lxc").unwrap();
        assert_eq!(
            m.container.options["net0"],
            "name=eth0,bridge=vmbr0,firewall=1,ip=dhcp,type=veth"
        );
        assert_eq!(m.container.options["features"], "nesting=1,fuse=1");
        assert_eq!(m.container.unprivileged, Some(false));
        assert_eq!(m.container.onboot, Some(false));
    }

    #[test]
    fn bind_mounts_and_templates_are_refused_with_the_key() {
        let c = cfg(&[("hostname", "x"), ("mp0", "/srv/data,mp=/data")]);
        let e = map_container(110, "pve", &c, &inherited(), "lxc").unwrap_err();
        assert!(e.to_string().contains("ct 110: mp0"), "{e}");
        let c = cfg(&[("hostname", "x"), ("template", "1")]);
        assert!(map_container(110, "pve", &c, &inherited(), "lxc").is_err());
    }

    #[test]
    fn insertion_keeps_every_existing_line() {
        let text = "# top comment\nname: lab # trailing\n\nlxc:\n  defaults:\n    cores: 1\n  containers:\n    - name: a # keep me\n      vmid: 100\n\n# backups below\nbackups: []\n";
        let ct = Container {
            options: BTreeMap::new(),
            ..serde_yaml_ng::from_str("name: b\nvmid: 101\nadopt: true\n").unwrap()
        };
        let out = insert_containers(text, &[(ct.clone(), "imported".into())]).unwrap();
        assert!(out.starts_with("# top comment\nname: lab # trailing\n\nlxc:\n  defaults:\n    cores: 1\n  containers:\n    - name: a # keep me\n      vmid: 100\n    # imported\n    - name: b\n      vmid: 101\n      adopt: true\n\n# backups below\nbackups: []\n"), "{out}");
        // Without an lxc section, one is appended.
        let out = insert_containers("name: lab\n", &[(ct.clone(), String::new())]).unwrap();
        assert_eq!(
            out,
            "name: lab\n\nlxc:\n  containers:\n    - name: b\n      vmid: 101\n      adopt: true\n"
        );
        // An empty inline list becomes a block.
        let out =
            insert_containers("lxc:\n  containers: []\nx: 1\n", &[(ct, String::new())]).unwrap();
        assert_eq!(
            out,
            "lxc:\n  containers:\n    - name: b\n      vmid: 101\n      adopt: true\nx: 1\n"
        );
    }
}
