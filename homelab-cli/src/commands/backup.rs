//! `homelab-cli backup`: run vzdump now for declared guests (`run`, with the task's
//! progress) and list the archives in the backup storages (`list`).

use std::collections::BTreeMap;
use std::time::Duration;

use miette::miette;
use proxmox_client::Upid;
use serde::Serialize;

use crate::context::{Context, Exit, OutputFormat, print_json, print_text};
use crate::engine::observe;
use crate::engine::restore::{self, BackupArchive};
use crate::session::{Session, SimArgs, pve_error};
use crate::workspace::ConfigArg;

/// `homelab-cli backup ...`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Back up declared guests now (vzdump), showing its progress.
    Run(RunArgs),
    /// List the backup archives in the backup storages.
    List(ListArgs),
}

/// Flags of `backup run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(flatten)]
    pub sim: SimArgs,
    /// Guests by name or VMID (default: every declared guest that exists).
    pub guests: Vec<String>,
    /// Backup storage (default: the storage of the first job in `backups`).
    #[arg(long)]
    pub storage: Option<String>,
    /// vzdump mode.
    #[arg(long, default_value = "snapshot", value_parser = ["snapshot", "suspend", "stop"])]
    pub mode: String,
    /// Mark the archives protected (never pruned).
    #[arg(long)]
    pub protected: bool,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// Flags of `backup list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(flatten)]
    pub sim: SimArgs,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// What `backup run` made.
#[derive(Debug, Serialize)]
pub struct RunReport {
    /// The storage written to.
    pub storage: String,
    /// The archives of the backed-up guests, newest per guest.
    pub archives: Vec<BackupArchive>,
}

/// Run `homelab-cli backup`.
pub async fn run(cmd: Command, ctx: &Context) -> miette::Result<Exit> {
    match cmd {
        Command::Run(a) => {
            let session = Session::open_env(&a.config.config, a.config.env(), &a.sim).await?;
            let r = backup_now(&a, &session, ctx).await;
            session.close().await;
            let r = r?;
            match a.output {
                OutputFormat::Json => print_json(&r)?,
                OutputFormat::Text => {
                    let mut out = format!("{} archive(s) in {}:\n", r.archives.len(), r.storage);
                    for b in &r.archives {
                        out.push_str(&format!("  {}\n", b.volid));
                    }
                    print_text(&out)?;
                }
            }
            Ok(Exit::Success)
        }
        Command::List(a) => {
            let session = Session::open_env(&a.config.config, a.config.env(), &a.sim).await?;
            let r = list(&session).await;
            session.close().await;
            let r = r?;
            match a.output {
                OutputFormat::Json => print_json(&r)?,
                OutputFormat::Text => print_text(&table(&r))?,
            }
            Ok(Exit::Success)
        }
    }
}

async fn list(session: &Session) -> miette::Result<Vec<BackupArchive>> {
    let endpoint = &session.desired.proxmox.endpoint;
    let observed = observe::list(&session.pve)
        .await
        .map_err(|e| pve_error(endpoint, e))?;
    let nodes: Vec<String> = observed
        .nodes
        .iter()
        .filter(|n| n.status == "online")
        .map(|n| n.name.clone())
        .collect();
    restore::list(&session.pve, &nodes)
        .await
        .map_err(|e| pve_error(endpoint, e))
}

fn table(r: &[BackupArchive]) -> String {
    if r.is_empty() {
        return "No backups.\n".into();
    }
    let w = r.iter().map(|b| b.volid.len()).max().unwrap_or(5);
    let mut out = format!(
        "{:w$}  {:>6}  {:>9}  {:9}  NOTES\n",
        "VOLID", "VMID", "SIZE", "PROTECTED"
    );
    for b in r {
        out.push_str(&format!(
            "{:w$}  {:>6}  {:>7}Mi  {:9}  {}\n",
            b.volid,
            b.vmid,
            b.size >> 20,
            if b.protected { "yes" } else { "no" },
            b.notes.as_deref().unwrap_or("")
        ));
    }
    out
}

async fn backup_now(a: &RunArgs, session: &Session, ctx: &Context) -> miette::Result<RunReport> {
    let d = &session.desired;
    let endpoint = &d.proxmox.endpoint;
    let storage = match (&a.storage, d.backups.first()) {
        (Some(s), _) => s.clone(),
        (None, Some(job)) => job.params.get("storage").cloned().ok_or_else(|| {
            miette!(
                "the backup job {} names no storage; give --storage",
                job.name
            )
        })?,
        (None, None) => {
            return Err(miette!(
                help = "give --storage, or declare a job under `backups:`",
                "no backup storage to write to"
            ));
        }
    };
    let observed = observe::list(&session.pve)
        .await
        .map_err(|e| pve_error(endpoint, e))?;
    let mut chosen = Vec::new();
    if a.guests.is_empty() {
        chosen.extend(d.guests.iter().filter(|g| !g.is_template));
    } else {
        for want in &a.guests {
            let g = d
                .guests
                .iter()
                .find(|g| g.name == *want || g.vmid.to_string() == *want)
                .ok_or_else(|| {
                    miette!(
                        help = "only guests declared in homelab.yaml are backed up by name",
                        "no declared guest is named or numbered `{want}`"
                    )
                })?;
            chosen.push(g);
        }
    }
    let mut by_node: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for g in chosen {
        match observed.guest(g.vmid) {
            Some(o) => by_node.entry(o.node.clone()).or_default().push(g.vmid),
            None if a.guests.is_empty() => {}
            None => {
                return Err(miette!(
                    "{} {} \"{}\" does not exist yet: run `homelab-cli up` first",
                    g.kind.noun(),
                    g.vmid,
                    g.name
                ));
            }
        }
    }
    if by_node.is_empty() {
        return Err(miette!(
            "none of the declared guests exists: nothing to back up"
        ));
    }
    let progress = !matches!(a.output, OutputFormat::Json) && ctx.verbosity >= 0;
    let mut backed = Vec::new();
    for (node, vmids) in &by_node {
        let opts = proxmox_client::vzdump::VzdumpOptions {
            vmids: vmids.clone(),
            storage: Some(storage.clone()),
            mode: Some(a.mode.as_str().to_string()),
            compress: Some("zstd".into()),
            notes_template: Some("{{guestname}}".into()),
            protected: a.protected,
        };
        let task = session
            .pve
            .node(node)
            .vzdump(&opts)
            .await
            .map_err(|e| pve_error(endpoint, e))?;
        let upid = task
            .upid()
            .cloned()
            .ok_or_else(|| miette!("vzdump on {node} answered without a task"))?;
        follow(session, &upid, progress).await?;
        backed.extend(vmids.iter().copied());
    }
    let nodes: Vec<String> = by_node.keys().cloned().collect();
    let all = restore::list(&session.pve, &nodes)
        .await
        .map_err(|e| pve_error(endpoint, e))?;
    let mut newest: BTreeMap<u32, BackupArchive> = BTreeMap::new();
    for b in all
        .into_iter()
        .filter(|b| b.storage == storage && backed.contains(&b.vmid))
    {
        let keep = newest
            .get(&b.vmid)
            .is_none_or(|n| (&n.volid, n.ctime) < (&b.volid, b.ctime));
        if keep {
            newest.insert(b.vmid, b);
        }
    }
    Ok(RunReport {
        storage,
        archives: newest.into_values().collect(),
    })
}

/// Wait for the vzdump task, printing its log lines as they come (on stderr).
async fn follow(session: &Session, upid: &Upid, progress: bool) -> miette::Result<()> {
    let endpoint = &session.desired.proxmox.endpoint;
    let mut seen = 0u64;
    loop {
        let st = session
            .pve
            .task_status(upid)
            .await
            .map_err(|e| pve_error(endpoint, e))?;
        if progress {
            let lines = session
                .pve
                .task_log(upid, Some(seen), Some(500))
                .await
                .map_err(|e| pve_error(endpoint, e))?;
            for l in lines {
                if l.n > seen {
                    seen = l.n;
                    eprintln!("  {}", l.t);
                }
            }
        }
        if st.is_stopped() {
            let exit = st.exitstatus.unwrap_or_default();
            if exit == "OK" || exit.starts_with("WARNINGS") {
                return Ok(());
            }
            return Err(miette!("vzdump failed: {exit}"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
