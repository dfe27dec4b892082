//! SDN through observe → plan → apply.
//!
//! Observe: one `pending=1` listing of zones and of vnets, then one of subnets per vnet we
//! declare or own (only when `sdn:` is declared). Plan: a pure diff of the declared
//! objects against the *staged* configuration (what the next apply makes current), which
//! also reports what is staged but not applied yet; every plan that stages something, or
//! finds something staged, ends with one `PUT /cluster/sdn`. Apply: zones → vnets →
//! subnets, deletions in the reverse order, then the apply; guests on a vnet wait for it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Arc;

use futures_util::FutureExt;
use proxmox_client::sdn::{SdnEntry, SdnState, params_of};
use proxmox_client::{Client, WaitOptions};
use serde::Serialize;

use super::apply::Env;
use super::graph::{Step, StepError};
use super::observed::Observed;
use super::plan::{Action, Plan};
use crate::model::desired::DesiredGuest;
use crate::model::sdn::{DesiredSdn, DesiredSdnObject, SdnKind, alias_owned};

/// Options homelab-cli manages per kind; others (set by hand) are left alone.
pub fn managed_keys(kind: SdnKind) -> &'static [&'static str] {
    match kind {
        SdnKind::Zone => &[
            "type",
            "peers",
            "bridge",
            "mtu",
            "nodes",
            "dhcp",
            "controller",
            "vrf-vxlan",
        ],
        SdnKind::Vnet => &["zone", "tag", "alias", "vlanaware"],
        SdnKind::Subnet => &["gateway", "snat", "dhcp-range"],
    }
}

/// One observed object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObservedSdnObject {
    /// Kind.
    pub kind: SdnKind,
    /// A subnet's vnet.
    pub vnet: Option<String>,
    /// Applied and staged state.
    pub entry: SdnEntry,
}

impl ObservedSdnObject {
    /// The configuration the next apply makes current, else the applied one.
    fn current(&self) -> Option<&BTreeMap<String, String>> {
        self.entry.staged.as_ref()
    }
    fn any(&self) -> Option<&BTreeMap<String, String>> {
        self.entry.staged.as_ref().or(self.entry.running.as_ref())
    }
}

/// What Proxmox holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ObservedSdn {
    /// Zones, vnets and the subnets of the vnets read.
    pub objects: Vec<ObservedSdnObject>,
}

impl ObservedSdn {
    fn get(&self, kind: SdnKind, id: &str) -> Option<&ObservedSdnObject> {
        self.objects
            .iter()
            .find(|o| o.kind == kind && o.entry.id == id)
    }
    fn vnet_owned(&self, id: &str, lab: &str) -> bool {
        self.get(SdnKind::Vnet, id)
            .and_then(|o| o.any())
            .and_then(|c| c.get("alias"))
            .is_some_and(|a| alias_owned(a, lab))
    }
    /// Vnets we own that are not declared (deletion candidates).
    pub fn undeclared_owned_vnets(&self, desired: &DesiredSdn, lab: &str) -> Vec<String> {
        let want = desired.vnets();
        self.objects
            .iter()
            .filter(|o| o.kind == SdnKind::Vnet && o.entry.staged.is_some())
            .filter(|o| !want.contains(o.entry.id.as_str()) && self.vnet_owned(&o.entry.id, lab))
            .map(|o| o.entry.id.clone())
            .collect()
    }
}

/// Read the SDN configuration: zones, vnets, and the subnets of the vnets declared or
/// owned by `lab`.
pub async fn observe(
    client: &Client,
    desired: &DesiredSdn,
    lab: &str,
) -> Result<ObservedSdn, proxmox_client::Error> {
    let api = client.sdn_config();
    let (zones, vnets) = futures_util::future::try_join(api.zones(), api.vnets()).await?;
    let mut out = ObservedSdn::default();
    out.objects
        .extend(zones.into_iter().map(|e| ObservedSdnObject {
            kind: SdnKind::Zone,
            vnet: None,
            entry: e,
        }));
    out.objects
        .extend(vnets.into_iter().map(|e| ObservedSdnObject {
            kind: SdnKind::Vnet,
            vnet: None,
            entry: e,
        }));
    let want = desired.vnets();
    let read: Vec<String> = out
        .objects
        .iter()
        .filter(|o| o.kind == SdnKind::Vnet)
        .filter(|o| want.contains(o.entry.id.as_str()) || out.vnet_owned(&o.entry.id, lab))
        .map(|o| o.entry.id.clone())
        .collect();
    let lists = futures_util::future::try_join_all(read.iter().map(|v| api.subnets(v))).await?;
    for (v, list) in read.into_iter().zip(lists) {
        out.objects
            .extend(list.into_iter().map(|e| ObservedSdnObject {
                kind: SdnKind::Subnet,
                vnet: Some(v.clone()),
                entry: e,
            }));
    }
    Ok(out)
}

/// The canonical text of option `key` (`None`: unset, or the value that means unset).
pub fn canon(key: &str, v: Option<&str>) -> Option<String> {
    let v = v.map(str::trim).filter(|v| !v.is_empty())?;
    match key {
        "snat" | "vlanaware" => (v == "1" || v == "true").then(|| "1".to_string()),
        "peers" | "nodes" => {
            let s: BTreeSet<&str> = v.split([',', ';', ' ']).filter(|x| !x.is_empty()).collect();
            Some(s.into_iter().collect::<Vec<_>>().join(","))
        }
        "dhcp-range" => {
            let s: BTreeSet<String> = v
                .split([';', '\0'])
                .filter(|x| !x.is_empty())
                .map(|r| {
                    // `start-address=..,end-address=..` in either order.
                    let mut parts: Vec<&str> = r.split(',').map(str::trim).collect();
                    parts.sort_unstable();
                    parts.join(",")
                })
                .collect();
            Some(s.into_iter().collect::<Vec<_>>().join(";"))
        }
        _ => Some(v.to_string()),
    }
}

/// One changed option.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SdnChange {
    /// Option.
    pub field: String,
    /// Staged value now (`None`: unset).
    pub from: Option<String>,
    /// Declared value (`None`: removed).
    pub to: Option<String>,
}

/// What happens to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SdnOp {
    /// Created.
    Create,
    /// Changed.
    Update,
    /// Deleted.
    Delete,
}

/// An SDN change to stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SdnAction {
    /// Create, update or delete.
    pub op: SdnOp,
    /// Zone, vnet or subnet.
    pub kind: SdnKind,
    /// Id.
    pub id: String,
    /// A subnet's vnet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vnet: Option<String>,
    /// A subnet's CIDR (create).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cidr: Option<String>,
    /// The options set (create) or changed (update).
    pub changes: Vec<SdnChange>,
}

/// Why the SDN plan cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SdnPlanError {
    /// A declared vnet exists without our owner marker.
    #[error("sdn vnet \"{0}\" exists and is not managed by this homelab")]
    ForeignVnet(String),
    /// A declared zone holds vnets we do not own.
    #[error("sdn zone \"{zone}\" holds vnet \"{vnet}\", which this homelab does not manage")]
    SharedZone {
        /// Zone.
        zone: String,
        /// The foreign vnet.
        vnet: String,
    },
    /// A zone's type cannot change in place.
    #[error("sdn zone \"{zone}\" is a {from} zone; Proxmox cannot turn it into a {to} zone")]
    ZoneType {
        /// Zone.
        zone: String,
        /// Its type.
        from: String,
        /// The declared type.
        to: String,
    },
    /// A vnet to delete is still used by guests.
    #[error("sdn vnet \"{vnet}\" is no longer declared but guests still use it: {guests}")]
    VnetInUse {
        /// Vnet.
        vnet: String,
        /// `name (vmid)`, comma-separated.
        guests: String,
    },
}

impl SdnPlanError {
    /// What to do about it.
    pub fn help(&self) -> &'static str {
        match self {
            SdnPlanError::ForeignVnet(_) | SdnPlanError::SharedZone { .. } => {
                "use other ids in homelab.yaml, or remove the other objects yourself"
            }
            SdnPlanError::ZoneType { .. } => {
                "declare a new zone (another id) and move the vnets to it"
            }
            SdnPlanError::VnetInUse { .. } => {
                "move those guests to another bridge (or remove them) first, or keep declaring the vnet"
            }
        }
    }
}

fn diff_options(
    kind: SdnKind,
    want: &BTreeMap<String, String>,
    have: &BTreeMap<String, String>,
) -> Vec<SdnChange> {
    managed_keys(kind)
        .iter()
        .filter(|k| kind != SdnKind::Zone || **k != "type")
        .filter_map(|k| {
            let w = want.get(*k).map(String::as_str);
            let h = have.get(*k).map(String::as_str);
            (canon(k, w) != canon(k, h)).then(|| SdnChange {
                field: (*k).to_string(),
                from: h.map(String::from),
                to: w.map(String::from),
            })
        })
        .collect()
}

/// The vnets a guest's `netN` entries name.
pub fn guest_bridges(props: &BTreeMap<String, String>) -> BTreeSet<String> {
    props
        .iter()
        .filter(|(k, _)| {
            k.strip_prefix("net")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter_map(|(_, v)| {
            v.split(',')
                .find_map(|kv| kv.strip_prefix("bridge="))
                .map(String::from)
        })
        .collect()
}

/// Whether a declared guest uses one of `vnets`.
pub fn uses_vnet(g: &DesiredGuest, vnets: &BTreeSet<&str>) -> bool {
    guest_bridges(&g.props)
        .iter()
        .any(|b| vnets.contains(b.as_str()))
}

/// The SDN actions: stage what differs from the declaration, then one apply when anything
/// is staged (by this plan or before it). `guest_plan` tells which guests go away.
pub fn diff(
    lab: &str,
    declared_guests: &[DesiredGuest],
    sdn: &DesiredSdn,
    observed: &ObservedSdn,
    guests: &Observed,
    guest_plan: &Plan,
) -> Result<Vec<Action>, SdnPlanError> {
    let mut out: Vec<Action> = Vec::new();
    let want_vnets = sdn.vnets();
    // Ownership first: vnets (the precise error), then zones.
    let by_kind = |k: SdnKind| sdn.objects.iter().filter(move |o| o.kind == k);
    for o in by_kind(SdnKind::Vnet).chain(by_kind(SdnKind::Zone)) {
        match o.kind {
            SdnKind::Vnet => {
                if observed
                    .get(SdnKind::Vnet, &o.id)
                    .and_then(|h| h.any())
                    .is_some()
                    && !observed.vnet_owned(&o.id, lab)
                {
                    return Err(SdnPlanError::ForeignVnet(o.id.clone()));
                }
            }
            SdnKind::Zone => {
                for v in observed
                    .objects
                    .iter()
                    .filter(|v| v.kind == SdnKind::Vnet)
                    .filter(|v| v.current().and_then(|c| c.get("zone")) == Some(&o.id))
                {
                    if !observed.vnet_owned(&v.entry.id, lab) {
                        return Err(SdnPlanError::SharedZone {
                            zone: o.id.clone(),
                            vnet: v.entry.id.clone(),
                        });
                    }
                }
                if let Some(t) = observed
                    .get(SdnKind::Zone, &o.id)
                    .and_then(|h| h.current())
                    .and_then(|c| c.get("type"))
                    && Some(t) != o.options.get("type")
                {
                    return Err(SdnPlanError::ZoneType {
                        zone: o.id.clone(),
                        from: t.clone(),
                        to: o.options.get("type").cloned().unwrap_or_default(),
                    });
                }
            }
            SdnKind::Subnet => {}
        }
    }
    // Deletions: undeclared subnets of declared or owned vnets, owned vnets, and zones
    // whose every vnet goes.
    let gone_vnets = observed.undeclared_owned_vnets(sdn, lab);
    let removed_guests: BTreeSet<u32> = guest_plan
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Delete { vmid, .. } => Some(*vmid),
            _ => None,
        })
        .collect();
    for v in &gone_vnets {
        let mut users: Vec<String> = declared_guests
            .iter()
            .filter(|g| guest_bridges(&g.props).contains(v))
            .map(|g| format!("{} ({})", g.name, g.vmid))
            .collect();
        let declared: BTreeSet<u32> = declared_guests.iter().map(|g| g.vmid).collect();
        users.extend(
            guests
                .guests
                .iter()
                .filter(|g| !declared.contains(&g.vmid) && !removed_guests.contains(&g.vmid))
                .filter(|g| {
                    g.config
                        .as_ref()
                        .is_some_and(|c| guest_bridges(&c.props).contains(v))
                })
                .map(|g| format!("{} ({})", g.name.as_deref().unwrap_or("?"), g.vmid)),
        );
        if !users.is_empty() {
            return Err(SdnPlanError::VnetInUse {
                vnet: v.clone(),
                guests: users.join(", "),
            });
        }
    }
    let want_subnets: BTreeSet<&str> = sdn
        .objects
        .iter()
        .filter(|o| o.kind == SdnKind::Subnet)
        .map(|o| o.id.as_str())
        .collect();
    for o in observed
        .objects
        .iter()
        .filter(|o| o.kind == SdnKind::Subnet)
    {
        // Only subnets of our vnets (a declared vnet is ours, or the plan failed above).
        let ours = o
            .vnet
            .as_deref()
            .is_some_and(|v| want_vnets.contains(v) || observed.vnet_owned(v, lab));
        if ours && o.current().is_some() && !want_subnets.contains(o.entry.id.as_str()) {
            out.push(delete_action(o));
        }
    }
    for v in &gone_vnets {
        if let Some(o) = observed.get(SdnKind::Vnet, v) {
            out.push(delete_action(o));
        }
    }
    let want_zones: BTreeSet<&str> = sdn
        .objects
        .iter()
        .filter(|o| o.kind == SdnKind::Zone)
        .map(|o| o.id.as_str())
        .collect();
    for z in observed.objects.iter().filter(|o| o.kind == SdnKind::Zone) {
        if z.current().is_none() || want_zones.contains(z.entry.id.as_str()) {
            continue;
        }
        let members: Vec<&str> = observed
            .objects
            .iter()
            .filter(|v| v.kind == SdnKind::Vnet)
            .filter(|v| v.current().and_then(|c| c.get("zone")) == Some(&z.entry.id))
            .map(|v| v.entry.id.as_str())
            .collect();
        if !members.is_empty() && members.iter().all(|m| gone_vnets.iter().any(|g| g == m)) {
            out.push(delete_action(z));
        }
    }
    // Creations and updates, zones → vnets → subnets (the order of `sdn.objects`).
    for o in &sdn.objects {
        match observed.get(o.kind, &o.id).and_then(|h| h.current()) {
            None => out.push(Action::Sdn(create_action(o))),
            Some(have) => {
                let changes = diff_options(o.kind, &o.options, have);
                if !changes.is_empty() {
                    out.push(Action::Sdn(SdnAction {
                        op: SdnOp::Update,
                        kind: o.kind,
                        id: o.id.clone(),
                        vnet: o.vnet.clone(),
                        cidr: None,
                        changes,
                    }));
                }
            }
        }
    }
    // One apply: what this plan stages, and what was staged before.
    let mut pending: Vec<String> = observed
        .objects
        .iter()
        .filter(|o| o.entry.is_pending())
        .map(|o| {
            let state = match o.entry.state {
                Some(SdnState::New) => "new",
                Some(SdnState::Changed) => "changed",
                Some(SdnState::Deleted) => "deleted",
                None => "",
            };
            let foreign = match o.kind {
                SdnKind::Vnet => !observed.vnet_owned(&o.entry.id, lab),
                SdnKind::Subnet => !o
                    .vnet
                    .as_deref()
                    .is_some_and(|v| observed.vnet_owned(v, lab) || want_vnets.contains(v)),
                SdnKind::Zone => !want_zones.contains(o.entry.id.as_str()),
            };
            format!(
                "{} {} ({state}{})",
                o.kind.as_str(),
                o.entry.id,
                if foreign { ", not managed here" } else { "" }
            )
        })
        .collect();
    pending.sort();
    if !out.is_empty() || !pending.is_empty() {
        out.push(Action::ApplySdn { pending });
    }
    Ok(out)
}

fn create_action(o: &DesiredSdnObject) -> SdnAction {
    SdnAction {
        op: SdnOp::Create,
        kind: o.kind,
        id: o.id.clone(),
        vnet: o.vnet.clone(),
        cidr: o.cidr.clone(),
        changes: o
            .options
            .iter()
            .map(|(k, v)| SdnChange {
                field: k.clone(),
                from: None,
                to: Some(v.clone()),
            })
            .collect(),
    }
}

fn delete_action(o: &ObservedSdnObject) -> Action {
    Action::Sdn(SdnAction {
        op: SdnOp::Delete,
        kind: o.kind,
        id: o.entry.id.clone(),
        vnet: o.vnet.clone(),
        cidr: None,
        changes: vec![],
    })
}

// ------------------------------------------------------------------------------- text

fn quote(v: &str) -> String {
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        v.to_string()
    } else {
        format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// The plan text of an SDN action (empty for other actions).
pub fn plan_text(a: &Action, paint: &dyn Fn(&str) -> String) -> String {
    let mut out = String::new();
    match a {
        Action::Sdn(s) => {
            let noun = s.kind.as_str();
            let (sym, what) = match s.op {
                SdnOp::Create => ("+", "created"),
                SdnOp::Update => ("~", "updated in place"),
                SdnOp::Delete => ("-", "deleted"),
            };
            let _ = writeln!(
                out,
                "  # sdn {noun} \"{}\" will be {what} (staged; takes effect with the SDN apply)",
                s.id
            );
            if s.op == SdnOp::Delete {
                let _ = writeln!(out, "  {} sdn_{noun} \"{}\"", paint(sym), s.id);
                return out;
            }
            let _ = writeln!(out, "  {} sdn_{noun} \"{}\" {{", paint(sym), s.id);
            let mut rows: Vec<(String, &SdnChange)> =
                s.changes.iter().map(|c| (c.field.clone(), c)).collect();
            if let Some(c) = &s.cidr {
                let _ = writeln!(out, "      {} cidr = {}", paint("+"), quote(c));
            }
            rows.sort_by(|a, b| a.0.cmp(&b.0));
            let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
            for (f, c) in rows {
                let (sym, value) = match (&c.from, &c.to) {
                    (None, Some(t)) => ("+", quote(t)),
                    (Some(x), None) => ("-", quote(x)),
                    (Some(x), Some(t)) => ("~", format!("{} -> {}", quote(x), quote(t))),
                    (None, None) => continue,
                };
                let _ = writeln!(out, "      {} {f:width$} = {value}", paint(sym));
            }
            out.push_str("    }\n");
        }
        Action::ApplySdn { pending } => {
            let _ = writeln!(
                out,
                "  # the staged SDN configuration will be applied on every node (PUT /cluster/sdn)"
            );
            let _ = writeln!(out, "  {} sdn_apply {{", paint("~"));
            if pending.is_empty() {
                let _ = writeln!(out, "      # applies the changes above");
            } else {
                for p in pending {
                    let _ = writeln!(out, "      # pending before this plan: {p}");
                }
            }
            out.push_str("    }\n");
        }
        _ => {}
    }
    out
}

// ------------------------------------------------------------------------------- apply

fn step_id(s: &SdnAction) -> String {
    format!("sdn:{}:{}", s.kind.as_str(), s.id)
}

fn desired_object<'a>(env: &'a Env, s: &SdnAction) -> Result<&'a DesiredSdnObject, StepError> {
    env.desired
        .sdn
        .as_ref()
        .and_then(|d| d.objects.iter().find(|o| o.kind == s.kind && o.id == s.id))
        .ok_or_else(|| StepError::new(format!("sdn {} {} is not declared", s.kind.as_str(), s.id)))
}

fn hint(e: StepError) -> StepError {
    e.hint("the token needs SDN.Audit and SDN.Allocate on /sdn; the provisioning role of `homelab-cli proxmox token create` leaves SDN.Allocate out: add both to the token's role (`pveum acl modify /sdn --tokens <id> --roles PVESDNAdmin`)")
}

async fn run(env: &Env, s: &SdnAction) -> Result<String, StepError> {
    let api = env.pve.sdn_config();
    let fail = |e: proxmox_client::Error| {
        hint(StepError::new(format!(
            "{} sdn {} {}: {e}",
            match s.op {
                SdnOp::Create => "create",
                SdnOp::Update => "update",
                SdnOp::Delete => "delete",
            },
            s.kind.as_str(),
            s.id
        )))
    };
    match s.op {
        SdnOp::Delete => {
            match s.kind {
                SdnKind::Zone => api.delete_zone(&s.id).await,
                SdnKind::Vnet => api.delete_vnet(&s.id).await,
                SdnKind::Subnet => {
                    api.delete_subnet(s.vnet.as_deref().unwrap_or(""), &s.id)
                        .await
                }
            }
            .map_err(fail)?;
            Ok("deleted (staged)".into())
        }
        SdnOp::Create => {
            let d = desired_object(env, s)?;
            let mut opts = d.options.clone();
            match s.kind {
                SdnKind::Zone => {
                    let t = opts.remove("type").unwrap_or_default();
                    api.create_zone(&s.id, &t, &params_of(&opts)).await
                }
                SdnKind::Vnet => {
                    let z = opts.remove("zone").unwrap_or_default();
                    api.create_vnet(&s.id, &z, &params_of(&opts)).await
                }
                SdnKind::Subnet => {
                    api.create_subnet(
                        d.vnet.as_deref().unwrap_or(""),
                        d.cidr.as_deref().unwrap_or(""),
                        &params_of(&opts),
                    )
                    .await
                }
            }
            .map_err(fail)?;
            Ok("created (staged)".into())
        }
        SdnOp::Update => {
            let d = desired_object(env, s)?;
            let set: BTreeMap<String, String> = s
                .changes
                .iter()
                .filter_map(|c| {
                    c.to.as_ref().and_then(|_| {
                        d.options
                            .get(&c.field)
                            .map(|v| (c.field.clone(), v.clone()))
                    })
                })
                .collect();
            let delete: Vec<&str> = s
                .changes
                .iter()
                .filter(|c| c.to.is_none())
                .map(|c| c.field.as_str())
                .collect();
            let p = params_of(&set);
            match s.kind {
                SdnKind::Zone => api.update_zone(&s.id, &p, &delete).await,
                SdnKind::Vnet => api.update_vnet(&s.id, &p, &delete).await,
                SdnKind::Subnet => {
                    api.update_subnet(d.vnet.as_deref().unwrap_or(""), &s.id, &p, &delete)
                        .await
                }
            }
            .map_err(fail)?;
            Ok(format!("{} change(s) (staged)", s.changes.len()))
        }
    }
}

/// The step of an SDN action (`None` for other actions). Creations and updates wait for
/// their zone / vnet; deletions for what they contain; the apply for every SDN step.
pub fn step(env: Arc<Env>, a: &Action, plan: &Plan) -> Option<Step> {
    let sdn_steps: Vec<&SdnAction> = plan
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Sdn(s) => Some(s),
            _ => None,
        })
        .collect();
    match a.clone() {
        Action::Sdn(s) => {
            let mut deps = Vec::new();
            match (s.op, s.kind) {
                (SdnOp::Create | SdnOp::Update, SdnKind::Vnet) => {
                    if let Some(z) = env.desired.sdn.as_ref().and_then(|d| {
                        d.objects
                            .iter()
                            .find(|o| o.kind == SdnKind::Vnet && o.id == s.id)
                            .and_then(|o| o.options.get("zone"))
                    }) {
                        deps.push(format!("sdn:zone:{z}"));
                    }
                }
                (SdnOp::Create | SdnOp::Update, SdnKind::Subnet) => {
                    if let Some(v) = &s.vnet {
                        deps.push(format!("sdn:vnet:{v}"));
                    }
                }
                (SdnOp::Delete, SdnKind::Vnet) => deps.extend(
                    sdn_steps
                        .iter()
                        .filter(|o| o.kind == SdnKind::Subnet && o.vnet.as_ref() == Some(&s.id))
                        .map(|o| step_id(o)),
                ),
                (SdnOp::Delete, SdnKind::Zone) => deps.extend(
                    sdn_steps
                        .iter()
                        .filter(|o| o.kind == SdnKind::Vnet && o.op == SdnOp::Delete)
                        .map(|o| step_id(o)),
                ),
                _ => {}
            }
            // Deletions first: a tag or subnet freed by one may be taken by a creation.
            if s.op != SdnOp::Delete {
                deps.extend(
                    sdn_steps
                        .iter()
                        .filter(|o| o.op == SdnOp::Delete)
                        .map(|o| step_id(o)),
                );
            }
            let label = format!(
                "{} sdn {} \"{}\"",
                match s.op {
                    SdnOp::Create => "create",
                    SdnOp::Update => "update",
                    SdnOp::Delete => "delete",
                },
                s.kind.as_str(),
                s.id
            );
            Some(Step {
                id: step_id(&s),
                label,
                deps,
                run: async move { run(&env, &s).await }.boxed(),
            })
        }
        Action::ApplySdn { .. } => {
            let deps = sdn_steps.iter().map(|o| step_id(o)).collect();
            Some(Step {
                id: "sdn:apply".into(),
                label: "apply the SDN configuration (PUT /cluster/sdn)".into(),
                deps,
                run: async move {
                    let upid = env.pve.sdn_config().apply().await.map_err(|e| {
                        hint(StepError::new(format!("apply the SDN configuration: {e}")))
                    })?;
                    env.pve
                        .wait_task(
                            &upid,
                            &WaitOptions {
                                deadline: env.timeouts.task,
                                ..WaitOptions::default()
                            },
                        )
                        .await
                        .map_err(|e| StepError::new(format!("apply the SDN configuration: {e}")))?;
                    Ok("applied".into())
                }
                .boxed(),
            })
        }
        _ => None,
    }
}

/// Guests on a declared vnet wait for the SDN apply (their bridge exists only then).
pub fn order_guests(env: &Env, steps: &mut [Step]) {
    let Some(sdn) = &env.desired.sdn else {
        return;
    };
    if !steps.iter().any(|s| s.id == "sdn:apply") {
        return;
    }
    let vnets = sdn.vnets();
    let on_vnet: BTreeSet<u32> = env
        .desired
        .guests
        .iter()
        .filter(|g| uses_vnet(g, &vnets))
        .map(|g| g.vmid)
        .collect();
    for s in steps.iter_mut() {
        let vmid =
            s.id.strip_prefix("guest:")
                .or_else(|| s.id.strip_prefix("start:"))
                .and_then(|v| v.parse::<u32>().ok());
        if vmid.is_some_and(|v| on_vnet.contains(&v)) {
            s.deps.push("sdn:apply".into());
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms() {
        assert_eq!(canon("snat", Some("0")), None);
        assert_eq!(canon("snat", Some("1")).as_deref(), Some("1"));
        assert_eq!(
            canon("peers", Some("10.0.0.2, 10.0.0.1")),
            canon("peers", Some("10.0.0.1,10.0.0.2"))
        );
        assert_eq!(
            canon(
                "dhcp-range",
                Some("end-address=10.0.0.20,start-address=10.0.0.10")
            ),
            canon(
                "dhcp-range",
                Some("start-address=10.0.0.10,end-address=10.0.0.20")
            )
        );
    }

    fn entry(
        id: &str,
        running: Option<&[(&str, &str)]>,
        staged: Option<&[(&str, &str)]>,
        state: Option<SdnState>,
    ) -> SdnEntry {
        let m = |kv: &[(&str, &str)]| -> BTreeMap<String, String> {
            kv.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        SdnEntry {
            id: id.into(),
            running: running.map(m),
            staged: staged.map(m),
            state,
        }
    }

    fn declared() -> DesiredSdn {
        let sdn: crate::model::sdn::Sdn = serde_yaml_ng::from_str(
            "zones: {ov: {type: vxlan, peers: [10.0.0.1, 10.0.0.2]}}\n\
             vnets: {web: {zone: ov, tag: 100, subnets: [{cidr: 10.10.0.0/24, gateway: 10.10.0.1}]}}\n",
        )
        .unwrap();
        crate::model::sdn::resolve(&sdn, "home")
    }

    /// What Proxmox shows after `declared()` was created and applied.
    fn applied() -> ObservedSdn {
        let zone: &[(&str, &str)] = &[("type", "vxlan"), ("peers", "10.0.0.2,10.0.0.1")];
        let vnet: &[(&str, &str)] = &[
            ("type", "vnet"),
            ("zone", "ov"),
            ("tag", "100"),
            ("alias", "homelab-cli:owner=home"),
        ];
        let subnet: &[(&str, &str)] = &[
            ("type", "subnet"),
            ("vnet", "web"),
            ("cidr", "10.10.0.0/24"),
            ("gateway", "10.10.0.1"),
        ];
        ObservedSdn {
            objects: vec![
                ObservedSdnObject {
                    kind: SdnKind::Zone,
                    vnet: None,
                    entry: entry("ov", Some(zone), Some(zone), None),
                },
                ObservedSdnObject {
                    kind: SdnKind::Vnet,
                    vnet: None,
                    entry: entry("web", Some(vnet), Some(vnet), None),
                },
                ObservedSdnObject {
                    kind: SdnKind::Subnet,
                    vnet: Some("web".into()),
                    entry: entry("ov-10.10.0.0-24", Some(subnet), Some(subnet), None),
                },
            ],
        }
    }

    fn run_diff(d: &DesiredSdn, o: &ObservedSdn) -> Result<Vec<Action>, SdnPlanError> {
        diff("home", &[], d, o, &Observed::default(), &Plan::default())
    }

    #[test]
    fn a_new_network_is_staged_in_order_then_applied_once() {
        let a = run_diff(&declared(), &ObservedSdn::default()).unwrap();
        let ops: Vec<String> = a
            .iter()
            .map(|a| match a {
                Action::Sdn(s) => format!("{:?} {} {}", s.op, s.kind.as_str(), s.id),
                Action::ApplySdn { .. } => "apply".into(),
                _ => panic!("{a:?}"),
            })
            .collect();
        assert_eq!(
            ops,
            [
                "Create zone ov",
                "Create vnet web",
                "Create subnet ov-10.10.0.0-24",
                "apply"
            ]
        );
        let text: String = a.iter().map(|a| plan_text(a, &|s| s.to_string())).collect();
        assert!(text.contains("+ tag   = 100"), "{text}");
        assert!(text.contains("+ cidr = \"10.10.0.0/24\""), "{text}");
    }

    #[test]
    fn what_proxmox_holds_plans_nothing_and_staged_changes_are_applied() {
        assert!(run_diff(&declared(), &applied()).unwrap().is_empty());
        // The declared gateway is staged but not applied: only the apply.
        let mut o = applied();
        let s = &mut o.objects[2].entry;
        s.staged
            .as_mut()
            .unwrap()
            .insert("gateway".into(), "10.10.0.254".into());
        s.state = Some(SdnState::Changed);
        let mut d = declared();
        d.objects[2]
            .options
            .insert("gateway".into(), "10.10.0.254".into());
        let a = run_diff(&d, &o).unwrap();
        assert_eq!(
            a,
            [Action::ApplySdn {
                pending: vec!["subnet ov-10.10.0.0-24 (changed)".into()]
            }]
        );
        // Declared differently from what is staged: an update, then the apply.
        let a = run_diff(&declared(), &o).unwrap();
        let [Action::Sdn(u), Action::ApplySdn { .. }] = &a[..] else {
            panic!("{a:?}")
        };
        assert_eq!((u.op, u.changes.len()), (SdnOp::Update, 1));
        assert_eq!(u.changes[0].to.as_deref(), Some("10.10.0.1"));
    }

    #[test]
    fn ownership_decides_what_is_touched() {
        // A declared vnet id taken by someone else's vnet.
        let mut o = applied();
        let e = &mut o.objects[1].entry;
        for c in [&mut e.running, &mut e.staged] {
            c.as_mut().unwrap().insert("alias".into(), "theirs".into());
        }
        assert_eq!(
            run_diff(&declared(), &o).unwrap_err(),
            SdnPlanError::ForeignVnet("web".into())
        );
        // Our vnet no longer declared: its subnet, itself and its zone go.
        let a = run_diff(&DesiredSdn::default(), &applied()).unwrap();
        let ops: Vec<String> = a
            .iter()
            .filter_map(|a| match a {
                Action::Sdn(s) => Some(format!("{:?} {}", s.op, s.id)),
                _ => None,
            })
            .collect();
        assert_eq!(ops, ["Delete ov-10.10.0.0-24", "Delete web", "Delete ov"]);
        // Someone else's objects, not declared: left alone.
        assert!(run_diff(&DesiredSdn::default(), &o).unwrap().is_empty());
    }

    #[test]
    fn bridges_of_a_guest() {
        let props: BTreeMap<String, String> = [
            ("net0", "virtio=AA:BB:CC:DD:EE:FF,bridge=web,firewall=1"),
            ("net1", "virtio,bridge=vmbr0"),
            ("name", "bridge=nope"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let b = guest_bridges(&props);
        assert_eq!(b.into_iter().collect::<Vec<_>>(), ["vmbr0", "web"]);
    }
}
