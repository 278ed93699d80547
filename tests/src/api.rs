//! The querier's Prometheus HTTP API as a client sees it: form encoding, the JSON envelope (`status`, `data`,
//! `warnings`, `error`), label sets and string lists out of `data`, and `/api/v1/stores` in Thanos's shape.

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use crate::model::Labels;
use crate::process::SluiceQuery;

/// `application/x-www-form-urlencoded` encoding of `pairs` (also a valid query string).
pub fn form(pairs: &[(&str, &str)]) -> String {
    fn enc(s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        for b in s.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    out.push(b as char)
                }
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
        out
    }
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// One answer of the HTTP API.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    /// What was asked, for messages.
    pub what: String,
    pub code: u16,
    pub body: Value,
}

impl ApiResponse {
    fn parse(what: String, code: u16, text: &str) -> Result<ApiResponse> {
        let body: Value = serde_json::from_str(text)
            .with_context(|| format!("{what}: HTTP {code} body is not JSON: {text:?}"))?;
        Ok(ApiResponse { what, code, body })
    }

    /// `data` of a successful answer; fails on any other status.
    pub fn data(&self) -> Result<&Value> {
        ensure!(
            self.code == 200 && self.body["status"] == "success",
            "{}: expected HTTP 200 status=success, got HTTP {}: {}",
            self.what,
            self.code,
            self.body
        );
        Ok(&self.body["data"])
    }

    /// The `warnings` array (empty when absent).
    pub fn warnings(&self) -> Vec<String> {
        self.body["warnings"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|w| w.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The `error` of a failed answer; fails when the answer is a success.
    pub fn error(&self) -> Result<String> {
        ensure!(
            self.code >= 400 && self.body["status"] == "error",
            "{}: expected an error answer, got HTTP {}: {}",
            self.what,
            self.code,
            self.body
        );
        Ok(self.body["error"].as_str().unwrap_or_default().to_owned())
    }

    /// `data` as a list of label sets (`/api/v1/series`), sorted; fails on duplicates.
    pub fn label_sets(&self) -> Result<Vec<Labels>> {
        let arr = self
            .data()?
            .as_array()
            .with_context(|| format!("{}: data is not an array", self.what))?;
        let mut out = Vec::with_capacity(arr.len());
        for s in arr {
            let obj = s
                .as_object()
                .with_context(|| format!("{}: series {s} is not an object", self.what))?;
            let mut l: Labels = obj
                .iter()
                .map(|(k, v)| {
                    Ok((
                        k.clone(),
                        v.as_str()
                            .context("label value is not a string")?
                            .to_owned(),
                    ))
                })
                .collect::<Result<_>>()?;
            l.sort();
            out.push(l);
        }
        let n = out.len();
        out.sort();
        out.dedup();
        ensure!(
            out.len() == n,
            "{}: the same label set is listed twice",
            self.what
        );
        Ok(out)
    }

    /// `data` as a list of strings (`/api/v1/labels`, `/api/v1/label/<name>/values`), in the order given.
    pub fn strings(&self) -> Result<Vec<String>> {
        let arr = self
            .data()?
            .as_array()
            .with_context(|| format!("{}: data is not an array", self.what))?;
        arr.iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .with_context(|| format!("{}: {v} is not a string", self.what))
            })
            .collect()
    }
}

/// One entry of `/api/v1/stores`.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreStatus {
    pub component_type: String,
    pub name: String,
    pub last_error: Option<String>,
    pub label_sets: Vec<Labels>,
    pub min_time: i64,
    pub max_time: i64,
    pub strict: bool,
    pub healthy: bool,
    pub open_streams: i64,
    pub last_check: String,
}

impl SluiceQuery {
    /// GET `path?<params>`.
    pub async fn api_get(&self, path: &str, params: &[(&str, &str)]) -> Result<ApiResponse> {
        let full = if params.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{}", form(params))
        };
        let (code, text) = self.http_get(&full).await?;
        ApiResponse::parse(format!("GET {full}"), code, &text)
    }

    /// POST `path` with `params` as a form body.
    pub async fn api_post(&self, path: &str, params: &[(&str, &str)]) -> Result<ApiResponse> {
        let body = form(params);
        let (code, text) = self.http_post_form(path, &body).await?;
        ApiResponse::parse(format!("POST {path} {body}"), code, &text)
    }

    /// `/api/v1/stores`, flattened.
    pub async fn stores(&self) -> Result<Vec<StoreStatus>> {
        let r = self.api_get("/api/v1/stores", &[]).await?;
        let data = r
            .data()?
            .as_object()
            .context("/api/v1/stores: data is not an object")?;
        let mut out = Vec::new();
        for (kind, list) in data {
            for e in list
                .as_array()
                .context("/api/v1/stores: a component type maps to a non-array")?
            {
                let num = |k: &str| {
                    e[k].as_i64()
                        .with_context(|| format!("/api/v1/stores: {k} of {e}"))
                };
                let mut label_sets = Vec::new();
                for ls in e["labelSets"]
                    .as_array()
                    .context("labelSets is not an array")?
                {
                    let mut l: Labels = ls
                        .as_object()
                        .context("a label set is not an object")?
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                        .collect();
                    l.sort();
                    label_sets.push(l);
                }
                label_sets.sort();
                out.push(StoreStatus {
                    component_type: kind.clone(),
                    name: e["name"].as_str().context("name")?.to_owned(),
                    last_error: e["lastError"].as_str().map(str::to_owned),
                    label_sets,
                    min_time: num("minTime")?,
                    max_time: num("maxTime")?,
                    strict: e["strict"].as_bool().context("strict")?,
                    healthy: e["healthy"].as_bool().context("healthy")?,
                    open_streams: num("openStreams")?,
                    last_check: e["lastCheck"].as_str().unwrap_or_default().to_owned(),
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Series streams the querier has open to its endpoints right now (`openStreams` summed).
    pub async fn open_streams(&self) -> Result<i64> {
        Ok(self.stores().await?.iter().map(|s| s.open_streams).sum())
    }

    /// Names of the endpoints in `/api/v1/stores`, sorted.
    pub async fn store_names(&self) -> Result<Vec<String>> {
        Ok(self.stores().await?.into_iter().map(|s| s.name).collect())
    }
}

/// Fails unless some warning names `endpoint`.
pub fn expect_warning_naming(warnings: &[String], endpoint: &str, what: &str) -> Result<()> {
    if warnings.iter().any(|w| w.contains(endpoint)) {
        return Ok(());
    }
    bail!("{what}: no warning names endpoint {endpoint}; warnings: {warnings:?}")
}
