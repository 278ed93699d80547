//! `sluice query-frontend`: in front of any Prometheus-compatible query API
//! (a Sluice or Thanos querier). Range queries are checked, aligned to their
//! step, split on UTC day (`--query-range.split-interval`) boundaries, each
//! piece answered from the results cache where that is exact and from the
//! downstream otherwise, with retries on 5xx and transport errors; the
//! pieces are merged sample for sample. Every other path is proxied
//! unchanged (instant queries and the label APIs with retries).
//!
//! Exactness rules, stricter than Thanos': an answer with any warning, or
//! marked `Cache-Control: no-store`, is never cached; nothing newer than
//! `now − max_freshness` is cached; a query with a negative offset, an `@`
//! after its end or the freshness edge, or `@ start()`/`end()` is not
//! cached; the cache key holds everything that changes the answer (tenant,
//! query, step and the grid's phase, split, resolution, shard, lookback,
//! engine, partial response, dedup, replica labels); and every extent
//! records the downstream's store set (`/api/v1/stores`): an extent answered
//! by another set of stores (one added, removed, or whose time range moved)
//! is not served.

pub mod cache;
pub mod labels;
pub mod request;
pub mod response;
pub mod shard;
pub mod split;

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use serde_json::{Value, json};

pub use cache::{Extent, PutOutcome, ResultsCache};
pub use request::RangeQuery;
pub use response::Matrix;

/// Largest request body accepted (Thanos: 10 MiB, 413 above).
pub const MAX_REQUEST_BODY: usize = 10 << 20;

/// Most pieces a label or series call is split into; a longer range is
/// forwarded whole (its answer is not cached).
pub const MAX_LABEL_PIECES: i64 = 400;

/// Largest downstream answer read for one range-query piece.
pub const MAX_PIECE_BYTES: usize = 1 << 30;

/// Settings (flags of `sluice query-frontend`).
#[derive(Debug, Clone)]
pub struct FrontendConfig {
    /// `--query-frontend.downstream-url`, without a trailing slash.
    pub downstream: String,
    /// `--query-range.split-interval` in ms; 0 = no split.
    pub split_interval: i64,
    /// `--query-range.align-range-with-step`.
    pub align: bool,
    /// `--query-range.max-retries-per-request`.
    pub range_retries: u32,
    /// `--query.max-retries-per-request` (instant queries).
    pub instant_retries: u32,
    /// `--labels.max-retries-per-request` (label and series APIs).
    pub labels_retries: u32,
    /// `--query-range.max-query-length` in ms; 0 = no limit.
    pub max_query_length: i64,
    /// `--query-range.max-query-parallelism`.
    pub parallelism: usize,
    /// `--query-range.response-cache-max-freshness` in ms.
    pub max_freshness: i64,
    /// `--query-range.partial-response`.
    pub partial_response: bool,
    /// `--query-frontend.tenant-header` and `--query-frontend.default-tenant-id`.
    pub tenant_header: String,
    pub default_tenant: String,
    /// `--query-frontend.forward-header`; the tenant header always goes.
    pub forward_headers: Vec<String>,
    /// `--query-frontend.log-queries-longer-than`: `None` off, zero all.
    pub slow_query: Option<Duration>,
    /// `--query-frontend.vertical-shards`: shardable range queries are
    /// asked as this many copies (0 or 1: not sharded).
    pub vertical_shards: usize,
    /// `--labels.split-interval` in ms; 0 = label and series calls forwarded whole.
    pub labels_split_interval: i64,
    /// `--labels.max-query-parallelism`.
    pub labels_parallelism: usize,
    /// `--labels.response-cache-max-freshness` in ms.
    pub labels_max_freshness: i64,
}

impl Default for FrontendConfig {
    fn default() -> Self {
        FrontendConfig {
            downstream: "http://localhost:9090".into(),
            split_interval: 24 * 3_600_000,
            align: true,
            range_retries: 5,
            instant_retries: 5,
            labels_retries: 5,
            max_query_length: 0,
            parallelism: 14,
            max_freshness: 60_000,
            partial_response: true,
            tenant_header: "THANOS-TENANT".into(),
            default_tenant: "default-tenant".into(),
            forward_headers: Vec::new(),
            slow_query: None,
            vertical_shards: 0,
            labels_split_interval: 24 * 3_600_000,
            labels_parallelism: 14,
            labels_max_freshness: 60_000,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabel {
    op: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShardableLabel {
    shardable: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

/// Metrics with Thanos' (and Cortex's) names.
#[derive(Debug, Clone)]
struct FrontendMetrics {
    queries: Family<OpLabel, Counter>,
    split_queries: Counter,
    fetched_keys: Counter,
    hits: Counter,
    retries: Histogram,
    not_cached: Family<ReasonLabel, Counter>,
    set_skips: Counter,
    sharding: Family<ShardableLabel, Counter>,
}

impl FrontendMetrics {
    fn new(registry: &sluice_metrics::Metrics) -> Self {
        let m = FrontendMetrics {
            queries: Family::default(),
            split_queries: Counter::default(),
            fetched_keys: Counter::default(),
            hits: Counter::default(),
            retries: Histogram::new([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
            not_cached: Family::default(),
            set_skips: Counter::default(),
            sharding: Family::default(),
        };
        let c = m.clone();
        registry.register(|r| {
            r.register("thanos_query_frontend_queries", "Total queries passing through the frontend", c.queries);
            r.register("thanos_frontend_split_queries", "Total number of underlying query requests after the split by interval is applied", c.split_queries);
            r.register("cortex_cache_fetched_keys", "Total count of keys requested from cache.", c.fetched_keys);
            r.register("cortex_cache_hits", "Total count of keys found in cache.", c.hits);
            r.register("cortex_query_frontend_retries", "Number of times a request is retried.", c.retries);
            r.register(
                "thanos_frontend_sharding_middleware_queries",
                "Total number of queries analyzed by the sharding middleware",
                c.sharding,
            );
            r.register(
                "cortex_memcache_client_set_skip",
                "Total number of results cache items skipped because they were over the backend's item size.",
                c.set_skips,
            );
            r.register(
                "sluice_frontend_uncached_answers",
                "Downstream answers not cached, by reason (warning, no_store, fresh, query, stores_changed).",
                c.not_cached,
            );
        });
        m
    }
}

/// A running frontend.
pub struct Frontend {
    cfg: FrontendConfig,
    client: reqwest::Client,
    cache: Option<Arc<ResultsCache>>,
    labels_cache: Option<Arc<ResultsCache>>,
    metrics: FrontendMetrics,
    /// Fingerprint of the downstream's `/api/v1/stores`.
    stores: AtomicU64,
    ready: AtomicBool,
}

impl std::fmt::Debug for Frontend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frontend")
            .field("downstream", &self.cfg.downstream)
            .finish()
    }
}

/// An answer to send back as it is (the downstream's error, or ours).
#[derive(Debug)]
struct Passed {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl IntoResponse for Passed {
    fn into_response(self) -> Response {
        let mut r = (self.status, self.body).into_response();
        for (k, v) in &self.headers {
            if k == header::CONTENT_TYPE || k == header::CACHE_CONTROL {
                r.headers_mut().insert(k.clone(), v.clone());
            }
        }
        r
    }
}

fn api_error(status: StatusCode, kind: &str, msg: impl Into<String>) -> Passed {
    let body = serde_json::json!({"status": "error", "errorType": kind, "error": msg.into()});
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Passed {
        status,
        headers,
        body: Bytes::from(body.to_string()),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Headers that belong to one hop.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
    )
}

/// The HTTP client towards the downstream: Thanos' tripper defaults
/// (100 idle connections, 90 s idle timeout, 30 s dial timeout).
pub fn downstream_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(100)
        .connect_timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| format!("downstream HTTP client: {e}"))
}

impl Frontend {
    pub fn new(
        cfg: FrontendConfig,
        client: reqwest::Client,
        cache: Option<ResultsCache>,
        labels_cache: Option<ResultsCache>,
        registry: &sluice_metrics::Metrics,
    ) -> Arc<Frontend> {
        Arc::new(Frontend {
            cfg,
            client,
            cache: cache.map(Arc::new),
            labels_cache: labels_cache.map(Arc::new),
            metrics: FrontendMetrics::new(registry),
            stores: AtomicU64::new(0),
            ready: AtomicBool::new(false),
        })
    }

    /// Whether the downstream answered its last readiness check.
    pub fn readiness(&self) -> Result<(), String> {
        if self.ready.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err(format!("downstream {} is not ready", self.cfg.downstream))
        }
    }

    /// Checks the downstream's `/-/ready` and `/api/v1/stores` now.
    pub async fn check_downstream(&self) {
        let ready = self
            .client
            .get(format!("{}/-/ready", self.cfg.downstream))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready != self.ready.swap(ready, Ordering::Relaxed) {
            tracing::info!(downstream = %self.cfg.downstream, ready, "downstream readiness changed");
        }
        if let Some(f) = self.stores_fingerprint().await {
            let old = self.stores.swap(f, Ordering::Relaxed);
            if old != f && old != 0 {
                tracing::info!(
                    "the downstream's store set changed: cached extents of the old set are not served"
                );
            }
        }
    }

    /// Runs [`Frontend::check_downstream`] every `every` until dropped.
    pub async fn watch_downstream(self: Arc<Self>, every: Duration) {
        loop {
            self.check_downstream().await;
            tokio::time::sleep(every).await;
        }
    }

    /// A hash of the stores the downstream queries (names, time ranges,
    /// label sets); `None` when it has no `/api/v1/stores` (a Prometheus).
    async fn stores_fingerprint(&self) -> Option<u64> {
        let r = self
            .client
            .get(format!("{}/api/v1/stores", self.cfg.downstream))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        if !r.status().is_success() {
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.ok()?).ok()?;
        let mut items: Vec<String> = Vec::new();
        for (group, stores) in v.get("data")?.as_object()? {
            for s in stores.as_array()? {
                items.push(format!(
                    "{group}|{}|{}|{}|{}",
                    s.get("name").map(|x| x.to_string()).unwrap_or_default(),
                    s.get("minTime").map(|x| x.to_string()).unwrap_or_default(),
                    s.get("maxTime").map(|x| x.to_string()).unwrap_or_default(),
                    s.get("labelSets")
                        .map(|x| x.to_string())
                        .unwrap_or_default(),
                ));
            }
        }
        items.sort();
        let mut h = DefaultHasher::new();
        items.hash(&mut h);
        Some(h.finish() | 1)
    }

    /// The HTTP routes: range queries through the pipeline, everything else
    /// proxied.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route(
                "/api/v1/query_range",
                axum::routing::get(range_handler).post(range_handler),
            )
            .fallback(proxy_handler)
            .with_state(self.clone())
    }

    /// Sends one request downstream, retrying transport errors and 5xx
    /// with backoff (200 ms doubling to 2 s, jittered), at most `tries`
    /// times. The last answer comes back unread (so it can be streamed);
    /// `Err` when the downstream could not be reached at all.
    async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        headers: &HeaderMap,
        body: Bytes,
        tries: u32,
    ) -> Result<reqwest::Response, Passed> {
        let url = format!("{}{path_and_query}", self.cfg.downstream);
        let tries = tries.max(1);
        let mut backoff = Duration::from_millis(200);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = self.client.request(method.clone(), &url).body(body.clone());
            for (k, v) in headers {
                if !hop_by_hop(k) {
                    req = req.header(k, v);
                }
            }
            let outcome = req.send().await;
            let retry = match &outcome {
                Ok(r) => r.status().is_server_error(),
                Err(_) => true,
            };
            if !retry || attempt >= tries {
                self.metrics.retries.observe(f64::from(attempt));
                return outcome.map_err(|e| {
                    api_error(
                        StatusCode::BAD_GATEWAY,
                        "unavailable",
                        format!("downstream {}: {e}", self.cfg.downstream),
                    )
                });
            }
            let jitter = Duration::from_millis(u64::from(now_ms().rem_euclid(50) as u32));
            tokio::time::sleep(backoff + jitter).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    /// [`Frontend::send`], the answer read (at most `limit` bytes); `Err`
    /// for anything but a 2xx.
    async fn call(
        &self,
        method: Method,
        path_and_query: &str,
        headers: &HeaderMap,
        body: Bytes,
        tries: u32,
        limit: usize,
    ) -> Result<Passed, Passed> {
        let resp = self
            .send(method, path_and_query, headers, body, tries)
            .await?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = read_limited(resp, limit)
            .await
            .map_err(|e| api_error(StatusCode::BAD_GATEWAY, "unavailable", e))?;
        let p = Passed {
            status,
            headers,
            body,
        };
        if status.is_success() { Ok(p) } else { Err(p) }
    }

    /// A label or series request split on `--labels.split-interval`, its
    /// finished pieces cached, the answers merged.
    async fn labels_split(&self, lr: labels::LabelsRequest, headers: &HeaderMap) -> Response {
        let tenant = self.tenant(headers);
        let fwd = self.forwarded(headers);
        let no_store = headers
            .get(header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("no-store"));
        let cacheable_request = !no_store && !lr.rest.iter().any(|(k, _)| k == "storeMatch[]");
        let edge = now_ms() - self.cfg.labels_max_freshness;
        let pieces = split::split(lr.start, lr.end, 1, self.cfg.labels_split_interval);
        self.metrics.split_queries.inc_by(pieces.len() as u64);
        let jobs = pieces.into_iter().map(|(s, e)| {
            let key = (cacheable_request && e <= edge && self.labels_cache.is_some())
                .then(|| lr.key(&tenant, s, e));
            let (lr, fwd) = (&lr, &fwd);
            async move {
                if let (Some(c), Some(k)) = (&self.labels_cache, &key) {
                    self.metrics.fetched_keys.inc();
                    if let Some(v) = c.get_value(k).await
                        && let (Some(d), Some(w)) = (
                            v.get("data").and_then(Value::as_array),
                            v.get("warnings").and_then(Value::as_array),
                        )
                    {
                        self.metrics.hits.inc();
                        let w = w
                            .iter()
                            .filter_map(|x| x.as_str().map(str::to_owned))
                            .collect();
                        return Ok((d.clone(), w));
                    }
                }
                let form = lr.form(s, e);
                let p = match lr.api {
                    labels::Api::Values(_) => {
                        self.call(
                            Method::GET,
                            &format!("{}?{form}", lr.path),
                            fwd,
                            Bytes::new(),
                            self.cfg.labels_retries,
                            MAX_PIECE_BYTES,
                        )
                        .await?
                    }
                    _ => {
                        self.call(
                            Method::POST,
                            &lr.path,
                            fwd,
                            Bytes::from(form),
                            self.cfg.labels_retries,
                            MAX_PIECE_BYTES,
                        )
                        .await?
                    }
                };
                let (d, w) = labels::parse_answer(&p.body).ok_or_else(|| {
                    api_error(
                        StatusCode::BAD_GATEWAY,
                        "internal",
                        "downstream answer is not a success",
                    )
                })?;
                let benign = w.iter().all(|x| x == response::NO_STORE_MATCHED);
                let marked = p
                    .headers
                    .get(header::CACHE_CONTROL)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.contains("no-store"));
                if let (Some(c), Some(k)) = (&self.labels_cache, key)
                    && benign
                    && (!marked || !w.is_empty())
                {
                    c.put_value(k, json!({"data": d, "warnings": w})).await;
                }
                Ok::<_, Passed>((d, w))
            }
        });
        let mut stream =
            futures::stream::iter(jobs).buffer_unordered(self.cfg.labels_parallelism.max(1));
        let mut parts = Vec::new();
        while let Some(r) = stream.next().await {
            match r {
                Ok(x) => parts.push(x),
                Err(e) => return e.into_response(),
            }
        }
        let merged = labels::merge(&lr.api, parts, lr.limit);
        let mut resp = (
            [(header::CONTENT_TYPE, "application/json")],
            merged.to_string(),
        )
            .into_response();
        if merged.get("warnings").is_some() {
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        resp
    }

    fn tenant(&self, headers: &HeaderMap) -> String {
        headers
            .get(self.cfg.tenant_header.as_str())
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .unwrap_or(&self.cfg.default_tenant)
            .to_owned()
    }

    /// The headers forwarded downstream: the tenant's and the configured ones.
    fn forwarded(&self, headers: &HeaderMap) -> HeaderMap {
        let mut out = HeaderMap::new();
        for name in std::iter::once(&self.cfg.tenant_header).chain(&self.cfg.forward_headers) {
            if let (Ok(n), Some(v)) = (
                HeaderName::try_from(name.as_str()),
                headers.get(name.as_str()),
            ) {
                out.insert(n, v.clone());
            }
        }
        out.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        out
    }

    /// One piece from the downstream, as a matrix, and whether it may be cached.
    async fn fetch_piece(
        &self,
        q: &RangeQuery,
        headers: &HeaderMap,
    ) -> Result<(Matrix, bool), Passed> {
        let p = self
            .call(
                Method::POST,
                "/api/v1/query_range",
                headers,
                Bytes::from(q.encode()),
                self.cfg.range_retries,
                MAX_PIECE_BYTES,
            )
            .await?;
        let m = Matrix::parse(&p.body)
            .map_err(|e| api_error(StatusCode::BAD_GATEWAY, "internal", e))?;
        let no_store = p
            .headers
            .get(header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("no-store"));
        // "No StoreAPIs matched" is benign: no store covers the piece's range, and a store that starts to
        // changes the store set, which retires the extent.
        let benign =
            !m.warnings.is_empty() && m.warnings.iter().all(|w| w == response::NO_STORE_MATCHED);
        let reason = if !m.warnings.is_empty() && !benign {
            Some("warning")
        } else if no_store && !benign {
            Some("no_store")
        } else {
            None
        };
        if let Some(r) = reason {
            self.metrics
                .not_cached
                .get_or_create(&ReasonLabel { reason: r.into() })
                .inc();
        }
        Ok((m, reason.is_none()))
    }

    /// One split piece, from the cache where it holds the piece's extents for
    /// the current store set, the rest from the downstream.
    async fn piece(
        &self,
        q: RangeQuery,
        key: Option<String>,
        headers: &HeaderMap,
    ) -> Result<Matrix, Passed> {
        let (Some(cache), Some(key)) = (&self.cache, key) else {
            return Ok(self.fetch_piece(&q, headers).await?.0);
        };
        let stores = self.stores.load(Ordering::Relaxed);
        self.metrics.fetched_keys.inc();
        let mut extents: Vec<Extent> = cache.get(&key).await.unwrap_or_default();
        let before = extents.len();
        extents.retain(|e| e.stores == stores);
        if extents.len() < before {
            self.metrics
                .not_cached
                .get_or_create(&ReasonLabel {
                    reason: "stores_changed".into(),
                })
                .inc();
        }
        if !extents.is_empty() {
            self.metrics.hits.inc();
        }
        // Partition: cached slices and the gaps around them.
        let mut parts: Vec<Matrix> = Vec::new();
        let mut gaps: Vec<(i64, i64)> = Vec::new();
        let mut cur = q.start;
        extents.sort_by_key(|e| (e.start, std::cmp::Reverse(e.end)));
        for e in &extents {
            if e.end < cur || e.start > q.end {
                continue;
            }
            if e.start > cur {
                gaps.push((cur, e.start - q.step));
            }
            parts.push(e.answer.extract(cur.max(e.start), q.end.min(e.end)));
            cur = cur.max(e.end + q.step);
        }
        if cur <= q.end {
            gaps.push((cur, q.end));
        }
        // The last point of the query's grid at or before now - max_freshness.
        let edge = now_ms() - self.cfg.max_freshness;
        let fresh_edge = q.start + (edge - q.start).div_euclid(q.step) * q.step;
        let mut changed = false;
        for (s, e) in gaps {
            let sub = q.with_range(s, e);
            let (m, cacheable) = self.fetch_piece(&sub, headers).await?;
            let end = e.min(fresh_edge);
            if cacheable && end >= s {
                extents.push(Extent {
                    start: s,
                    end,
                    stores,
                    answer: m.extract(s, end),
                });
                changed = true;
            }
            parts.push(m);
        }
        if changed && cache.put(key, coalesce(extents, q.step)).await == PutOutcome::TooLarge {
            self.metrics.set_skips.inc();
        }
        Ok(Matrix::merge(parts).extract(q.start, q.end))
    }

    /// The cache key of one piece, `None` when the piece must not be cached.
    fn key(&self, q: &RangeQuery, tenant: &str, piece_start: i64) -> Option<String> {
        let interval = self.cfg.split_interval.max(1);
        let res = q.max_source_resolution.as_deref().unwrap_or("0");
        Some(format!(
            "fe:{tenant}:{}:{}:{}:{}:{}:{res}:{}:{}:{}:{}:{}:{}:{}",
            q.query,
            q.step,
            // The grid's phase: queries on different grids never share extents.
            q.start.rem_euclid(q.step),
            interval,
            piece_start.div_euclid(interval),
            q.shard_info.as_deref().unwrap_or("-"),
            q.lookback_delta.as_deref().unwrap_or("-"),
            q.engine.as_deref().unwrap_or("-"),
            q.partial_response,
            q.replica_labels.join(","),
            q.analyze.as_deref().unwrap_or("-"),
            q.dedup.map_or("-".to_string(), |d| d.to_string()),
        ))
    }

    /// Why a query is never cached, if it is not.
    fn uncacheable(&self, q: &RangeQuery, headers: &HeaderMap) -> Option<&'static str> {
        let no_store = headers
            .get(header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("no-store"));
        if self.cache.is_none() {
            return Some("no_cache");
        }
        if no_store || q.dedup == Some(false) || !q.store_match.is_empty() {
            return Some("request");
        }
        let freshness_edge = now_ms() - self.cfg.max_freshness;
        if query_looks_ahead(&q.query, q.end.min(freshness_edge)) {
            return Some("query");
        }
        None
    }
}

/// Whether answers of `query` can change after the fact for times up to
/// `edge` (ms): a negative offset, an `@` after `edge`, or `@ start()`/`end()`
/// (which move with each piece).
fn query_looks_ahead(query: &str, edge: i64) -> bool {
    let compact: String = query.split_whitespace().collect();
    if compact.contains("offset-") || compact.contains("start()") || compact.contains("end()") {
        return true;
    }
    compact.split('@').skip(1).any(|rest| {
        let num: String = rest
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == 'e' || *c == '+' || *c == '-')
            .collect();
        num.parse::<f64>()
            .map_or(true, |t| t * 1000.0 > edge as f64)
    })
}

/// Extents sorted, overlapping or touching ones (on the step grid) of the
/// same store set merged.
fn coalesce(mut extents: Vec<Extent>, step: i64) -> Vec<Extent> {
    extents.sort_by_key(|e| (e.start, std::cmp::Reverse(e.end)));
    let mut out: Vec<Extent> = Vec::new();
    for e in extents {
        match out.last_mut() {
            Some(p) if p.stores == e.stores && p.end + step >= e.start => {
                if e.end > p.end {
                    p.answer = Matrix::merge(vec![p.answer.clone(), e.answer]);
                    p.end = e.end;
                }
            }
            _ => out.push(e),
        }
    }
    out
}

async fn read_limited(mut resp: reqwest::Response, limit: usize) -> Result<Bytes, String> {
    let mut buf = bytes::BytesMut::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("reading the downstream answer: {e}"))?
    {
        if buf.len() + chunk.len() > limit {
            return Err(format!("downstream answer larger than {limit} bytes"));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

async fn read_body(body: Body) -> Result<Bytes, Passed> {
    axum::body::to_bytes(body, MAX_REQUEST_BODY)
        .await
        .map_err(|_| {
            api_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "bad_data",
                format!("request body larger than {MAX_REQUEST_BODY} bytes"),
            )
        })
}

async fn range_handler(State(fe): State<Arc<Frontend>>, req: Request) -> Response {
    let began = Instant::now();
    fe.metrics
        .queries
        .get_or_create(&OpLabel {
            op: "query_range".into(),
        })
        .inc();
    let (parts, body) = req.into_parts();
    let body = match read_body(body).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let mut pairs = request::form_pairs(parts.uri.query().unwrap_or(""));
    let form = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if parts.method == Method::POST && form {
        pairs.extend(request::form_pairs(&String::from_utf8_lossy(&body)));
    }
    let mut q = match RangeQuery::parse(&pairs, fe.cfg.partial_response) {
        Ok(q) => q,
        Err(e) => return api_error(StatusCode::BAD_REQUEST, "bad_data", e.0).into_response(),
    };
    if fe.cfg.max_query_length > 0 && q.end - q.start > fe.cfg.max_query_length {
        let d = |ms: i64| sluice_config::format_duration(Duration::from_millis(ms.max(0) as u64));
        return api_error(
            StatusCode::BAD_REQUEST,
            "bad_data",
            format!(
                "the query time range exceeds the limit (query length: {}, limit: {})",
                d(q.end - q.start),
                d(fe.cfg.max_query_length)
            ),
        )
        .into_response();
    }
    if fe.cfg.align {
        (q.start, q.end) = split::align(q.start, q.end, q.step);
    }
    let tenant = fe.tenant(&parts.headers);
    let headers = fe.forwarded(&parts.headers);
    let uncacheable = fe.uncacheable(&q, &parts.headers);
    if let Some(r) = uncacheable
        && r != "no_cache"
    {
        fe.metrics
            .not_cached
            .get_or_create(&ReasonLabel { reason: r.into() })
            .inc();
    }
    // `@ start()`/`end()` mean the whole query's start and end: not split.
    let interval = if query_looks_ahead(&q.query, i64::MAX) && q.query.contains("()") {
        0
    } else {
        fe.cfg.split_interval
    };
    let pieces = split::split(q.start, q.end, q.step, interval);
    fe.metrics.split_queries.inc_by(pieces.len() as u64);
    let fresh_edge = now_ms() - fe.cfg.max_freshness;
    // Vertical sharding: copies of each piece, one per shard of the grouping labels.
    let shards: Vec<Option<String>> = match (fe.cfg.vertical_shards, &q.shard_info) {
        (n, None) if n > 1 => {
            let labels = shard::shard_labels(&q.query);
            fe.metrics
                .sharding
                .get_or_create(&ShardableLabel {
                    shardable: labels.is_some().to_string(),
                })
                .inc();
            match labels {
                Some(l) => (0..n).map(|i| Some(shard::shard_info(i, n, &l))).collect(),
                None => vec![None],
            }
        }
        _ => vec![None],
    };
    let mut work: Vec<(i64, i64, Option<String>)> = Vec::with_capacity(pieces.len() * shards.len());
    for (s, e) in pieces {
        for sh in &shards {
            work.push((s, e, sh.clone()));
        }
    }
    let jobs = work.into_iter().map(|(s, e, sh)| {
        let mut piece = q.with_range(s, e);
        if sh.is_some() {
            piece.shard_info = sh;
        }
        let key = if uncacheable.is_none() && s <= fresh_edge {
            fe.key(&piece, &tenant, s)
        } else {
            None
        };
        let (fe, headers) = (fe.clone(), headers.clone());
        async move { fe.piece(piece, key, &headers).await }
    });
    let parallel = fe.cfg.parallelism.max(1);
    let mut stream = futures::stream::iter(jobs).buffer_unordered(parallel);
    let mut answers = Vec::new();
    while let Some(r) = stream.next().await {
        match r {
            Ok(m) => answers.push(m),
            // The first error ends the query; the other pieces are dropped.
            Err(e) => return e.into_response(),
        }
    }
    let merged = Matrix::merge(answers);
    if let Some(t) = fe.cfg.slow_query
        && began.elapsed() >= t
    {
        tracing::info!(
            query = %q.query,
            start = q.start,
            end = q.end,
            step = q.step,
            tenant = %tenant,
            took_ms = began.elapsed().as_millis() as u64,
            "slow query"
        );
    }
    let mut resp = (
        [(header::CONTENT_TYPE, "application/json")],
        merged.to_json_string(),
    )
        .into_response();
    if !merged.warnings.is_empty() {
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// Every other path: forwarded as it came (instant queries and the label
/// and series APIs with retries), the answer passed back.
async fn proxy_handler(State(fe): State<Arc<Frontend>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let op = match path.as_str() {
        "/api/v1/query" => "query",
        "/api/v1/labels" => "label_names",
        "/api/v1/series" => "series",
        p if p.starts_with("/api/v1/label/") => "label_values",
        _ => "other",
    };
    fe.metrics
        .queries
        .get_or_create(&OpLabel { op: op.into() })
        .inc();
    let tries = match op {
        "query" => fe.cfg.instant_retries,
        "other" => 1,
        _ => fe.cfg.labels_retries,
    };
    let body = match read_body(body).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let pq = parts
        .uri
        .path_and_query()
        .map_or(path.clone(), |p| p.to_string());
    if matches!(op, "label_names" | "series" | "label_values") && fe.cfg.labels_split_interval > 0 {
        let form = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        let body_text = (parts.method == Method::POST && form)
            .then(|| String::from_utf8_lossy(&body).into_owned());
        if let Some(lr) = labels::LabelsRequest::parse(
            &path,
            parts.uri.query().unwrap_or(""),
            body_text.as_deref(),
        ) && (lr.end - lr.start) / fe.cfg.labels_split_interval < MAX_LABEL_PIECES
        {
            // Counted before the pieces are made: a range of millennia is one call, not millions.
            return fe.labels_split(lr, &parts.headers).await;
        }
    }
    let mut headers = parts.headers.clone();
    headers.remove(header::ACCEPT_ENCODING);
    match fe.send(parts.method, &pq, &headers, body, tries).await {
        // Streamed back as it arrives: a large answer is never held whole.
        Ok(resp) => {
            let status = resp.status();
            let resp_headers = resp.headers().clone();
            let stream = futures::stream::unfold(Some(resp), |resp| async move {
                let mut resp = resp?;
                match resp.chunk().await {
                    Ok(Some(c)) => Some((Ok::<Bytes, reqwest::Error>(c), Some(resp))),
                    Ok(None) => None,
                    Err(e) => Some((Err(e), None)),
                }
            });
            let mut r = Response::new(Body::from_stream(stream));
            *r.status_mut() = status;
            for (k, v) in &resp_headers {
                if !hop_by_hop(k) {
                    r.headers_mut().append(k.clone(), v.clone());
                }
            }
            r
        }
        Err(p) => p.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_that_look_ahead_are_not_cached() {
        assert!(query_looks_ahead("rate(x[5m] offset -1h)", i64::MAX));
        assert!(query_looks_ahead("x @ end()", 0));
        assert!(query_looks_ahead("x @ 2000", 1_000_000));
        assert!(!query_looks_ahead("x @ 1000 offset 5m", 1_000_000));
        assert!(!query_looks_ahead("sum(rate(x[5m]))", 0));
    }

    #[test]
    fn extents_coalesce_on_the_grid_per_store_set() {
        let e = |s, e, st| Extent {
            start: s,
            end: e,
            stores: st,
            answer: Matrix::default(),
        };
        let out = coalesce(
            vec![e(20, 30, 1), e(0, 10, 1), e(40, 50, 1), e(60, 70, 2)],
            10,
        );
        let spans: Vec<(i64, i64)> = out.iter().map(|x| (x.start, x.end)).collect();
        assert_eq!(spans, vec![(0, 50), (60, 70)]);
    }
}
