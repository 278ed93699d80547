//! api owns the HTTP surfaces. For now: the operational endpoints every
//! Sluice process serves (`/-/healthy`, `/-/ready`, `/metrics`). It is the only
//! place errors become HTTP statuses.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

pub mod query;
pub mod ui;

use crate::metrics::{Metrics, OPENMETRICS_CONTENT_TYPE};

/// Answers whether the process is ready to serve queries.
pub type ReadyFn = Arc<dyn Fn() -> bool + Send + Sync>;

#[derive(Clone)]
struct OpsState {
    metrics: Metrics,
    ready: ReadyFn,
}

/// Routes for `/-/healthy`, `/-/ready` and `/metrics`.
pub fn ops_router(metrics: Metrics, ready: ReadyFn) -> Router {
    Router::new()
        .route("/-/healthy", get(|| async { "OK\n" }))
        .route("/-/ready", get(ready_handler))
        .route("/metrics", get(metrics_handler))
        .with_state(OpsState { metrics, ready })
}

async fn ready_handler(State(s): State<OpsState>) -> impl IntoResponse {
    if (s.ready)() {
        (StatusCode::OK, "OK\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: initial block sync in progress\n",
        )
    }
}

async fn metrics_handler(State(s): State<OpsState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)],
        s.metrics.encode(),
    )
}

/// Largest module accepted by `PUT /api/v1/policies/<slot>`.
const MAX_MODULE_BYTES: usize = 64 << 20;

#[derive(Clone)]
struct AdminState {
    registry: Arc<crate::policy::PolicyRegistry>,
    token: Arc<String>,
}

/// The policy admin API: `GET /api/v1/policies` and
/// `PUT /api/v1/policies/<slot>?sha256=<hex>[&kind=<kind>]` with the module as
/// the body. Every request needs `Authorization: Bearer <token>`. The caller
/// mounts it only when a token is configured, so it is off by default.
pub fn policy_admin_router(registry: Arc<crate::policy::PolicyRegistry>, token: String) -> Router {
    use axum::extract::DefaultBodyLimit;
    use axum::routing::put;
    Router::new()
        .route("/api/v1/policies", get(policies_get))
        .route("/api/v1/policies/{slot}", put(policies_put))
        .layer(DefaultBodyLimit::max(MAX_MODULE_BYTES))
        .with_state(AdminState {
            registry,
            token: Arc::new(token),
        })
}

/// Reads a bearer token file (trailing whitespace ignored); empty is an error.
pub fn read_token_file(path: &std::path::Path) -> Result<String, String> {
    let t = std::fs::read_to_string(path)
        .map_err(|e| format!("reading token file {}: {e}", path.display()))?;
    let t = t.trim().to_string();
    if t.is_empty() {
        return Err(format!("token file {} is empty", path.display()));
    }
    Ok(t)
}

fn api_error(status: StatusCode, kind: &str, msg: String) -> axum::response::Response {
    (
        status,
        axum::Json(serde_json::json!({"status": "error", "errorType": kind, "error": msg})),
    )
        .into_response()
}

/// Constant-time comparison of the presented bearer token.
fn authorized(headers: &axum::http::HeaderMap, token: &str) -> bool {
    let Some(presented) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let (a, b) = (presented.as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn policies_get(
    State(s): State<AdminState>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    if !authorized(&headers, &s.token) {
        return api_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong bearer token".into(),
        );
    }
    axum::Json(serde_json::json!({"status": "success", "data": s.registry.status()}))
        .into_response()
}

#[derive(serde::Deserialize)]
struct PutParams {
    sha256: Option<String>,
    kind: Option<crate::policy::PolicyKind>,
}

async fn policies_put(
    State(s): State<AdminState>,
    axum::extract::Path(slot): axum::extract::Path<String>,
    axum::extract::Query(params): axum::extract::Query<PutParams>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    if !authorized(&headers, &s.token) {
        return api_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong bearer token".into(),
        );
    }
    let Some(sha) = params.sha256 else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "bad_data",
            "the sha256 query parameter (hex digest of the module) is required".into(),
        );
    };
    let registry = s.registry.clone();
    let slot2 = slot.clone();
    let r = tokio::task::spawn_blocking(move || {
        registry.put_module(&slot2, body.to_vec(), &sha, params.kind)
    })
    .await;
    match r {
        Ok(Ok(set)) => {
            let p = set.slots.get(&slot).map(|l| l.plugin.clone());
            axum::Json(serde_json::json!({"status": "success", "data": {
                "generation": set.generation,
                "slot": slot,
                "name": p.as_ref().map(|p| p.info.name.clone()),
                "version": p.as_ref().map(|p| p.info.version.clone()),
                "sha256": p.as_ref().map(|p| p.sha256.clone()),
            }}))
            .into_response()
        }
        Ok(Err(errors)) => api_error(StatusCode::BAD_REQUEST, "bad_data", errors.join("; ")),
        Err(e) => api_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}
