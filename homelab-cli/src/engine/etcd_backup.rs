//! Encrypted etcd snapshots: take one (streamed from `EtcdSnapshot` straight into an age
//! encryptor, so the plaintext never reaches a disk), keep the newest N, and load one for a
//! recovery (decrypted in memory, checked against its manifest and the cluster).
//!
//! On disk, per snapshot, in the backup directory (default `backups/etcd/`):
//! - `<cluster>-<UTC timestamp>.snapshot.age`: the etcd snapshot in the age format, to the
//!   recipients `.sops.yaml` gives that path (else those of the repository's secrets file);
//!   `age -d -i KEY FILE` gives the snapshot `etcdutl snapshot restore` takes;
//! - `<cluster>-<UTC timestamp>.snapshot.json`: the manifest, no secret in it: the cluster
//!   name, a SHA-256 of the cluster ID (which cluster it belongs to, without the ID), the
//!   node it came from, the size and SHA-256 of the plaintext (a truncated or altered file is
//!   refused before anything is uploaded).
//!
//! Both are written to a temporary name in the same directory and renamed into place; a
//! failure leaves nothing behind.

use std::io::{Read as _, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use miette::{IntoDiagnostic as _, miette};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

/// The manifest's format tag.
pub const MANIFEST_FORMAT: &str = "homelab-etcd-snapshot/1";
/// The snapshot file suffix.
pub const SUFFIX: &str = ".snapshot.age";
const MANIFEST_SUFFIX: &str = ".snapshot.json";

/// What is known about a snapshot without decrypting it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    /// [`MANIFEST_FORMAT`].
    pub format: String,
    /// `talos.cluster.name`.
    pub cluster: String,
    /// SHA-256 (hex) of the cluster ID of the secrets bundle.
    pub cluster_id_sha256: String,
    /// When it was taken (UTC, RFC 3339).
    pub created: String,
    /// The control plane it was streamed from.
    pub node: String,
    /// Plaintext size in bytes.
    pub size: u64,
    /// SHA-256 (hex) of the plaintext.
    pub sha256: String,
}

/// What a snapshot run wrote and pruned.
#[derive(Debug, Clone, Serialize)]
pub struct Taken {
    /// The encrypted snapshot.
    pub file: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
    /// Snapshots removed by the retention count.
    pub pruned: Vec<PathBuf>,
}

/// The default snapshot directory (relative to homelab.yaml).
pub const DEFAULT_DIR: &str = "backups/etcd";
/// The default retention count.
pub const DEFAULT_KEEP: usize = 10;

/// `talos.etcd_backup: before_changes`: the snapshot action when `plan` changes a control
/// plane of a bootstrapped cluster (an update, replacement, start, reconfiguration or upgrade
/// of a declared control plane, or the destruction of a configured Talos node, which may be
/// one that is no longer declared). Pure.
pub fn before_changes(
    desired: &crate::model::desired::Desired,
    talos: &crate::engine::observed::TalosObserved,
    plan: &crate::engine::plan::Plan,
) -> Option<crate::engine::plan::Action> {
    use crate::engine::plan::Action;
    let cluster = desired.talos.as_ref()?;
    if cluster.etcd_backup.when != crate::model::etcd_backup::When::BeforeChanges
        || !talos.bootstrapped
        || !talos.secrets_present
    {
        return None;
    }
    let is_cp = |vmid: &u32| {
        desired
            .guests
            .iter()
            .any(|g| g.vmid == *vmid && g.is_control_plane())
    };
    let mut nodes: Vec<String> = plan
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Update { vmid, name, .. }
            | Action::Replace { vmid, name, .. }
            | Action::Start { vmid, name, .. }
            | Action::TalosApplyConfig { vmid, name, .. }
            | Action::TalosUpgrade { vmid, name, .. }
                if is_cp(vmid) =>
            {
                Some(name.clone())
            }
            Action::Delete { vmid, name, .. } if talos.configured.contains(vmid) => {
                Some(name.clone())
            }
            _ => None,
        })
        .collect();
    nodes.sort();
    nodes.dedup();
    if nodes.is_empty() {
        return None;
    }
    Some(Action::EtcdSnapshot {
        dir: cluster
            .etcd_backup
            .dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DIR))
            .display()
            .to_string(),
        nodes,
    })
}

/// SHA-256 hex of a cluster ID.
pub fn cluster_id_hash(cluster_id: &str) -> String {
    hex::encode(Sha256::digest(cluster_id.as_bytes()))
}

/// `secs` since the epoch as `YYYYMMDDTHHMMSSZ` (file names) and RFC 3339.
pub fn timestamps(secs: u64) -> (String, String) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let (hh, mm, ss) = (rem / 3600, rem / 60 % 60, rem % 60);
    (
        format!("{y:04}{m:02}{d:02}T{hh:02}{mm:02}{ss:02}Z"),
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z"),
    )
}

/// The snapshot file name for `cluster` at `stamp`.
pub fn file_name(cluster: &str, stamp: &str) -> String {
    format!("{cluster}-{stamp}{SUFFIX}")
}

/// The manifest beside a snapshot file.
pub fn manifest_path(file: &Path) -> PathBuf {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(SUFFIX).unwrap_or(&name);
    file.with_file_name(format!("{stem}{MANIFEST_SUFFIX}"))
}

/// Which of `names` (snapshot file names in one directory) the retention count removes:
/// this cluster's, oldest first, all but the newest `keep` (the timestamp sorts by name);
/// `keep` 0 keeps them all.
pub fn to_prune(names: &[String], cluster: &str, keep: usize) -> Vec<String> {
    if keep == 0 {
        return Vec::new();
    }
    let prefix = format!("{cluster}-");
    let mut mine: Vec<&String> = names
        .iter()
        .filter(|n| {
            n.strip_prefix(&prefix)
                .and_then(|rest| rest.strip_suffix(SUFFIX))
                .is_some_and(|stamp| {
                    stamp.len() == 16 && stamp.ends_with('Z') && stamp.as_bytes()[8] == b'T'
                })
        })
        .collect();
    mine.sort();
    let n = mine.len().saturating_sub(keep);
    mine.into_iter().take(n).cloned().collect()
}

/// A writer that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    size: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A file being written under a temporary name, removed unless it is renamed into place.
struct Pending {
    tmp: PathBuf,
    done: bool,
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        o.mode(0o600);
    }
    o.open(path)
}

/// What [`take`] needs.
#[derive(Debug)]
pub struct TakeOptions<'a> {
    /// Where the snapshots go.
    pub dir: &'a Path,
    /// `talos.cluster.name`.
    pub cluster: &'a str,
    /// The bundle's cluster ID.
    pub cluster_id: &'a str,
    /// age recipients.
    pub recipients: &'a [sops_age::Recipient],
    /// The control plane's name (for the manifest).
    pub node: &'a str,
    /// How many of this cluster's snapshots to keep (0: keep all).
    pub keep: usize,
}

/// Stream a snapshot from `client` (a control plane) into an age file in `opts.dir`, write
/// its manifest, then prune.
pub async fn take(
    client: &talos_api::client::Client,
    opts: &TakeOptions<'_>,
) -> miette::Result<Taken> {
    std::fs::create_dir_all(opts.dir)
        .map_err(|e| miette!("cannot create {}: {e}", opts.dir.display()))?;
    // What a killed run left: its ciphertext, never complete (not renamed into place).
    for e in std::fs::read_dir(opts.dir).into_iter().flatten().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with('.') && n.contains(SUFFIX) && n.ends_with(".tmp") {
            let _ = std::fs::remove_file(e.path());
        }
    }
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let (stamp, created) = timestamps(secs);
    let file = opts.dir.join(file_name(opts.cluster, &stamp));
    if file.exists() {
        return Err(miette!(
            help = "wait a second and run it again",
            "{} already exists",
            file.display()
        ));
    }
    let tmp = opts.dir.join(format!(
        ".{}.{}.tmp",
        file_name(opts.cluster, &stamp),
        std::process::id()
    ));
    let mut pending = Pending {
        tmp: tmp.clone(),
        done: false,
    };
    let out = create_private(&tmp).map_err(|e| miette!("cannot create {}: {e}", tmp.display()))?;
    let enc = sops_age::agefile::Encrypt::new(opts.recipients, std::io::BufWriter::new(out))
        .map_err(|e| miette!("cannot encrypt the snapshot: {e}"))?;
    let mut sink = Hashing {
        inner: enc,
        hasher: Sha256::new(),
        size: 0,
    };
    client
        .etcd_snapshot(&mut sink)
        .await
        .map_err(|e| miette!("etcd snapshot from {}: {e}", opts.node))?;
    let Hashing {
        inner: enc,
        hasher,
        size,
    } = sink;
    let buf = enc
        .finish()
        .map_err(|e| miette!("cannot encrypt the snapshot: {e}"))?;
    let f = buf
        .into_inner()
        .map_err(|e| miette!("cannot write {}: {}", tmp.display(), e.error()))?;
    f.sync_all()
        .map_err(|e| miette!("cannot write {}: {e}", tmp.display()))?;
    drop(f);
    let manifest = Manifest {
        format: MANIFEST_FORMAT.into(),
        cluster: opts.cluster.into(),
        cluster_id_sha256: cluster_id_hash(opts.cluster_id),
        created,
        node: opts.node.into(),
        size,
        sha256: hex::encode(hasher.finalize()),
    };
    let json = serde_json::to_vec_pretty(&manifest).into_diagnostic()?;
    crate::workspace::write_atomic(&manifest_path(&file), &json, 0o644)
        .map_err(|e| miette!("{e}"))?;
    // The manifest first: a snapshot in place always has one.
    std::fs::rename(&tmp, &file).map_err(|e| {
        let _ = std::fs::remove_file(manifest_path(&file));
        miette!("cannot move the snapshot into {}: {e}", file.display())
    })?;
    pending.done = true;
    let pruned = prune(opts.dir, opts.cluster, opts.keep)?;
    Ok(Taken {
        file,
        manifest,
        pruned,
    })
}

/// Remove all but the newest `keep` snapshots of `cluster` in `dir` (and their manifests).
pub fn prune(dir: &Path, cluster: &str, keep: usize) -> miette::Result<Vec<PathBuf>> {
    if keep == 0 {
        return Ok(Vec::new());
    }
    let names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| miette!("cannot list {}: {e}", dir.display()))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let mut removed = Vec::new();
    for n in to_prune(&names, cluster, keep) {
        let p = dir.join(&n);
        std::fs::remove_file(&p).map_err(|e| miette!("cannot remove {}: {e}", p.display()))?;
        let _ = std::fs::remove_file(manifest_path(&p));
        removed.push(p);
    }
    Ok(removed)
}

/// A decrypted snapshot, only in memory.
pub type Plain = Arc<Zeroizing<Vec<u8>>>;

/// Read `file`, check it belongs to the cluster `cluster_id`, decrypt it in memory with
/// `ids` and check it against its manifest and etcd's integrity hash (unless
/// `skip_hash_check`). Every refusal names the file and what is wrong.
pub fn load(
    file: &Path,
    ids: &sops_age::Identities,
    cluster_id: &str,
    skip_hash_check: bool,
) -> miette::Result<Plain> {
    let mpath = manifest_path(file);
    let text = std::fs::read(&mpath).map_err(|e| {
        miette!(
            help = "the manifest is written beside every snapshot by `homelab-cli talos etcd snapshot`",
            "cannot read the manifest {}: {e}",
            mpath.display()
        )
    })?;
    let manifest: Manifest = serde_json::from_slice(&text)
        .map_err(|e| miette!("{}: not a snapshot manifest: {e}", mpath.display()))?;
    if manifest.format != MANIFEST_FORMAT {
        return Err(miette!(
            "{}: unknown manifest format {:?}",
            mpath.display(),
            manifest.format
        ));
    }
    if manifest.cluster_id_sha256 != cluster_id_hash(cluster_id) {
        return Err(miette!(
            help = format!(
                "restore a snapshot of this cluster (same Talos secrets bundle), or run the restore from the repository of cluster `{}`",
                manifest.cluster
            ),
            "{} is a snapshot of another cluster (`{}`, taken {}): its cluster ID is not this one's",
            file.display(),
            manifest.cluster,
            manifest.created
        ));
    }
    let input =
        std::fs::File::open(file).map_err(|e| miette!("cannot open {}: {e}", file.display()))?;
    let mut reader = sops_age::agefile::decrypt(ids, std::io::BufReader::new(input))
        .map_err(|e| {
            miette!(
                help = "set SOPS_AGE_KEY_FILE (or SOPS_AGE_KEY) to a key the snapshot was encrypted to",
                "cannot decrypt {}: {e}",
                file.display()
            )
        })?;
    let mut data = Zeroizing::new(Vec::with_capacity(
        usize::try_from(manifest.size).unwrap_or(0),
    ));
    reader.read_to_end(&mut data).map_err(|e| {
        miette!(
            "cannot decrypt {}: {e} (the file is truncated or was altered)",
            file.display()
        )
    })?;
    if data.len() as u64 != manifest.size
        || hex::encode(Sha256::digest(&data[..])) != manifest.sha256
    {
        return Err(miette!(
            "{} does not match its manifest ({} bytes, expected {}): it is not the snapshot that was taken",
            file.display(),
            data.len(),
            manifest.size
        ));
    }
    if !skip_hash_check {
        check_etcd_hash(&data).map_err(|e| {
            miette!(
                help = "a copy of an etcd data directory has no hash: pass --skip-hash-check",
                "{}: {e}",
                file.display()
            )
        })?;
    }
    Ok(Arc::new(data))
}

/// etcd's own integrity check of a snapshot (`etcdutl snapshot restore`): the database is a
/// whole number of pages followed by its SHA-256.
pub fn check_etcd_hash(data: &[u8]) -> Result<(), String> {
    if data.len() % 512 != 32 {
        return Err("not an etcd snapshot: it has no integrity hash".into());
    }
    let (db, sha) = data.split_at(data.len() - 32);
    if Sha256::digest(db).as_slice() != sha {
        return Err("the etcd snapshot's integrity hash does not match its data".into());
    }
    Ok(())
}

/// Upload `data` with `EtcdRecover` and bootstrap etcd from it, then wait until it is
/// healthy.
pub async fn restore_onto(
    client: &talos_api::client::Client,
    data: Plain,
    skip_hash_check: bool,
    wait: &talos_api::health::WaitOptions<'_>,
) -> miette::Result<()> {
    client
        .etcd_recover(talos_api::etcd::chunks(data))
        .await
        .map_err(|e| miette!("uploading the snapshot (EtcdRecover): {e}"))?;
    client
        .bootstrap_recover(talos_api::etcd::RecoverOptions::new().skip_hash_check(skip_hash_check))
        .await
        .map_err(|e| miette!("bootstrap with recover_etcd: {e}"))?;
    talos_api::health::wait_etcd_healthy(client, wait)
        .await
        .map_err(|e| miette!("etcd after the recovery: {e}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_and_timestamps() {
        let (stamp, rfc) = timestamps(1_780_000_000);
        assert_eq!(stamp, "20260528T202640Z");
        assert_eq!(rfc, "2026-05-28T20:26:40Z");
        assert_eq!(
            file_name("lab", &stamp),
            "lab-20260528T202640Z.snapshot.age"
        );
        assert_eq!(
            manifest_path(Path::new("b/lab-20260528T202640Z.snapshot.age")),
            Path::new("b/lab-20260528T202640Z.snapshot.json")
        );
    }

    #[test]
    fn retention_keeps_the_newest_of_this_cluster_only() {
        let names: Vec<String> = [
            "lab-20260101T000000Z.snapshot.age",
            "lab-20260103T000000Z.snapshot.age",
            "lab-20260102T000000Z.snapshot.age",
            "lab-20260102T000000Z.snapshot.json",
            "other-20250101T000000Z.snapshot.age",
            "lab-prod-20250101T000000Z.snapshot.age",
            ".lab-20250101T000000Z.snapshot.age.1.tmp",
            "lab-notes.txt",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            to_prune(&names, "lab", 2),
            vec!["lab-20260101T000000Z.snapshot.age".to_string()]
        );
        assert_eq!(to_prune(&names, "lab", 5), Vec::<String>::new());
        assert_eq!(to_prune(&names, "lab", 1).len(), 2);
        assert_eq!(
            to_prune(&names, "lab", 0),
            Vec::<String>::new(),
            "0 keeps all"
        );
    }

    #[test]
    fn etcd_hash_check() {
        let mut db = vec![0u8; 4096];
        db[0] = 1;
        let mut snap = db.clone();
        snap.extend_from_slice(&Sha256::digest(&db));
        assert!(check_etcd_hash(&snap).is_ok());
        assert!(check_etcd_hash(&snap[..snap.len() - 1]).is_err());
        snap[5] = 9;
        assert!(check_etcd_hash(&snap).is_err());
    }

    fn desired(etcd_backup: &str) -> crate::model::desired::Desired {
        let text = format!(
            "name: lab\nproxmox:\n  endpoint: https://pve:8006\n  token_id: a@pve!b\n  token_secret: ${{secret:t}}\n  node: pve\n  storage: local-lvm\n  iso_storage: local\n  bridge: vmbr0\ntalos:\n  version: v1.12.0\n{etcd_backup}  cluster: {{name: lab}}\n  network: {{gateway: 10.0.0.1, prefix: 24}}\n  nodes:\n    - {{name: cp-1, vmid: 200, role: controlplane, ip: 10.0.0.11}}\n    - {{name: w-1, vmid: 210, role: worker, ip: 10.0.0.21}}\n"
        );
        let l = crate::model::parse(Path::new("homelab.yaml"), text).unwrap();
        let s =
            crate::model::secrets::SecretValues::from_pairs([("t".to_string(), "x".to_string())]);
        crate::model::desired::resolve(&l, &s, &crate::engine::image::FactoryNaming::default())
            .unwrap()
    }

    #[test]
    fn before_changes_only_when_a_control_plane_of_a_running_cluster_changes() {
        use crate::engine::observed::TalosObserved;
        use crate::engine::plan::{Action, Plan};
        let start = |vmid: u32, name: &str| Action::Start {
            vmid,
            name: name.into(),
            node: "pve".into(),
            kind: crate::model::desired::GuestKind::Qemu,
        };
        let running = TalosObserved {
            secrets_present: true,
            bootstrapped: true,
            configured: [200, 210].into(),
            ..Default::default()
        };
        let plan = |actions: Vec<Action>| Plan {
            actions,
            ..Default::default()
        };
        let d = desired("  etcd_backup: before_changes\n");
        let got = before_changes(&d, &running, &plan(vec![start(200, "cp-1")]));
        assert_eq!(
            got,
            Some(Action::EtcdSnapshot {
                dir: "backups/etcd".into(),
                nodes: vec!["cp-1".into()],
            })
        );
        // A worker alone: no snapshot; a destroyed configured node: one.
        assert_eq!(
            before_changes(&d, &running, &plan(vec![start(210, "w-1")])),
            None
        );
        let del = Action::Delete {
            vmid: 210,
            name: "w-1".into(),
            node: "pve".into(),
            kind: crate::model::desired::GuestKind::Qemu,
        };
        assert!(before_changes(&d, &running, &plan(vec![del])).is_some());
        // Not bootstrapped yet (nothing to snapshot), or `manual`: none.
        let fresh = TalosObserved {
            bootstrapped: false,
            ..running.clone()
        };
        assert_eq!(
            before_changes(&d, &fresh, &plan(vec![start(200, "cp-1")])),
            None
        );
        let manual = desired("");
        assert_eq!(
            before_changes(&manual, &running, &plan(vec![start(200, "cp-1")])),
            None
        );
        let long = desired("  etcd_backup: {when: before_changes, dir: snaps}\n");
        assert!(matches!(
            before_changes(&long, &running, &plan(vec![start(200, "cp-1")])),
            Some(Action::EtcdSnapshot { dir, .. }) if dir == "snaps"
        ));
    }

    #[test]
    fn a_failed_write_leaves_nothing() {
        let d = tempfile::tempdir().unwrap();
        let tmp = d.path().join(".x.tmp");
        {
            let _p = Pending {
                tmp: tmp.clone(),
                done: false,
            };
            create_private(&tmp).unwrap().write_all(b"cipher").unwrap();
        }
        assert!(!tmp.exists());
    }
}
