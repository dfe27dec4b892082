//! The SOPS file format with age keys, interoperable with `sops` 3.11 in both directions.
//!
//! Files written here decrypt with `sops decrypt` and files written by `sops encrypt`
//! decrypt here: YAML (comments, multiple documents, key order), JSON, dotenv, INI and
//! binary; AES-256-GCM values bound to their key path, the SHA-512 MAC (also
//! `mac_only_encrypted`), age X25519 and SSH recipients, Shamir key groups, and IV reuse
//! so that editing a file only changes the values that changed.
//!
//! # Quick start
//!
//! ```
//! use sops_age::{EncryptOptions, Format, Identities, Recipient};
//!
//! #[derive(serde::Deserialize, serde::Serialize)]
//! struct Secrets {
//!     api_token: String,
//!     port: u16,
//! }
//!
//! let mut identities = Identities::new();
//! let recipient = Recipient::parse(&identities.generate())?;
//! let opts = EncryptOptions::new(vec![recipient]);
//!
//! // Encrypt a serde value straight into a sops YAML file...
//! let file = sops_age::to_vec(&Secrets { api_token: "s3cr3t".into(), port: 8006 }, Format::Yaml, &opts)?;
//! // ...and decrypt it into the type without the plaintext touching disk.
//! let back: Secrets = sops_age::from_slice(&file, &identities)?;
//! assert_eq!(back.api_token, "s3cr3t");
//! assert_eq!(back.port, 8006);
//! # Ok::<(), sops_age::Error>(())
//! ```
//!
//! Identities normally come from the environment exactly as sops finds them:
//! [`Identities::from_env`] (`SOPS_AGE_KEY`, `SOPS_AGE_KEY_FILE`, `SOPS_AGE_KEY_CMD`,
//! `SOPS_AGE_SSH_PRIVATE_KEY_FILE`, `~/.config/sops/age/keys.txt`, `~/.ssh/id_ed25519`).

pub mod agefile;
mod cipher;
pub mod config;
mod error;
mod file;
mod keys;
mod metadata;
pub mod resolve;
mod rules;
mod shamir;
mod store;
mod typed;
mod value;

pub use error::{Error, Result};
pub use file::{
    DecryptOptions, Decrypted, EncryptOptions, EncryptedFile, decrypt, encrypt, file_status,
};
pub use keys::{Identities, Recipient, recipients_from_env};
pub use metadata::{AgeKey, KeyGroup, Metadata, SOPS_VERSION};
pub use resolve::{ConfigSource, Resolve, Source, encrypt_options_for};
pub use rules::{DEFAULT_UNENCRYPTED_SUFFIX, SelectionRule};
pub use store::{Format, StoreOptions};
pub use typed::{from_slice, from_slice_with_format, parse_json_value, to_vec};
pub use value::{Item, Map, Value};

/// Parse a plaintext document of `format` into its documents (one, except for
/// multi-document YAML), keeping comments and key order.
///
/// ```
/// let docs = sops_age::parse_plaintext(sops_age::Format::Yaml, b"# hi\na: 1\n")?;
/// assert_eq!(docs[0].get("a"), Some(&sops_age::Value::Int(1)));
/// # Ok::<(), sops_age::Error>(())
/// ```
pub fn parse_plaintext(format: Format, data: &[u8]) -> Result<Vec<Map>> {
    store::parse_plain(format, data)
}

/// Write documents as plaintext of `format` (the inverse of [`parse_plaintext`]).
pub fn emit_plaintext(format: Format, docs: &[Map], opts: &StoreOptions) -> Result<Vec<u8>> {
    store::emit_plain(format, docs, opts)
}

/// Fuzzing entry points: run each parser on arbitrary bytes (never panics).
#[doc(hidden)]
pub mod fuzz {
    use crate::store::{self, Format};

    /// Parse `data` as plaintext of `format`, emit it again, and parse the emission.
    pub fn plain_round_trip(format: Format, data: &[u8]) {
        if let Ok(docs) = store::parse_plain(format, data)
            && let Ok(out) = store::emit_plain(format, &docs, &store::StoreOptions::default())
        {
            let _ = store::parse_plain(format, &out);
        }
    }

    /// When the YAML fast path takes `data`, it must give what the general parser gives.
    ///
    /// # Panics
    /// When they differ (that is the bug the fuzzer looks for).
    pub fn yaml_fast_path(data: &[u8]) {
        if let Ok(text) = std::str::from_utf8(data)
            && let Some(fast) = store::yaml_fast::parse(text)
        {
            match store::yaml::parse_general(text.as_bytes()) {
                // compared as debug text: a NaN value never equals itself
                Ok(general) => assert!(
                    format!("{fast:?}") == format!("{general:?}"),
                    "fast path differs on {text:?}"
                ),
                Err(e) => panic!("fast path took {text:?}, the general parser says {e}"),
            }
        }
    }

    /// Parse `data` as an encrypted file of `format`.
    pub fn encrypted(format: Format, data: &[u8]) {
        let _ = store::parse_encrypted(format, data);
    }
}
