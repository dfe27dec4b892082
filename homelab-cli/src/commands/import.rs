//! `homelab-cli import`: adopt existing containers and VMs. One `/cluster/resources` read,
//! the configurations of the selected guests, then their declarations appended to
//! homelab.yaml (`lxc.containers`, `vms.machines`)
//! (a text insertion: the rest of the file is kept byte for byte) with `adopt: true`;
//! secret values go into the SOPS secrets file. The next `up` takes ownership.

use std::collections::BTreeMap;
use std::path::Path;

use miette::{IntoDiagnostic, miette};
use serde::Serialize;
use sops_age::{DecryptOptions, Decrypted, Value};
use zeroize::Zeroizing;

use crate::context::{Context, Exit, OutputFormat, print_json, print_text};
use crate::engine::observe;
use crate::engine::observed::ObservedGuest;
use crate::model::config::{Container, Vm};
use crate::model::desired::{self, GuestKind};
use crate::model::import::{self, Inherited};
use crate::model::import_vm;
use crate::model::secrets::SecretValues;
use crate::session::{Session, SimArgs, pve_error};
use crate::workspace::{ConfigArg, format_of, write_atomic};

/// Flags of `homelab-cli import`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(flatten)]
    pub sim: SimArgs,
    /// Import the guest with this VMID (repeatable).
    #[arg(long = "vmid", value_name = "VMID")]
    pub vmids: Vec<u32>,
    /// Import the guest with this name (repeatable).
    #[arg(long = "name", value_name = "NAME")]
    pub names: Vec<String>,
    /// Import the guests carrying this Proxmox tag (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Import every guest (container or VM) no homelab manages and homelab.yaml does not
    /// declare yet.
    #[arg(long, conflicts_with_all = ["vmids", "names", "tags"])]
    pub all: bool,
    /// OS template recorded for re-creation, when `lxc.defaults.template` names none
    /// (Proxmox does not remember which template a container came from).
    #[arg(long, value_name = "TEMPLATE")]
    pub template: Option<String>,
    /// Show what would be added; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// What an import did (or would do).
#[derive(Debug, Serialize)]
pub struct Report {
    /// Guests added, by VMID and name.
    pub imported: Vec<(u32, String)>,
    /// The YAML appended to `lxc.containers` and `vms.machines`.
    pub yaml: String,
    /// Paths of the values written to the SOPS secrets file.
    pub secrets: Vec<String>,
    /// What was not carried over.
    pub notes: Vec<String>,
    /// Whether files were written.
    pub written: bool,
}

/// Run `homelab-cli import`.
pub async fn run(args: Args, _ctx: &Context) -> miette::Result<Exit> {
    if !args.all && args.vmids.is_empty() && args.names.is_empty() && args.tags.is_empty() {
        return Err(miette!(
            help =
                "e.g. `homelab-cli import --vmid 103`, `--name grafana`, `--tag prod` or `--all`",
            "say which guests to import"
        ));
    }
    let session = Session::open_env(&args.config.config, args.config.env(), &args.sim).await?;
    let result = import(&args, &session).await;
    session.close().await;
    let report = result?;
    match args.output {
        OutputFormat::Json => print_json(&report)?,
        OutputFormat::Text => print_text(&text(&report, args.dry_run))?,
    }
    Ok(Exit::Success)
}

fn text(r: &Report, dry_run: bool) -> String {
    if r.imported.is_empty() {
        return "Nothing to import: every guest is declared or managed already.\n".into();
    }
    let mut out = String::new();
    let verb = if dry_run { "Would add" } else { "Added" };
    out.push_str(&format!(
        "{verb} {} guest(s) to homelab.yaml:\n\n{}",
        r.imported.len(),
        r.yaml
    ));
    if !r.secrets.is_empty() {
        out.push_str(&format!(
            "\n{} the secrets file (encrypted): {}\n",
            if dry_run {
                "Would write to"
            } else {
                "Wrote to"
            },
            r.secrets.join(", ")
        ));
    }
    for n in &r.notes {
        out.push_str(&format!("note: {n}\n"));
    }
    if !dry_run {
        out.push_str(
            "\nNext: `homelab-cli plan` shows the adoption (ownership tag and marker only), `homelab-cli up` makes it.\n",
        );
    }
    out
}

async fn import(args: &Args, session: &Session) -> miette::Result<Report> {
    let endpoint = &session.desired.proxmox.endpoint;
    let mut observed = observe::list(&session.pve)
        .await
        .map_err(|e| pve_error(endpoint, e))?;
    let declared = |vmid: u32| session.desired.guests.iter().find(|g| g.vmid == vmid);
    let managed = |g: &ObservedGuest| g.tags.iter().any(|t| t.starts_with("homelab-"));

    // Which guests: explicit selections must each name an importable guest.
    let mut chosen: Vec<&ObservedGuest> = Vec::new();
    let pick = |g: &ObservedGuest, explicit: bool| -> miette::Result<bool> {
        if let Some(d) = declared(g.vmid) {
            if explicit {
                return Err(miette!(
                    help =
                        "it is adopted (or created) by `homelab-cli up` already; nothing to import",
                    "{} {} is already declared in {} as \"{}\"",
                    g.kind.noun(),
                    g.vmid,
                    session.ws.loaded.path.display(),
                    d.name
                ));
            }
            return Ok(false);
        }
        if managed(g) {
            if explicit {
                return Err(miette!(
                    "{} {} carries the tag {} of a homelab: it is managed already",
                    g.kind.noun(),
                    g.vmid,
                    g.tags
                        .iter()
                        .find(|t| t.starts_with("homelab-"))
                        .cloned()
                        .unwrap_or_default()
                ));
            }
            return Ok(false);
        }
        if g.template {
            if explicit {
                return Err(miette!(
                    "{} {} is a template, not a service",
                    g.kind.noun(),
                    g.vmid
                ));
            }
            return Ok(false);
        }
        Ok(true)
    };
    for vmid in &args.vmids {
        let g = observed
            .guests
            .iter()
            .find(|g| g.vmid == *vmid)
            .ok_or_else(|| {
                let known: Vec<String> =
                    observed.guests.iter().map(|g| g.vmid.to_string()).collect();
                miette!(
                    help = format!(
                        "guests on the cluster: {}",
                        if known.is_empty() {
                            "none".into()
                        } else {
                            known.join(", ")
                        }
                    ),
                    "there is no guest with VMID {vmid} on the cluster"
                )
            })?;
        if pick(g, true)? {
            chosen.push(g);
        }
    }
    for name in &args.names {
        let g = observed
            .guests
            .iter()
            .find(|g| g.name.as_deref() == Some(name.as_str()))
            .ok_or_else(|| miette!("there is no guest named \"{name}\" on the cluster"))?;
        if pick(g, true)? {
            chosen.push(g);
        }
    }
    for tag in &args.tags {
        let tag = tag.to_ascii_lowercase();
        for g in observed.guests.iter().filter(|g| g.tags.contains(&tag)) {
            if pick(g, false)? {
                chosen.push(g);
            }
        }
    }
    if args.all {
        for g in &observed.guests {
            if pick(g, false)? {
                chosen.push(g);
            }
        }
    }
    chosen.sort_by_key(|g| g.vmid);
    chosen.dedup_by_key(|g| g.vmid);
    // A guest busy with a backup, migration or snapshot is not read mid-change.
    if let Some(g) = chosen.iter().find(|g| g.lock.is_some()) {
        return Err(miette!(
            help = "wait for the operation to finish (or `pct unlock` it if it is stale), then import again",
            "{} {} \"{}\" is locked ({}): nothing was imported",
            g.kind.noun(),
            g.vmid,
            g.name.clone().unwrap_or_default(),
            g.lock.clone().unwrap_or_default()
        ));
    }
    if chosen.is_empty() {
        return Ok(Report {
            imported: Vec::new(),
            yaml: String::new(),
            secrets: Vec::new(),
            notes: Vec::new(),
            written: false,
        });
    }
    let which: Vec<(String, GuestKind, u32)> = chosen
        .iter()
        .map(|g| (g.node.clone(), g.kind, g.vmid))
        .collect();
    observe::read_configs(&session.pve, &mut observed, which.clone())
        .await
        .map_err(|e| pve_error(endpoint, e))?;

    let ws = &session.ws;
    let old_secrets = ws.secrets()?;
    let inherited = Inherited::of(&ws.loaded, &old_secrets);
    let containers = which.iter().any(|w| w.1 == GuestKind::Lxc);
    if containers && !inherited.has_template && args.template.is_none() {
        return Err(miette!(
            help =
                "set `lxc.defaults.template`, or pass `--template local:vztmpl/<file>` (or a URL)",
            "a declared container needs an OS template for re-creation, and Proxmox does not remember which one a container came from"
        ));
    }
    let mut items: Vec<(Container, String)> = Vec::new();
    let mut vm_items: Vec<(Vm, String)> = Vec::new();
    let mut new_secrets: Vec<(String, String)> = Vec::new();
    let mut notes = Vec::new();
    let mut imported = Vec::new();
    let mut names: BTreeMap<String, u32> = session
        .desired
        .guests
        .iter()
        .map(|g| (g.name.clone(), g.vmid))
        .collect();
    for (node, kind, vmid) in &which {
        let Some(g) = observed.guests.iter().find(|g| g.vmid == *vmid) else {
            continue;
        };
        let noun = kind.noun();
        let Some(cfg) = &g.config else {
            return Err(miette!(
                "the configuration of {noun} {vmid} could not be read"
            ));
        };
        if let Some(l) = cfg.props.get("lock") {
            return Err(miette!(
                help = "wait for the operation to finish, then import again",
                "{noun} {vmid} is locked ({l}): nothing was imported"
            ));
        }
        if *kind == GuestKind::Qemu {
            let m = import_vm::map_vm(*vmid, node, &inherited.node, &cfg.props, "vms").map_err(
                |e| {
                    miette!(
                        help = "declare it by hand, or change it on Proxmox first",
                        "{e}"
                    )
                },
            )?;
            if let Some(other) = names.insert(m.vm.name.clone(), *vmid) {
                return Err(miette!(
                    help = "rename one of them on Proxmox first",
                    "vm {vmid} is named \"{}\", which VMID {other} already uses",
                    m.vm.name
                ));
            }
            imported.push((*vmid, m.vm.name.clone()));
            notes.extend(m.notes);
            new_secrets.extend(m.secrets);
            vm_items.push((m.vm, format!("imported from vm {vmid} on {node}")));
            continue;
        }
        let mut m =
            import::map_container(*vmid, node, &cfg.props, &inherited, "lxc").map_err(|e| {
                miette!(
                    help = "declare it by hand, or change it on Proxmox first",
                    "{e}"
                )
            })?;
        if let Some(other) = names.insert(m.container.name.clone(), *vmid) {
            return Err(miette!(
                help = "rename one of them on Proxmox (hostname) first",
                "ct {vmid} is named \"{}\", which VMID {other} already uses",
                m.container.name
            ));
        }
        if !inherited.has_template {
            m.container.template = args.template.clone();
        }
        imported.push((*vmid, m.container.name.clone()));
        notes.extend(m.notes);
        new_secrets.extend(m.secrets);
        items.push((m.container, format!("imported from ct {vmid} on {node}")));
    }

    let path = ws.loaded.path.clone();
    let old_text = std::fs::read_to_string(&path)
        .map_err(|e| miette!("cannot read {}: {e}", path.display()))?;
    let mut new_text = old_text.clone();
    let mut yaml = String::new();
    if !items.is_empty() {
        new_text = import::insert_containers(&new_text, &items)
            .map_err(|e| miette!("cannot add to {}: {e}", path.display()))?;
        yaml.push_str("lxc.containers:\n");
        yaml.push_str(&import::render_items(&items, 2).map_err(|e| miette!("{e}"))?);
    }
    if !vm_items.is_empty() {
        new_text = import::insert_vms(&new_text, &vm_items)
            .map_err(|e| miette!("cannot add to {}: {e}", path.display()))?;
        yaml.push_str("vms.machines:\n");
        yaml.push_str(&import::render_items(&vm_items, 2).map_err(|e| miette!("{e}"))?);
    }
    // The edited file must load and resolve before anything is written.
    let mut pairs: Vec<(String, String)> = old_secrets
        .paths()
        .filter_map(|p| {
            old_secrets.get(p).map(|v| {
                (
                    p.to_string(),
                    secrecy::ExposeSecret::expose_secret(v).to_string(),
                )
            })
        })
        .collect();
    pairs.extend(new_secrets.iter().cloned());
    let merged = SecretValues::from_pairs(pairs);
    let loaded = crate::model::parse(&path, new_text.clone())?;
    desired::resolve(
        &loaded,
        &merged,
        &crate::engine::image::FactoryNaming::default(),
    )
    .map_err(|e| miette!("the imported declarations do not resolve: {e:?}"))?;
    drop(merged);
    let secret_paths: Vec<String> = new_secrets.iter().map(|(p, _)| p.clone()).collect();
    if args.dry_run {
        return Ok(Report {
            imported,
            yaml,
            secrets: secret_paths,
            notes,
            written: false,
        });
    }
    if !new_secrets.is_empty() {
        let Some(s) = &loaded.config.secrets else {
            return Err(miette!(
                help = "add `secrets: { file: secrets.enc.yaml }` (see `homelab-cli init`)",
                "{} value(s) are secrets ({}), and homelab.yaml names no secrets file",
                new_secrets.len(),
                secret_paths.join(", ")
            ));
        };
        write_secrets(session, &loaded.relative(&s.file), &new_secrets)?;
    }
    write_atomic(&path, new_text.as_bytes(), 0o644)?;
    Ok(Report {
        imported,
        yaml,
        secrets: secret_paths,
        notes,
        written: true,
    })
}

/// Add `values` to the SOPS file (values already there keep their ciphertext).
fn write_secrets(
    session: &Session,
    file: &Path,
    values: &[(String, String)],
) -> miette::Result<()> {
    let data = std::fs::read(file).map_err(|e| miette!("cannot read {}: {e}", file.display()))?;
    let mut d = Decrypted::open_with(
        &data,
        format_of(file),
        &session.ws.identities,
        DecryptOptions {
            ignore_mac: false,
            read_only: false,
        },
    )
    .map_err(|e| miette!("cannot decrypt {}: {e}", file.display()))?;
    for (path, value) in values {
        let sops_path: String = path.split('.').map(|s| format!("[\"{s}\"]")).collect();
        d.set(&sops_path, Value::String(value.clone()))
            .into_diagnostic()?;
    }
    let out = Zeroizing::new(d.encrypt(false).into_diagnostic()?);
    write_atomic(file, &out, 0o644)
}
