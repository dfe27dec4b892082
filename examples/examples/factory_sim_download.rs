//! Start the simulated Image Factory on loopback, register a schematic, check its
//! extensions against the catalogue, and download an ISO into a cache (twice: the second
//! time comes from the cache). The simulated factory cuts the first transfer to show resume.
//!
//! `cargo run -p homelab-examples --example factory_sim_download`

use homelab_sim::factory::{FactorySim, FactorySimConfig};
use talos_factory::{Arch, Asset, FactoryClient, ImageCache, Platform, Schematic, TalosVersion};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sim = FactorySim::start_with(FactorySimConfig {
        redirect_images: true,
        cut_first_download_after: Some(64 * 1024),
        ..FactorySimConfig::default()
    })
    .await?;
    let client = FactoryClient::builder()
        .base_url(sim.base_url())
        .pxe_base_url(sim.pxe_url())
        .build()?;

    let version: TalosVersion = "v1.12.0".parse()?;
    let schematic =
        Schematic::with_extensions(["siderolabs/qemu-guest-agent", "siderolabs/iscsi-tools"]);
    let check = client.check_extensions(&schematic, &version).await?;
    if !check.is_ok() {
        return Err(check.to_string().into());
    }
    let created = client.create_schematic(&schematic).await?;
    println!(
        "schematic {} (offline ID matches: {})",
        created.id,
        !created.mismatch()
    );

    let cache_dir = tempfile::tempdir()?;
    let cache = ImageCache::new(cache_dir.path());
    let iso = Asset::iso(Platform::nocloud(), Arch::Amd64, false);
    for round in 1..=2 {
        let out = client
            .download_to_cache(&cache, &created.id, &version, &iso, |p| {
                if let Some(total) = p.total {
                    eprint!("\r{:>3}%", p.downloaded * 100 / total.max(1));
                }
            })
            .await?;
        eprintln!();
        println!(
            "round {round}: {} bytes, sha256 {}, from cache: {}, resumes: {}",
            out.bytes, out.sha256, out.from_cache, out.resumes
        );
    }
    println!(
        "PXE script: {}",
        client.urls().pxe_script(
            &created.id,
            &version,
            &Platform::metal(),
            Arch::Amd64,
            false
        )
    );
    sim.shutdown().await;
    Ok(())
}
