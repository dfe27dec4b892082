//! Declared resource pools against `/pools`: one read when any are declared (plus the
//! members of each of our pools that is no longer declared), a pure diff (create, update the
//! comment, delete an empty pool of ours that is no longer declared) and the steps.
//!
//! Ownership: a pool carries our owner marker as a line of its comment. A pool without it is
//! never changed or deleted; declaring one by its name is refused.

use proxmox_client::{Client, ParamValue};
use serde::Serialize;
use serde_json::Value;

use super::plan::{Action, Change, PlanError};
use crate::model::desired::{Desired, has_owner_marker};

/// A pool as `GET /pools` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObservedPool {
    /// Pool ID.
    pub id: String,
    /// Its comment (owner marker included, when it has one).
    pub comment: Option<String>,
    /// Member IDs (`lxc/101`, `storage/pve/tank`): read only for our pools that are no
    /// longer declared (the list does not carry them).
    pub members: Option<Vec<String>>,
}

/// Read the pools (`GET /pools`) when pools are declared; for each of ours that is no longer
/// declared, its members (`GET /pools?poolid=`).
pub async fn observe(
    client: &Client,
    desired: &Desired,
) -> Result<Option<Vec<ObservedPool>>, proxmox_client::Error> {
    // Guests' `pool:` must name a declared or existing pool.
    if desired.pools.is_empty() && desired.guest_pools.is_empty() {
        return Ok(None);
    }
    let list: Vec<Value> = client.get("/pools", &[]).await?;
    let mut out: Vec<ObservedPool> = list
        .iter()
        .filter_map(|v| {
            Some(ObservedPool {
                id: v.get("poolid")?.as_str()?.to_string(),
                comment: v.get("comment").and_then(Value::as_str).map(str::to_string),
                members: None,
            })
        })
        .collect();
    for p in &mut out {
        let ours = p
            .comment
            .as_deref()
            .is_some_and(|c| has_owner_marker(c, &desired.lab));
        if ours && !desired.pools.iter().any(|d| d.id == p.id) {
            let one: Vec<Value> = client
                .get("/pools", &[("poolid", p.id.as_str().into())])
                .await?;
            p.members = Some(
                one.iter()
                    .flat_map(|v| v.get("members").and_then(Value::as_array).cloned())
                    .flatten()
                    .filter_map(|m| m.get("id").and_then(Value::as_str).map(str::to_string))
                    .collect(),
            );
        }
    }
    Ok(Some(out))
}

/// The pool actions: create what is missing, update a comment of ours that differs, delete
/// an empty pool of ours that is no longer declared. A declared pool without our marker, or
/// a pool of ours to delete that still has members, is refused.
pub fn diff(
    desired: &Desired,
    observed: Option<&[ObservedPool]>,
) -> Result<Vec<Action>, PlanError> {
    let Some(have) = observed else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for d in &desired.pools {
        let Some(cur) = have.iter().find(|p| p.id == d.id) else {
            out.push(Action::CreatePool {
                id: d.id.clone(),
                comment: d.comment.clone(),
            });
            continue;
        };
        let now = cur.comment.clone().unwrap_or_default();
        if !has_owner_marker(&now, &desired.lab) {
            return Err(PlanError::PoolNotOurs {
                id: d.id.clone(),
                lab: desired.lab.clone(),
            });
        }
        if now.trim_end() != d.comment {
            out.push(Action::UpdatePool {
                id: d.id.clone(),
                changes: vec![Change {
                    key: "comment".into(),
                    from: Some(now),
                    to: Some(d.comment.clone()),
                    reboot: false,
                    sensitive: false,
                    shown: true,
                }],
            });
        }
    }
    // Ours, no longer declared: deleted when empty. Nested pools first (Proxmox refuses to
    // delete a pool that has sub-pools).
    let mut gone: Vec<&ObservedPool> = have
        .iter()
        .filter(|p| {
            !desired.pools.iter().any(|d| d.id == p.id)
                && p.comment
                    .as_deref()
                    .is_some_and(|c| has_owner_marker(c, &desired.lab))
        })
        .collect();
    gone.sort_by_key(|p| std::cmp::Reverse(p.id.matches('/').count()));
    for p in &gone {
        let mut members = p.members.clone().unwrap_or_default();
        // Sub-pools that stay (declared, or not ours) keep it from being deleted too.
        let prefix = format!("{}/", p.id);
        members.extend(
            have.iter()
                .filter(|s| s.id.starts_with(&prefix) && !gone.iter().any(|g| g.id == s.id))
                .map(|s| format!("pool {}", s.id)),
        );
        if !members.is_empty() {
            return Err(PlanError::PoolNotEmpty {
                id: p.id.clone(),
                members: members.join(", "),
            });
        }
        out.push(Action::DeletePool { id: p.id.clone() });
    }
    Ok(out)
}

/// Make a pool action (`POST /pools`, `PUT /pools`, `DELETE /pools`: the PVE 9.1 schema's
/// `/pools` endpoints with `poolid` as a parameter; the `/pools/{poolid}` ones are
/// deprecated there).
pub async fn apply(client: &Client, a: &Action) -> Result<String, String> {
    match a {
        Action::CreatePool { id, comment } => {
            let params: Vec<(&str, ParamValue)> = vec![
                ("poolid", id.as_str().into()),
                ("comment", comment.as_str().into()),
            ];
            let _: Value = client
                .post("/pools", &params)
                .await
                .map_err(|e| format!("create pool {id}: {e}"))?;
            Ok("created".into())
        }
        Action::UpdatePool { id, changes } => {
            let mut params: Vec<(&str, ParamValue)> = vec![("poolid", id.as_str().into())];
            params.extend(
                changes
                    .iter()
                    .filter_map(|c| Some((c.key.as_str(), c.to.as_deref()?.into()))),
            );
            let _: Value = client
                .put("/pools", &params)
                .await
                .map_err(|e| format!("update pool {id}: {e}"))?;
            Ok("updated".into())
        }
        Action::DeletePool { id } => {
            let _: Value = client
                .delete("/pools", &[("poolid", id.as_str().into())])
                .await
                .map_err(|e| format!("delete pool {id}: {e}"))?;
            Ok("deleted".into())
        }
        _ => Ok(String::new()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::model::secrets::SecretValues;

    fn desired(pools: &str) -> Desired {
        let text = format!(
            "name: lab\nproxmox:\n  endpoint: https://pve:8006\n  token_id: a@pve!b\n  token_secret: ${{secret:t}}\n  node: pve\npools:\n{pools}"
        );
        let l = crate::model::parse(std::path::Path::new("homelab.yaml"), text).unwrap();
        let s = SecretValues::from_pairs([("t".to_string(), "x".to_string())]);
        crate::model::desired::resolve(&l, &s, &crate::engine::image::FactoryNaming::default())
            .unwrap()
    }

    fn pool(id: &str, comment: Option<&str>, members: Option<&[&str]>) -> ObservedPool {
        ObservedPool {
            id: id.into(),
            comment: comment.map(str::to_string),
            members: members.map(|m| m.iter().map(|s| s.to_string()).collect()),
        }
    }

    const DECL: &str =
        "  - name: lab\n    comment: Homelab guests\n  - name: lab/k8s\n  - name: ops\n";

    #[test]
    fn missing_pools_are_created_with_the_marker() {
        let d = desired(DECL);
        assert!(
            diff(&d, None).unwrap().is_empty(),
            "not read: nothing planned"
        );
        let a = diff(
            &d,
            Some(&[pool("ops", Some("homelab-cli:owner=lab"), None)]),
        )
        .unwrap();
        assert_eq!(
            a,
            vec![
                Action::CreatePool {
                    id: "lab".into(),
                    comment: "Homelab guests\nhomelab-cli:owner=lab".into()
                },
                Action::CreatePool {
                    id: "lab/k8s".into(),
                    comment: "homelab-cli:owner=lab".into()
                },
            ]
        );
    }

    #[test]
    fn a_changed_comment_of_ours_is_an_update() {
        let d = desired(DECL);
        let have = [
            pool("lab", Some("Old\nhomelab-cli:owner=lab"), None),
            pool("lab/k8s", Some("homelab-cli:owner=lab\n"), None),
            pool("ops", Some("homelab-cli:owner=lab"), None),
        ];
        let a = diff(&d, Some(&have)).unwrap();
        let [Action::UpdatePool { id, changes }] = &a[..] else {
            panic!("{a:?}")
        };
        assert_eq!(id, "lab");
        assert_eq!(changes[0].key, "comment");
        assert_eq!(
            changes[0].from.as_deref(),
            Some("Old\nhomelab-cli:owner=lab")
        );
        assert_eq!(
            changes[0].to.as_deref(),
            Some("Homelab guests\nhomelab-cli:owner=lab")
        );
    }

    #[test]
    fn a_pool_without_our_marker_is_refused() {
        let d = desired(DECL);
        for comment in [None, Some("made by hand"), Some("homelab-cli:owner=other")] {
            let e = diff(&d, Some(&[pool("ops", comment, None)])).unwrap_err();
            assert!(
                e.to_string()
                    .contains("pool ops exists but was not created by homelab `lab`"),
                "{e}"
            );
        }
    }

    #[test]
    fn an_undeclared_pool_of_ours_is_deleted_only_when_empty() {
        let d = desired("  - name: lab\n");
        let have = [
            pool("lab", Some("homelab-cli:owner=lab"), None),
            pool("old", Some("homelab-cli:owner=lab"), Some(&[])),
            pool("old/sub", Some("x\nhomelab-cli:owner=lab"), Some(&[])),
            pool("theirs", Some("hand-made"), None),
            pool("other-lab", Some("homelab-cli:owner=prod"), None),
        ];
        let a = diff(&d, Some(&have)).unwrap();
        assert_eq!(
            a,
            vec![
                Action::DeletePool {
                    id: "old/sub".into()
                },
                Action::DeletePool { id: "old".into() },
            ],
            "sub-pool first; foreign pools untouched"
        );
        let have = [
            pool("lab", Some("homelab-cli:owner=lab"), None),
            pool(
                "old",
                Some("homelab-cli:owner=lab"),
                Some(&["lxc/101", "storage/pve/tank"]),
            ),
        ];
        let e = diff(&d, Some(&have)).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("pool old"), "{msg}");
        assert!(msg.contains("lxc/101, storage/pve/tank"), "{msg}");
        // A sub-pool made by hand keeps ours from being deleted.
        let have = [
            pool("lab", Some("homelab-cli:owner=lab"), None),
            pool("old", Some("homelab-cli:owner=lab"), Some(&[])),
            pool("old/theirs", Some("by hand"), None),
        ];
        let e = diff(&d, Some(&have)).unwrap_err();
        assert!(e.to_string().contains("members: pool old/theirs"), "{e}");
    }

    #[test]
    fn declarations_are_checked() {
        let text = "name: lab\nproxmox:\n  endpoint: https://pve:8006\n  token_id: a@pve!b\n  token_secret: ${secret:t}\n  node: pve\npools:\n  - name: a b\n  - name: ok\n  - name: ok\n  - name: x/y\n  - name: c\n    comment: \"hi\\nhomelab-cli:owner=lab\"\n";
        let l = crate::model::parse(std::path::Path::new("homelab.yaml"), text.into()).unwrap();
        let s = SecretValues::from_pairs([("t".to_string(), "x".to_string())]);
        let e =
            crate::model::desired::resolve(&l, &s, &crate::engine::image::FactoryNaming::default())
                .unwrap_err();
        let msg = format!("{:?}", e.errors());
        assert!(msg.contains("`a b` is not a pool ID"), "{msg}");
        assert!(msg.contains("pool `ok` is declared twice"), "{msg}");
        assert!(
            msg.contains("nested in `x`, which is not declared"),
            "{msg}"
        );
        assert!(msg.contains("must not hold an owner marker"), "{msg}");
    }
}
