//! `cargo xtask crashtest`: SIGKILL `homelab-cli up --simulate` at every progress boundary
//! (after the k-th finished step) and at timed points, then check that the next run
//! converges: `up` succeeds, `plan --detailed-exitcode` finds nothing to do (so every guest
//! exists once and the outputs decrypt to what the cluster needs), and no temporary file is
//! left. A run that stops instead must name the repair (`homelab-cli sim unlock`, the
//! simulated node's `pct unlock`, for a container whose create died with the host); the
//! sweep applies it and checks convergence again. Prints a table (example × mode × kill point
//! → outcome) and fails unless every trial converged.
//!
//! Two modes: `in-process` (`up --simulate`: the simulator dies with the CLI, the harshest
//! case: the host dies too) and `server` (a separate `homelab-cli sim serve` the repository
//! is pointed at: the host survives the client, its tasks keep running, and the re-run meets
//! them in flight, as against a real Proxmox VE). After the re-run every trial also checks
//! that `status` lists every declared guest once and that every encrypted output decrypts.
//!
//! Options: `--examples a,b` (default `single-node,multi-node,services,vm-fleet`),
//! `--modes in-process,server` (default both), `--timed N` (timed points per example,
//! default 4), `--boundaries N` (at most N boundaries per example, default all), `--bin PATH`
//! (the homelab-cli to run; default: build it), `--report PATH` (default
//! `target/crashtest-report.md`).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Result, cargo, root, run};

struct Options {
    examples: Vec<String>,
    modes: Vec<Mode>,
    timed: u32,
    boundaries: Option<usize>,
    bin: Option<PathBuf>,
    report: Option<PathBuf>,
    /// Instead of killing: N fresh `up` runs, each followed at once by
    /// `plan --detailed-exitcode`, counting the plans that are not empty.
    noop_runs: Option<u32>,
    /// Instead of killing: for each fault profile (`;`-separated), N fresh labs under it,
    /// each `up` then `plan --detailed-exitcode`.
    fault_profiles: Vec<String>,
    /// Runs per fault profile.
    runs: u32,
}

/// Where the simulated lab runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `--simulate`: in the CLI's own process (it dies with it).
    InProcess,
    /// A separate `homelab-cli sim serve` (it survives the CLI).
    Server,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::InProcess => "in-process",
            Mode::Server => "server",
        })
    }
}

fn options(args: &[String]) -> Result<Options> {
    let mut o = Options {
        examples: ["single-node", "multi-node", "services", "vm-fleet"]
            .map(String::from)
            .to_vec(),
        modes: vec![Mode::InProcess, Mode::Server],
        timed: 4,
        boundaries: None,
        bin: None,
        report: None,
        noop_runs: None,
        fault_profiles: Vec::new(),
        runs: 3,
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
            "--modes" => {
                o.modes = value()?
                    .split(',')
                    .map(|m| match m {
                        "in-process" => Ok(Mode::InProcess),
                        "server" => Ok(Mode::Server),
                        other => Err(format!("--modes: unknown mode `{other}`")),
                    })
                    .collect::<Result<Vec<_>>>()?
            }
            "--bin" => o.bin = Some(PathBuf::from(value()?)),
            "--report" => o.report = Some(PathBuf::from(value()?)),
            "--fault-profiles" => {
                o.fault_profiles = value()?.split(';').map(str::to_string).collect()
            }
            "--runs" => o.runs = value()?.parse().map_err(|e| format!("--runs: {e}"))?,
            "--noop-runs" => {
                o.noop_runs = Some(value()?.parse().map_err(|e| format!("--noop-runs: {e}"))?)
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

/// One row of the table.
struct Row {
    example: String,
    mode: Mode,
    point: String,
    outcome: std::result::Result<&'static str, String>,
    seconds: f64,
}

/// Run the sweep.
pub fn crashtest(args: &[String]) -> Result {
    let opts = options(args)?;
    let bin = match &opts.bin {
        Some(b) => b.clone(),
        None => {
            let mut build = cargo();
            build.args(["build", "-p", "homelab-cli"]);
            run(build)?;
            crate::e2e::target_dir().join("debug").join("homelab-cli")
        }
    };
    let sweep_start = Instant::now();
    let mirror = Mirror::start()?;
    if let Some(n) = opts.noop_runs {
        return noop_runs(&bin, &opts, &mirror, n);
    }
    if !opts.fault_profiles.is_empty() {
        return fault_runs(&bin, &opts, &mirror);
    }
    let mut rows: Vec<Row> = Vec::new();
    for example in &opts.examples {
        for &mode in &opts.modes {
            // A reference run: how many steps, how long.
            let start = Instant::now();
            let reference = Lab::new(&bin, example, mode, "ref", &mirror)
                .and_then(|lab| up_until(&bin, &lab, None));
            let total = start.elapsed();
            let steps = match reference {
                Ok((_, steps)) => steps,
                Err(e) => {
                    eprintln!("crashtest: {example} {mode}: the reference run failed: {e}");
                    rows.push(Row {
                        example: example.clone(),
                        mode,
                        point: "reference run".into(),
                        outcome: Err(e),
                        seconds: total.as_secs_f64(),
                    });
                    continue;
                }
            };
            eprintln!(
                "crashtest: {example} {mode}: {steps} step(s) in {} ms",
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
                let t = Instant::now();
                let outcome = Lab::new(&bin, example, mode, "trial", &mirror)
                    .and_then(|lab| trial(&bin, &lab, point));
                let row = Row {
                    example: example.clone(),
                    mode,
                    point: point.to_string(),
                    outcome,
                    seconds: t.elapsed().as_secs_f64(),
                };
                eprintln!(
                    "crashtest: {example} {mode} {point}: {} ({:.1} s)",
                    row.outcome
                        .as_ref()
                        .map_or_else(|e| format!("FAILED {e}"), |w| w.to_string()),
                    row.seconds
                );
                rows.push(row);
            }
        }
    }
    let report = table(&rows, sweep_start.elapsed());
    println!("\n{report}");
    let path = opts
        .report
        .unwrap_or_else(|| crate::e2e::target_dir().join("crashtest-report.md"));
    std::fs::write(&path, &report).map_err(|e| format!("{}: {e}", path.display()))?;
    println!("report written to {}", path.display());
    let failed = rows.iter().filter(|r| r.outcome.is_err()).count();
    if failed > 0 {
        return Err(format!("{failed} crash trial(s) did not converge"));
    }
    Ok(())
}

/// The report: every trial, then a summary per example and mode.
fn table(rows: &[Row], took: Duration) -> String {
    let mut out = String::from(
        "# Crash sweep\n\n| example | mode | kill point | outcome | seconds |\n|---|---|---|---|---|\n",
    );
    for r in rows {
        let o = match &r.outcome {
            Ok(w) => w.to_string(),
            Err(e) => format!("FAILED: {}", e.replace('|', "\\|")),
        };
        out += &format!(
            "| {} | {} | {} | {o} | {:.1} |\n",
            r.example, r.mode, r.point, r.seconds
        );
    }
    out += "\n| example | mode | trials | converged | failed |\n|---|---|---|---|---|\n";
    let mut keys: Vec<(String, Mode)> = Vec::new();
    for r in rows {
        if !keys.contains(&(r.example.clone(), r.mode)) {
            keys.push((r.example.clone(), r.mode));
        }
    }
    for (e, m) in &keys {
        let of: Vec<&Row> = rows
            .iter()
            .filter(|r| &r.example == e && r.mode == *m)
            .collect();
        let ok = of.iter().filter(|r| r.outcome.is_ok()).count();
        out += &format!("| {e} | {m} | {} | {ok} | {} |\n", of.len(), of.len() - ok);
    }
    let failed = rows.iter().filter(|r| r.outcome.is_err()).count();
    out += &format!(
        "\n{} trial(s), {} converged, {failed} failed, in {} s\n",
        rows.len(),
        rows.len() - failed,
        took.as_secs()
    );
    out
}

/// A fresh copy of an example, and (server mode) the `sim serve` it is pointed at. Dropping
/// it stops the server and removes the copy.
struct Lab {
    work: PathBuf,
    mode: Mode,
    server: Option<Child>,
    /// A fault profile (`sim serve --faults`, `HOMELAB_SIM_FAULTS`).
    faults: Option<String>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(c) = &mut self.server {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.work);
    }
}

impl Lab {
    fn new(bin: &Path, example: &str, mode: Mode, what: &str, mirror: &Mirror) -> Result<Lab> {
        Self::with_faults(bin, example, mode, what, mirror, None)
    }

    fn with_faults(
        bin: &Path,
        example: &str,
        mode: Mode,
        what: &str,
        mirror: &Mirror,
        faults: Option<&str>,
    ) -> Result<Lab> {
        let work = std::env::temp_dir().join(format!(
            "homelab-crash-{example}-{mode}-{what}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&work);
        crate::e2e::copy_dir(&root().join("examples").join(example), &work)?;
        std::fs::create_dir_all(work.join("home")).map_err(|e| e.to_string())?;
        let mut lab = Lab {
            work,
            mode,
            server: None,
            faults: faults.map(str::to_string),
        };
        lab.own_loopback(bin)?;
        if mode == Mode::Server {
            lab.serve(bin, mirror)?;
        }
        Ok(lab)
    }

    /// Move the example's loopback addresses (Talos nodes, their gateway and VIP:
    /// `127.0.X.Y` in the `network` secrets) to `127.N.X.Y`, N picked from this process, so
    /// that the sweep's simulated nodes never meet another run of the same example on this
    /// machine (a second listener on the same address would answer in their place).
    fn own_loopback(&self, bin: &Path) -> Result {
        let octet = 150 + std::process::id() % 100;
        let out = cli(bin, &self.work)
            .env("SOPS_AGE_KEY_FILE", self.work.join("demo-age-key.txt"))
            .args(["secrets", "decrypt", "secrets.enc.yaml"])
            .output()
            .map_err(|e| e.to_string())?;
        let plain = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut in_network = false;
        for line in plain.lines() {
            if !line.starts_with(' ') {
                in_network = line.starts_with("network:");
                continue;
            }
            let Some((key, value)) = line.trim().split_once(": ") else {
                continue;
            };
            let value = value.trim().trim_matches('"');
            if !in_network || !value.starts_with("127.0.") {
                continue;
            }
            let moved = format!("127.{octet}.{}", &value["127.0.".len()..]);
            let set = cli(bin, &self.work)
                .env("SOPS_AGE_KEY_FILE", self.work.join("demo-age-key.txt"))
                .args(["secrets", "set", "secrets.enc.yaml"])
                .arg(format!(r#"["network"]["{key}"]"#))
                .arg(serde_json::Value::String(moved).to_string())
                .output()
                .map_err(|e| e.to_string())?;
            if !set.status.success() {
                return Err(format!("secrets set network.{key} failed"));
            }
        }
        Ok(())
    }

    /// Start `sim serve` and point the copy at it: endpoint, token and root password in the
    /// encrypted secrets, the certificate fingerprint and Image Factory in homelab.yaml, and
    /// (when the example uploads snippets) a fresh SSH key authorized on the simulated node.
    fn serve(&mut self, bin: &Path, mirror: &Mirror) -> Result {
        let state = self.work.join(".serve");
        let mut serve = Command::new(bin);
        serve
            .args(["sim", "serve", "--listen", "127.0.0.1:0", "--state"])
            .arg(&state);
        if let Some(f) = &self.faults {
            serve.args(["--faults", f]);
        }
        let mut child = serve
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
        let mut line = String::new();
        let stdout = child.stdout.take().ok_or("no stdout")?;
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        self.server = Some(child);
        let b: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| format!("sim serve printed {line:?}: {e}"))?;
        let field = |k: &str| -> Result<String> {
            b[k].as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("sim serve printed no {k}: {line}"))
        };
        let set = |path: &str, value: &str| -> Result {
            let out = cli(bin, &self.work)
                .env("SOPS_AGE_KEY_FILE", self.work.join("demo-age-key.txt"))
                .args(["secrets", "set", "secrets.enc.yaml", path])
                .arg(serde_json::Value::String(value.to_string()).to_string())
                .output()
                .map_err(|e| e.to_string())?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "secrets set {path}: {}",
                    String::from_utf8_lossy(&out.stderr)
                ))
            }
        };
        set(r#"["proxmox"]["endpoint"]"#, &field("endpoint")?)?;
        set(r#"["proxmox"]["token_id"]"#, &field("token_id")?)?;
        set(r#"["proxmox"]["token_secret"]"#, &field("token_secret")?)?;
        let config = self.work.join("homelab.yaml");
        let mut yaml = std::fs::read_to_string(&config).map_err(|e| e.to_string())?;
        if yaml.contains("${secret:proxmox.root_password}") {
            set(r#"["proxmox"]["root_password"]"#, &field("root_password")?)?;
        }
        yaml = yaml.replacen(
            "\n  node: pve\n",
            &format!(
                "\n  node: pve\n  fingerprint: \"{}\"\n",
                field("fingerprint")?
            ),
            1,
        );
        yaml = yaml.replacen(
            "\ntalos:\n",
            &format!("\ntalos:\n  factory: {}\n", field("factory_url")?),
            1,
        );
        // The simulated node has no internet, like a lab behind a LAN mirror: OS templates
        // and cloud images come from the harness's loopback mirror, checksums its file's.
        for host in [
            "http://download.proxmox.com/",
            "https://cloud.debian.org/",
            "https://cloud-images.ubuntu.com/",
        ] {
            yaml = yaml.replace(host, &format!("{}/", mirror.base));
        }
        yaml = yaml
            .lines()
            .map(|l| match l.split_once("checksum: sha") {
                Some((indent, _)) => format!("{indent}checksum: sha256:{}", mirror.sha256),
                None => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n")
            + "\n";
        if yaml.contains("${secret:proxmox.ssh_key}") {
            let sftp = &b["sftp"];
            let addr: std::net::SocketAddr = sftp["addr"]
                .as_str()
                .and_then(|a| a.parse().ok())
                .ok_or("sim serve printed no SFTP address")?;
            let key = self.work.join("home").join("id_ed25519");
            let keygen = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "crashtest", "-f"])
                .arg(&key)
                .status()
                .map_err(|e| format!("ssh-keygen: {e}"))?;
            if !keygen.success() {
                return Err("ssh-keygen failed".into());
            }
            let private = std::fs::read_to_string(&key).map_err(|e| e.to_string())?;
            set(r#"["proxmox"]["ssh_key"]"#, &private)?;
            let public =
                std::fs::read_to_string(key.with_extension("pub")).map_err(|e| e.to_string())?;
            let authorized = sftp["authorized_keys"]
                .as_str()
                .ok_or("sim serve printed no authorized_keys")?;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(authorized)
                .map_err(|e| format!("{authorized}: {e}"))?;
            f.write_all(public.as_bytes()).map_err(|e| e.to_string())?;
            let host_key = sftp["host_key_fingerprint"]
                .as_str()
                .ok_or("sim serve printed no host key")?;
            let mut lines: Vec<String> = Vec::new();
            for l in yaml.lines() {
                if l.trim_start().starts_with("host_key: SHA256:") {
                    lines.push(format!("    host_key: \"{host_key}\""));
                    lines.push("    host: 127.0.0.1".into());
                    lines.push(format!("    port: {}", addr.port()));
                } else {
                    lines.push(l.to_string());
                }
            }
            yaml = lines.join("\n") + "\n";
        }
        std::fs::write(&config, yaml).map_err(|e| e.to_string())?;
        Ok(())
    }

    /// `homelab-cli <args> -c homelab.yaml` (with `--simulate` in process mode).
    fn cmd(&self, bin: &Path, args: &[&str]) -> Command {
        let mut c = cli(bin, &self.work);
        c.args(args);
        if self.mode == Mode::InProcess {
            c.arg("--simulate");
            if let Some(f) = &self.faults {
                c.env("HOMELAB_SIM_FAULTS", f);
            }
        }
        c.args(["-c", "homelab.yaml"]);
        c
    }
}

fn cli(bin: &Path, work: &Path) -> Command {
    let mut c = Command::new(bin);
    c.current_dir(work)
        .env("HOME", work.join("home"))
        .env("NO_COLOR", "1")
        .env_remove("SOPS_AGE_KEY_FILE")
        .env_remove("SOPS_AGE_KEY")
        .env_remove("HOMELAB_ENV")
        .env_remove("HOMELAB_SIM_FAULTS");
    c
}

/// Run `up` and kill it at `point` (`None`: let it finish). Whether it was killed, and how
/// many steps had finished.
fn up_until(bin: &Path, lab: &Lab, point: Option<KillPoint>) -> Result<(bool, usize)> {
    let mut child = lab
        .cmd(bin, &["up", "--yes"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    // Step lines (`✓ ...`, `✗ ...`) go to stderr as each step ends.
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr)
            .lines()
            .map_while(std::result::Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let start = Instant::now();
    let mut steps = 0;
    let mut tail: Vec<String> = Vec::new();
    let mut take = |line: String, steps: &mut usize| {
        if line.starts_with('✓') || line.starts_with('✗') {
            *steps += 1;
        }
        tail.push(line);
        if tail.len() > 8 {
            tail.remove(0);
        }
    };
    loop {
        while let Ok(line) = rx.try_recv() {
            take(line, &mut steps);
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
            while let Ok(line) = rx.try_recv() {
                take(line, &mut steps);
            }
            if point.is_none() && !status.success() {
                return Err(format!(
                    "the reference `up` failed ({status}): {}",
                    tail.join(" / ")
                ));
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

fn last_lines(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines = lines.split_off(lines.len().saturating_sub(6));
    lines.join(" / ")
}

/// Kill at `point`, re-run, check. The outcome word.
fn trial(bin: &Path, lab: &Lab, point: KillPoint) -> Result<&'static str> {
    let (killed, _) = up_until(bin, lab, Some(point))?;
    let out = lab
        .cmd(bin, &["up", "--yes"])
        .output()
        .map_err(|e| e.to_string())?;
    let mut word = if killed {
        "converged"
    } else {
        "finished before the kill"
    };
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        // The advised repair (in-process only: the simulated node's `pct unlock`), applied
        // as the message says; one placeholder is reported per run.
        if lab.mode == Mode::Server || !err.contains("homelab-cli sim unlock ") {
            return Err(format!("re-run failed: {}", last_lines(&out.stderr)));
        }
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
            let unlock = cli(bin, &lab.work)
                .args(["sim", "unlock", &v, "--state", ".homelab/sim"])
                .output()
                .map_err(|e| e.to_string())?;
            if !unlock.status.success() {
                return Err(format!("sim unlock {v} failed"));
            }
            let again = lab
                .cmd(bin, &["up", "--yes"])
                .output()
                .map_err(|e| e.to_string())?;
            if again.status.success() {
                last.clear();
                break;
            }
            last = String::from_utf8_lossy(&again.stderr).into_owned();
        }
        if !last.is_empty() {
            return Err(format!(
                "still failing after the advised repair: {}",
                last_lines(last.as_bytes())
            ));
        }
        word = "converged after the advised `sim unlock`";
    }
    let plan = lab
        .cmd(bin, &["plan", "--detailed-exitcode"])
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
    guests_once(bin, lab)?;
    outputs_decrypt(bin, lab)?;
    let temps = temp_files(&lab.work);
    if !temps.is_empty() {
        return Err(format!("temporary files left: {temps:?}"));
    }
    Ok(word)
}

/// `status`: every declared guest exists, once (by name and by VMID).
fn guests_once(bin: &Path, lab: &Lab) -> Result {
    let out = lab
        .cmd(bin, &["status", "-o", "json"])
        .output()
        .map_err(|e| e.to_string())?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("status -o json: {e}: {}", last_lines(&out.stderr)))?;
    let guests = v["guests"].as_array().cloned().unwrap_or_default();
    let mut names: Vec<String> = Vec::new();
    let mut vmids: Vec<u64> = Vec::new();
    for g in &guests {
        let name = g["name"].as_str().unwrap_or_default().to_string();
        if g["declared"] == true
            && !matches!(
                g["status"].as_str(),
                Some("running" | "stopped" | "template")
            )
        {
            return Err(format!("guest {name} is {}", g["status"]));
        }
        if names.contains(&name) {
            return Err(format!("guest {name} exists twice"));
        }
        let vmid = g["vmid"].as_u64().unwrap_or_default();
        if vmids.contains(&vmid) {
            return Err(format!("VMID {vmid} listed twice"));
        }
        names.push(name);
        vmids.push(vmid);
    }
    if guests.is_empty() {
        return Err("status lists no guest".into());
    }
    Ok(())
}

/// Every encrypted file the run wrote (outputs, the Talos secrets bundle) decrypts.
fn outputs_decrypt(bin: &Path, lab: &Lab) -> Result {
    let mut files: Vec<PathBuf> = std::fs::read_dir(lab.work.join("output"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.push(lab.work.join("talos-secrets.enc.yaml"));
    for f in files.iter().filter(|f| f.exists()) {
        let out = cli(bin, &lab.work)
            .env("SOPS_AGE_KEY_FILE", lab.work.join("demo-age-key.txt"))
            .args(["secrets", "decrypt"])
            .arg(f)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() || out.stdout.is_empty() {
            return Err(format!(
                "{} does not decrypt: {}",
                f.display(),
                last_lines(&out.stderr)
            ));
        }
    }
    Ok(())
}

fn temp_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for d in [dir.to_path_buf(), dir.join("output")] {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with(".homelab-tmp.") || n.starts_with(".tmp") {
                out.push(n);
            }
        }
    }
    out
}

/// A loopback HTTP mirror answering every GET and HEAD with the same small file, standing in
/// for download.proxmox.com and the distributions' image hosts in server mode.
struct Mirror {
    base: String,
    sha256: String,
}

const MIRROR_FILE: &[u8] = b"homelab crashtest mirror file: not a real image\n";

impl Mirror {
    fn start() -> Result<Mirror> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(std::result::Result::ok) {
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(&stream);
                    let mut request = String::new();
                    if reader.read_line(&mut request).is_err() {
                        return;
                    }
                    let mut line = String::new();
                    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                        line.clear();
                    }
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        MIRROR_FILE.len()
                    );
                    let mut w = &stream;
                    let _ = w.write_all(head.as_bytes());
                    if !request.starts_with("HEAD") {
                        let _ = w.write_all(MIRROR_FILE);
                    }
                });
            }
        });
        let dir = std::env::temp_dir().join(format!("homelab-crash-mirror-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let file = dir.join("file");
        std::fs::write(&file, MIRROR_FILE).map_err(|e| e.to_string())?;
        let out = Command::new("sha256sum")
            .arg(&file)
            .output()
            .map_err(|e| format!("sha256sum: {e}"))?;
        let _ = std::fs::remove_dir_all(&dir);
        let sha256 = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        if sha256.len() != 64 {
            return Err("sha256sum printed no digest".into());
        }
        Ok(Mirror {
            base: format!("http://{addr}"),
            sha256,
        })
    }
}

/// `--noop-runs N`: for each example and mode, N fresh labs, each `up` followed at once by
/// `plan --detailed-exitcode`; every plan must be empty.
fn noop_runs(bin: &Path, opts: &Options, mirror: &Mirror, n: u32) -> Result {
    let mut out = String::from(
        "# Plan straight after up\n\n| example | mode | runs | empty plan | changes | up failed |\n|---|---|---|---|---|---|\n",
    );
    let mut bad = 0;
    for example in &opts.examples {
        for &mode in &opts.modes {
            let (mut empty, mut changes, mut failed) = (0, 0, 0);
            for i in 1..=n {
                let lab = Lab::new(bin, example, mode, "noop", mirror)?;
                if let Err(e) = up_until(bin, &lab, None) {
                    eprintln!("crashtest: {example} {mode} run {i}: {e}");
                    failed += 1;
                    continue;
                }
                let plan = lab
                    .cmd(bin, &["plan", "--detailed-exitcode"])
                    .output()
                    .map_err(|e| e.to_string())?;
                if plan.status.code() == Some(0) {
                    empty += 1;
                } else {
                    changes += 1;
                    eprintln!(
                        "crashtest: {example} {mode} run {i}: plan exited {:?}: {}",
                        plan.status.code(),
                        String::from_utf8_lossy(&plan.stdout)
                            .lines()
                            .filter(|l| l.contains(" will be ") || l.starts_with("Plan:"))
                            .collect::<Vec<_>>()
                            .join(" / ")
                    );
                }
            }
            eprintln!("crashtest: {example} {mode}: {empty} of {n} plans empty");
            bad += changes + failed;
            out += &format!("| {example} | {mode} | {n} | {empty} | {changes} | {failed} |\n");
        }
    }
    println!("\n{out}");
    if let Some(path) = &opts.report {
        std::fs::write(path, &out).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if bad > 0 {
        return Err(format!("{bad} run(s) without an empty plan after up"));
    }
    Ok(())
}

/// `--fault-profiles`: under each profile, the first `up` of a fresh lab succeeds (or, for an
/// offline node, fails naming it) and the plan that follows is empty.
fn fault_runs(bin: &Path, opts: &Options, mirror: &Mirror) -> Result {
    let mut out = String::from(
        "# Fault profiles\n\n| example | mode | profile | runs | first up as expected | then empty plan | mean up seconds |\n|---|---|---|---|---|---|---|\n",
    );
    let mut bad = 0;
    for example in &opts.examples {
        for &mode in &opts.modes {
            for profile in &opts.fault_profiles {
                let outage = profile.starts_with("offline=");
                let (mut ok_up, mut ok_plan, mut secs) = (0, 0, 0.0);
                for i in 1..=opts.runs {
                    let lab =
                        Lab::with_faults(bin, example, mode, "faults", mirror, Some(profile))?;
                    let t = Instant::now();
                    let up = lab
                        .cmd(bin, &["up", "--yes"])
                        .output()
                        .map_err(|e| e.to_string())?;
                    secs += t.elapsed().as_secs_f64();
                    let err = String::from_utf8_lossy(&up.stderr);
                    let expected = if outage {
                        // The outage is named: the node and PVE's 595.
                        !up.status.success() && err.contains("node unreachable (595)")
                    } else {
                        up.status.success()
                    };
                    if !expected {
                        eprintln!(
                            "crashtest: {example} {mode} {profile} run {i}: up: {}",
                            last_lines(&up.stderr)
                        );
                        continue;
                    }
                    ok_up += 1;
                    if outage {
                        ok_plan += 1;
                        continue;
                    }
                    let plan = lab
                        .cmd(bin, &["plan", "--detailed-exitcode"])
                        .output()
                        .map_err(|e| e.to_string())?;
                    if plan.status.code() == Some(0) {
                        ok_plan += 1;
                    } else {
                        eprintln!(
                            "crashtest: {example} {mode} {profile} run {i}: plan exited {:?}: {}",
                            plan.status.code(),
                            last_lines(&plan.stdout)
                        );
                    }
                }
                eprintln!(
                    "crashtest: {example} {mode} {profile}: up {ok_up}/{n}, plan {ok_plan}/{n}",
                    n = opts.runs
                );
                bad += (opts.runs - ok_up) + (opts.runs - ok_plan);
                out += &format!(
                    "| {example} | {mode} | `{profile}` | {} | {ok_up} | {} | {:.1} |\n",
                    opts.runs,
                    if outage {
                        "n/a".to_string()
                    } else {
                        ok_plan.to_string()
                    },
                    secs / f64::from(opts.runs.max(1))
                );
            }
        }
    }
    println!("\n{out}");
    if let Some(path) = &opts.report {
        std::fs::write(path, &out).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if bad > 0 {
        return Err(format!("{bad} fault run(s) not as expected"));
    }
    Ok(())
}
