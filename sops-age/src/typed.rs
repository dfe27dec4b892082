//! Typed API: decrypt straight into a `serde` type, encrypt a `serde` value.

use serde::Serialize;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::file::{Decrypted, Docs, EncryptOptions, encrypt_docs_new};
use crate::keys::Identities;
use crate::store::{Format, json};
use crate::value::Value;

/// Guess the format of an encrypted file from its content.
fn sniff(data: &[u8]) -> Format {
    let first = data.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'{') {
        return Format::Json;
    }
    let text = String::from_utf8_lossy(&data[..data.len().min(1 << 20)]);
    if text.lines().any(|l| l.trim() == "[sops]") {
        Format::Ini
    } else if text
        .lines()
        .any(|l| l.starts_with("sops_") && l.contains('='))
        && !text.contains("\nsops:")
    {
        Format::Dotenv
    } else {
        Format::Yaml
    }
}

/// Decrypt a sops file (format detected from its content) into `T`. The intermediate
/// plaintext buffer is zeroized.
///
/// ```
/// # use sops_age::{EncryptOptions, Format, Identities, Recipient};
/// # let mut ids = Identities::new();
/// # let r = Recipient::parse(&ids.generate())?;
/// # let file = sops_age::encrypt(b"{\"token\": \"abc\"}", Format::Json, &EncryptOptions::new(vec![r]))?;
/// #[derive(serde::Deserialize)]
/// struct S { token: String }
/// let s: S = sops_age::from_slice(&file, &ids)?;
/// assert_eq!(s.token, "abc");
/// # Ok::<(), sops_age::Error>(())
/// ```
pub fn from_slice<T: DeserializeOwned>(data: &[u8], identities: &Identities) -> Result<T> {
    from_slice_with_format(data, sniff(data), identities)
}

/// [`from_slice`] with an explicit format.
pub fn from_slice_with_format<T: DeserializeOwned>(
    data: &[u8],
    format: Format,
    identities: &Identities,
) -> Result<T> {
    let d = Decrypted::open(data, format, identities)?;
    let doc = d
        .documents()
        .first()
        .ok_or_else(|| Error::Unsupported("the file has no document".into()))?;
    let mut buf = Zeroizing::new(String::with_capacity(4096));
    json::emit_map(&mut buf, doc, "", 0);
    serde_json::from_str(&buf).map_err(|e| Error::Serde(e.to_string()))
}

/// Encrypt a serializable value (which must serialize to a map) into a sops file.
pub fn to_vec<T: Serialize + ?Sized>(
    value: &T,
    format: Format,
    opts: &EncryptOptions,
) -> Result<Vec<u8>> {
    let mut buf = Zeroizing::new(Vec::with_capacity(4096));
    serde_json::to_writer(&mut *buf, value).map_err(|e| Error::Serde(e.to_string()))?;
    let map = json::parse(&buf)?;
    let mut docs = Docs(vec![map]);
    encrypt_docs_new(&mut docs.0, format, opts)
}

/// Parse one JSON value (as `sops set` takes it).
pub fn parse_json_value(text: &str) -> Result<Value> {
    json::parse_value(text.as_bytes())
}
