//! Which machine-config changes a running Talos 1.12 node applies without a reboot, as its
//! `auto` apply mode decides, and a diff of two configs by path.
//!
//! Talos 1.12 (siderolabs/talos, tag v1.12.0,
//! `internal/app/machined/pkg/runtime/v1alpha1/v1alpha1_runtime.go`, `CanApplyImmediate`)
//! copies a fixed set of fields from the running `v1alpha1` document into the new one and
//! compares the rest: any remaining difference needs a reboot. `ApplyConfiguration`
//! (`internal/app/machined/internal/server/v1alpha1/v1alpha1_server.go`) then picks
//! `REBOOT` in `auto` mode, and refuses the call in `no-reboot` mode with
//! `this config change can't be applied in immediate mode` followed by the diff. Documents
//! other than `v1alpha1` (multi-document configs) never need a reboot there.
//! (Talos 1.14 drops the reboot mode altogether: commit 995bc30d5.)

use serde_yaml_ng::{Mapping, Value};

/// Top-level `v1alpha1` keys applied live (`.debug`, `.cluster`).
const LIVE_TOP: &[&str] = &["debug", "cluster"];

/// `machine.*` keys applied live.
const LIVE_MACHINE: &[&str] = &[
    "ca",
    "acceptedCAs",
    "time",
    "certSANs",
    "install",
    "network",
    "sysfs",
    "sysctls",
    "logging",
    "controlPlane",
    "kubelet",
    "kernel",
    "registries",
    "pods",
    "seccompProfiles",
    "nodeAnnotations",
    "nodeLabels",
    "nodeTaints",
];

/// `machine.features.*` keys applied live.
const LIVE_FEATURES: &[&str] = &[
    "kubernetesTalosAPIAccess",
    "kubePrism",
    "hostDNS",
    "imageCache",
    "nodeAddressSortAlgorithm",
];

/// The apply mode a change needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum NeededMode {
    /// Nothing differs.
    Unchanged,
    /// Applied live (`auto` picks `no-reboot`).
    NoReboot,
    /// Needs a reboot (`auto` picks `reboot`; `no-reboot` is refused).
    Reboot,
}

/// What applying `new` over `current` (both full multi-document configs) needs, and the
/// paths of the `v1alpha1` fields that force a reboot.
pub fn decide(current: &[Value], new: &[Value]) -> (NeededMode, Vec<String>) {
    if normalized(current) == normalized(new) {
        return (NeededMode::Unchanged, Vec::new());
    }
    let (Some(cur), Some(next)) = (v1alpha1(current), v1alpha1(new)) else {
        // Talos: "no current config" / "new config is not v1alpha1" are errors, so `auto`
        // reboots.
        return (NeededMode::Reboot, vec!["(v1alpha1 document)".into()]);
    };
    let blocking = reboot_paths(cur, next);
    if blocking.is_empty() {
        (NeededMode::NoReboot, blocking)
    } else {
        (NeededMode::Reboot, blocking)
    }
}

/// The paths that differ between two `v1alpha1` documents once the live-applied fields are
/// taken from `current`, as `CanApplyImmediate` does.
pub fn reboot_paths(current: &Value, new: &Value) -> Vec<String> {
    let mut masked = new.clone();
    copy_keys(&mut masked, current, &[], LIVE_TOP);
    let both_machine = current.get("machine").is_some_and(Value::is_mapping)
        && new.get("machine").is_some_and(Value::is_mapping);
    if both_machine {
        copy_keys(&mut masked, current, &["machine"], LIVE_MACHINE);
        let both_features = current
            .get("machine")
            .and_then(|m| m.get("features"))
            .is_some_and(Value::is_mapping)
            && new
                .get("machine")
                .and_then(|m| m.get("features"))
                .is_some_and(Value::is_mapping);
        if both_features {
            copy_keys(
                &mut masked,
                current,
                &["machine", "features"],
                LIVE_FEATURES,
            );
        }
    }
    diff(current, &masked).into_iter().map(|c| c.path).collect()
}

/// Set `keys` of the mapping at `at` in `dst` to what `src` has there (removing them when
/// `src` lacks them).
fn copy_keys(dst: &mut Value, src: &Value, at: &[&str], keys: &[&str]) {
    let mut d = dst;
    let mut s = Some(src);
    for k in at {
        let Some(next) = d.get_mut(*k) else {
            return;
        };
        d = next;
        s = s.and_then(|v| v.get(*k));
    }
    let Value::Mapping(dm) = d else {
        return;
    };
    for k in keys {
        match s.and_then(|v| v.get(*k)) {
            Some(v) => {
                dm.insert(Value::from(*k), v.clone());
            }
            None => {
                dm.remove(*k);
            }
        }
    }
}

fn v1alpha1(docs: &[Value]) -> Option<&Value> {
    docs.iter().find(|d| d.get("kind").is_none())
}

/// Documents with empty values dropped, sorted by kind and name (order carries no meaning).
fn normalized(docs: &[Value]) -> Vec<Value> {
    let mut v: Vec<Value> = docs.iter().map(prune).collect();
    v.sort_by_key(|d| {
        (
            d.get("kind")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            d.get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        )
    });
    v
}

/// A copy without null values and empty mappings/lists (YAML `omitempty`): what Talos
/// compares, since its typed config does not tell an empty field from a missing one.
pub fn prune(v: &Value) -> Value {
    match v {
        Value::Mapping(m) => {
            let mut out = Mapping::new();
            for (k, x) in m {
                let p = prune(x);
                if !is_empty(&p) {
                    out.insert(k.clone(), p);
                }
            }
            Value::Mapping(out)
        }
        Value::Sequence(s) => Value::Sequence(s.iter().map(prune).collect()),
        other => other.clone(),
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Mapping(m) => m.is_empty(),
        Value::Sequence(s) => s.is_empty(),
        _ => false,
    }
}

/// One difference between two documents.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PathChange {
    /// Dotted path (`machine.sysctls.net.core.somaxconn` keeps the key as one segment:
    /// `machine.sysctls["net.core.somaxconn"]`).
    pub path: String,
    /// The value before (`None`: absent).
    pub from: Option<Value>,
    /// The value after (`None`: removed).
    pub to: Option<Value>,
}

/// The differences between two documents, by path, in document order. Lists are compared
/// as a whole; empty values count as absent.
pub fn diff(a: &Value, b: &Value) -> Vec<PathChange> {
    let mut out = Vec::new();
    diff_into("", &prune(a), &prune(b), &mut out);
    out
}

fn join(prefix: &str, key: &Value) -> String {
    let k = match key {
        Value::String(s) => s.clone(),
        other => serde_yaml_ng::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
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

fn diff_into(path: &str, a: &Value, b: &Value, out: &mut Vec<PathChange>) {
    if a == b {
        return;
    }
    match (a, b) {
        (Value::Mapping(ma), Value::Mapping(mb)) => {
            for (k, va) in ma {
                let p = join(path, k);
                match mb.get(k) {
                    Some(vb) => diff_into(&p, va, vb, out),
                    None => out.push(PathChange {
                        path: p,
                        from: Some(va.clone()),
                        to: None,
                    }),
                }
            }
            for (k, vb) in mb {
                if !ma.contains_key(k) {
                    out.push(PathChange {
                        path: join(path, k),
                        from: None,
                        to: Some(vb.clone()),
                    });
                }
            }
        }
        _ => out.push(PathChange {
            path: path.to_string(),
            from: Some(a.clone()),
            to: Some(b.clone()),
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn y(s: &str) -> Value {
        serde_yaml_ng::from_str(s).unwrap()
    }

    const BASE: &str = "version: v1alpha1\ndebug: false\nmachine:\n  type: worker\n  token: t\n  install: { disk: /dev/sda, image: a }\n  features: { rbac: true, kubePrism: { enabled: true } }\n  env: {}\ncluster:\n  clusterName: lab\n";

    #[test]
    fn live_fields_need_no_reboot() {
        let cur = y(BASE);
        for patch in [
            "machine: { sysctls: { net.core.somaxconn: '1024' } }",
            "machine: { kubelet: { extraArgs: { max-pods: '150' } } }",
            "machine: { install: { image: b } }",
            "machine: { network: { hostname: x } }",
            "machine: { features: { kubePrism: { enabled: false } } }",
            "machine: { nodeLabels: { a: b } }",
            "cluster: { proxy: { disabled: true } }",
            "debug: true",
        ] {
            let mut new = cur.clone();
            crate::patch::merge(&mut new, &y(patch));
            assert_eq!(
                decide(std::slice::from_ref(&cur), &[new]),
                (NeededMode::NoReboot, vec![]),
                "{patch}"
            );
        }
    }

    #[test]
    fn other_machine_fields_need_a_reboot_and_are_named() {
        let cur = y(BASE);
        for (patch, path) in [
            ("machine: { env: { HTTP_PROXY: x } }", "machine.env"),
            (
                "machine: { features: { rbac: false } }",
                "machine.features.rbac",
            ),
            (
                "machine: { files: [ { path: /var/f, content: x, op: create } ] }",
                "machine.files",
            ),
            ("machine: { token: u }", "machine.token"),
        ] {
            let mut new = cur.clone();
            crate::patch::merge(&mut new, &y(patch));
            let (mode, paths) = decide(std::slice::from_ref(&cur), &[new]);
            assert_eq!(mode, NeededMode::Reboot, "{patch}");
            assert_eq!(paths, vec![path.to_string()], "{patch}");
        }
    }

    #[test]
    fn extra_documents_and_no_change() {
        let cur = y(BASE);
        let extra = y(
            "apiVersion: v1alpha1\nkind: ResolverConfig\nnameservers: [ { address: 9.9.9.9 } ]\n",
        );
        assert_eq!(
            decide(std::slice::from_ref(&cur), &[cur.clone(), extra]).0,
            NeededMode::NoReboot
        );
        assert_eq!(
            decide(std::slice::from_ref(&cur), std::slice::from_ref(&cur)).0,
            NeededMode::Unchanged
        );
        // Empty values are absent values.
        let mut same = cur.clone();
        crate::patch::merge(&mut same, &y("machine: { sysctls: {} }"));
        assert_eq!(
            decide(std::slice::from_ref(&cur), &[same]).0,
            NeededMode::Unchanged
        );
    }

    #[test]
    fn diff_by_path_quotes_dotted_keys() {
        let a = y("machine: { sysctls: { a: '1' }, type: worker }");
        let b = y("machine: { sysctls: { a: '2', net.core.x: '3' }, type: worker }");
        let d = diff(&a, &b);
        let paths: Vec<&str> = d.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(
            paths,
            ["machine.sysctls.a", "machine.sysctls[\"net.core.x\"]"]
        );
        assert_eq!(d[1].from, None);
    }
}
