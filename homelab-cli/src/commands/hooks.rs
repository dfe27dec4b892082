//! `homelab-cli hooks install`: a git pre-commit hook that refuses commits carrying
//! plaintext secrets (`homelab-cli check --staged --secrets-only`).

use std::path::{Path, PathBuf};

use miette::miette;

use crate::context::{Context, Exit, print_text};
use crate::workspace::write_atomic;

/// The line that marks a hook as ours.
pub const HOOK_MARKER: &str = "# installed by homelab-cli hooks install";

/// Subcommands of `homelab-cli hooks`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Install the pre-commit hook into the repository's `.git/hooks`.
    Install(InstallArgs),
}

/// Flags of `hooks install`.
#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    /// The repository (default: the current directory).
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
    /// Replace a pre-commit hook that homelab-cli did not install.
    #[arg(long)]
    pub force: bool,
}

/// Run a `homelab-cli hooks` subcommand.
pub async fn run(cmd: Command, _ctx: &Context) -> miette::Result<Exit> {
    match cmd {
        Command::Install(a) => install(&a),
    }
}

/// The hook script.
pub fn hook_script(exe: &Path) -> String {
    format!(
        "#!/bin/sh\n{HOOK_MARKER}\n# Refuses commits that carry plaintext secrets.\nif command -v homelab-cli >/dev/null 2>&1; then\n  exec homelab-cli check --staged --secrets-only\nfi\nexec '{}' check --staged --secrets-only\n",
        exe.display().to_string().replace('\'', "'\\''")
    )
}

fn install(args: &InstallArgs) -> miette::Result<Exit> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--git-path", "hooks"])
        .current_dir(&args.repo)
        .output()
        .map_err(|e| miette!("cannot run git: {e}"))?;
    if !out.status.success() {
        return Err(miette!(
            help = "run it inside a git repository, or `git init` first",
            "{} is not a git repository",
            args.repo.display()
        ));
    }
    let hooks = args.repo.join(String::from_utf8_lossy(&out.stdout).trim());
    let path = hooks.join("pre-commit");
    if let Ok(existing) = std::fs::read_to_string(&path)
        && !existing.contains(HOOK_MARKER)
        && !args.force
    {
        return Err(miette!(
            help =
                "add `homelab-cli check --staged --secrets-only` to it yourself, or pass --force",
            "{} exists and was not installed by homelab-cli",
            path.display()
        ));
    }
    let exe = std::env::current_exe().map_err(|e| miette!("cannot find this program: {e}"))?;
    write_atomic(&path, hook_script(&exe).as_bytes(), 0o755)?;
    print_text(&format!("Installed {}\n", path.display()))?;
    Ok(Exit::Success)
}
