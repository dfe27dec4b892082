//! The one error type of this crate, and the pure classification of PVE error responses.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::tls::Fingerprint;

/// Everything that can go wrong talking to Proxmox VE.
///
/// API errors keep the HTTP status and the server's message. PVE puts its message in the
/// HTTP reason phrase (first line only) and, since libpve-http-server-perl 5.2, also in a
/// `message` field of the JSON body; the body field wins when present.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// 400: parameter verification failed; `errors` maps parameter names to PVE's messages.
    #[error("{}", fmt_validation(.message, .errors))]
    Validation {
        /// HTTP status (400).
        status: u16,
        /// The server's message, e.g. `Parameter verification failed.`.
        message: String,
        /// Per-parameter messages, e.g. `vmid` -> `VM 100 already exists`.
        errors: BTreeMap<String, String>,
    },
    /// 401: missing or wrong credentials, expired ticket or token, bad CSRF token.
    #[error("authentication failed ({status}): {message}")]
    Auth {
        /// HTTP status (401).
        status: u16,
        /// The server's message, e.g. `authentication failure`.
        message: String,
    },
    /// 403: the user or token lacks a privilege.
    #[error("permission denied ({status}): {message}")]
    Permission {
        /// HTTP status (403).
        status: u16,
        /// The server's message, e.g. `Permission check failed (/vms/100, VM.Allocate)`.
        message: String,
    },
    /// The guest, storage volume, task or path does not exist.
    #[error("not found ({status}): {message}")]
    NotFound {
        /// HTTP status (500 for missing guests, 501 for unknown paths, 404).
        status: u16,
        /// The server's message.
        message: String,
    },
    /// The object to create exists already.
    #[error("already exists ({status}): {message}")]
    AlreadyExists {
        /// HTTP status.
        status: u16,
        /// The server's message, e.g. `unable to create VM 100 - VM 100 already exists on node 'pve'`.
        message: String,
    },
    /// The guest or storage is locked (lock property set, or a lock file timed out).
    /// Lock timeouts are retried by the client before this is returned.
    #[error("locked ({status}): {message}")]
    Locked {
        /// HTTP status (500).
        status: u16,
        /// The server's message, e.g. `VM is locked (clone)`.
        message: String,
    },
    /// The node the request was proxied to is unreachable (HTTP 595-599).
    #[error("node unreachable ({status}): {message}")]
    NodeUnreachable {
        /// HTTP status (595 connection error, 596 TLS error, ...).
        status: u16,
        /// The reason, e.g. `No route to host`.
        message: String,
    },
    /// Any other API error response.
    #[error("{}", fmt_api(*.status, .message, .errors))]
    Api {
        /// HTTP status.
        status: u16,
        /// The server's message.
        message: String,
        /// Per-parameter messages, if the server sent any.
        errors: BTreeMap<String, String>,
    },
    /// A task finished with an error; `exitstatus` is the task's error text.
    #[error("task {upid} failed: {exitstatus}")]
    TaskFailed {
        /// The task's UPID.
        upid: String,
        /// The exit status, i.e. the text after `TASK ERROR: ` in the log.
        exitstatus: String,
    },
    /// A task was still running when the wait deadline passed.
    #[error("task {upid} still running after {waited:?}")]
    TaskTimeout {
        /// The task's UPID.
        upid: String,
        /// How long we waited.
        waited: Duration,
    },
    /// The server's certificate is not trusted.
    #[error(
        "the certificate of {host} is not trusted; its SHA-256 fingerprint is {fingerprint}. \
         If that matches the node's certificate (`pvenode cert info` on the node, or the \
         web UI: System > Certificates), pin it with `ClientBuilder::pin_fingerprint` or \
         PROXMOX_VE_FINGERPRINT={fingerprint}"
    )]
    UntrustedCertificate {
        /// The host we connected to.
        host: String,
        /// The SHA-256 fingerprint of the certificate the server presented.
        fingerprint: Fingerprint,
    },
    /// Connection, TLS or protocol failure below the API.
    #[error("transport error talking to {url}: {message}")]
    Transport {
        /// The URL of the request.
        url: String,
        /// What went wrong, with its causes.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<reqwest::Error>,
    },
    /// The response could not be decoded into the expected type.
    #[error("cannot decode response of {path} (HTTP {status}): {message}")]
    Decode {
        /// The API path.
        path: String,
        /// HTTP status of the response.
        status: u16,
        /// What did not match.
        message: String,
    },
    /// Bad client configuration (base URL, fingerprint, CA file, environment).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A value could not be parsed or encoded (property string, UPID, tag, ...).
    #[error("invalid {what}: {message}")]
    Invalid {
        /// What was being parsed, e.g. `net0` or `UPID`.
        what: String,
        /// What is wrong with it.
        message: String,
    },
    /// Local I/O failed (reading a file to upload, a CA file).
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

fn fmt_validation(message: &str, errors: &BTreeMap<String, String>) -> String {
    let mut s = format!("validation failed (400): {message}");
    for (k, v) in errors {
        s.push_str(&format!("\n  {k}: {v}"));
    }
    s
}

fn fmt_api(status: u16, message: &str, errors: &BTreeMap<String, String>) -> String {
    let mut s = format!("API error ({status}): {message}");
    for (k, v) in errors {
        s.push_str(&format!("\n  {k}: {v}"));
    }
    s
}

/// Convenience alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Classifies a PVE error response (pure: status line, reason phrase, body bytes).
    ///
    /// ```
    /// use proxmox_client::Error;
    /// let e = Error::from_response(500, "can't lock file '/var/lock/qemu-server/lock-101.conf' - got timeout", b"");
    /// assert!(matches!(e, Error::Locked { .. }));
    /// assert!(e.is_retryable());
    /// ```
    pub fn from_response(status: u16, reason: &str, body: &[u8]) -> Error {
        let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
        let body_message = parsed
            .as_ref()
            .and_then(|v| v.get("message"))
            .and_then(|m| m.as_str())
            .map(|m| m.trim_end_matches('\n').to_string())
            .filter(|m| !m.is_empty());
        let message = body_message.unwrap_or_else(|| reason.trim().to_string());
        let mut errors = BTreeMap::new();
        if let Some(obj) = parsed
            .as_ref()
            .and_then(|v| v.get("errors"))
            .and_then(|e| e.as_object())
        {
            for (k, v) in obj {
                let text = match v {
                    serde_json::Value::String(s) => s.trim_end_matches('\n').to_string(),
                    other => other.to_string(),
                };
                errors.insert(k.clone(), text);
            }
        }
        classify(status, message, errors)
    }

    /// The HTTP status, for API errors.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Validation { status, .. }
            | Error::Auth { status, .. }
            | Error::Permission { status, .. }
            | Error::NotFound { status, .. }
            | Error::AlreadyExists { status, .. }
            | Error::Locked { status, .. }
            | Error::NodeUnreachable { status, .. }
            | Error::Api { status, .. }
            | Error::Decode { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The server's message, for API errors.
    pub fn server_message(&self) -> Option<&str> {
        match self {
            Error::Validation { message, .. }
            | Error::Auth { message, .. }
            | Error::Permission { message, .. }
            | Error::NotFound { message, .. }
            | Error::AlreadyExists { message, .. }
            | Error::Locked { message, .. }
            | Error::NodeUnreachable { message, .. }
            | Error::Api { message, .. } => Some(message),
            _ => None,
        }
    }

    /// Whether retrying the same request is safe and may succeed: lock timeouts and
    /// `got no worker upid` (both fail before anything changed).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Locked { message, .. } => is_lock_timeout(message),
            Error::Api { message, .. } => message.contains("got no worker upid"),
            _ => false,
        }
    }

    pub(crate) fn invalid(what: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Invalid {
            what: what.into(),
            message: message.into(),
        }
    }
}

/// Lock-file timeouts (`can't lock file '...' - got timeout`,
/// `cfs-lock 'storage-x' error: got lock request timeout`).
fn is_lock_timeout(message: &str) -> bool {
    message.contains("got timeout") || message.contains("got lock request timeout")
}

fn classify(status: u16, message: String, errors: BTreeMap<String, String>) -> Error {
    let lower = message.to_ascii_lowercase();
    match status {
        // Handlers also raise semantic errors as parameter errors (nextid: `VM 190 already
        // exists`); the per-parameter map is the useful part, so keep them as validation.
        400 => Error::Validation {
            status,
            message,
            errors,
        },
        401 => Error::Auth { status, message },
        403 => Error::Permission { status, message },
        404 => Error::NotFound { status, message },
        501 if lower.contains("not implemented") => Error::NotFound { status, message },
        595..=599 => Error::NodeUnreachable { status, message },
        _ => {
            if is_lock_timeout(&message)
                || lower.contains("is locked (")
                || lower.starts_with("vm is locked")
                || lower.starts_with("ct is locked")
            {
                Error::Locked { status, message }
            } else if lower.contains("already exists") {
                Error::AlreadyExists { status, message }
            } else if lower.contains("does not exist") || lower.contains("no such ") {
                Error::NotFound { status, message }
            } else {
                Error::Api {
                    status,
                    message,
                    errors,
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn validation_keeps_errors_map() {
        let body = br#"{"data":null,"message":"Parameter verification failed.\n","errors":{"vmid":"value must have a minimum value of 100\n"}}"#;
        let e = Error::from_response(400, "Parameter verification failed.", body);
        match &e {
            Error::Validation {
                status,
                message,
                errors,
            } => {
                assert_eq!(*status, 400);
                assert_eq!(message, "Parameter verification failed.");
                assert_eq!(errors["vmid"], "value must have a minimum value of 100");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            e.to_string()
                .contains("vmid: value must have a minimum value of 100")
        );
    }

    #[test]
    fn reason_phrase_used_when_body_has_no_message() {
        let e = Error::from_response(500, "VM 100 not running", br#"{"data":null}"#);
        assert_eq!(e.server_message(), Some("VM 100 not running"));
        assert!(matches!(e, Error::Api { status: 500, .. }));
    }

    #[test]
    fn classification_table() {
        let cases: &[(u16, &str, &str)] = &[
            (401, "authentication failure", "Auth"),
            (401, "No ticket", "Auth"),
            (
                403,
                "Permission check failed (/vms/100, VM.Allocate)",
                "Permission",
            ),
            (
                500,
                "Configuration file 'nodes/pve/qemu-server/100.conf' does not exist",
                "NotFound",
            ),
            (501, "Method 'GET /foo' not implemented", "NotFound"),
            (
                500,
                "unable to create VM 100 - VM 100 already exists on node 'pve'",
                "AlreadyExists",
            ),
            (500, "CT 101 already exists on node 'pve'", "AlreadyExists"),
            (500, "VM is locked (clone)", "Locked"),
            (500, "CT is locked (create)", "Locked"),
            (
                500,
                "can't lock file '/var/lock/qemu-server/lock-101.conf' - got timeout",
                "Locked",
            ),
            (
                500,
                "cfs-lock 'storage-local' error: got lock request timeout",
                "Locked",
            ),
            (595, "No route to host", "NodeUnreachable"),
            (596, "tls error", "NodeUnreachable"),
            (500, "got no worker upid - start worker failed", "Api"),
            (500, "QEMU guest agent is not running", "Api"),
        ];
        for (status, msg, want) in cases {
            let e = Error::from_response(*status, msg, b"");
            let got = format!("{e:?}");
            assert!(got.starts_with(want), "{status} {msg}: got {got}");
            assert_eq!(e.status(), Some(*status));
            assert_eq!(e.server_message(), Some(*msg));
        }
    }

    #[test]
    fn retryable_only_for_lock_timeouts_and_worker_start() {
        assert!(Error::from_response(500, "can't lock file 'x' - got timeout", b"").is_retryable());
        assert!(
            Error::from_response(500, "got no worker upid - start worker failed", b"")
                .is_retryable()
        );
        assert!(!Error::from_response(500, "VM is locked (backup)", b"").is_retryable());
        assert!(!Error::from_response(400, "Parameter verification failed.", b"").is_retryable());
        assert!(!Error::from_response(500, "VM 100 not running", b"").is_retryable());
    }
}
