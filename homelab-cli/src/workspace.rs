//! The homelab repository on disk: homelab.yaml, its SOPS secrets, and the encrypted files
//! `up` writes. Plaintext never touches the disk: secrets are decrypted into memory and
//! outputs are encrypted before the (atomic) write.

use std::path::{Path, PathBuf};

use miette::{IntoDiagnostic, WrapErr, miette};
use secrecy::ExposeSecret;
use sops_age::{Format, Identities, Recipient};
use zeroize::Zeroizing;

use crate::model::{self, Loaded, secrets::SecretValues};

/// `-c/--config PATH` and `--env NAME`, shared by every command that reads homelab.yaml.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArg {
    /// The homelab configuration file.
    #[arg(
        short = 'c',
        long = "config",
        value_name = "PATH",
        default_value = "homelab.yaml"
    )]
    pub config: PathBuf,
    /// Environment: merge `<stem>.NAME.yaml` beside the config (`homelab.prod.yaml` for
    /// `--env prod`) onto it before reading it. Mappings merge key by key, lists of items
    /// with a `name` merge item by item by name (new names are appended, `$patch: delete`
    /// removes one), other lists and values replace, `~` removes a key. The merged document
    /// then resolves as usual: built-in defaults < `defaults` < the guest's `preset` < the
    /// guest's own keys. NAME: lowercase letters, digits and `-`.
    #[arg(
        long = "env",
        value_name = "NAME",
        env = "HOMELAB_ENV",
        value_parser = parse_env_name
    )]
    pub env: Option<String>,
}

impl ConfigArg {
    /// The selected environment (an empty `HOMELAB_ENV` selects none).
    pub fn env(&self) -> Option<&str> {
        self.env.as_deref().filter(|e| !e.is_empty())
    }

    /// Open the repository with the selected environment merged in.
    pub fn open(&self) -> miette::Result<Workspace> {
        Workspace::open_env(&self.config, self.env())
    }
}

fn parse_env_name(s: &str) -> Result<String, String> {
    if s.is_empty() || model::layers::is_env_name(s) {
        Ok(s.to_string())
    } else {
        Err("lowercase letters, digits and `-`, e.g. `prod`".into())
    }
}

/// An opened homelab repository.
#[derive(Debug)]
pub struct Workspace {
    /// The parsed configuration.
    pub loaded: Loaded,
    /// Age identities able to decrypt its files.
    pub identities: Identities,
}

impl Workspace {
    /// Parse homelab.yaml and gather the age identities (the `age_key_file` it names, then
    /// the environment as sops does).
    pub fn open(path: &Path) -> miette::Result<Self> {
        Self::open_env(path, None)
    }

    /// [`Workspace::open`] with environment `env`'s overlay merged onto homelab.yaml (see
    /// [`model::layers`]).
    pub fn open_env(path: &Path, env: Option<&str>) -> miette::Result<Self> {
        let loaded = model::load_env(path, env)?;
        let mut identities = Identities::from_env();
        if let Some(s) = &loaded.config.secrets
            && let Some(k) = &s.age_key_file
        {
            let key = loaded.relative(k);
            identities.add_file(&key).map_err(|e| {
                miette!(
                    help = "point `secrets.age_key_file` at your age identity, or remove it and set SOPS_AGE_KEY_FILE",
                    "cannot load the age key {}: {e}",
                    key.display()
                )
            })?;
        }
        // Temporary files of a run that was killed mid-write: the repository and the
        // directories of the files we write.
        let mut dirs = vec![loaded.dir.clone()];
        if let Some(s) = &loaded.config.secrets {
            dirs.push(loaded.relative(&s.file));
        }
        dirs.push(loaded.relative(&loaded.config.outputs.talosconfig));
        dirs.push(loaded.relative(&loaded.config.outputs.kubeconfig));
        if let Some(t) = &loaded.config.talos {
            dirs.push(loaded.relative(&t.secrets_file));
        }
        for (i, d) in dirs.iter_mut().enumerate() {
            if i > 0 {
                *d = d.parent().map(Path::to_path_buf).unwrap_or_default();
            }
        }
        dirs.sort();
        dirs.dedup();
        for d in &dirs {
            clean_temp_files(d);
        }
        Ok(Workspace { loaded, identities })
    }

    /// Decrypt the secrets file in memory (empty when the config names none).
    pub fn secrets(&self) -> miette::Result<SecretValues> {
        let Some(s) = &self.loaded.config.secrets else {
            return Ok(SecretValues::default());
        };
        let path = self.loaded.relative(&s.file);
        let plain = self.decrypt(&path)?.ok_or_else(|| {
            miette!(
                help = "create it with `homelab-cli init`, or `sops` and a .sops.yaml rule",
                "the secrets file {} does not exist",
                path.display()
            )
        })?;
        let text = std::str::from_utf8(&plain)
            .into_diagnostic()
            .wrap_err_with(|| format!("{} is not UTF-8", path.display()))?;
        let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(text)
            .into_diagnostic()
            .wrap_err_with(|| format!("{} does not hold YAML", path.display()))?;
        Ok(SecretValues::from_yaml(&doc))
    }

    /// Decrypt a SOPS file; `Ok(None)` when it does not exist.
    pub fn decrypt(&self, path: &Path) -> miette::Result<Option<Zeroizing<Vec<u8>>>> {
        let data = match std::fs::read(path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(miette!("cannot read {}: {e}", path.display())),
        };
        sops_age::decrypt(&data, format_of(path), &self.identities)
            .map(Some)
            .map_err(|e| {
                let hint = if self.identities.is_empty() {
                    "no age identity was found: set SOPS_AGE_KEY_FILE or `secrets.age_key_file`"
                } else {
                    "the file may be encrypted to another key; `homelab-cli secrets` can show its recipients"
                };
                miette!(help = hint, "cannot decrypt {}: {e}", path.display())
            })
    }

    /// The recipients new encrypted files get: the `.sops.yaml` rule for `target`, else the
    /// recipients of the secrets file.
    pub fn recipients_for(&self, target: &Path) -> miette::Result<sops_age::EncryptOptions> {
        if let Some((opts, _)) =
            sops_age::encrypt_options_for(&absolute(target), &sops_age::Resolve::default())
                .map_err(|e| miette!("no recipients for {}: {e}", target.display()))?
        {
            return Ok(opts);
        }
        if let Some(s) = &self.loaded.config.secrets {
            let path = self.loaded.relative(&s.file);
            if let Ok(data) = std::fs::read(&path)
                && let Ok(file) = sops_age::EncryptedFile::parse(&data, format_of(&path))
            {
                let rs: Result<Vec<Recipient>, _> = file
                    .metadata()
                    .recipients()
                    .into_iter()
                    .map(Recipient::parse)
                    .collect();
                if let Ok(rs) = rs
                    && !rs.is_empty()
                {
                    return Ok(sops_age::EncryptOptions::new(rs));
                }
            }
        }
        Err(miette!(
            help = "add a creation rule with your age public key to .sops.yaml (see `homelab-cli init`)",
            "no recipients to encrypt {} to",
            target.display()
        ))
    }

    /// Encrypt `plaintext` (YAML) to `path` unless the file already decrypts to the same
    /// text. Returns whether it wrote. The write is atomic (temp file + rename).
    pub fn write_encrypted(&self, path: &Path, plaintext: &[u8]) -> miette::Result<bool> {
        if let Ok(Some(old)) = self.decrypt(path)
            && old.as_slice() == plaintext
        {
            return Ok(false);
        }
        let opts = self.recipients_for(path)?;
        let data = sops_age::encrypt(plaintext, format_of(path), &opts)
            .map_err(|e| miette!("cannot encrypt {}: {e}", path.display()))?;
        write_atomic(path, &data, 0o644)?;
        Ok(true)
    }
}

/// The SOPS store format of a path, by extension.
pub fn format_of(path: &Path) -> Format {
    match path.extension().and_then(|e| e.to_str()) {
        Some("yaml" | "yml") => Format::Yaml,
        Some("json") => Format::Json,
        Some("env") => Format::Dotenv,
        Some("ini") => Format::Ini,
        _ => Format::Binary,
    }
}

/// `path` made absolute against the current directory.
pub fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    }
}

/// How the temporary files of [`write_atomic`] start (covered by the `.gitignore` that
/// `init` writes; [`clean_temp_files`] removes those a killed run left behind).
pub const TMP_PREFIX: &str = ".homelab-tmp.";

/// Remove the temporary files an interrupted [`write_atomic`] left in `dir` (a kill between
/// writing and renaming). Returns what it removed.
pub fn clean_temp_files(dir: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return removed;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let ours = name.to_str().is_some_and(|n| n.starts_with(TMP_PREFIX));
        if ours
            && e.file_type().is_ok_and(|t| t.is_file())
            && std::fs::remove_file(e.path()).is_ok()
        {
            tracing::info!(path = %e.path().display(), "removed a temporary file left by an interrupted run");
            removed.push(e.path());
        }
    }
    removed
}

/// Write a file atomically: a temp file in the same directory, then rename. `mode` applies
/// on Unix (0600 for anything holding plaintext secrets).
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> miette::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| miette!("cannot create {}: {e}", dir.display()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(TMP_PREFIX)
        .tempfile_in(dir)
        .map_err(|e| miette!("cannot create a temporary file in {}: {e}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| miette!("cannot set permissions on {}: {e}", path.display()))?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    tmp.write_all(data)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| miette!("cannot write {}: {e}", path.display()))?;
    tmp.persist(path)
        .map_err(|e| miette!("cannot replace {}: {}", path.display(), e.error))?;
    Ok(())
}

/// A secret string for the length of a call (helper for APIs taking `&str`).
pub fn expose(s: &secrecy::SecretString) -> &str {
    s.expose_secret()
}
