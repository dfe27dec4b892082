//! `homelab-cli init`: scaffold a homelab repository: homelab.yaml, .sops.yaml, an encrypted
//! secrets file, .gitignore, and a new age key kept outside the repository.

use std::path::{Path, PathBuf};

use miette::miette;
use secrecy::ExposeSecret;

use crate::context::{Context, Exit, print_text};
use crate::model::config::json_schema;
use crate::workspace::{absolute, write_atomic};

/// Flags of `homelab-cli init`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory to scaffold (created if missing).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Homelab name.
    #[arg(long, default_value = "homelab")]
    pub name: String,
    /// Where the new age key goes (default `$SOPS_AGE_KEY_FILE`, else
    /// `~/.config/sops/age/keys.txt`); it must be outside the repository.
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
}

/// Run `homelab-cli init`.
pub async fn run(args: Args, _ctx: &Context) -> miette::Result<Exit> {
    if !crate::model::is_label(&args.name, 40) {
        return Err(miette!(
            "invalid homelab name `{}`: use lowercase letters, digits and `-`",
            args.name
        ));
    }
    let dir = absolute(&args.dir);
    std::fs::create_dir_all(&dir).map_err(|e| miette!("cannot create {}: {e}", dir.display()))?;
    let files = [
        "homelab.yaml",
        ".sops.yaml",
        "secrets.enc.yaml",
        ".gitignore",
    ];
    if !args.force {
        for f in files {
            if dir.join(f).exists() {
                return Err(miette!(
                    help = "pass --force to overwrite",
                    "{} already exists",
                    dir.join(f).display()
                ));
            }
        }
    }
    let key_file = args
        .key_file
        .clone()
        .or_else(|| {
            std::env::var_os("SOPS_AGE_KEY_FILE")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .or_else(default_key_file)
        .ok_or_else(|| miette!("neither SOPS_AGE_KEY_FILE nor HOME is set; pass --key-file"))?;
    let key_file = absolute(&key_file);
    if key_file.starts_with(&dir) {
        return Err(miette!(
            help = "keep the key outside the repository, e.g. ~/.config/sops/age/keys.txt",
            "{} is inside the repository",
            key_file.display()
        ));
    }
    let recipient = append_new_key(&key_file, &args.name)?;

    let sops_yaml = format!(
        "# SOPS creation rules: every *.enc.yaml here is encrypted to these age recipients.\n# Add a teammate's or CI's public key to the list, then run `homelab-cli secrets updatekeys`.\ncreation_rules:\n  - path_regex: .*\\.enc\\.yaml$\n    age: {recipient}\n"
    );
    write_atomic(&dir.join(".sops.yaml"), sops_yaml.as_bytes(), 0o644)?;
    let secrets = "# Fill in with `homelab-cli secrets edit secrets.enc.yaml` (or `sops secrets.enc.yaml`).\nproxmox:\n  endpoint: https://pve.example.invalid:8006\n  token_id: homelab@pve!provision\n  token_secret: replace-me\nnetwork:\n  node_ip: 192.0.2.10\n  gateway: 192.0.2.1\n";
    let opts = sops_age::EncryptOptions::new(vec![
        sops_age::Recipient::parse(&recipient).map_err(|e| miette!("{e}"))?,
    ]);
    let enc = sops_age::encrypt(secrets.as_bytes(), sops_age::Format::Yaml, &opts)
        .map_err(|e| miette!("cannot encrypt the secrets file: {e}"))?;
    write_atomic(&dir.join("secrets.enc.yaml"), &enc, 0o644)?;
    write_atomic(
        &dir.join("homelab.yaml"),
        template(&args.name).as_bytes(),
        0o644,
    )?;
    // The schema travels with the repository so editors validate offline and it matches the
    // homelab-cli that wrote it (`homelab-cli schema > homelab.schema.json` refreshes it).
    let schema = serde_json::to_string_pretty(&json_schema())
        .map_err(|e| miette!("cannot render the schema: {e}"))?;
    write_atomic(
        &dir.join("homelab.schema.json"),
        format!("{schema}\n").as_bytes(),
        0o644,
    )?;
    let gitignore = "# homelab-cli\n/.homelab/\n# Decrypted files must never be committed.\n*.dec.yaml\n*.agekey\nkeys.txt\n# Temporary files of an interrupted write (removed by the next run).\n.homelab-tmp.*\n";
    write_atomic(&dir.join(".gitignore"), gitignore.as_bytes(), 0o644)?;
    print_text(&format!(
        "Created homelab.yaml, homelab.schema.json, .sops.yaml, secrets.enc.yaml and .gitignore in {}.\nNew age key in {} (public key {recipient}); back it up: without it the secrets are lost.\nNext: `homelab-cli secrets edit secrets.enc.yaml`, `homelab-cli hooks install`, `homelab-cli plan`.\n",
        dir.display(),
        key_file.display()
    ))?;
    Ok(Exit::Success)
}

fn default_key_file() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("sops").join("age").join("keys.txt"))
}

/// Add a fresh age identity to `path` (kept 0600), returning its public key.
fn append_new_key(path: &Path, name: &str) -> miette::Result<String> {
    let id = age::x25519::Identity::generate();
    let public = id.to_public().to_string();
    let mut text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(miette!("cannot read {}: {e}", path.display())),
    };
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&format!(
        "# homelab {name}, created by homelab-cli init\n# public key: {public}\n{}\n",
        id.to_string().expose_secret()
    ));
    let bytes = zeroize::Zeroizing::new(text.into_bytes());
    write_atomic(path, &bytes, 0o600)?;
    Ok(public)
}

fn template(name: &str) -> String {
    format!(
        r#"# yaml-language-server: $schema=./homelab.schema.json
#
# Your homelab. `homelab-cli plan` shows what `homelab-cli up` would do.
name: {name}

secrets:
  file: secrets.enc.yaml

proxmox:
  endpoint: ${{secret:proxmox.endpoint}}
  token_id: ${{secret:proxmox.token_id}}
  token_secret: ${{secret:proxmox.token_secret}}
  node: pve

talos:
  version: v1.12.0
  extensions:
    - siderolabs/qemu-guest-agent
  cluster:
    name: {name}
  network:
    gateway: ${{secret:network.gateway}}
  nodes:
    - name: cp-1
      vmid: 200
      role: controlplane
      cores: 4
      memory: 16GiB
      disk: 100GiB
      ip: ${{secret:network.node_ip}}
"#
    )
}
