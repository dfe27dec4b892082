//! What only `root@pam` may do: refused up front for API tokens.

use super::*;

/// The settings of a container that only `root@pam` may make when creating it.
pub fn root_only_on_create(d: &DesiredGuest) -> Vec<String> {
    if d.kind != GuestKind::Lxc {
        return Vec::new();
    }
    let privileged = privileged(d);
    d.props
        .iter()
        .filter(|(k, v)| {
            is_numbered(k, "dev")
                || (k.as_str() == "features" && (privileged || !root_features(v).is_empty()))
        })
        .map(|(k, v)| format!("{k}={v}"))
        .collect()
}

/// A privileged container: pve-container lets only root@pam set any of its features.
pub(super) fn privileged(d: &DesiredGuest) -> bool {
    d.props.get("unprivileged").is_some_and(|v| v == "0")
}

/// Whether changing `c` on container `d` needs `root@pam`.
pub fn change_needs_root(d: &DesiredGuest, c: &Change) -> bool {
    d.kind == GuestKind::Lxc
        && (is_numbered(&c.key, "dev")
            || (c.key == "features"
                && (privileged(d)
                    || root_features(c.from.as_deref().unwrap_or(""))
                        != root_features(c.to.as_deref().unwrap_or("")))))
}

/// Refuse, before anything changes, what an API token cannot do.
pub(super) fn check_root_only(desired: &Desired, actions: &[Action]) -> Result<(), PlanError> {
    for a in actions {
        match a {
            Action::Create { vmid, .. } | Action::Replace { vmid, .. } => {
                let Some(d) = desired.guests.iter().find(|g| g.vmid == *vmid) else {
                    continue;
                };
                let keys = root_only_on_create(d);
                if !keys.is_empty() {
                    return Err(PlanError::NeedsRoot {
                        vmid: d.vmid,
                        name: d.name.clone(),
                        kind: d.kind.noun(),
                        keys: keys.join(", "),
                        manual: String::new(),
                    });
                }
            }
            Action::Update {
                vmid,
                name,
                kind,
                changes,
                ..
            } => {
                let Some(d) = desired.guests.iter().find(|g| g.vmid == *vmid) else {
                    continue;
                };
                let root: Vec<&Change> =
                    changes.iter().filter(|c| change_needs_root(d, c)).collect();
                if !root.is_empty() {
                    let set: Vec<String> = root
                        .iter()
                        .map(|c| match &c.to {
                            Some(v) => format!("-{} {v}", c.key),
                            None => format!("-delete {}", c.key),
                        })
                        .collect();
                    return Err(PlanError::NeedsRoot {
                        vmid: *vmid,
                        name: name.clone(),
                        kind: kind.noun(),
                        keys: root
                            .iter()
                            .map(|c| {
                                format!("{}={}", c.key, c.to.as_deref().unwrap_or("(removed)"))
                            })
                            .collect::<Vec<_>>()
                            .join(", "),
                        manual: format!(
                            " (or run `pct set {vmid} {}` on the node, then re-run)",
                            set.join(" ")
                        ),
                    });
                }
            }
            _ => {}
        }
    }
    Ok(())
}
