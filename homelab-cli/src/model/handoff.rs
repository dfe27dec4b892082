//! `handoff:` in homelab.yaml: the spec server's URL and the signing key (a secret), and
//! what a VM with `handoff: true` receives in its vendor-data snippet: an environment file
//! under `/etc/profile.d` and a root-only token file. The token itself is minted when the
//! snippet is uploaded (the snippet's name hashes the URL and key id, not the token, so a
//! plan stays stable; a new key id means new snippets, and new tokens). See docs/handoff.md.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::secrets::SecretValues;
use super::{ConfigError, Loaded};
use crate::handoff::{PLACEHOLDER, SigningKey, parse_ttl};

/// Where the token is written on the VM (root only).
pub const TOKEN_FILE: &str = "/etc/homelab/handoff.token";
/// The environment file every login shell reads.
pub const ENV_FILE: &str = "/etc/profile.d/homelab-handoff.sh";
/// Default token lifetime.
pub const DEFAULT_TTL: &str = "24h";

/// The first-boot handoff: a spec server and the key its tokens are signed with.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HandoffConfig {
    /// Base URL of the spec server (`homelab-cli handoff serve`) as the VMs reach it,
    /// e.g. `http://10.0.20.5:8787`.
    pub url: String,
    /// The HMAC-SHA256 signing key, at least 32 bytes. Must reference a secret.
    pub key: String,
    /// The key's id, carried in every token. Change it with the key to rotate: tokens of
    /// the old key are refused from then on.
    pub key_id: String,
    /// Token lifetime: `30m`, `24h` (default), `7d`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    /// Where `handoff serve` listens by default (default `0.0.0.0:8787`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
}

/// The resolved handoff settings (the key decrypted, in memory only).
#[derive(Debug, Clone, Serialize)]
pub struct DesiredHandoff {
    /// Spec server URL.
    pub url: String,
    /// Token lifetime in seconds.
    pub ttl: u64,
    /// Default listen address of `handoff serve`.
    pub listen: String,
    /// The signing key.
    #[serde(skip)]
    pub key: SigningKey,
    /// Per VM with `handoff: true`: its spec (what `handoff serve` hands out).
    pub specs: BTreeMap<String, VmSpec>,
}

/// What a VM fetches on first boot: its packages, files, users and commands.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VmSpec {
    /// VM name.
    pub name: String,
    /// Spec name in the token (`s`): the VM's preset, or `default`.
    pub spec: String,
    /// Packages to install.
    pub packages: Vec<String>,
    /// Files (`write_files` entries of its `user_data`).
    pub files: Vec<Value>,
    /// Users (the automation user and its SSH keys).
    pub users: Vec<Value>,
    /// Commands (`runcmd` entries of its `user_data`).
    pub commands: Vec<Value>,
}

/// Rules checked when loading.
pub(crate) fn validate(l: &Loaded) -> Vec<ConfigError> {
    let mut errs = Vec::new();
    let c = &l.config;
    let Some(h) = &c.handoff else {
        let wants = c.vms.as_ref().is_some_and(|v| {
            v.defaults.handoff == Some(true)
                || v.presets.values().any(|p| p.handoff == Some(true))
                || v.machines.iter().any(|m| m.handoff == Some(true))
        });
        if wants {
            errs.push(
                l.error_at(
                    "vms",
                    "a VM asks for `handoff`, but there is no top-level `handoff:`",
                )
                .with_help("add `handoff: {url: ..., key: ${secret:handoff.key}, key_id: k1}`"),
            );
        }
        return errs;
    };
    if !h.key.contains("${secret:") {
        errs.push(
            l.error_at("handoff.key", "the handoff key is written in plaintext")
                .with_help("move it into the SOPS file and write `${secret:handoff.key}`"),
        );
    }
    if !(h.url.starts_with("http://") || h.url.starts_with("https://")) {
        errs.push(l.error_at(
            "handoff.url",
            "the spec server URL must start with http:// or https://",
        ));
    }
    if h.key_id.is_empty()
        || !h
            .key_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        errs.push(l.error_at(
            "handoff.key_id",
            "a key id is letters, digits, `-`, `_` and `.`",
        ));
    }
    if let Some(t) = &h.ttl
        && parse_ttl(t).is_none()
    {
        errs.push(l.error_at(
            "handoff.ttl",
            format!("`{t}` is not a lifetime such as 30m, 24h or 7d"),
        ));
    }
    if let Some(a) = &h.listen
        && a.parse::<std::net::SocketAddr>().is_err()
    {
        errs.push(l.error_at("handoff.listen", format!("`{a}` is not an address:port")));
    }
    errs
}

/// The files a VM's vendor data gets (merged into its `user_data`): the environment file
/// and the root-only token file (holding [`PLACEHOLDER`] until upload).
pub fn write_files(url: &str, key_id: &str, vm: &str) -> Value {
    let spec_url = format!("{}/v1/vms/{vm}/spec", url.trim_end_matches('/'));
    json!([
        {
            "path": ENV_FILE,
            "permissions": "0644",
            "owner": "root:root",
            "content": format!(
                "# homelab first-boot handoff (key id {key_id})\nexport HOMELAB_SPEC_URL={spec_url}\nexport HOMELAB_HANDOFF_TOKEN_FILE={TOKEN_FILE}\n"
            ),
        },
        {
            "path": TOKEN_FILE,
            "permissions": "0600",
            "owner": "root:root",
            "content": format!("{PLACEHOLDER}\n"),
        },
    ])
}

/// Resolve `handoff:` (the key from the secrets) and the specs of VMs using it.
pub(crate) fn resolve(
    l: &Loaded,
    secrets: &SecretValues,
    errs: &mut Vec<ConfigError>,
) -> Option<DesiredHandoff> {
    use secrecy::ExposeSecret;
    let c = &l.config;
    let h = c.handoff.as_ref()?;
    let key = match secrets.substitute(&h.key) {
        Ok((k, _)) => k,
        Err(e) => {
            errs.push(l.error_at("handoff.key", e));
            return None;
        }
    };
    let key = match SigningKey::new(h.key_id.clone(), key.expose_secret().as_bytes().to_vec()) {
        Ok(k) => k,
        Err(e) => {
            errs.push(
                l.error_at("handoff.key", e.to_string())
                    .with_help("generate one: `head -c 32 /dev/urandom | base64`"),
            );
            return None;
        }
    };
    let mut specs = BTreeMap::new();
    if let Some(v) = &c.vms {
        for (i, vm) in v.machines.iter().enumerate() {
            let Some(s) = v.effective(i) else { continue };
            if s.handoff != Some(true) {
                continue;
            }
            let ud = s.user_data.clone().unwrap_or_default();
            let list = |k: &str| -> Vec<Value> {
                ud.get(k)
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            };
            let user = s.user.clone().unwrap_or_else(|| "homelab".into());
            specs.insert(
                vm.name.clone(),
                VmSpec {
                    name: vm.name.clone(),
                    spec: vm.preset.clone().unwrap_or_else(|| "default".into()),
                    packages: s.packages.clone().unwrap_or_default(),
                    files: list("write_files"),
                    users: vec![json!({
                        "name": user,
                        "ssh_authorized_keys": s.ssh_keys.clone().unwrap_or_default(),
                    })],
                    commands: list("runcmd"),
                },
            );
        }
    }
    Some(DesiredHandoff {
        url: h.url.clone(),
        ttl: h.ttl.as_deref().and_then(parse_ttl).unwrap_or(86_400),
        listen: h.listen.clone().unwrap_or_else(|| "0.0.0.0:8787".into()),
        key,
        specs,
    })
}

/// A snippet's content with its token: `PLACEHOLDER` replaced by a token minted now for
/// `vm` (what `up` uploads). Content without the placeholder is returned as is.
pub fn fill(
    h: Option<&DesiredHandoff>,
    vm: Option<&str>,
    content: &str,
    now: u64,
) -> Result<secrecy::SecretString, String> {
    use secrecy::ExposeSecret;
    if !content.contains(PLACEHOLDER) {
        return Ok(content.to_string().into());
    }
    let (Some(h), Some(vm)) = (h, vm) else {
        return Err("a snippet needs a handoff token, but no handoff key is configured".into());
    };
    let spec = h.specs.get(vm).map_or("default", |s| s.spec.as_str());
    let token = crate::handoff::mint(&h.key, vm, spec, now, h.ttl).map_err(|e| e.to_string())?;
    Ok(content.replace(PLACEHOLDER, token.expose_secret()).into())
}
