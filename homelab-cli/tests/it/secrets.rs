//! Integration tests of `homelab-cli secrets` (the built binary, hermetic env per test).
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use age::secrecy::ExposeSecret;

struct Env {
    dir: tempfile::TempDir,
    keys: Vec<(String, String)>,
}

impl Env {
    fn new(n: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let keys: Vec<(String, String)> = (0..n)
            .map(|_| {
                let id = age::x25519::Identity::generate();
                (
                    id.to_string().expose_secret().to_owned(),
                    id.to_public().to_string(),
                )
            })
            .collect();
        let env = Env { dir, keys };
        env.keyfile(&(0..n).collect::<Vec<_>>());
        env
    }

    fn keyfile(&self, which: &[usize]) {
        let text: String = which
            .iter()
            .map(|&i| format!("# public key: {}\n{}\n", self.keys[i].1, self.keys[i].0))
            .collect();
        std::fs::write(self.path("keys.txt"), text).unwrap();
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, data: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, data).unwrap();
        p
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_homelab-cli"));
        c.arg("secrets")
            .args(args)
            .current_dir(self.dir.path())
            .env("HOME", self.dir.path())
            .env("XDG_CONFIG_HOME", self.dir.path().join("xdg"))
            .env("SOPS_AGE_KEY_FILE", self.path("keys.txt"))
            .env("NO_COLOR", "1")
            .env_remove("SOPS_AGE_KEY")
            .env_remove("SOPS_AGE_KEY_CMD")
            .env_remove("SOPS_AGE_RECIPIENTS")
            .env_remove("SOPS_AGE_SSH_PRIVATE_KEY_FILE")
            .env_remove("SOPS_CONFIG")
            .env_remove("SOPS_EDITOR")
            .env_remove("EDITOR")
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> Vec<u8> {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "secrets {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    fn sops(&self, args: &[&str]) -> Option<Output> {
        let out = Command::new("sops")
            .args(args)
            .current_dir(self.dir.path())
            .env("HOME", self.dir.path())
            .env("SOPS_AGE_KEY_FILE", self.path("keys.txt"))
            .env("SOPS_DISABLE_VERSION_CHECK", "1")
            .env_remove("SOPS_AGE_KEY")
            .output();
        match out {
            Ok(o) => Some(o),
            Err(_) => {
                crate::common::skip_or_fail("sops cross-check: the `sops` binary is not on PATH");
                None
            }
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const DOC: &str = "# database settings\ndb:\n    user: admin\n    password: hunter2\nport: 5432\nnote_unencrypted: visible\n";

#[test]
fn encrypt_decrypt_stdout_in_place_and_output() {
    let env = Env::new(1);
    env.write("s.yaml", DOC);
    let enc = env.ok(&["encrypt", "--age", &env.keys[0].1, "s.yaml"]);
    let enc_text = text(&enc);
    assert!(enc_text.contains("password: ENC[AES256_GCM,"), "{enc_text}");
    assert!(enc_text.contains("note_unencrypted: visible"));
    assert!(!enc_text.contains("hunter2"));
    assert_eq!(
        std::fs::read_to_string(env.path("s.yaml")).unwrap(),
        DOC,
        "stdout mode must not touch the file"
    );

    env.ok(&[
        "encrypt",
        "--age",
        &env.keys[0].1,
        "--output",
        "out.yaml",
        "s.yaml",
    ]);
    let dec = env.ok(&["decrypt", "out.yaml"]);
    assert_eq!(text(&dec), DOC);

    env.ok(&["encrypt", "-i", "--age", &env.keys[0].1, "s.yaml"]);
    let inplace = std::fs::read_to_string(env.path("s.yaml")).unwrap();
    assert!(inplace.contains("sops:") && !inplace.contains("hunter2"));
    // encrypting twice is refused with a clear message
    let again = env.run(&["encrypt", "-i", "--age", &env.keys[0].1, "s.yaml"]);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("already encrypted"),
        "{}",
        text(&again.stderr)
    );
    env.ok(&["decrypt", "-i", "s.yaml"]);
    assert_eq!(std::fs::read_to_string(env.path("s.yaml")).unwrap(), DOC);
    // no temp files left behind
    let leftovers: Vec<_> = std::fs::read_dir(env.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".homelab-secrets-")
        })
        .collect();
    assert!(leftovers.is_empty());

    if let Some(out) = env.sops(&["decrypt", "out.yaml"]) {
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), DOC);
    }
}

#[test]
fn creation_rules_extract_and_types() {
    let env = Env::new(1);
    env.write(
        ".sops.yaml",
        &format!(
            "creation_rules:\n  - path_regex: \\.json$\n    encrypted_regex: ^password$\n    age: {}\n",
            env.keys[0].1
        ),
    );
    env.write(
        "s.json",
        "{\"user\": \"admin\", \"password\": \"hunter2\", \"list\": [1, 2]}",
    );
    env.ok(&["encrypt", "-i", "s.json"]);
    let enc = std::fs::read_to_string(env.path("s.json")).unwrap();
    assert!(enc.contains("\"user\": \"admin\""), "{enc}");
    assert!(enc.contains("\"encrypted_regex\": \"^password$\""));
    assert_eq!(
        env.ok(&["decrypt", "--extract", "[\"password\"]", "s.json"]),
        b"hunter2"
    );
    assert_eq!(
        text(&env.ok(&["decrypt", "--extract", "[\"list\"][1]", "s.json"])),
        "2"
    );
    let yaml = env.ok(&["decrypt", "--output-type", "yaml", "s.json"]);
    assert_eq!(
        text(&yaml),
        "user: admin\npassword: hunter2\nlist:\n    - 1\n    - 2\n"
    );
    // no rule matches a .yaml file
    env.write("x.yaml", "a: 1\n");
    let out = env.run(&["encrypt", "x.yaml"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no matching creation rules"),
        "{}",
        text(&out.stderr)
    );
    // stdin needs a type
    let mut child = env
        .cmd(&["encrypt", "--age", &env.keys[0].1, "--input-type", "dotenv"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"TOKEN=abc\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("TOKEN=ENC[AES256_GCM,"));
}

#[test]
fn set_unset_keep_unchanged_ciphertexts() {
    let env = Env::new(1);
    env.write("s.yaml", DOC);
    env.ok(&["encrypt", "-i", "--age", &env.keys[0].1, "s.yaml"]);
    let before = std::fs::read_to_string(env.path("s.yaml")).unwrap();
    env.ok(&["set", "s.yaml", "[\"db\"][\"password\"]", "\"new-pass\""]);
    let after = std::fs::read_to_string(env.path("s.yaml")).unwrap();
    let line = |t: &str, k: &str| {
        t.lines()
            .find(|l| l.trim_start().starts_with(k))
            .unwrap()
            .to_owned()
    };
    assert_eq!(line(&before, "user:"), line(&after, "user:"));
    assert_ne!(line(&before, "password:"), line(&after, "password:"));
    assert_eq!(
        env.ok(&["decrypt", "--extract", "[\"db\"][\"password\"]", "s.yaml"]),
        b"new-pass"
    );
    env.ok(&["set", "s.yaml", "[\"port\"]", "6543"]);
    assert_eq!(
        text(&env.ok(&["decrypt", "--extract", "[\"port\"]", "s.yaml"])),
        "6543\n"
    );
    env.ok(&["unset", "s.yaml", "[\"db\"][\"user\"]"]);
    let dec = text(&env.ok(&["decrypt", "s.yaml"]));
    assert!(!dec.contains("admin"), "{dec}");
    let missing = env.run(&["unset", "s.yaml", "[\"nope\"]"]);
    assert!(!missing.status.success());
    env.ok(&["unset", "--idempotent", "s.yaml", "[\"nope\"]"]);
    if let Some(out) = env.sops(&["decrypt", "s.yaml"]) {
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), dec);
    }
}

fn editor_script(env: &Env, body: &str) -> PathBuf {
    let p = env.path("editor.sh");
    std::fs::write(&p, format!("#!/bin/sh\nset -e\n{body}\n")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    p
}

#[test]
fn edit_reopens_invalid_documents_and_uses_a_private_temp_file() {
    let env = Env::new(1);
    env.write("s.yaml", DOC);
    env.ok(&["encrypt", "-i", "--age", &env.keys[0].1, "s.yaml"]);
    let before = std::fs::read_to_string(env.path("s.yaml")).unwrap();
    let log = env.path("editor.log");
    // first run: record the mode, write broken YAML; second run: write a valid change
    let script = editor_script(
        &env,
        &format!(
            "stat -c %a \"$1\" >> {log}\nif [ ! -f {saved} ]; then cp \"$1\" {saved}; printf 'a: [broken\\n' > \"$1\"; else sed 's/hunter2/changed/' {saved} > \"$1\"; fi",
            log = log.display(),
            saved = env.path("saved").display()
        ),
    );
    let mut cmd = env.cmd(&["edit", "s.yaml"]);
    cmd.env("EDITOR", "/bin/false").env("SOPS_EDITOR", &script);
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("invalid syntax"),
        "{}",
        text(&out.stderr)
    );
    let modes = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        modes.lines().collect::<Vec<_>>(),
        vec!["600", "600"],
        "editor opened twice on a 0600 file"
    );
    let after = std::fs::read_to_string(env.path("s.yaml")).unwrap();
    let line = |t: &str, k: &str| {
        t.lines()
            .find(|l| l.trim_start().starts_with(k))
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        line(&before, "user:"),
        line(&after, "user:"),
        "unchanged values keep their IV"
    );
    assert_eq!(
        env.ok(&["decrypt", "--extract", "[\"db\"][\"password\"]", "s.yaml"]),
        b"changed"
    );

    // a new file is created from the editor's content
    let script = editor_script(&env, "printf 'token: fresh\\n' > \"$1\"");
    let mut cmd = env.cmd(&["edit", "--age", &env.keys[0].1, "new.yaml"]);
    cmd.env("EDITOR", &script);
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&env.ok(&["decrypt", "new.yaml"])), "token: fresh\n");

    // a document that stays invalid is not saved (and, without a terminal, not retried forever)
    let script = editor_script(&env, "printf 'a: [broken\\n' > \"$1\"");
    let mut cmd = env.cmd(&["edit", "s.yaml"]);
    cmd.env("EDITOR", &script);
    let out = cmd.output().unwrap();
    assert!(!out.status.success());
    assert_eq!(std::fs::read_to_string(env.path("s.yaml")).unwrap(), after);

    // the editor failing leaves the file alone
    let mut cmd = env.cmd(&["edit", "s.yaml"]);
    cmd.env("EDITOR", "false");
    let out = cmd.output().unwrap();
    assert!(!out.status.success());
    assert_eq!(std::fs::read_to_string(env.path("s.yaml")).unwrap(), after);
}

#[test]
fn rotate_and_updatekeys() {
    let env = Env::new(2);
    env.write("s.env", "TOKEN=abc\nOTHER=def\n");
    env.ok(&["encrypt", "-i", "--age", &env.keys[0].1, "s.env"]);
    env.ok(&[
        "rotate",
        "-i",
        "--add-age",
        &env.keys[1].1,
        "--rm-age",
        &env.keys[0].1,
        "s.env",
    ]);
    env.keyfile(&[1]);
    assert_eq!(
        text(&env.ok(&["decrypt", "s.env"])),
        "TOKEN=abc\nOTHER=def\n"
    );
    env.keyfile(&[0]);
    let out = env.run(&["decrypt", "s.env"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no identity could decrypt"),
        "{}",
        text(&out.stderr)
    );

    env.keyfile(&[0, 1]);
    env.write(
        ".sops.yaml",
        &format!(
            "creation_rules:\n  - age: [{}, {}]\n",
            env.keys[0].1, env.keys[1].1
        ),
    );
    let out = env.run(&["updatekeys", "s.env"]);
    assert!(!out.status.success(), "must ask for -y without a terminal");
    env.ok(&["updatekeys", "-y", "s.env"]);
    env.keyfile(&[0]);
    assert_eq!(
        text(&env.ok(&["decrypt", "s.env"])),
        "TOKEN=abc\nOTHER=def\n"
    );
    if let Some(out) = env.sops(&["decrypt", "s.env"]) {
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
}

#[test]
fn filestatus_and_exec_env() {
    let env = Env::new(1);
    env.write("s.yaml", "TOKEN: abc\nCOUNT: 3\n");
    assert_eq!(
        text(&env.ok(&["filestatus", "s.yaml"])),
        "{\"encrypted\":false}\n"
    );
    env.ok(&["encrypt", "-i", "--age", &env.keys[0].1, "s.yaml"]);
    assert_eq!(
        text(&env.ok(&["filestatus", "s.yaml"])),
        "{\"encrypted\":true}\n"
    );
    let out = env.ok(&["exec-env", "s.yaml", "echo \"$TOKEN-$COUNT\""]);
    assert_eq!(text(&out), "abc-3\n");
    let out = env.run(&["exec-env", "s.yaml", "exit 3"]);
    assert!(!out.status.success());
    env.write("n.yaml", "nested:\n    a: 1\n");
    env.ok(&["encrypt", "-i", "--age", &env.keys[0].1, "n.yaml"]);
    let out = env.run(&["exec-env", "n.yaml", "true"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("complex value"));
}

#[test]
fn tampered_file_is_rejected() {
    let env = Env::new(1);
    env.write("s.yaml", DOC);
    env.ok(&["encrypt", "-i", "--age", &env.keys[0].1, "s.yaml"]);
    let t = std::fs::read_to_string(env.path("s.yaml"))
        .unwrap()
        .replace("visible", "tampered");
    env.write("s.yaml", &t);
    let out = env.run(&["decrypt", "s.yaml"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("MAC mismatch"),
        "{}",
        text(&out.stderr)
    );
    env.ok(&["decrypt", "--ignore-mac", "s.yaml"]);
}
