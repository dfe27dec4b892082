//! Proxmox SDN (`sdn:` in homelab.yaml): zones, vnets and subnets, the rules checked when
//! loading, and their resolution into the text options Proxmox stores under
//! `/cluster/sdn/*`.
//!
//! Ownership: a vnet carries the owner marker as the last word of its `alias` (Proxmox
//! has no comment on SDN objects); its subnets are ours with it. A zone is ours when it is
//! declared, or when every vnet in it is ours. See docs/sdn.md.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::desired::owner_marker;
use super::{ConfigError, Loaded};

/// Longest zone id Proxmox accepts (`pve-sdn-zone-id`: letters and digits, 8 at most).
pub const MAX_ZONE_ID: usize = 8;
/// Longest vnet id Proxmox accepts (`pve-sdn-vnet-id`).
pub const MAX_VNET_ID: usize = 8;
/// Longest vnet alias Proxmox accepts.
pub const MAX_ALIAS: usize = 256;

/// The SDN configuration of the cluster. Declaring `sdn:` (even empty) makes `up`
/// reconcile it: objects this homelab owns and no longer declares are removed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sdn {
    /// Zones by id (letters and digits, at most 8 characters).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub zones: BTreeMap<String, Zone>,
    /// Vnets by id (letters and digits, at most 8 characters). A guest's `bridge` may name
    /// one.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vnets: BTreeMap<String, Vnet>,
}

/// A zone type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ZoneType {
    /// An isolated bridge on each node; subnets may have SNAT and DHCP (dnsmasq).
    Simple,
    /// VLANs on an existing VLAN-aware bridge (`bridge`); vnets need a `tag` (1-4094).
    Vlan,
    /// A layer-2 overlay over UDP between the `peers`; vnets need a `tag` (the VNI).
    Vxlan,
    /// VXLAN with a BGP-EVPN control plane (`controller`, `vrf_vxlan`).
    Evpn,
}

impl ZoneType {
    /// As Proxmox writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            ZoneType::Simple => "simple",
            ZoneType::Vlan => "vlan",
            ZoneType::Vxlan => "vxlan",
            ZoneType::Evpn => "evpn",
        }
    }
}

/// An SDN zone.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Zone {
    /// `simple`, `vlan`, `vxlan` or `evpn`.
    #[serde(rename = "type")]
    pub kind: ZoneType,
    /// vxlan: the nodes' addresses the overlay runs between.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<String>,
    /// vlan: the VLAN-aware bridge, e.g. `vmbr0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<String>,
    /// MTU of the vnets (vxlan needs 50 bytes less than the underlay, e.g. 1450).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Restrict the zone to these nodes (default: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
    /// simple: serve DHCP on the subnets' `dhcp_ranges` (dnsmasq).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dhcp: Option<bool>,
    /// evpn: the EVPN controller id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<String>,
    /// evpn: the VRF VXLAN id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vrf_vxlan: Option<u32>,
}

/// A vnet: a bridge guests attach to.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Vnet {
    /// The zone (a key of `sdn.zones`).
    pub zone: String,
    /// VLAN tag (vlan zones, 1-4094) or VXLAN VNI (vxlan/evpn zones, 1-16777215).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<u32>,
    /// A description shown in Proxmox (the ownership marker is appended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// Let guests use VLAN tags on this vnet (no subnets then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan_aware: Option<bool>,
    /// IP subnets on this vnet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subnets: Vec<Subnet>,
}

/// An IP subnet of a vnet.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Subnet {
    /// The network, e.g. `10.10.0.0/24`.
    pub cidr: String,
    /// The gateway address, inside the subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Masquerade traffic leaving the subnet (simple and evpn zones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snat: Option<bool>,
    /// DHCP ranges (simple zones with `dhcp: true`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dhcp_ranges: Vec<DhcpRange>,
}

/// A DHCP range inside a subnet.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DhcpRange {
    /// First address.
    pub start: String,
    /// Last address.
    pub end: String,
}

/// The kind of an SDN object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SdnKind {
    /// A zone.
    Zone,
    /// A vnet.
    Vnet,
    /// A subnet.
    Subnet,
}

impl SdnKind {
    /// `zone`, `vnet`, `subnet`.
    pub fn as_str(self) -> &'static str {
        match self {
            SdnKind::Zone => "zone",
            SdnKind::Vnet => "vnet",
            SdnKind::Subnet => "subnet",
        }
    }
}

/// One resolved SDN object: the options Proxmox should hold, as text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DesiredSdnObject {
    /// Zone, vnet or subnet.
    pub kind: SdnKind,
    /// Its id (a subnet's is `zone-10.0.0.0-24`).
    pub id: String,
    /// A subnet's vnet.
    pub vnet: Option<String>,
    /// A subnet's CIDR.
    pub cidr: Option<String>,
    /// Options (`type`, `peers`, `tag`, `alias`, `gateway`, `dhcp-range`, ...).
    pub options: BTreeMap<String, String>,
}

/// The resolved SDN configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DesiredSdn {
    /// Zones, then vnets, then subnets.
    pub objects: Vec<DesiredSdnObject>,
}

impl DesiredSdn {
    /// The declared vnet ids.
    pub fn vnets(&self) -> BTreeSet<&str> {
        self.objects
            .iter()
            .filter(|o| o.kind == SdnKind::Vnet)
            .map(|o| o.id.as_str())
            .collect()
    }
}

/// The alias a vnet gets: the user's text, then the owner marker as its last word.
pub fn alias_with_marker(alias: Option<&str>, lab: &str) -> String {
    match alias.map(str::trim).filter(|a| !a.is_empty()) {
        Some(a) => format!("{a} {}", owner_marker(lab)),
        None => owner_marker(lab),
    }
}

/// Whether a vnet alias carries our owner marker as its last word.
pub fn alias_owned(alias: &str, lab: &str) -> bool {
    alias.split_whitespace().last() == Some(owner_marker(lab).as_str())
}

fn is_sdn_id(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes().all(|b| b.is_ascii_alphanumeric())
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
}

/// A parsed CIDR.
pub fn parse_cidr(cidr: &str) -> Option<(IpAddr, u8)> {
    let (a, l) = cidr.split_once('/')?;
    let a: IpAddr = a.parse().ok()?;
    let l: u8 = l.parse().ok()?;
    let max = if a.is_ipv4() { 32 } else { 128 };
    (l <= max).then_some((a, l))
}

/// Whether `ip` lies in the network `net`.
pub fn in_subnet(net: (IpAddr, u8), ip: IpAddr) -> bool {
    let (a, l) = net;
    match (a, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) => {
            let m = if l == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(l))
            };
            u32::from(n) & m == u32::from(i) & m
        }
        (IpAddr::V6(n), IpAddr::V6(i)) => {
            let m = if l == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(l))
            };
            u128::from(n) & m == u128::from(i) & m
        }
        _ => false,
    }
}

/// The rules checked when loading (no secrets involved).
pub(crate) fn validate(l: &Loaded) -> Vec<ConfigError> {
    let mut errs = Vec::new();
    let Some(sdn) = &l.config.sdn else {
        return errs;
    };
    for (id, z) in &sdn.zones {
        let p = format!("sdn.zones.{id}");
        if !is_sdn_id(id, MAX_ZONE_ID) {
            errs.push(l.error_at(
                &p,
                format!("zone id `{id}` must be a letter then letters or digits, at most {MAX_ZONE_ID} characters"),
            ));
        }
        match z.kind {
            ZoneType::Vxlan if z.peers.is_empty() => {
                errs.push(l.error_at(&p, "a vxlan zone needs `peers` (the nodes' addresses)"))
            }
            ZoneType::Vlan if z.bridge.is_none() => errs.push(l.error_at(
                &p,
                "a vlan zone needs `bridge` (a VLAN-aware bridge such as vmbr0)",
            )),
            ZoneType::Evpn if z.controller.is_none() || z.vrf_vxlan.is_none() => {
                errs.push(l.error_at(&p, "an evpn zone needs `controller` and `vrf_vxlan`"))
            }
            _ => {}
        }
        for (j, peer) in z.peers.iter().enumerate() {
            if peer.parse::<IpAddr>().is_err() {
                errs.push(l.error_at(
                    &format!("{p}.peers[{j}]"),
                    format!("`{peer}` is not an IP address"),
                ));
            }
        }
        if z.kind != ZoneType::Vxlan && !z.peers.is_empty() {
            errs.push(l.error_at(&format!("{p}.peers"), "only vxlan zones have peers"));
        }
        if z.dhcp == Some(true) && z.kind != ZoneType::Simple {
            errs.push(l.error_at(
                &format!("{p}.dhcp"),
                "Proxmox serves DHCP (dnsmasq) only in simple zones",
            ));
        }
    }
    let mut tags: BTreeMap<(String, u32), String> = BTreeMap::new();
    for (id, v) in &sdn.vnets {
        let p = format!("sdn.vnets.{id}");
        if !is_sdn_id(id, MAX_VNET_ID) {
            errs.push(l.error_at(
                &p,
                format!("vnet id `{id}` must be a letter then letters or digits, at most {MAX_VNET_ID} characters"),
            ));
        }
        let Some(zone) = sdn.zones.get(&v.zone) else {
            errs.push(
                l.error_at(
                    &format!("{p}.zone"),
                    format!("no zone `{}` in sdn.zones", v.zone),
                )
                .with_help(format!(
                    "declared zones: {}",
                    sdn.zones.keys().cloned().collect::<Vec<_>>().join(", ")
                )),
            );
            continue;
        };
        match (zone.kind, v.tag) {
            (ZoneType::Simple, Some(_)) => {
                errs.push(l.error_at(&format!("{p}.tag"), "vnets of a simple zone have no tag"))
            }
            (ZoneType::Vlan, None) | (ZoneType::Vxlan | ZoneType::Evpn, None) => {
                errs.push(l.error_at(
                    &p,
                    format!(
                        "a vnet in {} zone `{}` needs a `tag`",
                        zone.kind.as_str(),
                        v.zone
                    ),
                ))
            }
            (ZoneType::Vlan, Some(t)) if !(1..=4094).contains(&t) => {
                errs.push(l.error_at(&format!("{p}.tag"), "a VLAN tag is 1 to 4094"))
            }
            (ZoneType::Vxlan | ZoneType::Evpn, Some(t)) if !(1..=16_777_215).contains(&t) => {
                errs.push(l.error_at(&format!("{p}.tag"), "a VXLAN VNI is 1 to 16777215"))
            }
            _ => {}
        }
        if let Some(t) = v.tag {
            // VNIs are unique across vxlan/evpn zones, VLAN tags within a zone.
            let scope = match zone.kind {
                ZoneType::Vxlan | ZoneType::Evpn => "vxlan".to_string(),
                _ => v.zone.clone(),
            };
            if let Some(other) = tags.insert((scope, t), id.clone()) {
                errs.push(l.error_at(
                    &format!("{p}.tag"),
                    format!("tag {t} is already used by vnet `{other}`"),
                ));
            }
        }
        if let Some(a) = &v.alias
            && (a.len() + 40 > MAX_ALIAS
                || !a
                    .chars()
                    .all(|c| c.is_alphanumeric() || " ()-_.".contains(c)))
        {
            errs.push(l.error_at(
                &format!("{p}.alias"),
                "an alias is letters, digits, spaces and ()-_. , at most 216 characters",
            ));
        }
        if v.vlan_aware == Some(true) && !v.subnets.is_empty() {
            errs.push(l.error_at(
                &format!("{p}.subnets"),
                "a vlan-aware vnet cannot have subnets",
            ));
        }
        let mut seen = BTreeSet::new();
        for (j, s) in v.subnets.iter().enumerate() {
            let sp = format!("{p}.subnets[{j}]");
            let Some(net) = parse_cidr(&s.cidr) else {
                errs.push(l.error_at(
                    &format!("{sp}.cidr"),
                    format!("`{}` is not a CIDR network such as 10.10.0.0/24", s.cidr),
                ));
                continue;
            };
            if !seen.insert(s.cidr.clone()) {
                errs.push(l.error_at(&format!("{sp}.cidr"), "declared twice"));
            }
            if let Some(gw) = &s.gateway
                && !gw.parse::<IpAddr>().is_ok_and(|ip| in_subnet(net, ip))
            {
                errs.push(l.error_at(
                    &format!("{sp}.gateway"),
                    format!("{gw} is not in subnet {}", s.cidr),
                ));
            }
            if s.snat == Some(true) && !matches!(zone.kind, ZoneType::Simple | ZoneType::Evpn) {
                errs.push(l.error_at(
                    &format!("{sp}.snat"),
                    "SNAT works in simple and evpn zones only",
                ));
            }
            let dhcp_zone = zone.kind == ZoneType::Simple && zone.dhcp == Some(true);
            if !s.dhcp_ranges.is_empty() && !dhcp_zone {
                errs.push(l.error_at(
                    &format!("{sp}.dhcp_ranges"),
                    format!(
                        "DHCP ranges need a simple zone with `dhcp: true` (zone `{}` is {})",
                        v.zone,
                        zone.kind.as_str()
                    ),
                ));
            }
            for (k, r) in s.dhcp_ranges.iter().enumerate() {
                for (what, a) in [("start", &r.start), ("end", &r.end)] {
                    if !a.parse::<IpAddr>().is_ok_and(|ip| in_subnet(net, ip)) {
                        errs.push(l.error_at(
                            &format!("{sp}.dhcp_ranges[{k}].{what}"),
                            format!("{a} is not an address in subnet {}", s.cidr),
                        ));
                    }
                }
            }
        }
    }
    errs
}

fn bool_text(b: bool) -> String {
    u8::from(b).to_string()
}

/// The objects Proxmox should hold for `sdn` of homelab `lab`.
pub fn resolve(sdn: &Sdn, lab: &str) -> DesiredSdn {
    let mut objects = Vec::new();
    for (id, z) in &sdn.zones {
        let mut o = BTreeMap::new();
        o.insert("type".to_string(), z.kind.as_str().to_string());
        if !z.peers.is_empty() {
            o.insert("peers".into(), z.peers.join(","));
        }
        if let Some(b) = &z.bridge {
            o.insert("bridge".into(), b.clone());
        }
        if let Some(m) = z.mtu {
            o.insert("mtu".into(), m.to_string());
        }
        if !z.nodes.is_empty() {
            o.insert("nodes".into(), z.nodes.join(","));
        }
        if z.dhcp == Some(true) {
            o.insert("dhcp".into(), "dnsmasq".into());
        }
        if let Some(c) = &z.controller {
            o.insert("controller".into(), c.clone());
        }
        if let Some(v) = z.vrf_vxlan {
            o.insert("vrf-vxlan".into(), v.to_string());
        }
        objects.push(DesiredSdnObject {
            kind: SdnKind::Zone,
            id: id.clone(),
            vnet: None,
            cidr: None,
            options: o,
        });
    }
    let mut subnets = Vec::new();
    for (id, v) in &sdn.vnets {
        let mut o = BTreeMap::new();
        o.insert("zone".to_string(), v.zone.clone());
        if let Some(t) = v.tag {
            o.insert("tag".into(), t.to_string());
        }
        o.insert("alias".into(), alias_with_marker(v.alias.as_deref(), lab));
        if v.vlan_aware == Some(true) {
            o.insert("vlanaware".into(), bool_text(true));
        }
        objects.push(DesiredSdnObject {
            kind: SdnKind::Vnet,
            id: id.clone(),
            vnet: None,
            cidr: None,
            options: o,
        });
        for s in &v.subnets {
            let mut o = BTreeMap::new();
            if let Some(g) = &s.gateway {
                o.insert("gateway".to_string(), g.clone());
            }
            if s.snat == Some(true) {
                o.insert("snat".into(), bool_text(true));
            }
            if !s.dhcp_ranges.is_empty() {
                let mut r: Vec<String> = s
                    .dhcp_ranges
                    .iter()
                    .map(|r| format!("start-address={},end-address={}", r.start, r.end))
                    .collect();
                r.sort();
                o.insert("dhcp-range".into(), r.join(";"));
            }
            subnets.push(DesiredSdnObject {
                kind: SdnKind::Subnet,
                id: proxmox_client::sdn::subnet_id(&v.zone, &s.cidr),
                vnet: Some(id.clone()),
                cidr: Some(s.cidr.clone()),
                options: o,
            });
        }
    }
    objects.extend(subnets);
    DesiredSdn { objects }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ownership_is_the_last_word_of_the_alias() {
        let a = alias_with_marker(Some("web tier"), "home");
        assert_eq!(a, "web tier homelab-cli:owner=home");
        assert!(alias_owned(&a, "home"));
        assert!(!alias_owned(&a, "work"));
        assert!(!alias_owned(
            "homelab-cli:owner=home is quoted here",
            "home"
        ));
        assert!(alias_owned(&alias_with_marker(None, "home"), "home"));
    }

    #[test]
    fn resolution_orders_zones_vnets_subnets() {
        let sdn: Sdn = serde_yaml_ng::from_str(
            "zones: {ov: {type: vxlan, peers: [10.0.0.1, 10.0.0.2], mtu: 1450}}\n\
             vnets:\n  web: {zone: ov, tag: 100, subnets: [{cidr: 10.10.0.0/24, gateway: 10.10.0.1}]}\n",
        )
        .unwrap();
        let d = resolve(&sdn, "home");
        let kinds: Vec<SdnKind> = d.objects.iter().map(|o| o.kind).collect();
        assert_eq!(kinds, [SdnKind::Zone, SdnKind::Vnet, SdnKind::Subnet]);
        assert_eq!(d.objects[0].options["peers"], "10.0.0.1,10.0.0.2");
        assert_eq!(d.objects[2].id, "ov-10.10.0.0-24");
        assert_eq!(d.objects[1].options["alias"], "homelab-cli:owner=home");
        assert!(in_subnet(
            parse_cidr("10.10.0.0/24").unwrap(),
            "10.10.0.9".parse().unwrap()
        ));
    }
}
