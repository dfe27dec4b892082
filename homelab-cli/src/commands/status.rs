//! `homelab-cli status` (work in progress: issue 6).

use crate::context::{Context, Exit};

/// Flags of `homelab-cli status`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Run `homelab-cli status`.
pub async fn run(_args: Args, _ctx: &Context) -> miette::Result<Exit> {
    Err(miette::miette!("`homelab-cli status` is not available yet"))
}
