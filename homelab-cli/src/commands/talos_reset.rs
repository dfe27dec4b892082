//! `homelab-cli talos reset NODE`: return a declared node to maintenance mode, the way
//! Talos documents it: cordon and drain, leave etcd (control planes), `Reset` graceful
//! wiping STATE and EPHEMERAL, reboot. The VM stays; the next `up` installs the node again
//! and it rejoins (a new etcd member, its Kubernetes node uncordoned).

use std::time::Duration;

use miette::miette;
use serde::Serialize;
use talos_api::client::ResetOptions;
use talos_api::health::{self, WaitOptions};
use talos_api::kube::DrainOptions;

use crate::context::{Context, Exit, OutputFormat, print_json, print_text};
use crate::engine::membership;
use crate::engine::talos::{self, NodeState};
use crate::session::{Session, SimArgs};
use crate::workspace::ConfigArg;

/// Flags of `talos reset`.
#[derive(Debug, clap::Args)]
pub struct ResetArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(flatten)]
    pub sim: SimArgs,
    /// The node, by its name in homelab.yaml.
    pub node: String,
    /// How long the drain may take, and the node to come back in maintenance mode.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub timeout: u64,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// What `talos reset` did.
#[derive(Debug, Serialize)]
pub struct ResetReport {
    /// The node.
    pub node: String,
    /// The steps taken, in order.
    pub steps: Vec<String>,
}

/// Run `homelab-cli talos reset`.
pub async fn run(a: ResetArgs, _ctx: &Context) -> miette::Result<Exit> {
    let session = Session::open_env(&a.config.config, a.config.env(), &a.sim).await?;
    let r = reset(&a, &session).await;
    session.close().await;
    let r = r?;
    match a.output {
        OutputFormat::Json => print_json(&r)?,
        OutputFormat::Text => print_text(&format!(
            "{}: {}\n{} is in maintenance mode; the next `homelab-cli up` installs it again.\n",
            r.node,
            r.steps.join(", "),
            r.node
        ))?,
    }
    Ok(Exit::Success)
}

async fn reset(a: &ResetArgs, s: &Session) -> miette::Result<ResetReport> {
    let cluster = s
        .desired
        .talos
        .as_ref()
        .ok_or_else(|| miette!("homelab.yaml declares no Talos cluster"))?;
    let names: Vec<&str> = s
        .desired
        .guests
        .iter()
        .filter(|g| g.talos.is_some())
        .map(|g| g.name.as_str())
        .collect();
    let g = s
        .desired
        .guests
        .iter()
        .find(|g| g.talos.is_some() && g.name == a.node)
        .ok_or_else(|| {
            miette!(
                help = format!("Talos nodes: {}", names.join(", ")),
                "no Talos node named `{}` in homelab.yaml",
                a.node
            )
        })?;
    let ip = g
        .talos
        .as_ref()
        .and_then(|t| t.ip)
        .ok_or_else(|| miette!("{} has no static address", g.name))?;
    let bundle = s.bundle()?.ok_or_else(|| {
        miette!(
            help = "run `homelab-cli up` first",
            "no Talos secrets bundle yet"
        )
    })?;
    if !membership::runs_config(cluster, &bundle, ip).await {
        return Err(miette!(
            help = "`homelab-cli status` shows each node; a node in maintenance mode is installed by `up`",
            "{} ({ip}) does not run a configuration: nothing to reset",
            g.name
        ));
    }
    let mut steps = Vec::new();
    if g.is_control_plane() {
        let members = membership::read_members(&s.desired, cluster, &bundle, &Default::default())
            .await
            .ok_or_else(|| miette!("no control plane answers with the etcd member list"))?;
        if let Some(me) = members.iter().find(|m| m.name == g.name) {
            membership::check_removal(&members, &[me.id])
                .map_err(|e| miette!(help = e.help(), "{e}"))?;
        }
    }
    if !a.yes {
        crate::commands::up::confirm(&format!(
            "Reset {} (drain, leave etcd, wipe STATE and EPHEMERAL, back to maintenance mode)?",
            g.name
        ))?;
    }
    let timeout = Duration::from_secs(a.timeout);
    if let Some(k) = membership::kube_client(&s.desired, cluster, &bundle).await
        && k.nodes()
            .await
            .is_ok_and(|n| n.iter().any(|n| n.name == g.name))
    {
        let r = k
            .drain(
                &g.name,
                &DrainOptions {
                    timeout,
                    interval: Duration::from_secs(1),
                    // Talos uncordons the node when it is installed again.
                    cordon_for_talos: true,
                },
            )
            .await
            .map_err(|e| {
                miette!(
                    help = "relax the PodDisruptionBudget or make room for the workload; the node stays cordoned",
                    "{e}"
                )
            })?;
        steps.push(format!("drained ({} evicted)", r.evicted.len()));
    }
    let client = talos::admin_client(cluster, &bundle, ip)
        .and_then(|b| b.build())
        .map_err(|e| miette!("{e}"))?;
    if g.is_control_plane() {
        client
            .etcd_leave_cluster()
            .await
            .map_err(|e| miette!("{} could not leave etcd: {e}", g.name))?;
        steps.push("left etcd".into());
    }
    client
        .reset_with(&ResetOptions::graceful_wipe_state(true))
        .await
        .map_err(|e| miette!("resetting {}: {e}", g.name))?;
    steps.push("reset (STATE and EPHEMERAL wiped)".into());
    let opts = WaitOptions::new(timeout).interval(Duration::from_millis(500));
    health::wait_for(
        &format!("{} in maintenance mode", g.name),
        &opts,
        || async {
            match talos::probe(ip).await {
                NodeState::Maintenance => Ok(()),
                other => Err(talos_api::Error::InvalidConfig(format!("{other:?}"))),
            }
        },
    )
    .await
    .map_err(|e| miette!("{e}"))?;
    steps.push("maintenance mode".into());
    Ok(ResetReport {
        node: g.name.clone(),
        steps,
    })
}
