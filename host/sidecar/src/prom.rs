//! A client of one Prometheus server's HTTP API: the calls the sidecar makes
//! (spec §1.12), each with Prometheus' answer shapes and status codes.

use std::collections::BTreeMap;
use std::time::Duration;

use prost::Message;
use serde::Deserialize;
use sluice_model::{Labels, Matcher};
use sluice_proto::prometheus::{ReadRequest, read_request::ResponseType};

use crate::SidecarError;

/// Largest JSON answer read from Prometheus (label and series listings of a
/// big server stay far below; a larger one is an error, not an OOM).
const MAX_JSON_BODY: usize = 512 << 20;
/// Largest `/metrics` page read for the lowest timestamp.
const MAX_METRICS_BODY: usize = 64 << 20;

/// One Prometheus server.
#[derive(Debug, Clone)]
pub struct Prometheus {
    base: String,
    /// For streaming calls (remote read): no overall timeout.
    client: reqwest::Client,
    /// Per-call timeout of the metadata calls (`--prometheus.get_config_timeout`).
    timeout: Duration,
}

/// The answer to a remote read, still streaming.
pub struct ReadResponse {
    pub content_type: String,
    pub response: reqwest::Response,
}

#[derive(Deserialize)]
struct ApiEnvelope {
    status: String,
    #[serde(default)]
    data: serde_json::Value,
    #[serde(default, rename = "errorType")]
    error_type: String,
    #[serde(default)]
    error: String,
}

impl Prometheus {
    /// `url` is `--prometheus.url`; API paths are joined onto its path.
    pub fn new(
        url: &str,
        client: reqwest::Client,
        timeout: Duration,
    ) -> Result<Self, SidecarError> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| SidecarError::Config(format!("--prometheus.url {url}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(SidecarError::Config(format!(
                "--prometheus.url {url}: scheme must be http or https"
            )));
        }
        Ok(Prometheus {
            base: url.trim_end_matches('/').to_string(),
            client,
            timeout,
        })
    }

    /// The server's URL as configured.
    pub fn url(&self) -> &str {
        &self.base
    }

    fn endpoint(&self, path: &str) -> String {
        format!("{}/{}", self.base, path.trim_start_matches('/'))
    }

    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<reqwest::Response, SidecarError> {
        req.send().await.map_err(|e| SidecarError::Http {
            what: what.to_string(),
            detail: error_chain(&e),
        })
    }

    /// GET of a JSON API path; `Ok(None)` when Prometheus answers 404 or 405
    /// (an older server without the endpoint).
    async fn get_api(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Option<serde_json::Value>, SidecarError> {
        let url = reqwest::Url::parse_with_params(&self.endpoint(path), query)
            .map_err(|e| SidecarError::Config(format!("{path}: {e}")))?;
        let req = self.client.get(url).timeout(self.timeout);
        let resp = self.send(req, path).await?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND
            || status == reqwest::StatusCode::METHOD_NOT_ALLOWED
        {
            return Ok(None);
        }
        let body = read_body(resp, MAX_JSON_BODY, path).await?;
        let env: ApiEnvelope = match serde_json::from_slice(&body) {
            Ok(e) => e,
            Err(e) if status.is_success() => {
                return Err(SidecarError::Decode(format!("{path}: {e}")));
            }
            Err(_) => {
                return Err(SidecarError::Status {
                    what: path.to_string(),
                    code: status.as_u16(),
                    body: String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned(),
                });
            }
        };
        if !status.is_success() || env.status != "success" {
            return Err(SidecarError::Status {
                what: path.to_string(),
                code: status.as_u16(),
                body: format!("{}: {}", env.error_type, env.error),
            });
        }
        Ok(Some(env.data))
    }

    /// `data.version` of `/api/v1/status/buildinfo`; `"0"` for servers
    /// older than 2.14 that lack the endpoint.
    pub async fn build_version(&self) -> Result<String, SidecarError> {
        match self.get_api("api/v1/status/buildinfo", &[]).await? {
            None => Ok("0".to_string()),
            Some(d) => Ok(d
                .get("version")
                .and_then(|v| v.as_str())
                .unwrap_or("0")
                .to_string()),
        }
    }

    /// `/api/v1/status/flags`; `None` when the server lacks the endpoint.
    pub async fn flags(&self) -> Result<Option<BTreeMap<String, String>>, SidecarError> {
        let Some(d) = self.get_api("api/v1/status/flags", &[]).await? else {
            return Ok(None);
        };
        serde_json::from_value(d)
            .map(Some)
            .map_err(|e| SidecarError::Decode(format!("/api/v1/status/flags: {e}")))
    }

    /// `global.external_labels` of the loaded configuration
    /// (`/api/v1/status/config`).
    pub async fn external_labels(&self) -> Result<Labels, SidecarError> {
        let d = self
            .get_api("api/v1/status/config", &[])
            .await?
            .ok_or_else(|| SidecarError::Status {
                what: "/api/v1/status/config".into(),
                code: 404,
                body: "the server has no config API".into(),
            })?;
        let yaml = d.get("yaml").and_then(|y| y.as_str()).unwrap_or_default();
        external_labels_of(yaml)
    }

    /// The lowest timestamp of the server's TSDB in ms (spec §1.6), from
    /// `prometheus_tsdb_lowest_timestamp_seconds` on `/metrics`: `i64::MIN`
    /// while nothing is stored yet, 0 when the metric is absent (as Thanos).
    pub async fn lowest_timestamp(&self) -> Result<i64, SidecarError> {
        let req = self
            .client
            .get(self.endpoint("metrics"))
            .timeout(self.timeout);
        let resp = self.send(req, "/metrics").await?;
        let status = resp.status();
        let body = read_body(resp, MAX_METRICS_BODY, "/metrics").await?;
        if !status.is_success() {
            return Err(SidecarError::Status {
                what: "/metrics".into(),
                code: status.as_u16(),
                body: String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned(),
            });
        }
        Ok(lowest_timestamp_of(&String::from_utf8_lossy(&body)))
    }

    /// Starts a remote read; the answer's body is read by the caller.
    pub async fn remote_read(&self, req: &ReadRequest) -> Result<ReadResponse, SidecarError> {
        let body = snap::raw::Encoder::new()
            .compress_vec(&req.encode_to_vec())
            .map_err(|e| SidecarError::Decode(format!("snappy: {e}")))?;
        let http = self
            .client
            .post(self.endpoint("api/v1/read"))
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .header("X-Prometheus-Remote-Read-Version", "0.1.0")
            .body(body);
        let resp = self.send(http, "/api/v1/read").await?;
        let status = resp.status();
        if !status.is_success() {
            let body = read_body(resp, 64 << 10, "/api/v1/read")
                .await
                .unwrap_or_default();
            return Err(SidecarError::Status {
                what: "/api/v1/read".into(),
                code: status.as_u16(),
                body: String::from_utf8_lossy(&body).trim().to_string(),
            });
        }
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        Ok(ReadResponse {
            content_type,
            response: resp,
        })
    }

    /// `/api/v1/series` for one selector.
    pub async fn series(
        &self,
        matchers: &[Matcher],
        start: i64,
        end: i64,
        limit: usize,
    ) -> Result<Vec<Labels>, SidecarError> {
        let mut q = vec![("match[]", selector(matchers))];
        time_range(&mut q, start, end);
        if limit > 0 {
            q.push(("limit", limit.to_string()));
        }
        let d = self.get_api("api/v1/series", &q).await?.unwrap_or_default();
        let sets: Vec<BTreeMap<String, String>> = serde_json::from_value(d)
            .map_err(|e| SidecarError::Decode(format!("/api/v1/series: {e}")))?;
        Ok(sets.into_iter().map(Labels::from_pairs).collect())
    }

    /// `/api/v1/labels`, or `/api/v1/label/<name>/values`.
    pub async fn label_strings(
        &self,
        name: Option<&str>,
        matchers: &[Matcher],
        start: i64,
        end: i64,
        limit: usize,
    ) -> Result<Vec<String>, SidecarError> {
        let mut q = Vec::new();
        if !matchers.is_empty() {
            q.push(("match[]", selector(matchers)));
        }
        time_range(&mut q, start, end);
        if limit > 0 {
            q.push(("limit", limit.to_string()));
        }
        let path = match name {
            None => "api/v1/labels".to_string(),
            Some(n) => format!("api/v1/label/{}/values", url_path_segment(n)),
        };
        let d = self.get_api(&path, &q).await?.unwrap_or_default();
        if d.is_null() {
            return Ok(Vec::new());
        }
        serde_json::from_value(d).map_err(|e| SidecarError::Decode(format!("{path}: {e}")))
    }

    /// GET of any JSON API path, for the APIs proxied as they are (rules,
    /// targets, metadata, exemplars): the `data` member.
    pub async fn api(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<serde_json::Value, SidecarError> {
        Ok(self.get_api(path, query).await?.unwrap_or_default())
    }

    /// `POST /-/reload` (needs `--web.enable-lifecycle`).
    pub async fn reload(&self) -> Result<(), SidecarError> {
        let req = self
            .client
            .post(self.endpoint("-/reload"))
            .timeout(self.timeout);
        let resp = self.send(req, "/-/reload").await?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let body = read_body(resp, 64 << 10, "/-/reload")
            .await
            .unwrap_or_default();
        Err(SidecarError::Status {
            what: "/-/reload (is Prometheus started with --web.enable-lifecycle?)".into(),
            code: status.as_u16(),
            body: String::from_utf8_lossy(&body).trim().to_string(),
        })
    }

    /// `reloadConfigSuccess` and `lastConfigTime` of `/api/v1/status/runtimeinfo`.
    pub async fn config_reload_state(&self) -> Result<(bool, String), SidecarError> {
        let d = self
            .get_api("api/v1/status/runtimeinfo", &[])
            .await?
            .unwrap_or_default();
        Ok((
            d.get("reloadConfigSuccess")
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
            d.get("lastConfigTime")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string(),
        ))
    }

    /// `/-/ready`: whether Prometheus serves queries.
    pub async fn ready(&self) -> bool {
        let req = self
            .client
            .get(self.endpoint("-/ready"))
            .timeout(self.timeout);
        matches!(req.send().await, Ok(r) if r.status().is_success())
    }
}

/// Every accepted response type, streamed first (Thanos' order).
pub fn read_request(query: sluice_proto::prometheus::Query) -> ReadRequest {
    ReadRequest {
        queries: vec![query],
        accepted_response_types: vec![
            ResponseType::StreamedXorChunks as i32,
            ResponseType::Samples as i32,
        ],
    }
}

/// A PromQL selector for matchers: `{a="b",c=~"d"}` with Go-quoted values.
pub fn selector(matchers: &[Matcher]) -> String {
    let mut s = String::from("{");
    for (i, m) in matchers.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&m.name);
        s.push_str(&m.op.to_string());
        s.push_str(&serde_json::Value::String(m.value.clone()).to_string());
    }
    s.push('}');
    s
}

fn time_range(q: &mut Vec<(&'static str, String)>, start: i64, end: i64) {
    // Prometheus takes float seconds; the extremes of i64 ms are outside its
    // accepted range, so they are left out (= all time).
    if start > i64::MIN / 2 {
        q.push(("start", format_seconds(start)));
    }
    if end < i64::MAX / 2 {
        q.push(("end", format_seconds(end)));
    }
}

fn format_seconds(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let a = ms.unsigned_abs();
    format!("{sign}{}.{:03}", a / 1000, a % 1000)
}

fn url_path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Reads a body up to `max` bytes; more is an error before it is buffered.
pub(crate) async fn read_body(
    mut resp: reqwest::Response,
    max: usize,
    what: &str,
) -> Result<Vec<u8>, SidecarError> {
    if let Some(len) = resp.content_length()
        && len > max as u64
    {
        return Err(SidecarError::Decode(format!(
            "{what}: answer of {len} bytes is over the {max}-byte limit"
        )));
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| SidecarError::Http {
        what: what.to_string(),
        detail: error_chain(&e),
    })? {
        if out.len() + chunk.len() > max {
            return Err(SidecarError::Decode(format!(
                "{what}: answer over the {max}-byte limit"
            )));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let cs = c.to_string();
        if !s.contains(&cs) {
            s.push_str(": ");
            s.push_str(&cs);
        }
        src = c.source();
    }
    s
}

#[derive(Deserialize, Default)]
struct PromConfig {
    #[serde(default)]
    global: Option<GlobalConfig>,
}

#[derive(Deserialize, Default)]
struct GlobalConfig {
    #[serde(default)]
    external_labels: Option<BTreeMap<String, String>>,
}

/// `global.external_labels` of a Prometheus configuration, sorted.
pub fn external_labels_of(yaml: &str) -> Result<Labels, SidecarError> {
    if yaml.trim().is_empty() {
        return Ok(Labels::empty());
    }
    let cfg: PromConfig = serde_saphyr::from_str(yaml)
        .map_err(|e| SidecarError::Decode(format!("Prometheus configuration YAML: {e}")))?;
    Ok(Labels::from_pairs(
        cfg.global
            .and_then(|g| g.external_labels)
            .unwrap_or_default(),
    ))
}

/// The lowest timestamp (ms) in a `/metrics` page (spec §1.6).
pub fn lowest_timestamp_of(text: &str) -> i64 {
    const NAME: &str = "prometheus_tsdb_lowest_timestamp_seconds";
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        if parts.next() != Some(NAME) {
            continue;
        }
        let value = parts.next().unwrap_or_default();
        let Ok(secs) = value.parse::<f64>() else {
            continue;
        };
        let ms = secs * 1000.0;
        if !ms.is_finite() || ms >= 9.0e18 {
            return i64::MIN;
        }
        return ms as i64;
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_model::MatchOp;

    #[test]
    fn external_labels_from_config_yaml() {
        let yaml = "global:\n  scrape_interval: 15s\n  external_labels:\n    replica: \"1\"\n    cluster: eu\nscrape_configs:\n- job_name: x\n  static_configs:\n  - targets: ['a:1']\n";
        let l = external_labels_of(yaml).expect("parses");
        assert_eq!(l, Labels::from_pairs([("cluster", "eu"), ("replica", "1")]));
        assert!(
            external_labels_of("global:\n  scrape_interval: 1m\n")
                .expect("parses")
                .is_empty()
        );
    }

    #[test]
    fn lowest_timestamp_from_metrics_page() {
        let page = "# HELP prometheus_tsdb_lowest_timestamp_seconds Lowest timestamp value stored in the database.\n\
                    # TYPE prometheus_tsdb_lowest_timestamp_seconds gauge\n\
                    prometheus_tsdb_lowest_timestamp_seconds_total 5\n\
                    prometheus_tsdb_lowest_timestamp_seconds 1.7331552e+09\n";
        assert_eq!(lowest_timestamp_of(page), 1_733_155_200_000);
        assert_eq!(
            lowest_timestamp_of("prometheus_tsdb_lowest_timestamp_seconds 9.223372036854776e+15\n"),
            i64::MIN
        );
        assert_eq!(lowest_timestamp_of("up 1\n"), 0);
    }

    #[test]
    fn selectors_quote_values() {
        let m = vec![
            Matcher::new(MatchOp::Eq, "__name__", "up").expect("m"),
            Matcher::new(MatchOp::Re, "job", "a\"b|c\\d").expect("m"),
        ];
        assert_eq!(selector(&m), r#"{__name__="up",job=~"a\"b|c\\d"}"#);
        assert_eq!(format_seconds(-1500), "-1.500");
        assert_eq!(url_path_segment("a b/c"), "a%20b%2Fc");
    }
}
