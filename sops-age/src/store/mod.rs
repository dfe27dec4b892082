//! File formats ("stores" in sops): parsing into [`Map`] documents and emitting them.

pub(crate) mod dotenv;
pub(crate) mod ini;
pub(crate) mod json;
pub(crate) mod yaml;
pub(crate) mod yaml_fast;

use std::path::Path;

use crate::error::{Error, Result};
use crate::metadata::{Metadata, flatten, unflatten};
use crate::value::{Item, Map, Value};

/// A file format sops understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Format {
    /// YAML (`.yaml`, `.yml`).
    Yaml,
    /// JSON (`.json`).
    Json,
    /// dotenv (`.env`).
    Dotenv,
    /// INI (`.ini`).
    Ini,
    /// Any other file: the whole content is one value.
    Binary,
}

impl Format {
    /// Pick the format from a file name as sops does (anything unknown is binary).
    pub fn from_path(path: impl AsRef<Path>) -> Format {
        let name = path.as_ref().to_string_lossy();
        if name.ends_with(".yaml") || name.ends_with(".yml") {
            Format::Yaml
        } else if name.ends_with(".json") {
            Format::Json
        } else if name.ends_with(".env") {
            Format::Dotenv
        } else if name.ends_with(".ini") {
            Format::Ini
        } else {
            Format::Binary
        }
    }

    /// Parse a `--input-type`/`--output-type` name.
    pub fn from_name(name: &str) -> Option<Format> {
        Some(match name {
            "yaml" | "yml" => Format::Yaml,
            "json" => Format::Json,
            "dotenv" | "env" => Format::Dotenv,
            "ini" => Format::Ini,
            "binary" => Format::Binary,
            _ => return None,
        })
    }

    /// The canonical name (`yaml`, `json`, `dotenv`, `ini`, `binary`).
    pub fn name(self) -> &'static str {
        match self {
            Format::Yaml => "yaml",
            Format::Json => "json",
            Format::Dotenv => "dotenv",
            Format::Ini => "ini",
            Format::Binary => "binary",
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Format {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Format::from_name(s).ok_or_else(|| {
            Error::Unsupported(format!(
                "unknown format {s:?}: expected yaml, json, dotenv, ini or binary"
            ))
        })
    }
}

/// Output style settings (`.sops.yaml` `stores`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// YAML indentation (default 4).
    pub yaml_indent: usize,
    /// JSON indentation in spaces; `None` = one tab (default).
    pub json_indent: Option<usize>,
    /// JSON indentation of binary files; `None` = one tab (default).
    pub json_binary_indent: Option<usize>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            yaml_indent: 4,
            json_indent: None,
            json_binary_indent: None,
        }
    }
}

/// Parse a plaintext document of the given format into documents.
pub(crate) fn parse_plain(format: Format, input: &[u8]) -> Result<Vec<Map>> {
    Ok(match format {
        Format::Yaml => yaml::parse(input)?,
        Format::Json => vec![json::parse(input)?],
        Format::Dotenv => vec![dotenv::parse(input)?],
        Format::Ini => vec![ini::parse(input)?],
        Format::Binary => {
            let mut m = Map::new();
            m.push(
                "data",
                match std::str::from_utf8(input) {
                    Ok(s) => Value::String(s.to_owned()),
                    Err(_) => Value::Bytes(input.to_vec()),
                },
            );
            vec![m]
        }
    })
}

/// Whether plaintext input already carries sops metadata.
pub(crate) fn has_metadata(format: Format, docs: &[Map]) -> bool {
    match format {
        Format::Dotenv => docs
            .iter()
            .any(|d| d.entries().any(|(k, _)| k.starts_with("sops_"))),
        Format::Binary => false,
        _ => docs.iter().any(|d| d.contains_key("sops")),
    }
}

/// Parse an encrypted file: documents plus metadata (removed from the documents).
pub(crate) fn parse_encrypted(format: Format, input: &[u8]) -> Result<(Vec<Map>, Metadata)> {
    let (mut docs, md_map) = match format {
        Format::Yaml => {
            let mut docs = yaml::parse(input)?;
            let mut md = None;
            for d in docs.iter_mut() {
                if let Some(v) = d.remove("sops")
                    && md.is_none()
                {
                    md = Some(v);
                }
            }
            (docs, md)
        }
        Format::Json | Format::Binary => {
            let mut d = json::parse(input)?;
            let md = d.remove("sops");
            (vec![d], md)
        }
        Format::Dotenv => {
            let d = dotenv::parse(input)?;
            let mut data = Map::new();
            let mut flat = Vec::new();
            for item in d.items {
                match item {
                    Item::Entry(k, v) if k.starts_with("sops_") => {
                        if let Value::String(s) = v {
                            flat.push((k["sops_".len()..].to_owned(), s));
                        }
                    }
                    other => data.items.push(other),
                }
            }
            let md = if flat.is_empty() {
                None
            } else {
                Some(Value::Map(unflatten(&flat)?))
            };
            (vec![data], md)
        }
        Format::Ini => {
            let mut d = ini::parse(input)?;
            let md = match d.remove("sops") {
                Some(Value::Map(sec)) => {
                    let flat: Vec<(String, String)> = sec
                        .entries()
                        .filter_map(|(k, v)| match v {
                            Value::String(s) => {
                                Some((k.to_owned(), s.replace("\\\\n", "\n").replace("\\n", "\n")))
                            }
                            _ => None,
                        })
                        .collect();
                    Some(Value::Map(unflatten(&flat)?))
                }
                _ => None,
            };
            (vec![d], md)
        }
    };
    let md = match md_map {
        Some(Value::Map(m)) => Metadata::from_map(&m)?,
        Some(_) => {
            return Err(Error::InvalidMetadata(
                "the sops key is not a mapping".into(),
            ));
        }
        None => return Err(Error::MissingMetadata),
    };
    if format == Format::Binary {
        // keep `data` as it is; nothing else to do
        docs.truncate(1);
    }
    Ok((docs, md))
}

/// Emit plaintext documents.
pub(crate) fn emit_plain(format: Format, docs: &[Map], opts: &StoreOptions) -> Result<Vec<u8>> {
    Ok(match format {
        Format::Yaml => yaml::emit(docs, None, opts.yaml_indent).into_bytes(),
        Format::Json => json::emit(single(docs)?, None, opts.json_indent).into_bytes(),
        Format::Dotenv => dotenv::emit(single(docs)?, None)?.into_bytes(),
        Format::Ini => ini::emit(single(docs)?, None)?.into_bytes(),
        Format::Binary => match single(docs)?.get("data") {
            Some(Value::String(s)) => s.as_bytes().to_vec(),
            Some(Value::Bytes(b)) => b.clone(),
            _ => {
                return Err(Error::Unsupported(
                    "error emitting binary store: no binary data found in tree".into(),
                ));
            }
        },
    })
}

/// Emit encrypted documents with their metadata.
pub(crate) fn emit_encrypted(
    format: Format,
    docs: &[Map],
    md: &Metadata,
    opts: &StoreOptions,
) -> Result<Vec<u8>> {
    Ok(match format {
        Format::Yaml => yaml::emit(docs, Some(&md.to_map(false)), opts.yaml_indent).into_bytes(),
        Format::Json => {
            json::emit(single(docs)?, Some(&md.to_map(true)), opts.json_indent).into_bytes()
        }
        Format::Binary => json::emit(
            single(docs)?,
            Some(&md.to_map(true)),
            opts.json_binary_indent,
        )
        .into_bytes(),
        Format::Dotenv => {
            dotenv::emit(single(docs)?, Some(&flatten(&md.to_map(true))))?.into_bytes()
        }
        Format::Ini => ini::emit(single(docs)?, Some(&flatten(&md.to_map(true))))?.into_bytes(),
    })
}

fn single(docs: &[Map]) -> Result<&Map> {
    match docs {
        [one] => Ok(one),
        [] => Err(Error::Unsupported("no document to write".into())),
        _ => Err(Error::Unsupported(
            "multiple YAML documents can only be written as YAML".into(),
        )),
    }
}
