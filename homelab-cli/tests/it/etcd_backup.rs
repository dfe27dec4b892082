//! etcd snapshots and disaster recovery (issue 14) on the simulated lab, with the real
//! `kubectl` and `age` binaries: objects created before a snapshot survive `down` and
//! `up --restore-etcd`; the snapshot is an age file the real `age` decrypts; no plaintext
//! snapshot byte reaches the disk; the retention count; bad restore inputs are refused
//! before anything changes.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{flat, skip_or_fail};
use crate::lab::e2e::Repo;

/// `kubectl ARGS` against the lab (HOME inside the repository, so its cache is scanned
/// too). `None` when kubectl is not installed (then the caller skips, or fails in CI).
fn kubectl(repo: &Repo, kubeconfig: &Path, args: &[&str]) -> Option<Output> {
    let out = Command::new("kubectl")
        .args([
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--request-timeout=30s",
        ])
        .args(args)
        .env("HOME", repo.path("home"))
        .output()
        .ok()?;
    eprintln!(
        "$ kubectl {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(out)
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Run `f` while the repository's simulated lab serves (the Kubernetes API for kubectl).
fn with_lab<T>(repo: &Repo, f: impl FnOnce() -> T) -> T {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let lab = rt
        .block_on(homelab_cli::simlab::SimLab::start(
            &repo.path(".homelab/sim"),
            &homelab_cli::simlab::SimOptions::default(),
        ))
        .unwrap();
    let kc = std::fs::read_to_string(repo.path("home/kubeconfig")).unwrap();
    rt.block_on(async {
        let opts = talos_api::health::WaitOptions::new(std::time::Duration::from_secs(60))
            .interval(std::time::Duration::from_millis(200));
        talos_api::health::wait_kubernetes_ready(&kc, &opts).await
    })
    .unwrap();
    let r = f();
    rt.block_on(lab.shutdown());
    r
}

/// The admin kubeconfig `up` wrote (SOPS), decrypted with the demo key into HOME (0600).
fn write_kubeconfig(repo: &Repo) -> PathBuf {
    let mut ids = sops_age::Identities::new();
    ids.add_file(&repo.path("demo-age-key.txt")).unwrap();
    let plain = sops_age::decrypt(
        &std::fs::read(repo.path("output/kubeconfig.enc.yaml")).unwrap(),
        sops_age::Format::Yaml,
        &ids,
    )
    .unwrap();
    let path = repo.path("home/kubeconfig");
    talos_api::talosconfig::write_private(&path, &plain).unwrap();
    path
}

/// Every file under `root` (not following links) whose bytes contain `needle`.
fn files_containing(root: &Path, needle: &[u8], skip: &[PathBuf]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if skip.iter().any(|s| p.starts_with(s)) {
                continue;
            }
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file()
                && let Ok(data) = std::fs::read(&p)
                && data.windows(needle.len()).any(|w| w == needle)
            {
                hits.push(p);
            }
        }
    }
    hits
}

/// The snapshot files in `dir`, sorted.
fn snapshots(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// `homelab-cli ARGS -c homelab.yaml` with TMPDIR pointed into the test's own directory (so
/// the scan below covers whatever the CLI puts in temporary files).
fn cli(repo: &Repo, tmp: &Path, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_homelab-cli"))
        .args(args)
        .args(["-c", repo.path("homelab.yaml").to_str().unwrap()])
        .current_dir(repo.dir.path())
        .env("HOME", repo.path("home"))
        .env("TMPDIR", tmp)
        .env("NO_COLOR", "1")
        .env_remove("TALOSCONFIG")
        .env_remove("KUBECONFIG")
        .env_remove("SOPS_AGE_KEY_FILE")
        .env_remove("SOPS_AGE_KEY")
        .output()
        .unwrap();
    eprintln!(
        "$ homelab-cli {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn snapshot_down_and_restore_keep_kubernetes_objects_without_plaintext_on_disk() {
    if Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_err()
    {
        skip_or_fail("kubectl is not installed; the etcd disaster-recovery test needs it");
        return;
    }
    if Command::new("age").arg("--version").output().is_err() {
        skip_or_fail("age is not installed; the etcd disaster-recovery test needs it");
        return;
    }
    let repo = Repo::new("single-node", 63, 11);
    let tmp = repo.path("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    // A value only the ConfigMap holds: wherever it shows up, snapshot plaintext leaked.
    let marker = format!("etcd-dr-marker-{:016x}", rand::random::<u64>());

    let up = repo.json(&["up", "--simulate", "--yes", "-o", "json"]);
    assert!(
        up["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["outcome"] == "done"),
        "{up:#}"
    );
    let kubeconfig = write_kubeconfig(&repo);

    // Objects through a real kubectl (discovery, create, get).
    with_lab(&repo, || {
        ok(&kubectl(&repo, &kubeconfig, &["create", "namespace", "apps"]).unwrap());
        ok(&kubectl(
            &repo,
            &kubeconfig,
            &[
                "create",
                "configmap",
                "dr-check",
                "-n",
                "apps",
                &format!("--from-literal=marker={marker}"),
            ],
        )
        .unwrap());
        ok(&kubectl(
            &repo,
            &kubeconfig,
            &[
                "create",
                "secret",
                "generic",
                "dr-secret",
                "-n",
                "apps",
                "--from-literal=k=v",
            ],
        )
        .unwrap());
        // Refusals as kube-apiserver words them.
        let dup = kubectl(&repo, &kubeconfig, &["create", "namespace", "apps"]).unwrap();
        assert!(!dup.status.success());
        assert!(
            String::from_utf8_lossy(&dup.stderr).contains("namespaces \"apps\" already exists"),
            "{}",
            String::from_utf8_lossy(&dup.stderr)
        );
        let nons = kubectl(
            &repo,
            &kubeconfig,
            &[
                "create",
                "configmap",
                "x",
                "-n",
                "nope",
                "--from-literal=a=b",
            ],
        )
        .unwrap();
        assert!(String::from_utf8_lossy(&nons.stderr).contains("namespaces \"nope\" not found"));
        // A throw-away object, deleted again (kubectl waits for it to be gone).
        ok(&kubectl(
            &repo,
            &kubeconfig,
            &[
                "create",
                "configmap",
                "gone",
                "-n",
                "apps",
                "--from-literal=a=b",
            ],
        )
        .unwrap());
        ok(&kubectl(
            &repo,
            &kubeconfig,
            &["delete", "configmap", "gone", "-n", "apps"],
        )
        .unwrap());
        let names = ok(&kubectl(
            &repo,
            &kubeconfig,
            &["get", "configmaps", "-n", "apps", "-o", "name"],
        )
        .unwrap());
        assert_eq!(names.trim(), "configmap/dr-check");
    });

    // The snapshot: an age file in backups/etcd, with its manifest.
    let out = cli(
        &repo,
        &tmp,
        &["talos", "etcd", "snapshot", "--simulate", "-o", "json"],
    );
    let taken: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    let file = PathBuf::from(taken["file"].as_str().unwrap());
    assert!(file.starts_with(repo.path("backups/etcd")), "{taken:#}");
    assert_eq!(taken["node"], "talos-cp-1");
    let cipher = std::fs::read(&file).unwrap();
    assert!(cipher.starts_with(b"age-encryption.org/v1\n"));
    // The real age binary decrypts it with the repository's key (to a pipe, not a file):
    // an etcd-shaped snapshot (page-aligned database + SHA-256) holding the ConfigMap.
    let plain = Command::new("age")
        .args(["-d", "-i"])
        .arg(repo.path("demo-age-key.txt"))
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        plain.status.success(),
        "{}",
        String::from_utf8_lossy(&plain.stderr)
    );
    assert_eq!(plain.stdout.len() as u64, taken["size"].as_u64().unwrap());
    assert_eq!(plain.stdout.len() % 512, 32);
    assert!(
        plain
            .stdout
            .windows(marker.len())
            .any(|w| w == marker.as_bytes())
    );
    assert!(plain.stdout.windows(9).any(|w| w == b"dr-secret"));
    drop(plain);

    // Lose the control plane.
    let down = repo.json(&["down", "--simulate", "--yes", "-o", "json"]);
    assert_eq!(down["destroyed"], serde_json::json!([200]));
    let etcd_dir = repo.path(".homelab/sim/talos-etcd");
    assert!(
        snapshots(&etcd_dir).iter().all(|n| !n.ends_with(".json")),
        "the cluster's etcd went with its last control plane: {:?}",
        snapshots(&etcd_dir)
    );

    // Bad inputs are refused before anything is created.
    let bad = |path: &Path, want: &str| {
        let o = cli(
            &repo,
            &tmp,
            &[
                "up",
                "--simulate",
                "--yes",
                "--restore-etcd",
                path.to_str().unwrap(),
            ],
        );
        assert_eq!(o.status.code(), Some(1));
        let e = flat(&o.stderr);
        assert!(e.contains(want), "{e}");
        let status = repo.json(&["status", "--simulate", "-o", "json"]);
        assert_eq!(
            status["guests"],
            serde_json::json!([]),
            "nothing created: {status:#}"
        );
    };
    let manifest = |p: &Path| {
        p.with_file_name(
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .replace(".snapshot.age", ".snapshot.json"),
        )
    };
    let bad_dir = repo.path("bad");
    std::fs::create_dir_all(&bad_dir).unwrap();
    // Truncated.
    let cut = bad_dir.join("cut.snapshot.age");
    std::fs::write(&cut, &cipher[..cipher.len() - 700]).unwrap();
    std::fs::copy(manifest(&file), manifest(&cut)).unwrap();
    bad(&cut, "truncated or was altered");
    // Encrypted to another key (re-encrypted by the real age, through a pipe).
    let other = bad_dir.join("other-key.snapshot.age");
    let key = Command::new("age-keygen").output().unwrap();
    let key_text = String::from_utf8(key.stdout).unwrap();
    let public = key_text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .unwrap()
        .to_string();
    let sh = format!(
        "age -d -i '{}' '{}' | age -r {public} -o '{}'",
        repo.path("demo-age-key.txt").display(),
        file.display(),
        other.display()
    );
    assert!(
        Command::new("sh")
            .args(["-c", &sh])
            .status()
            .unwrap()
            .success()
    );
    std::fs::copy(manifest(&file), manifest(&other)).unwrap();
    bad(&other, "cannot decrypt");
    // No manifest.
    let bare = bad_dir.join("bare.snapshot.age");
    std::fs::copy(&file, &bare).unwrap();
    bad(&bare, "cannot read the manifest");

    // A snapshot of another cluster: a second repository with its own secrets bundle.
    let b = Repo::new("single-node", 63, 12);
    // (`talos gen` takes no -c: run it in the repository.)
    let generated = Command::new(env!("CARGO_BIN_EXE_homelab-cli"))
        .args([
            "talos",
            "gen",
            "secrets",
            "-o",
            "talos-secrets.enc.yaml",
            "--encrypt",
        ])
        .current_dir(b.dir.path())
        .env("HOME", b.path("home"))
        .env_remove("SOPS_AGE_KEY_FILE")
        .output()
        .unwrap();
    assert!(
        generated.status.success(),
        "{}",
        String::from_utf8_lossy(&generated.stderr)
    );
    std::fs::copy(&file, b.path("a.snapshot.age")).unwrap();
    std::fs::copy(manifest(&file), b.path("a.snapshot.json")).unwrap();
    let o = b.cli(&[
        "up",
        "--simulate",
        "--yes",
        "--restore-etcd",
        "a.snapshot.age",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let e = flat(&o.stderr);
    assert!(
        e.contains("is a snapshot of another cluster (`homelab`"),
        "{e}"
    );
    assert!(
        !b.path(".homelab/sim/talos").exists()
            || snapshots(&b.path(".homelab/sim/talos")).is_empty()
    );

    // The recovery: fresh control plane, etcd bootstrapped from the snapshot.
    let out = cli(
        &repo,
        &tmp,
        &[
            "up",
            "--simulate",
            "--yes",
            "-o",
            "json",
            "--restore-etcd",
            file.to_str().unwrap(),
        ],
    );
    let report: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    let steps = report["steps"].as_array().unwrap();
    assert!(steps.iter().all(|s| s["outcome"] == "done"), "{report:#}");
    let boot = steps.iter().find(|s| s["id"] == "bootstrap").unwrap();
    assert!(
        boot.to_string()
            .contains("recovered from the etcd snapshot"),
        "{boot:#}"
    );
    // Talos removes the uploaded snapshot once etcd is restored from it.
    assert!(
        !snapshots(&etcd_dir)
            .iter()
            .any(|n| n.ends_with(".etcd.snapshot")),
        "{:?}",
        snapshots(&etcd_dir)
    );
    // A second restore onto the running cluster is refused.
    let again = cli(
        &repo,
        &tmp,
        &[
            "up",
            "--simulate",
            "--yes",
            "--restore-etcd",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(again.status.code(), Some(1));
    assert!(flat(&again.stderr).contains("already bootstrapped"));
    let again = cli(
        &repo,
        &tmp,
        &[
            "talos",
            "etcd",
            "restore",
            file.to_str().unwrap(),
            "--simulate",
        ],
    );
    assert_eq!(again.status.code(), Some(1));
    assert!(flat(&again.stderr).contains("etcd already runs"));

    // The objects are back, read with kubectl.
    let kubeconfig = write_kubeconfig(&repo);
    with_lab(&repo, || {
        let v = ok(&kubectl(
            &repo,
            &kubeconfig,
            &[
                "get",
                "configmap",
                "dr-check",
                "-n",
                "apps",
                "-o",
                "jsonpath={.data.marker}",
            ],
        )
        .unwrap());
        assert_eq!(v, marker);
        let s = ok(&kubectl(
            &repo,
            &kubeconfig,
            &[
                "get",
                "secret",
                "dr-secret",
                "-n",
                "apps",
                "-o",
                "jsonpath={.data.k}",
            ],
        )
        .unwrap());
        assert_eq!(s, "dg==");
        let ns = ok(&kubectl(&repo, &kubeconfig, &["get", "namespaces", "-o", "name"]).unwrap());
        assert!(
            ns.contains("namespace/apps") && ns.contains("namespace/kube-system"),
            "{ns}"
        );
    });

    // `talos.etcd_backup: before_changes`: a plan that changes the control plane shows the
    // snapshot, and `up` takes it before anything else.
    let cfg = std::fs::read_to_string(repo.path("homelab.yaml")).unwrap();
    let cfg = cfg
        .replacen(
            "  nodes:\n",
            "  etcd_backup: { when: before_changes, keep: 5 }\n  nodes:\n",
            1,
        )
        .replacen("memory: 16GiB", "memory: 8GiB", 1);
    std::fs::write(repo.path("homelab.yaml"), cfg).unwrap();
    let plan = String::from_utf8(cli(&repo, &tmp, &["plan", "--simulate"]).stdout).unwrap();
    assert!(
        plan.contains("# an encrypted etcd snapshot is taken first: talos-cp-1 change(s)")
            && plan.contains("+ etcd_snapshot \"backups/etcd\""),
        "{plan}"
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = cli(&repo, &tmp, &["up", "--simulate", "--yes", "-o", "json"]);
    let report: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    let first = &report["steps"][0];
    assert_eq!(first["id"], "etcd-snapshot", "{report:#}");
    assert_eq!(first["outcome"], "done", "{report:#}");
    let before_change = PathBuf::from(first["detail"].as_str().unwrap());
    assert!(before_change.exists() && before_change != file);
    // Nothing else to change: no snapshot in the next plan.
    let plan = String::from_utf8(cli(&repo, &tmp, &["plan", "--simulate"]).stdout).unwrap();
    assert!(!plan.contains("etcd_snapshot"), "{plan}");

    // Retention: two more snapshots with --keep 2 leave the newest two.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = cli(
        &repo,
        &tmp,
        &[
            "talos",
            "etcd",
            "snapshot",
            "--simulate",
            "--keep",
            "2",
            "-o",
            "json",
        ],
    );
    let third: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(
        third["pruned"],
        serde_json::json!([file.display().to_string()]),
        "{third:#}"
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = cli(
        &repo,
        &tmp,
        &[
            "talos",
            "etcd",
            "snapshot",
            "--simulate",
            "--keep",
            "2",
            "-o",
            "json",
        ],
    );
    let last: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(
        last["pruned"],
        serde_json::json!([before_change.display().to_string()]),
        "{last:#}"
    );
    let left = snapshots(&repo.path("backups/etcd"));
    assert_eq!(left.len(), 4, "two snapshots and their manifests: {left:?}");
    assert!(!file.exists() && !manifest(&file).exists());
    assert!(left.contains(&format!(
        "{}",
        PathBuf::from(last["file"].as_str().unwrap()).file_name().unwrap().to_string_lossy()
    )));

    // No plaintext snapshot byte anywhere on disk: the repository (outputs, backups, the
    // simulated lab, kubectl's cache in HOME) and the CLI's temporary directory (TMPDIR
    // pointed inside it for every run above). Excluded:
    // the simulated control plane's etcd data directory, which holds the objects in the
    // clear as a real etcd member's disk does; it is the positive control of the scan.
    let etcd_data = repo.path(".homelab/sim/talos-etcd");
    assert!(
        !files_containing(&etcd_data, marker.as_bytes(), &[]).is_empty(),
        "the scan finds the marker where etcd keeps it"
    );
    let leaks = files_containing(repo.dir.path(), marker.as_bytes(), &[etcd_data]);
    assert!(
        leaks.is_empty(),
        "plaintext snapshot data on disk: {leaks:?}"
    );
}
