//! Declared storages against `/storage`: one read when any are declared, a pure diff
//! (create, or update what may change), and the steps. Storages are never deleted: their
//! configuration is all `storage.cfg` holds about them, and removing it from a storage that
//! holds data would orphan the data; a storage no longer declared is left as it is.

use std::collections::BTreeMap;

use proxmox_client::{Client, ParamValue};
use serde_json::Value;

use super::plan::{Action, Change, PlanError};
use crate::model::desired::Desired;
use crate::model::storages::FIXED;

/// Read `storage.cfg` (`GET /storage`) when storages are declared.
pub async fn observe(
    client: &Client,
    desired: &Desired,
) -> Result<Option<BTreeMap<String, BTreeMap<String, String>>>, proxmox_client::Error> {
    if desired.storages.is_empty() {
        return Ok(None);
    }
    let list: Vec<Value> = client.get("/storage", &[]).await?;
    Ok(Some(
        list.into_iter()
            .filter_map(|v| {
                let o = v.as_object()?;
                let id = o.get("storage")?.as_str()?.to_string();
                let params = o
                    .iter()
                    .filter(|(k, _)| *k != "storage" && *k != "digest")
                    .map(|(k, v)| {
                        let s = match v {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        (k.clone(), s)
                    })
                    .collect();
                Some((id, params))
            })
            .collect(),
    ))
}

fn canon(key: &str, v: &str) -> String {
    if key == "content" {
        let mut c: Vec<&str> = v.split(',').filter(|s| !s.is_empty()).collect();
        c.sort_unstable();
        c.join(",")
    } else {
        v.to_string()
    }
}

/// The storage actions: create what is missing, update what differs. A storage of another
/// type, or a change of a fixed parameter, is refused.
pub fn diff(
    desired: &Desired,
    observed: Option<&BTreeMap<String, BTreeMap<String, String>>>,
) -> Result<Vec<Action>, PlanError> {
    let Some(have) = observed else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for s in &desired.storages {
        let Some(cur) = have.get(&s.id) else {
            let mut config = s.params.clone();
            config.insert("type".into(), s.ty.clone());
            out.push(Action::CreateStorage {
                id: s.id.clone(),
                config,
            });
            continue;
        };
        let cur_ty = cur.get("type").cloned().unwrap_or_default();
        if cur_ty != s.ty {
            return Err(PlanError::StorageMismatch {
                id: s.id.clone(),
                what: format!("is a `{cur_ty}` storage, declared as `{}`", s.ty),
            });
        }
        let mut changes = Vec::new();
        for (k, want) in &s.params {
            let now = cur.get(k).map(|v| canon(k, v));
            if now.as_deref() == Some(canon(k, want).as_str()) {
                continue;
            }
            if FIXED.contains(&k.as_str()) {
                return Err(PlanError::StorageMismatch {
                    id: s.id.clone(),
                    what: format!(
                        "has {k} = {}, declared {want}, which Proxmox cannot change",
                        now.unwrap_or_else(|| "(unset)".into())
                    ),
                });
            }
            changes.push(Change {
                key: k.clone(),
                from: now,
                to: Some(want.clone()),
                reboot: false,
                sensitive: false,
                shown: true,
            });
        }
        if !changes.is_empty() {
            out.push(Action::UpdateStorage {
                id: s.id.clone(),
                changes,
            });
        }
    }
    Ok(out)
}

/// Make a storage action (`POST /storage` or `PUT /storage/{id}`).
pub async fn apply(client: &Client, a: &Action) -> Result<String, String> {
    match a {
        Action::CreateStorage { id, config } => {
            let mut params: Vec<(&str, ParamValue)> = vec![("storage", id.as_str().into())];
            params.extend(config.iter().map(|(k, v)| (k.as_str(), v.as_str().into())));
            let _: Value = client
                .post("/storage", &params)
                .await
                .map_err(|e| format!("create storage {id}: {e}"))?;
            Ok("created".into())
        }
        Action::UpdateStorage { id, changes } => {
            let params: Vec<(&str, ParamValue)> = changes
                .iter()
                .filter_map(|c| Some((c.key.as_str(), c.to.as_deref()?.into())))
                .collect();
            let _: Value = client
                .put(&format!("/storage/{id}"), &params)
                .await
                .map_err(|e| format!("update storage {id}: {e}"))?;
            Ok("updated".into())
        }
        _ => Ok(String::new()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::model::secrets::SecretValues;

    fn desired(storages: &str) -> Desired {
        let text = format!(
            "name: lab\nproxmox:\n  endpoint: https://pve:8006\n  token_id: a@pve!b\n  token_secret: ${{secret:t}}\n  node: pve\nstorages:\n{storages}"
        );
        let l = crate::model::parse(std::path::Path::new("homelab.yaml"), text).unwrap();
        let s = SecretValues::from_pairs([("t".to_string(), "x".to_string())]);
        crate::model::desired::resolve(&l, &s, &crate::engine::image::FactoryNaming::default())
            .unwrap()
    }

    fn have(pairs: &[(&str, &[(&str, &str)])]) -> BTreeMap<String, BTreeMap<String, String>> {
        pairs
            .iter()
            .map(|(id, kv)| {
                (
                    id.to_string(),
                    kv.iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                )
            })
            .collect()
    }

    const DECL: &str = "  - name: tank\n    type: zfspool\n    pool: tank\n    content: [rootdir, images]\n  - name: bk\n    type: dir\n    path: /tank/bk\n    content: [backup]\n";

    #[test]
    fn missing_storages_are_added_and_changed_ones_updated() {
        let d = desired(DECL);
        assert!(
            diff(&d, None).unwrap().is_empty(),
            "not read: nothing planned"
        );
        let h = have(&[(
            "tank",
            &[
                ("type", "zfspool"),
                ("pool", "tank"),
                ("content", "images,rootdir"),
            ],
        )]);
        let a = diff(&d, Some(&h)).unwrap();
        assert_eq!(a.len(), 1);
        let Action::CreateStorage { id, config } = &a[0] else {
            panic!("{a:?}")
        };
        assert_eq!(id, "bk");
        assert_eq!(config["type"], "dir");
        assert_eq!(config["path"], "/tank/bk");
        // Content in another order is the same; a content change is an update.
        let h = have(&[
            (
                "tank",
                &[
                    ("type", "zfspool"),
                    ("pool", "tank"),
                    ("content", "rootdir,images"),
                ],
            ),
            (
                "bk",
                &[
                    ("type", "dir"),
                    ("path", "/tank/bk"),
                    ("content", "backup,iso"),
                ],
            ),
            ("other", &[("type", "dir"), ("path", "/x")]),
        ]);
        let a = diff(&d, Some(&h)).unwrap();
        assert!(
            matches!(&a[..], [Action::UpdateStorage { id, changes }]
                if id == "bk" && changes[0].key == "content" && changes[0].to.as_deref() == Some("backup")),
            "{a:?}"
        );
    }

    #[test]
    fn another_type_or_a_fixed_parameter_is_refused() {
        let d = desired(DECL);
        let h = have(&[("bk", &[("type", "nfs"), ("content", "backup")])]);
        let e = diff(&d, Some(&h)).unwrap_err();
        assert!(
            e.to_string().contains("storage bk is a `nfs` storage"),
            "{e}"
        );
        let h = have(&[(
            "bk",
            &[("type", "dir"), ("path", "/old"), ("content", "backup")],
        )]);
        let e = diff(&d, Some(&h)).unwrap_err();
        assert!(e.to_string().contains("which Proxmox cannot change"), "{e}");
    }

    #[test]
    fn declarations_are_checked_against_the_types() {
        let text = "name: lab\nproxmox:\n  endpoint: https://pve:8006\n  token_id: a@pve!b\n  token_secret: ${secret:t}\n  node: pve\nstorages:\n  - name: bk\n    type: dir\n    content: [backups]\n    options: { frobnicate: '1' }\n  - name: 9x\n    type: dir\n    path: /x\n";
        let l = crate::model::parse(std::path::Path::new("homelab.yaml"), text.into()).unwrap();
        let s = SecretValues::from_pairs([("t".to_string(), "x".to_string())]);
        let e =
            crate::model::desired::resolve(&l, &s, &crate::engine::image::FactoryNaming::default())
                .unwrap_err();
        let msg = format!("{:?}", e.errors());
        assert!(msg.contains("unknown content type `backups`"), "{msg}");
        assert!(
            msg.contains("`frobnicate` is not a storage parameter"),
            "{msg}"
        );
        assert!(msg.contains("a `dir` storage needs `path`"), "{msg}");
        assert!(msg.contains("`9x` is not a storage ID"), "{msg}");
    }
}
