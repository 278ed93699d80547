//! `/api/v1/query` and `/api/v1/query_range` in Prometheus' JSON shape,
//! with Thanos' `dedup`, `partial_response`, `max_source_resolution` and
//! `replicaLabels[]`, plus the status endpoints Grafana's data-source check
//! calls.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::query::{ApiError, bad_data, get_all, get_one, params, parse_bool, parse_time, success};
use crate::model::Labels;
use crate::promql::{Cancel, Engine, EngineOpts, PromqlError, QueryResult, Value, format_value};
use crate::querier::Querier;
use sluice_query::{QuerierStorage, ReadOptions};

/// Largest form body of a query request: far above any real query, and the
/// most a client can make the querier buffer (axum's default is 2 MiB).
pub const MAX_BODY_BYTES: usize = 16 << 20;

/// Most points per series a range query may ask for (Prometheus' limit).
const MAX_POINTS: i64 = 11_000;

/// Settings of the PromQL API.
#[derive(Debug, Clone)]
pub struct PromqlApiConfig {
    /// `--query.partial-response` default.
    pub partial_response: bool,
    /// `--query.timeout`.
    pub timeout: Duration,
    /// `--query.max-concurrent`.
    pub max_concurrent: usize,
    /// `--query.auto-downsampling`: a request without max_source_resolution
    /// asks for `auto`.
    pub auto_downsampling: bool,
    /// Engine defaults (`--query.lookback-delta`, `--query.max-samples`).
    pub engine: EngineOpts,
    /// The `--query.max-concurrent` gate when other APIs share it; else one
    /// of `max_concurrent` permits is made.
    pub gate: Option<Arc<tokio::sync::Semaphore>>,
}

impl Default for PromqlApiConfig {
    fn default() -> Self {
        PromqlApiConfig {
            partial_response: true,
            timeout: Duration::from_secs(120),
            max_concurrent: 20,
            auto_downsampling: false,
            engine: EngineOpts::default(),
            gate: None,
        }
    }
}

#[derive(Clone)]
struct PState {
    querier: Arc<Querier>,
    cfg: Arc<PromqlApiConfig>,
    gate: Arc<tokio::sync::Semaphore>,
}

/// Routes of the PromQL API.
pub fn router(querier: Arc<Querier>, cfg: PromqlApiConfig) -> Router {
    let gate = cfg
        .gate
        .clone()
        .unwrap_or_else(|| Arc::new(tokio::sync::Semaphore::new(cfg.max_concurrent.max(1))));
    Router::new()
        .route("/api/v1/query", get(query).post(query))
        .route("/api/v1/query_range", get(query_range).post(query_range))
        .route("/api/v1/status/buildinfo", get(buildinfo))
        .route(
            "/api/v1/format_query",
            get(super::status::format_query).post(super::status::format_query),
        )
        .route(
            "/api/v1/parse_query",
            get(super::status::parse_query).post(super::status::parse_query),
        )
        .route("/api/v1/status/flags", get(super::status::flags))
        .route(
            "/api/v1/status/runtimeinfo",
            get(super::status::runtimeinfo),
        )
        .route("/api/v1/status/config", get(super::status::config))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(PState {
            querier,
            cfg: Arc::new(cfg),
            gate,
        })
}

async fn buildinfo() -> Response {
    success(
        serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "revision": "",
            "branch": "",
            "buildUser": "",
            "buildDate": "",
            "goVersion": format!("sluice (rust) {}", env!("CARGO_PKG_VERSION")),
        }),
        vec![],
    )
}

/// Parses a Prometheus API duration: float seconds or a duration string.
fn parse_duration_param(name: &str, s: &str) -> Result<i64, ApiError> {
    if let Ok(f) = s.parse::<f64>() {
        let max = crate::promql::limits::MAX_TIME_MS as f64;
        if !f.is_finite() || f * 1000.0 > max || f * 1000.0 < -max {
            return Err(bad_data(format!(
                "invalid parameter \"{name}\": cannot parse {s:?} to a valid duration"
            )));
        }
        return Ok((f * 1000.0).round() as i64);
    }
    crate::config::parse_duration(s)
        .map(|d| {
            d.as_millis()
                .min(crate::promql::limits::MAX_TIME_MS as u128) as i64
        })
        .map_err(|_| {
            bad_data(format!(
                "invalid parameter \"{name}\": cannot parse {s:?} to a valid duration"
            ))
        })
}

/// What a query request asks for besides the expression and times.
struct Request {
    query: String,
    read: ReadOptions,
    opts: EngineOpts,
    timeout: Duration,
    stats: bool,
}

impl Request {
    /// Forwards the tenant and scopes every selection to it when enforced.
    fn for_tenant(mut self, tenant: Option<super::tenancy::Tenant>) -> Self {
        if let Some(t) = tenant {
            self.read.tenant = Some(t.id);
            self.read.tenant_matcher = t.matcher;
        }
        self
    }
}

fn request(p: &[(String, String)], s: &PState, step: i64) -> Result<Request, ApiError> {
    let query = get_one(p, "query").unwrap_or("").to_string();
    if query.is_empty() {
        return Err(bad_data(
            "invalid parameter \"query\": query must not be empty",
        ));
    }
    let dedup = get_one(p, "dedup")
        .map(parse_bool)
        .transpose()
        .map_err(bad_data)?
        .unwrap_or(true);
    let partial = get_one(p, "partial_response")
        .map(parse_bool)
        .transpose()
        .map_err(bad_data)?
        .unwrap_or(s.cfg.partial_response);
    let replica_labels: Vec<String> = get_all(p, "replicaLabels[]")
        .iter()
        .flat_map(|s| s.split(','))
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let max_source_resolution = match get_one(p, "max_source_resolution").filter(|v| !v.is_empty())
    {
        None if s.cfg.auto_downsampling => (step / 5).max(0),
        None => 0,
        Some("auto") => (step / 5).max(0),
        Some(v) => {
            let ms = parse_duration_param("max_source_resolution", v)?;
            if ms < 0 {
                return Err(bad_data(
                    "negative max_source_resolution is not accepted. Try a positive integer",
                ));
            }
            ms
        }
    };
    let mut opts = s.cfg.engine.clone();
    // Thanos' dynamic lookback: with downsampled data allowed, an instant
    // selector looks back at least one window of the coarsest resolution.
    for level in [300_000, 3_600_000] {
        if max_source_resolution >= level {
            opts.lookback_delta = opts.lookback_delta.max(level);
        }
    }
    if let Some(lb) = get_one(p, "lookback_delta").filter(|v| !v.is_empty()) {
        opts.lookback_delta = parse_duration_param("lookback_delta", lb)?;
    }
    let mut timeout = s.cfg.timeout;
    if let Some(t) = get_one(p, "timeout").filter(|v| !v.is_empty()) {
        let ms = parse_duration_param("timeout", t)?;
        let t = Duration::from_millis(ms.max(0) as u64);
        if timeout.is_zero() || t < timeout {
            timeout = t;
        }
    }
    Ok(Request {
        query,
        read: ReadOptions {
            dedup,
            dedup_slot: get_one(p, "dedup_plugin")
                .filter(|v| !v.is_empty())
                .map(str::to_string),
            replica_labels: (!replica_labels.is_empty()).then_some(replica_labels),
            partial_response: Some(partial),
            max_source_resolution,
            tenant: None,
            tenant_matcher: None,
            shard: match get_one(p, "shard_info").filter(|v| !v.is_empty()) {
                None => None,
                Some(v) => Some(parse_shard_info(v)?),
            },
        },
        opts,
        timeout,
        stats: get_one(p, "stats").is_some_and(|v| !v.is_empty()),
    })
}

/// Thanos' `shard_info` parameter: `{"shard_index":0,"total_shards":3,"by":true,"labels":["job"]}`.
fn parse_shard_info(v: &str) -> Result<sluice_proto::thanos::ShardInfo, ApiError> {
    let bad = |why: &str| bad_data(format!("invalid parameter \"shard_info\": {why}"));
    let j: serde_json::Value = serde_json::from_str(v).map_err(|e| bad(&e.to_string()))?;
    let int = |k: &str| j.get(k).and_then(serde_json::Value::as_i64).unwrap_or(0);
    let info = sluice_proto::thanos::ShardInfo {
        shard_index: int("shard_index"),
        total_shards: int("total_shards"),
        by: j
            .get("by")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false),
        labels: j
            .get("labels")
            .and_then(serde_json::Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|l| l.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
    };
    if info.total_shards < 0
        || info.shard_index < 0
        || (info.total_shards > 0 && info.shard_index >= info.total_shards)
    {
        return Err(bad("shard_index must be below total_shards"));
    }
    Ok(info)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

async fn query(
    State(s): State<PState>,
    tenant: Option<axum::Extension<super::tenancy::Tenant>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let p = params(q, &headers, &body);
    let t = match get_one(&p, "time").filter(|v| !v.is_empty()) {
        Some(v) => match parse_time(v) {
            Ok(t) => t,
            Err(e) => return bad_data(format!("invalid parameter \"time\": {e}")).into_response(),
        },
        None => now_ms(),
    };
    let req = match request(&p, &s, 0) {
        Ok(r) => r.for_tenant(tenant.map(|t| t.0)),
        Err(e) => return e.into_response(),
    };
    run(s, req, t, t, 0).await
}

async fn query_range(
    State(s): State<PState>,
    tenant: Option<axum::Extension<super::tenancy::Tenant>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let p = params(q, &headers, &body);
    let time = |name: &str| -> Result<i64, ApiError> {
        let v = get_one(&p, name).filter(|v| !v.is_empty()).ok_or_else(|| {
            bad_data(format!(
                "invalid parameter \"{name}\": cannot parse \"\" to a valid timestamp"
            ))
        })?;
        parse_time(v).map_err(|e| bad_data(format!("invalid parameter \"{name}\": {e}")))
    };
    let (start, end) = match (time("start"), time("end")) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return e.into_response(),
    };
    if end < start {
        return bad_data("invalid parameter \"end\": end timestamp must not be before start time")
            .into_response();
    }
    let step = match get_one(&p, "step").filter(|v| !v.is_empty()) {
        Some(v) => match parse_duration_param("step", v) {
            Ok(s) => s,
            Err(e) => return e.into_response(),
        },
        None => {
            return bad_data("invalid parameter \"step\": cannot parse \"\" to a valid duration")
                .into_response();
        }
    };
    if step <= 0 {
        return bad_data("invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer").into_response();
    }
    if (i128::from(end) - i128::from(start)) / i128::from(step) > i128::from(MAX_POINTS) {
        return bad_data("exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)").into_response();
    }
    let req = match request(&p, &s, step) {
        Ok(r) => r.for_tenant(tenant.map(|t| t.0)),
        Err(e) => return e.into_response(),
    };
    run(s, req, start, end, step).await
}

/// Raises the query's cancel flag when the request goes away (the client
/// hung up and the handler's future was dropped), so evaluation running on
/// a blocking thread stops too.
struct CancelOnDrop(Cancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.raise();
    }
}

async fn run(s: PState, mut req: Request, start: i64, end: i64, step: i64) -> Response {
    let began = Instant::now();
    let deadline = (!req.timeout.is_zero()).then(|| tokio::time::Instant::now() + req.timeout);
    req.opts.cancel = Cancel::new(deadline.map(|d| d.into_std()));
    let _cancel_on_drop = CancelOnDrop(req.opts.cancel.clone());
    let work = async {
        let _permit = s
            .gate
            .acquire()
            .await
            .map_err(|_| PromqlError::Canceled("query queue".into()))?;
        let queued = began.elapsed();
        let storage = QuerierStorage {
            querier: s.querier.clone(),
            opts: req.read.clone(),
        };
        let engine = Engine::new(req.opts.clone());
        let r = if step == 0 {
            engine.instant(&storage, &req.query, start).await
        } else {
            engine.range(&storage, &req.query, start, end, step).await
        };
        r.map(|r| (r, queued))
    };
    let result = match deadline {
        Some(d) => match tokio::time::timeout_at(d, work).await {
            Ok(r) => r,
            Err(_) => Err(PromqlError::Timeout("query execution".into())),
        },
        None => work.await,
    };
    match result {
        Ok((r, queued)) => render(&r, req.stats.then_some((began.elapsed(), queued))),
        Err(e) => error_response(&e),
    }
}

fn error_response(e: &PromqlError) -> Response {
    let status = match e {
        PromqlError::BadData(_) => StatusCode::BAD_REQUEST,
        PromqlError::Execution(_) => StatusCode::UNPROCESSABLE_ENTITY,
        PromqlError::Timeout(_) => StatusCode::SERVICE_UNAVAILABLE,
        PromqlError::Canceled(_) => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
    };
    ApiError(status, e.error_type(), e.to_string()).into_response()
}

/// Seconds with millisecond precision, as Prometheus prints them.
fn write_time(out: &mut String, t: i64) {
    let (sec, ms) = (t.div_euclid(1000), t.rem_euclid(1000));
    if ms == 0 {
        let _ = write!(out, "{sec}");
    } else if sec < 0 && ms != 0 {
        // -0.5 s is written as -0.5, not -1.500.
        let neg = t.unsigned_abs();
        let _ = write!(
            out,
            "-{}.{}",
            neg / 1000,
            format!("{:03}", neg % 1000).trim_end_matches('0')
        );
    } else {
        let _ = write!(out, "{sec}.{}", format!("{ms:03}").trim_end_matches('0'));
    }
}

fn write_str(out: &mut String, s: &str) {
    // serde_json escapes exactly as JSON requires.
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()));
}

fn write_labels(out: &mut String, l: &Labels) {
    out.push('{');
    for (i, l) in l.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, &l.name);
        out.push(':');
        write_str(out, &l.value);
    }
    out.push('}');
}

fn write_point(out: &mut String, t: i64, v: &str) {
    out.push('[');
    write_time(out, t);
    out.push_str(",\"");
    out.push_str(v);
    out.push_str("\"]");
}

/// The `data` object of a query answer.
pub fn render_data(v: &Value) -> String {
    let mut out = String::with_capacity(256);
    let _ = write!(out, "{{\"resultType\":\"{}\",\"result\":", v.type_name());
    match v {
        Value::Scalar { t, v } => write_point(&mut out, *t, &format_value(*v)),
        Value::String { t, v } => {
            out.push('[');
            write_time(&mut out, *t);
            out.push(',');
            write_str(&mut out, v);
            out.push(']');
        }
        Value::Vector(samples) => {
            out.push('[');
            for (i, s) in samples.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                write_labels(&mut out, &s.labels);
                out.push_str(",\"value\":");
                write_point(&mut out, s.t, &format_value(s.v));
                out.push('}');
            }
            out.push(']');
        }
        Value::Matrix(series) => {
            out.push('[');
            for (i, s) in series.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                write_labels(&mut out, &s.labels);
                out.push_str(",\"values\":[");
                for (j, &(t, v)) in s.points.iter().enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    write_point(&mut out, t, &format_value(v));
                }
                out.push_str("]}");
            }
            out.push(']');
        }
    }
    out.push('}');
    out
}

fn render(r: &QueryResult, stats: Option<(Duration, Duration)>) -> Response {
    let mut body = String::from("{\"status\":\"success\",\"data\":");
    let data = render_data(&r.value);
    body.push_str(&data[..data.len() - 1]);
    if let Some((total, queued)) = stats {
        let _ = write!(
            body,
            ",\"stats\":{{\"timings\":{{\"evalTotalTime\":{},\"resultSortTime\":0,\"queryPreparationTime\":0,\"innerEvalTime\":{},\"execQueueTime\":{},\"execTotalTime\":{}}},\"samples\":{{\"totalQueryableSamples\":{},\"peakSamples\":{}}}}}",
            (total - queued).as_secs_f64(),
            (total - queued).as_secs_f64(),
            queued.as_secs_f64(),
            total.as_secs_f64(),
            r.stats.total_queryable_samples,
            r.stats.peak_samples
        );
    }
    body.push('}');
    for (key, list) in [("warnings", &r.warnings), ("infos", &r.infos)] {
        if !list.is_empty() {
            let _ = write!(
                body,
                ",\"{key}\":{}",
                serde_json::to_string(list).unwrap_or_else(|_| "[]".into())
            );
        }
    }
    body.push('}');
    let mut resp = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    if !r.warnings.is_empty() {
        resp.headers_mut().insert(
            header::CACHE_CONTROL,
            axum::http::HeaderValue::from_static("no-store"),
        );
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_like_prometheus() {
        let mut s = String::new();
        for t in [1_435_781_451_781, 1_000, 1_500, 0, -500, -1_250] {
            write_time(&mut s, t);
            s.push(' ');
        }
        assert_eq!(s, "1435781451.781 1 1.5 0 -0.5 -1.25 ");
    }

    #[test]
    fn data_shapes() {
        let v = Value::Vector(vec![crate::promql::Sample {
            labels: Labels::from_pairs([("job", "a\"b")]),
            t: 1_000,
            v: f64::INFINITY,
        }]);
        assert_eq!(
            render_data(&v),
            r#"{"resultType":"vector","result":[{"metric":{"job":"a\"b"},"value":[1,"+Inf"]}]}"#
        );
        assert_eq!(
            render_data(&Value::Scalar { t: 2_500, v: 0.1 }),
            r#"{"resultType":"scalar","result":[2.5,"0.1"]}"#
        );
    }
}
