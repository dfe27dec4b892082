//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong in `talos-factory`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A schematic document is malformed (bad YAML, unknown field, wrong type).
    #[error("invalid schematic{}: {message}", location(*.line, *.column))]
    Parse {
        /// 1-based line, when known.
        line: Option<usize>,
        /// 1-based column, when known.
        column: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// A value (ID, version, asset name, platform...) is not acceptable.
    #[error("invalid {what} {value:?}: expected {expected}")]
    Invalid {
        /// What kind of value.
        what: &'static str,
        /// The value given.
        value: String,
        /// What is accepted.
        expected: &'static str,
    },
    /// The factory answered with an error status. `message` is its plain-text body.
    #[error("{method} {url}: HTTP {status}: {message}")]
    Api {
        /// HTTP method.
        method: String,
        /// Request URL.
        url: String,
        /// HTTP status code.
        status: u16,
        /// The response body (trimmed).
        message: String,
    },
    /// The request could not be sent or the response not read.
    #[error("{method} {url}: {source}")]
    Http {
        /// HTTP method.
        method: String,
        /// Request URL.
        url: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// A response body did not have the expected shape.
    #[error("{url}: unexpected response: {message}")]
    Decode {
        /// Request URL.
        url: String,
        /// What was wrong.
        message: String,
    },
    /// A download ended before its announced length, even after retries.
    #[error(
        "{url}: download incomplete after {attempts} attempts ({received} of {expected} bytes)"
    )]
    Incomplete {
        /// Request URL.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// Bytes received in total.
        received: u64,
        /// Bytes announced.
        expected: u64,
    },
    /// A downloaded file does not have the expected SHA-256.
    #[error("{path}: SHA-256 {actual} does not match the expected {expected}")]
    Checksum {
        /// The file.
        path: PathBuf,
        /// Expected hex digest.
        expected: String,
        /// Actual hex digest.
        actual: String,
    },
    /// A local file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP client could not be configured (TLS roots, certificates).
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

fn location(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(" at line {l} column {c}"),
        (Some(l), None) => format!(" at line {l}"),
        _ => String::new(),
    }
}

impl Error {
    pub(crate) fn parse(e: &serde_yaml_ng::Error) -> Error {
        let loc = e.location();
        let mut message = e.to_string();
        // serde_yaml_ng appends "at line X column Y"; the location is reported separately.
        if let Some(idx) = message.find(" at line ") {
            message.truncate(idx);
        }
        Error::Parse {
            line: loc.as_ref().map(|l| l.line()),
            column: loc.as_ref().map(|l| l.column()),
            message,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// The HTTP status, for [`Error::Api`].
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}
