//! `homelab-cli proxmox snippet upload` and `proxmox ssh-fingerprint`: a node over SSH
//! (the uploader itself is `proxmox_client::snippets`).

use std::path::PathBuf;

use miette::miette;
use serde::Serialize;

use crate::context::{self, Exit, OutputFormat};

/// Subcommands of `homelab-cli proxmox snippet`.
#[derive(Debug, clap::Subcommand)]
pub enum SnippetCommand {
    /// Upload files as snippets (atomic; unchanged files are not rewritten).
    Upload(Box<SnippetUploadArgs>),
}

/// Where and how to reach a node over SSH.
#[derive(Debug, Clone, clap::Args)]
pub struct SshTarget {
    /// The node's SSH address (host name or IP).
    #[arg(long)]
    pub host: String,
    /// SSH port.
    #[arg(long, default_value_t = 22)]
    pub port: u16,
}

/// `homelab-cli proxmox ssh-fingerprint`.
#[derive(Debug, clap::Args)]
pub struct SshFingerprintArgs {
    #[command(flatten)]
    pub target: SshTarget,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// `homelab-cli proxmox snippet upload`.
#[derive(Debug, clap::Args)]
pub struct SnippetUploadArgs {
    #[command(flatten)]
    pub target: SshTarget,
    /// The pinned host key fingerprint, `SHA256:<base64>`.
    #[arg(long, env = "HOMELAB_SSH_HOST_KEY")]
    pub host_key: String,
    /// SSH user (PVE's snippet directories belong to root).
    #[arg(long, default_value = "root")]
    pub user: String,
    /// Private key (OpenSSH format, ed25519 recommended; not passphrase protected, or
    /// use an unlocked copy).
    #[arg(long, short = 'i')]
    pub identity: PathBuf,
    /// The storage's id, for the volume ids printed.
    #[arg(long, default_value = "local")]
    pub storage: String,
    /// The storage's mount path on the node (`/var/lib/vz` for `local`).
    #[arg(long, default_value = "/var/lib/vz")]
    pub storage_path: String,
    /// Files to upload; each keeps its file name.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

pub(super) async fn ssh_fingerprint(args: &SshFingerprintArgs) -> miette::Result<Exit> {
    let fp = proxmox_client::snippets::scan_host_key(&args.target.host, args.target.port)
        .await
        .map_err(|e| miette!("{e}"))?;
    match args.output {
        OutputFormat::Json => context::print_json(&serde_json::json!({
            "host": args.target.host,
            "port": args.target.port,
            "fingerprint": fp,
        }))?,
        OutputFormat::Text => context::print_text(&format!("{fp}\n"))?,
    }
    Ok(Exit::Success)
}

#[derive(Serialize)]
struct UploadedOut {
    file: String,
    volid: String,
    path: String,
    changed: bool,
}

pub(super) async fn snippet_upload(args: SnippetUploadArgs) -> miette::Result<Exit> {
    use proxmox_client::snippets::{HostKeyPin, SnippetUploader, UploadOutcome};
    let pin: HostKeyPin = args
        .host_key
        .parse()
        .map_err(|e| miette!("--host-key: {e}"))?;
    // Check every file before connecting: all or nothing on bad input.
    let mut files = Vec::new();
    for f in &args.files {
        let name = f
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| miette!("{}: not a file name", f.display()))?
            .to_string();
        let path = proxmox_client::snippets::snippet_path(&args.storage_path, &name)
            .map_err(|e| miette!("{}: {e}", f.display()))?;
        let data = std::fs::read(f).map_err(|e| miette!("cannot read {}: {e}", f.display()))?;
        files.push((f.display().to_string(), name, path, data));
    }
    let key = proxmox_client::snippets::load_private_key(&args.identity, None)
        .map_err(|e| miette!("{e}"))?;
    let up = SnippetUploader::connect(&args.target.host, args.target.port, &args.user, key, &pin)
        .await
        .map_err(|e| miette!("{e}"))?;
    let mut out = Vec::new();
    for (file, name, path, data) in files {
        let outcome = up.upload(&path, &data).await;
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                up.close().await;
                return Err(miette!("{file}: {e}"));
            }
        };
        out.push(UploadedOut {
            file,
            volid: proxmox_client::snippets::snippet_volid(&args.storage, &name),
            path,
            changed: outcome != UploadOutcome::Unchanged,
        });
    }
    up.close().await;
    match args.output {
        OutputFormat::Json => context::print_json(&out)?,
        OutputFormat::Text => {
            let mut s = String::new();
            for o in &out {
                let what = if o.changed { "uploaded" } else { "unchanged" };
                s.push_str(&format!("{what:9}  {}  ({})\n", o.volid, o.path));
            }
            context::print_text(&s)?;
        }
    }
    Ok(Exit::Success)
}
