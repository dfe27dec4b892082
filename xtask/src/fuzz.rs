//! `cargo xtask fuzz [TARGET...] [--time SECONDS] [--runs N] [--jobs N] [--sanitizer address|none] [--minimize] [--list]`:
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
    /// `cargo fuzz --sanitizer` (`address`, the default, or `none`).
    sanitizer: String,
}

fn parse(rest: &[String]) -> Result<Args> {
    let mut a = Args {
        targets: Vec::new(),
        time: 60,
        runs: None,
        jobs: 1,
        minimize: false,
        list: false,
        sanitizer: "address".into(),
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
            "--sanitizer" => {
                a.sanitizer = it
                    .next()
                    .filter(|v| {
                        ["address", "none", "memory", "thread", "leak"].contains(&v.as_str())
                    })
                    .ok_or("--sanitizer needs address, none, leak, memory or thread")?
                    .clone();
            }
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

/// Executions: libFuzzer's final `stat::number_of_executed_units` (summed over jobs), else
/// the number in its last `#N` status line (`#1234 DONE ...`).
pub fn executions(log: &str) -> Option<u64> {
    let stats: Vec<u64> = stat(log, "number_of_executed_units").collect();
    if !stats.is_empty() {
        return Some(stats.iter().sum());
    }
    log.lines()
        .rev()
        .filter_map(|l| l.strip_prefix('#'))
        .find_map(|l| l.split_whitespace().next()?.parse().ok())
}

/// The values of one `-print_final_stats=1` line (`stat::NAME: value`), one per job.
fn stat<'a>(log: &'a str, name: &'a str) -> impl Iterator<Item = u64> + 'a {
    log.lines().filter_map(move |l| {
        let rest = l.trim().strip_prefix("stat::")?.strip_prefix(name)?;
        rest.strip_prefix(':')?.trim().parse().ok()
    })
}

/// What one target's run gave, for the table.
struct Row {
    name: &'static str,
    executions: Option<u64>,
    per_sec: Option<u64>,
    seconds: u64,
    corpus_files: usize,
    corpus_kib: u64,
    ok: bool,
}

/// Number of files and total size (KiB) of a corpus folder.
fn corpus_size(dir: &Path) -> (usize, u64) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return (0, 0);
    };
    let sizes: Vec<u64> = rd
        .filter_map(|e| e.ok()?.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .collect();
    (sizes.len(), sizes.iter().sum::<u64>().div_ceil(1024))
}

/// The per-target table (markdown, as docs/fuzzing.md keeps it).
fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| target | executions | exec/s | seconds | corpus | result |\n| --- | ---: | ---: | ---: | ---: | --- |\n",
    );
    for r in rows {
        let execs = r
            .executions
            .map_or_else(|| "?".to_owned(), |n| n.to_string());
        let rate = r.per_sec.map_or_else(|| "?".to_owned(), |n| n.to_string());
        out.push_str(&format!(
            "| {} | {execs} | {rate} | {} | {} files, {} KiB | {} |\n",
            r.name,
            r.seconds,
            r.corpus_files,
            r.corpus_kib,
            if r.ok { "ok" } else { "CRASH" }
        ));
    }
    out
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
            .args([
                "+nightly",
                "fuzz",
                "run",
                "-O",
                "--sanitizer",
                &args.sanitizer,
                name,
            ])
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
        let started = std::time::Instant::now();
        let (ok, log) = run_logged(cmd, &crate_dir)?;
        let seconds = started.elapsed().as_secs();
        if args.minimize {
            minimize(&crate_dir, &root, name, &corpus, &args.sanitizer)?;
        }
        let (corpus_files, corpus_kib) = corpus_size(&corpus);
        report.push(Row {
            name,
            executions: executions(&log),
            per_sec: Some(stat(&log, "average_exec_per_sec").sum()).filter(|n| *n > 0),
            seconds,
            corpus_files,
            corpus_kib,
            ok,
        });
        if !ok {
            eprintln!(
                "xtask: fuzz target {name} failed; the crashing input is in {}/artifacts/{name}",
                crate_dir.display()
            );
        }
    }
    print!("{}", table(&report));
    if report.iter().all(|r| r.ok) {
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

fn minimize(crate_dir: &Path, root: &Path, name: &str, corpus: &Path, sanitizer: &str) -> Result {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(crate_dir)
        .env("CARGO_TARGET_DIR", root.join("target/fuzz"))
        .args([
            "+nightly",
            "fuzz",
            "cmin",
            "-O",
            "--sanitizer",
            sanitizer,
            name,
        ])
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
    fn final_stats_win_and_sum_over_jobs() {
        let log = "#4096\tpulse\nstat::number_of_executed_units: 1000\nstat::average_exec_per_sec:     50\n#9\tDONE\nstat::number_of_executed_units: 234\nstat::average_exec_per_sec: 7\n";
        assert_eq!(executions(log), Some(1234));
        assert_eq!(stat(log, "average_exec_per_sec").sum::<u64>(), 57);
        let rows = [Row {
            name: "upid",
            executions: Some(1234),
            per_sec: None,
            seconds: 3,
            corpus_files: 2,
            corpus_kib: 1,
            ok: false,
        }];
        assert_eq!(
            table(&rows).lines().nth(2),
            Some("| upid | 1234 | ? | 3 | 2 files, 1 KiB | CRASH |")
        );
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
