//! Per-guest diffing: create, adopt, update, replace.

use super::*;

/// Keys we may have set on a Talos VM in an earlier version of the config; present but no
/// longer desired means "remove".
pub(super) const OPTIONAL_KEYS: &[&str] = &[
    "nameserver",
    "searchdomain",
    "cicustom",
    "sshkeys",
    "startup",
];

/// The same for containers.
pub(super) const OPTIONAL_LXC_KEYS: &[&str] =
    &["nameserver", "searchdomain", "features", "startup"];

/// Container keys Proxmox refuses to change after creation: a change means re-creating.
pub(super) const LXC_FIXED_KEYS: &[&str] = &["unprivileged"];

/// Container keys applied to a running container without a restart (pve-container
/// hot-applies these; everything else becomes pending until the next start).
pub(super) const LXC_HOT_KEYS: &[&str] = &[
    "hostname",
    "description",
    "tags",
    "onboot",
    "startup",
    "protection",
    "memory",
    "swap",
    "cores",
    "net0",
    "nameserver",
    "searchdomain",
];

/// Keys whose change takes effect without restarting the guest.
pub(super) const HOT_KEYS: &[&str] = &[
    "name",
    "description",
    "tags",
    "onboot",
    "ide2",
    "protection",
];

pub(super) fn create(d: &DesiredGuest, lab: &str) -> Action {
    let mut config: BTreeMap<String, String> = d
        .props
        .iter()
        .map(|(k, v)| (k.clone(), shown(d, k, v)))
        .collect();
    for (k, disk) in &d.disks {
        config.insert(k.clone(), disk.create_value());
    }
    for (k, v) in &d.create_only {
        let v = if k == "ssh-public-keys" {
            format!(
                "({} key(s))",
                v.lines().filter(|l| !l.trim().is_empty()).count()
            )
        } else {
            v.clone()
        };
        config.insert(k.clone(), v);
    }
    config.insert("tags".into(), d.tags(lab));
    match &d.boot {
        Some(BootSource::Clone { template, full }) => {
            let how = if *full { "full" } else { "linked" };
            config.insert("clone".into(), format!("{how} clone of {template}"));
            // The boot disk comes from the template and is grown to its size.
            if let Some(size) = d.disks.get("scsi0").and_then(|s| s.size) {
                config.insert("scsi0".into(), format!("(cloned), grown to {size}"));
            }
        }
        Some(BootSource::Image { .. }) if !d.is_template => {
            if let Some(size) = d.disks.get("scsi0").and_then(|s| s.size) {
                config.insert(
                    "scsi0".into(),
                    format!("{}, grown to {size}", d.disks["scsi0"].create_value()),
                );
            }
        }
        _ => {}
    }
    if d.is_template {
        config.insert("template".into(), "1".into());
    }
    Action::Create {
        vmid: d.vmid,
        name: d.name.clone(),
        node: d.node.clone(),
        kind: d.kind,
        config,
    }
}

pub(super) fn shown(d: &DesiredGuest, key: &str, v: &str) -> String {
    if d.is_sensitive(key) {
        d.redact(key, v)
    } else {
        readable(key, v)
    }
}

/// A value as people read it: `sshkeys` is stored URL-encoded.
pub(super) fn readable(key: &str, v: &str) -> String {
    if key == "sshkeys" {
        crate::model::vms::url_decode(v).trim_end().to_string()
    } else {
        v.to_string()
    }
}

/// Taking over `g` for `d`: the ownership tag and marker, and differences Proxmox applies
/// without a restart. Anything that would restart or re-create it is refused.
pub(super) fn adopt_actions(
    d: &DesiredGuest,
    g: &ObservedGuest,
    lab: &str,
) -> Result<Vec<Action>, PlanError> {
    let mismatch = |what: String| PlanError::AdoptMismatch {
        vmid: d.vmid,
        name: d.name.clone(),
        kind: d.kind.noun(),
        what,
    };
    if g.config.is_none() {
        return Err(mismatch(
            "need its configuration, which was not read".into(),
        ));
    }
    let mut out = Vec::new();
    for a in guest_actions(d, g, lab) {
        match a {
            Action::Replace { reasons, .. } => {
                return Err(mismatch(format!("re-create it ({})", reasons.join("; "))));
            }
            Action::Update { changes, .. } => {
                let restart: Vec<&str> = changes
                    .iter()
                    .filter(|c| c.reboot)
                    .map(|c| c.key.as_str())
                    .collect();
                if !restart.is_empty() {
                    return Err(mismatch(format!(
                        "restart it to change {}",
                        restart.join(", ")
                    )));
                }
                out.push(Action::Adopt {
                    vmid: d.vmid,
                    name: d.name.clone(),
                    node: d.node.clone(),
                    kind: d.kind,
                    changes,
                });
            }
            other => out.push(other),
        }
    }
    Ok(out)
}

pub(super) fn guest_actions(d: &DesiredGuest, g: &ObservedGuest, lab: &str) -> Vec<Action> {
    let start = || Action::Start {
        vmid: d.vmid,
        name: d.name.clone(),
        node: d.node.clone(),
        kind: d.kind,
    };
    // Templates never run.
    let stopped = g.status == "stopped" && !d.is_template;
    let Some(cfg) = &g.config else {
        // Decided from the resource list: nothing changed.
        return if stopped { vec![start()] } else { vec![] };
    };
    let mut reasons = Vec::new();
    // Where the boot disk came from is recorded in the description; another source means
    // a new disk.
    let boot_line = |text: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(BOOT_MARKER))
            .map(str::to_string)
    };
    if let (Some(want), Some(have)) = (
        d.props.get("description").and_then(|t| boot_line(t)),
        cfg.props.get("description").and_then(|t| boot_line(t)),
    ) && want != have
    {
        reasons.push(format!("its boot disk changes from {have} to {want}"));
    }
    if g.node != d.node {
        reasons.push(format!("moves from node {} to {}", g.node, d.node));
    }
    if g.kind != d.kind {
        reasons.push(format!(
            "changes from {} to {}",
            g.kind.noun(),
            d.kind.noun()
        ));
    }
    let mut changes = Vec::new();
    let lxc = d.kind == GuestKind::Lxc;
    let hot = |k: &str| {
        if lxc {
            LXC_HOT_KEYS.contains(&k)
        } else {
            HOT_KEYS.contains(&k)
        }
    };
    for (k, want) in &d.props {
        let have = cfg.props.get(k);
        // Proxmox omits some keys at their default; an absent key reads as the default.
        let have: Option<&str> = match (lxc, k.as_str(), have) {
            (true, "onboot" | "unprivileged", None) => Some("0"),
            // A VM's `onboot` defaults to 0 as well (qemu-server's schema).
            (false, "onboot", None) => Some("0"),
            _ => have.map(String::as_str),
        };
        if lxc
            && LXC_FIXED_KEYS.contains(&k.as_str())
            && have.map(|h| canon(k, h)) != Some(canon(k, want))
        {
            reasons.push(format!(
                "{k} changes from {} to {want}, which Proxmox only sets on creation",
                have.unwrap_or("unset")
            ));
            continue;
        }
        if have.map(|h| canon(k, h)) != Some(canon(k, want)) {
            let sensitive = d.is_sensitive(k);
            changes.push(Change {
                key: k.clone(),
                from: have.map(|h| shown(d, k, h)),
                to: Some(shown(d, k, want)),
                reboot: !hot(k),
                sensitive,
                shown: true,
            });
        }
    }
    let optional = if lxc {
        OPTIONAL_LXC_KEYS
    } else {
        OPTIONAL_KEYS
    };
    for k in optional {
        if !d.props.contains_key(*k)
            && let Some(h) = cfg.props.get(*k)
        {
            changes.push(Change {
                key: (*k).to_string(),
                from: Some(h.clone()),
                to: None,
                reboot: !hot(k),
                sensitive: false,
                shown: true,
            });
        }
    }
    // A PCI device no longer declared is detached.
    if !lxc {
        for (k, v) in &cfg.props {
            let is_pci = k
                .strip_prefix("hostpci")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if is_pci && !d.props.contains_key(k) {
                changes.push(Change {
                    key: k.clone(),
                    from: Some(v.clone()),
                    to: None,
                    reboot: true,
                    sensitive: false,
                    shown: true,
                });
            }
        }
    }
    // A container mount point no longer declared is detached (Proxmox keeps its volume as
    // `unusedN`, so no data is lost).
    if lxc {
        for (k, v) in &cfg.props {
            // A device no longer declared is detached as well.
            let gone = (is_numbered(k, "mp") && !d.disks.contains_key(k))
                || (is_numbered(k, "dev") && !d.props.contains_key(k));
            if gone {
                changes.push(Change {
                    key: k.clone(),
                    from: Some(v.clone()),
                    to: None,
                    reboot: true,
                    sensitive: false,
                    shown: true,
                });
            }
        }
    }
    // Tags: our owner tag must stay; the spec-hash tag is bookkeeping.
    let want_tags = canon_tags(&d.tags(lab));
    let have_tags = canon_tags(cfg.props.get("tags").map_or("", String::as_str));
    if want_tags != have_tags {
        let kept_foreign: BTreeSet<String> = have_tags
            .iter()
            .filter(|t| !t.starts_with(SPEC_TAG_PREFIX) && **t != owner_tag(lab))
            .cloned()
            .collect();
        let mut merged = want_tags.clone();
        merged.extend(kept_foreign);
        if merged != have_tags {
            let only_hash = have_tags
                .iter()
                .filter(|t| !t.starts_with(SPEC_TAG_PREFIX))
                .eq(merged.iter().filter(|t| !t.starts_with(SPEC_TAG_PREFIX)));
            changes.push(Change {
                key: "tags".into(),
                from: cfg.props.get("tags").cloned(),
                to: Some(merged.into_iter().collect::<Vec<_>>().join(";")),
                reboot: false,
                sensitive: false,
                shown: !only_hash,
            });
        }
    }
    for (k, want) in &d.disks {
        match cfg.props.get(k).and_then(|v| parse_disk(v)) {
            None => changes.push(Change {
                key: k.clone(),
                from: cfg.props.get(k).cloned(),
                to: Some(want.create_value()),
                reboot: !want.cloudinit,
                sensitive: false,
                shown: true,
            }),
            Some(have) => {
                if have.storage != want.storage {
                    reasons.push(format!(
                        "disk {k} moves from storage {} to {}",
                        have.storage, want.storage
                    ));
                    continue;
                }
                if let (Some(w), Some(h)) = (
                    want.size,
                    have.size_mib.map(crate::model::config::Size::from_mib),
                ) {
                    // A cloud VM's boot disk comes from an image or template that may
                    // already be larger than asked: the size is a minimum, never a shrink.
                    let minimum = want.import_from.is_some() || (d.boot.is_some() && k == "scsi0");
                    if w < h && !minimum {
                        reasons.push(format!("disk {k} cannot shrink from {h} to {w}"));
                        continue;
                    }
                    if w > h {
                        changes.push(Change {
                            key: k.clone(),
                            from: Some(format!("size={h}")),
                            to: Some(format!("size={w}")),
                            reboot: false,
                            sensitive: false,
                            shown: true,
                        });
                    }
                }
                let opts_differ = want.options.iter().any(|(ok, ov)| {
                    // A mount point without `backup` is not backed up.
                    let absent = (lxc && ok == "backup").then_some("0");
                    have.options.get(ok).map(String::as_str).or(absent) != Some(ov.as_str())
                });
                if opts_differ {
                    let fmt = |o: &BTreeMap<String, String>| {
                        o.iter()
                            .map(|(a, b)| format!("{a}={b}"))
                            .collect::<Vec<_>>()
                            .join(",")
                    };
                    changes.push(Change {
                        key: format!("{k}.options"),
                        from: Some(fmt(&have.options)),
                        to: Some(fmt(&want.options)),
                        reboot: true,
                        sensitive: false,
                        shown: true,
                    });
                }
            }
        }
    }
    if d.is_template && !g.is_template() {
        // Created but not yet converted (an interrupted run).
        changes.push(Change {
            key: "template".into(),
            from: None,
            to: Some("1".into()),
            reboot: false,
            sensitive: false,
            shown: true,
        });
    }
    if !reasons.is_empty() {
        return vec![Action::Replace {
            vmid: d.vmid,
            name: d.name.clone(),
            node: d.node.clone(),
            current_node: g.node.clone(),
            kind: d.kind,
            reasons,
        }];
    }
    let mut out = Vec::new();
    if !changes.is_empty() {
        let reboot = !stopped && changes.iter().any(|c| c.reboot);
        out.push(Action::Update {
            vmid: d.vmid,
            name: d.name.clone(),
            node: d.node.clone(),
            kind: d.kind,
            changes,
            reboot,
        });
    }
    if stopped {
        out.push(start());
    }
    out
}
