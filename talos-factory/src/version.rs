//! Talos versions as the factory names them (`v1.12.0`).

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

use crate::Error;

/// A Talos version: `v<major>.<minor>.<patch>[-<pre>]`. Displayed with the leading `v`,
/// as in factory paths and installer tags.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TalosVersion {
    /// Major.
    pub major: u64,
    /// Minor.
    pub minor: u64,
    /// Patch.
    pub patch: u64,
    /// Pre-release (`alpha.1`, `beta.0`...), if any.
    pub pre: Option<String>,
}

impl TalosVersion {
    /// A release version.
    pub fn new(major: u64, minor: u64, patch: u64) -> TalosVersion {
        TalosVersion {
            major,
            minor,
            patch,
            pre: None,
        }
    }

    /// Whether the factory offers per-platform installers (`<platform>-installer/<id>`):
    /// Talos 1.10.0 and later (`quirks.SupportsUnifiedInstaller`). Pre-releases of 1.10.0
    /// count as older, as in semver.
    pub fn supports_platform_installer(&self) -> bool {
        *self >= TalosVersion::new(1, 10, 0)
    }
}

impl Ord for TalosVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| match (&self.pre, &other.pre) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(a), Some(b)) => cmp_pre(a, b),
            })
    }
}

impl PartialOrd for TalosVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Semver pre-release precedence: numeric identifiers compare as numbers.
fn cmp_pre(a: &str, b: &str) -> Ordering {
    let mut ai = a.split('.');
    let mut bi = b.split('.');
    loop {
        match (ai.next(), bi.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let o = match (x.parse::<u64>(), y.parse::<u64>()) {
                    (Ok(m), Ok(n)) => m.cmp(&n),
                    (Ok(_), Err(_)) => Ordering::Less,
                    (Err(_), Ok(_)) => Ordering::Greater,
                    (Err(_), Err(_)) => x.cmp(y),
                };
                if o != Ordering::Equal {
                    return o;
                }
            }
        }
    }
}

impl fmt::Display for TalosVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}.{}.{}", self.major, self.minor, self.patch)?;
        if let Some(pre) = &self.pre {
            write!(f, "-{pre}")?;
        }
        Ok(())
    }
}

impl FromStr for TalosVersion {
    type Err = Error;
    /// Accepts `v1.12.0`, `1.12.0` and pre-releases such as `v1.13.0-beta.1`.
    fn from_str(s: &str) -> Result<Self, Error> {
        let invalid = || Error::Invalid {
            what: "Talos version",
            value: s.to_owned(),
            expected: "v<major>.<minor>.<patch>[-<pre-release>], e.g. v1.12.0",
        };
        let body = s.strip_prefix('v').unwrap_or(s);
        let (core, pre) = match body.split_once('-') {
            Some((c, p)) => (c, Some(p)),
            None => (body, None),
        };
        if let Some(p) = pre
            && (p.is_empty()
                || !p
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'))
        {
            return Err(invalid());
        }
        let mut parts = core.split('.');
        let mut num = || -> Result<u64, Error> {
            let p = parts.next().ok_or_else(invalid)?;
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid());
            }
            p.parse().map_err(|_| invalid())
        };
        let (major, minor, patch) = (num()?, num()?, num()?);
        if parts.next().is_some() {
            return Err(invalid());
        }
        Ok(TalosVersion {
            major,
            minor,
            patch,
            pre: pre.map(str::to_owned),
        })
    }
}

impl Serialize for TalosVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TalosVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_orders() {
        let v: TalosVersion = "1.12.0".parse().unwrap();
        assert_eq!(v.to_string(), "v1.12.0");
        let beta: TalosVersion = "v1.12.0-beta.1".parse().unwrap();
        assert!(beta < v);
        assert!("v1.12.0-beta.2".parse::<TalosVersion>().unwrap() > beta);
        assert!(
            "v1.12.0-beta.10".parse::<TalosVersion>().unwrap() > "v1.12.0-beta.9".parse().unwrap()
        );
        assert!("v1.9.5".parse::<TalosVersion>().unwrap() < "v1.10.0".parse().unwrap());
        for bad in [
            "",
            "v1",
            "v1.2",
            "1.2.3.4",
            "v1.x.0",
            "v1.2.3-",
            "v1.2.3-a b",
        ] {
            assert!(bad.parse::<TalosVersion>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn platform_installer_from_1_10() {
        assert!(
            !"v1.9.6"
                .parse::<TalosVersion>()
                .unwrap()
                .supports_platform_installer()
        );
        assert!(
            !"v1.10.0-alpha.2"
                .parse::<TalosVersion>()
                .unwrap()
                .supports_platform_installer()
        );
        assert!(
            "v1.10.0"
                .parse::<TalosVersion>()
                .unwrap()
                .supports_platform_installer()
        );
        assert!(
            "v1.12.11"
                .parse::<TalosVersion>()
                .unwrap()
                .supports_platform_installer()
        );
    }
}
