//! Backup jobs through observe → plan → apply: one `GET /cluster/backup` per plan, a pure
//! field-by-field diff of what Proxmox returns against the declared jobs, and the
//! `/cluster/backup` writes.
//!
//! Proxmox returns property-string options of a job (`prune-backups`, `fleecing`) as JSON
//! objects and booleans as `0`/`1`; everything is brought to one canonical text form before
//! comparing, so a job written by `up` plans nothing on the next run.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Arc;

use futures_util::FutureExt;
use proxmox_client::requests::BackupJobParams;
use proxmox_client::{Client, ParamValue};
use serde::Serialize;
use serde_json::Value;

use super::apply::Env;
use super::graph::{Step, StepError};
use super::plan::{Action, PlanError};
use crate::model::backups::{DesiredBackupJob, comment_owned};

/// The job options homelab-cli manages; others (set by hand) are left alone.
pub const MANAGED_KEYS: &[&str] = &[
    "all",
    "comment",
    "compress",
    "enabled",
    "mode",
    "node",
    "notes-template",
    "prune-backups",
    "schedule",
    "storage",
    "vmid",
];

/// A job as listed by `GET /cluster/backup`, every value as text.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ObservedBackupJob {
    /// Job id.
    pub id: String,
    /// Options (objects flattened to sorted property strings, booleans `0`/`1`).
    pub props: BTreeMap<String, String>,
}

impl ObservedBackupJob {
    /// Whether homelab `lab` owns the job (owner marker in its comment).
    pub fn owned_by(&self, lab: &str) -> bool {
        self.props
            .get("comment")
            .is_some_and(|c| comment_owned(c, lab))
    }
}

/// One changed job option.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobChange {
    /// Proxmox option (`schedule`, `prune-backups`, ...).
    pub field: String,
    /// Current value (`None`: unset).
    pub from: Option<String>,
    /// New value (`None`: removed).
    pub to: Option<String>,
}

fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::Bool(b) => Some(u8::from(*b).to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        Value::Array(a) => Some(a.iter().filter_map(text_of).collect::<Vec<_>>().join(",")),
        // Property strings come back as objects: `{"keep-last": 3, ...}`.
        Value::Object(o) => Some(
            o.iter()
                .filter_map(|(k, v)| text_of(v).map(|v| format!("{k}={v}")))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>()
                .join(","),
        ),
    }
}

/// A job from the API as text options.
pub fn from_api(job: &proxmox_client::models::BackupJob) -> ObservedBackupJob {
    let mut props: BTreeMap<String, String> = job
        .extra
        .iter()
        .filter_map(|(k, v)| text_of(v).map(|t| (k.clone(), t)))
        .collect();
    if let Some(s) = &job.schedule {
        props.insert("schedule".into(), s.clone());
    }
    if let Some(s) = &job.storage {
        props.insert("storage".into(), s.clone());
    }
    if let Some(e) = job.enabled {
        props.insert("enabled".into(), u8::from(e).to_string());
    }
    ObservedBackupJob {
        id: job.id.clone(),
        props,
    }
}

/// Read every backup job (one request).
pub async fn observe(client: &Client) -> Result<Vec<ObservedBackupJob>, proxmox_client::Error> {
    let mut jobs: Vec<ObservedBackupJob> = client
        .backup_jobs()
        .list()
        .await?
        .iter()
        .map(from_api)
        .collect();
    jobs.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(jobs)
}

/// Read the jobs for planning when `declared` jobs exist or not. A token that may not list
/// jobs (no `Sys.Audit` on `/`, as with the stock `PVEVMAdmin` role) cannot have made any,
/// so with none declared there is nothing to reconcile: a warning, not an error.
pub async fn observe_for(
    client: &Client,
    declared: bool,
) -> Result<Vec<ObservedBackupJob>, proxmox_client::Error> {
    match observe(client).await {
        Err(proxmox_client::Error::Permission { message, .. }) if !declared => {
            tracing::warn!(
                "cannot list backup jobs ({message}); none are declared, so none are reconciled"
            );
            Ok(Vec::new())
        }
        r => r,
    }
}

fn bool_text(v: &str) -> Option<&'static str> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some("1"),
        "0" | "false" | "no" | "off" => Some("0"),
        _ => None,
    }
}

/// The canonical form of option `key` (`None`: unset or at the value that means unset), with
/// Proxmox's defaults for absent options.
pub fn canon(key: &str, value: Option<&str>) -> Option<String> {
    let v = value.map(str::trim);
    match key {
        "enabled" => Some(v.and_then(bool_text).unwrap_or("1").to_string()),
        "all" => v
            .and_then(bool_text)
            .filter(|b| *b == "1")
            .map(String::from),
        "mode" => Some(
            v.filter(|m| !m.is_empty())
                .unwrap_or("snapshot")
                .to_string(),
        ),
        "compress" => Some(v.filter(|m| !m.is_empty()).unwrap_or("0").to_string()),
        "vmid" => {
            let ids: BTreeSet<u64> = v?
                .split([',', ';', ' '])
                .filter_map(|x| x.trim().parse().ok())
                .collect();
            (!ids.is_empty()).then(|| ids.iter().map(u64::to_string).collect::<Vec<_>>().join(","))
        }
        "prune-backups" => {
            let parts: BTreeSet<String> = v?
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| match p.split_once('=') {
                    Some((k, x)) => {
                        let x = x.trim();
                        let x = x
                            .parse::<u64>()
                            .map_or_else(|_| x.to_string(), |n| n.to_string());
                        format!("{}={x}", k.trim())
                    }
                    None => p.to_string(),
                })
                .collect();
            (!parts.is_empty()).then(|| parts.into_iter().collect::<Vec<_>>().join(","))
        }
        _ => v.filter(|x| !x.is_empty()).map(String::from),
    }
}

/// Compare one declared job with the job of the same id.
pub fn changes(want: &DesiredBackupJob, have: &ObservedBackupJob) -> Vec<JobChange> {
    let mut out = Vec::new();
    for key in MANAGED_KEYS {
        let w = want.params.get(*key).map(String::as_str);
        let h = have.props.get(*key).map(String::as_str);
        if canon(key, w) != canon(key, h) {
            out.push(JobChange {
                field: (*key).to_string(),
                from: h.map(String::from),
                to: w.map(String::from),
            });
        }
    }
    out
}

/// The backup-job actions: create what is missing, update what differs (one action per job
/// listing each changed option), delete owned jobs no longer declared. Jobs without our
/// owner marker are never touched; a declared id taken by such a job is an error. Jobs
/// selecting a guest in `replaced` are re-asserted: destroying a guest (with `purge`)
/// removes it from every backup job, and Proxmox drops a job whose list becomes empty.
pub fn diff(
    desired: &[DesiredBackupJob],
    observed: &[ObservedBackupJob],
    lab: &str,
    replaced: &BTreeSet<u32>,
) -> Result<Vec<Action>, PlanError> {
    let by_id: BTreeMap<&str, &ObservedBackupJob> =
        observed.iter().map(|j| (j.id.as_str(), j)).collect();
    let mut out = Vec::new();
    for d in desired {
        match by_id.get(d.id.as_str()) {
            None => out.push(Action::CreateBackupJob {
                id: d.id.clone(),
                name: d.name.clone(),
                config: d.params.clone(),
            }),
            Some(h) if !h.owned_by(lab) => {
                return Err(PlanError::BackupJobClash {
                    id: d.id.clone(),
                    name: d.name.clone(),
                });
            }
            Some(h) => {
                let changes = changes(d, h);
                let purged: Vec<String> = d
                    .vmids
                    .iter()
                    .filter(|v| replaced.contains(v))
                    .map(u32::to_string)
                    .collect();
                let note = (!purged.is_empty()).then(|| {
                    format!(
                        "re-applied after replacing guest(s) {}, which removes them from backup jobs",
                        purged.join(", ")
                    )
                });
                if !changes.is_empty() || note.is_some() {
                    out.push(Action::UpdateBackupJob {
                        id: d.id.clone(),
                        name: d.name.clone(),
                        changes,
                        note,
                    });
                }
            }
        }
    }
    let want: BTreeSet<&str> = desired.iter().map(|d| d.id.as_str()).collect();
    for h in observed {
        if !want.contains(h.id.as_str()) && h.owned_by(lab) {
            out.push(Action::DeleteBackupJob {
                id: h.id.clone(),
                schedule: h.props.get("schedule").cloned(),
            });
        }
    }
    Ok(out)
}

// ------------------------------------------------------------------------------- text

fn quote(v: &str) -> String {
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        v.to_string()
    } else {
        format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// The plan text of a backup-job action (empty for other actions); `paint` colours the
/// `+`/`~`/`-` markers.
pub fn plan_text(a: &Action, paint: &dyn Fn(&str) -> String) -> String {
    let mut out = String::new();
    match a {
        Action::CreateBackupJob { id, name, config } => {
            let _ = writeln!(out, "  # backup job \"{id}\" will be created");
            let _ = writeln!(out, "  {} backup_job \"{name}\" {{", paint("+"));
            let width = config.keys().map(String::len).max().unwrap_or(0);
            for (k, v) in config {
                let _ = writeln!(out, "      {} {k:width$} = {}", paint("+"), quote(v));
            }
            out.push_str("    }\n");
        }
        Action::UpdateBackupJob {
            id,
            name,
            changes,
            note,
        } => {
            let _ = writeln!(out, "  # backup job \"{id}\" will be updated in place");
            let _ = writeln!(out, "  {} backup_job \"{name}\" {{", paint("~"));
            let width = changes.iter().map(|c| c.field.len()).max().unwrap_or(0);
            for c in changes {
                let (sym, value) = match (&c.from, &c.to) {
                    (None, Some(t)) => ("+", quote(t)),
                    (Some(f), None) => ("-", quote(f)),
                    (Some(f), Some(t)) => ("~", format!("{} -> {}", quote(f), quote(t))),
                    (None, None) => continue,
                };
                let _ = writeln!(out, "      {} {:width$} = {value}", paint(sym), c.field);
            }
            if let Some(n) = note {
                let _ = writeln!(out, "      # {n}");
            }
            out.push_str("    }\n");
        }
        Action::DeleteBackupJob { id, schedule } => {
            let when = schedule
                .as_deref()
                .map(|s| format!(" (schedule \"{s}\")"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  # backup job \"{id}\"{when} will be deleted; its backups are kept"
            );
            let _ = writeln!(out, "  {} backup_job \"{id}\"", paint("-"));
        }
        _ => {}
    }
    out
}

// ------------------------------------------------------------------------------- apply

/// The request parameters of a declared job.
pub fn params(d: &DesiredBackupJob) -> BackupJobParams {
    let p = &d.params;
    let flag = |k: &str| p.get(k).and_then(|v| bool_text(v)).map(|b| b == "1");
    let mut extra = Vec::new();
    if let Some(n) = p.get("notes-template") {
        extra.push(("notes-template".to_string(), ParamValue::Str(n.clone())));
    }
    BackupJobParams {
        schedule: p.get("schedule").cloned(),
        storage: p.get("storage").cloned(),
        vmid: d.vmids.clone(),
        all: flag("all").filter(|a| *a),
        mode: p.get("mode").cloned(),
        compress: p.get("compress").cloned(),
        enabled: flag("enabled"),
        prune_backups: p.get("prune-backups").cloned(),
        comment: p.get("comment").cloned(),
        node: p.get("node").cloned(),
        extra,
    }
}

/// Whether an error says job `id` itself is not there (already deleted, or dropped by
/// Proxmox when the last guest it listed was destroyed) — not that something the job
/// names (a storage, a pool) is missing.
pub fn is_missing(e: &proxmox_client::Error, id: &str) -> bool {
    e.is_backup_job_missing(id)
}

fn desired_job<'a>(env: &'a Env, id: &str) -> Result<&'a DesiredBackupJob, StepError> {
    env.desired
        .backups
        .iter()
        .find(|j| j.id == id)
        .ok_or_else(|| StepError::new(format!("backup job {id} is not declared")))
}

fn hint(e: StepError) -> StepError {
    e.hint("the token needs Sys.Modify on `/`, VM.Backup on the guests and Datastore.AllocateSpace on the storage (`homelab-cli proxmox token create` grants them)")
}

/// `POST /cluster/backup` for the declared job `id`.
pub async fn create(pve: &Client, d: &DesiredBackupJob) -> Result<String, StepError> {
    pve.backup_jobs()
        .create(Some(&d.id), &params(d))
        .await
        .map_err(|e| hint(StepError::new(format!("create backup job: {e}"))))?;
    Ok("created".into())
}

/// `PUT /cluster/backup/{id}` with every declared option, removing those no longer declared;
/// a job that vanished meanwhile is created again.
pub async fn update(
    pve: &Client,
    d: &DesiredBackupJob,
    changes: &[JobChange],
) -> Result<String, StepError> {
    let delete: Vec<&str> = changes
        .iter()
        .filter(|c| c.to.is_none())
        .map(|c| c.field.as_str())
        .collect();
    match pve.backup_jobs().update(&d.id, &params(d), &delete).await {
        Ok(()) => Ok(format!("{} change(s)", changes.len())),
        Err(e) if is_missing(&e, &d.id) => create(pve, d).await.map(|_| "re-created".into()),
        Err(e) => Err(hint(StepError::new(format!("update backup job: {e}")))),
    }
}

/// `DELETE /cluster/backup/{id}`; already gone is fine.
pub async fn delete(pve: &Client, id: &str) -> Result<String, StepError> {
    match pve.backup_jobs().delete(id).await {
        Ok(()) => Ok("deleted".into()),
        Err(e) if is_missing(&e, id) => Ok("already gone".into()),
        Err(e) => Err(hint(StepError::new(format!("delete backup job: {e}")))),
    }
}

/// The step for a backup-job action (`None` for other actions). A job waits for the guests
/// it lists, so that it names guests that exist and follows their re-creation.
pub fn step(env: Arc<Env>, a: &Action) -> Option<Step> {
    let after_guests = |id: &str| -> Vec<String> {
        env.desired
            .backups
            .iter()
            .find(|j| j.id == id)
            .map(|j| j.vmids.iter().map(|v| format!("guest:{v}")).collect())
            .unwrap_or_default()
    };
    Some(match a.clone() {
        Action::CreateBackupJob { id, .. } => Step {
            id: format!("backup:{id}"),
            label: format!("create backup job \"{id}\""),
            deps: after_guests(&id),
            run: async move {
                let d = desired_job(&env, &id)?;
                create(&env.pve, d).await
            }
            .boxed(),
        },
        Action::UpdateBackupJob { id, changes, .. } => Step {
            id: format!("backup:{id}"),
            label: format!("update backup job \"{id}\""),
            deps: after_guests(&id),
            run: async move {
                let d = desired_job(&env, &id)?;
                update(&env.pve, d, &changes).await
            }
            .boxed(),
        },
        Action::DeleteBackupJob { id, .. } => Step {
            id: format!("backup:{id}"),
            label: format!("delete backup job \"{id}\""),
            deps: vec![],
            run: async move { delete(&env.pve, &id).await }.boxed(),
        },
        _ => return None,
    })
}

/// The jobs homelab `lab` owns (for `down`; a token that may not list jobs finds none).
pub async fn owned(
    pve: &Client,
    lab: &str,
) -> Result<Vec<ObservedBackupJob>, proxmox_client::Error> {
    Ok(observe_for(pve, false)
        .await?
        .into_iter()
        .filter(|j| j.owned_by(lab))
        .collect())
}

/// A step deleting job `id` (for `down`).
pub fn delete_step(pve: Arc<Client>, id: String) -> Step {
    Step {
        id: format!("backup:{id}"),
        label: format!("delete backup job \"{id}\""),
        deps: vec![],
        run: async move { delete(&pve, &id).await }.boxed(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn desired(id: &str, params: &[(&str, &str)]) -> DesiredBackupJob {
        let params: BTreeMap<String, String> = params
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let vmids = params
            .get("vmid")
            .map(|v| v.split(',').map(|x| x.parse().unwrap()).collect())
            .unwrap_or_default();
        DesiredBackupJob {
            id: id.into(),
            name: id.trim_start_matches("homelab-home-").into(),
            vmids,
            params,
        }
    }

    fn nightly() -> DesiredBackupJob {
        desired(
            "homelab-home-nightly",
            &[
                ("comment", "homelab-cli:owner=home"),
                ("compress", "zstd"),
                ("enabled", "1"),
                ("mode", "snapshot"),
                ("prune-backups", "keep-daily=7,keep-last=3"),
                ("schedule", "02:30"),
                ("storage", "local"),
                ("vmid", "101,108"),
            ],
        )
    }

    /// What PVE 9 lists after creating `nightly` (objects for property strings, 0/1 for
    /// booleans, `next-run`, `type`, the vmid list as sent).
    fn as_listed() -> ObservedBackupJob {
        let job: proxmox_client::models::BackupJob = serde_json::from_value(serde_json::json!({
            "id": "homelab-home-nightly",
            "type": "vzdump",
            "schedule": "02:30",
            "storage": "local",
            "vmid": "108,101",
            "mode": "snapshot",
            "compress": "zstd",
            "enabled": 1,
            "prune-backups": {"keep-last": "3", "keep-daily": 7},
            "comment": "homelab-cli:owner=home",
            "next-run": 1_763_780_000,
        }))
        .unwrap();
        from_api(&job)
    }

    #[test]
    fn a_job_as_proxmox_lists_it_plans_nothing() {
        let h = as_listed();
        assert_eq!(h.props["prune-backups"], "keep-daily=7,keep-last=3");
        assert_eq!(h.props["enabled"], "1");
        let a = diff(
            &[nightly()],
            std::slice::from_ref(&h),
            "home",
            &BTreeSet::new(),
        )
        .unwrap();
        assert!(a.is_empty(), "{a:?}");
        // The same with prune-backups as a property string (older releases, the simulator).
        let mut s = h;
        s.props
            .insert("prune-backups".into(), "keep-last=3, keep-daily=7".into());
        s.props.remove("mode");
        assert!(
            diff(&[nightly()], &[s], "home", &BTreeSet::new())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn changed_fields_make_one_update_listing_each() {
        let mut h = as_listed();
        h.props.insert("schedule".into(), "03:00".into());
        h.props.insert("enabled".into(), "0".into());
        h.props.insert("notes-template".into(), "x".into());
        h.props.insert("mailto".into(), "root@localhost".into());
        let a = diff(&[nightly()], &[h], "home", &BTreeSet::new()).unwrap();
        let [
            Action::UpdateBackupJob {
                id, changes, note, ..
            },
        ] = &a[..]
        else {
            panic!("{a:?}")
        };
        assert_eq!(id, "homelab-home-nightly");
        assert!(note.is_none());
        let got: Vec<(&str, Option<&str>, Option<&str>)> = changes
            .iter()
            .map(|c| (c.field.as_str(), c.from.as_deref(), c.to.as_deref()))
            .collect();
        // `mailto` is not ours: left alone.
        assert_eq!(
            got,
            vec![
                ("enabled", Some("0"), Some("1")),
                ("notes-template", Some("x"), None),
                ("schedule", Some("03:00"), Some("02:30")),
            ]
        );
        let text = plan_text(&a[0], &|s| s.to_string());
        assert!(
            text.contains("~ schedule       = \"03:00\" -> \"02:30\""),
            "{text}"
        );
        assert!(text.contains("- notes-template = \"x\""), "{text}");
    }

    #[test]
    fn missing_jobs_are_created_and_undeclared_owned_ones_deleted() {
        let mut old = as_listed();
        old.id = "homelab-home-old".into();
        let mut foreign = as_listed();
        foreign.id = "backup-1234".into();
        foreign
            .props
            .insert("comment".into(), "made by hand".into());
        let mut other_lab = as_listed();
        other_lab.id = "homelab-work-nightly".into();
        other_lab
            .props
            .insert("comment".into(), "homelab-cli:owner=work".into());
        let a = diff(
            &[nightly()],
            &[foreign, old, other_lab],
            "home",
            &BTreeSet::new(),
        )
        .unwrap();
        assert!(
            matches!(
                &a[..],
                [
                    Action::CreateBackupJob { id: c, .. },
                    Action::DeleteBackupJob { id: d, schedule: Some(s) },
                ] if c == "homelab-home-nightly" && d == "homelab-home-old" && s == "02:30"
            ),
            "{a:?}"
        );
    }

    #[test]
    fn a_declared_id_held_by_a_foreign_job_is_refused() {
        let mut h = as_listed();
        h.props.insert("comment".into(), "mine".into());
        let e = diff(&[nightly()], &[h], "home", &BTreeSet::new()).unwrap_err();
        assert!(e.to_string().contains("homelab-home-nightly"), "{e}");
    }

    #[test]
    fn replacing_a_listed_guest_re_applies_the_job() {
        let a = diff(&[nightly()], &[as_listed()], "home", &BTreeSet::from([108])).unwrap();
        let [
            Action::UpdateBackupJob {
                changes,
                note: Some(n),
                ..
            },
        ] = &a[..]
        else {
            panic!("{a:?}")
        };
        assert!(changes.is_empty());
        assert!(n.contains("108"), "{n}");
        // A guest the job does not list: nothing.
        assert!(
            diff(&[nightly()], &[as_listed()], "home", &BTreeSet::from([200]))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn switching_between_a_list_and_all() {
        let mut all = nightly();
        all.params.remove("vmid");
        all.vmids.clear();
        all.params.insert("all".into(), "1".into());
        let a = diff(&[all.clone()], &[as_listed()], "home", &BTreeSet::new()).unwrap();
        let [Action::UpdateBackupJob { changes, .. }] = &a[..] else {
            panic!("{a:?}")
        };
        assert_eq!(changes.len(), 2);
        assert_eq!(
            (changes[0].field.as_str(), changes[0].to.as_deref()),
            ("all", Some("1"))
        );
        assert_eq!(
            (changes[1].field.as_str(), changes[1].to.as_deref()),
            ("vmid", None)
        );
        let p = params(&all);
        assert_eq!((p.all, p.vmid.len()), (Some(true), 0));
        // `all: 0` as listed reads as unset.
        let mut h = as_listed();
        h.props.insert("all".into(), "0".into());
        assert!(
            diff(&[nightly()], &[h], "home", &BTreeSet::new())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn params_carry_every_declared_option() {
        let mut d = nightly();
        d.params
            .insert("notes-template".into(), "{{guestname}}".into());
        let p = params(&d);
        assert_eq!(p.vmid, vec![101, 108]);
        assert_eq!(p.enabled, Some(true));
        assert_eq!(p.all, None);
        assert_eq!(p.prune_backups.as_deref(), Some("keep-daily=7,keep-last=3"));
        assert_eq!(p.extra.len(), 1);
        assert_eq!(p.extra[0].0, "notes-template");
    }
}
