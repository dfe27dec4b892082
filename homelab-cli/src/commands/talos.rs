//! `homelab-cli talos ...` (work in progress).

use crate::context::{Context, Exit};

/// Subcommands of `homelab-cli talos`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {}

/// Run a `homelab-cli talos` subcommand.
pub async fn run(cmd: Command, _ctx: &Context) -> miette::Result<Exit> {
    match cmd {}
}
