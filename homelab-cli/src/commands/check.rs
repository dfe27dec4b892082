//! `homelab-cli check`: validate homelab.yaml (with carets), resolve its secrets, add up the
//! resources it asks for, look for VMID/IP clashes, and scan the repository for plaintext
//! secrets (what the pre-commit hook runs, with `--staged --secrets-only`).

use serde::Serialize;

use crate::context::{Context, Exit, OutputFormat, print_json, print_text};
use crate::engine::image::FactoryNaming;
use crate::engine::{observe, plan};
use crate::model::{self, desired};
use crate::scan::{self, Finding};
use crate::session;
use crate::workspace::ConfigArg;

/// Flags of `homelab-cli check`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Only scan for plaintext secrets (no homelab.yaml needed).
    #[arg(long)]
    pub secrets_only: bool,
    /// Scan the staged content (`git diff --cached`) instead of the work tree.
    #[arg(long)]
    pub staged: bool,
    /// Do not contact Proxmox (no host totals, no clash check against existing guests).
    #[arg(long)]
    pub offline: bool,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// What `check` found.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// Problems (exit 1 when any).
    pub problems: Vec<String>,
    /// Warnings.
    pub warnings: Vec<String>,
    /// Plaintext secrets.
    pub plaintext_secrets: Vec<Finding>,
    /// What the configuration asks for.
    pub totals: Option<Totals>,
}

/// Resource totals of the declared guests.
#[derive(Debug, Serialize)]
pub struct Totals {
    /// Guests.
    pub guests: usize,
    /// vCPUs.
    pub cores: u64,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// Disk, MiB.
    pub disk_mib: u64,
    /// Host CPUs (all online nodes), when known.
    pub host_cpus: Option<u64>,
    /// Host memory in MiB, when known.
    pub host_memory_mib: Option<u64>,
}

/// Run `homelab-cli check`.
pub async fn run(args: Args, ctx: &Context) -> miette::Result<Exit> {
    let root = session::config_dir(&args.config.config);
    let mut report = Report::default();

    // Plaintext secrets first: they matter even when the config is broken.
    if args.staged {
        match scan::staged(&root) {
            Ok(files) => {
                for (p, text) in files {
                    report.plaintext_secrets.extend(scan::scan_text(&p, &text));
                }
            }
            Err(e) => report
                .problems
                .push(format!("cannot read the staged files: {e}")),
        }
    } else {
        for p in scan::repo_files(&root) {
            if let Ok(text) = std::fs::read_to_string(&p) {
                let rel = p.strip_prefix(&root).unwrap_or(&p).to_path_buf();
                report
                    .plaintext_secrets
                    .extend(scan::scan_text(&rel, &text));
            }
        }
    }

    if !args.secrets_only {
        // Structure and secret-free rules: errors render with file, line and caret.
        let ws = args.config.open()?;
        match ws.secrets() {
            // Every command but `check` needs them: a file that is missing or that no key
            // here decrypts is a problem, not a note.
            Err(e) => report
                .problems
                .push(format!("the secrets cannot be read: {e:#}")),
            Ok(secrets) => {
                let d = desired::resolve(&ws.loaded, &secrets, &FactoryNaming::default())?;
                report.totals = Some(Totals {
                    guests: d.guests.len(),
                    cores: d.guests.iter().map(|g| g.cpus()).sum(),
                    memory_mib: d.guests.iter().map(|g| g.memory_mib()).sum(),
                    disk_mib: d.guests.iter().map(|g| g.disk_mib()).sum(),
                    host_cpus: None,
                    host_memory_mib: None,
                });
                if !args.offline {
                    host_checks(&d, &mut report).await;
                }
            }
        }
        let _ = model::secret_capable(&ws.loaded.config);
    }
    if !report.plaintext_secrets.is_empty() {
        report.problems.push(format!(
            "{} plaintext secret(s) found; encrypt them with `homelab-cli secrets encrypt` or move them into the SOPS file",
            report.plaintext_secrets.len()
        ));
    }
    match args.output {
        OutputFormat::Json => print_json(&report)?,
        OutputFormat::Text => print_text(&render(&report, args.secrets_only, ctx))?,
    }
    if report.problems.is_empty() {
        Ok(Exit::Success)
    } else {
        Err(miette::miette!(
            "check failed: {}",
            report.problems.join("; ")
        ))
    }
}

async fn host_checks(d: &desired::Desired, report: &mut Report) {
    let client = match session::connect(d) {
        Ok(c) => c,
        Err(e) => {
            report.warnings.push(format!("host not checked: {e}"));
            return;
        }
    };
    let observed = match tokio::time::timeout(
        std::time::Duration::from_secs(10),
        observe::list(&client),
    )
    .await
    {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => {
            report
                .warnings
                .push(format!("host not checked ({}): {e}", d.proxmox.endpoint));
            return;
        }
        Err(_) => {
            report.warnings.push(format!(
                "host not checked: {} did not answer",
                d.proxmox.endpoint
            ));
            return;
        }
    };
    let online: Vec<_> = observed
        .nodes
        .iter()
        .filter(|n| n.status == "online")
        .collect();
    let cpus: u64 = online.iter().map(|n| n.maxcpu).sum();
    let mem: u64 = online.iter().map(|n| n.maxmem / 1024 / 1024).sum();
    if let Some(t) = &mut report.totals {
        t.host_cpus = Some(cpus);
        t.host_memory_mib = Some(mem);
        if t.memory_mib > mem {
            report.problems.push(format!(
                "the guests need {} MiB of memory, the online nodes have {mem} MiB",
                t.memory_mib
            ));
        }
        if t.cores > cpus * 4 {
            report.warnings.push(format!(
                "{} vCPUs on {cpus} host CPUs is a heavy overcommit",
                t.cores
            ));
        }
    }
    if let Err(e) = plan::plan(d, &observed) {
        report.problems.push(e.to_string());
    }
}

fn render(r: &Report, secrets_only: bool, _ctx: &Context) -> String {
    let mut s = String::new();
    for f in &r.plaintext_secrets {
        if f.line == 0 {
            s.push_str(&format!("{}: {}\n", f.path.display(), f.what));
        } else {
            s.push_str(&format!("{}:{}: {}\n", f.path.display(), f.line, f.what));
        }
    }
    if let Some(t) = &r.totals {
        s.push_str(&format!(
            "{} guest(s): {} vCPU, {} MiB memory, {} GiB disk",
            t.guests,
            t.cores,
            t.memory_mib,
            t.disk_mib / 1024
        ));
        if let (Some(c), Some(m)) = (t.host_cpus, t.host_memory_mib) {
            s.push_str(&format!(" (host: {c} CPU, {m} MiB)"));
        }
        s.push('\n');
    }
    for w in &r.warnings {
        s.push_str(&format!("warning: {w}\n"));
    }
    if r.problems.is_empty() {
        s.push_str(if secrets_only {
            "No plaintext secrets.\n"
        } else {
            "OK\n"
        });
    }
    s
}
