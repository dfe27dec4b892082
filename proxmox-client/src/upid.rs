//! Task identifiers (UPIDs).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// A parsed UPID: `UPID:<node>:<pid>:<pstart>:<starttime>:<type>:<id>:<user>:`.
///
/// ```
/// let upid: proxmox_client::Upid =
///     "UPID:tango:0003C2FF:00829204:6738AA7F:qmcreate:100:root@pam!terraform:".parse()?;
/// assert_eq!(upid.node, "tango");
/// assert_eq!(upid.task_type, "qmcreate");
/// assert_eq!(upid.id, "100");
/// assert_eq!(upid.user, "root@pam!terraform");
/// assert_eq!(upid.starttime, 0x6738AA7F);
/// # Ok::<(), proxmox_client::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Upid {
    /// Node the task runs on.
    pub node: String,
    /// Worker process id.
    pub pid: u32,
    /// Process start time (clock ticks since boot).
    pub pstart: u64,
    /// Task start (Unix epoch seconds).
    pub starttime: u64,
    /// Task type, e.g. `qmcreate`.
    pub task_type: String,
    /// Task object id (often the VMID), may be empty.
    pub id: String,
    /// The user (`user@realm` or `user@realm!token`).
    pub user: String,
    raw: String,
}

impl Upid {
    /// The UPID text exactly as the server sent it.
    pub fn as_str(&self) -> &str {
        &self.raw
    }
}

fn valid_node(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
}

fn hex_field(s: &str, min: usize, max: usize) -> Option<u64> {
    if s.len() < min || s.len() > max || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

fn plain(s: &str) -> bool {
    !s.contains(|c: char| c == '/' || c == ':' || c.is_whitespace())
}

impl FromStr for Upid {
    type Err = Error;

    fn from_str(s: &str) -> Result<Upid> {
        let bad = |why: &str| Error::invalid("UPID", format!("'{s}': {why}"));
        let rest = s
            .strip_prefix("UPID:")
            .ok_or_else(|| bad("missing 'UPID:' prefix"))?;
        let rest = rest
            .strip_suffix(':')
            .ok_or_else(|| bad("missing trailing ':'"))?;
        let parts: Vec<&str> = rest.split(':').collect();
        if parts.len() != 7 {
            return Err(bad("expected 8 ':'-separated fields"));
        }
        if !valid_node(parts[0]) {
            return Err(bad("invalid node name"));
        }
        let pid = hex_field(parts[1], 8, 8).ok_or_else(|| bad("pid is not 8 hex digits"))?;
        let pstart =
            hex_field(parts[2], 8, 9).ok_or_else(|| bad("pstart is not 8-9 hex digits"))?;
        let starttime =
            hex_field(parts[3], 8, 8).ok_or_else(|| bad("starttime is not 8 hex digits"))?;
        if parts[4].is_empty() || !plain(parts[4]) {
            return Err(bad("invalid task type"));
        }
        if !plain(parts[5]) {
            return Err(bad("invalid task id"));
        }
        if parts[6].is_empty() || !plain(parts[6]) {
            return Err(bad("invalid user"));
        }
        Ok(Upid {
            node: parts[0].to_string(),
            pid: u32::try_from(pid).map_err(|_| bad("pid out of range"))?,
            pstart,
            starttime,
            task_type: parts[4].to_string(),
            id: parts[5].to_string(),
            user: parts[6].to_string(),
            raw: s.to_string(),
        })
    }
}

impl fmt::Display for Upid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl Serialize for Upid {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.raw)
    }
}

impl<'de> Deserialize<'de> for Upid {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_round_trips() {
        let s = "UPID:pve1:00001234:0ABCDEF12:6738AA7F:download:talos.iso:root@pam:";
        let u: Upid = s.parse().unwrap();
        assert_eq!(u.pid, 0x1234);
        assert_eq!(u.pstart, 0x0ABCDEF12);
        assert_eq!(u.to_string(), s);
        let empty_id: Upid = "UPID:pve:00000001:00000002:00000003:srvreload::root@pam:"
            .parse()
            .unwrap();
        assert_eq!(empty_id.id, "");
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "UPID:pve:1:2:3:qmstart:100:root@pam:",
            "UPID:pve:00000001:00000002:00000003:qmstart:100:root@pam",
            "UPID:-pve:00000001:00000002:00000003:qmstart:100:root@pam:",
            "UPID:pve:00000001:00000002:00000003:qm start:100:root@pam:",
            "UPID:pve:00000001:00000002:00000003:qmstart:100::",
            "XPID:pve:00000001:00000002:00000003:qmstart:100:root@pam:",
        ] {
            assert!(bad.parse::<Upid>().is_err(), "{bad}");
        }
    }
}
