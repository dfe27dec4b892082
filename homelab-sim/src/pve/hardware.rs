//! Host PCI devices (`GET /nodes/{node}/hardware/pci`), cluster PCI resource mappings
//! (`/cluster/mapping/pci`), and the passthrough rules qemu-server and pve-container apply
//! to `hostpciN` and `devN`: who may set them, and what a VM start resolves and reserves.
//!
//! Sources: pve-manager `API2/Hardware/PCI.pm` and `API2/Cluster/Mapping/PCI.pm`,
//! pve-guest-common `Mapping/PCI.pm`, pve-common `SysFSTools.pm`, qemu-server
//! `API2/Qemu.pm` (`check_hostpci_perm`) and `QemuServer/PCI.pm`, pve-container `LXC.pm`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};
use sha1::{Digest, Sha1};

use super::api::{Reply, check_node, flag, req};
use super::auth::{Caller, privileges};
use super::error::{ApiError, ApiResult};
use super::schema::Params;
use super::sim::Sim;
use super::state::{Kind, PciDevice, PciMapping, State};

/// Classes `pci_scan` hides unless told otherwise: memory controllers, bridges, processors.
const DEFAULT_CLASS_BLACKLIST: &str = "05;06;0b";

/// Route the hardware and mapping endpoints.
pub fn dispatch(sim: &Sim, caller: &Caller, m: &str, path: &str, p: Params) -> ApiResult<Reply> {
    match (m, path) {
        ("GET", "/nodes/{node}/hardware/pci") => pci_scan(sim, &p),
        ("GET", "/nodes/{node}/hardware/pci/{pci-id-or-mapping}") => {
            check_node(&sim.state(), req(&p, "node")?)?;
            Ok(json!([{"method": "mdev"}]).into())
        }
        ("GET", "/cluster/mapping/pci") => mapping_list(sim, caller, &p),
        ("GET", "/cluster/mapping/pci/{id}") => mapping_get(sim, &p),
        ("POST", "/cluster/mapping/pci") => mapping_create(sim, &p),
        ("PUT", "/cluster/mapping/pci/{id}") => mapping_update(sim, &p),
        ("DELETE", "/cluster/mapping/pci/{id}") => {
            let id = req(&p, "id")?.to_string();
            sim.state().pci_mappings.remove(&id);
            sim.persist();
            Ok(Value::Null.into())
        }
        _ => Err(ApiError::not_implemented(m, path)),
    }
}

// ----------------------------------------------------------------------------- lspci

fn device_json(d: &PciDevice, verbose: bool) -> Value {
    let mut o = Map::new();
    o.insert("id".into(), json!(d.id));
    o.insert("class".into(), json!(d.class));
    o.insert("vendor".into(), json!(d.vendor));
    o.insert("device".into(), json!(d.device));
    o.insert("iommugroup".into(), json!(d.iommugroup));
    if d.mdev {
        o.insert("mdev".into(), json!(1));
    }
    if verbose {
        let opt = [
            ("vendor_name", &d.vendor_name),
            ("device_name", &d.device_name),
            ("subsystem_vendor", &d.subsystem_vendor),
            ("subsystem_device", &d.subsystem_device),
            ("subsystem_vendor_name", &d.subsystem_vendor_name),
            ("subsystem_device_name", &d.subsystem_device_name),
        ];
        for (k, v) in opt {
            if let Some(v) = v {
                o.insert(k.into(), json!(v));
            }
        }
    }
    Value::Object(o)
}

fn pci_scan(sim: &Sim, p: &Params) -> ApiResult<Reply> {
    let st = sim.state();
    let node = req(p, "node")?;
    check_node(&st, node)?;
    let blacklist = p
        .get("pci-class-blacklist")
        .map(String::as_str)
        .unwrap_or(DEFAULT_CLASS_BLACKLIST);
    // PVE joins the list into a regex alternation matched right after `0x`.
    let prefixes: Vec<String> = super::formats::split_list(blacklist)
        .map(|c| format!("0x{}", c.to_ascii_lowercase()))
        .collect();
    let verbose = flag(p, "verbose", true);
    let mut devs: Vec<&PciDevice> = st.nodes[node]
        .pci
        .iter()
        .filter(|d| {
            !prefixes
                .iter()
                .any(|pre| d.class.to_ascii_lowercase().starts_with(pre))
        })
        .collect();
    devs.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(Value::Array(devs.into_iter().map(|d| device_json(d, verbose)).collect()).into())
}

/// `SysFSTools::lspci($id)`: the functions a host id names. `01:00.0` and `0000:01:00.0`
/// name one function; `01:00` names all functions of the device.
pub fn lspci<'a>(devices: &'a [PciDevice], id: &str) -> Vec<&'a PciDevice> {
    let id = id.to_ascii_lowercase();
    let full = if id.matches(':').count() == 1 {
        format!("0000:{id}")
    } else {
        id
    };
    let mut out: Vec<&PciDevice> = devices
        .iter()
        .filter(|d| {
            d.id == full
                || d.id
                    .strip_prefix(&full)
                    .is_some_and(|rest| rest.starts_with('.'))
        })
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

// ----------------------------------------------------------------------------- mappings

/// The text of `mapping/pci.cfg` (its SHA-1 is the `digest` every answer carries).
fn render_cfg(st: &State) -> String {
    let mut out = String::new();
    for (id, m) in &st.pci_mappings {
        out.push_str(id);
        out.push('\n');
        if let Some(d) = &m.description {
            out.push_str(&format!("\tdescription {d}\n"));
        }
        if let Some(v) = m.live_migration_capable {
            out.push_str(&format!("\tlive-migration-capable {}\n", u8::from(v)));
        }
        for e in &m.map {
            out.push_str(&format!("\tmap {e}\n"));
        }
        if let Some(v) = m.mdev {
            out.push_str(&format!("\tmdev {}\n", u8::from(v)));
        }
        out.push('\n');
    }
    out
}

fn cfg_digest(st: &State) -> String {
    hex::encode(Sha1::digest(render_cfg(st).as_bytes()))
}

fn mapping_json(id: Option<&str>, m: &PciMapping, digest: &str) -> Map<String, Value> {
    let mut o = Map::new();
    if let Some(id) = id {
        o.insert("id".into(), json!(id));
    }
    o.insert("type".into(), json!("pci"));
    o.insert("map".into(), json!(m.map));
    if let Some(d) = &m.description {
        o.insert("description".into(), json!(d));
    }
    if let Some(v) = m.mdev {
        o.insert("mdev".into(), json!(u8::from(v)));
    }
    if let Some(v) = m.live_migration_capable {
        o.insert("live-migration-capable".into(), json!(u8::from(v)));
    }
    o.insert("digest".into(), json!(digest));
    o
}

fn mapping_list(sim: &Sim, caller: &Caller, p: &Params) -> ApiResult<Reply> {
    let st = sim.state();
    let check_node_name = p.get("check-node");
    if let Some(n) = check_node_name {
        check_node(&st, n)?;
    }
    let digest = cfg_digest(&st);
    let mut out = Vec::new();
    for (id, m) in &st.pci_mappings {
        let have = privileges(&st, caller, &format!("/mapping/pci/{id}"));
        if !["Mapping.Modify", "Mapping.Use", "Mapping.Audit"]
            .iter()
            .any(|p| have.contains(*p))
        {
            continue;
        }
        let mut o = mapping_json(Some(id), m, &digest);
        if let Some(node) = check_node_name {
            let mut checks = Vec::new();
            let entries = node_entries(m, node);
            if entries.is_empty() {
                checks.push(json!({
                    "severity": "warning",
                    "message": format!("No mapping for node {node}."),
                }));
            }
            for e in &entries {
                if let Err(err) = assert_valid(id, e, &st.nodes[node.as_str()].pci) {
                    checks.push(json!({
                        "severity": "error",
                        "message": format!("Invalid configuration: {err}"),
                    }));
                }
            }
            o.insert("checks".into(), Value::Array(checks));
        }
        out.push(Value::Object(o));
    }
    Ok(Value::Array(out).into())
}

fn mapping_get(sim: &Sim, p: &Params) -> ApiResult<Reply> {
    let st = sim.state();
    let id = req(p, "id")?;
    let m = st
        .pci_mappings
        .get(id)
        .ok_or_else(|| ApiError::fail(format!("mapping '{id}' not found")))?;
    Ok(Value::Object(mapping_json(None, m, &cfg_digest(&st))).into())
}

fn split_array(v: &str) -> Vec<String> {
    v.split('\0')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn mapping_create(sim: &Sim, p: &Params) -> ApiResult<Reply> {
    let id = req(p, "id")?.to_string();
    let mut st = sim.state();
    if st.pci_mappings.contains_key(&id) {
        return Err(ApiError::fail(format!(
            "create hardware mapping failed: pci ID '{id}' already defined"
        )));
    }
    let m = PciMapping {
        description: p.get("description").cloned(),
        mdev: p.get("mdev").map(|v| v == "1"),
        live_migration_capable: p.get("live-migration-capable").map(|v| v == "1"),
        map: p.get("map").map(|v| split_array(v)).unwrap_or_default(),
    };
    st.pci_mappings.insert(id, m);
    drop(st);
    sim.persist();
    Ok(Value::Null.into())
}

fn mapping_update(sim: &Sim, p: &Params) -> ApiResult<Reply> {
    let id = req(p, "id")?.to_string();
    let mut st = sim.state();
    if let Some(d) = p.get("digest")
        && *d != cfg_digest(&st)
    {
        return Err(ApiError::fail(
            "update hardware mapping failed: detected modified configuration - file changed by other user? Try again.",
        ));
    }
    let deletes: Vec<String> = p
        .get("delete")
        .map(|d| super::formats::split_list(d).map(str::to_string).collect())
        .unwrap_or_default();
    let Some(m) = st.pci_mappings.get_mut(&id) else {
        return Err(ApiError::fail(format!(
            "update hardware mapping failed: pci ID '{id}' does not exist"
        )));
    };
    // pve-common `SectionConfig::delete_from_config`.
    for k in &deletes {
        let fail = |msg: String| ApiError::fail(format!("update hardware mapping failed: {msg}"));
        match k.as_str() {
            "description" | "mdev" | "live-migration-capable" => {}
            "map" => return Err(fail(format!("unable to delete required option '{k}'"))),
            _ => return Err(fail(format!("no such option '{k}'"))),
        }
        if p.contains_key(k) {
            return Err(fail(format!(
                "cannot set and delete property '{k}' at the same time!"
            )));
        }
        match k.as_str() {
            "description" => m.description = None,
            "mdev" => m.mdev = None,
            _ => m.live_migration_capable = None,
        }
    }
    if let Some(d) = p.get("description") {
        m.description = Some(d.clone());
    }
    if let Some(v) = p.get("mdev") {
        m.mdev = Some(v == "1");
    }
    if let Some(v) = p.get("live-migration-capable") {
        m.live_migration_capable = Some(v == "1");
    }
    if let Some(v) = p.get("map") {
        m.map = split_array(v);
    }
    drop(st);
    sim.persist();
    Ok(Value::Null.into())
}

/// A parsed `key=value,...` property string (no default key).
fn props(v: &str) -> BTreeMap<String, String> {
    v.split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The map entries of a mapping that name `node` (`get_node_mapping`).
fn node_entries(m: &PciMapping, node: &str) -> Vec<BTreeMap<String, String>> {
    m.map
        .iter()
        .map(|e| props(e))
        .filter(|e| e.get("node").is_some_and(|n| n == node))
        .collect()
}

/// `PVE::Mapping::PCI::assert_valid`: every path exists and still has the ids, IOMMU group
/// and subsystem the entry recorded.
fn assert_valid(
    name: &str,
    entry: &BTreeMap<String, String>,
    devices: &[PciDevice],
) -> Result<(), String> {
    let paths = entry.get("path").map(String::as_str).unwrap_or("");
    for (idx, path) in paths.split(';').filter(|s| !s.is_empty()).enumerate() {
        let path = if path.contains('.') {
            path.to_string()
        } else {
            format!("{path}.0")
        };
        let dev = devices
            .iter()
            .find(|d| d.id == path)
            .ok_or_else(|| format!("pci device '{path}' not found"))?;
        let hex = |s: &str| s.trim_start_matches("0x").to_ascii_lowercase();
        let mut correct: BTreeMap<&str, Option<String>> = BTreeMap::new();
        correct.insert(
            "id",
            Some(format!("{}:{}", hex(&dev.vendor), hex(&dev.device))),
        );
        correct.insert(
            "iommugroup",
            (dev.iommugroup >= 0).then(|| dev.iommugroup.to_string()),
        );
        correct.insert(
            "subsystem-id",
            match (&dev.subsystem_vendor, &dev.subsystem_device) {
                (Some(v), Some(d)) => Some(format!("{}:{}", hex(v), hex(d))),
                _ => None,
            },
        );
        for (prop, want) in correct {
            if prop == "iommugroup" && idx > 0 {
                continue;
            }
            let got = entry.get(prop);
            match (want, got) {
                (None, None) => {}
                (Some(_), None) => {
                    return Err(format!(
                        "missing expected property '{prop}' for device '{path}'"
                    ));
                }
                (None, Some(_)) => return Err(format!("'{prop}' configured but should not be")),
                (Some(w), Some(g)) => {
                    let g = g.replace("0x", "").to_ascii_lowercase();
                    if w != g {
                        return Err(format!("'{prop}' does not match for '{name}' ({w} != {g})"));
                    }
                }
            }
        }
    }
    Ok(())
}

// ----------------------------------------------------------------------------- hostpci

/// A parsed `hostpciN` value (`[host=]<ids>` is the default key).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostPci {
    /// `host=` ids, `;`-separated.
    pub host: Option<String>,
    /// `mapping=` id.
    pub mapping: Option<String>,
    /// Every other option.
    pub opts: BTreeMap<String, String>,
}

impl HostPci {
    /// Parse a `hostpciN` value.
    pub fn parse(v: &str) -> Self {
        let mut out = HostPci::default();
        for part in v.split(',').filter(|s| !s.is_empty()) {
            match part.split_once('=') {
                Some(("host", h)) => out.host = Some(h.to_string()),
                Some(("mapping", m)) => out.mapping = Some(m.to_string()),
                Some((k, val)) => {
                    out.opts.insert(k.to_string(), val.to_string());
                }
                None => out.host = Some(part.to_string()),
            }
        }
        out
    }

    fn on(&self, k: &str) -> bool {
        self.opts.get(k).is_some_and(|v| v == "1")
    }
}

/// Whether a config key is `hostpciN`.
pub fn is_hostpci_key(k: &str) -> bool {
    k.strip_prefix("hostpci")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// qemu-server `check_hostpci_perm`: root@pam may pass anything; everyone else (API tokens
/// of root@pam included) only cluster mappings they may use, and needs `VM.Config.HWType`.
pub fn check_hostpci_perm(
    st: &State,
    caller: &Caller,
    vmid: u32,
    key: &str,
    value: &str,
) -> ApiResult<()> {
    if caller.is_root() {
        return Ok(());
    }
    let d = HostPci::parse(value);
    if d.host.is_some() {
        return Err(ApiError::fail(format!(
            "only root can set '{key}' config for non-mapped devices"
        )));
    }
    let Some(m) = d.mapping else {
        return Err(ApiError::fail("either 'host' or 'mapping' must be set."));
    };
    let path = format!("/mapping/pci/{m}");
    if !privileges(st, caller, &path).contains("Mapping.Use") {
        return Err(ApiError::perm(&path, "Mapping.Use"));
    }
    let vm = format!("/vms/{vmid}");
    if !vm_privileges(st, caller, vmid).contains("VM.Config.HWType") {
        return Err(ApiError::perm(&vm, "VM.Config.HWType"));
    }
    Ok(())
}

fn vm_privileges(st: &State, caller: &Caller, vmid: u32) -> BTreeSet<String> {
    privileges(st, caller, &format!("/vms/{vmid}"))
}

/// The host PCI functions a QEMU guest's `hostpciN` entries claim on `node`, checked the way
/// `PCI.pm` does when the VM starts (`parse_hostpci_devices`, `choose_hostpci_devices`,
/// `reserve_pci_usage`). The error is the task's exit status.
pub fn claim_for_start(
    st: &State,
    node: &str,
    vmid: u32,
    cfg: &BTreeMap<String, String>,
) -> Result<Vec<String>, String> {
    let in_use = in_use_by_others(st, node, vmid);
    let mut used: BTreeSet<String> = BTreeSet::new();
    let mut claimed = Vec::new();
    let q35 = machine_is_q35(cfg);
    let mut legacy_igd = false;
    for i in 0..16 {
        let key = format!("hostpci{i}");
        let Some(v) = cfg.get(&key) else { continue };
        let d = HostPci::parse(v);
        let alternatives = resolve(st, node, &d)?;
        if !q35 && d.on("pcie") {
            // A `die` without a newline: Perl appends the source position.
            return Err(
                "q35 machine model is not enabled at /usr/share/perl5/PVE/QemuServer/PCI.pm line 514."
                    .into(),
            );
        }
        let multifunction = alternatives.iter().any(|a| a.len() > 1);
        if d.opts.contains_key("mdev") && multifunction {
            return Err("cannot use mediated device with multifunction device".into());
        }
        if d.on("legacy-igd") {
            if legacy_igd {
                return Err("only one device can be assigned in legacy-igd mode".into());
            }
            legacy_igd = true;
            if cfg.get("vga").map(String::as_str) != Some("none") {
                return Err("legacy IGD assignment requires VGA mode to be 'none'".into());
            }
            if d.opts.get("rombar").is_some_and(|r| r == "0") {
                return Err("legacy IGD assignment requires rombar to be enabled".into());
            }
            if d.on("x-vga") {
                return Err("legacy IGD assignment is not compatible with x-vga".into());
            }
            if d.opts.contains_key("mdev") {
                return Err("legacy IGD assignment is not compatible with mdev".into());
            }
            if q35 {
                return Err("legacy IGD assignment is not compatible with q35".into());
            }
            if multifunction {
                return Err(
                    "legacy IGD assignment is not compatible with multifunction devices".into(),
                );
            }
            if alternatives.len() > 1 {
                return Err(
                    "legacy IGD assignment is not compatible with alternate devices".into(),
                );
            }
            if !alternatives[0][0].ends_with("02.0") {
                return Err(
                    "legacy IGD assignment only works for devices on host bus 00:02.0".into(),
                );
            }
        }
        let chosen = if alternatives.len() == 1 {
            alternatives[0].clone()
        } else {
            alternatives
                .iter()
                .find(|a| {
                    a.iter()
                        .all(|id| !used.contains(id) && !in_use.contains_key(id))
                })
                .cloned()
                .ok_or_else(|| format!("could not find a free device for '{key}'"))?
        };
        for id in &chosen {
            if !used.insert(id.clone()) {
                return Err(format!("device '{id}' assigned more than once"));
            }
        }
        claimed.extend(chosen);
    }
    for id in &claimed {
        if let Some(other) = in_use.get(id) {
            return Err(format!(
                "PCI device '{id}' already in use by VMID '{other}'"
            ));
        }
    }
    Ok(claimed)
}

fn machine_is_q35(cfg: &BTreeMap<String, String>) -> bool {
    cfg.get("machine").is_some_and(|m| {
        let ty = m
            .split(',')
            .find_map(|p| match p.split_once('=') {
                Some(("type", t)) => Some(t),
                Some(_) => None,
                None => Some(p),
            })
            .unwrap_or("");
        ty.contains("q35")
    })
}

/// The alternatives (each a list of function ids) a `hostpciN` names on `node`.
fn resolve(st: &State, node: &str, d: &HostPci) -> Result<Vec<Vec<String>>, String> {
    let devices = st.nodes.get(node).map(|n| n.pci.as_slice()).unwrap_or(&[]);
    let raw: Vec<Vec<String>> = match (&d.host, &d.mapping) {
        (Some(_), Some(_)) => return Err("Cannot set both 'host' and 'mapping'.".into()),
        (None, None) => return Err("Either 'host' or 'mapping' must be set.".into()),
        (Some(h), None) => vec![h.split(';').map(str::to_string).collect()],
        (None, Some(m)) => {
            let entries = st
                .pci_mappings
                .get(m)
                .map(|cfg| node_entries(cfg, node))
                .unwrap_or_default();
            if entries.is_empty() {
                return Err(format!("PCI device mapping not found for '{m}'"));
            }
            let mut alts = Vec::new();
            for e in &entries {
                assert_valid(m, e, devices).map_err(|e| {
                    format!("PCI device mapping invalid (hardware probably changed): {e}")
                })?;
                let path = e.get("path").cloned().unwrap_or_default();
                alts.push(path.split(';').map(str::to_string).collect());
            }
            alts
        }
    };
    let mut out = Vec::new();
    for alt in raw {
        let mut ids = Vec::new();
        for id in alt {
            let found = lspci(devices, &id);
            if found.is_empty() {
                return Err(format!("no PCI device found for '{id}'"));
            }
            ids.extend(found.into_iter().map(|d| d.id.clone()));
        }
        out.push(ids);
    }
    Ok(out)
}

/// Function ids held by the other running VMs on `node`, with the VMID holding each.
fn in_use_by_others(st: &State, node: &str, vmid: u32) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    for g in st.guests.values() {
        if g.vmid == vmid || g.kind != Kind::Qemu || !g.running || g.node != node {
            continue;
        }
        // A running VM holds what it claimed when it started, i.e. its current config.
        let cfg = &g.config;
        for (k, v) in cfg {
            if !is_hostpci_key(k) {
                continue;
            }
            if let Ok(alts) = resolve(st, node, &HostPci::parse(v))
                && let Some(first) = alts.first()
            {
                for id in first {
                    out.entry(id.clone()).or_insert(g.vmid);
                }
            }
        }
    }
    out
}

// ----------------------------------------------------------------------------- LXC devN

/// Whether a config key is `devN`.
pub fn is_dev_key(k: &str) -> bool {
    k.strip_prefix("dev")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// pve-container `check_ct_modify_config_perm` for `devN`: root@pam only, with no privilege
/// that could grant it (a permission exception, so 403 `Permission check failed (...)`).
pub fn check_dev_perm(caller: &Caller) -> ApiResult<()> {
    if caller.is_root() {
        Ok(())
    } else {
        Err(ApiError::status(
            403,
            "Permission check failed (configuring device passthrough is only allowed for root@pam)",
        ))
    }
}

/// pve-container `update_pct_config` for `devN`: the path must exist on the host.
pub fn check_dev_exists(st: &State, node: &str, value: &str) -> Result<(), String> {
    let path = value
        .split(',')
        .find_map(|p| match p.split_once('=') {
            Some(("path", v)) => Some(v),
            Some(_) => None,
            None => Some(p),
        })
        .ok_or("Path is not defined for passthrough device")?;
    if st
        .nodes
        .get(node)
        .is_some_and(|n| n.dev_nodes.iter().any(|d| d == path))
    {
        Ok(())
    } else {
        Err(format!("Device {path} does not exist"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::state::default_pci_devices;
    use super::*;

    #[test]
    fn lspci_names_functions_like_sysfstools() {
        let devs = default_pci_devices();
        let ids =
            |q: &str| -> Vec<String> { lspci(&devs, q).iter().map(|d| d.id.clone()).collect() };
        assert_eq!(ids("01:00.0"), ["0000:01:00.0"]);
        assert_eq!(ids("0000:01:00"), ["0000:01:00.0", "0000:01:00.1"]);
        assert_eq!(ids("01:00"), ["0000:01:00.0", "0000:01:00.1"]);
        assert!(ids("09:00.0").is_empty());
    }

    #[test]
    fn hostpci_parses_the_default_key() {
        let d = HostPci::parse("0000:01:00,pcie=1,x-vga=1");
        assert_eq!(d.host.as_deref(), Some("0000:01:00"));
        assert!(d.on("pcie") && d.on("x-vga") && !d.on("rombar"));
        let d = HostPci::parse("mapping=gpu,pcie=1");
        assert_eq!(d.mapping.as_deref(), Some("gpu"));
        assert!(is_hostpci_key("hostpci12") && !is_hostpci_key("hostpci"));
        assert!(is_dev_key("dev0") && !is_dev_key("devices"));
    }

    #[test]
    fn mapping_validity_compares_ids_group_and_subsystem() {
        let devs = default_pci_devices();
        let e =
            props("node=pve,path=0000:01:00.0,id=10de:2204,iommugroup=14,subsystem-id=10de:147d");
        assert_eq!(assert_valid("gpu", &e, &devs), Ok(()));
        let e = props("node=pve,path=0000:01:00,id=10de:2204,iommugroup=14");
        assert_eq!(
            assert_valid("gpu", &e, &devs).unwrap_err(),
            "missing expected property 'subsystem-id' for device '0000:01:00.0'"
        );
        let e =
            props("node=pve,path=0000:01:00.0,id=10de:2206,iommugroup=14,subsystem-id=10de:147d");
        assert_eq!(
            assert_valid("gpu", &e, &devs).unwrap_err(),
            "'id' does not match for 'gpu' (10de:2204 != 10de:2206)"
        );
        let e = props("node=pve,path=0000:09:00.0,id=10de:2204");
        assert_eq!(
            assert_valid("gpu", &e, &devs).unwrap_err(),
            "pci device '0000:09:00.0' not found"
        );
    }
}
