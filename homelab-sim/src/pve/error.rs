//! API errors as Proxmox VE reports them: status, message (first line = reason phrase) and
//! the optional per-parameter `errors` map.

use std::collections::BTreeMap;

/// An error answer of the simulated API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status (400, 401, 403, 500, 501, 595...).
    pub status: u16,
    /// The full message, normally ending in `\n` as PVE's `die "...\n"` does.
    pub message: String,
    /// Per-parameter errors (400 validation errors).
    pub errors: Option<BTreeMap<String, String>>,
    /// Whether the body stays empty (proxy errors such as 595 carry none).
    pub empty_body: bool,
}

impl ApiError {
    /// 400 `Parameter verification failed.` with the given per-parameter errors.
    pub fn params(errors: BTreeMap<String, String>) -> Self {
        ApiError {
            status: 400,
            message: "Parameter verification failed.\n".into(),
            errors: Some(errors),
            empty_body: false,
        }
    }

    /// 400 with one parameter error, as handlers raise with `raise_param_exc`.
    pub fn param(name: &str, msg: impl Into<String>) -> Self {
        Self::params(BTreeMap::from([(name.to_string(), msg.into())]))
    }

    /// A handler's `die "<msg>\n"`: 500.
    pub fn fail(msg: impl Into<String>) -> Self {
        Self::status(500, msg)
    }

    /// Any status with a message (a newline is appended when missing).
    pub fn status(status: u16, msg: impl Into<String>) -> Self {
        let mut message = msg.into();
        if !message.ends_with('\n') {
            message.push('\n');
        }
        ApiError {
            status,
            message,
            errors: None,
            empty_body: false,
        }
    }

    /// 403 `Permission check failed (<path>, <privs>)`.
    pub fn perm(path: &str, privs: &str) -> Self {
        Self::status(403, format!("Permission check failed ({path}, {privs})"))
    }

    /// 501 for an unknown path or method.
    pub fn not_implemented(method: &str, path: &str) -> Self {
        Self::status(501, format!("Method '{method} {path}' not implemented"))
    }

    /// A proxy error (the node named in the URL is unreachable): status 595, empty body.
    pub fn unreachable(reason: &str) -> Self {
        ApiError {
            status: 595,
            message: reason.to_string(),
            errors: None,
            empty_body: true,
        }
    }

    /// The HTTP reason phrase: the first line of the message.
    pub fn reason(&self) -> &str {
        self.message.lines().next().unwrap_or("")
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.reason())
    }
}

impl std::error::Error for ApiError {}

/// The result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reason_is_the_first_line() {
        let e = ApiError::fail("can't lock file 'x' - got timeout\nmore");
        assert_eq!(e.reason(), "can't lock file 'x' - got timeout");
        assert_eq!(e.status, 500);
        assert!(ApiError::fail("x").message.ends_with('\n'));
    }
}
