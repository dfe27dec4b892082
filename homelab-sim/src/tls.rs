//! The simulated lab's self-signed certificate, served the way a fresh Proxmox VE node
//! serves its own: clients trust it by pinning its SHA-256 fingerprint.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};

use crate::Error;

/// A certificate and its private key.
#[derive(Clone)]
pub struct TlsIdentity {
    cert_der: Vec<u8>,
    key_der: Vec<u8>,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl TlsIdentity {
    /// A new self-signed certificate for `localhost`, `127.0.0.1` and the given names.
    pub fn generate(names: &[String]) -> Result<Self, Error> {
        let mut sans = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        sans.extend(names.iter().cloned());
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| Error::Tls(format!("cannot generate a key: {e}")))?;
        let mut params = rcgen::CertificateParams::new(sans)
            .map_err(|e| Error::Tls(format!("bad certificate names: {e}")))?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(
            rcgen::DnType::OrganizationName,
            "PVE Cluster Node (homelab-sim)",
        );
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "pve.homelab-sim");
        let cert = params
            .self_signed(&key)
            .map_err(|e| Error::Tls(format!("cannot self-sign: {e}")))?;
        Ok(TlsIdentity {
            cert_der: cert.der().to_vec(),
            key_der: key.serialize_der(),
        })
    }

    /// Load `pve-ssl.der`/`pve-ssl.key.der` from `dir`, or create and save them, so a
    /// restarted lab keeps its fingerprint (and clients their pins).
    pub fn load_or_generate(dir: &Path, names: &[String]) -> Result<Self, Error> {
        let cert_path = dir.join("pve-ssl.der");
        let key_path = dir.join("pve-ssl.key.der");
        if let (Ok(cert_der), Ok(key_der)) = (std::fs::read(&cert_path), std::fs::read(&key_path)) {
            return Ok(TlsIdentity { cert_der, key_der });
        }
        let id = Self::generate(names)?;
        crate::pve::sim::write_atomic(&cert_path, &id.cert_der)?;
        crate::pve::sim::write_atomic(&key_path, &id.key_der)?;
        Ok(id)
    }

    /// The certificate (DER).
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The certificate as PEM.
    pub fn cert_pem(&self) -> String {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(&self.cert_der);
        let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(chunk));
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
        pem
    }

    /// SHA-256 over the DER certificate, upper-case colon-hex as PVE prints it.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.cert_der)
    }

    /// A rustls server configuration (ring provider, HTTP/1.1 only like pveproxy).
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(self.cert_der.clone())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone())),
            )
            .map_err(|e| Error::Tls(e.to_string()))?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }
}

/// Colon-separated upper-case hex of SHA-256(der).
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_colon_hex() {
        let id = TlsIdentity::generate(&[]).unwrap();
        let fp = id.fingerprint();
        assert_eq!(fp.len(), 32 * 3 - 1);
        assert!(fp.split(':').all(|p| p.len() == 2));
        assert!(id.cert_pem().starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(id.server_config().is_ok());
    }
}
