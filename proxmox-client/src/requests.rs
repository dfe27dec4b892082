//! Pure request builders: one function per API call, returning an [`ApiRequest`]
//! (method, path, typed form parameters). The typed handles in [`crate::api`] send these;
//! tests check every one of them against the official PVE API schema.

use std::collections::BTreeMap;

use secrecy::SecretString;

use crate::error::{Error, Result};
use crate::models::ResourceFilter;
use crate::property::{
    EfiDisk, HostPci, IpConfig, LxcDevice, LxcFeatures, LxcMountPoint, LxcNet, PciMapEntry,
    QemuDisk, QemuNet, Serial, encode_sshkeys, normalize_tags, split_indexed_key,
};
use crate::request::{ApiRequest, Method, ParamValue};
use crate::upid::Upid;

/// Extra parameters by name, for options the typed structs do not name.
pub type ExtraParams = Vec<(String, ParamValue)>;

fn vmid_s(vmid: u32) -> String {
    vmid.to_string()
}

fn qemu_path(node: &str, vmid: u32, rest: &[&str]) -> Vec<String> {
    let mut v = vec![
        "nodes".to_string(),
        node.to_string(),
        "qemu".to_string(),
        vmid_s(vmid),
    ];
    v.extend(rest.iter().map(|s| s.to_string()));
    v
}

fn lxc_path(node: &str, vmid: u32, rest: &[&str]) -> Vec<String> {
    let mut v = vec![
        "nodes".to_string(),
        node.to_string(),
        "lxc".to_string(),
        vmid_s(vmid),
    ];
    v.extend(rest.iter().map(|s| s.to_string()));
    v
}

fn req(method: Method, segs: &[String]) -> ApiRequest {
    let refs: Vec<&str> = segs.iter().map(String::as_str).collect();
    ApiRequest::new(method, &refs)
}

/// Checks a vmid against the schema range before sending.
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

// ---------------------------------------------------------------- discovery

/// `GET /version`.
pub fn version() -> ApiRequest {
    ApiRequest::new(Method::Get, &["version"])
}

/// `GET /nodes`.
pub fn nodes() -> ApiRequest {
    ApiRequest::new(Method::Get, &["nodes"])
}

/// `GET /cluster/resources[?type=]`.
pub fn cluster_resources(filter: Option<ResourceFilter>) -> ApiRequest {
    ApiRequest::new(Method::Get, &["cluster", "resources"]).opt("type", filter.map(|f| f.as_str()))
}

/// `GET /cluster/nextid[?vmid=]`.
pub fn nextid(vmid: Option<u32>) -> ApiRequest {
    ApiRequest::new(Method::Get, &["cluster", "nextid"]).opt("vmid", vmid)
}

// ---------------------------------------------------------------- QEMU

/// Options shared by VM create and config updates. Indexed devices are maps by index;
/// disks are keyed by their full name (`scsi0`, `ide2`, `virtio1`, `sata0`).
#[derive(Debug, Clone, Default)]
pub struct QemuOptions {
    /// `name` (DNS name).
    pub name: Option<String>,
    /// `description`.
    pub description: Option<String>,
    /// Tags; normalised (lower-case, sorted, `;`-joined) before sending.
    pub tags: Option<Vec<String>>,
    /// `memory` in MiB.
    pub memory: Option<u64>,
    /// `balloon` in MiB (0 disables).
    pub balloon: Option<u64>,
    /// `cores`.
    pub cores: Option<u32>,
    /// `sockets`.
    pub sockets: Option<u32>,
    /// `cpu` type, e.g. `host` or `x86-64-v2-AES`.
    pub cpu: Option<String>,
    /// `numa`.
    pub numa: Option<bool>,
    /// `ostype`, e.g. `l26`.
    pub ostype: Option<String>,
    /// `bios`: `seabios` or `ovmf`.
    pub bios: Option<String>,
    /// `machine`, e.g. `q35`.
    pub machine: Option<String>,
    /// `scsihw`, e.g. `virtio-scsi-single`.
    pub scsihw: Option<String>,
    /// `boot`, e.g. `order=scsi0;ide2;net0`.
    pub boot: Option<String>,
    /// `agent`, e.g. `enabled=1`.
    pub agent: Option<String>,
    /// `onboot`.
    pub onboot: Option<bool>,
    /// `protection`.
    pub protection: Option<bool>,
    /// `vga`, e.g. `serial0`.
    pub vga: Option<String>,
    /// `ciuser`.
    pub ciuser: Option<String>,
    /// `cipassword`.
    pub cipassword: Option<SecretString>,
    /// `citype`.
    pub citype: Option<String>,
    /// `ciupgrade`.
    pub ciupgrade: Option<bool>,
    /// `cicustom`, e.g. `user=local:snippets/talos.yaml`.
    pub cicustom: Option<String>,
    /// `nameserver`.
    pub nameserver: Option<String>,
    /// `searchdomain`.
    pub searchdomain: Option<String>,
    /// SSH public keys (`sshkeys`), encoded for the caller.
    pub sshkeys: Option<Vec<String>>,
    /// `efidisk0`.
    pub efidisk0: Option<EfiDisk>,
    /// `tpmstate0`, e.g. `local-lvm:1,version=v2.0`.
    pub tpmstate0: Option<String>,
    /// Disks by key (`scsi0`, `ide2`, ...).
    pub disks: BTreeMap<String, QemuDisk>,
    /// `net[n]`.
    pub net: BTreeMap<u32, QemuNet>,
    /// `ipconfig[n]`.
    pub ipconfig: BTreeMap<u32, IpConfig>,
    /// `hostpci[n]`.
    pub hostpci: BTreeMap<u32, HostPci>,
    /// `serial[n]`.
    pub serial: BTreeMap<u32, Serial>,
    /// Any other parameter.
    pub extra: ExtraParams,
}

fn disk_key_ok(key: &str) -> bool {
    match split_indexed_key(key) {
        Some(("scsi", n)) => n <= 30,
        Some(("virtio", n)) => n <= 15,
        Some(("sata", n)) => n <= 5,
        Some(("ide", n)) => n <= 3,
        _ => false,
    }
}

fn push_qemu_options(r: ApiRequest, o: &QemuOptions) -> Result<ApiRequest> {
    let mut r = r
        .opt("name", o.name.as_ref())
        .opt("description", o.description.as_ref());
    if let Some(tags) = &o.tags {
        r = r.param("tags", normalize_tags(&tags.join(";"))?);
    }
    r = r
        // `memory` is a property string (`[current=]<MiB>`) since PVE 8.1, so a string.
        .opt("memory", o.memory.map(|m| m.to_string()))
        .opt("balloon", o.balloon)
        .opt("cores", o.cores)
        .opt("sockets", o.sockets)
        .opt("cpu", o.cpu.as_ref())
        .opt("numa", o.numa)
        .opt("ostype", o.ostype.as_ref())
        .opt("bios", o.bios.as_ref())
        .opt("machine", o.machine.as_ref())
        .opt("scsihw", o.scsihw.as_ref())
        .opt("boot", o.boot.as_ref())
        .opt("agent", o.agent.as_ref())
        .opt("onboot", o.onboot)
        .opt("protection", o.protection)
        .opt("vga", o.vga.as_ref())
        .opt("ciuser", o.ciuser.as_ref())
        .opt("cipassword", o.cipassword.as_ref())
        .opt("citype", o.citype.as_ref())
        .opt("ciupgrade", o.ciupgrade)
        .opt("cicustom", o.cicustom.as_ref())
        .opt("nameserver", o.nameserver.as_ref())
        .opt("searchdomain", o.searchdomain.as_ref());
    if let Some(keys) = &o.sshkeys {
        r = r.param("sshkeys", encode_sshkeys(keys));
    }
    r = r
        .opt("efidisk0", o.efidisk0.as_ref())
        .opt("tpmstate0", o.tpmstate0.as_ref());
    for (k, d) in &o.disks {
        if !disk_key_ok(k) {
            return Err(Error::invalid(
                "disk key",
                format!("'{k}' is not scsi0-30, virtio0-15, sata0-5 or ide0-3"),
            ));
        }
        r = r.param(k, d);
    }
    for (i, n) in &o.net {
        r = r.param(&format!("net{i}"), n);
    }
    for (i, c) in &o.ipconfig {
        r = r.param(&format!("ipconfig{i}"), c);
    }
    for (i, h) in &o.hostpci {
        r = r.param(&format!("hostpci{i}"), h);
    }
    for (i, s) in &o.serial {
        r = r.param(&format!("serial{i}"), s);
    }
    Ok(r.params(o.extra.iter().cloned()))
}

/// `POST /nodes/{node}/qemu` parameters.
#[derive(Debug, Clone, Default)]
pub struct QemuCreate {
    /// `vmid` (100..=999999999).
    pub vmid: u32,
    /// Configuration.
    pub options: QemuOptions,
    /// `pool` to add the VM to.
    pub pool: Option<String>,
    /// `start` after creation (a failed autostart is a task warning).
    pub start: Option<bool>,
    /// `storage`: default storage for the VM.
    pub storage: Option<String>,
}

/// `GET /nodes/{node}/qemu`.
pub fn qemu_list(node: &str, full: Option<bool>) -> ApiRequest {
    ApiRequest::new(Method::Get, &["nodes", node, "qemu"]).opt("full", full)
}

/// `POST /nodes/{node}/qemu` → UPID.
pub fn qemu_create(node: &str, p: &QemuCreate) -> Result<ApiRequest> {
    check_vmid(p.vmid)?;
    let r = ApiRequest::new(Method::Post, &["nodes", node, "qemu"]).param("vmid", p.vmid);
    let r = push_qemu_options(r, &p.options)?;
    Ok(r.opt("pool", p.pool.as_ref())
        .opt("start", p.start)
        .opt("storage", p.storage.as_ref()))
}

/// `GET /nodes/{node}/qemu/{vmid}/config` (pending changes applied unless `current`).
pub fn qemu_config(node: &str, vmid: u32, current: Option<bool>) -> ApiRequest {
    req(Method::Get, &qemu_path(node, vmid, &["config"])).opt("current", current)
}

/// `GET /nodes/{node}/qemu/{vmid}/pending`.
pub fn qemu_pending(node: &str, vmid: u32) -> ApiRequest {
    req(Method::Get, &qemu_path(node, vmid, &["pending"]))
}

/// Parameters of a VM config update.
#[derive(Debug, Clone, Default)]
pub struct QemuUpdate {
    /// Values to set.
    pub options: QemuOptions,
    /// Keys to delete (`delete=ide2,net1`).
    pub delete: Vec<String>,
    /// Pending changes to revert.
    pub revert: Vec<String>,
    /// Digest from the last config read; the server refuses if the config changed since.
    pub digest: Option<String>,
    /// Destroy deleted volumes instead of turning them into `unusedN`.
    pub force: Option<bool>,
}

fn push_update(r: ApiRequest, p: &QemuUpdate) -> Result<ApiRequest> {
    let mut r = push_qemu_options(r, &p.options)?;
    if !p.delete.is_empty() {
        r = r.param("delete", p.delete.join(","));
    }
    if !p.revert.is_empty() {
        r = r.param("revert", p.revert.join(","));
    }
    let r = r.opt("digest", p.digest.as_ref()).opt("force", p.force);
    if r.params.is_empty() {
        return Err(Error::invalid("config update", "no options specified"));
    }
    Ok(r)
}

/// `PUT /nodes/{node}/qemu/{vmid}/config` (synchronous) → null.
pub fn qemu_update_config(node: &str, vmid: u32, p: &QemuUpdate) -> Result<ApiRequest> {
    push_update(req(Method::Put, &qemu_path(node, vmid, &["config"])), p)
}

/// `POST /nodes/{node}/qemu/{vmid}/config` (asynchronous) → UPID, or null when the task
/// finished within `background_delay` seconds.
pub fn qemu_update_config_async(
    node: &str,
    vmid: u32,
    p: &QemuUpdate,
    background_delay: Option<u32>,
) -> Result<ApiRequest> {
    Ok(
        push_update(req(Method::Post, &qemu_path(node, vmid, &["config"])), p)?
            .opt("background_delay", background_delay),
    )
}

/// `GET /nodes/{node}/qemu/{vmid}/status/current`.
pub fn qemu_status(node: &str, vmid: u32) -> ApiRequest {
    req(Method::Get, &qemu_path(node, vmid, &["status", "current"]))
}

/// `POST .../status/start` → UPID.
pub fn qemu_start(node: &str, vmid: u32, timeout: Option<u32>) -> ApiRequest {
    req(Method::Post, &qemu_path(node, vmid, &["status", "start"])).opt("timeout", timeout)
}

/// `POST .../status/stop` (hard stop) → UPID.
pub fn qemu_stop(node: &str, vmid: u32, timeout: Option<u32>) -> ApiRequest {
    req(Method::Post, &qemu_path(node, vmid, &["status", "stop"])).opt("timeout", timeout)
}

/// `POST .../status/shutdown` (ACPI) → UPID; `force_stop` stops after `timeout`.
pub fn qemu_shutdown(
    node: &str,
    vmid: u32,
    timeout: Option<u32>,
    force_stop: Option<bool>,
) -> ApiRequest {
    req(
        Method::Post,
        &qemu_path(node, vmid, &["status", "shutdown"]),
    )
    .opt("timeout", timeout)
    .opt("forceStop", force_stop)
}

/// `POST .../status/reboot` (applies pending changes) → UPID.
pub fn qemu_reboot(node: &str, vmid: u32, timeout: Option<u32>) -> ApiRequest {
    req(Method::Post, &qemu_path(node, vmid, &["status", "reboot"])).opt("timeout", timeout)
}

/// `DELETE /nodes/{node}/qemu/{vmid}` → UPID.
pub fn qemu_delete(
    node: &str,
    vmid: u32,
    purge: Option<bool>,
    destroy_unreferenced_disks: Option<bool>,
) -> ApiRequest {
    req(Method::Delete, &qemu_path(node, vmid, &[]))
        .opt("purge", purge)
        .opt("destroy-unreferenced-disks", destroy_unreferenced_disks)
}

/// `POST /nodes/{node}/qemu/{vmid}/clone` parameters.
#[derive(Debug, Clone, Default)]
pub struct QemuClone {
    /// `newid`.
    pub newid: u32,
    /// `name`.
    pub name: Option<String>,
    /// `description`.
    pub description: Option<String>,
    /// `pool`.
    pub pool: Option<String>,
    /// `full` clone (default: linked for templates, full otherwise).
    pub full: Option<bool>,
    /// Target `storage` (full clones).
    pub storage: Option<String>,
    /// Target `format` (full clones).
    pub format: Option<String>,
    /// Target node.
    pub target: Option<String>,
    /// `snapname`.
    pub snapname: Option<String>,
}

/// `POST /nodes/{node}/qemu/{vmid}/clone` → UPID.
pub fn qemu_clone(node: &str, vmid: u32, p: &QemuClone) -> Result<ApiRequest> {
    check_vmid(p.newid)?;
    Ok(req(Method::Post, &qemu_path(node, vmid, &["clone"]))
        .param("newid", p.newid)
        .opt("name", p.name.as_ref())
        .opt("description", p.description.as_ref())
        .opt("pool", p.pool.as_ref())
        .opt("full", p.full)
        .opt("storage", p.storage.as_ref())
        .opt("format", p.format.as_ref())
        .opt("target", p.target.as_ref())
        .opt("snapname", p.snapname.as_ref()))
}

/// `POST /nodes/{node}/qemu/{vmid}/template` → UPID.
pub fn qemu_template(node: &str, vmid: u32, disk: Option<&str>) -> ApiRequest {
    req(Method::Post, &qemu_path(node, vmid, &["template"])).opt("disk", disk)
}

/// `PUT /nodes/{node}/qemu/{vmid}/resize` → UPID. `size` like `+10G` (grow by) or `40G`.
pub fn qemu_resize(
    node: &str,
    vmid: u32,
    disk: &str,
    size: &str,
    digest: Option<&str>,
) -> Result<ApiRequest> {
    let ok = {
        let s = size.strip_prefix('+').unwrap_or(size);
        let s = s.strip_suffix(['K', 'M', 'G', 'T']).unwrap_or(s);
        !s.is_empty() && s.parse::<f64>().is_ok() && !s.starts_with('.') && !s.ends_with('.')
    };
    if !ok {
        return Err(Error::invalid(
            "size",
            format!("'{size}' does not match \\+?\\d+(\\.\\d+)?[KMGT]?"),
        ));
    }
    Ok(req(Method::Put, &qemu_path(node, vmid, &["resize"]))
        .param("disk", disk)
        .param("size", size)
        .opt("digest", digest))
}

/// `GET /nodes/{node}/qemu/{vmid}/agent/network-get-interfaces`.
pub fn qemu_agent_network_interfaces(node: &str, vmid: u32) -> ApiRequest {
    req(
        Method::Get,
        &qemu_path(node, vmid, &["agent", "network-get-interfaces"]),
    )
}

// ---------------------------------------------------------------- LXC

/// Options shared by container create and config updates.
#[derive(Debug, Clone, Default)]
pub struct LxcOptions {
    /// `hostname`.
    pub hostname: Option<String>,
    /// `description`.
    pub description: Option<String>,
    /// Tags (normalised).
    pub tags: Option<Vec<String>>,
    /// `memory` MiB.
    pub memory: Option<u64>,
    /// `swap` MiB.
    pub swap: Option<u64>,
    /// `cores`.
    pub cores: Option<u32>,
    /// `onboot`.
    pub onboot: Option<bool>,
    /// `protection`.
    pub protection: Option<bool>,
    /// `nameserver`.
    pub nameserver: Option<String>,
    /// `searchdomain`.
    pub searchdomain: Option<String>,
    /// `features`.
    pub features: Option<LxcFeatures>,
    /// `rootfs`.
    pub rootfs: Option<LxcMountPoint>,
    /// `mp[n]`.
    pub mp: BTreeMap<u32, LxcMountPoint>,
    /// `net[n]`.
    pub net: BTreeMap<u32, LxcNet>,
    /// `dev[n]`: host device nodes (root@pam by ticket only; API tokens get 403).
    pub dev: BTreeMap<u32, LxcDevice>,
    /// Any other parameter.
    pub extra: ExtraParams,
}

fn push_lxc_options(r: ApiRequest, o: &LxcOptions) -> Result<ApiRequest> {
    let mut r = r
        .opt("hostname", o.hostname.as_ref())
        .opt("description", o.description.as_ref());
    if let Some(tags) = &o.tags {
        r = r.param("tags", normalize_tags(&tags.join(";"))?);
    }
    r = r
        .opt("memory", o.memory)
        .opt("swap", o.swap)
        .opt("cores", o.cores)
        .opt("onboot", o.onboot)
        .opt("protection", o.protection)
        .opt("nameserver", o.nameserver.as_ref())
        .opt("searchdomain", o.searchdomain.as_ref())
        .opt("features", o.features.as_ref())
        .opt("rootfs", o.rootfs.as_ref());
    for (i, m) in &o.mp {
        r = r.param(&format!("mp{i}"), m);
    }
    for (i, n) in &o.net {
        r = r.param(&format!("net{i}"), n);
    }
    for (i, d) in &o.dev {
        if *i > 255 {
            return Err(Error::invalid("dev", format!("dev{i}: index above 255")));
        }
        r = r.param(&format!("dev{i}"), d);
    }
    Ok(r.params(o.extra.iter().cloned()))
}

/// `POST /nodes/{node}/lxc` parameters.
#[derive(Debug, Clone, Default)]
pub struct LxcCreate {
    /// `vmid`.
    pub vmid: u32,
    /// `ostemplate`, e.g. `local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst`.
    pub ostemplate: String,
    /// Configuration.
    pub options: LxcOptions,
    /// Default `storage`.
    pub storage: Option<String>,
    /// Root `password`.
    pub password: Option<SecretString>,
    /// SSH public keys (sent as plain text, one per line: LXC does not encode them).
    pub ssh_public_keys: Option<Vec<String>>,
    /// `unprivileged` (PVE's default is 1).
    pub unprivileged: Option<bool>,
    /// `start` after creation.
    pub start: Option<bool>,
    /// `pool`.
    pub pool: Option<String>,
}

/// `GET /nodes/{node}/lxc`.
pub fn lxc_list(node: &str) -> ApiRequest {
    ApiRequest::new(Method::Get, &["nodes", node, "lxc"])
}

/// `POST /nodes/{node}/lxc` → UPID.
pub fn lxc_create(node: &str, p: &LxcCreate) -> Result<ApiRequest> {
    check_vmid(p.vmid)?;
    let r = ApiRequest::new(Method::Post, &["nodes", node, "lxc"])
        .param("vmid", p.vmid)
        .param("ostemplate", p.ostemplate.as_str());
    let r = push_lxc_options(r, &p.options)?;
    Ok(r.opt("storage", p.storage.as_ref())
        .opt("password", p.password.as_ref())
        .opt(
            "ssh-public-keys",
            p.ssh_public_keys.as_ref().map(|k| k.join("\n")),
        )
        .opt("unprivileged", p.unprivileged)
        .opt("start", p.start)
        .opt("pool", p.pool.as_ref()))
}

/// `GET /nodes/{node}/lxc/{vmid}/config`.
pub fn lxc_config(node: &str, vmid: u32) -> ApiRequest {
    req(Method::Get, &lxc_path(node, vmid, &["config"]))
}

/// Parameters of a container config update.
#[derive(Debug, Clone, Default)]
pub struct LxcUpdate {
    /// Values to set.
    pub options: LxcOptions,
    /// Keys to delete.
    pub delete: Vec<String>,
    /// Digest from the last config read.
    pub digest: Option<String>,
}

/// `PUT /nodes/{node}/lxc/{vmid}/config` → null.
pub fn lxc_update_config(node: &str, vmid: u32, p: &LxcUpdate) -> Result<ApiRequest> {
    let mut r = push_lxc_options(
        req(Method::Put, &lxc_path(node, vmid, &["config"])),
        &p.options,
    )?;
    if !p.delete.is_empty() {
        r = r.param("delete", p.delete.join(","));
    }
    let r = r.opt("digest", p.digest.as_ref());
    if r.params.is_empty() {
        return Err(Error::invalid("config update", "no options specified"));
    }
    Ok(r)
}

/// `GET /nodes/{node}/lxc/{vmid}/status/current`.
pub fn lxc_status(node: &str, vmid: u32) -> ApiRequest {
    req(Method::Get, &lxc_path(node, vmid, &["status", "current"]))
}

/// `POST .../status/start` → UPID.
pub fn lxc_start(node: &str, vmid: u32) -> ApiRequest {
    req(Method::Post, &lxc_path(node, vmid, &["status", "start"]))
}

/// `POST .../status/stop` → UPID.
pub fn lxc_stop(node: &str, vmid: u32) -> ApiRequest {
    req(Method::Post, &lxc_path(node, vmid, &["status", "stop"]))
}

/// `POST .../status/shutdown` → UPID.
pub fn lxc_shutdown(
    node: &str,
    vmid: u32,
    timeout: Option<u32>,
    force_stop: Option<bool>,
) -> ApiRequest {
    req(Method::Post, &lxc_path(node, vmid, &["status", "shutdown"]))
        .opt("timeout", timeout)
        .opt("forceStop", force_stop)
}

/// `DELETE /nodes/{node}/lxc/{vmid}` → UPID.
pub fn lxc_delete(node: &str, vmid: u32, purge: Option<bool>, force: Option<bool>) -> ApiRequest {
    req(Method::Delete, &lxc_path(node, vmid, &[]))
        .opt("purge", purge)
        .opt("force", force)
}

// ---------------------------------------------------------------- storage

/// `GET /nodes/{node}/storage[?content=]`.
pub fn storage_list(node: &str, content: Option<&str>) -> ApiRequest {
    ApiRequest::new(Method::Get, &["nodes", node, "storage"]).opt("content", content)
}

/// `GET /nodes/{node}/storage/{storage}/content[?content=&vmid=]`.
pub fn storage_content(
    node: &str,
    storage: &str,
    content: Option<&str>,
    vmid: Option<u32>,
) -> ApiRequest {
    ApiRequest::new(Method::Get, &["nodes", node, "storage", storage, "content"])
        .opt("content", content)
        .opt("vmid", vmid)
}

/// `DELETE /nodes/{node}/storage/{storage}/content/{volume}` → UPID (or null with `delay`).
pub fn storage_volume_delete(
    node: &str,
    storage: &str,
    volume: &str,
    delay: Option<u32>,
) -> ApiRequest {
    ApiRequest::new(
        Method::Delete,
        &["nodes", node, "storage", storage, "content", volume],
    )
    .opt("delay", delay)
}

/// Checksum algorithms PVE accepts for uploads and downloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumAlgorithm {
    /// md5
    Md5,
    /// sha1
    Sha1,
    /// sha224
    Sha224,
    /// sha256
    Sha256,
    /// sha384
    Sha384,
    /// sha512
    Sha512,
}

impl ChecksumAlgorithm {
    /// Wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            ChecksumAlgorithm::Md5 => "md5",
            ChecksumAlgorithm::Sha1 => "sha1",
            ChecksumAlgorithm::Sha224 => "sha224",
            ChecksumAlgorithm::Sha256 => "sha256",
            ChecksumAlgorithm::Sha384 => "sha384",
            ChecksumAlgorithm::Sha512 => "sha512",
        }
    }
}

/// Content types that can be uploaded or downloaded via the API (`snippets` cannot).
pub const TRANSFERABLE_CONTENT: &[&str] = &["iso", "vztmpl", "import"];

fn check_transfer(content: &str, filename: &str) -> Result<()> {
    if !TRANSFERABLE_CONTENT.contains(&content) {
        return Err(Error::invalid(
            "content",
            format!("'{content}' cannot be transferred via the API (only iso, vztmpl, import)"),
        ));
    }
    if filename.is_empty() || filename.contains('/') || filename.len() > 255 {
        return Err(Error::invalid(
            "filename",
            format!("'{filename}' must be a plain file name of at most 255 characters"),
        ));
    }
    Ok(())
}

/// `POST /nodes/{node}/storage/{storage}/download-url` parameters.
#[derive(Debug, Clone)]
pub struct DownloadUrl {
    /// `url` (http or https).
    pub url: String,
    /// Target file name.
    pub filename: String,
    /// `iso`, `vztmpl` or `import`.
    pub content: String,
    /// Expected checksum and its algorithm.
    pub checksum: Option<(ChecksumAlgorithm, String)>,
    /// `verify-certificates` (PVE default 1).
    pub verify_certificates: Option<bool>,
    /// `compression` to decompress (iso only), e.g. `zst`.
    pub compression: Option<String>,
}

/// `POST /nodes/{node}/storage/{storage}/download-url` → UPID.
pub fn download_url(node: &str, storage: &str, p: &DownloadUrl) -> Result<ApiRequest> {
    check_transfer(&p.content, &p.filename)?;
    if !(p.url.starts_with("http://") || p.url.starts_with("https://")) {
        return Err(Error::invalid("url", format!("'{}' is not http(s)", p.url)));
    }
    let mut r = ApiRequest::new(
        Method::Post,
        &["nodes", node, "storage", storage, "download-url"],
    )
    .param("url", p.url.as_str())
    .param("filename", p.filename.as_str())
    .param("content", p.content.as_str());
    if let Some((alg, sum)) = &p.checksum {
        r = r
            .param("checksum", sum.as_str())
            .param("checksum-algorithm", alg.as_str());
    }
    Ok(r.opt("verify-certificates", p.verify_certificates)
        .opt("compression", p.compression.as_ref()))
}

/// Upload parameters (multipart: fields, then the file part named `filename`).
#[derive(Debug, Clone)]
pub struct Upload {
    /// `iso`, `vztmpl` or `import`.
    pub content: String,
    /// Target file name.
    pub filename: String,
    /// Checksum the server verifies after the upload.
    pub checksum: Option<(ChecksumAlgorithm, String)>,
}

/// The upload call as a request value: the form fields in the order PVE requires
/// (`content`, `checksum-algorithm`, `checksum`), then `filename` (the file part).
pub fn upload(node: &str, storage: &str, p: &Upload) -> Result<ApiRequest> {
    check_transfer(&p.content, &p.filename)?;
    let mut r = ApiRequest::new(Method::Post, &["nodes", node, "storage", storage, "upload"])
        .param("content", p.content.as_str());
    if let Some((alg, sum)) = &p.checksum {
        r = r
            .param("checksum-algorithm", alg.as_str())
            .param("checksum", sum.as_str());
    }
    Ok(r.param("filename", p.filename.as_str()))
}

// ---------------------------------------------------------------- tasks

/// `GET /nodes/{node}/tasks/{upid}/status`.
pub fn task_status(upid: &Upid) -> ApiRequest {
    ApiRequest::new(
        Method::Get,
        &["nodes", &upid.node, "tasks", upid.as_str(), "status"],
    )
}

/// `GET /nodes/{node}/tasks/{upid}/log`.
pub fn task_log(upid: &Upid, start: Option<u64>, limit: Option<u64>) -> ApiRequest {
    ApiRequest::new(
        Method::Get,
        &["nodes", &upid.node, "tasks", upid.as_str(), "log"],
    )
    .opt("start", start)
    .opt("limit", limit)
}

/// `GET /nodes/{node}/tasks`.
pub fn task_list(node: &str, vmid: Option<u32>, limit: Option<u64>) -> ApiRequest {
    ApiRequest::new(Method::Get, &["nodes", node, "tasks"])
        .opt("vmid", vmid)
        .opt("limit", limit)
}

/// `DELETE /nodes/{node}/tasks/{upid}` (stop a task).
pub fn task_stop(upid: &Upid) -> ApiRequest {
    ApiRequest::new(
        Method::Delete,
        &["nodes", &upid.node, "tasks", upid.as_str()],
    )
}

// ---------------------------------------------------------------- pools

/// `GET /pools[?poolid=]`.
pub fn pools_list(poolid: Option<&str>) -> ApiRequest {
    ApiRequest::new(Method::Get, &["pools"]).opt("poolid", poolid)
}

/// `POST /pools`.
pub fn pool_create(poolid: &str, comment: Option<&str>) -> ApiRequest {
    ApiRequest::new(Method::Post, &["pools"])
        .param("poolid", poolid)
        .opt("comment", comment)
}

/// `PUT /pools` parameters.
#[derive(Debug, Clone, Default)]
pub struct PoolUpdate {
    /// Guests to add (or remove with `delete`).
    pub vms: Vec<u32>,
    /// Storages to add (or remove with `delete`).
    pub storage: Vec<String>,
    /// Remove the listed members instead of adding them.
    pub delete: Option<bool>,
    /// Move guests from another pool.
    pub allow_move: Option<bool>,
    /// Comment.
    pub comment: Option<String>,
}

/// `PUT /pools`.
pub fn pool_update(poolid: &str, p: &PoolUpdate) -> ApiRequest {
    let vms = (!p.vms.is_empty()).then(|| {
        p.vms
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",")
    });
    let storage = (!p.storage.is_empty()).then(|| p.storage.join(","));
    ApiRequest::new(Method::Put, &["pools"])
        .param("poolid", poolid)
        .opt("vms", vms)
        .opt("storage", storage)
        .opt("delete", p.delete)
        .opt("allow-move", p.allow_move)
        .opt("comment", p.comment.as_ref())
}

/// `DELETE /pools?poolid=`.
pub fn pool_delete(poolid: &str) -> ApiRequest {
    ApiRequest::new(Method::Delete, &["pools"]).param("poolid", poolid)
}

// ---------------------------------------------------------------- access

/// `GET /access/users`.
pub fn users_list() -> ApiRequest {
    ApiRequest::new(Method::Get, &["access", "users"])
}

/// `POST /access/users` parameters.
#[derive(Debug, Clone, Default)]
pub struct UserCreate {
    /// `user@realm`.
    pub userid: String,
    /// Password (only for the `pve` realm).
    pub password: Option<SecretString>,
    /// Comment.
    pub comment: Option<String>,
    /// Enabled.
    pub enable: Option<bool>,
    /// Expiry (epoch, 0 = never).
    pub expire: Option<u64>,
    /// Groups.
    pub groups: Vec<String>,
}

/// `POST /access/users`.
pub fn user_create(p: &UserCreate) -> ApiRequest {
    let groups = (!p.groups.is_empty()).then(|| p.groups.join(","));
    ApiRequest::new(Method::Post, &["access", "users"])
        .param("userid", p.userid.as_str())
        .opt("password", p.password.as_ref())
        .opt("comment", p.comment.as_ref())
        .opt("enable", p.enable)
        .opt("expire", p.expire)
        .opt("groups", groups)
}

/// `DELETE /access/users/{userid}`.
pub fn user_delete(userid: &str) -> ApiRequest {
    ApiRequest::new(Method::Delete, &["access", "users", userid])
}

/// `GET /access/users/{userid}/token`.
pub fn tokens_list(userid: &str) -> ApiRequest {
    ApiRequest::new(Method::Get, &["access", "users", userid, "token"])
}

/// `POST /access/users/{userid}/token/{tokenid}` → the secret (shown once).
pub fn token_create(
    userid: &str,
    tokenid: &str,
    privsep: Option<bool>,
    expire: Option<u64>,
    comment: Option<&str>,
) -> ApiRequest {
    ApiRequest::new(Method::Post, &["access", "users", userid, "token", tokenid])
        .opt("privsep", privsep)
        .opt("expire", expire)
        .opt("comment", comment)
}

/// `DELETE /access/users/{userid}/token/{tokenid}`.
pub fn token_delete(userid: &str, tokenid: &str) -> ApiRequest {
    ApiRequest::new(
        Method::Delete,
        &["access", "users", userid, "token", tokenid],
    )
}

/// `GET /access/acl`.
pub fn acl_list() -> ApiRequest {
    ApiRequest::new(Method::Get, &["access", "acl"])
}

/// `PUT /access/acl` parameters.
#[derive(Debug, Clone, Default)]
pub struct AclUpdate {
    /// Object path, e.g. `/vms` or `/storage/local`.
    pub path: String,
    /// Roles.
    pub roles: Vec<String>,
    /// Users.
    pub users: Vec<String>,
    /// API tokens (`user@realm!id`).
    pub tokens: Vec<String>,
    /// Groups.
    pub groups: Vec<String>,
    /// Propagate to children (PVE default 1).
    pub propagate: Option<bool>,
    /// Remove instead of add.
    pub delete: Option<bool>,
}

/// `PUT /access/acl`.
pub fn acl_update(p: &AclUpdate) -> ApiRequest {
    let list = |v: &Vec<String>| (!v.is_empty()).then(|| v.join(","));
    ApiRequest::new(Method::Put, &["access", "acl"])
        .param("path", p.path.as_str())
        .param("roles", p.roles.join(","))
        .opt("users", list(&p.users))
        .opt("tokens", list(&p.tokens))
        .opt("groups", list(&p.groups))
        .opt("propagate", p.propagate)
        .opt("delete", p.delete)
}

/// `GET /access/roles`.
pub fn roles_list() -> ApiRequest {
    ApiRequest::new(Method::Get, &["access", "roles"])
}

/// `POST /access/roles`.
pub fn role_create(roleid: &str, privs: &[&str]) -> ApiRequest {
    ApiRequest::new(Method::Post, &["access", "roles"])
        .param("roleid", roleid)
        .param("privs", privs.join(","))
}

/// `PUT /access/roles/{roleid}`.
pub fn role_update(roleid: &str, privs: &[&str], append: Option<bool>) -> ApiRequest {
    ApiRequest::new(Method::Put, &["access", "roles", roleid])
        .param("privs", privs.join(","))
        .opt("append", append)
}

/// `DELETE /access/roles/{roleid}`.
pub fn role_delete(roleid: &str) -> ApiRequest {
    ApiRequest::new(Method::Delete, &["access", "roles", roleid])
}

// ---------------------------------------------------------------- backup jobs

/// Backup job settings (`/cluster/backup`).
#[derive(Debug, Clone, Default)]
pub struct BackupJobParams {
    /// `schedule` (systemd calendar event), e.g. `sun 01:00`.
    pub schedule: Option<String>,
    /// Target `storage`.
    pub storage: Option<String>,
    /// Guests (`vmid` list); empty with `all`.
    pub vmid: Vec<u32>,
    /// Back up all guests.
    pub all: Option<bool>,
    /// `mode`: `snapshot`, `suspend` or `stop`.
    pub mode: Option<String>,
    /// `compress`: `0`, `1`, `gzip`, `lzo`, `zstd`.
    pub compress: Option<String>,
    /// `enabled`.
    pub enabled: Option<bool>,
    /// `prune-backups`, e.g. `keep-last=3,keep-daily=7`.
    pub prune_backups: Option<String>,
    /// `comment`.
    pub comment: Option<String>,
    /// `node` to restrict to.
    pub node: Option<String>,
    /// Any other parameter.
    pub extra: ExtraParams,
}

fn push_backup(r: ApiRequest, p: &BackupJobParams) -> ApiRequest {
    let vmid = (!p.vmid.is_empty()).then(|| {
        p.vmid
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",")
    });
    r.opt("schedule", p.schedule.as_ref())
        .opt("storage", p.storage.as_ref())
        .opt("vmid", vmid)
        .opt("all", p.all)
        .opt("mode", p.mode.as_ref())
        .opt("compress", p.compress.as_ref())
        .opt("enabled", p.enabled)
        .opt("prune-backups", p.prune_backups.as_ref())
        .opt("comment", p.comment.as_ref())
        .opt("node", p.node.as_ref())
        .params(p.extra.iter().cloned())
}

/// `GET /cluster/backup`.
pub fn backup_jobs_list() -> ApiRequest {
    ApiRequest::new(Method::Get, &["cluster", "backup"])
}

/// `POST /cluster/backup` (`id` auto-generated when `None`).
pub fn backup_job_create(id: Option<&str>, p: &BackupJobParams) -> ApiRequest {
    push_backup(
        ApiRequest::new(Method::Post, &["cluster", "backup"]).opt("id", id),
        p,
    )
}

/// `GET /cluster/backup/{id}`.
pub fn backup_job_get(id: &str) -> ApiRequest {
    ApiRequest::new(Method::Get, &["cluster", "backup", id])
}

/// `PUT /cluster/backup/{id}`.
pub fn backup_job_update(id: &str, p: &BackupJobParams, delete: &[&str]) -> ApiRequest {
    let r = push_backup(ApiRequest::new(Method::Put, &["cluster", "backup", id]), p);
    if delete.is_empty() {
        r
    } else {
        r.param("delete", delete.join(","))
    }
}

/// `DELETE /cluster/backup/{id}`.
pub fn backup_job_delete(id: &str) -> ApiRequest {
    ApiRequest::new(Method::Delete, &["cluster", "backup", id])
}

// ---------------------------------------------------------------- SDN

/// `GET /cluster/sdn/zones[?type=]`.
pub fn sdn_zones_list(zone_type: Option<&str>) -> ApiRequest {
    ApiRequest::new(Method::Get, &["cluster", "sdn", "zones"]).opt("type", zone_type)
}

/// `POST /cluster/sdn/zones` (pending until [`sdn_apply`]).
pub fn sdn_zone_create(zone: &str, zone_type: &str, extra: &ExtraParams) -> ApiRequest {
    ApiRequest::new(Method::Post, &["cluster", "sdn", "zones"])
        .param("zone", zone)
        .param("type", zone_type)
        .params(extra.iter().cloned())
}

/// `DELETE /cluster/sdn/zones/{zone}`.
pub fn sdn_zone_delete(zone: &str) -> ApiRequest {
    ApiRequest::new(Method::Delete, &["cluster", "sdn", "zones", zone])
}

/// `GET /cluster/sdn/vnets`.
pub fn sdn_vnets_list() -> ApiRequest {
    ApiRequest::new(Method::Get, &["cluster", "sdn", "vnets"])
}

/// `POST /cluster/sdn/vnets`.
pub fn sdn_vnet_create(
    vnet: &str,
    zone: &str,
    tag: Option<u32>,
    alias: Option<&str>,
    vlanaware: Option<bool>,
) -> ApiRequest {
    ApiRequest::new(Method::Post, &["cluster", "sdn", "vnets"])
        .param("vnet", vnet)
        .param("zone", zone)
        .opt("tag", tag)
        .opt("alias", alias)
        .opt("vlanaware", vlanaware)
}

/// `DELETE /cluster/sdn/vnets/{vnet}`.
pub fn sdn_vnet_delete(vnet: &str) -> ApiRequest {
    ApiRequest::new(Method::Delete, &["cluster", "sdn", "vnets", vnet])
}

/// `GET /cluster/sdn/vnets/{vnet}/subnets`.
pub fn sdn_subnets_list(vnet: &str) -> ApiRequest {
    ApiRequest::new(Method::Get, &["cluster", "sdn", "vnets", vnet, "subnets"])
}

/// `POST /cluster/sdn/vnets/{vnet}/subnets` (`subnet` in CIDR form).
pub fn sdn_subnet_create(
    vnet: &str,
    subnet: &str,
    gateway: Option<&str>,
    snat: Option<bool>,
) -> ApiRequest {
    ApiRequest::new(Method::Post, &["cluster", "sdn", "vnets", vnet, "subnets"])
        .param("subnet", subnet)
        .param("type", "subnet")
        .opt("gateway", gateway)
        .opt("snat", snat)
}

/// `DELETE /cluster/sdn/vnets/{vnet}/subnets/{subnet}` (`subnet` is the id, e.g.
/// `zone1-10.0.0.0-24`).
pub fn sdn_subnet_delete(vnet: &str, subnet_id: &str) -> ApiRequest {
    ApiRequest::new(
        Method::Delete,
        &["cluster", "sdn", "vnets", vnet, "subnets", subnet_id],
    )
}

/// `PUT /cluster/sdn` (apply pending SDN changes) → UPID.
pub fn sdn_apply() -> ApiRequest {
    ApiRequest::new(Method::Put, &["cluster", "sdn"])
}

// ---------------------------------------------------------------- hardware

/// Options of `GET /nodes/{node}/hardware/pci`.
#[derive(Debug, Clone, Default)]
pub struct PciScan {
    /// PCI class prefixes to hide (hex, e.g. `05`, `06`, `0b`: PVE's default). An empty
    /// list shows every device.
    pub class_blacklist: Option<Vec<String>>,
    /// With `false`, only ids (no names, no subsystem ids). PVE's default is `true`.
    pub verbose: Option<bool>,
}

/// `GET /nodes/{node}/hardware/pci`: the host's PCI devices. Needs `Sys.Audit` or
/// `Sys.Modify` on `/`.
pub fn hardware_pci(node: &str, p: &PciScan) -> ApiRequest {
    ApiRequest::new(Method::Get, &["nodes", node, "hardware", "pci"])
        .opt(
            "pci-class-blacklist",
            p.class_blacklist.as_ref().map(|c| c.join(";")),
        )
        .opt("verbose", p.verbose)
}

/// `GET /nodes/{node}/hardware/pci/{pci-id-or-mapping}`: the methods index (`mdev`).
pub fn hardware_pci_index(node: &str, pci_id_or_mapping: &str) -> ApiRequest {
    ApiRequest::new(
        Method::Get,
        &["nodes", node, "hardware", "pci", pci_id_or_mapping],
    )
}

/// Writable fields of a cluster PCI mapping.
#[derive(Debug, Clone, Default)]
pub struct PciMappingParams {
    /// `description`.
    pub description: Option<String>,
    /// `map`: one entry per node (sent as repeated `map` keys, PVE's array encoding).
    pub map: Vec<PciMapEntry>,
    /// `mdev`: the device can provide mediated devices.
    pub mdev: Option<bool>,
    /// `live-migration-capable` (experimental in PVE).
    pub live_migration_capable: Option<bool>,
}

fn check_configid(what: &str, id: &str) -> Result<()> {
    if crate::property::is_configid(id) {
        Ok(())
    } else {
        Err(Error::invalid(
            what,
            format!("'{id}' is not a configuration id ([a-z][a-z0-9_-]+, a letter first)"),
        ))
    }
}

fn push_mapping(r: ApiRequest, p: &PciMappingParams) -> Result<ApiRequest> {
    let mut r = r.opt("description", p.description.as_ref());
    for e in &p.map {
        e.validate()?;
        r = r.param("map", e);
    }
    Ok(r.opt("mdev", p.mdev)
        .opt("live-migration-capable", p.live_migration_capable))
}

/// `GET /cluster/mapping/pci[?check-node=]`: mappings the caller may see; with
/// `check_node`, each carries diagnostics for that node.
pub fn pci_mappings_list(check_node: Option<&str>) -> ApiRequest {
    ApiRequest::new(Method::Get, &["cluster", "mapping", "pci"]).opt("check-node", check_node)
}

/// `GET /cluster/mapping/pci/{id}`.
pub fn pci_mapping_get(id: &str) -> ApiRequest {
    ApiRequest::new(Method::Get, &["cluster", "mapping", "pci", id])
}

/// `POST /cluster/mapping/pci` → null. Needs `Mapping.Modify` on `/mapping/pci`.
pub fn pci_mapping_create(id: &str, p: &PciMappingParams) -> Result<ApiRequest> {
    check_configid("id", id)?;
    if p.map.is_empty() {
        return Err(Error::invalid(
            "map",
            "a mapping needs at least one node entry",
        ));
    }
    let r = ApiRequest::new(Method::Post, &["cluster", "mapping", "pci"]).param("id", id);
    push_mapping(r, p)
}

/// `PUT /cluster/mapping/pci/{id}` → null: sets the given fields (an empty `map` leaves
/// the entries alone), deletes `delete`, guarded by `digest` when given.
pub fn pci_mapping_update(
    id: &str,
    p: &PciMappingParams,
    delete: &[&str],
    digest: Option<&str>,
) -> Result<ApiRequest> {
    check_configid("id", id)?;
    let r = push_mapping(
        ApiRequest::new(Method::Put, &["cluster", "mapping", "pci", id]),
        p,
    )?;
    if r.params.is_empty() && delete.is_empty() {
        return Err(Error::invalid("update", "nothing to change"));
    }
    let r = if delete.is_empty() {
        r
    } else {
        r.param("delete", delete.join(","))
    };
    Ok(r.opt("digest", digest))
}

/// `DELETE /cluster/mapping/pci/{id}` → null (no error when it does not exist).
pub fn pci_mapping_delete(id: &str) -> ApiRequest {
    ApiRequest::new(Method::Delete, &["cluster", "mapping", "pci", id])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn pci_mapping_sends_map_as_repeated_keys() {
        let p = PciMappingParams {
            description: Some("RTX 3090".into()),
            map: vec![
                "node=pve1,path=0000:01:00,id=10de:2204,iommugroup=14"
                    .parse()
                    .unwrap(),
                "node=pve2,path=0000:02:00.0,id=10de:2204".parse().unwrap(),
            ],
            ..Default::default()
        };
        let r = pci_mapping_create("gpu", &p).unwrap();
        assert_eq!(
            r.encoded_params(),
            "id=gpu&description=RTX%203090\
             &map=id%3D10de%3A2204%2Ciommugroup%3D14%2Cnode%3Dpve1%2Cpath%3D0000%3A01%3A00\
             &map=id%3D10de%3A2204%2Cnode%3Dpve2%2Cpath%3D0000%3A02%3A00.0"
        );
        // pve-common JSONSchema.pm $CONFIGID_RE = qr/[a-z][a-z0-9_-]+/i.
        assert!(pci_mapping_create("GPU-01", &p).is_ok());
        assert!(pci_mapping_create("g", &p).is_err());
        assert!(pci_mapping_create("1gpu", &p).is_err());
        assert!(pci_mapping_create("gpu", &PciMappingParams::default()).is_err());
        assert!(pci_mapping_update("gpu", &PciMappingParams::default(), &[], None).is_err());
        let u = pci_mapping_update(
            "gpu",
            &PciMappingParams::default(),
            &["description"],
            Some("ab"),
        )
        .unwrap();
        assert_eq!(u.encoded_params(), "delete=description&digest=ab");
        let scan = hardware_pci(
            "pve",
            &PciScan {
                class_blacklist: Some(vec!["05".into(), "06".into()]),
                verbose: Some(false),
            },
        );
        assert_eq!(scan.path, "/nodes/pve/hardware/pci");
        assert_eq!(
            scan.encoded_params(),
            "pci-class-blacklist=05%3B06&verbose=0"
        );
    }

    #[test]
    fn qemu_create_encodes_everything() {
        let mut o = QemuOptions {
            name: Some("talos-cp-1".into()),
            tags: Some(vec!["Talos".into(), "k8s".into(), "talos".into()]),
            memory: Some(4096),
            cores: Some(2),
            agent: Some("enabled=1".into()),
            onboot: Some(true),
            sshkeys: Some(vec!["ssh-ed25519 AAAA me@x".into()]),
            efidisk0: Some(EfiDisk::new("local-lvm", false)),
            ..Default::default()
        };
        o.disks.insert(
            "scsi0".into(),
            QemuDisk::import("local-lvm", "local:import/talos.raw").discard(true),
        );
        o.disks
            .insert("ide2".into(), QemuDisk::cloudinit("local-lvm"));
        o.net.insert(0, QemuNet::virtio("vmbr0"));
        o.ipconfig.insert(0, IpConfig::dhcp());
        o.serial.insert(0, Serial::Socket);
        let r = qemu_create(
            "pve",
            &QemuCreate {
                vmid: 100,
                options: o,
                start: Some(false),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(r.method, Method::Post);
        assert_eq!(r.path, "/nodes/pve/qemu");
        assert_eq!(
            r.encoded_params(),
            "vmid=100&name=talos-cp-1&tags=k8s%3Btalos&memory=4096&cores=2&agent=enabled%3D1&onboot=1\
             &sshkeys=ssh-ed25519%2520AAAA%2520me%2540x\
             &efidisk0=local-lvm%3A1%2Cefitype%3D4m%2Cpre-enrolled-keys%3D0\
             &ide2=local-lvm%3Acloudinit\
             &scsi0=local-lvm%3A0%2Cimport-from%3Dlocal%3Aimport%2Ftalos.raw%2Cdiscard%3Don\
             &net0=virtio%2Cbridge%3Dvmbr0&ipconfig0=ip%3Ddhcp&serial0=socket&start=0"
        );
    }

    #[test]
    fn invalid_inputs_fail_before_sending() {
        let bad_vmid = QemuCreate {
            vmid: 99,
            ..Default::default()
        };
        assert!(qemu_create("pve", &bad_vmid).is_err());
        let mut o = QemuOptions::default();
        o.disks
            .insert("scsi31".into(), QemuDisk::new_volume("local", 1));
        assert!(
            qemu_create(
                "pve",
                &QemuCreate {
                    vmid: 100,
                    options: o,
                    ..Default::default()
                }
            )
            .is_err()
        );
        assert!(qemu_update_config("pve", 100, &QemuUpdate::default()).is_err());
        assert!(qemu_resize("pve", 100, "scsi0", "10X", None).is_err());
        assert!(qemu_resize("pve", 100, "scsi0", "+10.5G", None).is_ok());
        assert!(qemu_resize("pve", 100, "scsi0", "40", None).is_ok());
        let up = Upload {
            content: "snippets".into(),
            filename: "x.yaml".into(),
            checksum: None,
        };
        assert!(upload("pve", "local", &up).is_err());
    }

    #[test]
    fn update_with_delete_and_digest() {
        let r = qemu_update_config(
            "pve",
            101,
            &QemuUpdate {
                delete: vec!["ide2".into(), "net1".into()],
                digest: Some("0123abc".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(r.method, Method::Put);
        assert_eq!(r.encoded_params(), "delete=ide2%2Cnet1&digest=0123abc");
    }

    #[test]
    fn upload_field_order() {
        let r = upload(
            "pve",
            "local",
            &Upload {
                content: "iso".into(),
                filename: "talos.iso".into(),
                checksum: Some((ChecksumAlgorithm::Sha256, "ab".into())),
            },
        )
        .unwrap();
        let names: Vec<&str> = r.params.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            ["content", "checksum-algorithm", "checksum", "filename"]
        );
    }
}
