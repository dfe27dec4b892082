//! `cargo xtask fuzz [TARGET...] [--time SECONDS] [--runs N] [--jobs N] [--minimize] [--list]`:
//! run the `cargo fuzz` targets of every fuzz crate (nightly toolchain, `cargo install
//! cargo-fuzz`), one after the other, each with its committed corpus, and print the
//! executions libFuzzer reports. `--minimize` merges each corpus down to its minimal set
//! (what gets committed). Fuzz crates live outside the workspace (`exclude` in Cargo.toml)
//! and share one target directory, `target/fuzz`.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::{Result, root};

/// (fuzz crate folder, target) pairs.
pub const TARGETS: &[(&str, &str)] = &[
    ("sops-age/fuzz", "yaml"),
    ("sops-age/fuzz", "json"),
    ("sops-age/fuzz", "dotenv"),
    ("sops-age/fuzz", "ini"),
    ("sops-age/fuzz", "encrypted"),
    ("proxmox-client/fuzz", "property"),
    ("proxmox-client/fuzz", "upid"),
    ("talos-api/fuzz", "patch"),
    ("homelab-cli/fuzz", "config"),
];

struct Args {
    targets: Vec<String>,
    time: u64,
    runs: Option<u64>,
    jobs: u32,
    minimize: bool,
    list: bool,
}

fn parse(rest: &[String]) -> Result<Args> {
    let mut a = Args {
        targets: Vec::new(),
        time: 60,
        runs: None,
        jobs: 1,
        minimize: false,
        list: false,
    };
    let mut it = rest.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .ok_or_else(|| format!("{name} needs a value"))
                .and_then(|v| v.parse::<u64>().map_err(|e| format!("{name} {v}: {e}")))
        };
        match arg.as_str() {
            "--time" => a.time = value("--time")?,
            "--runs" => a.runs = Some(value("--runs")?),
            "--jobs" => {
                a.jobs = u32::try_from(value("--jobs")?).map_err(|e| format!("--jobs: {e}"))?
            }
            "--minimize" => a.minimize = true,
            "--list" => a.list = true,
            t if !t.starts_with('-') => a.targets.push(t.to_owned()),
            other => return Err(format!("unknown option {other}")),
        }
    }
    for t in &a.targets {
        if !TARGETS.iter().any(|(_, name)| name == t) {
            return Err(format!(
                "unknown fuzz target `{t}`; `cargo xtask fuzz --list`"
            ));
        }
    }
    Ok(a)
}

/// The number libFuzzer prints in its last `#N` status line (`#1234 DONE ...`).
pub fn executions(log: &str) -> Option<u64> {
    log.lines()
        .rev()
        .filter_map(|l| l.strip_prefix('#'))
        .find_map(|l| l.split_whitespace().next()?.parse().ok())
}

pub fn fuzz(rest: &[String]) -> Result {
    let args = parse(rest)?;
    if args.list {
        for (dir, name) in TARGETS {
            println!("{name:<10} {dir}");
        }
        return Ok(());
    }
    let root = root();
    let mut report = Vec::new();
    for (dir, name) in TARGETS {
        if !args.targets.is_empty() && !args.targets.iter().any(|t| t == name) {
            continue;
        }
        let crate_dir = root.join(dir);
        let corpus = crate_dir.join("corpus").join(name);
        std::fs::create_dir_all(&corpus)
            .map_err(|e| format!("cannot create {}: {e}", corpus.display()))?;
        // Hand-written seeds (committed, read only); libFuzzer writes new inputs to `corpus`.
        let seeds = crate_dir.join("seeds").join(name);
        let mut cmd = Command::new("cargo");
        cmd.current_dir(&crate_dir)
            .env("CARGO_TARGET_DIR", root.join("target/fuzz"))
            .args(["+nightly", "fuzz", "run", "-O", name])
            .arg(&corpus);
        if seeds.is_dir() {
            cmd.arg(&seeds);
        }
        cmd.arg("--")
            .arg(format!("-max_total_time={}", args.time))
            // One input running this long is a hang to fix (libFuzzer's default is 20 min).
            .arg("-timeout=25")
            .arg("-print_final_stats=1");
        if args.jobs > 1 {
            cmd.arg(format!("-jobs={}", args.jobs))
                .arg(format!("-workers={}", args.jobs));
        }
        if let Some(runs) = args.runs {
            cmd.arg(format!("-runs={runs}"));
        }
        let (ok, log) = run_logged(cmd, &crate_dir)?;
        let execs = executions(&log);
        if args.minimize {
            minimize(&crate_dir, &root, name, &corpus)?;
        }
        report.push((*name, execs, ok));
        if !ok {
            eprintln!(
                "xtask: fuzz target {name} failed; the crashing input is in {}/artifacts/{name}",
                crate_dir.display()
            );
        }
    }
    println!("{:<10} {:>14}  result", "target", "executions");
    for (name, execs, ok) in &report {
        let e = execs.map_or_else(|| "?".to_owned(), |n| n.to_string());
        println!("{name:<10} {e:>14}  {}", if *ok { "ok" } else { "CRASH" });
    }
    if report.iter().all(|(_, _, ok)| *ok) {
        Ok(())
    } else {
        Err("a fuzz target found a crash".into())
    }
}

/// Run with libFuzzer's output kept (stderr, or `fuzz-<n>.log` files with -jobs).
fn run_logged(mut cmd: Command, crate_dir: &Path) -> Result<(bool, String)> {
    eprintln!("xtask: running {cmd:?}");
    let out = cmd
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run cargo fuzz (is cargo-fuzz installed?): {e}"))?;
    let mut log = String::from_utf8_lossy(&out.stderr).into_owned();
    // With -jobs, libFuzzer writes each job's output to fuzz-N.log in the working folder.
    for i in 0..64 {
        let p = crate_dir.join(format!("fuzz-{i}.log"));
        match std::fs::read_to_string(&p) {
            Ok(text) => {
                log.push_str(&text);
                let _ = std::fs::remove_file(&p);
            }
            Err(_) => break,
        }
    }
    eprintln!(
        "{}",
        log.lines().rev().take(5).collect::<Vec<_>>().join("\n")
    );
    Ok((out.status.success(), log))
}

fn minimize(crate_dir: &Path, root: &Path, name: &str, corpus: &Path) -> Result {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(crate_dir)
        .env("CARGO_TARGET_DIR", root.join("target/fuzz"))
        .args(["+nightly", "fuzz", "cmin", "-O", name])
        .arg(corpus);
    crate::run(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executions_come_from_the_last_status_line() {
        let log = "INFO: seed\n#2\tINITED cov: 10\n#4096\tpulse cov: 12\n#123456\tDONE   cov: 40 exec/s: 99\nDone 123456 runs in 60 second(s)\n";
        assert_eq!(executions(log), Some(123_456));
        assert_eq!(executions("no status"), None);
    }

    #[test]
    fn options_and_unknown_targets() {
        let a =
            parse(&["upid".into(), "--time".into(), "5".into()]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.targets, ["upid"]);
        assert_eq!(a.time, 5);
        assert!(parse(&["nope".into()]).is_err());
        assert!(parse(&["--time".into()]).is_err());
    }
}
