//! One module per command; each exposes its clap arguments and an async `run`.

pub mod backup;
pub mod check;
pub mod completions;
pub mod config;
pub mod config_node;
pub mod down;
pub mod handoff;
pub mod hooks;
pub mod image;
pub mod import;
pub mod init;
pub mod plan;
pub mod proxmox;
pub mod pxe;
pub mod schema;
pub mod secrets;
#[cfg(feature = "sim")]
pub mod sim;
pub mod status;
pub mod talos;
pub mod talos_etcd;
pub mod talos_reset;
pub mod up;

use crate::cli::Command;
use crate::context::{Context, Exit};

/// Run one parsed command.
pub async fn dispatch(command: Command, ctx: &Context) -> miette::Result<Exit> {
    match command {
        Command::Init(args) => init::run(args, ctx).await,
        Command::Check(args) => check::run(args, ctx).await,
        Command::Plan(args) => plan::run(args, ctx).await,
        Command::Up(args) => up::run(args, ctx).await,
        Command::Down(args) => down::run(args, ctx).await,
        Command::Status(args) => status::run(args, ctx).await,
        Command::Schema(args) => schema::run(args, ctx).await,
        Command::Completions(args) => completions::run(args, ctx).await,
        Command::Config(cmd) => config::run(cmd, ctx).await,
        Command::Hooks(cmd) => hooks::run(cmd, ctx).await,
        Command::Secrets(cmd) => secrets::run(cmd, ctx).await,
        Command::Image(cmd) => image::run(cmd, ctx).await,
        Command::Backup(cmd) => backup::run(cmd, ctx).await,
        Command::Import(args) => import::run(args, ctx).await,
        Command::Talos(cmd) => talos::run(cmd, ctx).await,
        Command::Proxmox(cmd) => proxmox::run(cmd, ctx).await,
        Command::Pxe(cmd) => pxe::run(cmd, ctx).await,
        #[cfg(feature = "sim")]
        Command::Sim(cmd) => sim::run(cmd, ctx).await,
        Command::Handoff(cmd) => handoff::run(cmd, ctx).await,
    }
}
