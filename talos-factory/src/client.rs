//! The Image Factory HTTP client.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::{Deserialize, Serialize};
use tracing::Instrument;
use url::Url;

use crate::assets::FactoryUrls;
use crate::{Error, OfflineId, Schematic, SchematicId, TalosVersion};

/// A client for one Image Factory. Cheap to clone (the connection pool is shared).
///
/// ```no_run
/// # async fn demo() -> Result<(), talos_factory::Error> {
/// use talos_factory::{FactoryClient, Schematic};
///
/// let client = FactoryClient::builder().build()?; // https://factory.talos.dev
/// let created = client
///     .create_schematic(&Schematic::with_extensions(["siderolabs/qemu-guest-agent"]))
///     .await?;
/// assert!(!created.mismatch());
/// println!("{}", created.id);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct FactoryClient {
    pub(crate) http: reqwest::Client,
    pub(crate) urls: FactoryUrls,
    pub(crate) max_attempts: u32,
}

/// Builder for [`FactoryClient`].
#[derive(Debug, Clone)]
pub struct FactoryClientBuilder {
    base_url: String,
    pxe_base_url: Option<String>,
    user_agent: String,
    connect_timeout: Duration,
    read_timeout: Duration,
    extra_roots_pem: Vec<Vec<u8>>,
    native_roots: bool,
    max_attempts: u32,
}

impl Default for FactoryClientBuilder {
    fn default() -> Self {
        FactoryClientBuilder {
            base_url: crate::PUBLIC_FACTORY_URL.to_owned(),
            pxe_base_url: None,
            user_agent: concat!("talos-factory/", env!("CARGO_PKG_VERSION")).to_owned(),
            connect_timeout: Duration::from_secs(30),
            // Assets are built synchronously on first request: minutes without a byte.
            read_timeout: Duration::from_secs(15 * 60),
            extra_roots_pem: Vec::new(),
            native_roots: true,
            max_attempts: 5,
        }
    }
}

impl FactoryClientBuilder {
    /// The factory's HTTP base URL (default `https://factory.talos.dev`).
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }

    /// The PXE base URL. Defaults to `https://pxe.talos.dev` for the public factory and to
    /// the base URL for any other.
    pub fn pxe_base_url(mut self, url: impl Into<String>) -> Self {
        self.pxe_base_url = Some(url.into());
        self
    }

    /// The `User-Agent` header.
    pub fn user_agent(mut self, ua: impl Into<String>) -> Self {
        self.user_agent = ua.into();
        self
    }

    /// TCP connect timeout (default 30 s).
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    /// Longest wait for the next bytes of a response (default 15 min: the factory builds
    /// assets on demand before answering).
    pub fn read_timeout(mut self, t: Duration) -> Self {
        self.read_timeout = t;
        self
    }

    /// Trust an extra CA (PEM, one or more certificates) for a self-hosted factory.
    pub fn add_root_certificate_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.extra_roots_pem.push(pem.into());
        self
    }

    /// Whether to trust the operating system's CAs (default true).
    pub fn native_roots(mut self, on: bool) -> Self {
        self.native_roots = on;
        self
    }

    /// How many times a download is attempted (resuming) before giving up (default 5).
    pub fn max_download_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// Build the client: rustls with the ring provider, roots from the OS plus any extra CA.
    pub fn build(self) -> Result<FactoryClient, Error> {
        let parse = |s: &str| {
            Url::parse(s).map_err(|e| Error::Client(format!("invalid base URL {s:?}: {e}")))
        };
        let base = parse(&self.base_url)?;
        let pxe = match &self.pxe_base_url {
            Some(p) => parse(p)?,
            None if base.host_str() == Some("factory.talos.dev") => parse(crate::PUBLIC_PXE_URL)?,
            None => base.clone(),
        };
        for u in [&base, &pxe] {
            if !matches!(u.scheme(), "http" | "https") {
                return Err(Error::Client(format!(
                    "{u}: only http and https URLs are supported"
                )));
            }
        }
        let mut roots = rustls::RootCertStore::empty();
        if self.native_roots {
            let loaded = rustls_native_certs::load_native_certs();
            for e in &loaded.errors {
                tracing::debug!(error = %e, "skipping an unreadable system CA");
            }
            let (added, ignored) = roots.add_parsable_certificates(loaded.certs);
            tracing::debug!(added, ignored, "system CAs loaded");
        }
        for pem in &self.extra_roots_pem {
            let mut reader = std::io::BufReader::new(pem.as_slice());
            let mut any = false;
            for cert in rustls_pemfile::certs(&mut reader) {
                let cert = cert.map_err(|e| Error::Client(format!("bad CA PEM: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| Error::Client(format!("bad CA certificate: {e}")))?;
                any = true;
            }
            if !any {
                return Err(Error::Client("CA PEM contains no certificate".to_owned()));
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Client(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .user_agent(self.user_agent)
            .connect_timeout(self.connect_timeout)
            .read_timeout(self.read_timeout)
            .redirect(reqwest::redirect::Policy::limited(10))
            .build()
            .map_err(|e| Error::Client(e.to_string()))?;
        Ok(FactoryClient {
            http,
            urls: FactoryUrls::new(base, pxe),
            max_attempts: self.max_attempts,
        })
    }
}

/// The answer to `POST /schematics` (201 `{"id": ..., "schematic": ...}`).
#[derive(Debug, Clone, Serialize)]
pub struct CreatedSchematic {
    /// The factory's ID (authoritative).
    pub id: SchematicId,
    /// The canonical YAML the factory stored.
    pub schematic: String,
    /// What this crate computed offline before posting.
    pub offline: OfflineId,
}

impl CreatedSchematic {
    /// Whether an exact offline ID was computed and differs from the factory's.
    pub fn mismatch(&self) -> bool {
        self.offline.exact().is_some_and(|id| id != self.id)
    }
}

#[derive(Deserialize)]
struct CreateResponse {
    id: String,
    schematic: String,
}

/// An official extension (`GET /version/{v}/extensions/official`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtensionInfo {
    /// e.g. `siderolabs/qemu-guest-agent`.
    pub name: String,
    /// Image reference, e.g. `ghcr.io/siderolabs/qemu-guest-agent:10.0.2`.
    #[serde(rename = "ref")]
    pub reference: String,
    /// `sha256:...`.
    pub digest: String,
    /// Author.
    #[serde(default)]
    pub author: String,
    /// Description.
    #[serde(default)]
    pub description: String,
}

/// An official overlay (`GET /version/{v}/overlays/official`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverlayInfo {
    /// e.g. `rpi_generic`.
    pub name: String,
    /// e.g. `siderolabs/sbc-raspberrypi`.
    pub image: String,
    /// Image reference.
    #[serde(rename = "ref")]
    pub reference: String,
    /// `sha256:...`.
    pub digest: String,
}

/// An extension name missing from a version's catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnknownExtension {
    /// The name as written in the schematic.
    pub name: String,
    /// Close catalogue names, best first.
    pub suggestions: Vec<String>,
}

/// The result of checking a schematic's extensions against a catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ExtensionCheck {
    /// Names not in the catalogue.
    pub unknown: Vec<UnknownExtension>,
}

impl ExtensionCheck {
    /// Check `names` against `catalogue` (pure).
    pub fn against(names: &[String], catalogue: &[ExtensionInfo]) -> ExtensionCheck {
        let known: std::collections::HashSet<&str> =
            catalogue.iter().map(|e| e.name.as_str()).collect();
        let unknown = names
            .iter()
            .filter(|n| !known.contains(n.as_str()))
            .map(|n| UnknownExtension {
                name: n.clone(),
                suggestions: crate::did_you_mean(n, catalogue.iter().map(|e| e.name.as_str())),
            })
            .collect();
        ExtensionCheck { unknown }
    }

    /// Whether every name is known.
    pub fn is_ok(&self) -> bool {
        self.unknown.is_empty()
    }
}

impl std::fmt::Display for ExtensionCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, u) in self.unknown.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "unknown extension {:?}", u.name)?;
            if !u.suggestions.is_empty() {
                write!(f, " (did you mean {}?)", u.suggestions.join(", "))?;
            }
        }
        Ok(())
    }
}

/// What `HEAD` says about an asset (the factory always answers HEAD directly, without a
/// redirect).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AssetInfo {
    /// `Content-Length`.
    pub size: Option<u64>,
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// The file name from `Content-Disposition`.
    pub filename: Option<String>,
}

impl FactoryClient {
    /// A builder (defaults to the public factory).
    pub fn builder() -> FactoryClientBuilder {
        FactoryClientBuilder::default()
    }

    /// URL builder for this factory's assets, PXE scripts and installer images.
    pub fn urls(&self) -> &FactoryUrls {
        &self.urls
    }

    /// Escape hatch: a request to a path relative to the base URL, sent with this client's
    /// TLS and timeouts.
    pub fn raw(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, self.urls.join(path.trim_start_matches('/')))
    }

    /// Send a request; any non-2xx status becomes [`Error::Api`] with the plain-text body.
    pub(crate) async fn send(&self, req: RequestBuilder) -> Result<Response, Error> {
        let req = req.build().map_err(|e| Error::Client(e.to_string()))?;
        let method = req.method().to_string();
        let url = req.url().to_string();
        let span = tracing::debug_span!("factory_request", %method, %url);
        async {
            let resp = self.http.execute(req).await.map_err(|source| Error::Http {
                method: method.clone(),
                url: url.clone(),
                source,
            })?;
            let status = resp.status();
            tracing::debug!(status = status.as_u16(), "response");
            if status.is_success() || status == StatusCode::PARTIAL_CONTENT {
                return Ok(resp);
            }
            let body = resp.text().await.unwrap_or_default();
            Err(Error::Api {
                method,
                url,
                status: status.as_u16(),
                message: body.trim_end().to_owned(),
            })
        }
        .instrument(span)
        .await
    }

    async fn get_text(&self, path: &str) -> Result<(String, String), Error> {
        let req = self.http.get(self.urls.join(path));
        let resp = self.send(req).await?;
        let url = resp.url().to_string();
        let text = resp.text().await.map_err(|source| Error::Http {
            method: "GET".to_owned(),
            url: url.clone(),
            source,
        })?;
        Ok((url, text))
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, Error> {
        let (url, text) = self.get_text(path).await?;
        serde_json::from_str(&text).map_err(|e| Error::Decode {
            url,
            message: e.to_string(),
        })
    }

    /// `HEAD` an asset URL: its size, type and file name. The factory builds the asset on
    /// the first request, so this can take minutes too.
    pub async fn head(&self, url: &Url) -> Result<AssetInfo, Error> {
        let resp = self.send(self.http.head(url.clone())).await?;
        let header = |name: reqwest::header::HeaderName| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let filename = header(reqwest::header::CONTENT_DISPOSITION).and_then(|d| {
            d.split(';')
                .find_map(|p| p.trim().strip_prefix("filename="))
                .map(|f| f.trim_matches('"').to_owned())
        });
        Ok(AssetInfo {
            size: header(reqwest::header::CONTENT_LENGTH).and_then(|v| v.parse().ok()),
            content_type: header(reqwest::header::CONTENT_TYPE),
            filename,
        })
    }

    /// `POST /schematics` with the canonical YAML. The factory's ID is returned along with
    /// the offline one; [`CreatedSchematic::mismatch`] says whether they differ.
    pub async fn create_schematic(&self, schematic: &Schematic) -> Result<CreatedSchematic, Error> {
        let canonical = schematic.canonicalize();
        self.post_schematic(canonical.yaml.clone(), canonical.offline_id())
            .await
    }

    /// `POST /schematics` with a document exactly as written (its extension order kept).
    /// It is parsed locally first so that mistakes are reported with a line number.
    pub async fn create_schematic_from_yaml(&self, text: &str) -> Result<CreatedSchematic, Error> {
        let offline = Schematic::parse(text)?.offline_id();
        self.post_schematic(text.to_owned(), offline).await
    }

    async fn post_schematic(
        &self,
        body: String,
        offline: OfflineId,
    ) -> Result<CreatedSchematic, Error> {
        let url = self.urls.join("schematics");
        let req = self
            .http
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/yaml")
            .body(body);
        let resp = self.send(req).await?;
        let status = resp.status();
        let text = resp.text().await.map_err(|source| Error::Http {
            method: "POST".to_owned(),
            url: url.to_string(),
            source,
        })?;
        let decode = |message: String| Error::Decode {
            url: url.to_string(),
            message,
        };
        if status != StatusCode::CREATED {
            tracing::warn!(
                status = status.as_u16(),
                "POST /schematics did not answer 201"
            );
        }
        let parsed: CreateResponse =
            serde_json::from_str(&text).map_err(|e| decode(e.to_string()))?;
        let id: SchematicId = parsed
            .id
            .parse()
            .map_err(|e: Error| decode(e.to_string()))?;
        let created = CreatedSchematic {
            id,
            schematic: parsed.schematic,
            offline,
        };
        if created.mismatch() {
            tracing::warn!(
                factory = %created.id,
                offline = ?created.offline.exact().map(|i| i.to_string()),
                "the factory's schematic ID differs from the offline one"
            );
        }
        Ok(created)
    }

    /// `GET /schematics/{id}`: the canonical YAML as stored (404 `schematic not found`).
    pub async fn get_schematic_yaml(&self, id: &SchematicId) -> Result<String, Error> {
        Ok(self.get_text(&format!("schematics/{id}")).await?.1)
    }

    /// `GET /schematics/{id}`, parsed.
    pub async fn get_schematic(&self, id: &SchematicId) -> Result<Schematic, Error> {
        Schematic::parse(&self.get_schematic_yaml(id).await?)
    }

    /// `GET /versions`: the Talos versions the factory builds, oldest first as served.
    /// Entries that are not versions are skipped with a warning.
    pub async fn versions(&self) -> Result<Vec<TalosVersion>, Error> {
        self.versions_at("versions").await
    }

    /// `GET /versions?broken=true`: versions the factory knows to be broken.
    pub async fn broken_versions(&self) -> Result<Vec<TalosVersion>, Error> {
        self.versions_at("versions?broken=true").await
    }

    async fn versions_at(&self, path: &str) -> Result<Vec<TalosVersion>, Error> {
        let raw: Vec<String> = self.get_json(path).await?;
        Ok(raw
            .iter()
            .filter_map(|v| match v.parse() {
                Ok(v) => Some(v),
                Err(e) => {
                    tracing::warn!(version = %v, error = %e, "skipping a version the factory lists");
                    None
                }
            })
            .collect())
    }

    /// `GET /version/{v}/extensions/official`.
    pub async fn extensions(&self, version: &TalosVersion) -> Result<Vec<ExtensionInfo>, Error> {
        self.get_json(&format!("version/{version}/extensions/official"))
            .await
    }

    /// `GET /version/{v}/overlays/official` (empty for versions without overlays).
    pub async fn overlays(&self, version: &TalosVersion) -> Result<Vec<OverlayInfo>, Error> {
        self.get_json(&format!("version/{version}/overlays/official"))
            .await
    }

    /// Check the schematic's extension names against the version's official catalogue
    /// (the factory itself does not check them at POST time).
    pub async fn check_extensions(
        &self,
        schematic: &Schematic,
        version: &TalosVersion,
    ) -> Result<ExtensionCheck, Error> {
        let catalogue = self.extensions(version).await?;
        Ok(ExtensionCheck::against(
            &schematic
                .customization
                .system_extensions
                .official_extensions,
            &catalogue,
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn extension_check_suggests() {
        let cat = vec![ExtensionInfo {
            name: "siderolabs/qemu-guest-agent".into(),
            reference: "r".into(),
            digest: "d".into(),
            author: String::new(),
            description: String::new(),
        }];
        let check = ExtensionCheck::against(
            &[
                "siderolabs/qemu-guest-agent".into(),
                "qemu-guest-agnet".into(),
            ],
            &cat,
        );
        assert!(!check.is_ok());
        assert_eq!(
            check.unknown[0].suggestions,
            ["siderolabs/qemu-guest-agent"]
        );
        assert_eq!(
            check.to_string(),
            "unknown extension \"qemu-guest-agnet\" (did you mean siderolabs/qemu-guest-agent?)"
        );
    }

    #[test]
    fn builder_rejects_bad_urls() {
        assert!(
            FactoryClient::builder()
                .base_url("ftp://x")
                .build()
                .is_err()
        );
        assert!(
            FactoryClient::builder()
                .base_url("not a url")
                .build()
                .is_err()
        );
        let c = FactoryClient::builder().build().unwrap();
        assert_eq!(c.urls().pxe_base().as_str(), "https://pxe.talos.dev/");
        let c = FactoryClient::builder()
            .base_url("http://127.0.0.1:1/")
            .build()
            .unwrap();
        assert_eq!(c.urls().pxe_base().as_str(), "http://127.0.0.1:1/");
    }
}
