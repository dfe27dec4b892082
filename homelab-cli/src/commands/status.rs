//! `homelab-cli status`: this homelab's guests, their state and addresses, and how the
//! Talos nodes and Kubernetes answer.

use serde::Serialize;

use crate::context::{Context, Exit, OutputFormat, print_json, print_text};
use crate::engine::talos::{self, NodeState};
use crate::session::{Session, SimArgs};
use crate::workspace::ConfigArg;

/// Flags of `homelab-cli status`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(flatten)]
    pub sim: SimArgs,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// One guest in the status report.
#[derive(Debug, Serialize)]
pub struct GuestStatus {
    /// VMID.
    pub vmid: u32,
    /// Name.
    pub name: String,
    /// Proxmox node.
    pub node: String,
    /// `vm` / `ct`.
    pub kind: String,
    /// Proxmox status.
    pub status: String,
    /// Whether homelab.yaml still declares it.
    pub declared: bool,
    /// Talos role.
    pub role: Option<String>,
    /// Talos API state: `maintenance`, `configured`, `unreachable`.
    pub talos: Option<String>,
}

/// The status report.
#[derive(Debug, Serialize)]
pub struct Status {
    /// Homelab name.
    pub homelab: String,
    /// Guests owned by this homelab.
    pub guests: Vec<GuestStatus>,
    /// Declared guests that do not exist.
    pub missing: Vec<String>,
    /// Kubernetes API ready (`None` without a cluster or secrets bundle).
    pub kubernetes_ready: Option<bool>,
}

/// Run `homelab-cli status`.
pub async fn run(args: Args, ctx: &Context) -> miette::Result<Exit> {
    let session = Session::open(&args.config.config, &args.sim).await?;
    let r = collect(&session).await;
    session.close().await;
    let status = r?;
    match args.output {
        OutputFormat::Json => print_json(&status)?,
        OutputFormat::Text => print_text(&render(&status, ctx))?,
    }
    Ok(Exit::Success)
}

async fn collect(session: &Session) -> miette::Result<Status> {
    let owned = super::down::owned_guests(session).await?;
    let bundle = session.bundle()?;
    let mut guests = Vec::new();
    for g in &owned {
        let d = session.desired.guests.iter().find(|d| d.vmid == g.vmid);
        let member = d.and_then(|d| d.talos.as_ref());
        let talos_state = match member.and_then(|m| m.ip) {
            Some(ip) if g.status == "running" => Some(match talos::probe(ip).await {
                NodeState::Maintenance => "maintenance",
                NodeState::Configured => "configured",
                NodeState::Unreachable => "unreachable",
            }),
            _ => None,
        };
        guests.push(GuestStatus {
            vmid: g.vmid,
            name: g.name.clone().unwrap_or_default(),
            node: g.node.clone(),
            kind: g.kind.noun().into(),
            status: g.status.clone(),
            declared: d.is_some(),
            role: member.map(|m| m.role.to_string()),
            talos: talos_state.map(String::from),
        });
    }
    let missing = session
        .desired
        .guests
        .iter()
        .filter(|d| !owned.iter().any(|g| g.vmid == d.vmid))
        .map(|d| format!("{} \"{}\"", d.vmid, d.name))
        .collect();
    let kubernetes_ready = match (&session.desired.talos, &bundle) {
        (Some(cluster), Some(b)) if !owned.is_empty() => {
            let kc = talos::direct_kubeconfig(&session.desired, cluster, b).ok();
            match kc {
                Some(kc) => Some(talos_api::health::kubernetes_readyz(&kc).await.is_ok()),
                None => Some(false),
            }
        }
        _ => None,
    };
    Ok(Status {
        homelab: session.desired.lab.clone(),
        guests,
        missing,
        kubernetes_ready,
    })
}

fn render(s: &Status, _ctx: &Context) -> String {
    let mut out = format!("homelab {}\n", s.homelab);
    if s.guests.is_empty() {
        out.push_str("  no guests\n");
    } else {
        out.push_str(&format!(
            "  {:<8} {:<20} {:<10} {:<5} {:<9} {:<13} {}\n",
            "VMID", "NAME", "NODE", "KIND", "STATUS", "ROLE", "TALOS"
        ));
        for g in &s.guests {
            out.push_str(&format!(
                "  {:<8} {:<20} {:<10} {:<5} {:<9} {:<13} {}{}\n",
                g.vmid,
                g.name,
                g.node,
                g.kind,
                g.status,
                g.role.as_deref().unwrap_or("-"),
                g.talos.as_deref().unwrap_or("-"),
                if g.declared {
                    ""
                } else {
                    "  (no longer declared)"
                }
            ));
        }
    }
    for m in &s.missing {
        out.push_str(&format!("  missing: {m} (run `homelab-cli up`)\n"));
    }
    if let Some(k) = s.kubernetes_ready {
        out.push_str(&format!(
            "  kubernetes: {}\n",
            if k { "ready" } else { "not ready" }
        ));
    }
    out
}
