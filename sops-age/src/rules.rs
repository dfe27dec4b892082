//! Which values get encrypted: the six mutually exclusive selection rules of sops.

use regex::Regex;

use crate::error::{Error, Result};

/// The default `unencrypted_suffix`.
pub const DEFAULT_UNENCRYPTED_SUFFIX: &str = "_unencrypted";

/// One of sops' selection rules (at most one may be set per file).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SelectionRule {
    /// Leave a value in plaintext when any key of its path ends with this suffix.
    UnencryptedSuffix(String),
    /// Encrypt only values with a key in their path ending with this suffix.
    EncryptedSuffix(String),
    /// Leave a value in plaintext when any key of its path matches this regex.
    UnencryptedRegex(String),
    /// Encrypt only values with a key in their path matching this regex.
    EncryptedRegex(String),
    /// Leave values in plaintext when a preceding comment matches this regex.
    UnencryptedCommentRegex(String),
    /// Encrypt only values whose preceding comment matches this regex.
    EncryptedCommentRegex(String),
}

impl Default for SelectionRule {
    fn default() -> Self {
        SelectionRule::UnencryptedSuffix(DEFAULT_UNENCRYPTED_SUFFIX.to_owned())
    }
}

impl SelectionRule {
    /// The metadata key this rule is stored under.
    pub fn metadata_key(&self) -> &'static str {
        match self {
            SelectionRule::UnencryptedSuffix(_) => "unencrypted_suffix",
            SelectionRule::EncryptedSuffix(_) => "encrypted_suffix",
            SelectionRule::UnencryptedRegex(_) => "unencrypted_regex",
            SelectionRule::EncryptedRegex(_) => "encrypted_regex",
            SelectionRule::UnencryptedCommentRegex(_) => "unencrypted_comment_regex",
            SelectionRule::EncryptedCommentRegex(_) => "encrypted_comment_regex",
        }
    }

    /// The rule's suffix or regex text.
    pub fn value(&self) -> &str {
        match self {
            SelectionRule::UnencryptedSuffix(s)
            | SelectionRule::EncryptedSuffix(s)
            | SelectionRule::UnencryptedRegex(s)
            | SelectionRule::EncryptedRegex(s)
            | SelectionRule::UnencryptedCommentRegex(s)
            | SelectionRule::EncryptedCommentRegex(s) => s,
        }
    }

    /// Build a rule from its metadata key and value.
    pub fn from_key(key: &str, value: String) -> Option<Self> {
        Some(match key {
            "unencrypted_suffix" => SelectionRule::UnencryptedSuffix(value),
            "encrypted_suffix" => SelectionRule::EncryptedSuffix(value),
            "unencrypted_regex" => SelectionRule::UnencryptedRegex(value),
            "encrypted_regex" => SelectionRule::EncryptedRegex(value),
            "unencrypted_comment_regex" => SelectionRule::UnencryptedCommentRegex(value),
            "encrypted_comment_regex" => SelectionRule::EncryptedCommentRegex(value),
            _ => return None,
        })
    }

    /// All metadata keys of selection rules, in sops' emission order.
    pub const KEYS: [&'static str; 6] = [
        "unencrypted_suffix",
        "encrypted_suffix",
        "unencrypted_regex",
        "encrypted_regex",
        "unencrypted_comment_regex",
        "encrypted_comment_regex",
    ];
}

/// Compiled selection rule plus `mac_only_encrypted`.
#[derive(Debug, Clone)]
pub(crate) struct Rules {
    rule: SelectionRule,
    regex: Option<Regex>,
    pub(crate) mac_only_encrypted: bool,
}

impl Rules {
    pub(crate) fn new(rule: &SelectionRule, mac_only_encrypted: bool) -> Result<Self> {
        let regex = match rule {
            SelectionRule::UnencryptedRegex(r)
            | SelectionRule::EncryptedRegex(r)
            | SelectionRule::UnencryptedCommentRegex(r)
            | SelectionRule::EncryptedCommentRegex(r) => Some(Regex::new(r).map_err(|e| {
                Error::InvalidMetadata(format!("{}: invalid regex {r:?}: {e}", rule.metadata_key()))
            })?),
            _ => None,
        };
        Ok(Rules {
            rule: rule.clone(),
            regex,
            mac_only_encrypted,
        })
    }

    /// Whether one key of a path matches the path-based rule.
    pub(crate) fn component_matches(&self, key: &str) -> bool {
        match &self.rule {
            SelectionRule::UnencryptedSuffix(s) | SelectionRule::EncryptedSuffix(s) => {
                !s.is_empty() && key.ends_with(s.as_str())
            }
            SelectionRule::UnencryptedRegex(_) | SelectionRule::EncryptedRegex(_) => {
                self.regex.as_ref().is_some_and(|r| r.is_match(key))
            }
            _ => false,
        }
    }

    pub(crate) fn uses_comments(&self) -> bool {
        matches!(
            self.rule,
            SelectionRule::UnencryptedCommentRegex(_) | SelectionRule::EncryptedCommentRegex(_)
        )
    }

    pub(crate) fn unencrypted_comment_matches(&self, text: &str) -> bool {
        matches!(self.rule, SelectionRule::UnencryptedCommentRegex(_))
            && self.regex.as_ref().is_some_and(|r| r.is_match(text))
    }

    /// `any_component` says whether a key on the path matched [`Self::component_matches`].
    pub(crate) fn should_encrypt(
        &self,
        any_component: bool,
        comments: &[Vec<String>],
        is_comment: bool,
    ) -> bool {
        let stack_matches = || {
            self.regex.as_ref().is_some_and(|r| {
                comments
                    .iter()
                    .flat_map(|level| level.iter())
                    .any(|c| r.is_match(c))
            })
        };
        match &self.rule {
            SelectionRule::UnencryptedSuffix(_) | SelectionRule::UnencryptedRegex(_) => {
                !any_component
            }
            SelectionRule::EncryptedSuffix(_) | SelectionRule::EncryptedRegex(_) => any_component,
            SelectionRule::UnencryptedCommentRegex(_) => !stack_matches(),
            SelectionRule::EncryptedCommentRegex(_) => !is_comment && stack_matches(),
        }
    }
}
