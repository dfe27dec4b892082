//! Storages and their content: status, content lists, allocation, upload, download-url.

use serde_json::{Value, json};

use super::api::{Reply, Upload, check_node, flag, req};
use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::schema::Params;
use super::sim::{Sim, now};
use super::state::{State, StorageCfg, Volume};

/// Route storage endpoints.
pub async fn dispatch(
    sim: &Sim,
    caller: &Caller,
    m: &str,
    path: &str,
    p: Params,
    upload: Option<Upload>,
) -> ApiResult<Reply> {
    match (m, path) {
        ("GET", "/nodes/{node}/storage") => list(sim, caller, &p),
        ("GET", "/nodes/{node}/storage/{storage}/status") => status(sim, &p),
        ("GET", "/nodes/{node}/storage/{storage}/content") => content(sim, &p),
        ("POST", "/nodes/{node}/storage/{storage}/content") => alloc(sim, &p),
        ("GET", "/nodes/{node}/storage/{storage}/content/{volume}") => volume(sim, &p),
        ("DELETE", "/nodes/{node}/storage/{storage}/content/{volume}") => {
            delete_volume(sim, caller, &p).await
        }
        ("POST", "/nodes/{node}/storage/{storage}/upload") => {
            let up = upload.ok_or_else(|| ApiError::fail("no file in upload"))?;
            upload_file(sim, caller, &p, up)
        }
        ("POST", "/nodes/{node}/storage/{storage}/download-url") => download(sim, caller, &p),
        ("GET", "/nodes/{node}/query-url-metadata") => url_metadata(sim, &p).await,
        _ => Err(ApiError::not_implemented(m, path)),
    }
}

/// Bytes used on a storage of a node.
pub fn used_bytes(st: &State, node: &str, storage: &str) -> u64 {
    st.volumes
        .values()
        .filter(|v| v.storage == storage && (v.node == node || is_shared(st, storage)))
        .map(|v| v.size)
        .sum()
}

fn is_shared(st: &State, storage: &str) -> bool {
    st.storages.get(storage).is_some_and(|s| s.shared)
}

fn storage_cfg<'a>(st: &'a State, storage: &str) -> ApiResult<&'a StorageCfg> {
    st.storages
        .get(storage)
        .ok_or_else(|| ApiError::fail(format!("storage '{storage}' does not exist")))
}

fn storage_json(st: &State, node: &str, sid: &str, s: &StorageCfg) -> Value {
    let used = used_bytes(st, node, sid);
    json!({
        "storage": sid,
        "type": s.ty,
        "content": s.content.join(","),
        "active": 1,
        "enabled": 1,
        "shared": u8::from(s.shared),
        "total": s.total,
        "used": used,
        "avail": s.total.saturating_sub(used),
        "used_fraction": used as f64 / s.total.max(1) as f64,
    })
}

fn list(sim: &Sim, caller: &Caller, p: &Params) -> ApiResult<Reply> {
    let st = sim.state();
    let node = req(p, "node")?;
    check_node(&st, node)?;
    let list: Vec<Value> = st
        .storages
        .iter()
        .filter(|(sid, _)| p.get("storage").is_none_or(|s| s == *sid))
        .filter(|(_, s)| {
            p.get("content").is_none_or(|c| {
                super::formats::split_list(c).all(|c| s.content.iter().any(|x| x == c))
            })
        })
        .filter(|(sid, _)| {
            let privs = super::auth::privileges(&st, caller, &format!("/storage/{sid}"));
            privs.contains("Datastore.Audit") || privs.contains("Datastore.AllocateSpace")
        })
        .map(|(sid, s)| storage_json(&st, node, sid, s))
        .collect();
    Ok(Value::Array(list).into())
}

fn status(sim: &Sim, p: &Params) -> ApiResult<Reply> {
    let st = sim.state();
    let node = req(p, "node")?;
    check_node(&st, node)?;
    let sid = req(p, "storage")?;
    let s = storage_cfg(&st, sid)?;
    Ok(storage_json(&st, node, sid, s).into())
}

fn volume_json(v: &Volume) -> Value {
    let mut o = json!({
        "volid": v.volid,
        "format": v.format,
        "size": v.size,
        "content": v.content,
        "ctime": v.ctime,
    });
    if let Some(obj) = o.as_object_mut()
        && let Some(id) = v.vmid
    {
        obj.insert("vmid".into(), json!(id));
        if v.content == "images" || v.content == "rootdir" {
            obj.insert("used".into(), json!(v.size));
        }
    }
    o
}

fn content(sim: &Sim, p: &Params) -> ApiResult<Reply> {
    let st = sim.state();
    let node = req(p, "node")?;
    check_node(&st, node)?;
    let sid = req(p, "storage")?;
    let shared = storage_cfg(&st, sid)?.shared;
    let list: Vec<Value> = st
        .volumes
        .values()
        .filter(|v| v.storage == sid && (shared || v.node == node))
        .filter(|v| p.get("content").is_none_or(|c| *c == v.content))
        .filter(|v| {
            p.get("vmid")
                .is_none_or(|id| v.vmid.map(|x| x.to_string()).as_deref() == Some(id.as_str()))
        })
        .map(|v| {
            let mut o = volume_json(v);
            super::vzdump::annotate(&st, v, &mut o);
            o
        })
        .collect();
    Ok(Value::Array(list).into())
}

fn full_volid(storage: &str, volume: &str) -> String {
    if volume.contains(':') {
        volume.to_string()
    } else {
        format!("{storage}:{volume}")
    }
}

fn find_volume<'a>(
    st: &'a State,
    node: &str,
    storage: &str,
    volume: &str,
) -> ApiResult<&'a Volume> {
    let volid = full_volid(storage, volume);
    st.volumes
        .get(&format!("{node}/{volid}"))
        .or_else(|| {
            st.volumes
                .values()
                .find(|v| v.volid == volid && is_shared(st, &v.storage))
        })
        .ok_or_else(|| ApiError::fail(format!("volume '{volid}' does not exist")))
}

fn volume(sim: &Sim, p: &Params) -> ApiResult<Reply> {
    let st = sim.state();
    let node = req(p, "node")?;
    check_node(&st, node)?;
    let sid = req(p, "storage")?;
    let v = find_volume(&st, node, sid, req(p, "volume")?)?;
    Ok(json!({
        "format": v.format,
        "size": v.size,
        "used": v.size,
        "path": path_of(&st, v),
    })
    .into())
}

fn path_of(st: &State, v: &Volume) -> String {
    let name = v.volid.split_once(':').map(|(_, n)| n).unwrap_or("");
    match st.storages.get(&v.storage) {
        Some(s) if s.file_based() => {
            let base = s
                .path
                .clone()
                .unwrap_or_else(|| format!("/mnt/pve/{}", v.storage));
            let sub = match v.content.as_str() {
                "iso" => format!("template/iso/{}", name.trim_start_matches("iso/")),
                "vztmpl" => format!("template/cache/{}", name.trim_start_matches("vztmpl/")),
                "import" => format!("import/{}", name.trim_start_matches("import/")),
                "snippets" => format!("snippets/{}", name.trim_start_matches("snippets/")),
                _ => format!("images/{name}"),
            };
            format!("{base}/{sub}")
        }
        _ => format!("/dev/pve/{name}"),
    }
}

fn alloc(sim: &Sim, p: &Params) -> ApiResult<Reply> {
    let node = req(p, "node")?.to_string();
    let sid = req(p, "storage")?.to_string();
    let vmid: u32 = req(p, "vmid")?
        .parse()
        .map_err(|_| ApiError::param("vmid", "invalid VMID"))?;
    let filename = req(p, "filename")?.to_string();
    let size = super::guests::parse_size(req(p, "size")?)
        .map(|s| {
            if p["size"].chars().all(|c| c.is_ascii_digit()) {
                s << 10
            } else {
                s
            }
        })
        .ok_or_else(|| ApiError::param("size", "unable to parse size"))?;
    let mut st = sim.state();
    check_node(&st, &node)?;
    let s = storage_cfg(&st, &sid)?.clone();
    if !s.content.iter().any(|c| c == "images") {
        return Err(ApiError::fail(format!(
            "storage '{sid}' does not support vm images"
        )));
    }
    let expect = format!("vm-{vmid}-");
    if !filename.starts_with(&expect) && !filename.starts_with(&format!("base-{vmid}-")) {
        return Err(ApiError::param(
            "filename",
            format!("filename must start with '{expect}'"),
        ));
    }
    let (volid, format) = if s.file_based() {
        let fmt = p.get("format").cloned().unwrap_or_else(|| "raw".into());
        let name = if filename.contains('.') {
            filename.clone()
        } else {
            format!("{filename}.{fmt}")
        };
        (format!("{sid}:{vmid}/{name}"), fmt)
    } else {
        (format!("{sid}:{filename}"), "raw".to_string())
    };
    let key = format!("{node}/{volid}");
    if st.volumes.contains_key(&key) {
        return Err(ApiError::fail(format!("volume '{volid}' already exists")));
    }
    st.volumes.insert(
        key,
        Volume {
            volid: volid.clone(),
            node: node.clone(),
            storage: sid,
            content: "images".into(),
            format,
            size,
            vmid: Some(vmid),
            ctime: now(),
            sha256: None,
        },
    );
    drop(st);
    sim.persist();
    Ok(json!(volid).into())
}

async fn delete_volume(sim: &Sim, caller: &Caller, p: &Params) -> ApiResult<Reply> {
    let node = req(p, "node")?.to_string();
    let sid = req(p, "storage")?.to_string();
    let (key, volid, vmid) = {
        let st = sim.state();
        check_node(&st, &node)?;
        let v = find_volume(&st, &node, &sid, req(p, "volume")?)?;
        if let Some(id) = v.vmid
            && let Some(g) = st.guests.get(&id)
            && g.effective()
                .values()
                .any(|c| c.split(',').next() == Some(v.volid.as_str()))
        {
            return Err(ApiError::fail(format!(
                "unable to delete volume '{}' - referenced by guest {id}",
                v.volid
            )));
        }
        (format!("{}/{}", v.node, v.volid), v.volid.clone(), v.vmid)
    };
    let id = vmid.map(|v| v.to_string()).unwrap_or_default();
    let upid = sim.spawn_task(
        &node.clone(),
        "imgdel",
        &id,
        &caller.authid,
        None,
        move |ctx| async move {
            ctx.sim.state().volumes.remove(&key);
            ctx.log(format!("Removed volume '{volid}'"));
            Ok(())
        },
    );
    if let Some(delay) = p.get("delay").and_then(|d| d.parse::<u64>().ok()) {
        match sim.wait_task(&upid, delay).await {
            Some(e) if e == "OK" => return Ok(Value::Null.into()),
            Some(e) => return Err(ApiError::fail(e)),
            None => {}
        }
    }
    Ok(json!(upid).into())
}

/// Normalise an upload/download file name (pve-storage: anything outside
/// `[a-zA-Z0-9_.-]` becomes `_`).
pub fn normalize_filename(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn check_extension(content: &str, filename: &str) -> ApiResult<()> {
    let lower = filename.to_lowercase();
    match content {
        "iso" if !(lower.ends_with(".iso") || lower.ends_with(".img")) => {
            Err(ApiError::param("filename", "wrong file extension"))
        }
        "vztmpl"
            if ![".tar", ".tar.gz", ".tar.xz", ".tar.zst", ".tar.bz2"]
                .iter()
                .any(|e| lower.ends_with(e)) =>
        {
            Err(ApiError::param("filename", "wrong file extension"))
        }
        "import" => {
            let ok_ext = [".ova", ".qcow2", ".raw", ".vmdk"]
                .iter()
                .any(|e| lower.ends_with(e));
            let ok_chars = filename
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
            if ok_ext && ok_chars {
                Ok(())
            } else {
                Err(ApiError::param(
                    "filename",
                    "invalid filename or wrong extension",
                ))
            }
        }
        "iso" | "vztmpl" => Ok(()),
        other => Err(ApiError::param(
            "content",
            format!("upload content type '{other}' not allowed"),
        )),
    }
}

fn content_dir(content: &str) -> &'static str {
    match content {
        "iso" => "template/iso",
        "vztmpl" => "template/cache",
        _ => "import",
    }
}

fn target_checks(st: &State, sid: &str, content: &str) -> ApiResult<StorageCfg> {
    let s = storage_cfg(st, sid)?.clone();
    if !s.content.iter().any(|c| c == content) {
        return Err(ApiError::fail(format!(
            "storage '{sid}' is not configured for content-type '{content}'"
        )));
    }
    if !s.file_based() {
        return Err(ApiError::fail(format!(
            "can't upload to storage type '{}', not a file based storage!",
            s.ty
        )));
    }
    Ok(s)
}

fn add_file(
    st: &mut State,
    node: &str,
    sid: &str,
    content: &str,
    filename: &str,
    size: u64,
    sha256: String,
) -> String {
    let prefix = content;
    let volid = format!("{sid}:{prefix}/{filename}");
    let lower = filename.to_lowercase();
    let format = match content {
        "iso" => "iso".to_string(),
        "vztmpl" => lower
            .rsplit('.')
            .next()
            .map(|e| format!("t{}", e.trim_start_matches('t')))
            .unwrap_or_default(),
        _ => lower.rsplit('.').next().unwrap_or("raw").to_string(),
    };
    let shared = is_shared(st, sid);
    let key_node = if shared { "shared" } else { node };
    st.volumes.insert(
        format!("{key_node}/{volid}"),
        Volume {
            volid: volid.clone(),
            node: key_node.to_string(),
            storage: sid.to_string(),
            content: content.to_string(),
            format,
            size,
            vmid: None,
            ctime: now(),
            sha256: Some(sha256),
        },
    );
    volid
}

fn upload_file(sim: &Sim, caller: &Caller, p: &Params, up: Upload) -> ApiResult<Reply> {
    let node = req(p, "node")?.to_string();
    let sid = req(p, "storage")?.to_string();
    let content = req(p, "content")?.to_string();
    let filename = normalize_filename(req(p, "filename")?);
    check_extension(&content, &filename)?;
    let base = {
        let st = sim.state();
        check_node(&st, &node)?;
        target_checks(&st, &sid, &content)?
            .path
            .unwrap_or_else(|| "/var/lib/vz".into())
    };
    let expected = p.get("checksum").map(|c| c.to_lowercase());
    let algo = p.get("checksum-algorithm").cloned();
    let tmp = format!(
        "/var/tmp/pveupload-{}",
        hex::encode(rand::random::<[u8; 16]>())
    );
    let target = format!("{base}/{}/{filename}", content_dir(&content));
    let upid = sim.spawn_task(
        &node.clone(),
        "imgcopy",
        "",
        &caller.authid,
        None,
        move |ctx| async move {
            ctx.log(format!("starting file import from: {tmp}"));
            // pve-manager's upload prints "calculating checksum..." and completes the line
            // with "OK, checksum verified", or dies with the mismatch as the last line.
            if let (Some(exp), Some(_)) = (&expected, &algo) {
                let got = up.checksum.clone().unwrap_or_default();
                if &got != exp {
                    ctx.log("calculating checksum...");
                    return Err(format!("checksum mismatch: got '{got}' != expect '{exp}'"));
                }
                ctx.log("calculating checksum...OK, checksum verified");
            }
            ctx.log(format!("target node: {node}"));
            ctx.log(format!("target file: {target}"));
            ctx.log(format!("file size is: {}", up.size));
            ctx.log(format!("command: cp -- {tmp} {target}"));
            ctx.log("finished file import successfully");
            let mut st = ctx.sim.state();
            add_file(
                &mut st,
                &node,
                &sid,
                &content,
                &filename,
                up.size,
                up.sha256.clone(),
            );
            Ok(())
        },
    );
    Ok(json!(upid).into())
}

fn http_client(verify: bool) -> Result<reqwest::Client, String> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let cfg = if verify {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        // `verify-certificates=0` is the caller's explicit choice, as on the real node.
        builder
            .dangerous()
            .with_custom_certificate_verifier(std::sync::Arc::new(NoVerify))
            .with_no_client_auth()
    };
    reqwest::Client::builder()
        .tls_backend_preconfigured(cfg)
        .build()
        .map_err(|e| e.to_string())
}

#[derive(Debug)]
struct NoVerify;

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    crate::tls::ring_signatures!();
}

/// A streaming hasher for the checksum algorithms PVE accepts.
pub enum Hasher {
    /// MD5.
    Md5(md5::Md5),
    /// SHA-1.
    Sha1(sha1::Sha1),
    /// SHA-224.
    Sha224(sha2::Sha224),
    /// SHA-256.
    Sha256(sha2::Sha256),
    /// SHA-384.
    Sha384(sha2::Sha384),
    /// SHA-512.
    Sha512(sha2::Sha512),
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hasher")
    }
}

impl Hasher {
    /// A hasher for a `checksum-algorithm` value.
    pub fn new(algo: &str) -> Option<Self> {
        use sha2::Digest;
        Some(match algo {
            "md5" => Hasher::Md5(md5::Md5::new()),
            "sha1" => Hasher::Sha1(sha1::Sha1::new()),
            "sha224" => Hasher::Sha224(sha2::Sha224::new()),
            "sha256" => Hasher::Sha256(sha2::Sha256::new()),
            "sha384" => Hasher::Sha384(sha2::Sha384::new()),
            "sha512" => Hasher::Sha512(sha2::Sha512::new()),
            _ => return None,
        })
    }
    /// Feed bytes.
    pub fn update(&mut self, b: &[u8]) {
        use sha2::Digest;
        match self {
            Hasher::Md5(h) => h.update(b),
            Hasher::Sha1(h) => h.update(b),
            Hasher::Sha224(h) => h.update(b),
            Hasher::Sha256(h) => h.update(b),
            Hasher::Sha384(h) => h.update(b),
            Hasher::Sha512(h) => h.update(b),
        }
    }
    /// Lower-case hex digest.
    pub fn finish(self) -> String {
        use sha2::Digest;
        match self {
            Hasher::Md5(h) => hex::encode(h.finalize()),
            Hasher::Sha1(h) => hex::encode(h.finalize()),
            Hasher::Sha224(h) => hex::encode(h.finalize()),
            Hasher::Sha256(h) => hex::encode(h.finalize()),
            Hasher::Sha384(h) => hex::encode(h.finalize()),
            Hasher::Sha512(h) => hex::encode(h.finalize()),
        }
    }
}

fn download(sim: &Sim, caller: &Caller, p: &Params) -> ApiResult<Reply> {
    let node = req(p, "node")?.to_string();
    let sid = req(p, "storage")?.to_string();
    let content = req(p, "content")?.to_string();
    let url = req(p, "url")?.to_string();
    let filename = normalize_filename(req(p, "filename")?);
    check_extension(&content, &filename)?;
    if p.contains_key("compression") && content != "iso" {
        return Err(ApiError::param(
            "compression",
            "decompression is only supported for content type 'iso'",
        ));
    }
    let base = {
        let st = sim.state();
        check_node(&st, &node)?;
        target_checks(&st, &sid, &content)?
            .path
            .unwrap_or_else(|| "/var/lib/vz".into())
    };
    let verify = flag(p, "verify-certificates", true);
    let expected = p.get("checksum").map(|c| c.to_lowercase());
    let algo = p.get("checksum-algorithm").cloned();
    let target = format!("{base}/{}/{filename}", content_dir(&content));
    let task_id = filename.replace(['/', ':'], "_");
    let upid = sim.spawn_task(
        &node.clone(),
        "download",
        &task_id,
        &caller.authid,
        None,
        move |ctx| async move {
            ctx.log(format!("downloading {url} to {target}"));
            let client = http_client(verify)?;
            let resp = client
                .get(&url)
                .send()
                .await
                .map_err(|e| format!("download failed: {e}"))?;
            if !resp.status().is_success() {
                return Err(format!(
                    "download failed: {} {}",
                    resp.status().as_u16(),
                    resp.status().canonical_reason().unwrap_or("")
                ));
            }
            let mut hasher = algo.as_deref().and_then(Hasher::new);
            let mut sha = Hasher::Sha256(<sha2::Sha256 as sha2::Digest>::new());
            let mut size = 0u64;
            let mut stream = resp.bytes_stream();
            use futures_util::StreamExt;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| format!("download failed: {e}"))?;
                size += chunk.len() as u64;
                sha.update(&chunk);
                if let Some(h) = hasher.as_mut() {
                    h.update(&chunk);
                }
            }
            ctx.log(format!("{size} bytes received"));
            // pve-common `download_file_from_url`, same line discipline as upload.
            if let (Some(exp), Some(h), Some(_)) = (expected, hasher, algo) {
                let got = h.finish();
                if got != exp {
                    ctx.log("calculating checksum...");
                    return Err(format!("checksum mismatch: got '{got}' != expect '{exp}'"));
                }
                ctx.log("calculating checksum...OK, checksum verified");
            }
            ctx.log(format!("download of '{url}' to '{target}' finished"));
            let mut st = ctx.sim.state();
            add_file(
                &mut st,
                &node,
                &sid,
                &content,
                &filename,
                size,
                sha.finish(),
            );
            Ok(())
        },
    );
    Ok(json!(upid).into())
}

async fn url_metadata(sim: &Sim, p: &Params) -> ApiResult<Reply> {
    {
        let st = sim.state();
        check_node(&st, req(p, "node")?)?;
    }
    let url = req(p, "url")?.to_string();
    let client = http_client(flag(p, "verify-certificates", true)).map_err(ApiError::fail)?;
    let resp = client
        .head(&url)
        .send()
        .await
        .map_err(|e| ApiError::fail(format!("invalid server response: '{e}'")))?;
    if !resp.status().is_success() {
        return Err(ApiError::fail(format!(
            "invalid server response: '{} {}'",
            resp.status().as_u16(),
            resp.status().canonical_reason().unwrap_or("")
        )));
    }
    let size = resp
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mimetype = resp
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let filename = url
        .split('?')
        .next()
        .and_then(|u| u.rsplit('/').next())
        .unwrap_or("")
        .to_string();
    let mut o = serde_json::Map::new();
    o.insert("filename".into(), json!(filename));
    if let Some(s) = size {
        o.insert("size".into(), json!(s));
    }
    if let Some(m) = mimetype {
        o.insert("mimetype".into(), json!(m));
    }
    Ok(Value::Object(o).into())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn extension_rules() {
        assert!(check_extension("iso", "talos.iso").is_ok());
        assert_eq!(
            check_extension("iso", "talos.raw")
                .unwrap_err()
                .errors
                .unwrap()["filename"],
            "wrong file extension"
        );
        assert!(check_extension("import", "talos-nocloud-amd64.raw").is_ok());
        assert!(check_extension("import", "x.iso").is_err());
        assert!(check_extension("vztmpl", "debian-12.tar.zst").is_ok());
        assert_eq!(normalize_filename("a b+c.iso"), "a_b_c.iso");
    }

    #[test]
    fn hashers() {
        let mut h = Hasher::new("sha256").unwrap();
        h.update(b"abc");
        assert_eq!(
            h.finish(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let mut h = Hasher::new("md5").unwrap();
        h.update(b"abc");
        assert_eq!(h.finish(), "900150983cd24fb0d6963f7d28e17f72");
    }
}
