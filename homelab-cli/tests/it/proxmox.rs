//! Integration tests of `homelab-cli proxmox` (the built binary against the simulated PVE
//! started in process) and of the SFTP snippet uploader against the simulated node's SFTP
//! endpoint.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;

use age::secrecy::ExposeSecret;
use homelab_cli::privileges;
use homelab_sim::lab::{Lab, LabHandle};
use homelab_sim::sftp::SftpServer;
use proxmox_client::Client;
use proxmox_client::snippets::{
    HostKeyPin, SftpError, SnippetUploader, UploadOutcome, load_private_key, snippet_path,
    snippet_volid,
};
use russh::keys::PrivateKey;
use russh::keys::ssh_key::LineEnding;
use russh::keys::ssh_key::private::Ed25519Keypair;

const OUT: &str = "secrets.enc.yaml";

struct Env {
    dir: tempfile::TempDir,
    recipient: String,
}

impl Env {
    /// A repository with an age key outside it and a `.sops.yaml` rule for it.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let id = age::x25519::Identity::generate();
        let recipient = id.to_public().to_string();
        std::fs::write(
            dir.path().join("keys.txt"),
            format!("{}\n", id.to_string().expose_secret()),
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("repo")).unwrap();
        std::fs::write(
            dir.path().join("repo/.sops.yaml"),
            format!("creation_rules:\n  - path_regex: .*\\.enc\\.yaml$\n    age: {recipient}\n"),
        )
        .unwrap();
        Env { dir, recipient }
    }

    fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    fn out(&self) -> PathBuf {
        self.repo().join(OUT)
    }

    async fn cli(&self, lab: &LabHandle, args: &[&str]) -> Output {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_homelab-cli"))
            .args(args)
            .current_dir(self.repo())
            .env("HOME", self.dir.path())
            .env("XDG_CONFIG_HOME", self.dir.path().join("xdg"))
            .env("SOPS_AGE_KEY_FILE", self.dir.path().join("keys.txt"))
            .env("NO_COLOR", "1")
            .env("PROXMOX_VE_ENDPOINT", lab.pve_url())
            .env(
                "PROXMOX_VE_API_TOKEN",
                format!("{}={}", lab.token_id(), lab.token_secret()),
            )
            .env("PROXMOX_VE_FINGERPRINT", lab.fingerprint())
            .env_remove("SOPS_AGE_KEY")
            .env_remove("SOPS_AGE_RECIPIENTS")
            .env_remove("PROXMOX_VE_USERNAME")
            .env_remove("PROXMOX_VE_PASSWORD")
            .env_remove("PROXMOX_VE_INSECURE")
            .env_remove("PROXMOX_VE_CA_FILE")
            .output()
            .await
            .unwrap()
    }

    /// `proxmox.*` of the output file, decrypted with sops-age.
    fn decrypted(&self) -> serde_yaml_ng::Value {
        let mut ids = sops_age::Identities::new();
        ids.add_file(&self.dir.path().join("keys.txt")).unwrap();
        let data = std::fs::read(self.out()).unwrap();
        let plain = sops_age::decrypt(&data, sops_age::Format::Yaml, &ids).unwrap();
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_slice(&plain).unwrap();
        v["proxmox"].clone()
    }
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn admin(lab: &LabHandle) -> Client {
    Client::builder()
        .base_url(lab.pve_url())
        .api_token(lab.token_id(), lab.token_secret())
        .pin_fingerprint(lab.fingerprint())
        .build()
        .unwrap()
}

fn as_token(lab: &LabHandle, id: &str, secret: &str) -> Client {
    Client::builder()
        .base_url(lab.pve_url())
        .api_token(id, secret)
        .pin_fingerprint(lab.fingerprint())
        .build()
        .unwrap()
}

fn str_of<'a>(v: &'a serde_yaml_ng::Value, k: &str) -> &'a str {
    v[k].as_str()
        .unwrap_or_else(|| panic!("{k} missing in {v:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_create_is_least_privilege_encrypted_and_idempotent() {
    let lab = Lab::builder().start().await.unwrap();
    let env = Env::new();
    let api = admin(&lab);

    let first = env.cli(&lab, &["proxmox", "token", "create"]).await;
    assert!(first.status.success(), "{}", text(&first));
    let stdout = String::from_utf8_lossy(&first.stdout);
    for line in [
        "created user homelab@pve",
        "created role HomelabProvisioner",
        "granted HomelabProvisioner to user homelab@pve on /",
        "created token homelab@pve!homelab (privsep=1)",
        "granted HomelabProvisioner to token homelab@pve!homelab on /",
        // Backup.pm wants Datastore.Allocate on the job's storage only.
        "granted PVEDatastoreAdmin to user homelab@pve on /storage/local",
        "granted PVEDatastoreAdmin to token homelab@pve!homelab on /storage/local",
        "wrote secrets.enc.yaml",
    ] {
        assert!(stdout.contains(line), "missing '{line}' in\n{stdout}");
    }

    // Everything exists, as the API reports it.
    let access = api.access();
    assert!(
        access
            .users()
            .await
            .unwrap()
            .iter()
            .any(|u| u.userid == "homelab@pve")
    );
    let role = access
        .roles()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.roleid == "HomelabProvisioner")
        .expect("role");
    let privs: BTreeSet<String> = role.privs.unwrap().split(',').map(String::from).collect();
    let want: BTreeSet<String> = privileges().into_iter().map(String::from).collect();
    assert_eq!(privs, want);
    let acl = access.acl().await.unwrap();
    for (kind, ugid) in [("user", "homelab@pve"), ("token", "homelab@pve!homelab")] {
        assert!(
            acl.iter().any(|e| e.path == "/"
                && e.kind == kind
                && e.ugid == ugid
                && e.roleid == "HomelabProvisioner"
                && e.propagate == Some(true)),
            "{kind} {ugid} not in {acl:?}"
        );
    }
    let tokens = access.tokens("homelab@pve").await.unwrap();
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].tokenid, "homelab");
    assert_eq!(tokens[0].privsep, Some(true));

    // The file holds the token, encrypted: no plaintext secret on disk.
    let raw = std::fs::read_to_string(env.out()).unwrap();
    let p = env.decrypted();
    let secret = str_of(&p, "token_secret").to_string();
    assert_eq!(secret.len(), 36, "{secret}");
    assert!(!raw.contains(&secret));
    assert!(raw.contains(&env.recipient));
    assert_eq!(str_of(&p, "token_id"), "homelab@pve!homelab");
    assert_eq!(str_of(&p, "endpoint"), lab.pve_url());
    assert_eq!(str_of(&p, "fingerprint"), lab.fingerprint());

    // The real sops decrypts it too.
    match tokio::process::Command::new("sops")
        .args(["decrypt", OUT])
        .current_dir(env.repo())
        .env("SOPS_AGE_KEY_FILE", env.dir.path().join("keys.txt"))
        .output()
        .await
    {
        Ok(o) => {
            assert!(o.status.success(), "{}", text(&o));
            let v: serde_yaml_ng::Value = serde_yaml_ng::from_slice(&o.stdout).unwrap();
            assert_eq!(str_of(&v["proxmox"], "token_secret"), secret);
            assert_eq!(str_of(&v["proxmox"], "token_id"), "homelab@pve!homelab");
        }
        Err(e) => crate::common::skip_or_fail(&format!("real sops interop ({e})")),
    }

    // The token works, within its role only.
    let tok = as_token(&lab, "homelab@pve!homelab", &secret);
    assert!(!tok.nodes().await.unwrap().is_empty());
    tok.node("pve")
        .storage("local")
        .content(None, None)
        .await
        .unwrap();
    let denied = tok
        .access()
        .create_user(&proxmox_client::requests::UserCreate {
            userid: "intruder@pve".into(),
            password: None,
            comment: None,
            enable: None,
            expire: None,
            groups: Vec::new(),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(denied, proxmox_client::Error::Permission { .. }),
        "{denied:?}"
    );

    // A re-run changes nothing: no mutating request, same file bytes.
    let before = lab.requests().mutating;
    let bytes = std::fs::read(env.out()).unwrap();
    let again = env.cli(&lab, &["proxmox", "token", "create"]).await;
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("nothing to do"),
        "{}",
        text(&again)
    );
    assert_eq!(lab.requests().mutating, before);
    assert_eq!(std::fs::read(env.out()).unwrap(), bytes);

    // Drift in the role is repaired, and only that.
    access
        .update_role("HomelabProvisioner", &["VM.Audit", "Sys.Console"], false)
        .await
        .unwrap();
    let repair = env.cli(&lab, &["proxmox", "token", "create"]).await;
    assert!(repair.status.success(), "{}", text(&repair));
    let out = String::from_utf8_lossy(&repair.stdout);
    assert!(out.contains("updated role HomelabProvisioner"), "{out}");
    assert!(out.contains("-[Sys.Console]"), "{out}");
    assert!(!out.contains("created token"), "{out}");
    let role = access
        .roles()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.roleid == "HomelabProvisioner")
        .unwrap();
    assert_eq!(role.privs.unwrap().split(',').count(), want.len());

    // Losing the file: the secret cannot be recovered, so say so and offer --rotate.
    std::fs::remove_file(env.out()).unwrap();
    let lost = env.cli(&lab, &["proxmox", "token", "create"]).await;
    assert_eq!(lost.status.code(), Some(1), "{}", text(&lost));
    let err = String::from_utf8_lossy(&lost.stderr);
    assert!(
        err.contains("exists but its secret is not in") && err.contains("--rotate"),
        "{err}"
    );
    assert!(!env.out().exists());

    // --rotate replaces the token; the old secret stops working. Recipients from --age.
    std::fs::remove_file(env.repo().join(".sops.yaml")).unwrap();
    let rotated = env
        .cli(
            &lab,
            &[
                "proxmox",
                "token",
                "create",
                "--rotate",
                "--age",
                &env.recipient,
            ],
        )
        .await;
    assert!(rotated.status.success(), "{}", text(&rotated));
    let out = String::from_utf8_lossy(&rotated.stdout);
    assert!(
        out.contains("deleted token homelab@pve!homelab (rotation)"),
        "{out}"
    );
    assert!(out.contains("granted HomelabProvisioner to token"), "{out}");
    let new_secret = str_of(&env.decrypted(), "token_secret").to_string();
    assert_ne!(new_secret, secret);
    let old = as_token(&lab, "homelab@pve!homelab", &secret)
        .version()
        .await
        .unwrap_err();
    assert!(matches!(old, proxmox_client::Error::Auth { .. }), "{old:?}");
    as_token(&lab, "homelab@pve!homelab", &new_secret)
        .version()
        .await
        .unwrap();

    // A token deleted on the server is simply created again (the file is updated).
    access.delete_token("homelab@pve", "homelab").await.unwrap();
    let recreated = env.cli(&lab, &["proxmox", "token", "create"]).await;
    assert!(recreated.status.success(), "{}", text(&recreated));
    let out = String::from_utf8_lossy(&recreated.stdout);
    assert!(out.contains("created token homelab@pve!homelab"), "{out}");
    assert!(
        !out.contains("created user") && !out.contains("created role"),
        "{out}"
    );
    let third = str_of(&env.decrypted(), "token_secret").to_string();
    assert_ne!(third, new_secret);
    as_token(&lab, "homelab@pve!homelab", &third)
        .nodes()
        .await
        .unwrap();
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_create_merges_into_existing_secrets_and_checks_inputs() {
    let lab = Lab::builder().start().await.unwrap();
    let env = Env::new();
    // An existing secrets file with other keys (written by the real sops when present,
    // else by sops-age) keeps them.
    let plain = "network:\n    gateway: 10.0.0.1\n";
    let opts =
        sops_age::EncryptOptions::new(vec![sops_age::Recipient::parse(&env.recipient).unwrap()]);
    std::fs::write(
        env.out(),
        sops_age::encrypt(plain.as_bytes(), sops_age::Format::Yaml, &opts).unwrap(),
    )
    .unwrap();
    let o = env
        .cli(
            &lab,
            &[
                "proxmox",
                "token",
                "create",
                "--privsep",
                "false",
                "--token-id",
                "ci",
                "--role",
                "HomelabNoBackup",
                "--no-backup-jobs",
            ],
        )
        .await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(!String::from_utf8_lossy(&o.stdout).contains("granted HomelabProvisioner to token"));
    let mut ids = sops_age::Identities::new();
    ids.add_file(&env.dir.path().join("keys.txt")).unwrap();
    let all: serde_yaml_ng::Value = serde_yaml_ng::from_slice(
        &sops_age::decrypt(
            &std::fs::read(env.out()).unwrap(),
            sops_age::Format::Yaml,
            &ids,
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(all["network"]["gateway"].as_str(), Some("10.0.0.1"));
    assert_eq!(all["proxmox"]["token_id"].as_str(), Some("homelab@pve!ci"));
    let tokens = admin(&lab).access().tokens("homelab@pve").await.unwrap();
    assert_eq!(tokens[0].privsep, Some(false));
    let role = admin(&lab)
        .access()
        .roles()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.roleid == "HomelabNoBackup")
        .unwrap();
    let privs: Vec<String> = role.privs.unwrap().split(',').map(String::from).collect();
    let mut want: Vec<String> = homelab_cli::privileges_for(false)
        .into_iter()
        .map(String::from)
        .collect();
    want.sort();
    let mut privs = privs;
    privs.sort();
    assert_eq!(privs, want);
    assert!(!privs.iter().any(|p| p == "Sys.Modify"));

    // Bad names are refused before any request.
    let before = lab.requests().total;
    let bad = env
        .cli(
            &lab,
            &["proxmox", "token", "create", "--token-id", "9lives"],
        )
        .await;
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--token-id '9lives'"));
    assert_eq!(lab.requests().total, before);

    // No recipients for a new file: nothing is created on the server.
    std::fs::remove_file(env.repo().join(".sops.yaml")).unwrap();
    let before = lab.requests().mutating;
    let none = env
        .cli(
            &lab,
            &[
                "proxmox",
                "token",
                "create",
                "--token-id",
                "other",
                "-o",
                "new.enc.yaml",
            ],
        )
        .await;
    assert_eq!(none.status.code(), Some(1), "{}", text(&none));
    assert!(String::from_utf8_lossy(&none.stderr).contains("no age recipients"));
    assert_eq!(lab.requests().mutating, before);
    lab.shutdown().await;
}

#[tokio::test]
async fn privileges_lists_the_role_in_text_and_json() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_homelab-cli"))
        .args(["proxmox", "privileges", "--output", "json"])
        .env("NO_COLOR", "1")
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["privilege"].as_str().unwrap())
        .collect();
    assert_eq!(names, privileges());
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .all(|e| !e["needed_for"].as_str().unwrap().is_empty())
    );
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_homelab-cli"))
        .args(["proxmox", "privileges"])
        .env("NO_COLOR", "1")
        .output()
        .await
        .unwrap();
    insta::assert_snapshot!(String::from_utf8_lossy(&out.stdout));
}

// ----------------------------------------------------------------------------- SFTP

fn write_key(dir: &Path, seed: u8) -> (PathBuf, PrivateKey) {
    let key = PrivateKey::from(Ed25519Keypair::from_seed(&[seed; 32]));
    let path = dir.join(format!("id_ed25519_{seed}"));
    std::fs::write(&path, key.to_openssh(LineEnding::LF).unwrap().as_bytes()).unwrap();
    (path, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snippets_upload_atomically_idempotently_with_a_pinned_host_key() {
    let dir = tempfile::tempdir().unwrap();
    let lab = Lab::builder().start().await.unwrap();
    let (key_path, key) = write_key(dir.path(), 1);
    let sftp = SftpServer::builder(dir.path().join("node"))
        .pve(lab.sim().clone(), "pve")
        .authorized_public_key(key.public_key().clone())
        .start()
        .await
        .unwrap();
    let port = sftp.addr().port();
    let pin: HostKeyPin = sftp.fingerprint().parse().unwrap();

    let up = SnippetUploader::connect(
        "127.0.0.1",
        port,
        "root",
        load_private_key(&key_path, None).unwrap(),
        &pin,
    )
    .await
    .unwrap();
    let path = snippet_path("/var/lib/vz", "web-1.user-data.yaml").unwrap();
    let v1 = b"#cloud-config\npackages: [qemu-guest-agent]\n".to_vec();
    let first = up.upload(&path, &v1).await.unwrap();
    assert!(matches!(first, UploadOutcome::Uploaded { size, .. } if size == v1.len() as u64));
    assert_eq!(
        up.upload(&path, &v1).await.unwrap(),
        UploadOutcome::Unchanged
    );
    assert_eq!(up.read(&path).await.unwrap().unwrap(), v1);

    // A change replaces the file; no temporary file is left behind.
    let v2 = b"#cloud-config\npackages: [qemu-guest-agent, htop]\n".to_vec();
    assert!(matches!(
        up.upload(&path, &v2).await.unwrap(),
        UploadOutcome::Uploaded { .. }
    ));
    let names: Vec<String> = std::fs::read_dir(sftp.root().join("var/lib/vz/snippets"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["web-1.user-data.yaml".to_string()]);

    // The snippet is in the storage content, as `cicustom` will reference it.
    let content = admin(&lab)
        .node("pve")
        .storage("local")
        .content(Some("snippets"), None)
        .await
        .unwrap();
    assert_eq!(content.len(), 1, "{content:?}");
    assert_eq!(
        content[0].volid,
        snippet_volid("local", "web-1.user-data.yaml")
    );
    assert_eq!(content[0].format, "snippet");
    assert_eq!(content[0].size, v2.len() as u64);

    // A storage without a snippets directory gives a clear error.
    let err = up
        .upload("/mnt/pve/nas/snippets/x.yaml", b"x")
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("/mnt/pve/nas/snippets: no such directory")
            && err.to_string().contains("content types"),
        "{err}"
    );
    assert!(up.remove(&path).await.unwrap());
    assert!(!up.remove(&path).await.unwrap());
    up.close().await;

    // A wrong pin fails and shows what the server presented.
    let wrong: HostKeyPin = "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s"
        .parse()
        .unwrap();
    let err = SnippetUploader::connect("127.0.0.1", port, "root", key.clone(), &wrong)
        .await
        .unwrap_err();
    match &err {
        SftpError::HostKeyMismatch {
            actual, expected, ..
        } => {
            assert_eq!(actual, &sftp.fingerprint());
            assert_eq!(expected, wrong.as_str());
        }
        other => panic!("{other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(&sftp.fingerprint()) && msg.contains("host key verification failed"),
        "{msg}"
    );

    // A key the host does not know is refused, naming the key.
    let (_, stranger) = write_key(dir.path(), 2);
    let err = SnippetUploader::connect("127.0.0.1", port, "root", stranger.clone(), &pin)
        .await
        .unwrap_err();
    assert!(matches!(err, SftpError::Auth { .. }), "{err:?}");
    assert!(err.to_string().contains("authorized_keys"), "{err}");

    // Nothing listens: a connection error, not a hang.
    sftp.shutdown().await;
    let err = SnippetUploader::connect("127.0.0.1", port, "root", key, &pin)
        .await
        .unwrap_err();
    assert!(matches!(err, SftpError::Connect { .. }), "{err:?}");
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passphrase_protected_keys_from_ssh_keygen_work() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id_ed25519");
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "s3cret", "-f"])
        .arg(&key)
        .output();
    let Ok(made) = made else {
        crate::common::skip_or_fail("ssh-keygen not installed");
        return;
    };
    assert!(made.status.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let sftp = SftpServer::builder(dir.path().join("node"))
        .authorized_key(&public)
        .unwrap()
        .start()
        .await
        .unwrap();
    std::fs::create_dir_all(sftp.root().join("var/lib/vz/snippets")).unwrap();
    assert!(load_private_key(&key, None).is_err());
    let err = load_private_key(&key, Some("wrong")).unwrap_err();
    assert!(err.to_string().contains("id_ed25519"), "{err}");
    let pk = load_private_key(&key, Some("s3cret")).unwrap();
    let up = SnippetUploader::connect(
        "127.0.0.1",
        sftp.addr().port(),
        "root",
        pk,
        &sftp.fingerprint().parse().unwrap(),
    )
    .await
    .unwrap();
    let path = snippet_path("/var/lib/vz", "a.yaml").unwrap();
    assert!(matches!(
        up.upload(&path, b"a: 1\n").await.unwrap(),
        UploadOutcome::Uploaded { .. }
    ));
    up.close().await;
    sftp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_scans_the_host_key_and_uploads_snippets() {
    let dir = tempfile::tempdir().unwrap();
    let lab = Lab::builder().start().await.unwrap();
    let (key_path, key) = write_key(dir.path(), 3);
    let sftp = SftpServer::builder(dir.path().join("node"))
        .pve(lab.sim().clone(), "pve")
        .authorized_public_key(key.public_key().clone())
        .start()
        .await
        .unwrap();
    let port = sftp.addr().port().to_string();
    let cli = |args: Vec<String>| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_homelab-cli"))
            .arg("proxmox")
            .args(args)
            .current_dir(dir.path())
            .env("NO_COLOR", "1")
            .env_remove("HOMELAB_SSH_HOST_KEY")
            .output()
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();

    // TOFU helper: what the node presents is what it holds.
    let scan = cli(s(&[
        "ssh-fingerprint",
        "--host",
        "127.0.0.1",
        "--port",
        &port,
    ]))
    .await
    .unwrap();
    assert!(scan.status.success(), "{}", text(&scan));
    assert_eq!(
        String::from_utf8_lossy(&scan.stdout).trim(),
        sftp.fingerprint()
    );

    std::fs::write(dir.path().join("web-1.yaml"), "#cloud-config\n").unwrap();
    std::fs::write(dir.path().join("db-1.yaml"), "#cloud-config\nruncmd: []\n").unwrap();
    let upload = |pin: String| {
        cli(s(&[
            "snippet",
            "upload",
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "-i",
            key_path.to_str().unwrap(),
            "--host-key",
            &pin,
            "--output",
            "json",
            "web-1.yaml",
            "db-1.yaml",
        ]))
    };
    let first = upload(sftp.fingerprint()).await.unwrap();
    assert!(first.status.success(), "{}", text(&first));
    let v: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(v[0]["volid"], "local:snippets/web-1.yaml");
    assert_eq!(v[1]["path"], "/var/lib/vz/snippets/db-1.yaml");
    assert_eq!(v[0]["changed"], true);
    let again = upload(sftp.fingerprint()).await.unwrap();
    let v: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(v[0]["changed"], false);
    assert_eq!(v[1]["changed"], false);
    let listed = admin(&lab)
        .node("pve")
        .storage("local")
        .content(Some("snippets"), None)
        .await
        .unwrap();
    assert_eq!(listed.len(), 2);

    // A wrong pin: exit 1, the presented fingerprint in the message, nothing written.
    std::fs::write(dir.path().join("web-1.yaml"), "#cloud-config\nchanged: 1\n").unwrap();
    let bad = upload("SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s".into())
        .await
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains(&sftp.fingerprint()), "{err}");
    assert_eq!(
        std::fs::read_to_string(sftp.root().join("var/lib/vz/snippets/web-1.yaml")).unwrap(),
        "#cloud-config\n"
    );
    let malformed = upload("AA:BB".into()).await.unwrap();
    assert_eq!(malformed.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&malformed.stderr).contains("--host-key"));
    sftp.shutdown().await;
    lab.shutdown().await;
}
