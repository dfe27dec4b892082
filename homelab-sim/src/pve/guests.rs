//! QEMU and LXC guests: create, config (pending, digest, lock), power, clone, template,
//! resize, destroy, guest agent.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::api::{Reply, check_node, config_json, flag, normalize_tags, req, vmid_of};
use super::auth::{Caller, uuid};
use super::error::{ApiError, ApiResult};
use super::hardware;
use super::schema::{Match, Params, lookup};
use super::sim::{Sim, TaskCtx, now};
use super::state::{Guest, Kind, State, Volume};

/// Route `/nodes/{node}/qemu...` and `/nodes/{node}/lxc...`.
pub async fn dispatch(
    sim: &Sim,
    caller: &Caller,
    kind: Kind,
    m: &str,
    rest: &str,
    p: Params,
) -> ApiResult<Reply> {
    match (m, rest) {
        ("GET", "") => list(sim, caller, kind, &p),
        ("POST", "") => create(sim, caller, kind, p).await,
        ("GET", "/{vmid}") => Ok(json!([
            {"subdir": "config"}, {"subdir": "pending"}, {"subdir": "status"},
            {"subdir": "agent"}, {"subdir": "clone"}, {"subdir": "resize"},
        ])
        .into()),
        ("DELETE", "/{vmid}") => destroy(sim, caller, kind, &p).await,
        ("GET", "/{vmid}/config") => get_config(sim, kind, &p),
        ("POST", "/{vmid}/config") => update(sim, caller, kind, p, true).await,
        ("PUT", "/{vmid}/config") => update(sim, caller, kind, p, false).await,
        ("GET", "/{vmid}/pending") => pending(sim, kind, &p),
        ("GET", "/{vmid}/status/current") => status(sim, kind, &p),
        ("POST", "/{vmid}/status/start") => start(sim, caller, kind, &p).await,
        ("POST", "/{vmid}/status/stop") => stop(sim, caller, kind, &p, "stop").await,
        ("POST", "/{vmid}/status/shutdown") => stop(sim, caller, kind, &p, "shutdown").await,
        ("POST", "/{vmid}/status/reboot") => reboot(sim, caller, kind, &p).await,
        ("POST", "/{vmid}/clone") => clone(sim, caller, &p).await,
        ("POST", "/{vmid}/template") if kind == Kind::Lxc => lxc_template(sim, caller, &p).await,
        ("POST", "/{vmid}/template") => template(sim, caller, &p).await,
        ("PUT", "/{vmid}/resize") if kind == Kind::Lxc => lxc_resize(sim, caller, &p).await,
        ("PUT", "/{vmid}/resize") => resize(sim, caller, &p).await,
        ("GET", "/{vmid}/agent/network-get-interfaces") => agent(sim, &p, "network-get-interfaces"),
        ("POST", "/{vmid}/agent/ping") => agent(sim, &p, "ping"),
        ("POST", "/{vmid}/agent") => agent(sim, &p, req(&p, "command")?),
        ("GET", "/{vmid}/interfaces") => lxc_interfaces(sim, &p),
        _ => Err(ApiError::not_implemented(m, rest)),
    }
}

// ----------------------------------------------------------------------------- helpers

/// Whether a config key names a disk (`scsi0`, `efidisk0`, LXC `rootfs`, `mp0`...).
pub fn is_disk_key(k: &str) -> bool {
    let base = k.trim_end_matches(|c: char| c.is_ascii_digit());
    (base != k && matches!(base, "scsi" | "virtio" | "sata" | "ide" | "mp" | "unused"))
        || matches!(k, "efidisk0" | "tpmstate0" | "rootfs")
}

/// Parse `32G`, `512M`, `4096` (bytes), `1.5G`.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last()? {
        'K' | 'k' => (&s[..s.len() - 1], 1u64 << 10),
        'M' | 'm' => (&s[..s.len() - 1], 1 << 20),
        'G' | 'g' => (&s[..s.len() - 1], 1 << 30),
        'T' | 't' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    let n: f64 = num.parse().ok()?;
    (n >= 0.0).then_some((n * mult as f64) as u64)
}

/// Format a size the way PVE prints `size=` (largest exact unit).
pub fn fmt_size(b: u64) -> String {
    for (unit, m) in [
        ("T", 1u64 << 40),
        ("G", 1 << 30),
        ("M", 1 << 20),
        ("K", 1 << 10),
    ] {
        if b >= m && b.is_multiple_of(m) {
            return format!("{}{unit}", b / m);
        }
    }
    b.to_string()
}

fn not_found(kind: Kind, node: &str, vmid: u32) -> ApiError {
    ApiError::fail(format!(
        "Configuration file 'nodes/{node}/{}/{vmid}.conf' does not exist",
        kind.conf_dir()
    ))
}

fn guest<'a>(st: &'a State, kind: Kind, node: &str, vmid: u32) -> ApiResult<&'a Guest> {
    st.guests
        .get(&vmid)
        .filter(|g| g.kind == kind && g.node == node)
        .ok_or_else(|| not_found(kind, node, vmid))
}

fn guest_mut<'a>(
    st: &'a mut State,
    kind: Kind,
    node: &str,
    vmid: u32,
) -> Result<&'a mut Guest, String> {
    st.guests
        .get_mut(&vmid)
        .filter(|g| g.kind == kind && g.node == node)
        .ok_or_else(|| not_found(kind, node, vmid).message.trim_end().to_string())
}

fn check_lock(g: &Guest, p: &Params) -> ApiResult<()> {
    match g.lock() {
        Some(l) if !flag(p, "skiplock", false) => Err(ApiError::fail(format!(
            "{} is locked ({l})",
            g.kind.label()
        ))),
        _ => Ok(()),
    }
}

fn check_skiplock(caller: &Caller, p: &Params) -> ApiResult<()> {
    if flag(p, "skiplock", false) && !caller.is_root() {
        return Err(ApiError::param(
            "skiplock",
            "Only root may use this option.",
        ));
    }
    Ok(())
}

/// A random MAC with Proxmox's OUI `BC:24:11`.
pub fn gen_mac() -> String {
    let b: [u8; 3] = rand::random();
    format!("BC:24:11:{:02X}:{:02X}:{:02X}", b[0], b[1], b[2])
}

/// Split a property string into (positional or `file`/`volume` value, sorted options).
fn split_prop(v: &str, main_key: &str) -> (String, BTreeMap<String, String>) {
    let mut main = String::new();
    let mut opts = BTreeMap::new();
    for part in v.split(',').filter(|s| !s.is_empty()) {
        match part.split_once('=') {
            Some((k, val)) if k == main_key => main = val.to_string(),
            Some((k, val)) => {
                opts.insert(k.to_string(), val.to_string());
            }
            None => main = part.to_string(),
        }
    }
    (main, opts)
}

fn join_prop(main: &str, opts: &BTreeMap<String, String>) -> String {
    let mut out = main.to_string();
    for (k, v) in opts {
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(&format!("{k}={v}"));
    }
    out
}

const NET_MODELS: &[&str] = &[
    "e1000",
    "e1000-82540em",
    "e1000-82544gc",
    "e1000-82545em",
    "e1000e",
    "i82551",
    "i82557b",
    "i82559er",
    "ne2k_isa",
    "ne2k_pci",
    "pcnet",
    "rtl8139",
    "virtio",
    "vmxnet3",
];

/// Normalise a QEMU `netN` value to the stored form `model=MAC,bridge=...`, generating a
/// MAC (or keeping `old_mac`) when none is given.
fn normalize_qemu_net(v: &str, old_mac: Option<String>) -> String {
    let mut model = String::from("virtio");
    let mut mac = None;
    let mut opts = BTreeMap::new();
    for part in v.split(',').filter(|s| !s.is_empty()) {
        match part.split_once('=') {
            Some((k, val)) if NET_MODELS.contains(&k) => {
                model = k.to_string();
                mac = Some(val.to_uppercase());
            }
            Some(("model", val)) => model = val.to_string(),
            Some(("macaddr", val)) => mac = Some(val.to_uppercase()),
            Some((k, val)) => {
                opts.insert(k.to_string(), val.to_string());
            }
            None => model = part.to_string(),
        }
    }
    let mac = mac.or(old_mac).unwrap_or_else(gen_mac);
    join_prop(&format!("{model}={mac}"), &opts)
}

fn net_mac(v: &str) -> Option<String> {
    v.split(',').find_map(|part| {
        let (k, val) = part.split_once('=')?;
        (NET_MODELS.contains(&k) || k == "macaddr" || k == "hwaddr").then(|| val.to_uppercase())
    })
}

/// Normalise an LXC `netN`: ensure `hwaddr` and `type=veth`, keys sorted.
fn normalize_lxc_net(v: &str, old_mac: Option<String>) -> String {
    let (_, mut opts) = split_prop(v, "name");
    if let Some((_, n)) = v
        .split(',')
        .find_map(|p| p.split_once('=').filter(|(k, _)| *k == "name"))
    {
        opts.insert("name".into(), n.to_string());
    }
    let mac = opts
        .get("hwaddr")
        .map(|m| m.to_uppercase())
        .or(old_mac)
        .unwrap_or_else(gen_mac);
    opts.insert("hwaddr".into(), mac);
    opts.entry("type".into()).or_insert_with(|| "veth".into());
    join_prop("", &opts)
}

fn storage_of(volid: &str) -> &str {
    volid.split(':').next().unwrap_or("")
}

/// Allocate a new image volume for a guest; returns its volid.
#[allow(clippy::too_many_arguments)]
fn alloc_image(
    sim: &Sim,
    st: &mut State,
    node: &str,
    storage: &str,
    vmid: u32,
    size: u64,
    name: Option<String>,
    content: &str,
) -> Result<String, String> {
    let cfg = st
        .storages
        .get(storage)
        .ok_or_else(|| format!("storage '{storage}' does not exist"))?;
    let wanted = if content == "rootdir" {
        "rootdir"
    } else {
        "images"
    };
    if !cfg.content.iter().any(|c| c == wanted) {
        return Err(format!(
            "storage '{storage}' does not support {}",
            if wanted == "rootdir" {
                "container directories"
            } else {
                "vm images"
            }
        ));
    }
    if sim.faults().take_storage_lock_timeout() {
        return Err(format!(
            "cfs-lock 'storage-{storage}' error: got lock request timeout"
        ));
    }
    let file_based = cfg.file_based();
    // ZFS gives containers datasets (`subvol-...`), VMs zvols (`vm-...`).
    let zfs_subvol = cfg.ty == "zfspool" && content == "rootdir";
    let prefix = if zfs_subvol { "subvol" } else { "vm" };
    let name = name.unwrap_or_else(|| {
        (0..)
            .map(|n| format!("{prefix}-{vmid}-disk-{n}"))
            .find(|n| {
                !st.volumes.keys().any(|k| {
                    k.starts_with(&format!("{node}/{storage}:"))
                        && (k.ends_with(&format!(":{n}"))
                            || k.contains(&format!("/{n}."))
                            || k.ends_with(&format!("/{n}")))
                })
            })
            .unwrap_or_default()
    });
    let (volid, format) = if file_based {
        // Container volumes on directory storages are raw images.
        let fmt = if content == "rootdir" { "raw" } else { "qcow2" };
        (format!("{storage}:{vmid}/{name}.{fmt}"), fmt)
    } else if zfs_subvol {
        (format!("{storage}:{name}"), "subvol")
    } else {
        (format!("{storage}:{name}"), "raw")
    };
    st.volumes.insert(
        format!("{node}/{volid}"),
        Volume {
            volid: volid.clone(),
            node: node.to_string(),
            storage: storage.to_string(),
            content: content.to_string(),
            format: format.to_string(),
            size,
            vmid: Some(vmid),
            ctime: now(),
            sha256: None,
        },
    );
    Ok(volid)
}

fn volume_size(st: &State, node: &str, volid: &str) -> Option<u64> {
    st.volumes.get(&format!("{node}/{volid}")).map(|v| v.size)
}

fn is_new_disk_spec(file: &str) -> Option<(String, f64)> {
    let (s, size) = file.split_once(':')?;
    let n: f64 = size.parse().ok()?;
    super::formats::check("pve-storage-id", s).ok()?;
    Some((s.to_string(), n))
}

/// Turn a requested disk value into the stored one, allocating or importing volumes.
#[allow(clippy::too_many_arguments)]
fn process_disk(
    sim: &Sim,
    st: &mut State,
    node: &str,
    vmid: u32,
    kind: Kind,
    key: &str,
    value: &str,
    ctx: Option<&TaskCtx>,
    allocated: &mut Vec<String>,
) -> Result<String, String> {
    let main_key = if kind == Kind::Lxc { "volume" } else { "file" };
    let (file, mut opts) = split_prop(value, main_key);
    let log = |l: String| {
        if let Some(c) = ctx {
            c.log(l)
        }
    };
    if file == "none" || file == "cdrom" || opts.get("media").is_some_and(|m| m == "cdrom") {
        if file != "none" && file != "cdrom" && volume_size(st, node, &file).is_none() {
            return Err(format!("volume '{file}' does not exist"));
        }
        return Ok(join_prop(&file, &opts));
    }
    if let Some(storage) = file.strip_suffix(":cloudinit") {
        let volid = alloc_image(
            sim,
            st,
            node,
            storage,
            vmid,
            4 << 20,
            Some(format!("vm-{vmid}-cloudinit")),
            "images",
        )?;
        allocated.push(volid.clone());
        opts.insert("media".into(), "cdrom".into());
        let v = join_prop(&volid, &opts);
        log(format!("{key}: successfully created disk '{v}'"));
        return Ok(v);
    }
    if let Some((storage, gib)) = is_new_disk_spec(&file) {
        let content = if kind == Kind::Lxc {
            "rootdir"
        } else {
            "images"
        };
        let size = if let Some(src) = opts.remove("import-from") {
            let size = volume_size(st, node, &src)
                .ok_or_else(|| format!("volume '{src}' does not exist"))?;
            log(format!("importing disk '{src}' to VM {vmid} ..."));
            log(format!("transferred {0} of {0} (100.00%)", human_gib(size)));
            size
        } else {
            match key {
                "efidisk0" => {
                    if opts.get("efitype").is_some_and(|t| t == "4m") {
                        4 << 20
                    } else {
                        528 << 10
                    }
                }
                "tpmstate0" => 4 << 20,
                _ => (gib * (1u64 << 30) as f64) as u64,
            }
        };
        let volid = alloc_image(sim, st, node, &storage, vmid, size, None, content)?;
        allocated.push(volid.clone());
        opts.insert("size".into(), fmt_size(size));
        let v = join_prop(&volid, &opts);
        log(format!("{key}: successfully created disk '{v}'"));
        return Ok(v);
    }
    if volume_size(st, node, &file).is_none() && !file.starts_with('/') {
        return Err(format!("volume '{file}' does not exist"));
    }
    if !opts.contains_key("size")
        && let Some(size) = volume_size(st, node, &file)
    {
        opts.insert("size".into(), fmt_size(size));
    }
    Ok(join_prop(&file, &opts))
}

/// The config keeps a salted hash of `cipassword` (qemu-server stores a crypt hash), so no
/// plaintext password reaches the state file. An already hashed value is kept as is.
fn hash_cipassword(v: &str) -> String {
    if v.starts_with("$5$") {
        return v.to_string();
    }
    let salt = hex::encode(rand::random::<[u8; 8]>());
    let digest = <sha2::Sha256 as sha2::Digest>::digest(format!("{salt}{v}").as_bytes());
    format!("$5${salt}${}", hex::encode(digest))
}

fn human_gib(b: u64) -> String {
    format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64)
}

fn remove_volumes(st: &mut State, keys: &[String], node: &str) {
    for volid in keys {
        st.volumes.remove(&format!("{node}/{volid}"));
    }
}

/// Schema of the create endpoint, used to type config values in answers.
fn create_schema(kind: Kind) -> Option<&'static super::schema::Endpoint> {
    let path = match kind {
        Kind::Qemu => "/nodes/x/qemu",
        Kind::Lxc => "/nodes/x/lxc",
    };
    match lookup("POST", path) {
        Match::Found(e, _) => Some(e),
        _ => None,
    }
}

// ----------------------------------------------------------------------------- read

fn list(sim: &Sim, caller: &Caller, kind: Kind, p: &Params) -> ApiResult<Reply> {
    let st = sim.state();
    let node = req(p, "node")?;
    check_node(&st, node)?;
    let list: Vec<Value> = st
        .guests
        .values()
        .filter(|g| g.kind == kind && g.node == node)
        // Like qemu-server: guests the caller may not audit are left out.
        .filter(|g| {
            super::auth::privileges(&st, caller, &format!("/vms/{}", g.vmid)).contains("VM.Audit")
        })
        .map(|g| {
            let mut v = json!({
                "vmid": g.vmid,
                "name": g.name(),
                "status": if g.running { "running" } else { "stopped" },
                "maxmem": g.memory_mib() << 20,
                "maxdisk": super::api::boot_disk_size(&st, g),
                "cpus": g.cpus(),
                "uptime": g.started_at.map(|s| now().saturating_sub(s)).unwrap_or(0),
                "cpu": 0,
                "mem": if g.running { (g.memory_mib() << 20) / 4 } else { 0 },
                "disk": 0, "netin": 0, "netout": 0, "diskread": 0, "diskwrite": 0,
            });
            if let Some(o) = v.as_object_mut() {
                if kind == Kind::Lxc {
                    o.insert("type".into(), json!("lxc"));
                } else if g.running {
                    o.insert("qmpstatus".into(), json!("running"));
                    o.insert("pid".into(), json!(10_000 + g.vmid));
                }
                if g.is_template() {
                    o.insert("template".into(), json!(1));
                }
                if let Some(l) = g.lock() {
                    o.insert("lock".into(), json!(l));
                }
                if let Some(t) = g.effective().get("tags") {
                    o.insert("tags".into(), json!(t));
                }
            }
            v
        })
        .collect();
    Ok(Value::Array(list).into())
}

fn get_config(sim: &Sim, kind: Kind, p: &Params) -> ApiResult<Reply> {
    let st = sim.state();
    let node = req(p, "node")?;
    let g = guest(&st, kind, node, vmid_of(p, "vmid")?)?;
    let cfg = if flag(p, "current", false) {
        g.config.clone()
    } else {
        g.effective()
    };
    let mut o = config_json(&cfg, create_schema(kind));
    // qemu-server never returns the cloud-init password, only that one is set.
    if o.contains_key("cipassword") {
        o.insert("cipassword".into(), json!("**********"));
    }
    o.insert("digest".into(), json!(g.digest()));
    Ok(Value::Object(o).into())
}

fn pending(sim: &Sim, kind: Kind, p: &Params) -> ApiResult<Reply> {
    let st = sim.state();
    let node = req(p, "node")?;
    let g = guest(&st, kind, node, vmid_of(p, "vmid")?)?;
    let mut keys: BTreeSet<&String> = g.config.keys().collect();
    keys.extend(g.pending.keys());
    keys.extend(g.pending_delete.iter());
    let list: Vec<Value> = keys
        .into_iter()
        .map(|k| {
            let mut o = serde_json::Map::new();
            o.insert("key".into(), json!(k));
            if let Some(v) = g.config.get(k) {
                o.insert("value".into(), json!(v));
            }
            if let Some(v) = g.pending.get(k) {
                o.insert("pending".into(), json!(v));
            }
            if g.pending_delete.contains(k) {
                o.insert("delete".into(), json!(1));
            }
            Value::Object(o)
        })
        .collect();
    Ok(Value::Array(list).into())
}

fn status(sim: &Sim, kind: Kind, p: &Params) -> ApiResult<Reply> {
    let st = sim.state();
    let node = req(p, "node")?;
    let g = guest(&st, kind, node, vmid_of(p, "vmid")?)?;
    let cfg = g.effective();
    let maxmem = g.memory_mib() << 20;
    let mut v = json!({
        "vmid": g.vmid,
        "name": g.name(),
        "status": if g.running { "running" } else { "stopped" },
        "ha": {"managed": 0},
        "cpus": g.cpus(),
        "cpu": 0,
        "maxmem": maxmem,
        "mem": if g.running { maxmem / 4 } else { 0 },
        "maxdisk": super::api::boot_disk_size(&st, g),
        "disk": 0,
        "uptime": g.started_at.map(|s| now().saturating_sub(s)).unwrap_or(0),
        "netin": 0, "netout": 0, "diskread": 0, "diskwrite": 0,
    });
    if let Some(o) = v.as_object_mut() {
        match kind {
            Kind::Qemu => {
                o.insert(
                    "qmpstatus".into(),
                    json!(if g.running { "running" } else { "stopped" }),
                );
                o.insert("agent".into(), json!(u8::from(agent_enabled(&cfg))));
                if g.running {
                    o.insert("pid".into(), json!(10_000 + g.vmid));
                    o.insert("running-machine".into(), json!("pc-q35-10.1+pve0"));
                    o.insert("running-qemu".into(), json!("10.1.2"));
                }
                if cfg.keys().any(|k| k.starts_with("serial")) {
                    o.insert("serial".into(), json!(1));
                }
            }
            Kind::Lxc => {
                o.insert("type".into(), json!("lxc"));
                let swap: u64 = cfg.get("swap").and_then(|s| s.parse().ok()).unwrap_or(512);
                o.insert("maxswap".into(), json!(swap << 20));
                o.insert("swap".into(), json!(0));
            }
        }
        if g.is_template() {
            o.insert("template".into(), json!(1));
        }
        if let Some(l) = g.lock() {
            o.insert("lock".into(), json!(l));
        }
        if let Some(t) = cfg.get("tags") {
            o.insert("tags".into(), json!(t));
        }
    }
    Ok(v.into())
}

fn agent_enabled(cfg: &BTreeMap<String, String>) -> bool {
    cfg.get("agent").is_some_and(|a| {
        let (main, _) = split_prop(a, "enabled");
        main == "1"
    })
}

/// pve-common `validate_ssh_public_keys`: every non-blank line must be a key `ssh-keygen -l`
/// reads. Modelled structurally: a known key type followed by base64 whose blob names that
/// type (and, for ed25519, carries a 32-byte key); authorized_keys options may come first.
fn validate_ssh_keys(raw: &str) -> ApiResult<()> {
    use base64::Engine as _;
    const TYPES: &[&str] = &[
        "ssh-ed25519",
        "ssh-rsa",
        "ssh-dss",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    ];
    let ok = |line: &str| -> bool {
        let toks: Vec<&str> = line.split_whitespace().collect();
        let Some(i) = toks.iter().position(|t| TYPES.contains(t)) else {
            return false;
        };
        let Some(blob) = toks
            .get(i + 1)
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        else {
            return false;
        };
        let field = |at: usize| -> Option<(&[u8], usize)> {
            let len = u32::from_be_bytes(blob.get(at..at + 4)?.try_into().ok()?) as usize;
            Some((blob.get(at + 4..at + 4 + len)?, at + 4 + len))
        };
        match field(0) {
            Some((ty, next)) if ty == toks[i].as_bytes() => match toks[i] {
                "ssh-ed25519" => {
                    field(next).is_some_and(|(k, end)| k.len() == 32 && end == blob.len())
                }
                _ => next < blob.len(),
            },
            _ => false,
        }
    };
    if raw.lines().filter(|l| !l.trim().is_empty()).all(ok) {
        Ok(())
    } else {
        Err(ApiError::fail("SSH public key validation error"))
    }
}

/// pve-container `check_ct_modify_config_perm` for `features`: privileged containers'
/// features and any feature but `nesting` are root@pam's; both raise permission exceptions.
fn check_features_perm(
    caller: &Caller,
    old: Option<&str>,
    new: Option<&str>,
    unprivileged: bool,
) -> ApiResult<()> {
    if caller.is_root() {
        return Ok(());
    }
    let perm = |what: &str| ApiError::status(403, format!("Permission check failed ({what})"));
    if !unprivileged {
        return Err(perm(
            "changing feature flags for privileged container is only allowed for root@pam",
        ));
    }
    let parse = |f: Option<&str>| -> BTreeMap<String, String> {
        f.unwrap_or("")
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let (old, new) = (parse(old), parse(new));
    let other_changed = old
        .keys()
        .chain(new.keys())
        .any(|k| k != "nesting" && old.get(k) != new.get(k));
    if other_changed {
        return Err(perm(
            "changing feature flags (except nesting) is only allowed for root@pam",
        ));
    }
    Ok(())
}

// ----------------------------------------------------------------------------- create

const CREATE_ONLY: &[&str] = &[
    "node",
    "vmid",
    "start",
    "pool",
    "storage",
    "archive",
    "force",
    "unique",
    "live-restore",
    "import-working-storage",
    "bwlimit",
    "ostemplate",
    "password",
    "ssh-public-keys",
    "restore",
    "ignore-unpack-errors",
];

async fn create(sim: &Sim, caller: &Caller, kind: Kind, p: Params) -> ApiResult<Reply> {
    // A restore is a create from the archive's configuration (see vzdump.rs).
    let mut p = p;
    let restored = super::vzdump::restore_params(&sim.state(), kind, &mut p)?;
    let node = req(&p, "node")?.to_string();
    let vmid = vmid_of(&p, "vmid")?;
    if let Some(k) = p.get("sshkeys") {
        validate_ssh_keys(&super::schema::percent_decode(k))?;
    }
    if let Some(k) = p.get("ssh-public-keys") {
        validate_ssh_keys(k)?;
    }
    {
        let st = sim.state();
        check_node(&st, &node)?;
        if let Some(g) = st.guests.get(&vmid) {
            return Err(ApiError::fail(match kind {
                Kind::Qemu => format!(
                    "unable to create VM {vmid} - VM {vmid} already exists on node '{}'",
                    g.node
                ),
                Kind::Lxc => format!("CT {vmid} already exists on node '{}'", g.node),
            }));
        }
        if let Some(pool) = p.get("pool")
            && !st.pools.contains_key(pool)
        {
            return Err(ApiError::fail(format!("pool '{pool}' does not exist")));
        }
        let settings: BTreeMap<String, String> = p
            .iter()
            .filter(|(k, _)| !CREATE_ONLY.contains(&k.as_str()) && *k != "unprivileged")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if kind == Kind::Lxc {
            // pve-container checks config permissions before it looks at the template.
            super::perms::lxc_config(&st, caller, vmid, &settings, &[])?;
            super::perms::bridges(&st, caller, &settings)?;
            if let Some(f) = p.get("features") {
                check_features_perm(caller, None, Some(f), flag(&p, "unprivileged", true))?;
            }
            if p.keys().any(|k| hardware::is_dev_key(k)) {
                hardware::check_dev_perm(caller)?;
            }
            let tmpl = req(&p, "ostemplate")?;
            if volume_size(&st, &node, tmpl).is_none() {
                return Err(ApiError::fail(format!("volume '{tmpl}' does not exist")));
            }
        }
        if kind == Kind::Qemu {
            // qemu-server create_vm: `$check_vm_modify_config_perm` over the settings
            // (storage access was checked with VM.Allocate, see auth::handler_checks).
            super::perms::qemu_config(&st, caller, vmid, settings.keys().map(String::as_str))?;
            // ... then check_bridge_access over the new config's netN.
            super::perms::bridges(&st, caller, &settings)?;
        }
        if kind == Kind::Qemu {
            for (k, v) in p.iter().filter(|(k, _)| hardware::is_hostpci_key(k)) {
                hardware::check_hostpci_perm(&st, caller, vmid, k, v)?;
            }
        }
    }
    for (k, v) in &p {
        if is_disk_key(k) && v.contains("import-from=") {
            let (file, _) = split_prop(v, "file");
            if !is_new_disk_spec(&file).is_some_and(|(_, n)| n == 0.0) {
                return Err(ApiError::param(
                    k,
                    "'import-from' requires special syntax - use <storage ID>:0,import-from=<source>",
                ));
            }
        }
    }
    let guard = sim.lock_guest(kind, vmid).await?;
    {
        let mut st = sim.state();
        if st.guests.contains_key(&vmid) {
            return Err(ApiError::fail(format!(
                "unable to create VM {vmid} - VM {vmid} already exists on node '{node}'"
            )));
        }
        st.guests
            .insert(vmid, Guest::reserved(vmid, node.clone(), kind, "create"));
    }
    let ty = match (kind, restored.is_some()) {
        (Kind::Qemu, false) => "qmcreate",
        (Kind::Qemu, true) => "qmrestore",
        (Kind::Lxc, false) => "vzcreate",
        (Kind::Lxc, true) => "vzrestore",
    };
    let upid = sim.spawn_task_cleanup(
        &node.clone(),
        ty,
        &vmid.to_string(),
        &caller.authid,
        Some(guard),
        move |ctx| async move {
            let sim = ctx.sim.clone();
            if let Some(a) = &restored {
                ctx.log(format!("restoring '{a}' now.."));
            }
            let outcome = build_new_config(&ctx, kind, &node, vmid, &p);
            if let (Ok(()), Some(a)) = (&outcome, &restored) {
                super::vzdump::restore_data(&mut sim.state(), &node, vmid, a);
            }
            match outcome {
                Err(e) => {
                    let mut st = sim.state();
                    st.guests.remove(&vmid);
                    Err(match kind {
                        Kind::Qemu => format!("unable to create VM {vmid} - {e}"),
                        Kind::Lxc => format!("unable to create CT {vmid} - {e}"),
                    })
                }
                Ok(()) => {
                    if flag(&p, "start", false) {
                        let g = sim.state().guests.get(&vmid).cloned();
                        if let Some(g) = g {
                            ctx.log("Execute autostart");
                            if let Err(e) = claim_pci(&sim, &g) {
                                ctx.warn(e);
                            } else if let Err(e) = power_on(&sim, g) {
                                ctx.warn(format!("unable to start {} {vmid}: {e}", kind.label()));
                            }
                        }
                    }
                    Ok(())
                }
            }
        },
        move |sim| {
            sim.state().guests.remove(&vmid);
        },
    );
    Ok(json!(upid).into())
}

fn build_new_config(
    ctx: &TaskCtx,
    kind: Kind,
    node: &str,
    vmid: u32,
    p: &Params,
) -> Result<(), String> {
    let sim = &ctx.sim;
    let mut st = sim.state();
    let mut allocated = Vec::new();
    let mut cfg = BTreeMap::new();
    let result = (|| -> Result<(), String> {
        for (k, v) in p {
            if CREATE_ONLY.contains(&k.as_str()) {
                continue;
            }
            let v = if is_disk_key(k) {
                process_disk(
                    sim,
                    &mut st,
                    node,
                    vmid,
                    kind,
                    k,
                    v,
                    Some(ctx),
                    &mut allocated,
                )?
            } else if k.starts_with("net") && kind == Kind::Qemu {
                normalize_qemu_net(v, None)
            } else if k.starts_with("net") {
                normalize_lxc_net(v, None)
            } else if k == "cipassword" {
                hash_cipassword(v)
            } else if k == "tags" {
                normalize_tags(v)
            } else if kind == Kind::Lxc && hardware::is_dev_key(k) {
                hardware::check_dev_exists(&st, node, v)?;
                v.clone()
            } else {
                v.clone()
            };
            cfg.insert(k.clone(), v);
        }
        match kind {
            Kind::Qemu => {
                cfg.entry("meta".into())
                    .or_insert_with(|| format!("creation-qemu=10.1.2,ctime={}", now()));
                cfg.entry("smbios1".into())
                    .or_insert_with(|| format!("uuid={}", uuid()));
                cfg.entry("vmgenid".into()).or_insert_with(uuid);
                if !cfg.contains_key("boot") {
                    let mut order: Vec<String> = Vec::new();
                    let disk = cfg
                        .iter()
                        .find(|(k, v)| {
                            is_disk_key(k)
                                && !k.starts_with("unused")
                                && !matches!(k.as_str(), "efidisk0" | "tpmstate0")
                                && !v.contains("media=cdrom")
                        })
                        .map(|(k, _)| k.clone());
                    order.extend(disk);
                    order.extend(
                        cfg.iter()
                            .filter(|(k, v)| {
                                is_disk_key(k)
                                    && v.contains("media=cdrom")
                                    && !v.contains("cloudinit")
                            })
                            .map(|(k, _)| k.clone()),
                    );
                    order.extend(cfg.keys().filter(|k| k.starts_with("net")).cloned());
                    if !order.is_empty() {
                        cfg.insert("boot".into(), format!("order={}", order.join(";")));
                    }
                }
            }
            Kind::Lxc => {
                let tmpl = p.get("ostemplate").cloned().unwrap_or_default();
                if !cfg.contains_key("rootfs") {
                    let storage = p.get("storage").map(String::as_str).unwrap_or("local");
                    let v = process_disk(
                        sim,
                        &mut st,
                        node,
                        vmid,
                        kind,
                        "rootfs",
                        &format!("{storage}:4"),
                        Some(ctx),
                        &mut allocated,
                    )?;
                    cfg.insert("rootfs".into(), v);
                }
                cfg.entry("arch".into()).or_insert_with(|| "amd64".into());
                cfg.entry("hostname".into())
                    .or_insert_with(|| format!("CT{vmid}"));
                cfg.entry("memory".into()).or_insert_with(|| "512".into());
                cfg.entry("swap".into()).or_insert_with(|| "512".into());
                cfg.entry("unprivileged".into())
                    .or_insert_with(|| "1".into());
                let name = tmpl.rsplit('/').next().unwrap_or("");
                let os = [
                    "debian",
                    "ubuntu",
                    "alpine",
                    "centos",
                    "fedora",
                    "archlinux",
                    "rockylinux",
                    "almalinux",
                    "opensuse",
                    "devuan",
                    "gentoo",
                    "nixos",
                ]
                .into_iter()
                .find(|o| name.starts_with(o))
                .unwrap_or("unmanaged");
                cfg.entry("ostype".into()).or_insert_with(|| os.into());
                ctx.log(format!("extracting archive '{tmpl}'"));
                ctx.log(format!(
                    "Total bytes read: {}",
                    140_000_000 + u64::from(vmid)
                ));
                ctx.log("Detected container architecture: amd64".to_string());
            }
        }
        let g = st
            .guests
            .get_mut(&vmid)
            .ok_or_else(|| "guest vanished during create".to_string())?;
        g.config = cfg.clone();
        if let Some(pool) = p.get("pool") {
            st.pools.entry(pool.clone()).or_default().vms.insert(vmid);
        }
        Ok(())
    })();
    if result.is_err() {
        remove_volumes(&mut st, &allocated, node);
    }
    result
}

/// What a QEMU start does before QEMU runs: resolve and reserve the `hostpciN` devices of
/// the config it will run (pending changes applied). The error is the task's exit status.
fn claim_pci(sim: &Sim, g: &Guest) -> Result<(), String> {
    if g.kind != Kind::Qemu {
        return Ok(());
    }
    let st = sim.state();
    let cfg = g.effective();
    // The cloud-init drive is regenerated first (qemu-server `vm_start_nolock`).
    check_cicustom(&st, &g.node, &cfg)?;
    if !cfg.keys().any(|k| hardware::is_hostpci_key(k)) {
        return Ok(());
    }
    hardware::claim_for_start(&st, &g.node, g.vmid, &cfg).map(|_| ())
}

/// qemu-server `Cloudinit.pm`: a VM with a cloud-init drive reads its `cicustom` snippets
/// (network, user, meta, vendor) whenever the drive is generated, i.e. at every start.
fn check_cicustom(st: &State, node: &str, cfg: &BTreeMap<String, String>) -> Result<(), String> {
    let has_drive = cfg
        .iter()
        .any(|(k, v)| is_disk_key(k) && v.contains("cloudinit"));
    let Some(custom) = cfg.get("cicustom").filter(|_| has_drive) else {
        return Ok(());
    };
    let parts: BTreeMap<&str, &str> = custom
        .split(',')
        .filter_map(|p| p.split_once('='))
        .collect();
    for key in ["network", "user", "meta", "vendor"] {
        let Some(volid) = parts.get(key) else {
            continue;
        };
        let (sid, name) = volid
            .split_once(':')
            .ok_or_else(|| format!("unable to parse volume ID '{volid}'"))?;
        if !st.storages.contains_key(sid) {
            return Err(format!("storage '{sid}' does not exist"));
        }
        if !name.starts_with("snippets/") {
            return Err(format!("{volid} is not in the snippets directory"));
        }
        let present = [node, "shared"]
            .iter()
            .any(|n| st.volumes.contains_key(&format!("{n}/{volid}")));
        if !present {
            return Err(format!("can't find file '{volid}'"));
        }
    }
    Ok(())
}

/// Mark a guest running and tell the runtime; undo on failure.
fn power_on(sim: &Sim, mut g: Guest) -> Result<(), String> {
    {
        let mut st = sim.state();
        let cur = st
            .guests
            .get_mut(&g.vmid)
            .ok_or_else(|| format!("{} {} vanished", g.kind.label(), g.vmid))?;
        cur.apply_pending();
        cur.running = true;
        cur.started_at = Some(now());
        g = cur.clone();
    }
    if let Err(e) = sim.guest_started(&g) {
        let mut st = sim.state();
        if let Some(cur) = st.guests.get_mut(&g.vmid) {
            cur.running = false;
            cur.started_at = None;
        }
        return Err(e);
    }
    Ok(())
}

fn power_off(sim: &Sim, node: &str, vmid: u32) {
    {
        let mut st = sim.state();
        if let Some(g) = st.guests.get_mut(&vmid) {
            g.running = false;
            g.started_at = None;
        }
    }
    sim.guest_stopped(node, vmid);
}

// ----------------------------------------------------------------------------- power

fn prefix(kind: Kind) -> &'static str {
    if kind == Kind::Qemu { "qm" } else { "vz" }
}

/// Takes the guest's lock, then runs `work` as the guest's `qm<action>`/`vz<action>` task on
/// `node`; the reply is the task's UPID.
async fn guest_task<F, Fut>(
    sim: &Sim,
    caller: &Caller,
    kind: Kind,
    node: &str,
    vmid: u32,
    action: &str,
    work: F,
) -> ApiResult<Reply>
where
    F: FnOnce(TaskCtx) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    let guard = sim.lock_guest(kind, vmid).await?;
    let ty = format!("{}{action}", prefix(kind));
    let upid = sim.spawn_task(
        node,
        &ty,
        &vmid.to_string(),
        &caller.authid,
        Some(guard),
        work,
    );
    Ok(json!(upid).into())
}

/// Stopping and rebooting need a running guest that no lock (bar a `skiplock`) holds.
fn check_running(sim: &Sim, kind: Kind, node: &str, vmid: u32, p: &Params) -> ApiResult<()> {
    let st = sim.state();
    let g = guest(&st, kind, node, vmid)?;
    if !g.running {
        return Err(ApiError::fail(format!(
            "{} {vmid} not running",
            kind.label()
        )));
    }
    check_lock(g, p)
}

async fn start(sim: &Sim, caller: &Caller, kind: Kind, p: &Params) -> ApiResult<Reply> {
    check_skiplock(caller, p)?;
    let node = req(p, "node")?.to_string();
    let vmid = vmid_of(p, "vmid")?;
    {
        let st = sim.state();
        let g = guest(&st, kind, &node, vmid)?;
        check_lock(g, p)?;
        if g.is_template() {
            return Err(ApiError::fail(format!(
                "you can't start a {} if it's a template",
                g.kind.label()
            )));
        }
    }
    guest_task(
        sim,
        caller,
        kind,
        &node.clone(),
        vmid,
        "start",
        move |ctx| async move {
            let g = {
                let st = ctx.sim.state();
                let g =
                    guest(&st, kind, &node, vmid).map_err(|e| e.message.trim_end().to_string())?;
                if g.running {
                    return Err(format!("{} {vmid} already running", kind.label()));
                }
                super::sdn::check_bridges(&st, g)?;
                g.clone()
            };
            claim_pci(&ctx.sim, &g)?;
            power_on(&ctx.sim, g).map_err(|e| format!("start failed: {e}"))
        },
    )
    .await
}

async fn stop(sim: &Sim, caller: &Caller, kind: Kind, p: &Params, how: &str) -> ApiResult<Reply> {
    check_skiplock(caller, p)?;
    let node = req(p, "node")?.to_string();
    let vmid = vmid_of(p, "vmid")?;
    check_running(sim, kind, &node, vmid, p)?;
    guest_task(
        sim,
        caller,
        kind,
        &node.clone(),
        vmid,
        how,
        move |ctx| async move {
            power_off(&ctx.sim, &node, vmid);
            Ok(())
        },
    )
    .await
}

async fn reboot(sim: &Sim, caller: &Caller, kind: Kind, p: &Params) -> ApiResult<Reply> {
    let node = req(p, "node")?.to_string();
    let vmid = vmid_of(p, "vmid")?;
    check_running(sim, kind, &node, vmid, p)?;
    guest_task(
        sim,
        caller,
        kind,
        &node.clone(),
        vmid,
        "reboot",
        move |ctx| async move {
            power_off(&ctx.sim, &node, vmid);
            let g = ctx
                .sim
                .state()
                .guests
                .get(&vmid)
                .cloned()
                .ok_or_else(|| format!("{} {vmid} vanished", kind.label()))?;
            claim_pci(&ctx.sim, &g)?;
            power_on(&ctx.sim, g).map_err(|e| format!("start failed: {e}"))
        },
    )
    .await
}

// ----------------------------------------------------------------------------- destroy

async fn destroy(sim: &Sim, caller: &Caller, kind: Kind, p: &Params) -> ApiResult<Reply> {
    check_skiplock(caller, p)?;
    let node = req(p, "node")?.to_string();
    let vmid = vmid_of(p, "vmid")?;
    {
        let st = sim.state();
        let g = guest(&st, kind, &node, vmid)?;
        check_lock(g, p)?;
        if g.running && !(kind == Kind::Lxc && flag(p, "force", false)) {
            return Err(ApiError::fail(format!(
                "{} {vmid} is running - destroy failed",
                kind.label()
            )));
        }
        if g.config.get("protection").is_some_and(|v| v == "1") {
            return Err(ApiError::fail(format!(
                "can't remove {} {vmid} - protection mode enabled",
                kind.label()
            )));
        }
    }
    let purge = flag(p, "purge", false);
    guest_task(
        sim,
        caller,
        kind,
        &node.clone(),
        vmid,
        "destroy",
        move |ctx| async move {
            let was_running = {
                let mut st = ctx.sim.state();
                let keys: Vec<String> = st
                    .volumes
                    .iter()
                    .filter(|(_, v)| {
                        v.node == node
                            && v.vmid == Some(vmid)
                            && matches!(v.content.as_str(), "images" | "rootdir")
                    })
                    .map(|(k, _)| k.clone())
                    .collect();
                // pve-storage `vdisk_free`: a template's base volume that linked clones
                // still name as their parent (ZFS, directory storages) is not removed.
                for k in &keys {
                    let Some(v) = st.volumes.get(k) else { continue };
                    let Some(name) = v.volid.split_once(':').map(|(_, n)| n.to_string()) else {
                        continue;
                    };
                    let base = name
                        .trim_end_matches(".qcow2")
                        .rsplit('/')
                        .next()
                        .unwrap_or("");
                    if !base.starts_with("base-") {
                        continue;
                    }
                    let ty = st.storages.get(&v.storage).map(|c| c.ty.clone());
                    let tracks_parent = ty.as_deref() == Some("zfspool")
                        || st.storages.get(&v.storage).is_some_and(|c| c.file_based());
                    let used = st.volumes.values().any(|o| {
                        o.vmid != Some(vmid)
                            && o.storage == v.storage
                            && (o.volid.contains(&format!("{base}/"))
                                || o.volid.contains(&format!("{base}.qcow2/")))
                    });
                    if tracks_parent && used {
                        return Err(format!(
                            "base volume '{name}' is still in use by linked cloned"
                        ));
                    }
                }
                for k in keys {
                    if let Some(v) = st.volumes.remove(&k) {
                        let name = v.volid.split(':').nth(1).unwrap_or("").to_string();
                        if st.storages.get(&v.storage).is_some_and(|s| !s.file_based()) {
                            ctx.log(format!("  Logical volume \"{name}\" successfully removed."));
                        }
                    }
                }
                let was_running = st.guests.get(&vmid).is_some_and(|g| g.running);
                st.guests.remove(&vmid);
                for pool in st.pools.values_mut() {
                    pool.vms.remove(&vmid);
                }
                if purge {
                    ctx.log(format!(
                        "purging {} {vmid} from related configurations..",
                        kind.label()
                    ));
                    for job in st.backup_jobs.values_mut() {
                        if let Some(list) = job.get("vmid").cloned() {
                            let rest: Vec<&str> =
                                list.split(',').filter(|v| *v != vmid.to_string()).collect();
                            job.insert("vmid".into(), rest.join(","));
                        }
                    }
                }
                was_running
            };
            if was_running {
                ctx.sim.guest_stopped(&node, vmid);
            }
            ctx.sim.guest_destroyed(&node, vmid);
            Ok(())
        },
    )
    .await
}

// ----------------------------------------------------------------------------- config update

fn hotpluggable(kind: Kind, key: &str, cfg: &BTreeMap<String, String>) -> bool {
    const FAST: &[&str] = &[
        "name",
        "hostname",
        "description",
        "onboot",
        "protection",
        "tags",
        "startup",
        "hookscript",
        "lock",
    ];
    if FAST.contains(&key) {
        return true;
    }
    let base = key.trim_end_matches(|c: char| c.is_ascii_digit());
    match kind {
        Kind::Lxc => matches!(
            base,
            "net"
                | "memory"
                | "swap"
                | "cores"
                | "cpulimit"
                | "cpuunits"
                | "nameserver"
                | "searchdomain"
        ),
        Kind::Qemu => {
            let hotplug = cfg
                .get("hotplug")
                .map(String::as_str)
                .unwrap_or("network,disk,usb");
            let has = |f: &str| hotplug == "1" || hotplug.split(',').any(|h| h == f);
            match base {
                "net" => has("network"),
                "scsi" | "virtio" => has("disk"),
                "usb" => has("usb"),
                "vcpus" => has("cpu"),
                "memory" => has("memory") && cfg.get("numa").is_some_and(|n| n == "1"),
                "balloon" => true,
                _ => false,
            }
        }
    }
}

const UPDATE_META: &[&str] = &[
    "node",
    "vmid",
    "digest",
    "delete",
    "revert",
    "skiplock",
    "force",
    "background_delay",
];

async fn update(
    sim: &Sim,
    caller: &Caller,
    kind: Kind,
    p: Params,
    asynchronous: bool,
) -> ApiResult<Reply> {
    check_skiplock(caller, &p)?;
    let node = req(&p, "node")?.to_string();
    let vmid = vmid_of(&p, "vmid")?;
    let sets: BTreeMap<String, String> = p
        .iter()
        .filter(|(k, _)| !UPDATE_META.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let deletes: Vec<String> = p
        .get("delete")
        .map(|d| super::formats::split_list(d).map(str::to_string).collect())
        .unwrap_or_default();
    let reverts: Vec<String> = p
        .get("revert")
        .map(|d| super::formats::split_list(d).map(str::to_string).collect())
        .unwrap_or_default();
    if sets.is_empty() && deletes.is_empty() && reverts.is_empty() {
        return Err(ApiError::fail("no options specified"));
    }
    if let Some(k) = sets.get("sshkeys") {
        validate_ssh_keys(&super::schema::percent_decode(k))?;
    }
    for k in &deletes {
        if sets.contains_key(k) {
            return Err(ApiError::param(
                "delete",
                format!("you can't use '-{k}' and -delete {k}' at the same time"),
            ));
        }
    }
    {
        // Per-option permissions before the config is locked: qemu-server
        // `$update_vm_api` checks the deleted options, then the set ones
        // (`$check_vm_modify_config_perm`), then new disks' storages
        // (`$check_storage_access`); pve-container `update_pct_config` runs
        // `check_ct_modify_config_perm` over both.
        let st = sim.state();
        match kind {
            Kind::Qemu => {
                super::perms::qemu_config(&st, caller, vmid, deletes.iter().map(String::as_str))?;
                super::perms::qemu_config(&st, caller, vmid, sets.keys().map(String::as_str))?;
                super::perms::qemu_new_disks(&st, caller, &sets)?;
                super::perms::bridges(&st, caller, &sets)?;
            }
            Kind::Lxc => {
                super::perms::lxc_config(&st, caller, vmid, &sets, &deletes)?;
                super::perms::bridges(&st, caller, &sets)?;
            }
        }
    }
    let guard = sim.lock_guest(kind, vmid).await?;
    {
        let st = sim.state();
        let g = guest(&st, kind, &node, vmid)?;
        let cur = g.effective();
        match kind {
            Kind::Lxc => {
                let unprivileged = cur.get("unprivileged").is_some_and(|u| u == "1");
                if sets.contains_key("features") || deletes.iter().any(|d| d == "features") {
                    check_features_perm(
                        caller,
                        cur.get("features").map(String::as_str),
                        sets.get("features").map(String::as_str),
                        unprivileged,
                    )?;
                }
                let dev_keys: Vec<&String> = sets
                    .keys()
                    .chain(deletes.iter())
                    .filter(|k| hardware::is_dev_key(k))
                    .collect();
                if !dev_keys.is_empty() {
                    hardware::check_dev_perm(caller)?;
                }
                for v in sets
                    .iter()
                    .filter(|(k, _)| hardware::is_dev_key(k))
                    .map(|(_, v)| v)
                {
                    hardware::check_dev_exists(&st, &node, v).map_err(ApiError::fail)?;
                }
            }
            Kind::Qemu => {
                // qemu-server checks the value being replaced or removed too, so a token
                // cannot drop a raw device root@pam attached.
                for (k, v) in sets.iter().filter(|(k, _)| hardware::is_hostpci_key(k)) {
                    if let Some(old) = cur.get(k) {
                        hardware::check_hostpci_perm(&st, caller, vmid, k, old)?;
                    }
                    hardware::check_hostpci_perm(&st, caller, vmid, k, v)?;
                }
                for k in deletes.iter().filter(|k| hardware::is_hostpci_key(k)) {
                    if let Some(old) = cur.get(k) {
                        hardware::check_hostpci_perm(&st, caller, vmid, k, old)?;
                    }
                }
            }
        }
    }
    let precheck = |sim: &Sim| -> ApiResult<()> {
        let st = sim.state();
        let g = guest(&st, kind, &node, vmid)?;
        if let Some(d) = p.get("digest")
            && *d != g.digest()
        {
            return Err(ApiError::fail(match kind {
                Kind::Qemu => "checksum mismatch (file change by other user?)",
                Kind::Lxc => {
                    "detected modified configuration - file changed by other user? Try again."
                }
            }));
        }
        check_lock(g, &p)
    };
    precheck(sim)?;
    let force = flag(&p, "force", false);
    if !asynchronous {
        apply_update(
            sim, kind, &node, vmid, &sets, &deletes, &reverts, force, None,
        )
        .map_err(ApiError::fail)?;
        drop(guard);
        sim.persist();
        return Ok(Value::Null.into());
    }
    let delay: u64 = p
        .get("background_delay")
        .and_then(|d| d.parse().ok())
        .unwrap_or(0);
    let node2 = node.clone();
    let upid = sim.spawn_task(
        &node.clone(),
        "qmconfig",
        &vmid.to_string(),
        &caller.authid,
        Some(guard),
        move |ctx| async move {
            apply_update(
                &ctx.sim,
                kind,
                &node2,
                vmid,
                &sets,
                &deletes,
                &reverts,
                force,
                Some(&ctx),
            )
        },
    );
    match sim.wait_task(&upid, delay).await {
        Some(e) if e == "OK" || e.starts_with("WARNINGS: ") => return Ok(Value::Null.into()),
        Some(e) => return Err(ApiError::fail(format!("failed to update VM {vmid}: {e}"))),
        None => {}
    }
    Ok(json!(upid).into())
}

#[allow(clippy::too_many_arguments)]
fn apply_update(
    sim: &Sim,
    kind: Kind,
    node: &str,
    vmid: u32,
    sets: &BTreeMap<String, String>,
    deletes: &[String],
    reverts: &[String],
    force: bool,
    ctx: Option<&TaskCtx>,
) -> Result<(), String> {
    let mut st = sim.state();
    let mut g = guest_mut(&mut st, kind, node, vmid)?.clone();
    let mut allocated = Vec::new();
    let result = (|| -> Result<(), String> {
        let current = g.effective();
        for k in reverts {
            g.pending.remove(k);
            g.pending_delete.remove(k);
        }
        for k in deletes {
            if g.running && !hotpluggable(kind, k, &current) {
                g.pending.remove(k);
                if g.config.contains_key(k) {
                    g.pending_delete.insert(k.clone());
                }
                continue;
            }
            g.pending.remove(k);
            let Some(old) = g.config.remove(k) else {
                continue;
            };
            if is_disk_key(k) && !k.starts_with("unused") && !old.contains("media=cdrom") {
                let vol = old.split(',').next().unwrap_or("").to_string();
                if force {
                    st.volumes.remove(&format!("{node}/{vol}"));
                } else {
                    let slot = (0..256)
                        .map(|i| format!("unused{i}"))
                        .find(|u| !g.config.contains_key(u));
                    if let Some(slot) = slot {
                        g.config.insert(slot, vol);
                    }
                }
            } else if old.contains("cloudinit") || k.starts_with("unused") && force {
                let vol = old.split(',').next().unwrap_or("").to_string();
                st.volumes.remove(&format!("{node}/{vol}"));
            }
        }
        for (k, v) in sets {
            let old = current.get(k).cloned();
            let v = if is_disk_key(k) {
                if old.as_deref() == Some(v.as_str()) {
                    v.clone()
                } else {
                    process_disk(sim, &mut st, node, vmid, kind, k, v, ctx, &mut allocated)?
                }
            } else if k.starts_with("net") && kind == Kind::Qemu {
                normalize_qemu_net(v, old.as_deref().and_then(net_mac))
            } else if k.starts_with("net") {
                normalize_lxc_net(v, old.as_deref().and_then(net_mac))
            } else if k == "cipassword" {
                hash_cipassword(v)
            } else if k == "tags" {
                normalize_tags(v)
            } else {
                v.clone()
            };
            if g.running && !hotpluggable(kind, k, &current) {
                g.pending.insert(k.clone(), v);
            } else {
                g.config.insert(k.clone(), v);
                g.pending.remove(k);
            }
            g.pending_delete.remove(k);
        }
        Ok(())
    })();
    match result {
        Ok(()) => {
            st.guests.insert(vmid, g);
            Ok(())
        }
        Err(e) => {
            remove_volumes(&mut st, &allocated, node);
            Err(e)
        }
    }
}

// ----------------------------------------------------------------------------- clone, template, resize

async fn clone(sim: &Sim, caller: &Caller, p: &Params) -> ApiResult<Reply> {
    let node = req(p, "node")?.to_string();
    let vmid = vmid_of(p, "vmid")?;
    let newid = vmid_of(p, "newid")?;
    let target = p.get("target").cloned().unwrap_or_else(|| node.clone());
    let (full, src_template) = {
        let st = sim.state();
        let g = guest(&st, Kind::Qemu, &node, vmid)?;
        check_lock(g, p)?;
        check_node(&st, &target)?;
        if st.guests.contains_key(&newid) {
            return Err(ApiError::fail(format!(
                "unable to create VM {newid}: config file already exists"
            )));
        }
        if let Some(pool) = p.get("pool")
            && !st.pools.contains_key(pool)
        {
            return Err(ApiError::fail(format!("pool '{pool}' does not exist")));
        }
        // qemu-server `check_mapping_access`: a clone repeats the source's passthrough.
        if !caller.is_root() {
            for (k, v) in g
                .effective()
                .iter()
                .filter(|(k, _)| hardware::is_hostpci_key(k))
            {
                let d = hardware::HostPci::parse(v);
                if d.host.is_some() {
                    return Err(ApiError::fail(format!(
                        "only root can set '{k}' config for non-mapped devices"
                    )));
                }
                let Some(m) = d.mapping else {
                    return Err(ApiError::fail("either 'host' or 'mapping' must be set."));
                };
                let path = format!("/mapping/pci/{m}");
                if !super::auth::privileges(&st, caller, &path).contains("Mapping.Use") {
                    return Err(ApiError::perm(&path, "Mapping.Use"));
                }
            }
        }
        // check_bridge_access over the source's config, as clone_vm does after the
        // mapping check.
        super::perms::bridges(&st, caller, &g.effective())?;
        // qemu-server clone_vm `$load_and_check`: `full` defaults to "not a template";
        // `storage` and `format` are refused for linked clones.
        let full = p.get("full").map(|f| f == "1").unwrap_or(!g.is_template());
        for opt in ["storage", "format"] {
            if !full && p.contains_key(opt) {
                return Err(ApiError::fail(format!(
                    "parameter '{opt}' not allowed for linked clones"
                )));
            }
        }
        if target != node {
            let local = g.effective().iter().any(|(k, v)| {
                is_disk_key(k)
                    && !v.contains("media=cdrom")
                    && st.storages.get(storage_of(v)).is_some_and(|s| !s.shared)
            });
            if local {
                return Err(ApiError::fail(format!(
                    "can't clone to node '{target}' (VM uses local storage)"
                )));
            }
        }
        // Then, drive by drive, the storage plugin must support the clone (pve-storage
        // `volume_has_feature`: `clone` of a base volume for a linked clone, `copy` for a
        // full one and for cloud-init and TPM state): "Linked clone feature is not
        // supported for '<volid>' (scsi0)" on thick LVM, or for a VM that is no template.
        for (k, v) in g.effective() {
            if !is_disk_key(&k) || k.starts_with("unused") {
                continue;
            }
            let (vol, _) = split_prop(&v, "file");
            if (v.contains("media=cdrom") && !vol.contains("cloudinit")) || vol == "none" {
                continue;
            }
            let cloudinit = vol.contains("cloudinit");
            let copy = full || cloudinit || k == "tpmstate0";
            let Some((sid, volname)) = vol.split_once(':') else {
                continue;
            };
            let ty = st.storages.get(sid).map(|s| s.ty.as_str()).unwrap_or("");
            let feature = if copy {
                super::plugins::Feature::Copy
            } else {
                super::plugins::Feature::Clone
            };
            if !super::plugins::volume_has_feature(
                ty,
                feature,
                super::plugins::state_of(volname),
                super::plugins::format_of(volname),
            ) {
                return Err(ApiError::fail(format!(
                    "{} clone feature is not supported for '{vol}' ({k})",
                    if copy { "Full" } else { "Linked" }
                )));
            }
        }
        (full, g.is_template())
    };
    let guard = sim.lock_guest(Kind::Qemu, vmid).await?;
    {
        let mut st = sim.state();
        if st.guests.contains_key(&newid) {
            return Err(ApiError::fail(format!(
                "unable to create VM {newid}: config file already exists"
            )));
        }
        st.guests.insert(
            newid,
            Guest::reserved(newid, target.clone(), Kind::Qemu, "clone"),
        );
        if !src_template && let Some(g) = st.guests.get_mut(&vmid) {
            g.config.insert("lock".into(), "clone".into());
        }
    }
    let p = p.clone();
    let upid = sim.spawn_task_cleanup(
        &node.clone(),
        "qmclone",
        &vmid.to_string(),
        &caller.authid,
        Some(guard),
        move |ctx| async move {
            let sim = ctx.sim.clone();
            let mut st = sim.state();
            let mut allocated = Vec::new();
            let result = (|| -> Result<(), String> {
                let src = st
                    .guests
                    .get(&vmid)
                    .cloned()
                    .ok_or_else(|| format!("VM {vmid} vanished"))?;
                let mut cfg = src.effective();
                cfg.remove("lock");
                cfg.remove("template");
                let src_name = src.name();
                cfg.insert(
                    "name".into(),
                    p.get("name")
                        .cloned()
                        .unwrap_or_else(|| format!("Copy-of-VM-{src_name}")),
                );
                if let Some(d) = p.get("description") {
                    cfg.insert("description".into(), d.clone());
                }
                cfg.insert("smbios1".into(), format!("uuid={}", uuid()));
                if cfg.contains_key("vmgenid") {
                    cfg.insert("vmgenid".into(), uuid());
                }
                cfg.insert(
                    "meta".into(),
                    format!("creation-qemu=10.1.2,ctime={}", now()),
                );
                let keys: Vec<String> = cfg.keys().cloned().collect();
                for k in keys {
                    let v = cfg[&k].clone();
                    if k.starts_with("net") {
                        let (_, opts) = split_prop(&v, "model");
                        let model = v
                            .split(',')
                            .next()
                            .and_then(|m| m.split_once('='))
                            .map(|(m, _)| m.to_string())
                            .unwrap_or_else(|| "virtio".into());
                        let opts: BTreeMap<String, String> = opts
                            .into_iter()
                            .filter(|(o, _)| !NET_MODELS.contains(&o.as_str()))
                            .collect();
                        cfg.insert(
                            k.clone(),
                            join_prop(&format!("{model}={}", gen_mac()), &opts),
                        );
                        continue;
                    }
                    if k.starts_with("unused") {
                        cfg.remove(&k);
                        continue;
                    }
                    if !is_disk_key(&k) || (v.contains("media=cdrom") && !v.contains("cloudinit")) {
                        continue;
                    }
                    let (vol, mut opts) = split_prop(&v, "file");
                    let storage = storage_of(&vol).to_string();
                    if vol.contains("cloudinit") {
                        let id = alloc_image(
                            &sim,
                            &mut st,
                            &target,
                            &storage,
                            newid,
                            4 << 20,
                            Some(format!("vm-{newid}-cloudinit")),
                            "images",
                        )?;
                        allocated.push(id.clone());
                        cfg.insert(k.clone(), join_prop(&id, &opts));
                        continue;
                    }
                    let size = volume_size(&st, &node, &vol)
                        .ok_or_else(|| format!("volume '{vol}' does not exist"))?;
                    let (id, how) = if full {
                        let tstorage = p.get("storage").cloned().unwrap_or(storage.clone());
                        (
                            alloc_image(
                                &sim, &mut st, &target, &tstorage, newid, size, None, "images",
                            )?,
                            "full",
                        )
                    } else {
                        let base = vol.split(':').nth(1).unwrap_or("").to_string();
                        // The clone's volume name depends on the plugin (pve-storage
                        // `clone_image`): directory storages chain qcow2 files under
                        // `<base>/<vmid>/`, ZFS and RBD prefix the base, LVM-thin names
                        // the thin snapshot like any disk.
                        let cfg_ty = st.storages.get(&storage).map(|c| c.ty.clone());
                        let file_based = st.storages.get(&storage).is_some_and(|c| c.file_based());
                        let name_of = |n: &str| match cfg_ty.as_deref() {
                            _ if file_based => format!("{storage}:{base}/{newid}/{n}.qcow2"),
                            Some("zfspool" | "rbd") => format!("{storage}:{base}/{n}"),
                            _ => format!("{storage}:{n}"),
                        };
                        let taken = |id: &str| {
                            let short = id.rsplit(['/', ':']).next().unwrap_or("");
                            let short = short.trim_end_matches(".qcow2");
                            st.volumes.keys().any(|k| {
                                k.starts_with(&format!("{target}/{storage}:"))
                                    && k.rsplit(['/', ':'])
                                        .next()
                                        .is_some_and(|l| l.trim_end_matches(".qcow2") == short)
                            })
                        };
                        let id = (0..)
                            .map(|i| name_of(&format!("vm-{newid}-disk-{i}")))
                            .find(|id| !taken(id))
                            .unwrap_or_default();
                        st.volumes.insert(
                            format!("{target}/{id}"),
                            Volume {
                                volid: id.clone(),
                                node: target.clone(),
                                storage: storage.clone(),
                                content: "images".into(),
                                format: "raw".into(),
                                size,
                                vmid: Some(newid),
                                ctime: now(),
                                sha256: None,
                            },
                        );
                        (id, "linked")
                    };
                    allocated.push(id.clone());
                    ctx.log(format!("create {how} clone of drive {k} ({vol})"));
                    opts.insert("size".into(), fmt_size(size));
                    cfg.insert(k.clone(), join_prop(&id, &opts));
                }
                let g = st
                    .guests
                    .get_mut(&newid)
                    .ok_or_else(|| format!("VM {newid} vanished"))?;
                g.config = cfg;
                if let Some(pool) = p.get("pool") {
                    st.pools.entry(pool.clone()).or_default().vms.insert(newid);
                }
                Ok(())
            })();
            if let Some(g) = st.guests.get_mut(&vmid)
                && g.lock() == Some("clone")
            {
                g.config.remove("lock");
            }
            if let Err(e) = result {
                st.guests.remove(&newid);
                remove_volumes(&mut st, &allocated, &target);
                return Err(format!("clone failed: {e}"));
            }
            Ok(())
        },
        move |sim| {
            let mut st = sim.state();
            st.guests.remove(&newid);
            if let Some(g) = st.guests.get_mut(&vmid)
                && g.lock() == Some("clone")
            {
                g.config.remove("lock");
            }
        },
    );
    Ok(json!(upid).into())
}

async fn template(sim: &Sim, caller: &Caller, p: &Params) -> ApiResult<Reply> {
    let node = req(p, "node")?.to_string();
    let vmid = vmid_of(p, "vmid")?;
    check_convertible(
        sim,
        Kind::Qemu,
        &node,
        vmid,
        p,
        "you can't convert a VM to template if VM is running",
    )?;
    let only = p.get("disk").cloned();
    guest_task(
        sim,
        caller,
        Kind::Qemu,
        &node.clone(),
        vmid,
        "template",
        move |ctx| async move {
            let mut st = ctx.sim.state();
            let mut g = guest_mut(&mut st, Kind::Qemu, &node, vmid)?.clone();
            let keys: Vec<String> = g.config.keys().cloned().collect();
            for k in keys {
                let v = g.config[&k].clone();
                if !is_disk_key(&k)
                    || k.starts_with("unused")
                    || v.contains("media=cdrom")
                    || only.as_ref().is_some_and(|o| *o != k)
                {
                    continue;
                }
                let (vol, opts) = split_prop(&v, "file");
                // qemu-server template_create: a volume whose plugin has no `template`
                // feature (thick LVM) is skipped silently and stays a plain volume.
                let (sid, volname) = vol.split_once(':').unwrap_or(("", ""));
                let ty = st
                    .storages
                    .get(sid)
                    .map(|s| s.ty.clone())
                    .unwrap_or_default();
                if !super::plugins::volume_has_feature(
                    &ty,
                    super::plugins::Feature::Template,
                    super::plugins::state_of(volname),
                    super::plugins::format_of(volname),
                ) {
                    continue;
                }
                let newvol =
                    vol.replace(&format!("vm-{vmid}-disk-"), &format!("base-{vmid}-disk-"));
                if newvol != vol
                    && let Some(mut volume) = st.volumes.remove(&format!("{node}/{vol}"))
                {
                    volume.volid = newvol.clone();
                    st.volumes.insert(format!("{node}/{newvol}"), volume);
                    ctx.log(format!(
                        "  Renamed \"{}\" to \"{}\"",
                        vol.split(':').nth(1).unwrap_or(""),
                        newvol.split(':').nth(1).unwrap_or("")
                    ));
                }
                g.config.insert(k, join_prop(&newvol, &opts));
            }
            g.config.insert("template".into(), "1".into());
            st.guests.insert(vmid, g);
            Ok(())
        },
    )
    .await
}

/// A guest converts to a template only when unlocked, stopped and not one already.
fn check_convertible(
    sim: &Sim,
    kind: Kind,
    node: &str,
    vmid: u32,
    p: &Params,
    running: &'static str,
) -> ApiResult<()> {
    let st = sim.state();
    let g = guest(&st, kind, node, vmid)?;
    check_lock(g, p)?;
    if g.is_template() {
        return Err(ApiError::fail("you can't convert a template to a template"));
    }
    if g.running {
        return Err(ApiError::fail(running));
    }
    Ok(())
}

/// LXC template: the worker runs, but the call answers `null`, not the UPID (a PVE quirk:
/// clients poll the config or the task list).
async fn lxc_template(sim: &Sim, caller: &Caller, p: &Params) -> ApiResult<Reply> {
    let node = req(p, "node")?.to_string();
    let vmid = vmid_of(p, "vmid")?;
    check_convertible(
        sim,
        Kind::Lxc,
        &node,
        vmid,
        p,
        "you can't convert a CT to template if the CT is running",
    )?;
    let guard = sim.lock_guest(Kind::Lxc, vmid).await?;
    sim.spawn_task(
        &node.clone(),
        "vztemplate",
        &vmid.to_string(),
        &caller.authid,
        Some(guard),
        move |ctx| async move {
            let mut st = ctx.sim.state();
            let mut g = guest_mut(&mut st, Kind::Lxc, &node, vmid)?.clone();
            let keys: Vec<String> = g
                .config
                .keys()
                .filter(|k| is_disk_key(k) && !k.starts_with("unused"))
                .cloned()
                .collect();
            // pve-container PVE/LXC.pm template_create: every volume's plugin must have
            // the `template` feature before any is converted.
            for k in &keys {
                let (vol, _) = split_prop(&g.config[k], "volume");
                let (sid, volname) = vol.split_once(':').unwrap_or(("", ""));
                let ty = st.storages.get(sid).map(|s| s.ty.as_str()).unwrap_or("");
                if !super::plugins::volume_has_feature(
                    ty,
                    super::plugins::Feature::Template,
                    super::plugins::state_of(volname),
                    super::plugins::format_of(volname),
                ) {
                    return Err(format!("Template feature is not available for '{vol}'"));
                }
            }
            for k in keys {
                let (vol, opts) = split_prop(&g.config[&k], "volume");
                let newvol =
                    vol.replace(&format!("vm-{vmid}-disk-"), &format!("base-{vmid}-disk-"));
                if newvol != vol
                    && let Some(mut volume) = st.volumes.remove(&format!("{node}/{vol}"))
                {
                    volume.volid = newvol.clone();
                    st.volumes.insert(format!("{node}/{newvol}"), volume);
                }
                g.config.insert(k, join_prop(&newvol, &opts));
            }
            g.config.insert("template".into(), "1".into());
            st.guests.insert(vmid, g);
            Ok(())
        },
    );
    Ok(Value::Null.into())
}

/// qemu-server `PVE/API2/Qemu.pm` `resize_vm`: only `skiplock` is checked before the
/// worker forks; digest, lock, the disk, `Datastore.AllocateSpace` on its storage and
/// the size all fail inside the `resize` task (`$updatefn` under the config lock).
async fn resize(sim: &Sim, caller: &Caller, p: &Params) -> ApiResult<Reply> {
    check_skiplock(caller, p)?;
    let node = req(p, "node")?.to_string();
    let vmid = vmid_of(p, "vmid")?;
    let disk = req(p, "disk")?.to_string();
    let size = req(p, "size")?.to_string();
    {
        let st = sim.state();
        guest(&st, Kind::Qemu, &node, vmid)?;
    }
    let guard = sim.lock_guest(Kind::Qemu, vmid).await?;
    let p = p.clone();
    let caller = caller.clone();
    let upid = sim.spawn_task(
        &node.clone(),
        "resize",
        &vmid.to_string(),
        &caller.authid.clone(),
        Some(guard),
        move |ctx| async move {
            let mut st = ctx.sim.state();
            let mut g = guest_mut(&mut st, Kind::Qemu, &node, vmid)?.clone();
            if let Some(d) = p.get("digest")
                && *d != g.digest()
            {
                return Err("checksum mismatch (file change by other user?)".into());
            }
            check_lock(&g, &p).map_err(|e| e.message.trim_end().to_string())?;
            let v = g
                .config
                .get(&disk)
                .cloned()
                .ok_or_else(|| format!("disk '{disk}' does not exist"))?;
            if v.contains("media=cdrom") {
                return Err("you can't resize a cdrom".to_string());
            }
            let (vol, mut opts) = split_prop(&v, "file");
            super::perms::need(
                &st,
                &caller,
                &format!("/storage/{}", storage_of(&vol)),
                "Datastore.AllocateSpace",
            )
            .map_err(|e| e.message.trim_end().to_string())?;
            let cur = volume_size(&st, &node, &vol)
                .or_else(|| opts.get("size").and_then(|s| parse_size(s)))
                .unwrap_or(0);
            let (grow, num) = match size.strip_prefix('+') {
                Some(n) => (true, n),
                None => (false, size.as_str()),
            };
            let n = parse_size(num).ok_or_else(|| "internal error".to_string())?;
            let new = if grow { cur + n } else { n };
            if new < cur {
                return Err("shrinking disks is not supported".into());
            }
            if new == cur {
                return Ok(());
            }
            if let Some(volume) = st.volumes.get_mut(&format!("{node}/{vol}")) {
                volume.size = new;
            }
            ctx.log(format!(
                "  Size of logical volume pve/{} changed from {} to {}.",
                vol.split(':').nth(1).unwrap_or(""),
                human_gib(cur),
                human_gib(new)
            ));
            opts.insert("size".into(), fmt_size(new));
            g.config.insert(disk.clone(), join_prop(&vol, &opts));
            st.guests.insert(vmid, g);
            Ok(())
        },
    );
    Ok(json!(upid).into())
}

/// pve-container `PVE/API2/LXC.pm` `resize_vm` (`PUT /nodes/{node}/lxc/{vmid}/resize`):
/// `$load_and_check` runs before the fork (and again in the worker): the config and its
/// lock, `check_ct_modify_config_perm` over the remaining parameters (`disk` is no
/// known option, so it needs `VM.Config.Options`), the digest, the volume's owner,
/// `Datastore.AllocateSpace` on its storage, then the size: no shrinking, no no-op.
async fn lxc_resize(sim: &Sim, caller: &Caller, p: &Params) -> ApiResult<Reply> {
    let node = req(p, "node")?.to_string();
    let vmid = vmid_of(p, "vmid")?;
    let disk = req(p, "disk")?.to_string();
    let size = req(p, "size")?.to_string();
    let (grow, num) = match size.strip_prefix('+') {
        Some(n) => (true, n),
        None => (false, size.as_str()),
    };
    let request = parse_size(num).ok_or_else(|| ApiError::fail("invalid size string"))?;
    let load_and_check = |st: &State| -> ApiResult<(String, BTreeMap<String, String>, u64)> {
        let g = guest(st, Kind::Lxc, &node, vmid)?;
        check_lock(g, p)?;
        super::perms::lxc_config(
            st,
            caller,
            vmid,
            &BTreeMap::from([("disk".to_string(), disk.clone())]),
            &[],
        )?;
        if let Some(d) = p.get("digest")
            && *d != g.digest()
        {
            return Err(ApiError::fail(
                "detected modified configuration - file changed by other user? Try again.",
            ));
        }
        let value = g.config.get(&disk).cloned().unwrap_or_default();
        let (vol, opts) = split_prop(&value, "volume");
        let Some((sid, volname)) = vol.split_once(':') else {
            return Err(ApiError::fail(format!("unable to parse volume ID '{vol}'")));
        };
        let owner = volname
            .split(['/', '-'])
            .find_map(|part| part.parse::<u32>().ok())
            .unwrap_or(vmid);
        if owner != vmid {
            return Err(ApiError::fail(format!(
                "can't resize mount point owned by another container ({owner})"
            )));
        }
        super::perms::need(
            st,
            caller,
            &format!("/storage/{sid}"),
            "Datastore.AllocateSpace",
        )?;
        let cur = volume_size(st, &node, &vol)
            .or_else(|| opts.get("size").and_then(|s| parse_size(s)))
            .ok_or_else(|| {
                ApiError::fail(format!(
                    "Could not determine current size of volume '{vol}'"
                ))
            })?;
        let new = if grow { cur + request } else { request };
        if new < cur {
            return Err(ApiError::fail("unable to shrink disk size"));
        }
        if new == cur {
            return Err(ApiError::fail("disk is already at specified size"));
        }
        Ok((vol, opts, new))
    };
    load_and_check(&sim.state())?;
    let guard = sim.lock_guest(Kind::Lxc, vmid).await?;
    let checked = load_and_check(&sim.state());
    let upid = sim.spawn_task(
        &node.clone(),
        "resize",
        &vmid.to_string(),
        &caller.authid,
        Some(guard),
        move |ctx| async move {
            let (vol, mut opts, new) = checked.map_err(|e| e.message.trim_end().to_string())?;
            let mut st = ctx.sim.state();
            let mut g = guest_mut(&mut st, Kind::Lxc, &node, vmid)?.clone();
            if let Some(volume) = st.volumes.get_mut(&format!("{node}/{vol}")) {
                volume.size = new;
            }
            ctx.log(format!("resize2fs: resizing the filesystem on {vol}"));
            opts.insert("size".into(), fmt_size(new));
            g.config.insert(disk.clone(), join_prop(&vol, &opts));
            st.guests.insert(vmid, g);
            Ok(())
        },
    );
    Ok(json!(upid).into())
}

// ----------------------------------------------------------------------------- agent

fn agent(sim: &Sim, p: &Params, command: &str) -> ApiResult<Reply> {
    let node = req(p, "node")?;
    let vmid = vmid_of(p, "vmid")?;
    let (cfg, running, name) = {
        let st = sim.state();
        let g = guest(&st, Kind::Qemu, node, vmid)?;
        (g.effective(), g.running, g.name())
    };
    if !agent_enabled(&cfg) {
        return Err(ApiError::fail("No QEMU guest agent configured"));
    }
    if !running {
        return Err(ApiError::fail(format!("VM {vmid} is not running")));
    }
    let Some(addrs) = sim.agent_addresses(vmid) else {
        return Err(ApiError::fail("QEMU guest agent is not running"));
    };
    let result = match command {
        "ping" => json!({}),
        "info" => json!({"version": "9.2.0", "supported_commands": []}),
        "get-host-name" => json!({"host-name": name}),
        "get-osinfo" => {
            json!({"id": "talos", "name": "Talos", "kernel-release": "6.12.57-talos", "machine": "x86_64"})
        }
        "network-get-interfaces" => {
            let mac = cfg
                .get("net0")
                .and_then(|n| net_mac(n))
                .unwrap_or_else(|| "BC:24:11:00:00:00".into())
                .to_lowercase();
            let ips: Vec<Value> = addrs
                .iter()
                .map(|a| {
                    json!({
                        "ip-address": a.to_string(),
                        "ip-address-type": if a.is_ipv4() { "ipv4" } else { "ipv6" },
                        "prefix": if a.is_ipv4() { 24 } else { 64 },
                    })
                })
                .collect();
            let stats = json!({"rx-bytes": 0, "rx-packets": 0, "rx-errs": 0, "rx-dropped": 0, "tx-bytes": 0, "tx-packets": 0, "tx-errs": 0, "tx-dropped": 0});
            json!([
                {
                    "name": "lo",
                    "hardware-address": "00:00:00:00:00:00",
                    "ip-addresses": [
                        {"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8},
                        {"ip-address": "::1", "ip-address-type": "ipv6", "prefix": 128}
                    ],
                    "statistics": stats,
                },
                {
                    "name": "eth0",
                    "hardware-address": mac,
                    "ip-addresses": ips,
                    "statistics": stats,
                }
            ])
        }
        other => {
            return Err(ApiError::param(
                "command",
                format!("value '{other}' does not have a value in the enumeration"),
            ));
        }
    };
    Ok(json!({ "result": result }).into())
}

fn lxc_interfaces(sim: &Sim, p: &Params) -> ApiResult<Reply> {
    let node = req(p, "node")?;
    let vmid = vmid_of(p, "vmid")?;
    let (cfg, running) = {
        let st = sim.state();
        let g = guest(&st, Kind::Lxc, node, vmid)?;
        (g.effective(), g.running)
    };
    if !running {
        return Err(ApiError::fail(format!("CT {vmid} not running")));
    }
    let addrs = sim.addresses(vmid);
    let mut list = vec![
        json!({"name": "lo", "hwaddr": "00:00:00:00:00:00", "inet": "127.0.0.1/8", "inet6": "::1/128"}),
    ];
    let mac = cfg
        .get("net0")
        .and_then(|n| net_mac(n))
        .unwrap_or_default()
        .to_lowercase();
    let mut eth = json!({"name": "eth0", "hwaddr": mac});
    if let Some(o) = eth.as_object_mut() {
        if let Some(a) = addrs.iter().find(|a| a.is_ipv4()) {
            o.insert("inet".into(), json!(format!("{a}/24")));
        }
        if let Some(a) = addrs.iter().find(|a| a.is_ipv6()) {
            o.insert("inet6".into(), json!(format!("{a}/64")));
        }
    }
    list.push(eth);
    Ok(Value::Array(list).into())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("32G"), Some(32 << 30));
        assert_eq!(parse_size("1.5G"), Some(3 << 29));
        assert_eq!(fmt_size(32 << 30), "32G");
        assert_eq!(fmt_size(528 << 10), "528K");
    }

    #[test]
    fn nets_get_proxmox_macs() {
        let n = normalize_qemu_net("virtio,bridge=vmbr0,firewall=1", None);
        assert!(n.starts_with("virtio=BC:24:11:"), "{n}");
        assert!(n.ends_with(",bridge=vmbr0,firewall=1"));
        let n = normalize_qemu_net("model=e1000,macaddr=bc:24:11:aa:bb:cc", None);
        assert_eq!(n, "e1000=BC:24:11:AA:BB:CC");
        let l = normalize_lxc_net("name=eth0,bridge=vmbr0,ip=dhcp", None);
        assert!(
            l.contains("hwaddr=BC:24:11:") && l.contains("type=veth") && l.contains("name=eth0")
        );
    }

    #[test]
    fn disk_keys() {
        assert!(
            is_disk_key("scsi0")
                && is_disk_key("efidisk0")
                && is_disk_key("rootfs")
                && is_disk_key("mp3")
        );
        assert!(!is_disk_key("net0") && !is_disk_key("scsihw") && !is_disk_key("scsi"));
    }
}
