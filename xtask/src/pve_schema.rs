//! `cargo xtask codegen`: the compact table of the Proxmox VE endpoints the simulator serves,
//! generated from the official API schema (`../shared/pve-api-schema/apidata.js`).
//!
//! The table keeps what validation and permission checks need (parameter names, types,
//! formats, enums, ranges, patterns, optional/required, the `perm` checks) and drops every
//! description, so the simulator never needs `../shared` at run time.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

/// The endpoints the simulator serves: (path, methods).
pub const SERVED: &[(&str, &[&str])] = &[
    ("/version", &["GET"]),
    ("/nodes", &["GET"]),
    ("/nodes/{node}/status", &["GET"]),
    ("/nodes/{node}/certificates/info", &["GET"]),
    ("/nodes/{node}/query-url-metadata", &["GET"]),
    ("/nodes/{node}/hardware/pci", &["GET"]),
    ("/nodes/{node}/hardware/pci/{pci-id-or-mapping}", &["GET"]),
    ("/cluster/mapping/pci", &["GET", "POST"]),
    ("/cluster/mapping/pci/{id}", &["GET", "PUT", "DELETE"]),
    ("/cluster/resources", &["GET"]),
    ("/cluster/nextid", &["GET"]),
    ("/cluster/status", &["GET"]),
    ("/nodes/{node}/qemu", &["GET", "POST"]),
    ("/nodes/{node}/qemu/{vmid}", &["GET", "DELETE"]),
    ("/nodes/{node}/qemu/{vmid}/config", &["GET", "POST", "PUT"]),
    ("/nodes/{node}/qemu/{vmid}/pending", &["GET"]),
    ("/nodes/{node}/qemu/{vmid}/status/current", &["GET"]),
    ("/nodes/{node}/qemu/{vmid}/status/start", &["POST"]),
    ("/nodes/{node}/qemu/{vmid}/status/stop", &["POST"]),
    ("/nodes/{node}/qemu/{vmid}/status/shutdown", &["POST"]),
    ("/nodes/{node}/qemu/{vmid}/status/reboot", &["POST"]),
    ("/nodes/{node}/qemu/{vmid}/clone", &["POST"]),
    ("/nodes/{node}/qemu/{vmid}/template", &["POST"]),
    ("/nodes/{node}/qemu/{vmid}/resize", &["PUT"]),
    ("/nodes/{node}/qemu/{vmid}/agent", &["POST"]),
    (
        "/nodes/{node}/qemu/{vmid}/agent/network-get-interfaces",
        &["GET"],
    ),
    ("/nodes/{node}/qemu/{vmid}/agent/ping", &["POST"]),
    ("/nodes/{node}/lxc", &["GET", "POST"]),
    ("/nodes/{node}/lxc/{vmid}", &["GET", "DELETE"]),
    ("/nodes/{node}/lxc/{vmid}/config", &["GET", "PUT"]),
    ("/nodes/{node}/lxc/{vmid}/pending", &["GET"]),
    ("/nodes/{node}/lxc/{vmid}/status/current", &["GET"]),
    ("/nodes/{node}/lxc/{vmid}/status/start", &["POST"]),
    ("/nodes/{node}/lxc/{vmid}/status/stop", &["POST"]),
    ("/nodes/{node}/lxc/{vmid}/status/shutdown", &["POST"]),
    ("/nodes/{node}/lxc/{vmid}/status/reboot", &["POST"]),
    ("/nodes/{node}/lxc/{vmid}/interfaces", &["GET"]),
    ("/nodes/{node}/lxc/{vmid}/template", &["POST"]),
    ("/nodes/{node}/lxc/{vmid}/resize", &["PUT"]),
    ("/nodes/{node}/storage", &["GET"]),
    ("/nodes/{node}/storage/{storage}/status", &["GET"]),
    ("/nodes/{node}/storage/{storage}/content", &["GET", "POST"]),
    (
        "/nodes/{node}/storage/{storage}/content/{volume}",
        &["GET", "DELETE"],
    ),
    ("/nodes/{node}/storage/{storage}/upload", &["POST"]),
    ("/nodes/{node}/storage/{storage}/download-url", &["POST"]),
    ("/nodes/{node}/tasks", &["GET"]),
    ("/nodes/{node}/tasks/{upid}", &["DELETE"]),
    ("/nodes/{node}/tasks/{upid}/status", &["GET"]),
    ("/nodes/{node}/tasks/{upid}/log", &["GET"]),
    ("/pools", &["GET", "POST", "PUT", "DELETE"]),
    ("/pools/{poolid}", &["GET"]),
    ("/access/ticket", &["POST"]),
    ("/access/users", &["GET", "POST"]),
    ("/access/users/{userid}", &["GET", "PUT", "DELETE"]),
    ("/access/users/{userid}/token", &["GET"]),
    (
        "/access/users/{userid}/token/{tokenid}",
        &["GET", "POST", "PUT", "DELETE"],
    ),
    ("/access/acl", &["GET", "PUT"]),
    ("/access/roles", &["GET", "POST"]),
    ("/access/roles/{roleid}", &["GET", "PUT", "DELETE"]),
    ("/cluster/backup", &["GET", "POST"]),
    ("/cluster/backup/{id}", &["GET", "PUT", "DELETE"]),
    ("/nodes/{node}/vzdump", &["POST"]),
    ("/storage", &["GET", "POST"]),
    ("/storage/{storage}", &["GET", "PUT", "DELETE"]),
    ("/cluster/sdn", &["PUT"]),
    ("/cluster/sdn/zones", &["GET", "POST"]),
    ("/cluster/sdn/zones/{zone}", &["GET", "PUT", "DELETE"]),
    ("/cluster/sdn/vnets", &["GET", "POST"]),
    ("/cluster/sdn/vnets/{vnet}", &["GET", "PUT", "DELETE"]),
    ("/cluster/sdn/vnets/{vnet}/subnets", &["GET", "POST"]),
    (
        "/cluster/sdn/vnets/{vnet}/subnets/{subnet}",
        &["GET", "PUT", "DELETE"],
    ),
];

/// Highest index of the schema's `name[n]` parameters. The API viewer collapses them to
/// `name[n]`; the real servers register each of `name0..nameN` (qemu-server, pve-container).
const INDEX_MAX: &[(&str, u32)] = &[
    ("net", 31),
    ("scsi", 30),
    ("virtio", 15),
    ("sata", 5),
    ("ide", 3),
    ("ipconfig", 31),
    ("hostpci", 15),
    ("serial", 3),
    ("parallel", 2),
    ("usb", 13),
    ("unused", 255),
    ("mp", 255),
    ("numa", 7),
    ("virtiofs", 9),
    ("dev", 255),
    ("link", 7),
];

/// Keys kept from a parameter schema (descriptions and UI hints go).
const KEPT: &[&str] = &[
    "type",
    "optional",
    "enum",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "requires",
    "default_key",
    "alias",
    "keyAlias",
    "default",
];

/// Where the schema is read from, and where the table goes.
pub fn paths(root: &Path) -> (PathBuf, PathBuf) {
    (
        root.join("../shared/pve-api-schema/apidata.js"),
        root.join("homelab-sim/src/pve/schema_table.json"),
    )
}

/// Build the table text from the text of `apidata.js`.
pub fn generate(apidata_js: &str) -> Result<String, String> {
    let start = apidata_js
        .find('[')
        .ok_or("apidata.js: no `[` opening the schema array")?;
    let end = apidata_js
        .rfind(']')
        .ok_or("apidata.js: no `]` closing the schema array")?;
    let tree: Value = serde_json::from_str(&apidata_js[start..=end])
        .map_err(|e| format!("apidata.js: not JSON after stripping the JS wrapper: {e}"))?;
    let mut nodes = Map::new();
    index(&tree, &mut nodes);
    let mut endpoints = Vec::new();
    for (path, methods) in SERVED {
        let node = nodes
            .get(*path)
            .ok_or_else(|| format!("apidata.js has no path {path}"))?;
        for method in *methods {
            let info = node
                .pointer(&format!("/info/{method}"))
                .ok_or_else(|| format!("apidata.js has no {method} {path}"))?;
            endpoints.push(endpoint(path, method, info)?);
        }
    }
    let mut out = String::from("{\"endpoints\":[\n");
    for (i, e) in endpoints.iter().enumerate() {
        if i > 0 {
            out.push_str(",\n");
        }
        out.push_str(&serde_json::to_string(e).map_err(|e| e.to_string())?);
    }
    out.push_str(
        "\n],\n\"source\":\"pve-docs api-viewer/apidata.js (PVE 9.1), via cargo xtask codegen\"}\n",
    );
    Ok(out)
}

fn index(v: &Value, out: &mut Map<String, Value>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| index(i, out)),
        Value::Object(o) => {
            if let Some(Value::String(p)) = o.get("path") {
                out.insert(p.clone(), v.clone());
            }
            if let Some(children) = o.get("children") {
                index(children, out);
            }
        }
        _ => {}
    }
}

fn endpoint(path: &str, method: &str, info: &Value) -> Result<Value, String> {
    let mut params = Map::new();
    if let Some(Value::Object(props)) = info.pointer("/parameters/properties") {
        for (name, schema) in props {
            params.insert(name.clone(), param(name, schema));
        }
    }
    let mut e = json!({
        "path": path,
        "method": method,
        "params": params,
    });
    let obj = e.as_object_mut().ok_or("unreachable")?;
    if info.pointer("/parameters/additionalProperties") == Some(&json!(1)) {
        obj.insert("additional".into(), json!(true));
    }
    for flag in ["protected", "allowtoken"] {
        if let Some(v) = info.get(flag) {
            obj.insert(flag.into(), json!(v.as_i64().unwrap_or(0) == 1));
        }
    }
    if let Some(v) = info.get("proxyto") {
        obj.insert("proxyto".into(), v.clone());
    }
    if let Some(Value::Object(perm)) = info.get("permissions") {
        let mut p = Map::new();
        for k in ["check", "user"] {
            if let Some(v) = perm.get(k) {
                p.insert(k.into(), v.clone());
            }
        }
        obj.insert("permissions".into(), Value::Object(p));
    }
    Ok(e)
}

fn param(name: &str, schema: &Value) -> Value {
    let mut out = Map::new();
    let Value::Object(s) = schema else {
        return Value::Object(out);
    };
    for k in KEPT {
        if let Some(v) = s.get(*k) {
            let v = match (*k, v) {
                // Perl stringifies compiled regexes as `(?^:...)`; keep the plain pattern.
                ("pattern", Value::String(p)) => Value::String(perl_regex(p)),
                _ => v.clone(),
            };
            out.insert((*k).to_string(), v);
        }
    }
    match s.get("format") {
        Some(Value::String(f)) => {
            out.insert("format".into(), Value::String(f.clone()));
        }
        Some(Value::Object(sub)) => {
            let mut keys = Map::new();
            for (k, v) in sub {
                keys.insert(k.clone(), param(k, v));
            }
            out.insert("props".into(), Value::Object(keys));
        }
        _ => {}
    }
    if let Some(items) = s.get("items") {
        out.insert("items".into(), param(name, items));
    }
    if let Some(base) = name.strip_suffix("[n]")
        && let Some((_, max)) = INDEX_MAX.iter().find(|(b, _)| *b == base)
    {
        out.insert("max_index".into(), json!(max));
    }
    Value::Object(out)
}

fn perl_regex(p: &str) -> String {
    let mut s = p.to_string();
    while let Some(i) = s.find("(?^:") {
        s.replace_range(i..i + 4, "(?:");
    }
    while let Some(i) = s.find("(?^i:") {
        s.replace_range(i..i + 5, "(?i:");
    }
    s
}

/// `cargo xtask codegen [--check]`.
pub fn run(root: &Path, check: bool) -> Result<(), String> {
    let (src, dst) = paths(root);
    let js = fs::read_to_string(&src).map_err(|e| format!("cannot read {}: {e}", src.display()))?;
    let table = generate(&js)?;
    let current = fs::read_to_string(&dst).unwrap_or_default();
    if check {
        if current != table {
            return Err(format!(
                "{} is stale; run `cargo xtask codegen`",
                dst.display()
            ));
        }
        eprintln!("xtask: {} is up to date", dst.display());
        return Ok(());
    }
    if current != table {
        let tmp = dst.with_extension("json.tmp");
        fs::write(&tmp, &table).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        fs::rename(&tmp, &dst).map_err(|e| format!("cannot rename to {}: {e}", dst.display()))?;
    }
    eprintln!("xtask: wrote {}", dst.display());
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A check that cannot run here (a tool or reference file is missing): a loud `SKIPPED`
    /// line on a developer's machine, a failure in CI (`CI` set), so CI never passes by skipping.
    fn skip_or_fail(reason: &str) {
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
        if ci {
            panic!(
                "{reason} (CI is set: a check that cannot run is a failure; .ci/run installs what tests need)"
            );
        }
        eprintln!("SKIPPED: {reason}");
    }

    #[test]
    fn checked_in_table_matches_the_schema() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let (src, dst) = paths(&root);
        let Ok(js) = fs::read_to_string(&src) else {
            skip_or_fail(&format!(
                "{} is absent; cannot check the PVE endpoint table against the schema",
                src.display()
            ));
            return;
        };
        let table = generate(&js).unwrap();
        let current = fs::read_to_string(&dst).unwrap();
        assert!(
            current == table,
            "{} is stale: run `cargo xtask codegen`",
            dst.display()
        );
    }

    #[test]
    fn perl_patterns_become_plain() {
        assert_eq!(perl_regex("(?^:\\d+(?:-\\d+)?)"), "(?:\\d+(?:-\\d+)?)");
    }

    #[test]
    fn indexed_and_property_string_parameters_are_described() {
        let js = r#"const apiSchema = [{"path":"/x","children":[],"info":{"POST":{
            "allowtoken":1,"protected":1,"permissions":{"check":["perm","/",["Sys.Audit"]],"description":"d"},
            "parameters":{"additionalProperties":0,"properties":{
              "net[n]":{"type":"string","optional":1,"description":"d","format":{"model":{"default_key":1,"type":"string","enum":["virtio"]},
              "virtio":{"alias":"macaddr","keyAlias":"model"}}}}}}}}];"#;
        let e = endpoint(
            "/x",
            "POST",
            &serde_json::from_str::<Value>(&js[18..js.len() - 1]).unwrap()[0]["info"]["POST"],
        )
        .unwrap();
        assert_eq!(e["params"]["net[n]"]["max_index"], 31);
        assert_eq!(e["params"]["net[n]"]["props"]["model"]["default_key"], 1);
        assert!(e["params"]["net[n]"].get("description").is_none());
        assert_eq!(e["permissions"]["check"][0], "perm");
        assert!(e["permissions"].get("description").is_none());
    }
}
