//! The crate's error type.

use std::net::SocketAddr;

/// Everything that can go wrong while configuring or running the boot server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server configuration is inconsistent (what is wrong, in words).
    #[error("invalid netboot configuration: {0}")]
    InvalidConfig(String),
    /// A MAC address could not be parsed.
    #[error("invalid MAC address `{0}` (expected six hex pairs such as 52:54:00:12:34:56)")]
    InvalidMac(String),
    /// A socket could not be bound.
    #[error("cannot listen for {service} on {addr}: {source}{hint}")]
    Bind {
        /// DHCP, TFTP or HTTP.
        service: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
        /// A hint (privileges) or empty.
        hint: &'static str,
    },
    /// A socket option the server needs could not be set.
    #[error("cannot bind the DHCP socket to interface `{interface}`: {source}{hint}")]
    BindDevice {
        /// The interface.
        interface: String,
        /// Why.
        source: std::io::Error,
        /// A hint (privileges) or empty.
        hint: &'static str,
    },
    /// Any other I/O failure.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
}

impl Error {
    /// True when the failure is a lack of privileges (ports below 1024, binding to a device).
    pub fn is_permission_denied(&self) -> bool {
        match self {
            Error::Bind { source, .. } | Error::BindDevice { source, .. } => {
                source.kind() == std::io::ErrorKind::PermissionDenied
            }
            _ => false,
        }
    }

    /// True for configuration mistakes (as opposed to runtime failures).
    pub fn is_invalid_config(&self) -> bool {
        matches!(self, Error::InvalidConfig(_) | Error::InvalidMac(_))
    }

    pub(crate) fn bind(service: &'static str, addr: SocketAddr, source: std::io::Error) -> Error {
        let hint = if source.kind() == std::io::ErrorKind::PermissionDenied {
            " (ports below 1024 need root or CAP_NET_BIND_SERVICE; choose other ports for tests)"
        } else {
            ""
        };
        Error::Bind {
            service,
            addr,
            source,
            hint,
        }
    }

    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}
