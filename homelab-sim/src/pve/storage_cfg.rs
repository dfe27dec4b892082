//! The storage configuration (`/etc/pve/storage.cfg`) through `/storage`: list, read,
//! create, update, delete.
//!
//! Read from pve-storage `src/PVE/API2/Storage/Config.pm`: `create` refuses an existing id
//! (`storage ID '<id>' already defined`) after the type's plugin checked the options
//! (`check_config`); `update` sets and `delete`s options of an existing entry; `delete`
//! removes the entry only (the data stays where it is). The per-type parameters are
//! checked against the PVE 9.1 schema before a handler runs (`schema.rs`); here the
//! options a type requires (`path` for `dir`, `pool` for `zfspool`, `vgname` for `lvm`,
//! `thinpool` + `vgname` for `lvmthin`) are enforced as the plugins do.

use serde_json::{Value, json};

use super::api::{Reply, req};
use super::error::{ApiError, ApiResult};
use super::schema::Params;
use super::sim::Sim;
use super::state::StorageCfg;

/// Route `/storage` endpoints.
pub fn dispatch(sim: &Sim, m: &str, path: &str, p: &Params) -> ApiResult<Reply> {
    match (m, path) {
        ("GET", "/storage") => {
            let st = sim.state();
            let list: Vec<Value> = st
                .storages
                .iter()
                .filter(|(_, s)| p.get("type").is_none_or(|t| *t == s.ty))
                .map(|(id, s)| entry(id, s))
                .collect();
            Ok(Value::Array(list).into())
        }
        ("GET", "/storage/{storage}") => {
            let st = sim.state();
            let id = req(p, "storage")?;
            let s = st
                .storages
                .get(id)
                .ok_or_else(|| ApiError::fail(format!("storage '{id}' does not exist")))?;
            Ok(entry(id, s).into())
        }
        ("POST", "/storage") => create(sim, p),
        ("PUT", "/storage/{storage}") => update(sim, p),
        ("DELETE", "/storage/{storage}") => {
            let mut st = sim.state();
            let id = req(p, "storage")?;
            if st.storages.remove(id).is_none() {
                return Err(ApiError::fail(format!("storage '{id}' does not exist")));
            }
            Ok(Value::Null.into())
        }
        _ => Err(ApiError::not_implemented(m, path)),
    }
}

fn entry(id: &str, s: &StorageCfg) -> Value {
    let mut o = json!({
        "storage": id,
        "type": s.ty,
        "content": s.content.join(","),
        "digest": "0000000000000000000000000000000000000000",
    });
    if let Some(obj) = o.as_object_mut() {
        if let Some(p) = &s.path {
            obj.insert("path".into(), json!(p));
        }
        if s.ty == "zfspool" {
            obj.insert("pool".into(), json!(id));
        }
        if s.shared {
            obj.insert("shared".into(), json!(1));
        }
    }
    o
}

fn content_list(v: &str) -> Vec<String> {
    let mut c: Vec<String> = v
        .split([',', ';', ' '])
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    c.sort();
    c.dedup();
    c
}

/// The content types a storage type can hold (pve-storage plugins' `plugindata`).
fn allowed_content(ty: &str) -> &'static [&'static str] {
    match ty {
        "dir" | "nfs" | "cifs" | "cephfs" | "btrfs" => &[
            "images", "rootdir", "vztmpl", "iso", "backup", "snippets", "import",
        ],
        "zfspool" | "lvmthin" | "rbd" | "zfs" => &["images", "rootdir"],
        "lvm" | "iscsi" | "iscsidirect" => &["images", "rootdir"],
        "pbs" => &["backup"],
        _ => &["images"],
    }
}

fn check_content(ty: &str, content: &[String]) -> ApiResult<()> {
    for c in content {
        if !allowed_content(ty).contains(&c.as_str()) {
            return Err(ApiError::param(
                "content",
                format!("storage does not support content type '{c}'"),
            ));
        }
    }
    Ok(())
}

fn create(sim: &Sim, p: &Params) -> ApiResult<Reply> {
    let id = req(p, "storage")?.to_string();
    let ty = req(p, "type")?.to_string();
    let required: &[&str] = match ty.as_str() {
        "dir" | "btrfs" => &["path"],
        "zfspool" => &["pool"],
        "lvm" => &["vgname"],
        "lvmthin" => &["vgname", "thinpool"],
        "nfs" => &["server", "export"],
        "cifs" => &["server", "share"],
        _ => &[],
    };
    for r in required {
        if !p.contains_key(*r) {
            return Err(ApiError::param(
                r,
                "property is missing and it is not optional",
            ));
        }
    }
    if ty == "zfspool" && p.get("pool").is_some_and(|pool| pool != &id) {
        // The simulated host has one dataset tree per pool, named like the storage.
        return Err(ApiError::param(
            "pool",
            format!("no such ZFS pool on this (simulated) host; use '{id}'"),
        ));
    }
    let content = match p.get("content") {
        Some(c) => content_list(c),
        None => match ty.as_str() {
            "dir" | "nfs" | "cifs" | "btrfs" => vec!["images".into(), "rootdir".into()],
            _ => vec!["images".into()],
        },
    };
    check_content(&ty, &content)?;
    let path = match ty.as_str() {
        "nfs" | "cifs" | "cephfs" => Some(format!("/mnt/pve/{id}")),
        _ => p.get("path").cloned(),
    };
    if let Some(path) = &path
        && !path.starts_with('/')
    {
        return Err(ApiError::param("path", format!("invalid path '{path}'")));
    }
    let mut st = sim.state();
    if st.storages.contains_key(&id) {
        return Err(ApiError::fail(format!(
            "create storage failed: storage ID '{id}' already defined"
        )));
    }
    st.storages.insert(
        id.clone(),
        StorageCfg {
            ty: ty.clone(),
            content,
            shared: p.get("shared").is_some_and(|s| s == "1")
                || matches!(ty.as_str(), "nfs" | "cifs" | "cephfs" | "rbd" | "pbs"),
            total: 1 << 40,
            path,
        },
    );
    Ok(json!({ "storage": id, "type": ty }).into())
}

fn update(sim: &Sim, p: &Params) -> ApiResult<Reply> {
    let id = req(p, "storage")?.to_string();
    let mut st = sim.state();
    let s = st
        .storages
        .get_mut(&id)
        .ok_or_else(|| ApiError::fail(format!("storage '{id}' does not exist")))?;
    for fixed in ["type", "path", "pool", "vgname", "thinpool"] {
        if p.contains_key(fixed) {
            return Err(ApiError::param(
                fixed,
                "can't change value of fixed parameter",
            ));
        }
    }
    if let Some(c) = p.get("content") {
        let content = content_list(c);
        check_content(&s.ty, &content)?;
        s.content = content;
    }
    if let Some(sh) = p.get("shared") {
        s.shared = sh == "1";
    }
    Ok(json!({ "storage": id, "type": s.ty }).into())
}
