//! Integration tests of the simulated node's SFTP endpoint: the real OpenSSH `sftp` client
//! (host key checked against the advertised key, ed25519 login), snippet files mirrored
//! into the simulated storage content, OpenSSH rename semantics, refused keys and paths.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use homelab_sim::lab::{Lab, LabHandle};
use homelab_sim::sftp::{POSIX_RENAME, SftpServer};
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg};
use russh_sftp::client::RawSftpSession;
use russh_sftp::protocol::{FileAttributes, OpenFlags, Packet, StatusCode};
use sha2::Digest;

fn have(tool: &str) -> bool {
    std::process::Command::new(tool).arg("-V").output().is_ok()
}

/// An ed25519 key pair made by `ssh-keygen` (private key path, public key line).
fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let public = std::fs::read_to_string(path.with_extension("pub")).unwrap();
    (path, public.trim().to_string())
}

struct Setup {
    dir: tempfile::TempDir,
    lab: LabHandle,
    server: SftpServer,
    key: PathBuf,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(dir.path(), "id_ed25519");
    let lab = Lab::builder().start().await.unwrap();
    let server = SftpServer::builder(dir.path().join("root"))
        .pve(lab.sim().clone(), "pve")
        .authorized_key(&public)
        .unwrap()
        .start()
        .await
        .unwrap();
    Setup {
        dir,
        lab,
        server,
        key,
    }
}

impl Setup {
    /// Run an `sftp -b` batch as root with strict host key checking against the key the
    /// server advertises.
    async fn sftp(&self, key: &Path, batch: &str) -> std::process::Output {
        let kh = self.dir.path().join("known_hosts");
        std::fs::write(
            &kh,
            format!(
                "[127.0.0.1]:{} {}\n",
                self.server.addr().port(),
                self.server.host_public_key()
            ),
        )
        .unwrap();
        let batch_file = self.dir.path().join("batch");
        std::fs::write(&batch_file, batch).unwrap();
        tokio::process::Command::new("sftp")
            .arg("-b")
            .arg(&batch_file)
            .arg("-i")
            .arg(key)
            .args([
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "BatchMode=yes",
                "-o",
                "PasswordAuthentication=no",
                "-o",
            ])
            .arg(format!("UserKnownHostsFile={}", kh.display()))
            .arg("-P")
            .arg(self.server.addr().port().to_string())
            .arg("root@127.0.0.1")
            .env("HOME", self.dir.path())
            .output()
            .await
            .unwrap()
    }

    fn snippets(&self) -> Vec<(String, String, u64, String)> {
        self.lab
            .sim()
            .state()
            .volumes
            .values()
            .filter(|v| v.content == "snippets")
            .map(|v| {
                (
                    v.volid.clone(),
                    v.format.clone(),
                    v.size,
                    v.sha256.clone().unwrap_or_default(),
                )
            })
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_sftp_uploads_appear_as_snippet_volumes() {
    if !have("sftp") || !have("ssh-keygen") {
        crate::common::skip_or_fail("OpenSSH sftp/ssh-keygen not installed");
        return;
    }
    let s = setup().await;
    // The fingerprint we expose is the one ssh-keygen computes for the advertised key.
    let pubfile = s.dir.path().join("host.pub");
    std::fs::write(&pubfile, s.server.host_public_key()).unwrap();
    let lf = std::process::Command::new("ssh-keygen")
        .arg("-lf")
        .arg(&pubfile)
        .output()
        .unwrap();
    let lf = String::from_utf8_lossy(&lf.stdout).to_string();
    assert!(
        lf.contains(&s.server.fingerprint()),
        "{lf} vs {}",
        s.server.fingerprint()
    );

    let v1 = b"#cloud-config\npackages: [htop]\n";
    std::fs::write(s.dir.path().join("v1.yaml"), v1).unwrap();
    let out = s
        .sftp(
            &s.key,
            &format!(
                "put {} /var/lib/vz/snippets/.web.tmp\nrename /var/lib/vz/snippets/.web.tmp /var/lib/vz/snippets/web.yaml\nls -l /var/lib/vz/snippets\n",
                s.dir.path().join("v1.yaml").display()
            ),
        )
        .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("web.yaml"), "{stdout}");
    assert_eq!(
        std::fs::read(s.server.root().join("var/lib/vz/snippets/web.yaml")).unwrap(),
        v1
    );
    assert_eq!(
        s.snippets(),
        vec![(
            "local:snippets/web.yaml".to_string(),
            "snippet".to_string(),
            v1.len() as u64,
            hex::encode(sha2::Sha256::digest(v1)),
        )]
    );

    // OpenSSH's `rename` uses posix-rename when offered: replacing works.
    let v2 = b"#cloud-config\npackages: [htop, curl]\n";
    std::fs::write(s.dir.path().join("v2.yaml"), v2).unwrap();
    let out = s
        .sftp(
            &s.key,
            &format!(
                "put {} /var/lib/vz/snippets/.web.tmp\nrename /var/lib/vz/snippets/.web.tmp /var/lib/vz/snippets/web.yaml\n",
                s.dir.path().join("v2.yaml").display()
            ),
        )
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let snippets = s.snippets();
    assert_eq!(snippets.len(), 1, "{snippets:?}");
    assert_eq!(snippets[0].3, hex::encode(sha2::Sha256::digest(v2)));

    // Dot files (in-flight uploads) are not listed, as PVE globs `snippets/*`.
    let out = s
        .sftp(
            &s.key,
            &format!(
                "put {} /var/lib/vz/snippets/.partial\n",
                s.dir.path().join("v1.yaml").display()
            ),
        )
        .await;
    assert!(out.status.success());
    assert_eq!(s.snippets().len(), 1);
    let out = s
        .sftp(
            &s.key,
            "rm /var/lib/vz/snippets/web.yaml\nrm /var/lib/vz/snippets/.partial\n",
        )
        .await;
    assert!(out.status.success());
    assert!(s.snippets().is_empty());

    // A key that is not authorized is refused.
    let (other, _) = keygen(s.dir.path(), "other");
    let out = s.sftp(&other, "ls /\n").await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Permission denied"), "{err}");
    s.server.shutdown().await;
}

struct Accept;

impl russh::client::Handler for Accept {
    type Error = russh::Error;
    async fn check_server_key(
        &mut self,
        _key: &russh::keys::PublicKey,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

async fn raw_session(
    server: &SftpServer,
    key: PrivateKey,
) -> Result<(russh::client::Handle<Accept>, RawSftpSession), String> {
    let config = Arc::new(russh::client::Config::default());
    let mut h = russh::client::connect(config, server.addr(), Accept)
        .await
        .map_err(|e| e.to_string())?;
    let auth = h
        .authenticate_publickey("root", PrivateKeyWithHashAlg::new(Arc::new(key), None))
        .await
        .map_err(|e| e.to_string())?;
    if !auth.success() {
        return Err("refused".into());
    }
    let ch = h.channel_open_session().await.map_err(|e| e.to_string())?;
    ch.request_subsystem(true, "sftp")
        .await
        .map_err(|e| e.to_string())?;
    let sftp = RawSftpSession::new(ch.into_stream());
    let v = sftp.init().await.map_err(|e| e.to_string())?;
    assert_eq!(v.version, 3);
    assert_eq!(
        v.extensions.get(POSIX_RENAME).map(String::as_str),
        Some("1")
    );
    Ok((h, sftp))
}

fn code(e: russh_sftp::client::error::Error) -> StatusCode {
    match e {
        russh_sftp::client::error::Error::Status(s) => s.status_code,
        other => panic!("not a status: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_rename_semantics_and_confinement() {
    let dir = tempfile::tempdir().unwrap();
    let key = PrivateKey::from(Ed25519Keypair::from_seed(&[7; 32]));
    let stranger = PrivateKey::from(Ed25519Keypair::from_seed(&[8; 32]));
    let server = SftpServer::builder(dir.path().join("root"))
        .authorized_public_key(key.public_key().clone())
        .host_key_file(dir.path().join("hostkey"))
        .start()
        .await
        .unwrap();
    let fp = server.fingerprint();

    assert!(matches!(
        raw_session(&server, stranger).await,
        Err(e) if e == "refused"
    ));
    let (_conn, sftp) = raw_session(&server, key.clone()).await.unwrap();
    for (name, body) in [("/a", "A"), ("/b", "B")] {
        let h = sftp
            .open(
                name,
                OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE,
                FileAttributes::empty(),
            )
            .await
            .unwrap()
            .handle;
        sftp.write(h.as_str(), 0, body.as_bytes().to_vec())
            .await
            .unwrap();
        sftp.close(h).await.unwrap();
    }
    // Plain SSH_FXP_RENAME never replaces an existing file...
    assert_eq!(
        code(sftp.rename("/a", "/b").await.unwrap_err()),
        StatusCode::Failure
    );
    // ...posix-rename does.
    let mut data = Vec::new();
    for s in ["/a", "/b"] {
        data.extend_from_slice(&(s.len() as u32).to_be_bytes());
        data.extend_from_slice(s.as_bytes());
    }
    match sftp.extended(POSIX_RENAME, data).await.unwrap() {
        Packet::Status(s) => assert_eq!(s.status_code, StatusCode::Ok),
        other => panic!("{other:?}"),
    }
    assert_eq!(std::fs::read(server.root().join("b")).unwrap(), b"A");
    assert!(!server.root().join("a").exists());
    // Nothing outside the root is reachable.
    assert_eq!(
        code(sftp.stat("/../../etc/passwd").await.unwrap_err()),
        StatusCode::PermissionDenied
    );
    assert_eq!(
        code(sftp.stat("/missing").await.unwrap_err()),
        StatusCode::NoSuchFile
    );
    server.shutdown().await;

    // The host key file keeps the fingerprint across restarts.
    let again = SftpServer::builder(dir.path().join("root"))
        .host_key_file(dir.path().join("hostkey"))
        .start()
        .await
        .unwrap();
    assert_eq!(again.fingerprint(), fp);
    again.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_endpoint_rereads_authorized_keys_and_keeps_its_host_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = PrivateKey::from(Ed25519Keypair::from_seed(&[9; 32]));
    let server = SftpServer::persistent(dir.path()).start().await.unwrap();
    assert!(matches!(
        raw_session(&server, key.clone()).await,
        Err(e) if e == "refused"
    ));
    // Added while running: the next login sees it.
    std::fs::write(
        dir.path().join(homelab_sim::sftp::AUTHORIZED_KEYS_FILE),
        format!("# homelab\n{}\n", key.public_key().to_openssh().unwrap()),
    )
    .unwrap();
    let (_conn, sftp) = raw_session(&server, key.clone()).await.unwrap();
    let name = sftp.realpath(".").await.unwrap();
    assert_eq!(name.files[0].filename, "/root");
    let fp = server.fingerprint();
    server.shutdown().await;
    let again = SftpServer::persistent(dir.path()).start().await.unwrap();
    assert_eq!(again.fingerprint(), fp);
    assert!(dir.path().join("root").is_dir());
    again.shutdown().await;
}
