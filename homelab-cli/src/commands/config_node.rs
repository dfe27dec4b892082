//! `homelab-cli config resolve --node NAME`: the effective machine configuration of one
//! Talos node (generated from the secrets bundle, then patched in the documented order),
//! with key material and values from `${secret:...}` redacted.

use miette::miette;
use serde_yaml_ng::Value;

use crate::context::{Exit, OutputFormat, print_json, print_text};
use crate::engine::talos;
use crate::model::desired::Desired;
use crate::model::patches;
use crate::workspace::Workspace;

/// Print the effective machine config of `node`.
pub fn print_machine_config(
    ws: &Workspace,
    d: &Desired,
    node: &str,
    output: OutputFormat,
) -> miette::Result<Exit> {
    let cluster = d
        .talos
        .as_ref()
        .ok_or_else(|| miette!("homelab.yaml has no `talos` section"))?;
    let guest = d
        .guests
        .iter()
        .find(|g| g.talos.is_some() && g.name == node);
    let metal = cluster.metal.iter().find(|m| m.name == node);
    if guest.is_none() && metal.is_none() {
        let names: Vec<&str> = d
            .guests
            .iter()
            .filter(|g| g.talos.is_some())
            .map(|g| g.name.as_str())
            .chain(cluster.metal.iter().map(|m| m.name.as_str()))
            .collect();
        return Err(miette!(
            help = format!("Talos nodes: {}", names.join(", ")),
            "no Talos node named `{node}`"
        ));
    }
    let bundle = match ws.decrypt(&cluster.secrets_file)? {
        Some(plain) => {
            let text = std::str::from_utf8(&plain)
                .map_err(|_| miette!("{} is not UTF-8", cluster.secrets_file.display()))?;
            talos::bundle_from_yaml(text)
                .map_err(|e| miette!("{}: {e}", cluster.secrets_file.display()))?
        }
        None => {
            // Before the first `up` there is no bundle: its values are redacted anyway, so a
            // throw-away one shows the same shape (nothing is written).
            eprintln!(
                "note: {} does not exist yet; key material below comes from a throw-away bundle",
                cluster.secrets_file.display()
            );
            // An ECDSA service-account key: RSA-4096 takes long and is not shown anyway.
            use talos_api::secrets::{SecretsBundle, SecretsOptions, ServiceAccountKeyKind};
            SecretsBundle::generate_with(
                &SecretsOptions::default().service_account(ServiceAccountKeyKind::EcdsaP256),
            )
            .map_err(|e| miette!("cannot generate a secrets bundle: {e}"))?
        }
    };
    let (config, member_patches) = match (guest, metal) {
        (Some(g), _) => (
            talos::machine_config(cluster, g, &bundle),
            g.talos
                .as_ref()
                .map(|t| t.patches.clone())
                .unwrap_or_default(),
        ),
        (None, Some(m)) => (
            crate::engine::metal::metal_machine_config(
                cluster,
                &crate::engine::metal::metal_installer(cluster),
                None,
                m,
                &bundle,
            ),
            cluster.metal_patches.for_role(m.role).clone(),
        ),
        (None, None) => return Err(miette!("no Talos node named `{node}`")),
    };
    let config = config.map_err(|e| {
        miette!(
            help = "fix the patch at the file and line named here, then run `homelab-cli config resolve --node NAME` again",
            "machine config of {node}: {e}"
        )
    })?;
    let mut docs: Vec<Value> = config.documents().to_vec();
    for doc in &mut docs {
        patches::redact(doc, &member_patches.secret_values);
    }
    let warnings = config
        .validate()
        .map_err(|e| miette!("machine config of {node} is not valid: {e}"))?;
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    match output {
        OutputFormat::Json => print_json(&docs)?,
        OutputFormat::Text => {
            let mut text = format!(
                "# effective machine config of {node}; patches applied in order: {}\n",
                if member_patches.parts.is_empty() {
                    "none".to_string()
                } else {
                    member_patches.origins().join(", ")
                }
            );
            for (i, doc) in docs.iter().enumerate() {
                if i > 0 {
                    text.push_str("---\n");
                }
                text.push_str(
                    &serde_yaml_ng::to_string(doc).map_err(|e| miette!("cannot render: {e}"))?,
                );
            }
            print_text(&text)?;
        }
    }
    Ok(Exit::Success)
}
