//! Waiting for a cluster to come up: polls with a deadline, reporting progress.

use std::future::Future;
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;

use crate::client::{Client, ClientBuilder};
use crate::error::{Error, Result};

/// One progress report of a wait.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WaitEvent {
    /// What is awaited.
    pub what: String,
    /// Attempt number (1-based).
    pub attempt: u32,
    /// Time since the wait began.
    pub elapsed: Duration,
    /// Why the last attempt did not succeed (`None` on success).
    pub last_error: Option<String>,
}

/// Deadline and poll interval of a wait, with an optional progress callback.
#[derive(Clone)]
pub struct WaitOptions<'a> {
    /// Give up after this long.
    pub deadline: Duration,
    /// Pause between attempts.
    pub interval: Duration,
    /// Called after every attempt.
    pub progress: Option<&'a (dyn Fn(&WaitEvent) + Send + Sync)>,
}

impl std::fmt::Debug for WaitOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitOptions")
            .field("deadline", &self.deadline)
            .field("interval", &self.interval)
            .finish()
    }
}

impl<'a> WaitOptions<'a> {
    /// A wait of `deadline`, polling every second.
    pub fn new(deadline: Duration) -> Self {
        WaitOptions {
            deadline,
            interval: Duration::from_secs(1),
            progress: None,
        }
    }
    /// Set the poll interval.
    pub fn interval(mut self, i: Duration) -> Self {
        self.interval = i;
        self
    }
    /// Set the progress callback.
    pub fn progress(mut self, p: &'a (dyn Fn(&WaitEvent) + Send + Sync)) -> Self {
        self.progress = Some(p);
        self
    }
}

/// Retry `attempt` until it succeeds or the deadline passes.
pub async fn wait_for<T, F, Fut>(what: &str, opts: &WaitOptions<'_>, mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let start = Instant::now();
    let mut n = 0u32;
    loop {
        n += 1;
        let remaining = opts.deadline.saturating_sub(start.elapsed());
        let outcome =
            match tokio::time::timeout(remaining.max(Duration::from_millis(1)), attempt()).await {
                Ok(r) => r,
                Err(_) => Err(Error::Timeout {
                    what: what.to_string(),
                    after: start.elapsed(),
                    last: "attempt did not finish".into(),
                }),
            };
        let ev = WaitEvent {
            what: what.to_string(),
            attempt: n,
            elapsed: start.elapsed(),
            last_error: outcome.as_ref().err().map(ToString::to_string),
        };
        if let Some(p) = opts.progress {
            p(&ev);
        }
        match outcome {
            Ok(v) => return Ok(v),
            Err(e) => {
                if start.elapsed() + opts.interval >= opts.deadline {
                    return Err(Error::Timeout {
                        what: what.to_string(),
                        after: start.elapsed(),
                        last: e.to_string(),
                    });
                }
                tracing::debug!(what, attempt = n, error = %e, "not ready yet");
                tokio::time::sleep(opts.interval).await;
            }
        }
    }
}

/// Wait until the node answers `Version` over mTLS (after an install reboot). Returns the
/// connected client.
pub async fn wait_mtls_ready(builder: &ClientBuilder, opts: &WaitOptions<'_>) -> Result<Client> {
    let client = builder.clone().build()?;
    wait_for("Talos API (mTLS)", opts, || {
        let c = client.clone();
        async move { c.version().await.map(|_| ()) }
    })
    .await?;
    Ok(client)
}

/// Wait until etcd runs and is healthy on the node(s) and has at least one member.
pub async fn wait_etcd_healthy(client: &Client, opts: &WaitOptions<'_>) -> Result<()> {
    wait_for("etcd healthy", opts, || {
        let c = client.clone();
        async move {
            let lists = c.service_list().await?;
            for l in &lists {
                let etcd = l.services.iter().find(|s| s.id == "etcd");
                let healthy = etcd
                    .and_then(|s| s.health.as_ref())
                    .map(|h| h.healthy)
                    .unwrap_or(false);
                if !healthy {
                    let state = etcd
                        .map(|s| s.state.clone())
                        .unwrap_or_else(|| "absent".into());
                    return Err(Error::Http {
                        url: c.endpoint().to_string(),
                        message: format!("etcd service is {state}, not healthy"),
                    });
                }
            }
            let members = c.etcd_member_list(false).await?;
            if members.iter().all(|m| m.members.is_empty()) {
                return Err(Error::Http {
                    url: c.endpoint().to_string(),
                    message: "etcd has no members yet".into(),
                });
            }
            Ok(())
        }
    })
    .await
}

/// `GET /readyz` on the Kubernetes API with the kubeconfig's credentials; succeeds on 200.
pub async fn kubernetes_readyz(kubeconfig: &str) -> Result<()> {
    let creds = crate::kubeconfig::credentials(kubeconfig)?;
    let url = format!("{}/readyz", creds.server.trim_end_matches('/'));
    let http = kube_http_client(&creds)?;
    let resp = http.get(&url).send().await.map_err(|e| Error::Http {
        url: url.clone(),
        message: error_chain(&e),
    })?;
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    if status.is_success() {
        Ok(())
    } else {
        Err(Error::Http {
            url,
            message: format!("{status}: {}", body.trim()),
        })
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// A reqwest client trusting only the cluster CA and presenting the kubeconfig's client
/// certificate (rustls with the ring provider).
pub fn kube_http_client(creds: &crate::kubeconfig::KubeCredentials) -> Result<reqwest::Client> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(creds.ca_pem.as_bytes()) {
        let c = c.map_err(|e| Error::Tls(format!("kubeconfig CA: {e}")))?;
        roots
            .add(c)
            .map_err(|e| Error::Tls(format!("kubeconfig CA: {e}")))?;
    }
    let certs = CertificateDer::pem_slice_iter(creds.client_cert_pem.as_bytes())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Tls(format!("kubeconfig client certificate: {e}")))?;
    let key_pem = crate::crypto::relabel_for_rustls(creds.client_key_pem.expose_secret());
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| Error::Tls(format!("kubeconfig client key: {e}")))?;
    let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| Error::Tls(e.to_string()))?
    .with_root_certificates(roots)
    .with_client_auth_cert(certs, key)
    .map_err(|e| Error::Tls(format!("kubeconfig client certificate/key: {e}")))?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(cfg)
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| Error::Tls(format!("HTTP client: {}", error_chain(&e))))
}

/// Whether the Kubernetes node `name` is registered and its `Ready` condition is `True`
/// (`GET /api/v1/nodes/{name}`, the kubelet's `NodeReady` condition). A node that is not
/// registered yet is `Ok(false)`; an API that does not answer is an error.
pub async fn kubernetes_node_ready(kubeconfig: &str, name: &str) -> Result<bool> {
    let creds = crate::kubeconfig::credentials(kubeconfig)?;
    let url = format!("{}/api/v1/nodes/{name}", creds.server.trim_end_matches('/'));
    let http = kube_http_client(&creds)?;
    let resp = http.get(&url).send().await.map_err(|e| Error::Http {
        url: url.clone(),
        message: error_chain(&e),
    })?;
    let status = resp.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        return Ok(false);
    }
    let body = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(Error::Http {
            url,
            message: format!("{status}: {}", body.trim()),
        });
    }
    Ok(node_ready(&body))
}

/// Whether a Node object (JSON) has `status.conditions[type=Ready].status == "True"`.
fn node_ready(body: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("status")?
                .get("conditions")?
                .as_array()?
                .iter()
                .find(|c| c.get("type").and_then(|t| t.as_str()) == Some("Ready"))
                .map(|c| c.get("status").and_then(|s| s.as_str()) == Some("True"))
        })
        .unwrap_or(false)
}

/// Wait until the Kubernetes API answers `/readyz`.
pub async fn wait_kubernetes_ready(kubeconfig: &str, opts: &WaitOptions<'_>) -> Result<()> {
    wait_for("Kubernetes API /readyz", opts, || {
        kubernetes_readyz(kubeconfig)
    })
    .await
}

#[cfg(test)]
mod node_ready_tests {
    use super::node_ready;

    #[test]
    fn ready_condition_decides() {
        let ready = r#"{"kind":"Node","status":{"conditions":[{"type":"MemoryPressure","status":"False"},{"type":"Ready","status":"True"}]}}"#;
        let not_ready =
            r#"{"kind":"Node","status":{"conditions":[{"type":"Ready","status":"False"}]}}"#;
        assert!(node_ready(ready));
        assert!(!node_ready(not_ready));
        assert!(!node_ready(r#"{"kind":"Node","status":{}}"#));
        assert!(!node_ready("not json"));
    }
}
