//! Bare-metal Talos nodes (`talos.metal:` in homelab.yaml): machines that boot over the
//! network from `homelab-cli pxe serve` and join the same cluster as the VM nodes.

use std::net::Ipv4Addr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::config::{Role, Talos};

/// One bare-metal machine.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetalNode {
    /// Talos hostname (a DNS label); unique among all nodes.
    pub name: String,
    /// The MAC address of the NIC it network-boots from, e.g. `52:54:00:12:34:56`.
    pub mac: String,
    /// `controlplane` or `worker`.
    pub role: Role,
    /// The disk Talos installs to (default `talos.defaults.install_disk`, else `/dev/sda`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install_disk: Option<String>,
    /// Its IPv4 address: the fixed lease `pxe serve --mode full` hands out, or the address
    /// the site's DHCP server reserves for it (proxy mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<Ipv4Addr>,
    /// CPU architecture.
    #[serde(default)]
    pub arch: MetalArch,
}

/// CPU architecture of a bare-metal machine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MetalArch {
    /// x86-64.
    #[default]
    Amd64,
    /// AArch64.
    Arm64,
}

/// A problem with `talos.metal`, with the YAML path it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetalProblem {
    /// e.g. `talos.metal[0].mac`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// Check the metal nodes against each other and the VM nodes (pure).
pub fn validate(talos: &Talos) -> Vec<MetalProblem> {
    let mut out = Vec::new();
    let mut names: Vec<&str> = talos.nodes.iter().map(|n| n.name.as_str()).collect();
    let mut macs: Vec<netboot::MacAddr> = Vec::new();
    let mut ips: Vec<Ipv4Addr> = Vec::new();
    for (i, m) in talos.metal.iter().enumerate() {
        let at = |field: &str| format!("talos.metal[{i}].{field}");
        if m.name.is_empty()
            || m.name.len() > 63
            || !m
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            || m.name.starts_with('-')
            || m.name.ends_with('-')
        {
            out.push(MetalProblem {
                path: at("name"),
                message: format!("`{}` is not a DNS label", m.name),
            });
        }
        if names.contains(&m.name.as_str()) {
            out.push(MetalProblem {
                path: at("name"),
                message: format!("another node is already named `{}`", m.name),
            });
        }
        names.push(&m.name);
        match m.mac.parse::<netboot::MacAddr>() {
            Ok(mac) if macs.contains(&mac) => out.push(MetalProblem {
                path: at("mac"),
                message: format!("{mac} is declared twice"),
            }),
            Ok(mac) if mac.0[0] & 1 == 1 => out.push(MetalProblem {
                path: at("mac"),
                message: format!("{mac} is a multicast address, not a NIC's"),
            }),
            Ok(mac) => macs.push(mac),
            Err(e) => out.push(MetalProblem {
                path: at("mac"),
                message: e.to_string(),
            }),
        }
        if let Some(ip) = m.ip {
            if ips.contains(&ip) {
                out.push(MetalProblem {
                    path: at("ip"),
                    message: format!("{ip} is used by another metal node"),
                });
            }
            ips.push(ip);
        }
    }
    out
}

/// The metal nodes with their install disk resolved (`install_disk`, else
/// `talos.defaults.install_disk`, else `/dev/sda`).
pub fn resolved(talos: &Talos) -> Vec<MetalNode> {
    talos
        .metal
        .iter()
        .map(|m| MetalNode {
            install_disk: Some(
                m.install_disk
                    .clone()
                    .or_else(|| talos.defaults.install_disk.clone())
                    .unwrap_or_else(|| "/dev/sda".into()),
            ),
            ..m.clone()
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn talos(metal: &str) -> Talos {
        let yaml = format!(
            "version: v1.12.0\ncluster: {{name: c}}\nnodes:\n  - {{name: cp1, vmid: 100, role: controlplane}}\nmetal:\n{metal}"
        );
        serde_yaml_ng::from_str(&yaml).unwrap()
    }

    #[test]
    fn good_metal_nodes_pass() {
        let t = talos(
            "  - {name: m1, mac: '52:54:00:00:00:01', role: worker, ip: 10.0.0.21}\n  - {name: m2, mac: 52-54-00-00-00-02, role: worker, arch: arm64}\n",
        );
        assert_eq!(validate(&t), vec![]);
        assert_eq!(t.metal[1].arch, MetalArch::Arm64);
        assert_eq!(t.metal[0].arch, MetalArch::Amd64);
    }

    #[test]
    fn each_problem_names_its_field() {
        let t = talos(
            "  - {name: cp1, mac: 'zz', role: worker}\n  - {name: m2, mac: '01:00:5e:00:00:01', role: worker, ip: 10.0.0.9}\n  - {name: m3, mac: '52:54:00:00:00:03', role: worker, ip: 10.0.0.9}\n  - {name: m4, mac: '52:54:00:00:00:03', role: worker}\n",
        );
        let got: Vec<(String, bool)> = validate(&t)
            .into_iter()
            .map(|p| (p.path, !p.message.is_empty()))
            .collect();
        let paths: Vec<&str> = got.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "talos.metal[0].name",
                "talos.metal[0].mac",
                "talos.metal[1].mac",
                "talos.metal[2].ip",
                "talos.metal[3].mac"
            ]
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        let yaml = "name: m1\nmac: '52:54:00:00:00:01'\nrole: worker\ndisk: /dev/sda\n";
        let err = serde_yaml_ng::from_str::<MetalNode>(yaml).unwrap_err();
        assert!(err.to_string().contains("disk"), "{err}");
    }
}
