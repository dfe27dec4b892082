//! The `homelab-cli` command line, as a library: `main.rs` only calls [`main`].
//!
//! Exit codes: 0 success, 1 failure, 2 usage error (or, for `plan --detailed-exitcode`,
//! "there are changes"). A closed stdout (broken pipe) is not an error.

//!
//! # Public surface
//!
//! Deliberately small: the pieces an embedding tool, the benchmarks and the integration
//! tests drive, none of the command plumbing.
//!
//! - [`main`] / [`command`]: the CLI itself (the grammar, for completions and
//!   man pages).
//! - [`model`]: homelab.yaml, its environment layers and the resolved desired state.
//! - [`engine`]: observe the lab, plan (pure), render, apply.
//! - [`session`]: open a repository and connect (or start the simulated lab) as `plan` and
//!   `up` do; [`workspace`]: the repository on disk (encrypted reads and writes).
//! - [`simlab`] (feature `sim`): the in-process simulated lab behind `--simulate`.
//! - [`apply_plan`], [`privileges`], [`privileges_for`]: what `up` applies and the
//!   provisioning role `proxmox token create` grants.
//!
//! The command modules, the clap grammar, output plumbing and the secret scanner are
//! private (`pub(crate)`).

pub(crate) mod cli;
pub(crate) mod commands;
pub(crate) mod context;
pub mod engine;
pub mod handoff;
pub mod model;
pub(crate) mod progress;
pub(crate) mod scan;
pub mod session;
#[cfg(feature = "sim")]
pub mod simlab;
#[cfg(not(feature = "sim"))]
#[path = "nosim.rs"]
pub mod simlab;
pub mod workspace;

use std::process::ExitCode;

use clap::Parser;

pub use commands::proxmox::{STORAGE_ROLE, privileges, privileges_for};
pub use commands::up::apply_plan;
pub use context::{Context, Exit, OutputFormat};

/// The whole command-line grammar (for completions, man pages and documentation tools).
pub fn command() -> clap::Command {
    <cli::Cli as clap::CommandFactory>::command()
}

/// Parse the process arguments, run the command, and map the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // clap prints help/version to stdout (exit 0) and usage errors to stderr (exit 2).
            let _ = err.print();
            return ExitCode::from(if err.use_stderr() { 2 } else { 0 });
        }
    };
    run(cli)
}

/// Run an already parsed command line.
pub(crate) fn run(cli: cli::Cli) -> ExitCode {
    let ctx = Context::from_global(&cli.global);
    ctx.init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    let outcome = runtime.block_on(commands::dispatch(cli.command, &ctx));
    match outcome {
        Ok(exit) => exit.into(),
        Err(report) if context::is_broken_pipe(&report) => ExitCode::SUCCESS,
        Err(report) => {
            eprintln!("{report:?}");
            ExitCode::from(1)
        }
    }
}
