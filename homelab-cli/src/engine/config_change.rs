//! Machine-config changes on running Talos nodes: read back what each node runs (as
//! `talosctl get machineconfig` does, through the COSI resource API), diff it by path
//! against the rendered desired config (secret values masked), decide the apply mode as
//! Talos's own `auto` mode does (`talos_api::apply_mode`, its `CanApplyImmediate` port), and
//! plan the changes node by node (control planes first; applied by [`super::config_apply`]).
//!
//! Left out of the diff: the Kubernetes component images (`cluster.apiServer.image`,
//! `cluster.controllerManager.image`, `cluster.scheduler.image`, `cluster.proxy.image`,
//! `machine.kubelet.image`). Those move with a Kubernetes upgrade (as `talosctl upgrade-k8s`
//! is separate from `apply-config`); the config applied here keeps the running values.
//!
//! A node that the same run also upgrades (Talos version or schematic) gets its config
//! change staged right before its upgrade, so that the upgrade's own reboot brings it in: one
//! reboot, not two.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::Serialize;
use serde_yaml_ng::Value;
use talos_api::apply_mode::NeededMode;
use talos_api::secrets::SecretsBundle;

use super::plan::{Action, Plan};
use super::talos;
use crate::model::config::Role;
use crate::model::desired::{Desired, DesiredGuest, TalosCluster};
use crate::model::patches::{REDACTED, redact};

/// Paths owned by the Kubernetes upgrade, never planned as a machine-config change.
pub const KUBERNETES_IMAGE_PATHS: &[&[&str]] = &[
    &["cluster", "apiServer", "image"],
    &["cluster", "controllerManager", "image"],
    &["cluster", "scheduler", "image"],
    &["cluster", "proxy", "image"],
    &["machine", "kubelet", "image"],
];

/// How config changes are applied (`--config-mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConfigMode {
    /// As Talos's `auto` mode: live when it can, a reboot when it cannot.
    #[default]
    Auto,
    /// Staged: written to the node, taken at its next reboot; nothing reboots now.
    Staged,
}

/// The flag `plan` and `up` share.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConfigModeArg {
    /// How machine-config changes on running Talos nodes are applied: `auto` (live when
    /// Talos can, else a reboot named in the plan) or `staged` (taken at the next reboot).
    #[arg(long, value_enum, default_value_t = ConfigMode::Auto)]
    pub config_mode: ConfigMode,
}

/// The mode a planned change is applied with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApplyWith {
    /// `no-reboot`: applied live.
    NoReboot,
    /// `reboot`: the node reboots.
    Reboot,
    /// `staged`: taken at the next reboot.
    Staged,
}

impl ApplyWith {
    pub(crate) fn api(self) -> talos_api::client::ApplyMode {
        match self {
            ApplyWith::NoReboot => talos_api::client::ApplyMode::NoReboot,
            ApplyWith::Reboot => talos_api::client::ApplyMode::Reboot,
            ApplyWith::Staged => talos_api::client::ApplyMode::Staged,
        }
    }
}

/// One changed path of a machine config, for people (secret values masked).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigPathChange {
    /// `machine.sysctls["net.core.somaxconn"]`, `ResolverConfig.nameservers`.
    pub path: String,
    /// The running value (`None`: absent), `(sensitive)` when secret.
    pub from: Option<String>,
    /// The desired value (`None`: removed), `(sensitive)` when secret.
    pub to: Option<String>,
}

/// What each running node's Talos API says about its config and image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunningNode {
    /// The running machine config (`MachineConfigs.config.talos.dev/v1alpha1`).
    pub config: Option<String>,
    /// The installed schematic ID (the `schematic` extension).
    pub schematic: Option<String>,
}

/// One COSI `Get` of the machine config and one `List` of the extensions per node, all
/// nodes at once.
pub async fn observe(
    cluster: &TalosCluster,
    bundle: &SecretsBundle,
    nodes: &[(u32, IpAddr)],
) -> BTreeMap<u32, RunningNode> {
    let calls = nodes.iter().map(|&(vmid, ip)| async move {
        let client = talos::admin_client(cluster, bundle, ip)
            .ok()?
            .build()
            .ok()?;
        let (config, exts) = futures_util::join!(client.machine_config(), client.extensions());
        let config = config.ok().and_then(|b| String::from_utf8(b.to_vec()).ok());
        let schematic = exts.ok().map(|e| talos_api::cosi::schematic_of(&e));
        Some((vmid, RunningNode { config, schematic }))
    });
    futures_util::future::join_all(calls)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// The config `up` applies to a node: the desired documents with the Kubernetes component
/// images kept as the node runs them.
pub fn config_to_apply(desired: &[Value], running: &[Value]) -> Vec<Value> {
    let mut out = desired.to_vec();
    let v1 = |docs: &[Value]| docs.iter().position(|d| d.get("kind").is_none());
    if let (Some(i), Some(j)) = (v1(&out), v1(running)) {
        for path in KUBERNETES_IMAGE_PATHS {
            set_path(&mut out[i], path, get_path(&running[j], path).cloned());
        }
    }
    out
}

fn get_path<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, k| cur.get(*k))
}

/// Set (or remove, with `None`) the value at `path`, creating mappings on the way.
fn set_path(v: &mut Value, path: &[&str], value: Option<Value>) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = v;
    for k in parents {
        let Value::Mapping(m) = cur else { return };
        if value.is_none() && !m.contains_key(*k) {
            return;
        }
        cur = m
            .entry(Value::from(*k))
            .or_insert_with(|| Value::Mapping(Default::default()));
    }
    if let Value::Mapping(m) = cur {
        match value {
            Some(x) => {
                m.insert(Value::from(*last), x);
            }
            None => {
                m.remove(*last);
            }
        }
    }
}

/// The key a document is matched by: `v1alpha1`, or its kind (and name).
fn doc_key(d: &Value) -> String {
    match (
        d.get("kind").and_then(Value::as_str),
        d.get("name").and_then(Value::as_str),
    ) {
        (None, _) => String::new(),
        (Some(k), None) => k.to_string(),
        (Some(k), Some(n)) => format!("{k}[{n:?}]"),
    }
}

fn join(prefix: &str, key: &Value) -> String {
    let k = match key {
        Value::String(s) => s.clone(),
        other => serde_json::to_string(other).unwrap_or_default(),
    };
    let plain = !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (prefix.is_empty(), plain) {
        (true, true) => k,
        (true, false) => format!("[{k:?}]"),
        (false, true) => format!("{prefix}.{k}"),
        (false, false) => format!("{prefix}[{k:?}]"),
    }
}

/// A value for people: strings quoted, numbers and booleans bare, trees as one line of JSON.
fn show(v: &Value) -> String {
    match v {
        Value::String(s) if s == REDACTED => REDACTED.to_string(),
        Value::Tagged(t) => show(&t.value),
        other => serde_json::to_string(other).unwrap_or_else(|_| "?".into()),
    }
}

/// Walk the raw trees (what differs) and their redacted copies (what may be shown) together.
/// A change shows `(sensitive)` on both sides when redaction touched either side.
fn diff_walk(
    path: &str,
    a: Option<(&Value, &Value)>,
    b: Option<(&Value, &Value)>,
    out: &mut Vec<ConfigPathChange>,
) {
    if let (Some((ra, _)), Some((rb, _))) = (a, b)
        && ra == rb
    {
        return;
    }
    if let (
        Some((Value::Mapping(ma), Value::Mapping(sa))),
        Some((Value::Mapping(mb), Value::Mapping(sb))),
    ) = (a, b)
    {
        for (k, va) in ma {
            let p = join(path, k);
            let shown_a = sa.get(k).unwrap_or(va);
            let vb = mb.get(k).map(|vb| (vb, sb.get(k).unwrap_or(vb)));
            diff_walk(&p, Some((va, shown_a)), vb, out);
        }
        for (k, vb) in mb {
            if !ma.contains_key(k) {
                diff_walk(
                    &join(path, k),
                    None,
                    Some((vb, sb.get(k).unwrap_or(vb))),
                    out,
                );
            }
        }
        return;
    }
    // A mapping added or removed as a whole: one line per leaf, so every line is a path.
    match (a, b) {
        (None, Some((Value::Mapping(mb), Value::Mapping(sb)))) => {
            for (k, vb) in mb {
                diff_walk(
                    &join(path, k),
                    None,
                    Some((vb, sb.get(k).unwrap_or(vb))),
                    out,
                );
            }
            return;
        }
        (Some((Value::Mapping(ma), Value::Mapping(sa))), None) => {
            for (k, va) in ma {
                diff_walk(
                    &join(path, k),
                    Some((va, sa.get(k).unwrap_or(va))),
                    None,
                    out,
                );
            }
            return;
        }
        _ => {}
    }
    let masked = |x: Option<(&Value, &Value)>| x.is_some_and(|(raw, shown)| raw != shown);
    let secret = masked(a) || masked(b);
    let render = |x: Option<(&Value, &Value)>| {
        x.map(|(_, shown)| {
            if secret {
                REDACTED.to_string()
            } else {
                show(shown)
            }
        })
    };
    out.push(ConfigPathChange {
        path: path.to_string(),
        from: render(a),
        to: render(b),
    });
}

/// The differences between two multi-document configs, by path (`v1alpha1` paths bare,
/// other documents prefixed by their kind), values from a secret or key material masked.
pub fn diff_configs(
    running: &[Value],
    desired: &[Value],
    secret_values: &[secrecy::SecretString],
) -> Vec<ConfigPathChange> {
    let index = |docs: &[Value]| -> BTreeMap<String, (Value, Value)> {
        docs.iter()
            .map(|d| {
                let raw = talos_api::apply_mode::prune(d);
                let mut shown = raw.clone();
                redact(&mut shown, secret_values);
                (doc_key(d), (raw, shown))
            })
            .collect()
    };
    let (a, b) = (index(running), index(desired));
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let mut out = Vec::new();
    for k in keys {
        let get =
            |m: &BTreeMap<String, (Value, Value)>| m.get(k).map(|(r, s)| (r.clone(), s.clone()));
        let (x, y) = (get(&a), get(&b));
        let prefix = if k.is_empty() {
            String::new()
        } else {
            k.clone()
        };
        let xr = x.as_ref().map(|(r, s)| (r, s));
        let yr = y.as_ref().map(|(r, s)| (r, s));
        diff_walk(&prefix, xr, yr, &mut out);
    }
    out
}

/// The node's desired documents (rendered from the bundle and patches).
pub(crate) fn desired_docs(
    cluster: &TalosCluster,
    g: &DesiredGuest,
    bundle: &SecretsBundle,
) -> Result<Vec<Value>, String> {
    talos::machine_config(cluster, g, bundle)
        .map(|c| c.documents().to_vec())
        .map_err(|e| format!("machine config of {}: {e}", g.name))
}

/// The machine-config changes for running nodes, control planes first (the order `up`
/// applies them in), added to `plan`. Nodes created, replaced or configured in maintenance
/// mode by this plan get their config there and are left out.
pub fn plan_config_changes(
    desired: &Desired,
    running: &BTreeMap<u32, RunningNode>,
    bundle: Option<&SecretsBundle>,
    mode: ConfigMode,
    mut plan: Plan,
) -> Result<Plan, String> {
    let (Some(cluster), Some(bundle)) = (&desired.talos, bundle) else {
        return Ok(plan);
    };
    let skip: BTreeSet<u32> = plan
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Create { vmid, .. }
            | Action::Replace { vmid, .. }
            | Action::TalosApplyConfig { vmid, .. } => Some(*vmid),
            _ => None,
        })
        .collect();
    let upgraded: BTreeSet<u32> = plan
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::TalosUpgrade { vmid, .. } => Some(*vmid),
            _ => None,
        })
        .collect();
    let mut changes = Vec::new();
    for role in [Role::Controlplane, Role::Worker] {
        for vmid in &cluster.nodes {
            let Some(g) = desired.guests.iter().find(|g| g.vmid == *vmid) else {
                continue;
            };
            let Some(member) = &g.talos else { continue };
            if member.role != role || skip.contains(vmid) {
                continue;
            }
            let Some(text) = running.get(vmid).and_then(|r| r.config.as_deref()) else {
                continue;
            };
            let desired = desired_docs(cluster, g, bundle)?;
            changes.extend(change_of(
                (Some(*vmid), &g.name, role),
                text,
                &desired,
                &member.patches.secret_values,
                (mode, upgraded.contains(vmid)),
            )?);
        }
    }
    plan.actions.extend(changes);
    Ok(plan.finish())
}

/// The config change of one running node (`None`: it runs its config already): the
/// running config `text` against `desired` (its documents), the mode `auto` would pick
/// (staged when `mode` says so or the node's upgrade takes it), the diff with
/// `secret_values` masked.
pub(crate) fn change_of(
    (vmid, name, role): (Option<u32>, &str, Role),
    text: &str,
    desired: &[Value],
    secret_values: &[secrecy::SecretString],
    (mode, with_upgrade): (ConfigMode, bool),
) -> Result<Option<Action>, String> {
    let current = talos_api::yaml::parse_documents(text, "running machine config")
        .map_err(|e| format!("{name}: {e}"))?;
    let want = config_to_apply(desired, &current);
    let (needed, reboot_paths) = talos_api::apply_mode::decide(&current, &want);
    if needed == NeededMode::Unchanged {
        return Ok(None);
    }
    let diff = diff_configs(&current, &want, secret_values);
    if diff.is_empty() {
        return Ok(None);
    }
    let mode = if with_upgrade || mode == ConfigMode::Staged {
        ApplyWith::Staged
    } else if needed == NeededMode::Reboot {
        ApplyWith::Reboot
    } else {
        ApplyWith::NoReboot
    };
    Ok(Some(Action::TalosConfigChange {
        vmid,
        name: name.to_string(),
        role: role.to_string(),
        mode,
        with_upgrade,
        reboot_paths,
        changes: diff,
    }))
}

/// The plan text of a config change.
pub fn plan_text(a: &Action, paint: &dyn Fn(&str) -> String) -> String {
    use std::fmt::Write as _;
    let Action::TalosConfigChange {
        vmid,
        name,
        role,
        mode,
        with_upgrade,
        reboot_paths,
        changes,
    } = a
    else {
        return String::new();
    };
    let role = if vmid.is_none() {
        format!("metal {role}")
    } else {
        role.clone()
    };
    let mut out = String::new();
    let how = match (mode, with_upgrade) {
        (_, true) => "staged and taken by its Talos upgrade's reboot (no extra reboot)".to_string(),
        (ApplyWith::NoReboot, _) => "applied live (no reboot)".to_string(),
        (ApplyWith::Reboot, _) => format!(
            "the node REBOOTS ({} cannot be applied live; one node at a time)",
            reboot_paths.join(", ")
        ),
        (ApplyWith::Staged, _) => {
            "staged: taken at the node's next reboot (not rebooted now)".to_string()
        }
    };
    let _ = writeln!(
        out,
        "  # machine config of {role} \"{name}\" will be updated in place; {how}"
    );
    let _ = writeln!(out, "  {} talos_machine_config \"{name}\" {{", paint("~"));
    for c in changes {
        let (sym, value) = match (&c.from, &c.to) {
            (None, Some(t)) => ("+", t.clone()),
            (Some(f), None) => ("-", f.clone()),
            (Some(f), Some(t)) => ("~", format!("{f} -> {t}")),
            (None, None) => continue,
        };
        let _ = writeln!(out, "      {} {} = {value}", paint(sym), c.path);
    }
    out.push_str("    }\n");
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn docs(s: &str) -> Vec<Value> {
        talos_api::yaml::parse_documents(s, "t").unwrap()
    }

    const RUNNING: &str = "version: v1alpha1\nmachine:\n  type: worker\n  token: abc\n  kubelet:\n    image: ghcr.io/siderolabs/kubelet:v1.34.1\n  sysctls:\n    a: \"1\"\ncluster:\n  apiServer:\n    image: registry.k8s.io/kube-apiserver:v1.34.1\n";

    #[test]
    fn one_nodes_change_by_mode() {
        let live = docs(&RUNNING.replace("a: \"1\"", "a: \"2\""));
        let node = (None, "metal-1", Role::Worker);
        let change = |want: &[Value], how| change_of(node, RUNNING, want, &[], how).unwrap();
        // The same config (the running Kubernetes images kept): nothing to do.
        assert!(change(&docs(RUNNING), (ConfigMode::Auto, false)).is_none());
        let Some(Action::TalosConfigChange {
            vmid,
            mode,
            changes,
            with_upgrade,
            ..
        }) = change(&live, (ConfigMode::Auto, false))
        else {
            panic!("no change")
        };
        assert_eq!(
            (vmid, mode, with_upgrade),
            (None, ApplyWith::NoReboot, false)
        );
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].path, "machine.sysctls.a");
        // Staged on request, or when the node's upgrade takes it.
        for how in [(ConfigMode::Staged, false), (ConfigMode::Auto, true)] {
            let Some(Action::TalosConfigChange { mode, .. }) = change(&live, how) else {
                panic!("no change")
            };
            assert_eq!(mode, ApplyWith::Staged);
        }
        // A field Talos cannot apply live needs a reboot.
        let env = docs(&RUNNING.replace("  sysctls:", "  env: { X: y }\n  sysctls:"));
        let Some(Action::TalosConfigChange {
            mode, reboot_paths, ..
        }) = change(&env, (ConfigMode::Auto, false))
        else {
            panic!("no change")
        };
        assert_eq!(mode, ApplyWith::Reboot);
        assert_eq!(reboot_paths, ["machine.env"]);
    }

    #[test]
    fn diff_by_path_with_dotted_keys_documents_and_removals() {
        let want = docs(&format!(
            "{}---\napiVersion: v1alpha1\nkind: ResolverConfig\nnameservers:\n  - address: 9.9.9.9\n",
            RUNNING
                .replace(
                    "    a: \"1\"\n",
                    "    a: \"2\"\n    net.core.somaxconn: \"65535\"\n"
                )
                .replace("  sysctls:", "  env:\n    X: y\n  sysctls:")
        ));
        let d = diff_configs(&docs(RUNNING), &want, &[]);
        let lines: Vec<String> = d
            .iter()
            .map(|c| format!("{} {:?} {:?}", c.path, c.from, c.to))
            .collect();
        assert_eq!(
            lines,
            [
                r#"machine.sysctls.a Some("\"1\"") Some("\"2\"")"#,
                r#"machine.sysctls["net.core.somaxconn"] None Some("\"65535\"")"#,
                r#"machine.env.X None Some("\"y\"")"#,
                r#"ResolverConfig.apiVersion None Some("\"v1alpha1\"")"#,
                r#"ResolverConfig.kind None Some("\"ResolverConfig\"")"#,
                r#"ResolverConfig.nameservers None Some("[{\"address\":\"9.9.9.9\"}]")"#,
            ]
        );
        // Removed: shown with the value it had.
        let d = diff_configs(&want, &docs(RUNNING), &[]);
        assert!(d.iter().any(|c| c.path == "machine.env.X"
            && c.from.as_deref() == Some("\"y\"")
            && c.to.is_none()));
    }

    #[test]
    fn secrets_and_key_material_are_masked_on_both_sides() {
        let want = docs(&RUNNING.replace("token: abc", "token: def").replace(
            "  sysctls:",
            "  env:\n    PASSWORD_FROM_SECRET: hunter2\n  sysctls:",
        ));
        let secret: secrecy::SecretString = "hunter2".to_string().into();
        let d = diff_configs(&docs(RUNNING), &want, &[secret]);
        let text = format!("{d:?}");
        assert!(
            !text.contains("hunter2") && !text.contains("abc") && !text.contains("def"),
            "{text}"
        );
        let token = d.iter().find(|c| c.path == "machine.token").unwrap();
        assert_eq!(token.from.as_deref(), Some(REDACTED));
        assert_eq!(token.to.as_deref(), Some(REDACTED));
        let env = d
            .iter()
            .find(|c| c.path == "machine.env.PASSWORD_FROM_SECRET")
            .unwrap();
        assert_eq!(env.to.as_deref(), Some(REDACTED), "{env:?}");
        // A changed secret still shows as a change.
        assert_eq!(d.len(), 2, "{d:?}");
    }

    #[test]
    fn kubernetes_images_stay_as_the_node_runs_them() {
        let want = docs(
            &RUNNING
                .replace("kubelet:v1.34.1", "kubelet:v1.35.0")
                .replace("kube-apiserver:v1.34.1", "kube-apiserver:v1.35.0"),
        );
        let applied = config_to_apply(&want, &docs(RUNNING));
        assert_eq!(
            talos_api::apply_mode::decide(&docs(RUNNING), &applied).0,
            NeededMode::Unchanged
        );
        // Other changes go through, the images still kept.
        let want = docs(
            &RUNNING
                .replace("kubelet:v1.34.1", "kubelet:v1.35.0")
                .replace("a: \"1\"", "a: \"3\""),
        );
        let applied = config_to_apply(&want, &docs(RUNNING));
        let d = diff_configs(&docs(RUNNING), &applied, &[]);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].path, "machine.sysctls.a");
    }
}
