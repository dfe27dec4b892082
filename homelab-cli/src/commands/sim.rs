//! `homelab-cli sim serve`: run the simulated lab (Proxmox VE API, Image Factory and, with
//! `--state`, Talos nodes) in the foreground on loopback.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use homelab_sim::lab::Lab;
use miette::miette;

use crate::context::{Context, Exit};

/// Subcommands of `homelab-cli sim`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Serve the simulated lab until Ctrl-C. Prints one JSON line first: the API URL, an API
    /// token (id and secret), the certificate's SHA-256 fingerprint to pin, the Image
    /// Factory URL and, with `--state`, the node's SFTP endpoint for snippets.
    Serve(ServeArgs),
    /// Reinstall the simulated host of `--simulate` (`.homelab/sim/` beside the config):
    /// guests, the system disk and storage.cfg are wiped; the ZFS pools keep their datasets
    /// and the backup archives below them. For rehearsing docs/recovery.md.
    Reinstall(ReinstallArgs),
    /// On the simulated node, what `qm unlock` / `pct unlock` does on a real one: remove a
    /// guest's lock (say, the `lock: create` a killed `--simulate` run left). Run it while no
    /// process uses the lab.
    Unlock(UnlockArgs),
}

/// Flags of `homelab-cli sim reinstall`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReinstallArgs {
    #[command(flatten)]
    pub config: crate::workspace::ConfigArg,
}

/// Flags of `homelab-cli sim unlock`.
#[derive(Debug, Clone, clap::Args)]
pub struct UnlockArgs {
    /// The guest's VMID.
    pub vmid: u32,
    /// The lab's state directory (`sim serve --state`, or `.homelab/sim` beside homelab.yaml
    /// for `--simulate`).
    #[arg(long, default_value = ".homelab/sim")]
    pub state: PathBuf,
}

/// Flags of `homelab-cli sim serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address of the Proxmox VE API (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8006")]
    pub listen: SocketAddr,
    /// Keep the lab here so a later process sees the same guests, storages and certificate.
    /// Without it the lab lives in memory only.
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Proxmox node names of a new lab.
    #[arg(long = "node", value_name = "NAME")]
    pub nodes: Vec<String>,
    /// Fault profile: `resets=0.1,drops=0.1,latency=50ms,spikes=0.05:2s,lock-timeouts=3,
    /// fail=/status/start:0.2,fail-tasks=qmstart:1,offline=pve2`, or a named profile
    /// (`flaky`, `slow`, `locks`). See docs/crash-safety.md.
    #[arg(long, value_name = "SPEC")]
    pub faults: Option<String>,
}

/// What `sim serve` prints (one line of JSON).
#[derive(Debug, serde::Serialize)]
struct Banner {
    api_url: String,
    endpoint: String,
    token_id: String,
    token_secret: String,
    fingerprint: String,
    root_password: String,
    factory_url: String,
    state_dir: Option<PathBuf>,
    /// The node's SFTP endpoint for cloud-init snippets (only with `--state`).
    #[serde(skip_serializing_if = "Option::is_none")]
    sftp: Option<SftpBanner>,
}

/// Where the simulated node's SSH/SFTP endpoint listens and how to trust and log in to it.
#[derive(Debug, serde::Serialize)]
struct SftpBanner {
    addr: SocketAddr,
    user: String,
    /// Pin this (`SHA256:...`, as `ssh-keygen -lf` prints it).
    host_key_fingerprint: String,
    /// Append public keys here to log in; it is re-read on every login.
    authorized_keys: PathBuf,
}

/// Run a `homelab-cli sim` subcommand.
pub async fn run(cmd: Command, ctx: &Context) -> miette::Result<Exit> {
    match cmd {
        Command::Serve(args) => serve(args, ctx).await,
        Command::Reinstall(args) => reinstall(args).await,
        Command::Unlock(args) => {
            match homelab_sim::lab::unlock_guest(&args.state, args.vmid)
                .map_err(|e| miette!("cannot unlock guest {}: {e}", args.vmid))?
            {
                Some(lock) => println!("Removed lock `{lock}` from guest {}.", args.vmid),
                None => println!("Guest {} was not locked.", args.vmid),
            }
            Ok(Exit::Success)
        }
    }
}

async fn reinstall(args: ReinstallArgs) -> miette::Result<Exit> {
    let dir = crate::session::config_dir(&args.config.config);
    let state = crate::simlab::state_dir(&dir);
    if !state.join("pve-state.json").exists() {
        return Err(miette!(
            "there is no simulated lab in {} yet (run `homelab-cli up --simulate` first)",
            state.display()
        ));
    }
    let lab = crate::simlab::SimLab::start(&state, &crate::simlab::SimOptions::default()).await?;
    lab.lab.sim().reinstall();
    lab.shutdown().await;
    eprintln!(
        "The simulated host in {} was reinstalled: guests, the system disk and storage.cfg are gone; the ZFS pool kept its datasets and backups.",
        state.display()
    );
    Ok(Exit::Success)
}

async fn serve(args: ServeArgs, _ctx: &Context) -> miette::Result<Exit> {
    let mut builder = Lab::builder().listen(args.listen);
    if !args.nodes.is_empty() {
        builder = builder.nodes(args.nodes.clone());
    }
    let mut talos = None;
    if let Some(dir) = &args.state {
        std::fs::create_dir_all(dir)
            .map_err(|e| miette!("cannot create {}: {e}", dir.display()))?;
        let runtime = homelab_sim::talos::TalosRuntime::new(dir)
            .map_err(|e| miette!("cannot start the simulated Talos nodes: {e}"))?;
        builder = builder.state_dir(dir).runtime(Arc::new(runtime.clone()));
        talos = Some(runtime);
    }
    let lab = builder
        .start()
        .await
        .map_err(|e| miette!("cannot start the simulated Proxmox VE: {e}"))?;
    if let Some(spec) = &args.faults {
        lab.faults()
            .apply_spec(spec)
            .map_err(|e| miette!(help = "see docs/crash-safety.md", "--faults: {e}"))?;
    }
    let factory = homelab_sim::factory::FactorySim::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        args.state.as_ref().map(|d| d.join("factory")),
    )
    .await
    .map_err(|e| miette!("cannot start the simulated Image Factory: {e}"))?;
    // The snippet SFTP endpoint needs a file system to serve, so it exists only with --state.
    let sftp = match &args.state {
        Some(dir) => {
            let node = args.nodes.first().map_or("pve", String::as_str);
            let sftp_dir = dir.join("sftp");
            let server = homelab_sim::sftp::SftpServer::persistent(&sftp_dir)
                .pve(lab.sim().clone(), node)
                .start()
                .await
                .map_err(|e| miette!("cannot start the simulated SFTP endpoint: {e}"))?;
            Some((server, sftp_dir))
        }
        None => None,
    };
    let banner = Banner {
        api_url: lab.api_url(),
        endpoint: lab.pve_url(),
        token_id: lab.token_id().to_string(),
        token_secret: lab.token_secret().to_string(),
        fingerprint: lab.fingerprint(),
        root_password: lab.root_password().to_string(),
        factory_url: factory.base_url(),
        state_dir: args.state.clone(),
        sftp: sftp.as_ref().map(|(server, dir)| SftpBanner {
            addr: server.addr(),
            user: "root".into(),
            host_key_fingerprint: server.fingerprint(),
            authorized_keys: dir.join(homelab_sim::sftp::AUTHORIZED_KEYS_FILE),
        }),
    };
    let line = serde_json::to_string(&banner).map_err(|e| miette!("{e}"))?;
    crate::context::print_text(&format!("{line}\n"))?;
    tokio::signal::ctrl_c()
        .await
        .map_err(|e| miette!("cannot wait for Ctrl-C: {e}"))?;
    tracing::info!("shutting down the simulated lab");
    if let Some((server, _)) = sftp {
        server.shutdown().await;
    }
    factory.shutdown().await;
    lab.shutdown().await;
    drop(talos);
    Ok(Exit::Success)
}
