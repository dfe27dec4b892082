//! Interrupted `up` (issue 18): SIGKILL the CLI while the simulated host is in the middle of
//! creating a guest (`--simulate`: the host dies with the process), then check that one
//! re-run converges: it succeeds, the plan that follows is empty, every declared guest exists
//! once, and no temporary file is left. `cargo xtask crashtest` runs the full sweep.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::Repo;

const SERVICES: &[&str] = &[
    "homelab.yaml",
    "demo-age-key.txt",
    ".sops.yaml",
    "secrets.enc.yaml",
];

const VM_FLEET: &[&str] = &[
    "homelab.yaml",
    "homelab.schema.json",
    "demo-age-key.txt",
    ".sops.yaml",
    "secrets.enc.yaml",
    "homelab.dev.yaml",
];

fn state_file(repo: &Repo) -> std::path::PathBuf {
    repo.dir.path().join(".homelab/sim/pve-state.json")
}

/// The simulated host's guests: VMID → its `lock`, if any.
fn guests(repo: &Repo) -> Vec<(u64, Option<String>)> {
    let Ok(text) = std::fs::read_to_string(state_file(repo)) else {
        return vec![];
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
        return vec![];
    };
    v["guests"]
        .as_object()
        .map(|m| {
            m.values()
                .map(|g| {
                    (
                        g["vmid"].as_u64().unwrap_or(0),
                        g["config"]["lock"].as_str().map(str::to_string),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Run `up --simulate --yes` and SIGKILL it as soon as `kill_now` holds for the persisted
/// host state (or when it has run for `at_most`). Whether it was killed (not finished).
fn up_killed_when(
    repo: &Repo,
    at_most: Duration,
    kill_now: impl Fn(&[(u64, Option<String>)]) -> bool,
) -> bool {
    let mut child = Command::new(env!("CARGO_BIN_EXE_homelab-cli"))
        .args(["up", "--simulate", "--yes", "-c"])
        .arg(repo.config())
        .current_dir(repo.dir.path())
        .env("HOME", repo.dir.path().join("home"))
        .env("NO_COLOR", "1")
        .env_remove("HOMELAB_ENV")
        .env_remove("SOPS_AGE_KEY_FILE")
        .env_remove("SOPS_AGE_KEY")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if kill_now(&guests(repo)) || start.elapsed() >= at_most {
            // SIGKILL: no destructor, no shutdown, no state flush.
            child.kill().unwrap();
            child.wait().unwrap();
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn temp_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for d in [dir.to_path_buf(), dir.join("output")] {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with(".homelab-tmp.") || n.starts_with(".tmp") {
                out.push(n);
            }
        }
    }
    out
}

/// One re-run converges: `up` succeeds, then `plan --detailed-exitcode` says no changes.
fn assert_converges(repo: &Repo, what: &str) {
    let up = repo.cli(&["up", "--simulate", "--yes"]);
    assert!(
        up.status.success(),
        "{what}: the re-run failed:\n{}{}",
        String::from_utf8_lossy(&up.stdout),
        String::from_utf8_lossy(&up.stderr)
    );
    let plan = repo.cli(&["plan", "--simulate", "--detailed-exitcode"]);
    assert_eq!(
        plan.status.code(),
        Some(0),
        "{what}: the plan after the re-run is not empty:\n{}",
        String::from_utf8_lossy(&plan.stdout)
    );
    let mut vmids: Vec<u64> = guests(repo).iter().map(|g| g.0).collect();
    let n = vmids.len();
    vmids.dedup();
    assert_eq!(vmids.len(), n, "{what}: duplicate guests");
    assert!(
        guests(repo).iter().all(|g| g.1.is_none()),
        "{what}: a guest is still locked: {:?}",
        guests(repo)
    );
    assert!(
        temp_files(repo.dir.path()).is_empty(),
        "{what}: temporary files left: {:?}",
        temp_files(repo.dir.path())
    );
}

/// Kill `up` as soon as the simulated host holds a `lock: create` placeholder; its VMIDs.
fn kill_during_create(repo: &Repo) -> Vec<u64> {
    let killed = up_killed_when(repo, Duration::from_secs(60), |g| {
        g.iter().any(|(_, lock)| lock.as_deref() == Some("create"))
    });
    assert!(killed, "up finished before any create started");
    let left = guests(repo);
    let placeholders: Vec<u64> = left
        .iter()
        .filter(|(_, l)| l.as_deref() == Some("create"))
        .map(|g| g.0)
        .collect();
    assert!(!placeholders.is_empty(), "{left:?}");
    placeholders
}

#[test]
fn a_container_left_locked_by_a_killed_create_is_explained_then_recreated() {
    let repo = Repo::copy("services", SERVICES);
    let placeholders = kill_during_create(&repo);

    // No API call removes a locked container: the plan shows the evidence and says what to
    // run (the simulated node's `pct unlock`), touching nothing.
    let plan = repo.cli(&["plan", "--simulate"]);
    let text = String::from_utf8_lossy(&plan.stderr);
    assert_eq!(plan.status.code(), Some(1), "{text}");
    assert!(text.contains("holds only `lock: create`"), "{text}");
    let vmid = placeholders[0];
    assert!(
        text.contains(&format!("homelab-cli sim unlock {vmid} --state")),
        "{text}"
    );
    for v in &placeholders {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_homelab-cli"))
            .args(["sim", "unlock", &v.to_string(), "--state"])
            .arg(state_file(&repo).parent().unwrap())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    // Unlocked, the empty guest is ours to replace, with the evidence shown.
    let plan = repo.cli(&["plan", "--simulate"]);
    let text = String::from_utf8_lossy(&plan.stdout);
    assert!(plan.status.success(), "{text}");
    assert!(text.contains("has an empty configuration"), "{text}");
    assert_converges(&repo, "container create killed, then unlocked");
}

#[test]
fn a_vm_left_locked_by_a_killed_create_is_recreated_in_one_run() {
    let repo = Repo::copy("vm-fleet", VM_FLEET);
    kill_during_create(&repo);
    let plan = repo.cli(&["plan", "--simulate"]);
    let text = String::from_utf8_lossy(&plan.stdout);
    assert!(plan.status.success(), "{text}");
    assert!(text.contains("holds only `lock: create`"), "{text}");
    assert!(text.contains("must be replaced"), "{text}");
    assert_converges(&repo, "VM create killed");
}

#[test]
fn killed_at_timed_points_every_rerun_converges() {
    for ms in [150u64, 900] {
        let repo = Repo::copy("vm-fleet", VM_FLEET);
        up_killed_when(&repo, Duration::from_millis(ms), |_| false);
        assert_converges(&repo, &format!("kill after {ms} ms"));
    }
}

#[test]
fn a_leftover_temp_file_is_removed_by_the_next_run() {
    let repo = Repo::copy("services", SERVICES);
    let stray = repo.dir.path().join(".homelab-tmp.AbC123");
    std::fs::write(&stray, b"ENC[...]").unwrap();
    let out = repo.cli(&["check", "--offline"]);
    assert!(out.status.success(), "{out:?}");
    assert!(!stray.exists(), "the stray temporary file is still there");
}

/// `up` under injected faults: answers lost after the work was done and connections reset
/// before it, on every kind of write, then a config lock timeout; the first run succeeds and
/// the plan after it is empty.
#[test]
fn up_succeeds_in_one_run_under_lost_answers_and_resets() {
    let repo = Repo::copy("services", SERVICES);
    let faults = "drop-next=/nodes/pve/lxc:3,reset-next=/nodes/pve/lxc:3,\
drop-next=/status/start:2,reset-next=/cluster/backup:1,drop-next=/cluster/backup:1,\
drop-next=/download-url:1,drop-next=/cluster/resources:1,lock-timeouts=1";
    let up = repo.run(
        &["up", "--simulate", "--yes"],
        repo.config().to_str().unwrap(),
        &[("HOMELAB_SIM_FAULTS", faults)],
    );
    let err = String::from_utf8_lossy(&up.stderr);
    assert!(up.status.success(), "{err}");
    assert!(err.contains("the answer was lost"), "{err}");
    assert!(err.contains("sending the request again"), "{err}");
    let plan = repo.cli(&["plan", "--simulate", "--detailed-exitcode"]);
    assert_eq!(
        plan.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&plan.stdout)
    );
    let mut vmids: Vec<u64> = guests(&repo).iter().map(|g| g.0).collect();
    let n = vmids.len();
    vmids.dedup();
    assert_eq!(vmids.len(), n);
}

#[test]
fn a_bad_fault_profile_is_refused_with_the_grammar() {
    let repo = Repo::copy("services", SERVICES);
    let out = repo.run(
        &["plan", "--simulate"],
        repo.config().to_str().unwrap(),
        &[("HOMELAB_SIM_FAULTS", "resets=2")],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("HOMELAB_SIM_FAULTS"), "{err}");
    assert!(err.contains("between 0 and 1"), "{err}");
}
