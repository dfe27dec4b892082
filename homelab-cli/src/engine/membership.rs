//! Talos cluster membership: nodes joining (scale out), leaving (scale in) and stale etcd
//! members of nodes that are gone (repair).
//!
//! Scale in follows the order Talos documents for removing a node ("Scaling down" in the
//! Talos docs; `talosctl reset` runs the same sequence): cordon and drain the Kubernetes
//! node (evictions that honour PodDisruptionBudgets), on a control plane leave etcd
//! (`EtcdLeaveCluster`, or `EtcdRemoveMemberByID` from a healthy peer when the node does
//! not answer), `Reset` (graceful, wiping STATE and EPHEMERAL), delete the Kubernetes Node,
//! and only then destroy the VM. One node at a time, after any node joining in the same run.
//!
//! The plan refuses to remove the last control plane, and to remove more etcd members in one
//! run than the cluster's fault tolerance allows (3 → 1 in one go), and says how to get
//! there one safe step at a time. [`check_removal`] is that rule, a pure function.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use serde::Serialize;
use talos_api::client::{Client, ResetOptions};
use talos_api::kube::{DrainOptions, KubeClient};
use talos_api::secrets::SecretsBundle;

use super::apply::Env;
use super::graph::{Step, StepError};
use super::observed::TalosObserved;
use super::plan::{Action, Plan};
use super::talos;
use crate::model::desired::{Desired, TalosCluster};

/// The quorum of an `n`-member etcd cluster.
pub fn quorum(n: usize) -> usize {
    n / 2 + 1
}

/// An etcd member as observed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberObs {
    /// The member ID.
    pub id: u64,
    /// Its name (the node's hostname).
    pub name: String,
    /// The address of its peer URL.
    pub ip: Option<IpAddr>,
    /// Its node answers on the Talos API with our configuration.
    pub healthy: bool,
}

/// The cluster's membership as observed (empty when no cluster runs yet).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MembershipObserved {
    /// etcd and Kubernetes could be read.
    pub read: bool,
    /// etcd members.
    pub members: Vec<MemberObs>,
    /// Kubernetes Node names with their InternalIP.
    pub kube_nodes: Vec<(String, Option<IpAddr>)>,
}

/// A membership change `up` makes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum MembershipAction {
    /// Take a node out of the cluster before its VM is destroyed.
    RemoveNode {
        /// VMID.
        vmid: u32,
        /// Node name (hostname, Kubernetes node name).
        name: String,
        /// Whether it is a control plane (etcd member).
        control_plane: bool,
        /// Its etcd member ID.
        #[serde(skip_serializing_if = "Option::is_none")]
        etcd_member: Option<u64>,
        /// Its address, from etcd or Kubernetes.
        #[serde(skip_serializing_if = "Option::is_none")]
        address: Option<IpAddr>,
        /// It answers on the Talos API (else etcd membership is removed from a peer).
        reachable: bool,
        /// A Kubernetes Node object exists for it.
        kubernetes_node: bool,
    },
    /// Remove the etcd member of a node that is gone (its VM was destroyed or recreated).
    RemoveMember {
        /// Member name.
        name: String,
        /// Member ID.
        member_id: u64,
        /// The declared node that will join in its place, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        vmid: Option<u32>,
    },
}

/// Why a plan is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MembershipError {
    /// Every control plane would go.
    #[error(
        "removing {} would remove the last etcd member: the cluster would be lost",
        names.join(", ")
    )]
    LastControlPlane {
        /// The control planes being removed.
        names: Vec<String>,
    },
    /// More members at once than the cluster tolerates losing.
    #[error(
        "removing {} control planes at once ({}) would take etcd from {members} to {} members: more than the {tolerance} failure(s) a {members}-member cluster tolerates, so quorum could be lost in one step",
        names.len(), names.join(", "), members - names.len()
    )]
    TooManyAtOnce {
        /// The control planes being removed.
        names: Vec<String>,
        /// Members now.
        members: usize,
        /// How many may go at once.
        tolerance: usize,
    },
    /// A removal etcd would refuse: members are already down.
    #[error(
        "removing {name} would leave {healthy_after} healthy of {members_after} etcd members, below the quorum of {quorum}: {} already down",
        down.join(", ")
    )]
    Unhealthy {
        /// The member whose removal would break quorum.
        name: String,
        /// Healthy members left.
        healthy_after: usize,
        /// Members left.
        members_after: usize,
        /// Their quorum.
        quorum: usize,
        /// The members that are down.
        down: Vec<String>,
    },
}

impl MembershipError {
    /// What to do instead.
    pub fn help(&self) -> String {
        match self {
            MembershipError::LastControlPlane { .. } => {
                "keep at least one control plane in homelab.yaml; to remove the whole cluster use `homelab-cli down`".into()
            }
            MembershipError::TooManyAtOnce {
                names, tolerance, ..
            } => format!(
                "remove at most {tolerance} control plane(s) per `homelab-cli up`: put back all but {} of {} in homelab.yaml, run `up`, then remove the next one and run `up` again (etcd keeps a quorum at every step)",
                tolerance,
                names.join(", ")
            ),
            MembershipError::Unhealthy { down, .. } => format!(
                "bring {} back (or remove it first: its stale member is removed by `up` when its VM is gone), then remove this node",
                down.join(", ")
            ),
        }
    }
}

/// Whether removing `removing` (member IDs, in that order) keeps etcd safe: not the last
/// member; at most `max(1, n - quorum(n))` healthy members at once; and, removing down
/// members first, etcd's own check for each healthy one (`mayRemoveMember`: active members
/// left must make a quorum of those left).
pub fn check_removal(members: &[MemberObs], removing: &[u64]) -> Result<(), MembershipError> {
    if removing.is_empty() {
        return Ok(());
    }
    let gone: Vec<&MemberObs> = members
        .iter()
        .filter(|m| removing.contains(&m.id))
        .collect();
    let names = |ms: &[&MemberObs]| ms.iter().map(|m| m.name.clone()).collect::<Vec<_>>();
    if gone.len() >= members.len() {
        return Err(MembershipError::LastControlPlane {
            names: names(&gone),
        });
    }
    let n = members.len();
    let tolerance = (n - quorum(n)).max(1);
    let healthy_gone: Vec<&MemberObs> = gone.iter().copied().filter(|m| m.healthy).collect();
    if healthy_gone.len() > tolerance {
        return Err(MembershipError::TooManyAtOnce {
            names: names(&healthy_gone),
            members: n,
            tolerance,
        });
    }
    let mut left = n - (gone.len() - healthy_gone.len());
    let mut active = members.iter().filter(|m| m.healthy).count();
    for m in healthy_gone {
        let (members_after, healthy_after) = (left - 1, active - 1);
        if healthy_after < quorum(members_after) {
            return Err(MembershipError::Unhealthy {
                name: m.name.clone(),
                healthy_after,
                members_after,
                quorum: quorum(members_after),
                down: members
                    .iter()
                    .filter(|x| !x.healthy)
                    .map(|x| x.name.clone())
                    .collect(),
            });
        }
        left -= 1;
        active -= 1;
    }
    Ok(())
}

/// Add the membership actions to `plan` (see the module docs).
pub fn plan(
    desired: &Desired,
    talos: &TalosObserved,
    m: &MembershipObserved,
    mut plan: Plan,
) -> Result<Plan, MembershipError> {
    if !m.read || desired.talos.is_none() {
        return Ok(plan);
    }
    let member = |name: &str| m.members.iter().find(|x| x.name == name);
    let kube = |name: &str| m.kube_nodes.iter().find(|(n, _)| n == name);
    let mut out = Vec::new();
    let mut removing = Vec::new();
    let mut deleted_names = BTreeSet::new();
    for a in std::mem::take(&mut plan.actions) {
        if let Action::Delete { vmid, name, .. } = &a {
            let mem = member(name);
            let kn = kube(name);
            if mem.is_some() || kn.is_some() {
                deleted_names.insert(name.clone());
                if let Some(x) = mem {
                    removing.push(x.id);
                }
                out.push(Action::Membership(MembershipAction::RemoveNode {
                    vmid: *vmid,
                    name: name.clone(),
                    control_plane: mem.is_some(),
                    etcd_member: mem.map(|x| x.id),
                    address: mem.and_then(|x| x.ip).or_else(|| kn.and_then(|k| k.1)),
                    reachable: mem.is_some_and(|x| x.healthy) || (mem.is_none() && kn.is_some()),
                    kubernetes_node: kn.is_some(),
                }));
            }
        }
        out.push(a);
    }
    // Stale members: of a declared control plane whose VM is (re)created or does not run its
    // configuration, or of a node that is neither declared nor has a VM any more.
    let recreated: BTreeSet<u32> = out
        .iter()
        .filter_map(|a| match a {
            Action::Create { vmid, .. } | Action::Replace { vmid, .. } => Some(*vmid),
            _ => None,
        })
        .collect();
    let mut stale = Vec::new();
    for x in m.members.iter().filter(|x| !x.healthy) {
        if deleted_names.contains(&x.name) {
            continue;
        }
        match desired.guests.iter().find(|g| g.name == x.name) {
            Some(g) if recreated.contains(&g.vmid) || !talos.configured.contains(&g.vmid) => {
                stale.push(MembershipAction::RemoveMember {
                    name: x.name.clone(),
                    member_id: x.id,
                    vmid: Some(g.vmid),
                });
            }
            Some(_) => {}
            None => stale.push(MembershipAction::RemoveMember {
                name: x.name.clone(),
                member_id: x.id,
                vmid: None,
            }),
        }
    }
    let stale_ids: Vec<u64> = stale
        .iter()
        .filter_map(|s| match s {
            MembershipAction::RemoveMember { member_id, .. } => Some(*member_id),
            MembershipAction::RemoveNode { .. } => None,
        })
        .collect();
    check_removal(&m.members, &[stale_ids, removing].concat())?;
    let mut actions: Vec<Action> = stale.into_iter().map(Action::Membership).collect();
    actions.extend(out);
    plan.actions = actions;
    Ok(plan.finish())
}

/// The plan text of a membership action.
pub fn plan_text(a: &MembershipAction, paint: &dyn Fn(&str) -> String) -> String {
    match a {
        MembershipAction::RemoveNode {
            name,
            control_plane,
            etcd_member,
            reachable,
            kubernetes_node,
            ..
        } => {
            let mut steps = Vec::new();
            if *kubernetes_node {
                steps.push(
                    "cordon and drain the Kubernetes node (evictions honour PodDisruptionBudgets)"
                        .to_string(),
                );
            }
            if *control_plane {
                let id = etcd_member.map(|i| format!(" {i:x}")).unwrap_or_default();
                steps.push(if *reachable {
                    format!("leave etcd (EtcdLeaveCluster, member{id})")
                } else {
                    format!(
                        "remove etcd member{id} from a healthy control plane (the node does not answer)"
                    )
                });
            }
            if *reachable {
                steps.push("reset it (graceful, wiping STATE and EPHEMERAL)".into());
            }
            if *kubernetes_node {
                steps.push("delete the Kubernetes Node object".into());
            }
            steps.push("then destroy the VM".into());
            let role = if *control_plane {
                "control plane"
            } else {
                "worker"
            };
            let mut s =
                format!("  # {role} \"{name}\" leaves the cluster first, one node at a time:\n");
            for (i, st) in steps.iter().enumerate() {
                s.push_str(&format!("  #   {}. {st}\n", i + 1));
            }
            s.push_str(&format!("  {} talos_membership \"{name}\"\n", paint("-")));
            s
        }
        MembershipAction::RemoveMember {
            name,
            member_id,
            vmid,
        } => {
            let why = if vmid.is_some() {
                "its node was recreated and joins again as a new member"
            } else {
                "its node is gone"
            };
            format!(
                "  # stale etcd member {member_id:x} \"{name}\" will be removed from a healthy control plane ({why})\n  {} etcd_member \"{name}\"\n",
                paint("-")
            )
        }
    }
}

/// Read etcd members (from the first declared control plane that answers) and Kubernetes
/// nodes. Nothing is read before the cluster is bootstrapped.
pub async fn observe(
    desired: &Desired,
    talos_obs: &TalosObserved,
    bundle: Option<&SecretsBundle>,
) -> MembershipObserved {
    let mut out = MembershipObserved::default();
    let (Some(cluster), Some(bundle)) = (&desired.talos, bundle) else {
        return out;
    };
    if !talos_obs.bootstrapped {
        return out;
    }
    // The nodes that answered `Version` over mTLS in this observation run our config
    // already: not probed a second time (one read of each kind per node and plan).
    let answered: BTreeSet<IpAddr> = desired
        .guests
        .iter()
        .filter(|g| talos_obs.versions.contains_key(&g.vmid))
        .filter_map(|g| g.talos.as_ref()?.ip)
        .collect();
    let Some(members) = read_members(desired, cluster, bundle, &answered).await else {
        return out;
    };
    out.members = members;
    if let Some(k) = kube_client(desired, cluster, bundle).await
        && let Ok(nodes) = k.nodes().await
    {
        let list = k.get("/api/v1/nodes").await.ok();
        out.kube_nodes = nodes
            .into_iter()
            .map(|n| {
                let ip = list.as_ref().and_then(|l| internal_ip(l, &n.name));
                (n.name, ip)
            })
            .collect();
    }
    out.read = true;
    out
}

/// Whether the node answers over mTLS with our client certificate (it runs our
/// configuration). Unlike a maintenance-mode probe, a node that does not answer at all is
/// `false`.
pub async fn runs_config(cluster: &TalosCluster, bundle: &SecretsBundle, ip: IpAddr) -> bool {
    let Ok(c) = talos::admin_client(cluster, bundle, ip).and_then(|b| b.build()) else {
        return false;
    };
    matches!(
        tokio::time::timeout(talos::PROBE_TIMEOUT, c.version()).await,
        Ok(Ok(_))
    )
}

/// The etcd members, each probed on the Talos API unless it is in `answered` (nodes known to
/// run our config already) (`None`: no control plane answers).
pub async fn read_members(
    desired: &Desired,
    cluster: &TalosCluster,
    bundle: &SecretsBundle,
    answered: &BTreeSet<IpAddr>,
) -> Option<Vec<MemberObs>> {
    let (_, lists) = control_plane_with_members(desired, cluster, bundle, &[], answered).await?;
    let mut out = Vec::new();
    for m in lists.into_iter().flat_map(|l| l.members) {
        let ip = m
            .peer_urls
            .first()
            .and_then(|u| url::Url::parse(u).ok())
            .and_then(|u| u.host_str().map(|h| h.trim_matches(['[', ']']).to_string()))
            .and_then(|h| h.parse::<IpAddr>().ok());
        let healthy = match ip {
            Some(ip) => answered.contains(&ip) || runs_config(cluster, bundle, ip).await,
            None => false,
        };
        out.push(MemberObs {
            id: m.id,
            name: m.hostname,
            ip,
            healthy,
        });
    }
    Some(out)
}

fn internal_ip(list: &serde_json::Value, name: &str) -> Option<IpAddr> {
    list["items"]
        .as_array()?
        .iter()
        .find(|n| n["metadata"]["name"] == name)?["status"]["addresses"]
        .as_array()?
        .iter()
        .find(|a| a["type"] == "InternalIP")?["address"]
        .as_str()?
        .parse()
        .ok()
}

/// An admin client to the first declared control plane (not in `except`) whose etcd
/// answers with a member list.
pub async fn healthy_control_plane(
    desired: &Desired,
    cluster: &TalosCluster,
    bundle: &SecretsBundle,
    except: &[IpAddr],
) -> Option<Client> {
    control_plane_with_members(desired, cluster, bundle, except, &BTreeSet::new())
        .await
        .map(|(c, _)| c)
}

/// [`healthy_control_plane`] with the member list it read; nodes in `answered` are known to
/// run our config and are not probed first.
async fn control_plane_with_members(
    desired: &Desired,
    cluster: &TalosCluster,
    bundle: &SecretsBundle,
    except: &[IpAddr],
    answered: &BTreeSet<IpAddr>,
) -> Option<(Client, Vec<talos_api::proto::machine::EtcdMembers>)> {
    for ip in talos::control_plane_ips(desired) {
        if except.contains(&ip)
            || (!answered.contains(&ip) && !runs_config(cluster, bundle, ip).await)
        {
            continue;
        }
        let Ok(b) = talos::admin_client(cluster, bundle, ip) else {
            continue;
        };
        let Ok(c) = b.build() else { continue };
        if let Ok(lists) = c.etcd_member_list(false).await {
            return Some((c, lists));
        }
    }
    None
}

/// A Kubernetes client to the first declared control plane whose API answers.
pub async fn kube_client(
    desired: &Desired,
    cluster: &TalosCluster,
    bundle: &SecretsBundle,
) -> Option<KubeClient> {
    for ip in talos::control_plane_ips(desired) {
        let server = match ip {
            IpAddr::V4(v4) => format!("https://{v4}:6443"),
            IpAddr::V6(v6) => format!("https://[{v6}]:6443"),
        };
        let Ok(kc) = talos_api::kubeconfig::generate_admin(bundle, &cluster.cluster_name, &server)
        else {
            continue;
        };
        let Ok(k) = KubeClient::from_kubeconfig(&kc) else {
            continue;
        };
        if k.nodes().await.is_ok() {
            return Some(k);
        }
    }
    None
}

/// The step of a membership action.
pub fn step(env: Arc<Env>, a: &Action) -> Option<Step> {
    let Action::Membership(m) = a else {
        return None;
    };
    let m = m.clone();
    Some(match &m {
        MembershipAction::RemoveNode { vmid, name, .. } => Step {
            id: format!("leave:{vmid}"),
            label: format!("take \"{name}\" out of the cluster (drain, leave etcd, reset)"),
            deps: Vec::new(),
            run: async move { remove_node(&env, &m).await }.boxed(),
        },
        MembershipAction::RemoveMember {
            name, member_id, ..
        } => Step {
            id: format!("etcd-rm:{member_id:x}"),
            label: format!("remove stale etcd member {member_id:x} \"{name}\""),
            deps: Vec::new(),
            run: async move {
                let id = *match &m {
                    MembershipAction::RemoveMember { member_id, .. } => member_id,
                    MembershipAction::RemoveNode { .. } => &0,
                };
                remove_member(&env, id).await
            }
            .boxed(),
        },
    })
}

/// Order the membership steps: joins are awaited (scale out before scale in); removals run
/// one after the other; a VM is destroyed after its node left; a recreated node is
/// configured after its stale member is gone.
pub fn order(env: &Arc<Env>, plan: &Plan, steps: &mut Vec<Step>) {
    let bootstrapping = steps.iter().any(|s| s.id == "bootstrap");
    let mut joins = Vec::new();
    if !bootstrapping {
        for a in &plan.actions {
            if let Action::TalosApplyConfig { vmid, name, role } = a {
                let e = env.clone();
                let (vmid, name, cp) = (*vmid, name.clone(), role == "controlplane");
                let id = format!("join:{vmid}");
                joins.push(id.clone());
                steps.push(Step {
                    id,
                    label: format!("wait for \"{name}\" to join the cluster"),
                    deps: vec![format!("talos:{vmid}")],
                    run: async move { wait_joined(&e, &name, cp).await }.boxed(),
                });
            }
        }
    }
    let configure: Vec<String> = steps
        .iter()
        .filter(|s| s.id.starts_with("talos:"))
        .map(|s| s.id.clone())
        .collect();
    let mut previous: Option<String> = None;
    for a in &plan.actions {
        let Action::Membership(m) = a else { continue };
        match m {
            MembershipAction::RemoveNode { vmid, .. } => {
                let id = format!("leave:{vmid}");
                if let Some(s) = steps.iter_mut().find(|s| s.id == id) {
                    s.deps.extend(configure.iter().cloned());
                    s.deps.extend(joins.iter().cloned());
                    s.deps.extend(previous.iter().cloned());
                }
                if let Some(s) = steps.iter_mut().find(|s| s.id == format!("delete:{vmid}")) {
                    s.deps.push(id.clone());
                }
                previous = Some(id);
            }
            MembershipAction::RemoveMember {
                member_id, vmid, ..
            } => {
                let id = format!("etcd-rm:{member_id:x}");
                if let Some(v) = vmid
                    && let Some(s) = steps.iter_mut().find(|s| s.id == format!("talos:{v}"))
                {
                    s.deps.push(id);
                }
            }
        }
    }
}

async fn remove_member(env: &Env, id: u64) -> Result<String, StepError> {
    let (cluster, bundle) = env.cluster_and_bundle()?;
    let peer = healthy_control_plane(&env.desired, cluster, bundle, &[])
        .await
        .ok_or_else(|| {
            StepError::new("no healthy control plane answers to remove the stale etcd member")
                .hint("`homelab-cli status` shows which nodes run; etcd needs a quorum to change its members")
        })?;
    match peer.etcd_remove_member_by_id(id).await {
        Ok(_) => Ok(format!("member {id:x} removed")),
        Err(e) if e.is_not_found() => Ok(format!("member {id:x} was already gone")),
        Err(e) => Err(StepError::new(format!("removing etcd member {id:x}: {e}"))),
    }
}

async fn wait_joined(env: &Env, name: &str, control_plane: bool) -> Result<String, StepError> {
    let (cluster, bundle) = env.cluster_and_bundle()?;
    let opts = talos_api::health::WaitOptions::new(env.timeouts.talos)
        .interval(env.timeouts.poll.min(Duration::from_secs(1)))
        .progress(&super::waits::report);
    let what = if control_plane {
        format!("{name} in the etcd member list and Ready in Kubernetes")
    } else {
        format!("{name} Ready in Kubernetes")
    };
    super::waits::announce(&what, opts.deadline);
    talos_api::health::wait_for(&what, &opts, || async {
        let err = |m: String| talos_api::Error::InvalidConfig(m);
        if control_plane {
            let c = healthy_control_plane(&env.desired, cluster, bundle, &[])
                .await
                .ok_or_else(|| err("no control plane answers".into()))?;
            let lists = c.etcd_member_list(false).await?;
            if !lists
                .iter()
                .flat_map(|l| &l.members)
                .any(|m| m.hostname == name)
            {
                return Err(err(format!("{name} is not an etcd member yet")));
            }
        }
        let k = kube_client(&env.desired, cluster, bundle)
            .await
            .ok_or_else(|| err("the Kubernetes API does not answer".into()))?;
        let nodes = k.nodes().await?;
        match nodes.iter().find(|n| n.name == name) {
            Some(n) if n.ready => Ok(()),
            Some(_) => Err(err(format!("node {name} is not Ready yet"))),
            None => Err(err(format!("node {name} has not registered yet"))),
        }
    })
    .await
    .map_err(|e| StepError::new(format!("{name} did not join: {e}")))?;
    Ok(if control_plane {
        "etcd member, node Ready".into()
    } else {
        "node Ready".into()
    })
}

async fn remove_node(env: &Env, m: &MembershipAction) -> Result<String, StepError> {
    let MembershipAction::RemoveNode {
        name,
        control_plane,
        etcd_member,
        address,
        kubernetes_node,
        ..
    } = m
    else {
        return Err(StepError::new("not a node removal"));
    };
    let (cluster, bundle) = env.cluster_and_bundle()?;
    let mut done = Vec::new();
    let kube =
        if *kubernetes_node {
            Some(
                kube_client(&env.desired, cluster, bundle)
                    .await
                    .ok_or_else(|| {
                        StepError::new(format!(
                "no control plane's Kubernetes API answers: cannot drain {name}"
            ))
            .hint("nothing was changed; re-run `homelab-cli up` once the control planes run")
                    })?,
            )
        } else {
            None
        };
    // 1. Cordon and drain.
    if let Some(k) = &kube {
        super::waits::announce(
            &format!("{name} to drain (evictions honour PodDisruptionBudgets)"),
            env.timeouts.talos,
        );
        let opts = DrainOptions {
            timeout: env.timeouts.talos,
            interval: env.timeouts.poll.min(Duration::from_secs(2)),
            cordon_for_talos: false,
        };
        match k.drain(name, &opts).await {
            Ok(r) => done.push(format!(
                "drained ({} evicted{})",
                r.evicted.len(),
                if r.refusals.is_empty() {
                    String::new()
                } else {
                    format!(", {} refusal(s) waited out", r.refusals.len())
                }
            )),
            Err(talos_api::Error::DrainTimeout { blocked, after, .. }) => {
                return Err(StepError::new(format!(
                    "{name} could not be drained within {}s; still on it:\n{}",
                    after.as_secs(),
                    blocked
                        .iter()
                        .map(|b| format!("  - {b}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                ))
                .hint(format!(
                    "{name} stays cordoned and in the cluster, its VM untouched: relax the PodDisruptionBudget or give the workload room elsewhere, then re-run `homelab-cli up` (or wait longer with --talos-timeout)"
                )));
            }
            Err(e) => return Err(StepError::new(format!("draining {name}: {e}"))),
        }
    }
    // 2. Leave etcd.
    let node_client = match address {
        Some(ip) if runs_config(cluster, bundle, *ip).await => Some(
            talos::admin_client(cluster, bundle, *ip)
                .and_then(|b| b.build())
                .map_err(|e| StepError::new(format!("Talos client for {name}: {e}")))?,
        ),
        _ => None,
    };
    if *control_plane {
        match &node_client {
            Some(c) => {
                c.etcd_leave_cluster().await.map_err(|e| {
                    StepError::new(format!("{name} could not leave etcd: {e}")).hint(
                        "etcd refuses a change that would break its quorum: check `homelab-cli status`",
                    )
                })?;
                done.push("left etcd".into());
            }
            None => {
                let id = etcd_member.ok_or_else(|| {
                    StepError::new(format!(
                        "{name} does not answer and its etcd member is unknown"
                    ))
                })?;
                remove_member(env, id).await?;
                done.push(format!("etcd member {id:x} removed from a peer"));
            }
        }
    }
    // 3. Reset: graceful, STATE and EPHEMERAL wiped, powered off (the VM goes next).
    if let Some(c) = &node_client {
        c.reset_with(&ResetOptions::graceful_wipe_state(false))
            .await
            .map_err(|e| StepError::new(format!("resetting {name}: {e}")))?;
        let ip = address.ok_or_else(|| StepError::new("no address"))?;
        let opts = talos_api::health::WaitOptions::new(env.timeouts.talos)
            .interval(env.timeouts.poll.min(Duration::from_millis(500)));
        talos_api::health::wait_for(&format!("{name} to reset"), &opts, || async move {
            if runs_config(cluster, bundle, ip).await {
                Err(talos_api::Error::InvalidConfig(
                    "still running its configuration".into(),
                ))
            } else {
                Ok(())
            }
        })
        .await
        .map_err(|e| StepError::new(format!("{name} did not reset: {e}")))?;
        done.push("reset".into());
    }
    // 4. The Node object.
    if let Some(k) = &kube {
        match k.delete_node(name).await {
            Ok(_) => done.push("Kubernetes node deleted".into()),
            Err(e) => return Err(StepError::new(format!("deleting node {name}: {e}"))),
        }
    }
    Ok(done.join(", "))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn members(healthy: &[bool]) -> Vec<MemberObs> {
        healthy
            .iter()
            .enumerate()
            .map(|(i, h)| MemberObs {
                id: i as u64 + 1,
                name: format!("cp-{}", i + 1),
                ip: None,
                healthy: *h,
            })
            .collect()
    }

    #[test]
    fn quorum_and_fault_tolerance() {
        assert_eq!([1, 2, 3, 4, 5].map(quorum), [1, 2, 2, 3, 3], "etcd's n/2+1");
        let three = members(&[true; 3]);
        let five = members(&[true; 5]);
        assert_eq!(check_removal(&three, &[]), Ok(()));
        assert_eq!(check_removal(&three, &[3]), Ok(()));
        // 5 → 3 tolerates two at once; 3 → 1 does not.
        assert_eq!(check_removal(&five, &[4, 5]), Ok(()));
        assert!(matches!(
            check_removal(&five, &[3, 4, 5]),
            Err(MembershipError::TooManyAtOnce { tolerance: 2, .. })
        ));
        let e = check_removal(&three, &[2, 3]).unwrap_err();
        assert!(
            matches!(
                e,
                MembershipError::TooManyAtOnce {
                    members: 3,
                    tolerance: 1,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("from 3 to 1 members"), "{e}");
        assert!(e.help().contains("at most 1 control plane"), "{}", e.help());
        // 2 → 1 is one step, and allowed.
        assert_eq!(check_removal(&members(&[true, true]), &[2]), Ok(()));
        // Never the last one.
        assert!(matches!(
            check_removal(&members(&[true]), &[1]),
            Err(MembershipError::LastControlPlane { .. })
        ));
    }

    #[test]
    fn down_members_go_first_and_count_against_quorum() {
        // cp-3 is down: removing it is repair; removing healthy cp-2 as well would leave
        // one of one... allowed order: cp-3 (down) first, then cp-2 with 1 of 1 healthy.
        let m = members(&[true, true, false]);
        assert_eq!(check_removal(&m, &[3]), Ok(()));
        assert_eq!(check_removal(&m, &[3, 2]), Ok(()));
        // Removing a healthy member while another is down: 1 healthy of 2, quorum 2.
        let e = check_removal(&m, &[2]).unwrap_err();
        assert!(
            matches!(&e, MembershipError::Unhealthy { healthy_after: 1, members_after: 2, quorum: 2, down, .. } if down == &["cp-3"]),
            "{e:?}"
        );
    }
}
