//! api owns the HTTP surfaces: the operational endpoints every Sluice process
//! serves (`/-/healthy`, `/-/ready`, `/metrics`), the web-config's basic auth
//! and headers, and the policy admin API with its bearer-token or
//! client-certificate authorization. It is the only place errors become HTTP
//! statuses.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

mod fanned;
pub mod promql;
pub mod query;
pub mod status;
pub mod tenancy;
pub mod ui;

use crate::metrics::{Metrics, OPENMETRICS_CONTENT_TYPE};

/// Answers whether the process is ready to serve queries, and if not, why.
pub type ReadyFn = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

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
    match (s.ready)() {
        Ok(()) => (StatusCode::OK, "OK\n".to_string()),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
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

/// Who may use the policy admin API: a bearer token, client certificates
/// with one of `identities` (SAN URI, SAN DNS or CN; verified chains only),
/// or both. With neither the API is not mounted.
#[derive(Clone, Default)]
pub struct AdminAuth {
    pub token: Option<String>,
    pub identities: Vec<String>,
}

impl std::fmt::Debug for AdminAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminAuth")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("identities", &self.identities)
            .finish()
    }
}

impl AdminAuth {
    /// Whether any way in is configured.
    pub fn enabled(&self) -> bool {
        self.token.is_some() || !self.identities.is_empty()
    }

    /// Who the request is, when authorized: `bearer token` or the
    /// certificate's names.
    fn authorize(
        &self,
        headers: &axum::http::HeaderMap,
        peer: Option<&crate::tls::PeerInfo>,
    ) -> Option<String> {
        if let Some(t) = &self.token
            && bearer_matches(headers, t)
        {
            return Some("bearer token".into());
        }
        let id = peer?.identity.as_ref()?;
        (id.verified && self.identities.iter().any(|a| id.has_name(a)))
            .then(|| format!("client certificate ({})", id.describe()))
    }
}

#[derive(Clone)]
struct AdminState {
    registry: Arc<crate::policy::PolicyRegistry>,
}

/// The policy admin API: `GET /api/v1/policies` and
/// `PUT /api/v1/policies/<slot>?sha256=<hex>[&kind=<kind>]` with the module as
/// the body. Every request needs `Authorization: Bearer <token>` or a verified
/// client certificate named in `auth.identities`. The caller mounts it only
/// when `auth.enabled()`, so it is off by default.
pub fn policy_admin_router(
    registry: Arc<crate::policy::PolicyRegistry>,
    auth: AdminAuth,
) -> Router {
    use axum::extract::DefaultBodyLimit;
    use axum::routing::put;
    let auth = Arc::new(auth);
    Router::new()
        .route("/api/v1/policies", get(policies_get))
        .route("/api/v1/policies/{slot}", put(policies_put))
        .layer(DefaultBodyLimit::max(MAX_MODULE_BYTES))
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let auth = auth.clone();
                async move {
                    let peer = req
                        .extensions()
                        .get::<axum::extract::ConnectInfo<HttpPeer>>()
                        .map(|c| &c.0.0);
                    match auth.authorize(req.headers(), peer) {
                        Some(who) => {
                            if req.method() != axum::http::Method::GET {
                                tracing::info!(path = %req.uri().path(), by = %who, "policy admin request");
                            }
                            next.run(req).await
                        }
                        None => {
                            let presented = peer
                                .and_then(|p| p.identity.as_ref())
                                .map(|i| {
                                    if i.verified {
                                        format!("client certificate ({}) not on the allow list", i.describe())
                                    } else {
                                        "an unverified client certificate".into()
                                    }
                                })
                                .unwrap_or_else(|| "no client certificate".into());
                            tracing::warn!(path = %req.uri().path(), peer = ?peer.map(|p| p.remote), presented = %presented, "policy admin request refused");
                            api_error(
                                StatusCode::UNAUTHORIZED,
                                "unauthorized",
                                format!("missing or wrong bearer token, and {presented}"),
                            )
                        }
                    }
                }
            },
        ))
        .with_state(AdminState { registry })
}

/// Applies `--http.config`'s response headers and basic auth to a router.
pub fn with_web_config(router: Router, web: &crate::tls::WebConfig) -> Router {
    let mut router = router;
    if let Some(auth) = web.basic_auth.clone() {
        router = router.layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let auth = auth.clone();
                async move {
                    let header = req
                        .headers()
                        .get(header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    // bcrypt takes tens of milliseconds: off the reactor.
                    let ok =
                        tokio::task::spawn_blocking(move || auth.check_header(header.as_deref()))
                            .await
                            .unwrap_or(false);
                    if ok {
                        next.run(req).await
                    } else {
                        (
                            StatusCode::UNAUTHORIZED,
                            [(header::WWW_AUTHENTICATE, "Basic")],
                            "Unauthorized\n",
                        )
                            .into_response()
                    }
                }
            },
        ));
    }
    if !web.http.headers.is_empty() {
        let headers: Vec<(axum::http::HeaderName, axum::http::HeaderValue)> = web
            .http
            .headers
            .iter()
            .filter_map(|(k, v)| {
                match (
                    axum::http::HeaderName::try_from(k.as_str()),
                    axum::http::HeaderValue::try_from(v.as_str()),
                ) {
                    (Ok(k), Ok(v)) => Some((k, v)),
                    _ => {
                        tracing::warn!(header = %k, "--http.config: invalid response header; ignored");
                        None
                    }
                }
            })
            .collect();
        let headers = Arc::new(headers);
        router = router.layer(axum::middleware::map_response(
            move |mut resp: axum::response::Response| {
                let headers = headers.clone();
                async move {
                    for (k, v) in headers.iter() {
                        resp.headers_mut().insert(k.clone(), v.clone());
                    }
                    resp
                }
            },
        ));
    }
    router
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
fn bearer_matches(headers: &axum::http::HeaderMap, token: &str) -> bool {
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

async fn policies_get(State(s): State<AdminState>) -> axum::response::Response {
    axum::Json(serde_json::json!({"status": "success", "data": s.registry.status()}))
        .into_response()
}

#[derive(serde::Deserialize)]
struct PutParams {
    sha256: Option<String>,
    kind: Option<crate::policy::PolicyKind>,
    /// Capability grants for the uploaded module, as JSON in the `grants:`
    /// shape of policies.yml; without it the module gets none.
    grants: Option<String>,
}

async fn policies_put(
    State(s): State<AdminState>,
    axum::extract::Path(slot): axum::extract::Path<String>,
    axum::extract::Query(params): axum::extract::Query<PutParams>,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let Some(sha) = params.sha256 else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "bad_data",
            "the sha256 query parameter (hex digest of the module) is required".into(),
        );
    };
    let grants = match params.grants.as_deref().filter(|g| !g.is_empty()) {
        None => None,
        Some(g) => {
            let spec: crate::policy::config::GrantsSpec = match serde_json::from_str(g) {
                Ok(spec) => spec,
                Err(e) => {
                    return api_error(StatusCode::BAD_REQUEST, "bad_data", format!("grants: {e}"));
                }
            };
            let mut problems = Vec::new();
            let grants = crate::policy::config::validate_grants(
                "grants",
                &spec,
                std::path::Path::new("."),
                &mut problems,
            );
            if !problems.is_empty() {
                return api_error(StatusCode::BAD_REQUEST, "bad_data", problems.join("; "));
            }
            Some(grants)
        }
    };
    let registry = s.registry.clone();
    let slot2 = slot.clone();
    let r = tokio::task::spawn_blocking(move || {
        registry.put_module(&slot2, body.to_vec(), &sha, params.kind, grants)
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

/// The accepted connections of `sluice-tls` as axum's listener: the HTTP
/// server gets plaintext or handshaken TLS streams with who is on the other
/// end.
#[derive(Debug)]
pub struct HttpListener(pub crate::tls::Incoming);

/// The peer of an HTTP connection (`ConnectInfo<HttpPeer>` in handlers).
#[derive(Debug, Clone)]
pub struct HttpPeer(pub crate::tls::PeerInfo);

impl axum::serve::Listener for HttpListener {
    type Io = crate::tls::ServerStream;
    type Addr = HttpPeer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.0.accept_next().await {
            Some((io, peer)) => (io, HttpPeer(peer)),
            // The accept loop stopped: the server is shutting down.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(HttpPeer(crate::tls::PeerInfo {
            remote: self.0.local_addr(),
            identity: None,
        }))
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, HttpListener>>
    for HttpPeer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, HttpListener>) -> Self {
        stream.remote_addr().clone()
    }
}
