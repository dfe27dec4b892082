//! `--simulate`: the simulated lab (Proxmox VE, Image Factory, Talos nodes on loopback)
//! started in this process, with its state under `.homelab/sim/` beside homelab.yaml so
//! that consecutive commands see the same lab.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use homelab_sim::factory::{FactoryHandle, FactorySim};
use homelab_sim::lab::{Lab, LabHandle};
use homelab_sim::sftp::SftpServer;
use homelab_sim::talos::TalosRuntime;
use miette::miette;

/// Where a config's simulated lab keeps its state.
pub fn state_dir(config_dir: &Path) -> PathBuf {
    config_dir.join(".homelab").join("sim")
}

/// A running simulated lab.
#[derive(Debug)]
pub struct SimLab {
    /// Proxmox VE.
    pub lab: LabHandle,
    /// Image Factory.
    pub factory: FactoryHandle,
    /// Talos nodes.
    pub talos: TalosRuntime,
    /// The first node's SSH/SFTP endpoint (snippet uploads).
    pub sftp: SftpServer,
    /// How to log in there.
    pub ssh: SimSsh,
}

/// Credentials for the simulated node's SSH endpoint.
#[derive(Clone)]
pub struct SimSsh {
    /// Loopback address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// `root`.
    pub user: String,
    /// The lab's client key (OpenSSH text), kept beside the lab state.
    pub private_key: secrecy::SecretString,
    /// The host key fingerprint to pin.
    pub host_key: String,
}

impl std::fmt::Debug for SimSsh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimSsh")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("host_key", &self.host_key)
            .finish_non_exhaustive()
    }
}

/// The lab's SSH client key in `dir` (created once, mode 0600) and its public line.
fn client_key(dir: &Path) -> miette::Result<(String, String)> {
    use russh::keys::ssh_key::LineEnding;
    use russh::keys::ssh_key::private::Ed25519Keypair;
    let path = dir.join("client_ed25519");
    let key = match std::fs::read_to_string(&path) {
        Ok(text) => russh::keys::decode_secret_key(&text, None)
            .map_err(|e| miette!("{}: {e}", path.display()))?,
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(miette!("cannot read {}: {e}", path.display()));
        }
        Err(_) => {
            let key = russh::keys::PrivateKey::from(Ed25519Keypair::from_seed(&rand::random::<
                [u8; 32],
            >()));
            let text = key
                .to_openssh(LineEnding::LF)
                .map_err(|e| miette!("cannot encode the simulated lab's SSH key: {e}"))?;
            crate::workspace::write_atomic(&path, text.as_bytes(), 0o600)
                .map_err(|e| miette!("{e}"))?;
            key
        }
    };
    let text = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| miette!("cannot encode the simulated lab's SSH key: {e}"))?;
    let public = key
        .public_key()
        .to_openssh()
        .map_err(|e| miette!("cannot encode the simulated lab's SSH key: {e}"))?;
    Ok((text.to_string(), public))
}

/// Request counts of the simulated Proxmox VE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Requests {
    /// Every request.
    pub total: u64,
    /// Requests other than GET.
    pub mutating: u64,
    /// Requests the simulator refused as not matching the PVE 9.1 API schema.
    pub schema_rejected: u64,
}

/// Options for starting the lab.
#[derive(Debug, Clone, Default)]
pub struct SimOptions {
    /// Proxmox node names for a new lab.
    pub nodes: Vec<String>,
    /// Latency added to every Proxmox API answer.
    pub latency: Duration,
    /// Task duration override.
    pub task_duration: Option<Duration>,
}

/// The environment variable holding a fault profile for `--simulate`
/// ([`homelab_sim::pve::sim::Faults::apply_spec`]).
pub const FAULTS_ENV: &str = "HOMELAB_SIM_FAULTS";

impl SimLab {
    /// Start (or resume) the lab kept in `dir`.
    pub async fn start(dir: &Path, opts: &SimOptions) -> miette::Result<SimLab> {
        std::fs::create_dir_all(dir)
            .map_err(|e| miette!("cannot create {}: {e}", dir.display()))?;
        let talos = TalosRuntime::new(dir)
            .map_err(|e| miette!("cannot start the simulated Talos nodes: {e}"))?;
        let mut b = Lab::builder()
            .state_dir(dir)
            .runtime(Arc::new(talos.clone()))
            .latency(opts.latency);
        if !opts.nodes.is_empty() {
            b = b.nodes(opts.nodes.clone());
        }
        if let Some(d) = opts.task_duration {
            b = b.task_duration(d);
        }
        let lab = b
            .start()
            .await
            .map_err(|e| miette!("cannot start the simulated Proxmox VE: {e}"))?;
        // A fault profile for `--simulate` (the same grammar as `sim serve --faults`).
        if let Ok(spec) = std::env::var(FAULTS_ENV)
            && !spec.trim().is_empty()
        {
            lab.faults().apply_spec(&spec).map_err(|e| {
                miette!(
                    help = "e.g. `HOMELAB_SIM_FAULTS=resets=0.1,drops=0.1` or a named profile: flaky, slow, locks",
                    "{FAULTS_ENV}: {e}"
                )
            })?;
            eprintln!("Simulated lab with faults: {spec}");
        }
        // Installed bare-metal machines boot from their disks again.
        talos
            .resume_metal()
            .map_err(|e| miette!("cannot start the simulated bare-metal machines: {e}"))?;
        // The factory keeps its port across runs (remembered beside its state): its address
        // is part of every installer image reference, so a new port each run would read as
        // a machine-config change (`machine.install.image`) on every node.
        let port_file = dir.join("factory-port");
        let remembered: u16 = std::fs::read_to_string(&port_file)
            .ok()
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or(0);
        let at = |port: u16| std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let factory = match FactorySim::start(at(remembered), Some(dir.join("factory"))).await {
            Ok(f) => f,
            Err(_) if remembered != 0 => FactorySim::start(at(0), Some(dir.join("factory")))
                .await
                .map_err(|e| miette!("cannot start the simulated Image Factory: {e}"))?,
            Err(e) => return Err(miette!("cannot start the simulated Image Factory: {e}")),
        };
        let _ = std::fs::write(&port_file, factory.addr().port().to_string());
        let sftp_dir = dir.join("sftp");
        std::fs::create_dir_all(&sftp_dir)
            .map_err(|e| miette!("cannot create {}: {e}", sftp_dir.display()))?;
        let (private_key, public) = client_key(&sftp_dir)?;
        let node = opts.nodes.first().map_or("pve", String::as_str);
        let sftp = SftpServer::persistent(&sftp_dir)
            .pve(lab.sim().clone(), node)
            .authorized_key(&public)
            .map_err(|e| miette!("simulated SSH endpoint: {e}"))?
            .start()
            .await
            .map_err(|e| miette!("cannot start the simulated SSH endpoint: {e}"))?;
        let ssh = SimSsh {
            host: sftp.addr().ip().to_string(),
            port: sftp.addr().port(),
            user: "root".into(),
            private_key: private_key.into(),
            host_key: sftp.fingerprint(),
        };
        Ok(SimLab {
            lab,
            factory,
            talos,
            sftp,
            ssh,
        })
    }

    /// Proxmox API requests received since the lab started.
    pub fn requests(&self) -> Requests {
        let r = self.lab.requests();
        Requests {
            total: r.total,
            mutating: r.mutating,
            schema_rejected: r.schema_rejected,
        }
    }

    /// How `up` boots metal nodes here: from a boot network it serves on loopback, with a
    /// stand-in iPXE binary in `.homelab/sim/ipxe` (the simulated firmware only reads it),
    /// powering on the simulated machines of [`TalosRuntime`].
    pub fn metal_boot(&self, config_dir: &Path) -> miette::Result<crate::engine::metal::MetalBoot> {
        let tftp_root = state_dir(config_dir).join("ipxe");
        std::fs::create_dir_all(&tftp_root)
            .map_err(|e| miette!("cannot create {}: {e}", tftp_root.display()))?;
        for file in ["ipxe.efi", "undionly.kpxe", "ipxe-arm64.efi"] {
            let path = tftp_root.join(file);
            if !path.exists() {
                crate::workspace::write_atomic(
                    &path,
                    b"simulated iPXE binary (homelab-cli --simulate)\n",
                    0o644,
                )
                .map_err(|e| miette!("{e}"))?;
            }
        }
        Ok(crate::engine::metal::MetalBoot::Simulated {
            power: Arc::new(SimMetalPower(self.talos.clone())),
            tftp_root,
        })
    }

    /// Stop everything.
    pub async fn shutdown(self) {
        self.sftp.shutdown().await;
        self.factory.shutdown().await;
        self.lab.shutdown().await;
    }
}

/// Powers the simulated bare-metal machines on ([`TalosRuntime::power_on_metal`]).
struct SimMetalPower(TalosRuntime);

impl crate::engine::metal::MetalPower for SimMetalPower {
    fn power_on(
        &self,
        m: crate::engine::metal::PowerOn,
    ) -> futures_util::future::BoxFuture<'static, Result<String, String>> {
        use homelab_sim::metal::MetalMachine;
        use homelab_sim::talos::DiskInfo;
        use homelab_sim::talos::metal_node::MetalSpec;
        let rt = self.0.clone();
        Box::pin(async move {
            let spec = MetalSpec {
                machine: MetalMachine {
                    mac: m.mac,
                    nic: m.ip,
                    dhcp_server: m.dhcp,
                    // Any free port: on loopback the server answers the sender.
                    client_port: 0,
                    tftp_port: m.tftp_port,
                    arch: m.arch,
                },
                name: m.name.clone(),
                // Its install disk (a 256 GiB NVMe or SATA SSD).
                disks: vec![DiskInfo {
                    device: m.install_disk.clone(),
                    size: 256 << 30,
                    cdrom: false,
                }],
            };
            let booted = rt.power_on_metal(&spec).await.map_err(|e| e.to_string())?;
            Ok(if booted.installed {
                format!("installed to {}", m.install_disk)
            } else {
                "in maintenance mode".to_string()
            })
        })
    }
}
