//! Request handlers: one function per served endpoint, dispatched on (method, path
//! template). Guest handlers live in `guests.rs`, storage in `storage.rs`, pools, access,
//! backup jobs and SDN in `admin.rs`.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::schema::{Endpoint, Params};
use super::sim::{Sim, now};
use super::state::{Guest, Kind, State};
use super::{admin, guests, hardware, storage};

/// What a handler answers: `data` plus optional envelope siblings (`total`).
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The `data` member.
    pub data: Value,
    /// `total` for paged lists.
    pub total: Option<u64>,
}

impl From<Value> for Reply {
    fn from(data: Value) -> Self {
        Reply { data, total: None }
    }
}

/// A file received by `POST .../upload` (already streamed to its hash).
#[derive(Debug, Clone)]
pub struct Upload {
    /// Bytes received.
    pub size: u64,
    /// SHA-256 hex of the content.
    pub sha256: String,
    /// Hex digest with the algorithm named by `checksum-algorithm`, if any.
    pub checksum: Option<String>,
}

/// Call the handler of a validated request.
pub async fn dispatch(
    sim: &Sim,
    caller: &Caller,
    ep: &Endpoint,
    p: Params,
    upload: Option<Upload>,
) -> ApiResult<Reply> {
    let m = ep.method.as_str();
    let path = ep.path.as_str();
    if let Some(rest) = path.strip_prefix("/nodes/{node}/qemu") {
        return guests::dispatch(sim, caller, Kind::Qemu, m, rest, p).await;
    }
    if let Some(rest) = path.strip_prefix("/nodes/{node}/lxc") {
        return guests::dispatch(sim, caller, Kind::Lxc, m, rest, p).await;
    }
    if path.starts_with("/nodes/{node}/storage") || path == "/nodes/{node}/query-url-metadata" {
        return storage::dispatch(sim, caller, m, path, p, upload).await;
    }
    if path == "/storage" || path.starts_with("/storage/") {
        return super::storage_cfg::dispatch(sim, m, path, &p);
    }
    if path.starts_with("/nodes/{node}/hardware") || path.starts_with("/cluster/mapping") {
        return hardware::dispatch(sim, caller, m, path, p);
    }
    if path.starts_with("/pools")
        || path.starts_with("/access")
        || path.starts_with("/cluster/backup")
    {
        return admin::dispatch(sim, caller, m, path, p).await;
    }
    if path.starts_with("/cluster/sdn") {
        return super::sdn::dispatch(sim, caller, m, path, p).await;
    }
    match (m, path) {
        ("GET", "/version") => Ok(json!({
            "version": "9.1.9",
            "release": "9.1",
            "repoid": "0f5ad6f2c2c8b4a1",
        })
        .into()),
        ("GET", "/nodes") => Ok(nodes(sim).into()),
        ("GET", "/nodes/{node}/status") => node_status(sim, &p),
        ("GET", "/nodes/{node}/certificates/info") => Ok(json!([{
            "filename": "pve-ssl.pem",
            "fingerprint": sim.fingerprint(),
            "pem": sim.0.cert_pem,
            "subject": "/O=PVE Cluster Node (homelab-sim)/CN=pve.homelab-sim",
            "issuer": "/O=PVE Cluster Node (homelab-sim)/CN=pve.homelab-sim",
            "san": ["localhost", "127.0.0.1"],
            "public-key-type": "id-ecPublicKey",
            "public-key-bits": 256,
        }])
        .into()),
        ("GET", "/cluster/resources") => {
            Ok(Value::Array(resources(sim, caller, p.get("type"))).into())
        }
        ("GET", "/cluster/nextid") => nextid(sim, &p),
        ("POST", "/nodes/{node}/vzdump") => super::vzdump::vzdump(sim, caller, &p),
        ("GET", "/cluster/status") => Ok(cluster_status(sim).into()),
        ("GET", "/nodes/{node}/tasks") => task_list(sim, &p),
        ("DELETE", "/nodes/{node}/tasks/{upid}") => task_stop(sim, &p),
        ("GET", "/nodes/{node}/tasks/{upid}/status") => task_status(sim, &p),
        ("GET", "/nodes/{node}/tasks/{upid}/log") => task_log(sim, &p),
        _ => Err(ApiError::not_implemented(m, path)),
    }
}

/// Fail unless `node` is a cluster node.
pub fn check_node(st: &State, node: &str) -> ApiResult<()> {
    if st.nodes.contains_key(node) {
        Ok(())
    } else {
        Err(ApiError::fail(format!("no such cluster node '{node}'")))
    }
}

/// A required parameter (validation already proved required ones are present).
pub fn req<'a>(p: &'a Params, name: &str) -> ApiResult<&'a str> {
    p.get(name)
        .map(String::as_str)
        .ok_or_else(|| ApiError::param(name, "property is missing and it is not optional"))
}

/// A boolean parameter (`1`/`0`), with a default.
pub fn flag(p: &Params, name: &str, default: bool) -> bool {
    p.get(name).map(|v| v == "1").unwrap_or(default)
}

/// Parse `vmid` from params.
pub fn vmid_of(p: &Params, name: &str) -> ApiResult<u32> {
    req(p, name)?
        .parse()
        .map_err(|_| ApiError::param(name, "value does not look like a valid VM ID"))
}

/// The boot disk size of a guest in bytes (for `maxdisk`).
pub fn boot_disk_size(st: &State, g: &Guest) -> u64 {
    let cfg = g.effective();
    let keys: Vec<String> = match g.kind {
        Kind::Lxc => vec!["rootfs".into()],
        Kind::Qemu => {
            let order = cfg
                .get("boot")
                .and_then(|b| b.strip_prefix("order="))
                .map(|o| o.split(';').map(str::to_string).collect::<Vec<_>>())
                .unwrap_or_default();
            let mut k: Vec<String> = order
                .into_iter()
                .filter(|k| guests::is_disk_key(k))
                .collect();
            k.extend(cfg.keys().filter(|k| guests::is_disk_key(k)).cloned());
            k
        }
    };
    for k in keys {
        if let Some(v) = cfg.get(&k)
            && !v.contains("media=cdrom")
        {
            let vol = v.split(',').next().unwrap_or("");
            if let Some(size) = v
                .split(',')
                .find_map(|kv| kv.strip_prefix("size="))
                .and_then(guests::parse_size)
            {
                return size;
            }
            if let Some(vol) = st.volumes.get(&format!("{}/{}", g.node, vol)) {
                return vol.size;
            }
        }
    }
    0
}

fn nodes(sim: &Sim) -> Value {
    let st = sim.state();
    let list: Vec<Value> = st
        .nodes
        .iter()
        .map(|(name, n)| {
            let online = !sim.faults().is_offline(name);
            let mut v = json!({
                "node": name,
                "id": format!("node/{name}"),
                "type": "node",
                "status": if online { "online" } else { "offline" },
                "level": "",
                "ssl_fingerprint": sim.fingerprint(),
            });
            if online {
                let used = node_mem_used(&st, name);
                if let Some(o) = v.as_object_mut() {
                    o.insert("cpu".into(), json!(0.02));
                    o.insert("maxcpu".into(), json!(n.maxcpu));
                    o.insert("mem".into(), json!(used));
                    o.insert("maxmem".into(), json!(n.maxmem));
                    o.insert("disk".into(), json!(4u64 << 30));
                    o.insert("maxdisk".into(), json!(n.maxdisk));
                    o.insert("uptime".into(), json!(now().saturating_sub(n.boot_time)));
                }
            }
            v
        })
        .collect();
    Value::Array(list)
}

fn node_mem_used(st: &State, node: &str) -> u64 {
    (1u64 << 30)
        + st.guests
            .values()
            .filter(|g| g.node == node && g.running)
            .map(|g| g.memory_mib() << 20)
            .sum::<u64>()
}

fn node_status(sim: &Sim, p: &Params) -> ApiResult<Reply> {
    let st = sim.state();
    let node = req(p, "node")?;
    check_node(&st, node)?;
    let n = &st.nodes[node];
    let used = node_mem_used(&st, node);
    Ok(json!({
        "uptime": now().saturating_sub(n.boot_time),
        "cpu": 0.02,
        "wait": 0,
        "loadavg": ["0.10", "0.12", "0.09"],
        "cpuinfo": {"cpus": n.maxcpu, "cores": n.maxcpu, "sockets": 1, "model": "homelab-sim vCPU"},
        "memory": {"total": n.maxmem, "used": used, "free": n.maxmem.saturating_sub(used)},
        "rootfs": {"total": n.maxdisk, "used": 4u64 << 30, "avail": n.maxdisk - (4u64 << 30), "free": n.maxdisk - (4u64 << 30)},
        "pveversion": "pve-manager/9.1.9/0f5ad6f2c2c8b4a1",
        "kversion": "Linux 6.17.2-1-pve #1 SMP PREEMPT_DYNAMIC PMX 6.17.2-1 x86_64",
        "boot-info": {"mode": "efi", "secureboot": 0},
    })
    .into())
}

fn cluster_status(sim: &Sim) -> Value {
    let st = sim.state();
    let mut list = vec![json!({
        "type": "cluster",
        "id": "cluster",
        "name": st.cluster,
        "nodes": st.nodes.len(),
        "quorate": 1,
        "version": 1,
    })];
    for (i, name) in st.nodes.keys().enumerate() {
        list.push(json!({
            "type": "node",
            "id": format!("node/{name}"),
            "name": name,
            "nodeid": i + 1,
            "online": u8::from(!sim.faults().is_offline(name)),
            "local": u8::from(i == 0),
            "ip": format!("127.0.0.{}", i + 1),
            "level": "",
        }));
    }
    Value::Array(list)
}

/// `/cluster/resources`: guest statistics come from the last stats refresh (like pvestatd's
/// 10 s broadcast), so a new guest shows `status: unknown` until the next one; `tags`,
/// `lock` and `pool` are current.
fn resources(sim: &Sim, caller: &Caller, ty: Option<&String>) -> Vec<Value> {
    let st = sim.state();
    let want = |t: &str| ty.is_none_or(|w| w == t);
    let mut out = Vec::new();
    if want("node") {
        for v in nodes_inner(sim, &st) {
            out.push(v);
        }
    }
    if want("vm") {
        for g in st.guests.values() {
            let path = format!("/vms/{}", g.vmid);
            if !super::auth::privileges(&st, caller, &path).contains("VM.Audit") {
                continue;
            }
            let mut o = Map::new();
            o.insert(
                "id".into(),
                json!(format!("{}/{}", g.kind.as_str(), g.vmid)),
            );
            o.insert("type".into(), json!(g.kind.as_str()));
            o.insert("vmid".into(), json!(g.vmid));
            o.insert("node".into(), json!(g.node));
            let offline = sim.faults().is_offline(&g.node);
            match sim.stats(g.vmid) {
                Some(s) if !offline => {
                    o.insert("status".into(), json!(s.status));
                    o.insert("name".into(), json!(s.name));
                    o.insert("template".into(), json!(s.template));
                    o.insert("maxmem".into(), json!(s.maxmem));
                    o.insert("maxdisk".into(), json!(s.maxdisk));
                    o.insert("maxcpu".into(), json!(s.maxcpu));
                    o.insert("uptime".into(), json!(s.uptime));
                    let running = s.status == "running";
                    o.insert("cpu".into(), json!(if running { 0.01 } else { 0.0 }));
                    o.insert("mem".into(), json!(if running { s.maxmem / 4 } else { 0 }));
                    o.insert("disk".into(), json!(0));
                    for k in ["netin", "netout", "diskread", "diskwrite"] {
                        o.insert(k.into(), json!(0));
                    }
                    if g.kind == Kind::Qemu {
                        o.insert(
                            "memhost".into(),
                            json!(if running { s.maxmem / 4 } else { 0 }),
                        );
                    }
                }
                _ => {
                    o.insert("status".into(), json!("unknown"));
                }
            }
            let cfg = g.effective();
            if let Some(t) = cfg.get("tags") {
                o.insert("tags".into(), json!(t));
            }
            if let Some(l) = g.lock() {
                o.insert("lock".into(), json!(l));
            }
            if let Some((pool, _)) = st.pools.iter().find(|(_, p)| p.vms.contains(&g.vmid)) {
                o.insert("pool".into(), json!(pool));
            }
            out.push(Value::Object(o));
        }
    }
    if want("storage") {
        for node in st.nodes.keys() {
            for (sid, s) in &st.storages {
                let path = format!("/storage/{sid}");
                if !super::auth::privileges(&st, caller, &path).contains("Datastore.Audit") {
                    continue;
                }
                let used = storage::used_bytes(&st, node, sid);
                out.push(json!({
                    "id": format!("storage/{node}/{sid}"),
                    "type": "storage",
                    "storage": sid,
                    "node": node,
                    "plugintype": s.ty,
                    "status": if sim.faults().is_offline(node) { "unknown" } else { "available" },
                    "shared": u8::from(s.shared),
                    "content": s.content.join(","),
                    "disk": used,
                    "maxdisk": s.total,
                }));
            }
        }
    }
    if ty.is_none() {
        for pool in st.pools.keys() {
            out.push(json!({"id": format!("pool/{pool}"), "type": "pool", "pool": pool}));
        }
    }
    if want("sdn") {
        for node in st.nodes.keys() {
            for (zone, z) in &st.sdn_zones {
                if let Some(r) = &z.running {
                    out.push(json!({
                        "id": format!("sdn/{node}/{zone}"),
                        "type": "sdn",
                        "sdn": zone,
                        "node": node,
                        "status": "available",
                        "zone-type": r.get("type").cloned().unwrap_or_default(),
                    }));
                }
            }
        }
    }
    out
}

fn nodes_inner(sim: &Sim, st: &State) -> Vec<Value> {
    st.nodes
        .iter()
        .map(|(name, n)| {
            let online = !sim.faults().is_offline(name);
            json!({
                "id": format!("node/{name}"),
                "type": "node",
                "node": name,
                "status": if online { "online" } else { "offline" },
                "level": "",
                "cgroup-mode": 2,
                "maxcpu": n.maxcpu,
                "maxmem": n.maxmem,
                "maxdisk": n.maxdisk,
                "cpu": if online { 0.02 } else { 0.0 },
                "mem": if online { node_mem_used(st, name) } else { 0 },
                "disk": 4u64 << 30,
                "uptime": if online { now().saturating_sub(n.boot_time) } else { 0 },
            })
        })
        .collect()
}

fn nextid(sim: &Sim, p: &Params) -> ApiResult<Reply> {
    let st = sim.state();
    if let Some(v) = p.get("vmid") {
        let id: u32 = v
            .parse()
            .map_err(|_| ApiError::param("vmid", "invalid VMID"))?;
        if st.guests.contains_key(&id) {
            return Err(ApiError::param("vmid", format!("VM {id} already exists")));
        }
        return Ok(json!(id.to_string()).into());
    }
    (100u32..1_000_000)
        .find(|id| !st.guests.contains_key(id))
        .map(|id| json!(id.to_string()).into())
        .ok_or_else(|| ApiError::fail("unable to get any free VMID in range [100, 999999]"))
}

fn parse_upid(p: &Params) -> ApiResult<String> {
    static RE: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    let upid = req(p, "upid")?;
    let ok = RE
        .get_or_init(|| {
            regex::Regex::new(
                r"^UPID:[a-zA-Z0-9](?:[a-zA-Z0-9\-]*[a-zA-Z0-9])?:[0-9A-Fa-f]{8}:[0-9A-Fa-f]{8,9}:[0-9A-Fa-f]{8}:[^:\s/]+:[^:\s/]*:[^:\s/]+:$",
            )
            .ok()
        })
        .as_ref()
        .is_some_and(|re| re.is_match(upid));
    if !ok {
        return Err(ApiError::param("upid", "unable to parse worker upid"));
    }
    Ok(upid.to_string())
}

fn task_json(t: &super::state::Task, with_status: bool) -> Value {
    let mut v = json!({
        "upid": t.upid,
        "node": t.node,
        "pid": t.pid,
        "pstart": t.pstart,
        "starttime": t.starttime,
        "type": t.ty,
        "id": t.id,
        "user": t.user,
    });
    if let Some(o) = v.as_object_mut() {
        if with_status {
            o.insert(
                "status".into(),
                json!(if t.endtime.is_some() {
                    "stopped"
                } else {
                    "running"
                }),
            );
            if let Some(e) = &t.exitstatus {
                o.insert("exitstatus".into(), json!(e));
            }
        } else {
            if let Some(e) = &t.endtime {
                o.insert("endtime".into(), json!(e));
            }
            if let Some(e) = &t.exitstatus {
                o.insert("status".into(), json!(e));
            }
        }
    }
    v
}

fn task_status(sim: &Sim, p: &Params) -> ApiResult<Reply> {
    let upid = parse_upid(p)?;
    let st = sim.state();
    let t = st
        .tasks
        .get(&upid)
        .ok_or_else(|| ApiError::param("upid", "no such task"))?;
    Ok(task_json(t, true).into())
}

fn task_log(sim: &Sim, p: &Params) -> ApiResult<Reply> {
    let upid = parse_upid(p)?;
    let st = sim.state();
    let t = st
        .tasks
        .get(&upid)
        .ok_or_else(|| ApiError::param("upid", "no such task"))?;
    let start: usize = p.get("start").and_then(|v| v.parse().ok()).unwrap_or(0);
    let limit: usize = p.get("limit").and_then(|v| v.parse().ok()).unwrap_or(50);
    let lines: Vec<Value> = t
        .log
        .iter()
        .enumerate()
        .skip(start)
        .take(limit)
        .map(|(i, l)| json!({"n": i + 1, "t": l}))
        .collect();
    Ok(Reply {
        data: Value::Array(lines),
        total: Some(t.log.len() as u64),
    })
}

fn task_stop(sim: &Sim, p: &Params) -> ApiResult<Reply> {
    let upid = parse_upid(p)?;
    {
        let mut st = sim.state();
        let t = st
            .tasks
            .get_mut(&upid)
            .ok_or_else(|| ApiError::param("upid", "no such task"))?;
        if t.endtime.is_none() {
            t.log.push("received interrupt".into());
            t.log.push("TASK ERROR: interrupted by signal".into());
            t.exitstatus = Some("interrupted by signal".into());
            t.endtime = Some(now());
        }
    }
    sim.persist();
    Ok(Value::Null.into())
}

fn task_list(sim: &Sim, p: &Params) -> ApiResult<Reply> {
    let st = sim.state();
    let node = req(p, "node")?;
    check_node(&st, node)?;
    let source = p.get("source").map(String::as_str).unwrap_or("archive");
    let errors_only = flag(p, "errors", false);
    let mut tasks: Vec<&super::state::Task> = st
        .tasks
        .values()
        .filter(|t| t.node == node)
        .filter(|t| match source {
            "active" => t.endtime.is_none(),
            "archive" => t.endtime.is_some(),
            _ => true,
        })
        .filter(|t| p.get("typefilter").is_none_or(|f| &t.ty == f))
        .filter(|t| p.get("vmid").is_none_or(|v| &t.id == v))
        .filter(|t| {
            p.get("userfilter")
                .is_none_or(|u| t.user.contains(u.as_str()))
        })
        .filter(|t| {
            !errors_only
                || t.exitstatus
                    .as_deref()
                    .is_some_and(|e| e != "OK" && !e.starts_with("WARNINGS: "))
        })
        .filter(|t| {
            p.get("since")
                .and_then(|s| s.parse::<u64>().ok())
                .is_none_or(|s| t.starttime >= s)
        })
        .filter(|t| {
            p.get("until")
                .and_then(|s| s.parse::<u64>().ok())
                .is_none_or(|s| t.starttime <= s)
        })
        .collect();
    tasks.sort_by(|a, b| b.starttime.cmp(&a.starttime).then(b.pid.cmp(&a.pid)));
    let total = tasks.len() as u64;
    let start: usize = p.get("start").and_then(|v| v.parse().ok()).unwrap_or(0);
    let limit: usize = p.get("limit").and_then(|v| v.parse().ok()).unwrap_or(50);
    let list = tasks
        .into_iter()
        .skip(start)
        .take(limit)
        .map(|t| task_json(t, false))
        .collect();
    Ok(Reply {
        data: Value::Array(list),
        total: Some(total),
    })
}

/// Normalise a tag list: split, lower-case, sort, de-duplicate, join with `;`.
pub fn normalize_tags(v: &str) -> String {
    let mut tags: Vec<String> = super::formats::split_list(v)
        .map(str::to_lowercase)
        .collect();
    tags.sort();
    tags.dedup();
    tags.join(";")
}

/// Map config values to JSON the way PVE returns them (numbers for integer keys).
pub fn config_json(
    cfg: &BTreeMap<String, String>,
    ep_schema: Option<&Endpoint>,
) -> Map<String, Value> {
    cfg.iter()
        .map(|(k, v)| {
            let ty = ep_schema
                .and_then(|e| e.schema_of(k))
                .and_then(|s| s.ty.clone());
            let val = match ty.as_deref() {
                Some("integer") | Some("boolean") => v
                    .parse::<i64>()
                    .map(|n| json!(n))
                    .unwrap_or_else(|_| json!(v)),
                Some("number") => v
                    .parse::<f64>()
                    .map(|n| json!(n))
                    .unwrap_or_else(|_| json!(v)),
                _ => json!(v),
            };
            (k.clone(), val)
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_normalised() {
        assert_eq!(normalize_tags("Talos, k8s;b  a;k8s"), "a;b;k8s;talos");
    }
}
