//! The cluster secrets bundle: the `secrets.yaml` of `talosctl gen secrets`.

use std::path::Path;

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use serde_yaml_ng::{Mapping, Value};
use zeroize::Zeroizing;

use crate::crypto::{self, KeyAlgorithm};
use crate::error::{Error, Result};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A CA (or leaf) certificate with its private key, both PEM text.
#[derive(Clone, Debug)]
pub struct CertAndKey {
    /// Certificate PEM.
    pub crt: String,
    /// Private key PEM (kept secret; never logged).
    pub key: SecretString,
}

/// Which service-account key to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ServiceAccountKeyKind {
    /// RSA 4096, PKCS#1 `RSA PRIVATE KEY`: what Talos generates for contracts after 1.6,
    /// including 1.12 (`contract.go UseRSAServiceAccountKey`).
    #[default]
    Rsa4096,
    /// ECDSA P-256, SEC1 `EC PRIVATE KEY`: the pre-1.7 contract.
    EcdsaP256,
}

/// Options for [`SecretsBundle::generate_with`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SecretsOptions {
    /// The service-account key algorithm (default RSA 4096, as Talos 1.12).
    pub service_account: ServiceAccountKeyKind,
}

impl SecretsOptions {
    /// Set the service-account key algorithm.
    pub fn service_account(mut self, kind: ServiceAccountKeyKind) -> Self {
        self.service_account = kind;
        self
    }
}

/// Everything a Talos cluster's machine configs are derived from.
///
/// Serialises to exactly the key order and encoding of `talosctl gen secrets`; secret fields
/// are [`SecretString`]s so they never show up in `Debug` output.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SecretsBundle {
    /// `cluster.id`: 32 random bytes, URL-safe base64 with padding.
    pub cluster_id: String,
    /// `cluster.secret`: 32 random bytes, standard base64.
    pub cluster_secret: SecretString,
    /// `secrets.bootstraptoken`: `[a-z0-9]{6}.[a-z0-9]{16}`.
    pub bootstrap_token: SecretString,
    /// `secrets.aescbcencryptionsecret` (legacy contracts only).
    pub aescbc_encryption_secret: Option<SecretString>,
    /// `secrets.secretboxencryptionsecret`: 32 random bytes, standard base64.
    pub secretbox_encryption_secret: Option<SecretString>,
    /// `trustdinfo.token`: same format as the bootstrap token.
    pub trustd_token: SecretString,
    /// `certs.etcd`: ECDSA P-256 CA, O=etcd.
    pub etcd: CertAndKey,
    /// `certs.k8s`: ECDSA P-256 CA, O=kubernetes.
    pub k8s: CertAndKey,
    /// `certs.k8saggregator`: ECDSA P-256 CA, CN=front-proxy.
    pub k8s_aggregator: CertAndKey,
    /// `certs.k8sserviceaccount.key`: RSA 4096 (PKCS#1) or ECDSA P-256 (SEC1) PEM.
    pub k8s_service_account_key: SecretString,
    /// `certs.os`: the Talos API CA, Ed25519, O=talos.
    pub os: CertAndKey,
}

/// A token in the Kubernetes bootstrap-token format: `[a-z0-9]{6}.[a-z0-9]{16}`, drawn
/// uniformly (bytes >= 252 are rejected so that `% 36` is unbiased).
pub fn generate_token() -> SecretString {
    use rand::RngCore;
    const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = Zeroizing::new(String::with_capacity(23));
    let mut buf = [0u8; 64];
    let mut need = 22;
    while need > 0 {
        rand::rngs::OsRng.fill_bytes(&mut buf);
        for b in buf {
            if need == 0 {
                break;
            }
            if b >= 252 {
                continue;
            }
            out.push(ALPHABET[(b % 36) as usize] as char);
            need -= 1;
            if out.len() == 6 {
                out.push('.');
            }
        }
    }
    buf.fill(0);
    SecretString::from(out.as_str())
}

/// Whether `s` has the bootstrap-token shape.
pub fn is_token(s: &str) -> bool {
    let ok = |p: &str, n: usize| {
        p.len() == n
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    match s.split_once('.') {
        Some((a, b)) => ok(a, 6) && ok(b, 16),
        None => false,
    }
}

fn random32() -> Zeroizing<[u8; 32]> {
    use rand::RngCore;
    let mut b = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(b.as_mut());
    b
}

fn ca(alg: KeyAlgorithm, o: Option<&str>, cn: Option<&str>) -> Result<CertAndKey> {
    let (crt, key) = crypto::self_signed_ca(alg, o, cn)?;
    Ok(CertAndKey {
        crt,
        key: SecretString::from(key.pem.as_str()),
    })
}

fn service_account_key(kind: ServiceAccountKeyKind) -> Result<SecretString> {
    match kind {
        ServiceAccountKeyKind::Rsa4096 => {
            use rsa::pkcs1::EncodeRsaPrivateKey;
            let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 4096)
                .map_err(|e| Error::Crypto(format!("RSA key generation: {e}")))?;
            let pem = key
                .to_pkcs1_pem(rsa::pkcs1::LineEnding::LF)
                .map_err(|e| Error::Crypto(format!("RSA key encoding: {e}")))?;
            Ok(SecretString::from(pem.as_str()))
        }
        ServiceAccountKeyKind::EcdsaP256 => {
            let k = crypto::generate_key(KeyAlgorithm::EcdsaP256)?;
            Ok(SecretString::from(k.pem.as_str()))
        }
    }
}

impl SecretsBundle {
    /// Generate a new bundle as `talosctl gen secrets` does for the 1.12 contract.
    pub fn generate() -> Result<Self> {
        Self::generate_with(&SecretsOptions::default())
    }

    /// Generate a new bundle with options.
    pub fn generate_with(opts: &SecretsOptions) -> Result<Self> {
        let id = base64::engine::general_purpose::URL_SAFE.encode(random32().as_ref());
        Ok(SecretsBundle {
            cluster_id: id,
            cluster_secret: SecretString::from(B64.encode(random32().as_ref())),
            bootstrap_token: generate_token(),
            aescbc_encryption_secret: None,
            secretbox_encryption_secret: Some(SecretString::from(B64.encode(random32().as_ref()))),
            trustd_token: generate_token(),
            etcd: ca(KeyAlgorithm::EcdsaP256, Some("etcd"), None)?,
            k8s: ca(KeyAlgorithm::EcdsaP256, Some("kubernetes"), None)?,
            k8s_aggregator: ca(KeyAlgorithm::EcdsaP256, None, Some("front-proxy"))?,
            k8s_service_account_key: service_account_key(opts.service_account)?,
            os: ca(KeyAlgorithm::Ed25519, Some("talos"), None)?,
        })
    }

    /// Serialise as `secrets.yaml` (Go yaml.v3 layout, PEMs base64-encoded). The result holds
    /// secrets in plain text: encrypt it before it reaches disk (see `sops-age`).
    pub fn to_yaml(&self) -> Zeroizing<String> {
        let s = |x: &str| Value::String(x.to_string());
        let b = |x: &str| Value::String(B64.encode(x.as_bytes()));
        let pair = |c: &CertAndKey| {
            let mut m = Mapping::new();
            m.insert(s("crt"), b(&c.crt));
            m.insert(s("key"), b(c.key.expose_secret()));
            Value::Mapping(m)
        };
        let mut cluster = Mapping::new();
        cluster.insert(s("id"), s(&self.cluster_id));
        cluster.insert(s("secret"), s(self.cluster_secret.expose_secret()));
        let mut secrets = Mapping::new();
        secrets.insert(s("bootstraptoken"), s(self.bootstrap_token.expose_secret()));
        if let Some(a) = &self.aescbc_encryption_secret {
            secrets.insert(s("aescbcencryptionsecret"), s(a.expose_secret()));
        }
        if let Some(a) = &self.secretbox_encryption_secret {
            secrets.insert(s("secretboxencryptionsecret"), s(a.expose_secret()));
        }
        let mut trustd = Mapping::new();
        trustd.insert(s("token"), s(self.trustd_token.expose_secret()));
        let mut certs = Mapping::new();
        certs.insert(s("etcd"), pair(&self.etcd));
        certs.insert(s("k8s"), pair(&self.k8s));
        certs.insert(s("k8saggregator"), pair(&self.k8s_aggregator));
        let mut sa = Mapping::new();
        sa.insert(s("key"), b(self.k8s_service_account_key.expose_secret()));
        certs.insert(s("k8sserviceaccount"), Value::Mapping(sa));
        certs.insert(s("os"), pair(&self.os));
        let mut root = Mapping::new();
        root.insert(s("cluster"), Value::Mapping(cluster));
        root.insert(s("secrets"), Value::Mapping(secrets));
        root.insert(s("trustdinfo"), Value::Mapping(trustd));
        root.insert(s("certs"), Value::Mapping(certs));
        Zeroizing::new(crate::yaml::to_string(&Value::Mapping(root)))
    }

    /// Parse a `secrets.yaml`; `what` names the source (e.g. the file path) in errors.
    pub fn from_yaml(text: &str, what: &str) -> Result<Self> {
        let v: Value = serde_yaml_ng::from_str(text).map_err(|e| Error::Yaml {
            what: what.to_string(),
            message: e.to_string(),
        })?;
        let get = |path: &str| -> Result<Option<String>> {
            let mut cur = &v;
            for part in path.split('.') {
                match cur.get(part) {
                    Some(n) => cur = n,
                    None => return Ok(None),
                }
            }
            match cur {
                Value::String(s) => Ok(Some(s.clone())),
                Value::Null => Ok(None),
                _ => Err(Error::InvalidSecrets(format!(
                    "{what}: field {path} must be a string"
                ))),
            }
        };
        let req = |path: &str| -> Result<String> {
            get(path)?
                .filter(|s| !s.is_empty())
                .ok_or_else(|| Error::InvalidSecrets(format!("{what}: missing field {path}")))
        };
        let pem = |path: &str| -> Result<Zeroizing<String>> {
            let raw = Zeroizing::new(req(path)?);
            let bytes = Zeroizing::new(B64.decode(raw.trim().as_bytes()).map_err(|e| {
                Error::InvalidSecrets(format!("{what}: field {path} is not base64: {e}"))
            })?);
            let text = String::from_utf8(bytes.to_vec()).map_err(|_| {
                Error::InvalidSecrets(format!("{what}: field {path} is not PEM text"))
            })?;
            if !text.contains("-----BEGIN ") {
                return Err(Error::InvalidSecrets(format!(
                    "{what}: field {path} does not hold a PEM block"
                )));
            }
            Ok(Zeroizing::new(text))
        };
        let pair = |name: &str| -> Result<CertAndKey> {
            Ok(CertAndKey {
                crt: pem(&format!("certs.{name}.crt"))?.to_string(),
                key: SecretString::from(pem(&format!("certs.{name}.key"))?.as_str()),
            })
        };
        let bundle = SecretsBundle {
            cluster_id: req("cluster.id")?,
            cluster_secret: SecretString::from(req("cluster.secret")?),
            bootstrap_token: SecretString::from(req("secrets.bootstraptoken")?),
            aescbc_encryption_secret: get("secrets.aescbcencryptionsecret")?
                .filter(|s| !s.is_empty())
                .map(SecretString::from),
            secretbox_encryption_secret: get("secrets.secretboxencryptionsecret")?
                .filter(|s| !s.is_empty())
                .map(SecretString::from),
            trustd_token: SecretString::from(req("trustdinfo.token")?),
            etcd: pair("etcd")?,
            k8s: pair("k8s")?,
            k8s_aggregator: pair("k8saggregator")?,
            k8s_service_account_key: SecretString::from(
                pem("certs.k8sserviceaccount.key")?.as_str(),
            ),
            os: pair("os")?,
        };
        bundle.validate().map_err(|e| match e {
            Error::InvalidSecrets(m) => Error::InvalidSecrets(format!("{what}: {m}")),
            other => other,
        })?;
        Ok(bundle)
    }

    /// Read a `secrets.yaml` file (plain text; decrypt SOPS files first).
    pub fn load(path: &Path) -> Result<Self> {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?);
        Self::from_yaml(&text, &path.display().to_string())
    }

    /// Check what Talos' `bundle.Validate` checks, plus that every certificate parses and every
    /// key matches its expected algorithm.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidSecrets(m));
        if !is_token(self.bootstrap_token.expose_secret()) {
            return bad("secrets.bootstraptoken is not in [a-z0-9]{6}.[a-z0-9]{16} form".into());
        }
        if !is_token(self.trustd_token.expose_secret()) {
            return bad("trustdinfo.token is not in [a-z0-9]{6}.[a-z0-9]{16} form".into());
        }
        match (
            &self.aescbc_encryption_secret,
            &self.secretbox_encryption_secret,
        ) {
            (None, None) => {
                return bad(
                    "one of secrets.secretboxencryptionsecret or secrets.aescbcencryptionsecret is required"
                        .into(),
                );
            }
            (_, Some(s)) | (Some(s), None) => {
                let raw = B64.decode(s.expose_secret()).unwrap_or_default();
                if raw.len() != 32 {
                    return bad("encryption secret must be 32 bytes, base64-encoded".into());
                }
            }
        }
        for (name, c, alg) in [
            ("etcd", &self.etcd, KeyAlgorithm::EcdsaP256),
            ("k8s", &self.k8s, KeyAlgorithm::EcdsaP256),
            (
                "k8saggregator",
                &self.k8s_aggregator,
                KeyAlgorithm::EcdsaP256,
            ),
            ("os", &self.os, KeyAlgorithm::Ed25519),
        ] {
            check_ca(name, c, alg)?;
        }
        let sa = self.k8s_service_account_key.expose_secret();
        if !(sa.contains("-----BEGIN RSA PRIVATE KEY-----")
            || sa.contains("-----BEGIN EC PRIVATE KEY-----"))
        {
            return bad("certs.k8sserviceaccount.key must be an RSA or EC private key".into());
        }
        Ok(())
    }
}

/// Parse the CA certificate, check it is a CA and that the key belongs to it.
fn check_ca(name: &str, c: &CertAndKey, alg: KeyAlgorithm) -> Result<()> {
    let bad = |m: String| Error::InvalidSecrets(format!("certs.{name}: {m}"));
    let (_, der) = crypto::pem_decode(&c.crt).map_err(|e| bad(e.to_string()))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| bad(format!("certificate does not parse: {e}")))?;
    if !cert.is_ca() {
        return Err(bad("certificate is not a CA".into()));
    }
    let key = crypto::load_key(c.key.expose_secret()).map_err(|e| bad(e.to_string()))?;
    let want = match alg {
        KeyAlgorithm::Ed25519 => &rcgen::PKCS_ED25519,
        KeyAlgorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
    };
    if key.pair.algorithm() != want {
        return Err(bad(format!("key must be {alg:?}")));
    }
    use rcgen::PublicKeyData;
    if key.pair.subject_public_key_info() != cert.public_key().raw {
        return Err(bad("key does not match the certificate".into()));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_the_bootstrap_token_shape() {
        for _ in 0..50 {
            let t = generate_token();
            assert!(is_token(t.expose_secret()), "{}", t.expose_secret());
        }
        assert!(!is_token("abcdef.0123456789abcdeF"));
        assert!(!is_token("abcde.0123456789abcdef"));
    }

    #[test]
    fn debug_output_hides_secrets() {
        let b = SecretsBundle::generate_with(
            &SecretsOptions::default().service_account(ServiceAccountKeyKind::EcdsaP256),
        )
        .unwrap();
        let dbg = format!("{b:?}");
        assert!(!dbg.contains(b.bootstrap_token.expose_secret()));
        assert!(!dbg.contains("PRIVATE KEY"));
    }

    #[test]
    fn missing_field_is_named() {
        let e = SecretsBundle::from_yaml("cluster:\n    id: x\n", "s.yaml").unwrap_err();
        assert_eq!(
            e.to_string(),
            "secrets bundle: s.yaml: missing field cluster.secret"
        );
    }
}
