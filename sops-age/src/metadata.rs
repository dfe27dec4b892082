//! The `sops` metadata block: key groups, lastmodified, MAC, selection rule, version.

use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::keys::{Identities, Recipient};
use crate::rules::SelectionRule;
use crate::value::{Item, Map, Value, go_parse_bool, go_parse_float, parse_timestamp};

/// The sops version we write into new files.
pub const SOPS_VERSION: &str = "3.11.0";

/// Key types other than age, kept verbatim so that rewriting a file does not drop them.
const OTHER_KEY_TYPES: [&str; 5] = ["kms", "gcp_kms", "hckms", "azure_kv", "hc_vault"];

/// One age entry of a key group: the recipient and the data key (or share) wrapped for it.
#[derive(Debug, Clone, PartialEq)]
pub struct AgeKey {
    /// The recipient string (`age1…` or an SSH public-key line).
    pub recipient: String,
    /// The ASCII-armored age file holding the wrapped key.
    pub enc: String,
}

/// One key group.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct KeyGroup {
    /// age entries.
    pub age: Vec<AgeKey>,
    /// Other key types (`pgp`, `kms`, …) kept as they were read, for re-emission.
    pub other: Vec<(String, Value)>,
}

/// The parsed `sops` metadata of a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Metadata {
    /// Number of groups needed to recover the data key (0 = all groups).
    pub shamir_threshold: usize,
    /// The key groups (one, unless Shamir is used).
    pub key_groups: Vec<KeyGroup>,
    /// RFC 3339 time of the last write; also the MAC's AAD.
    pub lastmodified: String,
    /// The encrypted MAC.
    pub mac: String,
    /// The selection rule, if one is written (binary files carry none).
    pub rule: Option<SelectionRule>,
    /// Whether the MAC covers only encrypted values.
    pub mac_only_encrypted: bool,
    /// The sops version that wrote the file.
    pub version: String,
}

impl Metadata {
    /// The selection rule in effect (the default suffix when none is written).
    pub fn effective_rule(&self) -> SelectionRule {
        self.rule.clone().unwrap_or_default()
    }

    /// All recipients listed in the file.
    pub fn recipients(&self) -> Vec<&str> {
        self.key_groups
            .iter()
            .flat_map(|g| g.age.iter().map(|a| a.recipient.as_str()))
            .collect()
    }

    /// `lastmodified` as sops formats it for the MAC AAD (RFC 3339, no fraction).
    pub(crate) fn mac_aad(&self) -> String {
        match parse_timestamp(&self.lastmodified) {
            Some(t) => match (t.find('.'), t.rfind(['Z', '+', '-'])) {
                (Some(dot), Some(zone)) if zone > dot => format!("{}{}", &t[..dot], &t[zone..]),
                _ => t,
            },
            None => self.lastmodified.clone(),
        }
    }

    /// Recover the data key with the given identities (Shamir-combining if needed).
    pub fn data_key(&self, ids: &Identities) -> Result<Zeroizing<[u8; 32]>> {
        if ids.is_empty() {
            return Err(Error::NoIdentities {
                details: load_details(ids),
            });
        }
        let mut parts: Vec<Zeroizing<Vec<u8>>> = Vec::new();
        let needed = if self.key_groups.len() > 1 {
            if self.shamir_threshold == 0 {
                self.key_groups.len()
            } else {
                self.shamir_threshold
            }
        } else {
            1
        };
        for group in &self.key_groups {
            for key in &group.age {
                if let Some(p) = ids.unwrap_key(&key.enc)? {
                    parts.push(p);
                    break;
                }
            }
            if parts.len() >= needed {
                break;
            }
        }
        if parts.len() < needed {
            return Err(Error::NoMatchingKey {
                recipients: self.recipients().join(", "),
                details: if needed > 1 {
                    format!(
                        "; only {} of the {needed} key groups needed could be decrypted{}",
                        parts.len(),
                        load_details(ids)
                    )
                } else {
                    load_details(ids)
                },
            });
        }
        let key = if needed > 1 {
            crate::shamir::combine(&parts)?
        } else {
            parts.swap_remove(0)
        };
        let arr: [u8; 32] = key.as_slice().try_into().map_err(|_| {
            Error::InvalidMetadata(format!("data key has {} bytes, expected 32", key.len()))
        })?;
        Ok(Zeroizing::new(arr))
    }

    /// Wrap `data_key` for the given recipient groups (Shamir-splitting for ≥2 groups).
    pub(crate) fn wrap_groups(
        data_key: &[u8; 32],
        groups: &[Vec<Recipient>],
        threshold: usize,
    ) -> Result<Vec<KeyGroup>> {
        if groups.iter().all(|g| g.is_empty()) {
            return Err(Error::NoRecipients);
        }
        if groups.len() == 1 {
            let age = groups[0]
                .iter()
                .map(|r| {
                    Ok(AgeKey {
                        recipient: r.as_str().to_owned(),
                        enc: r.wrap(data_key)?,
                    })
                })
                .collect::<Result<_>>()?;
            return Ok(vec![KeyGroup { age, other: vec![] }]);
        }
        let t = if threshold == 0 {
            groups.len()
        } else {
            threshold
        };
        let shares = crate::shamir::split(data_key, groups.len(), t)?;
        groups
            .iter()
            .zip(shares.iter())
            .map(|(g, share)| {
                let age = g
                    .iter()
                    .map(|r| {
                        Ok(AgeKey {
                            recipient: r.as_str().to_owned(),
                            enc: r.wrap(share)?,
                        })
                    })
                    .collect::<Result<_>>()?;
                Ok(KeyGroup { age, other: vec![] })
            })
            .collect()
    }

    /// Serialise in sops' field order. `json_nulls` writes nil lists as `null` (JSON) instead
    /// of `[]` (YAML).
    pub(crate) fn to_map(&self, json_nulls: bool) -> Map {
        let mut m = Map::new();
        let empty = || {
            if json_nulls {
                Value::Null
            } else {
                Value::Seq(vec![])
            }
        };
        let age_list = |g: &KeyGroup| {
            Value::Seq(
                g.age
                    .iter()
                    .map(|a| {
                        let mut e = Map::new();
                        e.push("recipient", Value::String(a.recipient.clone()));
                        e.push("enc", Value::String(a.enc.clone()));
                        Value::Map(e)
                    })
                    .collect(),
            )
        };
        let other = |g: &KeyGroup, k: &str| {
            g.other
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .filter(|v| !is_empty_list(v))
        };
        if self.shamir_threshold != 0 {
            m.push("shamir_threshold", Value::Int(self.shamir_threshold as i64));
        }
        if self.key_groups.len() >= 2 {
            let groups = self
                .key_groups
                .iter()
                .map(|g| {
                    let mut gm = Map::new();
                    for k in ["pgp", "kms", "gcp_kms", "hckms", "azure_kv"] {
                        if let Some(v) = other(g, k) {
                            gm.push(k, v);
                        }
                    }
                    gm.push("hc_vault", other(g, "hc_vault").unwrap_or_else(empty));
                    gm.push(
                        "age",
                        if g.age.is_empty() {
                            empty()
                        } else {
                            age_list(g)
                        },
                    );
                    Value::Map(gm)
                })
                .collect();
            m.push("key_groups", Value::Seq(groups));
        } else if let Some(g) = self.key_groups.first() {
            for k in OTHER_KEY_TYPES {
                if let Some(v) = other(g, k) {
                    m.push(k, v);
                }
            }
            if !g.age.is_empty() {
                m.push("age", age_list(g));
            }
        }
        m.push("lastmodified", Value::String(self.lastmodified.clone()));
        m.push("mac", Value::String(self.mac.clone()));
        if self.key_groups.len() < 2
            && let Some(v) = self.key_groups.first().and_then(|g| other(g, "pgp"))
        {
            m.push("pgp", v);
        }
        if let Some(rule) = &self.rule {
            m.push(rule.metadata_key(), Value::String(rule.value().to_owned()));
        }
        if self.mac_only_encrypted {
            m.push("mac_only_encrypted", Value::Bool(true));
        }
        m.push("version", Value::String(self.version.clone()));
        m
    }

    /// Read metadata from its generic tree (any store).
    pub(crate) fn from_map(m: &Map) -> Result<Self> {
        let bad = |s: String| Error::InvalidMetadata(s);
        let str_of = |v: &Value| -> Option<String> {
            match v {
                Value::String(s) | Value::Time(s) => Some(s.clone()),
                Value::Null => None,
                Value::Int(i) => Some(i.to_string()),
                Value::Float(f) => Some(crate::value::go_float_plain(*f)),
                Value::Bool(b) => Some(b.to_string()),
                _ => None,
            }
        };
        let read_group = |gm: &Map| -> Result<KeyGroup> {
            let mut g = KeyGroup::default();
            for (k, v) in gm.entries() {
                if k == "age" {
                    match v {
                        Value::Null => {}
                        Value::Seq(items) => {
                            for it in items {
                                let Value::Map(e) = it else {
                                    return Err(bad("age entry is not a mapping".into()));
                                };
                                let recipient = e
                                    .get("recipient")
                                    .and_then(str_of)
                                    .ok_or_else(|| bad("age entry without recipient".into()))?;
                                let enc = e
                                    .get("enc")
                                    .and_then(str_of)
                                    .ok_or_else(|| bad("age entry without enc".into()))?;
                                g.age.push(AgeKey { recipient, enc });
                            }
                        }
                        _ => return Err(bad("age is not a list".into())),
                    }
                } else if (k == "pgp" || OTHER_KEY_TYPES.contains(&k))
                    && !matches!(v, Value::Null)
                    && !is_empty_list(v)
                {
                    g.other.push((k.to_owned(), v.clone()));
                }
            }
            Ok(g)
        };
        let key_groups = match m.get("key_groups") {
            Some(Value::Seq(gs)) if !gs.is_empty() => gs
                .iter()
                .map(|g| match g {
                    Value::Map(gm) => read_group(gm),
                    _ => Err(bad("key group is not a mapping".into())),
                })
                .collect::<Result<Vec<_>>>()?,
            _ => {
                let g = read_group(m)?;
                if g.age.is_empty() && g.other.is_empty() {
                    return Err(bad("No keys found in file".into()));
                }
                vec![g]
            }
        };
        let shamir_threshold = match m.get("shamir_threshold") {
            None | Some(Value::Null) => 0,
            Some(Value::Int(i)) => {
                usize::try_from(*i).map_err(|_| bad("shamir_threshold is negative".into()))?
            }
            Some(Value::Float(f)) => *f as usize,
            Some(Value::String(s)) => go_parse_float(s)
                .map(|f| f as usize)
                .ok_or_else(|| bad(format!("shamir_threshold {s:?} is not a number")))?,
            Some(_) => return Err(bad("shamir_threshold is not a number".into())),
        };
        let lastmodified = m
            .get("lastmodified")
            .and_then(str_of)
            .ok_or_else(|| bad("lastmodified is missing".into()))?;
        if parse_timestamp(&lastmodified).is_none() {
            return Err(bad(format!(
                "lastmodified {lastmodified:?} is not RFC 3339"
            )));
        }
        let mac = m.get("mac").and_then(str_of).unwrap_or_default();
        let mut rule = None;
        for k in SelectionRule::KEYS {
            if let Some(v) = m.get(k).and_then(str_of).filter(|s| !s.is_empty()) {
                if rule.is_some() {
                    return Err(bad(
                        "Cannot use more than one of encrypted_suffix, unencrypted_suffix, \
                         encrypted_regex, unencrypted_regex, encrypted_comment_regex, or \
                         unencrypted_comment_regex in the same file"
                            .into(),
                    ));
                }
                rule = SelectionRule::from_key(k, v);
            }
        }
        let mac_only_encrypted = match m.get("mac_only_encrypted") {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => go_parse_bool(s).unwrap_or(false),
            _ => false,
        };
        let version = m.get("version").and_then(str_of).unwrap_or_default();
        Ok(Metadata {
            shamir_threshold,
            key_groups,
            lastmodified,
            mac,
            rule,
            mac_only_encrypted,
            version,
        })
    }
}

fn is_empty_list(v: &Value) -> bool {
    matches!(v, Value::Seq(s) if s.is_empty()) || matches!(v, Value::Null)
}

fn load_details(ids: &Identities) -> String {
    if ids.load_errors().is_empty() {
        String::new()
    } else {
        format!("; identity load errors: {}", ids.load_errors().join("; "))
    }
}

/// Flatten metadata for dotenv/INI: `__map_`/`__list_<n>` joined keys, nulls dropped.
pub(crate) fn flatten(m: &Map) -> Vec<(String, String)> {
    fn walk(prefix: String, v: &Value, out: &mut Vec<(String, String)>) {
        match v {
            Value::Null => {}
            Value::Map(m) => {
                for (k, v) in m.entries() {
                    walk(format!("{prefix}__map_{k}"), v, out);
                }
            }
            Value::Seq(items) => {
                for (i, v) in items.iter().enumerate() {
                    walk(format!("{prefix}__list_{i}"), v, out);
                }
            }
            Value::String(s) | Value::Time(s) | Value::Comment(s) => out.push((prefix, s.clone())),
            Value::Bool(b) => out.push((prefix, b.to_string())),
            Value::Int(i) => out.push((prefix, i.to_string())),
            Value::Float(f) => out.push((prefix, crate::value::go_float_plain(*f))),
            Value::Bytes(b) => out.push((prefix, String::from_utf8_lossy(b).into_owned())),
        }
    }
    let mut out = Vec::new();
    for (k, v) in m.entries() {
        walk(k.to_owned(), v, &mut out);
    }
    out.sort();
    out
}

/// Undo [`flatten`].
pub(crate) fn unflatten(pairs: &[(String, String)]) -> Result<Map> {
    #[derive(Debug)]
    enum Node {
        Leaf(String),
        Map(Vec<(String, Node)>),
        List(std::collections::BTreeMap<usize, Node>),
    }
    enum Seg<'a> {
        Key(&'a str),
        Idx(usize),
    }
    fn segments(key: &str) -> Result<Vec<Seg<'_>>> {
        let mut segs = Vec::new();
        let mut rest = key;
        let first_end = rest
            .find("__map_")
            .into_iter()
            .chain(rest.find("__list_"))
            .min()
            .unwrap_or(rest.len());
        segs.push(Seg::Key(&rest[..first_end]));
        rest = &rest[first_end..];
        while !rest.is_empty() {
            let (is_map, body) = if let Some(b) = rest.strip_prefix("__map_") {
                (true, b)
            } else if let Some(b) = rest.strip_prefix("__list_") {
                (false, b)
            } else {
                return Err(Error::InvalidMetadata(format!("bad flattened key {key:?}")));
            };
            let end = body
                .find("__map_")
                .into_iter()
                .chain(body.find("__list_"))
                .min()
                .unwrap_or(body.len());
            let part = &body[..end];
            segs.push(if is_map {
                Seg::Key(part)
            } else {
                Seg::Idx(
                    part.parse().map_err(|_| {
                        Error::InvalidMetadata(format!("bad list index in {key:?}"))
                    })?,
                )
            });
            rest = &body[end..];
        }
        Ok(segs)
    }
    fn insert(node: &mut Node, segs: &[Seg<'_>], value: String) -> Result<()> {
        let Some((first, rest)) = segs.split_first() else {
            *node = Node::Leaf(value);
            return Ok(());
        };
        match first {
            Seg::Key(k) => {
                if !matches!(node, Node::Map(_)) {
                    *node = Node::Map(Vec::new());
                }
                let Node::Map(items) = node else {
                    return Ok(());
                };
                let pos = match items.iter().position(|(n, _)| n == k) {
                    Some(p) => p,
                    None => {
                        items.push(((*k).to_owned(), Node::Map(Vec::new())));
                        items.len() - 1
                    }
                };
                insert(&mut items[pos].1, rest, value)
            }
            Seg::Idx(i) => {
                if !matches!(node, Node::List(_)) {
                    *node = Node::List(Default::default());
                }
                let Node::List(items) = node else {
                    return Ok(());
                };
                insert(
                    items.entry(*i).or_insert(Node::Map(Vec::new())),
                    rest,
                    value,
                )
            }
        }
    }
    fn to_value(n: Node) -> Value {
        match n {
            Node::Leaf(s) => Value::String(s),
            Node::Map(items) => Value::Map(Map {
                items: items
                    .into_iter()
                    .map(|(k, v)| Item::Entry(k, to_value(v)))
                    .collect(),
            }),
            Node::List(items) => Value::Seq(items.into_values().map(to_value).collect()),
        }
    }
    let mut root = Node::Map(Vec::new());
    for (k, v) in pairs {
        insert(&mut root, &segments(k)?, v.clone())?;
    }
    match to_value(root) {
        Value::Map(m) => Ok(m),
        _ => Ok(Map::new()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn flatten_round_trip() {
        let md = Metadata {
            shamir_threshold: 2,
            key_groups: vec![
                KeyGroup {
                    age: vec![AgeKey {
                        recipient: "age1a".into(),
                        enc: "x\ny\n".into(),
                    }],
                    other: vec![],
                },
                KeyGroup {
                    age: vec![AgeKey {
                        recipient: "age1b".into(),
                        enc: "z\n".into(),
                    }],
                    other: vec![],
                },
            ],
            lastmodified: "2026-01-01T00:00:00Z".into(),
            mac: "ENC[x]".into(),
            rule: Some(SelectionRule::default()),
            mac_only_encrypted: true,
            version: SOPS_VERSION.into(),
        };
        let flat = flatten(&md.to_map(true));
        let keys: Vec<_> = flat.iter().map(|(k, _)| k.as_str()).collect();
        assert!(keys.contains(&"key_groups__list_1__map_age__list_0__map_recipient"));
        assert!(keys.contains(&"shamir_threshold"));
        let back = Metadata::from_map(&unflatten(&flat).unwrap()).unwrap();
        assert_eq!(back, md);
    }
}
