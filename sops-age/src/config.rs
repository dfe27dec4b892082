//! `.sops.yaml`: finding it, `creation_rules` (first match wins) and `stores` settings.

use std::path::{Path, PathBuf};

use regex::Regex;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::file::EncryptOptions;
use crate::keys::Recipient;
use crate::rules::SelectionRule;
use crate::store::StoreOptions;

/// A loaded `.sops.yaml`.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it was loaded from.
    pub path: PathBuf,
    /// The creation rules in file order.
    pub creation_rules: Vec<CreationRule>,
    /// Output style settings from `stores`.
    pub stores: StoreOptions,
}

/// One creation rule.
#[derive(Debug, Clone)]
pub struct CreationRule {
    /// `path_regex` (unanchored); `None` matches every file.
    pub path_regex: Option<String>,
    compiled: Option<Regex>,
    /// Recipient groups (the `age` field makes one group; `key_groups` several).
    pub key_groups: Vec<Vec<String>>,
    /// `shamir_threshold`.
    pub shamir_threshold: usize,
    /// The selection rule, if one is set.
    pub rule: Option<SelectionRule>,
    /// `mac_only_encrypted`.
    pub mac_only_encrypted: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StringOrList {
    One(String),
    Many(Vec<String>),
}

impl StringOrList {
    fn items(&self) -> Vec<String> {
        let raw: Vec<&str> = match self {
            StringOrList::One(s) => s.split(',').collect(),
            StringOrList::Many(v) => v.iter().flat_map(|s| s.split(',')).collect(),
        };
        raw.into_iter()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

#[derive(Deserialize, Default)]
struct RawGroup {
    #[serde(default)]
    age: Option<StringOrList>,
    #[serde(default)]
    merge: Vec<RawGroup>,
}

impl RawGroup {
    fn recipients(&self, out: &mut Vec<String>) {
        if let Some(a) = &self.age {
            for r in a.items() {
                if !out.contains(&r) {
                    out.push(r);
                }
            }
        }
        for m in &self.merge {
            m.recipients(out);
        }
    }
}

#[derive(Deserialize)]
struct RawRule {
    path_regex: Option<String>,
    age: Option<StringOrList>,
    #[serde(default)]
    key_groups: Vec<RawGroup>,
    #[serde(default)]
    shamir_threshold: usize,
    unencrypted_suffix: Option<String>,
    encrypted_suffix: Option<String>,
    unencrypted_regex: Option<String>,
    encrypted_regex: Option<String>,
    unencrypted_comment_regex: Option<String>,
    encrypted_comment_regex: Option<String>,
    #[serde(default)]
    mac_only_encrypted: bool,
}

#[derive(Deserialize, Default)]
struct RawIndent {
    indent: Option<usize>,
}

#[derive(Deserialize, Default)]
struct RawStores {
    #[serde(default)]
    yaml: RawIndent,
    #[serde(default)]
    json: RawIndent,
    #[serde(default)]
    json_binary: RawIndent,
}

#[derive(Deserialize)]
struct RawConfig {
    #[serde(default)]
    creation_rules: Vec<RawRule>,
    #[serde(default)]
    stores: RawStores,
}

impl Config {
    /// Walk up from `start` (at most 100 levels) looking for `.sops.yaml`.
    pub fn find(start: &Path) -> Option<PathBuf> {
        let mut dir = Some(start);
        for _ in 0..100 {
            let d = dir?;
            let candidate = d.join(".sops.yaml");
            if candidate.is_file() {
                return Some(candidate);
            }
            dir = d.parent();
        }
        None
    }

    /// Locate the config as sops does: `explicit` (`--config`), else `SOPS_CONFIG`, else
    /// the walk up from the current directory. `Ok(None)` when there is none.
    pub fn discover(explicit: Option<&Path>) -> Result<Option<Config>> {
        if let Some(p) = explicit {
            return Config::load(p).map(Some);
        }
        if let Some(p) = std::env::var_os("SOPS_CONFIG").filter(|p| !p.is_empty()) {
            return Config::load(Path::new(&p)).map(Some);
        }
        let cwd = std::env::current_dir().map_err(|e| Error::io("current directory", e))?;
        match Config::find(&cwd) {
            Some(p) => Config::load(&p).map(Some),
            None => Ok(None),
        }
    }

    /// Load and validate a config file.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("reading config {}", path.display()), e))?;
        Config::parse(&text, path)
    }

    /// Parse config text (`path` is used for messages and relative matching).
    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        let cerr = |message: String| Error::Config {
            path: path.to_owned(),
            message,
        };
        let raw: RawConfig = serde_yaml_ng::from_str(text).map_err(|e| cerr(e.to_string()))?;
        let mut creation_rules = Vec::new();
        for (i, r) in raw.creation_rules.into_iter().enumerate() {
            let compiled = match &r.path_regex {
                Some(re) if !re.is_empty() => Some(
                    Regex::new(re)
                        .map_err(|e| cerr(format!("creation_rules[{i}].path_regex {re:?}: {e}")))?,
                ),
                _ => None,
            };
            let mut rules = Vec::new();
            for (k, v) in [
                ("unencrypted_suffix", r.unencrypted_suffix),
                ("encrypted_suffix", r.encrypted_suffix),
                ("unencrypted_regex", r.unencrypted_regex),
                ("encrypted_regex", r.encrypted_regex),
                ("unencrypted_comment_regex", r.unencrypted_comment_regex),
                ("encrypted_comment_regex", r.encrypted_comment_regex),
            ] {
                if let Some(v) = v.filter(|v| !v.is_empty()) {
                    rules.push(SelectionRule::from_key(k, v));
                }
            }
            if rules.len() > 1 {
                return Err(cerr(format!(
                    "creation_rules[{i}]: cannot use more than one of encrypted_suffix, \
                     unencrypted_suffix, encrypted_regex, unencrypted_regex, \
                     encrypted_comment_regex, or unencrypted_comment_regex in the same rule"
                )));
            }
            let key_groups = if !r.key_groups.is_empty() {
                r.key_groups
                    .iter()
                    .map(|g| {
                        let mut v = Vec::new();
                        g.recipients(&mut v);
                        v
                    })
                    .collect()
            } else if let Some(a) = &r.age {
                vec![a.items()]
            } else {
                Vec::new()
            };
            creation_rules.push(CreationRule {
                path_regex: r.path_regex,
                compiled,
                key_groups,
                shamir_threshold: r.shamir_threshold,
                rule: rules.pop().flatten(),
                mac_only_encrypted: r.mac_only_encrypted,
            });
        }
        Ok(Config {
            path: path.to_owned(),
            creation_rules,
            stores: StoreOptions {
                yaml_indent: raw.stores.yaml.indent.unwrap_or(4),
                json_indent: raw.stores.json.indent,
                json_binary_indent: raw.stores.json_binary.indent,
            },
        })
    }

    /// The first rule matching `file` (made relative to the config's folder when inside it).
    pub fn rule_for(&self, file: &Path) -> Result<&CreationRule> {
        let abs = if file.is_absolute() {
            file.to_owned()
        } else {
            std::env::current_dir()
                .map_err(|e| Error::io("current directory", e))?
                .join(file)
        };
        let base = self
            .path
            .parent()
            .map(|p| {
                if p.is_absolute() {
                    p.to_owned()
                } else {
                    std::env::current_dir()
                        .map(|c| c.join(p))
                        .unwrap_or_else(|_| p.to_owned())
                }
            })
            .unwrap_or_default();
        let rel = abs.strip_prefix(&base).unwrap_or(&abs);
        let name = rel.to_string_lossy();
        self.creation_rules
            .iter()
            .find(|r| r.compiled.as_ref().is_none_or(|re| re.is_match(&name)))
            .ok_or_else(|| Error::NoMatchingRule(name.into_owned()))
    }
}

impl CreationRule {
    /// The rule's recipients, parsed, one list per key group.
    pub fn recipient_groups(&self) -> Result<Vec<Vec<Recipient>>> {
        self.key_groups
            .iter()
            .map(|g| g.iter().map(|r| Recipient::parse(r)).collect())
            .collect()
    }

    /// Encryption options for a file matching this rule.
    pub fn encrypt_options(&self, stores: StoreOptions) -> Result<EncryptOptions> {
        let groups = self.recipient_groups()?;
        Ok(EncryptOptions {
            key_groups: if groups.is_empty() {
                vec![Vec::new()]
            } else {
                groups
            },
            shamir_threshold: self.shamir_threshold,
            rule: self.rule.clone(),
            mac_only_encrypted: self.mac_only_encrypted,
            store: stores,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_in_order() {
        let cfg = Config::parse(
            "creation_rules:\n  - path_regex: secrets/.*\\.yaml$\n    age: >-\n      age1a,\n      age1b\n    encrypted_regex: ^(data|stringData)$\n  - age: [age1c]\n    mac_only_encrypted: true\nstores:\n  yaml:\n    indent: 2\n",
            Path::new("/repo/.sops.yaml"),
        )
        .unwrap();
        let r = cfg.rule_for(Path::new("/repo/secrets/x.yaml")).unwrap();
        assert_eq!(
            r.key_groups,
            vec![vec!["age1a".to_owned(), "age1b".to_owned()]]
        );
        assert_eq!(
            r.rule,
            Some(SelectionRule::EncryptedRegex("^(data|stringData)$".into()))
        );
        let r2 = cfg.rule_for(Path::new("/repo/other.json")).unwrap();
        assert!(r2.mac_only_encrypted);
        assert_eq!(cfg.stores.yaml_indent, 2);
        let bad = Config::parse(
            "creation_rules:\n  - unencrypted_suffix: _u\n    encrypted_regex: x\n",
            Path::new("/x/.sops.yaml"),
        );
        assert!(bad.is_err());
        let none = Config::parse(
            "creation_rules:\n  - path_regex: nope\n",
            Path::new("/r/.sops.yaml"),
        )
        .unwrap();
        assert!(matches!(
            none.rule_for(Path::new("/r/a.yaml")),
            Err(Error::NoMatchingRule(_))
        ));
    }
}
