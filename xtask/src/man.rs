//! `cargo xtask man [DIR]`: man pages for `homelab-cli` and each of its subcommands
//! (clap_mangen, from the same grammar the binary parses), into `target/man` by default.

use std::fs;
use std::path::{Path, PathBuf};

/// Writes `homelab-cli.1` and one `homelab-cli-<sub>[-<subsub>].1` per subcommand into
/// `dir`; returns the files written.
pub fn write_pages(dir: &Path) -> Result<Vec<PathBuf>, String> {
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut written = Vec::new();
    // Built, so subcommands know their full names (`homelab-cli plan` in the synopsis).
    let mut cmd = homelab_cli::command();
    cmd.build();
    page(&cmd, "homelab-cli", dir, &mut written)?;
    Ok(written)
}

fn page(
    cmd: &clap::Command,
    name: &str,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> Result<(), String> {
    if cmd.is_hide_set() {
        return Ok(());
    }
    // Each page is titled with its full command name (`homelab-cli-secrets-encrypt`).
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .title(name.to_string())
        .render(&mut out)
        .map_err(|e| format!("cannot render the man page of {name}: {e}"))?;
    let path = dir.join(format!("{name}.1"));
    fs::write(&path, out).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    written.push(path);
    for sub in cmd.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        page(sub, &format!("{name}-{}", sub.get_name()), dir, written)?;
    }
    Ok(())
}

/// The task: `cargo xtask man [DIR]`.
pub fn run(root: &Path, args: &[String]) -> Result<(), String> {
    let dir = args
        .first()
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/man"));
    let written = write_pages(&dir)?;
    eprintln!(
        "xtask: wrote {} man pages to {} (try `man -l {}`)",
        written.len(),
        dir.display(),
        dir.join("homelab-cli.1").display()
    );
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn pages_for_the_binary_and_every_subcommand() {
        let dir = tempfile::tempdir().unwrap();
        let written = write_pages(dir.path()).unwrap();
        let main = fs::read_to_string(dir.path().join("homelab-cli.1")).unwrap();
        assert!(main.contains(".TH homelab-cli 1"), "{main}");
        assert!(main.contains(".SH SUBCOMMANDS"), "{main}");
        assert!(main.contains("plan"), "{main}");
        for sub in ["plan", "up", "down", "completions", "secrets-encrypt"] {
            let p = dir.path().join(format!("homelab-cli-{sub}.1"));
            assert!(written.contains(&p), "{sub} missing");
        }
        let plan = fs::read_to_string(dir.path().join("homelab-cli-plan.1")).unwrap();
        assert!(plan.contains(".TH homelab-cli-plan 1"));
        assert!(plan.contains("\\-\\-simulate"), "{plan}");
        assert!(!written.iter().any(|p| p.ends_with("homelab-cli-help.1")));
    }
}
