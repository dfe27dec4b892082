//! A third-party client drives the simulator: proxmoxer (PyPI), through create,
//! configure, start, stop and destroy (`homelab-sim/tests/clients/proxmoxer_flow.py`).
//! TLS is verified by proxmoxer/requests against the lab's certificate as the only CA,
//! and the script checks the certificate's fingerprint against the pin first.
//!
//! Needs `python3` with `proxmoxer` and `requests` (`.ci/run` installs them). Missing,
//! the test says so loudly and passes on a developer machine, and fails when `CI` is set.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use homelab_sim::lab::Lab;

fn proxmoxer_available() -> Result<(), String> {
    let out = Command::new("python3")
        .args(["-c", "import proxmoxer, requests"])
        .output()
        .map_err(|e| format!("python3 not runnable: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

#[tokio::test]
async fn drives_the_simulator() {
    if let Err(why) = proxmoxer_available() {
        let msg = format!(
            "proxmoxer is not installed ({why}); run `python3 -m pip install proxmoxer requests`"
        );
        if std::env::var_os("CI").is_some() {
            panic!("{msg}");
        }
        eprintln!("SKIPPED proxmoxer::drives_the_simulator: {msg}");
        return;
    }
    let lab = Lab::builder()
        .task_duration(Duration::from_millis(20))
        .agent_delay(Duration::from_millis(50))
        .stats_interval(Duration::from_secs(3600))
        .start()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("lab-ca.pem");
    std::fs::write(&ca, lab.cert_pem()).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/proxmoxer_flow.py");
    let mut cmd = Command::new("python3");
    cmd.arg(&script)
        .env("PVE_URL", lab.pve_url())
        .env("PVE_TOKEN_ID", lab.token_id())
        .env("PVE_TOKEN_SECRET", lab.token_secret())
        .env("PVE_CA_FILE", &ca)
        .env("PVE_FINGERPRINT", lab.fingerprint())
        // requests must not pick up a proxy or another CA bundle from the environment.
        .env_remove("REQUESTS_CA_BUNDLE")
        .env_remove("CURL_CA_BUNDLE")
        .env("NO_PROXY", "*");
    // The lab is served by this test's runtime: run the client off it.
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    for step in [
        "created VM",
        "configured",
        "started",
        "stopped",
        "destroyed",
        "proxmoxer flow ok",
    ] {
        assert!(stdout.contains(step), "{step} missing:\n{stdout}");
    }
    let requests = lab.requests();
    // Only the deliberately bad `memory=lots` was refused by the schema.
    assert_eq!(requests.schema_rejected, 1, "{requests:?}");
    assert!(requests.mutating >= 6, "{requests:?}");
}
