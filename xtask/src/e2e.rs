//! `cargo xtask e2e`: the end-to-end runs of issues 6 and 7 on the simulated lab.
//!
//! 1. The lifecycle integration tests (`homelab-cli/tests/it/lab.rs`, module `e2e`): fresh
//!    lab → up → up again with no mutating request → memory change shown by plan → up →
//!    config use (kubectl against the simulated API server) → down → empty status; outputs
//!    checked with the real `sops`.
//!    The LXC services, cloud-init VM fleet and backup-job lifecycles
//!    (`homelab-cli/tests/it/{services,vms,backups}.rs`) run beside them.
//! 2. The README's main command on a fresh copy of `examples/single-node` (then of
//!    `examples/services` and `examples/vm-fleet`), exactly as a user runs it, followed by
//!    `plan --detailed-exitcode` (must report nothing to do) and `down --yes`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Result, cargo, root, run};

/// Run the end-to-end checks.
pub fn e2e(extra: &[String]) -> Result {
    let mut test = cargo();
    test.args([
        "test",
        "-p",
        "homelab-cli",
        "--test",
        "it",
        "--",
        "lab::e2e",
        "services::services_lifecycle",
        "vms::vm_fleet_lifecycle",
        "backups::",
    ])
    .args(extra);
    run(test)?;

    let mut build = cargo();
    build.args(["build", "-p", "homelab-cli"]);
    run(build)?;
    let bin = target_dir().join("debug").join("homelab-cli");

    for example in ["single-node", "services", "vm-fleet"] {
        example_run(&bin, example)?;
    }
    println!("xtask e2e: all end-to-end checks passed");
    Ok(())
}

/// An example as a user runs it, on a fresh copy: up, plan (nothing to do), down.
fn example_run(bin: &Path, example: &str) -> Result {
    let work = std::env::temp_dir().join(format!("homelab-e2e-{example}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    copy_dir(&root().join("examples").join(example), &work)?;
    let config = work.join("homelab.yaml");
    let outcome = (|| -> Result {
        step(bin, &work, &["up", "--simulate", "-c"], &config, Some(0))?;
        step(
            bin,
            &work,
            &["plan", "--simulate", "--detailed-exitcode", "-c"],
            &config,
            Some(0),
        )?;
        step(
            bin,
            &work,
            &["down", "--simulate", "--yes", "-c"],
            &config,
            Some(0),
        )
    })();
    let _ = std::fs::remove_dir_all(&work);
    outcome
}

pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

fn step(bin: &Path, dir: &Path, args: &[&str], config: &Path, want: Option<i32>) -> Result {
    eprintln!("$ homelab-cli {} {}", args.join(" "), config.display());
    let status = Command::new(bin)
        .args(args)
        .arg(config)
        .current_dir(dir)
        .status()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    if status.code() == want {
        Ok(())
    } else {
        Err(format!(
            "homelab-cli {} exited with {status}",
            args.join(" ")
        ))
    }
}

pub(crate) fn copy_dir(from: &Path, to: &Path) -> Result {
    std::fs::create_dir_all(to).map_err(|e| format!("{}: {e}", to.display()))?;
    let entries = std::fs::read_dir(from).map_err(|e| format!("{}: {e}", from.display()))?;
    for e in entries.flatten() {
        let name = e.file_name();
        // A previous local run's lab and outputs are not part of the fresh clone.
        if matches!(
            name.to_str(),
            Some(".homelab" | "output" | "talos-secrets.enc.yaml")
        ) {
            continue;
        }
        let src = e.path();
        let dst = to.join(&name);
        if src.is_dir() {
            copy_dir(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst).map_err(|e| format!("{}: {e}", src.display()))?;
        }
    }
    Ok(())
}
