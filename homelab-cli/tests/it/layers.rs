//! Environment files (`--env prod` → `homelab.prod.yaml`) merged onto homelab.yaml: the
//! merged values, and errors that point into the file that wrote the bad value.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};

use homelab_cli::model::{self, ConfigErrors};

use crate::common::Repo;

const BASE: &str = "\
name: layered
secrets:
  file: secrets.enc.yaml
  age_key_file: demo-age-key.txt
proxmox:
  endpoint: ${secret:proxmox.endpoint}
  token_id: ${secret:proxmox.token_id}
  token_secret: ${secret:proxmox.token_secret}
  node: pve
lxc:
  defaults:
    template: local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst
    cores: 1
    memory: 512MiB
    swap: 256MiB
    gateway: ${secret:network.gateway}
  containers:
    - name: postgresql
      vmid: 101
      ip: 10.0.10.101/24
      memory: 2GiB
      tags: [database]
    - name: grafana
      vmid: 102
      ip: 10.0.10.102/24
      tags: [monitoring]
";

/// Production: bigger default memory, no swap override (back to the built-in 512MiB),
/// more memory for the database only, and one more service.
const PROD: &str = "\
# prod
lxc:
  defaults:
    memory: 1GiB
    swap: ~
  containers:
    - name: minio
      vmid: 103
      ip: 10.0.10.103/24
    - name: postgresql
      memory: 8GiB
";

/// A repository with BASE, the services example's demo key and secrets, and `overlays`,
/// where commands run with `-c homelab.yaml` so that messages name files relatively.
struct LayeredRepo(Repo);

impl LayeredRepo {
    fn new(overlays: &[(&str, &str)]) -> LayeredRepo {
        let repo = Repo::copy(
            "services",
            &["demo-age-key.txt", ".sops.yaml", "secrets.enc.yaml"],
        );
        repo.write(BASE);
        for (env, text) in overlays {
            std::fs::write(repo.dir.path().join(format!("homelab.{env}.yaml")), text).unwrap();
        }
        LayeredRepo(repo)
    }

    fn cli(&self, args: &[&str], envs: &[(&str, &str)]) -> Output {
        self.0.run(args, "homelab.yaml", envs)
    }

    fn resolve(&self, args: &[&str], envs: &[(&str, &str)]) -> serde_json::Value {
        let out = self.cli(&[&["config", "resolve", "-o", "json"], args].concat(), envs);
        assert!(out.status.success(), "config resolve {args:?} failed");
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

/// `name → (memory, swap, tags)` of the resolved containers, in order.
fn containers(d: &serde_json::Value) -> Vec<(String, String, String, String)> {
    d["guests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            let p = &g["props"];
            (
                g["name"].as_str().unwrap().to_string(),
                p["memory"].as_str().unwrap_or("-").to_string(),
                p["swap"].as_str().unwrap_or("-").to_string(),
                g["vmid"].to_string(),
            )
        })
        .collect()
}

fn row(name: &str, memory: &str, swap: &str, vmid: u32) -> (String, String, String, String) {
    (name.into(), memory.into(), swap.into(), vmid.to_string())
}

fn render_diag(e: &dyn miette::Diagnostic) -> String {
    let mut s = String::new();
    miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
        .with_width(100)
        .render_report(&mut s, e)
        .unwrap();
    s
}

fn parse_prod(overlay: &str) -> Result<model::Loaded, ConfigErrors> {
    model::parse_env(
        Path::new("lab/homelab.yaml"),
        BASE.to_string(),
        "prod",
        overlay.to_string(),
    )
}

/// The (file, line) of each error.
fn places(e: &ConfigErrors) -> Vec<(String, usize, String)> {
    e.errors()
        .iter()
        .map(|x| {
            let file = render_diag(x)
                .lines()
                .find_map(|l| l.split_once("╭─[").map(|(_, f)| f.to_string()))
                .unwrap_or_default();
            let file = file.split(':').next().unwrap_or_default().to_string();
            (file, x.line_col().map_or(0, |(l, _)| l), x.message.clone())
        })
        .collect()
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn resolve_with_env_shows_the_merged_values() {
    let repo = LayeredRepo::new(&[("prod", PROD)]);
    // Without --env the overlay is not read.
    let base = repo.resolve(&[], &[]);
    assert_eq!(
        containers(&base),
        [
            row("postgresql", "2048", "256", 101),
            row("grafana", "512", "256", 102)
        ]
    );
    // prod: the default memory changed (grafana), one guest's memory by name (postgresql),
    // a new guest appended (minio), and `swap: ~` removed the default so the built-in
    // 512MiB applies.
    let prod = repo.resolve(&["--env", "prod"], &[]);
    assert_eq!(
        containers(&prod),
        [
            row("postgresql", "8192", "512", 101),
            row("grafana", "1024", "512", 102),
            row("minio", "1024", "512", 103),
        ]
    );
    // Keys the overlay does not mention keep their base values.
    let pg = &prod["guests"][0];
    assert_eq!(pg["extra_tags"], serde_json::json!(["database"]));
    assert_eq!(pg["props"]["cores"], "1", "{pg}");
    assert_eq!(
        prod["guests"][2]["template"],
        "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"
    );
    // HOMELAB_ENV selects the same environment; --env wins over it; an empty one is none.
    assert_eq!(repo.resolve(&[], &[("HOMELAB_ENV", "prod")]), prod);
    assert_eq!(
        repo.resolve(&["--env", "prod"], &[("HOMELAB_ENV", "nope")]),
        prod
    );
    assert_eq!(repo.resolve(&[], &[("HOMELAB_ENV", "")]), base);
}

#[test]
fn show_layers_names_the_file_and_line_of_every_value() {
    let repo = LayeredRepo::new(&[("prod", PROD)]);
    let out = repo.cli(
        &["config", "resolve", "--show-layers", "--env", "prod"],
        &[],
    );
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let line = |path: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{path}: ")))
            .unwrap_or_else(|| panic!("{path} not in\n{text}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let at = |needle: &str| line_of(PROD, needle);
    assert_eq!(
        line("lxc.defaults.memory"),
        format!(
            "lxc.defaults.memory: 1GiB # homelab.prod.yaml:{}",
            at("memory: 1GiB")
        )
    );
    assert_eq!(
        line("lxc.defaults.cores"),
        format!(
            "lxc.defaults.cores: 1 # homelab.yaml:{}",
            line_of(BASE, "cores: 1")
        )
    );
    assert_eq!(
        line("lxc.containers[0].memory"),
        format!(
            "lxc.containers[0].memory: 8GiB # homelab.prod.yaml:{}",
            at("8GiB")
        )
    );
    assert_eq!(
        line("lxc.containers[2].vmid"),
        format!(
            "lxc.containers[2].vmid: 103 # homelab.prod.yaml:{}",
            at("vmid: 103")
        )
    );
    assert!(!text.contains("swap"), "{text}");
    // Without --env everything comes from homelab.yaml; JSON has the same rows.
    let rows = repo.resolve(&["--show-layers"], &[]);
    let rows = rows.as_array().unwrap();
    assert!(rows.iter().all(|r| r["file"] == "homelab.yaml"), "{rows:?}");
    let swap = rows
        .iter()
        .find(|r| r["path"] == "lxc.defaults.swap")
        .unwrap();
    assert_eq!(swap["value"], "256MiB");
    assert_eq!(swap["line"], line_of(BASE, "swap: 256MiB"));
}

#[test]
fn an_environment_can_change_a_preset_or_which_preset_a_guest_uses() {
    let base = BASE.replace(
        "  containers:\n",
        "  presets:\n    small: {memory: 768MiB}\n    big: {memory: 3GiB, cores: 4}\n  containers:\n",
    )
    .replace("      tags: [monitoring]\n", "      tags: [monitoring]\n      preset: small\n");
    let over = "lxc:\n  presets:\n    small: {memory: 1536MiB}\n  containers:\n    - {name: postgresql, preset: big, memory: ~}\n";
    let l = model::parse_env(Path::new("homelab.yaml"), base.clone(), "prod", over.into()).unwrap();
    let x = l.config.lxc.as_ref().unwrap();
    // Built-in < defaults < preset < the guest's own keys, after the merge.
    let base_only = model::parse(Path::new("homelab.yaml"), base).unwrap();
    let y = base_only.config.lxc.as_ref().unwrap();
    let mem = |x: &homelab_cli::model::config::Lxc, i: usize| {
        x.effective(i).unwrap().memory.unwrap().to_string()
    };
    assert_eq!((mem(y, 0), mem(y, 1)), ("2GiB".into(), "768MiB".into()));
    // postgresql lost its own memory and took `big`; grafana's preset `small` changed.
    assert_eq!((mem(x, 0), mem(x, 1)), ("3GiB".into(), "1536MiB".into()));
    assert_eq!(x.effective(0).unwrap().cores, Some(4));
}

#[test]
fn up_and_plan_on_the_simulated_lab_use_the_environment() {
    // The simulated lab fetches templates by URL; a volume name would have to exist.
    let repo = LayeredRepo::new(&[("prod", PROD)]);
    let base = BASE.replace(
        "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst",
        "http://download.proxmox.com/images/system/debian-12-standard_12.7-1_amd64.tar.zst",
    );
    std::fs::write(repo.0.dir.path().join("homelab.yaml"), base).unwrap();
    let up = repo.cli(
        &["up", "--simulate", "--yes", "--env", "prod", "-o", "json"],
        &[],
    );
    assert!(up.status.success());
    let up: serde_json::Value = serde_json::from_slice(&up.stdout).unwrap();
    let created: Vec<_> = up["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["id"].as_str())
        .filter(|id| !id.starts_with("tmpl:"))
        .collect();
    assert_eq!(created.len(), 3, "{up:#}");
    // prod converged; the base document (no minio, less memory) would change things.
    let out = repo.cli(
        &["plan", "--simulate", "--detailed-exitcode", "--env", "prod"],
        &[],
    );
    assert_eq!(out.status.code(), Some(0));
    let out = repo.cli(
        &["plan", "--simulate", "--detailed-exitcode"],
        &[("HOMELAB_ENV", "prod")],
    );
    assert_eq!(out.status.code(), Some(0));
    let out = repo.cli(
        &["plan", "--simulate", "--detailed-exitcode", "-o", "json"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(plan.contains("minio"), "{plan}");
}

#[test]
fn relative_paths_stay_relative_to_the_base_file() {
    // Run from elsewhere: the secrets file and age key are found beside homelab.yaml.
    let repo = LayeredRepo::new(&[("prod", PROD)]);
    let elsewhere = tempfile::tempdir().unwrap();
    let cfg = repo.0.dir.path().join("homelab.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_homelab-cli"))
        .args(["config", "resolve", "-o", "json", "--env", "prod", "-c"])
        .arg(&cfg)
        .current_dir(elsewhere.path())
        .env("HOME", repo.0.dir.path().join("home"))
        .env_remove("HOMELAB_ENV")
        .env_remove("SOPS_AGE_KEY_FILE")
        .env_remove("SOPS_AGE_KEY")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(d["guests"].as_array().unwrap().len(), 3);
}

#[test]
fn missing_or_misnamed_environments_are_clear_errors() {
    let repo = LayeredRepo::new(&[("prod", PROD)]);
    let out = repo.cli(&["config", "resolve", "--env", "staging"], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("environment `staging`: homelab.staging.yaml does not exist"),
        "{err}"
    );
    let out = repo.cli(&["check", "--offline"], &[("HOMELAB_ENV", "staging")]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("homelab.staging.yaml does not exist"));
    // Names are checked before any file is looked up (no `../` games).
    let out = repo.cli(&["config", "resolve", "--env", "../prod"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("lowercase letters, digits and `-`"));
    let e = model::load_env(&repo.0.dir.path().join("homelab.yaml"), Some("Prod")).unwrap_err();
    assert!(
        e.to_string().contains("invalid environment name `Prod`"),
        "{e}"
    );
}

#[test]
fn check_points_at_the_overlay_line_of_a_bad_value() {
    let bad = PROD.replace("memory: 8GiB", "memory: lots");
    let repo = LayeredRepo::new(&[("prod", &bad)]);
    // The base alone is fine.
    let out = repo.cli(&["check", "--offline"], &[]);
    assert!(out.status.success());
    let out = repo.cli(&["check", "--offline", "--env", "prod"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let line = line_of(&bad, "memory: lots");
    assert!(err.contains(&format!("homelab.prod.yaml:{line}:")), "{err}");
    assert!(err.contains("`lots` is not a size"), "{err}");
    // The same error from the library, rendered.
    let e = parse_prod(&bad).unwrap_err();
    assert_eq!(
        places(&e),
        [(
            "lab/homelab.prod.yaml".to_string(),
            line,
            // The item is lxc.containers[1] in the overlay (it is [0] once merged).
            "lxc.containers[1].memory: `lots` is not a size (expected e.g. `16GiB` or `512M`)"
                .to_string()
        )]
    );
    insta::assert_snapshot!("overlay_bad_value", render_diag(&e));
}

#[test]
fn unknown_keys_and_semantic_errors_point_into_the_right_file() {
    // An unknown key written in the overlay.
    let bad = PROD.replace(
        "      memory: 8GiB\n",
        "      memory: 8GiB\n      memroy: 8GiB\n",
    );
    let e = parse_prod(&bad).unwrap_err();
    let got = places(&e);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, "lab/homelab.prod.yaml");
    assert_eq!(got[0].1, line_of(&bad, "memroy"));
    assert!(
        got[0]
            .2
            .starts_with("lxc.containers[1]: unknown field `memroy`"),
        "{got:?}"
    );
    let shown = render_diag(&e);
    assert!(shown.contains("╭─[lab/homelab.prod.yaml:12:7]"), "{shown}");
    assert!(shown.contains(" 12 │       memroy: 8GiB"), "{shown}");

    // Rules checked after the merge: a VMID clash the overlay introduces is reported at
    // the overlay's line; a value from the base stays in the base.
    let bad = PROD.replace("vmid: 103", "vmid: 101");
    let e = parse_prod(&bad).unwrap_err();
    let got = places(&e);
    assert_eq!(
        got,
        [(
            "lab/homelab.prod.yaml".to_string(),
            line_of(&bad, "vmid: 101"),
            "VMID 101 is already used by lxc.containers[0]".to_string()
        )]
    );
    let bad = PROD.replace("    memory: 1GiB\n", "    memory: 1GiB\n    cores: 0\n");
    let got = places(&parse_prod(&bad).unwrap_err());
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(
        got.iter()
            .all(|(_, _, m)| m == "a container needs at least one core"),
        "{got:?}"
    );

    // Merge rules: deleting an item that is not there.
    let bad = format!("{PROD}    - {{name: redis, $patch: delete}}\n");
    let e = parse_prod(&bad).unwrap_err();
    assert_eq!(
        places(&e),
        [(
            "lab/homelab.prod.yaml".to_string(),
            line_of(&bad, "redis"),
            "there is no `redis` in the base list to delete".to_string()
        )]
    );
    // ... and deleting one that is.
    let ok = format!("{PROD}    - {{name: grafana, $patch: delete}}\n");
    let l = parse_prod(&ok).unwrap();
    let names: Vec<_> = l
        .config
        .lxc
        .as_ref()
        .unwrap()
        .containers
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["postgresql", "minio"]);

    // A YAML syntax error in the overlay names the overlay.
    let e = parse_prod("lxc: [\n").unwrap_err();
    assert_eq!(places(&e)[0].0, "lab/homelab.prod.yaml");
}

#[test]
fn resolve_errors_after_the_merge_point_into_the_overlay() {
    // An address the overlay writes is checked when secrets are resolved (`check`).
    let bad = PROD.replace("10.0.10.103/24", "10.0.10.300/24");
    let repo = LayeredRepo::new(&[("prod", &bad)]);
    let out = repo.cli(&["check", "--offline", "--env", "prod"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let line = line_of(&bad, "10.0.10.300");
    assert!(err.contains(&format!("homelab.prod.yaml:{line}:")), "{err}");
}
