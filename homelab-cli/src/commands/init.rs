//! `homelab-cli init` (work in progress: issue 6).

use crate::context::{Context, Exit};

/// Flags of `homelab-cli init`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Run `homelab-cli init`.
pub async fn run(_args: Args, _ctx: &Context) -> miette::Result<Exit> {
    Err(miette::miette!("`homelab-cli init` is not available yet"))
}
