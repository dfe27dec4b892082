//! The Talos API client: gRPC over TLS to apid on port 50000.
//!
//! Two ways to connect:
//! - [`ClientBuilder::maintenance`]: a node in maintenance mode serves a self-signed
//!   certificate and wants no client certificate. Server verification is off **only** in this
//!   mode (as `talosctl --insecure`), or pinned by SPKI fingerprint with
//!   [`ClientBuilder::pin_fingerprint`] (as `--cert-fingerprint`).
//! - [`ClientBuilder::from_talosconfig`] / [`ClientBuilder::mtls`]: mutual TLS; the node is
//!   verified against the Talos OS CA and we present the (Ed25519) client certificate.
//!
//! Every reply's `messages[i].metadata.error` is turned into [`Error::Node`] naming the node.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use secrecy::{ExposeSecret, SecretString};
use tonic::transport::{Channel, Endpoint};
use tracing::Instrument as _;
use zeroize::Zeroizing;

use crate::error::{Error, NodeError, Result};
use crate::proto::common;
use crate::proto::machine::{self, machine_service_client::MachineServiceClient};
use crate::proto::storage::{self, storage_service_client::StorageServiceClient};
use crate::talosconfig::Talosconfig;

pub use crate::proto::machine::apply_configuration_request::Mode as ApplyMode;
pub use crate::reset::{ResetOptions, SystemPartition};

/// The apid port.
pub const APID_PORT: u16 = 50000;
/// Largest message the client accepts (talosctl's `GRPCMaxMessageSize`).
pub const MAX_MESSAGE_SIZE: usize = 32 * 1024 * 1024;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Add the default port to an endpoint (`host`, `host:port`, `[v6]`, `[v6]:port`, bare v6).
pub fn endpoint_with_port(endpoint: &str) -> String {
    let e = endpoint
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("tcp://")
        .trim_end_matches('/');
    if let Ok(ip) = e.parse::<std::net::IpAddr>() {
        return std::net::SocketAddr::new(ip, APID_PORT).to_string();
    }
    if e.parse::<std::net::SocketAddr>().is_ok() {
        return e.to_string();
    }
    if e.starts_with('[') && e.ends_with(']') {
        return format!("{e}:{APID_PORT}");
    }
    match e.rsplit_once(':') {
        Some((_, port)) if port.parse::<u16>().is_ok() => e.to_string(),
        _ => format!("{e}:{APID_PORT}"),
    }
}

fn host_of(addr: &str) -> String {
    match addr.rsplit_once(':') {
        Some((h, _)) => h.trim_matches(['[', ']']).to_string(),
        None => addr.to_string(),
    }
}

/// How the server is authenticated, and whether we present a client certificate.
#[derive(Clone)]
enum Tls {
    /// Maintenance mode, no verification (explicitly requested).
    Insecure,
    /// Maintenance mode, server pinned by SPKI SHA-256 fingerprints (base64).
    Pinned(Vec<String>),
    /// Normal mode.
    Mtls {
        ca_pem: String,
        crt_pem: String,
        key_pem: SecretString,
    },
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tls::Insecure => f.write_str("Insecure"),
            Tls::Pinned(p) => f.debug_tuple("Pinned").field(p).finish(),
            Tls::Mtls { .. } => f.write_str("Mtls"),
        }
    }
}

#[derive(Clone, Debug, Default)]
enum Target {
    #[default]
    Endpoint,
    Nodes(Vec<String>),
    Node(String),
}

/// Builds a [`Client`].
#[derive(Clone, Debug)]
pub struct ClientBuilder {
    endpoint: String,
    tls: Tls,
    target: Target,
    server_name: Option<String>,
    connect_timeout: Duration,
    request_timeout: Option<Duration>,
}

impl ClientBuilder {
    /// Maintenance mode with server verification **off** (like `talosctl --insecure`). Use
    /// only for nodes that have no config yet; prefer [`Self::pin_fingerprint`].
    pub fn maintenance(endpoint: &str) -> Self {
        Self::new(endpoint, Tls::Insecure)
    }

    /// Mutual TLS with explicit PEMs (OS CA, client certificate, client key; the key may use
    /// the `ED25519 PRIVATE KEY` label).
    pub fn mtls(endpoint: &str, ca_pem: &str, crt_pem: &str, key_pem: &SecretString) -> Self {
        Self::new(
            endpoint,
            Tls::Mtls {
                ca_pem: ca_pem.to_string(),
                crt_pem: crt_pem.to_string(),
                key_pem: key_pem.clone(),
            },
        )
    }

    /// Mutual TLS from a talosconfig context (`None` = the current one): its first endpoint
    /// and, when set, its `nodes` as the default targets.
    pub fn from_talosconfig(cfg: &Talosconfig, context: Option<&str>) -> Result<Self> {
        let (name, ctx) = match context {
            Some(n) => cfg
                .contexts
                .get_key_value(n)
                .map(|(k, v)| (k.as_str(), v))
                .ok_or_else(|| Error::Talosconfig(format!("context {n:?} is not defined")))?,
            None => cfg.current()?,
        };
        let endpoint = ctx
            .endpoints
            .first()
            .ok_or_else(|| Error::Talosconfig(format!("context {name:?} has no endpoints")))?;
        let missing = |f: &str| Error::Talosconfig(format!("context {name:?} has no {f}"));
        let ca = ctx.ca.as_deref().ok_or_else(|| missing("ca"))?;
        let crt = ctx.crt.as_deref().ok_or_else(|| missing("crt"))?;
        let key = ctx.key.as_ref().ok_or_else(|| missing("key"))?;
        let mut b = Self::mtls(endpoint, ca, crt, key);
        if !ctx.nodes.is_empty() {
            b.target = Target::Nodes(ctx.nodes.clone());
        }
        Ok(b)
    }

    fn new(endpoint: &str, tls: Tls) -> Self {
        ClientBuilder {
            endpoint: endpoint_with_port(endpoint),
            tls,
            target: Target::Endpoint,
            server_name: None,
            connect_timeout: Duration::from_secs(10),
            request_timeout: None,
        }
    }

    /// Pin the maintenance-mode server by SPKI fingerprint (base64 SHA-256) instead of
    /// skipping verification. Ignored for mTLS.
    pub fn pin_fingerprint(mut self, fingerprint: impl Into<String>) -> Self {
        let fp = fingerprint.into();
        self.tls = match self.tls {
            Tls::Insecure => Tls::Pinned(vec![fp]),
            Tls::Pinned(mut v) => {
                v.push(fp);
                Tls::Pinned(v)
            }
            other => other,
        };
        self
    }

    /// Send `nodes` metadata (one-to-many proxying through the endpoint).
    pub fn nodes(mut self, nodes: impl IntoIterator<Item = String>) -> Self {
        self.target = Target::Nodes(nodes.into_iter().collect());
        self
    }

    /// Send `node` metadata (one-to-one proxying through the endpoint).
    pub fn node(mut self, node: impl Into<String>) -> Self {
        self.target = Target::Node(node.into());
        self
    }

    /// TLS server name to verify (default: the endpoint host, as the Go client does).
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// TCP+TLS connect timeout (default 10 s).
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    /// Per-request timeout (default none).
    pub fn request_timeout(mut self, t: Duration) -> Self {
        self.request_timeout = Some(t);
        self
    }

    /// Build the client. Connections are made lazily on the first call.
    pub fn build(self) -> Result<Client> {
        let config = self.rustls_config()?;
        let host = self
            .server_name
            .clone()
            .unwrap_or_else(|| host_of(&self.endpoint));
        let server_name = ServerName::try_from(host.clone())
            .map_err(|e| Error::Tls(format!("invalid server name {host:?}: {e}")))?;
        let connector = TlsConnector {
            config: Arc::new(config),
            server_name,
            addr: self.endpoint.clone(),
            timeout: self.connect_timeout,
        };
        let mut ep = Endpoint::from_shared(format!("http://{}", self.endpoint))
            .map_err(|e| Error::Connect {
                endpoint: self.endpoint.clone(),
                message: e.to_string(),
            })?
            .connect_timeout(self.connect_timeout)
            .initial_stream_window_size(65_535 * 32)
            .initial_connection_window_size(65_535 * 16);
        if let Some(t) = self.request_timeout {
            ep = ep.timeout(t);
        }
        let channel = ep.connect_with_connector_lazy(connector);
        Ok(Client {
            channel,
            endpoint: self.endpoint,
            target: self.target,
            maintenance: !matches!(self.tls, Tls::Mtls { .. }),
        })
    }

    fn rustls_config(&self) -> Result<rustls::ClientConfig> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(e.to_string()))?;
        let mut cfg = match &self.tls {
            Tls::Insecure => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(MaintenanceVerifier {
                    pins: None,
                    provider: provider(),
                }))
                .with_no_client_auth(),
            Tls::Pinned(p) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(MaintenanceVerifier {
                    pins: Some(p.clone()),
                    provider: provider(),
                }))
                .with_no_client_auth(),
            Tls::Mtls {
                ca_pem,
                crt_pem,
                key_pem,
            } => {
                let mut roots = rustls::RootCertStore::empty();
                for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
                    let c = c.map_err(|e| Error::Tls(format!("talosconfig ca: {e}")))?;
                    roots
                        .add(c)
                        .map_err(|e| Error::Tls(format!("talosconfig ca: {e}")))?;
                }
                if roots.is_empty() {
                    return Err(Error::Tls("talosconfig ca holds no certificate".into()));
                }
                let certs = CertificateDer::pem_slice_iter(crt_pem.as_bytes())
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|e| Error::Tls(format!("client certificate: {e}")))?;
                if certs.is_empty() {
                    return Err(Error::Tls("client certificate PEM is empty".into()));
                }
                let relabeled = crate::crypto::relabel_for_rustls(key_pem.expose_secret());
                let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(relabeled.as_bytes())
                    .map_err(|e| Error::Tls(format!("client key: {e}")))?;
                builder
                    .with_root_certificates(roots)
                    .with_client_auth_cert(certs, key)
                    .map_err(|e| Error::Tls(format!("client certificate/key: {e}")))?
            }
        };
        cfg.alpn_protocols = vec![b"h2".to_vec()];
        Ok(cfg)
    }
}

/// Maintenance-mode verifier: accepts the node's self-signed certificate, either any (when
/// explicitly asked for) or only one whose SPKI fingerprint is pinned. Handshake signatures
/// are still verified, so the peer must hold the certificate's key.
#[derive(Debug)]
struct MaintenanceVerifier {
    pins: Option<Vec<String>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for MaintenanceVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        if let Some(pins) = &self.pins {
            let fp = crate::crypto::spki_fingerprint(end_entity)
                .map_err(|e| rustls::Error::General(e.to_string()))?;
            if !pins.iter().any(|p| p == &fp) {
                return Err(rustls::Error::General(format!(
                    "server certificate fingerprint {fp} does not match the pinned one"
                )));
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Dials TCP and runs the rustls handshake (ALPN h2) for tonic.
#[derive(Clone)]
struct TlsConnector {
    config: Arc<rustls::ClientConfig>,
    server_name: ServerName<'static>,
    addr: String,
    timeout: Duration,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type TlsIo = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

impl tower_service::Service<http::Uri> for TlsConnector {
    type Response = TlsIo;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = std::result::Result<TlsIo, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<std::result::Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: http::Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let fut = async {
                let tcp = tokio::net::TcpStream::connect(&this.addr).await?;
                tcp.set_nodelay(true)?;
                let tls = tokio_rustls::TlsConnector::from(this.config.clone())
                    .connect(this.server_name.clone(), tcp)
                    .await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            };
            match tokio::time::timeout(this.timeout, fut).await {
                Ok(r) => r.map_err(|e| Box::new(e) as BoxError),
                Err(_) => Err(format!("connect to {} timed out", this.addr).into()),
            }
        })
    }
}

/// A Talos API client. Cheap to clone (one shared HTTP/2 connection).
#[derive(Clone, Debug)]
pub struct Client {
    channel: Channel,
    endpoint: String,
    target: Target,
    maintenance: bool,
}

pub(crate) trait Envelope {
    type Item: WithMetadata;
    fn into_items(self) -> Vec<Self::Item>;
}

pub(crate) trait WithMetadata {
    fn meta(&self) -> Option<&common::Metadata>;
}

macro_rules! envelope {
    ($($resp:ty => $item:ty),* $(,)?) => {$(
        impl Envelope for $resp {
            type Item = $item;
            fn into_items(self) -> Vec<$item> { self.messages }
        }
        impl WithMetadata for $item {
            fn meta(&self) -> Option<&common::Metadata> { self.metadata.as_ref() }
        }
    )*};
}

envelope! {
    machine::VersionResponse => machine::Version,
    machine::ApplyConfigurationResponse => machine::ApplyConfiguration,
    machine::BootstrapResponse => machine::Bootstrap,
    machine::ServiceListResponse => machine::ServiceList,
    machine::RebootResponse => machine::Reboot,
    machine::ResetResponse => machine::Reset,
    machine::UpgradeResponse => machine::Upgrade,
    machine::ShutdownResponse => machine::Shutdown,
    machine::EtcdMemberListResponse => machine::EtcdMembers,
    machine::EtcdLeaveClusterResponse => machine::EtcdLeaveCluster,
    machine::EtcdRemoveMemberByIdResponse => machine::EtcdRemoveMemberById,
    machine::EtcdRecoverResponse => machine::EtcdRecover,
    storage::DisksResponse => storage::Disks,
}

pub(crate) fn transport_error(method: &str, endpoint: &str, status: tonic::Status) -> Error {
    // tonic reports connection failures as Unavailable with the source chain in the message.
    let mut e = Error::grpc(method, status);
    if let Error::Grpc { message, .. } = &mut e
        && message.is_empty()
    {
        *message = format!("{endpoint}: unavailable");
    }
    e
}

impl Client {
    /// The endpoint (`host:port`) this client dials.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Whether this client was built for maintenance mode (no client certificate).
    pub fn is_maintenance(&self) -> bool {
        self.maintenance
    }

    /// The same connection, targeting `nodes` (one-to-many proxy metadata).
    pub fn with_nodes(&self, nodes: impl IntoIterator<Item = String>) -> Client {
        let mut c = self.clone();
        c.target = Target::Nodes(nodes.into_iter().collect());
        c
    }

    /// The same connection, targeting one `node` (one-to-one proxy metadata).
    pub fn with_node(&self, node: impl Into<String>) -> Client {
        let mut c = self.clone();
        c.target = Target::Node(node.into());
        c
    }

    /// The same connection, served by the endpoint itself (no proxy metadata).
    pub fn direct(&self) -> Client {
        let mut c = self.clone();
        c.target = Target::Endpoint;
        c
    }

    /// Raw `MachineService` stub (escape hatch); add proxy metadata yourself.
    pub fn machine_service(&self) -> MachineServiceClient<Channel> {
        MachineServiceClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE_SIZE)
    }

    /// Raw `StorageService` stub (escape hatch).
    pub fn storage_service(&self) -> StorageServiceClient<Channel> {
        StorageServiceClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE_SIZE)
    }

    /// The shared HTTP/2 channel (for the other services' stubs in this crate).
    pub(crate) fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// A request with one-to-one proxy metadata (`node`), as talosctl sends COSI calls:
    /// one targeted node becomes `node`; several are refused.
    pub(crate) fn one_to_one_request<T>(&self, method: &str, msg: T) -> Result<tonic::Request<T>> {
        let mut r = tonic::Request::new(msg);
        let node = match &self.target {
            Target::Endpoint => None,
            Target::Node(n) => Some(n.clone()),
            Target::Nodes(nodes) if nodes.len() <= 1 => nodes.first().cloned(),
            Target::Nodes(_) => {
                return Err(Error::InvalidConfig(format!(
                    "{method} reads one node at a time; target a single node"
                )));
            }
        };
        if let Some(v) = node.and_then(|n| n.parse().ok()) {
            r.metadata_mut().insert("node", v);
        }
        Ok(r)
    }

    pub(crate) fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        let md = r.metadata_mut();
        match &self.target {
            Target::Endpoint => {}
            Target::Nodes(nodes) => {
                for n in nodes {
                    if let Ok(v) = n.parse() {
                        md.append("nodes", v);
                    }
                }
            }
            Target::Node(n) => {
                if let Ok(v) = n.parse() {
                    md.insert("node", v);
                }
            }
        }
        r
    }

    /// The error a streamed chunk's metadata reports (a proxied node's failure), naming the
    /// node (this endpoint when the metadata has no hostname).
    pub(crate) fn chunk_error(&self, method: &str, chunk: &common::Data) -> Option<Error> {
        let m = chunk.metadata.as_ref().filter(|m| !m.error.is_empty())?;
        Some(Error::Node {
            method: method.into(),
            errors: vec![NodeError {
                node: if m.hostname.is_empty() {
                    self.endpoint.clone()
                } else {
                    m.hostname.clone()
                },
                message: m.error.clone(),
            }],
        })
    }

    pub(crate) fn check<E: Envelope>(&self, method: &str, resp: E) -> Result<Vec<E::Item>> {
        let items = resp.into_items();
        let errors: Vec<NodeError> = items
            .iter()
            .filter_map(|i| {
                let m = i.meta()?;
                if m.error.is_empty() {
                    return None;
                }
                let node = if m.hostname.is_empty() {
                    self.endpoint.clone()
                } else {
                    m.hostname.clone()
                };
                Some(NodeError {
                    node,
                    message: m.error.clone(),
                })
            })
            .collect();
        if errors.is_empty() {
            Ok(items)
        } else {
            Err(Error::Node {
                method: method.to_string(),
                errors,
            })
        }
    }

    async fn unary<Req, Resp, F, Fut>(
        &self,
        method: &str,
        req: Req,
        call: F,
    ) -> Result<Vec<Resp::Item>>
    where
        Resp: Envelope,
        F: FnOnce(tonic::Request<Req>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let span = tracing::debug_span!("talos_rpc", method, endpoint = %self.endpoint);
        async {
            let resp = call(self.request(req))
                .await
                .map_err(|s| transport_error(method, &self.endpoint, s))?;
            self.check(method, resp.into_inner())
        }
        .instrument(span)
        .await
    }

    /// `MachineService/Version`.
    pub async fn version(&self) -> Result<Vec<machine::Version>> {
        let mut c = self.machine_service();
        self.unary("/machine.MachineService/Version", (), |r| async move {
            c.version(r).await
        })
        .await
    }

    /// `MachineService/ApplyConfiguration` with `mode` (maintenance mode accepts REBOOT,
    /// AUTO and TRY).
    pub async fn apply_configuration(
        &self,
        config: &[u8],
        mode: ApplyMode,
        dry_run: bool,
    ) -> Result<Vec<machine::ApplyConfiguration>> {
        self.apply_configuration_with(machine::ApplyConfigurationRequest {
            data: config.to_vec(),
            mode: mode as i32,
            dry_run,
            try_mode_timeout: None,
        })
        .await
    }

    /// `MachineService/ApplyConfiguration` with a full request (e.g. TRY timeout).
    pub async fn apply_configuration_with(
        &self,
        req: machine::ApplyConfigurationRequest,
    ) -> Result<Vec<machine::ApplyConfiguration>> {
        let data = Zeroizing::new(req.data.clone());
        let req = machine::ApplyConfigurationRequest {
            data: data.to_vec(),
            ..req
        };
        let mut c = self.machine_service();
        self.unary(
            "/machine.MachineService/ApplyConfiguration",
            req,
            |r| async move { c.apply_configuration(r).await },
        )
        .await
    }

    /// `MachineService/Bootstrap` (once per cluster, on one control-plane node). A second
    /// call fails with `AlreadyExists`; see [`Error::grpc_code`].
    pub async fn bootstrap(&self) -> Result<Vec<machine::Bootstrap>> {
        self.bootstrap_with(machine::BootstrapRequest::default())
            .await
    }

    /// `MachineService/Bootstrap` with a full request (etcd recovery).
    pub async fn bootstrap_with(
        &self,
        req: machine::BootstrapRequest,
    ) -> Result<Vec<machine::Bootstrap>> {
        let mut c = self.machine_service();
        self.unary("/machine.MachineService/Bootstrap", req, |r| async move {
            c.bootstrap(r).await
        })
        .await
    }

    /// `MachineService/Kubeconfig`: reads the whole stream and returns the kubeconfig file
    /// from the gzip'd tar.
    pub async fn kubeconfig(&self) -> Result<Zeroizing<Vec<u8>>> {
        const M: &str = "/machine.MachineService/Kubeconfig";
        let span = tracing::debug_span!("talos_rpc", method = M, endpoint = %self.endpoint);
        async {
            let mut c = self.machine_service();
            let mut stream = c
                .kubeconfig(self.request(()))
                .await
                .map_err(|s| transport_error(M, &self.endpoint, s))?
                .into_inner();
            let mut buf = Zeroizing::new(Vec::new());
            loop {
                match stream.message().await {
                    Ok(Some(chunk)) => {
                        let chunk: common::Data = chunk;
                        if let Some(e) = self.chunk_error(M, &chunk) {
                            return Err(e);
                        }
                        buf.extend_from_slice(&chunk.bytes);
                    }
                    Ok(None) => break,
                    // Talos' ReadStream treats these as a normal end of stream.
                    Err(s)
                        if matches!(
                            s.code(),
                            tonic::Code::Cancelled | tonic::Code::DeadlineExceeded
                        ) && !buf.is_empty() =>
                    {
                        break;
                    }
                    Err(s) => return Err(Error::grpc(M, s)),
                }
            }
            crate::kubeconfig::extract_first_file(&buf)
        }
        .instrument(span)
        .await
    }

    /// `MachineService/Read`: a file's contents (the whole stream).
    pub async fn read_file(&self, path: &str) -> Result<Vec<u8>> {
        const M: &str = "/machine.MachineService/Read";
        let mut c = self.machine_service();
        let mut stream = c
            .read(self.request(machine::ReadRequest {
                path: path.to_string(),
            }))
            .await
            .map_err(|s| transport_error(M, &self.endpoint, s))?
            .into_inner();
        let mut buf = Vec::new();
        loop {
            match stream.message().await {
                Ok(Some(chunk)) => {
                    let chunk: common::Data = chunk;
                    if let Some(e) = self.chunk_error(M, &chunk) {
                        return Err(e);
                    }
                    buf.extend_from_slice(&chunk.bytes);
                }
                Ok(None) => break,
                Err(s) => return Err(Error::grpc(M, s)),
            }
        }
        Ok(buf)
    }

    /// The node's boot ID (`/proc/sys/kernel/random/boot_id`): it changes on every boot, so
    /// a reboot is seen as a new ID (as `talosctl reboot --wait` does: siderolabs/talos
    /// `cmd/talosctl/pkg/talos/action/tracker.go`, `getBootID`).
    pub async fn boot_id(&self) -> Result<String> {
        let b = self.read_file("/proc/sys/kernel/random/boot_id").await?;
        Ok(String::from_utf8_lossy(&b).trim().to_string())
    }

    /// `MachineService/ServiceList`.
    pub async fn service_list(&self) -> Result<Vec<machine::ServiceList>> {
        let mut c = self.machine_service();
        self.unary("/machine.MachineService/ServiceList", (), |r| async move {
            c.service_list(r).await
        })
        .await
    }

    /// `MachineService/Reboot`.
    pub async fn reboot(
        &self,
        mode: machine::reboot_request::Mode,
    ) -> Result<Vec<machine::Reboot>> {
        let mut c = self.machine_service();
        let req = machine::RebootRequest { mode: mode as i32 };
        self.unary("/machine.MachineService/Reboot", req, |r| async move {
            c.reboot(r).await
        })
        .await
    }

    /// `MachineService/Reset`.
    pub async fn reset(&self, req: machine::ResetRequest) -> Result<Vec<machine::Reset>> {
        let mut c = self.machine_service();
        self.unary("/machine.MachineService/Reset", req, |r| async move {
            c.reset(r).await
        })
        .await
    }

    /// `MachineService/Upgrade`.
    pub async fn upgrade(&self, req: machine::UpgradeRequest) -> Result<Vec<machine::Upgrade>> {
        let mut c = self.machine_service();
        self.unary("/machine.MachineService/Upgrade", req, |r| async move {
            c.upgrade(r).await
        })
        .await
    }

    /// `MachineService/EtcdMemberList`.
    pub async fn etcd_member_list(&self, query_local: bool) -> Result<Vec<machine::EtcdMembers>> {
        let mut c = self.machine_service();
        let req = machine::EtcdMemberListRequest { query_local };
        self.unary(
            "/machine.MachineService/EtcdMemberList",
            req,
            |r| async move { c.etcd_member_list(r).await },
        )
        .await
    }

    /// `MachineService/EtcdLeaveCluster`: the node removes its own etcd member (through the
    /// other control planes), stops etcd and empties its data directory. etcd refuses when
    /// the removal would break the active quorum (`etcdserver: unhealthy cluster`).
    pub async fn etcd_leave_cluster(&self) -> Result<Vec<machine::EtcdLeaveCluster>> {
        let mut c = self.machine_service();
        self.unary(
            "/machine.MachineService/EtcdLeaveCluster",
            machine::EtcdLeaveClusterRequest {},
            |r| async move { c.etcd_leave_cluster(r).await },
        )
        .await
    }

    /// `MachineService/EtcdRemoveMemberByID`: remove another (e.g. dead) member, called on a
    /// healthy control plane. An unknown ID fails with `NotFound` ([`Error::is_not_found`]).
    pub async fn etcd_remove_member_by_id(
        &self,
        member_id: u64,
    ) -> Result<Vec<machine::EtcdRemoveMemberById>> {
        let mut c = self.machine_service();
        self.unary(
            "/machine.MachineService/EtcdRemoveMemberByID",
            machine::EtcdRemoveMemberByIdRequest { member_id },
            |r| async move { c.etcd_remove_member_by_id(r).await },
        )
        .await
    }

    /// `MachineService/Reset` with [`ResetOptions`].
    pub async fn reset_with(&self, opts: &ResetOptions) -> Result<Vec<machine::Reset>> {
        self.reset(opts.to_request()).await
    }

    /// `StorageService/Disks` (served in maintenance mode too).
    pub async fn disks(&self) -> Result<Vec<storage::Disks>> {
        let mut c = self.storage_service();
        self.unary("/storage.StorageService/Disks", (), |r| async move {
            c.disks(r).await
        })
        .await
    }
}

/// Probe like terraform-provider-talos: a node answering `Disks` without a client certificate
/// is in maintenance mode. Returns `Ok(false)` when the insecure handshake or call is refused.
pub async fn is_maintenance(endpoint: &str, timeout: Duration) -> Result<bool> {
    let c = ClientBuilder::maintenance(endpoint)
        .connect_timeout(timeout)
        .request_timeout(timeout)
        .build()?;
    match c.disks().await {
        Ok(_) => Ok(true),
        Err(Error::Grpc { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}
