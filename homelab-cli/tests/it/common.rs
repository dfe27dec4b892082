//! What the end-to-end modules share: a throw-away repository made from an example, the
//! CLI run inside it (own HOME, no colour, no ambient SOPS keys), and the simulated lab
//! opened in process.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use homelab_cli::model::desired::ImageNaming;
use homelab_cli::session::{Session, SimArgs};

/// Image naming for resolving configs without a factory (fixed schematic ID).
pub struct NoImages;

impl ImageNaming for NoImages {
    fn schematic_id(&self, _: &[String], _: &[String]) -> String {
        "0".repeat(64)
    }
    fn iso_url(&self, factory: &str, id: &str, version: &str) -> String {
        format!("{factory}/image/{id}/{version}/nocloud-amd64.iso")
    }
    fn installer_image(&self, factory: &str, id: &str, version: &str) -> String {
        format!("{factory}/installer/{id}:{version}")
    }
}

/// `examples/<name>` in this repository.
pub fn example_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
}

/// A temporary repository holding copies of example files.
pub struct Repo {
    pub dir: tempfile::TempDir,
}

impl Repo {
    /// `files` copied from `examples/<example>`.
    pub fn copy(example: &str, files: &[&str]) -> Repo {
        let dir = tempfile::tempdir().unwrap();
        for f in files {
            std::fs::copy(example_dir(example).join(f), dir.path().join(f)).unwrap();
        }
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        Repo { dir }
    }

    /// The repository's homelab.yaml.
    pub fn config(&self) -> PathBuf {
        self.dir.path().join("homelab.yaml")
    }

    /// Replace homelab.yaml.
    pub fn write(&self, yaml: &str) {
        std::fs::write(self.config(), yaml).unwrap();
    }

    /// Replace the first `from` in homelab.yaml by `to` (which must be there).
    pub fn edit(&self, from: &str, to: &str) {
        let text = std::fs::read_to_string(self.config()).unwrap();
        assert!(text.contains(from), "homelab.yaml has no `{from}`");
        self.write(&text.replacen(from, to, 1));
    }

    /// `homelab-cli ARGS -c <config> `, with extra environment variables.
    pub fn run(&self, args: &[&str], config: &str, envs: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_homelab-cli"));
        cmd.args(args)
            .args(["-c", config])
            .current_dir(self.dir.path())
            .env("HOME", self.dir.path().join("home"))
            .env("NO_COLOR", "1")
            .env_remove("HOMELAB_ENV")
            .env_remove("SOPS_AGE_KEY_FILE")
            .env_remove("SOPS_AGE_KEY");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        eprintln!(
            "$ homelab-cli {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// `homelab-cli ARGS -c <absolute path of homelab.yaml>`.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.run(args, self.config().to_str().unwrap(), &[])
    }

    /// [`Repo::cli`], which must succeed, with its stdout parsed as JSON.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.cli(args);
        assert!(out.status.success(), "homelab-cli {args:?} failed");
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// `up --simulate --yes -o json` (plus `extra`): every step done, no request refused by
    /// the PVE schema. Returns the report.
    pub fn up_ok(&self, extra: &[&str]) -> serde_json::Value {
        let args = [&["up", "--simulate", "--yes", "-o", "json"], extra].concat();
        let up = self.json(&args);
        let steps = up["steps"].as_array().unwrap();
        assert!(steps.iter().all(|s| s["outcome"] == "done"), "{up:#}");
        assert_eq!(up["simulated_requests"]["schema_rejected"], 0, "{up:#}");
        up
    }

    /// `plan --simulate` (plus `extra`): its text.
    pub fn plan_text(&self, extra: &[&str]) -> String {
        let out = self.cli(&[&["plan", "--simulate"], extra].concat());
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `plan --simulate --detailed-exitcode` (plus `extra`) says there is nothing to do.
    pub fn assert_converged(&self, extra: &[&str]) {
        let out = self.cli(&[&["plan", "--simulate", "--detailed-exitcode"], extra].concat());
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    /// Run `f` against the repository's simulated lab (its state persists between runs).
    pub fn with_lab<T>(&self, f: impl AsyncFnOnce(&Session) -> T) -> T {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let s = Session::open(
                &self.config(),
                &SimArgs {
                    simulate: true,
                    sim_latency_ms: None,
                },
            )
            .await
            .unwrap();
            let r = f(&s).await;
            s.close().await;
            r
        })
    }
}

/// What `proxmox token create` sets up, done as root through the session: the user
/// `homelab@pve`, the role `HomelabProvisioner` with [`homelab_cli::privileges`] on `/`,
/// every `(path, role)` of `grants`, and the API token `homelab@pve!<name>`. The ACLs go to
/// the user and, for a privilege-separated token, to the token too. The session then talks
/// to Proxmox with that token only.
pub async fn use_provisioning_token(
    s: &mut Session,
    name: &str,
    privsep: bool,
    grants: &[(&str, &str)],
) {
    use proxmox_client::requests::{AclUpdate, UserCreate};
    use secrecy::ExposeSecret;
    let access = s.pve.access();
    access
        .create_user(&UserCreate {
            userid: "homelab@pve".into(),
            password: None,
            comment: None,
            enable: Some(true),
            expire: None,
            groups: Vec::new(),
        })
        .await
        .unwrap();
    access
        .create_role("HomelabProvisioner", &homelab_cli::privileges())
        .await
        .unwrap();
    let token = access
        .create_token("homelab@pve", name, privsep, None)
        .await
        .unwrap();
    let token_id = format!("homelab@pve!{name}");
    let mut holders = vec![(vec!["homelab@pve".to_string()], vec![])];
    if privsep {
        holders.push((vec![], vec![token_id.clone()]));
    }
    for (path, role) in std::iter::once(&("/", "HomelabProvisioner")).chain(grants) {
        for (users, tokens) in &holders {
            access
                .update_acl(&AclUpdate {
                    path: (*path).into(),
                    roles: vec![(*role).into()],
                    users: users.clone(),
                    tokens: tokens.clone(),
                    propagate: Some(true),
                    ..Default::default()
                })
                .await
                .unwrap();
        }
    }
    s.pve = proxmox_client::Client::builder()
        .base_url(&s.desired.proxmox.endpoint)
        .api_token(&token_id, token.value.expose_secret())
        .pin_fingerprint(s.desired.proxmox.fingerprint.as_deref().unwrap())
        .build()
        .unwrap();
}

/// A miette report as one line (box-drawing margins and line breaks removed), for
/// `contains` checks that must not depend on the terminal width.
pub fn flat(stderr: &[u8]) -> String {
    String::from_utf8_lossy(stderr)
        .replace('│', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
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
