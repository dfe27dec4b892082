//! PCI passthrough: the cluster PCI mappings VMs reference (`hostpciN: mapping=<id>`),
//! checked against the devices the hosts report. Pure: observed data in, actions out.

use std::collections::BTreeSet;

use proxmox_client::models::{PciDevice, PciMapping};
use proxmox_client::property::PciMapEntry;

use super::observed::Observed;
use super::plan::{Action, EntryChange, PlanError};
use crate::model::desired::Desired;

/// The mapping IDs a guest's `hostpciN` values reference.
pub fn referenced_mappings<'a>(
    props: impl Iterator<Item = (&'a String, &'a String)>,
) -> BTreeSet<String> {
    props
        .filter(|(k, _)| k.starts_with("hostpci"))
        .filter_map(|(_, v)| {
            v.split(',')
                .find_map(|p| p.strip_prefix("mapping="))
                .map(str::to_string)
        })
        .collect()
}

/// Whether the plan needs the hosts' PCI devices and the cluster mappings.
pub fn wanted(desired: &Desired) -> bool {
    !desired.pci_mappings.is_empty()
        || desired
            .guests
            .iter()
            .any(|g| g.props.keys().any(|k| k.starts_with("hostpci")) || !gpu_devices(g).is_empty())
}

/// The GPU device nodes (`/dev/dri/...`) a container is given.
fn gpu_devices(g: &crate::model::desired::DesiredGuest) -> Vec<&str> {
    g.props
        .iter()
        .filter(|(k, _)| proxmox_client::property::is_numbered(k, "dev"))
        .filter_map(|(_, v)| v.split(',').next())
        .filter(|p| p.starts_with("/dev/dri/"))
        .collect()
}

/// The devices on `node` a mapping path names: one function, or every function of a slot.
fn devices_at<'a>(devices: &'a [PciDevice], path: &str) -> Vec<&'a PciDevice> {
    devices
        .iter()
        .filter(|d| d.id == path || d.slot() == path)
        .collect()
}

/// A short list of the node's GPUs (or all devices when it has none), for errors.
fn describe(devices: &[PciDevice]) -> String {
    let gpus: Vec<&PciDevice> = devices.iter().filter(|d| d.is_gpu()).collect();
    let shown: Vec<&PciDevice> = if gpus.is_empty() {
        devices.iter().collect()
    } else {
        gpus
    };
    if shown.is_empty() {
        return "none".into();
    }
    shown
        .iter()
        .map(|d| {
            format!(
                "{} ({})",
                d.id,
                d.device_name.as_deref().unwrap_or(d.device.as_str())
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn entry_for<'a>(m: &'a PciMapping, node: &str) -> Option<(&'a String, PciMapEntry)> {
    m.map.iter().find_map(|raw| {
        let e: PciMapEntry = raw.parse().ok()?;
        (e.node == node).then_some((raw, e))
    })
}

/// Mapping actions, or why the VMs' passthrough cannot work.
pub fn plan(desired: &Desired, observed: &Observed) -> Result<Vec<Action>, PlanError> {
    let mut actions = Vec::new();
    let Some(mappings) = &observed.pci_mappings else {
        return Ok(actions);
    };
    let mut ensured = BTreeSet::new();
    // Per mapping ID: the node entries it must get (one per node, whoever uses it).
    let mut wanted: std::collections::BTreeMap<&str, Vec<EntryChange>> = Default::default();
    let mut seen: BTreeSet<(&str, &str)> = BTreeSet::new();
    for m in &desired.pci_mappings {
        if !seen.insert((m.id.as_str(), m.node.as_str())) {
            continue;
        }
        // Devices are read only from online nodes: none read means the node is away.
        let Some(devices) = observed.pci_devices.get(&m.node).map(Vec::as_slice) else {
            return Err(PlanError::PciNodeOffline {
                device: m.path.clone(),
                node: m.node.clone(),
                name: m.used_by.clone(),
            });
        };
        let found = devices_at(devices, &m.path);
        let Some(first) = found.first() else {
            return Err(PlanError::UnknownPciDevice {
                device: m.path.clone(),
                node: m.node.clone(),
                name: m.used_by.clone(),
                known: describe(devices),
            });
        };
        let all_functions = m.path.matches(':').count() == 2 && !m.path.contains('.');
        let want = PciMapEntry::from_device(&m.node, first, all_functions);
        ensured.insert(m.id.clone());
        let have = mappings
            .iter()
            .find(|x| x.id == m.id)
            .and_then(|x| entry_for(x, &m.node));
        if have
            .as_ref()
            .is_some_and(|(_, e)| e.path == want.path && e.id == want.id)
        {
            continue;
        }
        wanted.entry(&m.id).or_default().push(EntryChange {
            node: m.node.clone(),
            from: have.map(|(raw, _)| raw.clone()),
            to: want.to_string(),
        });
    }
    for (id, changes) in wanted {
        if mappings.iter().any(|x| x.id == id) {
            actions.push(Action::UpdatePciMapping {
                id: id.to_string(),
                changes,
            });
        } else {
            actions.push(Action::CreatePciMapping {
                id: id.to_string(),
                entries: changes.into_iter().map(|c| c.to).collect(),
            });
        }
    }
    // A container given a GPU's device nodes needs a node with a GPU.
    for g in &desired.guests {
        if let Some(dev) = gpu_devices(g).first()
            && let Some(devices) = observed.pci_devices.get(&g.node)
            && !devices.iter().any(PciDevice::is_gpu)
        {
            return Err(PlanError::NoGpu {
                device: (*dev).to_string(),
                node: g.node.clone(),
                name: g.name.clone(),
            });
        }
    }
    // Mappings referenced without a device must already exist, with an entry for the node.
    for g in &desired.guests {
        for id in referenced_mappings(g.props.iter()) {
            if ensured.contains(&id) {
                continue;
            }
            let ok = mappings
                .iter()
                .find(|x| x.id == id)
                .is_some_and(|m| entry_for(m, &g.node).is_some());
            if !ok {
                return Err(PlanError::UnknownPciMapping {
                    id,
                    node: g.node.clone(),
                    name: g.name.clone(),
                    known: mappings
                        .iter()
                        .map(|m| m.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        }
    }
    Ok(actions)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn mapping_ids_are_read_from_hostpci_values() {
        let props = [
            ("hostpci0".to_string(), "mapping=rtx,pcie=1".to_string()),
            ("hostpci1".to_string(), "0000:02:00.0".to_string()),
            ("net0".to_string(), "virtio,bridge=vmbr0".to_string()),
        ];
        let ids = referenced_mappings(props.iter().map(|(a, b)| (a, b)));
        assert_eq!(ids.into_iter().collect::<Vec<_>>(), ["rtx"]);
    }
}
