//! `homelab-cli talos ...`: the secrets bundle, machine configs and the Talos API, through
//! `talos-api` (the same files and flags as `talosctl` where they overlap).

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use miette::{IntoDiagnostic, WrapErr, miette};
use serde::Serialize;
use talos_api::client::{ApplyMode, Client, ClientBuilder};
use talos_api::config::{ClusterInput, MachineConfig, MachineType, NodeInput};
use talos_api::health::{self, WaitOptions};
use talos_api::patch::Patch;
use talos_api::secrets::SecretsBundle;
use talos_api::talosconfig::{Talosconfig, write_private};
use zeroize::Zeroizing;

use crate::context::{Context, Exit, OutputFormat, print_json, print_text};

/// Subcommands of `homelab-cli talos`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Generate a secrets bundle or machine configs.
    #[command(subcommand)]
    Gen(GenCommand),
    /// Apply a machine config to a node (maintenance mode with --insecure).
    Apply(ApplyArgs),
    /// Bootstrap etcd on one control-plane node (once per cluster).
    Bootstrap(ConnArgs),
    /// Fetch the admin kubeconfig from a control-plane node.
    Kubeconfig(KubeconfigArgs),
    /// Print the Talos version of nodes.
    Version(VersionArgs),
    /// Wait until the node answers, etcd is healthy and Kubernetes is ready.
    Health(HealthArgs),
    /// Return a node of homelab.yaml to maintenance mode (drain, leave etcd, graceful reset
    /// wiping STATE and EPHEMERAL); the next `up` installs it again.
    Reset(super::talos_reset::ResetArgs),
    /// etcd snapshots (encrypted) and disaster recovery of the repository's cluster.
    #[command(subcommand)]
    Etcd(super::talos_etcd::Command),
}

/// `talos gen ...`.
#[derive(Debug, clap::Subcommand)]
pub enum GenCommand {
    /// Generate a secrets bundle (`secrets.yaml` of `talosctl gen secrets`).
    Secrets(GenSecretsArgs),
    /// Generate controlplane.yaml, worker.yaml and talosconfig.
    Config(Box<GenConfigArgs>),
}

/// Where encrypted output goes to.
#[derive(Debug, Clone, Args)]
pub struct EncryptArgs {
    /// Write SOPS-encrypted output (age). Recipients: --age, else the .sops.yaml creation
    /// rule for the file, else SOPS_AGE_RECIPIENTS.
    #[arg(long)]
    pub encrypt: bool,
    /// age recipient for --encrypt (repeatable or comma-separated).
    #[arg(
        long = "age",
        value_name = "RECIPIENT",
        requires = "encrypt",
        value_delimiter = ','
    )]
    pub age: Vec<String>,
}

/// `talos gen secrets`.
#[derive(Debug, Args)]
pub struct GenSecretsArgs {
    /// Output file.
    #[arg(short, long, default_value = "secrets.yaml", value_name = "FILE")]
    pub output: PathBuf,
    /// Overwrite an existing file.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub encrypt: EncryptArgs,
}

/// `talos gen config`.
#[derive(Debug, Args)]
pub struct GenConfigArgs {
    /// Secrets bundle (plain or SOPS-encrypted); a new one is generated when absent.
    #[arg(long, value_name = "FILE")]
    pub secrets: Option<PathBuf>,
    /// Cluster name.
    #[arg(long, value_name = "NAME")]
    pub cluster_name: String,
    /// Kubernetes API endpoint, e.g. https://192.168.1.10:6443.
    #[arg(long, value_name = "URL")]
    pub endpoint: String,
    /// Install disk.
    #[arg(long, default_value = talos_api::config::DEFAULT_INSTALL_DISK, value_name = "DISK")]
    pub install_disk: String,
    /// Installer image (e.g. an Image Factory installer).
    #[arg(long, value_name = "IMAGE")]
    pub install_image: Option<String>,
    /// Kubernetes version.
    #[arg(long, default_value = talos_api::config::DEFAULT_KUBERNETES_VERSION, value_name = "VERSION")]
    pub kubernetes_version: String,
    /// Extra certificate SANs (repeatable or comma-separated).
    #[arg(long = "additional-sans", value_name = "SAN", value_delimiter = ',')]
    pub additional_sans: Vec<String>,
    /// Let workloads run on control planes (single-node clusters).
    #[arg(long)]
    pub allow_scheduling_on_control_planes: bool,
    /// Patch for all configs: @FILE or inline YAML/JSON (repeatable).
    #[arg(long = "config-patch", value_name = "PATCH")]
    pub config_patch: Vec<String>,
    /// Patch for the control-plane config only.
    #[arg(long = "config-patch-control-plane", value_name = "PATCH")]
    pub config_patch_control_plane: Vec<String>,
    /// Patch for the worker config only.
    #[arg(long = "config-patch-worker", value_name = "PATCH")]
    pub config_patch_worker: Vec<String>,
    /// Output directory.
    #[arg(short, long, default_value = ".", value_name = "DIR")]
    pub output_dir: PathBuf,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub encrypt: EncryptArgs,
}

/// How to reach the Talos API.
#[derive(Debug, Clone, Args)]
pub struct ConnArgs {
    /// talosconfig path (default $TALOSCONFIG, then ~/.talos/config).
    #[arg(long, value_name = "FILE")]
    pub talosconfig: Option<PathBuf>,
    /// talosconfig context (default: the current one).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// Endpoints to connect to (default: the talosconfig's; the first is used).
    #[arg(short, long, value_name = "HOST", value_delimiter = ',')]
    pub endpoints: Vec<String>,
    /// Target nodes (proxied through the endpoint).
    #[arg(short, long, value_name = "HOST", value_delimiter = ',')]
    pub nodes: Vec<String>,
}

/// `talos apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Machine config file (plain or SOPS-encrypted).
    #[arg(short, long, value_name = "FILE")]
    pub file: PathBuf,
    /// Maintenance mode: no client certificate and no server verification (the node has no
    /// config yet). Prefer --cert-fingerprint.
    #[arg(short, long)]
    pub insecure: bool,
    /// Maintenance mode with the server pinned by SPKI fingerprint (as printed on the
    /// console).
    #[arg(long, value_name = "FP")]
    pub cert_fingerprint: Option<String>,
    /// auto, reboot, no-reboot, staged or try.
    #[arg(short, long, default_value = "auto", value_name = "MODE")]
    pub mode: String,
    /// Only check what would change.
    #[arg(long)]
    pub dry_run: bool,
    /// Patches to apply first (@FILE or inline; repeatable).
    #[arg(long = "config-patch", value_name = "PATCH")]
    pub config_patch: Vec<String>,
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// `talos kubeconfig`.
#[derive(Debug, Args)]
pub struct KubeconfigArgs {
    /// Where to write it ("-" for stdout).
    #[arg(default_value = "kubeconfig", value_name = "PATH")]
    pub path: PathBuf,
    /// Overwrite an existing file.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub encrypt: EncryptArgs,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// `talos version`.
#[derive(Debug, Args)]
pub struct VersionArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// `talos health`.
#[derive(Debug, Args)]
pub struct HealthArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// How long to wait in total.
    #[arg(long, default_value = "10m", value_parser = parse_duration, value_name = "DURATION")]
    pub wait_timeout: Duration,
    /// Skip the Kubernetes API check.
    #[arg(long)]
    pub skip_kubernetes: bool,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "ms" => return Ok(Duration::from_millis(n)),
        _ => {
            return Err(format!(
                "invalid duration unit in {s:?} (use ms, s, m or h)"
            ));
        }
    };
    Ok(Duration::from_secs(secs))
}

/// Run a `homelab-cli talos` subcommand.
pub async fn run(cmd: Command, ctx: &Context) -> miette::Result<Exit> {
    match cmd {
        Command::Gen(GenCommand::Secrets(a)) => gen_secrets(a),
        Command::Gen(GenCommand::Config(a)) => gen_config(*a),
        Command::Apply(a) => apply(a).await,
        Command::Bootstrap(a) => bootstrap(a).await,
        Command::Kubeconfig(a) => kubeconfig(a).await,
        Command::Version(a) => version(a).await,
        Command::Health(a) => health_cmd(a, ctx).await,
        Command::Reset(a) => super::talos_reset::run(a, ctx).await,
        Command::Etcd(c) => super::talos_etcd::run(c, ctx).await,
    }
}

fn refuse_existing(path: &Path, force: bool) -> miette::Result<()> {
    if !force && path.exists() {
        return Err(miette!(
            help = "pass --force to overwrite",
            "{} already exists",
            path.display()
        ));
    }
    Ok(())
}

fn encrypt_options(args: &EncryptArgs, output: &Path) -> miette::Result<sops_age::EncryptOptions> {
    let abs = std::path::absolute(output).into_diagnostic()?;
    let request = sops_age::Resolve {
        flags: &args.age,
        environment: true,
        ..Default::default()
    };
    if let Some((opts, _)) = sops_age::encrypt_options_for(&abs, &request)
        .map_err(|e| miette!("no age recipients for {}: {e}", output.display()))?
    {
        return Ok(opts);
    }
    Err(miette!(
        help = "pass --age age1..., or add a creation rule to .sops.yaml",
        "no age recipients to encrypt {} to",
        output.display()
    ))
}

/// Write a secret-bearing file: SOPS-encrypted when asked, else plain with mode 0600.
fn write_secret_file(path: &Path, plain: &str, enc: &EncryptArgs) -> miette::Result<()> {
    if enc.encrypt {
        let opts = encrypt_options(enc, path)?;
        let data = sops_age::encrypt(plain.as_bytes(), sops_age::Format::Yaml, &opts)
            .map_err(|e| miette!("cannot encrypt {}: {e}", path.display()))?;
        write_private(path, &data).into_diagnostic()
    } else {
        write_private(path, plain.as_bytes()).into_diagnostic()
    }
}

/// Read a file that may be SOPS-encrypted (decrypted with the age identities of the
/// environment, like sops).
fn read_maybe_encrypted(path: &Path) -> miette::Result<Zeroizing<String>> {
    let data = Zeroizing::new(
        std::fs::read(path)
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot read {}", path.display()))?,
    );
    let plain = if sops_age::file_status(&data, sops_age::Format::Yaml) {
        let ids = sops_age::Identities::from_env();
        sops_age::decrypt(&data, sops_age::Format::Yaml, &ids)
            .into_diagnostic()
            .wrap_err_with(|| {
                format!(
                    "cannot decrypt {} (set SOPS_AGE_KEY_FILE to a key it is encrypted to)",
                    path.display()
                )
            })?
    } else {
        data
    };
    String::from_utf8(plain.to_vec())
        .map(Zeroizing::new)
        .map_err(|_| miette!("{} is not UTF-8 text", path.display()))
}

fn gen_secrets(a: GenSecretsArgs) -> miette::Result<Exit> {
    refuse_existing(&a.output, a.force)?;
    let bundle = SecretsBundle::generate().into_diagnostic()?;
    write_secret_file(&a.output, &bundle.to_yaml(), &a.encrypt)?;
    eprintln!("wrote {}", a.output.display());
    Ok(Exit::Success)
}

fn load_patches(args: &[String]) -> miette::Result<Vec<Patch>> {
    args.iter()
        .map(|p| Patch::from_arg(p).into_diagnostic())
        .collect()
}

fn gen_config(a: GenConfigArgs) -> miette::Result<Exit> {
    let out = &a.output_dir;
    let files = ["controlplane.yaml", "worker.yaml", "talosconfig"].map(|f| out.join(f));
    for f in &files {
        refuse_existing(f, a.force)?;
    }
    let bundle = match &a.secrets {
        Some(p) => {
            let text = read_maybe_encrypted(p)?;
            SecretsBundle::from_yaml(&text, &p.display().to_string()).into_diagnostic()?
        }
        None => SecretsBundle::generate().into_diagnostic()?,
    };
    let mut cluster = ClusterInput::new(&a.cluster_name, &a.endpoint)
        .into_diagnostic()?
        .install_disk(&a.install_disk)
        .kubernetes_version(&a.kubernetes_version)
        .cert_sans(a.additional_sans.clone())
        .allow_scheduling_on_control_planes(a.allow_scheduling_on_control_planes);
    if let Some(i) = &a.install_image {
        cluster = cluster.install_image(i);
    }
    let common = load_patches(&a.config_patch)?;
    let mut cp = MachineConfig::generate(
        &cluster,
        &bundle,
        MachineType::ControlPlane,
        &NodeInput::default(),
    )
    .into_diagnostic()?;
    cp.apply_patches(&common).into_diagnostic()?;
    cp.apply_patches(&load_patches(&a.config_patch_control_plane)?)
        .into_diagnostic()?;
    let mut worker = MachineConfig::generate(
        &cluster,
        &bundle,
        MachineType::Worker,
        &NodeInput::default(),
    )
    .into_diagnostic()?;
    worker.apply_patches(&common).into_diagnostic()?;
    worker
        .apply_patches(&load_patches(&a.config_patch_worker)?)
        .into_diagnostic()?;
    for (name, cfg) in [("controlplane.yaml", &cp), ("worker.yaml", &worker)] {
        cfg.validate()
            .into_diagnostic()
            .wrap_err_with(|| format!("generated {name} is invalid (check the patches)"))?;
    }
    std::fs::create_dir_all(out)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot create {}", out.display()))?;
    write_secret_file(&files[0], &cp.to_yaml(), &a.encrypt)?;
    write_secret_file(&files[1], &worker.to_yaml(), &a.encrypt)?;
    // talosctl writes `endpoints: []`; the endpoints are filled by `talosctl config endpoint`.
    let tc = talos_api::config::admin_talosconfig(&a.cluster_name, &bundle, &[], &[])
        .into_diagnostic()?;
    write_secret_file(&files[2], &tc.to_yaml(), &a.encrypt)?;
    for f in &files {
        eprintln!("wrote {}", f.display());
    }
    Ok(Exit::Success)
}

fn load_talosconfig(conn: &ConnArgs) -> miette::Result<Talosconfig> {
    let path = conn
        .talosconfig
        .clone()
        .or_else(Talosconfig::default_path)
        .ok_or_else(|| miette!("no talosconfig: pass --talosconfig or set TALOSCONFIG"))?;
    let text = read_maybe_encrypted(&path)?;
    Talosconfig::from_yaml(&text, &path.display().to_string()).into_diagnostic()
}

/// An mTLS client from the talosconfig, with -e/-n overrides.
fn mtls_client(conn: &ConnArgs) -> miette::Result<Client> {
    let mut cfg = load_talosconfig(conn)?;
    let name = conn.context.clone().unwrap_or_else(|| cfg.context.clone());
    if !conn.endpoints.is_empty() {
        let ctx = cfg
            .contexts
            .get_mut(&name)
            .ok_or_else(|| miette!("talosconfig has no context {name:?}"))?;
        ctx.endpoints = conn.endpoints.clone();
    }
    let mut b = ClientBuilder::from_talosconfig(&cfg, Some(&name)).into_diagnostic()?;
    if !conn.nodes.is_empty() {
        b = b.nodes(conn.nodes.clone());
    }
    b.build().into_diagnostic()
}

fn parse_mode(s: &str) -> miette::Result<ApplyMode> {
    Ok(match s {
        "auto" => ApplyMode::Auto,
        "reboot" => ApplyMode::Reboot,
        "no-reboot" => ApplyMode::NoReboot,
        "staged" => ApplyMode::Staged,
        "try" => ApplyMode::Try,
        other => {
            return Err(miette!(
                "unknown apply mode {other:?} (use auto, reboot, no-reboot, staged or try)"
            ));
        }
    })
}

#[derive(Serialize)]
struct ApplyResult {
    node: String,
    mode: String,
    mode_details: String,
    warnings: Vec<String>,
}

async fn apply(a: ApplyArgs) -> miette::Result<Exit> {
    let mode = parse_mode(&a.mode)?;
    let text = read_maybe_encrypted(&a.file)?;
    let mut cfg =
        MachineConfig::from_yaml(&text, &a.file.display().to_string()).into_diagnostic()?;
    cfg.apply_patches(&load_patches(&a.config_patch)?)
        .into_diagnostic()?;
    let data = cfg.to_yaml();
    let mut results = Vec::new();
    if a.insecure || a.cert_fingerprint.is_some() {
        // Maintenance mode: each node is its own endpoint (no proxying without mTLS).
        let targets = if a.conn.nodes.is_empty() {
            &a.conn.endpoints
        } else {
            &a.conn.nodes
        };
        if targets.is_empty() {
            return Err(miette!("pass the node address with --nodes"));
        }
        for node in targets {
            let mut b = ClientBuilder::maintenance(node);
            if let Some(fp) = &a.cert_fingerprint {
                b = b.pin_fingerprint(fp);
            }
            let c = b.build().into_diagnostic()?;
            let r = c
                .apply_configuration(data.as_bytes(), mode, a.dry_run)
                .await
                .into_diagnostic()
                .wrap_err_with(|| format!("applying {} to {node}", a.file.display()))?;
            for m in r {
                results.push(ApplyResult {
                    node: node.clone(),
                    mode: mode_name(m.mode),
                    mode_details: m.mode_details,
                    warnings: m.warnings,
                });
            }
        }
    } else {
        let c = mtls_client(&a.conn)?;
        let r = c
            .apply_configuration(data.as_bytes(), mode, a.dry_run)
            .await
            .into_diagnostic()
            .wrap_err_with(|| format!("applying {}", a.file.display()))?;
        for m in r {
            let node = m
                .metadata
                .as_ref()
                .map(|md| md.hostname.clone())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| c.endpoint().to_string());
            results.push(ApplyResult {
                node,
                mode: mode_name(m.mode),
                mode_details: m.mode_details,
                warnings: m.warnings,
            });
        }
    }
    match a.output {
        OutputFormat::Json => print_json(&results)?,
        OutputFormat::Text => {
            let mut s = String::new();
            for r in &results {
                s.push_str(&format!(
                    "{}: applied configuration (mode {})\n",
                    r.node, r.mode
                ));
                for w in &r.warnings {
                    s.push_str(&format!("  warning: {w}\n"));
                }
                if !r.mode_details.is_empty() {
                    s.push_str(&format!("  {}\n", r.mode_details.replace('\n', "\n  ")));
                }
            }
            print_text(&s)?;
        }
    }
    Ok(Exit::Success)
}

fn mode_name(m: i32) -> String {
    ApplyMode::try_from(m)
        .map(|m| m.as_str_name().to_string())
        .unwrap_or_else(|_| m.to_string())
}

async fn bootstrap(a: ConnArgs) -> miette::Result<Exit> {
    let c = mtls_client(&a)?;
    c.bootstrap().await.into_diagnostic()?;
    eprintln!(
        "bootstrapped etcd on {}",
        a.nodes.first().map(String::as_str).unwrap_or(c.endpoint())
    );
    Ok(Exit::Success)
}

async fn kubeconfig(a: KubeconfigArgs) -> miette::Result<Exit> {
    let c = mtls_client(&a.conn)?;
    let kc = c.kubeconfig().await.into_diagnostic()?;
    if a.path.as_os_str() == "-" {
        print_text(&String::from_utf8_lossy(&kc))?;
        return Ok(Exit::Success);
    }
    refuse_existing(&a.path, a.force)?;
    let text = std::str::from_utf8(&kc).map_err(|_| miette!("the kubeconfig is not UTF-8"))?;
    write_secret_file(&a.path, text, &a.encrypt)?;
    eprintln!("wrote {}", a.path.display());
    Ok(Exit::Success)
}

#[derive(Serialize)]
struct NodeVersion {
    node: String,
    tag: String,
    sha: String,
    os: String,
    arch: String,
    platform: String,
}

async fn version(a: VersionArgs) -> miette::Result<Exit> {
    let c = mtls_client(&a.conn)?;
    let msgs = c.version().await.into_diagnostic()?;
    let out: Vec<NodeVersion> = msgs
        .into_iter()
        .map(|m| {
            let v = m.version.unwrap_or_default();
            NodeVersion {
                node: m
                    .metadata
                    .map(|md| md.hostname)
                    .filter(|h| !h.is_empty())
                    .unwrap_or_else(|| c.endpoint().to_string()),
                tag: v.tag,
                sha: v.sha,
                os: v.os,
                arch: v.arch,
                platform: m.platform.map(|p| p.name).unwrap_or_default(),
            }
        })
        .collect();
    match a.output {
        OutputFormat::Json => print_json(&out)?,
        OutputFormat::Text => {
            let s: String = out
                .iter()
                .map(|n| {
                    format!(
                        "{}:\n\tTag:\t{}\n\tSHA:\t{}\n\tOS/Arch:\t{}/{}\n\tPlatform:\t{}\n",
                        n.node, n.tag, n.sha, n.os, n.arch, n.platform
                    )
                })
                .collect();
            print_text(&s)?;
        }
    }
    Ok(Exit::Success)
}

#[derive(Serialize)]
struct HealthReport {
    endpoint: String,
    talos_api: bool,
    etcd: bool,
    kubernetes: Option<bool>,
}

async fn health_cmd(a: HealthArgs, ctx: &Context) -> miette::Result<Exit> {
    let c = mtls_client(&a.conn)?;
    let verbose = ctx.verbosity > 0 || ctx.progress;
    let progress = move |ev: &health::WaitEvent| {
        if verbose && let Some(e) = &ev.last_error {
            eprintln!("waiting for {} ({}s): {e}", ev.what, ev.elapsed.as_secs());
        }
    };
    let opts = WaitOptions::new(a.wait_timeout)
        .interval(Duration::from_secs(1))
        .progress(&progress);
    health::wait_for("Talos API (mTLS)", &opts, || {
        let c = c.clone();
        async move { c.version().await.map(|_| ()) }
    })
    .await
    .into_diagnostic()?;
    health::wait_etcd_healthy(&c, &opts)
        .await
        .into_diagnostic()?;
    let mut report = HealthReport {
        endpoint: c.endpoint().to_string(),
        talos_api: true,
        etcd: true,
        kubernetes: None,
    };
    if !a.skip_kubernetes {
        let kc = c.kubeconfig().await.into_diagnostic()?;
        let kc = Zeroizing::new(String::from_utf8_lossy(&kc).into_owned());
        health::wait_kubernetes_ready(&kc, &opts)
            .await
            .into_diagnostic()?;
        report.kubernetes = Some(true);
    }
    match a.output {
        OutputFormat::Json => print_json(&report)?,
        OutputFormat::Text => {
            let mut s = format!(
                "{}: Talos API ok\n{}: etcd healthy\n",
                report.endpoint, report.endpoint
            );
            if report.kubernetes == Some(true) {
                s.push_str(&format!("{}: Kubernetes /readyz ok\n", report.endpoint));
            }
            print_text(&s)?;
        }
    }
    Ok(Exit::Success)
}
