//! One answer to "which keys does a new encrypted file get": flags, then the `.sops.yaml`
//! creation rule for the file, then `SOPS_AGE_RECIPIENTS` (sops' own order: `--age` wins,
//! a matching creation rule comes next, and the environment is the last resort).

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::{EncryptOptions, Recipient};

/// Where the `.sops.yaml` comes from.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub enum ConfigSource<'a> {
    /// Walk up from the file's own folder (what a tool writing into a repository wants).
    #[default]
    NearFile,
    /// Already loaded (`--config`, `SOPS_CONFIG` or the walk from the current directory:
    /// [`Config::discover`]).
    Loaded(&'a Config),
    /// No config file.
    Ignore,
}

/// What to consult, in order.
#[derive(Debug, Clone, Default)]
pub struct Resolve<'a> {
    /// Recipients given as flags (`--age`; each entry may be a comma-separated list). They
    /// win over everything; the config's `stores` settings still apply.
    pub flags: &'a [String],
    /// The config file.
    pub config: ConfigSource<'a>,
    /// A config with no rule for the file is an error (sops' `encrypt`) instead of falling
    /// through to the environment.
    pub require_rule: bool,
    /// Fall back to `SOPS_AGE_RECIPIENTS`.
    pub environment: bool,
}

/// Which source gave the recipients.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Source {
    /// The flags.
    Flags,
    /// The creation rule of this config file.
    CreationRule(PathBuf),
    /// `SOPS_AGE_RECIPIENTS`.
    Environment,
}

/// Encryption options for `file`, or `Ok(None)` when no source names any recipient (the
/// caller says what to do then). Errors name their source: a bad flag, an unreadable or
/// invalid `.sops.yaml`, a bad recipient in a rule or in the environment.
pub fn encrypt_options_for(
    file: &Path,
    request: &Resolve<'_>,
) -> Result<Option<(EncryptOptions, Source)>> {
    let abs = if file.is_absolute() {
        file.to_owned()
    } else {
        std::env::current_dir()
            .map_err(|e| Error::io("current directory", e))?
            .join(file)
    };
    let found;
    let config = match request.config {
        ConfigSource::Loaded(c) => Some(c),
        ConfigSource::Ignore => None,
        ConfigSource::NearFile => {
            let start = abs.parent().unwrap_or(Path::new("/"));
            found = Config::find(start).map(|p| Config::load(&p)).transpose()?;
            found.as_ref()
        }
    };
    let stores = config.map(|c| c.stores).unwrap_or_default();
    let flags: Vec<Recipient> = request
        .flags
        .iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| Recipient::parse_list(s))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect();
    if !flags.is_empty() {
        let mut o = EncryptOptions::new(flags);
        o.store = stores;
        return Ok(Some((o, Source::Flags)));
    }
    if let Some(cfg) = config {
        match cfg.rule_for(&abs) {
            Ok(rule) => {
                let o = rule.encrypt_options(stores).map_err(|e| Error::Config {
                    path: cfg.path.clone(),
                    message: format!("bad creation rule: {e}"),
                })?;
                return Ok(Some((o, Source::CreationRule(cfg.path.clone()))));
            }
            Err(e) if request.require_rule => return Err(e),
            Err(_) => {}
        }
    }
    if request.environment
        && let Some(rs) = crate::recipients_from_env()?
        && !rs.is_empty()
    {
        let mut o = EncryptOptions::new(rs);
        o.store = stores;
        return Ok(Some((o, Source::Environment)));
    }
    Ok(None)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const A: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
    const B: &str = "age1lggyhqrw2nlhcxprm67z43rta597azn8gknawjehu9d9dl0jq3yqqvfafg";

    fn recipients(o: &EncryptOptions) -> Vec<String> {
        o.key_groups
            .iter()
            .flatten()
            .map(|r| r.as_str().to_owned())
            .collect()
    }

    #[test]
    fn flags_then_rule_then_nothing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("secrets")).unwrap();
        std::fs::write(
            dir.path().join(".sops.yaml"),
            format!(
                "creation_rules:\n  - path_regex: ^secrets/\n    age: {A}\nstores:\n  yaml:\n    indent: 2\n"
            ),
        )
        .unwrap();
        let file = dir.path().join("secrets/x.yaml");
        let flags = vec![format!("{B}, {A}")];
        let (o, src) = encrypt_options_for(
            &file,
            &Resolve {
                flags: &flags,
                ..Resolve::default()
            },
        )
        .unwrap()
        .unwrap();
        assert_eq!(src, Source::Flags);
        assert_eq!(recipients(&o), [B, A]);
        assert_eq!(
            o.store.yaml_indent, 2,
            "the config's stores apply to flags too"
        );

        let (o, src) = encrypt_options_for(&file, &Resolve::default())
            .unwrap()
            .unwrap();
        assert_eq!(src, Source::CreationRule(dir.path().join(".sops.yaml")));
        assert_eq!(recipients(&o), [A]);

        let other = dir.path().join("plain.yaml");
        assert!(
            encrypt_options_for(&other, &Resolve::default())
                .unwrap()
                .is_none()
        );
        let strict = Resolve {
            require_rule: true,
            ..Resolve::default()
        };
        assert!(encrypt_options_for(&other, &strict).is_err());

        let bad = vec!["age1nope".to_owned()];
        assert!(
            encrypt_options_for(
                &file,
                &Resolve {
                    flags: &bad,
                    ..Resolve::default()
                }
            )
            .is_err()
        );
    }
}
