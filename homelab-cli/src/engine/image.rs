//! Image naming through `talos-factory`: offline schematic IDs, ISO URLs, installer refs.

use talos_factory::{Arch, Asset, FactoryUrls, Platform, Schematic, TalosVersion};

use crate::model::desired::ImageNaming;

/// Names images as the Image Factory does. `base` overrides the factory URL written in
/// homelab.yaml (the simulated lab serves its own factory).
#[derive(Debug, Clone, Default)]
pub struct FactoryNaming {
    /// Factory base URL override.
    pub base: Option<url::Url>,
}

impl FactoryNaming {
    /// The schematic document for these extensions and kernel args.
    pub fn schematic(extensions: &[String], extra_kernel_args: &[String]) -> Schematic {
        let mut s = Schematic::with_extensions(extensions.iter().cloned());
        s.customization.extra_kernel_args = extra_kernel_args.to_vec();
        s
    }

    fn urls(&self, factory: &str) -> FactoryUrls {
        let base = self.base.clone().or_else(|| url::Url::parse(factory).ok());
        match base {
            Some(b) => {
                let pxe =
                    url::Url::parse(talos_factory::PUBLIC_PXE_URL).unwrap_or_else(|_| b.clone());
                FactoryUrls::new(b, pxe)
            }
            None => FactoryUrls::public(),
        }
    }
}

impl ImageNaming for FactoryNaming {
    fn schematic_id(&self, extensions: &[String], extra_kernel_args: &[String]) -> String {
        // When Go's YAML libraries could disagree on quoting, the canonical digest is still
        // the best offline guess; `up` registers the schematic and uses the factory's answer.
        Self::schematic(extensions, extra_kernel_args)
            .canonicalize()
            .digest
            .to_string()
    }

    fn iso_url(&self, factory: &str, schematic_id: &str, version: &str) -> String {
        let urls = self.urls(factory);
        match (parse_id(schematic_id), version.parse::<TalosVersion>()) {
            (Some(id), Ok(v)) => urls
                .asset(
                    &id,
                    &v,
                    &Asset::iso(Platform::nocloud(), Arch::Amd64, false),
                )
                .to_string(),
            _ => format!(
                "{}image/{schematic_id}/{version}/nocloud-amd64.iso",
                urls.base()
            ),
        }
    }

    fn installer_image(&self, factory: &str, schematic_id: &str, version: &str) -> String {
        let urls = self.urls(factory);
        match (parse_id(schematic_id), version.parse::<TalosVersion>()) {
            (Some(id), Ok(v)) => urls
                .installer(&id, &v, &Platform::nocloud(), false)
                .to_string(),
            _ => format!(
                "{}/nocloud-installer/{schematic_id}:{version}",
                urls.registry()
            ),
        }
    }
}

/// A hex schematic ID back into the typed form.
fn parse_id(hex_id: &str) -> Option<talos_factory::SchematicId> {
    hex_id.parse().ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_factory_docs() {
        let n = FactoryNaming::default();
        let exts = vec!["siderolabs/qemu-guest-agent".to_string()];
        let id = n.schematic_id(&exts, &[]);
        assert_eq!(
            id,
            "ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515"
        );
        assert_eq!(
            n.iso_url("https://factory.talos.dev", &id, "v1.12.0"),
            format!("https://factory.talos.dev/image/{id}/v1.12.0/nocloud-amd64.iso")
        );
        assert_eq!(
            n.installer_image("https://factory.talos.dev", &id, "v1.12.0"),
            format!("factory.talos.dev/nocloud-installer/{id}:v1.12.0")
        );
    }
}
