//! `homelab-cli plan` (work in progress: issue 6).

use crate::context::{Context, Exit};

/// Flags of `homelab-cli plan`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Run `homelab-cli plan`.
pub async fn run(_args: Args, _ctx: &Context) -> miette::Result<Exit> {
    Err(miette::miette!("`homelab-cli plan` is not available yet"))
}
