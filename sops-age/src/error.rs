//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong reading, decrypting, encrypting or writing a SOPS file.
///
/// Each variant says what happened and, in its message, what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// None of the loaded identities could unwrap the data key of any key group entry.
    #[error(
        "no identity could decrypt the data key (file recipients: {recipients}); load the matching \
         age or SSH identity via SOPS_AGE_KEY, SOPS_AGE_KEY_FILE, SOPS_AGE_KEY_CMD or \
         SOPS_AGE_SSH_PRIVATE_KEY_FILE{details}"
    )]
    NoMatchingKey {
        /// The recipients listed in the file, comma separated.
        recipients: String,
        /// Extra detail: identity load errors gathered on the way.
        details: String,
    },
    /// No identity at all was available for decryption.
    #[error(
        "no age identities found: set SOPS_AGE_KEY, SOPS_AGE_KEY_FILE or SOPS_AGE_KEY_CMD, or put \
         your key in ~/.config/sops/age/keys.txt{details}"
    )]
    NoIdentities {
        /// Identity load errors gathered on the way.
        details: String,
    },
    /// A value failed to authenticate with the data key: the key is wrong or the value
    /// was tampered with or moved to another path.
    #[error(
        "cannot decrypt the value at {path}: the data key is wrong or the value was altered \
         (authentication failed)"
    )]
    WrongKey {
        /// Key path of the value (`a:b:`).
        path: String,
    },
    /// The MAC over the values does not match: the file was tampered with.
    #[error(
        "MAC mismatch. File has {file}, computed {computed}: the file was modified outside sops; \
         restore it from git, or re-encrypt it from a trusted plaintext"
    )]
    MacMismatch {
        /// The MAC stored in the file (or `no MAC`).
        file: String,
        /// The MAC computed over the decrypted values.
        computed: String,
    },
    /// A value in an encrypted position does not follow `ENC[AES256_GCM,...]`.
    #[error(
        "Input string {value:?} at {path} does not match sops' data format: expected \
         ENC[AES256_GCM,data:...,iv:...,tag:...,type:...]; was the file edited by hand?"
    )]
    MalformedEnc {
        /// Key path of the value.
        path: String,
        /// The offending text (truncated).
        value: String,
    },
    /// The file has no `sops` metadata.
    #[error(
        "sops metadata not found: the file is not encrypted with sops (encrypt it first, or check \
         --input-type)"
    )]
    MissingMetadata,
    /// The metadata exists but is invalid.
    #[error("invalid sops metadata: {0}")]
    InvalidMetadata(String),
    /// The input to encrypt already carries sops metadata.
    #[error(
        "File already encrypted: it already has sops metadata; decrypt it first or use rotate/updatekeys"
    )]
    AlreadyEncrypted,
    /// The document could not be parsed.
    #[error("cannot parse {format} at line {line}, column {column}: {message}")]
    Parse {
        /// Format name.
        format: &'static str,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What went wrong.
        message: String,
    },
    /// The document is valid in its format but cannot be represented (e.g. a top-level list).
    #[error("unsupported document: {0}")]
    Unsupported(String),
    /// A recipient string could not be parsed.
    #[error("invalid age recipient {recipient:?}: {reason}")]
    InvalidRecipient {
        /// The recipient string.
        recipient: String,
        /// Why.
        reason: String,
    },
    /// An identity source could not be parsed.
    #[error("invalid identity in {source_name}: {reason}")]
    InvalidIdentity {
        /// Where it came from (env var name or path).
        source_name: String,
        /// Why.
        reason: String,
    },
    /// age failed while wrapping the data key.
    #[error("age encryption failed: {0}")]
    Age(String),
    /// A whole age file (`agefile`) could not be read or decrypted.
    #[error("age file: {0}")]
    AgeFile(String),
    /// No recipients were given for encryption.
    #[error(
        "no recipients: pass --age, set SOPS_AGE_RECIPIENTS, or add a creation rule to .sops.yaml"
    )]
    NoRecipients,
    /// `.sops.yaml` problems.
    #[error("config {path}: {message}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// No creation rule matched the file.
    #[error("error loading config: no matching creation rules found for {0}")]
    NoMatchingRule(String),
    /// A path given to extract/set/unset does not exist or is malformed.
    #[error("path {path}: {reason}")]
    Path {
        /// The path expression.
        path: String,
        /// Why it failed.
        reason: String,
    },
    /// I/O failure.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// (De)serialising a typed value failed.
    #[error("serde: {0}")]
    Serde(String),
    /// A Shamir share set could not be combined.
    #[error("key groups: {0}")]
    Shamir(String),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
