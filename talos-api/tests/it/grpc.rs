//! The client against in-process tonic servers on 127.0.0.1 over real TLS.

use std::net::SocketAddr;

use secrecy::{ExposeSecret, SecretString};
use talos_api::Error;
use talos_api::client::{ApplyMode, ClientBuilder};
use talos_api::crypto::{CertSpec, issue_leaf, spki_fingerprint_pem};
use talos_api::proto::common::{Data, Metadata};
use talos_api::proto::machine::machine_service_server::{MachineService, MachineServiceServer};
use talos_api::proto::machine::{
    ApplyConfiguration, ApplyConfigurationRequest, ApplyConfigurationResponse, Version,
    VersionInfo, VersionResponse,
};
use talos_api::proto::storage::storage_service_server::{StorageService, StorageServiceServer};
use talos_api::proto::storage::{Disk, Disks, DisksResponse};
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};

use super::bundle;

/// A node that answers Version per proxied node (failing for 10.5.0.99), Kubeconfig as a
/// Talos-shaped tar stream, ApplyConfiguration echoing the mode, and Disks.
#[derive(Default)]
struct Mock;

fn targets<T>(r: &Request<T>) -> Vec<String> {
    r.metadata()
        .get_all("nodes")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .chain(
            r.metadata()
                .get("node")
                .map(|v| v.to_str().unwrap().to_string()),
        )
        .collect()
}

#[tonic::async_trait]
impl MachineService for Mock {
    async fn version(&self, r: Request<()>) -> Result<Response<VersionResponse>, Status> {
        let t = targets(&r);
        let nodes = if t.is_empty() { vec![String::new()] } else { t };
        let messages = nodes
            .into_iter()
            .map(|n| Version {
                metadata: Some(Metadata {
                    hostname: n.clone(),
                    error: if n == "10.5.0.99" {
                        "rpc error: code = Unavailable desc = connection refused".into()
                    } else {
                        String::new()
                    },
                    status: None,
                }),
                version: Some(VersionInfo {
                    tag: "v1.12.11".into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect();
        Ok(Response::new(VersionResponse { messages }))
    }

    async fn apply_configuration(
        &self,
        r: Request<ApplyConfigurationRequest>,
    ) -> Result<Response<ApplyConfigurationResponse>, Status> {
        let req = r.into_inner();
        if req.data.is_empty() {
            return Err(Status::invalid_argument("config is empty"));
        }
        Ok(Response::new(ApplyConfigurationResponse {
            messages: vec![ApplyConfiguration {
                metadata: None,
                warnings: vec![],
                mode: req.mode,
                mode_details: format!("dry_run={}", req.dry_run),
            }],
        }))
    }

    async fn kubeconfig(
        &self,
        _r: Request<()>,
    ) -> Result<Response<tonic::codegen::BoxStream<Data>>, Status> {
        let gz = talos_api::kubeconfig::build_talos_tar_gz("kubeconfig", 0o600, b"kind: Config\n")
            .unwrap();
        // Split in two chunks: clients must concatenate until EOF.
        let (a, b) = gz.split_at(gz.len() / 2);
        let chunks = vec![
            Ok(Data {
                metadata: None,
                bytes: a.to_vec(),
            }),
            Ok(Data {
                metadata: None,
                bytes: b.to_vec(),
            }),
        ];
        Ok(Response::new(Box::pin(futures_util::stream::iter(chunks))))
    }
}

#[tonic::async_trait]
impl StorageService for Mock {
    async fn disks(&self, _r: Request<()>) -> Result<Response<DisksResponse>, Status> {
        Ok(Response::new(DisksResponse {
            messages: vec![Disks {
                metadata: None,
                disks: vec![Disk {
                    device_name: "/dev/vda".into(),
                    size: 32 << 30,
                    ..Default::default()
                }],
            }],
        }))
    }
}

async fn serve(tls: ServerTlsConfig) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    let router = Server::builder()
        .tls_config(tls)
        .unwrap()
        .add_service(MachineServiceServer::new(Mock))
        .add_service(StorageServiceServer::new(Mock));
    tokio::spawn(router.serve_with_incoming(incoming));
    addr
}

fn relabel(pem: &str) -> String {
    pem.replace("ED25519 PRIVATE KEY", "PRIVATE KEY")
}

/// A maintenance-style server: self-signed certificate, no client auth.
async fn maintenance_server() -> (SocketAddr, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let tls = ServerTlsConfig::new().identity(Identity::from_pem(cert.pem(), key.serialize_pem()));
    (serve(tls).await, cert.pem())
}

/// An apid-style server: certificate from the OS CA, client certificates required.
async fn mtls_server() -> SocketAddr {
    let b = bundle();
    let (crt, key) = issue_leaf(
        &b.os.crt,
        b.os.key.expose_secret(),
        &CertSpec {
            ip_addresses: vec!["127.0.0.1".parse().unwrap()],
            server_auth: true,
            ..Default::default()
        },
    )
    .unwrap();
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(crt, relabel(&key)))
        .client_ca_root(Certificate::from_pem(&b.os.crt));
    serve(tls).await
}

fn admin_config(addr: SocketAddr) -> talos_api::talosconfig::Talosconfig {
    talos_api::config::admin_talosconfig("lab", bundle(), &[addr.to_string()], &[]).unwrap()
}

#[tokio::test]
async fn maintenance_mode_insecure_and_pinned() {
    let (addr, cert_pem) = maintenance_server().await;
    let c = ClientBuilder::maintenance(&addr.to_string())
        .build()
        .unwrap();
    assert!(c.is_maintenance());
    let disks = c.disks().await.unwrap();
    assert_eq!(disks[0].disks[0].device_name, "/dev/vda");
    let applied = c
        .apply_configuration(b"version: v1alpha1\n", ApplyMode::Auto, true)
        .await
        .unwrap();
    assert_eq!(applied[0].mode, ApplyMode::Auto as i32);
    assert_eq!(applied[0].mode_details, "dry_run=true");
    let e = c
        .apply_configuration(b"", ApplyMode::Reboot, false)
        .await
        .unwrap_err();
    assert_eq!(e.grpc_code(), Some(tonic::Code::InvalidArgument));
    assert!(e.to_string().contains("config is empty"), "{e}");

    let fp = spki_fingerprint_pem(&cert_pem).unwrap();
    let pinned = ClientBuilder::maintenance(&addr.to_string())
        .pin_fingerprint(fp)
        .build()
        .unwrap();
    pinned.disks().await.unwrap();
    let wrong = ClientBuilder::maintenance(&addr.to_string())
        .pin_fingerprint("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
        .build()
        .unwrap();
    let e = wrong.disks().await.unwrap_err();
    assert_eq!(e.grpc_code(), Some(tonic::Code::Unavailable), "{e}");

    // An mTLS client cannot verify the self-signed maintenance certificate.
    let strict = ClientBuilder::from_talosconfig(&admin_config(addr), None)
        .unwrap()
        .build()
        .unwrap();
    assert!(strict.version().await.is_err());
}

#[tokio::test]
async fn mtls_from_talosconfig_with_ed25519_client_key() {
    let addr = mtls_server().await;
    let c = ClientBuilder::from_talosconfig(&admin_config(addr), None)
        .unwrap()
        .build()
        .unwrap();
    assert!(!c.is_maintenance());
    let v = c.version().await.unwrap();
    assert_eq!(v[0].version.as_ref().unwrap().tag, "v1.12.11");

    let kc = c.kubeconfig().await.unwrap();
    assert_eq!(kc.as_slice(), b"kind: Config\n");

    // No client certificate: the server refuses the handshake.
    let anon = ClientBuilder::maintenance(&addr.to_string())
        .build()
        .unwrap();
    assert!(anon.version().await.is_err());

    // A server whose certificate is not from our OS CA is refused.
    let other = talos_api::secrets::SecretsBundle::generate_with(
        &talos_api::secrets::SecretsOptions::default()
            .service_account(talos_api::secrets::ServiceAccountKeyKind::EcdsaP256),
    )
    .unwrap();
    let (_, ctx) = admin_config(addr)
        .current()
        .map(|(n, c)| (n.to_string(), c.clone()))
        .unwrap();
    let foreign = ClientBuilder::mtls(
        &addr.to_string(),
        &other.os.crt,
        ctx.crt.as_deref().unwrap(),
        &SecretString::from(ctx.key.as_ref().unwrap().expose_secret()),
    )
    .build()
    .unwrap();
    assert!(foreign.version().await.is_err());
}

#[tokio::test]
async fn proxy_metadata_and_per_node_errors() {
    let addr = mtls_server().await;
    let c = ClientBuilder::from_talosconfig(&admin_config(addr), None)
        .unwrap()
        .build()
        .unwrap();
    let v = c
        .with_nodes(["10.5.0.2".to_string(), "10.5.0.3".to_string()])
        .version()
        .await
        .unwrap();
    let hosts: Vec<_> = v
        .iter()
        .map(|m| m.metadata.as_ref().unwrap().hostname.clone())
        .collect();
    assert_eq!(hosts, ["10.5.0.2", "10.5.0.3"]);
    let one = c.with_node("10.5.0.3").version().await.unwrap();
    assert_eq!(one[0].metadata.as_ref().unwrap().hostname, "10.5.0.3");

    let e = c
        .with_nodes(["10.5.0.2".to_string(), "10.5.0.99".to_string()])
        .version()
        .await
        .unwrap_err();
    match &e {
        Error::Node { method, errors } => {
            assert_eq!(method, "/machine.MachineService/Version");
            assert_eq!(errors.len(), 1);
            assert_eq!(errors[0].node, "10.5.0.99");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        e.to_string(),
        "/machine.MachineService/Version: node 10.5.0.99: rpc error: code = Unavailable desc = connection refused"
    );
}
