//! `homelab-cli handoff serve`: the spec server VMs call on first boot with their
//! provisioning token (`Authorization: Bearer <token>`), answering each with its own spec.
//!
//! `GET /v1/vms/{name}/spec`: 200 with the VM's spec (packages, files, users, commands);
//! 401 for a missing, malformed, tampered, expired or rotated-out token; 403 for a valid
//! token naming another VM; 404 for a VM without `handoff`. Every refusal is logged with
//! its reason and the token masked.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use miette::miette;

use crate::context::{Context, Exit};
use crate::engine::image::FactoryNaming;
use crate::handoff::{mask, verify};
use crate::model::desired;
use crate::model::handoff::DesiredHandoff;
use crate::workspace::{ConfigArg, Workspace};

/// Subcommands of `homelab-cli handoff`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Serve each VM with `handoff: true` its spec, to holders of its token, until Ctrl-C.
    /// Prints `listening on ADDR` first.
    Serve(ServeArgs),
}

/// Flags of `homelab-cli handoff serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Address to listen on (default `handoff.listen`, else `0.0.0.0:8787`; port 0 picks
    /// a free one).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
}

/// Run `homelab-cli handoff`.
pub async fn run(cmd: Command, _ctx: &Context) -> miette::Result<Exit> {
    match cmd {
        Command::Serve(a) => serve(a).await,
    }
}

async fn serve(args: ServeArgs) -> miette::Result<Exit> {
    let ws = Workspace::open_env(&args.config.config, args.config.env())?;
    let secrets = ws.secrets()?;
    let d = desired::resolve(&ws.loaded, &secrets, &FactoryNaming::default())?;
    drop(secrets);
    let h = d.handoff.ok_or_else(|| {
        miette!(
            help =
                "add `handoff: {url: ..., key: ${secret:handoff.key}, key_id: k1}` to homelab.yaml",
            "{} has no `handoff:` section",
            args.config.config.display()
        )
    })?;
    let addr = match args.listen {
        Some(a) => a,
        None => h
            .listen
            .parse()
            .map_err(|e| miette!("handoff.listen `{}`: {e}", h.listen))?,
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| miette!("cannot listen on {addr}: {e}"))?;
    let local = listener
        .local_addr()
        .map_err(|e| miette!("cannot read the listening address: {e}"))?;
    println!("listening on {local}");
    tracing::info!(
        "handoff: serving {} VM spec(s) on {local}, key id {}",
        h.specs.len(),
        h.key.id
    );
    axum::serve(listener, router(Arc::new(h)))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| miette!("handoff server: {e}"))?;
    Ok(Exit::Success)
}

/// The spec server's routes over `h`.
pub fn router(h: Arc<DesiredHandoff>) -> Router {
    Router::new()
        .route("/v1/vms/{name}/spec", get(spec))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(h)
}

fn refuse(status: u16, vm: &str, why: &str, token: Option<&str>) -> Response {
    tracing::warn!(
        "handoff refused for vm \"{vm}\": {why} (token {})",
        token.map_or_else(|| "none".to_string(), mask)
    );
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::UNAUTHORIZED);
    (code, axum::Json(serde_json::json!({ "error": why }))).into_response()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn spec(
    State(h): State<Arc<DesiredHandoff>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(token) = token else {
        return refuse(401, &name, "no token (Authorization: Bearer)", None);
    };
    match verify(&h.key, token, &name, now()) {
        Err(e) => refuse(e.status(), &name, &e.to_string(), Some(token)),
        Ok(c) => match h.specs.get(&name) {
            None => refuse(404, &name, "no such VM with handoff", Some(token)),
            Some(s) => {
                tracing::info!(
                    "handoff: served the spec of vm \"{name}\" (key id {}, expires {})",
                    c.kid,
                    c.exp
                );
                axum::Json(s).into_response()
            }
        },
    }
}
