//! PVE property strings (`key=value,key=value` with an optional positional default key) as
//! types, both directions, plus the encoding quirks: booleans as `0`/`1`, `sshkeys` double
//! percent-encoding, tag normalisation and indexed keys (`net0`, `scsi1`, ...).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::request::{percent_decode, percent_encode};

/// Splits a property string into `(key, value)` pairs; a first item without `=` belongs to
/// `default_key`. `what` names the option in errors (e.g. `net0`).
pub fn parse_pairs(
    what: &str,
    s: &str,
    default_key: Option<&str>,
) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (i, part) in s.split(',').enumerate() {
        if part.is_empty() {
            continue;
        }
        match part.split_once('=') {
            Some((k, v)) => {
                if out.iter().any(|(ek, _): &(String, String)| ek == k) {
                    return Err(Error::invalid(
                        what,
                        format!("duplicate key '{k}' in '{s}'"),
                    ));
                }
                out.push((k.to_string(), v.to_string()));
            }
            None => match (i, default_key) {
                (0, Some(dk)) => out.push((dk.to_string(), part.to_string())),
                _ => {
                    return Err(Error::invalid(
                        what,
                        format!("value without key '{part}' in '{s}'"),
                    ));
                }
            },
        }
    }
    Ok(out)
}

/// Parses a PVE boolean (`1/0`, `on/off`, `yes/no`, `true/false`).
pub fn parse_bool(what: &str, v: &str) -> Result<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "on" | "yes" | "true" => Ok(true),
        "0" | "off" | "no" | "false" => Ok(false),
        _ => Err(Error::invalid(what, format!("'{v}' is not a boolean"))),
    }
}

fn parse_num<T: FromStr>(what: &str, key: &str, v: &str) -> Result<T> {
    v.parse()
        .map_err(|_| Error::invalid(what, format!("{key}: '{v}' is not a number")))
}

/// Writes `key=value` pairs in order, booleans as `0`/`1`.
#[derive(Debug, Default)]
struct Writer(Vec<String>);

impl Writer {
    /// The default key's value, written bare unless it holds a `=` (which would make the
    /// parser read a key out of it) or is empty (an empty item is skipped, as pve-common's
    /// `parse_property_string` skips blank parts): then as `key=value`.
    fn positional(&mut self, key: &str, v: &str) {
        if v.is_empty() || v.contains('=') {
            self.0.push(format!("{key}={v}"));
        } else {
            self.0.push(v.to_string());
        }
    }
    /// A first item written as is (`model=MAC` of a network device).
    fn raw(&mut self, v: String) {
        self.0.push(v);
    }
    fn s(&mut self, k: &str, v: &Option<String>) {
        if let Some(v) = v {
            self.0.push(format!("{k}={v}"));
        }
    }
    fn b(&mut self, k: &str, v: Option<bool>) {
        if let Some(v) = v {
            self.0.push(format!("{k}={}", u8::from(v)));
        }
    }
    fn n<T: fmt::Display>(&mut self, k: &str, v: &Option<T>) {
        if let Some(v) = v {
            self.0.push(format!("{k}={v}"));
        }
    }
    fn extra(&mut self, extra: &BTreeMap<String, String>) {
        for (k, v) in extra {
            self.0.push(format!("{k}={v}"));
        }
    }
    fn finish(self) -> String {
        self.0.join(",")
    }
}

/// Implements `Display`/`FromStr`/serde (as a string) for a property-string type.
macro_rules! string_serde {
    ($t:ty, $what:expr) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(
                &self,
                s: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(
                d: D,
            ) -> std::result::Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
        impl From<$t> for crate::request::ParamValue {
            fn from(v: $t) -> Self {
                crate::request::ParamValue::Str(v.to_string())
            }
        }
        impl From<&$t> for crate::request::ParamValue {
            fn from(v: &$t) -> Self {
                crate::request::ParamValue::Str(v.to_string())
            }
        }
    };
}

/// NIC models a QEMU `netN` may start with (`virtio=<mac>` shorthand).
pub const QEMU_NIC_MODELS: &[&str] = &[
    "e1000",
    "e1000-82540em",
    "e1000-82544gc",
    "e1000-82545em",
    "e1000e",
    "i82551",
    "i82557b",
    "i82559er",
    "ne2k_isa",
    "ne2k_pci",
    "pcnet",
    "rtl8139",
    "virtio",
    "vmxnet3",
];

/// A QEMU `net[n]` value, e.g. `virtio=BC:24:11:00:00:01,bridge=vmbr0,firewall=1`.
///
/// ```
/// use proxmox_client::property::QemuNet;
/// let n: QemuNet = "virtio=BC:24:11:2A:00:01,bridge=vmbr0,tag=20,firewall=1".parse()?;
/// assert_eq!(n.model, "virtio");
/// assert_eq!(n.macaddr.as_deref(), Some("BC:24:11:2A:00:01"));
/// assert_eq!(n.tag, Some(20));
/// assert_eq!(QemuNet::virtio("vmbr0").to_string(), "virtio,bridge=vmbr0");
/// # Ok::<(), proxmox_client::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QemuNet {
    /// NIC model (`virtio`, `e1000`, ...).
    pub model: String,
    /// MAC address; the server generates one (`BC:24:11:...`) when absent.
    pub macaddr: Option<String>,
    /// Bridge (or SDN VNet) to attach to.
    pub bridge: Option<String>,
    /// VLAN tag.
    pub tag: Option<u16>,
    /// Allowed VLAN trunks, `;`-separated.
    pub trunks: Option<String>,
    /// Enable the PVE firewall on this NIC.
    pub firewall: Option<bool>,
    /// Disconnect the link.
    pub link_down: Option<bool>,
    /// MTU (1 = inherit from the bridge).
    pub mtu: Option<u16>,
    /// Multiqueue count.
    pub queues: Option<u8>,
    /// Rate limit in MB/s.
    pub rate: Option<f64>,
    /// Keys this type does not model, kept for round trips.
    pub extra: BTreeMap<String, String>,
}

impl QemuNet {
    /// A virtio NIC on `bridge` with a server-generated MAC.
    pub fn virtio(bridge: &str) -> QemuNet {
        QemuNet {
            model: "virtio".into(),
            bridge: Some(bridge.into()),
            ..Default::default()
        }
    }
}

impl FromStr for QemuNet {
    type Err = Error;
    fn from_str(s: &str) -> Result<QemuNet> {
        let w = "net";
        let mut n = QemuNet::default();
        for (k, v) in parse_pairs(w, s, Some("model"))? {
            match k.as_str() {
                "model" => n.model = v,
                m if QEMU_NIC_MODELS.contains(&m) => {
                    n.model = k;
                    n.macaddr = Some(v);
                }
                "macaddr" => n.macaddr = Some(v),
                "bridge" => n.bridge = Some(v),
                "tag" => n.tag = Some(parse_num(w, &k, &v)?),
                "trunks" => n.trunks = Some(v),
                "firewall" => n.firewall = Some(parse_bool(w, &v)?),
                "link_down" => n.link_down = Some(parse_bool(w, &v)?),
                "mtu" => n.mtu = Some(parse_num(w, &k, &v)?),
                "queues" => n.queues = Some(parse_num(w, &k, &v)?),
                "rate" => n.rate = Some(parse_num(w, &k, &v)?),
                _ => {
                    n.extra.insert(k, v);
                }
            }
        }
        if n.model.is_empty() {
            return Err(Error::invalid(w, format!("no NIC model in '{s}'")));
        }
        Ok(n)
    }
}

impl fmt::Display for QemuNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut w = Writer::default();
        match &self.macaddr {
            Some(mac) if QEMU_NIC_MODELS.contains(&self.model.as_str()) => {
                w.raw(format!("{}={mac}", self.model));
            }
            // a model PVE does not know cannot be the key of the MAC: spell both out
            Some(mac) => {
                w.positional("model", &self.model);
                w.raw(format!("macaddr={mac}"));
            }
            None => w.positional("model", &self.model),
        }
        w.s("bridge", &self.bridge);
        w.n("tag", &self.tag);
        w.s("trunks", &self.trunks);
        w.b("firewall", self.firewall);
        w.b("link_down", self.link_down);
        w.n("mtu", &self.mtu);
        w.n("queues", &self.queues);
        w.n("rate", &self.rate);
        w.extra(&self.extra);
        f.write_str(&w.finish())
    }
}
string_serde!(QemuNet, "net");

/// A QEMU disk (`scsi[n]`, `virtio[n]`, `sata[n]`, `ide[n]`), including cloud-init drives,
/// CD-ROMs and `import-from`.
///
/// ```
/// use proxmox_client::property::QemuDisk;
/// let d = QemuDisk::import("local-lvm", "local:import/talos-nocloud-amd64.raw")
///     .discard(true).ssd(true).iothread(true);
/// assert_eq!(d.to_string(),
///     "local-lvm:0,import-from=local:import/talos-nocloud-amd64.raw,discard=on,iothread=1,ssd=1");
/// assert_eq!(QemuDisk::cloudinit("local-lvm").to_string(), "local-lvm:cloudinit");
/// assert_eq!(QemuDisk::new_volume("local-lvm", 32).to_string(), "local-lvm:32");
/// # Ok::<(), proxmox_client::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QemuDisk {
    /// Volume: `STORAGE:SIZE_GiB` to allocate, `STORAGE:0` with `import_from`,
    /// `STORAGE:cloudinit`, a volume id, `none` (empty CD-ROM) or `cdrom`.
    pub file: String,
    /// `cdrom` or `disk`.
    pub media: Option<String>,
    /// Size as PVE reports it (e.g. `32G`).
    pub size: Option<String>,
    /// Image format (`raw`, `qcow2`, `vmdk`).
    pub format: Option<String>,
    /// Volume or path to import the disk from (allocation must be `STORAGE:0`).
    pub import_from: Option<String>,
    /// Cache mode.
    pub cache: Option<String>,
    /// `on` or `ignore`.
    pub discard: Option<String>,
    /// IO thread.
    pub iothread: Option<bool>,
    /// Present as SSD.
    pub ssd: Option<bool>,
    /// Include in backups.
    pub backup: Option<bool>,
    /// Include in replication.
    pub replicate: Option<bool>,
    /// Disk serial.
    pub serial: Option<String>,
    /// AIO mode.
    pub aio: Option<String>,
    /// Keys this type does not model.
    pub extra: BTreeMap<String, String>,
}

impl QemuDisk {
    /// A new `size_gib` GiB volume on `storage`.
    pub fn new_volume(storage: &str, size_gib: u64) -> QemuDisk {
        QemuDisk {
            file: format!("{storage}:{size_gib}"),
            ..Default::default()
        }
    }
    /// A disk imported from `source` (a volume id like `local:import/x.raw`) into `storage`.
    pub fn import(storage: &str, source: &str) -> QemuDisk {
        QemuDisk {
            file: format!("{storage}:0"),
            import_from: Some(source.to_string()),
            ..Default::default()
        }
    }
    /// A cloud-init drive on `storage`.
    pub fn cloudinit(storage: &str) -> QemuDisk {
        QemuDisk {
            file: format!("{storage}:cloudinit"),
            ..Default::default()
        }
    }
    /// A CD-ROM with an ISO volume (`local:iso/x.iso`), or empty with `None`.
    pub fn cdrom(iso: Option<&str>) -> QemuDisk {
        QemuDisk {
            file: iso.unwrap_or("none").to_string(),
            media: Some("cdrom".into()),
            ..Default::default()
        }
    }
    /// Sets `discard=on` (or removes it).
    pub fn discard(mut self, on: bool) -> Self {
        self.discard = on.then(|| "on".to_string());
        self
    }
    /// Sets `ssd`.
    pub fn ssd(mut self, on: bool) -> Self {
        self.ssd = Some(on);
        self
    }
    /// Sets `iothread`.
    pub fn iothread(mut self, on: bool) -> Self {
        self.iothread = Some(on);
        self
    }
    /// Whether this is a cloud-init drive (as sent, or as stored: `vm-N-cloudinit`).
    pub fn is_cloudinit(&self) -> bool {
        self.file.ends_with(":cloudinit") || self.file.contains("-cloudinit")
    }
    /// The storage id of the volume, if it has one.
    pub fn storage(&self) -> Option<&str> {
        self.file.split_once(':').map(|(s, _)| s)
    }
}

impl FromStr for QemuDisk {
    type Err = Error;
    fn from_str(s: &str) -> Result<QemuDisk> {
        let w = "disk";
        let mut d = QemuDisk::default();
        for (k, v) in parse_pairs(w, s, Some("file"))? {
            match k.as_str() {
                "file" | "volume" => d.file = v,
                "media" => d.media = Some(v),
                "size" => d.size = Some(v),
                "format" => d.format = Some(v),
                "import-from" => d.import_from = Some(v),
                "cache" => d.cache = Some(v),
                "discard" => d.discard = Some(v),
                "iothread" => d.iothread = Some(parse_bool(w, &v)?),
                "ssd" => d.ssd = Some(parse_bool(w, &v)?),
                "backup" => d.backup = Some(parse_bool(w, &v)?),
                "replicate" => d.replicate = Some(parse_bool(w, &v)?),
                "serial" => d.serial = Some(v),
                "aio" => d.aio = Some(v),
                _ => {
                    d.extra.insert(k, v);
                }
            }
        }
        if d.file.is_empty() {
            return Err(Error::invalid(w, format!("no volume in '{s}'")));
        }
        Ok(d)
    }
}

impl fmt::Display for QemuDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut w = Writer::default();
        w.positional("file", &self.file);
        w.s("import-from", &self.import_from);
        w.s("aio", &self.aio);
        w.b("backup", self.backup);
        w.s("cache", &self.cache);
        w.s("discard", &self.discard);
        w.s("format", &self.format);
        w.b("iothread", self.iothread);
        w.s("media", &self.media);
        w.b("replicate", self.replicate);
        w.s("serial", &self.serial);
        w.s("size", &self.size);
        w.b("ssd", self.ssd);
        w.extra(&self.extra);
        f.write_str(&w.finish())
    }
}
string_serde!(QemuDisk, "disk");

/// An `efidisk0` value, e.g. `local-lvm:1,efitype=4m,pre-enrolled-keys=0`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EfiDisk {
    /// Volume (`STORAGE:1` to create).
    pub file: String,
    /// `2m` or `4m`.
    pub efitype: Option<String>,
    /// Pre-enroll Secure Boot keys.
    pub pre_enrolled_keys: Option<bool>,
    /// Microsoft certificate generation (`2011`, `2023`, ...).
    pub ms_cert: Option<String>,
    /// Image format.
    pub format: Option<String>,
    /// Import source.
    pub import_from: Option<String>,
    /// Size as reported.
    pub size: Option<String>,
    /// Keys this type does not model.
    pub extra: BTreeMap<String, String>,
}

impl EfiDisk {
    /// A new 4m EFI vars disk on `storage`, with or without pre-enrolled keys.
    pub fn new(storage: &str, pre_enrolled_keys: bool) -> EfiDisk {
        EfiDisk {
            file: format!("{storage}:1"),
            efitype: Some("4m".into()),
            pre_enrolled_keys: Some(pre_enrolled_keys),
            ..Default::default()
        }
    }
}

impl FromStr for EfiDisk {
    type Err = Error;
    fn from_str(s: &str) -> Result<EfiDisk> {
        let w = "efidisk0";
        let mut d = EfiDisk::default();
        for (k, v) in parse_pairs(w, s, Some("file"))? {
            match k.as_str() {
                "file" => d.file = v,
                "efitype" => d.efitype = Some(v),
                "pre-enrolled-keys" => d.pre_enrolled_keys = Some(parse_bool(w, &v)?),
                "ms-cert" => d.ms_cert = Some(v),
                "format" => d.format = Some(v),
                "import-from" => d.import_from = Some(v),
                "size" => d.size = Some(v),
                _ => {
                    d.extra.insert(k, v);
                }
            }
        }
        if d.file.is_empty() {
            return Err(Error::invalid(w, format!("no volume in '{s}'")));
        }
        Ok(d)
    }
}

impl fmt::Display for EfiDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut w = Writer::default();
        w.positional("file", &self.file);
        w.s("efitype", &self.efitype);
        w.s("format", &self.format);
        w.s("import-from", &self.import_from);
        w.s("ms-cert", &self.ms_cert);
        w.b("pre-enrolled-keys", self.pre_enrolled_keys);
        w.s("size", &self.size);
        w.extra(&self.extra);
        f.write_str(&w.finish())
    }
}
string_serde!(EfiDisk, "efidisk0");

/// An `ipconfig[n]` value, e.g. `ip=10.0.0.5/24,gw=10.0.0.1` or `ip=dhcp`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpConfig {
    /// IPv4 CIDR or `dhcp`.
    pub ip: Option<String>,
    /// IPv4 gateway.
    pub gw: Option<String>,
    /// IPv6 CIDR, `dhcp` or `auto`.
    pub ip6: Option<String>,
    /// IPv6 gateway.
    pub gw6: Option<String>,
}

impl IpConfig {
    /// DHCP for IPv4.
    pub fn dhcp() -> IpConfig {
        IpConfig {
            ip: Some("dhcp".into()),
            ..Default::default()
        }
    }
    /// A static IPv4 address in CIDR form and an optional gateway.
    pub fn static_v4(cidr: &str, gw: Option<&str>) -> IpConfig {
        IpConfig {
            ip: Some(cidr.into()),
            gw: gw.map(str::to_string),
            ..Default::default()
        }
    }
}

impl FromStr for IpConfig {
    type Err = Error;
    fn from_str(s: &str) -> Result<IpConfig> {
        let w = "ipconfig";
        let mut c = IpConfig::default();
        for (k, v) in parse_pairs(w, s, None)? {
            match k.as_str() {
                "ip" => c.ip = Some(v),
                "gw" => c.gw = Some(v),
                "ip6" => c.ip6 = Some(v),
                "gw6" => c.gw6 = Some(v),
                _ => return Err(Error::invalid(w, format!("unknown key '{k}' in '{s}'"))),
            }
        }
        Ok(c)
    }
}

impl fmt::Display for IpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut w = Writer::default();
        w.s("ip", &self.ip);
        w.s("gw", &self.gw);
        w.s("ip6", &self.ip6);
        w.s("gw6", &self.gw6);
        f.write_str(&w.finish())
    }
}
string_serde!(IpConfig, "ipconfig");

/// A `hostpci[n]` value (PCI passthrough), e.g. `0000:01:00,pcie=1,x-vga=1` or `mapping=gpu`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostPci {
    /// Host PCI id(s), `;`-separated (root only).
    pub host: Option<String>,
    /// Cluster resource mapping id (what non-root users must use).
    pub mapping: Option<String>,
    /// PCI Express (needs q35).
    pub pcie: Option<bool>,
    /// Primary GPU.
    pub x_vga: Option<bool>,
    /// Expose the ROM BAR.
    pub rombar: Option<bool>,
    /// ROM file (root only).
    pub romfile: Option<String>,
    /// Mediated device type.
    pub mdev: Option<String>,
    /// Keys this type does not model.
    pub extra: BTreeMap<String, String>,
}

impl FromStr for HostPci {
    type Err = Error;
    fn from_str(s: &str) -> Result<HostPci> {
        let w = "hostpci";
        let mut h = HostPci::default();
        for (k, v) in parse_pairs(w, s, Some("host"))? {
            match k.as_str() {
                "host" => h.host = Some(v),
                "mapping" => h.mapping = Some(v),
                "pcie" => h.pcie = Some(parse_bool(w, &v)?),
                "x-vga" => h.x_vga = Some(parse_bool(w, &v)?),
                "rombar" => h.rombar = Some(parse_bool(w, &v)?),
                "romfile" => h.romfile = Some(v),
                "mdev" => h.mdev = Some(v),
                _ => {
                    h.extra.insert(k, v);
                }
            }
        }
        if h.host.is_none() && h.mapping.is_none() {
            return Err(Error::invalid(
                w,
                format!("neither host nor mapping in '{s}'"),
            ));
        }
        Ok(h)
    }
}

impl fmt::Display for HostPci {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut w = Writer::default();
        if let Some(h) = &self.host {
            w.positional("host", h);
        }
        w.s("mapping", &self.mapping);
        w.s("mdev", &self.mdev);
        w.b("pcie", self.pcie);
        w.b("rombar", self.rombar);
        w.s("romfile", &self.romfile);
        w.b("x-vga", self.x_vga);
        w.extra(&self.extra);
        f.write_str(&w.finish())
    }
}
string_serde!(HostPci, "hostpci");

/// A `serial[n]` value: a socket (what cloud images want) or a host device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Serial {
    /// `socket`.
    Socket,
    /// A host device path like `/dev/ttyS0`.
    Device(String),
}

impl FromStr for Serial {
    type Err = Error;
    fn from_str(s: &str) -> Result<Serial> {
        if s == "socket" {
            Ok(Serial::Socket)
        } else if s.starts_with("/dev/") {
            Ok(Serial::Device(s.to_string()))
        } else {
            Err(Error::invalid(
                "serial",
                format!("'{s}' is neither 'socket' nor a /dev/ path"),
            ))
        }
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Serial::Socket => f.write_str("socket"),
            Serial::Device(d) => f.write_str(d),
        }
    }
}
string_serde!(Serial, "serial");

/// An LXC `rootfs` or `mp[n]` value, e.g. `local-lvm:8` or `local-lvm:4,mp=/data,backup=1`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LxcMountPoint {
    /// Volume (`STORAGE:SIZE_GiB` to allocate) or host path (bind mount).
    pub volume: String,
    /// Mount path inside the container (`mp[n]` only).
    pub mp: Option<String>,
    /// Size as reported (e.g. `8G`).
    pub size: Option<String>,
    /// ACL support.
    pub acl: Option<bool>,
    /// Read-only.
    pub ro: Option<bool>,
    /// Include in backups (`mp[n]`).
    pub backup: Option<bool>,
    /// User quotas.
    pub quota: Option<bool>,
    /// Replicate.
    pub replicate: Option<bool>,
    /// Shared across nodes.
    pub shared: Option<bool>,
    /// Mount options, `;`-separated.
    pub mountoptions: Option<String>,
    /// Keys this type does not model.
    pub extra: BTreeMap<String, String>,
}

impl LxcMountPoint {
    /// A new volume of `size_gib` GiB on `storage`.
    pub fn new_volume(storage: &str, size_gib: u64) -> LxcMountPoint {
        LxcMountPoint {
            volume: format!("{storage}:{size_gib}"),
            ..Default::default()
        }
    }
}

impl FromStr for LxcMountPoint {
    type Err = Error;
    fn from_str(s: &str) -> Result<LxcMountPoint> {
        let w = "mountpoint";
        let mut m = LxcMountPoint::default();
        for (k, v) in parse_pairs(w, s, Some("volume"))? {
            match k.as_str() {
                "volume" => m.volume = v,
                "mp" => m.mp = Some(v),
                "size" => m.size = Some(v),
                "acl" => m.acl = Some(parse_bool(w, &v)?),
                "ro" => m.ro = Some(parse_bool(w, &v)?),
                "backup" => m.backup = Some(parse_bool(w, &v)?),
                "quota" => m.quota = Some(parse_bool(w, &v)?),
                "replicate" => m.replicate = Some(parse_bool(w, &v)?),
                "shared" => m.shared = Some(parse_bool(w, &v)?),
                "mountoptions" => m.mountoptions = Some(v),
                _ => {
                    m.extra.insert(k, v);
                }
            }
        }
        if m.volume.is_empty() {
            return Err(Error::invalid(w, format!("no volume in '{s}'")));
        }
        Ok(m)
    }
}

impl fmt::Display for LxcMountPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut w = Writer::default();
        w.positional("volume", &self.volume);
        w.s("mp", &self.mp);
        w.b("acl", self.acl);
        w.b("backup", self.backup);
        w.s("mountoptions", &self.mountoptions);
        w.b("quota", self.quota);
        w.b("replicate", self.replicate);
        w.b("ro", self.ro);
        w.b("shared", self.shared);
        w.s("size", &self.size);
        w.extra(&self.extra);
        f.write_str(&w.finish())
    }
}
string_serde!(LxcMountPoint, "mountpoint");

/// An LXC `net[n]` value, e.g. `name=eth0,bridge=vmbr0,ip=dhcp`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LxcNet {
    /// Interface name inside the container.
    pub name: String,
    /// Bridge.
    pub bridge: Option<String>,
    /// MAC address (generated when absent).
    pub hwaddr: Option<String>,
    /// IPv4 CIDR, `dhcp` or `manual`.
    pub ip: Option<String>,
    /// IPv4 gateway.
    pub gw: Option<String>,
    /// IPv6 CIDR, `auto`, `dhcp` or `manual`.
    pub ip6: Option<String>,
    /// IPv6 gateway.
    pub gw6: Option<String>,
    /// VLAN tag.
    pub tag: Option<u16>,
    /// Firewall.
    pub firewall: Option<bool>,
    /// MTU.
    pub mtu: Option<u16>,
    /// Link down.
    pub link_down: Option<bool>,
    /// Keys this type does not model (`trunks`, `rate`, `type`, ...).
    pub extra: BTreeMap<String, String>,
}

impl FromStr for LxcNet {
    type Err = Error;
    fn from_str(s: &str) -> Result<LxcNet> {
        let w = "net";
        let mut n = LxcNet::default();
        for (k, v) in parse_pairs(w, s, None)? {
            match k.as_str() {
                "name" => n.name = v,
                "bridge" => n.bridge = Some(v),
                "hwaddr" => n.hwaddr = Some(v),
                "ip" => n.ip = Some(v),
                "gw" => n.gw = Some(v),
                "ip6" => n.ip6 = Some(v),
                "gw6" => n.gw6 = Some(v),
                "tag" => n.tag = Some(parse_num(w, &k, &v)?),
                "firewall" => n.firewall = Some(parse_bool(w, &v)?),
                "mtu" => n.mtu = Some(parse_num(w, &k, &v)?),
                "link_down" => n.link_down = Some(parse_bool(w, &v)?),
                _ => {
                    n.extra.insert(k, v);
                }
            }
        }
        if n.name.is_empty() {
            return Err(Error::invalid(w, format!("missing 'name' in '{s}'")));
        }
        Ok(n)
    }
}

impl fmt::Display for LxcNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut w = Writer::default();
        w.s("name", &Some(self.name.clone()));
        w.s("bridge", &self.bridge);
        w.b("firewall", self.firewall);
        w.s("gw", &self.gw);
        w.s("gw6", &self.gw6);
        w.s("hwaddr", &self.hwaddr);
        w.s("ip", &self.ip);
        w.s("ip6", &self.ip6);
        w.b("link_down", self.link_down);
        w.n("mtu", &self.mtu);
        w.n("tag", &self.tag);
        w.extra(&self.extra);
        f.write_str(&w.finish())
    }
}
string_serde!(LxcNet, "net");

/// LXC `features`, e.g. `nesting=1,keyctl=1`. Anything but `nesting` is root@pam-only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LxcFeatures {
    /// Allow nested containers.
    pub nesting: Option<bool>,
    /// Allow keyctl().
    pub keyctl: Option<bool>,
    /// Allow FUSE.
    pub fuse: Option<bool>,
    /// Allow mknod().
    pub mknod: Option<bool>,
    /// Allowed filesystem types for mount, `;`-separated.
    pub mount: Option<String>,
    /// Mount /sys read-write.
    pub force_rw_sys: Option<bool>,
    /// Keys this type does not model.
    pub extra: BTreeMap<String, String>,
}

impl FromStr for LxcFeatures {
    type Err = Error;
    fn from_str(s: &str) -> Result<LxcFeatures> {
        let w = "features";
        let mut x = LxcFeatures::default();
        for (k, v) in parse_pairs(w, s, None)? {
            match k.as_str() {
                "nesting" => x.nesting = Some(parse_bool(w, &v)?),
                "keyctl" => x.keyctl = Some(parse_bool(w, &v)?),
                "fuse" => x.fuse = Some(parse_bool(w, &v)?),
                "mknod" => x.mknod = Some(parse_bool(w, &v)?),
                "mount" => x.mount = Some(v),
                "force_rw_sys" => x.force_rw_sys = Some(parse_bool(w, &v)?),
                _ => {
                    x.extra.insert(k, v);
                }
            }
        }
        Ok(x)
    }
}

impl fmt::Display for LxcFeatures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut w = Writer::default();
        w.b("force_rw_sys", self.force_rw_sys);
        w.b("fuse", self.fuse);
        w.b("keyctl", self.keyctl);
        w.b("mknod", self.mknod);
        w.s("mount", &self.mount);
        w.b("nesting", self.nesting);
        w.extra(&self.extra);
        f.write_str(&w.finish())
    }
}
string_serde!(LxcFeatures, "features");

/// An LXC `dev[n]` value: a host device node passed into the container, e.g.
/// `/dev/dri/renderD128,gid=44,mode=0660`. Only `root@pam` itself (a ticket, not an API
/// token) may set or remove these.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LxcDevice {
    /// Host device path; must start with `/dev/`.
    pub path: String,
    /// Owner uid inside the container.
    pub uid: Option<u32>,
    /// Group gid inside the container.
    pub gid: Option<u32>,
    /// Access mode in octal, e.g. `0660`.
    pub mode: Option<String>,
    /// Read-only for the container.
    pub deny_write: Option<bool>,
    /// Keys this type does not model.
    pub extra: BTreeMap<String, String>,
}

impl LxcDevice {
    /// A device with only its path.
    pub fn new(path: impl Into<String>) -> Self {
        LxcDevice {
            path: path.into(),
            ..Default::default()
        }
    }
}

impl FromStr for LxcDevice {
    type Err = Error;
    fn from_str(s: &str) -> Result<LxcDevice> {
        let w = "dev";
        let mut d = LxcDevice::default();
        for (k, v) in parse_pairs(w, s, Some("path"))? {
            match k.as_str() {
                "path" => d.path = v,
                "uid" => d.uid = Some(parse_num(w, &k, &v)?),
                "gid" => d.gid = Some(parse_num(w, &k, &v)?),
                "mode" => d.mode = Some(v),
                "deny-write" => d.deny_write = Some(parse_bool(w, &v)?),
                _ => {
                    d.extra.insert(k, v);
                }
            }
        }
        // pve-container `verify_lxc_dev_string`.
        let dots = d.path.split('/').any(|c| c == "." || c == "..");
        if !d.path.starts_with("/dev/") || dots {
            return Err(Error::invalid(
                w,
                format!("{} is not a valid device path", d.path),
            ));
        }
        if let Some(m) = &d.mode
            && !(m.len() == 4
                && m.starts_with('0')
                && m.bytes().all(|b| (b'0'..=b'7').contains(&b)))
        {
            return Err(Error::invalid(w, format!("mode '{m}' is not 0[0-7]{{3}}")));
        }
        Ok(d)
    }
}

impl fmt::Display for LxcDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut w = Writer::default();
        w.positional("path", &self.path);
        w.b("deny-write", self.deny_write);
        w.n("gid", &self.gid);
        w.s("mode", &self.mode);
        w.n("uid", &self.uid);
        w.extra(&self.extra);
        f.write_str(&w.finish())
    }
}
string_serde!(LxcDevice, "dev");

/// One node's entry of a cluster PCI mapping (`map` of `/cluster/mapping/pci`), e.g.
/// `node=pve,path=0000:01:00.0,id=10de:2204,iommugroup=14,subsystem-id=10de:147d`.
///
/// At VM start Proxmox compares `id`, `iommugroup` and `subsystem-id` with the live device
/// and refuses to start on a mismatch or a missing property the device has, so build
/// entries from the host's scan with [`PciMapEntry::from_device`].
///
/// ```
/// use proxmox_client::property::PciMapEntry;
///
/// let e: PciMapEntry = "node=pve,path=0000:01:00,id=10de:2204,iommugroup=14".parse()?;
/// assert_eq!(e.path, ["0000:01:00"]);
/// assert_eq!(e.iommugroup, Some(14));
/// assert_eq!(e.to_string(), "id=10de:2204,iommugroup=14,node=pve,path=0000:01:00");
/// # Ok::<(), proxmox_client::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PciMapEntry {
    /// Cluster node.
    pub node: String,
    /// Device paths (`0000:01:00.0`, or `0000:01:00` for all functions); several are
    /// alternatives joined with `;` on the wire.
    pub path: Vec<String>,
    /// `vendor:device` in hex without `0x`, e.g. `10de:2204`.
    pub id: String,
    /// IOMMU group.
    pub iommugroup: Option<i64>,
    /// `subsystem_vendor:subsystem_device`, e.g. `10de:147d`.
    pub subsystem_id: Option<String>,
    /// Node-specific description.
    pub description: Option<String>,
    /// Keys this type does not model.
    pub extra: BTreeMap<String, String>,
}

fn is_pci_path(p: &str) -> bool {
    // `[a-f0-9]{4,}:[a-f0-9]{2}:[a-f0-9]{2}(?:\.[a-f0-9])?`, as Mapping/PCI.pm.
    let (dev, func) = match p.split_once('.') {
        Some((d, f)) => (d, Some(f)),
        None => (p, None),
    };
    let hex = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let parts: Vec<&str> = dev.split(':').collect();
    parts.len() == 3
        && parts[0].len() >= 4
        && parts[1].len() == 2
        && parts[2].len() == 2
        && parts.iter().all(|s| hex(s))
        && func.is_none_or(|f| f.len() == 1 && hex(f))
}

fn is_hex_pair(v: &str) -> bool {
    v.split_once(':').is_some_and(|(a, b)| {
        [a, b]
            .iter()
            .all(|s| s.len() == 4 && s.bytes().all(|c| c.is_ascii_hexdigit()))
    })
}

impl FromStr for PciMapEntry {
    type Err = Error;
    fn from_str(s: &str) -> Result<PciMapEntry> {
        let w = "map";
        let mut e = PciMapEntry::default();
        for (k, v) in parse_pairs(w, s, None)? {
            match k.as_str() {
                "node" => e.node = v,
                "path" => e.path = v.split(';').map(str::to_string).collect(),
                "id" => e.id = v,
                "iommugroup" => e.iommugroup = Some(parse_num(w, &k, &v)?),
                "subsystem-id" => e.subsystem_id = Some(v),
                "description" => e.description = Some(v),
                _ => {
                    e.extra.insert(k, v);
                }
            }
        }
        e.validate()?;
        Ok(e)
    }
}

impl PciMapEntry {
    /// The entry for `node` that matches what the host reports for `dev` today (path, ids,
    /// IOMMU group, subsystem). With `all_functions`, the path names the whole device
    /// (`0000:01:00`), so the GPU's audio function goes along.
    pub fn from_device(
        node: impl Into<String>,
        dev: &crate::models::PciDevice,
        all_functions: bool,
    ) -> PciMapEntry {
        let hex = |s: &str| s.trim_start_matches("0x").to_ascii_lowercase();
        let path = if all_functions {
            dev.id
                .rsplit_once('.')
                .map(|(d, _)| d.to_string())
                .unwrap_or_else(|| dev.id.clone())
        } else {
            dev.id.clone()
        };
        PciMapEntry {
            node: node.into(),
            path: vec![path],
            id: format!("{}:{}", hex(&dev.vendor), hex(&dev.device)),
            iommugroup: (dev.iommugroup >= 0).then_some(dev.iommugroup),
            subsystem_id: match (&dev.subsystem_vendor, &dev.subsystem_device) {
                (Some(v), Some(d)) => Some(format!("{}:{}", hex(v), hex(d))),
                _ => None,
            },
            description: None,
            extra: BTreeMap::new(),
        }
    }

    /// Checks the fields against the API schema's patterns.
    pub fn validate(&self) -> Result<()> {
        let w = "map";
        if self.node.is_empty() {
            return Err(Error::invalid(w, "entry has no node"));
        }
        if self.path.is_empty() || !self.path.iter().all(|p| is_pci_path(p)) {
            return Err(Error::invalid(
                w,
                format!(
                    "path '{}' is not <domain>:<bus>:<slot>[.<function>] in lower-case hex",
                    self.path.join(";")
                ),
            ));
        }
        if !is_hex_pair(&self.id) {
            return Err(Error::invalid(
                w,
                format!("id '{}' is not vvvv:dddd", self.id),
            ));
        }
        if let Some(s) = &self.subsystem_id
            && !is_hex_pair(s)
        {
            return Err(Error::invalid(
                w,
                format!("subsystem-id '{s}' is not vvvv:dddd"),
            ));
        }
        Ok(())
    }
}

impl fmt::Display for PciMapEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut w = Writer::default();
        w.s("description", &self.description);
        w.s("id", &Some(self.id.clone()));
        w.n("iommugroup", &self.iommugroup);
        w.s("node", &Some(self.node.clone()));
        w.s("path", &Some(self.path.join(";")));
        w.s("subsystem-id", &self.subsystem_id);
        w.extra(&self.extra);
        f.write_str(&w.finish())
    }
}
string_serde!(PciMapEntry, "map");

/// Encodes SSH public keys for the QEMU `sshkeys` parameter: the newline-joined list,
/// percent-encoded so only unreserved characters and `%XX` remain (space is `%20`, never
/// `+`). The form encoding then encodes it a second time, as PVE expects.
///
/// ```
/// use proxmox_client::property::encode_sshkeys;
/// assert_eq!(encode_sshkeys(&["ssh-ed25519 AAAA+/= me@host"]),
///            "ssh-ed25519%20AAAA%2B%2F%3D%20me%40host");
/// ```
pub fn encode_sshkeys<S: AsRef<str>>(keys: &[S]) -> String {
    let joined: Vec<&str> = keys.iter().map(|k| k.as_ref().trim()).collect();
    percent_encode(&joined.join("\n"))
}

/// Decodes the `sshkeys` value as `GET .../config` returns it (encoded once) into keys.
pub fn decode_sshkeys(value: &str) -> Result<Vec<String>> {
    let decoded = percent_decode(value)
        .ok_or_else(|| Error::invalid("sshkeys", "invalid percent-encoding"))?;
    Ok(decoded
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

/// Normalises tags the way PVE stores them: split on `;`, `,` or whitespace, lower-case,
/// sorted, de-duplicated, joined with `;`. Fails on characters PVE rejects.
///
/// ```
/// use proxmox_client::property::normalize_tags;
/// assert_eq!(normalize_tags("Talos, k8s;control-plane k8s")?, "control-plane;k8s;talos");
/// assert!(normalize_tags("bad/tag").is_err());
/// # Ok::<(), proxmox_client::Error>(())
/// ```
pub fn normalize_tags(tags: &str) -> Result<String> {
    let mut out: Vec<String> = Vec::new();
    for t in tags.split(|c: char| c == ';' || c == ',' || c.is_whitespace()) {
        if t.is_empty() {
            continue;
        }
        let b = t.as_bytes();
        let first_ok = b[0].is_ascii_alphanumeric() || b[0] == b'_';
        let rest_ok = b
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'+' | b'.'));
        if !first_ok || !rest_ok {
            return Err(Error::invalid(
                "tags",
                format!("invalid characters in tag '{t}'"),
            ));
        }
        out.push(t.to_ascii_lowercase());
    }
    out.sort();
    out.dedup();
    Ok(out.join(";"))
}

/// `net` + 0 -> `net0`.
pub fn indexed_key(prefix: &str, index: u32) -> String {
    format!("{prefix}{index}")
}

/// `scsi12` -> (`scsi`, 12); `None` for keys without a numeric suffix.
pub fn split_indexed_key(key: &str) -> Option<(&str, u32)> {
    let digits = key.len() - key.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 || digits == key.len() {
        return None;
    }
    let (p, n) = key.split_at(key.len() - digits);
    n.parse().ok().map(|n| (p, n))
}

/// The entries of a config map whose keys are `prefix` + index, by index.
pub fn indexed_entries<'a, V>(map: &'a BTreeMap<String, V>, prefix: &str) -> BTreeMap<u32, &'a V> {
    map.iter()
        .filter_map(|(k, v)| match split_indexed_key(k) {
            Some((p, i)) if p == prefix => Some((i, v)),
            _ => None,
        })
        .collect()
}

/// Whether `id` is a `pve-configid`: pve-common `PVE/JSONSchema.pm` `$CONFIGID_RE`,
/// `[a-z][a-z0-9_-]+` matched case-insensitively over the whole string (so at least two
/// characters, a letter first).
pub fn is_configid(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && id.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

// ---------------------------------------------------------------- canonical forms

/// The canonical form of a configuration value, so that what a client sends and what PVE
/// reports back compare equal when they mean the same: keys sorted after the positional
/// part, booleans as `0`/`1`, generated values dropped (a NIC's MAC, a container NIC's
/// `hwaddr`, a CD-ROM's `size`), tags normalised, `x=0` features dropped.
///
/// ```
/// use proxmox_client::property::canonical;
/// assert_eq!(
///     canonical("net0", "virtio=BC:24:11:AA:BB:CC,firewall=0,bridge=vmbr0"),
///     canonical("net0", "virtio,bridge=vmbr0,firewall=0"),
/// );
/// assert_eq!(canonical("agent", "1"), canonical("agent", "enabled=1"));
/// ```
pub fn canonical(key: &str, value: &str) -> String {
    let value = value.trim();
    match key {
        "tags" => canon_tags(value).into_iter().collect::<Vec<_>>().join(";"),
        "description" => value.trim_end().to_string(),
        "agent" => {
            let mut parts = split_lenient(value);
            if let Some((k, v)) = parts.first_mut()
                && v.is_none()
            {
                *v = Some(k.clone());
                *k = "enabled".into();
            }
            normalize_bool_keys(&mut parts, &["enabled", "fstrim_cloned_disks"]);
            join_sorted(parts, 0)
        }
        "ide2" | "ide0" | "ide1" | "ide3" | "sata0" => {
            // A CD-ROM: drop the size PVE adds.
            let parts: Vec<_> = split_lenient(value)
                .into_iter()
                .filter(|(k, _)| k != "size")
                .collect();
            join_sorted(parts, 1)
        }
        k if k.starts_with("net") && is_lxc_net(value) => {
            // A container NIC: the generated MAC and the default type do not count.
            let parts: Vec<_> = split_lenient(value)
                .into_iter()
                .filter(|(k, v)| k != "hwaddr" && !(k == "type" && v.as_deref() == Some("veth")))
                .collect();
            join_sorted(parts, 0)
        }
        "features" => {
            let mut parts = split_lenient(value);
            normalize_bool_keys(
                &mut parts,
                &["nesting", "keyctl", "fuse", "mknod", "force_rw_sys"],
            );
            // `x=0` is the same as not setting it.
            parts.retain(|(_, v)| v.as_deref() != Some("0"));
            join_sorted(parts, 0)
        }
        "startup" => join_sorted(split_lenient(value), 0),
        k if is_numbered(k, "dev") => join_sorted(split_lenient(value), 1),
        "unprivileged" => match value {
            "true" | "on" | "yes" => "1".into(),
            "false" | "off" | "no" => "0".into(),
            v => v.to_string(),
        },
        k if k.starts_with("net") => {
            let mut parts = split_lenient(value);
            if let Some((m, mac)) = parts.first_mut()
                && QEMU_NIC_MODELS.contains(&m.as_str())
            {
                *mac = None;
            }
            join_sorted(parts, 1)
        }
        k if k.starts_with("ipconfig") => join_sorted(split_lenient(value), 0),
        k if k.starts_with("hostpci") => {
            let mut parts = split_lenient(value);
            normalize_bool_keys(&mut parts, &["pcie", "x-vga", "rombar", "legacy-igd"]);
            join_sorted(parts, 0)
        }
        "onboot" | "balloon" | "sockets" | "cores" | "memory" | "swap" => {
            value.trim_start_matches('+').to_string()
        }
        _ => value.to_string(),
    }
}

/// Whether `key` is `<prefix><digits>` (`dev0`, `mp3`, `hostpci1`).
pub fn is_numbered(key: &str, prefix: &str) -> bool {
    key.strip_prefix(prefix)
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Container feature flags other than `nesting`, as `key=value` (only `root@pam` may change
/// them: pve-container `LXC.pm`, `check_ct_modify_config_perm`).
pub fn root_only_features(value: &str) -> std::collections::BTreeSet<String> {
    split_lenient(value)
        .into_iter()
        .filter(|(k, v)| {
            k != "nesting" && !matches!(v.as_deref(), Some("0" | "false" | "off" | "no"))
        })
        .map(|(k, v)| format!("{k}={}", v.unwrap_or_default()))
        .collect()
}

/// Whether a `netN` value is a container NIC (`name=eth0,bridge=...`), not a VM NIC
/// (`virtio=MAC,bridge=...`).
fn is_lxc_net(value: &str) -> bool {
    split_lenient(value)
        .iter()
        .any(|(k, _)| k == "name" || k == "hwaddr")
}

/// Tags as PVE normalises them: split on `;`, `,` or spaces, lowercased, sorted, unique
/// (lenient: unlike [`normalize_tags`] it accepts any characters).
pub fn canon_tags(value: &str) -> std::collections::BTreeSet<String> {
    value
        .split([';', ',', ' '])
        .filter(|t| !t.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

fn normalize_bool_keys(parts: &mut [(String, Option<String>)], keys: &[&str]) {
    for (k, v) in parts.iter_mut() {
        if keys.contains(&k.as_str())
            && let Some(val) = v
        {
            *val = match val.as_str() {
                "true" | "on" | "yes" => "1".into(),
                "false" | "off" | "no" => "0".into(),
                _ => val.clone(),
            };
        }
    }
}

/// Splits `a=b,c,d=e` into pairs, never failing (a bare item has no value). For values
/// read back from PVE; [`parse_pairs`] is the strict form.
pub fn split_lenient(value: &str) -> Vec<(String, Option<String>)> {
    value
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.trim().to_string(), Some(v.trim().to_string())),
            None => (p.trim().to_string(), None),
        })
        .collect()
}

/// Joins pairs, keeping the first `keep_first` in place and sorting the rest by key.
fn join_sorted(mut parts: Vec<(String, Option<String>)>, keep_first: usize) -> String {
    let keep = keep_first.min(parts.len());
    parts[keep..].sort_by(|a, b| a.0.cmp(&b.0));
    parts
        .into_iter()
        .map(|(k, v)| match v {
            Some(v) => format!("{k}={v}"),
            None => k,
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A disk of any kind as PVE reports it (`local-lvm:vm-100-disk-1,discard=on,size=100G`),
/// read leniently: the volume, its size and the remaining options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskRef {
    /// Storage ID.
    pub storage: String,
    /// Volume name inside the storage.
    pub volume: String,
    /// `size=`, in MiB (rounded up).
    pub size_mib: Option<u64>,
    /// Whether this is a cloud-init drive.
    pub cloudinit: bool,
    /// Remaining options (without `size` and `media`); bare flags map to `""`.
    pub options: BTreeMap<String, String>,
}

/// Parses a disk value (`scsi0`, `rootfs`, `mp0`, `efidisk0`, ...); `None` if it names no
/// `storage:volume`.
pub fn parse_disk_ref(value: &str) -> Option<DiskRef> {
    let mut parts = split_lenient(value).into_iter();
    let (first, first_val) = parts.next()?;
    let vol = match (first.as_str(), first_val) {
        ("file" | "volume", Some(v)) => v,
        (_, None) => first,
        _ => return None,
    };
    let (storage, volume) = vol.split_once(':')?;
    let mut size_mib = None;
    let mut options = BTreeMap::new();
    for (k, v) in parts {
        match (k.as_str(), v) {
            ("size", Some(s)) => size_mib = parse_size_mib(&s),
            ("media", _) => {}
            (_, Some(v)) => {
                options.insert(k, v);
            }
            (_, None) => {
                options.insert(k, String::new());
            }
        }
    }
    Some(DiskRef {
        storage: storage.to_string(),
        volume: volume.to_string(),
        size_mib,
        cloudinit: volume.contains("cloudinit"),
        options,
    })
}

/// PVE disk sizes (`100G`, `4M`, `512K`, `1T`, bare bytes) in MiB, rounded up.
pub fn parse_size_mib(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, unit) = s.split_at(
        s.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len()),
    );
    let n: f64 = num.parse().ok()?;
    let mib = match unit {
        "" => n / (1024.0 * 1024.0),
        "K" => n / 1024.0,
        "M" => n,
        "G" => n * 1024.0,
        "T" => n * 1024.0 * 1024.0,
        _ => return None,
    };
    if !mib.is_finite() || mib < 0.0 {
        return None;
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Some(mib.ceil() as u64)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Found by the `property` fuzz target: a default-key value holding `=` was printed bare
    /// and read back as a key (`file=le=1` printed `le=1`).
    #[test]
    fn default_key_values_with_equals_round_trip() {
        let d: QemuDisk = "vio=B:0:01,file=le=1,tag=20".parse().unwrap();
        assert_eq!(d.file, "le=1");
        let printed = d.to_string();
        assert!(printed.starts_with("file=le=1,"), "{printed}");
        assert_eq!(printed.parse::<QemuDisk>().unwrap(), d);
        let m: LxcMountPoint = "volume=a=b,mp=/x".parse().unwrap();
        assert_eq!(m.to_string().parse::<LxcMountPoint>().unwrap(), m);
        for s in [
            "model=a=b,macaddr=X",
            "model=foo,macaddr=X",
            "virtio=BC:24:11:00:00:01",
        ] {
            let n: QemuNet = s.parse().unwrap();
            let printed = n.to_string();
            assert_eq!(
                printed.parse::<QemuNet>().unwrap(),
                n,
                "{s} printed {printed}"
            );
        }
    }

    #[test]
    fn an_empty_default_key_value_round_trips() {
        // Found by the `property` fuzz target: an empty `host` printed bare vanished (an
        // empty item is skipped), so the printed string had neither host nor mapping.
        let h: HostPci = ",gm\u{b}=,host=".parse().unwrap();
        assert_eq!(h.host.as_deref(), Some(""));
        let printed = h.to_string();
        assert!(printed.starts_with("host=,"), "{printed}");
        assert_eq!(printed.parse::<HostPci>().unwrap(), h);
    }

    fn roundtrip<T: FromStr<Err = Error> + fmt::Display + PartialEq + fmt::Debug>(s: &str) -> T {
        let v: T = s.parse().unwrap();
        assert_eq!(v.to_string(), s, "round trip");
        let again: T = v.to_string().parse().unwrap();
        assert_eq!(again, v);
        v
    }

    #[test]
    fn qemu_net_forms() {
        let n: QemuNet = roundtrip("virtio=BC:24:11:AA:BB:CC,bridge=vmbr0,tag=5,firewall=1,mtu=1");
        assert_eq!(n.firewall, Some(true));
        let m: QemuNet = "model=e1000,macaddr=BC:24:11:00:00:01,bridge=vmbr1,link_down=0"
            .parse()
            .unwrap();
        assert_eq!(m.model, "e1000");
        assert_eq!(m.link_down, Some(false));
        assert_eq!(
            m.to_string(),
            "e1000=BC:24:11:00:00:01,bridge=vmbr1,link_down=0"
        );
        assert!("bridge=vmbr0".parse::<QemuNet>().is_err());
        assert!("virtio,tag=x".parse::<QemuNet>().is_err());
        let x: QemuNet = roundtrip("virtio,bridge=vmbr0,x-new-key=1");
        assert_eq!(x.extra["x-new-key"], "1");
    }

    #[test]
    fn disks() {
        let d: QemuDisk = roundtrip("local-lvm:vm-100-disk-0,discard=on,iothread=1,size=32G,ssd=1");
        assert_eq!(d.size.as_deref(), Some("32G"));
        assert_eq!(d.storage(), Some("local-lvm"));
        let c: QemuDisk = roundtrip("local-lvm:vm-100-cloudinit,media=cdrom");
        assert!(c.is_cloudinit());
        assert_eq!(QemuDisk::cdrom(None).to_string(), "none,media=cdrom");
        assert_eq!(
            QemuDisk::cdrom(Some("local:iso/talos.iso")).to_string(),
            "local:iso/talos.iso,media=cdrom"
        );
        let f: QemuDisk = "file=local:iso/x.iso,media=cdrom".parse().unwrap();
        assert_eq!(f.file, "local:iso/x.iso");
        assert!("iothread=1".parse::<QemuDisk>().is_err());
        assert!("local:1,ssd=maybe".parse::<QemuDisk>().is_err());
    }

    #[test]
    fn efidisk_ipconfig_hostpci_serial() {
        let e = EfiDisk::new("local-lvm", false);
        assert_eq!(e.to_string(), "local-lvm:1,efitype=4m,pre-enrolled-keys=0");
        roundtrip::<EfiDisk>("local-lvm:vm-100-disk-1,efitype=4m,pre-enrolled-keys=1,size=4M");
        let ip: IpConfig = roundtrip("ip=10.0.0.5/24,gw=10.0.0.1");
        assert_eq!(ip, IpConfig::static_v4("10.0.0.5/24", Some("10.0.0.1")));
        assert_eq!(IpConfig::dhcp().to_string(), "ip=dhcp");
        roundtrip::<IpConfig>("ip=dhcp,ip6=auto");
        assert!("ip=dhcp,foo=1".parse::<IpConfig>().is_err());
        let h: HostPci = roundtrip("0000:01:00,pcie=1,x-vga=1");
        assert_eq!(h.host.as_deref(), Some("0000:01:00"));
        let hm: HostPci = roundtrip("mapping=gpu,pcie=1");
        assert_eq!(hm.mapping.as_deref(), Some("gpu"));
        assert!("pcie=1".parse::<HostPci>().is_err());
        assert_eq!(roundtrip::<Serial>("socket"), Serial::Socket);
        roundtrip::<Serial>("/dev/ttyS0");
        assert!("tcp".parse::<Serial>().is_err());
    }

    #[test]
    fn lxc_types() {
        let r: LxcMountPoint = roundtrip("local-lvm:8");
        assert_eq!(r.volume, "local-lvm:8");
        let mp: LxcMountPoint = roundtrip("local-lvm:vm-101-disk-1,mp=/data,backup=1,size=4G");
        assert_eq!(mp.mp.as_deref(), Some("/data"));
        let n: LxcNet = roundtrip("name=eth0,bridge=vmbr0,hwaddr=BC:24:11:00:00:02,ip=dhcp");
        assert_eq!(n.ip.as_deref(), Some("dhcp"));
        assert!("bridge=vmbr0".parse::<LxcNet>().is_err());
        let f: LxcFeatures = roundtrip("keyctl=1,nesting=1");
        assert_eq!(f.nesting, Some(true));
        let on: LxcFeatures = "nesting=on".parse().unwrap();
        assert_eq!(on.to_string(), "nesting=1");
    }

    #[test]
    fn sshkeys_double_encoding() {
        let keys = [
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBase64+/= alice@laptop",
            "ssh-rsa AAAAB3Nza= bob",
        ];
        let once = encode_sshkeys(&keys);
        // Only unreserved characters and %XX remain (PVE's urlencoded format check).
        assert!(
            once.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.~%".contains(&b))
        );
        assert!(once.contains("%20") && once.contains("%0A") && once.contains("%2B"));
        assert!(!once.contains('+'));
        let req = crate::request::ApiRequest::new(crate::request::Method::Post, &["x"])
            .param("sshkeys", once.clone());
        let wire = req.encoded_params();
        assert!(wire.starts_with("sshkeys=ssh-ed25519%2520AAAA"), "{wire}");
        assert_eq!(decode_sshkeys(&once).unwrap(), keys);
    }

    #[test]
    fn tags_and_indexed_keys() {
        assert_eq!(normalize_tags("B a;a, c").unwrap(), "a;b;c");
        assert_eq!(normalize_tags("").unwrap(), "");
        assert!(normalize_tags("-x").is_err());
        assert_eq!(indexed_key("net", 3), "net3");
        assert_eq!(split_indexed_key("scsi12"), Some(("scsi", 12)));
        assert_eq!(split_indexed_key("efidisk0"), Some(("efidisk", 0)));
        assert_eq!(split_indexed_key("name"), None);
        assert_eq!(split_indexed_key("42"), None);
        let mut m = BTreeMap::new();
        m.insert("net0".to_string(), 1);
        m.insert("net10".to_string(), 2);
        m.insert("netx".to_string(), 3);
        m.insert("scsi0".to_string(), 4);
        let e = indexed_entries(&m, "net");
        assert_eq!(e.len(), 2);
        assert_eq!(*e[&10], 2);
    }

    #[test]
    fn canonical_nic_mac_is_ignored() {
        assert_eq!(
            canonical("net0", "virtio=BC:24:11:AA:BB:CC,firewall=0,bridge=vmbr0"),
            canonical("net0", "virtio,bridge=vmbr0,firewall=0")
        );
        assert_eq!(
            canonical("net0", "e1000-82540em=BC:24:11:AA:BB:CC,bridge=vmbr0"),
            canonical("net0", "e1000-82540em,bridge=vmbr0")
        );
        assert_ne!(
            canonical("net0", "virtio,bridge=vmbr1"),
            canonical("net0", "virtio,bridge=vmbr0")
        );
    }

    #[test]
    fn canonical_container_nic_and_features() {
        assert_eq!(
            canonical(
                "net0",
                "bridge=vmbr0,hwaddr=BC:24:11:00:00:01,ip=10.0.0.2/24,name=eth0,type=veth"
            ),
            canonical("net0", "name=eth0,bridge=vmbr0,ip=10.0.0.2/24")
        );
        assert_ne!(
            canonical(
                "net0",
                "bridge=vmbr0,hwaddr=BC:24:11:00:00:01,ip=dhcp,name=eth0"
            ),
            canonical("net0", "name=eth0,bridge=vmbr0,ip=10.0.0.2/24")
        );
        assert_eq!(
            canonical("features", "nesting=1,keyctl=1"),
            "keyctl=1,nesting=1"
        );
        assert_eq!(canonical("features", "keyctl=0,nesting=1"), "nesting=1");
        assert_eq!(canonical("startup", "up=30,order=2"), "order=2,up=30");
        assert_eq!(
            root_only_features("nesting=1,keyctl=1,fuse=0")
                .into_iter()
                .collect::<Vec<_>>(),
            vec!["keyctl=1".to_string()]
        );
    }

    #[test]
    fn canonical_agent_cdrom_tags() {
        assert_eq!(canonical("agent", "1"), canonical("agent", "enabled=1"));
        assert_ne!(canonical("agent", "0"), canonical("agent", "enabled=1"));
        assert_eq!(
            canonical("ide2", "local:iso/t.iso,media=cdrom,size=100M"),
            canonical("ide2", "local:iso/t.iso,media=cdrom")
        );
        assert_eq!(canonical("tags", "b;A,c"), "a;b;c");
        assert_eq!(
            canonical("ipconfig0", "ip=1.2.3.4/24,gw=1.2.3.1"),
            "gw=1.2.3.1,ip=1.2.3.4/24"
        );
        assert!(is_numbered("dev12", "dev") && !is_numbered("dev", "dev"));
    }

    #[test]
    fn disk_refs_parse() {
        let d = parse_disk_ref("local-lvm:vm-100-disk-1,discard=on,size=100G,ssd=1").unwrap();
        assert_eq!(d.storage, "local-lvm");
        assert_eq!(d.size_mib, Some(100 * 1024));
        assert_eq!(d.options.get("discard").map(String::as_str), Some("on"));
        assert!(!d.options.contains_key("size"));
        let ci = parse_disk_ref("local-lvm:vm-100-cloudinit,media=cdrom").unwrap();
        assert!(ci.cloudinit);
        assert_eq!(parse_size_mib("4M"), Some(4));
        assert_eq!(parse_size_mib("528K"), Some(1));
        assert_eq!(parse_size_mib("-1G"), None);
        assert!(parse_disk_ref("garbage").is_none());
    }
}
