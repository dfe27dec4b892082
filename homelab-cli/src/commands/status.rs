//! `homelab-cli status`: this homelab's guests, their state and addresses, and how the
//! Talos nodes and Kubernetes answer.

use serde::Serialize;

use crate::context::{Context, Exit, OutputFormat, print_json, print_text};
use crate::engine::observed::ObservedGuest;
use crate::engine::talos::{self, NodeState};
use crate::model::desired::GuestKind;
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
    /// IP addresses: what the QEMU guest agent reports for a running VM, else the static
    /// address in the guest's Proxmox config (`ipconfig0`, or an LXC `net0`).
    pub addresses: Vec<String>,
    /// Where `addresses` came from: `agent` or `config` (`None` when there are none).
    pub address_source: Option<String>,
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
    let session = Session::open_env(&args.config.config, args.config.env(), &args.sim).await?;
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
    let mut owned = super::down::owned_guests(session).await?;
    confirm_fresh(session, &mut owned).await;
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
        let (addresses, address_source) = addresses(session, g).await;
        guests.push(GuestStatus {
            vmid: g.vmid,
            name: g.name.clone().unwrap_or_default(),
            node: g.node.clone(),
            kind: g.kind.noun().into(),
            // A template never runs: say what it is rather than "stopped".
            status: if g.template {
                "template".into()
            } else {
                g.status.clone()
            },
            addresses,
            address_source: address_source.map(String::from),
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

/// `/cluster/resources` takes a guest's name and status from pvestatd's last report (every
/// 10 s; pve-manager `PVE::API2::Cluster` `resources`), so a guest created moments ago shows
/// `unknown` and no name. Ask such a guest itself (`status/current`), and take its name from
/// its configuration when that is all we have.
async fn confirm_fresh(session: &Session, owned: &mut [ObservedGuest]) {
    for g in owned
        .iter_mut()
        .filter(|g| g.status == "unknown" || g.name.is_none())
    {
        let n = session.pve.node(&g.node);
        let status = match g.kind {
            GuestKind::Qemu => n.qemu(g.vmid).status().await,
            GuestKind::Lxc => n.lxc(g.vmid).status().await,
        };
        if let Ok(s) = status {
            g.status = s.status;
            if g.name.is_none() {
                g.name = s.name;
            }
        }
        if g.name.is_none() {
            let key = match g.kind {
                GuestKind::Qemu => "name",
                GuestKind::Lxc => "hostname",
            };
            g.name = g.config.as_ref().and_then(|c| c.props.get(key).cloned());
        }
    }
}

/// A guest's addresses: the guest agent's view for a running VM with `agent` enabled (one
/// call per such VM), else the static address its config declares.
async fn addresses(session: &Session, g: &ObservedGuest) -> (Vec<String>, Option<&'static str>) {
    let props = g.config.as_ref().map(|c| &c.props);
    let agent_on = props
        .and_then(|p| p.get("agent"))
        .is_some_and(|a| agent_enabled(a));
    if g.kind == GuestKind::Qemu && g.status == "running" && agent_on {
        let vm = session.pve.node(&g.node).qemu(g.vmid);
        if let Ok(ifaces) = vm.agent_network_interfaces().await {
            let found = agent_addresses(&ifaces);
            if !found.is_empty() {
                return (found, Some("agent"));
            }
        }
    }
    let found = props.map(config_addresses).unwrap_or_default();
    let source = (!found.is_empty()).then_some("config");
    (found, source)
}

/// `agent: 1` or `agent: enabled=1,...`.
fn agent_enabled(value: &str) -> bool {
    value.split(',').any(|part| {
        let v = part.strip_prefix("enabled=").unwrap_or(part);
        v == "1"
    })
}

/// Addresses from guest-agent interfaces, leaving out IPv6 link-local addresses as well
/// (they identify nothing outside the guest's link).
fn agent_addresses(ifaces: &[proxmox_client::models::AgentInterface]) -> Vec<String> {
    crate::engine::observe::agent_addresses(ifaces)
        .filter(|a| !a.ip_address.to_ascii_lowercase().starts_with("fe80:"))
        .map(|a| a.ip_address.clone())
        .collect()
}

/// Static addresses in a guest config: `ipconfigN: ip=A/N,...` (QEMU cloud-init) or
/// `netN: ...,ip=A/N,...` (LXC); `dhcp`/`manual`/`auto` say nothing about the address.
fn config_addresses(props: &std::collections::BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    for (key, value) in props {
        if !(key.starts_with("ipconfig") || key.starts_with("net")) {
            continue;
        }
        for part in value.split(',') {
            let addr = part
                .strip_prefix("ip=")
                .or_else(|| part.strip_prefix("ip6="));
            if let Some(addr) = addr
                && !matches!(addr, "dhcp" | "manual" | "auto")
            {
                out.push(addr.split('/').next().unwrap_or(addr).to_string());
            }
        }
    }
    out
}

fn render(s: &Status, _ctx: &Context) -> String {
    let mut out = format!("homelab {}\n", s.homelab);
    if s.guests.is_empty() {
        out.push_str("  no guests\n");
    } else {
        out.push_str(&format!(
            "  {:<8} {:<20} {:<10} {:<5} {:<9} {:<16} {:<13} {}\n",
            "VMID", "NAME", "NODE", "KIND", "STATUS", "ADDRESS", "ROLE", "TALOS"
        ));
        for g in &s.guests {
            out.push_str(&format!(
                "  {:<8} {:<20} {:<10} {:<5} {:<9} {:<16} {:<13} {}{}\n",
                g.vmid,
                g.name,
                g.node,
                g.kind,
                g.status,
                if g.addresses.is_empty() {
                    "-".to_string()
                } else {
                    g.addresses.join(",")
                },
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_addresses_come_from_ipconfig_and_lxc_net() {
        let props: std::collections::BTreeMap<String, String> = [
            ("ipconfig0", "ip=127.0.10.11/24,gw=127.0.10.1"),
            ("ipconfig1", "ip=dhcp"),
            (
                "net0",
                "name=eth0,bridge=vmbr0,ip=10.1.2.3/24,gw=10.1.2.1,ip6=fd00::5/64",
            ),
            ("net1", "virtio=BC:24:11:00:00:01,bridge=vmbr0"),
            ("memory", "2048"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            config_addresses(&props),
            vec!["127.0.10.11", "10.1.2.3", "fd00::5"]
        );
    }

    #[test]
    fn agent_flag_forms() {
        assert!(agent_enabled("1"));
        assert!(agent_enabled("enabled=1,fstrim_cloned_disks=1"));
        assert!(!agent_enabled("0"));
        assert!(!agent_enabled("enabled=0"));
    }
}
