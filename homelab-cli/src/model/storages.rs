//! `storages:` in homelab.yaml: Proxmox storages (`/storage`, i.e. `storage.cfg`) such as a
//! ZFS pool for guest volumes and a directory for backups, with the per-type parameters of
//! the PVE 9.1 schema.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ConfigError, Loaded};

/// One storage.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StorageDecl {
    /// Storage ID (`tank`, `backups`): letters, digits, `-`, `_`, `.`, starting with a letter.
    pub name: String,
    /// Storage type: `dir`, `zfspool`, `lvmthin`, `lvm`, `nfs`, `cifs`, `btrfs`, `pbs`, ...
    #[serde(rename = "type")]
    pub ty: String,
    /// Directory (`dir`, `btrfs`), e.g. `/tank/backups/lxc`. Fixed after creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// ZFS pool or dataset (`zfspool`), e.g. `tank`. Fixed after creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// Content types: `images`, `rootdir`, `vztmpl`, `iso`, `backup`, `snippets`, `import`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content: Vec<String>,
    /// Further parameters of the type, verbatim (`vgname`, `thinpool`, `server`, `export`,
    /// `prune-backups`, `nodes`, `sparse`, ...), as the PVE API names them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

/// A storage as it should be in `storage.cfg`: its type and parameters (canonical: content
/// sorted and comma-separated).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DesiredStorage {
    /// Storage ID.
    pub id: String,
    /// Type.
    pub ty: String,
    /// Parameters other than `storage` and `type`.
    pub params: BTreeMap<String, String>,
}

/// Parameters `POST /storage` accepts (PVE 9.1 schema), besides `storage` and `type`.
const KNOWN: &[&str] = &[
    "authsupported",
    "base",
    "blocksize",
    "bwlimit",
    "comstar_hg",
    "comstar_tg",
    "content",
    "content-dirs",
    "create-base-path",
    "create-subdirs",
    "data-pool",
    "datastore",
    "disable",
    "domain",
    "encryption-key",
    "export",
    "fingerprint",
    "format",
    "fs-name",
    "fuse",
    "is_mountpoint",
    "iscsiprovider",
    "keyring",
    "krbd",
    "lio_tpg",
    "master-pubkey",
    "max-protected-backups",
    "mkdir",
    "monhost",
    "mountpoint",
    "namespace",
    "nocow",
    "nodes",
    "nowritecache",
    "options",
    "password",
    "path",
    "pool",
    "port",
    "portal",
    "preallocation",
    "prune-backups",
    "saferemove",
    "saferemove-stepsize",
    "saferemove_throughput",
    "server",
    "share",
    "shared",
    "skip-cert-verification",
    "smbversion",
    "snapshot-as-volume-chain",
    "sparse",
    "subdir",
    "tagged_only",
    "target",
    "thinpool",
    "username",
    "vgname",
    "zfs-base-path",
];

/// Storage types of the PVE 9.1 schema.
const TYPES: &[&str] = &[
    "btrfs",
    "cephfs",
    "cifs",
    "dir",
    "esxi",
    "iscsi",
    "iscsidirect",
    "lvm",
    "lvmthin",
    "nfs",
    "pbs",
    "rbd",
    "zfs",
    "zfspool",
];

/// Parameters that cannot change once the storage exists (pve-storage marks them `fixed`).
pub const FIXED: &[&str] = &[
    "path",
    "pool",
    "vgname",
    "thinpool",
    "server",
    "export",
    "share",
    "datastore",
    "monhost",
    "portal",
    "target",
    "base",
    "fs-name",
];

/// Parameters each type requires.
fn required(ty: &str) -> &'static [&'static str] {
    match ty {
        "dir" | "btrfs" => &["path"],
        "zfspool" => &["pool"],
        "lvm" => &["vgname"],
        "lvmthin" => &["vgname", "thinpool"],
        "nfs" => &["server", "export"],
        "cifs" => &["server", "share"],
        "pbs" => &["server", "datastore"],
        _ => &[],
    }
}

const CONTENT: &[&str] = &[
    "images", "rootdir", "vztmpl", "iso", "backup", "snippets", "import",
];

/// Validate and resolve `storages:`.
pub fn resolve(l: &Loaded, errs: &mut Vec<ConfigError>) -> Vec<DesiredStorage> {
    let mut out: Vec<DesiredStorage> = Vec::new();
    for (i, s) in l.config.storages.iter().enumerate() {
        let at = format!("storages[{i}]");
        let id_ok = s
            .name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
            && s.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !id_ok {
            errs.push(l.error_at(
                &format!("{at}.name"),
                format!("`{}` is not a storage ID (letters, digits, `-`, `_`, `.`, starting with a letter)", s.name),
            ));
            continue;
        }
        if out.iter().any(|o| o.id == s.name) {
            errs.push(l.error_at(
                &format!("{at}.name"),
                format!("storage `{}` is declared twice", s.name),
            ));
            continue;
        }
        if !TYPES.contains(&s.ty.as_str()) {
            errs.push(
                l.error_at(
                    &format!("{at}.type"),
                    format!("unknown storage type `{}`", s.ty),
                )
                .with_help(format!("one of {}", TYPES.join(", "))),
            );
            continue;
        }
        let mut params = BTreeMap::new();
        if let Some(p) = &s.path {
            if !p.starts_with('/') {
                errs.push(l.error_at(
                    &format!("{at}.path"),
                    format!("`{p}` is not an absolute path"),
                ));
            }
            params.insert("path".to_string(), p.clone());
        }
        if let Some(p) = &s.pool {
            params.insert("pool".to_string(), p.clone());
        }
        for c in &s.content {
            if !CONTENT.contains(&c.as_str()) {
                errs.push(
                    l.error_at(
                        &format!("{at}.content"),
                        format!("unknown content type `{c}`"),
                    )
                    .with_help(format!("one of {}", CONTENT.join(", "))),
                );
            }
        }
        if !s.content.is_empty() {
            let mut c = s.content.clone();
            c.sort();
            c.dedup();
            params.insert("content".to_string(), c.join(","));
        }
        for (k, v) in &s.options {
            if matches!(k.as_str(), "path" | "pool" | "content" | "storage" | "type") {
                errs.push(l.error_at(
                    &format!("{at}.options.{k}"),
                    format!("`{k}` has its own field"),
                ));
            } else if !KNOWN.contains(&k.as_str()) {
                errs.push(l.error_at(
                    &format!("{at}.options.{k}"),
                    format!("`{k}` is not a storage parameter of Proxmox VE 9.1"),
                ));
            } else {
                params.insert(k.clone(), v.clone());
            }
        }
        for r in required(&s.ty) {
            if !params.contains_key(*r) {
                errs.push(l.error_at(&at, format!("a `{}` storage needs `{r}`", s.ty)));
            }
        }
        out.push(DesiredStorage {
            id: s.name.clone(),
            ty: s.ty.clone(),
            params,
        });
    }
    out
}
