//! Upload cloud-init snippets to a Proxmox host over SFTP (cargo feature `snippets`).
//!
//! The PVE API cannot upload `snippets` (only `iso`, `vztmpl`, `import`), so they go over
//! SSH, as with the bpg Terraform provider, but with a pure-Rust client (`russh`, ring
//! crypto) and stricter rules:
//!
//! - The host key is **pinned**: the connection fails unless the server's key has the
//!   given `SHA256:<base64>` fingerprint (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`
//!   on the host prints it). The error shows the fingerprint the server presented.
//! - Public-key authentication only (ed25519 recommended; the key may be passphrase
//!   protected).
//! - Uploads are atomic (a temporary name in the same directory, then
//!   `posix-rename@openssh.com`) and idempotent (unchanged content is not rewritten).
//!
//! ```no_run
//! use proxmox_client::snippets::{HostKeyPin, SnippetUploader, UploadOutcome, load_private_key};
//!
//! # async fn demo() -> Result<(), proxmox_client::snippets::SftpError> {
//! let key = load_private_key(std::path::Path::new("/home/me/.ssh/id_ed25519"), None)?;
//! let pin: HostKeyPin = "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s".parse()?;
//! let up = SnippetUploader::connect("pve.lan", 22, "root", key, &pin).await?;
//! let path = proxmox_client::snippets::snippet_path("/var/lib/vz", "web-1.user-data.yaml")?;
//! match up.upload(&path, b"#cloud-config\npackages: [htop]\n").await? {
//!     UploadOutcome::Unchanged => println!("already there"),
//!     _ => println!("uploaded"),
//! }
//! up.close().await;
//! # Ok(()) }
//! ```

use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg};
use russh_sftp::client::RawSftpSession;
use russh_sftp::protocol::{FileAttributes, OpenFlags, Packet, StatusCode};
use sha2::{Digest, Sha256};

/// The OpenSSH extension that renames over an existing file atomically.
const POSIX_RENAME: &str = "posix-rename@openssh.com";
/// The OpenSSH extension that fsyncs an open handle.
const FSYNC: &str = "fsync@openssh.com";
/// Bytes per SFTP write (OpenSSH accepts up to 256 KiB; 32 KiB is what every server takes).
const CHUNK: usize = 32 * 1024;

/// Errors of the SFTP uploader.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SftpError {
    /// The pinned fingerprint is malformed.
    #[error(
        "invalid host key fingerprint '{0}': expected SHA256:<base64>, as `ssh-keygen -lf` prints it"
    )]
    BadPin(String),
    /// The private key could not be read or decoded.
    #[error("cannot load SSH key {path}: {message}")]
    Key {
        /// Where the key came from.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// No TCP connection or SSH handshake.
    #[error("cannot connect to {host}:{port} over SSH: {message}")]
    Connect {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// The cause.
        message: String,
    },
    /// The server's host key is not the pinned one.
    #[error(
        "host key verification failed for {host}:{port}: the server presented {actual}, but {expected} is pinned \
         (if the host was reinstalled, check `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on it and update the pin)"
    )]
    HostKeyMismatch {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// The pinned fingerprint.
        expected: String,
        /// What the server presented.
        actual: String,
    },
    /// The server refused the key.
    #[error(
        "{user}@{host}: the server refused the SSH key {fingerprint} (add its public key to ~{user}/.ssh/authorized_keys on the host)"
    )]
    Auth {
        /// User.
        user: String,
        /// Host.
        host: String,
        /// The client key's fingerprint.
        fingerprint: String,
    },
    /// An SSH-level failure after connecting.
    #[error("SSH: {0}")]
    Ssh(String),
    /// A remote path is not acceptable.
    #[error("invalid remote path '{path}': {reason}")]
    Path {
        /// The path.
        path: String,
        /// Why.
        reason: String,
    },
    /// An SFTP operation failed.
    #[error("SFTP {op} {path}: {message}")]
    Remote {
        /// Operation (`open`, `write`, `rename`, ...).
        op: &'static str,
        /// Remote path.
        path: String,
        /// Server status, or the transport error.
        message: String,
        /// The SFTP status code when the server answered with one.
        code: Option<u32>,
    },
}

/// A pinned SSH host key fingerprint, `SHA256:<base64>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostKeyPin(String);

impl HostKeyPin {
    /// The canonical form (`SHA256:` + unpadded base64).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for HostKeyPin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for HostKeyPin {
    type Err = SftpError;

    /// Accepts `SHA256:<base64>` with or without `=` padding (the prefix is
    /// case-insensitive, the base64 is not).
    fn from_str(s: &str) -> Result<Self, SftpError> {
        use base64::Engine;
        let t = s.trim();
        let b64 = t
            .get(..7)
            .filter(|p| p.eq_ignore_ascii_case("SHA256:"))
            .map(|_| &t[7..])
            .ok_or_else(|| SftpError::BadPin(s.to_string()))?
            .trim_end_matches('=');
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(b64)
            .map_err(|_| SftpError::BadPin(s.to_string()))?;
        if bytes.len() != 32 {
            return Err(SftpError::BadPin(s.to_string()));
        }
        Ok(HostKeyPin(format!("SHA256:{b64}")))
    }
}

/// Read an OpenSSH private key file (ed25519 recommended), decrypting it with
/// `passphrase` when it is protected.
pub fn load_private_key(path: &Path, passphrase: Option<&str>) -> Result<PrivateKey, SftpError> {
    let text =
        zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| SftpError::Key {
            path: path.display().to_string(),
            message: e.to_string(),
        })?);
    decode_private_key(&text, passphrase, &path.display().to_string())
}

/// Decode an OpenSSH private key held in memory (for example from a SOPS file); `source`
/// names it in errors.
pub fn decode_private_key(
    text: &str,
    passphrase: Option<&str>,
    source: &str,
) -> Result<PrivateKey, SftpError> {
    russh::keys::decode_secret_key(text.trim(), passphrase).map_err(|e| SftpError::Key {
        path: source.to_string(),
        message: e.to_string(),
    })
}

/// The absolute path of snippet `filename` on a storage mounted at `storage_path`
/// (`/var/lib/vz` for `local`): `<storage_path>/snippets/<filename>`. The name must be a
/// plain file name.
pub fn snippet_path(storage_path: &str, filename: &str) -> Result<String, SftpError> {
    let bad = |reason: &str| SftpError::Path {
        path: filename.to_string(),
        reason: reason.to_string(),
    };
    if filename.is_empty() || filename == "." || filename == ".." {
        return Err(bad("empty file name"));
    }
    if filename.contains('/') || filename.contains('\0') {
        return Err(bad("a snippet name is a file name, not a path"));
    }
    if !storage_path.starts_with('/') {
        return Err(SftpError::Path {
            path: storage_path.to_string(),
            reason: "the storage path must be absolute".into(),
        });
    }
    Ok(format!(
        "{}/snippets/{filename}",
        storage_path.trim_end_matches('/')
    ))
}

/// The PVE volume id of a snippet: `<storage>:snippets/<filename>` (what `cicustom`
/// references, e.g. `cicustom: user=local:snippets/web-1.yaml`).
pub fn snippet_volid(storage: &str, filename: &str) -> String {
    crate::VolumeId::new(storage, crate::ContentKind::Snippets, filename).to_string()
}

/// What [`SnippetUploader::upload`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UploadOutcome {
    /// The remote file already had this content; nothing was written.
    Unchanged,
    /// The file was written (created or replaced).
    Uploaded {
        /// Bytes written.
        size: u64,
        /// Hex SHA-256 of the content.
        sha256: String,
    },
}

struct PinCheck {
    /// `None`: only record what the server presents (never accept).
    pin: Option<HostKeyPin>,
    seen: Arc<Mutex<Option<String>>>,
}

impl russh::client::Handler for PinCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKey,
    ) -> Result<bool, Self::Error> {
        let actual = key.fingerprint(HashAlg::Sha256).to_string();
        let ok = self.pin.as_ref().is_some_and(|p| p.0 == actual);
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(actual);
        }
        Ok(ok)
    }
}

/// An authenticated SFTP session to one Proxmox host. Cheap operations, one connection;
/// call [`close`](Self::close) when done.
pub struct SnippetUploader {
    handle: russh::client::Handle<PinCheck>,
    sftp: RawSftpSession,
    posix_rename: bool,
    fsync: bool,
    target: String,
}

impl std::fmt::Debug for SnippetUploader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnippetUploader")
            .field("target", &self.target)
            .field("posix_rename", &self.posix_rename)
            .finish()
    }
}

impl SnippetUploader {
    /// Connect to `host:port`, verify the host key against `pin`, log in as `user` with
    /// `key`, and start the SFTP subsystem.
    #[tracing::instrument(name = "sftp.connect", skip(key, pin), fields(pin = %pin))]
    pub async fn connect(
        host: &str,
        port: u16,
        user: &str,
        key: PrivateKey,
        pin: &HostKeyPin,
    ) -> Result<Self, SftpError> {
        let config = Arc::new(russh::client::Config {
            inactivity_timeout: Some(Duration::from_secs(60)),
            ..Default::default()
        });
        let seen = Arc::new(Mutex::new(None));
        let check = PinCheck {
            pin: Some(pin.clone()),
            seen: seen.clone(),
        };
        let connect_err = |message: String| SftpError::Connect {
            host: host.to_string(),
            port,
            message,
        };
        let mut handle = match tokio::time::timeout(
            Duration::from_secs(30),
            russh::client::connect(config, (host, port), check),
        )
        .await
        {
            Err(_) => return Err(connect_err("timed out after 30 s".into())),
            Ok(Ok(h)) => h,
            Ok(Err(e)) => {
                let actual = seen.lock().ok().and_then(|s| s.clone());
                return Err(match (e, actual) {
                    (russh::Error::UnknownKey, Some(actual)) => SftpError::HostKeyMismatch {
                        host: host.to_string(),
                        port,
                        expected: pin.to_string(),
                        actual,
                    },
                    (e, _) => connect_err(e.to_string()),
                });
            }
        };
        let key_fp = key.public_key().fingerprint(HashAlg::Sha256).to_string();
        let auth = handle
            .authenticate_publickey(user, PrivateKeyWithHashAlg::new(Arc::new(key), None))
            .await
            .map_err(|e| SftpError::Ssh(format!("authentication: {e}")))?;
        if !auth.success() {
            return Err(SftpError::Auth {
                user: user.to_string(),
                host: host.to_string(),
                fingerprint: key_fp,
            });
        }
        let channel = handle
            .channel_open_session()
            .await
            .map_err(|e| SftpError::Ssh(format!("cannot open a session channel: {e}")))?;
        channel
            .request_subsystem(true, "sftp")
            .await
            .map_err(|e| SftpError::Ssh(format!("the server refused the sftp subsystem: {e}")))?;
        let sftp = RawSftpSession::new(channel.into_stream());
        sftp.set_timeout(30);
        let version = sftp
            .init()
            .await
            .map_err(|e| SftpError::Ssh(format!("SFTP handshake: {e}")))?;
        let has = |name: &str| version.extensions.get(name).is_some_and(|v| v == "1");
        Ok(SnippetUploader {
            posix_rename: has(POSIX_RENAME),
            fsync: has(FSYNC),
            handle,
            sftp,
            target: format!("{user}@{host}:{port}"),
        })
    }

    /// Write `content` to the absolute `path` unless it already holds exactly that:
    /// written under a temporary name in the same directory, synced, then renamed over
    /// the target, so readers never see a partial file.
    #[tracing::instrument(name = "sftp.upload", skip(self, content), fields(target = %self.target, size = content.len()))]
    pub async fn upload(&self, path: &str, content: &[u8]) -> Result<UploadOutcome, SftpError> {
        let (dir, name) = split_remote(path)?;
        let sha256 = hex::encode(Sha256::digest(content));
        if self
            .remote_sha256(path, content.len() as u64)
            .await?
            .as_deref()
            == Some(&sha256)
        {
            tracing::debug!(path, "unchanged");
            return Ok(UploadOutcome::Unchanged);
        }
        let tmp = format!(
            "{dir}/.{name}.homelab-{}.tmp",
            hex::encode(rand::random::<[u8; 6]>())
        );
        let written = self.write_new(&tmp, content).await;
        let renamed = match written {
            Ok(()) => self.replace(&tmp, path).await,
            Err(e) => Err(e),
        };
        if let Err(e) = renamed {
            // Best effort: do not leave the temporary file behind.
            let _ = self.sftp.remove(tmp.as_str()).await;
            return Err(match e {
                SftpError::Remote {
                    code: Some(2), op, ..
                } if op == "open" => SftpError::Remote {
                    op,
                    path: dir.to_string(),
                    message:
                        "no such directory (is `snippets` enabled in the storage's content types?)"
                            .into(),
                    code: Some(2),
                },
                e => e,
            });
        }
        tracing::info!(path, "uploaded");
        Ok(UploadOutcome::Uploaded {
            size: content.len() as u64,
            sha256,
        })
    }

    /// The content of a remote file (for checks and tests); `None` when it does not exist.
    pub async fn read(&self, path: &str) -> Result<Option<Vec<u8>>, SftpError> {
        split_remote(path)?;
        let handle = match self
            .sftp
            .open(path, OpenFlags::READ, FileAttributes::empty())
            .await
        {
            Ok(h) => h.handle,
            Err(e) if status_code(&e) == Some(StatusCode::NoSuchFile) => return Ok(None),
            Err(e) => return Err(remote("open", path, e)),
        };
        let mut out = Vec::new();
        let result = loop {
            match self
                .sftp
                .read(handle.as_str(), out.len() as u64, CHUNK as u32)
                .await
            {
                Ok(d) if d.data.is_empty() => break Ok(()),
                Ok(d) => out.extend_from_slice(&d.data),
                Err(e) if status_code(&e) == Some(StatusCode::Eof) => break Ok(()),
                Err(e) => break Err(remote("read", path, e)),
            }
        };
        let _ = self.sftp.close(handle).await;
        result.map(|()| Some(out))
    }

    /// Delete a remote file; `false` when it did not exist.
    pub async fn remove(&self, path: &str) -> Result<bool, SftpError> {
        split_remote(path)?;
        match self.sftp.remove(path).await {
            Ok(_) => Ok(true),
            Err(e) if status_code(&e) == Some(StatusCode::NoSuchFile) => Ok(false),
            Err(e) => Err(remote("remove", path, e)),
        }
    }

    /// End the SFTP session and disconnect.
    pub async fn close(self) {
        let _ = self.sftp.close_session();
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
    }

    async fn remote_sha256(&self, path: &str, len: u64) -> Result<Option<String>, SftpError> {
        match self.sftp.stat(path).await {
            Ok(a) if a.attrs.size == Some(len) && !a.attrs.is_dir() => {}
            Ok(_) => return Ok(None),
            Err(e) if status_code(&e) == Some(StatusCode::NoSuchFile) => return Ok(None),
            Err(e) => return Err(remote("stat", path, e)),
        }
        Ok(self
            .read(path)
            .await?
            .map(|data| hex::encode(Sha256::digest(&data))))
    }

    async fn write_new(&self, path: &str, content: &[u8]) -> Result<(), SftpError> {
        let attrs = FileAttributes {
            permissions: Some(0o644),
            ..FileAttributes::empty()
        };
        let handle = self
            .sftp
            .open(
                path,
                OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::EXCLUDE,
                attrs,
            )
            .await
            .map_err(|e| remote("open", path, e))?
            .handle;
        let mut result = Ok(());
        for (i, chunk) in content.chunks(CHUNK).enumerate() {
            if let Err(e) = self
                .sftp
                .write(handle.as_str(), (i * CHUNK) as u64, chunk.to_vec())
                .await
            {
                result = Err(remote("write", path, e));
                break;
            }
        }
        if result.is_ok() && self.fsync {
            result = self
                .sftp
                .fsync(handle.as_str())
                .await
                .map(|_| ())
                .map_err(|e| remote("fsync", path, e));
        }
        let closed = self.sftp.close(handle).await;
        result?;
        closed.map(|_| ()).map_err(|e| remote("close", path, e))
    }

    async fn replace(&self, from: &str, to: &str) -> Result<(), SftpError> {
        if self.posix_rename {
            let mut data = Vec::new();
            for s in [from, to] {
                data.extend_from_slice(&(s.len() as u32).to_be_bytes());
                data.extend_from_slice(s.as_bytes());
            }
            return match self.sftp.extended(POSIX_RENAME, data).await {
                Ok(Packet::Status(s)) if s.status_code == StatusCode::Ok => Ok(()),
                Ok(Packet::Status(s)) => Err(SftpError::Remote {
                    op: "rename",
                    path: to.to_string(),
                    message: s.error_message,
                    code: Some(s.status_code as u32),
                }),
                Ok(_) => Err(SftpError::Remote {
                    op: "rename",
                    path: to.to_string(),
                    message: "unexpected reply to posix-rename".into(),
                    code: None,
                }),
                Err(e) => Err(remote("rename", to, e)),
            };
        }
        // Without the extension SSH_FXP_RENAME refuses to replace: remove, then rename
        // (not atomic, but a failure leaves the new content under the temporary name).
        match self.sftp.remove(to).await {
            Ok(_) => {}
            Err(e) if status_code(&e) == Some(StatusCode::NoSuchFile) => {}
            Err(e) => return Err(remote("remove", to, e)),
        }
        self.sftp
            .rename(from, to)
            .await
            .map(|_| ())
            .map_err(|e| remote("rename", to, e))
    }
}

/// The `SHA256:<base64>` fingerprint of the host key `host:port` presents, to pin it
/// (what `ssh-keyscan HOST | ssh-keygen -lf -` shows). The key exchange completes (so
/// the server proved it holds the key) but nothing is trusted or sent: compare the
/// result with `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on the host's console
/// before pinning it.
#[tracing::instrument(name = "sftp.scan")]
pub async fn scan_host_key(host: &str, port: u16) -> Result<String, SftpError> {
    let seen = Arc::new(Mutex::new(None));
    let check = PinCheck {
        pin: None,
        seen: seen.clone(),
    };
    let config = Arc::new(russh::client::Config::default());
    let result = tokio::time::timeout(
        Duration::from_secs(30),
        russh::client::connect(config, (host, port), check),
    )
    .await;
    let actual = seen.lock().ok().and_then(|s| s.clone());
    match (result, actual) {
        (_, Some(fp)) => Ok(fp),
        (Err(_), None) => Err(SftpError::Connect {
            host: host.to_string(),
            port,
            message: "timed out after 30 s".into(),
        }),
        (Ok(Err(e)), None) => Err(SftpError::Connect {
            host: host.to_string(),
            port,
            message: e.to_string(),
        }),
        (Ok(Ok(_)), None) => Err(SftpError::Ssh(
            "the server was accepted without presenting a host key".into(),
        )),
    }
}

fn status_code(e: &russh_sftp::client::error::Error) -> Option<StatusCode> {
    match e {
        russh_sftp::client::error::Error::Status(s) => Some(s.status_code),
        _ => None,
    }
}

fn remote(op: &'static str, path: &str, e: russh_sftp::client::error::Error) -> SftpError {
    let (message, code) = match &e {
        russh_sftp::client::error::Error::Status(s) => {
            (s.error_message.clone(), Some(s.status_code as u32))
        }
        other => (other.to_string(), None),
    };
    SftpError::Remote {
        op,
        path: path.to_string(),
        message,
        code,
    }
}

/// Split an absolute remote file path into (directory, file name).
fn split_remote(path: &str) -> Result<(&str, &str), SftpError> {
    let bad = |reason: &str| SftpError::Path {
        path: path.to_string(),
        reason: reason.to_string(),
    };
    if !path.starts_with('/') {
        return Err(bad("must be absolute"));
    }
    if path.split('/').any(|c| c == "..") {
        return Err(bad("must not contain '..'"));
    }
    let (dir, name) = path.rsplit_once('/').ok_or_else(|| bad("no file name"))?;
    if name.is_empty() {
        return Err(bad("no file name"));
    }
    Ok((if dir.is_empty() { "/" } else { dir }, name))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn pins_parse_like_openssh_prints_them() {
        let fp = "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s";
        let pin: HostKeyPin = fp.parse().unwrap();
        assert_eq!(pin.as_str(), fp);
        let padded: HostKeyPin = format!("sha256:{}=", &fp[7..]).parse().unwrap();
        assert_eq!(padded, pin);
        for bad in [
            "",
            "MD5:aa",
            "SHA256:",
            "SHA256:abc",
            "AA:BB:CC",
            "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2sAA",
        ] {
            let e = bad.parse::<HostKeyPin>().unwrap_err();
            assert!(e.to_string().contains("SHA256:<base64>"), "{e}");
        }
    }

    #[test]
    fn snippet_paths_and_volids() {
        assert_eq!(
            snippet_path("/var/lib/vz/", "a.yaml").unwrap(),
            "/var/lib/vz/snippets/a.yaml"
        );
        assert!(snippet_path("/var/lib/vz", "../x").is_err());
        assert!(snippet_path("/var/lib/vz", "").is_err());
        assert!(snippet_path("var/lib/vz", "a").is_err());
        assert_eq!(snippet_volid("local", "a.yaml"), "local:snippets/a.yaml");
    }

    #[test]
    fn remote_paths_split() {
        assert_eq!(split_remote("/a/b.yaml").unwrap(), ("/a", "b.yaml"));
        assert_eq!(split_remote("/b").unwrap(), ("/", "b"));
        assert!(split_remote("rel/b").is_err());
        assert!(split_remote("/a/../b").is_err());
        assert!(split_remote("/a/").is_err());
    }
}
