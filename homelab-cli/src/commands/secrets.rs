//! `homelab-cli secrets ...` (work in progress).

use crate::context::{Context, Exit};

/// Subcommands of `homelab-cli secrets`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {}

/// Run a `homelab-cli secrets` subcommand.
pub async fn run(cmd: Command, _ctx: &Context) -> miette::Result<Exit> {
    match cmd {}
}
