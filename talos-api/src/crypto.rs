//! Keys and certificates in the shapes Talos writes them (see the crate docs for labels).

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Talos' CA validity: 87600h.
pub const CA_VALIDITY: time::Duration = time::Duration::hours(87_600);
/// Talos API client certificate validity (1 year; `TalosAPIDefaultCertificateValidityDuration`).
pub const CLIENT_CERT_VALIDITY: time::Duration = time::Duration::hours(8_760);

/// The key algorithms Talos uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyAlgorithm {
    /// Ed25519 (the Talos OS CA and API client certificates).
    Ed25519,
    /// ECDSA on NIST P-256 (etcd and Kubernetes CAs).
    EcdsaP256,
}

/// A freshly generated or loaded private key, PEM-encoded as Talos writes it.
pub(crate) struct Key {
    pub(crate) pair: KeyPair,
    /// PEM text (`ED25519 PRIVATE KEY` PKCS#8 v1, or `EC PRIVATE KEY` SEC1).
    pub(crate) pem: Zeroizing<String>,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key([REDACTED])")
    }
}

fn crypto(e: impl std::fmt::Display) -> Error {
    Error::Crypto(e.to_string())
}

/// Wrap DER in PEM with 64-column lines (as Go's `pem.Encode`).
pub(crate) fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

/// The first PEM block of `text`: (label, DER).
pub(crate) fn pem_decode(text: &str) -> Result<(String, Zeroizing<Vec<u8>>)> {
    let start = text
        .find("-----BEGIN ")
        .ok_or_else(|| Error::Crypto("no PEM block found".into()))?;
    let rest = &text[start + 11..];
    let label_end = rest
        .find("-----")
        .ok_or_else(|| Error::Crypto("malformed PEM header".into()))?;
    let label = rest[..label_end].to_string();
    let body_start = label_end + 5;
    let end_marker = format!("-----END {label}-----");
    let end = rest
        .find(&end_marker)
        .ok_or_else(|| Error::Crypto(format!("PEM block {label} has no END line")))?;
    let body: String = rest[body_start..end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body.as_bytes())
        .map_err(|e| Error::Crypto(format!("PEM block {label}: {e}")))?;
    Ok((label, Zeroizing::new(der)))
}

/// Ed25519 PKCS#8 v1 (no public key), exactly what Go's `x509.MarshalPKCS8PrivateKey` writes.
fn ed25519_pkcs8_v1(seed: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut v = Zeroizing::new(vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ]);
    v.extend_from_slice(seed);
    v
}

/// Generate a key of `alg`.
pub(crate) fn generate_key(alg: KeyAlgorithm) -> Result<Key> {
    match alg {
        KeyAlgorithm::Ed25519 => {
            let tmp = KeyPair::generate_for(&rcgen::PKCS_ED25519).map_err(crypto)?;
            // ring's PKCS#8 v2 document: the 32-byte seed follows a 16-byte prefix.
            let der = Zeroizing::new(tmp.serialize_der());
            let seed = der
                .get(16..48)
                .ok_or_else(|| Error::Crypto("unexpected Ed25519 PKCS#8 layout".into()))?;
            let v1 = ed25519_pkcs8_v1(seed);
            let pair = KeyPair::from_pkcs8_der_and_sign_algo(
                &PrivatePkcs8KeyDer::from(v1.as_slice()),
                &rcgen::PKCS_ED25519,
            )
            .map_err(crypto)?;
            let pem = Zeroizing::new(pem_encode("ED25519 PRIVATE KEY", &v1));
            Ok(Key { pair, pem })
        }
        KeyAlgorithm::EcdsaP256 => {
            let sk = p256::SecretKey::random(&mut rand::rngs::OsRng);
            ec_key_from_secret(&sk)
        }
    }
}

fn ec_key_from_secret(sk: &p256::SecretKey) -> Result<Key> {
    use p256::pkcs8::EncodePrivateKey;
    let pkcs8 = sk.to_pkcs8_der().map_err(crypto)?;
    let pair = KeyPair::from_pkcs8_der_and_sign_algo(
        &PrivatePkcs8KeyDer::from(pkcs8.as_bytes()),
        &rcgen::PKCS_ECDSA_P256_SHA256,
    )
    .map_err(crypto)?;
    let sec1 = sec1_der_named_curve(sk);
    let pem = Zeroizing::new(pem_encode("EC PRIVATE KEY", &sec1));
    Ok(Key { pair, pem })
}

/// SEC1 `ECPrivateKey` DER exactly as Go's `x509.MarshalECPrivateKey` writes it for P-256:
/// version 1, the 32-byte scalar, the `[0]` named-curve OID and the `[1]` uncompressed
/// public key (121 bytes). The `p256` crate omits the curve OID, which Go (and so Talos,
/// kubectl and every client-go tool) rejects with "x509: unknown elliptic curve".
fn sec1_der_named_curve(sk: &p256::SecretKey) -> Zeroizing<Vec<u8>> {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    // 1.2.840.10045.3.1.7 (prime256v1 / secp256r1)
    const P256_OID: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    let scalar = Zeroizing::new(sk.to_bytes());
    let public = sk.public_key().to_encoded_point(false);
    let mut der = Zeroizing::new(Vec::with_capacity(121));
    der.extend_from_slice(&[0x30, 0x77, 0x02, 0x01, 0x01, 0x04, 0x20]);
    der.extend_from_slice(scalar.as_slice());
    der.extend_from_slice(&[0xa0, 0x0a]);
    der.extend_from_slice(&P256_OID);
    der.extend_from_slice(&[0xa1, 0x44, 0x03, 0x42, 0x00]);
    der.extend_from_slice(public.as_bytes());
    der
}

/// Load a private key PEM in any label Talos accepts (`ED25519 PRIVATE KEY`, `PRIVATE KEY`,
/// `EC PRIVATE KEY`). RSA keys are only stored, never used for signing here.
pub(crate) fn load_key(pem: &str) -> Result<Key> {
    let (label, der) = pem_decode(pem)?;
    match label.as_str() {
        "EC PRIVATE KEY" => {
            let sk = p256::SecretKey::from_sec1_der(&der)
                .map_err(|e| Error::Crypto(format!("EC PRIVATE KEY: {e}")))?;
            ec_key_from_secret(&sk)
        }
        "ED25519 PRIVATE KEY" | "PRIVATE KEY" => {
            let pk = PrivatePkcs8KeyDer::from(der.as_slice());
            let pair = KeyPair::from_pkcs8_der_and_sign_algo(&pk, &rcgen::PKCS_ED25519)
                .or_else(|_| {
                    KeyPair::from_pkcs8_der_and_sign_algo(&pk, &rcgen::PKCS_ECDSA_P256_SHA256)
                })
                .map_err(|e| Error::Crypto(format!("{label}: {e}")))?;
            Ok(Key {
                pair,
                pem: Zeroizing::new(pem.to_string()),
            })
        }
        other => Err(Error::Crypto(format!(
            "unsupported private key PEM label {other:?}"
        ))),
    }
}

/// Rewrite `ED25519 PRIVATE KEY` to `PRIVATE KEY` so rustls can load the (PKCS#8) key.
pub(crate) fn relabel_for_rustls(pem: &str) -> Zeroizing<String> {
    Zeroizing::new(pem.replace("ED25519 PRIVATE KEY", "PRIVATE KEY"))
}

fn serial() -> SerialNumber {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b[0] &= 0x7f; // positive, as Go's big.Int serials are
    SerialNumber::from_slice(&b)
}

/// What a certificate should say.
#[derive(Debug, Clone, Default)]
pub struct CertSpec {
    /// Subject CommonName, if any.
    pub common_name: Option<String>,
    /// Subject Organization values.
    pub organizations: Vec<String>,
    /// DNS SANs.
    pub dns_names: Vec<String>,
    /// IP SANs.
    pub ip_addresses: Vec<std::net::IpAddr>,
    /// Server auth EKU.
    pub server_auth: bool,
    /// Client auth EKU.
    pub client_auth: bool,
    /// Validity from now.
    pub validity: Option<time::Duration>,
}

fn dn(spec: &CertSpec) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    for o in &spec.organizations {
        d.push(DnType::OrganizationName, o.as_str());
    }
    if let Some(cn) = &spec.common_name {
        d.push(DnType::CommonName, cn.as_str());
    }
    d
}

fn now() -> time::OffsetDateTime {
    // Whole seconds: X.509 times have no sub-second precision.
    let t = time::OffsetDateTime::now_utc();
    t.replace_nanosecond(0).unwrap_or(t)
}

/// A self-signed CA as Talos' `NewSelfSignedCertificateAuthority` makes it: CA:TRUE,
/// KeyUsage certSign+digitalSignature, EKU serverAuth+clientAuth, 10 years.
pub(crate) fn self_signed_ca(
    alg: KeyAlgorithm,
    organization: Option<&str>,
    common_name: Option<&str>,
) -> Result<(String, Key)> {
    let key = generate_key(alg)?;
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(&CertSpec {
        common_name: common_name.map(str::to_string),
        organizations: organization.into_iter().map(str::to_string).collect(),
        ..Default::default()
    });
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let start = now();
    p.not_before = start;
    p.not_after = start + CA_VALIDITY;
    p.serial_number = Some(serial());
    let cert = p.self_signed(&key.pair).map_err(crypto)?;
    Ok((cert.pem(), key))
}

/// Issue a leaf certificate signed by the CA (`ca_crt_pem`, `ca_key_pem`) with a new key of
/// the CA's algorithm (Talos' key algorithm follows the CA's). Returns (cert PEM, key PEM).
pub fn issue_leaf(
    ca_crt_pem: &str,
    ca_key_pem: &str,
    spec: &CertSpec,
) -> Result<(String, Zeroizing<String>)> {
    let ca_key = load_key(ca_key_pem)?;
    let alg = if ca_key.pair.algorithm() == &rcgen::PKCS_ED25519 {
        KeyAlgorithm::Ed25519
    } else {
        KeyAlgorithm::EcdsaP256
    };
    let (_, ca_der) = pem_decode(ca_crt_pem)?;
    let issuer = Issuer::from_ca_cert_der(&CertificateDer::from(ca_der.to_vec()), &ca_key.pair)
        .map_err(crypto)?;
    let key = generate_key(alg)?;
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(spec);
    p.subject_alt_names = spec
        .dns_names
        .iter()
        .map(|d| {
            d.clone()
                .try_into()
                .map(SanType::DnsName)
                .map_err(|e: rcgen::Error| Error::Crypto(format!("DNS SAN {d:?}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    p.subject_alt_names
        .extend(spec.ip_addresses.iter().map(|ip| SanType::IpAddress(*ip)));
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if spec.server_auth {
        p.extended_key_usages
            .push(ExtendedKeyUsagePurpose::ServerAuth);
    }
    if spec.client_auth {
        p.extended_key_usages
            .push(ExtendedKeyUsagePurpose::ClientAuth);
    }
    let start = now();
    p.not_before = start;
    p.not_after = start + spec.validity.unwrap_or(CLIENT_CERT_VALIDITY);
    p.serial_number = Some(serial());
    let cert = p.signed_by(&key.pair, &issuer).map_err(crypto)?;
    Ok((cert.pem(), key.pem))
}

/// The SHA-256 fingerprint of a certificate's SubjectPublicKeyInfo, base64 (std) encoded:
/// the value talosctl's `--cert-fingerprint` takes and a maintenance-mode console prints.
pub fn spki_fingerprint(cert_der: &[u8]) -> Result<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| Error::Crypto(format!("parsing certificate: {e}")))?;
    let digest = Sha256::digest(cert.public_key().raw);
    Ok(base64::engine::general_purpose::STANDARD.encode(digest))
}

/// [`spki_fingerprint`] of the first certificate in a PEM text.
pub fn spki_fingerprint_pem(cert_pem: &str) -> Result<String> {
    let (_, der) = pem_decode(cert_pem)?;
    spki_fingerprint(&der)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ed25519_key_is_pkcs8_v1_with_talos_label_and_reloads() {
        let k = generate_key(KeyAlgorithm::Ed25519).unwrap();
        assert!(k.pem.starts_with("-----BEGIN ED25519 PRIVATE KEY-----\n"));
        let (_, der) = pem_decode(&k.pem).unwrap();
        assert_eq!(der.len(), 48);
        let again = load_key(&k.pem).unwrap();
        assert_eq!(again.pair.public_key_raw(), k.pair.public_key_raw());
        // the rustls relabel keeps the DER
        let r = relabel_for_rustls(&k.pem);
        assert!(r.starts_with("-----BEGIN PRIVATE KEY-----"));
    }

    /// A throwaway test key from `openssl ecparam -name prime256v1 -genkey -noout`, the same
    /// encoding Go's `x509.MarshalECPrivateKey` produces (named-curve OID included).
    const OPENSSL_EC_KEY: &str = "-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIOt5HKqo75gkU22JCPv6Vq/MRD0GOmBeZSWQH6k02dlooAoGCCqGSM49
AwEHoUQDQgAEAc8PMUHfY+nCfLQ6HvGCCn95EP5RaC0lUnnQUpSDpjF4k1fKgny7
/xaie1ny7448Sx0XBEBTTxmk80yPhHR/dg==
-----END EC PRIVATE KEY-----
";

    #[test]
    fn ec_key_pem_matches_openssl_and_go_byte_for_byte() {
        let loaded = load_key(OPENSSL_EC_KEY).unwrap();
        assert_eq!(loaded.pem.as_str(), OPENSSL_EC_KEY);
        let (_, der) = pem_decode(&generate_key(KeyAlgorithm::EcdsaP256).unwrap().pem).unwrap();
        assert_eq!(der.len(), 121);
        // The [0] named-curve parameter Go requires: 1.2.840.10045.3.1.7.
        assert_eq!(
            &der[39..51],
            &[
                0xa0, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07
            ]
        );
    }

    #[test]
    fn ec_key_is_sec1_and_reloads() {
        let k = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        assert!(k.pem.starts_with("-----BEGIN EC PRIVATE KEY-----\n"));
        let again = load_key(&k.pem).unwrap();
        assert_eq!(again.pair.public_key_raw(), k.pair.public_key_raw());
    }

    #[test]
    fn bad_pem_is_a_clear_error() {
        assert!(
            load_key("nothing")
                .unwrap_err()
                .to_string()
                .contains("no PEM block")
        );
        let e = load_key(&pem_encode("DSA PRIVATE KEY", b"x")).unwrap_err();
        assert!(e.to_string().contains("DSA PRIVATE KEY"), "{e}");
    }
}
