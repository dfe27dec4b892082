//! vzdump backup jobs (issue 7): declared in homelab.yaml, reconciled by plan/up/down on
//! the simulated lab, with jobs made by hand left alone.

#![allow(clippy::unwrap_used, clippy::panic)]

use crate::common::Repo;
use homelab_cli::engine::backups::{self, ObservedBackupJob};
use proxmox_client::requests::BackupJobParams;

const JOB: &str = "homelab-bk-nightly";
const FOREIGN: &str = "manual-weekly";

const BASE: &str = "name: bk

secrets:
  file: secrets.enc.yaml
  age_key_file: demo-age-key.txt

proxmox:
  endpoint: ${secret:proxmox.endpoint}
  token_id: ${secret:proxmox.token_id}
  token_secret: ${secret:proxmox.token_secret}
  node: pve
  storage: local-lvm

lxc:
  defaults:
    template: http://download.proxmox.com/images/system/debian-12-standard_12.7-1_amd64.tar.zst
  containers:
    - name: postgresql
      vmid: 101
      tags: [database]
    - name: mongodb
      vmid: 102
      tags: [database]
    - name: gitea
      vmid: 108
      tags: [dev]
";

const NIGHTLY: &str = "
backups:
  - name: nightly
    schedule: \"02:30\"
    storage: local
    keep: { last: 3, daily: 7 }
    guests: [gitea]
    tags: [database]
    notes: \"{{guestname}} on {{node}}\"
    comment: databases and git
";

fn repo(yaml: &str) -> Repo {
    let r = Repo::copy(
        "services",
        &["demo-age-key.txt", ".sops.yaml", "secrets.enc.yaml"],
    );
    r.write(yaml);
    r
}

/// `plan --detailed-exitcode`: its exit code and text.
fn plan_exit(repo: &Repo) -> (Option<i32>, String) {
    let out = repo.cli(&["plan", "--simulate", "--detailed-exitcode"]);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The backup jobs the simulated lab has.
/// The lab's backup jobs, without `next-run`: Proxmox computes it from the clock on every
/// read, so it moves on by itself when a scheduled time passes during the test.
fn lab_jobs(repo: &Repo) -> Vec<ObservedBackupJob> {
    let mut jobs = repo.with_lab(async |s| backups::observe(&s.pve).await.unwrap());
    for j in &mut jobs {
        j.props.remove("next-run");
    }
    jobs
}

/// The plan text's paragraphs about backup jobs.
fn job_blocks(text: &str) -> String {
    text.split("\n\n")
        .filter(|b| b.contains("backup_job"))
        .collect::<Vec<_>>()
        .join("\n\n")
}

#[test]
fn backup_job_lifecycle_on_the_simulated_lab() {
    let repo = repo(&format!("{BASE}{NIGHTLY}"));
    // A job made by hand (no owner marker) before homelab-cli runs.
    repo.with_lab(async |s| {
        s.pve
            .backup_jobs()
            .create(
                Some(FOREIGN),
                &BackupJobParams {
                    schedule: Some("sun 04:00".into()),
                    storage: Some("local".into()),
                    vmid: vec![101],
                    comment: Some("made by hand".into()),
                    ..BackupJobParams::default()
                },
            )
            .await
            .unwrap();
    });
    let foreign_before = lab_jobs(&repo)
        .into_iter()
        .find(|j| j.id == FOREIGN)
        .unwrap();

    // Fresh: the job is created after the containers it lists.
    let (code, text) = plan_exit(&repo);
    assert_eq!(code, Some(2));
    insta::assert_snapshot!("backups_plan_create", job_blocks(&text));
    assert!(
        text.contains("Plan: 5 to add, 0 to change, 0 to replace, 0 to destroy."),
        "{text}"
    );
    let up = repo.json(&["up", "--simulate", "--yes", "-o", "json"]);
    assert_eq!(up["simulated_requests"]["schema_rejected"], 0, "{up:#}");
    let steps = up["steps"].as_array().unwrap();
    assert!(steps.iter().all(|s| s["outcome"] == "done"), "{up:#}");
    let step = steps
        .iter()
        .find(|s| s["id"] == format!("backup:{JOB}"))
        .unwrap();
    assert_eq!(
        step["deps"],
        serde_json::json!(["guest:101", "guest:102", "guest:108"])
    );

    // What Proxmox holds now.
    let jobs = lab_jobs(&repo);
    let job = jobs.iter().find(|j| j.id == JOB).unwrap();
    assert_eq!(job.props["vmid"], "101,102,108");
    assert_eq!(job.props["schedule"], "02:30");
    assert_eq!(
        backups::canon(
            "prune-backups",
            job.props.get("prune-backups").map(String::as_str)
        )
        .as_deref(),
        Some("keep-daily=7,keep-last=3")
    );
    assert_eq!(
        job.props["comment"],
        "databases and git homelab-cli:owner=bk"
    );
    assert_eq!(job.props["notes-template"], "{{guestname}} on {{node}}");
    assert_eq!(job.props["compress"], "zstd");
    assert_eq!(job.props["mode"], "snapshot");
    assert_eq!(job.props["enabled"], "1");

    // Re-run: nothing to do, not a single write.
    let (code, text) = plan_exit(&repo);
    assert_eq!(code, Some(0), "{text}");
    let again = repo.json(&["up", "--simulate", "-o", "json"]);
    assert_eq!(again["plan"]["actions"], serde_json::json!([]), "{again:#}");
    assert_eq!(again["simulated_requests"]["mutating"], 0, "{again:#}");

    // Schedule and retention change: one update listing both.
    let changed = format!("{BASE}{NIGHTLY}")
        .replace("\"02:30\"", "\"sat 03:15\"")
        .replace("daily: 7", "daily: 14");
    repo.write(&changed);
    let (code, text) = plan_exit(&repo);
    assert_eq!(code, Some(2));
    insta::assert_snapshot!("backups_plan_update", job_blocks(&text));
    assert!(
        text.contains("Plan: 0 to add, 1 to change, 0 to replace, 0 to destroy."),
        "{text}"
    );
    let plan = repo.json(&["plan", "--simulate", "-o", "json"]);
    assert_eq!(
        plan["actions"],
        serde_json::json!([{
            "action": "update_backup_job",
            "id": JOB,
            "name": "nightly",
            "changes": [
                {"field": "prune-backups", "from": "keep-daily=7,keep-last=3", "to": "keep-daily=14,keep-last=3"},
                {"field": "schedule", "from": "02:30", "to": "sat 03:15"}
            ]
        }]),
        "{plan:#}"
    );
    let up = repo.json(&["up", "--simulate", "-o", "json"]);
    assert_eq!(up["steps"].as_array().unwrap().len(), 1, "{up:#}");
    assert_eq!(up["steps"][0]["outcome"], "done", "{up:#}");
    let (code, text) = plan_exit(&repo);
    assert_eq!(code, Some(0), "{text}");

    // Replacing a listed container (`purge` drops it from every job) re-applies the job in
    // the same run, so the next plan is empty.
    let replaced = changed.replace(
        "    - name: gitea\n      vmid: 108\n",
        "    - name: gitea\n      vmid: 108\n      unprivileged: false\n",
    );
    repo.write(&replaced);
    let (code, text) = plan_exit(&repo);
    assert_eq!(code, Some(2));
    assert!(text.contains("must be replaced"), "{text}");
    assert!(
        text.contains("# re-applied after replacing guest(s) 108"),
        "{text}"
    );
    let up = repo.json(&["up", "--simulate", "--yes", "-o", "json"]);
    assert!(
        up["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["outcome"] == "done"),
        "{up:#}"
    );
    let (code, text) = plan_exit(&repo);
    assert_eq!(code, Some(0), "{text}");
    let jobs = lab_jobs(&repo);
    assert_eq!(
        jobs.iter().find(|j| j.id == JOB).unwrap().props["vmid"],
        "101,102,108"
    );

    // Removed from the file: deleted; the hand-made job stays as it was.
    let without = replaced.split("\nbackups:").next().unwrap();
    repo.write(without);
    let (code, text) = plan_exit(&repo);
    assert_eq!(code, Some(2));
    insta::assert_snapshot!("backups_plan_delete", job_blocks(&text));
    let up = repo.json(&["up", "--simulate", "--yes", "-o", "json"]);
    assert_eq!(up["steps"].as_array().unwrap().len(), 1, "{up:#}");
    let (code, text) = plan_exit(&repo);
    assert_eq!(code, Some(0), "{text}");
    let jobs = lab_jobs(&repo);
    assert!(jobs.iter().all(|j| j.id != JOB), "{jobs:?}");
    let foreign = jobs.iter().find(|j| j.id == FOREIGN).unwrap();
    assert_eq!(*foreign, foreign_before);

    // down deletes our jobs with the guests, never the foreign one.
    repo.write(&replaced);
    let up = repo.json(&["up", "--simulate", "--yes", "-o", "json"]);
    assert_eq!(up["steps"].as_array().unwrap().len(), 1, "{up:#}");
    let down = repo.json(&["down", "--simulate", "--yes", "-o", "json"]);
    assert_eq!(
        down["backup_jobs_deleted"],
        serde_json::json!([JOB]),
        "{down:#}"
    );
    assert_eq!(down["destroyed"].as_array().unwrap().len(), 3, "{down:#}");
    let jobs = lab_jobs(&repo);
    assert_eq!(
        jobs.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(),
        vec![FOREIGN],
        "{jobs:?}"
    );
}

#[test]
fn a_hand_made_job_holding_our_id_stops_the_plan() {
    let repo = repo(&format!("{BASE}{NIGHTLY}"));
    repo.with_lab(async |s| {
        s.pve
            .backup_jobs()
            .create(
                Some(JOB),
                &BackupJobParams {
                    schedule: Some("daily".into()),
                    all: Some(true),
                    ..BackupJobParams::default()
                },
            )
            .await
            .unwrap();
    });
    let out = repo.cli(&["plan", "--simulate"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("needs the id {JOB}")), "{err}");
    assert!(err.contains("this homelab does not manage"), "{err}");
    assert!(err.contains("rename the job in homelab.yaml"), "{err}");
}

#[test]
fn an_unknown_guest_is_reported_at_its_list_item() {
    let repo = repo(&format!("{BASE}{NIGHTLY}").replace("[gitea]", "[gitea, redis]"));
    let out = repo.cli(&["plan", "--simulate"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no guest named `redis` is declared"), "{err}");
    assert!(err.contains("homelab.yaml:33:21"), "{err}");
    assert!(
        err.contains("declared guests: gitea, mongodb, postgresql"),
        "{err}"
    );
}

#[test]
fn a_token_that_cannot_list_jobs_plans_none_unless_some_are_declared() {
    let repo = repo(BASE);
    repo.with_lab(async |s| {
        let access = s.pve.access();
        access
            .create_user(&proxmox_client::requests::UserCreate {
                userid: "vmonly@pve".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        access.create_role("VMOnly", &["VM.Audit"]).await.unwrap();
        let token = access
            .create_token("vmonly@pve", "ro", false, None)
            .await
            .unwrap();
        access
            .update_acl(&proxmox_client::requests::AclUpdate {
                path: "/vms".into(),
                roles: vec!["VMOnly".into()],
                users: vec!["vmonly@pve".into()],
                ..Default::default()
            })
            .await
            .unwrap();
        let p = &s.desired.proxmox;
        let client = proxmox_client::Client::builder()
            .base_url(&p.endpoint)
            .api_token(
                &token.full_tokenid,
                secrecy::ExposeSecret::expose_secret(&token.value),
            )
            .pin_fingerprint(p.fingerprint.as_deref().unwrap())
            .build()
            .unwrap();
        // No Sys.Audit on `/`: the list is refused...
        let e = backups::observe(&client).await.unwrap_err();
        assert!(matches!(e, proxmox_client::Error::Permission { .. }), "{e}");
        // ...which, with no job declared, means nothing to reconcile,
        assert!(
            backups::observe_for(&client, false)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(backups::owned(&client, "bk").await.unwrap().is_empty());
        // and with jobs declared stays an error.
        assert!(backups::observe_for(&client, true).await.is_err());
    });
}
