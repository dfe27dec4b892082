//! `cargo xtask crashtest`: SIGKILL `homelab-cli up --simulate` at every progress boundary
//! (after the k-th finished step) and at timed points, then check that the next run
//! converges: `up` succeeds, `plan --detailed-exitcode` finds nothing to do (so every guest
//! exists once and the outputs decrypt to what the cluster needs), and no temporary file is
//! left. A run that stops instead must name the repair (`homelab-cli sim unlock`, the
//! simulated node's `pct unlock`, for a container whose create died with the host); the
//! sweep applies it and checks convergence again. Prints a table (example × mode × kill point
//! → outcome) and fails unless every trial converged.
//!
//! Options: `--examples a,b` (default `services,vm-fleet`), `--timed N` (timed points per
//! example, default 4), `--boundaries N` (at most N boundaries per example, default all).
//! The in-process simulator dies with the CLI (the harshest case: the host dies too).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Result, cargo, root, run};

struct Options {
    examples: Vec<String>,
    timed: u32,
    boundaries: Option<usize>,
}

fn options(args: &[String]) -> Result<Options> {
    let mut o = Options {
        examples: vec!["services".into(), "vm-fleet".into()],
        timed: 4,
        boundaries: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{a} needs a value"))
        };
        match a.as_str() {
            "--examples" => o.examples = value()?.split(',').map(str::to_string).collect(),
            "--timed" => o.timed = value()?.parse().map_err(|e| format!("--timed: {e}"))?,
            "--boundaries" => {
                o.boundaries = Some(value()?.parse().map_err(|e| format!("--boundaries: {e}"))?)
            }
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    Ok(o)
}

/// Where the CLI is killed.
#[derive(Clone, Copy)]
enum KillPoint {
    /// After the k-th finished step (a line starting with ✓ or ✗).
    Boundary(usize),
    /// After this long.
    Timed(Duration),
}

impl std::fmt::Display for KillPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KillPoint::Boundary(k) => write!(f, "after step {k}"),
            KillPoint::Timed(d) => write!(f, "at {} ms", d.as_millis()),
        }
    }
}

/// Run the sweep.
pub fn crashtest(args: &[String]) -> Result {
    let opts = options(args)?;
    let mut build = cargo();
    build.args(["build", "-p", "homelab-cli"]);
    run(build)?;
    let bin = crate::e2e::target_dir().join("debug").join("homelab-cli");
    let mut rows: Vec<(String, String, String, String)> = Vec::new();
    for example in &opts.examples {
        // A reference run: how many steps, how long.
        let work = fresh(example, "ref")?;
        let start = Instant::now();
        let steps = up_until(&bin, &work, None)?.1;
        let total = start.elapsed();
        let _ = std::fs::remove_dir_all(&work);
        eprintln!(
            "crashtest: {example}: {steps} step(s) in {} ms",
            total.as_millis()
        );
        let mut points: Vec<KillPoint> = (1..=steps).map(KillPoint::Boundary).collect();
        if let Some(n) = opts.boundaries {
            points.truncate(n);
        }
        for i in 1..=opts.timed {
            points.push(KillPoint::Timed(total * i / (opts.timed + 1)));
        }
        for point in points {
            let work = fresh(example, "trial")?;
            let outcome = trial(&bin, &work, point);
            let _ = std::fs::remove_dir_all(&work);
            let (result, detail) = match outcome {
                Ok(d) => (d.0.to_string(), d.1),
                Err(e) => ("FAILED".to_string(), e),
            };
            eprintln!("crashtest: {example} in-process {point}: {result} {detail}");
            rows.push((
                example.clone(),
                "in-process".into(),
                point.to_string(),
                format!("{result}{}", if detail.is_empty() { "" } else { " " }) + &detail,
            ));
        }
    }
    println!("\n| example | mode | kill point | outcome |\n|---|---|---|---|");
    for (e, m, p, o) in &rows {
        println!("| {e} | {m} | {p} | {o} |");
    }
    let failed = rows.iter().filter(|r| r.3.starts_with("FAILED")).count();
    println!(
        "\n{} trial(s), {} converged, {failed} failed",
        rows.len(),
        rows.len() - failed
    );
    if failed > 0 {
        return Err(format!("{failed} crash trial(s) did not converge"));
    }
    Ok(())
}

fn fresh(example: &str, what: &str) -> Result<PathBuf> {
    let work = std::env::temp_dir().join(format!(
        "homelab-crash-{example}-{what}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&work);
    crate::e2e::copy_dir(&root().join("examples").join(example), &work)?;
    std::fs::create_dir_all(work.join("home")).map_err(|e| e.to_string())?;
    Ok(work)
}

fn cli(bin: &Path, work: &Path) -> Command {
    let mut c = Command::new(bin);
    c.current_dir(work)
        .env("HOME", work.join("home"))
        .env("NO_COLOR", "1")
        .env_remove("SOPS_AGE_KEY_FILE")
        .env_remove("SOPS_AGE_KEY")
        .env_remove("HOMELAB_ENV");
    c
}

/// Run `up` and kill it at `point` (`None`: let it finish). Whether it was killed, and how
/// many steps had finished.
fn up_until(bin: &Path, work: &Path, point: Option<KillPoint>) -> Result<(bool, usize)> {
    let mut child = cli(bin, work)
        .args(["up", "--simulate", "--yes", "-c", "homelab.yaml"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    // Step lines (`✓ ...`, `✗ ...`) go to stderr as each step ends.
    let stdout = child.stderr.take().ok_or("no stderr")?;
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout)
            .lines()
            .map_while(std::result::Result::ok)
        {
            if line.starts_with('✓') || line.starts_with('✗') {
                let _ = tx.send(());
            }
        }
    });
    let start = Instant::now();
    let mut steps = 0;
    loop {
        while rx.try_recv().is_ok() {
            steps += 1;
        }
        let kill = match point {
            Some(KillPoint::Boundary(k)) => steps >= k,
            Some(KillPoint::Timed(d)) => start.elapsed() >= d,
            None => false,
        };
        if kill {
            // SIGKILL: no destructors, no state flush.
            let _ = child.kill();
            let _ = child.wait();
            let _ = reader.join();
            return Ok((true, steps));
        }
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            let _ = reader.join();
            while rx.try_recv().is_ok() {
                steps += 1;
            }
            if point.is_none() && !status.success() {
                return Err(format!("the reference `up` failed: {status}"));
            }
            return Ok((false, steps));
        }
        if start.elapsed() > Duration::from_secs(900) {
            let _ = child.kill();
            return Err("up ran for 15 minutes".into());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Kill at `point`, re-run, check. The outcome word and a detail.
fn trial(bin: &Path, work: &Path, point: KillPoint) -> Result<(&'static str, String)> {
    let (killed, _) = up_until(bin, work, Some(point))?;
    let out = cli(bin, work)
        .args(["up", "--simulate", "--yes", "-c", "homelab.yaml"])
        .output()
        .map_err(|e| e.to_string())?;
    let mut word = if killed { "converged" } else { "finished" };
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        // The advised repair, applied as the message says.
        let vmids: Vec<String> = err
            .split("homelab-cli sim unlock ")
            .skip(1)
            .filter_map(|s| s.split_whitespace().next().map(str::to_string))
            .collect();
        if vmids.is_empty() {
            return Err(format!(
                "re-run failed: {}",
                err.lines().rev().take(6).collect::<Vec<_>>().join(" / ")
            ));
        }
        // One placeholder is reported per run; repair until the run goes through.
        let mut last = err;
        for _ in 0..20 {
            let Some(v) = last
                .split("homelab-cli sim unlock ")
                .nth(1)
                .and_then(|s| s.split_whitespace().next())
                .map(str::to_string)
            else {
                break;
            };
            let unlock = cli(bin, work)
                .args(["sim", "unlock", &v, "--state", ".homelab/sim"])
                .output()
                .map_err(|e| e.to_string())?;
            if !unlock.status.success() {
                return Err(format!("sim unlock {v} failed"));
            }
            let again = cli(bin, work)
                .args(["up", "--simulate", "--yes", "-c", "homelab.yaml"])
                .output()
                .map_err(|e| e.to_string())?;
            if again.status.success() {
                last.clear();
                break;
            }
            last = String::from_utf8_lossy(&again.stderr).into_owned();
        }
        if !last.is_empty() {
            return Err("still failing after the advised repair".into());
        }
        word = "converged after the advised `sim unlock`";
    }
    let plan = cli(bin, work)
        .args([
            "plan",
            "--simulate",
            "--detailed-exitcode",
            "-c",
            "homelab.yaml",
        ])
        .output()
        .map_err(|e| e.to_string())?;
    if plan.status.code() != Some(0) {
        return Err(format!(
            "plan after the re-run is not empty: {}",
            String::from_utf8_lossy(&plan.stdout)
                .lines()
                .filter(|l| l.contains(" will be ") || l.starts_with("Plan:"))
                .collect::<Vec<_>>()
                .join(" / ")
        ));
    }
    let temps = temp_files(work);
    if !temps.is_empty() {
        return Err(format!("temporary files left: {temps:?}"));
    }
    Ok((word, String::new()))
}

fn temp_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for d in [dir.to_path_buf(), dir.join("output")] {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with(".homelab-tmp.") {
                out.push(n);
            }
        }
    }
    out
}
