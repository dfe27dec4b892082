//! Bare-metal Talos nodes (`talos.metal`) in `plan`, `up` and `status`: what they need to
//! network-boot (machine config, kernel, initramfs: the same as `pxe serve` serves), how they
//! are observed (their Talos API at their address, their Kubernetes node), the plan action
//! for one that has not joined yet, and the `up` steps that bring it in.
//!
//! They are not Proxmox guests: nothing is created. Under `--simulate`, `up` serves the boot
//! network itself on loopback and powers the simulated machine on; with a real lab it says
//! how to run `homelab-cli pxe serve` and waits for the machine (bounded, talking).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use secrecy::SecretSlice;
use serde::Serialize;
use talos_api::config::{ClusterInput, MachineConfig, MachineType, NodeInput};
use talos_api::secrets::SecretsBundle;
use talos_factory::{Arch, Asset, FactoryClient, ImageCache, Platform, SchematicId, TalosVersion};

use super::apply::Env;
use super::graph::{Step, StepError};
use super::observed::TalosObserved;
use super::plan::Action;
use super::talos::{self, NodeState};
use crate::model::config::Role;
use crate::model::desired::{Desired, TalosCluster};
use crate::model::metal::{MetalArch, MetalNode};

/// The machine config of one metal node: the same cluster, secrets, settings and patches
/// (cluster-wide and its role's) as the VM nodes, the metal installer, and the address from
/// DHCP (the fixed lease in full mode).
pub fn metal_machine_config(
    cluster: &TalosCluster,
    installer: &str,
    default_disk: Option<&str>,
    node: &MetalNode,
    bundle: &SecretsBundle,
) -> Result<MachineConfig, talos_api::Error> {
    let disk = node
        .install_disk
        .as_deref()
        .or(default_disk)
        .unwrap_or("/dev/sda");
    let mut input = ClusterInput::new(&cluster.cluster_name, &cluster.endpoint)?
        .install_disk(disk)
        .install_image(installer)
        .allow_scheduling_on_control_planes(cluster.allow_scheduling_on_control_planes)
        .cert_sans(
            cluster
                .vip
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
        );
    if let Some(k) = &cluster.kubernetes_version {
        input = input.kubernetes_version(k);
    }
    let kind = match node.role {
        Role::Controlplane => MachineType::ControlPlane,
        Role::Worker => MachineType::Worker,
    };
    let mut config = MachineConfig::generate(
        &input,
        bundle,
        kind,
        &NodeInput::default().hostname(&node.name),
    )?;
    cluster
        .metal_patches
        .for_role(node.role)
        .apply_to(&mut config)?;
    Ok(config)
}

fn factory_arch(a: MetalArch) -> Arch {
    match a {
        MetalArch::Amd64 => Arch::Amd64,
        MetalArch::Arm64 => Arch::Arm64,
    }
}

fn netboot_arch(a: MetalArch) -> netboot::Arch {
    match a {
        MetalArch::Amd64 => netboot::Arch::Amd64,
        MetalArch::Arm64 => netboot::Arch::Arm64,
    }
}

/// DHCP option 93 the machine's UEFI firmware sends (RFC 4578: 7 x86-64, 11 ARM64).
pub fn client_arch(a: MetalArch) -> u16 {
    match a {
        MetalArch::Amd64 => 7,
        MetalArch::Arm64 => 11,
    }
}

/// The boot-server entries of `nodes`: the Talos kernel and initramfs of the cluster's
/// schematic and version (downloaded once into `cache`, checksummed), the factory's `metal`
/// kernel command line, and the machine config, generated in memory.
pub async fn netboot_hosts(
    factory: &FactoryClient,
    cache: &ImageCache,
    cluster: &TalosCluster,
    nodes: &[MetalNode],
    bundle: &SecretsBundle,
    default_disk: Option<&str>,
) -> Result<Vec<netboot::Host>, String> {
    let id = SchematicId::from_str(&cluster.schematic_id)
        .map_err(|e| format!("schematic {}: {e}", cluster.schematic_id))?;
    let version =
        TalosVersion::from_str(&cluster.version).map_err(|e| format!("talos.version: {e}"))?;
    let installer = factory
        .urls()
        .installer(&id, &version, &Platform::metal(), false)
        .to_string();
    let mut hosts = Vec::new();
    for node in nodes {
        let arch = factory_arch(node.arch);
        let mut paths = Vec::new();
        for asset in [Asset::Kernel { arch }, Asset::Initramfs { arch }] {
            let got = factory
                .download_to_cache(cache, &id, &version, &asset, |_| {})
                .await
                .map_err(|e| {
                    format!(
                        "cannot download {} from the Image Factory: {e}",
                        asset.file_name()
                    )
                })?;
            paths.push(got.path);
        }
        let cmdline_asset = Asset::Cmdline {
            platform: Platform::metal(),
            arch,
            secureboot: false,
        };
        let cmdline = factory
            .download_to_cache(cache, &id, &version, &cmdline_asset, |_| {})
            .await
            .map_err(|e| format!("cannot download the kernel command line: {e}"))?;
        let cmdline = std::fs::read_to_string(&cmdline.path)
            .map_err(|e| format!("cannot read {}: {e}", cmdline.path.display()))?;
        let config = metal_machine_config(cluster, &installer, default_disk, node, bundle)
            .map_err(|e| format!("machine config of {}: {e}", node.name))?;
        let yaml = config.to_yaml();
        let mut it = paths.into_iter();
        let (Some(kernel), Some(initramfs)) = (it.next(), it.next()) else {
            return Err("internal: kernel and initramfs paths missing".into());
        };
        hosts.push(netboot::Host {
            name: node.name.clone(),
            mac: node
                .mac
                .parse()
                .map_err(|e| format!("{}: {e}", node.name))?,
            address: node.ip,
            arch: netboot_arch(node.arch),
            kernel,
            initramfs,
            cmdline: cmdline.split_whitespace().map(str::to_owned).collect(),
            config: Arc::new(SecretSlice::from(yaml.as_bytes().to_vec())),
        });
    }
    Ok(hosts)
}

/// A metal node as observed.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct MetalObserved {
    /// `maintenance`, `configured`, `unreachable`, or `unknown` (no `ip` to reach it at).
    pub talos: String,
    /// The Talos version it reports (configured nodes, with the secrets bundle).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Whether Kubernetes lists it as a Ready node (`None`: not asked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubernetes_ready: Option<bool>,
    /// The machine config it runs (configured nodes, with the secrets bundle); it holds
    /// key material, so it is never serialised.
    #[serde(skip)]
    pub config: Option<String>,
}

/// Probe every metal node at its address: Talos API state, version, Kubernetes node.
pub async fn observe(
    desired: &Desired,
    bundle: Option<&SecretsBundle>,
) -> BTreeMap<String, MetalObserved> {
    let Some(cluster) = &desired.talos else {
        return BTreeMap::new();
    };
    let kubeconfig = bundle.and_then(|b| talos::direct_kubeconfig(desired, cluster, b).ok());
    let probes = cluster.metal.iter().map(|m| {
        let kubeconfig = kubeconfig.clone();
        async move {
            let Some(ip) = m.ip else {
                // No address to probe (proxy mode without a reservation): Kubernetes still
                // knows the node by its name once it joined.
                let kubernetes_ready = match &kubeconfig {
                    Some(kc) => talos_api::health::kubernetes_node_ready(kc, &m.name)
                        .await
                        .ok(),
                    None => None,
                };
                return (
                    m.name.clone(),
                    MetalObserved {
                        talos: "unknown".into(),
                        kubernetes_ready,
                        ..MetalObserved::default()
                    },
                );
            };
            let state = probe(IpAddr::V4(ip)).await;
            let mut o = MetalObserved {
                talos: state_word(state).into(),
                ..MetalObserved::default()
            };
            if state == NodeState::Configured
                && let Some(b) = bundle
            {
                let at = [(0, IpAddr::V4(ip))];
                let (versions, mut running) = futures_util::join!(
                    super::day2::observe_versions(cluster, b, &at),
                    super::config_change::observe(cluster, b, &at)
                );
                o.version = versions.get(&0).cloned();
                o.config = running.remove(&0).and_then(|r| r.config);
                if let Some(kc) = &kubeconfig {
                    o.kubernetes_ready = talos_api::health::kubernetes_node_ready(kc, &m.name)
                        .await
                        .ok();
                }
            }
            (m.name.clone(), o)
        }
    });
    futures_util::future::join_all(probes)
        .await
        .into_iter()
        .collect()
}

/// Probe a metal node: nothing accepting on its apid port is `Unreachable` (the Talos
/// probe alone cannot tell a refused connection from a configured node's mTLS refusal, and
/// unlike a VM there is no power state to look at first), else what [`talos::probe`] says.
pub async fn probe(ip: IpAddr) -> NodeState {
    let addr = SocketAddr::new(ip, 50000);
    match tokio::time::timeout(talos::PROBE_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => talos::probe(ip).await,
        _ => NodeState::Unreachable,
    }
}

/// The word `status` uses for a node state.
pub fn state_word(s: NodeState) -> &'static str {
    match s {
        NodeState::Maintenance => "maintenance",
        NodeState::Configured => "configured",
        NodeState::Unreachable => "unreachable",
    }
}

/// The actions for metal nodes (pure): every one that does not run its configuration yet
/// is to boot over the network and join.
pub fn plan(desired: &Desired, observed: &TalosObserved) -> Vec<Action> {
    let Some(cluster) = &desired.talos else {
        return Vec::new();
    };
    cluster
        .metal
        .iter()
        .filter_map(|m| {
            let seen = observed.metal.get(&m.name);
            let state = match (seen, m.ip) {
                (Some(o), _) => o.talos.as_str(),
                (None, Some(_)) => "unreachable",
                (None, None) => "unknown",
            };
            // Without an address, a Ready Kubernetes node of its name is the evidence.
            let joined = m.ip.is_none() && seen.is_some_and(|o| o.kubernetes_ready == Some(true));
            (state != "configured" && !joined).then(|| Action::BootMetal {
                name: m.name.clone(),
                mac: m.mac.clone(),
                role: m.role.to_string(),
                address: m.ip,
                install_disk: m.install_disk.clone().unwrap_or_default(),
                state: state.to_string(),
            })
        })
        .chain(upgrades(cluster, observed))
        .collect()
}

/// The metal installer of the cluster's schematic and version: the VM nodes' (nocloud)
/// installer reference with the `metal` platform (`<registry>/metal-installer/<id>:<v>`
/// from Talos 1.10; the legacy `installer` repository is the metal one already).
pub fn metal_installer(cluster: &TalosCluster) -> String {
    cluster
        .installer_image
        .replacen("/nocloud-installer", "/metal-installer", 1)
}

/// Upgrades of running metal nodes whose reported version differs from `talos.version`:
/// control planes first, then workers, in declaration order (as for the VM nodes).
fn upgrades(cluster: &TalosCluster, observed: &TalosObserved) -> Vec<Action> {
    let mut out = Vec::new();
    for role in [Role::Controlplane, Role::Worker] {
        for m in cluster.metal.iter().filter(|m| m.role == role) {
            let Some(o) = observed.metal.get(&m.name) else {
                continue;
            };
            let Some(running) = &o.version else { continue };
            if o.talos != "configured" || *running == cluster.version {
                continue;
            }
            out.push(Action::UpgradeMetal {
                name: m.name.clone(),
                role: role.to_string(),
                from: running.clone(),
                to: cluster.version.clone(),
                image: metal_installer(cluster),
            });
        }
    }
    out
}

/// The rolling metal upgrades: one after the other, after every other step that upgrades
/// a node (the VM nodes roll first).
pub fn upgrade_steps(env: &Arc<Env>, actions: &[Action], existing: &[Step]) -> Vec<Step> {
    let mut previous: Vec<String> = existing
        .iter()
        .filter(|s| s.id.starts_with("upgrade:"))
        .map(|s| s.id.clone())
        .collect();
    let mut out = Vec::new();
    for a in actions {
        let Action::UpgradeMetal {
            name,
            role,
            from,
            to,
            image,
        } = a.clone()
        else {
            continue;
        };
        let id = format!("metal-upgrade:{name}");
        let e = env.clone();
        out.push(Step {
            id: id.clone(),
            label: format!("upgrade Talos on metal {role} \"{name}\": {from} -> {to} (reboots)"),
            deps: std::mem::take(&mut previous),
            run: async move { upgrade(&e, &name, &to, &image).await }.boxed(),
        });
        previous = vec![id];
    }
    out
}

/// Upgrade one metal node (Talos's Upgrade RPC with the installer image) and wait until it
/// runs the new version (a control plane: with etcd healthy again).
async fn upgrade(env: &Env, name: &str, to: &str, image: &str) -> Result<String, StepError> {
    let MetalTarget {
        node,
        builder,
        client,
        ..
    } = metal_target(env, name)?;
    let tag_of = |v: Vec<talos_api::proto::machine::Version>| {
        v.first()
            .and_then(|x| x.version.as_ref())
            .map(|x| x.tag.clone())
            .unwrap_or_default()
    };
    // A re-run after the node already took the upgrade only waits for it.
    let current = client.version().await.ok().map(tag_of);
    if current.as_deref() != Some(to) {
        client
            .upgrade(talos_api::proto::machine::UpgradeRequest {
                image: image.to_string(),
                ..Default::default()
            })
            .await
            .map_err(|e| StepError::new(format!("{name}: upgrade refused: {e}")))?;
    }
    let opts = wait_options(env);
    super::waits::announce(&format!("metal node {name} to run {to}"), opts.deadline);
    let stuck = |what: String| {
        StepError::new(format!(
            "metal node {name} did not come back on {to}: {what}; the roll stopped here"
        ))
        .hint("look at the machine's console; once it answers, re-run `homelab-cli up` to resume the roll")
    };
    let client = talos_api::health::wait_for("the new Talos version", &opts, || {
        let b = builder.clone();
        async move {
            let c = b.build()?;
            let tag = tag_of(c.version().await?);
            if tag == to {
                Ok(c)
            } else {
                Err(talos_api::Error::InvalidConfig(format!("still on {tag}")))
            }
        }
    })
    .await
    .map_err(|e| stuck(e.to_string()))?;
    if node.role == Role::Controlplane {
        talos_api::health::wait_etcd_healthy(&client, &opts)
            .await
            .map_err(|e| stuck(format!("etcd: {e}")))?;
    }
    Ok(format!("{name} runs {to}"))
}

/// How `up` brings a metal machine onto the network.
pub enum MetalBoot {
    /// The simulator: `up` serves the boot network on loopback and powers the simulated
    /// machine on.
    Simulated {
        /// Powers machines on.
        power: Arc<dyn MetalPower>,
        /// The TFTP root (a stand-in iPXE binary).
        tftp_root: PathBuf,
    },
    /// A real lab: the user runs `homelab-cli pxe serve` and powers the machine on; `up`
    /// waits for it.
    External,
}

impl std::fmt::Debug for MetalBoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MetalBoot::Simulated { tftp_root, .. } => f
                .debug_struct("Simulated")
                .field("tftp_root", tftp_root)
                .finish_non_exhaustive(),
            MetalBoot::External => f.write_str("External"),
        }
    }
}

/// What the metal steps of `up` need besides [`Env`].
#[derive(Debug)]
pub struct MetalEnv {
    /// How machines boot.
    pub boot: MetalBoot,
    /// Where kernels and initramfs are cached (`.homelab/cache/netboot`).
    pub cache_dir: PathBuf,
    /// The `pxe serve` command line to suggest (real lab).
    pub serve_hint: String,
}

/// One machine to power on (the simulator's side of `up`).
#[derive(Debug, Clone)]
pub struct PowerOn {
    /// Its name in homelab.yaml.
    pub name: String,
    /// Its NIC.
    pub mac: [u8; 6],
    /// Its (loopback) address.
    pub ip: Ipv4Addr,
    /// DHCP option 93 of its firmware.
    pub arch: u16,
    /// Its install disk (the machine has this disk).
    pub install_disk: String,
    /// The boot server's DHCP socket.
    pub dhcp: SocketAddr,
    /// The boot server's TFTP port.
    pub tftp_port: u16,
}

/// Powers machines on; implemented by the simulated lab.
pub trait MetalPower: Send + Sync {
    /// Power the machine on and let it network-boot; resolves once it runs Talos (a short
    /// description of how it came up) or failed to boot.
    fn power_on(&self, machine: PowerOn) -> BoxFuture<'static, Result<String, String>>;
}

/// The steps of one [`Action::BootMetal`]: boot and configure, then join (after the cluster
/// is healthy): its Kubernetes node is Ready, and a control plane's etcd runs.
pub fn steps(env: &Arc<Env>, metal: Option<&Arc<MetalEnv>>, name: &str) -> Vec<Step> {
    let role = env
        .desired
        .talos
        .as_ref()
        .and_then(|c| c.metal.iter().find(|m| m.name == name))
        .map(|m| m.role.to_string())
        .unwrap_or_default();
    let (e, m, n) = (env.clone(), metal.cloned(), name.to_string());
    let boot = Step {
        id: format!("metal:{name}"),
        label: format!("network-boot metal {role} \"{name}\""),
        deps: vec!["talos-secrets".into()],
        run: async move { boot_and_configure(&e, m.as_deref(), &n).await }.boxed(),
    };
    let (e, n) = (env.clone(), name.to_string());
    let join = Step {
        id: format!("metal-join:{name}"),
        label: format!("wait for metal {role} \"{name}\" to join the cluster"),
        deps: vec![format!("metal:{name}"), "bootstrap".into(), "health".into()],
        run: async move { join(&e, &n).await }.boxed(),
    };
    vec![boot, join]
}

/// What a step needs to talk to one running metal node over mTLS.
pub(crate) struct MetalTarget<'a> {
    pub cluster: &'a TalosCluster,
    pub node: &'a MetalNode,
    pub bundle: &'a SecretsBundle,
    pub builder: talos_api::client::ClientBuilder,
    pub client: talos_api::client::Client,
}

/// The [`MetalTarget`] of the metal node `name` (it needs an `ip`).
pub(crate) fn metal_target<'a>(env: &'a Env, name: &str) -> Result<MetalTarget<'a>, StepError> {
    let (cluster, node) = metal_node(env, name)?;
    let bundle = env
        .bundle
        .get()
        .ok_or_else(|| StepError::new("no Talos secrets bundle"))?;
    let ip = node
        .ip
        .ok_or_else(|| StepError::new(format!("metal node {name} has no `ip`")))?;
    let builder = talos::admin_client(cluster, bundle, IpAddr::V4(ip))
        .map_err(|e| StepError::new(e.to_string()))?;
    let client = builder
        .clone()
        .build()
        .map_err(|e| StepError::new(format!("Talos client: {e}")))?;
    Ok(MetalTarget {
        cluster,
        node,
        bundle,
        builder,
        client,
    })
}

fn metal_node<'a>(
    env: &'a Env,
    name: &str,
) -> Result<(&'a TalosCluster, &'a MetalNode), StepError> {
    let cluster = env
        .desired
        .talos
        .as_ref()
        .ok_or_else(|| StepError::new("no Talos cluster"))?;
    let node = cluster
        .metal
        .iter()
        .find(|m| m.name == name)
        .ok_or_else(|| StepError::new(format!("metal node {name} is not declared")))?;
    Ok((cluster, node))
}

fn wait_options(env: &Env) -> talos_api::health::WaitOptions<'static> {
    talos_api::health::WaitOptions::new(env.timeouts.talos)
        .interval(env.timeouts.poll)
        .progress(&super::waits::report)
}

async fn boot_and_configure(
    env: &Env,
    metal: Option<&MetalEnv>,
    name: &str,
) -> Result<String, StepError> {
    let (cluster, node) = metal_node(env, name)?;
    let bundle = env
        .bundle
        .get()
        .ok_or_else(|| StepError::new("no Talos secrets bundle"))?;
    let Some(ip) = node.ip else {
        if matches!(metal.map(|m| &m.boot), Some(MetalBoot::Simulated { .. })) {
            return Err(StepError::new(format!(
                "metal node {name} has no `ip`: the simulated boot network gives fixed leases only"
            ))
            .hint("declare a loopback `ip` (e.g. 127.0.30.21) for it in `talos.metal`"));
        }
        // Proxy mode without a reservation: its address comes from the site's DHCP server.
        // The join step follows it through Kubernetes by name.
        let hint = metal.map_or("homelab-cli pxe serve", |m| m.serve_hint.as_str());
        eprintln!(
            "  metal node {name} ({}): power it on to boot from the network, with `{hint} --only {name}` running on its network; without `ip` it is followed through Kubernetes",
            node.mac
        );
        return Ok("no `ip`: followed through Kubernetes".into());
    };
    let mut detail = String::new();
    match metal.map(|m| &m.boot) {
        Some(MetalBoot::Simulated { power, tftp_root }) => {
            let m = metal.ok_or_else(|| StepError::new("internal: no metal environment"))?;
            detail =
                simulated_boot(env, m, power.as_ref(), tftp_root, cluster, node, bundle).await?;
        }
        _ => {
            let hint = metal.map_or("homelab-cli pxe serve", |m| m.serve_hint.as_str());
            eprintln!(
                "  metal node {name} ({}): power it on to boot from the network, with `{hint} --only {name}` running on its network",
                node.mac
            );
        }
    }
    let opts = wait_options(env);
    super::waits::announce(
        &format!("the Talos API of metal node {name} at {ip}"),
        opts.deadline,
    );
    let addr = IpAddr::V4(ip);
    let state = talos_api::health::wait_for("the Talos API", &opts, || async move {
        match probe(addr).await {
            NodeState::Unreachable => Err(talos_api::Error::InvalidConfig("no answer yet".into())),
            s => Ok(s),
        }
    })
    .await
    .map_err(|e| {
        StepError::new(format!("metal node {name} does not answer on the Talos API: {e}")).hint(
            "check that it network-boots (`homelab-cli pxe serve` shows each stage) and that its address is reachable",
        )
    })?;
    if state == NodeState::Maintenance {
        // Booted without a config source (`talos.config=`): apply it as for a VM node.
        let factory = env
            .factory
            .as_ref()
            .ok_or_else(|| StepError::new("no Image Factory client"))?;
        let id = SchematicId::from_str(&cluster.schematic_id)
            .map_err(|e| StepError::new(format!("schematic: {e}")))?;
        let version = TalosVersion::from_str(&cluster.version)
            .map_err(|e| StepError::new(format!("talos.version: {e}")))?;
        let installer = factory
            .urls()
            .installer(&id, &version, &Platform::metal(), false)
            .to_string();
        let config = metal_machine_config(cluster, &installer, None, node, bundle)
            .map_err(|e| StepError::new(format!("machine config: {e}")))?;
        let client = talos_api::client::ClientBuilder::maintenance(&ip.to_string())
            .build()
            .map_err(|e| StepError::new(format!("Talos client: {e}")))?;
        client
            .apply_configuration(
                config.to_yaml().as_bytes(),
                talos_api::client::ApplyMode::Auto,
                false,
            )
            .await
            .map_err(|e| StepError::new(format!("apply-config: {e}")))?;
        detail.push_str(if detail.is_empty() { "" } else { "; " });
        detail.push_str("configured in maintenance mode");
    }
    let builder =
        talos::admin_client(cluster, bundle, addr).map_err(|e| StepError::new(e.to_string()))?;
    super::waits::announce(
        &format!("metal node {name} to run its configuration (mTLS)"),
        opts.deadline,
    );
    super::waits::mtls_ready(&builder, &opts, name).await?;
    if detail.is_empty() {
        detail = "running its configuration".into();
    }
    Ok(detail)
}

/// Serve this machine's boot on loopback and power it on; the server stops once it booted.
async fn simulated_boot(
    env: &Env,
    metal: &MetalEnv,
    power: &dyn MetalPower,
    tftp_root: &std::path::Path,
    cluster: &TalosCluster,
    node: &MetalNode,
    bundle: &SecretsBundle,
) -> Result<String, StepError> {
    let factory = env
        .factory
        .as_ref()
        .ok_or_else(|| StepError::new("no Image Factory client"))?;
    let cache = ImageCache::new(metal.cache_dir.clone());
    let hosts = netboot_hosts(
        factory,
        &cache,
        cluster,
        std::slice::from_ref(node),
        bundle,
        None,
    )
    .await
    .map_err(StepError::new)?;
    let ip = node
        .ip
        .ok_or_else(|| StepError::new(format!("metal node {} has no `ip`", node.name)))?;
    let mut full = netboot::FullDhcp::with_prefix(cluster.prefix)
        .map_err(|e| StepError::new(e.to_string()))?;
    full.router = match cluster.gateway {
        Some(IpAddr::V4(g)) => Some(g),
        _ => None,
    };
    let mut b = netboot::ServerConfig::builder(Ipv4Addr::LOCALHOST)
        .mode(netboot::DhcpMode::Full(full))
        .ports(netboot::Ports {
            dhcp: 0,
            dhcp_client: 68,
            proxy: 0,
            tftp: 0,
            http: 0,
        })
        .tftp_root(tftp_root);
    for h in hosts {
        b = b.host(h);
    }
    let cfg = b.build().map_err(|e| StepError::new(e.to_string()))?;
    let server = netboot::Server::start(cfg)
        .await
        .map_err(|e| StepError::new(format!("simulated boot network: {e}")))?;
    let mac: netboot::MacAddr = node
        .mac
        .parse()
        .map_err(|e| StepError::new(format!("{}: {e}", node.name)))?;
    let machine = PowerOn {
        name: node.name.clone(),
        mac: mac.0,
        ip,
        arch: client_arch(node.arch),
        install_disk: node
            .install_disk
            .clone()
            .unwrap_or_else(|| "/dev/sda".into()),
        dhcp: SocketAddr::from((Ipv4Addr::LOCALHOST, server.dhcp_addr().port())),
        tftp_port: server.tftp_addr().port(),
    };
    let booted = power.power_on(machine).await;
    let fetched = server
        .progress()
        .borrow()
        .get(&mac)
        .is_some_and(|p| p.config);
    server.shutdown();
    let how = booted
        .map_err(|e| StepError::new(format!("metal node {} did not boot: {e}", node.name)))?;
    Ok(if fetched {
        format!("network-booted, config fetched, {how}")
    } else {
        format!("network-booted, {how}")
    })
}

/// After the cluster is up: the node is a Ready Kubernetes node, and a control plane's etcd
/// runs (it joined the existing members).
async fn join(env: &Env, name: &str) -> Result<String, StepError> {
    let (cluster, node) = metal_node(env, name)?;
    let bundle = env
        .bundle
        .get()
        .ok_or_else(|| StepError::new("no Talos secrets bundle"))?;
    let kubeconfig = talos::direct_kubeconfig(&env.desired, cluster, bundle)
        .map_err(|e| StepError::new(e.to_string()))?;
    let opts = wait_options(env);
    super::waits::announce(
        &format!("Kubernetes node {name} to be Ready"),
        opts.deadline,
    );
    let kc: &str = &kubeconfig;
    talos_api::health::wait_for("the Kubernetes node", &opts, || async move {
        match talos_api::health::kubernetes_node_ready(kc, name).await? {
            true => Ok(()),
            false => Err(talos_api::Error::InvalidConfig(format!(
                "node {name} is not Ready yet"
            ))),
        }
    })
    .await
    .map_err(|e| {
        StepError::new(format!("metal node {name} did not join Kubernetes: {e}"))
            .hint("`homelab-cli status` shows the node; re-run `homelab-cli up` once it is up")
    })?;
    if node.role == Role::Controlplane
        && let Some(ip) = node.ip
    {
        let addr = IpAddr::V4(ip);
        talos_api::health::wait_for("etcd on the metal control plane", &opts, || async move {
            if talos::etcd_running(cluster, bundle, addr).await {
                Ok(())
            } else {
                Err(talos_api::Error::InvalidConfig(
                    "etcd is not running yet".into(),
                ))
            }
        })
        .await
        .map_err(|e| StepError::new(format!("etcd on {name}: {e}")))?;
        return Ok("Kubernetes node Ready, etcd member".into());
    }
    Ok("Kubernetes node Ready".into())
}

/// The plan text of an [`Action::BootMetal`].
pub fn plan_text(a: &Action, paint: &dyn Fn(&str) -> String) -> String {
    use std::fmt::Write as _;
    if let Action::UpgradeMetal {
        name,
        role,
        from,
        to,
        image,
    } = a
    {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "  # Talos on metal {role} \"{name}\" will be upgraded; the machine REBOOTS (one node at a time)"
        );
        let _ = writeln!(out, "  {} talos_upgrade \"{name}\" {{", paint("~"));
        let _ = writeln!(out, "      {} version = \"{from}\" -> \"{to}\"", paint("~"));
        let _ = writeln!(out, "        installer = \"{image}\"");
        out.push_str("    }\n");
        return out;
    }
    let Action::BootMetal {
        name,
        mac,
        role,
        address,
        install_disk,
        state,
    } = a
    else {
        return String::new();
    };
    let mut out = String::new();
    let why = match state.as_str() {
        "maintenance" => "is in maintenance mode: it gets its configuration, installs and joins",
        "unknown" => "has no `ip`: it boots over the network and joins; `up` cannot follow it",
        _ => "boots over the network (`homelab-cli pxe serve`), installs and joins",
    };
    let _ = writeln!(out, "  # metal node {name} ({mac}) {why}");
    let _ = writeln!(out, "  {} metal {role} \"{name}\" {{", paint("+"));
    let _ = writeln!(out, "      {} mac          = \"{mac}\"", paint("+"));
    if let Some(ip) = address {
        let _ = writeln!(out, "      {} address      = \"{ip}\"", paint("+"));
    }
    let _ = writeln!(
        out,
        "      {} install_disk = \"{install_disk}\"",
        paint("+")
    );
    out.push_str("    }\n");
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::model::secrets::SecretValues;

    fn desired() -> Desired {
        let text = "name: lab\nproxmox:\n  endpoint: https://pve:8006\n  token_id: a@pve!b\n  token_secret: ${secret:t}\n  node: pve\ntalos:\n  version: v1.12.0\n  cluster: {name: c}\n  defaults: {install_disk: /dev/vda}\n  nodes:\n    - {name: cp-1, vmid: 301, role: controlplane, ip: 10.0.0.11}\n  metal:\n    - {name: w-metal-1, mac: 'aa:bb:cc:00:00:01', role: worker, ip: 10.0.0.21, install_disk: /dev/nvme0n1}\n    - {name: cp-metal-2, mac: 'aa:bb:cc:00:00:02', role: controlplane, ip: 10.0.0.22}\n    - {name: w-metal-3, mac: 'aa:bb:cc:00:00:03', role: worker}\n";
        let l = crate::model::parse(std::path::Path::new("homelab.yaml"), text.into()).unwrap();
        let s = SecretValues::from_pairs([("t".to_string(), "x".to_string())]);
        crate::model::desired::resolve(&l, &s, &crate::engine::image::FactoryNaming::default())
            .unwrap()
    }

    fn seen(states: &[(&str, &str)]) -> TalosObserved {
        TalosObserved {
            secrets_present: true,
            configured: [301].into(),
            bootstrapped: true,
            talosconfig_current: true,
            kubeconfig_current: true,
            versions: [(301, "v1.12.0".to_string())].into(),
            metal: states
                .iter()
                .map(|(n, s)| {
                    (
                        n.to_string(),
                        MetalObserved {
                            talos: s.to_string(),
                            ..MetalObserved::default()
                        },
                    )
                })
                .collect(),
            ..TalosObserved::default()
        }
    }

    #[test]
    fn install_disks_are_resolved() {
        let d = desired();
        let disks: Vec<_> = d
            .talos
            .as_ref()
            .unwrap()
            .metal
            .iter()
            .map(|m| m.install_disk.clone().unwrap())
            .collect();
        assert_eq!(disks, ["/dev/nvme0n1", "/dev/vda", "/dev/vda"]);
    }

    #[test]
    fn nodes_not_running_their_config_are_booted() {
        let d = desired();
        let o = seen(&[
            ("w-metal-1", "configured"),
            ("cp-metal-2", "maintenance"),
            ("w-metal-3", "unknown"),
        ]);
        let got: Vec<(String, String)> = plan(&d, &o)
            .into_iter()
            .map(|a| match a {
                Action::BootMetal { name, state, .. } => (name, state),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            got,
            [
                ("cp-metal-2".to_string(), "maintenance".to_string()),
                ("w-metal-3".to_string(), "unknown".to_string())
            ]
        );
        let all = seen(&[
            ("w-metal-1", "configured"),
            ("cp-metal-2", "configured"),
            ("w-metal-3", "configured"),
        ]);
        assert!(plan(&d, &all).is_empty());
        // Not observed at all (first run): every one boots.
        assert_eq!(plan(&d, &seen(&[])).len(), 3);
        // Without an address, a Ready Kubernetes node of its name means it joined.
        let mut o = all.clone();
        o.metal.insert(
            "w-metal-3".into(),
            MetalObserved {
                talos: "unknown".into(),
                kubernetes_ready: Some(true),
                ..MetalObserved::default()
            },
        );
        assert!(plan(&d, &o).is_empty());
        o.metal.get_mut("w-metal-3").unwrap().kubernetes_ready = Some(false);
        assert_eq!(plan(&d, &o).len(), 1);
    }

    #[test]
    fn running_metal_nodes_on_another_version_are_upgraded_control_planes_first() {
        let d = desired();
        let mut o = seen(&[
            ("w-metal-1", "configured"),
            ("cp-metal-2", "configured"),
            ("w-metal-3", "configured"),
        ]);
        for (name, v) in [
            ("w-metal-1", "v1.11.5"),
            ("cp-metal-2", "v1.11.5"),
            ("w-metal-3", "v1.12.0"),
        ] {
            o.metal.get_mut(name).unwrap().version = Some(v.into());
        }
        let got: Vec<String> = plan(&d, &o)
            .into_iter()
            .map(|a| match a {
                Action::UpgradeMetal {
                    name,
                    from,
                    to,
                    image,
                    ..
                } => {
                    assert_eq!((from.as_str(), to.as_str()), ("v1.11.5", "v1.12.0"));
                    assert!(image.contains("/metal-installer/"), "{image}");
                    assert!(image.ends_with(":v1.12.0"), "{image}");
                    name
                }
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(got, ["cp-metal-2", "w-metal-1"]);
        // The same reference the factory client gives (what `pxe serve` installs from).
        let c = d.talos.as_ref().unwrap();
        let urls = talos_factory::FactoryUrls::public();
        let want = urls.installer(
            &c.schematic_id.parse().unwrap(),
            &c.version.parse().unwrap(),
            &Platform::metal(),
            false,
        );
        assert_eq!(metal_installer(c), want.to_string());
    }

    #[test]
    fn plan_text_shows_metal_nodes() {
        let d = desired();
        let o = seen(&[("w-metal-1", "unreachable"), ("cp-metal-2", "maintenance")]);
        let p = crate::engine::plan::plan_talos(&d, &o, crate::engine::plan::Plan::default());
        insta::assert_snapshot!("plan_metal", crate::engine::render::plan_text(&p, false));
        let json = serde_json::to_value(&p.actions[0]).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "action": "boot_metal",
                "name": "w-metal-1",
                "mac": "aa:bb:cc:00:00:01",
                "role": "worker",
                "address": "10.0.0.21",
                "install_disk": "/dev/nvme0n1",
                "state": "unreachable"
            })
        );
        let done = seen(&[
            ("w-metal-1", "configured"),
            ("cp-metal-2", "configured"),
            ("w-metal-3", "configured"),
        ]);
        let p = crate::engine::plan::plan_talos(&d, &done, crate::engine::plan::Plan::default());
        assert!(p.is_empty(), "{p:?}");
    }
}
