//! Cloud-init VMs and gold templates: validation (no secrets needed) and compilation into
//! the Proxmox configurations the planner compares.
//!
//! A VM's boot disk is either imported from a cloud image (`scsi0: <storage>:0,import-from=
//! <storage>:import/<file>`, then grown to `disk`) or cloned from a gold template (linked by
//! default). Cloud-init gets the automation user, its SSH keys (URL-encoded, as Proxmox
//! stores `sshkeys`), the address and DNS; packages and extra cloud-config go into a
//! vendor-data snippet referenced by `cicustom` whose file name carries a hash of its
//! content, so a change shows up as a `cicustom` change.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::config::{CloudImage, Config, PciPassthrough, Size, VmSettings};
use super::desired::{DesiredGuest, DiskSpec, GuestKind, owner_marker, spec_hash};
use super::secrets::SecretValues;
use super::{ConfigError, Loaded, is_label, known, setting_path, subst};

/// File extensions Proxmox accepts for `import` disk images (pve-storage's import regex;
/// `.ova` archives are not disk images).
const IMAGE_EXTENSIONS: &[&str] = &[".qcow2", ".raw", ".vmdk"];

/// Checksum algorithms `download-url` accepts.
const CHECKSUM_ALGORITHMS: &[&str] = &["md5", "sha1", "sha224", "sha256", "sha384", "sha512"];

/// A cloud image that must be in storage (downloaded once, verified by Proxmox).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct DesiredImage {
    /// Proxmox node whose storage holds it.
    pub node: String,
    /// File storage (content `import`).
    pub storage: String,
    /// File name in `import/`.
    pub filename: String,
    /// Where Proxmox downloads it from.
    pub url: String,
    /// `(algorithm, hex digest)` Proxmox verifies.
    pub checksum: Option<(String, String)>,
}

impl DesiredImage {
    /// `storage:import/filename`.
    pub fn volid(&self) -> String {
        proxmox_client::VolumeId::new(
            self.storage.as_str(),
            proxmox_client::ContentKind::Import,
            self.filename.as_str(),
        )
        .to_string()
    }
}

/// A cloud-init snippet that must be on a node's snippet storage.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct DesiredSnippet {
    /// Proxmox node.
    pub node: String,
    /// Storage (content `snippets`).
    pub storage: String,
    /// Directory of the storage on the node (`/var/lib/vz`).
    pub dir: String,
    /// File name in `snippets/` (carries a content hash).
    pub filename: String,
    /// The file's text.
    pub content: String,
}

impl DesiredSnippet {
    /// `storage:snippets/filename`.
    pub fn volid(&self) -> String {
        proxmox_client::VolumeId::new(
            self.storage.as_str(),
            proxmox_client::ContentKind::Snippets,
            self.filename.as_str(),
        )
        .to_string()
    }
}

/// A cluster PCI mapping entry `up` makes sure of, for a `pci` item with a `device`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct DesiredPciMapping {
    /// Mapping ID.
    pub id: String,
    /// Node the device is on.
    pub node: String,
    /// Host PCI address (`0000:01:00` or `0000:01:00.0`).
    pub path: String,
    /// Who needs it (for errors).
    pub used_by: String,
}

/// Where a VM's boot disk comes from.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum BootSource {
    /// Imported from a cloud image volume.
    Image {
        /// `storage:import/file`.
        volid: String,
    },
    /// Cloned from a gold template.
    Clone {
        /// The template's VMID.
        template: u32,
        /// Full copy (else linked).
        full: bool,
    },
}

/// Start of the description line recording where a VM's boot disk came from.
pub const BOOT_MARKER: &str = "homelab-cli:boot=";

impl BootSource {
    /// `image local:import/x.qcow2`, `linked clone of 9000`, `full clone of 9000`.
    pub fn describe(&self) -> String {
        match self {
            BootSource::Image { volid } => format!("image {volid}"),
            BootSource::Clone { template, full } => {
                format!(
                    "{} clone of {template}",
                    if *full { "full" } else { "linked" }
                )
            }
        }
    }
}

/// What the VM section compiles to.
#[derive(Debug, Default)]
pub struct Compiled {
    /// Guests (templates and VMs).
    pub guests: Vec<DesiredGuest>,
    /// Images to download.
    pub images: BTreeSet<DesiredImage>,
    /// Snippets to upload.
    pub snippets: BTreeSet<DesiredSnippet>,
    /// PCI mappings to create.
    pub pci_mappings: BTreeSet<DesiredPciMapping>,
    /// Image volumes that must already be in storage: (node, volid, who uses it).
    pub existing_images: BTreeSet<(String, String, String)>,
    /// VMIDs of VMs to take over (`adopt: true`).
    pub adopt: BTreeSet<u32>,
    /// Per VMID, what a missing VM is restored from.
    pub restore: BTreeMap<u32, String>,
    /// Per VMID, the resource pool of the VM.
    pub pools: BTreeMap<u32, String>,
}

/// Percent-encode like JavaScript's `encodeURIComponent`, which is how the Proxmox GUI
/// writes `sshkeys` (the API only accepts URL-encoded text there).
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3 / 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Undo [`url_encode`] (for showing `sshkeys` to people); malformed escapes stay as they are.
pub fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `s` is a `pve-configid`, what mapping IDs must be (the client library's
/// check, pve-common's `$CONFIGID_RE`).
pub fn is_mapping_id(s: &str) -> bool {
    proxmox_client::property::is_configid(s)
}

/// A PCI address with its domain (`01:00.0` → `0000:01:00.0`), lowercase, as Proxmox
/// lists devices and mapping paths.
pub fn full_pci_address(s: &str) -> String {
    let s = s.to_ascii_lowercase();
    if s.split(':').count() == 2 {
        format!("0000:{s}")
    } else {
        s
    }
}

/// Whether `s` is a host PCI address: `[dddd:]bb:dd[.f]` in hex.
pub fn is_pci_address(s: &str) -> bool {
    let hex = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit());
    let (main, func) = match s.split_once('.') {
        Some((m, f)) => (m, Some(f)),
        None => (s, None),
    };
    if func.is_some_and(|f| !(f.len() == 1 && f.bytes().all(|b| (b'0'..=b'7').contains(&b)))) {
        return false;
    }
    let parts: Vec<&str> = main.split(':').collect();
    match parts.as_slice() {
        [d, b, s] => hex(d, 4) && hex(b, 2) && hex(s, 2),
        [b, s] => hex(b, 2) && hex(s, 2),
        _ => false,
    }
}

fn image_filename(img: &CloudImage) -> Option<String> {
    if let Some(f) = &img.filename {
        return Some(f.clone());
    }
    let url = url::Url::parse(img.url.as_deref()?).ok()?;
    url.path_segments()?
        .next_back()
        .filter(|f| !f.is_empty())
        .map(str::to_string)
}

/// Rules that need no secrets.
pub(crate) fn validate(l: &Loaded, errs: &mut Vec<ConfigError>) {
    let c = &l.config;
    for (name, img) in &c.images {
        let p = format!("images.{name}");
        if !is_label(name, 63)
            && !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            errs.push(l.error_at(&p, format!("invalid image name `{name}`")));
        }
        match (&img.url, &img.volume) {
            (Some(_), Some(_)) => errs.push(
                l.error_at(&format!("{p}.volume"), "give either `url` or `volume`, not both"),
            ),
            (None, None) => errs.push(
                l.error_at(&p, "the image has neither `url` nor `volume`")
                    .with_help("e.g. `url: https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2`"),
            ),
            (Some(u), None) => {
                if !(u.starts_with("https://") || u.starts_with("http://")) {
                    errs.push(l.error_at(&format!("{p}.url"), format!("`{u}` is not an http(s) URL")));
                }
                match image_filename(img) {
                    None => errs.push(
                        l.error_at(&format!("{p}.url"), "the URL does not end in a file name")
                            .with_help("set `filename`"),
                    ),
                    Some(f) => {
                        if !IMAGE_EXTENSIONS.iter().any(|e| f.ends_with(e)) || f.contains('/') {
                            let at = if img.filename.is_some() { "filename" } else { "url" };
                            errs.push(
                                l.error_at(&format!("{p}.{at}"), format!("`{f}` is not a disk image file name"))
                                    .with_help("Proxmox imports only files ending in .qcow2, .raw or .vmdk; set `filename` (Ubuntu's `.img` cloud images are qcow2: name them `.qcow2`)"),
                            );
                        }
                    }
                }
                if img.checksum.is_none() {
                    errs.push(
                        l.error_at(&format!("{p}.url"), "a downloaded image needs a `checksum`")
                            .with_help("e.g. `checksum: sha512:<hex>` from the distribution's SHA512SUMS"),
                    );
                }
            }
            (None, Some(v)) => {
                if !v.contains(":import/") {
                    errs.push(
                        l.error_at(&format!("{p}.volume"), format!("`{v}` is not an import volume"))
                            .with_help("e.g. `local:import/debian-12-genericcloud-amd64.qcow2`"),
                    );
                }
            }
        }
        if let Some(cs) = &img.checksum {
            let ok = cs.split_once(':').is_some_and(|(a, h)| {
                CHECKSUM_ALGORITHMS.contains(&a)
                    && !h.is_empty()
                    && h.bytes().all(|b| b.is_ascii_hexdigit())
            });
            if !ok {
                errs.push(
                    l.error_at(
                        &format!("{p}.checksum"),
                        format!("`{cs}` is not `ALGORITHM:HEX`"),
                    )
                    .with_help(format!("algorithms: {}", CHECKSUM_ALGORITHMS.join(", "))),
                );
            }
        }
    }
    let Some(v) = &c.vms else { return };
    let mut vmids: BTreeMap<u32, String> = BTreeMap::new();
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    for (i, n) in c.talos.iter().flat_map(|t| t.nodes.iter().enumerate()) {
        vmids.insert(n.vmid, format!("talos.nodes[{i}]"));
        names.insert(n.name.clone(), format!("talos.nodes[{i}]"));
    }
    if let Some(x) = &c.lxc {
        for (i, ct) in x.containers.iter().enumerate() {
            if let Some(id) = x.vmid_of(i) {
                vmids.insert(id, format!("lxc.containers[{i}]"));
            }
            names.insert(ct.name.clone(), format!("lxc.containers[{i}]"));
        }
    }
    let mut claim = |errs: &mut Vec<ConfigError>, p: &str, name: &str, vmid: u32| {
        super::check_guest_id(l, errs, p, "name", name, vmid);
        if let Some(prev) = vmids.insert(vmid, p.to_string()) {
            errs.push(l.error_at(
                &format!("{p}.vmid"),
                format!("VMID {vmid} is already used by {prev}"),
            ));
        }
        if let Some(prev) = names.insert(name.to_string(), p.to_string()) {
            errs.push(l.error_at(
                &format!("{p}.name"),
                format!("name `{name}` is already used by {prev}"),
            ));
        }
    };
    for (i, t) in v.templates.iter().enumerate() {
        let p = format!("vms.templates[{i}]");
        claim(errs, &p, &t.name, t.vmid);
        if !c.images.contains_key(&t.image) {
            errs.push(
                l.error_at(
                    &format!("{p}.image"),
                    format!("no image `{}` in `images`", t.image),
                )
                .with_help(format!("known images: {}", known(c.images.keys()))),
            );
        }
    }
    let settings_paths = std::iter::once(("vms.defaults".to_string(), &v.defaults)).chain(
        v.presets
            .iter()
            .map(|(n, s)| (format!("vms.presets.{n}"), s)),
    );
    for (p, s) in settings_paths {
        check_settings(l, errs, &p, s);
    }
    for (i, vm) in v.machines.iter().enumerate() {
        let p = format!("vms.machines[{i}]");
        let Some(vmid) = v.vmid_of(i) else {
            errs.push(
                l.error_at(&p, "no VMID")
                    .with_help("set `vmid` here, or `vms.vmid_base` to number VMs by position"),
            );
            continue;
        };
        claim(errs, &p, &vm.name, vmid);
        if let Some(preset) = &vm.preset
            && !v.presets.contains_key(preset)
        {
            errs.push(
                l.error_at(
                    &format!("{p}.preset"),
                    format!("no preset `{preset}` in vms.presets"),
                )
                .with_help(format!("known presets: {}", known(v.presets.keys()))),
            );
        }
        check_settings(l, errs, &p, &vm.settings());
        let s = v.effective(i).unwrap_or_default();
        if super::vm_adopt::as_is(vm) && vm.preset.is_some() {
            errs.push(
                l.error_at(&format!("{p}.preset"), "an adopted VM without `image` or `clone` is declared as it is and takes no preset")
                    .with_help("write its settings on the VM itself (as `homelab-cli import` does)"),
            );
        }
        if let Some(r) = &vm.restore
            && r != "latest"
            && !r.contains(":backup/")
        {
            errs.push(
                l.error_at(
                    &format!("{p}.restore"),
                    format!("`{r}` is neither `latest` nor a backup volume"),
                )
                .with_help("e.g. `latest`, or `backups:backup/vzdump-qemu-201-2026_01_02-03_04_05.vma.zst` (`homelab-cli backup list` shows them)"),
            );
        }
        match (&vm.clone, &s.image) {
            _ if super::vm_adopt::as_is(vm) => {}
            (Some(t), _) => {
                if !v.templates.iter().any(|x| &x.name == t) {
                    let names = v.templates.iter().map(|x| &x.name);
                    errs.push(
                        l.error_at(
                            &format!("{p}.clone"),
                            format!("no template `{t}` in vms.templates"),
                        )
                        .with_help(format!("known templates: {}", known(names))),
                    );
                }
            }
            (None, Some(img)) => {
                if !c.images.contains_key(img) {
                    let at = setting_path(
                        &p,
                        vm.image.is_some(),
                        "vms",
                        vm.preset
                            .as_ref()
                            .filter(|n| v.presets.get(*n).is_some_and(|s| s.image.is_some())),
                        "image",
                    );
                    errs.push(
                        l.error_at(&at, format!("no image `{img}` in `images`"))
                            .with_help(format!("known images: {}", known(c.images.keys()))),
                    );
                }
            }
            (None, None) => errs.push(
                l.error_at(&p, "the VM has neither an `image` nor a `clone` template")
                    .with_help("set `image` (here, in its preset or in vms.defaults) or `clone`"),
            ),
        }
        if vm.full_clone.is_some() && vm.clone.is_none() {
            errs.push(l.error_at(&format!("{p}.full_clone"), "`full_clone` needs `clone`"));
        }
        if vm.pci.len() > 16 {
            errs.push(l.error_at(&format!("{p}.pci"), "at most 16 PCI devices (hostpci0..15)"));
        }
        let mut mappings = BTreeSet::new();
        for (j, d) in vm.pci.iter().enumerate() {
            let dp = format!("{p}.pci[{j}]");
            if !is_mapping_id(&d.mapping) {
                errs.push(
                    l.error_at(&format!("{dp}.mapping"), format!("`{}` is not a mapping ID", d.mapping))
                        .with_help("a letter, then letters, digits, `-` and `_` (Proxmox's pve-configid), e.g. `rtx3090`"),
                );
            }
            if !mappings.insert(&d.mapping) {
                errs.push(l.error_at(
                    &format!("{dp}.mapping"),
                    "this mapping is already passed to this VM",
                ));
            }
            if let Some(dev) = &d.device
                && !is_pci_address(dev)
            {
                errs.push(
                    l.error_at(&format!("{dp}.device"), format!("`{dev}` is not a PCI address"))
                        .with_help("e.g. `0000:01:00.0`, or `0000:01:00` for all functions (`lspci -D` on the node)"),
                );
            }
        }
        super::check_tags(l, errs, &p, &vm.tags);
    }
}

fn check_settings(l: &Loaded, errs: &mut Vec<ConfigError>, p: &str, s: &VmSettings) {
    if s.cores == Some(0) {
        errs.push(l.error_at(&format!("{p}.cores"), "a VM needs at least one core"));
    }
    if let Some(m) = s.memory
        && m.mib() < 64
    {
        errs.push(l.error_at(&format!("{p}.memory"), format!("{m} is below 64MiB")));
    }
    if let Some(d) = s.disk
        && d.mib() < 1024
    {
        errs.push(
            l.error_at(&format!("{p}.disk"), format!("{d} is below 1GiB"))
                .with_help("Proxmox sizes VM disks in whole GiB: write e.g. `20GiB`"),
        );
    }
    if let Some(u) = &s.user
        && (u == "root" || !is_label(u, 32) || u.starts_with(|c: char| c.is_ascii_digit()))
    {
        errs.push(
            l.error_at(
                &format!("{p}.user"),
                format!("`{u}` cannot be the automation user"),
            )
            .with_help("a lowercase login name other than root, e.g. `homelab`"),
        );
    }
    if let Some(v) = s.vlan
        && !(1..=4094).contains(&v)
    {
        errs.push(l.error_at(&format!("{p}.vlan"), format!("VLAN {v} is not in 1..=4094")));
    }
    for (j, k) in s.ssh_keys.iter().flatten().enumerate() {
        let k = k.trim();
        let ed25519 = k.starts_with("ssh-ed25519 ") || k.starts_with("sk-ssh-ed25519@openssh.com ");
        if !ed25519 || k.contains('\n') {
            errs.push(
                l.error_at(&format!("{p}.ssh_keys[{j}]"), "not an ed25519 SSH public key line")
                    .with_help("VMs accept ed25519 keys only: one `ssh-ed25519 AAAA... comment` line (from `~/.ssh/id_ed25519.pub`)"),
            );
        }
    }
    for (j, pkg) in s.packages.iter().flatten().enumerate() {
        let ok = !pkg.is_empty()
            && pkg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-._:=~".contains(&b));
        if !ok {
            errs.push(l.error_at(
                &format!("{p}.packages[{j}]"),
                format!("`{pkg}` is not a package name"),
            ));
        }
    }
}

/// Every string of the VM section that may hold `${secret:...}` references, with its path.
pub(crate) fn secret_capable(c: &Config) -> Vec<(String, String)> {
    let mut v = Vec::new();
    let Some(x) = &c.vms else { return v };
    let mut push = |p: String, s: &VmSettings| {
        if let Some(g) = &s.gateway {
            v.push((format!("{p}.gateway"), g.clone()));
        }
        for (j, n) in s.nameservers.iter().flatten().enumerate() {
            v.push((format!("{p}.nameservers[{j}]"), n.clone()));
        }
    };
    push("vms.defaults".into(), &x.defaults);
    for (n, s) in &x.presets {
        push(format!("vms.presets.{n}"), s);
    }
    for (i, vm) in x.machines.iter().enumerate() {
        push(format!("vms.machines[{i}]"), &vm.settings());
    }
    for (i, vm) in x.machines.iter().enumerate() {
        if let Some(ip) = &vm.ip {
            v.push((format!("vms.machines[{i}].ip"), ip.clone()));
        }
    }
    v
}

/// The VM parts shared by templates and VMs.
struct Base<'a> {
    lab: &'a str,
    storage: String,
    bridge: String,
    vlan: Option<u16>,
}

fn base_props(
    b: &Base<'_>,
    name: &str,
    note: String,
    boot: &BootSource,
) -> BTreeMap<String, String> {
    let mut props = BTreeMap::new();
    props.insert("name".to_string(), name.to_string());
    props.insert(
        "description".into(),
        format!(
            "{note}Managed by homelab-cli (homelab {}): changes made here are reverted by `homelab-cli up`.\n{BOOT_MARKER}{}\n{}",
            b.lab,
            boot.describe(),
            owner_marker(b.lab)
        ),
    );
    props.insert("ostype".into(), "l26".into());
    props.insert("machine".into(), "q35".into());
    props.insert("cpu".into(), "host".into());
    props.insert("scsihw".into(), "virtio-scsi-single".into());
    let mut net = format!("virtio,bridge={}", b.bridge);
    if let Some(t) = b.vlan {
        net.push_str(&format!(",tag={t}"));
    }
    props.insert("net0".into(), net);
    props.insert("boot".into(), "order=scsi0".into());
    // Cloud images log to the serial console; Debian 12 panics on first boot without one.
    props.insert("serial0".into(), "socket".into());
    props.insert("vga".into(), "serial0".into());
    props.insert("agent".into(), "enabled=1".into());
    props
}

fn boot_disks(
    storage: &str,
    size: Option<Size>,
    import: Option<String>,
) -> BTreeMap<String, DiskSpec> {
    let mut disks = BTreeMap::new();
    disks.insert(
        "scsi0".to_string(),
        DiskSpec {
            storage: storage.to_string(),
            size,
            cloudinit: false,
            options: [("discard", "on"), ("ssd", "1"), ("iothread", "1")]
                .into_iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            import_from: import,
        },
    );
    disks.insert(
        "ide2".to_string(),
        DiskSpec {
            storage: storage.to_string(),
            size: None,
            cloudinit: true,
            options: BTreeMap::new(),
            import_from: None,
        },
    );
    disks
}

/// Compile images, templates and VMs. `taken` holds static addresses already given out.
pub(crate) fn compile(
    l: &Loaded,
    secrets: &SecretValues,
    errs: &mut Vec<ConfigError>,
    taken: &mut BTreeMap<IpAddr, String>,
) -> Compiled {
    let c = &l.config;
    let mut out = Compiled::default();
    let Some(v) = &c.vms else { return out };
    // Image name → (volid per node is storage-relative; downloads are per node).
    let image_volid = |name: &str, node: &str, out: &mut Compiled| -> Option<String> {
        let img = c.images.get(name)?;
        if let Some(vol) = &img.volume {
            out.existing_images
                .insert((node.to_string(), vol.clone(), name.to_string()));
            return Some(vol.clone());
        }
        let filename = image_filename(img)?;
        let checksum = img
            .checksum
            .as_ref()
            .and_then(|cs| cs.split_once(':'))
            .map(|(a, h)| (a.to_string(), h.to_ascii_lowercase()));
        let d = DesiredImage {
            node: node.to_string(),
            storage: c.proxmox.image_storage.clone(),
            filename,
            url: img.url.clone().unwrap_or_default(),
            checksum,
        };
        let volid = d.volid();
        out.images.insert(d);
        Some(volid)
    };
    let mut template_of: BTreeMap<&str, (u32, String, String)> = BTreeMap::new();
    for t in &v.templates {
        let node = t.node.clone().unwrap_or_else(|| c.proxmox.node.clone());
        let storage = t
            .storage
            .clone()
            .unwrap_or_else(|| c.proxmox.storage.clone());
        let Some(volid) = image_volid(&t.image, &node, &mut out) else {
            continue; // reported by validation
        };
        let b = Base {
            lab: &c.name,
            storage: storage.clone(),
            bridge: c.proxmox.bridge.clone(),
            vlan: None,
        };
        let boot = BootSource::Image {
            volid: volid.clone(),
        };
        let mut props = base_props(
            &b,
            &t.name,
            format!("Gold template from image {}.\n", t.image),
            &boot,
        );
        props.insert("cores".into(), "1".into());
        props.insert("memory".into(), "1024".into());
        // The template keeps the image's own size; clones are grown.
        let disks = boot_disks(&b.storage, None, Some(volid.clone()));
        let spec_hash = spec_hash(&node, &props, &disks);
        template_of.insert(&t.name, (t.vmid, node.clone(), storage));
        out.guests.push(DesiredGuest {
            vmid: t.vmid,
            name: t.name.clone(),
            node,
            kind: GuestKind::Qemu,
            props,
            disks,
            sensitive: BTreeSet::new(),
            spec_hash,
            talos: None,
            iso: None,
            template: None,
            create_only: BTreeMap::new(),
            extra_tags: vec!["template".into()],
            boot: Some(boot),
            is_template: true,
            snippet: None,
        });
    }
    for (i, vm) in v.machines.iter().enumerate() {
        let p = format!("vms.machines[{i}]");
        let Some(vmid) = v.vmid_of(i) else { continue };
        let s = v.effective(i).unwrap_or_default();
        let preset_has = |f: fn(&VmSettings) -> bool| {
            vm.preset
                .as_ref()
                .filter(|n| v.presets.get(*n).is_some_and(f))
        };
        let node = vm.node.clone().unwrap_or_else(|| c.proxmox.node.clone());
        if vm.adopt {
            out.adopt.insert(vmid);
        }
        if let Some(r) = &vm.restore {
            out.restore.insert(vmid, r.clone());
        }
        if let Some(pool) = &vm.pool {
            super::vm_adopt::check_pool(l, &format!("{p}.pool"), pool, errs);
            out.pools.insert(vmid, pool.clone());
        }
        if super::vm_adopt::as_is(vm) {
            let g = super::vm_adopt::compile(l, secrets, errs, &p, vm, vmid, node, taken);
            out.guests.push(g);
            continue;
        }
        let (boot, storage) = match &vm.clone {
            Some(t) => {
                let Some((tvmid, tnode, tstorage)) = template_of.get(t.as_str()).cloned() else {
                    continue;
                };
                if tnode != node {
                    errs.push(l.error_at(
                        &format!("{p}.clone"),
                        format!("template `{t}` is on node {tnode}, this VM on {node}; clones are made on the template's node"),
                    ));
                    continue;
                }
                let full = vm.full_clone.unwrap_or(false);
                // A linked clone shares the template's storage.
                let storage = if full {
                    s.storage
                        .clone()
                        .unwrap_or_else(|| c.proxmox.storage.clone())
                } else {
                    tstorage
                };
                (
                    BootSource::Clone {
                        template: tvmid,
                        full,
                    },
                    storage,
                )
            }
            None => {
                let Some(volid) = s
                    .image
                    .as_deref()
                    .and_then(|img| image_volid(img, &node, &mut out))
                else {
                    continue;
                };
                (
                    BootSource::Image { volid },
                    s.storage
                        .clone()
                        .unwrap_or_else(|| c.proxmox.storage.clone()),
                )
            }
        };
        let b = Base {
            lab: &c.name,
            storage,
            bridge: s.bridge.clone().unwrap_or_else(|| c.proxmox.bridge.clone()),
            vlan: s.vlan,
        };
        let note = vm
            .description
            .as_deref()
            .map(|d| format!("{}\n", d.trim_end()))
            .unwrap_or_default();
        let mut props = base_props(&b, &vm.name, note, &boot);
        let mut sensitive = BTreeSet::new();
        props.insert("cores".into(), s.cores.unwrap_or(1).to_string());
        props.insert("sockets".into(), "1".into());
        props.insert(
            "memory".into(),
            s.memory.unwrap_or(Size::from_gib(1)).mib().to_string(),
        );
        props.insert(
            "onboot".into(),
            u8::from(s.onboot.unwrap_or(true)).to_string(),
        );
        if let Some(st) = vm.startup {
            props.insert("startup".into(), st.to_prop());
        }
        props.insert(
            "ciuser".into(),
            s.user.clone().unwrap_or_else(|| "homelab".into()),
        );
        if let Some(keys) = &s.ssh_keys
            && !keys.is_empty()
        {
            let text: String = keys.iter().map(|k| format!("{}\n", k.trim())).collect();
            props.insert("sshkeys".into(), url_encode(&text));
        }
        // Address.
        let mut ipconfig = "ip=dhcp".to_string();
        if let Some(raw) = &vm.ip
            && let Some((ip, sens)) = subst(l, secrets, &format!("{p}.ip"), raw, errs)
        {
            let ip = ip.trim().to_string();
            if ip != "dhcp" {
                let parsed = ip.split_once('/').and_then(|(a, pl)| {
                    Some((
                        a.parse::<Ipv4Addr>().ok()?,
                        pl.parse::<u8>().ok().filter(|x| *x <= 32)?,
                    ))
                });
                match parsed {
                    None => {
                        let shown = if sens {
                            "the secret value".into()
                        } else {
                            format!("`{ip}`")
                        };
                        errs.push(
                            l.error_at(
                                &format!("{p}.ip"),
                                format!("{shown} is not an IPv4 address with prefix"),
                            )
                            .with_help("e.g. `10.0.20.11/24`, or `dhcp`"),
                        );
                    }
                    Some((addr, _)) => {
                        if let Some(prev) = taken.insert(IpAddr::V4(addr), vm.name.clone()) {
                            errs.push(l.error_at(
                                &format!("{p}.ip"),
                                format!("this address is already given to {prev}"),
                            ));
                        }
                    }
                }
                ipconfig = format!("ip={ip}");
                if sens {
                    sensitive.insert("ipconfig0".to_string());
                }
                if let Some(g) = &s.gateway {
                    let gp = setting_path(
                        &p,
                        vm.gateway.is_some(),
                        "vms",
                        preset_has(|s| s.gateway.is_some()),
                        "gateway",
                    );
                    if let Some((gw, gs)) = subst(l, secrets, &gp, g, errs) {
                        match gw.trim().parse::<IpAddr>() {
                            Ok(gw) => ipconfig.push_str(&format!(",gw={gw}")),
                            Err(_) => errs.push(l.error_at(&gp, "not an IP address")),
                        }
                        if gs && !sensitive.contains("ipconfig0") {
                            sensitive.insert("ipconfig0.gw".to_string());
                        }
                    }
                }
            }
        }
        props.insert("ipconfig0".into(), ipconfig);
        if let Some(ns) = &s.nameservers {
            let np = setting_path(
                &p,
                vm.nameservers.is_some(),
                "vms",
                preset_has(|s| s.nameservers.is_some()),
                "nameservers",
            );
            let mut ips = Vec::new();
            for (j, n) in ns.iter().enumerate() {
                if let Some((t, sens)) = subst(l, secrets, &format!("{np}[{j}]"), n, errs) {
                    match t.trim().parse::<IpAddr>() {
                        Ok(ip) => ips.push(ip.to_string()),
                        Err(_) => errs.push(l.error_at(&format!("{np}[{j}]"), "not an IP address")),
                    }
                    if sens {
                        sensitive.insert("nameserver".into());
                    }
                }
            }
            if !ips.is_empty() {
                props.insert("nameserver".into(), ips.join(" "));
            }
        }
        if let Some(sd) = &s.searchdomain {
            props.insert("searchdomain".into(), sd.clone());
        }
        // PCI passthrough through cluster mappings.
        for (j, d) in vm.pci.iter().enumerate() {
            if let Some(dev) = &d.device {
                out.pci_mappings.insert(DesiredPciMapping {
                    id: d.mapping.clone(),
                    node: node.clone(),
                    path: full_pci_address(dev),
                    used_by: vm.name.clone(),
                });
            }
            props.insert(format!("hostpci{j}"), hostpci_value(&d.mapping, d));
        }
        // Vendor data: packages and extra cloud-config.
        let mut snippet = None;
        let handoff = c.handoff.as_ref().filter(|_| s.handoff == Some(true));
        if s.packages.as_ref().is_some_and(|p| !p.is_empty())
            || s.user_data.is_some()
            || handoff.is_some()
        {
            let mut s = s.clone();
            if let Some(h) = handoff {
                // The environment and token files, added to the user's `write_files`.
                let files = super::handoff::write_files(&h.url, &h.key_id, &vm.name);
                let ud = s.user_data.get_or_insert_with(Default::default);
                match ud.get_mut("write_files") {
                    Some(serde_json::Value::Array(a)) => {
                        a.extend(files.as_array().cloned().unwrap_or_default())
                    }
                    _ => {
                        ud.insert("write_files".into(), files);
                    }
                }
            }
            let content = vendor_data(&c.name, &vm.name, &s);
            let sn = DesiredSnippet {
                node: node.clone(),
                storage: c.proxmox.snippet_storage.clone(),
                dir: c.proxmox.snippet_dir.clone(),
                filename: snippet_name(&c.name, &vm.name, &content),
                content,
            };
            props.insert("cicustom".into(), format!("vendor={}", sn.volid()));
            snippet = Some(sn.volid());
            out.snippets.insert(sn);
        }
        super::vm_adopt::apply_options(l, &p, vm, secrets, &mut props, &mut sensitive, errs);
        let disks = boot_disks(
            &b.storage,
            Some(s.disk.unwrap_or(Size::from_gib(10))),
            match &boot {
                BootSource::Image { volid } => Some(volid.clone()),
                BootSource::Clone { .. } => None,
            },
        );
        let mut extra_tags: Vec<String> = vm.tags.iter().map(|t| t.to_ascii_lowercase()).collect();
        extra_tags.sort();
        extra_tags.dedup();
        let mut hashed = props.clone();
        hashed.insert("tags".into(), extra_tags.join(";"));
        let spec_hash = spec_hash(&node, &hashed, &disks);
        out.guests.push(DesiredGuest {
            vmid,
            name: vm.name.clone(),
            node,
            kind: GuestKind::Qemu,
            props,
            disks,
            sensitive,
            spec_hash,
            talos: None,
            iso: None,
            template: None,
            create_only: BTreeMap::new(),
            extra_tags,
            boot: Some(boot),
            is_template: false,
            snippet,
        });
    }
    out
}

/// `mapping=<id>,pcie=1,x-vga=1,rombar=0` (defaults left out, as Proxmox writes them).
pub(crate) fn hostpci_value(mapping: &str, d: &PciPassthrough) -> String {
    let mut v = format!("mapping={mapping}");
    if d.pcie {
        v.push_str(",pcie=1");
    }
    if !d.rombar {
        v.push_str(",rombar=0");
    }
    if d.primary_gpu {
        v.push_str(",x-vga=1");
    }
    v
}

/// The words every vendor-data snippet of homelab `lab` carries in its comment line (how
/// `up` recognises its own snippets before deleting one no VM uses any more; the same text
/// as [`vendor_data`] writes).
pub fn snippet_marker(lab: &str) -> String {
    format!("(homelab {lab}), written by homelab-cli.")
}

/// The file name of a VM's vendor-data snippet: `<lab>.<vm>.vendor-<hash>.yaml` (dots
/// cannot occur in either name, so the homelab a file belongs to is unambiguous).
pub fn snippet_name(lab: &str, vm: &str, content: &str) -> String {
    let hash = hex::encode(&Sha256::digest(content.as_bytes())[..4]);
    format!("{lab}.{vm}.vendor-{hash}.yaml")
}

/// Whether a snippet file name is one [`snippet_name`] makes for homelab `lab`.
pub fn is_snippet_name(lab: &str, filename: &str) -> bool {
    let Some(rest) = filename.strip_prefix(&format!("{lab}.")) else {
        return false;
    };
    let Some((vm, tail)) = rest.split_once('.') else {
        return false;
    };
    let hash = tail
        .strip_prefix("vendor-")
        .and_then(|t| t.strip_suffix(".yaml"));
    is_label(vm, 63)
        && hash.is_some_and(|h| h.len() == 8 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The vendor-data snippet: packages (with the guest agent enabled when it is one of
/// them), no password logins, then the user's own cloud-config on top.
pub fn vendor_data(lab: &str, vm: &str, s: &VmSettings) -> String {
    let mut doc = serde_json::Map::new();
    let packages: Vec<String> = s.packages.clone().unwrap_or_default();
    if !packages.is_empty() {
        doc.insert("package_update".into(), true.into());
        doc.insert(
            "packages".into(),
            packages
                .iter()
                .cloned()
                .map(serde_json::Value::from)
                .collect(),
        );
    }
    if packages.iter().any(|p| p == "qemu-guest-agent") {
        doc.insert(
            "runcmd".into(),
            serde_json::json!([["systemctl", "enable", "--now", "qemu-guest-agent"]]),
        );
    }
    doc.insert("ssh_pwauth".into(), false.into());
    for (k, val) in s.user_data.clone().unwrap_or_default() {
        match (doc.get_mut(&k), val) {
            // Lists add to ours (runcmd, packages, write_files ...).
            (Some(serde_json::Value::Array(ours)), serde_json::Value::Array(theirs)) => {
                ours.extend(theirs)
            }
            (_, val) => {
                doc.insert(k, val);
            }
        }
    }
    let body = serde_yaml_ng::to_string(&serde_json::Value::Object(doc)).unwrap_or_default();
    format!(
        "#cloud-config\n# Vendor data of VM {vm} (homelab {lab}), written by homelab-cli.\n{body}"
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ssh_keys_are_url_encoded_like_the_gui() {
        assert_eq!(
            url_encode("ssh-ed25519 AAAA+/= me@x\n"),
            "ssh-ed25519%20AAAA%2B%2F%3D%20me%40x%0A"
        );
        assert_eq!(
            url_decode("ssh-ed25519%20AAAA%2B%2F%3D%20me%40x%0A"),
            "ssh-ed25519 AAAA+/= me@x\n"
        );
        assert_eq!(url_decode("100%"), "100%");
    }

    #[test]
    fn pci_addresses_and_mapping_ids() {
        assert!(is_pci_address("0000:01:00.0"));
        assert!(is_pci_address("01:00"));
        assert!(is_pci_address("0000:0a:1f.7"));
        assert!(!is_pci_address("0000:01:00.8"));
        assert!(!is_pci_address("1:00.0"));
        assert!(!is_pci_address("gpu"));
        assert!(is_mapping_id("rtx3090"));
        assert!(is_mapping_id("gpu_main-a"));
        // pve-common JSONSchema.pm $CONFIGID_RE = qr/[a-z][a-z0-9_-]+/i
        assert!(is_mapping_id("gpu-01-00"));
        assert!(is_mapping_id("GPU0"));
        assert!(!is_mapping_id("g"));
        assert!(!is_mapping_id("gpu.0"));
        assert!(!is_mapping_id("3090"));
        assert_eq!(full_pci_address("01:00.0"), "0000:01:00.0");
        assert_eq!(full_pci_address("0000:0A:00"), "0000:0a:00");
    }

    #[test]
    fn hostpci_leaves_defaults_out() {
        let d = PciPassthrough {
            device: Some("0000:01:00".into()),
            mapping: "rtx3090".into(),
            pcie: true,
            primary_gpu: true,
            rombar: true,
        };
        assert_eq!(
            hostpci_value("home-01-00", &d),
            "mapping=home-01-00,pcie=1,x-vga=1"
        );
    }

    #[test]
    fn vendor_data_merges_user_lists() {
        let s = VmSettings {
            packages: Some(vec!["qemu-guest-agent".into(), "htop".into()]),
            user_data: Some(
                serde_json::json!({"runcmd": [["touch", "/x"]], "timezone": "Europe/Berlin"})
                    .as_object()
                    .unwrap()
                    .clone(),
            ),
            ..VmSettings::default()
        };
        let text = vendor_data("lab", "web-1", &s);
        assert!(text.starts_with("#cloud-config\n"));
        assert!(
            text.lines()
                .nth(1)
                .unwrap()
                .ends_with(&snippet_marker("lab"))
        );
        let name = snippet_name("lab", "web-1", &text);
        assert!(name.starts_with("lab.web-1.vendor-"), "{name}");
        assert!(is_snippet_name("lab", &name));
        assert!(!is_snippet_name("lab-x", &name));
        assert!(!is_snippet_name("lab", "lab-x.web-1.vendor-0a1b2c3d.yaml"));
        assert!(!is_snippet_name("lab", "lab.web-1.vendor-0a1b.yaml"));
        let doc: serde_json::Value = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(
            doc["packages"],
            serde_json::json!(["qemu-guest-agent", "htop"])
        );
        assert_eq!(doc["runcmd"].as_array().unwrap().len(), 2);
        assert_eq!(doc["timezone"], "Europe/Berlin");
        assert_eq!(doc["ssh_pwauth"], false);
    }
}
