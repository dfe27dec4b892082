//! Ours vs the real `sops` on the spec's two shapes: a 10,000-leaf YAML in sections of 100
//! keys, and a flat 100,000-key mapping. Both tools run as child processes (this bench
//! re-executes itself for ours), timed by wall clock, peak RSS from `/usr/bin/time -v`.
//!
//! `cargo bench -p sops-age --bench vs_sops`. Set `BENCH_SKIP_SOPS_100K=1` to skip the
//! slow (~1-2 min) sops runs on the flat file.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use age::secrecy::ExposeSecret;
use sops_age::{EncryptOptions, Format, Identities, Recipient};

const CHILD: &str = "SOPS_AGE_BENCH_CHILD";

fn main() {
    // Child mode: do one operation in-process, write the result to stdout.
    if let Ok(op) = std::env::var(CHILD) {
        let file = std::env::args().nth(1).unwrap();
        let data = std::fs::read(&file).unwrap();
        let out = match op.as_str() {
            "encrypt" => {
                let r = Recipient::parse(&std::env::var("BENCH_RECIPIENT").unwrap()).unwrap();
                sops_age::encrypt(&data, Format::Yaml, &EncryptOptions::new(vec![r])).unwrap()
            }
            _ => {
                let ids = Identities::from_env();
                sops_age::decrypt(&data, Format::Yaml, &ids)
                    .unwrap()
                    .to_vec()
            }
        };
        std::io::stdout().lock().write_all(&out).unwrap();
        return;
    }

    let dir = tempfile::tempdir().unwrap();
    let id = age::x25519::Identity::generate();
    let recipient = id.to_public().to_string();
    let keyfile = dir.path().join("keys.txt");
    std::fs::write(&keyfile, format!("{}\n", id.to_string().expose_secret())).unwrap();
    let have_sops = Command::new("sops")
        .arg("--version")
        .env("SOPS_DISABLE_VERSION_CHECK", "1")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !have_sops {
        eprintln!("SKIPPED: sops comparison: the `sops` binary is not on PATH; timing ours only");
    }
    let have_time = Path::new("/usr/bin/time").exists();
    let env = BenchEnv {
        dir: dir.path().to_owned(),
        keyfile,
        recipient,
        have_time,
    };

    let sectioned = env.write("sectioned-10k.yaml", &generate(100, 100));
    let flat10k = env.write("flat-10k.yaml", &generate(1, 10_000));
    let flat100k = env.write("flat-100k.yaml", &generate(1, 100_000));

    println!("sops-age vs sops {}", sops_version());
    println!(
        "{:<34} {:>11} {:>11} {:>8} {:>11} {:>11} {:>9}",
        "case", "ours (s)", "sops (s)", "speedup", "ours RSS", "sops RSS", "RSS ratio"
    );
    let skip_slow = std::env::var_os("BENCH_SKIP_SOPS_100K").is_some();
    let mut ours_flat = Vec::new();
    for (name, file, runs_ours, runs_sops) in [
        ("10k leaves, 100-key sections", &sectioned, 5, 3),
        ("flat 10k keys", &flat10k, 3, 1),
        (
            "flat 100k keys",
            &flat100k,
            3,
            if skip_slow { 0 } else { 1 },
        ),
    ] {
        // sops' own encryption is what both tools decrypt, so decrypt inputs are identical.
        // (the flat 100k file is encrypted by ours only when its slow sops runs are skipped)
        let sops_enc = if have_sops && runs_sops > 0 {
            let p = env.dir.join(format!("{name}.sops.yaml").replace(' ', "_"));
            let out = env.sops(
                &["encrypt", "--age", &env.recipient, file.to_str().unwrap()],
                &p,
            );
            out.map(|_| p)
        } else {
            None
        };
        let ours_enc_path = env.dir.join("ours-enc.yaml");
        let enc_ours = env.measure_ours("encrypt", file, &ours_enc_path, runs_ours);
        let dec_input = sops_enc.clone().unwrap_or_else(|| ours_enc_path.clone());
        let dec_ours = env.measure_ours(
            "decrypt",
            &dec_input,
            &env.dir.join("ours-dec.yaml"),
            runs_ours,
        );
        let (enc_sops, dec_sops) = if have_sops && runs_sops > 0 {
            (
                env.measure_sops(
                    &["encrypt", "--age", &env.recipient, file.to_str().unwrap()],
                    runs_sops,
                ),
                env.measure_sops(&["decrypt", dec_input.to_str().unwrap()], runs_sops),
            )
        } else {
            (None, None)
        };
        report(&format!("{name}: encrypt"), enc_ours, enc_sops);
        report(&format!("{name}: decrypt"), dec_ours, dec_sops);
        if name.starts_with("flat") {
            ours_flat.push((enc_ours.0, dec_ours.0));
        }
    }
    if let [(e10, d10), (e100, d100)] = ours_flat[..] {
        println!(
            "ours scaling flat 10k -> 100k (10x the keys): encrypt {:.1}x, decrypt {:.1}x the time",
            e100.as_secs_f64() / e10.as_secs_f64(),
            d100.as_secs_f64() / d10.as_secs_f64()
        );
    }
}

fn sops_version() -> String {
    Command::new("sops")
        .arg("--version")
        .env("SOPS_DISABLE_VERSION_CHECK", "1")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_owned))
        .unwrap_or_else(|| "(not installed)".into())
}

/// `sections` sections of `per` keys each, values are random 24-char alphanumerics.
fn generate(sections: usize, per: usize) -> Vec<u8> {
    let mut state = 0x2545F4914F6CDD1Du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = Vec::with_capacity(sections * per * 40);
    for s in 0..sections {
        let indent = if sections > 1 {
            writeln!(out, "section_{s:04}:").unwrap();
            "  "
        } else {
            ""
        };
        for k in 0..per {
            write!(out, "{indent}key_{k:06}: ").unwrap();
            for _ in 0..24 {
                out.push(ALNUM[(next() % ALNUM.len() as u64) as usize]);
            }
            out.push(b'\n');
        }
    }
    out
}

struct BenchEnv {
    dir: PathBuf,
    keyfile: PathBuf,
    recipient: String,
    have_time: bool,
}

type Sample = (Duration, Option<u64>);

impl BenchEnv {
    fn write(&self, name: &str, data: &[u8]) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, data).unwrap();
        p
    }

    fn base(&self, program: &Path) -> Command {
        let mut c = if self.have_time {
            let mut c = Command::new("/usr/bin/time");
            c.arg("-v").arg(program);
            c
        } else {
            Command::new(program)
        };
        c.current_dir(&self.dir)
            .env("HOME", &self.dir)
            .env("SOPS_AGE_KEY_FILE", &self.keyfile)
            .env("SOPS_DISABLE_VERSION_CHECK", "1")
            .env("BENCH_RECIPIENT", &self.recipient)
            .env_remove("SOPS_AGE_KEY")
            .stdin(Stdio::null())
            .stderr(Stdio::piped());
        c
    }

    /// Run once; stdout to `out`. Returns wall time and peak RSS (KiB).
    fn run(&self, mut cmd: Command, out: &Path, limit: Duration) -> Option<Sample> {
        cmd.stdout(std::fs::File::create(out).unwrap());
        let start = Instant::now();
        let mut child = cmd.spawn().ok()?;
        loop {
            if let Some(status) = child.try_wait().ok()? {
                let wall = start.elapsed();
                let mut err = String::new();
                use std::io::Read;
                child.stderr.take()?.read_to_string(&mut err).ok()?;
                if !status.success() {
                    eprintln!("benchmark child failed: {err}");
                    return None;
                }
                let rss = err
                    .lines()
                    .find(|l| l.contains("Maximum resident set size"))
                    .and_then(|l| l.rsplit(':').next())
                    .and_then(|v| v.trim().parse().ok());
                return Some((wall, rss));
            }
            if start.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                eprintln!("benchmark child exceeded {limit:?}; killed");
                return None;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn measure_ours(&self, op: &str, input: &Path, out: &Path, runs: usize) -> Sample {
        let exe = std::env::current_exe().unwrap();
        let samples: Vec<Sample> = (0..runs)
            .filter_map(|_| {
                let mut c = self.base(&exe);
                c.env(CHILD, op).arg(input);
                self.run(c, out, Duration::from_secs(120))
            })
            .collect();
        median(samples).expect("our benchmark child failed")
    }

    fn sops(&self, args: &[&str], out: &Path) -> Option<Sample> {
        let mut c = self.base(Path::new("sops"));
        if !self.have_time {
            c = Command::new("sops");
            c.current_dir(&self.dir)
                .env("SOPS_AGE_KEY_FILE", &self.keyfile)
                .env("SOPS_DISABLE_VERSION_CHECK", "1")
                .stderr(Stdio::piped());
        }
        c.args(args);
        self.run(c, out, Duration::from_secs(300))
    }

    fn measure_sops(&self, args: &[&str], runs: usize) -> Option<Sample> {
        let out = self.dir.join("sops-out");
        median((0..runs).filter_map(|_| self.sops(args, &out)).collect())
    }
}

fn median(mut samples: Vec<Sample>) -> Option<Sample> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_by_key(|s| s.0);
    let wall = samples[samples.len() / 2].0;
    let mut rss: Vec<u64> = samples.iter().filter_map(|s| s.1).collect();
    rss.sort_unstable();
    Some((wall, rss.get(rss.len() / 2).copied()))
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(|| "n/a".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

fn report(case: &str, ours: Sample, sops: Option<Sample>) {
    let (sops_t, speed, sops_rss, rss_ratio) = match sops {
        Some((t, rss)) => (
            format!("{:.3}", t.as_secs_f64()),
            format!("{:.1}x", t.as_secs_f64() / ours.0.as_secs_f64()),
            mib(rss),
            match (ours.1, rss) {
                (Some(o), Some(s)) if o > 0 => format!("{:.1}x", s as f64 / o as f64),
                _ => "n/a".into(),
            },
        ),
        None => ("skipped".into(), "-".into(), "-".into(), "-".into()),
    };
    println!(
        "{case:<34} {:>11.4} {sops_t:>11} {speed:>8} {:>11} {sops_rss:>11} {rss_ratio:>9}",
        ours.0.as_secs_f64(),
        mib(ours.1)
    );
}
