//! A simulated homelab served on loopback: a stateful Proxmox VE API (`pve`), a Talos Image
//! Factory (`factory`) and Talos nodes (`talos`), so that the clients, the CLI and users' own
//! tests run end to end without hardware.
//!
//! Start one with [`lab::Lab::builder`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub mod factory;
pub mod lab;
pub mod metal;
pub mod pve;
pub mod runtime;
pub mod sftp;
pub mod talos;
pub mod tls;

/// Errors starting or persisting a lab.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The saved state could not be read.
    #[error("{path}: not a homelab-sim state file: {message}")]
    State {
        /// The state file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// Listening failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Certificate generation or TLS configuration failed.
    #[error("TLS: {0}")]
    Tls(String),
    /// The lab's configuration is impossible (for example a storage holding content its
    /// plugin cannot hold).
    #[error("lab configuration: {0}")]
    Config(String),
    /// A sibling service failed to start.
    #[error("service {name}: {message}")]
    Service {
        /// The service.
        name: String,
        /// What failed.
        message: String,
    },
}

/// Listen on `addr`; also answers the bound address (the port, when `addr` asked for 0).
pub(crate) async fn listen(
    addr: SocketAddr,
) -> Result<(tokio::net::TcpListener, SocketAddr), Error> {
    let bind_err = |source| Error::Bind { addr, source };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(bind_err)?;
    let local = listener.local_addr().map_err(bind_err)?;
    Ok((listener, local))
}

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
