//! `homelab-cli image ...` (work in progress).

use crate::context::{Context, Exit};

/// Subcommands of `homelab-cli image`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {}

/// Run a `homelab-cli image` subcommand.
pub async fn run(cmd: Command, _ctx: &Context) -> miette::Result<Exit> {
    match cmd {}
}
