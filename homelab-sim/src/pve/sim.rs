//! The simulator's shared core: state behind a lock, persistence, worker tasks, guest
//! locks, fault injection and request counters.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::Rng;
use tokio::sync::OwnedMutexGuard;

use super::error::{ApiError, ApiResult};
use super::state::{Guest, Kind, NodeState, State, StorageCfg, Task, User};
use crate::Error;
use crate::runtime::{GuestKind, GuestRuntime, GuestStart};

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Write a file atomically (temp file in the same directory, then rename).
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), Error> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("state"),
        std::process::id()
    ));
    std::fs::write(&tmp, data).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Like [`write_atomic`], but the file is created readable by its owner only (keys).
pub fn write_atomic_private(path: &Path, data: &[u8]) -> Result<(), Error> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let tmp = dir.join(format!(".key.tmp{}", std::process::id()));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(|e| Error::io(&tmp, e))?;
    f.write_all(data).map_err(|e| Error::io(&tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Timings of the simulated cluster.
#[derive(Debug, Clone)]
pub struct Timings {
    /// How long a worker task runs before it ends.
    pub task_duration: Duration,
    /// How often `/cluster/resources` statistics are refreshed (PVE: 10 s).
    pub stats_interval: Duration,
    /// How long after start the QEMU guest agent answers.
    pub agent_delay: Duration,
    /// How long a request waits for a guest's config lock (PVE: 10 s).
    pub lock_timeout: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            task_duration: Duration::from_millis(300),
            stats_interval: Duration::from_secs(10),
            agent_delay: Duration::from_secs(1),
            lock_timeout: Duration::from_secs(10),
        }
    }
}

/// Request counts, for benchmarks and "made no change" tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestCounts {
    /// Every API request received.
    pub total: u64,
    /// Requests with a method other than GET.
    pub mutating: u64,
    /// Requests refused because their path, method or parameters do not match the
    /// PVE 9.1 API schema (unknown endpoint, or a 400 "Parameter verification failed").
    pub schema_rejected: u64,
}

/// Fault injection knobs; change them at any time through [`Faults`] methods.
#[derive(Debug, Default)]
pub struct Faults {
    inner: Mutex<FaultState>,
}

#[derive(Debug, Default)]
struct FaultState {
    latency: Duration,
    path_failures: Vec<PathFailure>,
    lock_timeouts: u32,
    storage_lock_timeouts: u32,
    failing_tasks: Vec<(Option<String>, u32, String)>,
    offline: BTreeSet<String>,
    reset_rate: f64,
    drop_rate: f64,
    spikes: Option<(f64, Duration)>,
    /// (path part, count): the next answers to drop, deterministically.
    drop_next: Vec<(String, u32)>,
    reset_next: Vec<(String, u32)>,
}

#[derive(Debug, Clone)]
struct PathFailure {
    contains: String,
    rate: f64,
    status: u16,
    message: String,
}

impl Faults {
    fn lock(&self) -> MutexGuard<'_, FaultState> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// Added latency before every API answer.
    pub fn set_latency(&self, latency: Duration) {
        self.lock().latency = latency;
    }
    /// The added latency.
    pub fn latency(&self) -> Duration {
        self.lock().latency
    }
    /// Fail a fraction (`0.0..=1.0`) of requests whose path (below `/api2/json`) contains
    /// `contains`, with `status` and `message` (e.g. 500 `got no worker upid - start worker
    /// failed`).
    pub fn fail_paths(&self, contains: &str, rate: f64, status: u16, message: &str) {
        self.lock().path_failures.push(PathFailure {
            contains: contains.to_string(),
            rate,
            status,
            message: message.to_string(),
        });
    }
    /// The next `n` guest config-lock acquisitions time out with PVE's text
    /// (`can't lock file '/var/lock/qemu-server/lock-<vmid>.conf' - got timeout`).
    pub fn lock_timeouts(&self, n: u32) {
        self.lock().lock_timeouts = n;
    }
    /// The next `n` storage allocations fail with
    /// `cfs-lock 'storage-<id>' error: got lock request timeout`.
    pub fn storage_lock_timeouts(&self, n: u32) {
        self.lock().storage_lock_timeouts = n;
    }
    /// The next `n` tasks (of `task_type`, or any type when `None`) end with `message` as
    /// their error.
    pub fn fail_tasks(&self, task_type: Option<&str>, n: u32, message: &str) {
        self.lock()
            .failing_tasks
            .push((task_type.map(str::to_string), n, message.to_string()));
    }
    /// Take a node offline (requests proxied to it get 595) or bring it back.
    pub fn set_node_offline(&self, node: &str, offline: bool) {
        let mut f = self.lock();
        if offline {
            f.offline.insert(node.to_string());
        } else {
            f.offline.remove(node);
        }
    }
    /// Whether a node is offline.
    pub fn is_offline(&self, node: &str) -> bool {
        self.lock().offline.contains(node)
    }
    /// Reset a fraction (`0.0..=1.0`) of connections before the request is processed (the
    /// client sees the connection closed without an answer; nothing happened).
    pub fn set_resets(&self, rate: f64) {
        self.lock().reset_rate = rate.clamp(0.0, 1.0);
    }
    /// Drop a fraction of answers: the request is processed (a POST takes effect), then
    /// the connection closes without the answer, as when a proxy or the network loses it.
    pub fn set_drops(&self, rate: f64) {
        self.lock().drop_rate = rate.clamp(0.0, 1.0);
    }
    /// Delay a fraction of answers by `spike` on top of the constant latency.
    pub fn set_latency_spikes(&self, rate: f64, spike: Duration) {
        self.lock().spikes = Some((rate.clamp(0.0, 1.0), spike));
    }
    /// Drop the answers of the next `n` requests whose path contains `contains` (after
    /// processing them).
    pub fn drop_next(&self, contains: &str, n: u32) {
        self.lock().drop_next.push((contains.to_string(), n));
    }
    /// Reset the next `n` requests whose path contains `contains` (before processing).
    pub fn reset_next(&self, contains: &str, n: u32) {
        self.lock().reset_next.push((contains.to_string(), n));
    }
    fn take_next(list: &mut [(String, u32)], path: &str) -> bool {
        list.iter_mut()
            .find(|(c, n)| *n > 0 && path.contains(c.as_str()))
            .map(|e| e.1 -= 1)
            .is_some()
    }
    pub(crate) fn take_reset(&self, path: &str) -> bool {
        let mut f = self.lock();
        if Self::take_next(&mut f.reset_next, path) {
            return true;
        }
        let r = f.reset_rate;
        r > 0.0 && rand::thread_rng().gen_bool(r)
    }
    pub(crate) fn take_drop(&self, path: &str) -> bool {
        let mut f = self.lock();
        if Self::take_next(&mut f.drop_next, path) {
            return true;
        }
        let r = f.drop_rate;
        r > 0.0 && rand::thread_rng().gen_bool(r)
    }
    pub(crate) fn take_spike(&self) -> Option<Duration> {
        let (rate, d) = self.lock().spikes?;
        (rate > 0.0 && rand::thread_rng().gen_bool(rate)).then_some(d)
    }

    /// Apply a fault profile: comma-separated `key=value` items, or a named profile.
    ///
    /// - `resets=0.1`: reset 10% of connections before processing;
    /// - `drops=0.1`: process 10% of requests, then drop the answer;
    /// - `latency=50ms`: constant added latency; `spikes=0.05:2s`: 5% of answers 2 s later;
    /// - `lock-timeouts=3`: the next 3 guest config locks time out;
    ///   `storage-lock-timeouts=2`: the same for storage allocations;
    /// - `fail=<path part>:<rate>[:<status>]`: fail that fraction of matching requests
    ///   (status 500 by default, PVE's `got no worker upid` text);
    /// - `fail-tasks=<type>:<n>`: the next n tasks of that type (`qmstart`, `*`) fail;
    /// - `offline=<node>`: requests for the node answer 595;
    /// - `drop-next=<path part>:<n>`, `reset-next=<path part>:<n>`: the same faults for the
    ///   next n matching requests, deterministically.
    ///
    /// Named: `flaky` (`resets=0.1,drops=0.1`), `slow` (`latency=200ms,spikes=0.1:3s`),
    /// `locks` (`lock-timeouts=3,storage-lock-timeouts=2`), `errors` (10% of the reads of
    /// `/cluster/resources`, `status/current` and task status answer 503).
    pub fn apply_spec(&self, spec: &str) -> Result<(), String> {
        for item in spec.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            match item {
                "flaky" => {
                    self.apply_spec("resets=0.1,drops=0.1")?;
                    continue;
                }
                "slow" => {
                    self.apply_spec("latency=200ms,spikes=0.1:3s")?;
                    continue;
                }
                "locks" => {
                    self.apply_spec("lock-timeouts=3,storage-lock-timeouts=2")?;
                    continue;
                }
                // Error rates per path: pveproxy answering 503 on reads (a busy or
                // restarting daemon), which clients retry.
                "errors" => {
                    self.apply_spec(
                        "fail=/cluster/resources:0.1:503,fail=/status/current:0.1:503,fail=/tasks/:0.1:503",
                    )?;
                    continue;
                }
                _ => {}
            }
            let (key, value) = item.split_once('=').ok_or_else(|| {
                format!(
                    "`{item}` is not `key=value` nor a named profile (flaky, slow, locks, errors)"
                )
            })?;
            let rate = |v: &str| -> Result<f64, String> {
                v.parse::<f64>()
                    .ok()
                    .filter(|r| (0.0..=1.0).contains(r))
                    .ok_or_else(|| format!("`{v}` in `{item}` is not a rate between 0 and 1"))
            };
            let count = |v: &str| -> Result<u32, String> {
                v.parse::<u32>()
                    .map_err(|_| format!("`{v}` in `{item}` is not a count"))
            };
            match key {
                "resets" => self.set_resets(rate(value)?),
                "drops" => self.set_drops(rate(value)?),
                "latency" => self.set_latency(parse_duration(value)?),
                "spikes" => {
                    let (r, d) = value
                        .split_once(':')
                        .ok_or_else(|| format!("`{item}`: write `spikes=<rate>:<duration>`"))?;
                    self.set_latency_spikes(rate(r)?, parse_duration(d)?);
                }
                "lock-timeouts" => self.lock_timeouts(count(value)?),
                "storage-lock-timeouts" => self.storage_lock_timeouts(count(value)?),
                "fail" => {
                    let mut parts = value.rsplitn(3, ':').collect::<Vec<_>>();
                    parts.reverse();
                    let (path, r, status) = match parts.as_slice() {
                        [p, r] => (*p, rate(r)?, 500),
                        [p, r, s] => match s.parse::<u16>() {
                            Ok(st) => (*p, rate(r)?, st),
                            // `<path>:<rate>` where the path itself has a colon.
                            Err(_) => {
                                return Err(format!(
                                    "`{item}`: write `fail=<path part>:<rate>[:<status>]`"
                                ));
                            }
                        },
                        _ => {
                            return Err(format!(
                                "`{item}`: write `fail=<path part>:<rate>[:<status>]`"
                            ));
                        }
                    };
                    self.fail_paths(path, r, status, "got no worker upid - start worker failed");
                }
                "fail-tasks" => {
                    let (ty, n) = value
                        .split_once(':')
                        .ok_or_else(|| format!("`{item}`: write `fail-tasks=<type>:<n>`"))?;
                    let ty = (ty != "*").then_some(ty);
                    self.fail_tasks(ty, count(n)?, "injected task failure");
                }
                "offline" => self.set_node_offline(value, true),
                "drop-next" | "reset-next" => {
                    let (path, n) = value
                        .rsplit_once(':')
                        .ok_or_else(|| format!("`{item}`: write `{key}=<path part>:<n>`"))?;
                    if key == "drop-next" {
                        self.drop_next(path, count(n)?);
                    } else {
                        self.reset_next(path, count(n)?);
                    }
                }
                _ => {
                    return Err(format!(
                        "unknown fault `{key}` (resets, drops, latency, spikes, lock-timeouts, storage-lock-timeouts, fail, fail-tasks, offline)"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Remove every fault.
    pub fn clear(&self) {
        *self.lock() = FaultState::default();
    }

    pub(crate) fn path_failure(&self, path: &str) -> Option<ApiError> {
        let f = self.lock();
        for pf in &f.path_failures {
            if path.contains(&pf.contains) && rand::thread_rng().gen_bool(pf.rate.clamp(0.0, 1.0)) {
                return Some(ApiError::status(pf.status, pf.message.clone()));
            }
        }
        None
    }
    fn take_lock_timeout(&self) -> bool {
        let mut f = self.lock();
        if f.lock_timeouts > 0 {
            f.lock_timeouts -= 1;
            true
        } else {
            false
        }
    }
    pub(crate) fn take_storage_lock_timeout(&self) -> bool {
        let mut f = self.lock();
        if f.storage_lock_timeouts > 0 {
            f.storage_lock_timeouts -= 1;
            true
        } else {
            false
        }
    }
    fn take_task_failure(&self, ty: &str) -> Option<String> {
        let mut f = self.lock();
        let pos = f
            .failing_tasks
            .iter()
            .position(|(t, n, _)| *n > 0 && t.as_deref().is_none_or(|t| t == ty))?;
        let entry = &mut f.failing_tasks[pos];
        entry.1 -= 1;
        Some(entry.2.clone())
    }
}

/// What `/cluster/resources` last saw of a guest (refreshed every `stats_interval`).
#[derive(Debug, Clone)]
pub struct GuestStats {
    /// `running` / `stopped`.
    pub status: String,
    /// Name or hostname.
    pub name: String,
    /// 0/1.
    pub template: u8,
    /// Bytes.
    pub maxmem: u64,
    /// Bytes of the boot disk.
    pub maxdisk: u64,
    /// vCPUs.
    pub maxcpu: u64,
    /// Seconds since start.
    pub uptime: u64,
}

/// The shared simulator.
#[derive(Clone, Debug)]
pub struct Sim(pub(crate) Arc<Inner>);

#[derive(Debug)]
pub(crate) struct Inner {
    pub state: Mutex<State>,
    pub timings: Timings,
    pub runtime: Arc<dyn GuestRuntime>,
    pub faults: Faults,
    pub total: AtomicU64,
    pub mutating: AtomicU64,
    pub schema_rejected: AtomicU64,
    pub state_file: Option<PathBuf>,
    pub persist_lock: Mutex<()>,
    pub guest_locks: Mutex<HashMap<u32, Arc<tokio::sync::Mutex<()>>>>,
    pub addresses: Mutex<HashMap<u32, (Instant, Vec<IpAddr>)>>,
    pub cert_pem: String,
    pub stats: Mutex<HashMap<u32, GuestStats>>,
    pub fingerprint: String,
    pub root_password: String,
    pub pstart: AtomicU32,
    pub auth_failure_delay: Duration,
}

/// How to build a fresh cluster.
#[derive(Debug, Clone)]
pub struct Genesis {
    /// Cluster name.
    pub cluster: String,
    /// Node names.
    pub nodes: Vec<String>,
}

impl Genesis {
    /// The initial state: nodes with `local` (dir), `local-lvm` (lvmthin) and `tank`
    /// (zfspool) storages,
    /// `root@pam`, no guests.
    pub fn state(&self) -> State {
        let mut key = [0u8; 32];
        rand::thread_rng().fill(&mut key);
        let nodes = self
            .nodes
            .iter()
            .map(|n| {
                (
                    n.clone(),
                    NodeState {
                        maxcpu: 16,
                        maxmem: 64 << 30,
                        maxdisk: 100 << 30,
                        boot_time: now(),
                        pci: super::state::default_pci_devices(),
                        dev_nodes: super::state::default_dev_nodes(),
                    },
                )
            })
            .collect();
        let storages = BTreeMap::from([
            (
                "local".to_string(),
                StorageCfg {
                    ty: "dir".into(),
                    content: ["backup", "import", "iso", "snippets", "vztmpl"]
                        .map(String::from)
                        .to_vec(),
                    shared: false,
                    total: 100 << 30,
                    path: Some("/var/lib/vz".into()),
                },
            ),
            (
                "local-lvm".to_string(),
                StorageCfg {
                    ty: "lvmthin".into(),
                    content: ["images", "rootdir"].map(String::from).to_vec(),
                    shared: false,
                    total: 500 << 30,
                    path: None,
                },
            ),
            // The ZFS pool homelabs keep service data on.
            (
                "tank".to_string(),
                StorageCfg {
                    ty: "zfspool".into(),
                    content: ["images", "rootdir"].map(String::from).to_vec(),
                    shared: false,
                    total: 2 << 40,
                    path: None,
                },
            ),
        ]);
        State {
            format: 1,
            cluster: self.cluster.clone(),
            nodes,
            storages,
            volumes: BTreeMap::new(),
            guests: BTreeMap::new(),
            tasks: BTreeMap::new(),
            pools: BTreeMap::new(),
            users: BTreeMap::from([(
                "root@pam".to_string(),
                User {
                    enable: true,
                    ..User::default()
                },
            )]),
            tokens: BTreeMap::new(),
            roles: BTreeMap::new(),
            acl: Vec::new(),
            backup_jobs: BTreeMap::new(),
            sdn_zones: BTreeMap::new(),
            sdn_vnets: BTreeMap::new(),
            sdn_subnets: BTreeMap::new(),
            pci_mappings: BTreeMap::new(),
            archives: BTreeMap::new(),
            volume_data: BTreeMap::new(),
            next_pid: rand::thread_rng().gen_range(0x1000..0x8000),
            auth_key: hex::encode(key),
        }
    }
}

/// Context handed to a worker task's body.
#[derive(Debug, Clone)]
pub struct TaskCtx {
    /// The simulator.
    pub sim: Sim,
    /// The task's UPID.
    pub upid: String,
    warnings: Arc<AtomicU32>,
    // Lines not yet in the task log: a body may log while it holds the state lock.
    buffered: Arc<Mutex<Vec<String>>>,
}

impl TaskCtx {
    /// Append a log line.
    pub fn log(&self, line: impl Into<String>) {
        self.buffered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(line.into());
        if let Ok(mut st) = self.sim.0.state.try_lock() {
            self.flush_into(&mut st);
        }
    }

    fn flush_into(&self, st: &mut State) {
        let lines: Vec<String> =
            std::mem::take(&mut *self.buffered.lock().unwrap_or_else(|e| e.into_inner()));
        if let Some(t) = st.tasks.get_mut(&self.upid) {
            t.log.extend(lines);
        }
    }

    /// Append a warning (`WARN: ...`); the task then ends `WARNINGS: n`.
    pub fn warn(&self, line: impl std::fmt::Display) {
        self.warnings.fetch_add(1, Ordering::SeqCst);
        self.log(format!("WARN: {line}"));
    }
}

impl Sim {
    /// Lock the state (never held across an await).
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The fault knobs.
    pub fn faults(&self) -> &Faults {
        &self.0.faults
    }

    /// Request counts so far.
    pub fn counts(&self) -> RequestCounts {
        RequestCounts {
            total: self.0.total.load(Ordering::Relaxed),
            mutating: self.0.mutating.load(Ordering::Relaxed),
            schema_rejected: self.0.schema_rejected.load(Ordering::Relaxed),
        }
    }

    /// The guest runtime.
    pub fn runtime(&self) -> &Arc<dyn GuestRuntime> {
        &self.0.runtime
    }

    /// Timings.
    pub fn timings(&self) -> &Timings {
        &self.0.timings
    }

    /// Save the state (atomically) when a state directory is configured.
    pub fn persist(&self) {
        let Some(path) = &self.0.state_file else {
            return;
        };
        let _order = self
            .0
            .persist_lock
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let json = match serde_json::to_vec(&*self.state()) {
            Ok(j) => j,
            Err(e) => {
                tracing::error!("cannot serialise the lab state: {e}");
                return;
            }
        };
        if let Err(e) = write_atomic(path, &json) {
            tracing::error!("cannot save the lab state: {e}");
        }
    }

    /// Take a guest's config lock (PVE's flock), waiting up to the lock timeout.
    pub async fn lock_guest(&self, kind: Kind, vmid: u32) -> ApiResult<OwnedMutexGuard<()>> {
        let timeout_err = || {
            ApiError::fail(format!(
                "can't lock file '{}' - got timeout",
                kind.lock_file(vmid)
            ))
        };
        if self.0.faults.take_lock_timeout() {
            return Err(timeout_err());
        }
        let m = {
            let mut locks = self.0.guest_locks.lock().unwrap_or_else(|e| e.into_inner());
            locks.entry(vmid).or_default().clone()
        };
        tokio::time::timeout(self.0.timings.lock_timeout, m.lock_owned())
            .await
            .map_err(|_| timeout_err())
    }

    /// Allocate a UPID for a new task and record it as running.
    /// Polls the task for up to `delay` seconds (PVE's synchronous `delay` /
    /// `background_delay`): its exit status once it has ended, `None` while it still runs.
    pub(crate) async fn wait_task(&self, upid: &str, delay: u64) -> Option<String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(delay);
        while tokio::time::Instant::now() < deadline {
            let exit = self
                .state()
                .tasks
                .get(upid)
                .and_then(|t| t.exitstatus.clone());
            if exit.is_some() {
                return exit;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    fn new_task(&self, node: &str, ty: &str, id: &str, user: &str) -> String {
        let mut st = self.state();
        st.next_pid = st.next_pid.wrapping_add(1).max(0x1000);
        let pid = st.next_pid;
        let pstart = u64::from(self.0.pstart.fetch_add(7, Ordering::Relaxed));
        let starttime = now();
        let upid = format!("UPID:{node}:{pid:08X}:{pstart:08X}:{starttime:08X}:{ty}:{id}:{user}:");
        st.tasks.insert(
            upid.clone(),
            Task {
                upid: upid.clone(),
                node: node.to_string(),
                pid,
                pstart,
                starttime,
                ty: ty.to_string(),
                id: id.to_string(),
                user: user.to_string(),
                endtime: None,
                exitstatus: None,
                log: Vec::new(),
            },
        );
        // Keep the task list bounded like the real task archive rotation.
        if st.tasks.len() > 2000 {
            let mut finished: Vec<(u64, String)> = st
                .tasks
                .values()
                .filter(|t| t.endtime.is_some())
                .map(|t| (t.starttime, t.upid.clone()))
                .collect();
            finished.sort();
            for (_, u) in finished.into_iter().take(500) {
                st.tasks.remove(&u);
            }
        }
        upid
    }

    /// Start a worker task: it runs for the configured task duration, then `work` runs and
    /// decides how it ends (`OK`, `WARNINGS: n` or the error). `guard` (a guest lock) is
    /// held until the task ends.
    pub fn spawn_task<F, Fut>(
        &self,
        node: &str,
        ty: &str,
        id: &str,
        user: &str,
        guard: Option<OwnedMutexGuard<()>>,
        work: F,
    ) -> String
    where
        F: FnOnce(TaskCtx) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.spawn_task_cleanup(node, ty, id, user, guard, work, |_| {})
    }

    /// Like [`Sim::spawn_task`], with `cleanup` undoing what the request prepared (a
    /// `lock: create` config, a clone target) when an injected fault fails the task.
    #[allow(clippy::too_many_arguments)]
    pub fn spawn_task_cleanup<F, Fut, C>(
        &self,
        node: &str,
        ty: &str,
        id: &str,
        user: &str,
        guard: Option<OwnedMutexGuard<()>>,
        work: F,
        cleanup: C,
    ) -> String
    where
        F: FnOnce(TaskCtx) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
        C: FnOnce(&Sim) + Send + 'static,
    {
        let upid = self.new_task(node, ty, id, user);
        let ctx = TaskCtx {
            sim: self.clone(),
            upid: upid.clone(),
            warnings: Arc::new(AtomicU32::new(0)),
            buffered: Arc::new(Mutex::new(Vec::new())),
        };
        let ty = ty.to_string();
        self.persist();
        let span = tracing::info_span!("task", upid = %upid);
        tokio::spawn(tracing::Instrument::instrument(
            async move {
                let _guard = guard;
                tokio::time::sleep(ctx.sim.0.timings.task_duration).await;
                let cancelled = ctx
                    .sim
                    .state()
                    .tasks
                    .get(&ctx.upid)
                    .is_some_and(|t| t.endtime.is_some());
                if cancelled {
                    cleanup(&ctx.sim);
                    ctx.sim.persist();
                    return;
                }
                let outcome = match ctx.sim.0.faults.take_task_failure(&ty) {
                    Some(msg) => {
                        cleanup(&ctx.sim);
                        Err(msg)
                    }
                    None => work(ctx.clone()).await,
                };
                let warnings = ctx.warnings.load(Ordering::SeqCst);
                let (exit, line) = match outcome {
                    Ok(()) if warnings == 0 => ("OK".to_string(), "TASK OK".to_string()),
                    Ok(()) => (
                        format!("WARNINGS: {warnings}"),
                        format!("TASK WARNINGS: {warnings}"),
                    ),
                    Err(e) => {
                        let e = e.trim_end().to_string();
                        (e.clone(), format!("TASK ERROR: {e}"))
                    }
                };
                {
                    let mut st = ctx.sim.state();
                    ctx.flush_into(&mut st);
                    if let Some(t) = st.tasks.get_mut(&ctx.upid) {
                        t.log.push(line);
                        t.exitstatus = Some(exit);
                        t.endtime = Some(now());
                    }
                }
                ctx.sim.persist();
            },
            span,
        ));
        upid
    }

    /// Tell the runtime a guest started; remember the addresses it reports.
    pub fn guest_started(&self, guest: &Guest) -> Result<(), String> {
        let start = GuestStart {
            node: guest.node.clone(),
            vmid: guest.vmid,
            name: guest.name(),
            kind: match guest.kind {
                Kind::Qemu => GuestKind::Qemu,
                Kind::Lxc => GuestKind::Lxc,
            },
            config: guest.effective(),
        };
        let addrs = self.0.runtime.started(&start)?;
        self.0
            .addresses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(guest.vmid, (Instant::now(), addrs));
        Ok(())
    }

    /// Tell the runtime a guest stopped.
    pub fn guest_stopped(&self, node: &str, vmid: u32) {
        self.0
            .addresses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&vmid);
        self.0.runtime.stopped(node, vmid);
    }

    /// Tell the runtime a guest is gone.
    pub fn guest_destroyed(&self, node: &str, vmid: u32) {
        self.0
            .addresses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&vmid);
        self.0.runtime.destroyed(node, vmid);
    }

    /// The addresses the runtime reported for a running guest, once its guest agent is up
    /// (`agent_delay` after start); `None` while the agent is not answering yet.
    pub fn agent_addresses(&self, vmid: u32) -> Option<Vec<IpAddr>> {
        let map = self.0.addresses.lock().unwrap_or_else(|e| e.into_inner());
        let (since, addrs) = map.get(&vmid)?;
        (since.elapsed() >= self.0.timings.agent_delay).then(|| addrs.clone())
    }

    /// The addresses the runtime reported for a running guest (no agent delay).
    pub fn addresses(&self, vmid: u32) -> Vec<IpAddr> {
        self.0
            .addresses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&vmid)
            .map(|(_, a)| a.clone())
            .unwrap_or_default()
    }

    /// Refresh the `/cluster/resources` statistics (pvestatd's 10 s broadcast).
    pub fn refresh_stats(&self) {
        let now_s = now();
        let snapshot: HashMap<u32, GuestStats> = {
            let st = self.state();
            st.guests
                .values()
                .map(|g| {
                    (
                        g.vmid,
                        GuestStats {
                            status: if g.running { "running" } else { "stopped" }.into(),
                            name: g.name(),
                            template: u8::from(g.is_template()),
                            maxmem: g.memory_mib() << 20,
                            maxdisk: super::api::boot_disk_size(&st, g),
                            maxcpu: g.cpus(),
                            uptime: g.started_at.map(|s| now_s.saturating_sub(s)).unwrap_or(0),
                        },
                    )
                })
                .collect()
        };
        *self.0.stats.lock().unwrap_or_else(|e| e.into_inner()) = snapshot;
    }

    /// The last statistics of a guest, if pvestatd has seen it yet.
    pub fn stats(&self, vmid: u32) -> Option<GuestStats> {
        self.0
            .stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&vmid)
            .cloned()
    }

    /// Root's password (for ticket logins).
    pub fn root_password(&self) -> &str {
        &self.0.root_password
    }

    /// The TLS fingerprint of the node certificate.
    pub fn fingerprint(&self) -> &str {
        &self.0.fingerprint
    }

    /// Delay applied to failed authentications.
    pub fn auth_failure_delay(&self) -> Duration {
        self.0.auth_failure_delay
    }
}

/// `250ms`, `2s`, `1m`, or a bare number of milliseconds.
fn parse_duration(v: &str) -> Result<Duration, String> {
    let v = v.trim();
    let (num, mult) = if let Some(n) = v.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = v.strip_suffix('m') {
        (n, 60_000)
    } else {
        (v, 1)
    };
    num.trim()
        .parse::<u64>()
        .map(|n| Duration::from_millis(n.saturating_mul(mult)))
        .map_err(|_| format!("`{v}` is not a duration (e.g. `250ms`, `2s`)"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod fault_spec_tests {
    use super::*;

    #[test]
    fn profiles_parse_and_bad_items_say_why() {
        let f = Faults::default();
        f.apply_spec("flaky,latency=5ms,spikes=0.5:1s,fail=/status/start:0.2:503,fail-tasks=qmstart:1,lock-timeouts=2")
            .unwrap();
        assert_eq!(f.latency(), Duration::from_millis(5));
        assert_eq!(f.lock().reset_rate, 0.1);
        assert_eq!(f.lock().drop_rate, 0.1);
        assert_eq!(f.lock().spikes, Some((0.5, Duration::from_secs(1))));
        assert_eq!(f.lock().path_failures[0].status, 503);
        assert_eq!(f.lock().lock_timeouts, 2);
        assert!(f.apply_spec("resets=2").unwrap_err().contains("rate"));
        assert!(
            f.apply_spec("bogus=1")
                .unwrap_err()
                .contains("unknown fault")
        );
        assert!(
            f.apply_spec("noequals")
                .unwrap_err()
                .contains("named profile")
        );
        f.set_resets(1.0);
        assert!(f.take_reset("/nodes"));
        f.set_resets(0.0);
        f.set_drops(0.0);
        f.drop_next("/qemu", 1);
        assert!(!f.take_drop("/lxc"));
        assert!(f.take_drop("/nodes/pve/qemu"));
        assert!(!f.take_drop("/nodes/pve/qemu"));
    }
}
