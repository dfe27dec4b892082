//! etcd membership shared by the simulated control planes of a cluster: member IDs, a
//! leader, quorum arithmetic, joins, leaves and removals, as Talos drives etcd.
//!
//! Read from:
//! - siderolabs/talos `internal/app/machined/pkg/system/services/etcd.go`, `addMember`: a
//!   control plane with an empty data directory lists the members, removes any member
//!   with its own hostname (a stale one from an earlier life of the node), then adds itself
//!   (as a learner, promoted once in sync; the simulator promotes at once). `Bootstrap`
//!   starts a new single-member cluster on one node.
//! - siderolabs/talos `internal/app/machined/internal/server/v1alpha1/v1alpha1_server.go`,
//!   `EtcdMemberList` / `EtcdRemoveMemberByID` / `EtcdLeaveCluster` (all behind
//!   `machinehelper.CheckControlplane`: "`<api>` is only available on control plane nodes",
//!   Unimplemented) and `internal/pkg/etcd/etcd.go` `LeaveCluster` (remove the local member;
//!   "member not found" counts as done; then stop etcd and empty its data directory).
//! - etcd-io/etcd `server/etcdserver/server.go`: `mayRemoveMember` (a member that is down
//!   may always be removed; removing a live one needs `active-1 >= 1+(n-1)/2`, else
//!   `etcdserver: unhealthy cluster`), `mayAddMember` (every voting member connected, else
//!   `etcdserver: unhealthy cluster`), and `clientv3.WithRequireLeader` calls failing with
//!   `etcdserver: no leader` without a quorum.
//!
//! State is kept in `<state_dir>/talos-etcd.json` (one entry per cluster ID), so later
//! processes on the same state directory see the same members; every join and removal is
//! written to the event log (`etcd-join:<id>`, `etcd-remove:<id>`, in hex as etcdctl
//! prints IDs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::Inner;
use super::node::Node;

/// One etcd member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The member ID (etcd's uint64).
    pub id: u64,
    /// The member name: the node's hostname.
    pub name: String,
    /// `https://<ip>:2380`.
    pub peer_url: String,
    /// `https://<ip>:2379`.
    pub client_url: String,
    /// The Proxmox node of the VM the member runs in.
    pub pve_node: String,
    /// The VMID of that VM.
    pub vmid: u32,
}

/// One cluster's etcd.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtcdCluster {
    /// Members in the order they joined.
    pub members: Vec<Member>,
    /// The leader's ID while a quorum of members runs.
    pub leader: Option<u64>,
}

/// The quorum of an `n`-member cluster.
pub fn quorum(n: usize) -> usize {
    n / 2 + 1
}

/// etcd's refusals, with etcd's texts (`rpctypes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EtcdError {
    NotBootstrapped,
    NoLeader,
    MemberNotFound,
    Unhealthy,
    PeerUrlExists,
}

impl EtcdError {
    pub(crate) fn text(self) -> &'static str {
        match self {
            EtcdError::NotBootstrapped => "etcd is not running",
            EtcdError::NoLeader => "etcdserver: no leader",
            EtcdError::MemberNotFound => "etcdserver: member not found",
            EtcdError::Unhealthy => "etcdserver: unhealthy cluster",
            EtcdError::PeerUrlExists => "etcdserver: Peer URLs already exists",
        }
    }
}

/// All clusters' etcd, persisted.
#[derive(Debug, Default)]
pub(crate) struct Store {
    path: PathBuf,
    clusters: BTreeMap<String, EtcdCluster>,
}

impl Store {
    pub(crate) fn load(path: &Path) -> Result<Store, String> {
        let clusters = super::persist::read_json(path)?.unwrap_or_default();
        Ok(Store {
            path: path.to_path_buf(),
            clusters,
        })
    }

    fn save(&self) {
        super::persist::write_json(&self.path, &self.clusters, "the simulated etcd membership");
    }

    pub(crate) fn get(&self, cluster_id: &str) -> Option<&EtcdCluster> {
        self.clusters.get(cluster_id)
    }

    pub(crate) fn all(&self) -> BTreeMap<String, EtcdCluster> {
        self.clusters.clone()
    }
}

/// The node a member runs on, if it is running, installed, and still that member (its
/// etcd data directory holds this member ID).
fn member_node(rt: &Inner, m: &Member) -> Option<Arc<Node>> {
    rt.all_nodes().into_iter().find(|n| {
        n.key.0 == m.pve_node
            && n.key.1 == m.vmid
            && n.state().installed
            && n.state().etcd_member == Some(m.id)
            && n.servers.lock().map(|s| s.apid.is_some()).unwrap_or(false)
    })
}

/// Whether the member's etcd runs and answers.
fn started(rt: &Inner, m: &Member) -> bool {
    member_node(rt, m).is_some()
}

/// Re-elect when needed: the leader stays while it runs and a quorum runs; otherwise the
/// running member with the lowest ID leads, or nobody without a quorum.
fn elect(rt: &Inner, c: &mut EtcdCluster) -> Option<u64> {
    let up: Vec<u64> = c
        .members
        .iter()
        .filter(|m| started(rt, m))
        .map(|m| m.id)
        .collect();
    c.leader = if up.len() < quorum(c.members.len()) || c.members.is_empty() {
        None
    } else if c.leader.is_some_and(|l| up.contains(&l)) {
        c.leader
    } else {
        up.iter().min().copied()
    };
    c.leader
}

fn facts_of(node: &Node) -> Option<(String, String)> {
    let f = node.facts()?;
    Some((f.cluster_id, f.machine_type))
}

fn new_member(node: &Node) -> Member {
    Member {
        id: loop {
            let id: u64 = rand::random();
            if id != 0 {
                break id;
            }
        },
        name: node.hostname(),
        peer_url: format!("https://{}:2380", node.ip),
        client_url: format!("https://{}:2379", node.ip),
        pve_node: node.key.0.clone(),
        vmid: node.key.1,
    }
}

impl Inner {
    /// Read access to the membership.
    pub(crate) fn etcd_cluster(&self, cluster_id: &str) -> Option<EtcdCluster> {
        let mut store = self.etcd.lock().ok()?;
        let c = store.clusters.get_mut(cluster_id)?;
        elect(self, c);
        Some(c.clone())
    }

    /// `Bootstrap`: a new etcd cluster whose only member is `node` (its leader).
    pub(crate) fn etcd_bootstrap(&self, node: &Node) -> Result<u64, String> {
        let (cluster_id, _) = facts_of(node).ok_or("no config")?;
        let m = new_member(node);
        let id = m.id;
        node.update(|s| s.etcd_member = Some(id))
            .map_err(|e| e.to_string())?;
        if let Ok(mut store) = self.etcd.lock() {
            store.clusters.insert(
                cluster_id,
                EtcdCluster {
                    members: vec![m.clone()],
                    leader: Some(id),
                },
            );
            store.save();
        }
        self.record_event(m.vmid, &m.name, true, super::day2::EventKind::EtcdJoin(id));
        Ok(id)
    }

    /// The member `node` is, if its etcd data directory holds a member of its cluster.
    pub(crate) fn etcd_member_of(&self, node: &Node) -> Option<Member> {
        let (cluster_id, _) = facts_of(node)?;
        let id = node.state().etcd_member?;
        let store = self.etcd.lock().ok()?;
        store
            .get(&cluster_id)?
            .members
            .iter()
            .find(|m| m.id == id)
            .cloned()
    }

    /// `MemberRemove` as etcd checks it (see the module docs). `local` is the member
    /// serving the request (the node asked), when it is one.
    pub(crate) fn etcd_remove(
        &self,
        cluster_id: &str,
        id: u64,
        local: Option<u64>,
    ) -> Result<Member, EtcdError> {
        let mut store = self.etcd.lock().map_err(|_| EtcdError::NoLeader)?;
        let c = store
            .clusters
            .get_mut(cluster_id)
            .ok_or(EtcdError::NotBootstrapped)?;
        if elect(self, c).is_none() {
            return Err(EtcdError::NoLeader);
        }
        let target = c
            .members
            .iter()
            .find(|m| m.id == id)
            .cloned()
            .ok_or(EtcdError::MemberNotFound)?;
        let target_up = started(self, &target);
        // A member that is down is safe to remove: it is not part of the active quorum.
        if target_up || Some(id) == local {
            let active = c.members.iter().filter(|m| started(self, m)).count();
            let n = c.members.len();
            if active.saturating_sub(1) < 1 + (n.saturating_sub(1)) / 2 {
                return Err(EtcdError::Unhealthy);
            }
        }
        c.members.retain(|m| m.id != id);
        elect(self, c);
        store.save();
        drop(store);
        // The removed member's etcd stops for good ("the member has been permanently
        // removed from the cluster"); its data directory is useless from now on.
        if let Some(n) = self
            .all_nodes()
            .into_iter()
            .find(|n| n.state().etcd_member == Some(id))
        {
            let _ = n.update(|s| s.etcd_member = None);
        }
        self.record_event(
            target.vmid,
            &target.name,
            true,
            super::day2::EventKind::EtcdRemove(id),
        );
        Ok(target)
    }

    /// `addMember` for a control plane with an empty etcd data directory.
    pub(crate) fn etcd_join(&self, node: &Node) -> Result<u64, EtcdError> {
        let (cluster_id, _) = facts_of(node).ok_or(EtcdError::NotBootstrapped)?;
        if let Some(m) = self.etcd_member_of(node) {
            return Ok(m.id);
        }
        let name = node.hostname();
        let stale: Vec<u64> = {
            let mut store = self.etcd.lock().map_err(|_| EtcdError::NoLeader)?;
            let c = store
                .clusters
                .get_mut(&cluster_id)
                .ok_or(EtcdError::NotBootstrapped)?;
            if elect(self, c).is_none() {
                return Err(EtcdError::NoLeader);
            }
            c.members
                .iter()
                .filter(|m| m.name == name)
                .map(|m| m.id)
                .collect()
        };
        // A member with our hostname is an earlier life of this node: remove it first.
        for id in stale {
            match self.etcd_remove(&cluster_id, id, None) {
                Ok(_) | Err(EtcdError::MemberNotFound) => {}
                Err(e) => return Err(e),
            }
        }
        let m = new_member(node);
        let id = m.id;
        {
            let mut store = self.etcd.lock().map_err(|_| EtcdError::NoLeader)?;
            let c = store
                .clusters
                .get_mut(&cluster_id)
                .ok_or(EtcdError::NotBootstrapped)?;
            if elect(self, c).is_none() {
                return Err(EtcdError::NoLeader);
            }
            if c.members.iter().any(|x| x.peer_url == m.peer_url) {
                return Err(EtcdError::PeerUrlExists);
            }
            // `mayAddMember`: every voting member must be connected.
            if !c.members.iter().all(|x| started(self, x)) {
                return Err(EtcdError::Unhealthy);
            }
            c.members.push(m.clone());
            store.save();
        }
        let _ = node.update(|s| s.etcd_member = Some(id));
        self.record_event(m.vmid, &m.name, true, super::day2::EventKind::EtcdJoin(id));
        Ok(id)
    }
}

/// kubelet's registration at start, when the cluster runs (its etcd has a leader).
pub(crate) fn register_if_running(node: &Node) -> bool {
    let Some(rt) = node.runtime.upgrade() else {
        return false;
    };
    let Some((cluster_id, _)) = facts_of(node) else {
        return false;
    };
    rt.etcd_cluster(&cluster_id)
        .is_some_and(|c| c.leader.is_some())
        && rt.kube_register_node(node)
}

/// What a control plane's etcd service and every node's kubelet do after a boot: wait for
/// the cluster to be bootstrapped, join etcd (control planes), start the API server, and
/// register the Node object. Stops when done or when the node reboots or powers off.
pub(crate) fn after_boot(node: &Arc<Node>, registered: bool) {
    let node = node.clone();
    let generation = node.generation.load(std::sync::atomic::Ordering::SeqCst);
    tokio::spawn(async move {
        let mut registered = registered;
        loop {
            if node.generation.load(std::sync::atomic::Ordering::SeqCst) != generation {
                return;
            }
            let Some(rt) = node.runtime.upgrade() else {
                return;
            };
            let Some((cluster_id, machine_type)) = facts_of(&node) else {
                return;
            };
            // A cluster with a leader: bootstrapped, and not the dead record of an earlier
            // cluster whose control planes are all gone.
            let bootstrapped = rt
                .etcd_cluster(&cluster_id)
                .is_some_and(|c| c.leader.is_some());
            if bootstrapped {
                let mut etcd_ok = true;
                if machine_type == "controlplane" {
                    match rt.etcd_join(&node) {
                        Ok(_) => node.start_kube().await,
                        Err(e) => {
                            tracing::debug!(ip = %node.ip, error = e.text(), "etcd join: retrying");
                            etcd_ok = false;
                        }
                    }
                }
                if !registered {
                    registered = rt.kube_register_node(&node);
                }
                if etcd_ok && registered {
                    return;
                }
            }
            drop(rt);
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_arithmetic() {
        assert_eq!(quorum(1), 1);
        assert_eq!(quorum(2), 2);
        assert_eq!(quorum(3), 2);
        assert_eq!(quorum(4), 3);
        assert_eq!(quorum(5), 3);
    }
}
