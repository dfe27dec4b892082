//! `homelab-cli talos etcd snapshot|restore`: encrypted etcd snapshots of the repository's
//! cluster and their recovery onto fresh control planes (see `docs/disaster-recovery.md`).

use std::path::PathBuf;

use miette::miette;
use serde::Serialize;

use crate::context::{Context, Exit, OutputFormat, print_json, print_text};
use crate::engine::etcd_backup::{self, TakeOptions};
use crate::engine::talos;
use crate::session::{Session, SimArgs};
use crate::workspace::ConfigArg;

/// `talos etcd ...`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Stream an etcd snapshot from a control plane into an age-encrypted file (to the
    /// recipients `.sops.yaml` gives it), then keep only the newest `--keep`.
    Snapshot(SnapshotArgs),
    /// Recover the cluster from an encrypted snapshot onto fresh (not bootstrapped) control
    /// planes: upload it to the first one (EtcdRecover) and bootstrap etcd from it.
    Restore(RestoreArgs),
}

/// Flags of `talos etcd snapshot`.
#[derive(Debug, clap::Args)]
pub struct SnapshotArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(flatten)]
    pub sim: SimArgs,
    /// Directory of the snapshots, relative to homelab.yaml (default: `talos.etcd_backup.dir`,
    /// else `backups/etcd`).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Keep this many of the cluster's snapshots in DIR, newest first; 0 keeps all
    /// (default: `talos.etcd_backup.keep`, else 10).
    #[arg(long, value_name = "N")]
    pub keep: Option<usize>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// Flags of `talos etcd restore`.
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The encrypted snapshot (`*.snapshot.age`, its manifest beside it).
    pub file: PathBuf,
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(flatten)]
    pub sim: SimArgs,
    /// Skip etcd's integrity check (for a copy of a data directory, not a snapshot).
    #[arg(long)]
    pub skip_hash_check: bool,
}

#[derive(Debug, Serialize)]
struct SnapshotReport {
    file: String,
    node: String,
    size: u64,
    pruned: Vec<String>,
}

/// Run `homelab-cli talos etcd ...`.
pub async fn run(cmd: Command, ctx: &Context) -> miette::Result<Exit> {
    let _ = ctx;
    match cmd {
        Command::Snapshot(a) => {
            let session = Session::open_env(&a.config.config, a.config.env(), &a.sim).await?;
            let r = snapshot(&session, &a).await;
            session.close().await;
            let t = r?;
            let report = SnapshotReport {
                file: t.file.display().to_string(),
                node: t.manifest.node.clone(),
                size: t.manifest.size,
                pruned: t.pruned.iter().map(|p| p.display().to_string()).collect(),
            };
            match a.output {
                OutputFormat::Json => print_json(&report)?,
                OutputFormat::Text => {
                    let mut s = format!(
                        "etcd snapshot of {} ({} bytes) encrypted to {}\n",
                        report.node, report.size, report.file
                    );
                    for p in &report.pruned {
                        s.push_str(&format!("removed {p} (retention)\n"));
                    }
                    print_text(&s)?;
                }
            }
            Ok(Exit::Success)
        }
        Command::Restore(a) => {
            let session = Session::open_env(&a.config.config, a.config.env(), &a.sim).await?;
            let r = restore(&session, &a).await;
            session.close().await;
            let node = r?;
            print_text(&format!(
                "etcd recovered on {node} from {}; run `homelab-cli up` to join the other control planes and refresh the outputs\n",
                a.file.display()
            ))?;
            Ok(Exit::Success)
        }
    }
}

/// The first declared control plane: its name and address.
fn first_control_plane(session: &Session) -> miette::Result<(String, std::net::IpAddr)> {
    session
        .desired
        .guests
        .iter()
        .filter(|g| g.is_control_plane())
        .find_map(|g| Some((g.name.clone(), g.talos.as_ref()?.ip?)))
        .ok_or_else(|| miette!("no control plane with a static `ip` in homelab.yaml"))
}

/// Every recipient of the snapshot path's creation rule (age files have no key groups).
pub fn recipients(
    session: &Session,
    file: &std::path::Path,
) -> miette::Result<Vec<sops_age::Recipient>> {
    let opts = session.ws.recipients_for(file)?;
    if opts.key_groups.len() > 1 {
        return Err(miette!(
            help = "give the snapshot directory its own creation rule with plain `age` recipients",
            "the .sops.yaml rule for {} uses key groups (Shamir), which an age file cannot",
            file.display()
        ));
    }
    Ok(opts.key_groups.into_iter().flatten().collect())
}

/// Take a snapshot of the repository's cluster (also used by `up` before it touches a
/// control plane).
pub async fn snapshot_with(
    session: &Session,
    dir: &std::path::Path,
    keep: usize,
) -> miette::Result<etcd_backup::Taken> {
    let cluster = session
        .desired
        .talos
        .as_ref()
        .ok_or_else(|| miette!("homelab.yaml declares no Talos cluster"))?;
    let bundle = session.bundle()?.ok_or_else(|| {
        miette!(
            help = "run `homelab-cli up` first",
            "no Talos secrets bundle ({}): the cluster was never created",
            cluster.secrets_file.display()
        )
    })?;
    let dir = session.ws.loaded.relative(dir);
    let recipients = recipients(
        session,
        &dir.join(etcd_backup::file_name(&cluster.cluster_name, "x")),
    )?;
    let mut last = None;
    // The first control plane that answers with a running etcd.
    for g in session
        .desired
        .guests
        .iter()
        .filter(|g| g.is_control_plane())
    {
        let Some(ip) = g.talos.as_ref().and_then(|t| t.ip) else {
            continue;
        };
        if !talos::etcd_running(cluster, &bundle, ip).await {
            last = Some(format!("{} ({ip}): etcd is not running", g.name));
            continue;
        }
        let client = talos::admin_client(cluster, &bundle, ip)
            .and_then(|b| b.build())
            .map_err(|e| miette!("Talos client for {}: {e}", g.name))?;
        return etcd_backup::take(
            &client,
            &TakeOptions {
                dir: &dir,
                cluster: &cluster.cluster_name,
                cluster_id: &bundle.cluster_id,
                recipients: &recipients,
                node: &g.name,
                keep,
            },
        )
        .await;
    }
    Err(miette!(
        help = "`homelab-cli status` shows the nodes; a snapshot needs one healthy control plane",
        "no control plane to take an etcd snapshot from{}",
        last.map(|l| format!(": {l}")).unwrap_or_default()
    ))
}

async fn snapshot(session: &Session, a: &SnapshotArgs) -> miette::Result<etcd_backup::Taken> {
    let (dir, keep) = settings(session);
    snapshot_with(
        session,
        a.dir.as_deref().unwrap_or(&dir),
        a.keep.unwrap_or(keep),
    )
    .await
}

/// `talos.etcd_backup`'s directory and retention count, or the defaults.
pub fn settings(session: &Session) -> (PathBuf, usize) {
    let b = session
        .desired
        .talos
        .as_ref()
        .map(|t| t.etcd_backup.clone())
        .unwrap_or_default();
    (
        b.dir
            .unwrap_or_else(|| PathBuf::from(etcd_backup::DEFAULT_DIR)),
        b.keep.unwrap_or(etcd_backup::DEFAULT_KEEP),
    )
}

/// Load and check a snapshot for this repository's cluster (before anything changes).
pub fn load_for(
    session: &Session,
    file: &std::path::Path,
    skip_hash_check: bool,
) -> miette::Result<etcd_backup::Plain> {
    let bundle = session.bundle()?.ok_or_else(|| {
        miette!(
            help = "a restore needs the cluster's secrets bundle (`talos.secrets_file`) from the same repository",
            "no Talos secrets bundle: cannot tell which cluster this repository is"
        )
    })?;
    // The identities the repository's SOPS files are read with: `secrets.age_key_file`, then
    // the environment as sops finds them.
    etcd_backup::load(
        file,
        &session.ws.identities,
        &bundle.cluster_id,
        skip_hash_check,
    )
}

async fn restore(session: &Session, a: &RestoreArgs) -> miette::Result<String> {
    let data = load_for(session, &a.file, a.skip_hash_check)?;
    let cluster = session
        .desired
        .talos
        .as_ref()
        .ok_or_else(|| miette!("homelab.yaml declares no Talos cluster"))?;
    let bundle = session
        .bundle()?
        .ok_or_else(|| miette!("no Talos secrets bundle"))?;
    let (name, ip) = first_control_plane(session)?;
    for ip in talos::control_plane_ips(&session.desired) {
        if talos::etcd_running(cluster, &bundle, ip).await {
            return Err(miette!(
                help = "a restore goes onto fresh control planes: `homelab-cli down`, then `homelab-cli up --restore-etcd FILE`",
                "etcd already runs on {ip}: restoring now would throw its data away"
            ));
        }
    }
    let client = talos::admin_client(cluster, &bundle, ip)
        .and_then(|b| b.build())
        .map_err(|e| miette!("Talos client for {name}: {e}"))?;
    client.version().await.map_err(|e| {
        miette!(
            help = "the control planes must run their configuration (not bootstrapped yet): `homelab-cli up` gets them there",
            "{name} ({ip}) does not answer on the Talos API: {e}"
        )
    })?;
    let wait = talos_api::health::WaitOptions::new(std::time::Duration::from_secs(120))
        .interval(std::time::Duration::from_millis(500));
    etcd_backup::restore_onto(&client, data, a.skip_hash_check, &wait).await?;
    Ok(name)
}
