//! Streaming downloads with resume, progress, SHA-256 on the way, and a local cache.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_RANGE, ETAG, IF_RANGE, LAST_MODIFIED, RANGE};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use url::Url;

use crate::{Asset, Error, FactoryClient, SchematicId, TalosVersion};

/// Progress of one download, reported after every chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DownloadProgress {
    /// Bytes on disk so far (including any resumed part).
    pub downloaded: u64,
    /// Total size when the server announced it.
    pub total: Option<u64>,
}

/// The result of a download.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DownloadOutcome {
    /// The complete file.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// Its SHA-256 (lowercase hex).
    pub sha256: String,
    /// Served from the cache without any request.
    pub from_cache: bool,
    /// How many times the transfer was resumed with a `Range` request.
    pub resumes: u32,
}

/// A local cache of factory assets, laid out as `<root>/<schematic>/<version>/<asset>`, with
/// `<asset>.sha256` beside each file. Files appear only complete (temp + rename).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageCache {
    root: PathBuf,
}

impl ImageCache {
    /// A cache rooted at `root` (created on first download).
    pub fn new(root: impl Into<PathBuf>) -> ImageCache {
        ImageCache { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where an asset lives in the cache (whether or not it is there).
    pub fn path_for(&self, id: &SchematicId, version: &TalosVersion, asset: &Asset) -> PathBuf {
        self.root
            .join(id.to_string())
            .join(version.to_string())
            .join(asset.file_name())
    }

    /// The cached file and its SHA-256, if complete.
    pub async fn lookup(
        &self,
        id: &SchematicId,
        version: &TalosVersion,
        asset: &Asset,
    ) -> Result<Option<DownloadOutcome>, Error> {
        let path = self.path_for(id, version, asset);
        let meta = match tokio::fs::metadata(&path).await {
            Ok(m) if m.is_file() => m,
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let sidecar = sidecar_path(&path);
        let sha256 = match tokio::fs::read_to_string(&sidecar).await {
            Ok(s) if is_hex_sha256(s.trim()) => s.trim().to_owned(),
            _ => {
                let (digest, _) = hash_file(&path).await?;
                write_atomic(&sidecar, format!("{digest}\n").as_bytes()).await?;
                digest
            }
        };
        Ok(Some(DownloadOutcome {
            path,
            bytes: meta.len(),
            sha256,
            from_cache: true,
            resumes: 0,
        }))
    }
}

fn is_hex_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn sidecar_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".sha256");
    PathBuf::from(s)
}

fn part_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

async fn hash_file(path: &Path) -> Result<(String, u64), Error> {
    let (hasher, len) = hash_prefix(path).await?;
    Ok((hex::encode(hasher.finalize()), len))
}

async fn hash_prefix(path: &Path) -> Result<(Sha256, u64), Error> {
    let mut f = tokio::fs::File::open(path)
        .await
        .map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf).await.map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        len += n as u64;
    }
    Ok((hasher, len))
}

async fn write_atomic(path: &Path, data: &[u8]) -> Result<(), Error> {
    let tmp = {
        let mut s = path.as_os_str().to_owned();
        s.push(".tmp");
        PathBuf::from(s)
    };
    tokio::fs::write(&tmp, data)
        .await
        .map_err(|e| Error::io(&tmp, e))?;
    tokio::fs::rename(&tmp, path)
        .await
        .map_err(|e| Error::io(path, e))
}

type PathLocks = HashMap<PathBuf, Weak<tokio::sync::Mutex<()>>>;

/// One async lock per destination path, so two tasks never write the same `.part` file.
async fn lock_path(path: &Path) -> tokio::sync::OwnedMutexGuard<()> {
    static LOCKS: OnceLock<Mutex<PathLocks>> = OnceLock::new();
    let lock = {
        let mut map = LOCKS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.retain(|_, w| w.strong_count() > 0);
        match map.get(path).and_then(Weak::upgrade) {
            Some(l) => l,
            None => {
                let l = Arc::new(tokio::sync::Mutex::new(()));
                map.insert(path.to_path_buf(), Arc::downgrade(&l));
                l
            }
        }
    };
    lock.lock_owned().await
}

/// `bytes <start>-<end>/<total>` → (start, total). `bytes */<total>` → (None, total).
fn parse_content_range(v: &str) -> Option<(Option<u64>, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let total = if total == "*" {
        None
    } else {
        Some(total.parse().ok()?)
    };
    if range == "*" {
        return Some((None, total));
    }
    let (start, _end) = range.split_once('-')?;
    Some((Some(start.parse().ok()?), total))
}

impl FactoryClient {
    /// Download an asset into `cache`, unless it is already there (then no request is
    /// made). Resumes a `.part` left by an interrupted run.
    pub async fn download_to_cache<F>(
        &self,
        cache: &ImageCache,
        id: &SchematicId,
        version: &TalosVersion,
        asset: &Asset,
        progress: F,
    ) -> Result<DownloadOutcome, Error>
    where
        F: FnMut(DownloadProgress) + Send,
    {
        let path = cache.path_for(id, version, asset);
        // Concurrent calls for one asset wait here; the later ones then find it cached.
        let _guard = lock_path(&path).await;
        if let Some(hit) = cache.lookup(id, version, asset).await? {
            tracing::debug!(path = %hit.path.display(), "asset served from the cache");
            return Ok(hit);
        }
        let url = self.urls.asset(id, version, asset);
        let outcome = self.download_unlocked(&url, &path, progress).await?;
        write_atomic(
            &sidecar_path(&path),
            format!("{}\n", outcome.sha256).as_bytes(),
        )
        .await?;
        Ok(outcome)
    }

    /// Stream `url` to `dest`: redirects followed, the body hashed as it arrives, a cut
    /// connection resumed with `Range` (up to the configured attempts), `dest` written only
    /// when complete (via `dest.part` and a rename). An existing `dest.part` is resumed.
    /// Concurrent downloads to one `dest` within this process are serialised (separate
    /// processes must not share a destination).
    pub async fn download<F>(
        &self,
        url: &Url,
        dest: &Path,
        progress: F,
    ) -> Result<DownloadOutcome, Error>
    where
        F: FnMut(DownloadProgress) + Send,
    {
        let _guard = lock_path(dest).await;
        self.download_unlocked(url, dest, progress).await
    }

    async fn download_unlocked<F>(
        &self,
        url: &Url,
        dest: &Path,
        mut progress: F,
    ) -> Result<DownloadOutcome, Error>
    where
        F: FnMut(DownloadProgress) + Send,
    {
        if let Some(dir) = dest.parent()
            && !dir.as_os_str().is_empty()
        {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| Error::io(dir, e))?;
        }
        let part = part_path(dest);
        let (mut hasher, mut offset) = match tokio::fs::metadata(&part).await {
            Ok(_) => hash_prefix(&part).await?,
            Err(_) => (Sha256::new(), 0),
        };
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&part)
            .await
            .map_err(|e| Error::io(&part, e))?;
        let mut total: Option<u64> = None;
        let mut validator: Option<String> = None;
        let mut resumes = 0u32;
        let mut attempt = 0u32;
        let mut last_error: Option<Error> = None;
        loop {
            if attempt >= self.max_attempts {
                return Err(last_error.unwrap_or(Error::Incomplete {
                    url: url.to_string(),
                    attempts: attempt,
                    received: offset,
                    expected: total.unwrap_or(offset),
                }));
            }
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
            }
            attempt += 1;
            let mut req = self.http.get(url.clone());
            if offset > 0 {
                req = req.header(RANGE, format!("bytes={offset}-"));
                if let Some(v) = &validator {
                    req = req.header(IF_RANGE, v.as_str());
                }
            }
            let resp = match self.send(req).await {
                Ok(r) => r,
                Err(Error::Api { status: 416, .. }) if offset > 0 => {
                    // Our part already holds the whole file (or more): start over unless
                    // its length is exactly the total, which a HEAD would confirm; starting
                    // over is simplest and always correct.
                    tracing::debug!("range not satisfiable; restarting the download");
                    file.set_len(0).await.map_err(|e| Error::io(&part, e))?;
                    hasher = Sha256::new();
                    offset = 0;
                    continue;
                }
                Err(e @ Error::Http { .. }) => {
                    tracing::warn!(error = %e, attempt, "download request failed; retrying");
                    last_error = Some(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            if validator.is_none() {
                validator = resp
                    .headers()
                    .get(ETAG)
                    .or_else(|| resp.headers().get(LAST_MODIFIED))
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
            }
            match resp.status() {
                StatusCode::PARTIAL_CONTENT => {
                    let range = resp
                        .headers()
                        .get(CONTENT_RANGE)
                        .and_then(|v| v.to_str().ok())
                        .and_then(parse_content_range);
                    match range {
                        Some((Some(start), t)) if start == offset => {
                            resumes += 1;
                            if t.is_some() {
                                total = t;
                            }
                        }
                        _ => {
                            return Err(Error::Decode {
                                url: url.to_string(),
                                message: format!(
                                    "206 with Content-Range {:?} for a request from byte {offset}",
                                    resp.headers().get(CONTENT_RANGE)
                                ),
                            });
                        }
                    }
                }
                _ => {
                    if offset > 0 {
                        tracing::debug!("server ignored Range; restarting from byte 0");
                        file.set_len(0).await.map_err(|e| Error::io(&part, e))?;
                        hasher = Sha256::new();
                        offset = 0;
                    }
                    total = resp.content_length();
                }
            }
            progress(DownloadProgress {
                downloaded: offset,
                total,
            });
            let mut stream = resp.bytes_stream();
            let mut cut = None;
            while let Some(chunk) = stream.next().await {
                match chunk {
                    Ok(bytes) => {
                        file.write_all(&bytes)
                            .await
                            .map_err(|e| Error::io(&part, e))?;
                        hasher.update(&bytes);
                        offset += bytes.len() as u64;
                        progress(DownloadProgress {
                            downloaded: offset,
                            total,
                        });
                    }
                    Err(source) => {
                        cut = Some(source);
                        break;
                    }
                }
            }
            file.flush().await.map_err(|e| Error::io(&part, e))?;
            if let Some(source) = cut {
                tracing::warn!(error = %source, received = offset, "connection cut; resuming");
                last_error = Some(Error::Http {
                    method: "GET".to_owned(),
                    url: url.to_string(),
                    source,
                });
                continue;
            }
            match total {
                Some(t) if offset < t => {
                    tracing::warn!(received = offset, total = t, "body ended early; resuming");
                    last_error = None;
                    continue;
                }
                Some(t) if offset > t => {
                    return Err(Error::Decode {
                        url: url.to_string(),
                        message: format!("received {offset} bytes, more than the announced {t}"),
                    });
                }
                _ => break,
            }
        }
        file.sync_all().await.map_err(|e| Error::io(&part, e))?;
        drop(file);
        tokio::fs::rename(&part, dest)
            .await
            .map_err(|e| Error::io(dest, e))?;
        Ok(DownloadOutcome {
            path: dest.to_path_buf(),
            bytes: offset,
            sha256: hex::encode(hasher.finalize()),
            from_cache: false,
            resumes,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn content_range() {
        assert_eq!(
            parse_content_range("bytes 5-9/10"),
            Some((Some(5), Some(10)))
        );
        assert_eq!(parse_content_range("bytes */10"), Some((None, Some(10))));
        assert_eq!(parse_content_range("bytes 0-1/*"), Some((Some(0), None)));
        assert_eq!(parse_content_range("items 0-1/2"), None);
    }

    #[test]
    fn cache_layout() {
        let cache = ImageCache::new("/c");
        let v: TalosVersion = "v1.12.0".parse().unwrap();
        let id = SchematicId::vanilla();
        assert_eq!(
            cache.path_for(
                &id,
                &v,
                &Asset::Kernel {
                    arch: crate::Arch::Amd64
                }
            ),
            PathBuf::from(format!("/c/{id}/v1.12.0/kernel-amd64"))
        );
    }
}
