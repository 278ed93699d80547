//! The querier's APIs answered by the Rules, Targets, Metadata and Exemplars services of its endpoints (sidecars,
//! rulers): `/api/v1/rules`, `/api/v1/alerts`, `/api/v1/targets`, `/api/v1/metadata` and
//! `/api/v1/query_exemplars`, in Prometheus' JSON shapes with Thanos' `partial_response` and replica
//! deduplication.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use sluice_proto::thanos::{
    ExemplarsRequest, MetricMetadataRequest, PartialResponseStrategy, RulesRequest, TargetsRequest,
    rules_request, targets_request,
};

use super::query::{
    ApiError, QState, bad_data, execution, get_all, get_one, params, parse_bool, parse_time,
    success,
};
use crate::fanout::apis;
use crate::storeapi::promjson;

fn strategy(p: &[(String, String)], default: bool) -> Result<i32, ApiError> {
    let partial = match get_one(p, "partial_response") {
        Some(s) if !s.is_empty() => {
            parse_bool(s).map_err(|e| bad_data(format!("partial_response: {e}")))?
        }
        _ => default,
    };
    Ok(if partial {
        PartialResponseStrategy::Warn as i32
    } else {
        PartialResponseStrategy::Abort as i32
    })
}

fn failed(s: tonic::Status) -> Response {
    execution(s.message().to_string()).into_response()
}

/// `GET /api/v1/rules?type=alert|record&rule_name[]=&rule_group[]=&file[]=&match[]=`.
pub(crate) async fn rules(
    State(s): State<QState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = params(q, &headers, &body);
    let t = match get_one(&p, "type").unwrap_or_default() {
        "" => rules_request::Type::All,
        "alert" => rules_request::Type::Alert,
        "record" => rules_request::Type::Record,
        other => {
            return bad_data(format!(
                "invalid rule type {other:?}: want \"alert\" or \"record\""
            ))
            .into_response();
        }
    };
    let strategy = match strategy(&p, s.cfg.partial_response) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let owned = |k: &str| {
        get_all(&p, k)
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let req = RulesRequest {
        r#type: t as i32,
        partial_response_strategy: strategy,
        matcher_string: owned("match[]"),
        rule_name: owned("rule_name[]"),
        rule_group: owned("rule_group[]"),
        file: owned("file[]"),
    };
    match apis::rules(&s.set, req, &s.cfg.replica_labels).await {
        Ok(a) => success(
            serde_json::json!({ "groups": a.value.iter().map(promjson::rule_group_json).collect::<Vec<_>>() }),
            a.warnings,
        ),
        Err(e) => failed(e),
    }
}

/// `GET /api/v1/alerts`: the alerts of every alerting rule.
pub(crate) async fn alerts(
    State(s): State<QState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = params(q, &headers, &body);
    let strategy = match strategy(&p, s.cfg.partial_response) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let req = RulesRequest {
        r#type: rules_request::Type::Alert as i32,
        partial_response_strategy: strategy,
        ..Default::default()
    };
    match apis::rules(&s.set, req, &s.cfg.replica_labels).await {
        Ok(a) => success(promjson::alerts_json(&a.value), a.warnings),
        Err(e) => failed(e),
    }
}

/// `GET /api/v1/targets?state=active|dropped|any`.
pub(crate) async fn targets(
    State(s): State<QState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = params(q, &headers, &body);
    let state = match get_one(&p, "state").unwrap_or_default() {
        "" | "any" => targets_request::State::Any,
        "active" => targets_request::State::Active,
        "dropped" => targets_request::State::Dropped,
        other => {
            return bad_data(format!(
                "invalid state {other:?}: want active, dropped or any"
            ))
            .into_response();
        }
    };
    let strategy = match strategy(&p, s.cfg.partial_response) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let req = TargetsRequest {
        state: state as i32,
        partial_response_strategy: strategy,
    };
    match apis::targets(&s.set, req, &s.cfg.replica_labels).await {
        Ok(a) => success(promjson::targets_json(&a.value), a.warnings),
        Err(e) => failed(e),
    }
}

/// `GET /api/v1/metadata?metric=&limit=`.
pub(crate) async fn metadata(
    State(s): State<QState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = params(q, &headers, &body);
    let limit = match get_one(&p, "limit").filter(|l| !l.is_empty()) {
        None => -1,
        Some(l) => match l.parse::<i32>() {
            Ok(v) => v,
            Err(_) => return bad_data(format!("invalid limit {l:?}")).into_response(),
        },
    };
    let strategy = match strategy(&p, s.cfg.partial_response) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let req = MetricMetadataRequest {
        metric: get_one(&p, "metric").unwrap_or_default().to_owned(),
        limit,
        partial_response_strategy: strategy,
    };
    match apis::metadata(&s.set, req).await {
        Ok(a) => success(promjson::metadata_json(&a.value), a.warnings),
        Err(e) => failed(e),
    }
}

/// `GET|POST /api/v1/query_exemplars?query=&start=&end=`.
pub(crate) async fn exemplars(
    State(s): State<QState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = params(q, &headers, &body);
    let query = get_one(&p, "query").unwrap_or_default();
    if query.is_empty() {
        return bad_data("invalid parameter \"query\": empty query").into_response();
    }
    // Checked against the PromQL limits before and after parsing: a hostile query cannot overflow the stack.
    if let Err(e) = crate::promql::limits::parse_checked(query) {
        return bad_data(format!("invalid parameter \"query\": {e}")).into_response();
    }
    let time = |k: &str, default: i64| -> Result<i64, ApiError> {
        match get_one(&p, k).filter(|v| !v.is_empty()) {
            None => Ok(default),
            Some(v) => {
                parse_time(v).map_err(|e| bad_data(format!("invalid parameter \"{k}\": {e}")))
            }
        }
    };
    let max = crate::promql::limits::MAX_TIME_MS;
    let (start, end) = match (time("start", -max), time("end", max)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return e.into_response(),
    };
    if end < start {
        return bad_data("invalid parameter \"end\": end timestamp must not be before start time")
            .into_response();
    }
    let strategy = match strategy(&p, s.cfg.partial_response) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let req = ExemplarsRequest {
        query: query.to_owned(),
        start,
        end,
        partial_response_strategy: strategy,
    };
    match apis::exemplars(&s.set, req, &s.cfg.replica_labels).await {
        Ok(a) => success(promjson::exemplars_json(&a.value), a.warnings),
        Err(e) => failed(e),
    }
}
