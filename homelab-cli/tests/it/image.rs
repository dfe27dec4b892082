//! Integration tests of `homelab-cli image` (the built binary), end to end against the
//! simulated Image Factory of `homelab-sim` on loopback.
#![allow(clippy::unwrap_used)]

use std::process::Output;

use homelab_sim::factory::{FactoryHandle, FactorySim, FactorySimConfig};
use sha2::{Digest, Sha256};

const QEMU_ID: &str = "ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515";
const VANILLA_ID: &str = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba";

async fn cli(home: &std::path::Path, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_homelab-cli"))
        .args(args)
        .env_clear()
        .env("HOME", home)
        .env("XDG_CACHE_HOME", home.join("cache"))
        .env("NO_COLOR", "1")
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .await
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

async fn sim(config: FactorySimConfig) -> FactoryHandle {
    FactorySim::start_with(config).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schematic_offline_prints_the_published_id() {
    let home = tempfile::tempdir().unwrap();
    let out = cli(
        home.path(),
        &[
            "image",
            "schematic",
            "--extension",
            "siderolabs/qemu-guest-agent",
            "--offline",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("{QEMU_ID}\n"));
    let out = cli(home.path(), &["image", "schematic", "--offline"]).await;
    assert_eq!(stdout(&out), format!("{VANILLA_ID}\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schematic_flags_are_sorted_and_registered_with_the_factory() {
    let sim = sim(FactorySimConfig::default()).await;
    let home = tempfile::tempdir().unwrap();
    let base = sim.base_url();
    let out = cli(
        home.path(),
        &[
            "image",
            "schematic",
            "--extension",
            "siderolabs/qemu-guest-agent",
            "--extension",
            "siderolabs/iscsi-tools",
            "--extension",
            "siderolabs/qemu-guest-agent",
            "--kernel-arg",
            "net.ifnames=0",
            "--meta",
            "0xa=foo",
            "--factory-url",
            &base,
            "--output",
            "json",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let id = json["id"].as_str().unwrap();
    assert_eq!(json["source"], "factory");
    assert_eq!(json["mismatch"], false);
    assert_eq!(json["offline"]["id"], id);
    let yaml = json["schematic"].as_str().unwrap();
    assert_eq!(
        yaml,
        "customization:\n    extraKernelArgs:\n        - net.ifnames=0\n    meta:\n        - key: 10\n          value: foo\n    systemExtensions:\n        officialExtensions:\n            - siderolabs/iscsi-tools\n            - siderolabs/qemu-guest-agent\n"
    );
    assert_eq!(hex::encode(Sha256::digest(yaml)), id);
    assert!(sim.schematics().keys().any(|k| k.to_string() == id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schematic_file_keeps_its_order() {
    let sim = sim(FactorySimConfig::default()).await;
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("schematic.yaml");
    std::fs::write(
        &file,
        "customization:\n  systemExtensions:\n    officialExtensions:\n      - siderolabs/qemu-guest-agent\n      - siderolabs/iscsi-tools\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let online = cli(
        home.path(),
        &[
            "image",
            "schematic",
            "--file",
            f,
            "--factory-url",
            &sim.base_url(),
        ],
    )
    .await;
    let offline = cli(
        home.path(),
        &["image", "schematic", "--file", f, "--offline"],
    )
    .await;
    assert!(online.status.success(), "{}", stderr(&online));
    assert_eq!(stdout(&online), stdout(&offline));
    let sorted = cli(
        home.path(),
        &[
            "image",
            "schematic",
            "--offline",
            "--extension",
            "siderolabs/qemu-guest-agent",
            "--extension",
            "siderolabs/iscsi-tools",
        ],
    )
    .await;
    assert_ne!(
        stdout(&sorted),
        stdout(&offline),
        "file order changes the ID"
    );

    std::fs::write(&file, "customization:\n  systemExtension: {}\n").unwrap();
    let bad = cli(
        home.path(),
        &["image", "schematic", "--file", f, "--offline"],
    )
    .await;
    assert_eq!(bad.status.code(), Some(1));
    let err = stderr(&bad);
    assert!(
        err.contains("systemExtension") && err.contains("line 2"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_refuses_strings_go_quotes_differently_but_the_factory_answers() {
    let sim = sim(FactorySimConfig::default()).await;
    let home = tempfile::tempdir().unwrap();
    let out = cli(
        home.path(),
        &["image", "schematic", "--kernel-arg", "yes", "--offline"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot be computed offline"),
        "{}",
        stderr(&out)
    );
    let out = cli(
        home.path(),
        &[
            "image",
            "schematic",
            "--kernel-arg",
            "yes",
            "--factory-url",
            &sim.base_url(),
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim().len(), 64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_extensions_get_suggestions() {
    let sim = sim(FactorySimConfig::default()).await;
    let home = tempfile::tempdir().unwrap();
    let out = cli(
        home.path(),
        &[
            "image",
            "schematic",
            "--extension",
            "siderolabs/qemu-guest-agnt",
            "--version",
            "v1.12.0",
            "--factory-url",
            &sim.base_url(),
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    // miette wraps long lines; compare without the wrapping.
    let err: String = stderr(&out)
        .split_whitespace()
        .filter(|w| *w != "│")
        .collect();
    assert!(
        err.contains("didyoumeansiderolabs/qemu-guest-agent?"),
        "{}",
        stderr(&out)
    );
    assert!(
        sim.requests().iter().all(|r| !r.starts_with("POST")),
        "nothing registered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urls_for_the_public_factory() {
    let home = tempfile::tempdir().unwrap();
    let out = cli(
        home.path(),
        &[
            "image",
            "urls",
            "--schematic",
            QEMU_ID,
            "--version",
            "v1.12.0",
            "--platform",
            "nocloud",
            "--factory-url",
            "https://factory.talos.dev",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    insta::assert_snapshot!("image_urls_nocloud", stdout(&out));

    let out = cli(
        home.path(),
        &[
            "image",
            "urls",
            "--offline",
            "--version",
            "v1.9.5",
            "--secureboot",
            "--output",
            "json",
            "--factory-url",
            "https://factory.talos.dev",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["schematic"], VANILLA_ID);
    assert_eq!(
        json["installer"],
        format!("factory.talos.dev/installer-secureboot/{VANILLA_ID}:v1.9.5")
    );
    assert_eq!(
        json["pxe"],
        format!("https://pxe.talos.dev/pxe/{VANILLA_ID}/v1.9.5/metal-amd64-secureboot")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_resumes_verifies_and_caches() {
    let sim = sim(FactorySimConfig {
        redirect_images: true,
        cut_first_download_after: Some(50_000),
        image_size: 200_000,
        ..FactorySimConfig::default()
    })
    .await;
    let home = tempfile::tempdir().unwrap();
    let cache = home.path().join("images");
    let args = [
        "image",
        "download",
        "--extension",
        "siderolabs/qemu-guest-agent",
        "--version",
        "v1.12.0",
        "--platform",
        "nocloud",
        "--asset",
        "nocloud-amd64.raw.xz",
        "--cache-dir",
        cache.to_str().unwrap(),
        "--factory-url",
        &sim.base_url(),
    ];
    let out = cli(home.path(), &args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let line = stdout(&out);
    let (sha, path) = line.trim_end().split_once("  ").unwrap();
    let expected_path = cache
        .join(QEMU_ID)
        .join("v1.12.0")
        .join("nocloud-amd64.raw.xz");
    assert_eq!(std::path::Path::new(path), expected_path);
    let data = std::fs::read(path).unwrap();
    assert_eq!(data.len(), 200_000);
    assert_eq!(sha, hex::encode(Sha256::digest(&data)));
    let cdn_gets = |s: &FactoryHandle| {
        s.requests()
            .iter()
            .filter(|r| r.starts_with("GET /cdn/"))
            .count()
    };
    assert_eq!(
        cdn_gets(&sim),
        2,
        "cut once, resumed once: {:?}",
        sim.requests()
    );

    let mut json_args = args.to_vec();
    json_args.extend(["--output", "json"]);
    let again = cli(home.path(), &json_args).await;
    assert!(again.status.success(), "{}", stderr(&again));
    let json: serde_json::Value = serde_json::from_str(&stdout(&again)).unwrap();
    assert_eq!(json["from_cache"], true);
    assert_eq!(json["sha256"], sha);
    assert_eq!(cdn_gets(&sim), 2, "nothing fetched twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extensions_and_versions() {
    let sim = sim(FactorySimConfig::default()).await;
    let home = tempfile::tempdir().unwrap();
    let base = sim.base_url();
    let out = cli(
        home.path(),
        &[
            "image",
            "extensions",
            "--version",
            "v1.12.0",
            "--factory-url",
            &base,
            "--output",
            "json",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(
        json.as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "siderolabs/qemu-guest-agent")
    );
    let out = cli(
        home.path(),
        &[
            "image",
            "extensions",
            "--version",
            "v1.12.0",
            "--factory-url",
            &base,
        ],
    )
    .await;
    assert!(
        stdout(&out)
            .lines()
            .any(|l| l.starts_with("siderolabs/iscsi-tools "))
    );
    let out = cli(
        home.path(),
        &[
            "image",
            "extensions",
            "--version",
            "v0.0.1",
            "--factory-url",
            &base,
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("404"), "{}", stderr(&out));
    let out = cli(home.path(), &["image", "versions", "--factory-url", &base]).await;
    assert!(stdout(&out).lines().any(|l| l == "v1.12.0"));
}
