//! `--simulate`: the simulated lab (Proxmox VE, Image Factory, Talos nodes on loopback)
//! started in this process, with its state under `.homelab/sim/` beside homelab.yaml so
//! that consecutive commands see the same lab.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use homelab_sim::factory::{FactoryHandle, FactorySim};
use homelab_sim::lab::{Lab, LabHandle};
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
}

/// Request counts of the simulated Proxmox VE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Requests {
    /// Every request.
    pub total: u64,
    /// Requests other than GET.
    pub mutating: u64,
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
        let factory = FactorySim::start(
            std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            Some(dir.join("factory")),
        )
        .await
        .map_err(|e| miette!("cannot start the simulated Image Factory: {e}"))?;
        Ok(SimLab {
            lab,
            factory,
            talos,
        })
    }

    /// Proxmox API requests received since the lab started.
    pub fn requests(&self) -> Requests {
        let r = self.lab.requests();
        Requests {
            total: r.total,
            mutating: r.mutating,
        }
    }

    /// Stop everything.
    pub async fn shutdown(self) {
        self.factory.shutdown().await;
        self.lab.shutdown().await;
    }
}
