//! Talos Image Factory client with offline schematic IDs.
//!
//! - [`Schematic`]: the typed schematic document, parsed strictly like the factory does,
//!   with its canonical YAML and its [offline ID](Schematic::offline_id).
//! - [`Asset`], [`FactoryUrls`], [`InstallerRef`]: URLs of every image the factory serves and
//!   installer image references, built without network.
//! - [`FactoryClient`]: the HTTP API (schematics, versions, extension and overlay
//!   catalogues) and [downloads](FactoryClient::download) with resume, a progress callback,
//!   SHA-256 on the way and an [`ImageCache`].
//!
//! ```
//! use talos_factory::{Arch, Asset, FactoryUrls, Platform, Schematic, TalosVersion};
//!
//! let schematic = Schematic::with_extensions(["siderolabs/qemu-guest-agent"]);
//! let id = schematic.offline_id().exact().expect("plain strings hash exactly offline");
//! let version: TalosVersion = "v1.12.0".parse()?;
//! let urls = FactoryUrls::public();
//! let iso = Asset::iso(Platform::nocloud(), Arch::Amd64, false);
//! assert_eq!(
//!     urls.asset(&id, &version, &iso).as_str(),
//!     "https://factory.talos.dev/image/ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515/v1.12.0/nocloud-amd64.iso"
//! );
//! assert_eq!(
//!     urls.installer(&id, &version, &Platform::nocloud(), false).to_string(),
//!     "factory.talos.dev/nocloud-installer/ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515:v1.12.0"
//! );
//! # Ok::<(), talos_factory::Error>(())
//! ```

mod assets;
mod client;
mod download;
mod error;
mod schematic;
mod suggest;
mod version;
mod yaml;

pub use assets::{
    Arch, Asset, Compression, DiskFormat, FactoryUrls, InstallerRef, Platform, parse_boot_target,
};
pub use client::{
    AssetInfo, CreatedSchematic, ExtensionCheck, ExtensionInfo, FactoryClient,
    FactoryClientBuilder, OverlayInfo, UnknownExtension,
};
pub use download::{DownloadOutcome, DownloadProgress, ImageCache};
pub use error::Error;
pub use schematic::{
    Bootloader, Canonical, Customization, DiskImage, MetaValue, OfflineId, Overlay, Schematic,
    SchematicId, SecureBoot, SystemExtensions, Uncertainty,
};
pub use suggest::did_you_mean;
pub use version::TalosVersion;

/// The public Image Factory.
pub const PUBLIC_FACTORY_URL: &str = "https://factory.talos.dev";
/// The public PXE host (the factory's own docs; the Talos docs use `pxe.factory.talos.dev`).
pub const PUBLIC_PXE_URL: &str = "https://pxe.talos.dev";
