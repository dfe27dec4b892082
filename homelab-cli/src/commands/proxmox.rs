//! `homelab-cli proxmox ...`: Proxmox VE administration for provisioning.
//!
//! `proxmox token create` sets up least-privilege API access for `homelab-cli up`: a user
//! (`homelab@pve`), a role holding only the privileges the engine's operations need
//! ([`ROLE_PRIVILEGES`]), the ACL granting it, and an API token, whose secret is written
//! SOPS-encrypted (never in plaintext) into the repository's secrets file. Every step is
//! observed first and skipped when already in place, so a re-run changes nothing.
//!
//! The planning is a pure function ([`plan`]) from what the server has ([`Observed`]) and
//! what is wanted ([`TokenSpec`]) to [`Step`]s; only [`run`] talks to the API.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use miette::{IntoDiagnostic, WrapErr, miette};
use proxmox_client::requests::{AclUpdate, UserCreate};
use proxmox_client::{Client, ClientBuilder, ParamValue};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use sops_age::{EncryptOptions, Format, Identities};
use zeroize::Zeroizing;

use crate::context::{self, Context, Exit, OutputFormat};
use crate::workspace;

mod ssh;
mod token;
use ssh::{SnippetCommand, SshFingerprintArgs};
pub use token::{Observed, Step, Stored, TokenSpec, plan};

/// The provisioning role's privileges (PVE 9 names), each with the operation that needs it.
///
/// Derived from the audit of the real handlers (docs/pve-audit.md): each entry names the
/// handler that checks it. `Datastore.Allocate` is not in this role: pve-manager
/// `API2/Backup.pm` wants it only on the backup job's storage, so `token create` grants
/// the built-in [`STORAGE_ROLE`] on `/storage/<backup storage>` alone ([`TokenSpec::
/// backup_storages`]). Left out on purpose: `Permissions.Modify`, `User.Modify`,
/// `Sys.Console`, `Sys.PowerMgmt`, `VM.Migrate`, `VM.Snapshot*`,
/// `VM.GuestAgent.File*`/`Unrestricted`, `SDN.Allocate`, `Pool.Allocate`. Snippets are
/// uploaded over SFTP, not through the API.
pub const ROLE_PRIVILEGES: &[(&str, &str)] = &[
    (
        "Datastore.AllocateSpace",
        "new disks, cloud-init drives, container volumes and resizes (qemu-server Qemu.pm $check_storage_access, resize_vm; pve-container LXC.pm check_ct_modify_config_perm, resize_vm)",
    ),
    (
        "Datastore.AllocateTemplate",
        "download cloud images, Talos ISOs and CT templates (pve-storage API2/Storage/Status.pm download_url, upload)",
    ),
    (
        "Datastore.Audit",
        "list storages and their content (pve-storage API2/Storage/Content.pm index, Status.pm index)",
    ),
    (
        "Mapping.Audit",
        "read PCI resource mappings for GPU passthrough (pve-manager API2/Cluster/Mapping/PCI.pm index)",
    ),
    (
        "Mapping.Modify",
        "create the cluster PCI mapping of a device passed through by address (Mapping/PCI.pm create, update)",
    ),
    (
        "Mapping.Use",
        "attach mapped PCI devices to VMs and clone them (qemu-server check_vm_create_hostpci_perm, check_mapping_access)",
    ),
    (
        "Pool.Audit",
        "see resource pools and their members during observe (pve-manager API2/Pool.pm index)",
    ),
    (
        "SDN.Use",
        "attach network interfaces to bridges and VNets: /sdn/zones/localnetwork/<bridge> (pve-guest-common GuestHelpers.pm check_vnet_access)",
    ),
    (
        "Sys.AccessNetwork",
        "let the node fetch URLs (download-url) when Sys.Modify is left out (pve-storage Status.pm download_url)",
    ),
    (
        "Sys.Audit",
        "read nodes, cluster resources, host PCI devices, tasks and backup jobs (pve-manager API2/Nodes.pm, Cluster.pm resources, Backup.pm index; download_url with Sys.Modify)",
    ),
    (
        "Sys.Modify",
        "create and update vzdump jobs (pve-manager API2/Backup.pm create_job, update_job; with bwlimit/ionice/performance too); a VM's `startup` order (qemu-server $check_vm_modify_config_perm); with Sys.Audit, download-url",
    ),
    (
        "VM.Allocate",
        "create and destroy guests, convert them to templates, set container nesting (qemu-server create_vm, destroy_vm, template; pve-container create_vm, check_ct_modify_config_perm)",
    ),
    (
        "VM.Audit",
        "read guest configuration and status (qemu-server/pve-container vm_config, vm_status)",
    ),
    (
        "VM.Backup",
        "put guests and pools into backup jobs (pve-manager API2/Backup.pm create_job: /pool/<pool>; vzdump)",
    ),
    (
        "VM.Clone",
        "clone VMs from gold templates (qemu-server clone_vm)",
    ),
    (
        "VM.Config.CDROM",
        "attach Talos ISOs and cloud-init drives (qemu-server update_vm, cdrom drives)",
    ),
    (
        "VM.Config.CPU",
        "set cores, sockets and CPU type (qemu-server $check_vm_modify_config_perm $cpuoptions; pve-container cores)",
    ),
    (
        "VM.Config.Cloudinit",
        "set cloud-init user, SSH keys, IP configuration, cicustom ($cloudinitoptions, ipconfigN)",
    ),
    (
        "VM.Config.Disk",
        "add, import and resize disks; boot order; container mount points (qemu-server resize_vm, $diskoptions; pve-container rootfs/mpN)",
    ),
    (
        "VM.Config.HWType",
        "set machine, SCSI controller, VGA, RNG, serial console ($hwtypeoptions)",
    ),
    (
        "VM.Config.Memory",
        "set memory, balloon and swap ($memoryoptions; pve-container memory/swap)",
    ),
    (
        "VM.Config.Network",
        "set network interfaces, hostname and DNS (netN; pve-container netN, hostname, nameserver)",
    ),
    (
        "VM.Config.Options",
        "set name, tags, description (ownership marker), onboot, agent, BIOS, ostype ($generaloptions; pve-container other options and resize's `disk`)",
    ),
    (
        "VM.GuestAgent.Audit",
        "read guest addresses through the QEMU guest agent (qemu-server API2/Qemu/Agent.pm network-get-interfaces)",
    ),
    (
        "VM.PowerMgmt",
        "start, stop, shut down and reboot guests; create with start=1 (qemu-server vm_start etc., create_vm)",
    ),
];

/// The built-in role `token create` grants on `/storage/<backup storage>`: its
/// `Datastore.Allocate` is what pve-manager `API2/Backup.pm`
/// (`assert_param_permission_create/update`) wants on a backup job's storage (`local`
/// when the job names none). PVE's deepest ACL wins, and on `/storage/*` only
/// `Datastore.*` privileges are ever checked, all of which it holds.
pub const STORAGE_ROLE: &str = "PVEDatastoreAdmin";

/// Why [`STORAGE_ROLE`] is granted on a backup storage.
pub const STORAGE_ALLOCATE_WHY: &str = "create and update vzdump jobs writing to that storage (pve-manager API2/Backup.pm assert_param_permission_create/update; `local` when a job names none)";

/// The privilege names of the provisioning role, sorted (with backup jobs).
pub fn privileges() -> Vec<&'static str> {
    privileges_for(true)
}

/// The privilege names of the provisioning role, sorted. PVE guards `/cluster/backup`
/// writes with `Sys.Modify` on `/`; without backup jobs the role drops `Sys.Modify` and
/// `VM.Backup` and takes the narrower `Sys.AccessNetwork` for `download-url` (which
/// `Sys.Audit` + `Sys.Modify` cover otherwise).
pub fn privileges_for(backup_jobs: bool) -> Vec<&'static str> {
    let mut v: Vec<&str> = ROLE_PRIVILEGES
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| {
            if backup_jobs {
                *p != "Sys.AccessNetwork"
            } else {
                !matches!(*p, "Sys.Modify" | "VM.Backup")
            }
        })
        .collect();
    v.sort_unstable();
    v
}

/// Subcommands of `homelab-cli proxmox`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// API tokens for provisioning.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Print the privileges of the provisioning role and why each is needed.
    Privileges(PrivilegesArgs),
    /// Cloud-init snippets on a node's snippet storage, over SFTP (host key pinned).
    #[command(subcommand)]
    Snippet(SnippetCommand),
    /// Print the SSH host key fingerprint a node presents, to pin it (verify it on the
    /// node's console: `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`).
    SshFingerprint(SshFingerprintArgs),
}

/// Subcommands of `homelab-cli proxmox token`.
#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Create (idempotently) a user, a least-privilege role, the ACLs and an API token, and
    /// write the token SOPS-encrypted.
    Create(Box<CreateArgs>),
}

/// `homelab-cli proxmox privileges`.
#[derive(Debug, clap::Args)]
pub struct PrivilegesArgs {
    /// The role without backup-job management (no `Sys.Modify`, no `VM.Backup`).
    #[arg(long)]
    pub no_backup_jobs: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// How to reach the Proxmox VE API as an administrator. Secrets come from the
/// environment only: `PROXMOX_VE_API_TOKEN` (`user@realm!id=secret`) or
/// `PROXMOX_VE_USERNAME` + `PROXMOX_VE_PASSWORD`.
#[derive(Debug, Clone, clap::Args)]
pub struct Connection {
    /// API URL, e.g. `https://pve.lan:8006`.
    #[arg(long, env = proxmox_client::ENV_ENDPOINT)]
    pub endpoint: Option<String>,
    /// Pin the node certificate's SHA-256 fingerprint (`AA:BB:...`, as `GET /nodes` shows).
    #[arg(long, env = proxmox_client::ENV_FINGERPRINT)]
    pub fingerprint: Option<String>,
    /// Trust this PEM CA file (in addition to the system roots).
    #[arg(long, env = proxmox_client::ENV_CA_FILE)]
    pub ca_file: Option<PathBuf>,
    /// Administrator for a ticket login (password from `PROXMOX_VE_PASSWORD`).
    #[arg(long, env = proxmox_client::ENV_USERNAME)]
    pub username: Option<String>,
    /// Do not verify the server certificate (dangerous; prefer --fingerprint).
    #[arg(long)]
    pub insecure: bool,
}

impl Connection {
    /// The setting for a `PROXMOX_VE_*` variable: the flag if given, else the environment.
    fn lookup(&self, key: &str) -> Option<String> {
        let env = || std::env::var(key).ok();
        match key {
            proxmox_client::ENV_ENDPOINT => self.endpoint.clone().or_else(env),
            proxmox_client::ENV_FINGERPRINT => self.fingerprint.clone().or_else(env),
            proxmox_client::ENV_CA_FILE => self
                .ca_file
                .as_ref()
                .map(|p| p.display().to_string())
                .or_else(env),
            proxmox_client::ENV_USERNAME => self.username.clone().or_else(env),
            proxmox_client::ENV_INSECURE if self.insecure => Some("1".into()),
            _ => env(),
        }
    }

    /// Build the admin client: flags first, then the `PROXMOX_VE_*` environment.
    pub fn client(&self) -> miette::Result<Client> {
        if self.insecure {
            eprintln!(
                "warning: --insecure: the server certificate is NOT verified; anyone on the path can read the new token"
            );
        }
        ClientBuilder::from_lookup(|k| self.lookup(k))
            .build()
            .map_err(|e| {
                miette!(
                    help = "set PROXMOX_VE_ENDPOINT and PROXMOX_VE_API_TOKEN (user@realm!id=secret) of an administrator, and PROXMOX_VE_FINGERPRINT for a self-signed certificate",
                    "cannot configure the Proxmox VE client: {e}"
                )
            })
    }

    /// A client for the same server and TLS trust, authenticated with another token.
    fn token_client(&self, token_id: &str, secret: &SecretString) -> miette::Result<Client> {
        let token = Zeroizing::new(format!("{token_id}={}", secret.expose_secret()));
        ClientBuilder::from_lookup(|k| match k {
            proxmox_client::ENV_API_TOKEN => Some(token.to_string()),
            proxmox_client::ENV_USERNAME | proxmox_client::ENV_PASSWORD => None,
            _ => self.lookup(k),
        })
        .build()
        .map_err(|e| miette!("cannot build a client for the stored token: {e}"))
    }
}

/// `homelab-cli proxmox token create`.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// The user owning the token (created without a password when missing).
    #[arg(long, default_value = "homelab@pve")]
    pub user: String,
    /// The role holding the provisioning privileges (see `homelab-cli proxmox privileges`).
    #[arg(long, default_value = "HomelabProvisioner")]
    pub role: String,
    /// The token's name (the part after `!`).
    #[arg(long, default_value = "homelab")]
    pub token_id: String,
    /// The ACL path the role is granted on (propagating to everything below).
    #[arg(long, default_value = "/")]
    pub path: String,
    /// Privilege separation: the token gets its own ACL instead of the user's full rights.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub privsep: bool,
    /// SOPS file (YAML or JSON) to write `proxmox.endpoint`, `proxmox.token_id`,
    /// `proxmox.token_secret` (and `proxmox.fingerprint`) into; other keys are kept.
    #[arg(long, short = 'o', default_value = "secrets.enc.yaml")]
    pub output: PathBuf,
    /// age recipient(s) for a new file (comma separated or repeated); default: the
    /// `.sops.yaml` creation rule for the file, then `SOPS_AGE_RECIPIENTS`.
    #[arg(long = "age", value_delimiter = ',')]
    pub age: Vec<String>,
    /// Replace an existing token whose secret is not in the output file (or no longer works).
    #[arg(long)]
    pub rotate: bool,
    /// Leave backup-job management out of the role (no `Sys.Modify`, no `VM.Backup`).
    #[arg(long)]
    pub no_backup_jobs: bool,
    /// Storages backup jobs write to (comma separated or repeated): each gets the
    /// built-in PVEDatastoreAdmin role on `/storage/<id>`, as PVE wants
    /// `Datastore.Allocate` there (not on `/`). Ignored with --no-backup-jobs.
    #[arg(
        long = "backup-storage",
        value_delimiter = ',',
        default_value = "local"
    )]
    pub backup_storages: Vec<String>,
}

/// Run a `homelab-cli proxmox` subcommand.
pub async fn run(cmd: Command, ctx: &Context) -> miette::Result<Exit> {
    match cmd {
        Command::Privileges(args) => print_privileges(&args),
        Command::Token(TokenCommand::Create(args)) => token_create(*args, ctx).await,
        Command::Snippet(SnippetCommand::Upload(args)) => ssh::snippet_upload(*args).await,
        Command::SshFingerprint(args) => ssh::ssh_fingerprint(&args).await,
    }
}

#[derive(Serialize)]
struct PrivilegeOut {
    privilege: &'static str,
    needed_for: &'static str,
}

fn print_privileges(args: &PrivilegesArgs) -> miette::Result<Exit> {
    let names = privileges_for(!args.no_backup_jobs);
    let mut list: Vec<PrivilegeOut> = ROLE_PRIVILEGES
        .iter()
        .filter(|(p, _)| names.contains(p))
        .map(|(p, why)| PrivilegeOut {
            privilege: p,
            needed_for: why,
        })
        .collect();
    list.sort_by_key(|p| p.privilege);
    match args.output {
        OutputFormat::Json => context::print_json(&list)?,
        OutputFormat::Text => {
            let width = list.iter().map(|p| p.privilege.len()).max().unwrap_or(0);
            let mut s = String::new();
            for p in &list {
                s.push_str(&format!(
                    "{:width$}  {}\n",
                    p.privilege,
                    p.needed_for,
                    width = width
                ));
            }
            if !args.no_backup_jobs {
                s.push_str(&format!(
                    "\nOn /storage/<backup storage> only (built-in {STORAGE_ROLE}, --backup-storage):\n{:width$}  {STORAGE_ALLOCATE_WHY}\n",
                    "Datastore.Allocate",
                    width = width
                ));
            }
            context::print_text(&s)?;
        }
    }
    Ok(Exit::Success)
}

/// The secret values of the output file.
struct Secrets {
    endpoint: String,
    token_id: String,
    token_secret: SecretString,
    fingerprint: Option<String>,
}

async fn token_create(args: CreateArgs, _ctx: &Context) -> miette::Result<Exit> {
    let spec = TokenSpec {
        user: args.user.clone(),
        role: args.role.clone(),
        token_id: args.token_id.clone(),
        path: args.path.clone(),
        privsep: args.privsep,
        privileges: privileges_for(!args.no_backup_jobs)
            .into_iter()
            .map(String::from)
            .collect(),
        backup_storages: if args.no_backup_jobs {
            Vec::new()
        } else {
            args.backup_storages.clone()
        },
    };
    spec.validate().map_err(|e| miette!("{e}"))?;
    let format = workspace::format_of(&args.output);
    if !matches!(format, Format::Yaml | Format::Json) {
        return Err(miette!(
            "--output {}: use a .yaml or .json SOPS file",
            args.output.display()
        ));
    }
    let client = args.connection.client()?;
    let endpoint = client
        .base_url()
        .as_str()
        .trim_end_matches('/')
        .trim_end_matches("/api2/json")
        .to_string();
    let fingerprint = args
        .connection
        .fingerprint
        .clone()
        .or_else(|| std::env::var(proxmox_client::ENV_FINGERPRINT).ok())
        .filter(|f| !f.trim().is_empty());

    // Read the output file first: a file we cannot decrypt, or no recipients for a new
    // one, must stop us before a token secret exists that we could not store.
    let existing = read_existing(&args.output)?;
    let encrypt_opts = match &existing {
        Some(_) => None,
        None => Some(recipients(&args.output, &args.age)?),
    };

    let full = spec.full_token_id();
    let mut observed = observe(&client, &spec).await?;
    if observed.token.is_some()
        && let Some(file) = &existing
        && stored_token_id(file).as_deref() == Some(full.as_str())
    {
        observed.stored = check_stored(&args.connection, file, &full).await?;
    }
    let steps = plan(&spec, &observed, args.rotate, &args.output).map_err(|e| miette!("{e}"))?;

    let mut report = Vec::new();
    let mut new_secret: Option<SecretString> = None;
    for step in &steps {
        apply(&client, &spec, step, &mut new_secret)
            .await
            .wrap_err_with(|| format!("step {step:?} failed"))?;
        report.push(describe(&spec, step));
        // Store the secret before anything else can fail.
        if let (Step::CreateToken, Some(secret)) = (step, &new_secret) {
            let secrets = Secrets {
                endpoint: endpoint.clone(),
                token_id: full.clone(),
                token_secret: secret.clone(),
                fingerprint: fingerprint.clone(),
            };
            write_secrets(
                &args.output,
                existing.as_ref(),
                encrypt_opts.as_ref(),
                &secrets,
            )?;
            report.push(format!(
                "wrote {} (SOPS-encrypted token secret)",
                args.output.display()
            ));
        }
    }
    if new_secret.is_none()
        && let Some(file) = &existing
    {
        // Token unchanged: keep the non-secret fields current.
        let mut file = Decrypted::reopen(file)?;
        let mut changed = file.set_str("endpoint", &endpoint)?;
        if let Some(fp) = &fingerprint {
            changed |= file.set_str("fingerprint", fp)?;
        }
        if changed {
            file.write(&args.output)?;
            report.push(format!("updated endpoint in {}", args.output.display()));
        }
    }
    if report.is_empty() {
        context::print_text(&format!(
            "Token {full} with role {} on {} is in place; nothing to do.\n",
            spec.role, spec.path
        ))?;
    } else {
        let mut s = String::new();
        for line in report {
            s.push_str(&line);
            s.push('\n');
        }
        context::print_text(&s)?;
    }
    Ok(Exit::Success)
}

fn describe(spec: &TokenSpec, step: &Step) -> String {
    let full = spec.full_token_id();
    match step {
        Step::CreateUser => format!("created user {}", spec.user),
        Step::CreateRole => format!(
            "created role {} ({} privileges)",
            spec.role,
            spec.privileges.len()
        ),
        Step::SetRolePrivileges { add, remove } => format!(
            "updated role {}: +[{}] -[{}]",
            spec.role,
            add.join(","),
            remove.join(",")
        ),
        Step::GrantUser => format!(
            "granted {} to user {} on {}",
            spec.role, spec.user, spec.path
        ),
        Step::DeleteToken => format!("deleted token {full} (rotation)"),
        Step::SetPrivsep => format!("set privsep={} on token {full}", u8::from(spec.privsep)),
        Step::CreateToken => format!("created token {full} (privsep={})", u8::from(spec.privsep)),
        Step::GrantToken => format!("granted {} to token {full} on {}", spec.role, spec.path),
        Step::GrantUserStorage { storage } => {
            format!(
                "granted {STORAGE_ROLE} to user {} on /storage/{storage}",
                spec.user
            )
        }
        Step::GrantTokenStorage { storage } => {
            format!("granted {STORAGE_ROLE} to token {full} on /storage/{storage}")
        }
    }
}

fn api_err(what: &str, e: proxmox_client::Error) -> miette::Report {
    miette!("{what}: {e}")
}

/// Read the user, role, ACL and token state in four GETs.
async fn observe(client: &Client, spec: &TokenSpec) -> miette::Result<Observed> {
    let access = client.access();
    let users = access
        .users()
        .await
        .map_err(|e| api_err("GET /access/users", e))?;
    let user = users.iter().any(|u| u.userid == spec.user);
    let roles = access
        .roles()
        .await
        .map_err(|e| api_err("GET /access/roles", e))?;
    let role = roles.iter().find(|r| r.roleid == spec.role);
    let acl = access
        .acl()
        .await
        .map_err(|e| api_err("GET /access/acl", e))?;
    let full = spec.full_token_id();
    let has = |kind: &str, id: &str| {
        acl.iter().any(|e| {
            e.path == spec.path
                && e.kind == kind
                && e.ugid == id
                && e.roleid == spec.role
                && e.propagate.unwrap_or(true)
        })
    };
    let token = if user {
        access
            .tokens(&spec.user)
            .await
            .map_err(|e| api_err(&format!("GET /access/users/{}/token", spec.user), e))?
            .into_iter()
            .find(|t| t.tokenid == spec.token_id)
            .map(|t| t.privsep.unwrap_or(true))
    } else {
        None
    };
    let storage_acls = |kind: &str, id: &str| -> BTreeSet<String> {
        spec.backup_storages
            .iter()
            .filter(|s| {
                let path = format!("/storage/{s}");
                acl.iter().any(|e| {
                    e.path == path && e.kind == kind && e.ugid == id && e.roleid == STORAGE_ROLE
                })
            })
            .cloned()
            .collect()
    };
    Ok(Observed {
        user_storage_acls: storage_acls("user", &spec.user),
        token_storage_acls: storage_acls("token", &full),
        user,
        role: role.map(|r| {
            r.privs
                .as_deref()
                .unwrap_or("")
                .split([',', ' ', ';'])
                .filter(|p| !p.is_empty())
                .map(String::from)
                .collect()
        }),
        role_builtin: role.and_then(|r| r.special).unwrap_or(false),
        user_acl: has("user", &spec.user),
        token,
        token_acl: has("token", &full),
        stored: Stored::Missing,
    })
}

async fn apply(
    client: &Client,
    spec: &TokenSpec,
    step: &Step,
    new_secret: &mut Option<SecretString>,
) -> miette::Result<()> {
    let access = client.access();
    let privs: Vec<&str> = spec.privileges.iter().map(String::as_str).collect();
    let full = spec.full_token_id();
    match step {
        Step::CreateUser => access
            .create_user(&UserCreate {
                userid: spec.user.clone(),
                password: None,
                comment: Some("homelab provisioning (API token only)".into()),
                enable: Some(true),
                expire: None,
                groups: Vec::new(),
            })
            .await
            .map_err(|e| api_err("POST /access/users", e)),
        Step::CreateRole => access
            .create_role(&spec.role, &privs)
            .await
            .map_err(|e| api_err("POST /access/roles", e)),
        Step::SetRolePrivileges { .. } => access
            .update_role(&spec.role, &privs, false)
            .await
            .map_err(|e| api_err(&format!("PUT /access/roles/{}", spec.role), e)),
        Step::GrantUser | Step::GrantToken => {
            let mut acl = AclUpdate {
                path: spec.path.clone(),
                roles: vec![spec.role.clone()],
                propagate: Some(true),
                ..Default::default()
            };
            if *step == Step::GrantUser {
                acl.users = vec![spec.user.clone()];
            } else {
                acl.tokens = vec![full];
            }
            access
                .update_acl(&acl)
                .await
                .map_err(|e| api_err("PUT /access/acl", e))
        }
        Step::GrantUserStorage { storage } | Step::GrantTokenStorage { storage } => {
            let mut acl = AclUpdate {
                path: format!("/storage/{storage}"),
                roles: vec![STORAGE_ROLE.to_string()],
                propagate: Some(true),
                ..Default::default()
            };
            if matches!(step, Step::GrantUserStorage { .. }) {
                acl.users = vec![spec.user.clone()];
            } else {
                acl.tokens = vec![full];
            }
            access
                .update_acl(&acl)
                .await
                .map_err(|e| api_err("PUT /access/acl", e))
        }
        Step::DeleteToken => access
            .delete_token(&spec.user, &spec.token_id)
            .await
            .map_err(|e| api_err("DELETE token", e)),
        Step::SetPrivsep => client
            .put::<serde_json::Value>(
                &format!("/access/users/{}/token/{}", spec.user, spec.token_id),
                &[("privsep", ParamValue::from(spec.privsep))],
            )
            .await
            .map(|_| ())
            .map_err(|e| api_err("PUT token", e)),
        Step::CreateToken => {
            let token = access
                .create_token(
                    &spec.user,
                    &spec.token_id,
                    spec.privsep,
                    Some("created by homelab-cli proxmox token create"),
                )
                .await
                .map_err(|e| api_err("POST token", e))?;
            *new_secret = Some(token.value);
            Ok(())
        }
    }
}

/// Whether the stored secret still authenticates (one `GET /version` with the token).
async fn check_stored(conn: &Connection, file: &[u8], full: &str) -> miette::Result<Stored> {
    let d = Decrypted::reopen(file)?;
    let Some(secret) = d.get_secret("token_secret") else {
        return Ok(Stored::Missing);
    };
    match conn.token_client(full, &secret)?.version().await {
        Ok(_) => Ok(Stored::Valid),
        Err(proxmox_client::Error::Auth { .. }) => Ok(Stored::Rejected),
        Err(e) => Err(miette!("checking the stored token: {e}")),
    }
}

fn read_existing(path: &Path) -> miette::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(data) => {
            // Fail now (before creating anything) when we cannot open it.
            Decrypted::reopen(&data).wrap_err_with(|| {
                format!(
                    "{} exists but cannot be decrypted to merge the token into it",
                    path.display()
                )
            })?;
            Ok(Some(data))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(miette!("cannot read {}: {e}", path.display())),
    }
}

fn stored_token_id(file: &[u8]) -> Option<String> {
    let d = Decrypted::reopen(file).ok()?;
    d.get_secret("token_id")
        .map(|s| s.expose_secret().to_string())
}

/// Encryption options for a new output file: `--age`, else `.sops.yaml`, else
/// `SOPS_AGE_RECIPIENTS`.
fn recipients(output: &Path, age: &[String]) -> miette::Result<EncryptOptions> {
    let request = sops_age::Resolve {
        flags: age,
        environment: true,
        ..Default::default()
    };
    if let Some((opts, _)) =
        sops_age::encrypt_options_for(&workspace::absolute(output), &request)
            .map_err(|e| miette!("no age recipients for {}: {e}", output.display()))?
    {
        return Ok(opts);
    }
    Err(miette!(
        help = "pass --age age1..., or add a creation rule to .sops.yaml (see `homelab-cli init`)",
        "no age recipients to encrypt {} to",
        output.display()
    ))
}

fn write_secrets(
    path: &Path,
    existing: Option<&Vec<u8>>,
    opts: Option<&EncryptOptions>,
    s: &Secrets,
) -> miette::Result<()> {
    if let Some(data) = existing {
        let mut file = Decrypted::reopen(data)?;
        file.set_str("endpoint", &s.endpoint)?;
        file.set_str("token_id", &s.token_id)?;
        file.set_str("token_secret", s.token_secret.expose_secret())?;
        if let Some(fp) = &s.fingerprint {
            file.set_str("fingerprint", fp)?;
        }
        return file.write(path);
    }
    let opts = opts.ok_or_else(|| miette!("no recipients for {}", path.display()))?;
    let format = workspace::format_of(path);
    let q = |v: &str| Zeroizing::new(serde_json::Value::String(v.to_string()).to_string());
    let mut fields = vec![
        ("endpoint", q(&s.endpoint)),
        ("token_id", q(&s.token_id)),
        ("token_secret", q(s.token_secret.expose_secret())),
    ];
    if let Some(fp) = &s.fingerprint {
        fields.push(("fingerprint", q(fp)));
    }
    let mut text = Zeroizing::new(String::new());
    if format == Format::Json {
        text.push_str("{\n    \"proxmox\": {\n");
        for (i, (k, v)) in fields.iter().enumerate() {
            let comma = if i + 1 < fields.len() { "," } else { "" };
            text.push_str(&format!("        \"{k}\": {}{comma}\n", v.as_str()));
        }
        text.push_str("    }\n}\n");
    } else {
        text.push_str("# Proxmox VE API token for homelab-cli (written by `homelab-cli proxmox token create`).\nproxmox:\n");
        for (k, v) in &fields {
            text.push_str(&format!("    {k}: {}\n", v.as_str()));
        }
    }
    let data = sops_age::encrypt(text.as_bytes(), format, opts)
        .map_err(|e| miette!("cannot encrypt {}: {e}", path.display()))?;
    workspace::write_atomic(path, &data, 0o644)
}

/// A decrypted SOPS file being edited in memory.
struct Decrypted {
    inner: sops_age::Decrypted,
}

impl Decrypted {
    fn reopen(data: &[u8]) -> miette::Result<Self> {
        // YAML parses JSON too; the store only matters for writing back.
        let format = if data.trim_ascii_start().starts_with(b"{") {
            Format::Json
        } else {
            Format::Yaml
        };
        let ids = Identities::from_env();
        let inner = sops_age::Decrypted::open(data, format, &ids)
            .into_diagnostic()
            .wrap_err("cannot decrypt (set SOPS_AGE_KEY_FILE to a key the file is encrypted to)")?;
        Ok(Decrypted { inner })
    }

    fn get_secret(&self, key: &str) -> Option<SecretString> {
        match self.inner.get(&format!("[\"proxmox\"][\"{key}\"]")) {
            Ok(sops_age::Value::String(s)) => Some(SecretString::from(s.clone())),
            _ => None,
        }
    }

    fn set_str(&mut self, key: &str, value: &str) -> miette::Result<bool> {
        self.inner
            .set(
                &format!("[\"proxmox\"][\"{key}\"]"),
                sops_age::Value::String(value.to_string()),
            )
            .map_err(|e| miette!("cannot set proxmox.{key}: {e}"))
    }

    fn write(&mut self, path: &Path) -> miette::Result<()> {
        let data = self
            .inner
            .encrypt(true)
            .map_err(|e| miette!("cannot encrypt {}: {e}", path.display()))?;
        workspace::write_atomic(path, &data, 0o644)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn privileges_exist_in_pve9_and_are_sorted_unique() {
        let all: BTreeSet<&str> = homelab_sim::pve::auth::PRIVILEGES.iter().copied().collect();
        let ours = privileges();
        for p in &ours {
            assert!(all.contains(p), "{p} is not a PVE 9 privilege");
        }
        let unique: BTreeSet<&str> = ours.iter().copied().collect();
        assert_eq!(unique.len(), ours.len());
        for p in [
            "Permissions.Modify",
            "User.Modify",
            "Datastore.Allocate",
            "Sys.PowerMgmt",
            "Sys.AccessNetwork",
        ] {
            assert!(!ours.contains(&p), "{p} must not be granted");
        }
        let small = privileges_for(false);
        assert!(small.contains(&"Sys.AccessNetwork"));
        assert!(!small.contains(&"Sys.Modify") && !small.contains(&"VM.Backup"));
        assert_eq!(small.len(), ours.len() - 1);
    }
}
