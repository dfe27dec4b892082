//! Read endpoints: list, config, pending, status; shared permission checks.

use super::*;

// ----------------------------------------------------------------------------- read

pub(super) fn list(sim: &Sim, caller: &Caller, kind: Kind, p: &Params) -> ApiResult<Reply> {
    let st = sim.state();
    let node = req(p, "node")?;
    check_node(&st, node)?;
    let list: Vec<Value> = st
        .guests
        .values()
        .filter(|g| g.kind == kind && g.node == node)
        // Like qemu-server: guests the caller may not audit are left out.
        .filter(|g| {
            crate::pve::auth::privileges(&st, caller, &format!("/vms/{}", g.vmid))
                .contains("VM.Audit")
        })
        .map(|g| {
            let mut v = json!({
                "vmid": g.vmid,
                "name": g.name(),
                "status": if g.running { "running" } else { "stopped" },
                "maxmem": g.memory_mib() << 20,
                "maxdisk": crate::pve::api::boot_disk_size(&st, g),
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

pub(super) fn get_config(sim: &Sim, kind: Kind, p: &Params) -> ApiResult<Reply> {
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

pub(super) fn pending(sim: &Sim, kind: Kind, p: &Params) -> ApiResult<Reply> {
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

pub(super) fn status(sim: &Sim, kind: Kind, p: &Params) -> ApiResult<Reply> {
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
        "maxdisk": crate::pve::api::boot_disk_size(&st, g),
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

pub(super) fn agent_enabled(cfg: &BTreeMap<String, String>) -> bool {
    cfg.get("agent").is_some_and(|a| {
        let (main, _) = split_prop(a, "enabled");
        main == "1"
    })
}

/// pve-common `validate_ssh_public_keys`: every non-blank line must be a key `ssh-keygen -l`
/// reads. Modelled structurally: a known key type followed by base64 whose blob names that
/// type (and, for ed25519, carries a 32-byte key); authorized_keys options may come first.
pub(super) fn validate_ssh_keys(raw: &str) -> ApiResult<()> {
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
pub(super) fn check_features_perm(
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
