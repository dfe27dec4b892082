//! `up`: turns a plan into steps of a dependency graph and runs them.
//!
//! schematic → ISO (once per node) → guests → Talos configuration (maintenance mode) →
//! bootstrap (once) → health. Deletions run independently. The encrypted outputs are
//! written afterwards by the caller, and only when they changed.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use proxmox_client::guest::{
    CloneOptions, ConfigUpdate, DestroyOptions, GuestCreate, RebootOptions, ResizeOptions,
    StartOptions, StopOptions, TemplateOptions,
};
use proxmox_client::requests::DownloadUrl;
use proxmox_client::{Client, Guest, ParamValue, Task, Upid, WaitOptions};
use talos_api::secrets::SecretsBundle;

use super::graph::{Step, StepError};
use super::observed::Observed;
use super::plan::{Action, Change, Plan};
use super::talos::{self, NodeState};
use crate::model::desired::{BootSource, Desired, DesiredGuest, GuestKind, TalosCluster};
use proxmox_client::property::parse_disk_ref as parse_disk;

mod cluster;
mod guests;
mod resources;
mod retry;

pub use self::cluster::control_planes;
use self::cluster::*;
use self::guests::*;
use self::resources::*;

/// How long to wait for things that take a while.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// A Proxmox task.
    pub task: Duration,
    /// A Talos node to answer, install, reboot, or a cluster to become healthy.
    pub talos: Duration,
    /// Interval between polls of Talos nodes.
    pub poll: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            task: Duration::from_secs(600),
            talos: Duration::from_secs(900),
            poll: Duration::from_secs(2),
        }
    }
}

/// What the steps share.
#[derive(Debug)]
pub struct Env {
    /// Proxmox.
    pub pve: Client,
    /// Proxmox as `root@pam` (password login), for the few settings only root may make.
    pub pve_root: Option<Client>,
    /// The Image Factory (only needed when an ISO is downloaded).
    pub factory: Option<talos_factory::FactoryClient>,
    /// Desired state.
    pub desired: Desired,
    /// What was observed when planning.
    pub observed: Observed,
    /// The Talos secrets bundle: set before the graph runs when it exists, else by the
    /// `talos-secrets` step.
    pub bundle: Arc<std::sync::OnceLock<SecretsBundle>>,
    /// Where and how a newly generated bundle is stored (encrypted) by `talos-secrets`.
    pub bundle_store: Option<(std::path::PathBuf, sops_age::EncryptOptions)>,
    /// Waits.
    pub timeouts: Timeouts,
    /// How bare-metal nodes boot (`None`: none declared).
    pub metal: Option<Arc<super::metal::MetalEnv>>,
    /// `up --restore-etcd`: bootstrap recovers etcd from this snapshot (in memory).
    pub restore_etcd: Option<crate::engine::etcd_backup::Plain>,
}

impl Env {
    /// The Talos cluster and its secrets bundle, which every Talos step needs.
    pub(crate) fn cluster_and_bundle(&self) -> Result<(&TalosCluster, &SecretsBundle), StepError> {
        let cluster = self
            .desired
            .talos
            .as_ref()
            .ok_or_else(|| StepError::new("no Talos cluster"))?;
        let bundle = self
            .bundle
            .get()
            .ok_or_else(|| StepError::new("no Talos secrets bundle"))?;
        Ok((cluster, bundle))
    }

    /// The declared guest `vmid`.
    pub(crate) fn desired_guest(&self, vmid: u32) -> Result<&DesiredGuest, StepError> {
        self.desired
            .guests
            .iter()
            .find(|g| g.vmid == vmid)
            .ok_or_else(|| StepError::new(format!("VMID {vmid} is not declared")))
    }

    /// The declared Talos node `vmid` and its static address (day-2 steps reach nodes
    /// there).
    pub(crate) fn static_talos_node(
        &self,
        vmid: u32,
    ) -> Result<(&DesiredGuest, IpAddr), StepError> {
        let d = self.desired_guest(vmid)?;
        let ip = d
            .talos
            .as_ref()
            .and_then(|t| t.ip)
            .ok_or_else(|| StepError::new(format!("{} has no static address", d.name)))?;
        Ok((d, ip))
    }
}

fn wait_opts(env: &Env) -> WaitOptions {
    WaitOptions {
        deadline: env.timeouts.task,
        ..WaitOptions::default()
    }
}

async fn wait(env: &Env, upid: Upid, what: &str) -> Result<(), StepError> {
    env.pve
        .wait_task(&upid, &wait_opts(env))
        .await
        .map(|_| ())
        .map_err(|e| StepError::new(format!("{what}: {e}")))
}

/// Waits for the task of a guest change.
async fn finish(env: &Env, task: Task, what: &str) -> Result<(), StepError> {
    task.wait(&wait_opts(env))
        .await
        .map(|_| ())
        .map_err(|e| StepError::new(format!("{what}: {e}")))
}

/// The typed handle of a guest, through `client` (the token, or root for root-only changes).
fn guest_on(client: &Client, node: &str, kind: GuestKind, vmid: u32) -> Guest {
    client.node(node).guest(kind.into(), vmid)
}

/// The step that creates a guest; with `replace_on`, it first destroys the one on that node.
fn create_step(
    e: Arc<Env>,
    vmid: u32,
    name: &str,
    kind: GuestKind,
    replace_on: Option<String>,
    deps: Vec<String>,
) -> Step {
    let verb = if replace_on.is_some() {
        "replace"
    } else {
        "create"
    };
    Step {
        id: format!("guest:{vmid}"),
        label: format!("{verb} {} {vmid} \"{name}\"", kind.noun()),
        deps,
        run: async move {
            if let Some(current_node) = replace_on {
                destroy(&e, &current_node, kind, vmid).await?;
            }
            let d = e.desired_guest(vmid)?;
            create(&e, d).await
        }
        .boxed(),
    }
}

/// The ISO download steps on `node` an update must wait for: those whose file one of its
/// changes points at (`ide2: local:iso/<file>,media=cdrom`). Download step ids are
/// `iso:<node>:<storage>:<filename>`.
fn iso_deps_of_update(
    node: &str,
    changes: &[Change],
    iso_steps: &BTreeMap<String, String>,
) -> Vec<String> {
    let Some(step) = iso_steps.get(node) else {
        return Vec::new();
    };
    let Some((storage, filename)) = step
        .strip_prefix(&format!("iso:{node}:"))
        .and_then(|rest| rest.split_once(':'))
    else {
        return Vec::new();
    };
    let volid = format!("{storage}:iso/{filename}");
    let uses = changes.iter().any(|c| {
        c.to.as_deref()
            .is_some_and(|v| v.split(',').next() == Some(volid.as_str()))
    });
    if uses { vec![step.clone()] } else { Vec::new() }
}

/// Build the steps for `plan`. Talos steps follow the guests they configure.
pub fn steps(env: &Arc<Env>, plan: &Plan) -> Vec<Step> {
    let mut out = Vec::new();
    let downloads: Vec<&Action> = plan
        .actions
        .iter()
        .filter(|a| matches!(a, Action::DownloadIso { .. }))
        .collect();
    if !downloads.is_empty() {
        let e = env.clone();
        out.push(Step {
            id: "schematic".into(),
            label: "register the image schematic with the factory".into(),
            deps: vec![],
            run: async move { register_schematic(&e).await }.boxed(),
        });
    }
    if plan
        .actions
        .iter()
        .any(|a| matches!(a, Action::GenerateTalosSecrets { .. }))
    {
        let e = env.clone();
        out.push(Step {
            id: "talos-secrets".into(),
            label: "generate the Talos secrets bundle (kept SOPS-encrypted)".into(),
            deps: vec![],
            run: async move { generate_bundle(&e).await }.boxed(),
        });
    }
    let mut iso_step_of_node: BTreeMap<String, String> = BTreeMap::new();
    // (node, template volid) -> download step.
    let mut tmpl_steps: BTreeMap<(String, String), String> = BTreeMap::new();
    let guest_deps = |vmid: u32,
                      node: &str,
                      isos: &BTreeMap<String, String>,
                      tmpls: &BTreeMap<(String, String), String>|
     -> Vec<String> {
        let mut deps: Vec<String> = isos.get(node).cloned().into_iter().collect();
        if let Some(t) = env
            .desired
            .guests
            .iter()
            .find(|g| g.vmid == vmid)
            .and_then(|g| g.template.clone())
            && let Some(step) = tmpls.get(&(node.to_string(), t))
        {
            deps.push(step.clone());
        }
        deps
    };
    // Volumes (cloud images, snippets) created by a step, by (node, volid).
    let mut volume_steps: BTreeMap<(String, String), String> = BTreeMap::new();
    // Guests created or changed in this run (a clone waits for its template, whatever
    // changes it: its creation, conversion or an update of its configuration).
    let created: std::collections::BTreeSet<u32> = plan
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Create { vmid, .. }
            | Action::Replace { vmid, .. }
            | Action::Update { vmid, .. } => Some(*vmid),
            _ => None,
        })
        .collect();
    let cloud_deps = |vmid: u32, vols: &BTreeMap<(String, String), String>| -> Vec<String> {
        let Some(g) = env.desired.guests.iter().find(|g| g.vmid == vmid) else {
            return vec![];
        };
        let mut deps = Vec::new();
        let mut volumes: Vec<&String> = g.snippet.iter().collect();
        deps.extend(
            super::pci::referenced_mappings(g.props.iter())
                .into_iter()
                .map(|id| format!("pcimap:{id}")),
        );
        match &g.boot {
            Some(BootSource::Image { volid }) => volumes.push(volid),
            Some(BootSource::Clone { template, .. }) if created.contains(template) => {
                deps.push(format!("guest:{template}"));
            }
            _ => {}
        }
        deps.extend(
            volumes
                .into_iter()
                .filter_map(|v| vols.get(&(g.node.clone(), v.clone())).cloned()),
        );
        deps
    };
    let mut talos_steps: Vec<(u32, String)> = Vec::new();
    for a in &plan.actions {
        let e = env.clone();
        match a.clone() {
            Action::DownloadIso {
                node,
                storage,
                filename,
                url,
            } => {
                let id = format!("iso:{node}:{storage}:{filename}");
                iso_step_of_node.insert(node.clone(), id.clone());
                out.push(Step {
                    id,
                    label: format!(
                        "download {} on {node}",
                        proxmox_client::VolumeId::new(
                            storage.as_str(),
                            proxmox_client::ContentKind::Iso,
                            filename.as_str()
                        )
                    ),
                    deps: vec!["schematic".into()],
                    run: async move { download(&e, &node, &storage, &filename, &url, "iso").await }
                        .boxed(),
                });
            }
            Action::DownloadTemplate {
                node,
                storage,
                filename,
                url,
            } => {
                let volid = proxmox_client::VolumeId::new(
                    storage.as_str(),
                    proxmox_client::ContentKind::Vztmpl,
                    filename.as_str(),
                )
                .to_string();
                let id = format!("tmpl:{node}:{volid}");
                tmpl_steps.insert((node.clone(), volid.clone()), id.clone());
                out.push(
                    Step {
                        id,
                        label: format!("download {volid} on {node}"),
                        deps: vec![],
                        run: async move {
                            download(&e, &node, &storage, &filename, &url, "vztmpl").await
                        }
                        .boxed(),
                    },
                );
            }
            Action::DownloadImage {
                node,
                storage,
                filename,
                url,
                checksum,
            } => {
                let volid = proxmox_client::VolumeId::new(
                    storage.as_str(),
                    proxmox_client::ContentKind::Import,
                    filename.as_str(),
                )
                .to_string();
                let id = format!("image:{node}:{volid}");
                volume_steps.insert((node.clone(), volid.clone()), id.clone());
                out.push(Step {
                    id,
                    label: format!("download {volid} on {node}"),
                    deps: vec![],
                    run: async move {
                        download_checked(&e, &node, &storage, &filename, &url, checksum.as_deref())
                            .await
                    }
                    .boxed(),
                });
            }
            Action::DeleteSnippet {
                node,
                storage,
                filename,
            } => {
                // After every guest change: none may still point at it.
                let deps = plan
                    .actions
                    .iter()
                    .filter_map(|a| match a {
                        Action::Create { vmid, .. }
                        | Action::Replace { vmid, .. }
                        | Action::Update { vmid, .. } => Some(format!("guest:{vmid}")),
                        _ => None,
                    })
                    .collect();
                let volid = proxmox_client::VolumeId::new(
                    storage.as_str(),
                    proxmox_client::ContentKind::Snippets,
                    filename.as_str(),
                )
                .to_string();
                out.push(Step {
                    id: format!("snippet-rm:{node}:{volid}"),
                    label: format!("delete unused {volid} on {node}"),
                    deps,
                    run: async move { delete_snippet(&e, &node, &storage, &filename).await }
                        .boxed(),
                });
            }
            Action::CreatePciMapping { id, entries } => {
                out.push(Step {
                    id: format!("pcimap:{id}"),
                    label: format!("create PCI mapping {id}"),
                    deps: vec![],
                    run: async move { set_pci_mapping(&e, &id, &entries, true).await }.boxed(),
                });
            }
            Action::UpdatePciMapping { id, changes } => {
                let entries: Vec<String> = changes.into_iter().map(|c| c.to).collect();
                out.push(Step {
                    id: format!("pcimap:{id}"),
                    label: format!("update PCI mapping {id}"),
                    deps: vec![],
                    run: async move { set_pci_mapping(&e, &id, &entries, false).await }.boxed(),
                });
            }
            Action::UploadSnippet {
                node,
                storage,
                filename,
            } => {
                let volid = proxmox_client::VolumeId::new(
                    storage.as_str(),
                    proxmox_client::ContentKind::Snippets,
                    filename.as_str(),
                )
                .to_string();
                let id = format!("snippet:{node}:{volid}");
                volume_steps.insert((node.clone(), volid.clone()), id.clone());
                out.push(Step {
                    id,
                    label: format!("upload {volid} to {node}"),
                    deps: vec![],
                    run: async move { upload_snippet(&e, &node, &volid).await }.boxed(),
                });
            }
            Action::Create {
                vmid,
                name,
                node,
                kind,
                ..
            } => {
                let mut deps = guest_deps(vmid, &node, &iso_step_of_node, &tmpl_steps);
                deps.extend(cloud_deps(vmid, &volume_steps));
                out.push(create_step(e, vmid, &name, kind, None, deps));
            }
            Action::Replace {
                vmid,
                name,
                node,
                current_node,
                kind,
                ..
            } => {
                let mut deps = guest_deps(vmid, &node, &iso_step_of_node, &tmpl_steps);
                deps.extend(cloud_deps(vmid, &volume_steps));
                out.push(create_step(e, vmid, &name, kind, Some(current_node), deps));
            }
            Action::Update {
                vmid,
                name,
                node,
                kind,
                changes,
                reboot,
            } => {
                // A PCI mapping or snippet it starts using is set up first.
                let mut deps = cloud_deps(vmid, &volume_steps);
                // So is an ISO it switches its CD-ROM to (a new Talos version or schematic):
                // Proxmox refuses a volume that does not exist yet.
                deps.extend(iso_deps_of_update(&node, &changes, &iso_step_of_node));
                out.push(Step {
                    id: format!("guest:{vmid}"),
                    label: format!("update {} {vmid} \"{name}\"", kind.noun()),
                    deps,
                    run: async move { update(&e, &node, kind, vmid, &changes, reboot).await }
                        .boxed(),
                });
            }
            Action::CreateStorage { id, .. } | Action::UpdateStorage { id, .. } => {
                let verb = if matches!(a, Action::CreateStorage { .. }) {
                    "add"
                } else {
                    "update"
                };
                let action = a.clone();
                out.push(Step {
                    id: format!("storage:{id}"),
                    label: format!("{verb} storage \"{id}\""),
                    deps: Vec::new(),
                    run: async move {
                        super::storages::apply(&e.pve, &action)
                            .await
                            .map_err(StepError::new)
                    }
                    .boxed(),
                });
            }
            Action::CreatePool { id, .. }
            | Action::UpdatePool { id, .. }
            | Action::DeletePool { id } => {
                let verb = match a {
                    Action::CreatePool { .. } => "add",
                    Action::UpdatePool { .. } => "update",
                    _ => "delete",
                };
                // A nested pool is created after its parent; a pool is deleted after its
                // sub-pools (Proxmox refuses both the other way round).
                let deps: Vec<String> = plan
                    .actions
                    .iter()
                    .filter_map(|o| match (a, o) {
                        (Action::CreatePool { id, .. }, Action::CreatePool { id: p, .. })
                            if id.rsplit_once('/').is_some_and(|(parent, _)| parent == p) =>
                        {
                            Some(format!("pool:{p}"))
                        }
                        (Action::DeletePool { id }, Action::DeletePool { id: c })
                            if c.strip_prefix(id.as_str())
                                .is_some_and(|rest| rest.starts_with('/')) =>
                        {
                            Some(format!("pool:{c}"))
                        }
                        _ => None,
                    })
                    .collect();
                let action = a.clone();
                out.push(Step {
                    id: format!("pool:{id}"),
                    label: format!("{verb} pool \"{id}\""),
                    deps,
                    run: async move {
                        crate::engine::pools::apply(&e.pve, &action)
                            .await
                            .map_err(StepError::new)
                    }
                    .boxed(),
                });
            }
            Action::Adopt {
                vmid,
                name,
                node,
                kind,
                changes,
            } => {
                // Only the ownership tag, the marker and hot-applied keys: never a restart.
                out.push(Step {
                    id: format!("guest:{vmid}"),
                    label: format!("adopt {} {vmid} \"{name}\"", kind.noun()),
                    deps: Vec::new(),
                    run: async move { update(&e, &node, kind, vmid, &changes, false).await }
                        .boxed(),
                });
            }
            Action::Start {
                vmid,
                name,
                node,
                kind,
            } => {
                let id = format!("guest:{vmid}");
                // A start after an update of the same guest.
                let deps = if out.iter().any(|s| s.id == id) {
                    vec![id.clone()]
                } else {
                    vec![]
                };
                out.push(Step {
                    id: format!("start:{vmid}"),
                    label: format!("start {} {vmid} \"{name}\"", kind.noun()),
                    deps,
                    run: async move {
                        retry::start(&e, &node, kind, vmid).await?;
                        Ok("running".into())
                    }
                    .boxed(),
                });
            }
            Action::Delete {
                vmid,
                name,
                node,
                kind,
            } => {
                // A template goes last: Proxmox refuses to remove a base volume that
                // linked clones use.
                let is_template = env.observed.guest(vmid).is_some_and(|g| g.is_template());
                let deps = if is_template {
                    plan.actions
                        .iter()
                        .filter_map(|a| match a {
                            Action::Delete { vmid: v, .. }
                                if !env.observed.guest(*v).is_some_and(|g| g.is_template()) =>
                            {
                                Some(format!("delete:{v}"))
                            }
                            // A clone rebuilt from something else is destroyed first too.
                            Action::Replace { vmid: v, .. } if *v != vmid => {
                                Some(format!("guest:{v}"))
                            }
                            _ => None,
                        })
                        .collect()
                } else {
                    vec![]
                };
                out.push(Step {
                    id: format!("delete:{vmid}"),
                    label: format!("destroy {} {vmid} \"{name}\"", kind.noun()),
                    deps,
                    run: async move {
                        destroy(&e, &node, kind, vmid).await?;
                        Ok("destroyed".into())
                    }
                    .boxed(),
                });
            }
            Action::TalosApplyConfig { vmid, name, role } => {
                let id = format!("talos:{vmid}");
                talos_steps.push((vmid, id.clone()));
                out.push(Step {
                    id,
                    label: format!("configure Talos {role} \"{name}\""),
                    deps: vec![
                        format!("guest:{vmid}"),
                        format!("start:{vmid}"),
                        "talos-secrets".into(),
                    ],
                    run: async move { configure_node(&e, vmid).await }.boxed(),
                });
            }
            Action::TalosBootstrap { vmid, name } => {
                let deps = talos_steps.iter().map(|(_, id)| id.clone()).collect();
                out.push(Step {
                    id: "bootstrap".into(),
                    label: format!("bootstrap etcd on \"{name}\""),
                    deps,
                    run: async move { bootstrap(&e, vmid).await }.boxed(),
                });
            }
            Action::CreateBackupJob { .. }
            | Action::UpdateBackupJob { .. }
            | Action::DeleteBackupJob { .. } => out.extend(super::backups::step(e, a)),
            Action::Sdn(_) | Action::ApplySdn { .. } => out.extend(super::sdn::step(e, a, plan)),
            Action::BootMetal { name, .. } => {
                out.extend(super::metal::steps(&e, env.metal.as_ref(), &name));
            }
            Action::Membership(_) => out.extend(super::membership::step(e, a)),
            // Rolled after the VM nodes' upgrades, below.
            Action::UpgradeMetal { .. } => {}
            Action::GenerateTalosSecrets { .. } | Action::WriteOutput { .. } => {}
            // Taken by `up` before the graph runs (commands/up.rs).
            Action::EtcdSnapshot { .. } => {}
            // Rolled below, one after the other.
            Action::TalosUpgrade { .. } | Action::KubernetesUpgrade { .. } => {}
            // Rolled after the upgrades (see config_change).
            Action::TalosConfigChange { .. } => {}
        }
    }
    // Everything else may use a storage being added.
    let storage_steps: Vec<String> = out
        .iter()
        .filter(|s| s.id.starts_with("storage:"))
        .map(|s| s.id.clone())
        .collect();
    for s in out.iter_mut().filter(|s| !s.id.starts_with("storage:")) {
        s.deps.extend(storage_steps.iter().cloned());
    }
    // A guest created in (or moved into) a pool waits for the pool.
    for s in out.iter_mut() {
        if let Some(vmid) = s.id.strip_prefix("guest:").and_then(|v| v.parse().ok()) {
            let pools = super::guest_pools::deps(&env.desired, &plan.actions, vmid);
            s.deps.extend(pools);
        }
    }
    let upgrades = super::day2::upgrade_steps(env, &plan.actions, &out);
    out.extend(upgrades);
    let metal_upgrades = super::metal::upgrade_steps(env, &plan.actions, &out);
    out.extend(metal_upgrades);
    super::config_apply::add_steps(env, &plan.actions, &mut out);
    let k8s = super::k8s_upgrade::upgrade_steps(env, &plan.actions, &out);
    out.extend(k8s);
    if !talos_steps.is_empty() || out.iter().any(|s| s.id == "bootstrap") {
        let mut deps: Vec<String> = talos_steps.iter().map(|(_, id)| id.clone()).collect();
        deps.push("bootstrap".into());
        let e = env.clone();
        out.push(Step {
            id: "health".into(),
            label: "wait for Kubernetes to be ready".into(),
            deps,
            run: async move { health(&e).await }.boxed(),
        });
    }
    super::sdn::order_guests(env, &mut out);
    super::membership::order(env, plan, &mut out);
    out
}
