//! The in-process lab: start the simulated Proxmox VE (and, optionally, sibling services
//! such as the Image Factory simulator) on loopback and get a handle with everything a
//! client needs: URL, API token, certificate fingerprint, request counts, fault knobs.
//!
//! ```no_run
//! # async fn demo() -> Result<(), homelab_sim::Error> {
//! use homelab_sim::lab::Lab;
//! let lab = Lab::builder().start().await?;
//! println!("{} {} {}", lab.pve_url(), lab.token_id(), lab.fingerprint());
//! lab.shutdown().await;
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::Error;
use crate::pve::auth;
use crate::pve::sim::{Faults, Genesis, Inner, RequestCounts, Sim, Timings};
use crate::pve::state::{PciDevice, State, StorageCfg, Token};
use crate::runtime::{GuestRuntime, NoRuntime};
use crate::tls::TlsIdentity;

/// Name of the bootstrap API token (`root@pam!homelab-sim`) created on every start.
pub const BOOTSTRAP_TOKEN: &str = "homelab-sim";

/// File in the state directory holding the cluster state.
pub const STATE_FILE: &str = "pve-state.json";

/// What a sibling service gets when the lab starts it.
#[derive(Debug, Clone)]
pub struct ServiceContext {
    /// The lab's certificate (serve with it so one pin covers the whole lab).
    pub tls: TlsIdentity,
    /// The lab's state directory, if any (use a sub-directory named after the service).
    pub state_dir: Option<PathBuf>,
    /// Turns `true` when the lab shuts down.
    pub shutdown: watch::Receiver<bool>,
}

/// A service started beside the Proxmox VE API (for example the Image Factory simulator).
pub trait LabService: Send + std::fmt::Debug + 'static {
    /// Short name, used with [`LabHandle::service_url`].
    fn name(&self) -> &str;
    /// Start serving; resolve to the service's base URL once it accepts connections. The
    /// service must stop when `ctx.shutdown` turns `true`.
    fn start(
        self: Box<Self>,
        ctx: ServiceContext,
    ) -> Pin<Box<dyn Future<Output = Result<String, Error>> + Send>>;
}

/// Entry point: [`Lab::builder`].
#[derive(Debug)]
pub struct Lab;

impl Lab {
    /// A builder with defaults: one node `pve`, no state directory (state lives in memory),
    /// no guest runtime, PVE's timings shortened for tests (tasks 300 ms, agent 1 s,
    /// `/cluster/resources` lag 10 s), loopback on an ephemeral port.
    pub fn builder() -> LabBuilder {
        LabBuilder {
            state_dir: None,
            runtime: Arc::new(NoRuntime),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            nodes: vec!["pve".into()],
            cluster: "homelab".into(),
            timings: Timings::default(),
            latency: Duration::ZERO,
            root_password: None,
            auth_failure_delay: Duration::ZERO,
            services: Vec::new(),
            pci_devices: BTreeMap::new(),
            storages: BTreeMap::new(),
        }
    }
}

/// Configures and starts a lab.
#[derive(Debug)]
pub struct LabBuilder {
    state_dir: Option<PathBuf>,
    runtime: Arc<dyn GuestRuntime>,
    listen: SocketAddr,
    nodes: Vec<String>,
    cluster: String,
    timings: Timings,
    latency: Duration,
    root_password: Option<String>,
    auth_failure_delay: Duration,
    services: Vec<Box<dyn LabService>>,
    pci_devices: BTreeMap<String, Vec<PciDevice>>,
    storages: BTreeMap<String, StorageCfg>,
}

impl LabBuilder {
    /// Keep the lab in `dir` (state, certificate) so a later process sees the same lab.
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }
    /// What runs inside guests (for example the Talos node simulator).
    pub fn runtime(mut self, runtime: Arc<dyn GuestRuntime>) -> Self {
        self.runtime = runtime;
        self
    }
    /// Address to listen on (default `127.0.0.1:0`).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }
    /// Cluster node names for a new lab (ignored when the state directory has a lab).
    pub fn nodes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, nodes: I) -> Self {
        self.nodes = nodes.into_iter().map(Into::into).collect();
        self
    }
    /// The host PCI devices of `node` (replacing the default set: an NVIDIA RTX 3090 at
    /// `0000:01:00.0` with its audio function `0000:01:00.1`, plus chipset devices). Applies
    /// to a saved lab too, as if the hardware had changed while it was off.
    pub fn pci_devices(mut self, node: impl Into<String>, devices: Vec<PciDevice>) -> Self {
        self.pci_devices.insert(node.into(), devices);
        self
    }
    /// Add (or replace) a storage of plugin type `ty` (`lvm`, `dir`, `zfspool`, ...) with
    /// the given content types, besides the default `local`, `local-lvm` and `tank`.
    /// Applies to a saved lab too. Fails at [`Self::start`] when the plugin cannot hold
    /// one of the content types (pve-storage `plugindata`).
    pub fn storage(
        mut self,
        id: impl Into<String>,
        ty: impl Into<String>,
        content: &[&str],
        total: u64,
    ) -> Self {
        self.storages.insert(
            id.into(),
            StorageCfg {
                ty: ty.into(),
                content: content.iter().map(|c| c.to_string()).collect(),
                shared: false,
                total,
                path: None,
            },
        );
        self
    }
    /// Cluster name for a new lab.
    pub fn cluster_name(mut self, name: impl Into<String>) -> Self {
        self.cluster = name.into();
        self
    }
    /// All timings at once.
    pub fn timings(mut self, timings: Timings) -> Self {
        self.timings = timings;
        self
    }
    /// How long worker tasks run.
    pub fn task_duration(mut self, d: Duration) -> Self {
        self.timings.task_duration = d;
        self
    }
    /// How often `/cluster/resources` statistics refresh.
    pub fn stats_interval(mut self, d: Duration) -> Self {
        self.timings.stats_interval = d;
        self
    }
    /// How long after start the guest agent answers.
    pub fn agent_delay(mut self, d: Duration) -> Self {
        self.timings.agent_delay = d;
        self
    }
    /// How long requests wait for a guest's config lock.
    pub fn lock_timeout(mut self, d: Duration) -> Self {
        self.timings.lock_timeout = d;
        self
    }
    /// Latency added to every API answer (changeable later through [`LabHandle::faults`]).
    pub fn latency(mut self, d: Duration) -> Self {
        self.latency = d;
        self
    }
    /// root@pam's password for ticket logins (default: random, see
    /// [`LabHandle::root_password`]).
    pub fn root_password(mut self, password: impl Into<String>) -> Self {
        self.root_password = Some(password.into());
        self
    }
    /// Delay failed authentications like pveproxy (about 3 s there; default 0 here).
    pub fn auth_failure_delay(mut self, d: Duration) -> Self {
        self.auth_failure_delay = d;
        self
    }
    /// Start a sibling service with the lab.
    pub fn service(mut self, service: Box<dyn LabService>) -> Self {
        self.services.push(service);
        self
    }

    /// Load or create the lab, bind, and serve in the background.
    pub async fn start(self) -> Result<LabHandle, Error> {
        let names = self.nodes.clone();
        let (state, tls, state_file) = match &self.state_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
                let file = dir.join(STATE_FILE);
                let state = match std::fs::read(&file) {
                    Ok(bytes) => {
                        serde_json::from_slice::<State>(&bytes).map_err(|e| Error::State {
                            path: file.clone(),
                            message: e.to_string(),
                        })?
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => self.genesis().state(),
                    Err(e) => return Err(Error::io(&file, e)),
                };
                (
                    state,
                    TlsIdentity::load_or_generate(dir, &names)?,
                    Some(file),
                )
            }
            None => (self.genesis().state(), TlsIdentity::generate(&names)?, None),
        };
        let mut state = state;
        for (id, cfg) in &self.storages {
            let allowed = crate::pve::plugins::content_types(&cfg.ty).unwrap_or(&[]);
            if let Some(bad) = cfg.content.iter().find(|c| !allowed.contains(&c.as_str())) {
                return Err(Error::Config(format!(
                    "storage '{id}': content type '{bad}' is not supported by a '{}' storage",
                    cfg.ty
                )));
            }
            state.storages.insert(id.clone(), cfg.clone());
        }
        // Workers of an earlier process died with it. pve-common `PVE::RESTEnvironment`
        // `active_workers` drops a worker whose process is gone from the active list, and
        // `PVE::Tools::upid_read_status` reports "unexpected status" for a task log that has
        // no final `TASK ...` line. Whatever the task had prepared (a `lock: create`
        // placeholder, a clone target holding `lock: clone`) stays, as on a real host.
        for t in state.tasks.values_mut().filter(|t| t.endtime.is_none()) {
            t.endtime = Some(crate::pve::sim::now());
            t.exitstatus = Some("unexpected status".into());
        }
        for (node, devices) in &self.pci_devices {
            if let Some(n) = state.nodes.get_mut(node) {
                n.pci = devices.clone();
            }
        }
        let secret = auth::uuid();
        let token_id = format!("root@pam!{BOOTSTRAP_TOKEN}");
        state.tokens.insert(
            token_id.clone(),
            Token {
                userid: "root@pam".into(),
                tokenid: BOOTSTRAP_TOKEN.into(),
                secret_sha256: auth::secret_hash(&secret),
                privsep: false,
                expire: 0,
                comment: Some("homelab-sim bootstrap token (secret rotates on every start)".into()),
            },
        );
        let running: Vec<u32> = state
            .guests
            .values()
            .filter(|g| g.running)
            .map(|g| g.vmid)
            .collect();
        let root_password = self
            .root_password
            .clone()
            .unwrap_or_else(|| hex::encode(rand::random::<[u8; 12]>()));
        let faults = Faults::default();
        faults.set_latency(self.latency);
        let sim = Sim(Arc::new(Inner {
            state: Mutex::new(state),
            timings: self.timings.clone(),
            runtime: self.runtime.clone(),
            faults,
            total: AtomicU64::new(0),
            mutating: AtomicU64::new(0),
            schema_rejected: AtomicU64::new(0),
            state_file,
            persist_lock: Mutex::new(()),
            guest_locks: Mutex::new(Default::default()),
            addresses: Mutex::new(Default::default()),
            stats: Mutex::new(Default::default()),
            fingerprint: tls.fingerprint(),
            cert_pem: tls.cert_pem(),
            root_password: root_password.clone(),
            pstart: AtomicU32::new(rand::random::<u16>().into()),
            auth_failure_delay: self.auth_failure_delay,
        }));
        // Guests recorded as running come back up in this process's runtime.
        for vmid in running {
            let g = sim.state().guests.get(&vmid).cloned();
            if let Some(g) = g
                && let Err(e) = sim.guest_started(&g)
            {
                tracing::warn!(vmid, "runtime could not restart guest: {e}");
                if let Some(g) = sim.state().guests.get_mut(&vmid) {
                    g.running = false;
                    g.started_at = None;
                }
            }
        }
        sim.refresh_stats();
        sim.persist();

        let (listener, addr) = crate::listen(self.listen).await?;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(crate::pve::server::serve(
            listener,
            tls.server_config()?,
            sim.clone(),
            shutdown_rx.clone(),
        )));
        {
            let sim = sim.clone();
            let mut rx = shutdown_rx.clone();
            let every = self.timings.stats_interval.max(Duration::from_millis(10));
            tasks.push(tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(every) => sim.refresh_stats(),
                        _ = rx.changed() => break,
                    }
                }
            }));
        }
        let mut services = BTreeMap::new();
        for svc in self.services {
            let name = svc.name().to_string();
            let url = svc
                .start(ServiceContext {
                    tls: tls.clone(),
                    state_dir: self.state_dir.clone(),
                    shutdown: shutdown_rx.clone(),
                })
                .await?;
            services.insert(name, url);
        }
        tracing::info!(%addr, "simulated Proxmox VE listening");
        Ok(LabHandle {
            addr,
            sim,
            tls,
            token_id,
            token_secret: secret,
            root_password,
            services,
            shutdown: shutdown_tx,
            tasks,
        })
    }

    fn genesis(&self) -> Genesis {
        Genesis {
            cluster: self.cluster.clone(),
            nodes: self.nodes.clone(),
        }
    }
}

/// A running lab. Dropping it stops the servers too; [`LabHandle::shutdown`] also waits.
pub struct LabHandle {
    addr: SocketAddr,
    sim: Sim,
    tls: TlsIdentity,
    token_id: String,
    token_secret: String,
    root_password: String,
    services: BTreeMap<String, String>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for LabHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabHandle")
            .field("pve_url", &self.pve_url())
            .field("token_id", &self.token_id)
            .field("token_secret", &"<redacted>")
            .field("fingerprint", &self.fingerprint())
            .field("services", &self.services)
            .finish()
    }
}

impl LabHandle {
    /// `https://127.0.0.1:PORT` (what users put in `PROXMOX_VE_ENDPOINT`).
    pub fn pve_url(&self) -> String {
        format!("https://{}", self.addr)
    }
    /// `https://127.0.0.1:PORT/api2/json`.
    pub fn api_url(&self) -> String {
        format!("https://{}/api2/json", self.addr)
    }
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// `root@pam!homelab-sim`.
    pub fn token_id(&self) -> &str {
        &self.token_id
    }
    /// The bootstrap token's secret (a UUID, new on every start).
    pub fn token_secret(&self) -> &str {
        &self.token_secret
    }
    /// `PVEAPIToken=root@pam!homelab-sim=<secret>`, the `Authorization` header value.
    pub fn authorization(&self) -> String {
        format!("PVEAPIToken={}={}", self.token_id, self.token_secret)
    }
    /// root@pam's password for `POST /access/ticket`.
    pub fn root_password(&self) -> &str {
        &self.root_password
    }
    /// SHA-256 fingerprint of the node certificate, colon-hex as PVE prints it.
    pub fn fingerprint(&self) -> String {
        self.tls.fingerprint()
    }
    /// The node certificate (PEM), for clients that prefer a CA file to a pin.
    pub fn cert_pem(&self) -> String {
        self.tls.cert_pem()
    }
    /// Requests received so far (total and mutating).
    pub fn requests(&self) -> RequestCounts {
        self.sim.counts()
    }
    /// Fault injection knobs.
    pub fn faults(&self) -> &Faults {
        self.sim.faults()
    }
    /// Base URL of a sibling service started with [`LabBuilder::service`].
    pub fn service_url(&self, name: &str) -> Option<&str> {
        self.services.get(name).map(String::as_str)
    }
    /// Refresh `/cluster/resources` statistics now instead of at the next interval.
    pub fn refresh_stats(&self) {
        self.sim.refresh_stats();
    }
    /// The simulator core (state inspection in tests).
    pub fn sim(&self) -> &Sim {
        &self.sim
    }
    /// Stop serving and wait for the servers to finish.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        for t in std::mem::take(&mut self.tasks) {
            let _ = t.await;
        }
        self.sim.persist();
    }
}

impl Drop for LabHandle {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// What `qm unlock <vmid>` / `pct unlock <vmid>` does on a node's shell, for a lab kept in
/// `state_dir` that is not running: remove the guest's `lock` (qemu-server `PVE/CLI/qm.pm`
/// and pve-container `PVE/CLI/pct.pm` `unlock`: `remove_lock` without checking its kind).
/// Returns the lock it removed, `None` when the guest was not locked. The API offers no such
/// call to a token, and none at all for containers.
pub fn unlock_guest(state_dir: &std::path::Path, vmid: u32) -> Result<Option<String>, Error> {
    let file = state_dir.join(STATE_FILE);
    let bytes = std::fs::read(&file).map_err(|e| Error::io(&file, e))?;
    let mut state = serde_json::from_slice::<State>(&bytes).map_err(|e| Error::State {
        path: file.clone(),
        message: e.to_string(),
    })?;
    let Some(g) = state.guests.get_mut(&vmid) else {
        return Err(Error::State {
            path: file,
            message: format!("no guest {vmid} in this lab"),
        });
    };
    let removed = g.config.remove("lock");
    if removed.is_some() {
        let data = serde_json::to_vec_pretty(&state).map_err(|e| Error::State {
            path: file.clone(),
            message: e.to_string(),
        })?;
        crate::pve::sim::write_atomic(&file, &data)?;
    }
    Ok(removed)
}
