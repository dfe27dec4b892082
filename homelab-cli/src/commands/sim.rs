//! `homelab-cli sim ...` (work in progress).

use crate::context::{Context, Exit};

/// Subcommands of `homelab-cli sim`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {}

/// Run a `homelab-cli sim` subcommand.
pub async fn run(cmd: Command, _ctx: &Context) -> miette::Result<Exit> {
    match cmd {}
}
