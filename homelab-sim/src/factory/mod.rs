//! The simulated Talos Image Factory, served over plain HTTP on loopback.
//!
//! It speaks the factory's HTTP API as `talos-factory` expects it (spec part A):
//! `POST /schematics` (201 `{"id","schematic"}`), `GET /schematics/{id}`, `GET /versions`
//! (and `?broken=true`), the official extension and overlay catalogues, `GET|HEAD
//! /image/{id}/{version}/{asset}` with small generated files (Range, If-Range, ETag, optional
//! 302 to a `/cdn/` path, optional cut connections), and `GET /pxe/...` iPXE scripts.
//! Errors are plain text with a trailing newline; every response carries `Server` and
//! `X-Request-ID`.
//!
//! Two listeners: the main one (`base_url`) and a PXE one (`pxe_url`) on which image
//! requests are never redirected, as the real factory does for its PXE host.
//!
//! ```no_run
//! # async fn demo() -> Result<(), homelab_sim::factory::FactorySimError> {
//! use homelab_sim::factory::FactorySim;
//!
//! let sim = FactorySim::start("127.0.0.1:0".parse().unwrap(), None).await?;
//! println!("factory at {}, PXE at {}", sim.base_url(), sim.pxe_url());
//! sim.shutdown().await;
//! # Ok(()) }
//! ```

mod catalogue;
mod server;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use talos_factory::SchematicId;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use catalogue::{BROKEN_VERSIONS, VERSIONS};

/// Errors starting the simulated factory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FactorySimError {
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The state directory could not be read or written.
    #[error("{path}: {source}")]
    State {
        /// Path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// How the simulated factory behaves.
#[derive(Debug, Clone)]
pub struct FactorySimConfig {
    /// Main listener (use port 0 for any free port).
    pub listen: SocketAddr,
    /// Where schematics persist across restarts (`<dir>/schematics/<id>.yaml`); `None` keeps
    /// them in memory.
    pub state_dir: Option<PathBuf>,
    /// Answer image GETs on the main listener with a 302 to `/cdn/...`, like a factory
    /// backed by a CDN.
    pub redirect_images: bool,
    /// Cut the connection after this many body bytes on the first full GET of each image
    /// (clients must resume with `Range`).
    pub cut_first_download_after: Option<u64>,
    /// Size of each generated binary image, in bytes.
    pub image_size: u64,
}

impl Default for FactorySimConfig {
    fn default() -> Self {
        FactorySimConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            state_dir: None,
            redirect_images: false,
            cut_first_download_after: None,
            image_size: 256 * 1024,
        }
    }
}

/// Entry point.
#[derive(Debug)]
pub struct FactorySim;

impl FactorySim {
    /// Start with default behaviour on `listen` (PXE listener on another free port of the
    /// same IP).
    pub async fn start(
        listen: SocketAddr,
        state_dir: Option<PathBuf>,
    ) -> Result<FactoryHandle, FactorySimError> {
        FactorySim::start_with(FactorySimConfig {
            listen,
            state_dir,
            ..FactorySimConfig::default()
        })
        .await
    }

    /// Start with an explicit configuration.
    pub async fn start_with(config: FactorySimConfig) -> Result<FactoryHandle, FactorySimError> {
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| FactorySimError::Bind { addr, source })
        };
        let main = bind(config.listen).await?;
        let pxe = bind(SocketAddr::new(config.listen.ip(), 0)).await?;
        let local = |l: &TcpListener, addr: SocketAddr| {
            l.local_addr()
                .map_err(|source| FactorySimError::Bind { addr, source })
        };
        let main_addr = local(&main, config.listen)?;
        let pxe_addr = local(&pxe, config.listen)?;
        let state = Arc::new(server::State::new(
            config,
            format!("http://{main_addr}"),
            format!("http://{pxe_addr}"),
        )?);
        let (tx_main, rx_main) = oneshot::channel();
        let (tx_pxe, rx_pxe) = oneshot::channel();
        let tasks = vec![
            tokio::spawn(server::serve(main, state.clone(), false, rx_main)),
            tokio::spawn(server::serve(pxe, state.clone(), true, rx_pxe)),
        ];
        tracing::info!(%main_addr, %pxe_addr, "simulated Image Factory listening");
        Ok(FactoryHandle {
            main_addr,
            pxe_addr,
            state,
            stop: vec![tx_main, tx_pxe],
            tasks,
        })
    }
}

/// A running simulated factory. Dropping it stops the listeners too.
#[derive(Debug)]
pub struct FactoryHandle {
    main_addr: SocketAddr,
    pxe_addr: SocketAddr,
    state: Arc<server::State>,
    stop: Vec<oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<()>>,
}

impl FactoryHandle {
    /// `http://127.0.0.1:<port>` (no trailing slash): the factory's HTTP base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.main_addr)
    }

    /// The PXE base URL (a second listener; image requests there are never redirected).
    pub fn pxe_url(&self) -> String {
        format!("http://{}", self.pxe_addr)
    }

    /// The main listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.main_addr
    }

    /// Every request served so far, as `"<METHOD> <path>[?query]"`, in order.
    pub fn requests(&self) -> Vec<String> {
        self.state.log()
    }

    /// The stored schematics (canonical YAML by ID).
    pub fn schematics(&self) -> HashMap<SchematicId, String> {
        self.state.schematics()
    }

    /// Stop serving and wait for the listeners to close.
    pub async fn shutdown(mut self) {
        for tx in self.stop.drain(..) {
            let _ = tx.send(());
        }
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }
}

impl Drop for FactoryHandle {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Shared by the server and handle; re-exported for the server module.
pub(crate) type Log = Mutex<Vec<String>>;
