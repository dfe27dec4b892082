//! `homelab-cli hooks ...` (work in progress).

use crate::context::{Context, Exit};

/// Subcommands of `homelab-cli hooks`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {}

/// Run a `homelab-cli hooks` subcommand.
pub async fn run(cmd: Command, _ctx: &Context) -> miette::Result<Exit> {
    match cmd {}
}
