//! TLS for PVE nodes: system roots, a custom CA, SHA-256 fingerprint pinning, or (opt-in)
//! no verification. rustls with the ring provider only.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// A SHA-256 certificate fingerprint, shown colon-separated upper-case hex as PVE prints it
/// (`pvenode cert info`, `GET /nodes` `ssl_fingerprint`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER-encoded certificate.
    pub fn of_der(der: &[u8]) -> Fingerprint {
        Fingerprint(Sha256::digest(der).into())
    }

    fn ct_eq(&self, other: &Fingerprint) -> bool {
        // Constant time, so a pin is not leaked by timing.
        self.0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl FromStr for Fingerprint {
    type Err = Error;

    /// Accepts 64 hex digits, with or without colons, any case.
    fn from_str(s: &str) -> Result<Fingerprint> {
        let compact: String = s.trim().chars().filter(|c| *c != ':').collect();
        let bad = || {
            Error::invalid(
                "fingerprint",
                format!(
                    "'{s}' is not a SHA-256 fingerprint (expected 32 colon-separated hex pairs, \
                     like AB:CD:...)"
                ),
            )
        };
        if compact.len() != 64 {
            return Err(bad());
        }
        let bytes = hex::decode(&compact).map_err(|_| bad())?;
        let mut out = [0u8; 32];
        out.copy_from_slice(&bytes);
        Ok(Fingerprint(out))
    }
}

/// How the server certificate is verified.
#[derive(Debug, Clone, Default)]
pub enum TlsVerification {
    /// The operating system's trust store (plus any extra CA added).
    #[default]
    SystemRoots,
    /// Trust exactly these PEM CA certificates (plus the system roots if `with_system` is set).
    CustomCa {
        /// PEM-encoded CA certificates.
        pem: Vec<u8>,
        /// Also trust the system roots.
        with_system: bool,
    },
    /// Trust a leaf certificate whose SHA-256 fingerprint is one of these; no chain or
    /// hostname check (a PVE node's self-signed certificate does not chain to anything).
    Pinned(Vec<Fingerprint>),
    /// No verification at all. Explicit opt-in; logs a warning.
    Insecure,
}

/// Remembers the fingerprint of the last certificate we refused, so the error the caller
/// sees can print it (reqwest only passes a string down).
#[derive(Debug, Default, Clone)]
pub(crate) struct RejectedCert(Arc<Mutex<Option<Fingerprint>>>);

impl RejectedCert {
    fn set(&self, fp: Fingerprint) {
        if let Ok(mut g) = self.0.lock() {
            *g = Some(fp);
        }
    }
    pub(crate) fn take(&self) -> Option<Fingerprint> {
        self.0.lock().ok().and_then(|mut g| g.take())
    }
}

#[derive(Debug)]
struct Verifier {
    mode: Mode,
    algs: WebPkiSupportedAlgorithms,
    rejected: RejectedCert,
}

#[derive(Debug)]
enum Mode {
    Pinned(Vec<Fingerprint>),
    WebPki(Arc<dyn ServerCertVerifier>),
    Insecure,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let fp = Fingerprint::of_der(end_entity.as_ref());
        match &self.mode {
            Mode::Insecure => Ok(ServerCertVerified::assertion()),
            Mode::Pinned(pins) => {
                if pins.iter().any(|p| p.ct_eq(&fp)) {
                    Ok(ServerCertVerified::assertion())
                } else {
                    self.rejected.set(fp);
                    Err(rustls::Error::General(format!(
                        "certificate fingerprint {fp} does not match the pinned fingerprint"
                    )))
                }
            }
            Mode::WebPki(inner) => inner
                .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
                .inspect_err(|_| self.rejected.set(fp)),
        }
    }

    // Handshake signatures are verified in every mode, so a pinned certificate still
    // proves the server holds its key.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

fn load_system_roots(store: &mut RootCertStore) {
    let result = rustls_native_certs::load_native_certs();
    for e in &result.errors {
        tracing::debug!("skipping unreadable system certificate: {e}");
    }
    let (added, ignored) = store.add_parsable_certificates(result.certs);
    tracing::debug!(added, ignored, "loaded system trust roots");
}

fn parse_pem_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>> {
    let mut reader = std::io::BufReader::new(pem);
    let certs: std::result::Result<Vec<_>, _> = rustls_pemfile::certs(&mut reader).collect();
    let certs = certs.map_err(|e| Error::Config(format!("cannot parse CA PEM: {e}")))?;
    if certs.is_empty() {
        return Err(Error::Config(
            "the CA file contains no PEM certificate".to_string(),
        ));
    }
    Ok(certs)
}

/// Builds the rustls client configuration (ring provider, HTTP/1.1 only because PVE's error
/// text lives in the HTTP/1 reason phrase).
pub(crate) fn client_config(
    verification: &TlsVerification,
    rejected: RejectedCert,
) -> Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let algs = provider.signature_verification_algorithms;
    let mode = match verification {
        TlsVerification::Insecure => {
            tracing::warn!(
                "TLS certificate verification is DISABLED for the Proxmox VE API (insecure); \
                 pin the node's fingerprint instead"
            );
            Mode::Insecure
        }
        TlsVerification::Pinned(pins) => {
            if pins.is_empty() {
                return Err(Error::Config("no fingerprint to pin".into()));
            }
            Mode::Pinned(pins.clone())
        }
        TlsVerification::SystemRoots | TlsVerification::CustomCa { .. } => {
            let mut store = RootCertStore::empty();
            match verification {
                TlsVerification::CustomCa { pem, with_system } => {
                    if *with_system {
                        load_system_roots(&mut store);
                    }
                    for cert in parse_pem_certs(pem)? {
                        store
                            .add(cert)
                            .map_err(|e| Error::Config(format!("bad CA certificate: {e}")))?;
                    }
                }
                _ => load_system_roots(&mut store),
            }
            let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(store),
                provider.clone(),
            )
            .build()
            .map_err(|e| Error::Config(format!("cannot build certificate verifier: {e}")))?;
            Mode::WebPki(inner)
        }
    };
    let verifier = Verifier {
        mode,
        algs,
        rejected,
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("TLS setup failed: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_roundtrip_and_forms() {
        let s = "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89";
        let fp: Fingerprint = s.parse().unwrap();
        assert_eq!(fp.to_string(), s);
        let lower: Fingerprint = s.to_lowercase().parse().unwrap();
        assert_eq!(lower, fp);
        let compact: Fingerprint = s.replace(':', "").parse().unwrap();
        assert_eq!(compact, fp);
        assert!("AB:CD".parse::<Fingerprint>().is_err());
        assert!(s.replace('A', "G").parse::<Fingerprint>().is_err());
    }

    #[test]
    fn fingerprint_of_der_is_sha256() {
        let fp = Fingerprint::of_der(b"abc");
        assert_eq!(
            fp.to_string(),
            "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD"
        );
    }

    #[test]
    fn empty_pin_list_and_bad_ca_are_config_errors() {
        assert!(client_config(&TlsVerification::Pinned(vec![]), RejectedCert::default()).is_err());
        let bad = TlsVerification::CustomCa {
            pem: b"not a pem".to_vec(),
            with_system: false,
        };
        assert!(client_config(&bad, RejectedCert::default()).is_err());
    }
}
