//! Shared helpers: guest lookup, locks, property strings, NICs, disk allocation.

use super::*;

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

pub(super) fn not_found(kind: Kind, node: &str, vmid: u32) -> ApiError {
    ApiError::fail(format!(
        "Configuration file 'nodes/{node}/{}/{vmid}.conf' does not exist",
        kind.conf_dir()
    ))
}

pub(super) fn guest<'a>(st: &'a State, kind: Kind, node: &str, vmid: u32) -> ApiResult<&'a Guest> {
    st.guests
        .get(&vmid)
        .filter(|g| g.kind == kind && g.node == node)
        .ok_or_else(|| not_found(kind, node, vmid))
}

pub(super) fn guest_mut<'a>(
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

pub(super) fn check_lock(g: &Guest, p: &Params) -> ApiResult<()> {
    match g.lock() {
        Some(l) if !flag(p, "skiplock", false) => Err(ApiError::fail(format!(
            "{} is locked ({l})",
            g.kind.label()
        ))),
        _ => Ok(()),
    }
}

pub(super) fn check_skiplock(caller: &Caller, p: &Params) -> ApiResult<()> {
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
pub(super) fn split_prop(v: &str, main_key: &str) -> (String, BTreeMap<String, String>) {
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

pub(super) fn join_prop(main: &str, opts: &BTreeMap<String, String>) -> String {
    let mut out = main.to_string();
    for (k, v) in opts {
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(&format!("{k}={v}"));
    }
    out
}

pub(super) const NET_MODELS: &[&str] = &[
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
pub(super) fn normalize_qemu_net(v: &str, old_mac: Option<String>) -> String {
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

pub(super) fn net_mac(v: &str) -> Option<String> {
    v.split(',').find_map(|part| {
        let (k, val) = part.split_once('=')?;
        (NET_MODELS.contains(&k) || k == "macaddr" || k == "hwaddr").then(|| val.to_uppercase())
    })
}

/// Normalise an LXC `netN`: ensure `hwaddr` and `type=veth`, keys sorted.
pub(super) fn normalize_lxc_net(v: &str, old_mac: Option<String>) -> String {
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

pub(super) fn storage_of(volid: &str) -> &str {
    volid.split(':').next().unwrap_or("")
}

/// Allocate a new image volume for a guest; returns its volid.
#[allow(clippy::too_many_arguments)]
pub(super) fn alloc_image(
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

pub(super) fn volume_size(st: &State, node: &str, volid: &str) -> Option<u64> {
    st.volumes.get(&format!("{node}/{volid}")).map(|v| v.size)
}

pub(super) fn is_new_disk_spec(file: &str) -> Option<(String, f64)> {
    let (s, size) = file.split_once(':')?;
    let n: f64 = size.parse().ok()?;
    crate::pve::formats::check("pve-storage-id", s).ok()?;
    Some((s.to_string(), n))
}

/// Turn a requested disk value into the stored one, allocating or importing volumes.
#[allow(clippy::too_many_arguments)]
pub(super) fn process_disk(
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
pub(super) fn hash_cipassword(v: &str) -> String {
    if v.starts_with("$5$") {
        return v.to_string();
    }
    let salt = hex::encode(rand::random::<[u8; 8]>());
    let digest = <sha2::Sha256 as sha2::Digest>::digest(format!("{salt}{v}").as_bytes());
    format!("$5${salt}${}", hex::encode(digest))
}

pub(super) fn human_gib(b: u64) -> String {
    format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64)
}

pub(super) fn remove_volumes(st: &mut State, keys: &[String], node: &str) {
    for volid in keys {
        st.volumes.remove(&format!("{node}/{volid}"));
    }
}

/// Schema of the create endpoint, used to type config values in answers.
pub(super) fn create_schema(kind: Kind) -> Option<&'static crate::pve::schema::Endpoint> {
    let path = match kind {
        Kind::Qemu => "/nodes/x/qemu",
        Kind::Lxc => "/nodes/x/lxc",
    };
    match lookup("POST", path) {
        Match::Found(e, _) => Some(e),
        _ => None,
    }
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
