//! `homelab-cli down`: destroy the guests this homelab owns (tag and description marker),
//! nothing else. Cached ISOs stay in storage.

use std::sync::Arc;

use futures_util::FutureExt;
use miette::miette;

use crate::context::{Context, Exit, OutputFormat, print_json, print_text};
use crate::engine::graph::{self, Outcome, Step, StepError};
use crate::engine::observe;
use crate::engine::observed::ObservedGuest;
use crate::engine::plan::is_ours;
use crate::model::desired::{GuestKind, owner_tag};
use crate::progress::StepProgress;
use crate::session::{Session, SimArgs, pve_error};
use crate::workspace::ConfigArg;

/// Flags of `homelab-cli down`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(flatten)]
    pub sim: SimArgs,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Output format of the summary.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// Run `homelab-cli down`.
pub async fn run(args: Args, ctx: &Context) -> miette::Result<Exit> {
    let session = Session::open_env(&args.config.config, args.config.env(), &args.sim).await?;
    let r = run_session(&session, &args, ctx).await;
    session.close().await;
    r
}

/// Guests of this homelab, confirmed by reading their description marker.
pub async fn owned_guests(session: &Session) -> miette::Result<Vec<ObservedGuest>> {
    let lab = &session.desired.lab;
    let mut observed = observe::list(&session.pve)
        .await
        .map_err(|e| pve_error(&session.desired.proxmox.endpoint, e))?;
    let tagged: Vec<(String, GuestKind, u32)> = observed
        .guests
        .iter()
        .filter(|g| g.tags.contains(&owner_tag(lab)))
        .map(|g| (g.node.clone(), g.kind, g.vmid))
        .collect();
    observe::read_configs(&session.pve, &mut observed, tagged)
        .await
        .map_err(|e| pve_error(&session.desired.proxmox.endpoint, e))?;
    Ok(observed
        .guests
        .into_iter()
        .filter(|g| g.config.is_some() && is_ours(g, lab))
        .collect())
}

async fn run_session(session: &Session, args: &Args, ctx: &Context) -> miette::Result<Exit> {
    let guests = owned_guests(session).await?;
    let jobs = crate::engine::backups::owned(&session.pve, &session.desired.lab)
        .await
        .map_err(|e| pve_error(&session.desired.proxmox.endpoint, e))?;
    if guests.is_empty() && jobs.is_empty() {
        match args.output {
            OutputFormat::Json => {
                print_json(&serde_json::json!({ "destroyed": [], "backup_jobs_deleted": [] }))?
            }
            OutputFormat::Text => print_text(
                "Nothing to destroy: no guest or backup job carries this homelab's marker.\n",
            )?,
        }
        return Ok(Exit::Success);
    }
    let names: Vec<String> = guests
        .iter()
        .map(|g| {
            format!(
                "{} {} \"{}\"",
                g.kind.noun(),
                g.vmid,
                g.name.clone().unwrap_or_default()
            )
        })
        .collect();
    if !args.yes {
        let jobs_note = if jobs.is_empty() {
            String::new()
        } else {
            format!(
                " It also deletes {} backup job(s) (their backups are kept): {}.",
                jobs.len(),
                jobs.iter()
                    .map(|j| j.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        super::up::confirm(&format!(
            "This destroys {} guest(s) of homelab \"{}\" with their disks: {}.{jobs_note}",
            guests.len(),
            session.desired.lab,
            names.join(", ")
        ))?;
    }
    let pve = Arc::new(session.pve.clone());
    // A template goes last: Proxmox refuses to remove a base volume linked clones use.
    let non_templates: Vec<String> = guests
        .iter()
        .filter(|g| !g.is_template())
        .map(|g| format!("delete:{}", g.vmid))
        .collect();
    let mut steps: Vec<Step> = guests
        .iter()
        .map(|g| {
            let pve = pve.clone();
            let (node, kind, vmid, running) =
                (g.node.clone(), g.kind, g.vmid, g.status == "running");
            Step {
                id: format!("delete:{vmid}"),
                label: format!(
                    "destroy {} {vmid} \"{}\"",
                    kind.noun(),
                    g.name.clone().unwrap_or_default()
                ),
                deps: if g.is_template() {
                    non_templates.clone()
                } else {
                    vec![]
                },
                run: async move { destroy(&pve, &node, kind, vmid, running).await }.boxed(),
            }
        })
        .collect();
    // A guest destroyed with `purge` also leaves the jobs; deleting one already gone is fine.
    steps.extend(
        jobs.iter()
            .map(|j| crate::engine::backups::delete_step(pve.clone(), j.id.clone())),
    );
    let observer = StepProgress::new(ctx);
    let finished = graph::run(steps, 4, &observer).await;
    observer.clear();
    let destroyed: Vec<u32> = finished
        .iter()
        .filter(|f| matches!(f.outcome, Outcome::Done { .. }))
        .filter_map(|f| f.id.strip_prefix("delete:").and_then(|v| v.parse().ok()))
        .collect();
    let jobs_deleted: Vec<&str> = finished
        .iter()
        .filter(|f| matches!(f.outcome, Outcome::Done { .. }))
        .filter_map(|f| f.id.strip_prefix("backup:"))
        .collect();
    match args.output {
        OutputFormat::Json => print_json(&serde_json::json!({
            "destroyed": destroyed,
            "backup_jobs_deleted": jobs_deleted,
            "steps": finished
        }))?,
        OutputFormat::Text => {
            let mut text = format!(
                "Destroyed {} of {} guest(s); ISO images, OS templates, cloud images and snippets were kept.\n",
                destroyed.len(),
                guests.len()
            );
            if !jobs.is_empty() {
                text.push_str(&format!(
                    "Deleted {} of {} backup job(s); their backups were kept.\n",
                    jobs_deleted.len(),
                    jobs.len()
                ));
            }
            print_text(&text)?
        }
    }
    if let Some((f, error)) = finished.iter().find_map(|f| match &f.outcome {
        Outcome::Failed { error } => Some((f, error)),
        _ => None,
    }) {
        return Err(miette!(
            help = "run `homelab-cli down` again; it only touches what is left",
            "{} failed: {}",
            f.label,
            error.message
        ));
    }
    Ok(Exit::Success)
}

async fn destroy(
    pve: &proxmox_client::Client,
    node: &str,
    kind: GuestKind,
    vmid: u32,
    running: bool,
) -> Result<String, StepError> {
    let guest = pve.node(node).guest(kind.into(), vmid);
    let opts = proxmox_client::WaitOptions::default();
    if running {
        match guest
            .stop(&proxmox_client::guest::StopOptions::default())
            .await
        {
            Ok(task) => {
                task.wait(&opts).await?;
            }
            Err(e) if e.is_not_running() => {}
            Err(e) => return Err(StepError::new(format!("stop: {e}"))),
        }
    }
    let task = guest
        .destroy(&proxmox_client::guest::DestroyOptions::everything())
        .await
        .map_err(|e| StepError::new(format!("destroy: {e}")))?;
    task.wait(&opts).await?;
    Ok("destroyed".into())
}
