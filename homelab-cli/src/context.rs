//! Global options and what every command shares: output format, colour, logging.

use std::io::{self, Write};
use std::process::ExitCode;

use clap::{Args, ValueEnum};

/// Options accepted by every command.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// More log output (-v info, -vv debug, -vvv trace). `RUST_LOG` overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Less output (-q errors only).
    #[arg(short, long, action = clap::ArgAction::Count, global = true, conflicts_with = "verbose")]
    pub quiet: u8,
    /// When to use colour. `NO_COLOR` and a non-terminal output turn it off under `auto`.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, global = true)]
    pub color: ColorChoice,
}

/// When to use colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// Colour when writing to a terminal and `NO_COLOR` is unset.
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

/// `--output` of read commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum OutputFormat {
    /// For people.
    #[default]
    Text,
    /// One JSON document on stdout, for scripts.
    Json,
}

/// What a command achieved, mapped to the process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Exit 0.
    Success,
    /// Exit 2 without an error: `plan --detailed-exitcode` found changes.
    Changes,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        match exit {
            Exit::Success => ExitCode::SUCCESS,
            Exit::Changes => ExitCode::from(2),
        }
    }
}

/// Shared state handed to every command.
#[derive(Debug, Clone)]
pub struct Context {
    /// -v count minus -q count.
    pub verbosity: i8,
    /// Whether colour is on for stdout.
    pub color: bool,
    /// Whether progress bars may be drawn (stderr is a terminal and not quiet).
    pub progress: bool,
}

impl Context {
    /// Build the context from the global flags and the environment.
    pub fn from_global(args: &GlobalArgs) -> Self {
        use std::io::IsTerminal;
        let choice = match args.color {
            ColorChoice::Auto => anstream::ColorChoice::Auto,
            ColorChoice::Always => anstream::ColorChoice::Always,
            ColorChoice::Never => anstream::ColorChoice::Never,
        };
        choice.write_global();
        let color = match args.color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                    && io::stdout().is_terminal()
            }
        };
        let verbosity = i8::try_from(args.verbose).unwrap_or(i8::MAX)
            - i8::try_from(args.quiet).unwrap_or(i8::MAX);
        Context {
            verbosity,
            color,
            progress: verbosity >= 0 && io::stderr().is_terminal(),
        }
    }

    /// A context for tests and embedding: no colour, no progress bars.
    pub fn plain() -> Self {
        Context {
            verbosity: 0,
            color: false,
            progress: false,
        }
    }

    /// Install the `tracing` subscriber (logs go to stderr). `RUST_LOG` wins over -v/-q.
    pub fn init_tracing(&self) {
        let default = match self.verbosity {
            i8::MIN..=-1 => "error",
            0 => "warn",
            1 => "info",
            2 => "debug",
            _ => "trace",
        };
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(io::stderr)
            .with_ansi(self.color)
            .try_init();
    }
}

/// Write one value as pretty JSON to stdout, followed by a newline.
pub fn print_json<T: serde::Serialize>(value: &T) -> miette::Result<()> {
    let mut out = io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)
        .map_err(io::Error::from)
        .and_then(|()| writeln!(out))
        .map_err(|e| miette::Report::msg(BrokenPipeAware(e)))
}

/// Write text to stdout (no newline added), propagating a closed pipe as an error that
/// [`is_broken_pipe`] recognises.
pub fn print_text(text: &str) -> miette::Result<()> {
    let mut out = anstream::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| miette::Report::msg(BrokenPipeAware(e)))
}

/// An I/O error kept whole so that a broken pipe can be recognised at the top.
#[derive(Debug)]
struct BrokenPipeAware(io::Error);

impl std::fmt::Display for BrokenPipeAware {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot write to stdout: {}", self.0)
    }
}

/// Whether an error is (or was caused by) writing to a closed pipe.
pub fn is_broken_pipe(report: &miette::Report) -> bool {
    if let Some(e) = report.downcast_ref::<BrokenPipeAware>() {
        return e.0.kind() == io::ErrorKind::BrokenPipe;
    }
    report
        .chain()
        .filter_map(|e| e.downcast_ref::<io::Error>())
        .any(|e| e.kind() == io::ErrorKind::BrokenPipe)
}
