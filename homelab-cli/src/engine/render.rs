//! Plans for people, in the shape Terraform users know.

use std::fmt::Write as _;

use owo_colors::OwoColorize;

use super::plan::{Action, Change, Plan};

/// Render a plan. `color` adds ANSI colours (+ green, ~ yellow, - red).
pub fn plan_text(plan: &Plan, color: bool) -> String {
    let mut out = String::new();
    if plan.is_empty() {
        out.push_str("No changes. The lab matches the configuration.\n");
        return out;
    }
    out.push_str("homelab-cli will perform the following actions:\n");
    let paint = |sym: &str| -> String {
        if !color {
            return sym.to_string();
        }
        match sym.trim() {
            "+" => sym.green().to_string(),
            "~" => sym.yellow().to_string(),
            "-" => sym.red().to_string(),
            _ => sym.magenta().to_string(),
        }
    };
    for a in &plan.actions {
        out.push('\n');
        match a {
            Action::DownloadIso {
                node,
                storage,
                filename,
                url,
            }
            | Action::DownloadTemplate {
                node,
                storage,
                filename,
                url,
            } => {
                let (what, content) = if matches!(a, Action::DownloadIso { .. }) {
                    ("iso", proxmox_client::ContentKind::Iso)
                } else {
                    ("template", proxmox_client::ContentKind::Vztmpl)
                };
                let volid =
                    proxmox_client::VolumeId::new(storage.as_str(), content, filename.as_str());
                let _ = writeln!(out, "  # {what} {volid} will be downloaded on {node}");
                let _ = writeln!(out, "  {} {what} \"{volid}\" {{", paint("+"));
                let _ = writeln!(out, "      {} url = \"{url}\"", paint("+"));
                out.push_str("    }\n");
            }
            Action::DownloadImage {
                node,
                storage,
                filename,
                url,
                checksum,
            } => {
                let volid = proxmox_client::VolumeId::new(
                    storage.as_str(),
                    proxmox_client::ContentKind::Import,
                    filename.as_str(),
                )
                .to_string();
                let _ = writeln!(out, "  # image {volid} will be downloaded on {node}");
                let _ = writeln!(out, "  {} image \"{volid}\" {{", paint("+"));
                let _ = writeln!(out, "      {} url      = \"{url}\"", paint("+"));
                if let Some(c) = checksum {
                    let _ = writeln!(out, "      {} checksum = \"{c}\"", paint("+"));
                }
                out.push_str("    }\n");
            }
            Action::DeleteSnippet {
                node,
                storage,
                filename,
            } => {
                let volid = proxmox_client::VolumeId::new(
                    storage.as_str(),
                    proxmox_client::ContentKind::Snippets,
                    filename.as_str(),
                )
                .to_string();
                let _ = writeln!(
                    out,
                    "  # snippet {volid} on {node} is no longer used and will be deleted"
                );
                let _ = writeln!(out, "  {} snippet \"{volid}\" {{}}", paint("-"));
            }
            Action::CreatePciMapping { id, entries } => {
                let _ = writeln!(out, "  # PCI mapping {id} will be created");
                let _ = writeln!(out, "  {} pci-mapping \"{id}\" {{", paint("+"));
                for e in entries {
                    let _ = writeln!(out, "      {} map = \"{e}\"", paint("+"));
                }
                out.push_str("    }\n");
            }
            Action::UpdatePciMapping { id, changes } => {
                let _ = writeln!(out, "  # PCI mapping {id} will get new node entries");
                let _ = writeln!(out, "  {} pci-mapping \"{id}\" {{", paint("~"));
                for c in changes {
                    match &c.from {
                        Some(f) => {
                            let _ =
                                writeln!(out, "      {} map = \"{f}\" -> \"{}\"", paint("~"), c.to);
                        }
                        None => {
                            let _ = writeln!(out, "      {} map = \"{}\"", paint("+"), c.to);
                        }
                    }
                }
                out.push_str("    }\n");
            }
            Action::UploadSnippet {
                node,
                storage,
                filename,
            } => {
                let volid = proxmox_client::VolumeId::new(
                    storage.as_str(),
                    proxmox_client::ContentKind::Snippets,
                    filename.as_str(),
                )
                .to_string();
                let _ = writeln!(out, "  # snippet {volid} will be uploaded to {node} (SFTP)");
                let _ = writeln!(out, "  {} snippet \"{volid}\" {{}}", paint("+"));
            }
            Action::Create {
                vmid,
                name,
                node,
                kind,
                config,
            } => {
                let _ = writeln!(
                    out,
                    "  # {} {vmid} \"{name}\" will be created on {node}",
                    kind.noun()
                );
                let _ = writeln!(out, "  {} {} \"{name}\" {{", paint("+"), kind.noun());
                let width = config.keys().map(String::len).max().unwrap_or(0).max(4);
                let _ = writeln!(out, "      {} {:width$} = {vmid}", paint("+"), "vmid");
                for (k, v) in config {
                    let _ = writeln!(out, "      {} {k:width$} = {}", paint("+"), quote(v));
                }
                out.push_str("    }\n");
            }
            Action::Update {
                vmid,
                name,
                kind,
                changes,
                reboot,
                ..
            } => {
                let suffix = if *reboot { " (restart required)" } else { "" };
                let _ = writeln!(
                    out,
                    "  # {} {vmid} \"{name}\" will be updated in place{suffix}",
                    kind.noun()
                );
                let _ = writeln!(out, "  {} {} \"{name}\" {{", paint("~"), kind.noun());
                let visible: Vec<&Change> = changes.iter().filter(|c| c.shown).collect();
                let width = visible.iter().map(|c| c.key.len()).max().unwrap_or(0);
                for c in &visible {
                    let note = if c.reboot { "   # restart" } else { "" };
                    let (sym, value) = match (&c.from, &c.to) {
                        (None, Some(t)) => ("+", quote(t)),
                        (Some(f), None) => ("-", quote(f)),
                        (Some(f), Some(t)) => ("~", format!("{} -> {}", quote(f), quote(t))),
                        (None, None) => continue,
                    };
                    let _ = writeln!(out, "      {} {:width$} = {value}{note}", paint(sym), c.key);
                }
                let hidden = changes.len() - visible.len();
                if hidden > 0 {
                    let _ = writeln!(out, "        # (ownership tags refreshed)");
                }
                out.push_str("    }\n");
            }
            Action::CreateStorage { id, config } => {
                let _ = writeln!(out, "  # storage \"{id}\" will be added");
                let _ = writeln!(out, "  {} storage \"{id}\" {{", paint("+"));
                let width = config.keys().map(String::len).max().unwrap_or(0);
                for (k, v) in config {
                    let _ = writeln!(out, "      {} {k:width$} = {}", paint("+"), quote(v));
                }
                out.push_str("    }\n");
            }
            Action::UpdateStorage { id, changes } => {
                let _ = writeln!(out, "  # storage \"{id}\" will be updated in place");
                let _ = writeln!(out, "  {} storage \"{id}\" {{", paint("~"));
                let width = changes.iter().map(|c| c.key.len()).max().unwrap_or(0);
                for c in changes {
                    let from = c
                        .from
                        .as_deref()
                        .map_or_else(|| "(unset)".to_string(), quote);
                    let to = c.to.as_deref().map_or_else(|| "(unset)".to_string(), quote);
                    let _ = writeln!(
                        out,
                        "      {} {:width$} = {from} -> {to}",
                        paint("~"),
                        c.key
                    );
                }
                out.push_str("    }\n");
            }
            Action::CreatePool { id, comment } => {
                let _ = writeln!(out, "  # pool \"{id}\" will be added");
                let _ = writeln!(out, "  {} pool \"{id}\" {{", paint("+"));
                let _ = writeln!(out, "      {} comment = {}", paint("+"), quote(comment));
                out.push_str("    }\n");
            }
            Action::UpdatePool { id, changes } => {
                let _ = writeln!(out, "  # pool \"{id}\" will be updated in place");
                let _ = writeln!(out, "  {} pool \"{id}\" {{", paint("~"));
                for c in changes {
                    let from = c
                        .from
                        .as_deref()
                        .map_or_else(|| "(unset)".to_string(), quote);
                    let to = c.to.as_deref().map_or_else(|| "(unset)".to_string(), quote);
                    let _ = writeln!(out, "      {} {} = {from} -> {to}", paint("~"), c.key);
                }
                out.push_str("    }\n");
            }
            Action::DeletePool { id } => {
                let _ = writeln!(out, "  # pool \"{id}\" will be deleted (it is empty)");
                let _ = writeln!(out, "  {} pool \"{id}\"", paint("-"));
            }
            Action::Adopt {
                vmid,
                name,
                kind,
                changes,
                ..
            } => {
                let _ = writeln!(
                    out,
                    "  # {} {vmid} \"{name}\" will be adopted (ownership tag and marker written; not restarted)",
                    kind.noun()
                );
                let _ = writeln!(out, "  {} {} \"{name}\" {{", paint("~"), kind.noun());
                let width = changes.iter().map(|c| c.key.len()).max().unwrap_or(0);
                for c in changes {
                    let value = match (&c.from, &c.to) {
                        (None, Some(t)) => quote(t),
                        (Some(f), None) => format!("{} -> (unset)", quote(f)),
                        (Some(f), Some(t)) => format!("{} -> {}", quote(f), quote(t)),
                        (None, None) => continue,
                    };
                    let _ = writeln!(out, "      {} {:width$} = {value}", paint("~"), c.key);
                }
                out.push_str("    }\n");
            }
            Action::Replace {
                vmid,
                name,
                node,
                current_node,
                kind,
                reasons,
            } => {
                let _ = writeln!(
                    out,
                    "  # {} {vmid} \"{name}\" must be replaced (its disks are lost)",
                    kind.noun()
                );
                let _ = writeln!(out, "{} {} \"{name}\" {{", paint("-/+"), kind.noun());
                if node != current_node {
                    let _ = writeln!(
                        out,
                        "      {} node = \"{current_node}\" -> \"{node}\"",
                        paint("~")
                    );
                }
                for r in reasons {
                    let _ = writeln!(out, "      # {r}");
                }
                out.push_str("    }\n");
            }
            Action::Start {
                vmid, name, kind, ..
            } => {
                let _ = writeln!(
                    out,
                    "  # {} {vmid} \"{name}\" is stopped and will be started",
                    kind.noun()
                );
                let _ = writeln!(out, "  {} {} \"{name}\" {{", paint("~"), kind.noun());
                let _ = writeln!(
                    out,
                    "      {} status = \"stopped\" -> \"running\"",
                    paint("~")
                );
                out.push_str("    }\n");
            }
            Action::Delete {
                vmid,
                name,
                node,
                kind,
            } => {
                let _ = writeln!(
                    out,
                    "  # {} {vmid} \"{name}\" on {node} will be destroyed",
                    kind.noun()
                );
                let _ = writeln!(out, "  {} {} \"{name}\"", paint("-"), kind.noun());
            }
            Action::GenerateTalosSecrets { path } => {
                let _ = writeln!(
                    out,
                    "  # the Talos secrets bundle will be generated once and kept encrypted"
                );
                let _ = writeln!(out, "  {} talos_secrets \"{path}\"", paint("+"));
            }
            Action::TalosApplyConfig { name, role, .. } => {
                let _ = writeln!(
                    out,
                    "  # \"{name}\" gets its {role} machine configuration (maintenance mode)"
                );
                let _ = writeln!(out, "  {} talos_machine_config \"{name}\"", paint("~"));
            }
            Action::TalosConfigChange { .. } => {
                out.push_str(&super::config_change::plan_text(a, &paint));
            }
            Action::TalosUpgrade {
                name,
                role,
                from,
                to,
                image,
                from_schematic,
                to_schematic,
                ..
            } => {
                let _ = writeln!(
                    out,
                    "  # Talos on {role} \"{name}\" will be upgraded; the node REBOOTS (one node at a time)"
                );
                let _ = writeln!(out, "  {} talos_upgrade \"{name}\" {{", paint("~"));
                match (from_schematic, to_schematic) {
                    (Some(a), Some(b)) if a != b => {
                        let short = |s: &str| s[..s.len().min(12)].to_string();
                        let _ = writeln!(
                            out,
                            "      {} version = \"{from} (schematic {})\" -> \"{to} (schematic {})\"",
                            paint("~"),
                            short(a),
                            short(b)
                        );
                    }
                    _ => {
                        let _ =
                            writeln!(out, "      {} version = \"{from}\" -> \"{to}\"", paint("~"));
                    }
                }
                let _ = writeln!(out, "        installer = \"{image}\"");
                out.push_str("    }\n");
            }
            Action::KubernetesUpgrade {
                from,
                to,
                control_planes,
                workers,
            } => {
                let _ = writeln!(
                    out,
                    "  # kubernetes upgrade {from} -> {to}: control-plane components node by node, then kubelets, then kube-proxy; no node reboots"
                );
                let _ = writeln!(out, "  {} kubernetes_upgrade {{", paint("~"));
                let _ = writeln!(out, "      {} version = \"{from}\" -> \"{to}\"", paint("~"));
                let _ = writeln!(out, "        control_planes = {control_planes:?}");
                let _ = writeln!(out, "        workers = {workers:?}");
                out.push_str("    }\n");
            }
            Action::EtcdSnapshot { dir, nodes } => {
                let _ = writeln!(
                    out,
                    "  # an encrypted etcd snapshot is taken first: {} change(s)",
                    nodes.join(", ")
                );
                let _ = writeln!(out, "  {} etcd_snapshot \"{dir}\"", paint("+"));
            }
            Action::TalosBootstrap { name, .. } => {
                let _ = writeln!(
                    out,
                    "  # etcd will be bootstrapped on \"{name}\" (once per cluster)"
                );
                let _ = writeln!(out, "  {} talos_bootstrap \"{name}\"", paint("~"));
            }
            Action::WriteOutput { what, path, reason } => {
                match reason {
                    Some(r) => {
                        let _ = writeln!(out, "  # {what} will be written SOPS-encrypted: {r}");
                    }
                    None => {
                        let _ = writeln!(out, "  # {what} will be written SOPS-encrypted");
                    }
                }
                let _ = writeln!(out, "  {} output \"{path}\"", paint("~"));
            }
            Action::CreateBackupJob { .. }
            | Action::UpdateBackupJob { .. }
            | Action::DeleteBackupJob { .. } => {
                out.push_str(&super::backups::plan_text(a, &paint));
            }
            Action::Sdn(_) | Action::ApplySdn { .. } => {
                out.push_str(&super::sdn::plan_text(a, &paint));
            }
            Action::Membership(m) => {
                out.push_str(&super::membership::plan_text(m, &paint));
            }
            Action::BootMetal { .. } | Action::UpgradeMetal { .. } => {
                out.push_str(&super::metal::plan_text(a, &paint));
            }
        }
    }
    let s = plan.summary;
    let adopt = if s.adopt > 0 {
        format!("{} to adopt, ", s.adopt)
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "\nPlan: {adopt}{} to add, {} to change, {} to replace, {} to destroy.",
        s.add, s.change, s.replace, s.destroy
    );
    out
}

fn quote(v: &str) -> String {
    if v == "(sensitive)" || (!v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())) {
        v.to_string()
    } else if v.contains('\n') {
        format!(
            "<<-EOT\n{}\n          EOT",
            v.lines()
                .map(|l| format!("          {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        )
    } else {
        format!("\"{v}\"")
    }
}
