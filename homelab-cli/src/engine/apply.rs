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
            let d = desired_guest(&e, vmid)?;
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
                        super::pools::apply(&e.pve, &action)
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
                        let task = guest_on(&e.pve, &node, kind, vmid)
                            .start(&StartOptions::default())
                            .await?;
                        finish(&e, task, "start").await?;
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
            Action::GenerateTalosSecrets { .. } | Action::WriteOutput { .. } => {}
            // Rolled below, one after the other.
            Action::TalosUpgrade { .. } => {}
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
    let upgrades = super::day2::upgrade_steps(env, &plan.actions, &out);
    out.extend(upgrades);
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
    out
}

/// Generate the bundle (CPU-heavy: RSA 4096), store it encrypted, then share it. Runs
/// beside the Proxmox work; it is written before any node can be configured with it.
async fn generate_bundle(env: &Env) -> Result<String, StepError> {
    let (path, opts) = env
        .bundle_store
        .clone()
        .ok_or_else(|| StepError::new("nowhere to store the Talos secrets bundle"))?;
    let bundle = tokio::task::spawn_blocking(SecretsBundle::generate)
        .await
        .map_err(|e| StepError::new(format!("secrets bundle: {e}")))?
        .map_err(|e| StepError::new(format!("secrets bundle: {e}")))?;
    let yaml = bundle.to_yaml();
    let data = sops_age::encrypt(yaml.as_bytes(), sops_age::Format::Yaml, &opts)
        .map_err(|e| StepError::new(format!("cannot encrypt the secrets bundle: {e}")))?;
    crate::workspace::write_atomic(&path, &data, 0o644)
        .map_err(|e| StepError::new(format!("{e}")).hint("check the repository is writable"))?;
    // A bundle already set would be one read from disk: keep it.
    let _ = env.bundle.set(bundle);
    Ok(format!("stored in {}", path.display()))
}

fn desired_guest(env: &Env, vmid: u32) -> Result<&DesiredGuest, StepError> {
    env.desired
        .guests
        .iter()
        .find(|g| g.vmid == vmid)
        .ok_or_else(|| StepError::new(format!("VMID {vmid} is not declared")))
}

async fn register_schematic(env: &Env) -> Result<String, StepError> {
    let Some(cluster) = &env.desired.talos else {
        return Ok("no Talos image".into());
    };
    let factory = env
        .factory
        .as_ref()
        .ok_or_else(|| StepError::new("no Image Factory client"))?;
    let schematic =
        super::image::FactoryNaming::schematic(&cluster.extensions, &cluster.extra_kernel_args);
    let created = factory.create_schematic(&schematic).await.map_err(|e| {
        StepError::new(format!("the Image Factory refused the schematic: {e}"))
            .hint("check `talos.extensions` (names like `siderolabs/qemu-guest-agent`) and the factory URL")
    })?;
    let id = created.id.to_string();
    if id != cluster.schematic_id {
        return Err(StepError::new(format!(
            "the factory's schematic ID {id} differs from the offline ID {}",
            cluster.schematic_id
        ))
        .hint(
            "an extension name or kernel argument is quoted differently by the factory; report it",
        ));
    }
    Ok(format!("schematic {}", &id[..12]))
}

async fn download(
    env: &Env,
    node: &str,
    storage: &str,
    filename: &str,
    url: &str,
    content: &str,
) -> Result<String, StepError> {
    download_with(env, node, storage, filename, url, content, None).await
}

/// Download a cloud image (`import` content); Proxmox verifies `algorithm:hex`.
async fn download_checked(
    env: &Env,
    node: &str,
    storage: &str,
    filename: &str,
    url: &str,
    checksum: Option<&str>,
) -> Result<String, StepError> {
    let checksum = checksum.and_then(|c| c.split_once(':'));
    download_with(env, node, storage, filename, url, "import", checksum).await
}

async fn download_with(
    env: &Env,
    node: &str,
    storage: &str,
    filename: &str,
    url: &str,
    content: &str,
    checksum: Option<(&str, &str)>,
) -> Result<String, StepError> {
    let upid = env
        .pve
        .node(node)
        .storage(storage)
        .download_url(&DownloadUrl {
            url: url.to_string(),
            filename: filename.to_string(),
            content: content.into(),
            checksum: checksum
                .map(|(a, h)| {
                    checksum_algorithm(a)
                        .map(|alg| (alg, h.to_string()))
                        .ok_or_else(|| StepError::new(format!("unknown checksum algorithm `{a}`")))
                })
                .transpose()?,
            verify_certificates: None,
            compression: None,
        })
        .await
        .map_err(|e| {
            let s = StepError::new(format!("download-url on {node}/{storage}: {e}"));
            if e.status() == Some(403) {
                s.hint("the token needs Datastore.AllocateTemplate on the storage and Sys.AccessNetwork on the node")
            } else {
                s
            }
        })?;
    wait(env, upid, &format!("{content} download")).await?;
    Ok("downloaded".into())
}

fn checksum_algorithm(name: &str) -> Option<proxmox_client::requests::ChecksumAlgorithm> {
    use proxmox_client::requests::ChecksumAlgorithm as A;
    [A::Md5, A::Sha1, A::Sha224, A::Sha256, A::Sha384, A::Sha512]
        .into_iter()
        .find(|a| a.as_str() == name)
}

/// An SFTP session to the node (host key pinned).
async fn sftp_session(
    env: &Env,
    node: &str,
) -> Result<(proxmox_client::snippets::SnippetUploader, String), StepError> {
    let ssh = env.desired.proxmox.ssh.as_ref().ok_or_else(|| {
        StepError::new("cloud-init snippets need SSH access to the node, and `proxmox.ssh` is not set")
            .hint("Proxmox cannot upload snippets through its API; add `proxmox.ssh` (private key as a secret, pinned host key)")
    })?;
    let (host, pin) = ssh.target(node);
    let pin: proxmox_client::snippets::HostKeyPin = pin
        .parse()
        .map_err(|e| StepError::new(format!("proxmox.ssh host key of {node}: {e}")))?;
    let key = proxmox_client::snippets::decode_private_key(
        secrecy::ExposeSecret::expose_secret(&ssh.private_key),
        None,
        "proxmox.ssh.private_key",
    )
    .map_err(|e| StepError::new(e.to_string()))?;
    let up =
        proxmox_client::snippets::SnippetUploader::connect(host, ssh.port, &ssh.user, key, &pin)
            .await
            .map_err(|e| StepError::new(e.to_string()))?;
    Ok((up, host.to_string()))
}

/// Delete a snippet nobody uses, after checking that it is ours by its marker line.
async fn delete_snippet(
    env: &Env,
    node: &str,
    storage: &str,
    filename: &str,
) -> Result<String, StepError> {
    let dir = env
        .desired
        .snippets
        .iter()
        .find(|s| s.node == node && s.storage == storage)
        .map(|s| s.dir.clone())
        .ok_or_else(|| StepError::new(format!("no snippet directory known for {storage}")))?;
    let path = proxmox_client::snippets::snippet_path(&dir, filename)
        .map_err(|e| StepError::new(e.to_string()))?;
    let (up, _) = sftp_session(env, node).await?;
    let marker = crate::model::vms::snippet_marker(&env.desired.lab);
    let result = match up.read(&path).await {
        Ok(Some(text)) if String::from_utf8_lossy(&text).contains(&marker) => up
            .remove(&path)
            .await
            .map(|_| "deleted".to_string())
            .map_err(|e| StepError::new(e.to_string())),
        Ok(Some(_)) => Ok("kept: it does not carry this homelab's marker".into()),
        Ok(None) => Ok("already gone".into()),
        Err(e) => Err(StepError::new(e.to_string())),
    };
    up.close().await;
    result
}

/// Upload a snippet over SFTP (host key pinned); an identical file is left alone.
async fn upload_snippet(env: &Env, node: &str, volid: &str) -> Result<String, StepError> {
    let sn = env
        .desired
        .snippets
        .iter()
        .find(|s| s.node == node && s.volid() == volid)
        .ok_or_else(|| StepError::new(format!("snippet {volid} is not declared")))?;
    let path = proxmox_client::snippets::snippet_path(&sn.dir, &sn.filename)
        .map_err(|e| StepError::new(e.to_string()))?;
    // A handoff token is minted now, for the VM using the snippet.
    let vm = env
        .desired
        .guests
        .iter()
        .find(|g| g.snippet.as_deref() == Some(volid))
        .map(|g| g.name.as_str());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let content = crate::model::handoff::fill(env.desired.handoff.as_ref(), vm, &sn.content, now)
        .map_err(StepError::new)?;
    let (up, host) = sftp_session(env, node).await?;
    let r = {
        use secrecy::ExposeSecret;
        up.upload(&path, content.expose_secret().as_bytes()).await
    };
    up.close().await;
    match r.map_err(|e| StepError::new(e.to_string()))? {
        proxmox_client::snippets::UploadOutcome::Unchanged => Ok("already there".into()),
        _ => Ok(format!("written to {host}:{path}")),
    }
}

/// Create a PCI mapping with `entries`, or set its entries for their nodes (keeping other
/// nodes').
async fn set_pci_mapping(
    env: &Env,
    id: &str,
    entries: &[String],
    create: bool,
) -> Result<String, StepError> {
    use proxmox_client::property::PciMapEntry;
    use proxmox_client::requests::PciMappingParams;
    let want: Vec<PciMapEntry> = entries
        .iter()
        .map(|e| e.parse())
        .collect::<Result<_, _>>()
        .map_err(|e| StepError::new(format!("mapping entry: {e}")))?;
    let hint = |e: proxmox_client::Error| {
        let s = StepError::new(format!("PCI mapping {id}: {e}"));
        if e.status() == Some(403) {
            s.hint("the token needs Mapping.Modify on /mapping/pci (and Mapping.Use to attach it); `homelab-cli proxmox token create` grants both")
        } else {
            s
        }
    };
    let api = env.pve.pci_mappings();
    if create {
        api.create(
            id,
            &PciMappingParams {
                description: Some(format!(
                    "Created by homelab-cli (homelab {})",
                    env.desired.lab
                )),
                map: want,
                ..PciMappingParams::default()
            },
        )
        .await
        .map_err(hint)?;
        return Ok("created".into());
    }
    let current = api.get(id).await.map_err(hint)?;
    let nodes: Vec<String> = want.iter().map(|w| w.node.clone()).collect();
    let mut map: Vec<PciMapEntry> = current
        .map
        .iter()
        .filter_map(|raw| raw.parse::<PciMapEntry>().ok())
        .filter(|e| !nodes.contains(&e.node))
        .collect();
    map.extend(want);
    api.update(
        id,
        &PciMappingParams {
            map,
            ..PciMappingParams::default()
        },
        &[],
        None,
    )
    .await
    .map_err(hint)?;
    Ok(format!("entries for {} set", nodes.join(", ")))
}

/// Grow `disk` to `size` unless it is already at least that large.
async fn grow(
    env: &Env,
    d: &DesiredGuest,
    disk: &str,
    size: crate::model::config::Size,
) -> Result<(), StepError> {
    let vm = env.pve.node(&d.node).qemu(d.vmid);
    let cfg = vm
        .config()
        .await
        .map_err(|e| StepError::new(format!("read config: {e}")))?;
    let have = cfg
        .get_str(disk)
        .and_then(|v| parse_disk(&v))
        .and_then(|p| p.size_mib)
        .map(crate::model::config::Size::from_mib);
    if have.is_some_and(|h| h >= size) {
        return Ok(());
    }
    resize(
        env,
        &guest_on(&env.pve, &d.node, d.kind, d.vmid),
        disk,
        size,
    )
    .await
}

/// Resize `disk` to `size` (whole GiB), waiting for the task when there is one.
async fn resize(
    env: &Env,
    guest: &Guest,
    disk: &str,
    size: crate::model::config::Size,
) -> Result<(), StepError> {
    let task = guest
        .resize(&ResizeOptions::to_gib(disk, size.gib_ceil()))
        .await
        .map_err(|e| StepError::new(format!("resize {disk}: {e}")))?;
    finish(env, task, "resize").await
}

/// Clone a gold template, then give the clone its own configuration.
async fn create_clone(
    env: &Env,
    d: &DesiredGuest,
    template: u32,
    full: bool,
) -> Result<(), StepError> {
    let storage = d.disks.get("scsi0").map(|s| s.storage.clone());
    let opts = CloneOptions {
        newid: d.vmid,
        name: Some(d.name.clone()),
        // The owner marker travels with the clone request (`clone_vm` takes `description`): a
        // clone interrupted before its configuration is set is still recognisably ours.
        description: d.props.get("description").cloned(),
        full: Some(full),
        storage: storage.filter(|_| full),
        ..CloneOptions::default()
    };
    let source = guest_on(&env.pve, &d.node, GuestKind::Qemu, template);
    let mut sent = 0;
    loop {
        sent += 1;
        match source.clone_to(&opts).await {
            Ok(task) => {
                finish(env, task, "clone").await?;
                break;
            }
            // The answer was lost: read the new VMID back before sending the clone again.
            Err(e @ proxmox_client::Error::Transport { .. }) => {
                if clone_target_done(env, d).await? {
                    tracing::warn!(error = %e, vmid = d.vmid, "the clone's answer was lost; the clone exists");
                    break;
                }
                if sent >= 3 {
                    return Err(StepError::new(format!("clone of {template}: {e}")));
                }
                tracing::warn!(error = %e, vmid = d.vmid, "the clone's answer was lost and no clone exists: sending it again");
            }
            Err(e) => return Err(StepError::new(format!("clone of {template}: {e}"))),
        }
    }
    let mut set: Vec<(String, ParamValue)> = d
        .props
        .iter()
        .map(|(k, v)| (k.clone(), ParamValue::Str(v.clone())))
        .collect();
    set.push(("tags".into(), ParamValue::Str(d.tags(&env.desired.lab))));
    let update = ConfigUpdate {
        set,
        ..ConfigUpdate::default()
    };
    let task = guest_on(&env.pve, &d.node, d.kind, d.vmid)
        .update_config(&update)
        .await
        .map_err(|e| StepError::new(format!("configure the clone: {e}")))?;
    finish(env, task, "configure").await
}

/// After a clone request whose answer was lost: whether the clone exists, waiting (up to
/// the task deadline) while it still holds `lock: clone`.
async fn clone_target_done(env: &Env, d: &DesiredGuest) -> Result<bool, StepError> {
    let vm = env.pve.node(&d.node).qemu(d.vmid);
    let start = std::time::Instant::now();
    loop {
        match vm.config().await {
            Ok(cfg) if cfg.get_str("lock").as_deref() == Some("clone") => {}
            Ok(_) => return Ok(true),
            Err(proxmox_client::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(StepError::new(format!("read back clone {}: {e}", d.vmid))),
        }
        if start.elapsed() >= env.timeouts.task {
            return Err(StepError::new(format!(
                "clone {} still holds `lock: clone` after {}s",
                d.vmid,
                env.timeouts.task.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Create a guest from its desired configuration, then start it.
async fn create(env: &Env, d: &DesiredGuest) -> Result<String, StepError> {
    if let Some(BootSource::Clone { template, full }) = d.boot {
        create_clone(env, d, template, full).await?;
        return finish_cloud_vm(env, d).await;
    }
    let mut params: Vec<(String, ParamValue)> = Vec::new();
    for (k, v) in &d.props {
        params.push((k.clone(), ParamValue::Str(v.clone())));
    }
    for (k, disk) in &d.disks {
        params.push((k.clone(), ParamValue::Str(disk.create_value())));
    }
    for (k, v) in &d.create_only {
        params.push((k.clone(), ParamValue::Str(v.clone())));
    }
    params.push(("tags".into(), ParamValue::Str(d.tags(&env.desired.lab))));
    // A missing container with `restore`: the archive instead of the OS template, the
    // declared settings over the backed-up ones (pve-container `create_vm` with `restore`).
    // The archives are listed again: a backup storage may have been added by this run.
    let restoring = env.observed.guest(d.vmid).is_none()
        && d.kind == GuestKind::Lxc
        && env.desired.restore.contains_key(&d.vmid);
    let mut now = Observed::default();
    if restoring {
        now.backups = super::restore::list(&env.pve, std::slice::from_ref(&d.node))
            .await
            .map_err(|e| StepError::new(format!("list backups: {e}")))?;
    }
    if restoring
        && let Some(b) = super::restore::pick(&env.desired, &now, d.vmid)
            .map_err(|e| StepError::new(e.to_string()))?
    {
        params.retain(|(k, _)| k != "ostemplate");
        params.push(("ostemplate".into(), ParamValue::Str(b.volid.clone())));
        params.push(("restore".into(), ParamValue::Bool(true)));
    }
    let create = GuestCreate {
        vmid: d.vmid,
        params,
    };
    // Device passthrough and most container features are root@pam's alone.
    let client = match (
        &env.pve_root,
        super::plan::root_only_on_create(d).is_empty(),
    ) {
        (Some(root), false) => root,
        _ => &env.pve,
    };
    let task = client
        .node(&d.node)
        .create_guest(d.kind.into(), &create)
        .await
        .map_err(|e| feature_hint(&e, StepError::new(format!("create: {e}"))))?;
    finish(env, task, "create").await?;
    if d.boot.is_some() {
        return finish_cloud_vm(env, d).await;
    }
    start_guest(env, d).await?;
    Ok("created and started".into())
}

async fn start_guest(env: &Env, d: &DesiredGuest) -> Result<(), StepError> {
    let task = guest_on(&env.pve, &d.node, d.kind, d.vmid)
        .start(&StartOptions::default())
        .await
        .map_err(|e| StepError::new(format!("start: {e}")))?;
    finish(env, task, "start").await
}

/// After a cloud VM exists: grow its boot disk, then start it, or convert a template.
async fn finish_cloud_vm(env: &Env, d: &DesiredGuest) -> Result<String, StepError> {
    if let Some(size) = d.disks.get("scsi0").and_then(|s| s.size) {
        grow(env, d, "scsi0", size).await?;
    }
    if d.is_template {
        convert_to_template(env, d).await?;
        return Ok("created and converted to a template".into());
    }
    start_guest(env, d).await?;
    Ok("created and started".into())
}

async fn convert_to_template(env: &Env, d: &DesiredGuest) -> Result<(), StepError> {
    let task = guest_on(&env.pve, &d.node, d.kind, d.vmid)
        .template(&TemplateOptions::default())
        .await
        .map_err(|e| StepError::new(format!("convert to template: {e}")))?;
    finish(env, task, "template").await
}

/// Proxmox lets only `root@pam` with a password set container features besides nesting.
fn feature_hint(err: &proxmox_client::Error, e: StepError) -> StepError {
    if err.is_root_only() {
        e.hint("only `root@pam` logged in with a password may set container features other than `nesting`; set them once by hand or drop them from homelab.yaml")
    } else {
        e
    }
}

/// Stop (if running) and destroy a guest with its disks.
async fn destroy(env: &Env, node: &str, kind: GuestKind, vmid: u32) -> Result<(), StepError> {
    let guest = guest_on(&env.pve, node, kind, vmid);
    let running = env
        .observed
        .guest(vmid)
        .is_some_and(|g| g.status == "running");
    if running {
        match guest.stop(&StopOptions::default()).await {
            Ok(task) => finish(env, task, "stop").await?,
            // Stopped meanwhile: fine.
            Err(e) if e.is_not_running() => {}
            Err(e) => return Err(StepError::new(format!("stop: {e}"))),
        }
    }
    // The placeholder of an interrupted create is locked; only root@pam may skip the lock.
    let placeholder = env.observed.guest(vmid).is_some_and(|g| {
        let vols = env.observed.abandoned_volumes.get(&vmid);
        super::recover::abandoned_create(g, vols.map_or(&[][..], Vec::as_slice)).is_some()
            && super::recover::is_locked(g)
    });
    let mut opts = DestroyOptions::everything();
    let guest = match (&env.pve_root, placeholder) {
        (Some(root), true) => {
            opts.skiplock = true;
            guest_on(root, node, kind, vmid)
        }
        _ => guest,
    };
    let task = guest
        .destroy(&opts)
        .await
        .map_err(|e| StepError::new(format!("destroy: {e}")))?;
    finish(env, task, "destroy").await
}

/// Change a guest in place: configuration, disk growth, and a restart when needed.
async fn update(
    env: &Env,
    node: &str,
    kind: GuestKind,
    vmid: u32,
    changes: &[Change],
    reboot: bool,
) -> Result<String, StepError> {
    let guest = guest_on(&env.pve, node, kind, vmid);
    let observed = env.observed.guest(vmid).and_then(|g| g.config.clone());
    let digest = observed.as_ref().and_then(|c| c.digest.clone());
    let mut set: Vec<(String, ParamValue)> = Vec::new();
    let mut delete: Vec<String> = Vec::new();
    let mut grown: Vec<(String, crate::model::config::Size)> = Vec::new();
    let d = desired_guest(env, vmid)?;
    let mut make_template = false;
    for c in changes {
        if c.key == "template" {
            make_template = true;
            continue;
        }
        if let Some(disk_key) = c.key.strip_suffix(".options") {
            // Re-state the existing volume with the new options.
            let have = observed
                .as_ref()
                .and_then(|o| o.props.get(disk_key))
                .and_then(|v| parse_disk(v))
                .ok_or_else(|| StepError::new(format!("{disk_key} vanished")))?;
            let want = &d.disks[disk_key];
            let mut v = proxmox_client::VolumeId::image(have.storage, have.volume).to_string();
            for (k, val) in &want.options {
                v.push_str(&format!(",{k}={val}"));
            }
            set.push((disk_key.to_string(), ParamValue::Str(v)));
        } else if d.disks.contains_key(&c.key) {
            match (&c.from, d.disks.get(&c.key).and_then(|w| w.size)) {
                (Some(_), Some(size))
                    if observed
                        .as_ref()
                        .is_some_and(|o| o.props.contains_key(&c.key)) =>
                {
                    grown.push((c.key.clone(), size));
                }
                _ => set.push((
                    c.key.clone(),
                    ParamValue::Str(d.disks[&c.key].create_value()),
                )),
            }
        } else {
            match &c.to {
                // The desired value, not the display one (which may read "(sensitive)").
                Some(_) if c.key == "tags" => set.push((
                    c.key.clone(),
                    ParamValue::Str(c.to.clone().unwrap_or_default()),
                )),
                Some(_) => set.push((
                    c.key.clone(),
                    ParamValue::Str(d.props.get(&c.key).cloned().unwrap_or_default()),
                )),
                None => delete.push(c.key.clone()),
            }
        }
    }
    if !set.is_empty() || !delete.is_empty() {
        let update = ConfigUpdate {
            set,
            delete,
            digest: digest.clone(),
        };
        let client = match &env.pve_root {
            Some(root) if changes.iter().any(|c| super::plan::change_needs_root(d, c)) => root,
            _ => &env.pve,
        };
        // qemu-server's config update is asynchronous (POST); pve-container's is not (PUT).
        let task = guest_on(client, node, kind, vmid)
            .update_config(&update)
            .await
            .map_err(|e| {
                let s = StepError::new(format!("update: {e}"));
                if e.is_digest_mismatch() {
                    s.hint("the guest changed since the plan; run `homelab-cli up` again")
                } else {
                    feature_hint(&e, s)
                }
            })?;
        finish(env, task, "update").await?;
    }
    for (disk, size) in grown {
        resize(env, &guest, &disk, size).await?;
    }
    if make_template {
        convert_to_template(env, d).await?;
    }
    if reboot {
        let task = guest
            .reboot(&RebootOptions::default())
            .await
            .map_err(|e| StepError::new(format!("reboot: {e}")))?;
        finish(env, task, "reboot").await?;
        return Ok(format!(
            "{} change(s), restarted",
            changes.iter().filter(|c| c.shown).count()
        ));
    }
    Ok(format!(
        "{} change(s)",
        changes.iter().filter(|c| c.shown).count()
    ))
}

/// The node's address: static, else from the guest agent.
async fn node_ip(env: &Env, d: &DesiredGuest) -> Result<IpAddr, StepError> {
    if let Some(ip) = d.talos.as_ref().and_then(|t| t.ip) {
        return Ok(ip);
    }
    let vm = env.pve.node(&d.node).qemu(d.vmid);
    let opts = talos_opts(env);
    talos_api::health::wait_for("an address from the guest agent", &opts, || {
        let vm = vm.clone();
        async move {
            let ifaces = vm
                .agent_network_interfaces()
                .await
                .map_err(|e| talos_api::Error::InvalidConfig(e.to_string()))?;
            super::observe::agent_addresses(&ifaces)
                .filter(|a| a.ip_address_type == "ipv4")
                .find_map(|a| a.ip_address.parse::<IpAddr>().ok())
                .ok_or_else(|| talos_api::Error::InvalidConfig("no IPv4 address yet".into()))
        }
    })
    .await
    .map_err(|e| {
        StepError::new(format!("no address for {}: {e}", d.name))
            .hint("give the node a static `ip`, or include siderolabs/qemu-guest-agent in `talos.extensions`")
    })
}

/// The cluster and its secrets bundle, which every Talos step needs.
fn cluster_and_bundle(env: &Env) -> Result<(&TalosCluster, &SecretsBundle), StepError> {
    let cluster = env
        .desired
        .talos
        .as_ref()
        .ok_or_else(|| StepError::new("no Talos cluster"))?;
    let bundle = env
        .bundle
        .get()
        .ok_or_else(|| StepError::new("no Talos secrets bundle"))?;
    Ok((cluster, bundle))
}

/// How long and how often Talos steps poll.
fn talos_opts(env: &Env) -> talos_api::health::WaitOptions<'static> {
    talos_api::health::WaitOptions::new(env.timeouts.talos)
        .interval(env.timeouts.poll)
        .progress(&super::waits::report)
}

/// Apply the machine configuration in maintenance mode and wait for the node to run it.
async fn configure_node(env: &Env, vmid: u32) -> Result<String, StepError> {
    let d = desired_guest(env, vmid)?;
    // Nothing inside a stopped VM answers: stop waiting as soon as it is seen stopped.
    let poll = env.timeouts.poll.max(Duration::from_secs(1)) * 3;
    tokio::select! {
        r = configure_running_node(env, d) => r,
        e = super::waits::vm_stops(&env.pve, &d.node, d.vmid, poll) => Err(e),
    }
}

async fn configure_running_node(env: &Env, d: &DesiredGuest) -> Result<String, StepError> {
    let (cluster, bundle) = cluster_and_bundle(env)?;
    let ip = node_ip(env, d).await?;
    let opts = talos_opts(env);
    super::waits::announce(
        &format!("the Talos API of {} at {ip}", d.name),
        opts.deadline,
    );
    let state = talos_api::health::wait_for("the Talos API", &opts, || async move {
        match talos::probe(ip).await {
            NodeState::Unreachable => Err(talos_api::Error::InvalidConfig("no answer yet".into())),
            s => Ok(s),
        }
    })
    .await
    .map_err(|e| {
        StepError::new(format!("{} does not answer on the Talos API: {e}", d.name))
            .hint("check that the VM booted the Talos ISO (Proxmox console) and that its address is reachable")
    })?;
    if state == NodeState::Maintenance {
        let config = talos::machine_config(cluster, d, bundle)
            .map_err(|e| StepError::new(format!("machine config: {e}")))?;
        let yaml = config.to_yaml();
        let client = talos_api::client::ClientBuilder::maintenance(&ip.to_string())
            .build()
            .map_err(|e| StepError::new(format!("Talos client: {e}")))?;
        client
            .apply_configuration(yaml.as_bytes(), talos_api::client::ApplyMode::Auto, false)
            .await
            .map_err(|e| StepError::new(format!("apply-config: {e}")))?;
    }
    let builder =
        talos::admin_client(cluster, bundle, ip).map_err(|e| StepError::new(e.to_string()))?;
    super::waits::announce(
        &format!("{} to run its configuration (mTLS)", d.name),
        opts.deadline,
    );
    super::waits::mtls_ready(&builder, &opts, &d.name)
        .await
        .map_err(|e| {
            if e.hint.is_some() {
                return e;
            }
            StepError::new(format!(
                "{} did not come up with its configuration: {}",
                d.name, e.message
            ))
            .hint("look at the node's console in Proxmox; re-running `homelab-cli up` resumes here")
        })?;
    Ok(if state == NodeState::Maintenance {
        "configured".into()
    } else {
        "already configured".into()
    })
}

fn first_control_plane(env: &Env, vmid: u32) -> Result<(&DesiredGuest, IpAddr), StepError> {
    let d = desired_guest(env, vmid)?;
    debug_assert!(d.is_control_plane());
    let ip =
        d.talos.as_ref().and_then(|t| t.ip).ok_or_else(|| {
            StepError::new(format!("{} has no static address to bootstrap", d.name))
        })?;
    Ok((d, ip))
}

async fn bootstrap(env: &Env, vmid: u32) -> Result<String, StepError> {
    let (cluster, bundle) = cluster_and_bundle(env)?;
    let (_, ip) = first_control_plane(env, vmid)?;
    let opts = talos_opts(env);
    let builder =
        talos::admin_client(cluster, bundle, ip).map_err(|e| StepError::new(e.to_string()))?;
    super::waits::announce(&format!("the control plane at {ip}"), opts.deadline);
    let client = super::waits::mtls_ready(&builder, &opts, &ip.to_string())
        .await
        .map_err(|e| {
            if e.hint.is_some() {
                e
            } else {
                StepError::new(format!("control plane not ready: {}", e.message))
            }
        })?;
    let detail = if talos::etcd_running(cluster, bundle, ip).await {
        "already bootstrapped"
    } else {
        match client.bootstrap().await {
            Ok(_) => "bootstrapped",
            // Someone (or an earlier interrupted run) got there first.
            Err(e) if e.is_already_exists() => "already bootstrapped",
            Err(e) => return Err(StepError::new(format!("bootstrap: {e}"))),
        }
    };
    talos_api::health::wait_etcd_healthy(&client, &opts)
        .await
        .map_err(|e| StepError::new(format!("etcd: {e}")))?;
    Ok(detail.into())
}

async fn health(env: &Env) -> Result<String, StepError> {
    let (cluster, bundle) = cluster_and_bundle(env)?;
    let kubeconfig = talos::direct_kubeconfig(&env.desired, cluster, bundle)
        .map_err(|e| StepError::new(e.to_string()))?;
    let opts = talos_opts(env);
    super::waits::announce("Kubernetes to be ready", opts.deadline);
    talos_api::health::wait_kubernetes_ready(&kubeconfig, &opts)
        .await
        .map_err(|e| {
            StepError::new(format!("Kubernetes is not ready: {e}")).hint(
                "`homelab-cli status` shows each node; re-run `homelab-cli up` once they are up",
            )
        })?;
    Ok("ready".into())
}

/// VMIDs of control planes.
pub fn control_planes(desired: &Desired) -> Vec<u32> {
    desired
        .guests
        .iter()
        .filter(|g| g.is_control_plane())
        .map(|g| g.vmid)
        .collect()
}
