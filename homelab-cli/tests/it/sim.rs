//! Integration tests of `homelab-cli sim serve`: spawn the binary, read its one JSON line,
//! call the API over TLS pinned to the printed fingerprint, stop it; a second process on the
//! same `--state` sees the same lab.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

struct Served {
    child: Child,
    banner: serde_json::Value,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(state: &std::path::Path) -> Served {
    let mut child = Command::new(env!("CARGO_BIN_EXE_homelab-cli"))
        .args(["sim", "serve", "--listen", "127.0.0.1:0", "--state"])
        .arg(state)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let banner: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("sim serve printed {line:?}: {e}"));
    Served { child, banner }
}

fn auth(b: &serde_json::Value) -> String {
    format!(
        "PVEAPIToken={}={}",
        b["token_id"].as_str().unwrap(),
        b["token_secret"].as_str().unwrap()
    )
}

#[tokio::test]
async fn serve_prints_one_line_and_answers_over_pinned_tls() {
    let dir = tempfile::tempdir().unwrap();
    let first = serve(dir.path());
    let b = first.banner.clone();
    let api = b["api_url"].as_str().unwrap();
    assert!(
        api.starts_with("https://127.0.0.1:") && api.ends_with("/api2/json"),
        "{b}"
    );
    assert_eq!(b["token_id"], "root@pam!homelab-sim");
    let fp = b["fingerprint"].as_str().unwrap();
    assert_eq!(fp.len(), 95);
    let (status, body) = homelab_sim::tls::probe(api, fp, &auth(&b), "/version")
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["data"]["release"], "9.1");
    let (status, nodes) = homelab_sim::tls::probe(api, fp, &auth(&b), "/nodes")
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(nodes["data"][0]["ssl_fingerprint"], b["fingerprint"]);
    drop(first);

    // A later process on the same state keeps the certificate (pins stay valid) and
    // issues a fresh token secret; the old one is refused.
    let second = serve(dir.path());
    let b2 = second.banner.clone();
    assert_eq!(b2["fingerprint"], b["fingerprint"]);
    assert_ne!(b2["token_secret"], b["token_secret"]);
    let api2 = b2["api_url"].as_str().unwrap();
    let (status, _) = homelab_sim::tls::probe(api2, fp, &auth(&b2), "/version")
        .await
        .unwrap();
    assert_eq!(status, 200);
    let (status, _) = homelab_sim::tls::probe(api2, fp, &auth(&b), "/version")
        .await
        .unwrap();
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_state_offers_a_pinned_sftp_endpoint_for_snippets() {
    use proxmox_client::snippets::{HostKeyPin, SnippetUploader, UploadOutcome, snippet_path};
    use russh::keys::PrivateKey;
    use russh::keys::ssh_key::private::Ed25519Keypair;

    let dir = tempfile::tempdir().unwrap();
    let first = serve(dir.path());
    let b = first.banner.clone();
    let sftp = &b["sftp"];
    let addr: std::net::SocketAddr = sftp["addr"].as_str().unwrap().parse().unwrap();
    assert!(addr.ip().is_loopback(), "{b}");
    assert_eq!(sftp["user"], "root");
    let pin: HostKeyPin = sftp["host_key_fingerprint"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    // A user adds their key to the printed authorized_keys file, then uploads over SFTP.
    let key = PrivateKey::from(Ed25519Keypair::from_seed(&[7; 32]));
    let authorized = std::path::PathBuf::from(sftp["authorized_keys"].as_str().unwrap());
    std::fs::write(
        &authorized,
        format!("{}\n", key.public_key().to_openssh().unwrap()),
    )
    .unwrap();
    let up = SnippetUploader::connect("127.0.0.1", addr.port(), "root", key, &pin)
        .await
        .unwrap();
    let path = snippet_path("/var/lib/vz", "web.user-data.yaml").unwrap();
    let body = b"#cloud-config\npackages: [qemu-guest-agent]\n";
    assert!(matches!(
        up.upload(&path, body).await.unwrap(),
        UploadOutcome::Uploaded { .. }
    ));

    // The snippet shows in the simulated storage's content, as PVE lists snippets.
    let api = b["api_url"].as_str().unwrap();
    let fp = b["fingerprint"].as_str().unwrap();
    let (status, content) = homelab_sim::tls::probe(
        api,
        fp,
        &auth(&b),
        "/nodes/pve/storage/local/content?content=snippets",
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{content}");
    assert_eq!(
        content["data"][0]["volid"],
        "local:snippets/web.user-data.yaml"
    );
    drop(up);
    drop(first);

    // The host key survives a restart, so the pin stays valid.
    let second = serve(dir.path());
    assert_eq!(
        second.banner["sftp"]["host_key_fingerprint"],
        b["sftp"]["host_key_fingerprint"]
    );
}
