//! age recipients and identities (X25519, SSH ed25519/RSA) and their discovery from the
//! environment the way sops 3.11 does it.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// An age recipient: `age1…` (X25519) or a whole SSH public-key line.
#[derive(Clone)]
pub struct Recipient {
    text: String,
    inner: Arc<dyn age::Recipient + Send + Sync>,
}

impl std::fmt::Debug for Recipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Recipient").field(&self.text).finish()
    }
}

impl PartialEq for Recipient {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Recipient {
    /// Parse a recipient string (surrounding spaces are trimmed, as sops does).
    ///
    /// ```
    /// let r = sops_age::Recipient::parse(
    ///     "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p",
    /// ).unwrap();
    /// assert!(r.as_str().starts_with("age1"));
    /// ```
    pub fn parse(s: &str) -> Result<Self> {
        let text = s.trim().to_owned();
        let invalid = |reason: String| Error::InvalidRecipient {
            recipient: text.clone(),
            reason,
        };
        let inner: Arc<dyn age::Recipient + Send + Sync> = if text.starts_with("ssh-") {
            Arc::new(
                age::ssh::Recipient::from_str(&text)
                    .map_err(|e| invalid(format!("unsupported or invalid SSH key: {e:?}")))?,
            )
        } else if text.starts_with("age1") {
            Arc::new(
                age::x25519::Recipient::from_str(&text)
                    .map_err(|e| invalid(format!("not an age X25519 recipient: {e}")))?,
            )
        } else {
            return Err(invalid(
                "expected an age1… recipient or an ssh-ed25519/ssh-rsa public key".into(),
            ));
        };
        Ok(Recipient { text, inner })
    }

    /// Parse a comma-separated list (empty items are dropped), as `--age` takes it.
    pub fn parse_list(s: &str) -> Result<Vec<Self>> {
        s.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Recipient::parse)
            .collect()
    }

    /// The recipient as written in the `recipient` metadata field.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The age recipient itself (for whole-file age encryption, `agefile.rs`).
    pub(crate) fn age(&self) -> &(dyn age::Recipient + Send + Sync) {
        self.inner.as_ref()
    }

    /// Wrap `data` (the data key or a Shamir share) for this recipient alone, returning
    /// the ASCII-armored age file with LF line endings and one trailing newline.
    pub(crate) fn wrap(&self, data: &[u8]) -> Result<String> {
        let enc = age::Encryptor::with_recipients(std::iter::once(
            self.inner.as_ref() as &dyn age::Recipient
        ))
        .map_err(|e| Error::Age(e.to_string()))?;
        let mut out = Vec::new();
        let armor =
            age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)
                .map_err(|e| Error::Age(e.to_string()))?;
        let mut w = enc
            .wrap_output(armor)
            .map_err(|e| Error::Age(e.to_string()))?;
        w.write_all(data).map_err(|e| Error::Age(e.to_string()))?;
        w.finish()
            .and_then(|a| a.finish())
            .map_err(|e| Error::Age(e.to_string()))?;
        let mut s = String::from_utf8(out)
            .map_err(|_| Error::Age("armor is not UTF-8".into()))?
            .replace("\r\n", "\n");
        if !s.ends_with('\n') {
            s.push('\n');
        }
        Ok(s)
    }
}

/// A set of identities used to unwrap data keys, plus the load errors seen while
/// gathering them (reported only if decryption then fails, as sops 3.11 does).
/// Cloning is cheap (the keys are shared).
#[derive(Default, Clone)]
pub struct Identities {
    ids: Vec<Arc<dyn age::Identity + Send + Sync>>,
    errors: Vec<String>,
}

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identities")
            .field("count", &self.ids.len())
            .field("errors", &self.errors)
            .finish()
    }
}

impl Identities {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of identities loaded.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no identity was loaded.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Errors gathered while loading identity sources.
    pub fn load_errors(&self) -> &[String] {
        &self.errors
    }

    /// Parse identity text: one identity per line, `#` lines and blank lines ignored.
    ///
    /// ```
    /// let mut ids = sops_age::Identities::new();
    /// ids.add_text(
    ///     "# created: today\nAGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX\n",
    ///     "example",
    /// ).unwrap();
    /// assert_eq!(ids.len(), 1);
    /// ```
    pub fn add_text(&mut self, text: &str, source: &str) -> Result<()> {
        let trimmed = text.trim_start();
        if trimmed.starts_with("age-encryption") || trimmed.starts_with("-----BEGIN AGE") {
            return Err(Error::InvalidIdentity {
                source_name: source.to_owned(),
                reason: "passphrase-protected identity files are not supported; decrypt it with \
                         `age -d` and pass the key via SOPS_AGE_KEY_CMD"
                    .into(),
            });
        }
        if trimmed.starts_with("-----BEGIN OPENSSH PRIVATE KEY")
            || trimmed.starts_with("-----BEGIN RSA PRIVATE KEY")
        {
            return self.add_ssh_text(text, source);
        }
        let file = age::IdentityFile::from_buffer(text.as_bytes()).map_err(|e| {
            Error::InvalidIdentity {
                source_name: source.to_owned(),
                reason: e.to_string(),
            }
        })?;
        let ids = file.into_identities().map_err(|e| Error::InvalidIdentity {
            source_name: source.to_owned(),
            reason: e.to_string(),
        })?;
        self.ids.extend(ids.into_iter().map(Arc::from));
        Ok(())
    }

    /// Add an SSH private key (ed25519 or RSA, unencrypted) from its PEM text.
    pub fn add_ssh_text(&mut self, text: &str, source: &str) -> Result<()> {
        let id = age::ssh::Identity::from_buffer(text.as_bytes(), Some(source.to_owned()))
            .map_err(|e| Error::InvalidIdentity {
                source_name: source.to_owned(),
                reason: e.to_string(),
            })?;
        match id {
            age::ssh::Identity::Unencrypted(_) => {
                self.ids.push(Arc::new(id));
                Ok(())
            }
            age::ssh::Identity::Encrypted(_) => Err(Error::InvalidIdentity {
                source_name: source.to_owned(),
                reason: "passphrase-protected SSH keys are not supported".into(),
            }),
            age::ssh::Identity::Unsupported(_) => Err(Error::InvalidIdentity {
                source_name: source.to_owned(),
                reason: "unsupported SSH key type (only ed25519 and RSA work)".into(),
            }),
        }
    }

    /// Load an identity file (age identities or an SSH private key).
    pub fn add_file(&mut self, path: &Path) -> Result<()> {
        let text = read_secret_file(path)?;
        self.add_text(&text, &path.display().to_string())
    }

    /// Generate a fresh X25519 identity, add it, and return its recipient string.
    pub fn generate(&mut self) -> String {
        let id = age::x25519::Identity::generate();
        let r = id.to_public().to_string();
        self.ids.push(Arc::new(id));
        r
    }

    /// Gather identities from the environment like sops 3.11: SSH keys
    /// (`SOPS_AGE_SSH_PRIVATE_KEY_FILE`, else `~/.ssh/id_ed25519` and `~/.ssh/id_rsa`),
    /// `SOPS_AGE_KEY`, `SOPS_AGE_KEY_FILE`, `SOPS_AGE_KEY_CMD`, and
    /// `<config dir>/sops/age/keys.txt`, all combined. Problems are recorded in
    /// [`Self::load_errors`], not returned.
    pub fn from_env() -> Self {
        Self::from_env_with(&|k| std::env::var(k).ok())
    }

    /// [`Self::from_env`] with an explicit variable lookup (for tests and embedding).
    pub fn from_env_with(var: &dyn Fn(&str) -> Option<String>) -> Self {
        let mut ids = Identities::new();
        let home = var("HOME").filter(|h| !h.is_empty()).map(PathBuf::from);
        // 1. SSH keys
        if let Some(p) = var("SOPS_AGE_SSH_PRIVATE_KEY_FILE").filter(|s| !s.is_empty()) {
            ids.record(|ids| {
                let path = PathBuf::from(&p);
                let text = read_secret_file(&path)?;
                ids.add_ssh_text(&text, &p)
            });
        } else if let Some(home) = &home {
            for name in ["id_ed25519", "id_rsa"] {
                let path = home.join(".ssh").join(name);
                if path.exists() {
                    ids.record(|ids| {
                        let text = read_secret_file(&path)?;
                        ids.add_ssh_text(&text, &path.display().to_string())
                    });
                }
            }
        }
        // 2. inline keys
        if let Some(k) = var("SOPS_AGE_KEY").filter(|s| !s.is_empty()) {
            let k = Zeroizing::new(k);
            ids.record(|ids| ids.add_text(&k, "SOPS_AGE_KEY"));
        }
        // 3. key file
        if let Some(p) = var("SOPS_AGE_KEY_FILE").filter(|s| !s.is_empty()) {
            ids.record(|ids| ids.add_file(Path::new(&p)));
        }
        // 4. key command
        if let Some(cmd) = var("SOPS_AGE_KEY_CMD").filter(|s| !s.is_empty()) {
            ids.record(|ids| {
                let out = run_key_cmd(&cmd)?;
                ids.add_text(&out, "SOPS_AGE_KEY_CMD")
            });
        }
        // 5. default key file
        let config_dir = var("XDG_CONFIG_HOME")
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| default_config_dir(h)));
        if let Some(dir) = config_dir {
            let path = dir.join("sops").join("age").join("keys.txt");
            if path.exists() {
                ids.record(|ids| ids.add_file(&path));
            }
        }
        ids
    }

    /// The age identities (for whole-file age decryption, `agefile.rs`).
    pub(crate) fn age_identities(&self) -> impl Iterator<Item = &dyn age::Identity> {
        self.ids.iter().map(|i| i.as_ref() as &dyn age::Identity)
    }

    fn record(&mut self, f: impl FnOnce(&mut Self) -> Result<()>) {
        if let Err(e) = f(self) {
            tracing::debug!(error = %e, "identity source failed to load");
            self.errors.push(e.to_string());
        }
    }

    /// Try every identity on an armored age file; `Ok(None)` when none matches.
    pub(crate) fn unwrap_key(&self, armored: &str) -> Result<Option<Zeroizing<Vec<u8>>>> {
        let reader = age::armor::ArmoredReader::new(armored.as_bytes());
        let dec = match age::Decryptor::new_buffered(std::io::BufReader::new(reader)) {
            Ok(d) => d,
            Err(e) => {
                return Err(Error::InvalidMetadata(format!(
                    "age-wrapped data key is not a valid age file: {e}"
                )));
            }
        };
        let ids = self.ids.iter().map(|i| i.as_ref() as &dyn age::Identity);
        match dec.decrypt(ids) {
            Ok(mut r) => {
                let mut out = Zeroizing::new(Vec::new());
                r.read_to_end(&mut out)
                    .map_err(|e| Error::Age(format!("reading the data key: {e}")))?;
                Ok(Some(out))
            }
            Err(age::DecryptError::NoMatchingKeys) => Ok(None),
            Err(e) => {
                tracing::debug!(error = %e, "age decryption failed");
                Ok(None)
            }
        }
    }
}

#[cfg(target_os = "macos")]
fn default_config_dir(home: &Path) -> PathBuf {
    home.join("Library").join("Application Support")
}

#[cfg(not(target_os = "macos"))]
fn default_config_dir(home: &Path) -> PathBuf {
    home.join(".config")
}

fn read_secret_file(path: &Path) -> Result<Zeroizing<String>> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::io(format!("reading identity file {}", path.display()), e))?;
    String::from_utf8(bytes)
        .map(Zeroizing::new)
        .map_err(|_| Error::InvalidIdentity {
            source_name: path.display().to_string(),
            reason: "not UTF-8 text".into(),
        })
}

fn run_key_cmd(cmd: &str) -> Result<Zeroizing<String>> {
    let argv = shlex::split(cmd).ok_or_else(|| Error::InvalidIdentity {
        source_name: "SOPS_AGE_KEY_CMD".into(),
        reason: "cannot split the command line".into(),
    })?;
    let (prog, args) = argv.split_first().ok_or_else(|| Error::InvalidIdentity {
        source_name: "SOPS_AGE_KEY_CMD".into(),
        reason: "empty command".into(),
    })?;
    let out = std::process::Command::new(prog)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| Error::io(format!("running SOPS_AGE_KEY_CMD {prog:?}"), e))?;
    if !out.status.success() {
        return Err(Error::InvalidIdentity {
            source_name: "SOPS_AGE_KEY_CMD".into(),
            reason: format!("command exited with {}", out.status),
        });
    }
    String::from_utf8(out.stdout)
        .map(Zeroizing::new)
        .map_err(|_| Error::InvalidIdentity {
            source_name: "SOPS_AGE_KEY_CMD".into(),
            reason: "output is not UTF-8".into(),
        })
}

/// Recipients from `SOPS_AGE_RECIPIENTS` (comma-separated), if set.
pub fn recipients_from_env() -> Result<Option<Vec<Recipient>>> {
    match std::env::var("SOPS_AGE_RECIPIENTS") {
        Ok(s) if !s.trim().is_empty() => Recipient::parse_list(&s).map(Some),
        _ => Ok(None),
    }
}
