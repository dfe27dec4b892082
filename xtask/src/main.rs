//! `cargo xtask <task>`: the project's automation, in Rust so it runs wherever cargo does.
//!
//! Tasks: `ci` (what CI runs), `fmt`, `lint`, `test`, `doc`.

mod crashtest;
mod e2e;
mod features;
mod fuzz;
mod man;
mod pve_schema;
mod yaml_bench;

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
        "yaml-bench" => yaml_bench::run_bench(rest),
        "fuzz" => fuzz::fuzz(rest),
        "man" => man::run(&root(), rest),
        "features" => features::run(rest),
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
         crashtest  SIGKILL `up` at every step boundary and timed points, in process and against `sim serve`,\n\
                    check the re-run converges; writes a report (--examples a,b  --modes in-process,server\n\
                    --timed N  --boundaries N  --bin PATH  --report PATH)\n\
         yaml-bench  time hostile homelab.yaml input (100k nested `[`) being refused (--bin PATH)\n\
         fuzz  run the cargo-fuzz targets (nightly; --list, --time S, --runs N, --minimize)\n\
         man   man pages of homelab-cli and its subcommands (default: target/man)\n\
         features  libraries link no CLI crate; homelab-cli builds without `sim`"
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
    use std::io::{BufRead, BufReader};
    let mut cmd = cargo();
    cmd.args(["test", "--workspace", "--locked"])
        .args(extra)
        .stdout(std::process::Stdio::piped());
    eprintln!("xtask: running {cmd:?}");
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    // Pass the output through, adding up libtest's `test result:` lines on the way.
    let mut totals = TestTotals::default();
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out)
            .lines()
            .map_while(std::result::Result::ok)
        {
            println!("{line}");
            totals.add(&line);
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("cannot wait for {cmd:?}: {e}"))?;
    let ci = env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    eprintln!(
        "xtask: tests: {} passed, {} failed, {} ignored{}",
        totals.passed,
        totals.failed,
        totals.ignored,
        if ci {
            ", 0 skipped (CI is set: a test that cannot run fails instead)"
        } else {
            ""
        }
    );
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed with {status}"))
    }
}

/// Sums of libtest's `test result: ok. 12 passed; 0 failed; 1 ignored; ...` lines.
#[derive(Debug, Default, PartialEq, Eq)]
struct TestTotals {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl TestTotals {
    fn add(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split([';', '.']) {
            let mut words = part.split_whitespace();
            let (Some(n), Some(what)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => {}
            }
        }
    }
}

fn doc() -> Result {
    let mut cmd = cargo();
    cmd.args(["doc", "--workspace", "--no-deps", "--locked"])
        .env("RUSTDOCFLAGS", "-D warnings");
    run(cmd)
}

fn ci() -> Result {
    fmt_check()?;
    features::run(&[])?;
    lint()?;
    test(&[])?;
    doc()
}

#[cfg(test)]
mod totals_tests {
    use super::TestTotals;

    #[test]
    fn sums_libtest_result_lines() {
        let mut t = TestTotals::default();
        t.add("test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.04s");
        t.add("test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out");
        t.add("running 5 tests");
        assert_eq!(
            t,
            TestTotals {
                passed: 15,
                failed: 2,
                ignored: 1
            }
        );
    }
}
