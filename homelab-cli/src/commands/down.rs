//! `homelab-cli down` (work in progress: issue 6).

use crate::context::{Context, Exit};

/// Flags of `homelab-cli down`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Run `homelab-cli down`.
pub async fn run(_args: Args, _ctx: &Context) -> miette::Result<Exit> {
    Err(miette::miette!("`homelab-cli down` is not available yet"))
}
