//! `cargo xtask <task>`: the project's automation, in Rust so it runs wherever cargo does.
//!
//! Tasks: `ci` (what CI runs), `fmt`, `lint`, `test`, `doc`.

mod crashtest;
mod e2e;
mod fuzz;
mod pve_schema;

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

type Result<T = ()> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let task = args.first().map(String::as_str).unwrap_or("help");
    let rest = args.get(1..).unwrap_or(&[]);
    let outcome = match task {
        "ci" => ci(),
        "fmt" => fmt_check(),
        "lint" => lint(),
        "test" => test(rest),
        "doc" => doc(),
        "codegen" => pve_schema::run(&root(), rest.iter().any(|a| a == "--check")),
        "e2e" => e2e::e2e(rest),
        "crashtest" => crashtest::crashtest(rest),
        "fuzz" => fuzz::fuzz(rest),
        "help" | "-h" | "--help" => {
            print_help();
            Ok(())
        }
        other => Err(format!("unknown task `{other}`; see `cargo xtask help`")),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("xtask: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn print_help() {
    println!(
        "cargo xtask <task>\n\n\
         ci    fmt check, clippy (warnings denied), all tests, docs (warnings denied)\n\
         fmt   cargo fmt --check\n\
         lint  cargo clippy on every target, warnings denied\n\
         test  cargo test on the whole workspace (extra args go to cargo test)\n\
         doc   cargo doc with warnings denied\n\
         codegen  regenerate homelab-sim/src/pve/schema_table.json (--check: fail if stale)\n\
         crashtest  SIGKILL `up --simulate` at every step boundary and timed points, check the re-run converges\n\
                    (--examples a,b  --timed N  --boundaries N)\n\
         fuzz  run the cargo-fuzz targets (nightly; --list, --time S, --runs N, --minimize)"
    );
}

fn root() -> PathBuf {
    // xtask lives one level below the workspace root.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn cargo() -> Command {
    let mut cmd = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

fn run(mut cmd: Command) -> Result {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed with {status}"))
    }
}

fn fmt_check() -> Result {
    let mut cmd = cargo();
    cmd.args(["fmt", "--all", "--check"]);
    run(cmd)
}

fn lint() -> Result {
    let mut cmd = cargo();
    cmd.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]);
    run(cmd)
}

fn test(extra: &[String]) -> Result {
    let mut cmd = cargo();
    cmd.args(["test", "--workspace", "--locked"]).args(extra);
    run(cmd)
}

fn doc() -> Result {
    let mut cmd = cargo();
    cmd.args(["doc", "--workspace", "--no-deps", "--locked"])
        .env("RUSTDOCFLAGS", "-D warnings");
    run(cmd)
}

fn ci() -> Result {
    fmt_check()?;
    lint()?;
    test(&[])?;
    doc()
}
