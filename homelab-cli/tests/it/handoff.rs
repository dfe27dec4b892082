//! First-boot handoff end to end: `up` writes each VM's token (minted at upload) and the
//! spec URL into its vendor-data snippet; `handoff serve` hands a valid token its VM's
//! spec and refuses tampered, expired, rotated-out and other-VM tokens with 401/403 and a
//! log line saying why. The token and key never show in plan output or logs.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

use homelab_cli::handoff::{Claims, SigningKey, peek, sign, verify};
use secrecy::ExposeSecret;

use crate::common::Repo;
use crate::sdn::BASE;

const KEY1: &str = "first-handoff-key-0123456789abcdefghij";
const KEY2: &str = "second-handoff-key-0123456789abcdefghi";

const VMS: &str = r#"handoff:
  url: http://10.0.20.5:8787
  key: ${secret:handoff.key}
  key_id: k1
  ttl: 1h
vms:
  vmid_base: 400
  defaults:
    image: debian-12
    handoff: true
    ssh_keys:
      - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF7d1J6b4rDtW12s+0Ehn3TIoNVFHW9S5ZlHT+kSpf93 homelab-demo
  presets:
    base: { cores: 1 }
  machines:
    - name: dev1
      preset: base
      packages: [htop]
      user_data:
        runcmd:
          - [touch, /etc/dev1-ready]
        write_files:
          - { path: /etc/motd, content: "dev1\n" }
    - name: dev2
      packages: [curl]
"#;

fn set_key(repo: &Repo, key: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_homelab-cli"))
        .args([
            "secrets",
            "set",
            "secrets.enc.yaml",
            r#"["handoff"]["key"]"#,
            &format!("\"{key}\""),
        ])
        .current_dir(repo.dir.path())
        .env("HOME", repo.dir.path().join("home"))
        .env("SOPS_AGE_KEY_FILE", "demo-age-key.txt")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn repo() -> Repo {
    let r = Repo::copy(
        "vm-fleet",
        &["demo-age-key.txt", ".sops.yaml", "secrets.enc.yaml"],
    );
    r.write(&format!("{BASE}{VMS}"));
    set_key(&r, KEY1);
    r
}

/// `handoff serve` on a free loopback port; returns the child and its address.
fn serve(repo: &Repo) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_homelab-cli"))
        .args(["handoff", "serve", "--listen", "127.0.0.1:0", "-c"])
        .arg(repo.config())
        .current_dir(repo.dir.path())
        .env("HOME", repo.dir.path().join("home"))
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .env_remove("SOPS_AGE_KEY_FILE")
        .env_remove("SOPS_AGE_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_string();
    (child, addr)
}

/// Stop the server; its log (stderr).
fn stop(mut child: Child) -> String {
    child.kill().unwrap();
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    child.wait().unwrap();
    log
}

/// `GET /v1/vms/<vm>/spec` with an optional bearer token: status and body.
fn get_spec(addr: &str, vm: &str, token: Option<&str>) -> (u16, serde_json::Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET /v1/vms/{vm}/spec HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status: u16 = resp.split(' ').nth(1).unwrap().parse().unwrap();
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or_default())
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The token `up` wrote into VM `vm`'s snippet (the root-only file's content).
fn token_in_snippet(repo: &Repo, vm: &str) -> (String, String) {
    let dir = repo
        .dir
        .path()
        .join(".homelab/sim/sftp/root/var/lib/vz/snippets");
    let name = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with(&format!("net.{vm}.")))
        .unwrap();
    let text = std::fs::read_to_string(dir.join(&name)).unwrap();
    let doc: serde_json::Value = serde_yaml_ng::from_str(&text).unwrap();
    let files = doc["write_files"].as_array().unwrap();
    let token_file = files
        .iter()
        .find(|f| f["path"] == "/etc/homelab/handoff.token")
        .unwrap();
    assert_eq!(token_file["permissions"], "0600");
    let token = token_file["content"].as_str().unwrap().trim().to_string();
    (token, text)
}

#[test]
fn tokens_get_their_own_spec_and_nothing_else() {
    let repo = repo();
    // The plan shows neither key nor token.
    let shown = repo.plan_text(&[]);
    assert!(!shown.contains(KEY1), "{shown}");
    let up = repo.up_ok(&[]);
    let up_text = up.to_string();
    assert!(!up_text.contains(KEY1));

    let (t1, snippet) = token_in_snippet(&repo, "dev1");
    assert!(
        snippet.contains("export HOMELAB_SPEC_URL=http://10.0.20.5:8787/v1/vms/dev1/spec"),
        "{snippet}"
    );
    assert!(
        snippet.contains("/etc/profile.d/homelab-handoff.sh"),
        "{snippet}"
    );
    assert!(!up_text.contains(&t1), "the token is not in up's report");
    let key1 = SigningKey::new("k1", KEY1.as_bytes().to_vec()).unwrap();
    let c = verify(&key1, &t1, "dev1", now()).unwrap();
    assert_eq!(
        (c.n.as_str(), c.s.as_str(), c.kid.as_str()),
        ("dev1", "base", "k1")
    );
    assert_eq!(c.exp - c.iat, 3600);
    let (t2, _) = token_in_snippet(&repo, "dev2");
    assert_eq!(peek(&t2).unwrap().s, "default");
    // A re-plan is stable: the snippet name hashes the URL and key id, not the token.
    repo.assert_converged(&[]);
    let shown = repo.plan_text(&[]);
    assert!(!shown.contains(&t1), "{shown}");

    let (server, addr) = serve(&repo);
    // A valid token gets its VM's spec.
    let (st, spec) = get_spec(&addr, "dev1", Some(&t1));
    assert_eq!(st, 200, "{spec}");
    assert_eq!(spec["name"], "dev1");
    assert_eq!(spec["packages"], serde_json::json!(["htop"]));
    assert_eq!(
        spec["commands"][0],
        serde_json::json!(["touch", "/etc/dev1-ready"])
    );
    assert_eq!(spec["files"][0]["path"], "/etc/motd");
    assert_eq!(spec["users"][0]["name"], "homelab");
    // Another VM's spec with it: 403.
    let (st, body) = get_spec(&addr, "dev2", Some(&t1));
    assert_eq!(st, 403, "{body}");
    // Tampered: the payload says dev2, the signature is dev1's.
    let forged = {
        let mut c: Claims = peek(&t1).unwrap();
        c.n = "dev2".into();
        let other = sign(&key1, &c).unwrap();
        let body = other.expose_secret().split('.').next().unwrap().to_string();
        format!("{body}.{}", t1.split('.').nth(1).unwrap())
    };
    assert_eq!(get_spec(&addr, "dev2", Some(&forged)).0, 401);
    // Expired.
    let expired = sign(
        &key1,
        &Claims {
            v: 1,
            n: "dev1".into(),
            s: "base".into(),
            iat: now() - 7200,
            exp: now() - 3600,
            kid: "k1".into(),
        },
    )
    .unwrap();
    assert_eq!(
        get_spec(&addr, "dev1", Some(expired.expose_secret())).0,
        401
    );
    // No token at all.
    assert_eq!(get_spec(&addr, "dev1", None).0, 401);
    let log = stop(server);
    for why in [
        "handoff refused for vm \"dev2\": token is for vm \"dev1\", not \"dev2\"",
        "handoff refused for vm \"dev2\": bad signature",
        "handoff refused for vm \"dev1\": token expired at",
        "handoff refused for vm \"dev1\": no token",
    ] {
        assert!(log.contains(why), "no `{why}` in:\n{log}");
    }
    // Tokens and the key are masked in the log.
    for secret in [t1.as_str(), forged.as_str(), expired.expose_secret(), KEY1] {
        assert!(!log.contains(secret), "a secret in the log:\n{log}");
    }
    assert!(log.contains("(sensitive)"), "{log}");

    // Rotation: a new key and key id. Old tokens are refused; `up` hands out new ones.
    set_key(&repo, KEY2);
    repo.edit("key_id: k1", "key_id: k2");
    let shown = repo.plan_text(&[]);
    assert!(
        shown.contains("+ snippet"),
        "new snippets with new tokens: {shown}"
    );
    assert!(!shown.contains(KEY2), "{shown}");
    repo.up_ok(&[]);
    let (t1_new, _) = token_in_snippet(&repo, "dev1");
    let (server, addr) = serve(&repo);
    assert_eq!(get_spec(&addr, "dev1", Some(&t1)).0, 401);
    assert_eq!(get_spec(&addr, "dev1", Some(&t1_new)).0, 200);
    let log = stop(server);
    assert!(
        log.contains("handoff refused for vm \"dev1\": key id \"k1\" was rotated out"),
        "{log}"
    );
    assert!(!log.contains(&t1_new) && !log.contains(KEY2), "{log}");
}
