//! AES-256-GCM value encryption (`ENC[AES256_GCM,...]`), the IV stash and the tree walk
//! that encrypts/decrypts values and computes the MAC.

use std::collections::HashMap;

use aes_gcm::aead::consts::{U12, U16, U32};
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::aes::Aes256;
use aes_gcm::{AesGcm, Nonce, Tag};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rand::RngCore;
use sha2::{Digest, Sha512};
use zeroize::{Zeroize, Zeroizing};

use crate::error::{Error, Result};
use crate::rules::Rules;
use crate::value::{Item, Map, Value, go_float_plain, go_parse_bool, go_parse_float};

type Gcm32 = AesGcm<Aes256, U32>;

/// The fixed prefix hashed first when `mac_only_encrypted` is set: SHA-256 of `sops`.
pub(crate) const MAC_ONLY_ENCRYPTED_INIT: [u8; 32] = [
    0x8a, 0x3f, 0xd2, 0xad, 0x54, 0xce, 0x66, 0x52, 0x7b, 0x10, 0x34, 0xf3, 0xd1, 0x47, 0xbe, 0x0b,
    0x0b, 0x97, 0x5b, 0x3b, 0xf4, 0x4f, 0x72, 0xc6, 0xfd, 0xad, 0xec, 0x81, 0x76, 0xf2, 0x7d, 0x69,
];

/// The parts of an `ENC[...]` string.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct EncParts<'a> {
    pub data: &'a str,
    pub iv: &'a str,
    pub tag: &'a str,
    pub ty: &'a str,
}

/// Parse `ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]` like sops' (start-anchored, greedy) regex.
pub(crate) fn parse_enc(s: &str) -> Option<EncParts<'_>> {
    let rest = s.strip_prefix("ENC[AES256_GCM,data:")?;
    // Fast path: base64 fields and type names hold no commas, so the usual value splits
    // into exactly four parts; anything else takes the regex-equivalent path below.
    if let Some(body) = rest.strip_suffix(']') {
        let mut it = body.splitn(4, ',');
        if let (Some(data), Some(iv), Some(tag), Some(ty)) =
            (it.next(), it.next(), it.next(), it.next())
            && let (Some(iv), Some(tag), Some(ty)) = (
                iv.strip_prefix("iv:"),
                tag.strip_prefix("tag:"),
                ty.strip_prefix("type:"),
            )
            && !data.is_empty()
            && !iv.is_empty()
            && !tag.is_empty()
            && !ty.is_empty()
            && !ty.contains([',', ']'])
        {
            return Some(EncParts { data, iv, tag, ty });
        }
    }
    let close = rest.rfind(']')?;
    let rest = &rest[..close];
    let type_at = rest.rfind(",type:")?;
    let ty = &rest[type_at + 6..];
    let rest = &rest[..type_at];
    let tag_at = rest.rfind(",tag:")?;
    let tag = &rest[tag_at + 5..];
    let rest = &rest[..tag_at];
    let iv_at = rest.rfind(",iv:")?;
    let iv = &rest[iv_at + 4..];
    let data = &rest[..iv_at];
    if data.is_empty() || iv.is_empty() || tag.is_empty() || ty.is_empty() {
        return None;
    }
    Some(EncParts { data, iv, tag, ty })
}

/// Whether a string looks like a sops-encrypted value.
pub(crate) fn is_enc(s: &str) -> bool {
    parse_enc(s).is_some()
}

/// Remembers the IV used for each (AAD, type, plaintext) seen while decrypting, so that
/// re-encrypting an unchanged value yields the same ciphertext.
#[derive(Default)]
pub(crate) struct Stash {
    map: HashMap<Vec<u8>, Vec<u8>>,
}

impl std::fmt::Debug for Stash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stash")
            .field("entries", &self.map.len())
            .finish()
    }
}

fn stash_key(aad: &str, ty: &str, plaintext: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(aad.len() + ty.len() + plaintext.len() + 2);
    k.extend_from_slice(aad.as_bytes());
    k.push(0);
    k.extend_from_slice(ty.as_bytes());
    k.push(0);
    k.extend_from_slice(plaintext);
    k
}

impl Drop for Stash {
    fn drop(&mut self) {
        for (mut k, _) in self.map.drain() {
            k.zeroize();
        }
    }
}

/// Encrypts and decrypts single values with one data key.
pub(crate) struct Crypter {
    key: Zeroizing<[u8; 32]>,
    cipher: Gcm32,
    pub(crate) stash: Stash,
    /// Whether [`Self::decrypt`] records IVs for later re-encryption.
    pub(crate) keep_ivs: bool,
    rng: rand::rngs::ThreadRng,
}

impl std::fmt::Debug for Crypter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Crypter").finish_non_exhaustive()
    }
}

impl Crypter {
    pub(crate) fn new(key: &[u8; 32]) -> Self {
        Crypter {
            key: Zeroizing::new(*key),
            cipher: Gcm32::new(key.into()),
            stash: Stash::default(),
            keep_ivs: true,
            rng: rand::thread_rng(),
        }
    }

    /// Encrypt one value; reuses the stashed IV when this exact value was decrypted before.
    pub(crate) fn encrypt(&mut self, plaintext: &[u8], ty: &str, aad: &str) -> String {
        let mut iv = [0u8; 32];
        let stashed = if self.stash.map.is_empty() {
            None
        } else {
            let k = Zeroizing::new(stash_key(aad, ty, plaintext));
            self.stash.map.get(k.as_slice()).cloned()
        };
        let mut buf = Zeroizing::new(plaintext.to_vec());
        let tag = match stashed {
            Some(ref prev) if prev.len() != 32 => {
                // IVs of other lengths came from old files; use them with a matching cipher.
                match gcm_encrypt_any(&self.key, prev, aad.as_bytes(), &mut buf) {
                    Some(t) => t,
                    None => {
                        self.rng.fill_bytes(&mut iv);
                        self.seal(&iv, aad, &mut buf)
                    }
                }
            }
            Some(ref prev) => {
                iv.copy_from_slice(prev);
                self.seal(&iv, aad, &mut buf)
            }
            None => {
                self.rng.fill_bytes(&mut iv);
                self.seal(&iv, aad, &mut buf)
            }
        };
        let iv_bytes: &[u8] = match stashed {
            Some(ref prev) if prev.len() != 32 => prev,
            _ => &iv,
        };
        let mut out = String::with_capacity(
            40 + buf.len().div_ceil(3) * 4 + iv_bytes.len().div_ceil(3) * 4 + 24 + ty.len(),
        );
        out.push_str("ENC[AES256_GCM,data:");
        B64.encode_string(buf.as_slice(), &mut out);
        out.push_str(",iv:");
        B64.encode_string(iv_bytes, &mut out);
        out.push_str(",tag:");
        B64.encode_string(tag, &mut out);
        out.push_str(",type:");
        out.push_str(ty);
        out.push(']');
        out
    }

    fn seal(&self, iv: &[u8; 32], aad: &str, buf: &mut Zeroizing<Vec<u8>>) -> [u8; 16] {
        match self.cipher.encrypt_in_place_detached(
            Nonce::<U32>::from_slice(iv),
            aad.as_bytes(),
            buf.as_mut_slice(),
        ) {
            Ok(tag) => tag.into(),
            // Only fails for inputs beyond GCM's 64 GiB limit, which no document reaches.
            Err(_) => [0u8; 16],
        }
    }

    /// Decrypt one `ENC[...]` string. Returns the plaintext and its type name, and stashes
    /// the IV for re-encryption.
    pub(crate) fn decrypt(
        &mut self,
        enc: &str,
        aad: &str,
        path: &str,
    ) -> Result<(Zeroizing<Vec<u8>>, String)> {
        let malformed = || Error::MalformedEnc {
            path: path.to_owned(),
            value: enc.chars().take(60).collect(),
        };
        let parts = parse_enc(enc).ok_or_else(malformed)?;
        let mut buf = Zeroizing::new(B64.decode(parts.data).map_err(|_| malformed())?);
        // IV and tag are small: decode them on the stack (any IV length up to 64 bytes).
        let mut iv_buf = [0u8; 66];
        let iv_len = B64
            .decode_slice(parts.iv, &mut iv_buf)
            .map_err(|_| malformed())?;
        let iv = &iv_buf[..iv_len.min(64)];
        let mut tag_buf = [0u8; 18];
        let tag_len = B64
            .decode_slice(parts.tag, &mut tag_buf)
            .map_err(|_| malformed())?;
        let tag = &tag_buf[..tag_len];
        if tag.len() != 16 || iv.is_empty() || iv_len > 64 {
            return Err(malformed());
        }
        match parts.ty {
            "str" | "int" | "float" | "bytes" | "bool" | "time" | "comment" => {}
            other => {
                return Err(Error::MalformedEnc {
                    path: path.to_owned(),
                    value: format!("Unknown datatype {other}"),
                });
            }
        }
        let tag = Tag::clone_from_slice(tag);
        let ok = if iv.len() == 32 {
            self.cipher
                .decrypt_in_place_detached(
                    Nonce::<U32>::from_slice(iv),
                    aad.as_bytes(),
                    buf.as_mut_slice(),
                    &tag,
                )
                .is_ok()
        } else {
            gcm_decrypt_any(&self.key, iv, aad.as_bytes(), &mut buf, &tag).ok_or_else(malformed)?
        };
        if !ok {
            return Err(Error::WrongKey {
                path: path.to_owned(),
            });
        }
        if self.keep_ivs {
            self.stash
                .map
                .insert(stash_key(aad, parts.ty, &buf), iv.to_vec());
        }
        Ok((buf, parts.ty.to_owned()))
    }
}

fn gcm_encrypt_any(key: &[u8; 32], iv: &[u8], aad: &[u8], buf: &mut [u8]) -> Option<[u8; 16]> {
    macro_rules! with {
        ($n:ty) => {
            AesGcm::<Aes256, $n>::new(key.into())
                .encrypt_in_place_detached(Nonce::<$n>::from_slice(iv), aad, buf)
                .ok()
                .map(Into::into)
        };
    }
    match iv.len() {
        12 => with!(U12),
        16 => with!(U16),
        _ => None,
    }
}

fn gcm_decrypt_any(
    key: &[u8; 32],
    iv: &[u8],
    aad: &[u8],
    buf: &mut [u8],
    tag: &Tag,
) -> Option<bool> {
    macro_rules! with {
        ($n:ty) => {
            Some(
                AesGcm::<Aes256, $n>::new(key.into())
                    .decrypt_in_place_detached(Nonce::<$n>::from_slice(iv), aad, buf, tag)
                    .is_ok(),
            )
        };
    }
    match iv.len() {
        12 => with!(U12),
        16 => with!(U16),
        32 => with!(U32),
        _ => None,
    }
}

/// The sops type name and plaintext bytes of a leaf (`ToBytes`). `None` for null and
/// containers.
pub(crate) fn to_bytes(v: &Value) -> Option<(std::borrow::Cow<'_, [u8]>, &'static str)> {
    use std::borrow::Cow;
    Some(match v {
        Value::String(s) => (Cow::Borrowed(s.as_bytes()), "str"),
        Value::Bytes(b) => (Cow::Borrowed(b.as_slice()), "str"),
        Value::Int(i) => (Cow::Owned(i.to_string().into_bytes()), "int"),
        Value::Float(f) => (Cow::Owned(go_float_plain(*f).into_bytes()), "float"),
        Value::Bool(b) => (
            Cow::Borrowed(if *b { &b"True"[..] } else { &b"False"[..] }),
            "bool",
        ),
        Value::Time(t) => (Cow::Borrowed(t.as_bytes()), "time"),
        Value::Comment(c) => (Cow::Borrowed(c.as_bytes()), "comment"),
        Value::Null | Value::Map(_) | Value::Seq(_) => return None,
    })
}

/// Turn decrypted bytes of a given type back into a value.
pub(crate) fn from_bytes(mut bytes: Zeroizing<Vec<u8>>, ty: &str, path: &str) -> Result<Value> {
    let bad = |what: &str| Error::MalformedEnc {
        path: path.to_owned(),
        value: format!("decrypted value is not a valid {what}"),
    };
    let text = || std::str::from_utf8(&bytes).map_err(|_| bad(ty));
    Ok(match ty {
        // move the buffer into the value (no copy left behind to zeroize)
        "str" => match String::from_utf8(std::mem::take(&mut *bytes)) {
            Ok(s) => Value::String(s),
            Err(e) => Value::Bytes(e.into_bytes()),
        },
        "bytes" => Value::Bytes(bytes.to_vec()),
        "comment" => Value::Comment(text()?.to_owned()),
        "int" => Value::Int(text()?.parse().map_err(|_| bad("int"))?),
        "float" => Value::Float(go_parse_float(text()?).ok_or_else(|| bad("float"))?),
        "bool" => Value::Bool(go_parse_bool(text()?).ok_or_else(|| bad("bool"))?),
        "time" => {
            let t = text()?;
            Value::Time(crate::value::parse_timestamp(t).ok_or_else(|| bad("time"))?)
        }
        other => return Err(bad(other)),
    })
}

/// Walk state: the key path as an AAD string plus which components matched the rules.
struct Walk<'r> {
    rules: &'r Rules,
    aad: String,
    /// Lengths of `aad` before each component was pushed.
    marks: Vec<usize>,
    /// For each depth, whether any component up to there matched the rule.
    matched: Vec<bool>,
    hasher: Sha512,
    /// Comment stack (comments directly before the current item at each level).
    comments: Vec<Vec<String>>,
}

impl<'r> Walk<'r> {
    fn new(rules: &'r Rules) -> Self {
        let mut hasher = Sha512::new();
        if rules.mac_only_encrypted {
            hasher.update(MAC_ONLY_ENCRYPTED_INIT);
        }
        Walk {
            rules,
            aad: String::with_capacity(128),
            marks: Vec::new(),
            matched: vec![false],
            hasher,
            comments: vec![Vec::new()],
        }
    }

    fn push(&mut self, key: &str) {
        self.marks.push(self.aad.len());
        self.aad.push_str(key);
        self.aad.push(':');
        let parent = self.matched.last().copied().unwrap_or(false);
        self.matched
            .push(parent || self.rules.component_matches(key));
    }

    fn pop(&mut self) {
        if let Some(m) = self.marks.pop() {
            self.aad.truncate(m);
        }
        self.matched.pop();
    }

    fn aad(&self) -> &str {
        if self.aad.is_empty() { ":" } else { &self.aad }
    }

    fn path(&self) -> String {
        if self.aad.is_empty() {
            "the top level".to_owned()
        } else {
            self.aad.clone()
        }
    }

    fn should_encrypt(&self, is_comment: bool) -> bool {
        let any = self.matched.last().copied().unwrap_or(false);
        self.rules.should_encrypt(any, &self.comments, is_comment)
    }

    fn note_comment(&mut self, text: &str) {
        if self.rules.uses_comments()
            && let Some(level) = self.comments.last_mut()
        {
            level.push(text.to_owned());
        }
    }

    fn clear_comments(&mut self) {
        if self.rules.uses_comments()
            && let Some(level) = self.comments.last_mut()
        {
            level.clear();
        }
    }

    fn enter_level(&mut self) {
        if self.rules.uses_comments() {
            self.comments.push(Vec::new());
        }
    }

    fn leave_level(&mut self) {
        if self.rules.uses_comments() {
            self.comments.pop();
        }
    }

    fn finish(self) -> String {
        hex::encode_upper(self.hasher.finalize())
    }
}

/// Encrypt every value of the documents that the rules select; returns the MAC (uppercase hex).
pub(crate) fn encrypt_docs(
    docs: &mut [Map],
    rules: &Rules,
    crypter: &mut Crypter,
) -> Result<String> {
    let mut walk = Walk::new(rules);
    for doc in docs.iter_mut() {
        encrypt_map(doc, &mut walk, crypter)?;
    }
    Ok(walk.finish())
}

fn encrypt_map(map: &mut Map, walk: &mut Walk<'_>, crypter: &mut Crypter) -> Result<()> {
    walk.enter_level();
    for item in map.items.iter_mut() {
        match item {
            Item::Comment(text) => {
                let enc =
                    walk.should_encrypt(true) && !walk.rules.unencrypted_comment_matches(text);
                if enc && !text.is_empty() {
                    let e = crypter.encrypt(text.as_bytes(), "comment", walk.aad());
                    walk.note_comment(text);
                    let mut old = std::mem::replace(text, e);
                    old.zeroize();
                } else {
                    walk.note_comment(text);
                }
            }
            Item::Entry(key, value) => {
                walk.push(key);
                encrypt_value(value, walk, crypter)?;
                walk.pop();
                walk.clear_comments();
            }
        }
    }
    walk.leave_level();
    Ok(())
}

fn encrypt_value(value: &mut Value, walk: &mut Walk<'_>, crypter: &mut Crypter) -> Result<()> {
    match value {
        Value::Null => Ok(()),
        Value::Map(m) => encrypt_map(m, walk, crypter),
        Value::Seq(items) => {
            walk.enter_level();
            for v in items.iter_mut() {
                let is_comment = matches!(v, Value::Comment(_));
                encrypt_value(v, walk, crypter)?;
                if !is_comment {
                    walk.clear_comments();
                }
            }
            walk.leave_level();
            Ok(())
        }
        leaf => {
            let is_comment = matches!(leaf, Value::Comment(_));
            let enc = walk.should_encrypt(is_comment)
                && !matches!(&*leaf, Value::Comment(c) if walk.rules.unencrypted_comment_matches(c));
            let Some((bytes, ty)) = to_bytes(leaf) else {
                return Ok(());
            };
            if !is_comment && (enc || !walk.rules.mac_only_encrypted) {
                walk.hasher.update(&bytes);
            }
            if is_comment && let Value::Comment(c) = &*leaf {
                walk.note_comment(c);
            }
            if enc && !bytes.is_empty() {
                let e = crypter.encrypt(&bytes, ty, walk.aad());
                drop(bytes);
                let mut old = std::mem::replace(
                    leaf,
                    if is_comment {
                        Value::Comment(e)
                    } else {
                        Value::String(e)
                    },
                );
                old.zeroize();
            }
            Ok(())
        }
    }
}

/// Decrypt every selected value in place; returns the MAC computed over the plaintext.
pub(crate) fn decrypt_docs(
    docs: &mut [Map],
    rules: &Rules,
    crypter: &mut Crypter,
) -> Result<String> {
    let mut walk = Walk::new(rules);
    for doc in docs.iter_mut() {
        decrypt_map(doc, &mut walk, crypter)?;
    }
    Ok(walk.finish())
}

fn decrypt_map(map: &mut Map, walk: &mut Walk<'_>, crypter: &mut Crypter) -> Result<()> {
    walk.enter_level();
    for item in map.items.iter_mut() {
        match item {
            Item::Comment(text) => {
                if walk.should_encrypt(true) && is_enc(text) {
                    match crypter.decrypt(text, walk.aad(), &walk.path()) {
                        Ok((plain, _)) => {
                            *text = String::from_utf8_lossy(&plain).into_owned();
                        }
                        Err(e) => {
                            // sops keeps undecryptable comments (old files) as they are.
                            tracing::warn!(path = %walk.path(), error = %e, "could not decrypt comment; keeping it");
                        }
                    }
                }
                walk.note_comment(text);
            }
            Item::Entry(key, value) => {
                walk.push(key);
                decrypt_value(value, walk, crypter)?;
                walk.pop();
                walk.clear_comments();
            }
        }
    }
    walk.leave_level();
    Ok(())
}

fn decrypt_value(value: &mut Value, walk: &mut Walk<'_>, crypter: &mut Crypter) -> Result<()> {
    match value {
        Value::Null => Ok(()),
        Value::Map(m) => decrypt_map(m, walk, crypter),
        Value::Seq(items) => {
            walk.enter_level();
            for v in items.iter_mut() {
                decrypt_value(v, walk, crypter)?;
                if !matches!(v, Value::Comment(_)) {
                    walk.clear_comments();
                }
            }
            walk.leave_level();
            Ok(())
        }
        leaf => {
            let is_comment = matches!(leaf, Value::Comment(_));
            let enc = walk.should_encrypt(is_comment);
            if enc {
                match leaf {
                    Value::String(s) if s.is_empty() => {}
                    Value::String(s) | Value::Comment(s) => {
                        if is_comment && !is_enc(s) {
                            // a plaintext comment in an encrypted position: keep it
                        } else {
                            let (plain, ty) = crypter.decrypt(s, walk.aad(), &walk.path())?;
                            // the replaced ciphertext is not secret: no need to zeroize it
                            *leaf = from_bytes(plain, &ty, &walk.path())?;
                        }
                    }
                    other => {
                        let shown = match other {
                            Value::Int(i) => i.to_string(),
                            Value::Float(f) => go_float_plain(*f),
                            Value::Bool(b) => b.to_string(),
                            _ => "a non-string value".to_owned(),
                        };
                        return Err(Error::MalformedEnc {
                            path: walk.path(),
                            value: shown,
                        });
                    }
                }
            }
            if let Value::Comment(c) = &*leaf {
                walk.note_comment(c);
                return Ok(());
            }
            if (enc || !walk.rules.mac_only_encrypted)
                && let Some((bytes, _)) = to_bytes(leaf)
            {
                walk.hasher.update(&bytes);
            }
            Ok(())
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn enc_grammar_is_the_greedy_sops_regex() {
        let p = parse_enc("ENC[AES256_GCM,data:QQ==,iv:SVY=,tag:VEFH,type:str]").unwrap();
        assert_eq!((p.data, p.iv, p.tag, p.ty), ("QQ==", "SVY=", "VEFH", "str"));
        // commas inside a field fall back to the greedy, start-anchored regex semantics
        let p = parse_enc("ENC[AES256_GCM,data:a,b,iv:c,tag:d,type:str]").unwrap();
        assert_eq!((p.data, p.iv), ("a,b", "c"));
        let p = parse_enc("ENC[AES256_GCM,data:a,iv:c,tag:d,type:str]x]").unwrap();
        assert_eq!(p.ty, "str]x");
        assert!(parse_enc("ENC[AES256_GCM,data:,iv:c,tag:d,type:str]").is_none());
        assert!(parse_enc("not encrypted").is_none());
    }

    #[test]
    fn mac_only_prefix_is_sha256_of_sops() {
        use sha2::Sha256;
        let d = Sha256::digest(b"sops");
        assert_eq!(d.as_slice(), &MAC_ONLY_ENCRYPTED_INIT);
    }

    #[test]
    fn enc_round_trip_and_stash() {
        let key = [7u8; 32];
        let mut c = Crypter::new(&key);
        let e = c.encrypt(b"hello", "str", "a:b:");
        assert!(e.starts_with("ENC[AES256_GCM,data:"));
        let p = parse_enc(&e).unwrap();
        assert_eq!(p.ty, "str");
        assert_eq!(p.iv.len(), 44);
        let (plain, ty) = c.decrypt(&e, "a:b:", "a:b:").unwrap();
        assert_eq!(plain.as_slice(), b"hello");
        assert_eq!(ty, "str");
        // same plaintext+aad after decrypt -> identical ciphertext
        assert_eq!(c.encrypt(b"hello", "str", "a:b:"), e);
        // wrong aad fails authentication
        assert!(matches!(
            c.decrypt(&e, "a:c:", "x"),
            Err(Error::WrongKey { .. })
        ));
        assert!(matches!(
            c.decrypt("ENC[AES256_GCM,data:xx]", "a:", "x"),
            Err(Error::MalformedEnc { .. })
        ));
    }
}
