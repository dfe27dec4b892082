//! `homelab-cli config resolve` (the fully resolved desired state) and `homelab-cli config
//! use` (install the decrypted talosconfig and kubeconfig for talosctl and kubectl).

use std::path::{Path, PathBuf};

use miette::miette;
use serde_yaml_ng::{Mapping, Value};

use crate::context::{Context, Exit, OutputFormat, print_json, print_text};
use crate::engine::image::FactoryNaming;
use crate::model::desired;
use crate::workspace::{ConfigArg, write_atomic};

/// Subcommands of `homelab-cli config`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Print the desired state after defaults and secrets (secret values redacted).
    Resolve(ResolveArgs),
    /// Install the generated talosconfig and kubeconfig (decrypted, mode 0600) into
    /// `$TALOSCONFIG` or ~/.talos/config and `$KUBECONFIG` or ~/.kube/config, merged with
    /// what is there.
    Use(UseArgs),
}

/// Flags of `config resolve`.
#[derive(Debug, clap::Args)]
pub struct ResolveArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Output format (text is YAML).
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Instead of the desired state, print every value of the (merged) document with the
    /// file and line that set it: homelab.yaml or the `--env` file.
    #[arg(long)]
    pub show_layers: bool,
    /// Instead of the desired state, print the effective machine configuration of this
    /// Talos node (generated, then patched in order), key material and secret values
    /// redacted.
    #[arg(long, value_name = "NAME", conflicts_with = "show_layers")]
    pub node: Option<String>,
}

/// Flags of `config use`.
#[derive(Debug, clap::Args)]
pub struct UseArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Only the talosconfig.
    #[arg(long, conflicts_with = "kube_only")]
    pub talos_only: bool,
    /// Only the kubeconfig.
    #[arg(long)]
    pub kube_only: bool,
}

/// Run a `homelab-cli config` subcommand.
pub async fn run(cmd: Command, _ctx: &Context) -> miette::Result<Exit> {
    match cmd {
        Command::Resolve(a) => resolve(a),
        Command::Use(a) => use_outputs(a),
    }
}

fn resolve(args: ResolveArgs) -> miette::Result<Exit> {
    let ws = args.config.open()?;
    if args.show_layers {
        return show_layers(&ws.loaded, args.output);
    }
    let secrets = ws.secrets()?;
    let mut d = desired::resolve(&ws.loaded, &secrets, &FactoryNaming::default())?;
    if let Some(node) = &args.node {
        return super::config_node::print_machine_config(&ws, &d, node, args.output);
    }
    for g in &mut d.guests {
        let redacted: Vec<(String, String)> = g
            .props
            .iter()
            .filter(|(k, _)| g.is_sensitive(k))
            .map(|(k, v)| (k.clone(), g.redact(k, v)))
            .collect();
        g.props.extend(redacted);
    }
    match args.output {
        OutputFormat::Json => print_json(&d)?,
        OutputFormat::Text => {
            let text = serde_yaml_ng::to_string(&d).map_err(|e| miette!("cannot render: {e}"))?;
            print_text(&text)?;
        }
    }
    Ok(Exit::Success)
}

/// `config resolve --show-layers`: `path: value  # file:line`, one value per line.
fn show_layers(loaded: &crate::model::Loaded, output: OutputFormat) -> miette::Result<Exit> {
    let rows = loaded.provenance();
    match output {
        OutputFormat::Json => print_json(&rows)?,
        OutputFormat::Text => {
            let width = rows
                .iter()
                .map(|r| r.path.len() + r.value.len() + 2)
                .filter(|w| *w <= 72)
                .max()
                .unwrap_or(0);
            let mut text = String::new();
            for r in &rows {
                let pair = format!("{}: {}", r.path, r.value);
                text.push_str(&format!(
                    "{pair:width$}  # {}:{}\n",
                    r.file.display(),
                    r.line
                ));
            }
            print_text(&text)?;
        }
    }
    Ok(Exit::Success)
}

fn use_outputs(args: UseArgs) -> miette::Result<Exit> {
    let ws = args.config.open()?;
    let c = &ws.loaded.config;
    let mut done = Vec::new();
    if !args.kube_only {
        let src = ws.loaded.relative(&c.outputs.talosconfig);
        let plain = ws.decrypt(&src)?.ok_or_else(|| no_output(&src))?;
        let text =
            std::str::from_utf8(&plain).map_err(|_| miette!("{} is not UTF-8", src.display()))?;
        let ours = talos_api::talosconfig::Talosconfig::from_yaml(text, &src.display().to_string())
            .map_err(|e| miette!("{e}"))?;
        let dest = talos_api::talosconfig::Talosconfig::default_path()
            .ok_or_else(|| miette!("neither TALOSCONFIG nor HOME is set"))?;
        let mut merged = if dest.exists() {
            talos_api::talosconfig::Talosconfig::load(&dest).map_err(|e| miette!("{e}"))?
        } else {
            talos_api::talosconfig::Talosconfig::default()
        };
        // Our own context (same CA) is replaced in place; an unrelated one of the same name is
        // kept and ours is renamed, as `talosctl config merge` does.
        for (name, ctx) in &ours.contexts {
            if merged
                .contexts
                .get(name)
                .is_some_and(|old| old.ca == ctx.ca)
            {
                merged.contexts.insert(name.clone(), ctx.clone());
                merged.context = name.clone();
            } else {
                let single = talos_api::talosconfig::Talosconfig::single(name, ctx.clone());
                for r in merged.merge(&single) {
                    eprintln!(
                        "talosconfig: context {} exists, installed as {}",
                        r.from, r.to
                    );
                }
            }
        }
        merged.save(&dest).map_err(|e| miette!("{e}"))?;
        done.push(format!(
            "talosconfig → {} (context {})",
            dest.display(),
            merged.context
        ));
    }
    if !args.talos_only {
        let src = ws.loaded.relative(&c.outputs.kubeconfig);
        let plain = ws.decrypt(&src)?.ok_or_else(|| no_output(&src))?;
        let text =
            std::str::from_utf8(&plain).map_err(|_| miette!("{} is not UTF-8", src.display()))?;
        let ours: Value =
            serde_yaml_ng::from_str(text).map_err(|e| miette!("{}: {e}", src.display()))?;
        let dest =
            kubeconfig_path().ok_or_else(|| miette!("neither KUBECONFIG nor HOME is set"))?;
        let existing: Value = match std::fs::read_to_string(&dest) {
            Ok(t) if !t.trim().is_empty() => {
                serde_yaml_ng::from_str(&t).map_err(|e| miette!("{}: {e}", dest.display()))?
            }
            _ => Value::Null,
        };
        let merged = merge_kubeconfig(existing, &ours);
        let out = serde_yaml_ng::to_string(&merged).map_err(|e| miette!("{e}"))?;
        write_atomic(&dest, out.as_bytes(), 0o600)?;
        let ctx = merged
            .get("current-context")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        done.push(format!("kubeconfig → {} (context {ctx})", dest.display()));
    }
    print_text(&format!("{}\n", done.join("\n")))?;
    Ok(Exit::Success)
}

fn no_output(p: &Path) -> miette::Report {
    miette!(
        help = "run `homelab-cli up` first; it writes the encrypted outputs",
        "{} does not exist",
        p.display()
    )
}

/// `$KUBECONFIG` (its first entry), else ~/.kube/config.
pub fn kubeconfig_path() -> Option<PathBuf> {
    if let Some(k) = std::env::var_os("KUBECONFIG").filter(|k| !k.is_empty()) {
        return std::env::split_paths(&k).next();
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".kube").join("config"))
}

/// Merge kubeconfig `ours` into `existing`: entries of `clusters`, `users`, `contexts` with
/// the same name are replaced, others kept; the current context becomes ours.
pub fn merge_kubeconfig(existing: Value, ours: &Value) -> Value {
    let mut root = match existing {
        Value::Mapping(m) => m,
        _ => {
            let mut m = Mapping::new();
            m.insert("apiVersion".into(), "v1".into());
            m.insert("kind".into(), "Config".into());
            m
        }
    };
    for list in ["clusters", "users", "contexts"] {
        let mut items: Vec<Value> = root
            .get(list)
            .and_then(Value::as_sequence)
            .cloned()
            .unwrap_or_default();
        for item in ours
            .get(list)
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            let name = item.get("name").cloned();
            match items.iter_mut().find(|i| i.get("name") == name.as_ref()) {
                Some(slot) => *slot = item.clone(),
                None => items.push(item.clone()),
            }
        }
        root.insert(list.into(), Value::Sequence(items));
    }
    if let Some(cur) = ours.get("current-context") {
        root.insert("current-context".into(), cur.clone());
    }
    Value::Mapping(root)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn kubeconfig_merge_keeps_others_and_replaces_ours() {
        let existing: Value = serde_yaml_ng::from_str(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: work\n  cluster: {server: https://w}\n- name: homelab\n  cluster: {server: https://old}\nusers:\n- name: me\n  user: {}\ncontexts:\n- name: work\n  context: {cluster: work, user: me}\ncurrent-context: work\npreferences: {}\n",
        )
        .unwrap();
        let ours: Value = serde_yaml_ng::from_str(
            "clusters:\n- name: homelab\n  cluster: {server: https://new}\nusers:\n- name: admin@homelab\n  user: {}\ncontexts:\n- name: admin@homelab\n  context: {cluster: homelab, user: admin@homelab}\ncurrent-context: admin@homelab\n",
        )
        .unwrap();
        let m = merge_kubeconfig(existing, &ours);
        let clusters = m["clusters"].as_sequence().unwrap();
        assert_eq!(clusters.len(), 2);
        assert_eq!(clusters[1]["cluster"]["server"], Value::from("https://new"));
        assert_eq!(m["users"].as_sequence().unwrap().len(), 2);
        assert_eq!(m["contexts"].as_sequence().unwrap().len(), 2);
        assert_eq!(m["current-context"], Value::from("admin@homelab"));
        assert!(m.get("preferences").is_some());
        // Idempotent.
        let again = merge_kubeconfig(m.clone(), &ours);
        assert_eq!(again, m);
    }
}
