//! Kubeconfigs: extracting the one Talos streams (a gzip'd tar), generating the admin
//! kubeconfig offline from the secrets bundle, and reading what a client needs from one.

use std::io::Read as _;

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use serde_yaml_ng::{Mapping, Value};
use zeroize::Zeroizing;

use crate::crypto::{self, CertSpec};
use crate::error::{Error, Result};
use crate::secrets::SecretsBundle;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn kerr(m: impl Into<String>) -> Error {
    Error::Kubeconfig(m.into())
}

/// Extract the first file of a gzip-compressed tar, as the `Kubeconfig` RPC streams it.
///
/// Talos never closes its tar writer (one 512-byte header plus the file bytes, no padding or
/// end blocks), so the header is parsed by hand and only the first entry is read.
pub fn extract_first_file(tar_gz: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    let mut raw = Zeroizing::new(Vec::new());
    flate2::read::GzDecoder::new(tar_gz)
        .read_to_end(&mut raw)
        .map_err(|e| kerr(format!("gunzip: {e}")))?;
    if raw.len() < 512 {
        return Err(kerr(format!(
            "tar stream too short: {} bytes, need a 512-byte header",
            raw.len()
        )));
    }
    let size_field = std::str::from_utf8(&raw[124..136])
        .map_err(|_| kerr("tar header size field is not text"))?;
    let size_text = size_field.trim_matches(|c: char| c == '\0' || c == ' ');
    let size = usize::from_str_radix(size_text, 8)
        .map_err(|_| kerr(format!("tar header size {size_text:?} is not octal")))?;
    let end = 512usize
        .checked_add(size)
        .filter(|e| *e <= raw.len())
        .ok_or_else(|| kerr(format!("tar entry of {size} bytes is truncated")))?;
    Ok(Zeroizing::new(raw[512..end].to_vec()))
}

/// Build the stream Talos sends: a gzip'd tar with one regular file and **no** padding or
/// end-of-archive blocks (for servers and mocks that want to match the wire exactly).
pub fn build_talos_tar_gz(name: &str, mode: u32, data: &[u8]) -> Result<Vec<u8>> {
    use std::io::Write as _;
    let mut h = [0u8; 512];
    let nb = name.as_bytes();
    if nb.len() > 99 {
        return Err(kerr("tar entry name too long"));
    }
    h[..nb.len()].copy_from_slice(nb);
    let put = |h: &mut [u8; 512], off: usize, len: usize, v: u64| {
        let s = format!("{:0width$o}\0", v, width = len - 1);
        h[off..off + len].copy_from_slice(s.as_bytes());
    };
    put(&mut h, 100, 8, u64::from(mode));
    put(&mut h, 108, 8, 0);
    put(&mut h, 116, 8, 0);
    put(&mut h, 124, 12, data.len() as u64);
    let mtime = time::OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
    put(&mut h, 136, 12, mtime);
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|b| u64::from(*b)).sum();
    let cs = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(cs.as_bytes());
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&h)
        .and_then(|_| gz.write_all(data))
        .map_err(|e| kerr(e.to_string()))?;
    gz.finish().map_err(|e| kerr(e.to_string()))
}

/// The admin kubeconfig Talos generates (`pkg/kubeconfig/generate.go`): cluster named after
/// the cluster, user and context `admin@<cluster>` (namespace `default`), client certificate
/// CN=`admin`, O=`system:masters`, 1 year, signed by the Kubernetes CA.
pub fn generate_admin(
    secrets: &SecretsBundle,
    cluster_name: &str,
    endpoint: &str,
) -> Result<Zeroizing<String>> {
    let (crt, key) = crypto::issue_leaf(
        &secrets.k8s.crt,
        secrets.k8s.key.expose_secret(),
        &CertSpec {
            common_name: Some("admin".into()),
            organizations: vec!["system:masters".into()],
            client_auth: true,
            validity: Some(crypto::CLIENT_CERT_VALIDITY),
            ..Default::default()
        },
    )?;
    let s = |x: &str| Value::String(x.to_string());
    let m = |e: Vec<(&str, Value)>| {
        let mut m = Mapping::new();
        for (k, v) in e {
            m.insert(s(k), v);
        }
        Value::Mapping(m)
    };
    let user = format!("admin@{cluster_name}");
    let doc = m(vec![
        ("apiVersion", s("v1")),
        ("kind", s("Config")),
        (
            "clusters",
            Value::Sequence(vec![m(vec![
                ("name", s(cluster_name)),
                (
                    "cluster",
                    m(vec![
                        ("server", s(endpoint)),
                        (
                            "certificate-authority-data",
                            s(&B64.encode(&secrets.k8s.crt)),
                        ),
                    ]),
                ),
            ])]),
        ),
        (
            "users",
            Value::Sequence(vec![m(vec![
                ("name", s(&user)),
                (
                    "user",
                    m(vec![
                        ("client-certificate-data", s(&B64.encode(&crt))),
                        ("client-key-data", s(&B64.encode(key.as_bytes()))),
                    ]),
                ),
            ])]),
        ),
        (
            "contexts",
            Value::Sequence(vec![m(vec![
                (
                    "context",
                    m(vec![
                        ("cluster", s(cluster_name)),
                        ("namespace", s("default")),
                        ("user", s(&user)),
                    ]),
                ),
                ("name", s(&user)),
            ])]),
        ),
        ("current-context", s(&user)),
    ]);
    Ok(Zeroizing::new(crate::yaml::to_string(&doc)))
}

/// What a client needs from a kubeconfig's current context.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct KubeCredentials {
    /// API server URL.
    pub server: String,
    /// Cluster CA certificate PEM.
    pub ca_pem: String,
    /// Client certificate PEM.
    pub client_cert_pem: String,
    /// Client key PEM.
    pub client_key_pem: SecretString,
}

/// Read the current context's server and credentials from a kubeconfig.
pub fn credentials(kubeconfig: &str) -> Result<KubeCredentials> {
    let v: Value = serde_yaml_ng::from_str(kubeconfig).map_err(|e| Error::Yaml {
        what: "kubeconfig".into(),
        message: e.to_string(),
    })?;
    let current = v
        .get("current-context")
        .and_then(Value::as_str)
        .ok_or_else(|| kerr("no current-context"))?;
    let find = |list: &str, name: &str| -> Result<Value> {
        v.get(list)
            .and_then(Value::as_sequence)
            .and_then(|s| {
                s.iter()
                    .find(|e| e.get("name").and_then(Value::as_str) == Some(name))
            })
            .cloned()
            .ok_or_else(|| kerr(format!("{list}: no entry named {name:?}")))
    };
    let ctx = find("contexts", current)?;
    let cluster_name = ctx
        .get("context")
        .and_then(|c| c.get("cluster"))
        .and_then(Value::as_str)
        .ok_or_else(|| kerr("context has no cluster"))?;
    let user_name = ctx
        .get("context")
        .and_then(|c| c.get("user"))
        .and_then(Value::as_str)
        .ok_or_else(|| kerr("context has no user"))?;
    let cluster = find("clusters", cluster_name)?;
    let user = find("users", user_name)?;
    let data = |v: &Value, section: &str, f: &str| -> Result<Zeroizing<String>> {
        let b = v
            .get(section)
            .and_then(|c| c.get(f))
            .and_then(Value::as_str)
            .ok_or_else(|| kerr(format!("{section}.{f} is missing")))?;
        let raw = Zeroizing::new(
            B64.decode(b.trim())
                .map_err(|e| kerr(format!("{section}.{f}: {e}")))?,
        );
        String::from_utf8(raw.to_vec())
            .map(Zeroizing::new)
            .map_err(|_| kerr(format!("{section}.{f} is not PEM text")))
    };
    Ok(KubeCredentials {
        server: cluster
            .get("cluster")
            .and_then(|c| c.get("server"))
            .and_then(Value::as_str)
            .ok_or_else(|| kerr("cluster.server is missing"))?
            .to_string(),
        ca_pem: data(&cluster, "cluster", "certificate-authority-data")?.to_string(),
        client_cert_pem: data(&user, "user", "client-certificate-data")?.to_string(),
        client_key_pem: SecretString::from(data(&user, "user", "client-key-data")?.as_str()),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn talos_shaped_tar_roundtrips_without_end_blocks() {
        let data = b"apiVersion: v1\nkind: Config\n";
        let gz = build_talos_tar_gz("kubeconfig", 0o600, data).unwrap();
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(gz.as_slice())
            .read_to_end(&mut raw)
            .unwrap();
        assert_eq!(raw.len(), 512 + data.len(), "no padding, no end blocks");
        assert_eq!(extract_first_file(&gz).unwrap().as_slice(), data);
    }

    #[test]
    fn truncated_tar_is_an_error() {
        let gz = build_talos_tar_gz("kubeconfig", 0o600, b"abc").unwrap();
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(gz.as_slice())
            .read_to_end(&mut raw)
            .unwrap();
        raw.truncate(513);
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut enc, &raw).unwrap();
        let e = extract_first_file(&enc.finish().unwrap()).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
    }
}
