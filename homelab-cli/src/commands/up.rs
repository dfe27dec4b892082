//! `homelab-cli up`: reconcile the lab with homelab.yaml.

use std::io::IsTerminal;
use std::sync::Arc;

use miette::miette;

use crate::context::{Context, Exit, OutputFormat, print_json, print_text};
use crate::engine::apply::{self, Env, Timeouts};
use crate::engine::graph::{self, Outcome};
use crate::engine::plan::Action;
use crate::engine::{render, talos};
use crate::progress::StepProgress;
use crate::session::{Planned, Session, SimArgs};
use crate::workspace::ConfigArg;

/// Flags of `homelab-cli up`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(flatten)]
    pub sim: SimArgs,
    /// Do not ask before destroying or replacing guests.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// How many steps run at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub parallelism: u16,
    /// Output format of the summary.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// How long to wait for each Talos node (to install, reboot, come back from an
    /// upgrade), in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 900)]
    pub talos_timeout: u64,
    #[command(flatten)]
    pub config_mode: crate::engine::config_change::ConfigModeArg,
    /// Bootstrap etcd from this encrypted snapshot (`talos etcd snapshot`) instead of empty:
    /// the disaster recovery after the control planes were lost (docs/disaster-recovery.md).
    #[arg(long, value_name = "FILE")]
    pub restore_etcd: Option<std::path::PathBuf>,
}

/// What `up` did, for `--output json`.
#[derive(Debug, serde::Serialize)]
struct Report<'a> {
    plan: &'a crate::engine::plan::Plan,
    steps: &'a [graph::Finished],
    outputs_written: Vec<String>,
    /// With --simulate: Proxmox API requests the simulated lab received during this run.
    #[serde(skip_serializing_if = "Option::is_none")]
    simulated_requests: Option<crate::simlab::Requests>,
}

/// Run `homelab-cli up`.
pub async fn run(args: Args, ctx: &Context) -> miette::Result<Exit> {
    let mut session = Session::open_env(&args.config.config, args.config.env(), &args.sim).await?;
    session.talos_timeout = Some(std::time::Duration::from_secs(args.talos_timeout));
    session.config_mode = args.config_mode.config_mode;
    if let Some(file) = &args.restore_etcd {
        // Decrypted and checked before anything changes; a bad file changes nothing.
        match super::talos_etcd::load_for(&session, file, false) {
            Ok(data) => session.restore_etcd = Some(data),
            Err(e) => {
                session.close().await;
                return Err(e);
            }
        }
    }
    let result = run_session(&session, &args, ctx).await;
    session.close().await;
    result
}

async fn run_session(session: &Session, args: &Args, ctx: &Context) -> miette::Result<Exit> {
    let planned = session.plan().await?;
    let plan = &planned.plan;
    if let Some(file) = &args.restore_etcd
        && !plan
            .actions
            .iter()
            .any(|a| matches!(a, Action::TalosBootstrap { .. }))
    {
        return Err(miette!(
            help = "a restore goes onto fresh control planes: `homelab-cli down` first (or `homelab-cli talos etcd restore` onto configured, not bootstrapped ones)",
            "--restore-etcd {}: the cluster is already bootstrapped, the plan has no bootstrap to recover etcd in",
            file.display()
        ));
    }
    if plan.is_empty() {
        match args.output {
            OutputFormat::Json => print_json(&Report {
                plan,
                steps: &[],
                outputs_written: vec![],
                simulated_requests: session.sim.as_ref().map(crate::simlab::SimLab::requests),
            })?,
            OutputFormat::Text => print_text(&render::plan_text(plan, ctx.color))?,
        }
        return Ok(Exit::Success);
    }
    if args.output == OutputFormat::Text {
        print_text(&render::plan_text(plan, ctx.color))?;
    }
    let destructive: Vec<String> = plan
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Delete { vmid, name, .. } => Some(format!("destroy {vmid} \"{name}\"")),
            Action::Replace { vmid, name, .. } => {
                Some(format!("replace {vmid} \"{name}\" (its disks are lost)"))
            }
            _ => None,
        })
        .collect();
    if !destructive.is_empty() && !args.yes {
        confirm(&format!("This will {}.", destructive.join(", ")))?;
    }

    let observer = StepProgress::new(ctx);
    let applied = apply_plan(session, &planned, usize::from(args.parallelism), &observer).await;
    observer.clear();
    let Applied {
        finished,
        outputs_written,
    } = applied?;
    let failed: Vec<&graph::Finished> = finished
        .iter()
        .filter(|f| matches!(f.outcome, Outcome::Failed { .. }))
        .collect();

    match args.output {
        OutputFormat::Json => print_json(&Report {
            plan,
            steps: &finished,
            outputs_written,
            simulated_requests: session.sim.as_ref().map(crate::simlab::SimLab::requests),
        })?,
        OutputFormat::Text => print_text(&summary(&finished, &outputs_written))?,
    }
    if let Some(first) = failed.first() {
        let Outcome::Failed { error } = &first.outcome else {
            return Err(miette!("{} failed", first.label));
        };
        let skipped = finished
            .iter()
            .filter(|f| matches!(f.outcome, Outcome::Skipped { .. }))
            .count();
        return Err(miette!(
            help = error.hint.clone().unwrap_or_else(|| {
                "fix the cause and run `homelab-cli up` again: it resumes where it stopped".into()
            }),
            "{} failed: {}{}",
            first.label,
            error.message,
            if skipped > 0 {
                format!(" ({skipped} dependent step(s) skipped)")
            } else {
                String::new()
            }
        ));
    }
    Ok(Exit::Success)
}

/// What [`apply_plan`] did.
#[derive(Debug)]
pub struct Applied {
    /// Every step with its outcome and duration.
    pub finished: Vec<graph::Finished>,
    /// Output files (re)written.
    pub outputs_written: Vec<String>,
}

/// Run a plan: secrets bundle (generated once), the step graph, then the encrypted outputs
/// (only when every step succeeded and their content changed).
pub async fn apply_plan(
    session: &Session,
    planned: &Planned,
    parallelism: usize,
    observer: &dyn graph::Observer,
) -> miette::Result<Applied> {
    // The simulated lab has no internet: OS templates and cloud images come from a
    // loopback mirror. Its files are not the distributions' real images, so a cloud image's
    // checksum is replaced by the mirror file's (Proxmox still verifies it).
    let mut sim_plan;
    let mut mirror = None;
    let mut plan = &planned.plan;
    if session.sim.is_some()
        && plan.actions.iter().any(|a| {
            matches!(
                a,
                Action::DownloadTemplate { .. } | Action::DownloadImage { .. }
            )
        })
    {
        let m = TemplateMirror::start().await?;
        sim_plan = plan.clone();
        for a in &mut sim_plan.actions {
            match a {
                Action::DownloadTemplate { url, .. } => *url = m.url_for(url),
                Action::DownloadImage { url, checksum, .. } => {
                    *url = m.url_for(url);
                    if let Some(c) = checksum {
                        *c = format!("sha256:{}", TemplateMirror::sha256_of(url));
                    }
                }
                _ => {}
            }
        }
        plan = &sim_plan;
        mirror = Some(m);
    }
    // `talos.etcd_backup: before_changes`: the snapshot comes before any change; if it
    // cannot be taken, nothing is changed.
    let snapshot = match plan.actions.iter().find_map(|a| match a {
        Action::EtcdSnapshot { dir, .. } => Some(dir.clone()),
        _ => None,
    }) {
        Some(dir) => {
            let started = std::time::Instant::now();
            let (_, keep) = super::talos_etcd::settings(session);
            let taken = super::talos_etcd::snapshot_with(session, std::path::Path::new(&dir), keep)
                .await
                .map_err(|e| {
                    miette!(
                        help = "nothing was changed; fix the cause, or set `talos.etcd_backup: manual` to go ahead without a snapshot",
                        "the etcd snapshot before changing control planes failed: {e}"
                    )
                })?;
            Some(graph::Finished {
                id: "etcd-snapshot".into(),
                label: "take an encrypted etcd snapshot".into(),
                deps: vec![],
                outcome: Outcome::Done {
                    detail: taken.file.display().to_string(),
                },
                elapsed: started.elapsed(),
            })
        }
        None => None,
    };
    let bundle_cell = Arc::new(std::sync::OnceLock::new());
    if let Some(b) = planned.bundle.clone() {
        let _ = bundle_cell.set(b);
    }
    let bundle_store = match &session.desired.talos {
        Some(cluster) if planned.bundle.is_none() => Some((
            cluster.secrets_file.clone(),
            session.ws.recipients_for(&cluster.secrets_file)?,
        )),
        _ => None,
    };
    let env = Arc::new(Env {
        pve: session.pve.clone(),
        pve_root: session.pve_root.clone(),
        factory: if session.desired.talos.is_some() {
            Some(session.factory()?)
        } else {
            None
        },
        desired: session.desired.clone(),
        observed: planned.observed.clone(),
        bundle: bundle_cell.clone(),
        bundle_store,
        restore_etcd: session.restore_etcd.clone(),
        timeouts: Timeouts {
            talos: session
                .talos_timeout
                .unwrap_or_else(|| Timeouts::default().talos),
            ..Timeouts::default()
        },
        metal: metal_env(session)?,
    });
    let steps = apply::steps(&env, plan);
    let mut finished = graph::run(steps, parallelism, observer).await;
    if let Some(s) = snapshot {
        finished.insert(0, s);
    }
    drop(mirror);
    let all_ok = finished
        .iter()
        .all(|f| matches!(f.outcome, Outcome::Done { .. }));
    let mut outputs_written = Vec::new();
    if all_ok
        && let (Some(cluster), Some(b)) = (&session.desired.talos, bundle_cell.get())
        && plan
            .actions
            .iter()
            .any(|a| matches!(a, Action::WriteOutput { .. }))
    {
        let cps = talos::control_plane_ips(&session.desired);
        let tc = talos::talosconfig(cluster, b, &cps).map_err(|e| miette!("talosconfig: {e}"))?;
        let path = &session.desired.outputs.talosconfig;
        if !planned.talos.talosconfig_current
            && session.ws.write_encrypted(path, tc.to_yaml().as_bytes())?
        {
            outputs_written.push(path.display().to_string());
        }
        let kc = talos::kubeconfig(cluster, b).map_err(|e| miette!("kubeconfig: {e}"))?;
        let path = &session.desired.outputs.kubeconfig;
        if !planned.talos.kubeconfig_current && session.ws.write_encrypted(path, kc.as_bytes())? {
            outputs_written.push(path.display().to_string());
        }
    }
    Ok(Applied {
        finished,
        outputs_written,
    })
}

/// How `up` boots the metal nodes: under `--simulate` the simulated machines boot from a
/// loopback boot network `up` serves; otherwise the user runs `pxe serve`.
fn metal_env(session: &Session) -> miette::Result<Option<Arc<crate::engine::metal::MetalEnv>>> {
    use crate::engine::metal::{MetalBoot, MetalEnv};
    let Some(cluster) = &session.desired.talos else {
        return Ok(None);
    };
    if cluster.metal.is_empty() {
        return Ok(None);
    }
    let dir = &session.ws.loaded.dir;
    let boot = match &session.sim {
        Some(sim) => sim.metal_boot(dir)?,
        None => MetalBoot::External,
    };
    Ok(Some(Arc::new(MetalEnv {
        boot,
        cache_dir: dir.join(".homelab").join("cache").join("netboot"),
        serve_hint: "homelab-cli pxe serve --address <this host's address on their network>".into(),
    })))
}

/// A loopback HTTP server answering every GET with a small made-up template archive, so
/// that `--simulate` exercises the real `download-url` path without leaving the machine.
/// What the simulated mirror serves at `path`.
fn mirror_body(path: &str) -> String {
    format!("homelab-cli simulated LXC template {path}\n").repeat(64)
}

struct TemplateMirror {
    addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl TemplateMirror {
    async fn start() -> miette::Result<TemplateMirror> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| miette!("cannot start the simulated template mirror: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| miette!("simulated template mirror: {e}"))?;
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut req = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 16 * 1024 {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => req.extend_from_slice(&buf[..n]),
                        }
                    }
                    let line = String::from_utf8_lossy(&req);
                    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                    let body = mirror_body(&path);
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = conn.write_all(head.as_bytes()).await;
                    let _ = conn.write_all(body.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        Ok(TemplateMirror { addr, task })
    }

    /// Hex SHA-256 of what the mirror serves at `url`.
    fn sha256_of(url: &str) -> String {
        use sha2::Digest;
        let path = url::Url::parse(url)
            .map(|u| u.path().to_string())
            .unwrap_or_default();
        hex::encode(sha2::Sha256::digest(mirror_body(&path).as_bytes()))
    }

    /// The mirror's URL for `url` (same file name, so the stored volume is the same).
    fn url_for(&self, url: &str) -> String {
        let path = url::Url::parse(url)
            .map(|u| u.path().to_string())
            .unwrap_or_else(|_| "/template.tar.zst".into());
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for TemplateMirror {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn summary(finished: &[graph::Finished], outputs: &[String]) -> String {
    let mut s = String::from("\n");
    for f in finished {
        let line = match &f.outcome {
            Outcome::Done { detail } => format!(
                "  ok      {} ({detail}, {:.1}s)\n",
                f.label,
                f.elapsed.as_secs_f64()
            ),
            Outcome::Failed { error } => format!("  FAILED  {}: {}\n", f.label, error.message),
            Outcome::Skipped { because } => {
                format!("  skipped {} (waits for {because})\n", f.label)
            }
        };
        s.push_str(&line);
    }
    for o in outputs {
        s.push_str(&format!("  wrote   {o} (SOPS-encrypted)\n"));
    }
    let ok = finished
        .iter()
        .filter(|f| matches!(f.outcome, Outcome::Done { .. }))
        .count();
    s.push_str(&format!(
        "\nApply: {ok} of {} step(s) done.\n",
        finished.len()
    ));
    s
}

/// Ask on the terminal; refuse when there is none.
pub fn confirm(question: &str) -> miette::Result<()> {
    if !std::io::stdin().is_terminal() {
        return Err(miette!(
            help = "pass --yes to confirm",
            "{question} Refusing without confirmation (stdin is not a terminal)"
        ));
    }
    eprint!("{question} Continue? [y/N] ");
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| miette!("cannot read the answer: {e}"))?;
    if matches!(line.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        Err(miette!("cancelled"))
    }
}
