//! The node's apid: maintenance-mode and normal-mode gRPC services.

use std::sync::Arc;
use std::time::Duration;

use talos_api::proto::common::{Data, Metadata};
use talos_api::proto::machine::apply_configuration_request::Mode;
use talos_api::proto::machine::machine_service_server::{MachineService, MachineServiceServer};
use talos_api::proto::machine::*;
use talos_api::proto::storage::storage_service_server::{StorageService, StorageServiceServer};
use talos_api::proto::storage::{self, DisksResponse};
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};

use super::APID_PORT;
use super::node::{Node, ServerHandle, bind};

const NOT_IN_MAINTENANCE: &str = "API is not implemented in maintenance mode";
const TALOS_TAG: &str = talos_api::config::TALOS_VERSION;

#[derive(Clone)]
pub(super) struct Apid {
    pub(super) node: Arc<Node>,
    pub(super) maintenance: bool,
    /// A call forwarded by another node's apid (already authorised there).
    pub(super) trusted: bool,
}

/// Replies of the `repeated X messages = 1` shape, whose items carry `metadata = 1`.
trait Envelope: Sized {
    type Item: Default;
    fn into_items(self) -> Vec<Self::Item>;
    fn from_items(items: Vec<Self::Item>) -> Self;
    fn set_meta(item: &mut Self::Item, meta: Metadata);
}

macro_rules! envelope {
    ($($resp:ty => $item:ty),* $(,)?) => {$(
        impl Envelope for $resp {
            type Item = $item;
            fn into_items(self) -> Vec<$item> { self.messages }
            fn from_items(messages: Vec<$item>) -> Self { Self { messages } }
            fn set_meta(item: &mut $item, meta: Metadata) { item.metadata = Some(meta); }
        }
    )*};
}

envelope! {
    VersionResponse => Version,
    ApplyConfigurationResponse => ApplyConfiguration,
    BootstrapResponse => Bootstrap,
    ServiceListResponse => ServiceList,
    RebootResponse => Reboot,
    ResetResponse => Reset,
    UpgradeResponse => Upgrade,
    EtcdMemberListResponse => EtcdMembers,
    EtcdLeaveClusterResponse => EtcdLeaveCluster,
    EtcdRemoveMemberByIdResponse => EtcdRemoveMemberById,
    DisksResponse => storage::Disks,
}

type BoxFut<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

/// The `nodes` (one-to-many) or `node` (one-to-one) proxy metadata of a request.
pub(super) fn proxy_targets<T>(req: &Request<T>) -> Result<Option<Vec<String>>, Status> {
    let values = |key: &str| -> Vec<String> {
        req.metadata()
            .get_all(key)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect()
    };
    let nodes = values("nodes");
    let node = values("node");
    if node.len() > 1 {
        return Err(Status::invalid_argument(
            "node metadata must be single-valued",
        ));
    }
    if !nodes.is_empty() {
        return Ok(Some(nodes));
    }
    Ok(if node.is_empty() { None } else { Some(node) })
}

fn meta() -> Option<Metadata> {
    None
}

/// The installed peer a proxy target names (IP or hostname) as a forwarded-to apid, or the
/// dial error real apid reports for a target nothing answers on.
pub(super) fn dial(peers: &[Arc<Node>], t: &str) -> Result<Apid, Status> {
    peers
        .iter()
        // A node down for a reboot does not answer (components.rs); another node's apid
        // reaches it only once its normal-mode apid runs.
        .find(|n| {
            (n.ip.to_string() == t || n.hostname() == t)
                && n.state().installed
                && n.is_up()
                && n.normal_up.load(std::sync::atomic::Ordering::SeqCst)
        })
        .map(|node| Apid {
            node: Arc::clone(node),
            maintenance: false,
            trusted: true,
        })
        .ok_or_else(|| {
            Status::unavailable(format!(
                "connection error: desc = \"transport: Error while dialing: dial tcp {t}:50000: connect: connection refused\""
            ))
        })
}

/// How apid words a failed target's error in the reply's metadata.
fn rpc_error_text(st: &Status) -> String {
    format!("rpc error: code = {:?} desc = {}", st.code(), st.message())
}

/// Roles from the client certificate's Organization values (normal mode).
pub(super) fn roles<T>(req: &Request<T>) -> Vec<String> {
    let Some(certs) = req.peer_certs() else {
        return vec![];
    };
    let Some(first) = certs.first() else {
        return vec![];
    };
    match x509_parser::parse_x509_certificate(first.as_ref()) {
        Ok((_, c)) => c
            .subject()
            .iter_organization()
            .filter_map(|o| o.as_str().ok().map(str::to_string))
            .collect(),
        Err(_) => vec![],
    }
}

impl Apid {
    pub(super) fn stale(&self) -> Result<(), Status> {
        // A maintenance server still draining after the install reboot.
        if self.maintenance && self.node.state().installed {
            return Err(Status::unavailable("node is rebooting"));
        }
        Ok(())
    }

    pub(super) fn require<T>(&self, req: &Request<T>, allowed: &[&str]) -> Result<(), Status> {
        self.stale()?;
        if self.maintenance || self.trusted {
            return Ok(());
        }
        let r = roles(req);
        if r.iter().any(|x| allowed.contains(&x.as_str())) {
            Ok(())
        } else {
            Err(Status::permission_denied("not authorized"))
        }
    }

    /// apid's proxying: every target gets the call (this node or another simulated node in
    /// normal mode), replies are concatenated with `metadata.hostname` set to the target, and a
    /// failing target contributes a message with `metadata.error` instead of failing the call.
    async fn proxy<Req, Resp, F>(
        &self,
        targets: Vec<String>,
        req: Request<Req>,
        call: F,
    ) -> Result<Response<Resp>, Status>
    where
        Req: Clone + Send + 'static,
        Resp: Envelope + Send + 'static,
        F: Fn(Apid, Request<Req>) -> BoxFut<Result<Response<Resp>, Status>>,
    {
        let inner = req.into_inner();
        let peers = self.peers();
        let mut all = Vec::new();
        for t in targets {
            let result = match dial(&peers, &t) {
                Ok(apid) => call(apid, Request::new(inner.clone())).await,
                Err(st) => Err(st),
            };
            match result {
                Ok(r) => {
                    for mut item in r.into_inner().into_items() {
                        Resp::set_meta(
                            &mut item,
                            Metadata {
                                hostname: t.clone(),
                                error: String::new(),
                                status: None,
                            },
                        );
                        all.push(item);
                    }
                }
                Err(st) => {
                    let mut item = Resp::Item::default();
                    let text = rpc_error_text(&st);
                    Resp::set_meta(
                        &mut item,
                        Metadata {
                            hostname: t.clone(),
                            error: text.clone(),
                            status: Some(talos_api::proto::google::rpc::Status {
                                code: st.code() as i32,
                                message: text,
                                details: vec![],
                            }),
                        },
                    );
                    all.push(item);
                }
            }
        }
        Ok(Response::new(Resp::from_items(all)))
    }

    /// Where a client's call is to be proxied: only normal-mode apid proxies, and never a call
    /// another apid already forwarded.
    fn forward_targets<T>(&self, req: &Request<T>) -> Result<Option<Vec<String>>, Status> {
        if self.maintenance || self.trusted {
            return Ok(None);
        }
        proxy_targets(req)
    }

    /// Reboots the node shortly, once the reply is on its way (as Talos acknowledges first).
    fn reboot_soon(&self) {
        let node = self.node.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            node.reboot().await;
        });
    }

    /// Whether this control plane's etcd runs: its data directory holds a member of its
    /// cluster (bootstrapped here, or joined: `etcd.rs`).
    fn etcd_joined(&self) -> bool {
        self.node
            .runtime
            .upgrade()
            .and_then(|rt| rt.etcd_member_of(&self.node))
            .is_some()
    }

    /// `machinehelper.CheckControlplane`: etcd APIs exist on control planes only.
    fn check_controlplane(&self, api: &str) -> Result<(), Status> {
        match self.node.facts() {
            None => Err(Status::unimplemented(format!(
                "machine type is not set, cannot use {api} API"
            ))),
            Some(f) if f.machine_type == "worker" => Err(Status::unimplemented(format!(
                "{api} is only available on control plane nodes"
            ))),
            Some(_) => Ok(()),
        }
    }

    /// `etcd.Client.LeaveCluster` (internal/pkg/etcd/etcd.go): remove the local member
    /// (already gone counts as done), then etcd stops and its data directory is emptied.
    fn leave_etcd(&self) -> Result<(), String> {
        let rt = self.runtime().map_err(|e| e.message().to_string())?;
        let Some(me) = rt.etcd_member_of(&self.node) else {
            return Ok(());
        };
        let cluster_id = self.node.facts().map(|f| f.cluster_id).unwrap_or_default();
        match rt.etcd_remove(&cluster_id, me.id, Some(me.id)) {
            Ok(_) | Err(super::etcd::EtcdError::MemberNotFound) => {
                let _ = self.node.update(|s| s.etcd_member = None);
                Ok(())
            }
            Err(e) => Err(format!("failed to remove member {}: {}", me.id, e.text())),
        }
    }

    fn runtime(&self) -> Result<Arc<super::Inner>, Status> {
        self.node
            .runtime
            .upgrade()
            .ok_or_else(|| Status::unavailable("node is shutting down"))
    }

    /// Every simulated node of this lab (none once the lab is gone).
    pub(super) fn peers(&self) -> Vec<Arc<Node>> {
        self.node
            .runtime
            .upgrade()
            .map(|rt| rt.all_nodes())
            .unwrap_or_default()
    }

    fn admin_only<T>(&self, req: &Request<T>) -> Result<(), Status> {
        if self.maintenance {
            self.stale()?;
            return Err(Status::unimplemented(NOT_IN_MAINTENANCE));
        }
        self.require(req, &["os:admin"])
    }

    fn validate(
        &self,
        data: &[u8],
    ) -> Result<(talos_api::config::MachineConfig, Vec<String>), Status> {
        let text = std::str::from_utf8(data)
            .map_err(|_| Status::invalid_argument("failed to parse config: not UTF-8"))?;
        let cfg = talos_api::config::MachineConfig::from_yaml(text, "config")
            .map_err(|e| Status::invalid_argument(format!("failed to parse config: {e}")))?;
        let warnings = cfg.validate().map_err(|e| {
            Status::invalid_argument(format!("configuration validation failed: {e}"))
        })?;
        let disk = cfg
            .v1alpha1()
            .and_then(|v| v.get("machine"))
            .and_then(|m| m.get("install"))
            .and_then(|i| i.get("disk"))
            .and_then(|d| d.as_str())
            .unwrap_or_default()
            .to_string();
        if !disk.is_empty() && !self.node.disks.iter().any(|d| d.device == disk && !d.cdrom) {
            return Err(Status::invalid_argument(format!(
                "configuration validation failed: 1 error occurred:\n\t* specified install disk does not exist: \"{disk}\"\n\n"
            )));
        }
        Ok((cfg, warnings))
    }
}

#[tonic::async_trait]
impl MachineService for Apid {
    async fn apply_configuration(
        &self,
        req: Request<ApplyConfigurationRequest>,
    ) -> Result<Response<ApplyConfigurationResponse>, Status> {
        self.require(&req, &["os:admin"])?;
        if let Some(t) = self.forward_targets(&req)? {
            return self
                .proxy(t, req, |a, r| {
                    Box::pin(async move { a.apply_configuration(r).await })
                })
                .await;
        }
        let r = req.into_inner();
        let mode = Mode::try_from(r.mode).map_err(|_| Status::invalid_argument("unknown mode"))?;
        if self.maintenance && matches!(mode, Mode::NoReboot | Mode::Staged) {
            return Err(Status::unimplemented(format!(
                "apply configuration in {} mode is not supported in maintenance mode",
                mode.as_str_name().to_lowercase().replace('_', " ")
            )));
        }
        let (cfg, warnings) = self.validate(&r.data)?;
        let text = cfg.to_yaml().to_string();
        if r.dry_run {
            let details = if self.maintenance {
                "Dry run summary:\nNode is running in maintenance mode and does not have a config yet.".to_string()
            } else {
                "Dry run summary:\nApplied configuration without a reboot (no changes).".to_string()
            };
            return Ok(Response::new(ApplyConfigurationResponse {
                messages: vec![ApplyConfiguration {
                    metadata: meta(),
                    warnings,
                    mode: r.mode,
                    mode_details: details,
                }],
            }));
        }
        if self.maintenance {
            // Install to disk and reboot into normal mode, after this reply is sent.
            // The installer writes the image it was given: that version and schematic run
            // from now on (the ISO only carried maintenance mode).
            let installed = super::day2::install_image(&text)
                .as_deref()
                .and_then(super::day2::image_version);
            self.node
                .update(|s| {
                    s.config = Some(text);
                    s.installed = true;
                    s.bootstrapped = false;
                    if let Some((v, id)) = installed {
                        s.version = Some(v);
                        s.schematic = Some(id);
                    }
                })
                .map_err(|e| Status::internal(e.to_string()))?;
            self.reboot_soon();
            let used = if mode == Mode::Auto {
                Mode::Reboot
            } else {
                mode
            };
            return Ok(Response::new(ApplyConfigurationResponse {
                messages: vec![ApplyConfiguration {
                    metadata: meta(),
                    warnings,
                    mode: used as i32,
                    mode_details: String::new(),
                }],
            }));
        }
        // Talos 1.12 `ApplyConfiguration` (see `day2.rs`): NO_REBOOT/TRY refuse a change
        // `CanApplyImmediate` rejects; AUTO reboots for it; STAGED waits for the next boot.
        let current = self.node.state().config.unwrap_or_default();
        let immediate = super::day2::can_apply_immediate(&current, &text);
        let (used, details) = match mode {
            Mode::Staged => (
                Mode::Staged,
                "Staged configuration to be applied after the next reboot",
            ),
            Mode::Reboot => (Mode::Reboot, "Applied configuration with a reboot"),
            Mode::NoReboot | Mode::Try => {
                if let Err(e) = immediate {
                    return Err(Status::invalid_argument(e));
                }
                if mode == Mode::Try {
                    (Mode::Try, "Applied configuration without a reboot")
                } else {
                    (Mode::NoReboot, "Applied configuration without a reboot")
                }
            }
            _ => match immediate {
                Ok(()) => (Mode::NoReboot, "Applied configuration without a reboot"),
                Err(_) => (Mode::Reboot, "Applied configuration with a reboot"),
            },
        };
        if used == Mode::Staged {
            self.node
                .update(|s| s.staged = Some(text))
                .map_err(|e| Status::internal(e.to_string()))?;
        } else {
            // Applied live: components whose image changed restart onto it a little later
            // (components.rs); a reboot starts them all on the new config anyway.
            if used != Mode::Reboot {
                self.node.components_follow(&current, &text);
            }
            self.node
                .update(|s| {
                    s.config = Some(text);
                    s.staged = None;
                })
                .map_err(|e| Status::internal(e.to_string()))?;
        }
        self.node.record(super::day2::EventKind::Applied(
            used.as_str_name().to_lowercase(),
        ));
        if used == Mode::Reboot {
            self.reboot_soon();
        }
        Ok(Response::new(ApplyConfigurationResponse {
            messages: vec![ApplyConfiguration {
                metadata: meta(),
                warnings,
                mode: used as i32,
                mode_details: details.to_string(),
            }],
        }))
    }

    async fn bootstrap(
        &self,
        req: Request<BootstrapRequest>,
    ) -> Result<Response<BootstrapResponse>, Status> {
        self.admin_only(&req)?;
        if let Some(t) = self.forward_targets(&req)? {
            return self
                .proxy(t, req, |a, r| Box::pin(async move { a.bootstrap(r).await }))
                .await;
        }
        let facts = self
            .node
            .facts()
            .ok_or_else(|| Status::failed_precondition("bootstrap is not available yet"))?;
        if facts.machine_type == "worker" {
            return Err(Status::failed_precondition(
                "bootstrap is not available on worker nodes",
            ));
        }
        if self.node.state().bootstrapped || self.etcd_joined() {
            return Err(Status::already_exists("etcd data directory is not empty"));
        }
        // The bootstrap manifests (kept in etcd) create the kube-proxy DaemonSet from this
        // node's `cluster.proxy.image` (components.rs).
        let proxy = super::components::config_images(
            self.node.state().config.as_deref().unwrap_or_default(),
        )
        .remove("kube-proxy");
        // A new etcd: a single member here, and no Kubernetes objects yet.
        let rt = self.runtime()?;
        rt.kube_forget_cluster(&facts.cluster_id);
        rt.etcd_bootstrap(&self.node).map_err(Status::internal)?;
        // Its Kubernetes objects: none, or those of the uploaded snapshot (`recover_etcd`).
        let r = req.into_inner();
        super::etcd_backup::start_etcd(&self.node, r.recover_etcd, r.recover_skip_hash_check)?;
        rt.kube_register_node(&self.node);
        self.node
            .update(|s| {
                s.bootstrapped = true;
                s.kube_proxy_image = proxy;
            })
            .map_err(|e| Status::internal(e.to_string()))?;
        let node = self.node.clone();
        tokio::spawn(async move { node.start_kube().await });
        Ok(Response::new(BootstrapResponse {
            messages: vec![Bootstrap { metadata: meta() }],
        }))
    }

    async fn etcd_snapshot(
        &self,
        req: Request<EtcdSnapshotRequest>,
    ) -> Result<Response<tonic::codegen::BoxStream<Data>>, Status> {
        if self.maintenance {
            self.stale()?;
            return Err(Status::unimplemented(NOT_IN_MAINTENANCE));
        }
        self.require(&req, &["os:admin", "os:operator", "os:etcd:backup"])?;
        // A streaming method: apid proxies it to one node only.
        let node = match self.forward_targets(&req)?.as_deref() {
            None => self.clone(),
            Some([one]) => dial(&self.peers(), one)?,
            Some(_) => {
                return Err(Status::invalid_argument(
                    "EtcdSnapshot is proxied to one node only: pass a single node",
                ));
            }
        };
        super::etcd_backup::check_control_plane(&node.node, "etcd snapshot")?;
        if !node.etcd_joined() {
            return Err(Status::unknown(
                "failed to create etcd client: etcd is not running",
            ));
        }
        let data = super::etcd_backup::snapshot(&node.node, &self.peers())?;
        let chunks: Vec<Result<Data, Status>> = data
            .chunks(super::etcd_backup::CHUNK)
            .map(|c| {
                Ok(Data {
                    metadata: meta(),
                    bytes: c.to_vec(),
                })
            })
            .collect();
        Ok(Response::new(Box::pin(futures_util::stream::iter(chunks))))
    }

    async fn etcd_recover(
        &self,
        req: Request<tonic::Streaming<Data>>,
    ) -> Result<Response<EtcdRecoverResponse>, Status> {
        self.admin_only(&req)?;
        let node = match self.forward_targets(&req)?.as_deref() {
            None => self.clone(),
            Some([one]) => dial(&self.peers(), one)?,
            Some(_) => {
                return Err(Status::invalid_argument(
                    "EtcdRecover is proxied to one node only: pass a single node",
                ));
            }
        };
        super::etcd_backup::check_control_plane(&node.node, "etcd recover")?;
        let mut stream = req.into_inner();
        let mut data = zeroize::Zeroizing::new(Vec::new());
        loop {
            match stream.message().await {
                Ok(Some(chunk)) => data.extend_from_slice(&chunk.bytes),
                Ok(None) => break,
                Err(st) => {
                    super::etcd_backup::discard_upload(&node.node);
                    return Err(st);
                }
            }
        }
        super::etcd_backup::store_upload(&node.node, &data)?;
        Ok(Response::new(EtcdRecoverResponse {
            messages: vec![EtcdRecover { metadata: meta() }],
        }))
    }

    async fn kubeconfig(
        &self,
        req: Request<()>,
    ) -> Result<Response<tonic::codegen::BoxStream<Data>>, Status> {
        self.admin_only(&req)?;
        if let Some(targets) = self.forward_targets(&req)? {
            use futures_util::StreamExt as _;
            let peers = self.peers();
            let mut chunks = Vec::new();
            for t in targets {
                let result = match dial(&peers, &t) {
                    Ok(apid) => apid.kubeconfig(Request::new(())).await,
                    Err(st) => Err(st),
                };
                let tagged = |error: String| Metadata {
                    hostname: t.clone(),
                    error,
                    status: None,
                };
                match result {
                    Ok(resp) => {
                        let items: Vec<Result<Data, Status>> = resp.into_inner().collect().await;
                        for item in items {
                            chunks.push(item.map(|mut d| {
                                d.metadata = Some(tagged(String::new()));
                                d
                            }));
                        }
                    }
                    Err(st) => chunks.push(Ok(Data {
                        metadata: Some(tagged(rpc_error_text(&st))),
                        bytes: vec![],
                    })),
                }
            }
            return Ok(Response::new(Box::pin(futures_util::stream::iter(chunks))));
        }
        let f = self
            .node
            .facts()
            .ok_or_else(|| Status::failed_precondition("no config"))?;
        let key = f
            .k8s_ca_key
            .clone()
            .filter(|_| f.machine_type != "worker")
            .ok_or_else(|| {
                Status::failed_precondition("kubeconfig is only available on control plane nodes")
            })?;
        let (crt, key) = talos_api::crypto::issue_leaf(
            &f.k8s_ca_crt,
            &key,
            &talos_api::crypto::CertSpec {
                common_name: Some("admin".into()),
                organizations: vec!["system:masters".into()],
                client_auth: true,
                ..Default::default()
            },
        )
        .map_err(|e| Status::internal(e.to_string()))?;
        let kc = super::kube::admin_kubeconfig(&f, &crt, &key);
        let gz = talos_api::kubeconfig::build_talos_tar_gz("kubeconfig", 0o600, kc.as_bytes())
            .map_err(|e| Status::internal(e.to_string()))?;
        let chunk = Data {
            metadata: meta(),
            bytes: gz,
        };
        Ok(Response::new(Box::pin(futures_util::stream::iter(vec![
            Ok(chunk),
        ]))))
    }

    async fn version(&self, req: Request<()>) -> Result<Response<VersionResponse>, Status> {
        if self.maintenance {
            self.stale()?;
            return Err(Status::unimplemented(NOT_IN_MAINTENANCE));
        }
        self.require(&req, &["os:admin", "os:operator", "os:reader"])?;
        if let Some(t) = self.forward_targets(&req)? {
            return self
                .proxy(t, req, |a, r| Box::pin(async move { a.version(r).await }))
                .await;
        }
        self.node.record_read("Version");
        let (name, mode) = if self.node.platform == "nocloud" {
            ("nocloud", "cloud")
        } else {
            ("metal", "metal")
        };
        Ok(Response::new(VersionResponse {
            messages: vec![Version {
                metadata: meta(),
                version: Some(VersionInfo {
                    tag: self
                        .node
                        .state()
                        .version
                        .unwrap_or_else(|| TALOS_TAG.into()),
                    sha: "2e80771b".into(),
                    built: String::new(),
                    go_version: "go1.25.5".into(),
                    os: "linux".into(),
                    arch: "amd64".into(),
                }),
                platform: Some(PlatformInfo {
                    name: name.into(),
                    mode: mode.into(),
                }),
                features: Some(FeaturesInfo { rbac: true }),
            }],
        }))
    }

    async fn service_list(
        &self,
        req: Request<()>,
    ) -> Result<Response<ServiceListResponse>, Status> {
        if self.maintenance {
            self.stale()?;
            return Err(Status::unimplemented(NOT_IN_MAINTENANCE));
        }
        self.require(&req, &["os:admin", "os:operator", "os:reader"])?;
        if let Some(t) = self.forward_targets(&req)? {
            return self
                .proxy(t, req, |a, r| {
                    Box::pin(async move { a.service_list(r).await })
                })
                .await;
        }
        self.node.record_read("ServiceList");
        let cp = self
            .node
            .facts()
            .is_some_and(|f| f.machine_type != "worker");
        let svc_health = |id: &str, running: bool, healthy: bool| ServiceInfo {
            id: id.into(),
            state: if running { "Running" } else { "Preparing" }.into(),
            events: None,
            health: Some(ServiceHealth {
                unknown: false,
                healthy,
                last_message: if running && !healthy {
                    "etcd is not ready yet".into()
                } else {
                    String::new()
                },
                last_change: None,
            }),
        };
        let svc = |id: &str, running: bool| svc_health(id, running, running);
        let mut services = vec![
            svc("apid", true),
            svc("machined", true),
            // The kubelet restarting onto a new image (components.rs).
            svc("kubelet", self.node.kubelet_settled()),
        ];
        if cp {
            // etcd runs once joined, and is healthy a moment after the node booted (it
            // rejoins its peers; components.rs).
            let joined = self.etcd_joined();
            services.push(svc_health(
                "etcd",
                joined,
                joined && self.node.etcd_settled(),
            ));
            services.push(svc("trustd", true));
        }
        services.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(Response::new(ServiceListResponse {
            messages: vec![ServiceList {
                metadata: meta(),
                services,
            }],
        }))
    }

    async fn etcd_member_list(
        &self,
        req: Request<EtcdMemberListRequest>,
    ) -> Result<Response<EtcdMemberListResponse>, Status> {
        if self.maintenance {
            self.stale()?;
            return Err(Status::unimplemented(NOT_IN_MAINTENANCE));
        }
        self.require(
            &req,
            &["os:admin", "os:operator", "os:reader", "os:etcd:backup"],
        )?;
        if let Some(t) = self.forward_targets(&req)? {
            return self
                .proxy(t, req, |a, r| {
                    Box::pin(async move { a.etcd_member_list(r).await })
                })
                .await;
        }
        self.node.record_read("EtcdMemberList");
        self.check_controlplane("member list")?;
        // Through the control planes' etcd (`NewClientFromControlPlaneIPs`), with a leader
        // required (`clientv3.WithRequireLeader`).
        let cluster_id = self.node.facts().map(|f| f.cluster_id).unwrap_or_default();
        let rt = self.runtime()?;
        let Some(c) = rt.etcd_cluster(&cluster_id) else {
            return Err(Status::unavailable("etcd is not running"));
        };
        if c.leader.is_none() {
            return Err(Status::unknown(super::etcd::EtcdError::NoLeader.text()));
        }
        Ok(Response::new(EtcdMemberListResponse {
            messages: vec![EtcdMembers {
                metadata: meta(),
                legacy_members: c.members.iter().map(|m| m.name.clone()).collect(),
                members: c
                    .members
                    .iter()
                    .map(|m| EtcdMember {
                        id: m.id,
                        hostname: m.name.clone(),
                        peer_urls: vec![m.peer_url.clone()],
                        client_urls: vec![m.client_url.clone()],
                        is_learner: false,
                    })
                    .collect(),
            }],
        }))
    }

    async fn etcd_remove_member_by_id(
        &self,
        req: Request<EtcdRemoveMemberByIdRequest>,
    ) -> Result<Response<EtcdRemoveMemberByIdResponse>, Status> {
        self.admin_only(&req)?;
        if let Some(t) = self.forward_targets(&req)? {
            return self
                .proxy(t, req, |a, r| {
                    Box::pin(async move { a.etcd_remove_member_by_id(r).await })
                })
                .await;
        }
        self.check_controlplane("etcd remove member")?;
        let id = req.into_inner().member_id;
        let cluster_id = self.node.facts().map(|f| f.cluster_id).unwrap_or_default();
        let rt = self.runtime()?;
        let local = rt.etcd_member_of(&self.node).map(|m| m.id);
        match rt.etcd_remove(&cluster_id, id, local) {
            Ok(_) => Ok(Response::new(EtcdRemoveMemberByIdResponse {
                messages: vec![EtcdRemoveMemberById { metadata: meta() }],
            })),
            Err(super::etcd::EtcdError::MemberNotFound) => Err(Status::not_found(format!(
                "failed to remove member {id}: {}",
                super::etcd::EtcdError::MemberNotFound.text()
            ))),
            Err(e) => Err(Status::unknown(format!(
                "failed to remove member: failed to remove member {id}: {}",
                e.text()
            ))),
        }
    }

    async fn etcd_leave_cluster(
        &self,
        req: Request<EtcdLeaveClusterRequest>,
    ) -> Result<Response<EtcdLeaveClusterResponse>, Status> {
        self.admin_only(&req)?;
        if let Some(t) = self.forward_targets(&req)? {
            return self
                .proxy(t, req, |a, r| {
                    Box::pin(async move { a.etcd_leave_cluster(r).await })
                })
                .await;
        }
        self.check_controlplane("etcd leave")?;
        self.leave_etcd()
            .map_err(|e| Status::unknown(format!("failed to leave cluster: {e}")))?;
        Ok(Response::new(EtcdLeaveClusterResponse {
            messages: vec![EtcdLeaveCluster { metadata: meta() }],
        }))
    }

    async fn reboot(
        &self,
        req: Request<RebootRequest>,
    ) -> Result<Response<RebootResponse>, Status> {
        if self.maintenance {
            self.stale()?;
            return Err(Status::unimplemented(NOT_IN_MAINTENANCE));
        }
        self.require(&req, &["os:admin", "os:operator"])?;
        if let Some(t) = self.forward_targets(&req)? {
            return self
                .proxy(t, req, |a, r| Box::pin(async move { a.reboot(r).await }))
                .await;
        }
        self.reboot_soon();
        Ok(Response::new(RebootResponse {
            messages: vec![Reboot {
                metadata: meta(),
                actor_id: "sim".into(),
            }],
        }))
    }

    async fn reset(&self, req: Request<ResetRequest>) -> Result<Response<ResetResponse>, Status> {
        self.admin_only(&req)?;
        if let Some(t) = self.forward_targets(&req)? {
            return self
                .proxy(t, req, |a, r| Box::pin(async move { a.reset(r).await }))
                .await;
        }
        // Talos `Reset` (v1alpha1_server.go): validate the request, answer with an actor ID,
        // and run the reset sequence (v1alpha1_sequencer.go `Reset`) in the background:
        // graceful → cordon/drain, and on a control plane `LeaveEtcd`; then wipe the named
        // system partitions (all of them when none is named); then reboot or power off.
        let r = req.into_inner();
        if r.mode == reset_request::WipeMode::UserDisks as i32
            && !r.system_partitions_to_wipe.is_empty()
        {
            return Err(Status::unknown(
                "reset failed: invalid input, wipe mode USER_DISKS doesn't support SystemPartitionsToWipe parameter",
            ));
        }
        let mut wipe = Vec::new();
        for p in &r.system_partitions_to_wipe {
            if !["STATE", "EPHEMERAL", "META", "EFI", "BOOT"].contains(&p.label.as_str()) {
                return Err(Status::unknown(format!(
                    "failed to get volume status with label {:?}: resource VolumeStatuses.block.talos.dev(runtime/{}) doesn't exist",
                    p.label, p.label
                )));
            }
            if p.wipe {
                wipe.push(p.label.clone());
            }
        }
        let all = r.system_partitions_to_wipe.is_empty();
        let me = self.clone();
        let (graceful, reboot) = (r.graceful, r.reboot);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            me.node
                .record(super::day2::EventKind::Reset(wipe.join("+")));
            let cp = me.node.facts().is_some_and(|f| f.machine_type != "worker");
            if graceful {
                if let Ok(rt) = me.runtime() {
                    rt.kube_cordon(&me.node);
                }
                if cp && let Err(e) = me.leave_etcd() {
                    // The sequence stops; the node keeps running ("reset failed: ...").
                    tracing::warn!(ip = %me.node.ip, error = %e, "reset failed");
                    return;
                }
            }
            let wiped = |l: &str| all || wipe.iter().any(|w| w == l);
            me.node.go_down().await;
            let _ = me.node.update(|s| {
                if wiped("STATE") {
                    s.installed = false;
                    s.config = None;
                    s.staged = None;
                }
                if wiped("EPHEMERAL") {
                    s.etcd_member = None;
                    s.bootstrapped = false;
                }
            });
            if reboot {
                me.node.reboot().await;
            } else {
                me.node.stop();
            }
        });
        Ok(Response::new(ResetResponse {
            messages: vec![Reset {
                metadata: meta(),
                actor_id: "sim".into(),
            }],
        }))
    }

    /// `Read` of the one file clients read here: `/proc/sys/kernel/random/boot_id`, new on
    /// every boot (`talosctl reboot --wait` compares it: `cmd/talosctl/pkg/talos/action/
    /// tracker.go`, `getBootID`). Talos 1.12 `Read` (v1alpha1_server.go) streams any file
    /// under the allowed paths; other paths answer as a missing file does.
    async fn read(
        &self,
        req: Request<ReadRequest>,
    ) -> Result<Response<tonic::codegen::BoxStream<Data>>, Status> {
        self.admin_only(&req)?;
        if let Some(t) = self.forward_targets(&req)? {
            let target = t
                .first()
                .cloned()
                .ok_or_else(|| Status::invalid_argument("no target"))?;
            let apid = dial(&self.peers(), &target)?;
            return apid.read(Request::new(req.into_inner())).await;
        }
        let path = req.into_inner().path;
        self.node.record_read("Read");
        if path != "/proc/sys/kernel/random/boot_id" {
            return Err(Status::unknown(format!(
                "stat {path}: no such file or directory"
            )));
        }
        let chunk = Data {
            metadata: meta(),
            bytes: format!("{}\n", self.node.boot_id()).into_bytes(),
        };
        Ok(Response::new(Box::pin(futures_util::stream::iter(vec![
            Ok(chunk),
        ]))))
    }

    async fn upgrade(
        &self,
        req: Request<UpgradeRequest>,
    ) -> Result<Response<UpgradeResponse>, Status> {
        self.admin_only(&req)?;
        if let Some(t) = self.forward_targets(&req)? {
            return self
                .proxy(t, req, |a, r| Box::pin(async move { a.upgrade(r).await }))
                .await;
        }
        // Talos 1.12 `Upgrade` (v1alpha1_server.go): validate the installer image, ack, then
        // install it and reboot in the background.
        let image = req.into_inner().image;
        let Some((version, schematic)) = super::day2::image_version(&image) else {
            return Err(Status::unknown(format!(
                "error validating installer image {image:?}: not an installer image reference"
            )));
        };
        self.node
            .record(super::day2::EventKind::Upgrade(image.clone()));
        let node = self.node.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let guard = node.boot_lock.lock().await;
            node.go_down().await;
            tokio::time::sleep(node.knobs().upgrade_time).await;
            let _ = node.update(|s| {
                s.version = Some(version);
                s.schematic = Some(schematic);
            });
            drop(guard);
            node.reboot().await;
        });
        Ok(Response::new(UpgradeResponse {
            messages: vec![Upgrade {
                metadata: meta(),
                ack: "Upgrade request received".into(),
                actor_id: "sim".into(),
            }],
        }))
    }
}

#[tonic::async_trait]
impl StorageService for Apid {
    async fn disks(&self, req: Request<()>) -> Result<Response<DisksResponse>, Status> {
        self.require(&req, &["os:admin", "os:operator", "os:reader"])?;
        if let Some(t) = self.forward_targets(&req)? {
            return self
                .proxy(t, req, |a, r| Box::pin(async move { a.disks(r).await }))
                .await;
        }
        self.node.record_read("Disks");
        let disks = self
            .node
            .disks
            .iter()
            .map(|d| storage::Disk {
                size: d.size,
                model: if d.cdrom {
                    "QEMU DVD-ROM"
                } else {
                    "QEMU HARDDISK"
                }
                .into(),
                device_name: d.device.clone(),
                name: d.device.trim_start_matches("/dev/").into(),
                r#type: if d.cdrom {
                    storage::disk::DiskType::Cd
                } else {
                    storage::disk::DiskType::Hdd
                } as i32,
                ..Default::default()
            })
            .collect();
        Ok(Response::new(DisksResponse {
            messages: vec![storage::Disks {
                metadata: meta(),
                disks,
            }],
        }))
    }
}

/// Serve the two services over TLS on ip:50000 until the handle is stopped.
async fn serve(
    node: &Arc<Node>,
    tls: ServerTlsConfig,
    maintenance: bool,
) -> Result<ServerHandle, String> {
    let listener = bind(node.ip, APID_PORT)
        .await
        .map_err(|e| format!("{}:{APID_PORT}: {e}", node.ip))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<tokio::net::TcpStream>>(16);
    // Our own accept loop: aborting it closes the listening socket at once, so the node can
    // come back on the same address after a "reboot".
    let accept = tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((s, _)) => {
                    let _ = s.set_nodelay(true);
                    if tx.send(Ok(s)).await.is_err() {
                        break;
                    }
                }
                Err(e) => tracing::debug!(error = %e, "accept failed"),
            }
        }
    });
    let incoming =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) });
    let svc = Apid {
        trusted: false,
        node: node.clone(),
        maintenance,
    };
    let router = Server::builder()
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .add_service(MachineServiceServer::new(svc.clone()))
        .add_service(StorageServiceServer::new(svc.clone()))
        .add_service(super::cosi::state_server(svc));
    let (stx, srx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = router
            .serve_with_incoming_shutdown(incoming, async {
                let _ = srx.await;
            })
            .await;
    });
    Ok(ServerHandle {
        accept,
        shutdown: Some(stx),
    })
}

/// Maintenance mode: a per-boot self-signed certificate, no client certificates.
pub(crate) async fn start_maintenance(node: &Arc<Node>) -> Result<ServerHandle, String> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).map_err(|e| e.to_string())?;
    let mut params =
        rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    params.subject_alt_names = vec![rcgen::SanType::IpAddress(std::net::IpAddr::V4(node.ip))];
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "talos");
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let tls = ServerTlsConfig::new().identity(Identity::from_pem(cert.pem(), key.serialize_pem()));
    serve(node, tls, true).await
}

/// Normal mode: a server certificate from the OS CA for the node's address and certSANs;
/// client certificates from the OS CA required.
pub(crate) async fn start_normal(node: &Arc<Node>) -> Result<ServerHandle, String> {
    let f = node.facts().ok_or("installed node has no valid config")?;
    // Workers have no OS CA key; trustd on a control plane would sign for them.
    let ca_key = match f.os_ca_key.clone() {
        Some(k) => k,
        None => node
            .runtime
            .upgrade()
            .into_iter()
            .flat_map(|rt| rt.all_nodes())
            .filter_map(|n| n.facts())
            .find(|o| o.os_ca_crt == f.os_ca_crt && o.os_ca_key.is_some())
            .and_then(|o| o.os_ca_key)
            .ok_or(
                "no control plane with the OS CA key is running to sign this worker's certificate",
            )?,
    };
    let mut ips = vec![std::net::IpAddr::V4(node.ip)];
    let mut dns = vec![node.hostname()];
    for san in &f.cert_sans {
        match san.parse() {
            Ok(ip) => ips.push(ip),
            Err(_) => dns.push(san.clone()),
        }
    }
    let (crt, key) = talos_api::crypto::issue_leaf(
        &f.os_ca_crt,
        &ca_key,
        &talos_api::crypto::CertSpec {
            ip_addresses: ips,
            dns_names: dns,
            server_auth: true,
            client_auth: true,
            ..Default::default()
        },
    )
    .map_err(|e| e.to_string())?;
    let key = zeroize::Zeroizing::new(key.replace("ED25519 PRIVATE KEY", "PRIVATE KEY"));
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(crt, key.as_bytes()))
        .client_ca_root(Certificate::from_pem(&f.os_ca_crt));
    serve(node, tls, false).await
}
