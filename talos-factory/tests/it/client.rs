//! Every factory endpoint against wiremock, with a catch-all mock that fails the test on any
//! request nobody expected. Cut connections are produced by a raw TCP server on 127.0.0.1.

use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use talos_factory::{
    Arch, Asset, DownloadProgress, Error, FactoryClient, ImageCache, Platform, Schematic,
    SchematicId, TalosVersion,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wiremock::matchers::{any, body_string, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const QEMU_ID: &str = "ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515";
const QEMU_YAML: &str = "customization:\n    systemExtensions:\n        officialExtensions:\n            - siderolabs/qemu-guest-agent\n";

/// A server whose unmatched requests fail the test when it is dropped.
async fn server() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(599).set_body_string("no mock for this request\n"))
        .with_priority(u8::MAX)
        .named("catch-all: unexpected request")
        .expect(0)
        .mount(&server)
        .await;
    server
}

fn client(server: &MockServer) -> FactoryClient {
    FactoryClient::builder()
        .base_url(server.uri())
        .native_roots(false)
        .build()
        .unwrap()
}

fn v(s: &str) -> TalosVersion {
    s.parse().unwrap()
}

fn plain_text(status: u16, body: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .insert_header("content-type", "text/plain; charset=utf-8")
        .set_body_string(body)
}

#[tokio::test]
async fn create_schematic_returns_the_201_shape_and_matches_offline() {
    let server = server().await;
    Mock::given(method("POST"))
        .and(path("/schematics"))
        .and(header("content-type", "application/yaml"))
        .and(body_string(QEMU_YAML))
        .respond_with(
            ResponseTemplate::new(201)
                .insert_header("content-type", "application/json")
                .set_body_string(format!(
                    "{}\n",
                    serde_json::json!({"id": QEMU_ID, "schematic": QEMU_YAML})
                )),
        )
        .expect(1)
        .mount(&server)
        .await;
    let created = client(&server)
        .create_schematic(&Schematic::with_extensions(["siderolabs/qemu-guest-agent"]))
        .await
        .unwrap();
    assert_eq!(created.id.to_string(), QEMU_ID);
    assert_eq!(created.schematic, QEMU_YAML);
    assert!(!created.mismatch());
}

#[tokio::test]
async fn a_different_factory_id_is_reported_as_a_mismatch() {
    let server = server().await;
    let other = SchematicId::vanilla().to_string();
    Mock::given(method("POST"))
        .and(path("/schematics"))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(
                serde_json::json!({"id": other, "schematic": "customization: {}\n"}),
            ),
        )
        .expect(1)
        .mount(&server)
        .await;
    let created = client(&server)
        .create_schematic(&Schematic::with_extensions(["siderolabs/qemu-guest-agent"]))
        .await
        .unwrap();
    assert_eq!(created.id.to_string(), other, "the factory's ID wins");
    assert!(created.mismatch());
}

#[tokio::test]
async fn create_from_a_file_posts_it_verbatim() {
    let server = server().await;
    let text = "customization:\n  systemExtensions:\n    officialExtensions: [b/x, a/y]\n";
    let canonical = Schematic::parse(text).unwrap().canonicalize();
    Mock::given(method("POST"))
        .and(path("/schematics"))
        .and(body_string(text))
        .respond_with(ResponseTemplate::new(201).set_body_json(
            serde_json::json!({"id": canonical.digest.to_string(), "schematic": canonical.yaml}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let created = client(&server)
        .create_schematic_from_yaml(text)
        .await
        .unwrap();
    assert!(!created.mismatch());
    assert!(created.schematic.find("b/x").unwrap() < created.schematic.find("a/y").unwrap());
    // A local mistake never reaches the server (the catch-all would fail the test).
    let err = client(&server)
        .create_schematic_from_yaml("customization:\n  nope: 1\n")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Parse { line: Some(2), .. }), "{err}");
}

#[tokio::test]
async fn a_400_keeps_status_and_plain_text_body() {
    let server = server().await;
    let body =
        "yaml: unmarshal errors:\n  line 2: field owner not found in type schematic.Schematic\n";
    Mock::given(method("POST"))
        .and(path("/schematics"))
        .respond_with(plain_text(400, body))
        .expect(1)
        .mount(&server)
        .await;
    let s = Schematic {
        owner: "me".into(),
        ..Default::default()
    };
    let err = client(&server).create_schematic(&s).await.unwrap_err();
    assert_eq!(err.status(), Some(400));
    match &err {
        Error::Api { message, .. } => assert_eq!(message, body.trim_end()),
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("HTTP 400"), "{err}");
}

#[tokio::test]
async fn get_schematic_and_404_plain_text() {
    let server = server().await;
    Mock::given(method("GET"))
        .and(path(format!("/schematics/{QEMU_ID}")))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "application/yaml")
                .set_body_string(QEMU_YAML),
        )
        .expect(1)
        .mount(&server)
        .await;
    let vanilla = SchematicId::vanilla();
    Mock::given(method("GET"))
        .and(path(format!("/schematics/{vanilla}")))
        .respond_with(plain_text(404, "schematic not found\n"))
        .expect(1)
        .mount(&server)
        .await;
    let c = client(&server);
    let s = c.get_schematic(&QEMU_ID.parse().unwrap()).await.unwrap();
    assert_eq!(
        s.customization.system_extensions.official_extensions,
        ["siderolabs/qemu-guest-agent"]
    );
    let err = c.get_schematic(&vanilla).await.unwrap_err();
    assert_eq!(err.status(), Some(404));
    assert!(
        err.to_string().ends_with("HTTP 404: schematic not found"),
        "{err}"
    );
}

#[tokio::test]
async fn versions_and_broken_versions() {
    let server = server().await;
    Mock::given(method("GET"))
        .and(path("/versions"))
        .and(query_param("broken", "true"))
        .respond_with(plain_text(200, r#"["v1.12.2"]"#))
        .expect(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/versions"))
        // Go sniffs text/plain for this JSON; the client must not insist on JSON.
        .respond_with(plain_text(
            200,
            r#"["v1.11.5","v1.12.0","v1.12.1","not-a-version"]"#,
        ))
        .expect(1)
        .with_priority(2)
        .mount(&server)
        .await;
    let c = client(&server);
    assert_eq!(
        c.versions().await.unwrap(),
        [v("v1.11.5"), v("v1.12.0"), v("v1.12.1")]
    );
    assert_eq!(c.broken_versions().await.unwrap(), [v("v1.12.2")]);
}

fn catalogue() -> serde_json::Value {
    serde_json::json!([
        {"name": "siderolabs/qemu-guest-agent", "ref": "ghcr.io/siderolabs/qemu-guest-agent:10.0.2", "digest": "sha256:aa", "author": "Sidero Labs", "description": "QEMU guest agent"},
        {"name": "siderolabs/iscsi-tools", "ref": "ghcr.io/siderolabs/iscsi-tools:v0.2.0", "digest": "sha256:bb", "author": "Sidero Labs", "description": "iSCSI"}
    ])
}

#[tokio::test]
async fn extensions_overlays_and_validation() {
    let server = server().await;
    Mock::given(method("GET"))
        .and(path("/version/v1.12.0/extensions/official"))
        .respond_with(ResponseTemplate::new(200).set_body_json(catalogue()))
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/version/v1.12.0/overlays/official"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!([
            {"name": "rpi_generic", "image": "siderolabs/sbc-raspberrypi", "ref": "ghcr.io/siderolabs/sbc-raspberrypi:v0.1.0", "digest": "sha256:cc"}
        ])))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/version/v1.4.0/overlays/official"))
        .respond_with(ResponseTemplate::new(200).set_body_string("[]"))
        .expect(1)
        .mount(&server)
        .await;
    let c = client(&server);
    let ext = c.extensions(&v("v1.12.0")).await.unwrap();
    assert_eq!(ext.len(), 2);
    assert_eq!(
        ext[0].reference,
        "ghcr.io/siderolabs/qemu-guest-agent:10.0.2"
    );
    let ov = c.overlays(&v("v1.12.0")).await.unwrap();
    assert_eq!(ov[0].image, "siderolabs/sbc-raspberrypi");
    assert!(c.overlays(&v("v1.4.0")).await.unwrap().is_empty());

    let s = Schematic::with_extensions(["siderolabs/qemu-guest-agent", "siderolabs/iscsi-tool"]);
    let check = c.check_extensions(&s, &v("v1.12.0")).await.unwrap();
    assert_eq!(check.unknown.len(), 1);
    assert_eq!(check.unknown[0].name, "siderolabs/iscsi-tool");
    assert_eq!(check.unknown[0].suggestions, ["siderolabs/iscsi-tools"]);
}

fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

#[tokio::test]
async fn download_follows_redirects_reports_progress_and_caches() {
    let server = server().await;
    let id = SchematicId::vanilla();
    let asset = Asset::iso(Platform::metal(), Arch::Amd64, false);
    let data = payload(200_000);
    Mock::given(method("GET"))
        .and(path(format!("/image/{id}/v1.12.0/metal-amd64.iso")))
        .respond_with(ResponseTemplate::new(302).insert_header(
            "location",
            format!("{}/cdn/blob/metal-amd64.iso", server.uri()),
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/cdn/blob/metal-amd64.iso"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "application/x-iso9660-image")
                .set_body_bytes(data.clone()),
        )
        .expect(1)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let cache = ImageCache::new(dir.path());
    let c = client(&server);
    let events = Arc::new(Mutex::new(Vec::<DownloadProgress>::new()));
    let ev = events.clone();
    let out = c
        .download_to_cache(&cache, &id, &v("v1.12.0"), &asset, move |p| {
            ev.lock().unwrap().push(p)
        })
        .await
        .unwrap();
    assert!(!out.from_cache);
    assert_eq!(out.bytes, data.len() as u64);
    assert_eq!(out.sha256, sha(&data));
    assert_eq!(std::fs::read(&out.path).unwrap(), data);
    let events = events.lock().unwrap().clone();
    assert_eq!(events.last().unwrap().downloaded, data.len() as u64);
    assert_eq!(events.last().unwrap().total, Some(data.len() as u64));
    assert!(
        events
            .windows(2)
            .all(|w| w[0].downloaded <= w[1].downloaded)
    );
    // No temp file is left behind.
    let names: Vec<_> = std::fs::read_dir(out.path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}"); // the file and its .sha256

    // The second time nothing is fetched (the mocks expect exactly one request each).
    let again = c
        .download_to_cache(&cache, &id, &v("v1.12.0"), &asset, |_| {})
        .await
        .unwrap();
    assert!(again.from_cache);
    assert_eq!(again.sha256, out.sha256);
}

#[tokio::test]
async fn download_resumes_a_part_file_with_range() {
    let server = server().await;
    let id = SchematicId::vanilla();
    let data = payload(50_000);
    let url_path = format!("/image/{id}/v1.12.0/kernel-amd64");
    Mock::given(method("GET"))
        .and(path(url_path.clone()))
        .and(header("range", "bytes=20000-"))
        .respond_with(
            ResponseTemplate::new(206)
                .insert_header("content-range", "bytes 20000-49999/50000")
                .set_body_bytes(data[20_000..].to_vec()),
        )
        .expect(1)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("kernel-amd64");
    std::fs::write(dir.path().join("kernel-amd64.part"), &data[..20_000]).unwrap();
    let c = client(&server);
    let url = c
        .urls()
        .asset(&id, &v("v1.12.0"), &Asset::Kernel { arch: Arch::Amd64 });
    let out = c.download(&url, &dest, |_| {}).await.unwrap();
    assert_eq!(out.resumes, 1);
    assert_eq!(
        out.sha256,
        sha(&data),
        "the hash covers the resumed prefix too"
    );
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    assert!(!dir.path().join("kernel-amd64.part").exists());
}

#[tokio::test]
async fn download_errors_keep_status_and_leave_no_file() {
    let server = server().await;
    let id = SchematicId::vanilla();
    Mock::given(method("GET"))
        .and(path(format!("/image/{id}/v1.12.0/metal-amd64.iso")))
        .respond_with(plain_text(404, "schematic not found\n"))
        .expect(1)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let c = client(&server);
    let url = c.urls().asset(
        &id,
        &v("v1.12.0"),
        &Asset::iso(Platform::metal(), Arch::Amd64, false),
    );
    let dest = dir.path().join("x.iso");
    let err = c.download(&url, &dest, |_| {}).await.unwrap_err();
    assert_eq!(err.status(), Some(404));
    assert!(!dest.exists());
}

/// A raw HTTP/1.1 server: the first GET gets the headers and only `cut_at` bytes before the
/// connection is closed; later GETs must carry `Range: bytes=<cut_at>-` and get a 206.
async fn cutting_server(data: Vec<u8>, cut_at: usize) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let mut buf = vec![0u8; 8192];
            let mut req = Vec::new();
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = sock.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&buf[..n]);
            }
            let text = String::from_utf8_lossy(&req).to_lowercase();
            log.lock().unwrap().push(text.clone());
            let range = text
                .lines()
                .find_map(|l| l.strip_prefix("range: bytes="))
                .and_then(|r| r.trim_end_matches('-').parse::<usize>().ok());
            match range {
                None => {
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\naccept-ranges: bytes\r\netag: \"v1\"\r\n\r\n",
                        data.len()
                    );
                    sock.write_all(head.as_bytes()).await.unwrap();
                    sock.write_all(&data[..cut_at]).await.unwrap();
                    sock.flush().await.unwrap();
                    // Dropping the socket cuts the connection mid-body.
                }
                Some(start) => {
                    let head = format!(
                        "HTTP/1.1 206 Partial Content\r\ncontent-length: {}\r\ncontent-range: bytes {}-{}/{}\r\netag: \"v1\"\r\n\r\n",
                        data.len() - start,
                        start,
                        data.len() - 1,
                        data.len()
                    );
                    sock.write_all(head.as_bytes()).await.unwrap();
                    sock.write_all(&data[start..]).await.unwrap();
                    sock.flush().await.unwrap();
                }
            }
        }
    });
    (format!("http://{addr}"), seen)
}

#[tokio::test]
async fn download_resumes_after_a_cut_connection() {
    let data = payload(300_000);
    let (base, seen) = cutting_server(data.clone(), 123_456).await;
    let c = FactoryClient::builder()
        .base_url(&base)
        .native_roots(false)
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("metal-amd64.raw.zst");
    let url = format!("{base}/image/x/v1.12.0/metal-amd64.raw.zst")
        .parse()
        .unwrap();
    let out = c.download(&url, &dest, |_| {}).await.unwrap();
    assert_eq!(out.resumes, 1);
    assert_eq!(out.bytes, data.len() as u64);
    assert_eq!(out.sha256, sha(&data));
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert!(seen[1].contains("range: bytes=123456-"), "{}", seen[1]);
    assert!(seen[1].contains("if-range: \"v1\""), "{}", seen[1]);
}

#[tokio::test]
async fn download_gives_up_after_the_configured_attempts() {
    let data = payload(10_000);
    // Every request (ranged or not) gets a 200 that is cut after 100 bytes.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(Mutex::new(0u32));
    let n = count.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let mut buf = vec![0u8; 8192];
            let _ = sock.read(&mut buf).await;
            *n.lock().unwrap() += 1;
            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", data.len());
            let _ = sock.write_all(head.as_bytes()).await;
            let _ = sock.write_all(&data[..100]).await;
        }
    });
    let c = FactoryClient::builder()
        .base_url(format!("http://{addr}"))
        .native_roots(false)
        .max_download_attempts(3)
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("f");
    let url = format!("http://{addr}/f").parse().unwrap();
    let err = c.download(&url, &dest, |_| {}).await.unwrap_err();
    assert!(matches!(err, Error::Http { .. }), "{err:?}");
    assert_eq!(*count.lock().unwrap(), 3);
    assert!(!dest.exists());
}

#[tokio::test]
async fn raw_escape_hatch_uses_the_base_url() {
    let server = server().await;
    Mock::given(method("GET"))
        .and(path("/healthz"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .expect(1)
        .mount(&server)
        .await;
    let resp = client(&server)
        .raw(reqwest::Method::GET, "/healthz")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.text().await.unwrap(), "ok");
}

#[tokio::test]
async fn concurrent_downloads_of_one_asset_fetch_it_once() {
    let server = server().await;
    let id = SchematicId::vanilla();
    let data = payload(100_000);
    Mock::given(method("GET"))
        .and(path(format!("/image/{id}/v1.12.0/metal-amd64.raw.zst")))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_bytes(data.clone())
                .set_delay(std::time::Duration::from_millis(100)),
        )
        .expect(1)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let cache = ImageCache::new(dir.path());
    let c = client(&server);
    let asset = Asset::default_disk_image(Platform::metal(), Arch::Amd64, false);
    let version = v("v1.12.0");
    let (a, b) = tokio::join!(
        c.download_to_cache(&cache, &id, &version, &asset, |_| {}),
        c.download_to_cache(&cache, &id, &version, &asset, |_| {}),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.sha256, sha(&data));
    assert_eq!(a.sha256, b.sha256);
    assert!(
        a.from_cache != b.from_cache,
        "exactly one of them downloaded"
    );
}

#[tokio::test]
async fn head_reports_size_type_and_file_name() {
    let server = server().await;
    let id = SchematicId::vanilla();
    Mock::given(method("HEAD"))
        .and(path(format!("/image/{id}/v1.12.0/metal-amd64.iso")))
        .and(query_param("filename", "talos.iso"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "application/x-iso9660-image")
                .insert_header("content-disposition", "attachment; filename=\"talos.iso\"")
                .insert_header("content-length", "4096"),
        )
        .expect(1)
        .mount(&server)
        .await;
    let c = client(&server);
    let mut url = c.urls().asset(
        &id,
        &v("v1.12.0"),
        &Asset::iso(Platform::metal(), Arch::Amd64, false),
    );
    url.set_query(Some("filename=talos.iso"));
    let info = c.head(&url).await.unwrap();
    assert_eq!(info.filename.as_deref(), Some("talos.iso"));
    assert_eq!(
        info.content_type.as_deref(),
        Some("application/x-iso9660-image")
    );
    assert_eq!(info.size, Some(4096));
}
