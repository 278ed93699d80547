//! A range query as the frontend understands it: decoded from a GET query
//! string or a POST form with Prometheus' and Thanos' parameters, checked as
//! the querier would check it, and encoded again as the form the downstream
//! gets (Thanos' list of forwarded parameters; the others are dropped).

use std::time::Duration;

/// Most points per series a range query may ask for (Prometheus' limit).
pub const MAX_POINTS: i64 = 11_000;

/// A range query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeQuery {
    pub query: String,
    /// Inclusive, ms.
    pub start: i64,
    pub end: i64,
    pub step: i64,
    /// `dedup` as given (`None`: the querier's default, true).
    pub dedup: Option<bool>,
    pub partial_response: bool,
    /// `max_source_resolution` as given (`auto`, seconds or a duration).
    pub max_source_resolution: Option<String>,
    pub replica_labels: Vec<String>,
    pub store_match: Vec<String>,
    pub shard_info: Option<String>,
    pub lookback_delta: Option<String>,
    pub engine: Option<String>,
    pub analyze: Option<String>,
    pub stats: Option<String>,
}

/// A request the frontend refuses, in Prometheus' words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadRequest(pub String);

pub use sluice_model::form::{encode as url_encode, pairs as form_pairs};

fn last<'a>(p: &'a [(String, String)], k: &str) -> Option<&'a str> {
    p.iter()
        .rev()
        .find(|(n, v)| n == k && !v.is_empty())
        .map(|(_, v)| v.as_str())
}

fn all(p: &[(String, String)], k: &str) -> Vec<String> {
    p.iter()
        .filter(|(n, _)| n == k)
        .map(|(_, v)| v.clone())
        .collect()
}

/// Prometheus API time: float seconds or RFC 3339, as ms.
pub fn parse_time(s: &str) -> Option<i64> {
    sluice_model::time::parse_api_time(s).ok()
}

/// Prometheus API duration: float seconds or a duration string, as ms.
pub fn parse_step(s: &str) -> Option<i64> {
    if let Ok(f) = s.parse::<f64>() {
        return (f.is_finite() && f.abs() < 1e15).then(|| (f * 1000.0).round() as i64);
    }
    sluice_config::parse_duration(s)
        .ok()
        .map(|d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "true" | "1" | "True" | "TRUE" | "t" => Some(true),
        "false" | "0" | "False" | "FALSE" | "f" => Some(false),
        _ => None,
    }
}

impl RangeQuery {
    /// Decodes and checks a range query (`partial_default`:
    /// `--query-range.partial-response`).
    pub fn parse(p: &[(String, String)], partial_default: bool) -> Result<Self, BadRequest> {
        let bad = |m: String| BadRequest(m);
        let time = |k: &str| -> Result<i64, BadRequest> {
            let v = last(p, k).unwrap_or("");
            parse_time(v).ok_or_else(|| {
                bad(format!(
                    "invalid parameter \"{k}\": cannot parse {v:?} to a valid timestamp"
                ))
            })
        };
        let start = time("start")?;
        let end = time("end")?;
        if end < start {
            return Err(bad(
                "invalid parameter \"end\": end timestamp must not be before start time".into(),
            ));
        }
        let sv = last(p, "step").unwrap_or("");
        let step = parse_step(sv).ok_or_else(|| {
            bad(format!(
                "invalid parameter \"step\": cannot parse {sv:?} to a valid duration"
            ))
        })?;
        if step <= 0 {
            return Err(bad("invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer".into()));
        }
        if (i128::from(end) - i128::from(start)) / i128::from(step) > i128::from(MAX_POINTS) {
            return Err(bad("exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)".into()));
        }
        let query = last(p, "query").unwrap_or("").to_owned();
        if query.is_empty() {
            return Err(bad(
                "invalid parameter \"query\": query must not be empty".into()
            ));
        }
        let flag = |k: &str| -> Result<Option<bool>, BadRequest> {
            last(p, k)
                .map(|v| {
                    parse_bool(v).ok_or_else(|| {
                        bad(format!("invalid parameter \"{k}\": {v:?} is not a boolean"))
                    })
                })
                .transpose()
        };
        let mut replica_labels: Vec<String> = all(p, "replicaLabels[]")
            .iter()
            .flat_map(|s| s.split(','))
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        replica_labels.sort();
        let opt = |k: &str| last(p, k).map(str::to_owned);
        Ok(RangeQuery {
            query,
            start,
            end,
            step,
            dedup: flag("dedup")?,
            partial_response: flag("partial_response")?.unwrap_or(partial_default),
            max_source_resolution: opt("max_source_resolution"),
            replica_labels,
            store_match: all(p, "storeMatch[]"),
            shard_info: opt("shard_info"),
            lookback_delta: opt("lookback_delta"),
            engine: opt("engine"),
            analyze: opt("analyze"),
            stats: opt("stats"),
        })
    }

    /// The same query over `[start, end]`.
    pub fn with_range(&self, start: i64, end: i64) -> Self {
        RangeQuery {
            start,
            end,
            ..self.clone()
        }
    }

    /// The form the downstream gets.
    pub fn encode(&self) -> String {
        let mut f = vec![
            ("query", self.query.clone()),
            ("start", secs(self.start)),
            ("end", secs(self.end)),
            ("step", secs(self.step)),
            ("partial_response", self.partial_response.to_string()),
        ];
        if let Some(d) = self.dedup {
            f.push(("dedup", d.to_string()));
        }
        for r in &self.replica_labels {
            f.push(("replicaLabels[]", r.clone()));
        }
        for m in &self.store_match {
            f.push(("storeMatch[]", m.clone()));
        }
        for (k, v) in [
            ("max_source_resolution", &self.max_source_resolution),
            ("shard_info", &self.shard_info),
            ("lookback_delta", &self.lookback_delta),
            ("engine", &self.engine),
            ("analyze", &self.analyze),
            ("stats", &self.stats),
        ] {
            if let Some(v) = v {
                f.push((k, v.clone()));
            }
        }
        f.iter()
            .map(|(k, v)| format!("{}={}", url_encode(k), url_encode(v)))
            .collect::<Vec<_>>()
            .join("&")
    }
}

/// ms as Prometheus API seconds (`1.5`, `-0.25`, `12`).
pub fn secs(ms: i64) -> String {
    let (s, r) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    if r == 0 {
        format!("{s}")
    } else if ms < 0 {
        let a = ms.unsigned_abs();
        format!("-{}.{:03}", a / 1000, a % 1000)
    } else {
        format!("{s}.{r:03}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Vec<(String, String)> {
        form_pairs(s)
    }

    #[test]
    fn parses_checks_and_encodes_round_trip() {
        let q = RangeQuery::parse(
            &p("query=sum(rate(x%5B5m%5D))&start=1704069000&end=2024-01-01T01:30:00Z&step=1m&dedup=false&replicaLabels[]=b,a&timeout=5s"),
            true,
        )
        .unwrap();
        assert_eq!(
            (q.start, q.end, q.step),
            (1_704_069_000_000, 1_704_072_600_000, 60_000)
        );
        assert_eq!(q.replica_labels, vec!["a", "b"]);
        assert_eq!(q.dedup, Some(false));
        assert!(q.partial_response);
        let back = RangeQuery::parse(&p(&q.encode()), false).unwrap();
        assert_eq!(back, q, "the encoded form decodes to the same query");
        assert!(
            !q.encode().contains("timeout"),
            "other parameters are dropped"
        );
    }

    #[test]
    fn refuses_what_the_querier_refuses() {
        for (form, want) in [
            (
                "query=x&start=10&end=5&step=1",
                "end timestamp must not be before",
            ),
            ("query=x&start=0&end=100000&step=1", "11,000 points"),
            ("query=x&start=0&end=10&step=0", "zero or negative"),
            ("query=&start=0&end=10&step=1", "query must not be empty"),
            (
                "query=x&start=abc&end=10&step=1",
                "invalid parameter \"start\"",
            ),
        ] {
            let e = RangeQuery::parse(&p(form), true).unwrap_err();
            assert!(e.0.contains(want), "{form}: {e}");
        }
    }

    #[test]
    fn seconds_are_written_as_prometheus_reads_them() {
        assert_eq!(secs(1_500), "1.500");
        assert_eq!(secs(-250), "-0.250");
        assert_eq!(secs(60_000), "60");
    }
}
