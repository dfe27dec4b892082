//! `homelab-cli pxe serve`: network-boot the `talos.metal` machines of homelab.yaml. DHCP
//! (full or proxy), TFTP for the iPXE binaries and HTTP for each machine's script, Talos
//! kernel and initramfs (from the Image Factory, cached and checksummed) and machine config,
//! which is generated and kept in memory only.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use miette::{IntoDiagnostic, miette};
use talos_factory::ImageCache;

use crate::context::{Context, Exit, OutputFormat};
use crate::model::metal::MetalNode;
use crate::session::{Session, SimArgs};
use crate::workspace::ConfigArg;

/// `homelab-cli pxe ...`
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Serve DHCP, TFTP and HTTP until every `talos.metal` machine has fetched its config.
    Serve(ServeArgs),
}

/// DHCP mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// The only DHCP server on an isolated link: fixed lease per machine (needs `ip`).
    Full,
    /// Beside an existing DHCP server: boot options only.
    Proxy,
}

/// Flags of `homelab-cli pxe serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(flatten)]
    pub sim: SimArgs,
    /// This host's address on the boot network (clients fetch TFTP and HTTP from it).
    #[arg(long, value_name = "IPV4")]
    pub address: Ipv4Addr,
    /// The interface of the boot network (binds DHCP to it; needs CAP_NET_RAW).
    #[arg(long, value_name = "NAME")]
    pub interface: Option<String>,
    /// DHCP mode.
    #[arg(long, value_enum, default_value_t = Mode::Proxy)]
    pub mode: Mode,
    /// Directory with the iPXE binaries served over TFTP (Debian: the `ipxe` package).
    #[arg(long, value_name = "DIR", default_value = "/usr/lib/ipxe")]
    pub ipxe_dir: PathBuf,
    /// Where Talos kernels and initramfs are cached.
    #[arg(long, value_name = "DIR", default_value = ".homelab/cache/netboot")]
    pub cache_dir: PathBuf,
    /// Serve only these machines (names from `talos.metal`).
    #[arg(long = "only", value_name = "NAME")]
    pub only: Vec<String>,
    /// Keep serving after every machine has fetched its config (until Ctrl-C).
    #[arg(long)]
    pub keep: bool,
    /// DHCP server port.
    #[arg(long, default_value_t = 67, hide = true)]
    pub dhcp_port: u16,
    /// DHCP client port (replies to clients without an address are broadcast there).
    #[arg(long, default_value_t = 68, hide = true)]
    pub dhcp_client_port: u16,
    /// TFTP port.
    #[arg(long, default_value_t = 69)]
    pub tftp_port: u16,
    /// HTTP port.
    #[arg(long, default_value_t = 8080)]
    pub http_port: u16,
    /// Output: one line per event for people, or one JSON object per line.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// Run `pxe`.
pub async fn run(cmd: Command, ctx: &Context) -> miette::Result<Exit> {
    match cmd {
        Command::Serve(a) => serve(a, ctx).await,
    }
}

async fn serve(a: ServeArgs, ctx: &Context) -> miette::Result<Exit> {
    let session = Session::open_env(&a.config.config, a.config.env(), &a.sim).await?;
    let cluster = session
        .desired
        .talos
        .clone()
        .ok_or_else(|| miette!("homelab.yaml has no `talos` section"))?;
    let mut nodes: Vec<MetalNode> = cluster.metal.clone();
    for name in &a.only {
        if !nodes.iter().any(|n| &n.name == name) {
            return Err(miette!("--only {name}: no such machine in `talos.metal`"));
        }
    }
    if !a.only.is_empty() {
        nodes.retain(|n| a.only.contains(&n.name));
    }
    if nodes.is_empty() {
        return Err(miette!(
            help = "declare machines under `talos.metal` (name, mac, role, ip)",
            "no bare-metal machines to serve"
        ));
    }
    let bundle = session.bundle()?.ok_or_else(|| {
        miette!(
            help = "run `homelab-cli up` once (it creates the cluster's secrets bundle), or `homelab-cli talos gen secrets`",
            "the Talos secrets bundle {} does not exist yet",
            cluster.secrets_file.display()
        )
    })?;

    let factory = session.factory()?;
    let cache_dir = if a.cache_dir.is_absolute() {
        a.cache_dir.clone()
    } else {
        session.ws.loaded.dir.join(&a.cache_dir)
    };
    let cache = ImageCache::new(cache_dir);

    let mut builder = netboot::ServerConfig::builder(a.address)
        .ports(netboot::Ports {
            dhcp: a.dhcp_port,
            dhcp_client: a.dhcp_client_port,
            proxy: 4011,
            tftp: a.tftp_port,
            http: a.http_port,
        })
        .tftp_root(&a.ipxe_dir);
    if let Some(i) = &a.interface {
        builder = builder.interface(i.clone());
    }
    builder = builder.mode(match a.mode {
        Mode::Proxy => netboot::DhcpMode::Proxy,
        Mode::Full => {
            let mut full = netboot::FullDhcp::with_prefix(cluster.prefix).into_diagnostic()?;
            full.router = match cluster.gateway {
                Some(std::net::IpAddr::V4(g)) => Some(g),
                _ => None,
            };
            full.dns = cluster
                .nameservers
                .iter()
                .filter_map(|n| match n {
                    std::net::IpAddr::V4(v) => Some(*v),
                    _ => None,
                })
                .collect();
            netboot::DhcpMode::Full(full)
        }
    });
    let hosts =
        crate::engine::metal::netboot_hosts(&factory, &cache, &cluster, &nodes, &bundle, None)
            .await
            .map_err(|e| miette!("{e}"))?;
    for host in hosts {
        builder = builder.host(host);
    }
    let server_cfg = builder.build().map_err(|e| miette!("{e}"))?;
    let server = netboot::Server::start(server_cfg)
        .await
        .map_err(|e| miette!("{e}"))?;
    let mut events = server.events();
    if a.output == OutputFormat::Text && ctx.verbosity >= 0 {
        eprintln!(
            "serving {} machine(s): DHCP {} ({:?}), TFTP {}, HTTP {}; Ctrl-C stops",
            nodes.len(),
            server.dhcp_addr(),
            a.mode,
            server.tftp_addr(),
            server.http_addr()
        );
    }
    let names: std::collections::BTreeMap<netboot::MacAddr, String> = server
        .config()
        .hosts()
        .map(|h| (h.mac, h.name.clone()))
        .collect();
    {
        let done = server.all_configs_fetched();
        tokio::pin!(done);
        let mut finished = false;
        loop {
            tokio::select! {
                ev = events.recv() => match ev {
                    Ok(ev) => report(&a.output, &names, &ev),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => break,
                },
                () = &mut done, if !finished => {
                    finished = true;
                    // Let the last events print.
                    while let Ok(ev) = events.try_recv() {
                        report(&a.output, &names, &ev);
                    }
                    if a.output == OutputFormat::Text {
                        eprintln!("every machine has fetched its config{}", if a.keep { "; still serving (--keep)" } else { "" });
                    }
                    if !a.keep {
                        break;
                    }
                },
                _ = tokio::signal::ctrl_c() => break,
            }
        }
    }
    server.shutdown();
    Ok(Exit::Success)
}

fn report(
    output: &OutputFormat,
    names: &std::collections::BTreeMap<netboot::MacAddr, String>,
    ev: &netboot::Event,
) {
    if *output == OutputFormat::Json {
        if let Ok(line) = serde_json::to_string(ev) {
            println!("{line}");
        }
        return;
    }
    use netboot::Event as E;
    let who = |mac: &netboot::MacAddr| names.get(mac).cloned().unwrap_or_else(|| mac.to_string());
    let line = match ev {
        E::Offered {
            mac,
            address,
            boot_file,
        } => format!(
            "{:<16} DHCP offer{} boot {boot_file}",
            who(mac),
            address.map(|a| format!(" {a}")).unwrap_or_default()
        ),
        E::Acked { mac, address } => format!(
            "{:<16} DHCP ack{}",
            who(mac),
            address.map(|a| format!(" {a}")).unwrap_or_default()
        ),
        E::AddressLearned { mac, address } => {
            format!("{:<16} address {address} (site DHCP)", who(mac))
        }
        E::Nacked { mac, requested } => {
            format!("{:<16} DHCP nak (asked for {requested:?})", who(mac))
        }
        E::IgnoredMac { mac } => format!("{mac:<16} ignored (not in talos.metal)"),
        E::TftpStarted { peer, file, .. } => format!("{peer:<16} TFTP {file} ..."),
        E::TftpCompleted {
            mac,
            peer,
            file,
            bytes,
        } => format!(
            "{:<16} TFTP {file} done ({bytes} bytes)",
            mac.as_ref().map(who).unwrap_or_else(|| peer.to_string())
        ),
        E::TftpFailed { peer, file, reason } => format!("{peer:<16} TFTP {file} refused: {reason}"),
        E::ScriptFetched { mac, .. } => format!("{:<16} iPXE script", who(mac)),
        E::KernelFetched { mac } => format!("{:<16} kernel", who(mac)),
        E::InitramfsFetched { mac } => format!("{:<16} initramfs", who(mac)),
        E::ConfigFetched { mac, peer } => {
            format!("{:<16} machine config fetched from {}", who(mac), peer.ip())
        }
        E::ConfigRefused { mac, peer, status } => {
            format!("{mac:<16} config refused to {} ({status})", peer.ip())
        }
        _ => format!("{ev:?}"),
    };
    eprintln!("{line}");
}
