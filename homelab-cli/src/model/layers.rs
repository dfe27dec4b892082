//! Environment files layered onto homelab.yaml (`--env prod` reads `homelab.prod.yaml`).
//!
//! # Selecting an environment
//!
//! `--env NAME` on every command that takes `-c/--config` (or `HOMELAB_ENV=NAME`) selects
//! the overlay `<stem>.<NAME>.<ext>` beside the configuration file: `homelab.yaml` with
//! `--env prod` reads `homelab.prod.yaml`. NAME is lowercase letters, digits and `-`. A
//! selected overlay that does not exist is an error naming the path it looked for; without
//! `--env` no overlay is read, even when such files exist.
//!
//! # Merge rules
//!
//! The overlay is merged onto the base document as YAML values, before the typed model is
//! read, so it can change anything the base can say:
//!
//! - mappings merge key by key, recursively; keys only the overlay has are added;
//! - a sequence whose items (in the base and in the overlay) are all mappings with a string
//!   `name` merges item by item by `name`: an overlay item changes the base item of the same
//!   name (recursively, as a mapping) and keeps its position; items with new names are
//!   appended in overlay order. This is how one guest or one Talos node is overridden:
//!   `lxc: {containers: [{name: n8n, memory: 2GiB}]}` changes only n8n's memory;
//! - an overlay item `{name: X, $patch: delete}` removes the base item named X (naming an
//!   item the base does not have is an error);
//! - any other sequence (tags, nameservers, mounts, extensions, `[]`) replaces the base one;
//! - an explicit null (`key: ~` or `key: null`) removes the key from the base;
//! - any other value replaces the base value.
//!
//! The top-level `name` may be changed too; give each environment its own name when several
//! share one Proxmox host, because `up` removes the guests carrying its name that the
//! document no longer declares.
//!
//! Paths in the document (`secrets.file`, `outputs.*`, ...) stay relative to the base
//! file's directory, whichever layer set them.
//!
//! # After the merge
//!
//! The merged document is then read like a single homelab.yaml, and values are resolved
//! from lowest to highest: built-in defaults < the section's `defaults` < the guest's
//! `preset` < the guest's own keys. The overlay takes part before that, so it can change
//! any of these layers (a default, a preset, or a single guest).
//!
//! # Errors keep their place
//!
//! [`merge`] records, for every value of the merged document, the layer and the path it
//! came from ([`Origins`]), so that an error about the merged document points into the file
//! that wrote the value, at its own line.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_yaml_ng::{Mapping, Value};

use super::spans::{Span, SpanMap};
use super::{Config, ConfigError, ConfigErrors, Loaded};

/// The key that marks an overlay item of a named sequence for removal (`$patch: delete`,
/// as in Kubernetes strategic merge patches).
pub const PATCH_KEY: &str = "$patch";

/// Which document a value of the merged document came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// homelab.yaml.
    Base,
    /// The environment file.
    Overlay,
}

/// Where one value of the merged document was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The document.
    pub layer: Layer,
    /// Its dotted path in that document (`lxc.containers[0].memory`): indices can differ
    /// from the merged document's when items are matched by name.
    pub path: String,
}

/// For each dotted path of the merged document, where its value came from.
#[derive(Debug, Clone, Default)]
pub struct Origins {
    map: HashMap<String, Origin>,
}

impl Origins {
    /// The document and path that wrote the merged value at `path`. A path the merged
    /// document does not hold (a default, an absent key) falls back to its closest
    /// ancestor's origin with the rest of the path appended, so that it points at the same
    /// place a single file would.
    pub fn resolve(&self, path: &str) -> Option<Origin> {
        let mut p = path;
        loop {
            if let Some(o) = self.map.get(p) {
                let rest = &path[p.len()..];
                let joined = if o.path.is_empty() {
                    rest.trim_start_matches('.').to_string()
                } else {
                    format!("{}{rest}", o.path)
                };
                return Some(Origin {
                    layer: o.layer,
                    path: joined,
                });
            }
            if p.is_empty() {
                return None;
            }
            p = p.rfind(['.', '[']).map_or("", |cut| &p[..cut]);
        }
    }

    /// Every recorded path with its origin, sorted by path.
    pub fn iter(&self) -> Vec<(&str, &Origin)> {
        let mut v: Vec<_> = self.map.iter().map(|(k, o)| (k.as_str(), o)).collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v
    }

    fn record(&mut self, v: &Value, merged: &str, layer: Layer, orig: &str) {
        self.map.insert(
            merged.to_string(),
            Origin {
                layer,
                path: orig.to_string(),
            },
        );
        match v {
            Value::Mapping(m) => {
                for (k, child) in m {
                    let k = key_text(k);
                    self.record(child, &join(merged, &k), layer, &join(orig, &k));
                }
            }
            Value::Sequence(s) => {
                for (i, child) in s.iter().enumerate() {
                    self.record(
                        child,
                        &format!("{merged}[{i}]"),
                        layer,
                        &format!("{orig}[{i}]"),
                    );
                }
            }
            _ => {}
        }
    }
}

/// An environment file merged into the document, kept for error reporting.
#[derive(Debug, Clone)]
pub struct Overlay {
    /// The environment name (`prod`).
    pub env: String,
    /// The overlay file (`homelab.prod.yaml` beside the base).
    pub path: PathBuf,
    /// Its text.
    pub source: Arc<String>,
    /// Its value positions.
    pub spans: SpanMap,
    /// Where each value of the merged document came from.
    pub origins: Origins,
    /// The merged document, before typed deserialisation.
    pub merged: Value,
}

/// One value of the (merged) document and the file and line that wrote it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Provenance {
    /// Dotted path in the merged document.
    pub path: String,
    /// The value as YAML (flow style for empty collections).
    pub value: String,
    /// The file that wrote it.
    pub file: PathBuf,
    /// Its 1-based line there (0 when unknown).
    pub line: usize,
}

/// Read homelab.yaml at `path` and, when `env` is given, merge its environment file
/// ([`overlay_path`]) onto it, then check the result as [`super::load`] does. Without `env`
/// this is exactly [`super::load`].
pub fn load_env(path: &Path, env: Option<&str>) -> miette::Result<Loaded> {
    let Some(env) = env else {
        return super::load(path);
    };
    check_env_name(env)?;
    let refused = |p: &Path, e: Box<ConfigError>| -> miette::Report {
        ConfigErrors::new(p.to_path_buf(), vec![*e]).into()
    };
    let text = super::limits::read(path).map_err(|e| match e {
        super::limits::ReadError::Io(e) => miette::miette!(
            help = "create one with `homelab-cli init`, or pass -c/--config PATH",
            "cannot read {}: {e}",
            path.display()
        ),
        super::limits::ReadError::Refused(e) => refused(path, e),
    })?;
    let over = overlay_path(path, env);
    let over_text = match super::limits::read(&over) {
        Ok(t) => t,
        Err(super::limits::ReadError::Refused(e)) => return Err(refused(&over, e)),
        Err(super::limits::ReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(miette::miette!(
                help = format!(
                    "create {} beside {} with only the keys that differ in `{env}`, or drop --env / HOMELAB_ENV",
                    over.display(),
                    path.display()
                ),
                "environment `{env}`: {} does not exist",
                over.display()
            ));
        }
        Err(super::limits::ReadError::Io(e)) => {
            return Err(miette::miette!("cannot read {}: {e}", over.display()));
        }
    };
    parse_env(path, text, env, over_text).map_err(Into::into)
}

/// An error unless `env` is a valid environment name.
pub fn check_env_name(env: &str) -> miette::Result<()> {
    if is_env_name(env) {
        Ok(())
    } else {
        Err(miette::miette!(
            help = "lowercase letters, digits and `-`, e.g. `prod` or `dev-2`",
            "invalid environment name `{env}`"
        ))
    }
}

/// Parse homelab.yaml text with the text of environment `env`'s overlay merged onto it
/// (`path` is the base file: it names messages, relative paths and the overlay's path).
pub fn parse_env(
    path: &Path,
    text: String,
    env: &str,
    overlay_text: String,
) -> Result<Loaded, ConfigErrors> {
    let fail = |errs: Vec<ConfigError>| ConfigErrors::new(path.to_path_buf(), errs);
    let over_path = overlay_path(path, env);
    // Hostile input is refused before a parser spends quadratic time on it.
    super::limits::check(path, &text).map_err(|e| fail(vec![*e]))?;
    super::limits::check(&over_path, &overlay_text).map_err(|e| fail(vec![*e]))?;
    let source = Arc::new(text);
    let over_source = Arc::new(overlay_text);
    let read = |p: &Path, src: &Arc<String>| -> Result<Value, ConfigErrors> {
        let mut v: Value =
            serde_yaml_ng::from_str(src).map_err(|e| fail(vec![super::serde_error(p, src, &e)]))?;
        // `<<: *anchor` keys merge into their mapping before the layers do.
        v.apply_merge()
            .map_err(|e| fail(vec![super::serde_error(p, src, &e)]))?;
        Ok(v)
    };
    let base = read(path, &source)?;
    let over = read(&over_path, &over_source)?;
    let spans = SpanMap::parse(&source);
    let over_spans = SpanMap::parse(&over_source);
    let (merged, origins) = merge(&base, &over).map_err(|errs| {
        fail(
            errs.into_iter()
                .map(|e| {
                    ConfigError::new(
                        &over_path,
                        over_source.clone(),
                        over_spans.value(&e.path),
                        e.message,
                        "here",
                    )
                    .with_help("see \"Layers and merge order\" in docs/configuration.md")
                })
                .collect(),
        )
    })?;
    let overlay = Overlay {
        env: env.to_string(),
        path: over_path,
        source: over_source,
        spans: over_spans,
        origins,
        merged,
    };
    // The merged document is read from its YAML rendering so that type errors carry a
    // position, which maps back through the rendering's spans to the layer that wrote it.
    let files = Files {
        path,
        source: &source,
        spans: &spans,
        overlay: Some(&overlay),
    };
    let rendered = serde_yaml_ng::to_string(&overlay.merged).map_err(|e| {
        fail(vec![ConfigError::new(
            &overlay.path,
            overlay.source.clone(),
            None,
            e.to_string(),
            "",
        )])
    })?;
    let config = serde_yaml_ng::from_str::<Config>(&rendered)
        .map_err(|e| fail(vec![merged_error(&files, &overlay.merged, &rendered, &e)]))?;
    super::finish(Loaded {
        path: path.to_path_buf(),
        dir: super::base_dir(path),
        source,
        spans,
        config,
        overlay: Some(overlay),
    })
}

/// The files a document was read from, for locating errors.
struct Files<'a> {
    path: &'a Path,
    source: &'a Arc<String>,
    spans: &'a SpanMap,
    overlay: Option<&'a Overlay>,
}

impl<'a> Files<'a> {
    fn locate(&self, path: &str, key: bool) -> (&'a Path, Arc<String>, Option<Span>) {
        let pick = |spans: &SpanMap, p: &str| {
            if key { spans.key(p) } else { spans.value(p) }
        };
        match self.overlay.map(|o| (o, o.origins.resolve(path))) {
            Some((o, Some(origin))) if origin.layer == Layer::Overlay => {
                (&o.path, o.source.clone(), pick(&o.spans, &origin.path))
            }
            Some((_, Some(origin))) => (
                self.path,
                self.source.clone(),
                pick(self.spans, &origin.path),
            ),
            _ => (self.path, self.source.clone(), pick(self.spans, path)),
        }
    }
}

/// A deserialisation error of the rendered merged document, moved to the layer and line
/// that wrote the offending value, its path prefix rewritten to that layer's path.
fn merged_error(
    f: &Files<'_>,
    merged: &Value,
    rendered: &str,
    e: &serde_yaml_ng::Error,
) -> ConfigError {
    let message = super::clean_serde_message(&e.to_string());
    let rspans = SpanMap::parse(rendered);
    let hit = e
        .location()
        .map(|loc| super::offset_of(rendered, loc.line(), loc.column()))
        .and_then(|o| rspans.path_at(o));
    let Some((hit_path, key)) = hit else {
        return ConfigError::new(f.path, f.source.clone(), None, message.clone(), "here")
            .with_help(super::serde_help(&message));
    };
    let (mut mpath, mut key) = (hit_path.to_string(), key);
    let (mut prefix, rest) = match message.split_once(": ") {
        Some((p, r)) if is_ancestor(p, &mpath) => (p.to_string(), r.to_string()),
        _ => (String::new(), message.clone()),
    };
    // Errors a type raises itself (`lots` is not a size) are placed by serde_yaml_ng at
    // the enclosing mapping; find the field whose value the message quotes.
    if !prefix.is_empty()
        && !rest.starts_with("unknown field")
        && let Some(Value::Mapping(m)) = value_at(merged, &prefix)
        && let Some(k) = m.iter().find_map(|(k, v)| {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => return None,
            };
            rest.contains(&format!("`{text}`")).then(|| key_text(k))
        })
    {
        prefix = join(&prefix, &k);
        mpath.clone_from(&prefix);
        key = false;
    }
    let (file, source, span) = f.locate(&mpath, key);
    let origin = f.overlay.and_then(|o| o.origins.resolve(&mpath));
    // Name the path as the file shown writes it.
    let message = match origin {
        Some(origin) if !prefix.is_empty() => {
            match origin.path.strip_suffix(&mpath[prefix.len()..]) {
                Some(p) if !p.is_empty() => format!("{p}: {rest}"),
                _ => format!("{prefix}: {rest}"),
            }
        }
        _ if !prefix.is_empty() => format!("{prefix}: {rest}"),
        _ => rest,
    };
    ConfigError::new(file, source, span, message.clone(), "here")
        .with_help(super::serde_help(&message))
}

/// The value at a dotted path (`a.b[2].c`) of a document.
fn value_at<'v>(v: &'v Value, path: &str) -> Option<&'v Value> {
    let mut cur = v;
    for seg in path.split('.').filter(|s| !s.is_empty()) {
        let (name, indices) = seg.split_once('[').map_or((seg, ""), |(n, i)| (n, i));
        if !name.is_empty() {
            cur = cur.as_mapping()?.get(name)?;
        }
        for idx in indices.split('[').filter(|s| !s.is_empty()) {
            let i: usize = idx.trim_end_matches(']').parse().ok()?;
            cur = cur.as_sequence()?.get(i)?;
        }
    }
    Some(cur)
}

/// `a` is `b` or a dotted/indexed ancestor of it.
fn is_ancestor(a: &str, b: &str) -> bool {
    b.strip_prefix(a)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

impl Loaded {
    /// Every scalar (and empty list or mapping) of the document in document order, with
    /// the file and line that wrote it: what `config resolve --show-layers` prints.
    pub fn provenance(&self) -> Vec<Provenance> {
        let base;
        let doc = match &self.overlay {
            Some(o) => &o.merged,
            None => {
                base = serde_yaml_ng::from_str::<Value>(&self.source).unwrap_or(Value::Null);
                &base
            }
        };
        let mut out = Vec::new();
        let mut walk = vec![(String::new(), doc)];
        while let Some((path, v)) = walk.pop() {
            let children: Vec<(String, &Value)> = match v {
                Value::Mapping(m) => m
                    .iter()
                    .map(|(k, c)| (join(&path, &key_text(k)), c))
                    .collect(),
                Value::Sequence(s) => s
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (format!("{path}[{i}]"), c))
                    .collect(),
                _ => Vec::new(),
            };
            let is_leaf = !matches!(v, Value::Mapping(m) if !m.is_empty())
                && !matches!(v, Value::Sequence(s) if !s.is_empty());
            if is_leaf && !path.is_empty() {
                let (file, source, span) = self.locate(&path, false);
                let line = span.map_or(0, |sp| {
                    source
                        .get(..sp.offset)
                        .map_or(0, |b| b.matches('\n').count() + 1)
                });
                let value = match serde_yaml_ng::to_string(v) {
                    Ok(t) if !t.trim_end().contains('\n') => t.trim_end().to_string(),
                    // Block scalars read better on one line as JSON strings.
                    _ => serde_json::to_string(v).unwrap_or_default(),
                };
                out.push(Provenance {
                    path,
                    value,
                    file: file.to_path_buf(),
                    line,
                });
            }
            walk.extend(children.into_iter().rev());
        }
        out
    }

    /// The file, its text and the span of the value at the dotted `path` of the document
    /// (with `key`, of the mapping key naming it). With an environment overlay, values the
    /// overlay wrote are found in the overlay file, the rest in the base file.
    pub fn locate(&self, path: &str, key: bool) -> (&Path, Arc<String>, Option<Span>) {
        Files {
            path: &self.path,
            source: &self.source,
            spans: &self.spans,
            overlay: self.overlay.as_ref(),
        }
        .locate(path, key)
    }
}

/// A merge rule the overlay broke, at a path of the overlay document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeError {
    /// Dotted path in the overlay.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// Whether `name` is a valid environment name: lowercase letters, digits and `-`, not
/// starting or ending with `-`, at most 63 characters.
pub fn is_env_name(name: &str) -> bool {
    super::is_label(name, 63)
}

/// The overlay file of environment `env` beside `config`: `<stem>.<env>.<ext>`
/// (`homelab.yaml` → `homelab.prod.yaml`).
pub fn overlay_path(config: &Path, env: &str) -> PathBuf {
    let stem = config
        .file_stem()
        .map_or_else(|| "homelab".into(), |s| s.to_string_lossy().into_owned());
    let name = match config.extension() {
        Some(ext) => format!("{stem}.{env}.{}", ext.to_string_lossy()),
        None => format!("{stem}.{env}"),
    };
    config.with_file_name(name)
}

/// Merge `overlay` onto `base` by the rules in the [module docs](self), recording where
/// every value of the result came from. An empty overlay (null) leaves the base unchanged.
pub fn merge(base: &Value, overlay: &Value) -> Result<(Value, Origins), Vec<MergeError>> {
    let mut m = Merger::default();
    let merged = match overlay {
        Value::Null => {
            m.origins.record(base, "", Layer::Base, "");
            base.clone()
        }
        Value::Mapping(_) => m.value(base, "", overlay, "", "").unwrap_or(Value::Null),
        _ => {
            m.errors.push(MergeError {
                path: String::new(),
                message: "an environment file must be a mapping, like homelab.yaml".into(),
            });
            Value::Null
        }
    };
    if m.errors.is_empty() {
        Ok((merged, m.origins))
    } else {
        Err(m.errors)
    }
}

#[derive(Default)]
struct Merger {
    origins: Origins,
    errors: Vec<MergeError>,
}

impl Merger {
    /// Merge one overlay value onto one base value; `None` removes it.
    fn value(
        &mut self,
        base: &Value,
        bpath: &str,
        over: &Value,
        opath: &str,
        mpath: &str,
    ) -> Option<Value> {
        match (base, over) {
            (_, Value::Null) => None,
            (Value::Mapping(b), Value::Mapping(o)) => {
                Some(Value::Mapping(self.mapping(b, bpath, o, opath, mpath)))
            }
            (Value::Sequence(b), Value::Sequence(o)) if is_named(b) && is_named(o) => {
                Some(Value::Sequence(self.named(b, bpath, o, opath, mpath)))
            }
            _ => {
                self.origins.record(over, mpath, Layer::Overlay, opath);
                Some(over.clone())
            }
        }
    }

    fn mapping(
        &mut self,
        b: &Mapping,
        bpath: &str,
        o: &Mapping,
        opath: &str,
        mpath: &str,
    ) -> Mapping {
        self.origins.map.insert(
            mpath.to_string(),
            Origin {
                layer: Layer::Base,
                path: bpath.to_string(),
            },
        );
        let mut out = Mapping::with_capacity(b.len());
        for (k, bv) in b {
            let ks = key_text(k);
            let (bp, mp) = (join(bpath, &ks), join(mpath, &ks));
            match o.get(k) {
                Some(ov) => {
                    if let Some(v) = self.value(bv, &bp, ov, &join(opath, &ks), &mp) {
                        out.insert(k.clone(), v);
                    }
                }
                None => {
                    self.origins.record(bv, &mp, Layer::Base, &bp);
                    out.insert(k.clone(), bv.clone());
                }
            }
        }
        for (k, ov) in o {
            // Removing a key the base does not have is a no-op.
            if b.contains_key(k) || ov.is_null() {
                continue;
            }
            let ks = key_text(k);
            self.origins
                .record(ov, &join(mpath, &ks), Layer::Overlay, &join(opath, &ks));
            out.insert(k.clone(), ov.clone());
        }
        out
    }

    fn named(
        &mut self,
        b: &[Value],
        bpath: &str,
        o: &[Value],
        opath: &str,
        mpath: &str,
    ) -> Vec<Value> {
        self.origins.map.insert(
            mpath.to_string(),
            Origin {
                layer: Layer::Base,
                path: bpath.to_string(),
            },
        );
        // Overlay items by name, checking `$patch` and duplicates once.
        let mut by_name: HashMap<&str, (usize, &Mapping, bool)> = HashMap::new();
        for (j, item) in o.iter().enumerate() {
            let (Some(name), Some(m)) = (item_name(item), item.as_mapping()) else {
                continue;
            };
            let ip = format!("{opath}[{j}]");
            let delete = match m.get(PATCH_KEY) {
                None => false,
                Some(Value::String(s)) if s == "delete" => true,
                Some(_) => {
                    self.errors.push(MergeError {
                        path: join(&ip, PATCH_KEY),
                        message: "`$patch` only takes `delete` (remove the item of this name)"
                            .into(),
                    });
                    false
                }
            };
            if delete && m.len() > 2 {
                self.errors.push(MergeError {
                    path: ip.clone(),
                    message: format!(
                        "`{name}` is deleted with `$patch: delete` but also sets other keys"
                    ),
                });
            }
            if by_name.insert(name, (j, m, delete)).is_some() {
                self.errors.push(MergeError {
                    path: join(&ip, "name"),
                    message: format!("`{name}` appears twice in this list"),
                });
            }
        }
        let mut out = Vec::with_capacity(b.len() + o.len());
        let mut seen = HashSet::new();
        for (i, item) in b.iter().enumerate() {
            let bp = format!("{bpath}[{i}]");
            let mp = format!("{mpath}[{}]", out.len());
            let name = item_name(item).unwrap_or_default();
            seen.insert(name);
            match by_name.get(name).filter(|_| item.is_mapping()) {
                Some((_, _, true)) => {}
                Some((j, om, false)) => {
                    let bm = item.as_mapping().cloned().unwrap_or_default();
                    // The name matched; keep the base's so errors about the item stay there.
                    let om = without(om, &["name", PATCH_KEY]);
                    let merged = self.mapping(&bm, &bp, &om, &format!("{opath}[{j}]"), &mp);
                    out.push(Value::Mapping(merged));
                }
                None => {
                    self.origins.record(item, &mp, Layer::Base, &bp);
                    out.push(item.clone());
                }
            }
        }
        for (j, item) in o.iter().enumerate() {
            let name = item_name(item).unwrap_or_default();
            if seen.contains(name) {
                continue;
            }
            let ip = format!("{opath}[{j}]");
            if by_name.get(name).is_some_and(|(_, _, delete)| *delete) {
                self.errors.push(MergeError {
                    path: join(&ip, "name"),
                    message: format!("there is no `{name}` in the base list to delete"),
                });
                continue;
            }
            let clean = item.as_mapping().map_or_else(
                || item.clone(),
                |m| Value::Mapping(without(m, &[PATCH_KEY])),
            );
            self.origins.record(
                &clean,
                &format!("{mpath}[{}]", out.len()),
                Layer::Overlay,
                &ip,
            );
            out.push(clean);
        }
        out
    }
}

/// A non-empty sequence of mappings that all have a string `name`.
fn is_named(s: &[Value]) -> bool {
    !s.is_empty() && s.iter().all(|i| item_name(i).is_some())
}

fn item_name(item: &Value) -> Option<&str> {
    item.as_mapping()?.get("name")?.as_str()
}

fn without(m: &Mapping, keys: &[&str]) -> Mapping {
    m.iter()
        .filter(|(k, _)| !k.as_str().is_some_and(|k| keys.contains(&k)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// A mapping key as the span map writes it in paths.
fn key_text(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Null => "~".into(),
        other => serde_yaml_ng::to_string(other)
            .map(|s| s.trim_end().to_string())
            .unwrap_or_default(),
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn yaml(s: &str) -> Value {
        serde_yaml_ng::from_str(s).unwrap()
    }

    fn merged(base: &str, over: &str) -> (Value, Origins) {
        merge(&yaml(base), &yaml(over)).unwrap()
    }

    const BASE: &str = "name: lab\nlxc:\n  defaults: {cores: 1, memory: 512MiB, onboot: true}\n  containers:\n    - {name: a, vmid: 100, tags: [x, y]}\n    - {name: b, vmid: 101, memory: 1GiB}\n    - {name: c, vmid: 102}\n";

    #[test]
    fn mappings_merge_key_by_key() {
        let (v, o) = merged(BASE, "lxc:\n  defaults:\n    memory: 1GiB\n    swap: 0\n");
        assert_eq!(
            v["lxc"]["defaults"],
            yaml("{cores: 1, memory: 1GiB, onboot: true, swap: 0}")
        );
        assert_eq!(v["name"], yaml("lab"));
        let mem = o.resolve("lxc.defaults.memory").unwrap();
        assert_eq!(
            (mem.layer, mem.path.as_str()),
            (Layer::Overlay, "lxc.defaults.memory")
        );
        let cores = o.resolve("lxc.defaults.cores").unwrap();
        assert_eq!(cores.layer, Layer::Base);
    }

    #[test]
    fn named_items_merge_by_name_and_new_ones_are_appended() {
        let (v, o) = merged(
            BASE,
            "lxc:\n  containers:\n    - {name: d, vmid: 103}\n    - {name: b, memory: 4GiB}\n",
        );
        let cts = v["lxc"]["containers"].as_sequence().unwrap();
        let names: Vec<_> = cts.iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["a", "b", "c", "d"]);
        assert_eq!(cts[1], yaml("{name: b, vmid: 101, memory: 4GiB}"));
        // b's memory comes from overlay item 1; its vmid and name stay in the base.
        let m = o.resolve("lxc.containers[1].memory").unwrap();
        assert_eq!(
            (m.layer, m.path.as_str()),
            (Layer::Overlay, "lxc.containers[1].memory")
        );
        let n = o.resolve("lxc.containers[1].name").unwrap();
        assert_eq!(
            (n.layer, n.path.as_str()),
            (Layer::Base, "lxc.containers[1].name")
        );
        // d is appended as merged item 3 and written at overlay item 0.
        let d = o.resolve("lxc.containers[3].vmid").unwrap();
        assert_eq!(
            (d.layer, d.path.as_str()),
            (Layer::Overlay, "lxc.containers[0].vmid")
        );
        // An absent field falls back to its item.
        let c = o.resolve("lxc.containers[3].cores").unwrap();
        assert_eq!(c.path, "lxc.containers[0].cores");
    }

    #[test]
    fn null_removes_keys_and_patch_delete_removes_items() {
        let (v, o) = merged(
            BASE,
            "lxc:\n  defaults: {onboot: ~, nosuch: null}\n  containers:\n    - {name: a, $patch: delete}\n    - {name: c, vmid: null}\n",
        );
        assert_eq!(v["lxc"]["defaults"], yaml("{cores: 1, memory: 512MiB}"));
        let cts = v["lxc"]["containers"].as_sequence().unwrap();
        assert_eq!(cts.len(), 2);
        assert_eq!(cts[0], yaml("{name: b, vmid: 101, memory: 1GiB}"));
        assert_eq!(cts[1], yaml("{name: c}"));
        // Indices shift after a deletion; origins follow.
        let b = o.resolve("lxc.containers[0].memory").unwrap();
        assert_eq!(
            (b.layer, b.path.as_str()),
            (Layer::Base, "lxc.containers[1].memory")
        );
    }

    #[test]
    fn other_sequences_and_scalars_replace() {
        let (v, o) = merged(
            BASE,
            "lxc:\n  containers:\n    - {name: a, tags: [z]}\nname: prod\n",
        );
        assert_eq!(v["lxc"]["containers"][0]["tags"], yaml("[z]"));
        assert_eq!(v["name"], yaml("prod"));
        assert_eq!(o.resolve("name").unwrap().layer, Layer::Overlay);
        let t = o.resolve("lxc.containers[0].tags[0]").unwrap();
        assert_eq!(
            (t.layer, t.path.as_str()),
            (Layer::Overlay, "lxc.containers[0].tags[0]")
        );
        // A list of unnamed items, or an empty list, replaces the named list.
        let (v, _) = merged(BASE, "lxc:\n  containers: []\n");
        assert_eq!(v["lxc"]["containers"], yaml("[]"));
        let (v, _) = merged(BASE, "lxc:\n  containers: [{vmid: 5}]\n");
        assert_eq!(v["lxc"]["containers"], yaml("[{vmid: 5}]"));
        // A mapping replacing a scalar (and the reverse) is a plain replacement.
        let (v, _) = merged(BASE, "name: {a: 1}\nlxc: off\n");
        assert_eq!(v["name"], yaml("{a: 1}"));
        assert_eq!(v["lxc"], yaml("off"));
    }

    #[test]
    fn empty_overlay_changes_nothing() {
        let (v, o) = merged(BASE, "");
        assert_eq!(v, yaml(BASE));
        let b = o.resolve("lxc.containers[2].vmid").unwrap();
        assert_eq!(
            (b.layer, b.path.as_str()),
            (Layer::Base, "lxc.containers[2].vmid")
        );
        // Merging is idempotent for an overlay that only sets values.
        let over = "lxc:\n  containers:\n    - {name: b, memory: 4GiB}\n";
        let (once, _) = merged(BASE, over);
        let (twice, _) = merge(&once, &yaml(over)).unwrap();
        assert_eq!(once, twice);
    }

    #[test]
    fn broken_overlays_are_reported_at_overlay_paths() {
        let errs = merge(&yaml(BASE), &yaml("[1, 2]")).unwrap_err();
        assert!(errs[0].message.contains("must be a mapping"));
        let errs = merge(
            &yaml(BASE),
            &yaml("lxc:\n  containers:\n    - {name: zz, $patch: delete}\n    - {name: b, $patch: remove}\n    - {name: b, cores: 2}\n"),
        )
        .unwrap_err();
        let got: Vec<_> = errs
            .iter()
            .map(|e| (e.path.as_str(), e.message.as_str()))
            .collect();
        assert!(
            got.contains(&(
                "lxc.containers[1].$patch",
                "`$patch` only takes `delete` (remove the item of this name)"
            )),
            "{got:?}"
        );
        assert!(
            got.contains(&("lxc.containers[2].name", "`b` appears twice in this list")),
            "{got:?}"
        );
        assert!(
            got.contains(&(
                "lxc.containers[0].name",
                "there is no `zz` in the base list to delete"
            )),
            "{got:?}"
        );
    }

    #[test]
    fn overlay_paths_sit_beside_the_config() {
        assert_eq!(
            overlay_path(Path::new("homelab.yaml"), "prod"),
            PathBuf::from("homelab.prod.yaml")
        );
        assert_eq!(
            overlay_path(Path::new("/r/lab/main.yml"), "dev-2"),
            PathBuf::from("/r/lab/main.dev-2.yml")
        );
        assert_eq!(overlay_path(Path::new("lab"), "x"), PathBuf::from("lab.x"));
        assert!(is_env_name("prod") && is_env_name("dev-2"));
        assert!(
            !is_env_name("Prod") && !is_env_name("../x") && !is_env_name("") && !is_env_name("a.b")
        );
    }
}
