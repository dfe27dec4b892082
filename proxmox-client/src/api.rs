//! Typed resource handles over [`Client`]: `client.node("pve").qemu(100).start()` and so on.
//! Each method sends one request built by [`crate::requests`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::AsyncRead;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::models::*;
use crate::requests::{self as rq, *};
use crate::upid::Upid;

/// Progress callback for uploads: `(bytes_sent, total_bytes)`.
pub type Progress = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// How [`Client::wait_task`] polls.
#[derive(Debug, Clone)]
pub struct WaitOptions {
    /// First poll interval.
    pub initial_interval: Duration,
    /// Poll interval cap (the interval grows by half each poll).
    pub max_interval: Duration,
    /// Give up after this long (the task keeps running on the server).
    pub deadline: Duration,
}

impl Default for WaitOptions {
    fn default() -> Self {
        WaitOptions {
            initial_interval: Duration::from_millis(200),
            max_interval: Duration::from_secs(2),
            deadline: Duration::from_secs(600),
        }
    }
}

impl Client {
    /// `GET /version`.
    pub async fn version(&self) -> Result<Version> {
        self.execute(&rq::version()).await
    }

    /// `GET /nodes`.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>> {
        self.execute(&rq::nodes()).await
    }

    /// `GET /cluster/resources`: the whole cluster's guests, storages and nodes in one call.
    pub async fn cluster_resources(
        &self,
        filter: Option<ResourceFilter>,
    ) -> Result<Vec<ClusterResource>> {
        self.execute(&rq::cluster_resources(filter)).await
    }

    /// `GET /cluster/nextid`: the lowest free VMID (or checks `vmid`). Reserves nothing.
    pub async fn next_id(&self, vmid: Option<u32>) -> Result<u32> {
        let v: serde_json::Value = self.execute(&rq::nextid(vmid)).await?;
        let parsed = match &v {
            serde_json::Value::String(s) => s.parse().ok(),
            serde_json::Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
            _ => None,
        };
        parsed.ok_or_else(|| Error::Decode {
            path: "/cluster/nextid".into(),
            status: 200,
            message: format!("expected a VMID, got {v}"),
        })
    }

    /// A node handle.
    pub fn node(&self, node: impl Into<String>) -> Node {
        Node {
            client: self.clone(),
            node: node.into(),
        }
    }

    /// Pools.
    pub fn pools(&self) -> Pools {
        Pools {
            client: self.clone(),
        }
    }

    /// Users, tokens, ACLs and roles.
    pub fn access(&self) -> Access {
        Access {
            client: self.clone(),
        }
    }

    /// Scheduled backup jobs.
    pub fn backup_jobs(&self) -> BackupJobs {
        BackupJobs {
            client: self.clone(),
        }
    }

    /// Cluster PCI resource mappings (`/cluster/mapping/pci`).
    ///
    /// ```no_run
    /// # async fn demo(client: proxmox_client::Client) -> proxmox_client::Result<()> {
    /// use proxmox_client::property::PciMapEntry;
    /// use proxmox_client::requests::PciMappingParams;
    ///
    /// // Map the node's first GPU (all functions) under the name `gpu`.
    /// let devices = client.node("pve").hardware_pci().await?;
    /// if let Some(gpu) = devices.iter().find(|d| d.is_gpu()) {
    ///     let entry = PciMapEntry::from_device("pve", gpu, true);
    ///     let params = PciMappingParams { map: vec![entry], ..Default::default() };
    ///     client.pci_mappings().create("gpu", &params).await?;
    /// }
    /// // VMs then use `hostpci0: mapping=gpu,pcie=1`.
    /// # Ok(()) }
    /// ```
    pub fn pci_mappings(&self) -> PciMappings {
        PciMappings {
            client: self.clone(),
        }
    }

    /// SDN zones, VNets and subnets.
    pub fn sdn(&self) -> Sdn {
        Sdn {
            client: self.clone(),
        }
    }

    /// `GET /nodes/{node}/tasks/{upid}/status`.
    pub async fn task_status(&self, upid: &Upid) -> Result<TaskStatus> {
        self.execute(&rq::task_status(upid)).await
    }

    /// `GET /nodes/{node}/tasks/{upid}/log`.
    pub async fn task_log(
        &self,
        upid: &Upid,
        start: Option<u64>,
        limit: Option<u64>,
    ) -> Result<Vec<TaskLogLine>> {
        self.execute(&rq::task_log(upid, start, limit)).await
    }

    /// Polls a task until it stops (backoff from `initial_interval` to `max_interval`) and
    /// returns `Ok`/`Warnings(n)`; a failed task is [`Error::TaskFailed`] with its error
    /// text, and a task still running at the deadline is [`Error::TaskTimeout`].
    pub async fn wait_task(&self, upid: &Upid, opts: &WaitOptions) -> Result<TaskOutcome> {
        let started = Instant::now();
        let mut interval = opts.initial_interval;
        // Polls in a row whose answer was lost even after the request's own retries.
        let mut misses = 0u32;
        loop {
            let Some(st) = poll_task(self, upid, started, opts.deadline, &mut misses).await? else {
                tokio::time::sleep(interval).await;
                continue;
            };
            if st.is_stopped() {
                let exit = st.exitstatus.unwrap_or_else(|| "unexpected status".into());
                return TaskOutcome::from_exitstatus(&exit).map_err(|text| Error::TaskFailed {
                    upid: upid.to_string(),
                    exitstatus: text,
                });
            }
            let elapsed = started.elapsed();
            if elapsed >= opts.deadline {
                return Err(Error::TaskTimeout {
                    upid: upid.to_string(),
                    waited: elapsed,
                });
            }
            tokio::time::sleep(interval.min(opts.deadline - elapsed)).await;
            interval = (interval + interval / 2).min(opts.max_interval);
        }
    }
}

/// How many task-status polls in a row may be lost before [`Client::wait_task`] gives up.
const MAX_POLL_MISSES: u32 = 5;

/// One task-status poll. A poll is a read: an answer lost on the way (after the request's
/// own retries) is `None`, polled again by the caller, within the deadline and at most
/// [`MAX_POLL_MISSES`] times in a row.
pub(crate) async fn poll_task(
    client: &Client,
    upid: &Upid,
    started: Instant,
    deadline: Duration,
    misses: &mut u32,
) -> Result<Option<TaskStatus>> {
    match client.task_status(upid).await {
        Ok(st) => {
            *misses = 0;
            Ok(Some(st))
        }
        Err(e)
            if crate::client::transient_read(&e)
                && *misses < MAX_POLL_MISSES
                && started.elapsed() < deadline =>
        {
            *misses += 1;
            tracing::warn!(%upid, error = %e, misses = *misses, "task status not read; polling again");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Decodes a UPID result.
async fn upid_of(client: &Client, req: &crate::request::ApiRequest) -> Result<Upid> {
    client.execute::<Upid>(req).await
}

/// A node.
#[derive(Debug, Clone)]
pub struct Node {
    pub(crate) client: Client,
    pub(crate) node: String,
}

impl Node {
    /// The node name.
    pub fn name(&self) -> &str {
        &self.node
    }

    /// `GET /nodes/{node}/qemu`.
    pub async fn qemu_list(&self) -> Result<Vec<GuestListEntry>> {
        self.client.execute(&rq::qemu_list(&self.node, None)).await
    }

    /// `POST /nodes/{node}/qemu` → task.
    pub async fn qemu_create(&self, p: &QemuCreate) -> Result<Upid> {
        upid_of(&self.client, &rq::qemu_create(&self.node, p)?).await
    }

    /// A VM handle.
    pub fn qemu(&self, vmid: u32) -> Vm {
        Vm {
            client: self.client.clone(),
            node: self.node.clone(),
            vmid,
        }
    }

    /// `GET /nodes/{node}/lxc`.
    pub async fn lxc_list(&self) -> Result<Vec<GuestListEntry>> {
        self.client.execute(&rq::lxc_list(&self.node)).await
    }

    /// `POST /nodes/{node}/lxc` → task.
    pub async fn lxc_create(&self, p: &LxcCreate) -> Result<Upid> {
        upid_of(&self.client, &rq::lxc_create(&self.node, p)?).await
    }

    /// A container handle.
    pub fn lxc(&self, vmid: u32) -> Container {
        Container {
            client: self.client.clone(),
            node: self.node.clone(),
            vmid,
        }
    }

    /// `GET /nodes/{node}/storage`.
    pub async fn storage_list(&self, content: Option<&str>) -> Result<Vec<StorageStatus>> {
        self.client
            .execute(&rq::storage_list(&self.node, content))
            .await
    }

    /// A storage handle.
    pub fn storage(&self, storage: impl Into<String>) -> Storage {
        Storage {
            client: self.client.clone(),
            node: self.node.clone(),
            storage: storage.into(),
        }
    }

    /// `GET /nodes/{node}/hardware/pci` with PVE's defaults (memory controllers, bridges
    /// and processors hidden; names included).
    pub async fn hardware_pci(&self) -> Result<Vec<PciDevice>> {
        self.hardware_pci_scan(&PciScan::default()).await
    }

    /// `GET /nodes/{node}/hardware/pci` with explicit class filter and verbosity.
    pub async fn hardware_pci_scan(&self, p: &PciScan) -> Result<Vec<PciDevice>> {
        self.client.execute(&rq::hardware_pci(&self.node, p)).await
    }

    /// `GET /nodes/{node}/tasks`.
    pub async fn tasks(&self, vmid: Option<u32>, limit: Option<u64>) -> Result<Vec<TaskStatus>> {
        self.client
            .execute(&rq::task_list(&self.node, vmid, limit))
            .await
    }
}

/// A QEMU VM.
#[derive(Debug, Clone)]
pub struct Vm {
    client: Client,
    node: String,
    vmid: u32,
}

impl Vm {
    /// The VMID.
    pub fn vmid(&self) -> u32 {
        self.vmid
    }
    /// `GET .../config` (pending changes applied).
    pub async fn config(&self) -> Result<GuestConfig> {
        self.client
            .execute(&rq::qemu_config(&self.node, self.vmid, None))
            .await
    }
    /// `GET .../config?current=1` (without pending changes).
    pub async fn config_current(&self) -> Result<GuestConfig> {
        self.client
            .execute(&rq::qemu_config(&self.node, self.vmid, Some(true)))
            .await
    }
    /// `GET .../pending`.
    pub async fn pending(&self) -> Result<Vec<serde_json::Value>> {
        self.client
            .execute(&rq::qemu_pending(&self.node, self.vmid))
            .await
    }
    /// `PUT .../config` (synchronous; use [`update_config_async`](Self::update_config_async)
    /// for changes that allocate storage).
    pub async fn update_config(&self, p: &QemuUpdate) -> Result<()> {
        let _: serde_json::Value = self
            .client
            .execute(&rq::qemu_update_config(&self.node, self.vmid, p)?)
            .await?;
        Ok(())
    }
    /// `POST .../config` → task, or `None` if it finished within `background_delay`.
    pub async fn update_config_async(
        &self,
        p: &QemuUpdate,
        background_delay: Option<u32>,
    ) -> Result<Option<Upid>> {
        self.client
            .execute(&rq::qemu_update_config_async(
                &self.node,
                self.vmid,
                p,
                background_delay,
            )?)
            .await
    }
    /// `GET .../status/current`.
    pub async fn status(&self) -> Result<GuestStatus> {
        self.client
            .execute(&rq::qemu_status(&self.node, self.vmid))
            .await
    }
    /// `POST .../status/start` → task.
    pub async fn start(&self) -> Result<Upid> {
        upid_of(&self.client, &rq::qemu_start(&self.node, self.vmid, None)).await
    }
    /// `POST .../status/stop` → task.
    pub async fn stop(&self) -> Result<Upid> {
        upid_of(&self.client, &rq::qemu_stop(&self.node, self.vmid, None)).await
    }
    /// `POST .../status/shutdown` → task.
    pub async fn shutdown(&self, timeout: Option<u32>, force_stop: bool) -> Result<Upid> {
        upid_of(
            &self.client,
            &rq::qemu_shutdown(&self.node, self.vmid, timeout, Some(force_stop)),
        )
        .await
    }
    /// `POST .../status/reboot` → task.
    pub async fn reboot(&self) -> Result<Upid> {
        upid_of(&self.client, &rq::qemu_reboot(&self.node, self.vmid, None)).await
    }
    /// `DELETE` the VM → task. `purge` also removes it from backup jobs, HA and pools.
    pub async fn delete(&self, purge: bool, destroy_unreferenced_disks: bool) -> Result<Upid> {
        upid_of(
            &self.client,
            &rq::qemu_delete(
                &self.node,
                self.vmid,
                Some(purge),
                Some(destroy_unreferenced_disks),
            ),
        )
        .await
    }
    /// `POST .../clone` → task.
    pub async fn clone_to(&self, p: &QemuClone) -> Result<Upid> {
        upid_of(&self.client, &rq::qemu_clone(&self.node, self.vmid, p)?).await
    }
    /// `POST .../template` → task.
    pub async fn template(&self) -> Result<Upid> {
        upid_of(
            &self.client,
            &rq::qemu_template(&self.node, self.vmid, None),
        )
        .await
    }
    /// `PUT .../resize` → task (`None` from servers older than qemu-server 8.0.2).
    pub async fn resize(
        &self,
        disk: &str,
        size: &str,
        digest: Option<&str>,
    ) -> Result<Option<Upid>> {
        self.client
            .execute(&rq::qemu_resize(&self.node, self.vmid, disk, size, digest)?)
            .await
    }
    /// Guest agent `network-get-interfaces`.
    pub async fn agent_network_interfaces(&self) -> Result<Vec<AgentInterface>> {
        let r: AgentResult<Vec<AgentInterface>> = self
            .client
            .execute(&rq::qemu_agent_network_interfaces(&self.node, self.vmid))
            .await?;
        Ok(r.result)
    }
}

/// An LXC container.
#[derive(Debug, Clone)]
pub struct Container {
    client: Client,
    node: String,
    vmid: u32,
}

impl Container {
    /// The VMID.
    pub fn vmid(&self) -> u32 {
        self.vmid
    }
    /// `GET .../config`.
    pub async fn config(&self) -> Result<GuestConfig> {
        self.client
            .execute(&rq::lxc_config(&self.node, self.vmid))
            .await
    }
    /// `PUT .../config`.
    pub async fn update_config(&self, p: &LxcUpdate) -> Result<()> {
        let _: serde_json::Value = self
            .client
            .execute(&rq::lxc_update_config(&self.node, self.vmid, p)?)
            .await?;
        Ok(())
    }
    /// `GET .../status/current`.
    pub async fn status(&self) -> Result<GuestStatus> {
        self.client
            .execute(&rq::lxc_status(&self.node, self.vmid))
            .await
    }
    /// `POST .../status/start` → task.
    pub async fn start(&self) -> Result<Upid> {
        upid_of(&self.client, &rq::lxc_start(&self.node, self.vmid)).await
    }
    /// `POST .../status/stop` → task.
    pub async fn stop(&self) -> Result<Upid> {
        upid_of(&self.client, &rq::lxc_stop(&self.node, self.vmid)).await
    }
    /// `POST .../status/shutdown` → task.
    pub async fn shutdown(&self, timeout: Option<u32>, force_stop: bool) -> Result<Upid> {
        upid_of(
            &self.client,
            &rq::lxc_shutdown(&self.node, self.vmid, timeout, Some(force_stop)),
        )
        .await
    }
    /// `DELETE` the container → task.
    pub async fn delete(&self, purge: bool, force: bool) -> Result<Upid> {
        upid_of(
            &self.client,
            &rq::lxc_delete(&self.node, self.vmid, Some(purge), Some(force)),
        )
        .await
    }
}

/// A storage on a node.
#[derive(Debug, Clone)]
pub struct Storage {
    client: Client,
    node: String,
    storage: String,
}

impl Storage {
    /// `GET .../content`.
    pub async fn content(
        &self,
        content: Option<&str>,
        vmid: Option<u32>,
    ) -> Result<Vec<StorageContent>> {
        self.client
            .execute(&rq::storage_content(
                &self.node,
                &self.storage,
                content,
                vmid,
            ))
            .await
    }

    /// `DELETE .../content/{volume}` → task (or `None` when it finished within `delay`).
    pub async fn delete_volume(&self, volume: &str, delay: Option<u32>) -> Result<Option<Upid>> {
        self.client
            .execute(&rq::storage_volume_delete(
                &self.node,
                &self.storage,
                volume,
                delay,
            ))
            .await
    }

    /// `POST .../download-url` → task: the node fetches the URL itself.
    pub async fn download_url(&self, p: &DownloadUrl) -> Result<Upid> {
        upid_of(
            &self.client,
            &rq::download_url(&self.node, &self.storage, p)?,
        )
        .await
    }

    /// Uploads `len` bytes from `reader` (`POST .../upload`, streaming multipart with a
    /// `Content-Length`, fields before the file part) → task. Must be sent to the node that
    /// owns the storage: PVE does not proxy uploads.
    pub async fn upload<R>(
        &self,
        p: &Upload,
        reader: R,
        len: u64,
        progress: Option<Progress>,
    ) -> Result<Upid>
    where
        R: AsyncRead + Send + Unpin + 'static,
    {
        let req = rq::upload(&self.node, &self.storage, p)?;
        let boundary = format!("----homelab{:016x}", rand::random::<u64>());
        let (head, tail) = multipart_frame(&boundary, &req.params, &p.filename);
        let total = head.len() as u64 + len + tail.len() as u64;
        let stream = upload_stream(head, reader, len, tail, progress);
        let body = reqwest::Body::wrap_stream(stream);
        let bytes = self
            .client
            .send_streaming(
                &req.path,
                format!("multipart/form-data; boundary={boundary}"),
                total,
                body,
            )
            .await?;
        crate::client::decode_envelope(&req.path, 200, &bytes)
    }

    /// Uploads a local file (see [`upload`](Self::upload)).
    pub async fn upload_file(
        &self,
        path: &std::path::Path,
        p: &Upload,
        progress: Option<Progress>,
    ) -> Result<Upid> {
        let file = tokio::fs::File::open(path).await.map_err(|e| Error::Io {
            context: format!("cannot open {}", path.display()),
            source: e,
        })?;
        let len = file
            .metadata()
            .await
            .map_err(|e| Error::Io {
                context: format!("cannot stat {}", path.display()),
                source: e,
            })?
            .len();
        self.upload(p, file, len, progress).await
    }
}

/// The multipart text before and after the file bytes (pure). Fields come first, in the
/// order given; the file part is named `filename` as PVE requires.
pub fn multipart_frame(
    boundary: &str,
    params: &[(String, crate::request::ParamValue)],
    filename: &str,
) -> (Bytes, Bytes) {
    let mut head = String::new();
    for (k, v) in params.iter().filter(|(k, _)| k != "filename") {
        head.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{}\r\n",
            v.to_wire()
        ));
    }
    let safe_name = filename.replace(['"', '\r', '\n'], "_");
    head.push_str(&format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"filename\"; filename=\"{safe_name}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    ));
    let tail = format!("\r\n--{boundary}--\r\n");
    (Bytes::from(head), Bytes::from(tail))
}

fn upload_stream<R>(
    head: Bytes,
    reader: R,
    len: u64,
    tail: Bytes,
    progress: Option<Progress>,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static
where
    R: AsyncRead + Send + Unpin + 'static,
{
    let file = reader_stream::stream(reader, len, progress);
    futures_util::stream::once(async move { Ok(head) })
        .chain(file)
        .chain(futures_util::stream::once(async move { Ok(tail) }))
}

/// A reader-to-stream adapter with progress reporting and a length check (a file that
/// changes size mid-upload would otherwise break the Content-Length we promised).
mod reader_stream {
    use super::*;
    use tokio::io::AsyncReadExt;

    pub(super) fn stream<R>(
        reader: R,
        len: u64,
        progress: Option<Progress>,
    ) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static
    where
        R: AsyncRead + Send + Unpin + 'static,
    {
        futures_util::stream::try_unfold(
            (reader, 0u64, progress),
            move |(mut reader, sent, progress)| async move {
                if sent >= len {
                    return Ok(None);
                }
                let want = usize::try_from((len - sent).min(256 * 1024)).unwrap_or(256 * 1024);
                let mut buf = vec![0u8; want];
                let n = reader.read(&mut buf).await?;
                if n == 0 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("upload source ended after {sent} of {len} bytes"),
                    ));
                }
                buf.truncate(n);
                let sent = sent + n as u64;
                if let Some(p) = &progress {
                    p(sent, len);
                }
                Ok(Some((Bytes::from(buf), (reader, sent, progress))))
            },
        )
    }
}

/// Pools.
#[derive(Debug, Clone)]
pub struct Pools {
    client: Client,
}

impl Pools {
    /// `GET /pools`.
    pub async fn list(&self) -> Result<Vec<Pool>> {
        self.client.execute(&rq::pools_list(None)).await
    }
    /// `GET /pools?poolid=` (with members).
    pub async fn get(&self, poolid: &str) -> Result<Pool> {
        let mut v: Vec<Pool> = self.client.execute(&rq::pools_list(Some(poolid))).await?;
        v.pop().ok_or_else(|| Error::NotFound {
            status: 200,
            message: format!("pool '{poolid}' does not exist"),
        })
    }
    /// `POST /pools`.
    pub async fn create(&self, poolid: &str, comment: Option<&str>) -> Result<()> {
        unit(&self.client, &rq::pool_create(poolid, comment)).await
    }
    /// `PUT /pools`.
    pub async fn update(&self, poolid: &str, p: &PoolUpdate) -> Result<()> {
        unit(&self.client, &rq::pool_update(poolid, p)).await
    }
    /// `DELETE /pools?poolid=`.
    pub async fn delete(&self, poolid: &str) -> Result<()> {
        unit(&self.client, &rq::pool_delete(poolid)).await
    }
}

async fn unit(client: &Client, req: &crate::request::ApiRequest) -> Result<()> {
    let _: serde_json::Value = client.execute(req).await?;
    Ok(())
}

/// Users, tokens, ACLs, roles.
#[derive(Debug, Clone)]
pub struct Access {
    client: Client,
}

impl Access {
    /// `GET /access/users`.
    pub async fn users(&self) -> Result<Vec<User>> {
        self.client.execute(&rq::users_list()).await
    }
    /// `POST /access/users`.
    pub async fn create_user(&self, p: &UserCreate) -> Result<()> {
        unit(&self.client, &rq::user_create(p)).await
    }
    /// `DELETE /access/users/{userid}`.
    pub async fn delete_user(&self, userid: &str) -> Result<()> {
        unit(&self.client, &rq::user_delete(userid)).await
    }
    /// `GET /access/users/{userid}/token`.
    pub async fn tokens(&self, userid: &str) -> Result<Vec<TokenInfo>> {
        self.client.execute(&rq::tokens_list(userid)).await
    }
    /// `POST /access/users/{userid}/token/{tokenid}`: the secret is in the answer only.
    pub async fn create_token(
        &self,
        userid: &str,
        tokenid: &str,
        privsep: bool,
        comment: Option<&str>,
    ) -> Result<NewToken> {
        self.client
            .execute(&rq::token_create(
                userid,
                tokenid,
                Some(privsep),
                None,
                comment,
            ))
            .await
    }
    /// `DELETE /access/users/{userid}/token/{tokenid}`.
    pub async fn delete_token(&self, userid: &str, tokenid: &str) -> Result<()> {
        unit(&self.client, &rq::token_delete(userid, tokenid)).await
    }
    /// `GET /access/acl`.
    pub async fn acl(&self) -> Result<Vec<AclEntry>> {
        self.client.execute(&rq::acl_list()).await
    }
    /// `PUT /access/acl`.
    pub async fn update_acl(&self, p: &AclUpdate) -> Result<()> {
        unit(&self.client, &rq::acl_update(p)).await
    }
    /// `GET /access/roles`.
    pub async fn roles(&self) -> Result<Vec<Role>> {
        self.client.execute(&rq::roles_list()).await
    }
    /// `POST /access/roles`.
    pub async fn create_role(&self, roleid: &str, privs: &[&str]) -> Result<()> {
        unit(&self.client, &rq::role_create(roleid, privs)).await
    }
    /// `PUT /access/roles/{roleid}`.
    pub async fn update_role(&self, roleid: &str, privs: &[&str], append: bool) -> Result<()> {
        unit(&self.client, &rq::role_update(roleid, privs, Some(append))).await
    }
    /// `DELETE /access/roles/{roleid}`.
    pub async fn delete_role(&self, roleid: &str) -> Result<()> {
        unit(&self.client, &rq::role_delete(roleid)).await
    }
}

/// Cluster PCI resource mappings.
#[derive(Debug, Clone)]
pub struct PciMappings {
    client: Client,
}

impl PciMappings {
    /// `GET /cluster/mapping/pci`: the mappings the caller may see (`Mapping.Audit`, `Use`
    /// or `Modify` on `/mapping/pci/<id>`).
    pub async fn list(&self) -> Result<Vec<PciMapping>> {
        self.client.execute(&rq::pci_mappings_list(None)).await
    }
    /// `GET /cluster/mapping/pci?check-node=<node>`: with each mapping's diagnostics for
    /// `node` (missing entry, hardware that no longer matches).
    pub async fn list_checked(&self, node: &str) -> Result<Vec<PciMapping>> {
        self.client
            .execute(&rq::pci_mappings_list(Some(node)))
            .await
    }
    /// `GET /cluster/mapping/pci/{id}` (the answer has no `id`; this fills it in).
    pub async fn get(&self, id: &str) -> Result<PciMapping> {
        let mut m: PciMapping = self.client.execute(&rq::pci_mapping_get(id)).await?;
        m.id = id.to_string();
        Ok(m)
    }
    /// `POST /cluster/mapping/pci`.
    pub async fn create(&self, id: &str, p: &PciMappingParams) -> Result<()> {
        unit(&self.client, &rq::pci_mapping_create(id, p)?).await
    }
    /// `PUT /cluster/mapping/pci/{id}`.
    pub async fn update(
        &self,
        id: &str,
        p: &PciMappingParams,
        delete: &[&str],
        digest: Option<&str>,
    ) -> Result<()> {
        unit(
            &self.client,
            &rq::pci_mapping_update(id, p, delete, digest)?,
        )
        .await
    }
    /// `DELETE /cluster/mapping/pci/{id}`.
    pub async fn delete(&self, id: &str) -> Result<()> {
        unit(&self.client, &rq::pci_mapping_delete(id)).await
    }
}

/// Scheduled backup jobs.
#[derive(Debug, Clone)]
pub struct BackupJobs {
    client: Client,
}

impl BackupJobs {
    /// `GET /cluster/backup`.
    pub async fn list(&self) -> Result<Vec<BackupJob>> {
        self.client.execute(&rq::backup_jobs_list()).await
    }
    /// `GET /cluster/backup/{id}`.
    pub async fn get(&self, id: &str) -> Result<BackupJob> {
        self.client.execute(&rq::backup_job_get(id)).await
    }
    /// `POST /cluster/backup`.
    pub async fn create(&self, id: Option<&str>, p: &BackupJobParams) -> Result<()> {
        unit(&self.client, &rq::backup_job_create(id, p)).await
    }
    /// `PUT /cluster/backup/{id}`.
    pub async fn update(&self, id: &str, p: &BackupJobParams, delete: &[&str]) -> Result<()> {
        unit(&self.client, &rq::backup_job_update(id, p, delete)).await
    }
    /// `DELETE /cluster/backup/{id}`.
    pub async fn delete(&self, id: &str) -> Result<()> {
        unit(&self.client, &rq::backup_job_delete(id)).await
    }
}

/// SDN.
#[derive(Debug, Clone)]
pub struct Sdn {
    client: Client,
}

impl Sdn {
    /// `GET /cluster/sdn/zones`.
    pub async fn zones(&self) -> Result<Vec<SdnObject>> {
        self.client.execute(&rq::sdn_zones_list(None)).await
    }
    /// `POST /cluster/sdn/zones` (pending until [`apply`](Self::apply)).
    pub async fn create_zone(
        &self,
        zone: &str,
        zone_type: &str,
        extra: &ExtraParams,
    ) -> Result<()> {
        unit(&self.client, &rq::sdn_zone_create(zone, zone_type, extra)).await
    }
    /// `DELETE /cluster/sdn/zones/{zone}`.
    pub async fn delete_zone(&self, zone: &str) -> Result<()> {
        unit(&self.client, &rq::sdn_zone_delete(zone)).await
    }
    /// `GET /cluster/sdn/vnets`.
    pub async fn vnets(&self) -> Result<Vec<SdnObject>> {
        self.client.execute(&rq::sdn_vnets_list()).await
    }
    /// `POST /cluster/sdn/vnets`.
    pub async fn create_vnet(
        &self,
        vnet: &str,
        zone: &str,
        tag: Option<u32>,
        alias: Option<&str>,
    ) -> Result<()> {
        unit(
            &self.client,
            &rq::sdn_vnet_create(vnet, zone, tag, alias, None),
        )
        .await
    }
    /// `DELETE /cluster/sdn/vnets/{vnet}`.
    pub async fn delete_vnet(&self, vnet: &str) -> Result<()> {
        unit(&self.client, &rq::sdn_vnet_delete(vnet)).await
    }
    /// `GET /cluster/sdn/vnets/{vnet}/subnets`.
    pub async fn subnets(&self, vnet: &str) -> Result<Vec<SdnObject>> {
        self.client.execute(&rq::sdn_subnets_list(vnet)).await
    }
    /// `POST /cluster/sdn/vnets/{vnet}/subnets`.
    pub async fn create_subnet(
        &self,
        vnet: &str,
        subnet: &str,
        gateway: Option<&str>,
        snat: Option<bool>,
    ) -> Result<()> {
        unit(
            &self.client,
            &rq::sdn_subnet_create(vnet, subnet, gateway, snat),
        )
        .await
    }
    /// `DELETE /cluster/sdn/vnets/{vnet}/subnets/{id}`.
    pub async fn delete_subnet(&self, vnet: &str, subnet_id: &str) -> Result<()> {
        unit(&self.client, &rq::sdn_subnet_delete(vnet, subnet_id)).await
    }
    /// `PUT /cluster/sdn`: apply pending changes → task.
    pub async fn apply(&self) -> Result<Upid> {
        upid_of(&self.client, &rq::sdn_apply()).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::request::ParamValue;

    #[test]
    fn multipart_frame_layout() {
        let params = vec![
            ("content".to_string(), ParamValue::from("iso")),
            ("checksum-algorithm".to_string(), ParamValue::from("sha256")),
            ("checksum".to_string(), ParamValue::from("ab")),
            ("filename".to_string(), ParamValue::from("t.iso")),
        ];
        let (head, tail) = multipart_frame("B", &params, "t.iso");
        let head = String::from_utf8(head.to_vec()).unwrap();
        let c = head.find("name=\"content\"").unwrap();
        let a = head.find("name=\"checksum-algorithm\"").unwrap();
        let f = head.find("name=\"filename\"; filename=\"t.iso\"").unwrap();
        assert!(c < a && a < f);
        assert!(head.ends_with("application/octet-stream\r\n\r\n"));
        assert_eq!(&tail[..], b"\r\n--B--\r\n");
    }

    #[tokio::test]
    async fn upload_stream_reports_progress_and_checks_length() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let s2 = seen.clone();
        let progress: Progress = Arc::new(move |a, b| s2.lock().unwrap().push((a, b)));
        let data = vec![7u8; 600 * 1024];
        let stream = upload_stream(
            Bytes::from_static(b"H"),
            std::io::Cursor::new(data.clone()),
            data.len() as u64,
            Bytes::from_static(b"T"),
            Some(progress),
        );
        let chunks: Vec<_> = stream.collect().await;
        let total: usize = chunks.iter().map(|c| c.as_ref().unwrap().len()).sum();
        assert_eq!(total, data.len() + 2);
        {
            let seen = seen.lock().unwrap();
            assert_eq!(seen.last(), Some(&(data.len() as u64, data.len() as u64)));
            assert!(seen.len() >= 3);
        }

        let short = upload_stream(
            Bytes::new(),
            std::io::Cursor::new(vec![1u8; 10]),
            20,
            Bytes::new(),
            None,
        );
        let res: Vec<_> = short.collect().await;
        assert!(res.iter().any(|r| r.is_err()));
    }
}
