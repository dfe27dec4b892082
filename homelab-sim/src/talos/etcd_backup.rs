//! `EtcdSnapshot`, `EtcdRecover` and `Bootstrap` with `recover_etcd` on a simulated control
//! plane, after siderolabs/talos:
//!
//! - `internal/app/machined/internal/server/v1alpha1/v1alpha1_server.go`: `EtcdSnapshot`
//!   (control planes only, `CheckControlplane`; the local member's snapshot streamed in
//!   1024-byte chunks by `pkg/chunker/stream`), `EtcdRecover` (control planes only; the
//!   upload written to `/var/lib/etcd.snapshot`, removed when the upload fails) and
//!   `Bootstrap` (`AlreadyExists` "etcd data directory is not empty" when etcd has data);
//! - `internal/app/machined/pkg/system/services/etcd.go`: `recoverFromSnapshot` checks the
//!   snapshot (`error verifying snapshot: ...`), restores it as a one-member cluster of the
//!   recovering node (etcd's restore rewrites membership from `InitialCluster`: the members
//!   recorded in the snapshot are not brought back; the other control planes join afresh)
//!   and removes the uploaded file.
//! - Roles (`internal/app/machined/pkg/system/services/machined.go`): EtcdSnapshot for
//!   os:admin, os:operator and os:etcd:backup; EtcdRecover for os:admin.
//!
//! One difference: real Talos starts etcd in the background after a `Bootstrap`, so a bad
//! snapshot shows as an etcd service failing; here the same message is the Bootstrap's error.
//!
//! **Snapshots.** The bytes have the shape of an etcd v3 snapshot: a database whose size is a
//! multiple of the 4096-byte page, the first page carrying a bbolt meta header (page flag
//! 0x04, magic `0xED0CDAED`, version 2, page size 4096), followed by a 32-byte SHA-256 of
//! everything before it, which is what `etcdutl snapshot restore` checks
//! (`size % 512 == 32`, then the hash unless `--skip-hash-check`). Unlike bbolt, the pages
//! after the first hold a JSON document (simulator format `homelab-sim-etcd/1`): the
//! revision, the member list at snapshot time and every key with its object.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::kube_objects::{self, Store};
use super::node::Node;

/// Talos' stream chunker size.
pub(crate) const CHUNK: usize = 1024;

/// `CheckControlplane`'s refusal.
pub(crate) fn check_control_plane(node: &Node, api: &str) -> Result<(), tonic::Status> {
    match node.facts() {
        None => Err(tonic::Status::unimplemented(format!(
            "machine type is not set, cannot use {api} API"
        ))),
        Some(f) if f.machine_type != "controlplane" => Err(tonic::Status::unimplemented(format!(
            "{api} is only available on control plane nodes"
        ))),
        Some(_) => Ok(()),
    }
}

/// The etcd members of `node`'s cluster (joined control planes), as `EtcdMemberList` lists
/// them.
fn members(node: &Arc<Node>, peers: &[Arc<Node>]) -> Vec<SnapshotMember> {
    let cluster_id = node.facts().map(|f| f.cluster_id).unwrap_or_default();
    let mut nodes: Vec<&Arc<Node>> = peers
        .iter()
        .filter(|p| {
            p.state().installed
                && p.facts()
                    .is_some_and(|f| f.cluster_id == cluster_id && f.machine_type == "controlplane")
        })
        .collect();
    if !nodes.iter().any(|p| p.key == node.key) {
        nodes.push(node);
    }
    nodes.sort_by_key(|p| p.key.1);
    nodes
        .iter()
        .map(|p| SnapshotMember {
            id: u64::from(u32::from(p.ip)) << 16 | u64::from(p.key.1),
            name: p.hostname(),
            peer_urls: vec![format!("https://{}:2380", p.ip)],
        })
        .collect()
}

/// The snapshot bytes of the local member.
pub(crate) fn snapshot(node: &Arc<Node>, peers: &[Arc<Node>]) -> Result<Vec<u8>, tonic::Status> {
    let rt = node
        .runtime
        .upgrade()
        .ok_or_else(|| tonic::Status::unavailable("node is shutting down"))?;
    let f = node
        .facts()
        .ok_or_else(|| tonic::Status::failed_precondition("no config"))?;
    let store = kube_objects::read_or_init(
        &rt.dir,
        &f.cluster_id,
        kube_objects::cluster_bootstrapped(node),
    )
    .map_err(|e| tonic::Status::internal(format!("failed reading etcd snapshot: {e}")))?
    .ok_or_else(|| {
        tonic::Status::unknown(
            "failed to create etcd client: etcd is not running (the cluster is not bootstrapped)",
        )
    })?;
    encode_snapshot(&SnapshotBody {
        format: FORMAT.into(),
        cluster_id: f.cluster_id,
        members: members(node, peers),
        store,
    })
    .map_err(|e| tonic::Status::internal(format!("failed reading etcd snapshot: {e}")))
}

/// Store an uploaded snapshot on the node (its `/var/lib/etcd.snapshot`).
pub(crate) fn store_upload(node: &Node, data: &[u8]) -> Result<(), tonic::Status> {
    let rt = node
        .runtime
        .upgrade()
        .ok_or_else(|| tonic::Status::unavailable("node is shutting down"))?;
    let path = kube_objects::recovery_file(&rt.dir, &node.key);
    kube_objects::write_private(&path, data)
        .map_err(|e| tonic::Status::internal(format!("error writing snapshot: {e}")))
}

/// Forget a partial upload (Talos removes the file when the upload fails).
pub(crate) fn discard_upload(node: &Node) {
    if let Some(rt) = node.runtime.upgrade() {
        let _ = std::fs::remove_file(kube_objects::recovery_file(&rt.dir, &node.key));
    }
}

/// Start the cluster's etcd on a bootstrapping control plane: empty, or from the uploaded
/// snapshot (which is then removed).
pub(crate) fn start_etcd(
    node: &Node,
    recover: bool,
    skip_hash_check: bool,
) -> Result<(), tonic::Status> {
    let rt = node
        .runtime
        .upgrade()
        .ok_or_else(|| tonic::Status::unavailable("node is shutting down"))?;
    let f = node
        .facts()
        .ok_or_else(|| tonic::Status::failed_precondition("bootstrap is not available yet"))?;
    if !recover {
        return kube_objects::replace(&rt.dir, &f.cluster_id, &kube_objects::fresh_store())
            .map_err(|e| tonic::Status::internal(e.to_string()));
    }
    let path = kube_objects::recovery_file(&rt.dir, &node.key);
    let data = std::fs::read(&path).map_err(|e| {
        tonic::Status::failed_precondition(format!(
            "error verifying snapshot: open /var/lib/etcd.snapshot: {}",
            if e.kind() == std::io::ErrorKind::NotFound {
                "no such file or directory".to_string()
            } else {
                e.to_string()
            }
        ))
    })?;
    let body = decode_snapshot(&data, skip_hash_check).map_err(|e| {
        tonic::Status::invalid_argument(format!(
            "error recovering from the snapshot: error verifying snapshot: {e}"
        ))
    })?;
    tracing::info!(
        revision = body.store.revision,
        keys = body.store.kvs.len(),
        members_in_snapshot = body.members.len(),
        "recovering etcd from snapshot"
    );
    kube_objects::replace(&rt.dir, &f.cluster_id, &body.store)
        .map_err(|e| tonic::Status::internal(e.to_string()))?;
    std::fs::remove_file(&path)
        .map_err(|e| tonic::Status::internal(format!("error deleting snapshot: {e}")))
}

/// bbolt's meta page magic (`go.etcd.io/bbolt` `magic`).
const BOLT_MAGIC: u32 = 0xED0C_DAED;
/// bbolt's data file format version.
const BOLT_VERSION: u32 = 2;
const PAGE: usize = 4096;
/// This simulator's payload format.
pub(crate) const FORMAT: &str = "homelab-sim-etcd/1";

/// An etcd member as recorded in a snapshot.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct SnapshotMember {
    pub id: u64,
    pub name: String,
    pub peer_urls: Vec<String>,
}

/// The JSON inside a snapshot.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct SnapshotBody {
    pub format: String,
    pub cluster_id: String,
    pub members: Vec<SnapshotMember>,
    pub store: Store,
}

// ---- snapshots ---------------------------------------------------------------------

/// Encode a snapshot (see the module docs for the layout).
pub(crate) fn encode_snapshot(body: &SnapshotBody) -> Result<Vec<u8>, String> {
    let json = serde_json::to_vec(body).map_err(|e| e.to_string())?;
    let mut out = vec![0u8; PAGE];
    // bbolt page header: id u64, flags u16 (metaPageFlag 0x04), count u16, overflow u32;
    // then the meta: magic, version, page size.
    out[8..10].copy_from_slice(&0x04u16.to_le_bytes());
    out[16..20].copy_from_slice(&BOLT_MAGIC.to_le_bytes());
    out[20..24].copy_from_slice(&BOLT_VERSION.to_le_bytes());
    out[24..28].copy_from_slice(&(PAGE as u32).to_le_bytes());
    // Where the JSON ends (this simulator's field, after bbolt's meta fields).
    out[64..72].copy_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    let padded = out.len().div_ceil(PAGE) * PAGE;
    out.resize(padded, 0);
    let hash = Sha256::digest(&out);
    out.extend_from_slice(&hash);
    Ok(out)
}

/// Decode a snapshot as etcd's restore checks it: `error verifying snapshot: ...` texts.
pub(crate) fn decode_snapshot(data: &[u8], skip_hash_check: bool) -> Result<SnapshotBody, String> {
    // etcdutl (snapshot restore, verifySnapshot): a page-aligned database plus a SHA-256.
    let has_hash = data.len() % 512 == 32;
    if !has_hash && !skip_hash_check {
        return Err("snapshot missing hash but --skip-hash-check=false".into());
    }
    let db = if has_hash {
        let (db, sha) = data.split_at(data.len() - 32);
        if !skip_hash_check {
            let got = Sha256::digest(db);
            if got.as_slice() != sha {
                return Err(format!(
                    "expected sha256 {}, got {}",
                    hex::encode(sha),
                    hex::encode(got)
                ));
            }
        }
        db
    } else {
        data
    };
    if db.len() < PAGE || u32::from_le_bytes([db[16], db[17], db[18], db[19]]) != BOLT_MAGIC {
        return Err("invalid database".into());
    }
    let mut n = [0u8; 8];
    n.copy_from_slice(&db[64..72]);
    let len = usize::try_from(u64::from_le_bytes(n)).unwrap_or(usize::MAX);
    let json = db
        .get(PAGE..PAGE.saturating_add(len))
        .ok_or("file size too small")?;
    let body: SnapshotBody =
        serde_json::from_slice(json).map_err(|e| format!("invalid database: {e}"))?;
    if body.format != FORMAT {
        return Err(format!("unknown snapshot format {:?}", body.format));
    }
    Ok(body)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body() -> SnapshotBody {
        let mut store = kube_objects::fresh_store();
        assert!(store.insert(
            "/registry/configmaps/default/a",
            json!({"metadata": {"name": "a", "namespace": "default"}, "data": {"k": "v"}})
        ));
        SnapshotBody {
            format: FORMAT.into(),
            cluster_id: "c1".into(),
            members: vec![SnapshotMember {
                id: 7,
                name: "cp-1".into(),
                peer_urls: vec!["https://127.0.0.1:2380".into()],
            }],
            store,
        }
    }

    #[test]
    fn snapshots_have_the_etcd_shape_and_round_trip() {
        let b = body();
        let snap = encode_snapshot(&b).unwrap();
        assert_eq!(snap.len() % 512, 32, "page-aligned database plus a SHA-256");
        assert_eq!(&snap[16..20], &BOLT_MAGIC.to_le_bytes());
        assert_eq!(decode_snapshot(&snap, false).unwrap(), b);
    }

    #[test]
    fn damaged_snapshots_are_refused_as_etcd_refuses_them() {
        let snap = encode_snapshot(&body()).unwrap();
        let truncated = &snap[..snap.len() - 100];
        assert!(
            decode_snapshot(truncated, false)
                .unwrap_err()
                .contains("missing hash")
        );
        let mut flipped = snap.clone();
        flipped[PAGE + 3] ^= 1;
        assert!(
            decode_snapshot(&flipped, false)
                .unwrap_err()
                .starts_with("expected sha256")
        );
        // Without the hash check the flipped byte reaches the JSON (it is inside it).
        assert!(decode_snapshot(&flipped, true).is_err());
        assert!(decode_snapshot(b"not a snapshot", true).is_err());
    }
}
