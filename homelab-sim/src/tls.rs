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
        // The key stays readable by its owner only, as pveproxy's key is.
        crate::pve::sim::write_atomic_private(&key_path, &id.key_der)?;
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

/// The handshake-signature half of a `ServerCertVerifier`, checked with ring's algorithms
/// (verifiers differ only in which certificates they trust).
macro_rules! ring_signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &rustls::crypto::ring::default_provider().signature_verification_algorithms,
            )
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &rustls::crypto::ring::default_provider().signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            rustls::crypto::ring::default_provider()
                .signature_verification_algorithms
                .supported_schemes()
        }
    };
}
pub(crate) use ring_signatures;

/// A rustls verifier that trusts exactly the certificate whose SHA-256 fingerprint is
/// pinned (the handshake signature is still verified), the way PVE nodes trust each other.
#[derive(Debug, Clone)]
pub struct PinnedVerifier {
    pin: String,
}

impl PinnedVerifier {
    /// Pin a colon-hex fingerprint (case-insensitive; colons optional).
    pub fn new(fingerprint: &str) -> Result<Self, Error> {
        let hexed: String = fingerprint.chars().filter(|c| *c != ':').collect();
        if hexed.len() != 64 || !hexed.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(Error::Tls(format!(
                "malformed SHA-256 fingerprint '{fingerprint}' (expected 32 colon-separated hex pairs)"
            )));
        }
        Ok(PinnedVerifier {
            pin: hexed.to_ascii_uppercase(),
        })
    }

    /// A client configuration (ring provider) trusting only the pinned certificate.
    pub fn client_config(self) -> Result<rustls::ClientConfig, Error> {
        Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(self))
        .with_no_client_auth())
    }
}

impl rustls::client::danger::ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let got = fingerprint(end_entity.as_ref()).replace(':', "");
        if got == self.pin {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "fingerprint '{}' not verified",
                fingerprint(end_entity.as_ref())
            )))
        }
    }
    ring_signatures!();
}

/// GET `api_url` + `path` over TLS pinned to `fingerprint`, with an `Authorization` header;
/// returns the status and the JSON body (`null` when the body is not JSON). Handy to probe a
/// lab started by another process (`homelab-cli sim serve`).
pub async fn probe(
    api_url: &str,
    fingerprint: &str,
    authorization: &str,
    path: &str,
) -> Result<(u16, serde_json::Value), Error> {
    let cfg = PinnedVerifier::new(fingerprint)?.client_config()?;
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(cfg)
        .build()
        .map_err(|e| Error::Tls(e.to_string()))?;
    let resp = client
        .get(format!("{api_url}{path}"))
        .header("Authorization", authorization)
        .send()
        .await
        .map_err(|e| Error::Tls(format!("request to {api_url}{path} failed: {e}")))?;
    let status = resp.status().as_u16();
    let body = resp.bytes().await.unwrap_or_default();
    Ok((
        status,
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    ))
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
        assert!(PinnedVerifier::new(&fp).is_ok());
        assert!(PinnedVerifier::new(&fp.replace(':', "").to_lowercase()).is_ok());
        assert!(PinnedVerifier::new("AB:CD").is_err());
    }

    #[tokio::test]
    async fn probe_pins_the_lab_certificate() {
        let lab = crate::lab::Lab::builder().start().await.unwrap();
        let (status, body) = probe(
            &lab.api_url(),
            &lab.fingerprint(),
            &lab.authorization(),
            "/version",
        )
        .await
        .unwrap();
        assert_eq!(status, 200);
        assert_eq!(body["data"]["release"], "9.1");
        let other = TlsIdentity::generate(&[]).unwrap().fingerprint();
        let err = probe(&lab.api_url(), &other, &lab.authorization(), "/version").await;
        assert!(err.is_err());
    }
}
