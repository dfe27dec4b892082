//! `EtcdSnapshot`, `EtcdRecover` and `Bootstrap` with `recover_etcd` against an in-process
//! tonic server over TLS: chunks arrive in order in the sink, node errors and empty
//! snapshots are errors, uploads arrive whole, the recover flags are on the wire.

use std::net::SocketAddr;

use futures_util::StreamExt as _;
use talos_api::Error;
use talos_api::client::ClientBuilder;
use talos_api::etcd::RecoverOptions;
use talos_api::proto::common::{Data, Metadata};
use talos_api::proto::machine::machine_service_server::{MachineService, MachineServiceServer};
use talos_api::proto::machine::{
    Bootstrap, BootstrapRequest, BootstrapResponse, EtcdRecover, EtcdRecoverResponse,
    EtcdSnapshotRequest,
};
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};

struct Mock;

fn node<T>(r: &Request<T>) -> String {
    r.metadata()
        .get("node")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

fn meta(hostname: String, error: String) -> Option<Metadata> {
    Some(Metadata {
        hostname,
        error,
        status: None,
    })
}

#[tonic::async_trait]
impl MachineService for Mock {
    async fn etcd_snapshot(
        &self,
        r: Request<EtcdSnapshotRequest>,
    ) -> Result<Response<tonic::codegen::BoxStream<Data>>, Status> {
        let chunks: Vec<Result<Data, Status>> = match node(&r).as_str() {
            "failing" => vec![Ok(Data {
                metadata: meta("failing".into(), "etcd is not running".into()),
                bytes: vec![],
            })],
            "empty" => vec![],
            "broken" => vec![
                Ok(Data {
                    metadata: None,
                    bytes: b"abc".to_vec(),
                }),
                Err(Status::internal("stream broke")),
            ],
            _ => ["abc", "def", "g"]
                .into_iter()
                .map(|c| {
                    Ok(Data {
                        metadata: None,
                        bytes: c.as_bytes().to_vec(),
                    })
                })
                .collect(),
        };
        Ok(Response::new(Box::pin(futures_util::stream::iter(chunks))))
    }

    async fn etcd_recover(
        &self,
        r: Request<tonic::Streaming<Data>>,
    ) -> Result<Response<EtcdRecoverResponse>, Status> {
        let mut s = r.into_inner();
        let mut all = Vec::new();
        let mut n = 0;
        while let Some(c) = s.next().await {
            all.extend(c?.bytes);
            n += 1;
        }
        // The upload echoed back: chunk count and content.
        Ok(Response::new(EtcdRecoverResponse {
            messages: vec![EtcdRecover {
                metadata: meta(format!("{n}:{}", all.len()), String::new()),
            }],
        }))
    }

    async fn bootstrap(
        &self,
        r: Request<BootstrapRequest>,
    ) -> Result<Response<BootstrapResponse>, Status> {
        let b = r.into_inner();
        Ok(Response::new(BootstrapResponse {
            messages: vec![Bootstrap {
                metadata: meta(
                    format!("{}/{}", b.recover_etcd, b.recover_skip_hash_check),
                    String::new(),
                ),
            }],
        }))
    }
}

async fn server() -> SocketAddr {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let tls = ServerTlsConfig::new().identity(Identity::from_pem(
        cert.pem(),
        key.serialize_pem()
            .replace("ED25519 PRIVATE KEY", "PRIVATE KEY"),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    let router = Server::builder()
        .tls_config(tls)
        .unwrap()
        .add_service(MachineServiceServer::new(Mock));
    tokio::spawn(router.serve_with_incoming(incoming));
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_recover_and_bootstrap_recover() {
    let addr = server().await;
    // The mock's certificate is self-signed: the maintenance-mode (insecure) transport.
    let c = ClientBuilder::maintenance(&addr.to_string())
        .build()
        .unwrap();

    let mut sink = Vec::new();
    let n = c.etcd_snapshot(&mut sink).await.unwrap();
    assert_eq!((n, sink.as_slice()), (7, &b"abcdefg"[..]));

    let e = c
        .with_node("failing")
        .etcd_snapshot(&mut Vec::new())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Node { errors, .. } if errors[0].node == "failing"
            && errors[0].message == "etcd is not running"),
        "{e}"
    );
    let e = c
        .with_node("empty")
        .etcd_snapshot(&mut Vec::new())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("empty snapshot"), "{e}");
    let e = c
        .with_node("broken")
        .etcd_snapshot(&mut Vec::new())
        .await
        .unwrap_err();
    assert_eq!(e.grpc_code(), Some(tonic::Code::Internal), "{e}");

    // A sink that fails: the write error, naming what was written.
    struct Full;
    impl std::io::Write for Full {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk full"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let e = c.etcd_snapshot(&mut Full).await.unwrap_err();
    assert!(e.to_string().contains("disk full"), "{e}");

    let data = std::sync::Arc::new(zeroize::Zeroizing::new(vec![
        7u8;
        talos_api::etcd::UPLOAD_CHUNK
            * 2
            + 5
    ]));
    let r = c
        .etcd_recover(talos_api::etcd::chunks(data.clone()))
        .await
        .unwrap();
    assert_eq!(
        r[0].metadata.as_ref().unwrap().hostname,
        format!("3:{}", data.len())
    );

    let b = c
        .bootstrap_recover(RecoverOptions::new().skip_hash_check(true))
        .await
        .unwrap();
    assert_eq!(b[0].metadata.as_ref().unwrap().hostname, "true/true");
    let b = c.bootstrap_recover(RecoverOptions::new()).await.unwrap();
    assert_eq!(b[0].metadata.as_ref().unwrap().hostname, "true/false");
}
