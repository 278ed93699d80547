//! api owns the HTTP surfaces. For now: the operational endpoints every
//! Sluice process serves (`/-/healthy`, `/-/ready`, `/metrics`). It is the only
//! place errors become HTTP statuses.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

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
