//! `homelab-cli up` (work in progress: issue 6).

use crate::context::{Context, Exit};

/// Flags of `homelab-cli up`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Run `homelab-cli up`.
pub async fn run(_args: Args, _ctx: &Context) -> miette::Result<Exit> {
    Err(miette::miette!("`homelab-cli up` is not available yet"))
}
