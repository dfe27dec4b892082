//! Scheduled vzdump backup jobs (`backups:` in homelab.yaml): the document shape, the rules
//! checked without secrets, and the pure resolution of guest names and tags into the
//! sorted VMID list Proxmox stores (`/cluster/backup`).
//!
//! A job is identified by `homelab-<lab>-<name>` and owned through its `comment`, which ends
//! with the owner marker as its last word (we keep job comments to one line, so the marker
//! is a word of the comment rather than a line of its own; only the last word counts, so a
//! marker quoted in someone's text never makes a job ours).

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::desired::owner_marker;
use super::{ConfigError, Loaded};

/// Longest job id Proxmox accepts (`/cluster/backup/{id}`).
pub const MAX_ID_LEN: usize = 50;
/// Longest job comment Proxmox accepts.
pub const MAX_COMMENT_LEN: usize = 512;
/// Longest notes template Proxmox accepts.
pub const MAX_NOTES_LEN: usize = 1024;
/// Longest schedule Proxmox accepts.
pub const MAX_SCHEDULE_LEN: usize = 128;

/// A scheduled vzdump backup job.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupJob {
    /// Name of the job (lowercase letters, digits and `-`). The Proxmox job id is
    /// `homelab-<homelab name>-<name>`, at most 50 characters.
    pub name: String,
    /// When it runs: a systemd-style calendar event as Proxmox accepts it, e.g. `02:30`,
    /// `sat 03:00`, `mon..fri 22:00`, `*-*-01 04:00`.
    pub schedule: String,
    /// Storage the backups are written to (content `backup`), e.g. `local` or a PBS storage.
    pub storage: String,
    /// `snapshot` (default, no downtime), `suspend` or `stop`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<BackupMode>,
    /// Compression: `zstd` (default), `gzip`, `lzo`, `1` (lzo) or `0` (none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compress: Option<Compress>,
    /// Retention, used instead of the storage's own (`prune-backups`). Without it the
    /// storage's retention settings apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep: Option<Keep>,
    /// Which guests: names of guests declared in this file, or `all` (every guest on the
    /// node(s), also those this homelab does not manage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guests: Option<GuestSelection>,
    /// Also every declared guest carrying one of these tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Run only on this Proxmox node (default: every node, each backing up its own guests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Whether the job is scheduled (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Notes attached to each backup; may use `{{cluster}}`, `{{guestname}}`, `{{node}}`
    /// and `{{vmid}}`. One line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// A comment shown in Proxmox (one line; the ownership marker is appended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// vzdump backup mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BackupMode {
    /// Live backup of a running guest (QEMU snapshot / LXC snapshot-capable storage).
    #[default]
    Snapshot,
    /// Suspend the guest while it is backed up.
    Suspend,
    /// Stop the guest, back it up, start it again.
    Stop,
}

impl BackupMode {
    /// As Proxmox writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            BackupMode::Snapshot => "snapshot",
            BackupMode::Suspend => "suspend",
            BackupMode::Stop => "stop",
        }
    }
}

/// vzdump compression (`compress`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compress {
    /// `0`: no compression.
    None,
    /// `1`: the legacy spelling of lzo.
    One,
    /// `gzip`.
    Gzip,
    /// `lzo`.
    Lzo,
    /// `zstd` (the default here).
    #[default]
    Zstd,
}

impl Compress {
    /// As Proxmox stores it.
    pub fn as_str(self) -> &'static str {
        match self {
            Compress::None => "0",
            Compress::One => "1",
            Compress::Gzip => "gzip",
            Compress::Lzo => "lzo",
            Compress::Zstd => "zstd",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "0" => Compress::None,
            "1" => Compress::One,
            "gzip" => Compress::Gzip,
            "lzo" => Compress::Lzo,
            "zstd" => Compress::Zstd,
            _ => return None,
        })
    }
}

impl Serialize for Compress {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Compress {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // YAML reads a bare `0` or `1` as a number.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(u64),
            Text(String),
        }
        let text = match Raw::deserialize(d)? {
            Raw::Num(n) => n.to_string(),
            Raw::Text(t) => t,
        };
        Compress::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown compression `{text}`, expected one of `zstd`, `gzip`, `lzo`, `1`, `0`"
            ))
        })
    }
}

impl JsonSchema for Compress {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Compress".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "vzdump compression: `zstd`, `gzip`, `lzo`, `1` (lzo) or `0` (none).",
            "anyOf": [
                {"type": "string", "enum": ["0", "1", "gzip", "lzo", "zstd"]},
                {"type": "integer", "enum": [0, 1]}
            ]
        })
    }
}

/// How many backups to keep (Proxmox `prune-backups`). Each count is at least 1.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Keep {
    /// Keep every backup (conflicts with the counts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all: Option<bool>,
    /// The last N backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<u32>,
    /// The newest backup of each of the last N hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hourly: Option<u32>,
    /// The newest backup of each of the last N days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily: Option<u32>,
    /// The newest backup of each of the last N weeks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weekly: Option<u32>,
    /// The newest backup of each of the last N months.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly: Option<u32>,
    /// The newest backup of each of the last N years.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub yearly: Option<u32>,
}

impl Keep {
    /// The counts by their YAML name.
    fn counts(&self) -> [(&'static str, Option<u32>); 6] {
        [
            ("last", self.last),
            ("hourly", self.hourly),
            ("daily", self.daily),
            ("weekly", self.weekly),
            ("monthly", self.monthly),
            ("yearly", self.yearly),
        ]
    }

    /// The `prune-backups` property string, keys sorted as Proxmox prints them.
    pub fn prune_backups(&self) -> String {
        let mut parts: BTreeMap<String, String> = self
            .counts()
            .iter()
            .filter_map(|(k, v)| v.map(|v| (format!("keep-{k}"), v.to_string())))
            .collect();
        if let Some(all) = self.all {
            parts.insert("keep-all".into(), u8::from(all).to_string());
        }
        parts
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// `all`, or a list of guest names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestSelection {
    /// Every guest (Proxmox `all`).
    All,
    /// These declared guests.
    Names(Vec<String>),
}

impl Serialize for GuestSelection {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            GuestSelection::All => s.serialize_str("all"),
            GuestSelection::Names(n) => n.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for GuestSelection {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            List(Vec<String>),
        }
        match Raw::deserialize(d)
            .map_err(|_| serde::de::Error::custom("expected a list of guest names or `all`"))?
        {
            Raw::Text(t) if t == "all" => Ok(GuestSelection::All),
            Raw::Text(t) => Err(serde::de::Error::custom(format!(
                "expected a list of guest names or `all`, found `{t}` (write `[{t}]` for one guest)"
            ))),
            Raw::List(l) => Ok(GuestSelection::Names(l)),
        }
    }
}

impl JsonSchema for GuestSelection {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "GuestSelection".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Names of guests declared in this file, or `all` (every guest on the node(s)).",
            "anyOf": [
                {"type": "string", "const": "all"},
                {"type": "array", "items": {"type": "string"}}
            ]
        })
    }
}

/// The Proxmox job id of job `name` of homelab `lab`.
pub fn job_id(lab: &str, name: &str) -> String {
    format!("homelab-{lab}-{name}")
}

/// The comment stored on the job: the user's text, then the owner marker.
pub fn job_comment(lab: &str, comment: Option<&str>) -> String {
    match comment.map(str::trim).filter(|c| !c.is_empty()) {
        Some(c) => format!("{c} {}", owner_marker(lab)),
        None => owner_marker(lab),
    }
}

/// Whether a job comment carries the owner marker of `lab`: its last word, where
/// [`job_comment`] puts it (a marker quoted earlier in someone's text does not count).
pub fn comment_owned(comment: &str, lab: &str) -> bool {
    comment.split_whitespace().next_back() == Some(owner_marker(lab).as_str())
}

/// A backup job as it should exist in Proxmox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DesiredBackupJob {
    /// Proxmox job id (`homelab-<lab>-<name>`).
    pub id: String,
    /// The name in homelab.yaml.
    pub name: String,
    /// Selected guests, sorted (empty with `all`).
    pub vmids: Vec<u32>,
    /// Proxmox parameters we manage, in canonical form (`vmid` comma-separated and sorted,
    /// `prune-backups` with sorted keys, booleans `0`/`1`). Keys absent here are removed
    /// from the job when present.
    pub params: BTreeMap<String, String>,
}

/// The rules that need neither secrets nor the resolved guests: names, lengths, one-line
/// texts, retention counts, a selection.
pub fn validate(l: &Loaded) -> Vec<ConfigError> {
    let mut errs = Vec::new();
    let lab = &l.config.name;
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, b) in l.config.backups.iter().enumerate() {
        let p = format!("backups[{i}]");
        if !super::is_label(&b.name, 63) {
            errs.push(
                l.error_at(
                    &format!("{p}.name"),
                    format!("invalid job name `{}`", b.name),
                )
                .with_help("lowercase letters, digits and `-`, e.g. `nightly`"),
            );
        } else if job_id(lab, &b.name).len() > MAX_ID_LEN {
            errs.push(
                l.error_at(
                    &format!("{p}.name"),
                    format!(
                        "the job id `{}` is longer than the {MAX_ID_LEN} characters Proxmox allows",
                        job_id(lab, &b.name)
                    ),
                )
                .with_help("use a shorter job name"),
            );
        }
        if let Some(prev) = names.insert(&b.name, i) {
            errs.push(l.error_at(
                &format!("{p}.name"),
                format!("job name `{}` is already used by backups[{prev}]", b.name),
            ));
        }
        let schedule = b.schedule.trim();
        if schedule.is_empty() || schedule.len() > MAX_SCHEDULE_LEN {
            errs.push(
                l.error_at(
                    &format!("{p}.schedule"),
                    format!("a schedule has 1 to {MAX_SCHEDULE_LEN} characters"),
                )
                .with_help("a calendar event such as `02:30`, `sat 03:00` or `mon..fri 22:00`"),
            );
        } else if let Some(c) = schedule
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || " :-,./*~".contains(*c)))
        {
            errs.push(
                l.error_at(
                    &format!("{p}.schedule"),
                    format!("`{c}` cannot appear in a calendar event"),
                )
                .with_help("a calendar event such as `02:30`, `sat 03:00` or `mon..fri 22:00`"),
            );
        } else if let Err(e) = super::calendar::check(schedule) {
            errs.push(
                l.error_at(
                    &format!("{p}.schedule"),
                    format!("`{schedule}` is not a Proxmox calendar event: {e}"),
                )
                .with_help("a calendar event such as `02:30`, `sat 03:00` or `mon..fri 22:00`"),
            );
        }
        if !is_storage_id(&b.storage) {
            errs.push(l.error_at(
                &format!("{p}.storage"),
                format!("`{}` is not a storage id", b.storage),
            ));
        }
        if let Some(n) = &b.node
            && !super::is_label(n, 63)
        {
            errs.push(l.error_at(&format!("{p}.node"), format!("`{n}` is not a node name")));
        }
        if let Some(k) = &b.keep {
            let set: Vec<&str> = k
                .counts()
                .iter()
                .filter(|(_, v)| v.is_some())
                .map(|(n, _)| *n)
                .collect();
            for (n, v) in k.counts() {
                if v == Some(0) {
                    errs.push(
                        l.error_at(&format!("{p}.keep.{n}"), format!("keep.{n} is 0"))
                            .with_help("use at least 1, or leave it out"),
                    );
                }
            }
            if k.all == Some(true) && !set.is_empty() {
                errs.push(l.error_at(
                    &format!("{p}.keep.all"),
                    format!("keep.all conflicts with keep.{}", set.join(", keep.")),
                ));
            }
            if k.all != Some(true) && set.is_empty() {
                errs.push(
                    l.error_at(&format!("{p}.keep"), "no retention given")
                        .with_help("set e.g. `{ last: 3, daily: 7 }`, or drop `keep` to use the storage's retention"),
                );
            }
        }
        let no_names = match &b.guests {
            None => true,
            Some(GuestSelection::Names(n)) => n.is_empty(),
            Some(GuestSelection::All) => false,
        };
        match &b.guests {
            _ if no_names && b.tags.is_empty() => errs.push(
                l.error_at(&p, "the job selects no guests")
                    .with_help("add `guests: [name, ...]`, `guests: all` or `tags: [...]`"),
            ),
            Some(GuestSelection::All) if !b.tags.is_empty() => errs.push(l.error_at(
                &format!("{p}.tags"),
                "`guests: all` already selects every guest",
            )),
            _ => {}
        }
        if let Some(n) = &b.notes {
            if n.contains(['\n', '\r']) {
                errs.push(
                    l.error_at(&format!("{p}.notes"), "notes must be one line")
                        .with_help("write a line break as `\\n`"),
                );
            }
            if n.len() > MAX_NOTES_LEN {
                errs.push(l.error_at(
                    &format!("{p}.notes"),
                    format!("notes are longer than {MAX_NOTES_LEN} characters"),
                ));
            }
        }
        if let Some(c) = &b.comment {
            if c.contains(['\n', '\r']) {
                errs.push(l.error_at(
                    &format!("{p}.comment"),
                    "a job comment is one line (homelab-cli keeps its owner marker at its end)",
                ));
            }
            if c.contains("homelab-cli:owner=") {
                errs.push(l.error_at(
                    &format!("{p}.comment"),
                    "the comment may not contain an owner marker (`homelab-cli:owner=`)",
                ));
            }
            let stored = job_comment(lab, Some(c));
            if stored.len() > MAX_COMMENT_LEN {
                errs.push(l.error_at(
                    &format!("{p}.comment"),
                    format!(
                        "with the ownership marker the comment has {} characters; Proxmox allows {MAX_COMMENT_LEN}",
                        stored.len()
                    ),
                ));
            }
        }
    }
    errs
}

/// A Proxmox storage id (`pve-storage-id`).
fn is_storage_id(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphabetic()
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(c))
}

/// A declared guest as a backup job selects it: name, VMID, tags.
#[derive(Debug, Clone, Copy)]
pub struct GuestRef<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its VMID.
    pub vmid: u32,
    /// The tags the user gave it.
    pub tags: &'a [String],
}

/// Resolve the jobs of `l` against the declared `guests`: names and tags become the sorted
/// VMID list. Unknown names and selections that match nothing are errors at their place.
pub fn resolve(
    l: &Loaded,
    guests: &[GuestRef<'_>],
) -> Result<Vec<DesiredBackupJob>, Vec<ConfigError>> {
    let lab = &l.config.name;
    let mut errs = Vec::new();
    let mut out = Vec::new();
    let by_name: BTreeMap<&str, u32> = guests.iter().map(|g| (g.name, g.vmid)).collect();
    for (i, b) in l.config.backups.iter().enumerate() {
        let p = format!("backups[{i}]");
        let mut params = BTreeMap::new();
        let mut vmids = BTreeSet::new();
        match &b.guests {
            Some(GuestSelection::All) => {
                params.insert("all".to_string(), "1".to_string());
            }
            Some(GuestSelection::Names(names)) => {
                for (j, n) in names.iter().enumerate() {
                    match by_name.get(n.as_str()) {
                        Some(v) => {
                            vmids.insert(*v);
                        }
                        None => {
                            let known: Vec<&str> = by_name.keys().copied().collect();
                            errs.push(
                                l.error_at(
                                    &format!("{p}.guests[{j}]"),
                                    format!("no guest named `{n}` is declared"),
                                )
                                .with_help(if known.is_empty() {
                                    "declare the guest under `lxc`, `vms` or `talos` (an environment overlay may have removed it)".to_string()
                                } else {
                                    format!("declared guests: {}", known.join(", "))
                                }),
                            );
                        }
                    }
                }
            }
            None => {}
        }
        for (j, t) in b.tags.iter().enumerate() {
            let t = t.to_ascii_lowercase();
            let matched: Vec<u32> = guests
                .iter()
                .filter(|g| g.tags.iter().any(|x| x.eq_ignore_ascii_case(&t)))
                .map(|g| g.vmid)
                .collect();
            if matched.is_empty() {
                errs.push(l.error_at(
                    &format!("{p}.tags[{j}]"),
                    format!("no declared guest carries the tag `{t}`"),
                ));
            }
            vmids.extend(matched);
        }
        if !vmids.is_empty() {
            params.insert(
                "vmid".to_string(),
                vmids
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            );
        }
        params.insert("schedule".into(), b.schedule.trim().to_string());
        params.insert("storage".into(), b.storage.clone());
        params.insert(
            "mode".into(),
            b.mode.unwrap_or_default().as_str().to_string(),
        );
        params.insert(
            "compress".into(),
            b.compress.unwrap_or_default().as_str().to_string(),
        );
        params.insert(
            "enabled".into(),
            u8::from(b.enabled.unwrap_or(true)).to_string(),
        );
        if let Some(k) = &b.keep {
            params.insert("prune-backups".into(), k.prune_backups());
        }
        if let Some(n) = &b.notes {
            params.insert("notes-template".into(), n.clone());
        }
        if let Some(n) = &b.node {
            params.insert("node".into(), n.clone());
        }
        params.insert("comment".into(), job_comment(lab, b.comment.as_deref()));
        out.push(DesiredBackupJob {
            id: job_id(lab, &b.name),
            name: b.name.clone(),
            vmids: vmids.into_iter().collect(),
            params,
        });
    }
    if errs.is_empty() { Ok(out) } else { Err(errs) }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::path::Path;

    use super::*;

    const BASE: &str = "name: home
proxmox:
  endpoint: https://127.0.0.1:8006
  token_id: a@pve!b
  token_secret: ${secret:proxmox.token_secret}
  node: pve
";

    fn resolve_with(l: &Loaded) -> Result<Vec<DesiredBackupJob>, Vec<ConfigError>> {
        let db = vec!["database".to_string()];
        let guests = [
            GuestRef {
                name: "postgresql",
                vmid: 101,
                tags: &db,
            },
            GuestRef {
                name: "mongodb",
                vmid: 108,
                tags: &db,
            },
            GuestRef {
                name: "gitea",
                vmid: 109,
                tags: &[],
            },
        ];
        resolve(l, &guests)
    }

    fn parse(backups: &str) -> Result<Loaded, Vec<String>> {
        super::super::parse(Path::new("homelab.yaml"), format!("{BASE}{backups}")).map_err(|e| {
            e.errors()
                .iter()
                .map(|e| format!("{} {:?}", e.message, e.line_col()))
                .collect()
        })
    }

    fn resolved(backups: &str) -> Result<Vec<DesiredBackupJob>, Vec<String>> {
        let l = parse(backups)?;
        resolve_with(&l).map_err(|e| {
            e.iter()
                .map(|e| format!("{} {:?}", e.message, e.line_col()))
                .collect()
        })
    }

    #[test]
    fn names_and_tags_become_the_sorted_vmid_list() {
        let jobs = resolved(
            "backups:
  - name: nightly
    schedule: \"02:30\"
    storage: local
    keep: { last: 3, daily: 7, weekly: 4, monthly: 6, yearly: 1 }
    guests: [gitea]
    tags: [Database]
    notes: \"{{guestname}}\"
    comment: databases and git
",
        )
        .unwrap();
        assert_eq!(jobs.len(), 1);
        let j = &jobs[0];
        assert_eq!(j.id, "homelab-home-nightly");
        assert_eq!(j.vmids, vec![101, 108, 109]);
        let want: BTreeMap<String, String> = [
            ("comment", "databases and git homelab-cli:owner=home"),
            ("compress", "zstd"),
            ("enabled", "1"),
            ("mode", "snapshot"),
            ("notes-template", "{{guestname}}"),
            (
                "prune-backups",
                "keep-daily=7,keep-last=3,keep-monthly=6,keep-weekly=4,keep-yearly=1",
            ),
            ("schedule", "02:30"),
            ("storage", "local"),
            ("vmid", "101,108,109"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(j.params, want);
        assert!(comment_owned(&j.params["comment"], "home"));
        assert!(!comment_owned(&j.params["comment"], "hom"));
        // Another lab's marker quoted in a comment does not make the job that lab's.
        let other = job_comment("svc", Some("mirrors homelab-cli:owner=svc-dev"));
        assert!(comment_owned(&other, "svc"));
        assert!(!comment_owned(&other, "svc-dev"));
    }

    #[test]
    fn all_compress_zero_and_disabled() {
        let jobs = resolved(
            "backups:
  - name: weekly
    schedule: sat 03:00
    storage: pbs
    mode: stop
    compress: 0
    enabled: false
    guests: all
",
        )
        .unwrap();
        let p = &jobs[0].params;
        assert_eq!(p["all"], "1");
        assert!(!p.contains_key("vmid") && !p.contains_key("prune-backups"));
        assert_eq!(
            (
                p["compress"].as_str(),
                p["enabled"].as_str(),
                p["mode"].as_str()
            ),
            ("0", "0", "stop")
        );
        assert_eq!(p["comment"], "homelab-cli:owner=home");
        assert!(jobs[0].vmids.is_empty());
    }

    #[test]
    fn unknown_names_and_tags_are_located() {
        let e = resolved(
            "backups:
  - name: nightly
    schedule: \"02:30\"
    storage: local
    guests: [gitea, postgres]
    tags: [nope]
",
        )
        .unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].starts_with("no guest named `postgres` is declared Some((11, 21))"),
            "{e:?}"
        );
        assert!(
            e[1].starts_with("no declared guest carries the tag `nope` Some((12, 12))"),
            "{e:?}"
        );
    }

    #[test]
    fn structural_rules() {
        let e = parse(
            "backups:
  - name: Nightly
    schedule: \"\"
    storage: \"9bad\"
    keep: { last: 0 }
    notes: \"a\\nb\"
  - name: a-very-long-backup-job-name-that-cannot-fit-the-id
    schedule: \"02:30;\"
    storage: local
    guests: all
    tags: [x]
    keep: { all: true, daily: 2 }
  - name: empty
    schedule: daily
    storage: local
    keep: {}
  - name: nobody
    schedule: daily
    storage: local
    guests: []
    keep: { all: false }
    comment: copy of homelab-cli:owner=other
",
        )
        .unwrap_err();
        let all = e.join("\n");
        assert_eq!(all.matches("the job selects no guests").count(), 3, "{all}");
        assert_eq!(all.matches("no retention given").count(), 2, "{all}");
        assert!(all.contains("may not contain an owner marker"), "{all}");
        for want in [
            "invalid job name `Nightly`",
            "a schedule has 1 to 128 characters",
            "`9bad` is not a storage id",
            "keep.last is 0",
            "notes must be one line",
            "the job selects no guests",
            "longer than the 50 characters",
            "`;` cannot appear in a calendar event",
            "`guests: all` already selects every guest",
            "keep.all conflicts with keep.daily",
            "no retention given",
        ] {
            assert!(all.contains(want), "missing {want}:\n{all}");
        }
    }

    #[test]
    fn selection_and_compress_parse_errors_are_clear() {
        let e = parse(
            "backups:
  - name: x
    schedule: daily
    storage: local
    guests: gitea
",
        )
        .unwrap_err();
        assert!(e[0].contains("write `[gitea]` for one guest"), "{e:?}");
        let e = parse(
            "backups:
  - name: x
    schedule: daily
    storage: local
    compress: xz
    guests: all
",
        )
        .unwrap_err();
        assert!(e[0].contains("unknown compression `xz`"), "{e:?}");
    }
}
