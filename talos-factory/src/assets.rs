//! Asset names (`internal/profile/profile.go` `ParseFromPath`), their URLs and installer
//! image references. Pure: nothing here touches the network.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use url::Url;

use crate::{Error, SchematicId, TalosVersion};

/// CPU architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// x86-64.
    Amd64,
    /// AArch64.
    Arm64,
}

impl Arch {
    /// `amd64` or `arm64`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Arch {
    type Err = Error;
    /// `amd64`/`arm64`, plus the iPXE names `x86_64` and `i386` (both amd64).
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "amd64" | "x86_64" | "i386" => Ok(Arch::Amd64),
            "arm64" => Ok(Arch::Arm64),
            other => Err(Error::Invalid {
                what: "architecture",
                value: other.to_owned(),
                expected: "amd64 or arm64",
            }),
        }
    }
}

/// A Talos platform name (`metal`, `nocloud`, `aws`, `digital-ocean`...).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Platform(String);

impl Platform {
    /// Bare metal (ISO, PXE, raw disk).
    pub fn metal() -> Platform {
        Platform("metal".to_owned())
    }

    /// NoCloud (cloud-init data source; the Proxmox automation choice).
    pub fn nocloud() -> Platform {
        Platform("nocloud".to_owned())
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The disk image the factory builds by default for this platform (Talos 1.12
    /// `platforms.go`): metal `raw.zst`, nocloud `raw.xz`, gcp `raw.tar.gz`, azure `vhd.xz`,
    /// vmware `ova`, oracle `qcow2`, otherwise `raw.xz`.
    pub fn default_disk_image(&self) -> (DiskFormat, Compression) {
        match self.0.as_str() {
            "metal" => (DiskFormat::Raw, Compression::Zst),
            "gcp" => (DiskFormat::Raw, Compression::TarGz),
            "azure" => (DiskFormat::Vhd, Compression::Xz),
            "vmware" => (DiskFormat::Ova, Compression::None),
            "oracle" => (DiskFormat::Qcow2, Compression::None),
            _ => (DiskFormat::Raw, Compression::Xz),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Platform {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let ok = !s.is_empty()
            && !s.starts_with('-')
            && !s.ends_with('-')
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Platform(s.to_owned()))
        } else {
            Err(Error::Invalid {
                what: "platform",
                value: s.to_owned(),
                expected: "a lowercase platform name such as metal or nocloud",
            })
        }
    }
}

/// Disk image format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskFormat {
    /// Raw disk.
    Raw,
    /// QEMU qcow2 (`cluster_size=8k`).
    Qcow2,
    /// Hyper-V/Azure VHD.
    Vhd,
    /// VMware OVA.
    Ova,
}

impl DiskFormat {
    /// The file extension.
    pub fn as_str(&self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Vhd => "vhd",
            DiskFormat::Ova => "ova",
        }
    }
}

/// Disk image compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Compression {
    /// Uncompressed.
    None,
    /// `.xz`.
    Xz,
    /// `.gz`.
    Gz,
    /// `.zst`.
    Zst,
    /// `.tar.gz`.
    TarGz,
}

impl Compression {
    /// The suffix including its dot (empty for none).
    pub fn suffix(&self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Xz => ".xz",
            Compression::Gz => ".gz",
            Compression::Zst => ".zst",
            Compression::TarGz => ".tar.gz",
        }
    }
}

/// One file the factory serves under `/image/{id}/{version}/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Asset {
    /// `kernel-<arch>` (independent of the schematic).
    Kernel {
        /// Architecture.
        arch: Arch,
    },
    /// `cmdline-<platform>-<arch>[-secureboot]`: the kernel command line as text.
    Cmdline {
        /// Platform.
        platform: Platform,
        /// Architecture.
        arch: Arch,
        /// Secure boot.
        secureboot: bool,
    },
    /// `initramfs-<arch>.xz` with the extensions.
    Initramfs {
        /// Architecture.
        arch: Arch,
    },
    /// `<platform>-<arch>[-secureboot].iso`.
    Iso {
        /// Platform.
        platform: Platform,
        /// Architecture.
        arch: Arch,
        /// Secure boot.
        secureboot: bool,
    },
    /// `<platform>-<arch>[-secureboot]-uki.efi`.
    Uki {
        /// Platform.
        platform: Platform,
        /// Architecture.
        arch: Arch,
        /// Secure boot.
        secureboot: bool,
    },
    /// `installer-<arch>[-secureboot].tar` (metal installer as an OCI tarball).
    Installer {
        /// Architecture.
        arch: Arch,
        /// Secure boot.
        secureboot: bool,
    },
    /// `<platform>-installer-<arch>[-secureboot].tar`.
    PlatformInstaller {
        /// Platform.
        platform: Platform,
        /// Architecture.
        arch: Arch,
        /// Secure boot.
        secureboot: bool,
    },
    /// `<platform>-<arch>[-secureboot].<format>[<compression>]`.
    DiskImage {
        /// Platform.
        platform: Platform,
        /// Architecture.
        arch: Arch,
        /// Secure boot.
        secureboot: bool,
        /// Format.
        format: DiskFormat,
        /// Compression.
        compression: Compression,
    },
}

fn sb(secureboot: bool) -> &'static str {
    if secureboot { "-secureboot" } else { "" }
}

impl Asset {
    /// An ISO.
    pub fn iso(platform: Platform, arch: Arch, secureboot: bool) -> Asset {
        Asset::Iso {
            platform,
            arch,
            secureboot,
        }
    }

    /// The platform's default disk image ([`Platform::default_disk_image`]).
    pub fn default_disk_image(platform: Platform, arch: Arch, secureboot: bool) -> Asset {
        let (format, compression) = platform.default_disk_image();
        Asset::DiskImage {
            platform,
            arch,
            secureboot,
            format,
            compression,
        }
    }

    /// Every asset worth listing for one platform/arch/secure-boot combination: kernel,
    /// command line, initramfs, ISO, UKI, both installer tarballs and the disk images
    /// (raw in every compression, qcow2, vhd.xz, ova).
    pub fn all_for(platform: &Platform, arch: Arch, secureboot: bool) -> Vec<Asset> {
        let p = || platform.clone();
        let mut v = vec![
            Asset::Kernel { arch },
            Asset::Cmdline {
                platform: p(),
                arch,
                secureboot,
            },
            Asset::Initramfs { arch },
            Asset::Iso {
                platform: p(),
                arch,
                secureboot,
            },
            Asset::Uki {
                platform: p(),
                arch,
                secureboot,
            },
            Asset::Installer { arch, secureboot },
            Asset::PlatformInstaller {
                platform: p(),
                arch,
                secureboot,
            },
        ];
        let disks = [
            (DiskFormat::Raw, Compression::None),
            (DiskFormat::Raw, Compression::Xz),
            (DiskFormat::Raw, Compression::Gz),
            (DiskFormat::Raw, Compression::Zst),
            (DiskFormat::Raw, Compression::TarGz),
            (DiskFormat::Qcow2, Compression::None),
            (DiskFormat::Vhd, Compression::Xz),
            (DiskFormat::Ova, Compression::None),
        ];
        v.extend(
            disks
                .into_iter()
                .map(|(format, compression)| Asset::DiskImage {
                    platform: p(),
                    arch,
                    secureboot,
                    format,
                    compression,
                }),
        );
        v
    }

    /// Whether the file's content depends on the schematic (only the kernel does not).
    pub fn depends_on_schematic(&self) -> bool {
        !matches!(self, Asset::Kernel { .. })
    }

    /// The file name in the factory's path grammar.
    pub fn file_name(&self) -> String {
        match self {
            Asset::Kernel { arch } => format!("kernel-{arch}"),
            Asset::Cmdline {
                platform,
                arch,
                secureboot,
            } => format!("cmdline-{platform}-{arch}{}", sb(*secureboot)),
            Asset::Initramfs { arch } => format!("initramfs-{arch}.xz"),
            Asset::Iso {
                platform,
                arch,
                secureboot,
            } => format!("{platform}-{arch}{}.iso", sb(*secureboot)),
            Asset::Uki {
                platform,
                arch,
                secureboot,
            } => format!("{platform}-{arch}{}-uki.efi", sb(*secureboot)),
            Asset::Installer { arch, secureboot } => {
                format!("installer-{arch}{}.tar", sb(*secureboot))
            }
            Asset::PlatformInstaller {
                platform,
                arch,
                secureboot,
            } => format!("{platform}-installer-{arch}{}.tar", sb(*secureboot)),
            Asset::DiskImage {
                platform,
                arch,
                secureboot,
                format,
                compression,
            } => format!(
                "{platform}-{arch}{}.{}{}",
                sb(*secureboot),
                format.as_str(),
                compression.suffix()
            ),
        }
    }

    /// Parse a file name with the factory's grammar, rules tried in its order.
    pub fn parse(name: &str) -> Result<Asset, Error> {
        let invalid = || Error::Invalid {
            what: "asset name",
            value: name.to_owned(),
            expected: "an Image Factory asset such as metal-amd64.iso, nocloud-amd64.raw.xz, kernel-amd64 or initramfs-amd64.xz",
        };
        if let Some(arch) = name.strip_prefix("kernel-") {
            return Ok(Asset::Kernel {
                arch: arch.parse().map_err(|_| invalid())?,
            });
        }
        if let Some(rest) = name.strip_prefix("cmdline-") {
            let (platform, arch, secureboot) = split_stem(rest).ok_or_else(invalid)?;
            return Ok(Asset::Cmdline {
                platform,
                arch,
                secureboot,
            });
        }
        if let Some(arch) = name
            .strip_prefix("initramfs-")
            .and_then(|r| r.strip_suffix(".xz"))
        {
            return Ok(Asset::Initramfs {
                arch: arch.parse().map_err(|_| invalid())?,
            });
        }
        if let Some(stem) = name.strip_suffix(".iso") {
            let (platform, arch, secureboot) = split_stem(stem).ok_or_else(invalid)?;
            return Ok(Asset::Iso {
                platform,
                arch,
                secureboot,
            });
        }
        if let Some(stem) = name.strip_suffix("-uki.efi") {
            let (platform, arch, secureboot) = split_stem(stem).ok_or_else(invalid)?;
            return Ok(Asset::Uki {
                platform,
                arch,
                secureboot,
            });
        }
        if let Some(rest) = name
            .strip_prefix("installer-")
            .and_then(|r| r.strip_suffix(".tar"))
        {
            let (arch, secureboot) = match rest.strip_suffix("-secureboot") {
                Some(a) => (a, true),
                None => (rest, false),
            };
            return Ok(Asset::Installer {
                arch: arch.parse().map_err(|_| invalid())?,
                secureboot,
            });
        }
        if let Some(stem) = name.strip_suffix(".tar")
            && let Some((platform, rest)) = stem.split_once("-installer-")
        {
            let platform: Platform = platform.parse().map_err(|_| invalid())?;
            let (arch, secureboot) = match rest.strip_suffix("-secureboot") {
                Some(a) => (a, true),
                None => (rest, false),
            };
            return Ok(Asset::PlatformInstaller {
                platform,
                arch: arch.parse().map_err(|_| invalid())?,
                secureboot,
            });
        }
        // Disk image: <stem>.<format>[compression]
        let (stem, ext) = name.split_once('.').ok_or_else(invalid)?;
        let (format, compression) = match ext {
            "raw" => (DiskFormat::Raw, Compression::None),
            "qcow2" => (DiskFormat::Qcow2, Compression::None),
            "vhd" => (DiskFormat::Vhd, Compression::None),
            "ova" => (DiskFormat::Ova, Compression::None),
            _ => {
                let (f, c) = ext.split_once('.').ok_or_else(invalid)?;
                let format = match f {
                    "raw" => DiskFormat::Raw,
                    "qcow2" => DiskFormat::Qcow2,
                    "vhd" => DiskFormat::Vhd,
                    "ova" => DiskFormat::Ova,
                    _ => return Err(invalid()),
                };
                let compression = match c {
                    "xz" => Compression::Xz,
                    "gz" => Compression::Gz,
                    "zst" => Compression::Zst,
                    "tar.gz" => Compression::TarGz,
                    _ => return Err(invalid()),
                };
                (format, compression)
            }
        };
        let (platform, arch, secureboot) = split_stem(stem).ok_or_else(invalid)?;
        Ok(Asset::DiskImage {
            platform,
            arch,
            secureboot,
            format,
            compression,
        })
    }
}

impl fmt::Display for Asset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file_name())
    }
}

impl FromStr for Asset {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Asset::parse(s)
    }
}

/// `<platform>-<arch>[-secureboot]`; the platform may itself contain dashes.
fn split_stem(stem: &str) -> Option<(Platform, Arch, bool)> {
    let (stem, secureboot) = match stem.strip_suffix("-secureboot") {
        Some(s) => (s, true),
        None => (stem, false),
    };
    let (platform, arch) = stem.rsplit_once('-')?;
    Some((platform.parse().ok()?, arch.parse().ok()?, secureboot))
}

/// Parse `<platform>-<arch>[-secureboot]` (the last segment of a PXE path). The platform
/// may contain dashes (`digital-ocean-amd64`); iPXE's `x86_64`/`i386` mean amd64.
pub fn parse_boot_target(s: &str) -> Result<(Platform, Arch, bool), Error> {
    split_stem(s).ok_or_else(|| Error::Invalid {
        what: "boot target",
        value: s.to_owned(),
        expected: "<platform>-<arch>[-secureboot], e.g. metal-amd64",
    })
}

/// An installer image reference such as `factory.talos.dev/nocloud-installer/<id>:v1.12.0`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct InstallerRef {
    /// Registry host (with port when not the default).
    pub registry: String,
    /// Repository: `installer`, `installer-secureboot`, `<platform>-installer` or
    /// `<platform>-installer-secureboot`.
    pub repository: String,
    /// Schematic ID.
    pub id: SchematicId,
    /// Talos version (tag).
    pub version: TalosVersion,
}

impl fmt::Display for InstallerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}:{}",
            self.registry, self.repository, self.id, self.version
        )
    }
}

/// URL builder for one factory (HTTP base) and its PXE host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactoryUrls {
    base: Url,
    pxe_base: Url,
}

impl FactoryUrls {
    /// `https://factory.talos.dev` with PXE at `https://pxe.talos.dev`.
    pub fn public() -> FactoryUrls {
        FactoryUrls {
            base: constant_url(crate::PUBLIC_FACTORY_URL),
            pxe_base: constant_url(crate::PUBLIC_PXE_URL),
        }
    }

    /// A self-hosted factory. A path in either base is kept (e.g. behind a reverse proxy).
    pub fn new(base: Url, pxe_base: Url) -> FactoryUrls {
        FactoryUrls {
            base: with_trailing_slash(base),
            pxe_base: with_trailing_slash(pxe_base),
        }
    }

    /// The HTTP base URL.
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// The PXE base URL.
    pub fn pxe_base(&self) -> &Url {
        &self.pxe_base
    }

    /// `base` joined with a relative path made of already-safe segments.
    pub(crate) fn join(&self, path: &str) -> Url {
        join(&self.base, path)
    }

    /// `{base}/image/{id}/{version}/{asset}`.
    pub fn asset(&self, id: &SchematicId, version: &TalosVersion, asset: &Asset) -> Url {
        self.join(&format!("image/{id}/{version}/{}", asset.file_name()))
    }

    /// The iPXE script: `{pxe_base}/pxe/{id}/{version}/{platform}-{arch}[-secureboot]`.
    pub fn pxe_script(
        &self,
        id: &SchematicId,
        version: &TalosVersion,
        platform: &Platform,
        arch: Arch,
        secureboot: bool,
    ) -> Url {
        join(
            &self.pxe_base,
            &format!("pxe/{id}/{version}/{platform}-{arch}{}", sb(secureboot)),
        )
    }

    /// The registry host the factory's OCI frontend answers on (host and non-default port
    /// of the base URL).
    pub fn registry(&self) -> String {
        let host = self.base.host_str().unwrap_or("factory.talos.dev");
        match self.base.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        }
    }

    /// The installer image for this version: the per-platform form
    /// (`<platform>-installer[-secureboot]`) from Talos 1.10.0, where the UKI's command line
    /// comes from the installer, otherwise the legacy (metal) form.
    pub fn installer(
        &self,
        id: &SchematicId,
        version: &TalosVersion,
        platform: &Platform,
        secureboot: bool,
    ) -> InstallerRef {
        if version.supports_platform_installer() {
            self.installer_for_platform(id, version, platform, secureboot)
        } else {
            self.installer_legacy(id, version, secureboot)
        }
    }

    /// `<registry>/installer[-secureboot]/<id>:<version>` (metal).
    pub fn installer_legacy(
        &self,
        id: &SchematicId,
        version: &TalosVersion,
        secureboot: bool,
    ) -> InstallerRef {
        InstallerRef {
            registry: self.registry(),
            repository: format!("installer{}", sb(secureboot)),
            id: *id,
            version: version.clone(),
        }
    }

    /// `<registry>/<platform>-installer[-secureboot]/<id>:<version>` (Talos ≥ 1.10).
    pub fn installer_for_platform(
        &self,
        id: &SchematicId,
        version: &TalosVersion,
        platform: &Platform,
        secureboot: bool,
    ) -> InstallerRef {
        InstallerRef {
            registry: self.registry(),
            repository: format!("{platform}-installer{}", sb(secureboot)),
            id: *id,
            version: version.clone(),
        }
    }
}

fn with_trailing_slash(mut url: Url) -> Url {
    if !url.path().ends_with('/') {
        let p = format!("{}/", url.path());
        url.set_path(&p);
    }
    url
}

fn join(base: &Url, path: &str) -> Url {
    // Every segment we join is validated ([a-z0-9.-], hex IDs), so `join` cannot fail
    // on well-formed bases; fall back to the base itself rather than panic.
    base.join(path).unwrap_or_else(|_| base.clone())
}

fn constant_url(s: &str) -> Url {
    match Url::parse(s) {
        Ok(u) => with_trailing_slash(u),
        // Only ever called with this crate's constant, valid URLs.
        Err(e) => unreachable!("constant URL {s}: {e}"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_the_grammar() {
        for p in [
            Platform::metal(),
            Platform::nocloud(),
            "digital-ocean".parse().unwrap(),
        ] {
            for arch in [Arch::Amd64, Arch::Arm64] {
                for secureboot in [false, true] {
                    for a in Asset::all_for(&p, arch, secureboot) {
                        let name = a.file_name();
                        assert_eq!(Asset::parse(&name).unwrap(), a, "{name}");
                    }
                }
            }
        }
        for bad in [
            "",
            "kernel-x",
            "metal.iso",
            "metal-amd64.raw.bz2",
            "foo",
            "initramfs-amd64",
        ] {
            assert!(Asset::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Asset::parse("metal-amd64-secureboot-uki.efi").unwrap(),
            Asset::Uki {
                platform: Platform::metal(),
                arch: Arch::Amd64,
                secureboot: true
            }
        );
    }

    #[test]
    fn default_disk_images() {
        let name =
            |p: &str| Asset::default_disk_image(p.parse().unwrap(), Arch::Amd64, false).file_name();
        assert_eq!(name("metal"), "metal-amd64.raw.zst");
        assert_eq!(name("nocloud"), "nocloud-amd64.raw.xz");
        assert_eq!(name("gcp"), "gcp-amd64.raw.tar.gz");
        assert_eq!(name("azure"), "azure-amd64.vhd.xz");
        assert_eq!(name("vmware"), "vmware-amd64.ova");
        assert_eq!(name("oracle"), "oracle-amd64.qcow2");
        assert_eq!(name("hcloud"), "hcloud-amd64.raw.xz");
    }

    #[test]
    fn urls_and_installers() {
        let id = SchematicId::vanilla();
        let old: TalosVersion = "v1.9.5".parse().unwrap();
        let new: TalosVersion = "v1.12.0".parse().unwrap();
        let urls = FactoryUrls::public();
        assert_eq!(
            urls.pxe_script(&id, &new, &Platform::metal(), Arch::Arm64, true)
                .as_str(),
            format!("https://pxe.talos.dev/pxe/{id}/v1.12.0/metal-arm64-secureboot")
        );
        assert_eq!(
            urls.installer(&id, &old, &Platform::nocloud(), false)
                .to_string(),
            format!("factory.talos.dev/installer/{id}:v1.9.5")
        );
        assert_eq!(
            urls.installer(&id, &new, &Platform::nocloud(), true)
                .to_string(),
            format!("factory.talos.dev/nocloud-installer-secureboot/{id}:v1.12.0")
        );
        let local = FactoryUrls::new(
            "http://127.0.0.1:8080/factory".parse().unwrap(),
            "http://127.0.0.1:8080".parse().unwrap(),
        );
        assert_eq!(local.registry(), "127.0.0.1:8080");
        assert_eq!(
            local
                .asset(&id, &new, &Asset::Kernel { arch: Arch::Amd64 })
                .as_str(),
            format!("http://127.0.0.1:8080/factory/image/{id}/v1.12.0/kernel-amd64")
        );
    }
}
