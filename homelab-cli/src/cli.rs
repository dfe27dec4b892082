//! The command-line grammar. Each subcommand's flags live in its module under `commands/`.

use clap::{Parser, Subcommand};

use crate::commands;
use crate::context::GlobalArgs;

/// Take a homelab from a git repository to a running Proxmox VE lab with a Talos
/// Kubernetes cluster, every secret kept SOPS/age-encrypted in git.
#[derive(Debug, Parser)]
#[command(
    name = "homelab-cli",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Every top-level command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Scaffold a homelab repository: homelab.yaml, .sops.yaml, an age key, .gitignore.
    Init(commands::init::Args),
    /// Validate homelab.yaml and the repository (resources, clashes, plaintext secrets).
    Check(commands::check::Args),
    /// Show what `up` would change.
    Plan(commands::plan::Args),
    /// Reconcile the lab with homelab.yaml.
    Up(commands::up::Args),
    /// Destroy the guests this homelab owns.
    Down(commands::down::Args),
    /// Show guests, addresses, Talos and Kubernetes health.
    Status(commands::status::Args),
    /// Print the JSON Schema of homelab.yaml.
    Schema(commands::schema::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(commands::completions::Args),
    /// Resolve the configuration, or install generated talosconfig/kubeconfig.
    #[command(subcommand)]
    Config(commands::config::Command),
    /// Install git hooks (a pre-commit check for plaintext secrets).
    #[command(subcommand)]
    Hooks(commands::hooks::Command),
    /// Encrypt, decrypt and edit SOPS files with age keys (sops-compatible).
    #[command(subcommand)]
    Secrets(commands::secrets::Command),
    /// Back up declared guests now (vzdump) and list the archives.
    #[command(subcommand)]
    Backup(commands::backup::Command),
    /// Adopt existing containers: add their declarations to homelab.yaml (`up` then takes
    /// ownership without restarting them).
    Import(commands::import::Args),
    /// Talos Image Factory: schematic IDs, asset URLs, downloads, extensions.
    #[command(subcommand)]
    Image(commands::image::Command),
    /// Talos: secrets bundle, machine configs, apply, bootstrap, kubeconfig, health.
    #[command(subcommand)]
    Talos(commands::talos::Command),
    /// Proxmox VE administration (API tokens for provisioning).
    #[command(subcommand)]
    Proxmox(commands::proxmox::Command),
    /// Network-boot the `talos.metal` machines (DHCP, TFTP, HTTP).
    #[command(subcommand)]
    Pxe(commands::pxe::Command),
    /// The simulated lab (Proxmox VE, Image Factory, Talos nodes) on loopback.
    #[cfg(feature = "sim")]
    #[command(subcommand)]
    Sim(commands::sim::Command),
    /// First-boot handoff: serve VMs their spec against their provisioning token.
    #[command(subcommand)]
    Handoff(commands::handoff::Command),
}
