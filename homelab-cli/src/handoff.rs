//! First-boot handoff: provisioning tokens, pure functions ([`mint`], [`verify`]).
//!
//! A token is `base64url(payload) "." base64url(HMAC-SHA256(key, base64url(payload)))`,
//! both parts without padding; the payload is compact JSON:
//! `{"v":1,"n":"<vm>","s":"<spec>","iat":<unix>,"exp":<unix>,"kid":"<key id>"}`.
//! The key lives in the SOPS secrets file; rotating it (a new key and key id) invalidates
//! every token minted before. See docs/handoff.md.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretBox};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The payload version this code mints and accepts.
pub const VERSION: u32 = 1;
/// The fewest key bytes accepted (HMAC-SHA256 wants at least its output size).
pub const MIN_KEY_LEN: usize = 32;
/// What stands in a vendor-data snippet for the token until it is uploaded.
pub const PLACEHOLDER: &str = "@@HOMELAB_HANDOFF_TOKEN@@";

/// The claims a token carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Format version (1).
    pub v: u32,
    /// The VM's name.
    pub n: String,
    /// The spec it may fetch (the VM's preset, or `default`).
    pub s: String,
    /// Issued at (Unix seconds).
    pub iat: u64,
    /// Expires at (Unix seconds).
    pub exp: u64,
    /// The id of the key that signed it.
    pub kid: String,
}

/// The signing key and its id.
pub struct SigningKey {
    /// Key id, carried in every token as `kid`.
    pub id: String,
    key: SecretBox<Vec<u8>>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("id", &self.id)
            .field("key", &"(sensitive)")
            .finish()
    }
}

impl Clone for SigningKey {
    fn clone(&self) -> Self {
        SigningKey {
            id: self.id.clone(),
            key: SecretBox::new(Box::new(self.key.expose_secret().clone())),
        }
    }
}

/// Why a key or token is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The key is too short.
    #[error("the handoff key has {0} bytes; at least {MIN_KEY_LEN} are needed")]
    ShortKey(usize),
    /// Not two base64url parts with a JSON payload.
    #[error("malformed token")]
    Malformed,
    /// The signature does not match (tampered, or signed with another key).
    #[error("bad signature")]
    BadSignature,
    /// A payload version this server does not know.
    #[error("unsupported token version {0}")]
    Version(u32),
    /// Signed with a key that is no longer current.
    #[error("key id \"{0}\" was rotated out")]
    RotatedOut(String),
    /// Past its expiry.
    #[error("token expired at {0}")]
    Expired(u64),
    /// Issued in the future (clock skew beyond tolerance).
    #[error("token issued in the future ({0})")]
    NotYetValid(u64),
    /// The token names another VM.
    #[error("token is for vm \"{token}\", not \"{asked}\"")]
    OtherVm {
        /// The VM in the token.
        token: String,
        /// The VM asked for.
        asked: String,
    },
}

impl Refusal {
    /// The HTTP status a server answers: 403 for a valid token asking for another VM's
    /// spec, 401 otherwise.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::OtherVm { .. } => 403,
            _ => 401,
        }
    }
}

impl SigningKey {
    /// A key from its secret bytes and id.
    pub fn new(id: impl Into<String>, key: Vec<u8>) -> Result<SigningKey, Refusal> {
        if key.len() < MIN_KEY_LEN {
            return Err(Refusal::ShortKey(key.len()));
        }
        Ok(SigningKey {
            id: id.into(),
            key: SecretBox::new(Box::new(key)),
        })
    }

    fn mac(&self) -> Result<Hmac<Sha256>, Refusal> {
        // HMAC takes keys of any length; the error cannot happen.
        <Hmac<Sha256> as Mac>::new_from_slice(self.key.expose_secret())
            .map_err(|_| Refusal::ShortKey(self.key.expose_secret().len()))
    }
}

/// Mint a token for `vm` (spec `spec`) valid for `ttl` seconds from `now`.
pub fn mint(
    key: &SigningKey,
    vm: &str,
    spec: &str,
    now: u64,
    ttl: u64,
) -> Result<secrecy::SecretString, Refusal> {
    let claims = Claims {
        v: VERSION,
        n: vm.to_string(),
        s: spec.to_string(),
        iat: now,
        exp: now.saturating_add(ttl),
        kid: key.id.clone(),
    };
    sign(key, &claims)
}

/// Sign arbitrary claims (tests build expired or foreign tokens with it).
pub fn sign(key: &SigningKey, claims: &Claims) -> Result<secrecy::SecretString, Refusal> {
    let json = serde_json::to_vec(claims).map_err(|_| Refusal::Malformed)?;
    let body = URL_SAFE_NO_PAD.encode(json);
    let mut mac = key.mac()?;
    mac.update(body.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    Ok(format!("{body}.{sig}").into())
}

/// Read the claims without checking anything (for log lines about refused tokens).
pub fn peek(token: &str) -> Option<Claims> {
    let (body, _) = token.split_once('.')?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).ok()?).ok()
}

/// Allowed clock skew for `iat` in the future.
pub const SKEW: u64 = 300;

/// Check a token presented for `vm` at `now` against the current key: key id, signature
/// (constant time), version, expiry, and that it names `vm`.
pub fn verify(key: &SigningKey, token: &str, vm: &str, now: u64) -> Result<Claims, Refusal> {
    let (body, sig) = token.trim().split_once('.').ok_or(Refusal::Malformed)?;
    let sig = URL_SAFE_NO_PAD
        .decode(sig)
        .map_err(|_| Refusal::Malformed)?;
    let claims: Claims = URL_SAFE_NO_PAD
        .decode(body)
        .ok()
        .and_then(|j| serde_json::from_slice(&j).ok())
        .ok_or(Refusal::Malformed)?;
    if claims.kid != key.id {
        return Err(Refusal::RotatedOut(claims.kid));
    }
    let mut mac = key.mac()?;
    mac.update(body.as_bytes());
    mac.verify_slice(&sig).map_err(|_| Refusal::BadSignature)?;
    if claims.v != VERSION {
        return Err(Refusal::Version(claims.v));
    }
    if now >= claims.exp {
        return Err(Refusal::Expired(claims.exp));
    }
    if claims.iat > now.saturating_add(SKEW) {
        return Err(Refusal::NotYetValid(claims.iat));
    }
    if claims.n != vm {
        return Err(Refusal::OtherVm {
            token: claims.n,
            asked: vm.to_string(),
        });
    }
    Ok(claims)
}

/// A token shown to people: its first characters and a mark.
pub fn mask(token: &str) -> String {
    let head: String = token.chars().take(6).collect();
    format!("{head}…(sensitive)")
}

/// Parse a lifetime: `90s`, `30m`, `24h`, `7d` (or plain seconds).
pub fn parse_ttl(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last()? {
        's' => (&s[..s.len() - 1], 1),
        'm' => (&s[..s.len() - 1], 60),
        'h' => (&s[..s.len() - 1], 3600),
        'd' => (&s[..s.len() - 1], 86_400),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|n| *n > 0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key(id: &str, byte: u8) -> SigningKey {
        SigningKey::new(id, vec![byte; 32]).unwrap()
    }

    #[test]
    fn a_minted_token_verifies_for_its_vm_only() {
        let k = key("k1", 7);
        let t = mint(&k, "dev1", "base", 1_000, 3_600).unwrap();
        let t = t.expose_secret();
        let c = verify(&k, t, "dev1", 1_100).unwrap();
        assert_eq!((c.n.as_str(), c.s.as_str(), c.v), ("dev1", "base", 1));
        assert_eq!((c.iat, c.exp, c.kid.as_str()), (1_000, 4_600, "k1"));
        let e = verify(&k, t, "dev2", 1_100).unwrap_err();
        assert_eq!(e.status(), 403);
        assert_eq!(e.to_string(), "token is for vm \"dev1\", not \"dev2\"");
        // The payload is plain base64url JSON with the documented fields.
        let p = peek(t).unwrap();
        assert_eq!(p, c);
        assert!(!t.contains('='));
    }

    #[test]
    fn refusals() {
        let k = key("k1", 7);
        let t = mint(&k, "dev1", "base", 1_000, 60).unwrap();
        let t = t.expose_secret().to_string();
        assert_eq!(
            verify(&k, &t, "dev1", 1_060).unwrap_err(),
            Refusal::Expired(1_060)
        );
        // Tampering with the payload (another VM name) breaks the signature.
        let (_, sig) = t.split_once('.').unwrap();
        let mut forged = peek(&t).unwrap();
        forged.n = "prod1".into();
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        assert_eq!(
            verify(&k, &format!("{body}.{sig}"), "prod1", 1_010).unwrap_err(),
            Refusal::BadSignature
        );
        // The same key id with another key (a leaked id is worth nothing).
        let other = key("k1", 8);
        assert_eq!(
            verify(&other, &t, "dev1", 1_010).unwrap_err(),
            Refusal::BadSignature
        );
        // Rotation: a new key id refuses tokens of the old one.
        let k2 = key("k2", 9);
        assert_eq!(
            verify(&k2, &t, "dev1", 1_010).unwrap_err(),
            Refusal::RotatedOut("k1".into())
        );
        for bad in ["", "abc", "a.b", "!!.??"] {
            assert_eq!(
                verify(&k, bad, "dev1", 1_010).unwrap_err(),
                Refusal::Malformed
            );
        }
        assert_eq!(
            SigningKey::new("k", vec![0; 16]).unwrap_err(),
            Refusal::ShortKey(16)
        );
    }

    #[test]
    fn masking_and_lifetimes() {
        let m = mask("eyJ2IjoxLCJuIjoiZGV2MSJ9.c2ln");
        assert_eq!(m, "eyJ2Ij…(sensitive)");
        assert_eq!(parse_ttl("24h"), Some(86_400));
        assert_eq!(parse_ttl("7d"), Some(604_800));
        assert_eq!(parse_ttl("90"), Some(90));
        assert_eq!(parse_ttl("0s"), None);
        assert_eq!(parse_ttl("soon"), None);
    }
}
