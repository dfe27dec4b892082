//! HTTP: per-MAC iPXE script, kernel, initramfs, and the machine config from memory, served
//! only to the machine whose MAC is in the URL and whose address the server knows.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use secrecy::ExposeSecret;

use crate::config::{Host, MacAddr, ServerConfig};
use crate::events::{Event, Tracker};

#[derive(Debug, Clone)]
struct App {
    cfg: Arc<ServerConfig>,
    tracker: Arc<Tracker>,
    port: u16,
}

pub(crate) fn router(cfg: Arc<ServerConfig>, tracker: Arc<Tracker>, port: u16) -> Router {
    Router::new()
        .route("/boot/{mac}/script.ipxe", get(script))
        .route("/boot/{mac}/kernel", get(kernel))
        .route("/boot/{mac}/initramfs", get(initramfs))
        .route("/config/{mac}", get(config))
        .with_state(App { cfg, tracker, port })
}

/// The iPXE script for one machine: its kernel, initramfs and command line, with the
/// config URL appended as `talos.config=` (how Talos's metal platform finds its config).
pub fn render_script(cfg: &ServerConfig, host: &Host, http_port: u16) -> String {
    let base = cfg.http_base(http_port);
    let mac = host.mac.dashed();
    let mut cmdline = host.cmdline.join(" ");
    if !cmdline.is_empty() {
        cmdline.push(' ');
    }
    format!(
        "#!ipxe\n\
         echo Booting {name} ({mac}) from homelab netboot\n\
         kernel {base}/boot/{mac}/kernel initrd=initramfs {cmdline}talos.config={base}/config/{mac}\n\
         initrd --name initramfs {base}/boot/{mac}/initramfs\n\
         boot\n",
        name = host.name,
    )
}

fn declared<'a>(app: &'a App, mac: &str) -> Option<&'a Host> {
    mac.parse::<MacAddr>().ok().and_then(|m| app.cfg.host(&m))
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "no such machine\n").into_response()
}

async fn script(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(mac): Path<String>,
) -> Response {
    let Some(host) = declared(&app, &mac) else {
        return not_found();
    };
    app.tracker.record(Event::ScriptFetched {
        mac: host.mac,
        peer,
    });
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        render_script(&app.cfg, host, app.port),
    )
        .into_response()
}

async fn file(path: &std::path::Path) -> Response {
    let file = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "boot file unreadable");
            return (StatusCode::INTERNAL_SERVER_ERROR, "boot file unreadable\n").into_response();
        }
    };
    let len = match file.metadata().await {
        Ok(m) => m.len(),
        Err(_) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, "boot file unreadable\n").into_response();
        }
    };
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, len.to_string()),
        ],
        body,
    )
        .into_response()
}

async fn kernel(State(app): State<App>, Path(mac): Path<String>) -> Response {
    let Some(host) = declared(&app, &mac) else {
        return not_found();
    };
    app.tracker.record(Event::KernelFetched { mac: host.mac });
    file(&host.kernel).await
}

async fn initramfs(State(app): State<App>, Path(mac): Path<String>) -> Response {
    let Some(host) = declared(&app, &mac) else {
        return not_found();
    };
    app.tracker
        .record(Event::InitramfsFetched { mac: host.mac });
    file(&host.initramfs).await
}

async fn config(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(mac): Path<String>,
) -> Response {
    let refuse = |status: StatusCode, text: &'static str| {
        app.tracker.record(Event::ConfigRefused {
            mac: mac.clone(),
            peer,
            status: status.as_u16(),
        });
        (status, text).into_response()
    };
    let Some(host) = declared(&app, &mac) else {
        return refuse(StatusCode::NOT_FOUND, "no such machine\n");
    };
    let known = app.tracker.address_of(&host.mac);
    let from = match peer.ip() {
        IpAddr::V4(ip) => Some(ip),
        IpAddr::V6(ip) => ip.to_ipv4_mapped(),
    };
    if known.is_none() || known != from {
        return refuse(
            StatusCode::FORBIDDEN,
            "this config is served only to its machine's address\n",
        );
    }
    app.tracker.record(Event::ConfigFetched {
        mac: host.mac,
        peer,
    });
    (
        [
            (header::CONTENT_TYPE, "application/yaml"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        host.config.expose_secret().to_vec(),
    )
        .into_response()
}
