//! PVE's named string formats (pve-common `JSONSchema.pm`, pve-access-control, pve-storage):
//! the subset the served endpoints use. Unknown formats are accepted unchecked.

use std::net::IpAddr;
use std::sync::OnceLock;

use regex::Regex;

fn re(cell: &'static OnceLock<Option<Regex>>, pattern: &str, v: &str) -> bool {
    cell.get_or_init(|| Regex::new(pattern).ok())
        .as_ref()
        .is_some_and(|r| r.is_match(v))
}

macro_rules! matches_re {
    ($pat:expr, $v:expr) => {{
        static CELL: OnceLock<Option<Regex>> = OnceLock::new();
        re(&CELL, $pat, $v)
    }};
}

/// Check `value` against the named format. The error is the text after `invalid format - `.
pub fn check(format: &str, value: &str) -> Result<(), String> {
    match format {
        "pve-node" => ok(
            matches_re!(r"^(?i:[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?)$", value),
            "value does not look like a valid node name",
        ),
        "pve-node-list" => each(value, |v| check("pve-node", v)),
        "pve-vmid" => ok(
            matches_re!(r"^[1-9][0-9]{2,8}$", value),
            "value does not look like a valid VM ID",
        ),
        "pve-vmid-list" => each(value, |v| check("pve-vmid", v)),
        "pve-storage-id" => ok(
            matches_re!(r"^(?i:[a-z][a-z0-9\-_.]*[a-z0-9])$", value),
            &format!("storage ID '{value}' contains illegal characters"),
        ),
        "pve-storage-id-list" => each(value, |v| check("pve-storage-id", v)),
        // pve-common PVE/JSONSchema.pm: $CONFIGID_RE = qr/[a-z][a-z0-9_-]+/i.
        "pve-configid" => ok(
            matches_re!(r"^(?i:[a-z][a-z0-9_\-]+)$", value),
            &format!("invalid configuration ID '{value}'"),
        ),
        "pve-configid-list" => each(value, |v| check("pve-configid", v)),
        "dns-name" => ok(
            matches_re!(
                r"^(?i:(?:[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?)(?:\.(?:[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?))*)$",
                value
            ),
            "value does not look like a valid DNS name",
        ),
        "pve-tag-list" => {
            for tag in split_list(value) {
                if !matches_re!(r"^(?i:[a-z0-9_][a-z0-9_\-+.]*)$", tag) {
                    return Err(format!("invalid characters in tag '{tag}'"));
                }
            }
            Ok(())
        }
        "urlencoded" => ok(
            matches_re!(r"^[-%a-zA-Z0-9_.!~*'()]*$", value),
            &format!("invalid urlencoded string: {value}"),
        ),
        // pve-access-control, PVE/AccessControl.pm `verify_poolname`: up to three
        // `/`-separated levels (nested pools) of letters, digits, `.`, `-` and `_`.
        "pve-poolid" => ok(
            matches_re!(r"^[A-Za-z0-9.\-_]+(?:/[A-Za-z0-9.\-_]+){0,2}$", value),
            &format!("invalid pool ID '{value}'"),
        ),
        "mac-addr" => ok(
            matches_re!(r"^(?i:[a-f0-9][02468ace](?::[a-f0-9]{2}){5})$", value),
            "value does not look like a valid unicast MAC address",
        ),
        "ip" => ok(
            value.parse::<IpAddr>().is_ok(),
            "value does not look like a valid IP address",
        ),
        "ipv4" => ok(
            value.parse::<std::net::Ipv4Addr>().is_ok(),
            "value does not look like a valid IPv4 address",
        ),
        "ipv6" => ok(
            value.parse::<std::net::Ipv6Addr>().is_ok(),
            "value does not look like a valid IPv6 address",
        ),
        "CIDR" | "cidr" => ok(
            is_cidr(value),
            "value does not look like a valid CIDR network",
        ),
        "IPorCIDR" => ok(
            value.parse::<IpAddr>().is_ok() || is_cidr(value),
            "value does not look like a valid IP address or CIDR network",
        ),
        "address-list" | "ip-list" => each(value, |v| {
            ok(
                v.parse::<IpAddr>().is_ok(),
                "value does not look like a valid IP address",
            )
        }),
        "pve-userid" => ok(
            matches_re!(r"^[^\s:/]+@[A-Za-z][A-Za-z0-9\.\-_]+$", value) && value.len() <= 64,
            &format!("value '{value}' does not look like a valid user name"),
        ),
        "pve-realm" => ok(
            matches_re!(r"^[A-Za-z][A-Za-z0-9\.\-_]+$", value),
            &format!("value '{value}' does not look like a valid realm"),
        ),
        "pve-roleid" => ok(
            matches_re!(r"^[A-Za-z0-9\.\-_]+$", value),
            &format!("role name '{value}' contains invalid characters"),
        ),
        "pve-groupid" => ok(
            matches_re!(r"^[A-Za-z0-9\.\-_]+$", value),
            &format!("group name '{value}' contains invalid characters"),
        ),
        "pve-tokenid" => ok(
            matches_re!(r"^[A-Za-z][A-Za-z0-9\.\-_]+$", value),
            &format!("invalid token ID '{value}'"),
        ),
        "pve-storage-content" => ok(
            CONTENT.contains(&value),
            &format!("invalid content type '{value}'"),
        ),
        "pve-storage-content-list" => each(value, |v| check("pve-storage-content", v)),
        "pve-volume-id" => ok(
            matches_re!(r"^(?i:[a-z][a-z0-9\-_.]*[a-z0-9]):.+$", value),
            &format!("unable to parse volume ID '{value}'"),
        ),
        "pve-sdn-zone-id" => ok(
            matches_re!(r"^[a-z][a-z0-9]*[a-z0-9]$", value) && value.len() <= 8,
            &format!("zone ID '{value}' contains illegal characters"),
        ),
        "pve-sdn-vnet-id" => ok(
            matches_re!(r"^[a-z][a-z0-9]*[a-z0-9]$", value) && value.len() <= 8,
            &format!("vnet ID '{value}' contains illegal characters"),
        ),
        "pve-bridge-id" => ok(
            matches_re!(r"^[-_.\w\d]+$", value),
            &format!("invalid bridge ID '{value}'"),
        ),
        "pve-qm-hostpci" => {
            super::schema::parse_property_string("hostpci", hostpci_format(), value)
                .map(|_| ())
                .map_err(|e| e.trim_end().to_string())
        }
        // pve-container `verify_lxc_dev_string`: under /dev/, no `.`/`..` components.
        "pve-lxc-dev-string" => ok(
            value.starts_with("/dev/") && !matches_re!(r"/\.\.?(?:/|$)", value),
            &format!("{value} is not a valid device path"),
        ),
        _ => Ok(()),
    }
}

const CONTENT: &[&str] = &[
    "images", "rootdir", "vztmpl", "iso", "backup", "snippets", "import", "none",
];

fn ok(good: bool, msg: &str) -> Result<(), String> {
    if good { Ok(()) } else { Err(msg.to_string()) }
}

fn each(value: &str, f: impl Fn(&str) -> Result<(), String>) -> Result<(), String> {
    split_list(value).try_for_each(f)
}

/// Split a list the way pve-common `split_list` does: `;`, `,` or whitespace.
pub fn split_list(value: &str) -> impl Iterator<Item = &str> {
    value
        .split(|c: char| c == ';' || c == ',' || c.is_whitespace() || c == '\0')
        .filter(|s| !s.is_empty())
}

/// qemu-server `PCI.pm` `$hostpci_fmt` (the API viewer names it only by format name).
fn hostpci_format() -> &'static std::collections::BTreeMap<String, super::schema::ParamSchema> {
    static FMT: OnceLock<std::collections::BTreeMap<String, super::schema::ParamSchema>> =
        OnceLock::new();
    FMT.get_or_init(|| {
        let pci = r"(?:[a-f0-9]{4,}:)?[a-f0-9]{2}:[a-f0-9]{2}(?:\.[a-f0-9])?";
        let hex = r"0x[0-9a-fA-F]{4}";
        let b = serde_json::json!({"type": "boolean", "optional": 1});
        let id = serde_json::json!({"type": "string", "optional": 1, "pattern": hex});
        serde_json::from_value(serde_json::json!({
            "host": {"type": "string", "optional": 1, "default_key": 1,
                     "pattern": format!("{pci}(?:;{pci})*")},
            "mapping": {"type": "string", "optional": 1, "format": "pve-configid"},
            "pcie": b, "x-vga": b, "rombar": b, "legacy-igd": b,
            "romfile": {"type": "string", "optional": 1},
            "mdev": {"type": "string", "optional": 1, "format": "pve-configid"},
            "driver": {"type": "string", "optional": 1, "enum": ["vfio", "keep"]},
            "vendor-id": id, "device-id": id, "sub-vendor-id": id, "sub-device-id": id,
        }))
        .unwrap_or_default()
    })
}

fn is_cidr(v: &str) -> bool {
    let Some((ip, len)) = v.split_once('/') else {
        return false;
    };
    let Ok(len) = len.parse::<u8>() else {
        return false;
    };
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => len <= 32,
        Ok(IpAddr::V6(_)) => len <= 128,
        Err(_) => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert!(check("pve-node", "pve1").is_ok());
        assert_eq!(
            check("pve-node", "-bad").unwrap_err(),
            "value does not look like a valid node name"
        );
        assert!(check("urlencoded", "ssh-ed25519%20AAAA%2B").is_ok());
        assert!(check("urlencoded", "ssh-ed25519 AAAA").is_err());
        assert!(check("pve-qm-hostpci", "0000:01:00,pcie=1,x-vga=1").is_ok());
        assert!(check("pve-qm-hostpci", "01:00.0;02:00.0,rombar=0").is_ok());
        assert!(check("pve-qm-hostpci", "mapping=gpu,pcie=on").is_ok());
        assert!(check("pve-qm-hostpci", "mapping=GPU").is_ok());
        assert!(check("pve-qm-hostpci", "mapping=1gpu").is_err());
        assert!(check("pve-qm-hostpci", "0000:1:00.0").is_err());
        assert!(check("pve-qm-hostpci", "01:00.0,vga=1").is_err());
        assert!(check("pve-lxc-dev-string", "/dev/dri/renderD128").is_ok());
        assert!(check("pve-lxc-dev-string", "/dev/../etc/shadow").is_err());
        assert!(check("pve-tag-list", "a;b c,d").is_ok());
        assert!(check("pve-tag-list", "a;b$").is_err());
        assert!(check("mac-addr", "BC:24:11:00:00:01").is_ok());
        assert!(check("mac-addr", "BD:24:11:00:00:01").is_err());
        assert!(check("CIDR", "10.0.0.0/24").is_ok());
        assert!(check("pve-configid-list", "ide2,net1").is_ok());
        // pve-common JSONSchema.pm pve_verify_configid: two characters at least, a
        // letter first, digits anywhere after it, any case.
        assert!(check("pve-configid", "gpu-01-00").is_ok());
        assert!(check("pve-configid", "Rtx3090").is_ok());
        assert_eq!(
            check("pve-configid", "g").unwrap_err(),
            "invalid configuration ID 'g'"
        );
        assert!(check("pve-configid", "1gpu").is_err());
    }
}
