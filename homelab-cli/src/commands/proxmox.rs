//! `homelab-cli proxmox ...` (work in progress).

use crate::context::{Context, Exit};

/// Subcommands of `homelab-cli proxmox`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {}

/// Run a `homelab-cli proxmox` subcommand.
pub async fn run(cmd: Command, _ctx: &Context) -> miette::Result<Exit> {
    match cmd {}
}
