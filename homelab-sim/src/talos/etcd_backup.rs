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

use std::sync::Arc;

use super::kube_objects::{self, SnapshotBody, SnapshotMember};
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
    kube_objects::encode_snapshot(&SnapshotBody {
        format: kube_objects::FORMAT.into(),
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
    let body = kube_objects::decode_snapshot(&data, skip_hash_check).map_err(|e| {
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
