//! The querier's Prometheus HTTP API: `/api/v1/series`, `/api/v1/labels`,
//! `/api/v1/label/<name>/values` (GET and POST, `match[]`, `start`, `end`, and
//! Thanos' `dedup`, `partial_response`, `replicaLabels[]`) and
//! `/api/v1/stores`. Warnings go in the `warnings` field.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sluice_proto::thanos::SeriesRequest;

use crate::fanout::{EndpointSet, FanoutItem, ProxyRequest};
use crate::model::{Labels, MatchOp, Matcher};
use crate::policy::{PolicyKind, PolicyRegistry};
use crate::storeapi::{LabelsKind, LabelsQuery};

/// Settings of the query API.
#[derive(Clone, Debug, Default)]
pub struct QueryApiConfig {
    /// `--query.replica-label`.
    pub replica_labels: Vec<String>,
    /// `--query.partial-response`: the default when a request does not say.
    pub partial_response: bool,
    /// `--query.timeout`: longest a request may run; zero = no limit.
    pub timeout: std::time::Duration,
    /// `--query.max-concurrent`, shared with the PromQL API: series calls
    /// (which may run the relabel plugin) take a permit too.
    pub gate: Option<Arc<tokio::sync::Semaphore>>,
}

#[derive(Clone)]
pub(crate) struct QState {
    pub(crate) set: Arc<EndpointSet>,
    pub(crate) cfg: QueryApiConfig,
    policies: Option<Arc<PolicyRegistry>>,
}

/// Routes of the query API.
pub fn router(
    set: Arc<EndpointSet>,
    cfg: QueryApiConfig,
    policies: Option<Arc<PolicyRegistry>>,
) -> Router {
    let timeout = cfg.timeout;
    Router::new()
        .route("/api/v1/series", get(series).post(series))
        .route("/api/v1/labels", get(labels).post(labels))
        .route("/api/v1/label/{name}/values", get(label_values))
        .route("/api/v1/stores", get(stores))
        .route("/api/v1/status/tsdb", get(super::status::tsdb))
        .route("/api/v1/rules", get(super::fanned::rules))
        .route("/api/v1/alerts", get(super::fanned::alerts))
        .route("/api/v1/targets", get(super::fanned::targets))
        .route("/api/v1/metadata", get(super::fanned::metadata))
        .route(
            "/api/v1/query_exemplars",
            get(super::fanned::exemplars).post(super::fanned::exemplars),
        )
        .layer(axum::middleware::from_fn_with_state(timeout, with_timeout))
        .with_state(QState { set, cfg, policies })
}

/// Ends a request that runs past `--query.timeout` with Prometheus' timeout
/// error; dropping the handler cancels its fan-out.
async fn with_timeout(
    State(timeout): State<std::time::Duration>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if timeout.is_zero() {
        return next.run(req).await;
    }
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!(
                "query timed out after {} (--query.timeout)",
                crate::config::format_duration(timeout)
            ),
        )
        .into_response(),
    }
}

/// An API error in Prometheus' shape.
pub(crate) struct ApiError(pub StatusCode, pub &'static str, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"status": "error", "errorType": self.1, "error": self.2});
        (
            self.0,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response()
    }
}

/// A failure while running the request (`execution`, 422).
pub(crate) fn execution(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::UNPROCESSABLE_ENTITY, "execution", msg.into())
}

pub(crate) fn bad_data(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, "bad_data", msg.into())
}

pub(crate) fn success(data: serde_json::Value, warnings: Vec<String>) -> Response {
    let mut body = serde_json::json!({"status": "success", "data": data});
    if !warnings.is_empty() {
        body["warnings"] = serde_json::json!(warnings);
    }
    let mut resp = (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    if !warnings.is_empty() {
        // As Thanos: partial answers must not be cached by a query frontend.
        resp.headers_mut().insert(
            header::CACHE_CONTROL,
            axum::http::HeaderValue::from_static("no-store"),
        );
    }
    resp
}

/// Form parameters from the query string and, for POST, the body.
pub(crate) fn params(
    query: Option<String>,
    headers: &HeaderMap,
    body: &[u8],
) -> Vec<(String, String)> {
    let mut out = query
        .as_deref()
        .map(crate::model::form::pairs)
        .unwrap_or_default();
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if form && let Ok(b) = std::str::from_utf8(body) {
        out.extend(crate::model::form::pairs(b));
    }
    out
}

pub(crate) fn get_all<'a>(p: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    p.iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

pub(crate) fn get_one<'a>(p: &'a [(String, String)], key: &str) -> Option<&'a str> {
    p.iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Parses a Prometheus API time: Unix seconds (float) or RFC 3339.
pub fn parse_time(s: &str) -> Result<i64, String> {
    crate::model::time::parse_api_time(s)
}

pub(crate) fn parse_bool(s: &str) -> Result<bool, String> {
    match s {
        "true" | "1" | "True" | "TRUE" | "t" => Ok(true),
        "false" | "0" | "False" | "FALSE" | "f" => Ok(false),
        _ => Err(format!("invalid boolean {s:?}")),
    }
}

/// Parses a series selector (`match[]`) into its alternatives (`or` in braces).
pub fn parse_selector(s: &str) -> Result<Vec<Vec<Matcher>>, String> {
    let expr = crate::promql::limits::parse_checked(s)
        .map_err(|e| format!("invalid parameter \"match[]\": {e}"))?;
    let promql_parser::parser::Expr::VectorSelector(vs) = expr else {
        return Err(format!(
            "invalid parameter \"match[]\": {s:?} is not a series selector"
        ));
    };
    let conv = |ms: &[promql_parser::label::Matcher]| -> Result<Vec<Matcher>, String> {
        let mut out = Vec::new();
        for m in ms {
            let op = match &m.op {
                promql_parser::label::MatchOp::Equal => MatchOp::Eq,
                promql_parser::label::MatchOp::NotEqual => MatchOp::Neq,
                promql_parser::label::MatchOp::Re(_) => MatchOp::Re,
                promql_parser::label::MatchOp::NotRe(_) => MatchOp::Nre,
            };
            out.push(Matcher::new(op, m.name.clone(), m.value.clone()).map_err(|e| e.to_string())?);
        }
        if let Some(n) = &vs.name
            && !out.iter().any(|m| m.name == crate::model::METRIC_NAME)
        {
            out.push(
                Matcher::new(MatchOp::Eq, crate::model::METRIC_NAME, n.clone())
                    .map_err(|e| e.to_string())?,
            );
        }
        if out.iter().all(|m| m.matches("")) {
            return Err("match[] must contain at least one non-empty matcher".into());
        }
        Ok(out)
    };
    let mut alts = vec![conv(&vs.matchers.matchers)?];
    for o in &vs.matchers.or_matchers {
        alts.push(conv(o)?);
    }
    if vs.matchers.matchers.is_empty() && !vs.matchers.or_matchers.is_empty() {
        alts.remove(0);
    }
    Ok(alts)
}

/// The request's common parameters.
struct Common {
    selectors: Vec<Vec<Matcher>>,
    start: i64,
    end: i64,
    partial: bool,
    replica_labels: Vec<String>,
    tenant: Option<String>,
}

type TenantExt = Option<axum::Extension<super::tenancy::Tenant>>;

fn common(
    p: &[(String, String)],
    cfg: &QueryApiConfig,
    require_match: bool,
    tenant: TenantExt,
) -> Result<Common, ApiError> {
    let mut selectors = Vec::new();
    for m in get_all(p, "match[]") {
        selectors.extend(parse_selector(m).map_err(bad_data)?);
    }
    if require_match && selectors.is_empty() {
        return Err(bad_data("no match[] parameter provided"));
    }
    let tenant = tenant.map(|t| t.0);
    if let Some(t) = &tenant
        && t.matcher.is_some()
    {
        if selectors.is_empty() {
            selectors.push(vec![]);
        }
        selectors = selectors.into_iter().map(|s| t.scope(s)).collect();
    }
    let start = get_one(p, "start")
        .filter(|s| !s.is_empty())
        .map(parse_time)
        .transpose()
        .map_err(bad_data)?
        .unwrap_or(i64::MIN / 2);
    let end = get_one(p, "end")
        .filter(|s| !s.is_empty())
        .map(parse_time)
        .transpose()
        .map_err(bad_data)?
        .unwrap_or(i64::MAX / 2);
    if end < start {
        return Err(bad_data("end timestamp must not be before start time"));
    }
    let partial = get_one(p, "partial_response")
        .map(parse_bool)
        .transpose()
        .map_err(bad_data)?
        .unwrap_or(cfg.partial_response);
    let dedup = get_one(p, "dedup")
        .map(parse_bool)
        .transpose()
        .map_err(bad_data)?
        .unwrap_or(true);
    let mut replica_labels: Vec<String> = get_all(p, "replicaLabels[]")
        .iter()
        .flat_map(|s| s.split(','))
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if replica_labels.is_empty() {
        replica_labels = cfg.replica_labels.clone();
    }
    if !dedup {
        replica_labels.clear();
    }
    Ok(Common {
        selectors,
        start,
        end,
        partial,
        replica_labels,
        tenant: tenant.map(|t| t.id),
    })
}

async fn series(
    State(s): State<QState>,
    tenant: TenantExt,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let p = params(q, &headers, &body);
    let c = match common(&p, &s.cfg, true, tenant) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let limit = match parse_limit(&p) {
        Ok(l) => l,
        Err(e) => return e.into_response(),
    };
    let _permit = match &s.cfg.gate {
        Some(g) => match g.clone().acquire_owned().await {
            Ok(p) => Some(p),
            Err(_) => return execution("shutting down").into_response(),
        },
        None => None,
    };
    let mut all: BTreeMap<Labels, ()> = BTreeMap::new();
    let mut warnings = Vec::new();
    for ms in &c.selectors {
        let req = ProxyRequest {
            request: SeriesRequest {
                min_time: c.start,
                max_time: c.end,
                matchers: sluice_storeapi::matchers_to_pb(ms),
                skip_chunks: true,
                without_replica_labels: c.replica_labels.clone(),
                ..Default::default()
            },
            matchers: ms.clone(),
            partial_response: c.partial,
            tenant: c.tenant.clone(),
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        let set = s.set.clone();
        tokio::spawn(async move { crate::fanout::series(&set, req, tx).await });
        while let Some(item) = rx.recv().await {
            match item {
                Ok(FanoutItem::Series(run)) => {
                    for series in run.iter() {
                        let mut l = Labels::from_pairs(
                            series.labels().map(|(n, v)| (n.to_string(), v.to_string())),
                        );
                        l.remove_names(&c.replica_labels);
                        all.insert(l, ());
                    }
                }
                Ok(FanoutItem::Warning(w)) => warnings.push(w),
                Err(status) => {
                    return execution(status.message().to_string()).into_response();
                }
            }
        }
    }
    let mut sets: Vec<Labels> = all.into_keys().collect();
    if let Some(reg) = &s.policies {
        let snapshot = reg.snapshot();
        if snapshot.slots.contains_key("relabel") {
            // The plugin call is CPU work: off the async workers.
            let r = tokio::task::spawn_blocking(move || relabel(&snapshot, &sets)).await;
            let r = match r {
                Ok(r) => r,
                Err(e) => return execution(format!("relabel task: {e}")).into_response(),
            };
            match r {
                Ok((v, w)) => {
                    sets = v;
                    warnings.extend(w);
                }
                Err(e) => {
                    return execution(e).into_response();
                }
            }
        }
    }
    if let Some(limit) = limit
        && sets.len() > limit
    {
        sets.truncate(limit);
        warnings.push("results truncated due to limit".into());
    }
    let data: Vec<BTreeMap<String, String>> = sets
        .iter()
        .map(|l| {
            l.iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect()
        })
        .collect();
    success(serde_json::json!(data), warnings)
}

/// Runs the relabel slot over label sets; dropped sets disappear.
fn relabel(
    set: &crate::policy::PolicySet,
    sets: &[Labels],
) -> Result<(Vec<Labels>, Vec<String>), String> {
    let mut session = set
        .session("relabel", PolicyKind::Relabel)
        .map_err(|e| e.to_string())?;
    let input: Vec<Vec<(String, String)>> = sets
        .iter()
        .map(|l| {
            l.iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect()
        })
        .collect();
    let out = session.relabel(&input).map_err(|e| e.to_string())?;
    let mut v: Vec<Labels> = out
        .value
        .into_iter()
        .flatten()
        .map(Labels::from_pairs)
        .collect();
    v.sort();
    v.dedup();
    Ok((v, out.warning.into_iter().collect()))
}

async fn labels(
    State(s): State<QState>,
    tenant: TenantExt,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let p = params(q, &headers, &body);
    labels_answer(&s, &p, LabelsKind::Names, tenant).await
}

async fn label_values(
    State(s): State<QState>,
    tenant: TenantExt,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    let p = params(q, &headers, &[]);
    labels_answer(&s, &p, LabelsKind::Values(name), tenant).await
}

/// Prometheus' `limit` parameter: absent, empty or 0 means no limit.
fn parse_limit(p: &[(String, String)]) -> Result<Option<usize>, ApiError> {
    match get_one(p, "limit").filter(|l| !l.is_empty()) {
        None => Ok(None),
        Some(l) => match l.parse::<usize>() {
            Ok(0) => Ok(None),
            Ok(n) => Ok(Some(n)),
            Err(_) => Err(bad_data(format!("cannot parse \"{l}\" to a valid limit"))),
        },
    }
}

/// `/api/v1/labels` and `/api/v1/label/<name>/values`: one label query per
/// `match[]` (or one without matchers) through the fan-out, unioned, and
/// Prometheus' `limit` with its warning when the answer was cut.
async fn labels_answer(
    s: &QState,
    p: &[(String, String)],
    kind: LabelsKind,
    tenant: TenantExt,
) -> Response {
    let c = match common(p, &s.cfg, false, tenant) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let limit = match get_one(p, "limit").filter(|l| !l.is_empty()) {
        None => 0,
        Some(l) => match l.parse::<usize>() {
            Ok(n) => n,
            Err(_) => {
                return bad_data(format!("cannot parse \"{l}\" to a valid limit")).into_response();
            }
        },
    };
    let selectors = if c.selectors.is_empty() {
        vec![vec![]]
    } else {
        c.selectors.clone()
    };
    let mut all = std::collections::BTreeSet::new();
    let mut warnings = Vec::new();
    for ms in selectors {
        let q = LabelsQuery {
            kind: kind.clone(),
            block_matchers: vec![],
            start: c.start,
            end: c.end,
            matchers: ms,
            without_replica_labels: c.replica_labels.clone(),
            limit: 0,
            partial_response: c.partial,
            tenant: c.tenant.clone(),
        };
        match crate::fanout::labels(&s.set, &q).await {
            Ok(answer) => {
                all.extend(answer.values);
                warnings.extend(answer.warnings);
            }
            Err(status) => {
                return execution(status.message().to_string()).into_response();
            }
        }
    }
    let mut values: Vec<String> = all.into_iter().collect();
    if limit > 0 && values.len() > limit {
        values.truncate(limit);
        warnings.push("results truncated due to limit".into());
    }
    success(serde_json::json!(values), warnings)
}

async fn stores(State(s): State<QState>) -> Response {
    success(s.set.stores_json(), vec![])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time("1704069000").unwrap(), 1_704_069_000_000);
        assert_eq!(parse_time("1704069000.5").unwrap(), 1_704_069_000_500);
        assert_eq!(
            parse_time("2024-01-01T00:30:00Z").unwrap(),
            1_704_069_000_000
        );
        assert_eq!(
            parse_time("2024-01-01T01:30:00.25+01:00").unwrap(),
            1_704_069_000_250
        );
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn selectors() {
        let s = parse_selector(r#"up{job=~"api|db", instance!=""}"#).unwrap();
        assert_eq!(s.len(), 1);
        assert!(s[0].iter().any(|m| m.name == "__name__" && m.value == "up"));
        assert!(s[0].iter().any(|m| m.name == "job" && m.op == MatchOp::Re));
        assert!(parse_selector("rate(up[5m])").is_err());
        assert!(parse_selector(r#"{job=""}"#).is_err());
    }

    #[test]
    fn url_decoding() {
        use crate::model::form::decode;
        assert_eq!(decode("match%5B%5D"), "match[]");
        assert_eq!(decode("a+b%7Bc%3D%22d%22%7D"), "a b{c=\"d\"}");
        assert_eq!(decode("100%"), "100%");
    }
}
