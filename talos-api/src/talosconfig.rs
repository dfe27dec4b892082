//! talosconfig: the client configuration file of talosctl (`~/.talos/config`, `TALOSCONFIG`).
//!
//! Layout follows `pkg/machinery/client/config/config.go`: `context`, then `contexts` (sorted,
//! as Go marshals maps); each context has `target` (deprecated), `endpoints` (always written,
//! `[]` when empty), `nodes`, `ca`, `crt`, `key` (base64 of PEM text), `auth`, `cluster`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use serde_yaml_ng::{Mapping, Value};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// One talosconfig context.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Context {
    /// Deprecated `target`.
    pub target: Option<String>,
    /// API endpoints (port 50000 implied when absent).
    pub endpoints: Vec<String>,
    /// Default target nodes (sent as `nodes` metadata).
    pub nodes: Vec<String>,
    /// OS CA certificate PEM.
    pub ca: Option<String>,
    /// Client certificate PEM.
    pub crt: Option<String>,
    /// Client private key PEM (`ED25519 PRIVATE KEY`).
    pub key: Option<SecretString>,
    /// `auth` block, kept as-is.
    pub auth: Option<Value>,
    /// `cluster`, kept as-is.
    pub cluster: Option<String>,
}

impl Context {
    /// A context with endpoints, nodes and credentials.
    pub fn new(
        endpoints: Vec<String>,
        nodes: Vec<String>,
        ca_pem: &str,
        crt_pem: &str,
        key_pem: &str,
    ) -> Self {
        Context {
            endpoints,
            nodes,
            ca: Some(ca_pem.to_string()),
            crt: Some(crt_pem.to_string()),
            key: Some(SecretString::from(key_pem)),
            ..Default::default()
        }
    }
}

/// A whole talosconfig.
#[derive(Clone, Debug, Default)]
pub struct Talosconfig {
    /// The current context name.
    pub context: String,
    /// Contexts by name.
    pub contexts: BTreeMap<String, Context>,
}

/// A context renamed during [`Talosconfig::merge`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rename {
    /// Name in the merged-in config.
    pub from: String,
    /// Name it got.
    pub to: String,
}

impl Talosconfig {
    /// A config with one context, made current.
    pub fn single(name: &str, ctx: Context) -> Self {
        let mut contexts = BTreeMap::new();
        contexts.insert(name.to_string(), ctx);
        Talosconfig {
            context: name.to_string(),
            contexts,
        }
    }

    /// The default path: `$TALOSCONFIG`, else `~/.talos/config`.
    pub fn default_path() -> Option<PathBuf> {
        if let Some(p) = std::env::var_os("TALOSCONFIG").filter(|p| !p.is_empty()) {
            return Some(PathBuf::from(p));
        }
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".talos").join("config"))
    }

    /// The current context.
    pub fn current(&self) -> Result<(&str, &Context)> {
        self.contexts
            .get_key_value(&self.context)
            .map(|(k, v)| (k.as_str(), v))
            .ok_or_else(|| Error::Talosconfig(format!("context {:?} is not defined", self.context)))
    }

    /// Parse; `what` names the source in errors.
    pub fn from_yaml(text: &str, what: &str) -> Result<Self> {
        let v: Value = serde_yaml_ng::from_str(text).map_err(|e| Error::Yaml {
            what: what.to_string(),
            message: e.to_string(),
        })?;
        let mut cfg = Talosconfig {
            context: v
                .get("context")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            contexts: BTreeMap::new(),
        };
        let Some(ctxs) = v.get("contexts") else {
            return Ok(cfg);
        };
        let Value::Mapping(ctxs) = ctxs else {
            return Err(Error::Talosconfig(format!(
                "{what}: contexts must be a mapping"
            )));
        };
        for (name, c) in ctxs {
            let name = name.as_str().unwrap_or_default().to_string();
            let field = |f: &str| c.get(f).and_then(Value::as_str).map(str::to_string);
            let list = |f: &str| -> Result<Vec<String>> {
                match c.get(f) {
                    None | Some(Value::Null) => Ok(vec![]),
                    Some(Value::Sequence(s)) => Ok(s
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()),
                    Some(_) => Err(Error::Talosconfig(format!(
                        "{what}: contexts.{name}.{f} must be a list"
                    ))),
                }
            };
            let pem = |f: &str| -> Result<Option<Zeroizing<String>>> {
                match field(f).filter(|s| !s.is_empty()) {
                    None => Ok(None),
                    Some(b) => {
                        let raw = Zeroizing::new(B64.decode(b.trim()).map_err(|e| {
                            Error::Talosconfig(format!(
                                "{what}: contexts.{name}.{f} is not base64: {e}"
                            ))
                        })?);
                        let s = String::from_utf8(raw.to_vec()).map_err(|_| {
                            Error::Talosconfig(format!(
                                "{what}: contexts.{name}.{f} is not PEM text"
                            ))
                        })?;
                        Ok(Some(Zeroizing::new(s)))
                    }
                }
            };
            let ctx = Context {
                target: field("target"),
                endpoints: list("endpoints")?,
                nodes: list("nodes")?,
                ca: pem("ca")?.map(|s| s.to_string()),
                crt: pem("crt")?.map(|s| s.to_string()),
                key: pem("key")?.map(|s| SecretString::from(s.as_str())),
                auth: c.get("auth").cloned(),
                cluster: field("cluster"),
            };
            cfg.contexts.insert(name, ctx);
        }
        Ok(cfg)
    }

    /// Serialise exactly as talosctl writes it.
    pub fn to_yaml(&self) -> Zeroizing<String> {
        let s = |x: &str| Value::String(x.to_string());
        let mut ctxs = Mapping::new();
        for (name, c) in &self.contexts {
            let mut m = Mapping::new();
            if let Some(t) = &c.target {
                m.insert(s("target"), s(t));
            }
            m.insert(
                s("endpoints"),
                Value::Sequence(c.endpoints.iter().map(|e| s(e)).collect()),
            );
            if !c.nodes.is_empty() {
                m.insert(
                    s("nodes"),
                    Value::Sequence(c.nodes.iter().map(|e| s(e)).collect()),
                );
            }
            if let Some(x) = &c.ca {
                m.insert(s("ca"), s(&B64.encode(x)));
            }
            if let Some(x) = &c.crt {
                m.insert(s("crt"), s(&B64.encode(x)));
            }
            if let Some(x) = &c.key {
                m.insert(s("key"), s(&B64.encode(x.expose_secret())));
            }
            if let Some(a) = &c.auth {
                m.insert(s("auth"), a.clone());
            }
            if let Some(cl) = &c.cluster {
                m.insert(s("cluster"), s(cl));
            }
            ctxs.insert(s(name), Value::Mapping(m));
        }
        let mut root = Mapping::new();
        root.insert(s("context"), s(&self.context));
        root.insert(s("contexts"), Value::Mapping(ctxs));
        Zeroizing::new(crate::yaml::to_string(&Value::Mapping(root)))
    }

    /// Read a talosconfig file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?);
        Self::from_yaml(&text, &path.display().to_string())
    }

    /// Write atomically (temp file + rename) with mode 0600, creating parent directories.
    pub fn save(&self, path: &Path) -> Result<()> {
        write_private(path, self.to_yaml().as_bytes())
    }

    /// Merge `other` in as `talosctl config merge` does: a context whose name is taken is
    /// renamed `name-1`, `name-2`, ...; the current context becomes `other`'s (renamed).
    pub fn merge(&mut self, other: &Talosconfig) -> Vec<Rename> {
        let mut renames = Vec::new();
        let mut mapped = BTreeMap::new();
        for (name, ctx) in &other.contexts {
            let mut merged = name.clone();
            if self.contexts.contains_key(&merged) {
                let mut i = 1;
                loop {
                    merged = format!("{name}-{i}");
                    if !self.contexts.contains_key(&merged) {
                        break;
                    }
                    i += 1;
                }
                renames.push(Rename {
                    from: name.clone(),
                    to: merged.clone(),
                });
            }
            mapped.insert(name.clone(), merged.clone());
            self.contexts.insert(merged, ctx.clone());
        }
        if !other.context.is_empty() {
            self.context = mapped
                .get(&other.context)
                .cloned()
                .unwrap_or_else(|| other.context.clone());
        }
        renames
    }
}

/// Write a file holding credentials: temp file in the same directory, mode 0600, rename.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let file_name = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| "talos".into());
    let tmp = dir.join(format!(".{file_name}.tmp{}", std::process::id()));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let res = (|| {
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SAMPLE: &str = "context: lab\ncontexts:\n    lab:\n        endpoints: []\n        ca: LS0tCg==\n        crt: LS0tCg==\n        key: LS0tCg==\n";

    #[test]
    fn roundtrip_is_byte_identical() {
        let c = Talosconfig::from_yaml(SAMPLE, "t").unwrap();
        assert_eq!(c.to_yaml().as_str(), SAMPLE);
    }

    #[test]
    fn merge_renames_taken_contexts() {
        let mut a = Talosconfig::from_yaml(SAMPLE, "a").unwrap();
        let b = Talosconfig::from_yaml(SAMPLE, "b").unwrap();
        let r = a.merge(&b);
        assert_eq!(
            r,
            vec![Rename {
                from: "lab".into(),
                to: "lab-1".into()
            }]
        );
        assert_eq!(a.context, "lab-1");
        a.merge(&b);
        assert_eq!(a.context, "lab-2");
        assert_eq!(a.contexts.len(), 3);
    }
}
