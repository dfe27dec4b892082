//! Whole-file operations: encrypt, decrypt (with MAC check), set/unset/extract, rotate,
//! updatekeys, filestatus.

use rand::RngCore;
use zeroize::{Zeroize, Zeroizing};

use crate::cipher::{Crypter, decrypt_docs, encrypt_docs};
use crate::error::{Error, Result};
use crate::keys::{Identities, Recipient};
use crate::metadata::{KeyGroup, Metadata, SOPS_VERSION};
use crate::rules::{Rules, SelectionRule};
use crate::store::{self, Format, StoreOptions};
use crate::value::{Item, Map, Value};

/// How to encrypt a new file.
#[derive(Debug, Clone)]
pub struct EncryptOptions {
    /// Recipient groups: one group normally; two or more turn on Shamir secret sharing.
    pub key_groups: Vec<Vec<Recipient>>,
    /// Groups needed to decrypt (0 = all), only with ≥2 groups.
    pub shamir_threshold: usize,
    /// The selection rule; `None` means the default `unencrypted_suffix: _unencrypted`.
    pub rule: Option<SelectionRule>,
    /// Hash only encrypted values into the MAC.
    pub mac_only_encrypted: bool,
    /// Output style.
    pub store: StoreOptions,
}

impl EncryptOptions {
    /// Encrypt to these recipients (one key group), default rules.
    pub fn new(recipients: Vec<Recipient>) -> Self {
        EncryptOptions {
            key_groups: vec![recipients],
            shamir_threshold: 0,
            rule: None,
            mac_only_encrypted: false,
            store: StoreOptions::default(),
        }
    }

    /// Set the selection rule.
    pub fn with_rule(mut self, rule: SelectionRule) -> Self {
        self.rule = Some(rule);
        self
    }

    /// Set `mac_only_encrypted`.
    pub fn with_mac_only_encrypted(mut self, on: bool) -> Self {
        self.mac_only_encrypted = on;
        self
    }
}

/// Documents that are zeroized when dropped.
pub(crate) struct Docs(pub(crate) Vec<Map>);

impl Drop for Docs {
    fn drop(&mut self) {
        for d in self.0.iter_mut() {
            d.zeroize();
        }
    }
}

pub(crate) fn now_rfc3339() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Encrypt a plaintext document of `format`.
///
/// ```
/// use sops_age::{EncryptOptions, Format, Identities};
/// let mut ids = Identities::new();
/// let recipient = sops_age::Recipient::parse(&ids.generate()).unwrap();
/// let enc = sops_age::encrypt(b"password: hunter2\n", Format::Yaml, &EncryptOptions::new(vec![recipient])).unwrap();
/// assert!(String::from_utf8_lossy(&enc).contains("password: ENC[AES256_GCM,"));
/// let plain = sops_age::decrypt(&enc, Format::Yaml, &ids).unwrap();
/// assert_eq!(plain.as_slice(), b"password: hunter2\n");
/// ```
pub fn encrypt(plaintext: &[u8], format: Format, opts: &EncryptOptions) -> Result<Vec<u8>> {
    let mut docs = Docs(store::parse_plain(format, plaintext)?);
    if store::has_metadata(format, &docs.0) {
        return Err(Error::AlreadyEncrypted);
    }
    encrypt_docs_new(&mut docs.0, format, opts)
}

/// Encrypt parsed documents with a fresh data key.
pub(crate) fn encrypt_docs_new(
    docs: &mut [Map],
    format: Format,
    opts: &EncryptOptions,
) -> Result<Vec<u8>> {
    let mut key = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(key.as_mut());
    let key_groups = Metadata::wrap_groups(&key, &opts.key_groups, opts.shamir_threshold)?;
    let rule = if format == Format::Binary {
        None
    } else {
        Some(opts.rule.clone().unwrap_or_default())
    };
    let mut md = Metadata {
        shamir_threshold: if opts.key_groups.len() > 1 {
            if opts.shamir_threshold == 0 {
                opts.key_groups.len()
            } else {
                opts.shamir_threshold
            }
        } else {
            0
        },
        key_groups,
        lastmodified: String::new(),
        mac: String::new(),
        rule,
        mac_only_encrypted: opts.mac_only_encrypted,
        version: SOPS_VERSION.to_owned(),
    };
    let mut crypter = Crypter::new(&key);
    seal(docs, &mut md, &mut crypter, format, &opts.store)
}

/// Encrypt the documents in place, set lastmodified + MAC, and emit.
fn seal(
    docs: &mut [Map],
    md: &mut Metadata,
    crypter: &mut Crypter,
    format: Format,
    store_opts: &StoreOptions,
) -> Result<Vec<u8>> {
    let rules = Rules::new(&md.effective_rule(), md.mac_only_encrypted)?;
    let mac = encrypt_docs(docs, &rules, crypter)?;
    md.lastmodified = now_rfc3339();
    md.mac = crypter.encrypt(mac.as_bytes(), "str", &md.mac_aad());
    store::emit_encrypted(format, docs, md, store_opts)
}

/// Decrypt a file and return the plaintext in the same format.
pub fn decrypt(data: &[u8], format: Format, identities: &Identities) -> Result<Zeroizing<Vec<u8>>> {
    let opts = DecryptOptions {
        read_only: true,
        ..DecryptOptions::default()
    };
    Decrypted::open_with(data, format, identities, opts)?.to_plaintext(format)
}

/// Whether data is a sops file (`filestatus`): metadata loads and has a version and MAC.
pub fn file_status(data: &[u8], format: Format) -> bool {
    match store::parse_encrypted(format, data) {
        Ok((_, md)) => !md.version.is_empty() && !md.mac.is_empty(),
        Err(_) => false,
    }
}

/// Options for [`Decrypted::open_with`].
#[derive(Debug, Clone, Copy, Default)]
pub struct DecryptOptions {
    /// Skip the MAC check (`--ignore-mac`).
    pub ignore_mac: bool,
    /// Do not remember the IVs seen (saves memory on large files that will only be read;
    /// re-encrypting such a [`Decrypted`] then gives every value a fresh IV).
    pub read_only: bool,
}

/// A decrypted file: the plaintext tree plus what is needed to write it back (metadata,
/// data key, the IVs seen, so unchanged values re-encrypt byte-identically).
/// The plaintext is zeroized on drop.
pub struct Decrypted {
    docs: Docs,
    metadata: Metadata,
    format: Format,
    crypter: Crypter,
    store: StoreOptions,
}

impl std::fmt::Debug for Decrypted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decrypted")
            .field("format", &self.format)
            .field("documents", &self.docs.0.len())
            .field("metadata", &self.metadata)
            .finish_non_exhaustive()
    }
}

impl Decrypted {
    /// Decrypt `data` and verify its MAC.
    pub fn open(data: &[u8], format: Format, identities: &Identities) -> Result<Self> {
        Self::open_with(data, format, identities, DecryptOptions::default())
    }

    /// Decrypt with options.
    pub fn open_with(
        data: &[u8],
        format: Format,
        identities: &Identities,
        opts: DecryptOptions,
    ) -> Result<Self> {
        let (docs, metadata) = store::parse_encrypted(format, data)?;
        let mut docs = Docs(docs);
        let key = metadata.data_key(identities)?;
        let mut crypter = Crypter::new(&key);
        crypter.keep_ivs = !opts.read_only;
        let rules = Rules::new(&metadata.effective_rule(), metadata.mac_only_encrypted)?;
        let computed = decrypt_docs(&mut docs.0, &rules, &mut crypter)?;
        if !opts.ignore_mac {
            let stored = if metadata.mac.is_empty() {
                None
            } else {
                let (plain, _) = crypter
                    .decrypt(&metadata.mac, &metadata.mac_aad(), "sops.mac")
                    .map_err(|e| match e {
                        Error::WrongKey { .. } => Error::MacMismatch {
                            file:
                                "a MAC that does not authenticate (lastmodified or mac was altered)"
                                    .into(),
                            computed: computed.clone(),
                        },
                        other => other,
                    })?;
                Some(String::from_utf8_lossy(&plain).into_owned())
            };
            if stored.as_deref() != Some(computed.as_str()) {
                return Err(Error::MacMismatch {
                    file: stored.unwrap_or_else(|| "no MAC".into()),
                    computed,
                });
            }
        }
        Ok(Decrypted {
            docs,
            metadata,
            format,
            crypter,
            store: StoreOptions::default(),
        })
    }

    /// The decrypted documents (one, except for multi-document YAML).
    pub fn documents(&self) -> &[Map] {
        &self.docs.0
    }

    /// Mutable access to the documents, for edits before [`Self::encrypt`].
    pub fn documents_mut(&mut self) -> &mut Vec<Map> {
        &mut self.docs.0
    }

    /// The file's metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The format the file was read as.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Set the output style used by [`Self::encrypt`] and [`Self::to_plaintext`].
    pub fn set_store_options(&mut self, store: StoreOptions) {
        self.store = store;
    }

    /// Emit the plaintext in `format`.
    pub fn to_plaintext(&self, format: Format) -> Result<Zeroizing<Vec<u8>>> {
        store::emit_plain(format, &self.docs.0, &self.store).map(Zeroizing::new)
    }

    /// Replace the whole plaintext (after an editor session) with `plaintext` in `format`.
    pub fn replace_plaintext(&mut self, plaintext: &[u8], format: Format) -> Result<()> {
        let docs = store::parse_plain(format, plaintext)?;
        if store::has_metadata(format, &docs) {
            return Err(Error::AlreadyEncrypted);
        }
        self.docs = Docs(docs);
        Ok(())
    }

    /// The value at a sops path such as `["a"][0]["b"]` in the first document.
    pub fn get(&self, path: &str) -> Result<&Value> {
        let segs = parse_path(path)?;
        let doc = self
            .docs
            .0
            .first()
            .ok_or_else(|| path_err(path, "the file is empty"))?;
        let mut cur: Option<&Value> = None;
        for seg in &segs {
            let next = match (cur, seg) {
                (None, PathSeg::Key(k)) => doc.get(k),
                (Some(Value::Map(m)), PathSeg::Key(k)) => m.get(k),
                (Some(Value::Seq(s)), PathSeg::Index(i)) => s.get(*i),
                _ => None,
            };
            cur = Some(next.ok_or_else(|| path_err(path, "component not found"))?);
        }
        match cur {
            Some(v) => Ok(v),
            None => Err(path_err(path, "empty path")),
        }
    }

    /// `--extract`: a string leaf raw (no newline), a subtree in `format`, other scalars
    /// as the format writes them.
    pub fn extract(&self, path: &str, format: Format) -> Result<Zeroizing<Vec<u8>>> {
        let v = self.get(path)?;
        let out = match v {
            Value::String(s) => s.as_bytes().to_vec(),
            Value::Bytes(b) => b.clone(),
            Value::Map(m) if format != Format::Yaml => {
                store::emit_plain(format, std::slice::from_ref(m), &self.store)?
            }
            other => match format {
                Format::Json => {
                    let mut s = String::new();
                    let unit = match self.store.json_indent {
                        None => "\t".to_owned(),
                        Some(n) => " ".repeat(n),
                    };
                    store::json::emit_value(&mut s, other, &unit, 0);
                    s.into_bytes()
                }
                _ => store::yaml::emit_value(other, self.store.yaml_indent).into_bytes(),
            },
        };
        Ok(Zeroizing::new(out))
    }

    /// Set the value at `path` (creating missing mapping keys). Returns whether it changed.
    pub fn set(&mut self, path: &str, value: Value) -> Result<bool> {
        let segs = parse_path(path)?;
        let doc = self
            .docs
            .0
            .first_mut()
            .ok_or_else(|| path_err(path, "the file is empty"))?;
        let slot = slot_mut(doc, &segs, path, true)?;
        let changed = *slot != value;
        let mut old = std::mem::replace(slot, value);
        old.zeroize();
        Ok(changed)
    }

    /// Remove the value at `path`.
    pub fn unset(&mut self, path: &str) -> Result<()> {
        let segs = parse_path(path)?;
        let (last, parent) = segs
            .split_last()
            .ok_or_else(|| path_err(path, "empty path"))?;
        let doc = self
            .docs
            .0
            .first_mut()
            .ok_or_else(|| path_err(path, "the file is empty"))?;
        let removed = if parent.is_empty() {
            match last {
                PathSeg::Key(k) => doc.remove(k),
                PathSeg::Index(_) => None,
            }
        } else {
            match (slot_mut(doc, parent, path, false)?, last) {
                (Value::Map(m), PathSeg::Key(k)) => m.remove(k),
                (Value::Seq(s), PathSeg::Index(i)) if *i < s.len() => Some(s.remove(*i)),
                _ => None,
            }
        };
        match removed {
            Some(mut v) => {
                v.zeroize();
                Ok(())
            }
            None => Err(path_err(path, "component not found")),
        }
    }

    /// Re-encrypt with the same data key: unchanged values keep their ciphertext; new
    /// `lastmodified` and MAC. `bump_version` sets `version` to ours if the file's is older
    /// (what `sops edit` does).
    pub fn encrypt(&mut self, bump_version: bool) -> Result<Vec<u8>> {
        if bump_version && version_older(&self.metadata.version, SOPS_VERSION) {
            self.metadata.version = SOPS_VERSION.to_owned();
        }
        let mut docs = Docs(self.docs.0.clone());
        let mut md = self.metadata.clone();
        let out = seal(
            &mut docs.0,
            &mut md,
            &mut self.crypter,
            self.format,
            &self.store,
        )?;
        self.metadata = md;
        Ok(out)
    }

    /// Re-encrypt everything with a new data key, optionally adding recipients (to the
    /// first key group) and removing some (by recipient string).
    pub fn rotate(&mut self, add: &[Recipient], remove: &[String]) -> Result<Vec<u8>> {
        let mut groups: Vec<Vec<Recipient>> = self
            .metadata
            .key_groups
            .iter()
            .map(|g| {
                g.age
                    .iter()
                    .filter(|a| !remove.iter().any(|r| r.trim() == a.recipient))
                    .map(|a| Recipient::parse(&a.recipient))
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<_>>()?;
        if groups.is_empty() {
            groups.push(Vec::new());
        }
        for r in add {
            if !groups[0].contains(r) {
                groups[0].push(r.clone());
            }
        }
        let mut key = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(key.as_mut());
        let others: Vec<Vec<(String, Value)>> = self
            .metadata
            .key_groups
            .iter()
            .map(|g| g.other.clone())
            .collect();
        let mut new_groups = Metadata::wrap_groups(&key, &groups, self.metadata.shamir_threshold)?;
        for (g, o) in new_groups.iter_mut().zip(others) {
            g.other = o;
        }
        self.metadata.key_groups = new_groups;
        self.crypter = Crypter::new(&key);
        self.encrypt(false)
    }
}

fn version_older(a: &str, b: &str) -> bool {
    let parse = |s: &str| -> Vec<u64> {
        s.split(['.', '-'])
            .take(3)
            .map(|p| p.parse().unwrap_or(0))
            .collect()
    };
    parse(a) < parse(b)
}

/// An encrypted file read without decrypting values (for updatekeys and inspection).
#[derive(Debug)]
pub struct EncryptedFile {
    docs: Vec<Map>,
    metadata: Metadata,
    format: Format,
}

impl EncryptedFile {
    /// Parse an encrypted file.
    pub fn parse(data: &[u8], format: Format) -> Result<Self> {
        let (docs, metadata) = store::parse_encrypted(format, data)?;
        Ok(EncryptedFile {
            docs,
            metadata,
            format,
        })
    }

    /// The metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// `updatekeys`: rewrap the **same** data key for new recipient groups. Values, MAC
    /// and `lastmodified` stay untouched. Returns whether anything changed.
    pub fn update_keys(
        &mut self,
        groups: &[Vec<Recipient>],
        shamir_threshold: usize,
        identities: &Identities,
    ) -> Result<bool> {
        let current: Vec<Vec<&str>> = self
            .metadata
            .key_groups
            .iter()
            .map(|g| g.age.iter().map(|a| a.recipient.as_str()).collect())
            .collect();
        let wanted: Vec<Vec<&str>> = groups
            .iter()
            .map(|g| g.iter().map(Recipient::as_str).collect())
            .collect();
        let threshold = if groups.len() > 1 {
            if shamir_threshold == 0 {
                groups.len()
            } else {
                shamir_threshold
            }
        } else {
            0
        };
        let same = current.len() == wanted.len()
            && current
                .iter()
                .zip(&wanted)
                .all(|(a, b)| a.len() == b.len() && a.iter().all(|x| b.contains(x)))
            && (groups.len() < 2 || threshold == self.metadata.shamir_threshold);
        if same {
            return Ok(false);
        }
        let key = self.metadata.data_key(identities)?;
        let mut new_groups: Vec<KeyGroup> =
            if groups.len() == 1 && self.metadata.key_groups.len() == 1 {
                // keep the existing wrapping of recipients that stay
                let old = &self.metadata.key_groups[0];
                let age = groups[0]
                    .iter()
                    .map(
                        |r| match old.age.iter().find(|a| a.recipient == r.as_str()) {
                            Some(a) => Ok(a.clone()),
                            None => Ok(crate::metadata::AgeKey {
                                recipient: r.as_str().to_owned(),
                                enc: r.wrap(key.as_ref())?,
                            }),
                        },
                    )
                    .collect::<Result<Vec<_>>>()?;
                vec![KeyGroup {
                    age,
                    other: old.other.clone(),
                }]
            } else {
                Metadata::wrap_groups(&key, groups, threshold)?
            };
        if new_groups.iter().all(|g| g.age.is_empty()) {
            return Err(Error::NoRecipients);
        }
        self.metadata.key_groups = std::mem::take(&mut new_groups);
        self.metadata.shamir_threshold = threshold;
        Ok(true)
    }

    /// Emit the file.
    pub fn to_bytes(&self, store: &StoreOptions) -> Result<Vec<u8>> {
        store::emit_encrypted(self.format, &self.docs, &self.metadata, store)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum PathSeg {
    Key(String),
    Index(usize),
}

fn path_err(path: &str, reason: &str) -> Error {
    Error::Path {
        path: path.to_owned(),
        reason: reason.to_owned(),
    }
}

/// Parse `["a"][0]['b']`.
fn parse_path(path: &str) -> Result<Vec<PathSeg>> {
    let mut out = Vec::new();
    let b = path.trim();
    let mut rest = b;
    while !rest.is_empty() {
        let inner = rest
            .strip_prefix('[')
            .ok_or_else(|| path_err(path, "expected '[' (syntax: [\"key\"][0])"))?;
        if let Some(q) = inner.chars().next().filter(|c| *c == '"' || *c == '\'') {
            let body = &inner[1..];
            let end = body
                .find(q)
                .ok_or_else(|| path_err(path, "unterminated quoted key"))?;
            out.push(PathSeg::Key(body[..end].to_owned()));
            rest = body[end + 1..]
                .strip_prefix(']')
                .ok_or_else(|| path_err(path, "expected ']'"))?;
        } else {
            let end = inner
                .find(']')
                .ok_or_else(|| path_err(path, "expected ']'"))?;
            let n = inner[..end]
                .trim()
                .parse()
                .map_err(|_| path_err(path, "index must be a number or a quoted key"))?;
            out.push(PathSeg::Index(n));
            rest = &inner[end + 1..];
        }
    }
    if out.is_empty() {
        return Err(path_err(path, "empty path"));
    }
    Ok(out)
}

fn slot_mut<'a>(
    doc: &'a mut Map,
    segs: &[PathSeg],
    path: &str,
    create: bool,
) -> Result<&'a mut Value> {
    let (first, rest) = segs
        .split_first()
        .ok_or_else(|| path_err(path, "empty path"))?;
    let PathSeg::Key(k) = first else {
        return Err(path_err(
            path,
            "the top level is a mapping; start with a key",
        ));
    };
    if doc.get(k).is_none() {
        if !create {
            return Err(path_err(path, "component not found"));
        }
        doc.push(k.clone(), Value::Null);
    }
    let mut cur = doc
        .get_mut(k)
        .ok_or_else(|| path_err(path, "component not found"))?;
    for seg in rest {
        cur = match seg {
            PathSeg::Key(k) => {
                if !matches!(cur, Value::Map(_)) {
                    if create {
                        *cur = Value::Map(Map::new());
                    } else {
                        return Err(path_err(path, "not a mapping"));
                    }
                }
                let Value::Map(m) = cur else {
                    return Err(path_err(path, "not a mapping"));
                };
                if m.get(k).is_none() {
                    if !create {
                        return Err(path_err(path, "component not found"));
                    }
                    m.items.push(Item::Entry(k.clone(), Value::Null));
                }
                m.get_mut(k)
                    .ok_or_else(|| path_err(path, "component not found"))?
            }
            PathSeg::Index(i) => {
                if !matches!(cur, Value::Seq(_)) {
                    if create && matches!(cur, Value::Null) {
                        *cur = Value::Seq(Vec::new());
                    } else {
                        return Err(path_err(path, "not a list"));
                    }
                }
                let Value::Seq(s) = cur else {
                    return Err(path_err(path, "not a list"));
                };
                if *i == s.len() && create {
                    s.push(Value::Null);
                }
                s.get_mut(*i)
                    .ok_or_else(|| path_err(path, "index out of range"))?
            }
        };
    }
    Ok(cur)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(
            parse_path("[\"a\"][0]['b']").unwrap(),
            vec![
                PathSeg::Key("a".into()),
                PathSeg::Index(0),
                PathSeg::Key("b".into())
            ]
        );
        assert!(parse_path("a.b").is_err());
        assert!(version_older("3.7.1", "3.11.0"));
        assert!(!version_older("3.11.0", "3.11.0"));
    }
}
