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

/// A separate `homelab-cli sim serve` a repository is pointed at (stopped on drop), and a
/// loopback mirror for the OS template (the simulated node has no internet).
struct Served {
    child: std::process::Child,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every GET or HEAD answered with the same small file.
fn mirror() -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(&stream);
                let mut request = String::new();
                if reader.read_line(&mut request).is_err() {
                    return;
                }
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let body = b"crash test mirror file\n";
                let mut w = &stream;
                let _ = write!(
                    w,
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                if !request.starts_with("HEAD") {
                    let _ = w.write_all(body);
                }
            });
        }
    });
    format!("http://{addr}/")
}

/// Start `sim serve` and point the repository at it: endpoint, token and root password in
/// the encrypted secrets (`secrets set`), the certificate pinned in homelab.yaml.
fn serve_for(repo: &Repo) -> Served {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_homelab-cli"))
        .args(["sim", "serve", "--listen", "127.0.0.1:0", "--state"])
        .arg(repo.dir.path().join(".serve"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let served = Served { child };
    let b: serde_json::Value = serde_json::from_str(&line).unwrap();
    let key = repo.dir.path().join("demo-age-key.txt");
    for (path, field) in [
        ("endpoint", "endpoint"),
        ("token_id", "token_id"),
        ("token_secret", "token_secret"),
        ("root_password", "root_password"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_homelab-cli"))
            .args(["secrets", "set", "secrets.enc.yaml"])
            .arg(format!(r#"["proxmox"]["{path}"]"#))
            .arg(b[field].to_string())
            .current_dir(repo.dir.path())
            .env("SOPS_AGE_KEY_FILE", &key)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    let fp = b["fingerprint"].as_str().unwrap();
    repo.edit(
        "\n  node: pve\n",
        &format!("\n  node: pve\n  fingerprint: \"{fp}\"\n"),
    );
    repo.edit("http://download.proxmox.com/", &mirror());
    served
}

/// One re-run against the server converges: `up` succeeds, the plan straight after it is
/// empty, `status` lists every declared guest once, running.
fn assert_converges_served(repo: &Repo, what: &str) {
    let up = repo.cli(&["up", "--yes"]);
    assert!(
        up.status.success(),
        "{what}: the re-run failed:\n{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let plan = repo.cli(&["plan", "--detailed-exitcode"]);
    assert_eq!(
        plan.status.code(),
        Some(0),
        "{what}: the plan after the re-run is not empty:\n{}",
        String::from_utf8_lossy(&plan.stdout)
    );
    let status = repo.json(&["status", "-o", "json"]);
    let guests = status["guests"].as_array().unwrap();
    let mut names: Vec<&str> = guests.iter().map(|g| g["name"].as_str().unwrap()).collect();
    assert!(
        guests.iter().all(|g| g["status"] == "running"),
        "{what}: {status:#}"
    );
    let n = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), n, "{what}: a guest twice: {status:#}");
    assert_eq!(
        status["missing"],
        serde_json::json!([]),
        "{what}: {status:#}"
    );
    assert!(
        temp_files(repo.dir.path()).is_empty(),
        "{what}: temporary files left"
    );
}

/// Against a separate `sim serve` the host survives the client: `up` killed while its
/// container creates still run on the host, then re-run at once, meets them in flight (and
/// `/cluster/resources` still showing them as pvestatd last saw them). The re-run waits for
/// them, starts what they left stopped, and the plan after it is empty.
#[test]
fn against_a_separate_server_a_killed_up_converges_in_one_rerun() {
    for steps in [4usize, 9] {
        let repo = Repo::copy("services", SERVICES);
        let _served = serve_for(&repo);
        let mut child = Command::new(env!("CARGO_BIN_EXE_homelab-cli"))
            .args(["up", "--yes", "-c"])
            .arg(repo.config())
            .current_dir(repo.dir.path())
            .env("HOME", repo.dir.path().join("home"))
            .env("NO_COLOR", "1")
            .env_remove("HOMELAB_ENV")
            .env_remove("SOPS_AGE_KEY_FILE")
            .env_remove("SOPS_AGE_KEY")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Step lines (`✓ ...`) go to stderr as each step ends.
        use std::io::{BufRead, BufReader};
        let mut done = 0;
        for line in BufReader::new(child.stderr.take().unwrap())
            .lines()
            .map_while(Result::ok)
        {
            if line.starts_with('✓') {
                done += 1;
                if done == steps {
                    break;
                }
            }
        }
        // SIGKILL: no destructor, no shutdown; the server keeps its tasks running.
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(done, steps, "up ended before step {steps}");
        assert_converges_served(&repo, &format!("killed after step {steps}"));
    }
}

/// Under the named fault profiles `flaky` (10% of connections reset, 10% of answers lost
/// after the work was done), `errors` (10% of reads answer 503) and `locks` (config and
/// storage lock timeouts), the first `up` succeeds and the plan after it is empty.
#[test]
fn up_succeeds_in_one_run_under_the_named_fault_profiles() {
    for profile in ["flaky", "errors", "locks"] {
        let repo = Repo::copy("services", SERVICES);
        let env = [("HOMELAB_SIM_FAULTS", profile)];
        let config = repo.config();
        let up = repo.run(
            &["up", "--simulate", "--yes"],
            config.to_str().unwrap(),
            &env,
        );
        assert!(
            up.status.success(),
            "{profile}: {}",
            String::from_utf8_lossy(&up.stderr)
        );
        let plan = repo.run(
            &["plan", "--simulate", "--detailed-exitcode"],
            config.to_str().unwrap(),
            &env,
        );
        assert_eq!(
            plan.status.code(),
            Some(0),
            "{profile}: {}",
            String::from_utf8_lossy(&plan.stdout)
        );
    }
}

/// An outage (`offline=pve`: the node answers 595, as pveproxy does for an unreachable
/// node) fails the first `up` quickly, naming the node, and touches nothing.
#[test]
fn up_under_an_outage_fails_naming_the_node() {
    let repo = Repo::copy("services", SERVICES);
    let config = repo.config();
    let up = repo.run(
        &["up", "--simulate", "--yes"],
        config.to_str().unwrap(),
        &[("HOMELAB_SIM_FAULTS", "offline=pve")],
    );
    let err = crate::common::flat(&up.stderr);
    assert_eq!(up.status.code(), Some(1), "{err}");
    assert!(err.contains("node unreachable (595)"), "{err}");
    assert!(err.contains("on pve"), "{err}");
}

const SINGLE_NODE: &[&str] = &["homelab.yaml", "demo-age-key.txt", "secrets.enc.yaml"];

/// The Talos secrets bundle of a running cluster is never regenerated: without it, `plan`
/// and `up` refuse and say how to restore it or start over, and write no new bundle. A
/// bundle from elsewhere (the node's certificate fails our CA's signature check,
/// `BadSignature`) is refused by the plan too, before anything changes.
#[test]
fn a_lost_or_foreign_talos_bundle_is_refused_never_regenerated() {
    let repo = Repo::copy("single-node", SINGLE_NODE);
    // Its own loopback addresses: other tests run the single-node example at the same time.
    for (key, ip) in [("node_ip", "127.218.18.11"), ("gateway", "127.218.18.1")] {
        let out = Command::new(env!("CARGO_BIN_EXE_homelab-cli"))
            .args(["secrets", "set", "secrets.enc.yaml"])
            .arg(format!(r#"["network"]["{key}"]"#))
            .arg(format!("\"{ip}\""))
            .current_dir(repo.dir.path())
            .env(
                "SOPS_AGE_KEY_FILE",
                repo.dir.path().join("demo-age-key.txt"),
            )
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    repo.up_ok(&[]);
    let bundle = repo.dir.path().join("talos-secrets.enc.yaml");
    let kept = repo.dir.path().join("kept-bundle.enc.yaml");
    std::fs::rename(&bundle, &kept).unwrap();

    // `plan` and `up` both fail (exit 1) before changing anything, saying all of `says`.
    let refused = |says: &[&str]| {
        for cmd in [
            &["plan", "--simulate"][..],
            &["up", "--simulate", "--yes"][..],
        ] {
            let out = repo.cli(cmd);
            let err = crate::common::flat(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{cmd:?}: {err}");
            for s in says {
                assert!(err.contains(s), "{cmd:?}: {s}: {err}");
            }
            assert!(!err.contains("waiting for"), "{cmd:?}: {err}");
        }
    };
    refused(&[
        "talos-secrets.enc.yaml is missing",
        "200 \"talos-cp-1\"",
        "restore the file from git history",
        "destroy its nodes",
    ]);
    assert!(!bundle.exists(), "a new bundle was written");

    // A bundle that is not the cluster's: a fresh one, encrypted to the same key.
    let key = std::fs::read_to_string(repo.dir.path().join("demo-age-key.txt")).unwrap();
    let recipient = key
        .split_whitespace()
        .find(|w| w.starts_with("age1"))
        .unwrap()
        .to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_homelab-cli"))
        .args(["talos", "gen", "secrets", "-o"])
        .arg(&bundle)
        .args(["--encrypt", "--age", &recipient])
        .current_dir(repo.dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // Refused by the plan already (the node's certificate fails our CA's signature check
    // when the plan reads its version): nothing is changed, no wait is started.
    refused(&[
        "talos-secrets.enc.yaml does not belong to this cluster",
        "200 \"talos-cp-1\" present a certificate its CA did not sign",
        "restore the cluster's own bundle",
    ]);

    // The real bundle back: converged, nothing to do.
    std::fs::rename(&kept, &bundle).unwrap();
    repo.assert_converged(&[]);
}

/// The same outage where a VM passes a host PCI device through: the plan cannot read the
/// node's devices and says the node is not online (not that the device does not exist).
#[test]
fn an_outage_is_named_before_pci_passthrough_is_judged() {
    let repo = Repo::copy("vm-fleet", VM_FLEET);
    let config = repo.config();
    let plan = repo.run(
        &["plan", "--simulate"],
        config.to_str().unwrap(),
        &[("HOMELAB_SIM_FAULTS", "offline=pve")],
    );
    let err = crate::common::flat(&plan.stderr);
    assert_eq!(plan.status.code(), Some(1), "{err}");
    assert!(err.contains("node pve is not online"), "{err}");
    assert!(!err.contains("does not exist on node"), "{err}");
}

/// The re-run of an interrupted `up` met `checksum mismatch` when the interrupted run's
/// configuration change, still under way when the plan was read, had ended by the time the
/// update was sent (the vm-fleet sweep, killed after step 12). Such a change is told apart
/// from one somebody made after the plan: only the first lets the planned change go over it.
#[tokio::test]
async fn a_change_under_way_at_plan_time_is_told_from_a_later_one() {
    use homelab_cli::engine::recover::ended_since;
    use proxmox_client::{ParamValue, Upid, WaitOptions};
    let lab = homelab_sim::lab::Lab::builder()
        .task_duration(Duration::from_millis(1500))
        .start()
        .await
        .unwrap();
    let c = proxmox_client::Client::builder()
        .base_url(lab.pve_url())
        .api_token(lab.token_id(), lab.token_secret())
        .pin_fingerprint(lab.fingerprint())
        .build()
        .unwrap();
    let wait = WaitOptions {
        initial_interval: Duration::from_millis(50),
        max_interval: Duration::from_millis(200),
        deadline: Duration::from_secs(30),
    };
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let memory = async |mib: i64| -> Upid {
        c.post(
            "/nodes/pve/qemu/400/config",
            &[("memory", ParamValue::Int(mib))],
        )
        .await
        .unwrap()
    };
    let created: Upid = c
        .post(
            "/nodes/pve/qemu",
            &[
                ("vmid", ParamValue::Int(400)),
                ("memory", ParamValue::Int(512)),
            ],
        )
        .await
        .unwrap();
    c.wait_task(&created, &wait).await.unwrap();

    // The interrupted run's change starts, then the re-run's plan is read.
    let change = memory(1024).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let read_at = now();
    assert!(
        !ended_since(&c, "pve", 400, read_at).await.unwrap(),
        "still running"
    );
    c.wait_task(&change, &wait).await.unwrap();
    assert!(ended_since(&c, "pve", 400, read_at).await.unwrap());
    // No plan time known: nothing is taken for granted.
    assert!(!ended_since(&c, "pve", 400, 0).await.unwrap());

    // A plan read after that change ended, then a change somebody makes after the plan.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let read_at = now();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let other = memory(2048).await;
    c.wait_task(&other, &wait).await.unwrap();
    assert!(!ended_since(&c, "pve", 400, read_at).await.unwrap());
    lab.shutdown().await;
}
