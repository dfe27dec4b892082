//! Bounded waits that talk: each says what it waits for and until when, reports progress
//! while it lasts, and gives up early when it cannot succeed (the VM is not running; the
//! node's certificate is not from our CA).

use std::time::{Duration, Instant};

use proxmox_client::Client;
use talos_api::health::{WaitEvent, WaitOptions};

use super::graph::StepError;

/// How often a long wait reports that it is still waiting.
pub const REPORT_EVERY: Duration = Duration::from_secs(15);

/// How long the node must keep presenting a certificate our CA did not sign before the wait
/// gives up (a node briefly still in maintenance mode is not a mismatch).
pub const CERT_MISMATCH_GRACE: Duration = Duration::from_secs(30);

/// Say what is awaited and its deadline.
pub fn announce(what: &str, deadline: Duration) {
    eprintln!(
        "  waiting for {what} (up to {}s, until {})",
        deadline.as_secs(),
        clock_after(deadline)
    );
}

/// Wall-clock time (UTC, `HH:MM:SS`) `d` from now.
fn clock_after(d: Duration) -> String {
    let t = std::time::SystemTime::now() + d;
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let s = secs % 86_400;
    format!("{:02}:{:02}:{:02} UTC", s / 3600, (s / 60) % 60, s % 60)
}

/// Progress callback for [`WaitOptions::progress`]: a line about every [`REPORT_EVERY`].
pub fn report(ev: &WaitEvent) {
    let Some(err) = &ev.last_error else {
        return;
    };
    let every = REPORT_EVERY.as_secs().max(1);
    let now = ev.elapsed.as_secs();
    // One line per period: the attempt that crosses its start.
    if now / every != now.saturating_sub(2) / every && now >= every {
        eprintln!(
            "  still waiting for {} ({}s so far, attempt {}): {err}",
            ev.what, now, ev.attempt
        );
    }
}

/// Poll the VM's status; returns (an error) once it is confirmed not running, which makes a
/// wait for something inside it pointless. Never returns while the VM runs.
pub async fn vm_stops(pve: &Client, node: &str, vmid: u32, interval: Duration) -> StepError {
    let vm = pve.node(node).qemu(vmid);
    let mut stopped_seen = 0;
    loop {
        tokio::time::sleep(interval).await;
        match vm.status().await {
            Ok(s) if s.status != "running" => {
                stopped_seen += 1;
                if stopped_seen >= 2 {
                    return StepError::new(format!(
                        "VM {vmid} is {} on {node}: what runs inside it cannot answer",
                        s.status
                    ))
                    .hint("start it (`homelab-cli up` plans the start) or look at its console in Proxmox; the task log of its last start says why it stopped");
                }
            }
            _ => stopped_seen = 0,
        }
    }
}

/// Whether a Talos error means the node's certificate was not issued by our CA (a secrets
/// bundle that does not match the running cluster).
pub fn is_cert_mismatch(e: &str) -> bool {
    e.contains("BadSignature")
}

/// Wait for the node's Talos API over mTLS, giving up early when its certificate keeps
/// failing our CA's signature check.
pub async fn mtls_ready(
    builder: &talos_api::client::ClientBuilder,
    opts: &WaitOptions<'_>,
    node: &str,
) -> Result<talos_api::client::Client, StepError> {
    let client = builder
        .clone()
        .build()
        .map_err(|e| StepError::new(format!("Talos client: {e}")))?;
    let mismatch_since: std::sync::Mutex<Option<Instant>> = std::sync::Mutex::new(None);
    let outcome = talos_api::health::wait_for("the Talos API (mTLS)", opts, || {
        let c = client.clone();
        let since = &mismatch_since;
        async move {
            match c.version().await {
                Ok(_) => Ok(Ok(())),
                Err(e) if is_cert_mismatch(&e.to_string()) => {
                    let mut s = since
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    let first = *s.get_or_insert_with(Instant::now);
                    if first.elapsed() >= CERT_MISMATCH_GRACE {
                        // Stop waiting: it will not change by itself.
                        Ok(Err(e.to_string()))
                    } else {
                        Err(e)
                    }
                }
                Err(e) => {
                    *since
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
                    Err(e)
                }
            }
        }
    })
    .await;
    match outcome {
        Ok(Ok(())) => Ok(client),
        Ok(Err(e)) => Err(StepError::new(format!(
            "{node} presents a certificate our Talos CA did not sign ({e}): the secrets bundle does not belong to this cluster"
        ))
        .hint("restore the cluster's talos-secrets file (git history, backup); to start over, `homelab-cli down` and `up`")),
        Err(e) => Err(StepError::new(format!("{node}: {e}"))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn certificate_mismatch_is_recognised() {
        assert!(is_cert_mismatch(
            "transport error: invalid peer certificate: BadSignature"
        ));
        assert!(!is_cert_mismatch("connection refused"));
    }

    #[test]
    fn clock_is_formatted() {
        let c = clock_after(Duration::from_secs(0));
        assert_eq!(c.len(), "00:00:00 UTC".len(), "{c}");
    }
}
