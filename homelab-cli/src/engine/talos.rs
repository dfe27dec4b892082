//! The Talos side: the secrets bundle kept encrypted in the repository, machine
//! configurations, node probes, and the client configurations `up` writes.

use std::net::IpAddr;
use std::time::Duration;

use secrecy::ExposeSecret;
use talos_api::config::{ClusterInput, MachineConfig, MachineType, NodeInput, StaticNetwork};
use talos_api::secrets::SecretsBundle;
use talos_api::talosconfig::Talosconfig;

use crate::model::config::Role;
use crate::model::desired::{Desired, DesiredGuest, TalosCluster};

/// The interface name Talos gives the first virtio NIC on Proxmox (predictable naming off in
/// the nocloud image, so the first link is `eth0`).
pub const INTERFACE: &str = "eth0";

/// How long one probe of a node may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// The machine configuration of one node.
pub fn machine_config(
    cluster: &TalosCluster,
    guest: &DesiredGuest,
    bundle: &SecretsBundle,
) -> Result<MachineConfig, talos_api::Error> {
    let member = guest.talos.as_ref().ok_or_else(|| {
        talos_api::Error::InvalidConfig(format!("{} is not a Talos node", guest.name))
    })?;
    let mut input = ClusterInput::new(&cluster.cluster_name, &cluster.endpoint)?
        .install_disk(&member.install_disk)
        .install_image(&cluster.installer_image)
        .allow_scheduling_on_control_planes(cluster.allow_scheduling_on_control_planes)
        .cert_sans(cert_sans(cluster));
    if let Some(k) = &cluster.kubernetes_version {
        input = input.kubernetes_version(k);
    }
    let mut node = NodeInput::default().hostname(&guest.name);
    if let Some(ip) = member.ip {
        let mut net = StaticNetwork::new(INTERFACE, format!("{ip}/{}", cluster.prefix))
            .nameservers(cluster.nameservers.iter().copied());
        if let Some(gw) = cluster.gateway {
            net = net.gateway(gw);
        }
        if member.role == Role::Controlplane
            && let Some(vip) = cluster.vip
        {
            net = net.vip(vip);
        }
        node = node.network(net);
    }
    let kind = match member.role {
        Role::Controlplane => MachineType::ControlPlane,
        Role::Worker => MachineType::Worker,
    };
    let mut config = MachineConfig::generate(&input, bundle, kind, &node)?;
    member.patches.apply_to(&mut config)?;
    Ok(config)
}

/// SANs: the VIP so that clients may use it.
fn cert_sans(cluster: &TalosCluster) -> Vec<String> {
    cluster.vip.iter().map(ToString::to_string).collect()
}

/// Control-plane addresses (static ones; in declaration order).
pub fn control_plane_ips(desired: &Desired) -> Vec<IpAddr> {
    desired
        .guests
        .iter()
        .filter(|g| g.is_control_plane())
        .filter_map(|g| g.talos.as_ref().and_then(|t| t.ip))
        .collect()
}

/// The admin talosconfig for the cluster (endpoints: the control planes).
pub fn talosconfig(
    cluster: &TalosCluster,
    bundle: &SecretsBundle,
    cp_ips: &[IpAddr],
) -> Result<Talosconfig, talos_api::Error> {
    let endpoints: Vec<String> = cp_ips.iter().map(ToString::to_string).collect();
    talos_api::config::admin_talosconfig(&cluster.cluster_name, bundle, &endpoints, &endpoints)
}

/// The admin kubeconfig for the cluster.
pub fn kubeconfig(
    cluster: &TalosCluster,
    bundle: &SecretsBundle,
) -> Result<zeroize::Zeroizing<String>, talos_api::Error> {
    talos_api::kubeconfig::generate_admin(bundle, &cluster.cluster_name, &cluster.endpoint)
}

/// Whether an existing (decrypted) talosconfig still fits: same context, endpoints and CA.
/// Client certificates differ on every generation, so content equality would rewrite (and
/// re-encrypt) the file on every run.
pub fn talosconfig_current(
    existing: &str,
    cluster: &TalosCluster,
    bundle: &SecretsBundle,
    cp_ips: &[IpAddr],
) -> bool {
    let Ok(cfg) = Talosconfig::from_yaml(existing, "talosconfig") else {
        return false;
    };
    let Some(ctx) = cfg.contexts.get(&cluster.cluster_name) else {
        return false;
    };
    let want: Vec<String> = cp_ips.iter().map(ToString::to_string).collect();
    ctx.endpoints == want
        && ctx.ca.as_deref().map(str::trim) == Some(bundle.os.crt.trim())
        && ctx.crt.is_some()
        && ctx
            .key
            .as_ref()
            .is_some_and(|k| !k.expose_secret().is_empty())
}

/// Whether an existing (decrypted) kubeconfig still fits: same server and cluster CA.
pub fn kubeconfig_current(existing: &str, cluster: &TalosCluster, bundle: &SecretsBundle) -> bool {
    use base64::Engine as _;
    let Ok(doc) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(existing) else {
        return false;
    };
    let Some(c) = doc
        .get("clusters")
        .and_then(|c| c.as_sequence())
        .and_then(|s| s.first())
        .and_then(|c| c.get("cluster"))
    else {
        return false;
    };
    let server = c.get("server").and_then(|s| s.as_str());
    let ca = c
        .get("certificate-authority-data")
        .and_then(|s| s.as_str())
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok());
    server == Some(cluster.endpoint.as_str())
        && ca.is_some_and(|ca| String::from_utf8_lossy(&ca).trim() == bundle.k8s.crt.trim())
}

/// What a node answers on its Talos API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// No answer.
    Unreachable,
    /// Waiting for a configuration.
    Maintenance,
    /// Running with a configuration.
    Configured,
}

/// Probe one node.
pub async fn probe(ip: IpAddr) -> NodeState {
    match talos_api::client::is_maintenance(&ip.to_string(), PROBE_TIMEOUT).await {
        Ok(true) => NodeState::Maintenance,
        Ok(false) => NodeState::Configured,
        Err(_) => NodeState::Unreachable,
    }
}

/// An mTLS admin client to `ip` (a fresh in-memory client certificate from the bundle).
pub fn admin_client(
    cluster: &TalosCluster,
    bundle: &SecretsBundle,
    ip: IpAddr,
) -> Result<talos_api::client::ClientBuilder, talos_api::Error> {
    let cfg = talosconfig(cluster, bundle, &[ip])?;
    Ok(
        talos_api::client::ClientBuilder::from_talosconfig(&cfg, None)?
            .connect_timeout(PROBE_TIMEOUT)
            .request_timeout(Duration::from_secs(30)),
    )
}

/// Whether etcd runs on the node (i.e. the cluster was bootstrapped).
pub async fn etcd_running(cluster: &TalosCluster, bundle: &SecretsBundle, ip: IpAddr) -> bool {
    let Ok(b) = admin_client(cluster, bundle, ip) else {
        return false;
    };
    let Ok(client) = b.build() else {
        return false;
    };
    match client.service_list().await {
        Ok(lists) => lists.iter().any(|l| {
            l.services
                .iter()
                .any(|s| s.id == "etcd" && s.state.eq_ignore_ascii_case("running"))
        }),
        Err(_) => false,
    }
}

/// Parse a bundle from decrypted YAML.
pub fn bundle_from_yaml(text: &str) -> Result<SecretsBundle, talos_api::Error> {
    SecretsBundle::from_yaml(text, "talos secrets bundle")
}

/// A kubeconfig that talks to the first control plane directly (for health checks: a VIP
/// may not have moved yet; the API server's certificate names every node address).
pub fn direct_kubeconfig(
    desired: &Desired,
    cluster: &TalosCluster,
    bundle: &SecretsBundle,
) -> Result<zeroize::Zeroizing<String>, talos_api::Error> {
    let endpoint = control_plane_ips(desired).first().map_or_else(
        || cluster.endpoint.clone(),
        |ip| match ip {
            IpAddr::V4(v4) => format!("https://{v4}:6443"),
            IpAddr::V6(v6) => format!("https://[{v6}]:6443"),
        },
    );
    talos_api::kubeconfig::generate_admin(bundle, &cluster.cluster_name, &endpoint)
}
