//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong in `talos-api`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A YAML document could not be parsed.
    #[error("{what}: invalid YAML: {message}")]
    Yaml {
        /// Which document (file name or description).
        what: String,
        /// Parser message including line and column.
        message: String,
    },
    /// A secrets bundle is missing a field or has a malformed one.
    #[error("secrets bundle: {0}")]
    InvalidSecrets(String),
    /// A machine configuration is invalid.
    #[error("machine config: {0}")]
    InvalidConfig(String),
    /// A config patch could not be applied.
    #[error("config patch {patch}: {message}")]
    Patch {
        /// Which patch (file name or index).
        patch: String,
        /// What failed.
        message: String,
    },
    /// A talosconfig is invalid or lacks what is needed.
    #[error("talosconfig: {0}")]
    Talosconfig(String),
    /// Key or certificate generation or parsing failed.
    #[error("crypto: {0}")]
    Crypto(String),
    /// TLS setup failed (bad certificate, key or fingerprint).
    #[error("tls: {0}")]
    Tls(String),
    /// Connecting to the node failed.
    #[error("connecting to {endpoint}: {message}")]
    Connect {
        /// The endpoint dialled.
        endpoint: String,
        /// What failed.
        message: String,
    },
    /// The gRPC call failed; the status code and server message are kept as sent.
    #[error("{method}: {code:?}: {message}")]
    Grpc {
        /// The gRPC method path.
        method: String,
        /// The gRPC status code.
        code: tonic::Code,
        /// The server's message.
        message: String,
    },
    /// Nodes of a (possibly proxied) reply reported errors in their `metadata.error`.
    #[error("{method}: {}", display_node_errors(errors))]
    Node {
        /// The gRPC method path.
        method: String,
        /// Each failed node with its error text.
        errors: Vec<NodeError>,
    },
    /// A kubeconfig could not be extracted or parsed.
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),
    /// An HTTP request (Kubernetes API health) failed.
    #[error("{url}: {message}")]
    Http {
        /// The URL requested.
        url: String,
        /// What failed.
        message: String,
    },
    /// A Kubernetes version change `talosctl upgrade-k8s` does not make (version skew, a
    /// minor downgrade, a version the Talos release does not run).
    #[error("{0}")]
    UnsupportedUpgrade(String),
    /// The Kubernetes API refused a request (its `Status` message kept as sent).
    #[error("{url}: {code}: {message}")]
    Kubernetes {
        /// The URL requested.
        url: String,
        /// HTTP status code.
        code: u16,
        /// The `Status` message (and its causes).
        message: String,
    },
    /// A drain did not finish before its deadline: the pods still on the node and why.
    #[error("draining {node} did not finish within {after:?}: {}", blocked.join("; "))]
    DrainTimeout {
        /// The Kubernetes node.
        node: String,
        /// How long we tried.
        after: std::time::Duration,
        /// `namespace/pod: reason` for each pod still there.
        blocked: Vec<String>,
    },
    /// Writing a streamed reply (an etcd snapshot) to its destination failed.
    #[error("writing {what}: {source}")]
    Write {
        /// What was being written.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A streamed reply ended in a way that makes its data unusable (e.g. an empty etcd
    /// snapshot).
    #[error("{method}: {message}")]
    Stream {
        /// The gRPC method path.
        method: String,
        /// What was wrong.
        message: String,
    },
    /// A wait did not succeed before its deadline.
    #[error("timed out after {after:?} waiting for {what}; last error: {last}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long we waited.
        after: std::time::Duration,
        /// The last error seen.
        last: String,
    },
}

impl Error {
    /// The gRPC status code, when this is a gRPC error.
    pub fn grpc_code(&self) -> Option<tonic::Code> {
        match self {
            Error::Grpc { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The call was refused because its target exists already (gRPC `AlreadyExists`, e.g.
    /// `Bootstrap` on a node whose etcd data directory is not empty: machined's
    /// `Bootstrap` in siderolabs/talos `internal/app/machined/internal/server/v1alpha1/v1alpha1_server.go`).
    pub fn is_already_exists(&self) -> bool {
        self.grpc_code() == Some(tonic::Code::AlreadyExists)
    }

    /// A Kubernetes version change that is not supported (see [`crate::k8s_upgrade`]).
    pub fn is_unsupported_upgrade(&self) -> bool {
        matches!(self, Error::UnsupportedUpgrade(_))
    }

    /// The target does not exist (gRPC `NotFound`, e.g. `EtcdRemoveMemberByID` of an ID that
    /// is no member: `etcdserver: member not found`; or HTTP 404 from Kubernetes).
    pub fn is_not_found(&self) -> bool {
        self.grpc_code() == Some(tonic::Code::NotFound)
            || matches!(self, Error::Kubernetes { code: 404, .. })
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn grpc(method: &str, status: tonic::Status) -> Self {
        Error::Grpc {
            method: method.to_string(),
            code: status.code(),
            message: status.message().to_string(),
        }
    }
}

/// One node's error from `messages[i].metadata.error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeError {
    /// `metadata.hostname` (the proxied node), or the endpoint when the reply came directly.
    pub node: String,
    /// The error text.
    pub message: String,
}

fn display_node_errors(errors: &[NodeError]) -> String {
    errors
        .iter()
        .map(|e| format!("node {}: {}", e.node, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
