//! The label and series APIs through the frontend (`/api/v1/labels`,
//! `/api/v1/label/<name>/values`, `/api/v1/series`): a request with a time
//! range is split on `--labels.split-interval` boundaries; the pieces —
//! whole intervals, the same for every request that spans them — are cached,
//! and the answers put together as the querier would give them for the
//! whole range (a series or a block overlaps the range exactly when it
//! overlaps one of the pieces, which partition it). `limit` is applied to
//! the whole answer, with Prometheus' warning. A request without `start` or
//! `end` is forwarded whole: the querier's default range is all of time.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::request::{form_pairs, parse_time, secs, url_encode};
use crate::response::{label_key, merge_warnings};

/// Which API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Api {
    Names,
    Values(String),
    Series,
}

/// A label or series request with a time range.
#[derive(Debug, Clone)]
pub struct LabelsRequest {
    pub api: Api,
    pub path: String,
    pub matchers: Vec<String>,
    pub start: i64,
    pub end: i64,
    /// Every other parameter forwarded as given (`partial_response`,
    /// `dedup`, `replicaLabels[]`, `storeMatch[]`), sorted, without `limit`.
    pub rest: Vec<(String, String)>,
    pub limit: Option<usize>,
}

impl LabelsRequest {
    /// `None` when the request has no complete time range (forwarded whole),
    /// or cannot be read (forwarded whole: the querier gives the error).
    pub fn parse(path: &str, query: &str, body: Option<&str>) -> Option<LabelsRequest> {
        let api = if path == "/api/v1/labels" {
            Api::Names
        } else if path == "/api/v1/series" {
            Api::Series
        } else {
            let name = path
                .strip_prefix("/api/v1/label/")?
                .strip_suffix("/values")?;
            Api::Values(name.to_owned())
        };
        let mut p = form_pairs(query);
        if let Some(b) = body {
            p.extend(form_pairs(b));
        }
        let time = |k: &str| {
            p.iter()
                .rev()
                .find(|(n, v)| n == k && !v.is_empty())
                .and_then(|(_, v)| parse_time(v))
        };
        let (start, end) = (time("start")?, time("end")?);
        if end < start {
            return None;
        }
        let mut matchers: Vec<String> = p
            .iter()
            .filter(|(k, _)| k == "match[]")
            .map(|(_, v)| v.clone())
            .collect();
        matchers.sort();
        let limit = match p.iter().rev().find(|(k, v)| k == "limit" && !v.is_empty()) {
            None => None,
            Some((_, v)) => match v.parse::<usize>() {
                Ok(0) => None,
                Ok(n) => Some(n),
                Err(_) => return None,
            },
        };
        let mut rest: Vec<(String, String)> = p
            .into_iter()
            .filter(|(k, _)| !matches!(k.as_str(), "match[]" | "start" | "end" | "limit"))
            .collect();
        rest.sort();
        Some(LabelsRequest {
            api,
            path: path.to_owned(),
            matchers,
            start,
            end,
            rest,
            limit,
        })
    }

    /// The form of the piece `[start, end]`.
    pub fn form(&self, start: i64, end: i64) -> String {
        let mut f: Vec<String> = self
            .matchers
            .iter()
            .map(|m| format!("match%5B%5D={}", url_encode(m)))
            .collect();
        f.push(format!("start={}", secs(start)));
        f.push(format!("end={}", secs(end)));
        f.extend(
            self.rest
                .iter()
                .map(|(k, v)| format!("{}={}", url_encode(k), url_encode(v))),
        );
        f.join("&")
    }

    /// The cache key of the piece `[start, end]`.
    pub fn key(&self, tenant: &str, start: i64, end: i64) -> String {
        format!(
            "fe-labels:{tenant}:{}:{}:{start}:{end}:{}",
            self.path,
            self.matchers.join("\u{0}"),
            self.rest
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("&")
        )
    }
}

/// A piece's answer: the data array and warnings; `None` unless a success.
pub fn parse_answer(body: &[u8]) -> Option<(Vec<Value>, Vec<String>)> {
    let v: Value = serde_json::from_slice(body).ok()?;
    if v.get("status")?.as_str()? != "success" {
        return None;
    }
    let data = v.get("data")?.as_array()?.clone();
    let warnings = v
        .get("warnings")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|w| w.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Some((data, warnings))
}

/// The pieces' answers as one, as the querier answers the whole range.
pub fn merge(api: &Api, parts: Vec<(Vec<Value>, Vec<String>)>, limit: Option<usize>) -> Value {
    let mut warnings = merge_warnings(parts.iter().map(|(_, w)| w.as_slice()));
    let mut data: Vec<Value> = match api {
        Api::Series => {
            let mut sets: BTreeMap<Vec<(String, String)>, Value> = BTreeMap::new();
            for (d, _) in &parts {
                for s in d {
                    let key = label_key(s);
                    sets.entry(key).or_insert_with(|| s.clone());
                }
            }
            sets.into_values().collect()
        }
        _ => {
            let mut vals: BTreeSet<String> = BTreeSet::new();
            for (d, _) in &parts {
                vals.extend(d.iter().filter_map(|v| v.as_str().map(str::to_owned)));
            }
            vals.into_iter().map(Value::String).collect()
        }
    };
    if let Some(l) = limit
        && data.len() > l
    {
        data.truncate(l);
        warnings.push("results truncated due to limit".into());
    }
    let mut out = json!({"status": "success", "data": data});
    if !warnings.is_empty() {
        out["warnings"] = json!(warnings);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::response::NO_STORE_MATCHED;

    #[test]
    fn requests_with_a_range_are_read_and_pieces_encoded() {
        let r = LabelsRequest::parse(
            "/api/v1/label/job/values",
            "match[]=up&start=10&end=20.5&dedup=false&limit=3",
            None,
        )
        .unwrap();
        assert_eq!(r.api, Api::Values("job".into()));
        assert_eq!((r.start, r.end, r.limit), (10_000, 20_500, Some(3)));
        assert_eq!(
            r.form(10_000, 15_000),
            "match%5B%5D=up&start=10&end=15&dedup=false"
        );
        assert!(
            LabelsRequest::parse("/api/v1/labels", "match[]=up", None).is_none(),
            "no range: forwarded whole"
        );
        assert!(
            LabelsRequest::parse("/api/v1/series", "", Some("match[]=up&start=1&end=2")).is_some()
        );
        assert!(LabelsRequest::parse("/api/v1/label/x", "start=1&end=2", None).is_none());
    }

    #[test]
    fn merge_unions_sorts_and_limits() {
        let a = (vec![json!("b"), json!("a")], vec![]);
        let b = (
            vec![json!("c"), json!("a")],
            vec![NO_STORE_MATCHED.to_string()],
        );
        assert_eq!(
            merge(&Api::Names, vec![a.clone(), b.clone()], None),
            json!({"status": "success", "data": ["a", "b", "c"]})
        );
        assert_eq!(
            merge(&Api::Names, vec![a, b], Some(2)),
            json!({"status": "success", "data": ["a", "b"], "warnings": ["results truncated due to limit"]})
        );
        let s1 = (vec![json!({"job": "b", "__name__": "up"})], vec![]);
        let s2 = (
            vec![
                json!({"__name__": "up", "job": "a"}),
                json!({"job": "b", "__name__": "up"}),
            ],
            vec![],
        );
        let m = merge(&Api::Series, vec![s1, s2], None);
        assert_eq!(m["data"].as_array().unwrap().len(), 2);
        assert_eq!(m["data"][0]["job"], "a");
    }
}
