//! `homelab-cli check` (work in progress: issue 6).

use crate::context::{Context, Exit};

/// Flags of `homelab-cli check`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Run `homelab-cli check`.
pub async fn run(_args: Args, _ctx: &Context) -> miette::Result<Exit> {
    Err(miette::miette!("`homelab-cli check` is not available yet"))
}
