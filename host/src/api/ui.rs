//! ui owns the querier's web UI: the pages `/graph` (PromQL, graph and table),
//! `/stores` and `/policies`, their assets under `/static/`, all embedded in the
//! binary, and `/api/v1/status/policies`, the read-only policy view the
//! policies page reads.
//!
//! The front end is plain JavaScript modules and CSS with no build step (see
//! `ui/README.md`). Asset URLs carry a version derived from the assets' digest,
//! `/static/v-<digest>/app.js`, so they are cached for a year and a new binary
//! is picked up at once; the pages themselves are revalidated on every load.
//! Every URL the pages use is relative, so the UI works behind a path prefix.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use crate::policy::PolicyRegistry;

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $ct:expr) => {
        Asset {
            name: $name,
            content_type: $ct,
            body: include_bytes!(concat!("ui/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// The files under `/static/`.
const ASSETS: &[Asset] = &[
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("format.js", JS),
    asset!("dom.js", JS),
    asset!("chart.js", JS),
    asset!("graph.js", JS),
    asset!("stores.js", JS),
    asset!("targets.js", JS),
    asset!("rules.js", JS),
    asset!("policies.js", JS),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
];

/// The page template; `{{…}}` placeholders are filled once per page.
const INDEX_HTML: &str = include_str!("ui/index.html");

/// Pages: (path, id the scripts dispatch on, title).
const PAGES: &[(&str, &str, &str)] = &[
    ("/graph", "graph", "Query"),
    ("/stores", "stores", "Stores"),
    ("/targets", "targets", "Targets"),
    ("/alerts", "alerts", "Alerts"),
    ("/rules", "rules", "Rules"),
    ("/policies", "policies", "Policies"),
];

/// Versioned assets never change under their URL.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Pages and unversioned assets: cache, but ask every time (answered by 304).
const REVALIDATE: &str = "no-cache";
/// Everything the pages load comes from this origin; no inline script or style.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; \
                   frame-ancestors 'self'";

/// What the UI needs from the querier.
#[derive(Clone)]
pub struct UiConfig {
    /// `--query.partial-response`: the partial-response toggle starts in this state.
    pub partial_response: bool,
    /// The policy registry shown on `/policies`; `None` hides the policy status.
    pub policies: Option<Arc<PolicyRegistry>>,
    /// Whether the policy admin API (`/api/v1/policies`) is mounted.
    pub policy_admin_api: bool,
}

struct Page {
    html: String,
    etag: HeaderValue,
}

struct Inner {
    /// First 16 hex digits of the digest over every asset.
    version: String,
    pages: HashMap<&'static str, Page>,
    etags: HashMap<&'static str, HeaderValue>,
    cfg: UiConfig,
}

#[derive(Clone)]
struct UiState(Arc<Inner>);

/// Routes of the UI: `/` (redirect to `/graph`), `/graph`, `/stores`, `/targets`, `/alerts`, `/rules`,
/// `/policies`, `/static/*` and `/api/v1/status/policies`.
pub fn router(cfg: UiConfig) -> Router {
    let inner = build(cfg);
    Router::new()
        .route("/", get(|| async { Redirect::to("graph") }))
        .route("/graph", get(page))
        // Prometheus' and Thanos' other UI paths for the query page.
        .route("/new/graph", get(to_graph))
        .route("/classic/graph", get(to_graph))
        .route("/stores", get(page))
        .route("/targets", get(page))
        .route("/alerts", get(page))
        .route("/rules", get(page))
        .route("/policies", get(page))
        .route("/favicon.ico", get(favicon))
        .route("/static/{*path}", get(static_file))
        .route("/api/v1/status/policies", get(policy_status))
        .with_state(UiState(Arc::new(inner)))
}

/// Redirects to `/graph` with the same query string (links keep their `g0.*`).
async fn to_graph(RawQuery(q): RawQuery) -> Redirect {
    match q {
        Some(q) if !q.is_empty() => Redirect::to(&format!("../graph?{q}")),
        _ => Redirect::to("../graph"),
    }
}

fn digest_hex(parts: &[&[u8]], len: usize) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    let d = h.finalize();
    let mut s = String::with_capacity(len);
    for b in d.iter() {
        s.push_str(&format!("{b:02x}"));
        if s.len() >= len {
            break;
        }
    }
    s.truncate(len);
    s
}

fn etag(hex: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{hex}\"")).expect("hex digits are a valid header value")
}

fn build(cfg: UiConfig) -> Inner {
    let mut parts: Vec<&[u8]> = vec![INDEX_HTML.as_bytes()];
    let mut etags = HashMap::new();
    for a in ASSETS {
        parts.push(a.name.as_bytes());
        parts.push(a.body);
        etags.insert(a.name, etag(&digest_hex(&[a.body], 16)));
    }
    let version = digest_hex(&parts, 16);
    let mut pages = HashMap::new();
    for (path, id, title) in PAGES {
        let html = render_page(&version, id, title, &cfg);
        let tag = etag(&digest_hex(&[html.as_bytes()], 16));
        pages.insert(*path, Page { html, etag: tag });
    }
    Inner {
        version,
        pages,
        etags,
        cfg,
    }
}

fn render_page(version: &str, id: &str, title: &str, cfg: &UiConfig) -> String {
    INDEX_HTML
        .replace("{{STATIC}}", &format!("static/v-{version}"))
        .replace("{{PAGE}}", id)
        .replace("{{TITLE}}", title)
        .replace(
            "{{PARTIAL_RESPONSE}}",
            if cfg.partial_response {
                "true"
            } else {
                "false"
            },
        )
}

/// True when the request's `If-None-Match` names `tag` (or `*`).
fn not_modified(headers: &HeaderMap, tag: &HeaderValue) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().trim_start_matches("W/"))
        .any(|v| v == "*" || v.as_bytes() == tag.as_bytes())
}

fn respond(
    headers: &HeaderMap,
    content_type: &'static str,
    cache: &'static str,
    tag: &HeaderValue,
    body: axum::body::Body,
    extra: &[(header::HeaderName, &'static str)],
) -> Response {
    let mut resp = if not_modified(headers, tag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = body.into_response();
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        r
    };
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::ETAG, tag.clone());
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    for (k, v) in extra {
        h.insert(k.clone(), HeaderValue::from_static(v));
    }
    resp
}

async fn page(State(s): State<UiState>, uri: axum::http::Uri, headers: HeaderMap) -> Response {
    let Some(p) = s.0.pages.get(uri.path()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    respond(
        &headers,
        "text/html; charset=utf-8",
        REVALIDATE,
        &p.etag,
        p.html.clone().into(),
        &[
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::REFERRER_POLICY, "same-origin"),
        ],
    )
}

async fn static_file(
    State(s): State<UiState>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Response {
    // `v-<version>/name` is cached for good when the version is this binary's;
    // an old version (a page loaded before an upgrade) or no version revalidates.
    let (name, cache) = match path.split_once('/') {
        Some((v, name)) if v.strip_prefix("v-") == Some(s.0.version.as_str()) => (name, IMMUTABLE),
        Some((v, name)) if v.starts_with("v-") => (name, REVALIDATE),
        _ => (path.as_str(), REVALIDATE),
    };
    let Some(a) = ASSETS.iter().find(|a| a.name == name) else {
        return (StatusCode::NOT_FOUND, "no such asset\n").into_response();
    };
    let tag = &s.0.etags[a.name];
    respond(
        &headers,
        a.content_type,
        cache,
        tag,
        axum::body::Body::from(a.body),
        &[],
    )
}

async fn favicon(State(s): State<UiState>, headers: HeaderMap) -> Response {
    static_file(State(s), Path("favicon.svg".to_string()), headers).await
}

/// `GET /api/v1/status/policies`: the loaded plugins for the policies page,
/// with each slot's call, failure and fallback counts, without credentials. Unlike the admin API (`/api/v1/policies`, bearer token,
/// off by default) it cannot change anything, and it names plugin files
/// without their directories.
async fn policy_status(State(s): State<UiState>) -> Response {
    let Some(reg) = &s.0.cfg.policies else {
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::json!({"status": "error", "errorType": "not_found",
                "error": "this process has no policy registry"})
            .to_string(),
        )
            .into_response();
    };
    let mut data = reg.status();
    let mut counts = reg.slot_counts();
    if let Some(slots) = data.get_mut("slots").and_then(|v| v.as_array_mut()) {
        for slot in slots {
            if let Some(src) = slot.get_mut("source") {
                *src = serde_json::Value::String(public_source(src.as_str().unwrap_or("")));
            }
            let name = slot["slot"].as_str().unwrap_or_default().to_string();
            if let Some(c) = counts.remove(&name) {
                slot["stats"] = c;
            }
        }
    }
    data["adminApi"] = serde_json::Value::Bool(s.0.cfg.policy_admin_api);
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        serde_json::json!({"status": "success", "data": data}).to_string(),
    )
        .into_response()
}

/// `file:/etc/sluice/plugins/x.wasm` → `file:x.wasm`; other sources unchanged.
fn public_source(src: &str) -> String {
    match src.strip_prefix("file:") {
        Some(p) => {
            let name = std::path::Path::new(p)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            format!("file:{name}")
        }
        None => src.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    fn app() -> Router {
        router(UiConfig {
            partial_response: false,
            policies: None,
            policy_admin_api: false,
        })
    }

    async fn get(app: &Router, uri: &str, inm: Option<&str>) -> Response {
        let mut req = Request::get(uri);
        if let Some(t) = inm {
            req = req.header(header::IF_NONE_MATCH, t);
        }
        app.clone()
            .oneshot(req.body(Body::empty()).expect("request"))
            .await
            .expect("infallible")
    }

    fn hdr<'a>(r: &'a Response, h: header::HeaderName) -> &'a str {
        r.headers()
            .get(h)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    async fn text(r: Response) -> String {
        let b = axum::body::to_bytes(r.into_body(), 1 << 22)
            .await
            .expect("body");
        String::from_utf8(b.to_vec()).expect("utf-8")
    }

    #[tokio::test]
    async fn root_redirects_to_graph() {
        let r = get(&app(), "/", None).await;
        assert!(r.status().is_redirection(), "{}", r.status());
        assert_eq!(hdr(&r, header::LOCATION), "graph");
    }

    #[tokio::test]
    async fn pages_are_html_that_name_their_versioned_assets() {
        let app = app();
        for (path, id, title) in PAGES {
            let r = get(&app, path, None).await;
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            assert_eq!(hdr(&r, header::CONTENT_TYPE), "text/html; charset=utf-8");
            assert_eq!(hdr(&r, header::CACHE_CONTROL), REVALIDATE);
            assert!(hdr(&r, header::CONTENT_SECURITY_POLICY).contains("script-src 'self'"));
            let tag = hdr(&r, header::ETAG).to_string();
            let html = text(r).await;
            assert!(!html.contains("{{"), "unfilled placeholder in {path}");
            assert!(html.contains(&format!("data-page=\"{id}\"")), "{path}");
            assert!(html.contains(&format!("<title>{title}")), "{path}");
            assert!(html.contains("data-partial-response=\"false\""), "{path}");
            // The page's module script loads from this binary's version and is served.
            let src = html
                .split("src=\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .expect("a script src");
            assert!(
                src.starts_with("static/v-") && src.ends_with("/app.js"),
                "{src}"
            );
            let js = get(&app, &format!("/{src}"), None).await;
            assert_eq!(js.status(), StatusCode::OK);
            assert_eq!(hdr(&js, header::CACHE_CONTROL), IMMUTABLE);
            // Revalidation with the ETag answers 304.
            let again = get(&app, path, Some(&tag)).await;
            assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
        }
    }

    #[tokio::test]
    async fn static_assets_have_their_content_types() {
        let app = app();
        for a in ASSETS {
            let r = get(&app, &format!("/static/{}", a.name), None).await;
            assert_eq!(r.status(), StatusCode::OK, "{}", a.name);
            assert_eq!(hdr(&r, header::CONTENT_TYPE), a.content_type, "{}", a.name);
            assert_eq!(hdr(&r, header::CACHE_CONTROL), REVALIDATE, "{}", a.name);
            assert_eq!(hdr(&r, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
            let body = axum::body::to_bytes(r.into_body(), 1 << 22)
                .await
                .expect("body");
            assert_eq!(&body[..], a.body, "{}", a.name);
        }
        let r = get(&app, "/static/v-0000000000000000/style.css", None).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            hdr(&r, header::CACHE_CONTROL),
            REVALIDATE,
            "an old version revalidates"
        );
        for missing in [
            "/static/nope.js",
            "/static/../Cargo.toml",
            "/static/v-1/x/app.js",
        ] {
            assert_eq!(
                get(&app, missing, None).await.status(),
                StatusCode::NOT_FOUND,
                "{missing}"
            );
        }
        assert_eq!(
            get(&app, "/favicon.ico", None).await.status(),
            StatusCode::OK
        );
    }

    #[test]
    fn every_module_import_is_an_embedded_asset() {
        for a in ASSETS.iter().filter(|a| a.content_type == JS) {
            let src = std::str::from_utf8(a.body).expect("utf-8");
            for line in src.lines().filter(|l| l.starts_with("import ")) {
                let spec = line
                    .rsplit("from")
                    .next()
                    .and_then(|s| s.trim().trim_end_matches(';').strip_prefix("'./"))
                    .and_then(|s| s.strip_suffix('\''))
                    .unwrap_or_else(|| {
                        panic!("{}: import not of the form './x.js': {line}", a.name)
                    });
                assert!(
                    ASSETS.iter().any(|b| b.name == spec),
                    "{} imports {spec}, which is not embedded",
                    a.name
                );
            }
        }
    }

    #[test]
    fn plugin_files_are_named_without_their_directory() {
        assert_eq!(
            public_source("file:/etc/sluice/p/dedup.wasm"),
            "file:dedup.wasm"
        );
        assert_eq!(public_source("builtin:dedup"), "builtin:dedup");
        assert_eq!(public_source("uploaded"), "uploaded");
    }
}
