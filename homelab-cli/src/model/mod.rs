//! The homelab.yaml model: the document people write ([`config`]), where its values sit in
//! the file ([`spans`]), secret references ([`secrets`]) and the resolved desired state the
//! planner works on ([`desired`]).
//!
//! Loading is two-phase so that `check` and `schema` work without keys: [`load`] parses and
//! validates the structure; [`desired::resolve`] substitutes secrets and derives Proxmox
//! guest configurations.

pub mod backups;
pub mod calendar;
pub mod config;
pub mod desired;
pub mod etcd_backup;
pub mod handoff;
pub mod import;
pub mod import_vm;
pub mod layers;
pub mod limits;
pub mod metal;
pub mod patches;
pub mod pools;
pub mod rolling;
pub mod sdn;
pub mod secrets;
pub mod spans;
pub mod storages;
pub mod vm_adopt;
pub mod vms;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use miette::{Diagnostic, NamedSource, SourceSpan};

pub use config::Config;
pub use layers::{load_env, parse_env};
use spans::SpanMap;

/// A parsed homelab.yaml with its source kept for error reporting.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The file as given on the command line.
    pub path: PathBuf,
    /// The directory relative paths in the file are resolved against.
    pub dir: PathBuf,
    /// The file's text.
    pub source: Arc<String>,
    /// The parsed document.
    pub config: Config,
    /// Value positions.
    pub spans: SpanMap,
    /// The environment file merged into the document (`--env`), if any. `path`, `source`
    /// and `spans` above stay those of the base file.
    pub overlay: Option<layers::Overlay>,
}

/// An error located in a YAML file: rendered by miette with the line and a caret.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{message}")]
#[diagnostic(code(homelab::config))]
pub struct ConfigError {
    /// What is wrong.
    pub message: String,
    #[source_code]
    src: NamedSource<Arc<String>>,
    #[label("{label}")]
    span: Option<SourceSpan>,
    label: String,
    #[help]
    help: Option<String>,
}

impl ConfigError {
    /// An error at `span` of the file `name` with text `source`.
    pub fn new(
        name: &Path,
        source: Arc<String>,
        span: Option<spans::Span>,
        message: impl Into<String>,
        label: impl Into<String>,
    ) -> Self {
        ConfigError {
            message: message.into(),
            src: NamedSource::new(name.display().to_string(), source).with_language("yaml"),
            span: span.map(Into::into),
            label: label.into(),
            help: None,
        }
    }

    /// Add a hint on how to fix it.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// 1-based line and column of the error, if it has a position.
    pub fn line_col(&self) -> Option<(usize, usize)> {
        let span = self.span?;
        let text = self.src.inner();
        let before = text.get(..span.offset())?;
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Some((line, col))
    }
}

/// Several configuration errors at once, so that one run shows them all.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{} found {} problem(s)", .file.display(), .errors.len())]
pub struct ConfigErrors {
    file: PathBuf,
    #[related]
    errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// Collect errors for `file`.
    pub fn new(file: PathBuf, mut errors: Vec<ConfigError>) -> Self {
        // A value many guests inherit (`lxc.defaults.nameservers`) is checked once per guest:
        // each fault is reported once, at its own line.
        let mut seen = std::collections::HashSet::new();
        errors.retain(|e| {
            seen.insert((
                e.src.name().to_string(),
                e.span.map(|s| (s.offset(), s.len())),
                e.message.clone(),
            ))
        });
        ConfigErrors { file, errors }
    }
    /// The individual errors.
    pub fn errors(&self) -> &[ConfigError] {
        &self.errors
    }
}

impl Loaded {
    /// An error at the value of `path` (dotted, e.g. `talos.nodes[1].vmid`).
    /// With an environment overlay the error points into the file that wrote the value.
    pub fn error_at(&self, path: &str, message: impl Into<String>) -> ConfigError {
        let message = message.into();
        let (file, source, span) = self.locate(path, false);
        ConfigError::new(file, source, span, message, "here")
    }

    /// Resolve a path written in the file relative to the file's directory.
    pub fn relative(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }
}

/// Read and parse a homelab.yaml file, checking its structure and the rules that need no
/// secrets (names, VMID ranges, duplicates, sizes).
pub fn load(path: &Path) -> miette::Result<Loaded> {
    let text = limits::read(path).map_err(|e| match e {
        limits::ReadError::Io(e) => miette::miette!(
            help = "create one with `homelab-cli init`, or pass -c/--config PATH",
            "cannot read {}: {e}",
            path.display()
        ),
        limits::ReadError::Refused(e) => ConfigErrors::new(path.to_path_buf(), vec![*e]).into(),
    })?;
    parse(path, text).map_err(Into::into)
}

/// Parse homelab.yaml text (`path` is used for messages and relative paths).
pub fn parse(path: &Path, text: String) -> Result<Loaded, ConfigErrors> {
    // Hostile input is refused before a parser spends quadratic time on it.
    limits::check(path, &text).map_err(|e| ConfigErrors::new(path.to_path_buf(), vec![*e]))?;
    let source = Arc::new(text);
    let config: Config = match serde_yaml_ng::from_str(&source) {
        Ok(c) => c,
        Err(e) => {
            let err = serde_error(path, &source, &e);
            return Err(ConfigErrors::new(path.to_path_buf(), vec![err]));
        }
    };
    finish(Loaded {
        path: path.to_path_buf(),
        dir: base_dir(path),
        spans: SpanMap::parse(&source),
        source,
        config,
        overlay: None,
    })
}

/// Validate a parsed document.
fn finish(loaded: Loaded) -> Result<Loaded, ConfigErrors> {
    let errors = validate(&loaded);
    if errors.is_empty() {
        Ok(loaded)
    } else {
        Err(ConfigErrors::new(loaded.path.clone(), errors))
    }
}

/// The directory relative paths in `path` are resolved against.
fn base_dir(path: &Path) -> PathBuf {
    path.parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                p.to_path_buf()
            }
        })
        .unwrap_or_else(|| PathBuf::from("."))
}

/// A YAML syntax or shape error located in the text it came from.
fn serde_error(path: &Path, source: &Arc<String>, e: &serde_yaml_ng::Error) -> ConfigError {
    let span = e.location().map(|loc| {
        let offset = offset_of(source, loc.line(), loc.column());
        spans::Span {
            offset,
            len: token_len(&source[offset..]),
        }
    });
    let message = clean_serde_message(&e.to_string());
    ConfigError::new(path, source.clone(), span, message.clone(), "here")
        .with_help(serde_help(&message))
}

/// serde_yaml_ng appends " at line L column C"; the caret already says that.
fn clean_serde_message(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

fn serde_help(msg: &str) -> String {
    if msg.contains("unknown field") {
        "check the spelling; `homelab-cli schema` prints every accepted key".into()
    } else if msg.contains("missing field") {
        "add the field; `homelab-cli schema` documents each one".into()
    } else {
        "see `homelab-cli schema` for the expected shape".into()
    }
}

/// Byte offset of a 1-based line and column (columns count characters).
fn offset_of(text: &str, line: usize, column: usize) -> usize {
    let mut offset = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            let col = column.saturating_sub(1);
            return offset
                + l.char_indices()
                    .nth(col)
                    .map_or(l.trim_end_matches('\n').len(), |(b, _)| b);
        }
        offset += l.len();
    }
    text.len()
}

fn token_len(rest: &str) -> usize {
    rest.find(['\n', ':', ',', ' '])
        .unwrap_or(rest.len())
        .max(1)
        .min(rest.len().max(1))
}

/// Rules that need no secrets.
/// The name and VMID checks every guest at `p` gets; `what` names the name in errors.
fn check_guest_id(
    l: &Loaded,
    errs: &mut Vec<ConfigError>,
    p: &str,
    what: &str,
    name: &str,
    vmid: u32,
) {
    if !is_label(name, 63) {
        errs.push(
            l.error_at(&format!("{p}.name"), format!("invalid {what} `{name}`"))
                .with_help("a DNS label: lowercase letters, digits and `-`"),
        );
    }
    if !(100..=999_999_999).contains(&vmid) {
        errs.push(l.error_at(
            &format!("{p}.vmid"),
            format!("VMID {vmid} is outside 100..=999999999"),
        ));
    }
}

fn validate(l: &Loaded) -> Vec<ConfigError> {
    let mut errs = Vec::new();
    let c = &l.config;
    if !is_label(&c.name, 40) {
        errs.push(
            l.error_at("name", format!("invalid homelab name `{}`", c.name))
                .with_help("use lowercase letters, digits and `-` (at most 40), e.g. `home`"),
        );
    }
    if !c.proxmox.token_secret.contains("${secret:") {
        errs.push(
            l.error_at(
                "proxmox.token_secret",
                "the API token secret is written in plaintext",
            )
            .with_help("move it into the SOPS file and write `${secret:proxmox.token_secret}`"),
        );
    }
    if let Some(ssh) = &c.proxmox.ssh
        && !ssh.private_key.contains("${secret:")
    {
        errs.push(
            l.error_at(
                "proxmox.ssh.private_key",
                "the SSH private key is written in plaintext",
            )
            .with_help("move it into the SOPS file and write `${secret:proxmox.ssh_key}`"),
        );
    }
    if let Some(pw) = &c.proxmox.root_password
        && !pw.contains("${secret:")
    {
        errs.push(
            l.error_at(
                "proxmox.root_password",
                "the root password is written in plaintext",
            )
            .with_help("move it into the SOPS file and write `${secret:proxmox.root_password}`"),
        );
    }
    for (path, text) in secret_capable(c) {
        if let Err(e) = secrets::parse_refs(&text) {
            errs.push(l.error_at(&path, e));
        }
    }
    if let Some(t) = &c.talos {
        if t.nodes.is_empty() {
            errs.push(l.error_at("talos.nodes", "a Talos cluster needs at least one node"));
        }
        if !t.nodes.iter().any(|n| n.role == config::Role::Controlplane) && !t.nodes.is_empty() {
            errs.push(
                l.error_at("talos.nodes", "the cluster has no control-plane node")
                    .with_help("give at least one node `role: controlplane`"),
            );
        }
        if !t.version.starts_with('v') || t.version.len() < 2 {
            errs.push(
                l.error_at(
                    "talos.version",
                    format!("invalid Talos version `{}`", t.version),
                )
                .with_help("write it as the release tag, e.g. `v1.12.0`"),
            );
        }
        for (i, ext) in t.extensions.iter().enumerate() {
            if !ext.contains('/') {
                errs.push(
                    l.error_at(
                        &format!("talos.extensions[{i}]"),
                        format!("extension `{ext}` is not a `vendor/name` reference"),
                    )
                    .with_help("e.g. `siderolabs/qemu-guest-agent`"),
                );
            }
        }
        if !is_label(&t.cluster.name, 63) {
            errs.push(l.error_at(
                "talos.cluster.name",
                format!("invalid cluster name `{}`", t.cluster.name),
            ));
        }
        if t.network.prefix == 0 || t.network.prefix > 32 {
            errs.push(l.error_at(
                "talos.network.prefix",
                format!("prefix length {} is not in 1..=32", t.network.prefix),
            ));
        }
        let mut names = std::collections::HashMap::new();
        let mut vmids = std::collections::HashMap::new();
        for (i, n) in t.nodes.iter().enumerate() {
            let p = format!("talos.nodes[{i}]");
            check_guest_id(l, &mut errs, &p, "node name", &n.name, n.vmid);
            if let Some(prev) = names.insert(n.name.clone(), i) {
                errs.push(l.error_at(
                    &format!("{p}.name"),
                    format!(
                        "node name `{}` is already used by talos.nodes[{prev}]",
                        n.name
                    ),
                ));
            }
            if let Some(prev) = vmids.insert(n.vmid, i) {
                errs.push(l.error_at(
                    &format!("{p}.vmid"),
                    format!("VMID {} is already used by talos.nodes[{prev}]", n.vmid),
                ));
            }
            if n.cores.or(t.defaults.cores) == Some(0) {
                errs.push(l.error_at(&format!("{p}.cores"), "a VM needs at least one core"));
            }
            let mem = n.memory.or(t.defaults.memory);
            if let Some(m) = mem
                && m.mib() < 1024
            {
                errs.push(l.error_at(
                    &format!("{p}.memory"),
                    format!("{m} is below the 1GiB Talos needs"),
                ));
            }
            if let Some(d) = n.disk.or(t.defaults.disk)
                && d.mib() < 10 * 1024
            {
                errs.push(l.error_at(
                    &format!("{p}.disk"),
                    format!("{d} is below the 10GiB Talos needs"),
                ));
            }
        }
    }
    if let Some(x) = &c.lxc {
        // Names and VMIDs are unique across every guest kind.
        let mut vmids: std::collections::HashMap<u32, String> = std::collections::HashMap::new();
        let mut names: std::collections::HashMap<String, String> = std::collections::HashMap::new();
        for (i, n) in c.talos.iter().flat_map(|t| t.nodes.iter().enumerate()) {
            vmids.insert(n.vmid, format!("talos.nodes[{i}]"));
            names.insert(n.name.clone(), format!("talos.nodes[{i}]"));
        }
        let mut disk_reported = std::collections::BTreeSet::new();
        for (i, ct) in x.containers.iter().enumerate() {
            let p = format!("lxc.containers[{i}]");
            let Some(vmid) = x.vmid_of(i) else {
                errs.push(l.error_at(&p, "no VMID").with_help(
                    "set `vmid` here, or `lxc.vmid_base` to number containers by position",
                ));
                continue;
            };
            check_guest_id(l, &mut errs, &p, "hostname", &ct.name, vmid);
            if let Some(prev) = vmids.insert(vmid, p.clone()) {
                errs.push(l.error_at(
                    &format!("{p}.vmid"),
                    format!("VMID {vmid} is already used by {prev}"),
                ));
            }
            if let Some(preset) = &ct.preset
                && !x.presets.contains_key(preset)
            {
                errs.push(
                    l.error_at(
                        &format!("{p}.preset"),
                        format!("no preset `{preset}` in lxc.presets"),
                    )
                    .with_help(format!("known presets: {}", known(x.presets.keys()))),
                );
            }
            if let Some(prev) = names.insert(ct.name.clone(), p.clone()) {
                errs.push(l.error_at(
                    &format!("{p}.name"),
                    format!("name `{}` is already used by {prev}", ct.name),
                ));
            }
            let s = x.effective(i).unwrap_or_default();
            if s.template.is_none() {
                errs.push(
                    l.error_at(&p, "no OS template")
                        .with_help("set `template` here or in `lxc.defaults`"),
                );
            }
            if s.cores == Some(0) {
                errs.push(l.error_at(&format!("{p}.cores"), "a container needs at least one core"));
            }
            if let Some(m) = s.memory
                && m.mib() < 16
            {
                errs.push(l.error_at(&format!("{p}.memory"), format!("{m} is below 16MiB")));
            }
            if let Some(d) = s.disk
                && d.mib() < 1024
            {
                // Reported once, where the value is written (the container, its preset or
                // the defaults).
                let at = setting_path(
                    &p,
                    ct.disk.is_some(),
                    "lxc",
                    ct.preset
                        .as_ref()
                        .filter(|n| x.presets.get(*n).is_some_and(|s| s.disk.is_some())),
                    "disk",
                );
                if disk_reported.insert(at.clone()) {
                    errs.push(l.error_at(&at, format!("{d} is below 1GiB")).with_help(
                        "Proxmox sizes container root disks in whole GiB: write e.g. `8GiB`",
                    ));
                }
            }
            let key_path = setting_path(
                &p,
                ct.ssh_keys.is_some(),
                "lxc",
                ct.preset
                    .as_ref()
                    .filter(|n| x.presets.get(*n).is_some_and(|s| s.ssh_keys.is_some())),
                "ssh_keys",
            );
            for (j, k) in s.ssh_keys.iter().flatten().enumerate() {
                let known = [
                    "ssh-ed25519 ",
                    "ssh-rsa ",
                    "ecdsa-sha2-",
                    "sk-ssh-ed25519@",
                    "sk-ecdsa-",
                ]
                .iter()
                .any(|prefix| k.trim_start().starts_with(prefix));
                if !known || k.contains('\n') || k.contains("PRIVATE KEY") {
                    errs.push(
                        l.error_at(&format!("{key_path}[{j}]"), "not an SSH public key line")
                            .with_help("one `ssh-ed25519 AAAA... comment` line per key (from `~/.ssh/id_ed25519.pub`)"),
                    );
                }
            }
            for (j, d) in ct.devices.iter().enumerate() {
                let dp = format!("{p}.devices[{j}]");
                let ok_path = d.path.starts_with("/dev/")
                    && d.path.len() > 5
                    && !d.path.contains([',', ';', '=', ' '])
                    && !d.path.contains("/../");
                if !ok_path {
                    errs.push(
                        l.error_at(
                            &format!("{dp}.path"),
                            format!("`{}` is not a device path", d.path),
                        )
                        .with_help("a device node under /dev, e.g. `/dev/dri/renderD128`"),
                    );
                }
                if let Some(m) = &d.mode
                    && !(m.len() == 4
                        && m.starts_with('0')
                        && m.bytes().all(|b| (b'0'..=b'7').contains(&b)))
                {
                    errs.push(l.error_at(
                        &format!("{dp}.mode"),
                        format!("`{m}` is not an octal mode like `0660`"),
                    ));
                }
            }
            if ct.devices.len() > 256 {
                errs.push(l.error_at(&format!("{p}.devices"), "at most 256 devices"));
            }
            if ct.mounts.len() > 256 {
                errs.push(l.error_at(&format!("{p}.mounts"), "at most 256 mount points"));
            }
            for (j, m) in ct.mounts.iter().enumerate() {
                if !m.path.starts_with('/') || m.path.contains(',') {
                    errs.push(l.error_at(
                        &format!("{p}.mounts[{j}].path"),
                        format!("`{}` is not an absolute path without commas", m.path),
                    ));
                }
            }
            check_tags(l, &mut errs, &p, &ct.tags);
        }
    }
    vms::validate(l, &mut errs);
    patches::validate(l, &mut errs);
    errs.extend(backups::validate(l));
    errs.extend(sdn::validate(l));
    errs.extend(handoff::validate(l));
    errs
}

/// Where a guest's effective setting `key` was written: the guest itself (`p`), its
/// preset, or the section's defaults.
pub(crate) fn setting_path(
    p: &str,
    own: bool,
    section: &str,
    preset: Option<&String>,
    key: &str,
) -> String {
    match (own, preset) {
        (true, _) => format!("{p}.{key}"),
        (false, Some(name)) => format!("{section}.presets.{name}.{key}"),
        (false, None) => format!("{section}.defaults.{key}"),
    }
}

/// Guest tags as Proxmox accepts them (`pve-tag`): a letter, digit or `_`, then letters,
/// digits and `-_+.`.
pub(crate) fn check_tags(l: &Loaded, errs: &mut Vec<ConfigError>, p: &str, tags: &[String]) {
    for (j, t) in tags.iter().enumerate() {
        let ok = t
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_+.".contains(&b));
        if !ok {
            errs.push(l.error_at(
                &format!("{p}.tags[{j}]"),
                format!("invalid tag `{t}` (a letter, digit or `_`, then letters, digits, `-_+.`)"),
            ));
        }
    }
}

/// Substitute secrets in `value` (at `path`), collecting errors.
pub(crate) fn subst(
    l: &Loaded,
    secrets: &secrets::SecretValues,
    path: &str,
    value: &str,
    errs: &mut Vec<ConfigError>,
) -> Option<(String, bool)> {
    match secrets.substitute(value) {
        Ok((v, sens)) => Some((secrecy::ExposeSecret::expose_secret(&v).to_string(), sens)),
        Err(e) => {
            errs.push(l.error_at(path, e).with_help(
                "add the key with `homelab-cli secrets edit <file>` or fix the reference",
            ));
            None
        }
    }
}

/// `a, b, c` (or `none`) for help texts.
pub(crate) fn known<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<&str> = names.map(String::as_str).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// Every string field that may hold `${secret:...}` references, with its path.
pub fn secret_capable(c: &Config) -> Vec<(String, String)> {
    let mut v = vec![
        ("proxmox.endpoint".to_string(), c.proxmox.endpoint.clone()),
        ("proxmox.token_id".to_string(), c.proxmox.token_id.clone()),
        (
            "proxmox.token_secret".to_string(),
            c.proxmox.token_secret.clone(),
        ),
    ];
    if let Some(f) = &c.proxmox.fingerprint {
        v.push(("proxmox.fingerprint".into(), f.clone()));
    }
    if let Some(t) = &c.talos {
        if let Some(x) = &t.cluster.vip {
            v.push(("talos.cluster.vip".into(), x.clone()));
        }
        if let Some(x) = &t.cluster.endpoint {
            v.push(("talos.cluster.endpoint".into(), x.clone()));
        }
        if let Some(x) = &t.network.gateway {
            v.push(("talos.network.gateway".into(), x.clone()));
        }
        for (i, x) in t.network.nameservers.iter().enumerate() {
            v.push((format!("talos.network.nameservers[{i}]"), x.clone()));
        }
        for (i, n) in t.nodes.iter().enumerate() {
            if let Some(x) = &n.ip {
                v.push((format!("talos.nodes[{i}].ip"), x.clone()));
            }
        }
    }
    if let Some(x) = &c.lxc {
        let settings = std::iter::once(("lxc.defaults".to_string(), x.defaults.clone())).chain(
            x.containers
                .iter()
                .enumerate()
                .map(|(i, ct)| (format!("lxc.containers[{i}]"), ct.settings())),
        );
        for (p, s) in settings {
            if let Some(g) = &s.gateway {
                v.push((format!("{p}.gateway"), g.clone()));
            }
            for (j, n) in s.nameservers.iter().flatten().enumerate() {
                v.push((format!("{p}.nameservers[{j}]"), n.clone()));
            }
        }
        for (i, ct) in x.containers.iter().enumerate() {
            if let Some(ip) = &ct.ip {
                v.push((format!("lxc.containers[{i}].ip"), ip.clone()));
            }
            for (k, o) in &ct.options {
                v.push((format!("lxc.containers[{i}].options.{k}"), o.clone()));
            }
        }
        for (name, s) in &x.presets {
            if let Some(g) = &s.gateway {
                v.push((format!("lxc.presets.{name}.gateway"), g.clone()));
            }
            for (j, n) in s.nameservers.iter().flatten().enumerate() {
                v.push((format!("lxc.presets.{name}.nameservers[{j}]"), n.clone()));
            }
        }
    }
    if let Some(pw) = &c.proxmox.root_password {
        v.push(("proxmox.root_password".into(), pw.clone()));
    }
    if let Some(ssh) = &c.proxmox.ssh {
        v.push(("proxmox.ssh.private_key".into(), ssh.private_key.clone()));
        v.push(("proxmox.ssh.host_key".into(), ssh.host_key.clone()));
        if let Some(h) = &ssh.host {
            v.push(("proxmox.ssh.host".into(), h.clone()));
        }
    }
    v.extend(vms::secret_capable(c));
    v
}

/// A DNS label of at most `max` characters.
pub fn is_label(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}
