//! HTTPS front end: TLS on loopback, HTTP/1.1 like pveproxy, `/api2/json` routing,
//! parameter decoding (query, form, JSON, multipart upload), authentication, the
//! `{"data": ...}` envelope and PVE's error shapes with reason phrases.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::Instrument;

use super::api::{self, Reply, Upload};
use super::auth::{self, Credentials};
use super::error::{ApiError, ApiResult};
use super::schema::{self, Match, Params};
use super::sim::Sim;
use super::storage::Hasher;

/// Accept TLS connections until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    sim: Sim,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let acceptor = acceptor.clone();
        let sim = sim.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%peer, "TLS handshake failed: {e}");
                    return;
                }
            };
            let svc = hyper::service::service_fn(move |req| {
                let sim = sim.clone();
                async move { handle_with_faults(sim, req).await }
            });
            let conn =
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), svc);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, "connection error: {e}");
                    }
                }
                _ = shutdown.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
}

/// [`handle`] under the connection faults of the fault profile: a reset closes the
/// connection before the request is processed, a drop after (its effect stays), a spike
/// delays the answer. hyper closes the connection when the service fails.
async fn handle_with_faults(
    sim: Sim,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    if sim.faults().take_reset(req.uri().path()) {
        tracing::info!(path = %req.uri().path(), "fault: connection reset before processing");
        return Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "injected connection reset",
        ));
    }
    let path = req.uri().path().to_string();
    let r = handle(sim.clone(), req).await;
    if let Some(d) = sim.faults().take_spike() {
        tokio::time::sleep(d).await;
    }
    if sim.faults().take_drop(&path) {
        tracing::info!(%path, "fault: answer dropped after processing");
        return Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "injected dropped answer",
        ));
    }
    Ok(r)
}

async fn handle(sim: Sim, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let span = tracing::info_span!("pve_request", %method, %path);
    async move {
        sim.0.total.fetch_add(1, Ordering::Relaxed);
        if method != "GET" && method != "HEAD" {
            sim.0.mutating.fetch_add(1, Ordering::Relaxed);
        }
        let latency = sim.faults().latency();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        match process(&sim, req).await {
            Ok(reply) => success(reply),
            Err(e) => {
                if e.status == 401 && !sim.auth_failure_delay().is_zero() {
                    tokio::time::sleep(sim.auth_failure_delay()).await;
                }
                tracing::info!(status = e.status, "{}", e.reason());
                error_response(&e)
            }
        }
    }
    .instrument(span)
    .await
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    r.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("max-age=0"),
    );
    r
}

fn success(reply: Reply) -> Response<Full<Bytes>> {
    let mut o = Map::new();
    o.insert("data".into(), reply.data);
    if let Some(t) = reply.total {
        o.insert("total".into(), json!(t));
    }
    json_response(
        StatusCode::OK,
        serde_json::to_vec(&Value::Object(o)).unwrap_or_default(),
    )
}

/// Build PVE's error answer: the reason phrase is the message's first line; the body
/// carries `data: null`, the full `message` and any `errors`.
pub fn error_response(e: &ApiError) -> Response<Full<Bytes>> {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = if e.empty_body {
        Vec::new()
    } else {
        let mut o = Map::new();
        o.insert("data".into(), Value::Null);
        o.insert("message".into(), json!(e.message));
        if let Some(errs) = &e.errors {
            o.insert("errors".into(), json!(errs));
        }
        serde_json::to_vec(&Value::Object(o)).unwrap_or_default()
    };
    let mut r = json_response(status, body);
    if let Ok(reason) = hyper::ext::ReasonPhrase::try_from(e.reason().to_string()) {
        r.extensions_mut().insert(reason);
    }
    r
}

fn credentials(h: &HeaderMap) -> Credentials {
    let mut c = Credentials::default();
    if let Some(a) = h
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        if let Some(rest) = a.strip_prefix("PVEAPIToken") {
            if let Some(v) = rest.strip_prefix('=').or_else(|| rest.strip_prefix(' ')) {
                c.token = Some(v.trim().to_string());
            }
        } else if let Some(v) = a.strip_prefix("PVEAuthCookie=") {
            c.ticket = Some(v.trim().to_string());
        }
    }
    if c.ticket.is_none() {
        for cookie in h.get_all(http::header::COOKIE) {
            if let Ok(s) = cookie.to_str() {
                for part in s.split(';') {
                    if let Some(v) = part.trim().strip_prefix("PVEAuthCookie=") {
                        c.ticket = Some(v.to_string());
                    }
                }
            }
        }
    }
    c.csrf = h
        .get("CSRFPreventionToken")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    c
}

/// Repeated keys (how array parameters such as `map` travel) are joined with NUL, as
/// CGI's `Vars` hands them to PVE.
fn parse_form(bytes: &[u8], into: &mut Params) {
    for (k, v) in url::form_urlencoded::parse(bytes) {
        into.entry(k.into_owned())
            .and_modify(|old| {
                old.push('\0');
                old.push_str(&v);
            })
            .or_insert_with(|| v.into_owned());
    }
}

fn json_scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => if *b { "1" } else { "0" }.to_string(),
        Value::Null => String::new(),
        Value::Array(a) => a.iter().map(json_scalar).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

async fn process(sim: &Sim, req: Request<Incoming>) -> ApiResult<Reply> {
    let method = req.method().as_str().to_string();
    let raw_path = req.uri().path().to_string();
    let Some(api_path) = raw_path.strip_prefix("/api2/json") else {
        return Err(ApiError::not_implemented(&method, &raw_path));
    };
    let api_path = if api_path.is_empty() { "/" } else { api_path };
    let (ep, path_params) = match schema::lookup(&method, api_path) {
        Match::Found(ep, pp) => (ep, pp),
        _ => {
            sim.0.schema_rejected.fetch_add(1, Ordering::Relaxed);
            return Err(ApiError::not_implemented(
                &method,
                &schema::percent_decode(api_path),
            ));
        }
    };
    let world = ep
        .permissions
        .as_ref()
        .and_then(|p| p.get("user"))
        .and_then(Value::as_str)
        == Some("world");
    let creds = credentials(req.headers());
    let caller = {
        let st = sim.state();
        auth::authenticate(&st, &creds)?
    };
    let caller = match caller {
        Some(c) => c,
        None if world => auth::Caller {
            authid: "nobody@pve".into(),
            user: "nobody@pve".into(),
            token: None,
            ticket: false,
        },
        None => return Err(ApiError::status(401, "No ticket")),
    };
    let is_upload = ep.path == "/nodes/{node}/storage/{storage}/upload";
    if caller.ticket && method != "GET" && !is_upload && !world {
        let ok = {
            let st = sim.state();
            creds
                .csrf
                .as_deref()
                .is_some_and(|t| auth::verify_csrf(&st.auth_key, &caller.user, t))
        };
        if !ok {
            return Err(ApiError::status(
                401,
                "Permission denied - invalid csrf token",
            ));
        }
    }
    if caller.token.is_some() && ep.allowtoken == Some(false) {
        return Err(ApiError::status(
            403,
            format!(
                "Permission check failed (URI '{}' not available with API token, need proper ticket.)",
                schema::percent_decode(api_path)
            ),
        ));
    }
    let mut params = Params::new();
    let query = req.uri().query().map(str::to_string);
    let content_type = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let mut upload = None;
    if is_upload {
        if req.headers().get(http::header::CONTENT_LENGTH).is_none() {
            return Err(ApiError::status(
                501,
                "chunked transfer encoding not supported",
            ));
        }
        upload = Some(read_multipart(req, &content_type, &mut params).await?);
    } else {
        let body = req
            .into_body()
            .collect()
            .await
            .map_err(|e| ApiError::status(400, format!("cannot read request body: {e}")))?
            .to_bytes();
        if !body.is_empty() {
            if method != "POST" && method != "PUT" {
                return Err(ApiError::status(
                    501,
                    format!("Unexpected content for method '{method}'"),
                ));
            }
            if content_type.starts_with("application/json") {
                let v: Value = serde_json::from_slice(&body)
                    .map_err(|e| ApiError::status(400, format!("malformed JSON body: {e}")))?;
                let Value::Object(o) = v else {
                    return Err(ApiError::status(400, "JSON body must be an object"));
                };
                for (k, v) in o {
                    let is_array = ep
                        .schema_of(&k)
                        .is_some_and(|s| s.ty.as_deref() == Some("array"));
                    let v = match v {
                        Value::Array(items) if is_array => {
                            items.iter().map(json_scalar).collect::<Vec<_>>().join("\0")
                        }
                        other => json_scalar(&other),
                    };
                    params.insert(k, v);
                }
            } else {
                parse_form(&body, &mut params);
            }
        }
    }
    if let Some(q) = &query {
        parse_form(q.as_bytes(), &mut params);
    }
    for (k, v) in path_params {
        match params.get(&k) {
            Some(existing) if *existing != v => {
                return Err(ApiError::param(
                    &k,
                    "duplicate parameter (already defined in URI) with conflicting values!",
                ));
            }
            _ => {
                params.insert(k, v);
            }
        }
    }
    // pve-manager PVE/HTTPServer.pm rest_handler: the endpoint's `permissions` are
    // checked on the raw parameters, then the request is proxied to its node, and only
    // the handler (PVE::RESTHandler::handle) validates the parameters against the schema
    // before its own (per-parameter) checks run.
    {
        let st = sim.state();
        auth::check_permissions(&st, &caller, ep.permissions.as_ref(), &params)?;
    }
    if ep.proxyto.as_deref() == Some("node")
        && let Some(node) = params.get("node")
        && sim.faults().is_offline(node)
    {
        return Err(ApiError::unreachable("No route to host"));
    }
    if let Err(e) = ep.validate(&params) {
        sim.0.schema_rejected.fetch_add(1, Ordering::Relaxed);
        return Err(e);
    }
    {
        let st = sim.state();
        auth::handler_checks(&st, &caller, &method, &ep.path, &params)?;
    }
    if let Some(e) = sim.faults().path_failure(api_path) {
        return Err(e);
    }
    let reply = api::dispatch(sim, &caller, ep, params, upload).await?;
    if method != "GET" {
        sim.persist();
    }
    Ok(reply)
}

/// Read `multipart/form-data`: text fields first, then the file part named `filename`,
/// streamed through the hashers (never buffered whole).
async fn read_multipart(
    req: Request<Incoming>,
    content_type: &str,
    params: &mut Params,
) -> ApiResult<Upload> {
    let boundary = multer::parse_boundary(content_type)
        .map_err(|_| ApiError::status(400, "upload without multipart boundary"))?;
    let stream = http_body_util::BodyStream::new(req.into_body()).filter_map(|frame| async move {
        match frame {
            Ok(f) => f.into_data().ok().map(Ok::<Bytes, hyper::Error>),
            Err(e) => Some(Err(e)),
        }
    });
    let mut mp = multer::Multipart::new(stream, boundary);
    let mut upload = None;
    while let Some(mut field) = mp
        .next_field()
        .await
        .map_err(|e| ApiError::status(400, format!("malformed multipart body: {e}")))?
    {
        let name = field.name().unwrap_or("").to_string();
        if let Some(file_name) = field.file_name().map(str::to_string) {
            if name != "filename" {
                return Err(ApiError::status(
                    400,
                    format!("wrong field name '{name}' for file upload, expected 'filename'"),
                ));
            }
            params.insert("filename".into(), file_name);
            let mut checksum = params
                .get("checksum-algorithm")
                .and_then(|a| Hasher::new(a));
            let mut sha = Hasher::Sha256(<sha2::Sha256 as sha2::Digest>::new());
            let mut size = 0u64;
            while let Some(chunk) = field
                .chunk()
                .await
                .map_err(|e| ApiError::status(400, format!("upload interrupted: {e}")))?
            {
                size += chunk.len() as u64;
                sha.update(&chunk);
                if let Some(h) = checksum.as_mut() {
                    h.update(&chunk);
                }
            }
            upload = Some(Upload {
                size,
                sha256: sha.finish(),
                checksum: checksum.map(Hasher::finish),
            });
        } else {
            let text = field
                .text()
                .await
                .map_err(|e| ApiError::status(400, format!("malformed multipart field: {e}")))?;
            params.insert(name, text);
        }
    }
    upload.ok_or_else(|| ApiError::param("filename", "property is missing and it is not optional"))
}
