//! Network boot for bare-metal machines: DHCP (a full server with a fixed lease per declared
//! MAC, or PXE proxyDHCP beside the site's server), read-only TFTP for the iPXE binaries, and
//! HTTP for each machine's iPXE script, kernel, initramfs and machine config (kept in memory
//! and served only to its machine).
//!
//! ```no_run
//! # async fn demo(kernel: std::path::PathBuf, initramfs: std::path::PathBuf) -> Result<(), netboot::Error> {
//! use std::sync::Arc;
//! use netboot::{Arch, DhcpMode, FullDhcp, Host, Server, ServerConfig};
//! let host = Host {
//!     name: "metal-1".into(),
//!     mac: "52:54:00:00:00:01".parse()?,
//!     address: Some([10, 0, 0, 21].into()),
//!     arch: Arch::Amd64,
//!     kernel,
//!     initramfs,
//!     cmdline: vec!["talos.platform=metal".into()],
//!     config: Arc::new(b"machine: {}".to_vec().into()),
//! };
//! let cfg = ServerConfig::builder([10, 0, 0, 1].into())
//!     .interface("eth1")
//!     .mode(DhcpMode::Full(FullDhcp::with_prefix(24)?))
//!     .tftp_root("/usr/lib/ipxe")
//!     .host(host)
//!     .build()?;
//! let server = Server::start(cfg).await?;
//! server.all_configs_fetched().await;
//! # Ok(()) }
//! ```

mod config;
pub mod dhcp;
mod error;
mod events;
mod http;
mod server;
mod tftp;

pub use config::{
    Arch, BootFiles, DhcpMode, FullDhcp, Host, MacAddr, Ports, ServerConfig, ServerConfigBuilder,
};
pub use error::Error;
pub use events::{Event, Progress};
pub use http::render_script;
pub use server::{Server, ServerHandle};
