//! Machine-config patches in homelab.yaml: where they are written, the one order they are
//! applied in, `${secret:...}` references inside them, and errors that point into the
//! patch file.
//!
//! ```yaml
//! talos:
//!   patches:
//!     all:          [ { file: patches/cilium.yaml } ]      # every node
//!     controlplane: [ { inline: { cluster: { proxy: { disabled: true } } } } ]
//!     worker:       [ { file: patches/kubelet.yaml } ]
//!   nodes:
//!     - { name: cp-1, ..., patches: [ { file: patches/cp-1.yaml } ] }
//! ```
//!
//! Order (later wins): the generated configuration, then `talos.patches.all`, then
//! `talos.patches.<role>`, then the node's own `patches`; inside each list, top to bottom;
//! inside a multi-document file, document by document; inside an RFC 6902 patch, operation
//! by operation. Patch mechanics (strategic merge, RFC 6902) live in `talos_api::patch`.

use std::path::PathBuf;
use std::sync::Arc;

use schemars::JsonSchema;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_yaml_ng::Value;
use talos_api::patch::Patch;

use super::config::Role;
use super::secrets::SecretValues;
use super::spans::{Span, SpanMap};
use super::{ConfigError, Loaded};

/// Patches for every node and for each role.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterPatches {
    /// Applied to every node, first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub all: Vec<PatchSpec>,
    /// Applied to control planes, after `all`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub controlplane: Vec<PatchSpec>,
    /// Applied to workers, after `all`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub worker: Vec<PatchSpec>,
}

impl ClusterPatches {
    /// Whether no patch is set.
    pub fn is_empty(&self) -> bool {
        self.all.is_empty() && self.controlplane.is_empty() && self.worker.is_empty()
    }
}

/// One machine-config patch: a file or inline YAML (exactly one of the two).
///
/// A patch is a strategic merge (a mapping; several `---` documents may add or patch other
/// config documents by `kind`/`name`) or an RFC 6902 JSON patch (a list of `op`/`path`/
/// `value`, applied to the `v1alpha1` document). String values may reference secrets
/// (`${secret:path}`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchSpec {
    /// A YAML or JSON file, relative to homelab.yaml (e.g. `patches/cilium.yaml`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// The patch itself: a mapping, a list of RFC 6902 operations, or a string holding
    /// YAML documents separated by `---`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<serde_json::Value>")]
    pub inline: Option<Value>,
}

/// One step of a resolved patch: a single document (strategic merge) or a single RFC 6902
/// operation, with where it was written (`patches/cilium.yaml:12`).
#[derive(Clone, PartialEq)]
pub struct PatchPart {
    /// `file:line` of the document or operation.
    pub at: String,
    /// The patch (secrets substituted).
    pub patch: Patch,
}

impl std::fmt::Debug for PatchPart {
    // The patch may hold secret values: only its origin is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PatchPart").field("at", &self.at).finish()
    }
}

/// A node's patches in application order, and the secret values substituted into them
/// (for redaction).
#[derive(Clone, Default)]
pub struct NodePatches {
    /// The parts, in the documented order.
    pub parts: Vec<PatchPart>,
    /// Values that came from `${secret:...}` references.
    pub secret_values: Vec<SecretString>,
}

impl PartialEq for NodePatches {
    fn eq(&self, other: &Self) -> bool {
        self.parts == other.parts
    }
}
// Patches are YAML trees; a NaN in one is not a concern for comparing desired states.
impl Eq for NodePatches {}

impl std::fmt::Debug for NodePatches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodePatches")
            .field("parts", &self.parts)
            .finish_non_exhaustive()
    }
}

impl NodePatches {
    /// Where each part comes from, in order.
    pub fn origins(&self) -> Vec<&str> {
        self.parts.iter().map(|p| p.at.as_str()).collect()
    }

    /// Apply every part to a machine config, in order. An error names the patch file and
    /// line of the document or operation that failed.
    pub fn apply_to(
        &self,
        config: &mut talos_api::config::MachineConfig,
    ) -> Result<(), talos_api::Error> {
        for p in &self.parts {
            config
                .apply_patches(std::slice::from_ref(&p.patch))
                .map_err(|e| match e {
                    // Each part holds one operation: its number says nothing.
                    talos_api::Error::Patch { patch, message } => talos_api::Error::Patch {
                        patch,
                        message: message
                            .strip_prefix("operation 0: ")
                            .map(str::to_string)
                            .unwrap_or(message),
                    },
                    other => other,
                })?;
        }
        Ok(())
    }

    /// Apply every part to the config documents, in order. An error names the patch file
    /// and line of the document or operation that failed.
    pub fn apply(&self, docs: &mut Vec<Value>) -> Result<(), talos_api::Error> {
        for p in &self.parts {
            p.patch.apply(docs).map_err(|e| talos_api::Error::Patch {
                patch: p.at.clone(),
                message: match e {
                    talos_api::Error::Patch { message, .. } => message,
                    other => other.to_string(),
                },
            })?;
        }
        Ok(())
    }
}

/// The `(homelab.yaml path, spec)` list of patches for a node of `role`, in order.
pub fn specs_for<'a>(
    cluster: &'a ClusterPatches,
    role: Role,
    node_index: usize,
    node: &'a [PatchSpec],
) -> Vec<(String, &'a PatchSpec)> {
    let mut out: Vec<(String, &PatchSpec)> = Vec::new();
    for (i, s) in cluster.all.iter().enumerate() {
        out.push((format!("talos.patches.all[{i}]"), s));
    }
    let (name, list) = match role {
        Role::Controlplane => ("controlplane", &cluster.controlplane),
        Role::Worker => ("worker", &cluster.worker),
    };
    for (i, s) in list.iter().enumerate() {
        out.push((format!("talos.patches.{name}[{i}]"), s));
    }
    for (i, s) in node.iter().enumerate() {
        out.push((format!("talos.nodes[{node_index}].patches[{i}]"), s));
    }
    out
}

/// Structural checks that need no secrets nor files: exactly one of `file`/`inline`.
pub fn validate(l: &Loaded, errs: &mut Vec<ConfigError>) {
    let Some(t) = &l.config.talos else {
        return;
    };
    // Every VM node's list, then the shared ones of each role when metal nodes get them.
    let no_patches: Vec<PatchSpec> = Vec::new();
    let with_metal = !t.metal.is_empty();
    let lists = t
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (i, n.role, &n.patches))
        .chain(
            [Role::Controlplane, Role::Worker]
                .into_iter()
                .filter(|_| with_metal)
                .map(|r| (0, r, &no_patches)),
        );
    let mut seen = std::collections::BTreeSet::new();
    for (i, role, node_patches) in lists {
        for (path, spec) in specs_for(&t.patches, role, i, node_patches) {
            // Cluster-wide and role entries are checked once.
            if path.starts_with("talos.patches.") && !seen.insert(path.clone()) {
                continue;
            }
            match (&spec.file, &spec.inline) {
                (Some(_), Some(_)) => errs.push(l.error_at(
                    &format!("{path}.inline"),
                    "a patch is either a `file` or `inline`, not both",
                )),
                (None, None) => errs.push(
                    l.error_at(&path, "empty patch")
                        .with_help("give `file: patches/x.yaml` or `inline: {...}`"),
                ),
                _ => {}
            }
        }
    }
}

/// The cluster-wide and role patches, per role: what a node without patches of its own
/// gets (the bare-metal nodes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RolePatches {
    /// `talos.patches.all`, then `talos.patches.controlplane`.
    pub controlplane: NodePatches,
    /// `talos.patches.all`, then `talos.patches.worker`.
    pub worker: NodePatches,
}

impl RolePatches {
    /// The patches of `role`.
    pub fn for_role(&self, role: Role) -> &NodePatches {
        match role {
            Role::Controlplane => &self.controlplane,
            Role::Worker => &self.worker,
        }
    }
}

/// Read, parse and substitute the cluster-wide and role patches for each role. An error
/// the VM nodes' patches already reported is not reported again.
pub fn resolve_roles(
    l: &Loaded,
    secrets: &SecretValues,
    errs: &mut Vec<ConfigError>,
) -> RolePatches {
    let Some(t) = &l.config.talos else {
        return RolePatches::default();
    };
    let mut mine = Vec::new();
    let out = RolePatches {
        controlplane: resolve_specs(
            l,
            secrets,
            specs_for(&t.patches, Role::Controlplane, 0, &[]),
            &mut mine,
        ),
        worker: resolve_specs(
            l,
            secrets,
            specs_for(&t.patches, Role::Worker, 0, &[]),
            &mut mine,
        ),
    };
    for e in mine {
        let text = e.to_string();
        if !errs.iter().any(|x| x.to_string() == text) {
            errs.push(e);
        }
    }
    out
}

/// Read, parse and substitute the patches of `talos.nodes[node_index]`.
pub fn resolve_node(
    l: &Loaded,
    secrets: &SecretValues,
    node_index: usize,
    errs: &mut Vec<ConfigError>,
) -> NodePatches {
    let Some(t) = &l.config.talos else {
        return NodePatches::default();
    };
    let Some(n) = t.nodes.get(node_index) else {
        return NodePatches::default();
    };
    resolve_specs(
        l,
        secrets,
        specs_for(&t.patches, n.role, node_index, &n.patches),
        errs,
    )
}

/// Read, parse and substitute the patches `specs` lists, in order.
fn resolve_specs(
    l: &Loaded,
    secrets: &SecretValues,
    specs: Vec<(String, &PatchSpec)>,
    errs: &mut Vec<ConfigError>,
) -> NodePatches {
    let mut out = NodePatches::default();
    for (path, spec) in specs {
        let source = match (&spec.file, &spec.inline) {
            (Some(f), None) => {
                let full = l.relative(f);
                match super::limits::read(&full) {
                    Err(super::limits::ReadError::Refused(e)) => {
                        errs.push(*e);
                        continue;
                    }
                    Ok(text) => Source {
                        name: f.display().to_string(),
                        file: full,
                        text: Arc::new(text),
                        first_line: 1,
                        in_config: None,
                    },
                    Err(super::limits::ReadError::Io(e)) => {
                        errs.push(l.error_at(
                            &format!("{path}.file"),
                            format!("cannot read patch {}: {e}", full.display()),
                        ));
                        continue;
                    }
                }
            }
            (None, Some(v)) => {
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => match serde_yaml_ng::to_string(other) {
                        Ok(s) => s,
                        Err(e) => {
                            errs.push(l.error_at(&path, format!("cannot read patch: {e}")));
                            continue;
                        }
                    },
                };
                let (file, cfg_text, span) = l.locate(&format!("{path}.inline"), false);
                let first_line = span.map_or(1, |s| line_of(&cfg_text, s.offset));
                Source {
                    name: file.display().to_string(),
                    file: file.to_path_buf(),
                    text: Arc::new(text),
                    first_line,
                    in_config: Some(format!("{path}.inline")),
                }
            }
            _ => continue, // reported by `validate`
        };
        match parse_source(&source, secrets, &mut out.secret_values) {
            Ok(parts) => out.parts.extend(parts),
            Err((span, message)) => errs.push(match &source.in_config {
                // Inline patches: the YAML was re-serialised, so point at the entry.
                Some(p) => l.error_at(p, format!("patch {path}: {message}")),
                None => ConfigError::new(
                    &source.file,
                    source.text.clone(),
                    span,
                    format!("patch {}: {message}", source.name),
                    "here",
                ),
            }),
        }
    }
    out
}

/// A patch's text and where it came from.
struct Source {
    /// Display name (`patches/cilium.yaml` or `homelab.yaml`).
    name: String,
    file: PathBuf,
    text: Arc<String>,
    /// Line of homelab.yaml (inline) or 1 (files) the text starts at.
    first_line: usize,
    /// The homelab.yaml path of an inline patch.
    in_config: Option<String>,
}

type PartsResult = Result<Vec<PatchPart>, (Option<Span>, String)>;

/// Split a patch text into parts (one per document or operation), substituting secrets.
fn parse_source(src: &Source, secrets: &SecretValues, used: &mut Vec<SecretString>) -> PartsResult {
    use serde::Deserialize;
    let text = src.text.as_str();
    // Documents with their starting line (serde_yaml_ng reports syntax errors with a
    // location; keep it).
    let mut docs: Vec<Value> = Vec::new();
    for de in serde_yaml_ng::Deserializer::from_str(text) {
        let v = Value::deserialize(de).map_err(|e| {
            let span = e.location().map(|loc| Span {
                offset: loc.index().min(text.len().saturating_sub(1)),
                len: 1,
            });
            (span, e.to_string())
        })?;
        if !v.is_null() {
            docs.push(v);
        }
    }
    let starts = doc_start_lines(text);
    let at = |line: usize| format!("{}:{}", src.name, src.first_line + line - 1);
    let patch = Patch::parse(text, &src.name).map_err(|e| (None, patch_message(e)))?;
    let mut parts = Vec::new();
    match patch {
        Patch::JsonPatch { ops, .. } => {
            let spans = SpanMap::parse(text);
            for (n, mut op) in ops.into_iter().enumerate() {
                let span = spans.value(&format!("[{n}]"));
                substitute(&mut op, secrets, used).map_err(|m| (find(text, &m.1, span), m.0))?;
                let line = span.map_or(1, |s| line_of(text, s.offset));
                parts.push(PatchPart {
                    at: at(line),
                    patch: Patch::JsonPatch {
                        name: at(line),
                        ops: vec![op],
                    },
                });
            }
        }
        Patch::StrategicMerge { docs: pdocs, .. } => {
            for (n, mut d) in pdocs.into_iter().enumerate() {
                let line = starts.get(n).copied().unwrap_or(1);
                substitute(&mut d, secrets, used).map_err(|m| (find(text, &m.1, None), m.0))?;
                parts.push(PatchPart {
                    at: at(line),
                    patch: Patch::StrategicMerge {
                        name: at(line),
                        docs: vec![d],
                    },
                });
            }
        }
    }
    Ok(parts)
}

fn patch_message(e: talos_api::Error) -> String {
    match e {
        talos_api::Error::Patch { message, .. } => message,
        other => other.to_string(),
    }
}

/// The 1-based line of the first content of each non-empty document.
fn doc_start_lines(text: &str) -> Vec<usize> {
    let mut out = Vec::new();
    let mut want = true;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t == "---" || t.starts_with("--- ") {
            want = true;
            continue;
        }
        if want && !t.is_empty() && !t.starts_with('#') {
            out.push(i + 1);
            want = false;
        }
    }
    out
}

/// 1-based line of a byte offset.
pub fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(1, |b| b.matches('\n').count() + 1)
}

/// The span of `needle` in `text` (after `from` if given).
fn find(text: &str, needle: &str, from: Option<Span>) -> Option<Span> {
    let start = from.map_or(0, |s| s.offset);
    text.get(start..)
        .and_then(|t| t.find(needle))
        .map(|i| Span {
            offset: start + i,
            len: needle.len().max(1),
        })
}

/// Substitute `${secret:...}` in every string scalar of `v`. On error: (message, the
/// original string) so the caller can point at it.
fn substitute(
    v: &mut Value,
    secrets: &SecretValues,
    used: &mut Vec<SecretString>,
) -> Result<(), (String, String)> {
    match v {
        Value::String(s) if super::secrets::has_refs(s) => {
            let (value, sensitive) = secrets.substitute(s).map_err(|e| (e, s.clone()))?;
            if sensitive {
                used.push(value.clone());
            }
            *s = value.expose_secret().to_string();
            Ok(())
        }
        Value::Sequence(items) => items
            .iter_mut()
            .try_for_each(|i| substitute(i, secrets, used)),
        Value::Mapping(m) => m
            .iter_mut()
            .try_for_each(|(_, i)| substitute(i, secrets, used)),
        Value::Tagged(t) => substitute(&mut t.value, secrets, used),
        _ => Ok(()),
    }
}

/// Keys whose values are key material or tokens in a Talos machine config.
const SECRET_KEYS: &[&str] = &[
    "key",
    "token",
    "secret",
    "bootstrapToken",
    "secretboxEncryptionSecret",
    "aescbcEncryptionSecret",
    "password",
];

/// The redaction marker.
pub const REDACTED: &str = "(sensitive)";

/// Redact a machine config for display: key material and tokens, and every value that came
/// from a `${secret:...}` reference.
pub fn redact(v: &mut Value, secret_values: &[SecretString]) {
    match v {
        Value::Mapping(m) => {
            for (k, val) in m.iter_mut() {
                let is_secret_key = k
                    .as_str()
                    .is_some_and(|k| SECRET_KEYS.contains(&k) || k.ends_with("Secret"));
                if is_secret_key && matches!(val, Value::String(s) if !s.is_empty()) {
                    *val = Value::String(REDACTED.into());
                } else {
                    redact(val, secret_values);
                }
            }
        }
        Value::Sequence(items) => items.iter_mut().for_each(|i| redact(i, secret_values)),
        Value::String(s)
            if secret_values
                .iter()
                .any(|sv| !sv.expose_secret().is_empty() && s.contains(sv.expose_secret())) =>
        {
            *s = REDACTED.into();
        }
        Value::Tagged(t) => redact(&mut t.value, secret_values),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn spec_inline(yaml: &str) -> PatchSpec {
        PatchSpec {
            file: None,
            inline: Some(serde_yaml_ng::from_str(yaml).unwrap()),
        }
    }

    #[test]
    fn order_is_all_then_role_then_node() {
        let cluster = ClusterPatches {
            all: vec![spec_inline("a: 1"), spec_inline("a: 2")],
            controlplane: vec![spec_inline("c: 1")],
            worker: vec![spec_inline("w: 1")],
        };
        let node = vec![spec_inline("n: 1")];
        let paths: Vec<String> = specs_for(&cluster, Role::Controlplane, 3, &node)
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert_eq!(
            paths,
            [
                "talos.patches.all[0]",
                "talos.patches.all[1]",
                "talos.patches.controlplane[0]",
                "talos.nodes[3].patches[0]",
            ]
        );
        let paths: Vec<String> = specs_for(&cluster, Role::Worker, 0, &[])
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert_eq!(
            paths,
            [
                "talos.patches.all[0]",
                "talos.patches.all[1]",
                "talos.patches.worker[0]"
            ]
        );
    }

    fn parts_of(text: &str, secrets: &SecretValues) -> PartsResult {
        let src = Source {
            name: "patches/x.yaml".into(),
            file: "patches/x.yaml".into(),
            text: Arc::new(text.into()),
            first_line: 1,
            in_config: None,
        };
        parse_source(&src, secrets, &mut Vec::new())
    }

    #[test]
    fn later_parts_win_and_documents_apply_in_order() {
        let text = "machine:\n  sysctls: { a: \"1\" }\n---\nmachine:\n  sysctls: { a: \"2\" }\n---\napiVersion: v1alpha1\nkind: HostnameConfig\nhostname: x\n";
        let parts = parts_of(text, &SecretValues::default()).unwrap();
        let at: Vec<&str> = parts.iter().map(|p| p.at.as_str()).collect();
        assert_eq!(
            at,
            ["patches/x.yaml:1", "patches/x.yaml:4", "patches/x.yaml:7"]
        );
        let np = NodePatches {
            parts,
            secret_values: vec![],
        };
        let mut docs = vec![serde_yaml_ng::from_str::<Value>("machine: { type: worker }").unwrap()];
        np.apply(&mut docs).unwrap();
        assert_eq!(docs[0]["machine"]["sysctls"]["a"], Value::from("2"));
        assert_eq!(docs[1]["kind"], Value::from("HostnameConfig"));
    }

    #[test]
    fn json_patch_errors_name_the_line_of_the_operation() {
        let text = "- op: add\n  path: /machine/network/hostname\n  value: a\n- op: remove\n  path: /cluster/nothing/here\n";
        let parts = parts_of(text, &SecretValues::default()).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1].at, "patches/x.yaml:4");
        let np = NodePatches {
            parts,
            secret_values: vec![],
        };
        let mut docs = vec![
            serde_yaml_ng::from_str::<Value>("machine: { network: {} }\ncluster: {}").unwrap(),
        ];
        let e = np.apply(&mut docs).unwrap_err().to_string();
        assert!(e.contains("patches/x.yaml:4"), "{e}");
    }

    #[test]
    fn secrets_are_substituted_remembered_and_redacted() {
        let secrets =
            SecretValues::from_pairs([("mirror.pass".to_string(), "hunter2".to_string())]);
        let text = "machine:\n  registries:\n    config:\n      r.example:\n        auth: { password: \"${secret:mirror.pass}\", user: \"u-${secret:mirror.pass}\" }\n";
        let mut used = Vec::new();
        let src = Source {
            name: "p.yaml".into(),
            file: "p.yaml".into(),
            text: Arc::new(text.into()),
            first_line: 1,
            in_config: None,
        };
        let parts = parse_source(&src, &secrets, &mut used).unwrap();
        let mut docs = vec![serde_yaml_ng::from_str::<Value>("machine: {}").unwrap()];
        parts[0].patch.apply(&mut docs).unwrap();
        let auth = &docs[0]["machine"]["registries"]["config"]["r.example"]["auth"];
        assert_eq!(auth["user"], Value::from("u-hunter2"));
        redact(&mut docs[0], &used);
        let shown = serde_yaml_ng::to_string(&docs[0]).unwrap();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains(REDACTED));

        let missing = parts_of("a: ${secret:nope}\n", &secrets).unwrap_err();
        assert!(missing.1.contains("nope"), "{missing:?}");
        assert_eq!(missing.0.map(|s| s.offset), Some(3));
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let e = parts_of("machine:\n  a: [1, 2\n", &SecretValues::default()).unwrap_err();
        assert!(e.0.is_some(), "{e:?}");
    }
}
