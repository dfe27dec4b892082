//! Starting the three services and watching them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::Error;
use crate::config::{DhcpMode, MacAddr, ServerConfig};
use crate::dhcp::{self, Port};
use crate::events::{Event, Progress, Tracker};
use crate::{http, tftp};

/// The running server; dropping it stops every service.
#[derive(Debug)]
pub struct ServerHandle {
    cfg: Arc<ServerConfig>,
    tracker: Arc<Tracker>,
    tasks: Vec<JoinHandle<()>>,
    http_addr: SocketAddr,
    tftp_addr: SocketAddr,
    dhcp_addr: SocketAddr,
}

/// The boot server.
#[derive(Debug)]
pub struct Server;

impl Server {
    /// Bind every socket (failing early and clearly on privileges) and start serving.
    pub async fn start(cfg: ServerConfig) -> Result<ServerHandle, Error> {
        let cfg = Arc::new(cfg);
        let tracker = Arc::new(Tracker::new(&cfg));

        let http_bind = cfg.sock(cfg.ports.http);
        let listener = tokio::net::TcpListener::bind(http_bind)
            .await
            .map_err(|e| Error::bind("HTTP", http_bind, e))?;
        let http_addr = listener
            .local_addr()
            .map_err(|e| Error::io("reading the HTTP address", e))?;

        let tftp_bind = cfg.sock(cfg.ports.tftp);
        let tftp_sock = tokio::net::UdpSocket::bind(tftp_bind)
            .await
            .map_err(|e| Error::bind("TFTP", tftp_bind, e))?;
        let tftp_addr = tftp_sock
            .local_addr()
            .map_err(|e| Error::io("reading the TFTP address", e))?;

        let dhcp_sock = dhcp::bind(&cfg, cfg.ports.dhcp)?;
        let dhcp_addr = dhcp_sock
            .local_addr()
            .map_err(|e| Error::io("reading the DHCP address", e))?;
        let proxy_sock = match cfg.mode {
            DhcpMode::Proxy => Some(dhcp::bind(&cfg, cfg.ports.proxy)?),
            _ => None,
        };

        let http_port = http_addr.port();
        let mut tasks = Vec::new();
        let app = http::router(cfg.clone(), tracker.clone(), http_port);
        tasks.push(tokio::spawn(async move {
            let service = app.into_make_service_with_connect_info::<SocketAddr>();
            if let Err(e) = axum::serve(listener, service).await {
                tracing::error!(error = %e, "HTTP server stopped");
            }
        }));
        tasks.push(tokio::spawn(tftp::serve(
            cfg.tftp_root.clone(),
            tftp_sock,
            tftp_addr.ip(),
            tracker.clone(),
        )));
        tasks.push(tokio::spawn(dhcp::serve(
            cfg.clone(),
            http_port,
            dhcp_sock,
            Port::Dhcp,
            tracker.clone(),
        )));
        if let Some(sock) = proxy_sock {
            tasks.push(tokio::spawn(dhcp::serve(
                cfg.clone(),
                http_port,
                sock,
                Port::Proxy,
                tracker.clone(),
            )));
        }
        tracing::info!(%http_addr, %tftp_addr, %dhcp_addr, "netboot server listening");
        Ok(ServerHandle {
            cfg,
            tracker,
            tasks,
            http_addr,
            tftp_addr,
            dhcp_addr,
        })
    }
}

impl ServerHandle {
    /// Where HTTP listens.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Where TFTP listens.
    pub fn tftp_addr(&self) -> SocketAddr {
        self.tftp_addr
    }

    /// Where DHCP listens.
    pub fn dhcp_addr(&self) -> SocketAddr {
        self.dhcp_addr
    }

    /// The configuration being served.
    pub fn config(&self) -> &ServerConfig {
        &self.cfg
    }

    /// Every event from now on.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.tracker.subscribe()
    }

    /// Each declared machine's progress, updated as it moves.
    pub fn progress(&self) -> watch::Receiver<BTreeMap<MacAddr, Progress>> {
        self.tracker.watch()
    }

    /// The iPXE script a machine gets.
    pub fn script_for(&self, mac: &MacAddr) -> Option<String> {
        self.cfg
            .host(mac)
            .map(|h| http::render_script(&self.cfg, h, self.http_addr.port()))
    }

    /// Wait until every declared machine has fetched its config.
    pub async fn all_configs_fetched(&self) {
        let mut rx = self.tracker.watch();
        // The sender lives as long as `self`, so this ends only when the condition holds.
        let _ = rx.wait_for(|m| m.values().all(|p| p.config)).await;
    }

    /// Stop every service.
    pub fn shutdown(mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
