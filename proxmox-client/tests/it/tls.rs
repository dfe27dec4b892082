//! TLS against a local rustls server with a self-signed certificate: fingerprint pinning,
//! a custom CA, the untrusted-certificate error (with the fingerprint to pin), insecure.

use std::sync::Arc;

use proxmox_client::{Client, Error, Fingerprint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct TlsServer {
    url: String,
    fingerprint: Fingerprint,
}

/// Serves `GET /api2/json/version` over TLS with the given certificate chain and key.
async fn tls_server(
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
) -> TlsServer {
    let fingerprint = Fingerprint::of_der(chain[0].as_ref());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = vec![0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let body = r#"{"data":{"version":"9.1.1","release":"9.1","repoid":"tls"}}"#;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(resp.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    TlsServer {
        url: format!("https://localhost:{port}"),
        fingerprint,
    }
}

async fn self_signed() -> TlsServer {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    tls_server(vec![ck.cert.der().clone()], key).await
}

fn builder(url: &str) -> proxmox_client::ClientBuilder {
    Client::builder()
        .base_url(url)
        .api_token("root@pam!t", "x")
        .retry_policy(proxmox_client::RetryPolicy::none())
}

#[tokio::test]
async fn pinned_fingerprint_is_trusted() {
    let srv = self_signed().await;
    let c = builder(&srv.url)
        .pin_fingerprint(srv.fingerprint.to_string())
        .build()
        .unwrap();
    assert_eq!(c.version().await.unwrap().repoid, "tls");
    // Lower case without colons works too.
    let compact = srv.fingerprint.to_string().replace(':', "").to_lowercase();
    let c = builder(&srv.url).pin_fingerprint(compact).build().unwrap();
    c.version().await.unwrap();
}

#[tokio::test]
async fn unknown_certificate_error_prints_its_fingerprint() {
    let srv = self_signed().await;
    // Not in the system roots:
    let e = builder(&srv.url)
        .build()
        .unwrap()
        .version()
        .await
        .unwrap_err();
    match &e {
        Error::UntrustedCertificate { fingerprint, host } => {
            assert_eq!(*fingerprint, srv.fingerprint);
            assert_eq!(host, "localhost");
        }
        other => panic!("{other:?}"),
    }
    let text = e.to_string();
    assert!(text.contains(&srv.fingerprint.to_string()), "{text}");
    assert!(text.contains("PROXMOX_VE_FINGERPRINT="), "{text}");
    // A different pin:
    let wrong = Fingerprint([7u8; 32]);
    let e = builder(&srv.url)
        .pin_fingerprint(wrong.to_string())
        .build()
        .unwrap()
        .version()
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::UntrustedCertificate { fingerprint, .. } if *fingerprint == srv.fingerprint),
        "{e:?}"
    );
}

#[tokio::test]
async fn custom_ca_file_is_trusted() {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "homelab test CA");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let srv = tls_server(
        vec![leaf.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, ca.pem()).unwrap();
    let c = builder(&srv.url).ca_file(&ca_path).build().unwrap();
    assert_eq!(c.version().await.unwrap().repoid, "tls");
    // The CA does not help for another host name (hostname verification still applies).
    let other = srv.url.replace("localhost", "127.0.0.1");
    let e = builder(&other)
        .ca_file(&ca_path)
        .build()
        .unwrap()
        .version()
        .await
        .unwrap_err();
    assert!(matches!(e, Error::UntrustedCertificate { .. }), "{e:?}");
    let missing = builder(&srv.url)
        .ca_file(dir.path().join("nope.pem"))
        .build();
    assert!(matches!(missing, Err(Error::Io { .. })));
}

#[tokio::test]
async fn insecure_is_explicit_opt_in() {
    let srv = self_signed().await;
    let c = builder(&srv.url).danger_insecure(true).build().unwrap();
    c.version().await.unwrap();
}
