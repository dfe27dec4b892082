//! `cargo xtask yaml-bench`: how long hostile homelab.yaml input takes to be refused
//! (issue 18: 100k nested `[` took 19 s and more, quadratic in libyaml). A benchmark, not a
//! test: it prints the figures and the growth ratio; linear time doubles with the input.
//!
//! For each size it times `homelab_cli::model::parse` in process (median of 5) and the whole
//! `homelab-cli check --offline` run (median of 3, process start included).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::{Result, cargo, root, run};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Run the benchmark.
pub fn run_bench(args: &[String]) -> Result {
    let bin = match args.iter().position(|a| a == "--bin") {
        Some(i) => args
            .get(i + 1)
            .map(std::path::PathBuf::from)
            .ok_or("--bin needs a value")?,
        None => {
            let mut build = cargo();
            build.args(["build", "-p", "homelab-cli"]);
            run(build)?;
            crate::e2e::target_dir().join("debug").join("homelab-cli")
        }
    };
    let example = root().join("examples").join("single-node");
    let base = std::fs::read_to_string(example.join("homelab.yaml")).map_err(|e| e.to_string())?;
    let dir = std::env::temp_dir().join(format!("homelab-yaml-bench-{}", std::process::id()));
    crate::e2e::copy_dir(&example, &dir)?;
    println!("| input | bytes | parse (in process) | check --offline (process) | refused with |");
    println!("|---|---|---|---|---|");
    let mut first: Option<(usize, Duration)> = None;
    let mut last = (0, Duration::ZERO);
    let sizes = [25_000usize, 50_000, 100_000, 200_000, 400_000, 1_000_000];
    for n in sizes {
        for (what, text) in [
            ("nested `[`", format!("{base}junk: {}\n", "[".repeat(n))),
            (
                "nested `- `",
                format!("{base}junk:\n  {}x\n", "- ".repeat(n)),
            ),
        ] {
            let path = dir.join("homelab.yaml");
            std::fs::write(&path, &text).map_err(|e| e.to_string())?;
            let mut parse = Vec::new();
            let mut message = String::new();
            for _ in 0..5 {
                let t = Instant::now();
                let r = homelab_cli::model::parse(&path, text.clone());
                parse.push(t.elapsed());
                if let Err(e) = r {
                    message = e
                        .errors()
                        .first()
                        .map(|e| e.message.clone())
                        .unwrap_or_default();
                }
            }
            let mut whole = Vec::new();
            for _ in 0..3 {
                whole.push(check(&bin, &dir, &path)?);
            }
            let (p, w) = (median(parse), median(whole));
            let short = message.rsplit(": ").next().unwrap_or_default().to_string();
            println!(
                "| {n} × {what} | {} | {:.2} ms | {:.1} ms | {short} |",
                text.len(),
                p.as_secs_f64() * 1e3,
                w.as_secs_f64() * 1e3
            );
            if what == "nested `[`" {
                first.get_or_insert((n, p));
                last = (n, p);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    if let Some((n0, t0)) = first {
        let growth = last.1.as_secs_f64() / t0.as_secs_f64().max(1e-9);
        println!(
            "\nnested `[`: {}× the input took {growth:.1}× the time in process (linear: about {}×)",
            last.0 / n0,
            last.0 / n0
        );
    }
    Ok(())
}

fn check(bin: &Path, dir: &Path, config: &Path) -> Result<Duration> {
    let t = Instant::now();
    let out = Command::new(bin)
        .args(["check", "--offline", "-c"])
        .arg(config)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .map_err(|e| e.to_string())?;
    let took = t.elapsed();
    if out.status.code() != Some(1) {
        return Err(format!(
            "check --offline exited {:?} on hostile input",
            out.status.code()
        ));
    }
    Ok(took)
}
