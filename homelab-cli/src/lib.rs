//! The `homelab-cli` command line, as a library: `main.rs` only calls [`main`].
//!
//! Exit codes: 0 success, 1 failure, 2 usage error (or, for `plan --detailed-exitcode`,
//! "there are changes"). A closed stdout (broken pipe) is not an error.

pub mod cli;
pub mod commands;
pub mod context;
pub mod engine;
pub mod handoff;
pub mod model;
pub mod progress;
pub mod scan;
pub mod session;
pub mod sftp;
pub mod simlab;
pub mod workspace;

use std::process::ExitCode;

use clap::Parser;

pub use context::{Context, Exit, OutputFormat};

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
pub fn run(cli: cli::Cli) -> ExitCode {
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
