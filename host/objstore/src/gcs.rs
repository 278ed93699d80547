//! GCS buckets. Writes, deletes and copies go through `object_store`'s GCS
//! client; reads, object metadata and listings go through GCS' JSON API
//! (`storage/v1`), as Google's own SDKs (and so Thanos) do, with the same
//! credentials. `STORAGE_EMULATOR_HOST` (the SDKs' variable) points both at
//! an emulator, anonymously.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use object_store::gcp::{GcpCredentialProvider, GoogleCloudStorage};
use object_store::path::Path;
use object_store::{
    Attributes, CopyOptions, GetOptions, GetRange, GetResult, GetResultPayload, ListResult,
    MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload,
    PutResult, Result,
};

const STORE: &str = "GCS";

/// A GCS bucket.
pub struct Gcs {
    inner: Arc<GoogleCloudStorage>,
    http: reqwest::Client,
    /// `<base>/storage/v1/b/<bucket>`.
    api: String,
    bucket: String,
    creds: Option<GcpCredentialProvider>,
}

impl fmt::Debug for Gcs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Gcs({})", self.bucket)
    }
}

impl fmt::Display for Gcs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GCS({})", self.bucket)
    }
}

fn generic(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> object_store::Error {
    object_store::Error::Generic {
        store: STORE,
        source: e.into(),
    }
}

/// Percent-encodes an object name as one path segment.
fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The emulator's base URL from `STORAGE_EMULATOR_HOST` (`host:port` or a URL).
pub fn emulator_base() -> Option<String> {
    let h = std::env::var("STORAGE_EMULATOR_HOST")
        .ok()
        .filter(|h| !h.is_empty())?;
    Some(if h.contains("://") {
        h.trim_end_matches('/').to_owned()
    } else {
        format!("http://{h}")
    })
}

impl Gcs {
    pub fn new(
        inner: GoogleCloudStorage,
        base: &str,
        bucket: &str,
        anonymous: bool,
    ) -> Result<Self> {
        let creds = (!anonymous).then(|| inner.credentials().clone());
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(generic)?;
        Ok(Gcs {
            inner: Arc::new(inner),
            http,
            api: format!(
                "{}/storage/v1/b/{}",
                base.trim_end_matches('/'),
                encode(bucket)
            ),
            bucket: bucket.to_owned(),
            creds,
        })
    }

    async fn request(&self, url: &str) -> Result<reqwest::RequestBuilder> {
        let mut r = self.http.get(url);
        if let Some(c) = &self.creds {
            let cred = c.get_credential().await?;
            if !cred.bearer.is_empty() {
                r = r.bearer_auth(&cred.bearer);
            }
        }
        Ok(r)
    }

    async fn send(&self, r: reqwest::RequestBuilder, path: &str) -> Result<reqwest::Response> {
        let resp = r.send().await.map_err(generic)?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(object_store::Error::NotFound {
                path: path.to_owned(),
                source: format!("GCS: {path} not found").into(),
            });
        }
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            return Err(generic(format!(
                "GCS {path}: {status}: {}",
                body.chars().take(300).collect::<String>()
            )));
        }
        Ok(resp)
    }

    /// One object's metadata from the JSON API.
    async fn meta(&self, location: &Path) -> Result<ObjectMeta> {
        let url = format!("{}/o/{}", self.api, encode(location.as_ref()));
        let resp = self
            .send(self.request(&url).await?, location.as_ref())
            .await?;
        let v: serde_json::Value =
            serde_json::from_slice(&resp.bytes().await.map_err(generic)?).map_err(generic)?;
        object_meta(&v)
            .ok_or_else(|| generic(format!("GCS {location}: metadata without name or size")))
    }

    /// One page of a listing.
    async fn page(
        &self,
        prefix: Option<&Path>,
        delimiter: bool,
        token: Option<String>,
    ) -> Result<(Vec<ObjectMeta>, Vec<Path>, Option<String>)> {
        let mut url = format!("{}/o?maxResults=1000", self.api);
        if let Some(p) = prefix.filter(|p| !p.as_ref().is_empty()) {
            url.push_str(&format!("&prefix={}", encode(&format!("{}/", p.as_ref()))));
        }
        if delimiter {
            url.push_str("&delimiter=%2F");
        }
        if let Some(t) = &token {
            url.push_str(&format!("&pageToken={}", encode(t)));
        }
        let resp = self.send(self.request(&url).await?, "listing").await?;
        let v: serde_json::Value =
            serde_json::from_slice(&resp.bytes().await.map_err(generic)?).map_err(generic)?;
        let objects = v
            .get("items")
            .and_then(|i| i.as_array())
            .map(|a| a.iter().filter_map(object_meta).collect())
            .unwrap_or_default();
        let prefixes = v
            .get("prefixes")
            .and_then(|i| i.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|p| p.as_str())
                    .map(|p| Path::from(p.trim_end_matches('/')))
                    .collect()
            })
            .unwrap_or_default();
        let next = v
            .get("nextPageToken")
            .and_then(|t| t.as_str())
            .map(str::to_owned);
        Ok((objects, prefixes, next))
    }
}

fn object_meta(v: &serde_json::Value) -> Option<ObjectMeta> {
    let name = v.get("name")?.as_str()?;
    let size = match v.get("size")? {
        serde_json::Value::String(s) => s.parse().ok()?,
        n => n.as_u64()?,
    };
    let last_modified = v
        .get("updated")
        .and_then(|u| u.as_str())
        .and_then(|u| chrono::DateTime::parse_from_rfc3339(u).ok())
        .map(|d| d.with_timezone(&chrono::Utc))
        .unwrap_or_default();
    Some(ObjectMeta {
        location: Path::from(name),
        last_modified,
        size,
        e_tag: v.get("etag").and_then(|e| e.as_str()).map(str::to_owned),
        version: v
            .get("generation")
            .and_then(|g| g.as_str())
            .map(str::to_owned),
    })
}

#[async_trait::async_trait]
impl ObjectStore for Gcs {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        if options.head {
            let meta = self.meta(location).await?;
            return Ok(GetResult {
                payload: GetResultPayload::Stream(stream::empty().boxed()),
                range: 0..meta.size,
                meta,
                attributes: Attributes::default(),
                extensions: Default::default(),
            });
        }
        let url = format!("{}/o/{}?alt=media", self.api, encode(location.as_ref()));
        let mut r = self.request(&url).await?;
        let header = match &options.range {
            None => None,
            Some(GetRange::Bounded(rg)) if rg.end > rg.start => {
                Some(format!("bytes={}-{}", rg.start, rg.end - 1))
            }
            Some(GetRange::Bounded(_)) => return Err(generic("empty range")),
            Some(GetRange::Offset(o)) => Some(format!("bytes={o}-")),
            Some(GetRange::Suffix(n)) => Some(format!("bytes=-{n}")),
        };
        if let Some(h) = &header {
            r = r.header("Range", h);
        }
        let resp = self.send(r, location.as_ref()).await?;
        let headers = resp.headers().clone();
        let len = resp.content_length();
        // `bytes a-b/total` when ranged.
        let content_range = headers
            .get("content-range")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("bytes "))
            .and_then(|v| {
                let (span, total) = v.split_once('/')?;
                let (a, b) = span.split_once('-')?;
                Some((
                    a.parse::<u64>().ok()?,
                    b.parse::<u64>().ok()?,
                    total.parse::<u64>().ok()?,
                ))
            });
        let (range, size): (Range<u64>, u64) = match (content_range, len) {
            (Some((a, b, total)), _) => (a..b + 1, total),
            (None, Some(n)) if header.is_none() => (0..n, n),
            _ => {
                // No length to trust: read the body to know it.
                let body = resp.bytes().await.map_err(generic)?;
                let n = body.len() as u64;
                let meta = ObjectMeta {
                    location: location.clone(),
                    last_modified: Default::default(),
                    size: n,
                    e_tag: None,
                    version: None,
                };
                return Ok(GetResult {
                    payload: GetResultPayload::Stream(
                        stream::once(async move { Ok(body) }).boxed(),
                    ),
                    meta,
                    range: 0..n,
                    attributes: Attributes::default(),
                    extensions: Default::default(),
                });
            }
        };
        let meta = ObjectMeta {
            location: location.clone(),
            last_modified: headers
                .get("last-modified")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok())
                .map(|d| d.with_timezone(&chrono::Utc))
                .unwrap_or_default(),
            size,
            e_tag: headers
                .get("etag")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            version: headers
                .get("x-goog-generation")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        };
        let body: BoxStream<'static, Result<Bytes>> = resp
            .bytes_stream_compat()
            .map(|c| c.map_err(generic))
            .boxed();
        Ok(GetResult {
            payload: GetResultPayload::Stream(body),
            meta,
            range,
            attributes: Attributes::default(),
            extensions: Default::default(),
        })
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let this = Gcs {
            inner: self.inner.clone(),
            http: self.http.clone(),
            api: self.api.clone(),
            bucket: self.bucket.clone(),
            creds: self.creds.clone(),
        };
        let prefix = prefix.cloned();
        stream::unfold(Some((this, None::<String>, true)), move |state| {
            let prefix = prefix.clone();
            async move {
                let (this, token, first) = state?;
                if !first && token.is_none() {
                    return None;
                }
                match this.page(prefix.as_ref(), false, token).await {
                    Ok((objects, _, next)) => {
                        let items: Vec<Result<ObjectMeta>> = objects.into_iter().map(Ok).collect();
                        let more = next.is_some();
                        Some((stream::iter(items), more.then_some((this, next, false))))
                    }
                    Err(e) => Some((stream::iter(vec![Err(e)]), None)),
                }
            }
        })
        .flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let mut out = ListResult {
            common_prefixes: Vec::new(),
            objects: Vec::new(),
            extensions: Default::default(),
        };
        let mut token = None;
        loop {
            let (objects, prefixes, next) = self.page(prefix, true, token).await?;
            out.objects.extend(objects);
            out.common_prefixes.extend(prefixes);
            match next {
                Some(t) => token = Some(t),
                None => return Ok(out),
            }
        }
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// `reqwest`'s chunk reader as a stream (without its `stream` feature).
trait BytesStreamCompat {
    fn bytes_stream_compat(self) -> BoxStream<'static, reqwest::Result<Bytes>>;
}

impl BytesStreamCompat for reqwest::Response {
    fn bytes_stream_compat(self) -> BoxStream<'static, reqwest::Result<Bytes>> {
        stream::unfold(Some(self), |resp| async move {
            let mut resp = resp?;
            match resp.chunk().await {
                Ok(Some(c)) => Some((Ok(c), Some(resp))),
                Ok(None) => None,
                Err(e) => Some((Err(e), None)),
            }
        })
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_one_path_segment() {
        assert_eq!(encode("01ABC/chunks/000001"), "01ABC%2Fchunks%2F000001");
        let v = serde_json::json!({"name": "a/b", "size": "12", "updated": "2024-01-01T00:00:00.5Z", "etag": "x", "generation": "7"});
        let m = object_meta(&v).unwrap();
        assert_eq!((m.location.as_ref(), m.size), ("a/b", 12));
        assert_eq!(m.last_modified.timestamp(), 1_704_067_200);
        assert_eq!(m.version.as_deref(), Some("7"));
    }
}
