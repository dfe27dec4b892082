//! `pools:` in homelab.yaml: Proxmox resource pools (`/pools`, kept in `user.cfg`). A pool
//! `up` creates carries the owner marker as the last line of its comment; pools without it
//! are never changed or deleted.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ConfigError, Loaded};

/// One resource pool.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolDecl {
    /// Pool ID (`lab`, `lab/k8s`): letters, digits, `-`, `_`, `.`; up to three levels
    /// separated by `/` (a nested pool's parent must be declared or exist).
    pub name: String,
    /// Free-text comment shown in the Proxmox UI (the owner marker is added below it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// A pool as it should be: its ID and its full comment (the declared text, then the owner
/// marker line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DesiredPool {
    /// Pool ID.
    pub id: String,
    /// The comment Proxmox should hold, owner marker included.
    pub comment: String,
}

/// Whether `id` is a pool ID Proxmox lets us create: a `pve-poolid` (pve-access-control,
/// `PVE::AccessControl::verify_poolname`: one to three `/`-separated levels of
/// `[A-Za-z0-9._-]+`) whose levels start with a letter (pve-manager, PVE/API2/Pool.pm,
/// `create_pool`).
pub fn is_pool_id(id: &str) -> bool {
    let levels: Vec<&str> = id.split('/').collect();
    levels.len() <= 3
        && levels.iter().all(|l| {
            l.starts_with(|c: char| c.is_ascii_alphabetic())
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        })
}

/// The comment a pool of `lab` carries: the declared text (if any), then the marker line.
pub fn pool_comment(comment: Option<&str>, lab: &str) -> String {
    let marker = super::desired::owner_marker(lab);
    match comment.map(str::trim_end).filter(|c| !c.is_empty()) {
        Some(c) => format!("{c}\n{marker}"),
        None => marker,
    }
}

/// Validate and resolve `pools:`.
pub fn resolve(l: &Loaded, errs: &mut Vec<ConfigError>) -> Vec<DesiredPool> {
    let lab = &l.config.name;
    let marker = super::desired::owner_marker(lab);
    let mut out: Vec<DesiredPool> = Vec::new();
    for (i, p) in l.config.pools.iter().enumerate() {
        let at = format!("pools[{i}]");
        if !is_pool_id(&p.name) {
            errs.push(l.error_at(
                &format!("{at}.name"),
                format!(
                    "`{}` is not a pool ID (letters, digits, `-`, `_`, `.`, starting with a letter; at most three levels separated by `/`)",
                    p.name
                ),
            ));
            continue;
        }
        if out.iter().any(|o| o.id == p.name) {
            errs.push(l.error_at(
                &format!("{at}.name"),
                format!("pool `{}` is declared twice", p.name),
            ));
            continue;
        }
        if let Some(c) = &p.comment
            && c.lines()
                .any(|line| line.trim().starts_with("homelab-cli:owner="))
        {
            errs.push(l.error_at(
                &format!("{at}.comment"),
                format!(
                    "the comment must not hold an owner marker (`{marker}` is added by homelab-cli)"
                ),
            ));
            continue;
        }
        out.push(DesiredPool {
            id: p.name.clone(),
            comment: pool_comment(p.comment.as_deref(), lab),
        });
    }
    // A nested pool's parent: Proxmox refuses to create `a/b` without `a`.
    for (i, p) in l.config.pools.iter().enumerate() {
        if let Some((parent, _)) = p.name.rsplit_once('/')
            && is_pool_id(&p.name)
            && !out.iter().any(|o| o.id == parent)
        {
            errs.push(
                l.error_at(
                    &format!("pools[{i}].name"),
                    format!(
                        "pool `{}` is nested in `{parent}`, which is not declared",
                        p.name
                    ),
                )
                .with_help(format!("declare `{parent}` in `pools:` before it")),
            );
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn pool_ids_follow_verify_poolname() {
        for ok in ["lab", "a.b-c_d", "lab/k8s", "a/b/c", "x9"] {
            assert!(is_pool_id(ok), "{ok}");
        }
        for bad in ["", "9", "a/9", "a b", "a/b/c/d", "/a", "a/", "a//b", "é"] {
            assert!(!is_pool_id(bad), "{bad}");
        }
    }

    #[test]
    fn the_comment_ends_with_the_marker() {
        assert_eq!(pool_comment(None, "lab"), "homelab-cli:owner=lab");
        assert_eq!(pool_comment(Some(""), "lab"), "homelab-cli:owner=lab");
        assert_eq!(
            pool_comment(Some("Kubernetes\n"), "lab"),
            "Kubernetes\nhomelab-cli:owner=lab"
        );
    }
}
