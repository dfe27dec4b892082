//! Integration tests of the simulated factory, driven by the `talos-factory` client and by
//! raw HTTP where the wire details matter.
#![allow(clippy::unwrap_used)]

use homelab_sim::factory::{FactorySim, FactorySimConfig};
use sha2::{Digest, Sha256};
use talos_factory::{
    Arch, Asset, Error, FactoryClient, ImageCache, Platform, Schematic, SchematicId, TalosVersion,
};

fn loopback() -> std::net::SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn client_for(base: &str, pxe: &str) -> FactoryClient {
    FactoryClient::builder()
        .base_url(base)
        .pxe_base_url(pxe)
        .native_roots(false)
        .build()
        .unwrap()
}

/// A plain reqwest client (rustls with ring, as everywhere; the sim itself is plain HTTP).
fn http() -> reqwest::Client {
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn get(url: impl reqwest::IntoUrl) -> reqwest::Response {
    http().get(url).send().await.unwrap()
}

fn v(s: &str) -> TalosVersion {
    s.parse().unwrap()
}

#[tokio::test]
async fn schematics_round_trip_and_persist_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let sim = FactorySim::start(loopback(), Some(dir.path().to_path_buf()))
        .await
        .unwrap();
    let c = client_for(&sim.base_url(), &sim.pxe_url());
    let s = Schematic::parse(
        "customization:\n  extraKernelArgs: [net.ifnames=0]\n  systemExtensions:\n    officialExtensions: [siderolabs/qemu-guest-agent]\n",
    )
    .unwrap();
    let created = c.create_schematic(&s).await.unwrap();
    assert!(!created.mismatch());
    assert_eq!(Some(created.id), s.offline_id().exact());
    assert_eq!(created.schematic, s.canonical_yaml());
    // Idempotent: the same ID again.
    assert_eq!(c.create_schematic(&s).await.unwrap().id, created.id);
    assert_eq!(c.get_schematic(&created.id).await.unwrap(), s);
    sim.shutdown().await;

    let sim = FactorySim::start(loopback(), Some(dir.path().to_path_buf()))
        .await
        .unwrap();
    let c = client_for(&sim.base_url(), &sim.pxe_url());
    assert_eq!(
        c.get_schematic_yaml(&created.id).await.unwrap(),
        created.schematic
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn published_vector_ids_come_back_from_the_sim() {
    let sim = FactorySim::start(loopback(), None).await.unwrap();
    let c = client_for(&sim.base_url(), &sim.pxe_url());
    let created = c
        .create_schematic_from_yaml(
            "customization:\n  systemExtensions:\n    officialExtensions:\n      - siderolabs/qemu-guest-agent\n",
        )
        .await
        .unwrap();
    assert_eq!(
        created.id.to_string(),
        "ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515"
    );
    // The vanilla schematic is known without a POST.
    assert_eq!(
        c.get_schematic_yaml(&SchematicId::vanilla()).await.unwrap(),
        "customization: {}\n"
    );
}

#[tokio::test]
async fn errors_are_plain_text_with_request_ids() {
    let sim = FactorySim::start(loopback(), None).await.unwrap();
    let http = http();
    let resp = http
        .post(format!("{}/schematics", sim.base_url()))
        .header("x-request-id", "abc123")
        .body("customization:\n  bogus: 1\n")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.headers()["x-request-id"], "abc123");
    assert!(resp.headers().contains_key("server"));
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let body = resp.text().await.unwrap();
    assert!(body.contains("bogus") && body.ends_with('\n'), "{body:?}");

    let resp = http
        .post(format!("{}/schematics", sim.base_url()))
        .body("owner: someone\n")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    let c = client_for(&sim.base_url(), &sim.pxe_url());
    let missing: SchematicId = "a".repeat(64).parse().unwrap();
    let err = c.get_schematic(&missing).await.unwrap_err();
    assert_eq!(err.status(), Some(404));
    assert!(err.to_string().ends_with("schematic not found"), "{err}");

    let resp = http
        .get(format!("{}/nope", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.text().await.unwrap(), "404 page not found\n");
    let resp = http
        .get(format!("{}/schematics/xyz", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn versions_and_catalogues() {
    let sim = FactorySim::start(loopback(), None).await.unwrap();
    let c = client_for(&sim.base_url(), &sim.pxe_url());
    let versions = c.versions().await.unwrap();
    assert!(versions.contains(&v("v1.12.0")));
    assert_eq!(c.broken_versions().await.unwrap(), [v("v1.10.1")]);
    let ext = c.extensions(&v("1.12.0")).await.unwrap();
    assert!(ext.iter().any(|e| {
        e.name == "siderolabs/qemu-guest-agent"
            && e.reference
                .starts_with("ghcr.io/siderolabs/qemu-guest-agent:")
            && e.digest.starts_with("sha256:")
    }));
    assert!(!c.overlays(&v("v1.12.0")).await.unwrap().is_empty());
    let check = c
        .check_extensions(
            &Schematic::with_extensions(["siderolabs/qemu-guest-agnt"]),
            &v("v1.12.0"),
        )
        .await
        .unwrap();
    assert_eq!(
        check.unknown[0].suggestions[0],
        "siderolabs/qemu-guest-agent"
    );
    let err = c.extensions(&v("v0.1.0")).await.unwrap_err();
    assert_eq!(err.status(), Some(404));
}

#[tokio::test]
async fn images_redirect_cut_resume_and_cache() {
    let sim = FactorySim::start_with(FactorySimConfig {
        redirect_images: true,
        cut_first_download_after: Some(10_000),
        image_size: 100_000,
        ..FactorySimConfig::default()
    })
    .await
    .unwrap();
    let c = client_for(&sim.base_url(), &sim.pxe_url());
    let s = Schematic::with_extensions(["siderolabs/qemu-guest-agent"]);
    let id = c.create_schematic(&s).await.unwrap().id;
    let dir = tempfile::tempdir().unwrap();
    let cache = ImageCache::new(dir.path());
    let asset = Asset::iso(Platform::nocloud(), Arch::Amd64, false);
    let out = c
        .download_to_cache(&cache, &id, &v("v1.12.0"), &asset, |_| {})
        .await
        .unwrap();
    assert_eq!(out.bytes, 100_000);
    assert_eq!(out.resumes, 1, "the first transfer is cut and resumed");
    let data = std::fs::read(&out.path).unwrap();
    assert_eq!(out.sha256, hex::encode(Sha256::digest(&data)));

    // A fresh, uncut download (via the PXE listener: no redirect) gives the same bytes.
    let url = format!("{}/image/{id}/v1.12.0/nocloud-amd64.iso", sim.pxe_url());
    let direct = get(&url).await;
    assert_eq!(direct.status(), 200);
    assert_eq!(
        direct.headers()["content-disposition"],
        "attachment; filename=\"nocloud-amd64.iso\""
    );
    assert_eq!(direct.bytes().await.unwrap().as_ref(), data.as_slice());

    let log = sim.requests();
    let redirects = log
        .iter()
        .filter(|l| l.starts_with("GET /image/") && l.contains("nocloud-amd64.iso"))
        .count();
    assert_eq!(
        redirects, 3,
        "two via the main listener (302) and one direct: {log:?}"
    );
    assert_eq!(log.iter().filter(|l| l.starts_with("GET /cdn/")).count(), 2);

    // Cached: no further request.
    let before = sim.requests().len();
    let again = c
        .download_to_cache(&cache, &id, &v("v1.12.0"), &asset, |_| {})
        .await
        .unwrap();
    assert!(again.from_cache);
    assert_eq!(sim.requests().len(), before);

    // Different schematic, different bytes; the kernel does not depend on the schematic.
    let vanilla = SchematicId::vanilla();
    let other = c
        .download(
            &c.urls().asset(&vanilla, &v("v1.12.0"), &asset),
            &dir.path().join("other.iso"),
            |_| {},
        )
        .await
        .unwrap();
    assert_ne!(other.sha256, out.sha256);
    let k = Asset::Kernel { arch: Arch::Amd64 };
    let k1 = c
        .download(
            &c.urls().asset(&id, &v("v1.12.0"), &k),
            &dir.path().join("k1"),
            |_| {},
        )
        .await
        .unwrap();
    let k2 = c
        .download(
            &c.urls().asset(&vanilla, &v("v1.12.0"), &k),
            &dir.path().join("k2"),
            |_| {},
        )
        .await
        .unwrap();
    assert_eq!(k1.sha256, k2.sha256);
}

#[tokio::test]
async fn ranges_heads_and_bad_assets() {
    let sim = FactorySim::start(loopback(), None).await.unwrap();
    let base = sim.base_url();
    let id = SchematicId::vanilla();
    let http = http();
    let url = format!("{base}/image/{id}/v1.12.0/metal-amd64.raw.zst");
    let head = http.head(&url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], "262144");
    assert_eq!(head.headers()["accept-ranges"], "bytes");
    let etag = head.headers()["etag"].clone();
    let part = http
        .get(&url)
        .header("range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.headers()["content-range"], "bytes 100-199/262144");
    let part = part.bytes().await.unwrap();
    let whole = http.get(&url).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(part.as_ref(), &whole[100..200]);
    let stale = http
        .get(&url)
        .header("range", "bytes=100-")
        .header("if-range", "\"other\"")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 200, "a stale If-Range gets the whole file");
    let fresh = http
        .get(&url)
        .header("range", "bytes=100-")
        .header("if-range", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), 206);
    let past = http
        .get(&url)
        .header("range", "bytes=262144-")
        .send()
        .await
        .unwrap();
    assert_eq!(past.status(), 416);
    assert_eq!(past.headers()["content-range"], "bytes */262144");

    let sidecar = http.get(format!("{url}.sha256")).send().await.unwrap();
    assert_eq!(sidecar.status(), 402, "sidecars are Enterprise-only");
    let bad = http
        .get(format!("{base}/image/{id}/v1.12.0/metal-amd64.raw.bz2"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let cmdline = http
        .get(format!("{base}/image/{id}/v1.12.0/cmdline-nocloud-amd64"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(cmdline.starts_with("talos.platform=nocloud "), "{cmdline}");
}

#[tokio::test]
async fn pxe_scripts() {
    let sim = FactorySim::start(loopback(), None).await.unwrap();
    let c = client_for(&sim.base_url(), &sim.pxe_url());
    let s = Schematic::parse("customization:\n  extraKernelArgs: [ip=dhcp]\n").unwrap();
    let id = c.create_schematic(&s).await.unwrap().id;
    let url = c
        .urls()
        .pxe_script(&id, &v("v1.12.0"), &Platform::metal(), Arch::Amd64, false);
    assert!(url.as_str().starts_with(&sim.pxe_url()));
    let script = get(url.clone()).await.text().await.unwrap();
    let pxe = sim.pxe_url();
    assert!(script.starts_with("#!ipxe\n"), "{script}");
    assert!(
        script.contains(&format!(
            "kernel {pxe}/image/{id}/v1.12.0/kernel-amd64 talos.platform=metal "
        )),
        "{script}"
    );
    assert!(script.contains(" ip=dhcp\n"), "{script}");
    assert!(script.contains(&format!(
        "initrd {pxe}/image/{id}/v1.12.0/initramfs-amd64.xz\n"
    )));
    assert!(script.ends_with("boot\n"));
    let sb = c
        .urls()
        .pxe_script(&id, &v("v1.12.0"), &Platform::metal(), Arch::Amd64, true);
    let script = get(sb).await.text().await.unwrap();
    assert!(
        script.contains("metal-amd64-secureboot-uki.efi"),
        "{script}"
    );
    assert!(!script.contains("initrd"));
    // And the kernel it points to downloads.
    let k = get(format!("{pxe}/image/{id}/v1.12.0/kernel-amd64")).await;
    assert_eq!(k.status(), 200);
    let err: Error = c
        .download(
            &format!("{}/pxe/{id}/v1.12.0/metal-sparc", sim.base_url())
                .parse()
                .unwrap(),
            &tempfile::tempdir().unwrap().path().join("x"),
            |_| {},
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400));
}
