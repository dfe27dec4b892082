//! `${secret:dotted.path}` references and the decrypted values they point at.
//!
//! The SOPS file is decrypted in memory; its leaves are flattened into dotted paths
//! (`proxmox.token_secret`, `nodes.cp-1.ip`, list items as `list.0`) and kept in
//! [`SecretString`]s, which zeroize on drop and never print.

use std::collections::BTreeMap;

use secrecy::{ExposeSecret, SecretString};

/// One piece of a string that may reference secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Literal text.
    Text(String),
    /// `${secret:path}`.
    Secret(String),
}

/// Split a string into literal text and secret references.
pub fn parse_refs(text: &str) -> Result<Vec<Piece>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        if i > 0 {
            out.push(Piece::Text(rest[..i].to_string()));
        }
        let after = &rest[i + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unterminated reference in `{text}`: missing `}}`"))?;
        let inner = &after[..end];
        let path = inner.strip_prefix("secret:").ok_or_else(|| {
            format!("unknown reference `${{{inner}}}`: only `${{secret:path}}` is supported")
        })?;
        if path.is_empty()
            || !path.split('.').all(|seg| {
                !seg.is_empty()
                    && seg
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            })
        {
            return Err(format!(
                "invalid secret path `{path}`: use dotted keys such as `proxmox.token_secret`"
            ));
        }
        out.push(Piece::Secret(path.to_string()));
        rest = &after[end + 1..];
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest.to_string()));
    }
    Ok(out)
}

/// Whether a string contains any secret reference.
pub fn has_refs(text: &str) -> bool {
    text.contains("${secret:")
}

/// Decrypted secret values by dotted path.
#[derive(Default)]
pub struct SecretValues {
    values: BTreeMap<String, SecretString>,
}

impl std::fmt::Debug for SecretValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretValues")
            .field("paths", &self.values.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl SecretValues {
    /// Flatten a decrypted YAML document. Scalars become strings; `sops` metadata is skipped.
    pub fn from_yaml(doc: &serde_yaml_ng::Value) -> Self {
        let mut values = BTreeMap::new();
        flatten("", doc, &mut values);
        SecretValues { values }
    }

    /// Values given directly (tests, embedding).
    pub fn from_pairs<I: IntoIterator<Item = (String, String)>>(pairs: I) -> Self {
        SecretValues {
            values: pairs
                .into_iter()
                .map(|(k, v)| (k, SecretString::from(v)))
                .collect(),
        }
    }

    /// The value at `path`.
    pub fn get(&self, path: &str) -> Option<&SecretString> {
        self.values.get(path)
    }

    /// Every path (for "did you mean" hints).
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    /// Substitute the references in `text`. Returns the value and whether it came (even
    /// partly) from a secret.
    pub fn substitute(&self, text: &str) -> Result<(SecretString, bool), String> {
        let mut out = String::new();
        let mut sensitive = false;
        for piece in parse_refs(text)? {
            match piece {
                Piece::Text(t) => out.push_str(&t),
                Piece::Secret(p) => {
                    let v = self.get(&p).ok_or_else(|| {
                        let known: Vec<&str> = self.paths().collect();
                        if known.is_empty() {
                            format!("secret `{p}` is not in the secrets file (it holds no values)")
                        } else {
                            format!(
                                "secret `{p}` is not in the secrets file (it has: {})",
                                known.join(", ")
                            )
                        }
                    })?;
                    out.push_str(v.expose_secret());
                    sensitive = true;
                }
            }
        }
        Ok((SecretString::from(out), sensitive))
    }
}

fn flatten(prefix: &str, v: &serde_yaml_ng::Value, out: &mut BTreeMap<String, SecretString>) {
    use serde_yaml_ng::Value;
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match v {
        Value::Mapping(m) => {
            for (k, v) in m {
                let key = match k {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => continue,
                };
                if prefix.is_empty() && key == "sops" {
                    continue;
                }
                flatten(&join(&key), v, out);
            }
        }
        Value::Sequence(s) => {
            for (i, v) in s.iter().enumerate() {
                flatten(&join(&i.to_string()), v, out);
            }
        }
        Value::String(s) => {
            out.insert(prefix.to_string(), SecretString::from(s.clone()));
        }
        Value::Number(n) => {
            out.insert(prefix.to_string(), SecretString::from(n.to_string()));
        }
        Value::Bool(b) => {
            out.insert(prefix.to_string(), SecretString::from(b.to_string()));
        }
        Value::Tagged(t) => flatten(prefix, &t.value, out),
        Value::Null => {}
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn references_split_and_validate() {
        assert_eq!(
            parse_refs("https://${secret:pve.host}:8006").unwrap(),
            vec![
                Piece::Text("https://".into()),
                Piece::Secret("pve.host".into()),
                Piece::Text(":8006".into())
            ]
        );
        assert!(
            parse_refs("${secret:a")
                .unwrap_err()
                .contains("unterminated")
        );
        assert!(
            parse_refs("${env:HOME}")
                .unwrap_err()
                .contains("only `${secret:path}`")
        );
        assert!(
            parse_refs("${secret:a..b}")
                .unwrap_err()
                .contains("invalid secret path")
        );
        assert_eq!(
            parse_refs("plain").unwrap(),
            vec![Piece::Text("plain".into())]
        );
    }

    #[test]
    fn substitution_flattens_yaml_and_marks_sensitive() {
        let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(
            "proxmox:\n  token_secret: abc\nnodes:\n  - 127.0.0.10\nport: 8006\nsops:\n  version: 3.11.0\n",
        )
        .unwrap();
        let s = SecretValues::from_yaml(&doc);
        let (v, sens) = s.substitute("x${secret:proxmox.token_secret}y").unwrap();
        assert_eq!(v.expose_secret(), "xabcy");
        assert!(sens);
        let (v, sens) = s.substitute("${secret:nodes.0}:${secret:port}").unwrap();
        assert_eq!(v.expose_secret(), "127.0.0.10:8006");
        assert!(sens);
        let (_, sens) = s.substitute("plain").unwrap();
        assert!(!sens);
        let e = s.substitute("${secret:nope}").unwrap_err();
        assert!(e.contains("nodes.0") && !e.contains("abc"), "{e}");
        assert!(s.get("sops.version").is_none());
        assert!(!format!("{s:?}").contains("abc"));
    }
}
