//! `homelab-cli secrets ...`: SOPS files with age keys, flags as `sops` 3.11 has them.
//!
//! Every command reads identities the way sops does (`SOPS_AGE_KEY`, `SOPS_AGE_KEY_FILE`,
//! `SOPS_AGE_KEY_CMD`, `SOPS_AGE_SSH_PRIVATE_KEY_FILE`, `~/.config/sops/age/keys.txt`) and
//! `.sops.yaml` from the current directory upwards (`--config`/`SOPS_CONFIG` override).

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use clap::Args;
use miette::{IntoDiagnostic, WrapErr, miette};
use sops_age::config::Config;
use sops_age::{
    DecryptOptions, Decrypted, EncryptOptions, EncryptedFile, Format, Identities, Recipient,
    SelectionRule, StoreOptions, Value,
};
use zeroize::Zeroizing;

use crate::context::{Context, Exit};

/// Subcommands of `homelab-cli secrets`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Encrypt a file (stdout unless -i/--output).
    Encrypt(EncryptArgs),
    /// Decrypt a file (stdout unless -i/--output), verifying its MAC.
    Decrypt(DecryptArgs),
    /// Decrypt into a private temp file, open $SOPS_EDITOR/$EDITOR, re-encrypt on save.
    Edit(EditArgs),
    /// Re-encrypt with a new data key, optionally adding/removing age recipients.
    Rotate(RotateArgs),
    /// Rewrap the data key for the recipients `.sops.yaml` now lists.
    Updatekeys(UpdatekeysArgs),
    /// Set one value (given as JSON) in an encrypted file, in place.
    Set(SetArgs),
    /// Remove one value from an encrypted file, in place.
    Unset(UnsetArgs),
    /// Print `{"encrypted":true|false}` for a file.
    Filestatus(FilestatusArgs),
    /// Run a command with the file's top-level keys as environment variables.
    ExecEnv(ExecEnvArgs),
}

/// Type and config flags shared by the commands.
#[derive(Debug, Clone, Args)]
pub struct TypeArgs {
    /// Input format: yaml, json, dotenv, ini or binary (default: from the file extension).
    #[arg(long, value_name = "TYPE")]
    pub input_type: Option<String>,
    /// Output format (default: the input format).
    #[arg(long, value_name = "TYPE")]
    pub output_type: Option<String>,
    /// Use this file name for type detection and creation rules (needed with stdin).
    #[arg(long, value_name = "NAME")]
    pub filename_override: Option<PathBuf>,
    /// Path to `.sops.yaml` (default: search upwards from the current directory).
    #[arg(long, env = "SOPS_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Selection-rule flags (at most one).
#[derive(Debug, Clone, Args)]
pub struct RuleArgs {
    /// Leave values under keys ending with this suffix unencrypted.
    #[arg(long, value_name = "SUFFIX")]
    pub unencrypted_suffix: Option<String>,
    /// Encrypt only values under keys ending with this suffix.
    #[arg(long, value_name = "SUFFIX")]
    pub encrypted_suffix: Option<String>,
    /// Leave values under keys matching this regex unencrypted.
    #[arg(long, value_name = "REGEX")]
    pub unencrypted_regex: Option<String>,
    /// Encrypt only values under keys matching this regex.
    #[arg(long, value_name = "REGEX")]
    pub encrypted_regex: Option<String>,
    /// Leave values after a comment matching this regex unencrypted.
    #[arg(long, value_name = "REGEX")]
    pub unencrypted_comment_regex: Option<String>,
    /// Encrypt only values after a comment matching this regex.
    #[arg(long, value_name = "REGEX")]
    pub encrypted_comment_regex: Option<String>,
    /// Compute the MAC over encrypted values only.
    #[arg(long)]
    pub mac_only_encrypted: bool,
}

impl RuleArgs {
    fn rule(&self) -> miette::Result<Option<SelectionRule>> {
        let all = [
            self.unencrypted_suffix
                .clone()
                .map(SelectionRule::UnencryptedSuffix),
            self.encrypted_suffix
                .clone()
                .map(SelectionRule::EncryptedSuffix),
            self.unencrypted_regex
                .clone()
                .map(SelectionRule::UnencryptedRegex),
            self.encrypted_regex
                .clone()
                .map(SelectionRule::EncryptedRegex),
            self.unencrypted_comment_regex
                .clone()
                .map(SelectionRule::UnencryptedCommentRegex),
            self.encrypted_comment_regex
                .clone()
                .map(SelectionRule::EncryptedCommentRegex),
        ];
        let mut set: Vec<SelectionRule> = all.into_iter().flatten().collect();
        if set.len() > 1 {
            return Err(miette!(
                "use only one of --unencrypted-suffix, --encrypted-suffix, --unencrypted-regex, \
                 --encrypted-regex, --unencrypted-comment-regex, --encrypted-comment-regex"
            ));
        }
        Ok(set.pop())
    }
}

/// Key flags for encryption.
#[derive(Debug, Clone, Args)]
pub struct KeyArgs {
    /// Comma-separated age recipients (age1… or SSH public keys); replaces `.sops.yaml` keys.
    #[arg(
        short = 'a',
        long = "age",
        env = "SOPS_AGE_RECIPIENTS",
        value_name = "RECIPIENTS"
    )]
    pub age: Option<String>,
    /// Number of key groups needed to decrypt (with several key groups).
    #[arg(long = "shamir-secret-sharing-threshold", value_name = "N")]
    pub shamir_threshold: Option<usize>,
}

/// Output flags.
#[derive(Debug, Clone, Args)]
pub struct OutArgs {
    /// Write the result back to the input file (atomically).
    #[arg(short = 'i', long = "in-place", conflicts_with = "output")]
    pub in_place: bool,
    /// Write the result to this file (atomically) instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `secrets encrypt`.
#[derive(Debug, Args)]
pub struct EncryptArgs {
    /// The file to encrypt (stdin when omitted; then --filename-override or --input-type).
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub out: OutArgs,
    #[command(flatten)]
    pub types: TypeArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub rules: RuleArgs,
}

/// `secrets decrypt`.
#[derive(Debug, Args)]
pub struct DecryptArgs {
    /// The file to decrypt (stdin when omitted).
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub out: OutArgs,
    #[command(flatten)]
    pub types: TypeArgs,
    /// Print only this part of the document, e.g. `'["a"][0]'`.
    #[arg(long, value_name = "PATH")]
    pub extract: Option<String>,
    /// Do not verify the MAC.
    #[arg(long)]
    pub ignore_mac: bool,
}

/// `secrets edit`.
#[derive(Debug, Args)]
pub struct EditArgs {
    /// The file to edit (created when missing).
    pub file: PathBuf,
    #[command(flatten)]
    pub types: TypeArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub rules: RuleArgs,
    /// Do not verify the MAC.
    #[arg(long)]
    pub ignore_mac: bool,
}

/// `secrets rotate`.
#[derive(Debug, Args)]
pub struct RotateArgs {
    /// The file to rotate.
    pub file: PathBuf,
    #[command(flatten)]
    pub out: OutArgs,
    #[command(flatten)]
    pub types: TypeArgs,
    /// Comma-separated age recipients to add (to the first key group).
    #[arg(long, value_name = "RECIPIENTS")]
    pub add_age: Option<String>,
    /// Comma-separated age recipients to remove.
    #[arg(long, value_name = "RECIPIENTS")]
    pub rm_age: Option<String>,
}

/// `secrets updatekeys`.
#[derive(Debug, Args)]
pub struct UpdatekeysArgs {
    /// Files to update.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Do not ask for confirmation.
    #[arg(short = 'y', long)]
    pub yes: bool,
    #[command(flatten)]
    pub types: TypeArgs,
}

/// `secrets set`.
#[derive(Debug, Args)]
pub struct SetArgs {
    /// The encrypted file.
    pub file: PathBuf,
    /// Where to set, e.g. `'["a"]["b"]'`.
    pub path: String,
    /// The value, as JSON (e.g. '"text"', '42', '{"k": 1}').
    pub value: Option<String>,
    /// Read the value (JSON) from this file.
    #[arg(long, conflicts_with_all = ["value", "value_stdin"])]
    pub value_file: Option<PathBuf>,
    /// Read the value (JSON) from stdin.
    #[arg(long, conflicts_with = "value")]
    pub value_stdin: bool,
    /// Do not rewrite the file when the value is already set.
    #[arg(long)]
    pub idempotent: bool,
    #[command(flatten)]
    pub types: TypeArgs,
}

/// `secrets unset`.
#[derive(Debug, Args)]
pub struct UnsetArgs {
    /// The encrypted file.
    pub file: PathBuf,
    /// What to remove, e.g. `'["a"]["b"]'`.
    pub path: String,
    /// Succeed without change when the path does not exist.
    #[arg(long)]
    pub idempotent: bool,
    #[command(flatten)]
    pub types: TypeArgs,
}

/// `secrets filestatus`.
#[derive(Debug, Args)]
pub struct FilestatusArgs {
    /// The file to inspect.
    pub file: PathBuf,
    /// Input format (default: from the file extension).
    #[arg(long, value_name = "TYPE")]
    pub input_type: Option<String>,
}

/// `secrets exec-env`.
#[derive(Debug, Args)]
pub struct ExecEnvArgs {
    /// The encrypted file.
    pub file: PathBuf,
    /// The command, run with `sh -c`.
    pub command: String,
    /// Start from an empty environment.
    #[arg(long)]
    pub pristine: bool,
    #[command(flatten)]
    pub types: TypeArgs,
}

/// Run a `homelab-cli secrets` subcommand.
pub async fn run(cmd: Command, _ctx: &Context) -> miette::Result<Exit> {
    // All of this is local CPU and file work; keep it off the async workers.
    tokio::task::spawn_blocking(move || match cmd {
        Command::Encrypt(a) => encrypt(a),
        Command::Decrypt(a) => decrypt(a),
        Command::Edit(a) => edit(a),
        Command::Rotate(a) => rotate(a),
        Command::Updatekeys(a) => updatekeys(a),
        Command::Set(a) => set(a),
        Command::Unset(a) => unset(a),
        Command::Filestatus(a) => filestatus(a),
        Command::ExecEnv(a) => exec_env(a),
    })
    .await
    .into_diagnostic()?
}

fn parse_format(name: &str) -> miette::Result<Format> {
    Format::from_name(name)
        .ok_or_else(|| miette!("unknown type {name:?}: expected yaml, json, dotenv, ini or binary"))
}

/// The input and output formats from the flags and the file name.
fn formats(types: &TypeArgs, file: Option<&Path>) -> miette::Result<(Format, Format)> {
    let name = types.filename_override.as_deref().or(file);
    let input = match (&types.input_type, name) {
        (Some(t), _) => parse_format(t)?,
        (None, Some(n)) => Format::from_path(n),
        (None, None) => {
            return Err(miette!(
                "reading from stdin needs --filename-override or --input-type"
            ));
        }
    };
    let output = match &types.output_type {
        Some(t) => parse_format(t)?,
        None => match name {
            Some(n) if types.input_type.is_none() => Format::from_path(n),
            _ => input,
        },
    };
    Ok((input, output))
}

fn load_config(types: &TypeArgs) -> miette::Result<Option<Config>> {
    Config::discover(types.config.as_deref()).into_diagnostic()
}

fn read_input(file: Option<&Path>) -> miette::Result<Zeroizing<Vec<u8>>> {
    let mut buf = Zeroizing::new(Vec::new());
    match file {
        Some(p) => {
            let mut f = std::fs::File::open(p)
                .into_diagnostic()
                .wrap_err_with(|| format!("cannot open {}", p.display()))?;
            f.read_to_end(&mut buf)
                .into_diagnostic()
                .wrap_err_with(|| format!("cannot read {}", p.display()))?;
        }
        None => {
            std::io::stdin()
                .lock()
                .read_to_end(&mut buf)
                .into_diagnostic()
                .wrap_err("cannot read stdin")?;
        }
    }
    Ok(buf)
}

/// Write `data` to `path` atomically (temp file in the same folder + rename), keeping the
/// permissions of an existing file; new files get `mode` (unix).
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> miette::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".homelab-secrets-")
        .tempfile_in(&dir)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot create a temp file in {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let perms = match std::fs::metadata(path) {
            Ok(m) => m.permissions(),
            Err(_) => std::fs::Permissions::from_mode(mode),
        };
        tmp.as_file()
            .set_permissions(perms)
            .into_diagnostic()
            .wrap_err("cannot set permissions")?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    tmp.write_all(data)
        .and_then(|()| tmp.as_file().sync_all())
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot write {}", path.display()))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

fn write_stdout(data: &[u8]) -> miette::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(data).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).into_diagnostic().wrap_err("cannot write to stdout")
        }
        _ => Ok(()),
    }
}

/// Route a result to `-i`, `--output` or stdout.
fn emit(out: &OutArgs, file: Option<&Path>, data: &[u8], secret: bool) -> miette::Result<()> {
    let mode = if secret { 0o600 } else { 0o644 };
    if out.in_place {
        let path = file.ok_or_else(|| miette!("--in-place needs a file, not stdin"))?;
        write_atomic(path, data, mode)
    } else if let Some(p) = &out.output {
        write_atomic(p, data, mode)
    } else {
        write_stdout(data)
    }
}

fn recipients(list: &str) -> miette::Result<Vec<Recipient>> {
    Recipient::parse_list(list).into_diagnostic()
}

/// Encryption options from flags, falling back to the `.sops.yaml` creation rule.
fn encrypt_options(
    keys: &KeyArgs,
    rules: &RuleArgs,
    types: &TypeArgs,
    target: Option<&Path>,
) -> miette::Result<EncryptOptions> {
    let config = load_config(types)?;
    let flags: Vec<String> = keys.age.iter().cloned().collect();
    let request = sops_age::Resolve {
        flags: &flags,
        config: config.as_ref().map_or(
            sops_age::ConfigSource::Ignore,
            sops_age::ConfigSource::Loaded,
        ),
        require_rule: true,
        // `--age` reads SOPS_AGE_RECIPIENTS itself (clap `env`).
        environment: false,
    };
    // Without a file (stdin) only the flags count: a rule needs a path to match, and flags
    // win before any rule is looked at.
    let resolved = match target {
        Some(t) => sops_age::encrypt_options_for(t, &request).into_diagnostic()?,
        None if !flags.is_empty() => {
            sops_age::encrypt_options_for(Path::new("-"), &request).into_diagnostic()?
        }
        None => None,
    };
    let Some((mut opts, _)) = resolved else {
        return Err(miette!(
            "no recipients: pass --age (or SOPS_AGE_RECIPIENTS), or add a creation rule to \
             .sops.yaml"
        ));
    };
    if let Some(rule) = rules.rule()? {
        opts.rule = Some(rule);
    }
    if rules.mac_only_encrypted {
        opts.mac_only_encrypted = true;
    }
    if let Some(t) = keys.shamir_threshold {
        opts.shamir_threshold = t;
    }
    if opts.key_groups.iter().all(|g| g.is_empty()) {
        return Err(miette!(
            "no recipients: the matching creation rule lists no age keys"
        ));
    }
    Ok(opts)
}

fn store_options(types: &TypeArgs) -> StoreOptions {
    // A broken config must not block decryption; sops only reads `stores` there.
    load_config(types)
        .ok()
        .flatten()
        .map(|c| c.stores)
        .unwrap_or_default()
}

fn encrypt(a: EncryptArgs) -> miette::Result<Exit> {
    let file = a.file.as_deref();
    let (input, output) = formats(&a.types, file)?;
    let target = a.types.filename_override.as_deref().or(file);
    let opts = encrypt_options(&a.keys, &a.rules, &a.types, target)?;
    let plain = read_input(file)?;
    let enc = if input == output {
        sops_age::encrypt(&plain, output, &opts)
    } else {
        // convert first: parse as the input type, write as the output type, then encrypt
        let docs = sops_age::parse_plaintext(input, &plain).into_diagnostic()?;
        let converted =
            Zeroizing::new(sops_age::emit_plaintext(output, &docs, &opts.store).into_diagnostic()?);
        sops_age::encrypt(&converted, output, &opts)
    }
    .into_diagnostic()
    .wrap_err_with(|| format!("cannot encrypt {}", display(file)))?;
    emit(&a.out, file, &enc, false)?;
    Ok(Exit::Success)
}

fn display(file: Option<&Path>) -> String {
    file.map_or_else(|| "stdin".to_owned(), |p| p.display().to_string())
}

/// Decrypt; `read_only` (decrypt, exec-env) skips remembering IVs, which only commands
/// that write the file back need.
fn open(
    data: &[u8],
    format: Format,
    ignore_mac: bool,
    read_only: bool,
    file: Option<&Path>,
) -> miette::Result<Decrypted> {
    let ids = Identities::from_env();
    Decrypted::open_with(
        data,
        format,
        &ids,
        DecryptOptions {
            ignore_mac,
            read_only,
        },
    )
    .into_diagnostic()
    .wrap_err_with(|| format!("cannot decrypt {}", display(file)))
}

fn decrypt(a: DecryptArgs) -> miette::Result<Exit> {
    let file = a.file.as_deref();
    let (input, output) = formats(&a.types, file)?;
    let data = read_input(file)?;
    let mut d = open(&data, input, a.ignore_mac, true, file)?;
    d.set_store_options(store_options(&a.types));
    let plain = match &a.extract {
        Some(path) => d.extract(path, output).into_diagnostic()?,
        None => d.to_plaintext(output).into_diagnostic()?,
    };
    emit(&a.out, file, &plain, true)?;
    Ok(Exit::Success)
}

fn template(format: Format) -> &'static [u8] {
    match format {
        Format::Yaml => b"# A new SOPS file: write YAML here; it is encrypted on save.\nexample_key: example_value\n",
        Format::Json => b"{\n\t\"example_key\": \"example_value\"\n}\n",
        Format::Dotenv => b"example_key=example_value\n",
        Format::Ini => b"[section]\nexample_key = example_value\n",
        _ => b"example value\n",
    }
}

fn editor_command() -> miette::Result<Vec<String>> {
    for var in ["SOPS_EDITOR", "EDITOR"] {
        if let Ok(v) = std::env::var(var)
            && !v.trim().is_empty()
        {
            return shlex::split(&v)
                .filter(|a| !a.is_empty())
                .ok_or_else(|| miette!("cannot parse {var}={v:?}"));
        }
    }
    for fallback in ["vim", "nano", "vi"] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(fallback).is_file()))
            .unwrap_or(false);
        if found {
            return Ok(vec![fallback.to_owned()]);
        }
    }
    Err(miette!(
        "no editor found: set SOPS_EDITOR or EDITOR (vim, nano and vi are not installed)"
    ))
}

fn edit(a: EditArgs) -> miette::Result<Exit> {
    let file = a.file.as_path();
    let (format, _) = formats(&a.types, Some(file))?;
    let exists = file.exists();
    let mut decrypted = None;
    let original: Zeroizing<Vec<u8>> = if exists {
        let data = read_input(Some(file))?;
        let mut d = open(&data, format, a.ignore_mac, false, Some(file))?;
        d.set_store_options(store_options(&a.types));
        let plain = d.to_plaintext(format).into_diagnostic()?;
        decrypted = Some(d);
        plain
    } else {
        Zeroizing::new(template(format).to_vec())
    };
    let new_opts = if exists {
        None
    } else {
        Some(encrypt_options(&a.keys, &a.rules, &a.types, Some(file))?)
    };
    let ext = file
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    let dir = tempfile::Builder::new()
        .prefix("homelab-secrets-")
        .tempdir()
        .into_diagnostic()?;
    let tmp = dir.path().join(format!("tmp-file{ext}"));
    write_private(&tmp, &original)?;
    let editor = editor_command()?;
    let interactive = std::io::stdin().is_terminal();
    let mut attempts = 0;
    let edited = loop {
        attempts += 1;
        let status = std::process::Command::new(&editor[0])
            .args(&editor[1..])
            .arg(&tmp)
            .status()
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot run the editor {:?}", editor[0]))?;
        if !status.success() {
            return Err(miette!(
                "the editor exited with {status}; file left unchanged"
            ));
        }
        let text = Zeroizing::new(std::fs::read(&tmp).into_diagnostic()?);
        if text.as_slice() == original.as_slice() && exists {
            eprintln!("File has not changed, exiting.");
            return Ok(Exit::Success);
        }
        match sops_age::parse_plaintext(format, &text) {
            Ok(_) => break text,
            Err(e) => {
                eprintln!("Could not load tree, probably due to invalid syntax: {e}");
                // Without a terminal nobody can fix it; stop instead of looping forever.
                if !interactive && attempts >= 5 {
                    return Err(miette!(
                        "the edited document is still invalid after {attempts} attempts; {} left unchanged",
                        file.display()
                    ));
                }
                if interactive {
                    eprintln!("Press Enter to return to the editor, or Ctrl+C to exit.");
                    let mut line = String::new();
                    let _ = std::io::stdin().read_line(&mut line);
                }
            }
        }
    };
    let enc = match (decrypted, new_opts) {
        (Some(mut d), _) => {
            d.replace_plaintext(&edited, format).into_diagnostic()?;
            d.encrypt(true).into_diagnostic()?
        }
        (None, Some(opts)) => sops_age::encrypt(&edited, format, &opts).into_diagnostic()?,
        (None, None) => return Err(miette!("internal: nothing to encrypt")),
    };
    write_atomic(file, &enc, 0o644)?;
    Ok(Exit::Success)
}

fn write_private(path: &Path, data: &[u8]) -> miette::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .into_diagnostic()
        .wrap_err("cannot create the temp file")?;
    f.write_all(data).into_diagnostic()?;
    Ok(())
}

fn rotate(a: RotateArgs) -> miette::Result<Exit> {
    let file = a.file.as_path();
    let (format, _) = formats(&a.types, Some(file))?;
    let data = read_input(Some(file))?;
    let mut d = open(&data, format, false, false, Some(file))?;
    d.set_store_options(store_options(&a.types));
    let add = match &a.add_age {
        Some(l) => recipients(l)?,
        None => Vec::new(),
    };
    let rm: Vec<String> = a
        .rm_age
        .as_deref()
        .map(|l| {
            l.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let out = d.rotate(&add, &rm).into_diagnostic()?;
    emit(&a.out, Some(file), &out, false)?;
    Ok(Exit::Success)
}

fn updatekeys(a: UpdatekeysArgs) -> miette::Result<Exit> {
    let config = load_config(&a.types)?
        .ok_or_else(|| miette!("config file not found: updatekeys needs a .sops.yaml"))?;
    let ids = Identities::from_env();
    for file in &a.files {
        let (format, _) = formats(&a.types, Some(file))?;
        let rule = config.rule_for(file).into_diagnostic()?;
        let groups = rule.recipient_groups().into_diagnostic()?;
        let data = read_input(Some(file))?;
        let mut f = EncryptedFile::parse(&data, format)
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot read {}", file.display()))?;
        let before: Vec<String> = f
            .metadata()
            .recipients()
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let wanted: Vec<&str> = groups.iter().flatten().map(Recipient::as_str).collect();
        if !a.yes {
            eprintln!("The following changes will be made to the file's groups:");
            for r in &wanted {
                if !before.iter().any(|b| b == r) {
                    eprintln!("+++ {r}");
                }
            }
            for b in &before {
                if !wanted.contains(&b.as_str()) {
                    eprintln!("--- {b}");
                }
            }
            if !std::io::stdin().is_terminal() {
                return Err(miette!("not a terminal: pass -y to confirm the key update"));
            }
            eprint!("Is this okay? (y/n): ");
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
            if !line.trim().eq_ignore_ascii_case("y") {
                eprintln!("Changes not applied to {}", file.display());
                continue;
            }
        }
        let changed = f
            .update_keys(&groups, rule.shamir_threshold, &ids)
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot update the keys of {}", file.display()))?;
        if changed {
            let out = f.to_bytes(&config.stores).into_diagnostic()?;
            write_atomic(file, &out, 0o644)?;
            eprintln!("File {} synced with new keys", file.display());
        } else {
            eprintln!("File {} already up to date", file.display());
        }
    }
    Ok(Exit::Success)
}

fn set(a: SetArgs) -> miette::Result<Exit> {
    let file = a.file.as_path();
    let (format, _) = formats(&a.types, Some(file))?;
    let text = Zeroizing::new(match (&a.value, &a.value_file, a.value_stdin) {
        (Some(v), _, _) => v.clone(),
        (None, Some(p), _) => std::fs::read_to_string(p)
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot read {}", p.display()))?,
        (None, None, true) => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).into_diagnostic()?;
            s
        }
        (None, None, false) => {
            return Err(miette!(
                "give the value (JSON), --value-file or --value-stdin"
            ));
        }
    });
    let value: Value = sops_age::parse_json_value(text.trim())
        .into_diagnostic()
        .wrap_err("the value must be JSON, e.g. '\"text\"' or '42'")?;
    let data = read_input(Some(file))?;
    let mut d = open(&data, format, false, false, Some(file))?;
    d.set_store_options(store_options(&a.types));
    let changed = d.set(&a.path, value).into_diagnostic()?;
    if !changed && a.idempotent {
        return Ok(Exit::Success);
    }
    let out = d.encrypt(false).into_diagnostic()?;
    write_atomic(file, &out, 0o644)?;
    Ok(Exit::Success)
}

fn unset(a: UnsetArgs) -> miette::Result<Exit> {
    let file = a.file.as_path();
    let (format, _) = formats(&a.types, Some(file))?;
    let data = read_input(Some(file))?;
    let mut d = open(&data, format, false, false, Some(file))?;
    d.set_store_options(store_options(&a.types));
    match d.unset(&a.path) {
        Ok(()) => {}
        Err(sops_age::Error::Path { .. }) if a.idempotent => return Ok(Exit::Success),
        Err(e) => return Err(e).into_diagnostic(),
    }
    let out = d.encrypt(false).into_diagnostic()?;
    write_atomic(file, &out, 0o644)?;
    Ok(Exit::Success)
}

fn filestatus(a: FilestatusArgs) -> miette::Result<Exit> {
    let format = match &a.input_type {
        Some(t) => parse_format(t)?,
        None => Format::from_path(&a.file),
    };
    let data = std::fs::read(&a.file)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot read {}", a.file.display()))?;
    let encrypted = sops_age::file_status(&data, format);
    // The same bytes as `sops filestatus`.
    write_stdout(format!("{{\"encrypted\":{encrypted}}}\n").as_bytes())?;
    Ok(Exit::Success)
}

/// The environment variables `exec-env` exports: top-level scalars, stringified.
pub fn env_pairs(d: &Decrypted) -> miette::Result<Vec<(String, Zeroizing<String>)>> {
    let doc = d
        .documents()
        .first()
        .ok_or_else(|| miette!("the file has no document"))?;
    doc.entries()
        .map(|(k, v)| {
            let s = match v {
                Value::String(s) | Value::Time(s) => s.clone(),
                Value::Bool(b) => b.to_string(),
                Value::Int(i) => i.to_string(),
                Value::Float(f) => format!("{f}"),
                Value::Null => String::new(),
                Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
                Value::Map(_) | Value::Seq(_) | Value::Comment(_) => {
                    return Err(miette!(
                        "cannot use complex value {k:?} as an environment variable"
                    ));
                }
            };
            Ok((k.to_owned(), Zeroizing::new(s)))
        })
        .collect()
}

fn exec_env(a: ExecEnvArgs) -> miette::Result<Exit> {
    let file = a.file.as_path();
    let (format, _) = formats(&a.types, Some(file))?;
    let data = read_input(Some(file))?;
    let d = open(&data, format, false, true, Some(file))?;
    let pairs = env_pairs(&d)?;
    drop(d);
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c").arg(&a.command);
    if a.pristine {
        cmd.env_clear();
    }
    for (k, v) in &pairs {
        cmd.env(k, v.as_str());
    }
    let status = cmd
        .status()
        .into_diagnostic()
        .wrap_err("cannot run the command")?;
    if status.success() {
        Ok(Exit::Success)
    } else {
        Err(miette!("the command exited with {status}"))
    }
}
