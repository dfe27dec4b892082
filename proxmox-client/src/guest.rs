//! One handle for a guest of either kind: `client.node("pve").guest(GuestKind::Lxc, 101)`.
//!
//! QEMU VMs and LXC containers share most of their API (`/nodes/{node}/{qemu|lxc}/{vmid}`)
//! but differ in details this module hides: the VM config update is asynchronous (`POST`,
//! a task) while the container's is synchronous (`PUT`); a container clone is named with
//! `hostname`, a VM clone with `name`; a container `template` finishes synchronously.
//! Every mutating call returns a [`Task`]; options are structs, never positional bools.
//! Requests are built by pure functions ([`GuestRequests`]) and checked against the
//! official API schema in the tests.

use std::fmt;
use std::str::FromStr;

use serde::de::DeserializeOwned;

use crate::api::Node;
use crate::client::Client;
use crate::error::{Error, Result};
use crate::models::{GuestConfig, GuestStatus};
use crate::request::{ApiRequest, Method, ParamValue};
use crate::task::Task;
use crate::upid::Upid;

/// QEMU VM or LXC container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GuestKind {
    /// A QEMU virtual machine (`/nodes/{node}/qemu`).
    Qemu,
    /// An LXC container (`/nodes/{node}/lxc`).
    Lxc,
}

impl GuestKind {
    /// `qemu` / `lxc`: the path segment, and the `type` of a cluster resource.
    pub fn as_str(self) -> &'static str {
        match self {
            GuestKind::Qemu => "qemu",
            GuestKind::Lxc => "lxc",
        }
    }
}

impl fmt::Display for GuestKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for GuestKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "qemu" => Ok(GuestKind::Qemu),
            "lxc" => Ok(GuestKind::Lxc),
            other => Err(Error::invalid(
                "guest kind",
                format!("'{other}' is neither 'qemu' nor 'lxc'"),
            )),
        }
    }
}

/// Parameters of a guest creation (`POST /nodes/{node}/{qemu|lxc}`): the VMID and the
/// configuration as PVE's key/value pairs (property strings as text).
#[derive(Debug, Clone, Default)]
pub struct GuestCreate {
    /// The new guest's VMID.
    pub vmid: u32,
    /// Configuration and creation-only parameters (`ostemplate`, `import-from` in disks, ...).
    pub params: Vec<(String, ParamValue)>,
}

impl GuestCreate {
    /// A creation from a typed QEMU request ([`crate::requests::QemuCreate`]).
    pub fn qemu(p: &crate::requests::QemuCreate) -> Result<GuestCreate> {
        let r = crate::requests::qemu_create("-", p)?;
        Ok(GuestCreate {
            vmid: p.vmid,
            params: r.params.into_iter().filter(|(k, _)| k != "vmid").collect(),
        })
    }

    /// A creation from a typed LXC request ([`crate::requests::LxcCreate`]).
    pub fn lxc(p: &crate::requests::LxcCreate) -> Result<GuestCreate> {
        let r = crate::requests::lxc_create("-", p)?;
        Ok(GuestCreate {
            vmid: p.vmid,
            params: r.params.into_iter().filter(|(k, _)| k != "vmid").collect(),
        })
    }
}

/// A configuration change: values to set, keys to delete, and the digest of the config
/// it was computed from (PVE refuses the change if the config moved on: see
/// [`Error::is_digest_mismatch`]).
#[derive(Debug, Clone, Default)]
pub struct ConfigUpdate {
    /// Keys and values to set (property strings as text).
    pub set: Vec<(String, ParamValue)>,
    /// Keys to remove.
    pub delete: Vec<String>,
    /// `digest` of the config read the change is based on.
    pub digest: Option<String>,
}

impl ConfigUpdate {
    /// Sets `key` to `value`.
    pub fn set(mut self, key: impl Into<String>, value: impl Into<ParamValue>) -> Self {
        self.set.push((key.into(), value.into()));
        self
    }
    /// Deletes `key`.
    pub fn delete(mut self, key: impl Into<String>) -> Self {
        self.delete.push(key.into());
        self
    }
    /// Only if the config still has this digest.
    pub fn digest(mut self, digest: impl Into<String>) -> Self {
        self.digest = Some(digest.into());
        self
    }
    /// Whether there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.delete.is_empty()
    }
}

/// `status/start` options.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// Ignore a lock (root only).
    pub skiplock: bool,
    /// Seconds to wait for the start (QEMU only).
    pub timeout: Option<u32>,
}

/// `status/stop` options (a hard stop).
#[derive(Debug, Clone, Default)]
pub struct StopOptions {
    /// Ignore a lock (root only).
    pub skiplock: bool,
    /// Abort a running shutdown task first (`overrule-shutdown`).
    pub overrule_shutdown: bool,
    /// Seconds to wait (QEMU only).
    pub timeout: Option<u32>,
}

/// `status/shutdown` options (ACPI / init shutdown).
#[derive(Debug, Clone, Default)]
pub struct ShutdownOptions {
    /// Seconds to wait for the guest to go down.
    pub timeout: Option<u32>,
    /// Stop it hard when `timeout` passes (`forceStop`).
    pub force_stop: bool,
}

/// `status/reboot` options (pending changes are applied on the way).
#[derive(Debug, Clone, Default)]
pub struct RebootOptions {
    /// Seconds to wait for the shutdown half.
    pub timeout: Option<u32>,
}

/// `resize` parameters.
#[derive(Debug, Clone, Default)]
pub struct ResizeOptions {
    /// The disk key (`scsi0`, `rootfs`, `mp0`).
    pub disk: String,
    /// `40G` (absolute) or `+10G` (grow by); PVE never shrinks.
    pub size: String,
    /// Only if the config still has this digest.
    pub digest: Option<String>,
}

impl ResizeOptions {
    /// Grow `disk` to `gib` GiB.
    pub fn to_gib(disk: impl Into<String>, gib: u64) -> ResizeOptions {
        ResizeOptions {
            disk: disk.into(),
            size: format!("{gib}G"),
            digest: None,
        }
    }
}

/// `clone` parameters.
#[derive(Debug, Clone, Default)]
pub struct CloneOptions {
    /// The clone's VMID.
    pub newid: u32,
    /// The clone's name (`name` for VMs, `hostname` for containers).
    pub name: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Pool to add the clone to.
    pub pool: Option<String>,
    /// Full copy (`Some(true)`) or linked clone of a template (`Some(false)`); PVE's
    /// default: linked for templates, full otherwise.
    pub full: Option<bool>,
    /// Target storage of a full clone.
    pub storage: Option<String>,
    /// Target node.
    pub target: Option<String>,
    /// Clone from this snapshot.
    pub snapname: Option<String>,
}

/// `template` options.
#[derive(Debug, Clone, Default)]
pub struct TemplateOptions {
    /// Convert only this disk (QEMU only).
    pub disk: Option<String>,
}

/// Destroy options.
#[derive(Debug, Clone, Default)]
pub struct DestroyOptions {
    /// Also remove the guest from backup jobs, replication, HA and pools.
    pub purge: bool,
    /// Also destroy disks of the VMID not referenced by the config.
    pub destroy_unreferenced_disks: bool,
    /// Ignore a lock (QEMU, root only).
    pub skiplock: bool,
    /// Stop a running container first (LXC only).
    pub force: bool,
}

impl DestroyOptions {
    /// Everything the guest leaves behind goes too (`purge`, unreferenced disks).
    pub fn everything() -> DestroyOptions {
        DestroyOptions {
            purge: true,
            destroy_unreferenced_disks: true,
            ..DestroyOptions::default()
        }
    }
}

fn flag(r: ApiRequest, name: &str, on: bool) -> ApiRequest {
    if on { r.param(name, true) } else { r }
}

/// The pure request builders of [`Guest`] (also usable without a client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestRequests {
    /// Node name.
    pub node: String,
    /// Kind.
    pub kind: GuestKind,
    /// VMID.
    pub vmid: u32,
}

impl GuestRequests {
    fn path(&self, rest: &[&str]) -> ApiRequest {
        self.request(Method::Get, rest)
    }

    fn request(&self, method: Method, rest: &[&str]) -> ApiRequest {
        let vmid = self.vmid.to_string();
        let mut segs = vec!["nodes", &self.node, self.kind.as_str(), &vmid];
        segs.extend_from_slice(rest);
        ApiRequest::new(method, &segs)
    }

    /// `POST /nodes/{node}/{kind}` with `vmid` and the parameters.
    pub fn create(node: &str, kind: GuestKind, p: &GuestCreate) -> Result<ApiRequest> {
        check_vmid(p.vmid)?;
        Ok(
            ApiRequest::new(Method::Post, &["nodes", node, kind.as_str()])
                .param("vmid", p.vmid)
                .params(p.params.iter().cloned()),
        )
    }

    /// `GET .../config` (`current`: without pending changes; QEMU only).
    pub fn config(&self, current: bool) -> ApiRequest {
        let r = self.path(&["config"]);
        if current && self.kind == GuestKind::Qemu {
            r.param("current", true)
        } else {
            r
        }
    }

    /// `GET .../pending`.
    pub fn pending(&self) -> ApiRequest {
        self.path(&["pending"])
    }

    /// `GET .../status/current`.
    pub fn status(&self) -> ApiRequest {
        self.path(&["status", "current"])
    }

    /// `POST .../config` (QEMU, a task) or `PUT .../config` (LXC, synchronous).
    pub fn update_config(&self, u: &ConfigUpdate) -> Result<ApiRequest> {
        if u.is_empty() {
            return Err(Error::invalid("config update", "no options specified"));
        }
        let method = match self.kind {
            GuestKind::Qemu => Method::Post,
            GuestKind::Lxc => Method::Put,
        };
        let mut r = self.request(method, &["config"]);
        for (k, v) in &u.set {
            if k == "delete" || k == "digest" {
                return Err(Error::invalid(
                    "config update",
                    format!("'{k}' is not a configuration key"),
                ));
            }
            if u.delete.contains(k) {
                return Err(Error::invalid(
                    "config update",
                    format!("'{k}' is both set and deleted"),
                ));
            }
            r = r.param(k, v.clone());
        }
        if !u.delete.is_empty() {
            r = r.param("delete", u.delete.join(","));
        }
        Ok(r.opt("digest", u.digest.as_deref()))
    }

    /// `POST .../status/start`.
    pub fn start(&self, o: &StartOptions) -> ApiRequest {
        let r = flag(
            self.request(Method::Post, &["status", "start"]),
            "skiplock",
            o.skiplock,
        );
        match self.kind {
            GuestKind::Qemu => r.opt("timeout", o.timeout),
            GuestKind::Lxc => r,
        }
    }

    /// `POST .../status/stop`.
    pub fn stop(&self, o: &StopOptions) -> ApiRequest {
        let r = self.request(Method::Post, &["status", "stop"]);
        let r = flag(r, "skiplock", o.skiplock);
        let r = flag(r, "overrule-shutdown", o.overrule_shutdown);
        match self.kind {
            GuestKind::Qemu => r.opt("timeout", o.timeout),
            GuestKind::Lxc => r,
        }
    }

    /// `POST .../status/shutdown`.
    pub fn shutdown(&self, o: &ShutdownOptions) -> ApiRequest {
        flag(
            self.request(Method::Post, &["status", "shutdown"])
                .opt("timeout", o.timeout),
            "forceStop",
            o.force_stop,
        )
    }

    /// `POST .../status/reboot`.
    pub fn reboot(&self, o: &RebootOptions) -> ApiRequest {
        self.request(Method::Post, &["status", "reboot"])
            .opt("timeout", o.timeout)
    }

    /// `PUT .../resize`.
    pub fn resize(&self, o: &ResizeOptions) -> Result<ApiRequest> {
        let s = o.size.strip_prefix('+').unwrap_or(&o.size);
        let s = s.strip_suffix(['K', 'M', 'G', 'T']).unwrap_or(s);
        let ok =
            !s.is_empty() && s.parse::<f64>().is_ok() && !s.starts_with('.') && !s.ends_with('.');
        if !ok || o.disk.is_empty() {
            return Err(Error::invalid(
                "resize",
                format!(
                    "disk '{}' size '{}' (want e.g. disk scsi0, size 40G or +10G)",
                    o.disk, o.size
                ),
            ));
        }
        Ok(self
            .request(Method::Put, &["resize"])
            .param("disk", o.disk.as_str())
            .param("size", o.size.as_str())
            .opt("digest", o.digest.as_deref()))
    }

    /// `POST .../clone`.
    pub fn clone_to(&self, o: &CloneOptions) -> Result<ApiRequest> {
        check_vmid(o.newid)?;
        let name_key = match self.kind {
            GuestKind::Qemu => "name",
            GuestKind::Lxc => "hostname",
        };
        Ok(self
            .request(Method::Post, &["clone"])
            .param("newid", o.newid)
            .opt(name_key, o.name.as_deref())
            .opt("description", o.description.as_deref())
            .opt("pool", o.pool.as_deref())
            .opt("full", o.full)
            .opt("storage", o.storage.as_deref())
            .opt("target", o.target.as_deref())
            .opt("snapname", o.snapname.as_deref()))
    }

    /// `POST .../template`.
    pub fn template(&self, o: &TemplateOptions) -> ApiRequest {
        let r = self.request(Method::Post, &["template"]);
        match self.kind {
            GuestKind::Qemu => r.opt("disk", o.disk.as_deref()),
            GuestKind::Lxc => r,
        }
    }

    /// `DELETE /nodes/{node}/{kind}/{vmid}`.
    pub fn destroy(&self, o: &DestroyOptions) -> ApiRequest {
        let r = self.request(Method::Delete, &[]);
        let r = flag(r, "purge", o.purge);
        let r = flag(
            r,
            "destroy-unreferenced-disks",
            o.destroy_unreferenced_disks,
        );
        match self.kind {
            GuestKind::Qemu => flag(r, "skiplock", o.skiplock),
            GuestKind::Lxc => flag(r, "force", o.force),
        }
    }
}

fn check_vmid(vmid: u32) -> Result<()> {
    if (100..=999_999_999).contains(&vmid) {
        Ok(())
    } else {
        Err(Error::invalid(
            "vmid",
            format!("{vmid} is outside 100..=999999999"),
        ))
    }
}

/// A guest of either kind on a node.
///
/// ```no_run
/// use proxmox_client::{GuestKind, WaitOptions};
/// use proxmox_client::guest::{CloneOptions, ConfigUpdate, DestroyOptions, StartOptions};
///
/// # async fn demo(client: proxmox_client::Client) -> proxmox_client::Result<()> {
/// let wait = WaitOptions::default();
/// let ct = client.node("pve").guest(GuestKind::Lxc, 101);
/// let cfg = ct.config().await?;
/// let update = ConfigUpdate::default().set("memory", 1024).delete("swap");
/// let update = match cfg.digest { Some(d) => update.digest(d), None => update };
/// ct.update_config(&update).await?.wait(&wait).await?;
/// match ct.start(&StartOptions::default()).await {
///     Ok(task) => { task.wait(&wait).await?; }
///     Err(e) if e.is_already_running() => {}
///     Err(e) => return Err(e),
/// }
/// let clone = CloneOptions { newid: 102, name: Some("copy".into()), ..Default::default() };
/// ct.clone_to(&clone).await?.wait(&wait).await?;
/// client.node("pve").guest(GuestKind::Lxc, 102)
///     .destroy(&DestroyOptions::everything()).await?.wait(&wait).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Guest {
    client: Client,
    req: GuestRequests,
}

impl Node {
    /// A handle for guest `vmid` of `kind` on this node.
    pub fn guest(&self, kind: GuestKind, vmid: u32) -> Guest {
        Guest {
            client: self.client.clone(),
            req: GuestRequests {
                node: self.node.clone(),
                kind,
                vmid,
            },
        }
    }

    /// `POST /nodes/{node}/{qemu|lxc}`: creates a guest → task.
    pub async fn create_guest(&self, kind: GuestKind, p: &GuestCreate) -> Result<Task> {
        let upid: Upid = self
            .client
            .execute(&GuestRequests::create(&self.node, kind, p)?)
            .await?;
        Ok(Task::new(self.client.clone(), upid))
    }
}

impl Guest {
    /// The VMID.
    pub fn vmid(&self) -> u32 {
        self.req.vmid
    }
    /// QEMU or LXC.
    pub fn kind(&self) -> GuestKind {
        self.req.kind
    }
    /// The node name.
    pub fn node(&self) -> &str {
        &self.req.node
    }
    /// The pure request builders for this guest.
    pub fn requests(&self) -> &GuestRequests {
        &self.req
    }

    async fn task(&self, r: &ApiRequest) -> Result<Task> {
        let upid: Upid = self.client.execute(r).await?;
        Ok(Task::new(self.client.clone(), upid))
    }

    async fn maybe_task(&self, r: &ApiRequest) -> Result<Task> {
        let upid: Option<Upid> = self.client.execute(r).await?;
        Ok(Task::from_optional(self.client.clone(), upid))
    }

    /// `GET .../config` (pending changes applied), typed: values by key plus `digest`.
    pub async fn config(&self) -> Result<GuestConfig> {
        self.client.execute(&self.req.config(false)).await
    }
    /// `GET .../config?current=1` (QEMU: without pending changes; LXC has none).
    pub async fn config_current(&self) -> Result<GuestConfig> {
        self.client.execute(&self.req.config(true)).await
    }
    /// `GET .../config` as the raw JSON object PVE answered.
    pub async fn config_raw(&self) -> Result<serde_json::Value> {
        self.client.execute(&self.req.config(false)).await
    }
    /// `GET .../config` decoded into a type of the caller's.
    pub async fn config_as<T: DeserializeOwned>(&self) -> Result<T> {
        self.client.execute(&self.req.config(false)).await
    }
    /// `GET .../pending`: each key with its current and pending value.
    pub async fn pending(&self) -> Result<Vec<serde_json::Value>> {
        self.client.execute(&self.req.pending()).await
    }
    /// `GET .../status/current`.
    pub async fn status(&self) -> Result<GuestStatus> {
        self.client.execute(&self.req.status()).await
    }
    /// Changes the configuration → task (a finished one for containers, whose update is
    /// synchronous, and for VM changes that completed at once).
    pub async fn update_config(&self, u: &ConfigUpdate) -> Result<Task> {
        let r = self.req.update_config(u)?;
        match self.req.kind {
            GuestKind::Qemu => self.maybe_task(&r).await,
            GuestKind::Lxc => {
                let _: serde_json::Value = self.client.execute(&r).await?;
                Ok(Task::finished(self.client.clone()))
            }
        }
    }
    /// Starts the guest → task. A running guest is [`Error::is_already_running`] (in the
    /// task for VMs, at once for containers).
    pub async fn start(&self, o: &StartOptions) -> Result<Task> {
        self.task(&self.req.start(o)).await
    }
    /// Stops the guest hard → task; a stopped guest is [`Error::is_not_running`].
    pub async fn stop(&self, o: &StopOptions) -> Result<Task> {
        self.task(&self.req.stop(o)).await
    }
    /// Shuts the guest down → task; a stopped guest is [`Error::is_not_running`].
    pub async fn shutdown(&self, o: &ShutdownOptions) -> Result<Task> {
        self.task(&self.req.shutdown(o)).await
    }
    /// Reboots the guest, applying pending changes → task.
    pub async fn reboot(&self, o: &RebootOptions) -> Result<Task> {
        self.task(&self.req.reboot(o)).await
    }
    /// Grows a disk → task (finished at once on servers before qemu-server 8.0.2).
    pub async fn resize(&self, o: &ResizeOptions) -> Result<Task> {
        self.maybe_task(&self.req.resize(o)?).await
    }
    /// Clones the guest to `o.newid` → task.
    pub async fn clone_to(&self, o: &CloneOptions) -> Result<Task> {
        self.task(&self.req.clone_to(o)?).await
    }
    /// Converts the guest to a template → task (containers convert synchronously).
    pub async fn template(&self, o: &TemplateOptions) -> Result<Task> {
        self.maybe_task(&self.req.template(o)).await
    }
    /// Destroys the guest and its disks → task.
    pub async fn destroy(&self, o: &DestroyOptions) -> Result<Task> {
        self.task(&self.req.destroy(o)).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn g(kind: GuestKind) -> GuestRequests {
        GuestRequests {
            node: "pve".into(),
            kind,
            vmid: 101,
        }
    }

    fn wire(r: &ApiRequest) -> String {
        format!("{} {} {}", r.method, r.path, r.encoded_params())
    }

    #[test]
    fn kind_parses_and_prints() {
        assert_eq!("lxc".parse::<GuestKind>().unwrap(), GuestKind::Lxc);
        assert_eq!(GuestKind::Qemu.to_string(), "qemu");
        assert!("vm".parse::<GuestKind>().is_err());
    }

    #[test]
    fn config_update_method_depends_on_kind() {
        let u = ConfigUpdate::default()
            .set("memory", 2048)
            .delete("swap")
            .delete("mp0")
            .digest("abc");
        assert_eq!(
            wire(&g(GuestKind::Qemu).update_config(&u).unwrap()),
            "POST /nodes/pve/qemu/101/config memory=2048&delete=swap%2Cmp0&digest=abc"
        );
        assert!(
            wire(&g(GuestKind::Lxc).update_config(&u).unwrap())
                .starts_with("PUT /nodes/pve/lxc/101/config ")
        );
        assert!(
            g(GuestKind::Qemu)
                .update_config(&ConfigUpdate::default())
                .is_err()
        );
        let both = ConfigUpdate::default().set("a", "1").delete("a");
        assert!(g(GuestKind::Lxc).update_config(&both).is_err());
    }

    #[test]
    fn kind_specific_parameters() {
        let c = CloneOptions {
            newid: 200,
            name: Some("x".into()),
            full: Some(false),
            ..Default::default()
        };
        assert_eq!(
            wire(&g(GuestKind::Lxc).clone_to(&c).unwrap()),
            "POST /nodes/pve/lxc/101/clone newid=200&hostname=x&full=0"
        );
        assert_eq!(
            wire(&g(GuestKind::Qemu).clone_to(&c).unwrap()),
            "POST /nodes/pve/qemu/101/clone newid=200&name=x&full=0"
        );
        let d = DestroyOptions {
            force: true,
            skiplock: true,
            ..DestroyOptions::everything()
        };
        assert_eq!(
            wire(&g(GuestKind::Lxc).destroy(&d)),
            "DELETE /nodes/pve/lxc/101 purge=1&destroy-unreferenced-disks=1&force=1"
        );
        assert_eq!(
            wire(&g(GuestKind::Qemu).destroy(&d)),
            "DELETE /nodes/pve/qemu/101 purge=1&destroy-unreferenced-disks=1&skiplock=1"
        );
        let t = TemplateOptions {
            disk: Some("scsi0".into()),
        };
        assert_eq!(
            wire(&g(GuestKind::Lxc).template(&t)),
            "POST /nodes/pve/lxc/101/template "
        );
        assert_eq!(
            wire(&g(GuestKind::Qemu).start(&StartOptions {
                timeout: Some(5),
                ..Default::default()
            })),
            "POST /nodes/pve/qemu/101/status/start timeout=5"
        );
        assert_eq!(
            wire(&g(GuestKind::Lxc).config(true)),
            "GET /nodes/pve/lxc/101/config "
        );
    }

    #[test]
    fn resize_checks_size() {
        let r = g(GuestKind::Qemu)
            .resize(&ResizeOptions::to_gib("scsi0", 40))
            .unwrap();
        assert_eq!(
            wire(&r),
            "PUT /nodes/pve/qemu/101/resize disk=scsi0&size=40G"
        );
        for bad in ["", "G", "1.G", "ten"] {
            let o = ResizeOptions {
                disk: "scsi0".into(),
                size: bad.into(),
                digest: None,
            };
            assert!(g(GuestKind::Lxc).resize(&o).is_err(), "{bad}");
        }
        assert!(
            GuestRequests::create(
                "pve",
                GuestKind::Qemu,
                &GuestCreate {
                    vmid: 7,
                    ..Default::default()
                }
            )
            .is_err()
        );
    }
}
