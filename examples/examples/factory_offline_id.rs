//! Compute Talos Image Factory schematic IDs offline and print the URLs and installer image
//! for a Proxmox (nocloud) VM. No network.
//!
//! `cargo run -p homelab-examples --example factory_offline_id [EXTENSION...]`

use talos_factory::{Arch, Asset, FactoryUrls, OfflineId, Platform, Schematic, TalosVersion};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut extensions: Vec<String> = std::env::args().skip(1).collect();
    if extensions.is_empty() {
        extensions.push("siderolabs/qemu-guest-agent".to_owned());
    }
    // Sorted and de-duplicated, as the factory's web UI does.
    let schematic = Schematic::with_extensions(extensions);
    let canonical = schematic.canonicalize();
    print!("canonical YAML:\n{}", canonical.yaml);
    let id = match canonical.offline_id() {
        OfflineId::Exact { id } => id,
        OfflineId::NeedsFactory { reasons } => {
            for r in reasons {
                eprintln!("cannot hash offline: {r}");
            }
            return Err("POST the schematic to the factory instead".into());
        }
        other => return Err(format!("unexpected: {other:?}").into()),
    };
    let version: TalosVersion = "v1.12.0".parse()?;
    let urls = FactoryUrls::public();
    let platform = Platform::nocloud();
    println!("schematic ID: {id}");
    println!(
        "ISO:          {}",
        urls.asset(
            &id,
            &version,
            &Asset::iso(platform.clone(), Arch::Amd64, false)
        )
    );
    println!(
        "disk image:   {}",
        urls.asset(
            &id,
            &version,
            &Asset::default_disk_image(platform.clone(), Arch::Amd64, false)
        )
    );
    println!(
        "installer:    {}",
        urls.installer(&id, &version, &platform, false)
    );
    Ok(())
}
