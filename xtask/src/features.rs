//! `cargo xtask features [--build]`: the crate boundaries hold.
//!
//! - No library links a CLI crate: `cargo tree -e normal,no-proc-macro -p <lib>` names none of
//!   homelab-cli, clap, miette, anyhow, indicatif.
//! - `homelab-cli --no-default-features` (no `sim`) does not depend on homelab-sim.
//! - With `--build`: that binary is built and has neither `sim serve` nor `--simulate`.

use std::path::PathBuf;
use std::process::Command;

/// The libraries meant to be embedded.
const LIBS: &[&str] = &[
    "sops-age",
    "proxmox-client",
    "talos-factory",
    "talos-api",
    "homelab-sim",
];

/// Crates only a command-line program has any business linking.
const CLI_CRATES: &[&str] = &[
    "homelab-cli",
    "clap",
    "clap_complete",
    "clap_mangen",
    "miette",
    "anyhow",
    "indicatif",
];

/// The distinct package names in `cargo tree --prefix none` output (pure), sorted.
pub fn tree_packages(tree: &str) -> Vec<String> {
    let mut v: Vec<String> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    v.sort();
    v.dedup();
    v
}

fn tree(args: &[&str]) -> Result<Vec<String>, String> {
    let mut cmd = super::cargo();
    cmd.args([
        "tree",
        "--locked",
        "-e",
        "normal,no-proc-macro",
        "--prefix",
        "none",
    ])
    .args(args);
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(tree_packages(&String::from_utf8_lossy(&out.stdout)))
}

/// The task.
pub fn run(args: &[String]) -> super::Result {
    for lib in LIBS {
        let pkgs = tree(&["-p", lib])?;
        let bad: Vec<&String> = pkgs
            .iter()
            .filter(|p| CLI_CRATES.contains(&p.as_str()))
            .collect();
        if !bad.is_empty() {
            return Err(format!("{lib} links CLI crates: {bad:?}"));
        }
        eprintln!(
            "xtask: {lib}: {} crates, none of them a CLI crate",
            pkgs.len()
        );
    }
    let nosim = tree(&["-p", "homelab-cli", "--no-default-features"])?;
    if nosim.iter().any(|p| p == "homelab-sim") {
        return Err("homelab-cli --no-default-features still depends on homelab-sim".into());
    }
    let full = tree(&["-p", "homelab-cli"])?;
    if !full.iter().any(|p| p == "homelab-sim") {
        return Err("homelab-cli with default features lacks homelab-sim".into());
    }
    eprintln!("xtask: homelab-cli --no-default-features: no homelab-sim");
    // And it compiles: `cargo check` writes no binary, so the `sim` build the tests use
    // stays in place (`--build` below builds and runs the binary without `sim`).
    let mut check = super::cargo();
    check.args([
        "check",
        "--locked",
        "-p",
        "homelab-cli",
        "--no-default-features",
    ]);
    super::run(check)?;
    if args.iter().any(|a| a == "--build") {
        build_without_sim()?;
    }
    Ok(())
}

fn build_without_sim() -> super::Result {
    let mut cmd = super::cargo();
    cmd.args([
        "build",
        "--locked",
        "-p",
        "homelab-cli",
        "--no-default-features",
        "--bin",
        "homelab-cli",
    ]);
    super::run(cmd)?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| super::root().join("target"));
    let bin = target.join("debug/homelab-cli");
    let help = |args: &[&str]| -> Result<String, String> {
        let out = Command::new(&bin)
            .args(args)
            .output()
            .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let top = help(&["--help"])?;
    if top.lines().any(|l| l.trim_start().starts_with("sim ")) || !top.contains("plan") {
        return Err(format!(
            "the binary without `sim` still offers `sim`:\n{top}"
        ));
    }
    let plan = help(&["plan", "--help"])?;
    if plan.contains("--simulate") || !plan.contains("--config") {
        return Err(format!(
            "the binary without `sim` still offers --simulate:\n{plan}"
        ));
    }
    eprintln!("xtask: homelab-cli without `sim` built; it has no `sim` command and no --simulate");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_lines_are_package_names() {
        let t = "proxmox-client v0.1.0 (/x)\nserde v1.0.0\nreqwest v0.13.5\nserde v1.0.0 (*)\n";
        assert_eq!(tree_packages(t), vec!["proxmox-client", "reqwest", "serde"]);
    }
}
