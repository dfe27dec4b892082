//! The HTTP client: builder, authentication, retries and the raw request escape hatch.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use tracing::Instrument;

use crate::error::{Error, Result};
use crate::request::{ApiRequest, Method, ParamValue};
use crate::tls::{Fingerprint, RejectedCert, TlsVerification};

/// Environment variable: API URL, e.g. `https://pve.lan:8006/` (bpg provider name).
pub const ENV_ENDPOINT: &str = "PROXMOX_VE_ENDPOINT";
/// Environment variable: API token `user@realm!tokenid=secret` (bpg provider name).
pub const ENV_API_TOKEN: &str = "PROXMOX_VE_API_TOKEN";
/// Environment variable: user for ticket login, e.g. `root@pam` (bpg provider name).
pub const ENV_USERNAME: &str = "PROXMOX_VE_USERNAME";
/// Environment variable: password for ticket login (bpg provider name).
pub const ENV_PASSWORD: &str = "PROXMOX_VE_PASSWORD";
/// Environment variable: SHA-256 fingerprint(s) to pin, colon-hex, several separated by `,`.
pub const ENV_FINGERPRINT: &str = "PROXMOX_VE_FINGERPRINT";
/// Environment variable: path of a PEM CA file to trust (in addition to the system roots).
pub const ENV_CA_FILE: &str = "PROXMOX_VE_CA_FILE";
/// Environment variable: `true`/`1` disables certificate verification (bpg provider name).
pub const ENV_INSECURE: &str = "PROXMOX_VE_INSECURE";

/// Renew a ticket once it is this old (lifetime is 2 h; proxmoxer also renews after 1 h).
pub const DEFAULT_TICKET_RENEWAL: Duration = Duration::from_secs(3600);

/// How failed requests are retried. Only requests PVE rejected before changing anything are
/// retried: lock timeouts, `got no worker upid`, and 5xx/transport errors on GET.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Total attempts including the first (1 = no retries).
    pub max_attempts: u32,
    /// Delay before the first retry; doubles each time.
    pub base_delay: Duration,
    /// Upper bound for one delay.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        // Six attempts: a read that meets a reset or dropped answer one time in ten fails
        // all six one time in a million, so a run of a few hundred reads on a flaky link
        // goes through (at four, about one run in three failed somewhere).
        RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
        }
    }
}

impl RetryPolicy {
    /// No retries.
    pub fn none() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 1,
            ..Default::default()
        }
    }

    /// The delay before retry number `retry` (0-based), with jitter in `[d/2, d]` so
    /// parallel clients do not retry in lockstep.
    pub fn delay(&self, retry: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(retry.min(16)));
        let d = exp.min(self.max_delay);
        let half = d / 2;
        let jitter = rand::random::<f64>();
        half + half.mul_f64(jitter)
    }
}

/// Credentials.
#[derive(Clone)]
pub enum Credentials {
    /// No credentials (only `/version` and `/access/ticket` work without).
    None,
    /// API token: `user@realm!tokenid` and the secret UUID.
    Token {
        /// `user@realm!tokenid`.
        token_id: String,
        /// The secret.
        secret: SecretString,
    },
    /// Ticket login with user name (`root@pam`) and password.
    Password {
        /// `user@realm`.
        username: String,
        /// The password.
        password: SecretString,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::Token { token_id, .. } => {
                write!(f, "Token {{ token_id: {token_id:?}, secret: [redacted] }}")
            }
            Credentials::Password { username, .. } => {
                write!(
                    f,
                    "Password {{ username: {username:?}, password: [redacted] }}"
                )
            }
        }
    }
}

impl Credentials {
    /// Parses `user@realm!tokenid=secret` (the form PVE shows and bpg reads). The secret is
    /// what follows the last `=`.
    pub fn parse_token(s: &str) -> Result<Credentials> {
        let s = s.trim();
        let s = s.strip_prefix("PVEAPIToken=").unwrap_or(s);
        let (id, secret) = s.rsplit_once('=').ok_or_else(|| {
            Error::Config("API token must look like user@realm!tokenid=secret".into())
        })?;
        let (user, tok) = id
            .split_once('!')
            .ok_or_else(|| Error::Config(format!("API token id '{id}' has no '!tokenid' part")))?;
        if !user.contains('@') || tok.is_empty() || secret.is_empty() {
            return Err(Error::Config(format!(
                "API token '{id}=...' must look like user@realm!tokenid=secret"
            )));
        }
        Ok(Credentials::Token {
            token_id: id.to_string(),
            secret: SecretString::from(secret.to_string()),
        })
    }
}

/// Builds a [`Client`].
///
/// ```no_run
/// # async fn demo() -> proxmox_client::Result<()> {
/// let client = proxmox_client::Client::builder()
///     .base_url("https://pve.lan:8006")
///     .api_token("root@pam!homelab", "0b6c1f9e-0000-4000-8000-000000000000")
///     .pin_fingerprint("AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89")
///     .build()?;
/// let version = client.version().await?;
/// println!("PVE {}", version.version);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    base_url: Option<String>,
    credentials: Credentials,
    token_error: Option<String>,
    pins: Vec<String>,
    ca_pem: Option<Vec<u8>>,
    ca_file: Option<PathBuf>,
    insecure: bool,
    timeout: Duration,
    connect_timeout: Duration,
    user_agent: String,
    retry: RetryPolicy,
    ticket_renewal: Duration,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            base_url: None,
            credentials: Credentials::None,
            token_error: None,
            pins: Vec::new(),
            ca_pem: None,
            ca_file: None,
            insecure: false,
            timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            user_agent: concat!("homelab-proxmox-client/", env!("CARGO_PKG_VERSION")).into(),
            retry: RetryPolicy::default(),
            ticket_renewal: DEFAULT_TICKET_RENEWAL,
        }
    }
}

impl ClientBuilder {
    /// API URL: `https://host:8006`, with or without `/api2/json`.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }

    /// API token auth (`user@realm!tokenid` and the secret).
    pub fn api_token(mut self, token_id: impl Into<String>, secret: impl Into<String>) -> Self {
        self.credentials = Credentials::Token {
            token_id: token_id.into(),
            secret: SecretString::from(secret.into()),
        };
        self
    }

    /// API token auth from `user@realm!tokenid=secret`; a malformed value fails `build()`.
    pub fn api_token_string(mut self, token: &str) -> Self {
        match Credentials::parse_token(token) {
            Ok(c) => {
                self.credentials = c;
                self.token_error = None;
            }
            Err(e) => self.token_error = Some(e.to_string()),
        }
        self
    }

    /// Ticket (password) auth: logs in on first use, renews before the 2 h expiry, sends the
    /// `CSRFPreventionToken` on writes.
    pub fn password(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.credentials = Credentials::Password {
            username: username.into(),
            password: SecretString::from(password.into()),
        };
        self
    }

    /// Explicit credentials.
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = credentials;
        self
    }

    /// Trust a certificate by its SHA-256 fingerprint (colon-hex, any case; may be called
    /// several times). Disables chain and hostname checks; handshake signatures are still
    /// verified. A malformed fingerprint fails `build()`.
    pub fn pin_fingerprint(mut self, fingerprint: impl Into<String>) -> Self {
        self.pins.push(fingerprint.into());
        self
    }

    /// Trust the CA certificates in this PEM file, in addition to the system roots.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// Trust these PEM CA certificates, in addition to the system roots.
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_pem = Some(pem.into());
        self
    }

    /// Disable certificate verification. Logs a warning on build; prefer
    /// [`pin_fingerprint`](Self::pin_fingerprint).
    pub fn danger_insecure(mut self, insecure: bool) -> Self {
        self.insecure = insecure;
        self
    }

    /// Whole-request timeout (default 60 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Connect timeout (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// User agent.
    pub fn user_agent(mut self, ua: impl Into<String>) -> Self {
        self.user_agent = ua.into();
        self
    }

    /// Renew the login ticket once it is this old (default 1 h; PVE tickets expire after
    /// 2 h). Values above 1 h 55 min are capped so a ticket is never used past its expiry.
    pub fn ticket_renewal(mut self, after: Duration) -> Self {
        self.ticket_renewal = after.min(Duration::from_secs(2 * 3600 - 300));
        self
    }

    /// Retry policy (default: 4 attempts, 0.5 s doubling, jitter).
    pub fn retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Reads the settings from the environment (see the `ENV_*` constants):
    /// `PROXMOX_VE_ENDPOINT`, `PROXMOX_VE_API_TOKEN` or `PROXMOX_VE_USERNAME` +
    /// `PROXMOX_VE_PASSWORD`, `PROXMOX_VE_FINGERPRINT`, `PROXMOX_VE_CA_FILE`,
    /// `PROXMOX_VE_INSECURE`.
    pub fn from_env() -> Self {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Like [`from_env`](Self::from_env) with a custom variable lookup (pure; for tests and
    /// for callers that keep settings elsewhere).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let get = |k: &str| lookup(k).filter(|v| !v.trim().is_empty());
        let mut b = ClientBuilder::default();
        if let Some(url) = get(ENV_ENDPOINT) {
            b = b.base_url(url);
        }
        if let Some(tok) = get(ENV_API_TOKEN) {
            b = b.api_token_string(&tok);
        } else if let (Some(u), Some(p)) = (get(ENV_USERNAME), get(ENV_PASSWORD)) {
            b = b.password(u, p);
        }
        if let Some(fps) = get(ENV_FINGERPRINT) {
            for fp in fps.split([',', ' ']).filter(|s| !s.is_empty()) {
                b = b.pin_fingerprint(fp);
            }
        }
        if let Some(ca) = get(ENV_CA_FILE) {
            b = b.ca_file(ca);
        }
        if let Some(v) = get(ENV_INSECURE) {
            b = b.danger_insecure(matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            ));
        }
        b
    }

    fn verification(&self) -> Result<TlsVerification> {
        if self.insecure {
            return Ok(TlsVerification::Insecure);
        }
        if !self.pins.is_empty() {
            let pins = self
                .pins
                .iter()
                .map(|p| p.parse::<Fingerprint>())
                .collect::<Result<Vec<_>>>()?;
            return Ok(TlsVerification::Pinned(pins));
        }
        let mut pem = self.ca_pem.clone().unwrap_or_default();
        if let Some(path) = &self.ca_file {
            let data = std::fs::read(path).map_err(|e| Error::Io {
                context: format!("cannot read CA file {}", path.display()),
                source: e,
            })?;
            pem.extend_from_slice(b"\n");
            pem.extend_from_slice(&data);
        }
        if pem.is_empty() {
            Ok(TlsVerification::SystemRoots)
        } else {
            Ok(TlsVerification::CustomCa {
                pem,
                with_system: true,
            })
        }
    }

    /// Builds the client. Fails on a missing or malformed base URL, token, fingerprint or
    /// CA file.
    pub fn build(self) -> Result<Client> {
        if let Some(e) = &self.token_error {
            return Err(Error::Config(e.clone()));
        }
        let raw = self
            .base_url
            .clone()
            .ok_or_else(|| Error::Config(format!("no base URL (set it, or {ENV_ENDPOINT})")))?;
        let base = normalize_base_url(&raw)?;
        let host = base.host_str().unwrap_or_default().to_string();
        let rejected = RejectedCert::default();
        let http = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.connect_timeout)
            .user_agent(self.user_agent.clone())
            .http1_only();
        // Always hand reqwest our ring-based config: with `rustls-no-provider` it would
        // otherwise look for a process-wide provider (and panic without one), even for http.
        let verification = self.verification()?;
        let tls = crate::tls::client_config(&verification, rejected.clone())?;
        let http = http.tls_backend_preconfigured(tls);
        let http = http
            .build()
            .map_err(|e| Error::Config(format!("cannot build HTTP client: {e}")))?;
        let auth = match self.credentials {
            Credentials::None => AuthState::None,
            Credentials::Token { token_id, secret } => {
                let value = format!("PVEAPIToken={token_id}={}", secret.expose_secret());
                let mut header = reqwest::header::HeaderValue::from_str(&value).map_err(|_| {
                    Error::Config("API token contains characters not allowed in a header".into())
                })?;
                header.set_sensitive(true);
                AuthState::Token(header)
            }
            Credentials::Password { username, password } => {
                AuthState::Ticket(Arc::new(TicketAuth {
                    username,
                    password,
                    renew_after: self.ticket_renewal,
                    current: tokio::sync::Mutex::new(None),
                }))
            }
        };
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base,
                host,
                auth,
                retry: self.retry,
                rejected,
                calls: std::sync::atomic::AtomicU64::new(0),
                connect_timeout: self.connect_timeout,
            }),
        })
    }
}

/// `https://h:8006`, `https://h:8006/`, `https://h:8006/api2/json/` -> `https://h:8006/api2/json`.
pub fn normalize_base_url(raw: &str) -> Result<url::Url> {
    let mut url = url::Url::parse(raw.trim())
        .map_err(|e| Error::Config(format!("invalid base URL '{raw}': {e}")))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(Error::Config(format!(
            "base URL '{raw}' must be https:// (or http:// for tests)"
        )));
    }
    if url.host_str().is_none() {
        return Err(Error::Config(format!("base URL '{raw}' has no host")));
    }
    let path = url.path().trim_end_matches('/').to_string();
    let path = if path.ends_with("/api2/json") {
        path
    } else {
        format!("{path}/api2/json")
    };
    url.set_path(&path);
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

struct Ticket {
    ticket: SecretString,
    csrf: SecretString,
    obtained: Instant,
}

struct TicketAuth {
    username: String,
    password: SecretString,
    renew_after: Duration,
    current: tokio::sync::Mutex<Option<Ticket>>,
}

enum AuthState {
    None,
    Token(reqwest::header::HeaderValue),
    Ticket(Arc<TicketAuth>),
}

struct Inner {
    http: reqwest::Client,
    base: url::Url,
    host: String,
    auth: AuthState,
    retry: RetryPolicy,
    rejected: RejectedCert,
    calls: std::sync::atomic::AtomicU64,
    connect_timeout: Duration,
}

/// A cloneable Proxmox VE API client (cheap to clone; clones share connections and the
/// login ticket).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.inner.base.as_str())
            .finish_non_exhaustive()
    }
}

#[derive(serde::Deserialize)]
struct Envelope<T> {
    data: T,
}

#[derive(serde::Deserialize)]
struct TicketResponse {
    ticket: String,
    #[serde(rename = "CSRFPreventionToken")]
    csrf: String,
}

/// Raw answer of one HTTP exchange.
struct RawResponse {
    status: u16,
    body: Bytes,
}

impl Client {
    /// A builder.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// A client configured from the environment (see [`ClientBuilder::from_env`]).
    pub fn from_env() -> Result<Client> {
        ClientBuilder::from_env().build()
    }

    /// The API base URL (ending in `/api2/json`).
    pub fn base_url(&self) -> &url::Url {
        &self.inner.base
    }

    /// How many HTTP requests this client (and its clones) sent, including logins and retries.
    pub fn request_count(&self) -> u64 {
        self.inner.calls.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// GET any path below `/api2/json`, decoding `data` into `T` (use
    /// `serde_json::Value` for untyped access).
    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        params: &[(&str, ParamValue)],
    ) -> Result<T> {
        self.execute(&raw_request(Method::Get, path, params)).await
    }

    /// POST any path (form-encoded parameters).
    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        params: &[(&str, ParamValue)],
    ) -> Result<T> {
        self.execute(&raw_request(Method::Post, path, params)).await
    }

    /// PUT any path (form-encoded parameters).
    pub async fn put<T: DeserializeOwned>(
        &self,
        path: &str,
        params: &[(&str, ParamValue)],
    ) -> Result<T> {
        self.execute(&raw_request(Method::Put, path, params)).await
    }

    /// DELETE any path (parameters in the query string).
    pub async fn delete<T: DeserializeOwned>(
        &self,
        path: &str,
        params: &[(&str, ParamValue)],
    ) -> Result<T> {
        self.execute(&raw_request(Method::Delete, path, params))
            .await
    }

    /// Sends a prepared request (see [`crate::requests`]) and decodes `data` into `T`.
    pub async fn execute<T: DeserializeOwned>(&self, req: &ApiRequest) -> Result<T> {
        let span = tracing::debug_span!("pve_request", method = %req.method, path = %req.path);
        async {
            let raw = self.execute_with_retries(req).await?;
            decode_envelope(&req.path, raw.status, &raw.body)
        }
        .instrument(span)
        .await
    }

    async fn execute_with_retries(&self, req: &ApiRequest) -> Result<RawResponse> {
        let policy = &self.inner.retry;
        let mut attempt: u32 = 0;
        let mut relogged = false;
        // Tasks this request may have started begin at or after this (clocks within a few
        // seconds of each other, as NTP keeps a cluster and its clients).
        let sent_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .saturating_sub(5);
        loop {
            let result = self.send_once(req).await;
            let err = match result {
                Ok(r) => return Ok(r),
                Err(e) => e,
            };
            // No answer within the connect timeout: the endpoint is blackholed (host down,
            // firewall drop); retrying only multiplies the wait.
            if is_connect_timeout(&err) {
                return Err(Error::Transport {
                    url: self.inner.base.to_string(),
                    message: format!(
                        "no answer from {} within the {}s connect timeout: the host is down, a firewall drops the traffic, or the address is wrong",
                        self.inner.host,
                        self.inner.connect_timeout.as_secs()
                    ),
                    source: None,
                });
            }
            // A write whose connection closed without an answer: find out whether it ran.
            if req.method != Method::Get
                && matches!(err, Error::Transport { .. })
                && !is_connect_error(&err)
                && attempt + 1 < policy.max_attempts
            {
                if let Some(task) = crate::recovery::expected_task(req) {
                    match self.find_started_task(&task, sent_at).await {
                        Ok(Some(upid)) => {
                            tracing::warn!(error = %err, %upid, path = %req.path, "the answer was lost; the request had started its task");
                            let body = serde_json::to_vec(&serde_json::json!({ "data": upid }))
                                .map_err(|e| Error::Config(e.to_string()))?;
                            return Ok(RawResponse {
                                status: 200,
                                body: Bytes::from(body),
                            });
                        }
                        Ok(None) => {
                            attempt += 1;
                            let delay = policy.delay(attempt - 1);
                            tracing::warn!(error = %err, attempt, path = %req.path, "no answer and no task started: sending the request again");
                            tokio::time::sleep(delay).await;
                            continue;
                        }
                        Err(_) => return Err(err),
                    }
                }
                if let Some(path) = crate::recovery::created_object(req) {
                    let read = ApiRequest::new(Method::Get, &[]);
                    let read = ApiRequest { path, ..read };
                    match Box::pin(self.execute_with_retries(&read)).await {
                        Ok(_) => {
                            tracing::warn!(error = %err, path = %req.path, "the answer was lost; the object exists: the create had run");
                            return Ok(RawResponse {
                                status: 200,
                                body: Bytes::from_static(b"{\"data\":null}"),
                            });
                        }
                        Err(e) if crate::recovery::absent(&e) => {
                            attempt += 1;
                            tracing::warn!(error = %err, attempt, path = %req.path, "no answer and nothing created: sending the request again");
                            tokio::time::sleep(policy.delay(attempt - 1)).await;
                            continue;
                        }
                        Err(_) => return Err(err),
                    }
                }
                if crate::recovery::idempotent_write(req) {
                    attempt += 1;
                    let delay = policy.delay(attempt - 1);
                    tracing::warn!(error = %err, attempt, path = %req.path, "no answer to a configuration write: setting the same values again");
                    tokio::time::sleep(delay).await;
                    continue;
                }
            }
            // An expired or revoked ticket: log in again once.
            if matches!(err, Error::Auth { .. })
                && !relogged
                && let AuthState::Ticket(t) = &self.inner.auth
                && req.path != "/access/ticket"
            {
                relogged = true;
                *t.current.lock().await = None;
                continue;
            }
            // A connection that was refused never carried the request: safe for any method.
            let retry = err.is_retryable()
                || (req.method == Method::Get && transient_read(&err))
                || is_connect_error(&err);
            attempt += 1;
            if !retry || attempt >= policy.max_attempts {
                return Err(err);
            }
            let delay = policy.delay(attempt - 1);
            tracing::warn!(error = %err, attempt, ?delay, "retrying Proxmox VE request");
            tokio::time::sleep(delay).await;
        }
    }

    /// The newest task of `task`'s type and id on its node started since `since` (running or
    /// finished), if any: what a write whose answer was lost had started.
    async fn find_started_task(
        &self,
        task: &crate::recovery::ExpectedTask,
        since: u64,
    ) -> Result<Option<String>> {
        let mut req = ApiRequest::new(Method::Get, &["nodes", &task.node, "tasks"]);
        req.params = vec![
            ("source".into(), ParamValue::Str("all".into())),
            ("typefilter".into(), ParamValue::Str(task.ty.clone())),
            (
                "since".into(),
                ParamValue::Int(i64::try_from(since).unwrap_or(0)),
            ),
            ("limit".into(), ParamValue::Int(50)),
        ];
        if task.id.bytes().all(|b| b.is_ascii_digit()) && !task.id.is_empty() {
            req.params
                .push(("vmid".into(), ParamValue::Str(task.id.clone())));
        }
        let raw = Box::pin(self.execute_with_retries(&req)).await?;
        let rows: Vec<crate::recovery::TaskRow> =
            decode_envelope(&req.path, raw.status, &raw.body)?;
        let rows: Vec<crate::recovery::TaskRow> = rows
            .into_iter()
            .filter(|r| r.upid.split(':').nth(6).is_some_and(|id| id == task.id))
            .collect();
        Ok(crate::recovery::newest_since(&rows, since).map(str::to_string))
    }

    /// Current auth headers, logging in or renewing the ticket if needed.
    async fn auth_headers(
        &self,
        write: bool,
    ) -> Result<Vec<(&'static str, reqwest::header::HeaderValue)>> {
        match &self.inner.auth {
            AuthState::None => Ok(vec![]),
            AuthState::Token(h) => Ok(vec![("authorization", h.clone())]),
            AuthState::Ticket(t) => {
                let mut guard = t.current.lock().await;
                let needs_login = match guard.as_ref() {
                    None => true,
                    Some(tk) => tk.obtained.elapsed() >= t.renew_after,
                };
                if needs_login {
                    let renew_with = guard.as_ref().map(|tk| tk.ticket.clone());
                    let fresh = match renew_with {
                        // Renewal: the current (still valid) ticket is the password.
                        Some(old) => match self.login(&t.username, &old).await {
                            Ok(tk) => tk,
                            Err(_) => self.login(&t.username, &t.password).await?,
                        },
                        None => self.login(&t.username, &t.password).await?,
                    };
                    *guard = Some(fresh);
                }
                let tk = guard
                    .as_ref()
                    .ok_or_else(|| Error::Config("no ticket after login".into()))?;
                let mut out = Vec::new();
                let mut cookie = reqwest::header::HeaderValue::from_str(&format!(
                    "PVEAuthCookie={}",
                    crate::request::percent_encode(tk.ticket.expose_secret())
                ))
                .map_err(|_| Error::Config("ticket is not a valid header value".into()))?;
                cookie.set_sensitive(true);
                out.push(("cookie", cookie));
                if write {
                    let mut csrf = reqwest::header::HeaderValue::from_str(tk.csrf.expose_secret())
                        .map_err(|_| {
                            Error::Config("CSRF token is not a valid header value".into())
                        })?;
                    csrf.set_sensitive(true);
                    out.push(("csrfpreventiontoken", csrf));
                }
                Ok(out)
            }
        }
    }

    async fn login(&self, username: &str, password: &SecretString) -> Result<Ticket> {
        let req = ApiRequest::new(Method::Post, &["access", "ticket"])
            .param("username", username)
            .param("password", password);
        let raw = self.send_http(&req, vec![]).await?;
        let t: TicketResponse = decode_envelope(&req.path, raw.status, &raw.body)?;
        tracing::debug!(user = username, "obtained Proxmox VE ticket");
        Ok(Ticket {
            ticket: SecretString::from(t.ticket),
            csrf: SecretString::from(t.csrf),
            obtained: Instant::now(),
        })
    }

    /// Logs in now (ticket auth only; a no-op for tokens). Useful to fail fast on bad
    /// credentials.
    pub async fn login_now(&self) -> Result<()> {
        self.auth_headers(false).await.map(|_| ())
    }

    async fn send_once(&self, req: &ApiRequest) -> Result<RawResponse> {
        let headers = self.auth_headers(req.method != Method::Get).await?;
        self.send_http(req, headers).await
    }

    fn url_for(&self, path: &str) -> String {
        let base = self.inner.base.as_str().trim_end_matches('/');
        format!("{base}{path}")
    }

    async fn send_http(
        &self,
        req: &ApiRequest,
        headers: Vec<(&'static str, reqwest::header::HeaderValue)>,
    ) -> Result<RawResponse> {
        let mut url = self.url_for(&req.path);
        let encoded = req.encoded_params();
        let method = match req.method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Delete => reqwest::Method::DELETE,
        };
        if !req.method.has_body() && !encoded.is_empty() {
            url.push('?');
            url.push_str(&encoded);
        }
        let mut rb = self.inner.http.request(method, &url);
        for (k, v) in headers {
            rb = rb.header(k, v);
        }
        if req.method.has_body() {
            rb = rb
                .header("content-type", "application/x-www-form-urlencoded")
                .body(encoded);
        }
        self.inner
            .calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let resp = rb.send().await.map_err(|e| self.transport_error(&url, e))?;
        read_response(resp, &url, self).await
    }

    pub(crate) fn transport_error(&self, url: &str, e: reqwest::Error) -> Error {
        if let Some(fingerprint) = self.inner.rejected.take() {
            return Error::UntrustedCertificate {
                host: self.inner.host.clone(),
                fingerprint,
            };
        }
        let mut message = e.to_string();
        let mut src: Option<&dyn std::error::Error> = std::error::Error::source(&e);
        while let Some(s) = src {
            message.push_str(": ");
            message.push_str(&s.to_string());
            src = s.source();
        }
        Error::Transport {
            url: strip_query(url),
            message,
            source: Some(e),
        }
    }

    /// Sends a streaming body (uploads). No retries: the body is consumed.
    pub(crate) async fn send_streaming(
        &self,
        path: &str,
        content_type: String,
        length: u64,
        body: reqwest::Body,
    ) -> Result<Bytes> {
        let headers = self.auth_headers(true).await?;
        let url = self.url_for(path);
        let mut rb = self
            .inner
            .http
            .post(&url)
            .header("content-type", content_type)
            .header("content-length", length.to_string())
            .body(body);
        for (k, v) in headers {
            rb = rb.header(k, v);
        }
        self.inner
            .calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let resp = rb.send().await.map_err(|e| self.transport_error(&url, e))?;
        let raw = read_response(resp, &url, self).await?;
        Ok(raw.body)
    }
}

fn strip_query(url: &str) -> String {
    url.split('?').next().unwrap_or(url).to_string()
}

async fn read_response(resp: reqwest::Response, url: &str, client: &Client) -> Result<RawResponse> {
    let status = resp.status().as_u16();
    let reason = resp
        .extensions()
        .get::<hyper_client_ext::ext::ReasonPhrase>()
        .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned())
        .or_else(|| resp.status().canonical_reason().map(str::to_string))
        .unwrap_or_default();
    let body = resp
        .bytes()
        .await
        .map_err(|e| client.transport_error(url, e))?;
    if (200..300).contains(&status) {
        Ok(RawResponse { status, body })
    } else {
        let err = Error::from_response(status, &reason, &body);
        tracing::debug!(status, error = %err, "Proxmox VE API error");
        Err(err)
    }
}

/// 500 answers Proxmox gives for a state of things, not a passing failure: asking again
/// right away gets the same answer (qemu-server's Agent.pm, guest status checks). "QEMU
/// guest agent is not running" is not one of them: a booting guest's agent starts soon.
const STATE_ANSWERS: &[&str] = &["No QEMU guest agent configured", "does not exist"];

/// 5xx (except the proxy's node-unreachable codes and answers that describe a state) and
/// transport errors: safe to retry for reads only.
pub(crate) fn transient_read(err: &Error) -> bool {
    if is_connect_timeout(err) {
        return false;
    }
    match err {
        Error::Transport { .. } => true,
        Error::NodeUnreachable { .. } => false,
        e => {
            matches!(e.status(), Some(s) if (500..600).contains(&s))
                && !matches!(e, Error::NotFound { .. } | Error::AlreadyExists { .. })
                && !STATE_ANSWERS.iter().any(|m| e.to_string().contains(m))
        }
    }
}

fn raw_request(method: Method, path: &str, params: &[(&str, ParamValue)]) -> ApiRequest {
    let mut r = ApiRequest::raw(method, path);
    for (k, v) in params {
        r.params.push(((*k).to_string(), v.clone()));
    }
    r
}

/// Decodes `{"data": T}` (pure).
pub fn decode_envelope<T: DeserializeOwned>(path: &str, status: u16, body: &[u8]) -> Result<T> {
    serde_json::from_slice::<Envelope<T>>(body)
        .map(|e| e.data)
        .map_err(|e| Error::Decode {
            path: path.to_string(),
            status,
            message: format!(
                "{e}; body starts with: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ),
        })
}

/// Whether the connection itself failed (the request was never sent).
fn is_connect_error(err: &Error) -> bool {
    matches!(err, Error::Transport { source: Some(e), .. } if e.is_connect())
}

/// Whether the connection attempt timed out (nothing answered at all).
fn is_connect_timeout(err: &Error) -> bool {
    match err {
        Error::Transport {
            source: Some(e),
            message,
            ..
        } => e.is_connect() && (e.is_timeout() || message.contains("timed out")),
        _ => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn base_url_normalisation() {
        for (i, want) in [
            ("https://pve:8006", "https://pve:8006/api2/json"),
            ("https://pve:8006/", "https://pve:8006/api2/json"),
            ("https://pve:8006/api2/json/", "https://pve:8006/api2/json"),
            (
                "https://pve:8006/proxy/",
                "https://pve:8006/proxy/api2/json",
            ),
        ] {
            assert_eq!(normalize_base_url(i).unwrap().as_str(), want);
        }
        assert!(normalize_base_url("ftp://x").is_err());
        assert!(normalize_base_url("not a url").is_err());
    }

    #[test]
    fn token_parsing() {
        match Credentials::parse_token("root@pam!homelab=abc-def").unwrap() {
            Credentials::Token { token_id, secret } => {
                assert_eq!(token_id, "root@pam!homelab");
                assert_eq!(secret.expose_secret(), "abc-def");
            }
            other => panic!("{other:?}"),
        }
        assert!(Credentials::parse_token("root@pam=abc").is_err());
        assert!(Credentials::parse_token("root!x").is_err());
        let dbg = format!("{:?}", Credentials::parse_token("a@b!c=SECRET").unwrap());
        assert!(!dbg.contains("SECRET"));
    }

    #[test]
    fn env_lookup() {
        let env = |k: &str| match k {
            ENV_ENDPOINT => Some("https://10.0.0.2:8006/".to_string()),
            ENV_API_TOKEN => Some("root@pam!t=s3cret".to_string()),
            ENV_FINGERPRINT => Some("ab:cd".to_string()),
            _ => None,
        };
        // A malformed pin fails at build time with a clear message.
        let err = ClientBuilder::from_lookup(env).build().unwrap_err();
        assert!(
            err.to_string().contains("not a SHA-256 fingerprint"),
            "{err}"
        );
        let b = ClientBuilder::from_lookup(|k| match k {
            ENV_ENDPOINT => Some("https://10.0.0.2:8006/".to_string()),
            ENV_USERNAME => Some("root@pam".to_string()),
            ENV_PASSWORD => Some("pw".to_string()),
            ENV_INSECURE => Some("true".to_string()),
            _ => None,
        });
        assert!(matches!(b.credentials, Credentials::Password { .. }));
        assert!(b.insecure);
        let c = b.build().unwrap();
        assert_eq!(c.base_url().as_str(), "https://10.0.0.2:8006/api2/json");
        let none = ClientBuilder::from_lookup(|_| None).build().unwrap_err();
        assert!(none.to_string().contains(ENV_ENDPOINT));
    }

    #[test]
    fn state_answers_are_not_retried() {
        let agent = Error::from_response(500, "No QEMU guest agent configured", b"{\"data\":null}");
        assert!(!transient_read(&agent), "{agent}");
        let booting = Error::from_response(500, "QEMU guest agent is not running", b"{}");
        assert!(transient_read(&booting), "{booting}");
        let busy = Error::from_response(500, "got timeout", b"{\"data\":null}");
        assert!(transient_read(&busy), "{busy}");
    }

    #[test]
    fn retry_delay_is_bounded_with_jitter() {
        let p = RetryPolicy::default();
        for i in 0..20 {
            let d = p.delay(i);
            assert!(d <= p.max_delay);
            assert!(d >= p.base_delay.min(p.max_delay) / 2);
        }
    }

    #[test]
    fn envelope_decoding() {
        let v: u32 = decode_envelope("/x", 200, br#"{"data":5}"#).unwrap();
        assert_eq!(v, 5);
        decode_envelope::<()>("/x", 200, br#"{"data":null}"#).unwrap();
        let e = decode_envelope::<u32>("/x", 200, b"<html>").unwrap_err();
        assert!(matches!(e, Error::Decode { .. }));
    }
}
