//! `homelab-cli image ...`: Talos Image Factory schematic IDs, asset URLs, downloads and the
//! extension catalogue, through `talos-factory`.
//!
//! The factory is `--factory-url` (`HOMELAB_FACTORY_URL`, default the public factory) and
//! its PXE host `--pxe-url` (`HOMELAB_FACTORY_PXE_URL`).

use std::path::PathBuf;

use clap::Args;
use miette::{IntoDiagnostic, WrapErr, miette};
use serde::Serialize;
use talos_factory::{
    Arch, Asset, Bootloader, FactoryClient, FactoryUrls, ImageCache, MetaValue, OfflineId,
    Platform, Schematic, SchematicId, TalosVersion,
};

use crate::context::{Context, Exit, OutputFormat, print_json, print_text};

/// Subcommands of `homelab-cli image`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Print the schematic ID for extensions, kernel args, meta values... (or a file).
    Schematic(SchematicCmd),
    /// Print every asset URL and the installer image for a schematic and version.
    Urls(UrlsCmd),
    /// Download an asset (cached by schematic, version and asset; resumed when cut).
    Download(DownloadCmd),
    /// List the official extensions for a Talos version.
    Extensions(ExtensionsCmd),
    /// List the Talos versions the factory builds.
    Versions(VersionsCmd),
}

/// The flags that describe a schematic (exclusive with `--schematic ID`).
const SCHEMATIC_FLAGS: [&str; 11] = [
    "extensions",
    "kernel_args",
    "meta",
    "bootloader",
    "secureboot_enroll_keys",
    "secureboot_well_known_certs",
    "overlay_image",
    "overlay_name",
    "sector_size",
    "embedded_config",
    "file",
];

/// Which factory to talk to.
#[derive(Debug, Clone, Args)]
pub struct FactoryArgs {
    /// Image Factory base URL.
    #[arg(long, env = "HOMELAB_FACTORY_URL", default_value = talos_factory::PUBLIC_FACTORY_URL, value_name = "URL")]
    pub factory_url: String,
    /// PXE base URL (default: pxe.talos.dev for the public factory, else the factory URL).
    #[arg(long, env = "HOMELAB_FACTORY_PXE_URL", value_name = "URL")]
    pub pxe_url: Option<String>,
}

impl FactoryArgs {
    fn client(&self) -> miette::Result<FactoryClient> {
        let mut b = FactoryClient::builder()
            .base_url(&self.factory_url)
            .user_agent(concat!("homelab-cli/", env!("CARGO_PKG_VERSION")));
        if let Some(p) = &self.pxe_url {
            b = b.pxe_base_url(p);
        }
        b.build().into_diagnostic()
    }
}

/// What goes into a schematic.
#[derive(Debug, Clone, Args)]
pub struct SchematicArgs {
    /// Official system extension (repeatable; sorted and de-duplicated like the web UI).
    #[arg(long = "extension", value_name = "NAME")]
    pub extensions: Vec<String>,
    /// Extra kernel argument (repeatable; order kept).
    #[arg(long = "kernel-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub kernel_args: Vec<String>,
    /// META value, KEY=VALUE with KEY 0-255 (decimal or 0x hex; repeatable).
    #[arg(long = "meta", value_name = "KEY=VALUE")]
    pub meta: Vec<String>,
    /// Boot loader: dual-boot, sd-boot or grub (default: automatic).
    #[arg(long, value_name = "KIND")]
    pub bootloader: Option<String>,
    /// Secure boot: keys to enroll.
    #[arg(long, value_name = "KEYS")]
    pub secureboot_enroll_keys: Option<String>,
    /// Secure boot: include the well-known UEFI certificates.
    #[arg(long)]
    pub secureboot_well_known_certs: bool,
    /// Overlay image (with --overlay-name), e.g. siderolabs/sbc-raspberrypi.
    #[arg(long, value_name = "IMAGE", requires = "overlay_name")]
    pub overlay_image: Option<String>,
    /// Overlay name (with --overlay-image), e.g. rpi_generic.
    #[arg(long, value_name = "NAME", requires = "overlay_image")]
    pub overlay_name: Option<String>,
    /// Disk image sector size.
    #[arg(long, value_name = "BYTES")]
    pub sector_size: Option<u64>,
    /// A machine configuration to embed in the image.
    #[arg(long, value_name = "FILE")]
    pub embedded_config: Option<PathBuf>,
    /// A schematic document, hashed exactly as the factory API would (its order kept).
    #[arg(long, value_name = "SCHEMATIC.yaml", conflicts_with_all = [
        "extensions", "kernel_args", "meta", "bootloader", "secureboot_enroll_keys",
        "secureboot_well_known_certs", "overlay_image", "overlay_name", "sector_size",
        "embedded_config",
    ])]
    pub file: Option<PathBuf>,
    /// Compute the ID locally without contacting the factory (refused when a value is one
    /// that Go's YAML libraries quote differently).
    #[arg(long)]
    pub offline: bool,
}

/// `image schematic`.
#[derive(Debug, Args)]
#[command(disable_version_flag = true)]
pub struct SchematicCmd {
    #[command(flatten)]
    pub schematic: SchematicArgs,
    /// Check the extension names against this Talos version's catalogue first.
    #[arg(long, value_name = "VERSION")]
    pub version: Option<String>,
    #[command(flatten)]
    pub factory: FactoryArgs,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// Platform selection shared by `urls` and `download`.
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// Talos version, e.g. v1.12.0.
    #[arg(long, value_name = "VERSION")]
    pub version: String,
    /// Platform (metal, nocloud, aws...).
    #[arg(long, default_value = "metal")]
    pub platform: String,
    /// Architecture: amd64 or arm64.
    #[arg(long, default_value = "amd64")]
    pub arch: String,
    /// Secure boot assets.
    #[arg(long)]
    pub secureboot: bool,
}

impl TargetArgs {
    fn parse(&self) -> miette::Result<(TalosVersion, Platform, Arch)> {
        Ok((
            self.version.parse().into_diagnostic()?,
            self.platform.parse().into_diagnostic()?,
            self.arch.parse().into_diagnostic()?,
        ))
    }
}

/// `image urls`.
#[derive(Debug, Args)]
#[command(disable_version_flag = true)]
pub struct UrlsCmd {
    /// Schematic ID (otherwise computed from the schematic flags).
    #[arg(long, value_name = "ID", conflicts_with_all = SCHEMATIC_FLAGS)]
    pub schematic: Option<String>,
    #[command(flatten)]
    pub spec: SchematicArgs,
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub factory: FactoryArgs,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// `image download`.
#[derive(Debug, Args)]
#[command(disable_version_flag = true)]
pub struct DownloadCmd {
    /// Schematic ID (otherwise computed from the schematic flags).
    #[arg(long, value_name = "ID", conflicts_with_all = SCHEMATIC_FLAGS)]
    pub schematic: Option<String>,
    #[command(flatten)]
    pub spec: SchematicArgs,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Asset file name (e.g. nocloud-amd64.raw.xz); default: the platform's ISO.
    #[arg(long, value_name = "NAME")]
    pub asset: Option<String>,
    /// Cache directory (default: $XDG_CACHE_HOME/homelab/images).
    #[arg(long, env = "HOMELAB_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    #[command(flatten)]
    pub factory: FactoryArgs,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// `image extensions`.
#[derive(Debug, Args)]
#[command(disable_version_flag = true)]
pub struct ExtensionsCmd {
    /// Talos version, e.g. v1.12.0.
    #[arg(long, value_name = "VERSION")]
    pub version: String,
    #[command(flatten)]
    pub factory: FactoryArgs,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// `image versions`.
#[derive(Debug, Args)]
pub struct VersionsCmd {
    /// List the versions the factory marks as broken instead.
    #[arg(long)]
    pub broken: bool,
    #[command(flatten)]
    pub factory: FactoryArgs,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// Run a `homelab-cli image` subcommand.
pub async fn run(cmd: Command, ctx: &Context) -> miette::Result<Exit> {
    match cmd {
        Command::Schematic(c) => schematic(c).await,
        Command::Urls(c) => urls(c).await,
        Command::Download(c) => download(c, ctx).await,
        Command::Extensions(c) => extensions(c).await,
        Command::Versions(c) => versions(c).await,
    }
}

/// A schematic and, for `--file`, the text as written.
struct Input {
    schematic: Schematic,
    text: Option<String>,
}

/// Build the schematic from the flags (pure apart from reading the named files).
fn build_schematic(a: &SchematicArgs) -> miette::Result<Input> {
    if let Some(path) = &a.file {
        let text = std::fs::read_to_string(path)
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot read {}", path.display()))?;
        let schematic = Schematic::parse(&text)
            .into_diagnostic()
            .wrap_err_with(|| format!("in {}", path.display()))?;
        return Ok(Input {
            schematic,
            text: Some(text),
        });
    }
    let mut s = Schematic::default();
    let c = &mut s.customization;
    c.system_extensions.official_extensions = a.extensions.clone();
    c.extra_kernel_args = a.kernel_args.clone();
    for m in &a.meta {
        c.meta.push(parse_meta(m)?);
    }
    if let Some(b) = &a.bootloader {
        c.bootloader = b
            .parse::<Bootloader>()
            .into_diagnostic()
            .wrap_err("--bootloader")?;
    }
    if let Some(k) = &a.secureboot_enroll_keys {
        c.secureboot.enroll_keys = k.clone();
    }
    c.secureboot.include_well_known_certificates = a.secureboot_well_known_certs;
    if let Some(n) = a.sector_size {
        c.disk_image.sector_size = n;
    }
    if let Some(path) = &a.embedded_config {
        c.embedded_machine_configuration = std::fs::read_to_string(path)
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot read {}", path.display()))?;
    }
    if let (Some(image), Some(name)) = (&a.overlay_image, &a.overlay_name) {
        s.overlay.image = image.clone();
        s.overlay.name = name.clone();
    }
    s.normalize_extensions();
    Ok(Input {
        schematic: s,
        text: None,
    })
}

fn parse_meta(m: &str) -> miette::Result<MetaValue> {
    let (k, v) = m
        .split_once('=')
        .ok_or_else(|| miette!("--meta {m:?}: expected KEY=VALUE"))?;
    let key = match k.strip_prefix("0x").or_else(|| k.strip_prefix("0X")) {
        Some(hex) => u8::from_str_radix(hex, 16),
        None => k.parse::<u8>(),
    }
    .map_err(|_| miette!("--meta {m:?}: KEY must be 0-255 (decimal or 0x hex)"))?;
    Ok(MetaValue {
        key,
        value: v.to_owned(),
    })
}

/// How an ID was obtained.
#[derive(Debug, Serialize)]
struct Resolved {
    id: SchematicId,
    /// The canonical YAML (the factory's, when it was asked).
    schematic: String,
    /// `offline` or `factory`.
    source: &'static str,
    offline: OfflineId,
    mismatch: bool,
}

async fn resolve(input: &Input, offline: bool, factory: &FactoryArgs) -> miette::Result<Resolved> {
    let canonical = input.schematic.canonicalize();
    let offline_id = canonical.offline_id();
    if offline {
        return match offline_id {
            OfflineId::Exact { id } => Ok(Resolved {
                id,
                schematic: canonical.yaml,
                source: "offline",
                offline: OfflineId::Exact { id },
                mismatch: false,
            }),
            OfflineId::NeedsFactory { reasons } => {
                let list: Vec<String> = reasons.iter().map(|r| format!("  - {r}")).collect();
                Err(miette!(
                    help = "run without --offline to let the factory compute the ID",
                    "the schematic ID cannot be computed offline:\n{}",
                    list.join("\n")
                ))
            }
            other => Err(miette!("offline ID unavailable: {other:?}")),
        };
    }
    let client = factory.client()?;
    let created = match &input.text {
        Some(text) => client.create_schematic_from_yaml(text).await,
        None => client.create_schematic(&input.schematic).await,
    }
    .into_diagnostic()
    .wrap_err("cannot register the schematic with the Image Factory")?;
    let mismatch = created.mismatch();
    if mismatch {
        tracing::warn!(
            factory = %created.id,
            "the factory's schematic ID differs from the one computed offline; using the factory's"
        );
    }
    Ok(Resolved {
        id: created.id,
        schematic: created.schematic,
        source: "factory",
        offline: created.offline,
        mismatch,
    })
}

/// The ID from `--schematic`, or from the schematic flags.
async fn schematic_id(
    explicit: Option<&str>,
    spec: &SchematicArgs,
    factory: &FactoryArgs,
) -> miette::Result<SchematicId> {
    match explicit {
        Some(id) => id.parse().into_diagnostic().wrap_err("--schematic"),
        None => Ok(resolve(&build_schematic(spec)?, spec.offline, factory)
            .await?
            .id),
    }
}

async fn schematic(c: SchematicCmd) -> miette::Result<Exit> {
    let input = build_schematic(&c.schematic)?;
    if let Some(v) = &c.version {
        let version: TalosVersion = v.parse().into_diagnostic()?;
        let check = c
            .factory
            .client()?
            .check_extensions(&input.schematic, &version)
            .await
            .into_diagnostic()
            .wrap_err("cannot fetch the extension catalogue")?;
        if !check.is_ok() {
            return Err(miette!("{check} for Talos {version}"));
        }
    }
    let resolved = resolve(&input, c.schematic.offline, &c.factory).await?;
    match c.output {
        OutputFormat::Text => print_text(&format!("{}\n", resolved.id))?,
        OutputFormat::Json => print_json(&resolved)?,
    }
    Ok(Exit::Success)
}

#[derive(Debug, Serialize)]
struct AssetUrl {
    name: String,
    url: String,
}

#[derive(Debug, Serialize)]
struct UrlReport {
    schematic: SchematicId,
    version: TalosVersion,
    platform: Platform,
    arch: Arch,
    secureboot: bool,
    installer: String,
    installer_legacy: String,
    pxe: String,
    assets: Vec<AssetUrl>,
}

/// Every URL for one target (pure).
fn url_report(
    urls: &FactoryUrls,
    id: SchematicId,
    version: TalosVersion,
    platform: Platform,
    arch: Arch,
    secureboot: bool,
) -> UrlReport {
    let assets = Asset::all_for(&platform, arch, secureboot)
        .into_iter()
        .map(|a| AssetUrl {
            name: a.file_name(),
            url: urls.asset(&id, &version, &a).to_string(),
        })
        .collect();
    UrlReport {
        installer: urls
            .installer(&id, &version, &platform, secureboot)
            .to_string(),
        installer_legacy: urls.installer_legacy(&id, &version, secureboot).to_string(),
        pxe: urls
            .pxe_script(&id, &version, &platform, arch, secureboot)
            .to_string(),
        assets,
        schematic: id,
        version,
        platform,
        arch,
        secureboot,
    }
}

fn render_urls(r: &UrlReport) -> String {
    let width = r
        .assets
        .iter()
        .map(|a| a.name.len())
        .chain(["installer".len(), "installer (legacy)".len(), "pxe".len()])
        .max()
        .unwrap_or(0);
    let mut out = format!(
        "schematic {}\nversion   {}\ntarget    {}-{}{}\n\n",
        r.schematic,
        r.version,
        r.platform,
        r.arch,
        if r.secureboot { " (secure boot)" } else { "" }
    );
    let mut line = |k: &str, v: &str| out.push_str(&format!("{k:<width$}  {v}\n"));
    line("installer", &r.installer);
    line("installer (legacy)", &r.installer_legacy);
    line("pxe", &r.pxe);
    for a in &r.assets {
        line(&a.name, &a.url);
    }
    out
}

async fn urls(c: UrlsCmd) -> miette::Result<Exit> {
    let (version, platform, arch) = c.target.parse()?;
    let id = schematic_id(c.schematic.as_deref(), &c.spec, &c.factory).await?;
    let client = c.factory.client()?;
    let report = url_report(
        client.urls(),
        id,
        version,
        platform,
        arch,
        c.target.secureboot,
    );
    match c.output {
        OutputFormat::Text => print_text(&render_urls(&report))?,
        OutputFormat::Json => print_json(&report)?,
    }
    Ok(Exit::Success)
}

fn default_cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("homelab").join("images")
}

#[derive(Debug, Serialize)]
struct DownloadReport {
    url: String,
    #[serde(flatten)]
    outcome: talos_factory::DownloadOutcome,
}

async fn download(c: DownloadCmd, ctx: &Context) -> miette::Result<Exit> {
    let (version, platform, arch) = c.target.parse()?;
    let asset = match &c.asset {
        Some(name) => Asset::parse(name).into_diagnostic().wrap_err("--asset")?,
        None => Asset::iso(platform, arch, c.target.secureboot),
    };
    let id = schematic_id(c.schematic.as_deref(), &c.spec, &c.factory).await?;
    let client = c.factory.client()?;
    let cache = ImageCache::new(c.cache_dir.clone().unwrap_or_else(default_cache_dir));
    let url = client.urls().asset(&id, &version, &asset);
    let bar = ctx.progress.then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_message(asset.file_name());
        bar
    });
    let progress_bar = bar.clone();
    let outcome = client
        .download_to_cache(&cache, &id, &version, &asset, move |p| {
            if let Some(b) = &progress_bar {
                if let Some(t) = p.total {
                    b.set_length(t);
                }
                b.set_position(p.downloaded);
            }
        })
        .await
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot download {url}"))?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if outcome.from_cache {
        tracing::info!(path = %outcome.path.display(), "already in the cache");
    }
    match c.output {
        OutputFormat::Text => {
            print_text(&format!("{}  {}\n", outcome.sha256, outcome.path.display()))?
        }
        OutputFormat::Json => print_json(&DownloadReport {
            url: url.to_string(),
            outcome,
        })?,
    }
    Ok(Exit::Success)
}

async fn extensions(c: ExtensionsCmd) -> miette::Result<Exit> {
    let version: TalosVersion = c.version.parse().into_diagnostic()?;
    let list = c
        .factory
        .client()?
        .extensions(&version)
        .await
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot list the extensions of Talos {version}"))?;
    match c.output {
        OutputFormat::Json => print_json(&list)?,
        OutputFormat::Text => {
            let width = list.iter().map(|e| e.name.len()).max().unwrap_or(0);
            let text: String = list
                .iter()
                .map(|e| format!("{:<width$}  {}\n", e.name, e.description))
                .collect();
            print_text(&text)?;
        }
    }
    Ok(Exit::Success)
}

async fn versions(c: VersionsCmd) -> miette::Result<Exit> {
    let client = c.factory.client()?;
    let list = if c.broken {
        client.broken_versions().await
    } else {
        client.versions().await
    }
    .into_diagnostic()
    .wrap_err("cannot list versions")?;
    match c.output {
        OutputFormat::Json => print_json(&list)?,
        OutputFormat::Text => {
            print_text(&list.iter().map(|v| format!("{v}\n")).collect::<String>())?
        }
    }
    Ok(Exit::Success)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn schematic_id_excludes_schematic_flags() {
        use clap::Parser;
        let parse = |args: &[&str]| crate::cli::Cli::try_parse_from(args);
        assert!(
            parse(&[
                "homelab-cli",
                "image",
                "urls",
                "--version",
                "v1.12.0",
                "--schematic",
                "x"
            ])
            .is_ok()
        );
        let err = parse(&[
            "homelab-cli",
            "image",
            "urls",
            "--version",
            "v1.12.0",
            "--schematic",
            "x",
            "--extension",
            "siderolabs/qemu-guest-agent",
        ])
        .unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    #[test]
    fn meta_keys() {
        assert_eq!(parse_meta("0xa=foo").unwrap().key, 10);
        assert_eq!(parse_meta("10=a=b").unwrap().value, "a=b");
        assert!(parse_meta("256=x").is_err());
        assert!(parse_meta("x").is_err());
    }

    #[test]
    fn url_report_lists_installers_and_assets() {
        let r = url_report(
            &FactoryUrls::public(),
            SchematicId::vanilla(),
            "v1.12.0".parse().unwrap(),
            Platform::nocloud(),
            Arch::Amd64,
            false,
        );
        assert!(r.installer.contains("/nocloud-installer/"));
        assert!(r.installer_legacy.contains("/installer/"));
        assert!(r.assets.iter().any(|a| a.name == "nocloud-amd64.iso"));
        assert!(render_urls(&r).contains("nocloud-amd64.raw.xz"));
    }
}
