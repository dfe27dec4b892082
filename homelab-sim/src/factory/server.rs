//! HTTP serving and request handling of the simulated factory.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http::header::{
    ACCEPT_RANGES, CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG,
    IF_RANGE, LOCATION, RANGE, SERVER,
};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use sha2::{Digest, Sha256};
use talos_factory::{Arch, Asset, Platform, Schematic, SchematicId, TalosVersion};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use super::{FactorySimConfig, FactorySimError, Log, catalogue};

type Body = BoxBody<Bytes, std::io::Error>;

const SERVER_NAME: &str = "homelab-sim image-factory";
const MAX_SCHEMATIC_BYTES: usize = 4 * 1024 * 1024;

pub(crate) struct State {
    config: FactorySimConfig,
    pxe_url: String,
    base_url: String,
    schematics: Mutex<HashMap<SchematicId, String>>,
    log: Log,
    cut_done: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("base_url", &self.base_url)
            .field("pxe_url", &self.pxe_url)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl State {
    pub(crate) fn new(
        config: FactorySimConfig,
        base_url: String,
        pxe_url: String,
    ) -> Result<State, FactorySimError> {
        let mut schematics = HashMap::new();
        let vanilla = Schematic::default().canonical_yaml();
        schematics.insert(SchematicId::of_canonical_yaml(&vanilla), vanilla);
        if let Some(dir) = &config.state_dir {
            let dir = dir.join("schematics");
            let err = |path: PathBuf| move |source| FactorySimError::State { path, source };
            std::fs::create_dir_all(&dir).map_err(err(dir.clone()))?;
            for entry in std::fs::read_dir(&dir).map_err(err(dir.clone()))? {
                let entry = entry.map_err(err(dir.clone()))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let Some(id) = name
                    .strip_suffix(".yaml")
                    .and_then(|s| s.parse::<SchematicId>().ok())
                else {
                    continue;
                };
                let yaml = std::fs::read_to_string(entry.path()).map_err(err(entry.path()))?;
                schematics.insert(id, yaml);
            }
        }
        Ok(State {
            config,
            pxe_url,
            base_url,
            schematics: Mutex::new(schematics),
            log: Mutex::new(Vec::new()),
            cut_done: Mutex::new(HashSet::new()),
        })
    }

    pub(crate) fn log(&self) -> Vec<String> {
        lock(&self.log).clone()
    }

    pub(crate) fn schematics(&self) -> HashMap<SchematicId, String> {
        lock(&self.schematics).clone()
    }

    fn store(&self, id: SchematicId, yaml: &str) -> std::io::Result<()> {
        if let Some(dir) = &self.config.state_dir {
            let dir = dir.join("schematics");
            std::fs::create_dir_all(&dir)?;
            let tmp = dir.join(format!(".{id}.yaml.tmp"));
            std::fs::write(&tmp, yaml)?;
            std::fs::rename(&tmp, dir.join(format!("{id}.yaml")))?;
        }
        lock(&self.schematics).insert(id, yaml.to_owned());
        Ok(())
    }
}

/// Accept connections until `stop` fires; then every open connection is dropped.
pub(crate) async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    pxe: bool,
    mut stop: oneshot::Receiver<()>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let state = state.clone();
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(handle(req, &state, pxe).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    conns.abort_all();
}

fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

fn text(status: StatusCode, msg: &str) -> Response<Body> {
    let mut body = msg.to_owned();
    if !body.ends_with('\n') {
        body.push('\n');
    }
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// JSON as Go's `json.Encoder` writes it: `<`, `>`, `&`, U+2028 and U+2029 escaped, and a
/// trailing newline.
fn go_json(value: &impl serde::Serialize) -> String {
    let raw = serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned());
    let mut out = String::with_capacity(raw.len() + 8);
    for c in raw.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out.push('\n');
    out
}

fn json(status: StatusCode, value: &impl serde::Serialize, content_type: bool) -> Response<Body> {
    let mut r = Response::new(full(go_json(value)));
    *r.status_mut() = status;
    let ct = if content_type {
        "application/json"
    } else {
        // The factory sets no type here and Go sniffs this.
        "text/plain; charset=utf-8"
    };
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ct));
    r
}

async fn handle(req: Request<Incoming>, state: &State, pxe: bool) -> Response<Body> {
    let request_id = req
        .headers()
        .get("x-request-id")
        .cloned()
        .unwrap_or_else(|| {
            HeaderValue::from_str(&format!("{:016x}", rand::random::<u64>()))
                .unwrap_or(HeaderValue::from_static("0"))
        });
    let method = req.method().clone();
    let path_q = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    lock(&state.log).push(format!("{method} {path_q}"));
    let span = tracing::debug_span!("factory_sim", %method, path = %path_q);
    let _guard = span.enter();
    let mut resp = route(req, state, pxe).await;
    resp.headers_mut()
        .insert(SERVER, HeaderValue::from_static(SERVER_NAME));
    resp.headers_mut().insert("x-request-id", request_id);
    tracing::debug!(status = resp.status().as_u16(), "served");
    resp
}

async fn route(req: Request<Incoming>, state: &State, pxe: bool) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let method = req.method().clone();
    let get_or_head = method == Method::GET || method == Method::HEAD;
    match (segs.as_slice(), &method) {
        (["schematics"], &Method::POST) => create_schematic(req, state).await,
        (["schematics", id], m) if *m == Method::GET => get_schematic(id, state),
        (["versions"], m) if *m == Method::GET => {
            let broken = query.split('&').any(|kv| kv == "broken=true");
            let list = if broken {
                catalogue::BROKEN_VERSIONS
            } else {
                catalogue::VERSIONS
            };
            json(StatusCode::OK, &list, false)
        }
        (["version", v, "extensions", "official"], m) if *m == Method::GET => match version(v) {
            Ok(v) => json(StatusCode::OK, &catalogue::extensions(&v), true),
            Err(r) => r.response(),
        },
        (["version", v, "overlays", "official"], m) if *m == Method::GET => match version(v) {
            Ok(v) => json(StatusCode::OK, &catalogue::overlays(&v), true),
            Err(r) => r.response(),
        },
        (["image", id, v, asset], _) if get_or_head => {
            let redirect = !pxe && state.config.redirect_images && method == Method::GET;
            image(&req, state, id, v, asset, &query, redirect)
        }
        (["cdn", id, v, asset], _) if get_or_head => {
            image(&req, state, id, v, asset, &query, false)
        }
        (["pxe", id, v, target], m) if *m == Method::GET => pxe_script(state, id, v, target),
        (["healthz"] | ["readyz"], m) if *m == Method::GET => text(StatusCode::OK, "ok"),
        // OCI distribution ping (the registry frontend serves installer images).
        (["v2"] | ["v2", ""], m) if *m == Method::GET => {
            json(StatusCode::OK, &serde_json::json!({}), true)
        }
        (["schematics"] | ["schematics", _] | ["versions"], _)
        | (["image" | "cdn" | "pxe", _, _, _], _) => {
            text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
        }
        _ => text(StatusCode::NOT_FOUND, "404 page not found"),
    }
}

/// A plain-text error answer, kept small until it becomes a response.
struct Reject(StatusCode, String);

impl Reject {
    fn response(self) -> Response<Body> {
        text(self.0, &self.1)
    }
}

fn version(v: &str) -> Result<TalosVersion, Reject> {
    let parsed: TalosVersion = v
        .parse()
        .map_err(|e: talos_factory::Error| Reject(StatusCode::BAD_REQUEST, e.to_string()))?;
    if catalogue::known_version(&parsed) {
        Ok(parsed)
    } else {
        Err(Reject(
            StatusCode::NOT_FOUND,
            format!("version {parsed} not found"),
        ))
    }
}

fn schematic_id(id: &str, state: &State) -> Result<(SchematicId, String), Reject> {
    let id: SchematicId = id
        .parse()
        .map_err(|_| Reject(StatusCode::BAD_REQUEST, "invalid schematic ID".to_owned()))?;
    match lock(&state.schematics).get(&id) {
        Some(yaml) => Ok((id, yaml.clone())),
        None => Err(Reject(
            StatusCode::NOT_FOUND,
            "schematic not found".to_owned(),
        )),
    }
}

async fn create_schematic(req: Request<Incoming>, state: &State) -> Response<Body> {
    let body = match Limited::new(req.into_body(), MAX_SCHEMATIC_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => return text(StatusCode::BAD_REQUEST, &format!("error reading body: {e}")),
    };
    let Ok(body) = std::str::from_utf8(&body) else {
        return text(StatusCode::BAD_REQUEST, "schematic is not valid UTF-8");
    };
    let schematic = match Schematic::parse(body) {
        Ok(s) => s,
        Err(e) => return text(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    if !schematic.owner.is_empty() {
        return text(
            StatusCode::BAD_REQUEST,
            "owner field is not supported by this factory",
        );
    }
    let yaml = schematic.canonical_yaml();
    let id = SchematicId::of_canonical_yaml(&yaml);
    if let Err(e) = state.store(id, &yaml) {
        tracing::error!(error = %e, "cannot persist schematic");
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "failed to store schematic",
        );
    }
    json(
        StatusCode::CREATED,
        &serde_json::json!({"id": id.to_string(), "schematic": yaml}),
        true,
    )
}

fn get_schematic(id: &str, state: &State) -> Response<Body> {
    match schematic_id(id, state) {
        Ok((_, yaml)) => {
            let mut r = Response::new(full(yaml));
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/yaml"));
            r
        }
        Err(r) => r.response(),
    }
}

/// Content types by file-name ending, first match wins.
const CONTENT_TYPES: &[(&str, &str)] = &[
    (".iso", "application/x-iso9660-image"),
    (".xz", "application/x-xz"),
    (".zst", "application/zstd"),
    (".gz", "application/gzip"),
    (".tar", "application/x-tar"),
    (".efi", "application/efi"),
];

fn content_type(name: &str) -> &'static str {
    if name.starts_with("cmdline-") {
        return "text/plain; charset=utf-8";
    }
    CONTENT_TYPES
        .iter()
        .find(|(ending, _)| name.ends_with(ending))
        .map_or("application/octet-stream", |(_, ty)| ty)
}

/// The default kernel command line of a platform, plus the schematic's extra arguments.
fn cmdline(schematic: &Schematic, platform: &Platform, arch: Arch, secureboot: bool) -> String {
    let console = match arch {
        Arch::Amd64 => "console=ttyS0 console=tty0",
        Arch::Arm64 => "console=ttyAMA0 console=tty0",
    };
    let mut parts = vec![
        format!("talos.platform={platform}"),
        console.to_owned(),
        "init_on_alloc=1 slab_nomerge pti=on consoleblank=0 nvme_core.io_timeout=4294967295 printk.devkmsg=on".to_owned(),
    ];
    if secureboot {
        parts.push("lockdown=confidentiality".to_owned());
    } else {
        parts.push("ima_template=ima-ng ima_appraise=fix ima_hash=sha512".to_owned());
    }
    parts.extend(schematic.customization.extra_kernel_args.iter().cloned());
    parts.join(" ")
}

/// Deterministic pseudo-random content: SHA-256 in counter mode over the seed.
fn generate(seed: &[u8; 32], start: u64, end: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(usize::try_from(end - start).unwrap_or(0));
    let mut block = start / 32;
    let mut skip = usize::try_from(start % 32).unwrap_or(0);
    while (out.len() as u64) < end - start {
        let mut h = Sha256::new();
        h.update(seed);
        h.update(block.to_le_bytes());
        let digest = h.finalize();
        let want = usize::try_from(end - start).unwrap_or(0) - out.len();
        let chunk = &digest[skip..];
        out.extend_from_slice(&chunk[..chunk.len().min(want)]);
        skip = 0;
        block += 1;
    }
    out
}

enum ByteRange {
    Full,
    Part(u64, u64),
    Unsatisfiable,
}

fn parse_range(header: Option<&str>, len: u64) -> ByteRange {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return ByteRange::Full;
    };
    if spec.contains(',') {
        return ByteRange::Full; // multiple ranges: answer with the whole file
    }
    let Some((a, b)) = spec.split_once('-') else {
        return ByteRange::Full;
    };
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => match n.parse::<u64>() {
            Ok(0) | Err(_) => return ByteRange::Unsatisfiable,
            Ok(n) => (len.saturating_sub(n), len),
        },
        (s, "") => match s.parse::<u64>() {
            Ok(s) => (s, len),
            Err(_) => return ByteRange::Full,
        },
        (s, e) => match (s.parse::<u64>(), e.parse::<u64>()) {
            (Ok(s), Ok(e)) if s <= e => (s, (e + 1).min(len)),
            _ => return ByteRange::Full,
        },
    };
    if start >= len {
        ByteRange::Unsatisfiable
    } else {
        ByteRange::Part(start, end)
    }
}

fn image(
    req: &Request<Incoming>,
    state: &State,
    id: &str,
    v: &str,
    asset_name: &str,
    query: &str,
    redirect: bool,
) -> Response<Body> {
    let (id, yaml) = match schematic_id(id, state) {
        Ok(x) => x,
        Err(r) => return r.response(),
    };
    let version = match version(v) {
        Ok(v) => v,
        Err(r) => return r.response(),
    };
    // Checksum and signature sidecars are Enterprise-only on the real factory.
    if [".sha256", ".sha512", ".sigstore.json"]
        .iter()
        .any(|sfx| asset_name.ends_with(sfx))
    {
        return text(
            StatusCode::PAYMENT_REQUIRED,
            "checksums and signatures require an Enterprise license",
        );
    }
    let asset = match Asset::parse(asset_name) {
        Ok(a) => a,
        Err(e) => return text(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    if redirect {
        let mut r = text(StatusCode::FOUND, "Found");
        let location = format!("{}/cdn/{id}/{version}/{asset_name}", state.base_url);
        if let Ok(v) = HeaderValue::from_str(&location) {
            r.headers_mut().insert(LOCATION, v);
        }
        return r;
    }
    let schematic = Schematic::parse(&yaml).unwrap_or_default();
    let (content, len): (Option<Vec<u8>>, u64) = match &asset {
        Asset::Cmdline {
            platform,
            arch,
            secureboot,
        } => {
            let t = cmdline(&schematic, platform, *arch, *secureboot).into_bytes();
            let n = t.len() as u64;
            (Some(t), n)
        }
        _ => (None, state.config.image_size),
    };
    let mut h = Sha256::new();
    if asset.depends_on_schematic() {
        h.update(id.as_bytes());
    }
    h.update(version.to_string().as_bytes());
    h.update(asset_name.as_bytes());
    let seed: [u8; 32] = h.finalize().into();
    let etag = format!("\"{}\"", &hex::encode(seed)[..16]);
    let slice = |s: u64, e: u64| match &content {
        Some(c) => c[usize::try_from(s).unwrap_or(0)..usize::try_from(e).unwrap_or(0)].to_vec(),
        None => generate(&seed, s, e),
    };

    let if_range_ok = req
        .headers()
        .get(IF_RANGE)
        .is_none_or(|v| v.as_bytes() == etag.as_bytes());
    let range = if if_range_ok {
        parse_range(req.headers().get(RANGE).and_then(|v| v.to_str().ok()), len)
    } else {
        ByteRange::Full
    };
    let filename = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("filename="))
        .filter(|f| {
            !f.is_empty()
                && f.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        })
        .unwrap_or(asset_name);
    let mut resp = Response::new(full(Bytes::new()));
    let headers = resp.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(content_type(asset_name)),
    );
    headers.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        headers.insert(ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        headers.insert(CONTENT_DISPOSITION, v);
    }
    let head = req.method() == Method::HEAD;
    let (start, end) = match range {
        ByteRange::Unsatisfiable => {
            let mut r = text(StatusCode::RANGE_NOT_SATISFIABLE, "invalid range");
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                r.headers_mut().insert(CONTENT_RANGE, v);
            }
            return r;
        }
        ByteRange::Part(s, e) => {
            *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {s}-{}/{len}", e - 1)) {
                resp.headers_mut().insert(CONTENT_RANGE, v);
            }
            (s, e)
        }
        ByteRange::Full => (0, len),
    };
    if let Ok(v) = HeaderValue::from_str(&(end - start).to_string()) {
        resp.headers_mut().insert(CONTENT_LENGTH, v);
    }
    if head {
        return resp;
    }
    let data = slice(start, end);
    let cut = match (state.config.cut_first_download_after, &range) {
        (Some(n), ByteRange::Full) if n < len => {
            let key = format!("{id}/{version}/{asset_name}");
            lock(&state.cut_done).insert(key).then_some(n)
        }
        _ => None,
    };
    *resp.body_mut() = match cut {
        Some(n) => {
            // Send n bytes, let them reach the socket, then fail the body: hyper closes the
            // connection mid-transfer.
            use futures_util::StreamExt as _;
            let first = Bytes::from(data[..usize::try_from(n).unwrap_or(0)].to_vec());
            let head = futures_util::stream::iter([Ok::<_, std::io::Error>(Frame::data(first))]);
            let cut = futures_util::stream::once(async {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "simulated cut connection",
                ))
            });
            BodyExt::boxed(StreamBody::new(head.chain(cut)))
        }
        None => full(data),
    };
    resp
}

fn pxe_script(state: &State, id: &str, v: &str, target: &str) -> Response<Body> {
    let (id, yaml) = match schematic_id(id, state) {
        Ok(x) => x,
        Err(r) => return r.response(),
    };
    let version = match version(v) {
        Ok(v) => v,
        Err(r) => return r.response(),
    };
    let (platform, arch, secureboot) = match talos_factory::parse_boot_target(target) {
        Ok(t) => t,
        Err(e) => return text(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let schematic = Schematic::parse(&yaml).unwrap_or_default();
    let cmd = cmdline(&schematic, &platform, arch, secureboot);
    let base = format!("{}/image/{id}/{version}", state.pxe_url);
    let script = if secureboot {
        format!(
            "#!ipxe\n\nimgfree\nkernel {base}/{platform}-{arch}-secureboot-uki.efi {cmd}\nboot\n"
        )
    } else {
        format!(
            "#!ipxe\n\nimgfree\nkernel {base}/kernel-{arch} {cmd}\ninitrd {base}/initramfs-{arch}.xz\nboot\n"
        )
    };
    let mut r = Response::new(full(script));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn generated_content_is_consistent_across_ranges() {
        let seed = [7u8; 32];
        let all = generate(&seed, 0, 1000);
        assert_eq!(all.len(), 1000);
        assert_eq!(generate(&seed, 33, 517), all[33..517]);
    }

    #[test]
    fn ranges() {
        assert!(matches!(
            parse_range(Some("bytes=10-"), 100),
            ByteRange::Part(10, 100)
        ));
        assert!(matches!(
            parse_range(Some("bytes=10-19"), 100),
            ByteRange::Part(10, 20)
        ));
        assert!(matches!(
            parse_range(Some("bytes=-5"), 100),
            ByteRange::Part(95, 100)
        ));
        assert!(matches!(
            parse_range(Some("bytes=100-"), 100),
            ByteRange::Unsatisfiable
        ));
        assert!(matches!(
            parse_range(Some("bytes=0-1,5-6"), 100),
            ByteRange::Full
        ));
        assert!(matches!(parse_range(None, 100), ByteRange::Full));
    }

    #[test]
    fn go_json_escapes_html() {
        assert_eq!(go_json(&"<a&b>"), "\"\\u003ca\\u0026b\\u003e\"\n");
    }
}
