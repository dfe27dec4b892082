//! `homelab-cli schema` (work in progress: issue 6).

use crate::context::{Context, Exit};

/// Flags of `homelab-cli schema`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Run `homelab-cli schema`.
pub async fn run(_args: Args, _ctx: &Context) -> miette::Result<Exit> {
    Err(miette::miette!("`homelab-cli schema` is not available yet"))
}
