//! `homelab-cli config ...` (work in progress).

use crate::context::{Context, Exit};

/// Subcommands of `homelab-cli config`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {}

/// Run a `homelab-cli config` subcommand.
pub async fn run(cmd: Command, _ctx: &Context) -> miette::Result<Exit> {
    match cmd {}
}
